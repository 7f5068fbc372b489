//! The scheduler's state machine (`smelt scheduler`, `smelt backfill`):
//! which intervals of a pipeline's `schedule:` are due, how attempts end,
//! retries with backoff, `max_active_runs`, and the data directory's lock.
//! Time comes from a [`Clock`] so the decisions are testable.
//!
//! ```text
//!  jobs (pipelines with schedule:) ──Clock::now (real, or started at --now)──► due intervals [start, end)
//!     minus committed ones (catalog `intervals`, written by the commit itself)
//!     ──plan──► RunRecords to launch (interrupted first, then retries past their backoff, then pending / new),
//!               at most max_active_runs per pipeline
//!  on_commit jobs: commit_triggers (the upstream versions not yet run after) ──plan──► one RunRecord per version
//!  attempt_ended(exit code) ─► succeeded │ retry_wait (backoff on Clock::wall) │ failed │ interrupted (stopping)
//!  driver::Scheduler runs the launches as child `smelt run P --run-id R --interval START`
//! ```
//! One scheduler (or foreground backfill) per data directory holds
//! `scheduler.lock`; a backfill started while a scheduler runs queues its
//! intervals as `pending` records, which that scheduler runs (see [`backfill`]).

pub mod backfill;
pub mod driver;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use smelt_catalog::{RunInterval, RunRecord, RunStatus};
use smelt_engine::schedule::{backoff, parse_time, rfc3339};
use smelt_engine::{EngineError, Interval, Pipeline, Schedule};

use crate::workspace::Workspace;

/// Where the scheduler's time comes from.
pub trait Clock: Send {
    /// The schedule's "now": which intervals have ended.
    fn now(&self) -> DateTime<Utc>;
    /// Wall-clock time: attempts' start and end, when a retry is due.
    fn wall(&self) -> DateTime<Utc>;
}

/// Real time, or real time shifted so that it started at `--now` (a testing aid).
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: DateTime<Utc>,
    started: Instant,
}

impl SystemClock {
    /// A clock that reads `start` now (`None`: the real time).
    pub fn starting_at(start: Option<DateTime<Utc>>) -> SystemClock {
        SystemClock { origin: start.unwrap_or_else(Utc::now), started: Instant::now() }
    }

    /// A clock from `--now` / `SMELT_NOW` (RFC 3339).
    ///
    /// # Errors
    /// A time that does not parse (user).
    pub fn from_arg(now: Option<&str>) -> Result<SystemClock, EngineError> {
        let start = now
            .map(|s| parse_time(s, chrono_tz::UTC).map_err(|e| EngineError::User(format!("--now / SMELT_NOW: {e}"))))
            .transpose()?;
        Ok(SystemClock::starting_at(start))
    }
}

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        self.origin + chrono::Duration::from_std(self.started.elapsed()).unwrap_or_default()
    }

    fn wall(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A pipeline the scheduler runs.
#[derive(Debug, Clone)]
pub struct Job {
    /// The pipeline file, absolute.
    pub path: PathBuf,
    /// Its dataset.
    pub dataset: String,
    /// Its `schedule:`.
    pub schedule: Schedule,
}

impl Job {
    /// The interval `i` as recorded in a run.
    pub fn run_interval(&self, i: &Interval) -> RunInterval {
        RunInterval {
            start: i.start_str(),
            end: i.end_str(),
            cron: self.schedule.cron.clone(),
            timezone: self.schedule.timezone.clone(),
        }
    }

    fn pipeline(&self) -> String {
        self.path.display().to_string()
    }

    /// A new `pending` record for the run after the commit of `upstream@v` (an `on_commit` schedule), made at `at`.
    pub fn commit_record(&self, upstream: &str, v: u64, at: &str) -> RunRecord {
        let mut r = self.pending(commit_run_id(&self.dataset, upstream, v), None, "on_commit", at);
        r.trigger_version = Some(format!("{upstream}@{v}"));
        r
    }

    /// A new `pending` record for interval `i`, made at `at`.
    pub fn new_record(&self, run_id: String, i: &Interval, trigger: &str, at: &str) -> RunRecord {
        self.pending(run_id, Some(self.run_interval(i)), trigger, at)
    }

    fn pending(&self, run_id: String, interval: Option<RunInterval>, trigger: &str, at: &str) -> RunRecord {
        RunRecord {
            run_id,
            dataset: self.dataset.clone(),
            pipeline: self.pipeline(),
            interval,
            status: RunStatus::Pending,
            attempts: 0,
            max_attempts: self.schedule.retries + 1,
            last_error: None,
            next_attempt_at: None,
            pid: None,
            trigger: trigger.into(),
            trigger_version: None,
            created_at: at.to_string(),
            updated_at: at.to_string(),
            history: Vec::new(),
        }
    }
}

/// Loads a pipeline the scheduler runs; it must have a `schedule:`.
///
/// # Errors
/// A missing file, a pipeline that does not compile or has no `schedule:` (user).
pub fn load_job(ws: &Workspace, path: &Path) -> Result<Job, EngineError> {
    let abs = std::fs::canonicalize(path)
        .map_err(|e| EngineError::External(format!("cannot find pipeline {}: {e}", path.display())))?;
    let p = ws.load(&abs)?;
    let Some(schedule) = p.schedule.clone() else {
        return Err(EngineError::User(format!(
            "{} has no `schedule:` block; add one (docs/scheduling.md), e.g.\nschedule:\n  cron: \"0 * * * *\"\n  timezone: UTC",
            path.display()
        )));
    };
    Ok(Job { path: abs, dataset: p.dataset, schedule })
}

/// The `--interval` of `smelt run`: the interval of the pipeline's schedule that starts at `start`.
///
/// # Errors
/// No `schedule:`, a bad time, or a time that does not start an interval (user).
pub fn interval_arg(p: &Pipeline, start: &str) -> Result<RunInterval, EngineError> {
    let Some(s) = &p.schedule else {
        return Err(EngineError::User(format!(
            "--interval needs a `schedule:` block in {} (docs/scheduling.md)",
            p.file
        )));
    };
    let t = parse_time(start, s.tz()).map_err(|e| EngineError::User(format!("--interval: {e}")))?;
    let i = s.interval_at(t).map_err(|e| EngineError::User(format!("--interval: {e}")))?;
    Ok(RunInterval { start: i.start_str(), end: i.end_str(), cron: s.cron.clone(), timezone: s.timezone.clone() })
}

/// The data directory, created if missing, as an absolute path.
///
/// # Errors
/// It cannot be created.
pub fn absolute_data_dir(ws: &Workspace) -> Result<PathBuf, EngineError> {
    let data_dir = ws.data_dir();
    std::fs::canonicalize(data_dir)
        .or_else(|_| {
            std::fs::create_dir_all(data_dir)?;
            std::fs::canonicalize(data_dir)
        })
        .map_err(|e| EngineError::External(e.to_string()))
}

/// The data directory's scheduler lock, held while a scheduler or a foreground backfill runs.
#[derive(Debug)]
pub struct Lock {
    _file: std::fs::File,
}

/// Takes the data directory's scheduler lock, or returns what its holder
/// wrote in it (`pid N: command line`).
///
/// # Errors
/// The lock file cannot be made.
pub fn try_lock(data_dir: &Path) -> Result<Result<Lock, String>, EngineError> {
    let io = |what: &str, e: std::io::Error| EngineError::External(format!("{what}: {e}"));
    std::fs::create_dir_all(data_dir).map_err(|e| io(&format!("cannot create {}", data_dir.display()), e))?;
    let path = data_dir.join("scheduler.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io(&format!("cannot open {}", path.display()), e))?;
    use std::os::fd::AsRawFd as _;
    // SAFETY: flock on a file descriptor this function owns.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        return Ok(Err(holder.trim().to_string()));
    }
    file.set_len(0).map_err(|e| EngineError::External(e.to_string()))?;
    let _ = writeln!(file, "pid {}: {}", std::process::id(), std::env::args().collect::<Vec<_>>().join(" "));
    Ok(Ok(Lock { _file: file }))
}

/// RFC 3339 with milliseconds (attempt times: runs can be shorter than a second).
pub fn millis(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `20240501T000000Z`.
pub fn compact(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// The run id of the first run of an interval.
pub fn interval_run_id(dataset: &str, i: &Interval) -> String {
    format!("{dataset}-{}", compact(i.start))
}

/// The run id of the run after the commit of `upstream@v`.
pub fn commit_run_id(dataset: &str, upstream: &str, v: u64) -> String {
    format!("{dataset}-after-{upstream}-{v}")
}

/// How often the scheduler looks for upstream commits (`on_commit` schedules).
pub const COMMIT_POLL: Duration = Duration::from_secs(2);

/// The upstream versions an `on_commit` job is due to run after, oldest
/// first: none until the upstream has a version; then, the first time, only
/// the version the selector names now; afterwards every version after the
/// last one run after or read (with `catchup`), or only the newest.
/// A tag follows the versions it moves to: each one not yet run after.
///
/// # Errors
/// Catalog failures.
pub fn commit_triggers(c: &smelt_catalog::Catalog, job: &Job, records: &[RunRecord]) -> Result<Vec<u64>, EngineError> {
    let Some(o) = &job.schedule.on_commit else { return Ok(Vec::new()) };
    let current = if o.selector == "latest" {
        c.dataset(&o.dataset)?.map(|d| d.latest).filter(|v| *v > 0)
    } else {
        c.tag_version(&o.dataset, &o.selector)?
    };
    let Some(current) = current else { return Ok(Vec::new()) };
    let prefix = format!("{}@", o.dataset);
    let pipeline = job.pipeline();
    let mut consumed: BTreeSet<u64> = records
        .iter()
        .filter(|r| r.pipeline == pipeline)
        .filter_map(|r| r.trigger_version.as_deref()?.strip_prefix(&prefix)?.parse().ok())
        .collect();
    // A downstream version made by hand (`smelt run`) counts too: what its latest version read.
    if let Some(d) = c.dataset(&job.dataset)? {
        if let Some(m) = c.manifest(&job.dataset, d.latest)? {
            consumed.extend(
                m.lineage
                    .inputs
                    .iter()
                    .filter_map(|i| i.id.split_once('#')?.0.strip_prefix(&prefix)?.parse::<u64>().ok()),
            );
        }
    }
    if o.selector != "latest" {
        return Ok(if consumed.contains(&current) { Vec::new() } else { vec![current] });
    }
    Ok(match consumed.last() {
        None => vec![current],
        Some(&last) if job.schedule.catchup => {
            c.versions(&o.dataset)?.iter().map(|v| v.version).filter(|v| *v > last && *v <= current).collect()
        }
        Some(&last) if current > last => vec![current],
        Some(_) => Vec::new(),
    })
}

/// Where attempts' logs go.
pub fn logs_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("scheduler").join("logs")
}

/// Whether process `pid` is a `smelt run --run-id RUN_ID` (a run of a scheduler that was killed a moment ago).
pub fn pid_alive_with(pid: u32, run_id: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        let args: Vec<&[u8]> = c.split(|&b| b == 0).collect();
        args.windows(2).any(|w| w[0] == b"--run-id" && w[1] == run_id.as_bytes())
    })
}

/// The end of a run's log: from its last `error:` line (or the last lines).
pub fn last_error(log: &Path) -> String {
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

/// What the scheduler runs: what the schedules make due, or a fixed set of runs (backfill).
#[derive(Debug, Clone)]
pub enum Mode {
    /// Intervals as they come due; with catch-up, at most `max_catchup` of the latest missed ones.
    Schedule {
        /// The limit on missed intervals considered.
        max_catchup: usize,
    },
    /// These runs' records only.
    Backfill {
        /// Run ids.
        runs: BTreeSet<String>,
    },
}

/// What the scheduler sees when it plans.
#[derive(Debug, Clone, Copy)]
pub struct World<'a> {
    /// Every run record in the catalog.
    pub records: &'a [RunRecord],
    /// Per dataset, the starts of its committed intervals.
    pub committed: &'a BTreeMap<String, BTreeSet<String>>,
    /// Runs this scheduler has started and not seen end: (run id, job index).
    pub active: &'a [(String, usize)],
    /// Per pipeline of an `on_commit` job, the upstream versions due ([`commit_triggers`]).
    pub triggers: &'a BTreeMap<String, Vec<u64>>,
    /// Whether process `pid` is still the run `run_id` of another scheduler.
    pub alive: fn(u32, &str) -> bool,
}

/// What to start now, whether anything is left to wait for, and when to look again.
#[derive(Debug, Clone)]
pub struct Plan {
    /// (job index, record) to launch, in order.
    pub launch: Vec<(usize, RunRecord)>,
    /// Runs are waiting (a retry's backoff, a free slot, another process's run).
    pub waiting: bool,
    /// When to plan again: the next interval end or retry, at most a minute
    /// (a backfill may queue runs meanwhile).
    pub wake: Duration,
}

/// Decides what can start now: interrupted runs (and runs of a killed
/// scheduler) first, then retries whose backoff has passed, then pending
/// records and newly due intervals, oldest first, each pipeline at most
/// `max_active_runs` at once (runs waiting to retry keep their slot).
pub fn plan(jobs: &[Job], mode: &Mode, w: World<'_>, clock: &dyn Clock) -> Plan {
    let now = clock.now();
    let wall = clock.wall();
    let mut waiting = false;
    let mut wake = Duration::from_secs(60);
    let mut soon = |at: DateTime<Utc>, from: DateTime<Utc>| {
        wake = wake.min((at - from).to_std().unwrap_or(Duration::ZERO).max(Duration::from_millis(50)));
    };
    for j in jobs {
        if let Some(t) = j.schedule.next_fire(now, false) {
            soon(t, now);
        }
        if j.schedule.on_commit.is_some() {
            soon(now + COMMIT_POLL, now);
        }
    }
    for r in w.records.iter().filter(|r| r.status == RunStatus::RetryWait) {
        if let Some(t) = r.next_attempt_at.as_deref().and_then(|t| DateTime::parse_from_rfc3339(t).ok()) {
            soon(t.with_timezone(&Utc), wall);
        }
    }
    let is_active = |run_id: &str| w.active.iter().any(|(id, _)| id == run_id);
    // Runs go oldest first: by interval start, or by the number of the upstream version that triggered them.
    let trigger_key =
        |tv: &str| tv.rsplit_once('@').and_then(|(_, v)| v.parse::<u64>().ok()).map(|v| format!("{v:020}"));
    let start_of = |r: &RunRecord| {
        r.interval
            .as_ref()
            .map(|i| i.start.clone())
            .or_else(|| r.trigger_version.as_deref().and_then(trigger_key))
            .unwrap_or_default()
    };
    let mut launch = Vec::new();
    for (job, j) in jobs.iter().enumerate() {
        let pipeline = j.pipeline();
        let mine: Vec<&RunRecord> = w.records.iter().filter(|r| r.pipeline == pipeline).collect();
        let wanted = |r: &RunRecord| match mode {
            Mode::Schedule { .. } => true,
            Mode::Backfill { runs } => runs.contains(&r.run_id),
        };
        let mut slots_used = w.active.iter().filter(|(_, k)| *k == job).count();
        // Records of runs that are still another process's (a scheduler killed a moment ago).
        for r in mine.iter().filter(|r| r.status == RunStatus::Running && !is_active(&r.run_id)) {
            if r.pid.is_some_and(|pid| (w.alive)(pid, &r.run_id)) {
                slots_used += 1;
                waiting = true;
                wake = wake.min(Duration::from_secs(1));
            }
        }
        slots_used += mine.iter().filter(|r| r.status == RunStatus::RetryWait && wanted(r)).count();
        let mut todo: Vec<(u8, String, RunRecord)> = Vec::new();
        for r in mine.iter().filter(|r| wanted(r) && !is_active(&r.run_id)) {
            match r.status {
                RunStatus::Running if !r.pid.is_some_and(|pid| (w.alive)(pid, &r.run_id)) => {
                    todo.push((0, start_of(r), (*r).clone()))
                }
                RunStatus::Interrupted => todo.push((0, start_of(r), (*r).clone())),
                RunStatus::RetryWait => {
                    let at = r.next_attempt_at.as_deref().and_then(|t| DateTime::parse_from_rfc3339(t).ok());
                    waiting = true;
                    if at.is_none_or(|t| t <= wall) {
                        slots_used -= 1; // its slot passes to its own next attempt
                        todo.push((1, start_of(r), (*r).clone()));
                    }
                }
                RunStatus::Pending => todo.push((2, start_of(r), (*r).clone())),
                _ => {}
            }
        }
        if let (Mode::Schedule { .. }, Some(o)) = (mode, &j.schedule.on_commit) {
            for v in w.triggers.get(&pipeline).into_iter().flatten() {
                let tv = format!("{}@{v}", o.dataset);
                if !mine.iter().any(|r| r.trigger_version.as_deref() == Some(tv.as_str())) {
                    todo.push((2, format!("{v:020}"), j.commit_record(&o.dataset, *v, &rfc3339(wall))));
                }
            }
        } else if let Mode::Schedule { max_catchup } = mode {
            let committed = w.committed.get(&j.dataset);
            for i in j.schedule.due(now, *max_catchup) {
                let start = i.start_str();
                if committed.is_some_and(|c| c.contains(&start))
                    || mine.iter().any(|r| r.interval.as_ref().is_some_and(|x| x.start == start))
                {
                    continue;
                }
                let rec = j.new_record(interval_run_id(&j.dataset, &i), &i, "schedule", &rfc3339(wall));
                todo.push((2, start, rec));
            }
        }
        todo.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        for (_, _, rec) in todo {
            if slots_used >= j.schedule.max_active_runs {
                waiting = true;
                break;
            }
            slots_used += 1;
            launch.push((job, rec));
        }
    }
    Plan { launch, waiting, wake }
}

/// Marks `rec` as running attempt `attempts + 1` in process `pid`, logging to `log`, started at `wall`.
pub fn attempt_started(rec: &mut RunRecord, pid: u32, log: &Path, wall: DateTime<Utc>) {
    let now = millis(wall);
    rec.status = RunStatus::Running;
    rec.attempts += 1;
    rec.pid = Some(pid);
    rec.next_attempt_at = None;
    rec.updated_at = now.clone();
    rec.history.push(smelt_catalog::Attempt {
        number: rec.attempts,
        started_at: now,
        finished_at: None,
        exit_code: None,
        log: log.display().to_string(),
    });
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    /// Committed (`dataset@version`, `?` when the catalog does not say).
    Succeeded(String),
    /// Stopped by the scheduler; the next start resumes it.
    Interrupted,
    /// Failed; tried again after `wait`.
    Retry {
        /// The error.
        error: String,
        /// The backoff.
        wait: Duration,
    },
    /// Failed for good: every attempt is used, or `fatal` (a pipeline or usage error, exit 2).
    Failed {
        /// The error.
        error: String,
        /// Not retried because retrying cannot help.
        fatal: bool,
    },
}

/// Records the end of `rec`'s current attempt at `wall`: exit `code` (None:
/// killed by a signal), `stopping` (the scheduler asked it to stop),
/// `committed` (the version the catalog has for the run), `error` (the
/// reason, read from its log only when it failed), `jitter` in `[0, 1)` scales the backoff.
pub fn attempt_ended(
    rec: &mut RunRecord,
    code: Option<i32>,
    stopping: bool,
    committed: Option<(String, u64)>,
    retry_backoff: Duration,
    jitter: f64,
    wall: DateTime<Utc>,
    error: impl FnOnce() -> String,
) -> Ended {
    if let Some(h) = rec.history.last_mut() {
        h.finished_at = Some(millis(wall));
        h.exit_code = code;
    }
    rec.pid = None;
    rec.updated_at = rfc3339(wall);
    match (code, &committed) {
        (Some(0), _) | (_, Some(_)) => {
            rec.status = RunStatus::Succeeded;
            rec.last_error = None;
            Ended::Succeeded(committed.as_ref().map_or_else(|| "?".into(), |(d, v)| format!("{d}@{v}")))
        }
        (Some(130) | None, _) if stopping => {
            rec.status = RunStatus::Interrupted;
            Ended::Interrupted
        }
        _ => {
            let err = error();
            rec.last_error = Some(err.clone());
            let fatal = code == Some(2);
            if rec.attempts < rec.max_attempts && !fatal {
                let wait = backoff(retry_backoff, rec.attempts, jitter);
                rec.status = RunStatus::RetryWait;
                rec.next_attempt_at = Some(millis(wall + chrono::Duration::from_std(wait).unwrap_or_default()));
                Ended::Retry { error: err, wait }
            } else {
                rec.status = RunStatus::Failed;
                Ended::Failed { error: err, fatal }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A clock the test moves; the schedule's time and the wall clock are the same.
    #[derive(Clone)]
    pub(crate) struct TestClock(Arc<Mutex<DateTime<Utc>>>);

    impl TestClock {
        pub(crate) fn at(s: &str) -> TestClock {
            TestClock(Arc::new(Mutex::new(t(s))))
        }

        pub(crate) fn set(&self, s: &str) {
            *self.0.lock().unwrap() = t(s);
        }

        pub(crate) fn advance(&self, d: Duration) {
            let mut now = self.0.lock().unwrap();
            *now += chrono::Duration::from_std(d).unwrap();
        }
    }

    impl Clock for TestClock {
        fn now(&self) -> DateTime<Utc> {
            *self.0.lock().unwrap()
        }

        fn wall(&self) -> DateTime<Utc> {
            self.now()
        }
    }

    pub(crate) fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    pub(crate) fn job(schedule: &str) -> Job {
        let node = smelt_engine::yaml::parse(schedule).unwrap();
        let schedule = smelt_engine::schedule::parse_schedule(&node).unwrap_or_else(|p| panic!("{p:?}"));
        Job { path: PathBuf::from("/p/news.yaml"), dataset: "news".into(), schedule }
    }

    fn gone(_: u32, _: &str) -> bool {
        false
    }

    fn plan_now(jobs: &[Job], records: &[RunRecord], active: &[(String, usize)], clock: &TestClock) -> Plan {
        let committed = BTreeMap::new();
        let w = World { records, committed: &committed, active, triggers: &BTreeMap::new(), alive: gone };
        plan(jobs, &Mode::Schedule { max_catchup: 1000 }, w, clock)
    }

    fn starts(p: &Plan) -> Vec<String> {
        p.launch.iter().map(|(_, r)| r.interval.as_ref().unwrap().start.clone()).collect()
    }

    #[test]
    fn daily_intervals_in_local_time_come_due_across_a_dst_change() {
        // Midnight in Berlin; clocks went forward on 2024-03-31 (a 23-hour day).
        let j = job(
            "cron: \"0 0 * * *\"\ntimezone: Europe/Berlin\ncatchup: true\nstart_date: 2024-03-30\nmax_active_runs: 5\n",
        );
        let clock = TestClock::at("2024-03-31T21:59:00Z");
        assert_eq!(starts(&plan_now(std::slice::from_ref(&j), &[], &[], &clock)), ["2024-03-29T23:00:00Z"]);
        // The DST day ends at 22:00 UTC, not 23:00.
        clock.set("2024-03-31T22:00:00Z");
        let p = plan_now(std::slice::from_ref(&j), &[], &[], &clock);
        assert_eq!(starts(&p), ["2024-03-29T23:00:00Z", "2024-03-30T23:00:00Z"]);
        let dst_day = p.launch[1].1.interval.clone().unwrap();
        assert_eq!((dst_day.start.as_str(), dst_day.end.as_str()), ("2024-03-30T23:00:00Z", "2024-03-31T22:00:00Z"));
        assert_eq!(p.launch[1].1.run_id, "news-20240330T230000Z");
        assert_eq!(p.launch[1].1.max_attempts, j.schedule.retries + 1);
        // The next look is at the next local midnight.
        assert_eq!(p.wake, Duration::from_secs(60), "capped at a minute");
        clock.set("2024-04-01T21:59:30Z");
        assert_eq!(plan_now(std::slice::from_ref(&j), &[], &[], &clock).wake, Duration::from_secs(30));
    }

    #[test]
    fn catchup_runs_missed_intervals_oldest_first_and_skips_committed_and_recorded_ones() {
        let j = job("cron: \"0 * * * *\"\ntimezone: UTC\ncatchup: true\nstart_date: 2024-05-01T00:00:00Z\nmax_active_runs: 10\n");
        let clock = TestClock::at("2024-05-01T04:30:00Z");
        let recorded =
            j.new_record("r".into(), &j.schedule.interval_at(t("2024-05-01T02:00:00Z")).unwrap(), "schedule", "x");
        let committed: BTreeMap<String, BTreeSet<String>> =
            [("news".to_string(), ["2024-05-01T00:00:00Z".to_string()].into_iter().collect())].into_iter().collect();
        let w = World {
            records: std::slice::from_ref(&recorded),
            committed: &committed,
            active: &[],
            triggers: &BTreeMap::new(),
            alive: gone,
        };
        let p = plan(std::slice::from_ref(&j), &Mode::Schedule { max_catchup: 1000 }, w, &clock);
        // The recorded interval's pending record runs too, in interval order.
        assert_eq!(starts(&p), ["2024-05-01T01:00:00Z", "2024-05-01T02:00:00Z", "2024-05-01T03:00:00Z"]);
        assert_eq!(p.launch[1].1.run_id, "r");
        // --max-catchup keeps the latest ones.
        let w = World { records: &[], committed: &committed, active: &[], triggers: &BTreeMap::new(), alive: gone };
        let p = plan(std::slice::from_ref(&j), &Mode::Schedule { max_catchup: 2 }, w, &clock);
        assert_eq!(starts(&p), ["2024-05-01T02:00:00Z", "2024-05-01T03:00:00Z"]);
        // Without catch-up only the latest interval that ended runs.
        let j = job("cron: \"0 * * * *\"\ntimezone: UTC\nstart_date: 2024-05-01T00:00:00Z\n");
        assert_eq!(starts(&plan_now(&[j], &[], &[], &clock)), ["2024-05-01T03:00:00Z"]);
    }

    #[test]
    fn commit_triggers_become_runs_oldest_first_once_each() {
        let j = job("on_commit: up@latest\ncatchup: true\nmax_active_runs: 2\n");
        let clock = TestClock::at("2024-05-01T00:00:00Z");
        let triggers: BTreeMap<String, Vec<u64>> = [(j.pipeline(), vec![3, 4, 5])].into_iter().collect();
        let committed = BTreeMap::new();
        let done = j.commit_record("up", 3, "x");
        let w = World {
            records: std::slice::from_ref(&done),
            committed: &committed,
            active: &[],
            triggers: &triggers,
            alive: gone,
        };
        let p = plan(std::slice::from_ref(&j), &Mode::Schedule { max_catchup: 1000 }, w, &clock);
        // up@3 has its record (pending: it runs first, by version), up@4 is new; up@5 waits for a slot.
        let ids: Vec<&str> = p.launch.iter().map(|(_, r)| r.run_id.as_str()).collect();
        assert_eq!(ids, ["news-after-up-3", "news-after-up-4"]);
        assert_eq!(p.launch[1].1.trigger_version.as_deref(), Some("up@4"));
        assert_eq!(p.launch[1].1.trigger, "on_commit");
        assert!(p.launch[1].1.interval.is_none());
        assert!(p.waiting);
        assert!(p.wake <= COMMIT_POLL, "commits are looked for every {COMMIT_POLL:?}");
        // A backfill never makes commit runs.
        let w = World { records: &[], committed: &committed, active: &[], triggers: &triggers, alive: gone };
        let p = plan(std::slice::from_ref(&j), &Mode::Backfill { runs: BTreeSet::new() }, w, &clock);
        assert!(p.launch.is_empty());
    }

    #[test]
    fn max_active_runs_bounds_what_starts() {
        let j = job(
            "cron: \"0 * * * *\"\ntimezone: UTC\ncatchup: true\nstart_date: 2024-05-01T00:00:00Z\nmax_active_runs: 2\n",
        );
        let clock = TestClock::at("2024-05-01T05:00:00Z");
        let p = plan_now(std::slice::from_ref(&j), &[], &[], &clock);
        assert_eq!(starts(&p), ["2024-05-01T00:00:00Z", "2024-05-01T01:00:00Z"]);
        assert!(p.waiting, "three more wait for a slot");
        // One of them runs: one slot is left.
        let mut running = p.launch[0].1.clone();
        attempt_started(&mut running, 42, Path::new("/l"), clock.wall());
        let active = vec![(running.run_id.clone(), 0)];
        let p = plan_now(std::slice::from_ref(&j), std::slice::from_ref(&running), &active, &clock);
        assert_eq!(starts(&p), ["2024-05-01T01:00:00Z"]);
        // A run waiting for its retry keeps its slot.
        let mut retrying = running.clone();
        attempt_ended(&mut retrying, Some(1), false, None, Duration::from_secs(60), 0.0, clock.wall(), || {
            "boom".into()
        });
        assert_eq!(retrying.status, RunStatus::RetryWait);
        let p = plan_now(std::slice::from_ref(&j), std::slice::from_ref(&retrying), &[], &clock);
        assert_eq!(starts(&p), ["2024-05-01T01:00:00Z"]);
        // Another process's live run takes a slot too, and is looked at again within a second.
        let alive = |_: u32, _: &str| true;
        let committed = BTreeMap::new();
        let w = World {
            records: std::slice::from_ref(&running),
            committed: &committed,
            active: &[],
            triggers: &BTreeMap::new(),
            alive,
        };
        let p = plan(std::slice::from_ref(&j), &Mode::Schedule { max_catchup: 1000 }, w, &clock);
        assert_eq!(starts(&p), ["2024-05-01T01:00:00Z"]);
        assert_eq!(p.wake, Duration::from_secs(1));
        // The same record whose process is gone belongs to a killed scheduler: it runs again, first.
        let p = plan_now(std::slice::from_ref(&j), std::slice::from_ref(&running), &[], &clock);
        assert_eq!(p.launch[0].1.run_id, running.run_id);
        assert_eq!(p.launch.len(), 2);
    }

    #[test]
    fn a_failed_attempt_is_retried_after_its_backoff_then_given_up() {
        let j = job("cron: \"0 0 * * *\"\ntimezone: UTC\nretries: 2\nretry_backoff: 30s\n");
        let clock = TestClock::at("2024-05-02T00:00:10Z");
        let p = plan_now(std::slice::from_ref(&j), &[], &[], &clock);
        let mut rec = p.launch[0].1.clone();
        assert_eq!((rec.interval.as_ref().unwrap().start.as_str(), rec.max_attempts), ("2024-05-01T00:00:00Z", 3));
        attempt_started(&mut rec, 7, Path::new("/logs/a.1.log"), clock.wall());
        let ended = attempt_ended(&mut rec, Some(1), false, None, j.schedule.retry_backoff, 1.0, clock.wall(), || {
            "error: x".into()
        });
        assert_eq!(ended, Ended::Retry { error: "error: x".into(), wait: Duration::from_secs(30) });
        assert_eq!(rec.next_attempt_at.as_deref(), Some("2024-05-02T00:00:40.000Z"));
        assert_eq!(rec.history[0].exit_code, Some(1));
        // Not before its backoff; woken when it is due.
        clock.advance(Duration::from_secs(20));
        let p = plan_now(std::slice::from_ref(&j), std::slice::from_ref(&rec), &[], &clock);
        assert!(p.launch.is_empty() && p.waiting);
        assert_eq!(p.wake, Duration::from_secs(10));
        clock.advance(Duration::from_secs(10));
        let p = plan_now(std::slice::from_ref(&j), std::slice::from_ref(&rec), &[], &clock);
        assert_eq!(p.launch.len(), 1);
        let mut rec = p.launch[0].1.clone();
        attempt_started(&mut rec, 8, Path::new("/logs/a.2.log"), clock.wall());
        assert_eq!((rec.attempts, rec.history.len()), (2, 2));
        // The second failure doubles the backoff (jitter 0: half of it).
        let ended =
            attempt_ended(&mut rec, Some(1), false, None, j.schedule.retry_backoff, 0.0, clock.wall(), || "e".into());
        assert_eq!(ended, Ended::Retry { error: "e".into(), wait: Duration::from_secs(30) });
        clock.advance(Duration::from_secs(30));
        let mut rec = plan_now(std::slice::from_ref(&j), std::slice::from_ref(&rec), &[], &clock).launch[0].1.clone();
        attempt_started(&mut rec, 9, Path::new("/logs/a.3.log"), clock.wall());
        let ended =
            attempt_ended(&mut rec, Some(1), false, None, j.schedule.retry_backoff, 0.0, clock.wall(), || "e".into());
        assert_eq!(ended, Ended::Failed { error: "e".into(), fatal: false });
        assert_eq!(rec.status, RunStatus::Failed);
        let p = plan_now(std::slice::from_ref(&j), std::slice::from_ref(&rec), &[], &clock);
        assert!(p.launch.is_empty() && !p.waiting, "a failed interval is left to backfill");
    }

    #[test]
    fn usage_errors_are_not_retried_and_stopped_or_committed_runs_are_not_failures() {
        let j = job("cron: \"0 0 * * *\"\ntimezone: UTC\nretries: 5\n");
        let clock = TestClock::at("2024-05-02T00:00:10Z");
        let fresh = plan_now(std::slice::from_ref(&j), &[], &[], &clock).launch[0].1.clone();
        let run = |code: Option<i32>, stopping: bool, committed: Option<(String, u64)>| {
            let mut rec = fresh.clone();
            attempt_started(&mut rec, 1, Path::new("/l"), clock.wall());
            let e =
                attempt_ended(&mut rec, code, stopping, committed, Duration::from_secs(1), 0.5, clock.wall(), || {
                    "bad".into()
                });
            (e, rec.status)
        };
        assert_eq!(run(Some(2), false, None), (Ended::Failed { error: "bad".into(), fatal: true }, RunStatus::Failed));
        assert_eq!(run(Some(130), true, None), (Ended::Interrupted, RunStatus::Interrupted));
        assert_eq!(run(None, true, None), (Ended::Interrupted, RunStatus::Interrupted));
        assert_eq!(run(Some(0), false, None), (Ended::Succeeded("?".into()), RunStatus::Succeeded));
        // Killed after its commit: the version counts.
        assert_eq!(
            run(None, true, Some(("news".into(), 3))),
            (Ended::Succeeded("news@3".into()), RunStatus::Succeeded)
        );
        // An interrupted run resumes first, under its run id.
        let (_, status) = run(Some(130), true, None);
        let mut rec = fresh.clone();
        rec.status = status;
        let p = plan_now(std::slice::from_ref(&j), std::slice::from_ref(&rec), &[], &clock);
        assert_eq!(p.launch[0].1.run_id, fresh.run_id);
    }

    #[test]
    fn the_last_error_is_read_from_the_logs_last_error_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        std::fs::write(&log, "run x\nerror: stage `s`: boom\n  caused by: y\n\n").unwrap();
        assert_eq!(last_error(&log), "error: stage `s`: boom\n  caused by: y");
        std::fs::write(&log, "").unwrap();
        assert_eq!(last_error(&log), "the run exited without a message");
    }

    #[test]
    fn one_lock_per_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let held = try_lock(dir.path()).unwrap().unwrap();
        let holder = try_lock(dir.path()).unwrap().unwrap_err();
        assert!(holder.starts_with(&format!("pid {}:", std::process::id())), "{holder}");
        drop(held);
        assert!(try_lock(dir.path()).unwrap().is_ok());
    }
}
