//! What ferry lends a driver: the `ferry:driver/host` interface's own functions (log, progress,
//! open-destination), the errors host imports return, and the checks every import shares
//! (deadline, handles, bytes per call, hashed copies). Its resources each have a file:
//! `source.rs`, `store.rs`, `destination.rs`; the operator's grant is `grant.rs`. Every path,
//! length and digest that comes from the guest is checked on this side; WASI's sandbox does not
//! cover host imports.

use super::bindings::since_v0_1_0::ferry::driver::{host, types};
use super::destination::DestinationHandle;
use super::source::SourceHandle;
use super::state::{HostState, LimitHit};
use super::tar_access;
use crate::oci::{self, BlobFile, Digest, HashingWriter};
use crate::registry::{RegistryError, RegistryErrorKind};
use oci_client::Reference;
use std::io::{BufWriter, Read};
use std::time::Instant;
use wasmtime::component::{Resource, ResourceTableError};

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
            RegistryErrorKind::Failed | RegistryErrorKind::Unreachable => HostError::failed(e.message),
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

impl host::Host for HostState {
    fn log(&mut self, level: host::Level, message: String) -> wasmtime::Result<()> {
        const MAX_LINE: usize = 4096;
        let mut end = message.len().min(MAX_LINE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        self.events.log(&self.driver, level.into(), &message[..end]);
        Ok(())
    }

    fn progress(&mut self, done: u64, total: Option<u64>) -> wasmtime::Result<()> {
        self.events.progress(&self.driver, done, total);
        Ok(())
    }

    fn open_destination(&mut self, location: String) -> HostResult<Resource<DestinationHandle>> {
        self.check_deadline()?;
        let Some(grant) = &self.grant else {
            return Err(HostError::denied(format!(
                "destination {location:?}: this operation was granted no destination"
            )));
        };
        let handle = grant.open(&location)?;
        self.take_handle()?;
        Ok(self.table.push(handle)?)
    }
}
