//! Bundles published in real registries (docker-registry on loopback): `ferry push`, `ferry
//! pull`, and inspect and relocate by reference, in the representation cnab-to-oci writes, and
//! bundles cnab-to-oci wrote, built here byte for byte as it writes them.

mod common;

use base64::Engine as _;
use common::proxy::FaultyProxy;
use common::*;
use ferry::oci::{Descriptor, Digest, Layout, REF_NAME};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// A thick bundle `shop.tar` of an OCI invocation image and a Docker component from `source`;
/// with the roots of both.
fn shop(dir: &Path, source: &TestRegistry) -> (PathBuf, Descriptor, Descriptor) {
    let layout_path = dir.join("images");
    let layout = Layout::create(&layout_path).unwrap();
    let (app_root, _) = write_multiarch_image(&layout, "app", 30);
    let (web_root, _) = write_docker_image(&layout, "web", 40);
    source.push(&layout_path, "app", "team/app:1.2");
    source.push_as_stored(&layout_path, "web", "team/web:2");
    let bundle = dir.join("bundle.json");
    std::fs::write(
        &bundle,
        serde_json::to_string_pretty(&json!({
            "schemaVersion": "v1.2.0", "name": "shop", "version": "1.0.0", "keywords": ["shop", "web"],
            "description": "A shop",
            "invocationImages": [{ "image": format!("{}/team/app:1.2", source.host), "contentDigest": app_root.digest.to_string() }],
            "images": { "web": { "image": format!("{}/team/web:2", source.host), "imageType": "docker" } }
        }))
        .unwrap(),
    )
    .unwrap();
    let tar = dir.join("shop.tar");
    let o = run(&["--insecure-registry", &source.host, "export", bundle.to_str().unwrap(), "-o", "shop.tar"], dir);
    assert!(o.status.success(), "export: {}", text(&o.stderr));
    (tar, app_root, web_root)
}

/// `ferry ARGS` in `dir`, as [`ferry_command`] sets it up.
fn run(args: &[&str], dir: &Path) -> std::process::Output {
    ferry_command(dir).current_dir(dir).args(args).output().unwrap()
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{e}: {}", text(bytes)))
}

/// `ferry inspect BUNDLE --format json` (a file or a reference), with `--insecure-registry HOST`.
fn inspect(host: &str, bundle: &str, dir: &Path) -> Value {
    let o = run(&["--insecure-registry", host, "inspect", bundle, "--format", "json"], dir);
    assert!(o.status.success(), "inspect {bundle}: {}", text(&o.stderr));
    json_of(&o.stdout)
}

fn digests(inspection: &Value) -> Vec<(String, String)> {
    let images = inspection["images"].as_array().unwrap();
    images.iter().map(|i| (i["key"].as_str().unwrap().to_owned(), i["digest"].as_str().unwrap().to_owned())).collect()
}

fn pull_and_verify(host: &str, reference: &str, output: &str, dir: &Path) {
    let o = run(&["--insecure-registry", host, "pull", reference, "-o", output], dir);
    assert!(o.status.success(), "pull {reference}: {}", text(&o.stderr));
    let o = run(&["verify", output], dir);
    assert!(o.status.success(), "verify of the pulled bundle: {}{}", text(&o.stdout), text(&o.stderr));
}

#[test]
fn a_pushed_bundle_is_cnab_to_oci_shaped_pulls_back_verified_and_a_second_push_sends_only_heads() {
    let dir = tempfile::tempdir().unwrap();
    let source = TestRegistry::start();
    let (tar, app_root, web_root) = shop(dir.path(), &source);
    let site = TestRegistry::start();
    let proxy = FaultyProxy::start(&site.host, Box::new(|_, _| None));
    let target = format!("{}/apps/shop:1.0", proxy.host);
    let push = || {
        run(
            &["--insecure-registry", &proxy.host, "push", tar.to_str().unwrap(), &target, "--format", "json"],
            dir.path(),
        )
    };
    let o = push();
    assert!(o.status.success(), "push: {}", text(&o.stderr));
    let pushed = json_of(&o.stdout);
    let reference = pushed["reference"].as_str().unwrap().to_owned();
    let index_bytes = skopeo_raw(&format!("{}/apps/shop:1.0", site.host));
    assert_eq!(reference, format!("{target}@{}", Digest::of(&index_bytes)), "push prints the tag and the digest");

    // The index: the bundle manifest, the invocation image, the component, with cnab-to-oci's
    // annotations; every image in the one repository by the bundle's digests.
    let index = json_of(&index_bytes);
    assert_eq!(index["mediaType"], OCI_INDEX);
    let annotations = &index["annotations"];
    assert_eq!(annotations["io.cnab.runtime_version"], "v1.2.0");
    assert_eq!(annotations["io.cnab.keywords"], r#"["shop","web"]"#);
    assert_eq!(annotations["org.opencontainers.image.title"], "shop");
    assert_eq!(annotations["org.opencontainers.image.version"], "1.0.0");
    assert_eq!(annotations["org.opencontainers.image.description"], "A shop");
    assert_eq!(annotations["org.opencontainers.artifactType"], "application/vnd.cnab.manifest.v1");
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 3, "{index:#}");
    assert_eq!(manifests[0]["annotations"], json!({ "io.cnab.manifest.type": "config" }));
    assert_eq!(manifests[1]["annotations"], json!({ "io.cnab.manifest.type": "invocation" }));
    assert_eq!(manifests[1]["digest"], app_root.digest.to_string());
    assert_eq!(manifests[1]["mediaType"], OCI_INDEX);
    assert_eq!(manifests[1]["size"], app_root.size);
    assert_eq!(
        manifests[2]["annotations"],
        json!({ "io.cnab.manifest.type": "component", "io.cnab.component.name": "web" })
    );
    assert_eq!(manifests[2]["digest"], web_root.digest.to_string());
    assert_eq!(manifests[2]["mediaType"], DOCKER_LIST);
    let manifest =
        json_of(&skopeo_raw(&format!("{}/apps/shop@{}", site.host, manifests[0]["digest"].as_str().unwrap())));
    assert_eq!(manifest["config"]["mediaType"], "application/vnd.cnab.config.v1+json");
    let original: Value = json_of(&std::fs::read(dir.path().join("bundle.json")).unwrap());
    assert_eq!(
        manifest["config"]["digest"],
        Digest::of(&serde_jcs::to_vec(&original).unwrap()).to_string(),
        "bundle.json as canonical JSON"
    );
    // No image was tagged in the bundle's repository: only the bundle's tag is there.
    let tags = json_of(
        &Command::new("skopeo")
            .args(["list-tags", "--tls-verify=false"])
            .arg(format!("docker://{}/apps/shop", site.host))
            .output()
            .unwrap()
            .stdout,
    );
    assert_eq!(tags["Tags"], json!(["1.0"]));

    // Pulled back: a thick bundle that verifies, with the bundle's digests.
    pull_and_verify(&proxy.host, &reference, "pulled.tgz", dir.path());
    let want = vec![
        ("invocationImages[0]".to_owned(), app_root.digest.to_string()),
        ("web".to_owned(), web_root.digest.to_string()),
    ];
    assert_eq!(digests(&inspect(&proxy.host, "pulled.tgz", dir.path())), want);
    // Inspected by reference, the same images.
    let by_reference = inspect(&proxy.host, &target, dir.path());
    assert_eq!(digests(&by_reference), want);
    assert_eq!(by_reference["name"], "shop");

    // Again: everything is there, which HEAD requests find out.
    let before = proxy.seen.lock().unwrap().len();
    let o = push();
    assert!(o.status.success(), "second push: {}", text(&o.stderr));
    assert_eq!(json_of(&o.stdout)["reference"], reference.as_str());
    let again: Vec<String> = proxy.seen.lock().unwrap()[before..].iter().map(|(line, _)| line.clone()).collect();
    let not_head: Vec<&String> =
        again.iter().filter(|l| !l.starts_with("HEAD ") && !l.starts_with("GET /v2/ ")).collect();
    assert!(not_head.is_empty(), "the second push sent more than HEADs: {not_head:#?}");
    assert!(again.iter().any(|l| l.starts_with("HEAD ")), "{again:#?}");
}

#[test]
fn relocate_and_push_take_a_published_bundle_by_reference_pinned_by_digest() {
    let dir = tempfile::tempdir().unwrap();
    let source = TestRegistry::start();
    let (tar, app_root, web_root) = shop(dir.path(), &source);
    let site = TestRegistry::start();
    let target = format!("{}/apps/shop", site.host);
    let o = run(&["--insecure-registry", &site.host, "push", tar.to_str().unwrap(), &target], dir.path());
    assert!(o.status.success(), "push: {}", text(&o.stderr));
    let printed = text(&o.stdout);
    let pinned = printed.lines().last().unwrap().strip_prefix("pushed ").unwrap().replace(":latest@", "@");

    let mirror = TestRegistry::start();
    let hosts = format!("--insecure-registry={}", mirror.host);
    let o = run(
        &[
            "--insecure-registry",
            &site.host,
            &hosts,
            "relocate",
            &pinned,
            "--to",
            &format!("{}/mirror", mirror.host),
            "-o",
            "mapping.json",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "relocate by reference: {}", text(&o.stderr));
    let mapping = json_of(&std::fs::read(dir.path().join("mapping.json")).unwrap());
    // Each image under the prefix by its own path, as relocate names them from any bundle.
    assert_eq!(
        mapping,
        json!({
            format!("{}/team/app:1.2", source.host): format!("{}/mirror/team/app@{}", mirror.host, app_root.digest),
            format!("{}/team/web:2", source.host): format!("{}/mirror/team/web@{}", mirror.host, web_root.digest),
        })
    );
    // Pushed on from its reference, the bundle is copied: the same index, so the same digest.
    let copy = format!("{}/copies/shop:1", mirror.host);
    let o = run(&["--insecure-registry", &site.host, &hosts, "push", &pinned, &copy, "--format", "json"], dir.path());
    assert!(o.status.success(), "push of a published bundle: {}", text(&o.stderr));
    let digest = pinned.rsplit_once('@').unwrap().1;
    assert_eq!(json_of(&o.stdout)["digest"], digest);
    // Copied within one registry, every blob is mounted from the bundle's repository.
    let proxy = FaultyProxy::start(&site.host, Box::new(|_, _| None));
    let through_proxy = pinned.replace(&site.host, &proxy.host);
    let copy = format!("{}/copies/shop:1", proxy.host);
    let o = run(&["--insecure-registry", &proxy.host, "push", &through_proxy, &copy, "--format", "json"], dir.path());
    assert!(o.status.success(), "push within the registry: {}", text(&o.stderr));
    assert_eq!(json_of(&o.stdout)["digest"], digest);
    let seen: Vec<String> = proxy.seen.lock().unwrap().iter().map(|(line, _)| line.clone()).collect();
    assert!(seen.iter().any(|l| l.starts_with("POST") && l.contains("mount=")), "nothing was mounted: {seen:#?}");
    let uploads: Vec<&String> = seen.iter().filter(|l| l.starts_with("PUT") && l.contains("/blobs/uploads/")).collect();
    assert!(uploads.is_empty(), "blobs were uploaded rather than mounted: {uploads:#?}");
    // A reference whose digest is not the bundle's is refused.
    let wrong = format!("{target}@{}", Digest::of(b"another"));
    let o = run(&["--insecure-registry", &site.host, "inspect", &wrong], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
}

#[test]
fn a_vm_disk_a_tarball_and_a_chart_with_its_shipped_driver_round_trip_through_a_registry() {
    let dir = tempfile::tempdir().unwrap();
    let source = TestRegistry::start();
    let bundle_dir = dir.path().join("bundle");
    std::fs::create_dir_all(bundle_dir.join("drivers")).unwrap();
    let raw = dir.path().join("disk.img");
    let mut disk = vec![0u8; 2 << 20];
    for (i, b) in disk.iter_mut().enumerate().take(1 << 20) {
        *b = (i * 7 % 251) as u8;
    }
    std::fs::write(&raw, &disk).unwrap();
    let qcow2 = bundle_dir.join("root.qcow2");
    let o =
        Command::new("qemu-img").args(["convert", "-f", "raw", "-O", "qcow2"]).arg(&raw).arg(&qcow2).output().unwrap();
    assert!(o.status.success(), "qemu-img: {}", text(&o.stderr));
    std::fs::write(
        bundle_dir.join("site.tar.gz"),
        tar_gz(&[Entry::Dir("site/"), Entry::File("site/index.html", b"<h1>shop</h1>\n")]),
    )
    .unwrap();
    let layout_path = dir.path().join("images");
    let layout = Layout::create(&layout_path).unwrap();
    let (app_root, _) = write_multiarch_image(&layout, "app", 90);
    source.push(&layout_path, "app", "team/app:1");
    let app = format!("{}/team/app:1", source.host);
    write_chart(&bundle_dir.join("shop-1.0.0.tgz"), &app);
    std::fs::copy(guest("example_helm_driver.wasm"), bundle_dir.join("drivers/helm.wasm")).unwrap();
    let sha = |p: &Path| Digest::of(&std::fs::read(p).unwrap()).to_string();
    std::fs::write(
        bundle_dir.join("bundle.json"),
        json!({
            "schemaVersion": "v1.2.0", "name": "kinds", "version": "1.0.0",
            "invocationImages": [{ "image": app, "contentDigest": app_root.digest.to_string() }],
            "images": {
                "root": { "image": "root.qcow2", "imageType": "qcow2", "contentDigest": sha(&qcow2) },
                "site": { "image": "site.tar.gz", "imageType": "tarball", "contentDigest": sha(&bundle_dir.join("site.tar.gz")) },
                "chart": { "image": "shop-1.0.0.tgz", "imageType": "helm" }
            }
        })
        .to_string(),
    )
    .unwrap();
    let o = run(&["driver", "add", "bundle.json", "drivers/helm.wasm"], &bundle_dir);
    assert!(o.status.success(), "driver add: {}", text(&o.stderr));

    let site = TestRegistry::start();
    let insecure = format!("--insecure-registry={}", site.host);
    let from = format!("--insecure-registry={}", source.host);
    let target = format!("{}/apps/kinds:1", site.host);
    let o = run(&[&from, &insecure, "push", "bundle/bundle.json", &target, "--format", "json"], dir.path());
    assert!(o.status.success(), "push: {}", text(&o.stderr));
    let pushed = json_of(&o.stdout);
    let helm = pushed["drivers"]["helm"].as_str().unwrap();
    assert!(helm.starts_with(&format!("{}/apps/kinds@sha256:", site.host)), "{pushed:#}");
    // The driver is a Wasm OCI artifact listed with ferry's own annotation.
    let index = json_of(&skopeo_raw(&target));
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["io.ferry.driver.name"] == "helm")
        .unwrap();
    assert!(helm.ends_with(entry["digest"].as_str().unwrap()));
    let artifact = json_of(&skopeo_raw(helm));
    assert_eq!(artifact["config"]["mediaType"], "application/vnd.wasm.config.v0+json");
    assert_eq!(artifact["layers"][0]["mediaType"], "application/wasm");
    assert_eq!(artifact["layers"][0]["digest"], sha(&guest("example_helm_driver.wasm")));

    // Pulled with nothing but the registry: the disk, the tarball, the chart and the driver.
    pull_and_verify(&site.host, &target, "kinds.tar", dir.path());
    let inspection = inspect(&site.host, "kinds.tar", dir.path());
    let drivers: Vec<(&str, &str)> = inspection["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["key"].as_str().unwrap(), i["driver"].as_str().unwrap()))
        .collect();
    assert_eq!(drivers, [("invocationImages[0]", "oci"), ("chart", "helm"), ("root", "vm-disk"), ("site", "tarball")]);
    assert_eq!(inspection["bundleDrivers"][0]["name"], "helm");
    // And relocated from the pulled thick bundle, through the shipped driver again.
    let mirror = TestRegistry::start();
    let o = run(
        &[
            "--insecure-registry",
            &mirror.host,
            "relocate",
            "kinds.tar",
            "--to",
            &format!("{}/m", mirror.host),
            "-o",
            "m.json",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "relocate of the pulled bundle: {}", text(&o.stderr));
}

/// A chart `shop` whose values name `image`, packed as helm packs it.
fn write_chart(path: &Path, image: &str) {
    let values = format!("web:\n  image: {image}\n");
    let chart = "apiVersion: v2\nname: shop\nversion: 1.0.0\n";
    std::fs::write(
        path,
        tar_gz(&[
            Entry::Dir("shop/"),
            Entry::File("shop/Chart.yaml", chart.as_bytes()),
            Entry::File("shop/values.yaml", values.as_bytes()),
        ]),
    )
    .unwrap();
}

#[test]
fn what_is_not_a_whole_bundle_is_refused_naming_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let source = TestRegistry::start();
    let (tar, _, _) = shop(dir.path(), &source);
    let pull = |host: &str, reference: &str| {
        let o = run(&["--insecure-registry", host, "pull", reference, "-o", "out.tgz"], dir.path());
        assert_eq!(o.status.code(), Some(1), "pull of {reference} succeeded");
        assert!(!dir.path().join("out.tgz").exists(), "a failed pull left its output");
        text(&o.stderr)
    };
    // A file is exported, not pulled.
    let err = pull(&source.host, "bundle.json");
    assert!(err.contains("pull takes REGISTRY/REPOSITORY") && err.contains("ferry export"), "{err}");
    // An image's index is not a bundle.
    let err = pull(&source.host, &format!("{}/team/app:1.2", source.host));
    assert!(err.contains("is an image index, not a CNAB bundle"), "{err}");

    // An index that says it is a bundle, whose config is an image's, not bundle.json.
    let layout_path = dir.path().join("fake");
    let layout = Layout::create(&layout_path).unwrap();
    let config =
        layout.put_bytes(br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#).unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":78}},"layers":null}}"#
    );
    let manifest_digest = layout.put_bytes(manifest.as_bytes()).unwrap();
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{},"annotations":{{"io.cnab.manifest.type":"config"}}}}]}}"#,
        manifest.len()
    );
    let mut root = Descriptor::new(OCI_INDEX, layout.put_bytes(index.as_bytes()).unwrap(), index.len() as u64);
    root.annotations.insert(REF_NAME.into(), "fake".into());
    layout.add_to_index(root).unwrap();
    source.push_as_stored(&layout_path, "fake", "fake/bundle:1");
    let err = pull(&source.host, &format!("{}/fake/bundle:1", source.host));
    assert!(err.contains("the bundle config") && err.contains("is not a valid CNAB bundle"), "{err}");

    // A bundle whose manifest is gone from the registry, and one whose config was changed
    // behind the registry's back.
    let site = TestRegistry::start();
    for repository in ["gone", "tampered"] {
        let o = run(
            &[
                "--insecure-registry",
                &site.host,
                "push",
                tar.to_str().unwrap(),
                &format!("{}/{repository}:1", site.host),
            ],
            dir.path(),
        );
        assert!(o.status.success(), "push: {}", text(&o.stderr));
    }
    let index = json_of(&skopeo_raw(&format!("{}/gone:1", site.host)));
    let bundle_manifest = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let config = json_of(&skopeo_raw(&format!("{}/gone@{bundle_manifest}", site.host)))["config"]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let hex = |d: &str| d.trim_start_matches("sha256:").to_owned();
    let revision = site.storage().join("repositories/gone/_manifests/revisions/sha256").join(hex(&bundle_manifest));
    std::fs::remove_dir_all(&revision).unwrap();
    let err = pull(&site.host, &format!("{}/gone:1", site.host));
    assert!(
        err.contains(&format!("lists the bundle manifest {bundle_manifest}, which")) && err.contains("does not have"),
        "{err}"
    );

    let data = site.storage().join("blobs/sha256").join(&hex(&config)[..2]).join(hex(&config)).join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    let at = bytes.windows(4).position(|w| w == b"shop").unwrap();
    bytes[at..at + 4].copy_from_slice(b"shoq");
    std::fs::write(&data, bytes).unwrap();
    let err = pull(&site.host, &format!("{}/tampered:1", site.host));
    assert!(err.contains("the bundle config is refused") && err.contains(&config), "{err}");
}

#[test]
fn pushing_to_a_registry_that_wants_credentials_takes_them_from_docker_config_json() {
    let dir = tempfile::tempdir().unwrap();
    let source = TestRegistry::start();
    let (tar, _, _) = shop(dir.path(), &source);
    let site = TestRegistry::start_with_password("ann", "s3cret");
    let target = format!("{}/apps/shop:1", site.host);
    let args = ["--insecure-registry", &site.host, "push", tar.to_str().unwrap(), &target];
    let o = run(&args, dir.path());
    assert_eq!(o.status.code(), Some(1), "pushed without credentials");
    assert!(text(&o.stderr).contains("no credentials were sent"), "{}", text(&o.stderr));

    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".docker")).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode("ann:s3cret");
    std::fs::write(
        home.join(".docker/config.json"),
        json!({ "auths": { site.host.clone(): { "auth": auth } } }).to_string(),
    )
    .unwrap();
    let with_home = |args: &[&str]| {
        ferry_command(dir.path())
            .current_dir(dir.path())
            .env("HOME", &home)
            .env_remove("DOCKER_CONFIG")
            .args(args)
            .output()
            .unwrap()
    };
    let o = with_home(&args);
    assert!(o.status.success(), "push with ~/.docker/config.json: {}", text(&o.stderr));
    let o = with_home(&["--insecure-registry", &site.host, "pull", &target, "-o", "pulled.tgz"]);
    assert!(o.status.success(), "pull with ~/.docker/config.json: {}", text(&o.stderr));
}

/// A bundle as cnab-to-oci publishes it when the registry takes neither of its OCI forms (the
/// bundle manifest in Docker schema2 with bundle.json as its config and only layer, the index
/// as a Docker manifest list), and in its first form (OCI), both serialized as Go writes them;
/// the images in the bundle's repository under the references bundle.json had before (here on
/// Docker Hub).
#[test]
fn bundles_cnab_to_oci_published_in_its_oci_form_and_docker_fallback_are_pulled_inspected_and_relocated() {
    let dir = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start();
    let layout_path = dir.path().join("published");
    let layout = Layout::create(&layout_path).unwrap();
    let (app, _) = write_multiarch_image(&layout, "app", 70);
    let (db, _) = write_docker_image(&layout, "db", 80);
    let bundle = json!({
        "schemaVersion": "v1.2.0", "name": "legacy", "version": "0.1.0", "keywords": ["db"],
        "invocationImages": [{ "image": "docker.io/example/legacy-installer:0.1.0", "imageType": "docker",
            "contentDigest": app.digest.to_string(), "size": app.size, "mediaType": OCI_INDEX }],
        "images": { "db": { "image": "docker.io/example/db:2", "imageType": "docker",
            "contentDigest": db.digest.to_string(), "size": db.size, "mediaType": DOCKER_LIST } }
    });
    let config = serde_jcs::to_vec(&bundle).unwrap();
    let config_digest = layout.put_bytes(&config).unwrap();
    let config_type = "application/vnd.docker.container.image.v1+json";
    // Go's json.MarshalIndent(m, "", "   "), which distribution's schema2.FromStruct calls.
    let descriptor = |i: &str| {
        format!(
            "{{\n{i}   \"mediaType\": \"{config_type}\",\n{i}   \"digest\": \"{config_digest}\",\n{i}   \"size\": {}\n{i}}}",
            config.len()
        )
    };
    let manifest = format!(
        "{{\n   \"schemaVersion\": 2,\n   \"mediaType\": \"{DOCKER_MANIFEST}\",\n   \"config\": {},\n   \"layers\": [\n      {}\n   ]\n}}",
        descriptor("   "),
        descriptor("      ")
    );
    json_of(manifest.as_bytes());
    let manifest_digest = layout.put_bytes(manifest.as_bytes()).unwrap();
    let entry = |media_type: &str, digest: &Digest, size: u64, annotations: &str| {
        format!(r#"{{"mediaType":"{media_type}","digest":"{digest}","size":{size},"annotations":{{{annotations}}}}}"#)
    };
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{},{},{}],"annotations":{{"io.cnab.keywords":"[\"db\"]","io.cnab.runtime_version":"v1.2.0","org.opencontainers.artifactType":"application/vnd.cnab.manifest.v1","org.opencontainers.image.description":"","org.opencontainers.image.title":"legacy","org.opencontainers.image.version":"0.1.0"}},"mediaType":"{DOCKER_LIST}"}}"#,
        entry(DOCKER_MANIFEST, &manifest_digest, manifest.len() as u64, r#""io.cnab.manifest.type":"config""#),
        entry(OCI_INDEX, &app.digest, app.size, r#""io.cnab.manifest.type":"invocation""#),
        entry(DOCKER_LIST, &db.digest, db.size, r#""io.cnab.component.name":"db","io.cnab.manifest.type":"component""#),
    );
    let mut root = Descriptor::new(DOCKER_LIST, layout.put_bytes(index.as_bytes()).unwrap(), index.len() as u64);
    root.annotations.insert(REF_NAME.into(), "bundle".into());
    layout.add_to_index(root).unwrap();
    registry.push_as_stored(&layout_path, "bundle", "example/legacy:0.1.0");
    let reference = format!("{}/example/legacy:0.1.0", registry.host);

    pull_and_verify(&registry.host, &reference, "legacy.tgz", dir.path());
    let want =
        vec![("invocationImages[0]".to_owned(), app.digest.to_string()), ("db".to_owned(), db.digest.to_string())];
    assert_eq!(digests(&inspect(&registry.host, "legacy.tgz", dir.path())), want);
    assert_eq!(digests(&inspect(&registry.host, &reference, dir.path())), want);

    // cnab-to-oci's first choice, which most registries take: its own config media type in an
    // OCI manifest written by Go's encoding/json (no mediaType, "layers":null), under an OCI
    // index without a mediaType either.
    let manifest = format!(
        r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.cnab.config.v1+json","digest":"{config_digest}","size":{}}},"layers":null}}"#,
        config.len()
    );
    let manifest_digest = layout.put_bytes(manifest.as_bytes()).unwrap();
    let oci_manifest = "application/vnd.oci.image.manifest.v1+json";
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{},{},{}],"annotations":{{"io.cnab.runtime_version":"v1.2.0","org.opencontainers.artifactType":"application/vnd.cnab.manifest.v1","org.opencontainers.image.description":"","org.opencontainers.image.title":"legacy","org.opencontainers.image.version":"0.1.0"}}}}"#,
        entry(oci_manifest, &manifest_digest, manifest.len() as u64, r#""io.cnab.manifest.type":"config""#),
        entry(OCI_INDEX, &app.digest, app.size, r#""io.cnab.manifest.type":"invocation""#),
        entry(DOCKER_LIST, &db.digest, db.size, r#""io.cnab.component.name":"db","io.cnab.manifest.type":"component""#),
    );
    let mut root = Descriptor::new(OCI_INDEX, layout.put_bytes(index.as_bytes()).unwrap(), index.len() as u64);
    root.annotations.insert(REF_NAME.into(), "oci".into());
    layout.add_to_index(root).unwrap();
    registry.push_as_stored(&layout_path, "oci", "example/legacy:oci");
    let oci_reference = format!("{}/example/legacy:oci", registry.host);
    pull_and_verify(&registry.host, &oci_reference, "legacy-oci.tgz", dir.path());
    assert_eq!(digests(&inspect(&registry.host, &oci_reference, dir.path())), want);

    let site = TestRegistry::start();
    let o = run(
        &[
            "--insecure-registry",
            &registry.host,
            "--insecure-registry",
            &site.host,
            "relocate",
            &reference,
            "--to",
            &format!("{}/site", site.host),
            "-o",
            "mapping.json",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "relocate: {}", text(&o.stderr));
    assert_eq!(
        json_of(&std::fs::read(dir.path().join("mapping.json")).unwrap()),
        json!({
            "docker.io/example/legacy-installer:0.1.0": format!("{}/site/example/legacy-installer@{}", site.host, app.digest),
            "docker.io/example/db:2": format!("{}/site/example/db@{}", site.host, db.digest),
        })
    );
}

#[test]
fn install_takes_a_published_bundle_by_reference_pinned_by_digest_with_its_relocation_mapping() {
    let site = common::site::Site::new();
    let target = format!("{}/apps/shop:1", site.registry.host);
    let pushed = site.ferry(&["push", site.bundle.to_str().unwrap(), &target, "--format", "json"]);
    common::site::ok(&pushed);
    let digest = json_of(&pushed.stdout)["digest"].as_str().unwrap().to_owned();
    let out = site.ferry(&["install", "prod", &target, "--param", "greeting=hi", "--cred", "token=value:x"]);
    common::site::ok(&out);
    let installer = site.output("prod", "mapping");
    assert!(installer.contains(&format!("{}/apps/shop@", site.registry.host)), "the mapping mounted: {installer}");
    let shown = site.show("prod");
    let recorded = shown["actions"][0]["claim"]["bundleReference"].as_str().unwrap().to_owned();
    assert_eq!(recorded, format!("{}/apps/shop@{digest}", site.registry.host), "the claim pins the digest");
    // Upgraded without naming the bundle: the recorded reference, the same bundle.
    common::site::ok(&site.ferry(&["upgrade", "prod", "--cred", "token=value:x"]));
}
