//! The values the catalog stores: run plans, split completion records and
//! version manifests. All are plain serde values written as JSON files into
//! the dataset's storage (the source of truth) and indexed in sled.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Format version of every JSON file the catalog writes.
pub const FORMAT_VERSION: u32 = 1;

/// One column of a dataset's schema, as the catalog records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDesc {
    /// Column name.
    pub name: String,
    /// Arrow data type, as Arrow displays it (`Utf8`, `LargeUtf8`, `FixedSizeBinary(16)`, ...).
    pub data_type: String,
    /// Whether the column may hold nulls.
    pub nullable: bool,
}

/// One unit of input work, listed at plan time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitInfo {
    /// Position of the split in the plan; shards are named and ordered by it.
    pub index: u32,
    /// The stage that reads it.
    pub source: String,
    /// What it reads (a file path or URL, with a byte range if any).
    pub id: String,
    /// Input size in bytes, when known.
    pub bytes: Option<u64>,
}

/// The plan of a run, written once at `runs/<run_id>/plan.json` by whichever
/// rank starts first; every rank must agree with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunPlan {
    /// File format version.
    pub format: u32,
    /// The run.
    pub run_id: String,
    /// Dataset name.
    pub dataset: String,
    /// URL of the dataset's root in storage.
    pub root_url: String,
    /// Path of the pipeline file as given.
    pub pipeline_path: String,
    /// xxh3-128 of the pipeline file's bytes, hex.
    pub pipeline_hash: String,
    /// Every stage's configuration with defaults filled in.
    pub resolved_config: serde_json::Value,
    /// smelt's version.
    pub smelt_version: String,
    /// Schema of the rows the sink writes.
    pub schema: Vec<FieldDesc>,
    /// Every split, in order.
    pub splits: Vec<SplitInfo>,
    /// The schedule interval the run covers (`smelt run --interval`, `smelt scheduler`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<RunInterval>,
    /// The committed versions of other datasets the run reads (`dataset`
    /// sources), pinned at plan time; an incremental read names the version
    /// it appends to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstream: Vec<UpstreamRead>,
}

/// A committed version of another dataset that a run reads (a `dataset` source).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamRead {
    /// The source stage.
    pub source: String,
    /// `name@V`, the version read.
    pub version: String,
    /// Its storage root (URL or path), so that a commit finds it again.
    pub root: String,
    /// Set when the run read only what changed since an earlier version (`incremental: true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Since>,
}

/// What an incremental read of an upstream version starts from
/// (docs/adr/0019-incremental-downstream.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Since {
    /// The upstream version the base version read (its documents are already in).
    pub upstream: u64,
    /// The version of this dataset the run's rows are appended to.
    pub base: u64,
    /// Upstream documents new or changed since then (read by the run).
    pub added: u64,
    /// Upstream documents removed or changed since then (their rows leave the base's shards).
    pub removed: u64,
}

impl UpstreamRead {
    /// The upstream dataset's name (`name` of `name@V`).
    pub fn dataset(&self) -> &str {
        self.version.rsplit_once('@').map_or(self.version.as_str(), |(n, _)| n)
    }

    /// The version number read.
    pub fn number(&self) -> Option<u64> {
        self.version.rsplit_once('@')?.1.parse().ok()
    }
}

/// One interval `[start, end)` of a pipeline's `schedule:` that a run covers.
/// A version whose lineage has it marks the interval done (docs/scheduling.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInterval {
    /// Inclusive start, RFC 3339 in UTC (`2024-05-01T00:00:00Z`).
    pub start: String,
    /// Exclusive end, RFC 3339 in UTC.
    pub end: String,
    /// The cron expression that defines it.
    pub cron: String,
    /// The time zone the cron is read in.
    pub timezone: String,
}

/// One shard file of a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// Path relative to the dataset root.
    pub path: String,
    /// Split that produced it.
    pub split: u32,
    /// Number of rows.
    pub rows: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// `xxh3-128:<hex>` of the file's bytes.
    pub checksum: String,
    /// Content hash of its rows in order (`poly61x2:<hex>`, see
    /// [`crate::content`]); absent in shards written before smelt recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// A stored document index: the `(id, content_hash)` of every row, sorted by
/// id (format in [`crate::docindex`]); the document diff merge-joins two of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocIndexRef {
    /// Path relative to the dataset root.
    pub path: String,
    /// Entries (rows with an id and a content hash).
    pub entries: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// Checksum of the file: `xxh3-128-blocks:<hex>` (the xxh3-128 of its
    /// 256 KiB blocks' digests, what smelt writes) or `xxh3-128:<hex>` (of
    /// the whole file, indexes committed before; see `docindex::hashing`).
    pub checksum: String,
}

/// Statistics of one group (language x source x domain).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStats {
    /// `lang` column value, or `und` when the dataset has none.
    pub lang: String,
    /// `source` column value.
    pub source: String,
    /// Host of the URL, `-` when there is none.
    pub domain: String,
    /// Documents.
    pub docs: u64,
    /// Tokens (`n_tokens` column), 0 when the dataset is not tokenized.
    pub tokens: u64,
    /// Bytes of UTF-8 text.
    pub text_bytes: u64,
}

/// Rows in and out of one stage, with drops by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageMetrics {
    /// Stage name in the pipeline.
    pub stage: String,
    /// Rows received.
    pub rows_in: u64,
    /// Rows emitted.
    pub rows_out: u64,
    /// Rows dropped, by reason.
    pub drops: BTreeMap<String, u64>,
    /// Input records skipped (sources: corrupt or truncated records), by reason.
    pub skips: BTreeMap<String, u64>,
    /// What the stage counted besides rows (e.g. `pii` redactions by kind,
    /// `toxicity` matches by list), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counters: BTreeMap<String, u64>,
    /// Document-id samples the stage kept (e.g. `audit`'s toxic documents per
    /// group), by name: the smallest ids, so the same whatever the split layout.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub samples: BTreeMap<String, Samples>,
    /// CPU time spent in the stage, in milliseconds (not part of determinism).
    pub busy_ms: u64,
    /// What an incremental source's reader asks to remember once the split
    /// commits (feed items seen, validators); moved into [`Lineage::source_state`]
    /// at commit, never part of the funnel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<serde_json::Value>,
}

/// The `cap` smallest document ids of a set, sorted: merging two splits'
/// samples gives the samples of their union.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Samples {
    /// How many ids are kept at most.
    pub cap: u32,
    /// The smallest ids, ascending, without duplicates.
    pub ids: Vec<String>,
}

impl Samples {
    /// Adds `other`'s ids, keeping the `cap` smallest.
    pub fn merge(&mut self, other: &Samples) {
        self.cap = self.cap.max(other.cap);
        self.ids.extend(other.ids.iter().cloned());
        self.ids.sort_unstable();
        self.ids.dedup();
        self.ids.truncate(self.cap as usize);
    }
}

impl StageMetrics {
    /// Adds `other`'s counts into `self`.
    pub fn merge(&mut self, other: &StageMetrics) {
        self.rows_in += other.rows_in;
        self.rows_out += other.rows_out;
        self.busy_ms += other.busy_ms;
        for (k, v) in &other.drops {
            *self.drops.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.skips {
            *self.skips.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.counters {
            *self.counters.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.samples {
            self.samples.entry(k.clone()).or_default().merge(v);
        }
        if other.state.is_some() {
            self.state = other.state.clone();
        }
    }
}

/// Completion record of one split, written at `runs/<run_id>/splits/<index>.json`
/// after all its shards are in storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitRecord {
    /// File format version.
    pub format: u32,
    /// The split.
    pub split: SplitInfo,
    /// Shards it produced, in order.
    pub shards: Vec<ShardEntry>,
    /// Group statistics of the rows written.
    pub stats: Vec<GroupStats>,
    /// Per-stage metrics, in the pipeline's stage order.
    pub stages: Vec<StageMetrics>,
    /// The split's sorted document index (`runs/<run_id>/index/<index>.idx`),
    /// stored before this record; `None` from a smelt without document
    /// indexes, or when the rows have no `id` or `content_hash` column.
    #[serde(default)]
    pub doc_index: Option<DocIndexRef>,
}

/// Where a version came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    /// The run that produced it.
    pub run_id: String,
    /// Pipeline file path as given.
    pub pipeline_path: String,
    /// xxh3-128 of the pipeline file, hex.
    pub pipeline_hash: String,
    /// Resolved stage configurations.
    pub resolved_config: serde_json::Value,
    /// smelt's version.
    pub smelt_version: String,
    /// Input splits read.
    pub inputs: Vec<SplitInfo>,
    /// The schedule interval the version covers, when a scheduled run (or
    /// `smelt run --interval`) made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<RunInterval>,
    /// State that incremental sources (`rss`) return per split, in plan order;
    /// read back at the next run's plan time so it processes only what is new.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_state: Vec<SourceState>,
    /// The version this one rewrote with `smelt catalog compact` (same
    /// documents in the same order, fewer shards); the rest of the lineage is that version's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compacted_from: Option<u64>,
    /// The versions of other datasets read (from the run's plan), with what an incremental read appended to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstream: Vec<UpstreamRead>,
}

/// One split's committed source state (see [`Lineage::source_state`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceState {
    /// The source stage's name.
    pub source: String,
    /// The split's id.
    pub split: String,
    /// What the source's reader returned.
    pub state: serde_json::Value,
}

/// Totals of a version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Rows (documents).
    pub rows: u64,
    /// Shard files.
    pub shards: u64,
    /// Bytes of shard files.
    pub bytes: u64,
    /// Tokens, 0 when not tokenized.
    pub tokens: u64,
    /// Bytes of text.
    pub text_bytes: u64,
}

/// An immutable dataset version, written once at `_versions/<NNNNNN>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionManifest {
    /// File format version.
    pub format: u32,
    /// Dataset name.
    pub dataset: String,
    /// Version number, from 1.
    pub version: u64,
    /// Commit time, RFC 3339.
    pub committed_at: String,
    /// xxh3-128 over the schema and the content hash of every row in order
    /// ([`crate::content`]): equal digests mean the same rows, whatever the
    /// run and however they are cut into shards (the shards' `checksum`s
    /// say whether the files are byte-identical). Versions whose shards have
    /// no content hash (written before smelt recorded them) hash the shard
    /// checksums instead.
    pub digest: String,
    /// Schema of the shards.
    pub schema: Vec<FieldDesc>,
    /// Every shard, ordered by split and sequence.
    pub shards: Vec<ShardEntry>,
    /// Totals.
    pub totals: Totals,
    /// Group statistics (language x source x domain), sorted by key.
    pub stats: Vec<GroupStats>,
    /// Filter funnel: per-stage metrics summed over splits, in stage order.
    pub funnel: Vec<StageMetrics>,
    /// Lineage.
    pub lineage: Lineage,
    /// The version's sorted document index, written before this manifest;
    /// `None` for versions committed before smelt wrote them (the diff then
    /// has no document section).
    #[serde(default)]
    pub doc_index: Option<DocIndexRef>,
    /// Bias audits of the version, one per `audit` stage (docs/audit.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audit: Vec<crate::audit::AuditSection>,
}

/// The short form of a version kept in the sled index for `catalog log`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionSummary {
    /// Dataset name.
    pub dataset: String,
    /// Version number.
    pub version: u64,
    /// The run that produced it.
    pub run_id: String,
    /// Commit time, RFC 3339.
    pub committed_at: String,
    /// Pipeline hash.
    pub pipeline_hash: String,
    /// Data digest.
    pub digest: String,
    /// Totals.
    pub totals: Totals,
    /// Manifest location relative to the dataset root.
    pub manifest_path: String,
}

impl VersionSummary {
    /// The summary of a manifest.
    pub fn of(m: &VersionManifest) -> Self {
        VersionSummary {
            dataset: m.dataset.clone(),
            version: m.version,
            run_id: m.lineage.run_id.clone(),
            committed_at: m.committed_at.clone(),
            pipeline_hash: m.lineage.pipeline_hash.clone(),
            digest: m.digest.clone(),
            totals: m.totals.clone(),
            manifest_path: manifest_path(m.version),
        }
    }
}

/// A dataset as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetRecord {
    /// Name.
    pub name: String,
    /// URL of its root in storage.
    pub root_url: String,
    /// Latest committed version.
    pub latest: u64,
}

/// Path of version `v`'s manifest relative to the dataset root.
pub fn manifest_path(v: u64) -> String {
    format!("_versions/{v:06}.json")
}
