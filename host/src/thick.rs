//! `ferry inspect` and `ferry verify` of a thick bundle: the host's checks read it in one
//! streaming pass without unpacking it; the drivers' checks and details read it in place.

use crate::archive::{self, Contents};
use crate::bundle::Bundle;
use crate::driver::{Driver, Drivers, Image, Origin, Policy, Summary, assign, declared};
use crate::images::{Roots, driver_image, parse_mapping, stored_as_named};
use crate::oci::{Descriptor, Digest, REF_NAME, Stored, children, is_document};
use crate::opened::Opened;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageReport {
    pub key: String,
    pub reference: String,
    pub image_type: String,
    /// The driver that handles this type, or `None` when none does.
    pub driver: Option<String>,
    /// `built-in`, or `bundle sha256:...` for a driver the bundle ships.
    pub driver_from: Option<String>,
    pub digest: Option<String>,
    /// Bytes of every blob the image refers to, counted once.
    pub size: u64,
    pub platforms: Vec<String>,
    /// What the image's driver reports (`inspect --details`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<(String, String)>,
}

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inspection {
    pub name: String,
    pub version: String,
    pub images: Vec<ImageReport>,
    pub bundle_drivers: Vec<BundleDriverReport>,
    /// What a WASI installer asks to reach (`custom["io.ferry.wasi"]`): closed until granted.
    pub installer_outbound_hosts: Vec<String>,
}

/// A driver the bundle ships, and the image types it gets under the operator's policy.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleDriverReport {
    pub name: String,
    pub digest: String,
    pub declared: Vec<String>,
    pub handles: Vec<String>,
}

struct Walk {
    /// Every blob once, with the size it was first listed with.
    blobs: BTreeMap<Digest, u64>,
    /// The digests first listed as manifests or indexes: listed again as other content, they
    /// would hide what they refer to from whoever copies them as a plain blob.
    documents: std::collections::HashSet<Digest>,
    platforms: Vec<String>,
    problems: Vec<String>,
}

/// Everything `root` refers to, each digest visited once however often it is listed.
fn walk(contents: &Contents, root: &Descriptor) -> Walk {
    const MAX_DEPTH: usize = 8;
    let mut w =
        Walk { blobs: BTreeMap::new(), documents: Default::default(), platforms: Vec::new(), problems: Vec::new() };
    let mut stack = vec![(root.clone(), 0)];
    while let Some((d, depth)) = stack.pop() {
        match w.blobs.get(&d.digest) {
            Some(&size) if size != d.size => {
                w.problems.push(format!("blob {} is listed as {} bytes and as {size}", d.digest, d.size));
                continue;
            }
            Some(_) if w.documents.contains(&d.digest) != is_document(&d.media_type) => {
                w.problems.push(format!("blob {} is listed both as a manifest and as other content", d.digest));
                continue;
            }
            Some(_) => continue,
            None => {}
        }
        if is_document(&d.media_type) {
            w.documents.insert(d.digest.clone());
        }
        if depth > MAX_DEPTH {
            w.problems.push(format!("{}: manifests nest deeper than {MAX_DEPTH}", d.digest));
            continue;
        }
        w.blobs.insert(d.digest.clone(), d.size);
        match contents.blobs.get(&d.digest) {
            None => w.problems.push(format!("blob {} is missing", d.digest)),
            Some(b) if b.size != d.size => {
                w.problems.push(format!("blob {} is {} bytes, its descriptor says {}", d.digest, b.size, d.size))
            }
            Some(_) => {}
        }
        if let Some(platform) = d.platform.as_ref().and_then(platform_name) {
            w.platforms.push(platform);
        }
        if is_document(&d.media_type) {
            match contents.documents.get(&d.digest) {
                Some(bytes) => {
                    let kids = match children(bytes) {
                        Ok(kids) => kids,
                        Err(e) => {
                            w.problems.push(format!("manifest {}: {e:#}", d.digest));
                            continue;
                        }
                    };
                    if depth == 0
                        && !kids.iter().any(|k| is_document(&k.media_type))
                        && let Some(config) = kids.first().and_then(|c| contents.documents.get(&c.digest))
                    {
                        w.platforms.extend(serde_json::from_slice(config).ok().as_ref().and_then(platform_name));
                    }
                    stack.extend(kids.into_iter().map(|k| (k, depth + 1)));
                }
                None if contents.blobs.contains_key(&d.digest) => {
                    w.problems.push(format!("manifest {} is not a JSON document", d.digest))
                }
                None => {}
            }
        }
    }
    w
}

pub fn platform_name(p: &serde_json::Value) -> Option<String> {
    let (os, arch) = (p["os"].as_str()?, p["architecture"].as_str()?);
    Some(match p["variant"].as_str() {
        Some(v) => format!("{os}/{arch}/{v}"),
        None => format!("{os}/{arch}"),
    })
}

/// What a thick bundle holds, and which driver each image will get under `policy`, told from
/// bundle.json alone: no driver runs. `builtin` are the built-in drivers.
pub fn inspect(path: &Path, builtin: &Drivers, policy: &Policy) -> Result<Inspection> {
    crate::bundle::file::expect_thick(path)?;
    let contents = archive::read(path, false)?;
    let bundle = Bundle::from_bytes(contents.bundle_json.clone(), &format!("{}: bundle.json", path.display()))?;
    let index = archive::parse_index(contents.index.as_deref())?;
    let mapping = parse_mapping(contents.relocation_mapping.as_deref())?;
    let roots = Roots::new(&index, mapping.as_ref());
    report(bundle, builtin, policy, |_, spec| {
        let root = roots.find(&spec.image, spec.content_digest.as_deref());
        let walked = root.map(|r| walk(&contents, r));
        let size = walked.as_ref().map(|w| w.blobs.values().sum()).unwrap_or(0);
        Ok((root.map(|r| r.digest.to_string()), size, walked.map(|w| w.platforms).unwrap_or_default()))
    })
}

/// What one image is, for [`report`]: its stored digest, the bytes of its blobs, its platforms.
pub type Found = (Option<String>, u64, Vec<String>);

/// The inspection of `bundle`: each image as `stored` finds it (by key), with the driver it
/// gets from `builtin` and the drivers the bundle ships under `policy`.
pub fn report(
    bundle: Bundle,
    builtin: &Drivers,
    policy: &Policy,
    mut stored: impl FnMut(&str, &crate::bundle::ImageSpec) -> Result<Found>,
) -> Result<Inspection> {
    let declared = declared(&bundle)?;
    let assigned = assign(&declared, |t| builtin.for_type(t).is_some(), policy);
    let driver_for = |image_type: &str| -> Option<(String, String)> {
        match declared.iter().zip(&assigned).find(|(_, types)| types.iter().any(|t| t == image_type)) {
            Some((d, _)) => Some((d.name.clone(), format!("bundle {}", d.digest))),
            None => builtin.for_type(image_type).map(|d| (d.info().name.clone(), "built-in".to_owned())),
        }
    };
    let images = bundle
        .all_images()
        .into_iter()
        .map(|(key, spec)| {
            let image_type = spec.image_type();
            let (digest, size, platforms) = stored(&key, spec)?;
            let (driver, driver_from) = driver_for(&image_type).unzip();
            Ok(ImageReport {
                key,
                reference: spec.image.clone(),
                driver,
                driver_from,
                image_type,
                digest,
                size,
                platforms,
                details: Vec::new(),
            })
        })
        .collect::<Result<_>>()?;
    let bundle_drivers = declared
        .iter()
        .zip(assigned.iter())
        .map(|(d, handles)| BundleDriverReport {
            name: d.name.clone(),
            digest: d.digest.clone(),
            declared: d.image_types.clone(),
            handles: handles.clone(),
        })
        .collect();
    let installer_outbound_hosts =
        crate::install::wasi::declared(&bundle.doc)?.iter().map(ToString::to_string).collect();
    Ok(Inspection {
        name: bundle.doc.name,
        version: bundle.doc.version,
        images,
        bundle_drivers,
        installer_outbound_hosts,
    })
}

/// Something wrong with a thick bundle: where (a blob, an image, a file of the bundle) and what.
#[derive(Debug, serde::Serialize)]
pub struct Problem {
    #[serde(rename = "where")]
    pub at: String,
    pub message: String,
}

impl Problem {
    fn new(at: impl Into<String>, message: impl Into<String>) -> Self {
        Problem { at: at.into(), message: message.into() }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// Every problem with a thick bundle: blobs whose bytes do not match their digest, images
/// missing from the layout or with missing parts, images whose digest is not the one pinned.
pub fn verify(path: &Path) -> Result<Vec<Problem>> {
    crate::bundle::file::expect_thick(path)?;
    let contents = archive::read(path, true)?;
    let mut problems = Vec::new();
    for (digest, blob) in &contents.blobs {
        if blob.actual.as_ref() != Some(digest) {
            let actual = blob.actual.as_ref().map(ToString::to_string).unwrap_or_default();
            problems.push(Problem::new(format!("blob {digest}"), format!("its bytes hash to {actual}")));
        }
    }
    let bundle = match Bundle::from_bytes(contents.bundle_json.clone(), "bundle.json") {
        Ok(b) => b,
        Err(e) => {
            problems.push(Problem::new(archive::BUNDLE_JSON, format!("{e:#}")));
            return Ok(problems);
        }
    };
    if !contents.has_oci_layout {
        problems.push(Problem::new(archive::LAYOUT, "no oci-layout file"));
    }
    let index = archive::parse_index(contents.index.as_deref())?;
    let mapping = match parse_mapping(contents.relocation_mapping.as_deref()) {
        Ok(m) => m,
        Err(e) => {
            problems.push(Problem::new(archive::RELOCATION_MAPPING, format!("{e:#}")));
            None
        }
    };
    let roots = Roots::new(&index, mapping.as_ref());
    for (key, spec) in bundle.all_images() {
        let at = format!("image {key} ({})", spec.image);
        let Some(root) = roots.find(&spec.image, spec.content_digest.as_deref()) else {
            problems.push(Problem::new(at, "not in artifacts/layout/index.json"));
            continue;
        };
        if let Some(pinned) = spec.content_digest.as_ref().filter(|_| stored_as_named(spec))
            && *pinned != root.digest.to_string()
        {
            problems.push(Problem::new(&at, format!("bundle.json pins {pinned}, the bundle holds {}", root.digest)));
        }
        problems.extend(walk(&contents, root).problems.into_iter().map(|p| Problem::new(&at, p)));
    }
    match declared(&bundle) {
        Ok(shipped) => {
            for d in shipped {
                if !contents.blobs.contains_key(&d.digest()) {
                    let at = format!("bundle driver {:?}", d.name);
                    problems.push(Problem::new(at, format!("its component {} is missing", d.digest)));
                }
            }
        }
        Err(e) => problems.push(Problem::new(archive::BUNDLE_JSON, format!("{e:#}"))),
    }
    Ok(problems)
}

/// The bundle opened in place, and each image's driver, stored origin and description.
fn each_stored<T>(
    opened: &Opened,
    drivers: &Drivers,
    mut f: impl FnMut(&Driver, &Image, &Origin) -> T,
) -> Result<Vec<(String, T)>> {
    let stored = opened.thick()?.clone();
    let bundle = &opened.bundle;
    let index = stored.entries()?;
    let mapping = parse_mapping(stored.relocation_mapping.as_deref())?;
    let roots = Roots::new(&index, mapping.as_ref());
    let mut out = Vec::new();
    for (key, spec) in bundle.all_images() {
        let driver = drivers.require(&key, &spec.image, &spec.image_type())?;
        let root = roots
            .find(&spec.image, spec.content_digest.as_deref())
            .with_context(|| format!("image {key} ({}) is not in the bundle's layout", spec.image))?;
        let name = root.annotations.get(REF_NAME).cloned().unwrap_or_default();
        let origin = Origin::Layout { layout: stored.clone(), name };
        let result = f(driver, &driver_image(&key, spec), &origin);
        out.push((key, result));
    }
    Ok(out)
}

/// What each image's driver finds wrong with it beyond digests (a disk's header, a tarball's
/// names): every driver's `verify`.
pub fn verify_images(opened: &Opened, drivers: &Drivers) -> Result<Vec<Problem>> {
    let outcomes = each_stored(opened, drivers, |driver, image, origin| driver.verify(image, origin))?;
    Ok(outcomes
        .into_iter()
        .filter_map(|(key, outcome)| {
            let e = outcome.err()?;
            let at = format!("image {}", e.image.as_deref().unwrap_or(&key));
            Some(Problem::new(at, format!("driver {:?} finds: {}", e.driver, e.message)))
        })
        .collect())
}

/// Every image's driver `inspect`: format, sizes and whatever else its driver reports.
pub fn details(opened: &Opened, drivers: &Drivers) -> Result<Vec<(String, Summary)>> {
    each_stored(opened, drivers, |driver, image, origin| driver.inspect(image, origin))?
        .into_iter()
        .map(|(key, summary)| Ok((key, summary?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::Blob;
    use crate::oci::media_types::{OCI_CONFIG, OCI_INDEX, OCI_LAYER_TAR, OCI_MANIFEST};

    fn put(contents: &mut Contents, media_type: &str, bytes: &[u8]) -> Descriptor {
        let digest = Digest::of(bytes);
        contents.blobs.insert(digest.clone(), Blob { size: bytes.len() as u64, actual: Some(digest.clone()) });
        if bytes.starts_with(b"{") {
            contents.documents.insert(digest.clone(), bytes.to_vec());
        }
        Descriptor::new(media_type, digest, bytes.len() as u64)
    }

    fn json(d: &Descriptor) -> serde_json::Value {
        serde_json::json!({ "mediaType": d.media_type, "digest": d.digest.to_string(), "size": d.size })
    }

    /// Found by fuzzing `graph()`: a manifest listed as a layer elsewhere would be copied as a
    /// plain blob, without what it refers to. verify reports it too.
    #[test]
    fn a_manifest_also_listed_as_other_content_is_a_problem() {
        let mut c = Contents::default();
        let config = put(&mut c, OCI_CONFIG, b"{}");
        let layer = put(&mut c, OCI_LAYER_TAR, b"layer");
        let manifest = |config: &Descriptor, layer: &Descriptor| {
            serde_json::json!({ "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": json(config), "layers": [json(layer)] })
                .to_string()
        };
        let inner = put(&mut c, OCI_MANIFEST, manifest(&config, &layer).as_bytes());
        let as_layer = Descriptor::new(OCI_LAYER_TAR, inner.digest.clone(), inner.size);
        let other = put(&mut c, OCI_CONFIG, b"{\"a\":1}");
        let outer = put(&mut c, OCI_MANIFEST, manifest(&other, &as_layer).as_bytes());
        let index = serde_json::json!({ "schemaVersion": 2, "manifests": [json(&outer), json(&inner)] }).to_string();
        let root = put(&mut c, OCI_INDEX, index.as_bytes());
        let problems = walk(&c, &root).problems;
        assert!(problems.iter().any(|p| p.contains("both as a manifest and as other content")), "{problems:?}");
    }
}
