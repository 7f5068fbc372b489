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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, BooleanArray};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use futures::{StreamExt, TryStreamExt};
use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef;
use smelt_catalog::docindex::{put_run, split_index_path, RunBuilder};
use smelt_catalog::{
    completed_splits, shard_path, split_record_path, to_json_bytes, write_plan, DatasetStore, DocIndexRef, FieldDesc,
    GroupStats, RunPlan, ShardEntry, SplitInfo, SplitRecord, StageMetrics, FORMAT_VERSION,
};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::channel::{channel, Msg, Receiver, Sender};
use crate::compile::Pipeline;
use crate::error::{EngineError, Fault, Result};
use crate::stage::{
    str_at, BarrierContext, Committed, Processed, ReadOptions, Skips, SplitSpec, StageConfig, StageKind,
};

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

/// Runs `attempt` for split `split` until it succeeds, or until the stage it
/// fails in has used its `retries`; waits an exponential backoff with jitter
/// between attempts. Only a stage's external faults are retried ([`Fault`]:
/// not user mistakes or bugs, not catalog errors, not cancellation). A failed attempt leaves nothing
/// behind that a later attempt would read: shards are rewritten under the
/// same names and the split's completion record is written last.
async fn with_retries<T, F, Fut>(
    p: &Pipeline,
    run_id: &str,
    split: u32,
    notes: &std::sync::Mutex<Vec<RetryNote>>,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut failures = 0u32;
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(EngineError::Stage { stage, fault: Fault::External, message, at }) => {
                let policy = p
                    .order
                    .iter()
                    .map(|&n| &p.graph[n])
                    .find(|s| s.name == stage)
                    .map(|s| s.policy.clone())
                    .unwrap_or_default();
                if failures >= policy.retries {
                    let message = if failures > 0 {
                        format!("{message} (split {split}, attempt {} of {})", failures + 1, failures + 1)
                    } else {
                        message
                    };
                    return Err(EngineError::Stage { stage, fault: Fault::External, message, at });
                }
                failures += 1;
                let wait = crate::schedule::backoff(
                    policy.retry_backoff,
                    failures,
                    crate::schedule::jitter(&format!("{run_id}/{split}")),
                );
                tracing::warn!(
                    "split {split}: stage `{stage}` failed on attempt {failures} of {}: {message}; retrying in {:.1}s",
                    policy.retries + 1,
                    wait.as_secs_f64()
                );
                notes.lock().expect("retry notes").push(RetryNote {
                    split,
                    stage,
                    attempt: failures,
                    error: message,
                    backoff_s: wait.as_secs_f64(),
                });
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(e),
        }
    }
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

/// What the committed versions in `store` read, by source stage name (see [`Committed`]).
///
/// # Errors
/// Storage failures, or an undecodable manifest.
pub async fn committed_inputs(store: &DatasetStore) -> Result<HashMap<String, Committed>> {
    let mut out: HashMap<String, Committed> = HashMap::new();
    for v in smelt_catalog::commit::stored_versions(store).await? {
        let lineage = smelt_catalog::commit::load_manifest(store, v).await?.lineage;
        for input in lineage.inputs {
            out.entry(input.source).or_default().splits.insert(input.id);
        }
        for s in lineage.source_state {
            out.entry(s.source).or_default().states.push((s.split, s.state));
        }
    }
    Ok(out)
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
    let mut out = Vec::new();
    for n in p.sources() {
        let StageConfig::Source(cfg) = p.graph[n].config.clone() else { continue };
        let name = p.graph[n].name.clone();
        let seen = committed.get(&name).cloned().unwrap_or_default();
        let specs = tokio::task::spawn_blocking(move || cfg.splits_since(&seen))
            .await
            .map_err(|e| EngineError::Internal(format!("split listing panicked: {e}")))?
            .map_err(|e| e.in_stage(&name))?;
        out.extend(specs.into_iter().map(|s| (n, s)));
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

/// Rows per row group of a barrier's scratch spill (rows reaching a barrier).
const SPILL_ROW_GROUP_ROWS: usize = 16_384;
/// A spill's open row group is flushed past this many bytes (it is held in memory).
const SPILL_ROW_GROUP_BYTES: usize = 16 << 20;

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
    let committed = committed_inputs(store).await?;
    let splits = list_splits_since(p, &committed).await?;
    // Resuming a run: the splits its first attempt planned, even where a source
    // lists more now (a crawl or news list that grew since), so it finishes what it started.
    let splits = match store.get_json::<RunPlan>(&smelt_catalog::commit::plan_path(&opts.run_id)).await? {
        Some(old) if old.pipeline_hash == p.hash => planned_splits(p, &old).unwrap_or(splits),
        _ => splits,
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

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> Result<Self> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn io_error(path: &std::path::Path, e: std::io::Error) -> EngineError {
    EngineError::External(format!("{}: {e}", path.display()))
}

/// Where each phase of a run keeps its files:
///
/// ```text
/// <scratch>/<barrier>/spill/<split>.parquet    rows that reached the barrier, in order
/// <scratch>/<barrier>/observed/                 the observers' files
/// <scratch>/<barrier>/resolved/                 the global step's output (renamed into place)
/// <scratch>/<barrier>/resolved.json             its counters; present = resolved
/// <scratch>/phase-<k>/<split>.json              split done with phase k (its stage metrics)
/// ```
struct PhaseEnv {
    scratch: PathBuf,
    memory_budget: usize,
    parallelism: usize,
}

impl PhaseEnv {
    fn stage_dir(&self, p: &Pipeline, b: NodeIndex) -> PathBuf {
        self.scratch.join(&p.graph[b].name)
    }

    fn context(&self, p: &Pipeline, b: NodeIndex) -> BarrierContext {
        let dir = self.stage_dir(p, b);
        BarrierContext {
            observed_dir: dir.join("observed"),
            resolved_dir: dir.join("resolved"),
            memory_budget: self.memory_budget,
            parallelism: self.parallelism,
        }
    }

    fn spill_path(&self, p: &Pipeline, b: NodeIndex, split: u32) -> PathBuf {
        self.stage_dir(p, b).join("spill").join(format!("{split:06}.parquet"))
    }

    fn phase_marker(&self, phase: u32, split: u32) -> PathBuf {
        self.scratch.join(format!("phase-{phase}")).join(format!("{split:06}.json"))
    }

    fn resolved_marker(&self, p: &Pipeline, b: NodeIndex) -> PathBuf {
        self.stage_dir(p, b).join("resolved.json")
    }

    /// Where split `split` starts in `phase`: its source, or the spill of the barrier before.
    fn root(
        &self,
        p: &Pipeline,
        barriers: &[NodeIndex],
        phase: u32,
        split: u32,
        source: &(NodeIndex, SplitSpec),
    ) -> Result<Root> {
        if phase == 0 {
            return Ok(Root::Source(source.0, source.1.clone()));
        }
        let b = barriers[phase as usize - 1];
        Ok(Root::Spill { barrier: b, file: self.spill_path(p, b, split), ctx: self.context(p, b), split })
    }

    fn write_marker(&self, phase: u32, split: u32, stages: &[StageMetrics]) -> Result<()> {
        write_atomic(
            &self.phase_marker(phase, split),
            &serde_json::to_vec(stages).map_err(|e| EngineError::Internal(e.to_string()))?,
        )
    }

    /// The split's metrics over every phase: earlier phases' markers plus
    /// `last`; each barrier's global-step counters go to split 0's record.
    fn all_phase_metrics(
        &self,
        p: &Pipeline,
        barriers: &[NodeIndex],
        split: u32,
        last: Vec<StageMetrics>,
    ) -> Result<Vec<StageMetrics>> {
        let mut out = last;
        for (k, &b) in barriers.iter().enumerate() {
            let path = self.phase_marker(k as u32, split);
            let bytes = std::fs::read(&path).map_err(|e| io_error(&path, e))?;
            let earlier: Vec<StageMetrics> =
                serde_json::from_slice(&bytes).map_err(|e| io_error(&path, std::io::Error::other(e)))?;
            for (o, m) in out.iter_mut().zip(&earlier) {
                o.merge(m);
            }
            if split == 0 {
                let path = self.resolved_marker(p, b);
                let bytes = std::fs::read(&path).map_err(|e| io_error(&path, e))?;
                let counters: BTreeMap<String, u64> =
                    serde_json::from_slice(&bytes).map_err(|e| io_error(&path, std::io::Error::other(e)))?;
                if let Some(o) = out.iter_mut().find(|m| m.stage == p.graph[b].name) {
                    o.merge(&StageMetrics { counters, ..Default::default() });
                }
            }
        }
        Ok(out)
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().expect("a file in a directory");
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| io_error(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_error(path, e))
}

/// Runs barrier `b`'s global step over splits `0..splits` into a fresh
/// directory and renames it into place; ranks that race both compute the same
/// result and the first rename wins.
async fn resolve_barrier(p: &Pipeline, b: NodeIndex, env: &PhaseEnv, cpu: &Arc<Semaphore>, splits: u32) -> Result<()> {
    let StageConfig::Barrier(cfg) = p.graph[b].config.clone() else {
        return Err(EngineError::Internal("resolve of a stage that is not a barrier".into()));
    };
    let mut ctx = env.context(p, b);
    let fin = ctx.resolved_dir.clone();
    let tmp = env.stage_dir(p, b).join(format!("resolving-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| io_error(&tmp, e))?;
    std::fs::create_dir_all(&ctx.observed_dir).map_err(|e| io_error(&ctx.observed_dir, e))?;
    ctx.resolved_dir = tmp.clone();
    let name = p.graph[b].name.clone();
    let all: Vec<u32> = (0..splits).collect();
    // The global step may use every core: hold all permits.
    let permits = cpu.clone().acquire_many_owned(env.parallelism as u32).await.map_err(|_| EngineError::Cancelled)?;
    let counters = tokio::task::spawn_blocking(move || cfg.resolve(&ctx, &all))
        .await
        .map_err(|e| EngineError::Internal(format!("a barrier's global step panicked: {e}")))?
        .map_err(|e| e.in_stage(&name))?;
    drop(permits);
    if !fin.exists() {
        if let Err(e) = std::fs::rename(&tmp, &fin) {
            if !fin.exists() {
                return Err(io_error(&fin, e));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    write_atomic(
        &env.resolved_marker(p, b),
        &serde_json::to_vec(&counters).map_err(|e| EngineError::Internal(e.to_string()))?,
    )
}

/// Where a split's work starts in a phase.
enum Root {
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

enum SinkMode {
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
struct SplitOutput {
    shards: Vec<ShardEntry>,
    stats: Vec<GroupStats>,
    stages: Vec<StageMetrics>,
    collected: Vec<RecordBatch>,
    doc_index: Option<DocIndexRef>,
}

/// What a sink task hands back.
struct SinkOut {
    metrics: StageMetrics,
    shards: Vec<ShardEntry>,
    stats: Vec<GroupStats>,
    collected: Vec<RecordBatch>,
    doc_index: Option<DocIndexRef>,
}

enum TaskOut {
    Metrics(NodeIndex, StageMetrics),
    Sink(NodeIndex, Box<SinkOut>),
}

/// Whether rows of `schema` can be indexed for the document diff: a string
/// `id` and a 16-byte `content_hash`.
fn indexable(schema: &SchemaRef) -> bool {
    let id = schema.field_with_name("id").map(|f| f.data_type().clone());
    let hash = schema.field_with_name("content_hash").map(|f| f.data_type().clone());
    matches!(id, Ok(DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View))
        && matches!(hash, Ok(DataType::FixedSizeBinary(16)))
}

/// Adds the `(id, content_hash)` of every row of `batch` to `run`; rows with
/// a null id or hash are not indexed.
fn index_batch(run: &mut RunBuilder, batch: &RecordBatch) -> Result<()> {
    let (Some(ids), Some(hashes)) = (batch.column_by_name("id"), batch.column_by_name("content_hash")) else {
        return Ok(());
    };
    let Some(hashes) = hashes.as_fixed_size_binary_opt() else { return Ok(()) };
    let spill =
        |e: std::io::Error| EngineError::External(format!("cannot spill the document index to temporary space: {e}"));
    let mut push = |i: usize, id: Option<&str>| -> Result<()> {
        if let (Some(id), false) = (id, hashes.is_null(i)) {
            let hash: &[u8; 16] =
                hashes.value(i).try_into().map_err(|_| EngineError::Internal("content_hash is not 16 bytes".into()))?;
            run.push(id.as_bytes(), hash).map_err(spill)?;
        }
        Ok(())
    };
    match ids.data_type() {
        DataType::Utf8 => ids.as_string::<i32>().iter().enumerate().try_for_each(|(i, id)| push(i, id)),
        DataType::LargeUtf8 => ids.as_string::<i64>().iter().enumerate().try_for_each(|(i, id)| push(i, id)),
        DataType::Utf8View => ids.as_string_view().iter().enumerate().try_for_each(|(i, id)| push(i, id)),
        _ => Ok(()),
    }
}

/// Runs `f` on a blocking thread while holding one CPU permit.
async fn on_cpu<T: Send + 'static>(cpu: &Arc<Semaphore>, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let _permit = cpu.acquire().await.map_err(|_| EngineError::Cancelled)?;
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        if e.is_panic() {
            EngineError::Internal(format!("a stage panicked: {e}"))
        } else {
            EngineError::Cancelled
        }
    })
}

async fn broadcast(outputs: &[Sender], batch: &RecordBatch) -> bool {
    let mut any = false;
    for tx in outputs {
        any |= tx.send(batch.clone()).await;
    }
    any
}

/// Takes one message from each open input, in input order; `None` when all are closed.
async fn next_inputs(inputs: &mut [Receiver]) -> Option<Vec<Msg>> {
    let mut parts = Vec::with_capacity(inputs.len());
    for rx in inputs.iter_mut() {
        if let Some(m) = rx.recv().await {
            parts.push(m);
        }
    }
    (!parts.is_empty()).then_some(parts)
}

fn join_parts(schema: &SchemaRef, parts: &[Msg]) -> Result<RecordBatch> {
    if parts.len() == 1 {
        return Ok(parts[0].batch.clone());
    }
    Ok(concat_batches(schema, parts.iter().map(|m| &m.batch))?)
}

#[allow(clippy::too_many_arguments)]
async fn run_split(
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
        let outputs = senders.remove(&n).unwrap_or_default();
        let mut ins = receivers.remove(&n).unwrap_or_default();
        ins.sort_by_key(|(pos, _)| *pos);
        let inputs: Vec<Receiver> = ins.into_iter().map(|(_, rx)| rx).collect();
        let stage = p.graph[n].clone();
        let input_schema = p.inputs_of(n).first().map(|&i| p.graph[i].schema.clone());
        let (cpu, progress, sink_mode) = (cpu.clone(), progress.clone(), sink_mode.clone());
        let my_root = if n == root_node { root.take() } else { None };
        let batch_rows = p.batch_rows;
        let name = stage.name.clone();
        let (stage_timeout, timeout_name) = (stage.policy.timeout, stage.name.clone());
        let task = async move {
            let mut m = StageMetrics { stage: stage.name.clone(), ..Default::default() };
            let mut busy = Duration::ZERO;
            let result = match (&stage.config, my_root) {
                (StageConfig::Barrier(cfg), Some(Root::Spill { file, ctx, split, .. })) => {
                    let schema = input_schema.ok_or_else(|| EngineError::Internal("barrier without input".into()))?;
                    let cfg = cfg.clone();
                    let start = Instant::now();
                    let (mut reader, mut applier) = on_cpu(&cpu, move || -> Result<_> {
                        let f = std::fs::File::open(&file).map_err(|e| io_error(&file, e))?;
                        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                            .and_then(|b| b.with_batch_size(batch_rows).build())
                            .map_err(|e| {
                                EngineError::External(format!("{}: cannot read the spill: {e}", file.display()))
                            })?;
                        Ok((reader, cfg.applier(&schema, &ctx, split)?))
                    })
                    .await??;
                    busy += start.elapsed();
                    loop {
                        let start = Instant::now();
                        let (r, a, res) = on_cpu(&cpu, move || {
                            let res = match reader.next() {
                                None => Ok(None),
                                Some(Err(e)) => Err(EngineError::External(format!("cannot read the spill: {e}"))),
                                Some(Ok(b)) => applier.process(b).map(Some),
                            };
                            (reader, applier, res)
                        })
                        .await?;
                        busy += start.elapsed();
                        (reader, applier) = (r, a);
                        let Some(processed) = res? else { break };
                        let out = match processed {
                            Processed::Batch(b) => b,
                            Processed::Filtered { batch, verdicts } => apply_verdicts(batch, verdicts, &mut m.drops)?,
                        };
                        m.rows_out += out.num_rows() as u64;
                        if !broadcast(&outputs, &out).await {
                            break;
                        }
                    }
                    m.counters = applier.take_counters();
                    m.samples = applier.take_samples();
                    Ok(TaskOut::Metrics(n, m))
                }
                (StageConfig::Barrier(cfg), None) => {
                    let SinkMode::Barrier { ctx, split, spill } = &*sink_mode else {
                        return Err(EngineError::Internal("a barrier ends a phase that has another sink".into()));
                    };
                    let mut inputs = inputs;
                    let schema = input_schema.ok_or_else(|| EngineError::Internal("barrier without input".into()))?;
                    std::fs::create_dir_all(&ctx.observed_dir).map_err(|e| io_error(&ctx.observed_dir, e))?;
                    let dir = spill.parent().expect("spill in a directory");
                    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
                    let tmp = spill.with_extension(format!("tmp-{}", std::process::id()));
                    let f = std::fs::File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
                    // Small row groups, also cut by bytes below: the writer holds its open
                    // row group in memory, so a split's spill must not grow with the split.
                    let props = parquet::file::properties::WriterProperties::builder()
                        .set_compression(parquet::basic::Compression::ZSTD(
                            parquet::basic::ZstdLevel::try_new(1).expect("level 1"),
                        ))
                        .set_max_row_group_row_count(Some(SPILL_ROW_GROUP_ROWS))
                        .build();
                    let writer = parquet::arrow::ArrowWriter::try_new(f, schema.clone(), Some(props))
                        .map_err(|e| EngineError::External(format!("{}: {e}", tmp.display())))?;
                    let observer = cfg.observer(&schema, ctx, *split)?;
                    let mut state = Some((writer, observer));
                    while let Some(parts) = next_inputs(&mut inputs).await {
                        let batch = join_parts(&schema, &parts)?;
                        drop(parts);
                        m.rows_in += batch.num_rows() as u64;
                        let (mut w, mut o) = state.take().expect("state");
                        let start = Instant::now();
                        let (w, o, res) = on_cpu(&cpu, move || {
                            let res = w
                                .write(&batch)
                                .and_then(
                                    |()| if w.in_progress_size() > SPILL_ROW_GROUP_BYTES { w.flush() } else { Ok(()) },
                                )
                                .map_err(|e| EngineError::External(format!("cannot spill rows to scratch: {e}")))
                                .and_then(|()| o.observe(&batch));
                            (w, o, res)
                        })
                        .await?;
                        busy += start.elapsed();
                        res?;
                        state = Some((w, o));
                    }
                    let (w, mut o) = state.take().expect("state");
                    let start = Instant::now();
                    let (tmp2, spill2) = (tmp.clone(), spill.clone());
                    on_cpu(&cpu, move || -> Result<()> {
                        o.finish()?;
                        w.close().map_err(|e| EngineError::External(format!("{}: {e}", tmp2.display())))?;
                        std::fs::rename(&tmp2, &spill2).map_err(|e| io_error(&spill2, e))
                    })
                    .await??;
                    busy += start.elapsed();
                    Ok(TaskOut::Metrics(n, m))
                }
                (StageConfig::Barrier(_), Some(Root::Source(..))) | (_, Some(Root::Spill { .. })) => {
                    Err(EngineError::Internal("a split's root does not match its stage".into()))
                }
                (StageConfig::Source(cfg), root) => {
                    let Some(Root::Source(_, spec)) = root else {
                        return Err(EngineError::Internal("a source that is not its split's root".into()));
                    };
                    let cfg = cfg.clone();
                    let opts = ReadOptions { batch_rows };
                    let mut reader = Some(on_cpu(&cpu, move || cfg.open(&spec, &opts)).await??);
                    let mut skips = Some(Skips::default());
                    let mut left = limit.unwrap_or(usize::MAX);
                    let mut last_bytes = 0;
                    while left > 0 {
                        let (mut r, mut s) = (reader.take().expect("reader"), skips.take().expect("skips"));
                        let t = Instant::now();
                        let (r, s, res) = on_cpu(&cpu, move || {
                            let res = r.next_batch(&mut s);
                            (r, s, res)
                        })
                        .await?;
                        busy += t.elapsed();
                        let bytes = r.bytes_read();
                        progress.bytes.fetch_add(bytes.saturating_sub(last_bytes), Ordering::Relaxed);
                        last_bytes = bytes;
                        reader = Some(r);
                        skips = Some(s);
                        let Some(mut batch) = res? else { break };
                        if batch.num_rows() > left {
                            batch = batch.slice(0, left);
                        }
                        left -= batch.num_rows();
                        m.rows_out += batch.num_rows() as u64;
                        progress.records.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                        if !broadcast(&outputs, &batch).await {
                            break;
                        }
                    }
                    m.skips = skips.map(|s| s.counts().clone()).unwrap_or_default();
                    if left > 0 {
                        m.state = reader.and_then(|r| r.state());
                    }
                    Ok(TaskOut::Metrics(n, m))
                }
                (StageConfig::Transform(cfg), _) => {
                    let mut inputs = inputs;
                    let schema = input_schema.ok_or_else(|| EngineError::Internal("transform without input".into()))?;
                    let mut t = Some(cfg.build(&schema)?);
                    while let Some(parts) = next_inputs(&mut inputs).await {
                        let batch = join_parts(&schema, &parts)?;
                        m.rows_in += batch.num_rows() as u64;
                        let mut tr = t.take().expect("transform");
                        let start = Instant::now();
                        let (tr, res) = on_cpu(&cpu, move || {
                            let r = tr.process(batch);
                            (tr, r)
                        })
                        .await?;
                        busy += start.elapsed();
                        t = Some(tr);
                        drop(parts);
                        let out = match res? {
                            Processed::Batch(b) => b,
                            Processed::Filtered { batch, verdicts } => apply_verdicts(batch, verdicts, &mut m.drops)?,
                        };
                        m.rows_out += out.num_rows() as u64;
                        if !broadcast(&outputs, &out).await {
                            break;
                        }
                    }
                    if let Some(t) = t.as_mut() {
                        m.counters = t.take_counters();
                        m.samples = t.take_samples();
                    }
                    Ok(TaskOut::Metrics(n, m))
                }
                (StageConfig::Sink(cfg), _) => {
                    let mut inputs = inputs;
                    let schema = input_schema.ok_or_else(|| EngineError::Internal("sink without input".into()))?;
                    let mut writer = Some(cfg.writer(&schema)?);
                    let store_mode = matches!(*sink_mode, SinkMode::Store { .. });
                    let mut doc_run = (store_mode && indexable(&schema)).then(RunBuilder::new);
                    let mut finished_run = None;
                    let mut groups: BTreeMap<(String, String, String), GroupStats> = BTreeMap::new();
                    let mut shards = Vec::new();
                    let mut collected = Vec::new();
                    let mut seq = 0u32;
                    let mut finished = false;
                    while !finished {
                        let parts = next_inputs(&mut inputs).await;
                        let batch = match &parts {
                            Some(parts) => Some(join_parts(&schema, parts)?),
                            None => None,
                        };
                        finished = batch.is_none();
                        if let Some(b) = &batch {
                            m.rows_in += b.num_rows() as u64;
                            m.rows_out += b.num_rows() as u64;
                            if matches!(*sink_mode, SinkMode::Collect) {
                                collected.push(b.clone());
                                continue;
                            }
                        } else if matches!(*sink_mode, SinkMode::Collect) {
                            break;
                        }
                        let mut w = writer.take().expect("writer");
                        let mut run = doc_run.take();
                        let start = Instant::now();
                        let (w, run, res) = on_cpu(&cpu, move || {
                            let res = match &batch {
                                Some(b) => w.write(b),
                                None => w.finish(),
                            };
                            let mut g = BTreeMap::new();
                            if let Some(b) = &batch {
                                accumulate_stats(b, &mut g);
                            }
                            // Index the rows; at the end, sort them into the split's run.
                            let res = res.and_then(|s| {
                                let finished = match (&mut run, &batch) {
                                    (Some(r), Some(b)) => index_batch(r, b).map(|()| None)?,
                                    (Some(_), None) => Some(run.take().expect("run").finish().map_err(|e| {
                                        EngineError::External(format!(
                                            "cannot write the document index to temporary space: {e}"
                                        ))
                                    })?),
                                    (None, _) => None,
                                };
                                Ok((s, g, finished))
                            });
                            (w, run, res)
                        })
                        .await?;
                        busy += start.elapsed();
                        writer = Some(w);
                        doc_run = run;
                        let (encoded, g, finished) = res?;
                        if finished.is_some() {
                            finished_run = finished;
                        }
                        for (k, v) in g {
                            let e = groups.entry(k).or_insert_with(|| GroupStats {
                                docs: 0,
                                tokens: 0,
                                text_bytes: 0,
                                ..v.clone()
                            });
                            e.docs += v.docs;
                            e.tokens += v.tokens;
                            e.text_bytes += v.text_bytes;
                        }
                        drop(parts);
                        if let SinkMode::Store { store, run_id, split } = &*sink_mode {
                            for shard in encoded {
                                let path = shard_path(run_id, *split, seq);
                                seq += 1;
                                let checksum = format!("xxh3-128:{:032x}", xxhash_rust::xxh3::xxh3_128(&shard.bytes));
                                let bytes = shard.bytes.len() as u64;
                                store.put(&path, shard.bytes).await?;
                                progress.rows_written.fetch_add(shard.rows, Ordering::Relaxed);
                                shards.push(ShardEntry { path, split: *split, rows: shard.rows, bytes, checksum });
                            }
                        }
                    }
                    // The split's index is stored with its shards, before the completion record.
                    let doc_index = match (&*sink_mode, finished_run) {
                        (SinkMode::Store { store, run_id, split }, Some(run)) => {
                            Some(put_run(store, &split_index_path(run_id, *split), run).await?)
                        }
                        _ => None,
                    };
                    let stats = groups.into_values().collect();
                    Ok(TaskOut::Sink(n, Box::new(SinkOut { metrics: m, shards, stats, collected, doc_index })))
                }
            };
            result
                .map(|mut out| {
                    let ms = busy.as_millis() as u64;
                    match &mut out {
                        TaskOut::Metrics(_, m) => m.busy_ms = ms,
                        TaskOut::Sink(_, s) => s.metrics.busy_ms = ms,
                    }
                    out
                })
                .map_err(|e: EngineError| e.in_stage(&name))
        };
        // A stage's `timeout` bounds the time its task spends on this split.
        tasks.spawn(async move {
            // Errors a stage returns early (`?` while building) are its errors too.
            match stage_timeout {
                None => task.await.map_err(|e| e.in_stage(&timeout_name)),
                Some(t) => tokio::time::timeout(t, task)
                    .await
                    .map(|r| r.map_err(|e| e.in_stage(&timeout_name)))
                    .unwrap_or_else(|_| {
                        Err(EngineError::Stage {
                            stage: timeout_name,
                            fault: Fault::External,
                            at: None,
                            message: format!(
                                "timed out: took longer than its timeout of {:.1}s on this split",
                                t.as_secs_f64()
                            ),
                        })
                    }),
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

fn apply_verdicts(
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
                *drops.entry(reason.into_owned()).or_default() += 1;
            }
        }
    }
    if keep.iter().all(|k| *k) {
        return Ok(batch);
    }
    Ok(filter_record_batch(&batch, &BooleanArray::from(keep))?)
}

/// Host of a URL, lowercased, without port or `www.`; `-` when there is none.
pub fn domain_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = host.split(':').next().unwrap_or("");
    let host = host.strip_prefix("www.").unwrap_or(host);
    if host.is_empty() {
        "-"
    } else {
        host
    }
}

fn accumulate_stats(batch: &RecordBatch, groups: &mut BTreeMap<(String, String, String), GroupStats>) {
    let string_at = |name: &str, i: usize| -> Option<String> {
        batch.column_by_name(name).and_then(|c| str_at(c, i)).map(str::to_string)
    };
    let tokens = batch.column_by_name("n_tokens").and_then(|c| arrow::compute::cast(c, &DataType::UInt64).ok());
    let text = batch.column_by_name("text");
    for i in 0..batch.num_rows() {
        let lang = string_at("lang", i).unwrap_or_else(|| "und".into());
        let source = string_at("source", i).unwrap_or_else(|| "-".into());
        let domain = string_at("url", i).map_or_else(|| "-".to_string(), |u| domain_of(&u).to_ascii_lowercase());
        let g = groups.entry((lang.clone(), source.clone(), domain.clone())).or_insert_with(|| GroupStats {
            lang,
            source,
            domain,
            ..Default::default()
        });
        g.docs += 1;
        if let Some(t) = &tokens {
            let t = t.as_primitive::<arrow::datatypes::UInt64Type>();
            if !t.is_null(i) {
                g.tokens += t.value(i);
            }
        }
        if let Some(text) = text {
            g.text_bytes += str_at(text, i).map_or(0, |t| t.len() as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        assert_eq!(domain_of("https://www.Example.org:8080/a?b"), "Example.org");
        assert_eq!(domain_of("http://user@an.wikipedia.org/wiki/x"), "an.wikipedia.org");
        assert_eq!(domain_of(""), "-");
    }
}
