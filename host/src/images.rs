//! The shared bundle layer: a bundle's images as the commands hand them to drivers (what
//! `export`, `inspect`, `verify` and `relocate` all need), so that the commands sit side by
//! side and none imports another: each image as drivers see it, where its bytes come from, what
//! bundle.json pins, and where a thick bundle's layout keeps it.

use crate::bundle::{ImageSpec, Location};
use crate::driver::{Image, Origin};
use crate::http::Expected;
use crate::mapping::RelocationMapping;
use crate::oci::{Descriptor, Digest, REF_NAME};
use crate::registry::Registry;
use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

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
pub fn origin(
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
            if !crate::files::stays_inside(relative) {
                bail!(
                    "image {key}: {:?} must be a path inside {} (no absolute paths, no ..)",
                    spec.image,
                    bundle_dir.display()
                );
            }
            Origin::File { dir: bundle_dir.to_owned(), path: relative.to_owned() }
        }
    })
}

/// The bytes fetching an image will move, as far as can be told before its driver runs: a
/// file's size, a URL's declared `size`, a registry image's blobs as its manifests list them
/// (every platform of an index). `None` when that cannot be told; the fetch reports why.
pub fn expected_size(spec: &ImageSpec, origin: &Origin) -> Option<u64> {
    match origin {
        Origin::File { dir, path } => cap_std::fs::Dir::open_ambient_dir(dir, cap_std::ambient_authority())
            .and_then(|dir| dir.metadata(path))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len()),
        Origin::Http { .. } => spec.size,
        Origin::Registry { registry, reference } => {
            let parsed = crate::reference::parse(reference)?;
            blobs_size(registry, &parsed, true).ok()
        }
        Origin::Layout { .. } => None,
    }
}

/// The bytes of the blobs the manifest (or, with `descend`, the index) at `at` lists.
fn blobs_size(registry: &Registry, at: &oci_client::Reference, descend: bool) -> Result<u64> {
    let (bytes, _, _) = registry.manifest(at, None)?;
    let mut total = 0;
    for child in crate::oci::children(&bytes)? {
        if !crate::oci::is_document(&child.media_type) {
            total += child.size;
        } else if descend {
            let child_at = oci_client::Reference::with_digest(
                at.registry().to_owned(),
                at.repository().to_owned(),
                child.digest.to_string(),
            );
            total += blobs_size(registry, &child_at, false)?;
        }
    }
    Ok(total)
}

/// Makes an origin's bytes available: downloads an http(s) image, held to the `size` and
/// `contentDigest` bundle.json declares for it while it arrives (with `registry`'s stall
/// timeout and TLS settings). A
/// file image must have the declared size; its driver checks its digest as it stores it.
pub fn ready(key: &str, spec: &ImageSpec, origin: &Origin, registry: &crate::registry::Registry) -> Result<()> {
    match origin {
        Origin::Http { url, download } => {
            let digest = spec
                .content_digest
                .as_deref()
                .map(|d| d.parse::<Digest>().with_context(|| format!("image {key}: contentDigest {d:?}")))
                .transpose()?;
            let expected = Expected { size: spec.size, digest: digest.as_ref() };
            crate::http::download(url, download, expected, registry).with_context(|| format!("image {key}"))?;
        }
        Origin::File { dir, path } => {
            // Beneath the bundle's directory, as drivers open it: a link out of it is not followed.
            let found = cap_std::fs::Dir::open_ambient_dir(dir, cap_std::ambient_authority())
                .and_then(|dir| dir.metadata(path))
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len());
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

/// Whether an image is stored as the manifest (or index) its reference names, so that the
/// stored root is what `contentDigest` and `size` pin: `oci` and `docker` images. Other drivers
/// may store a registry image under a manifest of their own (a containerDisk's disk, a tarball
/// artifact's layer) and check `contentDigest` themselves, as they do for files and URLs.
pub fn stored_as_named(spec: &ImageSpec) -> bool {
    matches!(spec.image_type().as_str(), "oci" | "docker")
}

/// bundle.json's `contentDigest` and `size` must describe the registry image fetched. For other
/// locations and image types they describe what only the image's driver knows: it checks them.
pub fn check_pinned(key: &str, spec: &ImageSpec, root: &Descriptor) -> Result<()> {
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

/// The relocation mapping a thick bundle carries, if any, parsed once per command.
pub fn parse_mapping(bytes: Option<&[u8]>) -> Result<Option<RelocationMapping>> {
    bytes.map(|b| RelocationMapping::from_bytes(b).context("relocation-mapping.json")).transpose()
}

/// A reference in the one form every tool agrees on: Docker Hub's short names expanded
/// (`nginx:1` is `docker.io/library/nginx:1`), as duffle and porter write them in different
/// places. What does not parse is compared as written.
fn normalized(reference: &str) -> String {
    crate::reference::parse(reference).map(|r| r.whole()).unwrap_or_else(|| reference.to_owned())
}

/// The entries of a layout's index, looked up by the images of bundle.json. Built once per
/// command: every name is normalized once, whatever the number of images.
pub struct Roots<'a> {
    by_name: HashMap<String, &'a Descriptor>,
    by_digest: HashMap<String, &'a Descriptor>,
    mapped: HashMap<String, String>,
}

impl<'a> Roots<'a> {
    pub fn new(index: &'a [Descriptor], mapping: Option<&RelocationMapping>) -> Self {
        let mut by_name = HashMap::new();
        let mut by_digest = HashMap::new();
        for d in index {
            if let Some(name) = d.annotations.get(REF_NAME) {
                by_name.entry(name.clone()).or_insert(d);
                by_name.entry(normalized(name)).or_insert(d);
            }
            by_digest.entry(d.digest.to_string()).or_insert(d);
        }
        let mapped =
            mapping.into_iter().flat_map(|m| m.iter()).map(|(from, to)| (normalized(from), to.to_owned())).collect();
        Roots { by_name, by_digest, mapped }
    }

    /// The entry for an image: by its reference (ferry, duffle), by where the relocation
    /// mapping says it went (porter), by the digest bundle.json pins, or by the digest its
    /// reference pins.
    pub fn find(&self, reference: &str, pinned: Option<&str>) -> Option<&'a Descriptor> {
        let wanted = normalized(reference);
        let named = |name: &str| self.by_name.get(name).or_else(|| self.by_name.get(&normalized(name))).copied();
        named(reference)
            .or_else(|| self.mapped.get(&wanted).and_then(|m| named(m)))
            .or_else(|| pinned.and_then(|p| self.by_digest.get(p).copied()))
            .or_else(|| reference.split_once('@').and_then(|(_, d)| self.by_digest.get(d).copied()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: Option<&str>, seed: &[u8]) -> Descriptor {
        let mut d = Descriptor::new(crate::oci::media_types::OCI_INDEX, Digest::of(seed), 1);
        if let Some(name) = name {
            d.annotations.insert(REF_NAME.into(), name.into());
        }
        d
    }

    #[test]
    fn images_are_found_by_docker_hub_names_in_any_form_mappings_and_pinned_digests() {
        let index = vec![
            entry(Some("docker.io/library/nginx:1.25"), b"nginx"),
            entry(Some("registry.local:5000/porter/redis:7"), b"redis"),
            entry(None, b"pinned"),
        ];
        let mapping = RelocationMapping::from_pairs([("redis:7".into(), "registry.local:5000/porter/redis:7".into())]);
        let roots = Roots::new(&index, Some(&mapping));
        let digest = |seed: &[u8]| Some(Digest::of(seed));
        assert_eq!(roots.find("nginx:1.25", None).map(|d| d.digest.clone()), digest(b"nginx"));
        assert_eq!(roots.find("docker.io/nginx:1.25", None).map(|d| d.digest.clone()), digest(b"nginx"));
        assert_eq!(roots.find("docker.io/library/redis:7", None).map(|d| d.digest.clone()), digest(b"redis"));
        let pinned = format!("example.com/app@{}", Digest::of(b"pinned"));
        assert_eq!(roots.find(&pinned, None).map(|d| d.digest.clone()), digest(b"pinned"));
        assert!(roots.find("nginx:1.26", None).is_none());
    }
}
