//! Destinations a driver relocates into: the `ferry:driver/host.destination` resource. The
//! operator grants a directory or a registry prefix; every destination a driver opens must lie
//! inside that grant.

use super::Reporting;
use super::bindings::since_v0_1_0::ferry::driver::{host, types};
use super::dry_run::{DryRun, Peek};
use super::grant::{check_tag, inside};
use super::host::{HostError, HostResult, from_wit, parse_digest, to_wit};
use super::source::SourceHandle;
use super::state::HostState;
use super::tar_access;
use crate::oci::{self, BlobFile, Digest, HashingWriter, Layout, MAX_DOCUMENT, REF_NAME, Stored, is_document};
use crate::registry::{Pushed, Registry, Sent, Upload};
use oci_client::Reference;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use wasmtime::component::Resource;

/// What `copy-blob-as-tar` makes: an uncompressed layer, so its diff ID is its digest.
use crate::oci::media_types::OCI_LAYER_TAR as TAR_LAYER;

/// A destination inside the operator's grant.
pub enum DestinationHandle {
    Directory(Arc<Layout>),
    Registry {
        registry: Arc<Registry>,
        target: Reference,
        jobs: usize,
    },
    /// A dry run's: asked what it holds, never written to.
    DryRun(DryRun),
}

impl DestinationHandle {
    fn location(&self) -> String {
        match self {
            DestinationHandle::Directory(layout) => layout.path().display().to_string(),
            DestinationHandle::Registry { target, .. } => format!("{}/{}", target.registry(), target.repository()),
            DestinationHandle::DryRun(dry) => dry.location(),
        }
    }

    /// This destination, if it is a dry run's.
    fn dry_run(&self) -> Option<DryRun> {
        match self {
            DestinationHandle::DryRun(dry) => Some(dry.clone()),
            _ => None,
        }
    }

    fn reference(&self, tag: Option<&str>, digest: &Digest) -> String {
        match tag {
            Some(tag) => format!("{}:{tag}@{digest}", self.location()),
            None => format!("{}@{digest}", self.location()),
        }
    }
}

/// A manifest of repository `target`, by tag or, without one, by digest.
fn at(target: &Reference, tag: Option<&str>, digest: &Digest) -> Reference {
    match tag {
        Some(tag) => Reference::with_tag(target.registry().into(), target.repository().into(), tag.into()),
        None => super::host::at_digest(target, digest),
    }
}

fn stored_layout(source: &SourceHandle) -> HostResult<&Arc<dyn Stored>> {
    match source {
        SourceHandle::Layout { layout, .. } => Ok(layout),
        SourceHandle::Bytes { .. } | SourceHandle::Registry { .. } => {
            Err(HostError::unsupported("only stored images are copied to a destination"))
        }
    }
}

impl HostState {
    /// Tells the operator's events of every chunk of an upload as it goes.
    fn sent(&self) -> Sent {
        let events = self.events.clone();
        Arc::new(move |n| events.transferred(n))
    }

    /// Tells the operator's events of a blob of `size` bytes an upload did not have to send.
    fn report_unsent(&self, size: u64, pushed: &Pushed) {
        match pushed {
            Pushed::Present => self.events.skipped(size, false),
            Pushed::Mounted => self.events.skipped(size, true),
            Pushed::Uploaded => {}
        }
    }

    /// Whether a directory destination holds blob `digest`: a file of that name whose bytes
    /// hash to it. A file that does not is not trusted, and is replaced.
    pub(super) fn holds_verified(&mut self, layout: &Layout, digest: &Digest) -> HostResult<bool> {
        let Ok(file) = layout.open_blob(digest) else { return Ok(false) };
        let blob = BlobFile::whole(file).map_err(HostError::failed)?;
        Ok(self.copy_verified(&blob, digest, &mut std::io::sink()).is_ok())
    }

    /// Copies stored blobs that the destination lacks; returns how many were copied.
    fn copy_blobs(
        &mut self,
        d: &Resource<DestinationHandle>,
        source: &dyn Stored,
        blobs: &[oci::Descriptor],
    ) -> HostResult<usize> {
        for blob in blobs {
            let size = source
                .blob(&blob.digest)
                .map(|b| b.size)
                .map_err(|_| HostError::not_found(format!("blob {} is not in the store", blob.digest)))?;
            if size != blob.size {
                return Err(HostError::invalid(format!(
                    "blob {} is {size} bytes, its descriptor says {}",
                    blob.digest, blob.size
                )));
            }
        }
        let copied = match self.table.get(d)? {
            DestinationHandle::DryRun(dry) => {
                let dry = dry.clone();
                return self.dry_copy(&dry, blobs);
            }
            DestinationHandle::Registry { registry, target, jobs } => {
                let (registry, target, jobs) = (registry.clone(), target.clone(), *jobs);
                let sent = self.sent();
                let uploads = blobs
                    .iter()
                    .map(|b| {
                        let file = source.blob(&b.digest).map_err(HostError::failed)?;
                        Ok(Upload::of(b.digest.clone(), file).reporting(sent.clone()))
                    })
                    .collect::<HostResult<Vec<_>>>()?;
                let pushed = registry.push_blobs(&target, uploads, jobs, Some(self.deadline))?;
                for (blob, pushed) in blobs.iter().zip(&pushed) {
                    self.report_unsent(blob.size, pushed);
                }
                pushed.iter().filter(|p| **p != Pushed::Present).count()
            }
            DestinationHandle::Directory(layout) => {
                let layout = layout.clone();
                let mut copied = 0;
                for blob in blobs {
                    if self.holds_verified(&layout, &blob.digest)? {
                        self.events.skipped(blob.size, false);
                        continue;
                    }
                    let mut pending = layout.pending_blob().map_err(HostError::failed)?;
                    let from = source.blob(&blob.digest).map_err(HostError::failed)?;
                    let events = self.events.clone();
                    self.copy_verified(
                        &from,
                        &blob.digest,
                        &mut Reporting { inner: pending.file(), events: events.events() },
                    )?;
                    pending.persist_as(Layout::blob_name(&blob.digest)).map_err(HostError::failed)?;
                    copied += 1;
                }
                copied
            }
        };
        self.check_deadline()?;
        Ok(copied)
    }

    /// Stores a document; with `tag`, names it so. Returns the new reference.
    fn put_root(
        &mut self,
        d: &Resource<DestinationHandle>,
        root: &oci::Descriptor,
        bytes: &[u8],
        tag: Option<&str>,
    ) -> HostResult<String> {
        self.put_document_as(d, root, bytes, tag, true)
    }

    /// Stores a document; a directory's index lists it only when it is a root (`listed`):
    /// skopeo and umoci refuse a layout whose index also lists the children of its images.
    fn put_document_as(
        &mut self,
        d: &Resource<DestinationHandle>,
        root: &oci::Descriptor,
        bytes: &[u8],
        tag: Option<&str>,
        listed: bool,
    ) -> HostResult<String> {
        let destination = self.table.get(d)?;
        match destination {
            DestinationHandle::DryRun(_) if !listed => return Ok(destination.reference(None, &root.digest)),
            DestinationHandle::DryRun(_) => {}
            DestinationHandle::Directory(layout) => {
                layout.put_bytes(bytes).map_err(HostError::failed)?;
                if !listed {
                    return Ok(destination.reference(None, &root.digest));
                }
                let mut entry = root.clone();
                if let Some(tag) = tag {
                    entry.annotations.insert(REF_NAME.into(), tag.to_owned());
                }
                layout.add_to_index(entry).map_err(HostError::failed)?;
            }
            DestinationHandle::Registry { registry, target, .. } => {
                registry.push_manifest(&at(target, tag, &root.digest), bytes, &root.media_type, Some(self.deadline))?;
            }
        }
        Ok(destination.reference(tag, &root.digest))
    }
}

impl host::HostDestination for HostState {
    fn kind(&mut self, d: Resource<DestinationHandle>) -> wasmtime::Result<host::DestinationKind> {
        Ok(match self.table.get(&d)? {
            DestinationHandle::Directory(_)
            | DestinationHandle::DryRun(DryRun { peek: Peek::Directory { .. }, .. }) => {
                host::DestinationKind::Directory
            }
            DestinationHandle::Registry { .. }
            | DestinationHandle::DryRun(DryRun { peek: Peek::Registry { .. }, .. }) => host::DestinationKind::Registry,
        })
    }

    fn location(&mut self, d: Resource<DestinationHandle>) -> wasmtime::Result<String> {
        Ok(self.table.get(&d)?.location())
    }

    fn has_blob(&mut self, d: Resource<DestinationHandle>, digest: String) -> HostResult<bool> {
        let digest = parse_digest(&digest)?;
        match self.table.get(&d)? {
            DestinationHandle::Directory(layout) => {
                let layout = layout.clone();
                self.holds_verified(&layout, &digest)
            }
            DestinationHandle::Registry { registry, target, .. } => {
                Ok(registry.has_blob(target, &digest, Some(self.deadline))?)
            }
            DestinationHandle::DryRun(dry) => {
                let dry = dry.clone();
                self.dry_holds(&dry, &digest)
            }
        }
    }

    fn copy_blob(
        &mut self,
        d: Resource<DestinationHandle>,
        s: Resource<SourceHandle>,
        blob: types::Descriptor,
    ) -> HostResult<types::Transfer> {
        self.check_deadline()?;
        let blob = from_wit(&blob)?;
        let source = stored_layout(self.table.get(&s)?)?.clone();
        let copied = self.copy_blobs(&d, source.as_ref(), &[blob])?;
        Ok(if copied == 1 { types::Transfer::Copied } else { types::Transfer::Present })
    }

    fn copy_artifact(
        &mut self,
        d: Resource<DestinationHandle>,
        s: Resource<SourceHandle>,
        root: types::Descriptor,
        tag: Option<String>,
    ) -> HostResult<String> {
        self.check_deadline()?;
        check_tag(&tag)?;
        let root = from_wit(&root)?;
        // A registry holds a manifest only once everything it refers to is there: a rerun
        // finds what the last run finished with one request per image.
        let destination = self.table.get(&d)?;
        if let DestinationHandle::Registry { registry, target, .. } = destination
            && registry.manifest_digest(&at(target, tag.as_deref(), &root.digest), Some(self.deadline))?.as_ref()
                == Some(&root.digest)
        {
            let reference = destination.reference(tag.as_deref(), &root.digest);
            let source = stored_layout(self.table.get(&s)?)?.clone();
            let graph = source.graph(&root).map_err(HostError::invalid)?;
            self.events.skipped(graph.iter().filter(|b| !is_document(&b.media_type)).map(|b| b.size).sum(), false);
            return Ok(self.wrote(reference));
        }
        let source = stored_layout(self.table.get(&s)?)?.clone();
        let graph = source.graph(&root).map_err(HostError::invalid)?;
        if let Some(dry) = self.table.get(&d)?.dry_run()
            && let Peek::Registry { target, .. } = &dry.peek
            && self.dry_has_manifest(&dry, &at(target, tag.as_deref(), &root.digest), &root.digest)?
        {
            for blob in graph.iter().filter(|b| !is_document(&b.media_type)) {
                dry.tally.count(blob.size, true);
            }
            let reference = self.table.get(&d)?.reference(tag.as_deref(), &root.digest);
            return Ok(self.wrote(reference));
        }
        let (documents, blobs): (Vec<_>, Vec<_>) = graph.into_iter().partition(|d| is_document(&d.media_type));
        self.copy_blobs(&d, source.as_ref(), &blobs)?;
        let mut reference = String::new();
        // Children before the documents that name them; the root, last, under its tag.
        for document in &documents {
            let bytes = source.read_blob(&document.digest, MAX_DOCUMENT).map_err(HostError::invalid)?;
            let is_root = document.digest == root.digest;
            let tag = if is_root { tag.as_deref() } else { None };
            let stored = oci::Descriptor { annotations: Default::default(), ..document.clone() };
            let named = self.put_document_as(&d, &stored, &bytes, tag, is_root)?;
            if is_root {
                reference = named;
            }
        }
        Ok(self.wrote(reference))
    }

    fn put_document(
        &mut self,
        d: Resource<DestinationHandle>,
        media_type: String,
        bytes: Vec<u8>,
        tag: Option<String>,
    ) -> HostResult<String> {
        self.check_deadline()?;
        self.check_call_bytes("destination.put-document", bytes.len())?;
        check_tag(&tag)?;
        let root = oci::Descriptor::new(media_type, Digest::of(&bytes), bytes.len() as u64);
        let reference = self.put_root(&d, &root, &bytes, tag.as_deref())?;
        Ok(self.wrote(reference))
    }

    fn write_file(
        &mut self,
        d: Resource<DestinationHandle>,
        s: Resource<SourceHandle>,
        blob: types::Descriptor,
        name: String,
    ) -> HostResult<String> {
        self.check_deadline()?;
        let blob = from_wit(&blob)?;
        let path = inside("file name", &name)?;
        let from = stored_layout(self.table.get(&s)?)?
            .blob(&blob.digest)
            .map_err(|_| HostError::not_found(format!("blob {} is not in the store", blob.digest)))?;
        if let Some(dry) = self.table.get(&d)?.dry_run() {
            let location = self.dry_write_file(&dry, &from, &blob, &name)?;
            return Ok(self.wrote(location));
        }
        let DestinationHandle::Directory(layout) = self.table.get(&d)? else {
            return Err(HostError::unsupported("write-file needs a directory destination"));
        };
        let layout = layout.clone();
        let location = format!("{}/{name}", layout.path().display());
        // Already there with these bytes: nothing to write. Something else there is replaced
        // only if ferry wrote it.
        if let Ok(existing) = layout.open_file(path) {
            let existing = BlobFile::whole(existing).map_err(HostError::failed)?;
            if existing.size == blob.size && self.copy_verified(&existing, &blob.digest, &mut std::io::sink()).is_ok() {
                self.events.skipped(blob.size, false);
                return Ok(self.wrote(location));
            }
        }
        let replace = layout.made_by_ferry(path).map_err(HostError::failed)?;
        if !replace && layout.exists(path) {
            return Err(HostError::denied(format!(
                "{location} exists already and ferry did not make it; move it away to relocate here"
            )));
        }
        let parent = path.parent().unwrap_or(Path::new(""));
        let mut pending = layout.pending(parent).map_err(HostError::denied)?;
        let events = self.events.clone();
        self.copy_verified(&from, &blob.digest, &mut Reporting { inner: pending.file(), events: events.events() })?;
        pending.persist_as(path).map_err(HostError::denied)?;
        // Recorded once it is there: a refused or failed write claims nothing.
        layout.note_made(path).map_err(HostError::failed)?;
        Ok(self.wrote(location))
    }

    fn put_blob(
        &mut self,
        d: Resource<DestinationHandle>,
        media_type: String,
        bytes: Vec<u8>,
    ) -> HostResult<types::Descriptor> {
        self.check_deadline()?;
        self.check_call_bytes("destination.put-blob", bytes.len())?;
        let descriptor = oci::Descriptor::new(media_type, Digest::of(&bytes), bytes.len() as u64);
        match self.table.get(&d)? {
            DestinationHandle::DryRun(dry) => {
                let dry = dry.clone();
                self.dry_copy(&dry, std::slice::from_ref(&descriptor))?;
            }
            DestinationHandle::Directory(layout) => {
                layout.put_bytes(&bytes).map_err(HostError::failed)?;
            }
            DestinationHandle::Registry { registry, target, .. } => {
                let mut file = tempfile::tempfile().map_err(HostError::failed)?;
                file.write_all(&bytes).map_err(HostError::failed)?;
                let blob = BlobFile::whole(file).map_err(HostError::failed)?;
                let upload = Upload::of(descriptor.digest.clone(), blob);
                registry.push_blobs(target, vec![upload], 1, Some(self.deadline))?;
            }
        }
        Ok(to_wit(&descriptor))
    }

    fn copy_blob_as_tar(
        &mut self,
        d: Resource<DestinationHandle>,
        s: Resource<SourceHandle>,
        blob: types::Descriptor,
        file: types::TarFile,
    ) -> HostResult<types::Descriptor> {
        self.check_deadline()?;
        let blob = from_wit(&blob)?;
        let (source, _) = self.blob_of(&s, Some(blob.digest.to_string()))?;
        if source.size != blob.size {
            return Err(HostError::invalid(format!(
                "blob {} is {} bytes, its descriptor says {}",
                blob.digest, source.size, blob.size
            )));
        }
        let file = tar_access::LayerFile { name: file.name, mode: file.mode, uid: file.uid, gid: file.gid };
        let (head, tail) = tar_access::one_file_layer(&file, blob.size).map_err(HostError::invalid)?;
        if let Some(dry) = self.table.get(&d)?.dry_run() {
            let (digest, size) = self.dry_framed(&dry, &head, &source, &blob.digest, &tail)?;
            return Ok(to_wit(&oci::Descriptor::new(TAR_LAYER, digest, size)));
        }
        // Written into a directory's layout, hashed on the way; for a registry, hashed in one
        // pass and then streamed (header, the blob's bytes, padding): a disk is never copied
        // to a temporary file.
        let mut pending = match self.table.get(&d)? {
            DestinationHandle::Directory(layout) => Some(layout.pending_blob().map_err(HostError::failed)?),
            DestinationHandle::Registry { .. } | DestinationHandle::DryRun(_) => None,
        };
        let events = self.events.clone();
        let out: Box<dyn Write> = match &mut pending {
            Some(pending) => Box::new(Reporting {
                inner: BufWriter::with_capacity(1 << 20, pending.file()),
                events: events.events(),
            }),
            None => Box::new(std::io::sink()),
        };
        let mut hashing = HashingWriter::new(out);
        hashing.write_all(&head).map_err(HostError::failed)?;
        // The blob's own bytes are checked against its digest in the same pass: the layer's
        // digest alone would only prove that ferry framed whatever the file held.
        self.copy_verified(&source, &blob.digest, &mut hashing)?;
        hashing.write_all(&tail).map_err(HostError::failed)?;
        let (digest, size, mut out) = hashing.finish();
        out.flush().map_err(HostError::failed)?;
        drop(out);
        self.check_deadline()?;
        let layer = oci::Descriptor::new(TAR_LAYER, digest.clone(), size);
        match self.table.get(&d)? {
            DestinationHandle::Directory(_) => {
                let pending = pending.ok_or_else(|| HostError::failed("the layer was not written"))?;
                pending.persist_as(Layout::blob_name(&digest)).map_err(HostError::failed)?;
            }
            DestinationHandle::Registry { registry, target, .. } => {
                let upload =
                    Upload { digest, size, file: source, framing: Some((head, tail)), sent: Some(self.sent()) };
                let pushed = registry.push_blobs(target, vec![upload], 1, Some(self.deadline))?;
                self.report_unsent(size, &pushed[0]);
            }
            DestinationHandle::DryRun(_) => unreachable!("a dry run returned above"),
        }
        Ok(to_wit(&layer))
    }

    fn extract_tar(
        &mut self,
        d: Resource<DestinationHandle>,
        s: Resource<SourceHandle>,
        blob: types::Descriptor,
        name: String,
    ) -> HostResult<String> {
        self.check_deadline()?;
        let blob = from_wit(&blob)?;
        let path = inside("directory name", &name)?;
        let (source, what) = self.blob_of(&s, Some(blob.digest.to_string()))?;
        if source.size != blob.size {
            return Err(HostError::invalid(format!(
                "{what} is {} bytes, its descriptor says {}",
                source.size, blob.size
            )));
        }
        if let Some(dry) = self.table.get(&d)?.dry_run() {
            let location = self.dry_extract(&dry, &blob, &name)?;
            return Ok(self.wrote(location));
        }
        // Every byte is checked against the digest before any of it is extracted.
        self.copy_verified(&source, &blob.digest, &mut std::io::sink())?;
        let DestinationHandle::Directory(layout) = self.table.get(&d)? else {
            return Err(HostError::unsupported("extract-tar needs a directory destination"));
        };
        let layout = layout.clone();
        // Extracted beside its final place and renamed into it when complete; on any error,
        // the time limit included, the pending directory is removed with all it holds.
        let pending = layout.pending_dir(path.parent().unwrap_or(Path::new(""))).map_err(HostError::denied)?;
        tar_access::extract(&source, pending.dir(), self.deadline()).map_err(|e| self.archive_error(&what, e))?;
        self.check_deadline()?;
        let replace = layout.made_by_ferry(path).map_err(HostError::failed)?;
        pending
            .persist_as(path, replace)
            .map_err(|e| HostError::denied(format!("{}/{name}: {e:#}", layout.path().display())))?;
        self.events.transferred(blob.size);
        // Recorded once it is there: a refused replacement claims nothing for a later run.
        layout.note_made(path).map_err(HostError::failed)?;
        Ok(self.wrote(format!("{}/{name}", layout.path().display())))
    }

    fn drop(&mut self, d: Resource<DestinationHandle>) -> wasmtime::Result<()> {
        self.table.delete(d)?;
        self.handles = self.handles.saturating_sub(1);
        Ok(())
    }
}
