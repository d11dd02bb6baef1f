//! The driver runtime: loads image-type driver components and runs each of their operations in
//! a fresh sandbox.
//!
//! One [`Runtime`] holds the engine, the linker with every import ferry provides, the compiled
//! component cache and the operator's limits. [`Runtime::load`] turns a component whose digest
//! was checked into a [`Driver`]; each `Driver` operation gets its own store, so a trap, a limit
//! hit or a denial ends that operation and nothing else.

mod bindings;
mod builtin;
mod destination;
mod dry_run;
mod error;
mod grant;
mod host;
mod linker;
mod operation_log;
mod shipped;
mod source;
mod state;
mod store;
mod tar_access;

pub use crate::sandbox::VerifiedComponent;
pub use bindings::INTERFACE;
pub use builtin::builtin_components;
pub use dry_run::Tally;
pub use error::{DriverError, ErrorKind, Operation};
pub use grant::{DestinationGrant, repository_under};
pub use shipped::{Declared, EXTENSION, MAX_DRIVER, Policy, WASM_LAYER, assign, declared};

use crate::config::Limits;
use crate::oci::{BlobFile, Digest, Layout, Stored};
use crate::registry::Deferred;
use crate::sandbox::{Budget, CappedPipe, Sandbox};
use crate::untrusted::{clip, escape, has_control};
use bindings::since_v0_1_0::ferry::driver::host::SourceKind;
use bindings::since_v0_1_0::{ImageDriver, ImageDriverPre, ferry::driver::types};
use operation_log::OperationLog;
use source::SourceHandle;
use state::HostState;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use store::StoreHandle;
use wasmtime::Store;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::WasiCtxBuilder;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

/// Where drivers' log lines and the progress of a command go.
pub trait Events: Send + Sync {
    fn log(&self, driver: &str, level: Level, message: &str);
    /// A driver's own account of its operation: `done` of `total` bytes.
    fn progress(&self, _driver: &str, _done: u64, _total: Option<u64>) {}
    /// The host moved `bytes` more on a driver's behalf: reported as they stream (a chunk of a
    /// blob pulled, pushed, copied or written into an archive), not once a blob is complete.
    fn transferred(&self, _bytes: u64) {}
    /// Whether anyone watches the totals: learning them costs requests (a registry image's
    /// manifests before its driver fetches them), made only when this says so.
    fn wants_totals(&self) -> bool {
        false
    }
    /// The command entered `phase`, which will move `total` bytes when that is known.
    fn phase(&self, _phase: Phase, _total: Option<u64>) {}
    /// Image `key` (a key of `images`, or `invocationImages[N]`) is now in `state`.
    fn image(&self, _key: &str, _state: ImageState) {}
    /// `bytes` that did not have to move: the destination held them already, or, with
    /// `mounted`, the registry mounted them from another repository.
    fn skipped(&self, _bytes: u64, _mounted: bool) {}
}

/// The stages of a long command, in the order they come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Reading manifests and descriptors to learn what will move.
    Planning,
    /// Fetching images (and the drivers a bundle ships) into the staging layout.
    Fetching,
    /// Writing the thick bundle.
    WritingArchive,
    /// Copying images to the destination.
    Copying,
}

impl Phase {
    pub fn describe(self) -> &'static str {
        match self {
            Phase::Planning => "planning",
            Phase::Fetching => "fetching images",
            Phase::WritingArchive => "writing archive",
            Phase::Copying => "copying images",
        }
    }
}

/// Where one image of a command is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageState {
    Working,
    Done,
    Failed,
}

/// A writer (or reader) that tells `events` of every chunk that passes through it.
pub struct Reporting<'e, W> {
    pub inner: W,
    pub events: &'e dyn Events,
}

impl<W: std::io::Write> std::io::Write for Reporting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.events.transferred(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<R: std::io::Read> std::io::Read for Reporting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.events.transferred(n as u64);
        Ok(n)
    }
}

/// An image entry as bundle.json describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Image {
    /// The key in `images`, or `invocationImages[N]`.
    pub key: String,
    pub reference: String,
    pub image_type: String,
    pub media_type: Option<String>,
    pub content_digest: Option<String>,
    pub size: Option<u64>,
    pub labels: Vec<(String, String)>,
}

impl Image {
    fn to_wit(&self) -> types::Image {
        types::Image {
            key: self.key.clone(),
            reference: self.reference.clone(),
            image_type: self.image_type.clone(),
            media_type: self.media_type.clone(),
            content_digest: self.content_digest.clone(),
            size: self.size,
            labels: self.labels.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DriverInfo {
    pub name: String,
    pub version: String,
    pub image_types: Vec<String>,
    /// Relocated after the bundle's other images, with their mapping.
    pub reads_mapping: bool,
}

/// What `inspect` reports about a stored image.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    pub platforms: Vec<String>,
    pub details: Vec<(String, String)>,
}

/// Where an operation reads an image from.
pub enum Origin {
    /// The image named `name` (its ref.name annotation) in an OCI layout or a thick bundle.
    Layout { layout: Arc<dyn Stored>, name: String },
    /// The file `path` (relative) inside the bundle's directory `dir`: opened beneath `dir`, so
    /// a symlink cannot lead outside it.
    File { dir: PathBuf, path: PathBuf },
    /// An http(s) URL, downloaded by the host before the driver runs (the driver's deadline is
    /// for its own work, not for the network).
    Http { url: String, download: PathBuf },
    /// An image in a registry.
    Registry { registry: Arc<crate::registry::Registry>, reference: String },
}

pub struct Settings {
    pub limits: Limits,
    /// Where compiled components are cached; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    pub events: Arc<dyn Events>,
}

pub struct Runtime {
    sandbox: Sandbox,
    linker: Linker<HostState>,
    limits: Limits,
    events: Arc<dyn Events>,
}

/// A loaded driver, ready to run operations.
pub struct Driver<'rt> {
    runtime: &'rt Runtime,
    pre: ImageDriverPre<HostState>,
    info: DriverInfo,
    digest: Digest,
    imports: Vec<String>,
}

impl Runtime {
    pub fn new(settings: Settings) -> anyhow::Result<Self> {
        let sandbox = Sandbox::new(settings.cache_dir)?;
        let linker = linker::new_linker(sandbox.engine())?;
        Ok(Runtime { sandbox, linker, limits: settings.limits, events: settings.events })
    }

    /// The engine and compiled-component cache, for other guests than drivers.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Compiles (or loads from the cache) a component, checks that it implements the driver
    /// interface with only imports this host provides, and asks it for its info.
    pub fn load(&self, component: &VerifiedComponent) -> Result<Driver<'_>, DriverError> {
        let unnamed = |kind, e: anyhow::Error| {
            DriverError::new(&component.digest().to_string(), Operation::Load, kind, format!("{e:#}"))
        };
        let shape = component.survey(MAX_DRIVER).map_err(|e| unnamed(ErrorKind::NotADriver, e))?;
        linker::check_shape(&shape).map_err(|e| unnamed(ErrorKind::NotADriver, e))?;
        let compiled = self.sandbox.compile(component).map_err(|e| unnamed(ErrorKind::NotADriver, e))?;
        let pre = self
            .linker
            .instantiate_pre(&compiled)
            .and_then(ImageDriverPre::new)
            .map_err(|e| unnamed(ErrorKind::NotADriver, e.into()))?;
        let mut driver = Driver {
            runtime: self,
            pre,
            info: DriverInfo {
                name: component.digest().to_string(),
                version: String::new(),
                image_types: Vec::new(),
                reads_mapping: false,
            },
            digest: component.digest().clone(),
            imports: shape.imports,
        };
        let info =
            driver.call(Operation::Info, None, None, |store, d| Ok(Ok(d.ferry_driver_driver().call_info(store)?)))?;
        check_info(&info).map_err(|message| driver.error(Operation::Info, None, ErrorKind::InvalidContent, message))?;
        driver.info = DriverInfo {
            name: info.name,
            version: info.version,
            image_types: info.image_types.into_iter().map(|t| t.to_ascii_lowercase()).collect(),
            reads_mapping: info.reads_mapping,
        };
        Ok(driver)
    }

    /// A store for one operation: nothing ambient, the operator's limits, a deadline.
    fn new_store(&self, driver: &str, grant: Option<DestinationGrant>) -> Store<HostState> {
        let stdout = CappedPipe::capped(self.limits.output);
        let stderr = CappedPipe::capped(self.limits.output);
        let wasi =
            WasiCtxBuilder::new().stdout(stdout).stderr(stderr.clone()).allow_blocking_current_thread(true).build();
        let mut table = wasmtime::component::ResourceTable::new();
        table.set_max_capacity(self.limits.handles as usize + WASI_HANDLES);
        let state = HostState {
            wasi,
            table,
            budget: Budget::new(self.limits.memory),
            limits: self.limits,
            deadline: Instant::now() + self.limits.timeout,
            hit: None,
            stopped: None,
            handles: 0,
            grant,
            driver: driver.to_owned(),
            events: Arc::new(OperationLog::new(self.events.clone(), self.limits.output)),
            stderr,
            downloads: Default::default(),
            written: Vec::new(),
            recorded_root: None,
        };
        self.sandbox.store(state, self.limits.timeout)
    }
}

type CallResult<R> = wasmtime::Result<Result<R, types::Error>>;

/// WASI resources (streams, pollables) a driver may hold at once, on top of `--driver-handles`:
/// each is host memory, so a driver that leaks them is stopped, and told so.
pub const WASI_HANDLES: usize = 1024;

/// What `info` may say: it is written into bundle.json by `driver add` and printed.
const MAX_NAME: usize = 128;
const MAX_VERSION: usize = 64;
const MAX_TYPES: usize = 64;
const MAX_TYPE: usize = 128;

fn check_info(info: &types::DriverInfo) -> Result<(), String> {
    let field = |what: &str, value: &str, max: usize| {
        if value.chars().count() > max {
            return Err(format!(
                "its info has {what} of {} characters; at most {max} are allowed",
                value.chars().count()
            ));
        }
        if has_control(value) {
            return Err(format!("its info has {what} with control characters: \"{}\"", escape(value)));
        }
        Ok(())
    };
    field("a name", &info.name, MAX_NAME)?;
    field("a version", &info.version, MAX_VERSION)?;
    if info.image_types.len() > MAX_TYPES {
        return Err(format!("its info lists {} image types; at most {MAX_TYPES} are allowed", info.image_types.len()));
    }
    info.image_types.iter().try_for_each(|t| field("an image type", t, MAX_TYPE))
}

/// What `inspect` may report: it is printed for the operator.
const MAX_DETAILS: usize = 64;
const MAX_DETAIL: usize = 1024;
const MAX_PLATFORMS: usize = 256;

fn printable(text: String, max: usize) -> String {
    clip(&escape(&text), max).into_owned()
}

impl<'rt> Driver<'rt> {
    pub fn info(&self) -> &DriverInfo {
        &self.info
    }

    /// The sha256 of the component this driver was loaded from.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The imports the component asks for, e.g. `ferry:driver/host@0.1.0`, `wasi:io/streams@0.2.6`.
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// Origin → `store`, recorded there under the image's reference; returns the stored root.
    pub fn fetch(
        &self,
        image: &Image,
        origin: &Origin,
        store: &Arc<Layout>,
    ) -> Result<crate::oci::Descriptor, DriverError> {
        self.fetch_into(image, origin, store, None)
    }

    /// As [`Driver::fetch`], but the blobs the driver copies from a registry are only noted in
    /// `deferred`, to be fetched by whoever writes the store out (an export's archive).
    pub fn fetch_deferring(
        &self,
        image: &Image,
        origin: &Origin,
        store: &Arc<Layout>,
        deferred: &Arc<Deferred>,
    ) -> Result<crate::oci::Descriptor, DriverError> {
        self.fetch_into(image, origin, store, Some(deferred.clone()))
    }

    fn fetch_into(
        &self,
        image: &Image,
        origin: &Origin,
        store: &Arc<Layout>,
        deferred: Option<Arc<Deferred>>,
    ) -> Result<crate::oci::Descriptor, DriverError> {
        let (root, state) = self.run(Operation::Fetch, Some(image), None, |s, d| {
            let origin = push_source(s, origin)?;
            let handle = StoreHandle {
                layout: store.clone(),
                deferred: deferred.clone(),
                name: image.reference.clone(),
                image: escape(&format!("{} ({})", image.key, image.reference)).into_owned(),
            };
            let sink = push(s, handle)?;
            d.ferry_driver_driver().call_fetch(s, &image.to_wit(), origin, sink)
        })?;
        let invalid = |message| self.error(Operation::Fetch, Some(image), ErrorKind::InvalidContent, message);
        let root = host::from_wit(&root).map_err(|_| invalid(format!("returned a bad digest {:?}", root.digest)))?;
        match state.recorded_root {
            Some(recorded)
                if recorded.digest == root.digest
                    && recorded.media_type == root.media_type
                    && recorded.size == root.size =>
            {
                Ok(root)
            }
            Some(recorded) => Err(invalid(format!(
                "returned root {} ({}, {} bytes), but recorded {} ({}, {} bytes) with store.set-root",
                root.digest, root.media_type, root.size, recorded.digest, recorded.media_type, recorded.size
            ))),
            None => Err(invalid(format!("returned root {} without recording it with store.set-root", root.digest))),
        }
    }

    pub fn verify(&self, image: &Image, stored: &Origin) -> Result<(), DriverError> {
        self.call(Operation::Verify, Some(image), None, |s, d| {
            let stored = push_source(s, stored)?;
            d.ferry_driver_driver().call_verify(s, &image.to_wit(), stored)
        })
    }

    /// Stored image → destination `target` (a repository or directory relative to `grant`);
    /// returns the relocated reference. `mapping` (original → relocated) is handed over only to
    /// drivers that read it.
    pub fn relocate(
        &self,
        image: &Image,
        stored: &Origin,
        grant: &DestinationGrant,
        target: &str,
        mapping: &[(String, String)],
    ) -> Result<String, DriverError> {
        let mapping = if self.info.reads_mapping { mapping.to_vec() } else { Vec::new() };
        let (reference, state) = self.run(Operation::Relocate, Some(image), Some(grant.narrowed(target)), |s, d| {
            let stored = push_source(s, stored)?;
            let destination = grant.open(target).map_err(host_error)?;
            let destination = push(s, destination)?;
            d.ferry_driver_driver().call_relocate(s, &image.to_wit(), stored, destination, &mapping)
        })?;
        // The mapping names only what ferry itself wrote inside the grant, with the digest it
        // wrote: a driver's word is not enough.
        let refuse = |message| self.error(Operation::Relocate, Some(image), ErrorKind::InvalidContent, message);
        if has_control(&reference) {
            return Err(refuse(format!("returned a reference with control characters: \"{}\"", escape(&reference))));
        }
        if !state.written.contains(&reference) {
            let wrote = if state.written.is_empty() { "nothing".to_owned() } else { state.written.join(", ") };
            return Err(refuse(format!(
                "returned {:?}, which is not what ferry wrote for it in this relocation ({wrote})",
                clip(&reference, 256)
            )));
        }
        Ok(reference)
    }

    pub fn inspect(&self, image: &Image, stored: &Origin) -> Result<Summary, DriverError> {
        let summary = self.call(Operation::Inspect, Some(image), None, |s, d| {
            let stored = push_source(s, stored)?;
            d.ferry_driver_driver().call_inspect(s, &image.to_wit(), stored)
        })?;
        Ok(Summary {
            digest: printable(summary.digest, MAX_DETAIL),
            media_type: printable(summary.media_type, MAX_DETAIL),
            size: summary.size,
            platforms: summary.platforms.into_iter().take(MAX_PLATFORMS).map(|p| printable(p, MAX_DETAIL)).collect(),
            details: summary
                .details
                .into_iter()
                .take(MAX_DETAILS)
                .map(|(k, v)| (printable(k, MAX_DETAIL), printable(v, MAX_DETAIL)))
                .collect(),
        })
    }

    fn error(&self, operation: Operation, image: Option<&Image>, kind: ErrorKind, message: String) -> DriverError {
        let mut e = DriverError::new(&self.info.name, operation, kind, message);
        e.image = image.map(|i| escape(&format!("{} ({})", i.key, i.reference)).into_owned());
        e
    }

    fn call<R>(
        &self,
        operation: Operation,
        image: Option<&Image>,
        grant: Option<DestinationGrant>,
        f: impl FnOnce(&mut Store<HostState>, &ImageDriver) -> CallResult<R>,
    ) -> Result<R, DriverError> {
        self.run(operation, image, grant, f).map(|(value, _)| value)
    }

    /// Runs one operation in a fresh instance and store, which are dropped afterwards whatever
    /// happened, so the next operation starts clean; a success comes with what the host saw.
    fn run<R>(
        &self,
        operation: Operation,
        image: Option<&Image>,
        grant: Option<DestinationGrant>,
        f: impl FnOnce(&mut Store<HostState>, &ImageDriver) -> CallResult<R>,
    ) -> Result<(R, HostState), DriverError> {
        let mut store = self.runtime.new_store(&self.info.name, grant);
        let outcome = self.pre.instantiate(&mut store).and_then(|instance| f(&mut store, &instance));
        store.data().events.finish(&self.info.name);
        let failure = match outcome {
            Ok(Ok(value)) => return Ok((value, store.into_data())),
            Ok(Err(guest)) => Ok(guest),
            Err(trap) => Err(trap),
        };
        let (kind, message) = error::classify(failure, store.data(), &self.runtime.limits);
        Err(self.error(operation, image, kind, message))
    }
}

fn push<T: Send + 'static>(store: &mut Store<HostState>, value: T) -> wasmtime::Result<Resource<T>> {
    let state = store.data_mut();
    state.take_handle().map_err(host_error)?;
    Ok(state.table.push(value)?)
}

/// A failure of the host while it prepares an operation, before the guest runs.
#[derive(Debug)]
pub(super) struct SetupError(pub types::Error);

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl std::error::Error for SetupError {}

fn push_source(store: &mut Store<HostState>, origin: &Origin) -> wasmtime::Result<Resource<SourceHandle>> {
    let handle = match origin {
        Origin::Layout { layout, name } => {
            let not_found = || SetupError(types::Error::NotFound(format!("{name} is not in {}", layout.location())));
            let root = layout.find(name).ok().flatten().ok_or_else(not_found)?;
            SourceHandle::Layout { layout: layout.clone(), root, location: name.clone() }
        }
        Origin::File { dir, path } => {
            let location = dir.join(path).display().to_string();
            let blob = cap_std::fs::Dir::open_ambient_dir(dir, cap_std::ambient_authority())
                .and_then(|dir| dir.open(path))
                .map(|file| file.into_std())
                .and_then(BlobFile::whole)
                .map_err(|e| {
                    let message =
                        format!("{location} (opened inside {}, links that lead out refused): {e}", dir.display());
                    SetupError(types::Error::NotFound(message))
                })?;
            SourceHandle::Bytes { blob, location, kind: SourceKind::File }
        }
        Origin::Http { url, download } => {
            let blob = std::fs::File::open(download)
                .and_then(BlobFile::whole)
                .map_err(|e| SetupError(types::Error::NotFound(format!("{url} (downloaded): {e}"))))?;
            SourceHandle::Bytes { blob, location: url.clone(), kind: SourceKind::Http }
        }
        Origin::Registry { registry, reference } => {
            let parsed = crate::reference::parse(reference).ok_or_else(|| {
                SetupError(types::Error::InvalidContent(format!("{reference:?} is not an image reference")))
            })?;
            SourceHandle::Registry { registry: registry.clone(), reference: parsed }
        }
    };
    push(store, handle)
}

/// A host-side refusal while setting up an operation ends it before the guest runs.
fn host_error(e: host::HostError) -> wasmtime::Error {
    match e {
        host::HostError::Trap(e) => e,
        host::HostError::Guest(e) => SetupError(e).into(),
    }
}

/// The drivers a command may use, found by image type: the built-in ones, and those the bundle
/// ships for types the operator lets them have.
pub struct Drivers<'rt> {
    entries: Vec<Entry<'rt>>,
    /// Image types a bundle ships a driver for that `--no-bundle-drivers` refused.
    refused: Vec<(String, String)>,
}

struct Entry<'rt> {
    driver: Driver<'rt>,
    types: Vec<String>,
}

impl<'rt> Drivers<'rt> {
    /// The built-in drivers, loaded into `runtime`.
    pub fn builtin(runtime: &'rt Runtime) -> anyhow::Result<Self> {
        let entries = builtin_components()?
            .iter()
            .map(|c| {
                let driver = runtime.load(c)?;
                Ok(Entry { types: driver.info().image_types.clone(), driver })
            })
            .collect::<Result<Vec<_>, DriverError>>()?;
        Ok(Drivers { entries, refused: Vec::new() })
    }

    /// Adds the drivers a bundle declares, as `policy` allows: each takes only image types no
    /// built-in driver handles, unless the operator let it override that type. `bytes` gives a
    /// driver's component; it is called only for drivers that get a type.
    pub fn add_shipped(
        &mut self,
        runtime: &'rt Runtime,
        declared: &[Declared],
        policy: &Policy,
        mut bytes: impl FnMut(&Declared) -> anyhow::Result<Vec<u8>>,
    ) -> anyhow::Result<()> {
        let builtin: Vec<String> = self.entries.iter().flat_map(|e| e.types.iter().cloned()).collect();
        let assigned = shipped::assign(declared, |t| builtin.iter().any(|b| b == t), policy);
        for (d, types) in declared.iter().zip(assigned) {
            if policy.refuse_all {
                self.refused.extend(d.image_types.iter().map(|t| (t.to_ascii_lowercase(), d.name.clone())));
            }
            if types.is_empty() {
                continue;
            }
            let driver = d.load(runtime, bytes(d)?)?;
            for entry in &mut self.entries {
                entry.types.retain(|t| !types.contains(t));
            }
            self.entries.push(Entry { driver, types });
        }
        Ok(())
    }

    /// The driver for `image_type` (lowercase), if any.
    pub fn for_type(&self, image_type: &str) -> Option<&Driver<'rt>> {
        self.entry(image_type).map(|e| &e.driver)
    }

    fn entry(&self, image_type: &str) -> Option<&Entry<'rt>> {
        self.entries.iter().find(|e| e.types.iter().any(|t| t == image_type))
    }

    /// The driver for image `key`, or an error naming the image and its type: CNAB allows no
    /// silent skip.
    pub fn require(&self, key: &str, reference: &str, image_type: &str) -> anyhow::Result<&Driver<'rt>> {
        if let Some(driver) = self.for_type(image_type) {
            return Ok(driver);
        }
        match self.refused.iter().find(|(t, _)| t == image_type) {
            Some((_, name)) => anyhow::bail!(
                "image {key} ({reference}) has imageType {image_type:?}: the bundle ships driver {name:?} for it, \
                 and --no-bundle-drivers refuses it"
            ),
            None => anyhow::bail!("image {key} ({reference}) has imageType {image_type:?}, which no driver handles"),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Driver<'rt>> {
        self.entries.iter().map(|e| &e.driver)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, version: &str, image_types: Vec<String>) -> types::DriverInfo {
        types::DriverInfo { name: name.into(), version: version.into(), image_types, reads_mapping: false }
    }

    #[test]
    fn info_is_refused_when_it_is_too_long_or_holds_control_characters() {
        assert_eq!(check_info(&info("helm", "1.2.3", vec!["helm".into()])), Ok(()));
        let refused = [
            (info(&"n".repeat(MAX_NAME + 1), "1", vec![]), "a name of 129 characters"),
            (info("oci\x1b[2K\rbundle driver", "1", vec![]), "a name with control characters"),
            (info("n", &"1".repeat(1 << 20), vec![]), "a version of 1048576 characters"),
            (info("n", "1\n", vec![]), "a version with control characters"),
            (info("n", "1", (0..100_000).map(|i| i.to_string()).collect()), "lists 100000 image types"),
            (info("n", "1", vec!["t".repeat(MAX_TYPE + 1)]), "an image type of 129 characters"),
            (info("n", "1", vec!["oci\u{202e}".into()]), "an image type with control characters"),
        ];
        for (info, says) in refused {
            let err = check_info(&info).unwrap_err();
            assert!(err.contains(says), "{err}");
            assert!(!err.chars().any(char::is_control) && err.len() < 300, "{err}");
        }
    }
}
