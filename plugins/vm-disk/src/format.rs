//! A disk image's format and virtual size, told from its headers.
//!
//! A few small reads at known offsets are enough, so the disk never enters the guest: the caller
//! passes a `read(offset, len)` that asks the host for those bytes (fewer at the end of the file).

use ferry_driver_sdk::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Qcow2,
    Qcow,
    Raw,
    Vmdk,
    Vhdx,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Qcow2 => "qcow2",
            Format::Qcow => "qcow",
            Format::Raw => "raw",
            Format::Vmdk => "vmdk",
            Format::Vhdx => "vhdx",
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Disk {
    pub format: Format,
    /// Bytes the guest sees.
    pub virtual_size: u64,
}

const QCOW_MAGIC: &[u8] = b"QFI\xfb";
const VMDK_MAGIC: &[u8] = b"KDMV";
const VMDK_DESCRIPTOR: &[u8] = b"# Disk DescriptorFile";
const VHDX_MAGIC: &[u8] = b"vhdxfile";
const VHD_MAGIC: &[u8] = b"conectix";
const VDI_MAGIC: &[u8] = &0xbeda_107f_u32.to_le_bytes();
const VDI_MAGIC_AT: usize = 0x40;

/// VHDX: the region table's place and size, and the GUIDs of the metadata region and of its
/// Virtual Disk Size item.
const VHDX_REGION_TABLE: u64 = 0x30000;
const VHDX_TABLE_SIZE: u32 = 0x10000;
const VHDX_METADATA_REGION: [u8; 16] =
    guid(0x8B7C_A206, 0x4790, 0x4B9A, [0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F, 0x88, 0x6E]);
const VHDX_VIRTUAL_DISK_SIZE: [u8; 16] =
    guid(0x2FA5_4224, 0xCD1B, 0x4876, [0xB2, 0x11, 0x5D, 0xBE, 0xD8, 0x3B, 0xF4, 0xB8]);

/// Detects the format of a disk of `size` bytes. Anything without a known header is raw.
pub fn detect(size: u64, mut read: impl FnMut(u64, u32) -> Result<Vec<u8>>) -> Result<Disk> {
    if size == 0 {
        return Err(Error::invalid("the disk is empty"));
    }
    let head = read(0, 512)?;
    if head.starts_with(QCOW_MAGIC) {
        qcow(&head)
    } else if head.starts_with(VMDK_MAGIC) {
        let sectors = le_u64(&head, 12, "VMDK header")?;
        let virtual_size =
            sectors.checked_mul(512).ok_or_else(|| Error::invalid(format!("VMDK capacity of {sectors} sectors")))?;
        Ok(Disk { format: Format::Vmdk, virtual_size })
    } else if head.starts_with(VHDX_MAGIC) {
        Ok(Disk { format: Format::Vhdx, virtual_size: vhdx_size(&mut read)? })
    } else if head.starts_with(VMDK_DESCRIPTOR) {
        Err(Error::unsupported(
            "a VMDK descriptor file, whose data is in other files; convert it to one file with `qemu-img convert`",
        ))
    } else if head.starts_with(VHD_MAGIC) || head.get(VDI_MAGIC_AT..VDI_MAGIC_AT + 4) == Some(VDI_MAGIC) {
        Err(Error::unsupported("a VHD or VDI disk; convert it to qcow2 or raw with `qemu-img convert`"))
    } else if size >= 512 && read(size - 512, 8)?.starts_with(VHD_MAGIC) {
        Err(Error::unsupported("a fixed VHD disk; convert it to qcow2 or raw with `qemu-img convert`"))
    } else {
        Ok(Disk { format: Format::Raw, virtual_size: size })
    }
}

/// qcow (version 1) and qcow2 (versions 2 and 3) keep the virtual size at the same offset.
fn qcow(head: &[u8]) -> Result<Disk> {
    let format = match be_u32(head, 4, "qcow header")? {
        1 => Format::Qcow,
        2 | 3 => Format::Qcow2,
        version => return Err(Error::unsupported(format!("qcow version {version}"))),
    };
    if be_u64(head, 8, "qcow header")? != 0 {
        return Err(Error::unsupported(format!(
            "a {} disk with a backing file; make it self-contained with `qemu-img convert`",
            format.name()
        )));
    }
    Ok(Disk { format, virtual_size: be_u64(head, 24, "qcow header")? })
}

/// The Virtual Disk Size item of the metadata region that the region table names.
fn vhdx_size(read: &mut impl FnMut(u64, u32) -> Result<Vec<u8>>) -> Result<u64> {
    let table = read(VHDX_REGION_TABLE, VHDX_TABLE_SIZE)?;
    expect_signature(&table, b"regi", "VHDX region table")?;
    let region = entries(&table, 16, le_u32(&table, 8, "VHDX region table")? as usize)
        .find(|entry| entry.starts_with(&VHDX_METADATA_REGION))
        .ok_or_else(|| Error::invalid("the VHDX region table has no metadata region"))?;
    let region_offset = le_u64(region, 16, "VHDX region table")?;

    let metadata = read(region_offset, VHDX_TABLE_SIZE)?;
    expect_signature(&metadata, b"metadata", "VHDX metadata table")?;
    let count = u16::from_le_bytes(field(&metadata, 10, "VHDX metadata table")?);
    let item = entries(&metadata, 32, count as usize)
        .find(|entry| entry.starts_with(&VHDX_VIRTUAL_DISK_SIZE))
        .ok_or_else(|| Error::invalid("the VHDX metadata table has no virtual disk size"))?;
    let item_offset = le_u32(item, 16, "VHDX metadata table")?;
    let value = read(region_offset.saturating_add(u64::from(item_offset)), 8)?;
    le_u64(&value, 0, "VHDX virtual disk size")
}

/// The 32-byte entries of a VHDX table, as many as `count` and the bytes read allow.
fn entries(table: &[u8], start: usize, count: usize) -> impl Iterator<Item = &[u8]> {
    table.get(start..).unwrap_or_default().chunks_exact(32).take(count)
}

fn expect_signature(bytes: &[u8], signature: &[u8], what: &str) -> Result<()> {
    if bytes.starts_with(signature) {
        Ok(())
    } else {
        Err(Error::invalid(format!("{what}: no {:?} signature", String::from_utf8_lossy(signature))))
    }
}

/// `N` bytes at `at`, or an error naming the truncated structure.
fn field<const N: usize>(bytes: &[u8], at: usize, what: &str) -> Result<[u8; N]> {
    bytes.get(at..at + N).and_then(|b| b.try_into().ok()).ok_or_else(|| {
        Error::invalid(format!("{what} is truncated: {} bytes, a field ends at byte {}", bytes.len(), at + N))
    })
}

fn be_u32(bytes: &[u8], at: usize, what: &str) -> Result<u32> {
    field(bytes, at, what).map(u32::from_be_bytes)
}

fn be_u64(bytes: &[u8], at: usize, what: &str) -> Result<u64> {
    field(bytes, at, what).map(u64::from_be_bytes)
}

fn le_u32(bytes: &[u8], at: usize, what: &str) -> Result<u32> {
    field(bytes, at, what).map(u32::from_le_bytes)
}

fn le_u64(bytes: &[u8], at: usize, what: &str) -> Result<u64> {
    field(bytes, at, what).map(u64::from_le_bytes)
}

/// A GUID as Windows stores it: the first three fields little-endian, the last eight bytes as is.
const fn guid(a: u32, b: u16, c: u16, d: [u8; 8]) -> [u8; 16] {
    let (a, b, c) = (a.to_le_bytes(), b.to_le_bytes(), c.to_le_bytes());
    [a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom};
    use std::path::{Path, PathBuf};
    use std::process::Command;

    const SIZE: u64 = 64 << 20;

    fn detect_file(path: &Path) -> Result<Disk> {
        let mut file = std::fs::File::open(path).unwrap();
        let size = file.metadata().unwrap().len();
        detect(size, |offset, len| {
            let mut bytes = Vec::new();
            file.seek(SeekFrom::Start(offset)).unwrap();
            (&mut file).take(u64::from(len)).read_to_end(&mut bytes).unwrap();
            Ok(bytes)
        })
    }

    fn detect_bytes(bytes: &[u8]) -> Result<Disk> {
        detect(bytes.len() as u64, |offset, len| {
            let start = (offset as usize).min(bytes.len());
            Ok(bytes[start..(start + len as usize).min(bytes.len())].to_vec())
        })
    }

    /// A scratch directory for one test, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(test: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("ferry-vm-disk-{test}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        /// `qemu-img create -f FORMAT [args] FILE 64M`.
        fn qemu_img(&self, format: &str, args: &[&str]) -> PathBuf {
            let file = self.0.join(format!("disk.{format}"));
            let status = Command::new("qemu-img")
                .args(["create", "-q", "-f", format])
                .args(args)
                .arg(&file)
                .arg(SIZE.to_string())
                .status()
                .expect("running qemu-img (scripts/setup installs it)");
            assert!(status.success(), "qemu-img create -f {format} failed");
            file
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn detects_what_qemu_img_creates() {
        let scratch = Scratch::new("formats");
        for (format, args, expected) in [
            ("qcow2", &[][..], Format::Qcow2),
            ("qcow2", &["-o", "compat=0.10"][..], Format::Qcow2),
            ("qcow", &[][..], Format::Qcow),
            ("vmdk", &[][..], Format::Vmdk),
            ("vmdk", &["-o", "subformat=streamOptimized"][..], Format::Vmdk),
            ("vhdx", &[][..], Format::Vhdx),
            ("raw", &[][..], Format::Raw),
        ] {
            let file = scratch.qemu_img(format, args);
            let disk = detect_file(&file).unwrap_or_else(|e| panic!("{format} {args:?}: {}", e.message()));
            assert_eq!(disk, Disk { format: expected, virtual_size: SIZE }, "{format} {args:?}");
        }
    }

    #[test]
    fn refuses_a_backing_file() {
        let scratch = Scratch::new("backing");
        let base = scratch.qemu_img("raw", &[]);
        let overlay = scratch.0.join("overlay.qcow2");
        let status = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .args([&base, &overlay])
            .status()
            .unwrap();
        assert!(status.success());
        let error = detect_file(&overlay).unwrap_err();
        assert!(matches!(error, Error::Unsupported(_)) && error.message().contains("backing file"), "{error:?}");
    }

    #[test]
    fn refuses_vhd_and_vmdk_descriptors() {
        let scratch = Scratch::new("unsupported");
        for (format, args) in [("vpc", &[][..]), ("vpc", &["-o", "subformat=fixed"][..])] {
            let error = detect_file(&scratch.qemu_img(format, args)).unwrap_err();
            assert!(matches!(error, Error::Unsupported(_)) && error.message().contains("VHD"), "{error:?}");
        }
        let error = detect_bytes(b"# Disk DescriptorFile\nversion=1\n").unwrap_err();
        assert!(matches!(error, Error::Unsupported(_)) && error.message().contains("descriptor"), "{error:?}");
    }

    #[test]
    fn handcrafted_headers() {
        let mut qcow2 = b"QFI\xfb\0\0\0\x03".to_vec();
        qcow2.resize(32, 0);
        qcow2[24..32].copy_from_slice(&(10u64 << 30).to_be_bytes());
        assert_eq!(detect_bytes(&qcow2).unwrap(), Disk { format: Format::Qcow2, virtual_size: 10 << 30 });

        let mut vmdk = b"KDMV\x01\0\0\0\x03\0\0\0".to_vec();
        vmdk.extend_from_slice(&2048u64.to_le_bytes());
        assert_eq!(detect_bytes(&vmdk).unwrap(), Disk { format: Format::Vmdk, virtual_size: 1 << 20 });

        assert_eq!(detect_bytes(b"hello").unwrap(), Disk { format: Format::Raw, virtual_size: 5 });
    }

    #[test]
    fn malformed_headers_are_errors_not_panics() {
        let mut huge_vmdk = b"KDMV\x01\0\0\0\x03\0\0\0".to_vec();
        huge_vmdk.extend_from_slice(&u64::MAX.to_le_bytes());
        let mut qcow4 = b"QFI\xfb\0\0\0\x04".to_vec();
        qcow4.resize(32, 0);
        let mut no_metadata = b"vhdxfile".to_vec();
        no_metadata.resize(VHDX_REGION_TABLE as usize + 64, 0);
        no_metadata[VHDX_REGION_TABLE as usize..][..4].copy_from_slice(b"regi");
        no_metadata[VHDX_REGION_TABLE as usize + 8] = 1;
        for (bytes, invalid, message) in [
            (&b""[..], true, "empty"),
            (b"QFI\xfb\0\0\0\x03\0\0", true, "qcow header is truncated"),
            (b"KDMV\x01\0\0\0\x03\0\0\0\0\0", true, "VMDK header is truncated"),
            (&huge_vmdk, true, "VMDK capacity"),
            (&qcow4, false, "qcow version 4"),
            (b"vhdxfile", true, "VHDX region table: no \"regi\" signature"),
            (&no_metadata, true, "no metadata region"),
        ] {
            let error = detect_bytes(bytes).unwrap_err();
            assert_eq!(matches!(error, Error::InvalidContent(_)), invalid, "{error:?}");
            assert!(error.message().contains(message), "{:?} does not say {message:?}", error.message());
        }
    }

    #[test]
    fn guids_are_stored_mixed_endian() {
        assert_eq!(
            VHDX_METADATA_REGION,
            [0x06, 0xa2, 0x7c, 0x8b, 0x90, 0x47, 0x9a, 0x4b, 0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e]
        );
    }
}
