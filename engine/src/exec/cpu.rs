//! How a stage task works: its channels, its metrics, and the one way its
//! CPU work runs, on a blocking thread holding one of the run's
//! `parallelism` permits, timed as the stage's busy time.
//!
//! ```text
//! StageIo { inputs ──► [state ──on_cpu / with──► blocking thread ──► state] ──► emit ──► outputs }
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use smelt_catalog::StageMetrics;
use tokio::sync::Semaphore;

use super::split::{apply_verdicts, broadcast, join_parts, next_inputs};
use crate::channel::{Msg, Receiver, Sender};
use crate::error::{EngineError, Result};
use crate::stage::Processed;

/// Runs `f` on a blocking thread while holding one CPU permit.
pub(super) async fn on_cpu<T: Send + 'static>(
    cpu: &Arc<Semaphore>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let _permit = cpu.acquire().await.map_err(|_| EngineError::Cancelled)?;
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        if e.is_panic() {
            EngineError::Internal(format!("a stage panicked: {e}"))
        } else {
            EngineError::Cancelled
        }
    })
}

/// One stage's task on one split: what it reads and writes, and what it counts.
pub(super) struct StageIo {
    /// Its input channels, in input order.
    pub(super) inputs: Vec<Receiver>,
    /// Its output channels.
    pub(super) outputs: Vec<Sender>,
    /// The schema of its (first) input.
    pub(super) schema: Option<SchemaRef>,
    /// The run's CPU permits.
    pub(super) cpu: Arc<Semaphore>,
    /// Rows in and out, drops, counters.
    pub(super) metrics: StageMetrics,
    /// Time spent in CPU work.
    pub(super) busy: Duration,
}

impl StageIo {
    /// The input schema.
    ///
    /// # Errors
    /// A stage without input (a compiled pipeline has none but sources).
    pub(super) fn input_schema(&self) -> Result<SchemaRef> {
        self.schema
            .clone()
            .ok_or_else(|| EngineError::Internal(format!("stage `{}` without input", self.metrics.stage)))
    }

    /// Runs `f` on a blocking thread with a CPU permit, counting the time it
    /// ran (not the wait for a permit) as busy.
    pub(super) async fn on_cpu<T: Send + 'static>(&mut self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let (out, took) = on_cpu(&self.cpu, move || {
            let start = Instant::now();
            let out = f();
            (out, start.elapsed())
        })
        .await?;
        self.busy += took;
        Ok(out)
    }

    /// Moves `state` to a blocking thread, runs `f` on it there and puts it
    /// back: how a reader, transform, writer or observer that lives across
    /// batches does its work off the async threads.
    ///
    /// # Errors
    /// Cancellation, a panic in `f` (internal), or `state` lost to an earlier panic.
    pub(super) async fn with<S: Send + 'static, T: Send + 'static>(
        &mut self,
        state: &mut Option<S>,
        f: impl FnOnce(&mut S) -> T + Send + 'static,
    ) -> Result<T> {
        let mut s = state.take().ok_or_else(|| EngineError::Internal("a stage's state was lost".into()))?;
        let (s, out) = self
            .on_cpu(move || {
                let out = f(&mut s);
                (s, out)
            })
            .await?;
        *state = Some(s);
        Ok(out)
    }

    /// The next batch: one message from each open input, joined in input
    /// order; `None` when every input is closed.
    ///
    /// # Errors
    /// Inputs whose batches cannot be joined (a bug: the compiler checked their schemas).
    pub(super) async fn next_batch(&mut self) -> Result<Option<(RecordBatch, Vec<Msg>)>> {
        let schema = self.input_schema()?;
        let Some(parts) = next_inputs(&mut self.inputs).await else { return Ok(None) };
        let batch = join_parts(&schema, &parts)?;
        self.metrics.rows_in += batch.num_rows() as u64;
        Ok(Some((batch, parts)))
    }

    /// Sends a batch downstream, counting its rows out; false when every
    /// downstream stage has stopped reading.
    pub(super) async fn send(&mut self, batch: &RecordBatch) -> bool {
        self.metrics.rows_out += batch.num_rows() as u64;
        broadcast(&self.outputs, batch).await
    }

    /// What a transform made of a batch, sent downstream: a filter's dropped
    /// rows are removed and counted by reason. False when downstream stopped.
    ///
    /// # Errors
    /// A filter that returned a verdict count other than its row count (a bug).
    pub(super) async fn emit(&mut self, processed: Processed) -> Result<bool> {
        let out = match processed {
            Processed::Batch(b) => b,
            Processed::Filtered { batch, verdicts } => apply_verdicts(batch, verdicts, &mut self.metrics.drops)?,
        };
        Ok(self.send(&out).await)
    }
}
