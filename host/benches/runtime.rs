//! Driver runtime benchmark: `cargo bench -p ferry --bench runtime`.
//!
//! - cold load of each built-in driver (compile with Cranelift, cache, instantiate, `info`);
//! - warm load from the compiled-component cache (deserialize, link, instantiate, `info`);
//! - one operation round trip (fresh store and instance, `inspect` of a stored image);
//! - a 1 GiB file relocated by a driver through the host data plane, against `cp` of the same
//!   file in the same run.
//!
//! Figures are medians; the copy is reported as a ratio to `cp`, since this machine is noisy.

use ferry::config::Limits;
use ferry::driver::{self, DestinationGrant, Events, Image, Level, Origin, Runtime, Settings, VerifiedComponent};
use ferry::oci::Layout;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Quiet;
impl Events for Quiet {
    fn log(&self, _: &str, _: Level, _: &str) {}
}

fn runtime(cache: &Path) -> Runtime {
    Runtime::new(Settings { limits: Limits::default(), cache_dir: Some(cache.to_owned()), events: Arc::new(Quiet) })
        .unwrap()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let guests = Path::new(env!("FERRY_GUEST_DIR"));

    println!("{:<40} {:>12}", "driver runtime", "median");
    for component in driver::builtin_components().unwrap() {
        let cold = median(
            (0..5)
                .map(|i| {
                    let rt = runtime(&work.path().join(format!("cold-{i}")));
                    let started = Instant::now();
                    rt.load(&component).unwrap();
                    started.elapsed()
                })
                .collect(),
        );
        let warm_cache = work.path().join("warm");
        let rt = runtime(&warm_cache);
        let name = rt.load(&component).unwrap().info().name.clone();
        let warm = median(
            (0..50)
                .map(|_| {
                    let started = Instant::now();
                    rt.load(&component).unwrap();
                    started.elapsed()
                })
                .collect(),
        );
        println!("{:<40} {:>12}", format!("{name}: cold load (compile)"), ms(cold));
        println!("{:<40} {:>12}", format!("{name}: load from cache + instantiate + info"), ms(warm));
    }

    // A 1 GiB file, stored by the example driver, then relocated into a directory.
    let rt = runtime(&work.path().join("warm"));
    let file_driver =
        rt.load(&VerifiedComponent::local(std::fs::read(guests.join("example_file_driver.wasm")).unwrap())).unwrap();
    let source = work.path().join("disk.img");
    write_file(&source, 1 << 30);
    let store = Arc::new(Layout::create(&work.path().join("store")).unwrap());
    let image = Image {
        key: "disk".into(),
        reference: "disk.img".into(),
        image_type: "example-file".into(),
        ..Default::default()
    };
    let started = Instant::now();
    file_driver.fetch(&image, &Origin::File { dir: work.path().to_owned(), path: "disk.img".into() }, &store).unwrap();
    let fetch = started.elapsed();
    let stored = Origin::Layout { layout: store.clone(), name: "disk.img".into() };

    let round_trip = median(
        (0..50)
            .map(|_| {
                let started = Instant::now();
                file_driver.inspect(&image, &stored).unwrap();
                started.elapsed()
            })
            .collect(),
    );
    println!("{:<40} {:>12}", "operation round trip (inspect)", ms(round_trip));

    let blob = std::fs::read_dir(work.path().join("store/blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| p.metadata().unwrap().len())
        .unwrap();
    let mut ferry_runs = Vec::new();
    let mut cp_runs = Vec::new();
    for i in 0..5 {
        let destination = work.path().join(format!("site-{i}"));
        let started = Instant::now();
        file_driver.relocate(&image, &stored, &DestinationGrant::directory(destination.clone()), "", &[]).unwrap();
        ferry_runs.push(started.elapsed());
        std::fs::remove_dir_all(&destination).unwrap();

        let copy = work.path().join(format!("cp-{i}"));
        let started = Instant::now();
        assert!(Command::new("cp").arg(&blob).arg(&copy).status().unwrap().success());
        cp_runs.push(started.elapsed());
        std::fs::remove_file(&copy).unwrap();
    }
    let (ferry, cp) = (median(ferry_runs), median(cp_runs));
    println!();
    println!("{:<40} {:>12}", "1 GiB fetch into the store (hashed)", ms(fetch));
    println!("{:<40} {:>12}", "1 GiB relocate through the host", ms(ferry));
    println!("{:<40} {:>12}", "1 GiB cp", ms(cp));
    println!("{:<40} {:>12.2}", "relocate / cp", ferry.as_secs_f64() / cp.as_secs_f64());
}

fn write_file(path: &Path, size: usize) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut block = vec![0u8; 1 << 20];
    for i in 0..size / block.len() {
        block[..8].copy_from_slice(&(i as u64).to_le_bytes());
        file.write_all(&block).unwrap();
    }
}
