//! Reading a format 2 index in place: the file mapped read-only, ids found
//! through the restart points, records decoded straight from the mapping.
//! The document diff reads its two indexes so, each split into key ranges
//! that threads join apart.
//!
//! ```text
//! file ──mmap──► header | records ... | end | footer
//!                          ▲ restart offsets (footer): binary search on their whole ids, then a scan
//!                          └── MappedRecords: one key range [from, to), decoded without a copy
//! ```
//! Memory stays flat: a cursor hands the pages it has read back to the
//! kernel every [`RELEASE_BYTES`] (they stay in the page cache), so the
//! process's resident set does not grow with the index.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use super::hashing::{block_digest, combine_blocks, Checksummer, CHECKSUM_BLOCK};
use super::{FOOTER_MAGIC, FOOTER_TAIL, FORMAT_ZSTD, HEADER_LEN, INDEX_FORMAT, MAGIC, MAX_ID_BYTES, MIN_RESTART_BYTES};

/// Bytes a cursor reads before it releases the pages behind it.
const RELEASE_BYTES: usize = 2 << 20;

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// A read-only private mapping of a whole file.
struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and owned; `&[u8]` views of it may cross threads.
unsafe impl Send for Mapping {}
// SAFETY: as above; nothing writes through the mapping.
unsafe impl Sync for Mapping {}

impl Mapping {
    fn new(file: &File) -> io::Result<Mapping> {
        let len = usize::try_from(file.metadata()?.len()).map_err(|_| invalid("document index too large to map"))?;
        if len == 0 {
            return Err(invalid("not a smelt document index (empty file)"));
        }
        // SAFETY: a fresh mapping of `len` bytes of an open file, read-only
        // and private. Index files are written once and never changed in
        // place (a new version writes a new file), so the bytes under the
        // slices below do not change while they are mapped.
        let ptr =
            unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }

    /// Drops the pages of `[from, to)` (page-aligned) from this process;
    /// reading them again faults them back in from the page cache with the
    /// same bytes (the mapping is private and never written).
    fn release(&self, from: usize, to: usize) {
        if to > from {
            // SAFETY: the range lies inside the mapping (callers align it
            // inward); MADV_DONTNEED on an unwritten private file mapping
            // only unmaps pages, their contents read the same afterwards.
            unsafe { libc::madvise(self.ptr.cast::<u8>().add(from).cast(), to - from, libc::MADV_DONTNEED) };
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps what `new` mapped; no view outlives `self`.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096).max(1)
}

/// Decodes a LEB128 varint at `*pos`, not reading at or past `limit`.
fn varint(bytes: &[u8], pos: &mut usize, limit: usize) -> io::Result<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        if *pos >= limit {
            return Err(invalid("document index record runs past its range"));
        }
        let byte = bytes[*pos];
        *pos += 1;
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Ok(v);
        }
    }
    Err(invalid("document index holds a malformed number"))
}

/// A format 2 document index mapped into memory.
///
/// ```
/// # use smelt_catalog::docindex::{encode_run, MappedIndex};
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("v.idx");
/// # std::fs::write(&path, encode_run(&mut [("b", [1; 16]), ("a", [0; 16])]).unwrap()).unwrap();
/// let index = MappedIndex::open(&std::fs::File::open(&path)?)?.expect("format 2");
/// let mut r = index.seek(b"b")?; // from the first id >= "b" to the end
/// while r.advance()? {
///     println!("{} {:02x?}", String::from_utf8_lossy(r.id()), r.hash());
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct MappedIndex {
    map: Mapping,
    restarts: Vec<usize>,
    /// Offset of the end record.
    end: usize,
    entries: u64,
    page: usize,
}

impl MappedIndex {
    /// Maps `file` and checks its header, footer and end record (the
    /// records are checked as they are read). `Ok(None)` for a format 1
    /// index, which has no restart points: read it with
    /// [`DocIndexReader`](super::DocIndexReader).
    ///
    /// # Errors
    /// `InvalidData` for a file that is not a document index, of a newer
    /// format or with a damaged footer; mapping failures.
    pub fn open(file: &File) -> io::Result<Option<MappedIndex>> {
        let map = Mapping::new(file)?;
        let b = map.bytes();
        if b.len() < HEADER_LEN || &b[..8] != MAGIC {
            return Err(invalid("not a smelt document index (bad magic bytes)"));
        }
        let word32 = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let format = word32(8);
        if format == FORMAT_ZSTD {
            return Ok(None);
        }
        if format == 0 || format > INDEX_FORMAT {
            return Err(invalid(format!(
                "document index format {format} is newer than this smelt reads ({INDEX_FORMAT}); upgrade smelt"
            )));
        }
        if word32(12) < MIN_RESTART_BYTES {
            return Err(invalid(format!("document index has restart points {} bytes apart", word32(12))));
        }
        let footer_err = || invalid("document index footer is damaged");
        if b.len() < HEADER_LEN + 2 + FOOTER_TAIL || &b[b.len() - 8..] != FOOTER_MAGIC {
            return Err(footer_err());
        }
        let word = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let tail = b.len() - FOOTER_TAIL;
        let (end, entries, n) = (word(tail), word(tail + 8), word(tail + 16));
        let offsets_at = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_mul(8))
            .and_then(|len| tail.checked_sub(len))
            .filter(|&at| at >= HEADER_LEN)
            .ok_or_else(footer_err)?;
        let end = usize::try_from(end).ok().filter(|&e| e >= HEADER_LEN && e < offsets_at).ok_or_else(footer_err)?;
        let mut pos = end;
        if varint(b, &mut pos, offsets_at)? != 0 || varint(b, &mut pos, offsets_at)? != entries || pos != offsets_at {
            return Err(footer_err());
        }
        let mut restarts = Vec::with_capacity(n as usize);
        for i in 0..n as usize {
            let off = usize::try_from(word(offsets_at + 8 * i)).map_err(|_| footer_err())?;
            let ordered = match restarts.last() {
                None => off == HEADER_LEN,
                Some(&prev) => off > prev,
            };
            if !ordered || off >= end {
                return Err(footer_err());
            }
            restarts.push(off);
        }
        if (entries == 0) != restarts.is_empty() || (restarts.is_empty() && end != HEADER_LEN) {
            return Err(footer_err());
        }
        Ok(Some(MappedIndex { map, restarts, end, entries, page: page_size() }))
    }

    /// Entries the index holds (its end record's count).
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Size of the file in bytes.
    pub fn file_bytes(&self) -> usize {
        self.map.len
    }

    /// Byte count and checksum (of the kind `recorded` is) of the whole
    /// file, hashed from the mapping in one pass, releasing the pages as it
    /// goes. The document diff hashes block checksums inside its join
    /// instead ([`key_ranges`](Self::key_ranges)).
    pub fn checksum(&self, recorded: &str) -> (u64, String) {
        let mut sum = Checksummer::like(recorded);
        let b = self.map.bytes();
        let mut released = 0;
        for (i, chunk) in b.chunks(RELEASE_BYTES).enumerate() {
            sum.update(chunk);
            let done = (i * RELEASE_BYTES + chunk.len()) / self.page * self.page;
            self.map.release(released, done);
            released = done;
        }
        (b.len() as u64, sum.finish())
    }

    /// Cursors over the key ranges that `keys` (increasing) cut the index
    /// into: the first from the start, each ending where the next begins, so
    /// all entries of an id are in one range. With `hash_blocks`, each
    /// cursor also hashes the checksum blocks that start in its range (the
    /// first from the file's start, the last to its end) as it reads them:
    /// [`block_checksum`](Self::block_checksum) combines them.
    ///
    /// # Errors
    /// Damaged records where a key is sought.
    pub fn key_ranges(&self, keys: &[Vec<u8>], hash_blocks: bool) -> io::Result<Vec<MappedRecords<'_>>> {
        let mut starts = vec![self.records()];
        for k in keys {
            starts.push(self.seek(k)?);
        }
        let ends: Vec<usize> = starts[1..].iter().map(MappedRecords::position).chain([usize::MAX]).collect();
        let n = starts.len();
        let blocks = |off: usize| off.div_ceil(CHECKSUM_BLOCK);
        Ok(starts
            .into_iter()
            .zip(ends)
            .enumerate()
            .map(|(i, (c, end))| {
                let mut c = c.until(end);
                if hash_blocks {
                    let first = if i == 0 { 0 } else { blocks(c.pos) };
                    let last = if i + 1 == n { blocks(self.map.len) } else { blocks(c.to) };
                    c.blocks = Some(BlockWork { next: first, end: last, digests: Vec::new() });
                    c.set_checkpoint();
                }
                c
            })
            .collect())
    }

    /// Byte count and block checksum of the file from the digests of the
    /// cursors [`key_ranges`](Self::key_ranges) gave (in their order), each
    /// read to its end or [`finish_blocks`](MappedRecords::finish_blocks)ed.
    pub fn block_checksum<'r>(&self, ranges: impl IntoIterator<Item = &'r [[u8; 16]]>) -> (u64, String) {
        (self.map.len as u64, combine_blocks(ranges.into_iter().flatten()))
    }

    /// Restart points the index has (one per `restart_bytes` of records).
    pub fn restart_points(&self) -> usize {
        self.restarts.len()
    }

    /// The whole id of the restart record at `off`.
    fn restart_id(&self, off: usize) -> io::Result<&[u8]> {
        let b = self.map.bytes();
        let mut pos = off;
        let head = varint(b, &mut pos, self.end)?;
        let shared = varint(b, &mut pos, self.end)?;
        if head == 0 || shared != 0 {
            return Err(invalid(format!("document index restart point at byte {off} is not a whole record")));
        }
        let len = usize::try_from(head - 1).ok().filter(|&n| n <= MAX_ID_BYTES && pos + n + 16 <= self.end);
        let len = len.ok_or_else(|| invalid(format!("document index record at byte {off} runs past its end")))?;
        Ok(&b[pos..pos + len])
    }

    /// Up to `parts - 1` ids that cut the index into `parts` ranges of
    /// about equal size (restart ids, increasing). Fewer for small indexes.
    ///
    /// # Errors
    /// A damaged restart record.
    pub fn split_keys(&self, parts: usize) -> io::Result<Vec<Vec<u8>>> {
        let n = self.restarts.len();
        let mut keys: Vec<Vec<u8>> = Vec::new();
        for p in 1..parts.max(1) {
            let i = n * p / parts;
            if i == 0 {
                continue;
            }
            let id = self.restart_id(self.restarts[i])?;
            if keys.last().is_none_or(|k| k.as_slice() < id) {
                keys.push(id.to_vec());
            }
        }
        Ok(keys)
    }

    /// A cursor over every record.
    pub fn records(&self) -> MappedRecords<'_> {
        self.cursor(self.restarts.first().copied().unwrap_or(self.end))
    }

    fn cursor(&self, from: usize) -> MappedRecords<'_> {
        MappedRecords {
            index: self,
            bytes: self.map.bytes(),
            pos: from,
            to: self.end,
            id: Vec::new(),
            id_len: 0,
            hash: [0; 16],
            entries: 0,
            repeats: false,
            first: true,
            released: from.next_multiple_of(self.page),
            checkpoint: from.next_multiple_of(self.page) + RELEASE_BYTES,
            blocks: None,
        }
    }

    /// A cursor from the first record whose id is `key` or after it, to the end.
    ///
    /// # Errors
    /// Damaged records on the way.
    pub fn seek(&self, key: &[u8]) -> io::Result<MappedRecords<'_>> {
        // The last restart point with an id before `key`.
        let (mut lo, mut hi) = (0, self.restarts.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.restart_id(self.restarts[mid])? < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == 0 {
            return Ok(self.records());
        }
        let mut r = self.cursor(self.restarts[lo - 1]);
        loop {
            let before = (r.pos, r.id.clone(), r.id_len, r.hash, r.first);
            if !r.advance()? || r.id() >= key {
                (r.pos, r.id, r.id_len, r.hash, r.first) = before;
                r.released = r.pos.next_multiple_of(self.page);
                r.entries = 0;
                r.set_checkpoint();
                return Ok(r);
            }
        }
    }
}

/// A cursor over a range of a [`MappedIndex`]'s records, decoding them in
/// place.
///
/// It checks that each record lies whole inside the range, not that the
/// records are in order (the [`DocIndexReader`](super::DocIndexReader)
/// does): the document diff reads indexes it also checks against their
/// recorded checksums, which proves the bytes are those the writer wrote,
/// and the writer refuses entries out of order. Damaged bytes therefore
/// never pass unnoticed there, and never make a cursor panic or loop.
pub struct MappedRecords<'a> {
    index: &'a MappedIndex,
    /// The whole mapping.
    bytes: &'a [u8],
    pos: usize,
    to: usize,
    /// The current id is `id[..id_len]`; the buffer has room to copy 64
    /// bytes at once past any prefix it keeps.
    id: Vec<u8>,
    id_len: usize,
    hash: [u8; 16],
    entries: u64,
    repeats: bool,
    /// No record before this one in the range.
    first: bool,
    /// Pages before this offset have been released.
    released: usize,
    /// Where the next block is complete or the next pages are due to be released.
    checkpoint: usize,
    /// The checksum blocks this cursor hashes, if it does.
    blocks: Option<BlockWork>,
}

/// Checksum blocks a cursor hashes: `next..end`, and the digests so far.
struct BlockWork {
    next: usize,
    end: usize,
    digests: Vec<[u8; 16]>,
}

impl MappedRecords<'_> {
    /// File offset of the next record.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Ends the range before the record at `to` (a [`position`](Self::position)
    /// of another cursor on the same index, at or after this one's).
    pub fn until(mut self, to: usize) -> Self {
        self.to = to.min(self.index.end);
        self
    }

    /// Id of the current record.
    #[inline]
    pub fn id(&self) -> &[u8] {
        &self.id[..self.id_len]
    }

    /// Content hash of the current record.
    #[inline]
    pub fn hash(&self) -> &[u8; 16] {
        &self.hash
    }

    /// Whether the current record has the previous record's id.
    #[inline]
    pub fn repeats_id(&self) -> bool {
        self.repeats
    }

    /// Records read by this cursor.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Moves to the next record of the range; false at its end.
    ///
    /// # Errors
    /// `InvalidData` for a record that is damaged or crosses the range's end.
    #[inline]
    pub fn advance(&mut self) -> io::Result<bool> {
        // The common record, decoded inline: both numbers in one byte each,
        // a prefix shared with the previous id (so not a restart point, and
        // not a repeated id across one), a suffix of at most 64 bytes that is
        // copied with one fixed-size copy, and room to do so.
        let (b, at) = (self.bytes, self.pos);
        if at + 2 <= self.to && b[at] < 0x80 && b[at + 1] < 0x80 {
            let (head, shared) = (usize::from(b[at]), usize::from(b[at + 1]));
            let pos = at + 2;
            if head > 0
                && shared > 0
                && shared <= self.id_len
                && head <= 65
                && pos + head + 15 <= self.to
                && pos + 64 <= b.len()
                && shared + 64 <= self.id.len()
            {
                let suffix = head - 1;
                self.repeats = suffix == 0 && shared == self.id_len;
                self.id[shared..shared + 64].copy_from_slice(&b[pos..pos + 64]);
                return Ok(self.took(shared + suffix, pos + suffix));
            }
        }
        self.advance_slow()
    }

    /// [`advance`](Self::advance) for every other record, and the range's end.
    #[cold]
    fn advance_slow(&mut self) -> io::Result<bool> {
        if self.pos >= self.to {
            if self.pos > self.to {
                return Err(invalid("document index record crosses a range boundary"));
            }
            self.finish_blocks();
            self.release(self.to);
            return Ok(false);
        }
        let b = self.bytes;
        let at = self.pos;
        let mut pos = at;
        let head = varint(b, &mut pos, self.to)?;
        if head == 0 {
            return Err(invalid(format!("document index has an end record at byte {at}, before its end")));
        }
        let shared = varint(b, &mut pos, self.to)?;
        let suffix = usize::try_from(head - 1).ok().filter(|&n| n <= MAX_ID_BYTES).ok_or_else(|| {
            invalid(format!("document index holds an id of {} bytes (at most {MAX_ID_BYTES})", head - 1))
        })?;
        let shared = usize::try_from(shared)
            .ok()
            .filter(|&s| s <= self.id_len)
            .ok_or_else(|| invalid("document index shares more bytes than the previous id has"))?;
        if pos + suffix + 16 > self.to {
            return Err(invalid(format!("document index record at byte {at} runs past its range")));
        }
        // The writer shares the longest common prefix, so an id equal to the
        // previous one has no suffix, except at a restart point (shared 0).
        self.repeats = !self.first
            && ((suffix == 0 && shared == self.id_len)
                || (shared == 0 && b[pos..pos + suffix] == self.id[..self.id_len]));
        let len = shared + suffix;
        // Room for the inline path's 64-byte copies after this id's prefixes.
        if self.id.len() < len + 64 {
            self.id.resize(len + 64, 0);
        }
        self.id[shared..len].copy_from_slice(&b[pos..pos + suffix]);
        Ok(self.took(len, pos + suffix))
    }

    /// Ends a decoded record: its id is `id[..len]` (copied in), its hash at
    /// `hash_at`; true.
    #[inline(always)]
    fn took(&mut self, len: usize, hash_at: usize) -> bool {
        self.id_len = len;
        self.hash = self.bytes[hash_at..hash_at + 16].try_into().expect("16 bytes");
        self.first = false;
        self.pos = hash_at + 16;
        self.entries += 1;
        if self.pos >= self.checkpoint {
            self.at_checkpoint();
        }
        true
    }

    /// Hashes the blocks the cursor has read whole, releases the pages it
    /// has read when they are due, and sets the next checkpoint.
    #[cold]
    fn at_checkpoint(&mut self) {
        if let Some(w) = &mut self.blocks {
            while w.next < w.end && (w.next + 1) * CHECKSUM_BLOCK <= self.pos {
                let from = w.next * CHECKSUM_BLOCK;
                w.digests.push(block_digest(&self.bytes[from..(from + CHECKSUM_BLOCK).min(self.bytes.len())]));
                w.next += 1;
            }
        }
        if self.pos >= self.released + RELEASE_BYTES {
            // Not past the block still to hash: hashing it would map those pages again, for good.
            let unhashed =
                self.blocks.as_ref().filter(|w| w.next < w.end).map_or(usize::MAX, |w| w.next * CHECKSUM_BLOCK);
            self.release(self.pos.min(unhashed));
        }
        self.set_checkpoint();
    }

    fn set_checkpoint(&mut self) {
        let block =
            self.blocks.as_ref().filter(|w| w.next < w.end).map_or(usize::MAX, |w| (w.next + 1) * CHECKSUM_BLOCK);
        self.checkpoint = block.min(self.released + RELEASE_BYTES);
    }

    /// Hashes the checksum blocks of the range not hashed yet, read or not
    /// (at the range's end, or after a join stopped early, so that a damaged
    /// file is told by its checksum).
    pub fn finish_blocks(&mut self) {
        if let Some(w) = &mut self.blocks {
            while w.next < w.end {
                let from = w.next * CHECKSUM_BLOCK;
                w.digests.push(block_digest(&self.bytes[from..(from + CHECKSUM_BLOCK).min(self.bytes.len())]));
                w.next += 1;
            }
        }
        self.checkpoint = usize::MAX;
    }

    /// Digests of the checksum blocks hashed so far.
    pub fn block_digests(&self) -> &[[u8; 16]] {
        self.blocks.as_ref().map_or(&[], |w| &w.digests)
    }

    /// Releases the whole pages between the last release and `upto`.
    fn release(&mut self, upto: usize) {
        let to = upto - upto % self.index.page;
        if to > self.released {
            self.index.map.release(self.released, to);
            self.released = to;
        }
    }
}
