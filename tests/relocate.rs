//! `ferry relocate` from a thick bundle into a second real registry, watched through a proxy.

mod common;

use common::proxy::{Fault, FaultyProxy};
use common::*;
use ferry::oci::{Digest, Layout};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

#[test]
fn relocate_pushes_every_image_and_writes_a_valid_mapping_then_a_rerun_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let source = TestRegistry::start();
    let layout_path = dir.path().join("images");
    let layout = Layout::create(&layout_path).unwrap();
    let (app_root, _) = write_multiarch_image(&layout, "app", 30);
    let (web_root, _) = write_docker_image(&layout, "web", 40);
    source.push(&layout_path, "app", "team/app:1.2");
    source.push_as_stored(&layout_path, "web", "team/web:2");
    let app = format!("{}/team/app:1.2", source.host);
    let web = format!("{}/team/web", source.host);
    let bundle = dir.path().join("bundle.json");
    std::fs::write(
        &bundle,
        json!({
            "schemaVersion": "v1.2.0", "name": "shop", "version": "1.0.0",
            "invocationImages": [{ "image": app, "contentDigest": app_root.digest.to_string() }],
            "images": { "web": { "image": format!("{web}@{}", web_root.digest), "imageType": "docker" } }
        })
        .to_string(),
    )
    .unwrap();
    let tar = dir.path().join("shop.tar");
    let o = ferry(
        &["--insecure-registry", &source.host, "export", bundle.to_str().unwrap(), "-o", tar.to_str().unwrap()],
        dir.path(),
    );
    assert!(o.status.success(), "export: {}", text(&o.stderr));

    let site = TestRegistry::start();
    let proxy = FaultyProxy::start(&site.host, Box::new(|_, _| None));
    let mapping_path = dir.path().join("relocation-mapping.json");
    let site_prefix = format!("{}/site", proxy.host);
    let relocate = || relocate_to(&proxy.host, &tar, &site_prefix, &["-o", mapping_path.to_str().unwrap()], dir.path());
    let o = relocate();
    assert!(o.status.success(), "relocate: {}", text(&o.stderr));
    let uploads = proxy.count("POST /v2/site/");
    assert!(uploads > 0);

    let mapping: Value = serde_json::from_slice(&std::fs::read(&mapping_path).unwrap()).unwrap();
    let app_to = format!("{}/site/team/app@{}", proxy.host, app_root.digest);
    let web_to = format!("{}/site/team/web@{}", proxy.host, web_root.digest);
    assert_eq!(
        mapping,
        json!({ app.clone(): app_to, format!("{web}@{}", web_root.digest): web_to }),
        "every image of bundle.json, pinned by digest"
    );
    if let Some(verdicts) = official_schema::verdicts("relocation-mapping.schema.json", &[mapping]) {
        assert!(verdicts[0], "the mapping does not validate against the CNAB schema");
    }

    // The destination serves the images with the bundle's digests, the tag kept.
    for (reference, digest) in [
        (format!("{}/site/team/app:1.2", site.host), &app_root.digest),
        (format!("{}/site/team/web@{}", site.host, web_root.digest), &web_root.digest),
    ] {
        let o = Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{reference}"))
            .output()
            .unwrap();
        assert!(o.status.success(), "skopeo {reference}: {}", text(&o.stderr));
        assert_eq!(Digest::of(&o.stdout), *digest, "{reference}");
    }

    // Again: everything is there, which one manifest HEAD per image finds out.
    let before = proxy.seen.lock().unwrap().len();
    let o = relocate();
    assert!(o.status.success(), "rerun: {}", text(&o.stderr));
    let rerun: Vec<String> = proxy.seen.lock().unwrap()[before..].iter().map(|(line, _)| line.clone()).collect();
    assert!(rerun.iter().all(|l| !l.contains("/blobs/")), "the rerun touched blobs: {rerun:#?}");
    assert_eq!(rerun.iter().filter(|l| l.starts_with("HEAD") && l.contains("/manifests/")).count(), 2, "{rerun:#?}");
    assert!(rerun.iter().all(|l| !l.starts_with("PUT")), "the rerun pushed again: {rerun:#?}");
    // The .tar was read in place: nothing was unpacked or left beside it.
    let mut left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    left.sort();
    assert_eq!(left, ["bundle.json", "images", "relocation-mapping.json", "shop.tar"]);
}

#[test]
fn a_corrupt_blob_read_in_place_is_refused_by_name_and_no_mapping_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (tar, _source) = exported_bundle(dir.path());
    // Flip one byte in the middle of the largest blob, a layer.
    let (digest, offset, size) = {
        let file = std::fs::File::open(&tar).unwrap();
        let mut archive = tar::Archive::new(&file);
        let mut blobs: Vec<(String, u64, u64)> = archive
            .entries_with_seek()
            .unwrap()
            .map(|e| e.unwrap())
            .filter_map(|e| {
                let name = e.path().unwrap().to_string_lossy().into_owned();
                let hex = name.strip_prefix("artifacts/layout/blobs/sha256/")?.to_owned();
                Some((format!("sha256:{hex}"), e.raw_file_position(), e.size()))
            })
            .collect();
        blobs.sort_by_key(|b| b.2);
        blobs.pop().unwrap()
    };
    let mut bytes = std::fs::read(&tar).unwrap();
    bytes[(offset + size / 2) as usize] ^= 0xff;
    std::fs::write(&tar, bytes).unwrap();

    let site = TestRegistry::start();
    let proxy = FaultyProxy::start(&site.host, Box::new(|_, _| None));
    let mapping = dir.path().join("mapping.json");
    let o = relocate_via(&proxy, &tar, &mapping, dir.path(), &[]);
    assert!(!o.status.success(), "a corrupt blob was relocated");
    let stderr = text(&o.stderr);
    assert!(stderr.contains(&digest), "the error does not name blob {digest}: {stderr}");
    assert!(!mapping.exists(), "a mapping was written");
}

#[test]
fn relocate_refuses_two_images_landing_on_one_name_before_pushing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (TestRegistry::start(), TestRegistry::start());
    let layout_path = dir.path().join("images");
    let layout = Layout::create(&layout_path).unwrap();
    let (a, _) = write_multiarch_image(&layout, "a", 50);
    let (b, _) = write_multiarch_image(&layout, "b", 60);
    one.push(&layout_path, "a", "team/app:1");
    two.push(&layout_path, "b", "team/app:1");
    let bundle = dir.path().join("bundle.json");
    std::fs::write(
        &bundle,
        json!({
            "schemaVersion": "v1.2.0", "name": "clash", "version": "1.0.0",
            "invocationImages": [{ "image": format!("{}/team/app:1", one.host), "contentDigest": a.digest.to_string() }],
            "images": { "other": { "image": format!("{}/team/app:1", two.host), "contentDigest": b.digest.to_string() } }
        })
        .to_string(),
    )
    .unwrap();
    let tar = dir.path().join("clash.tar");
    let o = ferry(
        &[
            "--insecure-registry",
            &one.host,
            "--insecure-registry",
            &two.host,
            "export",
            bundle.to_str().unwrap(),
            "-o",
            tar.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "export: {}", text(&o.stderr));

    let site = TestRegistry::start();
    let proxy = FaultyProxy::start(&site.host, Box::new(|_, _| None));
    let mapping = dir.path().join("mapping.json");
    let o = relocate_via(&proxy, &tar, &mapping, dir.path(), &[]);
    assert_eq!(o.status.code(), Some(1));
    let stderr = text(&o.stderr);
    assert!(
        stderr.contains("invocationImages[0]") && stderr.contains("other") && stderr.contains("team/app:1"),
        "{stderr}"
    );
    assert_eq!(proxy.seen.lock().unwrap().len(), 0, "something was sent before the clash was found");
    assert!(!mapping.exists());
}

/// A bundle of two images exported from a registry of its own, as a .tar in `dir`.
fn exported_bundle(dir: &Path) -> (std::path::PathBuf, TestRegistry) {
    let source = TestRegistry::start();
    let layout_path = dir.join("images");
    let layout = Layout::create(&layout_path).unwrap();
    let (a, _) = write_multiarch_image(&layout, "a", 70);
    let (b, _) = write_multiarch_image(&layout, "b", 80);
    source.push(&layout_path, "a", "team/a:1");
    source.push(&layout_path, "b", "team/b:1");
    let bundle = dir.join("bundle.json");
    std::fs::write(
        &bundle,
        json!({
            "schemaVersion": "v1.2.0", "name": "faults", "version": "1.0.0",
            "invocationImages": [{ "image": format!("{}/team/a:1", source.host), "contentDigest": a.digest.to_string() }],
            "images": { "b": { "image": format!("{}/team/b:1", source.host), "contentDigest": b.digest.to_string() } }
        })
        .to_string(),
    )
    .unwrap();
    let tar = dir.join("bundle.tar");
    let o = ferry(
        &["--insecure-registry", &source.host, "export", bundle.to_str().unwrap(), "-o", tar.to_str().unwrap()],
        dir,
    );
    assert!(o.status.success(), "export: {}", text(&o.stderr));
    (tar, source)
}

/// `ferry relocate TAR --to PROXY -o MAPPING EXTRA...` through `proxy`.
fn relocate_via(proxy: &FaultyProxy, tar: &Path, mapping: &Path, dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["-o", mapping.to_str().unwrap()];
    args.extend(extra);
    relocate_to(&proxy.host, tar, &proxy.host, &args, dir)
}

/// `ferry --insecure-registry HOST relocate BUNDLE --to TO EXTRA...`.
fn relocate_to(host: &str, bundle: &Path, to: &str, extra: &[&str], dir: &Path) -> std::process::Output {
    let mut args = vec!["--insecure-registry", host, "relocate", bundle.to_str().unwrap(), "--to", to];
    args.extend(extra);
    ferry(&args, dir)
}

#[test]
fn relocation_completes_through_faults_at_the_destination() {
    let dir = tempfile::tempdir().unwrap();
    let (tar, _source) = exported_bundle(dir.path());
    let site = TestRegistry::start();
    // Upload URLs are unique per attempt, so faults are counted across all uploads: the first
    // upload meets a 500, the second a 429, the first manifest a dropped connection.
    let uploads = std::sync::atomic::AtomicUsize::new(0);
    let manifests = std::sync::atomic::AtomicUsize::new(0);
    let proxy = FaultyProxy::start(
        &site.host,
        Box::new(move |_, line| {
            use std::sync::atomic::Ordering::SeqCst;
            if line.starts_with("PUT /v2/") && line.contains("/blobs/uploads/") {
                match uploads.fetch_add(1, SeqCst) {
                    0 => Some(Fault::Status(500)),
                    1 => Some(Fault::Status(429)),
                    _ => None,
                }
            } else if line.starts_with("PUT /v2/") && line.contains("/manifests/") {
                (manifests.fetch_add(1, SeqCst) == 0).then_some(Fault::Drop)
            } else {
                None
            }
        }),
    );
    let mapping = dir.path().join("mapping.json");
    let o = relocate_via(&proxy, &tar, &mapping, dir.path(), &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(mapping.exists());
    let injected = proxy.seen.lock().unwrap().iter().filter(|(_, f)| f.is_some()).count();
    assert!(injected >= 3, "only {injected} faults were injected");
}

#[test]
fn an_interrupted_relocation_writes_no_mapping_and_a_rerun_sends_only_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let (tar, _source) = exported_bundle(dir.path());
    let site = TestRegistry::start();
    // Image b's blobs can never be uploaded: the first run fails part way.
    let broken = FaultyProxy::start(
        &site.host,
        Box::new(|_, line| (line.contains("/team/b/blobs/uploads/")).then_some(Fault::Status(500))),
    );
    let mapping = dir.path().join("mapping.json");
    let o = relocate_via(&broken, &tar, &mapping, dir.path(), &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("team/b"), "{}", text(&o.stderr));
    assert!(!mapping.exists(), "a mapping was written for a failed relocation");
    let first_uploads = broken.count("POST /v2/team/a/blobs/uploads/");
    assert!(first_uploads > 0, "image a was not uploaded in the first run");

    let healthy = FaultyProxy::start(&site.host, Box::new(|_, _| None));
    let o = relocate_via(&healthy, &tar, &mapping, dir.path(), &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(mapping.exists());
    assert_eq!(healthy.count("POST /v2/team/a/blobs/uploads/"), 0, "image a's blobs were sent again");
    assert!(healthy.count("POST /v2/team/b/blobs/uploads/") > 0);
}

#[test]
fn a_dry_run_reports_the_plan_and_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (tar, _source) = exported_bundle(dir.path());
    let site = TestRegistry::start();
    let proxy = FaultyProxy::start(&site.host, Box::new(|_, _| None));
    let dc1 = format!("{}/dc1", proxy.host);
    let dry_run = || {
        let o = relocate_to(&proxy.host, &tar, &dc1, &["--dry-run", "--format", "json"], dir.path());
        assert!(o.status.success(), "{}", text(&o.stderr));
        serde_json::from_slice::<Value>(&o.stdout).unwrap()
    };
    let plan = dry_run();
    let images = plan.as_array().unwrap();
    assert_eq!(images.len(), 2);
    for image in images {
        assert!(image["destination"].as_str().unwrap().starts_with(&format!("{}/dc1/team/", proxy.host)), "{image}");
        assert_eq!(image["present"], 0);
        assert!(image["bytesToSend"].as_u64().unwrap() > 300_000, "{image}");
    }
    let sent: Vec<String> = proxy
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(l, _)| l.clone())
        .filter(|l| !l.starts_with("HEAD") && !l.starts_with("GET"))
        .collect();
    assert!(sent.is_empty(), "a dry run sent {sent:?}");

    let mapping = dir.path().join("mapping.json");
    let o = relocate_to(&proxy.host, &tar, &dc1, &["-o", mapping.to_str().unwrap()], dir.path());
    assert!(o.status.success(), "{}", text(&o.stderr));
    for image in dry_run().as_array().unwrap() {
        assert_eq!(image["present"], image["blobs"], "{image}");
        assert_eq!(image["bytesToSend"], 0, "{image}");
    }
}

#[test]
fn keep_going_relocates_the_other_images_and_still_writes_no_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let (tar, _source) = exported_bundle(dir.path());
    let site = TestRegistry::start();
    let broken = FaultyProxy::start(
        &site.host,
        Box::new(|_, line| line.contains("/team/a/blobs/uploads/").then_some(Fault::Status(500))),
    );
    let mapping = dir.path().join("mapping.json");
    let o = relocate_via(&broken, &tar, &mapping, dir.path(), &["--keep-going", "--jobs", "1"]);
    assert_eq!(o.status.code(), Some(1));
    let stderr = text(&o.stderr);
    assert!(stderr.contains("1 of 2 images were not relocated") && stderr.contains("team/a"), "{stderr}");
    // The invocation image comes first and fails; with one job at a time, b runs only because
    // of --keep-going.
    assert!(broken.count("PUT /v2/team/b/manifests/") > 0, "image b was not relocated");
    assert!(!mapping.exists());
    // What went through is listed too, and the summary counts both.
    let relocated = format!("relocated:\n  b -> {}/team/b@sha256:", broken.host);
    assert!(stderr.contains(&relocated), "no {relocated:?} in:\n{stderr}");
    assert!(stderr.contains("ferry: relocated 2 images (1 failed) in "), "{stderr}");
}

#[test]
fn a_summary_says_what_moved_in_human_sizes_and_quiet_prints_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (tar, _source) = exported_bundle(dir.path());
    let site = TestRegistry::start();
    let mapping = dir.path().join("mapping.json");
    let relocate = |extra: &[&str]| {
        let o = relocate_to(
            &site.host,
            &tar,
            &site.host,
            &[&["-o", mapping.to_str().unwrap()], extra].concat(),
            dir.path(),
        );
        assert!(o.status.success(), "{}", text(&o.stderr));
        text(&o.stderr)
    };
    // Not a terminal: no progress, only the summary.
    let first = relocate(&[]);
    let summary =
        first.lines().find(|l| l.starts_with("ferry: relocated 2 images in ")).unwrap_or_else(|| panic!("{first}"));
    assert_eq!(first.lines().count(), 1, "more than the summary on stderr:\n{first}");
    let sent = summary.split("sent ").nth(1).unwrap();
    assert!(sent.contains(" KiB, 0 B present, ") || sent.contains(" MiB, 0 B present, "), "{summary}");

    let again = relocate(&[]);
    assert!(again.contains(": sent 0 B, ") && !again.contains(" 0 B present"), "a rerun sends nothing: {again}");

    assert_eq!(relocate(&["-q"]), "", "-q prints nothing on success");
}

#[test]
fn on_a_terminal_progress_shows_the_phase_bytes_percent_and_eta() {
    let dir = tempfile::tempdir().unwrap();
    let (tar, source) = exported_bundle(dir.path());
    let site = TestRegistry::start();
    let mapping = dir.path().join("mapping.json");
    // `script` gives ferry a pseudo-terminal for stderr, and copies what it draws to stdout.
    let export = format!(
        "{} --insecure-registry {} export {} -o {}",
        env!("CARGO_BIN_EXE_ferry"),
        source.host,
        dir.path().join("bundle.json").display(),
        dir.path().join("again.tar").display()
    );
    let o = ferry_env(Command::new("script").args(["-qec", &export, "/dev/null"]), dir.path()).output().unwrap();
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    let drawn = text(&o.stdout);
    for shown in ["fetching images", "writing archive", "%", "ETA", "ferry: exported 2 images in "] {
        assert!(drawn.contains(shown), "{shown:?} is not on the terminal:\n{drawn}");
    }
    // The summary gives the archive's size, not it and the blobs fetched into it as it was written.
    let size = std::fs::metadata(dir.path().join("again.tar")).unwrap().len();
    let wrote = format!("wrote {}", indicatif::HumanBytes(size));
    assert!(drawn.contains(&wrote), "{wrote:?} is not the summary:\n{drawn}");

    let command = format!(
        "{} --insecure-registry {} relocate {} --to {}/site -o {}",
        env!("CARGO_BIN_EXE_ferry"),
        site.host,
        tar.display(),
        site.host,
        mapping.display()
    );
    let o = ferry_env(Command::new("script").args(["-qec", &command, "/dev/null"]), dir.path()).output().unwrap();
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    let drawn = text(&o.stdout);
    for shown in ["copying images", "B/", "%", "ETA", "ferry: relocated 2 images in "] {
        assert!(drawn.contains(shown), "{shown:?} is not on the terminal:\n{drawn}");
    }
    assert!(mapping.exists());
}

#[test]
fn a_map_sends_named_images_elsewhere_and_refuses_names_it_does_not_know() {
    let dir = tempfile::tempdir().unwrap();
    let (tar, source) = exported_bundle(dir.path());
    let site = TestRegistry::start();
    let map = dir.path().join("map.json");
    std::fs::write(&map, json!({ "b": format!("{}/elsewhere/bee", site.host) }).to_string()).unwrap();
    let mapping = dir.path().join("mapping.json");
    let site_prefix = format!("{}/site", site.host);
    let with_map = |map: &Path| {
        let extra = ["--map", map.to_str().unwrap(), "-o", mapping.to_str().unwrap()];
        relocate_to(&site.host, &tar, &site_prefix, &extra, dir.path())
    };
    let o = with_map(&map);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let written: Value = serde_json::from_slice(&std::fs::read(&mapping).unwrap()).unwrap();
    let a = written[format!("{}/team/a:1", source.host)].as_str().unwrap();
    let b = written[format!("{}/team/b:1", source.host)].as_str().unwrap();
    assert!(a.starts_with(&format!("{}/site/team/a@sha256:", site.host)), "{a}");
    assert!(b.starts_with(&format!("{}/elsewhere/bee@sha256:", site.host)), "{b}");
    let o = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/elsewhere/bee:1", site.host))
        .output()
        .unwrap();
    assert!(o.status.success(), "the tag was not kept: {}", text(&o.stderr));

    std::fs::write(&map, json!({ "nginx": format!("{}/x/y", site.host) }).to_string()).unwrap();
    std::fs::remove_file(&mapping).unwrap();
    let o = with_map(&map);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("\"nginx\""), "{}", text(&o.stderr));
    assert!(!mapping.exists());
}

#[test]
fn a_bundle_json_is_relocated_registry_to_registry_mounting_blobs_within_one_registry() {
    let dir = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start();
    let proxy = FaultyProxy::start(&registry.host, Box::new(|_, _| None));
    let layout_path = dir.path().join("images");
    let layout = Layout::create(&layout_path).unwrap();
    let (a, _) = write_multiarch_image(&layout, "a", 90);
    registry.push(&layout_path, "a", "team/a:1");
    let bundle = dir.path().join("bundle.json");
    let reference = format!("{}/team/a:1", proxy.host);
    std::fs::write(
        &bundle,
        json!({
            "schemaVersion": "v1.2.0", "name": "thin", "version": "1.0.0",
            "invocationImages": [{ "image": reference, "contentDigest": a.digest.to_string() }]
        })
        .to_string(),
    )
    .unwrap();
    let mapping = dir.path().join("mapping.json");
    let site = format!("{}/site", proxy.host);
    let o = relocate_to(&proxy.host, &bundle, &site, &["-o", mapping.to_str().unwrap()], dir.path());
    assert!(o.status.success(), "relocate: {}", text(&o.stderr));

    let relocated = format!("{}/site/team/a@{}", proxy.host, a.digest);
    let written: Value = serde_json::from_slice(&std::fs::read(&mapping).unwrap()).unwrap();
    assert_eq!(written, json!({ reference: relocated }));
    let seen: Vec<String> = proxy.seen.lock().unwrap().iter().map(|(line, _)| line.clone()).collect();
    let mounts = seen.iter().filter(|l| l.starts_with("POST") && l.contains("mount=")).count();
    assert!(mounts > 0, "no blob was mounted: {seen:#?}");
    assert!(
        !seen.iter().any(|l| l.starts_with("PUT") && l.contains("/blobs/uploads/")),
        "a blob was uploaded rather than mounted: {seen:#?}"
    );
}

#[test]
fn a_directory_relocation_writes_layouts_skopeo_and_umoci_read_and_a_rerun_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (tar, _source) = exported_bundle(dir.path());
    let site = dir.path().join("site");
    let to = format!("file://{}", site.display());
    let mapping = dir.path().join("mapping.json");
    let index = |image: &str| std::fs::read(site.join(image).join("index.json")).unwrap();
    let mut first = Vec::new();
    for run in 1..=3 {
        let o = ferry(&["relocate", tar.to_str().unwrap(), "--to", &to, "-o", mapping.to_str().unwrap()], dir.path());
        assert!(o.status.success(), "run {run}: {}", text(&o.stderr));
        let now = [index("team/a"), index("team/b")];
        if run == 1 {
            first = now.to_vec();
        } else {
            assert_eq!(now.to_vec(), first, "run {run} changed an index.json");
        }
    }
    // Each layout lists its image once, by tag: its child manifests are blobs, not entries.
    for image in ["team/a", "team/b"] {
        let listed: Value = serde_json::from_slice(&index(image)).unwrap();
        assert_eq!(listed["manifests"].as_array().unwrap().len(), 1, "{image}: {listed}");
        let layout = site.join(image);
        let o = Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci:{}:1", layout.display()))
            .output()
            .unwrap();
        assert!(o.status.success(), "skopeo cannot read {image}: {}", text(&o.stderr));
        let o = Command::new("umoci").args(["ls", "--layout"]).arg(&layout).output().unwrap();
        assert!(o.status.success(), "umoci cannot read {image}: {}", text(&o.stderr));
        assert_eq!(text(&o.stdout).trim(), "1", "{image}");
    }
}

// Relocating a .tgz used to decompress its blobs into scratch space first (the working
// directory here, as no -o is given): 464 MiB written for a 464 MiB bundle. ferry's .tgz is a
// gzip of stored blocks by default, now read in place like a .tar.
#[test]
fn a_tgz_ferry_wrote_relocates_as_its_tar_does_without_scratch_space() {
    use std::os::unix::{ffi::OsStrExt, process::CommandExt};
    let dir = tempfile::tempdir().unwrap();
    let (tar, source) = exported_bundle(dir.path());
    let export = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let bundle = dir.path().join("bundle.json");
        let args = [&["--insecure-registry", &source.host, "export", bundle.to_str().unwrap()], extra].concat();
        let o = ferry(&[&args[..], &["-o", out.to_str().unwrap()]].concat(), dir.path());
        assert!(o.status.success(), "export {name}: {}", text(&o.stderr));
        out
    };
    let tgz = export("bundle.tgz", &[]);
    let compressed = export("compressed.tgz", &["--compression-level", "6"]);
    // Run from a working directory removed just before ferry starts: nothing can be made in it,
    // even by root.
    let relocate = |bundle: &Path, site: &str| {
        let gone = dir.path().join(format!("{site}-cwd"));
        std::fs::create_dir(&gone).unwrap();
        let path = std::ffi::CString::new(gone.as_os_str().as_bytes()).unwrap();
        let site = dir.path().join(site).display().to_string();
        let to = format!("file://{site}");
        let mut command = ferry_command(dir.path());
        command.args(["relocate", bundle.to_str().unwrap(), "--to", &to]).current_dir(&gone);
        // After the fork, only async-signal-safe calls: rmdir is one.
        unsafe {
            command.pre_exec(move || match libc::rmdir(path.as_ptr()) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            });
        }
        (command.output().unwrap(), site)
    };
    let (from_tar, to_tar) = relocate(&tar, "from-tar");
    assert!(from_tar.status.success(), "{}", text(&from_tar.stderr));
    let (from_tgz, to_tgz) = relocate(&tgz, "from-tgz");
    assert!(from_tgz.status.success(), "{}", text(&from_tgz.stderr));
    assert_eq!(text(&from_tgz.stdout).replace(&to_tgz, &to_tar), text(&from_tar.stdout), "the mappings");
    let written = files_under(&dir.path().join("from-tar"));
    assert!(written.len() > 10, "{:?}", written.keys());
    assert!(files_under(&dir.path().join("from-tgz")) == written, "the relocated layouts differ");

    // A truly compressed .tgz still needs the scratch space, so this proves the point.
    let (o, _) = relocate(&compressed, "from-compressed");
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("for the blobs the compressed bundle holds"), "{}", text(&o.stderr));
}
