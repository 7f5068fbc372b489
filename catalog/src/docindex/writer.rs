//! Writing the format: entries pushed in (id, hash) order, prefix-coded
//! into one zstd frame after the header.
//!
//! ```text
//! (id, hash)* ──prefix coding──► records ──zstd (window 128 KiB)──► header | frame
//! ```

use std::cmp::Ordering;
use std::io::{self, Write};

use super::{DEFAULT_LEVEL, HEADER_LEN, INDEX_FORMAT, MAGIC, MAX_ID_BYTES, WINDOW_LOG, WRITE_CHUNK};

pub(super) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let x = u64::from_ne_bytes(a[i..i + 8].try_into().expect("8 bytes"));
        let y = u64::from_ne_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        if x != y {
            break;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

/// Writes a document index: push entries in (id, hash) order, then [`finish`](Self::finish).
pub struct DocIndexWriter<W: Write> {
    enc: zstd::stream::write::Encoder<'static, W>,
    buf: Vec<u8>,
    prev: Vec<u8>,
    prev_hash: [u8; 16],
    entries: u64,
}

impl<W: Write> DocIndexWriter<W> {
    /// Starts an index on `w` at the default zstd level.
    ///
    /// # Errors
    /// Writing the header to `w`.
    pub fn new(w: W) -> io::Result<Self> {
        Self::with_level(w, DEFAULT_LEVEL)
    }

    /// Starts an index on `w` at zstd `level`.
    ///
    /// # Errors
    /// Writing the header to `w`.
    pub fn with_level(mut w: W, level: i32) -> io::Result<Self> {
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&INDEX_FORMAT.to_le_bytes());
        w.write_all(&header)?;
        let mut enc = zstd::stream::write::Encoder::new(w, level)?;
        enc.window_log(WINDOW_LOG)?;
        // No frame checksum: stored indexes carry an xxh3-128 of the whole file
        // (checked by every reader of them), and the end record a count.
        enc.include_checksum(false)?;
        Ok(DocIndexWriter {
            enc,
            buf: Vec::with_capacity(WRITE_CHUNK + 256),
            prev: Vec::new(),
            prev_hash: [0; 16],
            entries: 0,
        })
    }

    /// Appends one entry.
    ///
    /// # Errors
    /// `InvalidInput` when the entry sorts before the previous one; write failures.
    pub fn push(&mut self, id: &[u8], hash: &[u8; 16]) -> io::Result<()> {
        if self.entries > 0 && id.cmp(&self.prev).then_with(|| hash.cmp(&self.prev_hash)) == Ordering::Less {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "document index entries must be pushed in (id, hash) order",
            ));
        }
        if id.len() > MAX_ID_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a document id of {} bytes is longer than a document index holds ({MAX_ID_BYTES})", id.len()),
            ));
        }
        let shared = common_prefix(&self.prev, id);
        put_varint(&mut self.buf, (id.len() - shared) as u64 + 1);
        put_varint(&mut self.buf, shared as u64);
        self.buf.extend_from_slice(&id[shared..]);
        self.buf.extend_from_slice(hash);
        self.prev.truncate(shared);
        self.prev.extend_from_slice(&id[shared..]);
        self.prev_hash = *hash;
        self.entries += 1;
        if self.buf.len() >= WRITE_CHUNK {
            self.enc.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Entries pushed so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Writes the end record and the zstd frame's end; returns the inner writer (not flushed).
    ///
    /// # Errors
    /// Write failures.
    pub fn finish(mut self) -> io::Result<W> {
        put_varint(&mut self.buf, 0);
        put_varint(&mut self.buf, self.entries);
        self.enc.write_all(&self.buf)?;
        self.enc.finish()
    }
}

/// Sorts `entries` by (id, hash) and encodes them as one index (what a split stores).
///
/// # Errors
/// Never in practice (writes go to memory).
pub fn encode_run<I: AsRef<[u8]>>(entries: &mut [(I, [u8; 16])]) -> io::Result<Vec<u8>> {
    entries.sort_unstable_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()).then_with(|| a.1.cmp(&b.1)));
    let mut w = DocIndexWriter::new(Vec::new())?;
    for (id, hash) in entries.iter() {
        w.push(id.as_ref(), hash)?;
    }
    w.finish()
}
