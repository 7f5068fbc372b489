//! `smelt run P --executor slurm|k8s`: the cluster options, turned into a
//! [`ClusterRequest`] for the runner's executors, and what they did, printed.
//!
//! ```text
//! ClusterArgs ──request()──► ClusterRequest ──executor::check, executor::prepare──► Prepared
//!   slurm: slurm::submit ──► dry-run scripts │ submitted jobs table │ already committed
//!   k8s:   k8s::plan ──► dry-run manifests │ k8s::write ──► files written
//! ```

use std::path::{Path, PathBuf};

use clap::Args;
use smelt_runner::executor::slurm::{array_spec, SlurmOutcome};
use smelt_runner::executor::{self, k8s, slurm, ClusterRequest};
use smelt_runner::{RunRequest, Workspace};

use crate::output::{emit, emit_json, table, Format};

/// Where the ranks of `smelt run` run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
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
    /// The runner's request.
    pub fn request(&self) -> ClusterRequest {
        ClusterRequest {
            executor: match self.executor {
                Executor::Local => executor::Executor::Local,
                Executor::Slurm => executor::Executor::Slurm,
                Executor::K8s => executor::Executor::K8s,
            },
            ranks: self.ranks,
            partition: self.partition.clone(),
            cpus_per_rank: self.cpus_per_rank,
            mem: self.mem.clone(),
            time: self.time.clone(),
            max_array_size: self.max_array_size,
            array_concurrency: self.array_concurrency,
            sbatch_lines: self.sbatch_line.clone(),
            env: self.env.clone(),
            slurm_template: self.slurm_template.clone(),
            dry_run: self.dry_run,
            resume: self.resume.clone(),
            image: self.image.clone(),
            pvc: self.pvc.clone(),
        }
    }
}

/// `smelt run --executor slurm|k8s`: writes the batch scripts (or manifests)
/// and submits them; `--dry-run` prints them.
///
/// # Errors
/// Bad options, a pipeline that does not compile or whose inputs cannot be
/// listed, a failed `sbatch` (the jobs of this submission are then cancelled).
pub async fn submit(
    data_dir: &Path,
    request: &RunRequest,
    c: &ClusterRequest,
    sample: bool,
    format: Format,
) -> anyhow::Result<()> {
    executor::check(request, c, sample)?;
    let pre = executor::prepare(&Workspace::new(data_dir), request, c).await?;
    if c.executor == executor::Executor::K8s {
        let m = k8s::plan(&pre, c)?;
        if c.dry_run {
            for (file, yaml) in &m.files {
                emit(&format!("# {file}\n---\n{yaml}"));
            }
            emit(&format!("# apply.sh\n{}", m.apply));
            emit(&format!("# dry run: {} manifests for run {}; nothing written", m.files.len(), pre.run_id));
            return Ok(());
        }
        let apply_path = k8s::write(&pre, &m)?;
        emit(&format!(
            "run {}: wrote {} Kubernetes manifests to {}\napply: {}\nwatch: smelt runs show {}",
            pre.run_id,
            m.files.len(),
            pre.dir.display(),
            apply_path.display(),
            pre.run_id
        ));
        return Ok(());
    }
    let (run_id, dir, pipeline, world_size, splits) =
        (pre.run_id.clone(), pre.dir.clone(), pre.pipeline.clone(), pre.world_size, pre.state.splits);
    let mut warn = |w: String| eprintln!("warning: {w}");
    match slurm::submit(pre, c, &mut warn).await? {
        SlurmOutcome::AlreadyCommitted { dataset, version } => {
            emit(&format!("run {run_id} is committed already as {dataset}@{version}; nothing to resubmit"));
        }
        SlurmOutcome::DryRun { scripts, dependencies } => {
            for (s, dep_phase) in scripts.iter().zip(&dependencies) {
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
                "# dry run: {} script(s) for run {run_id}, {world_size} ranks over {splits} splits; nothing written or submitted",
                scripts.len(),
            ));
        }
        SlurmOutcome::Submitted { submission: sub, resumed } => match format {
            Format::Json => emit_json(&serde_json::json!({
                "run_id": run_id,
                "executor": "slurm",
                "dir": dir.display().to_string(),
                "world_size": world_size,
                "splits": splits,
                "arrays": sub.arrays,
                "commit_job": sub.commit_job,
            })),
            Format::Table => {
                let rows: Vec<Vec<String>> = sub
                    .arrays
                    .iter()
                    .map(|a| {
                        vec![a.phase.to_string(), a.job_id.clone(), array_spec(&a.ranks), a.ranks.len().to_string()]
                    })
                    .chain(std::iter::once(vec![
                        "commit".into(),
                        sub.commit_job.clone().unwrap_or_default(),
                        String::new(),
                        String::new(),
                    ]))
                    .collect();
                emit(&format!(
                    "run {run_id}: {} to Slurm ({world_size} ranks over {splits} splits; ranks without splits are not submitted)",
                    if resumed { "resubmitted" } else { "submitted" },
                ));
                emit(&table(&["phase", "job", "ranks", "tasks"], &rows));
                emit(&format!(
                    "scripts and logs: {}\nwatch:  smelt runs show {run_id}\nlogs:   smelt runs logs {run_id} --rank 0\nresume: smelt run {} --executor slurm --resume {run_id}   (after a failure)",
                    dir.display(),
                    pipeline.display(),
                ));
            }
        },
    }
    Ok(())
}
