//! `ferry push`: a bundle published into one repository. Its images go there through their
//! drivers, as a relocation whose every target is that repository, by digest; then the drivers
//! it ships (Wasm OCI artifacts, as in a thick bundle), bundle.json as canonical JSON under the
//! bundle manifest, and last the index, under the tag. What the repository holds already is
//! found with HEAD requests and not sent again.

use super::convert;
use crate::bundle::Bundle;
use crate::bundle_drivers::Source;
use crate::driver::{Drivers, Events, declared};
use crate::oci::{BlobFile, Descriptor, Digest, Layout, children};
use crate::opened::{Form, Opened};
use crate::registry::{Registry, Upload};
use crate::relocate::{self, Destinations, RelocateOptions, Relocated};
use anyhow::{Context, Result, bail};
use oci_client::Reference;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

pub struct PushOptions {
    /// `HOST/REPOSITORY[:TAG]`, as the operator wrote it.
    pub target: String,
    /// Images pushed, and blob uploads per image, at once.
    pub jobs: usize,
    /// Where temporary files go.
    pub scratch: PathBuf,
    pub events: Arc<dyn Events>,
}

/// What was published.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pushed {
    /// `HOST/REPOSITORY:TAG@DIGEST`.
    pub reference: String,
    pub digest: String,
    pub images: Vec<Relocated>,
    /// The shipped drivers, by name: where their artifacts are.
    pub drivers: BTreeMap<String, String>,
}

pub fn push(opened: &Opened, drivers: &Drivers, registry: &Arc<Registry>, options: &PushOptions) -> Result<Pushed> {
    let target = crate::reference::parse(&options.target)
        .filter(|r| options.target.contains('/') && r.digest().is_none())
        .with_context(|| format!("{:?}: give REGISTRY/REPOSITORY[:TAG] to push to", options.target))?;
    let tag = target.tag().unwrap_or("latest").to_owned();
    let repository = format!("{}/{}", target.registry(), target.repository());
    let at = |digest: &Digest| {
        Reference::with_digest(target.registry().to_owned(), target.repository().to_owned(), digest.to_string())
    };

    // Every image into the one repository, by digest: cnab-to-oci's representation has one
    // repository per bundle, and tags of images from different places would collide in it.
    let map = opened.bundle.all_images().into_iter().map(|(key, _)| (key, repository.clone())).collect();
    let destinations = Destinations { by_digest: true, ..Destinations::parse(None, &map)? };
    let relocation = RelocateOptions {
        destinations,
        jobs: options.jobs,
        scratch: options.scratch.clone(),
        keep_going: false,
        events: options.events.clone(),
    };
    let (relocated, _) = relocate::relocate(opened, drivers, registry, &relocation)?;
    let mut images = BTreeMap::new();
    for r in &relocated {
        let digest: Digest = r
            .relocated
            .rsplit_once('@')
            .and_then(|(_, d)| d.parse().ok())
            .with_context(|| format!("image {} was relocated to {}, not to a digest", r.key, r.relocated))?;
        let entry = registry
            .manifest_descriptor(&at(&digest), None)?
            .with_context(|| format!("image {}: {repository} does not serve {digest} after the push", r.key))?;
        images.insert(r.key.clone(), entry);
    }

    // A published bundle pushed on holds its own documents' blobs in its repository: within
    // one registry they are mounted from there, as its images are.
    let source = match &opened.form {
        Form::Published(published) => crate::reference::parse(&published.reference),
        Form::Json | Form::Thick(_) => None,
    };
    let held = |digest: &Digest| {
        if let Some(from) = &source {
            registry.note_holder(from.resolve_registry(), digest, from.repository());
        }
    };

    let scratch = crate::cleanup::TempDir::new_in(&options.scratch, ".ferry-push-")?;
    let mut shipped = BTreeMap::new();
    let mut driver_entries = BTreeMap::new();
    let source = Source { opened, registry };
    for d in declared(&opened.bundle)? {
        let layout = Layout::create(&scratch.path().join(&d.name))?;
        let root = d.store(&layout, &source.component(&d)?).with_context(|| format!("bundle driver {:?}", d.name))?;
        let manifest = std::fs::read(layout.path().join(Layout::blob_name(&root.digest)))?;
        let blobs = children(&manifest)?
            .into_iter()
            .map(|c| {
                held(&c.digest);
                Ok(Upload::of(c.digest.clone(), BlobFile::whole(layout.open_blob(&c.digest)?)?))
            })
            .collect::<Result<Vec<_>>>()?;
        registry.push_blobs(&at(&root.digest), blobs, options.jobs, None)?;
        put_document(registry, &at(&root.digest), &manifest, &root)?;
        shipped.insert(d.name.clone(), format!("{repository}@{}", root.digest));
        driver_entries.insert(d.name.clone(), Descriptor::new(root.media_type.clone(), root.digest, root.size));
    }

    // bundle.json as canonical JSON (CNAB 201), which is what the digest in the index pins.
    let value: serde_json::Value = serde_json::from_slice(opened.bundle.bytes())?;
    let canonical = serde_jcs::to_vec(&value)?;
    let bundle = Bundle::from_bytes(canonical, "bundle.json as canonical JSON")?;
    let (manifest, manifest_entry) = convert::bundle_manifest(bundle.bytes());
    let config = Digest::of(bundle.bytes());
    held(&config);
    registry.push_blobs(&at(&config), vec![upload(bundle.bytes(), &scratch)?], 1, None)?;
    put_document(registry, &at(&manifest_entry.digest), &manifest, &manifest_entry)?;

    let index = convert::index(&bundle, &manifest_entry, &images, &driver_entries)?;
    let digest = Digest::of(&index);
    let tagged = Reference::with_tag(target.registry().to_owned(), target.repository().to_owned(), tag.clone());
    let entry = Descriptor::new(crate::oci::media_types::OCI_INDEX, digest.clone(), index.len() as u64);
    put_document(registry, &tagged, &index, &entry)?;
    Ok(Pushed {
        reference: format!("{repository}:{tag}@{digest}"),
        digest: digest.to_string(),
        images: relocated,
        drivers: shipped,
    })
}

/// `bytes` as a blob upload, through a temporary file in `scratch`.
fn upload(bytes: &[u8], scratch: &crate::cleanup::TempDir) -> Result<Upload> {
    let mut file = tempfile::tempfile_in(scratch.path())?;
    file.write_all(bytes)?;
    Ok(Upload::of(Digest::of(bytes), BlobFile::whole(file)?))
}

/// Puts manifest or index `bytes` (described by `entry`) at `target` unless it is there
/// already: a repeated push asks with a HEAD and sends nothing.
fn put_document(registry: &Registry, target: &Reference, bytes: &[u8], entry: &Descriptor) -> Result<()> {
    if registry.manifest_digest(target, None)?.as_ref() == Some(&entry.digest) {
        return Ok(());
    }
    if Digest::of(bytes) != entry.digest {
        bail!("{target}: the document to push does not have digest {}", entry.digest);
    }
    registry.push_manifest(target, bytes, &entry.media_type, None)?;
    Ok(())
}
