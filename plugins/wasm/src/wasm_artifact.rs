//! The Wasm OCI artifact layout (CNCF TAG Runtime, as `wkg` and `oras` push components): an OCI
//! image manifest whose config is `application/vnd.wasm.config.v0+json` (or, with an empty
//! config, whose `artifactType` is) and whose one layer is the component, `application/wasm`.

use ferry_driver_sdk::artifact::{OCI_MANIFEST, TITLE};
use serde_json::Value;

pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
pub const WASM_LAYER: &str = "application/wasm";

/// The component layer of `manifest` (its JSON) and the file name its title annotation gives;
/// why `manifest` is not a Wasm OCI artifact otherwise.
pub fn layer(manifest: &Value) -> Result<(Value, Option<String>), String> {
    let media_type = manifest["mediaType"].as_str().unwrap_or_default();
    if media_type != OCI_MANIFEST {
        return Err(format!("{media_type:?} is not an OCI image manifest; a wasm image is a Wasm OCI artifact"));
    }
    let config_type = manifest["config"]["mediaType"].as_str().unwrap_or_default();
    if config_type != WASM_CONFIG && manifest["artifactType"] != WASM_CONFIG {
        return Err(format!("config type {config_type:?} is not {WASM_CONFIG}; a wasm image is a Wasm OCI artifact"));
    }
    match manifest["layers"].as_array().map(Vec::as_slice) {
        Some([layer]) if layer["mediaType"] == WASM_LAYER => {
            let title = layer["annotations"][TITLE].as_str().map(str::to_owned);
            Ok((layer.clone(), title))
        }
        Some([layer]) => Err(format!(
            "layer type {} is not {WASM_LAYER}",
            layer["mediaType"].as_str().map_or_else(|| "missing".to_owned(), |t| format!("{t:?}"))
        )),
        layers => {
            Err(format!("{} layers; a Wasm OCI artifact has one, the component", layers.map_or(0, <[Value]>::len)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest(config_type: &str, artifact_type: Option<&str>, layers: Value) -> Value {
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": config_type, "digest": "sha256:c", "size": 2 },
            "layers": layers,
        });
        if let Some(artifact_type) = artifact_type {
            manifest["artifactType"] = artifact_type.into();
        }
        manifest
    }

    fn wasm_layer(title: Option<&str>) -> Value {
        let mut layer = json!({ "mediaType": WASM_LAYER, "digest": "sha256:l", "size": 8 });
        if let Some(title) = title {
            layer["annotations"] = json!({ TITLE: title });
        }
        layer
    }

    #[test]
    fn wasm_oci_artifacts_are_taken() {
        let wkg = manifest(WASM_CONFIG, None, json!([wasm_layer(None)]));
        assert_eq!(layer(&wkg), Ok((wasm_layer(None), None)));
        let titled = manifest(WASM_CONFIG, Some(WASM_CONFIG), json!([wasm_layer(Some("app.wasm"))]));
        assert_eq!(layer(&titled).unwrap().1.as_deref(), Some("app.wasm"));
        let empty_config = manifest("application/vnd.oci.empty.v1+json", Some(WASM_CONFIG), json!([wasm_layer(None)]));
        assert!(layer(&empty_config).is_ok());
    }

    #[test]
    fn anything_else_is_refused_saying_why() {
        for (manifest, why) in [
            (manifest("application/vnd.oci.image.config.v1+json", None, json!([wasm_layer(None)])), "config type"),
            (manifest("application/vnd.oci.empty.v1+json", Some("application/vnd.example"), json!([])), "config type"),
            (manifest(WASM_CONFIG, None, json!([])), "0 layers"),
            (manifest(WASM_CONFIG, None, json!([wasm_layer(None), wasm_layer(None)])), "2 layers"),
            (
                manifest(WASM_CONFIG, None, json!([{ "mediaType": "application/vnd.oci.image.layer.v1.tar" }])),
                "layer type \"application/vnd.oci.image.layer.v1.tar\"",
            ),
            (manifest(WASM_CONFIG, None, json!([{ "digest": "sha256:l" }])), "layer type missing"),
            (json!({ "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [] }), "not an OCI image"),
        ] {
            let error = layer(&manifest).unwrap_err();
            assert!(error.contains(why), "{manifest}: {error}");
        }
    }
}
