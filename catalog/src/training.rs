//! Training runs recorded against the versions they read (docs/training.md, "Training runs").
//!
//! ```text
//! python/smelt_data loader (each rank, when iteration starts)
//!   └─► ROOT/_training/<run>/rank-RRRRR.json      registration: version, digest, loader plan, segments
//!   └─► ROOT/_training/<run>/metrics-RRRRR.jsonl  {"step", "batch", "epoch", "tokens", "time", <metric>...} per line
//! smelt train import (MLflow, TensorBoard, CSV, JSONL) writes the same two files
//!                │ sync (catalog rebuild, every `smelt train` command)
//!                ▼
//! catalog tree `training`: run id -> TrainingEntry (dataset, root, versions, ranks, start)
//! ```
//!
//! The files are the source of truth, like `_versions/`: the loader writes
//! them without the catalog (sled admits one process, and a training job must
//! never wait for it), and the index is rebuilt from them.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{CatalogError, Result};
use crate::index::Catalog;
use crate::store::DatasetStore;

/// Directory of the training runs under a dataset root.
pub const TRAINING_DIR: &str = "_training";

/// Keys of a metrics line that are not metrics.
pub const RESERVED_KEYS: [&str; 5] = ["step", "batch", "epoch", "tokens", "time"];

/// Whether `id` can name a training run (it becomes a directory name).
pub fn valid_run_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `_training/<run>/rank-RRRRR.json`.
pub fn rank_path(run_id: &str, rank: u32) -> String {
    format!("{TRAINING_DIR}/{run_id}/rank-{rank:05}.json")
}

/// `_training/<run>/metrics-RRRRR.jsonl`.
pub fn metrics_path(run_id: &str, rank: u32) -> String {
    format!("{TRAINING_DIR}/{run_id}/metrics-{rank:05}.jsonl")
}

/// Where a rank's loader position was set: the first iteration and each
/// restart from a checkpoint; between two, the order follows from the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// The rank's batch counter at that point.
    pub batch: u64,
    /// Epoch.
    pub epoch: u64,
    /// Consumer -> samples already taken in the epoch.
    #[serde(default)]
    pub taken: BTreeMap<String, u64>,
    /// When (RFC 3339).
    #[serde(default)]
    pub at: String,
}

/// One rank's registration, `rank-RRRRR.json`. Fields the loader knows and an
/// import may not are optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankRecord {
    /// File format.
    pub format: u32,
    /// Run id.
    pub run_id: String,
    /// A name given by the user.
    #[serde(default)]
    pub name: Option<String>,
    /// Dataset read.
    pub dataset: String,
    /// Version read.
    pub version: u64,
    /// The version's digest when the run started.
    #[serde(default)]
    pub digest: Option<String>,
    /// Manifest path relative to the dataset root.
    #[serde(default)]
    pub manifest: Option<String>,
    /// Tokenizer name recorded in the shards.
    #[serde(default)]
    pub tokenizer: Option<String>,
    /// Its hash.
    #[serde(default)]
    pub tokenizer_hash: Option<String>,
    /// Input tokens per sample.
    #[serde(default)]
    pub seq_len: Option<u64>,
    /// Samples per batch.
    #[serde(default)]
    pub batch_size: Option<u64>,
    /// Shuffle seed.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Whether the loader shuffled.
    #[serde(default)]
    pub shuffle: Option<bool>,
    /// This rank.
    #[serde(default)]
    pub rank: u32,
    /// Ranks in the job.
    #[serde(default = "one")]
    pub world_size: u32,
    /// Loader workers per rank.
    #[serde(default)]
    pub workers: Option<u32>,
    /// EOS id put between documents.
    #[serde(default)]
    pub eos_id: Option<u64>,
    /// `ShardLoader`, `TokenShardDataset`, or `import:<source>`.
    #[serde(default)]
    pub loader: Option<String>,
    /// Host.
    #[serde(default)]
    pub host: Option<String>,
    /// Process id.
    #[serde(default)]
    pub pid: Option<u64>,
    /// Start (RFC 3339).
    #[serde(default)]
    pub started_at: String,
    /// The user's parameters (model, learning rate, ...).
    #[serde(default)]
    pub params: serde_json::Value,
    /// Loader positions.
    #[serde(default)]
    pub segments: Vec<Segment>,
    /// Every other key the writer added, kept.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

fn one() -> u32 {
    1
}

impl RankRecord {
    /// A registration for a run the loader did not record (`smelt train import --dataset`):
    /// the version it read and where its metrics came from; no loader plan, so its batches
    /// cannot be traced.
    pub fn without_loader(run_id: &str, m: &crate::model::VersionManifest, rank: u32, source: &str) -> Self {
        RankRecord {
            format: 1,
            run_id: run_id.to_string(),
            name: None,
            dataset: m.dataset.clone(),
            version: m.version,
            digest: Some(m.digest.clone()),
            manifest: Some(crate::model::manifest_path(m.version)),
            tokenizer: None,
            tokenizer_hash: None,
            seq_len: None,
            batch_size: None,
            seed: None,
            shuffle: None,
            rank,
            world_size: rank + 1,
            workers: None,
            eos_id: None,
            loader: Some(source.to_string()),
            host: None,
            pid: None,
            started_at: String::new(),
            params: serde_json::Value::Null,
            segments: Vec::new(),
            extra: BTreeMap::new(),
        }
    }
}

/// One metrics line.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricPoint {
    /// The user's step.
    pub step: i64,
    /// Batches the rank's loader had given when the line was logged.
    pub batch: Option<u64>,
    /// Epoch.
    pub epoch: Option<u64>,
    /// Input tokens given so far by the rank.
    pub tokens: Option<u64>,
    /// Unix seconds.
    pub time: Option<f64>,
    /// Metric name -> value.
    pub values: BTreeMap<String, f64>,
}

impl MetricPoint {
    /// The line's JSON form (reserved keys, then metrics).
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("step".into(), self.step.into());
        if let Some(b) = self.batch {
            m.insert("batch".into(), b.into());
        }
        if let Some(e) = self.epoch {
            m.insert("epoch".into(), e.into());
        }
        if let Some(t) = self.tokens {
            m.insert("tokens".into(), t.into());
        }
        if let Some(t) = self.time {
            m.insert("time".into(), t.into());
        }
        for (k, v) in &self.values {
            m.insert(k.clone(), serde_json::Number::from_f64(*v).map_or(serde_json::Value::Null, Into::into));
        }
        serde_json::Value::Object(m)
    }

    fn from_json(v: &serde_json::Value) -> Option<MetricPoint> {
        let o = v.as_object()?;
        let step = o.get("step")?.as_i64()?;
        let u = |k: &str| o.get(k).and_then(serde_json::Value::as_u64);
        let values = o
            .iter()
            .filter(|(k, _)| !RESERVED_KEYS.contains(&k.as_str()))
            .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
            .collect();
        Some(MetricPoint {
            step,
            batch: u("batch"),
            epoch: u("epoch"),
            tokens: u("tokens"),
            time: o.get("time").and_then(serde_json::Value::as_f64),
            values,
        })
    }
}

/// A rank's metrics file, read.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Lines in file order.
    pub points: Vec<MetricPoint>,
    /// Lines cut short by a killed writer, skipped (a resumed writer starts a
    /// new line after one, so they can stand anywhere in a run's file).
    pub cut_lines: usize,
}

/// Parses a metrics file. A line that is not a metrics object is a line a
/// killed writer cut short: skipped and counted, unless `strict` (a file a
/// user hands to `smelt train import`), where only the last line may be cut
/// and an earlier one is an error with its number.
///
/// # Errors
/// `Corrupt` naming the line (strict only).
pub fn parse_metrics(bytes: &[u8], location: &str, strict: bool) -> Result<Metrics> {
    let mut out = Metrics::default();
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    for (i, line) in lines.iter().enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed = serde_json::from_slice::<serde_json::Value>(line).ok().and_then(|v| MetricPoint::from_json(&v));
        match parsed {
            Some(p) => out.points.push(p),
            None if !strict || i + 1 == lines.len() => out.cut_lines += 1,
            None => {
                return Err(CatalogError::Corrupt {
                    location: format!("{location}:{}", i + 1),
                    message: "not a metrics line: a JSON object with an integer `step` and numeric metrics".into(),
                })
            }
        }
    }
    Ok(out)
}

/// The metrics file's bytes for `points`.
pub fn metrics_bytes(points: &[MetricPoint]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in points {
        out.extend_from_slice(p.to_json().to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// A run as the index knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingEntry {
    /// Run id.
    pub run_id: String,
    /// Name given by the user, if any.
    pub name: Option<String>,
    /// Dataset read.
    pub dataset: String,
    /// Its root in storage.
    pub root_url: String,
    /// Versions read (by the ranks; normally one).
    pub versions: Vec<u64>,
    /// Ranks registered.
    pub ranks: Vec<u32>,
    /// Earliest start.
    pub started_at: String,
}

/// A whole run read from storage: every rank's record and metrics.
#[derive(Debug, Clone)]
pub struct TrainingRun {
    /// The index entry.
    pub entry: TrainingEntry,
    /// Registrations by rank.
    pub ranks: Vec<RankRecord>,
    /// Metrics by rank (same order as `ranks`).
    pub metrics: Vec<Metrics>,
}

impl TrainingRun {
    /// Rank 0's metrics, or the lowest rank's.
    pub fn primary_metrics(&self) -> &[MetricPoint] {
        self.metrics.first().map(|m| m.points.as_slice()).unwrap_or_default()
    }
}

/// Reads every rank registration under `_training/` of a dataset root.
///
/// # Errors
/// Storage failures; a registration that does not parse.
pub async fn stored_ranks(store: &DatasetStore) -> Result<Vec<RankRecord>> {
    let mut out = Vec::new();
    for name in store.list(TRAINING_DIR).await? {
        let Some(file) = name.rsplit('/').next() else { continue };
        if !(file.starts_with("rank-") && file.ends_with(".json")) {
            continue;
        }
        if let Some(r) = store.get_json::<RankRecord>(&name).await? {
            out.push(r);
        }
    }
    Ok(out)
}

/// Groups rank records into index entries, one per run id, ordered by start.
pub fn entries(root_url: &str, ranks: &[RankRecord]) -> Vec<TrainingEntry> {
    let mut by_run: BTreeMap<&str, TrainingEntry> = BTreeMap::new();
    for r in ranks {
        let e = by_run.entry(&r.run_id).or_insert_with(|| TrainingEntry {
            run_id: r.run_id.clone(),
            name: r.name.clone(),
            dataset: r.dataset.clone(),
            root_url: root_url.to_string(),
            versions: Vec::new(),
            ranks: Vec::new(),
            started_at: r.started_at.clone(),
        });
        if !e.versions.contains(&r.version) {
            e.versions.push(r.version);
            e.versions.sort_unstable();
        }
        if !e.ranks.contains(&r.rank) {
            e.ranks.push(r.rank);
            e.ranks.sort_unstable();
        }
        if !r.started_at.is_empty() && (e.started_at.is_empty() || r.started_at < e.started_at) {
            e.started_at = r.started_at.clone();
        }
        if e.name.is_none() {
            e.name = r.name.clone();
        }
    }
    let mut out: Vec<TrainingEntry> = by_run.into_values().collect();
    out.sort_by(|a, b| (&a.started_at, &a.run_id).cmp(&(&b.started_at, &b.run_id)));
    out
}

/// Records the training runs stored under a dataset root in the index;
/// returns them.
///
/// # Errors
/// Storage and index failures.
pub async fn sync(catalog: &Catalog, store: &DatasetStore) -> Result<Vec<TrainingEntry>> {
    let ranks = stored_ranks(store).await?;
    let found = entries(store.url(), &ranks);
    for e in &found {
        catalog.record_training(e)?;
    }
    Ok(found)
}

/// Reads one run (every rank's registration and metrics) from its dataset root.
///
/// # Errors
/// Storage failures; `User` when no rank of the run is stored there.
pub async fn load_run(store: &DatasetStore, run_id: &str) -> Result<TrainingRun> {
    let mut ranks = Vec::new();
    for name in store.list(&format!("{TRAINING_DIR}/{run_id}")).await? {
        let Some(file) = name.rsplit('/').next() else { continue };
        if file.starts_with("rank-") && file.ends_with(".json") {
            if let Some(r) = store.get_json::<RankRecord>(&name).await? {
                ranks.push(r);
            }
        }
    }
    if ranks.is_empty() {
        return Err(CatalogError::User(format!(
            "no training run {run_id} under {}: no {TRAINING_DIR}/{run_id}/rank-*.json",
            store.url()
        )));
    }
    ranks.sort_by_key(|r| r.rank);
    let mut metrics = Vec::new();
    for r in &ranks {
        let rel = metrics_path(run_id, r.rank);
        let m = match store.get(&rel).await? {
            Some(bytes) => parse_metrics(&bytes, &format!("{}/{rel}", store.url()), false)?,
            None => Metrics::default(),
        };
        metrics.push(m);
    }
    let entry = entries(store.url(), &ranks).remove(0);
    Ok(TrainingRun { entry, ranks, metrics })
}

/// Writes (replaces) a rank's registration.
///
/// # Errors
/// Storage failures.
pub async fn write_rank(store: &DatasetStore, record: &RankRecord) -> Result<()> {
    store.put(&rank_path(&record.run_id, record.rank), crate::store::to_json_bytes(record)).await
}

/// Writes (replaces) a rank's metrics file.
///
/// # Errors
/// Storage failures.
pub async fn write_metrics(store: &DatasetStore, run_id: &str, rank: u32, points: &[MetricPoint]) -> Result<()> {
    store.put(&metrics_path(run_id, rank), Bytes::from(metrics_bytes(points))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_lines_are_skipped_and_only_a_strict_reader_refuses_an_inner_one() {
        let m = parse_metrics(
            b"{\"step\":1,\"loss\":2.5}\n{\"step\":2,\"batch\":3,\"loss\":2.0,\"lr\":0.1}\n{\"step\":3,\"lo",
            "f",
            true,
        )
        .unwrap();
        assert_eq!(m.points.len(), 2);
        assert_eq!(m.cut_lines, 1);
        assert_eq!(m.points[1].batch, Some(3));
        assert_eq!(m.points[1].values["lr"], 0.1);
        // A killed writer's cut line, then the resumed writer's lines.
        let resumed = b"{\"step\":1}\n{\"step\":2,\"lo\n{\"step\":2,\"loss\":1.0}\n";
        let m = parse_metrics(resumed, "f", false).unwrap();
        assert_eq!((m.points.len(), m.cut_lines), (2, 1));
        let err = parse_metrics(resumed, "f", true).unwrap_err().to_string();
        assert!(err.contains("f:2"), "{err}");
    }

    #[test]
    fn a_point_round_trips_through_its_line() {
        let p = MetricPoint {
            step: 7,
            batch: Some(8),
            epoch: Some(0),
            tokens: Some(512),
            time: Some(1.5),
            values: [("loss".to_string(), 2.25)].into(),
        };
        let m = parse_metrics(&metrics_bytes(std::slice::from_ref(&p)), "f", true).unwrap();
        assert_eq!(m.points, vec![p]);
    }

    #[test]
    fn run_ids_are_directory_names() {
        assert!(valid_run_id("20261206T050000Z-a1b2c3"));
        assert!(valid_run_id("gpt2.small_run-1"));
        for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(129)] {
            assert!(!valid_run_id(bad), "{bad}");
        }
    }

    #[test]
    fn entries_group_ranks_of_a_run() {
        let rank = |run: &str, rank: u32, at: &str| -> RankRecord {
            serde_json::from_value(serde_json::json!({
                "format": 1, "run_id": run, "dataset": "d", "version": 2, "rank": rank, "world_size": 2, "started_at": at,
            }))
            .unwrap()
        };
        let e =
            entries("file:///r", &[rank("b", 1, "2026-01-02"), rank("b", 0, "2026-01-01"), rank("a", 0, "2026-01-03")]);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].run_id, "b");
        assert_eq!(e[0].ranks, vec![0, 1]);
        assert_eq!(e[0].started_at, "2026-01-01");
    }
}
