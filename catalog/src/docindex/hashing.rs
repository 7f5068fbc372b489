//! Byte counts and xxh3-128 checksums of index files as they are written or read.
//!
//! ```text
//! bytes ──► HashingWriter | HashingReader ──► (len, "xxh3-128:<hex>") ──► DocIndexRef
//! ```

use std::io::{self, Read, Write};

/// A writer that counts and hashes (xxh3-128) what goes through it.
pub struct HashingWriter<W> {
    pub(super) inner: W,
    hasher: xxhash_rust::xxh3::Xxh3,
    len: u64,
}

impl<W> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: xxhash_rust::xxh3::Xxh3::new(), len: 0 }
    }

    /// `xxh3-128:<hex>` of the bytes written so far.
    pub fn checksum(&self) -> String {
        format!("xxh3-128:{:032x}", self.hasher.digest128())
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
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that counts and hashes (xxh3-128) what goes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: xxhash_rust::xxh3::Xxh3,
    len: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader { inner, hasher: xxhash_rust::xxh3::Xxh3::new(), len: 0 }
    }

    /// Reads the rest of the input, then returns the byte count and `xxh3-128:<hex>` of all of it.
    ///
    /// # Errors
    /// Read failures.
    pub fn finish(mut self) -> io::Result<(u64, String)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((self.len, format!("xxh3-128:{:032x}", self.hasher.digest128())))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}
