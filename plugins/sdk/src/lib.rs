//! Guest SDK for ferry image-type drivers.
//!
//! A driver is a `wasm32-wasip2` component that implements the `ferry:driver/driver` interface of
//! `wit/latest/driver.wit`. With this crate a driver is one `impl Driver for T` and one
//! `export_driver!(T);`; the types, host handles and helpers below are everything else it needs.
//! Bulk bytes stay in the host: a driver decides what to copy and the host copies it.
//!
//! [`artifact`] reads OCI manifests and stores an image as a single-layer artifact; [`names`] makes
//! file names and tags from image locations and references.
//!
//! Two conventions the generated types do not spell out. `Summary::size` is the bytes of every
//! blob the stored image is made of, each counted once, its root manifest included: the SIZE
//! `ferry inspect` shows. Error messages say what is wrong inside the image (a blob, a digest, a
//! file), not which image: ferry names the driver, the operation and the image in every error.

wit_bindgen::generate!({
    path: "../../wit/latest",
    world: "image-driver",
    pub_export_macro: true,
    export_macro_name: "export_driver",
    default_bindings_module: "ferry_driver_sdk",
});

pub mod artifact;
pub mod names;

use std::fmt;

pub use exports::ferry::driver::driver::Guest as Driver;
pub use ferry::driver::host::{
    Destination, DestinationKind, Level, Source, SourceKind, Store, open_destination, progress,
};
pub use ferry::driver::types::{
    Descriptor, Document, DriverInfo, Error, Image, Summary, TarEntry, TarEntryKind, TarFile, Transfer,
};

/// What every driver operation returns.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn failed(message: impl fmt::Display) -> Self {
        Error::Failed(message.to_string())
    }
    pub fn invalid(message: impl fmt::Display) -> Self {
        Error::InvalidContent(message.to_string())
    }
    pub fn unsupported(message: impl fmt::Display) -> Self {
        Error::Unsupported(message.to_string())
    }
    pub fn not_found(message: impl fmt::Display) -> Self {
        Error::NotFound(message.to_string())
    }
    /// This error about `what` (a blob, a manifest, a file) of the image: invalid-content and
    /// unsupported messages get `what` before them; the host's errors already say what they are
    /// about. The image itself is not named: ferry names it in every error of an operation.
    pub fn within(self, what: &str) -> Self {
        let message = format!("{what}: {}", self.message());
        match self {
            Error::InvalidContent(_) => Error::InvalidContent(message),
            Error::Unsupported(_) => Error::Unsupported(message),
            other => other,
        }
    }
    /// The message without its kind.
    pub fn message(&self) -> &str {
        match self {
            Error::Unsupported(m)
            | Error::InvalidContent(m)
            | Error::Denied(m)
            | Error::NotFound(m)
            | Error::Transient(m)
            | Error::Failed(m) => m,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::failed(e)
    }
}

/// Writes a line to the operator's log.
pub fn log(level: Level, message: impl AsRef<str>) {
    ferry::driver::host::log(level, message.as_ref());
}

/// `info!("copied {n} blobs")`: logs at info level.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log($crate::Level::Info, format!($($arg)*)) };
}

/// `debug!(...)`: logs at debug level.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log($crate::Level::Debug, format!($($arg)*)) };
}

/// `warn!(...)`: logs at warn level.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log($crate::Level::Warn, format!($($arg)*)) };
}

impl Descriptor {
    /// A descriptor without artifact type or annotations.
    pub fn new(media_type: impl Into<String>, digest: impl Into<String>, size: u64) -> Self {
        Descriptor {
            media_type: media_type.into(),
            digest: digest.into(),
            size,
            artifact_type: None,
            annotations: Vec::new(),
        }
    }
}

impl Document {
    /// The descriptor of this document.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(self.media_type.clone(), self.digest.clone(), self.bytes.len() as u64)
    }
}
