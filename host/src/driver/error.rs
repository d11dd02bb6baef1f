//! Turning whatever ended a driver operation into one error that names the driver, the image,
//! the operation and the limit or capability involved.

use super::SetupError;
use super::bindings::since_v0_1_0::ferry::driver::types;
use super::state::{HostState, LimitHit};
use crate::config::Limits;
use crate::untrusted::{clip, escape};
use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTableError;
use wasmtime::{Trap, WasmBacktrace};

/// The most of a driver's error message (or stderr) that reaches the operator.
pub const MAX_MESSAGE: usize = 4096;

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
    /// `message` may quote the driver: it is escaped and cut to [`MAX_MESSAGE`] bytes.
    pub(super) fn new(driver: &str, operation: Operation, kind: ErrorKind, message: String) -> Self {
        let message = clip(&escape(&message), MAX_MESSAGE).into_owned();
        DriverError { driver: escape(driver).into_owned(), operation, image: None, kind, message }
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
    let hit = state
        .hit
        .clone()
        .or(state.stopped.map(|_| LimitHit::Timeout))
        .or(state.budget.exceeded().then_some(LimitHit::Memory));
    let trap = outcome.as_ref().err().and_then(|e| e.downcast_ref::<Trap>().copied());
    let detail = match &outcome {
        Ok(e) => clip(guest_error(e).1, MAX_MESSAGE).into_owned(),
        Err(e) => {
            let stderr = state.stderr.tail(1024);
            let cause = e.root_cause().to_string();
            if stderr.is_empty() { cause } else { format!("{cause}; driver stderr: {stderr}") }
        }
    };
    if trap == Some(Trap::Interrupt) || hit == Some(LimitHit::Timeout) {
        return (ErrorKind::Timeout, timed_out(state.deadline, limits.timeout));
    }
    if let Err(e) = &outcome
        && e.chain().any(|c| matches!(c.downcast_ref::<ResourceTableError>(), Some(ResourceTableError::Full)))
    {
        return (
            ErrorKind::HandleLimit,
            format!(
                "held more handles than a driver may: {} host handles (--driver-handles) and {} WASI streams and \
                 pollables",
                limits.handles,
                super::WASI_HANDLES
            ),
        );
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
        Err(e) if trap == Some(Trap::StackOverflow) || overran_shadow_stack(trap, &e) => {
            (ErrorKind::Crashed, format!("crashed: stack overflow (it recursed too deeply): {detail}"))
        }
        Err(_) => (ErrorKind::Crashed, format!("crashed: {detail}")),
    }
}

/// The time-limit message, honest about how long the operation ran: past the deadline only when
/// the host was busy on the driver's behalf when the limit passed.
fn timed_out(deadline: Instant, timeout: Duration) -> String {
    let late = Instant::now().saturating_duration_since(deadline);
    if late < Duration::from_secs(1) {
        format!("stopped at its time limit of {timeout:?} (--driver-timeout)")
    } else {
        format!(
            "ran {:.1?}, past its time limit of {timeout:?} (--driver-timeout): the host was still working on its \
             behalf when the limit passed, and stopped it at its next call",
            timeout + late
        )
    }
}

/// Rust and C guests keep a stack of their own in linear memory, which wraps below address 0
/// when it overflows: the next access traps as out of bounds, which wasmtime cannot tell from
/// any other bad access. Inside a recursion (one function in `RECURSION` frames of the trap's
/// backtrace), it is taken for what it almost always is.
fn overran_shadow_stack(trap: Option<Trap>, e: &wasmtime::Error) -> bool {
    const RECURSION: usize = 8;
    let Some(backtrace) = e.downcast_ref::<WasmBacktrace>() else { return false };
    if trap != Some(Trap::MemoryOutOfBounds) {
        return false;
    }
    let mut calls: HashMap<(Option<&str>, u32), usize> = HashMap::new();
    for frame in backtrace.frames() {
        *calls.entry((frame.module().name(), frame.func_index())).or_default() += 1;
    }
    calls.values().any(|&n| n >= RECURSION)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_limit_message_says_how_long_the_operation_really_ran() {
        let limit = Duration::from_secs(2);
        let on_time = timed_out(Instant::now(), limit);
        assert_eq!(on_time, "stopped at its time limit of 2s (--driver-timeout)");
        let late = timed_out(Instant::now() - Duration::from_secs(598), limit);
        assert!(late.starts_with("ran 600.0s, past its time limit of 2s (--driver-timeout)"), "{late}");
    }
}
