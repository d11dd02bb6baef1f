//! `ferry relocate`: a thick bundle's images pushed into the operator's registry through their
//! drivers, and the CNAB relocation mapping that tells the invocation image where they went.
//!
//! Naming (docs/relocation.md): an image `REGISTRY/PATH:TAG@DIGEST` goes to
//! `PREFIX/PATH`, keeping its tag and digest. Two images that would land on the same name with
//! different content are refused before anything is pushed.

use crate::bundle::ImageSpec;
use crate::driver::{DestinationGrant, Drivers, Origin, repository_under};
use crate::images::{Roots, check_pinned, driver_image, origin, parse_mapping, ready};
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
}

/// What `--dry-run` reports for an image.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Planned {
    pub key: String,
    pub original: String,
    pub destination: String,
    pub blobs: usize,
    pub present: usize,
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
}

struct Step<'d> {
    key: String,
    driver: &'d crate::driver::Driver<'d>,
    name: String,
    root: crate::oci::Descriptor,
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
        Form::Json => {
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
    let steps = images
        .iter()
        .zip(found)
        .zip(targets)
        .map(|(((key, _), (driver, name, root)), target)| Step { key: key.clone(), driver, name, root, target })
        .collect();
    Ok(Prepared { layout, _staging: staging, steps })
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
    let (bundle, bundle_dir) = (&opened.bundle, opened.dir());
    let staging = crate::cleanup::TempDir::new_in(staging_parent, ".ferry-relocate-")?;
    let layout = Arc::new(Layout::create(&staging.path().join("layout"))?);
    let downloads = staging.path().join("downloads");
    std::fs::create_dir(&downloads)?;
    let images = bundle.all_images();
    crate::parallel::try_map(&images, jobs, |(key, spec)| {
        let driver = drivers.require(key, &spec.image, &spec.image_type())?;
        let origin = origin(key, spec, bundle_dir, registry, &downloads)?;
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

/// What a relocation would send, and where, without sending it.
pub fn dry_run(
    opened: &Opened,
    drivers: &Drivers,
    registry: &Arc<Registry>,
    options: &RelocateOptions,
) -> Result<Vec<Planned>> {
    let prepared = prepare(opened, drivers, registry, options)?;
    let specs: BTreeMap<String, &ImageSpec> = opened.bundle.all_images().into_iter().collect();
    prepared
        .steps
        .iter()
        .map(|step| {
            let blobs: Vec<_> =
                prepared.layout.graph(&step.root)?.into_iter().filter(|d| !is_document(&d.media_type)).collect();
            let target = &step.target;
            let tag = target.tag.as_deref().map(|t| format!(":{t}")).unwrap_or_default();
            let (mut present, mut bytes_to_send) = (0, 0);
            let destination = match &target.destination {
                Destination::Directory(dir) => {
                    bytes_to_send = blobs.iter().map(|b| b.size).sum();
                    format!("{}", dir.join(&target.repository).display())
                }
                Destination::Registry(prefix) => {
                    let at = repository_under(prefix, &target.repository);
                    for blob in &blobs {
                        if registry.has_blob(&at, &blob.digest, None)? {
                            present += 1;
                        } else {
                            bytes_to_send += blob.size;
                        }
                    }
                    format!("{}/{}{tag}@{}", at.registry(), at.repository(), step.root.digest)
                }
            };
            Ok(Planned {
                key: step.key.clone(),
                original: specs[&step.key].image.clone(),
                destination,
                blobs: blobs.len(),
                present,
                bytes_to_send,
            })
        })
        .collect()
}

/// Relocates every image; on success, what went where and the CNAB relocation mapping (original
/// reference → relocated reference, pinned by digest) for the caller to write.
pub fn relocate(
    opened: &Opened,
    drivers: &Drivers,
    registry: &Arc<Registry>,
    options: &RelocateOptions,
) -> Result<(Vec<Relocated>, RelocationMapping)> {
    let Prepared { layout, steps, _staging } = prepare(opened, drivers, registry, options)?;
    let specs: BTreeMap<String, &ImageSpec> = opened.bundle.all_images().into_iter().collect();

    // Drivers that rewrite references to other images (a chart's values) go last, handed the
    // mapping of all the others. With --keep-going a failure is kept as a message and the other
    // images go on.
    let (readers, others): (Vec<&Step>, Vec<&Step>) = steps.iter().partition(|s| s.driver.info().reads_mapping);
    let run = |steps: &[&Step], mapping: &[(String, String)]| {
        crate::parallel::try_map(steps, options.jobs, |step| {
            let spec = specs[&step.key];
            let stored = Origin::Layout { layout: layout.clone(), name: step.name.clone() };
            let grant = grant(&step.target.destination, registry, options.jobs);
            let image = driver_image(&step.key, spec);
            match step.driver.relocate(&image, &stored, &grant, &step.target.repository, mapping) {
                Ok(reference) => Ok(Ok(Relocated {
                    key: step.key.clone(),
                    original: spec.image.clone(),
                    relocated: pin(&reference),
                })),
                Err(e) if options.keep_going => Ok(Err(e.to_string())),
                Err(e) => Err(e.into()),
            }
        })
    };
    let mut outcomes = run(&others, &[])?;
    if !readers.is_empty() {
        let mapping: Vec<(String, String)> =
            outcomes.iter().flatten().map(|r| (r.original.clone(), r.relocated.clone())).collect();
        outcomes.extend(run(&readers, &mapping)?);
    }
    let failures: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    if !failures.is_empty() {
        let list: Vec<String> = failures.iter().map(|f| format!("  {f}")).collect();
        bail!(
            "{} of {} images were not relocated; no relocation mapping was written:\n{}",
            failures.len(),
            outcomes.len(),
            list.join("\n")
        );
    }
    let relocated: Vec<Relocated> = outcomes.into_iter().filter_map(Result::ok).collect();
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

/// `host:port/repo:tag` → `host:port/repo` (a colon in the last path segment is a tag).
fn strip_tag(name: &str) -> &str {
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    }
}
