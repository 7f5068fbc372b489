//! An incremental version's base, less the rows of documents removed
//! upstream: the commit hook of `dataset` sources with `incremental: true`
//! (docs/adr/0019-incremental-downstream.md).
//!
//! ```text
//! manifest = base shards ++ run shards (smelt_catalog::commit::append_to)
//!   each base shard ──read `id` only──► any removed id? ──no──► kept as it is (zero copy)
//!                                                       └─yes─► rewritten without those rows
//!                                                               runs/<run>/shards/kept-NNNNNN-KK.parquet
//! ```
//! Group statistics lose the dropped rows; totals and digest are computed again.

use std::collections::HashSet;

use arrow::array::{Array, AsArray, BooleanArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use smelt_catalog::commit::{add_stats, load_base, refresh_totals, CommitHook};
use smelt_catalog::model::{GroupStats, RunPlan, ShardEntry, VersionManifest};
use smelt_catalog::store::DatasetStore;
use smelt_catalog::{CatalogError, Result, ShardUploads};

use super::compact::{merge_into, sink_options};
use super::parquet::ParquetSinkConfig;

/// The commit hook that takes the rows of removed upstream documents out of
/// an incremental version's base shards (before small shards merge).
#[derive(Debug, Clone, Copy, Default)]
pub struct DropRemovedRows;

#[async_trait]
impl CommitHook for DropRemovedRows {
    async fn before_commit(
        &self,
        store: &DatasetStore,
        run_id: &str,
        plan: &RunPlan,
        manifest: &mut VersionManifest,
    ) -> Result<()> {
        // Nothing removed upstream (the plan counted it): the base's shards stay as they are.
        if plan.upstream.iter().all(|u| u.since.as_ref().is_none_or(|s| s.removed == 0)) {
            return Ok(());
        }
        let Some(base) = load_base(store, plan).await? else { return Ok(()) };
        if base.removed.is_empty() {
            return Ok(());
        }
        let cfg = sink_options(&plan.resolved_config).unwrap_or_default();
        let n = base.manifest.shards.len().min(manifest.shards.len());
        let mut shards = Vec::with_capacity(manifest.shards.len());
        let mut dropped: Vec<GroupStats> = Vec::new();
        for (i, shard) in manifest.shards.iter().enumerate() {
            if i >= n || !holds_any(store, shard, &base.removed).await? {
                shards.push(shard.clone());
                continue;
            }
            let (kept, gone) = without(store, &cfg, shard, &base.removed, run_id, i).await?;
            shards.extend(kept);
            add_stats(&mut dropped, &gone, 1);
        }
        manifest.shards = shards;
        add_stats(&mut manifest.stats, &dropped, -1);
        refresh_totals(manifest);
        Ok(())
    }
}

/// Whether `shard` has a row whose `id` is in `removed` (only the `id` column is decoded).
async fn holds_any(store: &DatasetStore, shard: &ShardEntry, removed: &HashSet<Vec<u8>>) -> Result<bool> {
    let bytes = store.get(&shard.path).await?.ok_or_else(|| missing(store, shard))?;
    let bad = |e: &dyn std::fmt::Display| CatalogError::User(format!("{}/{}: {e}", store.url(), shard.path));
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| bad(&e))?;
    let Ok(id) = builder.schema().index_of("id") else {
        return Err(bad(&"no `id` column: rows of removed documents cannot be found; run with `incremental: false`"));
    };
    let mask = ProjectionMask::roots(builder.parquet_schema(), [id]);
    for batch in builder.with_projection(mask).build().map_err(|e| bad(&e))? {
        let batch = batch.map_err(|e| bad(&e))?;
        if removed_mask(&batch, removed).map_err(|e| bad(&e))?.true_count() > 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Which rows of `batch` have an `id` in `removed`.
fn removed_mask(batch: &RecordBatch, removed: &HashSet<Vec<u8>>) -> arrow::error::Result<BooleanArray> {
    let ids =
        batch.column_by_name("id").ok_or_else(|| arrow::error::ArrowError::SchemaError("no `id` column".into()))?;
    let ids = arrow::compute::cast(ids, &DataType::LargeUtf8)?;
    let ids = ids.as_string::<i64>();
    Ok((0..ids.len()).map(|i| Some(ids.is_valid(i) && removed.contains(ids.value(i).as_bytes()))).collect())
}

/// `shard` rewritten without the rows whose `id` is in `removed`, as the
/// shards written and the statistics of the rows left out.
async fn without(
    store: &DatasetStore,
    cfg: &ParquetSinkConfig,
    shard: &ShardEntry,
    removed: &HashSet<Vec<u8>>,
    run_id: &str,
    position: usize,
) -> Result<(Vec<ShardEntry>, Vec<GroupStats>)> {
    let run = run_id.to_string();
    let name = move |k: u32| format!("runs/{run}/shards/kept-{position:06}-{k:02}.parquet");
    let mut uploads = ShardUploads::new(store, name);
    let mut gone: Vec<GroupStats> = Vec::new();
    let mut keep = |batch: RecordBatch| -> Result<RecordBatch> {
        let bad = |e: arrow::error::ArrowError| CatalogError::Internal(format!("dropping removed rows: {e}"));
        let mask = removed_mask(&batch, removed).map_err(bad)?;
        let out = arrow::compute::filter_record_batch(&batch, &mask).map_err(bad)?;
        add_stats(&mut gone, &smelt_engine::group_stats(&out), 1);
        let stay = arrow::compute::not(&mask).map_err(bad)?;
        arrow::compute::filter_record_batch(&batch, &stay).map_err(bad)
    };
    let written = merge_into(store, cfg, std::slice::from_ref(shard), &mut uploads, &mut keep).await;
    if written.is_err() {
        uploads.abort().await;
    }
    Ok((written?, gone))
}

fn missing(store: &DatasetStore, shard: &ShardEntry) -> CatalogError {
    CatalogError::User(format!("{}/{} is missing: the base version's shard was removed", store.url(), shard.path))
}
