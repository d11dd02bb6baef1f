//! A driver's log lines for one operation, on their way to the operator: escaped, and bounded by
//! the same `--driver-output` budget as its stdout and stderr. Past the budget, lines are only
//! counted; one line at the end of the operation says how many were dropped.

use super::{Events, Level};
use crate::untrusted::escape;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a line costs beyond its own bytes: the prefix ferry prints before it. An empty line is
/// not free.
const LINE_OVERHEAD: u64 = 64;

pub struct OperationLog {
    inner: Arc<dyn Events>,
    budget: u64,
    spent: AtomicU64,
    dropped: AtomicU64,
}

impl OperationLog {
    pub fn new(inner: Arc<dyn Events>, budget: u64) -> Self {
        OperationLog { inner, budget, spent: AtomicU64::new(0), dropped: AtomicU64::new(0) }
    }

    /// Says how many lines were dropped, if any; called once the operation is over.
    pub fn finish(&self, driver: &str) {
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let message = format!(
                "{dropped} more log lines dropped: a driver's lines in one operation are capped at {} bytes \
                 (--driver-output, {LINE_OVERHEAD} bytes per line included)",
                self.budget
            );
            self.inner.log(&escape(driver), Level::Warn, &message);
        }
    }

    pub fn log(&self, driver: &str, level: Level, message: &str) {
        let cost = message.len() as u64 + LINE_OVERHEAD;
        let spent = self.spent.fetch_add(cost, Ordering::Relaxed).saturating_add(cost);
        if spent > self.budget {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.inner.log(&escape(driver), level, &escape(message));
    }

    pub fn progress(&self, driver: &str, done: u64, total: Option<u64>) {
        self.inner.progress(driver, done, total);
    }

    pub fn transferred(&self, bytes: u64) {
        self.inner.transferred(bytes);
    }

    pub fn skipped(&self, bytes: u64, mounted: bool) {
        self.inner.skipped(bytes, mounted);
    }

    /// The operator's events, for the host to report on the driver's behalf.
    pub fn events(&self) -> &dyn Events {
        self.inner.as_ref()
    }
}
