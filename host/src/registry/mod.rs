//! Registry access for the host's data plane: manifests and blobs over the OCI distribution API,
//! with the operator's credentials ([`auth`]), plain http for the registries the operator names,
//! the TLS trust the operator sets ([`tls`]), and retries with backoff on 429, 5xx and dropped
//! connections; what cannot go better (a refused connection, an unknown host, an untrusted
//! certificate, a plain-http server) fails at once, naming its cause ([`network`]).
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
pub mod network;
mod pull;
pub mod tls;
mod token;

pub use auth::{CredentialOptions, Credentials, Creds};
pub use deferred::{Deferred, Remote};
pub use pull::MAX_ERROR_ANSWER;
pub use tls::{TlsOptions, TlsVerify};
pub use token::MAX_TOKEN_ANSWER;

use crate::oci::{BlobFile, Digest};
use crate::transfer::{Pace, STALL_TIMEOUT, Stop};
use network::{CONNECT_TIMEOUT, Cause, Peer};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::{Client, Reference, RegistryOperation};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const MANIFEST_TYPES: &[&str] = crate::oci::media_types::MANIFESTS;

/// Where `-v` lines go (each retry: what, why, attempt, delay).
pub type Notify = Arc<dyn Fn(&str) + Send + Sync>;

#[derive(Clone)]
pub struct RegistryOptions {
    /// Registries (`host[:port]`) reached over plain http, such as a local test registry.
    pub insecure: Vec<String>,
    /// Which certificates are trusted, per server.
    pub tls: TlsOptions,
    /// Where credentials come from.
    pub credentials: CredentialOptions,
    /// The registry the command writes to, which `--creds USER[:PASS]` without a registry is for.
    pub destination: Option<String>,
    /// How long a download may go without a byte (`--stall-timeout`).
    pub stall_timeout: Duration,
    /// Where retries are told, with `-v`; `None`: nowhere.
    pub notify: Option<Notify>,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure: Vec::new(),
            tls: TlsOptions::default(),
            credentials: CredentialOptions::default(),
            destination: None,
            stall_timeout: STALL_TIMEOUT,
            notify: None,
        }
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
    /// 429, 5xx, a dropped connection, a stall: worth another try.
    Transient,
    /// The server could not be reached, for a reason another try would meet again: a refused
    /// connection, an unknown host, a certificate, a protocol mismatch, a token realm that
    /// credentials may not go to.
    Unreachable,
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

    /// A request that got no answer from `host`.
    fn unanswered(what: &str, host: &str, e: &reqwest::Error) -> Self {
        let cause = Cause::of(e);
        let kind = if cause.is_transient() && !e.is_builder() && !e.is_redirect() {
            RegistryErrorKind::Transient
        } else if cause.is_transient() {
            RegistryErrorKind::Failed
        } else {
            RegistryErrorKind::Unreachable
        };
        RegistryError::new(kind, format!("{what}: {}", cause.describe(host, Peer::Registry)))
    }

    fn from_oci(what: &str, host: &str, e: OciDistributionError) -> Self {
        use RegistryErrorKind::*;
        let kind = match &e {
            OciDistributionError::RequestError(r) => return RegistryError::unanswered(what, host, r),
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
            OciDistributionError::ServerError { code: 401 | 403, .. } => Denied,
            OciDistributionError::IoError(_) => Transient,
            _ => Failed,
        };
        RegistryError::new(kind, format!("{what}: {e}"))
    }

    /// A transfer of `what` from `host` that ended early. A stall or a broken connection may
    /// go better next time; a deadline, a cap or a failed write will not.
    fn from_stop(what: &str, host: &str, stop: Stop) -> Self {
        match stop {
            Stop::Broken(e) => RegistryError::unanswered(what, host, &e),
            Stop::Stalled(_) => {
                RegistryError::new(RegistryErrorKind::Transient, format!("{what}: {}", stop.describe(host)))
            }
            _ => RegistryError::failed(format!("{what}: {}", stop.describe(host))),
        }
    }
}

/// Delays before each retry.
const BACKOFF: [Duration; 4] =
    [Duration::from_millis(100), Duration::from_millis(400), Duration::from_millis(1600), Duration::from_millis(3200)];

/// The retries left for one operation, told to the operator with `-v` as they are taken.
struct Backoff<'a> {
    delays: std::slice::Iter<'static, Duration>,
    notify: &'a Option<Notify>,
}

impl Backoff<'_> {
    /// The delay before trying again after `e`, `None` when `e` is final or no retry is left.
    fn after(&mut self, e: &RegistryError) -> Option<Duration> {
        if e.kind != RegistryErrorKind::Transient {
            return None;
        }
        let delay = *self.delays.next()?;
        if let Some(notify) = self.notify {
            let attempt = BACKOFF.len() - self.delays.len() + 1;
            notify(&format!(
                "retrying in {:.1}s (attempt {attempt} of {}): {}",
                delay.as_secs_f64(),
                BACKOFF.len() + 1,
                e.message
            ));
        }
        Some(delay)
    }
}

/// The clients that reach one server with its TLS policy: oci-client's for pushes, ferry's
/// own for everything else.
#[derive(Clone)]
struct Clients {
    oci: Client,
    http: reqwest::Client,
}

impl Clients {
    fn new(policy: &tls::Policy, insecure: &[String], stall: Duration) -> anyhow::Result<Self> {
        let mut config = ClientConfig {
            protocol: if insecure.is_empty() {
                ClientProtocol::Https
            } else {
                ClientProtocol::HttpsExcept(insecure.to_vec())
            },
            // One PUT per blob: three round trips instead of a chunked upload's five.
            use_monolithic_push: true,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(stall),
            ..Default::default()
        };
        policy.oci(&mut config);
        Ok(Clients {
            oci: Client::try_from(config)?,
            http: policy.reqwest()?.connect_timeout(CONNECT_TIMEOUT).build()?,
        })
    }
}

/// Registry, repository, and whether the operation is a push.
type AuthorizationKey = (String, String, bool);

pub struct Registry {
    /// The clients of servers with no TLS policy of their own, made when one is first
    /// contacted: loading the system's CA certificates costs more than a whole WASI install.
    default_clients: std::sync::OnceLock<Clients>,
    default_policy: tls::Policy,
    /// Per server (`host[:port]`), its clients, made when it is first contacted.
    clients: Mutex<HashMap<String, Clients>>,
    tls: TlsOptions,
    insecure: Vec<String>,
    stall: Duration,
    notify: Option<Notify>,
    runtime: tokio::runtime::Runtime,
    credentials: Credentials,
    /// Per registry and repository, where the credentials presented came from (for a
    /// refusal's message).
    presented: Mutex<HashMap<(String, String), Option<String>>>,
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

impl Registry {
    pub fn new(options: &RegistryOptions) -> anyhow::Result<Self> {
        let stall = options.stall_timeout;
        let default_policy = options.tls.default_policy()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ferry-registry")
            .enable_all()
            .build()?;
        Ok(Registry {
            default_clients: std::sync::OnceLock::new(),
            default_policy,
            clients: Default::default(),
            tls: options.tls.clone(),
            insecure: options.insecure.clone(),
            stall,
            notify: options.notify.clone(),
            runtime,
            credentials: Credentials::load(&options.credentials, options.destination.as_deref())?,
            presented: Default::default(),
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

    /// The clients that reach `host` (`host[:port]`) with its TLS policy.
    fn clients(&self, host: &str) -> Result<Clients, RegistryError> {
        if let Some(clients) = self.clients.lock().unwrap().get(host) {
            return Ok(clients.clone());
        }
        let failed = |e: anyhow::Error| RegistryError::failed(format!("TLS settings for {host}: {e:#}"));
        let made = match self.tls.policy_for(host, &self.default_policy).map_err(failed)? {
            Some(policy) => Clients::new(&policy, &self.insecure, self.stall).map_err(failed)?,
            None => match self.default_clients.get() {
                Some(clients) => clients.clone(),
                None => {
                    let made = Clients::new(&self.default_policy, &self.insecure, self.stall).map_err(failed)?;
                    self.default_clients.get_or_init(|| made).clone()
                }
            },
        };
        Ok(self.clients.lock().unwrap().entry(host.to_owned()).or_insert(made).clone())
    }

    fn oci(&self, registry: &str) -> Result<Client, RegistryError> {
        Ok(self.clients(registry)?.oci)
    }

    fn http(&self, registry: &str) -> Result<reqwest::Client, RegistryError> {
        Ok(self.clients(registry)?.http)
    }

    /// A client for downloading from `host` (an image URL's), with the TLS policy the operator
    /// set for it.
    pub fn web_client(&self, host: &str) -> anyhow::Result<reqwest::Client> {
        Ok(self.http(host)?)
    }

    /// Tells the operator `line`, with `-v`.
    pub fn notice(&self, line: &str) {
        if let Some(notify) = &self.notify {
            notify(line);
        }
    }

    /// Whether `registry` (`host[:port]`) is reached over plain http.
    fn is_insecure(&self, registry: &str) -> bool {
        self.insecure.iter().any(|i| i == registry)
    }

    fn base_url(&self, registry: &str) -> String {
        format!("{}://{registry}", if self.is_insecure(registry) { "http" } else { "https" })
    }

    fn backoff(&self) -> Backoff<'_> {
        Backoff { delays: BACKOFF.iter(), notify: &self.notify }
    }

    /// Runs `f` again after a transient failure, with backoff.
    pub fn retry<T>(&self, mut f: impl FnMut() -> Result<T, RegistryError>) -> Result<T, RegistryError> {
        let mut backoff = self.backoff();
        loop {
            match f() {
                Err(e) => match backoff.after(&e) {
                    Some(delay) => std::thread::sleep(delay),
                    None => return Err(e),
                },
                ok => return ok,
            }
        }
    }

    fn credentials_for(&self, reference: &Reference) -> Result<oci_client::secrets::RegistryAuth, RegistryError> {
        let (registry, repository) = (reference.resolve_registry(), reference.repository());
        let found = self
            .credentials
            .lookup(registry, repository)
            .map_err(|e| RegistryError::new(RegistryErrorKind::Denied, format!("credentials for {registry}: {e:#}")))?;
        self.presented.lock().unwrap().insert((registry.to_owned(), repository.to_owned()), found.from);
        Ok(found.auth)
    }

    /// `e`, and when it is a refusal, whether credentials were presented to `reference`'s
    /// registry (and from where; never the secret) and how to log in.
    fn explained(&self, reference: &Reference, mut e: RegistryError) -> RegistryError {
        if e.kind != RegistryErrorKind::Denied {
            return e;
        }
        let (registry, repository) = (reference.resolve_registry(), reference.repository());
        let key = (registry.to_owned(), repository.to_owned());
        // No lookup yet: the refusal is the lookup's own (a failed credential helper).
        let Some(from) = self.presented.lock().unwrap().get(&key).cloned() else { return e };
        let login = format!("`podman login {registry}`, `docker login {registry}`, or --creds {registry}=USER");
        e.message = match from {
            Some(from) => format!(
                "{}; credentials from {from} were sent to {registry} and refused: log in again with {login}",
                e.message
            ),
            None => format!(
                "{}; no credentials were sent to {registry}: none for it in {}; log in with {login}",
                e.message,
                self.credentials.searched()
            ),
        };
        e
    }

    /// What requests for `operation` on `reference`'s repository carry (see [`token`]).
    fn authenticate_for(
        &self,
        reference: &Reference,
        operation: RegistryOperation,
        deadline: Option<Instant>,
    ) -> Result<token::Authorization, RegistryError> {
        let credentials = self.credentials_for(reference)?;
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
    /// Told of every chunk as it is sent.
    pub sent: Option<Sent>,
}

/// What is told of an upload's chunks as they go: their lengths.
pub type Sent = Arc<dyn Fn(u64) + Send + Sync>;

impl Upload {
    pub fn of(digest: Digest, file: BlobFile) -> Self {
        Upload { digest, size: file.size, file, framing: None, sent: None }
    }

    /// This upload, telling `sent` of every chunk.
    pub fn reporting(self, sent: Sent) -> Self {
        Upload { sent: Some(sent), ..self }
    }

    fn body(&self) -> impl std::io::Read + Send + 'static {
        let (head, tail) = self.framing.clone().unwrap_or_default();
        use std::io::Read;
        let body = std::io::Cursor::new(head).chain(self.file.reader()).chain(std::io::Cursor::new(tail));
        Telling { inner: body, sent: self.sent.clone() }
    }
}

/// A reader that tells `sent` how much was read.
struct Telling<R> {
    inner: R,
    sent: Option<Sent>,
}

impl<R: std::io::Read> std::io::Read for Telling<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(sent) = &self.sent {
            sent(n as u64);
        }
        Ok(n)
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
        let registry = target.resolve_registry();
        self.retry(|| {
            self.authenticate_for(target, RegistryOperation::Push, deadline)?;
            let client = self.oci(registry)?;
            self.until(deadline, &what, async {
                client
                    .blob_exists(target, &digest.to_string())
                    .await
                    .map_err(|e| RegistryError::from_oci(&what(), registry, e))
            })
        })
        .map_err(|e| self.explained(target, e))
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
        let credentials = self.credentials_for(target)?;
        let what = || format!("pushing blobs to {}", target.repository());
        self.until(
            deadline,
            &what,
            stream::iter(uploads.into_iter().map(|upload| self.push_blob(target, upload, &credentials)))
                .buffered(jobs.max(1))
                .try_collect(),
        )
        .map_err(|e| self.explained(target, e))
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
        let registry = target.resolve_registry();
        let client = self.oci(registry)?;
        let mut backoff = self.backoff();
        loop {
            let attempt = async {
                // Obtained again once old: an upload of many blobs outlasts a token.
                self.authorization(target, RegistryOperation::Push, credentials, &self.pace(None)).await?;
                let exists = client.blob_exists(target, &digest).await;
                if exists.map_err(|e| RegistryError::from_oci(&what(), registry, e))? {
                    return Ok::<_, RegistryError>(Pushed::Present);
                }
                if let Some(repository) = &holder {
                    let from = Reference::with_digest(target.registry().to_owned(), repository.clone(), digest.clone());
                    // A registry may decline (202): then the blob is uploaded after all.
                    if client.mount_blob(target, &from, &digest).await.is_ok() {
                        return Ok(Pushed::Mounted);
                    }
                }
                client
                    .push_blob_stream(target, file_stream(upload.body()), &digest, Some(upload.size))
                    .await
                    .map_err(|e| RegistryError::from_oci(&what(), registry, e))?;
                Ok(Pushed::Uploaded)
            };
            match attempt.await {
                Err(e) => match backoff.after(&e) {
                    Some(delay) => tokio::time::sleep(delay).await,
                    None => return Err(e),
                },
                ok => return ok,
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
        let registry = target.resolve_registry();
        self.retry(|| {
            self.authenticate_for(target, RegistryOperation::Push, deadline)?;
            let client = self.oci(registry)?;
            self.until(deadline, &what, async {
                client
                    .push_manifest_raw(target, bytes.to_vec(), content_type.clone())
                    .await
                    .map(|_| ())
                    .map_err(|e| RegistryError::from_oci(&what(), registry, e))
            })
        })
        .map_err(|e| self.explained(target, e))
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
