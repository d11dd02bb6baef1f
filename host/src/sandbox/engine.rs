//! The one wasmtime engine every guest shares, and the clock that interrupts runaway guests.

use std::time::Duration;
use wasmtime::{Config, Engine};

/// How often the epoch advances: the granularity of every guest's time limit.
pub const TICK: Duration = Duration::from_millis(10);

/// Builds the engine: Cranelift, the component model, epoch interruption and nothing else.
/// Functions compile one at a time: a bundle's component, however large, takes one core and
/// the memory of one function (whose size `VerifiedComponent::survey` caps), not the machine.
pub fn new_engine() -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.parallel_compilation(false);
    let engine = Engine::new(&config)?;
    spawn_ticker(&engine);
    Ok(engine)
}

/// Advances the engine's epoch every tick until the engine is dropped.
fn spawn_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("ferry-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        })
        .expect("spawning the epoch thread");
}

/// Ticks for a deadline `timeout` from now, at least one.
pub fn ticks(timeout: Duration) -> u64 {
    (timeout.as_millis() / TICK.as_millis()).max(1) as u64
}
