//! Deduplication stages. They are barriers (DESIGN.md): a document can only
//! be kept or dropped once every split of the run has been seen.
//!
//! ```text
//! dedup_exact    by content_hash      ─┐
//! dedup_url      by normalised URL    ─┴─► exact.rs (sorted key files, k-way merge)
//! dedup_minhash  near duplicates      ───► minhash.rs (signatures, LSH bands, union-find)
//! dedup_lines    repeated lines       ───► lines.rs (sorted line-hash files, k-way merge)
//! against:       earlier versions     ───► against.rs (band indexes stored with a version)
//! ```

pub mod against;
pub mod exact;
pub mod lines;
pub mod minhash;
mod minhash_tables;

use std::io::Read;
use std::path::Path;

use smelt_engine::EngineError;

/// A file error of a dedup stage's scratch files, naming the file.
pub(crate) fn io(path: &Path, e: std::io::Error) -> EngineError {
    EngineError::External(format!("{}: {e}", path.display()))
}

/// The next fixed-size record of a sorted run file; `None` at its end.
pub(crate) fn read_record<const N: usize>(r: &mut impl Read) -> std::io::Result<Option<[u8; N]>> {
    let mut b = [0u8; N];
    match r.read_exact(&mut b) {
        Ok(()) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// An external sort of fixed-size records that compare as bytes (fields
/// stored big-endian sort as their values): records are buffered up to a
/// memory budget, then written as sorted runs beside `base`, and merged
/// (one buffered reader and one record per run) when read back in order.
pub(crate) struct ExternalSort<const N: usize> {
    base: std::path::PathBuf,
    buf: Vec<[u8; N]>,
    cap: usize,
    runs: Vec<std::path::PathBuf>,
}

impl<const N: usize> ExternalSort<N> {
    /// Runs are written as `<base>.run<k>`; `budget` is in bytes.
    pub(crate) fn new(base: std::path::PathBuf, budget: usize) -> Self {
        ExternalSort {
            base,
            buf: Vec::new(),
            cap: (budget / N).max(1024),
            runs: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, rec: [u8; N]) -> smelt_engine::Result<()> {
        self.buf.push(rec);
        if self.buf.len() >= self.cap {
            self.spill()?;
        }
        Ok(())
    }

    /// Sorted runs written so far.
    pub(crate) fn runs(&self) -> usize {
        self.runs.len()
    }

    fn spill(&mut self) -> smelt_engine::Result<()> {
        self.buf.sort_unstable();
        let path = std::path::PathBuf::from(format!("{}.run{}", self.base.display(), self.runs.len()));
        let mut w = std::io::BufWriter::with_capacity(
            1 << 16,
            std::fs::File::create(&path).map_err(|e| io(&path, e))?,
        );
        for r in &self.buf {
            std::io::Write::write_all(&mut w, r).map_err(|e| io(&path, e))?;
        }
        std::io::Write::flush(&mut w).map_err(|e| io(&path, e))?;
        self.buf.clear();
        self.runs.push(path);
        Ok(())
    }

    /// Calls `f` on every record in order, then removes the runs.
    pub(crate) fn finish(
        mut self,
        mut f: impl FnMut(&[u8; N]) -> smelt_engine::Result<()>,
    ) -> smelt_engine::Result<()> {
        if self.runs.is_empty() {
            self.buf.sort_unstable();
            return self.buf.iter().try_for_each(f);
        }
        if !self.buf.is_empty() {
            self.spill()?;
        }
        self.buf = Vec::new();
        let mut readers = Vec::with_capacity(self.runs.len());
        let mut heap = std::collections::BinaryHeap::new();
        for (i, path) in self.runs.iter().enumerate() {
            let mut r = std::io::BufReader::with_capacity(
                1 << 16,
                std::fs::File::open(path).map_err(|e| io(path, e))?,
            );
            if let Some(rec) = read_record::<N>(&mut r).map_err(|e| io(path, e))? {
                heap.push(std::cmp::Reverse((rec, i)));
            }
            readers.push(r);
        }
        while let Some(std::cmp::Reverse((rec, i))) = heap.pop() {
            f(&rec)?;
            let path = &self.runs[i];
            if let Some(next) = read_record::<N>(&mut readers[i]).map_err(|e| io(path, e))? {
                heap.push(std::cmp::Reverse((next, i)));
            }
        }
        for path in &self.runs {
            std::fs::remove_file(path).map_err(|e| io(path, e))?;
        }
        Ok(())
    }
}

/// A barrier context over `dir` with both directories created, for stage tests.
#[cfg(test)]
pub(crate) fn test_context(dir: &Path) -> smelt_engine::BarrierContext {
    let ctx = smelt_engine::BarrierContext {
        observed_dir: dir.join("observed"),
        resolved_dir: dir.join("resolved"),
        memory_budget: 1 << 20,
        parallelism: 1,
    };
    std::fs::create_dir_all(&ctx.observed_dir).unwrap();
    std::fs::create_dir_all(&ctx.resolved_dir).unwrap();
    ctx
}
