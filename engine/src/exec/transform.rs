//! A transform stage on one split, and the apply step of a barrier (a
//! transform over the rows the barrier spilled): batch in, batch out, drops
//! counted by reason, the stage's counters and samples taken at the end.
//!
//! ```text
//! inputs ──join──► Transform::process (blocking thread) ──verdicts──► kept rows ──► outputs
//! spill.parquet ──read──► applier ──► kept, dropped or annotated rows ──► outputs
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use super::cpu::StageIo;
use super::phase::io_error;
use crate::error::{EngineError, Result};
use crate::stage::{BarrierConfig, BarrierContext, Transform, TransformConfig};

/// Runs transform `cfg` over `io`'s inputs.
///
/// # Errors
/// The transform cannot be built or fails on a batch.
pub(super) async fn run(io: &mut StageIo, cfg: &Arc<dyn TransformConfig>) -> Result<()> {
    let mut state = Some(cfg.build(&io.input_schema()?)?);
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
