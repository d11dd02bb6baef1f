//! Host bindings for each released version of `wit/`. A released interface is frozen; a new
//! version gets a module of its own beside the old one, so drivers built against either load.

pub mod since_v0_1_0 {
    wasmtime::component::bindgen!({
        world: "image-driver",
        path: "../wit",
        imports: { default: trappable },
        trappable_error_type: { "ferry:driver/types.error" => crate::driver::host::HostError },
        with: {
            "ferry:driver/host.source": crate::driver::host::SourceHandle,
            "ferry:driver/host.store": crate::driver::host::StoreHandle,
            "ferry:driver/host.destination": crate::driver::destination::DestinationHandle,
        },
    });
}

/// The interface version this host implements, as drivers name it in their exports.
pub const INTERFACE: &str = "ferry:driver/driver@0.1.0";
