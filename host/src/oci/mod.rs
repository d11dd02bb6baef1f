//! OCI content: digests, descriptors and manifests, and image layouts on disk or
//! inside a thick bundle.

mod descriptor;
mod digest;
mod layout;
pub mod media_types;
mod stored;

pub use descriptor::{Descriptor, MAX_DOCUMENT, REF_NAME, children, is_document, media_type_of};
pub use digest::{Digest, DigestError, HashingWriter};
pub use layout::{BlobWriter, Layout, PendingDir, PendingFile, is_reserved_name, open_regular};
pub use stored::{BlobFile, BlobReader, ReadAt, Stored};
