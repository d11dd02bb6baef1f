//! Component bytes, checked before anything compiles them.

use crate::oci::Digest;
use anyhow::{Result, bail};
use std::borrow::Cow;
use wasmparser::{Parser, Payload};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The largest function body ferry compiles: Cranelift's time and memory grow faster than the
/// size of one function (256 KiB: about 0.6 s; 1 MiB: 2 s and 150 MiB), and the largest
/// function of a built-in driver is 12 KB.
pub const MAX_FUNCTION: u64 = 256 << 10;

const COMPONENT_PREAMBLE: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
const CORE_MODULE_PREAMBLE: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

/// What a component imports and exports, by name.
pub struct Shape {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

/// Component bytes whose digest is known to be right.
pub struct VerifiedComponent {
    bytes: Cow<'static, [u8]>,
    digest: Digest,
}

impl VerifiedComponent {
    /// Bytes that must have digest `expected` (a built-in driver, a component a bundle pins).
    pub fn pinned(bytes: impl Into<Cow<'static, [u8]>>, expected: &Digest) -> Result<Self> {
        let bytes = bytes.into();
        let digest = Digest::of(&bytes);
        if digest != *expected {
            bail!("component digest mismatch: pinned {expected}, the bytes are {digest}");
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

    /// What the component imports and exports, read from its bytes; refused before anything
    /// compiles it when it is not a component, is larger than `max` bytes or holds a function
    /// larger than [`MAX_FUNCTION`] (Cranelift's time and memory grow with both).
    pub fn survey(&self, max: u64) -> Result<Shape> {
        match self.bytes.get(..8) {
            Some(p) if p == COMPONENT_PREAMBLE => {}
            Some(p) if p == CORE_MODULE_PREAMBLE => bail!(
                "this is a core WebAssembly module, not a component: build it for wasm32-wasip2 (or wrap \
                 the module with `wasm-tools component new`)"
            ),
            Some(p) if p[..4] == COMPONENT_PREAMBLE[..4] => {
                bail!("unsupported WebAssembly binary version {:02x?}", &p[4..])
            }
            _ => bail!("not a WebAssembly component (it does not start with the wasm magic bytes)"),
        }
        if self.bytes.len() as u64 > max {
            bail!("the component is {} bytes, more than the {max} ferry compiles", self.bytes.len());
        }
        let mut shape = Shape { imports: Vec::new(), exports: Vec::new() };
        // Nesting depth: only the outer component's imports and exports are its own.
        let mut depth = 0usize;
        for payload in Parser::new(0).parse_all(&self.bytes) {
            let invalid = |e: wasmparser::BinaryReaderError| anyhow::anyhow!("not a valid WebAssembly component: {e}");
            match payload.map_err(invalid)? {
                Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
                Payload::End(_) => depth = depth.saturating_sub(1),
                Payload::ComponentImportSection(imports) if depth == 0 => {
                    for import in imports {
                        shape.imports.push(import.map_err(invalid)?.name.name.to_owned());
                    }
                }
                Payload::ComponentExportSection(exports) if depth == 0 => {
                    for export in exports {
                        shape.exports.push(export.map_err(invalid)?.name.name.to_owned());
                    }
                }
                Payload::CodeSectionEntry(body) if body.range().len() as u64 > MAX_FUNCTION => bail!(
                    "it has a function of {} bytes, more than the {MAX_FUNCTION} ferry compiles \
                     (at offset {} of the component)",
                    body.range().len(),
                    body.range().start
                ),
                _ => {}
            }
        }
        Ok(shape)
    }

    /// Compiles the component; call [`VerifiedComponent::survey`] first.
    pub(super) fn compile(&self, engine: &Engine) -> Result<Component> {
        Component::new(engine, &self.bytes).map_err(|e| anyhow::anyhow!("not a valid WebAssembly component: {e:#}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The limit leaves real drivers far more room than they use.
    #[test]
    fn built_in_drivers_functions_are_far_below_the_limit() {
        for component in crate::driver::builtin_components().unwrap() {
            component.survey(crate::driver::MAX_DRIVER).unwrap();
            let largest = Parser::new(0)
                .parse_all(&component.bytes)
                .filter_map(|p| match p.unwrap() {
                    Payload::CodeSectionEntry(body) => Some(body.range().len() as u64),
                    _ => None,
                })
                .max()
                .unwrap();
            assert!(largest * 8 < MAX_FUNCTION, "{}: a function of {largest} bytes", component.digest());
            eprintln!("{}: largest function {largest} bytes", component.digest());
        }
    }
}
