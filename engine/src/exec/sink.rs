//! The sink stage on one split: its writer encodes shards on a blocking
//! thread, the engine stores them named by (split, sequence), and
//! [`DocumentFacts`] gathers the version's statistics and document index
//! from the same rows. A dry run collects the rows instead.
//!
//! ```text
//! inputs ──join──► ShardWriter::write ──encoded shards──► store: runs/<id>/shards/<split>-<seq>.parquet
//!               └► DocumentFacts ──► stats, index run ──► runs/<id>/index/<split>.idx (before the completion record)
//! ```

use std::sync::atomic::Ordering;
use std::sync::Arc;

use smelt_catalog::docindex::{put_run, split_index_path};
use smelt_catalog::{shard_path, ShardEntry};

use super::cpu::StageIo;
use super::facts::DocumentFacts;
use super::split::{SinkMode, SinkOut};
use super::Progress;
use crate::error::Result;
use crate::stage::SinkConfig;

/// Writes `io`'s inputs with sink `cfg` as `mode` says.
///
/// # Errors
/// The writer fails, or the shards or index cannot be stored.
pub(super) async fn run(
    io: &mut StageIo,
    cfg: &Arc<dyn SinkConfig>,
    mode: &SinkMode,
    progress: &Progress,
) -> Result<SinkOut> {
    let schema = io.input_schema()?;
    let mut out = SinkOut::default();
    if matches!(mode, SinkMode::Collect) {
        while let Some((batch, _)) = io.next_batch().await? {
            io.metrics.rows_out += batch.num_rows() as u64;
            out.collected.push(batch);
        }
        return Ok(out);
    }
    let facts = DocumentFacts::new(&schema, matches!(mode, SinkMode::Store { .. }));
    let mut state = Some((cfg.writer(&schema)?, facts));
    let mut seq = 0u32;
    loop {
        let (batch, parts) = io.next_batch().await?.unzip();
        let last = batch.is_none();
        if let Some(b) = &batch {
            io.metrics.rows_out += b.num_rows() as u64;
        }
        let encoded = io
            .with(&mut state, move |(writer, facts)| match &batch {
                Some(b) => writer.write(b).and_then(|shards| facts.observe(b).map(|()| shards)),
                None => writer.finish().and_then(|shards| facts.finish().map(|()| shards)),
            })
            .await??;
        drop(parts);
        if let SinkMode::Store { store, run_id, split } = mode {
            for shard in encoded {
                let path = shard_path(run_id, *split, seq);
                seq += 1;
                let checksum = format!("xxh3-128:{:032x}", xxhash_rust::xxh3::xxh3_128(&shard.bytes));
                let bytes = shard.bytes.len() as u64;
                store.put(&path, shard.bytes).await?;
                progress.rows_written.fetch_add(shard.rows, Ordering::Relaxed);
                out.shards.push(ShardEntry { path, split: *split, rows: shard.rows, bytes, checksum });
            }
        }
        if last {
            break;
        }
    }
    if let Some((_, facts)) = state {
        let (stats, index) = facts.into_parts();
        out.stats = stats;
        // The split's index is stored with its shards, before the completion record.
        if let (SinkMode::Store { store, run_id, split }, Some(run)) = (mode, index) {
            out.doc_index = Some(put_run(store, &split_index_path(run_id, *split), run).await?);
        }
    }
    Ok(out)
}
