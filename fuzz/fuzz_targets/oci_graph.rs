//! OCI documents in an image layout, and the graph walk over them.
//!
//! Input: up to 8 documents separated by NUL bytes. In document i, `@N` (N < i, one digit) is
//! replaced by the digest of document N as stored, and `#N` by its size, so that manifests can
//! name each other without the fuzzer forging sha256. Every document is stored; the index holds
//! the last document (with the media type its shape implies) and every descriptor of any
//! document that parses as an index.json. Then `graph()` is walked from every index entry.
//!
//! Beyond "no panic": what the walk returns is well formed and closed (`common::check_graph`:
//! each digest once, the root last, everything any walked document lists before it, at the size
//! it is stored with); descriptors and digests round-trip.

#![no_main]

mod common;

use ferry::oci::{Descriptor, Digest, Layout, Stored};
use libfuzzer_sys::fuzz_target;

fn substitute(doc: &[u8], stored: &[(Digest, u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(doc.len());
    let mut i = 0;
    while i < doc.len() {
        let target = doc.get(i + 1).filter(|b| b.is_ascii_digit()).map(|b| (b - b'0') as usize);
        match (doc[i], target.and_then(|n| stored.get(n))) {
            (b'@', Some((digest, _))) => out.extend_from_slice(digest.to_string().as_bytes()),
            (b'#', Some((_, size))) => out.extend_from_slice(size.to_string().as_bytes()),
            _ => {
                out.push(doc[i]);
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::create(dir.path()).unwrap();
    let mut stored: Vec<(Digest, u64)> = Vec::new();
    let mut documents = Vec::new();
    for raw in data.split(|&b| b == 0).take(8) {
        let doc = substitute(raw, &stored);
        let digest = layout.put_bytes(&doc).unwrap();
        assert_eq!(digest, Digest::of(&doc));
        if let Ok(text) = std::str::from_utf8(&doc) {
            if let Ok(parsed) = text.trim().parse::<Digest>() {
                assert_eq!(parsed.to_string(), text.trim());
                assert_eq!(parsed.to_string().parse::<Digest>().unwrap(), parsed);
            }
        }
        if let Ok(kids) = ferry::oci::children(&doc) {
            let again = serde_json::to_vec(&kids).unwrap();
            assert_eq!(serde_json::from_slice::<Vec<Descriptor>>(&again).unwrap(), kids, "descriptors round-trip");
        }
        stored.push((digest, doc.len() as u64));
        documents.push(doc);
    }
    let (Some(last), Some((digest, size))) = (documents.last(), stored.last()) else { return };
    let media_type = ferry::oci::media_type_of(last).unwrap_or_else(|| "application/octet-stream".into());
    layout.add_to_index(Descriptor::new(media_type, digest.clone(), *size)).unwrap();
    for doc in &documents {
        if let Ok(descriptors) = ferry::archive::parse_index(Some(doc)) {
            for d in descriptors.into_iter().take(16) {
                layout.add_to_index(d).unwrap();
            }
        }
    }
    for root in layout.entries().unwrap() {
        if let Ok(out) = layout.graph(&root) {
            common::check_graph(&layout, &root, &out);
        }
    }
});
