//! Subcommands. Exit codes: 0 success, 1 runtime failure, 2 invalid pipeline
//! or usage, 3 `commit` of an incomplete run, 130 cancelled.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use smelt_catalog::CatalogError;
use smelt_engine::{EngineError, GraphFormat, Pipeline, Progress};

use crate::catalog_cmd::{CatalogCmd, GateFailed, EXIT_GATE};
use crate::output::{emit, emit_json, funnel_table, human_bytes, progress_bar, table, Format};
use smelt_runner::{RunRequest, Workspace};

const EXAMPLES: &str = "\
Examples:
  smelt run examples/quickstart.yaml                 # run and commit a new dataset version
  smelt run examples/quickstart.yaml --sample 100    # dry run on the first 100 records
  smelt validate examples/quickstart.yaml            # every problem at once, with file:line:column
  smelt graph examples/quickstart.yaml --format mermaid
  smelt catalog log quickstart
  smelt catalog show quickstart@1";

/// smelt: declarative pipelines from raw web and news data to versioned LLM training datasets.
#[derive(Debug, Parser)]
#[command(name = "smelt", version, about, after_help = EXAMPLES)]
pub struct Cli {
    /// Directory of the catalog index and default dataset storage.
    #[arg(long, global = true, env = "SMELT_DATA_DIR", default_value = "smelt-data")]
    pub data_dir: PathBuf,
    /// More logging (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline and commit a new dataset version.
    #[command(after_help = "Examples:
  smelt run examples/quickstart.yaml
  smelt run examples/quickstart.yaml --sample 100
  smelt run pipeline.yaml --run-id nightly-01               # resume: finished splits are skipped
  smelt run pipeline.yaml --resume nightly-01               # the same, after a crash (the run must exist)
  smelt run pipeline.yaml --interval 2024-05-01T00:00:00Z   # the schedule interval starting then (docs/scheduling.md)
  smelt run examples/downstream.yaml --upstream quickstart@2   # read quickstart@2 whatever `from:` selects
  smelt run pipeline.yaml --rank 0 --world-size 2 --run-id r1 &
  smelt run pipeline.yaml --rank 1 --world-size 2 --run-id r1; wait; smelt commit r1
  smelt run pipeline.yaml --executor slurm --ranks 64 --partition cpu --cpus-per-rank 8 --mem 32G --time 10:00:00
  smelt run pipeline.yaml --executor slurm --ranks 64 --dry-run   # print the sbatch scripts
  smelt run pipeline.yaml --executor slurm --resume RUN          # resubmit only unfinished ranks")]
    Run(RunArgs),
    /// Commit a run whose splits are all complete (after `run --rank`).
    #[command(after_help = "Example:\n  smelt commit r1")]
    Commit {
        /// The run id given to `smelt run --run-id`.
        run_id: String,
        /// The pipeline, when the run's pointer is not in this data directory.
        #[arg(long)]
        pipeline: Option<PathBuf>,
        /// Send the OpenLineage COMPLETE (or FAIL) event of the run to a lineage server URL, or append it to
        /// file:PATH (default: $OPENLINEAGE_URL when set).
        #[arg(long, value_name = "URL|file:PATH")]
        openlineage: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Check pipeline files without running them; exits 2 on any problem.
    #[command(after_help = "Example:\n  smelt validate examples/quickstart.yaml")]
    Validate {
        /// Pipeline files.
        #[arg(required = true)]
        pipelines: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Draw a pipeline's DAG.
    #[command(
        after_help = "Examples:\n  smelt graph examples/quickstart.yaml --format mermaid\n  smelt graph p.yaml --format dot | dot -Tsvg > p.svg"
    )]
    Graph {
        /// Pipeline file.
        pipeline: PathBuf,
        /// mermaid, dot or plantuml.
        #[arg(long, value_enum, default_value = "mermaid")]
        format: GraphFmt,
    },
    /// Print (or write) the JSON Schema of pipeline files, for editors with a YAML language server.
    #[command(after_help = "Examples:
  smelt schema --out pipeline.schema.json
  smelt schema | jq '.[\"$defs\"] | keys'

Then start a pipeline file with
  # yaml-language-server: $schema=./pipeline.schema.json
and editors with a YAML language server (VS Code's YAML extension, Neovim's yamlls, ...)
complete and check stage types, options, defaults and enums.")]
    Schema {
        /// Write the schema to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write a starter pipeline (and pipeline.schema.json beside it, for editors).
    #[command(after_help = "Examples:
  smelt init                               # quickstart template into pipeline.yaml
  smelt init clean --out clean.yaml        # FineWeb-style cleaning
  smelt init feeds --out pipelines/news.yaml
  smelt init tokenize --out tokens.yaml

Existing files are never overwritten.")]
    Init {
        /// The template.
        #[arg(value_enum, default_value = "quickstart")]
        template: crate::init_cmd::Template,
        /// The pipeline file to write.
        #[arg(long, default_value = "pipeline.yaml")]
        out: PathBuf,
    },
    /// List stage types.
    Stages {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Print the main-content text the `extract` stage gets from HTML files or WARC responses.
    Extract(crate::extract_cmd::ExtractArgs),
    /// Write a version's token shards as Megatron-LM, nanoGPT or JSONL training files.
    Export(crate::export_cmd::ExportArgs),
    /// A read-only web app over the catalog: datasets, versions, diffs, runs, training runs, SQL.
    Ui(crate::ui::UiArgs),
    /// Explain `dedup_minhash` clusters: members, similarity, which one stayed and why.
    #[command(subcommand)]
    Dedup(crate::dedup_cmd::DedupCmd),
    /// Bias audits of versions: HTML/JSON reports and what moved between versions.
    #[command(subcommand)]
    Audit(crate::audit_cmd::AuditCmd),
    /// Query the dataset catalog.
    #[command(subcommand)]
    Catalog(CatalogCmd),
    /// Training runs recorded against the versions they read: loss curves, compare, the documents of a batch, spikes.
    #[command(subcommand)]
    Train(crate::train_cmd::TrainCmd),
    /// Runs: local, scheduled (state, interval, attempts) and on a cluster (state per rank), with logs.
    #[command(subcommand)]
    Runs(crate::runs_cmd::RunsCmd),
    /// Run pipelines' `schedule:` intervals as they come due (foreground; SIGTERM stops it cleanly).
    #[command(after_help = "Examples:
  smelt scheduler pipelines/cc-news.yaml pipelines/crawl.yaml
  smelt scheduler --dir pipelines/                    # every pipeline with a schedule: in the directory
  smelt scheduler p.yaml --once                       # run what is due now (with retries), then exit
  SMELT_NOW=2024-05-03T00:30:00Z smelt scheduler p.yaml --once   # testing aid: the clock starts then

A killed scheduler (even kill -9) resumes its interrupted runs with the same run id when restarted.
Run state: `smelt runs list`; logs: `smelt runs logs RUN`. See docs/scheduling.md.")]
    Scheduler(crate::scheduler_cmd::SchedulerArgs),
    /// Run a pipeline's missing or failed schedule intervals in a time range (`--rerun`: all of them).
    #[command(after_help = "Examples:
  smelt backfill p.yaml --from 2024-05-01 --to 2024-06-01 --dry-run   # list what would run
  smelt backfill p.yaml --from 2024-05-01 --to 2024-06-01             # run missing and failed intervals
  smelt backfill p.yaml --from 2024-05-01 --to 2024-05-08 --rerun     # run all of them again (new versions)

While a scheduler runs on the same data directory, backfill queues the intervals for it.")]
    Backfill(crate::scheduler_cmd::BackfillArgs),
    /// SQL over dataset versions and the catalog (DataFusion).
    #[command(after_help = "Examples:
  smelt sql 'SELECT source, count(*) FROM \"quickstart@1\" GROUP BY source ORDER BY 2 DESC'
  smelt sql \"SELECT * FROM versions WHERE dataset = 'quickstart'\"
  smelt sql 'SELECT id, url FROM \"quickstart@prod\"' --format csv --output ids.csv

Tables: every \"dataset@version\", \"dataset@tag\" and dataset (latest) named in the query,
and the catalog tables datasets, versions, shards, runs, tags, stats, funnel, drops.")]
    Sql {
        /// One SQL statement (reading only).
        query: String,
        /// table, csv, json or parquet.
        #[arg(long, value_enum, default_value = "table")]
        format: SqlFmt,
        /// Write to this file instead of stdout (required for parquet).
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

/// `smelt sql --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SqlFmt {
    /// Human-readable table.
    Table,
    /// CSV with a header.
    Csv,
    /// JSON array of objects.
    Json,
    /// Parquet (needs --output).
    Parquet,
}

/// `smelt graph --format`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum GraphFmt {
    /// Mermaid flowchart.
    Mermaid,
    /// Graphviz DOT.
    Dot,
    /// PlantUML.
    Plantuml,
}

/// `smelt run` arguments.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Pipeline file.
    pub pipeline: PathBuf,
    /// Dry run: process the first N source records, print what would be written, commit nothing.
    #[arg(long, value_name = "N")]
    pub sample: Option<usize>,
    /// Run id; reuse it to resume a run that stopped (finished splits are skipped).
    #[arg(long)]
    pub run_id: Option<String>,
    /// The interval of the pipeline's `schedule:` that starts at this time (RFC 3339, or a local
    /// time in the schedule's timezone); recorded in the version's lineage, which marks it done.
    #[arg(long, value_name = "START")]
    pub interval: Option<String>,
    /// Pin an upstream version: `dataset` sources whose `from` names DATASET read this version
    /// (what `schedule: {on_commit: ...}` runs pass); repeatable.
    #[arg(long, value_name = "DATASET@VERSION")]
    pub upstream: Vec<String>,
    /// This process's rank (with --world-size): runs splits i with i % W == R, does not commit.
    #[arg(long, requires = "world_size")]
    pub rank: Option<u32>,
    /// Number of ranks.
    #[arg(long, requires = "rank")]
    pub world_size: Option<u32>,
    /// Splits processed at once (default: the pipeline's `parallelism`, else the number of cores).
    #[arg(long)]
    pub parallelism: Option<usize>,
    /// Dataset storage root (path or object store URL); overrides the pipeline's `output:`.
    #[arg(long)]
    pub output: Option<String>,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Output format of the summary.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Send OpenLineage run events (START, COMPLETE with the version, FAIL) to a lineage server URL, or
    /// append them to file:PATH (default: $OPENLINEAGE_URL when set; docs/training.md).
    #[arg(long, value_name = "URL|file:PATH")]
    pub openlineage: Option<String>,
    /// Cluster options (--executor slurm|k8s, --ranks, ...; docs/slurm.md).
    #[command(flatten)]
    pub cluster: crate::cluster_cmd::ClusterArgs,
}

fn fail(e: &anyhow::Error) -> ExitCode {
    eprintln!("error: {e:#}");
    if e.downcast_ref::<GateFailed>().is_some() {
        return ExitCode::from(EXIT_GATE);
    }
    if e.downcast_ref::<smelt_runner::TrainFailed>().is_some() {
        return ExitCode::from(smelt_runner::EXIT_TRAIN_FAILED);
    }
    // A user's mistake, also inside a stage (`stage `x`: ...` with its position), exits 2.
    if e.downcast_ref::<EngineError>().is_some_and(|e| e.fault() == smelt_engine::Fault::User) {
        return ExitCode::from(2);
    }
    match e.downcast_ref::<CatalogError>() {
        Some(CatalogError::IncompleteRun { .. }) => ExitCode::from(3),
        Some(CatalogError::User(_)) => ExitCode::from(2),
        _ => ExitCode::from(1),
    }
}

/// Runs a parsed command line.
pub async fn dispatch(cli: Cli) -> ExitCode {
    let data_dir = cli.data_dir.clone();
    let result = match cli.command {
        Command::Run(args) => run(&data_dir, args).await,
        Command::Commit { run_id, pipeline, openlineage, format } => {
            commit(&data_dir, &run_id, pipeline.as_deref(), openlineage.as_deref(), format).await
        }
        Command::Validate { pipelines, format } => return validate(&data_dir, &pipelines, format),
        Command::Graph { pipeline, format } => graph(&data_dir, &pipeline, format),
        Command::Stages { format } => {
            stages(format);
            Ok(())
        }
        Command::Schema { out } => crate::init_cmd::schema(out.as_deref()),
        Command::Init { template, out } => crate::init_cmd::init(template, &out),
        Command::Catalog(cmd) => crate::catalog_cmd::run(&data_dir, cmd).await,
        Command::Dedup(cmd) => crate::dedup_cmd::run(&data_dir, cmd).await,
        Command::Audit(cmd) => crate::audit_cmd::run(&data_dir, cmd).await,
        Command::Export(args) => crate::export_cmd::run(&data_dir, &args).await,
        Command::Ui(args) => crate::ui::run(&data_dir, &args).await,
        Command::Runs(cmd) => crate::runs_cmd::run(&data_dir, cmd).await,
        Command::Train(cmd) => crate::train_cmd::run(&data_dir, cmd).await,
        Command::Scheduler(args) => crate::scheduler_cmd::scheduler(&data_dir, args).await,
        Command::Backfill(args) => crate::scheduler_cmd::backfill(&data_dir, args).await,
        Command::Extract(args) => crate::extract_cmd::run(&args),
        Command::Sql { query, format, output } => sql(&data_dir, &query, format, output.as_deref()).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if matches!(e.downcast_ref::<EngineError>(), Some(EngineError::Cancelled)) => {
            eprintln!("cancelled");
            ExitCode::from(130)
        }
        Err(e) => fail(&e),
    }
}

fn validate(data_dir: &Path, paths: &[PathBuf], format: Format) -> ExitCode {
    let mut all = Vec::new();
    let mut failed = false;
    for path in paths {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                failed = true;
                all.push(serde_json::json!({"file": path.display().to_string(), "ok": false,
                    "errors": [{"message": format!("cannot read: {e}")}]}));
                if format == Format::Table {
                    eprintln!("{}: error: cannot read: {e}", path.display());
                }
                continue;
            }
        };
        let ctx = Workspace::new(data_dir).context(path);
        match smelt_engine::compile(&path.display().to_string(), &text, &smelt_runner::registry::stages(), &ctx) {
            Ok(p) => {
                all.push(serde_json::json!({"file": path.display().to_string(), "ok": true, "dataset": p.dataset,
                    "stages": p.order.len()}));
                if format == Format::Table {
                    emit(&format!("{}: ok (dataset `{}`, {} stages)", path.display(), p.dataset, p.order.len()));
                }
            }
            Err(diags) => {
                failed = true;
                let errors: Vec<_> = diags
                    .0
                    .iter()
                    .map(|d| {
                        serde_json::json!({"line": d.pos.line, "column": d.pos.col, "path": d.path,
                        "message": d.message, "help": d.help})
                    })
                    .collect();
                all.push(serde_json::json!({"file": path.display().to_string(), "ok": false, "errors": errors}));
                if format == Format::Table {
                    eprintln!("{diags}");
                }
            }
        }
    }
    if format == Format::Json {
        emit_json(&serde_json::Value::Array(all));
    }
    if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

fn graph(data_dir: &Path, path: &Path, format: GraphFmt) -> anyhow::Result<()> {
    let p = Workspace::new(data_dir).load(path)?;
    let f = match format {
        GraphFmt::Mermaid => GraphFormat::Mermaid,
        GraphFmt::Dot => GraphFormat::Dot,
        GraphFmt::Plantuml => GraphFormat::PlantUml,
    };
    emit(&smelt_engine::render(&p, f));
    Ok(())
}

fn stages(format: Format) {
    let reg = smelt_runner::registry::stages();
    match format {
        Format::Json => emit_json(&serde_json::Value::Array(
            reg.iter()
                .map(|s| serde_json::json!({"type": s.name, "kind": s.kind.as_str(), "about": s.about}))
                .collect(),
        )),
        Format::Table => {
            let rows: Vec<Vec<String>> = reg
                .iter()
                .map(|s| vec![s.name.to_string(), s.kind.as_str().to_string(), s.about.to_string()])
                .collect();
            emit(&table(&["type", "kind", "about"], &rows));
            emit("Options of each stage: docs/stages.md");
        }
    }
}

async fn run(data_dir: &Path, mut args: RunArgs) -> anyhow::Result<()> {
    let ws = Workspace::new(data_dir);
    // `--resume RUN` without a cluster executor: resume a local run (it must exist).
    if args.cluster.executor == crate::cluster_cmd::Executor::Local {
        if let Some(r) = args.cluster.resume.take() {
            if args.run_id.is_some() {
                return Err(EngineError::User("--resume RUN names the run already; drop --run-id".into()).into());
            }
            if !ws.pointer_path(&r).exists() {
                return Err(EngineError::User(format!(
                    "no run `{r}` was started from {} (`smelt runs list` shows the runs); to start a new run with this id use --run-id {r}",
                    data_dir.display()
                ))
                .into());
            }
            args.run_id = Some(r);
        }
    }
    let mut request = RunRequest {
        pipeline: args.pipeline.clone(),
        run_id: args.run_id.clone(),
        rank: args.rank,
        world_size: args.world_size,
        parallelism: args.parallelism,
        output: args.output.clone(),
        interval: None,
    };
    let cluster = args.cluster.request();
    if cluster.wanted() {
        return crate::cluster_cmd::submit(data_dir, &request, &cluster, args.sample.is_some(), args.format).await;
    }
    let p = smelt_runner::load_pinned(&ws, &args.pipeline, request.single() && args.sample.is_none(), &args.upstream)?;
    if let Some(n) = args.sample {
        return sample(&p, n, smelt_runner::parallelism(&p, &request), args.format).await;
    }
    request.interval = args.interval.as_deref().map(|s| smelt_runner::scheduler::interval_arg(&p, s)).transpose()?;
    let progress = Arc::new(Progress::default());
    let started = smelt_runner::start(&ws, &p, &request, progress.clone()).await?;
    let (run_id, rank, world_size) = (started.run_id.clone(), started.options.rank, started.options.world_size);
    let lineage = match args.openlineage.as_deref() {
        Some(t) => Some(smelt_runner::openlineage::Target::parse(t).map_err(EngineError::User)?),
        None => smelt_runner::openlineage::Target::from_env(),
    }
    .filter(|_| request.single())
    .map(|t| smelt_runner::openlineage::Emitter::new(t, &p.dataset, &run_id, &args.pipeline.display().to_string()));
    if let Some(l) = &lineage {
        l.start().await;
    }
    eprintln!(
        "run {run_id}: dataset `{}` -> {}{}",
        p.dataset,
        started.store.url(),
        if request.single() { String::new() } else { format!(" (rank {rank} of {world_size})") }
    );
    let bar = progress_bar(progress, !args.no_progress && args.format == Format::Table);
    // Ctrl-C, or SIGTERM (a scheduler or service manager stopping), cancels.
    let cancel = async {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = sigterm() => {}
        }
    };
    let result = started.execute(&p, cancel).await;
    if let Some((bar, ticker)) = bar {
        ticker.abort();
        bar.finish_and_clear();
    }
    let mut outcome = match result {
        Ok(r) => r,
        Err(EngineError::Cancelled) => {
            eprintln!("cancelled: nothing was committed; finished splits are kept. Resume with:\n  smelt run {} --run-id {run_id}", args.pipeline.display());
            return Err(EngineError::Cancelled.into());
        }
        Err(e) => {
            if let Some(l) = &lineage {
                l.fail(&e.to_string()).await;
            }
            return Err(anyhow::Error::new(e).context(format!(
                "run {run_id} failed; nothing was committed. Fix the cause and resume with `smelt run {} --run-id {run_id}`",
                args.pipeline.display()
            )));
        }
    };
    if let Some(waiting) = &outcome.report.waiting {
        emit(waiting);
        return Ok(());
    }
    if let Err(e) = started.commit(&ws, &p, &mut outcome).await {
        if let Some(l) = &lineage {
            l.fail(&e.to_string()).await;
        }
        return Err(catalog_first(e));
    }
    if let (Some(l), Some(c)) = (&lineage, &outcome.committed) {
        l.complete(&c.manifest, started.store.url()).await;
    }
    let report = &outcome.report;
    let (committed, train) = (&outcome.committed, &outcome.train);
    // Throttling answers of every S3 bucket this process used (dataset root, inputs), retried.
    let s3 = smelt_catalog::throttle::all_stats();
    let summary = serde_json::json!({
        "run_id": run_id,
        "dataset": p.dataset,
        "rank": rank,
        "world_size": world_size,
        "splits_run": report.executed.len(),
        "splits_resumed": report.resumed.len(),
        "rows_written": report.rows_written,
        "shards_written": report.shards_written,
        "elapsed_s": report.elapsed.as_secs_f64(),
        "stages": report.stages,
        "version": committed.as_ref().map(|c| c.manifest.version),
        "digest": committed.as_ref().map(|c| c.manifest.digest.clone()),
        "interval": outcome.interval,
        "retries": report.retries,
        "s3_throttled": s3.iter().map(|s| s.throttled).sum::<u64>(),
        "s3": s3,
        "train": train,
        "expired": outcome.expired,
        "published": outcome.published,
    });
    match args.format {
        Format::Json => emit_json(&summary),
        Format::Table => {
            emit(&funnel_table(&report.stages));
            emit(&format!(
                "{} splits run ({} already complete), {} rows in {} shards, {:.1}s",
                report.executed.len(),
                report.resumed.len(),
                report.rows_written,
                report.shards_written,
                report.elapsed.as_secs_f64()
            ));
            for b in s3.iter().filter(|s| s.throttled > 0) {
                emit(&format!(
                    "{}: {} requests throttled and retried; request concurrency went down to {} of {}, now {}",
                    b.bucket, b.throttled, b.lowest_limit, b.max, b.limit
                ));
            }
            match committed {
                Some(c) => emit(&format!(
                    "committed {}@{} ({} rows, {} shards, {}); see `smelt catalog show {}@{}`",
                    c.manifest.dataset,
                    c.manifest.version,
                    c.manifest.totals.rows,
                    c.manifest.totals.shards,
                    human_bytes(c.manifest.totals.bytes),
                    c.manifest.dataset,
                    c.manifest.version
                )),
                None => emit(&format!("rank {rank} done; when every rank is done: smelt commit {run_id}")),
            }
            if let Some(r) = &outcome.published {
                emit(&published_line(r));
            }
            if !outcome.expired.is_empty() {
                emit(&expired_line(&p.dataset, &outcome.expired));
            }
            if let Some(t) = train {
                emit(&format!(
                    "train command exited with {} after {:.1}s",
                    t.exit_code.map_or_else(|| "no code".into(), |c| c.to_string()),
                    t.elapsed_s
                ));
            }
        }
    }
    if let (Some(t), Some(c)) = (train, committed) {
        if let Some(failed) = t.failure(&c.manifest.dataset, c.manifest.version) {
            return Err(failed.into());
        }
    }
    Ok(())
}

/// Resolves when SIGTERM arrives (never, if it cannot be listened for).
async fn sigterm() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

async fn sample(p: &Pipeline, n: usize, parallelism: usize, format: Format) -> anyhow::Result<()> {
    let report = smelt_engine::sample(p, n, parallelism).await?;
    let mut rows = Vec::new();
    for b in &report.batches {
        let col = |name: &str| b.column_by_name(name).cloned();
        let (id, url, text) = (col("id"), col("url"), col("text"));
        for i in 0..b.num_rows() {
            let s = |c: &Option<arrow::array::ArrayRef>| {
                c.as_ref().and_then(|c| smelt_engine::str_at(c, i)).map(str::to_string)
            };
            rows.push((s(&id).unwrap_or_default(), s(&url), s(&text).unwrap_or_default()));
        }
    }
    match format {
        Format::Json => emit_json(&serde_json::json!({
            "dry_run": true,
            "splits_read": report.splits_read,
            "rows": rows.len(),
            "stages": report.stages,
            "documents": rows.iter().map(|(id, url, text)| serde_json::json!({"id": id, "url": url, "chars": text.chars().count(),
                "text": text.chars().take(500).collect::<String>()})).collect::<Vec<_>>(),
        })),
        Format::Table => {
            let preview: Vec<Vec<String>> = rows
                .iter()
                .take(20)
                .map(|(id, url, text)| {
                    let snippet: String =
                        text.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(60).collect();
                    vec![
                        id.chars().take(45).collect(),
                        url.clone().unwrap_or_default().chars().take(50).collect(),
                        text.chars().count().to_string(),
                        snippet,
                    ]
                })
                .collect();
            emit(&table(&["id", "url", "chars", "text"], &preview));
            if rows.len() > preview.len() {
                emit(&format!("... {} more rows", rows.len() - preview.len()));
            }
            emit(&funnel_table(&report.stages));
            emit(&format!(
                "dry run: {} rows from {} splits; nothing written or committed",
                rows.len(),
                report.splits_read
            ));
        }
    }
    Ok(())
}

async fn sql(data_dir: &Path, query: &str, format: SqlFmt, output: Option<&Path>) -> anyhow::Result<()> {
    use smelt_query::sql::SqlFormat;
    let f = match format {
        SqlFmt::Table => SqlFormat::Table,
        SqlFmt::Csv => SqlFormat::Csv,
        SqlFmt::Json => SqlFormat::Json,
        SqlFmt::Parquet => SqlFormat::Parquet,
    };
    if f == SqlFormat::Parquet && output.is_none() {
        return Err(EngineError::User("--format parquet writes a file: add --output FILE.parquet".into()).into());
    }
    let catalog = Workspace::new(data_dir).open_catalog()?;
    let batches = smelt_query::sql::query(&catalog, query).await?;
    drop(catalog);
    match output {
        Some(path) => {
            let mut file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            smelt_query::sql::write_results(&batches, f, &mut file)?;
            eprintln!("wrote {} rows to {}", batches.iter().map(|b| b.num_rows()).sum::<usize>(), path.display());
        }
        None => {
            let mut buf = Vec::new();
            smelt_query::sql::write_results(&batches, f, &mut buf)?;
            emit(&String::from_utf8_lossy(&buf));
        }
    }
    Ok(())
}

async fn commit(
    data_dir: &Path,
    run_id: &str,
    pipeline: Option<&Path>,
    openlineage: Option<&str>,
    format: Format,
) -> anyhow::Result<()> {
    use smelt_runner::openlineage::{Emitter, Target};
    let ws = Workspace::new(data_dir);
    let target = match openlineage {
        Some(t) => Some(Target::parse(t).map_err(EngineError::User)?),
        None => Target::from_env(),
    };
    let out = match smelt_runner::commit(&ws, run_id, pipeline).await {
        Ok(out) => out,
        Err(e) => {
            // The run's dataset names the job; a run this data directory does not know sends nothing.
            if let (Some(t), Ok(ptr)) = (target, ws.read_pointer(run_id)) {
                Emitter::new(t, &ptr.dataset, run_id, &ptr.pipeline).fail(&e.to_string()).await;
            }
            return Err(catalog_first(e));
        }
    };
    let m = &out.committed.manifest;
    let newly = out.committed.newly_committed;
    if let (Some(t), true) = (target, newly) {
        let root = ws.read_pointer(run_id).map(|p| p.root_url).unwrap_or_default();
        Emitter::new(t, &m.dataset, run_id, &m.lineage.pipeline_path).complete(m, &root).await;
    }
    match format {
        Format::Json => {
            emit_json(&serde_json::json!({"dataset": m.dataset, "version": m.version, "newly_committed": newly,
            "rows": m.totals.rows, "shards": m.totals.shards, "digest": m.digest, "expired": out.expired,
            "published": out.published}))
        }
        Format::Table => {
            emit(&format!(
                "{} {}@{} ({} rows, {} shards)",
                if newly { "committed" } else { "already committed as" },
                m.dataset,
                m.version,
                m.totals.rows,
                m.totals.shards
            ));
            if let Some(r) = &out.published {
                emit(&published_line(r));
            }
            if !out.expired.is_empty() {
                emit(&expired_line(&m.dataset, &out.expired));
            }
        }
    }
    if let Some(t) = out.train {
        eprintln!("train command exited with {}", t.exit_code.map_or_else(|| "no code".into(), |c| c.to_string()));
        if let Some(failed) = t.failure(&m.dataset, m.version) {
            return Err(failed.into());
        }
    }
    Ok(())
}

/// What the pipeline's `publish:` decided after a commit.
pub(crate) fn published_line(r: &smelt_catalog::publish::PublishRecord) -> String {
    if r.published {
        let how = if r.forced { " (forced)" } else { "" };
        format!("published {}@{} as {}@{}{how}", r.dataset, r.version, r.dataset, r.tag)
    } else {
        format!(
            "not published: {}@{} keeps pointing at {}; failed checks: {} (`smelt catalog publish {}@{} --force --reason ...` overrides)",
            r.dataset,
            r.tag,
            r.against.map_or_else(|| "nothing".to_string(), |v| format!("{}@{v}", r.dataset)),
            r.failed().join("; "),
            r.dataset,
            r.version
        )
    }
}

/// What the pipeline's `retention:` expired after a commit.
fn expired_line(dataset: &str, versions: &[u64]) -> String {
    let names: Vec<String> = versions.iter().map(|v| format!("{dataset}@{v}")).collect();
    format!("retention expired {} (manifests in _expired/; `smelt catalog gc` removes their shards)", names.join(", "))
}

/// A catalog error as itself (its kind decides the exit code), others as they are.
fn catalog_first(e: EngineError) -> anyhow::Error {
    match e {
        EngineError::Catalog(c) => c.into(),
        other => other.into(),
    }
}
