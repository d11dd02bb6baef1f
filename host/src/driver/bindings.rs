//! Host bindings for each released version of `wit/`. A released interface is frozen; a new
//! version gets a module of its own beside the old one, so drivers built against either load.

pub mod since_v0_1_0 {
    wasmtime::component::bindgen!({
        world: "image-driver",
        path: "../wit/v0.1.0",
        imports: { default: trappable },
        trappable_error_type: { "ferry:driver/types.error" => crate::driver::host::HostError },
        with: {
            "ferry:driver/host.source": crate::driver::source::SourceHandle,
            "ferry:driver/host.store": crate::driver::store::StoreHandle,
            "ferry:driver/host.destination": crate::driver::destination::DestinationHandle,
        },
    });
}

/// The interface version this host implements, as drivers name it in their exports.
pub const INTERFACE: &str = "ferry:driver/driver@0.1.0";

#[cfg(test)]
mod tests {
    /// A released interface never changes: drivers built against it must keep loading. A change
    /// goes into a new version directory (wit/README.md).
    #[test]
    fn released_interfaces_are_unchanged() {
        use sha2::Digest;
        let wit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
        let pinned = std::fs::read_to_string(wit.join("released.sha256")).unwrap();
        for line in pinned.lines() {
            let (hash, file) = line.split_once("  ").expect("`HASH  FILE` lines");
            let bytes = std::fs::read(wit.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(hex::encode(sha2::Sha256::digest(&bytes)), hash, "released {file} changed");
        }
    }
}
