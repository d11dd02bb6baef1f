//! `ferry driver add`: a bundle author declares a driver their bundle ships.

use crate::bundle::Bundle;
use crate::driver::{Declared, EXTENSION, MAX_DRIVER, Runtime, VerifiedComponent};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::Path;

/// Declares the driver component `file` in the bundle.json at `bundle_path`: its name and image
/// types (from the driver's own `info`), its digest, and its path relative to bundle.json, which
/// it must be inside. A driver of the same name is replaced; `requiredExtensions` gains
/// [`EXTENSION`]. bundle.json is rewritten as canonical JSON (RFC 8785), atomically.
pub fn add_driver(runtime: &Runtime, bundle_path: &Path, file: &Path) -> Result<Declared> {
    crate::bundle::file::expect_json(bundle_path)?;
    let bytes = std::fs::read(bundle_path).with_context(|| format!("reading {}", bundle_path.display()))?;
    let mut doc: Value =
        serde_json::from_slice(&bytes).with_context(|| format!("{} is not JSON", bundle_path.display()))?;
    let dir = crate::files::parent_of(bundle_path);
    let (dir, component_path) = (dir.canonicalize()?, file.canonicalize().with_context(|| file.display().to_string())?);
    let relative = component_path.strip_prefix(&dir).map_err(|_| {
        anyhow::anyhow!(
            "{} is outside {}: a bundle's drivers travel beside its bundle.json",
            file.display(),
            dir.display()
        )
    })?;
    let relative = relative.to_str().context("the driver's path is not UTF-8")?.to_owned();

    let component = VerifiedComponent::local(std::fs::read(file).with_context(|| file.display().to_string())?);
    let driver = runtime.load(&component).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let declared = Declared {
        name: driver.info().name.clone(),
        image_types: driver.info().image_types.clone(),
        digest: component.digest().to_string(),
        path: Some(relative),
        reference: None,
    };

    let Some(object) = doc.as_object_mut() else { bail!("{}: a bundle.json is a JSON object", bundle_path.display()) };
    let custom = object.entry("custom").or_insert_with(|| json!({}));
    let extension = custom
        .as_object_mut()
        .context("$.custom is not an object")?
        .entry(EXTENSION)
        .or_insert_with(|| json!({ "drivers": [] }));
    let drivers = extension
        .get_mut("drivers")
        .and_then(Value::as_array_mut)
        .with_context(|| format!("$.custom[\"{EXTENSION}\"].drivers is not a list"))?;
    drivers.retain(|d| d["name"] != declared.name);
    drivers.push(serde_json::to_value(&declared)?);
    let required = object.entry("requiredExtensions").or_insert_with(|| json!([]));
    let required = required.as_array_mut().context("$.requiredExtensions is not a list")?;
    if !required.iter().any(|e| e == EXTENSION) {
        required.push(json!(EXTENSION));
    }

    let canonical = serde_jcs::to_vec(&doc)?;
    Bundle::from_bytes(canonical.clone(), &bundle_path.display().to_string())
        .context("the bundle.json with the driver declared")?;
    let mut tmp = crate::files::temporary_beside(bundle_path)?;
    tmp.write_all(&canonical)?;
    crate::files::persist(tmp, bundle_path)?;
    Ok(declared)
}

/// `ferry driver add --from-build`, the loop of a driver's author: the component `built` (a
/// cargo target directory's `.wasm`, anywhere on this machine) is copied to
/// `drivers/NAME.wasm` beside bundle.json, NAME from its own `info`, replacing an older build,
/// and declared with its new digest as [`add_driver`] declares it. Only a regular local file is
/// taken: a URL or a registry reference is refused, since pinning what a server sends at this
/// moment would pin whatever it sends.
pub fn add_built_driver(runtime: &Runtime, bundle_path: &Path, built: &Path) -> Result<Declared> {
    let shown = built.display();
    if built.to_string_lossy().contains("://") {
        bail!("{shown}: --from-build takes a component built on this machine (a local file), not a URL or reference");
    }
    let metadata = std::fs::metadata(built).with_context(|| format!("{shown}"))?;
    if !metadata.is_file() {
        bail!("{shown} is not a regular file: --from-build takes a component built on this machine");
    }
    let mut bytes = Vec::new();
    std::fs::File::open(built)
        .with_context(|| format!("{shown}"))?
        .take(MAX_DRIVER + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {shown}"))?;
    if bytes.len() as u64 > MAX_DRIVER {
        bail!("{shown} is larger than the {MAX_DRIVER} bytes a driver may be");
    }
    let component = VerifiedComponent::local(bytes.clone());
    let driver = runtime.load(&component).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
    let name = &driver.info().name;
    let plain = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !plain || name.starts_with('.') {
        bail!(
            "{shown}: the driver's name {name:?} cannot name a file; copy it beside bundle.json and run `ferry driver add` on the copy"
        );
    }
    let drivers = crate::files::parent_of(bundle_path).join("drivers");
    std::fs::create_dir_all(&drivers).with_context(|| format!("creating {}", drivers.display()))?;
    let copy = drivers.join(format!("{name}.wasm"));
    let mut tmp = crate::files::temporary_beside(&copy)?;
    tmp.write_all(&bytes)?;
    crate::files::persist(tmp, &copy)?;
    add_driver(runtime, bundle_path, &copy)
}
