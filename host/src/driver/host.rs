//! What ferry lends a driver: the `ferry:driver/host` imports. Every path, length and digest
//! that comes from the guest is checked here; WASI's sandbox does not cover host imports.

use super::bindings::since_v0_1_0::ferry::driver::{host, types};
use super::sandbox::{HostState, LimitHit};
use super::tar_access;
use crate::oci::{self, BlobFile, Digest, HashingWriter, Layout, MAX_DOCUMENT, REF_NAME, Stored};
use crate::registry::{Registry, RegistryError, RegistryErrorKind};
use oci_client::Reference;
use std::io::{BufWriter, Read};
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::{Resource, ResourceTableError};

/// The most a driver gets from one `read`: enough for headers and manifests.
pub const MAX_READ: u32 = 1 << 20;

/// Where an image's bytes are, as the host opens them for one operation.
pub enum SourceHandle {
    /// An image stored in an OCI layout (a bundle's store), named by its root.
    Layout { layout: Arc<dyn Stored>, root: oci::Descriptor, location: String },
    /// Bytes on the operator's machine: a file, an http(s) download, or one file of a tar.
    Bytes { blob: BlobFile, location: String, kind: host::SourceKind },
    /// A repository in a registry; `reference` names the image.
    Registry { registry: Arc<Registry>, reference: Reference },
}

/// The bundle store an image is being fetched into, and the name it will have there.
pub struct StoreHandle {
    pub(super) layout: Arc<Layout>,
    pub(super) name: String,
}

/// What a host import returns when it fails: an error the guest sees, or a trap that ends it.
pub enum HostError {
    Guest(types::Error),
    Trap(wasmtime::Error),
}

impl HostError {
    pub fn denied(message: impl ToString) -> Self {
        HostError::Guest(types::Error::Denied(message.to_string()))
    }
    pub fn not_found(message: impl ToString) -> Self {
        HostError::Guest(types::Error::NotFound(message.to_string()))
    }
    pub fn invalid(message: impl ToString) -> Self {
        HostError::Guest(types::Error::InvalidContent(message.to_string()))
    }
    pub fn unsupported(message: impl ToString) -> Self {
        HostError::Guest(types::Error::Unsupported(message.to_string()))
    }
    pub fn failed(message: impl std::fmt::Display) -> Self {
        HostError::Guest(types::Error::Failed(format!("{message:#}")))
    }
}

impl From<RegistryError> for HostError {
    fn from(e: RegistryError) -> Self {
        match e.kind {
            RegistryErrorKind::NotFound => HostError::not_found(e.message),
            RegistryErrorKind::Denied => HostError::denied(e.message),
            RegistryErrorKind::Transient => HostError::Guest(types::Error::Transient(e.message)),
            RegistryErrorKind::Failed => HostError::failed(e.message),
        }
    }
}

/// The same repository, at `digest`.
pub(super) fn at_digest(reference: &Reference, digest: &Digest) -> Reference {
    Reference::with_digest(reference.registry().to_owned(), reference.repository().to_owned(), digest.to_string())
}

impl From<ResourceTableError> for HostError {
    fn from(e: ResourceTableError) -> Self {
        HostError::Trap(e.into())
    }
}

pub(super) type HostResult<T> = Result<T, HostError>;

pub(super) fn parse_digest(s: &str) -> HostResult<Digest> {
    s.parse().map_err(HostError::invalid)
}

pub(super) fn to_wit(d: &oci::Descriptor) -> types::Descriptor {
    types::Descriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.to_string(),
        size: d.size,
        artifact_type: d.artifact_type.clone(),
        annotations: d.annotations.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    }
}

pub(super) fn from_wit(d: &types::Descriptor) -> HostResult<oci::Descriptor> {
    let mut out = oci::Descriptor::new(&d.media_type, parse_digest(&d.digest)?, d.size);
    out.artifact_type = d.artifact_type.clone();
    out.annotations = d.annotations.iter().cloned().collect();
    Ok(out)
}

impl HostState {
    /// Fails the call, and the operation, once the wall-clock limit has passed: the epoch
    /// interrupt only reaches code running in the guest, not the host's own waits.
    pub(super) fn check_deadline(&mut self) -> HostResult<()> {
        if Instant::now() >= self.deadline {
            self.hit = Some(LimitHit::Timeout);
            return Err(HostError::Trap(wasmtime::Error::msg("the driver's time limit passed")));
        }
        Ok(())
    }

    /// The operation's deadline for the host's own loops on the driver's behalf.
    pub(super) fn deadline(&self) -> tar_access::Deadline {
        tar_access::Deadline(self.deadline)
    }

    /// An error from the host's work on an archive: the time limit when that is what stopped
    /// it, else what was wrong with the archive.
    pub(super) fn archive_error(&mut self, what: &str, e: anyhow::Error) -> HostError {
        if e.is::<tar_access::Expired>() {
            self.hit = Some(LimitHit::Timeout);
            return HostError::Trap(wasmtime::Error::msg("the driver's time limit passed"));
        }
        HostError::invalid(format!("{what}: {e:#}"))
    }

    pub(super) fn check_call_bytes(&mut self, call: &'static str, bytes: usize) -> HostResult<()> {
        let bytes = bytes as u64;
        if bytes > self.limits.call_bytes {
            self.hit = Some(LimitHit::CallBytes { call, bytes });
            return Err(HostError::denied(format!(
                "{call} was handed {bytes} bytes, more than the {} allowed in one call",
                self.limits.call_bytes
            )));
        }
        Ok(())
    }

    /// Blob `digest` of a source (or a file source itself) as bytes the host can read at
    /// random, and how to name it in messages. A registry blob is downloaded and checked first.
    pub(super) fn blob_of(
        &mut self,
        s: &Resource<SourceHandle>,
        digest: Option<String>,
    ) -> HostResult<(BlobFile, String)> {
        let digest = digest.as_deref().map(parse_digest).transpose()?;
        match (self.table.get(s)?, digest) {
            (SourceHandle::Layout { layout, .. }, Some(d)) => {
                let blob =
                    layout.blob(&d).map_err(|_| HostError::not_found(format!("blob {d} is not in the store")))?;
                Ok((blob, format!("blob {d}")))
            }
            (SourceHandle::Bytes { blob, location, .. }, None) => Ok((blob.clone(), location.clone())),
            (SourceHandle::Registry { reference, .. }, Some(d)) if self.downloads.contains_key(&d) => {
                Ok((self.downloads[&d].clone(), format!("blob {d} of {}", reference.whole())))
            }
            (SourceHandle::Registry { registry, reference }, Some(d)) => {
                let (registry, reference, deadline) = (registry.clone(), reference.clone(), self.deadline);
                let file = registry
                    .retry(|| {
                        let mut file = tempfile::tempfile().map_err(|e| RegistryError {
                            kind: RegistryErrorKind::Failed,
                            message: format!("a temporary file for blob {d}: {e}"),
                        })?;
                        let mut hashing = HashingWriter::new(BufWriter::with_capacity(1 << 20, &mut file));
                        registry.copy_blob(&reference, &d, Some(deadline), &mut hashing)?;
                        let (actual, _, buffered) = hashing.finish();
                        buffered.into_inner().map_err(|e| RegistryError {
                            kind: RegistryErrorKind::Failed,
                            message: format!("blob {d}: {}", e.error()),
                        })?;
                        if actual != d {
                            return Err(RegistryError {
                                kind: RegistryErrorKind::Failed,
                                message: format!(
                                    "blob {d} of {reference}: the registry served content with digest {actual}"
                                ),
                            });
                        }
                        Ok(file)
                    })
                    .map_err(|e| match e.kind {
                        RegistryErrorKind::Failed => HostError::invalid(e.message),
                        _ => e.into(),
                    })?;
                let blob = BlobFile::whole(file).map_err(HostError::failed)?;
                self.downloads.insert(d.clone(), blob.clone());
                Ok((blob, format!("blob {d} of {}", reference.whole())))
            }
            (SourceHandle::Bytes { .. }, Some(_)) => Err(HostError::unsupported("a file source has no blobs")),
            (_, None) => Err(HostError::unsupported("name the digest of a blob")),
        }
    }

    /// Counts a handle the guest is about to receive.
    pub(super) fn take_handle(&mut self) -> HostResult<()> {
        if self.handles >= self.limits.handles {
            self.hit = Some(LimitHit::Handles);
            return Err(HostError::denied(format!("the driver holds {} handles already", self.handles)));
        }
        self.handles += 1;
        Ok(())
    }

    /// Copies stored blob `digest` into `to` in chunks, checking the deadline between them and
    /// hashing on the way (a bundle read in place was not hashed when it was opened): a blob
    /// whose bytes do not match is refused.
    pub(super) fn copy_verified(
        &mut self,
        from: &BlobFile,
        digest: &Digest,
        to: &mut dyn std::io::Write,
    ) -> HostResult<u64> {
        const CHUNK: u64 = 64 << 20;
        let mut reader = from.reader();
        let mut hashing = HashingWriter::new(BufWriter::with_capacity(1 << 20, to));
        loop {
            let n = std::io::copy(&mut (&mut reader).take(CHUNK), &mut hashing).map_err(HostError::failed)?;
            self.check_deadline()?;
            if n < CHUNK {
                break;
            }
        }
        let (actual, size, buffered) = hashing.finish();
        buffered.into_inner().map_err(|e| HostError::failed(e.into_error()))?;
        if actual != *digest {
            return Err(HostError::invalid(format!("blob {digest} holds content with digest {actual}")));
        }
        Ok(size)
    }
}

impl types::Host for HostState {
    fn convert_error(&mut self, err: HostError) -> wasmtime::Result<types::Error> {
        match err {
            HostError::Guest(e) => Ok(e),
            HostError::Trap(e) => Err(e),
        }
    }
}

impl host::HostSource for HostState {
    fn kind(&mut self, s: Resource<SourceHandle>) -> wasmtime::Result<host::SourceKind> {
        Ok(match self.table.get(&s)? {
            SourceHandle::Layout { .. } => host::SourceKind::Layout,
            SourceHandle::Bytes { kind, .. } => *kind,
            SourceHandle::Registry { .. } => host::SourceKind::Registry,
        })
    }

    fn location(&mut self, s: Resource<SourceHandle>) -> wasmtime::Result<String> {
        Ok(match self.table.get(&s)? {
            SourceHandle::Layout { location, .. } => location.clone(),
            SourceHandle::Bytes { location, .. } => location.clone(),
            SourceHandle::Registry { reference, .. } => reference.whole(),
        })
    }

    fn manifest(&mut self, s: Resource<SourceHandle>, reference: Option<String>) -> HostResult<types::Document> {
        self.check_deadline()?;
        let wanted = reference.as_deref().map(|r| {
            r.parse::<Digest>().map_err(|_| HostError::not_found(format!("{r:?}: manifests are looked up by digest")))
        });
        let wanted = wanted.transpose()?;
        let (layout, root) = match self.table.get(&s)? {
            SourceHandle::Layout { layout, root, .. } => (layout, root),
            SourceHandle::Bytes { .. } => return Err(HostError::unsupported("a file source has no manifests")),
            SourceHandle::Registry { registry, reference } => {
                let target = match &wanted {
                    Some(d) => at_digest(reference, d),
                    None => reference.clone(),
                };
                let (bytes, media_type, digest) = registry.manifest(&target, Some(self.deadline))?;
                return Ok(types::Document { media_type, digest: digest.to_string(), bytes });
            }
        };
        let (digest, media_type) = match wanted {
            None => (root.digest.clone(), Some(root.media_type.clone())),
            Some(d) => (d, None),
        };
        if !layout.has_blob(&digest) {
            return Err(HostError::not_found(format!("manifest {digest} is not in the store")));
        }
        let bytes = layout.read_blob(&digest, MAX_DOCUMENT).map_err(HostError::invalid)?;
        let media_type = media_type
            .or_else(|| oci::media_type_of(&bytes))
            .ok_or_else(|| HostError::invalid(format!("{digest} is not a manifest or index")))?;
        Ok(types::Document { media_type, digest: digest.to_string(), bytes })
    }

    fn size(&mut self, s: Resource<SourceHandle>, digest: Option<String>) -> HostResult<u64> {
        match (self.table.get(&s)?, digest) {
            (SourceHandle::Layout { layout, .. }, Some(d)) => {
                let d = parse_digest(&d)?;
                layout
                    .blob(&d)
                    .map(|b| b.size)
                    .map_err(|_| HostError::not_found(format!("blob {d} is not in the store")))
            }
            (SourceHandle::Layout { root, .. }, None) => Ok(root.size),
            (SourceHandle::Bytes { blob, .. }, None) => Ok(blob.size),
            (SourceHandle::Bytes { .. }, Some(_)) => Err(HostError::unsupported("a file source has no blobs")),
            (SourceHandle::Registry { .. }, _) => {
                Err(HostError::unsupported("the sizes of registry blobs are in their manifests"))
            }
        }
    }

    fn read(
        &mut self,
        s: Resource<SourceHandle>,
        digest: Option<String>,
        offset: u64,
        len: u32,
    ) -> HostResult<Vec<u8>> {
        self.check_deadline()?;
        let len = len.min(MAX_READ) as usize;
        let mut buf = vec![0; len];
        let n = match (self.table.get(&s)?, digest) {
            (SourceHandle::Layout { layout, .. }, Some(d)) => {
                let d = parse_digest(&d)?;
                let blob =
                    layout.blob(&d).map_err(|_| HostError::not_found(format!("blob {d} is not in the store")))?;
                blob.read_at(&mut buf, offset)
            }
            (SourceHandle::Bytes { blob, .. }, None) => blob.read_at(&mut buf, offset),
            (SourceHandle::Layout { .. }, None) => {
                return Err(HostError::unsupported("a stored image is read blob by blob: name a digest"));
            }
            (SourceHandle::Bytes { .. }, Some(_)) => {
                return Err(HostError::unsupported("a file source has no blobs"));
            }
            (SourceHandle::Registry { registry, reference }, Some(d)) => {
                return Ok(registry.read(reference, &parse_digest(&d)?, offset, len as u64, Some(self.deadline))?);
            }
            (SourceHandle::Registry { .. }, None) => {
                return Err(HostError::unsupported("a registry is read blob by blob: name a digest"));
            }
        }
        .map_err(HostError::failed)?;
        buf.truncate(n);
        Ok(buf)
    }

    fn tar_entries(&mut self, s: Resource<SourceHandle>, digest: Option<String>) -> HostResult<Vec<types::TarEntry>> {
        self.check_deadline()?;
        let (blob, what) = self.blob_of(&s, digest)?;
        let entries = tar_access::entries(&blob, self.deadline()).map_err(|e| self.archive_error(&what, e))?;
        self.check_deadline()?;
        Ok(entries.into_iter().map(tar_entry_to_wit).collect())
    }

    fn tar_entry(
        &mut self,
        s: Resource<SourceHandle>,
        digest: Option<String>,
        name: String,
    ) -> HostResult<Resource<SourceHandle>> {
        self.check_deadline()?;
        let (blob, what) = self.blob_of(&s, digest)?;
        let scratch = std::env::temp_dir();
        let entry =
            tar_access::entry(&blob, &name, &scratch, self.deadline()).map_err(|e| self.archive_error(&what, e))?;
        self.take_handle()?;
        let handle =
            SourceHandle::Bytes { blob: entry, location: format!("{what}: {name}"), kind: host::SourceKind::File };
        Ok(self.table.push(handle)?)
    }

    fn drop(&mut self, s: Resource<SourceHandle>) -> wasmtime::Result<()> {
        self.table.delete(s)?;
        self.handles = self.handles.saturating_sub(1);
        Ok(())
    }
}

impl host::HostStore for HostState {
    fn copy_blob(
        &mut self,
        st: Resource<StoreHandle>,
        s: Resource<SourceHandle>,
        digest: Option<String>,
        media_type: String,
    ) -> HostResult<types::Descriptor> {
        self.check_deadline()?;
        let expected = digest.as_deref().map(parse_digest).transpose()?;
        let layout = self.table.get(&st)?.layout.clone();
        // Stored already (or by now, by another image of the bundle fetched in parallel): the
        // store only holds checked blobs.
        let _claim = match &expected {
            Some(d) => match layout.claim(d) {
                Some(claim) => Some(claim),
                None => {
                    let size = layout.blob_size(d).map_err(HostError::failed)?;
                    return Ok(to_wit(&oci::Descriptor::new(media_type, d.clone(), size)));
                }
            },
            None => None,
        };
        let stored = match (self.table.get(&s)?, &expected) {
            (SourceHandle::Registry { registry, reference }, Some(d)) => {
                let (registry, reference, deadline) = (registry.clone(), reference.clone(), self.deadline);
                let fail =
                    |e: anyhow::Error| RegistryError { kind: RegistryErrorKind::Failed, message: format!("{e:#}") };
                registry
                    .retry(|| {
                        let mut writer = layout.blob_writer().map_err(fail)?;
                        registry.copy_blob(&reference, d, Some(deadline), &mut writer)?;
                        writer.commit(Some(d)).map_err(fail)
                    })
                    .map_err(|e| match e.kind {
                        RegistryErrorKind::Failed => HostError::invalid(e.message),
                        _ => e.into(),
                    })?
            }
            (SourceHandle::Layout { layout: source, .. }, Some(d)) => {
                let blob =
                    source.blob(d).map_err(|_| HostError::not_found(format!("blob {d} is not in the source")))?;
                layout.put_verified(&mut blob.reader(), Some(d)).map_err(HostError::invalid)?
            }
            (SourceHandle::Bytes { blob, .. }, None) => {
                layout.put_verified(&mut blob.reader(), None).map_err(HostError::invalid)?
            }
            (SourceHandle::Bytes { .. }, Some(_)) => return Err(HostError::unsupported("a file source has no blobs")),
            (_, None) => return Err(HostError::unsupported("name the digest of the blob to copy")),
        };
        self.events.transferred(stored.1);
        self.check_deadline()?;
        Ok(to_wit(&oci::Descriptor::new(media_type, stored.0, stored.1)))
    }

    fn put_document(
        &mut self,
        st: Resource<StoreHandle>,
        media_type: String,
        bytes: Vec<u8>,
    ) -> HostResult<types::Descriptor> {
        self.check_deadline()?;
        self.check_call_bytes("store.put-document", bytes.len())?;
        let digest = self.table.get(&st)?.layout.put_bytes(&bytes).map_err(HostError::failed)?;
        Ok(to_wit(&oci::Descriptor::new(media_type, digest, bytes.len() as u64)))
    }

    fn set_root(&mut self, st: Resource<StoreHandle>, root: types::Descriptor) -> HostResult<()> {
        self.check_deadline()?;
        let store = self.table.get(&st)?;
        let mut root = from_wit(&root)?;
        store.layout.graph(&root).map_err(|e| HostError::invalid(format!("root {}: {e:#}", root.digest)))?;
        check_root_type(&store.layout, &root).map_err(|e| HostError::invalid(format!("root {} {e}", root.digest)))?;
        self.check_deadline()?;
        let store = self.table.get(&st)?;
        root.annotations.insert(REF_NAME.into(), store.name.clone());
        store.layout.add_to_index(root.clone()).map_err(HostError::failed)?;
        self.recorded_root = Some(root);
        Ok(())
    }

    fn drop(&mut self, st: Resource<StoreHandle>) -> wasmtime::Result<()> {
        self.table.delete(st)?;
        self.handles = self.handles.saturating_sub(1);
        Ok(())
    }
}

/// Whether the root's media type is what its bytes say they are. The graph walk has checked
/// every size and that every manifest and index parses; but a root recorded as a manifest that
/// is an index by its own `mediaType`, or as a plain blob while it is a manifest or index, would
/// hide what it refers to from everything that walks the image later.
fn check_root_type(layout: &Layout, root: &oci::Descriptor) -> Result<(), String> {
    if root.size > MAX_DOCUMENT {
        return Ok(());
    }
    let bytes = layout.read_blob(&root.digest, MAX_DOCUMENT).map_err(|e| format!("{e:#}"))?;
    let declared = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|json| json.get("mediaType")?.as_str().map(str::to_owned));
    match declared {
        Some(own) if own != root.media_type && (oci::is_document(&own) || oci::is_document(&root.media_type)) => {
            Err(format!("is a {own} by its own mediaType, but was recorded as {:?}", root.media_type))
        }
        _ => Ok(()),
    }
}

impl From<host::Level> for super::Level {
    fn from(level: host::Level) -> Self {
        match level {
            host::Level::Error => super::Level::Error,
            host::Level::Warn => super::Level::Warn,
            host::Level::Info => super::Level::Info,
            host::Level::Debug => super::Level::Debug,
        }
    }
}

fn tar_entry_to_wit(entry: tar_access::Entry) -> types::TarEntry {
    use tar_access::Kind;
    types::TarEntry {
        name: entry.name,
        kind: match entry.kind {
            Kind::File => types::TarEntryKind::File,
            Kind::Directory => types::TarEntryKind::Directory,
            Kind::Symlink => types::TarEntryKind::Symlink,
            Kind::Hardlink => types::TarEntryKind::Hardlink,
            Kind::Other => types::TarEntryKind::Other,
        },
        size: entry.size,
        link: entry.link,
        mode: entry.mode,
    }
}
