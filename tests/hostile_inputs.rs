//! Thick bundles and bundle.json files made to attack ferry: replaced bytes, links that chain
//! out of a directory, two bundle.json, manifests ferry cannot read, duplicate keys, reserved
//! and foreign names in a destination, decompression bombs, a closed stdout. Each test builds
//! its bundle from tarballs alone (the invocation image is a tarball too), so no registry is
//! needed, and checks what reached the disk as well as the exit status.

mod common;

use common::*;
use ferry::oci::Digest;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// A bundle directory holding `installer.tar` and the given tarballs as images of type
/// `tarball`, exported to `NAME.tar`; returns the thick bundle's path.
fn exported(dir: &Path, name: &str, tarballs: &[(&str, Vec<u8>)]) -> PathBuf {
    let bundle_dir = dir.join(format!("{name}-bundle"));
    std::fs::create_dir_all(&bundle_dir).unwrap();
    std::fs::write(bundle_dir.join("installer.tar"), tar_of(&[Entry::File("cnab/app/run", b"#!/bin/sh\n")])).unwrap();
    let mut images = serde_json::Map::new();
    for (file, bytes) in tarballs {
        std::fs::write(bundle_dir.join(file), bytes).unwrap();
        let key = file.split('.').next().unwrap();
        images.insert(key.into(), json!({ "image": file, "imageType": "tarball" }));
    }
    let bundle = json!({
        "schemaVersion": "v1.2.0",
        "name": name,
        "version": "1.0.0",
        "invocationImages": [{ "image": "installer.tar", "imageType": "tarball" }],
        "images": images,
    });
    std::fs::write(bundle_dir.join("bundle.json"), serde_json::to_vec_pretty(&bundle).unwrap()).unwrap();
    let tar = dir.join(format!("{name}.tar"));
    let o = ferry(&["export", bundle_dir.join("bundle.json").to_str().unwrap(), "-o", tar.to_str().unwrap()], dir);
    assert!(o.status.success(), "export: {}", text(&o.stderr));
    tar
}

/// `ferry relocate TAR --to file://SITE -o MAPPING`.
fn relocate_to_dir(tar: &Path, site: &Path, mapping: &Path, dir: &Path) -> std::process::Output {
    let to = format!("file://{}", site.display());
    ferry(&["relocate", tar.to_str().unwrap(), "--to", &to, "-o", mapping.to_str().unwrap()], dir)
}

fn digest_of(bytes: &[u8]) -> String {
    Digest::of(bytes).to_string()
}

/// Every path under `root`, relative, sorted (links not followed).
fn listing(root: &Path) -> Vec<String> {
    fn walk(root: &Path, at: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(at).into_iter().flatten() {
            let entry = entry.unwrap();
            out.push(entry.path().strip_prefix(root).unwrap().display().to_string());
            if entry.file_type().unwrap().is_dir() {
                walk(root, &entry.path(), out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

#[test]
fn a_tarball_whose_bytes_were_replaced_is_not_extracted_and_no_mapping_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let good = tar_of(&[Entry::File("index.html", b"good content\n")]);
    let tar = exported(dir.path(), "web", &[("site.tar", good.clone())]);
    // Same length, same blob name, still a valid tarball: only the digest tells.
    let evil = tar_of(&[Entry::File("index.html", b"evil content\n")]);
    assert_eq!(good.len(), evil.len());
    let name = format!("artifacts/layout/blobs/sha256/{}", digest_of(&good).trim_start_matches("sha256:"));
    let offset = entry_offset(&tar, &name);
    let mut bytes = std::fs::read(&tar).unwrap();
    bytes[offset as usize..offset as usize + evil.len()].copy_from_slice(&evil);
    std::fs::write(&tar, bytes).unwrap();

    let (site, mapping) = (dir.path().join("site"), dir.path().join("mapping.json"));
    let o = relocate_to_dir(&tar, &site, &mapping, dir.path());
    assert_eq!(o.status.code(), Some(1), "relocate of a replaced layer: {}", text(&o.stderr));
    assert!(text(&o.stderr).contains(&digest_of(&good)), "the error does not name the blob: {}", text(&o.stderr));
    assert!(!mapping.exists(), "a mapping was written");
    let extracted: Vec<String> = listing(&site).into_iter().filter(|p| p.ends_with("index.html")).collect();
    assert!(extracted.is_empty(), "the replaced tarball was extracted: {extracted:?}");
}

#[test]
fn links_that_chain_out_of_the_directory_are_refused_and_nothing_is_left() {
    let dir = tempfile::tempdir().unwrap();
    // As long as the hostile tarballs below, so that descriptors keep their sizes.
    let safe = tar_of(&[Entry::Dir("a/"), Entry::Dir("b/"), Entry::Dir("c/")]);
    let chains: [(&str, Vec<Entry>); 2] = [
        // d/l is the root, so d/l/.. is its parent; each text alone stays inside.
        ("through-a-link", vec![Entry::Dir("d/"), Entry::Symlink("d/l", ".."), Entry::Symlink("up", "d/l/..")]),
        // A hard link to a link is a second link, and it points elsewhere from where it stands.
        ("hard-link-to-a-link", vec![Entry::Dir("a/"), Entry::Symlink("a/l", ".."), Entry::HardLink("h", "a/l")]),
    ];
    for (case, entries) in chains {
        let case_dir = dir.path().join(case);
        std::fs::create_dir_all(&case_dir).unwrap();
        let tar = exported(&case_dir, "web", &[("site.tar", safe.clone())]);
        // The bundle is made consistent around the hostile tarball (digests rewritten), as a
        // hostile bundle author would make it: only the host's extraction stands in the way.
        let hostile = case_dir.join("hostile.tar");
        assert_eq!(tar_of(&entries).len(), safe.len());
        replace_blob(&tar, &hostile, &digest_of(&safe), &tar_of(&entries));
        let (site, mapping) = (case_dir.join("site"), case_dir.join("mapping.json"));
        let o = relocate_to_dir(&hostile, &site, &mapping, &case_dir);
        assert_eq!(o.status.code(), Some(1), "{case}: {}", text(&o.stderr));
        assert!(text(&o.stderr).contains("outside"), "{case}: {}", text(&o.stderr));
        assert!(!mapping.exists(), "{case}: a mapping was written");
        let links: Vec<String> = listing(&site)
            .into_iter()
            .filter(|p| std::fs::symlink_metadata(site.join(p)).unwrap().file_type().is_symlink())
            .collect();
        assert!(links.is_empty(), "{case}: links were left in the site: {links:?}");
    }
}

#[test]
fn a_directory_entry_named_bundle_json_is_refused_by_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let tar = exported(dir.path(), "web", &[("site.tar", tar_of(&[Entry::File("a", b"a")]))]);
    // A directory entry that carries a second bundle.json's bytes, before the real file.
    let decoy = br#"{"schemaVersion":"v1.2.0","name":"decoy","version":"1.0.0","invocationImages":[{"image":"x"}]}"#;
    let mut header = tar::Header::new_ustar();
    header.set_path("bundle.json").unwrap();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_size(decoy.len() as u64);
    header.set_mode(0o755);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, &decoy[..]).unwrap();
    let mut bytes = builder.into_inner().unwrap();
    bytes.extend(std::fs::read(&tar).unwrap());
    let two = dir.path().join("two.tar");
    std::fs::write(&two, bytes).unwrap();

    let site = format!("file://{}", dir.path().join("site").display());
    for args in [
        vec!["validate", two.to_str().unwrap()],
        vec!["inspect", two.to_str().unwrap()],
        vec!["verify", two.to_str().unwrap()],
        vec!["relocate", two.to_str().unwrap(), "--to", &site],
    ] {
        let o = ferry(&args, dir.path());
        let stderr = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("\"bundle.json\" is a directory"), "{args:?}: {stderr}");
        assert!(!text(&o.stdout).contains("decoy"), "{args:?} read the decoy: {}", text(&o.stdout));
    }
}

#[test]
fn a_manifest_whose_descriptors_do_not_parse_fails_verify_instead_of_passing_as_a_leaf() {
    let dir = tempfile::tempdir().unwrap();
    let site = tar_of(&[Entry::File("a", b"a")]);
    let tar = exported(dir.path(), "web", &[("site.tar", site.clone())]);
    // The artifact manifest that lists the tarball's layer, found by the layer's digest.
    let mut archive = tar::Archive::new(std::fs::File::open(&tar).unwrap());
    let manifest: Vec<u8> = archive
        .entries()
        .unwrap()
        .filter_map(|e| {
            let mut e = e.unwrap();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut bytes).unwrap();
            (bytes.starts_with(b"{") && String::from_utf8_lossy(&bytes).contains(&digest_of(&site))).then_some(bytes)
        })
        .find(|b| String::from_utf8_lossy(b).contains("\"layers\""))
        .expect("the tarball's manifest");
    let mut changed: Value = serde_json::from_slice(&manifest).unwrap();
    // A second layer ferry cannot name by sha256: the manifest is no leaf, and not readable.
    let mut extra = changed["layers"][0].clone();
    extra["digest"] = json!(format!("sha512:{}", "ab".repeat(64)));
    changed["layers"].as_array_mut().unwrap().push(extra);
    let hostile = dir.path().join("hostile.tar");
    replace_blob(&tar, &hostile, &digest_of(&manifest), &serde_json::to_vec(&changed).unwrap());
    let o = ferry(&["verify", hostile.to_str().unwrap()], dir.path());
    assert_eq!(o.status.code(), Some(1), "verify passed a manifest it cannot read: {}", text(&o.stdout));
    let said = text(&o.stdout) + &text(&o.stderr);
    assert!(said.contains("sha512:"), "verify does not say what it could not read: {said}");
}

#[test]
fn duplicate_keys_in_bundle_json_are_refused_by_validate_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle.json");
    std::fs::write(dir.path().join("installer.tar"), tar_of(&[Entry::File("run", b"x")])).unwrap();
    std::fs::write(
        &bundle,
        r#"{"schemaVersion":"v1.2.0","name":"dup","version":"1.0.0",
            "invocationImages":[{"image":"installer.tar","imageType":"tarball"}],
            "images":{"a":{"image":"installer.tar","imageType":"tarball"}},
            "images":{}}"#,
    )
    .unwrap();
    let o = ferry(&["validate", bundle.to_str().unwrap(), "--format", "json"], dir.path());
    assert_eq!(o.status.code(), Some(1), "validate: {}", text(&o.stdout));
    assert!(text(&o.stdout).contains("$.images"), "validate does not name the key: {}", text(&o.stdout));
    let out = dir.path().join("dup.tar");
    let o = ferry(&["export", bundle.to_str().unwrap(), "-o", out.to_str().unwrap()], dir.path());
    assert_eq!(o.status.code(), Some(1), "export: {}", text(&o.stderr));
    assert!(text(&o.stderr).contains("$.images"), "{}", text(&o.stderr));
    assert!(!out.exists());
}

#[test]
fn what_an_operator_keeps_in_the_destination_is_never_replaced_and_reserved_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tar = exported(dir.path(), "web", &[("site.tar", tar_of(&[Entry::File("index.html", b"new\n")]))]);
    let (site, mapping) = (dir.path().join("site"), dir.path().join("mapping.json"));
    // The operator's own directory where the tarball would be extracted.
    let theirs = site.join("web/site/site");
    std::fs::create_dir_all(&theirs).unwrap();
    std::fs::write(theirs.join("keep.txt"), b"mine").unwrap();
    // Refused every time: a refused run must not leave ferry believing it made the directory.
    for run in 1..=2 {
        let o = relocate_to_dir(&tar, &site, &mapping, dir.path());
        assert_eq!(o.status.code(), Some(1), "run {run}: {}", text(&o.stderr));
        assert!(text(&o.stderr).contains("ferry did not make it"), "run {run}: {}", text(&o.stderr));
        assert_eq!(std::fs::read(theirs.join("keep.txt")).unwrap(), b"mine", "run {run}");
        assert!(!mapping.exists());
    }

    // What ferry made itself it may make again: a rerun into a fresh site succeeds twice.
    let fresh = dir.path().join("fresh");
    for run in 1..=2 {
        let o = relocate_to_dir(&tar, &fresh, &mapping, dir.path());
        assert!(o.status.success(), "run {run}: {}", text(&o.stderr));
    }
    assert_eq!(std::fs::read(fresh.join("web/site/site/index.html")).unwrap(), b"new\n");

    // A tarball whose directory would be the layout's own `blobs`.
    let reserved_dir = dir.path().join("reserved");
    std::fs::create_dir_all(&reserved_dir).unwrap();
    let tar = exported(&reserved_dir, "web", &[("blobs.tar", tar_of(&[Entry::File("x", b"x")]))]);
    let o = relocate_to_dir(&tar, &reserved_dir.join("site"), &mapping, dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("reserves"), "{}", text(&o.stderr));
}

#[test]
fn an_unreferenced_blob_in_a_compressed_bundle_is_never_written_to_scratch_space() {
    let dir = tempfile::tempdir().unwrap();
    let tar = exported(dir.path(), "web", &[("site.tar", tar_of(&[Entry::File("a", b"a")]))]);
    // 64 MiB of zeros under their own digest, listed by nothing: a few hundred KiB compressed.
    let zeros = vec![0u8; 64 << 20];
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    let mut archive = tar::Archive::new(std::fs::File::open(&tar).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header().clone();
        builder.append(&header, &mut entry).unwrap();
    }
    let mut header = tar::Header::new_ustar();
    header.set_path(format!("artifacts/layout/blobs/sha256/{}", Digest::of(&zeros).hex())).unwrap();
    header.set_size(zeros.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append(&header, &zeros[..]).unwrap();
    let bomb = dir.path().join("bomb.tgz");
    std::fs::write(&bomb, builder.into_inner().unwrap().finish().unwrap()).unwrap();
    assert!(std::fs::metadata(&bomb).unwrap().len() < 4 << 20);

    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let opened = ferry::archive::InPlace::open(&bomb, &scratch).unwrap();
    let written: usize = files_under(&scratch).values().map(Vec::len).sum();
    assert!(written < 1 << 20, "{written} bytes were written to scratch space for a bundle of a few KiB");
    drop(opened);
    assert!(std::fs::read_dir(&scratch).unwrap().next().is_none(), "scratch space was left behind");

    // And the commands still work on it.
    let o = relocate_to_dir(&bomb, &dir.path().join("site"), &dir.path().join("mapping.json"), dir.path());
    assert!(o.status.success(), "{}", text(&o.stderr));
}

#[test]
fn printing_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = ferry_command(dir.path()).args(["driver", "list"]).stdout(writer).output().unwrap();
    let stderr = text(&o.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(o.status.code(), Some(101), "{stderr}");
}

#[test]
fn a_driver_cannot_open_another_images_place_in_the_grant() {
    use ferry::driver::{DestinationGrant, ErrorKind, Origin};
    let dir = tempfile::tempdir().unwrap();
    let store = ferry::oci::Layout::create(&dir.path().join("store")).unwrap();
    write_multiarch_image(&store, "example.com/app:1", 7);
    let runtime = runtime(ferry::config::Limits::default(), &dir.path().join("cache"));
    let driver = load(&runtime, HOSTILE_DRIVER);
    let stored = Origin::Layout { layout: std::sync::Arc::new(store), name: "example.com/app:1".into() };
    let grant = DestinationGrant::directory(dir.path().join("site"));
    let hostile = image("neighbour", "example.com/app:1", "hostile");
    let err = driver.relocate(&hostile, &stored, &grant, "web/this-image", &[]).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Denied, "{err}");
    assert!(err.to_string().contains("not this image's place"), "{err}");
    assert!(!dir.path().join("site/web/other-image").exists(), "the other image's place was created");
    // Its own place, and below it, stay open to it.
    let own = driver.relocate(&hostile, &stored, &grant, "web", &[]).unwrap();
    assert!(own.contains("web/other-image"), "{own}");
}
