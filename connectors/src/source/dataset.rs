//! `dataset` source: a committed version of another dataset, pinned at plan
//! time, read shard by shard.
//!
//! ```text
//! from: name@prod | name@7 | name@latest | root/or/url@7
//!   ──plan (splits): upstream::open_version (storage only: _versions/, _tags/)──► version V pinned:
//!        one split per shard, id "name@V#<shard path>" (in the run plan and the lineage)
//!   ──open: the shard from the dataset's storage (local or object store), checked against
//!        the manifest's xxh3-128 ──► the document columns (as `parquet_files` reads them)
//! ```
//! A resumed run, and every other rank of a run, reads the splits its plan
//! pinned: a tag that moves while the run is going does not mix two versions.

use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray};
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_reader::RowSelection;
use parquet::arrow::ProjectionMask;
use serde::{Deserialize, Serialize};
use smelt_catalog::incremental::{row_key, Delta};
use smelt_catalog::{DatasetStore, Since, UpstreamRead, VersionRef};
use smelt_engine::blocking::block_on;
use smelt_engine::upstream::Earlier;
use smelt_engine::yaml::PathSeg;
use smelt_engine::{
    parse_options, Committed, ConfigureContext, DatasetRoots, EngineError, OptionError, ReadOptions, Result,
    RowPredicate, SourceConfig, SplitReader, SplitSpec, StageConfig,
};

use super::parquet::document_reader;
use super::{doc_schema, Body};

/// Options of the `dataset` source.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetSourceConfig {
    /// The version to read: `name@7`, `name@prod` (a tag), `name@latest` or `name` (the latest when the
    /// run is planned), or a storage root with a version (`/data/datasets/news@3`, `s3://b/news@3`).
    /// The version is pinned in the run's plan and recorded in the lineage.
    pub from: String,
    /// Columns to carry over besides the document ones (`id`, `text`, `url`, `source`, `fetched_at`,
    /// `origin`): what upstream stages added, such as `lang`, `signals`, `would_drop` or `score_hq`.
    /// Their types are read from the version `from` names when the pipeline is compiled.
    #[serde(default)]
    pub columns: Vec<String>,
    /// A SQL boolean expression over the columns read (the document ones and `columns`): only rows for
    /// which it is true are read; the others are counted under `where` in the source's skips.
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Read only the documents added or changed since the upstream version that this pipeline's latest
    /// version read, and append their rows to it (its shards are kept, less the rows of documents removed
    /// upstream since). The first run, and a run after the pipeline file changed, reads everything. Needs
    /// upstream versions with a document index (an `id` and a `content_hash` column); `content_hash` is
    /// then read too. The pipeline may have no other source and no dedup stage.
    #[serde(default)]
    pub incremental: bool,
    /// The compiled `where`.
    #[serde(skip)]
    #[schemars(skip)]
    predicate: Option<Arc<dyn RowPredicate>>,
    /// The `columns` fields, typed (from the manifest, when configured).
    #[serde(skip)]
    #[schemars(skip)]
    extra: Vec<FieldRef>,
    /// Where named datasets are stored (from the configure context, not an option).
    #[serde(skip)]
    #[schemars(skip)]
    pub datasets: Option<DatasetRoots>,
    /// Pinned versions opened so far (`name@V` -> store and manifest): every split of a
    /// version is opened against one read of its manifest, not one per shard.
    #[serde(skip)]
    #[schemars(skip)]
    opened: Memo<Earlier>,
    /// Deltas computed so far (`name@OLD..NEW` -> delta): one index diff per process.
    #[serde(skip)]
    #[schemars(skip)]
    deltas: Memo<Delta>,
}

/// Values computed once per process and shared by the clones of a stage's
/// configuration (opened versions, index deltas, weighted sizes), by key.
pub(crate) struct Memo<T>(Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<T>>>>);

impl<T> Memo<T> {
    /// The value under `key`, computed by `make` the first time.
    ///
    /// # Errors
    /// `make`'s error (nothing is kept then).
    pub(crate) fn get_or_try(&self, key: &str, make: impl FnOnce() -> Result<T>) -> Result<Arc<T>> {
        if let Some(v) = self.0.lock().unwrap_or_else(|p| p.into_inner()).get(key) {
            return Ok(v.clone());
        }
        let v = Arc::new(make()?);
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(key.to_string(), v.clone());
        Ok(v)
    }
}

impl<T> Clone for Memo<T> {
    fn clone(&self) -> Self {
        Memo(self.0.clone())
    }
}

impl<T> Default for Memo<T> {
    fn default() -> Self {
        Memo(Arc::default())
    }
}

impl<T> std::fmt::Debug for Memo<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Memo")
    }
}

/// Registry hook.
///
/// # Errors
/// Unknown options, a `from` that is not `name@version`, `name@tag` or `name`.
pub fn configure(options: serde_json::Value, ctx: &ConfigureContext) -> Result<StageConfig, OptionError> {
    let c: DatasetSourceConfig = parse_options(options)?;
    Ok(StageConfig::Source(Arc::new(c.configured(ctx, vec![PathSeg::Key("from".into())])?)))
}

impl DatasetSourceConfig {
    /// A source reading `from` (and `columns`), for stages built on it (`mix`).
    ///
    /// # Errors
    /// A `from` that is not `name@version`, `name@tag` or `name` (at `path`).
    pub(crate) fn reading(
        from: &str,
        columns: Vec<String>,
        ctx: &ConfigureContext,
        path: Vec<PathSeg>,
    ) -> Result<Self, OptionError> {
        let c = DatasetSourceConfig {
            from: from.to_string(),
            columns,
            filter: None,
            incremental: false,
            predicate: None,
            extra: Vec::new(),
            datasets: None,
            opened: Memo::default(),
            deltas: Memo::default(),
        };
        c.configured(ctx, path)
    }

    /// Checks `from`, applies a pinned upstream version and takes the dataset roots (and the `columns`' types).
    fn configured(mut self, ctx: &ConfigureContext, from_path: Vec<PathSeg>) -> Result<Self, OptionError> {
        let c = &mut self;
        c.from.parse::<VersionRef>().map_err(|e| OptionError {
            path: from_path,
            message: format!("{e}; write name@7, name@prod, name@latest or name"),
            at_key: false,
        })?;
        // A pinned upstream (`smelt run --upstream NAME@V`) replaces the version `from` selects.
        let name = c.from.rsplit_once('@').map_or(c.from.as_str(), |(n, _)| n).to_string();
        if let Some(v) = ctx.pins.get(&name) {
            c.from = format!("{name}@{v}");
        }
        c.datasets = Some(ctx.datasets.clone());
        // An incremental read tells documents apart by (id, content_hash): the rows keep both.
        if c.incremental && !c.columns.iter().any(|n| n == "content_hash") {
            c.columns.push("content_hash".into());
        }
        if !c.columns.is_empty() {
            c.extra = extra_fields(c, &ctx.datasets)?;
        }
        if let Some(sql) = c.filter.clone() {
            let at = |message: String| OptionError { path: vec![PathSeg::Key("where".into())], message, at_key: false };
            let compiler = ctx.predicates.as_ref().ok_or_else(|| at("`where` needs smelt's SQL engine".into()))?;
            let predicate = compiler.compile(&sql, &self.schema()).map_err(|(message, help)| {
                let hint = help.map_or(String::new(), |h| format!("; {h}"));
                at(format!("{message}{hint} (a column of the version not read here goes under `columns` first)"))
            })?;
            self.predicate = Some(predicate);
        }
        Ok(self)
    }
}

/// The fields of `columns` that are not document columns, typed as the
/// version `from` names now stores them.
fn extra_fields(c: &DatasetSourceConfig, datasets: &DatasetRoots) -> Result<Vec<FieldRef>, OptionError> {
    let at = |i: Option<usize>, message: String| OptionError {
        path: match i {
            Some(i) => vec![PathSeg::Key("columns".into()), PathSeg::Index(i)],
            None => vec![PathSeg::Key("columns".into())],
        },
        message,
        at_key: false,
    };
    // On a thread of its own: the I/O runtime's `block_on` must not run inside an async task.
    let up = std::thread::scope(|s| {
        s.spawn(|| block_on(smelt_engine::upstream::open_version(datasets, &c.from, "from")))
            .join()
            .map_err(|_| at(None, "reading the upstream version panicked".into()))
    })?
    .map_err(|e| at(None, format!("the columns' types come from `{}`: {e}", c.from)))?;
    let document = doc_schema(Body::Text);
    let mut out: Vec<FieldRef> = Vec::new();
    for (i, name) in c.columns.iter().enumerate() {
        if document.field_with_name(name).is_ok() || out.iter().any(|f| f.name() == name) {
            continue; // read anyway, or listed twice
        }
        let Some(f) = up.manifest.schema.iter().find(|f| &f.name == name) else {
            let names: Vec<&str> = up.manifest.schema.iter().map(|f| f.name.as_str()).collect();
            let hint = smelt_engine::diagnostic::closest(name, names.iter().copied())
                .map_or(String::new(), |c| format!("; did you mean `{c}`?"));
            return Err(at(
                Some(i),
                format!("{} has no column `{name}` (it has: {}){hint}", up.name, names.join(", ")),
            ));
        };
        let data_type: DataType = f.data_type.parse().map_err(|e| {
            at(Some(i), format!("{}: the type `{}` of `{name}` cannot be read back: {e}", up.name, f.data_type))
        })?;
        out.push(Arc::new(Field::new(name, data_type, f.nullable)));
    }
    Ok(out)
}

impl DatasetSourceConfig {
    fn roots(&self) -> Result<&DatasetRoots> {
        self.datasets.as_ref().ok_or_else(|| EngineError::Internal("dataset source without dataset roots".into()))
    }

    /// The pinned version `spec` (`name@V`), opened once per source.
    pub(crate) fn pinned(&self, spec: &str) -> Result<Arc<Earlier>> {
        self.opened.get_or_try(spec, || block_on(smelt_engine::upstream::open_version(self.roots()?, spec, "from")))
    }
}

/// An incremental read: the upstream version the base read, and the base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ReadSince {
    /// The upstream version whose documents the base holds.
    old: u64,
    /// The output dataset's version appended to.
    base: u64,
}

impl DatasetSourceConfig {
    /// Whether this run reads only what changed since the output's latest version's read, and from which version.
    /// `name` is the dataset as `from` gives it (a name or a storage root), `up` the version read now.
    fn read_since(&self, name: &str, up: &Earlier, committed: &Committed) -> Option<ReadSince> {
        if !self.incremental {
            return None;
        }
        let latest = committed.latest.as_ref()?;
        let read = &latest.upstream;
        let old = read.number()?;
        if read.dataset() != up.manifest.dataset {
            tracing::info!(
                "{}: the latest version read {}, not {}: reading everything",
                self.from,
                read.version,
                up.name
            );
            return None;
        }
        match self.pinned(&format!("{name}@{old}")) {
            Ok(o) if o.manifest.doc_index.is_some() => Some(ReadSince { old, base: latest.version }),
            _ => {
                let msg = format!(
                    "{name}@{old}, which the latest version read, is gone or has no document index: reading all of {}",
                    up.name
                );
                tracing::warn!("{msg}");
                eprintln!("warning: {msg}");
                None
            }
        }
    }

    /// The delta from `name@old` to `name@new`, computed once per process.
    fn delta(&self, name: &str, old: &str, new: &str) -> Result<Arc<Delta>> {
        self.deltas.get_or_try(&format!("{name}@{old}..{new}"), || {
            let (old, new) = (self.pinned(&format!("{name}@{old}"))?, self.pinned(&format!("{name}@{new}"))?);
            Ok(block_on(smelt_catalog::incremental::delta(&new.store, &old.manifest, &new.manifest))?)
        })
    }
}

/// The version of an incremental split, `name@OLD..NEW`, as (`name`, OLD, NEW); `None` for `name@V`.
fn parse_range(version: &str) -> Option<(&str, &str, &str)> {
    let (name, range) = version.rsplit_once('@')?;
    let (old, new) = range.split_once("..")?;
    Some((name, old, new))
}

/// `name@V#path` -> (`name@V`, `path`).
pub(crate) fn parse_split(id: &str) -> Result<(&str, &str)> {
    id.split_once('#').ok_or_else(|| EngineError::Internal(format!("dataset split `{id}` is not name@version#path")))
}

impl SourceConfig for DatasetSourceConfig {
    fn schema(&self) -> SchemaRef {
        let document = doc_schema(Body::Text);
        if self.extra.is_empty() {
            return document;
        }
        let fields: Vec<FieldRef> = document.fields().iter().cloned().chain(self.extra.iter().cloned()).collect();
        Arc::new(Schema::new(fields))
    }

    fn resolved(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn splits(&self) -> Result<Vec<SplitSpec>> {
        self.splits_since(&Committed::default())
    }

    fn splits_since(&self, committed: &Committed) -> Result<Vec<SplitSpec>> {
        let up = block_on(smelt_engine::upstream::open_version(self.roots()?, &self.from, "from"))?;
        if !up.manifest.schema.iter().any(|f| f.name == "text") {
            return Err(EngineError::User(format!(
                "from `{}`: {} has no `text` column (token shards?): read a version that keeps the text",
                self.from, up.name
            )));
        }
        // The root as the spec gave it (a path or URL) or the dataset's name: open() finds it again.
        let spec: VersionRef = self.from.parse()?;
        let v = up.manifest.version;
        let Some(since) = self.read_since(&spec.dataset, &up, committed) else {
            return Ok(up
                .manifest
                .shards
                .iter()
                .map(|s| SplitSpec { id: format!("{}@{v}#{}", spec.dataset, s.path), bytes: Some(s.bytes) })
                .collect());
        };
        // Only shards the old version does not share can hold new documents; open() keeps those rows.
        let old = self.pinned(&format!("{}@{}", spec.dataset, since.old))?;
        let shared: std::collections::HashSet<(&str, &str)> =
            old.manifest.shards.iter().map(|s| (s.path.as_str(), s.checksum.as_str())).collect();
        Ok(up
            .manifest
            .shards
            .iter()
            .filter(|s| !shared.contains(&(s.path.as_str(), s.checksum.as_str())))
            .map(|s| SplitSpec { id: format!("{}@{}..{v}#{}", spec.dataset, since.old, s.path), bytes: Some(s.bytes) })
            .collect())
    }

    fn upstream(&self, committed: &Committed) -> Result<Option<UpstreamRead>> {
        let up = block_on(smelt_engine::upstream::open_version(self.roots()?, &self.from, "from"))?;
        let spec: VersionRef = self.from.parse()?;
        let since = match self.read_since(&spec.dataset, &up, committed) {
            Some(s) => {
                let d = self.delta(&spec.dataset, &s.old.to_string(), &up.manifest.version.to_string())?;
                Some(Since {
                    upstream: s.old,
                    base: s.base,
                    added: d.added.len() as u64,
                    removed: d.removed.len() as u64,
                })
            }
            None => None,
        };
        Ok(Some(UpstreamRead {
            source: String::new(),
            version: up.name.clone(),
            root: up.store.url().to_string(),
            since,
        }))
    }

    fn appends(&self) -> bool {
        self.incremental
    }

    fn open(&self, split: &SplitSpec, options: &ReadOptions) -> Result<Box<dyn SplitReader>> {
        let (version, path) = parse_split(&split.id)?;
        // `name@OLD..NEW`: only the rows new since OLD.
        let (version, delta) = match parse_range(version) {
            Some((name, old, new)) => (format!("{name}@{new}"), Some(self.delta(name, old, new)?)),
            None => (version.to_string(), None),
        };
        let version = version.as_str();
        let up = self.pinned(version)?;
        let shard = up.manifest.shards.iter().find(|s| s.path == path).ok_or_else(|| {
            EngineError::User(format!("{version} has no shard {path} any more: its version was rewritten or expired"))
        })?;
        let bytes = block_on(fetch(&up.store, path))?;
        let sum = format!("xxh3-128:{:032x}", xxhash_rust::xxh3::xxh3_128(&bytes));
        if !shard.checksum.is_empty() && sum != shard.checksum {
            return Err(EngineError::External(format!(
                "{}/{path}: checksum {sum} differs from the manifest's {}: the shard was changed after {version} was committed",
                up.store.url(),
                shard.checksum
            )));
        }
        let mut builder = ParquetRecordBatchReaderBuilder::try_new(bytes.clone()).map_err(|e| {
            EngineError::External(format!("{}/{path} is not a readable Parquet file: {e}", up.store.url()))
        })?;
        // `where` pushed down: row groups whose statistics rule out every row are not decoded.
        let mut pruned_rows = 0;
        let groups = builder.metadata().num_row_groups();
        let mut keep: Vec<usize> = (0..groups).collect();
        if let Some(k) = self.predicate.as_ref().and_then(|p| p.row_groups(builder.metadata(), builder.schema())) {
            let groups = builder.metadata().row_groups();
            pruned_rows = (0..groups.len())
                .filter(|i| !k.contains(i))
                .map(|i| u64::try_from(groups[i].num_rows()).unwrap_or(0))
                .sum();
            keep = k;
        }
        // An incremental read decodes `id` and `content_hash` first, then only the rows that are new.
        let selection = match &delta {
            Some(d) => {
                let (k, selection) = new_rows(&bytes, &keep, d).map_err(|e| {
                    EngineError::External(format!(
                        "{}/{path}: cannot read its `id` and `content_hash`: {e}",
                        up.store.url()
                    ))
                })?;
                keep = k;
                Some(selection)
            }
            None => None,
        };
        if keep.len() < groups {
            builder = builder.with_row_groups(keep);
        }
        if let Some(s) = selection {
            builder = builder.with_row_selection(s);
        }
        let reader = document_reader(builder, &split.id, "dataset", shard.bytes, options, self.schema())?;
        Ok(match &self.predicate {
            Some(p) => Box::new(Filtered { inner: reader, predicate: p.clone(), pruned_rows }),
            None => reader,
        })
    }
}

/// A split's reader with the source's `where` applied.
struct Filtered {
    inner: Box<dyn SplitReader>,
    predicate: Arc<dyn RowPredicate>,
    /// Rows of the row groups pruned by statistics (counted under `where` once).
    pruned_rows: u64,
}

impl SplitReader for Filtered {
    fn next_batch(&mut self, skips: &mut smelt_engine::Skips) -> Result<Option<RecordBatch>> {
        skips.ignore_many("where", std::mem::take(&mut self.pruned_rows));
        while let Some(batch) = self.inner.next_batch(skips)? {
            let kept = self.predicate.filter(&batch)?;
            skips.ignore_many("where", (batch.num_rows() - kept.num_rows()) as u64);
            if kept.num_rows() > 0 {
                return Ok(Some(kept));
            }
        }
        Ok(None)
    }

    fn bytes_read(&self) -> u64 {
        self.inner.bytes_read()
    }
}

/// The row groups of `keep` holding a row whose `(id, content_hash)` is
/// among `delta`'s added ones, and those rows as a selection over them.
fn new_rows(
    bytes: &bytes::Bytes,
    keep: &[usize],
    delta: &Delta,
) -> std::result::Result<(Vec<usize>, RowSelection), parquet::errors::ParquetError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())?;
    let schema = builder.schema().clone();
    let column = |name: &str| {
        schema.index_of(name).map_err(|_| parquet::errors::ParquetError::General(format!("no `{name}` column")))
    };
    let mask = ProjectionMask::roots(builder.parquet_schema(), [column("id")?, column("content_hash")?]);
    let sizes: Vec<usize> =
        builder.metadata().row_groups().iter().map(|g| usize::try_from(g.num_rows()).unwrap_or(0)).collect();
    let reader = builder.with_projection(mask).with_row_groups(keep.to_vec()).with_batch_size(8192).build()?;
    let mut new = Vec::new();
    for batch in reader {
        let batch = batch?;
        let ids = arrow::compute::cast(batch.column(0), &DataType::LargeUtf8)?;
        let ids = ids.as_string::<i64>();
        let hashes = batch
            .column(1)
            .as_fixed_size_binary_opt()
            .ok_or_else(|| parquet::errors::ParquetError::General("`content_hash` is not 16-byte binary".into()))?;
        new.extend((0..batch.num_rows()).map(|i| {
            let hash: Option<&[u8; 16]> = hashes.is_valid(i).then(|| hashes.value(i).try_into().ok()).flatten();
            matches!((ids.is_valid(i), hash), (true, Some(h)) if delta.added.contains(&row_key(ids.value(i).as_bytes(), h)))
        }));
    }
    // Row groups without a new row are not read at all.
    let (mut groups, mut selected) = (Vec::new(), Vec::new());
    let mut at = 0;
    for &g in keep {
        let rows = &new[at.min(new.len())..(at + sizes[g]).min(new.len())];
        at += sizes[g];
        if rows.iter().any(|&b| b) {
            groups.push(g);
            selected.extend_from_slice(rows);
        }
    }
    let filters = [BooleanArray::from(selected)];
    Ok((groups, RowSelection::from_filters(&filters)))
}

async fn fetch(store: &DatasetStore, path: &str) -> Result<bytes::Bytes> {
    store.get(path).await?.ok_or_else(|| {
        EngineError::External(format!("{}/{path} is missing: the version's shard was removed", store.url()))
    })
}
