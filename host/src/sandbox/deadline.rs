//! `wasi:io/poll` with the guest's deadline: every WASI wait (a `std::thread::sleep`, a
//! `subscribe-duration` then `poll` or `block`, a socket read) ends when the guest's time limit
//! does, or when the operator cancels the run.
//!
//! wasmtime-wasi's synchronous bindings block the thread until the pollable is ready, and the
//! epoch interrupt only reaches guest code, so a guest asleep in WASI would outlive any limit.
//! Here the same wait runs under a timeout at the deadline; when the timeout (or a cancel)
//! wins, why is recorded (the error names it) and the call traps.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::io::poll as waits;
use wasmtime_wasi::p2::bindings::sync::io::poll;
use wasmtime_wasi::runtime::in_tokio;

/// Why a wait was cut short.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    Timeout,
    Canceled,
}

/// How often a wait looks at the cancel flag.
const CANCEL_CHECK: Duration = Duration::from_millis(50);

/// What `wasi:io/poll` works on: the store's table, the deadline, and where to say why a wait
/// was cut short.
pub struct Wait<'a> {
    pub table: &'a mut ResourceTable,
    pub deadline: Instant,
    pub canceled: Option<Arc<AtomicBool>>,
    pub stopped: &'a mut Option<Stop>,
}

/// Store data whose guest's WASI waits end at its deadline.
pub trait Waits: Send + 'static {
    fn waits(&mut self) -> Wait<'_>;
}

pub struct WithDeadline;

impl HasData for WithDeadline {
    type Data<'a> = Wait<'a>;
}

/// Runs `wait` until it ends, the deadline passes or the run is canceled; `stopped` says which
/// cut it short.
fn until<T>(
    deadline: Instant,
    canceled: Option<Arc<AtomicBool>>,
    stopped: &mut Option<Stop>,
    wait: impl Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    let deadline = tokio::time::Instant::from_std(deadline);
    let outcome = in_tokio(async move {
        let mut wait = std::pin::pin!(wait);
        loop {
            let slice = match &canceled {
                Some(_) => deadline.min(tokio::time::Instant::now() + CANCEL_CHECK),
                None => deadline,
            };
            match tokio::time::timeout_at(slice, &mut wait).await {
                Ok(outcome) => return Ok(outcome),
                Err(_) if canceled.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) => {
                    return Err(Stop::Canceled);
                }
                Err(_) if tokio::time::Instant::now() >= deadline => return Err(Stop::Timeout),
                Err(_) => {}
            }
        }
    });
    outcome.unwrap_or_else(|stop| {
        *stopped = Some(stop);
        Err(wasmtime::Error::msg(match stop {
            Stop::Timeout => "the time limit passed while the guest waited in WASI",
            Stop::Canceled => "the run was canceled while the guest waited in WASI",
        }))
    })
}

impl poll::Host for Wait<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        until(self.deadline, self.canceled.clone(), self.stopped, waits::Host::poll(self.table, pollables))
    }
}

impl poll::HostPollable for Wait<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        in_tokio(waits::HostPollable::ready(self.table, pollable))
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        until(self.deadline, self.canceled.clone(), self.stopped, waits::HostPollable::block(self.table, pollable))
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        waits::HostPollable::drop(self.table, pollable)
    }
}
