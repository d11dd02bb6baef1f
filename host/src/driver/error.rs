//! Turning whatever ended a driver operation into one error that names the driver, the image,
//! the operation and the limit or capability involved.

use super::SetupError;
use super::bindings::since_v0_1_0::ferry::driver::types;
use super::sandbox::{HostState, LimitHit};
use crate::config::Limits;
use std::fmt;
use wasmtime::Trap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Load,
    Info,
    Fetch,
    Verify,
    Relocate,
    Inspect,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Load => "load",
            Operation::Info => "info",
            Operation::Fetch => "fetch",
            Operation::Verify => "verify",
            Operation::Relocate => "relocate",
            Operation::Inspect => "inspect",
        })
    }
}

/// Why an operation failed: the driver's own verdict, or a limit or trap the host saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    // Reported by the driver.
    Unsupported,
    InvalidContent,
    Denied,
    NotFound,
    Transient,
    Failed,
    // Seen by the host.
    /// The component is not a driver this host can load.
    NotADriver,
    Timeout,
    MemoryLimit,
    CallBytesLimit,
    HandleLimit,
    /// A trap: a panic, an abort, a bad instruction.
    Crashed,
}

#[derive(Debug)]
pub struct DriverError {
    pub driver: String,
    pub operation: Operation,
    /// `key (reference)` of the image the operation was for.
    pub image: Option<String>,
    pub kind: ErrorKind,
    pub message: String,
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "driver {:?}: {}", self.driver, self.operation)?;
        if let Some(image) = &self.image {
            write!(f, " of image {image}")?;
        }
        write!(f, " failed: {}", self.message)
    }
}

impl std::error::Error for DriverError {}

impl DriverError {
    pub(super) fn new(driver: &str, operation: Operation, kind: ErrorKind, message: String) -> Self {
        DriverError { driver: driver.to_owned(), operation, image: None, kind, message }
    }
}

fn mib(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// The kind and message for a failed call, from the trap or guest error and what the sandbox
/// recorded while it ran.
pub(super) fn classify(
    outcome: Result<types::Error, wasmtime::Error>,
    state: &HostState,
    limits: &Limits,
) -> (ErrorKind, String) {
    let outcome = match outcome {
        Err(e) if e.is::<SetupError>() => Ok(e.downcast::<SetupError>().expect("checked").0),
        other => other,
    };
    let hit = state.hit.clone().or(state.budget.exceeded.then_some(LimitHit::Memory));
    let trap = outcome.as_ref().err().and_then(|e| e.downcast_ref::<Trap>().copied());
    let detail = match &outcome {
        Ok(e) => guest_error(e).1.to_owned(),
        Err(e) => {
            let stderr = state.stderr.tail(1024);
            let cause = e.root_cause().to_string();
            if stderr.is_empty() { cause } else { format!("{cause}; driver stderr: {stderr}") }
        }
    };
    if trap == Some(Trap::Interrupt) || hit == Some(LimitHit::Timeout) {
        return (ErrorKind::Timeout, format!("stopped at its time limit of {:?} (--driver-timeout)", limits.timeout));
    }
    match hit {
        Some(LimitHit::Memory) => {
            return (
                ErrorKind::MemoryLimit,
                format!("hit its memory limit of {} (--driver-memory): {detail}", mib(limits.memory)),
            );
        }
        Some(LimitHit::CallBytes { call, bytes }) => {
            return (
                ErrorKind::CallBytesLimit,
                format!(
                    "handed {} to {call}, more than the {} allowed in one call (--driver-call-bytes)",
                    mib(bytes),
                    mib(limits.call_bytes)
                ),
            );
        }
        Some(LimitHit::Handles) => {
            return (
                ErrorKind::HandleLimit,
                format!("held more than {} host handles (--driver-handles)", limits.handles),
            );
        }
        Some(LimitHit::Timeout) | None => {}
    }
    match outcome {
        Ok(e) => (guest_error(&e).0, detail),
        Err(_) => (ErrorKind::Crashed, format!("crashed: {detail}")),
    }
}

fn guest_error(e: &types::Error) -> (ErrorKind, &str) {
    match e {
        types::Error::Unsupported(m) => (ErrorKind::Unsupported, m),
        types::Error::InvalidContent(m) => (ErrorKind::InvalidContent, m),
        types::Error::Denied(m) => (ErrorKind::Denied, m),
        types::Error::NotFound(m) => (ErrorKind::NotFound, m),
        types::Error::Transient(m) => (ErrorKind::Transient, m),
        types::Error::Failed(m) => (ErrorKind::Failed, m),
    }
}
