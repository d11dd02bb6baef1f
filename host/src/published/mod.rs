//! Bundles published in OCI registries (docs/registries.md), in the representation cnab-to-oci
//! defines (CNAB 200/201): an index that lists the bundle manifest (bundle.json as its config),
//! the invocation images, the other images and, from ferry, the drivers the bundle ships, all in
//! one repository. [`convert`] turns a bundle into that index and back without IO; this module
//! reads a published bundle from a registry, once per command, pinned by digest, and
//! [`push`](push::push) publishes one.

pub mod convert;
mod push;

pub use push::{PushOptions, Pushed, push};

use crate::bundle::Bundle;
use crate::mapping::RelocationMapping;
use crate::oci::{Descriptor, Digest};
use crate::registry::{Registry, RegistryErrorKind};
use anyhow::{Context, Result, bail};
use oci_client::Reference;
use std::collections::BTreeMap;

/// A published bundle, opened: where it is and where its images and drivers are.
pub struct Published {
    /// `host/repository@sha256:...`: the index, pinned by the digest the tag named when opened.
    pub reference: String,
    /// `host/repository`.
    pub repository: String,
    /// Every image's original reference → `repository@DIGEST`, as cnab-to-oci derives it.
    pub mapping: RelocationMapping,
    /// The drivers the bundle ships: their Wasm artifacts' manifests, by name.
    pub drivers: BTreeMap<String, Descriptor>,
    /// Every image's entry in the index, by image key.
    pub images: BTreeMap<String, Descriptor>,
}

/// Whether `text` reads as a reference to a published bundle (`HOST/REPOSITORY[:TAG|@DIGEST]`,
/// the host with a `.` or `:`, or `localhost`) rather than a file name. Whoever asks has
/// found no file of that name.
pub fn is_reference(text: &str) -> bool {
    let Some((host, _)) = text.split_once('/') else { return false };
    (host.contains(['.', ':']) || host == "localhost") && crate::reference::parse(text).is_some()
}

/// Reads the bundle `text` names: the index (its tag resolved once; a digest in `text` is
/// held to), the bundle manifest, and bundle.json, checked against the digest the manifest
/// pins.
pub fn open(registry: &Registry, text: &str) -> Result<(Bundle, Published)> {
    let parsed = crate::reference::parse(text).with_context(|| format!("{text:?} is not a registry reference"))?;
    let repository = format!("{}/{}", parsed.registry(), parsed.repository());
    let at = |digest: &Digest| {
        Reference::with_digest(parsed.registry().to_owned(), parsed.repository().to_owned(), digest.to_string())
    };
    let (index, _, digest) = registry.manifest(&parsed, None).with_context(|| format!("reading bundle {text}"))?;
    let reference = format!("{repository}@{digest}");
    let listing = convert::read_index(&index, text)?;
    let manifest = match registry.manifest(&at(&listing.manifest.digest), None) {
        Ok((bytes, _, _)) => bytes,
        Err(e) if e.kind == RegistryErrorKind::NotFound => bail!(
            "{text}: its index lists the bundle manifest {}, which {repository} does not have",
            listing.manifest.digest
        ),
        Err(e) => return Err(e).with_context(|| format!("{text}: the bundle manifest")),
    };
    let config = convert::read_bundle_manifest(&manifest, text)?;
    let mut bytes = Vec::new();
    registry
        .copy_blob(&at(&listing.manifest.digest), &config.digest, None, &mut bytes)
        .with_context(|| format!("{text}: the bundle config {}", config.digest))?;
    let actual = Digest::of(&bytes);
    if actual != config.digest {
        bail!(
            "{text}: the bundle config is refused: its bundle manifest pins {}, the registry served {actual}",
            config.digest
        );
    }
    let bundle = Bundle::from_bytes(bytes, &format!("{text}: the bundle config {}", config.digest))?;
    let mapping = convert::relocation_mapping(&listing, &bundle, &repository).with_context(|| text.to_owned())?;
    let keys = bundle.all_images().into_iter().map(|(key, _)| key);
    let entries = listing.invocation.iter().chain(listing.components.values());
    let images = keys.zip(entries.cloned()).collect();
    // The components come in key order, as all_images lists them.
    Ok((bundle, Published { reference, repository, mapping, drivers: listing.drivers, images }))
}

impl Published {
    /// Where image `key` of the bundle is: `repository@DIGEST`. By key, not by reference: two
    /// images may name one reference (cnab-to-oci's mapping keeps only one of them).
    pub fn image(&self, key: &str) -> Result<String> {
        let entry = self.images.get(key).with_context(|| format!("image {key} is not in {}", self.reference))?;
        Ok(format!("{}@{}", self.repository, entry.digest))
    }

    /// The manifest of the Wasm artifact of shipped driver `name`.
    pub fn driver(&self, name: &str) -> Result<String> {
        let d = self.drivers.get(name).with_context(|| {
            format!("bundle driver {name:?} is not in {} (no {} entry)", self.reference, convert::DRIVER_NAME)
        })?;
        Ok(format!("{}@{}", self.repository, d.digest))
    }
}

/// `ferry inspect` of a published bundle: each image's entry in the index, the bytes of the
/// blobs its manifests list and the platforms its index names, read from the registry; no
/// driver runs.
pub fn inspect(
    opened: &crate::opened::Opened,
    registry: &Registry,
    builtin: &crate::driver::Drivers,
    policy: &crate::driver::Policy,
) -> Result<crate::thick::Inspection> {
    let crate::opened::Form::Published(published) = &opened.form else {
        bail!("{} is not a published bundle", opened.path.display())
    };
    crate::thick::report(opened.bundle.clone(), builtin, policy, |key, spec| {
        let location = published.image(key)?;
        let at = crate::reference::parse(&location).with_context(|| format!("image {key} ({})", spec.image))?;
        let (size, platforms) = blobs(registry, &at, true)?;
        Ok((at.digest().map(str::to_owned), size, platforms))
    })
}

/// The bytes of the blobs the manifest at `at` lists (with `descend`, those of an index's
/// manifests too), and the platforms an index names.
fn blobs(registry: &Registry, at: &Reference, descend: bool) -> Result<(u64, Vec<String>)> {
    let (bytes, _, _) = registry.manifest(at, None)?;
    let (mut size, mut platforms) = (0, Vec::new());
    for child in crate::oci::children(&bytes).with_context(|| format!("manifest {at}"))? {
        if !crate::oci::is_document(&child.media_type) {
            size += child.size;
            continue;
        }
        platforms.extend(child.platform.as_ref().and_then(crate::thick::platform_name));
        if descend {
            let child_at =
                Reference::with_digest(at.registry().to_owned(), at.repository().to_owned(), child.digest.to_string());
            size += blobs(registry, &child_at, false)?.0;
        }
    }
    Ok((size, platforms))
}
