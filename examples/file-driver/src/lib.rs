//! A minimal ferry driver, written only against `wit/` and the guest SDK.
//!
//! It handles imageType `example-file`: an image that is one file. `fetch` stores the file as an
//! OCI artifact (a manifest with one layer), `relocate` asks the host to copy that artifact, and
//! `verify`/`inspect` read the stored manifest. The file's bytes never enter the guest: the host
//! copies them and checks their digest.

use ferry_driver_sdk::{
    Descriptor, Destination, Driver, DriverInfo, Error, Image, Result, Source, Store, Summary, export_driver, info,
};

const ARTIFACT_TYPE: &str = "application/vnd.example.file.v1";
const LAYER_TYPE: &str = "application/octet-stream";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";

struct FileDriver;

impl Driver for FileDriver {
    fn info() -> DriverInfo {
        DriverInfo {
            name: "example-file".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            image_types: vec!["example-file".into()],
            reads_mapping: false,
        }
    }

    fn fetch(image: Image, origin: &Source, store: &Store) -> Result<Descriptor> {
        let layer = store.copy_blob(origin, None, LAYER_TYPE)?;
        if let Some(expected) = &image.content_digest {
            if *expected != layer.digest {
                return Err(Error::invalid(format!(
                    "bundle.json says contentDigest {expected}, the file is {}",
                    layer.digest
                )));
            }
        }
        let config = store.put_document(EMPTY_CONFIG, b"{}")?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "artifactType": ARTIFACT_TYPE,
            "config": descriptor_json(&config),
            "layers": [descriptor_json(&layer)],
        })
        .to_string();
        let mut root = store.put_document(MANIFEST_TYPE, manifest.as_bytes())?;
        root.artifact_type = Some(ARTIFACT_TYPE.into());
        store.set_root(&root)?;
        info!("stored {} ({} bytes) as {}", image.reference, layer.size, root.digest);
        Ok(root)
    }

    fn verify(_image: Image, stored: &Source) -> Result<()> {
        let layer = the_layer(stored)?;
        let size = stored.size(Some(&layer.digest))?;
        if size != layer.size {
            return Err(Error::invalid(format!(
                "layer {} is {size} bytes, the manifest says {}",
                layer.digest, layer.size
            )));
        }
        Ok(())
    }

    fn relocate(
        image: Image,
        stored: &Source,
        destination: &Destination,
        _mapping: Vec<(String, String)>,
    ) -> Result<String> {
        let root = stored.manifest(None)?.descriptor();
        let name = image.reference.rsplit('/').next().unwrap_or(&image.key);
        destination.copy_artifact(stored, &root, Some(&tag_for(name)))
    }

    fn inspect(_image: Image, stored: &Source) -> Result<Summary> {
        let manifest = stored.manifest(None)?;
        let layer = the_layer(stored)?;
        // Every blob of the stored image once: the manifest, its empty config ({}) and the file.
        let size = manifest.bytes.len() as u64 + 2 + layer.size;
        Ok(Summary {
            digest: manifest.digest,
            media_type: manifest.media_type,
            size,
            platforms: Vec::new(),
            details: vec![("file-digest".into(), layer.digest)],
        })
    }
}

/// The stored manifest's single layer.
fn the_layer(stored: &Source) -> Result<Descriptor> {
    let manifest: serde_json::Value = serde_json::from_slice(&stored.manifest(None)?.bytes).map_err(Error::invalid)?;
    let layer = &manifest["layers"][0];
    match (layer["digest"].as_str(), layer["size"].as_u64()) {
        (Some(digest), Some(size)) => Ok(Descriptor::new(LAYER_TYPE, digest, size)),
        _ => Err(Error::invalid("the stored manifest has no layer")),
    }
}

fn descriptor_json(d: &Descriptor) -> serde_json::Value {
    serde_json::json!({ "mediaType": d.media_type, "digest": d.digest, "size": d.size })
}

/// A tag from a file name: the characters OCI allows in a tag, at most 128 of them.
fn tag_for(name: &str) -> String {
    let tag: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).take(128).collect();
    if tag.is_empty() || tag.starts_with(['.', '-']) { format!("file{tag}") } else { tag }
}

export_driver!(FileDriver);
