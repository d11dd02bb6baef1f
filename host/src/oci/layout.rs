use super::{BlobFile, Descriptor, Digest, HashingWriter, REF_NAME, Stored};
use anyhow::{Context, Result, bail};
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use std::collections::HashSet;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

const OCI_LAYOUT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;
const BLOBS: &str = "blobs/sha256";
use super::media_types::OCI_INDEX as INDEX_MEDIA_TYPE;
/// The paths ferry wrote into a destination on drivers' behalf, one per line.
const MADE: &str = ".ferry-made";

/// Names a driver may not write at the top of a destination layout: the layout's own files,
/// and ferry's bookkeeping and half-written files.
pub fn is_reserved_name(first_component: &str) -> bool {
    matches!(first_component, "index.json" | "oci-layout" | "blobs")
        || first_component.starts_with(".ferry")
        || first_component.starts_with(".partial")
}

/// Opens `path` beneath `dir` for reading only if it is a regular file: a fifo or device planted
/// in a destination would block the read or never end.
pub fn open_regular(dir: &Dir, path: &Path) -> io::Result<std::fs::File> {
    use cap_std::fs::OpenOptionsExt;
    let mut options = cap_std::fs::OpenOptions::new();
    options.read(true).custom_flags(libc::O_NONBLOCK);
    let file = dir.open_with(path, &options)?.into_std();
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{} is not a regular file", path.display())));
    }
    // Back to blocking reads: O_NONBLOCK only guarded the open.
    let flags = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&file), libc::F_GETFL) };
    unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&file), libc::F_SETFL, flags & !libc::O_NONBLOCK) };
    Ok(file)
}

/// A regular file beneath `dir`, at most `cap` bytes.
fn read_regular(dir: &Dir, path: &Path, cap: u64) -> Result<Vec<u8>> {
    let file = open_regular(dir, path)?;
    let mut bytes = Vec::new();
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        bail!("it is larger than {cap} bytes");
    }
    Ok(bytes)
}

/// An OCI image layout directory. Every path inside it is opened through a capability handle on
/// the directory, so no name can lead outside it.
pub struct Layout {
    dir: Dir,
    path: PathBuf,
    /// Blobs being written now, so that two images sharing a layer fetch it once.
    claims: Mutex<HashSet<Digest>>,
    released: Condvar,
    /// index.json is read, changed and written whole: one writer at a time.
    index_lock: Mutex<()>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    #[serde(default)]
    media_type: Option<String>,
    manifests: Vec<Descriptor>,
}

impl Layout {
    /// Opens the layout at `path`, creating an empty one if the directory has none.
    pub fn create(path: &Path) -> Result<Self> {
        std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        Self::init(Self::open_dir(path)?)
    }

    /// Opens or creates the layout at `relative`, a path that must stay inside `parent`.
    pub fn create_beneath(parent: &Dir, relative: &Path, display: PathBuf) -> Result<Self> {
        let dir = if relative.as_os_str().is_empty() {
            parent.try_clone()?
        } else {
            parent.create_dir_all(relative).with_context(|| format!("creating {}", display.display()))?;
            parent.open_dir(relative).with_context(|| format!("opening {}", display.display()))?
        };
        Self::init(Layout::new(dir, display))
    }

    fn new(dir: Dir, path: PathBuf) -> Self {
        Layout { dir, path, claims: Mutex::default(), released: Condvar::new(), index_lock: Mutex::default() }
    }

    /// Claims the right to write blob `digest`: `None` when it is stored already (possibly
    /// after waiting for another writer); otherwise a guard that releases the claim on drop.
    pub fn claim(&self, digest: &Digest) -> Option<Claim<'_>> {
        let mut claims = self.claims.lock().unwrap();
        while claims.contains(digest) {
            claims = self.released.wait(claims).unwrap();
        }
        if self.has_blob(digest) {
            return None;
        }
        claims.insert(digest.clone());
        Some(Claim { layout: self, digest: digest.clone() })
    }

    fn init(layout: Layout) -> Result<Self> {
        layout.dir.create_dir_all(BLOBS)?;
        if !layout.dir.exists("oci-layout") {
            layout.dir.write("oci-layout", OCI_LAYOUT)?;
        }
        if !layout.dir.exists("index.json") {
            layout.write_index(Vec::new())?;
        }
        Ok(layout)
    }

    /// Opens an existing layout.
    pub fn open(path: &Path) -> Result<Self> {
        let layout = Self::open_dir(path)?;
        if !layout.dir.exists("oci-layout") {
            bail!("{} is not an OCI image layout (it has no oci-layout file)", path.display());
        }
        Ok(layout)
    }

    fn open_dir(path: &Path) -> Result<Self> {
        let dir =
            Dir::open_ambient_dir(path, ambient_authority()).with_context(|| format!("opening {}", path.display()))?;
        Ok(Layout::new(dir, path.to_owned()))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of a blob inside the layout.
    pub fn blob_name(digest: &Digest) -> PathBuf {
        Path::new(BLOBS).join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.dir.exists(Self::blob_name(digest))
    }

    pub fn blob_size(&self, digest: &Digest) -> io::Result<u64> {
        Ok(self.dir.metadata(Self::blob_name(digest))?.len())
    }

    pub fn open_blob(&self, digest: &Digest) -> io::Result<std::fs::File> {
        open_regular(&self.dir, &Self::blob_name(digest))
    }

    /// A regular file at `path` inside the layout.
    pub fn open_file(&self, path: &Path) -> io::Result<std::fs::File> {
        open_regular(&self.dir, path)
    }

    /// Whether anything (a file, directory or link) is at `path` inside the layout.
    pub fn exists(&self, path: &Path) -> bool {
        self.dir.symlink_metadata(path).is_ok()
    }

    /// Whether `path` (a file or directory written on a driver's behalf) was made by ferry, so
    /// that a later run may replace it: what an operator keeps in the directory is never
    /// replaced or deleted.
    pub fn made_by_ferry(&self, path: &Path) -> Result<bool> {
        Ok(self.made()?.iter().any(|p| Path::new(p) == path))
    }

    /// Records that ferry made `path`; see [`Layout::made_by_ferry`].
    pub fn note_made(&self, path: &Path) -> Result<()> {
        let _writer = self.index_lock.lock().unwrap();
        let mut made = self.made()?;
        let path = path.to_str().context("a path ferry made is not UTF-8")?.to_owned();
        if made.contains(&path) {
            return Ok(());
        }
        made.push(path);
        let mut pending = self.pending(Path::new(""))?;
        pending.file().write_all(made.join("\n").as_bytes())?;
        pending.persist_as(MADE)
    }

    fn made(&self) -> Result<Vec<String>> {
        if !self.dir.exists(MADE) {
            return Ok(Vec::new());
        }
        let bytes = read_regular(&self.dir, Path::new(MADE), crate::archive::MAX_JSON)
            .with_context(|| format!("{}/{MADE}", self.path.display()))?;
        Ok(String::from_utf8_lossy(&bytes).lines().map(str::to_owned).collect())
    }

    /// Streams `source` into the layout, hashing every byte; the blob appears under its digest
    /// only once it is complete and, when `expected` is given, only if it matches.
    pub fn put_verified(&self, source: &mut dyn Read, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let mut writer = self.blob_writer()?;
        io::copy(source, &mut writer)?;
        writer.commit(expected)
    }

    /// A writer for a new blob, named by its digest when committed.
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        let mut pending = self.pending_blob()?;
        let file = pending.file().try_clone()?;
        Ok(BlobWriter { hashing: HashingWriter::new(BufWriter::with_capacity(1 << 20, file)), pending })
    }

    /// Stores a small document and returns its digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        Ok(self.put_verified(&mut &bytes[..], None)?.0)
    }

    /// A new file among the blobs, to be persisted under its digest.
    pub fn pending_blob(&self) -> Result<PendingFile> {
        self.pending(Path::new(BLOBS))
    }

    /// A new file in directory `parent` of the layout (created if needed), removed again unless
    /// it is persisted: nothing half-written ever has a final name.
    pub fn pending(&self, parent: &Path) -> Result<PendingFile> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        if !parent.as_os_str().is_empty() {
            self.dir
                .create_dir_all(parent)
                .with_context(|| format!("creating {}", self.path.join(parent).display()))?;
        }
        let name = parent.join(format!(".partial-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
        let file = self.dir.create(&name).with_context(|| format!("creating {}", self.path.join(&name).display()))?;
        Ok(PendingFile { dir: self.dir.try_clone()?, name, file: file.into_std(), persisted: false })
    }

    /// A new directory in directory `parent` of the layout, removed again (with everything in
    /// it) unless it is persisted.
    pub fn pending_dir(&self, parent: &Path) -> Result<PendingDir> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        if !parent.as_os_str().is_empty() {
            self.dir
                .create_dir_all(parent)
                .with_context(|| format!("creating {}", self.path.join(parent).display()))?;
        }
        let name =
            parent.join(format!(".partial-dir-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
        self.dir.create_dir(&name).with_context(|| format!("creating {}", self.path.join(&name).display()))?;
        let opened = self.dir.open_dir(&name)?;
        Ok(PendingDir { parent: self.dir.try_clone()?, name, dir: opened, persisted: false })
    }

    /// The index's descriptors, in order.
    pub fn index(&self) -> Result<Vec<Descriptor>> {
        let bytes = read_regular(&self.dir, Path::new("index.json"), crate::archive::MAX_JSON)
            .with_context(|| format!("{}/index.json", self.path.display()))?;
        let index: Index = serde_json::from_slice(&bytes)
            .with_context(|| format!("{}/index.json is not an OCI index", self.path.display()))?;
        Ok(index.manifests)
    }

    /// Adds `descriptor` to the index, replacing an entry with the same ref.name (or, for an
    /// unnamed one, the same digest: a rerun adds nothing). Entries stay sorted by name so that
    /// the same content always gives the same index.
    pub fn add_to_index(&self, descriptor: Descriptor) -> Result<()> {
        let _writer = self.index_lock.lock().unwrap();
        let name = descriptor.annotations.get(REF_NAME).cloned();
        let mut manifests = self.index()?;
        if manifests.contains(&descriptor) {
            return Ok(());
        }
        manifests.retain(|d| match &name {
            Some(name) => d.annotations.get(REF_NAME) != Some(name),
            None => d.annotations.contains_key(REF_NAME) || d.digest != descriptor.digest,
        });
        manifests.push(descriptor);
        manifests.sort_by(|a, b| a.annotations.get(REF_NAME).cmp(&b.annotations.get(REF_NAME)));
        self.write_index(manifests)
    }

    fn write_index(&self, manifests: Vec<Descriptor>) -> Result<()> {
        let index = Index { schema_version: 2, media_type: Some(INDEX_MEDIA_TYPE.into()), manifests };
        let mut pending = self.pending(Path::new(""))?;
        pending.file().write_all(&serde_json::to_vec(&index)?)?;
        pending.persist_as("index.json")
    }
}

impl Stored for Layout {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn blob(&self, digest: &Digest) -> io::Result<BlobFile> {
        BlobFile::whole(self.open_blob(digest)?)
    }

    fn entries(&self) -> Result<Vec<Descriptor>> {
        self.index()
    }

    fn has_blob(&self, digest: &Digest) -> bool {
        Layout::has_blob(self, digest)
    }
}

/// The right to write one blob; see [`Layout::claim`].
pub struct Claim<'a> {
    layout: &'a Layout,
    digest: Digest,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.layout.claims.lock().unwrap().remove(&self.digest);
        self.layout.released.notify_all();
    }
}

/// A blob being written: hashed on the way, and stored under its digest by [`BlobWriter::commit`].
pub struct BlobWriter {
    hashing: HashingWriter<BufWriter<std::fs::File>>,
    pending: PendingFile,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hashing.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.hashing.flush()
    }
}

impl BlobWriter {
    /// Stores the blob under its digest, unless `expected` is given and differs: then nothing
    /// is stored.
    pub fn commit(self, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let (digest, size, buffered) = self.hashing.finish();
        buffered.into_inner().map_err(|e| e.into_error())?;
        if let Some(expected) = expected
            && *expected != digest
        {
            bail!("content digest mismatch: expected {expected}, got {digest} ({size} bytes)");
        }
        self.pending.persist_as(Layout::blob_name(&digest))?;
        Ok((digest, size))
    }
}

/// A directory being filled inside a layout; see [`Layout::pending_dir`].
pub struct PendingDir {
    parent: Dir,
    name: PathBuf,
    dir: Dir,
    persisted: bool,
}

impl PendingDir {
    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    /// Gives the directory its final name, a path inside the layout. Something already there
    /// is replaced only when `replace` says ferry made it; otherwise the error names it.
    pub fn persist_as(mut self, target: impl AsRef<Path>, replace: bool) -> Result<()> {
        let target = target.as_ref();
        if self.parent.symlink_metadata(target).is_ok() {
            if !replace || !self.parent.is_dir(target) {
                bail!("{} exists already and ferry did not make it; move it away to relocate here", target.display());
            }
            self.parent.remove_dir_all(target).with_context(|| format!("replacing {}", target.display()))?;
        }
        self.parent.rename(&self.name, &self.parent, target)?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for PendingDir {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = self.parent.remove_dir_all(&self.name);
        }
    }
}

/// A file being written inside a layout; see [`Layout::pending`].
pub struct PendingFile {
    dir: Dir,
    name: PathBuf,
    file: std::fs::File,
    persisted: bool,
}

impl PendingFile {
    pub fn file(&mut self) -> &mut std::fs::File {
        &mut self.file
    }

    /// Gives the file its final name, a path inside the layout.
    pub fn persist_as(mut self, target: impl AsRef<Path>) -> Result<()> {
        self.dir.rename(&self.name, &self.dir, target.as_ref())?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = self.dir.remove_file(&self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verified_put_refuses_a_wrong_digest_and_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::create(tmp.path()).unwrap();
        let wrong = Digest::of(b"something else");
        let err = layout.put_verified(&mut &b"content"[..], Some(&wrong)).unwrap_err();
        assert!(err.to_string().contains("digest mismatch"), "{err}");
        let left: Vec<_> = std::fs::read_dir(tmp.path().join("blobs/sha256")).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");

        let (digest, size) = layout.put_verified(&mut &b"content"[..], Some(&Digest::of(b"content"))).unwrap();
        assert_eq!(size, 7);
        assert_eq!(layout.read_blob(&digest, 7).unwrap(), b"content");
        assert!(layout.read_blob(&digest, 6).is_err());
    }

    #[test]
    fn a_fifo_planted_as_the_index_is_refused_without_blocking() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::create(tmp.path()).unwrap();
        std::fs::remove_file(tmp.path().join("index.json")).unwrap();
        let path = std::ffi::CString::new(tmp.path().join("index.json").into_os_string().into_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0);
        let err = layout.index().unwrap_err();
        assert!(format!("{err:#}").contains("not a regular file"), "{err:#}");
        let digest = Digest::of(b"x");
        let fifo =
            std::ffi::CString::new(tmp.path().join(Layout::blob_name(&digest)).into_os_string().into_encoded_bytes())
                .unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        assert!(layout.open_blob(&digest).is_err());
    }

    #[test]
    fn a_claimed_blob_is_written_once() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::create(tmp.path()).unwrap();
        let digest = Digest::of(b"shared layer");
        let writes = AtomicU64::new(0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    if let Some(_claim) = layout.claim(&digest) {
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        layout.put_verified(&mut &b"shared layer"[..], Some(&digest)).unwrap();
                        writes.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        assert_eq!(writes.into_inner(), 1);
        assert!(layout.has_blob(&digest));
    }

    #[test]
    fn concurrent_index_updates_are_all_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::create(tmp.path()).unwrap();
        std::thread::scope(|scope| {
            for i in 0..8 {
                let layout = &layout;
                scope.spawn(move || {
                    let mut d = Descriptor::new(crate::oci::media_types::OCI_MANIFEST, Digest::of(&[i]), 1);
                    d.annotations.insert(REF_NAME.into(), format!("image-{i}"));
                    layout.add_to_index(d).unwrap();
                });
            }
        });
        assert_eq!(layout.index().unwrap().len(), 8);
    }

    #[test]
    fn index_entries_are_replaced_by_name_and_sorted() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::create(tmp.path()).unwrap();
        let named = |name: &str, content: &[u8]| {
            let mut d = Descriptor::new(crate::oci::media_types::OCI_MANIFEST, Digest::of(content), 1);
            d.annotations.insert(REF_NAME.into(), name.into());
            d
        };
        layout.add_to_index(named("b", b"1")).unwrap();
        layout.add_to_index(named("a", b"2")).unwrap();
        layout.add_to_index(named("b", b"3")).unwrap();
        let index = layout.index().unwrap();
        assert_eq!(index.len(), 2);
        assert_eq!(index[0].digest, Digest::of(b"2"));
        assert_eq!(layout.find("b").unwrap().unwrap().digest, Digest::of(b"3"));
    }
}
