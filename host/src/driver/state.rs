//! One driver operation's store data: what the operation is granted and what the host saw.

use super::grant::DestinationGrant;
use super::operation_log::OperationLog;
use crate::config::Limits;
use crate::oci;
use crate::sandbox::{Budget, Budgeted, CappedPipe, Stop, Wait, Waits};
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// A limit a driver ran into, remembered so that the error names it even when the guest
/// reports the failure in its own words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitHit {
    Memory,
    Timeout,
    CallBytes { call: &'static str, bytes: u64 },
    Handles,
}

/// Everything a driver's store holds. Nothing is inherited from ferry's own process: no
/// environment, arguments, directories or sockets; only the handles this operation grants.
pub struct HostState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) budget: Budget,
    pub(super) limits: Limits,
    pub(super) deadline: Instant,
    pub(super) hit: Option<LimitHit>,
    /// Set when a WASI wait ran into the deadline.
    pub(super) stopped: Option<Stop>,
    /// Host handles the guest holds now.
    pub(super) handles: u32,
    pub(super) grant: Option<DestinationGrant>,
    pub(super) driver: String,
    pub(super) events: Arc<OperationLog>,
    pub(super) stderr: CappedPipe,
    /// Registry blobs downloaded for this operation (to list or open a tar), by digest: a
    /// driver that lists a layer and then opens a file in it downloads the layer once.
    pub(super) downloads: std::collections::HashMap<crate::oci::Digest, crate::oci::BlobFile>,
    /// The references the host returned for what it wrote into the grant in this operation: the
    /// only ones a `relocate` may return.
    pub(super) written: Vec<String>,
    /// The root the driver recorded with `store.set-root`: the only one a `fetch` may return.
    pub(super) recorded_root: Option<oci::Descriptor>,
}

impl HostState {
    /// Remembers `reference` as one the host wrote, and returns it.
    pub(super) fn wrote(&mut self, reference: String) -> String {
        self.written.push(reference.clone());
        reference
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl Budgeted for HostState {
    fn budget(&mut self) -> &mut Budget {
        &mut self.budget
    }
}

impl Waits for HostState {
    fn waits(&mut self) -> Wait<'_> {
        Wait { table: &mut self.table, deadline: self.deadline, canceled: None, stopped: &mut self.stopped }
    }
}
