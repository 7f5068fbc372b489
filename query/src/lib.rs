//! smelt's queries over the catalog: what `smelt sql`, `smelt catalog diff`,
//! `smelt docs` and `smelt audit` read, built on the table format of
//! `smelt-catalog` (manifests, document indexes, the sled index).
//!
//! ```text
//!                       catalog.sled ──► datasets, versions, tags, ... ─┐
//! SQL ──► sql::query ──► DataFusion                                     ├─► Vec<RecordBatch> ──► table | CSV | JSON | Parquet
//!                       manifest ──► its Parquet shards (exactly these) ─┘
//!
//! manifest A, manifest B ──► diff::diff_versions ──► VersionDiff (lineage, schema, mixture, funnel, audit)
//! _versions/A.idx, B.idx ──► docdiff::diff_version_documents ──► DocDiff (added, removed, changed)
//!
//! commit_run ──manifest──► audit::AuditGates (a CommitHook) ──► manifest.audit, or no version
//!
//! batches of a pipeline ──► stage (the `sql` transform: DataFusion physical expressions) ──► filtered, derived rows
//! ```
//! Only `sql` links DataFusion. Errors are the catalog's [`CatalogError`]:
//! every failure here is one of its kinds (a version the user named that does
//! not exist, storage, a corrupt file, a bug), and the binary maps them to
//! exit codes in one place.
//!
//! [`CatalogError`]: smelt_catalog::CatalogError

pub mod audit;
pub mod diff;
pub mod docdiff;
pub mod sql;
pub mod stage;
