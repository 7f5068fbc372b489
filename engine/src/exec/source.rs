//! A source stage on one split: its reader runs on a blocking thread, batch by
//! batch, until the split ends, `limit` records were read (a dry run), or no
//! downstream stage reads any more. A reader that panics (a parser it calls
//! on input it cannot handle) ends its split there: the rows it read before
//! stay, the split counts a `parser_panic` skip naming it, the run goes on.
//!
//! ```text
//! SplitSpec ──open──► SplitReader ──next_batch (skips counted)──► batches ──► outputs
//!                         ├─ read to its end: state() ──► metrics.state (committed with the version)
//!                         └─ panicked: skip `parser_panic` (split id, message); no state
//! ```

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::cpu::StageIo;
use super::Progress;
use crate::error::Result;
use crate::guard;
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
    let (cfg, opts, id) = (cfg.clone(), ReadOptions { batch_rows }, spec.id.clone());
    let opened = io.on_cpu(move || guard::catch_at(&spec.id, || cfg.open(&spec, &opts))).await?;
    let mut skips = Skips::default();
    let reader = match opened {
        Ok(reader) => reader?,
        Err(panic) => {
            skips.skip("parser_panic", format!("{id}: opening the split {panic}"));
            io.metrics.skips = skips.counts().clone();
            return Ok(());
        }
    };
    let mut state = Some((reader, skips));
    let mut left = limit.unwrap_or(usize::MAX);
    let mut last_bytes = 0;
    let mut panicked = false;
    while left > 0 {
        let location = format!("{id}, reading");
        let (res, bytes) = io
            .with(&mut state, move |(reader, skips)| {
                let res = guard::catch_at(&location, || reader.next_batch(skips));
                if let Err(panic) = &res {
                    skips.skip("parser_panic", format!("{location}: {panic}; the rest of the split is skipped"));
                }
                (res, reader.bytes_read())
            })
            .await?;
        progress.bytes.fetch_add(bytes.saturating_sub(last_bytes), Ordering::Relaxed);
        last_bytes = bytes;
        // A reader that panicked: its split ends here.
        let Ok(res) = res else {
            panicked = true;
            break;
        };
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
        if left > 0 && !panicked {
            io.metrics.state = reader.state();
        }
    }
    Ok(())
}
