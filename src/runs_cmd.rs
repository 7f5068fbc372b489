//! `smelt runs list|show|logs`: the runner's run listings (local, scheduled,
//! Slurm and Kubernetes runs) printed as tables or JSON.
//!
//! ```text
//! RunsCmd ──► smelt_runner::runs::{list, show, logs} ──► RunSummary │ RunView │ LogFile ──► table / JSON / log text
//! ```

use clap::Subcommand;
use serde_json::Value;
use smelt_runner::executor::Executor;
use smelt_runner::runs::{self, ClusterRunView, LocalRunView, RunView};
use smelt_runner::Workspace;

use crate::output::{emit, emit_json, funnel_long, table, Format};

/// `smelt runs` subcommands.
#[derive(Debug, Subcommand)]
pub enum RunsCmd {
    /// Runs of this data directory: local, scheduled (state, interval, attempts) and on a cluster.
    #[command(after_help = "Examples:\n  smelt runs list\n  smelt runs list --format json")]
    List {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// A run's state: a scheduled run's interval, attempts and last error; a cluster run's state per rank.
    #[command(
        after_help = "Examples:\n  smelt runs show 20250101T000000Z-1a2b --format json\n  smelt runs show cc-news-20240501T000000Z\n  smelt runs show 20250101T000000Z-1a2b --funnel"
    )]
    Show {
        /// The run id `smelt run --executor slurm` printed.
        run_id: String,
        /// Print the committed version's whole filter funnel instead: every reason of every stage, one per line.
        #[arg(long)]
        funnel: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Print a scheduled run's logs (every attempt), or a cluster rank's log (every phase, and Slurm's messages).
    #[command(
        after_help = "Examples:\n  smelt runs logs cc-news-20240501T000000Z\n  smelt runs logs 20250101T000000Z-1a2b --rank 3"
    )]
    Logs {
        /// The run id.
        run_id: String,
        /// The rank (cluster runs).
        #[arg(long)]
        rank: Option<u32>,
        /// Only this phase.
        #[arg(long)]
        phase: Option<u32>,
    },
}

/// Runs `smelt runs ...`.
///
/// # Errors
/// An unknown run, unreadable state or storage.
pub async fn run(data_dir: &std::path::Path, cmd: RunsCmd) -> anyhow::Result<()> {
    let ws = Workspace::new(data_dir);
    match cmd {
        RunsCmd::List { format } => list(&ws, format).await,
        RunsCmd::Show { run_id, funnel: true, format } => {
            let committed = match runs::show(&ws, &run_id).await? {
                RunView::Local(v) => v.committed,
                RunView::Cluster(v) => v.committed,
            };
            let Some((dataset, version)) = committed else {
                anyhow::bail!(
                    "run {run_id} has not committed a version, so it has no funnel yet: `smelt runs show {run_id}` shows where it is"
                );
            };
            let m = ws
                .open_catalog()?
                .manifest(&dataset, version)?
                .ok_or_else(|| anyhow::anyhow!("{dataset}@{version} is not in the catalog (smelt catalog rebuild)"))?;
            match format {
                Format::Json => emit_json(&serde_json::to_value(&m.funnel)?),
                Format::Table => emit(&format!("{dataset}@{version} (run {run_id})\n{}", funnel_long(&m.funnel))),
            }
            Ok(())
        }
        RunsCmd::Show { run_id, funnel: false, format } => {
            match runs::show(&ws, &run_id).await? {
                RunView::Local(v) => show_local(&v, format),
                RunView::Cluster(v) => show_cluster(&v, format),
            }
            Ok(())
        }
        RunsCmd::Logs { run_id, rank, phase } => {
            for f in runs::logs(&ws, &run_id, rank, phase)? {
                let text = String::from_utf8_lossy(&f.text);
                match f.attempt {
                    Some(n) => emit(&format!("==> {} (attempt {n}) <==\n{text}", f.path)),
                    None => emit(&format!("==> {} <==\n{text}", f.path)),
                }
            }
            Ok(())
        }
    }
}

async fn list(ws: &Workspace, format: Format) -> anyhow::Result<()> {
    let items = serde_json::to_value(runs::list(ws).await?)?;
    let items = items.as_array().cloned().unwrap_or_default();
    match format {
        Format::Json => emit_json(&Value::Array(items)),
        Format::Table => {
            let s = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|i| {
                    vec![
                        s(&i["run_id"]),
                        s(&i["executor"]),
                        s(&i["dataset"]),
                        s(&i["ranks"]),
                        s(&i["submitted_at"]),
                        i["interval"]["start"]
                            .as_str()
                            .map(str::to_string)
                            .or_else(|| i["trigger_version"].as_str().map(|v| format!("after {v}")))
                            .unwrap_or_else(|| "-".into()),
                        i["state"].as_str().unwrap_or("-").to_string(),
                        i["attempts"].as_u64().map_or_else(|| "-".into(), |n| n.to_string()),
                        format!("{}/{}", i["splits_done"], i["splits_total"]),
                        i["committed"].as_str().unwrap_or("-").to_string(),
                    ]
                })
                .collect();
            emit(&table(
                &[
                    "run",
                    "executor",
                    "dataset",
                    "ranks",
                    "submitted",
                    "interval / trigger",
                    "state",
                    "attempts",
                    "splits",
                    "committed",
                ],
                &rows,
            ));
        }
    }
    Ok(())
}

fn show_local(run: &LocalRunView, format: Format) {
    let mut v = serde_json::to_value(&run.summary).unwrap_or_default();
    v["root_url"] = serde_json::json!(run.root_url);
    v["history"] = serde_json::json!(run.history());
    match format {
        Format::Json => emit_json(&v),
        Format::Table => {
            let sum = &run.summary;
            let s = |k: &str| v[k].as_str().map_or_else(|| "-".to_string(), str::to_string);
            let mut out =
                format!("run {} ({}, dataset `{}`): {}\n", sum.run_id, s("executor"), sum.dataset, s("state"));
            out.push_str(&format!("  pipeline   {}\n", sum.pipeline));
            if let Some(i) = run.record.as_ref().and_then(|r| r.interval.as_ref()) {
                out.push_str(&format!("  interval   {} .. {} (cron `{}`, {})\n", i.start, i.end, i.cron, i.timezone));
            }
            if let Some(v) = run.record.as_ref().and_then(|r| r.trigger_version.as_ref()) {
                out.push_str(&format!("  trigger    the commit of {v}\n"));
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
                    out.push_str(&format!("resume: smelt run {} --resume {}", sum.pipeline, sum.run_id))
                }
                None => {}
            }
            emit(&out);
        }
    }
}

fn show_cluster(v: &ClusterRunView, format: Format) {
    let (st, done, state) = (&v.state, &v.done, v.overall);
    let commit = v.commit.as_ref();
    let phases: Vec<Value> = st
        .barriers
        .iter()
        .enumerate()
        .map(|(k, b)| {
            serde_json::json!({"phase": k, "barrier": b, "splits_observed": done.markers[k].len(),
                "resolved": done.resolved[k]})
        })
        .collect();
    match format {
        Format::Json => emit_json(&serde_json::json!({
            "run_id": st.run_id,
            "executor": st.executor,
            "state": state,
            "dataset": st.dataset,
            "pipeline": st.pipeline,
            "root_url": st.root_url,
            "world_size": st.world_size,
            "splits_total": st.splits,
            "splits_done": done.records.len(),
            "phases": phases,
            "commit_job": v.commit_job.as_ref().map(|id| serde_json::json!({"job": id, "state": commit.map(|c| &c.state),
                "reason": commit.map(|c| &c.reason)})),
            "committed": v.committed.as_ref().map(|(d, ver)| serde_json::json!({"dataset": d, "version": ver})),
            "submissions": st.submissions.len(),
            "dir": v.dir.display().to_string(),
            "ranks": v.ranks,
        })),
        Format::Table => {
            let rows: Vec<Vec<String>> = v
                .ranks
                .iter()
                .map(|r| {
                    vec![
                        r.rank.to_string(),
                        r.state.clone(),
                        r.phase.map_or_else(|| "-".into(), |p| p.to_string()),
                        r.job.clone().unwrap_or_else(|| "-".into()),
                        format!("{}/{}", r.splits_done, r.splits_total),
                        if r.reason == "None" { String::new() } else { r.reason.clone() },
                        r.logs.last().cloned().unwrap_or_default(),
                    ]
                })
                .collect();
            emit(&format!(
                "run {} ({}, dataset `{}`): {state}; {}/{} splits done, {} ranks",
                st.run_id,
                match st.executor {
                    Executor::K8s => "k8s",
                    _ => "slurm",
                },
                st.dataset,
                done.records.len(),
                st.splits,
                st.world_size
            ));
            // After the commit the scratch directory (and its markers) is gone.
            for (k, b) in st.barriers.iter().enumerate().filter(|_| v.committed.is_none()) {
                emit(&format!(
                    "phase {k} (up to barrier `{b}`): {}/{} splits observed{}",
                    done.markers[k].len(),
                    st.splits,
                    if done.resolved[k] { ", resolved" } else { "" }
                ));
            }
            emit(&table(&["rank", "state", "phase", "job", "splits", "reason", "log"], &rows));
            match (&v.committed, &v.commit_job) {
                (Some((d, ver)), _) => emit(&format!("committed as {d}@{ver}")),
                (None, Some(id)) => emit(&format!(
                    "commit job {id}: {}",
                    commit
                        .map_or_else(|| "not in Slurm any more".to_string(), |c| format!("{} ({})", c.state, c.reason))
                )),
                (None, None) => {}
            }
            if state == "failed" || state == "incomplete" {
                emit(&format!("resume: smelt run {} --executor slurm --resume {}", st.pipeline, st.run_id));
            }
        }
    }
}
