//! Tar archives as drivers use them, worked by the host so their bytes never enter a guest:
//! listing entries, one entry as a source of its own, a reproducible one-file layer, and safe
//! extraction into a directory.

use crate::archive::decompress;
use crate::oci::BlobFile;
use anyhow::{Context, Result, bail};
use cap_std::fs::Dir;
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

/// More entries than this and a listing is refused: the guest would hold them all.
pub const MAX_ENTRIES: usize = 100_000;

fn archive(blob: &BlobFile) -> Result<tar::Archive<Box<dyn Read + '_>>> {
    Ok(tar::Archive::new(decompress(BufReader::with_capacity(1 << 20, blob.reader()))?))
}

/// What a tar entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Directory,
    Symlink,
    Hardlink,
    /// A device, fifo or anything else extraction refuses.
    Other,
}

/// One entry of a tar, as a listing reports it: the name as the archive writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub kind: Kind,
    pub size: u64,
    pub link: Option<String>,
    pub mode: u32,
}

/// The one file of a layer made by [`one_file_layer`]: its path in the layer and owner.
#[derive(Clone, Debug)]
pub struct LayerFile {
    pub name: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

fn kind(entry_type: tar::EntryType) -> Kind {
    match entry_type {
        tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File,
        tar::EntryType::Directory => Kind::Directory,
        tar::EntryType::Symlink => Kind::Symlink,
        tar::EntryType::Link => Kind::Hardlink,
        _ => Kind::Other,
    }
}

/// Every entry of the tar in `blob` (plain, gzip or zstd), names as the archive writes them.
pub fn entries(blob: &BlobFile, deadline: Deadline) -> Result<Vec<Entry>> {
    let mut archive = archive(blob)?;
    let mut listed = Vec::new();
    for entry in archive.entries()? {
        deadline.check()?;
        let entry = entry?;
        if listed.len() == MAX_ENTRIES {
            bail!("the archive has more than {MAX_ENTRIES} entries");
        }
        let header = entry.header();
        listed.push(Entry {
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
pub fn entry(blob: &BlobFile, name: &str, scratch: &Path, deadline: Deadline) -> Result<BlobFile> {
    let compressed = {
        let mut magic = [0u8; 4];
        let n = blob.read_at(&mut magic, 0)?;
        crate::archive::is_compressed_magic(&magic[..n])
    };
    let mut archive = archive(blob)?;
    for entry in archive.entries()? {
        deadline.check()?;
        let mut entry = entry?;
        if *entry.path_bytes() != *name.as_bytes() {
            continue;
        }
        if kind(entry.header().entry_type()) != Kind::File {
            bail!("{name:?} is not a regular file in the archive");
        }
        if !compressed {
            return Ok(blob.slice(entry.raw_file_position(), entry.size()));
        }
        let mut copy = tempfile::tempfile_in(scratch)?;
        copy_checked(&mut entry, &mut io::BufWriter::with_capacity(1 << 20, &mut copy), deadline)?;
        return Ok(BlobFile::whole(copy)?);
    }
    bail!("the archive has no entry {name:?}")
}

fn header(name: &str, size: u64, file: &LayerFile, entry_type: tar::EntryType, mode: u32) -> Result<tar::Header> {
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
pub fn one_file_layer(file: &LayerFile, size: u64) -> Result<(Vec<u8>, Vec<u8>)> {
    let path = Path::new(&file.name);
    if file.name.is_empty() || !crate::files::stays_inside(path) {
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

/// The operation's deadline, checked inside the host's own long loops (listing, copying out
/// and extracting an archive), which the epoch cannot interrupt.
#[derive(Clone, Copy)]
pub struct Deadline(pub Instant);

/// The error a [`Deadline`] check returns, so that the caller can report the time limit.
#[derive(Debug, thiserror::Error)]
#[error("the driver's time limit passed while the host worked on an archive")]
pub struct Expired;

impl Deadline {
    fn check(&self) -> Result<()> {
        if Instant::now() >= self.0 {
            return Err(Expired.into());
        }
        Ok(())
    }
}

/// `io::copy` that checks the deadline between chunks, so a decompression bomb stops at the
/// time limit instead of after it.
fn copy_checked(from: &mut dyn Read, to: &mut dyn Write, deadline: Deadline) -> Result<u64> {
    let mut buffer = vec![0u8; 1 << 20];
    let mut copied = 0u64;
    loop {
        deadline.check()?;
        let n = match from.read(&mut buffer) {
            Ok(0) => return Ok(copied),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        to.write_all(&buffer[..n])?;
        copied += n as u64;
    }
}

/// Extracts the tar in `blob` into `into`, which must be empty. Refused, naming the entry:
/// absolute names, `..`, links whose target leaves the directory once every link before and
/// after them is followed, entries that land where an earlier one is, devices and fifos, more
/// than [`MAX_ENTRIES`] entries. Modes keep only the permission bits. The caller verifies the
/// blob's digest first and discards `into` on any error.
pub fn extract(blob: &BlobFile, into: &Dir, deadline: Deadline) -> Result<()> {
    let mut archive = archive(blob)?;
    let mut tree = Tree::default();
    for (count, entry) in archive.entries()?.enumerate() {
        deadline.check()?;
        if count == MAX_ENTRIES {
            bail!("the archive has more than {MAX_ENTRIES} entries");
        }
        let mut entry = entry?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let name = clean(Path::new(&raw)).with_context(|| format!("entry {raw:?}"))?;
        let Some(file_name) = name.file_name() else { continue };
        // Where the entry lands once the links extracted so far are followed (as the kernel
        // follows them when the file is created).
        let parent = tree.resolve(Path::new(""), name.parent().unwrap_or(Path::new("")), true)?;
        let landed = parent.join(file_name);
        let entry_kind = kind(entry.header().entry_type());
        match tree.nodes.get(&landed) {
            Some(Node::Directory) if entry_kind == Kind::Directory => continue,
            Some(_) => bail!("entry {raw:?} lands on {}, where an earlier entry is", landed.display()),
            None => {}
        }
        tree.add_directories(into, &parent)?;
        let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
        match entry_kind {
            Kind::Directory => {
                into.create_dir(&landed).with_context(|| format!("entry {raw:?}"))?;
                tree.nodes.insert(landed, Node::Directory);
            }
            Kind::File => {
                let mut out = into.create(&landed).with_context(|| format!("entry {raw:?}"))?;
                copy_checked(&mut entry, &mut out, deadline)?;
                out.flush()?;
                use cap_std::fs::PermissionsExt;
                out.set_permissions(cap_std::fs::Permissions::from_mode(mode))?;
                tree.nodes.insert(landed, Node::File);
            }
            Kind::Symlink => {
                let target = link(&entry, &raw)?;
                tree.resolve(&parent, &target, true)
                    .with_context(|| format!("symlink {raw:?} -> {}", target.display()))?;
                into.symlink(&target, &landed).with_context(|| format!("symlink {raw:?}"))?;
                tree.nodes.insert(landed, Node::Link(target));
            }
            Kind::Hardlink => {
                let target = link(&entry, &raw)?;
                let named = clean(&target).with_context(|| format!("hard link {raw:?}"))?;
                let source =
                    tree.resolve(Path::new(""), &named, false).with_context(|| format!("hard link {raw:?}"))?;
                // A hard link to a symlink is a second symlink, judged where it now stands.
                let node = match tree.nodes.get(&source) {
                    Some(Node::File) => Node::File,
                    Some(Node::Link(to)) => Node::Link(to.clone()),
                    _ => bail!("hard link {raw:?} -> {}: no earlier file of that name", target.display()),
                };
                into.hard_link(&source, into, &landed).with_context(|| format!("hard link {raw:?}"))?;
                tree.nodes.insert(landed, node);
            }
            Kind::Other => bail!("entry {raw:?} is a device or fifo; only files, directories and links"),
        }
    }
    // An entry extracted after a link can change where that link leads: judge every link again
    // against the finished tree.
    for (path, node) in &tree.nodes {
        if let Node::Link(target) = node {
            tree.resolve(path.parent().unwrap_or(Path::new("")), target, true)
                .with_context(|| format!("symlink {} -> {}", path.display(), target.display()))?;
        }
    }
    Ok(())
}

/// What extraction has made so far, by the path it really has (no links in it).
#[derive(Default)]
struct Tree {
    nodes: std::collections::HashMap<PathBuf, Node>,
}

enum Node {
    Directory,
    File,
    Link(PathBuf),
}

/// Links followed in one resolution before it is called a loop (Linux's ELOOP limit).
const MAX_LINK_HOPS: u32 = 40;

impl Tree {
    /// `path`, relative to the real directory `base`, with every link in the tree followed (the
    /// last one only with `follow_last`); an error if it would leave the root.
    fn resolve(&self, base: &Path, path: &Path, follow_last: bool) -> Result<PathBuf> {
        let mut hops = 0;
        self.resolve_counting(base, path, follow_last, &mut hops)
    }

    fn resolve_counting(&self, base: &Path, path: &Path, follow_last: bool, hops: &mut u32) -> Result<PathBuf> {
        let mut at = base.to_path_buf();
        let parts: Vec<Component> = path.components().collect();
        for (i, part) in parts.iter().enumerate() {
            match part {
                Component::RootDir | Component::Prefix(_) => bail!("it is an absolute path"),
                Component::CurDir => {}
                Component::ParentDir => {
                    if !at.pop() {
                        bail!("it points outside the directory (..)");
                    }
                }
                Component::Normal(name) => {
                    let next = at.join(name);
                    match self.nodes.get(&next) {
                        Some(Node::Link(target)) if follow_last || i + 1 < parts.len() => {
                            *hops += 1;
                            if *hops > MAX_LINK_HOPS {
                                bail!("links lead through more than {MAX_LINK_HOPS} others (a loop?)");
                            }
                            at = self.resolve_counting(&at, target, true, hops)?;
                        }
                        _ => at = next,
                    }
                }
            }
        }
        Ok(at)
    }

    /// Creates `path` and its parents as directories, noting them.
    fn add_directories(&mut self, into: &Dir, path: &Path) -> Result<()> {
        if path.as_os_str().is_empty() || matches!(self.nodes.get(path), Some(Node::Directory)) {
            return Ok(());
        }
        into.create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        let mut prefix = PathBuf::new();
        for part in path.components() {
            prefix.push(part);
            self.nodes.entry(prefix.clone()).or_insert(Node::Directory);
        }
        Ok(())
    }
}

fn link<R: Read>(entry: &tar::Entry<R>, raw: &str) -> Result<PathBuf> {
    let target = entry.link_name_bytes().with_context(|| format!("link {raw:?} has no target"))?;
    Ok(PathBuf::from(String::from_utf8_lossy(&target).into_owned()))
}

/// An entry's name made lexical and checked to stay inside the root.
fn clean(path: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
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

    /// Why extracting `entries` into an empty directory is refused.
    fn refusal(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let into = Dir::open_ambient_dir(dir.path(), cap_std::ambient_authority()).unwrap();
        format!("{:#}", extract(&tar_of(entries), &into, later()).unwrap_err())
    }

    fn later() -> Deadline {
        Deadline(Instant::now() + std::time::Duration::from_secs(60))
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
            (vec![("a", Regular, &b"x"[..], None), ("./a", Regular, &b"y"[..], None)], "earlier entry"),
        ] {
            let err = refusal(&entries);
            assert!(err.contains(expected), "{entries:?}: {err}");
        }
    }

    /// Each link below is lexically inside; followed as the kernel follows them, they leave.
    #[test]
    fn links_are_judged_where_they_resolve_not_by_their_text() {
        use tar::EntryType::{Directory, Link, Regular, Symlink};
        for (entries, expected) in [
            // A link through a link to the root: d/l is the root, so d/l/.. is its parent.
            (
                vec![
                    ("d/", Directory, &b""[..], None),
                    ("d/l", Symlink, b"", Some("..")),
                    ("up", Symlink, b"", Some("d/l/..")),
                ],
                "outside",
            ),
            // The same, then a file written through the escaping chain's first step.
            (
                vec![
                    ("d/", Directory, &b""[..], None),
                    ("d/l", Symlink, b"", Some("..")),
                    ("d/l/d/l/top", Symlink, b"", Some("../../..")),
                ],
                "outside",
            ),
            // Harmless when written; a later entry turns a/b/s into a link that lifts it out.
            (
                vec![
                    ("a/b/", Directory, &b""[..], None),
                    ("esc", Symlink, b"", Some("a/b/s/../../..")),
                    ("a/b/s", Symlink, b"", Some("..")),
                ],
                "outside",
            ),
            // A hard link to a link is a second link, judged where it stands.
            (
                vec![
                    ("a/", Directory, &b""[..], None),
                    ("a/l", Symlink, b"", Some("..")),
                    ("h", Link, b"", Some("a/l")),
                ],
                "outside",
            ),
            // Loops end.
            (
                vec![("x", Symlink, &b""[..], Some("y")), ("y", Symlink, b"", Some("x")), ("z", Regular, b"1", None)],
                "loop",
            ),
        ] {
            let err = refusal(&entries);
            assert!(err.contains(expected), "{entries:?}: {err}");
        }
    }

    #[test]
    fn extraction_stops_at_the_deadline() {
        use tar::EntryType::Regular;
        let dir = tempfile::tempdir().unwrap();
        let into = Dir::open_ambient_dir(dir.path(), cap_std::ambient_authority()).unwrap();
        let passed = Deadline(Instant::now());
        let err = extract(&tar_of(&[("a", Regular, b"x", None)]), &into, passed).unwrap_err();
        assert!(err.is::<Expired>(), "{err:#}");
        assert!(entries(&tar_of(&[("a", Regular, b"x", None)]), passed).unwrap_err().is::<Expired>());
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
        extract(&blob, &into, later()).unwrap();
        assert_eq!(std::fs::read(dir.path().join("app/current")).unwrap(), b"#!/bin/sh\n");
        let listed = entries(&blob, later()).unwrap();
        assert_eq!(listed.len(), 3);
        assert_eq!(listed[2].link.as_deref(), Some("bin/run"));
        let run = entry(&blob, "app/bin/run", dir.path(), later()).unwrap();
        let mut bytes = Vec::new();
        run.reader().read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes, b"#!/bin/sh\n");
    }

    #[test]
    fn a_one_file_layer_is_a_tar_that_tar_reads() {
        let file = LayerFile { name: "disk/root.qcow2".into(), mode: 0o440, uid: 107, gid: 107 };
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
        assert!(one_file_layer(&LayerFile { name: "../x".into(), ..file }, 1).is_err());
    }
}
