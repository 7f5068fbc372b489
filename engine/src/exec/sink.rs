//! The sink stage on one split: its writer encodes shards on a blocking
//! thread, the engine streams their bytes to the store as they come (a
//! multipart upload once a shard outgrows one part) under their final names
//! by (split, sequence), and [`DocumentFacts`] gathers the version's
//! statistics, document index and each shard's content hash from the same rows. A dry run collects the
//! rows instead. A shard becomes visible only when its upload completes; a
//! failed split aborts its open upload (see docs/adr/0011-streamed-shard-uploads.md).
//!
//! ```text
//! inputs ──join──► ShardWriter::write ──bytes, end──► ShardUploads: runs/<id>/shards/<split>-<seq>.parquet
//!               └► DocumentFacts ──► stats, index run ──► runs/<id>/index/<split>.idx (before the completion record)
//! ```

use std::sync::atomic::Ordering;
use std::sync::Arc;

use smelt_catalog::docindex::{put_run, split_index_path};
use smelt_catalog::{shard_path, ShardEntry, ShardUploads};

use super::cpu::StageIo;
use super::facts::DocumentFacts;
use super::split::{SinkMode, SinkOut};
use super::Progress;
use crate::error::Result;
use crate::stage::{ShardOutput, SinkConfig};

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
    let mut uploads = match mode {
        SinkMode::Store { store, run_id, split } => {
            let (run_id, split) = (run_id.clone(), *split);
            Some(ShardUploads::new(store, move |seq| shard_path(&run_id, split, seq)))
        }
        _ => None,
    };
    let streamed = async {
        loop {
            let (batch, parts) = io.next_batch().await?.unzip();
            let last = batch.is_none();
            if let Some(b) = &batch {
                io.metrics.rows_out += b.num_rows() as u64;
            }
            let encoded = io
                .with(&mut state, move |(writer, facts)| match &batch {
                    Some(b) => writer.write(b).and_then(|out| facts.observe(b).map(|()| out)),
                    None => writer.finish().and_then(|out| facts.finish().map(|()| out)),
                })
                .await??;
            drop(parts);
            if let (Some(uploads), SinkMode::Store { split, .. }) = (&mut uploads, mode) {
                for piece in encoded {
                    match piece {
                        ShardOutput::Bytes(bytes) => uploads.write(bytes).await?,
                        ShardOutput::End { rows } => {
                            let content = match &mut state {
                                Some((_, facts)) => facts.take_shard(rows)?,
                                None => None,
                            };
                            let shard = uploads.end(rows).await?;
                            progress.rows_written.fetch_add(rows, Ordering::Relaxed);
                            out.shards.push(ShardEntry { split: *split, content, ..shard });
                        }
                    }
                }
            }
            if last {
                return Ok::<_, crate::error::EngineError>(());
            }
        }
    }
    .await;
    if let Err(e) = streamed {
        // Nothing of the shard being written may appear under its name.
        if let Some(uploads) = &mut uploads {
            uploads.abort().await;
        }
        return Err(e);
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
