//! The built-in OCI driver and the example file driver, run through the runtime on real files
//! and OCI layouts: what they store and copy is checked byte for byte.

mod common;

use common::*;
use ferry::config::Limits;
use ferry::driver::{DestinationGrant, ErrorKind, Origin, VerifiedComponent};
use ferry::oci::{Digest, Layout, REF_NAME, Stored};
use std::sync::Arc;

#[test]
fn the_oci_driver_relocates_every_platform_of_an_index_into_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(Limits::default(), &dir.path().join("cache"));
    let oci = load(&runtime, OCI_DRIVER);
    assert_eq!(oci.info().image_types, ["oci", "docker"]);

    let store = Arc::new(Layout::create(&dir.path().join("store")).unwrap());
    let (root, blobs) = write_multiarch_image(&store, "registry.example/team/app:1.2", 1);
    let stored = Origin::Layout { layout: store.clone(), name: "registry.example/team/app:1.2".into() };
    let mut app = image("app", "registry.example/team/app:1.2", "oci");
    app.content_digest = Some(root.digest.to_string());

    oci.verify(&app, &stored).unwrap();
    let summary = oci.inspect(&app, &stored).unwrap();
    assert_eq!(summary.digest, root.digest.to_string());
    assert_eq!(summary.platforms, ["linux/amd64", "linux/arm64"]);
    let total: u64 = blobs.iter().map(|d| store.blob_size(d).unwrap()).sum();
    assert_eq!(summary.size, total);

    let granted = dir.path().join("site");
    let relocated = oci.relocate(&app, &stored, &DestinationGrant::directory(granted.clone()), "", &[]).unwrap();
    assert_eq!(relocated, format!("{}:1.2@{}", granted.display(), root.digest));
    let site = Layout::open(&granted).unwrap();
    for digest in &blobs {
        assert_eq!(
            std::fs::read(granted.join("blobs/sha256").join(digest.hex())).unwrap(),
            std::fs::read(dir.path().join("store/blobs/sha256").join(digest.hex())).unwrap(),
        );
    }
    let entry = site.find("1.2").unwrap().expect("tagged in the destination index");
    assert_eq!(entry.digest, root.digest);
    let copied = std::fs::read_dir(granted.join("blobs/sha256")).unwrap().count();
    assert_eq!(copied, blobs.len(), "every blob once, nothing else");
}

#[test]
fn the_oci_driver_refuses_a_content_digest_that_does_not_match() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(Limits::default(), &dir.path().join("cache"));
    let oci = load(&runtime, OCI_DRIVER);
    let store = Arc::new(Layout::create(&dir.path().join("store")).unwrap());
    write_multiarch_image(&store, "app", 2);
    let stored = Origin::Layout { layout: store, name: "app".into() };
    let mut app = image("web", "app", "oci");
    let wrong = Digest::of(b"another image");
    app.content_digest = Some(wrong.to_string());
    let err = oci.relocate(&app, &stored, &DestinationGrant::directory(dir.path().join("site")), "", &[]).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidContent, "{err}");
    assert!(err.message.contains(&wrong.to_string()), "{err}");
    // The host names the image once; the driver's own message does not repeat it.
    assert_eq!(err.to_string().matches("web").count(), 1, "{err}");
    assert!(
        !dir.path().join("site/index.json").exists()
            || Layout::open(&dir.path().join("site")).unwrap().index().unwrap().is_empty()
    );
}

#[test]
fn verify_finds_a_missing_blob_and_fetch_refuses_a_corrupt_one() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(Limits::default(), &dir.path().join("cache"));
    let oci = load(&runtime, OCI_DRIVER);
    let origin_layout = Arc::new(Layout::create(&dir.path().join("origin")).unwrap());
    let (_, blobs) = write_multiarch_image(&origin_layout, "app", 3);
    let origin = Origin::Layout { layout: origin_layout, name: "app".into() };
    let app = image("app", "app", "oci");

    // A layer whose bytes no longer match its digest.
    let layer = dir.path().join("origin/blobs/sha256").join(blobs[0].hex());
    let good = std::fs::read(&layer).unwrap();
    let mut bad = good.clone();
    bad[1000] ^= 1;
    std::fs::write(&layer, &bad).unwrap();
    let store = Arc::new(Layout::create(&dir.path().join("store")).unwrap());
    let err = oci.fetch(&app, &origin, &store).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidContent, "{err}");
    assert!(err.message.contains("digest mismatch") && err.message.contains(&blobs[0].to_string()), "{err}");
    assert!(!store.has_blob(&blobs[0]), "the corrupt blob was stored");
    assert!(store.index().unwrap().is_empty(), "the image was recorded");

    std::fs::write(&layer, &good).unwrap();
    let root = oci.fetch(&app, &origin, &store).unwrap();
    assert_eq!(store.find("app").unwrap().unwrap().digest, root.digest);
    for digest in &blobs {
        assert!(store.has_blob(digest), "{digest} missing from the store");
    }

    let stored = Origin::Layout { layout: store.clone(), name: "app".into() };
    oci.verify(&app, &stored).unwrap();
    std::fs::remove_file(dir.path().join("store/blobs/sha256").join(blobs[1].hex())).unwrap();
    let err = oci.verify(&app, &stored).unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert!(err.message.contains(&blobs[1].to_string()), "{err}");
}

#[test]
fn the_example_driver_stores_a_file_as_an_artifact_and_relocates_it() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(Limits::default(), &dir.path().join("cache"));
    let driver = load(&runtime, FILE_DRIVER);
    let file = dir.path().join("firmware.bin");
    let content: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&file, &content).unwrap();
    let mut img = image("firmware", "firmware.bin", "example-file");
    img.content_digest = Some(Digest::of(&content).to_string());

    let store = Arc::new(Layout::create(&dir.path().join("store")).unwrap());
    let root =
        driver.fetch(&img, &Origin::File { dir: dir.path().to_owned(), path: "firmware.bin".into() }, &store).unwrap();
    assert_eq!(root.artifact_type.as_deref(), Some("application/vnd.example.file.v1"));
    let entry = store.find("firmware.bin").unwrap().unwrap();
    assert_eq!(entry.annotations[REF_NAME], "firmware.bin");
    assert_eq!(std::fs::read(dir.path().join("store/blobs/sha256").join(Digest::of(&content).hex())).unwrap(), content);

    let stored = Origin::Layout { layout: store, name: "firmware.bin".into() };
    driver.verify(&img, &stored).unwrap();
    let summary = driver.inspect(&img, &stored).unwrap();
    // Summary.size is every blob of the stored image once, as ferry inspect counts it.
    let Origin::Layout { layout, .. } = &stored else { unreachable!() };
    let every_blob: u64 = layout.graph(&root).unwrap().iter().map(|d| d.size).sum();
    assert_eq!(summary.size, every_blob);
    assert!(summary.size > content.len() as u64);
    let relocated =
        driver.relocate(&img, &stored, &DestinationGrant::directory(dir.path().join("site")), "", &[]).unwrap();
    assert!(relocated.ends_with(&format!(":firmware.bin@{}", root.digest)), "{relocated}");

    img.content_digest = Some(Digest::of(b"not it").to_string());
    let origin = Origin::File { dir: dir.path().to_owned(), path: "firmware.bin".into() };
    let err = driver.fetch(&img, &origin, &Arc::new(Layout::create(&dir.path().join("store2")).unwrap())).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidContent, "{err}");
}

#[test]
fn components_are_compiled_once_and_a_damaged_cache_entry_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let runtime = runtime(Limits::default(), &cache);
    let component = component(FILE_DRIVER);
    runtime.load(&component).unwrap();
    let entries: Vec<_> = walk(&cache);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let cwasm = &entries[0];
    assert!(cwasm.to_string_lossy().ends_with(&format!("{}.cwasm", component.digest().hex())));

    std::fs::write(cwasm, b"not native code").unwrap();
    assert_eq!(runtime.load(&component).unwrap().info().name, "example-file");
    assert_ne!(std::fs::read(cwasm).unwrap(), b"not native code", "the damaged entry stayed");
}

#[test]
fn a_pinned_component_with_another_digest_is_refused_before_it_is_compiled() {
    let bytes = std::fs::read(guest(FILE_DRIVER)).unwrap();
    let err = VerifiedComponent::pinned(bytes, &Digest::of(b"something else")).err().expect("refused");
    assert!(err.to_string().contains("digest mismatch"), "{err}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}
