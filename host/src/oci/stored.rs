//! Stored images read wherever they are: an OCI layout directory, or the layout inside an
//! uncompressed thick bundle read in place, where each blob is a byte range of the archive.

use super::{Descriptor, Digest, MAX_DOCUMENT, REF_NAME, children, is_document};
use anyhow::{Context, Result, bail};
use std::collections::HashSet;
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
    /// Each digest is read and walked once, however many times and under whatever sizes it is
    /// listed; a size that disagrees with the stored blob is an error.
    fn graph(&self, root: &Descriptor) -> Result<Vec<Descriptor>> {
        const MAX_DEPTH: usize = 8;
        fn visit(
            stored: &(impl Stored + ?Sized),
            d: &Descriptor,
            depth: usize,
            seen: &mut HashSet<Digest>,
            out: &mut Vec<Descriptor>,
        ) -> Result<()> {
            if !seen.insert(d.digest.clone()) {
                return Ok(());
            }
            if depth > MAX_DEPTH {
                bail!("{}: manifests nest deeper than {MAX_DEPTH}", d.digest);
            }
            let blob = stored
                .blob(&d.digest)
                .map_err(|_| anyhow::anyhow!("blob {} is missing from {}", d.digest, stored.location()))?;
            if blob.size != d.size {
                bail!("blob {} is {} bytes, its descriptor says {}", d.digest, blob.size, d.size);
            }
            if is_document(&d.media_type) {
                let bytes = stored.read_blob(&d.digest, MAX_DOCUMENT)?;
                for child in children(&bytes).with_context(|| format!("manifest {}", d.digest))? {
                    visit(stored, &child, depth + 1, seen, out)?;
                }
            }
            out.push(d.clone());
            Ok(())
        }
        let mut out = Vec::new();
        visit(self, root, 0, &mut HashSet::new(), &mut out)?;
        Ok(out)
    }
}

/// A blob as a byte range of a file, read with positioned reads, so that any number of readers
/// share one open file.
#[derive(Clone)]
pub struct BlobFile {
    file: Arc<File>,
    offset: u64,
    pub size: u64,
}

impl BlobFile {
    pub fn new(file: Arc<File>, offset: u64, size: u64) -> Self {
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
