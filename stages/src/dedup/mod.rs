//! Deduplication stages. They are barriers (docs/adr/0006-barrier-stages.md): a document can only
//! be kept or dropped once every split of the run has been seen.
//!
//! ```text
//! dedup_exact    by content_hash      ─┐
//! dedup_url      by normalised URL    ─┴─► exact.rs (sorted key files, k-way merge)
//! dedup_minhash  near duplicates      ───► minhash/ (signatures, LSH bands, union-find)
//! dedup_lines    repeated lines       ───► lines.rs (sorted line-hash files, k-way merge)
//! against:       earlier versions     ───► against.rs (band indexes stored with a version)
//! ```

pub mod against;
pub mod exact;
pub mod lines;
pub mod minhash;

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use smelt_engine::{EngineError, Result};

/// A file error of a dedup stage's scratch files, naming the file.
pub(crate) fn io(path: &Path, e: std::io::Error) -> EngineError {
    EngineError::External(format!("{}: {e}", path.display()))
}

/// Writes what a barrier's global step drops, sorted by split, to `dir`:
/// `drops.bin` holds the records (each starts with its split, a big-endian
/// u32); `drops.idx` has one entry per split with drops: (split u32, first
/// record u64, records u64), big-endian. Appliers read theirs with
/// [`read_drops`].
pub(crate) struct DropsWriter {
    bin: PathBuf,
    idx: PathBuf,
    b: BufWriter<File>,
    x: BufWriter<File>,
    /// (split, first record, records) of the split being written.
    cur: Option<(u32, u64, u64)>,
    written: u64,
}

impl DropsWriter {
    pub(crate) fn create(dir: &Path) -> Result<Self> {
        let (bin, idx) = (dir.join("drops.bin"), dir.join("drops.idx"));
        Ok(DropsWriter {
            b: BufWriter::new(File::create(&bin).map_err(|e| io(&bin, e))?),
            x: BufWriter::new(File::create(&idx).map_err(|e| io(&idx, e))?),
            bin,
            idx,
            cur: None,
            written: 0,
        })
    }

    /// Appends one record; records come in order of their split.
    pub(crate) fn push(&mut self, rec: &[u8]) -> Result<()> {
        self.b.write_all(rec).map_err(|e| io(&self.bin, e))?;
        let split = u32::from_be_bytes(rec[..4].try_into().expect("4 bytes"));
        match &mut self.cur {
            Some(c) if c.0 == split => c.2 += 1,
            _ => {
                self.index()?;
                self.cur = Some((split, self.written, 1));
            }
        }
        self.written += 1;
        Ok(())
    }

    /// Writes the index entry of the split being written.
    fn index(&mut self) -> Result<()> {
        if let Some((split, start, n)) = self.cur.take() {
            let x = &mut self.x;
            x.write_all(&split.to_be_bytes())
                .and_then(|()| x.write_all(&start.to_be_bytes()))
                .and_then(|()| x.write_all(&n.to_be_bytes()))
                .map_err(|e| io(&self.idx, e))?;
        }
        Ok(())
    }

    pub(crate) fn finish(mut self) -> Result<()> {
        self.index()?;
        self.b.flush().map_err(|e| io(&self.bin, e))?;
        self.x.flush().map_err(|e| io(&self.idx, e))
    }
}

/// The records (`width` bytes each) [`DropsWriter`] wrote for `split`, in order.
pub(crate) fn read_drops(dir: &Path, split: u32, width: usize) -> Result<Vec<u8>> {
    let idx = dir.join("drops.idx");
    let bytes = std::fs::read(&idx).map_err(|e| io(&idx, e))?;
    let Some(entry) = bytes.chunks_exact(20).find(|c| u32::from_be_bytes(c[..4].try_into().expect("4")) == split)
    else {
        return Ok(Vec::new());
    };
    let start = u64::from_be_bytes(entry[4..12].try_into().expect("8"));
    let n = u64::from_be_bytes(entry[12..].try_into().expect("8"));
    let bin = dir.join("drops.bin");
    let mut f = File::open(&bin).map_err(|e| io(&bin, e))?;
    f.seek(SeekFrom::Start(start * width as u64)).map_err(|e| io(&bin, e))?;
    let mut buf = vec![0u8; n as usize * width];
    f.read_exact(&mut buf).map_err(|e| io(&bin, e))?;
    Ok(buf)
}

/// A k-way merge of files of sorted fixed-size records that compare as
/// bytes (fields stored big-endian sort as their values). Each file has a
/// tag (its split, or its run number); records come out ordered by (their
/// first `prefix` bytes, the tag, the rest), so equal keys come out in the
/// tags' order. One record and a 64 KiB buffer are held per file.
pub(crate) struct Merge {
    files: Vec<MergeFile>,
    /// A binary min-heap of indexes into `files`.
    heap: Vec<usize>,
    prefix: usize,
}

struct MergeFile {
    path: PathBuf,
    r: BufReader<File>,
    tag: u32,
    cur: Vec<u8>,
}

impl MergeFile {
    /// Reads the next record into `cur`; false at the end.
    fn advance(&mut self) -> Result<bool> {
        match self.r.read_exact(&mut self.cur) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(io(&self.path, e)),
        }
    }
}

impl Merge {
    /// Merges `files` (path, tag) of `width`-byte records.
    ///
    /// # Errors
    /// A file cannot be read or is not a whole number of records.
    pub(crate) fn open(files: impl IntoIterator<Item = (PathBuf, u32)>, width: usize, prefix: usize) -> Result<Self> {
        let mut open = Vec::new();
        for (path, tag) in files {
            let f = File::open(&path).map_err(|e| io(&path, e))?;
            let len = f.metadata().map_err(|e| io(&path, e))?.len();
            if len % width as u64 != 0 {
                return Err(EngineError::External(format!(
                    "{}: truncated ({len} bytes is not a whole number of {width}-byte records)",
                    path.display()
                )));
            }
            let mut m = MergeFile { path, r: BufReader::with_capacity(1 << 16, f), tag, cur: vec![0; width] };
            if m.advance()? {
                open.push(m);
            }
        }
        let mut m = Merge { heap: (0..open.len()).collect(), files: open, prefix: prefix.min(width) };
        for i in (0..m.heap.len() / 2).rev() {
            m.sift_down(i);
        }
        Ok(m)
    }

    fn less(&self, a: usize, b: usize) -> bool {
        let (x, y) = (&self.files[a], &self.files[b]);
        let p = self.prefix;
        (&x.cur[..p], x.tag, &x.cur[p..], a) < (&y.cur[..p], y.tag, &y.cur[p..], b)
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut m = i;
            if l < n && self.less(self.heap[l], self.heap[m]) {
                m = l;
            }
            if r < n && self.less(self.heap[r], self.heap[m]) {
                m = r;
            }
            if m == i {
                return;
            }
            self.heap.swap(i, m);
            i = m;
        }
    }

    /// The smallest record left, with its file's tag.
    pub(crate) fn peek(&self) -> Option<(&[u8], u32)> {
        self.heap.first().map(|&i| (self.files[i].cur.as_slice(), self.files[i].tag))
    }

    /// Moves past the smallest record.
    ///
    /// # Errors
    /// Its file cannot be read.
    pub(crate) fn pop(&mut self) -> Result<()> {
        let Some(&top) = self.heap.first() else {
            return Ok(());
        };
        if !self.files[top].advance()? {
            let last = self.heap.pop().expect("not empty");
            if !self.heap.is_empty() {
                self.heap[0] = last;
            }
        }
        self.sift_down(0);
        Ok(())
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
        ExternalSort { base, buf: Vec::new(), cap: (budget / N).max(1024), runs: Vec::new() }
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
        let mut w = std::io::BufWriter::with_capacity(1 << 16, std::fs::File::create(&path).map_err(|e| io(&path, e))?);
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
        let runs = self.runs.iter().cloned().zip(0..);
        let mut merge = Merge::open(runs, N, N)?;
        while let Some((rec, _)) = merge.peek() {
            f(rec.try_into().expect("N bytes"))?;
            merge.pop()?;
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
