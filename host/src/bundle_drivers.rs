//! The drivers a command uses for one bundle: the built-in ones, plus those the bundle ships,
//! read from a thick bundle's layout or, for a bundle.json, from where its author put them.

use crate::bundle::{Bundle, Problem, Rule, key};
use crate::driver::{Declared, Drivers, MAX_DRIVER, Policy, Runtime, WASM_LAYER, assign, declared};
use crate::oci::Stored;
use crate::oci::{Descriptor, Digest};
use crate::opened::{Form, Opened};
use crate::registry::Registry;
use anyhow::{Context, Result, bail};
use std::io::Read;
use std::path::Path;

/// Where a bundle's drivers come from: an opened bundle, and the registry a bundle.json's
/// drivers may be pulled from.
pub struct Source<'a> {
    pub opened: &'a Opened,
    pub registry: &'a Registry,
}

impl Source<'_> {
    /// The bytes of a declared driver, at most [`MAX_DRIVER`] of them. Their digest is checked
    /// by whoever compiles or stores them.
    pub fn component(&self, d: &Declared) -> Result<Vec<u8>> {
        let what = || format!("bundle driver {:?}", d.name);
        match (&self.opened.form, &d.path, &d.reference) {
            (Form::Thick(stored), _, _) => stored
                .read_blob(&d.digest(), MAX_DRIVER)
                .with_context(|| format!("{}: not in {}", what(), self.opened.path.display())),
            (Form::Json, Some(relative), _) => {
                let dir = self.opened.dir();
                if !crate::files::stays_inside(Path::new(relative)) {
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
                // Mostly a rebuilt driver that was not declared again: say how to.
                let digest = Digest::of(&bytes);
                if digest != d.digest() {
                    bail!(
                        "{}: digest mismatch: bundle.json pins {}, {} is {digest}; if you rebuilt it, pin the new \
                         build with `ferry driver add {} {}` (or `ferry driver add --from-build {} BUILT.wasm`)",
                        what(),
                        d.digest,
                        file.display(),
                        self.opened.path.display(),
                        file.display(),
                        self.opened.path.display(),
                    );
                }
                Ok(bytes)
            }
            (Form::Published(published), _, _) => {
                let reference = published.driver(&d.name)?;
                pull(self.registry, &reference, &d.digest()).with_context(|| format!("{}: {reference}", what()))
            }
            (Form::Json, None, Some(reference)) => {
                pull(self.registry, reference, &d.digest()).with_context(|| format!("{}: {reference}", what()))
            }
            (Form::Json, None, None) => unreachable!("declared() requires a path or a reference"),
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
    let declared = declared(&source.opened.bundle)?;
    drivers.add_shipped(runtime, &declared, policy, |d| source.component(d))?;
    Ok(drivers)
}

/// A warning for every image whose `imageType` no driver would handle: not `builtin`, and not
/// one the bundle declares a driver for (as `policy` allows). Told from bundle.json alone: the
/// drivers the bundle ships are not read or run, their declared image types are taken as given.
pub fn unhandled_images(bundle: &Bundle, builtin: &Drivers, policy: &Policy) -> Vec<Problem> {
    // A declaration ferry cannot read is ferry's business, not the spec's: a warning here,
    // refused by the commands that would load the drivers.
    let declared = match declared(bundle) {
        Ok(declared) => declared,
        Err(e) => {
            return vec![Problem {
                path: format!("$.custom{}", key(crate::driver::EXTENSION)),
                rule: Rule::NoDriver,
                message: format!("the drivers the bundle ships cannot be read, so no image can use them: {e:#}"),
            }];
        }
    };
    let shipped: Vec<String> = assign(&declared, |t| builtin.for_type(t).is_some(), policy).concat();
    let mut warnings = Vec::new();
    for (index, (name, spec)) in bundle.all_images().into_iter().enumerate() {
        let image_type = spec.image_type();
        if builtin.for_type(&image_type).is_some() || shipped.contains(&image_type) {
            continue;
        }
        let at = match index.checked_sub(bundle.doc.invocation_images.len()) {
            None => format!("$.invocationImages[{index}]"),
            Some(_) => format!("$.images{}", key(&name)),
        };
        let refused = declared.iter().find(|d| d.image_types.iter().any(|t| t.eq_ignore_ascii_case(&image_type)));
        let why = match refused {
            Some(d) if policy.refuse_all => {
                format!("the bundle ships driver {:?} for it, and --no-bundle-drivers refuses it", d.name)
            }
            _ => "no built-in driver handles it and the bundle ships none for it".to_owned(),
        };
        warnings.push(Problem {
            path: format!("{at}.imageType"),
            rule: Rule::NoDriver,
            message: format!("imageType {image_type:?}: {why}; exporting or relocating the bundle would fail"),
        });
    }
    warnings
}
