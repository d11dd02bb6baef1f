//! `ferry relocate`: a thick bundle's images pushed into the operator's registry through their
//! drivers, and the CNAB relocation mapping that tells the invocation image where they went.
//!
//! Naming (docs/relocation.md): an image `REGISTRY/PATH:TAG@DIGEST` goes to
//! `PREFIX/PATH`, keeping its tag and digest. Two images that would land on the same name with
//! different content are refused before anything is pushed.

use crate::archive::InPlace;
use crate::bundle::{Bundle, ImageSpec, Location};
use crate::driver::{DestinationGrant, Drivers, Origin, repository_under};
use crate::export::{check_pinned, driver_image, origin, ready};
use crate::oci::{Layout, REF_NAME, Stored, is_document};
use crate::registry::Registry;
use crate::thick::find_root;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct RelocateOptions {
    /// `REGISTRY[/PREFIX]` for every image `map` does not name.
    pub to: Option<String>,
    /// Per-image destinations, `REGISTRY/REPOSITORY`, by original reference or image key.
    pub map: BTreeMap<String, String>,
    /// Blob uploads at once.
    pub jobs: usize,
    /// Where to write the mapping; `None` prints it.
    pub output: Option<PathBuf>,
    /// Relocate the other images when one fails (the mapping is still written only when all
    /// succeed).
    pub keep_going: bool,
}

/// What `--dry-run` reports for an image.
#[derive(Debug, serde::Serialize)]
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
pub struct Relocated {
    pub key: String,
    pub original: String,
    pub relocated: String,
}

/// Where an image goes under `prefix`: its repository path, with its tag if it had one.
pub fn target_for(reference: &str) -> Result<(String, Option<String>)> {
    let parsed =
        crate::reference::parse(reference).with_context(|| format!("{reference:?} is not an image reference"))?;
    Ok((parsed.repository().to_owned(), parsed.tag().map(str::to_owned)))
}

/// The bundle's images stored (a thick bundle opened in place, or a bundle.json's images fetched
/// into a staging layout) and every image matched to its driver, stored root and destination.
struct Prepared<'d> {
    layout: Arc<dyn Stored>,
    _staging: Option<crate::cleanup::TempDir>,
    bundle: Bundle,
    plan: Vec<Step<'d>>,
    staging_parent: PathBuf,
}

struct Step<'d> {
    key: String,
    driver: &'d crate::driver::Driver<'d>,
    name: String,
    root: crate::oci::Descriptor,
    /// The registry (and path) granted for this image, and the repository under it.
    prefix: String,
    repository: String,
    tag: Option<String>,
}

/// Reads a `--map` file: a JSON object from original reference or image key to destination.
pub fn read_map(path: &Path) -> Result<BTreeMap<String, String>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| {
        format!("{}: expected a JSON object from image reference or key to REGISTRY/REPOSITORY", path.display())
    })
}

/// A destination directory rather than a registry: `file:///absolute/path`.
const FILE_SCHEME: &str = "file://";

/// `--to` checked: `REGISTRY[/PREFIX]` (no scheme, no trailing slash) or `file:///DIRECTORY`.
fn registry_prefix(to: &str, flag: &str) -> Result<String> {
    if let Some(path) = to.strip_prefix(FILE_SCHEME) {
        if !path.starts_with('/') {
            bail!("{flag} {to:?}: a directory destination is file:// and an absolute path, such as file:///srv/site");
        }
        return Ok(to.to_owned());
    }
    let prefix = to.trim_end_matches('/');
    if prefix.is_empty() || prefix.contains("://") {
        bail!("{flag} {to:?}: give REGISTRY[/PREFIX], such as registry.example:5000/site, or file:///DIRECTORY");
    }
    Ok(prefix.to_owned())
}

/// What `prefix` grants: a directory (`file://`) or repositories under a registry prefix.
fn grant(prefix: &str, registry: &Arc<Registry>, jobs: usize) -> DestinationGrant {
    match prefix.strip_prefix(FILE_SCHEME) {
        Some(path) => DestinationGrant::Directory(PathBuf::from(path)),
        None => DestinationGrant::Registry { registry: registry.clone(), prefix: prefix.to_owned(), jobs },
    }
}

/// A repository for an image that is a file or URL rather than a registry image:
/// `BUNDLE-NAME/KEY`, in the characters a repository allows.
fn repository_for_file(bundle: &str, key: &str) -> String {
    let part = |s: &str| {
        let cleaned: String =
            s.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
        let parts: Vec<&str> = cleaned.split('-').filter(|p| !p.is_empty()).collect();
        if parts.is_empty() { "image".to_owned() } else { parts.join("-") }
    };
    format!("{}/{}", part(bundle), part(key))
}

fn prepare<'d>(
    bundle_path: &Path,
    drivers: &'d Drivers<'d>,
    registry: &Arc<Registry>,
    options: &RelocateOptions,
) -> Result<Prepared<'d>> {
    let to = options.to.as_deref().map(|to| registry_prefix(to, "--to")).transpose()?;
    let staging_parent = options
        .output
        .as_deref()
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let (bundle, layout, relocation_mapping, staging) = if Bundle::is_json_file(bundle_path)? {
        let (bundle, layout, staging) = fetch_thin(bundle_path, drivers, registry, options.jobs, staging_parent)?;
        (bundle, layout, None, Some(staging))
    } else {
        // A compressed bundle is decompressed in here, removed even when ferry is interrupted.
        let scratch = crate::cleanup::TempDir::new_in(staging_parent, ".ferry-relocate-")?;
        let in_place = InPlace::open(bundle_path, scratch.path())?;
        let bundle =
            Bundle::from_bytes(in_place.bundle_json.clone(), &format!("{}: bundle.json", bundle_path.display()))?;
        let mapping = in_place.relocation_mapping.clone();
        (bundle, Arc::new(in_place) as Arc<dyn Stored>, mapping, Some(scratch))
    };
    let index = layout.entries()?;

    // The whole plan first: a driver for every image, its stored root, and a free target name.
    let mut plan = Vec::new();
    let mut names: BTreeMap<String, (String, String)> = BTreeMap::new();
    for (key, spec) in bundle.all_images() {
        let image_type = spec.image_type();
        let driver = drivers.require(&key, &spec.image, &image_type)?;
        let root = find_root(&index, relocation_mapping.as_deref(), &spec.image, spec.content_digest.as_deref())
            .with_context(|| format!("image {key} ({}) is not in the bundle's layout", spec.image))?;
        let name =
            root.annotations.get(REF_NAME).cloned().with_context(|| {
                format!("image {key}: its layout entry {} has no {REF_NAME} annotation", root.digest)
            })?;
        let (original_repository, tag) = match spec.location() {
            Location::Registry => target_for(&spec.image)?,
            Location::Url | Location::Path => (repository_for_file(&bundle.doc.name, &key), None),
        };
        let (prefix, repository) = match options.map.get(&spec.image).or_else(|| options.map.get(&key)) {
            Some(destination) if destination.starts_with(FILE_SCHEME) => {
                (registry_prefix(destination, "--map destination")?, String::new())
            }
            Some(destination) => {
                let destination = registry_prefix(destination, "--map destination")?;
                match destination.split_once('/') {
                    Some((registry, repository)) => (registry.to_owned(), repository.to_owned()),
                    None => bail!("--map: {destination:?} for image {key} names no repository (REGISTRY/REPOSITORY)"),
                }
            }
            None => match &to {
                Some(prefix) => (prefix.clone(), original_repository),
                None => bail!("image {key} ({}) is not in --map, and there is no --to", spec.image),
            },
        };
        let full = format!("{prefix}/{repository}:{}", tag.as_deref().unwrap_or(&root.digest.to_string()));
        if let Some((other, digest)) = names.get(&full) {
            if *digest != root.digest.to_string() {
                bail!("images {other} and {key} would both be relocated to {full}, with different content");
            }
        }
        names.insert(full, (key.clone(), root.digest.to_string()));
        plan.push(Step { key: key.clone(), driver, name, root: root.clone(), prefix, repository, tag });
    }
    let images = bundle.all_images();
    if let Some(unknown) = options.map.keys().find(|k| !images.iter().any(|(key, spec)| key == *k || spec.image == **k))
    {
        bail!("--map names {unknown:?}, which is neither an image reference nor an image key of the bundle");
    }
    Ok(Prepared { layout, _staging: staging, bundle, plan, staging_parent: staging_parent.to_owned() })
}

/// A bundle.json's images fetched through their drivers into a staging layout (removed with the
/// returned directory). Blobs of registry images are noted where they came from, so that a
/// destination in the same registry mounts them rather than receiving them again.
fn fetch_thin(
    path: &Path,
    drivers: &Drivers,
    registry: &Arc<Registry>,
    jobs: usize,
    staging_parent: &Path,
) -> Result<(Bundle, Arc<dyn Stored>, crate::cleanup::TempDir)> {
    let bundle = Bundle::read(path)?;
    let bundle_dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let staging = crate::cleanup::TempDir::new_in(staging_parent, ".ferry-relocate-")?;
    let layout = Arc::new(Layout::create(&staging.path().join("layout"))?);
    let downloads = staging.path().join("downloads");
    std::fs::create_dir(&downloads)?;
    let images = bundle.all_images();
    crate::parallel::try_map(&images, jobs, |(key, spec)| {
        let driver = drivers.require(key, &spec.image, &spec.image_type())?;
        let origin = origin(key, spec, bundle_dir, registry, &downloads)?;
        ready(key, spec, &origin, registry.stall_timeout())?;
        let root = driver.fetch(&driver_image(key, spec), &origin, &layout)?;
        check_pinned(key, spec, &root)?;
        if let Origin::Registry { reference, .. } = &origin {
            if let Some(parsed) = crate::reference::parse(reference) {
                for blob in layout.graph(&root)? {
                    registry.note_holder(parsed.resolve_registry(), &blob.digest, parsed.repository());
                }
            }
        }
        Ok(())
    })?;
    Ok((bundle, layout, staging))
}

/// What a relocation would send, and where, without sending it.
pub fn dry_run(
    bundle_path: &Path,
    drivers: &Drivers,
    registry: &Arc<Registry>,
    options: &RelocateOptions,
) -> Result<Vec<Planned>> {
    let prepared = prepare(bundle_path, drivers, registry, options)?;
    let specs: BTreeMap<String, &ImageSpec> = prepared.bundle.all_images().into_iter().collect();
    prepared
        .plan
        .iter()
        .map(|step| {
            let blobs: Vec<_> =
                prepared.layout.graph(&step.root)?.into_iter().filter(|d| !is_document(&d.media_type)).collect();
            let tag = step.tag.as_deref().map(|t| format!(":{t}")).unwrap_or_default();
            let (mut present, mut bytes_to_send) = (0, 0);
            let destination = if step.prefix.starts_with(FILE_SCHEME) {
                bytes_to_send = blobs.iter().map(|b| b.size).sum();
                format!("{}/{}", step.prefix, step.repository)
            } else {
                let target = repository_under(&step.prefix, &step.repository);
                for blob in &blobs {
                    if registry.has_blob(&target, &blob.digest)? {
                        present += 1;
                    } else {
                        bytes_to_send += blob.size;
                    }
                }
                format!("{}/{}{tag}@{}", target.registry(), target.repository(), step.root.digest)
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

pub fn relocate(
    bundle_path: &Path,
    drivers: &Drivers,
    registry: &Arc<Registry>,
    options: &RelocateOptions,
) -> Result<Vec<Relocated>> {
    let Prepared { layout, bundle, plan, staging_parent, _staging } = prepare(bundle_path, drivers, registry, options)?;
    let specs: BTreeMap<String, &ImageSpec> = bundle.all_images().into_iter().collect();

    // Drivers that rewrite references to other images (a chart's values) go last, handed the
    // mapping of all the others. With --keep-going a failure is kept as a message and the other
    // images go on.
    let (readers, others): (Vec<&Step>, Vec<&Step>) = plan.iter().partition(|s| s.driver.info().reads_mapping);
    let run = |steps: &[&Step], mapping: &[(String, String)]| {
        crate::parallel::try_map(steps, options.jobs, |step| {
            let spec = specs[&step.key];
            let stored = Origin::Layout { layout: layout.clone(), name: step.name.clone() };
            let grant = grant(&step.prefix, registry, options.jobs);
            match step.driver.relocate(&driver_image(&step.key, spec), &stored, &grant, &step.repository, mapping) {
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

    let mapping: BTreeMap<&str, &str> = relocated.iter().map(|r| (r.original.as_str(), r.relocated.as_str())).collect();
    let json = serde_json::to_vec_pretty(&mapping)?;
    match &options.output {
        Some(path) => {
            let mut tmp = tempfile::NamedTempFile::new_in(&staging_parent)?;
            tmp.write_all(&json)?;
            tmp.write_all(b"\n")?;
            tmp.persist(path).with_context(|| format!("writing {}", path.display()))?;
        }
        None => println!("{}", String::from_utf8_lossy(&json)),
    }
    Ok(relocated)
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
