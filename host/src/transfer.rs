//! What bounds every download from a server ferry does not control (a registry, a URL): a stall
//! timeout (no byte for that long ends it), the deadline of the driver operation it serves, and
//! a cap on the bytes it takes. A hostile server can make ferry wait, or read, only this much.

use std::future::Future;
use std::time::{Duration, Instant};

/// Default of `--stall-timeout`: how long a transfer may go without an answer or a byte.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a transfer may wait.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// No answer, and no byte of a body, for this long ends the transfer.
    pub stall: Duration,
    /// The deadline of the driver operation the transfer serves (`--driver-timeout`), if any.
    pub deadline: Option<Instant>,
}

/// Why a transfer ended early.
#[derive(Debug)]
pub enum Stop {
    /// Nothing came for the stall timeout.
    Stalled(Duration),
    /// The driver operation's deadline passed.
    Overdue,
    /// The body went past the cap (the cap given).
    TooLarge(u64),
    /// The connection broke, or the answer was not HTTP.
    Broken(reqwest::Error),
    /// What arrived could not be written.
    Sink(std::io::Error),
}

impl Stop {
    /// What happened, for a message about a transfer from `host`; the caller says what `TooLarge`'s cap is.
    pub fn describe(&self, host: &str) -> String {
        match self {
            Stop::Stalled(stall) => format!("{host} sent nothing for {}s (--stall-timeout)", stall.as_secs_f64()),
            Stop::Overdue => format!("the driver's time limit (--driver-timeout) passed while receiving from {host}"),
            Stop::TooLarge(max) => format!("{host} sent more than {max} bytes"),
            Stop::Broken(e) => format!("{host}: {e}"),
            Stop::Sink(e) => format!("writing what {host} sent: {e}"),
        }
    }
}

impl Pace {
    /// `step` (an answer's head, a body's next chunk), unless the stall timeout or the deadline
    /// comes first.
    pub async fn wait<T>(&self, step: impl Future<Output = T>) -> Result<T, Stop> {
        let (mut limit, mut stop) = (self.stall, Stop::Stalled(self.stall));
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left <= limit {
                (limit, stop) = (left, Stop::Overdue);
            }
        }
        tokio::time::timeout(limit, step).await.map_err(|_| stop)
    }

    /// Sends `request` and waits for the answer's head.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, Stop> {
        self.wait(request.send()).await?.map_err(Stop::Broken)
    }

    /// Passes `response`'s body to `sink` as it arrives; returns its length. Stops at the first
    /// chunk that takes it past `max` bytes, so a server that sends more is read only that far.
    pub async fn body(
        &self,
        mut response: reqwest::Response,
        max: u64,
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<u64, Stop> {
        let mut length = 0u64;
        while let Some(chunk) = self.wait(response.chunk()).await?.map_err(Stop::Broken)? {
            length += chunk.len() as u64;
            if length > max {
                return Err(Stop::TooLarge(max));
            }
            sink(&chunk).map_err(Stop::Sink)?;
        }
        Ok(length)
    }

    /// `response`'s whole body, at most `max` bytes of it.
    pub async fn bytes(&self, response: reqwest::Response, max: u64) -> Result<Vec<u8>, Stop> {
        let mut bytes = Vec::new();
        self.body(response, max, &mut |chunk| {
            bytes.extend_from_slice(chunk);
            Ok(())
        })
        .await?;
        Ok(bytes)
    }
}
