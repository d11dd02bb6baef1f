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
use ferry_driver_sdk::artifact::{self, DOCKER_MANIFEST, OCI_MANIFEST, SingleLayer, TITLE};
use ferry_driver_sdk::names::{file_name, is_plain, relocation_tag, repository_name};
use ferry_driver_sdk::{
    Descriptor, Destination, DestinationKind, Document, Driver, DriverInfo, Error, Image, Result, Source, SourceKind,
    Store, Summary, TarEntry, export_driver, info,
};
use safety::Counts;
use serde::{Deserialize, Serialize};
use serde_json::Value;

const ARTIFACT_TYPE: &str = "application/vnd.ferry.tarball.v1";
const CONFIG_TYPE: &str = "application/vnd.ferry.tarball.config.v1+json";

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
                let counts = check(&origin.location(), origin.tar_entries(None)?)?;
                let compression = Compression::of(&origin.read(None, 0, compression::MAGIC_LEN)?);
                let layer = store.copy_blob(origin, None, compression.layer_type())?;
                let file_name = file_name(&image.reference)
                    .map_or_else(|| format!("tarball{}", compression.extension()), str::to_owned);
                (layer, counts, file_name, None)
            }
            SourceKind::Registry => {
                let root = origin.manifest(None)?;
                let (layer, title) = artifact_layer(&root)?;
                let counts = check(&format!("layer {}", layer.digest), origin.tar_entries(Some(&layer.digest))?)?;
                let compression = Compression::of(&origin.read(Some(&layer.digest), 0, compression::MAGIC_LEN)?);
                let stored = store.copy_blob(origin, Some(&layer.digest), &layer.media_type)?;
                let file_name = title.or_else(|| {
                    repository_name(&image.reference).map(|name| format!("{name}{}", compression.extension()))
                });
                let file_name = file_name.unwrap_or_else(|| format!("tarball{}", compression.extension()));
                (stored, counts, file_name, Some(root.digest))
            }
            SourceKind::Layout => {
                return Err(Error::unsupported(format!(
                    "a tarball comes from a file, a URL or a registry, not {}",
                    origin.location()
                )));
            }
        };
        artifact::check_content_digest(&image, "tarball", &layer.digest, manifest_digest.as_deref())?;

        let config = Config { file_name, entries: counts.entries, size: counts.size };
        let config_json = serde_json::to_vec(&config).map_err(Error::failed)?;
        let root =
            artifact::store_single_layer(store, ARTIFACT_TYPE, CONFIG_TYPE, &config_json, &layer, &config.file_name)?;
        info!(
            "stored {} ({} entries, {} bytes of files, {} bytes) as {}",
            image.reference, counts.entries, counts.size, layer.size, root.digest
        );
        Ok(root)
    }

    fn verify(_image: Image, stored: &Source) -> Result<()> {
        let artifact = load(stored)?;
        artifact.check_layer_size(stored, "tarball")?;
        let SingleLayer { config, layer, .. } = artifact;
        let counts = check(&format!("tarball {}", layer.digest), stored.tar_entries(Some(&layer.digest))?)?;
        if counts != (Counts { entries: config.entries, size: config.size }) {
            return Err(Error::invalid(format!(
                "tarball {} has {} entries and {} bytes of files, its config says {} and {}",
                layer.digest, counts.entries, counts.size, config.entries, config.size
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
        let SingleLayer { manifest, config, layer } = load(stored)?;
        match destination.kind() {
            DestinationKind::Registry => {
                let mut root = manifest.descriptor();
                root.artifact_type = Some(ARTIFACT_TYPE.into());
                let tag = relocation_tag(&image.reference, &config.file_name, "tarball");
                destination.copy_artifact(stored, &root, Some(&tag))
            }
            DestinationKind::Directory => destination.extract_tar(stored, &layer, &names::dir_name(&config.file_name)),
        }
    }

    fn inspect(_image: Image, stored: &Source) -> Result<Summary> {
        let artifact = load(stored)?;
        let compression = Compression::of(&stored.read(Some(&artifact.layer.digest), 0, compression::MAGIC_LEN)?);
        let config = &artifact.config;
        Ok(artifact.summary(vec![
            ("entries".into(), config.entries.to_string()),
            ("size".into(), config.size.to_string()),
            ("compression".into(), compression.name().into()),
            ("file".into(), config.file_name.clone()),
        ]))
    }
}

/// The one layer of a registry artifact, and the file name its title annotation gives.
fn artifact_layer(root: &Document) -> Result<(Descriptor, Option<String>)> {
    let json = root.json()?;
    let media_type = json["mediaType"].as_str().unwrap_or(&root.media_type);
    if ![OCI_MANIFEST, DOCKER_MANIFEST].contains(&media_type) {
        return Err(Error::unsupported(format!(
            "{} is a {media_type}; a tarball is an artifact with one layer",
            root.digest
        )));
    }
    match json["layers"].as_array().map(Vec::as_slice) {
        Some([layer]) => {
            let title = layer["annotations"][TITLE].as_str().and_then(file_name).map(str::to_owned);
            let layer = Descriptor::from_json(layer).map_err(|e| e.within(&format!("manifest {}", root.digest)))?;
            Ok((layer, title))
        }
        layers => Err(Error::invalid(format!(
            "manifest {} has {} layers; a tarball is an artifact with one",
            root.digest,
            layers.map_or(0, <[Value]>::len)
        ))),
    }
}

fn load(stored: &Source) -> Result<SingleLayer<Config>> {
    let artifact = artifact::load_single_layer(stored, ARTIFACT_TYPE, MAX_CONFIG, |config| {
        serde_json::from_slice::<Config>(config)
    })?;
    if !is_plain(&artifact.config.file_name) {
        return Err(artifact.invalid(format!("fileName {:?} is not a file name", artifact.config.file_name)));
    }
    Ok(artifact)
}

/// The safety check of `entries`, refused as invalid content naming the image and `what`.
fn check(what: &str, entries: Vec<TarEntry>) -> Result<Counts> {
    safety::check(&entries).map_err(|why| Error::invalid(format!("{what}: unsafe to extract: {why}")))
}

export_driver!(TarballDriver);
