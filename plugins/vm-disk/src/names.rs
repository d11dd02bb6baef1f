//! Names: the disk's file name, the tag of a relocated image, and the disk's place in a KubeVirt
//! containerDisk layer.

use ferry_driver_sdk::ferry::driver::types::{TarEntry, TarEntryKind};
use ferry_driver_sdk::{Error, Result};

/// The last segment of a path, URL path or tar entry name, if it can name a file.
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

/// The relocated image's tag: the original tag when `reference` is a registry reference with one,
/// else a tag made from the file name.
pub fn tag(reference: &str, file_name: &str) -> String {
    registry_tag(reference).map_or_else(|| tag_for(file_name), str::to_owned)
}

/// The tag of `registry/repo:tag[@digest]`; `None` for URLs and for anything that is not a tag.
fn registry_tag(reference: &str) -> Option<&str> {
    if reference.contains("://") {
        return None;
    }
    let name = reference.split('@').next()?;
    let (_, tag) = name.rsplit('/').next()?.split_once(':')?;
    (tag_for(tag) == tag).then_some(tag)
}

/// A tag from a file name: the characters OCI allows in a tag, at most 128 of them.
fn tag_for(name: &str) -> String {
    let tag: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).take(128).collect();
    if tag.is_empty() || tag.starts_with(['.', '-']) { format!("disk{tag}") } else { tag }
}

/// The one regular file under `disk/` among a layer's entries, as KubeVirt finds it.
pub fn disk_entry(entries: &[TarEntry]) -> Result<Option<&TarEntry>> {
    let mut found = entries.iter().filter(|entry| entry.kind == TarEntryKind::File && in_disk_dir(&entry.name));
    match (found.next(), found.next()) {
        (Some(first), Some(second)) => {
            Err(Error::invalid(format!("several files under disk/: {:?} and {:?}", first.name, second.name)))
        }
        (first, _) => Ok(first),
    }
}

/// `disk/NAME`, `./disk/NAME` or `/disk/NAME`, whiteouts left out.
fn in_disk_dir(name: &str) -> bool {
    let mut name = name;
    while let Some(rest) = name.strip_prefix("./").or_else(|| name.strip_prefix('/')) {
        name = rest;
    }
    name.strip_prefix("disk/")
        .is_some_and(|rest| rest.rsplit('/').next().is_some_and(|last| !last.is_empty() && !last.starts_with(".wh.")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, kind: TarEntryKind) -> TarEntry {
        TarEntry { name: name.into(), kind, size: 1, link: None, mode: 0o644 }
    }

    #[test]
    fn file_names() {
        for (location, expected) in [
            ("disks/fedora.qcow2", Some("fedora.qcow2")),
            ("fedora.qcow2", Some("fedora.qcow2")),
            ("https://example.com/images/fedora.qcow2?sig=abc#top", Some("fedora.qcow2")),
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
    fn tags() {
        for (reference, file, expected) in [
            ("quay.io/containerdisks/fedora:40", "disk.img", "40"),
            ("localhost:5000/disks/fedora:v1@sha256:abcd", "disk.img", "v1"),
            ("localhost:5000/disks/fedora@sha256:abcd", "fedora.qcow2", "fedora.qcow2"),
            ("disks/fedora.qcow2", "fedora.qcow2", "fedora.qcow2"),
            ("https://example.com:8443/fedora 40.qcow2", "fedora 40.qcow2", "fedora_40.qcow2"),
            ("C:\\disks\\fedora.qcow2", "fedora.qcow2", "fedora.qcow2"),
            ("disks/.hidden", ".hidden", "disk.hidden"),
        ] {
            assert_eq!(tag(reference, file), expected, "{reference}");
        }
        assert_eq!(tag("disk", &"x".repeat(300)).len(), 128);
    }

    #[test]
    fn finds_the_disk_in_a_layer() {
        use TarEntryKind::*;
        for (names, expected) in [
            (vec![("disk/", Directory), ("disk/fedora.qcow2", File)], Some("disk/fedora.qcow2")),
            (vec![("./disk/fedora.qcow2", File)], Some("./disk/fedora.qcow2")),
            (vec![("/disk/fedora.qcow2", File)], Some("/disk/fedora.qcow2")),
            (vec![("disk/.wh.old.qcow2", File), ("etc/disk.img", File), ("disk/x", Symlink)], None),
            (vec![("diskette/a.img", File)], None),
        ] {
            let entries: Vec<_> = names.into_iter().map(|(name, kind)| entry(name, kind)).collect();
            let found = disk_entry(&entries).unwrap().map(|entry| entry.name.as_str());
            assert_eq!(found, expected);
        }
        let two = [entry("disk/a.img", TarEntryKind::File), entry("./disk/b.img", TarEntryKind::File)];
        assert!(disk_entry(&two).unwrap_err().message().contains("several files under disk/"));
    }
}
