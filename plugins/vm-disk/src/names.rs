//! Names: the disk's place in a KubeVirt containerDisk layer.

use ferry_driver_sdk::{Error, Result, TarEntry, TarEntryKind};

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
