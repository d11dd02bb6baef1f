//! The built-in `vm-disk` and `tarball` drivers end to end: disks made by qemu-img and tarballs
//! made here, served from files, a local HTTP server and a real registry; exported, verified,
//! inspected and relocated by the `ferry` binary; what it wrote read back with qemu-img, skopeo
//! and tar.

mod common;

use common::http_server::HttpServer;
use common::*;
use ferry::oci::{Descriptor, Digest, Layout, REF_NAME};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Bytes the guest sees in every test disk.
const DISK_SIZE: usize = 4 << 20;

#[test]
fn vm_disks_from_a_file_a_url_and_a_container_disk_are_exported_verified_inspected_and_relocated() {
    let dir = tempfile::tempdir().unwrap();
    let source = TestRegistry::start();
    let (originals, bundle_dir, served) =
        (dir.path().join("originals"), dir.path().join("bundle"), dir.path().join("served"));
    for d in [&originals, &bundle_dir, &served] {
        std::fs::create_dir_all(d).unwrap();
    }
    let raw = originals.join("disk.img");
    std::fs::write(&raw, disk_content(1)).unwrap();
    let qcow2 = bundle_dir.join("root.qcow2");
    let vmdk = served.join("data.vmdk");
    qemu_img(&["convert", "-f", "raw", "-O", "qcow2"], &[&raw, &qcow2]);
    qemu_img(&["convert", "-f", "raw", "-O", "vmdk"], &[&raw, &vmdk]);
    let http = HttpServer::start(&served);

    let layout_path = dir.path().join("images");
    let (invocation, invocation_root) = push_invocation_image(&source, &layout_path);
    let container_disk_root =
        push_container_disk(&source, &layout_path, "disk/disk.img", &std::fs::read(&raw).unwrap(), "disks/raw:1");
    let url = format!("http://{}/data.vmdk", http.host);
    let container_disk = format!("{}/disks/raw:1", source.host);
    let bundle = bundle_dir.join("bundle.json");
    write_bundle(
        &bundle,
        "vms",
        &invocation,
        &invocation_root,
        json!({
            "root": { "image": "root.qcow2", "imageType": "qcow2", "contentDigest": sha256_of(&qcow2) },
            "data": { "image": url, "imageType": "vm-disk" },
            "scratch": {
                "image": container_disk, "imageType": "vm-disk",
                "contentDigest": container_disk_root.digest.to_string()
            }
        }),
    );

    // export: every disk stored byte for byte.
    let tar = dir.path().join("out/vms.tar");
    std::fs::create_dir_all(dir.path().join("out")).unwrap();
    let o = ferry(
        &["--insecure-registry", &source.host, "export", bundle.to_str().unwrap(), "-o", tar.to_str().unwrap()],
        dir.path(),
    );
    assert!(o.status.success(), "export: {}", text(&o.stderr));
    assert!(http.requests() >= 1, "the vmdk was not downloaded from the HTTP server");
    let stored = archive_names(&tar);
    for disk in [&qcow2, &vmdk, &raw] {
        let blob = format!("artifacts/layout/blobs/sha256/{}", sha256_of(disk).trim_start_matches("sha256:"));
        assert!(stored.contains(&blob), "{} is not stored byte for byte as {blob}: {stored:#?}", disk.display());
    }

    let o = ferry(&["verify", tar.to_str().unwrap()], dir.path());
    assert!(o.status.success(), "verify: {}", text(&o.stderr));

    // inspect --details: each disk's format and virtual size, read from its header.
    let o = ferry(&["inspect", tar.to_str().unwrap(), "--details", "--format", "json"], dir.path());
    assert!(o.status.success(), "inspect: {}", text(&o.stderr));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    for (key, format, file, path) in [
        ("root", "qcow2", "root.qcow2", &qcow2),
        ("data", "vmdk", "data.vmdk", &vmdk),
        ("scratch", "raw", "disk.img", &raw),
    ] {
        let image = image_report(&report, key);
        assert_eq!(image["driver"], "vm-disk", "{image}");
        let details = details_of(image);
        assert_eq!(details.get("format").map(String::as_str), Some(format), "{key}: {details:?}");
        assert_eq!(details.get("virtual-size"), Some(&DISK_SIZE.to_string()), "{key}: {details:?}");
        assert_eq!(details.get("file").map(String::as_str), Some(file), "{key}: {details:?}");
        let stored_size = std::fs::metadata(path).unwrap().len().to_string();
        assert_eq!(details.get("stored-size"), Some(&stored_size), "{key}: {details:?}");
    }

    // relocate to a registry: every disk becomes a KubeVirt containerDisk.
    let site = TestRegistry::start();
    let mapping = relocate_and_predict(&tar, &format!("{}/site", site.host), Some(&site.host), dir.path());
    let originals_named: Vec<&str> = mapping.keys().map(String::as_str).collect();
    let mut expected = vec![invocation.as_str(), "root.qcow2", url.as_str(), container_disk.as_str()];
    expected.sort();
    assert_eq!(originals_named, expected, "the mapping names every image of bundle.json");
    assert_eq!(mapping[&invocation], format!("{}/site/team/app@{}", site.host, invocation_root.digest));
    for (original, repository) in
        [("root.qcow2", "site/vms/root"), (url.as_str(), "site/vms/data"), (container_disk.as_str(), "site/disks/raw")]
    {
        let prefix = format!("{}/{repository}@sha256:", site.host);
        assert!(mapping[original].starts_with(&prefix), "{original} went to {}, not {prefix}...", mapping[original]);
    }
    // Each relocated containerDisk holds its disk as KubeVirt wants it, byte for byte.
    for (original, file, disk, format) in [
        ("root.qcow2", "root.qcow2", &qcow2, "qcow2"),
        (url.as_str(), "data.vmdk", &vmdk, "vmdk"),
        (container_disk.as_str(), "disk.img", &raw, "raw"),
    ] {
        let pulled = dir.path().join(format!("pulled-{file}"));
        let got = pull_container_disk(&mapping[original], &pulled);
        assert_eq!(got.name, format!("disk/{file}"), "{original}");
        assert_eq!((got.mode, got.uid, got.gid), (0o440, 107, 107), "{original}: mode and owner of the disk");
        assert_eq!(got.bytes, std::fs::read(disk).unwrap(), "{original}: the relocated disk differs from the original");
        let extracted = pulled.join(file);
        std::fs::write(&extracted, &got.bytes).unwrap();
        qemu_img(&["compare", "-q"], &[disk, &extracted]);
        let info: Value = serde_json::from_str(&qemu_img(&["info", "--output", "json"], &[&extracted])).unwrap();
        assert_eq!(info["format"], format, "{original}: qemu-img info {info}");
        assert_eq!(info["virtual-size"], DISK_SIZE, "{original}: qemu-img info {info}");
    }
    // A disk from a file or URL is tagged after its file name, a containerDisk keeps its tag.
    for (reference, original) in [
        (format!("{}/site/vms/root:root.qcow2", site.host), "root.qcow2"),
        (format!("{}/site/vms/data:data.vmdk", site.host), url.as_str()),
        (format!("{}/site/disks/raw:1", site.host), container_disk.as_str()),
    ] {
        let pinned = mapping[original].rsplit_once('@').unwrap().1;
        assert_eq!(Digest::of(&skopeo_raw(&reference)).to_string(), pinned, "{reference}");
    }

    // relocate to a directory: the disk files, as they were.
    let site_dir = dir.path().join("site");
    let mapping = relocate_and_predict(&tar, &format!("file://{}", site_dir.display()), None, dir.path());
    assert_eq!(mapping.len(), 4, "{mapping:#?}");
    for (original, written, disk) in [
        ("root.qcow2", site_dir.join("vms/root/root.qcow2"), &qcow2),
        (url.as_str(), site_dir.join("vms/data/data.vmdk"), &vmdk),
        (container_disk.as_str(), site_dir.join("disks/raw/disk.img"), &raw),
    ] {
        assert_eq!(Path::new(&mapping[original]), written, "{original}");
        assert!(written.is_file(), "{} was not written", written.display());
        qemu_img(&["compare", "-q"], &[disk, &written]);
        assert_eq!(std::fs::read(&written).unwrap(), std::fs::read(disk).unwrap(), "{}", written.display());
    }
}

#[test]
fn a_disk_whose_content_digest_does_not_match_is_not_exported() {
    let dir = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start();
    let raw = dir.path().join("disk.img");
    std::fs::write(&raw, disk_content(2)).unwrap();
    // The raw disk's digest, given for its qcow2 conversion.
    let wrong = sha256_of(&raw);
    let (bundle, qcow2) = qcow2_bundle(dir.path(), &registry, &raw, Some(&wrong));
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join("vms.tar");
    let o = ferry(
        &["--insecure-registry", &registry.host, "export", bundle.to_str().unwrap(), "-o", out.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1), "export of a disk with the wrong contentDigest: {}", text(&o.stderr));
    let stderr = text(&o.stderr);
    assert!(stderr.contains("system-disk"), "the error does not name the image: {stderr}");
    // ferry names the image; the driver (through the SDK's helpers) does not name it again.
    assert_eq!(stderr.matches("system-disk").count(), 1, "the image is named more than once: {stderr}");
    assert!(
        stderr.contains(&wrong) && stderr.contains(&sha256_of(&qcow2)),
        "the error does not name both digests: {stderr}"
    );
    assert!(!out.exists(), "a failed export wrote {}", out.display());
    let left: Vec<_> =
        std::fs::read_dir(&out_dir).map(|d| d.map(|e| e.unwrap().file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "the failed export left {left:?}");
}

#[test]
fn verify_refuses_a_stored_disk_whose_header_was_corrupted() {
    let dir = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start();
    let raw = dir.path().join("disk.img");
    std::fs::write(&raw, disk_content(3)).unwrap();
    let (bundle, qcow2) = qcow2_bundle(dir.path(), &registry, &raw, None);
    let tar = dir.path().join("vms.tar");
    let o = ferry(
        &["--insecure-registry", &registry.host, "export", bundle.to_str().unwrap(), "-o", tar.to_str().unwrap()],
        dir.path(),
    );
    assert!(o.status.success(), "export: {}", text(&o.stderr));
    let o = ferry(&["verify", tar.to_str().unwrap()], dir.path());
    assert!(o.status.success(), "verify before the damage: {}", text(&o.stderr));
    let disk = sha256_of(&qcow2);
    let disk_entry = format!("artifacts/layout/blobs/sha256/{}", disk.trim_start_matches("sha256:"));

    // The qcow2 magic flipped inside the .tar: the disk no longer has its digest, which the host
    // finds before any driver runs (it names the blob; no driver is asked about the image).
    let flipped = dir.path().join("flipped.tar");
    let mut bytes = std::fs::read(&tar).unwrap();
    let at = entry_offset(&tar, &disk_entry);
    assert_eq!(&bytes[at as usize..at as usize + 4], b"QFI\xfb", "the stored disk starts with the qcow2 magic");
    bytes[at as usize + 3] ^= 0xff;
    std::fs::write(&flipped, &bytes).unwrap();
    let o = ferry(&["verify", flipped.to_str().unwrap()], dir.path());
    assert_eq!(o.status.code(), Some(1), "verify of a flipped disk header: {}", text(&o.stderr));
    let stderr = text(&o.stderr);
    assert!(stderr.contains(&disk) && stderr.contains("hash to"), "verify does not name blob {disk}: {stderr}");

    // The same damage with every digest made to match (disk, manifest, index): only the vm-disk
    // driver's check of the header against the stored config can tell.
    let mut damaged = std::fs::read(&qcow2).unwrap();
    damaged[3] ^= 0xff;
    let rewritten = dir.path().join("rewritten.tar");
    replace_blob(&tar, &rewritten, &disk, &damaged);
    let o = ferry(&["verify", rewritten.to_str().unwrap()], dir.path());
    assert_eq!(o.status.code(), Some(1), "verify of a re-digested damaged disk: {}", text(&o.stderr));
    let stderr = text(&o.stderr);
    assert!(
        stderr.contains("image system-disk")
            && stderr.contains(&format!("is raw of {} bytes", damaged.len()))
            && stderr.contains(&format!("its config says qcow2 of {DISK_SIZE} bytes")),
        "verify does not name the image and what its disk turned out to be: {stderr}"
    );
}

#[test]
fn a_tarball_is_exported_verified_inspected_and_relocated_to_a_registry_and_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let source = TestRegistry::start();
    let bundle_dir = dir.path().join("bundle");
    std::fs::create_dir_all(&bundle_dir).unwrap();
    let logo = disk_content(4)[..100_000].to_vec();
    let files: [(&str, &[u8]); 3] = [
        ("site/index.html", b"<h1>ferry</h1>\n"),
        ("site/docs/guide.txt", b"read me first\n"),
        ("site/assets/logo.bin", &logo),
    ];
    let tarball = bundle_dir.join("site.tar.gz");
    std::fs::write(
        &tarball,
        tar_gz(&[
            Entry::Dir("site/"),
            Entry::File(files[0].0, files[0].1),
            Entry::Dir("site/docs/"),
            Entry::File(files[1].0, files[1].1),
            Entry::File(files[2].0, files[2].1),
            Entry::Symlink("site/latest", "docs/guide.txt"),
        ]),
    )
    .unwrap();
    let layout_path = dir.path().join("images");
    let (invocation, invocation_root) = push_invocation_image(&source, &layout_path);
    let bundle = bundle_dir.join("bundle.json");
    let tarball_digest = sha256_of(&tarball);
    write_bundle(
        &bundle,
        "web",
        &invocation,
        &invocation_root,
        json!({ "site": { "image": "site.tar.gz", "imageType": "tarball", "contentDigest": tarball_digest } }),
    );

    let tar = dir.path().join("web.tar");
    let o = ferry(
        &["--insecure-registry", &source.host, "export", bundle.to_str().unwrap(), "-o", tar.to_str().unwrap()],
        dir.path(),
    );
    assert!(o.status.success(), "export: {}", text(&o.stderr));
    let blob = format!("artifacts/layout/blobs/sha256/{}", tarball_digest.trim_start_matches("sha256:"));
    assert!(archive_names(&tar).contains(&blob), "the tarball is not stored byte for byte as {blob}");
    let o = ferry(&["verify", tar.to_str().unwrap()], dir.path());
    assert!(o.status.success(), "verify: {}", text(&o.stderr));

    let o = ferry(&["inspect", tar.to_str().unwrap(), "--details", "--format", "json"], dir.path());
    assert!(o.status.success(), "inspect: {}", text(&o.stderr));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let image = image_report(&report, "site");
    assert_eq!(image["driver"], "tarball", "{image}");
    let details = details_of(image);
    let file_bytes: usize = files.iter().map(|(_, bytes)| bytes.len()).sum();
    assert_eq!(details.get("entries").map(String::as_str), Some("6"), "{details:?}");
    assert_eq!(details.get("size"), Some(&file_bytes.to_string()), "{details:?}");
    assert_eq!(details.get("compression").map(String::as_str), Some("gzip"), "{details:?}");
    assert_eq!(details.get("file").map(String::as_str), Some("site.tar.gz"), "{details:?}");

    // To a registry: the artifact as stored, its one layer the tarball.
    let site = TestRegistry::start();
    let mapping = relocate_and_predict(&tar, &format!("{}/site", site.host), Some(&site.host), dir.path());
    assert_eq!(mapping.len(), 2, "{mapping:#?}");
    let relocated = &mapping["site.tar.gz"];
    assert!(relocated.starts_with(&format!("{}/site/web/site@sha256:", site.host)), "{relocated}");
    let manifest_bytes = skopeo_raw(&format!("{}/site/web/site:site.tar.gz", site.host));
    assert_eq!(&Digest::of(&manifest_bytes).to_string(), relocated.rsplit_once('@').unwrap().1);
    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    assert_eq!(manifest["artifactType"], "application/vnd.ferry.tarball.v1", "{manifest}");
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    assert_eq!(layers[0]["digest"], tarball_digest.as_str(), "the layer is not the tarball: {manifest}");
    assert_eq!(layers[0]["size"], std::fs::metadata(&tarball).unwrap().len(), "{manifest}");
    assert_eq!(layers[0]["mediaType"], "application/vnd.ferry.tarball.layer.v1.tar+gzip", "{manifest}");

    // To a directory: extracted, the inner link kept as a link.
    let site_dir = dir.path().join("site");
    let mapping = relocate(&tar, &format!("file://{}", site_dir.display()), None, dir.path());
    let extracted = site_dir.join("web/site/site");
    assert_eq!(Path::new(&mapping["site.tar.gz"]), extracted, "{mapping:#?}");
    for (name, bytes) in files {
        let path = extracted.join(name);
        assert_eq!(std::fs::read(&path).unwrap_or_default(), bytes, "{}", path.display());
    }
    let link = extracted.join("site/latest");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "{} is not a symlink", link.display());
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("docs/guide.txt"));
    assert_eq!(std::fs::read(&link).unwrap(), b"read me first\n");
}

#[test]
fn a_tarball_with_an_entry_outside_its_root_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start();
    let layout_path = dir.path().join("images");
    let (invocation, invocation_root) = push_invocation_image(&registry, &layout_path);
    let victim = dir.path().join("victim");
    let victim_target = victim.to_str().unwrap().to_owned();
    let cases: [(&str, Vec<Entry>, &str); 2] = [
        (
            "climbs",
            vec![Entry::Dir("site/"), Entry::File("site/ok.txt", b"ok"), Entry::File("../escape", b"x")],
            "../escape",
        ),
        ("absolute-link", vec![Entry::File("ok.txt", b"ok"), Entry::Symlink("victim", &victim_target)], "victim"),
    ];
    for (key, entries, entry) in cases {
        let case_dir = dir.path().join(key);
        let bundle_dir = case_dir.join("bundle");
        std::fs::create_dir_all(&bundle_dir).unwrap();
        std::fs::write(bundle_dir.join("bad.tar.gz"), tar_gz(&entries)).unwrap();
        let bundle = bundle_dir.join("bundle.json");
        write_bundle(
            &bundle,
            "bad",
            &invocation,
            &invocation_root,
            json!({ key: { "image": "bad.tar.gz", "imageType": "tarball" } }),
        );
        let out_dir = case_dir.join("out");
        std::fs::create_dir_all(&out_dir).unwrap();
        let out = out_dir.join("bad.tar");
        let o = ferry(
            &["--insecure-registry", &registry.host, "export", bundle.to_str().unwrap(), "-o", out.to_str().unwrap()],
            dir.path(),
        );
        assert_eq!(o.status.code(), Some(1), "{key}: export of an unsafe tarball: {}", text(&o.stderr));
        let stderr = text(&o.stderr);
        assert!(
            stderr.contains(key) && stderr.contains(&format!("{entry:?}")),
            "{key}: the error does not name the image and entry {entry:?}: {stderr}"
        );
        assert!(!out.exists(), "{key}: a failed export wrote {}", out.display());
        let left: Vec<_> =
            std::fs::read_dir(&out_dir).map(|d| d.map(|e| e.unwrap().file_name()).collect()).unwrap_or_default();
        assert!(left.is_empty(), "{key}: the failed export left {left:?}");

        // Relocating the bundle.json to a directory fetches the tarball the same way: refused
        // before anything is extracted.
        let site_dir = case_dir.join("site");
        let o = ferry(
            &[
                "--insecure-registry",
                &registry.host,
                "relocate",
                bundle.to_str().unwrap(),
                "--to",
                &format!("file://{}", site_dir.display()),
                "-o",
                case_dir.join("mapping.json").to_str().unwrap(),
            ],
            dir.path(),
        );
        assert_eq!(o.status.code(), Some(1), "{key}: relocate of an unsafe tarball: {}", text(&o.stderr));
        assert!(text(&o.stderr).contains(&format!("{entry:?}")), "{key}: {}", text(&o.stderr));
        assert!(!site_dir.join("bad").exists(), "{key}: something was extracted into {}", site_dir.display());

        let mut found: Vec<String> = std::fs::read_dir(&case_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| !["bundle", "out", "site"].contains(&name.as_str()))
            .collect();
        found.sort();
        assert!(found.is_empty(), "{key}: files appeared beside the bundle: {found:?}");
    }
    assert!(!dir.path().join("escape").exists() && !dir.path().join("bundle/escape").exists(), "../escape was written");
    assert!(!victim.exists(), "the absolute link's target was created");
    let mut top: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    top.sort();
    assert_eq!(top, ["absolute-link", "climbs", "images"], "files appeared outside the cases' directories");
}

// ---- helpers ----

/// `DISK_SIZE` deterministic pseudo-random bytes (xorshift), the last MiB left zero so that the
/// qcow2 and vmdk conversions are sparse.
fn disk_content(seed: u64) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ seed.wrapping_mul(0x2545_f491_4f6c_dd1d);
    let mut bytes = Vec::with_capacity(DISK_SIZE);
    while bytes.len() < DISK_SIZE {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes[3 << 20..].fill(0);
    bytes
}

fn sha256_of(path: &Path) -> String {
    Digest::of(&std::fs::read(path).unwrap()).to_string()
}

/// `qemu-img ARGS FILES...`, which must succeed; its stdout.
fn qemu_img(args: &[&str], files: &[&Path]) -> String {
    let o = Command::new("qemu-img").args(args).args(files).output().expect("qemu-img (scripts/setup installs it)");
    assert!(o.status.success(), "qemu-img {args:?} {files:?}: {}{}", text(&o.stdout), text(&o.stderr));
    text(&o.stdout)
}

/// A bundle.json of `name` with an OCI invocation image and `images`.
fn write_bundle(path: &Path, name: &str, invocation: &str, invocation_root: &Descriptor, images: Value) {
    let doc = json!({
        "schemaVersion": "v1.2.0", "name": name, "version": "1.0.0",
        "invocationImages": [{ "image": invocation, "contentDigest": invocation_root.digest.to_string() }],
        "images": images,
    });
    std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
}

/// An OCI image pushed to `registry` as `team/app:1`; its reference and root.
fn push_invocation_image(registry: &TestRegistry, layout_path: &Path) -> (String, Descriptor) {
    let layout = Layout::create(layout_path).unwrap();
    let (root, _) = write_multiarch_image(&layout, "app", 7);
    registry.push(layout_path, "app", "team/app:1");
    (format!("{}/team/app:1", registry.host), root)
}

/// A bundle.json beside `system.qcow2`, converted from `raw`, as image `system-disk`.
fn qcow2_bundle(dir: &Path, registry: &TestRegistry, raw: &Path, content_digest: Option<&str>) -> (PathBuf, PathBuf) {
    let bundle_dir = dir.join("bundle");
    std::fs::create_dir_all(&bundle_dir).unwrap();
    let qcow2 = bundle_dir.join("system.qcow2");
    qemu_img(&["convert", "-f", "raw", "-O", "qcow2"], &[raw, &qcow2]);
    let (invocation, invocation_root) = push_invocation_image(registry, &dir.join("images"));
    let mut disk = json!({ "image": "system.qcow2", "imageType": "qcow2" });
    if let Some(digest) = content_digest {
        disk["contentDigest"] = json!(digest);
    }
    let bundle = bundle_dir.join("bundle.json");
    write_bundle(&bundle, "vms", &invocation, &invocation_root, json!({ "system-disk": disk }));
    (bundle, qcow2)
}

/// A KubeVirt containerDisk (one uncompressed layer holding `entry`) written into the layout at
/// `layout_path` and pushed to `registry` as `repository_and_tag`; its manifest's descriptor.
fn push_container_disk(
    registry: &TestRegistry,
    layout_path: &Path,
    entry: &str,
    disk: &[u8],
    repository_and_tag: &str,
) -> Descriptor {
    let layout = Layout::open(layout_path).unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_ustar();
    dir.set_path("disk/").unwrap();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o555);
    dir.set_size(0);
    dir.set_cksum();
    builder.append(&dir, std::io::empty()).unwrap();
    let mut file = tar::Header::new_ustar();
    file.set_path(entry).unwrap();
    file.set_mode(0o440);
    file.set_size(disk.len() as u64);
    file.set_cksum();
    builder.append(&file, disk).unwrap();
    let layer = builder.into_inner().unwrap();
    let put = |media_type: &str, bytes: &[u8]| {
        Descriptor::new(media_type, layout.put_bytes(bytes).unwrap(), bytes.len() as u64)
    };
    let layer = put("application/vnd.oci.image.layer.v1.tar", &layer);
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": [layer.digest.to_string()] }
    });
    let config = put("application/vnd.oci.image.config.v1+json", config.to_string().as_bytes());
    let descriptor =
        |d: &Descriptor| json!({ "mediaType": d.media_type, "digest": d.digest.to_string(), "size": d.size });
    let manifest = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor(&config), "layers": [descriptor(&layer)]
    });
    let root = put(OCI_MANIFEST, manifest.to_string().as_bytes());
    let mut named = root.clone();
    named.annotations.insert(REF_NAME.into(), "container-disk".into());
    layout.add_to_index(named).unwrap();
    registry.push(layout_path, "container-disk", repository_and_tag);
    root
}

/// The one file of a containerDisk's layer, with its tar header's name, mode and owner.
struct DiskEntry {
    name: String,
    mode: u32,
    uid: u64,
    gid: u64,
    bytes: Vec<u8>,
}

/// Copies `reference` out of its plain-HTTP registry into `dir` (skopeo's `dir:` format) and
/// reads the disk out of its one layer, after checking that the image is one KubeVirt runs.
fn pull_container_disk(reference: &str, dir: &Path) -> DiskEntry {
    let o = Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .arg(format!("dir:{}", dir.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "skopeo copy {reference}: {}", text(&o.stderr));
    let blob = |digest: &Value| dir.join(digest.as_str().unwrap().trim_start_matches("sha256:"));
    let manifest: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest.get("artifactType").is_none(), "{reference} is an artifact, not an image: {manifest}");
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{reference}: {manifest}");
    assert_eq!(layers[0]["mediaType"], "application/vnd.oci.image.layer.v1.tar", "{reference}: {manifest}");
    let config: Value = serde_json::from_slice(&std::fs::read(blob(&manifest["config"]["digest"])).unwrap()).unwrap();
    assert_eq!((&config["os"], &config["architecture"]), (&json!("linux"), &json!("amd64")), "{config}");
    assert_eq!(config["rootfs"]["diff_ids"], json!([layers[0]["digest"]]), "{reference}: {config}");
    let layer = std::fs::read(blob(&layers[0]["digest"])).unwrap();
    let mut files = Vec::new();
    for entry in tar::Archive::new(layer.as_slice()).entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let header = entry.header().clone();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        files.push(DiskEntry {
            name: entry.path().unwrap().display().to_string(),
            mode: header.mode().unwrap(),
            uid: header.uid().unwrap(),
            gid: header.gid().unwrap(),
            bytes,
        });
    }
    assert_eq!(files.len(), 1, "{reference}: the layer holds {} files", files.len());
    files.pop().unwrap()
}

/// `ferry relocate TAR --to TO` (plain http to `insecure`), which must succeed; its mapping.
/// `ferry relocate TAR --to TO`'s mapping.
fn relocate(tar: &Path, to: &str, insecure: Option<&str>, dir: &Path) -> BTreeMap<String, String> {
    serde_json::from_value(relocate_args(tar, to, insecure, dir).1).unwrap()
}

/// [`relocate`], then a dry run of the same, which must predict that nothing is left to send
/// and the same references. (A tarball relocated into a directory is extracted again by every
/// run, so its dry run rightly predicts its bytes.)
fn relocate_and_predict(tar: &Path, to: &str, insecure: Option<&str>, dir: &Path) -> BTreeMap<String, String> {
    let (args, written) = relocate_args(tar, to, insecure, dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_dry_run_predicts_nothing_to_send(&args, &written, dir);
    serde_json::from_value(written).unwrap()
}

/// The arguments of `ferry relocate TAR --to TO` (without `-o`), and the mapping it wrote.
fn relocate_args(tar: &Path, to: &str, insecure: Option<&str>, dir: &Path) -> (Vec<String>, Value) {
    let mapping = dir.join("mapping.json");
    let mut args: Vec<String> =
        insecure.map(|host| vec!["--insecure-registry".into(), host.into()]).unwrap_or_default();
    args.extend(["relocate".into(), tar.display().to_string(), "--to".into(), to.into()]);
    let mut with_output: Vec<&str> = args.iter().map(String::as_str).collect();
    with_output.extend(["-o", mapping.to_str().unwrap()]);
    let o = ferry(&with_output, dir);
    assert!(o.status.success(), "relocate --to {to}: {}", text(&o.stderr));
    (args, serde_json::from_slice(&std::fs::read(&mapping).unwrap()).unwrap())
}

/// The entry of `key` in `ferry inspect --format json`.
fn image_report<'a>(report: &'a Value, key: &str) -> &'a Value {
    let images = report["images"].as_array().unwrap();
    images.iter().find(|i| i["key"] == key).unwrap_or_else(|| panic!("no image {key} in {report}"))
}

/// An image's `details` (pairs of name and value) as a map.
fn details_of(image: &Value) -> BTreeMap<String, String> {
    let details = image["details"].as_array().unwrap_or_else(|| panic!("no details: {image}"));
    details.iter().map(|pair| (pair[0].as_str().unwrap().to_owned(), pair[1].as_str().unwrap().to_owned())).collect()
}
