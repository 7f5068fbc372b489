//! The external sort: records buffered in memory up to a budget, spilled as
//! sorted runs into a scratch directory past it, merged at the end.
//!
//! ```text
//! push ──► SortBuffer ──bytes ≥ budget──► scratch/run-NNNNNN (sorted) ─┐
//!              └───────────── finish ─────────────────────────────────┴─merge_files (fan-in)──► out(record)
//!              (nothing spilled: sorted in memory, no file)      scratch removed after finish or on drop
//! ```

use std::io;
use std::path::PathBuf;

use crate::format::{Record, RunFormat};
use crate::passes::merge_files;
use crate::scratch::ScratchDir;
use crate::DEFAULT_FAN_IN;

/// Records held in memory by an [`ExternalSort`].
pub trait SortBuffer {
    /// The format its runs are spilled in.
    type Format: RunFormat;
    /// What [`ExternalSort::push`] takes.
    type Item<'a>;

    /// Adds one record.
    fn push(&mut self, item: Self::Item<'_>);

    /// Bytes held, compared with the budget after each push.
    fn bytes(&self) -> usize;

    /// Whether nothing is held.
    fn is_empty(&self) -> bool;

    /// Sorts what is held, passes it to `out` in order and empties the buffer.
    ///
    /// # Errors
    /// `out`'s.
    fn drain_sorted<E>(&mut self, out: impl FnMut(Record<'_, Self::Format>) -> Result<(), E>) -> Result<(), E>;
}

/// Sorts any number of records within a memory budget. Runs are spilled
/// into a scratch directory created (under `base`) at the first spill and
/// removed when the sort is finished or dropped.
pub struct ExternalSort<B: SortBuffer> {
    buf: B,
    format: B::Format,
    budget: usize,
    base: PathBuf,
    prefix: &'static str,
    fan_in: usize,
    scratch: Option<ScratchDir>,
    runs: Vec<PathBuf>,
}

impl<B: SortBuffer> ExternalSort<B> {
    /// Holds about `budget` bytes in `buf` before it spills a run in
    /// `format` to a directory `<prefix>-…` under `base`.
    pub fn new(buf: B, format: B::Format, budget: usize, base: PathBuf, prefix: &'static str) -> Self {
        ExternalSort { buf, format, budget, base, prefix, fan_in: DEFAULT_FAN_IN, scratch: None, runs: Vec::new() }
    }

    /// Merges at most `fan_in` runs at a time (at least 2).
    pub fn with_fan_in(mut self, fan_in: usize) -> Self {
        self.fan_in = fan_in.max(2);
        self
    }

    /// Adds one record; spills a run when the buffer reaches the budget.
    ///
    /// # Errors
    /// Spilling failed.
    pub fn push(&mut self, item: B::Item<'_>) -> io::Result<()> {
        self.buf.push(item);
        if self.buf.bytes() >= self.budget {
            self.spill()?;
        }
        Ok(())
    }

    /// Sorted runs spilled so far.
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// The scratch directory, once something was spilled.
    pub fn scratch(&self) -> Option<&std::path::Path> {
        self.scratch.as_ref().map(ScratchDir::path)
    }

    fn spill(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let dir = match &self.scratch {
            Some(d) => d,
            None => self.scratch.insert(ScratchDir::new_in(&self.base, self.prefix)?),
        };
        let path = dir.path().join(format!("run-{:06}", self.runs.len()));
        let format = &self.format;
        let mut w = format.create(&path)?;
        self.buf.drain_sorted(|rec| format.write(&mut w, rec))?;
        format.close(w)?;
        self.runs.push(path);
        Ok(())
    }

    /// Passes every record pushed, in order, to `out`; then removes the runs.
    ///
    /// # Errors
    /// Spilling or reading runs (io errors), or `out`'s.
    pub fn finish<E: From<io::Error>>(
        mut self,
        out: impl FnMut(Record<'_, B::Format>) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.runs.is_empty() {
            return self.buf.drain_sorted(out);
        }
        self.spill()?;
        let scratch = self.scratch.take().expect("spilled");
        merge_files(&self.format, &self.runs, scratch.path(), self.fan_in, out)?;
        for run in &self.runs {
            std::fs::remove_file(run)?;
        }
        drop(scratch);
        Ok(())
    }
}
