//! Registry access for the host's data plane: manifests and blobs over the OCI distribution API
//! (oci-client), with credentials from `~/.docker/config.json`, plain http for the registries
//! the operator names, and retries with backoff on 429, 5xx and dropped connections.
//!
//! Calls block: drivers run synchronously, so each call drives ferry's own tokio runtime.

mod auth;

pub use auth::Credentials;

use crate::oci::{self, BlobFile, Digest};
use futures_util::StreamExt;
use oci_client::client::{BlobResponse, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::{Client, Reference, RegistryOperation};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// Registries (`host[:port]`) reached over plain http, such as a local test registry.
    pub insecure: Vec<String>,
    /// The Docker config file; `None` means `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
    pub docker_config: Option<PathBuf>,
}

/// What went wrong talking to a registry, and whether trying again may help.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct RegistryError {
    pub kind: RegistryErrorKind,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistryErrorKind {
    NotFound,
    Denied,
    /// 429, 5xx, a dropped or refused connection: worth another try.
    Transient,
    Failed,
}

impl RegistryError {
    fn new(kind: RegistryErrorKind, message: String) -> Self {
        RegistryError { kind, message }
    }

    fn from_oci(what: &str, e: OciDistributionError) -> Self {
        use RegistryErrorKind::*;
        let kind = match &e {
            OciDistributionError::ServerError { code, .. } if *code == 429 || *code >= 500 => Transient,
            OciDistributionError::ServerError { code: 404, .. }
            | OciDistributionError::ImageManifestNotFoundError(_) => NotFound,
            OciDistributionError::RegistryError { envelope, .. }
                if envelope.errors.iter().any(|e| {
                    use oci_client::errors::OciErrorCode::*;
                    matches!(e.code, BlobUnknown | ManifestUnknown | NameUnknown | NotFound)
                }) =>
            {
                NotFound
            }
            OciDistributionError::UnauthorizedError { .. } | OciDistributionError::AuthenticationFailure(_) => Denied,
            OciDistributionError::RequestError(r)
                if r.is_connect() || r.is_timeout() || r.is_request() || r.is_body() =>
            {
                Transient
            }
            OciDistributionError::IoError(_) => Transient,
            _ => Failed,
        };
        // A plain-http registry answers a TLS handshake with garbage or a reset; say what fixes it.
        let hint = match &e {
            OciDistributionError::RequestError(r)
                if r.url().is_some_and(|u| u.scheme() == "https") && (r.is_connect() || r.is_request()) =>
            {
                " (a registry served over plain http needs --insecure-registry HOST:PORT)"
            }
            _ => "",
        };
        RegistryError::new(kind, format!("{what}: {e}{hint}"))
    }
}

pub struct Registry {
    client: Client,
    runtime: tokio::runtime::Runtime,
    credentials: Credentials,
    /// Per blob and registry, a repository known to hold it: the source of cross-repository
    /// mounts, so a layer shared by many images is uploaded once. Pushes of one blob take its
    /// lock in turn, so the second finds the first's repository and mounts from it.
    holders: std::sync::Mutex<std::collections::HashMap<(String, Digest), Holder>>,
}

/// The repository known to hold one blob, locked while a push of that blob is under way.
type Holder = Arc<tokio::sync::Mutex<Option<String>>>;

/// Delays before each retry.
const BACKOFF: [Duration; 4] =
    [Duration::from_millis(100), Duration::from_millis(400), Duration::from_millis(1600), Duration::from_millis(3200)];

impl Registry {
    pub fn new(options: &RegistryOptions) -> anyhow::Result<Self> {
        let config = ClientConfig {
            protocol: if options.insecure.is_empty() {
                ClientProtocol::Https
            } else {
                ClientProtocol::HttpsExcept(options.insecure.clone())
            },
            // One PUT per blob: three round trips instead of a chunked upload's five.
            use_monolithic_push: true,
            connect_timeout: Some(Duration::from_secs(15)),
            read_timeout: Some(Duration::from_secs(60)),
            ..Default::default()
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ferry-registry")
            .enable_all()
            .build()?;
        Ok(Registry {
            client: Client::new(config),
            runtime,
            credentials: Credentials::load(options.docker_config.clone())?,
            holders: Default::default(),
        })
    }

    /// Runs `f` again after a transient failure, with backoff.
    pub fn retry<T>(&self, mut f: impl FnMut() -> Result<T, RegistryError>) -> Result<T, RegistryError> {
        let mut delays = BACKOFF.iter();
        loop {
            match f() {
                Err(e) if e.kind == RegistryErrorKind::Transient => match delays.next() {
                    Some(delay) => std::thread::sleep(*delay),
                    None => return Err(e),
                },
                other => return other,
            }
        }
    }

    fn authenticate(&self, reference: &Reference) -> Result<(), RegistryError> {
        self.authenticate_for(reference, RegistryOperation::Pull)
    }

    fn authenticate_for(&self, reference: &Reference, operation: RegistryOperation) -> Result<(), RegistryError> {
        let registry = reference.resolve_registry();
        let auth = self
            .credentials
            .lookup(registry)
            .map_err(|e| RegistryError::new(RegistryErrorKind::Denied, format!("credentials for {registry}: {e:#}")))?;
        self.runtime
            .block_on(self.client.auth(reference, &auth, operation))
            .map(|_| ())
            .map_err(|e| RegistryError::from_oci(&format!("authenticating to {registry}"), e))
    }

    /// The manifest or index `reference` names: its exact bytes and media type.
    pub fn manifest(&self, reference: &Reference) -> Result<(Vec<u8>, String, Digest), RegistryError> {
        self.retry(|| {
            self.authenticate(reference)?;
            let (bytes, _) = self
                .runtime
                .block_on(self.client.pull_manifest_raw(
                    reference,
                    &oci_client::secrets::RegistryAuth::Anonymous,
                    MANIFEST_TYPES,
                ))
                .map_err(|e| RegistryError::from_oci(&format!("manifest {reference}"), e))?;
            if bytes.len() as u64 > oci::MAX_DOCUMENT {
                return Err(RegistryError::new(
                    RegistryErrorKind::Failed,
                    format!("manifest {reference} is larger than 4 MiB"),
                ));
            }
            let digest = Digest::of(&bytes);
            if let Some(pinned) = reference.digest()
                && pinned != digest.to_string()
            {
                return Err(RegistryError::new(
                    RegistryErrorKind::Failed,
                    format!("manifest {reference}: the registry served content with digest {digest}"),
                ));
            }
            let media_type = oci::media_type_of(&bytes).unwrap_or_else(|| MANIFEST_TYPES[0].to_owned());
            Ok((bytes.to_vec(), media_type, digest))
        })
    }

    /// The digest of the manifest `target` (a tag or digest) names, `None` when it names none.
    pub fn manifest_digest(&self, target: &Reference) -> Result<Option<Digest>, RegistryError> {
        self.retry(|| {
            self.authenticate_for(target, RegistryOperation::Push)?;
            let found = self
                .runtime
                .block_on(self.client.fetch_manifest_digest(target, &oci_client::secrets::RegistryAuth::Anonymous));
            match found.map_err(|e| RegistryError::from_oci(&format!("manifest {target}"), e)) {
                Ok(digest) => digest.parse().map(Some).map_err(|_| {
                    RegistryError::new(RegistryErrorKind::Failed, format!("manifest {target}: digest {digest:?}"))
                }),
                Err(e) if e.kind == RegistryErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    /// Streams blob `digest` of `reference`'s repository into `out`; returns its size. Not
    /// retried here: the caller starts the blob over, with a fresh `out`.
    pub fn copy_blob(&self, reference: &Reference, digest: &Digest, out: &mut dyn Write) -> Result<u64, RegistryError> {
        self.authenticate(reference)?;
        self.stream_blob(reference, digest, 0, None, &mut |chunk| out.write_all(chunk))
    }

    /// At most `len` bytes of blob `digest` from `offset`.
    pub fn read(
        &self,
        reference: &Reference,
        digest: &Digest,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        self.retry(|| {
            self.authenticate(reference)?;
            let mut bytes = Vec::new();
            self.stream_blob(reference, digest, offset, Some(len), &mut |chunk| {
                bytes.extend_from_slice(chunk);
                Ok(())
            })?;
            Ok(bytes)
        })
    }

    /// Passes the bytes of blob `digest` from `offset` (at most `len` of them) to `sink` as they
    /// arrive; returns how many. The request is a ranged one even from 0, so that oci-client
    /// does not hash what the host hashes anyway; a registry that ignores the range is skipped
    /// through here.
    fn stream_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
        offset: u64,
        len: Option<u64>,
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<u64, RegistryError> {
        let what = || format!("blob {digest} of {}", reference.repository());
        let descriptor = oci_client::manifest::OciDescriptor { digest: digest.to_string(), ..Default::default() };
        self.runtime.block_on(async {
            let response = self
                .client
                .pull_blob_stream_partial(reference, &descriptor, offset, len)
                .await
                .map_err(|e| RegistryError::from_oci(&what(), e))?;
            let (mut stream, mut skip) = match response {
                BlobResponse::Partial(s) => (s.stream, 0),
                BlobResponse::Full(s) => (s.stream, offset),
            };
            let mut left = len.unwrap_or(u64::MAX);
            let mut passed = 0u64;
            while left > 0 {
                let Some(chunk) = stream.next().await else { break };
                let chunk =
                    chunk.map_err(|e| RegistryError::new(RegistryErrorKind::Transient, format!("{}: {e}", what())))?;
                let start = skip.min(chunk.len() as u64) as usize;
                skip -= start as u64;
                let end = chunk.len().min(start.saturating_add(usize::try_from(left).unwrap_or(usize::MAX)));
                sink(&chunk[start..end])
                    .map_err(|e| RegistryError::new(RegistryErrorKind::Failed, format!("{}: {e}", what())))?;
                left -= (end - start) as u64;
                passed += (end - start) as u64;
            }
            Ok(passed)
        })
    }
}

/// What a blob push did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    Present,
    Mounted,
    Uploaded,
}

/// A stored blob to upload.
pub struct Upload {
    pub digest: Digest,
    pub size: u64,
    pub file: BlobFile,
    /// Bytes sent before and after the file's (a tar header and padding around a disk).
    pub framing: Option<(Vec<u8>, Vec<u8>)>,
}

impl Upload {
    pub fn of(digest: Digest, file: BlobFile) -> Self {
        Upload { digest, size: file.size, file, framing: None }
    }

    fn body(&self) -> impl std::io::Read + Send + 'static {
        let (head, tail) = self.framing.clone().unwrap_or_default();
        use std::io::Read;
        std::io::Cursor::new(head).chain(self.file.reader()).chain(std::io::Cursor::new(tail))
    }
}

impl Registry {
    /// Whether `target`'s repository holds blob `digest`.
    pub fn has_blob(&self, target: &Reference, digest: &Digest) -> Result<bool, RegistryError> {
        self.retry(|| {
            self.authenticate_for(target, RegistryOperation::Push)?;
            self.runtime
                .block_on(self.client.blob_exists(target, &digest.to_string()))
                .map_err(|e| RegistryError::from_oci(&format!("checking blob {digest} in {}", target.repository()), e))
        })
    }

    /// Records that `repository` of `registry` holds blob `digest`, so that pushing it to another
    /// repository of that registry mounts it instead of uploading it.
    pub fn note_holder(&self, registry: &str, digest: &Digest, repository: &str) {
        let key = (registry.to_owned(), digest.clone());
        let holder = self.holders.lock().unwrap().entry(key).or_default().clone();
        holder.try_lock().expect("noted before any push").get_or_insert_with(|| repository.to_owned());
    }

    /// Uploads the blobs `target`'s repository lacks, `jobs` at a time, each retried with
    /// backoff; returns, in order, whether each was uploaded (false: it was there already).
    pub fn push_blobs(
        &self,
        target: &Reference,
        uploads: Vec<Upload>,
        jobs: usize,
    ) -> Result<Vec<Pushed>, RegistryError> {
        use futures_util::stream::{self, StreamExt, TryStreamExt};
        self.authenticate_for(target, RegistryOperation::Push)?;
        self.runtime.block_on(
            stream::iter(uploads.into_iter().map(|upload| self.push_blob(target, upload)))
                .buffered(jobs.max(1))
                .try_collect(),
        )
    }

    async fn push_blob(&self, target: &Reference, upload: Upload) -> Result<Pushed, RegistryError> {
        let key = (target.resolve_registry().to_owned(), upload.digest.clone());
        let holder = self.holders.lock().unwrap().entry(key).or_default().clone();
        let mut holder = holder.lock().await;
        let from = holder.clone().filter(|repository| repository != target.repository());
        let pushed = self.push_blob_once(target, &upload, from).await?;
        holder.get_or_insert_with(|| target.repository().to_owned());
        Ok(pushed)
    }

    async fn push_blob_once(
        &self,
        target: &Reference,
        upload: &Upload,
        holder: Option<String>,
    ) -> Result<Pushed, RegistryError> {
        let what = || format!("blob {} to {}", upload.digest, target.repository());
        let digest = upload.digest.to_string();
        let mut delays = BACKOFF.iter();
        loop {
            let attempt = async {
                if self.client.blob_exists(target, &digest).await.map_err(|e| RegistryError::from_oci(&what(), e))? {
                    return Ok::<_, RegistryError>(Pushed::Present);
                }
                if let Some(repository) = &holder {
                    let from = Reference::with_digest(target.registry().to_owned(), repository.clone(), digest.clone());
                    // A registry may decline (202): then the blob is uploaded after all.
                    if self.client.mount_blob(target, &from, &digest).await.is_ok() {
                        return Ok(Pushed::Mounted);
                    }
                }
                self.client
                    .push_blob_stream(target, file_stream(upload.body()), &digest, Some(upload.size))
                    .await
                    .map_err(|e| RegistryError::from_oci(&what(), e))?;
                Ok(Pushed::Uploaded)
            };
            match attempt.await {
                Err(e) if e.kind == RegistryErrorKind::Transient => match delays.next() {
                    Some(delay) => tokio::time::sleep(*delay).await,
                    None => return Err(e),
                },
                other => return other,
            }
        }
    }

    /// Pushes a manifest or index under `target`'s tag or digest.
    pub fn push_manifest(&self, target: &Reference, bytes: &[u8], media_type: &str) -> Result<(), RegistryError> {
        let content_type = http::HeaderValue::from_str(media_type).map_err(|_| {
            RegistryError::new(RegistryErrorKind::Failed, format!("media type {media_type:?} is not a header value"))
        })?;
        self.retry(|| {
            self.authenticate_for(target, RegistryOperation::Push)?;
            self.runtime
                .block_on(self.client.push_manifest_raw(target, bytes.to_vec(), content_type.clone()))
                .map(|_| ())
                .map_err(|e| RegistryError::from_oci(&format!("manifest {target}"), e))
        })
    }
}

/// A blob as a stream of 1 MiB chunks, read from the page cache as the upload goes.
fn file_stream(
    file: impl std::io::Read + Send + 'static,
) -> impl futures_util::Stream<Item = oci_client::errors::Result<bytes::Bytes>> + Send + 'static {
    futures_util::stream::unfold(file, |mut file| async move {
        let mut chunk = vec![0; 1 << 20];
        match file.read(&mut chunk) {
            Ok(0) => None,
            Ok(n) => {
                chunk.truncate(n);
                Some((Ok(bytes::Bytes::from(chunk)), file))
            }
            Err(e) => Some((Err(OciDistributionError::IoError(e)), file)),
        }
    })
}
