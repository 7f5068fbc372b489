//! The streaming executor.
//!
//! ```text
//!            plan: list splits, write runs/<id>/plan.json (every rank agrees)
//!                                   │  rank R takes splits i with i % W == R, minus completed ones
//!                                   ▼
//!  per split (up to `parallelism` at once), one task per stage reachable from its source:
//!    SplitReader ──byte-bounded channel──► Transform ──► ... ──► ShardWriter ──► object store
//!  a stage with several inputs takes one batch from each, in input order (lockstep),
//!  so its output does not depend on timing; CPU work runs on blocking threads,
//!  at most `parallelism` at a time.
//!                                   │  all shards stored, then the split's sorted (id, content_hash)
//!                                   ▼  run at runs/<id>/index/<i>.idx (the document diff's input)
//!            runs/<id>/splits/<i>.json (completion record: shards, stats, metrics, index)
//! ```
//! Shards are named by (split, sequence), so their bytes depend only on the
//! input and the pipeline: any number of threads or ranks gives the same files.
//! Dropping the future returned by [`run`] cancels every task of the run.
//!
//! Files: this one plans a rank's splits and runs the phases; `split.rs` wires
//! one split's stage tasks; one runner per stage kind (`source.rs`,
//! `transform.rs` with a barrier's apply step, `observe.rs` for a barrier's
//! observe step and spill, `sink.rs`); `cpu.rs` the one way stage work runs on
//! a blocking thread; `facts.rs` the version's statistics and document index;
//! `phase.rs` the scratch layout and a barrier's global step; `retry.rs` split retries.

mod cpu;
mod facts;
mod observe;
mod phase;
mod retry;
mod sink;
mod source;
mod split;
mod transform;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use futures::{StreamExt, TryStreamExt};
use petgraph::graph::NodeIndex;
use smelt_catalog::{
    completed_splits, split_record_path, to_json_bytes, write_plan, DatasetStore, FieldDesc, RunPlan, SplitInfo,
    SplitRecord, StageMetrics, UpstreamRead, FORMAT_VERSION,
};
use tokio::sync::Semaphore;

pub use facts::{domain_of, group_stats};
use phase::{resolve_barrier, PhaseEnv, TempDir};
use retry::with_retries;
use split::{run_split, Root, SinkMode};

use crate::compile::Pipeline;
use crate::error::{EngineError, Result};
use crate::stage::{Committed, LatestRead, SourceConfig, SplitSpec, StageConfig};

/// Live counters for a progress bar.
#[derive(Debug, Default)]
pub struct Progress {
    /// Splits this process will run.
    pub splits_total: AtomicU64,
    /// Splits finished.
    pub splits_done: AtomicU64,
    /// Records read by sources.
    pub records: AtomicU64,
    /// Input bytes read.
    pub bytes: AtomicU64,
    /// Input bytes of the splits this process runs, when known.
    pub bytes_total: AtomicU64,
    /// Rows written.
    pub rows_written: AtomicU64,
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Run id (resume by reusing it).
    pub run_id: String,
    /// This process's rank.
    pub rank: u32,
    /// Number of ranks.
    pub world_size: u32,
    /// Splits run at once, and CPU-bound stage calls at once.
    pub parallelism: usize,
    /// smelt's version, for lineage.
    pub smelt_version: String,
    /// Live counters.
    pub progress: Arc<Progress>,
    /// This run's scratch directory (barrier stages' spills and state); every
    /// rank of the run must see the same one.
    pub scratch_dir: PathBuf,
    /// The schedule interval the run covers (`smelt run --interval`), recorded
    /// in the plan and the version's lineage.
    pub interval: Option<smelt_catalog::RunInterval>,
}

/// A failed attempt of a split that the engine ran again (the failing
/// stage's `retries`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RetryNote {
    /// The split.
    pub split: u32,
    /// The stage that failed.
    pub stage: String,
    /// Which attempt failed (from 1).
    pub attempt: u32,
    /// Why.
    pub error: String,
    /// The wait before the next attempt, in seconds.
    pub backoff_s: f64,
}

/// What a run did in this process.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The run's plan.
    pub plan: RunPlan,
    /// Splits this process ran now.
    pub executed: Vec<u32>,
    /// Splits of this rank skipped because an earlier attempt completed them.
    pub resumed: Vec<u32>,
    /// Per-stage metrics of the splits run now, in stage order.
    pub stages: Vec<StageMetrics>,
    /// Rows written now.
    pub rows_written: u64,
    /// Shards written now.
    pub shards_written: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Set when this rank finished its share of a barrier's observe phase
    /// but other ranks have not: what to do next.
    pub waiting: Option<String>,
    /// Failed split attempts that were run again, in the order they failed.
    pub retries: Vec<RetryNote>,
}

/// The splits of every source, in plan order (sources in pipeline order, each source's splits in its order).
///
/// # Errors
/// A source cannot list its inputs (missing files, bad globs).
pub async fn list_splits(p: &Pipeline) -> Result<Vec<(NodeIndex, SplitSpec)>> {
    list_splits_since(p, &HashMap::new()).await
}

/// The splits of an existing plan, mapped to the pipeline's source nodes;
/// `None` if a source it names is not in the pipeline.
fn planned_splits(p: &Pipeline, plan: &RunPlan) -> Option<Vec<(NodeIndex, SplitSpec)>> {
    plan.splits
        .iter()
        .map(|s| {
            let n = p.sources().into_iter().find(|&n| p.graph[n].name == s.source)?;
            Some((n, SplitSpec { id: s.id.clone(), bytes: s.bytes }))
        })
        .collect()
}

/// What the committed versions in `store` read, by source stage name (see
/// [`Committed`]); `pipeline_hash` is the running pipeline's, whose latest
/// version an incremental source may append to.
///
/// # Errors
/// Storage failures, or an undecodable manifest.
pub async fn committed_inputs(store: &DatasetStore, pipeline_hash: &str) -> Result<HashMap<String, Committed>> {
    let mut out: HashMap<String, Committed> = HashMap::new();
    let versions = smelt_catalog::commit::stored_versions(store).await?;
    for &v in &versions {
        let lineage = smelt_catalog::commit::load_manifest(store, v).await?.lineage;
        if Some(&v) == versions.last() && lineage.pipeline_hash == pipeline_hash {
            for u in &lineage.upstream {
                out.entry(u.source.clone()).or_default().latest = Some(LatestRead { version: v, upstream: u.clone() });
            }
        }
        for input in lineage.inputs {
            out.entry(input.source).or_default().splits.insert(input.id);
        }
        for s in lineage.source_state {
            out.entry(s.source).or_default().states.push((s.split, s.state));
        }
    }
    Ok(out)
}

/// What each source reads of other datasets' versions (see [`SourceConfig::upstream`]), in pipeline order.
///
/// # Errors
/// A source cannot open the version it reads.
pub async fn list_upstream(p: &Pipeline, committed: &HashMap<String, Committed>) -> Result<Vec<UpstreamRead>> {
    let reads = per_source(p, committed, "upstream listing", |cfg, seen| cfg.upstream(seen)).await?;
    Ok(reads.into_iter().filter_map(|(n, r)| Some(UpstreamRead { source: p.graph[n].name.clone(), ..r? })).collect())
}

/// [`list_splits`] for a dataset whose committed versions read `committed`:
/// incremental sources leave out what those versions already hold.
///
/// # Errors
/// As [`list_splits`].
pub async fn list_splits_since(
    p: &Pipeline,
    committed: &HashMap<String, Committed>,
) -> Result<Vec<(NodeIndex, SplitSpec)>> {
    let specs = per_source(p, committed, "split listing", |cfg, seen| cfg.splits_since(seen)).await?;
    Ok(specs.into_iter().flat_map(|(n, specs)| specs.into_iter().map(move |s| (n, s))).collect())
}

/// `f` of every source with what the committed versions read from it, off
/// the I/O threads (sources list files and read manifests), in pipeline order.
async fn per_source<T: Send + 'static>(
    p: &Pipeline,
    committed: &HashMap<String, Committed>,
    what: &str,
    f: fn(&dyn SourceConfig, &Committed) -> Result<T>,
) -> Result<Vec<(NodeIndex, T)>> {
    let mut out = Vec::new();
    for n in p.sources() {
        let StageConfig::Source(cfg) = p.graph[n].config.clone() else { continue };
        let name = p.graph[n].name.clone();
        let seen = committed.get(&name).cloned().unwrap_or_default();
        let got = tokio::task::spawn_blocking(move || f(cfg.as_ref(), &seen))
            .await
            .map_err(|e| EngineError::Internal(format!("{what} panicked: {e}")))?
            .map_err(|e| e.in_stage(&name))?;
        out.push((n, got));
    }
    Ok(out)
}

/// The schema of a pipeline's output as the catalog records it.
pub fn schema_desc(schema: &SchemaRef) -> Vec<FieldDesc> {
    schema
        .fields()
        .iter()
        .map(|f| FieldDesc { name: f.name().clone(), data_type: f.data_type().to_string(), nullable: f.is_nullable() })
        .collect()
}

/// Runs this rank's share of a pipeline, writing shards and completion
/// records to `store`. Does not commit.
///
/// # Errors
/// Listing inputs, a stage failure, or storage failure. Splits completed before
/// the error keep their completion records, so a rerun with the same run id resumes.
pub async fn run(p: &Pipeline, store: &DatasetStore, opts: &RunOptions) -> Result<RunReport> {
    run_rank(p, store, opts).await.map_err(|e| e.located(p))
}

async fn run_rank(p: &Pipeline, store: &DatasetStore, opts: &RunOptions) -> Result<RunReport> {
    let started = Instant::now();
    if opts.world_size == 0 || opts.rank >= opts.world_size {
        return Err(EngineError::User(format!(
            "--rank {} is outside --world-size {} (ranks are 0..{})",
            opts.rank, opts.world_size, opts.world_size
        )));
    }
    // Resuming a run: the splits (and upstream versions) its first attempt planned, even where a source
    // lists more now (a crawl or news list that grew since), so it finishes what it started.
    let planned = store
        .get_json::<RunPlan>(&smelt_catalog::commit::plan_path(&opts.run_id))
        .await?
        .filter(|old| old.pipeline_hash == p.hash)
        .and_then(|old| Some((planned_splits(p, &old)?, old.upstream)));
    let (splits, upstream) = match planned {
        Some(planned) => planned,
        None => {
            let committed = committed_inputs(store, &p.hash).await?;
            (list_splits_since(p, &committed).await?, list_upstream(p, &committed).await?)
        }
    };
    let infos: Vec<SplitInfo> = splits
        .iter()
        .enumerate()
        .map(|(i, (n, s))| SplitInfo {
            index: i as u32,
            source: p.graph[*n].name.clone(),
            id: s.id.clone(),
            bytes: s.bytes,
        })
        .collect();
    let plan = RunPlan {
        format: FORMAT_VERSION,
        run_id: opts.run_id.clone(),
        dataset: p.dataset.clone(),
        root_url: store.url().to_string(),
        pipeline_path: p.file.clone(),
        pipeline_hash: p.hash.clone(),
        resolved_config: p.resolved_config(),
        smelt_version: opts.smelt_version.clone(),
        schema: schema_desc(&p.graph[p.sink()].schema),
        splits: infos,
        interval: opts.interval.clone(),
        upstream,
    };
    write_plan(store, &plan).await?;
    let notes = std::sync::Mutex::new(Vec::new());
    let notes = &notes;
    let done: HashSet<u32> = completed_splits(store, &opts.run_id).await?.into_iter().collect();
    let (mut mine, mut resumed) = (Vec::new(), Vec::new());
    for i in (0..splits.len() as u32).filter(|i| i % opts.world_size == opts.rank) {
        if done.contains(&i) {
            resumed.push(i);
        } else {
            mine.push(i);
        }
    }
    let progress = &opts.progress;
    progress.splits_total.store(mine.len() as u64, Ordering::Relaxed);
    progress.bytes_total.store(mine.iter().filter_map(|&i| splits[i as usize].1.bytes).sum(), Ordering::Relaxed);

    let parallelism = opts.parallelism.max(1);
    let cpu = Arc::new(Semaphore::new(parallelism));
    let barriers = p.barriers();
    let env = PhaseEnv { scratch: opts.scratch_dir.clone(), memory_budget: p.memory_budget, parallelism };
    let splits = &splits;

    // Observe phases of the barriers, in order; each ends with its global step.
    for (k, &b) in barriers.iter().enumerate() {
        let k = k as u32;
        let todo: Vec<u32> = mine.iter().copied().filter(|&i| !env.phase_marker(k, i).exists()).collect();
        futures::stream::iter(todo)
            .map(|i| {
                let cpu = cpu.clone();
                let (env, barriers) = (&env, &barriers);
                async move {
                    let out = with_retries(p, &opts.run_id, i, notes, || {
                        let cpu = cpu.clone();
                        async move {
                            let root = env.root(p, barriers, k, i, &splits[i as usize])?;
                            run_split(
                                p,
                                root,
                                k,
                                cpu,
                                progress.clone(),
                                None,
                                SinkMode::Barrier { ctx: env.context(p, b), split: i, spill: env.spill_path(p, b, i) },
                            )
                            .await
                        }
                    })
                    .await?;
                    env.write_marker(k, i, &out.stages)?;
                    Ok::<_, EngineError>(())
                }
            })
            .buffer_unordered(parallelism)
            .try_collect::<Vec<()>>()
            .await?;
        if !env.resolved_marker(p, b).exists() {
            let missing: Vec<u32> = (0..splits.len() as u32).filter(|&i| !env.phase_marker(k, i).exists()).collect();
            if !missing.is_empty() {
                return Ok(RunReport {
                    executed: Vec::new(),
                    resumed,
                    stages: Vec::new(),
                    rows_written: 0,
                    shards_written: 0,
                    elapsed: started.elapsed(),
                    retries: notes.lock().expect("retry notes").clone(),
                    waiting: Some(format!(
                        "rank {} finished its splits before barrier `{}`; {} split(s) of other ranks are not done ({}); \
                         rerun every rank with the same --run-id once they are, to continue past the barrier",
                        opts.rank,
                        p.graph[b].name,
                        missing.len(),
                        missing.iter().take(8).map(u32::to_string).collect::<Vec<_>>().join(", ")
                    )),
                    plan,
                });
            }
            resolve_barrier(p, b, &env, &cpu, splits.len() as u32).await?;
        }
    }

    let last = barriers.len() as u32;
    let records: Vec<SplitRecord> = futures::stream::iter(mine.iter().copied())
        .map(|i| {
            let info = plan.splits[i as usize].clone();
            let cpu = cpu.clone();
            let (env, barriers) = (&env, &barriers);
            async move {
                let out = with_retries(p, &opts.run_id, i, notes, || {
                    let cpu = cpu.clone();
                    async move {
                        let sink = SinkMode::Store { store: store.clone(), run_id: opts.run_id.clone(), split: i };
                        let root = env.root(p, barriers, last, i, &splits[i as usize])?;
                        run_split(p, root, last, cpu, progress.clone(), None, sink).await
                    }
                })
                .await?;
                let stages = env.all_phase_metrics(p, barriers, i, out.stages)?;
                let record = SplitRecord {
                    format: FORMAT_VERSION,
                    split: info,
                    shards: out.shards,
                    stats: out.stats,
                    stages,
                    doc_index: out.doc_index,
                };
                store.put(&split_record_path(&opts.run_id, i), to_json_bytes(&record)).await?;
                progress.splits_done.fetch_add(1, Ordering::Relaxed);
                Ok::<_, EngineError>(record)
            }
        })
        .buffer_unordered(parallelism)
        .try_collect()
        .await?;

    let mut stages: Vec<StageMetrics> = Vec::new();
    for m in records.iter().flat_map(|r| &r.stages) {
        match stages.iter_mut().find(|s| s.stage == m.stage) {
            Some(s) => s.merge(m),
            None => stages.push(m.clone()),
        }
    }
    for s in &mut stages {
        s.state = None;
    }
    let mut executed = mine;
    executed.sort_unstable();
    let retries = notes.lock().expect("retry notes").clone();
    Ok(RunReport {
        executed,
        resumed,
        stages,
        rows_written: records.iter().flat_map(|r| &r.shards).map(|s| s.rows).sum(),
        shards_written: records.iter().map(|r| r.shards.len() as u64).sum(),
        elapsed: started.elapsed(),
        waiting: None,
        retries,
        plan,
    })
}

/// What a dry run produced.
#[derive(Debug, Clone)]
pub struct SampleReport {
    /// Rows that would be written, in order.
    pub batches: Vec<RecordBatch>,
    /// Per-stage metrics.
    pub stages: Vec<StageMetrics>,
    /// Splits read.
    pub splits_read: usize,
}

/// Runs the pipeline on the first `limit` source records (splits in plan order),
/// writing nothing. Barrier stages run over the sampled rows only, in a
/// temporary scratch directory.
///
/// # Errors
/// As [`run`].
pub async fn sample(p: &Pipeline, limit: usize, parallelism: usize) -> Result<SampleReport> {
    sample_rows(p, limit, parallelism).await.map_err(|e| e.located(p))
}

async fn sample_rows(p: &Pipeline, limit: usize, parallelism: usize) -> Result<SampleReport> {
    let splits = list_splits(p).await?;
    let cpu = Arc::new(Semaphore::new(parallelism.max(1)));
    let progress = Arc::new(Progress::default());
    let barriers = p.barriers();
    let scratch = TempDir::new("smelt-sample")?;
    let env = PhaseEnv { scratch: scratch.0.clone(), memory_budget: p.memory_budget, parallelism: parallelism.max(1) };
    let mut report = SampleReport { batches: Vec::new(), stages: Vec::new(), splits_read: 0 };
    let merge = |report: &mut SampleReport, stages: Vec<StageMetrics>| {
        for m in stages {
            match report.stages.iter_mut().find(|s| s.stage == m.stage) {
                Some(s) => s.merge(&m),
                None => report.stages.push(m),
            }
        }
    };
    let mut left = limit;
    for (i, (node, spec)) in splits.iter().enumerate() {
        if left == 0 {
            break;
        }
        let before = progress.records.load(Ordering::Relaxed);
        let sink = match barriers.first() {
            Some(&b) => {
                SinkMode::Barrier { ctx: env.context(p, b), split: i as u32, spill: env.spill_path(p, b, i as u32) }
            }
            None => SinkMode::Collect,
        };
        let out =
            run_split(p, Root::Source(*node, spec.clone()), 0, cpu.clone(), progress.clone(), Some(left), sink).await?;
        left = left.saturating_sub((progress.records.load(Ordering::Relaxed) - before) as usize);
        report.splits_read += 1;
        report.batches.extend(out.collected);
        merge(&mut report, out.stages);
    }
    for (k, &b) in barriers.iter().enumerate() {
        resolve_barrier(p, b, &env, &cpu, report.splits_read as u32).await?;
        let phase = k as u32 + 1;
        for i in 0..report.splits_read as u32 {
            let sink = match barriers.get(k + 1) {
                Some(&next) => {
                    SinkMode::Barrier { ctx: env.context(p, next), split: i, spill: env.spill_path(p, next, i) }
                }
                None => SinkMode::Collect,
            };
            let root = env.root(p, &barriers, phase, i, &splits[i as usize])?;
            let out = run_split(p, root, phase, cpu.clone(), progress.clone(), None, sink).await?;
            report.batches.extend(out.collected);
            merge(&mut report, out.stages);
        }
    }
    Ok(report)
}
