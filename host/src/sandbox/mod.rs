//! The WebAssembly sandbox every guest of ferry runs in, whatever it is: image-type drivers
//! (`crate::driver`) and WASI installers (`crate::install::wasi`) both build on this, as Spin's
//! triggers build on its core. It holds what does not depend on the guest's world: the one
//! engine and its epoch clock, the compiled-component cache, the checks on component bytes
//! before they compile, the memory budget, capped output pipes and the deadline on WASI waits.
//! Each guest kind adds its own linker and store data.

mod cache;
mod component;
mod deadline;
mod engine;
mod memory;
mod pipe;
mod wasi;

pub use component::{MAX_FUNCTION, Shape, VerifiedComponent};
pub use deadline::{Stop, Wait, Waits, WithDeadline};
pub use engine::TICK;
pub use memory::Budget;
pub use pipe::{CappedPipe, LimitReached, Pipe, Sink};
pub use wasi::add_wasi;

use anyhow::Result;
use cache::ComponentCache;
use std::path::PathBuf;
use std::time::Duration;
use wasmtime::component::Component;
use wasmtime::{Engine, Store};

/// The engine and the compiled-component cache, shared by every guest of one ferry.
pub struct Sandbox {
    engine: Engine,
    cache: ComponentCache,
}

/// Store data that keeps a memory budget: every guest's store has one.
pub trait Budgeted: 'static {
    fn budget(&mut self) -> &mut Budget;
}

impl Sandbox {
    /// `cache_dir`: where compiled components are kept; `None` compiles every time.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self> {
        let engine = engine::new_engine()?;
        let cache = ComponentCache::new(&engine, cache_dir);
        Ok(Sandbox { engine, cache })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The compiled component, from the cache when it is there; call
    /// [`VerifiedComponent::survey`] first.
    pub fn compile(&self, component: &VerifiedComponent) -> Result<Component> {
        self.cache.load(&self.engine, component)
    }

    /// A store whose memory is held to `data`'s budget and whose guest code is interrupted
    /// `timeout` from now.
    pub fn store<T: Budgeted>(&self, data: T, timeout: Duration) -> Store<T> {
        let mut store = Store::new(&self.engine, data);
        store.limiter(|s| s.budget());
        store.set_epoch_deadline(engine::ticks(timeout));
        store
    }
}
