//! Names: the tarball's file name, the tag of a relocated artifact, and the directory a tarball
//! is extracted into.

/// The last segment of a path or URL path, if it can name a file.
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

/// The relocated artifact's tag: the original tag when `reference` is a registry reference with
/// one, else a tag made from the file name.
pub fn tag(reference: &str, file_name: &str) -> String {
    registry_tag(reference).map_or_else(|| sanitize(file_name, 128), str::to_owned)
}

/// The tag of `registry/repo:tag[@digest]`; `None` for URLs and for anything that is not a tag.
fn registry_tag(reference: &str) -> Option<&str> {
    if reference.contains("://") {
        return None;
    }
    let name = reference.split('@').next()?;
    let (_, tag) = name.rsplit('/').next()?.split_once(':')?;
    (sanitize(tag, 128) == tag).then_some(tag)
}

/// The directory a tarball is extracted into: its file name without the tar extension.
pub fn dir_name(file_name: &str) -> String {
    let lower = file_name.to_ascii_lowercase();
    let stem = [".tar.gz", ".tgz", ".tar.zst", ".tar"]
        .iter()
        .find(|ext| lower.ends_with(*ext))
        .map_or(file_name, |ext| &file_name[..file_name.len() - ext.len()]);
    sanitize(stem, 255)
}

/// `name` with the characters OCI allows in a tag, at most `max` of them; never empty, never
/// starting with `.` or `-`.
fn sanitize(name: &str, max: usize) -> String {
    let safe: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).take(max).collect();
    if safe.is_empty() || safe.starts_with(['.', '-']) {
        format!("tarball{safe}").chars().take(max).collect()
    } else {
        safe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        for (location, expected) in [
            ("files/site.tar.gz", Some("site.tar.gz")),
            ("https://example.com/dl/site.tgz?token=x", Some("site.tgz")),
            ("https://example.com/", None),
            ("files/..", None),
        ] {
            assert_eq!(file_name(location), expected, "{location}");
        }
    }

    #[test]
    fn repository_names() {
        for (reference, expected) in [
            ("localhost:5000/files/site:v1", Some("site")),
            ("registry.example.com/site@sha256:abcd", Some("site")),
            ("site", Some("site")),
        ] {
            assert_eq!(repository_name(reference), expected, "{reference}");
        }
    }

    #[test]
    fn tags() {
        for (reference, file, expected) in [
            ("localhost:5000/files/site:v1", "site.tar", "v1"),
            ("localhost:5000/files/site:v1@sha256:abcd", "site.tar", "v1"),
            ("localhost:5000/files/site@sha256:abcd", "site.tar", "site.tar"),
            ("files/site.tar.gz", "site.tar.gz", "site.tar.gz"),
            ("https://example.com:8443/site (1).tgz", "site (1).tgz", "site__1_.tgz"),
            ("files/-x.tar", "-x.tar", "tarball-x.tar"),
        ] {
            assert_eq!(tag(reference, file), expected, "{reference}");
        }
        assert_eq!(tag("f", &"x".repeat(300)).len(), 128);
    }

    #[test]
    fn dir_names() {
        for (file, expected) in [
            ("site.tar.gz", "site"),
            ("site.TGZ", "site"),
            ("site.tar.zst", "site"),
            ("site.tar", "site"),
            ("site.zip", "site.zip"),
            ("my site.tar", "my_site"),
            (".tar", "tarball"),
            ("...tar", "tarball.."),
            ("..tar.gz", "tarball."),
        ] {
            assert_eq!(dir_name(file), expected, "{file}");
        }
    }
}
