//! Running a pipeline on a cluster (`smelt run P --executor slurm|k8s`) and
//! watching it (`smelt runs list|show|logs`). smelt has no scheduler of its
//! own: each rank is `smelt run P --rank R --world-size N --run-id X` (the
//! rank contract, docs/adr/0003-rank-contract.md), and the commit is
//! `smelt commit X`.
//!
//! ```text
//! smelt run P --executor slurm --ranks N
//!   ├─ list the splits; read what is done (completion records, phase markers)
//!   ├─ per phase (barriers + 1, docs/adr/0006-barrier-stages.md), the ranks with work left:
//!   │     sbatch --array   (split at MaxArraySize; rank = task id + offset)
//!   │     phase k > 0: --dependency=afterok:<phase k-1 arrays> --kill-on-invalid-dep=yes
//!   ├─ commit job (smelt commit X): --dependency=afterok:<last arrays> --kill-on-invalid-dep=yes
//!   └─ <data dir>/slurm/X/: state.json (job ids), *.sbatch, logs/phase<k>-rank<R>.out
//! smelt runs show X
//!   squeue -r (queued, running) + scontrol show job (finished, for MinJobAge)
//!   + completion records and phase markers (what is done) ─► per-rank state
//! ```
//!
//! Accounting (`sacct`) is not assumed: clusters and CI machines run without
//! slurmdbd, and what is done is known from the run's own records anyway.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use smelt_catalog::{completed_splits, Catalog, DatasetStore};
use smelt_engine::EngineError;

use crate::cli::RunArgs;
use crate::output::{emit, emit_json, table, Format};

/// Where the ranks of `smelt run` run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Executor {
    /// In this process (default).
    Local,
    /// As Slurm array jobs, then a dependent commit job.
    Slurm,
    /// As Kubernetes Indexed Jobs (manifests written, not applied).
    K8s,
}

/// `smelt run` options for running on a cluster.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Where the ranks run: here, as Slurm jobs, or as Kubernetes Job manifests (docs/slurm.md).
    #[arg(long, value_enum, default_value = "local")]
    pub executor: Executor,
    /// Number of ranks (the world size) for --executor slurm|k8s.
    #[arg(long, value_name = "N")]
    pub ranks: Option<u32>,
    /// Slurm partition.
    #[arg(long)]
    pub partition: Option<String>,
    /// CPUs per rank (`--cpus-per-task`; also each rank's --parallelism unless that is given).
    #[arg(long, value_name = "N")]
    pub cpus_per_rank: Option<u32>,
    /// Memory per rank, Slurm syntax (`32G`, `4000M`).
    #[arg(long)]
    pub mem: Option<String>,
    /// Time limit per rank, Slurm syntax (`10:00:00`, `2-00:00:00`).
    #[arg(long)]
    pub time: Option<String>,
    /// Array indexes must stay below this (default: MaxArraySize from `scontrol show config`).
    #[arg(long, value_name = "N")]
    pub max_array_size: Option<u32>,
    /// At most N ranks of an array run at once (`--array=...%N`; k8s: `parallelism`).
    #[arg(long, value_name = "N")]
    pub array_concurrency: Option<u32>,
    /// An extra `#SBATCH` line, e.g. `--sbatch-line=--qos=low` (repeatable).
    #[arg(long, value_name = "OPTION", allow_hyphen_values = true)]
    pub sbatch_line: Vec<String>,
    /// Environment of the jobs: NAME (its value here) or NAME=VALUE (repeatable).
    #[arg(long, value_name = "NAME[=VALUE]")]
    pub env: Vec<String>,
    /// Batch script template with {{sbatch_lines}}, {{setup}} and {{command}} (docs/slurm.md).
    #[arg(long, value_name = "FILE")]
    pub slurm_template: Option<PathBuf>,
    /// Print the batch scripts (k8s: the manifests) instead of submitting (writing) them.
    #[arg(long)]
    pub dry_run: bool,
    /// Resubmit run RUN: only the ranks whose splits are incomplete, then the remaining phases and the commit.
    #[arg(long, value_name = "RUN")]
    pub resume: Option<String>,
    /// Container image with `smelt` on its PATH (--executor k8s).
    #[arg(long, default_value = "smelt:latest")]
    pub image: String,
    /// PersistentVolumeClaim mounted at the data directory's path (--executor k8s).
    #[arg(long, value_name = "CLAIM")]
    pub pvc: Option<String>,
}

impl ClusterArgs {
    /// True when `smelt run` should go to a cluster executor (or report a
    /// cluster option given without one).
    pub fn wanted(&self) -> bool {
        self.executor != Executor::Local
            || self.ranks.is_some()
            || self.partition.is_some()
            || self.cpus_per_rank.is_some()
            || self.mem.is_some()
            || self.time.is_some()
            || self.max_array_size.is_some()
            || self.array_concurrency.is_some()
            || !self.sbatch_line.is_empty()
            || !self.env.is_empty()
            || self.slurm_template.is_some()
            || self.dry_run
            || self.resume.is_some()
            || self.pvc.is_some()
    }
}

/// `smelt runs` subcommands.
#[derive(Debug, Subcommand)]
pub enum RunsCmd {
    /// Runs of this data directory: local, scheduled (state, interval, attempts) and on a cluster.
    #[command(after_help = "Examples:\n  smelt runs list\n  smelt runs list --format json")]
    List {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// A run's state: a scheduled run's interval, attempts and last error; a cluster run's state per rank.
    #[command(
        after_help = "Examples:\n  smelt runs show 20250101T000000Z-1a2b --format json\n  smelt runs show cc-news-20240501T000000Z"
    )]
    Show {
        /// The run id `smelt run --executor slurm` printed.
        run_id: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Print a scheduled run's logs (every attempt), or a cluster rank's log (every phase, and Slurm's messages).
    #[command(
        after_help = "Examples:\n  smelt runs logs cc-news-20240501T000000Z\n  smelt runs logs 20250101T000000Z-1a2b --rank 3"
    )]
    Logs {
        /// The run id.
        run_id: String,
        /// The rank (cluster runs).
        #[arg(long)]
        rank: Option<u32>,
        /// Only this phase.
        #[arg(long)]
        phase: Option<u32>,
    },
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

/// The batch script when no `--slurm-template` is given.
pub const DEFAULT_TEMPLATE: &str = "#!/bin/bash\n{{sbatch_lines}}\nset -euo pipefail\n{{setup}}\n{{command}}\n";

/// Variables a `--slurm-template` may use.
pub const TEMPLATE_VARS: &[&str] = &[
    "sbatch_lines",
    "setup",
    "command",
    "job_name",
    "run_id",
    "phase",
    "world_size",
    "smelt",
    "data_dir",
    "pipeline",
    "log_dir",
];

fn user_err(msg: impl Into<String>) -> anyhow::Error {
    EngineError::User(msg.into()).into()
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

fn write_state(dir: &Path, state: &RunState) -> anyhow::Result<()> {
    let path = state_path(dir);
    let tmp = dir.join("state.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(state)?)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Reads a run's state from the Slurm or the k8s directory.
fn read_state(data_dir: &Path, run_id: &str) -> anyhow::Result<(PathBuf, RunState)> {
    for ex in [Executor::Slurm, Executor::K8s] {
        let dir = run_dir(data_dir, ex, run_id);
        if let Ok(bytes) = std::fs::read(state_path(&dir)) {
            let s: RunState =
                serde_json::from_slice(&bytes).with_context(|| format!("corrupt {}", state_path(&dir).display()))?;
            return Ok((dir, s));
        }
    }
    Err(user_err(format!("no cluster run `{run_id}` in {} (see `smelt runs list`)", data_dir.join("slurm").display())))
}

/// Single-quotes for the shell.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `0-3,5,7-9` from sorted, distinct indexes.
pub fn array_spec(indexes: &[u32]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < indexes.len() {
        let start = indexes[i];
        let mut end = start;
        while i + 1 < indexes.len() && indexes[i + 1] == end + 1 {
            i += 1;
            end += 1;
        }
        parts.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
        i += 1;
    }
    parts.join(",")
}

/// Cuts sorted ranks into arrays whose task ids (rank - offset) stay below `max_array_size`.
pub fn chunk_ranks(ranks: &[u32], max_array_size: u32) -> Vec<(u32, Vec<u32>)> {
    let max = max_array_size.max(1);
    let mut out: Vec<(u32, Vec<u32>)> = Vec::new();
    for &r in ranks {
        match out.last_mut() {
            Some((offset, rs)) if r - *offset < max => rs.push(r),
            _ => out.push((r, vec![r])),
        }
    }
    out
}

/// Replaces `{{name}}` (spaces allowed inside the braces) with its value.
///
/// # Errors
/// An unknown or unclosed variable, or a template without `{{command}}`.
pub fn render(template: &str, vars: &BTreeMap<&str, String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    let mut has_command = false;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let j = after.find("}}").ok_or_else(|| "a `{{` without its `}}`".to_string())?;
        let name = after[..j].trim();
        let value = vars.get(name).ok_or_else(|| {
            format!("unknown template variable `{{{{{name}}}}}`; known: {}", TEMPLATE_VARS.join(", "))
        })?;
        has_command |= name == "command";
        out.push_str(value);
        rest = &after[j + 2..];
    }
    out.push_str(rest);
    if !has_command {
        return Err("the template must contain {{command}} (the smelt command line)".into());
    }
    Ok(out)
}

/// `NAME` or `NAME=VALUE` into (name, value), the value of `NAME` read here.
fn env_pairs(specs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
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
async fn read_done(data_dir: &Path, st: &RunState) -> anyhow::Result<Done> {
    let store = DatasetStore::open(&st.root_url)?;
    let records = completed_splits(&store, &st.run_id).await?.into_iter().collect();
    let scratch = smelt_runner::Workspace::new(data_dir).scratch_dir(&st.dataset, &st.run_id);
    let markers = (0..st.barriers.len()).map(|k| marker_splits(&scratch.join(format!("phase-{k}")))).collect();
    let resolved = st.barriers.iter().map(|b| scratch.join(b).join("resolved.json").exists()).collect();
    Ok(Done { records, markers, resolved })
}

fn rank_splits(rank: u32, world: u32, splits: u32) -> impl Iterator<Item = u32> {
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

/// Everything a submission needs, resolved once.
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

fn check_args(args: &RunArgs) -> anyhow::Result<()> {
    let c = &args.cluster;
    if c.executor == Executor::Local {
        let given = [
            (c.ranks.is_some(), "--ranks"),
            (c.partition.is_some(), "--partition"),
            (c.cpus_per_rank.is_some(), "--cpus-per-rank"),
            (c.mem.is_some(), "--mem"),
            (c.time.is_some(), "--time"),
            (c.max_array_size.is_some(), "--max-array-size"),
            (c.array_concurrency.is_some(), "--array-concurrency"),
            (!c.sbatch_line.is_empty(), "--sbatch-line"),
            (!c.env.is_empty(), "--env"),
            (c.slurm_template.is_some(), "--slurm-template"),
            (c.dry_run, "--dry-run"),
            (c.resume.is_some(), "--resume"),
            (c.pvc.is_some(), "--pvc"),
        ];
        if let Some((_, name)) = given.iter().find(|(g, _)| *g) {
            return Err(user_err(format!("{name} is for a cluster run: add --executor slurm (or k8s)")));
        }
        return Ok(());
    }
    if args.rank.is_some() || args.world_size.is_some() {
        return Err(user_err("--rank/--world-size run one rank by hand; with --executor give --ranks N"));
    }
    if args.sample.is_some() {
        return Err(user_err("--sample is a local dry run; drop --executor"));
    }
    if c.resume.is_some() && args.run_id.is_some() {
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

/// `smelt run --executor slurm|k8s`: writes the batch scripts (or manifests)
/// and submits them; `--dry-run` prints them.
///
/// # Errors
/// Bad options, a pipeline that does not compile or whose inputs cannot be
/// listed, a failed `sbatch` (the jobs of this submission are then cancelled).
pub async fn submit(data_dir: &Path, args: &RunArgs) -> anyhow::Result<()> {
    check_args(args)?;
    let pre = prepare(data_dir, args).await?;
    match args.cluster.executor {
        Executor::K8s => crate::k8s::write(&pre, args),
        _ => submit_slurm(pre, args).await,
    }
}

async fn prepare(data_dir: &Path, args: &RunArgs) -> anyhow::Result<Prepared> {
    let c = &args.cluster;
    let p = smelt_runner::Workspace::new(data_dir).load(&args.pipeline)?;
    let pipeline =
        std::fs::canonicalize(&args.pipeline).with_context(|| format!("cannot resolve {}", args.pipeline.display()))?;
    std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
    let data_dir = std::fs::canonicalize(data_dir)?;
    let smelt = std::env::current_exe().context("cannot find the smelt binary's path")?;
    let barriers: Vec<String> = p.barriers().iter().map(|&b| p.graph[b].name.clone()).collect();
    let store = DatasetStore::open(&smelt_runner::Workspace::new(&data_dir).dataset_root(
        &p,
        &pipeline,
        args.output.as_deref(),
    ))?;
    let root_url = store.url().to_string();
    // As the ranks will plan them: incremental sources leave out what committed versions hold.
    let committed = smelt_engine::committed_inputs(&store).await?;
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
            if args.output.as_deref().is_some_and(|o| o != st.root_url) {
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
            let run_id = args.run_id.clone().unwrap_or_else(smelt_runner::new_run_id);
            if !smelt_runner::valid_run_id(&run_id) {
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
    if let Some(n) = args.parallelism.or(c.cpus_per_rank.map(|n| n as usize)) {
        rank_args.extend(["--parallelism".into(), n.to_string()]);
    }
    // A resume passes the first submission's storage root, whether it came from --output or the pipeline.
    let output = if c.resume.is_some() { Some(state.root_url.clone()) } else { args.output.clone() };
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

/// One batch script to submit.
struct Script {
    path: PathBuf,
    text: String,
    /// Array: (phase, offset, ranks); None for the commit job.
    array: Option<(u32, u32, Vec<u32>)>,
}

fn build_scripts(
    pre: &Prepared,
    args: &RunArgs,
    phases: &[Vec<u32>],
    max_array: u32,
    prefix: &str,
) -> anyhow::Result<Vec<Script>> {
    let c = &args.cluster;
    let template = match &c.slurm_template {
        Some(f) => {
            std::fs::read_to_string(f).with_context(|| format!("cannot read --slurm-template {}", f.display()))?
        }
        None => DEFAULT_TEMPLATE.to_string(),
    };
    let logs = pre.dir.join("logs");
    let q = |p: &Path| sh_quote(&p.display().to_string());
    let extra: Vec<String> = c
        .sbatch_line
        .iter()
        .map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("#SBATCH").map_or(l, str::trim_start);
            format!("#SBATCH {l}")
        })
        .collect();
    let env_lines: Vec<String> = pre.env.iter().map(|(n, v)| format!("export {n}={}", sh_quote(v))).collect();
    let base_vars = |job_name: &str, phase: String| {
        let mut v: BTreeMap<&str, String> = BTreeMap::new();
        v.insert("job_name", job_name.to_string());
        v.insert("run_id", pre.run_id.clone());
        v.insert("phase", phase);
        v.insert("world_size", pre.world_size.to_string());
        v.insert("smelt", pre.smelt.display().to_string());
        v.insert("data_dir", pre.data_dir.display().to_string());
        v.insert("pipeline", pre.pipeline.display().to_string());
        v.insert("log_dir", logs.display().to_string());
        v
    };
    let mut out = Vec::new();
    for (k, ranks) in phases.iter().enumerate() {
        let chunks = chunk_ranks(ranks, max_array);
        for (j, (offset, rs)) in chunks.iter().enumerate() {
            let job_name = format!("smelt-{}-phase{k}", pre.run_id);
            let ids: Vec<u32> = rs.iter().map(|r| r - offset).collect();
            let mut lines = vec![
                format!("#SBATCH --job-name={job_name}"),
                format!(
                    "#SBATCH --array={}{}",
                    array_spec(&ids),
                    c.array_concurrency.map(|n| format!("%{n}")).unwrap_or_default()
                ),
                format!("#SBATCH --output={}", logs.join("slurm-%A_%a.out").display()),
                "#SBATCH --ntasks=1".to_string(),
            ];
            if let Some(p) = &c.partition {
                lines.push(format!("#SBATCH --partition={p}"));
            }
            if let Some(n) = c.cpus_per_rank {
                lines.push(format!("#SBATCH --cpus-per-task={n}"));
            }
            if let Some(m) = &c.mem {
                lines.push(format!("#SBATCH --mem={m}"));
            }
            if let Some(t) = &c.time {
                lines.push(format!("#SBATCH --time={t}"));
            }
            lines.extend(extra.iter().cloned());
            let mut setup = env_lines.clone();
            setup.push(format!("RANK=$((SLURM_ARRAY_TASK_ID + {offset}))"));
            setup.push(format!("exec >>{}/phase{k}-rank\"$RANK\".out 2>&1", q(&logs)));
            setup.push(format!(
                "echo \"== smelt run {} phase {k} rank $RANK: job ${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}} on $(hostname) at $(date -u +%Y-%m-%dT%H:%M:%SZ)\"",
                pre.run_id
            ));
            let mut cmd = vec![
                "exec".to_string(),
                q(&pre.smelt),
                "--data-dir".into(),
                q(&pre.data_dir),
                "run".into(),
                q(&pre.pipeline),
                "--rank".into(),
                "\"$RANK\"".into(),
                "--world-size".into(),
                pre.world_size.to_string(),
                "--run-id".into(),
                sh_quote(&pre.run_id),
            ];
            cmd.extend(pre.rank_args.iter().map(|a| sh_quote(a)));
            let mut vars = base_vars(&job_name, k.to_string());
            vars.insert("sbatch_lines", lines.join("\n"));
            vars.insert("setup", setup.join("\n"));
            vars.insert("command", cmd.join(" "));
            let text = render(&template, &vars).map_err(|e| user_err(format!("--slurm-template: {e}")))?;
            let name = if chunks.len() == 1 {
                format!("{prefix}phase{k}.sbatch")
            } else {
                format!("{prefix}phase{k}-part{j}.sbatch")
            };
            out.push(Script { path: pre.dir.join(name), text, array: Some((k as u32, *offset, rs.clone())) });
        }
    }
    let job_name = format!("smelt-{}-commit", pre.run_id);
    let mut lines = vec![
        format!("#SBATCH --job-name={job_name}"),
        format!("#SBATCH --output={}", logs.join("slurm-commit-%j.out").display()),
        "#SBATCH --ntasks=1".to_string(),
    ];
    if let Some(p) = &c.partition {
        lines.push(format!("#SBATCH --partition={p}"));
    }
    lines.extend(extra.iter().cloned());
    let mut setup = env_lines;
    setup.push(format!("exec >>{}/commit.out 2>&1", q(&logs)));
    setup.push(format!(
        "echo \"== smelt commit {}: job ${{SLURM_JOB_ID}} on $(hostname) at $(date -u +%Y-%m-%dT%H:%M:%SZ)\"",
        pre.run_id
    ));
    let cmd = format!("exec {} --data-dir {} commit {}", q(&pre.smelt), q(&pre.data_dir), sh_quote(&pre.run_id));
    let mut vars = base_vars(&job_name, "commit".into());
    vars.insert("sbatch_lines", lines.join("\n"));
    vars.insert("setup", setup.join("\n"));
    vars.insert("command", cmd);
    let text = render(&template, &vars).map_err(|e| user_err(format!("--slurm-template: {e}")))?;
    out.push(Script { path: pre.dir.join(format!("{prefix}commit.sbatch")), text, array: None });
    Ok(out)
}

/// MaxArraySize from `scontrol show config`.
async fn max_array_size() -> anyhow::Result<u32> {
    let out = tokio::process::Command::new("scontrol").args(["show", "config"]).output().await.map_err(|e| {
        user_err(format!("cannot run scontrol ({e}): is Slurm installed here? Or give --max-array-size"))
    })?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == "MaxArraySize").then(|| v.trim().parse::<u32>().ok()).flatten()
        })
        .ok_or_else(|| {
            user_err(format!(
                "scontrol show config gave no MaxArraySize ({}); give --max-array-size",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        })
}

async fn sbatch(script: &Path, deps: &[String]) -> anyhow::Result<String> {
    let mut cmd = tokio::process::Command::new("sbatch");
    cmd.arg("--parsable");
    if !deps.is_empty() {
        cmd.arg(format!("--dependency=afterok:{}", deps.join(":"))).arg("--kill-on-invalid-dep=yes");
    }
    let out = cmd.arg(script).output().await.map_err(|e| anyhow::anyhow!("cannot run sbatch: {e}"))?;
    if !out.status.success() {
        anyhow::bail!("sbatch {} failed: {}", script.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let id = text.trim().split(';').next().unwrap_or_default().to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        anyhow::bail!("sbatch {} printed no job id: {text:?}", script.display());
    }
    Ok(id)
}

async fn scancel(ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    if let Err(e) = tokio::process::Command::new("scancel").args(ids).status().await {
        eprintln!("warning: cannot run scancel {}: {e}", ids.join(" "));
    }
}

fn committed_version(data_dir: &Path, run_id: &str) -> Option<(String, u64)> {
    let c = Catalog::open_wait(data_dir, std::time::Duration::from_secs(5)).ok()?;
    c.run_version(run_id).ok().flatten()
}

async fn submit_slurm(mut pre: Prepared, args: &RunArgs) -> anyhow::Result<()> {
    let c = &args.cluster;
    let resume = c.resume.is_some();
    if resume {
        let live = live_jobs(&pre.state).await;
        if !live.is_empty() {
            return Err(user_err(format!(
                "run {} still has jobs in Slurm ({}); wait for them or `scancel` them, then resume",
                pre.run_id,
                live.join(", ")
            )));
        }
        if let Some((d, v)) = committed_version(&pre.data_dir, &pre.run_id) {
            emit(&format!("run {} is committed already as {d}@{v}; nothing to resubmit", pre.run_id));
            return Ok(());
        }
    }
    let done = read_done(&pre.data_dir, &pre.state).await?;
    let mut phases = phase_ranks(&done, pre.world_size, pre.state.splits, pre.state.barriers.len());
    if !resume {
        // A fresh run: every rank with splits in every phase (markers of an
        // earlier local attempt with this run id are skipped by the ranks).
        let all: Vec<u32> = (0..pre.world_size.min(pre.state.splits)).collect();
        phases.iter_mut().for_each(|ph| *ph = all.clone());
    }
    let max_array = match c.max_array_size {
        Some(n) => n,
        None if c.dry_run => max_array_size().await.unwrap_or(1001),
        None => max_array_size().await?,
    };
    let prefix = if resume { format!("resume{}-", pre.state.submissions.len()) } else { String::new() };
    let scripts = build_scripts(&pre, args, &phases, max_array, &prefix)?;

    if c.dry_run {
        // A script depends on every array of the phase before it (the commit on the last phase).
        let (mut dep_phase, mut cur_phase): (Option<u32>, Option<u32>) = (None, None);
        for s in &scripts {
            let this = s.array.as_ref().map(|a| a.0);
            if this != cur_phase {
                dep_phase = cur_phase;
                cur_phase = this;
            }
            let label = match &s.array {
                Some((k, off, rs)) => format!("phase {k}: ranks {} (rank = task id + {off})", array_spec(rs)),
                None => "commit".to_string(),
            };
            let dep = dep_phase
                .map(|k| format!(" --dependency=afterok:<phase {k} array job ids> --kill-on-invalid-dep=yes"))
                .unwrap_or_default();
            emit(&format!("# {label}\n# sbatch --parsable{dep} {}\n{}", s.path.display(), s.text));
        }
        emit(&format!(
            "# dry run: {} script(s) for run {}, {} ranks over {} splits; nothing written or submitted",
            scripts.len(),
            pre.run_id,
            pre.world_size,
            pre.state.splits
        ));
        return Ok(());
    }

    std::fs::create_dir_all(pre.dir.join("logs")).with_context(|| format!("cannot create {}", pre.dir.display()))?;
    for s in &scripts {
        std::fs::write(&s.path, &s.text).with_context(|| format!("cannot write {}", s.path.display()))?;
    }
    pre.state.submissions.push(Submission {
        at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        arrays: Vec::new(),
        commit_job: None,
    });
    write_state(&pre.dir, &pre.state)?;
    let mut submitted: Vec<String> = Vec::new();
    // Job ids of the phase before the current script's, and of the current phase.
    let (mut prev, mut cur): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    let mut cur_phase: Option<u32> = None;
    for s in &scripts {
        let this = s.array.as_ref().map(|a| a.0);
        if this != cur_phase {
            prev = std::mem::take(&mut cur);
            cur_phase = this;
        }
        let id = match sbatch(&s.path, &prev).await {
            Ok(id) => id,
            Err(e) => {
                scancel(&submitted).await;
                return Err(e.context(format!(
                    "submission of run {} failed; the {} job(s) it had submitted are cancelled",
                    pre.run_id,
                    submitted.len()
                )));
            }
        };
        submitted.push(id.clone());
        let sub = pre.state.submissions.last_mut().expect("pushed above");
        match &s.array {
            Some((k, off, rs)) => {
                cur.push(id.clone());
                sub.arrays.push(ArrayJob {
                    phase: *k,
                    job_id: id,
                    offset: *off,
                    ranks: rs.clone(),
                    script: s.path.display().to_string(),
                });
            }
            None => sub.commit_job = Some(id),
        }
        write_state(&pre.dir, &pre.state)?;
    }
    let sub = pre.state.submissions.last().expect("pushed above");
    match args.format {
        Format::Json => emit_json(&serde_json::json!({
            "run_id": pre.run_id,
            "executor": "slurm",
            "dir": pre.dir.display().to_string(),
            "world_size": pre.world_size,
            "splits": pre.state.splits,
            "arrays": sub.arrays,
            "commit_job": sub.commit_job,
        })),
        Format::Table => {
            let rows: Vec<Vec<String>> = sub
                .arrays
                .iter()
                .map(|a| vec![a.phase.to_string(), a.job_id.clone(), array_spec(&a.ranks), a.ranks.len().to_string()])
                .chain(std::iter::once(vec![
                    "commit".into(),
                    sub.commit_job.clone().unwrap_or_default(),
                    String::new(),
                    String::new(),
                ]))
                .collect();
            emit(&format!(
                "run {}: {} to Slurm ({} ranks over {} splits; ranks without splits are not submitted)",
                pre.run_id,
                if resume { "resubmitted" } else { "submitted" },
                pre.world_size,
                pre.state.splits
            ));
            emit(&table(&["phase", "job", "ranks", "tasks"], &rows));
            emit(&format!(
                "scripts and logs: {}\nwatch:  smelt runs show {}\nlogs:   smelt runs logs {} --rank 0\nresume: smelt run {} --executor slurm --resume {}   (after a failure)",
                pre.dir.display(),
                pre.run_id,
                pre.run_id,
                pre.pipeline.display(),
                pre.run_id
            ));
        }
    }
    Ok(())
}

/// A job's (or array task's) state as Slurm reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobInfo {
    /// PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, ...
    pub state: String,
    /// Why it is pending or ended (Dependency, NonZeroExitCode, ...).
    pub reason: String,
    /// `code:signal`, when known.
    pub exit_code: Option<String>,
}

/// (array or plain job id, array task id) → state.
type JobStates = HashMap<(String, Option<u32>), JobInfo>;

/// Task ids of an `ArrayTaskId` value: `3`, or a range list such as `1-3,7%2`.
fn task_ids(spec: &str) -> Vec<u32> {
    let spec = spec.split('%').next().unwrap_or_default();
    let mut out = Vec::new();
    for part in spec.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    out.extend(a..=b.min(a.saturating_add(1_000_000)));
                }
            }
            None => out.extend(part.parse::<u32>().ok()),
        }
    }
    out
}

/// Parses `scontrol show job -o` lines. Tasks that never started (pending,
/// or cancelled while pending) share one record with a range of task ids.
pub fn parse_scontrol(text: &str, into: &mut JobStates) {
    for line in text.lines() {
        let kv: HashMap<&str, &str> = line.split_whitespace().filter_map(|w| w.split_once('=')).collect();
        let Some(state) = kv.get("JobState") else { continue };
        let info = JobInfo {
            state: state.to_string(),
            reason: kv.get("Reason").map_or_else(String::new, |r| r.to_string()),
            exit_code: kv.get("ExitCode").map(|e| e.to_string()),
        };
        match (kv.get("ArrayJobId"), kv.get("ArrayTaskId"), kv.get("JobId")) {
            (Some(a), Some(t), _) => {
                for t in task_ids(t) {
                    into.insert((a.to_string(), Some(t)), info.clone());
                }
            }
            (_, _, Some(j)) => {
                into.insert((j.to_string(), None), info);
            }
            _ => {}
        }
    }
}

/// Parses `squeue -h -r -o '%F|%K|%T|%r'` lines.
pub fn parse_squeue(text: &str, into: &mut JobStates) {
    for line in text.lines() {
        let f: Vec<&str> = line.trim().split('|').collect();
        if f.len() < 4 {
            continue;
        }
        let task = f[1].parse::<u32>().ok();
        let key = (f[0].to_string(), task);
        into.insert(key, JobInfo { state: f[2].to_string(), reason: f[3].to_string(), exit_code: None });
    }
}

fn all_job_ids(st: &RunState) -> Vec<String> {
    st.submissions.iter().flat_map(|s| s.arrays.iter().map(|a| a.job_id.clone()).chain(s.commit_job.clone())).collect()
}

/// Slurm's view of the run's jobs: `scontrol show job` (finished jobs for
/// MinJobAge seconds), then `squeue -r` (queued and running, one line per task).
async fn job_states(st: &RunState) -> JobStates {
    let mut states = JobStates::new();
    for id in all_job_ids(st) {
        if let Ok(out) = tokio::process::Command::new("scontrol").args(["show", "job", "-o", &id]).output().await {
            parse_scontrol(&String::from_utf8_lossy(&out.stdout), &mut states);
        }
    }
    let ids = all_job_ids(st);
    if !ids.is_empty() {
        if let Ok(out) = tokio::process::Command::new("squeue")
            .args(["-h", "-r", "-j", &ids.join(","), "-o", "%F|%K|%T|%r"])
            .output()
            .await
        {
            parse_squeue(&String::from_utf8_lossy(&out.stdout), &mut states);
        }
    }
    states
}

/// A job that ended without success.
fn failed(state: &str) -> bool {
    matches!(
        state,
        "FAILED" | "CANCELLED" | "TIMEOUT" | "OUT_OF_MEMORY" | "NODE_FAIL" | "BOOT_FAIL" | "DEADLINE" | "PREEMPTED"
    )
}

fn is_live(state: &str) -> bool {
    matches!(
        state,
        "PENDING" | "RUNNING" | "CONFIGURING" | "COMPLETING" | "SUSPENDED" | "REQUEUED" | "RESIZING" | "STOPPED"
    )
}

async fn live_jobs(st: &RunState) -> Vec<String> {
    let mut live: Vec<String> = job_states(st)
        .await
        .into_iter()
        .filter(|(_, i)| is_live(&i.state))
        .map(|((j, t), _)| t.map_or(j.clone(), |t| format!("{j}_{t}")))
        .collect();
    live.sort();
    live
}

/// One rank's row of `smelt runs show`.
#[derive(Debug, Serialize)]
struct RankView {
    rank: u32,
    state: String,
    phase: Option<u32>,
    job: Option<String>,
    reason: String,
    exit_code: Option<String>,
    splits_done: usize,
    splits_total: usize,
    logs: Vec<String>,
}

fn rank_logs(dir: &Path, st: &RunState, rank: u32, phase: Option<u32>) -> Vec<PathBuf> {
    let logs = dir.join("logs");
    let mut out: Vec<PathBuf> = (0..=st.barriers.len() as u32)
        .filter(|k| phase.is_none_or(|p| p == *k))
        .map(|k| logs.join(format!("phase{k}-rank{rank}.out")))
        .filter(|p| p.exists())
        .collect();
    // Slurm's own messages (time limit, memory, node failure) for this rank's tasks.
    for a in st.submissions.iter().flat_map(|s| &s.arrays) {
        if a.ranks.contains(&rank) && phase.is_none_or(|p| p == a.phase) {
            let f = logs.join(format!("slurm-{}_{}.out", a.job_id, rank - a.offset));
            if std::fs::metadata(&f).is_ok_and(|m| m.len() > 0) {
                out.push(f);
            }
        }
    }
    out
}

fn rank_view(dir: &Path, st: &RunState, done: &Done, states: &JobStates, rank: u32) -> RankView {
    let splits: Vec<u32> = rank_splits(rank, st.world_size, st.splits).collect();
    let splits_done = splits.iter().filter(|i| done.records.contains(i)).count();
    let mut view = RankView {
        rank,
        state: String::new(),
        phase: None,
        job: None,
        reason: String::new(),
        exit_code: None,
        splits_done,
        splits_total: splits.len(),
        logs: rank_logs(dir, st, rank, None).iter().map(|p| p.display().to_string()).collect(),
    };
    // The latest submission that ran this rank: its first job that did not complete.
    let latest = st.submissions.iter().rev().find(|s| s.arrays.iter().any(|a| a.ranks.contains(&rank)));
    let mut known = false;
    if let Some(sub) = latest {
        for a in sub.arrays.iter().filter(|a| a.ranks.contains(&rank)) {
            let task = rank - a.offset;
            view.phase = Some(a.phase);
            view.job = Some(format!("{}_{task}", a.job_id));
            match states.get(&(a.job_id.clone(), Some(task))) {
                Some(info) => {
                    known = true;
                    view.state = info.state.clone();
                    view.reason = info.reason.clone();
                    view.exit_code = info.exit_code.clone();
                    if info.state != "COMPLETED" {
                        break;
                    }
                }
                None => {
                    view.state.clear();
                    break;
                }
            }
        }
    }
    if splits_done == splits.len() && (view.state.is_empty() || view.state == "COMPLETED") {
        view.state = "COMPLETED".into();
    } else if st.executor == Executor::K8s {
        view.state = "INCOMPLETE".into();
        view.reason = format!("see `kubectl get pods -l smelt/run-id={}`", crate::k8s::k8s_name(&[&st.run_id]));
    } else if view.state.is_empty() {
        view.state = if known { "INCOMPLETE".into() } else { "UNKNOWN".into() };
        view.reason = "not in Slurm any more and splits are missing: see the log, then --resume".into();
    }
    view
}

fn overall(views: &[RankView], commit: Option<&JobInfo>, committed: Option<&(String, u64)>) -> &'static str {
    if committed.is_some() {
        return "committed";
    }
    if views.iter().any(|v| failed(&v.state)) || commit.is_some_and(|c| failed(&c.state)) {
        return "failed";
    }
    if views.iter().any(|v| is_live(&v.state)) || commit.is_some_and(|c| is_live(&c.state)) {
        return "running";
    }
    "incomplete"
}

/// Runs `smelt runs ...`.
///
/// # Errors
/// An unknown run, unreadable state or storage.
pub async fn runs(data_dir: &Path, cmd: RunsCmd) -> anyhow::Result<()> {
    // Absolute log paths in the output, whatever directory this runs in.
    let data_dir = &std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    match cmd {
        RunsCmd::List { format } => list(data_dir, format).await,
        RunsCmd::Show { run_id, format } => {
            if read_state(data_dir, &run_id).is_err() && crate::local_runs::show(data_dir, &run_id, format).await? {
                return Ok(());
            }
            show(data_dir, &run_id, format).await
        }
        RunsCmd::Logs { run_id, rank, phase } => {
            if read_state(data_dir, &run_id).is_err() && crate::local_runs::logs(data_dir, &run_id)? {
                return Ok(());
            }
            let Some(rank) = rank else { return Err(user_err(format!("run {run_id} is a cluster run: add --rank R"))) };
            logs(data_dir, &run_id, rank, phase)
        }
    }
}

async fn list(data_dir: &Path, format: Format) -> anyhow::Result<()> {
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
    runs.sort_by(|a, b| {
        let at = |s: &RunState| s.submissions.first().map(|x| x.at.clone()).unwrap_or_default();
        at(a).cmp(&at(b)).then(a.run_id.cmp(&b.run_id))
    });
    let mut items = Vec::new();
    for st in &runs {
        let done = read_done(data_dir, st).await.map(|d| d.records.len()).unwrap_or(0);
        let committed = committed_version(data_dir, &st.run_id);
        items.push(serde_json::json!({
            "run_id": st.run_id,
            "executor": st.executor,
            "dataset": st.dataset,
            "ranks": st.world_size,
            "submitted_at": st.submissions.first().map(|s| s.at.clone()),
            "submissions": st.submissions.len(),
            "splits_done": done,
            "splits_total": st.splits,
            "committed": committed.map(|(d, v)| format!("{d}@{v}")),
        }));
    }
    // Local and scheduled runs (not the pointers the ranks of cluster runs leave).
    let cluster: std::collections::BTreeSet<String> = runs.iter().map(|r| r.run_id.clone()).collect();
    let mut local = crate::local_runs::list_items(data_dir, &cluster).await?;
    local.sort_by(|a, b| {
        a["submitted_at"]
            .as_str()
            .cmp(&b["submitted_at"].as_str())
            .then(a["run_id"].as_str().cmp(&b["run_id"].as_str()))
    });
    items.extend(local);
    match format {
        Format::Json => emit_json(&serde_json::Value::Array(items)),
        Format::Table => {
            let s = |v: &serde_json::Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|i| {
                    vec![
                        s(&i["run_id"]),
                        s(&i["executor"]),
                        s(&i["dataset"]),
                        s(&i["ranks"]),
                        s(&i["submitted_at"]),
                        i["interval"]["start"].as_str().unwrap_or("-").to_string(),
                        i["state"].as_str().unwrap_or("-").to_string(),
                        i["attempts"].as_u64().map_or_else(|| "-".into(), |n| n.to_string()),
                        format!("{}/{}", i["splits_done"], i["splits_total"]),
                        i["committed"].as_str().unwrap_or("-").to_string(),
                    ]
                })
                .collect();
            emit(&table(
                &[
                    "run",
                    "executor",
                    "dataset",
                    "ranks",
                    "submitted",
                    "interval",
                    "state",
                    "attempts",
                    "splits",
                    "committed",
                ],
                &rows,
            ));
        }
    }
    Ok(())
}

async fn show(data_dir: &Path, run_id: &str, format: Format) -> anyhow::Result<()> {
    let (dir, st) = read_state(data_dir, run_id)?;
    let done = read_done(data_dir, &st).await?;
    let states = if st.executor == Executor::Slurm { job_states(&st).await } else { JobStates::new() };
    let views: Vec<RankView> =
        (0..st.world_size.min(st.splits)).map(|r| rank_view(&dir, &st, &done, &states, r)).collect();
    let commit_id = st.submissions.iter().rev().find_map(|s| s.commit_job.clone());
    let commit = commit_id.as_ref().and_then(|id| states.get(&(id.clone(), None)));
    let committed = committed_version(data_dir, run_id);
    let state = overall(&views, commit, committed.as_ref());
    let phases: Vec<serde_json::Value> = st
        .barriers
        .iter()
        .enumerate()
        .map(|(k, b)| {
            serde_json::json!({"phase": k, "barrier": b, "splits_observed": done.markers[k].len(),
                "resolved": done.resolved[k]})
        })
        .collect();
    match format {
        Format::Json => emit_json(&serde_json::json!({
            "run_id": st.run_id,
            "executor": st.executor,
            "state": state,
            "dataset": st.dataset,
            "pipeline": st.pipeline,
            "root_url": st.root_url,
            "world_size": st.world_size,
            "splits_total": st.splits,
            "splits_done": done.records.len(),
            "phases": phases,
            "commit_job": commit_id.as_ref().map(|id| serde_json::json!({"job": id, "state": commit.map(|c| &c.state),
                "reason": commit.map(|c| &c.reason)})),
            "committed": committed.as_ref().map(|(d, v)| serde_json::json!({"dataset": d, "version": v})),
            "submissions": st.submissions.len(),
            "dir": dir.display().to_string(),
            "ranks": views,
        })),
        Format::Table => {
            let rows: Vec<Vec<String>> = views
                .iter()
                .map(|v| {
                    vec![
                        v.rank.to_string(),
                        v.state.clone(),
                        v.phase.map_or_else(|| "-".into(), |p| p.to_string()),
                        v.job.clone().unwrap_or_else(|| "-".into()),
                        format!("{}/{}", v.splits_done, v.splits_total),
                        if v.reason == "None" { String::new() } else { v.reason.clone() },
                        v.logs.last().cloned().unwrap_or_default(),
                    ]
                })
                .collect();
            emit(&format!(
                "run {} ({}, dataset `{}`): {state}; {}/{} splits done, {} ranks",
                st.run_id,
                match st.executor {
                    Executor::K8s => "k8s",
                    _ => "slurm",
                },
                st.dataset,
                done.records.len(),
                st.splits,
                st.world_size
            ));
            // After the commit the scratch directory (and its markers) is gone.
            for (k, b) in st.barriers.iter().enumerate().filter(|_| committed.is_none()) {
                emit(&format!(
                    "phase {k} (up to barrier `{b}`): {}/{} splits observed{}",
                    done.markers[k].len(),
                    st.splits,
                    if done.resolved[k] { ", resolved" } else { "" }
                ));
            }
            emit(&table(&["rank", "state", "phase", "job", "splits", "reason", "log"], &rows));
            match (&committed, commit_id) {
                (Some((d, v)), _) => emit(&format!("committed as {d}@{v}")),
                (None, Some(id)) => emit(&format!(
                    "commit job {id}: {}",
                    commit
                        .map_or_else(|| "not in Slurm any more".to_string(), |c| format!("{} ({})", c.state, c.reason))
                )),
                (None, None) => {}
            }
            if state == "failed" || state == "incomplete" {
                emit(&format!("resume: smelt run {} --executor slurm --resume {}", st.pipeline, st.run_id));
            }
        }
    }
    Ok(())
}

fn logs(data_dir: &Path, run_id: &str, rank: u32, phase: Option<u32>) -> anyhow::Result<()> {
    let (dir, st) = read_state(data_dir, run_id)?;
    if rank >= st.world_size {
        return Err(user_err(format!("run {run_id} has ranks 0..{}", st.world_size)));
    }
    let files = rank_logs(&dir, &st, rank, phase);
    if files.is_empty() {
        return Err(user_err(format!(
            "rank {rank} of run {run_id} has no log yet in {} (not started; see `smelt runs show {run_id}`)",
            dir.join("logs").display()
        )));
    }
    for f in files {
        let text = std::fs::read(&f).with_context(|| format!("cannot read {}", f.display()))?;
        emit(&format!("==> {} <==\n{}", f.display(), String::from_utf8_lossy(&text)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_specs_compress_runs_of_indexes() {
        assert_eq!(array_spec(&[0, 1, 2, 3]), "0-3");
        assert_eq!(array_spec(&[0, 2, 3, 4, 7]), "0,2-4,7");
        assert_eq!(array_spec(&[5]), "5");
        assert_eq!(array_spec(&[]), "");
    }

    #[test]
    fn ranks_are_cut_at_max_array_size_with_offsets() {
        let ranks: Vec<u32> = (0..10).collect();
        let chunks = chunk_ranks(&ranks, 4);
        assert_eq!(chunks, vec![(0, vec![0, 1, 2, 3]), (4, vec![4, 5, 6, 7]), (8, vec![8, 9])]);
        // A resume's sparse ranks: task ids stay below the limit.
        let chunks = chunk_ranks(&[1, 3, 1500, 1501, 2999], 1001);
        assert_eq!(chunks, vec![(1, vec![1, 3]), (1500, vec![1500, 1501]), (2999, vec![2999])]);
        assert!(chunks.iter().all(|(off, rs)| rs.iter().all(|r| r - off < 1001)));
    }

    #[test]
    fn templates_fill_variables_and_reject_unknown_ones() {
        let mut vars = BTreeMap::new();
        vars.insert("command", "exec smelt".to_string());
        vars.insert("run_id", "r1".to_string());
        assert_eq!(render("#!/bin/sh\n# {{ run_id }}\n{{command}}\n", &vars).unwrap(), "#!/bin/sh\n# r1\nexec smelt\n");
        let e = render("{{command}} {{nope}}", &vars).unwrap_err();
        assert!(e.contains("unknown template variable `{{nope}}`"), "{e}");
        assert!(render("{{run_id}}", &vars).unwrap_err().contains("{{command}}"));
        assert!(render("{{command", &vars).unwrap_err().contains("without"));
    }

    #[test]
    fn shell_quoting_survives_quotes_and_spaces() {
        assert_eq!(sh_quote("/data/x.yaml"), "/data/x.yaml");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote(""), "''");
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
    fn slurm_job_listings_parse() {
        let mut s = JobStates::new();
        parse_scontrol(
            "JobId=9 ArrayJobId=6 ArrayTaskId=1 ArrayTaskThrottle=2 JobName=s.sh JobState=FAILED Reason=NonZeroExitCode Dependency=(null) ExitCode=1:0\n\
             JobId=6 ArrayJobId=6 ArrayTaskId=2-3%2 JobState=PENDING Reason=JobArrayTaskLimit ExitCode=0:0\n\
             JobId=7 JobName=c.sh JobState=CANCELLED Reason=DependencyNeverSatisfied Dependency=afterok:6_*(failed) ExitCode=0:0\n",
            &mut s,
        );
        assert_eq!(s[&("6".to_string(), Some(1))].state, "FAILED");
        assert_eq!(s[&("6".to_string(), Some(1))].exit_code.as_deref(), Some("1:0"));
        assert_eq!(s[&("7".to_string(), None)].reason, "DependencyNeverSatisfied");
        assert_eq!(s[&("6".to_string(), Some(3))].state, "PENDING", "a range record covers its tasks");
        assert_eq!(s.len(), 4);
        assert_eq!(task_ids("1-3,7%2"), vec![1, 2, 3, 7]);
        parse_squeue("6|2|PENDING|JobArrayTaskLimit\n6|3|RUNNING|None\n7|N/A|PENDING|Dependency\n", &mut s);
        assert_eq!(s[&("6".to_string(), Some(3))].state, "RUNNING");
        assert_eq!(s[&("7".to_string(), None)].state, "PENDING");
    }

    #[test]
    fn env_passthrough_takes_values_here_and_checks_names() {
        let pairs = env_pairs(&["A_B=x y".to_string(), "PATH".to_string()]).unwrap();
        assert_eq!(pairs[0], ("A_B".to_string(), "x y".to_string()));
        assert_eq!(pairs[1].0, "PATH");
        assert!(env_pairs(&["1X=2".to_string()]).is_err());
        assert!(env_pairs(&["SMELT_SURELY_UNSET_VARIABLE_42".to_string()]).is_err());
    }
}
