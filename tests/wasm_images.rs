//! The built-in `wasm` driver end to end: a real component (one of this repository's built driver
//! components) as a bundle's invocation image, from a `.wasm` file beside bundle.json and from a
//! Wasm OCI artifact pushed to a real registry; exported, verified, inspected and relocated by the
//! `ferry` binary, what it stored and wrote read back byte by byte.

mod common;

use common::http_server::HttpServer;
use common::*;
use ferry::oci::{Descriptor, Digest, Layout, REF_NAME};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;

const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
const WASM_LAYER: &str = "application/wasm";
const TITLE: &str = "org.opencontainers.image.title";
/// Any real component will do: the driver never runs it.
const COMPONENT: &str = "ferry_driver_tarball.wasm";

#[test]
fn a_wasm_installer_beside_bundle_json_and_a_component_from_a_url_are_exported_verified_inspected_and_relocated() {
    let dir = tempfile::tempdir().unwrap();
    let component = std::fs::read(guest(COMPONENT)).unwrap();
    let component_digest = Digest::of(&component).to_string();
    let bundle = write_bundle(dir.path(), "installer.wasm", &component, json!({ "contentDigest": component_digest }));
    // The same component served over HTTP as another image of the bundle.
    let served = dir.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    std::fs::write(served.join("tool.wasm"), &component).unwrap();
    let http = HttpServer::start(&served);
    let url = format!("http://{}/tool.wasm", http.host);
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    doc["images"] = json!({ "tool": { "imageType": "wasm", "image": url, "contentDigest": component_digest } });
    std::fs::write(&bundle, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();

    let tar = export(&bundle, dir.path(), "first.tar", None);
    let o = ferry(&["verify", tar.to_str().unwrap()], dir.path());
    assert!(o.status.success(), "verify: {}", text(&o.stderr));

    let image = invocation_image_report(&tar, dir.path());
    assert_eq!(image["driver"], "wasm", "{image}");
    assert_eq!(image["platforms"], json!(["wasip2/wasm"]), "{image}");
    let details = details_of(&image);
    assert_eq!(details.get("kind").map(String::as_str), Some("component"), "{details:?}");
    assert_eq!(details.get("size"), Some(&component.len().to_string()), "{details:?}");
    assert_eq!(details.get("file").map(String::as_str), Some("installer.wasm"), "{details:?}");
    let root = image["digest"].as_str().unwrap().to_owned();
    assert_stored_as_wasm_artifact(&tar, &root, &component, "installer.wasm");
    let tool = image_report(&inspect(&tar, dir.path()), "tool");
    assert_stored_as_wasm_artifact(&tar, tool["digest"].as_str().unwrap(), &component, "tool.wasm");
    assert!(http.requests() > 0, "the URL was not fetched");

    // No time or other varying input in what is stored: the same component, the same digests.
    let again = export(&bundle, dir.path(), "second.tar", None);
    assert_eq!(invocation_image_report(&again, dir.path())["digest"], root.as_str(), "export is not reproducible");

    // To a registry: the Wasm OCI artifact as stored, tagged with the file name.
    let target = TestRegistry::start();
    let mapping = relocate(&tar, &format!("{}/apps", target.host), Some(&target.host), dir.path());
    let relocated = &mapping["installer.wasm"];
    assert!(relocated.starts_with(&format!("{}/apps/", target.host)), "{relocated}");
    assert_eq!(relocated.rsplit_once('@').unwrap().1, root, "relocated as another manifest: {relocated}");
    let tagged = format!("{}:installer.wasm", relocated.rsplit_once('@').unwrap().0);
    let (manifest, layer) = pull_wasm_artifact(&target, &tagged, dir.path());
    assert_eq!(Digest::of(&manifest).to_string(), root, "the tag names another manifest");
    assert_eq!(layer, component, "the relocated layer is not the component");
    let tool = &mapping[&url];
    let (_, layer) =
        pull_wasm_artifact(&target, &format!("{}:tool.wasm", tool.rsplit_once('@').unwrap().0), dir.path());
    assert_eq!(layer, component, "the relocated layer is not the component");

    // To a directory: the component as a plain file, named as in the bundle.
    let images = dir.path().join("images");
    let mapping = relocate(&tar, &format!("file://{}", images.display()), None, dir.path());
    let written = Path::new(&mapping["installer.wasm"]);
    assert_eq!(written.file_name().unwrap(), "installer.wasm", "{mapping:#?}");
    assert!(written.starts_with(&images), "{mapping:#?}");
    assert_eq!(std::fs::read(written).unwrap(), component, "{} is not the component", written.display());
    assert_eq!(Path::new(&mapping[&url]).file_name().unwrap(), "tool.wasm", "{mapping:#?}");
}

#[test]
fn a_wasm_oci_artifact_in_a_registry_is_exported_verified_inspected_and_relocated() {
    let dir = tempfile::tempdir().unwrap();
    let source = TestRegistry::start();
    let component = std::fs::read(guest(COMPONENT)).unwrap();
    let layout = Layout::create(&dir.path().join("layout")).unwrap();
    // As `wkg oci push` makes it: the Wasm config (with its optional fields), the layer untitled.
    let wkg_config = json!({
        "created": "2026-01-01T00:00:00Z", "architecture": "wasm", "os": "wasip2",
        "layerDigests": [Digest::of(&component).to_string()],
        "component": { "exports": ["wasi:cli/run@0.2.0"], "imports": [] },
    });
    let wkg =
        push_wasm_artifact(&source, &layout, "team/installer:1", &wkg_config.to_string(), WASM_CONFIG, None, None);
    // As `oras push --artifact-type` makes it: an empty config, the layer titled.
    push_wasm_artifact(
        &source,
        &layout,
        "team/plugin:2",
        "{}",
        "application/vnd.oci.empty.v1+json",
        None,
        Some("plug.wasm"),
    );
    let (wkg_reference, oras_reference) =
        (format!("{}/team/installer:1", source.host), format!("{}/team/plugin:2", source.host));

    let bundle_dir = dir.path().join("bundle");
    std::fs::create_dir_all(&bundle_dir).unwrap();
    let bundle = bundle_dir.join("bundle.json");
    let doc = json!({
        "schemaVersion": "v1.2.0", "name": "wasi-app", "version": "1.0.0",
        "invocationImages": [{ "imageType": "wasm", "image": wkg_reference, "contentDigest": wkg.digest.to_string() }],
        "images": { "plugin": { "imageType": "wasm", "image": oras_reference, "contentDigest": Digest::of(&component).to_string() } },
    });
    std::fs::write(&bundle, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();

    let tar = export(&bundle, dir.path(), "app.tar", Some(&source.host));
    let o = ferry(&["verify", tar.to_str().unwrap()], dir.path());
    assert!(o.status.success(), "verify: {}", text(&o.stderr));
    let report = inspect(&tar, dir.path());
    let installer = &image_report(&report, "invocationImages[0]");
    assert_eq!(details_of(installer).get("file").map(String::as_str), Some("installer.wasm"), "{installer}");
    assert_stored_as_wasm_artifact(&tar, installer["digest"].as_str().unwrap(), &component, "installer.wasm");
    let plugin = &image_report(&report, "plugin");
    assert_eq!(details_of(plugin).get("file").map(String::as_str), Some("plug.wasm"), "{plugin}");

    let target = TestRegistry::start();
    let mapping = relocate(&tar, &format!("{}/site", target.host), Some(&target.host), dir.path());
    for (original, tag) in [(&wkg_reference, "1"), (&oras_reference, "2")] {
        let relocated = &mapping[original.as_str()];
        let tagged = format!("{}:{tag}", relocated.rsplit_once('@').unwrap().0);
        let (manifest, layer) = pull_wasm_artifact(&target, &tagged, dir.path());
        assert_eq!(Digest::of(&manifest).to_string(), relocated.rsplit_once('@').unwrap().1, "{tagged}");
        assert_eq!(layer, component, "{tagged}: the relocated layer is not the component");
    }
}

#[test]
fn a_wrong_digest_a_core_module_and_other_artifacts_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let component = std::fs::read(guest(COMPONENT)).unwrap();
    let registry = TestRegistry::start();
    let layout = Layout::create(&dir.path().join("layout")).unwrap();
    // The smallest valid core module: the magic and version 1, no sections.
    let core_module = b"\0asm\x01\0\0\0".to_vec();
    let module_config = json!({ "architecture": "wasm", "os": "wasip1" }).to_string();
    let module_layer = Some(core_module.as_slice());
    push_wasm_artifact(&registry, &layout, "team/module:1", &module_config, WASM_CONFIG, module_layer, None);
    let image = {
        let (root, _) = write_multiarch_image(&layout, "image", 3);
        registry.push(layout.path(), "image", "team/image:1");
        root
    };
    let wrong = format!("sha256:{}", "0".repeat(64));

    let cases: Vec<(&str, &[u8], Value, &str)> = vec![
        ("installer.wasm", &component, json!({ "contentDigest": wrong }), "contentDigest"),
        (
            "module.wasm",
            &core_module,
            json!({}),
            "is a WebAssembly core module, not a component: build it for wasm32-wasip2",
        ),
        ("module.wasm", &core_module, json!({}), "wasm-tools component new"),
        ("notes.wasm", b"#!/bin/sh\necho hi\n", json!({}), "is not WebAssembly"),
        ("", b"", json!({ "image": format!("{}/team/module:1", registry.host) }), "is a WebAssembly core module"),
        (
            "",
            b"",
            json!({ "image": format!("{}/team/image:1", registry.host), "contentDigest": image.digest.to_string() }),
            "is not an OCI image manifest; a wasm image is a Wasm OCI artifact",
        ),
    ];
    for (i, (file, bytes, fields, expected)) in cases.into_iter().enumerate() {
        let case = dir.path().join(format!("case{i}"));
        let bundle = write_bundle(&case, file, bytes, fields);
        let out = case.join("out.tar");
        let o = ferry(
            &["--insecure-registry", &registry.host, "export", bundle.to_str().unwrap(), "-o", out.to_str().unwrap()],
            dir.path(),
        );
        let stderr = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "case {i}: {stderr}");
        assert!(stderr.contains(expected), "case {i}: no {expected:?} in: {stderr}");
        assert!(stderr.contains("image invocationImages[0]"), "case {i}: the image is not named: {stderr}");
        assert!(!out.exists(), "case {i}: a refused export left {}", out.display());
    }
}

#[test]
fn verify_refuses_a_stored_component_that_is_not_one_or_a_config_that_does_not_match() {
    let dir = tempfile::tempdir().unwrap();
    let component = std::fs::read(guest(COMPONENT)).unwrap();
    let bundle = write_bundle(&dir.path().join("bundle"), "installer.wasm", &component, json!({}));
    let tar = export(&bundle, dir.path(), "good.tar", None);
    let manifest: Value =
        serde_json::from_slice(&blob_in(&tar, invocation_image_report(&tar, dir.path())["digest"].as_str().unwrap()))
            .unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let config = manifest["config"]["digest"].as_str().unwrap();

    // Every digest consistent (the config's layerDigests follow the layer), the content wrong.
    let mut core_module = b"\0asm\x01\0\0\0".to_vec();
    core_module.resize(component.len(), 0);
    let other_layer = format!(r#"{{"architecture":"wasm","layerDigests":["{}"],"os":"wasip2"}}"#, Digest::of(b"x"));
    for (name, old, bytes, expected) in [
        ("module.tar", layer, core_module, "is a WebAssembly core module, not a component"),
        ("config.tar", config, other_layer.into_bytes(), "the config is not {architecture: wasm, os: wasip2"),
    ] {
        let bad = dir.path().join(name);
        replace_blob(&tar, &bad, old, &bytes);
        let o = ferry(&["verify", bad.to_str().unwrap()], dir.path());
        let stderr = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains(expected), "{name}: no {expected:?} in: {stderr}");
    }
}

#[test]
fn validate_knows_the_wasm_image_type() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = write_bundle(dir.path(), "installer.wasm", &std::fs::read(guest(COMPONENT)).unwrap(), json!({}));
    let o = ferry(&["validate", bundle.to_str().unwrap(), "--strict", "--format", "json"], dir.path());
    assert_eq!(o.status.code(), Some(0), "{}{}", text(&o.stdout), text(&o.stderr));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["warnings"], json!([]), "{report:#}");
    let o = ferry(&["driver", "list", "--format", "json"], dir.path());
    let drivers: Value = serde_json::from_slice(&o.stdout).unwrap();
    let wasm = drivers.as_array().unwrap().iter().find(|d| d["name"] == "wasm").expect("no built-in wasm driver");
    assert_eq!(wasm["imageTypes"], json!(["wasm"]), "{wasm}");
}

// ---- helpers ----

/// A bundle.json in `dir` whose invocation image is `file` (holding `bytes`) beside it, with
/// `fields` (which may replace `image`) added to the invocation image.
fn write_bundle(dir: &Path, file: &str, bytes: &[u8], fields: Value) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    if !file.is_empty() {
        std::fs::write(dir.join(file), bytes).unwrap();
    }
    let mut invocation = json!({ "imageType": "wasm", "image": file });
    for (key, value) in fields.as_object().unwrap() {
        invocation[key] = value.clone();
    }
    let doc = json!({
        "schemaVersion": "v1.2.0", "name": "wasi-app", "version": "1.0.0",
        "invocationImages": [invocation],
    });
    let bundle = dir.join("bundle.json");
    std::fs::write(&bundle, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    bundle
}

/// `ferry export BUNDLE -o DIR/NAME`, which must succeed.
fn export(bundle: &Path, dir: &Path, name: &str, insecure: Option<&str>) -> std::path::PathBuf {
    let tar = dir.join(name);
    let mut args: Vec<&str> = insecure.map(|host| vec!["--insecure-registry", host]).unwrap_or_default();
    args.extend(["export", bundle.to_str().unwrap(), "-o", tar.to_str().unwrap()]);
    let o = ferry(&args, dir);
    assert!(o.status.success(), "export: {}", text(&o.stderr));
    tar
}

/// `ferry inspect TAR --details --format json`.
fn inspect(tar: &Path, dir: &Path) -> Value {
    let o = ferry(&["inspect", tar.to_str().unwrap(), "--details", "--format", "json"], dir);
    assert!(o.status.success(), "inspect: {}", text(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The entry of `key` in `ferry inspect --format json`.
fn image_report(report: &Value, key: &str) -> Value {
    let images = report["images"].as_array().unwrap();
    images.iter().find(|i| i["key"] == key).unwrap_or_else(|| panic!("no image {key} in {report}")).clone()
}

fn invocation_image_report(tar: &Path, dir: &Path) -> Value {
    image_report(&inspect(tar, dir), "invocationImages[0]")
}

/// An image's `details` (pairs of name and value) as a map.
fn details_of(image: &Value) -> BTreeMap<String, String> {
    let details = image["details"].as_array().unwrap_or_else(|| panic!("no details: {image}"));
    details.iter().map(|pair| (pair[0].as_str().unwrap().to_owned(), pair[1].as_str().unwrap().to_owned())).collect()
}

/// The thick bundle's blob `digest`.
fn blob_in(tar: &Path, digest: &str) -> Vec<u8> {
    let name = format!("artifacts/layout/blobs/sha256/{}", digest.trim_start_matches("sha256:"));
    let mut archive = tar::Archive::new(std::fs::File::open(tar).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap() == Path::new(&name) {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
            return bytes;
        }
    }
    panic!("{} has no {name}", tar.display())
}

/// The shape the WASI executor reads (issue 13): the root manifest, its config the Wasm OCI
/// artifact layout's for this one layer, and the one `application/wasm` layer the component byte
/// for byte, titled `file`.
fn assert_stored_as_wasm_artifact(tar: &Path, root: &str, component: &[u8], file: &str) {
    let manifest: Value = serde_json::from_slice(&blob_in(tar, root)).unwrap();
    assert_eq!(manifest["mediaType"], OCI_MANIFEST, "{manifest}");
    assert_eq!(manifest["artifactType"], WASM_CONFIG, "{manifest}");
    assert_eq!(manifest["config"]["mediaType"], WASM_CONFIG, "{manifest}");
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    assert_eq!(layers[0]["mediaType"], WASM_LAYER, "{manifest}");
    assert_eq!(layers[0]["digest"], Digest::of(component).to_string(), "{manifest}");
    assert_eq!(layers[0]["size"], component.len(), "{manifest}");
    assert_eq!(layers[0]["annotations"][TITLE], file, "{manifest}");
    let config = blob_in(tar, manifest["config"]["digest"].as_str().unwrap());
    let expected = format!(r#"{{"architecture":"wasm","layerDigests":["{}"],"os":"wasip2"}}"#, Digest::of(component));
    assert_eq!(String::from_utf8(config).unwrap(), expected);
    assert_eq!(blob_in(tar, layers[0]["digest"].as_str().unwrap()), component);
}

/// Writes a Wasm OCI artifact (`config` of type `config_type`, one `application/wasm` layer of
/// `layer` or the test component, titled `title`) into `layout` and pushes it byte for byte to
/// `registry` as `repository_and_tag`; its manifest's descriptor.
fn push_wasm_artifact(
    registry: &TestRegistry,
    layout: &Layout,
    repository_and_tag: &str,
    config: &str,
    config_type: &str,
    layer: Option<&[u8]>,
    title: Option<&str>,
) -> Descriptor {
    let component = std::fs::read(guest(COMPONENT)).unwrap();
    let layer = layer.unwrap_or(&component);
    let put = |bytes: &[u8]| layout.put_bytes(bytes).unwrap().to_string();
    let mut layer = json!({ "mediaType": WASM_LAYER, "digest": put(layer), "size": layer.len() });
    if let Some(title) = title {
        layer["annotations"] = json!({ TITLE: title });
    }
    let mut manifest = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": { "mediaType": config_type, "digest": put(config.as_bytes()), "size": config.len() },
        "layers": [layer],
    });
    if config_type != WASM_CONFIG {
        manifest["artifactType"] = json!(WASM_CONFIG);
    }
    let bytes = manifest.to_string();
    let mut root = Descriptor::new(OCI_MANIFEST, layout.put_bytes(bytes.as_bytes()).unwrap(), bytes.len() as u64);
    root.annotations.insert(REF_NAME.into(), repository_and_tag.replace([':', '/'], "-"));
    layout.add_to_index(root.clone()).unwrap();
    registry.push_as_stored(layout.path(), &repository_and_tag.replace([':', '/'], "-"), repository_and_tag);
    root
}

/// The manifest `reference` names in `registry` (plain http) and the bytes of its one layer,
/// which must be a Wasm OCI artifact's, as `wkg oci pull` or `oras pull` would read them.
fn pull_wasm_artifact(registry: &TestRegistry, reference: &str, dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let client = ferry::registry::Registry::new(&registry.options(dir)).unwrap();
    let reference: oci_client::Reference = reference.parse().unwrap();
    let (bytes, _, _) = client.manifest(&reference, None).unwrap();
    let manifest: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(manifest["config"]["mediaType"], WASM_CONFIG, "{reference}: {manifest}");
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{reference}: {manifest}");
    assert_eq!(layers[0]["mediaType"], WASM_LAYER, "{reference}: {manifest}");
    let digest: Digest = layers[0]["digest"].as_str().unwrap().parse().unwrap();
    let mut layer = Vec::new();
    client.copy_blob(&reference, &digest, None, &mut layer).unwrap();
    (bytes, layer)
}

/// `ferry relocate TAR --to TO` (plain http to `insecure`), which must succeed; its mapping.
fn relocate(tar: &Path, to: &str, insecure: Option<&str>, dir: &Path) -> BTreeMap<String, String> {
    let mapping = dir.join("mapping.json");
    let mut args: Vec<&str> = insecure.map(|host| vec!["--insecure-registry", host]).unwrap_or_default();
    args.extend(["relocate", tar.to_str().unwrap(), "--to", to, "-o", mapping.to_str().unwrap()]);
    let o = ferry(&args, dir);
    assert!(o.status.success(), "relocate --to {to}: {}", text(&o.stderr));
    serde_json::from_slice(&std::fs::read(&mapping).unwrap()).unwrap()
}
