//! The built-in driver for imageType `oci` and `docker`: OCI and Docker schema2 manifests, OCI
//! indexes and Docker manifest lists, every platform kept.
//!
//! The driver walks manifests (small documents it reads through the host) and decides what to
//! copy; the host moves every blob and checks every digest.

use ferry_driver_sdk::artifact::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use ferry_driver_sdk::names::reference_tag;
use ferry_driver_sdk::{
    Descriptor, Destination, Document, Driver, DriverInfo, Error, Image, Result, Source, Store, Summary, debug,
    export_driver,
};
use serde_json::Value;
use std::collections::BTreeSet;

/// Manifests nest (index → manifest); deeper nesting than this is refused, not followed.
const MAX_DEPTH: usize = 4;

struct OciDriver;

impl Driver for OciDriver {
    fn info() -> DriverInfo {
        DriverInfo {
            name: "oci".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            image_types: vec!["oci".into(), "docker".into()],
            reads_mapping: false,
        }
    }

    fn fetch(image: Image, origin: &Source, store: &Store) -> Result<Descriptor> {
        let root = origin.manifest(None)?;
        check_content_digest(&image, &root)?;
        let walked = walk(origin, &root, 0, &mut |node| match node {
            Node::Blob(blob) => {
                let stored = store.copy_blob(origin, Some(&blob.digest), &blob.media_type)?;
                expect_same(&blob, &stored)
            }
            Node::Document(doc) => {
                let stored = store.put_document(&doc.media_type, &doc.bytes)?;
                expect_same(&doc.descriptor(), &stored)
            }
        })?;
        let root = root.descriptor();
        store.set_root(&root)?;
        debug!("fetched {} ({} blobs)", image.reference, walked.blobs.len());
        Ok(root)
    }

    fn verify(image: Image, stored: &Source) -> Result<()> {
        let root = stored.manifest(None)?;
        check_content_digest(&image, &root)?;
        walk(stored, &root, 0, &mut |node| match node {
            Node::Blob(blob) => {
                let size = stored.size(Some(&blob.digest))?;
                if size == blob.size {
                    Ok(())
                } else {
                    Err(Error::invalid(format!(
                        "blob {} is {size} bytes, its manifest says {}",
                        blob.digest, blob.size
                    )))
                }
            }
            Node::Document(_) => Ok(()),
        })?;
        Ok(())
    }

    fn relocate(
        image: Image,
        stored: &Source,
        destination: &Destination,
        _mapping: Vec<(String, String)>,
    ) -> Result<String> {
        let root = stored.manifest(None)?;
        check_content_digest(&image, &root)?;
        destination.copy_artifact(stored, &root.descriptor(), reference_tag(&image.reference))
    }

    fn inspect(_image: Image, stored: &Source) -> Result<Summary> {
        let root = stored.manifest(None)?;
        let mut walked = walk(stored, &root, 0, &mut |_| Ok(()))?;
        // Only a single-platform image has a config at its root; it names the platform.
        walked.platforms.extend(walked.root_config.as_ref().and_then(|config| config_platform(stored, config)));
        Ok(Summary {
            digest: root.digest,
            media_type: root.media_type,
            size: walked.blobs.iter().map(|(_, size)| size).sum(),
            platforms: walked.platforms,
            details: Vec::new(),
        })
    }
}

enum Node<'a> {
    Blob(Descriptor),
    Document(&'a Document),
}

#[derive(Default)]
struct Walked {
    /// Every distinct blob and document, with its size.
    blobs: BTreeSet<(String, u64)>,
    platforms: Vec<String>,
    /// The config of the root, when the root is a manifest (not an index).
    root_config: Option<Descriptor>,
}

/// Visits every blob, then every document, children before their parent, so a store never holds
/// a manifest whose blobs are missing.
fn walk(source: &Source, doc: &Document, depth: usize, visit: &mut dyn FnMut(Node) -> Result<()>) -> Result<Walked> {
    if depth > MAX_DEPTH {
        return Err(Error::invalid(format!("{}: manifests nest deeper than {MAX_DEPTH}", doc.digest)));
    }
    let json = doc.json()?;
    let media_type = json["mediaType"].as_str().unwrap_or(&doc.media_type);
    let mut walked = Walked::default();
    match media_type {
        OCI_INDEX | DOCKER_LIST => {
            for (i, entry) in children(&json, "manifests", &doc.digest)?.into_iter().enumerate() {
                let child = source.manifest(Some(&entry.digest))?;
                let inner = walk(source, &child, depth + 1, visit)?;
                walked.blobs.extend(inner.blobs);
                let platform = &json["manifests"][i]["platform"];
                match platform_name(platform) {
                    Some(name) => walked.platforms.push(name),
                    None => walked.platforms.extend(inner.platforms),
                }
            }
        }
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let config = descriptor(&json["config"], &format!("{}: config", doc.digest))?;
            let mut blobs = vec![config.clone()];
            blobs.extend(children(&json, "layers", &doc.digest)?);
            for blob in blobs {
                if walked.blobs.insert((blob.digest.clone(), blob.size)) {
                    visit(Node::Blob(blob))?;
                }
            }
            if depth == 0 {
                walked.root_config = Some(config);
            }
        }
        other => {
            return Err(Error::unsupported(format!(
                "{}: media type {other:?} is not an OCI or Docker manifest",
                doc.digest
            )));
        }
    }
    walked.blobs.insert((doc.digest.clone(), doc.bytes.len() as u64));
    visit(Node::Document(doc))?;
    Ok(walked)
}

fn children(json: &Value, field: &str, digest: &str) -> Result<Vec<Descriptor>> {
    let list = json[field].as_array().ok_or_else(|| Error::invalid(format!("{digest}: `{field}` is not a list")))?;
    list.iter().enumerate().map(|(i, d)| descriptor(d, &format!("{digest}: {field}[{i}]"))).collect()
}

fn descriptor(json: &Value, at: &str) -> Result<Descriptor> {
    Descriptor::from_json(json).map_err(|e| Error::invalid(format!("{at}: {}", e.message())))
}

fn platform_name(platform: &Value) -> Option<String> {
    let os = platform["os"].as_str()?;
    let arch = platform["architecture"].as_str()?;
    Some(match platform["variant"].as_str() {
        Some(variant) => format!("{os}/{arch}/{variant}"),
        None => format!("{os}/{arch}"),
    })
}

/// A single-platform image names its platform in its config, a small JSON blob.
fn config_platform(source: &Source, config: &Descriptor) -> Option<String> {
    const MAX_CONFIG: u64 = 1 << 20;
    if config.size > MAX_CONFIG {
        return None;
    }
    let bytes = source.read(Some(&config.digest), 0, config.size as u32).ok()?;
    platform_name(&serde_json::from_slice(&bytes).ok()?)
}

fn check_content_digest(image: &Image, root: &Document) -> Result<()> {
    match &image.content_digest {
        Some(expected) if *expected != root.digest => Err(Error::invalid(format!(
            "bundle.json says contentDigest {expected}, {} resolves to {}",
            image.reference, root.digest
        ))),
        _ => Ok(()),
    }
}

fn expect_same(wanted: &Descriptor, got: &Descriptor) -> Result<()> {
    if wanted.digest == got.digest && wanted.size == got.size {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "expected {} ({} bytes), the host stored {} ({} bytes)",
            wanted.digest, wanted.size, got.digest, got.size
        )))
    }
}

export_driver!(OciDriver);
