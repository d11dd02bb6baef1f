//! Driver component bytes, checked before anything compiles them.

use crate::oci::Digest;
use anyhow::{Result, bail};
use std::borrow::Cow;
use wasmtime::Engine;
use wasmtime::component::Component;

const COMPONENT_PREAMBLE: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
const CORE_MODULE_PREAMBLE: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

/// Component bytes whose digest is known to be right.
pub struct VerifiedComponent {
    bytes: Cow<'static, [u8]>,
    digest: Digest,
}

impl VerifiedComponent {
    /// Bytes that must have digest `expected` (a built-in driver, a driver pinned in a bundle).
    pub fn pinned(bytes: impl Into<Cow<'static, [u8]>>, expected: &Digest) -> Result<Self> {
        let bytes = bytes.into();
        let digest = Digest::of(&bytes);
        if digest != *expected {
            bail!("driver component digest mismatch: pinned {expected}, the bytes are {digest}");
        }
        Ok(VerifiedComponent { bytes, digest })
    }

    /// Bytes the operator named themselves, such as a file given on the command line.
    pub fn local(bytes: Vec<u8>) -> Self {
        let digest = Digest::of(&bytes);
        VerifiedComponent { bytes: bytes.into(), digest }
    }

    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    pub(super) fn compile(&self, engine: &Engine) -> Result<Component> {
        match self.bytes.get(..8) {
            Some(p) if p == COMPONENT_PREAMBLE => {}
            Some(p) if p == CORE_MODULE_PREAMBLE => bail!(
                "this is a core WebAssembly module, not a component: build the driver for \
                 wasm32-wasip2 (or wrap the module with `wasm-tools component new`)"
            ),
            Some(p) if p[..4] == COMPONENT_PREAMBLE[..4] => {
                bail!("unsupported WebAssembly binary version {:02x?}", &p[4..])
            }
            _ => bail!("not a WebAssembly component (it does not start with the wasm magic bytes)"),
        }
        Component::new(engine, &self.bytes).map_err(|e| anyhow::anyhow!("not a valid WebAssembly component: {e:#}"))
    }
}
