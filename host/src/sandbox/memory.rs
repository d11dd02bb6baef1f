//! The memory a guest's store may use.

use wasmtime::ResourceLimiter;

/// Caps linear memory summed over every memory of the store (`StoreLimits` only caps each
/// memory on its own), and instances, tables and memories by count.
pub struct Budget {
    limit: usize,
    used: usize,
    exceeded: bool,
}

impl Budget {
    pub fn new(limit: u64) -> Self {
        Budget { limit: usize::try_from(limit).unwrap_or(usize::MAX), used: 0, exceeded: false }
    }

    /// Whether the guest asked for more than the limit (and was refused).
    pub fn exceeded(&self) -> bool {
        self.exceeded
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
