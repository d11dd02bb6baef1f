//! What a WebAssembly binary is, told by its first eight bytes: the `\0asm` magic, then a version
//! and a layer. The guest cannot compile a component (the host does, later, pinned by digest);
//! the preamble is enough to refuse a core module or a file that is no Wasm at all at export.

/// Bytes [`check`] needs.
pub const LEN: u32 = 8;

const MAGIC: [u8; 4] = *b"\0asm";
/// Version 0x0d of the component binary format, layer 1 (a component, not a core module).
const COMPONENT: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];
/// Version 1 of the core module format, layer 0.
const CORE_MODULE: [u8; 4] = [0x01, 0x00, 0x00, 0x00];

/// Refuses `bytes` (the start of a file or blob) unless they begin a WebAssembly component; the
/// message says what they are instead.
pub fn check(bytes: &[u8]) -> Result<(), String> {
    let (magic, version) = match bytes {
        [m0, m1, m2, m3, v0, v1, v2, v3, ..] => ([*m0, *m1, *m2, *m3], [*v0, *v1, *v2, *v3]),
        _ => return Err(format!("is {} bytes long, too short for a WebAssembly component", bytes.len())),
    };
    if magic != MAGIC {
        return Err("is not WebAssembly (it does not start with \\0asm)".into());
    }
    match version {
        COMPONENT => Ok(()),
        CORE_MODULE => Err("is a WebAssembly core module, not a component: build it for wasm32-wasip2, \
             or make a component of it with `wasm-tools component new`"
            .into()),
        other => {
            Err(format!("is WebAssembly of unknown version and layer {}, not a component (0d 00 01 00)", hex(&other)))
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_pass_and_everything_else_is_named() {
        assert_eq!(check(b"\0asm\x0d\x00\x01\x00\x07\x10"), Ok(()));
        assert_eq!(check(b"\0asm\x0d\x00\x01\x00"), Ok(()));
        let core = check(b"\0asm\x01\x00\x00\x00\x01\x04").unwrap_err();
        assert!(core.contains("core module") && core.contains("wasm32-wasip2"), "{core}");
        assert!(core.contains("wasm-tools component new"), "{core}");
        let unknown = check(b"\0asm\x0c\x00\x01\x00").unwrap_err();
        assert!(unknown.contains("0c 00 01 00"), "{unknown}");
        assert!(check(b"\x7fELF\x02\x01\x01\x00").unwrap_err().contains("not WebAssembly"));
        assert!(check(b"\0asm").unwrap_err().contains("4 bytes long"));
        assert!(check(b"").unwrap_err().contains("0 bytes long"));
    }
}
