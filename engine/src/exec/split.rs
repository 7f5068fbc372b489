//! One split through one phase: the stages of the phase reachable from the
//! split's root, one task each, wired by byte-bounded channels.
//!
//! ```text
//! Root::Source(split) ──source──► transform ──► ... ──► sink (SinkMode::Store | Collect)
//! Root::Spill(barrier k-1) ──apply──► transform ──► ... ──► barrier k observe (SinkMode::Barrier)
//! ```
//! A stage with several inputs takes one batch from each, in input order
//! (lockstep), so its output does not depend on timing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::BooleanArray;
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef;
use smelt_catalog::{DatasetStore, DocIndexRef, GroupStats, ShardEntry, StageMetrics};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::cpu::StageIo;
use super::{observe, sink, source, transform, Progress};
use crate::channel::{channel, Msg, Receiver, Sender};
use crate::compile::Pipeline;
use crate::error::{EngineError, Fault, Result};
use crate::stage::{BarrierContext, SplitSpec, StageConfig, StageKind};

/// Where a split's work starts in a phase.
pub(super) enum Root {
    /// Phase 0: the split's source.
    Source(NodeIndex, SplitSpec),
    /// Later phases: the rows that reached the previous barrier, through its applier.
    Spill { barrier: NodeIndex, file: PathBuf, ctx: BarrierContext, split: u32 },
}

impl Root {
    fn node(&self) -> NodeIndex {
        match self {
            Root::Source(n, _) | Root::Spill { barrier: n, .. } => *n,
        }
    }
}

pub(super) enum SinkMode {
    Store {
        store: DatasetStore,
        run_id: String,
        split: u32,
    },
    Collect,
    /// The phase ends at a barrier: its observer and its spill take the rows.
    Barrier {
        ctx: BarrierContext,
        split: u32,
        spill: PathBuf,
    },
}

#[derive(Default)]
pub(super) struct SplitOutput {
    pub(super) shards: Vec<ShardEntry>,
    pub(super) stats: Vec<GroupStats>,
    pub(super) stages: Vec<StageMetrics>,
    pub(super) collected: Vec<RecordBatch>,
    pub(super) doc_index: Option<DocIndexRef>,
}

/// What a sink task hands back.
#[derive(Default)]
pub(super) struct SinkOut {
    pub(super) metrics: StageMetrics,
    pub(super) shards: Vec<ShardEntry>,
    pub(super) stats: Vec<GroupStats>,
    pub(super) collected: Vec<RecordBatch>,
    pub(super) doc_index: Option<DocIndexRef>,
}

pub(super) enum TaskOut {
    Metrics(NodeIndex, StageMetrics),
    Sink(NodeIndex, Box<SinkOut>),
}

pub(super) async fn broadcast(outputs: &[Sender], batch: &RecordBatch) -> bool {
    let mut any = false;
    for tx in outputs {
        any |= tx.send(batch.clone()).await;
    }
    any
}

/// Takes one message from each open input, in input order; `None` when all are closed.
pub(super) async fn next_inputs(inputs: &mut [Receiver]) -> Option<Vec<Msg>> {
    let mut parts = Vec::with_capacity(inputs.len());
    for rx in inputs.iter_mut() {
        if let Some(m) = rx.recv().await {
            parts.push(m);
        }
    }
    (!parts.is_empty()).then_some(parts)
}

pub(super) fn join_parts(schema: &SchemaRef, parts: &[Msg]) -> Result<RecordBatch> {
    if parts.len() == 1 {
        return Ok(parts[0].batch.clone());
    }
    Ok(concat_batches(schema, parts.iter().map(|m| &m.batch))?)
}

/// Runs split `root` through phase `phase` of `p`: one task per stage of the
/// phase reachable from the root (a barrier ends a phase), connected by
/// byte-bounded channels, each task the runner of its stage's kind.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run_split(
    p: &Pipeline,
    root: Root,
    phase: u32,
    cpu: Arc<Semaphore>,
    progress: Arc<Progress>,
    limit: Option<usize>,
    sink: SinkMode,
) -> Result<SplitOutput> {
    // Nodes of this phase reachable from the root (a barrier ends a phase),
    // and channels on the edges between them.
    let root_node = root.node();
    let mut active = HashSet::from([root_node]);
    let mut stack = vec![root_node];
    while let Some(n) = stack.pop() {
        if n != root_node && p.graph[n].config.kind() == StageKind::Barrier {
            continue;
        }
        for m in p.graph.neighbors_directed(n, petgraph::Direction::Outgoing) {
            if p.phases[m.index()] == phase && active.insert(m) {
                stack.push(m);
            }
        }
    }
    let mut senders: HashMap<NodeIndex, Vec<Sender>> = HashMap::new();
    let mut receivers: HashMap<NodeIndex, Vec<(usize, Receiver)>> = HashMap::new();
    for e in p.graph.edge_references() {
        if active.contains(&e.source()) && active.contains(&e.target()) && e.target() != root_node {
            let (tx, rx) = channel(p.channel_bytes);
            senders.entry(e.source()).or_default().push(tx);
            receivers.entry(e.target()).or_default().push((*e.weight(), rx));
        }
    }
    let mut root = Some(root);

    let mut tasks: JoinSet<Result<TaskOut>> = JoinSet::new();
    let sink_mode = Arc::new(sink);
    for &n in p.order.iter().filter(|n| active.contains(n)) {
        let mut ins = receivers.remove(&n).unwrap_or_default();
        ins.sort_by_key(|(pos, _)| *pos);
        let stage = p.graph[n].clone();
        let mut io = StageIo {
            inputs: ins.into_iter().map(|(_, rx)| rx).collect(),
            outputs: senders.remove(&n).unwrap_or_default(),
            schema: p.inputs_of(n).first().map(|&i| p.graph[i].schema.clone()),
            cpu: cpu.clone(),
            metrics: StageMetrics { stage: stage.name.clone(), ..Default::default() },
            busy: Duration::ZERO,
        };
        let (progress, sink_mode) = (progress.clone(), sink_mode.clone());
        let my_root = if n == root_node { root.take() } else { None };
        let batch_rows = p.batch_rows;
        let task = async move {
            let sink_out = match (&stage.config, my_root) {
                (StageConfig::Barrier(cfg), Some(Root::Spill { file, ctx, split, .. })) => {
                    transform::apply(&mut io, cfg, file, ctx, split, batch_rows).await.map(|()| None)
                }
                (StageConfig::Barrier(cfg), None) => match &*sink_mode {
                    SinkMode::Barrier { ctx, split, spill } => {
                        observe::run(&mut io, cfg, ctx, *split, spill).await.map(|()| None)
                    }
                    _ => Err(EngineError::Internal("a barrier ends a phase that has another sink".into())),
                },
                (StageConfig::Barrier(_), Some(Root::Source(..))) | (_, Some(Root::Spill { .. })) => {
                    Err(EngineError::Internal("a split's root does not match its stage".into()))
                }
                (StageConfig::Source(cfg), Some(Root::Source(_, spec))) => {
                    source::run(&mut io, cfg, spec, batch_rows, limit, &progress).await.map(|()| None)
                }
                (StageConfig::Source(_), None) => {
                    Err(EngineError::Internal("a source that is not its split's root".into()))
                }
                (StageConfig::Transform(cfg), _) => transform::run(&mut io, cfg).await.map(|()| None),
                (StageConfig::Sink(cfg), _) => sink::run(&mut io, cfg, &sink_mode, &progress).await.map(Some),
            };
            let mut metrics = io.metrics;
            metrics.busy_ms = io.busy.as_millis() as u64;
            sink_out.map(|s| match s {
                None => TaskOut::Metrics(n, metrics),
                Some(s) => TaskOut::Sink(n, Box::new(SinkOut { metrics, ..s })),
            })
        };
        // A stage's `timeout` bounds the time its task spends on this split;
        // every error of its task is the stage's, with its fault class.
        let (stage_timeout, name) = (stage.policy.timeout, stage.name.clone());
        tasks.spawn(async move {
            match stage_timeout {
                None => task.await.map_err(|e| e.in_stage(&name)),
                Some(t) => {
                    tokio::time::timeout(t, task).await.map(|r| r.map_err(|e| e.in_stage(&name))).unwrap_or_else(|_| {
                        Err(EngineError::Stage {
                            stage: name,
                            fault: Fault::External,
                            at: None,
                            message: format!(
                                "timed out: took longer than its timeout of {:.1}s on this split",
                                t.as_secs_f64()
                            ),
                        })
                    })
                }
            }
        });
    }

    let mut out = SplitOutput::default();
    let mut metrics: HashMap<NodeIndex, StageMetrics> = HashMap::new();
    while let Some(joined) = tasks.join_next().await {
        let res = joined.map_err(|e| {
            if e.is_panic() {
                EngineError::Internal(format!("a stage task panicked: {e}"))
            } else {
                EngineError::Cancelled
            }
        })?;
        match res {
            Ok(TaskOut::Metrics(n, m)) => {
                metrics.insert(n, m);
            }
            Ok(TaskOut::Sink(n, s)) => {
                let s = *s;
                metrics.insert(n, s.metrics);
                out.shards = s.shards;
                out.stats = s.stats;
                out.collected = s.collected;
                out.doc_index = s.doc_index;
            }
            Err(e) => {
                tasks.abort_all();
                return Err(e);
            }
        }
    }
    out.stages = p
        .order
        .iter()
        .map(|n| {
            metrics.remove(n).unwrap_or_else(|| StageMetrics { stage: p.graph[*n].name.clone(), ..Default::default() })
        })
        .collect();
    Ok(out)
}

pub(super) fn apply_verdicts(
    batch: RecordBatch,
    verdicts: Vec<Option<std::borrow::Cow<'static, str>>>,
    drops: &mut BTreeMap<String, u64>,
) -> Result<RecordBatch> {
    if verdicts.len() != batch.num_rows() {
        return Err(EngineError::Internal(format!(
            "a filter returned {} verdicts for {} rows",
            verdicts.len(),
            batch.num_rows()
        )));
    }
    let mut keep = Vec::with_capacity(verdicts.len());
    for v in verdicts {
        match v {
            None => keep.push(true),
            Some(reason) => {
                keep.push(false);
                // Reasons repeat: a lookup by &str, and a String only for one not seen yet.
                match drops.get_mut(reason.as_ref()) {
                    Some(n) => *n += 1,
                    None => _ = drops.insert(reason.into_owned(), 1),
                }
            }
        }
    }
    if keep.iter().all(|k| *k) {
        return Ok(batch);
    }
    Ok(filter_record_batch(&batch, &BooleanArray::from(keep))?)
}
