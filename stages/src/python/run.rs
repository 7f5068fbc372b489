//! A `python` or `datatrove` stage on one split: each batch through the
//! run's worker pool, in order, and the answer merged back, or the error a
//! user can act on.
//!
//! ```text
//! batch ──encode (Arrow IPC)──► Pool::call ──B result──► schema::merge ──► Processed::Batch | Filtered
//!                                          └─E exception──► user error: traceback, row, the stage's position
//!                                          └─died / timed out twice──► external error: exit status, stderr lines
//! ```

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use smelt_engine::{Batching, EngineError, Processed, Result, Transform};

use super::protocol::{decode_batch, Kind, PyError, USER_NS_KEY};
use super::worker::{self, CallError, Pool, WorkerError};
use super::{schema, OnError};

/// A stage's transform on one split: its batches through the run's pool, in order.
pub(super) struct Run {
    pub(super) pool: Arc<Pool>,
    /// The stage's output schema for this split's input.
    pub(super) output: SchemaRef,
    /// How messages name the code.
    pub(super) label: String,
    /// The interpreter as the options name it.
    pub(super) python: String,
    pub(super) on_error: OnError,
    /// Nanoseconds this split's batches spent in user code, as the worker measured them.
    pub(super) user_ns: u64,
    /// Rows and bytes of one call (`batch_rows`, `batch_bytes`); None: a call per pipeline batch.
    pub(super) calls: Option<Batching>,
}

impl Transform for Run {
    fn process(&mut self, batch: RecordBatch) -> Result<Processed> {
        let mut out = self.process_many(vec![batch])?;
        Ok(out.pop().expect("one result per batch"))
    }

    /// The batches gathered for this stage (two calls' worth, [`TransformConfig::batching`]) to a worker in
    /// calls of `batch_rows` rows (each one IPC stream, one result batch), each batch's part of its call's
    /// result merged into it.
    fn process_many(&mut self, batches: Vec<RecordBatch>) -> Result<Vec<Processed>> {
        let sent: Vec<RecordBatch> = batches.iter().filter(|b| b.num_rows() > 0).cloned().collect();
        let parts = parts(&sent, self.calls);
        let results = if sent.is_empty() { Vec::new() } else { self.call(&sent, &parts)? };
        // Each batch sent: its call's result, and where its rows start in it.
        let mut slices = Vec::with_capacity(sent.len());
        for (range, result) in parts.iter().zip(&results) {
            let mut offset = 0;
            for b in &sent[range.clone()] {
                slices.push((result, offset));
                offset += b.num_rows();
            }
        }
        let mut slices = slices.into_iter();
        batches
            .iter()
            .map(|batch| {
                let n = batch.num_rows();
                if n == 0 {
                    return Ok(Processed::Batch(RecordBatch::new_empty(self.output.clone())));
                }
                let (result, offset) = slices.next().expect("a result for each batch sent");
                // A result without columns (a filter that kept every row) stands for every batch of the call.
                let part = if result.num_columns() == 0 { result.clone() } else { result.slice(offset, n) };
                let (out, verdicts) = schema::merge(batch, &part, &self.output)
                    .map_err(|e| EngineError::User(format!("{}: {e}", self.label)))?;
                Ok(match verdicts {
                    Some(verdicts) => Processed::Filtered { batch: out, verdicts },
                    None => Processed::Batch(out),
                })
            })
            .collect()
    }

    fn take_counters(&mut self) -> BTreeMap<String, u64> {
        let mut counters = BTreeMap::new();
        match self.pool.take_restarts() {
            0 => {}
            n => _ = counters.insert("worker_restarts".to_string(), n),
        }
        // The stage's time less this is what the worker protocol cost (bench/python_stage.sh).
        counters.insert(USER_CODE_COUNTER.to_string(), std::mem::take(&mut self.user_ns) / 1000);
        counters
    }
}

/// The stage counter of microseconds spent in user code (the calls; in
/// filter and map mode, the worker's loop over the rows that makes them).
pub const USER_CODE_COUNTER: &str = "user_code_us";

/// Consecutive ranges of `batches`, a call each: batches until they hold `calls.rows` rows or `calls.bytes`
/// bytes, as the engine gathers them (it gathers two calls' worth, so that the worker runs one call while the
/// next is written: worker.rs). Without `calls` (`batch_rows: 0`), the one batch the engine hands over.
fn parts(batches: &[RecordBatch], calls: Option<Batching>) -> Vec<Range<usize>> {
    let Some(want) = calls else { return vec![0..batches.len()] };
    let (mut parts, mut start, mut rows, mut bytes) = (Vec::new(), 0, 0, 0);
    for (i, b) in batches.iter().enumerate() {
        rows += b.num_rows();
        bytes += b.get_array_memory_size();
        if rows >= want.rows || bytes >= want.bytes {
            parts.push(start..i + 1);
            (start, rows, bytes) = (i + 1, 0, 0);
        }
    }
    if start < batches.len() {
        parts.push(start..batches.len());
    }
    parts
}

/// The time a result batch spent in user code (its schema metadata `smelt.user_ns`; 0 without it).
fn user_ns(result: &RecordBatch) -> u64 {
    result.schema_ref().metadata().get(USER_NS_KEY).and_then(|v| v.parse().ok()).unwrap_or(0)
}

impl Run {
    /// The calls of `parts` (ranges of `batches`, none empty) to one worker: a result batch a call, with as
    /// many rows as its batches.
    fn call(&mut self, batches: &[RecordBatch], parts: &[Range<usize>]) -> Result<Vec<RecordBatch>> {
        let rows_of = |b: &[RecordBatch]| b.iter().map(RecordBatch::num_rows).sum::<usize>();
        let answers = self.pool.call_batches(batches, parts).map_err(|e| self.failed(e, rows_of(batches)))?;
        let mut results = Vec::with_capacity(answers.len());
        for (answer, range) in answers.into_iter().zip(parts) {
            let rows = rows_of(&batches[range.clone()]);
            let result = match answer.kind {
                Kind::Batch => decode_batch(&answer.payload).map_err(|e| self.protocol(e))?,
                Kind::Error => {
                    let e = worker::parse_error(&answer.payload)
                        .map_err(|e| self.failed(CallError { error: e, first: None }, rows))?;
                    return Err(self.exception(&e));
                }
                other => return Err(self.protocol(format!("a {other:?} frame answering a batch"))),
            };
            if result.num_rows() != rows && result.num_columns() > 0 {
                return Err(EngineError::User(format!(
                    "{}: the result has {} rows for a call of {rows}",
                    self.label,
                    result.num_rows()
                )));
            }
            self.user_ns += user_ns(&result);
            results.push(result);
        }
        Ok(results)
    }

    /// An exception in user code, or a result that does not fit the stage.
    fn exception(&self, e: &PyError) -> EngineError {
        if e.output {
            return EngineError::User(format!("{}: {}", self.label, e.message));
        }
        let row = match &e.row {
            Some(r) => match &r.id {
                Some(id) => format!(" on row {} of the batch (id `{id}`)", r.index),
                None => format!(" on row {} of the batch", r.index),
            },
            None => String::new(),
        };
        let hint = if self.on_error == OnError::Fail { "\n(`on_error: drop` drops such rows instead)" } else { "" };
        EngineError::User(format!(
            "{} raised {}{row}: {}\n{}{hint}",
            self.label,
            e.kind,
            e.message,
            e.traceback.trim_end()
        ))
    }

    fn protocol(&self, e: String) -> EngineError {
        EngineError::Internal(format!("the Python worker running {} broke the frame protocol: {e}", self.label))
    }

    /// A call that got no answer.
    fn failed(&self, e: CallError, rows: usize) -> EngineError {
        let what = |w: &WorkerError| match w {
            WorkerError::Died { status, .. } => format!("died ({status})"),
            WorkerError::Timeout(t) => {
                format!("took longer than batch_timeout_s ({} s) and was killed", t.as_secs_f64())
            }
            other => format!("{other:?}"),
        };
        match &e.error {
            WorkerError::Start(m) => EngineError::User(format!(
                "{}: cannot start a Python worker: {m} (python: `{}`)",
                self.label, self.python
            )),
            WorkerError::Setup(p) => EngineError::User(format!(
                "{}: setting up a Python worker raised {}: {}\n{}",
                self.label,
                p.kind,
                p.message,
                p.traceback.trim_end()
            )),
            WorkerError::Protocol(m) => self.protocol(m.clone()),
            WorkerError::Encode(m) => {
                EngineError::Internal(format!("{}: cannot hand a batch of {rows} rows to its worker: {m}", self.label))
            }
            WorkerError::Died { .. } | WorkerError::Timeout(_) => {
                let story = match &e.first {
                    Some(first) => {
                        format!("{}, was replaced, and the new one {} on the same batch", what(first), what(&e.error))
                    }
                    None => what(&e.error),
                };
                let stderr = match &e.error {
                    WorkerError::Died { stderr, .. } if !stderr.is_empty() => {
                        format!("\nthe worker's last stderr lines:\n{stderr}")
                    }
                    _ => String::new(),
                };
                EngineError::External(format!(
                    "the Python worker running {} on a batch of {rows} rows {story}{stderr}",
                    self.label
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, StringArray};

    use super::*;

    #[test]
    fn calls_are_cut_where_the_rows_or_the_bytes_reach_a_call() {
        let batch = |rows: usize, len: usize| {
            let text: ArrayRef = Arc::new(StringArray::from(vec!["x".repeat(len); rows]));
            RecordBatch::try_from_iter([("text", text)]).unwrap()
        };
        let small: Vec<RecordBatch> = (0..5).map(|_| batch(4, 1)).collect();
        let rows_only = Some(Batching { rows: 8, bytes: usize::MAX });
        assert_eq!(parts(&small, rows_only), vec![0..2, 2..4, 4..5]);
        assert_eq!(parts(&small, None), vec![0..5], "batch_rows: 0 hands over one batch at a time");
        // A batch of long texts ends its call by bytes, before the rows do.
        let mixed = [batch(4, 1), batch(1, 100_000), batch(4, 1), batch(4, 1)];
        let bounded = Some(Batching { rows: 8, bytes: 50_000 });
        assert_eq!(parts(&mixed, bounded), vec![0..2, 2..4]);
    }
}
