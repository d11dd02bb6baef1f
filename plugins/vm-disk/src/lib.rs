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

use ferry_driver_sdk::ferry::driver::types::TarFile;
use ferry_driver_sdk::{
    Descriptor, Destination, DestinationKind, Document, Driver, DriverInfo, Error, Image, Result, Source, SourceKind,
    Store, Summary, export_driver, info,
};
use format::{Disk, Format};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const ARTIFACT_TYPE: &str = "application/vnd.ferry.vm-disk.v1";
const CONFIG_TYPE: &str = "application/vnd.ferry.vm-disk.config.v1+json";
const LAYER_TYPE_PREFIX: &str = "application/vnd.ferry.vm-disk.layer.v1.";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const TITLE: &str = "org.opencontainers.image.title";

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
                container_disk = find_container_disk(&image, origin)?;
                (&container_disk.file, container_disk.path.clone(), Some(container_disk.manifest_digest.as_str()))
            }
            SourceKind::Layout => {
                return Err(Error::unsupported(format!(
                    "{}: a vm-disk image comes from a file, a URL or a registry, not {}",
                    image.key,
                    origin.location()
                )));
            }
        };
        let disk = detect(&image, disk_source, None)?;
        let layer = store.copy_blob(disk_source, None, &layer_type(disk.format))?;
        check_content_digest(&image, &layer.digest, manifest_digest)?;

        let file_name = names::file_name(&path).map_or_else(|| format!("disk.{}", disk.format.name()), str::to_owned);
        let mut layer_json = descriptor_json(&layer);
        layer_json["annotations"] = json!({ TITLE: file_name });
        let config = Config { format: disk.format, virtual_size: disk.virtual_size, file_name };
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
            "stored {} ({}, {} bytes virtual, {} bytes) as {}",
            image.reference,
            disk.format.name(),
            disk.virtual_size,
            layer.size,
            root.digest
        );
        Ok(root)
    }

    fn verify(image: Image, stored: &Source) -> Result<()> {
        let artifact = load(&image, stored)?;
        let (layer, config) = (&artifact.layer, &artifact.config);
        let size = stored.size(Some(&layer.digest))?;
        if size != layer.size {
            return Err(Error::invalid(format!(
                "{}: disk {} is {size} bytes, the manifest says {}",
                image.key, layer.digest, layer.size
            )));
        }
        let found = detect(&image, stored, Some(&layer.digest))?;
        if found != (Disk { format: config.format, virtual_size: config.virtual_size }) {
            return Err(Error::invalid(format!(
                "{}: disk {} is {} of {} bytes, its config says {} of {} bytes",
                image.key,
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
        let artifact = load(&image, stored)?;
        match destination.kind() {
            DestinationKind::Registry => push_container_disk(&image, stored, destination, &artifact),
            DestinationKind::Directory => destination.write_file(stored, &artifact.layer, &artifact.config.file_name),
        }
    }

    fn inspect(image: Image, stored: &Source) -> Result<Summary> {
        let Artifact { manifest, config, layer } = load(&image, stored)?;
        Ok(Summary {
            digest: manifest.digest,
            media_type: manifest.media_type,
            size: layer.size,
            platforms: Vec::new(),
            details: vec![
                ("format".into(), config.format.name().into()),
                ("virtual-size".into(), config.virtual_size.to_string()),
                ("stored-size".into(), layer.size.to_string()),
                ("file".into(), config.file_name),
            ],
        })
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
fn find_container_disk(image: &Image, origin: &Source) -> Result<ContainerDisk> {
    let root = origin.manifest(None)?;
    let mut manifest = parse(&root)?;
    if [OCI_INDEX, DOCKER_LIST].contains(&manifest["mediaType"].as_str().unwrap_or(&root.media_type)) {
        let digest = pick_amd64(&manifest, &root.digest)?;
        manifest = parse(&origin.manifest(Some(&digest))?)?;
    }
    let layers = manifest["layers"].as_array().map(Vec::as_slice).unwrap_or_default();
    for layer in layers.iter().rev() {
        let (Some(media_type), Some(digest)) = (layer["mediaType"].as_str(), layer["digest"].as_str()) else {
            return Err(Error::invalid(format!(
                "{}: a layer of {} has no mediaType or digest",
                image.key, root.digest
            )));
        };
        if !media_type.contains(".tar") {
            continue;
        }
        let entries = origin.tar_entries(Some(digest))?;
        let found = names::disk_entry(&entries).map_err(|e| in_image(image, &format!("layer {digest}"), e))?;
        if let Some(entry) = found {
            return Ok(ContainerDisk {
                file: origin.tar_entry(Some(digest), &entry.name)?,
                path: entry.name.clone(),
                manifest_digest: root.digest,
            });
        }
    }
    Err(Error::not_found(format!(
        "{}: {} is not a KubeVirt containerDisk: no layer holds a file under disk/",
        image.key,
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
    artifact: &Artifact,
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
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor_json(&config),
        "layers": [descriptor_json(&layer)],
    });
    let tag = names::tag(&image.reference, &artifact.config.file_name);
    destination.put_document(OCI_MANIFEST, manifest.to_string().as_bytes(), Some(&tag))
}

/// A stored vm-disk artifact.
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
    if layer.media_type != layer_type(config.format) {
        return Err(in_image(
            image,
            &at,
            Error::invalid(format!("layer type {} does not match format {}", layer.media_type, config.format.name())),
        ));
    }
    Ok(Artifact { manifest, config, layer })
}

/// The format and virtual size of blob `digest` of `source` (or of the source itself).
fn detect(image: &Image, source: &Source, digest: Option<&str>) -> Result<Disk> {
    let size = source.size(digest)?;
    format::detect(size, |offset, len| source.read(digest, offset, len)).map_err(|e| match digest {
        Some(digest) => in_image(image, &format!("disk {digest}"), e),
        None => in_image(image, &source.location(), e),
    })
}

fn check_content_digest(image: &Image, disk_digest: &str, manifest_digest: Option<&str>) -> Result<()> {
    match &image.content_digest {
        Some(expected) if expected != disk_digest && Some(expected.as_str()) != manifest_digest => {
            let manifest = manifest_digest.map(|d| format!(" in manifest {d}")).unwrap_or_default();
            Err(Error::invalid(format!(
                "{}: bundle.json says contentDigest {expected}, the disk{manifest} is {disk_digest}",
                image.key
            )))
        }
        _ => Ok(()),
    }
}

fn layer_type(format: Format) -> String {
    format!("{LAYER_TYPE_PREFIX}{}", format.name())
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

export_driver!(VmDiskDriver);
