use super::Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The annotation that names an image in an OCI layout's index.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

use super::media_types::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};

/// Manifests and indexes are capped at this size wherever ferry reads one (registries cap them
/// at 4 MiB too).
pub const MAX_DOCUMENT: u64 = 4 << 20;

/// Whether content of this media type is a manifest or index that refers to other content.
pub fn is_document(media_type: &str) -> bool {
    matches!(media_type, OCI_INDEX | OCI_MANIFEST | DOCKER_LIST | DOCKER_MANIFEST)
}

/// An OCI content descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

impl Descriptor {
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            artifact_type: None,
            annotations: BTreeMap::new(),
            platform: None,
        }
    }
}

#[derive(Deserialize)]
struct Links {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    config: Option<Descriptor>,
    // `null` as well as absent: cnab-to-oci writes its bundle manifests with `"layers": null`.
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

/// What a manifest or index refers to: its config, layers and child manifests (not its subject,
/// which points back at another image). A document whose links cannot be read (not JSON, a
/// digest of another algorithm, a non-string annotation) is an error, never a leaf: treated as
/// childless, it would be copied without the blobs it needs.
pub fn children(document: &[u8]) -> anyhow::Result<Vec<Descriptor>> {
    let links = serde_json::from_slice::<Links>(document)
        .map_err(|e| anyhow::anyhow!("its config, layers or manifests are not OCI descriptors: {e}"))?;
    Ok(links
        .config
        .into_iter()
        .chain(links.layers.into_iter().flatten())
        .chain(links.manifests.into_iter().flatten())
        .collect())
}

/// The media type a manifest or index declares, or the one its shape implies.
pub fn media_type_of(document: &[u8]) -> Option<String> {
    let links = serde_json::from_slice::<Links>(document).ok()?;
    let is_index = links.manifests.is_some_and(|m| !m.is_empty());
    links.media_type.or_else(|| Some(if is_index { OCI_INDEX } else { OCI_MANIFEST }.to_owned()))
}
