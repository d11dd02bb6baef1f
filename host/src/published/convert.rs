//! A bundle as an OCI index and back, with no IO (docs/registries.md): the bundle manifest that
//! holds bundle.json as its config, the index that lists it first, then the invocation images,
//! the other images and the drivers the bundle ships, with the annotations cnab-to-oci writes;
//! and, reading, the same index from ferry or cnab-to-oci (its OCI and Docker fallbacks), and
//! the relocation mapping it implies.

use crate::bundle::Bundle;
use crate::mapping::RelocationMapping;
use crate::oci::media_types::{DOCKER_LIST, DOCKER_MANIFEST, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST};
use crate::oci::{Descriptor, Digest};
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;

/// The bundle config's media type as cnab-to-oci writes it (CNAB 201 says
/// `application/vnd.cnab.bundle.config.v1+json`; no tool writes that).
pub const CNAB_CONFIG: &str = "application/vnd.cnab.config.v1+json";
/// The spec's spelling, read too.
pub const CNAB_SPEC_CONFIG: &str = "application/vnd.cnab.bundle.config.v1+json";
/// cnab-to-oci's last fallback: a Docker schema2 manifest whose config (and only layer) is
/// bundle.json under Docker's image config type.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// On every entry of the index: what it is.
pub const MANIFEST_TYPE: &str = "io.cnab.manifest.type";
/// On component entries: the key in bundle.json's `images`.
pub const COMPONENT_NAME: &str = "io.cnab.component.name";
/// On an entry ferry adds for a driver the bundle ships: the driver's name. Its own annotation,
/// not an `io.cnab.manifest.type`: CNAB defines no such type.
pub const DRIVER_NAME: &str = "io.ferry.driver.name";

const TYPE_CONFIG: &str = "config";
const TYPE_INVOCATION: &str = "invocation";
const TYPE_COMPONENT: &str = "component";

/// The manifest ferry writes for bundle.json (`bytes`, canonical JSON): its bytes and descriptor.
pub fn bundle_manifest(bytes: &[u8]) -> (Vec<u8>, Descriptor) {
    let config = Descriptor::new(CNAB_CONFIG, Digest::of(bytes), bytes.len() as u64);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": [],
    }))
    .expect("a JSON value serializes");
    let descriptor = Descriptor::new(OCI_MANIFEST, Digest::of(&manifest), manifest.len() as u64);
    (manifest, descriptor)
}

/// The index of a published bundle: `manifest` (the bundle manifest) first, then every image
/// of `bundle` in [`Bundle::all_images`] order (invocation images, then `images` by key) with
/// the descriptor `images` has for its key, then the `drivers` by name.
pub fn index(
    bundle: &Bundle,
    manifest: &Descriptor,
    images: &BTreeMap<String, Descriptor>,
    drivers: &BTreeMap<String, Descriptor>,
) -> Result<Vec<u8>> {
    let entry = |d: &Descriptor, annotations: &[(&str, &str)]| {
        let mut d = Descriptor::new(d.media_type.clone(), d.digest.clone(), d.size);
        d.annotations = annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        d
    };
    let mut manifests = vec![entry(manifest, &[(MANIFEST_TYPE, TYPE_CONFIG)])];
    for (key, spec) in bundle.all_images() {
        let d = images.get(&key).with_context(|| format!("image {key} ({}) was not pushed", spec.image))?;
        if key.starts_with("invocationImages[") {
            manifests.push(entry(d, &[(MANIFEST_TYPE, TYPE_INVOCATION)]));
        } else {
            manifests.push(entry(d, &[(MANIFEST_TYPE, TYPE_COMPONENT), (COMPONENT_NAME, &key)]));
        }
    }
    for (name, d) in drivers {
        manifests.push(entry(d, &[(DRIVER_NAME, name)]));
    }
    let doc = &bundle.doc;
    let mut annotations = BTreeMap::from([
        ("io.cnab.runtime_version".to_owned(), doc.schema_version.clone()),
        ("org.opencontainers.artifactType".to_owned(), "application/vnd.cnab.manifest.v1".to_owned()),
        ("org.opencontainers.image.title".to_owned(), doc.name.clone()),
        ("org.opencontainers.image.version".to_owned(), doc.version.clone()),
        ("org.opencontainers.image.description".to_owned(), doc.description.clone().unwrap_or_default()),
    ]);
    if let Some(keywords) = &doc.keywords {
        annotations.insert("io.cnab.keywords".into(), serde_json::to_string(keywords)?);
    }
    if let Some(maintainers) = &doc.maintainers {
        annotations.insert("org.opencontainers.image.authors".into(), serde_json::to_string(maintainers)?);
    }
    Ok(serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
        "annotations": annotations,
    }))?)
}

/// What a published bundle's index lists.
#[derive(Debug, PartialEq, Eq)]
pub struct Listing {
    /// The bundle manifest.
    pub manifest: Descriptor,
    /// Invocation images, in order.
    pub invocation: Vec<Descriptor>,
    /// Other images, by their key in `images`.
    pub components: BTreeMap<String, Descriptor>,
    /// The drivers the bundle ships, by name.
    pub drivers: BTreeMap<String, Descriptor>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    config: Option<serde_json::Value>,
}

/// Reads the index `bytes` that `what` (the reference) names; anything that is not a bundle's
/// index is refused, saying what it is instead.
pub fn read_index(bytes: &[u8], what: &str) -> Result<Listing> {
    let index: Index = serde_json::from_slice(bytes)
        .with_context(|| format!("{what}: not an OCI index (a published bundle is one)"))?;
    if index.config.is_some() || matches!(index.media_type.as_deref(), Some(OCI_MANIFEST | DOCKER_MANIFEST)) {
        bail!("{what} is an image manifest, not a CNAB bundle (a published bundle is an index)");
    }
    if let Some(media_type) = index.media_type.as_deref().filter(|t| ![OCI_INDEX, DOCKER_LIST].contains(t)) {
        bail!("{what}: media type {media_type:?} is not an OCI index or Docker manifest list");
    }
    let manifests = index.manifests.unwrap_or_default();
    if !manifests.iter().any(|d| d.annotations.contains_key(MANIFEST_TYPE)) {
        bail!("{what} is an image index, not a CNAB bundle: none of its manifests has an {MANIFEST_TYPE} annotation");
    }
    let mut configs = Vec::new();
    let (mut invocation, mut components, mut drivers) = (Vec::new(), BTreeMap::new(), BTreeMap::new());
    for (i, d) in manifests.into_iter().enumerate() {
        let at = format!("{what}: manifests[{i}] ({})", d.digest);
        if let Some(name) = d.annotations.get(DRIVER_NAME) {
            drivers.insert(name.clone(), d);
            continue;
        }
        match d.annotations.get(MANIFEST_TYPE).map(String::as_str) {
            Some(TYPE_CONFIG) => configs.push(d),
            Some(TYPE_INVOCATION) => invocation.push(d),
            Some(TYPE_COMPONENT) => {
                let name = d
                    .annotations
                    .get(COMPONENT_NAME)
                    .cloned()
                    .with_context(|| format!("{at}: a component without the {COMPONENT_NAME} annotation"))?;
                if components.insert(name.clone(), d).is_some() {
                    bail!("{at}: component {name:?} is listed twice");
                }
            }
            Some(other) => bail!("{at}: unknown {MANIFEST_TYPE} {other:?}"),
            None => bail!("{at}: no {MANIFEST_TYPE} annotation"),
        }
    }
    let manifest = match configs.len() {
        0 => bail!("{what} is not a CNAB bundle: no manifest in its index is annotated {MANIFEST_TYPE}={TYPE_CONFIG}"),
        1 => configs.remove(0),
        _ => bail!("{what}: its index lists {} bundle manifests ({MANIFEST_TYPE}={TYPE_CONFIG})", configs.len()),
    };
    if ![OCI_MANIFEST, DOCKER_MANIFEST].contains(&manifest.media_type.as_str()) {
        bail!("{what}: the bundle manifest {} has media type {:?}", manifest.digest, manifest.media_type);
    }
    Ok(Listing { manifest, invocation, components, drivers })
}

/// The config descriptor of bundle manifest `bytes`: bundle.json, under one of the media types
/// cnab-to-oci writes (its own, then OCI's image config, then Docker's) or CNAB 201's.
pub fn read_bundle_manifest(bytes: &[u8], what: &str) -> Result<Descriptor> {
    #[derive(serde::Deserialize)]
    struct Manifest {
        config: Option<Descriptor>,
    }
    let manifest: Manifest =
        serde_json::from_slice(bytes).with_context(|| format!("{what}: the bundle manifest is not a manifest"))?;
    let config = manifest.config.with_context(|| format!("{what}: the bundle manifest has no config"))?;
    if ![CNAB_CONFIG, CNAB_SPEC_CONFIG, OCI_CONFIG, DOCKER_CONFIG].contains(&config.media_type.as_str()) {
        bail!(
            "{what}: the bundle manifest's config {} has media type {:?}, not bundle.json's ({CNAB_CONFIG})",
            config.digest,
            config.media_type
        );
    }
    if config.size > crate::bundle::MAX_BUNDLE_JSON {
        bail!("{what}: the bundle config is {} bytes, more than a bundle.json may have", config.size);
    }
    Ok(config)
}

/// Where `bundle`'s images are in `repository` (`host/path`, no tag): every image's original
/// reference to `repository@DIGEST`, as cnab-to-oci derives it on pull. Every image of the
/// bundle must be listed, and only those.
pub fn relocation_mapping(listing: &Listing, bundle: &Bundle, repository: &str) -> Result<RelocationMapping> {
    let invocation = &bundle.doc.invocation_images;
    if listing.invocation.len() != invocation.len() {
        bail!("the index lists {} invocation images, bundle.json has {}", listing.invocation.len(), invocation.len());
    }
    let images = bundle.doc.images.clone().unwrap_or_default();
    if let Some(unknown) = listing.components.keys().find(|k| !images.contains_key(*k)) {
        bail!("the index lists component {unknown:?}, which bundle.json's images do not have");
    }
    let mut pairs = Vec::new();
    for (spec, d) in invocation.iter().zip(&listing.invocation) {
        pairs.push((spec.image.clone(), format!("{repository}@{}", d.digest)));
    }
    for (key, spec) in &images {
        let d =
            listing.components.get(key).with_context(|| format!("image {key} ({}) is not in the index", spec.image))?;
        pairs.push((spec.image.clone(), format!("{repository}@{}", d.digest)));
    }
    Ok(RelocationMapping::from_pairs(pairs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn bundle(images: Value) -> Bundle {
        let doc = json!({
            "schemaVersion": "v1.2.0", "name": "shop", "version": "1.0.0", "keywords": ["a", "b"],
            "maintainers": [{"name": "Ann"}],
            "invocationImages": [{ "image": "src.example/shop/installer:1" }],
            "images": images,
        });
        Bundle::from_bytes(serde_jcs::to_vec(&doc).unwrap(), "test").unwrap()
    }

    fn descriptor(seed: &[u8]) -> Descriptor {
        Descriptor::new(OCI_MANIFEST, Digest::of(seed), 100 + seed.len() as u64)
    }

    #[test]
    fn an_index_lists_the_bundle_manifest_invocation_images_components_then_drivers_and_reads_back() {
        let b = bundle(json!({
            "web": { "image": "src.example/shop/web:2" },
            "disk": { "image": "disks/root.qcow2", "imageType": "vm-disk" },
        }));
        let (manifest_bytes, manifest) = bundle_manifest(b.bytes());
        let doc: Value = serde_json::from_slice(&manifest_bytes).unwrap();
        assert_eq!(doc["config"]["mediaType"], CNAB_CONFIG);
        assert_eq!(doc["config"]["digest"], Digest::of(b.bytes()).to_string());
        let images = BTreeMap::from([
            ("invocationImages[0]".to_owned(), descriptor(b"installer")),
            ("web".to_owned(), descriptor(b"web")),
            ("disk".to_owned(), descriptor(b"disk")),
        ]);
        let drivers = BTreeMap::from([("disks".to_owned(), descriptor(b"driver"))]);
        let bytes = index(&b, &manifest, &images, &drivers).unwrap();
        let doc: Value = serde_json::from_slice(&bytes).unwrap();
        let types: Vec<&Value> = doc["manifests"].as_array().unwrap().iter().map(|m| &m["annotations"]).collect();
        assert_eq!(
            types,
            [
                &json!({ MANIFEST_TYPE: "config" }),
                &json!({ MANIFEST_TYPE: "invocation" }),
                &json!({ MANIFEST_TYPE: "component", COMPONENT_NAME: "disk" }),
                &json!({ MANIFEST_TYPE: "component", COMPONENT_NAME: "web" }),
                &json!({ DRIVER_NAME: "disks" }),
            ]
        );
        assert_eq!(doc["annotations"]["io.cnab.keywords"], r#"["a","b"]"#);
        assert_eq!(doc["annotations"]["io.cnab.runtime_version"], "v1.2.0");
        assert_eq!(doc["annotations"]["org.opencontainers.image.title"], "shop");
        assert_eq!(doc["annotations"]["org.opencontainers.image.authors"], r#"[{"name":"Ann"}]"#);

        let listing = read_index(&bytes, "r").unwrap();
        assert_eq!(listing.manifest.digest, manifest.digest);
        assert_eq!(
            listing.invocation,
            [descriptor(b"installer")].map(|mut d| {
                d.annotations.insert(MANIFEST_TYPE.into(), "invocation".into());
                d
            })
        );
        assert_eq!(listing.drivers["disks"].digest, Digest::of(b"driver"));
        let mapping = relocation_mapping(&listing, &b, "site.example/shop").unwrap();
        assert_eq!(
            mapping.get("src.example/shop/web:2"),
            Some(format!("site.example/shop@{}", Digest::of(b"web")).as_str())
        );
        assert_eq!(
            mapping.get("disks/root.qcow2"),
            Some(format!("site.example/shop@{}", Digest::of(b"disk")).as_str())
        );
        assert_eq!(read_bundle_manifest(&manifest_bytes, "r").unwrap().digest, Digest::of(b.bytes()));
    }

    #[test]
    fn cnab_to_oci_bundle_manifests_are_read_in_all_three_forms() {
        let config = Digest::of(b"{}");
        // Go's encoding/json: no mediaType, "layers":null.
        let oci = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{CNAB_CONFIG}","digest":"{config}","size":2}},"layers":null}}"#
        );
        let oci_config = oci.replace(CNAB_CONFIG, OCI_CONFIG);
        let docker = format!(
            "{{\n   \"schemaVersion\": 2,\n   \"mediaType\": \"{DOCKER_MANIFEST}\",\n   \"config\": {{\n      \"mediaType\": \"{DOCKER_CONFIG}\",\n      \"size\": 2,\n      \"digest\": \"{config}\"\n   }},\n   \"layers\": [\n      {{\n         \"mediaType\": \"{DOCKER_CONFIG}\",\n         \"size\": 2,\n         \"digest\": \"{config}\"\n      }}\n   ]\n}}"
        );
        for manifest in [oci, oci_config, docker] {
            assert_eq!(read_bundle_manifest(manifest.as_bytes(), "r").unwrap().digest, config, "{manifest}");
            // What a registry client walks: `"layers": null` is no layers.
            let children = crate::oci::children(manifest.as_bytes()).unwrap();
            assert!(children.iter().all(|c| c.digest == config), "{manifest}");
        }
        let image = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[]}}"#
        )
        .replace(OCI_CONFIG, "application/vnd.example.other+json");
        let err = read_bundle_manifest(image.as_bytes(), "r").unwrap_err().to_string();
        assert!(err.contains("not bundle.json's"), "{err}");
    }

    #[test]
    fn what_is_not_a_bundle_index_is_refused_saying_what_it_is() {
        let d = descriptor(b"x");
        let plain = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [d] });
        let err = read_index(&serde_json::to_vec(&plain).unwrap(), "r").unwrap_err().to_string();
        assert!(err.contains("is an image index, not a CNAB bundle"), "{err}");
        let manifest = json!({ "schemaVersion": 2, "config": d, "layers": [] });
        let err = read_index(&serde_json::to_vec(&manifest).unwrap(), "r").unwrap_err().to_string();
        assert!(err.contains("is an image manifest, not a CNAB bundle"), "{err}");
        let mut invocation = d.clone();
        invocation.annotations.insert(MANIFEST_TYPE.into(), "invocation".into());
        let no_config = json!({ "schemaVersion": 2, "manifests": [invocation] });
        let err = read_index(&serde_json::to_vec(&no_config).unwrap(), "r").unwrap_err().to_string();
        assert!(err.contains("no manifest in its index is annotated io.cnab.manifest.type=config"), "{err}");
    }

    #[test]
    fn a_listing_that_does_not_match_bundle_json_is_refused() {
        let b = bundle(json!({ "web": { "image": "src.example/shop/web:2" } }));
        let (_, manifest) = bundle_manifest(b.bytes());
        let images = BTreeMap::from([
            ("invocationImages[0]".to_owned(), descriptor(b"i")),
            ("web".to_owned(), descriptor(b"w")),
        ]);
        let mut listing = read_index(&index(&b, &manifest, &images, &BTreeMap::new()).unwrap(), "r").unwrap();
        listing.components.insert("db".into(), descriptor(b"db"));
        let err = relocation_mapping(&listing, &b, "x/y").unwrap_err().to_string();
        assert!(err.contains("\"db\""), "{err}");
        listing.components.clear();
        let err = relocation_mapping(&listing, &b, "x/y").unwrap_err().to_string();
        assert!(err.contains("image web"), "{err}");
    }
}
