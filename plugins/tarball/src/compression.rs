//! A tarball's compression, told from its first bytes as the host tells it when listing entries.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// Bytes `of` needs.
pub const MAGIC_LEN: u32 = 4;

impl Compression {
    pub fn of(first_bytes: &[u8]) -> Self {
        if first_bytes.starts_with(GZIP_MAGIC) {
            Compression::Gzip
        } else if first_bytes.starts_with(ZSTD_MAGIC) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// The media type of a stored tarball layer.
    pub fn layer_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.ferry.tarball.layer.v1.tar",
            Compression::Gzip => "application/vnd.ferry.tarball.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.ferry.tarball.layer.v1.tar+zstd",
        }
    }

    /// The usual file name extension.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::None => ".tar",
            Compression::Gzip => ".tar.gz",
            Compression::Zstd => ".tar.zst",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn told_from_the_first_bytes() {
        for (bytes, expected) in [
            (&[0x1f, 0x8b, 0x08, 0x00][..], Compression::Gzip),
            (&[0x28, 0xb5, 0x2f, 0xfd], Compression::Zstd),
            (b"hell", Compression::None),
            (&[0x1f], Compression::None),
            (&[], Compression::None),
        ] {
            assert_eq!(Compression::of(bytes), expected, "{bytes:?}");
        }
    }
}
