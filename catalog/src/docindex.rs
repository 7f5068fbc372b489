//! Document indexes: the `(id, content_hash)` of every row of a split or of a
//! version, sorted by id, so that two versions are diffed by one merge join
//! that never reads the shards (the document diff of `smelt-query`).
//!
//! ```text
//! sink batches ──► RunBuilder (sorts in memory; past a budget spills sorted runs to temp files)
//!                     │  before the split's completion record
//!                     ▼
//!   runs/<run>/index/SSSSS.idx         one sorted run per split
//!                     │  commit_run: k-way merge, at most 64 runs at a time (more passes if needed)
//!                     ▼
//!   _versions/NNNNNN-<run>.idx         one sorted index per version, named in its manifest (`doc_index`)
//! ```
//! Memory stays flat: a builder holds at most its budget, a merge holds one
//! decoder and one entry per input run, a reader one entry.
//!
//! # File format (version 1)
//! ```text
//! header   b"SMELTDIX" | format: u32 LE (1) | flags: u32 LE (0)
//! body     one zstd frame (window ≤ 128 KiB) of
//!            record*  varint(suffix_len + 1) varint(shared) suffix hash[16]
//!            end      varint(0) varint(entries)
//! ```
//! `shared` is the number of leading id bytes the record shares with the
//! previous record's id (prefix coding: sorted ids share long prefixes; the
//! writer takes the longest common prefix, a reader accepts any), the id is
//! those bytes followed by `suffix`. Records are sorted by (id bytes,
//! hash); an id may repeat (a dataset may hold duplicate ids). Varints are
//! LEB128. The end record with the entry count makes a cut file an error
//! rather than a shorter index.

use std::cmp::Ordering;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::{path::Path as ObjectPath, ObjectStore, ObjectStoreExt, WriteMultipart};

use crate::error::{CatalogError, Result};
use crate::model::{DocIndexRef, SplitRecord};
use crate::store::DatasetStore;

/// First bytes of every document index file.
pub const MAGIC: &[u8; 8] = b"SMELTDIX";
/// Format version written (and the newest one read).
pub const INDEX_FORMAT: u32 = 1;
/// zstd level of the indexes smelt stores. A negative ("fast") level keeps
/// zstd's matching but stores literals as they are: the random hashes and ids
/// hardly compress (level 3 saves about 20%), and reading then costs a third
/// of the time, which is what the diff is waiting on.
pub const DEFAULT_LEVEL: i32 = -1;
/// Runs merged at once; more runs take more passes.
pub const MERGE_FAN_IN: usize = 64;
/// Bytes a [`RunBuilder`] holds in memory before it spills a sorted run.
pub const DEFAULT_RUN_BUDGET: usize = 16 << 20;

const HEADER_LEN: usize = 16;
/// zstd window of the writer: small, so that a 64-way merge decodes in a few MiB.
const WINDOW_LOG: u32 = 17;
/// Largest window a reader accepts.
const WINDOW_LOG_MAX: u32 = 22;
const WRITE_CHUNK: usize = 64 << 10;
/// Decoded bytes buffered per reader: room for a zstd block and the record it cuts.
const READ_CHUNK: usize = 192 << 10;
/// Compressed bytes read from the file at once.
const FILE_BUFFER: usize = 64 << 10;
/// Spills and intermediate merge passes.
const INTERMEDIATE_LEVEL: i32 = -1;

/// Path of split `split`'s sorted run, relative to the dataset root.
pub fn split_index_path(run_id: &str, split: u32) -> String {
    format!("runs/{run_id}/index/{split:05}.idx")
}

/// Path of a version's index, relative to the dataset root. The run id is in
/// the name because two committers may race for the same version number: the
/// loser must not overwrite the winner's index (the manifest is create-only,
/// the index cannot be: it is written first).
pub fn version_index_path(version: u64, run_id: &str) -> String {
    format!("_versions/{version:06}-{run_id}.idx")
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
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
    dec: zstd::stream::read::Decoder<'static, BufReader<R>>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    id: Vec<u8>,
    hash: [u8; 16],
    entries: u64,
    repeats: bool,
    done: bool,
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
        if format > INDEX_FORMAT {
            return Err(invalid(format!(
                "document index format {format} is newer than this smelt reads ({INDEX_FORMAT}); upgrade smelt"
            )));
        }
        let mut dec = zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(FILE_BUFFER, r))?;
        dec.window_log_max(WINDOW_LOG_MAX)?;
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
        self.dec.finish().into_inner()
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
        }
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
        let head = self.varint()?;
        if head == 0 {
            let count = self.varint()?;
            if count != self.entries {
                return Err(invalid(format!("document index says {count} entries but holds {}", self.entries)));
            }
            let mut rest = [0u8; 1];
            if self.end > self.start || self.dec.read(&mut rest)? != 0 {
                return Err(invalid("document index has data after its end record"));
            }
            return Ok(false);
        }
        let suffix = usize::try_from(head - 1).map_err(|_| invalid("document index id length out of range"))?;
        let shared = usize::try_from(self.varint()?).map_err(|_| invalid("document index prefix out of range"))?;
        if shared > self.id.len() {
            return Err(invalid("document index shares more bytes than the previous id has"));
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

/// A uniquely named temporary directory, removed with everything in it on drop.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates `smelt-docindex-<pid>-<n>` under `base` (created if missing).
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn new_in(base: &Path) -> io::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        std::fs::create_dir_all(base)?;
        loop {
            let n = NEXT.fetch_add(1, AtomicOrdering::Relaxed);
            let nanos =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
            let path = base.join(format!("smelt-docindex-{}-{n}-{nanos}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(ScratchDir { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Creates one under the system's temporary directory.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn new() -> io::Result<Self> {
        Self::new_in(&std::env::temp_dir())
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Collects the entries of one split in any order and writes them as one
/// sorted run. Holds at most its budget in memory: past it, the entries so far
/// are sorted and spilled to a temporary file, and [`finish_to`](Self::finish_to)
/// merges the spills.
#[derive(Debug)]
pub struct RunBuilder {
    ids: Vec<u8>,
    starts: Vec<usize>,
    hashes: Vec<[u8; 16]>,
    budget: usize,
    spill_base: PathBuf,
    scratch: Option<ScratchDir>,
    spills: Vec<PathBuf>,
    entries: u64,
}

impl Default for RunBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl RunBuilder {
    /// A builder with the default budget, spilling under the system's temporary directory.
    pub fn new() -> Self {
        Self::with_budget(DEFAULT_RUN_BUDGET, std::env::temp_dir())
    }

    /// A builder holding about `budget` bytes before it spills under `spill_base`.
    pub fn with_budget(budget: usize, spill_base: PathBuf) -> Self {
        RunBuilder {
            ids: Vec::new(),
            starts: Vec::new(),
            hashes: Vec::new(),
            budget,
            spill_base,
            scratch: None,
            spills: Vec::new(),
            entries: 0,
        }
    }

    /// Entries pushed so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Sorted runs spilled to disk so far.
    pub fn spills(&self) -> usize {
        self.spills.len()
    }

    /// Adds one entry.
    ///
    /// # Errors
    /// Spilling to disk failed.
    pub fn push(&mut self, id: &[u8], hash: &[u8; 16]) -> io::Result<()> {
        self.starts.push(self.ids.len());
        self.ids.extend_from_slice(id);
        self.hashes.push(*hash);
        self.entries += 1;
        // ids, their starts, hashes, and the sort's permutation.
        if self.ids.len() + self.hashes.len() * 28 >= self.budget {
            self.spill()?;
        }
        Ok(())
    }

    fn sorted_order(&self) -> Vec<u32> {
        let id = |i: u32| {
            let i = i as usize;
            let end = self.starts.get(i + 1).copied().unwrap_or(self.ids.len());
            &self.ids[self.starts[i]..end]
        };
        let mut order: Vec<u32> = (0..self.hashes.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| {
            id(a).cmp(id(b)).then_with(|| self.hashes[a as usize].cmp(&self.hashes[b as usize]))
        });
        order
    }

    fn write_memory<W: Write>(&self, w: &mut DocIndexWriter<W>) -> io::Result<()> {
        for i in self.sorted_order() {
            let i = i as usize;
            let end = self.starts.get(i + 1).copied().unwrap_or(self.ids.len());
            w.push(&self.ids[self.starts[i]..end], &self.hashes[i])?;
        }
        Ok(())
    }

    fn spill(&mut self) -> io::Result<()> {
        if self.hashes.is_empty() {
            return Ok(());
        }
        if self.scratch.is_none() {
            self.scratch = Some(ScratchDir::new_in(&self.spill_base)?);
        }
        let dir = self.scratch.as_ref().expect("scratch").path();
        let path = dir.join(format!("spill-{:06}.idx", self.spills.len()));
        let mut w = DocIndexWriter::with_level(BufWriter::new(File::create(&path)?), INTERMEDIATE_LEVEL)?;
        self.write_memory(&mut w)?;
        w.finish()?.flush()?;
        self.spills.push(path);
        self.ids = Vec::new();
        self.starts = Vec::new();
        self.hashes = Vec::new();
        Ok(())
    }

    /// Writes every entry pushed, sorted, as one index on `w`; returns `w` and the entry count.
    ///
    /// # Errors
    /// Reading spills or writing `w`.
    pub fn finish_to<W: Write>(mut self, w: W) -> io::Result<(W, u64)> {
        if self.spills.is_empty() {
            let mut out = DocIndexWriter::new(w)?;
            self.write_memory(&mut out)?;
            let n = out.entries();
            return Ok((out.finish()?, n));
        }
        self.spill()?;
        let scratch = self.scratch.as_ref().expect("spilled").path().to_path_buf();
        let (w, n) = merge_files(&self.spills, w, &scratch)?;
        if n != self.entries {
            return Err(io::Error::other(format!("merged {n} document index entries of {}", self.entries)));
        }
        Ok((w, n))
    }

    /// Finishes into memory when nothing was spilled (at most about the budget),
    /// else into a file in a new scratch directory.
    ///
    /// # Errors
    /// As [`finish_to`](Self::finish_to).
    pub fn finish(self) -> io::Result<FinishedRun> {
        if self.spills.is_empty() {
            let (mut w, entries) = self.finish_to(HashingWriter::new(Vec::new()))?;
            let checksum = w.checksum();
            let bytes = Bytes::from(std::mem::take(&mut w.inner));
            return Ok(FinishedRun::Memory { bytes, entries, checksum });
        }
        let dir = ScratchDir::new_in(&self.spill_base)?;
        let path = dir.path().join("run.idx");
        let (w, entries) = self.finish_to(HashingWriter::new(BufWriter::new(File::create(&path)?)))?;
        let (mut inner, len, checksum) = w.into_parts();
        inner.flush()?;
        Ok(FinishedRun::File { dir, path, entries, bytes: len, checksum })
    }
}

/// A finished sorted run, ready to store with [`put_run`].
#[derive(Debug)]
pub enum FinishedRun {
    /// Small enough to stay in memory.
    Memory {
        /// The encoded index.
        bytes: Bytes,
        /// Entries.
        entries: u64,
        /// `xxh3-128:<hex>` of `bytes`.
        checksum: String,
    },
    /// Written to a temporary file (removed when this value is dropped).
    File {
        /// Owns the file.
        dir: ScratchDir,
        /// The encoded index.
        path: PathBuf,
        /// Entries.
        entries: u64,
        /// File size.
        bytes: u64,
        /// `xxh3-128:<hex>` of the file.
        checksum: String,
    },
}

/// Merges sorted index files into one on `out`, at most [`MERGE_FAN_IN`] at a
/// time: with more inputs, earlier passes merge groups into files under
/// `scratch`. Duplicate entries are all kept. Returns `out` and the entry count.
///
/// # Errors
/// Reading an input (with its path in the message) or writing `out`.
pub fn merge_files<W: Write>(inputs: &[PathBuf], out: W, scratch: &Path) -> io::Result<(W, u64)> {
    merge_files_with(inputs, out, scratch, MERGE_FAN_IN)
}

fn with_path(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn open_index(path: &Path) -> io::Result<DocIndexReader<File>> {
    File::open(path).and_then(DocIndexReader::new).map_err(|e| with_path(path, e))
}

fn merge_files_with<W: Write>(inputs: &[PathBuf], out: W, scratch: &Path, fan_in: usize) -> io::Result<(W, u64)> {
    let fan_in = fan_in.max(2);
    // (path, whether it is ours): intermediate files are removed once merged.
    let mut level: Vec<(PathBuf, bool)> = inputs.iter().map(|p| (p.clone(), false)).collect();
    let remove = |group: &[(PathBuf, bool)]| {
        for (p, owned) in group {
            if *owned {
                let _ = std::fs::remove_file(p);
            }
        }
    };
    let mut made = 0;
    while level.len() > fan_in {
        // Merge just enough runs that the rest fits in one final merge (with
        // 100 runs: 37 first, not all 100 twice); with many more, full groups.
        let take = (level.len() - fan_in + 1).min(fan_in);
        let group: Vec<(PathBuf, bool)> = level.drain(..take).collect();
        let path = scratch.join(format!("merge-{made:06}.idx"));
        made += 1;
        let file = BufWriter::new(File::create(&path).map_err(|e| with_path(&path, e))?);
        let mut w = DocIndexWriter::with_level(file, INTERMEDIATE_LEVEL)?;
        let paths: Vec<PathBuf> = group.iter().map(|(p, _)| p.clone()).collect();
        merge_group(&paths, &mut w)?;
        w.finish()?.flush()?;
        remove(&group);
        level.push((path, true));
    }
    let mut w = DocIndexWriter::new(out)?;
    let paths: Vec<PathBuf> = level.iter().map(|(p, _)| p.clone()).collect();
    merge_group(&paths, &mut w)?;
    let n = w.entries();
    let out = w.finish()?;
    remove(&level);
    Ok((out, n))
}

fn merge_group<W: Write>(paths: &[PathBuf], w: &mut DocIndexWriter<W>) -> io::Result<()> {
    let mut readers = Vec::with_capacity(paths.len());
    for p in paths {
        readers.push((open_index(p)?, p.as_path()));
    }
    merge_readers(&mut readers, w)
}

/// k-way merge of sorted readers with a loser tree: one comparison per level
/// (log2 k) for each entry, half of what a binary heap needs.
fn merge_readers<R: Read, W: Write>(
    readers: &mut [(DocIndexReader<R>, &Path)],
    w: &mut DocIndexWriter<W>,
) -> io::Result<()> {
    let k = readers.len();
    if k == 0 {
        return Ok(());
    }
    let mut live = Vec::with_capacity(k);
    for (r, p) in readers.iter_mut() {
        live.push(r.advance().map_err(|e| with_path(p, e))?);
    }
    // Whether reader `a`'s entry comes before reader `b`'s (exhausted readers last).
    let before = |readers: &[(DocIndexReader<R>, &Path)], live: &[bool], a: usize, b: usize| -> bool {
        match (live[a], live[b]) {
            (true, true) => {
                let (ra, rb) = (&readers[a].0, &readers[b].0);
                ra.id().cmp(rb.id()).then_with(|| ra.hash().cmp(rb.hash())).then(a.cmp(&b)) == Ordering::Less
            }
            (x, _) => x,
        }
    };
    // tree[0]: the winner; tree[1..k]: the loser of each match; leaf i sits at k + i.
    let mut tree = vec![0usize; k.max(1)];
    fn build<R: Read>(
        node: usize,
        k: usize,
        tree: &mut [usize],
        before: &impl Fn(&[(DocIndexReader<R>, &Path)], &[bool], usize, usize) -> bool,
        readers: &[(DocIndexReader<R>, &Path)],
        live: &[bool],
    ) -> usize {
        if node >= k {
            return node - k;
        }
        let l = build(2 * node, k, tree, before, readers, live);
        let r = build(2 * node + 1, k, tree, before, readers, live);
        if before(readers, live, l, r) {
            tree[node] = r;
            l
        } else {
            tree[node] = l;
            r
        }
    }
    tree[0] = build(1, k, &mut tree, &before, readers, &live);
    loop {
        let top = tree[0];
        if !live[top] {
            return Ok(());
        }
        {
            let r = &readers[top].0;
            w.push(r.id(), r.hash())?;
        }
        let (r, p) = &mut readers[top];
        live[top] = r.advance().map_err(|e| with_path(p, e))?;
        // Replay the matches on the way from the leaf to the root.
        let mut winner = top;
        let mut node = (top + k) / 2;
        while node >= 1 {
            if before(readers, &live, tree[node], winner) {
                std::mem::swap(&mut tree[node], &mut winner);
            }
            node /= 2;
        }
        tree[0] = winner;
    }
}

/// A writer that counts and hashes (xxh3-128) what goes through it.
pub struct HashingWriter<W> {
    inner: W,
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

// ---------------------------------------------------------------------------
// Moving index files between dataset storage and local files.
//
// `DatasetStore` reads and writes whole objects in memory; a version index of
// 10M documents is hundreds of MiB, so large files go through these helpers:
// local roots are read and written in place, object stores stream (multipart
// upload, streamed download).

enum Backing {
    /// A local directory: files are used in place.
    Local(PathBuf),
    /// An object store opened from the same URL as the `DatasetStore`.
    Remote { store: Arc<dyn ObjectStore>, prefix: ObjectPath },
    /// `memory://` (one instance per `DatasetStore`): whole objects through the store.
    Whole,
}

fn backing(store: &DatasetStore) -> Result<Backing> {
    let url = store.url();
    if !url.contains("://") {
        return Ok(Backing::Local(PathBuf::from(url)));
    }
    let parsed = url::Url::parse(url).map_err(|e| CatalogError::User(format!("invalid storage URL `{url}`: {e}")))?;
    match parsed.scheme() {
        "file" => {
            let p = parsed.to_file_path().map_err(|()| CatalogError::User(format!("`{url}` is not a local path")))?;
            Ok(Backing::Local(p))
        }
        "memory" => Ok(Backing::Whole),
        _ => {
            let (s, prefix) = object_store::parse_url(&parsed)
                .map_err(|source| CatalogError::Storage { location: url.to_string(), source })?;
            Ok(Backing::Remote { store: Arc::from(s), prefix })
        }
    }
}

fn object_path(prefix: &ObjectPath, rel: &str) -> ObjectPath {
    let mut p = prefix.clone();
    for part in rel.split('/').filter(|s| !s.is_empty()) {
        p = p.join(part);
    }
    p
}

/// Maps a local I/O error on `location`: undecodable data is `Corrupt`, the rest `Storage`.
pub fn io_error(location: &str, e: io::Error) -> CatalogError {
    match e.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => {
            CatalogError::Corrupt { location: location.to_string(), message: e.to_string() }
        }
        _ => CatalogError::Storage {
            location: location.to_string(),
            source: object_store::Error::Generic { store: "local file", source: Box::new(e) },
        },
    }
}

fn join_err(e: tokio::task::JoinError) -> CatalogError {
    CatalogError::Internal(format!("document index worker failed: {e}"))
}

/// Stores a finished run at `rel`, returning its reference.
///
/// # Errors
/// Storage failures.
pub async fn put_run(store: &DatasetStore, rel: &str, run: FinishedRun) -> Result<DocIndexRef> {
    match run {
        FinishedRun::Memory { bytes, entries, checksum } => {
            let len = bytes.len() as u64;
            store.put(rel, bytes).await?;
            Ok(DocIndexRef { path: rel.to_string(), entries, bytes: len, checksum })
        }
        FinishedRun::File { dir, path, entries, bytes, checksum } => {
            put_file(store, rel, &path, bytes).await?;
            drop(dir);
            Ok(DocIndexRef { path: rel.to_string(), entries, bytes, checksum })
        }
    }
}

/// Stores the local file `src` (of `len` bytes) at `rel`. On a local root the
/// file is moved there (copied across file systems).
async fn put_file(store: &DatasetStore, rel: &str, src: &Path, len: u64) -> Result<()> {
    const WHOLE_MAX: u64 = 8 << 20;
    let location = format!("{}/{rel}", store.url());
    match backing(store)? {
        Backing::Local(root) => {
            let dst = root.join(rel);
            let src = src.to_path_buf();
            tokio::task::spawn_blocking(move || -> io::Result<()> {
                if let Some(parent) = dst.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                if std::fs::rename(&src, &dst).is_err() {
                    // Another file system: copy to a temporary name, then rename (never a partial file).
                    let tmp = dst.with_extension("idx.partial");
                    std::fs::copy(&src, &tmp)?;
                    std::fs::rename(&tmp, &dst)?;
                }
                Ok(())
            })
            .await
            .map_err(join_err)?
            .map_err(|e| io_error(&location, e))
        }
        Backing::Remote { .. } | Backing::Whole if len <= WHOLE_MAX => {
            let bytes = tokio::fs::read(src).await.map_err(|e| io_error(&src.display().to_string(), e))?;
            store.put(rel, Bytes::from(bytes)).await
        }
        Backing::Whole => {
            let bytes = tokio::fs::read(src).await.map_err(|e| io_error(&src.display().to_string(), e))?;
            store.put(rel, Bytes::from(bytes)).await
        }
        Backing::Remote { store: os, prefix } => {
            use tokio::io::AsyncReadExt;
            let to = object_path(&prefix, rel);
            let storage = |source| CatalogError::Storage { location: location.clone(), source };
            let mut file = tokio::fs::File::open(src).await.map_err(|e| io_error(&src.display().to_string(), e))?;
            let mut upload =
                WriteMultipart::new_with_chunk_size(os.put_multipart(&to).await.map_err(storage)?, 8 << 20);
            let mut chunk = vec![0u8; 1 << 20];
            loop {
                let n = match file.read(&mut chunk).await {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = upload.abort().await;
                        return Err(io_error(&src.display().to_string(), e));
                    }
                };
                if n == 0 {
                    break;
                }
                if let Err(e) = upload.wait_for_capacity(4).await {
                    let _ = upload.abort().await;
                    return Err(storage(e));
                }
                upload.write(&chunk[..n]);
            }
            upload.finish().await.map_err(storage)?;
            Ok(())
        }
    }
}

/// A stored index as a local file: the file itself on a local root, else a
/// downloaded copy in the scratch directory it was fetched into.
async fn fetch(store: &DatasetStore, r: &DocIndexRef, scratch: &Path, name: &str) -> Result<PathBuf> {
    let location = format!("{}/{}", store.url(), r.path);
    match backing(store)? {
        Backing::Local(root) => {
            let p = root.join(&r.path);
            if !tokio::fs::try_exists(&p).await.unwrap_or(false) {
                return Err(CatalogError::Corrupt {
                    location,
                    message: "the document index listed in the catalog is missing from storage".into(),
                });
            }
            Ok(p)
        }
        Backing::Whole => {
            let bytes = store.get(&r.path).await?.ok_or_else(|| CatalogError::Corrupt {
                location: location.clone(),
                message: "the document index listed in the catalog is missing from storage".into(),
            })?;
            let to = scratch.join(name);
            tokio::fs::write(&to, &bytes).await.map_err(|e| io_error(&to.display().to_string(), e))?;
            Ok(to)
        }
        Backing::Remote { store: os, prefix } => {
            use tokio::io::AsyncWriteExt;
            let from = object_path(&prefix, &r.path);
            let got = os.get(&from).await.map_err(|source| match source {
                object_store::Error::NotFound { .. } => CatalogError::Corrupt {
                    location: location.clone(),
                    message: "the document index listed in the catalog is missing from storage".into(),
                },
                source => CatalogError::Storage { location: location.clone(), source },
            })?;
            let to = scratch.join(name);
            let local = |e| io_error(&to.display().to_string(), e);
            let mut file = tokio::fs::File::create(&to).await.map_err(local)?;
            let mut stream = got.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|source| CatalogError::Storage { location: location.clone(), source })?;
                file.write_all(&chunk).await.map_err(local)?;
            }
            file.flush().await.map_err(local)?;
            Ok(to)
        }
    }
}

/// Checks a local copy of `r` against its recorded size and checksum.
fn verify(path: &Path, r: &DocIndexRef, location: &str) -> Result<()> {
    let f = File::open(path).map_err(|e| io_error(location, e))?;
    let (len, checksum) =
        HashingReader::new(BufReader::with_capacity(1 << 20, f)).finish().map_err(|e| io_error(location, e))?;
    if len != r.bytes || checksum != r.checksum {
        return Err(CatalogError::Corrupt {
            location: location.to_string(),
            message: format!(
                "{len} bytes with checksum {checksum}, but {} bytes with {} were recorded",
                r.bytes, r.checksum
            ),
        });
    }
    Ok(())
}

/// A version index merged at commit, not yet stored.
#[derive(Debug)]
pub struct BuiltIndex {
    /// Holds the merged file until it is placed (removed on drop).
    _scratch: ScratchDir,
    file: PathBuf,
    entries: u64,
    bytes: u64,
    checksum: String,
}

impl BuiltIndex {
    /// Entries (documents) it holds.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Stores it at `rel` and returns the reference the manifest records. May
    /// be called again with another path (a commit that lost a version number
    /// to another committer): on a local root the file moves, elsewhere it is
    /// uploaded again and the earlier copy deleted.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn place(&mut self, store: &DatasetStore, rel: &str, previous: Option<&str>) -> Result<DocIndexRef> {
        put_file(store, rel, &self.file, self.bytes).await?;
        match backing(store)? {
            Backing::Local(root) => self.file = root.join(rel),
            Backing::Remote { store: os, prefix } => {
                if let Some(prev) = previous {
                    let _ = os.delete(&object_path(&prefix, prev)).await;
                }
            }
            Backing::Whole => {}
        }
        Ok(DocIndexRef {
            path: rel.to_string(),
            entries: self.entries,
            bytes: self.bytes,
            checksum: self.checksum.clone(),
        })
    }
}

/// Merges the sorted runs of `records`' splits into one version index, in a
/// local temporary file (next to the dataset on a local root). Returns `None`,
/// with a warning, when a split has no run (written by a smelt before document
/// indexes): the version then has no document index.
///
/// # Errors
/// A run that is missing or differs from its recorded checksum (`Corrupt`),
/// storage and temporary-space failures.
pub async fn build_version_index(
    store: &DatasetStore,
    run_id: &str,
    records: &[SplitRecord],
) -> Result<Option<BuiltIndex>> {
    let mut refs = Vec::with_capacity(records.len());
    for r in records {
        match &r.doc_index {
            Some(d) => refs.push(d.clone()),
            None => {
                tracing::warn!(
                    "split {} of run {run_id} has no document index (written by an older smelt, or no `id`/`content_hash` columns): \
                     the version gets no document index and `catalog diff` cannot list document changes",
                    r.split.index
                );
                return Ok(None);
            }
        }
    }
    let base = match backing(store)? {
        Backing::Local(root) => root.join("runs").join(run_id),
        _ => std::env::temp_dir(),
    };
    let scratch = {
        let b = base.clone();
        tokio::task::spawn_blocking(move || ScratchDir::new_in(&b))
            .await
            .map_err(join_err)?
            .map_err(|e| io_error(&base.display().to_string(), e))?
    };

    // Local copies of every run, checked against their records.
    let dir = scratch.path().to_path_buf();
    let paths: Vec<PathBuf> = futures::stream::iter(refs.iter().enumerate())
        .map(|(i, r)| {
            let dir = dir.clone();
            async move {
                let p = fetch(store, r, &dir, &format!("split-{i:06}.idx")).await?;
                let (p2, r2, loc) = (p.clone(), r.clone(), format!("{}/{}", store.url(), r.path));
                tokio::task::spawn_blocking(move || verify(&p2, &r2, &loc)).await.map_err(join_err)??;
                Ok::<_, CatalogError>(p)
            }
        })
        .buffered(8)
        .try_collect()
        .await?;

    let expected: u64 = refs.iter().map(|r| r.entries).sum();
    let out = dir.join("version.idx");
    let (out2, dir2) = (out.clone(), dir.clone());
    let (entries, bytes, checksum) = tokio::task::spawn_blocking(move || -> io::Result<(u64, u64, String)> {
        let w = HashingWriter::new(BufWriter::with_capacity(1 << 20, File::create(&out2)?));
        let (w, n) = merge_files(&paths, w, &dir2)?;
        let (mut inner, len, checksum) = w.into_parts();
        inner.flush()?;
        Ok((n, len, checksum))
    })
    .await
    .map_err(join_err)?
    .map_err(|e| io_error(&format!("{}/runs/{run_id}/index", store.url()), e))?;
    if entries != expected {
        return Err(CatalogError::Internal(format!(
            "merging the document indexes of run {run_id} gave {entries} entries, the splits recorded {expected}"
        )));
    }
    Ok(Some(BuiltIndex { _scratch: scratch, file: out, entries, bytes, checksum }))
}

/// A stored index opened for reading: the file, and the scratch directory
/// that holds it when it had to be downloaded.
pub struct OpenedIndex {
    /// The local file.
    pub path: PathBuf,
    /// Where the index is stored (URL and path), for messages.
    pub location: String,
    _scratch: Option<ScratchDir>,
}

/// Makes the stored index `r` readable as a local file.
///
/// # Errors
/// Missing index, storage and temporary-space failures.
pub async fn open_stored(store: &DatasetStore, r: &DocIndexRef) -> Result<OpenedIndex> {
    let location = format!("{}/{}", store.url(), r.path);
    if let Backing::Local(_) = backing(store)? {
        let path = fetch(store, r, Path::new(""), "").await?;
        return Ok(OpenedIndex { path, location, _scratch: None });
    }
    let scratch = tokio::task::spawn_blocking(ScratchDir::new)
        .await
        .map_err(join_err)?
        .map_err(|e| io_error(&std::env::temp_dir().display().to_string(), e))?;
    let path = fetch(store, r, scratch.path(), "index.idx").await?;
    Ok(OpenedIndex { path, location, _scratch: Some(scratch) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> [u8; 16] {
        [n; 16]
    }

    fn read_all(bytes: &[u8]) -> Vec<(Vec<u8>, [u8; 16])> {
        DocIndexReader::new(bytes).unwrap().collect::<io::Result<Vec<_>>>().unwrap()
    }

    /// A deterministic pseudo-random id, like a WARC record id.
    fn uuid_id(i: u64) -> String {
        let x = xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes());
        format!(
            "<urn:uuid:{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}>",
            (x >> 96) as u32,
            (x >> 80) as u16,
            (x >> 68) as u16 & 0xfff,
            (x >> 52) as u16,
            x as u64 & 0xffff_ffff_ffff
        )
    }

    #[test]
    fn roundtrip_sorts_and_keeps_duplicates_and_odd_ids() {
        let mut entries = vec![
            ("b".to_string(), h(2)),
            ("a".to_string(), h(1)),
            (String::new(), h(9)),
            ("ab".to_string(), h(3)),
            ("a".to_string(), h(0)),
            ("a".to_string(), h(1)),
            ("é\u{0}x".to_string(), h(4)),
            ("x".repeat(100_000), h(5)),
        ];
        let bytes = encode_run(&mut entries).unwrap();
        assert_eq!(&bytes[..8], MAGIC);
        let got = read_all(&bytes);
        let want: Vec<(Vec<u8>, [u8; 16])> = entries.iter().map(|(i, h)| (i.as_bytes().to_vec(), *h)).collect();
        assert_eq!(got, want);
        assert_eq!(got[0].0, b"");
        assert_eq!((got[1].1, got[2].1, got[3].1), (h(0), h(1), h(1)));

        let empty = encode_run::<&str>(&mut []).unwrap();
        assert!(read_all(&empty).is_empty());
    }

    #[test]
    fn prefix_coding_and_zstd_keep_indexes_small() {
        let mut entries: Vec<(String, [u8; 16])> =
            (0..20_000u64).map(|i| (uuid_id(i), xxhash_rust::xxh3::xxh3_128(&i.to_be_bytes()).to_le_bytes())).collect();
        let bytes = encode_run(&mut entries).unwrap();
        let per_doc = bytes.len() as f64 / 20_000.0;
        // 47-byte ids (16 random bytes as hex) and 16-byte random hashes: 63 raw
        // bytes; prefix coding drops the shared `<urn:uuid:` and leading digits.
        assert!(per_doc < 53.0, "{per_doc} bytes per entry");
        assert_eq!(read_all(&bytes).len(), 20_000);
    }

    #[test]
    fn corrupt_cut_unsorted_and_foreign_files_are_errors() {
        let mut entries: Vec<(String, [u8; 16])> = (0..1000u64).map(|i| (uuid_id(i), h(i as u8))).collect();
        let bytes = encode_run(&mut entries).unwrap();
        let err = |b: &[u8]| -> io::Error {
            match DocIndexReader::new(b) {
                Err(e) => e,
                Ok(r) => r.collect::<io::Result<Vec<_>>>().unwrap_err(),
            }
        };
        assert!(err(b"PAR1....").to_string().contains("not a smelt document index"));
        let mut newer = bytes.clone();
        newer[8] = 9;
        assert!(err(&newer).to_string().contains("newer"));
        for cut in [bytes.len() - 1, bytes.len() / 2, HEADER_LEN + 3] {
            let e = err(&bytes[..cut]);
            assert!(
                matches!(e.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData | io::ErrorKind::Other),
                "{e:?}"
            );
        }
        // A flipped byte may decode (a hash changes): the file checksum that
        // stored indexes carry catches it; reading must only not panic.
        let mut flipped = bytes.clone();
        let mid = bytes.len() / 2;
        flipped[mid] ^= 0x55;
        let _ = DocIndexReader::new(&flipped[..]).map(|r| r.count());
        let mut trailing = bytes.clone();
        trailing.extend_from_slice(b"junk");
        err(&trailing);

        let mut w = DocIndexWriter::new(Vec::new()).unwrap();
        w.push(b"b", &h(0)).unwrap();
        assert_eq!(w.push(b"a", &h(0)).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        w.push(b"b", &h(1)).unwrap();
        assert_eq!(w.finish().map(|b| read_all(&b).len()).unwrap(), 2);
    }

    #[test]
    fn unsorted_input_written_by_hand_is_refused_by_the_reader() {
        // Bypass the writer's check: records "b" then "a".
        let mut raw = Vec::new();
        for id in [b"b", b"a"] {
            put_varint(&mut raw, 2);
            put_varint(&mut raw, 0);
            raw.extend_from_slice(id);
            raw.extend_from_slice(&h(0));
        }
        put_varint(&mut raw, 0);
        put_varint(&mut raw, 2);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&INDEX_FORMAT.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&zstd::stream::encode_all(&raw[..], 1).unwrap());
        let e = DocIndexReader::new(&bytes[..]).unwrap().collect::<io::Result<Vec<_>>>().unwrap_err();
        assert!(e.to_string().contains("not sorted"), "{e}");
    }

    #[test]
    fn multi_pass_merge_of_many_small_runs_equals_one_sort() {
        let dir = ScratchDir::new().unwrap();
        let mut all = Vec::new();
        let mut paths = Vec::new();
        // 300 runs of up to 40 entries, with ids repeated across runs (duplicates kept).
        for run in 0..300u64 {
            let mut entries: Vec<(String, [u8; 16])> =
                (0..(run % 41)).map(|k| (uuid_id((run * 7 + k * 13) % 2000), h((run % 3) as u8))).collect();
            all.extend(entries.iter().cloned());
            let p = dir.path().join(format!("in-{run}.idx"));
            std::fs::write(&p, encode_run(&mut entries).unwrap()).unwrap();
            paths.push(p);
        }
        all.sort();
        let want: Vec<(Vec<u8>, [u8; 16])> = all.iter().map(|(i, h)| (i.as_bytes().to_vec(), *h)).collect();
        for fan_in in [2, 7, 64] {
            let (out, n) = merge_files_with(&paths, Vec::new(), dir.path(), fan_in).unwrap();
            assert_eq!(n, want.len() as u64);
            assert_eq!(read_all(&out), want, "fan-in {fan_in}");
        }
        // Intermediate files are cleaned up; the inputs are kept.
        let left = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(left, 300);
        let (out, n) = merge_files(&[], Vec::new(), dir.path()).unwrap();
        assert_eq!((read_all(&out).len(), n), (0, 0));
    }

    #[test]
    fn run_builder_spills_past_its_budget_and_gives_the_same_bytes() {
        let base = ScratchDir::new().unwrap();
        let entries: Vec<(String, [u8; 16])> = (0..5000u64).map(|i| (uuid_id(i % 4000), h((i % 5) as u8))).collect();
        let mut small = RunBuilder::with_budget(4096, base.path().to_path_buf());
        let mut big = RunBuilder::with_budget(usize::MAX, base.path().to_path_buf());
        for (id, hash) in &entries {
            small.push(id.as_bytes(), hash).unwrap();
            big.push(id.as_bytes(), hash).unwrap();
        }
        assert!(small.spills() > 20, "{} spills", small.spills());
        assert_eq!(big.spills(), 0);
        let (a, na) = small.finish_to(Vec::new()).unwrap();
        let (b, nb) = big.finish_to(Vec::new()).unwrap();
        assert_eq!((na, nb), (5000, 5000));
        assert_eq!(read_all(&a), read_all(&b));
        let mut sorted = entries.clone();
        assert_eq!(b, encode_run(&mut sorted).unwrap(), "one encoding for the same entries");

        let mut spilling = RunBuilder::with_budget(4096, base.path().to_path_buf());
        for (id, hash) in &entries {
            spilling.push(id.as_bytes(), hash).unwrap();
        }
        match spilling.finish().unwrap() {
            FinishedRun::File { path, entries, bytes, checksum, .. } => {
                let data = std::fs::read(&path).unwrap();
                assert_eq!((entries, bytes), (5000, data.len() as u64));
                assert_eq!(checksum, format!("xxh3-128:{:032x}", xxhash_rust::xxh3::xxh3_128(&data)));
            }
            FinishedRun::Memory { .. } => panic!("expected a file"),
        }
        assert_eq!(std::fs::read_dir(base.path()).unwrap().count(), 0, "spill directories are removed");
    }

    #[tokio::test]
    async fn put_run_and_open_stored_on_local_and_memory_roots() {
        let dir = ScratchDir::new().unwrap();
        let local = DatasetStore::open(dir.path().join("ds").to_str().unwrap()).unwrap();
        let memory = DatasetStore::open("memory:///ds").unwrap();
        for store in [local, memory] {
            let mut b = RunBuilder::with_budget(2048, dir.path().to_path_buf());
            for i in 0..500u64 {
                b.push(uuid_id(i).as_bytes(), &h(1)).unwrap();
            }
            let r = put_run(&store, &split_index_path("r", 3), b.finish().unwrap()).await.unwrap();
            assert_eq!((r.path.as_str(), r.entries), ("runs/r/index/00003.idx", 500));
            let opened = open_stored(&store, &r).await.unwrap();
            verify(&opened.path, &r, &opened.location).unwrap();
            let bytes = std::fs::read(&opened.path).unwrap();
            assert_eq!(read_all(&bytes).len(), 500);
            let mut wrong = r.clone();
            wrong.checksum = "xxh3-128:0".into();
            assert!(matches!(verify(&opened.path, &wrong, "x"), Err(CatalogError::Corrupt { .. })));
        }
    }
}
