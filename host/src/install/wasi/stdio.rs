//! An installer's stdout and stderr, streamed to the operator as they are written, within one
//! byte budget for both: past it the run ends, naming `--installer-output`, rather than filling
//! the operator's terminal or log without end.

use crate::sandbox::{LimitReached, Pipe, Sink};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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

/// Where a stream of the installer goes on ferry's side.
#[derive(Clone, Copy)]
pub enum Which {
    Stdout,
    Stderr,
}

pub struct Live {
    which: Which,
    budget: Arc<Budget>,
}

pub fn live(which: Which, budget: &Arc<Budget>) -> Pipe<Live> {
    Pipe::new(Live { which, budget: budget.clone() })
}

impl Sink for Live {
    fn take(&self, bytes: &[u8]) -> Result<(), LimitReached> {
        let n = bytes.len() as u64;
        if self.budget.spent.fetch_add(n, Ordering::Relaxed) + n > self.budget.limit {
            self.budget.exceeded.store(true, Ordering::Relaxed);
            return Err(LimitReached);
        }
        // The operator's own terminal or pipe going away is not the installer's failure.
        let _ = match self.which {
            Which::Stdout => std::io::stdout().write_all(bytes).and_then(|()| std::io::stdout().flush()),
            Which::Stderr => std::io::stderr().write_all(bytes),
        };
        Ok(())
    }
}
