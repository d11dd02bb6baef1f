//! Installing bundles: the CNAB runtime contract around one run of the invocation image,
//! recorded as claims.

pub mod action;
pub mod claim;
pub mod credentials;
pub mod engine;
pub mod executor;
pub mod outputs;
pub mod parameters;
pub mod staging;
pub mod store;
pub mod wasi;
