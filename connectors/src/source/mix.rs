//! `mix` source: a deterministic weighted sample of committed versions to a
//! document or token budget, each version repeated up to `max_epochs`.
//!
//! ```text
//! sources: [{from: a@prod, weight: 0.6}, {from: b@3, weight: 0.4, max_epochs: 2}], documents | tokens: N
//!   ──plan: each `from` pinned as the `dataset` source pins it; one split per shard, "name@V#path#i"
//!   ──open: factor f_i = min(weight_i / Σ weight x N / (rows or tokens of version i), max_epochs_i)
//!   ──each document: copies = floor(f_i) + (u < frac(f_i)),  u = xxh3(seed, i, id) in [0, 1)
//!        copy k > 1 gets the id `id~k`
//! ```
//! A document's copies depend only on the seed, its source and its id, so the
//! sample is the same whatever the split order, thread count or ranks, and the
//! expected size of source i is f_i x its rows (or tokens): the budget, split
//! by weight, unless `max_epochs` caps it. Each split's state records its
//! version, factor and rows in and out (the version's `lineage.source_state`).

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, StringBuilder, UInt32Array};
use arrow::datatypes::SchemaRef;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use serde::{Deserialize, Serialize};
use smelt_engine::yaml::PathSeg;
use smelt_engine::{
    parse_options, ConfigureContext, EngineError, OptionError, ReadOptions, Result, Skips, SourceConfig, SplitReader,
    SplitSpec, StageConfig,
};

use super::dataset::{parse_split, DatasetSourceConfig, Memo};

/// One input of a mixture.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MixSource {
    /// The version: `name@7`, `name@prod`, `name@latest` or `name`, pinned as the `dataset` source pins it.
    pub from: String,
    /// Its share of the budget, relative to the other weights.
    pub weight: f64,
    /// The most times its documents may be repeated when it is too small for its share (1: never repeated).
    #[serde(default = "one")]
    pub max_epochs: f64,
}

fn one() -> f64 {
    1.0
}

/// Options of the `mix` source.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MixConfig {
    /// The versions mixed, with their weights.
    pub sources: Vec<MixSource>,
    /// Budget in documents (give this or `tokens`).
    #[serde(default)]
    pub documents: Option<u64>,
    /// Budget in tokens, for versions with token counts (tokenized upstream); give this or `documents`.
    #[serde(default)]
    pub tokens: Option<u64>,
    /// Seed of the sample: another seed, another (equally weighted) sample.
    #[serde(default)]
    pub seed: u64,
    /// Rehydration: documents repeated by the size of the near-duplicate cluster they stood for, before the
    /// budget is applied (FineWeb-2's recipe: the `dedup_minhash` survivor of a cluster of 5 counts 5 times).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upsample: Option<Upsample>,
    /// One `dataset` source per entry of `sources`.
    #[serde(skip)]
    #[schemars(skip)]
    inner: Vec<DatasetSourceConfig>,
    /// Upsampled sizes computed so far (`name@V` -> documents or tokens, each times its weight).
    #[serde(skip)]
    #[schemars(skip)]
    weighted: Memo<f64>,
}

/// The `upsample` column of a batch as cluster sizes (null or absent: 1).
fn sizes(batch: &RecordBatch, column: &str) -> Result<Vec<u64>> {
    let Some(c) = batch.column_by_name(column) else { return Ok(vec![1; batch.num_rows()]) };
    let c = arrow::compute::cast(c, &arrow::datatypes::DataType::UInt64)
        .map_err(|e| EngineError::User(format!("mix: upsample column `{column}` is not a count: {e}")))?;
    let c = c.as_primitive::<arrow::datatypes::UInt64Type>();
    Ok((0..c.len()).map(|i| if c.is_null(i) { 1 } else { c.value(i) }).collect())
}

/// `upsample:` of the `mix` source.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Upsample {
    /// Integer column with each document's near-duplicate cluster size (1: no duplicate), such as
    /// `dedup_minhash`'s cluster size kept upstream; every source needs it. Null counts as 1.
    pub column: String,
    /// `fineweb2`: weights 1, 2, 3, 3, 5, 8 and 1 for cluster sizes 1, 2, 3, 4, 5-100, 101-1000 and over
    /// 1000 (FineWeb-2's rehydration); or give `steps` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// `[[min_size, weight], ...]`, ascending `min_size` from 1: a document of cluster size s weighs the
    /// weight of the last step whose `min_size` is at most s.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<(u64, f64)>,
}

/// FineWeb-2's rehydration weights by cluster size.
const FINEWEB2: [(u64, f64); 6] = [(1, 1.0), (2, 2.0), (3, 3.0), (5, 5.0), (101, 8.0), (1001, 1.0)];

impl Upsample {
    /// The weight of a document of cluster size `size`.
    pub fn weight(&self, size: u64) -> f64 {
        self.steps.iter().take_while(|(min, _)| *min <= size.max(1)).last().map_or(1.0, |(_, w)| *w)
    }
}

/// Registry hook.
///
/// # Errors
/// Unknown options, no sources, weights or epochs that are not positive, both or neither budget, a bad `from`.
pub fn configure(options: serde_json::Value, ctx: &ConfigureContext) -> Result<StageConfig, OptionError> {
    let mut c: MixConfig = parse_options(options)?;
    let err = |path: Vec<PathSeg>, message: String| OptionError { path, message, at_key: false };
    if c.sources.is_empty() {
        return Err(err(vec![PathSeg::Key("sources".into())], "`sources` lists no version to mix".into()));
    }
    match (c.documents, c.tokens) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(err(Vec::new(), "give the budget as `documents: N` or as `tokens: N` (one of them)".into()))
        }
        (Some(0), _) | (_, Some(0)) => return Err(err(Vec::new(), "the budget must be more than 0".into())),
        _ => {}
    }
    for (i, s) in c.sources.iter().enumerate() {
        let at = |k: &str| vec![PathSeg::Key("sources".into()), PathSeg::Index(i), PathSeg::Key(k.into())];
        if !(s.weight.is_finite() && s.weight > 0.0) {
            return Err(err(at("weight"), format!("`weight` must be a positive number, found {}", s.weight)));
        }
        if !(s.max_epochs.is_finite() && s.max_epochs > 0.0) {
            return Err(err(
                at("max_epochs"),
                format!("`max_epochs` must be a positive number, found {}", s.max_epochs),
            ));
        }
    }
    // (the sources' `dataset` readers are built below, once `upsample` says which column they also read)
    if let Some(u) = &mut c.upsample {
        let at = |k: &str| vec![PathSeg::Key("upsample".into()), PathSeg::Key(k.into())];
        match (u.rule.as_deref(), u.steps.is_empty()) {
            (Some("fineweb2"), true) => u.steps = FINEWEB2.to_vec(),
            (Some(other), true) => {
                return Err(err(at("rule"), format!("unknown rule `{other}`: write `fineweb2`, or give `steps`")))
            }
            (Some(_), false) => return Err(err(at("steps"), "give `rule` or `steps`, not both".into())),
            (None, true) => return Err(err(Vec::new(), "`upsample` needs `rule: fineweb2` or `steps`".into())),
            (None, false) => {}
        }
        let ascending = u.steps.windows(2).all(|w| w[0].0 < w[1].0);
        if u.steps[0].0 != 1 || !ascending || u.steps.iter().any(|(_, w)| !(w.is_finite() && *w >= 0.0)) {
            return Err(err(
                at("steps"),
                "`steps` are [min_size, weight] pairs with min_size ascending from 1 and weights of 0 or more".into(),
            ));
        }
    }
    let columns: Vec<String> = c.upsample.iter().map(|u| u.column.clone()).collect();
    for (i, s) in c.sources.iter().enumerate() {
        let at = vec![PathSeg::Key("sources".into()), PathSeg::Index(i), PathSeg::Key("from".into())];
        c.inner.push(DatasetSourceConfig::reading(&s.from, columns.clone(), ctx, at)?);
    }
    Ok(StageConfig::Source(Arc::new(c)))
}

impl MixConfig {
    /// Source `i`'s factor: the copies its average document gets, from the pinned version's totals.
    fn factor(&self, i: usize, version: &str) -> Result<f64> {
        let up = self.inner[i].pinned(version)?;
        let total_weight: f64 = self.sources.iter().map(|s| s.weight).sum();
        let (budget, available, unit) = match (self.documents, self.tokens) {
            (Some(d), _) => (d, up.manifest.totals.rows as f64, "documents"),
            (None, Some(t)) => (t, up.manifest.totals.tokens as f64, "tokens"),
            (None, None) => return Err(EngineError::Internal("mix without a budget".into())),
        };
        let available = match &self.upsample {
            Some(u) if available > 0.0 => self.upsampled(i, version, u)?,
            _ => available,
        };
        if available <= 0.0 {
            return Err(EngineError::User(format!(
                "mix: {version} has no {unit}{}",
                if unit == "tokens" { " counted (it was not tokenized): give the budget as `documents:`" } else { "" }
            )));
        }
        let want = self.sources[i].weight / total_weight * budget as f64;
        Ok((want / available).min(self.sources[i].max_epochs))
    }

    /// Source `i`'s documents (or tokens) with each document counted `u.weight(cluster size)` times:
    /// its `upsample` column (and `n_tokens`) read from every shard, once per process.
    fn upsampled(&self, i: usize, version: &str, u: &Upsample) -> Result<f64> {
        self.weighted.get_or_try(version, || self.weigh(i, version, u)).map(|w| *w)
    }

    /// [`MixConfig::upsampled`], computed.
    fn weigh(&self, i: usize, version: &str, u: &Upsample) -> Result<f64> {
        let up = self.inner[i].pinned(version)?;
        let mut total = 0.0;
        for shard in &up.manifest.shards {
            let bytes = smelt_engine::blocking::block_on(up.shard(&shard.path))?;
            let bad = |e: &dyn std::fmt::Display| EngineError::External(format!("mix: {version} {}: {e}", shard.path));
            let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| bad(&e))?;
            let names = [u.column.as_str(), "n_tokens"];
            let wanted: Vec<usize> = names.iter().filter_map(|n| builder.schema().index_of(n).ok()).collect();
            let mask = ProjectionMask::roots(builder.parquet_schema(), wanted);
            for batch in builder.with_projection(mask).build().map_err(|e| bad(&e))? {
                let batch = batch.map_err(|e| bad(&e))?;
                let weights = sizes(&batch, &u.column)?.into_iter().map(|s| u.weight(s));
                total += match self.tokens {
                    Some(_) => {
                        let tokens = sizes(&batch, "n_tokens")?;
                        weights.zip(tokens).map(|(w, t)| w * t as f64).sum::<f64>()
                    }
                    None => weights.sum::<f64>(),
                };
            }
        }
        Ok(total)
    }
}

impl SourceConfig for MixConfig {
    fn schema(&self) -> SchemaRef {
        self.inner[0].schema()
    }

    fn resolved(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn splits(&self) -> Result<Vec<SplitSpec>> {
        let mut out = Vec::new();
        let mut pinned: Vec<String> = Vec::new();
        for (i, inner) in self.inner.iter().enumerate() {
            let splits = inner.splits()?;
            let version = splits.first().map(|s| parse_split(&s.id).map(|(v, _)| v.to_string())).transpose()?;
            if let Some(v) = version {
                if pinned.contains(&v) {
                    return Err(EngineError::User(format!(
                        "mix: {v} is listed twice in `sources`; give it one entry with the summed weight"
                    )));
                }
                // The factor is checked now (a version without token counts fails the plan, not a split).
                let f = self.factor(i, &v)?;
                if f >= self.sources[i].max_epochs && self.sources[i].max_epochs >= 1.0 {
                    tracing::warn!(
                        "mix: {v} is too small for its share: its documents are repeated {} times (max_epochs), so the mixture has less of it than its weight asks",
                        self.sources[i].max_epochs
                    );
                }
                pinned.push(v);
            }
            out.extend(splits.into_iter().map(|s| SplitSpec { id: format!("{}#{i}", s.id), bytes: s.bytes }));
        }
        Ok(out)
    }

    fn open(&self, split: &SplitSpec, options: &ReadOptions) -> Result<Box<dyn SplitReader>> {
        let bad = || EngineError::Internal(format!("mix split `{}` is not name@version#path#source", split.id));
        let (inner_id, i) = split.id.rsplit_once('#').ok_or_else(bad)?;
        let i: usize = i.parse().map_err(|_| bad())?;
        if i >= self.inner.len() {
            return Err(bad());
        }
        let (version, _) = parse_split(inner_id)?;
        let factor = self.factor(i, version)?;
        let inner = self.inner[i].open(&SplitSpec { id: inner_id.to_string(), bytes: split.bytes }, options)?;
        let seed = xxhash_rust::xxh3::xxh3_64(format!("{}:{i}", self.seed).as_bytes());
        Ok(Box::new(MixReader {
            inner,
            factor,
            seed,
            upsample: self.upsample.clone(),
            version: version.to_string(),
            rows_in: 0,
            rows_out: 0,
        }))
    }
}

/// Reads one shard of source `i` and keeps each document `copies` times.
struct MixReader {
    inner: Box<dyn SplitReader>,
    factor: f64,
    seed: u64,
    upsample: Option<Upsample>,
    version: String,
    rows_in: u64,
    rows_out: u64,
}

/// How many times a document is kept: floor(f), plus one with probability frac(f), decided by its id.
pub fn copies(factor: f64, seed: u64, id: &[u8]) -> u32 {
    let whole = factor.floor();
    let u = (xxhash_rust::xxh3::xxh3_64_with_seed(id, seed) >> 11) as f64 / (1u64 << 53) as f64;
    whole as u32 + u32::from(u < factor - whole)
}

impl MixReader {
    fn sample(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let schema = batch.schema();
        let id_col = schema.index_of("id").map_err(|e| EngineError::Internal(format!("mix: {e}")))?;
        let ids = batch
            .column(id_col)
            .as_string_opt::<i32>()
            .ok_or_else(|| EngineError::Internal("mix: `id` is not Utf8".into()))?;
        let mut take: Vec<u32> = Vec::with_capacity(batch.num_rows());
        let mut copy_of: Vec<u32> = Vec::with_capacity(batch.num_rows());
        let weights: Option<Vec<f64>> = match &self.upsample {
            Some(u) => Some(sizes(batch, &u.column)?.into_iter().map(|s| u.weight(s)).collect()),
            None => None,
        };
        for r in 0..batch.num_rows() {
            let id = if ids.is_null(r) { "" } else { ids.value(r) };
            let factor = self.factor * weights.as_ref().map_or(1.0, |w| w[r]);
            for k in 0..copies(factor, self.seed, id.as_bytes()) {
                take.push(r as u32);
                copy_of.push(k);
            }
        }
        let indices = UInt32Array::from(take);
        let mut columns: Vec<Arc<dyn Array>> = batch
            .columns()
            .iter()
            .map(|c| arrow::compute::take(c.as_ref(), &indices, None))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| EngineError::Internal(format!("mix: {e}")))?;
        if copy_of.iter().any(|k| *k > 0) {
            // Repeats get their own ids: `id~2`, `id~3`, ...
            let taken = columns[id_col].as_string::<i32>();
            let mut b = StringBuilder::with_capacity(taken.len(), taken.value_data().len() + 4 * taken.len());
            for (r, k) in copy_of.iter().enumerate() {
                if *k == 0 {
                    b.append_value(taken.value(r));
                } else {
                    b.append_value(format!("{}~{}", taken.value(r), k + 1));
                }
            }
            columns[id_col] = Arc::new(b.finish());
        }
        RecordBatch::try_new(schema, columns).map_err(|e| EngineError::Internal(format!("mix: {e}")))
    }
}

impl SplitReader for MixReader {
    fn next_batch(&mut self, skips: &mut Skips) -> Result<Option<RecordBatch>> {
        let Some(batch) = self.inner.next_batch(skips)? else { return Ok(None) };
        self.rows_in += batch.num_rows() as u64;
        let out = self.sample(&batch)?;
        self.rows_out += out.num_rows() as u64;
        Ok(Some(out))
    }

    fn bytes_read(&self) -> u64 {
        self.inner.bytes_read()
    }

    fn state(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({
            "from": self.version, "factor": self.factor, "rows_in": self.rows_in, "rows_out": self.rows_out,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_follow_the_factor_and_depend_only_on_the_id() {
        let ids: Vec<String> = (0..100_000).map(|i| format!("doc-{i}")).collect();
        for f in [0.1, 0.5, 1.0, 1.5, 2.25] {
            let total: u64 = ids.iter().map(|id| u64::from(copies(f, 7, id.as_bytes()))).sum();
            let expected = f * ids.len() as f64;
            assert!((total as f64 - expected).abs() < 0.01 * expected, "f {f}: {total} vs {expected}");
            for id in &ids[..100] {
                let c = copies(f, 7, id.as_bytes());
                assert!(c == f.floor() as u32 || c == f.floor() as u32 + 1);
                assert_eq!(c, copies(f, 7, id.as_bytes()));
            }
        }
        // Another seed, another sample.
        let a: Vec<u32> = ids.iter().take(1000).map(|id| copies(0.5, 1, id.as_bytes())).collect();
        let b: Vec<u32> = ids.iter().take(1000).map(|id| copies(0.5, 2, id.as_bytes())).collect();
        assert_ne!(a, b);
    }
}
