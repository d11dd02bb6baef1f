//! The built-in driver for imageType `tarball`: one tar archive (plain, gzip or zstd), from a file,
//! a URL, or a one-layer OCI artifact in a registry (as `oras push` makes).
//!
//! A tarball is there to be extracted, so the driver refuses, when exporting and when verifying,
//! an archive with an entry that would land outside the directory it is extracted into, a link
//! that points outside it, or a device. The host lists the entries and copies the bytes; the
//! archive never enters the guest.

mod compression;
mod names;
mod safety;

use compression::Compression;
use ferry_driver_sdk::ferry::driver::types::TarEntry;
use ferry_driver_sdk::{
    Descriptor, Destination, DestinationKind, Document, Driver, DriverInfo, Error, Image, Result, Source, SourceKind,
    Store, Summary, export_driver, info,
};
use safety::Counts;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const ARTIFACT_TYPE: &str = "application/vnd.ferry.tarball.v1";
const CONFIG_TYPE: &str = "application/vnd.ferry.tarball.config.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const TITLE: &str = "org.opencontainers.image.title";

/// Stored configs are small; anything bigger is not ours.
const MAX_CONFIG: u64 = 64 << 10;

/// The stored artifact's config.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Config {
    file_name: String,
    entries: u64,
    /// Bytes of the regular files.
    size: u64,
}

struct TarballDriver;

impl Driver for TarballDriver {
    fn info() -> DriverInfo {
        DriverInfo {
            name: "tarball".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            image_types: vec!["tarball".into()],
            reads_mapping: false,
        }
    }

    fn fetch(image: Image, origin: &Source, store: &Store) -> Result<Descriptor> {
        let (layer, counts, file_name, manifest_digest) = match origin.kind() {
            SourceKind::File | SourceKind::Http => {
                let counts = check(&image, &origin.location(), origin.tar_entries(None)?)?;
                let compression = Compression::of(&origin.read(None, 0, compression::MAGIC_LEN)?);
                let layer = store.copy_blob(origin, None, compression.layer_type())?;
                let file_name = names::file_name(&image.reference)
                    .map_or_else(|| format!("tarball{}", compression.extension()), str::to_owned);
                (layer, counts, file_name, None)
            }
            SourceKind::Registry => {
                let root = origin.manifest(None)?;
                let (layer, title) = artifact_layer(&image, &root)?;
                let counts =
                    check(&image, &format!("layer {}", layer.digest), origin.tar_entries(Some(&layer.digest))?)?;
                let compression = Compression::of(&origin.read(Some(&layer.digest), 0, compression::MAGIC_LEN)?);
                let stored = store.copy_blob(origin, Some(&layer.digest), &layer.media_type)?;
                let file_name = title.or_else(|| {
                    names::repository_name(&image.reference).map(|name| format!("{name}{}", compression.extension()))
                });
                let file_name = file_name.unwrap_or_else(|| format!("tarball{}", compression.extension()));
                (stored, counts, file_name, Some(root.digest))
            }
            SourceKind::Layout => {
                return Err(Error::unsupported(format!(
                    "{}: a tarball comes from a file, a URL or a registry, not {}",
                    image.key,
                    origin.location()
                )));
            }
        };
        check_content_digest(&image, &layer.digest, manifest_digest.as_deref())?;

        let mut layer_json = descriptor_json(&layer);
        layer_json["annotations"] = json!({ TITLE: file_name });
        let config = Config { file_name, entries: counts.entries, size: counts.size };
        let config = store.put_document(CONFIG_TYPE, &serde_json::to_vec(&config).map_err(Error::failed)?)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": ARTIFACT_TYPE,
            "config": descriptor_json(&config),
            "layers": [layer_json],
        });
        let mut root = store.put_document(OCI_MANIFEST, manifest.to_string().as_bytes())?;
        root.artifact_type = Some(ARTIFACT_TYPE.into());
        store.set_root(&root)?;
        info!(
            "stored {} ({} entries, {} bytes of files, {} bytes) as {}",
            image.reference, counts.entries, counts.size, layer.size, root.digest
        );
        Ok(root)
    }

    fn verify(image: Image, stored: &Source) -> Result<()> {
        let Artifact { config, layer, .. } = load(&image, stored)?;
        let size = stored.size(Some(&layer.digest))?;
        if size != layer.size {
            return Err(Error::invalid(format!(
                "{}: tarball {} is {size} bytes, the manifest says {}",
                image.key, layer.digest, layer.size
            )));
        }
        let counts = check(&image, &format!("tarball {}", layer.digest), stored.tar_entries(Some(&layer.digest))?)?;
        if counts != (Counts { entries: config.entries, size: config.size }) {
            return Err(Error::invalid(format!(
                "{}: tarball {} has {} entries and {} bytes of files, its config says {} and {}",
                image.key, layer.digest, counts.entries, counts.size, config.entries, config.size
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
        let Artifact { manifest, config, layer } = load(&image, stored)?;
        match destination.kind() {
            DestinationKind::Registry => {
                let mut root = manifest.descriptor();
                root.artifact_type = Some(ARTIFACT_TYPE.into());
                destination.copy_artifact(stored, &root, Some(&names::tag(&image.reference, &config.file_name)))
            }
            DestinationKind::Directory => destination.extract_tar(stored, &layer, &names::dir_name(&config.file_name)),
        }
    }

    fn inspect(image: Image, stored: &Source) -> Result<Summary> {
        let Artifact { manifest, config, layer } = load(&image, stored)?;
        let compression = Compression::of(&stored.read(Some(&layer.digest), 0, compression::MAGIC_LEN)?);
        Ok(Summary {
            digest: manifest.digest,
            media_type: manifest.media_type,
            size: layer.size,
            platforms: Vec::new(),
            details: vec![
                ("entries".into(), config.entries.to_string()),
                ("size".into(), config.size.to_string()),
                ("compression".into(), compression.name().into()),
                ("file".into(), config.file_name),
            ],
        })
    }
}

/// The one layer of a registry artifact, and the file name its title annotation gives.
fn artifact_layer(image: &Image, root: &Document) -> Result<(Descriptor, Option<String>)> {
    let json = parse(root)?;
    let media_type = json["mediaType"].as_str().unwrap_or(&root.media_type);
    if ![OCI_MANIFEST, DOCKER_MANIFEST].contains(&media_type) {
        return Err(Error::unsupported(format!(
            "{}: {} is a {media_type}; a tarball is an artifact with one layer",
            image.key, root.digest
        )));
    }
    match json["layers"].as_array().map(Vec::as_slice) {
        Some([layer]) => {
            let title = layer["annotations"][TITLE].as_str().and_then(names::file_name).map(str::to_owned);
            let layer = descriptor(layer).map_err(|e| in_image(image, &format!("manifest {}", root.digest), e))?;
            Ok((layer, title))
        }
        layers => Err(Error::invalid(format!(
            "{}: manifest {} has {} layers; a tarball is an artifact with one",
            image.key,
            root.digest,
            layers.map_or(0, <[Value]>::len)
        ))),
    }
}

/// A stored tarball artifact.
struct Artifact {
    manifest: Document,
    config: Config,
    layer: Descriptor,
}

fn load(image: &Image, stored: &Source) -> Result<Artifact> {
    let manifest = stored.manifest(None)?;
    let json = parse(&manifest)?;
    let at = format!("manifest {}", manifest.digest);
    if json["artifactType"] != ARTIFACT_TYPE {
        return Err(in_image(image, &at, Error::invalid(format!("artifactType is not {ARTIFACT_TYPE}"))));
    }
    let config = descriptor(&json["config"]).map_err(|e| in_image(image, &at, e))?;
    let layer = match json["layers"].as_array().map(Vec::as_slice) {
        Some([layer]) => descriptor(layer).map_err(|e| in_image(image, &at, e))?,
        _ => return Err(in_image(image, &at, Error::invalid("the manifest needs exactly one layer"))),
    };
    if config.size > MAX_CONFIG {
        return Err(in_image(image, &at, Error::invalid(format!("config {} is {} bytes", config.digest, config.size))));
    }
    let bytes = stored.read(Some(&config.digest), 0, config.size as u32)?;
    let config: Config = serde_json::from_slice(&bytes)
        .map_err(|e| in_image(image, &format!("config {}", config.digest), Error::invalid(e)))?;
    if !names::is_plain(&config.file_name) {
        return Err(in_image(
            image,
            &at,
            Error::invalid(format!("fileName {:?} is not a file name", config.file_name)),
        ));
    }
    Ok(Artifact { manifest, config, layer })
}

/// The safety check of `entries`, refused as invalid content naming the image and `what`.
fn check(image: &Image, what: &str, entries: Vec<TarEntry>) -> Result<Counts> {
    safety::check(&entries).map_err(|why| Error::invalid(format!("{}: {what}: unsafe to extract: {why}", image.key)))
}

fn check_content_digest(image: &Image, tar_digest: &str, manifest_digest: Option<&str>) -> Result<()> {
    match &image.content_digest {
        Some(expected) if expected != tar_digest && Some(expected.as_str()) != manifest_digest => {
            let manifest = manifest_digest.map(|d| format!(" in manifest {d}")).unwrap_or_default();
            Err(Error::invalid(format!(
                "{}: bundle.json says contentDigest {expected}, the tarball{manifest} is {tar_digest}",
                image.key
            )))
        }
        _ => Ok(()),
    }
}

fn parse(document: &Document) -> Result<Value> {
    serde_json::from_slice(&document.bytes).map_err(|e| Error::invalid(format!("{}: not JSON: {e}", document.digest)))
}

fn descriptor(json: &Value) -> Result<Descriptor> {
    match (json["mediaType"].as_str(), json["digest"].as_str(), json["size"].as_u64()) {
        (Some(media_type), Some(digest), Some(size)) => Ok(Descriptor::new(media_type, digest, size)),
        _ => Err(Error::invalid("a descriptor needs mediaType, digest and size")),
    }
}

fn descriptor_json(d: &Descriptor) -> Value {
    json!({ "mediaType": d.media_type, "digest": d.digest, "size": d.size })
}

/// `error`, its message prefixed with the image key and `what` it is about; errors from the host
/// keep their own message.
fn in_image(image: &Image, what: &str, error: Error) -> Error {
    let message = format!("{}: {what}: {}", image.key, error.message());
    match error {
        Error::InvalidContent(_) => Error::InvalidContent(message),
        Error::Unsupported(_) => Error::Unsupported(message),
        other => other,
    }
}

export_driver!(TarballDriver);
