//! The driver runtime: loads image-type driver components and runs each of their operations in
//! a fresh sandbox.
//!
//! One [`Runtime`] holds the engine, the linker with every import ferry provides, the compiled
//! component cache and the operator's limits. [`Runtime::load`] turns a component whose digest
//! was checked into a [`Driver`]; each `Driver` operation gets its own store, so a trap, a limit
//! hit or a denial ends that operation and nothing else.

mod bindings;
mod builtin;
mod cache;
mod component;
mod destination;
mod engine;
mod error;
mod host;
mod linker;
mod sandbox;
mod shipped;
mod tar_access;

pub use bindings::INTERFACE;
pub use builtin::builtin_components;
pub use component::VerifiedComponent;
pub use destination::{DestinationGrant, repository_under};
pub use error::{DriverError, ErrorKind, Operation};
pub use shipped::{Declared, EXTENSION, MAX_DRIVER, Policy, WASM_LAYER, assign, declared};

use crate::config::Limits;
use crate::oci::{BlobFile, Digest, Layout, Stored};
use bindings::since_v0_1_0::ferry::driver::host::SourceKind;
use bindings::since_v0_1_0::{ImageDriver, ImageDriverPre, ferry::driver::types};
use cache::ComponentCache;
use host::{SourceHandle, StoreHandle};
use sandbox::{Budget, CappedPipe, HostState};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::{Linker, Resource};
use wasmtime::{Engine, Store};
use wasmtime_wasi::WasiCtxBuilder;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

/// Where drivers' log lines and progress go.
pub trait Events: Send + Sync {
    fn log(&self, driver: &str, level: Level, message: &str);
    /// A driver's own account of its operation: `done` of `total` bytes.
    fn progress(&self, _driver: &str, _done: u64, _total: Option<u64>) {}
    /// The host moved `bytes` more on a driver's behalf (a blob stored or copied).
    fn transferred(&self, _bytes: u64) {}
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
    Layout {
        layout: Arc<dyn Stored>,
        name: String,
    },
    File(PathBuf),
    /// An http(s) URL, downloaded by the host before the driver runs (the driver's deadline is
    /// for its own work, not for the network).
    Http {
        url: String,
        download: PathBuf,
    },
    /// An image in a registry.
    Registry {
        registry: Arc<crate::registry::Registry>,
        reference: String,
    },
}

pub struct Settings {
    pub limits: Limits,
    /// Where compiled components are cached; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    pub events: Arc<dyn Events>,
}

pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache: ComponentCache,
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
        let engine = engine::new_engine()?;
        let linker = linker::new_linker(&engine)?;
        let cache = ComponentCache::new(&engine, settings.cache_dir);
        Ok(Runtime { engine, linker, cache, limits: settings.limits, events: settings.events })
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
        let compiled = self.cache.load(&self.engine, component).map_err(|e| unnamed(ErrorKind::NotADriver, e))?;
        let shape = linker::check_shape(&self.engine, &compiled).map_err(|e| unnamed(ErrorKind::NotADriver, e))?;
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
        let stdout = CappedPipe::new(self.limits.output);
        let stderr = CappedPipe::new(self.limits.output);
        let wasi =
            WasiCtxBuilder::new().stdout(stdout).stderr(stderr.clone()).allow_blocking_current_thread(true).build();
        let state = HostState {
            wasi,
            table: wasmtime::component::ResourceTable::new(),
            budget: Budget::new(self.limits.memory),
            limits: self.limits,
            deadline: Instant::now() + self.limits.timeout,
            hit: None,
            handles: 0,
            grant,
            driver: driver.to_owned(),
            events: self.events.clone(),
            stderr,
            downloads: Default::default(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.budget);
        store.set_epoch_deadline(engine::ticks(self.limits.timeout));
        store
    }
}

type CallResult<R> = wasmtime::Result<Result<R, types::Error>>;

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
        let root = self.call(Operation::Fetch, Some(image), None, |s, d| {
            let origin = push_source(s, origin)?;
            let sink = push(s, StoreHandle { layout: store.clone(), name: image.reference.clone() })?;
            d.ferry_driver_driver().call_fetch(s, &image.to_wit(), origin, sink)
        })?;
        host::from_wit(&root).map_err(|_| {
            self.error(
                Operation::Fetch,
                Some(image),
                ErrorKind::InvalidContent,
                format!("returned a bad digest {:?}", root.digest),
            )
        })
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
        self.call(Operation::Relocate, Some(image), Some(grant.narrowed(target)), |s, d| {
            let stored = push_source(s, stored)?;
            let destination = grant.open(target).map_err(host_error)?;
            let destination = push(s, destination)?;
            d.ferry_driver_driver().call_relocate(s, &image.to_wit(), stored, destination, &mapping)
        })
    }

    pub fn inspect(&self, image: &Image, stored: &Origin) -> Result<Summary, DriverError> {
        let summary = self.call(Operation::Inspect, Some(image), None, |s, d| {
            let stored = push_source(s, stored)?;
            d.ferry_driver_driver().call_inspect(s, &image.to_wit(), stored)
        })?;
        Ok(Summary {
            digest: summary.digest,
            media_type: summary.media_type,
            size: summary.size,
            platforms: summary.platforms,
            details: summary.details,
        })
    }

    fn error(&self, operation: Operation, image: Option<&Image>, kind: ErrorKind, message: String) -> DriverError {
        let mut e = DriverError::new(&self.info.name, operation, kind, message);
        e.image = image.map(|i| format!("{} ({})", i.key, i.reference));
        e
    }

    /// Runs one operation in a fresh instance and store, which are dropped afterwards whatever
    /// happened, so the next operation starts clean.
    fn call<R>(
        &self,
        operation: Operation,
        image: Option<&Image>,
        grant: Option<DestinationGrant>,
        f: impl FnOnce(&mut Store<HostState>, &ImageDriver) -> CallResult<R>,
    ) -> Result<R, DriverError> {
        let mut store = self.runtime.new_store(&self.info.name, grant);
        let outcome = self.pre.instantiate(&mut store).and_then(|instance| f(&mut store, &instance));
        let failure = match outcome {
            Ok(Ok(value)) => return Ok(value),
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
        Origin::File(path) => {
            let blob = std::fs::File::open(path)
                .and_then(BlobFile::whole)
                .map_err(|e| SetupError(types::Error::NotFound(format!("{}: {e}", path.display()))))?;
            SourceHandle::Bytes { blob, location: path.display().to_string(), kind: SourceKind::File }
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
    shipped: bool,
}

impl<'rt> Drivers<'rt> {
    /// The built-in drivers, loaded into `runtime`.
    pub fn builtin(runtime: &'rt Runtime) -> anyhow::Result<Self> {
        let entries = builtin_components()?
            .iter()
            .map(|c| {
                let driver = runtime.load(c)?;
                Ok(Entry { types: driver.info().image_types.clone(), driver, shipped: false })
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
            self.entries.push(Entry { driver, types, shipped: true });
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

    /// Whether the driver for `image_type` came with the bundle.
    pub fn is_shipped(&self, image_type: &str) -> bool {
        self.entry(image_type).is_some_and(|e| e.shipped)
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
