//! Deferred registry blobs fetched `jobs` at a time and handed to the archive writer in archive
//! order. Each fetch hashes its blob and queues its bytes, at most [`QUEUED`] of them: a fetch
//! that runs ahead of the writer waits (and its connection with it), so memory stays bounded
//! whatever the blobs' sizes. The writer takes a blob's last bytes only once they matched its
//! digest.

use crate::oci::{Digest, HashingWriter};
use crate::registry::{RegistryError, RegistryErrorKind, Remote};
use anyhow::{Result, bail};
use std::cell::Cell;
use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Bytes a fetch hands over at once.
pub const CHUNK: usize = 512 << 10;
/// Bytes one fetch may hold before the writer takes them.
const QUEUED: usize = 4 * CHUNK;

/// Fetches `blobs` (in archive order) `jobs` at a time while `write` takes them, in that order,
/// from the [`Ordered`] it is given.
pub fn run<R>(blobs: &[(Digest, Remote)], jobs: usize, write: impl FnOnce(&mut Ordered) -> Result<R>) -> Result<R> {
    let queues: Vec<Queue> = blobs.iter().map(|_| Queue::default()).collect();
    let spare = Spare::default();
    let next = AtomicUsize::new(0);
    // Once one blob failed for good, or the writer stopped, no fetch starts or retries.
    let stopped = AtomicBool::new(false);
    let failure: Mutex<Option<String>> = Mutex::default();
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, blobs.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= blobs.len() || stopped.load(Ordering::Relaxed) {
                        break;
                    }
                    let (digest, remote) = &blobs[i];
                    let fetched = fetch(digest, remote, &queues[i], &spare, &stopped)
                        .map_err(|e| format!("{}: {e:#}", remote.image));
                    if let Err(message) = &fetched {
                        failure.lock().unwrap().get_or_insert_with(|| message.clone());
                        stopped.store(true, Ordering::Relaxed);
                    }
                    queues[i].end(fetched);
                }
            });
        }
        let written = write(&mut Ordered { blobs, queues: &queues, spare: &spare, next: 0 });
        // A writer that stopped early leaves fetches waiting to queue bytes: free them.
        stopped.store(true, Ordering::Relaxed);
        for queue in &queues {
            queue.close();
        }
        // The blob that failed first says why, not one that was stopped because of it.
        match (written, failure.lock().unwrap().take()) {
            (Err(_), Some(first)) => Err(anyhow::anyhow!(first)),
            (written, _) => written,
        }
    })
}

/// One blob's bytes, from its fetch to the writer.
fn fetch(digest: &Digest, remote: &Remote, queue: &Queue, spare: &Spare, stopped: &AtomicBool) -> Result<()> {
    // The fetch's time limit counts waiting for the registry, not for the writer (which may be
    // compressing slowly).
    let (started, waited) = (Instant::now(), Cell::new(Duration::ZERO));
    let deadline = || started + remote.timeout + waited.get();
    let mut hashing = HashingWriter::new(Chunks { queue, spare, waited: &waited, chunk: spare.take() });
    let mut passed = 0;
    remote.registry.retry(|| {
        if stopped.load(Ordering::Relaxed) {
            return Err(RegistryError {
                kind: RegistryErrorKind::Failed,
                message: "stopped: the export failed".into(),
            });
        }
        remote.registry.stream_blob(&remote.reference, digest, &deadline, &mut passed, &mut |bytes| {
            (remote.progress)(bytes.len() as u64);
            hashing.write_all(bytes)
        })
    })?;
    let (actual, _, mut chunks) = hashing.finish();
    if actual != *digest {
        bail!(
            "blob {digest} of {}: {} sent content with digest {actual}",
            remote.reference.repository(),
            remote.reference.resolve_registry()
        );
    }
    chunks.flush()
}

/// Chunks the writer is done with, for the next bytes: fresh ones would each be mapped and
/// zeroed by the kernel again.
#[derive(Default)]
struct Spare(Mutex<Vec<Vec<u8>>>);

impl Spare {
    fn take(&self) -> Vec<u8> {
        self.0.lock().unwrap().pop().unwrap_or_else(|| Vec::with_capacity(CHUNK))
    }

    fn give(&self, mut chunk: Vec<u8>) {
        chunk.clear();
        self.0.lock().unwrap().push(chunk);
    }
}

/// Gathers what arrives into [`CHUNK`]-sized pieces for the queue.
struct Chunks<'q> {
    queue: &'q Queue,
    spare: &'q Spare,
    /// Time spent waiting for room in the queue.
    waited: &'q Cell<Duration>,
    chunk: Vec<u8>,
}

impl Chunks<'_> {
    fn push(&self, chunk: Vec<u8>) -> Result<()> {
        let since = Instant::now();
        let pushed = self.queue.push(chunk);
        self.waited.set(self.waited.get() + since.elapsed());
        pushed
    }

    fn flush(&mut self) -> Result<()> {
        if !self.chunk.is_empty() {
            let last = std::mem::take(&mut self.chunk);
            self.push(last)?;
        }
        Ok(())
    }
}

impl Write for Chunks<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(CHUNK - self.chunk.len());
        self.chunk.extend_from_slice(&buf[..n]);
        if self.chunk.len() == CHUNK {
            let full = std::mem::replace(&mut self.chunk, self.spare.take());
            self.push(full).map_err(io::Error::other)?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Default)]
struct Queue {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    chunks: VecDeque<Vec<u8>>,
    queued: usize,
    /// The fetch's verdict, once it is over.
    end: Option<Result<(), String>>,
    /// The writer stopped: nothing more is taken.
    closed: bool,
}

impl Queue {
    fn push(&self, chunk: Vec<u8>) -> Result<()> {
        let mut state = self.state.lock().unwrap();
        while state.queued >= QUEUED && !state.closed {
            state = self.changed.wait(state).unwrap();
        }
        if state.closed {
            bail!("the archive is no longer being written");
        }
        state.queued += chunk.len();
        state.chunks.push_back(chunk);
        self.changed.notify_all();
        Ok(())
    }

    fn end(&self, verdict: Result<(), String>) {
        self.state.lock().unwrap().end = Some(verdict);
        self.changed.notify_all();
    }

    fn close(&self) {
        self.state.lock().unwrap().closed = true;
        self.changed.notify_all();
    }

    /// The next chunk; `None` once the blob is complete and matched its digest.
    fn pop(&self) -> Result<Option<Vec<u8>>> {
        let mut state = self.state.lock().unwrap();
        loop {
            if let Some(chunk) = state.chunks.pop_front() {
                state.queued -= chunk.len();
                self.changed.notify_all();
                return Ok(Some(chunk));
            }
            match &state.end {
                Some(Ok(())) => return Ok(None),
                Some(Err(message)) => bail!("{message}"),
                None => state = self.changed.wait(state).unwrap(),
            }
        }
    }
}

/// The fetched blobs, taken in archive order.
pub struct Ordered<'a> {
    blobs: &'a [(Digest, Remote)],
    queues: &'a [Queue],
    spare: &'a Spare,
    next: usize,
}

impl Ordered<'_> {
    /// Writes the next blob, which must be `digest`, to `out`; returns its size.
    pub fn copy(&mut self, digest: &Digest, out: &mut dyn Write) -> Result<u64> {
        let (expected, remote) = &self.blobs[self.next];
        assert_eq!(expected, digest, "blobs taken out of archive order");
        let queue = &self.queues[self.next];
        self.next += 1;
        let mut written = 0u64;
        while let Some(chunk) = queue.pop()? {
            written += chunk.len() as u64;
            out.write_all(&chunk)?;
            self.spare.give(chunk);
        }
        if written != remote.size {
            bail!("blob {digest}: {written} bytes arrived, {} were declared", remote.size);
        }
        Ok(written)
    }
}
