//! Image references (`[REGISTRY/]PATH[:TAG][@DIGEST]`), parsed by hand. oci-spec's parser builds
//! a Unicode regex on first use, about 80 ms of CPU: half of a relocation that finds everything
//! in place already. The grammar is distribution's; the tests hold this parser to oci-spec's.

use oci_client::Reference;

const HUB: &str = "docker.io";
const HUB_LEGACY: &str = "index.docker.io";
const MAX_NAME: usize = 255;

/// Parses `s` as oci-spec does (Docker Hub names get `docker.io` and `library/`; no tag and no
/// digest means `latest`), refusing what it refuses, and also capitals in a path and non-ASCII
/// tags, which registries refuse.
pub fn parse(s: &str) -> Option<Reference> {
    let (rest, digest) = match s.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (s, None),
    };
    if let Some(digest) = digest {
        valid_digest(digest)?;
    }
    let (name, tag) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if let Some(tag) = tag {
        let valid = tag.len() <= 128
            && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !valid {
            return None;
        }
    }
    let (registry, repository) = split_domain(name)?;
    if repository.len() > MAX_NAME {
        return None;
    }
    let (tag, digest) = (tag.map(str::to_owned), digest.map(str::to_owned));
    Some(match (tag, digest) {
        (Some(tag), Some(digest)) => Reference::with_tag_and_digest(registry, repository, tag, digest),
        (None, Some(digest)) => Reference::with_digest(registry, repository, digest),
        (tag, None) => Reference::with_tag(registry, repository, tag.unwrap_or_else(|| "latest".into())),
    })
}

/// `algorithm:hex`, with the hex length the algorithm has.
fn valid_digest(digest: &str) -> Option<()> {
    let (algorithm, hex) = digest.split_once(':')?;
    let length = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return None,
    };
    (hex.len() == length && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(())
}

/// A path component: lowercase alphanumerics separated by `.`, `_`, `__` or dashes.
fn path_component(part: &str) -> bool {
    let bytes = part.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.first().is_none_or(|b| !alnum(b)) || bytes.last().is_none_or(|b| !alnum(b)) {
        return false;
    }
    let mut separator = String::new();
    for &b in bytes {
        if alnum(&b) {
            let allowed = matches!(separator.as_str(), "" | "." | "_" | "__") || separator.bytes().all(|s| s == b'-');
            if !allowed {
                return false;
            }
            separator.clear();
        } else if b"._-".contains(&b) {
            separator.push(b as char);
        } else {
            return false;
        }
    }
    true
}

/// A registry host: DNS labels (letters, digits, inner dashes) joined by dots, and a port.
fn domain(part: &str) -> bool {
    let (host, port) = match part.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (part, None),
    };
    let label = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    host.split('.').all(label) && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// (registry, repository), as distribution's `splitDomain` makes them.
fn split_domain(name: &str) -> Option<(String, String)> {
    let (registry, remainder) = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            domain(first).then_some(())?;
            (first, rest)
        }
        _ => (HUB, name),
    };
    if !remainder.split('/').all(path_component) {
        return None;
    }
    let registry = if registry == HUB_LEGACY { HUB } else { registry };
    let repository =
        if registry == HUB && !remainder.contains('/') { format!("library/{remainder}") } else { remainder.to_owned() };
    Some((registry.to_owned(), repository))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_as_oci_spec_does() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let cases = [
            "nginx".to_owned(),
            "nginx:1.25".into(),
            "library/nginx".into(),
            "index.docker.io/nginx".into(),
            "docker.io/team/app:2".into(),
            "localhost/app".into(),
            "localhost:5000/a/b/c:v1.0-rc_1".into(),
            "127.0.0.1:5000/shop/web:1.0.0".into(),
            "registry.example.com/a__b/c-d/e.f:tag".into(),
            "my-registry.example:443/x/y".into(),
            format!("127.0.0.1:5000/shop/web@{digest}"),
            format!("127.0.0.1:5000/shop/web:1@{digest}"),
            format!("a@{digest}"),
            // Edge cases, most of them refused:
            "".into(),
            "a//b".into(),
            "a/b:".into(),
            "a/b:-tag".into(),
            "a/b@sha256:abc".into(),
            "a/b@md5:0123456789abcdef0123456789abcdef".into(),
            "-a/b".into(),
            "a-/b".into(),
            "a/b_".into(),
            "a/b..c".into(),
            "a/b___c".into(),
            "a/b-_c".into(),
            "host:port/a".into(),
            "-host.example/a".into(),
            "https://example.com/a".into(),
            "disks/fedora.qcow2".into(),
            format!("a/{}", "b".repeat(300)),
            format!("a:{}", "t".repeat(129)),
        ];
        for case in &cases {
            let ours = parse(case).map(|r| r.to_string());
            let theirs = case.parse::<Reference>().ok().map(|r| r.to_string());
            assert_eq!(ours, theirs, "{case:?}");
        }
        // oci-spec takes a first component in capitals as a Docker Hub path, which no registry
        // accepts; ferry refuses it at once.
        assert!("UPPER/case".parse::<Reference>().is_ok() && parse("UPPER/case").is_none());
    }
}
