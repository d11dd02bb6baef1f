//! `ferry relocate`: a thick bundle's images pushed into the operator's registry through their
//! drivers, and the CNAB relocation mapping that tells the invocation image where they went.
//!
//! Naming (docs/relocation.md): an image `REGISTRY/PATH:TAG@DIGEST` goes to
//! `PREFIX/PATH`, keeping its tag and digest. Two images that would land on the same name with
//! different content are refused before anything is pushed.

use crate::archive;
use crate::bundle::Bundle;
use crate::driver::{DestinationGrant, Drivers, Origin};
use crate::export::driver_image;
use crate::oci::{Layout, REF_NAME};
use crate::registry::Registry;
use crate::thick::find_root;
use anyhow::{Context, Result, bail};
use oci_client::Reference;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct RelocateOptions {
    /// `REGISTRY[/PREFIX]`.
    pub to: String,
    /// Blob uploads at once.
    pub jobs: usize,
    /// Where to write the mapping; `None` prints it.
    pub output: Option<PathBuf>,
}

#[derive(Debug, serde::Serialize)]
pub struct Relocated {
    pub key: String,
    pub original: String,
    pub relocated: String,
}

/// Where an image goes under `prefix`: its repository path, with its tag if it had one.
pub fn target_for(reference: &str) -> Result<(String, Option<String>)> {
    let parsed: Reference = reference.parse().with_context(|| format!("{reference:?} is not an image reference"))?;
    Ok((parsed.repository().to_owned(), parsed.tag().map(str::to_owned)))
}

pub fn relocate(
    bundle_path: &Path,
    drivers: &Drivers,
    registry: &Arc<Registry>,
    options: &RelocateOptions,
) -> Result<Vec<Relocated>> {
    let prefix = options.to.trim_end_matches('/');
    if prefix.is_empty() || prefix.contains("://") {
        bail!("--to {:?}: give REGISTRY[/PREFIX], such as registry.example:5000/site", options.to);
    }
    let staging_parent = options
        .output
        .as_deref()
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let staging = tempfile::Builder::new().prefix(".ferry-relocate-").tempdir_in(staging_parent)?;
    let layout = Arc::new(Layout::create(staging.path())?);
    let unpacked = archive::unpack(bundle_path, &layout)?;
    let bundle = Bundle::from_bytes(unpacked.bundle_json, &format!("{}: bundle.json", bundle_path.display()))?;
    let index = layout.index()?;

    // The whole plan first: a driver for every image, its stored root, and a free target name.
    let mut plan = Vec::new();
    let mut names: BTreeMap<String, (String, String)> = BTreeMap::new();
    for (key, spec) in bundle.all_images() {
        let image_type = spec.image_type();
        let driver = drivers.for_type(&image_type).with_context(|| {
            format!("image {key} ({}) has imageType {image_type:?}, which no driver handles", spec.image)
        })?;
        let root =
            find_root(&index, unpacked.relocation_mapping.as_deref(), &spec.image, spec.content_digest.as_deref())
                .with_context(|| format!("image {key} ({}) is not in the bundle's layout", spec.image))?;
        let name =
            root.annotations.get(REF_NAME).cloned().with_context(|| {
                format!("image {key}: its layout entry {} has no {REF_NAME} annotation", root.digest)
            })?;
        let (repository, tag) = target_for(&spec.image)?;
        let full = format!("{prefix}/{repository}:{}", tag.as_deref().unwrap_or(&root.digest.to_string()));
        if let Some((other, digest)) = names.get(&full) {
            if *digest != root.digest.to_string() {
                bail!("images {other} and {key} would both be relocated to {full}, with different content");
            }
        }
        names.insert(full, (key.clone(), root.digest.to_string()));
        plan.push((key.clone(), spec, driver, name, repository));
    }

    let grant =
        DestinationGrant::Registry { registry: registry.clone(), prefix: prefix.to_owned(), jobs: options.jobs };
    let relocated = crate::parallel::try_map(&plan, options.jobs, |(key, spec, driver, name, repository)| {
        let stored = Origin::Layout { layout: layout.clone(), name: name.clone() };
        let reference = driver.relocate(&driver_image(key, spec), &stored, &grant, repository)?;
        // The mapping pins by digest; a tag, if any, was pushed too.
        let pinned = match reference.split_once('@') {
            Some((name, digest)) => format!("{}@{digest}", strip_tag(name)),
            None => reference,
        };
        Ok(Relocated { key: key.clone(), original: spec.image.clone(), relocated: pinned })
    })?;

    let mapping: BTreeMap<&str, &str> = relocated.iter().map(|r| (r.original.as_str(), r.relocated.as_str())).collect();
    let json = serde_json::to_vec_pretty(&mapping)?;
    match &options.output {
        Some(path) => {
            let mut tmp = tempfile::NamedTempFile::new_in(staging_parent)?;
            tmp.write_all(&json)?;
            tmp.write_all(b"\n")?;
            tmp.persist(path).with_context(|| format!("writing {}", path.display()))?;
        }
        None => println!("{}", String::from_utf8_lossy(&json)),
    }
    Ok(relocated)
}

/// `host:port/repo:tag` → `host:port/repo` (a colon in the last path segment is a tag).
fn strip_tag(name: &str) -> &str {
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    }
}
