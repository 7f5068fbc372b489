//! The runs of a data directory, for every executor: what `smelt runs
//! list|show|logs` shows, as data (the caller formats it).
//!
//! ```text
//! <data dir>/slurm/<id>/state.json, k8s/<id>/state.json   cluster runs (+ squeue/scontrol, completion records)
//! <data dir>/runs/<id>.json                               every local run: dataset, storage root, pipeline
//!   + catalog run_states (scheduled runs: state, interval, attempts, last error, logs)
//!   + catalog runs (committed version) + runs/<id>/{plan.json, splits/} in dataset storage (progress)
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;
use smelt_catalog::{Attempt, Catalog, DatasetStore, RunInterval, RunPlan, RunRecord};
use smelt_engine::EngineError;

use crate::executor::slurm::{job_states, overall, rank_logs, rank_view, JobInfo, JobStates, RankView};
use crate::executor::{all_states, committed_version, read_done, read_state, Done, Executor, RunState};
use crate::workspace::Workspace;

/// One run of `smelt runs list`.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum RunSummary {
    /// Submitted to Slurm or written as Kubernetes manifests.
    Cluster(ClusterSummary),
    /// A plain `smelt run` or a scheduled run.
    Local(LocalSummary),
}

/// A cluster run in `smelt runs list`.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterSummary {
    /// The run.
    pub run_id: String,
    /// Slurm or k8s.
    pub executor: Executor,
    /// Dataset name.
    pub dataset: String,
    /// Number of ranks.
    pub ranks: u32,
    /// The first submission's time.
    pub submitted_at: Option<String>,
    /// Number of submissions (the first and each resume).
    pub submissions: usize,
    /// Splits with a completion record.
    pub splits_done: usize,
    /// Splits in all.
    pub splits_total: u32,
    /// `dataset@version` once committed.
    pub committed: Option<String>,
}

/// A local or scheduled run in `smelt runs list`.
#[derive(Debug, Clone, Serialize)]
pub struct LocalSummary {
    /// The run.
    pub run_id: String,
    /// `scheduler` (it has a run record) or `local`.
    pub executor: String,
    /// Dataset name.
    pub dataset: String,
    /// The pipeline file.
    pub pipeline: String,
    /// Always 1.
    pub ranks: u32,
    /// succeeded, a scheduled run's status, `complete (not committed)` or `incomplete`.
    pub state: String,
    /// The schedule interval of a scheduled run.
    pub interval: Option<RunInterval>,
    /// Attempts so far (scheduled runs).
    pub attempts: Option<u32>,
    /// Attempts allowed (scheduled runs).
    pub max_attempts: Option<u32>,
    /// The end of the last failed attempt's log.
    pub last_error: Option<String>,
    /// When the next attempt starts (a run waiting to retry).
    pub next_attempt_at: Option<String>,
    /// `schedule`, `backfill` or `on_commit`.
    pub trigger: Option<String>,
    /// The upstream version whose commit started it (`on_commit` runs).
    pub trigger_version: Option<String>,
    /// When the record was made, or the time in a generated run id.
    pub submitted_at: Option<String>,
    /// Splits with a completion record.
    pub splits_done: Option<usize>,
    /// Splits in the run's plan.
    pub splits_total: Option<usize>,
    /// `dataset@version` once committed.
    pub committed: Option<String>,
}

/// What is known about one local run.
struct LocalRun {
    run_id: String,
    dataset: String,
    pipeline: String,
    root_url: Option<String>,
    record: Option<RunRecord>,
    committed: Option<(String, u64)>,
}

/// The data directory as an absolute path (log paths in the output are then absolute, wherever this runs).
fn absolute(ws: &Workspace) -> PathBuf {
    std::fs::canonicalize(ws.data_dir()).unwrap_or_else(|_| ws.data_dir().to_path_buf())
}

fn pointers(data_dir: &Path) -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(data_dir.join("runs")) {
        for e in entries.flatten() {
            let path = e.path();
            let Some(id) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if let Some(v) =
                std::fs::read(&path).ok().and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            {
                out.push((id.to_string(), v));
            }
        }
    }
    out
}

fn collect(data_dir: &Path, c: &Catalog, skip: &BTreeSet<String>) -> Result<Vec<LocalRun>, EngineError> {
    let records: Vec<RunRecord> = c.run_records()?;
    let mut runs = Vec::new();
    let mut seen = BTreeSet::new();
    for (id, ptr) in pointers(data_dir) {
        if skip.contains(&id) {
            continue;
        }
        let s = |k: &str| ptr[k].as_str().unwrap_or_default().to_string();
        let record = records.iter().find(|r| r.run_id == id).cloned();
        let committed = c.run_version(&id).ok().flatten();
        seen.insert(id.clone());
        runs.push(LocalRun {
            run_id: id,
            dataset: s("dataset"),
            pipeline: s("pipeline"),
            root_url: Some(s("root_url")),
            record,
            committed,
        });
    }
    // Scheduled runs not started yet have a record and no pointer.
    for r in records.into_iter().filter(|r| !seen.contains(&r.run_id) && !skip.contains(&r.run_id)) {
        let committed = c.run_version(&r.run_id).ok().flatten();
        runs.push(LocalRun {
            run_id: r.run_id.clone(),
            dataset: r.dataset.clone(),
            pipeline: r.pipeline.clone(),
            root_url: None,
            record: Some(r),
            committed,
        });
    }
    Ok(runs)
}

async fn progress(run: &LocalRun) -> (Option<usize>, Option<usize>) {
    let Some(root) = &run.root_url else { return (None, None) };
    let Ok(store) = DatasetStore::open(root) else { return (None, None) };
    let plan: Option<RunPlan> = store.get_json(&smelt_catalog::commit::plan_path(&run.run_id)).await.ok().flatten();
    let done = smelt_catalog::completed_splits(&store, &run.run_id).await.ok().map(|d| d.len());
    (done, plan.map(|p| p.splits.len()))
}

fn state(run: &LocalRun, done: Option<usize>, total: Option<usize>) -> String {
    match (&run.record, &run.committed) {
        (_, Some(_)) => "succeeded".into(),
        (Some(r), None) => r.status.as_str().into(),
        (None, None) if total.is_some() && done == total => "complete (not committed)".into(),
        (None, None) => "incomplete".into(),
    }
}

async fn summary(run: &LocalRun) -> LocalSummary {
    let (done, total) = progress(run).await;
    let r = run.record.as_ref();
    LocalSummary {
        run_id: run.run_id.clone(),
        executor: if r.is_some() { "scheduler" } else { "local" }.into(),
        dataset: run.dataset.clone(),
        pipeline: run.pipeline.clone(),
        ranks: 1,
        state: state(run, done, total),
        interval: r.and_then(|r| r.interval.clone()),
        attempts: r.map(|r| r.attempts),
        max_attempts: r.map(|r| r.max_attempts),
        last_error: r.and_then(|r| r.last_error.clone()),
        next_attempt_at: r.and_then(|r| r.next_attempt_at.clone()),
        trigger: r.map(|r| r.trigger.clone()),
        trigger_version: r.and_then(|r| r.trigger_version.clone()),
        submitted_at: r.map(|r| r.created_at.clone()).or_else(|| run_id_time(&run.run_id)),
        splits_done: done,
        splits_total: total,
        committed: run.committed.as_ref().map(|(d, v)| format!("{d}@{v}")),
    }
}

/// The time in a `smelt run` generated run id (`20250101T000000Z-1a2b`).
fn run_id_time(id: &str) -> Option<String> {
    let t = chrono::NaiveDateTime::parse_from_str(id.get(..16)?, "%Y%m%dT%H%M%SZ").ok()?;
    Some(t.and_utc().to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// Every run of the data directory: cluster runs by first submission, then
/// local and scheduled runs (not the pointers the ranks of cluster runs
/// leave) by when they were made.
///
/// # Errors
/// Catalog failures.
pub async fn list(ws: &Workspace) -> Result<Vec<RunSummary>, EngineError> {
    let data_dir = absolute(ws);
    let mut runs = all_states(&data_dir);
    runs.sort_by(|a, b| {
        let at = |s: &RunState| s.submissions.first().map(|x| x.at.clone()).unwrap_or_default();
        at(a).cmp(&at(b)).then(a.run_id.cmp(&b.run_id))
    });
    let mut items = Vec::new();
    for st in &runs {
        let done = read_done(&data_dir, st).await.map(|d| d.records.len()).unwrap_or(0);
        let committed = committed_version(&data_dir, &st.run_id);
        items.push(RunSummary::Cluster(ClusterSummary {
            run_id: st.run_id.clone(),
            executor: st.executor,
            dataset: st.dataset.clone(),
            ranks: st.world_size,
            submitted_at: st.submissions.first().map(|s| s.at.clone()),
            submissions: st.submissions.len(),
            splits_done: done,
            splits_total: st.splits,
            committed: committed.map(|(d, v)| format!("{d}@{v}")),
        }));
    }
    let cluster: BTreeSet<String> = runs.iter().map(|r| r.run_id.clone()).collect();
    let c = Workspace::new(&data_dir).open_catalog()?;
    let local_runs = collect(&data_dir, &c, &cluster)?;
    drop(c);
    let mut local = Vec::new();
    for r in &local_runs {
        local.push(summary(r).await);
    }
    local.sort_by(|a, b| {
        a.submitted_at.as_deref().cmp(&b.submitted_at.as_deref()).then(a.run_id.as_str().cmp(b.run_id.as_str()))
    });
    items.extend(local.into_iter().map(RunSummary::Local));
    Ok(items)
}

/// A local or scheduled run in `smelt runs show`.
#[derive(Debug, Clone)]
pub struct LocalRunView {
    /// Its `runs list` entry.
    pub summary: LocalSummary,
    /// Dataset storage root (runs started, not scheduled runs waiting for their first attempt).
    pub root_url: Option<String>,
    /// The scheduled run's record: interval, attempts, errors.
    pub record: Option<RunRecord>,
    /// The committed version.
    pub committed: Option<(String, u64)>,
}

impl LocalRunView {
    /// Every attempt (scheduled runs).
    pub fn history(&self) -> Vec<Attempt> {
        self.record.as_ref().map(|r| r.history.clone()).unwrap_or_default()
    }
}

/// A cluster run in `smelt runs show`.
#[derive(Debug, Clone)]
pub struct ClusterRunView {
    /// The run's directory (scripts, manifests, logs).
    pub dir: PathBuf,
    /// Its state file.
    pub state: RunState,
    /// Completion records and phase markers.
    pub done: Done,
    /// committed, failed, running or incomplete.
    pub overall: &'static str,
    /// Per rank with splits.
    pub ranks: Vec<RankView>,
    /// The latest commit job.
    pub commit_job: Option<String>,
    /// Slurm's state of it.
    pub commit: Option<JobInfo>,
    /// The committed version.
    pub committed: Option<(String, u64)>,
}

/// A run in `smelt runs show`.
#[derive(Debug, Clone)]
pub enum RunView {
    /// A plain or scheduled run.
    Local(Box<LocalRunView>),
    /// A Slurm or Kubernetes run.
    Cluster(Box<ClusterRunView>),
}

async fn local_view(data_dir: &Path, run_id: &str) -> Result<Option<LocalRunView>, EngineError> {
    let c = Workspace::new(data_dir).open_catalog()?;
    let runs = collect(data_dir, &c, &BTreeSet::new())?;
    drop(c);
    let Some(run) = runs.into_iter().find(|r| r.run_id == run_id) else { return Ok(None) };
    let summary = summary(&run).await;
    Ok(Some(LocalRunView { summary, root_url: run.root_url, record: run.record, committed: run.committed }))
}

async fn cluster_view(data_dir: &Path, run_id: &str) -> Result<ClusterRunView, EngineError> {
    let (dir, st) = read_state(data_dir, run_id)?;
    let done = read_done(data_dir, &st).await?;
    let states = if st.executor == Executor::Slurm { job_states(&st).await } else { JobStates::new() };
    let ranks: Vec<RankView> =
        (0..st.world_size.min(st.splits)).map(|r| rank_view(&dir, &st, &done, &states, r)).collect();
    let commit_job = st.submissions.iter().rev().find_map(|s| s.commit_job.clone());
    let commit = commit_job.as_ref().and_then(|id| states.get(&(id.clone(), None))).cloned();
    let committed = committed_version(data_dir, run_id);
    let overall = overall(&ranks, commit.as_ref(), committed.as_ref());
    Ok(ClusterRunView { dir, state: st, done, overall, ranks, commit_job, commit, committed })
}

/// A run's state: a cluster run's per rank, a local or scheduled run's attempts.
///
/// # Errors
/// No such run (user), unreadable state, catalog or storage.
pub async fn show(ws: &Workspace, run_id: &str) -> Result<RunView, EngineError> {
    let data_dir = absolute(ws);
    if read_state(&data_dir, run_id).is_err() {
        if let Some(v) = local_view(&data_dir, run_id).await? {
            return Ok(RunView::Local(Box::new(v)));
        }
    }
    Ok(RunView::Cluster(Box::new(cluster_view(&data_dir, run_id).await?)))
}

/// One log file's contents.
#[derive(Debug, Clone)]
pub struct LogFile {
    /// Its path.
    pub path: String,
    /// The scheduled run's attempt it belongs to.
    pub attempt: Option<u32>,
    /// Its bytes.
    pub text: Vec<u8>,
}

fn read_log(path: &str, attempt: Option<u32>) -> Result<LogFile, EngineError> {
    let text = std::fs::read(path).map_err(|e| EngineError::External(format!("cannot read {path}: {e}")))?;
    Ok(LogFile { path: path.to_string(), attempt, text })
}

/// A run's logs: a scheduled run's every attempt in order, or a cluster
/// rank's (every phase, or `phase`, and Slurm's messages).
///
/// # Errors
/// A run started by plain `smelt run` (it logs to its terminal), a scheduled
/// run not started yet, a cluster run without `rank` or with a rank it does
/// not have or that has no log yet (user); an unknown run; unreadable logs.
pub fn logs(ws: &Workspace, run_id: &str, rank: Option<u32>, phase: Option<u32>) -> Result<Vec<LogFile>, EngineError> {
    let data_dir = absolute(ws);
    if read_state(&data_dir, run_id).is_err() {
        let c = Workspace::new(&data_dir).open_catalog()?;
        let record = c.run_record(run_id)?;
        let local = Workspace::new(&data_dir).pointer_exists(run_id);
        drop(c);
        match record {
            Some(r) if r.history.is_empty() => {
                return Err(EngineError::User(format!(
                    "run {run_id} has not started yet ({})",
                    r.status.as_str()
                )))
            }
            Some(r) => return r.history.iter().map(|h| read_log(&h.log, Some(h.number))).collect(),
            None if local => {
                return Err(EngineError::User(format!(
                    "run {run_id} was started by `smelt run`, which logs to its terminal; only scheduled runs keep logs (docs/scheduling.md)"
                )))
            }
            None => {}
        }
    }
    let Some(rank) = rank else {
        return Err(EngineError::User(format!("run {run_id} is a cluster run: add --rank R")));
    };
    let (dir, st) = read_state(&data_dir, run_id)?;
    if rank >= st.world_size {
        return Err(EngineError::User(format!("run {run_id} has ranks 0..{}", st.world_size)));
    }
    let files = rank_logs(&dir, &st, rank, phase);
    if files.is_empty() {
        return Err(EngineError::User(format!(
            "rank {rank} of run {run_id} has no log yet in {} (not started; see `smelt runs show {run_id}`)",
            dir.join("logs").display()
        )));
    }
    files.iter().map(|f| read_log(&f.display().to_string(), None)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_run_ids_carry_their_time() {
        assert_eq!(run_id_time("20250101T000000Z-1a2b").as_deref(), Some("2025-01-01T00:00:00Z"));
        assert_eq!(run_id_time("nightly-01"), None);
    }

    #[tokio::test]
    async fn local_and_cluster_runs_are_listed_with_their_state() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::new(dir.path());
        let ptr = crate::workspace::RunPointer {
            dataset: "d".into(),
            root_url: dir.path().join("datasets/d").display().to_string(),
            pipeline: "p.yaml".into(),
        };
        ws.write_pointer("20250101T000000Z-1a2b", &ptr).unwrap();
        let mut st = crate::executor::tests::prepared(2, 4, &[]).state;
        st.run_id = "c1".into();
        st.root_url = ptr.root_url.clone();
        let run_dir = crate::executor::run_dir(dir.path(), Executor::Slurm, "c1");
        std::fs::create_dir_all(&run_dir).unwrap();
        crate::executor::write_state(&run_dir, &st).unwrap();
        // The pointer ranks of a cluster run leave is not listed as a local run.
        ws.write_pointer("c1", &ptr).unwrap();
        let runs = list(&ws).await.unwrap();
        let v = serde_json::to_value(&runs).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2, "{v:#}");
        assert_eq!(v[0]["run_id"], "c1");
        assert_eq!(v[0]["executor"], "slurm");
        assert_eq!((v[0]["splits_done"].as_u64(), v[0]["splits_total"].as_u64()), (Some(0), Some(4)));
        assert_eq!(v[1]["executor"], "local");
        assert_eq!(v[1]["state"], "incomplete");
        assert_eq!(v[1]["submitted_at"], "2025-01-01T00:00:00Z");
        let e = logs(&ws, "20250101T000000Z-1a2b", None, None).unwrap_err().to_string();
        assert!(e.contains("logs to its terminal"), "{e}");
        let e = logs(&ws, "c1", None, None).unwrap_err().to_string();
        assert_eq!(e, "run c1 is a cluster run: add --rank R");
        let RunView::Local(v) = show(&ws, "20250101T000000Z-1a2b").await.unwrap() else { panic!("a local run") };
        assert_eq!(v.summary.pipeline, "p.yaml");
    }
}
