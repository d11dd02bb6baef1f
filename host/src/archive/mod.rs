//! Thick-bundle archives: writing them deterministically, and reading them safely.
//!
//! Written: `bundle.json`, `relocation-mapping.json`, then `artifacts/layout/` (directories,
//! `oci-layout`, `index.json`, blobs sorted by digest), every header with mtime 0, uid/gid 0 and
//! fixed modes, so the same inputs give the same bytes. Registry blobs the drivers only named
//! are fetched while the archive is written, into their places (see [`Deferred`]).
//!
//! Read: entries are streamed, or an uncompressed bundle (or a gzip of stored blocks) is indexed
//! once and its blobs read in place; absolute names, `..`, links, devices, duplicates and oversized JSON documents are
//! refused, and nothing is ever extracted.

mod prefetch;
mod stored_gzip;

use crate::cleanup::TempDir;
use crate::oci::{BlobFile, Descriptor, Digest, HashingWriter, Layout, MAX_DOCUMENT, ReadAt, Stored};
use crate::registry::Deferred;
use anyhow::{Context, Result, bail};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;
use stored_gzip::{StoredBlocks, StoredGzip};

pub const BUNDLE_JSON: &str = "bundle.json";
pub const RELOCATION_MAPPING: &str = "relocation-mapping.json";
pub const LAYOUT: &str = "artifacts/layout";
/// bundle.json, relocation-mapping.json and index.json are refused beyond this size.
pub const MAX_JSON: u64 = 16 << 20;
/// Manifests and configs kept in memory while reading, in all.
const MAX_DOCUMENTS_TOTAL: u64 = 256 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip(u32),
    Zstd(i32),
}

impl Compression {
    /// From the output's name: `.tar`, `.tar.zst` (`.tzst`), or gzip (`.tgz`, `.tar.gz`); any
    /// other name is refused rather than given a format it does not announce. gzip defaults to
    /// level 0: stored blocks, valid gzip at memory speed, since image layers are compressed
    /// already.
    pub fn from_name(path: &Path, level: Option<u32>) -> Result<Self> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let known = [".tar", ".tgz", ".tar.gz", ".tar.zst", ".tzst"];
        if !known.iter().any(|ext| name.ends_with(ext)) {
            bail!("{}: a thick bundle is written as .tar, .tgz (.tar.gz) or .tar.zst; name it so", path.display());
        }
        Ok(if name.ends_with(".tar") {
            if level.is_some() {
                bail!("{name}: a .tar is not compressed; drop --compression-level or name it .tgz or .tar.zst");
            }
            Compression::None
        } else if name.ends_with(".tar.zst") || name.ends_with(".tzst") {
            let level = level.unwrap_or(1);
            if !(1..=19).contains(&level) {
                bail!("zstd levels are 1 to 19");
            }
            Compression::Zstd(level as i32)
        } else {
            let level = level.unwrap_or(0);
            if level > 9 {
                bail!("gzip levels are 0 to 9");
            }
            Compression::Gzip(level)
        })
    }
}

/// Counts bytes on their way to the file.
struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let n = self.inner.write_vectored(bufs)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Starts the kernel writing the file out every [`WRITEBACK`] bytes, without waiting: the
/// final fsync then finds most of the archive on disk already, instead of all of it.
struct Writeback<'f> {
    file: &'f mut File,
    written: u64,
    started: u64,
}

const WRITEBACK: u64 = 16 << 20;

impl Writeback<'_> {
    fn wrote(&mut self, n: usize) -> usize {
        self.written += n as u64;
        if self.written - self.started >= WRITEBACK {
            let fd = std::os::fd::AsRawFd::as_raw_fd(&*self.file);
            let (offset, len) = (self.started as libc::off64_t, (self.written - self.started) as libc::off64_t);
            // Only a hint: a kernel that refuses it leaves the work to the fsync.
            unsafe { libc::sync_file_range(fd, offset, len, libc::SYNC_FILE_RANGE_WRITE) };
            self.started = self.written;
        }
        n
    }
}

impl Write for Writeback<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        Ok(self.wrote(n))
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let n = self.file.write_vectored(bufs)?;
        Ok(self.wrote(n))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

fn header(path: &str, size: u64, directory: bool) -> Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path)?;
    h.set_size(size);
    h.set_mode(if directory { 0o755 } else { 0o644 });
    h.set_entry_type(if directory { tar::EntryType::Directory } else { tar::EntryType::Regular });
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    Ok(h)
}

/// Writes the thick bundle to `output` (through a temporary file beside it); returns its size.
/// The blobs in `deferred` that `store` lacks are fetched `jobs` at a time, straight into their
/// places in the archive.
pub fn write(
    output: &Path,
    compression: Compression,
    bundle_json: &[u8],
    mapping: &[u8],
    store: &Layout,
    deferred: &Deferred,
    jobs: usize,
) -> Result<u64> {
    let mut tmp = crate::files::temporary_beside(output)?;
    let writeback = Writeback { file: tmp.as_file_mut(), written: 0, started: 0 };
    let parts = Parts { bundle_json, mapping, store, deferred, jobs };
    let counted = match compression {
        Compression::None => {
            // Blobs arrive in pieces of the buffer's size, which pass it without a copy.
            let counting = Counting { inner: BufWriter::with_capacity(prefetch::CHUNK, writeback), count: 0 };
            let mut w = write_tar(counting, &parts)?;
            w.flush()?;
            w.count
        }
        Compression::Gzip(0) => {
            let mut w = write_tar(StoredGzip::new(Counting { inner: writeback, count: 0 })?, &parts)?.finish()?;
            w.flush()?;
            w.count
        }
        Compression::Gzip(level) => {
            let counting = Counting { inner: BufWriter::with_capacity(1 << 20, writeback), count: 0 };
            let gz = flate2::GzBuilder::new().mtime(0).write(counting, flate2::Compression::new(level));
            let mut w = write_tar(gz, &parts)?.finish()?;
            w.flush()?;
            w.count
        }
        Compression::Zstd(level) => {
            let counting = Counting { inner: BufWriter::with_capacity(1 << 20, writeback), count: 0 };
            let zstd = zstd::Encoder::new(counting, level)?;
            let mut w = write_tar(zstd, &parts)?.finish()?;
            w.flush()?;
            w.count
        }
    };
    tmp.as_file().sync_all()?;
    crate::files::persist(tmp, output)?;
    Ok(counted)
}

/// What goes into the archive.
struct Parts<'a> {
    bundle_json: &'a [u8],
    mapping: &'a [u8],
    store: &'a Layout,
    deferred: &'a Deferred,
    jobs: usize,
}

fn write_tar<W: Write>(out: W, parts: &Parts) -> Result<W> {
    let mut tar = tar::Builder::new(out);
    let file = |tar: &mut tar::Builder<W>, path: &str, bytes: &[u8]| -> Result<()> {
        tar.append(&header(path, bytes.len() as u64, false)?, bytes)?;
        Ok(())
    };
    let store = parts.store;
    file(&mut tar, BUNDLE_JSON, parts.bundle_json)?;
    file(&mut tar, RELOCATION_MAPPING, parts.mapping)?;
    for dir in ["artifacts/", "artifacts/layout/", "artifacts/layout/blobs/", "artifacts/layout/blobs/sha256/"] {
        tar.append(&header(dir, 0, true)?, io::empty())?;
    }
    file(&mut tar, "artifacts/layout/oci-layout", &std::fs::read(store.path().join("oci-layout"))?)?;
    file(&mut tar, "artifacts/layout/index.json", &std::fs::read(store.path().join("index.json"))?)?;
    // Every blob once, by digest: those in the store, and those only named, fetched now.
    let stored: BTreeSet<Digest> = std::fs::read_dir(store.path().join("blobs/sha256"))?
        .filter_map(|e| e.ok()?.file_name().to_str().and_then(|n| format!("sha256:{n}").parse().ok()))
        .collect();
    let remote: Vec<_> = parts.deferred.all().into_iter().filter(|(d, _)| !stored.contains(d)).collect();
    let mut blobs: Vec<(&Digest, Option<u64>)> = stored.iter().map(|d| (d, None)).collect();
    blobs.extend(remote.iter().map(|(d, r)| (d, Some(r.size))));
    blobs.sort();
    prefetch::run(&remote, parts.jobs, |fetched| {
        for (digest, remote_size) in blobs {
            let path = format!("artifacts/layout/blobs/sha256/{}", digest.hex());
            match remote_size {
                None => {
                    let blob = store.open_blob(digest)?;
                    let size = blob.metadata()?.len();
                    tar.append(&header(&path, size, false)?, BufReader::with_capacity(1 << 20, blob))?;
                }
                Some(size) => {
                    let out = tar.get_mut();
                    out.write_all(header(&path, size, false)?.as_bytes())?;
                    fetched.copy(digest, out)?;
                    out.write_all(&[0; 512][..(512 - size % 512) as usize % 512])?;
                }
            }
        }
        Ok(())
    })?;
    Ok(tar.into_inner()?)
}

/// What a thick bundle holds, read in one streaming pass.
#[derive(Default)]
pub struct Contents {
    pub bundle_json: Vec<u8>,
    pub relocation_mapping: Option<Vec<u8>>,
    pub index: Option<Vec<u8>>,
    pub has_oci_layout: bool,
    /// Every blob's size, and, when hashing, the digest of its bytes.
    pub blobs: BTreeMap<Digest, Blob>,
    /// JSON blobs (manifests, indexes, configs), kept to walk images.
    pub documents: BTreeMap<Digest, Vec<u8>>,
}

#[derive(Clone, Debug)]
pub struct Blob {
    pub size: u64,
    pub actual: Option<Digest>,
}

/// `./a/b` and `a/b` are the same entry; anything that could point outside is refused.
fn entry_name(raw: &[u8]) -> Result<String> {
    let name = std::str::from_utf8(raw)
        .with_context(|| format!("entry name {:?} is not UTF-8", String::from_utf8_lossy(raw)))?;
    if name.starts_with('/') {
        bail!("entry {name:?} has an absolute path");
    }
    let parts: Vec<&str> = name.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    if parts.contains(&"..") {
        bail!("entry {name:?} points outside the bundle (..)");
    }
    Ok(parts.join("/"))
}

fn read_capped(entry: &mut dyn Read, size: u64, cap: u64, name: &str) -> Result<Vec<u8>> {
    if size > cap {
        bail!("{name} is {size} bytes, more than the {cap} bytes allowed");
    }
    let mut bytes = Vec::with_capacity(size as usize);
    entry.take(cap).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Opens a thick bundle, whatever its compression (told by its first bytes, not its name).
pub fn open(path: &Path) -> Result<tar::Archive<Box<dyn Read>>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(tar::Archive::new(decompress(BufReader::with_capacity(1 << 20, file))?))
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Whether a file starting with `magic` is gzip or zstd.
pub fn is_compressed_magic(magic: &[u8]) -> bool {
    magic.starts_with(&GZIP_MAGIC) || magic.starts_with(&ZSTD_MAGIC)
}

fn is_compressed(file: &File) -> Result<bool> {
    let mut magic = [0u8; 4];
    let n = file.read_at(&mut magic, 0)?;
    Ok(is_compressed_magic(&magic[..n]))
}

/// The tar stream inside `input`: gunzipped, unzstd'ed or as it is, by its first bytes.
pub fn decompress<'a>(mut input: impl io::BufRead + 'a) -> Result<Box<dyn Read + 'a>> {
    let magic = input.fill_buf()?.get(..4).map(<[u8]>::to_vec).unwrap_or_default();
    Ok(if magic.starts_with(&GZIP_MAGIC) {
        Box::new(flate2::bufread::MultiGzDecoder::new(input))
    } else if magic == ZSTD_MAGIC {
        Box::new(zstd::Decoder::with_buffer(input)?)
    } else {
        Box::new(input)
    })
}

/// Only the bundle.json of a thick bundle, read up to where it is, by the same rules as every
/// other reader (a directory or link named bundle.json is refused, not skipped or read).
pub fn bundle_json(path: &Path) -> Result<Vec<u8>> {
    let at = |e: anyhow::Error| e.context(format!("{}", path.display()));
    let mut archive = open(path).map_err(at)?;
    let mut seen = BTreeSet::new();
    let mut root = RootNames::default();
    for entry in archive.entries().map_err(|e| at(unreadable(e)))? {
        let mut entry = entry.map_err(|e| at(unreadable(e)))?;
        let name = checked_name(&entry, &mut seen).map_err(at)?;
        if name.as_deref() == Some(BUNDLE_JSON) {
            let size = entry.size();
            return read_capped(&mut entry, size, MAX_JSON, BUNDLE_JSON);
        }
        name.inspect(|n| root.see(n));
    }
    Err(at(root.not_a_thick_bundle()))
}

/// What a tar without bundle.json holds at its root, to say what it seems to be instead.
#[derive(Default)]
struct RootNames {
    docker_manifest: bool,
    oci_layout: bool,
    files: usize,
}

impl RootNames {
    fn see(&mut self, name: &str) {
        self.files += 1;
        self.docker_manifest |= name == "manifest.json";
        self.oci_layout |= name == "oci-layout";
    }

    /// The error for a tar that has no bundle.json at its root.
    fn not_a_thick_bundle(&self) -> anyhow::Error {
        let seems = if self.docker_manifest {
            "a docker-archive (what `docker save` writes)"
        } else if self.oci_layout {
            "an OCI image layout (an oci-archive, as `skopeo copy` writes)"
        } else if self.files == 0 {
            "a tar with no files"
        } else {
            "a tar without bundle.json at its root"
        };
        anyhow::anyhow!("it is {seems}, not a thick bundle; `ferry export` writes thick bundles")
    }
}

/// The tar library's error, without the raw header bytes some of its messages quote.
fn unreadable(e: io::Error) -> anyhow::Error {
    let message = e.to_string();
    if message == "failed to read entire block" {
        anyhow::anyhow!("not a readable tar: it ends within a 512-byte tar block (cut short, or not a tar)")
    } else if message.starts_with("numeric field") || !message.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
        anyhow::anyhow!("not a readable tar: a damaged tar header")
    } else {
        anyhow::Error::new(e).context("not a readable tar")
    }
}

/// Reads a thick bundle in one pass; with `hash`, every blob is hashed as it goes by.
pub fn read(path: &Path, hash: bool) -> Result<Contents> {
    let at = |e: anyhow::Error| e.context(format!("{}", path.display()));
    read_inner(path, hash).map_err(at)
}

/// Streams every file entry of a thick bundle to `visit(name, size, bytes)`, with `./` prefixes
/// removed, after refusing anything unsafe (see [`checked_name`]).
fn each_file(path: &Path, mut visit: impl FnMut(&str, u64, &mut dyn Read) -> Result<()>) -> Result<()> {
    let mut archive = open(path)?;
    let mut seen = BTreeSet::new();
    for entry in archive.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        let Some(name) = checked_name(&entry, &mut seen)? else { continue };
        let size = entry.size();
        visit(&name, size, &mut entry)?;
    }
    Ok(())
}

/// A file entry's cleaned-up name, `None` for a directory; absolute names, `..`, links, devices
/// and duplicates are refused, and so is a directory that carries data or takes a name the
/// format reserves for a file (a second "bundle.json" that one reader would skip and another
/// read).
fn checked_name<R: Read>(entry: &tar::Entry<R>, seen: &mut BTreeSet<String>) -> Result<Option<String>> {
    let name = entry_name(&entry.path_bytes())?;
    match entry.header().entry_type() {
        tar::EntryType::Directory if is_reserved_file(&name) => {
            bail!("entry {name:?} is a directory, but the format reserves that name for a file")
        }
        tar::EntryType::Directory if entry.size() > 0 => {
            bail!("entry {name:?} is a directory that carries {} bytes of data", entry.size())
        }
        tar::EntryType::Directory => return Ok(None),
        tar::EntryType::Regular | tar::EntryType::Continuous => {}
        other => bail!("entry {name:?} is a {other:?}; a bundle holds only files and directories"),
    }
    if !seen.insert(name.clone()) {
        bail!("entry {name:?} appears twice");
    }
    Ok(Some(name))
}

/// Names only a regular file may have in a thick bundle.
fn is_reserved_file(name: &str) -> bool {
    matches!(name, BUNDLE_JSON | RELOCATION_MAPPING)
        || name.strip_prefix(LAYOUT).is_some_and(|rest| {
            matches!(rest, "/index.json" | "/oci-layout")
                || rest.strip_prefix("/blobs/sha256/").is_some_and(|hex| !hex.is_empty())
        })
}

/// The digest a blob entry's name gives, if it is one.
fn blob_digest(name: &str) -> Result<Option<Digest>> {
    match name.strip_prefix(LAYOUT).and_then(|n| n.strip_prefix("/blobs/sha256/")) {
        Some(hex) => Ok(Some(format!("sha256:{hex}").parse().with_context(|| format!("entry {name:?}"))?)),
        None => Ok(None),
    }
}

fn read_inner(path: &Path, hash: bool) -> Result<Contents> {
    let mut contents = Contents::default();
    let mut kept = 0u64;
    let mut root = RootNames::default();
    each_file(path, |name, size, entry| {
        root.see(name);
        if name == BUNDLE_JSON {
            contents.bundle_json = read_capped(entry, size, MAX_JSON, name)?;
        } else if name == RELOCATION_MAPPING {
            contents.relocation_mapping = Some(read_capped(entry, size, MAX_JSON, name)?);
        } else if name == format!("{LAYOUT}/index.json") {
            contents.index = Some(read_capped(entry, size, MAX_JSON, name)?);
        } else if name == format!("{LAYOUT}/oci-layout") {
            contents.has_oci_layout = true;
        } else if let Some(digest) = blob_digest(name)? {
            let mut head = [0u8; 1];
            let mut document = Vec::new();
            let mut hashing = HashingWriter::new(io::sink());
            let n = entry.read(&mut head)?;
            if size <= MAX_DOCUMENT && n == 1 && head[0] == b'{' {
                document.push(b'{');
                entry.read_to_end(&mut document)?;
                hashing.write_all(&document)?;
            } else {
                hashing.write_all(&head[..n])?;
                if hash {
                    io::copy(entry, &mut hashing)?;
                }
            }
            let (actual, _, _) = hashing.finish();
            let hashed = hash || !document.is_empty();
            if !document.is_empty() {
                kept += document.len() as u64;
                if kept > MAX_DOCUMENTS_TOTAL {
                    bail!("the bundle's manifests and configs add up to more than {MAX_DOCUMENTS_TOTAL} bytes");
                }
                contents.documents.insert(digest.clone(), document);
            }
            contents.blobs.insert(digest, Blob { size, actual: hashed.then_some(actual) });
        }
        Ok(())
    })?;
    if contents.bundle_json.is_empty() {
        return Err(root.not_a_thick_bundle());
    }
    Ok(contents)
}

/// A thick bundle read in place: its small files in memory, every blob a byte range of a file.
/// An uncompressed bundle is its own file; so, in effect, is a gzip made only of stored blocks
/// (what `ferry export` writes to `.tgz` by default), read through an index of its blocks. A
/// compressed stream cannot be read at random, so it is read twice: once for its index and
/// manifests, then again to copy only the blobs the index reaches, each hashed on the way, into
/// a temporary file; an unreferenced blob (a decompression bomb, say) is decompressed but never
/// written.
pub struct InPlace {
    file: Arc<dyn ReadAt>,
    location: String,
    pub bundle_json: Vec<u8>,
    pub relocation_mapping: Option<Vec<u8>>,
    index: Vec<Descriptor>,
    blobs: HashMap<Digest, (u64, u64)>,
    /// The decompressed blobs' file, in a directory removed with this or on SIGINT/SIGTERM.
    _decompressed: Option<(tempfile::NamedTempFile, TempDir)>,
}

impl InPlace {
    /// Indexes the bundle at `path`; the blobs of a compressed one (not a gzip of stored blocks)
    /// are copied into a new directory in `scratch`, removed when this is dropped. Nothing is
    /// written to `scratch` otherwise.
    pub fn open(path: &Path, scratch: &Path) -> Result<Self> {
        let at = |e: anyhow::Error| e.context(format!("{}", path.display()));
        let file = File::open(path).with_context(|| format!("opening {}", path.display())).map_err(at)?;
        let file: Arc<dyn ReadAt> = if !is_compressed(&file).map_err(at)? {
            Arc::new(file)
        } else {
            match StoredBlocks::index(file).map_err(at)? {
                Some(blocks) => Arc::new(blocks),
                None => return Self::open_compressed(path, scratch).map_err(at),
            }
        };
        let mut bundle = InPlace {
            file,
            location: path.display().to_string(),
            bundle_json: Vec::new(),
            relocation_mapping: None,
            index: Vec::new(),
            blobs: HashMap::new(),
            _decompressed: None,
        };
        bundle.read_entries().map_err(at)?;
        Ok(bundle)
    }

    fn open_compressed(path: &Path, scratch: &Path) -> Result<Self> {
        let contents = read_inner(path, false)?;
        let index = parse_index(contents.index.as_deref())?;
        let wanted = reachable(&index, &contents)?;
        let room = || format!("making room in {} for the blobs the compressed bundle holds", scratch.display());
        let dir = TempDir::new_in(scratch, ".ferry-bundle-").with_context(room)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".ferry-bundle-")
            .suffix(".blobs")
            .tempfile_in(dir.path())
            .with_context(room)?;
        let mut blobs = HashMap::new();
        {
            let mut out = BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
            let mut offset = 0u64;
            each_file(path, |name, size, entry| {
                let Some(digest) = blob_digest(name)? else { return Ok(()) };
                let Some(&declared) = wanted.get(&digest) else { return Ok(()) };
                // Nothing beyond what a descriptor declares is written: an entry of another
                // size cannot hold the blob, whatever it would hash to.
                if size != declared {
                    bail!("blob {digest} is {size} bytes in the bundle, its descriptor says {declared}");
                }
                let mut hashing = HashingWriter::new(&mut out);
                let copied = io::copy(&mut entry.take(size), &mut hashing)?;
                let (actual, _, _) = hashing.finish();
                if copied != size || actual != digest {
                    bail!("blob {digest}: its bytes hash to {actual}");
                }
                blobs.insert(digest, (offset, size));
                offset += size;
                Ok(())
            })?;
            out.flush()?;
        }
        Ok(InPlace {
            file: Arc::new(tmp.reopen()?),
            location: path.display().to_string(),
            bundle_json: contents.bundle_json,
            relocation_mapping: contents.relocation_mapping,
            index,
            blobs,
            _decompressed: Some((tmp, dir)),
        })
    }

    fn read_entries(&mut self) -> Result<()> {
        let mut archive = tar::Archive::new(Cursor { bytes: &*self.file, position: 0 });
        let mut seen = BTreeSet::new();
        let mut index = None;
        let mut root = RootNames::default();
        for entry in archive.entries_with_seek().map_err(unreadable)? {
            let mut entry = entry.map_err(unreadable)?;
            let Some(name) = checked_name(&entry, &mut seen)? else { continue };
            root.see(&name);
            let size = entry.size();
            if name == BUNDLE_JSON {
                self.bundle_json = read_capped(&mut entry, size, MAX_JSON, &name)?;
            } else if name == RELOCATION_MAPPING {
                self.relocation_mapping = Some(read_capped(&mut entry, size, MAX_JSON, &name)?);
            } else if name == format!("{LAYOUT}/index.json") {
                index = Some(read_capped(&mut entry, size, MAX_JSON, &name)?);
            } else if let Some(digest) = blob_digest(&name)? {
                self.blobs.insert(digest, (entry.raw_file_position(), size));
            }
        }
        if self.bundle_json.is_empty() {
            return Err(root.not_a_thick_bundle());
        }
        self.index = parse_index(index.as_deref())?;
        Ok(())
    }
}

/// Reads and seeks over bytes read at any position, for the tar reader's walk over entries.
struct Cursor<'a> {
    bytes: &'a dyn ReadAt,
    position: u64,
}

impl Read for Cursor<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.bytes.read_at(buf, self.position)?;
        self.position += n as u64;
        Ok(n)
    }
}

impl io::Seek for Cursor<'_> {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        self.position = match to {
            io::SeekFrom::Start(n) => Some(n),
            io::SeekFrom::Current(n) => self.position.checked_add_signed(n),
            // The tar reader only seeks forward over entries.
            io::SeekFrom::End(_) => None,
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no such position"))?;
        Ok(self.position)
    }
}

/// The descriptors of the layout's index.json.
pub fn parse_index(bytes: Option<&[u8]>) -> Result<Vec<Descriptor>> {
    #[derive(serde::Deserialize)]
    struct Index {
        manifests: Vec<Descriptor>,
    }
    let bytes = bytes.with_context(|| format!("no {LAYOUT}/index.json"))?;
    Ok(crate::bundle::json::from_slice_strict::<Index>(bytes)
        .with_context(|| format!("{LAYOUT}/index.json is not an OCI index"))?
        .manifests)
}

/// Every blob the index reaches through the manifests the bundle holds, each digest once, with
/// the size it is first listed with.
fn reachable(index: &[Descriptor], contents: &Contents) -> Result<HashMap<Digest, u64>> {
    let mut wanted = HashMap::new();
    let mut stack: Vec<Descriptor> = index.to_vec();
    while let Some(d) = stack.pop() {
        if wanted.contains_key(&d.digest) {
            continue;
        }
        wanted.insert(d.digest.clone(), d.size);
        if let Some(document) = contents.documents.get(&d.digest).filter(|_| crate::oci::is_document(&d.media_type)) {
            stack.extend(crate::oci::children(document).with_context(|| format!("manifest {}", d.digest))?);
        }
    }
    Ok(wanted)
}

impl Stored for InPlace {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn blob(&self, digest: &Digest) -> io::Result<BlobFile> {
        match self.blobs.get(digest) {
            Some(&(offset, size)) => Ok(BlobFile::new(self.file.clone(), offset, size)),
            None => Err(io::Error::new(io::ErrorKind::NotFound, format!("blob {digest} is not in the bundle"))),
        }
    }

    fn entries(&self) -> Result<Vec<Descriptor>> {
        Ok(self.index.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thick bundle, gzipped, whose index names a 5-byte layer whose entry holds `layer_bytes`.
    fn bundle_with_layer(dir: &Path, layer_bytes: &[u8]) -> std::path::PathBuf {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let bytes = bundle_tar(tar::Builder::new(gz), layer_bytes).finish().unwrap();
        let path = dir.join("bundle.tgz");
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// The same bundle as ferry writes .tgz by default: gzip of stored blocks.
    fn stored_bundle_with_layer(dir: &Path, layer_bytes: &[u8]) -> std::path::PathBuf {
        let bytes = bundle_tar(tar::Builder::new(StoredGzip::new(Vec::new()).unwrap()), layer_bytes).finish().unwrap();
        let path = dir.join("stored.tgz");
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn bundle_tar<W: Write>(mut tar: tar::Builder<W>, layer_bytes: &[u8]) -> W {
        let layer = b"layer";
        let digest = Digest::of(layer);
        let index = serde_json::json!({ "schemaVersion": 2, "manifests": [
            { "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest.to_string(), "size": layer.len() },
        ]});
        let files: [(String, &[u8]); 4] = [
            (BUNDLE_JSON.into(), b"{}"),
            (format!("{LAYOUT}/oci-layout"), b"{}"),
            (format!("{LAYOUT}/index.json"), &serde_json::to_vec(&index).unwrap()),
            (format!("{LAYOUT}/blobs/sha256/{}", digest.hex()), layer_bytes),
        ];
        for (name, bytes) in files {
            tar.append(&header(&name, bytes.len() as u64, false).unwrap(), bytes).unwrap();
        }
        tar.into_inner().unwrap()
    }

    // Found while bounding the fuzz target's scratch space (fuzz/ archive): a reachable blob's
    // entry was copied to scratch whole, however much larger than its descriptor said, and only
    // then refused for its digest; a small .tgz could fill the disk on its way to that error.
    #[test]
    fn a_reachable_blob_larger_than_its_descriptor_is_refused_before_it_is_copied() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = dir.path().join("scratch");
        std::fs::create_dir(&scratch).unwrap();
        let good = bundle_with_layer(dir.path(), b"layer");
        let opened = InPlace::open(&good, &scratch).unwrap();
        assert_eq!(opened.read_blob(&Digest::of(b"layer"), 5).unwrap(), b"layer");
        drop(opened);

        let bomb = bundle_with_layer(dir.path(), &vec![0u8; 8 << 20]);
        let err = InPlace::open(&bomb, &scratch).err().expect("an 8 MiB entry for a 5-byte blob");
        assert!(format!("{err:#}").contains("is 8388608 bytes in the bundle, its descriptor says 5"), "{err:#}");
        assert!(std::fs::read_dir(&scratch).unwrap().next().is_none(), "scratch space was left behind");
    }

    #[test]
    fn a_gzip_of_stored_blocks_is_read_in_place_its_blobs_checked_when_read() {
        let dir = tempfile::tempdir().unwrap();
        // Nothing can be made here: a copy into scratch would fail.
        let scratch = dir.path().join("missing");
        let good = stored_bundle_with_layer(dir.path(), b"layer");
        let opened = InPlace::open(&good, &scratch).unwrap();
        assert_eq!(opened.bundle_json, b"{}");
        assert_eq!(opened.read_blob(&Digest::of(b"layer"), 5).unwrap(), b"layer");

        // As in a .tar read in place, the bytes are checked against the digest when read.
        let forged = stored_bundle_with_layer(dir.path(), b"LAYER");
        let opened = InPlace::open(&forged, &scratch).unwrap();
        let err = opened.read_blob(&Digest::of(b"layer"), 5).unwrap_err();
        assert!(err.to_string().contains("holds content with digest"), "{err}");

        // A compressed one needs the scratch space.
        let compressed = bundle_with_layer(dir.path(), b"layer");
        assert!(InPlace::open(&compressed, &scratch).is_err());
    }
}
