//! A split's sorted run: entries collected in any order, sorted in memory
//! within a budget, spilled as sorted files past it and merged at the end
//! (an external sort).
//!
//! ```text
//! push(id, hash) ──► Entries (memory) ──budget──► run-NNNNNN (sorted index) ─┐
//!                       └──────────────── finish ─────────────────────────┴─smelt-sort merge──► one sorted run (memory or file)
//! ```

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use bytes::Bytes;
use smelt_sort::{ExternalSort, Record, ScratchDir, SortBuffer};

use super::hashing::HashingWriter;
use super::merge::IndexFormat;
use super::writer::DocIndexWriter;
use super::{DEFAULT_RUN_BUDGET, MERGE_FAN_IN, SCRATCH_PREFIX};

/// Collects the entries of one split in any order and writes them as one
/// sorted run. Holds at most its budget in memory: past it, the entries so far
/// are sorted and spilled to a temporary file, and [`finish_to`](Self::finish_to)
/// merges the spills.
pub struct RunBuilder {
    sort: ExternalSort<Entries>,
    spill_base: PathBuf,
    entries: u64,
}

impl std::fmt::Debug for RunBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunBuilder")
            .field("spill_base", &self.spill_base)
            .field("spills", &self.sort.runs())
            .field("entries", &self.entries)
            .finish()
    }
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
        let sort = ExternalSort::new(Entries::default(), IndexFormat, budget, spill_base.clone(), SCRATCH_PREFIX)
            .with_fan_in(MERGE_FAN_IN);
        RunBuilder { sort, spill_base, entries: 0 }
    }

    /// Entries pushed so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Sorted runs spilled to disk so far.
    pub fn spills(&self) -> usize {
        self.sort.runs()
    }

    /// Adds one entry.
    ///
    /// # Errors
    /// Spilling to disk failed.
    pub fn push(&mut self, id: &[u8], hash: &[u8; 16]) -> io::Result<()> {
        self.entries += 1;
        self.sort.push((id, hash))
    }

    /// Writes every entry pushed, sorted, as one index on `w`; returns `w` and the entry count.
    ///
    /// # Errors
    /// Reading spills or writing `w`.
    pub fn finish_to<W: Write>(self, w: W) -> io::Result<(W, u64)> {
        let mut out = DocIndexWriter::new(w)?;
        self.sort.finish(|(id, hash)| out.push(id, hash))?;
        let n = out.entries();
        if n != self.entries {
            return Err(io::Error::other(format!("merged {n} document index entries of {}", self.entries)));
        }
        Ok((out.finish()?, n))
    }

    /// Finishes into memory when nothing was spilled (at most about the budget),
    /// else into a file in a new scratch directory.
    ///
    /// # Errors
    /// As [`finish_to`](Self::finish_to).
    pub fn finish(self) -> io::Result<FinishedRun> {
        if self.spills() == 0 {
            let (mut w, entries) = self.finish_to(HashingWriter::new(Vec::new()))?;
            let checksum = w.checksum();
            let bytes = Bytes::from(std::mem::take(&mut w.inner));
            return Ok(FinishedRun::Memory { bytes, entries, checksum });
        }
        let dir = ScratchDir::new_in(&self.spill_base, SCRATCH_PREFIX)?;
        let path = dir.path().join("run.idx");
        let (w, entries) = self.finish_to(HashingWriter::new(BufWriter::new(File::create(&path)?)))?;
        let (mut inner, len, checksum) = w.into_parts();
        inner.flush()?;
        Ok(FinishedRun::File { dir, path, entries, bytes: len, checksum })
    }
}

/// Entries in memory: ids end to end, where each starts, and the hashes.
#[derive(Debug, Default)]
struct Entries {
    ids: Vec<u8>,
    starts: Vec<usize>,
    hashes: Vec<[u8; 16]>,
}

impl Entries {
    fn id(&self, i: usize) -> &[u8] {
        let end = self.starts.get(i + 1).copied().unwrap_or(self.ids.len());
        &self.ids[self.starts[i]..end]
    }
}

impl SortBuffer for Entries {
    type Format = IndexFormat;
    type Item<'a> = (&'a [u8], &'a [u8; 16]);

    fn push(&mut self, (id, hash): (&[u8], &[u8; 16])) {
        self.starts.push(self.ids.len());
        self.ids.extend_from_slice(id);
        self.hashes.push(*hash);
    }

    /// ids, their starts, hashes, and the sort's permutation.
    fn bytes(&self) -> usize {
        self.ids.len() + self.hashes.len() * 28
    }

    fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    fn drain_sorted<E>(&mut self, mut out: impl FnMut(Record<'_, IndexFormat>) -> Result<(), E>) -> Result<(), E> {
        let mut order: Vec<u32> = (0..self.hashes.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| {
            self.id(a as usize)
                .cmp(self.id(b as usize))
                .then_with(|| self.hashes[a as usize].cmp(&self.hashes[b as usize]))
        });
        for i in order {
            let i = i as usize;
            out((self.id(i), &self.hashes[i]))?;
        }
        *self = Entries::default();
        Ok(())
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
