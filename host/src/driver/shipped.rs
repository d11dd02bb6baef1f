//! Drivers that travel inside a bundle (docs/bundle-drivers.md): declared in bundle.json's
//! `custom` section under [`EXTENSION`], pinned by digest, stored in the thick bundle's layout as
//! Wasm OCI artifacts, and given only the image types the operator lets them have.

use super::{Driver, DriverError, Runtime, VerifiedComponent};
use crate::bundle::Bundle;
use crate::oci::{Descriptor, Digest, Layout, REF_NAME};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The `custom` key, which `requiredExtensions` must list.
pub const EXTENSION: &str = "io.ferry.drivers";
/// The Wasm OCI artifact media types (CNCF TAG Runtime's wasm-oci spec).
pub use crate::oci::media_types::{WASM_CONFIG, WASM_LAYER};
/// No driver component is larger than this: ferry neither reads nor compiles a larger one
/// (real drivers are well under 1 MiB; Cranelift takes about 2 s per MiB, one function at a time).
pub const MAX_DRIVER: u64 = 16 << 20;

/// One driver as bundle.json declares it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Declared {
    pub name: String,
    pub image_types: Vec<String>,
    /// sha256 of the component's bytes.
    pub digest: String,
    /// Where `ferry export` finds it: a path relative to bundle.json ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// ... or a Wasm OCI artifact in a registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// The extension's value in `custom`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Extension {
    drivers: Vec<Declared>,
}

/// The drivers `bundle` declares; every problem named by its JSON path.
pub fn declared(bundle: &Bundle) -> Result<Vec<Declared>> {
    let Some(value) = bundle.doc.custom.as_ref().and_then(|c| c.get(EXTENSION)) else {
        return Ok(Vec::new());
    };
    let at = format!("$.custom[\"{EXTENSION}\"]");
    let extension: Extension = serde_json::from_value(value.clone()).with_context(|| {
        format!("{at}: expected {{\"drivers\": [{{\"name\", \"imageTypes\", \"digest\", \"path\" or \"reference\"}}]}}")
    })?;
    if !bundle.doc.required_extensions.iter().flatten().any(|e| e == EXTENSION) {
        bail!("{at} declares drivers, but $.requiredExtensions does not list {EXTENSION:?}");
    }
    for (i, d) in extension.drivers.iter().enumerate() {
        let at = format!("{at}.drivers[{i}]");
        d.digest.parse::<Digest>().with_context(|| format!("{at}.digest: {:?} is not a sha256 digest", d.digest))?;
        if d.path.is_some() == d.reference.is_some() {
            bail!("{at}: give exactly one of \"path\" and \"reference\"");
        }
        if d.image_types.is_empty() {
            bail!("{at}.imageTypes: a driver handles at least one image type");
        }
    }
    Ok(extension.drivers)
}

impl Declared {
    pub fn digest(&self) -> Digest {
        self.digest.parse().expect("checked by declared()")
    }

    /// Loads the component from `bytes`, refused before it is compiled unless its digest is
    /// the pinned one, and refused after `info` unless it handles the types declared for it.
    pub fn load<'rt>(&self, runtime: &'rt Runtime, bytes: Vec<u8>) -> Result<Driver<'rt>> {
        let component = VerifiedComponent::pinned(bytes, &self.digest())
            .with_context(|| format!("bundle driver {:?}", self.name))?;
        let driver = runtime
            .load(&component)
            .map_err(|e: DriverError| anyhow::anyhow!("bundle driver {:?} ({}): {e}", self.name, self.digest))?;
        for image_type in &self.image_types {
            if !driver.info().image_types.iter().any(|t| t.eq_ignore_ascii_case(image_type)) {
                bail!(
                    "bundle driver {:?} is declared for imageType {image_type:?}, but says it handles {:?}",
                    self.name,
                    driver.info().image_types
                );
            }
        }
        Ok(driver)
    }

    /// The name of its entry in a thick bundle's index.
    pub fn ref_name(&self) -> String {
        format!("{EXTENSION}/{}", self.name)
    }

    /// Stores the component in `layout` as a Wasm OCI artifact named by [`Declared::ref_name`].
    pub fn store(&self, layout: &Layout, bytes: &[u8]) -> Result<Descriptor> {
        let (digest, size) = layout.put_verified(&mut &bytes[..], Some(&self.digest()))?;
        let config = serde_json::json!({
            "architecture": "wasm",
            "os": "wasip2",
            "layerDigests": [digest.to_string()],
        })
        .to_string();
        let config = Descriptor::new(WASM_CONFIG.to_owned(), layout.put_bytes(config.as_bytes())?, config.len() as u64);
        let layer = Descriptor::new(WASM_LAYER.to_owned(), digest, size);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "artifactType": WASM_CONFIG,
            "config": config,
            "layers": [layer],
        })
        .to_string();
        let mut root =
            Descriptor::new(MANIFEST.to_owned(), layout.put_bytes(manifest.as_bytes())?, manifest.len() as u64);
        root.artifact_type = Some(WASM_CONFIG.to_owned());
        root.annotations.insert(REF_NAME.into(), self.ref_name());
        layout.add_to_index(root.clone())?;
        Ok(root)
    }
}

use crate::oci::media_types::OCI_MANIFEST as MANIFEST;

/// What the operator lets bundle drivers do.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// `--no-bundle-drivers`: none is loaded.
    pub refuse_all: bool,
    /// `--allow-driver-override TYPE`: image types a bundle driver may take from a built-in.
    pub overrides: Vec<String>,
}

/// The image types each declared driver gets, in order: those no built-in driver (and no
/// driver declared before it) handles, plus those the operator lets it override; none under
/// `--no-bundle-drivers`.
pub fn assign(declared: &[Declared], builtin_handles: impl Fn(&str) -> bool, policy: &Policy) -> Vec<Vec<String>> {
    let mut taken: Vec<String> = Vec::new();
    declared
        .iter()
        .map(|d| {
            if policy.refuse_all {
                return Vec::new();
            }
            let types: Vec<String> = d
                .image_types
                .iter()
                .map(|t| t.to_ascii_lowercase())
                .filter(|t| !taken.contains(t))
                .filter(|t| !builtin_handles(t) || policy.overrides.iter().any(|o| o.eq_ignore_ascii_case(t)))
                .collect();
            taken.extend(types.iter().cloned());
            types
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared(name: &str, types: &[&str]) -> Declared {
        Declared {
            name: name.into(),
            image_types: types.iter().map(|t| t.to_string()).collect(),
            digest: format!("sha256:{}", "0".repeat(64)),
            path: Some(format!("{name}.wasm")),
            reference: None,
        }
    }

    #[test]
    fn bundle_drivers_get_only_what_no_one_else_handles_unless_the_operator_allows_it() {
        let builtin = |t: &str| matches!(t, "oci" | "docker" | "vm-disk");
        let drivers = [declared("helm", &["helm", "OCI"]), declared("second-helm", &["helm", "kustomize"])];
        let policy = Policy::default();
        assert_eq!(assign(&drivers, builtin, &policy), [vec!["helm".to_owned()], vec!["kustomize".to_owned()]]);

        let overriding = Policy { refuse_all: false, overrides: vec!["oci".into()] };
        assert_eq!(assign(&drivers, builtin, &overriding)[0], ["helm", "oci"]);

        let none = Policy { refuse_all: true, overrides: vec!["oci".into()] };
        assert!(assign(&drivers, builtin, &none).iter().all(Vec::is_empty));
    }
}
