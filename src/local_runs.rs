//! `smelt runs list|show|logs` for runs in this process's machine: plain
//! `smelt run`s and the scheduler's runs (cluster runs are in slurm.rs).
//!
//! ```text
//! <data dir>/runs/<id>.json (every local run: dataset, storage root, pipeline)
//!   + catalog run_states (scheduled runs: state, interval, attempts, last error, logs)
//!   + catalog runs (committed version) + runs/<id>/{plan.json, splits/} in dataset storage (progress)
//! ```

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context as _;
use smelt_catalog::{Catalog, DatasetStore, RunPlan, RunRecord};

use crate::output::{emit, emit_json, Format};

/// What is known about one local run.
struct LocalRun {
    run_id: String,
    dataset: String,
    pipeline: String,
    root_url: Option<String>,
    record: Option<RunRecord>,
    committed: Option<(String, u64)>,
}

fn pointers(data_dir: &Path) -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(data_dir.join("runs")) {
        for e in entries.flatten() {
            let path = e.path();
            let Some(id) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if let Some(v) =
                std::fs::read(&path).ok().and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            {
                out.push((id.to_string(), v));
            }
        }
    }
    out
}

fn collect(data_dir: &Path, c: Option<&Catalog>, skip: &BTreeSet<String>) -> anyhow::Result<Vec<LocalRun>> {
    let records: Vec<RunRecord> = match c {
        Some(c) => c.run_records()?,
        None => Vec::new(),
    };
    let mut runs = Vec::new();
    let mut seen = BTreeSet::new();
    for (id, ptr) in pointers(data_dir) {
        if skip.contains(&id) {
            continue;
        }
        let s = |k: &str| ptr[k].as_str().unwrap_or_default().to_string();
        let record = records.iter().find(|r| r.run_id == id).cloned();
        let committed = c.and_then(|c| c.run_version(&id).ok().flatten());
        seen.insert(id.clone());
        runs.push(LocalRun {
            run_id: id,
            dataset: s("dataset"),
            pipeline: s("pipeline"),
            root_url: Some(s("root_url")),
            record,
            committed,
        });
    }
    // Scheduled runs not started yet have a record and no pointer.
    for r in records.into_iter().filter(|r| !seen.contains(&r.run_id) && !skip.contains(&r.run_id)) {
        let committed = c.and_then(|c| c.run_version(&r.run_id).ok().flatten());
        runs.push(LocalRun {
            run_id: r.run_id.clone(),
            dataset: r.dataset.clone(),
            pipeline: r.pipeline.clone(),
            root_url: None,
            record: Some(r),
            committed,
        });
    }
    Ok(runs)
}

async fn progress(run: &LocalRun) -> (Option<usize>, Option<usize>) {
    let Some(root) = &run.root_url else { return (None, None) };
    let Ok(store) = DatasetStore::open(root) else { return (None, None) };
    let plan: Option<RunPlan> = store.get_json(&smelt_catalog::commit::plan_path(&run.run_id)).await.ok().flatten();
    let done = smelt_catalog::completed_splits(&store, &run.run_id).await.ok().map(|d| d.len());
    (done, plan.map(|p| p.splits.len()))
}

fn state(run: &LocalRun, done: Option<usize>, total: Option<usize>) -> String {
    match (&run.record, &run.committed) {
        (_, Some(_)) => "succeeded".into(),
        (Some(r), None) => r.status.as_str().into(),
        (None, None) if total.is_some() && done == total => "complete (not committed)".into(),
        (None, None) => "incomplete".into(),
    }
}

async fn item(run: &LocalRun) -> serde_json::Value {
    let (done, total) = progress(run).await;
    let r = run.record.as_ref();
    serde_json::json!({
        "run_id": run.run_id,
        "executor": if r.is_some() { "scheduler" } else { "local" },
        "dataset": run.dataset,
        "pipeline": run.pipeline,
        "ranks": 1,
        "state": state(run, done, total),
        "interval": r.and_then(|r| r.interval.clone()),
        "attempts": r.map(|r| r.attempts),
        "max_attempts": r.map(|r| r.max_attempts),
        "last_error": r.and_then(|r| r.last_error.clone()),
        "next_attempt_at": r.and_then(|r| r.next_attempt_at.clone()),
        "trigger": r.map(|r| r.trigger.clone()),
        "submitted_at": r.map(|r| r.created_at.clone()).or_else(|| run_id_time(&run.run_id)),
        "splits_done": done,
        "splits_total": total,
        "committed": run.committed.as_ref().map(|(d, v)| format!("{d}@{v}")),
    })
}

/// The time in a `smelt run` generated run id (`20250101T000000Z-1a2b`).
fn run_id_time(id: &str) -> Option<String> {
    let t = chrono::NaiveDateTime::parse_from_str(id.get(..16)?, "%Y%m%dT%H%M%SZ").ok()?;
    Some(t.and_utc().to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// `runs list` items of local and scheduled runs (`skip`: cluster runs' ids).
///
/// # Errors
/// Catalog failures.
pub async fn list_items(data_dir: &Path, skip: &BTreeSet<String>) -> anyhow::Result<Vec<serde_json::Value>> {
    let c = smelt_runner::Workspace::new(data_dir).open_catalog()?;
    let runs = collect(data_dir, Some(&c), skip)?;
    drop(c);
    let mut items = Vec::new();
    for r in &runs {
        items.push(item(r).await);
    }
    Ok(items)
}

/// `runs show RUN` for a local or scheduled run; `Ok(false)` when `run_id` is not one.
///
/// # Errors
/// Catalog failures.
pub async fn show(data_dir: &Path, run_id: &str, format: Format) -> anyhow::Result<bool> {
    let c = smelt_runner::Workspace::new(data_dir).open_catalog()?;
    let runs = collect(data_dir, Some(&c), &BTreeSet::new())?;
    drop(c);
    let Some(run) = runs.into_iter().find(|r| r.run_id == run_id) else { return Ok(false) };
    let mut v = item(&run).await;
    v["root_url"] = serde_json::json!(run.root_url);
    v["history"] = serde_json::json!(run.record.as_ref().map(|r| r.history.clone()).unwrap_or_default());
    match format {
        Format::Json => emit_json(&v),
        Format::Table => {
            let s = |k: &str| v[k].as_str().map_or_else(|| "-".to_string(), str::to_string);
            let mut out =
                format!("run {} ({}, dataset `{}`): {}\n", run.run_id, s("executor"), run.dataset, s("state"));
            out.push_str(&format!("  pipeline   {}\n", run.pipeline));
            if let Some(i) = run.record.as_ref().and_then(|r| r.interval.as_ref()) {
                out.push_str(&format!("  interval   {} .. {} (cron `{}`, {})\n", i.start, i.end, i.cron, i.timezone));
            }
            out.push_str(&format!(
                "  splits     {}/{}\n",
                v["splits_done"].as_u64().map_or_else(|| "-".into(), |n| n.to_string()),
                v["splits_total"].as_u64().map_or_else(|| "-".into(), |n| n.to_string())
            ));
            if let Some(r) = &run.record {
                out.push_str(&format!("  attempts   {} of {}\n", r.attempts, r.max_attempts));
                if let Some(t) = &r.next_attempt_at {
                    out.push_str(&format!("  next try   {t}\n"));
                }
                if let Some(e) = &r.last_error {
                    out.push_str(&format!("  last error {}\n", e.replace('\n', "\n             ")));
                }
                for h in &r.history {
                    out.push_str(&format!(
                        "  attempt {}  {} .. {}  exit {}  log {}\n",
                        h.number,
                        h.started_at,
                        h.finished_at.as_deref().unwrap_or("-"),
                        h.exit_code.map_or_else(|| "-".into(), |c| c.to_string()),
                        h.log
                    ));
                }
            }
            match &run.committed {
                Some((d, ver)) => out.push_str(&format!("committed as {d}@{ver}")),
                None if run.record.is_none() => {
                    out.push_str(&format!("resume: smelt run {} --resume {}", run.pipeline, run.run_id))
                }
                None => {}
            }
            emit(&out);
        }
    }
    Ok(true)
}

/// `runs logs RUN` for a scheduled run: every attempt's log, in order; `Ok(false)` when it is not one.
///
/// # Errors
/// Catalog failures, unreadable logs.
pub fn logs(data_dir: &Path, run_id: &str) -> anyhow::Result<bool> {
    let c = smelt_runner::Workspace::new(data_dir).open_catalog()?;
    let record = c.run_record(run_id)?;
    let local = smelt_runner::Workspace::new(data_dir).pointer_exists(run_id);
    drop(c);
    let Some(r) = record else {
        if local {
            return Err(smelt_engine::EngineError::User(format!(
                "run {run_id} was started by `smelt run`, which logs to its terminal; only scheduled runs keep logs (docs/scheduling.md)"
            ))
            .into());
        }
        return Ok(false);
    };
    if r.history.is_empty() {
        return Err(smelt_engine::EngineError::User(format!(
            "run {run_id} has not started yet ({})",
            r.status.as_str()
        ))
        .into());
    }
    for h in &r.history {
        let text = std::fs::read(&h.log).with_context(|| format!("cannot read {}", h.log))?;
        emit(&format!("==> {} (attempt {}) <==\n{}", h.log, h.number, String::from_utf8_lossy(&text)));
    }
    Ok(true)
}
