//! The Slurm executor: batch scripts, `sbatch` submission, and what
//! `squeue` / `scontrol` say about a run's jobs.
//!
//! ```text
//! Prepared ──submit──►
//!   ├─ list the splits; read what is done (completion records, phase markers)
//!   ├─ per phase (barriers + 1, docs/adr/0006-barrier-stages.md), the ranks with work left:
//!   │     sbatch --array   (split at MaxArraySize; rank = task id + offset)
//!   │     phase k > 0: --dependency=afterok:<phase k-1 arrays> --kill-on-invalid-dep=yes
//!   ├─ commit job (smelt commit X): --dependency=afterok:<last arrays> --kill-on-invalid-dep=yes
//!   └─ <data dir>/slurm/X/: state.json (job ids), *.sbatch, logs/phase<k>-rank<R>.out
//! job_states(state)
//!   squeue -r (queued, running) + scontrol show job (finished, for MinJobAge) ─► (job, task) → JobInfo
//! ```
//!
//! Accounting (`sacct`) is not assumed: clusters and CI machines run without
//! slurmdbd, and what is done is known from the run's own records anyway.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;
use smelt_engine::EngineError;

use super::{
    committed_version, new_submission, phase_ranks, rank_splits, read_done, sh_quote, user_err, write_state, ArrayJob,
    ClusterRequest, Done, Executor, Prepared, RunState, Submission,
};

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

/// One batch script to submit.
#[derive(Debug, Clone)]
pub struct Script {
    /// Where it is written.
    pub path: PathBuf,
    /// The script.
    pub text: String,
    /// Array: (phase, offset, ranks); None for the commit job.
    pub array: Option<(u32, u32, Vec<u32>)>,
}

/// The batch scripts of a submission: per phase, one array per chunk of
/// `phases[k]` (task ids below `max_array`), then the commit job; file names
/// start with `prefix` (`resume<n>-` for a resubmission).
///
/// # Errors
/// An unreadable or bad `--slurm-template`.
pub fn build_scripts(
    pre: &Prepared,
    c: &ClusterRequest,
    phases: &[Vec<u32>],
    max_array: u32,
    prefix: &str,
) -> Result<Vec<Script>, EngineError> {
    let template = match &c.slurm_template {
        Some(f) => std::fs::read_to_string(f)
            .map_err(|e| EngineError::External(format!("cannot read --slurm-template {}: {e}", f.display())))?,
        None => DEFAULT_TEMPLATE.to_string(),
    };
    let logs = pre.dir.join("logs");
    let q = |p: &Path| sh_quote(&p.display().to_string());
    let extra: Vec<String> = c
        .sbatch_lines
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

/// For each script, the phase whose arrays it depends on: a script depends
/// on every array of the phase before it (the commit on the last phase).
pub fn dependency_phases(scripts: &[Script]) -> Vec<Option<u32>> {
    let (mut dep_phase, mut cur_phase): (Option<u32>, Option<u32>) = (None, None);
    let mut out = Vec::new();
    for s in scripts {
        let this = s.array.as_ref().map(|a| a.0);
        if this != cur_phase {
            dep_phase = cur_phase;
            cur_phase = this;
        }
        out.push(dep_phase);
    }
    out
}

/// MaxArraySize from `scontrol show config`.
async fn max_array_size() -> Result<u32, EngineError> {
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

async fn sbatch(script: &Path, deps: &[String]) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new("sbatch");
    cmd.arg("--parsable");
    if !deps.is_empty() {
        cmd.arg(format!("--dependency=afterok:{}", deps.join(":"))).arg("--kill-on-invalid-dep=yes");
    }
    let out = cmd.arg(script).output().await.map_err(|e| format!("cannot run sbatch: {e}"))?;
    if !out.status.success() {
        return Err(format!("sbatch {} failed: {}", script.display(), String::from_utf8_lossy(&out.stderr).trim()));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let id = text.trim().split(';').next().unwrap_or_default().to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("sbatch {} printed no job id: {text:?}", script.display()));
    }
    Ok(id)
}

/// Cancels jobs; a warning when `scancel` cannot run.
async fn scancel(ids: &[String]) -> Option<String> {
    if ids.is_empty() {
        return None;
    }
    match tokio::process::Command::new("scancel").args(ids).status().await {
        Ok(_) => None,
        Err(e) => Some(format!("cannot run scancel {}: {e}", ids.join(" "))),
    }
}

/// What [`submit`] did.
#[derive(Debug)]
pub enum SlurmOutcome {
    /// A resumed run is committed already: nothing submitted.
    AlreadyCommitted {
        /// Dataset.
        dataset: String,
        /// Its version.
        version: u64,
    },
    /// `--dry-run`: the scripts that would be submitted, with the phase each depends on.
    DryRun {
        /// Scripts in submission order.
        scripts: Vec<Script>,
        /// Per script, the phase whose arrays it would wait for.
        dependencies: Vec<Option<u32>>,
    },
    /// Submitted: this round's jobs (also the last entry of the state's submissions).
    Submitted {
        /// Array and commit jobs.
        submission: Submission,
        /// Whether this was a `--resume`.
        resumed: bool,
    },
}

/// `smelt run --executor slurm`: writes the batch scripts and submits them
/// (`--dry-run`: returns them); a resume submits only the ranks with work left.
/// `warn` gets what goes wrong while cleaning up after a failed `sbatch`.
///
/// # Errors
/// Jobs of a resumed run still in Slurm (user), no MaxArraySize, a failed
/// `sbatch` (the jobs of this submission are then cancelled), unwritable files.
pub async fn submit(
    mut pre: Prepared,
    c: &ClusterRequest,
    warn: &mut dyn FnMut(String),
) -> Result<SlurmOutcome, EngineError> {
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
        if let Some((dataset, version)) = committed_version(&pre.data_dir, &pre.run_id) {
            return Ok(SlurmOutcome::AlreadyCommitted { dataset, version });
        }
    }
    let done = read_done(&pre.data_dir, &pre.state).await?;
    let max_array = match c.max_array_size {
        Some(n) => n,
        None if c.dry_run => max_array_size().await.unwrap_or(1001),
        None => max_array_size().await?,
    };
    let scripts = plan_scripts(&pre, c, &done, max_array)?;
    if c.dry_run {
        let dependencies = dependency_phases(&scripts);
        return Ok(SlurmOutcome::DryRun { scripts, dependencies });
    }

    std::fs::create_dir_all(pre.dir.join("logs"))
        .map_err(|e| EngineError::External(format!("cannot create {}: {e}", pre.dir.display())))?;
    for s in &scripts {
        std::fs::write(&s.path, &s.text)
            .map_err(|e| EngineError::External(format!("cannot write {}: {e}", s.path.display())))?;
    }
    pre.state.submissions.push(new_submission());
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
                if let Some(w) = scancel(&submitted).await {
                    warn(w);
                }
                return Err(EngineError::External(format!(
                    "submission of run {} failed; the {} job(s) it had submitted are cancelled: {e}",
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
    let submission = pre.state.submissions.last().expect("pushed above").clone();
    Ok(SlurmOutcome::Submitted { submission, resumed: resume })
}

/// The scripts of a submission given what is done: a fresh run runs every
/// rank with splits in every phase (markers of an earlier local attempt with
/// this run id are skipped by the ranks); a resume only the ranks with work left.
///
/// # Errors
/// As [`build_scripts`].
pub fn plan_scripts(
    pre: &Prepared,
    c: &ClusterRequest,
    done: &Done,
    max_array: u32,
) -> Result<Vec<Script>, EngineError> {
    let resume = c.resume.is_some();
    let mut phases = phase_ranks(done, pre.world_size, pre.state.splits, pre.state.barriers.len());
    if !resume {
        let all: Vec<u32> = (0..pre.world_size.min(pre.state.splits)).collect();
        phases.iter_mut().for_each(|ph| *ph = all.clone());
    }
    let prefix = if resume { format!("resume{}-", pre.state.submissions.len()) } else { String::new() };
    build_scripts(pre, c, &phases, max_array, &prefix)
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
pub type JobStates = HashMap<(String, Option<u32>), JobInfo>;

/// Task ids of an `ArrayTaskId` value: `3`, or a range list such as `1-3,7%2`.
pub fn task_ids(spec: &str) -> Vec<u32> {
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
pub async fn job_states(st: &RunState) -> JobStates {
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
pub fn failed(state: &str) -> bool {
    matches!(
        state,
        "FAILED" | "CANCELLED" | "TIMEOUT" | "OUT_OF_MEMORY" | "NODE_FAIL" | "BOOT_FAIL" | "DEADLINE" | "PREEMPTED"
    )
}

/// A job that is queued or running.
pub fn is_live(state: &str) -> bool {
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
#[derive(Debug, Clone, Serialize)]
pub struct RankView {
    /// The rank.
    pub rank: u32,
    /// Its job's state (COMPLETED once every split is done; INCOMPLETE, UNKNOWN when Slurm forgot it).
    pub state: String,
    /// The phase of its latest job.
    pub phase: Option<u32>,
    /// `<array job>_<task>`.
    pub job: Option<String>,
    /// Slurm's reason, or what to look at.
    pub reason: String,
    /// `code:signal`.
    pub exit_code: Option<String>,
    /// Its splits with a completion record.
    pub splits_done: usize,
    /// Its splits.
    pub splits_total: usize,
    /// Its log files.
    pub logs: Vec<String>,
}

/// A rank's log files: its phase logs, then Slurm's own messages (time
/// limit, memory, node failure) for its tasks; `phase`: that phase only.
pub fn rank_logs(dir: &Path, st: &RunState, rank: u32, phase: Option<u32>) -> Vec<PathBuf> {
    let logs = dir.join("logs");
    let mut out: Vec<PathBuf> = (0..=st.barriers.len() as u32)
        .filter(|k| phase.is_none_or(|p| p == *k))
        .map(|k| logs.join(format!("phase{k}-rank{rank}.out")))
        .filter(|p| p.exists())
        .collect();
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

/// Rank `rank`'s row from the run's state, what is done and Slurm's job states.
pub fn rank_view(dir: &Path, st: &RunState, done: &Done, states: &JobStates, rank: u32) -> RankView {
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
        view.reason = format!("see `kubectl get pods -l smelt/run-id={}`", super::k8s::k8s_name(&[&st.run_id]));
    } else if view.state.is_empty() {
        view.state = if known { "INCOMPLETE".into() } else { "UNKNOWN".into() };
        view.reason = "not in Slurm any more and splits are missing: see the log, then --resume".into();
    }
    view
}

/// The run's state in one word: committed, failed, running or incomplete.
pub fn overall(views: &[RankView], commit: Option<&JobInfo>, committed: Option<&(String, u64)>) -> &'static str {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::super::tests::prepared;
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

    fn slurm(resume: bool) -> ClusterRequest {
        ClusterRequest {
            executor: Executor::Slurm,
            ranks: Some(2),
            partition: Some("cpu".into()),
            cpus_per_rank: Some(4),
            mem: Some("8G".into()),
            sbatch_lines: vec!["#SBATCH --qos=low".into()],
            resume: resume.then(|| "r1".to_string()),
            ..ClusterRequest::default()
        }
    }

    #[test]
    fn a_dry_run_for_two_ranks_is_one_array_and_a_commit_job() {
        let pre = prepared(2, 5, &[]);
        let scripts = plan_scripts(&pre, &slurm(false), &Done::default(), 1001).unwrap();
        assert_eq!(scripts.len(), 2);
        let phase0 = &scripts[0];
        assert_eq!(phase0.path, PathBuf::from("/data/smelt/slurm/r1/phase0.sbatch"));
        assert_eq!(phase0.array, Some((0, 0, vec![0, 1])));
        assert_eq!(
            phase0.text,
            "#!/bin/bash\n\
             #SBATCH --job-name=smelt-r1-phase0\n\
             #SBATCH --array=0-1\n\
             #SBATCH --output=/data/smelt/slurm/r1/logs/slurm-%A_%a.out\n\
             #SBATCH --ntasks=1\n\
             #SBATCH --partition=cpu\n\
             #SBATCH --cpus-per-task=4\n\
             #SBATCH --mem=8G\n\
             #SBATCH --qos=low\n\
             set -euo pipefail\n\
             export HF_HOME='/cache/hf dir'\n\
             RANK=$((SLURM_ARRAY_TASK_ID + 0))\n\
             exec >>/data/smelt/slurm/r1/logs/phase0-rank\"$RANK\".out 2>&1\n\
             echo \"== smelt run r1 phase 0 rank $RANK: job ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID} on $(hostname) at $(date -u +%Y-%m-%dT%H:%M:%SZ)\"\n\
             exec /usr/bin/smelt --data-dir /data/smelt run /p/pipe.yaml --rank \"$RANK\" --world-size 2 --run-id r1 --no-progress\n"
        );
        let commit = &scripts[1];
        assert_eq!(commit.array, None);
        assert!(commit.text.contains("#SBATCH --job-name=smelt-r1-commit\n"), "{}", commit.text);
        assert!(commit.text.contains("#SBATCH --partition=cpu\n#SBATCH --qos=low\n"), "{}", commit.text);
        assert!(!commit.text.contains("--cpus-per-task"), "the commit job needs no rank resources");
        assert!(commit.text.ends_with("exec /usr/bin/smelt --data-dir /data/smelt commit r1\n"), "{}", commit.text);
        assert_eq!(dependency_phases(&scripts), vec![None, Some(0)]);
    }

    #[test]
    fn a_barrier_pipeline_runs_dependent_phases_split_at_max_array_size() {
        // 3 ranks over 7 splits, one barrier, arrays of at most 2 tasks.
        let pre = prepared(3, 7, &["dedup"]);
        let scripts = plan_scripts(&pre, &slurm(false), &Done::default(), 2).unwrap();
        let arrays: Vec<_> = scripts.iter().map(|s| s.array.clone()).collect();
        assert_eq!(
            arrays,
            vec![
                Some((0, 0, vec![0, 1])),
                Some((0, 2, vec![2])),
                Some((1, 0, vec![0, 1])),
                Some((1, 2, vec![2])),
                None
            ]
        );
        let names: Vec<_> = scripts.iter().map(|s| s.path.file_name().unwrap().to_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "phase0-part0.sbatch",
                "phase0-part1.sbatch",
                "phase1-part0.sbatch",
                "phase1-part1.sbatch",
                "commit.sbatch"
            ]
        );
        assert!(scripts[1].text.contains("#SBATCH --array=0\n"), "task ids restart at the offset");
        assert!(scripts[1].text.contains("RANK=$((SLURM_ARRAY_TASK_ID + 2))"));
        assert!(scripts[2].text.contains("#SBATCH --job-name=smelt-r1-phase1\n"));
        assert_eq!(dependency_phases(&scripts), vec![None, None, Some(0), Some(0), Some(1)]);
    }

    #[test]
    fn a_resume_submits_only_ranks_with_unfinished_splits() {
        // 4 ranks over 6 splits (rank r: splits r, r + 4), one resolved barrier; splits 2 and 5 are not written.
        let mut pre = prepared(4, 6, &["dedup"]);
        pre.state.submissions.push(super::super::new_submission());
        let done = Done {
            records: [0, 1, 3, 4].into_iter().collect(),
            markers: vec![(0..6).collect::<BTreeSet<u32>>()],
            resolved: vec![true],
        };
        let scripts = plan_scripts(&pre, &slurm(true), &done, 1001).unwrap();
        let arrays: Vec<_> = scripts.iter().map(|s| s.array.clone()).collect();
        assert_eq!(arrays, vec![Some((1, 1, vec![1, 2])), None], "phase 0 is done; ranks 1 (split 5) and 2 (split 2)");
        assert_eq!(scripts[0].path, PathBuf::from("/data/smelt/slurm/r1/resume1-phase1.sbatch"));
        assert_eq!(scripts[1].path, PathBuf::from("/data/smelt/slurm/r1/resume1-commit.sbatch"));
        assert!(scripts[0].text.contains("#SBATCH --array=0-1\n"));
        assert!(scripts[0].text.contains("RANK=$((SLURM_ARRAY_TASK_ID + 1))"));
        // The same state as a fresh run would submit every rank in every phase.
        let fresh = plan_scripts(&pre, &slurm(false), &done, 1001).unwrap();
        assert_eq!(fresh.len(), 3);
    }

    #[test]
    fn a_template_gets_the_runs_variables_and_must_run_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("t.sh");
        std::fs::write(
            &t,
            "#!/bin/sh\n{{sbatch_lines}}\n# {{job_name}} {{world_size}} {{log_dir}}\nmodule load x\n{{command}}\n",
        )
        .unwrap();
        let c = ClusterRequest { slurm_template: Some(t.clone()), ..slurm(false) };
        let scripts = plan_scripts(&prepared(2, 2, &[]), &c, &Done::default(), 1001).unwrap();
        assert!(scripts[0].text.contains("# smelt-r1-phase0 2 /data/smelt/slurm/r1/logs\nmodule load x\nexec "));
        assert!(!scripts[0].text.contains("RANK="), "{{setup}} left out of the template is left out");
        std::fs::write(&t, "#!/bin/sh\n{{nope}}\n").unwrap();
        let e = plan_scripts(&prepared(2, 2, &[]), &c, &Done::default(), 1001).unwrap_err().to_string();
        assert!(e.starts_with("--slurm-template: unknown template variable `{{nope}}`"), "{e}");
    }

    #[test]
    fn slurm_job_listings_parse() {
        let mut s = JobStates::new();
        parse_scontrol(
            "JobId=9 ArrayJobId=6 ArrayTaskId=1 ArrayTaskThrottle=2 JobName=s.sh JobState=FAILED Reason=NonZeroExitCode Dependency=(null) ExitCode=1:0\n\
             JobId=6 ArrayJobId=6 ArrayTaskId=2-3%2 JobState=PENDING Reason=JobArrayTaskLimit ExitCode=0:0\n\
             JobId=7 JobName=c.sh JobState=CANCELLED Reason=DependencyNeverSatisfied Dependency=afterok:6_*(failed) ExitCode=0:0\n\
             slurm_load_jobs error: Invalid job id specified\n",
            &mut s,
        );
        assert_eq!(s[&("6".to_string(), Some(1))].state, "FAILED");
        assert_eq!(s[&("6".to_string(), Some(1))].exit_code.as_deref(), Some("1:0"));
        assert_eq!(s[&("7".to_string(), None)].reason, "DependencyNeverSatisfied");
        assert_eq!(s[&("6".to_string(), Some(3))].state, "PENDING", "a range record covers its tasks");
        assert_eq!(s.len(), 4);
        assert_eq!(task_ids("1-3,7%2"), vec![1, 2, 3, 7]);
        parse_squeue("6|2|PENDING|JobArrayTaskLimit\n6|3|RUNNING|None\n7|N/A|PENDING|Dependency\nbad line\n", &mut s);
        assert_eq!(s[&("6".to_string(), Some(3))].state, "RUNNING");
        assert_eq!(s[&("7".to_string(), None)].state, "PENDING");
        assert_eq!(s[&("7".to_string(), None)].exit_code, None);
        assert_eq!(s.len(), 4);
    }

    #[test]
    fn rank_views_combine_slurm_states_with_what_is_done() {
        let mut st = prepared(2, 4, &[]).state;
        st.submissions.push(Submission {
            at: "2025-01-01T00:00:00Z".into(),
            arrays: vec![ArrayJob { phase: 0, job_id: "6".into(), offset: 0, ranks: vec![0, 1], script: "s".into() }],
            commit_job: Some("7".into()),
        });
        let done = Done { records: [0, 2].into_iter().collect(), ..Done::default() };
        let mut states = JobStates::new();
        parse_squeue("6|1|RUNNING|None\n7|N/A|PENDING|Dependency\n", &mut states);
        let dir = Path::new("/nonexistent");
        let views: Vec<RankView> = (0..2).map(|r| rank_view(dir, &st, &done, &states, r)).collect();
        assert_eq!((views[0].state.as_str(), views[0].splits_done), ("COMPLETED", 2), "forgotten by Slurm, all done");
        assert_eq!((views[1].state.as_str(), views[1].job.as_deref()), ("RUNNING", Some("6_1")));
        let commit = states.get(&("7".to_string(), None)).cloned();
        let commit = commit.as_ref();
        assert_eq!(overall(&views, commit, None), "running");
        parse_scontrol(
            "JobId=8 ArrayJobId=6 ArrayTaskId=1 JobState=TIMEOUT Reason=TimeLimit ExitCode=0:15\n",
            &mut states,
        );
        let views: Vec<RankView> = (0..2).map(|r| rank_view(dir, &st, &done, &states, r)).collect();
        assert_eq!(overall(&views, commit, None), "failed");
        assert_eq!(overall(&views, commit, Some(&("d".to_string(), 1))), "committed");
    }
}
