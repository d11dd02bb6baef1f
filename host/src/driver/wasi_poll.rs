//! `wasi:io/poll` with the operation's deadline: every WASI wait (a `std::thread::sleep`, a
//! `subscribe-duration` then `poll` or `block`) ends when the driver's time limit does.
//!
//! wasmtime-wasi's synchronous bindings block the thread until the pollable is ready, and the
//! epoch interrupt only reaches guest code, so a driver asleep in WASI would outlive any limit.
//! Here the same wait runs under a timeout at the deadline; when the timeout wins, the limit is
//! recorded (the error names it) and the call traps. The other WASI streams a driver gets (a
//! closed stdin, capped stdout and stderr) are always ready, so their blocking calls never wait.

use super::sandbox::{HostState, LimitHit};
use std::future::Future;
use std::time::Instant;
use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::io::poll as waits;
use wasmtime_wasi::p2::bindings::sync::io::poll;
use wasmtime_wasi::runtime::in_tokio;

/// What `wasi:io/poll` works on: the store's table, and the deadline to wait no longer than.
pub struct DeadlinePoll<'a> {
    table: &'a mut ResourceTable,
    deadline: Instant,
    hit: &'a mut Option<LimitHit>,
}

pub struct WithDeadline;

impl HasData for WithDeadline {
    type Data<'a> = DeadlinePoll<'a>;
}

pub fn view(state: &mut HostState) -> DeadlinePoll<'_> {
    DeadlinePoll { table: &mut state.table, deadline: state.deadline, hit: &mut state.hit }
}

/// Runs `wait` until it ends or the deadline passes, whichever is first.
fn until<T>(
    deadline: Instant,
    hit: &mut Option<LimitHit>,
    wait: impl Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    let deadline = tokio::time::Instant::from_std(deadline);
    match in_tokio(async { tokio::time::timeout_at(deadline, wait).await }) {
        Ok(outcome) => outcome,
        Err(_elapsed) => {
            *hit = Some(LimitHit::Timeout);
            Err(wasmtime::Error::msg("the driver's time limit passed while it waited in WASI"))
        }
    }
}

impl poll::Host for DeadlinePoll<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        until(self.deadline, self.hit, waits::Host::poll(self.table, pollables))
    }
}

impl poll::HostPollable for DeadlinePoll<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        in_tokio(waits::HostPollable::ready(self.table, pollable))
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        until(self.deadline, self.hit, waits::HostPollable::block(self.table, pollable))
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        waits::HostPollable::drop(self.table, pollable)
    }
}
