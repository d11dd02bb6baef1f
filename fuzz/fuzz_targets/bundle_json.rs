//! bundle.json and the other JSON documents a bundle carries: schema and prose validation, the
//! model, the duplicate-key check, the relocation mapping and index.json parsers.
//!
//! Beyond "no panic": a bundle that `from_bytes` accepts has no problems and no duplicate key,
//! and a document with a duplicate key or a syntax error always has problems.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    let problems = ferry::bundle::validate(data);
    let unique = ferry::bundle::json::check_duplicate_keys(data);
    if unique.is_err() {
        assert!(!problems.is_empty(), "a duplicate key or bad syntax, but validate found nothing");
    }
    if unique.is_ok() {
        assert!(serde_json::from_slice::<serde_json::Value>(data).is_ok(), "the duplicate check passed non-JSON");
    }
    for p in &problems {
        let _ = p.to_string();
    }
    if let Ok(bundle) = ferry::bundle::Bundle::from_bytes(data.to_vec(), "fuzz") {
        assert!(problems.is_empty(), "from_bytes accepted a bundle with problems: {problems:?}");
        assert!(unique.is_ok(), "from_bytes accepted a duplicate key");
        assert_eq!(bundle.bytes(), data);
        for (_, image) in bundle.all_images() {
            let _ = image.image_type();
            let _ = image.location();
        }
        let _ = serde_json::to_vec(&bundle.doc).unwrap();
    }
    let _ = ferry::bundle::json::from_slice_strict::<BTreeMap<String, String>>(data);
    let _ = ferry::archive::parse_index(Some(data));
});
