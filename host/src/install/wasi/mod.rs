//! The WASI executor: runs an invocation image that is a WebAssembly component (the standard
//! `wasi:cli/command` world) in ferry's own sandbox, with no container engine. It takes the
//! same [`Run`] as the container engine and gives back the same [`Finished`]; only how the run
//! tool starts differs (docs/wasi-installers.md).
//!
//! The guest gets the CNAB environment and nothing of ferry's; a filesystem of exactly the
//! runtime contract's paths (everything read-only but `/cnab/app/outputs`); the network only as
//! far as its bundle declares and the operator grants; and named limits on memory, wall-clock
//! time, stdout and stderr, and what it writes as outputs.

mod http;
mod outbound;
mod stdio;

pub use outbound::{EXTENSION, Endpoint, Grant, Network, declared, problem};

use super::executor::{Exit, Finished, Run};
use super::outputs::OUTPUTS_DIR;
use crate::cleanup::{Interruptible, TempDir};
use crate::config::InstallerLimits;
use crate::sandbox::{Budget, Budgeted, Sandbox, Stop, VerifiedComponent, Wait, Waits};
use anyhow::{Context, Result, anyhow, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::p2::bindings::sync::CommandPre;
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// The largest installer component ferry reads and compiles.
pub const MAX_INSTALLER: u64 = 64 << 20;

/// The export that makes a component a command.
const RUN_EXPORT: &str = "wasi:cli/run@0.2";

/// Entries under /cnab/app/outputs an installer may make.
const MAX_OUTPUT_ENTRIES: usize = 1024;

/// One run's store data.
struct RunState {
    wasi: WasiCtx,
    table: ResourceTable,
    budget: Budget,
    deadline: Instant,
    canceled: Arc<AtomicBool>,
    stopped: Option<Stop>,
    /// The outputs directory on the host, watched while the guest runs.
    outputs: PathBuf,
    outputs_bound: u64,
    outputs_exceeded: bool,
    http: wasmtime_wasi_http::WasiHttpCtx,
    http_grant: http::Grant,
}

impl wasmtime_wasi_http::WasiHttpView for RunState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.http_grant }
    }
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl Budgeted for RunState {
    fn budget(&mut self) -> &mut Budget {
        &mut self.budget
    }
}

impl Waits for RunState {
    fn waits(&mut self) -> Wait<'_> {
        Wait {
            table: &mut self.table,
            deadline: self.deadline,
            canceled: Some(self.canceled.clone()),
            stopped: &mut self.stopped,
        }
    }
}

/// An installer component, compiled and linked, ready to run actions.
pub struct WasiExecutor<'s> {
    sandbox: &'s Sandbox,
    pre: CommandPre<RunState>,
    limits: InstallerLimits,
    network: Network,
}

impl<'s> WasiExecutor<'s> {
    /// Checks, compiles (or takes from the cache) and links `component`; refused when it is
    /// not a `wasi:cli/command` or imports what ferry does not give installers.
    pub fn new(
        sandbox: &'s Sandbox,
        component: &VerifiedComponent,
        limits: InstallerLimits,
        network: Network,
    ) -> Result<Self> {
        let refused = |e: anyhow::Error| e.context(format!("the installer component {}", component.digest()));
        let shape = component.survey(MAX_INSTALLER).map_err(refused)?;
        if !shape.exports.iter().any(|e| e.starts_with(RUN_EXPORT)) {
            let exports = if shape.exports.is_empty() { "nothing".into() } else { shape.exports.join(", ") };
            return Err(refused(anyhow!(
                "it is not a wasi:cli/command (it exports {exports}): build it as a binary for wasm32-wasip2"
            )));
        }
        let compiled = sandbox.compile(component).map_err(refused)?;
        let linker = linker(sandbox.engine())?;
        let pre = linker
            .instantiate_pre(&compiled)
            .and_then(CommandPre::new)
            .map_err(|e| refused(anyhow!("it imports what ferry does not give installers: {e:#}")))?;
        Ok(WasiExecutor { sandbox, pre, limits, network })
    }

    /// Runs the installer once; its filesystem is made in `scratch` and removed afterwards.
    pub fn run(&self, run: &Run, interrupt: &Interruptible, scratch: &Path) -> Result<Finished> {
        let dir = TempDir::new_in(scratch, ".ferry-wasi-")?;
        let root = dir.path().join("root");
        let outputs = dir.path().join("outputs");
        std::fs::create_dir_all(&outputs)?;
        place(&root, &run.files)?;

        let refusals: Refusals = Arc::default();
        let mut wasi = WasiCtxBuilder::new();
        let budget = stdio::Budget::new(self.limits.output);
        let stdout = if run.stdout_to_stderr { stdio::Which::Stderr } else { stdio::Which::Stdout };
        wasi.stdout(stdio::live(stdout, &budget))
            .stderr(stdio::live(stdio::Which::Stderr, &budget))
            .envs(&run.env.iter().collect::<Vec<_>>())
            .arg("/cnab/app/run")
            .allow_blocking_current_thread(true);
        wasi.preopened_dir(&root, "/", FsPerms::ReadOnly)?;
        wasi.preopened_dir(&outputs, OUTPUTS_DIR.trim_end_matches('/'), FsPerms::ReadWrite)?;
        if let Some(artifacts) = &run.artifacts {
            wasi.preopened_dir(artifacts, super::staging::ARTIFACTS, FsPerms::ReadOnly)?;
        }
        self.grant_network(&mut wasi, &refusals)?;

        let deadline = Instant::now() + self.limits.timeout;
        let state = RunState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            budget: Budget::new(self.limits.memory),
            deadline,
            canceled: interrupt.raised().clone(),
            stopped: None,
            outputs: outputs.clone(),
            outputs_bound: run.output_cap.saturating_mul(run.outputs.len().max(1) as u64),
            outputs_exceeded: false,
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            http_grant: http::Grant::new(&self.network.open, &refusals),
        };
        let mut store = self.sandbox.store(state, self.limits.timeout);
        watch(&mut store);
        let ran = self.pre.instantiate(&mut store).and_then(|command| command.wasi_cli_run().call_run(&mut store));

        let state = store.data();
        let refused: Vec<String> = refusals.lock().unwrap().iter().map(|a| self.network.refusal(a)).collect();
        let exit = match ran {
            Ok(Ok(())) => Exit::Code(0),
            Ok(Err(())) => Exit::Code(1),
            Err(e) => match e.downcast_ref::<I32Exit>() {
                Some(I32Exit(code)) => Exit::Code(i64::from(*code)),
                None if state.stopped == Some(Stop::Canceled) => Exit::Canceled,
                None => Exit::Stopped(self.failure(state, &e, &budget, run)),
            },
        };
        let outputs = match exit {
            Exit::Code(_) => collect(&outputs, &run.outputs, run.output_cap)?,
            _ => BTreeMap::new(),
        };
        Ok(Finished { exit, outputs, remarks: refused })
    }

    /// Why a run that trapped ended: the limit it hit, named with its flag, or the trap.
    fn failure(&self, state: &RunState, e: &wasmtime::Error, output: &stdio::Budget, run: &Run) -> String {
        let limits = &self.limits;
        if state.stopped == Some(Stop::Timeout)
            || e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt)
        {
            return format!(
                "the installer was stopped at its time limit of {:?} (--installer-timeout)",
                limits.timeout
            );
        }
        if state.budget.exceeded() {
            return format!(
                "the installer hit its memory limit of {} (--installer-memory): {}",
                size(limits.memory),
                e.root_cause()
            );
        }
        if output.exceeded.load(Ordering::Relaxed) {
            return format!(
                "the installer wrote more than {} to stdout and stderr (--installer-output)",
                size(limits.output)
            );
        }
        if state.outputs_exceeded {
            return format!(
                "the installer wrote more than {} under {OUTPUTS_DIR} ({} declared, {} an output may hold, \
                 --output-limit)",
                size(state.outputs_bound),
                run.outputs.len().max(1),
                size(run.output_cap)
            );
        }
        format!("the installer crashed: {}", e.root_cause())
    }

    fn grant_network(&self, wasi: &mut WasiCtxBuilder, refusals: &Refusals) -> Result<()> {
        for endpoint in &self.network.closed {
            eprintln!(
                "ferry: the bundle's installer declares {endpoint}, which stays closed: grant it with \
                 --allow-outbound {}:{}",
                endpoint.host, endpoint.port
            );
        }
        for grant in &self.network.unused {
            eprintln!("ferry: --allow-outbound {grant}: the bundle does not declare it, so it gives nothing");
        }
        let allowed = Arc::new(self.network.addresses()?);
        let refusals = refusals.clone();
        // TCP is on for every run so that each connection meets the check below, which refuses
        // what is not granted and remembers it for the operator; UDP has no grant form.
        wasi.allow_tcp(true).allow_udp(false).allow_ip_name_lookup(self.network.needs_lookup());
        wasi.socket_addr_check(move |address, using| {
            let permitted = match using {
                SocketAddrUse::TcpConnect => allowed.contains(&address),
                // The bind a connect makes on its own, to any local address and port.
                SocketAddrUse::TcpBind => address.ip().is_unspecified() && address.port() == 0,
                _ => false,
            };
            if !permitted && !matches!(using, SocketAddrUse::TcpBind) {
                refusals.lock().unwrap().insert(address.to_string());
            }
            Box::pin(async move { permitted })
        });
        Ok(())
    }
}

/// Where the run was refused a connection or a request, for the operator.
type Refusals = Arc<Mutex<BTreeSet<String>>>;

fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b.is_multiple_of(1 << 30) => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b.is_multiple_of(1 << 20) => format!("{} MiB", b >> 20),
        b => format!("{b} bytes"),
    }
}

/// Every tick of the epoch while guest code runs: the deadline, the operator's cancel, and the
/// size of what the guest wrote under /cnab/app/outputs, so a runaway writer stops within a
/// tick of passing its bound rather than at the end.
fn watch(store: &mut Store<RunState>) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut context| {
        let state = context.data_mut();
        if state.canceled.load(Ordering::Relaxed) {
            state.stopped = Some(Stop::Canceled);
            return Err(wasmtime::Error::msg("canceled by the operator"));
        }
        if Instant::now() >= state.deadline {
            state.stopped = Some(Stop::Timeout);
            return Err(wasmtime::Error::msg("the installer's time limit passed"));
        }
        if !within(&state.outputs, state.outputs_bound) {
            state.outputs_exceeded = true;
            return Err(wasmtime::Error::msg("the installer's outputs passed their bound"));
        }
        Ok(UpdateDeadline::Continue(1))
    });
}

/// Whether the files under `dir` hold at most `bound` bytes in at most [`MAX_OUTPUT_ENTRIES`]
/// entries.
fn within(dir: &Path, bound: u64) -> bool {
    let mut total = 0u64;
    let mut entries = 0usize;
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(listing) = std::fs::read_dir(&dir) else { continue };
        for entry in listing.flatten() {
            entries += 1;
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                pending.push(entry.path());
            }
            total += meta.len();
            if entries > MAX_OUTPUT_ENTRIES || total > bound {
                return false;
            }
        }
    }
    true
}

/// Writes each file at its absolute path under `root`.
fn place(root: &Path, files: &[(String, Vec<u8>)]) -> Result<()> {
    std::fs::create_dir_all(root.join("cnab/app"))?;
    for (path, content) in files {
        let relative = path.trim_start_matches('/');
        if !super::outputs::plain_relative(relative) {
            bail!("{path} is not an absolute path without . or .. components");
        }
        let at = root.join(relative);
        std::fs::create_dir_all(crate::files::parent_of(&at))?;
        std::fs::write(&at, content).with_context(|| format!("placing {path} for the installer"))?;
    }
    Ok(())
}

/// The outputs the run wrote, each a regular file of at most `cap` bytes, read without
/// following links.
fn collect(dir: &Path, wanted: &BTreeMap<String, String>, cap: u64) -> Result<BTreeMap<String, Vec<u8>>> {
    use std::io::Read;
    let outputs = cap_std::fs::Dir::open_ambient_dir(dir, cap_std::ambient_authority())?;
    let mut found = BTreeMap::new();
    for (name, path) in wanted {
        let relative = &path[OUTPUTS_DIR.len()..];
        let meta = match outputs.symlink_metadata(relative) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("output {name:?} ({path})")),
        };
        if !meta.is_file() {
            bail!("output {name:?} ({path}) is not a regular file");
        }
        if meta.len() > cap {
            bail!("output {name:?} is {} bytes, more than the {cap} an output may hold (--output-limit)", meta.len());
        }
        let mut bytes = Vec::new();
        outputs.open(relative)?.take(cap + 1).read_to_end(&mut bytes)?;
        found.insert(name.clone(), bytes);
    }
    Ok(found)
}

/// The imports a command may use, WASI's own, with ferry's deadline on every wait. Sockets and
/// wasi:http are linked but closed but for what the run's grant opens.
fn linker(engine: &wasmtime::Engine) -> Result<Linker<RunState>> {
    use wasmtime_wasi::p2::bindings::sockets;
    use wasmtime_wasi::p2::bindings::sync::sockets as blocking;
    use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsView};
    let mut l = Linker::new(engine);
    crate::sandbox::add_wasi(&mut l)?;
    sockets::tcp_create_socket::add_to_linker::<RunState, WasiSockets>(&mut l, RunState::sockets)?;
    sockets::instance_network::add_to_linker::<RunState, WasiSockets>(&mut l, RunState::sockets)?;
    sockets::network::add_to_linker::<RunState, WasiSockets>(&mut l, &Default::default(), RunState::sockets)?;
    sockets::ip_name_lookup::add_to_linker::<RunState, WasiSockets>(&mut l, RunState::sockets)?;
    blocking::tcp::add_to_linker::<RunState, WasiSockets>(&mut l, RunState::sockets)?;
    blocking::udp::add_to_linker::<RunState, WasiSockets>(&mut l, RunState::sockets)?;
    blocking::udp_create_socket::add_to_linker::<RunState, WasiSockets>(&mut l, RunState::sockets)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut l)?;
    Ok(l)
}
