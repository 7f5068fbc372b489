//! A source stage on one split: its reader runs on a blocking thread, batch by
//! batch, until the split ends, `limit` records were read (a dry run), or no
//! downstream stage reads any more.
//!
//! ```text
//! SplitSpec ──open──► SplitReader ──next_batch (skips counted)──► batches ──► outputs
//!                         └─ read to its end: state() ──► metrics.state (committed with the version)
//! ```

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::cpu::StageIo;
use super::Progress;
use crate::error::Result;
use crate::stage::{ReadOptions, Skips, SourceConfig, SplitSpec};

/// Reads split `spec` of source `cfg` into `io`'s outputs.
///
/// # Errors
/// The split cannot be opened or read.
pub(super) async fn run(
    io: &mut StageIo,
    cfg: &Arc<dyn SourceConfig>,
    spec: SplitSpec,
    batch_rows: usize,
    limit: Option<usize>,
    progress: &Progress,
) -> Result<()> {
    let (cfg, opts) = (cfg.clone(), ReadOptions { batch_rows });
    let reader = io.on_cpu(move || cfg.open(&spec, &opts)).await??;
    let mut state = Some((reader, Skips::default()));
    let mut left = limit.unwrap_or(usize::MAX);
    let mut last_bytes = 0;
    while left > 0 {
        let (res, bytes) = io
            .with(&mut state, |(reader, skips)| {
                let res = reader.next_batch(skips);
                (res, reader.bytes_read())
            })
            .await?;
        progress.bytes.fetch_add(bytes.saturating_sub(last_bytes), Ordering::Relaxed);
        last_bytes = bytes;
        let Some(mut batch) = res? else { break };
        if batch.num_rows() > left {
            batch = batch.slice(0, left);
        }
        left -= batch.num_rows();
        progress.records.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        if !io.send(&batch).await {
            break;
        }
    }
    if let Some((reader, skips)) = state {
        io.metrics.skips = skips.counts().clone();
        if left > 0 {
            io.metrics.state = reader.state();
        }
    }
    Ok(())
}
