//! The `smelt` command line.
//!
//! ```text
//! smelt validate|graph  ── compile (no I/O) ──► diagnostics | DAG drawing
//! smelt schema|init     ── engine::schema over the registry's option types ──► pipeline.schema.json | starter pipeline (init_cmd.rs)
//! smelt run             ── compile ─► exec::run (rank R of W) ─► commit (single process) ─► version
//! smelt commit          ── catalog::commit_run (hook: query::audit::AuditGates) ─► version
//! smelt sql|docs|audit  ── query (DataFusion over versions, diffs, audit sections)
//! smelt catalog ...     ── sled index (+ manifests in dataset storage)
//! smelt run --executor slurm|k8s ── runner executors: sbatch arrays per phase + commit job | Job manifests (cluster_cmd.rs)
//! smelt runs ...        ── runner::runs (runs_cmd.rs)
//! smelt scheduler|backfill ── runner::scheduler (scheduler_cmd.rs)
//! smelt train ...       ── catalog::training (_training/ files the loader writes) + the loader's trace (train_cmd/)
//! smelt ui              ── read-only web app over all of the above, or static pages (ui/)
//! ```

mod audit_cmd;
mod catalog_cmd;
mod cli;
mod cluster_cmd;
mod dedup_cmd;
mod docs;
mod export_cmd;
mod extract_cmd;
mod init_cmd;
mod output;
mod runs_cmd;
mod scheduler_cmd;
mod signals;
mod train_cmd;
mod ui;

use std::process::ExitCode;

use clap::Parser;

/// glibc raises its mmap threshold each time a large block is freed, after
/// which the 8 MiB read windows and shard buffers of every split come from
/// per-thread heaps that fragment: peak RSS then grows with the number of
/// splits (measured: +43% from 1x to 10x input). A fixed threshold keeps large
/// buffers in mmap, returned to the OS on free (+13%, bench/memory.sh).
fn keep_large_allocations_in_mmap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

fn main() -> ExitCode {
    keep_large_allocations_in_mmap();
    let args = cli::Cli::parse();
    output::init_tracing(args.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(cli::dispatch(args));
    // Do not wait for blocking threads of a cancelled run.
    runtime.shutdown_background();
    code
}
