//! A transform stage on one split, and the apply step of a barrier (a
//! transform over the rows the barrier spilled): batch in, batch out, drops
//! counted by reason, the stage's counters and samples taken at the end.
//!
//! ```text
//! inputs ──join──► Transform::process (blocking thread) ──verdicts──► kept rows ──► outputs
//!          └─ gathered (TransformConfig::batching) ──► Transform::process_many ──► one result per batch
//! spill.parquet ──read──► applier ──► kept, dropped or annotated rows ──► outputs
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use super::cpu::StageIo;
use super::phase::io_error;
use crate::error::{EngineError, Result};
use crate::stage::{BarrierConfig, BarrierContext, Batching, Transform, TransformConfig};

/// Runs transform `cfg` over `io`'s inputs.
///
/// # Errors
/// The transform cannot be built or fails on a batch.
pub(super) async fn run(io: &mut StageIo, cfg: &Arc<dyn TransformConfig>) -> Result<()> {
    let mut state = Some(cfg.build(&io.input_schema()?)?);
    if let Some(want) = cfg.batching() {
        return run_gathered(io, state, want).await;
    }
    while let Some((batch, parts)) = io.next_batch().await? {
        let res = io.with(&mut state, move |t| t.process(batch)).await?;
        drop(parts);
        if !io.emit(res?).await? {
            break;
        }
    }
    take_counts(io, state.as_mut());
    Ok(())
}

/// [`run`] for a transform that takes consecutive batches together ([`TransformConfig::batching`]).
async fn run_gathered(io: &mut StageIo, mut state: Option<Box<dyn Transform>>, want: Batching) -> Result<()> {
    'split: loop {
        let (mut batches, mut rows, mut bytes) = (Vec::new(), 0, 0);
        while rows < want.rows && bytes < want.bytes {
            let Some((batch, parts)) = io.next_batch().await? else { break };
            // The channel's budget goes back at once: what is gathered here is bounded by `want.bytes`, and a
            // producer whose channel holds less than that would otherwise wait for this stage forever.
            drop(parts);
            rows += batch.num_rows();
            bytes += batch.get_array_memory_size();
            batches.push(batch);
        }
        if batches.is_empty() {
            break;
        }
        let n = batches.len();
        let results = io.with(&mut state, move |t| t.process_many(batches)).await??;
        if results.len() != n {
            return Err(EngineError::Internal(format!("a transform gave {} results for {n} batches", results.len())));
        }
        for res in results {
            if !io.emit(res).await? {
                break 'split;
            }
        }
    }
    take_counts(io, state.as_mut());
    Ok(())
}

/// Runs barrier `cfg`'s applier for split `split` over the rows spilled to `file`.
///
/// # Errors
/// The spill cannot be read, or the applier fails.
pub(super) async fn apply(
    io: &mut StageIo,
    cfg: &Arc<dyn BarrierConfig>,
    file: PathBuf,
    ctx: BarrierContext,
    split: u32,
    batch_rows: usize,
) -> Result<()> {
    let (schema, cfg) = (io.input_schema()?, cfg.clone());
    let opened = io
        .on_cpu(move || -> Result<_> {
            let f = std::fs::File::open(&file).map_err(|e| io_error(&file, e))?;
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                .and_then(|b| b.with_batch_size(batch_rows).build())
                .map_err(|e| EngineError::External(format!("{}: cannot read the spill: {e}", file.display())))?;
            Ok((reader, cfg.applier(&schema, &ctx, split)?))
        })
        .await??;
    let mut state = Some(opened);
    loop {
        let res = io
            .with(&mut state, |(reader, applier)| match reader.next() {
                None => Ok(None),
                Some(Err(e)) => Err(EngineError::External(format!("cannot read the spill: {e}"))),
                Some(Ok(b)) => applier.process(b).map(Some),
            })
            .await?;
        let Some(processed) = res? else { break };
        if !io.emit(processed).await? {
            break;
        }
    }
    take_counts(io, state.as_mut().map(|(_, applier)| applier));
    Ok(())
}

/// The counts and samples a transform kept besides rows and drops.
fn take_counts(io: &mut StageIo, t: Option<&mut Box<dyn Transform>>) {
    if let Some(t) = t {
        io.metrics.counters = t.take_counters();
        io.metrics.samples = t.take_samples();
    }
}
