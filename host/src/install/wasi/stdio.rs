//! An installer's stdout and stderr, streamed to the operator as they are written, within one
//! byte budget for both: past it the run ends, naming `--installer-output`, rather than filling
//! the operator's terminal or log without end.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// The budget both streams share, and whether it ran out.
pub struct Budget {
    limit: u64,
    spent: AtomicU64,
    pub exceeded: AtomicBool,
}

impl Budget {
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(Budget { limit, spent: AtomicU64::new(0), exceeded: AtomicBool::new(false) })
    }
}

#[derive(Clone, Copy)]
pub enum Which {
    Stdout,
    Stderr,
}

#[derive(Clone)]
pub struct Live {
    which: Which,
    budget: Arc<Budget>,
}

impl Live {
    pub fn new(which: Which, budget: &Arc<Budget>) -> Self {
        Live { which, budget: budget.clone() }
    }

    fn write_bytes(&self, bytes: &[u8]) -> Result<(), ()> {
        let n = bytes.len() as u64;
        if self.budget.spent.fetch_add(n, Ordering::Relaxed) + n > self.budget.limit {
            self.budget.exceeded.store(true, Ordering::Relaxed);
            return Err(());
        }
        // The operator's own terminal or pipe going away is not the installer's failure.
        let _ = match self.which {
            Which::Stdout => std::io::stdout().write_all(bytes).and_then(|()| std::io::stdout().flush()),
            Which::Stderr => std::io::stderr().write_all(bytes),
        };
        Ok(())
    }
}

impl IsTerminal for Live {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Live {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Live {
    async fn ready(&mut self) {}
}

impl OutputStream for Live {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes)
            .map_err(|()| StreamError::Trap(wasmtime::Error::msg("the installer's output limit was reached")))
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 << 10)
    }
}

impl tokio::io::AsyncWrite for Live {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let written = self.write_bytes(buf).map(|()| buf.len()).map_err(|()| std::io::ErrorKind::QuotaExceeded.into());
        std::task::Poll::Ready(written)
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
