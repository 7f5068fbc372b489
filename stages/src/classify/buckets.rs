//! `classify` with `buckets:`: each document's token-weighted percentile
//! bucket of a score over the whole run (Nemotron-CC's quality buckets), a
//! barrier (docs/adr/0006-barrier-stages.md).
//!
//! ```text
//! observe, per split:  scores per row, in row order ────────────────► observed/<split>.scores
//!                      (score, weight) of kept rows ──sort──────────► observed/<split>.dist
//!                      rows, kept rows, total weight ───────────────► observed/<split>.json (last)
//! resolve, once:       k-way merge of every split's .dist by score; with W the total weight,
//!                      threshold b (1..count) = the lowest score with count·below(score) ≥ b·W ──► resolved/buckets.json
//! apply, per split:    .scores row by row ──► score columns, keep verdict, bucket = thresholds ≤ score
//! ```
//! The bucket of a score `s` is `min(count - 1, ⌊count · below(s) / W⌋)`,
//! where `below(s)` is the weight of the kept documents scoring less than
//! `s` and `W` the weight of all of them: bucket 0 holds the lowest scores,
//! equal scores share a bucket, and each bucket holds about `W / count` of
//! the weight. The computation is exact (integer weights, float32 scores
//! compared as their bits) and depends only on the multiset of (score,
//! weight), so any split of the input over threads or ranks gives the same
//! buckets. Dropped documents (`keep`) are not counted. Memory: an observer
//! holds its share of `memory_budget` of 12-byte records and spills sorted
//! runs past it; the global step holds one buffered reader per split; an
//! applier reads its split's scores as it goes.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use smelt_engine::{
    str_at, BarrierConfig, BarrierContext, BarrierObserver, EngineError, Processed, Result, SchemaError, Transform,
};

use super::{words, ClassifyConfig, Scored, Scorer, Weight, Writer};
use crate::dedup::{io, ExternalSort, Merge};

/// A `.dist` record: score key (u32) and weight (u64), big-endian, so records sort by score.
const DIST_BYTES: usize = 12;

/// A float32 as a u32 that sorts in the float's order.
pub fn score_key(x: f32) -> u32 {
    let b = x.to_bits();
    if b >> 31 == 1 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// The float32 of a [`score_key`].
fn key_score(k: u32) -> f32 {
    f32::from_bits(if k >> 31 == 1 { k & 0x7fff_ffff } else { !k })
}

/// What an observer records about its split, written after its other files.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SplitTotals {
    rows: u64,
    kept: u64,
    weight: u64,
}

/// What the global step leaves for the appliers.
#[derive(Debug, Serialize, Deserialize)]
pub struct Thresholds {
    /// Total weight of the kept documents.
    pub weight: u64,
    /// Score keys ([`score_key`]) at which buckets 1.. start; `u64::MAX`: an empty bucket no score reaches.
    pub keys: Vec<u64>,
    /// The same thresholds as scores, for people (`null`: empty bucket).
    pub scores: Vec<Option<f32>>,
}

impl Thresholds {
    /// The bucket of a score.
    pub fn bucket(&self, score: f32) -> u32 {
        let k = u64::from(score_key(score));
        self.keys.partition_point(|&t| t <= k) as u32
    }
}

fn path(dir: &Path, split: u32, ext: &str) -> PathBuf {
    dir.join(format!("{split:06}.{ext}"))
}

/// Writes `bytes` to `path` through a temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))
}

/// Computes the thresholds of `count` buckets from (score key, weight)
/// records in ascending key order; `total` is the sum of their weights.
///
/// # Errors
/// Reading the records failed.
pub fn thresholds(
    count: u32,
    total: u64,
    mut records: impl FnMut() -> Result<Option<(u32, u64)>>,
) -> Result<Thresholds> {
    let n = u128::from(count);
    let w = u128::from(total);
    let mut keys = vec![u64::MAX; count.saturating_sub(1) as usize];
    let (mut next, mut below, mut last) = (1u128, 0u128, None);
    while let Some((k, weight)) = records()? {
        if last != Some(k) {
            // `below` is the weight of every smaller score.
            while next < n && w > 0 && n * below >= next * w {
                keys[next as usize - 1] = u64::from(k);
                next += 1;
            }
            last = Some(k);
        }
        below += u128::from(weight);
    }
    let scores = keys.iter().map(|&k| u32::try_from(k).ok().map(key_score)).collect();
    Ok(Thresholds { weight: total, keys, scores })
}

impl BarrierConfig for ClassifyConfig {
    fn output_schema(&self, input: &SchemaRef) -> std::result::Result<SchemaRef, SchemaError> {
        self.check_input(input)
    }

    fn resolved(&self) -> serde_json::Value {
        self.resolved_value()
    }

    fn observer(&self, input: &SchemaRef, ctx: &BarrierContext, split: u32) -> Result<Box<dyn BarrierObserver>> {
        let b = self.buckets.as_ref().ok_or_else(|| EngineError::Internal("classify without buckets".into()))?;
        let (scorer, writer) = self.runtime(input)?;
        let slot = self.score_columns().iter().position(|c| *c == b.column).expect("checked at configure");
        let scores = path(&ctx.observed_dir, split, "scores");
        let tmp = scores.with_extension("scores-tmp");
        let dist = path(&ctx.observed_dir, split, "dist");
        Ok(Box::new(Observer {
            scorer,
            writer,
            slot,
            weight: b.weight,
            out: BufWriter::new(File::create(&tmp).map_err(|e| io(&tmp, e))?),
            tmp,
            scores,
            sort: ExternalSort::new(dist.clone(), ctx.observer_share()),
            dist,
            totals_path: path(&ctx.observed_dir, split, "json"),
            totals: SplitTotals::default(),
            bytes: Vec::new(),
        }))
    }

    fn resolve(&self, ctx: &BarrierContext, splits: &[u32]) -> Result<BTreeMap<String, u64>> {
        let b = self.buckets.as_ref().ok_or_else(|| EngineError::Internal("classify without buckets".into()))?;
        let mut all = SplitTotals::default();
        for &split in splits {
            let p = path(&ctx.observed_dir, split, "json");
            let t: SplitTotals = serde_json::from_slice(&std::fs::read(&p).map_err(|e| io(&p, e))?)
                .map_err(|e| EngineError::Internal(format!("{}: {e}", p.display())))?;
            all.rows += t.rows;
            all.kept += t.kept;
            all.weight += t.weight;
        }
        let files = splits.iter().map(|&split| (path(&ctx.observed_dir, split, "dist"), split));
        let mut merge = Merge::open(files, DIST_BYTES, 4)?;
        let mut first = true;
        let t = thresholds(b.count, all.weight, || {
            if !std::mem::take(&mut first) {
                merge.pop()?;
            }
            Ok(merge.peek().map(|(rec, _)| {
                (
                    u32::from_be_bytes(rec[..4].try_into().expect("4 bytes")),
                    u64::from_be_bytes(rec[4..].try_into().expect("8 bytes")),
                )
            }))
        })?;
        let out = ctx.resolved_dir.join("buckets.json");
        write_atomic(&out, &serde_json::to_vec_pretty(&t).map_err(|e| EngineError::Internal(e.to_string()))?)?;
        Ok(BTreeMap::from([("bucketed_documents".to_string(), all.kept), ("bucketed_weight".to_string(), all.weight)]))
    }

    fn applier(&self, input: &SchemaRef, ctx: &BarrierContext, split: u32) -> Result<Box<dyn Transform>> {
        let b = self.buckets.as_ref().ok_or_else(|| EngineError::Internal("classify without buckets".into()))?;
        let (_, writer) = self.runtime(input)?;
        let p = ctx.resolved_dir.join("buckets.json");
        let thresholds: Thresholds = serde_json::from_slice(&std::fs::read(&p).map_err(|e| io(&p, e))?)
            .map_err(|e| EngineError::Internal(format!("{}: {e}", p.display())))?;
        let scores = path(&ctx.observed_dir, split, "scores");
        let slots = self.score_columns().len();
        Ok(Box::new(Applier {
            writer,
            slots,
            slot: self.score_columns().iter().position(|c| *c == b.column).expect("checked at configure"),
            thresholds,
            input: BufReader::new(File::open(&scores).map_err(|e| io(&scores, e))?),
            path: scores,
            bytes: Vec::new(),
        }))
    }
}

struct Observer {
    scorer: Scorer,
    writer: Writer,
    /// The bucketed score column's slot.
    slot: usize,
    weight: Weight,
    /// Row scores, in row order: label u32, then each slot's f32, little-endian.
    out: BufWriter<File>,
    tmp: PathBuf,
    scores: PathBuf,
    /// (score key, weight) of kept rows, sorted out of core.
    sort: ExternalSort<DIST_BYTES>,
    dist: PathBuf,
    totals_path: PathBuf,
    totals: SplitTotals,
    bytes: Vec<u8>,
}

impl BarrierObserver for Observer {
    fn observe(&mut self, batch: &RecordBatch) -> Result<()> {
        let scored = self.scorer.score_batch(batch, &self.writer.text)?;
        let text = batch.column_by_name(&self.writer.text).expect("schema checked");
        let slots = self.scorer.slots();
        let mut scratch = Vec::new();
        self.bytes.clear();
        for (r, &label) in scored.labels.iter().enumerate() {
            let values = &scored.values[r * slots..(r + 1) * slots];
            self.bytes.extend_from_slice(&label.to_le_bytes());
            for v in values {
                self.bytes.extend_from_slice(&v.to_le_bytes());
            }
            if !self.writer.keeps(values, &mut scratch) {
                continue;
            }
            let w = match self.weight {
                Weight::Tokens => words(str_at(text, r).unwrap_or("")),
                Weight::Documents => 1,
            };
            self.totals.kept += 1;
            self.totals.weight += w;
            if w > 0 {
                let mut rec = [0u8; DIST_BYTES];
                rec[..4].copy_from_slice(&score_key(values[self.slot]).to_be_bytes());
                rec[4..].copy_from_slice(&w.to_be_bytes());
                self.sort.push(rec)?;
            }
        }
        self.totals.rows += scored.labels.len() as u64;
        self.out.write_all(&self.bytes).map_err(|e| io(&self.tmp, e))
    }

    fn finish(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| io(&self.tmp, e))?;
        std::fs::rename(&self.tmp, &self.scores).map_err(|e| io(&self.scores, e))?;
        let sort = std::mem::replace(&mut self.sort, ExternalSort::new(self.dist.clone(), 0));
        let tmp = self.dist.with_extension("dist-tmp");
        let mut w = BufWriter::new(File::create(&tmp).map_err(|e| io(&tmp, e))?);
        sort.finish(|rec| w.write_all(rec).map_err(|e| io(&tmp, e)))?;
        w.flush().map_err(|e| io(&tmp, e))?;
        drop(w);
        std::fs::rename(&tmp, &self.dist).map_err(|e| io(&self.dist, e))?;
        let totals = serde_json::to_vec(&self.totals).map_err(|e| EngineError::Internal(e.to_string()))?;
        write_atomic(&self.totals_path, &totals)
    }
}

struct Applier {
    writer: Writer,
    slots: usize,
    slot: usize,
    thresholds: Thresholds,
    input: BufReader<File>,
    path: PathBuf,
    bytes: Vec<u8>,
}

impl Transform for Applier {
    fn process(&mut self, batch: RecordBatch) -> Result<Processed> {
        let rows = batch.num_rows();
        let width = 4 * (1 + self.slots);
        self.bytes.resize(rows * width, 0);
        self.input.read_exact(&mut self.bytes).map_err(|e| {
            EngineError::Internal(format!("{}: fewer scores than spilled rows: {e}", self.path.display()))
        })?;
        let mut scored = Scored {
            labels: Vec::with_capacity(rows),
            names: Vec::new(),
            values: Vec::with_capacity(rows * self.slots),
        };
        let mut buckets = Vec::with_capacity(rows);
        for rec in self.bytes.chunks_exact(width) {
            scored.labels.push(u32::from_le_bytes(rec[..4].try_into().expect("4 bytes")));
            let start = scored.values.len();
            scored.values.extend(rec[4..].chunks_exact(4).map(|v| f32::from_le_bytes(v.try_into().expect("4 bytes"))));
            buckets.push(self.thresholds.bucket(scored.values[start + self.slot]));
        }
        self.writer.write(batch, &scored, Some(buckets))
    }
}
