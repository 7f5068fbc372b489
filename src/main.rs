//! The `smelt` command line.
//!
//! ```text
//! smelt validate|graph  ── compile (no I/O) ──► diagnostics | DAG drawing
//! smelt run             ── compile ─► exec::run (rank R of W) ─► commit (single process) ─► version
//! smelt commit          ── catalog::commit_run ─► version
//! smelt catalog ...     ── sled index (+ manifests in dataset storage)
//! ```

mod cli;
mod output;
mod registry;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
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
