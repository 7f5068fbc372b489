//! Small shards merged: at commit (the parquet sink's `merge_small_shards`)
//! and by `smelt catalog compact`. Shards that each hold less than half of
//! `shard_bytes` and of `shard_rows` and that follow each other in the
//! version's order are rewritten together into shards of up to
//! `shard_bytes`, with the sink's own writer and settings. Rows keep their
//! order, so the version's digest (over the rows' content hashes, see
//! [`smelt_catalog::content`]) does not change; which shards merge depends
//! only on the shard list, so the result is the same whatever the thread or
//! rank count (docs/adr/0018-compaction.md).
//!
//! ```text
//! manifest shards ──plan: runs of adjacent small shards──► read each (Parquet) ──► ParquetShardWriter
//!                                                            ──► runs/<id>/shards/merged-SSSSS-NNNNNN-KK.parquet
//! ```
//! The merged shards are written before the manifest that names them; the
//! small ones stay in storage until `smelt catalog gc` removes what no kept
//! version references. A commit killed while merging leaves files no
//! manifest names; the next attempt writes the same bytes again.

use std::ops::Range;

use arrow::record_batch::{RecordBatch, RecordBatchReader};
use async_trait::async_trait;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use smelt_catalog::commit::CommitHook;
use smelt_catalog::content::concat_shards;
use smelt_catalog::model::{RunPlan, ShardEntry, VersionManifest};
use smelt_catalog::store::DatasetStore;
use smelt_catalog::{CatalogError, Result, ShardUploads};
use smelt_engine::rowhash::PendingRows;
use smelt_engine::{ShardOutput, SinkConfig};

use super::parquet::ParquetSinkConfig;

/// The parquet sink's options in a resolved pipeline configuration (the
/// `parquet` stage's), `None` when it has none.
pub fn sink_options(resolved_config: &serde_json::Value) -> Option<ParquetSinkConfig> {
    let stages = resolved_config.get("stages")?.as_array()?;
    let sink = stages.iter().find(|s| s.get("type").and_then(|t| t.as_str()) == Some("parquet"))?;
    serde_json::from_value(sink.get("options").cloned().unwrap_or_default()).ok()
}

/// The runs of `shards` (indexes, in order) that merge: adjacent shards each
/// under half of `shard_bytes` and of `shard_rows`, gathered while their sum
/// stays within both. Runs of one shard are left out (nothing to merge).
pub fn plan(shards: &[ShardEntry], cfg: &ParquetSinkConfig) -> Vec<Range<usize>> {
    let small = |s: &ShardEntry| s.bytes * 2 < cfg.shard_bytes && s.rows * 2 < cfg.shard_rows as u64;
    let mut groups = Vec::new();
    let mut open: Option<(usize, u64, u64)> = None; // start, bytes, rows
    for (i, s) in shards.iter().enumerate() {
        if let Some((start, bytes, rows)) = open {
            if small(s) && bytes + s.bytes <= cfg.shard_bytes && rows + s.rows <= cfg.shard_rows as u64 {
                open = Some((start, bytes + s.bytes, rows + s.rows));
                continue;
            }
            groups.push(start..i);
        }
        open = small(s).then_some((i, s.bytes, s.rows));
    }
    if let Some((start, ..)) = open {
        groups.push(start..shards.len());
    }
    groups.retain(|g| g.len() > 1);
    groups
}

/// `shards` with every run [`plan`] finds replaced by merged shards written
/// under `runs/<run_id>/shards/`; unchanged when nothing merges.
///
/// # Errors
/// A shard that cannot be read or decoded, shards of different schemas,
/// storage failures, or merged rows whose content differs from the originals' (a bug).
pub async fn merge_small_shards(
    store: &DatasetStore,
    cfg: &ParquetSinkConfig,
    run_id: &str,
    shards: &[ShardEntry],
) -> Result<Vec<ShardEntry>> {
    let groups = plan(shards, cfg);
    let mut out = Vec::with_capacity(shards.len());
    let mut next = 0;
    for g in groups {
        out.extend_from_slice(&shards[next..g.start]);
        let (run_id, split, start) = (run_id.to_string(), shards[g.start].split, g.start);
        let name = move |k: u32| format!("runs/{run_id}/shards/merged-{split:05}-{start:06}-{k:02}.parquet");
        out.extend(merge(store, cfg, &shards[g.clone()], name).await?);
        next = g.end;
    }
    out.extend_from_slice(&shards[next..]);
    Ok(out)
}

/// Writes the rows of `group`, in order, as shards named by `name(k)`; a
/// failure leaves nothing under the name of the shard being written.
async fn merge(
    store: &DatasetStore,
    cfg: &ParquetSinkConfig,
    group: &[ShardEntry],
    name: impl Fn(u32) -> String + Send + Sync + 'static,
) -> Result<Vec<ShardEntry>> {
    let mut uploads = ShardUploads::new(store, name);
    let written = merge_into(store, cfg, group, &mut uploads, &mut Ok).await;
    if written.is_err() {
        uploads.abort().await;
    }
    let written = written?;
    // The merged rows are the originals, in order: their content hashes say so.
    let before = concat_shards(group);
    if before.is_some() && before != concat_shards(&written) {
        return Err(CatalogError::Internal(format!(
            "merging {} shards from {} changed their rows' content; nothing was committed",
            group.len(),
            group[0].path
        )));
    }
    Ok(written)
}

/// [`merge`]'s reading and writing: each shard of `group` read back, passed
/// through `keep` (which may leave rows out) and given to the sink's writer,
/// whose output goes to `uploads`.
pub(super) async fn merge_into(
    store: &DatasetStore,
    cfg: &ParquetSinkConfig,
    group: &[ShardEntry],
    uploads: &mut ShardUploads,
    keep: &mut (dyn FnMut(RecordBatch) -> Result<RecordBatch> + Send),
) -> Result<Vec<ShardEntry>> {
    let bad = |path: &str, e: &dyn std::fmt::Display| {
        CatalogError::User(format!("cannot merge shard {}/{path}: {e}", store.url()))
    };
    let mut writer: Option<(Box<dyn smelt_engine::ShardWriter>, arrow::datatypes::SchemaRef)> = None;
    let mut pending = PendingRows::default();
    let mut written = Vec::new();
    for shard in group {
        let bytes = store.get(&shard.path).await?.ok_or_else(|| bad(&shard.path, &"it is missing"))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .map_err(|e| bad(&shard.path, &e))?
            .with_batch_size(cfg.row_group_rows)
            .build()
            .map_err(|e| bad(&shard.path, &e))?;
        let schema = reader.schema();
        let (w, first_schema) = match &mut writer {
            Some(w) => w,
            None => writer.insert((cfg.writer(&schema).map_err(|e| bad(&shard.path, &e))?, schema.clone())),
        };
        if schema.fields() != first_schema.fields() {
            return Err(bad(&shard.path, &"its schema differs from the shards before it"));
        }
        for batch in reader {
            let batch = keep(batch.map_err(|e| bad(&shard.path, &e))?)?;
            if batch.num_rows() == 0 {
                continue;
            }
            pending.push(&batch).map_err(|e| bad(&shard.path, &e))?;
            let outputs = w.write(&batch).map_err(|e| bad(&shard.path, &e))?;
            emit(outputs, uploads, &mut pending, &mut written, group[0].split).await?;
        }
    }
    if let Some((w, _)) = &mut writer {
        let outputs = w.finish().map_err(|e| CatalogError::Internal(format!("parquet: {e}")))?;
        emit(outputs, uploads, &mut pending, &mut written, group[0].split).await?;
    }
    Ok(written)
}

/// The writer's `outputs` to storage: bytes to the shard being written, each
/// end completing it as a [`ShardEntry`] of `split` with the content of its rows.
async fn emit(
    outputs: Vec<ShardOutput>,
    uploads: &mut ShardUploads,
    pending: &mut PendingRows,
    written: &mut Vec<ShardEntry>,
    split: u32,
) -> Result<()> {
    for o in outputs {
        match o {
            ShardOutput::Bytes(bytes) => uploads.write(bytes).await?,
            ShardOutput::End { rows } => {
                let content = pending.take(rows).map_err(|e| CatalogError::Internal(e.to_string()))?;
                let shard = uploads.end(rows).await?;
                written.push(ShardEntry { split, content: Some(content.to_string()), ..shard });
            }
        }
    }
    Ok(())
}

/// The commit hook that merges a run's small shards before its manifest is
/// written, when the pipeline's parquet sink has `merge_small_shards` (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct MergeSmallShards;

#[async_trait]
impl CommitHook for MergeSmallShards {
    async fn before_commit(
        &self,
        store: &DatasetStore,
        run_id: &str,
        plan: &RunPlan,
        manifest: &mut VersionManifest,
    ) -> Result<()> {
        let Some(cfg) = sink_options(&plan.resolved_config).filter(|c| c.merge_small_shards) else { return Ok(()) };
        // Only the run's own shards: those an incremental run appends to are referenced as they are
        // (zero copy; `smelt catalog compact` merges across appends).
        let own = format!("runs/{run_id}/");
        let start = manifest.shards.iter().rposition(|s| !s.path.starts_with(&own)).map_or(0, |i| i + 1);
        let mut shards = manifest.shards[..start].to_vec();
        shards.extend(merge_small_shards(store, &cfg, run_id, &manifest.shards[start..]).await?);
        set_shards(manifest, shards);
        Ok(())
    }
}

/// Replaces the shards of `manifest` (and their totals); a merged shard
/// takes the split of the first shard it holds.
fn set_shards(manifest: &mut VersionManifest, shards: Vec<ShardEntry>) {
    manifest.totals.shards = shards.len() as u64;
    manifest.totals.bytes = shards.iter().map(|s| s.bytes).sum();
    manifest.shards = shards;
}

/// What `smelt catalog compact` made.
#[derive(Debug, Clone)]
pub struct Compacted {
    /// The shards merged (of the version compacted).
    pub merged_from: usize,
    /// The shards they became.
    pub merged_into: usize,
    /// The new version's manifest, not yet committed.
    pub manifest: VersionManifest,
}

/// The manifest of a version with `m`'s rows in `m`'s order and its small
/// shards merged (under `runs/<run_id>/shards/`, written here); `None` when
/// no two small shards are adjacent. `cfg` defaults to the sink settings the
/// version was written with.
///
/// # Errors
/// As [`merge_small_shards`].
pub async fn compact(
    store: &DatasetStore,
    m: &VersionManifest,
    cfg: Option<ParquetSinkConfig>,
    run_id: &str,
    committed_at: &str,
) -> Result<Option<Compacted>> {
    let cfg = cfg.or_else(|| sink_options(&m.lineage.resolved_config)).unwrap_or_else(ParquetSinkConfig::default);
    let groups = plan(&m.shards, &cfg);
    if groups.is_empty() {
        return Ok(None);
    }
    let merged_from = groups.iter().map(ExactSizeIterator::len).sum();
    let shards = merge_small_shards(store, &cfg, run_id, &m.shards).await?;
    let mut out = m.clone();
    set_shards(&mut out, shards);
    out.committed_at = committed_at.to_string();
    out.digest = smelt_catalog::commit::version_digest(&out.schema, &out.shards);
    out.lineage.run_id = run_id.to_string();
    out.lineage.compacted_from = Some(m.version);
    let merged_into = merged_from + out.shards.len() - m.shards.len();
    Ok(Some(Compacted { merged_from, merged_into, manifest: out }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(bytes: u64, rows: u64) -> ShardEntry {
        ShardEntry { path: String::new(), split: 0, rows, bytes, checksum: String::new(), content: None }
    }

    #[test]
    fn plans_runs_of_adjacent_small_shards_within_the_targets() {
        let cfg: ParquetSinkConfig =
            serde_json::from_value(serde_json::json!({"shard_bytes": 100, "shard_rows": 1000})).unwrap();
        // 60 is not small (over half of 100); 10+20+30+40 = 100 fits, the next 10 starts a new run.
        let s: Vec<ShardEntry> = [10, 20, 30, 40, 10, 60, 5, 5, 49]
            .iter()
            .map(|&b| shard(b, 1))
            .chain([shard(1, 600), shard(1, 1)])
            .collect();
        assert_eq!(plan(&s, &cfg), vec![0..4, 6..9]);
        // Rows count too: 499 + 499 fits 1000, a third does not.
        let rows: Vec<ShardEntry> = (0..3).map(|_| shard(1, 499)).collect();
        assert_eq!(plan(&rows, &cfg), vec![0..2]);
        assert!(plan(&[shard(1, 1)], &cfg).is_empty());
    }
}
