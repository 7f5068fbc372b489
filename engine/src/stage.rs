//! The stage traits. A stage `type:` maps (in the binary's registry) to a
//! [`StageType`], whose `configure` turns YAML options into a [`StageConfig`]
//! with no I/O; the compiler asks configs for schemas; the executor builds
//! runtime objects from them.
//!
//! ```text
//! options (JSON) ──configure──► StageConfig ──schema checks──► compiled DAG
//!                                   │ build (I/O allowed)
//!                                   ▼
//!        SplitReader ─batches─► Transform ─batches─► ShardWriter ─encoded shards─► engine uploads
//! ```
//! Stages never spawn tasks, count their own drops, or touch storage: the
//! engine owns loops, channels, metrics and I/O of shards.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::yaml::PathSeg;

/// The kinds of stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageKind {
    /// Lists splits, reads them into batches.
    Source,
    /// Batch in, batch out.
    Transform,
    /// Needs all its input before emitting (the `dedup_*` stages).
    Barrier,
    /// Writes shards.
    Sink,
}

impl StageKind {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Source => "source",
            StageKind::Transform => "transform",
            StageKind::Barrier => "barrier",
            StageKind::Sink => "sink",
        }
    }
}

/// A problem with a stage's options, located by its path inside the options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError {
    /// Path inside the stage's options.
    pub path: Vec<PathSeg>,
    /// What is wrong.
    pub message: String,
    /// Whether the error is about an option name (points at the key rather than the value).
    pub at_key: bool,
}

/// What a stage factory knows about where its pipeline runs, handed to every
/// [`StageType::configure`]: relative file options resolve against the
/// pipeline file's directory, state that outlives a run goes under the data
/// directory, and named datasets (`name@version`) are found through
/// [`DatasetRoots`]. There is no other way for a stage to learn these.
#[derive(Debug, Clone)]
pub struct ConfigureContext {
    /// Directory of the pipeline file (`.` for a file in the working directory).
    pub pipeline_dir: PathBuf,
    /// smelt's data directory (`--data-dir`): catalog, caches, scratch.
    pub data_dir: PathBuf,
    /// Where named datasets are stored.
    pub datasets: DatasetRoots,
    /// The stage runs with `mode: annotate` (crate::annotate): it keeps every
    /// row, and may write what it measured (the quality filters' `signals`).
    pub annotate: bool,
    /// Upstream versions pinned for this run (`smelt run --upstream NAME@V`, the
    /// scheduler's `on_commit` runs): a `dataset` source whose `from` names
    /// dataset NAME reads version V instead.
    pub pins: std::collections::BTreeMap<String, u64>,
    /// Compiles SQL predicates (the `dataset` source's `where`): the engine
    /// cannot parse SQL, so the runner hands stages DataFusion's compiler
    /// here; `None` where no SQL engine is linked.
    pub predicates: Option<Arc<dyn PredicateCompiler>>,
}

/// Compiles a SQL boolean expression over a schema into a [`RowPredicate`].
pub trait PredicateCompiler: Send + Sync + Debug {
    /// `sql` planned against `schema`.
    ///
    /// # Errors
    /// Syntax errors, unknown columns (with the closest), an expression that
    /// is not boolean: the message and a hint for the user.
    fn compile(&self, sql: &str, schema: &SchemaRef) -> Result<Arc<dyn RowPredicate>, (String, Option<String>)>;
}

/// A compiled row predicate.
pub trait RowPredicate: Send + Sync + Debug {
    /// The rows of `batch` for which the predicate is true (not false, not null), in order.
    ///
    /// # Errors
    /// The expression fails on these values.
    fn filter(&self, batch: &RecordBatch) -> Result<RecordBatch>;

    /// The row groups of a Parquet file (its `metadata`, read as `schema`)
    /// that may hold a row for which the predicate is true, judged by their
    /// column statistics; `None` when the statistics rule nothing out (or
    /// cannot be used), so every row group is read.
    fn row_groups(
        &self,
        metadata: &parquet::file::metadata::ParquetMetaData,
        schema: &SchemaRef,
    ) -> Option<Vec<usize>> {
        let _ = (metadata, schema);
        None
    }
}

impl ConfigureContext {
    /// A context for a pipeline file in `pipeline_dir` and the data directory
    /// `data_dir`; named datasets are looked up under `<data_dir>/datasets/`.
    pub fn new(pipeline_dir: impl Into<PathBuf>, data_dir: impl Into<PathBuf>) -> ConfigureContext {
        let data_dir = data_dir.into();
        ConfigureContext {
            pipeline_dir: pipeline_dir.into(),
            datasets: DatasetRoots::new(&data_dir),
            data_dir,
            annotate: false,
            pins: std::collections::BTreeMap::new(),
            predicates: None,
        }
    }

    /// What a pipeline file in the working directory gets with the default
    /// data directory (`./smelt-data`): for tests and one-off tools.
    pub fn working_dir() -> ConfigureContext {
        ConfigureContext::new(".", "smelt-data")
    }

    /// The context for the pipeline file at `pipeline`: its directory.
    pub fn for_file(pipeline: &Path, data_dir: impl Into<PathBuf>) -> ConfigureContext {
        let dir = pipeline.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        ConfigureContext::new(dir, data_dir)
    }

    /// `path` resolved against the pipeline file's directory (absolute paths unchanged).
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_relative() {
            self.pipeline_dir.join(path)
        } else {
            path.to_path_buf()
        }
    }
}

/// Where named datasets are stored: the catalog's roots for the datasets it
/// knows, else `<data dir>/datasets/<name>` (what a rank process, which never
/// opens the catalog, can find).
#[derive(Debug, Clone)]
pub struct DatasetRoots {
    data_dir: PathBuf,
    named: BTreeMap<String, String>,
}

impl DatasetRoots {
    /// Roots under `<data_dir>/datasets/` only.
    pub fn new(data_dir: &Path) -> DatasetRoots {
        DatasetRoots { data_dir: data_dir.to_path_buf(), named: BTreeMap::new() }
    }

    /// Adds the catalog's roots: dataset name -> storage URL or path.
    pub fn with_named(mut self, named: BTreeMap<String, String>) -> DatasetRoots {
        self.named = named;
        self
    }

    /// The storage root of dataset `name`: a URL or path as given (when it has
    /// a `/`), the catalog's root for it, or `<data dir>/datasets/<name>`.
    pub fn root_of(&self, name: &str) -> String {
        if name.contains('/') {
            return name.to_string();
        }
        match self.named.get(name) {
            Some(root) => root.clone(),
            None => self.data_dir.join("datasets").join(name).display().to_string(),
        }
    }
}

/// An entry of the stage registry.
pub struct StageType {
    /// The `type:` name.
    pub name: &'static str,
    /// Its kind.
    pub kind: StageKind,
    /// One line for `smelt stages`.
    pub about: &'static str,
    /// Parses the stage's options (no I/O).
    pub configure: fn(serde_json::Value, &ConfigureContext) -> Result<StageConfig, OptionError>,
    /// JSON Schema of the options `configure` deserialises (for `smelt schema`):
    /// [`options_schema`] of the stage's config struct.
    pub options: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
}

/// The JSON Schema of the options struct `T` (the struct [`parse_options`]
/// deserialises for a stage): its fields, types, defaults and doc comments.
/// Nested types land in the generator's definitions.
pub fn options_schema<T: schemars::JsonSchema>(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    T::json_schema(generator)
}

impl Debug for StageType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageType").field("name", &self.name).field("kind", &self.kind).finish()
    }
}

/// A configured stage.
#[derive(Debug, Clone)]
pub enum StageConfig {
    /// A source.
    Source(Arc<dyn SourceConfig>),
    /// A transform.
    Transform(Arc<dyn TransformConfig>),
    /// A barrier: sees every row of the run before any leaves it.
    Barrier(Arc<dyn BarrierConfig>),
    /// A sink.
    Sink(Arc<dyn SinkConfig>),
}

impl StageConfig {
    /// The kind.
    pub fn kind(&self) -> StageKind {
        match self {
            StageConfig::Source(_) => StageKind::Source,
            StageConfig::Transform(_) => StageKind::Transform,
            StageConfig::Barrier(_) => StageKind::Barrier,
            StageConfig::Sink(_) => StageKind::Sink,
        }
    }

    /// Options with defaults filled in, for lineage.
    pub fn resolved(&self) -> serde_json::Value {
        match self {
            StageConfig::Source(c) => c.resolved(),
            StageConfig::Transform(c) => c.resolved(),
            StageConfig::Barrier(c) => c.resolved(),
            StageConfig::Sink(c) => c.resolved(),
        }
    }
}

/// Deserialises options into a `deny_unknown_fields` config struct, keeping
/// the path of the failing field.
///
/// # Errors
/// Unknown options, wrong types, invalid values.
pub fn parse_options<T: DeserializeOwned>(options: serde_json::Value) -> Result<T, OptionError> {
    serde_path_to_error::deserialize::<_, T>(options).map_err(|e| {
        let mut path: Vec<PathSeg> = e
            .path()
            .iter()
            .filter_map(|seg| match seg {
                serde_path_to_error::Segment::Map { key } => Some(PathSeg::Key(key.clone())),
                serde_path_to_error::Segment::Seq { index } => Some(PathSeg::Index(*index)),
                serde_path_to_error::Segment::Enum { variant } => Some(PathSeg::Key(variant.clone())),
                serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        let message = e.inner().to_string();
        let at_key = message.starts_with("unknown field");
        if at_key {
            // serde reports the unknown field itself as the last segment only sometimes.
            if let Some(name) = message.split('`').nth(1) {
                if path.last() != Some(&PathSeg::Key(name.to_string())) {
                    path.push(PathSeg::Key(name.to_string()));
                }
            }
        }
        OptionError { path, message, at_key }
    })
}

/// A schema problem on an edge: the stage needs something its input lacks,
/// or one of its options does not fit the input's columns (`.1`: the option's
/// path inside the stage's options, and what to change), reported there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError(pub String, pub Option<(Vec<PathSeg>, Option<String>)>);

impl SchemaError {
    /// A problem with the input's columns.
    pub fn new(message: impl Into<String>) -> SchemaError {
        SchemaError(message.into(), None)
    }

    /// A problem of the option at `path` (inside the stage's options) with the input's columns.
    pub fn at_option(path: Vec<PathSeg>, message: impl Into<String>, help: Option<String>) -> SchemaError {
        SchemaError(message.into(), Some((path, help)))
    }
}

/// Row `i` of a string column (Utf8, LargeUtf8 or Utf8View); `None` when
/// null or when the column is not a string column.
pub fn str_at(col: &arrow::array::ArrayRef, i: usize) -> Option<&str> {
    use arrow::array::{Array, AsArray};
    if col.is_null(i) {
        return None;
    }
    match col.data_type() {
        DataType::Utf8 => Some(col.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => Some(col.as_string::<i64>().value(i)),
        DataType::Utf8View => Some(col.as_string_view().value(i)),
        _ => None,
    }
}

/// Checks that `schema` has `column` with one of `types`.
///
/// # Errors
/// A message naming the column, the wanted types and the columns present.
pub fn require_column(schema: &SchemaRef, column: &str, types: &[DataType]) -> Result<(), SchemaError> {
    match schema.field_with_name(column) {
        Ok(f) if types.is_empty() || types.contains(f.data_type()) => Ok(()),
        Ok(f) => Err(SchemaError::new(format!(
            "needs column `{column}` as {}, but its input has it as {}",
            types.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(" or "),
            f.data_type()
        ))),
        Err(_) => Err(SchemaError::new(format!(
            "needs column `{column}`{}, but its input has only: {}",
            if types.is_empty() {
                String::new()
            } else {
                format!(" ({})", types.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(" or "))
            },
            schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// One unit of a source's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitSpec {
    /// What is read: a path or URL (with a byte range if any).
    pub id: String,
    /// Size in bytes when known.
    pub bytes: Option<u64>,
}

/// Per-reason counts of skipped input records; each skip is also logged.
#[derive(Debug, Default, Clone)]
pub struct Skips {
    counts: BTreeMap<String, u64>,
}

impl Skips {
    /// Counts and logs one skipped record.
    pub fn skip(&mut self, reason: &str, detail: impl std::fmt::Display) {
        tracing::warn!(reason, "skipped record: {detail}");
        *self.counts.entry(reason.to_string()).or_default() += 1;
    }

    /// Counts one input record that is expected not to become a document
    /// (a non-HTML response, a 404), without a warning.
    pub fn ignore(&mut self, reason: &str) {
        *self.counts.entry(reason.to_string()).or_default() += 1;
    }

    /// Counts `n` input records that are expected not to become documents
    /// (rows a source's `where` leaves out), without a warning.
    pub fn ignore_many(&mut self, reason: &str, n: u64) {
        if n > 0 {
            *self.counts.entry(reason.to_string()).or_default() += n;
        }
    }

    /// Counts by reason.
    pub fn counts(&self) -> &BTreeMap<String, u64> {
        &self.counts
    }
}

/// Settings a source reader gets from the engine.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Rows per batch.
    pub batch_rows: usize,
}

/// A source's configuration.
pub trait SourceConfig: Send + Sync + Debug {
    /// Schema of the batches it produces.
    fn schema(&self) -> SchemaRef;
    /// Options with defaults filled in.
    fn resolved(&self) -> serde_json::Value;
    /// Lists splits in a deterministic order (I/O). Relative paths were
    /// resolved at configure time ([`ConfigureContext::resolve`]).
    ///
    /// # Errors
    /// Missing inputs.
    fn splits(&self) -> Result<Vec<SplitSpec>>;
    /// Opens one split for reading.
    ///
    /// # Errors
    /// The split cannot be opened.
    fn open(&self, split: &SplitSpec, options: &ReadOptions) -> Result<Box<dyn SplitReader>>;
    /// Lists splits knowing what the committed versions of the output dataset
    /// already read from this source: incremental sources (`commoncrawl`,
    /// `rss`) leave that out. Default: [`SourceConfig::splits`].
    ///
    /// # Errors
    /// As [`SourceConfig::splits`].
    fn splits_since(&self, committed: &Committed) -> Result<Vec<SplitSpec>> {
        let _ = committed;
        self.splits()
    }
    /// The committed version of another dataset the source reads (`dataset`),
    /// as the run's plan and the version's lineage record it, with `source`
    /// left empty (the engine names the stage); with `since` when it reads
    /// only what changed after `committed.latest`'s read. Must agree with
    /// [`SourceConfig::splits_since`] given the same `committed`. Default: none.
    ///
    /// # Errors
    /// As [`SourceConfig::splits`].
    fn upstream(&self, committed: &Committed) -> Result<Option<smelt_catalog::UpstreamRead>> {
        let _ = committed;
        Ok(None)
    }
    /// Whether the source's rows are appended to the output's latest version
    /// rather than replacing it (`dataset` with `incremental: true`): the
    /// pipeline may then have no other source and no barrier stage.
    fn appends(&self) -> bool {
        false
    }
}

/// What the committed versions of a dataset hold from one source stage (by
/// stage name), read back at plan time: the state of an incremental source
/// advances only when a version commits.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    /// Ids of the splits the stage read in committed versions.
    pub splits: std::collections::BTreeSet<String>,
    /// `(split id, state)` its readers returned ([`SplitReader::state`]), oldest version first.
    pub states: Vec<(String, serde_json::Value)>,
    /// The output dataset's latest version, when the same pipeline file made it, and what this source read for it.
    pub latest: Option<LatestRead>,
}

/// The output dataset's latest version and the upstream version a source read for it (see [`Committed`]).
#[derive(Debug, Clone)]
pub struct LatestRead {
    /// Its number.
    pub version: u64,
    /// What the source read for it ([`SourceConfig::upstream`]).
    pub upstream: smelt_catalog::UpstreamRead,
}

/// Reads one split; blocking calls are fine (the engine runs it off the I/O threads).
pub trait SplitReader: Send {
    /// The next batch, `None` at the end. Bad records are skipped through `skips`.
    ///
    /// # Errors
    /// Failures that make the rest of the split unreadable.
    fn next_batch(&mut self, skips: &mut Skips) -> Result<Option<RecordBatch>>;
    /// Input bytes consumed so far, for progress.
    fn bytes_read(&self) -> u64 {
        0
    }
    /// State to commit with the version once the split has been read to its
    /// end (feed items seen, validators); it comes back through [`Committed`].
    fn state(&self) -> Option<serde_json::Value> {
        None
    }
}

/// A transform's configuration.
pub trait TransformConfig: Send + Sync + Debug {
    /// Output schema for an input schema.
    ///
    /// # Errors
    /// The input lacks a column the stage needs.
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, SchemaError>;
    /// Options with defaults filled in.
    fn resolved(&self) -> serde_json::Value;
    /// Builds the runtime transform for one split.
    ///
    /// # Errors
    /// Resources the stage needs cannot be loaded.
    fn build(&self, input: &SchemaRef) -> Result<Box<dyn Transform>>;
    /// More rows per call than a pipeline batch, for a transform whose every
    /// call has a fixed cost (the `python` stage's round trip to its worker):
    /// the engine gathers consecutive batches of a split and hands them to
    /// [`Transform::process_many`]. Default: `process`, batch by batch.
    fn batching(&self) -> Option<Batching> {
        None
    }
}

/// How a transform wants its input gathered ([`TransformConfig::batching`]):
/// consecutive batches of one split, until they hold at least `rows` rows or
/// `bytes` bytes of arrays, or the split ends. A batch is never cut, so a call
/// may pass either bound by one batch less one row; each batch still gets its
/// own result, so the output is the same as batch by batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Rows to gather at least.
    pub rows: usize,
    /// Bytes of arrays (`get_array_memory_size`) to gather at most before a call, one batch aside.
    pub bytes: usize,
}

/// What a transform did with a batch.
#[derive(Debug)]
pub enum Processed {
    /// A batch of output rows.
    Batch(RecordBatch),
    /// `batch` with a verdict per row: `None` keeps the row, `Some(reason)`
    /// drops it. The engine filters and counts drops by stage and reason.
    Filtered {
        /// Rows before filtering (already transformed, if the stage also maps).
        batch: RecordBatch,
        /// One verdict per row.
        verdicts: Vec<Option<Cow<'static, str>>>,
    },
}

/// A runtime transform.
pub trait Transform: Send {
    /// Processes one batch.
    ///
    /// # Errors
    /// Failures that must stop the run (not bad documents: drop those with a reason).
    fn process(&mut self, batch: RecordBatch) -> Result<Processed>;

    /// Processes consecutive batches of a split in one call, one result per
    /// batch in order (for a transform that asks, [`TransformConfig::batching`]).
    /// Default: [`Transform::process`] on each.
    ///
    /// # Errors
    /// As [`Transform::process`].
    fn process_many(&mut self, batches: Vec<RecordBatch>) -> Result<Vec<Processed>> {
        batches.into_iter().map(|b| self.process(b)).collect()
    }

    /// Counts the stage kept besides rows and drops (redactions, matches, ...),
    /// taken once when its split ends and summed into the stage's metrics.
    fn take_counters(&mut self) -> BTreeMap<String, u64> {
        BTreeMap::new()
    }

    /// Document-id samples the stage kept (each the `cap` smallest ids of a
    /// set), taken once when its split ends and merged into the stage's metrics.
    fn take_samples(&mut self) -> BTreeMap<String, smelt_catalog::Samples> {
        BTreeMap::new()
    }
}

/// Where a barrier stage keeps its state in one run. The directories are on a
/// file system every rank of the run sees (the data directory's `scratch/`).
#[derive(Debug, Clone)]
pub struct BarrierContext {
    /// What observers wrote, one set of files per split (observers name
    /// their files by split); read by [`BarrierConfig::resolve`].
    pub observed_dir: std::path::PathBuf,
    /// What `resolve` writes and appliers read. `resolve` gets a fresh
    /// directory that the engine renames into place once it returns.
    pub resolved_dir: std::path::PathBuf,
    /// Memory the global step may use, in bytes (pipeline setting `memory_budget`).
    pub memory_budget: usize,
    /// Threads the global step may use.
    pub parallelism: usize,
}

impl BarrierContext {
    /// Memory one observer may hold, in bytes: `memory_budget / parallelism / 2`.
    /// Observers run `parallelism` at once and share half the budget between
    /// them; the other half is left for what runs beside them (the batches in
    /// flight, the engine's spill of the rows, a sort's order vector).
    pub fn observer_share(&self) -> usize {
        self.memory_budget / self.parallelism.max(1) / 2
    }
}

/// A barrier stage's configuration (docs/adr/0006-barrier-stages.md). The engine runs it
/// in three steps, and may run them in different processes (ranks):
///
/// ```text
/// phase k, per split:   rows ──► observer (keeps what the global step needs, e.g. signatures)
///                        └─────► spilled to scratch as Parquet, in order
/// once, all splits done: resolve (e.g. cluster the signatures, out of core)
/// phase k+1, per split: spilled rows, same order ──► applier (a Transform: keep, drop, annotate) ──► downstream
/// ```
pub trait BarrierConfig: Send + Sync + Debug {
    /// Columns out for columns in; no I/O.
    ///
    /// # Errors
    /// The input lacks a column the stage needs.
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, SchemaError>;

    /// Options with defaults filled in, for lineage.
    fn resolved(&self) -> serde_json::Value;

    /// Builds the observer of split `split`.
    ///
    /// # Errors
    /// Resources the stage needs cannot be loaded or written.
    fn observer(&self, input: &SchemaRef, ctx: &BarrierContext, split: u32) -> Result<Box<dyn BarrierObserver>>;

    /// The global step, once per run after every split in `splits` was
    /// observed. Returns counts for the stage's metrics.
    ///
    /// # Errors
    /// Storage or resource failures (the run stops and can be resumed).
    fn resolve(&self, ctx: &BarrierContext, splits: &[u32]) -> Result<BTreeMap<String, u64>>;

    /// Builds the applier of split `split`: it receives the rows the
    /// observer saw, in the same order, in batches.
    ///
    /// # Errors
    /// The resolved state cannot be read.
    fn applier(&self, input: &SchemaRef, ctx: &BarrierContext, split: u32) -> Result<Box<dyn Transform>>;
}

/// Sees one split's rows in the observe phase of a barrier.
pub trait BarrierObserver: Send {
    /// Takes one batch, in row order.
    ///
    /// # Errors
    /// Writing the stage's state failed.
    fn observe(&mut self, batch: &RecordBatch) -> Result<()>;

    /// All rows seen: write what is left.
    ///
    /// # Errors
    /// Writing the stage's state failed.
    fn finish(&mut self) -> Result<()>;
}

/// What a [`ShardWriter`] produced, in file order: the bytes of the shard
/// being written as they are encoded, then its end. The engine streams the
/// bytes to the store while the writer goes on, so a shard is never held
/// whole in memory.
#[derive(Debug, Clone, PartialEq)]
pub enum ShardOutput {
    /// The next bytes of the shard being written (a new shard starts with the
    /// first bytes after an [`ShardOutput::End`]).
    Bytes(Bytes),
    /// The shard being written is complete.
    End {
        /// Rows in it.
        rows: u64,
    },
}

/// A sink's configuration.
pub trait SinkConfig: Send + Sync + Debug {
    /// Checks the input schema.
    ///
    /// # Errors
    /// Missing columns.
    fn check_input(&self, input: &SchemaRef) -> Result<(), SchemaError>;
    /// Options with defaults filled in.
    fn resolved(&self) -> serde_json::Value;
    /// A writer for one split's rows.
    ///
    /// # Errors
    /// Invalid writer settings.
    fn writer(&self, schema: &SchemaRef) -> Result<Box<dyn ShardWriter>>;
}

/// Encodes rows into shard files, rolling over at the size target. The
/// bytes of a shard are handed out as they are encoded, not when it is
/// complete; a writer holds back only what its format must (for Parquet, the
/// row group being filled).
pub trait ShardWriter: Send {
    /// Adds a batch; returns the bytes encoded since the last call and the
    /// ends of the shards completed, in file order.
    ///
    /// # Errors
    /// Encoding failures.
    fn write(&mut self, batch: &RecordBatch) -> Result<Vec<ShardOutput>>;
    /// Flushes the rest and ends the last shard.
    ///
    /// # Errors
    /// Encoding failures.
    fn finish(&mut self) -> Result<Vec<ShardOutput>>;
}

/// The fixed document columns every source produces and the sink and stages rely on.
pub mod doc {
    use arrow::datatypes::{DataType, Field, TimeUnit};

    /// `id`, Utf8.
    pub fn id() -> Field {
        Field::new("id", DataType::Utf8, false)
    }
    /// `text`, LargeUtf8.
    pub fn text() -> Field {
        Field::new("text", DataType::LargeUtf8, false)
    }
    /// `url`, Utf8, nullable.
    pub fn url() -> Field {
        Field::new("url", DataType::Utf8, true)
    }
    /// `source`, Utf8.
    pub fn source() -> Field {
        Field::new("source", DataType::Utf8, false)
    }
    /// `fetched_at`, Timestamp(us, UTC), nullable.
    pub fn fetched_at() -> Field {
        Field::new("fetched_at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true)
    }
    /// `origin`, Utf8.
    pub fn origin() -> Field {
        Field::new("origin", DataType::Utf8, false)
    }
    /// `content_hash`, FixedSizeBinary(16).
    pub fn content_hash() -> Field {
        Field::new("content_hash", DataType::FixedSizeBinary(16), false)
    }
    /// The full fixed document schema, in order.
    pub fn all() -> Vec<Field> {
        vec![id(), text(), url(), source(), fetched_at(), origin(), content_hash()]
    }
}
