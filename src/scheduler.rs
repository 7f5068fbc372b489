//! `smelt scheduler` and `smelt backfill`: run pipelines' `schedule:` intervals.
//!
//! ```text
//!  pipelines with schedule: ──clock (real, or --now/SMELT_NOW)──► due intervals [start, end)
//!     minus committed ones (catalog `intervals`, written by the commit itself)
//!     ──► RunRecord in the catalog (run_states) ──► child `smelt run P --run-id R --interval START`
//!            exit 0: succeeded │ exit != 0: retry_wait (backoff) ... failed │ SIGTERM: interrupted
//!  restart (after SIGTERM or kill -9): running/interrupted records relaunch with the same run id,
//!  so the engine's resume skips finished splits and the interval commits once.
//! ```
//! One scheduler (or foreground backfill) per data directory holds
//! `scheduler.lock`; a backfill started while a scheduler runs queues its
//! intervals as `pending` records, which that scheduler runs. Runs are child
//! processes (their logs go to `<data dir>/scheduler/logs/`); they die with
//! the scheduler (`PR_SET_PDEATHSIG`), so a killed scheduler never leaves a
//! run behind that the next one would duplicate.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::Args;
use smelt_catalog::{Attempt, Catalog, RunInterval, RunRecord, RunStatus};
use smelt_engine::schedule::{backoff, jitter, parse_time, rfc3339};
use smelt_engine::{EngineError, Interval, Pipeline, Schedule};

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

/// The scheduler's clock: real time, or real time shifted so that it started at `--now`.
#[derive(Debug, Clone, Copy)]
struct Clock {
    origin: DateTime<Utc>,
    started: Instant,
}

impl Clock {
    fn new(now: Option<&str>) -> anyhow::Result<Self> {
        let origin = match now {
            Some(s) => {
                parse_time(s, chrono_tz::UTC).map_err(|e| EngineError::User(format!("--now / SMELT_NOW: {e}")))?
            }
            None => Utc::now(),
        };
        Ok(Clock { origin, started: Instant::now() })
    }

    fn now(&self) -> DateTime<Utc> {
        self.origin + chrono::Duration::from_std(self.started.elapsed()).unwrap_or_default()
    }
}

/// A pipeline the scheduler runs.
struct Job {
    path: PathBuf,
    p: Pipeline,
    schedule: Schedule,
}

impl Job {
    fn run_interval(&self, i: &Interval) -> RunInterval {
        RunInterval {
            start: i.start_str(),
            end: i.end_str(),
            cron: self.schedule.cron.clone(),
            timezone: self.schedule.timezone.clone(),
        }
    }
}

fn load_job(path: &Path, data_dir: &Path) -> anyhow::Result<Job> {
    let abs = std::fs::canonicalize(path).with_context(|| format!("cannot find pipeline {}", path.display()))?;
    let p = smelt_runner::Workspace::new(data_dir).load(&abs)?;
    let Some(schedule) = p.schedule.clone() else {
        return Err(EngineError::User(format!(
            "{} has no `schedule:` block; add one (docs/scheduling.md), e.g.\nschedule:\n  cron: \"0 * * * *\"\n  timezone: UTC",
            path.display()
        ))
        .into());
    };
    Ok(Job { path: abs, p, schedule })
}

fn say(msg: &str) {
    let line = format!("{} scheduler: {msg}\n", rfc3339(Utc::now()));
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// The data directory's scheduler lock, held while a scheduler or a foreground backfill runs.
struct Lock {
    _file: std::fs::File,
}

fn try_lock(data_dir: &Path) -> anyhow::Result<Result<Lock, String>> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
    let path = data_dir.join("scheduler.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    use std::os::fd::AsRawFd as _;
    // SAFETY: flock on a file descriptor this function owns.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        return Ok(Err(holder.trim().to_string()));
    }
    file.set_len(0)?;
    let _ = writeln!(file, "pid {}: {}", std::process::id(), std::env::args().collect::<Vec<_>>().join(" "));
    Ok(Ok(Lock { _file: file }))
}

/// RFC 3339 with milliseconds (attempt times: runs can be shorter than a second).
fn millis(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn compact(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// The run id of the first run of an interval.
fn interval_run_id(dataset: &str, i: &Interval) -> String {
    format!("{dataset}-{}", compact(i.start))
}

fn logs_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("scheduler").join("logs")
}

/// A child `smelt run` of this scheduler.
struct Active {
    run_id: String,
    job: usize,
    child: Child,
}

/// What the loop runs: what the schedules make due, or a fixed set of runs (backfill).
enum Mode {
    Schedule { max_catchup: usize },
    Backfill { runs: BTreeSet<String> },
}

struct Scheduler {
    data_dir: PathBuf,
    jobs: Vec<Job>,
    clock: Clock,
    parallelism: Option<usize>,
    active: Vec<Active>,
    mode: Mode,
}

fn open(data_dir: &Path) -> anyhow::Result<Catalog> {
    Ok(smelt_runner::Workspace::new(data_dir).open_catalog()?)
}

/// Whether process `pid` is a `smelt run --run-id RUN_ID` (a run of a scheduler that was killed a moment ago).
fn pid_alive_with(pid: u32, run_id: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        let args: Vec<&[u8]> = c.split(|&b| b == 0).collect();
        args.windows(2).any(|w| w[0] == b"--run-id" && w[1] == run_id.as_bytes())
    })
}

/// The end of a run's log: from its last `error:` line (or the last lines).
fn last_error(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let from = lines.iter().rposition(|l| l.starts_with("error:")).unwrap_or(lines.len().saturating_sub(3));
    let mut s = lines[from..].join("\n");
    if s.len() > 2000 {
        let mut cut = 2000;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    if s.is_empty() {
        "the run exited without a message".into()
    } else {
        s
    }
}

impl Scheduler {
    fn is_active(&self, run_id: &str) -> bool {
        self.active.iter().any(|a| a.run_id == run_id)
    }

    /// Starts an attempt of `rec` as a child process and records it.
    fn launch(&mut self, c: &Catalog, job: usize, mut rec: RunRecord) -> anyhow::Result<()> {
        let j = &self.jobs[job];
        let dir = logs_dir(&self.data_dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let attempt = rec.attempts + 1;
        let log_path = dir.join(format!("{}.{attempt}.log", rec.run_id));
        let log = std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
        let mut cmd = Command::new(std::env::current_exe().context("cannot find the smelt binary")?);
        cmd.arg("--data-dir").arg(&self.data_dir).arg("run").arg(&j.path).args([
            "--run-id",
            &rec.run_id,
            "--no-progress",
            "--format",
            "json",
        ]);
        if let Some(i) = &rec.interval {
            cmd.args(["--interval", &i.start]);
        }
        if let Some(n) = self.parallelism {
            cmd.args(["--parallelism", &n.to_string()]);
        }
        cmd.env_remove("SMELT_NOW").stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt as _;
            let parent = std::process::id();
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    // The run dies with the scheduler (even on kill -9): a restarted scheduler resumes it instead.
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 || libc::getppid() as u32 != parent {
                        return Err(std::io::Error::other("the scheduler exited"));
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().context("cannot start `smelt run`")?;
        let now = millis(Utc::now());
        rec.status = RunStatus::Running;
        rec.attempts = attempt;
        rec.pid = Some(child.id());
        rec.next_attempt_at = None;
        rec.updated_at = now.clone();
        rec.history.push(Attempt {
            number: attempt,
            started_at: now,
            finished_at: None,
            exit_code: None,
            log: log_path.display().to_string(),
        });
        c.put_run_record(&rec)?;
        say(&format!(
            "started {} ({}interval {} .. {}, attempt {attempt} of {}), log {}",
            rec.run_id,
            if rec.trigger == "backfill" { "backfill, " } else { "" },
            rec.interval.as_ref().map_or("-", |i| i.start.as_str()),
            rec.interval.as_ref().map_or("-", |i| i.end.as_str()),
            rec.max_attempts,
            log_path.display()
        ));
        self.active.push(Active { run_id: rec.run_id.clone(), job, child });
        Ok(())
    }

    /// Records the end of a child's attempt.
    fn finished(&self, c: &Catalog, a: &Active, code: Option<i32>, stopping: bool) -> anyhow::Result<()> {
        let Some(mut rec) = c.run_record(&a.run_id)? else { return Ok(()) };
        let now = Utc::now();
        let log = rec.history.last().map(|h| PathBuf::from(&h.log));
        if let Some(h) = rec.history.last_mut() {
            h.finished_at = Some(millis(now));
            h.exit_code = code;
        }
        rec.pid = None;
        rec.updated_at = rfc3339(now);
        let committed = c.run_version(&a.run_id)?;
        match (code, &committed) {
            (Some(0), _) | (_, Some(_)) => {
                rec.status = RunStatus::Succeeded;
                rec.last_error = None;
                let v = committed.as_ref().map_or_else(|| "?".into(), |(d, v)| format!("{d}@{v}"));
                say(&format!("{} committed {v}", a.run_id));
            }
            (Some(130) | None, _) if stopping => {
                rec.status = RunStatus::Interrupted;
                say(&format!("{} stopped; finished splits are kept and the next start resumes it", a.run_id));
            }
            _ => {
                let err = log.as_deref().map_or_else(|| "no log".into(), last_error);
                rec.last_error = Some(err.clone());
                let fatal = code == Some(2);
                if rec.attempts < rec.max_attempts && !fatal {
                    let wait = backoff(self.jobs[a.job].schedule.retry_backoff, rec.attempts, jitter(&a.run_id));
                    rec.status = RunStatus::RetryWait;
                    rec.next_attempt_at = Some(millis(now + chrono::Duration::from_std(wait).unwrap_or_default()));
                    say(&format!(
                        "{} failed (attempt {} of {}): {err}; retrying in {:.1}s",
                        a.run_id,
                        rec.attempts,
                        rec.max_attempts,
                        wait.as_secs_f64()
                    ));
                } else {
                    rec.status = RunStatus::Failed;
                    say(&format!(
                        "{} failed{}: {err}; `smelt backfill` runs it again",
                        a.run_id,
                        if fatal { " (a pipeline or usage error: not retried)" } else { " after every attempt" }
                    ));
                }
            }
        }
        c.put_run_record(&rec)?;
        Ok(())
    }

    /// Launches what can start now. Returns whether anything is left to wait
    /// for, and when to look again (the next interval end or retry, at most
    /// a minute: a backfill may queue runs meanwhile).
    fn plan(&mut self) -> anyhow::Result<(bool, Duration)> {
        let c = open(&self.data_dir)?;
        let records = c.run_records()?;
        let now = self.clock.now();
        let real_now = Utc::now();
        let mut waiting = false;
        let mut wake = Duration::from_secs(60);
        let mut soon = |at: DateTime<Utc>, from: DateTime<Utc>| {
            wake = wake.min((at - from).to_std().unwrap_or(Duration::ZERO).max(Duration::from_millis(50)));
        };
        for j in &self.jobs {
            if let Some(t) = j.schedule.next_fire(now, false) {
                soon(t, now);
            }
        }
        for r in records.iter().filter(|r| r.status == RunStatus::RetryWait) {
            if let Some(t) = r.next_attempt_at.as_deref().and_then(|t| DateTime::parse_from_rfc3339(t).ok()) {
                soon(t.with_timezone(&Utc), real_now);
            }
        }
        for job in 0..self.jobs.len() {
            let (dataset, pipeline) = (self.jobs[job].p.dataset.clone(), self.jobs[job].path.display().to_string());
            let mine: Vec<&RunRecord> = records.iter().filter(|r| r.pipeline == pipeline).collect();
            let wanted = |r: &RunRecord| match &self.mode {
                Mode::Schedule { .. } => true,
                Mode::Backfill { runs } => runs.contains(&r.run_id),
            };
            let mut slots_used = self.active.iter().filter(|a| a.job == job).count();
            // Records of runs that are still another process's (a scheduler killed a moment ago).
            for r in mine.iter().filter(|r| r.status == RunStatus::Running && !self.is_active(&r.run_id)) {
                if r.pid.is_some_and(|pid| pid_alive_with(pid, &r.run_id)) {
                    slots_used += 1;
                    waiting = true;
                    wake = wake.min(Duration::from_secs(1));
                }
            }
            slots_used += mine.iter().filter(|r| r.status == RunStatus::RetryWait && wanted(r)).count();
            let mut todo: Vec<(u8, String, RunRecord)> = Vec::new();
            for r in mine.iter().filter(|r| wanted(r) && !self.is_active(&r.run_id)) {
                match r.status {
                    RunStatus::Running if !r.pid.is_some_and(|pid| pid_alive_with(pid, &r.run_id)) => {
                        todo.push((0, r.interval.as_ref().map_or(String::new(), |i| i.start.clone()), (*r).clone()))
                    }
                    RunStatus::Interrupted => {
                        todo.push((0, r.interval.as_ref().map_or(String::new(), |i| i.start.clone()), (*r).clone()))
                    }
                    RunStatus::RetryWait => {
                        let at = r.next_attempt_at.as_deref().and_then(|t| DateTime::parse_from_rfc3339(t).ok());
                        waiting = true;
                        if at.is_none_or(|t| t <= real_now) {
                            slots_used -= 1; // its slot passes to its own next attempt
                            todo.push((
                                1,
                                r.interval.as_ref().map_or(String::new(), |i| i.start.clone()),
                                (*r).clone(),
                            ));
                        }
                    }
                    RunStatus::Pending => {
                        todo.push((2, r.interval.as_ref().map_or(String::new(), |i| i.start.clone()), (*r).clone()))
                    }
                    _ => {}
                }
            }
            if let Mode::Schedule { max_catchup } = self.mode {
                let j = &self.jobs[job];
                let committed: BTreeSet<String> =
                    c.committed_intervals(&dataset)?.into_iter().map(|(s, _)| s).collect();
                for i in j.schedule.due(now, max_catchup) {
                    let start = i.start_str();
                    if committed.contains(&start)
                        || mine.iter().any(|r| r.interval.as_ref().is_some_and(|x| x.start == start))
                    {
                        continue;
                    }
                    let now_s = rfc3339(real_now);
                    todo.push((
                        2,
                        start,
                        RunRecord {
                            run_id: interval_run_id(&dataset, &i),
                            dataset: dataset.clone(),
                            pipeline: pipeline.clone(),
                            interval: Some(j.run_interval(&i)),
                            status: RunStatus::Pending,
                            attempts: 0,
                            max_attempts: j.schedule.retries + 1,
                            last_error: None,
                            next_attempt_at: None,
                            pid: None,
                            trigger: "schedule".into(),
                            created_at: now_s.clone(),
                            updated_at: now_s,
                            history: Vec::new(),
                        },
                    ));
                }
            }
            todo.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
            let max = self.jobs[job].schedule.max_active_runs;
            for (_, _, rec) in todo {
                if slots_used >= max {
                    waiting = true;
                    break;
                }
                slots_used += 1;
                self.launch(&c, job, rec)?;
            }
        }
        Ok((waiting || !self.active.is_empty(), wake))
    }

    /// The loop: reap children, plan, sleep; stops on SIGTERM/SIGINT or, with `once`, when nothing is left.
    async fn run(&mut self, once: bool) -> anyhow::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
        let mut usr1 = signal(SignalKind::user_defined1()).context("cannot listen for SIGUSR1")?;
        let mut stopping = false;
        let mut forced = false;
        let mut last_plan: Option<Instant> = None;
        let mut plan_wait = Duration::ZERO;
        loop {
            // Reap.
            let mut ended = Vec::new();
            for (k, a) in self.active.iter_mut().enumerate() {
                if let Some(status) = a.child.try_wait()? {
                    ended.push((k, status.code()));
                }
            }
            if !ended.is_empty() {
                // The catalog may be held by another smelt process for a while: try again next turn.
                match open(&self.data_dir) {
                    Ok(c) => {
                        for &(k, code) in ended.iter().rev() {
                            let a = self.active.remove(k);
                            self.finished(&c, &a, code, stopping)?;
                        }
                        last_plan = None;
                    }
                    Err(e) => say(&format!("cannot record the end of a run yet: {e:#}")),
                }
            }
            if stopping {
                if self.active.is_empty() {
                    say("stopped");
                    return Ok(());
                }
            } else if last_plan.is_none_or(|t| t.elapsed() >= plan_wait) {
                let busy = match self.plan() {
                    Ok((b, wake)) => {
                        plan_wait = wake;
                        b
                    }
                    Err(e) => {
                        say(&format!("cannot plan runs now (retrying): {e:#}"));
                        plan_wait = Duration::from_secs(1);
                        true
                    }
                };
                last_plan = Some(Instant::now());
                if once && !busy {
                    say("nothing more is due; exiting (--once)");
                    return Ok(());
                }
            }
            let signalled = tokio::select! {
                _ = term.recv() => true,
                _ = int.recv() => true,
                // A backfill queued runs: look now.
                _ = usr1.recv() => {
                    last_plan = None;
                    false
                }
                _ = tokio::time::sleep(Duration::from_millis(25)) => false,
            };
            if signalled && stopping && !forced {
                // A second signal: stop now. Killed runs resume at the next start like interrupted ones.
                forced = true;
                say("second signal: killing the runs now (they resume at the next start)");
                for a in &self.active {
                    // SAFETY: signalling our own child by its pid.
                    unsafe {
                        libc::kill(a.child.id() as i32, libc::SIGKILL);
                    }
                }
            }
            if signalled && !stopping {
                stopping = true;
                say(&format!(
                    "stopping: {} run(s) are asked to stop (a commit in progress completes; otherwise finished splits are kept and the next start resumes the run with the same id)",
                    self.active.len()
                ));
                for a in &self.active {
                    // SAFETY: signalling our own child by its pid.
                    unsafe {
                        libc::kill(a.child.id() as i32, libc::SIGINT);
                    }
                }
            }
        }
    }
}

/// `smelt scheduler`.
///
/// # Errors
/// No pipelines, a pipeline without `schedule:`, another scheduler on this data directory, catalog failures.
pub async fn scheduler(data_dir: &Path, args: SchedulerArgs) -> anyhow::Result<()> {
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
            match smelt_runner::Workspace::new(data_dir).load(&p) {
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
    let jobs = paths.iter().map(|p| load_job(p, data_dir)).collect::<anyhow::Result<Vec<_>>>()?;
    let data_dir = std::fs::canonicalize(data_dir).or_else(|_| {
        std::fs::create_dir_all(data_dir)?;
        std::fs::canonicalize(data_dir)
    })?;
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
    let clock = Clock::new(args.now.as_deref())?;
    for j in &jobs {
        let next = j.schedule.next_fire(clock.now(), false).map_or_else(|| "never".into(), rfc3339);
        say(&format!(
            "{}: dataset `{}`, cron `{}` ({}), catchup {}, max_active_runs {}, next interval ends {next}",
            j.path.display(),
            j.p.dataset,
            j.schedule.cron,
            j.schedule.timezone,
            j.schedule.catchup,
            j.schedule.max_active_runs
        ));
    }
    if args.now.is_some() {
        say(&format!("clock starts at {} (--now / SMELT_NOW; a testing aid)", rfc3339(clock.now())));
    }
    let mut s = Scheduler {
        data_dir,
        jobs,
        clock,
        parallelism: args.parallelism,
        active: Vec::new(),
        mode: Mode::Schedule { max_catchup: args.max_catchup.max(1) },
    };
    s.run(args.once).await
}

/// Where an interval stands, for backfill.
fn interval_status(
    c: &Catalog,
    records: &[RunRecord],
    dataset: &str,
    i: &Interval,
) -> anyhow::Result<(String, Option<RunRecord>, Option<u64>)> {
    let start = i.start_str();
    let version = c.interval_version(dataset, &start)?;
    let rec = records
        .iter()
        .filter(|r| r.dataset == dataset && r.interval.as_ref().is_some_and(|x| x.start == start))
        .max_by(|a, b| a.created_at.cmp(&b.created_at))
        .cloned();
    let status = match (&version, &rec) {
        (Some(_), _) => "committed".to_string(),
        (None, Some(r)) => r.status.as_str().to_string(),
        (None, None) => "missing".to_string(),
    };
    Ok((status, rec, version))
}

/// `smelt backfill`.
///
/// # Errors
/// A pipeline without `schedule:`, bad times, catalog failures, or runs that failed.
pub async fn backfill(data_dir: &Path, args: BackfillArgs) -> anyhow::Result<()> {
    let job = load_job(&args.pipeline, data_dir)?;
    let tz = job.schedule.tz();
    let user = |e: String| anyhow::Error::from(EngineError::User(e));
    let clock = Clock::new(args.now.as_deref())?;
    let now = clock.now();
    let from = parse_time(&args.from, tz).map_err(|e| user(format!("--from: {e}")))?;
    let to = match &args.to {
        Some(t) => parse_time(t, tz).map_err(|e| user(format!("--to: {e}")))?.min(now),
        None => now,
    };
    if from >= to {
        return Err(user(format!("--from {} is not before --to {} (or now)", rfc3339(from), rfc3339(to))));
    }
    let intervals = job.schedule.intervals(from, to, 100_000);
    let data_dir = std::fs::canonicalize(data_dir).or_else(|_| {
        std::fs::create_dir_all(data_dir)?;
        std::fs::canonicalize(data_dir)
    })?;
    let pipeline = job.path.display().to_string();
    let dataset = job.p.dataset.clone();
    let mut plan: Vec<(Interval, String, Option<RunRecord>, Option<u64>)> = Vec::new();
    {
        let c = open(&data_dir)?;
        let records = c.run_records()?;
        for i in &intervals {
            let (status, rec, version) = interval_status(&c, &records, &dataset, i)?;
            // A `running` record whose process is gone belongs to a scheduler that was killed: it can run again.
            let active = rec.as_ref().is_some_and(|r| match r.status {
                RunStatus::Running => r.pid.is_some_and(|pid| pid_alive_with(pid, &r.run_id)),
                RunStatus::RetryWait | RunStatus::Pending => true,
                _ => false,
            });
            if (args.rerun && !active)
                || (version.is_none()
                    && !active
                    && !matches!(rec.as_ref().map(|r| r.status), Some(RunStatus::Succeeded)))
            {
                plan.push((*i, status, rec, version));
            }
        }
    }
    let items: Vec<serde_json::Value> = plan
        .iter()
        .map(|(i, status, rec, version)| {
            serde_json::json!({"start": i.start_str(), "end": i.end_str(), "status": status,
                "version": version.map(|v| format!("{dataset}@{v}")), "run_id": rec.as_ref().map(|r| r.run_id.clone()),
                "attempts": rec.as_ref().map_or(0, |r| r.attempts), "last_error": rec.as_ref().and_then(|r| r.last_error.clone())})
        })
        .collect();
    let show = |items: &[serde_json::Value], format: Format, header: &str| match format {
        Format::Json => emit_json(&serde_json::json!({"dataset": dataset, "from": rfc3339(from), "to": rfc3339(to),
            "intervals_in_range": intervals.len(), "dry_run": args.dry_run, "intervals": items})),
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
            &format!("dry run: {} of {} interval(s) in range would run; nothing started", plan.len(), intervals.len()),
        );
        return Ok(());
    }
    if plan.is_empty() {
        show(
            &items,
            args.format,
            &format!("nothing to backfill: all {} interval(s) in range are committed or in progress", intervals.len()),
        );
        return Ok(());
    }
    // Records for what runs: a failed or interrupted run resumes under its run id; a rerun of a committed interval gets a new one.
    let lock = try_lock(&data_dir)?;
    let mut runs = BTreeSet::new();
    {
        let c = open(&data_dir)?;
        let now_s = rfc3339(Utc::now());
        for (i, _, rec, version) in &plan {
            let rec = match rec {
                Some(r) if version.is_none() && r.status != RunStatus::Succeeded => RunRecord {
                    status: RunStatus::Pending,
                    max_attempts: r.attempts + job.schedule.retries + 1,
                    trigger: "backfill".into(),
                    updated_at: now_s.clone(),
                    ..r.clone()
                },
                _ => {
                    let base = interval_run_id(&dataset, i);
                    let run_id = if version.is_some() || rec.is_some() {
                        format!("{base}-rerun-{}", compact(Utc::now()))
                    } else {
                        base
                    };
                    RunRecord {
                        run_id,
                        dataset: dataset.clone(),
                        pipeline: pipeline.clone(),
                        interval: Some(job.run_interval(i)),
                        status: RunStatus::Pending,
                        attempts: 0,
                        max_attempts: job.schedule.retries + 1,
                        last_error: None,
                        next_attempt_at: None,
                        pid: None,
                        trigger: "backfill".into(),
                        created_at: now_s.clone(),
                        updated_at: now_s.clone(),
                        history: Vec::new(),
                    }
                }
            };
            runs.insert(rec.run_id.clone());
            c.put_run_record(&rec)?;
        }
    }
    let _lock = match lock {
        Ok(l) => l,
        Err(holder) => {
            // Wake the scheduler (its pid opens the lock file's line) so it runs them now.
            let pid = holder.strip_prefix("pid ").and_then(|r| r.split(':').next()).and_then(|p| p.parse::<i32>().ok());
            if let Some(pid) = pid.filter(|&p| p > 0) {
                // SAFETY: sending a signal; the scheduler listens for SIGUSR1.
                unsafe {
                    libc::kill(pid, libc::SIGUSR1);
                }
            }
            show(
                &items,
                args.format,
                &format!("queued {} interval(s) for the running scheduler ({holder})", plan.len()),
            );
            return Ok(());
        }
    };
    let mut s = Scheduler {
        data_dir: data_dir.clone(),
        jobs: vec![job],
        clock,
        parallelism: args.parallelism,
        active: Vec::new(),
        mode: Mode::Backfill { runs: runs.clone() },
    };
    s.run(true).await?;
    let c = open(&data_dir)?;
    let mut failed = Vec::new();
    let mut done = Vec::new();
    for id in &runs {
        let r = c.run_record(id)?;
        match (r, c.run_version(id)?) {
            (_, Some((d, v))) => done.push(serde_json::json!({"run_id": id, "version": format!("{d}@{v}")})),
            (r, None) => failed.push(serde_json::json!({"run_id": id, "status": r.as_ref().map(|r| r.status.as_str()),
                "last_error": r.and_then(|r| r.last_error)})),
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

/// The `--interval` of `smelt run`: the interval of the pipeline's schedule that starts at `start`.
///
/// # Errors
/// No `schedule:`, a bad time, or a time that does not start an interval.
pub fn interval_arg(p: &Pipeline, start: &str) -> anyhow::Result<RunInterval> {
    let Some(s) = &p.schedule else {
        return Err(EngineError::User(format!(
            "--interval needs a `schedule:` block in {} (docs/scheduling.md)",
            p.file
        ))
        .into());
    };
    let t = parse_time(start, s.tz()).map_err(|e| EngineError::User(format!("--interval: {e}")))?;
    let i = s.interval_at(t).map_err(|e| EngineError::User(format!("--interval: {e}")))?;
    Ok(RunInterval { start: i.start_str(), end: i.end_str(), cron: s.cron.clone(), timezone: s.timezone.clone() })
}
