//! ferry: a CNAB runtime whose image-type drivers are sandboxed WebAssembly components.
//!
//! The command-line program in `main.rs` only parses flags and prints; everything it does is a
//! call into this library.

pub mod archive;
pub mod authoring;
pub mod bundle;
pub mod bundle_drivers;
pub mod cleanup;
pub mod config;
pub mod driver;
pub mod export;
pub mod files;
pub mod http;
pub mod images;
pub mod install;
pub mod mapping;
pub mod oci;
pub mod opened;
pub mod parallel;
pub mod published;
pub mod reference;
pub mod registry;
pub mod relocate;
pub mod sandbox;
pub mod thick;
pub mod transfer;
pub mod untrusted;
