//! `smelt sql`: one SQL statement over dataset versions and the catalog, run by DataFusion.
//!
//! ```text
//! SQL ──parse──► statement ──table names──► "cc-news@4"  ──► VersionTable (exactly the manifest's shards)
//!                                           versions, ... ──► catalog table (built from the index)
//!        ──plan (read-only)──► DataFusion ──► Vec<RecordBatch> ──write_results──► table | CSV | JSON | Parquet
//! ```
//! A dataset table never lists storage: it reads the Parquet shards that the
//! version's manifest names, so a query sees exactly one immutable version.
//! Only the tables a query names are resolved, so a query over one version
//! does not read every manifest in the catalog.

mod output;
mod tables;
mod version_table;

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use datafusion::common::TableReference;
use datafusion::error::DataFusionError;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement as SQLStatement;
use object_store::ObjectStore;

use smelt_catalog::index::{Catalog, VersionRef};
use smelt_catalog::model::VersionManifest;
use smelt_catalog::{CatalogError, Result};

pub use output::write_results;
pub use tables::CATALOG_TABLES;

/// Output formats of [`write_results`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlFormat {
    /// A human-readable table (Arrow's pretty printer).
    Table,
    /// CSV with a header line; nested values are written as text.
    Csv,
    /// One JSON array of objects, one object per row, nulls written explicitly.
    Json,
    /// One Parquet file (zstd).
    Parquet,
}

/// Runs one SQL statement and returns its result. The result always holds at
/// least one batch (an empty one when no row matched), so its schema is known.
///
/// Tables:
///  - every `dataset@version`, `dataset@tag`, `dataset@latest` and bare
///    `dataset` (its latest version) named in the query, as a quoted
///    identifier where it is not a plain name (`FROM "cc-news@4"`): exactly
///    the Parquet shards of that version's manifest, with projection and
///    predicate pushdown;
///  - the catalog tables [`CATALOG_TABLES`] (`datasets`, `versions`,
///    `shards`, `runs`, `tags`, `stats`, `funnel`, `drops`); a dataset whose name is
///    one of these is reached as `"name@latest"`.
///
/// Only reading statements run: DDL, DML (`COPY`, `INSERT`) and `SET` are refused.
///
/// # Errors
/// `User` for an unknown dataset or version (with the closest names) and for
/// SQL that does not parse or plan (DataFusion's message, with the line and
/// column where it gives one); `Storage` when a shard cannot be read;
/// `Internal` for bugs.
pub async fn query(catalog: &Catalog, sql: &str) -> Result<Vec<RecordBatch>> {
    let df = prepare(catalog, sql, session()).await?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let mut batches = df.collect().await.map_err(run_error)?;
    batches.retain(|b| b.num_rows() > 0);
    if batches.is_empty() {
        batches.push(RecordBatch::new_empty(schema));
    }
    Ok(batches)
}

/// One page of a query's result, for `smelt ui`: rows `offset..offset + rows`,
/// read as a stream that stops once the page is full, in a session whose
/// operators may hold at most `memory` bytes and may not spill to disk (a
/// sort or join over more fails with DataFusion's resources error instead of
/// growing the process or filling a disk).
#[derive(Debug, Clone)]
pub struct Page {
    /// The result's columns.
    pub schema: arrow::datatypes::SchemaRef,
    /// The page's rows.
    pub batches: Vec<RecordBatch>,
    /// Whether rows follow the page.
    pub more: bool,
}

/// Runs one reading statement and returns one page of its rows (see [`Page`]).
/// The catalog is closed (this handle dropped) once the statement is planned,
/// so a commit does not wait for the rows to be read.
///
/// # Errors
/// As [`query`]; `User` when the query needs more than `memory` bytes.
pub async fn query_page(catalog: Catalog, sql: &str, offset: usize, rows: usize, memory: usize) -> Result<Page> {
    use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
    use futures::StreamExt;
    // No spilling: a query past its memory fails instead of writing temporary files.
    let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
        .with_memory_limit(memory, 1.0)
        .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled))
        .build_arc()
        .map_err(|e| CatalogError::Internal(format!("query runtime: {e}")))?;
    let ctx = SessionContext::new_with_config_rt(session().copied_config(), runtime);
    let df = prepare(&catalog, sql, ctx).await?;
    drop(catalog);
    let schema = Arc::new(df.schema().as_arrow().clone());
    let mut stream = df.execute_stream().await.map_err(run_error)?;
    let (mut seen, mut batches, mut more) = (0usize, Vec::new(), false);
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(run_error)?;
        let (start, end) = (seen, seen + batch.num_rows());
        seen = end;
        if end > offset && start < offset + rows {
            let from = offset.saturating_sub(start);
            let to = (offset + rows).min(end) - start;
            batches.push(batch.slice(from, to - from));
        }
        if seen > offset + rows {
            more = true;
            break;
        }
    }
    Ok(Page { schema, batches, more })
}

/// Parses, checks (reading only), resolves the tables and plans one statement in `ctx`.
async fn prepare(catalog: &Catalog, sql: &str, ctx: SessionContext) -> Result<datafusion::dataframe::DataFrame> {
    let state = ctx.state();
    let dialect = state.config().options().sql_parser.dialect;
    let statement = state.sql_to_statement(sql, &dialect).map_err(|e| sql_error(sql, &e))?;
    if !reads_only(&statement) {
        return Err(CatalogError::User(format!(
            "`smelt sql` only reads (SELECT, EXPLAIN, DESCRIBE); not: {}",
            one_line(&statement.to_string(), 60)
        )));
    }
    let references = state.resolve_table_references(&statement).map_err(|e| sql_error(sql, &e))?;

    // Bare names only: `public.x` and `information_schema.x` are DataFusion's.
    let mut names: Vec<String> = Vec::new();
    for r in references {
        if let TableReference::Bare { table } = r {
            if !names.iter().any(|n| n.as_str() == table.as_ref()) {
                names.push(table.to_string());
            }
        }
    }
    let c = catalog.clone();
    let resolved = tokio::task::spawn_blocking(move || resolve_names(&c, &names))
        .await
        .map_err(|e| CatalogError::Internal(format!("catalog reader panicked: {e}")))??;

    let mut stores = Stores::default();
    for (name, table) in resolved {
        let provider: Arc<dyn datafusion::catalog::TableProvider> = match table {
            Resolved::Catalog(batch) => Arc::new(
                datafusion::datasource::MemTable::try_new(batch.schema(), vec![vec![batch]])
                    .map_err(|e| CatalogError::Internal(format!("catalog table {name}: {e}")))?,
            ),
            Resolved::Version { root_url, manifest } => {
                let (store_url, store, prefix) = stores.get(&ctx, &root_url)?;
                Arc::new(version_table::VersionTable::open(&ctx.state(), store_url, store, &prefix, &manifest).await?)
            }
        };
        ctx.register_table(TableReference::bare(name.clone()), provider)
            .map_err(|e| CatalogError::Internal(format!("registering table {name}: {e}")))?;
    }

    let plan = ctx.state().statement_to_plan(statement).await.map_err(|e| sql_error(sql, &e))?;
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(|e| {
            CatalogError::User(format!("{}; `smelt sql` only reads (SELECT, EXPLAIN, DESCRIBE)", e.strip_backtrace()))
        })?;
    ctx.execute_logical_plan(plan).await.map_err(|e| sql_error(sql, &e))
}

/// Whether a statement only reads: a query, `EXPLAIN` of one, or `DESCRIBE`.
/// (`verify_plan` checks the plan again; this check comes before table names
/// are resolved, so that `CREATE TABLE t` is refused as such.)
fn reads_only(statement: &DFStatement) -> bool {
    match statement {
        DFStatement::Statement(s) => match s.as_ref() {
            SQLStatement::Query(_) | SQLStatement::ExplainTable { .. } => true,
            SQLStatement::Explain { statement, .. } => reads_only(&DFStatement::Statement(statement.clone())),
            _ => false,
        },
        DFStatement::Explain(e) => reads_only(&e.statement),
        DFStatement::CreateExternalTable(_) | DFStatement::CopyTo(_) | DFStatement::Reset(_) => false,
    }
}

/// The first `max` characters of `s` on one line.
fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        format!("{}...", flat.chars().take(max).collect::<String>())
    } else {
        flat
    }
}

/// The DataFusion session of one query.
fn session() -> SessionContext {
    let mut config = SessionConfig::new();
    let options = config.options_mut();
    // Spans let DataFusion point at the offending part of the query.
    options.sql_parser.collect_spans = true;
    // Results keep the dataset's own types (Utf8, LargeUtf8), which every reader of
    // `--format parquet` output understands, rather than DataFusion's view types.
    options.execution.parquet.schema_force_view_types = false;
    // Filters are evaluated while decoding, so `WHERE source = ...` decodes `text` only for matching rows.
    options.execution.parquet.pushdown_filters = true;
    options.execution.parquet.reorder_filters = true;
    SessionContext::new_with_config(config)
}

/// What a table name of a query stands for.
enum Resolved {
    /// A catalog table, built from the index.
    Catalog(RecordBatch),
    /// One version of a dataset.
    Version { root_url: String, manifest: Box<VersionManifest> },
}

/// Looks up every table name in the index (blocking: sled).
fn resolve_names(catalog: &Catalog, names: &[String]) -> Result<Vec<(String, Resolved)>> {
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        if let Some(batch) = tables::build(catalog, name)? {
            out.push((name.clone(), Resolved::Catalog(batch)));
            continue;
        }
        let (dataset, _) = name.split_once('@').unwrap_or((name.as_str(), ""));
        let Some(record) = catalog.dataset(dataset)? else {
            return Err(unknown_table(catalog, name, dataset)?);
        };
        let vref: VersionRef = name.parse().map_err(|e: CatalogError| {
            CatalogError::User(format!("table \"{name}\": {e}; {}", known_versions(catalog, dataset)))
        })?;
        let manifest = match catalog.resolve(&vref) {
            Ok(m) => m,
            Err(CatalogError::User(message)) => {
                let numbered = name.split_once('@').is_some_and(|(_, v)| v.parse::<u64>().is_ok());
                let message = if numbered { format!("{name} does not exist") } else { message };
                return Err(CatalogError::User(format!(
                    "table \"{name}\": {message}\n  {}",
                    known_versions(catalog, dataset)
                )));
            }
            Err(e) => return Err(e),
        };
        out.push((name.clone(), Resolved::Version { root_url: record.root_url, manifest: Box::new(manifest) }));
    }
    Ok(out)
}

/// The error for a name that is neither a catalog table nor a dataset, with the closest names.
fn unknown_table(catalog: &Catalog, name: &str, dataset: &str) -> Result<CatalogError> {
    let datasets: Vec<String> = catalog.datasets()?.into_iter().map(|d| d.name).collect();
    let mut candidates: Vec<(f64, String)> = datasets
        .iter()
        .map(|d| (strsim::normalized_damerau_levenshtein(dataset, d), d.clone()))
        .chain(CATALOG_TABLES.iter().map(|t| (strsim::normalized_damerau_levenshtein(name, t), (*t).to_string())))
        .filter(|(score, _)| *score >= 0.5)
        .collect();
    candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let mut msg = format!("table \"{name}\" is neither a dataset in the catalog nor a catalog table");
    if !candidates.is_empty() {
        let close: Vec<String> = candidates.iter().take(5).map(|(_, n)| format!("\"{n}\"")).collect();
        msg.push_str(&format!("; did you mean {}?", close.join(", ")));
    }
    msg.push_str(&format!(
        "\n  datasets: {}\n  catalog tables: {}\n  a version is named like \"{}@3\", \"{}@latest\" (double quotes included)",
        if datasets.is_empty() { "none yet".to_string() } else { datasets.join(", ") },
        CATALOG_TABLES.join(", "),
        datasets.first().map_or("dataset", |d| d.as_str()),
        datasets.first().map_or("dataset", |d| d.as_str()),
    ));
    Ok(CatalogError::User(msg))
}

/// "quickstart has versions 1-3 (latest 3); tags: prod=2", for error messages.
fn known_versions(catalog: &Catalog, dataset: &str) -> String {
    let versions: Vec<u64> = catalog.versions(dataset).unwrap_or_default().iter().map(|v| v.version).collect();
    let tags = catalog.tags(dataset).unwrap_or_default();
    let tags = if tags.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = tags.iter().map(|(t, v)| format!("{t}={v}")).collect();
        format!("; tags: {}", list.join(", "))
    };
    match (versions.first(), versions.last()) {
        (Some(first), Some(last)) => {
            let contiguous = (last - first + 1) as usize == versions.len();
            let list = if contiguous && versions.len() > 2 {
                format!("{first}-{last}")
            } else if versions.len() <= 12 {
                versions.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
            } else {
                format!("{} versions from {first} to {last}", versions.len())
            };
            format!(
                "{dataset} has versions {list} (latest {last}){tags}; name one as \"{dataset}@{last}\" or \"{dataset}@latest\""
            )
        }
        _ => format!("{dataset} has no committed version"),
    }
}

/// The object stores a query reads, one per scheme and host.
#[derive(Default)]
struct Stores {
    registered: Vec<(String, Arc<dyn ObjectStore>)>,
}

impl Stores {
    /// The store holding a dataset root, registered with the session, and the root's path in it.
    fn get(
        &mut self,
        ctx: &SessionContext,
        root_url: &str,
    ) -> Result<(ObjectStoreUrl, Arc<dyn ObjectStore>, object_store::path::Path)> {
        if !root_url.contains("://") {
            // A local dataset root: an absolute path (the commit canonicalises it).
            let prefix = object_store::path::Path::from_absolute_path(root_url)
                .map_err(|source| CatalogError::Storage { location: root_url.to_string(), source: source.into() })?;
            let store_url = ObjectStoreUrl::local_filesystem();
            let store = ctx
                .runtime_env()
                .object_store(&store_url)
                .map_err(|e| CatalogError::Internal(format!("no local file system store: {e}")))?;
            return Ok((store_url, store, prefix));
        }
        let url = url::Url::parse(root_url).map_err(|e| CatalogError::Corrupt {
            location: root_url.to_string(),
            message: format!("dataset root: {e}"),
        })?;
        let base = format!("{}://{}", url.scheme(), url.authority());
        // Same construction as `DatasetStore::open` (credentials and endpoint from AWS_*).
        let (store, prefix) = smelt_catalog::store::object_store_at(&url)
            .map_err(|source| CatalogError::Storage { location: root_url.to_string(), source })?;
        let store_url = ObjectStoreUrl::parse(&base)
            .map_err(|e| CatalogError::Internal(format!("object store URL {base}: {e}")))?;
        let base_url =
            url::Url::parse(&base).map_err(|e| CatalogError::Internal(format!("object store URL {base}: {e}")))?;
        let store = match self.registered.iter().find(|(b, _)| *b == base) {
            Some((_, s)) => Arc::clone(s),
            None => {
                let store: Arc<dyn ObjectStore> = Arc::from(store);
                ctx.register_object_store(&base_url, Arc::clone(&store));
                self.registered.push((base, Arc::clone(&store)));
                store
            }
        };
        Ok((store_url, store, prefix))
    }
}

/// A planning error: DataFusion's message, and where in the query it points.
fn sql_error(sql: &str, e: &DataFusionError) -> CatalogError {
    let root = e.find_root();
    if matches!(root, DataFusionError::Internal(_)) {
        return CatalogError::Internal(root.strip_backtrace());
    }
    let message = match root {
        DataFusionError::SQL(parser, _) => parser.to_string(),
        _ => e.strip_backtrace(),
    };
    let position = e
        .diagnostic()
        .and_then(|d| d.span.as_ref().map(|s| (s.start.line, s.start.column)))
        .or_else(|| position_in_message(&message))
        .or_else(|| message.ends_with("found: EOF").then(|| end_of(sql)));
    let mut out = format!("SQL error: {message}");
    if let Some((line, column)) = position {
        out.push_str(&pointer(sql, line, column));
    }
    if let Some(d) = e.diagnostic() {
        for help in &d.helps {
            out.push_str(&format!("\n  help: {}", help.message));
        }
    }
    CatalogError::User(out)
}

/// An error while running a planned query.
fn run_error(e: DataFusionError) -> CatalogError {
    // Cast errors quote the value, which may be a whole document.
    let message = shorten(&e.strip_backtrace(), 1000);
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = source {
        if let Some(os) = s.downcast_ref::<object_store::Error>() {
            let location = match os {
                object_store::Error::NotFound { path, .. } => path.clone(),
                _ => "dataset storage".to_string(),
            };
            return CatalogError::Storage {
                location,
                source: object_store::Error::Generic { store: "smelt sql", source: message.into() },
            };
        }
        source = s.source();
    }
    match e.find_root() {
        DataFusionError::Internal(_) => CatalogError::Internal(message),
        // Reading a shard failed: missing, unreadable or not Parquet.
        DataFusionError::IoError(_) | DataFusionError::ParquetError(_) | DataFusionError::ObjectStore(_) => {
            CatalogError::Storage {
                location: "dataset storage".to_string(),
                source: object_store::Error::Generic { store: "smelt sql", source: message.into() },
            }
        }
        _ => CatalogError::User(format!("query failed: {message}")),
    }
}

/// `s` cut to `max` characters, saying how much was left out.
fn shorten(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_string();
    }
    format!("{} ... ({} more characters)", s.chars().take(max).collect::<String>(), n - max)
}

/// `(line, column)` from sqlparser's "... at Line: 1, Column: 8".
fn position_in_message(message: &str) -> Option<(u64, u64)> {
    let at = message.rfind("Line: ")?;
    let rest = &message[at + "Line: ".len()..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((line.trim().parse().ok()?, column.parse().ok()?))
}

/// `(line, column)` just past the end of `sql`, where "found: EOF" points.
fn end_of(sql: &str) -> (u64, u64) {
    let trimmed = sql.trim_end();
    let line = trimmed.lines().count().max(1) as u64;
    let column = trimmed.lines().last().map_or(0, |l| l.chars().count()) as u64 + 1;
    (line, column)
}

/// "\n  at line 1, column 8:\n  SELECT * FORM x\n         ^".
fn pointer(sql: &str, line: u64, column: u64) -> String {
    let mut out = format!("\n  at line {line}, column {column}");
    if let Some(text) = sql.lines().nth(line.saturating_sub(1) as usize) {
        let caret = " ".repeat(text.chars().take(column.saturating_sub(1) as usize).count());
        out.push_str(&format!(":\n  {text}\n  {caret}^"));
    }
    out
}

#[cfg(test)]
mod tests;
