//! The scheduler's loop: runs what [`super::plan`] decides as child
//! `smelt run` processes and records how their attempts end.
//!
//! ```text
//! loop (every 25 ms):
//!   reap ended children ──attempt_ended──► run record (catalog run_states)
//!   plan (after an end, a Wake signal, or when the last plan's wake time passed)
//!     ──launch──► `smelt --data-dir D run P --run-id R --no-progress --format json [--interval START | --upstream UP@V]`
//!                 stdout+stderr ─► <data dir>/scheduler/logs/<run id>.<attempt>.log
//!   Stop signal ─► SIGINT to every run (they keep finished splits); a second Stop ─► SIGKILL
//! ```
//! Runs die with the scheduler (`PR_SET_PDEATHSIG`), so a killed scheduler
//! never leaves a run behind that the next one would duplicate; a restarted
//! one relaunches running/interrupted records with the same run id, so the
//! engine's resume skips finished splits and the interval commits once.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use smelt_catalog::{Catalog, RunRecord};
use smelt_engine::backoff::jitter;
use smelt_engine::EngineError;

use super::{
    attempt_ended, attempt_started, commit_triggers, last_error, logs_dir, pid_alive_with, plan, Clock, Ended, Job,
    Mode, World,
};
use crate::workspace::Workspace;

/// What the caller tells a running scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Stop: ask the runs to stop (a second one kills them).
    Stop,
    /// Plan now (a backfill queued runs).
    Wake,
}

/// A child `smelt run` of this scheduler.
struct Active {
    run_id: String,
    job: usize,
    child: Child,
}

/// The scheduler of one data directory (the caller holds its [`super::Lock`]).
pub struct Scheduler {
    data_dir: PathBuf,
    jobs: Vec<Job>,
    clock: Box<dyn Clock>,
    smelt: PathBuf,
    parallelism: Option<usize>,
    mode: Mode,
    active: Vec<Active>,
    say: Box<dyn FnMut(&str) + Send>,
}

fn ext(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::External(format!("{what}: {e}"))
}

impl Scheduler {
    /// A scheduler of `jobs` in the absolute data directory `data_dir`,
    /// starting runs with the smelt binary `smelt`; `say` gets what it does,
    /// one line at a time.
    pub fn new(
        data_dir: PathBuf,
        jobs: Vec<Job>,
        clock: Box<dyn Clock>,
        smelt: PathBuf,
        parallelism: Option<usize>,
        mode: Mode,
        say: Box<dyn FnMut(&str) + Send>,
    ) -> Scheduler {
        Scheduler { data_dir, jobs, clock, smelt, parallelism, mode, active: Vec::new(), say }
    }

    fn open(&self) -> Result<Catalog, EngineError> {
        Ok(Workspace::new(&self.data_dir).open_catalog()?)
    }

    /// Starts an attempt of `rec` as a child process and records it.
    fn launch(&mut self, c: &Catalog, job: usize, mut rec: RunRecord) -> Result<(), EngineError> {
        let j = &self.jobs[job];
        let dir = logs_dir(&self.data_dir);
        std::fs::create_dir_all(&dir).map_err(|e| ext(&format!("cannot create {}", dir.display()), e))?;
        let attempt = rec.attempts + 1;
        let log_path = dir.join(format!("{}.{attempt}.log", rec.run_id));
        let log =
            std::fs::File::create(&log_path).map_err(|e| ext(&format!("cannot create {}", log_path.display()), e))?;
        let mut cmd = Command::new(&self.smelt);
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
        if let Some(v) = &rec.trigger_version {
            cmd.args(["--upstream", v]);
        }
        if let Some(n) = self.parallelism {
            cmd.args(["--parallelism", &n.to_string()]);
        }
        let out = log.try_clone().map_err(|e| EngineError::External(e.to_string()))?;
        cmd.env_remove("SMELT_NOW").stdin(Stdio::null()).stdout(out).stderr(log);
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
        let child = cmd.spawn().map_err(|e| ext("cannot start `smelt run`", e))?;
        attempt_started(&mut rec, child.id(), &log_path, self.clock.wall());
        c.put_run_record(&rec)?;
        let what = match (&rec.interval, &rec.trigger_version) {
            (Some(i), _) => format!("interval {} .. {}", i.start, i.end),
            (None, Some(v)) => format!("after the commit of {v}"),
            (None, None) => "no interval".into(),
        };
        (self.say)(&format!(
            "started {} ({}{what}, attempt {attempt} of {}), log {}",
            rec.run_id,
            if rec.trigger == "backfill" { "backfill, " } else { "" },
            rec.max_attempts,
            log_path.display()
        ));
        self.active.push(Active { run_id: rec.run_id.clone(), job, child });
        Ok(())
    }

    /// Records the end of a child's attempt.
    fn finished(&mut self, c: &Catalog, a: &Active, code: Option<i32>, stopping: bool) -> Result<(), EngineError> {
        let Some(mut rec) = c.run_record(&a.run_id)? else { return Ok(()) };
        let log = rec.history.last().map(|h| PathBuf::from(&h.log));
        let committed = c.run_version(&a.run_id)?;
        let ended = attempt_ended(
            &mut rec,
            code,
            stopping,
            committed,
            self.jobs[a.job].schedule.retry_backoff,
            jitter(&a.run_id),
            self.clock.wall(),
            || log.as_deref().map_or_else(|| "no log".into(), last_error),
        );
        let msg = match ended {
            Ended::Succeeded(v) => format!("{} committed {v}", a.run_id),
            Ended::Interrupted => {
                format!("{} stopped; finished splits are kept and the next start resumes it", a.run_id)
            }
            Ended::Retry { error, wait } => format!(
                "{} failed (attempt {} of {}): {error}; retrying in {:.1}s",
                a.run_id,
                rec.attempts,
                rec.max_attempts,
                wait.as_secs_f64()
            ),
            Ended::Failed { error, fatal } => format!(
                "{} failed{}: {error}; {}",
                a.run_id,
                if fatal { " (a pipeline or usage error: not retried)" } else { " after every attempt" },
                match &rec.trigger_version {
                    Some(v) => format!("`smelt run {} --upstream {v}` runs it again", rec.pipeline),
                    None => "`smelt backfill` runs it again".into(),
                }
            ),
        };
        (self.say)(&msg);
        c.put_run_record(&rec)?;
        Ok(())
    }

    /// Launches what can start now. Returns whether anything is left to wait for, and when to look again.
    fn plan(&mut self) -> Result<(bool, Duration), EngineError> {
        let c = self.open()?;
        let records = c.run_records()?;
        let mut committed = BTreeMap::new();
        if let Mode::Schedule { .. } = self.mode {
            for j in &self.jobs {
                let starts = c.committed_intervals(&j.dataset)?.into_iter().map(|(s, _)| s).collect();
                committed.insert(j.dataset.clone(), starts);
            }
        }
        let mut triggers = BTreeMap::new();
        if let Mode::Schedule { .. } = self.mode {
            for j in self.jobs.iter().filter(|j| j.schedule.on_commit.is_some()) {
                triggers.insert(j.pipeline(), commit_triggers(&c, j, &records)?);
            }
        }
        let active: Vec<(String, usize)> = self.active.iter().map(|a| (a.run_id.clone(), a.job)).collect();
        let w = World {
            records: &records,
            committed: &committed,
            active: &active,
            triggers: &triggers,
            alive: pid_alive_with,
        };
        let p = plan(&self.jobs, &self.mode, w, self.clock.as_ref());
        for (job, rec) in p.launch {
            self.launch(&c, job, rec)?;
        }
        Ok((p.waiting || !self.active.is_empty(), p.wake))
    }

    fn signal_all(&self, sig: i32) {
        for a in &self.active {
            // SAFETY: signalling our own child by its pid.
            unsafe {
                libc::kill(a.child.id() as i32, sig);
            }
        }
    }

    /// The loop: reap children, plan, sleep; stops on [`Signal::Stop`] (once
    /// the runs have stopped) or, with `once`, when nothing is left.
    ///
    /// # Errors
    /// A run that cannot be started or recorded.
    pub async fn run(
        &mut self,
        once: bool,
        signals: &mut tokio::sync::mpsc::UnboundedReceiver<Signal>,
    ) -> Result<(), EngineError> {
        let mut stopping = false;
        let mut forced = false;
        let mut last_plan: Option<Instant> = None;
        let mut plan_wait = Duration::ZERO;
        let mut open = true;
        loop {
            // Reap.
            let mut ended = Vec::new();
            for (k, a) in self.active.iter_mut().enumerate() {
                if let Some(status) = a.child.try_wait().map_err(|e| EngineError::External(e.to_string()))? {
                    ended.push((k, status.code()));
                }
            }
            if !ended.is_empty() {
                // The catalog may be held by another smelt process for a while: try again next turn.
                match self.open() {
                    Ok(c) => {
                        for &(k, code) in ended.iter().rev() {
                            let a = self.active.remove(k);
                            self.finished(&c, &a, code, stopping)?;
                        }
                        last_plan = None;
                    }
                    Err(e) => (self.say)(&format!("cannot record the end of a run yet: {e}")),
                }
            }
            if stopping {
                if self.active.is_empty() {
                    (self.say)("stopped");
                    return Ok(());
                }
            } else if last_plan.is_none_or(|t| t.elapsed() >= plan_wait) {
                let busy = match self.plan() {
                    Ok((b, wake)) => {
                        plan_wait = wake;
                        b
                    }
                    Err(e) => {
                        (self.say)(&format!("cannot plan runs now (retrying): {e}"));
                        plan_wait = Duration::from_secs(1);
                        true
                    }
                };
                last_plan = Some(Instant::now());
                if once && !busy {
                    (self.say)("nothing more is due; exiting (--once)");
                    return Ok(());
                }
            }
            let signal = tokio::select! {
                s = signals.recv(), if open => {
                    open = s.is_some();
                    s
                }
                _ = tokio::time::sleep(Duration::from_millis(25)) => None,
            };
            if signal == Some(Signal::Wake) {
                // A backfill queued runs: look now.
                last_plan = None;
            }
            let signalled = signal == Some(Signal::Stop);
            if signalled && stopping && !forced {
                // A second signal: stop now. Killed runs resume at the next start like interrupted ones.
                forced = true;
                (self.say)("second signal: killing the runs now (they resume at the next start)");
                self.signal_all(libc::SIGKILL);
            }
            if signalled && !stopping {
                stopping = true;
                (self.say)(&format!(
                    "stopping: {} run(s) are asked to stop (a commit in progress completes; otherwise finished splits are kept and the next start resumes the run with the same id)",
                    self.active.len()
                ));
                self.signal_all(libc::SIGINT);
            }
        }
    }
}
