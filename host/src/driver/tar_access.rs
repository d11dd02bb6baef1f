//! Tar archives as drivers use them, worked by the host so their bytes never enter a guest:
//! listing entries, one entry as a source of its own, a reproducible one-file layer, and safe
//! extraction into a directory.

use super::bindings::since_v0_1_0::ferry::driver::types::{TarEntry, TarEntryKind, TarFile};
use crate::archive::decompress;
use crate::oci::BlobFile;
use anyhow::{Context, Result, bail};
use cap_std::fs::Dir;
use std::collections::BTreeSet;
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

/// More entries than this and a listing is refused: the guest would hold them all.
pub const MAX_ENTRIES: usize = 100_000;

fn archive(blob: &BlobFile) -> Result<tar::Archive<Box<dyn Read + '_>>> {
    Ok(tar::Archive::new(decompress(BufReader::with_capacity(1 << 20, blob.reader()))?))
}

fn kind(entry_type: tar::EntryType) -> TarEntryKind {
    match entry_type {
        tar::EntryType::Regular | tar::EntryType::Continuous => TarEntryKind::File,
        tar::EntryType::Directory => TarEntryKind::Directory,
        tar::EntryType::Symlink => TarEntryKind::Symlink,
        tar::EntryType::Link => TarEntryKind::Hardlink,
        _ => TarEntryKind::Other,
    }
}

/// Every entry of the tar in `blob` (plain, gzip or zstd), names as the archive writes them.
pub fn entries(blob: &BlobFile) -> Result<Vec<TarEntry>> {
    let mut archive = archive(blob)?;
    let mut listed = Vec::new();
    for entry in archive.entries()? {
        let entry = entry?;
        if listed.len() == MAX_ENTRIES {
            bail!("the archive has more than {MAX_ENTRIES} entries");
        }
        let header = entry.header();
        listed.push(TarEntry {
            name: String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
            kind: kind(header.entry_type()),
            size: entry.size(),
            link: entry.link_name_bytes().map(|l| String::from_utf8_lossy(&l).into_owned()),
            mode: header.mode().unwrap_or(0),
        });
    }
    Ok(listed)
}

/// The regular file `name` inside the tar in `blob`: a byte range of `blob` when the tar is
/// uncompressed, else a temporary copy in `scratch`.
pub fn entry(blob: &BlobFile, name: &str, scratch: &Path) -> Result<BlobFile> {
    let compressed = {
        let mut magic = [0u8; 4];
        let n = blob.read_at(&mut magic, 0)?;
        crate::archive::is_compressed_magic(&magic[..n])
    };
    let mut archive = archive(blob)?;
    for entry in archive.entries()? {
        let mut entry = entry?;
        if *entry.path_bytes() != *name.as_bytes() {
            continue;
        }
        if kind(entry.header().entry_type()) != TarEntryKind::File {
            bail!("{name:?} is not a regular file in the archive");
        }
        if !compressed {
            return Ok(blob.slice(entry.raw_file_position(), entry.size()));
        }
        let mut copy = tempfile::tempfile_in(scratch)?;
        io::copy(&mut entry, &mut io::BufWriter::with_capacity(1 << 20, &mut copy))?;
        return Ok(BlobFile::whole(copy)?);
    }
    bail!("the archive has no entry {name:?}")
}

fn header(name: &str, size: u64, file: &TarFile, entry_type: tar::EntryType, mode: u32) -> Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name).with_context(|| format!("tar entry name {name:?}"))?;
    h.set_size(size);
    h.set_mode(mode);
    h.set_entry_type(entry_type);
    h.set_mtime(0);
    h.set_uid(file.uid.into());
    h.set_gid(file.gid.into());
    h.set_cksum();
    Ok(h)
}

/// The headers before the file's bytes (its parent directories, then its own header) and the
/// padding and end-of-archive blocks after them. Same file, same bytes.
pub fn one_file_layer(file: &TarFile, size: u64) -> Result<(Vec<u8>, Vec<u8>)> {
    let path = Path::new(&file.name);
    if file.name.is_empty() || !path.components().all(|c| matches!(c, Component::Normal(_))) {
        bail!("tar file name {:?} must be a relative path without . or ..", file.name);
    }
    let mut head = Vec::new();
    let mut parent = PathBuf::new();
    let parts: Vec<_> = path.components().collect();
    for part in &parts[..parts.len() - 1] {
        parent.push(part);
        let name = format!("{}/", parent.display());
        head.extend_from_slice(header(&name, 0, file, tar::EntryType::Directory, 0o755)?.as_bytes());
    }
    head.extend_from_slice(header(&file.name, size, file, tar::EntryType::Regular, file.mode & 0o777)?.as_bytes());
    let padding = (512 - size % 512) % 512;
    Ok((head, vec![0; padding as usize + 1024]))
}

/// Extracts the tar in `blob` into `into`, which must be empty. Refused, naming the entry:
/// absolute names, `..`, links whose target leaves the directory, devices and fifos,
/// duplicates. Modes keep only the permission bits.
pub fn extract(blob: &BlobFile, into: &Dir) -> Result<()> {
    let mut archive = archive(blob)?;
    let mut seen = BTreeSet::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let name = clean(Path::new(&raw), Path::new("")).with_context(|| format!("entry {raw:?}"))?;
        if name.as_os_str().is_empty() {
            continue;
        }
        if !seen.insert(name.clone()) {
            bail!("entry {raw:?} appears twice");
        }
        let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
        if let Some(parent) = name.parent().filter(|p| !p.as_os_str().is_empty()) {
            into.create_dir_all(parent)?;
        }
        match kind(entry.header().entry_type()) {
            TarEntryKind::Directory => into.create_dir_all(&name)?,
            TarEntryKind::File => {
                let mut out = into.create(&name).with_context(|| format!("entry {raw:?}"))?;
                io::copy(&mut entry, &mut out)?;
                out.flush()?;
                use cap_std::fs::PermissionsExt;
                out.set_permissions(cap_std::fs::Permissions::from_mode(mode))?;
            }
            TarEntryKind::Symlink => {
                let target = link(&entry, &raw)?;
                clean(&target, name.parent().unwrap_or(Path::new("")))
                    .with_context(|| format!("symlink {raw:?} -> {}", target.display()))?;
                into.symlink(&target, &name)?;
            }
            TarEntryKind::Hardlink => {
                let target = link(&entry, &raw)?;
                let target = clean(&target, Path::new("")).with_context(|| format!("hard link {raw:?}"))?;
                into.hard_link(&target, into, &name).with_context(|| format!("hard link {raw:?}"))?;
            }
            TarEntryKind::Other => bail!("entry {raw:?} is a device or fifo; only files, directories and links"),
        }
    }
    Ok(())
}

fn link<R: Read>(entry: &tar::Entry<R>, raw: &str) -> Result<PathBuf> {
    let target = entry.link_name_bytes().with_context(|| format!("link {raw:?} has no target"))?;
    Ok(PathBuf::from(String::from_utf8_lossy(&target).into_owned()))
}

/// `path` (relative to `base`) made lexical and checked to stay inside the root.
fn clean(path: &Path, base: &Path) -> Result<PathBuf> {
    let mut out = base.to_path_buf();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    bail!("it points outside the directory (..)");
                }
            }
            Component::RootDir | Component::Prefix(_) => bail!("it is an absolute path"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> BlobFile {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, entry_type, bytes, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*entry_type);
            h.set_size(bytes.len() as u64);
            h.set_mode(0o644);
            // Names are written raw: the tar crate refuses `..` in set_path, and archives in
            // the wild do not.
            let field = &mut h.as_old_mut().name;
            field[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(link) = link {
                h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
            h.set_cksum();
            builder.append(&h, *bytes).unwrap();
        }
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&builder.into_inner().unwrap()).unwrap();
        BlobFile::whole(file).unwrap()
    }

    #[test]
    fn extraction_refuses_names_and_links_that_leave_the_directory() {
        use tar::EntryType::{Regular, Symlink};
        for (entries, expected) in [
            (vec![("../evil", Regular, &b"x"[..], None)], "outside"),
            (vec![("/etc/evil", Regular, &b"x"[..], None)], "absolute"),
            (vec![("a/../../evil", Regular, &b"x"[..], None)], "outside"),
            (vec![("link", Symlink, &b""[..], Some("../../etc"))], "outside"),
            (vec![("link", Symlink, &b""[..], Some("/etc"))], "absolute"),
            (vec![("a", Regular, &b"x"[..], None), ("./a", Regular, &b"y"[..], None)], "twice"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let into = Dir::open_ambient_dir(dir.path(), cap_std::ambient_authority()).unwrap();
            let err = extract(&tar_of(&entries), &into).unwrap_err();
            assert!(format!("{err:#}").contains(expected), "{entries:?}: {err:#}");
        }
    }

    #[test]
    fn extraction_writes_files_directories_and_inner_links() {
        use tar::EntryType::{Directory, Regular, Symlink};
        let blob = tar_of(&[
            ("app/", Directory, b"", None),
            ("app/bin/run", Regular, b"#!/bin/sh\n", None),
            ("app/current", Symlink, b"", Some("bin/run")),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let into = Dir::open_ambient_dir(dir.path(), cap_std::ambient_authority()).unwrap();
        extract(&blob, &into).unwrap();
        assert_eq!(std::fs::read(dir.path().join("app/current")).unwrap(), b"#!/bin/sh\n");
        let listed = entries(&blob).unwrap();
        assert_eq!(listed.len(), 3);
        assert_eq!(listed[2].link.as_deref(), Some("bin/run"));
        let run = entry(&blob, "app/bin/run", dir.path()).unwrap();
        let mut bytes = Vec::new();
        run.reader().read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes, b"#!/bin/sh\n");
    }

    #[test]
    fn a_one_file_layer_is_a_tar_that_tar_reads() {
        let file = TarFile { name: "disk/root.qcow2".into(), mode: 0o440, uid: 107, gid: 107 };
        let (head, tail) = one_file_layer(&file, 5).unwrap();
        let bytes = [head, b"hello".to_vec(), tail].concat();
        let mut archive = tar::Archive::new(&bytes[..]);
        let names: Vec<(String, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().display().to_string(), e.header().uid().unwrap())
            })
            .collect();
        assert_eq!(names, [("disk/".to_owned(), 107), ("disk/root.qcow2".to_owned(), 107)]);
        assert!(one_file_layer(&TarFile { name: "../x".into(), ..file }, 1).is_err());
    }
}
