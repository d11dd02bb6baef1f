//! Names a driver derives from where an image comes from: a file's name, a registry reference's
//! tag, and tags or directory names made from any text.

/// OCI's limit on a tag's length.
const MAX_TAG: usize = 128;

/// The last segment of a path, URL path or tar entry name, if it can name a file. A URL's query
/// and fragment are not part of its path.
pub fn file_name(location: &str) -> Option<&str> {
    let path = match location.split_once("://") {
        Some((_, rest)) => rest.split(['?', '#']).next()?.split_once('/')?.1,
        None => location,
    };
    let name = path.rsplit('/').next()?;
    is_plain(name).then_some(name)
}

/// A name without directories that stays where it is put.
pub fn is_plain(name: &str) -> bool {
    !matches!(name, "" | "." | "..") && !name.contains(['/', '\0'])
}

/// The repository's last segment of `registry/repo:tag[@digest]`: `repo`.
pub fn repository_name(reference: &str) -> Option<&str> {
    let name = reference.split('@').next()?.rsplit('/').next()?;
    let name = name.split(':').next()?;
    is_plain(name).then_some(name)
}

/// The tag of `registry/repo:tag[@digest]`, as written; `None` for URLs and references without one.
pub fn reference_tag(reference: &str) -> Option<&str> {
    // `https://host:8443/x` would otherwise read as a tag of `host`.
    if reference.contains("://") {
        return None;
    }
    let name = reference.split('@').next()?;
    name.rsplit('/').next()?.split_once(':').map(|(_, tag)| tag)
}

/// The tag to relocate an image under: the tag of `reference` when it has a valid one, else one
/// made from `file_name` (see [`tag_for`]).
pub fn relocation_tag(reference: &str, file_name: &str, fallback_prefix: &str) -> String {
    reference_tag(reference)
        .filter(|tag| is_tag(tag))
        .map_or_else(|| tag_for(file_name, fallback_prefix), str::to_owned)
}

/// A valid tag made from `name`: see [`safe_name`].
pub fn tag_for(name: &str, fallback_prefix: &str) -> String {
    safe_name(name, fallback_prefix, MAX_TAG)
}

/// `name` with only the characters OCI allows in a tag (the others become `_`), at most `max` of
/// them. A registry refuses a tag, and a file system hides a name, that is empty or starts with `.`
/// or `-`: `fallback_prefix` goes before such a name.
pub fn safe_name(name: &str, fallback_prefix: &str, max: usize) -> String {
    let safe: String = name.chars().map(|c| if is_tag_char(c) { c } else { '_' }).take(max).collect();
    if safe.is_empty() || safe.starts_with(['.', '-']) {
        format!("{fallback_prefix}{safe}").chars().take(max).collect()
    } else {
        safe
    }
}

fn is_tag(tag: &str) -> bool {
    !tag.is_empty() && tag.len() <= MAX_TAG && !tag.starts_with(['.', '-']) && tag.chars().all(is_tag_char)
}

fn is_tag_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._-".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names() {
        for (reference, expected) in [
            ("localhost:5000/files/site:v1", Some("site")),
            ("registry.example.com/site@sha256:abcd", Some("site")),
            ("localhost:5000/team/installer:1@sha256:abcd", Some("installer")),
            ("site", Some("site")),
            ("localhost:5000/team/..:1", None),
        ] {
            assert_eq!(repository_name(reference), expected, "{reference}");
        }
    }

    #[test]
    fn file_names() {
        for (location, expected) in [
            ("disks/fedora.qcow2", Some("fedora.qcow2")),
            ("fedora.qcow2", Some("fedora.qcow2")),
            ("https://example.com/images/fedora.qcow2?sig=abc#top", Some("fedora.qcow2")),
            ("https://example.com/dl/site.tgz?token=x", Some("site.tgz")),
            ("https://example.com/images/", None),
            ("https://example.com", None),
            ("./disk/fedora.img", Some("fedora.img")),
            ("disks/..", None),
            ("", None),
        ] {
            assert_eq!(file_name(location), expected, "{location}");
        }
    }

    #[test]
    fn reference_tags() {
        for (reference, expected) in [
            ("quay.io/containerdisks/fedora:40", Some("40")),
            ("localhost:5000/disks/fedora:v1@sha256:abcd", Some("v1")),
            ("localhost:5000/disks/fedora@sha256:abcd", None),
            ("localhost:5000/disks/fedora", None),
            ("https://example.com:8443/fedora.qcow2", None),
        ] {
            assert_eq!(reference_tag(reference), expected, "{reference}");
        }
    }

    #[test]
    fn relocation_tags() {
        for (reference, file, prefix, expected) in [
            ("quay.io/containerdisks/fedora:40", "disk.img", "disk", "40"),
            ("localhost:5000/disks/fedora:v1@sha256:abcd", "disk.img", "disk", "v1"),
            ("localhost:5000/disks/fedora@sha256:abcd", "fedora.qcow2", "disk", "fedora.qcow2"),
            ("disks/fedora.qcow2", "fedora.qcow2", "disk", "fedora.qcow2"),
            ("https://example.com:8443/fedora 40.qcow2", "fedora 40.qcow2", "disk", "fedora_40.qcow2"),
            ("C:\\disks\\fedora.qcow2", "fedora.qcow2", "disk", "fedora.qcow2"),
            ("disks/.hidden", ".hidden", "disk", "disk.hidden"),
            ("localhost:5000/files/site:v1", "site.tar", "tarball", "v1"),
            ("localhost:5000/files/site@sha256:abcd", "site.tar", "tarball", "site.tar"),
            ("https://example.com:8443/site (1).tgz", "site (1).tgz", "tarball", "site__1_.tgz"),
            ("files/-x.tar", "-x.tar", "tarball", "tarball-x.tar"),
            ("localhost:5000/files/site:-x", "site.tar", "tarball", "site.tar"),
        ] {
            assert_eq!(relocation_tag(reference, file, prefix), expected, "{reference}");
        }
        assert_eq!(relocation_tag("f", &"x".repeat(300), "disk").len(), 128);
        assert_eq!(relocation_tag("f", &format!(".{}", "x".repeat(300)), "disk").len(), 128);
    }
}
