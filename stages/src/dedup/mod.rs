//! Deduplication stages. They are barriers (docs/adr/0006-barrier-stages.md): a document can only
//! be kept or dropped once every split of the run has been seen.
//!
//! ```text
//! dedup_exact    by content_hash      ─┐
//! dedup_url      by normalised URL    ─┴─► exact.rs (sorted key files, k-way merge)
//! dedup_minhash  near duplicates      ───► minhash/ (signatures, LSH bands, union-find)
//! dedup_lines    repeated lines       ─┬─► lines.rs ─┐
//! dedup_sentences repeated sentences  ─┘  sentences.rs ─┴─► repeats.rs (sorted piece-hash files, k-way merge)
//! against:       earlier versions     ───► against.rs (band indexes stored with a version)
//! ```

pub mod against;
pub mod exact;
pub mod lines;
pub mod minhash;
pub(crate) mod repeats;
pub mod sentences;

use std::cmp::Ordering;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use smelt_engine::{EngineError, Result};
use smelt_sort::{FixedRecords, Order, RecordFile, Records, SortedCursor};

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

/// A k-way merge (smelt-sort's loser tree) of files of sorted fixed-size
/// records that compare as bytes (fields stored big-endian sort as their
/// values). Each file has a tag (its split, or its run number); records come
/// out ordered by (their first `prefix` bytes, the tag, the rest, the file's
/// position), so equal keys come out in the tags' order. One record and a
/// 64 KiB buffer are held per file.
pub(crate) struct Merge(smelt_sort::Merge<Tagged, ByTag>);

/// A record file with its tag.
struct Tagged {
    file: RecordFile,
    tag: u32,
}

impl SortedCursor for Tagged {
    #[inline(always)]
    fn advance(&mut self) -> std::io::Result<bool> {
        self.file.advance()
    }
}

/// (record[..prefix], tag, record[prefix..]).
struct ByTag {
    prefix: usize,
}

impl Order<Tagged> for ByTag {
    #[inline(always)]
    fn cmp(&self, a: &Tagged, b: &Tagged) -> Ordering {
        let (x, y, p) = (a.file.record(), b.file.record(), self.prefix);
        match x[..p].cmp(&y[..p]) {
            Ordering::Equal => match a.tag.cmp(&b.tag) {
                Ordering::Equal => x[p..].cmp(&y[p..]),
                o => o,
            },
            o => o,
        }
    }
}

/// A sort error (its message names the file) as the stages report it.
fn sort_error(e: std::io::Error) -> EngineError {
    EngineError::External(e.to_string())
}

impl Merge {
    /// Merges `files` (path, tag) of `width`-byte records.
    ///
    /// # Errors
    /// A file cannot be read or is not a whole number of records.
    pub(crate) fn open(files: impl IntoIterator<Item = (PathBuf, u32)>, width: usize, prefix: usize) -> Result<Self> {
        let mut cursors = Vec::new();
        for (path, tag) in files {
            cursors.push(Tagged { file: RecordFile::open(path, width).map_err(sort_error)?, tag });
        }
        let merge = smelt_sort::Merge::new(cursors, ByTag { prefix: prefix.min(width) }).map_err(sort_error)?;
        Ok(Merge(merge))
    }

    /// The smallest record left, with its file's tag.
    #[inline(always)]
    pub(crate) fn peek(&self) -> Option<(&[u8], u32)> {
        self.0.peek().map(|t| (t.file.record(), t.tag))
    }

    /// Moves past the smallest record.
    ///
    /// # Errors
    /// Its file cannot be read.
    #[inline(always)]
    pub(crate) fn pop(&mut self) -> Result<()> {
        self.0.pop().map_err(sort_error)
    }
}

/// An external sort (smelt-sort's) of fixed-size records that compare as
/// bytes: records are buffered up to a memory budget, then written as sorted
/// runs in a scratch directory beside `base`, and merged when read back in
/// order.
pub(crate) struct ExternalSort<const N: usize>(smelt_sort::ExternalSort<FixedRecords<N>>);

/// An error of an [`ExternalSort`]'s sink, or of the sort.
enum SinkError {
    Sort(std::io::Error),
    Stage(EngineError),
}

impl From<std::io::Error> for SinkError {
    fn from(e: std::io::Error) -> Self {
        SinkError::Sort(e)
    }
}

impl<const N: usize> ExternalSort<N> {
    /// Runs are written under `base`'s directory; `budget` is in bytes (at
    /// least 1024 records are held).
    pub(crate) fn new(base: PathBuf, budget: usize) -> Self {
        let dir = base.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
        let budget = (budget / N).max(1024) * N;
        ExternalSort(smelt_sort::ExternalSort::new(
            FixedRecords::new(),
            Records { width: N },
            budget,
            dir,
            "smelt-sort",
        ))
    }

    pub(crate) fn push(&mut self, rec: [u8; N]) -> Result<()> {
        self.0.push(rec).map_err(sort_error)
    }

    /// Sorted runs written so far.
    pub(crate) fn runs(&self) -> usize {
        self.0.runs()
    }

    /// Calls `f` on every record in order, then removes the runs.
    pub(crate) fn finish(self, mut f: impl FnMut(&[u8; N]) -> Result<()>) -> Result<()> {
        self.0.finish(|rec: &[u8]| f(rec.try_into().expect("N bytes")).map_err(SinkError::Stage)).map_err(|e| match e {
            SinkError::Sort(e) => sort_error(e),
            SinkError::Stage(e) => e,
        })
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

/// What the dedup stages' tests share: running a barrier through its three
/// steps, and one-column text batches.
#[cfg(test)]
pub(crate) mod testing {
    use std::borrow::Cow;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use arrow::array::LargeStringArray;
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;
    use smelt_engine::{str_at, Processed, StageConfig};

    /// Per split, per row: a filtering barrier's (text, verdict); the text is
    /// `None` for a null one or a batch without a `text` column.
    pub(crate) type Out = Vec<Vec<(Option<String>, Option<Cow<'static, str>>)>>;

    /// Runs a barrier over `splits` (observe, resolve, apply) within `budget`;
    /// its output rows and counters.
    pub(crate) fn run_barrier(
        cfg: &StageConfig,
        splits: &[Vec<RecordBatch>],
        budget: usize,
    ) -> (Out, BTreeMap<String, u64>) {
        let StageConfig::Barrier(b) = cfg else { panic!("a barrier") };
        let dir = tempfile::tempdir().unwrap();
        let mut ctx = super::test_context(dir.path());
        ctx.memory_budget = budget;
        let schema = splits[0][0].schema();
        b.output_schema(&schema).unwrap();
        for (i, batches) in splits.iter().enumerate() {
            let mut o = b.observer(&schema, &ctx, i as u32).unwrap();
            for x in batches {
                o.observe(x).unwrap();
            }
            o.finish().unwrap();
        }
        let ids: Vec<u32> = (0..splits.len() as u32).collect();
        let mut counts = b.resolve(&ctx, &ids).unwrap();
        let out = splits
            .iter()
            .enumerate()
            .map(|(i, batches)| {
                let mut a = b.applier(&schema, &ctx, i as u32).unwrap();
                let rows = batches
                    .iter()
                    .flat_map(|x| match a.process(x.clone()).unwrap() {
                        Processed::Filtered { batch, verdicts } => {
                            let t = batch.column_by_name("text").cloned();
                            (0..batch.num_rows())
                                .map(|r| t.as_ref().and_then(|t| str_at(t, r)).map(String::from))
                                .zip(verdicts)
                                .collect::<Vec<_>>()
                        }
                        Processed::Batch(_) => panic!("a filter"),
                    })
                    .collect();
                for (k, n) in a.take_counters() {
                    *counts.entry(k).or_default() += n;
                }
                rows
            })
            .collect();
        (out, counts)
    }

    /// [`run_barrier`] with a 1 MiB budget.
    pub(crate) fn run(cfg: &StageConfig, splits: &[Vec<RecordBatch>]) -> (Out, BTreeMap<String, u64>) {
        run_barrier(cfg, splits, 1 << 20)
    }

    /// A batch of one nullable LargeUtf8 `text` column.
    pub(crate) fn text_batch(texts: &[Option<&str>]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("text", DataType::LargeUtf8, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(LargeStringArray::from(texts.to_vec()))]).unwrap()
    }

    /// A kept row with this text.
    pub(crate) fn kept(s: &str) -> (Option<String>, Option<Cow<'static, str>>) {
        (Some(s.to_string()), None)
    }
}
