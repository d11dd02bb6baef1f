//! A thick bundle from anywhere: the streaming reader, the bundle.json reader, the in-place
//! reader (uncompressed or gzip of stored blocks: byte ranges of the file; compressed: reachable
//! blobs copied to scratch)
//! and the graph walk over what it holds, plus `thick::verify`.
//!
//! Input: one mode byte, then the payload. Mode 0 uses the payload as the file as it is (so the
//! fuzzer can also build its own gzip or zstd streams); modes 1 and 2 gzip or zstd it first, so
//! that mutations of the tar inside reach the compressed readers; mode 3 gzips it at level 0
//! (stored blocks), which the in-place reader reads without decompressing.
//!
//! Beyond "no panic", it checks that the readers agree (one bundle.json, whoever reads it),
//! that the graph walk's answer is well formed and closed (`common::check_graph`), that no file in scratch grows beyond
//! `SCRATCH_LIMIT` (enforced with RLIMIT_FSIZE: a larger write aborts), and that scratch is
//! empty again once the in-place bundle is dropped or failed to open.

#![no_main]

mod common;

use ferry::oci::{MAX_DOCUMENT, Stored};
use libfuzzer_sys::fuzz_target;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// No scratch file may grow beyond this. The fuzzer cannot forge sha256, so every blob that
/// legitimately reaches scratch is one of the seeds' (kilobytes); anything near this size was
/// written before it was verified.
const SCRATCH_LIMIT: u64 = 16 << 20;

struct Dirs {
    input: PathBuf,
    scratch: PathBuf,
}

extern "C" fn file_too_large(_: libc::c_int) {
    const MSG: &[u8] = b"\n==fuzz== SIGXFSZ: a file grew beyond SCRATCH_LIMIT\n";
    unsafe {
        libc::write(2, MSG.as_ptr().cast(), MSG.len());
        libc::abort();
    }
}

fn dirs() -> &'static Dirs {
    static DIRS: OnceLock<Dirs> = OnceLock::new();
    DIRS.get_or_init(|| {
        // Kept for the life of the process; fuzz/run points TMPDIR at a directory it removes.
        let root = tempfile::Builder::new().prefix("ferry-fuzz-archive-").tempdir().unwrap().keep();
        let scratch = root.join("scratch");
        std::fs::create_dir(&scratch).unwrap();
        unsafe {
            let limit = libc::rlimit { rlim_cur: SCRATCH_LIMIT, rlim_max: libc::RLIM_INFINITY };
            assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
            libc::signal(libc::SIGXFSZ, file_too_large as *const () as libc::sighandler_t);
        }
        Dirs { input: root.join("bundle"), scratch }
    })
}

/// Every file under `scratch` (the in-place reader makes a directory there for its copy).
fn scratch_files(scratch: &Path) -> Vec<(String, u64)> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(scratch).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            files.extend(scratch_files(&e.path()));
        } else {
            files.push((e.path().display().to_string(), e.metadata().map(|m| m.len()).unwrap_or(0)));
        }
    }
    files
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, payload)) = data.split_first() else { return };
    let dirs = dirs();
    let gzip = |level| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), level);
        gz.write_all(payload).unwrap();
        gz.finish().unwrap()
    };
    let bytes = match mode % 4 {
        0 => payload.to_vec(),
        1 => gzip(flate2::Compression::fast()),
        2 => zstd::encode_all(payload, 1).unwrap(),
        // Stored blocks, as ferry writes .tgz: read in place through an index of the blocks.
        _ => gzip(flate2::Compression::none()),
    };
    std::fs::write(&dirs.input, &bytes).unwrap();
    let path = dirs.input.as_path();

    let streamed = ferry::archive::read(path, true);
    let first = ferry::archive::bundle_json(path);
    if let Ok(contents) = &streamed {
        let first = first.as_ref().expect("a bundle read whole has a bundle.json read alone");
        assert_eq!(first, &contents.bundle_json, "two readers, two bundle.json");
    }
    let _ = ferry::archive::read(path, false);

    match ferry::archive::InPlace::open(path, &dirs.scratch) {
        Ok(stored) => {
            for (name, size) in scratch_files(&dirs.scratch) {
                assert!(size <= SCRATCH_LIMIT, "scratch file {name} holds {size} bytes");
            }
            if let Ok(contents) = &streamed {
                assert_eq!(stored.bundle_json, contents.bundle_json, "in place and streamed: two bundle.json");
                assert_eq!(stored.relocation_mapping, contents.relocation_mapping, "two relocation mappings");
                // A compressed bundle keeps only the blobs its index reaches; each one it keeps
                // must read as the streaming reader read it. `read_blob` checks the digest, so a
                // document whose bytes do not match its name (the streaming reader hashed it) is
                // refused there, and only there.
                for (digest, document) in &contents.documents {
                    if stored.has_blob(digest) {
                        let intact = contents.blobs.get(digest).and_then(|b| b.actual.as_ref()) == Some(digest);
                        match stored.read_blob(digest, MAX_DOCUMENT) {
                            Ok(again) => assert_eq!(&again, document, "{digest}: two readers, two documents"),
                            Err(e) => assert!(!intact, "{digest}: an intact document is refused: {e:#}"),
                        }
                    }
                }
            }
            for root in stored.entries().expect("the index was parsed at open") {
                if let Ok(out) = stored.graph(&root) {
                    common::check_graph(&stored, &root, &out);
                }
            }
            drop(stored);
        }
        Err(_) => {}
    }
    let left = scratch_files(&dirs.scratch);
    assert!(left.is_empty(), "scratch holds {left:?} after the bundle is gone");

    let _ = ferry::thick::verify(path);
});
