//! `ferry export`: every image of a bundle, fetched through its driver into one thick bundle.
//!
//! Each image's driver walks it into a staging OCI layout beside the output: its documents and
//! the blobs of files and URLs are stored there; its registry blobs are only named (see
//! [`Deferred`]). Then one archive is written (bundle.json first, relocation-mapping.json second,
//! then the layout, blobs by digest), the named blobs fetched in parallel straight into it, to a
//! temporary file that is renamed into place only when complete and every blob matched its
//! digest: a failed export leaves nothing that looks finished.

use crate::archive::{self, Compression};
use crate::bundle::ImageSpec;
use crate::bundle_drivers::Source;
use crate::driver::{Driver, Drivers, Origin, declared};
use crate::images::{check_pinned, driver_image, origin, ready};
use crate::oci::Layout;
use crate::opened::{Form, Opened};
use crate::registry::{Deferred, Registry};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::sync::Arc;

pub struct ExportOptions {
    pub output: PathBuf,
    /// Images walked, and registry blobs fetched, at once.
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

pub fn export(
    opened: &Opened,
    drivers: &Drivers,
    registry: &Arc<Registry>,
    options: &ExportOptions,
) -> Result<ExportReport> {
    if let Form::Thick(_) = opened.form {
        bail!("{} is a thick bundle already; export takes its bundle.json", opened.path.display());
    }
    let bundle = &opened.bundle;
    let compression = Compression::from_name(&options.output, options.level)?;
    let bundle_dir = opened.dir();

    let out_dir = crate::files::parent_of(&options.output);
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
    let deferred = Arc::new(Deferred::default());
    let roots = crate::parallel::try_map(&work, options.jobs, |(key, spec, driver, origin)| {
        ready(key, spec, origin, registry.stall_timeout())?;
        Ok(driver.fetch_deferring(&driver_image(key, spec), origin, &store, &deferred)?)
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
    let source = Source { opened, registry };
    for declared in declared(bundle)? {
        declared
            .store(&store, &source.component(&declared)?)
            .with_context(|| format!("bundle driver {:?}", declared.name))?;
    }

    // Written inside the staging directory, so that an interrupted export leaves no partial
    // archive behind, then moved into place.
    let written = staging.path().join("archive");
    let bytes = archive::write(&written, compression, bundle.bytes(), b"{}", &store, &deferred, options.jobs)?;
    // A bundle written over an existing one keeps that file's mode, as files::persist would.
    if let Ok(existing) = std::fs::metadata(&options.output) {
        std::fs::set_permissions(&written, existing.permissions())?;
    }
    std::fs::rename(&written, &options.output).with_context(|| format!("writing {}", options.output.display()))?;
    Ok(ExportReport { output: options.output.clone(), images, bytes })
}
