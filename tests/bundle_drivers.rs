//! A bundle that ships its own driver: the example helm driver (examples/helm-driver), which this
//! ferry has no built-in driver for, declared with `ferry driver add`, exported, verified,
//! inspected and relocated between two real registries.

mod common;

use common::*;
use ferry::oci::{Digest, Layout};
use serde_json::{Value, json};
use std::io::Read;
use std::path::Path;
use std::process::Command;

const HELM_DRIVER: &str = "example_helm_driver.wasm";

/// A chart `shop` whose values name `image`, packed as helm packs it.
fn write_chart(path: &Path, image: &str) {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default()));
    let files = [
        ("shop/Chart.yaml", "apiVersion: v2\nname: shop\nversion: 1.0.0\nappVersion: \"1.0.0\"\n".to_owned()),
        ("shop/values.yaml", format!("web:\n  image: {image}\n  replicas: 2\n")),
        ("shop/templates/web.yaml", "image: {{ .Values.web.image }}\n".to_owned()),
    ];
    for (name, body) in files {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append(&h, body.as_bytes()).unwrap();
    }
    std::fs::write(path, tar.into_inner().unwrap().finish().unwrap()).unwrap();
}

/// A bundle.json with an OCI image from `registry` and a helm chart, and the helm driver
/// declared through `ferry driver add`. Returns the web image's reference and digest.
fn helm_bundle(dir: &Path, registry: &TestRegistry) -> (String, Digest) {
    let layout_path = dir.join("images");
    let layout = Layout::create(&layout_path).unwrap();
    let (web, _) = write_multiarch_image(&layout, "web", 110);
    registry.push(&layout_path, "web", "shop/web:1");
    let web_ref = format!("{}/shop/web:1", registry.host);
    write_chart(&dir.join("shop-1.0.0.tgz"), &web_ref);
    std::fs::create_dir(dir.join("drivers")).unwrap();
    std::fs::copy(guest(HELM_DRIVER), dir.join("drivers/helm.wasm")).unwrap();
    std::fs::write(
        dir.join("bundle.json"),
        json!({
            "schemaVersion": "v1.2.0", "name": "shop", "version": "1.0.0",
            "invocationImages": [{ "image": web_ref, "contentDigest": web.digest.to_string() }],
            "images": { "chart": { "image": "shop-1.0.0.tgz", "imageType": "helm" } }
        })
        .to_string(),
    )
    .unwrap();
    let o = in_dir(&["driver", "add", "bundle.json", "drivers/helm.wasm"], dir);
    assert!(o.status.success(), "driver add: {}", text(&o.stderr));
    (web_ref, web.digest)
}

#[test]
fn a_bundle_ships_the_helm_driver_and_its_chart_is_relocated_with_rewritten_values() {
    let dir = tempfile::tempdir().unwrap();
    let source = TestRegistry::start();
    let (web_ref, web_digest) = helm_bundle(dir.path(), &source);

    // `driver add` declared the driver, pinned, in canonical JSON.
    let written = std::fs::read(dir.path().join("bundle.json")).unwrap();
    let bundle: Value = serde_json::from_slice(&written).unwrap();
    let helm_digest = Digest::of(&std::fs::read(guest(HELM_DRIVER)).unwrap());
    assert_eq!(
        bundle["custom"]["io.ferry.drivers"],
        json!({ "drivers": [{ "name": "helm", "imageTypes": ["helm"], "digest": helm_digest.to_string(), "path": "drivers/helm.wasm" }] })
    );
    assert_eq!(bundle["requiredExtensions"], json!(["io.ferry.drivers"]));
    assert_eq!(written, serde_jcs::to_vec(&bundle).unwrap(), "bundle.json is not canonical JSON");

    let tar = dir.path().join("shop.tar");
    let insecure = ["--insecure-registry", source.host.as_str()];
    let o = in_dir(&[&insecure[..], &["export", "bundle.json", "-o", "shop.tar"]].concat(), dir.path());
    assert!(o.status.success(), "export: {}", text(&o.stderr));
    let o = in_dir(&["verify", "shop.tar"], dir.path());
    assert!(o.status.success(), "verify: {}{}", text(&o.stdout), text(&o.stderr));

    // inspect names the bundle's driver for the chart without running it.
    let o = in_dir(&["inspect", "shop.tar", "--format", "json"], dir.path());
    assert!(o.status.success(), "inspect: {}", text(&o.stderr));
    let inspection: Value = serde_json::from_slice(&o.stdout).unwrap();
    let chart = inspection["images"].as_array().unwrap().iter().find(|i| i["key"] == "chart").unwrap();
    assert_eq!(chart["driver"], "helm");
    assert_eq!(chart["driverFrom"], format!("bundle {helm_digest}"));
    assert_eq!(inspection["bundleDrivers"][0]["handles"], json!(["helm"]));

    // Relocated: the chart's values name the web image where it went.
    let site = TestRegistry::start();
    let o = in_dir(
        &[
            "--insecure-registry",
            &site.host,
            "relocate",
            "shop.tar",
            "--to",
            &format!("{}/apps", site.host),
            "-o",
            "mapping.json",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "relocate: {}", text(&o.stderr));
    let mapping: Value = serde_json::from_slice(&std::fs::read(tar.with_file_name("mapping.json")).unwrap()).unwrap();
    let web_to = format!("{}/apps/shop/web@{web_digest}", site.host);
    assert_eq!(mapping[&web_ref], web_to);
    let chart_to = mapping["shop-1.0.0.tgz"].as_str().expect("the chart is in the mapping");
    assert!(chart_to.starts_with(&format!("{}/apps/shop/chart@sha256:", site.host)), "{chart_to}");

    // A dry run now predicts nothing to send, and the chart the real run made, values rewritten.
    let to = format!("{}/apps", site.host);
    let args = ["--insecure-registry", &site.host, "relocate", tar.to_str().unwrap(), "--to", &to];
    assert_dry_run_predicts_nothing_to_send(&args, &mapping, dir.path());

    let values = pulled_chart_values(dir.path(), chart_to);
    assert!(values.contains(&format!("image: {web_to}\n")), "values.yaml was not rewritten:\n{values}");
    assert!(!values.contains(&web_ref), "values.yaml still names the original image:\n{values}");
}

/// The values.yaml of the chart at `reference`, pulled with skopeo.
fn pulled_chart_values(dir: &Path, reference: &str) -> String {
    let pulled = dir.join("pulled");
    let o = Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .arg(format!("dir:{}", pulled.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "skopeo: {}", text(&o.stderr));
    let manifest: Value = serde_json::from_slice(&std::fs::read(pulled.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["config"]["mediaType"], "application/vnd.cncf.helm.config.v1+json");
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_owned();
    let chart = std::fs::read(pulled.join(layer)).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&chart[..]));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap() == Path::new("shop/values.yaml") {
            let mut values = String::new();
            entry.read_to_string(&mut values).unwrap();
            return values;
        }
    }
    panic!("the relocated chart has no shop/values.yaml");
}

#[test]
fn bundle_drivers_are_refused_by_digest_and_by_the_operator() {
    let dir = tempfile::tempdir().unwrap();
    let source = TestRegistry::start();
    helm_bundle(dir.path(), &source);
    let insecure = ["--insecure-registry", source.host.as_str()];

    // --no-bundle-drivers: the chart has no driver, and the error says why.
    let o =
        in_dir(&[&insecure[..], &["--no-bundle-drivers", "export", "bundle.json", "-o", "a.tar"]].concat(), dir.path());
    assert!(!o.status.success(), "exported without the chart's driver");
    let stderr = text(&o.stderr);
    assert!(
        stderr.contains("image chart") && stderr.contains("\"helm\"") && stderr.contains("--no-bundle-drivers"),
        "{stderr}"
    );
    assert!(!dir.path().join("a.tar").exists());

    // Another component under the pinned name: refused before it is compiled.
    std::fs::copy(guest(FILE_DRIVER), dir.path().join("drivers/helm.wasm")).unwrap();
    let tampered = Digest::of(&std::fs::read(guest(FILE_DRIVER)).unwrap());
    // A cache of this test's own: the shared one may hold the file driver from other tests.
    let cache = dir.path().join("cache");
    let o = ferry_command(dir.path())
        .current_dir(dir.path())
        .env("FERRY_CACHE_DIR", &cache)
        .args([&insecure[..], &["export", "bundle.json", "-o", "b.tar"]].concat())
        .output()
        .unwrap();
    assert!(!o.status.success(), "a driver with another digest was used");
    let stderr = text(&o.stderr);
    assert!(stderr.contains("bundle driver \"helm\"") && stderr.contains("digest mismatch"), "{stderr}");
    assert!(stderr.contains("pin the new build with `ferry driver add bundle.json ./drivers/helm.wasm`"), "{stderr}");
    assert!(
        !cached(&cache).is_empty(),
        "nothing was compiled into {}: the check below proves nothing",
        cache.display()
    );
    assert!(!cached(&cache).iter().any(|name| name.contains(tampered.hex())), "the tampered driver was compiled");
    assert!(!dir.path().join("b.tar").exists());

    // The pinned component, through a link that leads out of the bundle's directory: not read.
    let outside = tempfile::tempdir().unwrap();
    std::fs::copy(guest(HELM_DRIVER), outside.path().join("helm.wasm")).unwrap();
    std::fs::remove_file(dir.path().join("drivers/helm.wasm")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("helm.wasm"), dir.path().join("drivers/helm.wasm")).unwrap();
    let o = in_dir(&[&insecure[..], &["export", "bundle.json", "-o", "c.tar"]].concat(), dir.path());
    assert!(!o.status.success(), "a driver outside the bundle's directory was read");
    let stderr = text(&o.stderr);
    assert!(stderr.contains("bundle driver \"helm\"") && stderr.contains("links that lead out refused"), "{stderr}");
}

/// `ferry ARGS` run in `dir`, which holds bundle.json.
fn in_dir(args: &[&str], dir: &Path) -> std::process::Output {
    ferry_command(dir).current_dir(dir).args(args).output().unwrap()
}

/// The names of the files in a compiled-component cache.
fn cached(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().path())
            .flat_map(|p| if p.is_dir() { cached(&p) } else { vec![p.display().to_string()] })
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn an_image_type_no_driver_handles_stops_the_export_naming_the_image_and_the_type() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("thing.bin"), b"?").unwrap();
    std::fs::write(
        dir.path().join("bundle.json"),
        json!({
            "schemaVersion": "v1.2.0", "name": "odd", "version": "1.0.0",
            "invocationImages": [{ "image": "127.0.0.1:9/never/contacted:1" }],
            "images": { "thing": { "image": "thing.bin", "imageType": "mystery" } }
        })
        .to_string(),
    )
    .unwrap();
    let o = in_dir(&["export", "bundle.json", "-o", "odd.tar"], dir.path());
    assert!(!o.status.success(), "exported an image no driver handles");
    let stderr = text(&o.stderr);
    assert!(stderr.contains("image thing (thing.bin) has imageType \"mystery\", which no driver handles"), "{stderr}");
    assert!(!dir.path().join("odd.tar").exists());
}

#[test]
fn driver_add_from_build_copies_a_fresh_build_beside_bundle_json_and_pins_it_again_after_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let source = TestRegistry::start();
    helm_bundle(dir.path(), &source);
    std::fs::remove_file(dir.path().join("drivers/helm.wasm")).unwrap();
    let target = tempfile::tempdir().unwrap();
    let built = target.path().join("example_helm_driver.wasm");
    let pinned = |dir: &Path| {
        let bundle: Value = serde_json::from_slice(&std::fs::read(dir.join("bundle.json")).unwrap()).unwrap();
        bundle["custom"]["io.ferry.drivers"]["drivers"].clone()
    };
    let export =
        |name: &str| in_dir(&["--insecure-registry", &source.host, "export", "bundle.json", "-o", name], dir.path());

    // Without the flag, a component outside the bundle's directory is refused, as before.
    std::fs::copy(guest(HELM_DRIVER), &built).unwrap();
    let o = in_dir(&["driver", "add", "bundle.json", built.to_str().unwrap()], dir.path());
    assert!(!o.status.success() && text(&o.stderr).contains("is outside"), "{}", text(&o.stderr));

    // Each build: one command, and the export takes it.
    for build in 1..=2u8 {
        if build == 2 {
            // A rebuild: other bytes, the same driver (a custom section appended).
            let mut bytes = std::fs::read(guest(HELM_DRIVER)).unwrap();
            bytes.extend([0, 6, 5, b'b', b'u', b'i', b'l', b'd']);
            std::fs::write(&built, bytes).unwrap();
            // Copied by hand as before, not declared again: the export says what to run.
            std::fs::copy(&built, dir.path().join("drivers/helm.wasm")).unwrap();
            let o = export("stale.tar");
            assert!(!o.status.success());
            assert!(text(&o.stderr).contains("`ferry driver add bundle.json"), "{}", text(&o.stderr));
        }
        let o = in_dir(&["driver", "add", "--from-build", "bundle.json", built.to_str().unwrap()], dir.path());
        assert!(o.status.success(), "driver add --from-build: {}", text(&o.stderr));
        let copy = dir.path().join("drivers/helm.wasm");
        assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&built).unwrap(), "build {build}");
        let digest = Digest::of(&std::fs::read(&built).unwrap()).to_string();
        assert_eq!(
            pinned(dir.path()),
            json!([{ "name": "helm", "imageTypes": ["helm"], "digest": digest, "path": "drivers/helm.wasm" }])
        );
        let o = export(&format!("build-{build}.tar"));
        assert!(o.status.success(), "export of build {build}: {}", text(&o.stderr));
    }

    // Only a local regular file.
    for (not_a_file, says) in [("https://example.com/helm.wasm", "not a URL"), (".", "not a regular file")] {
        let o = in_dir(&["driver", "add", "--from-build", "bundle.json", not_a_file], dir.path());
        assert!(!o.status.success() && text(&o.stderr).contains(says), "{not_a_file}: {}", text(&o.stderr));
    }
}
