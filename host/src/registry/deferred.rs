//! Registry blobs an export has taken into its store without fetching them yet. A driver's
//! `store.copy-blob` from a registry only names the blob; the host fetches it while writing the
//! archive, straight into its place there, every byte hashed on the way, and the archive is
//! final only once every blob matched its digest. So each byte is written once, the blobs of
//! all images are fetched in parallel, and the archive keeps its order (blobs by digest), which
//! is known only once every driver has named its blobs.

use super::Registry;
use crate::oci::Digest;
use oci_client::Reference;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where a deferred blob is fetched from, and what bounds the fetch.
#[derive(Clone)]
pub struct Remote {
    /// The size the manifests fetched from its repository declare: the most that is read.
    pub size: u64,
    pub registry: Arc<Registry>,
    /// The repository the driver copied it from.
    pub reference: Reference,
    /// The image whose driver named it first, as messages name it: `key (reference)`.
    pub image: String,
    /// The limit of the driver operation that named it (`--driver-timeout`): the fetch, moved
    /// out of the operation, keeps its bound.
    pub timeout: Duration,
    /// Called with the bytes received, for the operator's progress line.
    pub progress: Arc<dyn Fn(u64) + Send + Sync>,
}

/// Blobs named but not yet fetched, by digest; the first repository that named one keeps it.
#[derive(Default)]
pub struct Deferred {
    blobs: Mutex<BTreeMap<Digest, Remote>>,
}

impl Deferred {
    /// Takes `remote` as where blob `digest` comes from, unless a repository was noted for it
    /// already; returns the size of the blob as noted.
    pub fn note(&self, digest: &Digest, remote: Remote) -> u64 {
        self.blobs.lock().unwrap().entry(digest.clone()).or_insert(remote).size
    }

    pub fn size(&self, digest: &Digest) -> Option<u64> {
        self.blobs.lock().unwrap().get(digest).map(|r| r.size)
    }

    pub fn get(&self, digest: &Digest) -> Option<Remote> {
        self.blobs.lock().unwrap().get(digest).cloned()
    }

    /// No longer deferred: fetched into the store after all (a manifest a graph walk reads).
    pub fn remove(&self, digest: &Digest) {
        self.blobs.lock().unwrap().remove(digest);
    }

    /// Every deferred blob, by digest.
    pub fn all(&self) -> BTreeMap<Digest, Remote> {
        self.blobs.lock().unwrap().clone()
    }
}
