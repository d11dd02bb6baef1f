//! Drivers that attack the host's own work on their behalf, and what ferry believes and prints on
//! their word (issue 10): each misbehaviour is stopped or refused, and named.

mod common;

use common::*;
use ferry::config::Limits;
use ferry::driver::{
    DestinationGrant, Driver, DriverError, ErrorKind, Events, Level, Origin, Runtime, Settings, VerifiedComponent,
};
use ferry::oci::{Descriptor, Layout};
use ferry::registry::{Deferred, Registry};
use ferry::sandbox::MAX_FUNCTION;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SLEEPS_IN_INFO: &str = "ferry_driver_sleeps_in_info.wasm";
const LIES_IN_INFO: &str = "ferry_driver_lies_in_info.wasm";
const NAME: &str = "example.com/app:1";

struct Fixture {
    dir: tempfile::TempDir,
    store: Arc<Layout>,
    root: Descriptor,
    grant: DestinationGrant,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Layout::create(&dir.path().join("store")).unwrap();
        let (root, _) = write_multiarch_image(&store, NAME, 7);
        let grant = DestinationGrant::directory(dir.path().join("granted"));
        Fixture { store: Arc::new(store), root, grant, dir }
    }

    fn stored(&self) -> Origin {
        Origin::Layout { layout: self.store.clone(), name: NAME.into() }
    }

    fn relocate(&self, driver: &Driver, key: &str) -> Result<String, DriverError> {
        driver.relocate(&image(key, NAME, "hostile"), &self.stored(), &self.grant, "", &[])
    }

    /// Fetches into the store the image is in already, so that everything its root refers to
    /// is there: only the root the driver records and returns is on trial.
    fn fetch(&self, driver: &Driver, key: &str) -> Result<Descriptor, DriverError> {
        driver.fetch(&image(key, NAME, "hostile"), &self.stored(), &self.store)
    }
}

/// Keeps every log line, as the operator's terminal would get it.
#[derive(Default)]
struct Lines(Mutex<Vec<String>>);

impl Events for Lines {
    fn log(&self, driver: &str, _level: Level, message: &str) {
        self.0.lock().unwrap().push(format!("{driver}: {message}"));
    }
}

fn limits(timeout: Duration) -> Limits {
    Limits { memory: 64 << 20, timeout, call_bytes: 1 << 20, handles: 16, output: 64 << 10 }
}

fn runtime_with(limits: Limits, cache: &Path, lines: Arc<Lines>) -> Runtime {
    Runtime::new(Settings { limits, cache_dir: Some(cache.to_owned()), events: lines }).unwrap()
}

fn assert_printable(text: &str) {
    assert!(!text.chars().any(char::is_control), "a control character reached the operator: {text:?}");
}

/// Runs `attempt`, which must end in a timeout within the 2 s limit plus a second.
fn stopped_at_two_seconds(what: &str, attempt: impl FnOnce() -> Result<(), DriverError>) {
    let started = Instant::now();
    let err = attempt().expect_err(what);
    let took = started.elapsed();
    assert_eq!(err.kind, ErrorKind::Timeout, "{what}: {err}");
    assert!(err.message.contains("time limit of 2s (--driver-timeout)"), "{what}: {err}");
    assert!(took >= Duration::from_millis(1900), "{what}: stopped too early: {took:?}");
    assert!(took < Duration::from_secs(3), "{what}: not stopped within the limit plus one second: {took:?}");
    eprintln!("{what}: stopped after {took:?}");
}

#[test]
fn a_driver_asleep_in_wasi_is_stopped_at_the_time_limit() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(limits(Duration::from_secs(2)), cache.path());
    let driver = load(&runtime, HOSTILE_DRIVER);
    let f = Fixture::new();
    stopped_at_two_seconds("relocate sleeping an hour", || f.relocate(&driver, "sleep").map(drop));
    stopped_at_two_seconds("relocate waiting on a pollable of u64::MAX ns", || {
        f.relocate(&driver, "sleep-forever").map(drop)
    });
    stopped_at_two_seconds("fetch sleeping an hour", || f.fetch(&driver, "sleep").map(drop));
    stopped_at_two_seconds("inspect sleeping an hour", || {
        driver.inspect(&image("sleep", NAME, "hostile"), &f.stored()).map(drop)
    });
    assert!(f.relocate(&driver, "behave").is_ok(), "the next operation runs");
}

#[test]
fn a_driver_asleep_in_info_cannot_hang_loading() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(limits(Duration::from_secs(2)), cache.path());
    // Compiled and cached by a first attempt, so that the one timed is all info.
    runtime.load(&component(SLEEPS_IN_INFO)).map(drop).unwrap_err();
    stopped_at_two_seconds("info sleeping an hour", || runtime.load(&component(SLEEPS_IN_INFO)).map(drop));
}

#[test]
fn relocate_may_return_only_a_reference_the_host_wrote() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(limits(Duration::from_secs(30)), cache.path());
    let driver = load(&runtime, HOSTILE_DRIVER);
    let f = Fixture::new();

    let written = f.relocate(&driver, "behave").unwrap();
    assert!(written.ends_with(&format!("@{}", f.root.digest)), "{written}");

    let err = f.relocate(&driver, "claim-other-reference").unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidContent, "{err}");
    assert!(
        err.message.contains("evil.example.com/pwn/app:1") && err.message.contains("not what ferry wrote"),
        "{err}"
    );

    let err = f.relocate(&driver, "claim-with-escapes").unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidContent, "{err}");
    assert!(err.message.contains("control characters"), "{err}");
    assert_printable(&err.to_string());
}

#[test]
fn tags_that_are_dots_are_refused() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(limits(Duration::from_secs(30)), cache.path());
    let driver = load(&runtime, HOSTILE_DRIVER);
    let f = Fixture::new();
    let err = f.relocate(&driver, "tag-dot-dot").unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidContent, "{err}");
    assert!(err.message.contains("\"..\" is not a valid tag"), "{err}");
}

#[test]
fn fetch_must_return_the_root_it_recorded_and_the_root_must_tell_the_truth() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(limits(Duration::from_secs(30)), cache.path());
    let driver = load(&runtime, HOSTILE_DRIVER);
    let f = Fixture::new();
    assert_eq!(f.fetch(&driver, "behave").unwrap().digest, f.root.digest);
    for (key, says) in [
        ("unrecorded-root", "without recording it with store.set-root"),
        ("other-root", "but recorded"),
        ("lying-size", "its descriptor says"),
        // The store's graph walk refuses it before the descriptor checks do.
        ("not-json-index", "are not OCI descriptors"),
        ("hidden-index", "by its own mediaType"),
    ] {
        let err = f.fetch(&driver, key).expect_err(key);
        assert_eq!(err.kind, ErrorKind::InvalidContent, "{key}: {err}");
        assert!(err.message.contains(says), "{key}: {err}");
    }
}

// An export only names a driver's registry blobs (registry::Deferred) and fetches them when it
// writes the archive; a manifest a driver copied as a plain blob is still walked when the root is
// recorded, so that walk fetches it into the store, and only it.
#[test]
fn manifests_copied_as_blobs_from_a_registry_are_fetched_when_the_root_is_recorded() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(limits(Duration::from_secs(30)), cache.path());
    let driver = load(&runtime, HOSTILE_DRIVER);
    let dir = tempfile::tempdir().unwrap();
    let origin = Layout::create(&dir.path().join("origin")).unwrap();
    let (root, blobs) = write_multiarch_image(&origin, "app", 5);
    let registry = TestRegistry::start();
    registry.push(&dir.path().join("origin"), "app", "team/app:1");
    let options = registry.options(dir.path());
    let reference = format!("{}/team/app:1", registry.host);
    let origin =
        Origin::Registry { registry: Arc::new(Registry::new(&options).unwrap()), reference: reference.clone() };
    let store = Arc::new(Layout::create(&dir.path().join("store")).unwrap());
    let deferred = Arc::new(Deferred::default());
    let image = image("manifests-copied-as-blobs", &reference, "hostile");
    let fetched = driver.fetch_deferring(&image, &origin, &store, &deferred).unwrap();
    assert_eq!(fetched.digest, root.digest);
    // blobs: base layer, then per platform top layer, config, manifest; then the index.
    let manifests = [&blobs[3], &blobs[6]];
    for digest in &blobs {
        let read = manifests.contains(&digest) || *digest == root.digest;
        assert_eq!(store.has_blob(digest), read, "{digest} in the store");
        assert_eq!(deferred.size(digest).is_some(), !read, "{digest} named for later");
    }
}

#[test]
fn a_stack_overflow_and_a_flood_of_wasi_handles_are_named_plainly() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(limits(Duration::from_secs(30)), cache.path());
    let driver = load(&runtime, HOSTILE_DRIVER);
    let f = Fixture::new();
    let err = f.relocate(&driver, "overflow-stack").unwrap_err();
    assert_eq!(err.kind, ErrorKind::Crashed, "{err}");
    assert!(err.message.contains("stack overflow"), "{err}");
    let err = f.relocate(&driver, "leak-wasi-handles").unwrap_err();
    assert_eq!(err.kind, ErrorKind::HandleLimit, "{err}");
    assert!(err.message.contains("--driver-handles") && err.message.contains("WASI"), "{err}");
}

#[test]
fn log_lines_are_escaped_capped_and_the_rest_counted() {
    let cache = tempfile::tempdir().unwrap();
    let lines = Arc::new(Lines::default());
    let runtime = runtime_with(limits(Duration::from_secs(60)), cache.path(), lines.clone());
    let driver = load(&runtime, HOSTILE_DRIVER);
    let f = Fixture::new();
    f.relocate(&driver, "flood-log").unwrap();
    let logged = std::mem::take(&mut *lines.0.lock().unwrap());
    // 64 KiB at ~90 bytes per line (64 of them for ferry's prefix).
    assert!(logged.len() > 500 && logged.len() < 1000, "{} lines", logged.len());
    let last = logged.last().unwrap();
    assert!(last.contains("more log lines dropped") && last.contains("--driver-output"), "{last}");
    let dropped: usize = last.split(": ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert_eq!(dropped + logged.len() - 1, 100_000, "{last}");

    let err = f.relocate(&driver, "escape-log").unwrap_err();
    let logged = lines.0.lock().unwrap().clone();
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_printable(&logged[0]);
    assert!(logged[0].contains("\\u{1b}]52;c;"), "{logged:?}");
    assert_printable(&err.to_string());
    assert!(err.message.len() < 5000 && err.message.contains("more bytes)"), "{} bytes", err.message.len());
}

#[test]
fn inspect_details_are_escaped_and_capped() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(limits(Duration::from_secs(30)), cache.path());
    let driver = load(&runtime, HOSTILE_DRIVER);
    let f = Fixture::new();
    let summary = driver.inspect(&image("escapes", NAME, "hostile"), &f.stored()).unwrap();
    assert_eq!(summary.details, [("\\u{1b}]0;title\\u{7}key".to_owned(), "value\\nferry: fake line".to_owned())]);
    let summary = driver.inspect(&image("many-details", NAME, "hostile"), &f.stored()).unwrap();
    assert_eq!(summary.details.len(), 64);
}

#[test]
fn info_that_says_too_much_is_refused_before_anything_writes_or_prints_it() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(limits(Duration::from_secs(30)), cache.path());
    let err = runtime.load(&component(LIES_IN_INFO)).map(drop).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidContent, "{err}");
    assert!(err.message.contains("name with control characters"), "{err}");
    assert_printable(&err.to_string());
}

#[test]
fn a_component_is_refused_before_it_is_compiled() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(limits(Duration::from_secs(30)), cache.path());
    let compiled = || walk(cache.path());

    let err = runtime.load(&component("ferry_driver_wants_sockets.wasm")).map(drop).unwrap_err();
    assert!(err.message.contains("wasi:sockets"), "{err}");
    assert!(compiled().is_empty(), "compiled before its imports were checked: {:?}", compiled());

    let started = Instant::now();
    let err = runtime.load(&VerifiedComponent::local(one_huge_function(MAX_FUNCTION as usize + 1))).map(drop);
    let err = err.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotADriver, "{err}");
    assert!(err.message.contains(&format!("more than the {MAX_FUNCTION} ferry compiles")), "{err}");
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    assert!(compiled().is_empty(), "compiled before its size was checked: {:?}", compiled());
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.flatten().flat_map(|e| if e.path().is_dir() { walk(&e.path()) } else { vec![e.path()] }).collect()
}

/// A component holding one core module with one function of `body` bytes of `nop`s: the shape
/// of a bundle driver built to make Cranelift work for minutes.
fn one_huge_function(body: usize) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            out.push(if n == 0 { byte } else { byte | 0x80 });
            if n == 0 {
                break;
            }
        }
    }
    fn section(id: u8, content: &[u8], out: &mut Vec<u8>) {
        out.push(id);
        leb(content.len(), out);
        out.extend_from_slice(content);
    }
    let mut function = vec![0]; // no locals
    function.resize(body - 1, 0x01); // nop
    function.push(0x0b); // end
    let mut code = vec![1];
    leb(function.len(), &mut code);
    code.extend(function);
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    section(1, &[1, 0x60, 0, 0], &mut module); // one type: [] -> []
    section(3, &[1, 0], &mut module); // one function of that type
    section(10, &code, &mut module);
    let mut component = b"\0asm\x0d\0\x01\0".to_vec();
    section(1, &module, &mut component); // a core module section
    component
}

#[test]
fn a_file_image_that_links_out_of_the_bundle_directory_is_not_read() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(limits(Duration::from_secs(30)), cache.path());
    let driver = load(&runtime, FILE_DRIVER);
    let f = Fixture::new();
    let bundle = f.dir.path().join("bundle");
    std::fs::create_dir(&bundle).unwrap();
    std::fs::write(f.dir.path().join("secret"), b"outside the bundle").unwrap();
    std::os::unix::fs::symlink("../secret", bundle.join("relative-link")).unwrap();
    std::os::unix::fs::symlink(f.dir.path().join("secret"), bundle.join("absolute-link")).unwrap();
    std::fs::write(bundle.join("inside"), b"inside the bundle").unwrap();
    std::os::unix::fs::symlink("inside", bundle.join("inner-link")).unwrap();
    let store = Arc::new(Layout::create(&f.dir.path().join("fetched")).unwrap());
    for link in ["relative-link", "absolute-link"] {
        let origin = Origin::File { dir: bundle.clone(), path: link.into() };
        let err = driver.fetch(&image(link, link, "example-file"), &origin, &store).unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotFound, "{link}: {err}");
        assert!(err.message.contains("links that lead out refused"), "{link}: {err}");
    }
    let origin = Origin::File { dir: bundle.clone(), path: "inner-link".into() };
    driver.fetch(&image("inner", "inner-link", "example-file"), &origin, &store).unwrap();
}
