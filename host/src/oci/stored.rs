//! Stored images read wherever they are: an OCI layout directory, or the layout inside an
//! uncompressed thick bundle read in place, where each blob is a byte range of the archive.

use super::{Descriptor, Digest, MAX_DOCUMENT, REF_NAME, children, is_document};
use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// Read access to a store of blobs and its index.
pub trait Stored: Send + Sync {
    /// Where the blobs are, for messages.
    fn location(&self) -> String;

    /// Blob `digest`, not yet read.
    fn blob(&self, digest: &Digest) -> io::Result<BlobFile>;

    /// The index's descriptors, in order.
    fn entries(&self) -> Result<Vec<Descriptor>>;

    fn has_blob(&self, digest: &Digest) -> bool {
        self.blob(digest).is_ok()
    }

    /// The size of blob `digest`, without reading it.
    fn blob_size(&self, digest: &Digest) -> io::Result<u64> {
        Ok(self.blob(digest)?.size)
    }

    /// The whole blob, refused if it is larger than `cap` bytes or if its bytes do not match
    /// its digest (a store read in place was not hashed when it was opened).
    fn read_blob(&self, digest: &Digest, cap: u64) -> Result<Vec<u8>> {
        let blob = self.blob(digest).with_context(|| format!("blob {digest} in {}", self.location()))?;
        if blob.size > cap {
            bail!("blob {digest} is {} bytes, more than the {cap} bytes allowed here", blob.size);
        }
        let mut bytes = Vec::with_capacity(blob.size as usize);
        blob.reader().read_to_end(&mut bytes)?;
        let actual = Digest::of(&bytes);
        if actual != *digest {
            bail!("blob {digest} in {} holds content with digest {actual}", self.location());
        }
        Ok(bytes)
    }

    /// The index entry whose ref.name annotation is `name`.
    fn find(&self, name: &str) -> Result<Option<Descriptor>> {
        Ok(self.entries()?.into_iter().find(|d| d.annotations.get(REF_NAME).is_some_and(|n| n == name)))
    }

    /// `root` and everything it refers to, each once, children before the documents that name
    /// them: copied in this order, a destination never holds a manifest whose blobs are missing.
    /// Each digest is read and walked once, however many times it is listed; every listing must
    /// give the stored blob's size, and a digest listed both as a manifest or index and as
    /// anything else is refused (walked once as a leaf, its own blobs would be left behind).
    fn graph(&self, root: &Descriptor) -> Result<Vec<Descriptor>> {
        const MAX_DEPTH: usize = 8;
        fn visit(
            stored: &(impl Stored + ?Sized),
            d: &Descriptor,
            depth: usize,
            seen: &mut HashMap<Digest, (u64, bool)>,
            out: &mut Vec<Descriptor>,
        ) -> Result<()> {
            let document = is_document(&d.media_type);
            if let Some(&(size, was_document)) = seen.get(&d.digest) {
                if size != d.size {
                    bail!("blob {} is listed as {} bytes and as {size}", d.digest, d.size);
                }
                if was_document != document {
                    bail!(
                        "blob {} is listed both as a manifest or index and as other content ({})",
                        d.digest,
                        d.media_type
                    );
                }
                return Ok(());
            }
            seen.insert(d.digest.clone(), (d.size, document));
            if depth > MAX_DEPTH {
                bail!("{}: manifests nest deeper than {MAX_DEPTH}", d.digest);
            }
            let size = stored
                .blob_size(&d.digest)
                .map_err(|_| anyhow::anyhow!("blob {} is missing from {}", d.digest, stored.location()))?;
            if size != d.size {
                bail!("blob {} is {size} bytes, its descriptor says {}", d.digest, d.size);
            }
            if document {
                let bytes = stored.read_blob(&d.digest, MAX_DOCUMENT)?;
                for child in children(&bytes).with_context(|| format!("manifest {}", d.digest))? {
                    visit(stored, &child, depth + 1, seen, out)?;
                }
            }
            out.push(d.clone());
            Ok(())
        }
        let mut out = Vec::new();
        visit(self, root, 0, &mut HashMap::new(), &mut out)?;
        Ok(out)
    }
}

/// Bytes read at any position without a shared cursor: a file, or the stream inside a file
/// seen through an index of where its pieces are.
pub trait ReadAt: Send + Sync {
    /// Reads from `position` as `pread` does: fewer bytes than asked only where the bytes end.
    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize>;
}

impl ReadAt for File {
    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, position)
    }
}

/// A blob as a byte range of a file (or of a stream inside one), read with positioned reads, so
/// that any number of readers share one open file.
#[derive(Clone)]
pub struct BlobFile {
    file: Arc<dyn ReadAt>,
    offset: u64,
    pub size: u64,
}

impl BlobFile {
    pub fn new(file: Arc<dyn ReadAt>, offset: u64, size: u64) -> Self {
        BlobFile { file, offset, size }
    }

    /// A whole file.
    pub fn whole(file: File) -> io::Result<Self> {
        let size = file.metadata()?.len();
        Ok(BlobFile { file: Arc::new(file), offset: 0, size })
    }

    /// `size` bytes from `offset` of this blob, as a blob of its own.
    pub fn slice(&self, offset: u64, size: u64) -> BlobFile {
        BlobFile {
            file: self.file.clone(),
            offset: self.offset + offset,
            size: size.min(self.size - offset.min(self.size)),
        }
    }

    /// Reads from `position` of the blob until `buf` is full or the blob ends.
    pub fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize> {
        let end = (position.saturating_add(buf.len() as u64)).min(self.size);
        let mut filled = 0;
        while position + (filled as u64) < end {
            let want = (end - position) as usize;
            match self.file.read_at(&mut buf[filled..want], self.offset + position + filled as u64)? {
                0 => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the blob ends early")),
                n => filled += n,
            }
        }
        Ok(filled)
    }

    /// A reader over the blob from its start.
    pub fn reader(&self) -> BlobReader {
        BlobReader { blob: self.clone(), position: 0 }
    }
}

pub struct BlobReader {
    blob: BlobFile,
    position: u64,
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.blob.read_at(buf, self.position)?;
        self.position += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Layout;
    use serde_json::json;

    use crate::oci::media_types::{
        OCI_CONFIG as CONFIG, OCI_INDEX as INDEX, OCI_LAYER_TAR as LAYER, OCI_MANIFEST as MANIFEST,
    };

    fn put(layout: &Layout, media_type: &str, bytes: &[u8]) -> Descriptor {
        Descriptor::new(media_type, layout.put_bytes(bytes).unwrap(), bytes.len() as u64)
    }

    fn document(value: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&value).unwrap()
    }

    fn manifest(config: &Descriptor, layers: &[&Descriptor]) -> Vec<u8> {
        document(json!({ "schemaVersion": 2, "mediaType": MANIFEST, "config": config, "layers": layers }))
    }

    // Found writing the fuzz targets' graph check (fuzz/fuzz_targets/common): the manifest was
    // walked as a leaf where it was first listed as a layer, its second listing as a manifest
    // skipped, its config and layer never reached: a relocation would copy a manifest without
    // its blobs.
    #[test]
    fn a_manifest_also_listed_as_a_layer_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::create(tmp.path()).unwrap();
        let config = put(&layout, CONFIG, b"{}");
        let layer = put(&layout, LAYER, b"layer");
        let inner = put(&layout, MANIFEST, &manifest(&config, &[&layer]));
        let as_layer = Descriptor::new(LAYER, inner.digest.clone(), inner.size);
        let other_config = put(&layout, CONFIG, b"{\"a\":1}");
        let outer = put(&layout, MANIFEST, &manifest(&other_config, &[&as_layer]));
        let root = put(&layout, INDEX, &document(json!({ "schemaVersion": 2, "manifests": [outer, inner] })));
        let err = layout.graph(&root).map(|out| out.iter().map(|d| d.digest.to_string()).collect::<Vec<_>>());
        let err = err.expect_err("a walk that leaves the inner manifest's layer behind");
        assert!(err.to_string().contains("listed both as a manifest or index and as other content"), "{err}");

        // Listed only as a manifest, the same content is walked whole.
        let root = put(&layout, INDEX, &document(json!({ "schemaVersion": 2, "manifests": [inner] })));
        let out = layout.graph(&root).unwrap();
        assert!(out.iter().any(|d| d.digest == layer.digest), "{out:?}");
    }

    // Found by fuzzing (fuzz/ oci_graph, minimised: a manifest listing one blob as its config at
    // the right size and as a layer at size 0): only the first listing of a digest was checked
    // against the stored size; a second one with another size was accepted, and copied as it is.
    #[test]
    fn a_blob_listed_under_a_second_size_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::create(tmp.path()).unwrap();
        let config = put(&layout, CONFIG, b"{}");
        let layer = put(&layout, LAYER, b"layer");
        let mut wrong = layer.clone();
        wrong.size += 1;
        let a = put(&layout, MANIFEST, &manifest(&config, &[&layer]));
        let b = put(&layout, MANIFEST, &manifest(&config, &[&wrong, &layer]));
        let root = put(&layout, INDEX, &document(json!({ "schemaVersion": 2, "manifests": [a, b] })));
        let err = layout.graph(&root).unwrap_err();
        assert!(err.to_string().contains("is listed as 6 bytes and as 5"), "{err}");
    }
}
