//! gzip made of stored (uncompressed) deflate blocks: valid gzip that every reader opens, at the
//! speed of a copy and a CRC. Image layers are compressed already, so this is what `.tgz` costs
//! by default; a general-purpose encoder at level 0 still runs its block machinery per byte.

use std::io::{self, IoSlice, Write};

/// The most one stored block holds.
const BLOCK: usize = 65_535;

/// A stored block's header: the last-block flag, then its length and the length's complement.
const HEADER: usize = 5;

/// Full blocks written straight from the caller's buffer in one call, at most.
const BATCH: usize = 16;

/// Buffers a block behind the room for its header, and writes both with one call; full blocks
/// of a large write go out straight from the caller's buffer, headers between them, in one
/// vectored call. `inner` needs no buffer of its own. However the bytes are split into writes,
/// the blocks, and so the output, are the same.
pub struct StoredGzip<W: Write> {
    inner: W,
    block: Vec<u8>,
    crc: crc32fast::Hasher,
    size: u32,
}

impl<W: Write> StoredGzip<W> {
    pub fn new(mut inner: W) -> io::Result<Self> {
        // Magic, deflate, no flags, mtime 0, no extra flags, OS "unknown": the same bytes every time.
        inner.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255])?;
        let mut block = Vec::with_capacity(HEADER + BLOCK);
        block.resize(HEADER, 0);
        Ok(StoredGzip { inner, block, crc: crc32fast::Hasher::new(), size: 0 })
    }

    fn emit(&mut self, last: bool) -> io::Result<()> {
        let len = self.block.len() - HEADER;
        self.block[..HEADER].copy_from_slice(&header(len, last));
        self.inner.write_all(&self.block)?;
        self.block.truncate(HEADER);
        Ok(())
    }

    /// Writes as many full blocks of `buf` as fit in a batch, none of them the last; returns the
    /// bytes taken.
    fn emit_from(&mut self, buf: &[u8]) -> io::Result<usize> {
        let blocks: Vec<&[u8]> = buf.chunks_exact(BLOCK).take(BATCH).collect();
        let full = header(BLOCK, false);
        let mut slices: Vec<IoSlice> = blocks.iter().flat_map(|b| [IoSlice::new(&full), IoSlice::new(b)]).collect();
        let mut slices = &mut slices[..];
        while !slices.is_empty() {
            match self.inner.write_vectored(slices)? {
                0 => return Err(io::Error::new(io::ErrorKind::WriteZero, "failed to write a stored block")),
                n => IoSlice::advance_slices(&mut slices, n),
            }
        }
        let n = blocks.len() * BLOCK;
        self.crc.update(&buf[..n]);
        self.size = self.size.wrapping_add(n as u32);
        Ok(n)
    }

    /// Writes the last block and the trailer; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.emit(true)?;
        let crc = self.crc.clone().finalize();
        self.inner.write_all(&crc.to_le_bytes())?;
        self.inner.write_all(&self.size.to_le_bytes())?;
        Ok(self.inner)
    }
}

/// A stored block's header for `len` bytes.
fn header(len: usize, last: bool) -> [u8; HEADER] {
    let len = len as u16;
    let [a, b] = len.to_le_bytes();
    let [c, d] = (!len).to_le_bytes();
    [u8::from(last), a, b, c, d]
}

impl<W: Write> Write for StoredGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.block.len() == HEADER && buf.len() >= BLOCK {
            return self.emit_from(buf);
        }
        let n = buf.len().min(HEADER + BLOCK - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        self.crc.update(&buf[..n]);
        self.size = self.size.wrapping_add(n as u32);
        if self.block.len() == HEADER + BLOCK {
            self.emit(false)?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_output_does_not_depend_on_how_the_bytes_are_split_into_writes() {
        let data: Vec<u8> = (0..(BATCH + 3) * BLOCK + 1234).map(|i| (i * 17 % 253) as u8).collect();
        let whole = {
            let mut gz = StoredGzip::new(Vec::new()).unwrap();
            gz.write_all(&data).unwrap();
            gz.finish().unwrap()
        };
        for piece in [1, 7, BLOCK - 1, BLOCK + 3, 5 * BLOCK + 11] {
            let mut gz = StoredGzip::new(Vec::new()).unwrap();
            for part in data.chunks(piece) {
                gz.write_all(part).unwrap();
            }
            assert!(gz.finish().unwrap() == whole, "written in pieces of {piece}");
        }
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&whole[..]).read_to_end(&mut back).unwrap();
        assert!(back == data);
    }

    #[test]
    fn gzip_readers_get_the_bytes_back() {
        for size in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 17] {
            let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            let mut gz = StoredGzip::new(Vec::new()).unwrap();
            gz.write_all(&data).unwrap();
            let bytes = gz.finish().unwrap();
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut back).unwrap();
            assert_eq!(back, data, "{size} bytes");
            let gunzip = std::process::Command::new("gzip")
                .args(["-dc"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            gunzip.stdin.as_ref().unwrap().write_all(&bytes).unwrap();
            let out = gunzip.wait_with_output().unwrap();
            assert!(out.status.success());
            assert_eq!(out.stdout, data, "gzip -d of {size} bytes");
        }
    }
}
