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
use crate::images::{Roots, check_pinned, driver_image, origin, parse_mapping, ready};
use crate::mapping::RelocationMapping;
use crate::oci::{Descriptor, Digest, Layout, REF_NAME, Stored};
use crate::opened::{Form, Opened};
use crate::registry::Registry;
use crate::relocate::{self, Destinations, RelocateOptions};
use crate::sandbox::VerifiedComponent;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the run tool finds the bundle's other images when ferry placed them.
pub const ARTIFACTS: &str = "/cnab/app/artifacts";

pub struct Staged {
    pub invocation: Invocation,
    /// Images placed at /cnab/app/artifacts.
    pub artifacts: Option<PathBuf>,
    /// /cnab/app/relocation-mapping.json.
    pub mapping: Option<Vec<u8>>,
    _dir: TempDir,
}

/// The invocation image ready for what runs it.
pub enum Invocation {
    /// For a container engine: a layout holding the image alone, and the ID the engine will
    /// know it by once loaded, its config's digest.
    Container { layout: PathBuf, image_id: String },
    /// For the WASI executor: the component, its bytes checked against the stored layer digest.
    Component(VerifiedComponent),
}

/// The image types ferry can run as an invocation image.
const RUNNABLE: [&str; 3] = ["oci", "docker", "wasm"];

/// The invocation image ferry runs: the first one of a type it can run, a container image
/// (`oci`, `docker`) on a container engine or a WebAssembly component (`wasm`) in its own
/// sandbox.
pub fn invocation_image(opened: &Opened) -> Result<(String, &ImageSpec)> {
    opened
        .bundle
        .doc
        .invocation_images
        .iter()
        .enumerate()
        .find(|(_, spec)| RUNNABLE.contains(&spec.image_type().as_str()))
        .map(|(i, spec)| (format!("invocationImages[{i}]"), spec))
        .with_context(|| {
            format!(
                "{}: bundle {} has no invocation image ferry can run (imageType oci or docker on a container \
                 engine, wasm in ferry's sandbox)",
                opened.path.display(),
                opened.bundle.doc.name
            )
        })
}

/// Whether the invocation image ferry runs is a WebAssembly component.
pub fn is_component(spec: &ImageSpec) -> bool {
    spec.image_type() == "wasm"
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
            finish(spec, layout, None, Some(bytes.to_vec()), dir)
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
            let mapping = RelocationMapping::from_pairs(inside).to_json();
            if is_component(spec) {
                // The component is read from the thick bundle itself, where its digest pins it;
                // the installer does not need a copy of itself among the artifacts.
                // A driver writes a component into a directory as a file in its target directory.
                let placed = if layout.is_file() { crate::files::parent_of(&layout) } else { layout.as_path() };
                if !placed.starts_with(&artifacts) || placed == artifacts {
                    bail!("the invocation image was placed at {}, outside its own directory", layout.display());
                }
                std::fs::remove_dir_all(placed)?;
                let stored = opened.thick()?;
                let index = stored.entries()?;
                let carried = parse_mapping(stored.relocation_mapping.as_deref())?;
                let root = Roots::new(&index, carried.as_ref())
                    .find(&spec.image, spec.content_digest.as_deref())
                    .with_context(|| format!("the invocation image {} is not in the bundle's layout", spec.image))?
                    .clone();
                let component = component(stored.as_ref(), &root)?;
                return Ok(Staged {
                    invocation: Invocation::Component(component),
                    artifacts: Some(artifacts),
                    mapping: Some(mapping),
                    _dir: dir,
                });
            }
            // The engine receives the invocation image on its own; the run tool gets the rest.
            let moved = dir.path().join("invocation");
            std::fs::rename(&layout, &moved)?;
            finish(spec, moved, Some(artifacts), Some(mapping), dir)
        }
        (None, Form::Json | Form::Published(_)) => {
            let layout = fetch(opened, drivers, registry, &key, spec, spec, dir.path())?;
            finish(spec, layout, None, None, dir)
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

fn finish(
    spec: &ImageSpec,
    layout: PathBuf,
    artifacts: Option<PathBuf>,
    mapping: Option<Vec<u8>>,
    dir: TempDir,
) -> Result<Staged> {
    let invocation = if is_component(spec) {
        let stored = Layout::open(&layout)?;
        let [root] = stored
            .index()?
            .try_into()
            .map_err(|_| anyhow::anyhow!("{} holds more than one image", layout.display()))?;
        Invocation::Component(component(&stored, &root)?)
    } else {
        let image_id = single_image(&layout)?;
        Invocation::Container { layout, image_id }
    };
    Ok(Staged { invocation, artifacts, mapping, _dir: dir })
}

/// The component a Wasm OCI artifact holds: its one `application/wasm` layer, read whole (at
/// most [`MAX_INSTALLER`](crate::install::wasi::MAX_INSTALLER) bytes) and checked against the
/// layer's digest before anything compiles it.
fn component(stored: &dyn Stored, root: &Descriptor) -> Result<VerifiedComponent> {
    let manifest: serde_json::Value =
        serde_json::from_slice(&stored.read_blob(&root.digest, crate::oci::MAX_DOCUMENT)?)
            .with_context(|| format!("the invocation image's manifest {}", root.digest))?;
    let layers: Vec<Descriptor> = serde_json::from_value(manifest["layers"].clone())
        .with_context(|| format!("the invocation image's manifest {} lists no layers", root.digest))?;
    let [layer] = layers.as_slice() else {
        bail!("the invocation image {} has {} layers; a WebAssembly installer has one", root.digest, layers.len());
    };
    if layer.media_type != crate::oci::media_types::WASM_LAYER {
        bail!(
            "the invocation image {}'s layer is {}, not {}",
            root.digest,
            layer.media_type,
            crate::oci::media_types::WASM_LAYER
        );
    }
    let bytes = stored.read_blob(&layer.digest, crate::install::wasi::MAX_INSTALLER)?;
    VerifiedComponent::pinned(bytes, &layer.digest)
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
