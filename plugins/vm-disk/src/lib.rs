//! The built-in driver for imageType `vm-disk` (and `qcow`, `qcow2`): one virtual machine disk, from
//! a file, a URL, or a KubeVirt containerDisk in a registry.
//!
//! A bundle stores the disk as an OCI artifact whose config records the format and virtual size
//! read from the disk's headers, so `verify` can tell a disk that is not what it claims to be.
//! Relocated to a registry the disk becomes a containerDisk again (a plain image that KubeVirt
//! pulls), to a directory a plain file. The disk's bytes never enter the guest: the host copies
//! them, wraps them in a tar and checks every digest.

mod format;
mod names;

use ferry_driver_sdk::artifact::{self, DOCKER_LIST, OCI_INDEX, OCI_MANIFEST, SingleLayer};
use ferry_driver_sdk::names::{file_name, is_plain, relocation_tag};
use ferry_driver_sdk::{
    Descriptor, Destination, DestinationKind, Driver, DriverInfo, Error, Image, Result, Source, SourceKind, Store,
    Summary, TarFile, export_driver, info,
};
use format::{Disk, Format};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const ARTIFACT_TYPE: &str = "application/vnd.ferry.vm-disk.v1";
const CONFIG_TYPE: &str = "application/vnd.ferry.vm-disk.config.v1+json";
const LAYER_TYPE_PREFIX: &str = "application/vnd.ferry.vm-disk.layer.v1.";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// KubeVirt reads the disk from `/disk/` as the qemu user (uid and gid 107).
const QEMU_ID: u32 = 107;
const DISK_MODE: u32 = 0o440;

/// Stored configs are small; anything bigger is not ours.
const MAX_CONFIG: u64 = 64 << 10;

/// The stored artifact's config.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Config {
    format: Format,
    virtual_size: u64,
    file_name: String,
}

struct VmDiskDriver;

impl Driver for VmDiskDriver {
    fn info() -> DriverInfo {
        DriverInfo {
            name: "vm-disk".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            image_types: vec!["vm-disk".into(), "qcow".into(), "qcow2".into()],
            reads_mapping: false,
        }
    }

    fn fetch(image: Image, origin: &Source, store: &Store) -> Result<Descriptor> {
        let container_disk;
        let (disk_source, path, manifest_digest) = match origin.kind() {
            SourceKind::File | SourceKind::Http => (origin, image.reference.clone(), None),
            SourceKind::Registry => {
                container_disk = find_container_disk(origin)?;
                (&container_disk.file, container_disk.path.clone(), Some(container_disk.manifest_digest.as_str()))
            }
            SourceKind::Layout => {
                return Err(Error::unsupported(format!(
                    "a vm-disk image comes from a file, a URL or a registry, not {}",
                    origin.location()
                )));
            }
        };
        let disk = detect(disk_source, None)?;
        let layer = store.copy_blob(disk_source, None, &layer_type(disk.format))?;
        artifact::check_content_digest(&image, "disk", &layer.digest, manifest_digest)?;

        let file_name = file_name(&path).map_or_else(|| format!("disk.{}", disk.format.name()), str::to_owned);
        let config = Config { format: disk.format, virtual_size: disk.virtual_size, file_name };
        let config_json = serde_json::to_vec(&config).map_err(Error::failed)?;
        let root =
            artifact::store_single_layer(store, ARTIFACT_TYPE, CONFIG_TYPE, &config_json, &layer, &config.file_name)?;
        info!(
            "stored {} ({}, {} bytes virtual, {} bytes) as {}",
            image.reference,
            disk.format.name(),
            disk.virtual_size,
            layer.size,
            root.digest
        );
        Ok(root)
    }

    fn verify(_image: Image, stored: &Source) -> Result<()> {
        let artifact = load(stored)?;
        artifact.check_layer_size(stored, "disk")?;
        let (layer, config) = (&artifact.layer, &artifact.config);
        let found = detect(stored, Some(&layer.digest))?;
        if found != (Disk { format: config.format, virtual_size: config.virtual_size }) {
            return Err(Error::invalid(format!(
                "disk {} is {} of {} bytes, its config says {} of {} bytes",
                layer.digest,
                found.format.name(),
                found.virtual_size,
                config.format.name(),
                config.virtual_size
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
        let artifact = load(stored)?;
        match destination.kind() {
            DestinationKind::Registry => push_container_disk(&image, stored, destination, &artifact),
            DestinationKind::Directory => destination.write_file(stored, &artifact.layer, &artifact.config.file_name),
        }
    }

    fn inspect(_image: Image, stored: &Source) -> Result<Summary> {
        let artifact = load(stored)?;
        let config = &artifact.config;
        Ok(artifact.summary(vec![
            ("format".into(), config.format.name().into()),
            ("virtual-size".into(), config.virtual_size.to_string()),
            ("stored-size".into(), artifact.layer.size.to_string()),
            ("file".into(), config.file_name.clone()),
        ]))
    }
}

/// The disk inside a containerDisk image: a source of the file, its path in the layer, and the
/// digest of the manifest or index the reference names.
struct ContainerDisk {
    file: Source,
    path: String,
    manifest_digest: String,
}

/// The one file under `disk/` in the top-most layer that has one (linux/amd64 of an index).
fn find_container_disk(origin: &Source) -> Result<ContainerDisk> {
    let root = origin.manifest(None)?;
    let mut manifest = root.json()?;
    if [OCI_INDEX, DOCKER_LIST].contains(&manifest["mediaType"].as_str().unwrap_or(&root.media_type)) {
        let digest = pick_amd64(&manifest, &root.digest)?;
        manifest = origin.manifest(Some(&digest))?.json()?;
    }
    let layers = manifest["layers"].as_array().map(Vec::as_slice).unwrap_or_default();
    for layer in layers.iter().rev() {
        let (Some(media_type), Some(digest)) = (layer["mediaType"].as_str(), layer["digest"].as_str()) else {
            return Err(Error::invalid(format!("a layer of {} has no mediaType or digest", root.digest)));
        };
        if !media_type.contains(".tar") {
            continue;
        }
        let entries = origin.tar_entries(Some(digest))?;
        let found = names::disk_entry(&entries).map_err(|e| e.within(&format!("layer {digest}")))?;
        if let Some(entry) = found {
            return Ok(ContainerDisk {
                file: origin.tar_entry(Some(digest), &entry.name)?,
                path: entry.name.clone(),
                manifest_digest: root.digest,
            });
        }
    }
    Err(Error::not_found(format!(
        "{} is not a KubeVirt containerDisk: no layer holds a file under disk/",
        origin.location()
    )))
}

/// The linux/amd64 entry of an index, else its first.
fn pick_amd64(index: &Value, digest: &str) -> Result<String> {
    let entries = index["manifests"].as_array().map(Vec::as_slice).unwrap_or_default();
    let amd64 = entries.iter().find(|e| e["platform"]["os"] == "linux" && e["platform"]["architecture"] == "amd64");
    amd64
        .or(entries.first())
        .and_then(|entry| entry["digest"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| Error::invalid(format!("index {digest} lists no manifest")))
}

/// A KubeVirt containerDisk: one uncompressed layer holding `disk/<file>`, owned by the qemu user.
fn push_container_disk(
    image: &Image,
    stored: &Source,
    destination: &Destination,
    artifact: &SingleLayer<Config>,
) -> Result<String> {
    let file =
        TarFile { name: format!("disk/{}", artifact.config.file_name), mode: DISK_MODE, uid: QEMU_ID, gid: QEMU_ID };
    let layer = destination.copy_blob_as_tar(stored, &artifact.layer, &file)?;
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": [layer.digest] },
        "config": {},
    });
    let config = destination.put_blob(OCI_CONFIG, config.to_string().as_bytes())?;
    let manifest = artifact::manifest(None, &config, vec![layer.to_json()]);
    let tag = relocation_tag(&image.reference, &artifact.config.file_name, "disk");
    destination.put_document(OCI_MANIFEST, manifest.to_string().as_bytes(), Some(&tag))
}

fn load(stored: &Source) -> Result<SingleLayer<Config>> {
    let artifact = artifact::load_single_layer(stored, ARTIFACT_TYPE, MAX_CONFIG, |config| {
        serde_json::from_slice::<Config>(config)
    })?;
    let (config, layer) = (&artifact.config, &artifact.layer);
    if !is_plain(&config.file_name) {
        return Err(artifact.invalid(format!("fileName {:?} is not a file name", config.file_name)));
    }
    if layer.media_type != layer_type(config.format) {
        let message = format!("layer type {} does not match format {}", layer.media_type, config.format.name());
        return Err(artifact.invalid(message));
    }
    Ok(artifact)
}

/// The format and virtual size of blob `digest` of `source` (or of the source itself).
fn detect(source: &Source, digest: Option<&str>) -> Result<Disk> {
    let size = source.size(digest)?;
    format::detect(size, |offset, len| source.read(digest, offset, len)).map_err(|e| match digest {
        Some(digest) => e.within(&format!("disk {digest}")),
        None => e.within(&source.location()),
    })
}

fn layer_type(format: Format) -> String {
    format!("{LAYER_TYPE_PREFIX}{}", format.name())
}

export_driver!(VmDiskDriver);
