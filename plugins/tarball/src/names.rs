//! Names: the directory a tarball is extracted into.

use ferry_driver_sdk::names::safe_name;

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
