//! One driver operation's sandbox: the store data, the memory budget, and captured output.

use super::grant::DestinationGrant;
use super::operation_log::OperationLog;
use crate::config::Limits;
use crate::oci;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
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

/// Caps linear memory summed over every memory of the store (`StoreLimits` only caps each
/// memory on its own), and instances, tables and memories by count.
pub struct Budget {
    limit: usize,
    used: usize,
    pub(super) exceeded: bool,
}

impl Budget {
    pub fn new(limit: u64) -> Self {
        Budget { limit: usize::try_from(limit).unwrap_or(usize::MAX), used: 0, exceeded: false }
    }
}

impl ResourceLimiter for Budget {
    fn memory_growing(&mut self, current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.used - current + desired;
        if total > self.limit {
            self.exceeded = true;
            return Ok(false);
        }
        self.used = total;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }

    fn instances(&self) -> usize {
        64
    }
    fn tables(&self) -> usize {
        64
    }
    fn memories(&self) -> usize {
        16
    }
}

/// A stdout or stderr that keeps the first `cap` bytes and quietly drops the rest, so a chatty
/// driver neither fills ferry's memory nor fails on a full pipe.
#[derive(Clone)]
pub struct CappedPipe {
    buffer: Arc<Mutex<Vec<u8>>>,
    cap: usize,
}

impl CappedPipe {
    pub fn new(cap: u64) -> Self {
        CappedPipe { buffer: Arc::default(), cap: usize::try_from(cap).unwrap_or(usize::MAX) }
    }

    fn push(&self, bytes: &[u8]) {
        let mut buffer = self.buffer.lock().unwrap();
        let room = self.cap.saturating_sub(buffer.len());
        buffer.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// The last lines kept, at most `max` bytes, for an error message.
    pub fn tail(&self, max: usize) -> String {
        let buffer = self.buffer.lock().unwrap();
        let text = String::from_utf8_lossy(&buffer);
        let text = text.trim_end();
        let start = text.len().saturating_sub(max);
        let start = (start..text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
        text[start..].to_owned()
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedPipe {
    async fn ready(&mut self) {}
}

impl OutputStream for CappedPipe {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 << 10)
    }
}

impl tokio::io::AsyncWrite for CappedPipe {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
