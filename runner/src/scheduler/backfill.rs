//! `smelt backfill`: a pipeline's missing or failed intervals in a time
//! range (all of them with `rerun`), queued as `pending` run records.
//!
//! ```text
//! [from, to) ──schedule.intervals──► per interval: committed │ a record's status │ missing
//!   ──select (not committed, not active, not succeeded; rerun: every one not active)──► BackfillPlan
//!   ──queue──► records (a failed run resumes under its id; a rerun gets `<id>-rerun-<now>`)
//!        lock free: Queued::Here (the caller runs them with driver::Scheduler in Mode::Backfill)
//!        lock held: SIGUSR1 to the scheduler holding it, Queued::ForScheduler
//! ```

use std::collections::BTreeSet;
use std::path::Path;

use chrono::{DateTime, Utc};
use smelt_catalog::{Catalog, RunRecord, RunStatus};
use smelt_engine::schedule::{parse_time, rfc3339};
use smelt_engine::{EngineError, Interval};

use super::{compact, interval_run_id, pid_alive_with, try_lock, Job, Lock};
use crate::workspace::Workspace;

/// One interval a backfill would run.
#[derive(Debug, Clone)]
pub struct BackfillItem {
    /// The interval.
    pub interval: Interval,
    /// committed, missing, or its latest record's status.
    pub status: String,
    /// Its latest record.
    pub record: Option<RunRecord>,
    /// Its committed version.
    pub version: Option<u64>,
}

/// What a backfill would run.
#[derive(Debug, Clone)]
pub struct BackfillPlan {
    /// Start of the range.
    pub from: DateTime<Utc>,
    /// End of the range (at most now).
    pub to: DateTime<Utc>,
    /// The intervals in the range.
    pub intervals: Vec<Interval>,
    /// The ones to run.
    pub items: Vec<BackfillItem>,
}

/// Where an interval stands: its status, latest record and committed version.
fn interval_status(
    c: &Catalog,
    records: &[RunRecord],
    dataset: &str,
    i: &Interval,
) -> Result<(String, Option<RunRecord>, Option<u64>), EngineError> {
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

/// Whether an interval runs in a backfill: not while it is active (a live
/// run, waiting to retry or pending); with `rerun` otherwise always;
/// without, only when it has no version and no succeeded run.
fn selected(rec: Option<&RunRecord>, version: Option<u64>, rerun: bool, alive: fn(u32, &str) -> bool) -> bool {
    // A `running` record whose process is gone belongs to a scheduler that was killed: it can run again.
    let active = rec.is_some_and(|r| match r.status {
        RunStatus::Running => r.pid.is_some_and(|pid| alive(pid, &r.run_id)),
        RunStatus::RetryWait | RunStatus::Pending => true,
        _ => false,
    });
    (rerun && !active) || (version.is_none() && !active && !matches!(rec.map(|r| r.status), Some(RunStatus::Succeeded)))
}

/// The intervals of `job` between `from` and `to` (times as `smelt backfill`
/// takes them: RFC 3339, or a date or local time in the schedule's
/// timezone; `to` at most `now`, default `now`) that a backfill runs.
///
/// # Errors
/// Bad times or an empty range (user); catalog failures.
pub fn plan(
    ws: &Workspace,
    job: &Job,
    from: &str,
    to: Option<&str>,
    rerun: bool,
    now: DateTime<Utc>,
) -> Result<BackfillPlan, EngineError> {
    if let Some(o) = &job.schedule.on_commit {
        return Err(EngineError::User(format!(
            "{} runs after each commit of {o}, not on intervals, so there is nothing to backfill; run it after one upstream version with `smelt run {} --upstream {}@VERSION`",
            job.path.display(),
            job.path.display(),
            o.dataset
        )));
    }
    let tz = job.schedule.tz();
    let user = EngineError::User;
    let from = parse_time(from, tz).map_err(|e| user(format!("--from: {e}")))?;
    let to = match to {
        Some(t) => parse_time(t, tz).map_err(|e| user(format!("--to: {e}")))?.min(now),
        None => now,
    };
    if from >= to {
        return Err(user(format!("--from {} is not before --to {} (or now)", rfc3339(from), rfc3339(to))));
    }
    let intervals = job.schedule.intervals(from, to, 100_000);
    let c = ws.open_catalog()?;
    let records = c.run_records()?;
    let mut items = Vec::new();
    for i in &intervals {
        let (status, record, version) = interval_status(&c, &records, &job.dataset, i)?;
        if selected(record.as_ref(), version, rerun, pid_alive_with) {
            items.push(BackfillItem { interval: *i, status, record, version });
        }
    }
    Ok(BackfillPlan { from, to, intervals, items })
}

/// The records that run a backfill's items, made at `wall`: a failed or
/// interrupted run resumes under its run id (with its attempts plus a new
/// allowance); a committed interval (or one with a succeeded run) gets a new run id.
pub fn records(job: &Job, items: &[BackfillItem], wall: DateTime<Utc>) -> Vec<RunRecord> {
    let now_s = rfc3339(wall);
    items
        .iter()
        .map(|item| match &item.record {
            Some(r) if item.version.is_none() && r.status != RunStatus::Succeeded => RunRecord {
                status: RunStatus::Pending,
                max_attempts: r.attempts + job.schedule.retries + 1,
                trigger: "backfill".into(),
                updated_at: now_s.clone(),
                ..r.clone()
            },
            _ => {
                let base = interval_run_id(&job.dataset, &item.interval);
                let run_id = if item.version.is_some() || item.record.is_some() {
                    format!("{base}-rerun-{}", compact(wall))
                } else {
                    base
                };
                job.new_record(run_id, &item.interval, "backfill", &now_s)
            }
        })
        .collect()
}

/// Where queued backfill runs go.
#[derive(Debug)]
pub enum Queued {
    /// No scheduler runs here: this process holds the lock and runs them.
    Here(Lock),
    /// A scheduler holds the lock (`holder`: its lock line); it was woken to run them.
    ForScheduler {
        /// What the scheduler wrote in the lock file.
        holder: String,
    },
}

/// Writes the records of a backfill (see [`records`]) into the catalog, and
/// takes the data directory's lock or wakes the scheduler that holds it.
/// Returns the run ids and where they run.
///
/// # Errors
/// Catalog failures, an unwritable data directory.
pub fn queue(
    data_dir: &Path,
    job: &Job,
    items: &[BackfillItem],
    wall: DateTime<Utc>,
) -> Result<(BTreeSet<String>, Queued), EngineError> {
    let lock = try_lock(data_dir)?;
    let mut runs = BTreeSet::new();
    {
        let c = Workspace::new(data_dir).open_catalog()?;
        for rec in records(job, items, wall) {
            runs.insert(rec.run_id.clone());
            c.put_run_record(&rec)?;
        }
    }
    let queued = match lock {
        Ok(l) => Queued::Here(l),
        Err(holder) => {
            // Wake the scheduler (its pid opens the lock file's line) so it runs them now.
            let pid = holder.strip_prefix("pid ").and_then(|r| r.split(':').next()).and_then(|p| p.parse::<i32>().ok());
            if let Some(pid) = pid.filter(|&p| p > 0) {
                // SAFETY: sending a signal; the scheduler listens for SIGUSR1.
                unsafe {
                    libc::kill(pid, libc::SIGUSR1);
                }
            }
            Queued::ForScheduler { holder }
        }
    };
    Ok((runs, queued))
}

/// How a backfill's run ended.
#[derive(Debug, Clone)]
pub enum BackfillResult {
    /// Committed as `dataset@version`.
    Committed {
        /// The run.
        run_id: String,
        /// `dataset@version`.
        version: String,
    },
    /// Not committed.
    Failed {
        /// The run.
        run_id: String,
        /// Its record's status.
        status: Option<&'static str>,
        /// Its last error.
        last_error: Option<String>,
    },
}

/// How each of `runs` ended.
///
/// # Errors
/// Catalog failures.
pub fn results(ws: &Workspace, runs: &BTreeSet<String>) -> Result<Vec<BackfillResult>, EngineError> {
    let c = ws.open_catalog()?;
    let mut out = Vec::new();
    for id in runs {
        let r = c.run_record(id)?;
        out.push(match (r, c.run_version(id)?) {
            (_, Some((d, v))) => BackfillResult::Committed { run_id: id.clone(), version: format!("{d}@{v}") },
            (r, None) => BackfillResult::Failed {
                run_id: id.clone(),
                status: r.as_ref().map(|r| r.status.as_str()),
                last_error: r.and_then(|r| r.last_error),
            },
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{job, t, TestClock};
    use super::super::{attempt_ended, attempt_started, plan as plan_runs, Mode, World};
    use super::*;

    fn gone(_: u32, _: &str) -> bool {
        false
    }

    #[test]
    fn a_backfill_runs_missing_and_failed_intervals_then_only_those() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::new(dir.path());
        let j = job("cron: \"0 0 * * *\"\ntimezone: UTC\nretries: 1\n");
        let day = |d: &str| j.schedule.interval_at(t(&format!("2024-05-0{d}T00:00:00Z"))).unwrap();
        let wall = t("2024-06-01T12:00:00Z");
        // May 1st failed after its attempts, May 2nd succeeded, May 3rd waits to retry.
        let mut failed =
            j.new_record(interval_run_id("news", &day("1")), &day("1"), "schedule", "2024-05-02T00:00:00Z");
        for _ in 0..2 {
            attempt_started(&mut failed, 1, Path::new("/l"), wall);
            attempt_ended(&mut failed, Some(1), false, None, j.schedule.retry_backoff, 0.0, wall, || "boom".into());
        }
        assert_eq!(failed.status, RunStatus::Failed);
        let mut ok = j.new_record(interval_run_id("news", &day("2")), &day("2"), "schedule", "2024-05-03T00:00:00Z");
        ok.status = RunStatus::Succeeded;
        let mut waiting =
            j.new_record(interval_run_id("news", &day("3")), &day("3"), "schedule", "2024-05-04T00:00:00Z");
        waiting.status = RunStatus::RetryWait;
        {
            let c = ws.open_catalog().unwrap();
            for r in [&failed, &ok, &waiting] {
                c.put_run_record(r).unwrap();
            }
        }
        let p = plan(&ws, &j, "2024-05-01", Some("2024-05-06"), false, wall).unwrap();
        assert_eq!(p.intervals.len(), 5);
        let picked: Vec<(String, String)> =
            p.items.iter().map(|i| (i.interval.start_str(), i.status.clone())).collect();
        assert_eq!(
            picked,
            [
                ("2024-05-01T00:00:00Z".to_string(), "failed".to_string()),
                ("2024-05-04T00:00:00Z".to_string(), "missing".to_string()),
                ("2024-05-05T00:00:00Z".to_string(), "missing".to_string()),
            ]
        );
        // The failed run resumes under its id with another allowance of attempts; missing ones get new records.
        let recs = records(&j, &p.items, wall);
        assert_eq!((recs[0].run_id.as_str(), recs[0].attempts, recs[0].max_attempts), (failed.run_id.as_str(), 2, 4));
        assert_eq!((recs[1].run_id.as_str(), recs[1].trigger.as_str()), ("news-20240504T000000Z", "backfill"));
        // Queued here (no scheduler holds the lock), the scheduler in backfill mode runs exactly these.
        let (runs, queued) = queue(dir.path(), &j, &p.items, wall).unwrap();
        assert!(matches!(queued, Queued::Here(_)));
        let all = ws.open_catalog().unwrap().run_records().unwrap();
        let clock = TestClock::at("2024-06-01T12:00:00Z");
        let committed = Default::default();
        let w = World {
            records: &all,
            committed: &committed,
            active: &[],
            triggers: &std::collections::BTreeMap::new(),
            alive: gone,
        };
        let j = Job { schedule: job("cron: \"0 0 * * *\"\ntimezone: UTC\nmax_active_runs: 5\n").schedule, ..j };
        let launch: Vec<String> =
            plan_runs(std::slice::from_ref(&j), &Mode::Backfill { runs: runs.clone() }, w, &clock)
                .launch
                .into_iter()
                .map(|(_, r)| r.run_id)
                .collect();
        assert_eq!(launch, ["news-20240501T000000Z", "news-20240504T000000Z", "news-20240505T000000Z"]);
        let results = results(&ws, &runs).unwrap();
        assert!(results.iter().all(|r| matches!(r, BackfillResult::Failed { status: Some("pending"), .. })));
        // A rerun takes every interval not in progress, a succeeded one under a new id.
        let p = plan(&ws, &j, "2024-05-01", Some("2024-05-06"), true, wall).unwrap();
        let starts: Vec<String> = p.items.iter().map(|i| i.interval.start_str()).collect();
        assert_eq!(starts, ["2024-05-02T00:00:00Z"], "the others are pending or waiting to retry now");
        assert_eq!(records(&j, &p.items, wall)[0].run_id, "news-20240502T000000Z-rerun-20240601T120000Z");
    }

    #[test]
    fn backfill_ranges_must_be_ordered_and_end_by_now() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::new(dir.path());
        let j = job("cron: \"0 0 * * *\"\ntimezone: Europe/Berlin\n");
        let now = t("2024-05-03T12:00:00Z");
        let e = plan(&ws, &j, "2024-05-03", Some("2024-05-01"), false, now).unwrap_err().to_string();
        assert!(e.starts_with("--from 2024-05-02T22:00:00Z is not before --to"), "{e}");
        // A range reaching past now ends now: one Berlin day has ended since May 2nd.
        let p = plan(&ws, &j, "2024-05-02", Some("2024-06-01"), false, now).unwrap();
        assert_eq!(p.to, now);
        assert_eq!(p.items.len(), 1);
        assert!(plan(&ws, &j, "yesterday", None, false, now).unwrap_err().to_string().starts_with("--from: "));
    }
}
