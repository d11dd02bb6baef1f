//! A guest's stdout or stderr: every write handed to a [`Sink`] that decides what becomes of
//! it (kept in memory up to a cap for a driver, streamed to the operator within a budget for an
//! installer). A sink that refuses ends the guest.

use std::sync::{Arc, Mutex};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// Where a guest's output goes.
pub trait Sink: Send + Sync + 'static {
    fn take(&self, bytes: &[u8]) -> Result<(), LimitReached>;
}

/// A sink's refusal: the write traps, ending the guest.
#[derive(Debug)]
pub struct LimitReached;

/// A guest's stdout or stderr, writing to its sink.
pub struct Pipe<S>(Arc<S>);

impl<S> Clone for Pipe<S> {
    fn clone(&self) -> Self {
        Pipe(self.0.clone())
    }
}

impl<S: Sink> Pipe<S> {
    pub fn new(sink: S) -> Self {
        Pipe(Arc::new(sink))
    }
}

/// Keeps the first `cap` bytes and quietly drops the rest, so a chatty driver neither fills
/// ferry's memory nor fails on a full pipe.
pub struct Capped {
    buffer: Mutex<Vec<u8>>,
    cap: usize,
}

pub type CappedPipe = Pipe<Capped>;

impl Pipe<Capped> {
    pub fn capped(cap: u64) -> Self {
        Pipe::new(Capped { buffer: Mutex::default(), cap: usize::try_from(cap).unwrap_or(usize::MAX) })
    }

    /// The last lines kept, at most `max` bytes, for an error message.
    pub fn tail(&self, max: usize) -> String {
        let buffer = self.0.buffer.lock().unwrap();
        let text = String::from_utf8_lossy(&buffer);
        let text = text.trim_end();
        let start = text.len().saturating_sub(max);
        let start = (start..text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
        text[start..].to_owned()
    }
}

impl Sink for Capped {
    fn take(&self, bytes: &[u8]) -> Result<(), LimitReached> {
        let mut buffer = self.buffer.lock().unwrap();
        let room = self.cap.saturating_sub(buffer.len());
        buffer.extend_from_slice(&bytes[..bytes.len().min(room)]);
        Ok(())
    }
}

impl<S: Sink> IsTerminal for Pipe<S> {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl<S: Sink> StdoutStream for Pipe<S> {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl<S: Sink> Pollable for Pipe<S> {
    async fn ready(&mut self) {}
}

impl<S: Sink> OutputStream for Pipe<S> {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.0
            .take(&bytes)
            .map_err(|LimitReached| StreamError::Trap(wasmtime::Error::msg("the guest's output limit was reached")))
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 << 10)
    }
}

impl<S: Sink> tokio::io::AsyncWrite for Pipe<S> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let taken =
            self.0.take(buf).map(|()| buf.len()).map_err(|LimitReached| std::io::ErrorKind::QuotaExceeded.into());
        std::task::Poll::Ready(taken)
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
