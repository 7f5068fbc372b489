//! A split's sorted run: entries collected in any order, sorted in memory
//! within a budget, spilled as sorted files past it and merged at the end
//! (an external sort).
//!
//! ```text
//! push(id, hash) ──► memory ──budget──► spill-NNNNNN.idx (sorted) ─┐
//!                       └──────────────── finish ──────────────────┴─merge──► one sorted run (memory or file)
//! ```

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use bytes::Bytes;

use super::hashing::HashingWriter;
use super::merge::merge_files;
use super::scratch::ScratchDir;
use super::writer::DocIndexWriter;
use super::{DEFAULT_RUN_BUDGET, INTERMEDIATE_LEVEL};

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
