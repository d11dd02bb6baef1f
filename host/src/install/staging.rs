//! Getting the invocation image into the engine, and the bundle's other images where the run
//! tool can reach them (docs/installing.md):
//!
//! - with a relocation mapping, the invocation image comes from its relocated reference, and the
//!   mapping goes to /cnab/app/relocation-mapping.json as it is;
//! - a thick bundle with no mapping (a site with no registry) has every image relocated through
//!   its driver into a directory, as `relocate --to file://` does; the invocation image is loaded
//!   from there and the others are placed at /cnab/app/artifacts, with a mapping whose values are
//!   their paths in the container;
//! - a bundle.json with no mapping runs its invocation image from where the bundle names it.
//!
//! The invocation image always goes through ferry (its driver, ferry's registry access and
//! checks) and is loaded into the engine by the config digest it was checked against, so the
//! engine needs no access to any registry and runs exactly what bundle.json pins.

use crate::bundle::ImageSpec;
use crate::cleanup::TempDir;
use crate::driver::Drivers;
use crate::images::{check_pinned, driver_image, origin, ready};
use crate::mapping::RelocationMapping;
use crate::oci::{Descriptor, Digest, Layout, REF_NAME, Stored};
use crate::opened::{Form, Opened};
use crate::registry::Registry;
use crate::relocate::{self, Destinations, RelocateOptions};
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the run tool finds the bundle's other images when ferry placed them.
pub const ARTIFACTS: &str = "/cnab/app/artifacts";

pub struct Staged {
    /// The layout holding the invocation image alone, ready for the engine.
    pub layout: PathBuf,
    /// The image's ID once loaded: its config's digest.
    pub image_id: String,
    /// Images placed at /cnab/app/artifacts.
    pub artifacts: Option<PathBuf>,
    /// /cnab/app/relocation-mapping.json.
    pub mapping: Option<Vec<u8>>,
    _dir: TempDir,
}

/// The invocation image a container engine can run: the first of `oci` or `docker` type.
pub fn invocation_image(opened: &Opened) -> Result<(String, &ImageSpec)> {
    opened
        .bundle
        .doc
        .invocation_images
        .iter()
        .enumerate()
        .find(|(_, spec)| matches!(spec.image_type().as_str(), "oci" | "docker"))
        .map(|(i, spec)| (format!("invocationImages[{i}]"), spec))
        .with_context(|| {
            format!(
                "{}: bundle {} has no invocation image a container engine can run (imageType oci or docker)",
                opened.path.display(),
                opened.bundle.doc.name
            )
        })
}

pub fn stage(
    opened: &Opened,
    drivers: &Drivers,
    registry: &Arc<Registry>,
    mapping: Option<&[u8]>,
    scratch: &Path,
    events: Arc<dyn crate::driver::Events>,
) -> Result<Staged> {
    let dir = TempDir::new_in(scratch, ".ferry-install-")?;
    let (key, spec) = invocation_image(opened)?;
    // A published bundle's images are where its index says: the mapping cnab-to-oci derives,
    // mounted for the invocation image as porter does.
    let published = match &opened.form {
        Form::Published(published) => Some(published.mapping.to_json()),
        Form::Json | Form::Thick(_) => None,
    };
    match (mapping.or(published.as_deref()), &opened.form) {
        (Some(bytes), _) => {
            let parsed = RelocationMapping::from_bytes(bytes).context("the relocation mapping")?;
            let Some(relocated) = parsed.get(&spec.image) else {
                bail!("the relocation mapping has no entry for the invocation image {}", spec.image);
            };
            let relocated = ImageSpec { image: relocated.to_owned(), ..spec.clone() };
            let layout = fetch(opened, drivers, registry, &key, spec, &relocated, dir.path())?;
            finish(layout, None, Some(bytes.to_vec()), dir)
        }
        (None, Form::Thick(_)) => {
            let artifacts = dir.path().join("artifacts");
            let options = RelocateOptions {
                destinations: Destinations::parse(Some(&format!("file://{}", artifacts.display())), &BTreeMap::new())?,
                jobs: 4,
                scratch: dir.path().to_owned(),
                keep_going: false,
                events,
            };
            let (relocated, _) = relocate::relocate(opened, drivers, registry, &options)
                .context("placing the bundle's images in a directory for the invocation image")?;
            let mut inside = BTreeMap::new();
            let mut layout = None;
            for r in relocated {
                let path = PathBuf::from(r.relocated.split('@').next().unwrap_or_default());
                if r.key == key {
                    layout = Some(path);
                    continue;
                }
                let relative = path.strip_prefix(&artifacts).with_context(|| {
                    format!("image {} was placed at {}, outside {}", r.key, path.display(), artifacts.display())
                })?;
                let at = format!("{ARTIFACTS}/{}", relative.display());
                inside.insert(r.original, r.relocated.replacen(&path.display().to_string(), &at, 1));
            }
            let layout = layout.context("the invocation image was not placed with the others")?;
            // The engine receives the invocation image on its own; the run tool gets the rest.
            let moved = dir.path().join("invocation");
            std::fs::rename(&layout, &moved)?;
            let mapping = RelocationMapping::from_pairs(inside).to_json();
            finish(moved, Some(artifacts), Some(mapping), dir)
        }
        (None, Form::Json | Form::Published(_)) => {
            let layout = fetch(opened, drivers, registry, &key, spec, spec, dir.path())?;
            finish(layout, None, None, dir)
        }
    }
}

/// The invocation image fetched through its driver from `from` (the bundle's reference, or the
/// relocated one) into a layout of its own, checked against what bundle.json pins.
fn fetch(
    opened: &Opened,
    drivers: &Drivers,
    registry: &Arc<Registry>,
    key: &str,
    spec: &ImageSpec,
    from: &ImageSpec,
    dir: &Path,
) -> Result<PathBuf> {
    let driver = drivers.require(key, &spec.image, &spec.image_type())?;
    let origin = origin(key, from, opened.dir(), registry, dir)?;
    ready(key, from, &origin, registry)?;
    let path = dir.join("invocation");
    let layout = Arc::new(Layout::create(&path)?);
    let mut image = driver_image(key, spec);
    image.reference = from.image.clone();
    let root = driver.fetch(&image, &origin, &layout)?;
    check_pinned(key, spec, &root)?;
    Ok(path)
}

fn finish(layout: PathBuf, artifacts: Option<PathBuf>, mapping: Option<Vec<u8>>, dir: TempDir) -> Result<Staged> {
    let image_id = single_image(&layout)?;
    Ok(Staged { layout, image_id, artifacts, mapping, _dir: dir })
}

/// Leaves the layout's index naming one image manifest, this platform's when the image is an
/// index of several, and returns its config digest: the ID the engine will know it by.
fn single_image(path: &Path) -> Result<String> {
    let layout = Layout::open(path)?;
    let entries = layout.index()?;
    let [root] = entries.as_slice() else {
        bail!("{} holds {} images, not one", path.display(), entries.len());
    };
    let manifest = match root.media_type.as_str() {
        crate::oci::media_types::OCI_INDEX | crate::oci::media_types::DOCKER_LIST => {
            let index: serde_json::Value = serde_json::from_slice(&read(&layout, &root.digest)?)?;
            let arch = match std::env::consts::ARCH {
                "x86_64" => "amd64",
                "aarch64" => "arm64",
                other => other,
            };
            let chosen = index["manifests"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| m["platform"]["os"] == "linux" && m["platform"]["architecture"] == arch)
                .with_context(|| format!("the invocation image has no linux/{arch} manifest"))?;
            let mut descriptor: Descriptor = serde_json::from_value(chosen.clone())?;
            descriptor.annotations.extend(root.annotations.get(REF_NAME).map(|n| (REF_NAME.to_owned(), n.clone())));
            std::fs::write(
                path.join("index.json"),
                serde_json::to_vec(&serde_json::json!({
                    "schemaVersion": 2,
                    "mediaType": crate::oci::media_types::OCI_INDEX,
                    "manifests": [descriptor],
                }))?,
            )?;
            descriptor
        }
        _ => root.clone(),
    };
    let document: serde_json::Value = serde_json::from_slice(&read(&layout, &manifest.digest)?)?;
    let config = document["config"]["digest"].as_str().context("the invocation image's manifest has no config")?;
    Ok(config.to_owned())
}

fn read(layout: &Layout, digest: &Digest) -> Result<Vec<u8>> {
    let blob = layout.blob(digest)?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(blob.reader(), crate::oci::MAX_DOCUMENT), &mut bytes)?;
    Ok(bytes)
}
