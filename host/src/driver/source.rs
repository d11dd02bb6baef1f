//! The `source` resource: an image's bytes as the host opens them for one operation (a stored
//! image, a file or download, a registry image), read by the driver in capped pieces, and tars
//! listed and opened by the host so their bytes never enter the guest.

use super::bindings::since_v0_1_0::ferry::driver::{host, types};
use super::host::{HostError, HostResult, at_digest, parse_digest};
use super::state::HostState;
use super::tar_access;
use crate::oci::{self, BlobFile, Digest, MAX_DOCUMENT, Stored};
use crate::registry::Registry;
use oci_client::Reference;
use std::sync::Arc;
use wasmtime::component::Resource;

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
