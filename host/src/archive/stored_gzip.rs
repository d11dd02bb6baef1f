//! gzip made of stored (uncompressed) deflate blocks: valid gzip that every reader opens, at the
//! speed of a copy and a CRC. Image layers are compressed already, so this is what `.tgz` costs
//! by default; a general-purpose encoder at level 0 still runs its block machinery per byte.
//!
//! Read back, such a file needs no decompressing: each block's bytes lie in the file as they
//! are, so an index of the block headers ([`StoredBlocks::index`]) lets the stream be read at
//! any position, straight from the file.

use crate::oci::ReadAt;
use anyhow::{Result, bail};
use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::FileExt;

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

/// Bytes of file per block header read, at least on average (64 headers are free): a file of
/// tiny blocks is left to the decompressor rather than read five bytes at a time.
const MIN_AVERAGE_BLOCK: u64 = 1024;

/// Runs of blocks in an index, at most (16 MiB of them): a file whose blocks vary in length
/// beyond this is left to the decompressor. A writer of full blocks makes two runs per member.
const MAX_RUNS: usize = 1 << 19;

/// The longest file name or comment a gzip header may carry here.
const MAX_HEADER_TEXT: u64 = 64 << 10;

/// A gzip file whose every member is made only of stored blocks, read at random through an
/// index of its blocks. The trailer's CRC is not checked (that would read every byte up front);
/// its size is.
pub struct StoredBlocks {
    file: File,
    /// The non-empty blocks, in runs, in order.
    runs: Vec<Run>,
    len: u64,
}

/// Blocks of one length that follow each other in the file, header, data, header, data.
#[derive(Debug)]
struct Run {
    /// Where the first block's data starts, in the stream and in the file.
    stream: u64,
    file: u64,
    /// The length of each block, and how many there are.
    block: u64,
    count: u64,
}

impl StoredBlocks {
    /// Indexes `file`, reading each block's 5-byte header and seeking over its data; `None` if
    /// it is not such a gzip (a compressed block, bytes after the last member, blocks too small
    /// or too varied: see [`MIN_AVERAGE_BLOCK`] and [`MAX_RUNS`]), to be decompressed instead. A
    /// stored block whose length and complement disagree, or that claims more bytes than the
    /// file holds, is refused.
    pub fn index(file: File) -> Result<Option<Self>> {
        Self::index_within(file, MAX_RUNS)
    }

    fn index_within(file: File, max_runs: usize) -> Result<Option<Self>> {
        let size = file.metadata()?.len();
        let read = |buf: &mut [u8], at: u64, what: &str| -> Result<()> {
            match file.read_exact_at(buf, at) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    bail!("not a readable gzip: it is cut short within {what} at byte {at}")
                }
                other => Ok(other?),
            }
        };
        let (mut runs, mut len, mut headers, mut at) = (Vec::<Run>::new(), 0u64, 0u64, 0u64);
        while at < size {
            let Some(start) = member_data(&file, at, size)? else { return Ok(None) };
            at = start;
            let member_start = len;
            loop {
                let mut h = [0u8; HEADER];
                read(&mut h, at, "a block header")?;
                // The first byte holds the last-block flag, the block type (0: stored) and
                // padding to the byte's end, which readers ignore.
                if (h[0] >> 1) & 3 != 0 {
                    return Ok(None);
                }
                headers += 1;
                if headers > size / MIN_AVERAGE_BLOCK + 64 {
                    return Ok(None);
                }
                let block = u16::from_le_bytes([h[1], h[2]]);
                let complement = u16::from_le_bytes([h[3], h[4]]);
                if block != !complement {
                    bail!(
                        "not a readable gzip: the stored block at byte {at} gives its length as {block} and the \
                         length's complement as {complement}, which disagree"
                    );
                }
                let (data, block) = (at + HEADER as u64, u64::from(block));
                if data + block > size {
                    bail!(
                        "not a readable gzip: the stored block at byte {at} claims {block} bytes, but the file \
                         ends {} bytes after its header",
                        size - data
                    );
                }
                let full = runs.len() == max_runs;
                match runs.last_mut() {
                    _ if block == 0 => {}
                    Some(run) if run.block == block && run.file + run.count * (block + HEADER as u64) == data => {
                        run.count += 1
                    }
                    _ if full => return Ok(None),
                    _ => runs.push(Run { stream: len, file: data, block, count: 1 }),
                }
                len += block;
                at = data + block;
                if h[0] & 1 == 1 {
                    break;
                }
            }
            let mut trailer = [0u8; 8];
            read(&mut trailer, at, "a gzip trailer")?;
            let declared = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
            if declared != (len - member_start) as u32 {
                bail!(
                    "not a readable gzip: the trailer at byte {at} gives the size as {declared}, but the member's \
                     blocks hold {} bytes",
                    len - member_start
                );
            }
            at += 8;
        }
        Ok(Some(StoredBlocks { file, runs, len }))
    }
}

/// Where the blocks of the gzip member at `at` start, past its header; `None` if no member of a
/// kind this reads starts there.
fn member_data(file: &File, at: u64, size: u64) -> Result<Option<u64>> {
    const FHCRC: u8 = 2;
    const FEXTRA: u8 = 4;
    const FNAME: u8 = 8;
    const FCOMMENT: u8 = 16;
    let mut h = [0u8; 10];
    if size - at < 10 || file.read_exact_at(&mut h, at).is_err() {
        return Ok(None);
    }
    // Magic, deflate, and no flags beyond those the format defines.
    if h[..3] != [0x1f, 0x8b, 8] || h[3] & 0xe0 != 0 {
        return Ok(None);
    }
    let flags = h[3];
    let mut at = at + 10;
    if flags & FEXTRA != 0 {
        let mut extra = [0u8; 2];
        if file.read_exact_at(&mut extra, at).is_err() {
            return Ok(None);
        }
        at += 2 + u64::from(u16::from_le_bytes(extra));
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            // Zero-terminated text, read in pieces until its end.
            let mut piece = [0u8; 256];
            let mut read = 0;
            loop {
                let n = FileExt::read_at(file, &mut piece, at + read)?;
                if n == 0 || read > MAX_HEADER_TEXT {
                    return Ok(None);
                }
                match piece[..n].iter().position(|&b| b == 0) {
                    Some(end) => break at += read + end as u64 + 1,
                    None => read += n as u64,
                }
            }
        }
    }
    if flags & FHCRC != 0 {
        at += 2;
    }
    Ok((at <= size).then_some(at))
}

impl ReadAt for StoredBlocks {
    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize> {
        if position >= self.len {
            return Ok(0);
        }
        let first = self.runs.partition_point(|run| run.stream <= position) - 1;
        let mut filled = 0;
        for run in &self.runs[first..] {
            let end = run.stream + run.block * run.count;
            while filled < buf.len() && position + (filled as u64) < end {
                let at = position + filled as u64 - run.stream;
                let (i, within) = (at / run.block, at % run.block);
                let n = (buf.len() - filled).min((run.block - within) as usize);
                let in_file = run.file + i * (run.block + HEADER as u64) + within;
                self.file.read_exact_at(&mut buf[filled..filled + n], in_file)?;
                filled += n;
            }
            if filled == buf.len() {
                break;
            }
        }
        Ok(filled)
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

    fn stored_gzip(data: &[u8]) -> Vec<u8> {
        let mut gz = StoredGzip::new(Vec::new()).unwrap();
        gz.write_all(data).unwrap();
        gz.finish().unwrap()
    }

    fn file_of(bytes: &[u8]) -> File {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(bytes).unwrap();
        file
    }

    fn index(bytes: &[u8]) -> Result<Option<StoredBlocks>> {
        StoredBlocks::index(file_of(bytes))
    }

    /// Reads `len` bytes at `position` through the index, as a blob reader does.
    fn read(blocks: &StoredBlocks, position: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        let n = blocks.read_at(&mut buf, position).unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn the_stream_is_read_at_any_position_across_blocks_and_members() {
        let data: Vec<u8> = (0..3 * BLOCK + 777).map(|i| (i * 7 % 251) as u8).collect();
        let (a, b) = data.split_at(BLOCK + 10);
        // Two members, as `cat a.gz b.gz` makes: gzip readers give both, one after the other.
        let mut file = stored_gzip(a);
        file.extend(stored_gzip(b));
        let blocks = index(&file).unwrap().expect("stored blocks");
        assert_eq!(blocks.len, data.len() as u64);
        // Full blocks, then the last one, in each member: however large the file.
        assert_eq!(blocks.runs.len(), 4, "{:?}", blocks.runs);
        for (position, len) in [(0, 10), (BLOCK - 3, 7), (BLOCK + 5, 2 * BLOCK), (0, data.len()), (data.len() - 1, 9)] {
            let want = &data[position..(position + len).min(data.len())];
            assert!(read(&blocks, position as u64, len) == want, "{len} bytes at {position}");
        }
        assert!(read(&blocks, data.len() as u64, 10).is_empty());
    }

    #[test]
    fn another_writers_level_0_with_a_name_and_comment_in_its_header_is_read_in_place() {
        let data: Vec<u8> = (0..200_000).map(|i| (i % 13) as u8).collect();
        let mut gz = flate2::GzBuilder::new()
            .filename("bundle.tar")
            .comment("made elsewhere")
            .extra(vec![1, 2, 3])
            .write(Vec::new(), flate2::Compression::none());
        gz.write_all(&data).unwrap();
        let bytes = gz.finish().unwrap();
        let blocks = index(&bytes).unwrap().expect("stored blocks");
        assert!(read(&blocks, 0, data.len()) == data);
    }

    #[test]
    fn compressed_blocks_and_bytes_after_the_last_member_leave_the_file_to_the_decompressor() {
        let data = vec![7u8; 100_000];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        assert!(index(&gz.finish().unwrap()).unwrap().is_none(), "a compressed gzip");
        let mut trailing = stored_gzip(&data);
        trailing.extend_from_slice(b"not gzip");
        assert!(index(&trailing).unwrap().is_none(), "bytes after the last member");
    }

    /// Where the first block's header is in what [`stored_gzip`] writes.
    const FIRST_BLOCK: usize = 10;

    #[test]
    fn a_block_whose_length_and_complement_disagree_is_refused() {
        let mut bytes = stored_gzip(&vec![1u8; 2 * BLOCK]);
        // The second block's length, one more than its complement allows.
        let second = FIRST_BLOCK + HEADER + BLOCK;
        bytes[second + 1] ^= 1;
        let err = index(&bytes).err().expect("a damaged block header");
        let want = format!("the stored block at byte {second} gives its length as 65534");
        assert!(err.to_string().contains(&want), "{err}");
    }

    #[test]
    fn a_block_that_claims_more_than_the_file_holds_is_refused() {
        let mut bytes = stored_gzip(&[1u8; 100]);
        // The one block claims 1000 bytes, consistently; only 100 and the trailer follow.
        bytes[FIRST_BLOCK..FIRST_BLOCK + HEADER].copy_from_slice(&header(1000, true));
        let err = index(&bytes).err().expect("a block past the end");
        assert!(
            err.to_string().contains(
                "the stored block at byte 10 claims 1000 bytes, but the file ends 108 bytes after its header"
            ),
            "{err}"
        );
        // Cut short within a header or the trailer.
        let whole = stored_gzip(&[1u8; 100]);
        for cut in [FIRST_BLOCK + 2, whole.len() - 3] {
            let err = index(&whole[..cut]).err().expect("cut short");
            assert!(err.to_string().contains("cut short"), "{cut}: {err}");
        }
    }

    #[test]
    fn a_trailer_that_disagrees_with_the_blocks_size_is_refused() {
        let mut bytes = stored_gzip(&[1u8; 100]);
        let size = bytes.len() - 4;
        bytes[size] = 99;
        let err = index(&bytes).err().expect("a wrong size in the trailer");
        assert!(err.to_string().contains("gives the size as 99, but the member's blocks hold 100 bytes"), "{err}");
    }

    #[test]
    fn a_file_of_tiny_blocks_is_not_indexed() {
        // Empty blocks, then the last: readers accept it; indexing it would read 5 bytes at a time.
        let mut bytes = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
        for _ in 0..10_000 {
            bytes.extend_from_slice(&header(0, false));
        }
        bytes.extend_from_slice(&header(0, true));
        bytes.extend_from_slice(&[0; 8]);
        assert!(index(&bytes).unwrap().is_none());
    }

    #[test]
    fn a_file_of_blocks_too_varied_to_index_is_left_to_the_decompressor() {
        let data = vec![5u8; 4 * BLOCK];
        let mut bytes = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
        // Blocks of 60,000 and 65,535 bytes in turn: every block starts a run.
        let lengths = [60_000, BLOCK, 60_000, BLOCK, data.len() - 120_000 - 2 * BLOCK];
        let mut from = 0;
        for (i, n) in lengths.into_iter().enumerate() {
            bytes.extend_from_slice(&header(n, i == lengths.len() - 1));
            bytes.extend_from_slice(&data[from..from + n]);
            from += n;
        }
        bytes.extend_from_slice(&crc32fast::hash(&data).to_le_bytes());
        bytes.extend_from_slice(&(data.len() as u32).to_le_bytes());
        let within = |max_runs| StoredBlocks::index_within(file_of(&bytes), max_runs).unwrap();
        assert!(within(4).is_none());
        let blocks = within(5).expect("five runs");
        assert!(read(&blocks, 0, data.len()) == data);
    }
}
