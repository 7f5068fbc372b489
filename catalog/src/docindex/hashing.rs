//! Byte counts and checksums of index files as they are written or read.
//!
//! ```text
//! bytes ──► HashingWriter | HashingReader | MappedRecords (per block) ──► (len, checksum) ──► DocIndexRef
//! ```
//!
//! Two checksums, named by their prefix in a [`DocIndexRef`](crate::model::DocIndexRef):
//! - `xxh3-128-blocks:<hex>` (written since index format 2): the xxh3-128 of
//!   the xxh3-128 digests (16 bytes little-endian each) of the file's
//!   [`CHECKSUM_BLOCK`] pieces from its start, the last one possibly
//!   shorter. Threads that each read a part of the file hash the blocks of
//!   their part, and the digests combine in order: the document diff checks
//!   a file in the same pass that joins it.
//! - `xxh3-128:<hex>`: the xxh3-128 of the whole file, one stream (what smelt
//!   recorded before); still checked.

use std::fs::File;
use std::io::{self, Read, Write};

use xxhash_rust::xxh3::{xxh3_128, Xxh3};

/// Prefix of a whole-file checksum.
pub const WHOLE_PREFIX: &str = "xxh3-128:";
/// Prefix of a block checksum.
pub const BLOCKS_PREFIX: &str = "xxh3-128-blocks:";
/// Bytes per block of a block checksum (256 KiB: hashed while the diff's
/// decoding has just brought them into the cache).
pub const CHECKSUM_BLOCK: usize = 256 << 10;

/// The digest of one block, as a block checksum combines it.
pub fn block_digest(block: &[u8]) -> [u8; 16] {
    xxh3_128(block).to_le_bytes()
}

/// The block checksum of a file whose blocks have these digests, in order.
pub fn combine_blocks<'a>(digests: impl IntoIterator<Item = &'a [u8; 16]>) -> String {
    let mut outer = Xxh3::new();
    for d in digests {
        outer.update(d);
    }
    format!("{BLOCKS_PREFIX}{:032x}", outer.digest128())
}

/// The block checksum of `bytes` (a whole file in memory).
pub fn checksum_of(bytes: &[u8]) -> String {
    let digests: Vec<[u8; 16]> = bytes.chunks(CHECKSUM_BLOCK).map(block_digest).collect();
    combine_blocks(&digests)
}

/// A checksum being computed over a stream of bytes.
pub enum Checksummer {
    /// `xxh3-128:`.
    Whole(Xxh3),
    /// `xxh3-128-blocks:`: the block being filled, and how full it is.
    Blocks { outer: Xxh3, block: Box<Xxh3>, filled: usize },
}

impl Checksummer {
    /// A block checksum (what smelt writes).
    pub fn blocks() -> Self {
        Checksummer::Blocks { outer: Xxh3::new(), block: Box::new(Xxh3::new()), filled: 0 }
    }

    /// The kind of checksum `recorded` is, to check it: whole-file for
    /// `xxh3-128:`, else blocks (a value of another kind then just differs).
    pub fn like(recorded: &str) -> Self {
        if recorded.starts_with(WHOLE_PREFIX) {
            Checksummer::Whole(Xxh3::new())
        } else {
            Self::blocks()
        }
    }

    /// Hashes the next bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        match self {
            Checksummer::Whole(h) => h.update(data),
            Checksummer::Blocks { outer, block, filled } => {
                while !data.is_empty() {
                    let take = data.len().min(CHECKSUM_BLOCK - *filled);
                    block.update(&data[..take]);
                    *filled += take;
                    data = &data[take..];
                    if *filled == CHECKSUM_BLOCK {
                        outer.update(&block.digest128().to_le_bytes());
                        block.reset();
                        *filled = 0;
                    }
                }
            }
        }
    }

    /// The checksum of everything hashed, with its prefix.
    pub fn finish(&self) -> String {
        match self {
            Checksummer::Whole(h) => format!("{WHOLE_PREFIX}{:032x}", h.digest128()),
            Checksummer::Blocks { outer, block, filled } => {
                let mut outer = outer.clone();
                if *filled > 0 {
                    outer.update(&block.digest128().to_le_bytes());
                }
                format!("{BLOCKS_PREFIX}{:032x}", outer.digest128())
            }
        }
    }
}

/// A writer that counts and checksums (by blocks) what goes through it.
pub struct HashingWriter<W> {
    pub(super) inner: W,
    sum: Checksummer,
    len: u64,
}

impl<W> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, sum: Checksummer::blocks(), len: 0 }
    }

    /// The checksum of the bytes written so far.
    pub fn checksum(&self) -> String {
        self.sum.finish()
    }

    /// The inner writer, the byte count and the checksum.
    pub fn into_parts(self) -> (W, u64, String) {
        let c = self.checksum();
        (self.inner, self.len, c)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sum.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that counts and checksums what goes through it.
pub struct HashingReader<R> {
    inner: R,
    sum: Checksummer,
    len: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`, to check a checksum of the kind `recorded` is.
    pub fn like(inner: R, recorded: &str) -> Self {
        HashingReader { inner, sum: Checksummer::like(recorded), len: 0 }
    }

    /// Reads the rest of the input, then returns the byte count and the checksum of all of it.
    ///
    /// # Errors
    /// Read failures.
    pub fn finish(mut self) -> io::Result<(u64, String)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((self.len, self.sum.finish()))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sum.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// Byte count and checksum (of the kind `recorded` is) of a whole file,
/// read from its start in 256 KiB pieces.
///
/// # Errors
/// Read failures.
pub fn hash_file(mut file: &File, recorded: &str) -> io::Result<(u64, String)> {
    use std::io::Seek;
    file.rewind()?;
    let mut sum = Checksummer::like(recorded);
    let mut buf = vec![0u8; 256 << 10];
    let mut len = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        sum.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, sum.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_checksums_are_the_same_however_the_bytes_arrive() {
        let bytes: Vec<u8> = (0..3 * CHECKSUM_BLOCK + 1234).map(|i| (i * 7 % 251) as u8).collect();
        let want = checksum_of(&bytes);
        assert!(want.starts_with(BLOCKS_PREFIX));
        for piece in [1, 1000, CHECKSUM_BLOCK, CHECKSUM_BLOCK + 1, bytes.len()] {
            let mut sum = Checksummer::blocks();
            bytes.chunks(piece).for_each(|c| sum.update(c));
            assert_eq!(sum.finish(), want, "pieces of {piece}");
        }
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(&bytes).unwrap();
        let (_, len, sum) = w.into_parts();
        assert_eq!((len, sum), (bytes.len() as u64, want.clone()));
        let (len, sum) = HashingReader::like(&bytes[..], &want).finish().unwrap();
        assert_eq!((len, sum), (bytes.len() as u64, want.clone()));
        // A block boundary matters: the same bytes cut otherwise differ.
        assert_ne!(want, format!("{BLOCKS_PREFIX}{:032x}", xxh3_128(&bytes)));
        assert_eq!(checksum_of(&[]), combine_blocks(&[]));
        // Whole-file checksums (what smelt recorded before) are still computed when recorded.
        let whole = format!("{WHOLE_PREFIX}{:032x}", xxh3_128(&bytes));
        assert_eq!(HashingReader::like(&bytes[..], &whole).finish().unwrap().1, whole);
    }
}
