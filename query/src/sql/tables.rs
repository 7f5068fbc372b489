//! The catalog tables of `smelt sql`, built from the index when a query names them.
//!
//! | table | one row per | columns |
//! |---|---|---|
//! | `datasets` | dataset | dataset, root_url, latest, versions, committed_at, rows, shards, bytes, tokens, text_bytes (of the latest version) |
//! | `versions` | version | dataset, version, run_id, committed_at, rows, shards, bytes, tokens, text_bytes, pipeline_hash, digest, manifest_path |
//! | `shards` | shard of a version | dataset, version, shard, path, url, split, rows, bytes, checksum |
//! | `runs` | committed run | run_id, dataset, version, committed_at, pipeline_path, pipeline_hash, smelt_version, input_splits, input_bytes, interval_start, interval_end (of a scheduled run; empty otherwise) |
//! | `tags` | tag | dataset, tag, version |
//! | `stats` | group (lang x source x domain) of a version | dataset, version, lang, source, domain, docs, tokens, text_bytes |
//! | `funnel` | stage of a version's pipeline | dataset, version, position, stage, rows_in, rows_out, dropped, skipped, busy_ms |
//! | `drops` | (stage, reason) of a version | dataset, version, stage, kind (`drop` or `skip`), reason, rows |
//!
//! Counts are UInt64, positions UInt32, `committed_at` Timestamp(µs, UTC)
//! (null if a manifest's time does not parse), everything else Utf8.

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray, TimestampMicrosecondArray, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;

use smelt_catalog::index::Catalog;
use smelt_catalog::model::VersionManifest;
use smelt_catalog::{CatalogError, Result};

/// Names of the catalog tables, as a query writes them.
pub const CATALOG_TABLES: &[&str] = &["datasets", "versions", "shards", "runs", "tags", "stats", "funnel", "drops"];

/// Builds catalog table `name`, `None` when `name` is not one.
///
/// # Errors
/// Index failures.
pub(super) fn build(catalog: &Catalog, name: &str) -> Result<Option<RecordBatch>> {
    let batch = match name {
        "datasets" => datasets(catalog)?,
        "versions" => versions(catalog)?,
        "tags" => tags(catalog)?,
        "shards" => per_manifest(catalog, SHARDS, shards_of)?,
        "runs" => per_manifest(catalog, RUNS, runs_of)?,
        "stats" => per_manifest(catalog, STATS, stats_of)?,
        "funnel" => per_manifest(catalog, FUNNEL, funnel_of)?,
        "drops" => per_manifest(catalog, DROPS, drops_of)?,
        _ => return Ok(None),
    };
    Ok(Some(batch))
}

/// Column values of a table under construction.
enum Col {
    Str(Vec<String>),
    U64(Vec<u64>),
    U32(Vec<u32>),
    Time(Vec<Option<i64>>),
}

/// A table under construction: named, typed columns filled row by row.
struct Table {
    names: Vec<&'static str>,
    cols: Vec<Col>,
}

impl Table {
    fn new(columns: &[(&'static str, fn() -> Col)]) -> Self {
        Table { names: columns.iter().map(|c| c.0).collect(), cols: columns.iter().map(|c| (c.1)()).collect() }
    }

    fn str(&mut self, i: usize, v: impl Into<String>) {
        if let Col::Str(c) = &mut self.cols[i] {
            c.push(v.into());
        }
    }

    fn u64(&mut self, i: usize, v: u64) {
        if let Col::U64(c) = &mut self.cols[i] {
            c.push(v);
        }
    }

    fn u32(&mut self, i: usize, v: u32) {
        if let Col::U32(c) = &mut self.cols[i] {
            c.push(v);
        }
    }

    fn time(&mut self, i: usize, rfc3339: &str) {
        if let Col::Time(c) = &mut self.cols[i] {
            c.push(chrono::DateTime::parse_from_rfc3339(rfc3339).ok().map(|t| t.timestamp_micros()));
        }
    }

    fn finish(self) -> Result<RecordBatch> {
        let mut fields = Vec::with_capacity(self.cols.len());
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.cols.len());
        for (name, col) in self.names.into_iter().zip(self.cols) {
            let (field, array): (Field, ArrayRef) = match col {
                Col::Str(v) => (Field::new(name, DataType::Utf8, false), Arc::new(StringArray::from(v))),
                Col::U64(v) => (Field::new(name, DataType::UInt64, false), Arc::new(UInt64Array::from(v))),
                Col::U32(v) => (Field::new(name, DataType::UInt32, false), Arc::new(UInt32Array::from(v))),
                Col::Time(v) => (
                    Field::new(name, DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
                    Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC")),
                ),
            };
            fields.push(field);
            arrays.push(array);
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
            .map_err(|e| CatalogError::Internal(format!("catalog table: {e}")))
    }
}

fn s() -> Col {
    Col::Str(Vec::new())
}
fn u() -> Col {
    Col::U64(Vec::new())
}
fn u32c() -> Col {
    Col::U32(Vec::new())
}
fn t() -> Col {
    Col::Time(Vec::new())
}

fn datasets(catalog: &Catalog) -> Result<RecordBatch> {
    let mut tb = Table::new(&[
        ("dataset", s),
        ("root_url", s),
        ("latest", u),
        ("versions", u),
        ("committed_at", t),
        ("rows", u),
        ("shards", u),
        ("bytes", u),
        ("tokens", u),
        ("text_bytes", u),
    ]);
    for d in catalog.datasets()? {
        let versions = catalog.versions(&d.name)?;
        let latest = versions.iter().find(|v| v.version == d.latest);
        tb.str(0, d.name.clone());
        tb.str(1, d.root_url.clone());
        tb.u64(2, d.latest);
        tb.u64(3, versions.len() as u64);
        tb.time(4, latest.map_or("", |v| v.committed_at.as_str()));
        let totals = latest.map(|v| v.totals.clone()).unwrap_or_default();
        tb.u64(5, totals.rows);
        tb.u64(6, totals.shards);
        tb.u64(7, totals.bytes);
        tb.u64(8, totals.tokens);
        tb.u64(9, totals.text_bytes);
    }
    tb.finish()
}

fn versions(catalog: &Catalog) -> Result<RecordBatch> {
    let mut tb = Table::new(&[
        ("dataset", s),
        ("version", u),
        ("run_id", s),
        ("committed_at", t),
        ("rows", u),
        ("shards", u),
        ("bytes", u),
        ("tokens", u),
        ("text_bytes", u),
        ("pipeline_hash", s),
        ("digest", s),
        ("manifest_path", s),
    ]);
    for d in catalog.datasets()? {
        for v in catalog.versions(&d.name)? {
            tb.str(0, v.dataset);
            tb.u64(1, v.version);
            tb.str(2, v.run_id);
            tb.time(3, &v.committed_at);
            tb.u64(4, v.totals.rows);
            tb.u64(5, v.totals.shards);
            tb.u64(6, v.totals.bytes);
            tb.u64(7, v.totals.tokens);
            tb.u64(8, v.totals.text_bytes);
            tb.str(9, v.pipeline_hash);
            tb.str(10, v.digest);
            tb.str(11, v.manifest_path);
        }
    }
    tb.finish()
}

fn tags(catalog: &Catalog) -> Result<RecordBatch> {
    let mut tb = Table::new(&[("dataset", s), ("tag", s), ("version", u)]);
    for d in catalog.datasets()? {
        for (tag, version) in catalog.tags(&d.name)? {
            tb.str(0, d.name.clone());
            tb.str(1, tag);
            tb.u64(2, version);
        }
    }
    tb.finish()
}

/// Columns of a table: name and an empty column of its type.
type Columns = &'static [(&'static str, fn() -> Col)];

/// A table with rows from every manifest in the catalog.
fn per_manifest(
    catalog: &Catalog,
    columns: Columns,
    rows_of: fn(&mut Table, &str, &VersionManifest),
) -> Result<RecordBatch> {
    let mut tb = Table::new(columns);
    for d in catalog.datasets()? {
        for v in catalog.versions(&d.name)? {
            let m = catalog.manifest(&d.name, v.version)?.ok_or_else(|| CatalogError::Corrupt {
                location: format!("catalog index (manifest of {}@{})", d.name, v.version),
                message: "the version is listed but its manifest is missing; run `smelt catalog rebuild`".into(),
            })?;
            rows_of(&mut tb, &d.root_url, &m);
        }
    }
    tb.finish()
}

const SHARDS: Columns = &[
    ("dataset", s),
    ("version", u),
    ("shard", u32c),
    ("path", s),
    ("url", s),
    ("split", u32c),
    ("rows", u),
    ("bytes", u),
    ("checksum", s),
];
const RUNS: Columns = &[
    ("run_id", s),
    ("dataset", s),
    ("version", u),
    ("committed_at", t),
    ("pipeline_path", s),
    ("pipeline_hash", s),
    ("smelt_version", s),
    ("input_splits", u),
    ("input_bytes", u),
    ("interval_start", s),
    ("interval_end", s),
];
const STATS: Columns = &[
    ("dataset", s),
    ("version", u),
    ("lang", s),
    ("source", s),
    ("domain", s),
    ("docs", u),
    ("tokens", u),
    ("text_bytes", u),
];
const FUNNEL: Columns = &[
    ("dataset", s),
    ("version", u),
    ("position", u32c),
    ("stage", s),
    ("rows_in", u),
    ("rows_out", u),
    ("dropped", u),
    ("skipped", u),
    ("busy_ms", u),
];
const DROPS: Columns = &[("dataset", s), ("version", u), ("stage", s), ("kind", s), ("reason", s), ("rows", u)];

fn shards_of(tb: &mut Table, root_url: &str, m: &VersionManifest) {
    for (i, sh) in m.shards.iter().enumerate() {
        tb.str(0, m.dataset.clone());
        tb.u64(1, m.version);
        tb.u32(2, i as u32);
        tb.str(3, sh.path.clone());
        tb.str(4, format!("{}/{}", root_url.trim_end_matches('/'), sh.path));
        tb.u32(5, sh.split);
        tb.u64(6, sh.rows);
        tb.u64(7, sh.bytes);
        tb.str(8, sh.checksum.clone());
    }
}

fn runs_of(tb: &mut Table, _root_url: &str, m: &VersionManifest) {
    let l = &m.lineage;
    tb.str(0, l.run_id.clone());
    tb.str(1, m.dataset.clone());
    tb.u64(2, m.version);
    tb.time(3, &m.committed_at);
    tb.str(4, l.pipeline_path.clone());
    tb.str(5, l.pipeline_hash.clone());
    tb.str(6, l.smelt_version.clone());
    tb.u64(7, l.inputs.len() as u64);
    tb.u64(8, l.inputs.iter().filter_map(|i| i.bytes).sum());
    tb.str(9, l.interval.as_ref().map(|i| i.start.clone()).unwrap_or_default());
    tb.str(10, l.interval.as_ref().map(|i| i.end.clone()).unwrap_or_default());
}

fn stats_of(tb: &mut Table, _root_url: &str, m: &VersionManifest) {
    for g in &m.stats {
        tb.str(0, m.dataset.clone());
        tb.u64(1, m.version);
        tb.str(2, g.lang.clone());
        tb.str(3, g.source.clone());
        tb.str(4, g.domain.clone());
        tb.u64(5, g.docs);
        tb.u64(6, g.tokens);
        tb.u64(7, g.text_bytes);
    }
}

fn funnel_of(tb: &mut Table, _root_url: &str, m: &VersionManifest) {
    for (i, st) in m.funnel.iter().enumerate() {
        tb.str(0, m.dataset.clone());
        tb.u64(1, m.version);
        tb.u32(2, i as u32);
        tb.str(3, st.stage.clone());
        tb.u64(4, st.rows_in);
        tb.u64(5, st.rows_out);
        tb.u64(6, st.drops.values().sum());
        tb.u64(7, st.skips.values().sum());
        tb.u64(8, st.busy_ms);
    }
}

fn drops_of(tb: &mut Table, _root_url: &str, m: &VersionManifest) {
    for st in &m.funnel {
        for (kind, reasons) in [("drop", &st.drops), ("skip", &st.skips), ("count", &st.counters)] {
            for (reason, n) in reasons {
                tb.str(0, m.dataset.clone());
                tb.u64(1, m.version);
                tb.str(2, st.stage.clone());
                tb.str(3, kind);
                tb.str(4, reason.clone());
                tb.u64(5, *n);
            }
        }
    }
}
