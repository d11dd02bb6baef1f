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
use crate::driver::{Driver, Drivers, Events, ImageState, Origin, Phase, declared};
use crate::images::{check_pinned, driver_image, expected_size, ready};
use crate::oci::Layout;
use crate::opened::{Form, Opened};
use crate::registry::{Deferred, Registry};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct ExportOptions {
    pub output: PathBuf,
    /// Replace `output` if it exists; without it an existing file is refused, as skopeo does.
    pub force: bool,
    /// Images walked, and registry blobs fetched, at once.
    pub jobs: usize,
    /// gzip or zstd level; `None` picks the format's fast default (stored blocks for gzip).
    pub level: Option<u32>,
    /// Where the phases, each image's state and the bytes as they move are reported.
    pub events: Arc<dyn Events>,
}

/// What was exported.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportReport {
    pub output: PathBuf,
    pub images: Vec<ExportedImage>,
    pub bytes: u64,
}

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
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

    let out_dir = crate::files::parent_of(&options.output);
    if !out_dir.is_dir() {
        bail!("cannot write {}: the directory {} does not exist", options.output.display(), out_dir.display());
    }
    match std::fs::symlink_metadata(&options.output) {
        Ok(m) if m.is_dir() => bail!("{} is a directory; -o names the thick bundle's file", options.output.display()),
        Ok(_) if !options.force => {
            bail!("{} exists; pass --force to replace it", options.output.display())
        }
        _ => {}
    }
    let staging = crate::cleanup::TempDir::new_in(out_dir, ".ferry-export-")?;
    let downloads = staging.path().join("downloads");
    std::fs::create_dir(&downloads)?;

    // Every image needs a driver before anything is fetched: CNAB allows no silent skip.
    let mut work: Vec<(String, &ImageSpec, &Driver, Origin)> = Vec::new();
    for (key, spec) in bundle.all_images() {
        let image_type = spec.image_type();
        let driver = drivers.require(&key, &spec.image, &image_type)?;
        work.push((key.clone(), spec, driver, opened.origin(&key, spec, registry, &downloads)?));
    }

    let events = options.events.as_ref();
    let total = if events.wants_totals() {
        events.phase(Phase::Planning, None);
        let sizes =
            crate::parallel::try_map(&work, options.jobs, |(_, spec, _, origin)| Ok(expected_size(spec, origin)))?;
        sizes.into_iter().sum::<Option<u64>>()
    } else {
        None
    };
    events.phase(Phase::Fetching, total);
    let store = Arc::new(Layout::create(&staging.path().join("layout"))?);
    let deferred = Arc::new(Deferred::default());
    let roots = crate::parallel::try_map(&work, options.jobs, |(key, spec, driver, origin)| {
        events.image(key, ImageState::Working);
        let fetched = ready(key, spec, origin, registry)
            .and_then(|()| Ok(driver.fetch_deferring(&driver_image(key, spec), origin, &store, &deferred)?));
        events.image(key, if fetched.is_ok() { ImageState::Done } else { ImageState::Failed });
        fetched
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
    // Registry blobs are fetched while the archive is written: they count towards its size.
    let fetched_while_writing: u64 = deferred.all().keys().filter_map(|d| deferred.size(d)).sum();
    events.phase(Phase::WritingArchive, Some(directory_size(&staging.path().join("layout")) + fetched_while_writing));
    let bytes = watching_growth(&written, events, || {
        archive::write(&written, compression, bundle.bytes(), b"{}", &store, &deferred, options.jobs)
    })?;
    // A bundle written over an existing one keeps that file's mode, as files::persist would.
    if let Ok(existing) = std::fs::metadata(&options.output) {
        std::fs::set_permissions(&written, existing.permissions())?;
    }
    std::fs::rename(&written, &options.output).with_context(|| format!("writing {}", options.output.display()))?;
    Ok(ExportReport { output: options.output.clone(), images, bytes })
}

/// The bytes of the files in `dir` and below.
fn directory_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => directory_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// Runs `write`, telling `events` how `file` grows meanwhile: the archive writer is left as it
/// is, and its progress is the length of what it has written (compressed, for a compressed
/// archive; stored gzip and tar are about the layout's size).
fn watching_growth<T>(file: &Path, events: &dyn Events, write: impl FnOnce() -> T) -> T {
    let (done, wake) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut seen = 0;
            loop {
                let finished = !matches!(
                    wake.recv_timeout(std::time::Duration::from_millis(200)),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                );
                let length = std::fs::metadata(file).map(|m| m.len()).unwrap_or(seen);
                events.transferred(length.saturating_sub(seen));
                seen = seen.max(length);
                if finished {
                    return;
                }
            }
        });
        let result = write();
        drop(done);
        result
    })
}
