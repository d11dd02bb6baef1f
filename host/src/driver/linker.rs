//! The imports ferry provides to drivers, and the check that a component asks for no others.

use super::bindings::{INTERFACE, since_v0_1_0::ImageDriver};
use super::state::HostState;
use crate::sandbox::{Shape, Waits, WithDeadline};
use anyhow::{Result, bail};
use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};
use wasmtime_wasi::cli::WasiCliView;
use wasmtime_wasi::clocks::WasiClocksView;
use wasmtime_wasi::filesystem::WasiFilesystemView;
use wasmtime_wasi::p2::bindings::sync as wasi;
use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random};
use wasmtime_wasi::{WasiCtxView, WasiView};

/// Interfaces a driver may import, without their version. Rust's std makes every
/// `wasm32-wasip2` guest import the WASI ones; they are linked with nothing granted (no
/// preopens, no environment). Sockets and http are deliberately absent.
const PROVIDED: &[&str] = &[
    "ferry:driver/types",
    "ferry:driver/host",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:cli/exit",
    "wasi:cli/environment",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
];

pub fn new_linker(engine: &Engine) -> Result<Linker<HostState>> {
    let mut l = Linker::new(engine);
    wasmtime_wasi::p2::bindings::io::error::add_to_linker::<HostState, HasTable>(&mut l, table)?;
    wasi::io::poll::add_to_linker::<HostState, WithDeadline>(&mut l, HostState::waits)?;
    wasi::io::streams::add_to_linker::<HostState, HasTable>(&mut l, table)?;
    clocks::wall_clock::add_to_linker::<HostState, wasmtime_wasi::clocks::WasiClocks>(&mut l, HostState::clocks)?;
    clocks::monotonic_clock::add_to_linker::<HostState, wasmtime_wasi::clocks::WasiClocks>(&mut l, HostState::clocks)?;
    wasi::filesystem::types::add_to_linker::<HostState, wasmtime_wasi::filesystem::WasiFilesystem>(
        &mut l,
        HostState::filesystem,
    )?;
    filesystem::preopens::add_to_linker::<HostState, wasmtime_wasi::filesystem::WasiFilesystem>(
        &mut l,
        HostState::filesystem,
    )?;
    random::random::add_to_linker::<HostState, wasmtime_wasi::random::WasiRandom>(&mut l, |s| s.wasi.random())?;
    random::insecure::add_to_linker::<HostState, wasmtime_wasi::random::WasiRandom>(&mut l, |s| s.wasi.random())?;
    random::insecure_seed::add_to_linker::<HostState, wasmtime_wasi::random::WasiRandom>(&mut l, |s| s.wasi.random())?;
    type Cli = wasmtime_wasi::cli::WasiCli;
    cli::exit::add_to_linker::<HostState, Cli>(&mut l, HostState::cli)?;
    cli::environment::add_to_linker::<HostState, Cli>(&mut l, HostState::cli)?;
    cli::stdin::add_to_linker::<HostState, Cli>(&mut l, HostState::cli)?;
    cli::stdout::add_to_linker::<HostState, Cli>(&mut l, HostState::cli)?;
    cli::stderr::add_to_linker::<HostState, Cli>(&mut l, HostState::cli)?;
    cli::terminal_input::add_to_linker::<HostState, Cli>(&mut l, HostState::cli)?;
    cli::terminal_output::add_to_linker::<HostState, Cli>(&mut l, HostState::cli)?;
    cli::terminal_stdin::add_to_linker::<HostState, Cli>(&mut l, HostState::cli)?;
    cli::terminal_stdout::add_to_linker::<HostState, Cli>(&mut l, HostState::cli)?;
    cli::terminal_stderr::add_to_linker::<HostState, Cli>(&mut l, HostState::cli)?;
    ImageDriver::add_to_linker::<HostState, HasSelf<HostState>>(&mut l, |s| s)?;
    Ok(l)
}

struct HasTable;

impl wasmtime::component::HasData for HasTable {
    type Data<'a> = &'a mut wasmtime::component::ResourceTable;
}

fn table(state: &mut HostState) -> &mut wasmtime::component::ResourceTable {
    let WasiCtxView { table, .. } = state.ctx();
    table
}

/// Checks that a component with this shape exports this host's driver interface and imports
/// nothing the host does not provide; the error names what is wrong.
pub fn check_shape(shape: &Shape) -> Result<()> {
    if !shape.exports.iter().any(|e| e == INTERFACE) {
        let (package, _) = INTERFACE.split_once('@').expect("versioned");
        match shape.exports.iter().find(|e| e.starts_with(package)) {
            Some(other) => bail!("it implements {other}, but this ferry implements {INTERFACE}"),
            None => {
                bail!("it does not implement the driver interface {INTERFACE}; it exports: {}", list(&shape.exports))
            }
        }
    }
    let unknown: Vec<&String> = shape
        .imports
        .iter()
        .filter(|name| {
            let unversioned = name.split('@').next().unwrap_or(name);
            !PROVIDED.contains(&unversioned)
        })
        .collect();
    if !unknown.is_empty() {
        bail!(
            "it imports what ferry does not provide to drivers: {}",
            unknown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

fn list(names: &[String]) -> String {
    if names.is_empty() { "nothing".into() } else { names.join(", ") }
}
