//! Manifests and blobs read from a registry, by ferry's own requests: a manifest within 4 MiB, a
//! blob within the size the manifest that names it declares, an error answer within
//! [`MAX_ERROR_ANSWER`]; each read stops one chunk past its cap. A blob no manifest fetched here
//! names has no declared size, and is not read.

use super::token::Authorization;
use super::{MANIFEST_TYPES, Registry, RegistryError, RegistryErrorKind};
use crate::oci::{self, Digest, MAX_DOCUMENT};
use crate::transfer::{Pace, Stop};
use oci_client::{Reference, RegistryOperation};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, RANGE};
use std::io::Write;
use std::time::Instant;

/// The most of an error answer that is read, for its message.
pub const MAX_ERROR_ANSWER: u64 = 64 << 10;

impl Registry {
    /// The manifest or index `reference` names: its exact bytes, media type and digest. The
    /// blobs it names are noted with their declared sizes, the most that is read of them.
    /// `deadline`: the driver operation's, if a driver asks.
    pub fn manifest(
        &self,
        reference: &Reference,
        deadline: Option<Instant>,
    ) -> Result<(Vec<u8>, String, Digest), RegistryError> {
        let what = format!("manifest {reference}");
        let bytes = self
            .retry(|| {
                let authorization = self.authenticate_for(reference, RegistryOperation::Pull, deadline)?;
                self.runtime.block_on(self.get_manifest(reference, &authorization, &self.pace(deadline), &what))
            })
            .map_err(|e| self.explained(reference, e))?;
        let digest = Digest::of(&bytes);
        if let Some(pinned) = reference.digest()
            && pinned != digest.to_string()
        {
            return Err(RegistryError::failed(format!("{what}: the registry served content with digest {digest}")));
        }
        self.note_declared(reference, &bytes)?;
        let media_type = oci::media_type_of(&bytes).unwrap_or_else(|| MANIFEST_TYPES[0].to_owned());
        Ok((bytes, media_type, digest))
    }

    /// The digest of the manifest `target` (a tag or digest) names, `None` when it names none;
    /// asked with push rights, since it is asked before a push.
    pub fn manifest_digest(
        &self,
        target: &Reference,
        deadline: Option<Instant>,
    ) -> Result<Option<Digest>, RegistryError> {
        Ok(self.head_manifest(target, RegistryOperation::Push, deadline)?.map(|d| d.digest))
    }

    /// The descriptor (media type, digest, size) of the manifest `target` names, told by one
    /// HEAD request; `None` when it names none. A registry whose answer lacks a header is asked
    /// for the manifest itself.
    pub fn manifest_descriptor(
        &self,
        target: &Reference,
        deadline: Option<Instant>,
    ) -> Result<Option<oci::Descriptor>, RegistryError> {
        self.head_manifest(target, RegistryOperation::Pull, deadline)
    }

    fn head_manifest(
        &self,
        target: &Reference,
        operation: RegistryOperation,
        deadline: Option<Instant>,
    ) -> Result<Option<oci::Descriptor>, RegistryError> {
        let what = format!("manifest {target}");
        let found = self.retry(|| {
            let authorization = self.authenticate_for(target, operation, deadline)?;
            let pace = self.pace(deadline);
            let registry = target.resolve_registry();
            self.runtime.block_on(async {
                let head = authorization.apply(self.http(registry)?.head(self.manifest_url(target)));
                let answer =
                    self.answer(head.header(ACCEPT, MANIFEST_TYPES.join(", ")), &pace, &what, registry).await?;
                let header = |name: &str| answer.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
                let told = (header("docker-content-digest"), header("content-type"), header("content-length"));
                if let (Some(digest), Some(media_type), Some(size)) = told
                    && let (Ok(digest), Ok(size)) = (digest.parse::<Digest>(), size.parse::<u64>())
                    && MANIFEST_TYPES.contains(&media_type.as_str())
                {
                    return Ok(oci::Descriptor::new(media_type, digest, size));
                }
                let bytes = self.get_manifest(target, &authorization, &pace, &what).await?;
                let media_type = oci::media_type_of(&bytes).unwrap_or_else(|| MANIFEST_TYPES[0].to_owned());
                Ok(oci::Descriptor::new(media_type, Digest::of(&bytes), bytes.len() as u64))
            })
        });
        match found {
            Ok(descriptor) => match target.digest() {
                Some(pinned) if pinned != descriptor.digest.to_string() => {
                    Err(RegistryError::failed(format!("{what}: the registry names its digest {}", descriptor.digest)))
                }
                _ => Ok(Some(descriptor)),
            },
            Err(e) if e.kind == RegistryErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.explained(target, e)),
        }
    }

    fn manifest_url(&self, reference: &Reference) -> String {
        let registry = reference.resolve_registry();
        let name = reference.digest().or(reference.tag()).unwrap_or("latest");
        format!("{}/v2/{}/manifests/{name}", self.base_url(registry), reference.repository())
    }

    fn blob_url(&self, reference: &Reference, digest: &Digest) -> String {
        let registry = reference.resolve_registry();
        format!("{}/v2/{}/blobs/{digest}", self.base_url(registry), reference.repository())
    }

    async fn get_manifest(
        &self,
        reference: &Reference,
        authorization: &Authorization,
        pace: &Pace,
        what: &str,
    ) -> Result<Vec<u8>, RegistryError> {
        let registry = reference.resolve_registry();
        let request = authorization.apply(self.http(registry)?.get(self.manifest_url(reference)));
        let answer = self.answer(request.header(ACCEPT, MANIFEST_TYPES.join(", ")), pace, what, registry).await?;
        pace.bytes(answer, MAX_DOCUMENT).await.map_err(|stop| match stop {
            Stop::TooLarge(max) => RegistryError::failed(format!(
                "{what}: {registry} sent more than {max} bytes, the most a manifest may have"
            )),
            stop => RegistryError::from_stop(what, registry, stop),
        })
    }

    /// Sends `request` to `host`; an answer that is no success is an error, made of its status
    /// and the registry's own words, read within [`MAX_ERROR_ANSWER`].
    pub(super) async fn answer(
        &self,
        request: reqwest::RequestBuilder,
        pace: &Pace,
        what: &str,
        host: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        let answer = pace.send(request).await.map_err(|stop| RegistryError::from_stop(what, host, stop))?;
        let status = answer.status();
        if status.is_success() {
            return Ok(answer);
        }
        let mut body = Vec::new();
        // Whatever stops the read, the status says enough.
        let _ = pace
            .body(answer, MAX_ERROR_ANSWER, &mut |chunk| {
                body.extend_from_slice(chunk);
                Ok(())
            })
            .await;
        let (codes, words) = registry_errors(&body);
        let kind = match status {
            StatusCode::NOT_FOUND => RegistryErrorKind::NotFound,
            _ if codes.iter().any(|c| matches!(c.as_str(), "BLOB_UNKNOWN" | "MANIFEST_UNKNOWN" | "NAME_UNKNOWN")) => {
                RegistryErrorKind::NotFound
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => RegistryErrorKind::Denied,
            StatusCode::TOO_MANY_REQUESTS => RegistryErrorKind::Transient,
            s if s.is_server_error() => RegistryErrorKind::Transient,
            _ => RegistryErrorKind::Failed,
        };
        Err(RegistryError::new(kind, format!("{what}: {host} answered {status}{words}")))
    }

    /// Streams blob `digest` of `reference`'s repository into `out`; returns its size, the one
    /// its manifest declares: a registry that sends more is cut off one chunk past it, one that
    /// sends less is refused. Not retried here: the caller starts the blob over, with a fresh
    /// `out`, and checks the digest.
    pub fn copy_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
        deadline: Option<Instant>,
        out: &mut dyn Write,
    ) -> Result<u64, RegistryError> {
        let declared = self.declared_size(reference, digest)?;
        let (registry, what, pace) = (reference.resolve_registry(), blob_what(reference, digest), self.pace(deadline));
        let authorization = self
            .authenticate_for(reference, RegistryOperation::Pull, deadline)
            .map_err(|e| self.explained(reference, e))?;
        let size = self.runtime.block_on(async {
            let answer = self.answer(
                authorization.apply(self.http(registry)?.get(self.blob_url(reference, digest))),
                &pace,
                &what,
                registry,
            );
            pace.body(answer.await?, declared, &mut |chunk| out.write_all(chunk)).await.map_err(|stop| match stop {
                Stop::TooLarge(_) => RegistryError::failed(format!(
                    "{what}: {registry} sent more than the {declared} bytes its manifest declares"
                )),
                stop => RegistryError::from_stop(&what, registry, stop),
            })
        });
        let size = size.map_err(|e| self.explained(reference, e))?;
        if size != declared {
            return Err(RegistryError::failed(format!(
                "{what}: {registry} sent {size} bytes, its manifest declares {declared}"
            )));
        }
        Ok(size)
    }

    /// Passes blob `digest` of `reference`'s repository to `sink` as it arrives, from byte
    /// `*passed` on, adding to `*passed` what `sink` took: after a transient failure, a second
    /// call goes on from there (a range request; from a registry that ignores the range, the
    /// bytes before it are skipped). Read within its declared size, which it must have once the
    /// body ends; the caller retries, and checks the digest. `deadline` is asked again before
    /// each wait, so that time the caller's `sink` spends (waiting for room) can be left out.
    pub fn stream_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
        deadline: &dyn Fn() -> Instant,
        passed: &mut u64,
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<(), RegistryError> {
        let declared = self.declared_size(reference, digest)?;
        let (registry, what) = (reference.resolve_registry(), blob_what(reference, digest));
        let authorization = self.authenticate_for(reference, RegistryOperation::Pull, Some(deadline()))?;
        let stop = |stop| RegistryError::from_stop(&what, registry, stop);
        let client = self.http(registry)?;
        self.runtime.block_on(async {
            let mut request = authorization.apply(client.get(self.blob_url(reference, digest)));
            if *passed > 0 {
                request = request.header(RANGE, format!("bytes={passed}-"));
            }
            let mut answer = self.answer(request, &self.pace(Some(deadline())), &what, registry).await?;
            let mut skip = if answer.status() == StatusCode::PARTIAL_CONTENT { 0 } else { *passed };
            let (cap, mut length) = (skip + declared.saturating_sub(*passed), 0u64);
            loop {
                let next = self.pace(Some(deadline())).wait(answer.chunk()).await.map_err(stop)?;
                let Some(chunk) = next.map_err(|e| stop(Stop::Broken(e)))? else { return Ok(()) };
                length += chunk.len() as u64;
                if length > cap {
                    return Err(RegistryError::failed(format!(
                        "{what}: {registry} sent more than the {declared} bytes its manifest declares"
                    )));
                }
                let start = skip.min(chunk.len() as u64) as usize;
                skip -= start as u64;
                *passed += (chunk.len() - start) as u64;
                sink(&chunk[start..]).map_err(|e| stop(Stop::Sink(e)))?;
            }
        })?;
        if *passed != declared {
            return Err(RegistryError::failed(format!(
                "{what}: {registry} sent {passed} bytes, its manifest declares {declared}"
            )));
        }
        Ok(())
    }

    /// At most `len` bytes of blob `digest` from `offset`, never past its declared size.
    pub fn read(
        &self,
        reference: &Reference,
        digest: &Digest,
        offset: u64,
        len: u64,
        deadline: Option<Instant>,
    ) -> Result<Vec<u8>, RegistryError> {
        let declared = self.declared_size(reference, digest)?;
        let len = len.min(declared.saturating_sub(offset));
        if len == 0 {
            return Ok(Vec::new());
        }
        let (registry, what, pace) = (reference.resolve_registry(), blob_what(reference, digest), self.pace(deadline));
        self.retry(|| {
            let authorization = self.authenticate_for(reference, RegistryOperation::Pull, deadline)?;
            self.runtime.block_on(async {
                let request = authorization
                    .apply(self.http(registry)?.get(self.blob_url(reference, digest)))
                    .header(RANGE, format!("bytes={offset}-{}", offset + len - 1));
                let mut answer = self.answer(request, &pace, &what, registry).await?;
                // A registry that ignores the range sends the whole blob: skipped through to
                // `offset`, read no further than `offset + len`.
                let mut skip = if answer.status() == StatusCode::PARTIAL_CONTENT { 0 } else { offset };
                let mut bytes = Vec::with_capacity(len as usize);
                while (bytes.len() as u64) < len {
                    let chunk = pace.wait(answer.chunk()).await.and_then(|chunk| chunk.map_err(Stop::Broken));
                    let Some(chunk) = chunk.map_err(|stop| RegistryError::from_stop(&what, registry, stop))? else {
                        break;
                    };
                    let start = skip.min(chunk.len() as u64) as usize;
                    skip -= start as u64;
                    let end = chunk.len().min(start + (len as usize - bytes.len()));
                    bytes.extend_from_slice(&chunk[start..end]);
                }
                Ok(bytes)
            })
        })
        .map_err(|e| self.explained(reference, e))
    }

    /// The size the manifests fetched from `reference`'s repository declare for blob `digest`.
    pub fn declared_size(&self, reference: &Reference, digest: &Digest) -> Result<u64, RegistryError> {
        let key = (reference.resolve_registry().to_owned(), reference.repository().to_owned(), digest.clone());
        self.declared.lock().unwrap().get(&key).copied().ok_or_else(|| {
            RegistryError::failed(format!(
                "{}: no manifest fetched from {} names it, so it has no declared size to be read within",
                blob_what(reference, digest),
                reference.resolve_registry()
            ))
        })
    }

    /// Notes the sizes `manifest` (of `reference`'s repository) declares for what it names; a
    /// blob declared with two sizes is refused.
    fn note_declared(&self, reference: &Reference, manifest: &[u8]) -> Result<(), RegistryError> {
        let (registry, repository) = (reference.resolve_registry(), reference.repository());
        let mut declared = self.declared.lock().unwrap();
        let children =
            oci::children(manifest).map_err(|e| RegistryError::failed(format!("manifest {reference}: {e:#}")))?;
        for child in children {
            let key = (registry.to_owned(), repository.to_owned(), child.digest.clone());
            match declared.get(&key) {
                Some(size) if *size != child.size => {
                    return Err(RegistryError::failed(format!(
                        "manifest {reference} declares {} as {} bytes, where {repository} was declared to hold it as {size}",
                        child.digest, child.size
                    )));
                }
                _ => declared.insert(key, child.size),
            };
        }
        Ok(())
    }
}

fn blob_what(reference: &Reference, digest: &Digest) -> String {
    format!("blob {digest} of {}", reference.repository())
}

/// The codes of an OCI error answer, and its messages as the tail of an error message.
fn registry_errors(body: &[u8]) -> (Vec<String>, String) {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let Ok(envelope) = serde_json::from_slice::<Envelope>(body) else { return (Vec::new(), String::new()) };
    let words: Vec<String> = envelope
        .errors
        .iter()
        .take(4)
        .map(|e| format!("{} {}", e.code, e.message.chars().take(200).collect::<String>()).trim().to_owned())
        .collect();
    let tail = if words.is_empty() { String::new() } else { format!(": {}", words.join("; ")) };
    (envelope.errors.into_iter().map(|e| e.code).collect(), tail)
}
