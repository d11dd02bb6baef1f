//! Hostile drivers: each misbehaviour ends its own operation with the error kind that names
//! the limit or capability, and the same runtime runs the next operation cleanly.

mod common;

use common::*;
use ferry::config::Limits;
use ferry::driver::{DestinationGrant, Driver, DriverError, ErrorKind, Origin};
use ferry::oci::Layout;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Fixture {
    _dir: tempfile::TempDir,
    stored: Origin,
    grant: DestinationGrant,
    granted: std::path::PathBuf,
    outside: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Layout::create(&dir.path().join("store")).unwrap();
    write_multiarch_image(&store, "example.com/app:1", 7);
    let granted = dir.path().join("granted");
    Fixture {
        stored: Origin::Layout { layout: Arc::new(store), name: "example.com/app:1".into() },
        grant: DestinationGrant::directory(granted.clone()),
        granted,
        outside: dir.path().join("escaped"),
        _dir: dir,
    }
}

fn limits() -> Limits {
    Limits { memory: 64 << 20, timeout: Duration::from_secs(1), call_bytes: 1 << 20, handles: 16, output: 4 << 10 }
}

fn relocate(driver: &Driver, f: &Fixture, key: &str) -> Result<String, DriverError> {
    driver.relocate(&image(key, "example.com/app:1", "hostile"), &f.stored, &f.grant, "", &[])
}

/// The misbehaviour fails with `kind`, and the next operation on the same driver succeeds.
fn fails_then_recovers(driver: &Driver, f: &Fixture, key: &str, kind: ErrorKind) -> DriverError {
    let err = relocate(driver, f, key).expect_err(key);
    assert_eq!(err.kind, kind, "{key}: {err}");
    assert_eq!(err.driver, "hostile");
    assert!(err.to_string().contains("relocate of image"), "{err}");
    assert!(err.to_string().contains(key), "the error names the image: {err}");
    assert!(relocate(driver, f, "behave").unwrap().starts_with(&f.granted.display().to_string()));
    err
}

#[test]
fn an_endless_loop_is_stopped_within_the_limit_plus_one_second() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(limits(), cache.path());
    let driver = load(&runtime, HOSTILE_DRIVER);
    let f = fixture();
    let started = Instant::now();
    let err = fails_then_recovers(&driver, &f, "spin", ErrorKind::Timeout);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "stopped too early: {took:?}");
    assert!(took < Duration::from_secs(2), "not stopped within the limit plus one second: {took:?}");
    assert!(err.message.contains("time limit of 1s"), "{err}");
}

#[test]
fn growing_memory_past_the_cap_fails() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(limits(), cache.path());
    let driver = load(&runtime, HOSTILE_DRIVER);
    let err = fails_then_recovers(&driver, &fixture(), "grow", ErrorKind::MemoryLimit);
    assert!(err.message.contains("memory limit of 64 MiB"), "{err}");
}

#[test]
fn files_outside_the_grant_cannot_be_read() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(limits(), cache.path());
    let driver = load(&runtime, HOSTILE_DRIVER);
    let err = fails_then_recovers(&driver, &fixture(), "read-passwd", ErrorKind::Failed);
    assert!(err.message.contains("open /etc/passwd"), "{err}");
    assert!(!err.message.contains("root:"), "the driver saw the file: {err}");
}

#[test]
fn writing_outside_the_destination_is_denied() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(limits(), cache.path());
    let driver = load(&runtime, HOSTILE_DRIVER);
    let f = fixture();
    let err = fails_then_recovers(&driver, &f, "escape-destination", ErrorKind::Denied);
    assert!(err.message.contains("\"../escaped\""), "{err}");
    assert!(!f.outside.exists(), "a file was written outside the grant");
}

#[test]
fn a_destination_that_was_not_granted_is_denied() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(limits(), cache.path());
    let driver = load(&runtime, HOSTILE_DRIVER);
    let f = fixture();
    let err = fails_then_recovers(&driver, &f, "other-destination", ErrorKind::Denied);
    assert!(err.message.contains("/tmp/not-granted") && err.message.contains("outside the granted"), "{err}");
    assert!(!std::path::Path::new("/tmp/not-granted").exists());
}

#[test]
fn an_oversized_list_handed_to_the_host_is_refused() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(limits(), cache.path());
    let driver = load(&runtime, HOSTILE_DRIVER);
    let f = fixture();
    let err = fails_then_recovers(&driver, &f, "oversized", ErrorKind::CallBytesLimit);
    assert!(err.message.contains("8 MiB to destination.put-document") && err.message.contains("1 MiB"), "{err}");
    let index = Layout::open(&f.granted).unwrap().index().unwrap();
    assert!(index.iter().all(|d| d.media_type != "application/json"), "the document was stored: {index:?}");
}

#[test]
fn handles_are_limited() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(limits(), cache.path());
    let driver = load(&runtime, HOSTILE_DRIVER);
    let err = fails_then_recovers(&driver, &fixture(), "hoard-handles", ErrorKind::HandleLimit);
    assert!(err.message.contains("16 host handles"), "{err}");
}

#[test]
fn a_panic_becomes_an_error_with_the_panic_message() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(limits(), cache.path());
    let driver = load(&runtime, HOSTILE_DRIVER);
    let err = fails_then_recovers(&driver, &fixture(), "panic", ErrorKind::Crashed);
    assert!(err.message.contains("panics on purpose"), "{err}");
}

#[test]
fn a_flood_of_output_is_capped_without_failing_the_driver() {
    let cache = tempfile::tempdir().unwrap();
    // 5,000 lines, about 200 KB against a 4 KiB cap; each line is a few host calls, slow in a
    // debug build.
    let runtime = runtime(Limits { timeout: Duration::from_secs(30), ..limits() }, cache.path());
    let driver = load(&runtime, HOSTILE_DRIVER);
    let f = fixture();
    relocate(&driver, &f, "chatty").unwrap();
}
