//! The imports ferry provides to drivers, and the check that a component asks for no others.

use super::bindings::{INTERFACE, since_v0_1_0::ImageDriver};
use super::state::HostState;
use crate::sandbox::Shape;
use anyhow::{Result, bail};
use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

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
    crate::sandbox::add_wasi(&mut l)?;
    ImageDriver::add_to_linker::<HostState, HasSelf<HostState>>(&mut l, |s| s)?;
    Ok(l)
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
