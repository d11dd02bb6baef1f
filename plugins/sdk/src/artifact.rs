//! OCI manifests as a driver reads and writes them, and the single-layer artifact a driver that
//! keeps an image as one blob stores it as: a manifest with the driver's own `artifactType`, a
//! small JSON config, and the blob as its one layer, titled with the image's file name.

use crate::{Descriptor, Document, Error, Image, Result, Source, Store, Summary};
use serde_json::{Value, json};
use std::fmt;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// The annotation that names the file a layer holds.
pub const TITLE: &str = "org.opencontainers.image.title";

impl Document {
    /// The document as JSON; invalid content when it is not.
    pub fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.bytes).map_err(|e| Error::invalid(format!("{}: not JSON: {e}", self.digest)))
    }
}

impl Descriptor {
    /// A descriptor of a manifest's JSON; its artifact type and annotations are left out.
    pub fn from_json(json: &Value) -> Result<Self> {
        match (json["mediaType"].as_str(), json["digest"].as_str(), json["size"].as_u64()) {
            (Some(media_type), Some(digest), Some(size)) => Ok(Descriptor::new(media_type, digest, size)),
            _ => Err(Error::invalid("a descriptor needs mediaType, digest and size")),
        }
    }

    /// Only the media type, digest and size: a manifest's digest depends on every byte of it.
    pub fn to_json(&self) -> Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.size })
    }
}

/// An OCI image manifest of `config` and `layers`, of `artifact_type` when it is an artifact.
pub fn manifest(artifact_type: Option<&str>, config: &Descriptor, layers: Vec<Value>) -> Value {
    let mut manifest = json!({ "schemaVersion": 2, "mediaType": OCI_MANIFEST });
    if let Some(artifact_type) = artifact_type {
        manifest["artifactType"] = artifact_type.into();
    }
    manifest["config"] = config.to_json();
    manifest["layers"] = layers.into();
    manifest
}

/// Stores `config` (JSON of type `config_type`) and the manifest of an `artifact_type` artifact
/// whose one layer is `layer`, already in `store`, holding the file `file_name`; the manifest
/// becomes the store's root.
pub fn store_single_layer(
    store: &Store,
    artifact_type: &str,
    config_type: &str,
    config: &[u8],
    layer: &Descriptor,
    file_name: &str,
) -> Result<Descriptor> {
    let config = store.put_document(config_type, config)?;
    let mut layer = layer.to_json();
    layer["annotations"] = json!({ TITLE: file_name });
    let manifest = manifest(Some(artifact_type), &config, vec![layer]);
    let mut root = store.put_document(OCI_MANIFEST, manifest.to_string().as_bytes())?;
    root.artifact_type = Some(artifact_type.into());
    store.set_root(&root)?;
    Ok(root)
}

/// A stored single-layer artifact, its config parsed.
pub struct SingleLayer<C> {
    pub manifest: Document,
    pub config: C,
    pub layer: Descriptor,
}

impl<C> SingleLayer<C> {
    /// Invalid content of this artifact's manifest, naming the manifest (the host names the image).
    pub fn invalid(&self, message: impl fmt::Display) -> Error {
        Error::invalid(message).within(&format!("manifest {}", self.manifest.digest))
    }

    /// What `inspect` reports of this artifact: an artifact has no platform, and its size is, as
    /// for every image, the bytes of every blob it is stored as, each counted once: the
    /// manifest, its config and its layer (what `ferry inspect` shows as SIZE).
    pub fn summary(&self, details: Vec<(String, String)>) -> Summary {
        let config = self.manifest.json().ok().and_then(|json| json["config"]["size"].as_u64()).unwrap_or(0);
        Summary {
            digest: self.manifest.digest.clone(),
            media_type: self.manifest.media_type.clone(),
            size: self.manifest.bytes.len() as u64 + config + self.layer.size,
            platforms: Vec::new(),
            details,
        }
    }

    /// Refuses a stored layer whose size is not what the manifest says; `what` names it for the
    /// message.
    pub fn check_layer_size(&self, stored: &Source, what: &str) -> Result<()> {
        let size = stored.size(Some(&self.layer.digest))?;
        if size != self.layer.size {
            return Err(Error::invalid(format!(
                "{what} {} is {size} bytes, the manifest says {}",
                self.layer.digest, self.layer.size
            )));
        }
        Ok(())
    }
}

/// Reads back what [`store_single_layer`] stored, its config parsed by `parse`. A manifest of
/// another artifact type, with other than one layer, or with a config over `max_config` bytes is
/// invalid content, and so is a config `parse` refuses: the stored image is not this driver's.
pub fn load_single_layer<C, E: fmt::Display>(
    stored: &Source,
    artifact_type: &str,
    max_config: u64,
    parse: impl FnOnce(&[u8]) -> Result<C, E>,
) -> Result<SingleLayer<C>> {
    let manifest = stored.manifest(None)?;
    let json = manifest.json()?;
    let at = format!("manifest {}", manifest.digest);
    if json["artifactType"] != artifact_type {
        return Err(Error::invalid(format!("artifactType is not {artifact_type}")).within(&at));
    }
    let config = Descriptor::from_json(&json["config"]).map_err(|e| e.within(&at))?;
    let layer = match json["layers"].as_array().map(Vec::as_slice) {
        Some([layer]) => Descriptor::from_json(layer).map_err(|e| e.within(&at))?,
        _ => return Err(Error::invalid("the manifest needs exactly one layer").within(&at)),
    };
    if config.size > max_config {
        return Err(Error::invalid(format!("config {} is {} bytes", config.digest, config.size)).within(&at));
    }
    let bytes = stored.read(Some(&config.digest), 0, config.size as u32)?;
    let config = parse(&bytes).map_err(|e| Error::invalid(e).within(&format!("config {}", config.digest)))?;
    Ok(SingleLayer { manifest, config, layer })
}

/// Refuses a blob fetched for `image` whose digest is not its `contentDigest`, unless that is the
/// digest of the manifest the blob came from. `what` names the blob for the message.
pub fn check_content_digest(image: &Image, what: &str, blob_digest: &str, manifest_digest: Option<&str>) -> Result<()> {
    match &image.content_digest {
        Some(expected) if expected != blob_digest && Some(expected.as_str()) != manifest_digest => {
            let manifest = manifest_digest.map(|d| format!(" in manifest {d}")).unwrap_or_default();
            Err(Error::invalid(format!(
                "bundle.json says contentDigest {expected}, the {what}{manifest} is {blob_digest}"
            )))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests() {
        let config = Descriptor::new("application/vnd.x.config.v1+json", "sha256:c", 2);
        let mut layer = Descriptor::new("application/vnd.x.layer.v1", "sha256:l", 5).to_json();
        layer["annotations"] = json!({ TITLE: "x.img" });
        assert_eq!(
            manifest(Some("application/vnd.x.v1"), &config, vec![layer]).to_string(),
            json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": "application/vnd.x.v1",
                "config": { "mediaType": "application/vnd.x.config.v1+json", "digest": "sha256:c", "size": 2 },
                "layers": [{
                    "mediaType": "application/vnd.x.layer.v1",
                    "digest": "sha256:l",
                    "size": 5,
                    "annotations": { TITLE: "x.img" },
                }],
            })
            .to_string()
        );
        assert_eq!(
            manifest(None, &config, Vec::new()).to_string(),
            json!({ "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config.to_json(), "layers": [] })
                .to_string()
        );
    }

    #[test]
    fn descriptors_round_trip() {
        let descriptor = Descriptor::new("application/octet-stream", "sha256:abcd", 7);
        let read = Descriptor::from_json(&descriptor.to_json()).unwrap();
        assert_eq!(
            (read.media_type, read.digest, read.size),
            (descriptor.media_type, descriptor.digest, descriptor.size)
        );
        assert!(Descriptor::from_json(&json!({ "digest": "sha256:abcd", "size": 7 })).is_err());
    }
}
