//! Checks shared by the targets.

use ferry::oci::{Descriptor, MAX_DOCUMENT, Stored, children, is_document};
use std::collections::{HashMap, HashSet};

/// What `graph(root)` returned is well formed: each digest once, the root last, every blob
/// stored with the size it is listed with; and it is closed: every listing met on the way from
/// the root (however many times, under whatever media type or size a digest is listed) is in it,
/// with that size, before the document that lists it, and every listing as a manifest or index
/// has its own children in it too. A relocation that copies `out` in order therefore never
/// leaves a manifest whose blobs are missing.
pub fn check_graph(stored: &dyn Stored, root: &Descriptor, out: &[Descriptor]) {
    assert_eq!(out.last().map(|d| &d.digest), Some(&root.digest), "the root comes last");
    let mut position = HashMap::new();
    for (i, d) in out.iter().enumerate() {
        assert!(position.insert(d.digest.clone(), i).is_none(), "{} is listed twice", d.digest);
    }
    let mut walked = HashSet::new();
    let mut queue = vec![(root.clone(), None::<usize>)];
    while let Some((d, parent)) = queue.pop() {
        let Some(&at) = position.get(&d.digest) else {
            panic!("{} ({}) is listed but missing from the graph", d.digest, d.media_type)
        };
        if let Some(parent) = parent {
            assert!(at < parent, "{} comes after {} that lists it", d.digest, out[parent].digest);
        }
        let blob = stored.blob(&d.digest).expect("every blob of the graph is stored");
        assert_eq!(blob.size, d.size, "{} is stored with {} bytes but listed as {}", d.digest, blob.size, d.size);
        if is_document(&d.media_type) && walked.insert(d.digest.clone()) {
            let bytes = stored.read_blob(&d.digest, MAX_DOCUMENT).expect("a document of the graph reads");
            let kids = children(&bytes).expect("a document of the graph parses");
            queue.extend(kids.into_iter().map(|k| (k, Some(at))));
        }
    }
}
