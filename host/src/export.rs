//! `ferry export`: every image of a bundle, fetched through its driver into one thick bundle.
//!
//! Images are fetched into a staging OCI layout beside the output, then written as one archive
//! (bundle.json first, relocation-mapping.json second, then the layout) to a temporary file that
//! is renamed into place only when complete: a failed export leaves nothing that looks finished.

use crate::archive::{self, Compression};
use crate::bundle::{Bundle, ImageSpec, Location};
use crate::bundle_drivers::Source;
use crate::driver::{Driver, Drivers, Image, Origin, declared};
use crate::http::Expected;
use crate::oci::{Descriptor, Digest, Layout};
use crate::registry::Registry;
use anyhow::{Context, Result, bail};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub struct ExportOptions {
    pub output: PathBuf,
    /// Images fetched at once.
    pub jobs: usize,
    /// gzip or zstd level; `None` picks the format's fast default (stored blocks for gzip).
    pub level: Option<u32>,
}

/// What was exported.
#[derive(Debug, serde::Serialize)]
pub struct ExportReport {
    pub output: PathBuf,
    pub images: Vec<ExportedImage>,
    pub bytes: u64,
}

#[derive(Debug, serde::Serialize)]
pub struct ExportedImage {
    pub key: String,
    pub reference: String,
    pub image_type: String,
    pub driver: String,
    pub digest: String,
}

/// The image as drivers see it.
pub fn driver_image(key: &str, spec: &ImageSpec) -> Image {
    Image {
        key: key.to_owned(),
        reference: spec.image.clone(),
        image_type: spec.image_type(),
        media_type: spec.media_type.clone(),
        content_digest: spec.content_digest.clone(),
        size: spec.size,
        labels: spec.labels.clone().unwrap_or_default().into_iter().collect(),
    }
}

/// Where an image's bytes come from (docs/thick-bundles.md): a registry, an http(s) URL to be
/// downloaded into `scratch` (see [`ready`]), or a path relative to bundle.json that must stay
/// beside it.
pub(crate) fn origin(
    key: &str,
    spec: &ImageSpec,
    bundle_dir: &Path,
    registry: &Arc<Registry>,
    scratch: &Path,
) -> Result<Origin> {
    Ok(match spec.location() {
        Location::Registry => Origin::Registry { registry: registry.clone(), reference: spec.image.clone() },
        Location::Url => {
            let file: String = key.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
            Origin::Http { url: spec.image.clone(), download: scratch.join(format!("{file}.download")) }
        }
        Location::Path => {
            let relative = Path::new(&spec.image);
            if !relative.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
                bail!(
                    "image {key}: {:?} must be a path inside {} (no absolute paths, no ..)",
                    spec.image,
                    bundle_dir.display()
                );
            }
            Origin::File(bundle_dir.join(relative))
        }
    })
}

/// Makes an origin's bytes available: downloads an http(s) image, held to the `size` and
/// `contentDigest` bundle.json declares for it while it arrives (`stall`: --stall-timeout). A
/// file image must have the declared size; its driver checks its digest as it stores it.
pub(crate) fn ready(key: &str, spec: &ImageSpec, origin: &Origin, stall: Duration) -> Result<()> {
    match origin {
        Origin::Http { url, download } => {
            let digest = spec
                .content_digest
                .as_deref()
                .map(|d| d.parse::<Digest>().with_context(|| format!("image {key}: contentDigest {d:?}")))
                .transpose()?;
            let expected = Expected { size: spec.size, digest: digest.as_ref() };
            crate::http::download(url, download, expected, stall).with_context(|| format!("image {key}"))?;
        }
        Origin::File(path) => {
            let found = std::fs::metadata(path).ok().filter(|m| m.is_file()).map(|m| m.len());
            if let (Some(declared), Some(found)) = (spec.size, found)
                && declared != found
            {
                bail!("image {key} ({}): bundle.json says size {declared}, the file is {found} bytes", spec.image);
            }
        }
        Origin::Layout { .. } | Origin::Registry { .. } => {}
    }
    Ok(())
}

pub fn export(
    bundle_path: &Path,
    drivers: &Drivers,
    registry: &Arc<Registry>,
    options: &ExportOptions,
) -> Result<ExportReport> {
    let bundle = Bundle::read(bundle_path)?;
    let compression = Compression::from_name(&options.output, options.level)?;
    let bundle_dir = bundle_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));

    let out_dir = options.output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let staging = crate::cleanup::TempDir::new_in(out_dir, ".ferry-export-")?;
    let downloads = staging.path().join("downloads");
    std::fs::create_dir(&downloads)?;

    // Every image needs a driver before anything is fetched: CNAB allows no silent skip.
    let mut work: Vec<(String, &ImageSpec, &Driver, Origin)> = Vec::new();
    for (key, spec) in bundle.all_images() {
        let image_type = spec.image_type();
        let driver = drivers.require(&key, &spec.image, &image_type)?;
        work.push((key.clone(), spec, driver, origin(&key, spec, bundle_dir, registry, &downloads)?));
    }

    let store = Arc::new(Layout::create(&staging.path().join("layout"))?);
    let roots = crate::parallel::try_map(&work, options.jobs, |(key, spec, driver, origin)| {
        ready(key, spec, origin, registry.stall_timeout())?;
        Ok(driver.fetch(&driver_image(key, spec), origin, &store)?)
    })?;
    let mut images = Vec::new();
    for ((key, spec, driver, _), root) in work.iter().zip(roots) {
        check_pinned(key, spec, &root)?;
        images.push(ExportedImage {
            key: key.clone(),
            reference: spec.image.clone(),
            image_type: spec.image_type(),
            driver: driver.info().name.clone(),
            digest: root.digest.to_string(),
        });
    }

    // The drivers the bundle ships travel with it, checked against their pinned digests.
    let source = Source::Json { path: bundle_path, registry };
    for declared in declared(&bundle)? {
        declared
            .store(&store, &source.component(&declared)?)
            .with_context(|| format!("bundle driver {:?}", declared.name))?;
    }

    // Written inside the staging directory, so that an interrupted export leaves no partial
    // archive behind, then moved into place.
    let written = staging.path().join("archive");
    let bytes = archive::write(&written, compression, bundle.bytes(), b"{}", &store)?;
    // A bundle written over an existing one keeps that file's mode, as files::persist would.
    if let Ok(existing) = std::fs::metadata(&options.output) {
        std::fs::set_permissions(&written, existing.permissions())?;
    }
    std::fs::rename(&written, &options.output).with_context(|| format!("writing {}", options.output.display()))?;
    Ok(ExportReport { output: options.output.clone(), images, bytes })
}

/// Whether an image is stored as the manifest (or index) its reference names, so that the
/// stored root is what `contentDigest` and `size` pin: `oci` and `docker` images. Other drivers
/// may store a registry image under a manifest of their own (a containerDisk's disk, a tarball
/// artifact's layer) and check `contentDigest` themselves, as they do for files and URLs.
pub(crate) fn stored_as_named(spec: &ImageSpec) -> bool {
    matches!(spec.image_type().as_str(), "oci" | "docker")
}

/// bundle.json's `contentDigest` and `size` must describe the registry image fetched. For other
/// locations and image types they describe what only the image's driver knows: it checks them.
pub(crate) fn check_pinned(key: &str, spec: &ImageSpec, root: &Descriptor) -> Result<()> {
    if !stored_as_named(spec) {
        return Ok(());
    }
    if let Some(pinned) = &spec.content_digest
        && *pinned != root.digest.to_string()
    {
        bail!(
            "image {key} ({}): bundle.json says contentDigest {pinned}, but the image fetched is {}",
            spec.image,
            root.digest
        );
    }
    if let Some(size) = spec.size
        && size != root.size
    {
        bail!("image {key} ({}): bundle.json says size {size}, but its manifest is {} bytes", spec.image, root.size);
    }
    Ok(())
}
