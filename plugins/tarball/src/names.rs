//! Names: the tarball's file name in a registry, and the directory a tarball is extracted into.

use ferry_driver_sdk::names::{is_plain, safe_name};

/// The repository's last segment of `registry/repo:tag[@digest]`: `repo`.
pub fn repository_name(reference: &str) -> Option<&str> {
    let name = reference.split('@').next()?.rsplit('/').next()?;
    let name = name.split(':').next()?;
    is_plain(name).then_some(name)
}

/// The directory a tarball is extracted into: its file name without the tar extension.
pub fn dir_name(file_name: &str) -> String {
    let lower = file_name.to_ascii_lowercase();
    let stem = [".tar.gz", ".tgz", ".tar.zst", ".tar"]
        .iter()
        .find(|ext| lower.ends_with(*ext))
        .map_or(file_name, |ext| &file_name[..file_name.len() - ext.len()]);
    safe_name(stem, "tarball", 255)
}

#[cfg(test)]
mod tests {
    use super::*;

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
