//! Compiled components, cached in a directory that only ferry writes.
//!
//! A `.cwasm` is native code: loading one that came from anywhere else would run whatever it
//! contains outside the sandbox. So the only precompiled bytes ferry ever loads are the ones it
//! wrote here itself, named by the sha256 of the component they were compiled from and the
//! engine's compatibility hash.

use super::component::VerifiedComponent;
use anyhow::{Context, Result};
use sha2::{Digest as _, Sha256};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

pub struct ComponentCache {
    /// `None` when the operator has no cache directory: every load compiles.
    dir: Option<PathBuf>,
    engine_key: String,
}

impl ComponentCache {
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hex::encode(&hasher.0.finalize()[..8]);
        ComponentCache { dir: dir.map(|d| d.join("components")), engine_key }
    }

    /// Where the compiled form of `component` lives.
    pub fn path_for(&self, component: &VerifiedComponent) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        Some(dir.join(&self.engine_key).join(format!("{}.cwasm", component.digest().hex())))
    }

    /// The compiled component: from the cache when it is there, else compiled and stored.
    pub fn load(&self, engine: &Engine, component: &VerifiedComponent) -> Result<Component> {
        let Some(path) = self.path_for(component) else {
            return component.compile(engine);
        };
        if path.exists() {
            // SAFETY: the file is in ferry's own cache, written by `store` below from a
            // component whose digest names the file, for an engine with this compatibility hash.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(compiled) => return Ok(compiled),
                // A truncated or stale entry: compile again and replace it.
                Err(_) => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let compiled = component.compile(engine)?;
        if let Err(e) = store(&path, &compiled) {
            eprintln!("ferry: warning: cannot cache the compiled component in {}: {e:#}", path.display());
        }
        Ok(compiled)
    }
}

fn store(path: &Path, compiled: &Component) -> Result<()> {
    let dir = path.parent().context("cache path has no parent")?;
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(&compiled.serialize()?)?;
    tmp.persist(path)?;
    Ok(())
}

/// Feeds `Hash` input into sha256: a stable key, unlike `DefaultHasher`.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        unreachable!("only the full sha256 is used")
    }
}
