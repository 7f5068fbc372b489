//! State of scheduled runs in the sled index, beside the committed ones.
//!
//! ```text
//! smelt scheduler / backfill ──put_run_record──► run_states: run id -> RunRecord (state, attempts, last error)
//! smelt run --interval ──commit_run──► one transaction: versions + runs + intervals (dataset \0 start -> version)
//! ```
//! "Interval done" is exactly "a version with this interval is committed":
//! the `intervals` entry is written in the commit's own transaction (and
//! `catalog rebuild` recreates it from the manifests). A [`RunRecord`] says
//! what the scheduler is doing about an interval that is not done yet; it is
//! bookkeeping that may be lost without losing data (a lost record makes the
//! interval look missing, and the next run of it resumes nothing but runs it).

use serde::{Deserialize, Serialize};

use crate::error::{CatalogError, Result};
use crate::index::Catalog;
use crate::model::RunInterval;

/// Key of an interval in the `intervals` tree.
pub fn interval_key(dataset: &str, start: &str) -> Vec<u8> {
    let mut k = dataset.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(start.as_bytes());
    k
}

/// Where a scheduled run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Waiting for a free slot (`max_active_runs`).
    Pending,
    /// A `smelt run` process is working on it.
    Running,
    /// An attempt failed; the next one starts at `next_attempt_at`.
    RetryWait,
    /// Every attempt failed; `smelt backfill` runs it again.
    Failed,
    /// The scheduler stopped (SIGTERM, or it was killed); the next start resumes it with the same run id.
    Interrupted,
    /// Committed (the version is in the `runs` tree).
    Succeeded,
}

impl RunStatus {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::RetryWait => "retry_wait",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Succeeded => "succeeded",
        }
    }
}

/// One attempt of a scheduled run (one `smelt run` process).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// From 1.
    pub number: u32,
    /// Wall-clock start, RFC 3339.
    pub started_at: String,
    /// Wall-clock end, RFC 3339, when it ended.
    pub finished_at: Option<String>,
    /// Exit status of the process (130: stopped by the scheduler), when it ended.
    pub exit_code: Option<i32>,
    /// Its log file (stdout and stderr of `smelt run`).
    pub log: String,
}

/// A scheduled run, as `smelt scheduler` and `smelt backfill` track it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run id (also the `smelt run --run-id`; attempts reuse it, so each resumes the last).
    pub run_id: String,
    /// Dataset name.
    pub dataset: String,
    /// Absolute path of the pipeline file.
    pub pipeline: String,
    /// The interval it covers.
    pub interval: Option<RunInterval>,
    /// Where it stands.
    pub status: RunStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// Attempts allowed (1 + the schedule's `retries`).
    pub max_attempts: u32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the next attempt may start (RFC 3339), in `retry_wait`.
    pub next_attempt_at: Option<String>,
    /// Process id of the running attempt.
    pub pid: Option<u32>,
    /// `schedule`, `backfill` or `on_commit`.
    pub trigger: String,
    /// The upstream version whose commit started it (`cc-news@7`; `schedule: {on_commit: ...}` runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_version: Option<String>,
    /// When the record was created, RFC 3339.
    pub created_at: String,
    /// Last change, RFC 3339.
    pub updated_at: String,
    /// Every attempt, oldest first.
    pub history: Vec<Attempt>,
}

fn decode(bytes: &[u8]) -> Result<RunRecord> {
    serde_json::from_slice(bytes).map_err(|e| CatalogError::Corrupt {
        location: "catalog index (run_states)".into(),
        message: format!("{e}; remove the data directory's scheduler state with a newer smelt, or start over"),
    })
}

impl Catalog {
    /// Stores (replaces) a run's record, then flushes.
    ///
    /// # Errors
    /// Index failures.
    pub fn put_run_record(&self, r: &RunRecord) -> Result<()> {
        let bytes = serde_json::to_vec(r).map_err(|e| CatalogError::Internal(e.to_string()))?;
        self.run_states.insert(r.run_id.as_bytes(), bytes)?;
        self.run_states.flush()?;
        Ok(())
    }

    /// A run's record.
    ///
    /// # Errors
    /// Index failures.
    pub fn run_record(&self, run_id: &str) -> Result<Option<RunRecord>> {
        self.run_states.get(run_id)?.map(|b| decode(&b)).transpose()
    }

    /// Every run record, by run id.
    ///
    /// # Errors
    /// Index failures.
    pub fn run_records(&self) -> Result<Vec<RunRecord>> {
        self.run_states.iter().values().map(|v| decode(&v?)).collect()
    }

    /// The version that committed `dataset`'s interval starting at `start`, if any.
    ///
    /// # Errors
    /// Index failures.
    pub fn interval_version(&self, dataset: &str, start: &str) -> Result<Option<u64>> {
        Ok(self.intervals.get(interval_key(dataset, start))?.and_then(|v| String::from_utf8_lossy(&v).parse().ok()))
    }

    /// Every committed interval of `dataset`: (start, version), by start.
    ///
    /// # Errors
    /// Index failures.
    pub fn committed_intervals(&self, dataset: &str) -> Result<Vec<(String, u64)>> {
        let prefix = interval_key(dataset, "");
        let mut out = Vec::new();
        for kv in self.intervals.scan_prefix(&prefix) {
            let (k, v) = kv?;
            if let Ok(v) = String::from_utf8_lossy(&v).parse() {
                out.push((String::from_utf8_lossy(&k[prefix.len()..]).to_string(), v));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_list() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(dir.path()).unwrap();
        let r = RunRecord {
            run_id: "cc-20240101T000000Z".into(),
            dataset: "cc".into(),
            pipeline: "/p.yaml".into(),
            interval: Some(RunInterval {
                start: "2024-01-01T00:00:00Z".into(),
                end: "2024-01-02T00:00:00Z".into(),
                cron: "@daily".into(),
                timezone: "UTC".into(),
            }),
            status: RunStatus::RetryWait,
            attempts: 1,
            max_attempts: 3,
            last_error: Some("stage `x`: timed out".into()),
            next_attempt_at: Some("2024-01-02T00:01:00Z".into()),
            pid: None,
            trigger: "schedule".into(),
            trigger_version: None,
            created_at: "2024-01-02T00:00:00Z".into(),
            updated_at: "2024-01-02T00:00:10Z".into(),
            history: vec![],
        };
        c.put_run_record(&r).unwrap();
        assert_eq!(c.run_record(&r.run_id).unwrap().unwrap(), r);
        assert_eq!(c.run_records().unwrap().len(), 1);
        assert_eq!(c.interval_version("cc", "2024-01-01T00:00:00Z").unwrap(), None);
        assert_eq!(serde_json::to_value(RunStatus::RetryWait).unwrap(), "retry_wait");
    }
}
