//! The drivers a command uses for one bundle: the built-in ones, plus those the bundle ships,
//! read from a thick bundle's layout or, for a bundle.json, from where its author put them.

use crate::archive;
use crate::bundle::Bundle;
use crate::driver::{Declared, Drivers, MAX_DRIVER, Policy, Runtime, WASM_LAYER, declared};
use crate::oci::{Descriptor, Digest};
use crate::registry::Registry;
use anyhow::{Context, Result, bail};
use std::io::Read;
use std::path::{Component, Path};

/// A bundle as a command is given it.
pub enum Source<'a> {
    /// A bundle.json, whose drivers are files beside it or Wasm OCI artifacts in a registry.
    Json { path: &'a Path, registry: &'a Registry },
    /// A thick bundle, whose drivers are in its layout.
    Thick(&'a Path),
}

impl Source<'_> {
    /// A bundle.json or a thick bundle, told by the file's first bytes.
    pub fn of<'a>(path: &'a Path, registry: &'a Registry) -> Result<Source<'a>> {
        Ok(if Bundle::is_json_file(path)? { Source::Json { path, registry } } else { Source::Thick(path) })
    }

    fn bundle(&self) -> Result<Bundle> {
        match self {
            Source::Json { path, .. } => Bundle::read(path),
            Source::Thick(path) => {
                Bundle::from_bytes(archive::bundle_json(path)?, &format!("{}: bundle.json", path.display()))
            }
        }
    }

    /// The bytes of a declared driver, at most [`MAX_DRIVER`] of them. Their digest is checked
    /// by whoever compiles or stores them.
    pub fn component(&self, d: &Declared) -> Result<Vec<u8>> {
        let what = || format!("bundle driver {:?}", d.name);
        match (self, &d.path, &d.reference) {
            (Source::Thick(path), _, _) => archive::read_blob(path, &d.digest(), MAX_DRIVER)
                .with_context(|| format!("{}: not in {}", what(), path.display())),
            (Source::Json { path, .. }, Some(relative), _) => {
                let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
                if !Path::new(relative).components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
                    bail!("{}: path {relative:?} must stay inside {}", what(), dir.display());
                }
                let file = dir.join(relative);
                let mut bytes = Vec::new();
                // Beneath the bundle's directory: a link that leads out of it is refused.
                cap_std::fs::Dir::open_ambient_dir(dir, cap_std::ambient_authority())
                    .and_then(|d| d.open(relative))
                    .map(|f| f.into_std())
                    .with_context(|| {
                        format!(
                            "{}: {} (opened inside {}, links that lead out refused)",
                            what(),
                            file.display(),
                            dir.display()
                        )
                    })?
                    .take(MAX_DRIVER + 1)
                    .read_to_end(&mut bytes)?;
                if bytes.len() as u64 > MAX_DRIVER {
                    bail!("{}: {} is larger than {MAX_DRIVER} bytes", what(), file.display());
                }
                Ok(bytes)
            }
            (Source::Json { registry, .. }, None, Some(reference)) => {
                pull(registry, reference, &d.digest()).with_context(|| format!("{}: {reference}", what()))
            }
            (Source::Json { .. }, None, None) => unreachable!("declared() requires a path or a reference"),
        }
    }
}

/// The component layer of a Wasm OCI artifact.
fn pull(registry: &Registry, reference: &str, digest: &Digest) -> Result<Vec<u8>> {
    let parsed = crate::reference::parse(reference).context("not an image reference")?;
    let (manifest, _, _) = registry.manifest(&parsed, None)?;
    #[derive(serde::Deserialize)]
    struct Manifest {
        layers: Vec<Descriptor>,
    }
    let layers = serde_json::from_slice::<Manifest>(&manifest).context("not an OCI artifact manifest")?.layers;
    let layer = layers
        .iter()
        .find(|l| l.media_type == WASM_LAYER && l.digest == *digest)
        .with_context(|| format!("the artifact has no {WASM_LAYER} layer with digest {digest}"))?;
    if layer.size > MAX_DRIVER {
        bail!("the component is {} bytes, more than {MAX_DRIVER}", layer.size);
    }
    let mut bytes = Vec::new();
    registry.copy_blob(&parsed, digest, None, &mut bytes)?;
    Ok(bytes)
}

/// The built-in drivers plus the ones `source`'s bundle ships, as `policy` allows.
pub fn drivers<'rt>(runtime: &'rt Runtime, source: &Source, policy: &Policy) -> Result<Drivers<'rt>> {
    let mut drivers = Drivers::builtin(runtime)?;
    let declared = declared(&source.bundle()?)?;
    drivers.add_shipped(runtime, &declared, policy, |d| source.component(d))?;
    Ok(drivers)
}
