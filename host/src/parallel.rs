//! Running per-image work a few at a time.

use anyhow::Result;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// `f` on every item, `jobs` at a time. After a failure no new item starts; the result is every
/// output in order, or the failure of the earliest item that failed.
pub fn try_map<T: Sync, R: Send>(items: &[T], jobs: usize, f: impl Fn(&T) -> Result<R> + Sync) -> Result<Vec<R>> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<R>>>> = Mutex::new(items.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, items.len().max(1)) {
            scope.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let result = f(item);
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    results.lock().unwrap()[i] = Some(result);
                }
            });
        }
    });
    // Items start in order, so an item that never ran comes after one that failed.
    let mut out = Vec::with_capacity(items.len());
    for result in results.into_inner().unwrap() {
        match result {
            Some(Ok(r)) => out.push(r),
            Some(Err(e)) => return Err(e),
            None => unreachable!("an item is skipped only after an earlier one failed"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_their_order_and_the_first_failure_wins() {
        let items: Vec<u32> = (0..20).collect();
        assert_eq!(try_map(&items, 3, |i| Ok(i * 2)).unwrap(), items.iter().map(|i| i * 2).collect::<Vec<_>>());
        let err = try_map(&items, 1, |i| if *i >= 5 { anyhow::bail!("item {i}") } else { Ok(*i) }).unwrap_err();
        assert_eq!(err.to_string(), "item 5");
    }
}
