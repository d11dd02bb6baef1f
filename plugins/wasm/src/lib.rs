//! The built-in driver for imageType `wasm`: one WebAssembly component (the `wasi:cli/command`
//! installer of a bundle, say), from a `.wasm` file, a URL, or a Wasm OCI artifact in a registry
//! (as `wkg` and `oras` push it).
//!
//! It is stored the way ferry stores the drivers a bundle ships, a Wasm OCI artifact: config
//! `application/vnd.wasm.config.v0+json`, one `application/wasm` layer holding the component byte
//! for byte. Whoever runs the component later reads the root manifest, takes its one
//! `application/wasm` layer and compiles those bytes; the driver only checks, without compiling,
//! that they are a component at all. The component's bytes never enter the guest.

mod names;
mod preamble;
mod wasm_artifact;

use ferry_driver_sdk::artifact::{self, SingleLayer, TITLE};
use ferry_driver_sdk::names::{is_plain, relocation_tag};
use ferry_driver_sdk::{
    Descriptor, Destination, DestinationKind, Driver, DriverInfo, Error, Image, Result, Source, SourceKind, Store,
    Summary, export_driver, info,
};
use serde::{Deserialize, Serialize};
use wasm_artifact::{WASM_CONFIG, WASM_LAYER};

/// Stored configs are small; anything bigger is not ours.
const MAX_CONFIG: u64 = 64 << 10;
/// The largest component ferry takes: installers are a few MiB, a language runtime with its
/// standard library a few tens.
const MAX_COMPONENT: u64 = 64 << 20;

/// The stored artifact's config, as the Wasm OCI artifact layout defines it. No `created` time:
/// exporting the same component twice gives the same digests.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Config {
    architecture: String,
    layer_digests: Vec<String>,
    os: String,
}

impl Config {
    fn of(layer: &Descriptor) -> Self {
        Config { architecture: "wasm".into(), layer_digests: vec![layer.digest.clone()], os: "wasip2".into() }
    }
}

struct WasmDriver;

impl Driver for WasmDriver {
    fn info() -> DriverInfo {
        DriverInfo {
            name: "wasm".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            image_types: vec!["wasm".into()],
            reads_mapping: false,
        }
    }

    fn fetch(image: Image, origin: &Source, store: &Store) -> Result<Descriptor> {
        let (layer, file_name, manifest_digest) = match origin.kind() {
            SourceKind::File | SourceKind::Http => {
                check_component(origin, None, &origin.location())?;
                let layer = store.copy_blob(origin, None, WASM_LAYER)?;
                (layer, names::of_location(&image.reference), None)
            }
            SourceKind::Registry => {
                let root = origin.manifest(None)?;
                let (layer, title) = wasm_artifact::layer(&root.json()?)
                    .map_err(|why| Error::unsupported(format!("manifest {}: {why}", root.digest)))?;
                let layer =
                    Descriptor::from_json(&layer).map_err(|e| e.within(&format!("manifest {}", root.digest)))?;
                check_component(origin, Some(&layer), &format!("layer {}", layer.digest))?;
                let stored = store.copy_blob(origin, Some(&layer.digest), WASM_LAYER)?;
                (stored, names::of_registry_layer(title.as_deref(), &image.reference), Some(root.digest))
            }
            SourceKind::Layout => {
                return Err(Error::unsupported(format!(
                    "a wasm image comes from a file, a URL or a registry, not {}",
                    origin.location()
                )));
            }
        };
        artifact::check_content_digest(&image, "component", &layer.digest, manifest_digest.as_deref())?;

        let config = serde_json::to_vec(&Config::of(&layer)).map_err(Error::failed)?;
        let root = artifact::store_single_layer(store, WASM_CONFIG, WASM_CONFIG, &config, &layer, &file_name)?;
        info!("stored {} ({file_name}, {} bytes) as {}", image.reference, layer.size, root.digest);
        Ok(root)
    }

    fn verify(_image: Image, stored: &Source) -> Result<()> {
        let (artifact, _) = load(stored)?;
        artifact.check_layer_size(stored, "component")?;
        check_component(stored, Some(&artifact.layer), &format!("component {}", artifact.layer.digest))
    }

    fn relocate(
        image: Image,
        stored: &Source,
        destination: &Destination,
        _mapping: Vec<(String, String)>,
    ) -> Result<String> {
        let (artifact, file_name) = load(stored)?;
        match destination.kind() {
            DestinationKind::Registry => {
                let mut root = artifact.manifest.descriptor();
                root.artifact_type = Some(WASM_CONFIG.into());
                let tag = relocation_tag(&image.reference, &file_name, "wasm");
                destination.copy_artifact(stored, &root, Some(&tag))
            }
            DestinationKind::Directory => destination.write_file(stored, &artifact.layer, &file_name),
        }
    }

    fn inspect(_image: Image, stored: &Source) -> Result<Summary> {
        let (artifact, file_name) = load(stored)?;
        let details = vec![
            ("kind".into(), "component".into()),
            ("size".into(), artifact.layer.size.to_string()),
            ("file".into(), file_name),
        ];
        Ok(artifact.summary(details))
    }
}

/// Reads back what `fetch` stored, and the component's file name (the layer's title), refusing
/// anything of another shape: the config must be the one `fetch` writes for this layer, the layer
/// `application/wasm`, titled with a file name, and no bigger than [`MAX_COMPONENT`].
fn load(stored: &Source) -> Result<(SingleLayer<Config>, String)> {
    let artifact = artifact::load_single_layer(stored, WASM_CONFIG, MAX_CONFIG, |config| {
        serde_json::from_slice::<Config>(config)
    })?;
    let manifest = artifact.manifest.json()?;
    let config_type = manifest["config"]["mediaType"].as_str().unwrap_or_default();
    if config_type != WASM_CONFIG {
        return Err(artifact.invalid(format!("config type {config_type:?} is not {WASM_CONFIG}")));
    }
    let layer = &artifact.layer;
    if layer.media_type != WASM_LAYER {
        return Err(artifact.invalid(format!("layer type {:?} is not {WASM_LAYER}", layer.media_type)));
    }
    if layer.size > MAX_COMPONENT {
        return Err(artifact.invalid(too_big(&format!("component {}", layer.digest), layer.size)));
    }
    if artifact.config != Config::of(layer) {
        let message = format!("the config is not {{architecture: wasm, os: wasip2, layerDigests: [{}]}}", layer.digest);
        return Err(artifact.invalid(message));
    }
    let file_name = manifest["layers"][0]["annotations"][TITLE].as_str().unwrap_or_default().to_owned();
    if !is_plain(&file_name) {
        return Err(artifact.invalid(format!("the layer's title {file_name:?} is not a file name")));
    }
    Ok((artifact, file_name))
}

/// Refuses `blob` of `source` (or the source itself) unless it is a component of at most
/// [`MAX_COMPONENT`] bytes; `what` names it for the message.
fn check_component(source: &Source, blob: Option<&Descriptor>, what: &str) -> Result<()> {
    let digest = blob.map(|b| b.digest.as_str());
    let size = match blob {
        Some(blob) => blob.size,
        None => source.size(None)?,
    };
    if size > MAX_COMPONENT {
        return Err(Error::invalid(too_big(what, size)));
    }
    let start = source.read(digest, 0, preamble::LEN)?;
    preamble::check(&start).map_err(|why| Error::invalid(format!("{what} {why}")))
}

fn too_big(what: &str, size: u64) -> String {
    format!("{what} is {size} bytes; ferry takes components of at most {} MiB", MAX_COMPONENT >> 20)
}

export_driver!(WasmDriver);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_is_the_wasm_artifact_layouts_and_has_no_time() {
        let layer = Descriptor::new(WASM_LAYER, "sha256:abcd", 8);
        assert_eq!(
            serde_json::to_string(&Config::of(&layer)).unwrap(),
            r#"{"architecture":"wasm","layerDigests":["sha256:abcd"],"os":"wasip2"}"#
        );
    }
}
