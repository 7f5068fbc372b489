//! Reading the format: a streaming decoder that checks the header, the
//! order of entries, the restart points, the end record and the footer as
//! it goes.
//!
//! ```text
//! header | records (format 1: in a zstd frame) ──READ_CHUNK at a time──► record ──prefix──► (id, hash) ... end(count) footer
//! ```

use std::cmp::Ordering;
use std::io::{self, BufReader, Read};

use super::{
    FILE_BUFFER, FOOTER_MAGIC, FOOTER_TAIL, FORMAT_ZSTD, HEADER_LEN, INDEX_FORMAT, MAGIC, MAX_ID_BYTES,
    MIN_RESTART_BYTES, READ_CHUNK, WINDOW_LOG_MAX,
};

/// Where the records come from: the file after its header (format 2), or the zstd frame there (format 1).
enum Source<R: Read> {
    Raw(BufReader<R>),
    Zstd(zstd::stream::read::Decoder<'static, BufReader<R>>),
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Raw(r) => r.read(buf),
            Source::Zstd(d) => d.read(buf),
        }
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Streams the entries of a document index, checking the format, the order
/// and the end record as it goes.
///
/// Either the lending form, fast and allocation-free:
/// ```
/// # use smelt_catalog::docindex::{encode_run, DocIndexReader};
/// # let bytes = encode_run(&mut [("b", [1; 16]), ("a", [0; 16])]).unwrap();
/// let mut r = DocIndexReader::new(&bytes[..])?;
/// while r.advance()? {
///     println!("{} {:02x?}", String::from_utf8_lossy(r.id()), r.hash());
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
/// or the [`Iterator`] of owned `(id, hash)` pairs.
pub struct DocIndexReader<R: Read> {
    dec: Source<R>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    id: Vec<u8>,
    hash: [u8; 16],
    entries: u64,
    repeats: bool,
    done: bool,
    /// Bytes between restart points (format 2), 0 for format 1.
    restart_bytes: u64,
    /// Record bytes taken from the source so far.
    read_total: u64,
    /// Offsets of the restart records seen, checked against the footer.
    restarts: Vec<u64>,
}

impl<R: Read> DocIndexReader<R> {
    /// Reads and checks the header.
    ///
    /// # Errors
    /// `InvalidData` for a file that is not a document index or of a newer format; read failures.
    pub fn new(mut r: R) -> io::Result<Self> {
        let mut header = [0u8; HEADER_LEN];
        r.read_exact(&mut header).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                invalid("not a smelt document index (shorter than its header)")
            } else {
                e
            }
        })?;
        if &header[..8] != MAGIC {
            return Err(invalid("not a smelt document index (bad magic bytes)"));
        }
        let format = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
        if format == 0 || format > INDEX_FORMAT {
            return Err(invalid(format!(
                "document index format {format} is newer than this smelt reads ({INDEX_FORMAT}); upgrade smelt"
            )));
        }
        let flags = u32::from_le_bytes(header[12..16].try_into().expect("4 bytes"));
        let restart_bytes = if format == FORMAT_ZSTD { 0 } else { flags };
        if format != FORMAT_ZSTD && restart_bytes < MIN_RESTART_BYTES {
            return Err(invalid(format!(
                "document index has restart points {restart_bytes} bytes apart (at least {MIN_RESTART_BYTES})"
            )));
        }
        let file = BufReader::with_capacity(FILE_BUFFER, r);
        let dec = if format == FORMAT_ZSTD {
            let mut dec = zstd::stream::read::Decoder::with_buffer(file)?;
            dec.window_log_max(WINDOW_LOG_MAX)?;
            Source::Zstd(dec)
        } else {
            Source::Raw(file)
        };
        Ok(DocIndexReader {
            dec,
            buf: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
            id: Vec::new(),
            hash: [0; 16],
            entries: 0,
            repeats: false,
            done: false,
            restart_bytes: u64::from(restart_bytes),
            read_total: 0,
            restarts: Vec::new(),
        })
    }

    /// Id of the current entry (after [`advance`](Self::advance) returned true).
    pub fn id(&self) -> &[u8] {
        &self.id
    }

    /// Content hash of the current entry.
    pub fn hash(&self) -> &[u8; 16] {
        &self.hash
    }

    /// Entries read so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Whether the current entry has the same id as the previous one (a
    /// duplicate id), known without comparing ids.
    pub fn repeats_id(&self) -> bool {
        self.repeats
    }

    /// Gives the underlying reader back (positioned after what the decoder consumed).
    pub fn into_inner(self) -> R {
        match self.dec {
            Source::Raw(r) => r.into_inner(),
            Source::Zstd(d) => d.finish().into_inner(),
        }
    }

    /// Ensures `n` decoded bytes are buffered.
    fn fill(&mut self, n: usize) -> io::Result<()> {
        if self.end - self.start >= n {
            return Ok(());
        }
        // Move the few bytes left to the front: zstd decodes whole blocks
        // (128 KiB) straight into the buffer when it has room, else it
        // decodes into its own and copies.
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if self.buf.len() < n {
            self.buf.resize(n.max(READ_CHUNK), 0);
        }
        while self.end - self.start < n {
            let got = self.dec.read(&mut self.buf[self.end..])?;
            if got == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "document index is truncated"));
            }
            self.end += got;
            self.read_total += got as u64;
        }
        Ok(())
    }

    /// File offset of the next byte to decode (format 2; format 1 counts decoded bytes).
    fn offset(&self) -> u64 {
        HEADER_LEN as u64 + self.read_total - (self.end - self.start) as u64
    }

    /// Checks the footer of a format 2 file against the restart points and
    /// the end record just read (at `end`).
    fn check_footer(&mut self, end: u64) -> io::Result<()> {
        let n = self.restarts.len();
        let len =
            n.checked_mul(8).and_then(|b| b.checked_add(FOOTER_TAIL)).ok_or_else(|| invalid("footer too long"))?;
        self.fill(len).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                io::Error::new(io::ErrorKind::UnexpectedEof, "document index is truncated in its footer")
            } else {
                e
            }
        })?;
        let footer = &self.buf[self.start..self.start + len];
        let word = |i: usize| u64::from_le_bytes(footer[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        let offsets_match = self.restarts.iter().enumerate().all(|(i, &off)| word(i) == off);
        if !offsets_match || word(n) != end || word(n + 1) != self.entries || word(n + 2) != n as u64 {
            return Err(invalid("document index footer does not match its records"));
        }
        if &footer[len - 8..] != FOOTER_MAGIC {
            return Err(invalid("document index footer has bad magic bytes"));
        }
        self.start += len;
        Ok(())
    }

    fn varint(&mut self) -> io::Result<u64> {
        if self.end - self.start >= 10 {
            let b = &self.buf[self.start..self.start + 10];
            let mut v = 0u64;
            for (i, &byte) in b.iter().enumerate() {
                v |= u64::from(byte & 0x7f) << (7 * i);
                if byte < 0x80 {
                    self.start += i + 1;
                    return Ok(v);
                }
            }
            return Err(invalid("document index holds a malformed number"));
        }
        let mut v = 0u64;
        for i in 0..10 {
            self.fill(1)?;
            let byte = self.buf[self.start];
            self.start += 1;
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Ok(v);
            }
        }
        Err(invalid("document index holds a malformed number"))
    }

    /// Moves to the next entry; false at the end of the index.
    ///
    /// # Errors
    /// `InvalidData` for corrupt data or entries out of order, `UnexpectedEof`
    /// for a cut file, read failures.
    pub fn advance(&mut self) -> io::Result<bool> {
        if self.done {
            return Ok(false);
        }
        let res = self.advance_inner();
        if !matches!(res, Ok(true)) {
            self.done = true;
        }
        res
    }

    fn advance_inner(&mut self) -> io::Result<bool> {
        let at = self.offset();
        let head = self.varint()?;
        if head == 0 {
            let count = self.varint()?;
            if count != self.entries {
                return Err(invalid(format!("document index says {count} entries but holds {}", self.entries)));
            }
            if self.restart_bytes > 0 {
                self.check_footer(at)?;
            }
            let mut rest = [0u8; 1];
            if self.end > self.start || self.dec.read(&mut rest)? != 0 {
                return Err(invalid("document index has data after its end record"));
            }
            return Ok(false);
        }
        let suffix = usize::try_from(head - 1).ok().filter(|&n| n <= MAX_ID_BYTES).ok_or_else(|| {
            invalid(format!("document index holds an id of {} bytes (at most {MAX_ID_BYTES})", head - 1))
        })?;
        let shared = usize::try_from(self.varint()?).map_err(|_| invalid("document index prefix out of range"))?;
        if shared > self.id.len() {
            return Err(invalid("document index shares more bytes than the previous id has"));
        }
        if self.restart_bytes > 0 && self.restarts.last().is_none_or(|&last| at - last >= self.restart_bytes) {
            if shared != 0 {
                return Err(invalid(format!("document index restart point at byte {at} shares a prefix")));
            }
            self.restarts.push(at);
        }
        self.fill(suffix + 16)?;
        let s = self.start;
        let tail = &self.buf[s..s + suffix];
        let hash: [u8; 16] = self.buf[s + suffix..s + suffix + 16].try_into().expect("16 bytes");
        // Order against the previous entry. The writer shares the longest
        // common prefix, so the first byte after it decides (no full compare).
        let prev = &self.id[shared..];
        let id_ord = match (tail.first(), prev.first()) {
            _ if self.entries == 0 => Ordering::Greater,
            (Some(t), Some(p)) if t != p => t.cmp(p),
            (None, None) => Ordering::Equal,
            _ => tail.cmp(prev),
        };
        if id_ord.then_with(|| hash.cmp(&self.hash)) == Ordering::Less {
            return Err(invalid(format!("document index is not sorted at entry {}", self.entries)));
        }
        self.repeats = id_ord == Ordering::Equal;
        self.id.truncate(shared);
        self.id.extend_from_slice(tail);
        self.hash = hash;
        self.start = s + suffix + 16;
        self.entries += 1;
        Ok(true)
    }
}

impl<R: Read> Iterator for DocIndexReader<R> {
    type Item = io::Result<(Vec<u8>, [u8; 16])>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.advance() {
            Ok(true) => Some(Ok((self.id.clone(), self.hash))),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        }
    }
}
