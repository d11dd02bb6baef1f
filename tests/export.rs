//! `ferry export`, `inspect` and `verify` against a real registry: images built here, pushed with
//! skopeo, exported by ferry, then read back by ferry, skopeo and tar.

mod common;

use common::*;
use ferry::oci::{Descriptor, Layout};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

struct Setup {
    dir: tempfile::TempDir,
    registry: TestRegistry,
    bundle: PathBuf,
    app: (String, Descriptor),
    web: (String, Descriptor),
}

/// Two multi-platform images in a real registry, and a bundle.json that names them.
fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start();
    let layout_path = dir.path().join("images");
    let layout = Layout::create(&layout_path).unwrap();
    let (app_root, _) = write_multiarch_image(&layout, "app", 10);
    // Docker's formats: a manifest list over schema2 manifests.
    let (web_root, _) = write_docker_image(&layout, "web", 20);
    registry.push(&layout_path, "app", "team/app:1.2");
    registry.push_as_stored(&layout_path, "web", "team/web:2");
    let app = format!("{}/team/app:1.2", registry.host);
    let web = format!("{}/team/web:2", registry.host);
    let bundle = dir.path().join("bundle.json");
    let doc = json!({
        "schemaVersion": "v1.2.0",
        "name": "shop",
        "version": "1.0.0",
        "invocationImages": [{ "image": app, "imageType": "docker", "contentDigest": app_root.digest.to_string() }],
        "images": { "web": { "image": web, "contentDigest": web_root.digest.to_string(), "size": web_root.size } }
    });
    // Not canonical on purpose: the bundle must carry these exact bytes.
    std::fs::write(&bundle, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    Setup { dir, registry, bundle, app: (app, app_root), web: (web, web_root) }
}

fn export(s: &Setup, name: &str) -> PathBuf {
    let out = s.dir.path().join("out").join(name);
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let o = ferry(
        &["--insecure-registry", &s.registry.host, "export", s.bundle.to_str().unwrap(), "-o", out.to_str().unwrap()],
        s.dir.path(),
    );
    assert!(o.status.success(), "export failed: {}", text(&o.stderr));
    out
}

fn entries(archive: &Path) -> Vec<(String, Vec<u8>)> {
    let mut a = ferry::archive::open(archive).unwrap();
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = String::from_utf8(e.path_bytes().to_vec()).unwrap();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut bytes).unwrap();
            (name, bytes)
        })
        .collect()
}

#[test]
fn export_writes_a_thick_bundle_that_ferry_skopeo_and_tar_read() {
    let s = setup();
    let tgz = export(&s, "shop.tgz");
    let entries = entries(&tgz);
    assert_eq!(entries[0], ("bundle.json".into(), std::fs::read(&s.bundle).unwrap()), "bundle.json first, exact bytes");
    assert_eq!(entries[1], ("relocation-mapping.json".into(), b"{}".to_vec()));
    let index: Value =
        serde_json::from_slice(&entries.iter().find(|(n, _)| n == "artifacts/layout/index.json").unwrap().1).unwrap();
    let names: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["annotations"][ferry::oci::REF_NAME].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&s.app.0.as_str()) && names.contains(&s.web.0.as_str()), "{names:?}");
    let blob_names: Vec<&String> =
        entries.iter().map(|(n, _)| n).filter(|n| n.contains("/blobs/sha256/") && !n.ends_with('/')).collect();
    let unique: std::collections::BTreeSet<_> = blob_names.iter().collect();
    assert_eq!(unique.len(), blob_names.len(), "a blob stored twice");
    // Per image: index, 2 x (manifest, config, top layer), base layer; the two images' configs
    // are identical per platform, so they are stored once.
    assert_eq!(blob_names.len(), 2 * 8 - 2);

    // Deterministic: a second export gives the same bytes.
    let again = export(&s, "again.tgz");
    assert_eq!(std::fs::read(&tgz).unwrap(), std::fs::read(&again).unwrap());

    // Another tool reads the images out of the extracted layout.
    let tar = export(&s, "shop.tar");
    let extracted = s.dir.path().join("extracted");
    std::fs::create_dir_all(&extracted).unwrap();
    assert!(Command::new("tar").arg("xf").arg(&tar).arg("-C").arg(&extracted).status().unwrap().success());
    // (skopeo 1.9 reads only OCI media types from a layout: ask it for the OCI image.)
    let o = Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:{}", extracted.join("artifacts/layout").display(), s.app.0))
        .output()
        .unwrap();
    assert!(o.status.success(), "skopeo: {}", text(&o.stderr));
    assert_eq!(ferry::oci::Digest::of(&o.stdout), s.app.1.digest);

    let o = ferry(&["validate", tgz.to_str().unwrap()], s.dir.path());
    assert!(o.status.success(), "validate of a thick bundle: {}", text(&o.stderr));

    let zst = export(&s, "shop.tar.zst");
    for archive in [&tgz, &tar, &zst] {
        let o = ferry(&["verify", archive.to_str().unwrap()], s.dir.path());
        assert!(o.status.success(), "verify {}: {}", archive.display(), text(&o.stderr));
    }
    let o = ferry(&["inspect", zst.to_str().unwrap(), "--format", "json"], s.dir.path());
    assert!(o.status.success(), "{}", text(&o.stderr));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let web = report["images"].as_array().unwrap().iter().find(|i| i["key"] == "web").unwrap();
    assert_eq!(web["driver"], "oci");
    assert_eq!(web["digest"], s.web.1.digest.to_string());
    assert_eq!(web["platforms"], json!(["linux/arm64", "linux/amd64"]));
    let tgz_size = std::fs::metadata(&tgz).unwrap().len();
    let tar_size = std::fs::metadata(&tar).unwrap().len();
    assert!(tgz_size < tar_size + tar_size / 100, "stored gzip costs under 1%: {tgz_size} vs {tar_size}");
}

#[test]
fn a_content_digest_mismatch_stops_the_export_and_leaves_nothing() {
    let s = setup();
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&s.bundle).unwrap()).unwrap();
    let wrong = ferry::oci::Digest::of(b"not the image").to_string();
    doc["images"]["web"]["contentDigest"] = json!(wrong);
    std::fs::write(&s.bundle, doc.to_string()).unwrap();
    let out_dir = s.dir.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join("shop.tgz");
    let o = ferry(
        &["--insecure-registry", &s.registry.host, "export", s.bundle.to_str().unwrap(), "-o", out.to_str().unwrap()],
        s.dir.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    let stderr = text(&o.stderr);
    assert!(
        stderr.contains("web") && stderr.contains(&wrong) && stderr.contains(&s.web.1.digest.to_string()),
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(&out_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "the failed export left {left:?}");
}

#[test]
fn verify_names_a_corrupt_blob() {
    let s = setup();
    let tar = export(&s, "shop.tar");
    let mut bytes = std::fs::read(&tar).unwrap();
    // The base layer of app is 300,000 bytes of the seed value 10: flip one in the middle.
    let run = vec![10u8; 4096];
    let at = bytes.windows(run.len()).position(|w| w == run.as_slice()).expect("the layer is in the tar");
    bytes[at + 100] ^= 0xff;
    std::fs::write(&tar, &bytes).unwrap();
    let o = ferry(&["verify", tar.to_str().unwrap()], s.dir.path());
    assert_eq!(o.status.code(), Some(1));
    let stderr = text(&o.stderr);
    assert!(stderr.contains("hash to"), "{stderr}");
}

/// Writes the entries of one archive.
type WriteEntries = dyn Fn(&mut tar::Builder<std::fs::File>);

#[test]
fn unsafe_archives_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Box<WriteEntries>)> = vec![
        ("points outside", Box::new(|b| append(b, "../evil", b"x"))),
        ("absolute path", Box::new(|b| append_raw_name(b, "/etc/evil", b"x"))),
        (
            "appears twice",
            Box::new(|b| {
                append(b, "artifacts/layout/oci-layout", b"{}");
                append(b, "./artifacts/layout/oci-layout", b"{}");
            }),
        ),
        (
            "Symlink",
            Box::new(|b| {
                let mut h = tar::Header::new_ustar();
                h.set_path("artifacts/layout/blobs/sha256/x").unwrap();
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_link_name("/etc/passwd").unwrap();
                h.set_size(0);
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }),
        ),
        ("more than the", Box::new(|b| append(b, "relocation-mapping.json", &vec![b' '; (16 << 20) + 1]))),
    ];
    for (expected, build) in cases {
        let path = dir.path().join("bad.tar");
        let mut builder = tar::Builder::new(std::fs::File::create(&path).unwrap());
        append(&mut builder, "bundle.json", b"{}");
        build(&mut builder);
        builder.finish().unwrap();
        for command in ["verify", "inspect"] {
            let o = ferry(&[command, path.to_str().unwrap()], dir.path());
            assert_eq!(o.status.code(), Some(1), "{command} {expected}");
            assert!(text(&o.stderr).contains(expected), "{command}: {}", text(&o.stderr));
        }
    }
}

fn append(b: &mut tar::Builder<std::fs::File>, name: &str, bytes: &[u8]) {
    let mut h = tar::Header::new_ustar();
    h.set_path(name).unwrap_or_else(|_| append_raw_name(b, name, bytes));
    h.set_size(bytes.len() as u64);
    h.set_cksum();
    b.append(&h, bytes).unwrap();
}

/// tar's own checks refuse `..` and absolute names; write the name bytes directly.
fn append_raw_name(b: &mut tar::Builder<std::fs::File>, name: &str, bytes: &[u8]) {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_size(bytes.len() as u64);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    b.append(&h, bytes).unwrap();
}

#[test]
fn umoci_reads_the_layout_of_an_extracted_ferry_bundle() {
    let s = setup();
    let tar = export(&s, "shop.tar");
    let extracted = s.dir.path().join("x");
    std::fs::create_dir_all(&extracted).unwrap();
    assert!(Command::new("tar").arg("xf").arg(&tar).arg("-C").arg(&extracted).status().unwrap().success());
    let o = Command::new("umoci").args(["ls", "--layout"]).arg(extracted.join("artifacts/layout")).output().unwrap();
    assert!(o.status.success(), "umoci: {}", text(&o.stderr));
    let listed = text(&o.stdout);
    assert!(listed.contains(&s.app.0) && listed.contains(&s.web.0), "{listed}");
}

/// An archive as porter and duffle write them: gzip, `./` names, bundle.json after the blobs,
/// no relocation-mapping.json; the layout made by skopeo.
#[test]
fn a_porter_style_archive_is_inspected_and_verified() {
    let s = setup();
    let root = s.dir.path().join("porter");
    let layout = root.join("artifacts/layout");
    std::fs::create_dir_all(&layout).unwrap();
    // skopeo 1.9 cannot write a Docker manifest list into a layout unchanged: the porter-style
    // bundle carries the OCI image only.
    let (reference, _) = &s.app;
    let o = Command::new("skopeo")
        .args(["copy", "--quiet", "--all", "--preserve-digests", "--src-tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .arg(format!("oci:{}:{reference}", layout.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "skopeo: {}", text(&o.stderr));
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&s.bundle).unwrap()).unwrap();
    doc.as_object_mut().unwrap().remove("images");
    std::fs::write(root.join("bundle.json"), doc.to_string()).unwrap();
    let archive = s.dir.path().join("porter.tgz");
    // `artifacts` sorts before `bundle.json`: the blobs come first, as in porter's archives.
    let status = Command::new("tar")
        .arg("czf")
        .arg(&archive)
        .arg("-C")
        .arg(&root)
        .args(["./artifacts", "./bundle.json"])
        .status();
    assert!(status.unwrap().success());

    let o = ferry(&["verify", archive.to_str().unwrap()], s.dir.path());
    assert!(o.status.success(), "verify: {}", text(&o.stderr));
    let o = ferry(&["inspect", archive.to_str().unwrap(), "--format", "json"], s.dir.path());
    assert!(o.status.success(), "inspect: {}", text(&o.stderr));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    for image in report["images"].as_array().unwrap() {
        assert!(image["digest"].is_string(), "{image}");
        assert!(image["size"].as_u64().unwrap() > 300_000, "{image}");
    }

    let site = TestRegistry::start();
    let mapping = s.dir.path().join("porter-mapping.json");
    let o = ferry(
        &[
            "--insecure-registry",
            &site.host,
            "relocate",
            archive.to_str().unwrap(),
            "--to",
            &site.host,
            "-o",
            mapping.to_str().unwrap(),
        ],
        s.dir.path(),
    );
    assert!(o.status.success(), "relocate: {}", text(&o.stderr));
    let written: Value = serde_json::from_slice(&std::fs::read(&mapping).unwrap()).unwrap();
    assert_eq!(written[&s.app.0], format!("{}/team/app@{}", site.host, s.app.1.digest));
}
