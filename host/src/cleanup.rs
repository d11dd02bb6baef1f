//! Temporary directories that an interrupted command must not leave behind (a staging layout, a
//! decompressed bundle: gigabytes): each is registered while it exists, and on SIGINT or SIGTERM
//! every registered one is removed before ferry exits with the status a shell gives a process
//! the signal ended (130, 143).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

static REGISTERED: Mutex<BTreeMap<u64, PathBuf>> = Mutex::new(BTreeMap::new());

/// A temporary directory (removed when dropped), registered for removal on a signal meanwhile.
pub struct TempDir {
    /// Taken when dropped: removed before it is unregistered.
    dir: Option<tempfile::TempDir>,
    id: u64,
}

impl TempDir {
    /// A new directory in `parent` whose name starts with `prefix`.
    pub fn new_in(parent: &Path, prefix: &str) -> std::io::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        // Registered while still locked: a signal that comes during creation waits, then finds it.
        let mut registered = lock();
        let dir = tempfile::Builder::new().prefix(prefix).tempdir_in(parent)?;
        registered.insert(id, dir.path().to_owned());
        Ok(TempDir { dir: Some(dir), id })
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("present until dropped").path()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        drop(self.dir.take());
        lock().remove(&self.id);
    }
}

fn lock() -> std::sync::MutexGuard<'static, BTreeMap<u64, PathBuf>> {
    REGISTERED.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Set while an operation must end itself on a signal (a running invocation image: its container
/// stopped and its claim's result recorded): the first signal wakes it instead of ending ferry.
static HANDLER: Mutex<Option<std::sync::Arc<Interrupt>>> = Mutex::new(None);

#[derive(Default)]
struct Interrupt {
    notify: tokio::sync::Notify,
    raised: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// While this lives, the first SIGINT or SIGTERM wakes [`Interruptible::notify`] and raises
/// [`Interruptible::raised`] instead of ending ferry; a second one ends ferry as usual.
pub struct Interruptible(std::sync::Arc<Interrupt>);

impl Interruptible {
    pub fn new() -> Self {
        let interrupt = std::sync::Arc::new(Interrupt::default());
        *HANDLER.lock().unwrap_or_else(|p| p.into_inner()) = Some(interrupt.clone());
        Interruptible(interrupt)
    }

    /// Woken by the signal, for async waits.
    pub fn notify(&self) -> &tokio::sync::Notify {
        &self.0.notify
    }

    /// Raised by the signal, for loops that look.
    pub fn raised(&self) -> &std::sync::Arc<std::sync::atomic::AtomicBool> {
        &self.0.raised
    }
}

impl Default for Interruptible {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Interruptible {
    fn drop(&mut self) {
        HANDLER.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// From now on, SIGINT and SIGTERM remove every registered directory, then end the process.
pub fn remove_on_signals() -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new().name("ferry-signals".into()).spawn(move || {
        for signal in signals.forever() {
            if let Some(handler) = HANDLER.lock().unwrap_or_else(|p| p.into_inner()).take() {
                handler.raised.store(true, std::sync::atomic::Ordering::SeqCst);
                // notify_one keeps the wake-up for a waiter that has not started waiting yet.
                handler.notify.notify_one();
                continue;
            }
            // Held until the process ends: nothing new is registered, or unregistered, meanwhile.
            let registered = lock();
            for path in registered.values() {
                // Other threads go on writing until the exit: a file created between listing and
                // removing makes one pass fail, the next removes it.
                for _ in 0..3 {
                    if std::fs::remove_dir_all(path).is_ok() || !path.exists() {
                        break;
                    }
                }
            }
            std::process::exit(128 + signal);
        }
    })?;
    Ok(())
}
