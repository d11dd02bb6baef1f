//! `ferry relocate`: a thick bundle's images pushed into the operator's registry through their
//! drivers, and the CNAB relocation mapping that tells the invocation image where they went.
//!
//! Naming (docs/relocation.md): an image `REGISTRY/PATH:TAG@DIGEST` goes to
//! `PREFIX/PATH`, keeping its tag and digest. Two images that would land on the same name with
//! different content are refused before anything is pushed.

use crate::bundle::{ImageSpec, Location};
use crate::driver::{DestinationGrant, Drivers, ImageState, Origin, Phase, Tally};
use crate::images::{Roots, check_pinned, driver_image, parse_mapping, ready};
use crate::mapping::RelocationMapping;
use crate::oci::{Layout, REF_NAME, Stored, is_document};
use crate::opened::{Form, Opened};
use crate::registry::Registry;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod plan;

pub use plan::{Destination, Destinations, Target};

pub struct RelocateOptions {
    /// Where images go: `--to` and `--map`, parsed.
    pub destinations: Destinations,
    /// Blob uploads at once.
    pub jobs: usize,
    /// Where temporary files go (beside the mapping that will be written).
    pub scratch: PathBuf,
    /// Relocate the other images when one fails (the relocation still fails as a whole).
    pub keep_going: bool,
    /// Where the phases, each image's state and the bytes as they move are reported.
    pub events: Arc<dyn crate::driver::Events>,
}

/// What `--dry-run` reports for an image.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Planned {
    pub key: String,
    pub original: String,
    /// The reference the real run would write in the mapping, pinned by digest.
    pub destination: String,
    /// Blobs (and files) the relocation puts at the destination.
    pub blobs: u64,
    /// Of those, the ones the destination holds already.
    pub present: u64,
    /// Bytes of the blobs the destination lacks.
    pub bytes_to_send: u64,
}

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Relocated {
    pub key: String,
    pub original: String,
    pub relocated: String,
}

/// The bundle's images stored (a thick bundle opened in place, or a bundle.json's images fetched
/// into a staging layout) and every image matched to its driver, stored root and target.
struct Prepared<'d> {
    layout: Arc<dyn Stored>,
    _staging: Option<crate::cleanup::TempDir>,
    steps: Vec<Step<'d>>,
    /// The bytes of every image's stored blobs: what a relocation into an empty destination
    /// moves, give or take what drivers reframe.
    total: u64,
}

struct Step<'d> {
    key: String,
    driver: &'d crate::driver::Driver<'d>,
    name: String,
    target: Target,
}

/// Reads a `--map` file: a JSON object from original reference or image key to destination.
pub fn read_map(path: &Path) -> Result<BTreeMap<String, String>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    crate::bundle::json::from_slice_strict(&bytes).with_context(|| {
        format!("{}: expected a JSON object from image reference or key to REGISTRY/REPOSITORY", path.display())
    })
}

/// What a target grants the image's driver: a directory, or repositories under a registry prefix.
fn grant(destination: &Destination, registry: &Arc<Registry>, jobs: usize) -> DestinationGrant {
    match destination {
        Destination::Directory(path) => DestinationGrant::directory(path.clone()),
        Destination::Registry(prefix) => DestinationGrant::registry(registry.clone(), prefix.clone(), jobs),
    }
}

fn prepare<'d>(
    opened: &Opened,
    drivers: &'d Drivers<'d>,
    registry: &Arc<Registry>,
    options: &RelocateOptions,
) -> Result<Prepared<'d>> {
    let bundle = &opened.bundle;
    let (layout, relocation_mapping, staging) = match &opened.form {
        Form::Json | Form::Published(_) => {
            options.events.phase(Phase::Fetching, None);
            let (layout, staging) = fetch_thin(opened, drivers, registry, options.jobs, &options.scratch)?;
            (layout, None, Some(staging))
        }
        Form::Thick(stored) => (stored.clone() as Arc<dyn Stored>, stored.relocation_mapping.clone(), None),
    };
    let index = layout.entries()?;
    let relocation_mapping = parse_mapping(relocation_mapping.as_deref())?;
    let roots = Roots::new(&index, relocation_mapping.as_ref());

    // The whole plan first: a driver for every image, its stored root, and a free target name.
    let images = bundle.all_images();
    let mut found = Vec::new();
    for (key, spec) in &images {
        let driver = drivers.require(key, &spec.image, &spec.image_type())?;
        let root = roots
            .find(&spec.image, spec.content_digest.as_deref())
            .with_context(|| format!("image {key} ({}) is not in the bundle's layout", spec.image))?;
        let name =
            root.annotations.get(REF_NAME).cloned().with_context(|| {
                format!("image {key}: its layout entry {} has no {REF_NAME} annotation", root.digest)
            })?;
        found.push((driver, name, root.clone()));
    }
    let planned: Vec<plan::Image> = images
        .iter()
        .zip(&found)
        .map(|((key, spec), (_, _, root))| plan::Image {
            key,
            reference: &spec.image,
            location: spec.location(),
            digest: &root.digest,
        })
        .collect();
    let targets = plan::plan(&bundle.doc.name, &planned, &options.destinations)?;
    drop(planned);
    let mut total = 0;
    for (_, _, root) in &found {
        total += layout.graph(root)?.iter().filter(|d| !is_document(&d.media_type)).map(|d| d.size).sum::<u64>();
    }
    let steps = images
        .iter()
        .zip(found)
        .zip(targets)
        .map(|(((key, _), (driver, name, _)), target)| Step { key: key.clone(), driver, name, target })
        .collect();
    Ok(Prepared { layout, _staging: staging, steps, total })
}

/// A bundle.json's images fetched through their drivers into a staging layout (removed with the
/// returned directory). Blobs of registry images are noted where they came from, so that a
/// destination in the same registry mounts them rather than receiving them again.
fn fetch_thin(
    opened: &Opened,
    drivers: &Drivers,
    registry: &Arc<Registry>,
    jobs: usize,
    staging_parent: &Path,
) -> Result<(Arc<dyn Stored>, crate::cleanup::TempDir)> {
    let bundle = &opened.bundle;
    let staging = crate::cleanup::TempDir::new_in(staging_parent, ".ferry-relocate-")?;
    let layout = Arc::new(Layout::create(&staging.path().join("layout"))?);
    let downloads = staging.path().join("downloads");
    std::fs::create_dir(&downloads)?;
    let images = bundle.all_images();
    crate::parallel::try_map(&images, jobs, |(key, spec)| {
        let driver = drivers.require(key, &spec.image, &spec.image_type())?;
        let origin = opened.origin(key, spec, registry, &downloads)?;
        ready(key, spec, &origin, registry)?;
        let root = driver.fetch(&driver_image(key, spec), &origin, &layout)?;
        check_pinned(key, spec, &root)?;
        if let Origin::Registry { reference, .. } = &origin
            && let Some(parsed) = crate::reference::parse(reference)
        {
            for blob in layout.graph(&root)? {
                registry.note_holder(parsed.resolve_registry(), &blob.digest, parsed.repository());
            }
        }
        Ok(())
    })?;
    Ok((layout, staging))
}

/// What a relocation would send, and where, without sending or writing anything: every driver
/// relocates as in the real run, into destinations that answer what they hold and count what
/// they would take, so the prediction has the real run's artifacts and digests.
pub fn dry_run(
    opened: &Opened,
    drivers: &Drivers,
    registry: &Arc<Registry>,
    options: &RelocateOptions,
) -> Result<Vec<Planned>> {
    let prepared = prepare(opened, drivers, registry, options)?;
    let outcomes = drive(opened, &prepared, registry, options, true)?;
    let failures = failures(&outcomes);
    if !failures.is_empty() {
        bail!("{} of {} images could not be relocated:\n{}", failures.len(), outcomes.len(), failures.join("\n"));
    }
    Ok(outcomes
        .into_iter()
        .filter_map(Result::ok)
        .map(|(r, tally)| Planned {
            key: r.key,
            original: r.original,
            destination: r.relocated,
            blobs: tally.blobs(),
            present: tally.present(),
            bytes_to_send: tally.bytes_to_send(),
        })
        .collect())
}

/// One image's relocation, or with --keep-going, why it failed.
type Outcome = std::result::Result<(Relocated, Arc<Tally>), String>;

/// Every image through its driver; drivers that rewrite references to other images (a chart's
/// values) go last, handed the mapping of all the others. With `dry_run` the destinations only
/// count what they would take. With --keep-going a failure is kept as a message and the other
/// images go on.
fn drive(
    opened: &Opened,
    prepared: &Prepared,
    registry: &Arc<Registry>,
    options: &RelocateOptions,
    dry_run: bool,
) -> Result<Vec<Outcome>> {
    let specs: BTreeMap<String, &ImageSpec> = opened.bundle.all_images().into_iter().collect();
    let (readers, others): (Vec<&Step>, Vec<&Step>) =
        prepared.steps.iter().partition(|s| s.driver.info().reads_mapping);
    let run = |steps: &[&Step], mapping: &[(String, String)]| {
        crate::parallel::try_map(steps, options.jobs, |step| {
            let spec = specs[&step.key];
            let stored = Origin::Layout { layout: prepared.layout.clone(), name: step.name.clone() };
            let tally = Arc::new(Tally::default());
            let mut grant = grant(&step.target.destination, registry, options.jobs);
            if dry_run {
                grant = grant.dry_run(tally.clone());
            }
            let mut image = driver_image(&step.key, spec);
            if options.destinations.by_digest && spec.location() == Location::Registry {
                // Drivers keep the tag an image's reference has: without one, they push by digest.
                image.reference = untagged(&image.reference);
            }
            let events = options.events.as_ref();
            if !dry_run {
                events.image(&step.key, ImageState::Working);
            }
            let relocated = step.driver.relocate(&image, &stored, &grant, &step.target.repository, mapping);
            if !dry_run {
                events.image(&step.key, if relocated.is_ok() { ImageState::Done } else { ImageState::Failed });
            }
            match relocated {
                Ok(reference) => Ok(Ok((
                    Relocated { key: step.key.clone(), original: spec.image.clone(), relocated: pin(&reference) },
                    tally,
                ))),
                Err(e) if options.keep_going => Ok(Err(e.to_string())),
                Err(e) => Err(e.into()),
            }
        })
    };
    let mut outcomes = run(&others, &[])?;
    if !readers.is_empty() {
        let mapping: Vec<(String, String)> =
            outcomes.iter().flatten().map(|(r, _)| (r.original.clone(), r.relocated.clone())).collect();
        outcomes.extend(run(&readers, &mapping)?);
    }
    Ok(outcomes)
}

/// The failures among `outcomes`, indented.
fn failures(outcomes: &[Outcome]) -> Vec<String> {
    outcomes.iter().filter_map(|o| o.as_ref().err()).map(|f| format!("  {f}")).collect()
}

/// Relocates every image; on success, what went where and the CNAB relocation mapping (original
/// reference → relocated reference, pinned by digest) for the caller to write.
pub fn relocate(
    opened: &Opened,
    drivers: &Drivers,
    registry: &Arc<Registry>,
    options: &RelocateOptions,
) -> Result<(Vec<Relocated>, RelocationMapping)> {
    let prepared = prepare(opened, drivers, registry, options)?;
    options.events.phase(Phase::Copying, Some(prepared.total));
    let outcomes = drive(opened, &prepared, registry, options, false)?;
    let failures = failures(&outcomes);
    if !failures.is_empty() {
        // With --keep-going, what did go through is named too: a rerun sends only the rest.
        let done: Vec<String> =
            outcomes.iter().flatten().map(|(r, _)| format!("  {} -> {}", r.key, r.relocated)).collect();
        let done = if done.is_empty() { String::new() } else { format!("\nrelocated:\n{}", done.join("\n")) };
        bail!(
            "{} of {} images were not relocated; no relocation mapping was written:\n{}{done}",
            failures.len(),
            outcomes.len(),
            failures.join("\n"),
        );
    }
    let relocated: Vec<Relocated> = outcomes.into_iter().filter_map(Result::ok).map(|(r, _)| r).collect();
    let mapping = RelocationMapping::from_pairs(relocated.iter().map(|r| (r.original.clone(), r.relocated.clone())));
    Ok((relocated, mapping))
}

/// The mapping pins by digest: `host/repo:tag@digest` → `host/repo@digest` (the tag, if any,
/// was pushed too).
fn pin(reference: &str) -> String {
    match reference.split_once('@') {
        Some((name, digest)) => format!("{}@{digest}", strip_tag(name)),
        None => reference.to_owned(),
    }
}

/// `host/repo:tag@digest` → `host/repo@digest`; `host/repo:tag` → `host/repo`.
fn untagged(reference: &str) -> String {
    match reference.split_once('@') {
        Some((name, digest)) => format!("{}@{digest}", strip_tag(name)),
        None => strip_tag(reference).to_owned(),
    }
}

/// `host:port/repo:tag` → `host:port/repo` (a colon in the last path segment is a tag).
fn strip_tag(name: &str) -> &str {
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    }
}
