//! Running a pipeline's ranks on a cluster: one [`prepare`] step shared by
//! the Slurm and Kubernetes executors, and the run-state files both leave
//! for `smelt runs`. smelt has no scheduler of its own: each rank is
//! `smelt run P --rank R --world-size N --run-id X` (the rank contract,
//! docs/adr/0003-rank-contract.md), and the commit is `smelt commit X`.
//!
//! ```text
//! RunRequest + ClusterRequest ──check──► prepare(ws) ──► Prepared
//!   (pipeline compiled, splits listed, run id picked or the run's state read back for --resume,
//!    job environment, arguments every rank gets)
//!   ├─ slurm::submit   sbatch arrays per phase + a dependent commit job (or --dry-run scripts)
//!   └─ k8s::manifests  an Indexed Job per phase + a commit Job, apply.sh
//! <data dir>/<slurm|k8s>/<run id>/state.json   RunState: pipeline, splits, barriers, submissions
//! ```
//! Nothing here prints: callers get the scripts, job ids and states back.

pub mod k8s;
pub mod slurm;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use smelt_catalog::{completed_splits, Catalog, DatasetStore};
use smelt_engine::EngineError;

use crate::run::RunRequest;
use crate::workspace::{new_run_id, valid_run_id, Workspace};

/// Where the ranks of `smelt run` run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Executor {
    /// In this process.
    Local,
    /// As Slurm array jobs, then a dependent commit job.
    Slurm,
    /// As Kubernetes Indexed Jobs (manifests written, not applied).
    K8s,
}

/// How to run on a cluster: `smelt run`'s cluster options, resolved.
#[derive(Debug, Clone)]
pub struct ClusterRequest {
    /// Where the ranks run.
    pub executor: Executor,
    /// Number of ranks (the world size).
    pub ranks: Option<u32>,
    /// Slurm partition.
    pub partition: Option<String>,
    /// CPUs per rank (also each rank's parallelism unless the run request sets it).
    pub cpus_per_rank: Option<u32>,
    /// Memory per rank, Slurm syntax (`32G`, `4000M`).
    pub mem: Option<String>,
    /// Time limit per rank, Slurm syntax (`10:00:00`, `2-00:00:00`).
    pub time: Option<String>,
    /// Array indexes stay below this (default: MaxArraySize from `scontrol show config`).
    pub max_array_size: Option<u32>,
    /// At most this many ranks of an array at once (k8s: `parallelism`).
    pub array_concurrency: Option<u32>,
    /// Extra `#SBATCH` lines.
    pub sbatch_lines: Vec<String>,
    /// Environment of the jobs: `NAME` (its value here) or `NAME=VALUE`.
    pub env: Vec<String>,
    /// Batch script template file.
    pub slurm_template: Option<PathBuf>,
    /// Return the scripts (manifests) instead of submitting (writing) them.
    pub dry_run: bool,
    /// Resubmit this run: only ranks with unfinished splits.
    pub resume: Option<String>,
    /// Container image with `smelt` on its PATH (k8s).
    pub image: String,
    /// PersistentVolumeClaim mounted at the data directory's path (k8s).
    pub pvc: Option<String>,
}

impl Default for ClusterRequest {
    fn default() -> Self {
        ClusterRequest {
            executor: Executor::Local,
            ranks: None,
            partition: None,
            cpus_per_rank: None,
            mem: None,
            time: None,
            max_array_size: None,
            array_concurrency: None,
            sbatch_lines: Vec::new(),
            env: Vec::new(),
            slurm_template: None,
            dry_run: false,
            resume: None,
            image: "smelt:latest".into(),
            pvc: None,
        }
    }
}

impl ClusterRequest {
    /// True when `smelt run` should go to a cluster executor (or report a
    /// cluster option given without one).
    pub fn wanted(&self) -> bool {
        self.executor != Executor::Local || !self.given().is_empty()
    }

    /// The cluster options that are set, by their command-line names.
    fn given(&self) -> Vec<&'static str> {
        [
            (self.ranks.is_some(), "--ranks"),
            (self.partition.is_some(), "--partition"),
            (self.cpus_per_rank.is_some(), "--cpus-per-rank"),
            (self.mem.is_some(), "--mem"),
            (self.time.is_some(), "--time"),
            (self.max_array_size.is_some(), "--max-array-size"),
            (self.array_concurrency.is_some(), "--array-concurrency"),
            (!self.sbatch_lines.is_empty(), "--sbatch-line"),
            (!self.env.is_empty(), "--env"),
            (self.slurm_template.is_some(), "--slurm-template"),
            (self.dry_run, "--dry-run"),
            (self.resume.is_some(), "--resume"),
            (self.pvc.is_some(), "--pvc"),
        ]
        .into_iter()
        .filter_map(|(g, name)| g.then_some(name))
        .collect()
    }
}

/// What `smelt run --executor ...` submitted, in `<data dir>/<executor>/<run id>/state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    /// File format version.
    pub format: u32,
    /// The run.
    pub run_id: String,
    /// Where it runs.
    pub executor: Executor,
    /// Absolute path of the pipeline file.
    pub pipeline: String,
    /// xxh3-128 of the pipeline file (a resume must use the same pipeline).
    pub pipeline_hash: String,
    /// Dataset name.
    pub dataset: String,
    /// Dataset storage root.
    pub root_url: String,
    /// Number of ranks.
    pub world_size: u32,
    /// Number of input splits.
    pub splits: u32,
    /// Barrier stages in phase order (phase k ends at barrier k; the last phase writes shards).
    pub barriers: Vec<String>,
    /// Submissions, the first one and each `--resume`.
    pub submissions: Vec<Submission>,
}

/// One `sbatch` round.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Submission {
    /// When, RFC 3339.
    pub at: String,
    /// Array jobs, phase by phase.
    pub arrays: Vec<ArrayJob>,
    /// The commit job.
    pub commit_job: Option<String>,
}

/// One array job: ranks `offset + task id`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArrayJob {
    /// Phase (0 ..= number of barriers).
    pub phase: u32,
    /// Slurm job id of the array.
    pub job_id: String,
    /// Rank of task id 0.
    pub offset: u32,
    /// The ranks it runs.
    pub ranks: Vec<u32>,
    /// Its batch script.
    pub script: String,
}

const STATE_FORMAT: u32 = 1;

pub(crate) fn user_err(msg: impl Into<String>) -> EngineError {
    EngineError::User(msg.into())
}

/// The run's directory of scripts, state and logs.
pub fn run_dir(data_dir: &Path, executor: Executor, run_id: &str) -> PathBuf {
    data_dir
        .join(match executor {
            Executor::K8s => "k8s",
            _ => "slurm",
        })
        .join(run_id)
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

/// Writes a run's state file (atomically, through a temporary file).
///
/// # Errors
/// The directory is not writable.
pub fn write_state(dir: &Path, state: &RunState) -> Result<(), EngineError> {
    let path = state_path(dir);
    let tmp = dir.join("state.json.tmp");
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| EngineError::Internal(e.to_string()))?;
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| EngineError::External(format!("cannot write {}: {e}", path.display())))
}

/// Reads a run's state from the Slurm or the k8s directory: the run's directory and its state.
///
/// # Errors
/// No cluster run `run_id` here (user), or a corrupt state file.
pub fn read_state(data_dir: &Path, run_id: &str) -> Result<(PathBuf, RunState), EngineError> {
    for ex in [Executor::Slurm, Executor::K8s] {
        let dir = run_dir(data_dir, ex, run_id);
        if let Ok(bytes) = std::fs::read(state_path(&dir)) {
            let s: RunState = serde_json::from_slice(&bytes)
                .map_err(|e| EngineError::External(format!("corrupt {}: {e}", state_path(&dir).display())))?;
            return Ok((dir, s));
        }
    }
    Err(user_err(format!("no cluster run `{run_id}` in {} (see `smelt runs list`)", data_dir.join("slurm").display())))
}

/// Every cluster run's state in the data directory (unreadable ones left out), in no particular order.
pub fn all_states(data_dir: &Path) -> Vec<RunState> {
    let mut runs = Vec::new();
    for ex in ["slurm", "k8s"] {
        let Ok(entries) = std::fs::read_dir(data_dir.join(ex)) else {
            continue;
        };
        for e in entries.flatten() {
            if let Ok(bytes) = std::fs::read(e.path().join("state.json")) {
                if let Ok(st) = serde_json::from_slice::<RunState>(&bytes) {
                    runs.push(st);
                }
            }
        }
    }
    runs
}

/// Single-quotes for the shell.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `NAME` or `NAME=VALUE` into (name, value), the value of `NAME` read here.
fn env_pairs(specs: &[String]) -> Result<Vec<(String, String)>, EngineError> {
    let mut out = Vec::new();
    for s in specs {
        let (name, value) = match s.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => {
                let v = std::env::var(s)
                    .map_err(|_| user_err(format!("--env {s}: `{s}` is not set here; give NAME=VALUE")))?;
                (s.clone(), v)
            }
        };
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(user_err(format!("--env {s}: `{name}` is not a variable name")));
        }
        out.push((name, value));
    }
    Ok(out)
}

/// What the run has done: final completion records, per-barrier phase markers, resolved barriers.
#[derive(Debug, Default, Clone)]
pub struct Done {
    /// Splits with a completion record.
    pub records: BTreeSet<u32>,
    /// Per barrier: splits whose observe phase is done.
    pub markers: Vec<BTreeSet<u32>>,
    /// Per barrier: its global step is done.
    pub resolved: Vec<bool>,
}

fn marker_splits(dir: &Path) -> BTreeSet<u32> {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".json")?.parse::<u32>().ok()).collect())
        .unwrap_or_default()
}

/// Reads the completion records from storage and the phase markers from the
/// run's scratch directory (`phase-<k>/<split>.json`, `<barrier>/resolved.json`,
/// as docs/adr/0006-barrier-stages.md lays them out).
///
/// # Errors
/// The dataset's storage cannot be read.
pub async fn read_done(data_dir: &Path, st: &RunState) -> Result<Done, EngineError> {
    let store = DatasetStore::open(&st.root_url)?;
    let records = completed_splits(&store, &st.run_id).await?.into_iter().collect();
    let scratch = Workspace::new(data_dir).scratch_dir(&st.dataset, &st.run_id);
    let markers = (0..st.barriers.len()).map(|k| marker_splits(&scratch.join(format!("phase-{k}")))).collect();
    let resolved = st.barriers.iter().map(|b| scratch.join(b).join("resolved.json").exists()).collect();
    Ok(Done { records, markers, resolved })
}

/// The splits of `rank` of `world`.
pub fn rank_splits(rank: u32, world: u32, splits: u32) -> impl Iterator<Item = u32> {
    (rank..splits).step_by(world.max(1) as usize)
}

/// The ranks each phase must run: for a barrier's phase, the ranks with a
/// split whose observe work is not done (none once the barrier is resolved);
/// for the last phase, the ranks with a split that has no completion record.
pub fn phase_ranks(done: &Done, world: u32, splits: u32, barriers: usize) -> Vec<Vec<u32>> {
    (0..=barriers)
        .map(|k| {
            (0..world.min(splits))
                .filter(|&r| {
                    if k == barriers {
                        rank_splits(r, world, splits).any(|i| !done.records.contains(&i))
                    } else if done.resolved.get(k).copied().unwrap_or(false) {
                        false
                    } else {
                        let m = done.markers.get(k);
                        rank_splits(r, world, splits).any(|i| !m.is_some_and(|m| m.contains(&i)))
                    }
                })
                .collect()
        })
        .collect()
}

/// The version a run committed, if it did (the catalog is given up after a few seconds' wait).
pub fn committed_version(data_dir: &Path, run_id: &str) -> Option<(String, u64)> {
    let c = Catalog::open_wait(data_dir, std::time::Duration::from_secs(5)).ok()?;
    c.run_version(run_id).ok().flatten()
}

/// Everything a submission needs, resolved once.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Its absolute path.
    pub pipeline: PathBuf,
    /// Absolute data directory.
    pub data_dir: PathBuf,
    /// This binary, by absolute path.
    pub smelt: PathBuf,
    /// The run.
    pub run_id: String,
    /// Ranks.
    pub world_size: u32,
    /// State (new, or read for a resume with this submission still to add).
    pub state: RunState,
    /// The run's directory.
    pub dir: PathBuf,
    /// Environment of the jobs.
    pub env: Vec<(String, String)>,
    /// Arguments every rank gets after `--run-id X` (parallelism, output).
    pub rank_args: Vec<String>,
}

/// Checks a cluster request against the run request (`sample`: a dry run on
/// the first records was asked for): cluster options need an executor, an
/// executor needs ranks and excludes running one rank by hand.
///
/// # Errors
/// The first mistake found (user).
pub fn check(request: &RunRequest, c: &ClusterRequest, sample: bool) -> Result<(), EngineError> {
    if c.executor == Executor::Local {
        if let Some(name) = c.given().first() {
            return Err(user_err(format!("{name} is for a cluster run: add --executor slurm (or k8s)")));
        }
        return Ok(());
    }
    if request.rank.is_some() || request.world_size.is_some() {
        return Err(user_err("--rank/--world-size run one rank by hand; with --executor give --ranks N"));
    }
    if sample {
        return Err(user_err("--sample is a local dry run; drop --executor"));
    }
    if c.resume.is_some() && request.run_id.is_some() {
        return Err(user_err("--resume RUN names the run already; drop --run-id"));
    }
    if c.resume.is_none() && c.ranks.is_none() {
        return Err(user_err("--executor needs --ranks N (the number of ranks)"));
    }
    if c.ranks == Some(0) || c.cpus_per_rank == Some(0) || c.max_array_size == Some(0) || c.array_concurrency == Some(0)
    {
        return Err(user_err("--ranks, --cpus-per-rank, --max-array-size and --array-concurrency must be at least 1"));
    }
    if c.executor == Executor::K8s && c.resume.is_some() {
        return Err(user_err(
            "--resume is for Slurm; on Kubernetes re-apply the phase Job (finished splits are skipped) or rerun with the same --run-id",
        ));
    }
    Ok(())
}

/// Resolves a cluster run once for either executor: compiles the pipeline,
/// lists its splits as the ranks will plan them, and picks a new run id (or
/// reads back the state of the run `--resume` names and checks it still fits).
///
/// # Errors
/// A pipeline that does not compile or lists no inputs, a resume that does
/// not match its run, bad `--env`, an unwritable data directory.
pub async fn prepare(ws: &Workspace, request: &RunRequest, c: &ClusterRequest) -> Result<Prepared, EngineError> {
    let data_dir = ws.data_dir();
    let p = ws.load(&request.pipeline)?;
    let pipeline = std::fs::canonicalize(&request.pipeline)
        .map_err(|e| EngineError::External(format!("cannot resolve {}: {e}", request.pipeline.display())))?;
    std::fs::create_dir_all(data_dir)
        .map_err(|e| EngineError::External(format!("cannot create {}: {e}", data_dir.display())))?;
    let data_dir = std::fs::canonicalize(data_dir).map_err(|e| EngineError::External(e.to_string()))?;
    let smelt = std::env::current_exe()
        .map_err(|e| EngineError::External(format!("cannot find the smelt binary's path: {e}")))?;
    let barriers: Vec<String> = p.barriers().iter().map(|&b| p.graph[b].name.clone()).collect();
    let store = DatasetStore::open(&Workspace::new(&data_dir).dataset_root(&p, &pipeline, request.output.as_deref()))?;
    let root_url = store.url().to_string();
    // As the ranks will plan them: incremental sources leave out what committed versions hold.
    let committed = smelt_engine::committed_inputs(&store, &p.hash).await?;
    let splits = smelt_engine::list_splits_since(&p, &committed).await?.len() as u32;
    if splits == 0 {
        return Err(user_err(format!("{}: the pipeline's sources list no input files", pipeline.display())));
    }
    let (run_id, state) = match &c.resume {
        Some(run) => {
            let (_, st) = read_state(&data_dir, run)?;
            if st.executor != c.executor {
                return Err(user_err(format!("run {run} was not submitted to Slurm")));
            }
            if request.output.as_deref().is_some_and(|o| o != st.root_url) {
                return Err(user_err(format!(
                    "run {run} writes to {}; a resume keeps it (drop --output)",
                    st.root_url
                )));
            }
            if st.pipeline_hash != p.hash {
                return Err(user_err(format!(
                    "run {run} was submitted with another pipeline (hash {} vs {} now); resume with the same file",
                    st.pipeline_hash, p.hash
                )));
            }
            if c.ranks.is_some_and(|n| n != st.world_size) {
                return Err(user_err(format!(
                    "run {run} has {} ranks; a resume keeps them (drop --ranks)",
                    st.world_size
                )));
            }
            if st.splits != splits {
                return Err(user_err(format!(
                    "run {run} was planned over {} splits and now finds {splits}; inputs changed",
                    st.splits
                )));
            }
            (run.clone(), st)
        }
        None => {
            let run_id = request.run_id.clone().unwrap_or_else(new_run_id);
            if !valid_run_id(&run_id) {
                return Err(user_err(format!("run id `{run_id}` must be letters, digits, `-`, `_` or `.`")));
            }
            if let Ok((dir, _)) = read_state(&data_dir, &run_id) {
                return Err(user_err(format!(
                    "run {run_id} was submitted already ({}); continue it with --resume {run_id}",
                    dir.display()
                )));
            }
            let st = RunState {
                format: STATE_FORMAT,
                run_id: run_id.clone(),
                executor: c.executor,
                pipeline: pipeline.display().to_string(),
                pipeline_hash: p.hash.clone(),
                dataset: p.dataset.clone(),
                root_url,
                world_size: c.ranks.unwrap_or(1),
                splits,
                barriers,
                submissions: Vec::new(),
            };
            (run_id, st)
        }
    };
    let mut rank_args = vec!["--no-progress".to_string()];
    if let Some(n) = request.parallelism.or(c.cpus_per_rank.map(|n| n as usize)) {
        rank_args.extend(["--parallelism".into(), n.to_string()]);
    }
    // A resume passes the first submission's storage root, whether it came from --output or the pipeline.
    let output = if c.resume.is_some() { Some(state.root_url.clone()) } else { request.output.clone() };
    if let Some(o) = output {
        rank_args.extend(["--output".into(), o]);
    }
    Ok(Prepared {
        dir: run_dir(&data_dir, c.executor, &run_id),
        world_size: state.world_size,
        env: env_pairs(&c.env)?,
        pipeline,
        data_dir,
        smelt,
        run_id,
        state,
        rank_args,
    })
}

/// A new submission record stamped now.
pub(crate) fn new_submission() -> Submission {
    Submission {
        at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        arrays: Vec::new(),
        commit_job: None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A prepared run of `world` ranks over `splits` splits with these barriers, as `prepare` leaves it.
    pub(crate) fn prepared(world: u32, splits: u32, barriers: &[&str]) -> Prepared {
        let data_dir = PathBuf::from("/data/smelt");
        let state = RunState {
            format: STATE_FORMAT,
            run_id: "r1".into(),
            executor: Executor::Slurm,
            pipeline: "/p/pipe.yaml".into(),
            pipeline_hash: "h".into(),
            dataset: "d".into(),
            root_url: "/data/smelt/datasets/d".into(),
            world_size: world,
            splits,
            barriers: barriers.iter().map(|b| b.to_string()).collect(),
            submissions: Vec::new(),
        };
        Prepared {
            pipeline: PathBuf::from("/p/pipe.yaml"),
            dir: run_dir(&data_dir, Executor::Slurm, "r1"),
            data_dir,
            smelt: PathBuf::from("/usr/bin/smelt"),
            run_id: "r1".into(),
            world_size: world,
            state,
            env: vec![("HF_HOME".into(), "/cache/hf dir".into())],
            rank_args: vec!["--no-progress".into()],
        }
    }

    #[test]
    fn phase_ranks_follow_markers_and_records() {
        // 6 splits, 4 ranks (rank r: splits r, r+4), one barrier.
        let mut done = Done { markers: vec![BTreeSet::new()], resolved: vec![false], ..Done::default() };
        assert_eq!(phase_ranks(&done, 4, 6, 1), vec![vec![0, 1, 2, 3], vec![0, 1, 2, 3]]);
        // Observe done for every split but 5 (rank 1), nothing final yet.
        done.markers[0] = [0, 1, 2, 3, 4].into_iter().collect();
        assert_eq!(phase_ranks(&done, 4, 6, 1), vec![vec![1], vec![0, 1, 2, 3]]);
        // Resolved, and splits 0, 1, 3, 4, 5 written: only rank 2 is left.
        done.markers[0].insert(5);
        done.resolved[0] = true;
        done.records = [0, 1, 3, 4, 5].into_iter().collect();
        assert_eq!(phase_ranks(&done, 4, 6, 1), vec![vec![], vec![2]]);
        // More ranks than splits: ranks without splits get no work.
        assert_eq!(phase_ranks(&Done::default(), 8, 3, 0), vec![vec![0, 1, 2]]);
    }

    #[test]
    fn shell_quoting_survives_quotes_and_spaces() {
        assert_eq!(sh_quote("/data/x.yaml"), "/data/x.yaml");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote(""), "''");
    }

    #[test]
    fn env_passthrough_takes_values_here_and_checks_names() {
        let pairs = env_pairs(&["A_B=x y".to_string(), "PATH".to_string()]).unwrap();
        assert_eq!(pairs[0], ("A_B".to_string(), "x y".to_string()));
        assert_eq!(pairs[1].0, "PATH");
        assert!(env_pairs(&["1X=2".to_string()]).is_err());
        assert!(env_pairs(&["SMELT_SURELY_UNSET_VARIABLE_42".to_string()]).is_err());
    }

    #[test]
    fn cluster_options_need_an_executor_and_an_executor_needs_ranks() {
        let run = RunRequest::default();
        let local = ClusterRequest { partition: Some("cpu".into()), ..ClusterRequest::default() };
        let e = check(&run, &local, false).unwrap_err().to_string();
        assert_eq!(e, "--partition is for a cluster run: add --executor slurm (or k8s)");
        let slurm = ClusterRequest { executor: Executor::Slurm, ..ClusterRequest::default() };
        assert!(check(&run, &slurm, false).unwrap_err().to_string().contains("--ranks N"));
        let slurm = ClusterRequest { ranks: Some(2), ..slurm };
        assert!(check(&run, &slurm, false).is_ok());
        assert!(check(&run, &slurm, true).unwrap_err().to_string().contains("--sample"));
        let by_hand = RunRequest { rank: Some(0), world_size: Some(2), ..RunRequest::default() };
        assert!(check(&by_hand, &slurm, false).unwrap_err().to_string().contains("--rank/--world-size"));
        let k8s_resume = ClusterRequest { executor: Executor::K8s, resume: Some("r".into()), ..slurm };
        assert!(check(&run, &k8s_resume, false).unwrap_err().to_string().starts_with("--resume is for Slurm"));
    }
}
