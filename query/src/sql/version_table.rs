//! One dataset version as a DataFusion table: exactly the Parquet shards its
//! manifest names, read through object_store.
//!
//! Nothing is listed: the files, their sizes and row counts come from the
//! manifest, and the schema from the first shard's footer. DataFusion pushes
//! the projection into the Parquet reader (only the selected columns are
//! read) and filters into it (row groups pruned by statistics, rows filtered
//! while decoding).

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::stats::Precision;
use datafusion::common::{project_schema, Statistics};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::ExecutionPlan;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};

use smelt_catalog::model::VersionManifest;
use smelt_catalog::{CatalogError, Result};

/// A version's shards as a table.
#[derive(Debug)]
pub(super) struct VersionTable {
    schema: SchemaRef,
    store_url: ObjectStoreUrl,
    /// The shards, in manifest order.
    files: Vec<PartitionedFile>,
    rows: u64,
    bytes: u64,
}

impl VersionTable {
    /// The table of `manifest`, whose shard paths are relative to `root` in `store`.
    ///
    /// # Errors
    /// `Storage` when the first shard's footer cannot be read; `Corrupt` when it is not Parquet.
    pub(super) async fn open(
        state: &dyn Session,
        store_url: ObjectStoreUrl,
        store: Arc<dyn ObjectStore>,
        root: &Path,
        manifest: &VersionManifest,
    ) -> Result<Self> {
        let last_modified = chrono::DateTime::parse_from_rfc3339(&manifest.committed_at)
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_default();
        let metas: Vec<ObjectMeta> = manifest
            .shards
            .iter()
            .map(|s| ObjectMeta {
                location: join(root, &s.path),
                last_modified,
                size: s.bytes,
                e_tag: None,
                version: None,
            })
            .collect();
        let schema = match metas.first() {
            Some(first) => {
                let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
                format.infer_schema(state, &store, std::slice::from_ref(first)).await.map_err(|e| {
                    let message = e.strip_backtrace();
                    match e.find_root() {
                        DataFusionError::ObjectStore(_) | DataFusionError::IoError(_) => CatalogError::Storage {
                            location: format!("{}/{}", store_url.as_str().trim_end_matches('/'), first.location),
                            source: object_store::Error::Generic { store: "smelt sql", source: message.into() },
                        },
                        _ => CatalogError::Corrupt {
                            location: format!("{}/{}", store_url.as_str().trim_end_matches('/'), first.location),
                            message: format!("shard of {}@{}: {message}", manifest.dataset, manifest.version),
                        },
                    }
                })?
            }
            None => manifest_schema(manifest)?,
        };
        Ok(VersionTable {
            schema,
            store_url,
            files: metas.into_iter().map(PartitionedFile::from).collect(),
            rows: manifest.totals.rows,
            bytes: manifest.totals.bytes,
        })
    }

    fn table_statistics(&self) -> Statistics {
        let mut stats = Statistics::new_unknown(&self.schema);
        stats.num_rows = Precision::Exact(self.rows as usize);
        stats.total_byte_size = Precision::Inexact(self.bytes as usize);
        stats
    }
}

/// `root/rel`, part by part.
fn join(root: &Path, rel: &str) -> Path {
    let mut p = root.clone();
    for part in rel.split('/').filter(|s| !s.is_empty()) {
        p = p.join(part);
    }
    p
}

/// The schema a manifest records, for a version without shards.
fn manifest_schema(manifest: &VersionManifest) -> Result<SchemaRef> {
    let fields = manifest
        .schema
        .iter()
        .map(|f| {
            let t: arrow::datatypes::DataType = f.data_type.parse().map_err(|e| CatalogError::Corrupt {
                location: format!("{}@{} manifest", manifest.dataset, manifest.version),
                message: format!("column {}: type `{}`: {e}", f.name, f.data_type),
            })?;
            Ok(arrow::datatypes::Field::new(&f.name, t, f.nullable))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(arrow::datatypes::Schema::new(fields)))
}

#[async_trait]
impl TableProvider for VersionTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        if self.files.is_empty() {
            return Ok(Arc::new(EmptyExec::new(project_schema(&self.schema, projection)?)));
        }
        // Contiguous runs of shards per partition, so each partition reads in manifest order.
        let partitions = state.config_options().execution.target_partitions.max(1);
        let per_group = self.files.len().div_ceil(partitions);
        let groups: Vec<FileGroup> = self.files.chunks(per_group).map(|c| FileGroup::new(c.to_vec())).collect();
        let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
        let source = format.file_source(TableSchema::from(Arc::clone(&self.schema)));
        let config = FileScanConfigBuilder::new(self.store_url.clone(), source)
            .with_file_groups(groups)
            .with_statistics(self.table_statistics())
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        // Filters reach the Parquet reader through DataFusion's physical filter pushdown,
        // from the FilterExec that `Inexact` leaves above this scan.
        format.create_physical_plan(state, config).await
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DFResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    fn statistics(&self) -> Option<Statistics> {
        Some(self.table_statistics())
    }
}
