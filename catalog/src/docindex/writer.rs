//! Writing the format: entries pushed in (id, hash) order, prefix-coded
//! after the header, as they are with restart points and a footer (format 2)
//! or in one zstd frame (format 1, [`DocIndexWriter::with_level`], what smelt
//! wrote before).
//!
//! ```text
//! (id, hash)* ──prefix coding (full id at each restart)──► header | records | end | footer
//!                                      └─(format 1: zstd, window 128 KiB, no restarts or footer)
//! ```

use std::cmp::Ordering;
use std::io::{self, Write};

use super::{
    FOOTER_MAGIC, FORMAT_ZSTD, HEADER_LEN, INDEX_FORMAT, MAGIC, MAX_ID_BYTES, RESTART_BYTES, WINDOW_LOG, WRITE_CHUNK,
};

/// Where the records go: the file itself, or a zstd frame in it.
enum Sink<W: Write> {
    Raw(W),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Sink<W> {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Sink::Raw(w) => w.write_all(buf),
            Sink::Zstd(e) => e.write_all(buf),
        }
    }

    fn finish(self) -> io::Result<W> {
        match self {
            Sink::Raw(w) => Ok(w),
            Sink::Zstd(e) => e.finish(),
        }
    }
}

fn header(format: u32, flags: u32) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&format.to_le_bytes());
    header[12..].copy_from_slice(&flags.to_le_bytes());
    header
}

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
    enc: Sink<W>,
    buf: Vec<u8>,
    prev: Vec<u8>,
    prev_hash: [u8; 16],
    entries: u64,
    /// Bytes of records between restart points (0: format 1, none).
    restart_bytes: u64,
    /// File offsets of the restart records so far.
    restarts: Vec<u64>,
    /// Record bytes handed to `enc` so far.
    flushed: u64,
}

impl<W: Write> DocIndexWriter<W> {
    /// Starts an index on `w` in the current format (2: the records as they are).
    ///
    /// # Errors
    /// Writing the header to `w`.
    pub fn new(w: W) -> io::Result<Self> {
        Self::with_restarts(w, RESTART_BYTES)
    }

    /// [`new`](Self::new) with restart points `restart_bytes` apart (at least
    /// [`MIN_RESTART_BYTES`](super::MIN_RESTART_BYTES)): tests use small ones.
    pub fn with_restarts(mut w: W, restart_bytes: u32) -> io::Result<Self> {
        debug_assert!(restart_bytes >= super::MIN_RESTART_BYTES, "readers refuse smaller restart intervals");
        w.write_all(&header(INDEX_FORMAT, restart_bytes))?;
        let mut me = Self::on(Sink::Raw(w));
        me.restart_bytes = u64::from(restart_bytes);
        Ok(me)
    }

    /// Starts an index on `w` in format 1, the records in one zstd frame at
    /// `level`: what smelt wrote before format 2, kept so that readers are
    /// tested on it.
    ///
    /// # Errors
    /// Writing the header to `w`.
    pub fn with_level(mut w: W, level: i32) -> io::Result<Self> {
        w.write_all(&header(FORMAT_ZSTD, 0))?;
        let mut enc = zstd::stream::write::Encoder::new(w, level)?;
        enc.window_log(WINDOW_LOG)?;
        // No frame checksum: stored indexes carry an xxh3-128 of the whole file
        // (checked by every reader of them), and the end record a count.
        enc.include_checksum(false)?;
        Ok(Self::on(Sink::Zstd(enc)))
    }

    fn on(enc: Sink<W>) -> Self {
        DocIndexWriter {
            enc,
            buf: Vec::with_capacity(WRITE_CHUNK + 256),
            prev: Vec::new(),
            prev_hash: [0; 16],
            entries: 0,
            restart_bytes: 0,
            restarts: Vec::new(),
            flushed: 0,
        }
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
        // A restart record holds its whole id (shared 0): the first one, then
        // the first at least `restart_bytes` after the previous restart.
        let at = HEADER_LEN as u64 + self.flushed + self.buf.len() as u64;
        let restart =
            self.restart_bytes > 0 && self.restarts.last().is_none_or(|&last| at - last >= self.restart_bytes);
        let shared = if restart {
            self.restarts.push(at);
            0
        } else {
            common_prefix(&self.prev, id)
        };
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
            self.flushed += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    /// Entries pushed so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Writes the end record and the footer (in format 1 the zstd frame's
    /// end); returns the inner writer (not flushed).
    ///
    /// # Errors
    /// Write failures.
    pub fn finish(mut self) -> io::Result<W> {
        let end = HEADER_LEN as u64 + self.flushed + self.buf.len() as u64;
        put_varint(&mut self.buf, 0);
        put_varint(&mut self.buf, self.entries);
        if self.restart_bytes > 0 {
            for off in &self.restarts {
                self.buf.extend_from_slice(&off.to_le_bytes());
            }
            for v in [end, self.entries, self.restarts.len() as u64] {
                self.buf.extend_from_slice(&v.to_le_bytes());
            }
            self.buf.extend_from_slice(FOOTER_MAGIC);
        }
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
