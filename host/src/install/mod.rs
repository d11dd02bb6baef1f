//! Installing bundles: the CNAB runtime contract around one run of the invocation image,
//! recorded as claims.

pub mod claim;
pub mod parameters;
pub mod store;
