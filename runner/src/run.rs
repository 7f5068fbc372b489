//! Run a compiled pipeline in a workspace, commit it, and run its `train:` hook.
//!
//! ```text
//! RunRequest ──start──► Run (run id, pointer written, dataset store, resumed interval)
//!            ──execute(cancel)──► smelt_engine::run ──► RunOutcome (report)
//!            ──commit──► single process, not waiting for other ranks: commit_run ─► scratch removed ─► train hook
//! commit(run id) ── pointer or pipeline ─► commit_run ─► scratch removed ─► train hook (newly committed only) ─► CommitOutcome
//! ```
//! Commits run the bias audit's gates (`smelt_query::audit::AuditGates`) as
//! a commit hook. Nothing here prints: the caller reports progress and outcomes.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use smelt_catalog::{commit_run, DatasetStore, RunInterval};
use smelt_connectors::sink::compact::MergeSmallShards;
use smelt_connectors::sink::incremental::DropRemovedRows;
use smelt_engine::{EngineError, Pipeline, Progress, RunOptions, RunReport};
use smelt_query::audit::AuditGates;

use crate::train_hook::{run_train, TrainOutcome};
use crate::workspace::{new_run_id, remove_scratch, valid_run_id, RunPointer, Workspace};

/// What to run: the command line's `smelt run` arguments, resolved.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// The pipeline file.
    pub pipeline: PathBuf,
    /// Run id; reusing one resumes that run. `None`: a new id.
    pub run_id: Option<String>,
    /// This process's rank; `None`: a single process that also commits.
    pub rank: Option<u32>,
    /// Number of ranks (with `rank`).
    pub world_size: Option<u32>,
    /// Splits at once; default the pipeline's `parallelism`, else the number of cores.
    pub parallelism: Option<usize>,
    /// Dataset root overriding the pipeline's `output:`.
    pub output: Option<String>,
    /// The schedule interval the run covers.
    pub interval: Option<RunInterval>,
}

impl RunRequest {
    /// Whether this process runs every split and commits (no `rank`).
    pub fn single(&self) -> bool {
        self.rank.is_none()
    }
}

/// A run that has started: its id and pointer are written, its dataset store is open.
#[derive(Debug)]
pub struct Run {
    /// The run id.
    pub run_id: String,
    /// The dataset's storage.
    pub store: DatasetStore,
    /// What the engine is given.
    pub options: RunOptions,
    /// The interval the run covers (a resumed run keeps its first attempt's).
    pub interval: Option<RunInterval>,
    single: bool,
}

/// What a run did.
#[derive(Debug)]
pub struct RunOutcome {
    /// The run id.
    pub run_id: String,
    /// The engine's report of this rank's share.
    pub report: RunReport,
    /// The committed version (single process only).
    pub committed: Option<smelt_catalog::CommitOutcome>,
    /// The `train:` hook, if it ran.
    pub train: Option<TrainOutcome>,
    /// The interval the run covers.
    pub interval: Option<RunInterval>,
    /// Versions the pipeline's `retention:` expired after the commit.
    pub expired: Vec<u64>,
    /// What the pipeline's `publish:` decided for the committed version.
    pub published: Option<smelt_catalog::publish::PublishRecord>,
}

/// Parallelism for `p` when the request does not set it.
pub fn parallelism(p: &Pipeline, request: &RunRequest) -> usize {
    request.parallelism.or(p.parallelism).unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Loads a pipeline for a run: a single process finds named datasets
/// (`dedup_minhash` `against:`) through the catalog's roots, and fails fast
/// when the catalog cannot be opened, before hours of work (it does not hold
/// it during the run: other smelt processes use it). Ranks never open the
/// catalog; they find datasets under the data directory.
///
/// # Errors
/// The catalog cannot be opened; as [`Workspace::load`].
pub fn load_for_run(ws: &Workspace, pipeline: &Path, with_catalog: bool) -> Result<Pipeline, EngineError> {
    load_pinned(ws, pipeline, with_catalog, &[])
}

/// [`load_for_run`] with upstream versions pinned (`smelt run --upstream NAME@V`):
/// every `dataset` source whose `from` names dataset NAME reads version V.
///
/// # Errors
/// As [`load_for_run`]; a pin that is not `NAME@NUMBER`, or that no `dataset` source reads (user).
pub fn load_pinned(
    ws: &Workspace,
    pipeline: &Path,
    with_catalog: bool,
    pins: &[String],
) -> Result<Pipeline, EngineError> {
    let mut ctx = ws.context(pipeline);
    if with_catalog {
        ctx.datasets = ctx.datasets.with_named(ws.dataset_roots()?);
    }
    for pin in pins {
        let parsed = pin.rsplit_once('@').and_then(|(n, v)| Some((n.to_string(), v.parse::<u64>().ok()?)));
        let Some((name, v)) = parsed.filter(|(n, _)| !n.is_empty()) else {
            return Err(EngineError::User(format!("--upstream `{pin}`: write DATASET@VERSION, as in cc-news@7")));
        };
        ctx.pins.insert(name, v);
    }
    let p = crate::workspace::load_in(pipeline, &ctx)?;
    for name in ctx.pins.keys() {
        let reads = p.order.iter().any(|&n| {
            let s = &p.graph[n];
            s.type_name == "dataset"
                && s.config
                    .resolved()
                    .get("from")
                    .and_then(|f| f.as_str())
                    .is_some_and(|f| f.starts_with(&format!("{name}@")))
        });
        if !reads {
            return Err(EngineError::User(format!(
                "--upstream {name}@...: no `dataset` source of {} reads {name}",
                pipeline.display()
            )));
        }
    }
    Ok(p)
}

/// Starts run `request` of `p`: picks or checks the run id, opens the
/// dataset's storage and writes the run's pointer.
///
/// # Errors
/// An invalid run id or rank (user), storage that cannot be opened, an unwritable data directory.
pub async fn start(
    ws: &Workspace,
    p: &Pipeline,
    request: &RunRequest,
    progress: Arc<Progress>,
) -> Result<Run, EngineError> {
    let run_id = request.run_id.clone().unwrap_or_else(new_run_id);
    if !valid_run_id(&run_id) {
        return Err(EngineError::User(format!("run id `{run_id}` must be letters, digits, `-`, `_` or `.`")));
    }
    let store = DatasetStore::open(&ws.dataset_root(p, &request.pipeline, request.output.as_deref()))?;
    let pointer = RunPointer {
        dataset: p.dataset.clone(),
        root_url: store.url().to_string(),
        pipeline: request.pipeline.display().to_string(),
    };
    ws.write_pointer(&run_id, &pointer)?;
    let mut interval = request.interval.clone();
    if interval.is_none() && request.run_id.is_some() {
        // Resuming a run that covers an interval keeps its interval.
        let plan: Option<smelt_catalog::RunPlan> =
            store.get_json(&smelt_catalog::commit::plan_path(&run_id)).await.ok().flatten();
        interval = plan.and_then(|pl| pl.interval);
    }
    let options = RunOptions {
        run_id: run_id.clone(),
        rank: request.rank.unwrap_or(0),
        world_size: request.world_size.unwrap_or(1),
        parallelism: parallelism(p, request),
        smelt_version: env!("CARGO_PKG_VERSION").to_string(),
        progress,
        scratch_dir: ws.scratch_dir(&p.dataset, &run_id),
        interval: interval.clone(),
    };
    Ok(Run { run_id, store, options, interval, single: request.single() })
}

impl Run {
    /// Runs this rank's share until done or until `cancel` resolves
    /// ([`EngineError::Cancelled`]: nothing committed, finished splits kept).
    ///
    /// # Errors
    /// As [`smelt_engine::run`].
    pub async fn execute(&self, p: &Pipeline, cancel: impl Future<Output = ()>) -> Result<RunOutcome, EngineError> {
        let report = tokio::select! {
            r = smelt_engine::run(p, &self.store, &self.options) => r?,
            () = cancel => return Err(EngineError::Cancelled),
        };
        Ok(RunOutcome {
            run_id: self.run_id.clone(),
            report,
            committed: None,
            train: None,
            interval: self.interval.clone(),
            expired: Vec::new(),
            published: None,
        })
    }

    /// After [`Run::execute`], in a single process whose report is not
    /// waiting for other ranks: commits the version, removes the scratch
    /// directory and runs the pipeline's `train:` command. Otherwise does nothing.
    ///
    /// # Errors
    /// As [`smelt_catalog::commit_run`] (an incomplete run, a failed gate, storage).
    pub async fn commit(&self, ws: &Workspace, p: &Pipeline, outcome: &mut RunOutcome) -> Result<(), EngineError> {
        if outcome.report.waiting.is_some() || !self.single {
            return Ok(());
        }
        let catalog = ws.open_catalog()?;
        let committed = commit_run(
            &catalog,
            &self.store,
            &self.run_id,
            &chrono::Utc::now().to_rfc3339(),
            &[&DropRemovedRows, &MergeSmallShards, &AuditGates],
        )
        .await?;
        if let Some(policy) = &p.publish {
            outcome.published = publish_once(&catalog, &self.store, &committed, policy).await?;
        }
        if let (Some(r), true) = (&p.retention, committed.newly_committed) {
            outcome.expired = apply_retention(&catalog, &self.store, r).await?;
        }
        drop(catalog);
        remove_scratch(&self.options.scratch_dir);
        outcome.train = p
            .train
            .as_ref()
            .map(|cmd| run_train(cmd, self.store.url(), &committed.manifest.dataset, committed.manifest.version));
        outcome.committed = Some(committed);
        Ok(())
    }
}

/// What `commit` did.
#[derive(Debug)]
pub struct CommitOutcome {
    /// The version (already committed when `newly_committed` is false).
    pub committed: smelt_catalog::CommitOutcome,
    /// The `train:` hook, run for a newly committed version only.
    pub train: Option<TrainOutcome>,
    /// Versions the pipeline's `retention:` expired after the commit.
    pub expired: Vec<u64>,
    /// What the pipeline's `publish:` decided for the version.
    pub published: Option<smelt_catalog::publish::PublishRecord>,
}

/// The pipeline's `publish:` for a committed version, once: after its
/// commit, or on a later `commit`/resume of the same run when a kill came
/// between the commit and the publish record (the record is what says it ran).
///
/// # Errors
/// Storage and index failures.
async fn publish_once(
    catalog: &smelt_catalog::Catalog,
    store: &DatasetStore,
    committed: &smelt_catalog::CommitOutcome,
    policy: &smelt_catalog::publish::Policy,
) -> Result<Option<smelt_catalog::publish::PublishRecord>, EngineError> {
    let m = &committed.manifest;
    if !committed.newly_committed && smelt_catalog::publish::read_record(store, m.version).await?.is_some() {
        return Ok(None);
    }
    Ok(Some(crate::publish::publish(catalog, store, m, policy, crate::publish::BY_PIPELINE, None).await?))
}

/// The pipeline's `retention:` after a commit: expires the versions it does
/// not keep (never the one just committed, the latest), then removes the
/// files under `runs/` that no kept version needs and that are older than a
/// day (a concurrent run may still be writing younger ones), as
/// `smelt catalog gc` does.
///
/// # Errors
/// Storage and index failures.
async fn apply_retention(
    catalog: &smelt_catalog::Catalog,
    store: &DatasetStore,
    retention: &smelt_catalog::gc::Retention,
) -> Result<Vec<u64>, EngineError> {
    let now = chrono::Utc::now();
    let expired = smelt_catalog::gc::expire(store, catalog, retention, now, false).await?;
    smelt_catalog::gc::collect_except(store, now - chrono::Duration::hours(24), false, &expired).await?;
    Ok(expired.iter().map(|e| e.version).collect())
}

/// Commits run `run_id` (after `smelt run --rank`), found through its
/// pointer in this data directory or through `pipeline`.
///
/// # Errors
/// The run is unknown here (user) or incomplete; storage and catalog failures.
pub async fn commit(ws: &Workspace, run_id: &str, pipeline: Option<&Path>) -> Result<CommitOutcome, EngineError> {
    let (root, train_pipeline) = match pipeline {
        Some(path) => (ws.dataset_root(&ws.load(path)?, path, None), path.to_path_buf()),
        None => {
            let ptr = ws.read_pointer(run_id)?;
            (ptr.root_url, PathBuf::from(ptr.pipeline))
        }
    };
    let catalog = ws.open_catalog()?;
    let store = DatasetStore::open(&root)?;
    let committed = commit_run(
        &catalog,
        &store,
        run_id,
        &chrono::Utc::now().to_rfc3339(),
        &[&DropRemovedRows, &MergeSmallShards, &AuditGates],
    )
    .await?;
    // The pipeline's `retention:` and `train:` command, once per version (not again for an
    // already committed run).
    let loaded = ws.load(&train_pipeline).ok();
    let published = match loaded.as_ref().and_then(|p| p.publish.as_ref()) {
        Some(policy) => publish_once(&catalog, &store, &committed, policy).await?,
        None => None,
    };
    let p = loaded.filter(|_| committed.newly_committed);
    let expired = match p.as_ref().and_then(|p| p.retention.as_ref()) {
        Some(r) => apply_retention(&catalog, &store, r).await?,
        None => Vec::new(),
    };
    drop(catalog);
    let m = &committed.manifest;
    remove_scratch(&ws.scratch_dir(&m.dataset, run_id));
    let train = p.and_then(|p| p.train).map(|cmd| run_train(&cmd, store.url(), &m.dataset, m.version));
    Ok(CommitOutcome { committed, train, expired, published })
}
