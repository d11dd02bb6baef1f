//! Registry access for the host's data plane: manifests and blobs over the OCI distribution API,
//! with credentials from `~/.docker/config.json`, plain http for the registries the operator
//! names, and retries with backoff on 429, 5xx and dropped connections.
//!
//! A source registry may be hostile, so what ferry reads from registries (the `/v2/` challenge,
//! the token exchange, manifests, blobs) it requests itself: every answer is read within a cap
//! (a blob within the size its manifest declared), the stall timeout and the driver's deadline,
//! and credentials go only where [`token`] allows. Pushes to the operator's registry go through
//! oci-client, with the authorization ferry obtained.
//!
//! Calls block: drivers run synchronously, so each call drives ferry's own tokio runtime.

mod auth;
mod deferred;
mod pull;
mod token;

pub use auth::Credentials;
pub use deferred::{Deferred, Remote};
pub use pull::MAX_ERROR_ANSWER;
pub use token::MAX_TOKEN_ANSWER;

use crate::oci::{BlobFile, Digest};
use crate::transfer::{Pace, STALL_TIMEOUT, Stop};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::{Client, Reference, RegistryOperation};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const MANIFEST_TYPES: &[&str] = crate::oci::media_types::MANIFESTS;

#[derive(Clone, Debug)]
pub struct RegistryOptions {
    /// Registries (`host[:port]`) reached over plain http, such as a local test registry.
    pub insecure: Vec<String>,
    /// The Docker config file; `None` means `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
    pub docker_config: Option<PathBuf>,
    /// How long a download may go without a byte (`--stall-timeout`).
    pub stall_timeout: Duration,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions { insecure: Vec::new(), docker_config: None, stall_timeout: STALL_TIMEOUT }
    }
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
    /// 429, 5xx, a dropped or refused connection, a stall: worth another try.
    Transient,
    /// Everything else, among them content that is not what was declared: never retried.
    Failed,
}

impl RegistryError {
    fn new(kind: RegistryErrorKind, message: String) -> Self {
        RegistryError { kind, message }
    }

    fn failed(message: String) -> Self {
        RegistryError::new(RegistryErrorKind::Failed, message)
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
        let hint = match &e {
            OciDistributionError::RequestError(r) => insecure_hint(r),
            _ => "",
        };
        RegistryError::new(kind, format!("{what}: {e}{hint}"))
    }

    /// A transfer of `what` from `host` that ended early. A stall or a broken connection may
    /// go better next time; a deadline, a cap or a failed write will not.
    fn from_stop(what: &str, host: &str, stop: Stop) -> Self {
        let kind = match &stop {
            Stop::Stalled(_) => RegistryErrorKind::Transient,
            // A body cut short reads as a decoding error.
            Stop::Broken(e) if !e.is_builder() && !e.is_redirect() => RegistryErrorKind::Transient,
            _ => RegistryErrorKind::Failed,
        };
        let hint = match &stop {
            Stop::Broken(e) => insecure_hint(e),
            _ => "",
        };
        RegistryError::new(kind, format!("{what}: {}{hint}", stop.describe(host)))
    }
}

/// A plain-http registry answers a TLS handshake with garbage or a reset; say what fixes it.
fn insecure_hint(e: &reqwest::Error) -> &'static str {
    if e.url().is_some_and(|u| u.scheme() == "https") && (e.is_connect() || e.is_request()) {
        " (a registry served over plain http needs --insecure-registry HOST:PORT)"
    } else {
        ""
    }
}

/// Registry, repository, and whether the operation is a push.
type AuthorizationKey = (String, String, bool);

pub struct Registry {
    client: Client,
    /// ferry's own requests: pulls and the token exchange.
    http: reqwest::Client,
    insecure: Vec<String>,
    stall: Duration,
    runtime: tokio::runtime::Runtime,
    credentials: Credentials,
    /// Per registry, repository and operation, the authorization last obtained and when.
    authorizations: Mutex<HashMap<AuthorizationKey, (Instant, token::Authorization)>>,
    /// Per registry, repository and blob, the size the manifests fetched from it declare: the
    /// most that is read of the blob.
    declared: Mutex<HashMap<(String, String, Digest), u64>>,
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

/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

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
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(options.stall_timeout),
            ..Default::default()
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ferry-registry")
            .enable_all()
            .build()?;
        Ok(Registry {
            client: Client::new(config),
            http: reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT).build()?,
            insecure: options.insecure.clone(),
            stall: options.stall_timeout,
            runtime,
            credentials: Credentials::load(options.docker_config.clone())?,
            authorizations: Default::default(),
            declared: Default::default(),
            holders: Default::default(),
        })
    }

    /// The operator's `--stall-timeout`, for other downloads (URLs) too.
    pub fn stall_timeout(&self) -> Duration {
        self.stall
    }

    fn pace(&self, deadline: Option<Instant>) -> Pace {
        Pace { stall: self.stall, deadline }
    }

    /// Whether `registry` (`host[:port]`) is reached over plain http.
    fn is_insecure(&self, registry: &str) -> bool {
        self.insecure.iter().any(|i| i == registry)
    }

    fn base_url(&self, registry: &str) -> String {
        format!("{}://{registry}", if self.is_insecure(registry) { "http" } else { "https" })
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

    fn credentials_for(&self, registry: &str) -> Result<oci_client::secrets::RegistryAuth, RegistryError> {
        self.credentials
            .lookup(registry)
            .map_err(|e| RegistryError::new(RegistryErrorKind::Denied, format!("credentials for {registry}: {e:#}")))
    }

    /// What requests for `operation` on `reference`'s repository carry (see [`token`]).
    fn authenticate_for(
        &self,
        reference: &Reference,
        operation: RegistryOperation,
        deadline: Option<Instant>,
    ) -> Result<token::Authorization, RegistryError> {
        let credentials = self.credentials_for(reference.resolve_registry())?;
        self.runtime.block_on(self.authorization(reference, operation, &credentials, &self.pace(deadline)))
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
    pub fn has_blob(
        &self,
        target: &Reference,
        digest: &Digest,
        deadline: Option<Instant>,
    ) -> Result<bool, RegistryError> {
        let what = || format!("checking blob {digest} in {}", target.repository());
        self.retry(|| {
            self.authenticate_for(target, RegistryOperation::Push, deadline)?;
            self.until(deadline, &what, async {
                self.client
                    .blob_exists(target, &digest.to_string())
                    .await
                    .map_err(|e| RegistryError::from_oci(&what(), e))
            })
        })
    }

    /// Runs `work` on the registry's runtime; with a deadline (a driver operation's), stops it
    /// there: a push that the registry stalls must not outlive `--driver-timeout`.
    fn until<T>(
        &self,
        deadline: Option<Instant>,
        what: &dyn Fn() -> String,
        work: impl std::future::Future<Output = Result<T, RegistryError>>,
    ) -> Result<T, RegistryError> {
        self.runtime.block_on(async {
            let Some(deadline) = deadline else { return work.await };
            tokio::time::timeout_at(deadline.into(), work).await.unwrap_or_else(|_| {
                Err(RegistryError::failed(format!(
                    "{}: the driver's time limit (--driver-timeout) passed before the registry finished",
                    what()
                )))
            })
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
        deadline: Option<Instant>,
    ) -> Result<Vec<Pushed>, RegistryError> {
        use futures_util::stream::{self, StreamExt, TryStreamExt};
        let credentials = self.credentials_for(target.resolve_registry())?;
        let what = || format!("pushing blobs to {}", target.repository());
        self.until(
            deadline,
            &what,
            stream::iter(uploads.into_iter().map(|upload| self.push_blob(target, upload, &credentials)))
                .buffered(jobs.max(1))
                .try_collect(),
        )
    }

    async fn push_blob(
        &self,
        target: &Reference,
        upload: Upload,
        credentials: &oci_client::secrets::RegistryAuth,
    ) -> Result<Pushed, RegistryError> {
        let key = (target.resolve_registry().to_owned(), upload.digest.clone());
        let holder = self.holders.lock().unwrap().entry(key).or_default().clone();
        let mut holder = holder.lock().await;
        let from = holder.clone().filter(|repository| repository != target.repository());
        let pushed = self.push_blob_once(target, &upload, from, credentials).await?;
        holder.get_or_insert_with(|| target.repository().to_owned());
        Ok(pushed)
    }

    async fn push_blob_once(
        &self,
        target: &Reference,
        upload: &Upload,
        holder: Option<String>,
        credentials: &oci_client::secrets::RegistryAuth,
    ) -> Result<Pushed, RegistryError> {
        let what = || format!("blob {} to {}", upload.digest, target.repository());
        let digest = upload.digest.to_string();
        let mut delays = BACKOFF.iter();
        loop {
            let attempt = async {
                // Obtained again once old: an upload of many blobs outlasts a token.
                self.authorization(target, RegistryOperation::Push, credentials, &self.pace(None)).await?;
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
    pub fn push_manifest(
        &self,
        target: &Reference,
        bytes: &[u8],
        media_type: &str,
        deadline: Option<Instant>,
    ) -> Result<(), RegistryError> {
        let content_type = http::HeaderValue::from_str(media_type).map_err(|_| {
            RegistryError::new(RegistryErrorKind::Failed, format!("media type {media_type:?} is not a header value"))
        })?;
        let what = || format!("manifest {target}");
        self.retry(|| {
            self.authenticate_for(target, RegistryOperation::Push, deadline)?;
            self.until(deadline, &what, async {
                self.client
                    .push_manifest_raw(target, bytes.to_vec(), content_type.clone())
                    .await
                    .map(|_| ())
                    .map_err(|e| RegistryError::from_oci(&what(), e))
            })
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
