//! OCI content: digests, descriptors and manifests, and image layouts on disk.

mod descriptor;
mod digest;
mod layout;

pub use descriptor::{Descriptor, MAX_DOCUMENT, REF_NAME, children, is_document, media_type_of};
pub use digest::{Digest, DigestError, HashingWriter};
pub use layout::{BlobWriter, Layout, PendingFile};
