//! A driver that misbehaves on purpose, for the sandbox tests. `fetch`, `relocate` and `inspect`
//! do what the image key says; any other key behaves.

use ferry_driver_sdk::{
    Descriptor, Destination, Driver, DriverInfo, Error, Image, Level, Result, Source, Store, Summary, export_driver,
    log, open_destination,
};
use std::time::Duration;

/// WASI as the guest sees it, without std in between: a pollable for any duration, waited on.
mod wasi {
    #[link(wasm_import_module = "wasi:clocks/monotonic-clock@0.2.0")]
    unsafe extern "C" {
        #[link_name = "subscribe-duration"]
        fn subscribe_duration(nanoseconds: u64) -> i32;
    }

    #[link(wasm_import_module = "wasi:io/poll@0.2.0")]
    unsafe extern "C" {
        #[link_name = "[method]pollable.block"]
        fn block(pollable: i32);
    }

    /// A pollable ready after `nanoseconds`, leaked: its handle stays in the host's table.
    pub fn pollable(nanoseconds: u64) -> i32 {
        unsafe { subscribe_duration(nanoseconds) }
    }

    pub fn wait(nanoseconds: u64) {
        unsafe { block(subscribe_duration(nanoseconds)) }
    }
}

/// Recurses with a large frame on the guest's own stack (in linear memory) until it overflows.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth as u8; 16 << 10]);
    recurse(depth + 1) + u64::from(frame[depth as usize % frame.len()])
}

/// What every key that misbehaves by waiting does; `None` for the others.
fn wait(key: &str) -> Option<String> {
    match key {
        "sleep" => std::thread::sleep(Duration::from_secs(3600)),
        "sleep-forever" => wasi::wait(u64::MAX),
        _ => return None,
    }
    Some(format!("woke up from {key}"))
}

struct Hostile;

/// The manifests an index lists, and their blobs, copied with `store.copy-blob` as if they were
/// plain blobs: the host must still be able to walk them.
fn copy_children_as_blobs(index: &ferry_driver_sdk::Document, stored: &Source, store: &Store) -> Result<()> {
    for child in index.json()?["manifests"].as_array().into_iter().flatten() {
        let child = Descriptor::from_json(child)?;
        let manifest = stored.manifest(Some(&child.digest))?.json()?;
        let blobs = std::iter::once(&manifest["config"]).chain(manifest["layers"].as_array().into_iter().flatten());
        for blob in blobs {
            let blob = Descriptor::from_json(blob)?;
            store.copy_blob(stored, Some(&blob.digest), &blob.media_type)?;
        }
        store.copy_blob(stored, Some(&child.digest), &child.media_type)?;
    }
    Ok(())
}

impl Driver for Hostile {
    fn info() -> DriverInfo {
        DriverInfo {
            name: "hostile".into(),
            version: "0.0.1".into(),
            image_types: vec!["hostile".into()],
            reads_mapping: false,
        }
    }

    fn fetch(image: Image, stored: &Source, store: &Store) -> Result<Descriptor> {
        if let Some(woke) = wait(&image.key) {
            return Err(Error::failed(woke));
        }
        let root = stored.manifest(None)?;
        if image.key == "manifests-copied-as-blobs" {
            copy_children_as_blobs(&root, stored, store)?;
        }
        let recorded = store.put_document(&root.media_type, &root.bytes)?;
        match image.key.as_str() {
            "unrecorded-root" => Ok(recorded),
            "other-root" => {
                store.set_root(&recorded)?;
                store.put_document("application/json", b"{}")
            }
            "lying-size" => {
                let lie = Descriptor { size: recorded.size + 1, ..recorded };
                store.set_root(&lie)?;
                Ok(lie)
            }
            "not-json-index" => {
                let index = store.put_document("application/vnd.oci.image.index.v1+json", b"not json")?;
                store.set_root(&index)?;
                Ok(index)
            }
            "hidden-index" => {
                let hidden = Descriptor { media_type: "application/octet-stream".into(), ..recorded };
                store.set_root(&hidden)?;
                Ok(hidden)
            }
            _ => {
                store.set_root(&recorded)?;
                Ok(recorded)
            }
        }
    }

    fn verify(_image: Image, _stored: &Source) -> Result<()> {
        Ok(())
    }

    fn relocate(
        image: Image,
        stored: &Source,
        destination: &Destination,
        _mapping: Vec<(String, String)>,
    ) -> Result<String> {
        if let Some(woke) = wait(&image.key) {
            return Ok(woke);
        }
        match image.key.as_str() {
            "spin" => loop {
                std::hint::black_box(());
            },
            "grow" => {
                let hog = vec![1u8; 1 << 30];
                Ok(format!("allocated {}", hog.len()))
            }
            "read-passwd" => match std::fs::read("/etc/passwd") {
                Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
                Err(e) => Err(Error::failed(format!("open /etc/passwd: {e}"))),
            },
            "escape-destination" => {
                let root = stored.manifest(None)?.descriptor();
                destination.write_file(stored, &root, "../escaped")
            }
            "other-destination" => {
                let other = open_destination("/tmp/not-granted")?;
                other.location();
                Ok("opened".into())
            }
            // Another image's place in the same grant: its relocated content is not this one's.
            "neighbour" => {
                let other = open_destination("web/other-image")?;
                other.copy_artifact(stored, &stored.manifest(None)?.descriptor(), None)
            }
            "hoard-handles" => {
                let mut held = Vec::new();
                loop {
                    held.push(open_destination(&format!("sub{}", held.len()))?);
                }
            }
            "oversized" => {
                let big = vec![b' '; 8 << 20];
                destination.put_document("application/json", &big, None)
            }
            "panic" => panic!("the hostile driver panics on purpose"),
            "chatty" => {
                for i in 0..5_000 {
                    eprintln!("line {i} of noise the host must cap");
                }
                destination.copy_artifact(stored, &stored.manifest(None)?.descriptor(), None)
            }
            "overflow-stack" => Ok(format!("{}", recurse(0))),
            "leak-wasi-handles" => loop {
                wasi::pollable(1);
            },
            "claim-other-reference" => Ok(format!("evil.example.com/pwn/app:1@sha256:{}", "a".repeat(64))),
            "claim-with-escapes" => {
                let written = destination.copy_artifact(stored, &stored.manifest(None)?.descriptor(), None)?;
                Ok(format!("{written}\x1b]0;pwned\x07\nferry: all good"))
            }
            "tag-dot-dot" => destination.copy_artifact(stored, &stored.manifest(None)?.descriptor(), Some("..")),
            "flood-log" => {
                for i in 0..100_000 {
                    log(Level::Warn, format!("warning {i} of a flood"));
                }
                destination.copy_artifact(stored, &stored.manifest(None)?.descriptor(), None)
            }
            "escape-log" => {
                log(Level::Warn, "\x1b]52;c;cHduZWQ=\x07\x1b[2J\rferry: bundle driver oci handles nothing");
                Err(Error::failed(format!("\x1b]0;title\x07{}", "long ".repeat(1 << 20))))
            }
            // Behaving: the one image copied, and the reference the host returned for it.
            _ => destination.copy_artifact(stored, &stored.manifest(None)?.descriptor(), None),
        }
    }

    fn inspect(image: Image, stored: &Source) -> Result<Summary> {
        if let Some(woke) = wait(&image.key) {
            return Err(Error::failed(woke));
        }
        let root = stored.manifest(None)?;
        let details = match image.key.as_str() {
            "many-details" => (0..50_000).map(|i| (format!("detail {i}"), "x".repeat(100))).collect(),
            _ => vec![("\x1b]0;title\x07key".into(), "value\nferry: fake line".into())],
        };
        Ok(Summary { digest: root.digest, media_type: root.media_type, size: 0, platforms: Vec::new(), details })
    }
}

export_driver!(Hostile);
