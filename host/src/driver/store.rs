//! The `store` resource: the bundle store an image is fetched into, every blob hashed by the
//! host on its way in, and the root the driver records checked against what is stored.

use super::Reporting;
use super::bindings::since_v0_1_0::ferry::driver::{host, types};
use super::host::{HostError, HostResult, at_digest, from_wit, parse_digest, to_wit};
use super::source::SourceHandle;
use super::state::HostState;
use crate::oci::{self, BlobFile, Descriptor, Digest, Layout, MAX_DOCUMENT, REF_NAME, Stored};
use crate::registry::{Deferred, RegistryError, RegistryErrorKind, Remote};
use std::io;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::Resource;

/// The bundle store an image is being fetched into, and the name it will have there.
pub struct StoreHandle {
    pub(super) layout: Arc<Layout>,
    /// Where registry blobs are only named, to be fetched when the archive is written (an
    /// export); `None`: every blob is fetched when it is copied.
    pub(super) deferred: Option<Arc<Deferred>>,
    pub(super) name: String,
    /// The image, as messages name it: `key (reference)`.
    pub(super) image: String,
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
        let (layout, deferred, image) = {
            let handle = self.table.get(&st)?;
            (handle.layout.clone(), handle.deferred.clone(), handle.image.clone())
        };
        if let (Some(deferred), Some(d), SourceHandle::Registry { registry, reference }) =
            (&deferred, &expected, self.table.get(&s)?)
        {
            let size = if layout.has_blob(d) {
                layout.blob_size(d).map_err(HostError::failed)?
            } else {
                let size = registry.declared_size(reference, d).map_err(|e| HostError::invalid(e.message))?;
                let events = self.events.clone();
                let remote = Remote {
                    size,
                    registry: registry.clone(),
                    reference: reference.clone(),
                    image,
                    timeout: self.limits.timeout,
                    progress: Arc::new(move |bytes| events.transferred(bytes)),
                };
                deferred.note(d, remote)
            };
            return Ok(to_wit(&oci::Descriptor::new(media_type, d.clone(), size)));
        }
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
        let events = self.events.clone();
        let stored = match (self.table.get(&s)?, &expected) {
            (SourceHandle::Registry { registry, reference }, Some(d)) => {
                let (registry, reference, deadline) = (registry.clone(), reference.clone(), self.deadline);
                let fail =
                    |e: anyhow::Error| RegistryError { kind: RegistryErrorKind::Failed, message: format!("{e:#}") };
                registry
                    .retry(|| {
                        let mut writer = layout.blob_writer().map_err(fail)?;
                        let mut reporting = Reporting { inner: &mut writer, events: events.events() };
                        registry.copy_blob(&reference, d, Some(deadline), &mut reporting)?;
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
                let mut reader = Reporting { inner: blob.reader(), events: events.events() };
                layout.put_verified(&mut reader, Some(d)).map_err(HostError::invalid)?
            }
            (SourceHandle::Bytes { blob, .. }, None) => {
                let mut reader = Reporting { inner: blob.reader(), events: events.events() };
                layout.put_verified(&mut reader, None).map_err(HostError::invalid)?
            }
            (SourceHandle::Bytes { .. }, Some(_)) => return Err(HostError::unsupported("a file source has no blobs")),
            (_, None) => return Err(HostError::unsupported("name the digest of the blob to copy")),
        };
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
        let view = StoreView { layout: &store.layout, deferred: store.deferred.as_deref(), deadline: self.deadline };
        view.graph(&root).map_err(|e| HostError::invalid(format!("root {}: {e:#}", root.digest)))?;
        check_root_type(&view, &root).map_err(|e| HostError::invalid(format!("root {} {e}", root.digest)))?;
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
fn check_root_type(store: &StoreView, root: &oci::Descriptor) -> Result<(), String> {
    if root.size > MAX_DOCUMENT {
        return Ok(());
    }
    let bytes = store.read_blob(&root.digest, MAX_DOCUMENT).map_err(|e| format!("{e:#}"))?;
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

/// The store as the graph walk of `set-root` sees it: stored blobs, and deferred ones by their
/// noted size. A deferred blob the walk must read (a manifest a driver copied as a blob) is
/// fetched into the store then, within the document cap.
struct StoreView<'a> {
    layout: &'a Layout,
    deferred: Option<&'a Deferred>,
    deadline: Instant,
}

impl StoreView<'_> {
    fn remote(&self, digest: &Digest) -> Option<Remote> {
        self.deferred.and_then(|d| d.get(digest))
    }
}

impl Stored for StoreView<'_> {
    fn location(&self) -> String {
        self.layout.location()
    }

    fn blob(&self, digest: &Digest) -> io::Result<BlobFile> {
        let Some(remote) = self.remote(digest).filter(|_| !self.layout.has_blob(digest)) else {
            return self.layout.blob(digest);
        };
        if remote.size > MAX_DOCUMENT {
            return Err(io::Error::other(format!("{} bytes, more than a manifest may have", remote.size)));
        }
        // Registries serve manifests from their manifests endpoint (distribution's blobs
        // endpoint knows only layers and configs); the digest in the reference pins the bytes.
        let (bytes, _, _) = remote
            .registry
            .manifest(&at_digest(&remote.reference, digest), Some(self.deadline))
            .map_err(|e| io::Error::other(e.message))?;
        self.layout.put_verified(&mut &bytes[..], Some(digest)).map_err(|e| io::Error::other(format!("{e:#}")))?;
        (remote.progress)(remote.size);
        self.deferred.expect("remote").remove(digest);
        self.layout.blob(digest)
    }

    fn entries(&self) -> anyhow::Result<Vec<Descriptor>> {
        self.layout.entries()
    }

    fn has_blob(&self, digest: &Digest) -> bool {
        self.layout.has_blob(digest) || self.remote(digest).is_some()
    }

    fn blob_size(&self, digest: &Digest) -> io::Result<u64> {
        match self.remote(digest).filter(|_| !self.layout.has_blob(digest)) {
            Some(remote) => Ok(remote.size),
            None => Ok(self.layout.blob(digest)?.size),
        }
    }
}
