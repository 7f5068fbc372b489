//! A smelt run as a library: what `smelt run` and `smelt commit` do, without
//! the command line. The binary parses arguments into a [`RunRequest`],
//! calls [`start`], [`Run::execute`] and [`Run::commit`], and prints the
//! [`RunOutcome`]; tests and other programs do the same in process.
//!
//! ```text
//! Workspace (data dir: catalog.sled, datasets/<name>, runs/<id>.json, scratch/<dataset>/<id>)
//!   │ load(pipeline.yaml) ── registry::stages(), ConfigureContext (pipeline dir, data dir, dataset roots) ──► Pipeline
//!   ▼
//! start(RunRequest) ── run id, pointer ──► Run::execute ── smelt_engine::run (rank R of W; resumes finished splits)
//!   │ Run::commit, single process: commit_run (+ audit gates hook) ──► version; scratch removed; `train:` hook
//!   ▼
//! RunOutcome { report, committed, train }          commit(run id) does the commit step alone
//!
//! executor::prepare(RunRequest, ClusterRequest) ──► slurm::submit (sbatch arrays per phase + commit job)
//!                                                  │ k8s::plan/write (Indexed Job per phase + commit Job)
//! runs::list|show|logs     every executor's runs, as data
//! scheduler::plan (Clock) ──► driver::Scheduler (child `smelt run`s) │ scheduler::backfill
//! ```

pub mod executor;
pub mod openlineage;
pub mod publish;
pub mod registry;
pub mod run;
pub mod runs;
pub mod scheduler;
pub mod train_hook;
pub mod workspace;

pub use run::{commit, load_for_run, load_pinned, parallelism, start, CommitOutcome, Run, RunOutcome, RunRequest};
pub use train_hook::{TrainFailed, TrainOutcome, EXIT_TRAIN_FAILED};
pub use workspace::{new_run_id, valid_run_id, RunPointer, Workspace};
