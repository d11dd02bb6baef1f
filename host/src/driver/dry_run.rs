//! A relocation's dry run: the driver runs its real `relocate` against a destination that
//! answers what the real one holds and counts what would be sent, but sends and writes nothing.
//! The prediction is then the real run's own plan: the artifact a driver builds (a disk framed
//! as a containerDisk layer, a chart with rewritten values) and the digests it would get.

use super::grant::inside;
use super::host::{HostError, HostResult};
use super::state::HostState;
use crate::oci::{self, BlobFile, Digest, HashingWriter, Layout};
use crate::registry::Registry;
use oci_client::Reference;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a dry run found one image's relocation would move.
#[derive(Debug, Default)]
pub struct Tally {
    blobs: AtomicU64,
    present: AtomicU64,
    bytes: AtomicU64,
}

impl Tally {
    /// Blobs the relocation would put at the destination.
    pub fn blobs(&self) -> u64 {
        self.blobs.load(Ordering::Relaxed)
    }

    /// Of those, the ones the destination holds already.
    pub fn present(&self) -> u64 {
        self.present.load(Ordering::Relaxed)
    }

    /// Bytes of the blobs (and files) the destination lacks.
    pub fn bytes_to_send(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub(super) fn count(&self, size: u64, present: bool) {
        self.blobs.fetch_add(1, Ordering::Relaxed);
        if present {
            self.present.fetch_add(1, Ordering::Relaxed);
        } else {
            self.bytes.fetch_add(size, Ordering::Relaxed);
        }
    }
}

/// The destination a dry run looks at.
#[derive(Clone)]
pub enum Peek {
    /// A directory's layout, if it exists yet (a dry run creates nothing).
    Directory {
        path: PathBuf,
        layout: Option<Arc<Layout>>,
    },
    Registry {
        registry: Arc<Registry>,
        target: Reference,
    },
}

#[derive(Clone)]
pub struct DryRun {
    pub(super) peek: Peek,
    pub(super) tally: Arc<Tally>,
}

impl DryRun {
    pub(super) fn directory(path: PathBuf, tally: Arc<Tally>) -> Self {
        // Read only to answer what is there: a layout that cannot be opened holds nothing yet.
        let layout = Layout::open(&path).ok().map(Arc::new);
        DryRun { peek: Peek::Directory { path, layout }, tally }
    }

    pub(super) fn registry(registry: Arc<Registry>, target: Reference, tally: Arc<Tally>) -> Self {
        DryRun { peek: Peek::Registry { registry, target }, tally }
    }

    pub(super) fn location(&self) -> String {
        match &self.peek {
            Peek::Directory { path, .. } => path.display().to_string(),
            Peek::Registry { target, .. } => format!("{}/{}", target.registry(), target.repository()),
        }
    }

    fn directory_layout(&self, call: &str) -> HostResult<(&Path, Option<Arc<Layout>>)> {
        match &self.peek {
            Peek::Directory { path, layout } => Ok((path, layout.clone())),
            Peek::Registry { .. } => Err(HostError::unsupported(format!("{call} needs a directory destination"))),
        }
    }
}

impl HostState {
    /// Whether the destination holds blob `digest`, asked as the real run would ask it.
    pub(super) fn dry_holds(&mut self, d: &DryRun, digest: &Digest) -> HostResult<bool> {
        match &d.peek {
            Peek::Directory { layout: None, .. } => Ok(false),
            Peek::Directory { layout: Some(layout), .. } => {
                let layout = layout.clone();
                self.holds_verified(&layout, digest)
            }
            Peek::Registry { registry, target } => Ok(registry.has_blob(target, digest, Some(self.deadline))?),
        }
    }

    /// Counts `blobs` as the real run would copy them; returns how many it would copy.
    pub(super) fn dry_copy(&mut self, d: &DryRun, blobs: &[oci::Descriptor]) -> HostResult<usize> {
        let mut copied = 0;
        for blob in blobs {
            let present = self.dry_holds(d, &blob.digest)?;
            d.tally.count(blob.size, present);
            copied += usize::from(!present);
        }
        Ok(copied)
    }

    /// Whether a registry destination serves `reference` as manifest `digest` already, in which
    /// case the real run sends nothing more for the image.
    pub(super) fn dry_has_manifest(&mut self, d: &DryRun, reference: &Reference, digest: &Digest) -> HostResult<bool> {
        match &d.peek {
            Peek::Registry { registry, .. } => {
                Ok(registry.manifest_digest(reference, Some(self.deadline))?.as_ref() == Some(digest))
            }
            Peek::Directory { .. } => Ok(false),
        }
    }

    /// `write-file` in a dry run: what is there already with these bytes is not sent again;
    /// what the operator put there is refused as the real run refuses it.
    pub(super) fn dry_write_file(
        &mut self,
        d: &DryRun,
        from: &BlobFile,
        blob: &oci::Descriptor,
        name: &str,
    ) -> HostResult<String> {
        let path = inside("file name", name)?;
        let (dir, layout) = d.directory_layout("write-file")?;
        let location = format!("{}/{name}", dir.display());
        let mut present = false;
        if let Some(layout) = layout {
            if let Ok(existing) = layout.open_file(path) {
                let existing = BlobFile::whole(existing).map_err(HostError::failed)?;
                present = existing.size == blob.size
                    && self.copy_verified(&existing, &blob.digest, &mut std::io::sink()).is_ok();
            }
            if !present && layout.exists(path) && !layout.made_by_ferry(path).map_err(HostError::failed)? {
                return Err(HostError::denied(format!(
                    "{location} exists already and ferry did not make it; move it away to relocate here"
                )));
            }
        }
        if from.size != blob.size {
            return Err(HostError::invalid(format!(
                "blob {} is {} bytes, its descriptor says {}",
                blob.digest, from.size, blob.size
            )));
        }
        d.tally.count(blob.size, present);
        Ok(location)
    }

    /// `extract-tar` in a dry run: the real run extracts the whole tar again.
    pub(super) fn dry_extract(&mut self, d: &DryRun, blob: &oci::Descriptor, name: &str) -> HostResult<String> {
        inside("directory name", name)?;
        let (dir, _) = d.directory_layout("extract-tar")?;
        let location = format!("{}/{name}", dir.display());
        d.tally.count(blob.size, false);
        Ok(location)
    }

    /// The digest and size of the layer `copy-blob-as-tar` would make, hashed without being
    /// written; counted as present if the destination holds it.
    pub(super) fn dry_framed(
        &mut self,
        d: &DryRun,
        head: &[u8],
        source: &BlobFile,
        digest: &Digest,
        tail: &[u8],
    ) -> HostResult<(Digest, u64)> {
        let mut hashing = HashingWriter::new(std::io::sink());
        hashing.write_all(head).map_err(HostError::failed)?;
        self.copy_verified(source, digest, &mut hashing)?;
        hashing.write_all(tail).map_err(HostError::failed)?;
        let (layer, size, _) = hashing.finish();
        let present = self.dry_holds(d, &layer)?;
        d.tally.count(size, present);
        Ok((layer, size))
    }
}
