//! The drivers compiled into the `ferry` binary, built from `plugins/` by `build.rs`.

use super::VerifiedComponent;
use crate::oci::Digest;

struct Builtin {
    name: &'static str,
    bytes: &'static [u8],
    /// The sha256 `build.rs` computed; checked again before the bytes are compiled.
    sha256: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/builtin_drivers.rs"));

/// Every built-in driver component, its digest checked.
pub fn builtin_components() -> anyhow::Result<Vec<VerifiedComponent>> {
    BUILTIN
        .iter()
        .map(|b| {
            let digest: Digest = format!("sha256:{}", b.sha256).parse()?;
            VerifiedComponent::pinned(b.bytes, &digest)
                .map_err(|e| anyhow::anyhow!("built-in driver {}: {e:#}", b.name))
        })
        .collect()
}
