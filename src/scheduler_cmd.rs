//! `smelt scheduler` and `smelt backfill`: arguments into the runner's
//! scheduler, its lines on stderr, signals into [`Signal`]s, and the
//! backfill's intervals and results printed.
//!
//! ```text
//! SchedulerArgs ─ pipelines (+ --dir's with schedule:) ─► load_job ─► try_lock ─► driver::Scheduler::run
//! BackfillArgs  ─► backfill::plan ─► table/JSON │ backfill::queue ─► Scheduler (Mode::Backfill) ─► results
//! SIGTERM/SIGINT ─► Signal::Stop      SIGUSR1 (a backfill queued runs) ─► Signal::Wake
//! ```

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::Utc;
use clap::Args;
use smelt_engine::schedule::rfc3339;
use smelt_engine::EngineError;
use smelt_runner::scheduler::backfill::{self, BackfillResult, Queued};
use smelt_runner::scheduler::driver::{Scheduler, Signal};
use smelt_runner::scheduler::{absolute_data_dir, load_job, try_lock, Clock as _, Mode, SystemClock};
use smelt_runner::Workspace;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::output::{emit, emit_json, table, Format};

/// `smelt scheduler` arguments.
#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// Pipeline files with a `schedule:` block.
    pub pipelines: Vec<PathBuf>,
    /// Every `*.yaml` / `*.yml` file with a `schedule:` block in this directory (others are ignored).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Testing aid: the scheduler's clock starts at this time (RFC 3339) and runs on in real time.
    #[arg(long, env = "SMELT_NOW", value_name = "TIME")]
    pub now: Option<String>,
    /// Run what is due now (with its retries), wait for it, then exit.
    #[arg(long)]
    pub once: bool,
    /// `--parallelism` of each run (default: the pipeline's, else the number of cores).
    #[arg(long, value_name = "N")]
    pub parallelism: Option<usize>,
    /// With `catchup: true`, at most this many of the most recent missed intervals are considered.
    #[arg(long, value_name = "N", default_value = "1000")]
    pub max_catchup: usize,
}

/// `smelt backfill` arguments.
#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// Pipeline file with a `schedule:` block.
    pub pipeline: PathBuf,
    /// First interval start to consider (RFC 3339, or a date / local time in the schedule's timezone).
    #[arg(long, value_name = "TIME")]
    pub from: String,
    /// Intervals ending after this are left out (default: now).
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Run every interval in the range again, committed ones too (each as a new version).
    #[arg(long)]
    pub rerun: bool,
    /// List the intervals that would run; run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Testing aid: what "now" is (RFC 3339); intervals ending after it are not run.
    #[arg(long, env = "SMELT_NOW", value_name = "TIME")]
    pub now: Option<String>,
    /// `--parallelism` of each run.
    #[arg(long, value_name = "N")]
    pub parallelism: Option<usize>,
    /// Output format of the list.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

fn say(msg: &str) {
    let line = format!("{} scheduler: {msg}\n", rfc3339(Utc::now()));
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// SIGTERM and SIGINT as [`Signal::Stop`], SIGUSR1 (a backfill queued runs) as [`Signal::Wake`].
fn signals() -> anyhow::Result<UnboundedReceiver<Signal>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut usr1 = signal(SignalKind::user_defined1()).context("cannot listen for SIGUSR1")?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let s = tokio::select! {
                _ = term.recv() => Signal::Stop,
                _ = int.recv() => Signal::Stop,
                _ = usr1.recv() => Signal::Wake,
            };
            if tx.send(s).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

fn smelt_exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("cannot find the smelt binary")
}

/// `smelt scheduler`.
///
/// # Errors
/// No pipelines, a pipeline without `schedule:`, another scheduler on this data directory, catalog failures.
pub async fn scheduler(data_dir: &Path, args: SchedulerArgs) -> anyhow::Result<()> {
    let ws = Workspace::new(data_dir);
    let mut paths = args.pipelines.clone();
    if let Some(dir) = &args.dir {
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read --dir {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        found.sort();
        for p in found {
            // Files without `schedule:` are not the scheduler's; say so, do not fail.
            match ws.load(&p) {
                Ok(pl) if pl.schedule.is_some() => {
                    paths.push(p);
                }
                Ok(_) => say(&format!("{}: no `schedule:`, ignored", p.display())),
                Err(e) => return Err(anyhow::Error::new(e).context(format!("in --dir {}", dir.display()))),
            }
        }
    }
    if paths.is_empty() {
        return Err(
            EngineError::User("give pipeline files (`smelt scheduler a.yaml b.yaml`) or `--dir DIR`".into()).into()
        );
    }
    let jobs = paths.iter().map(|p| load_job(&ws, p)).collect::<Result<Vec<_>, _>>()?;
    let data_dir = absolute_data_dir(&ws)?;
    let _lock = match try_lock(&data_dir)? {
        Ok(l) => l,
        Err(holder) => {
            return Err(EngineError::User(format!(
                "another scheduler or backfill runs on {} ({holder}); one per data directory",
                data_dir.display()
            ))
            .into())
        }
    };
    let clock = SystemClock::from_arg(args.now.as_deref())?;
    for j in &jobs {
        if let Some(o) = &j.schedule.on_commit {
            say(&format!(
                "{}: dataset `{}`, after each commit of {o}, catchup {}, max_active_runs {}",
                j.path.display(),
                j.dataset,
                j.schedule.catchup,
                j.schedule.max_active_runs
            ));
            continue;
        }
        let next = j.schedule.next_fire(clock.now(), false).map_or_else(|| "never".into(), rfc3339);
        say(&format!(
            "{}: dataset `{}`, cron `{}` ({}), catchup {}, max_active_runs {}, next interval ends {next}",
            j.path.display(),
            j.dataset,
            j.schedule.cron,
            j.schedule.timezone,
            j.schedule.catchup,
            j.schedule.max_active_runs
        ));
    }
    if args.now.is_some() {
        say(&format!("clock starts at {} (--now / SMELT_NOW; a testing aid)", rfc3339(clock.now())));
    }
    let mode = Mode::Schedule { max_catchup: args.max_catchup.max(1) };
    let mut s = Scheduler::new(data_dir, jobs, Box::new(clock), smelt_exe()?, args.parallelism, mode, Box::new(say));
    s.run(args.once, &mut signals()?).await?;
    Ok(())
}

/// `smelt backfill`.
///
/// # Errors
/// A pipeline without `schedule:`, bad times, catalog failures, or runs that failed.
pub async fn backfill(data_dir: &Path, args: BackfillArgs) -> anyhow::Result<()> {
    let ws = Workspace::new(data_dir);
    let job = load_job(&ws, &args.pipeline)?;
    let clock = SystemClock::from_arg(args.now.as_deref())?;
    let now = clock.now();
    let plan = backfill::plan(&ws, &job, &args.from, args.to.as_deref(), args.rerun, now)?;
    let data_dir = absolute_data_dir(&ws)?;
    let dataset = job.dataset.clone();
    let items: Vec<serde_json::Value> = plan
        .items
        .iter()
        .map(|it| {
            let rec = it.record.as_ref();
            serde_json::json!({"start": it.interval.start_str(), "end": it.interval.end_str(), "status": it.status,
                "version": it.version.map(|v| format!("{dataset}@{v}")), "run_id": rec.map(|r| r.run_id.clone()),
                "attempts": rec.map_or(0, |r| r.attempts), "last_error": rec.and_then(|r| r.last_error.clone())})
        })
        .collect();
    let intervals = plan.intervals.len();
    let show = |items: &[serde_json::Value], format: Format, header: &str| match format {
        Format::Json => emit_json(&serde_json::json!({"dataset": dataset, "from": rfc3339(plan.from),
            "to": rfc3339(plan.to), "intervals_in_range": intervals, "dry_run": args.dry_run, "intervals": items})),
        Format::Table => {
            let s = |v: &serde_json::Value| v.as_str().map_or_else(|| "-".to_string(), str::to_string);
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|i| {
                    vec![
                        s(&i["start"]),
                        s(&i["end"]),
                        s(&i["status"]),
                        s(&i["version"]),
                        i["attempts"].to_string(),
                        s(&i["last_error"]).lines().next().unwrap_or("").chars().take(60).collect(),
                    ]
                })
                .collect();
            emit(&table(&["start", "end", "status", "version", "attempts", "last error"], &rows));
            emit(header);
        }
    };
    if args.dry_run {
        show(
            &items,
            args.format,
            &format!("dry run: {} of {intervals} interval(s) in range would run; nothing started", plan.items.len()),
        );
        return Ok(());
    }
    if plan.items.is_empty() {
        show(
            &items,
            args.format,
            &format!("nothing to backfill: all {intervals} interval(s) in range are committed or in progress"),
        );
        return Ok(());
    }
    let (runs, queued) = backfill::queue(&data_dir, &job, &plan.items, Utc::now())?;
    let _lock = match queued {
        Queued::Here(l) => l,
        Queued::ForScheduler { holder } => {
            show(
                &items,
                args.format,
                &format!("queued {} interval(s) for the running scheduler ({holder})", plan.items.len()),
            );
            return Ok(());
        }
    };
    let mode = Mode::Backfill { runs: runs.clone() };
    let mut s = Scheduler::new(
        data_dir.clone(),
        vec![job],
        Box::new(clock),
        smelt_exe()?,
        args.parallelism,
        mode,
        Box::new(say),
    );
    s.run(true, &mut signals()?).await?;
    let mut failed = Vec::new();
    let mut done = Vec::new();
    for r in backfill::results(&ws, &runs)? {
        match r {
            BackfillResult::Committed { run_id, version } => {
                done.push(serde_json::json!({"run_id": run_id, "version": version}))
            }
            BackfillResult::Failed { run_id, status, last_error } => {
                failed.push(serde_json::json!({"run_id": run_id, "status": status, "last_error": last_error}))
            }
        }
    }
    match args.format {
        Format::Json => emit_json(&serde_json::json!({"dataset": dataset, "committed": done, "failed": failed})),
        Format::Table => {
            for d in &done {
                emit(&format!(
                    "{}: committed {}",
                    d["run_id"].as_str().unwrap_or(""),
                    d["version"].as_str().unwrap_or("")
                ));
            }
            for f in &failed {
                emit(&format!(
                    "{}: {} ({})",
                    f["run_id"].as_str().unwrap_or(""),
                    f["status"].as_str().unwrap_or("?"),
                    f["last_error"].as_str().unwrap_or("")
                ));
            }
        }
    }
    if !failed.is_empty() {
        return Err(anyhow::anyhow!(
            "{} of {} backfill run(s) failed; `smelt runs show RUN` has the reasons",
            failed.len(),
            runs.len()
        ));
    }
    Ok(())
}
