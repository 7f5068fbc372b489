//! `smelt train`: training runs recorded against the versions they read.
//!
//! ```text
//! ROOT/_training/<run>/{rank-R.json, metrics-R.jsonl}   (python/smelt_data writes them; `import` too)
//!   ──catalog::training::sync──► index ──► list | show (sparkline) | compare (curves + catalog diff of the versions)
//!   ──trace (the loader's plan, in Python)──► batch (documents of a step) | spikes (z-scores ──► documents ──► lifts)
//! ```

pub(crate) mod analysis;
mod import;
mod tensorboard;
mod trace;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;
use smelt_catalog::training::{self, MetricPoint, TrainingEntry, TrainingRun};
use smelt_catalog::{Catalog, DatasetStore, VersionManifest, VersionRef};
use smelt_runner::Workspace;

use crate::output::{emit, emit_json, table, Format};

/// `smelt train` subcommands.
#[derive(Debug, Subcommand)]
pub enum TrainCmd {
    /// Training runs recorded by the loader (or imported), newest last.
    #[command(after_help = "Examples:\n  smelt train list\n  smelt train list news-tok --format json")]
    List {
        /// Only runs that read this dataset.
        dataset: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// One run: the version it read, loader settings, steps, tokens, final and best loss, a loss sparkline.
    #[command(after_help = "Example:\n  smelt train show 20261206T050000Z-3fa2c1")]
    Show {
        /// Run id.
        run: String,
        /// The metric to summarise and draw.
        #[arg(long, default_value = "loss")]
        metric: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Two runs' curves side by side, where they part, and the catalog diff of the versions they read.
    #[command(after_help = "Examples:
  smelt train compare base-run junk-run
  smelt train compare base-run junk-run --by tokens --out compare.html
  smelt train compare a b --format json | jq .divergence")]
    Compare {
        /// The baseline run.
        a: String,
        /// The run to compare with it.
        b: String,
        /// Align the curves by step or by tokens seen.
        #[arg(long, value_enum, default_value = "step")]
        by: Align,
        /// The metric.
        #[arg(long, default_value = "loss")]
        metric: String,
        /// Points per window when deciding where the curves part.
        #[arg(long, default_value_t = 50)]
        window: usize,
        /// How far apart (in standard errors of a window's mean) counts as parted.
        #[arg(long, default_value_t = 4.0)]
        z: f64,
        /// Also write an HTML report with an SVG plot.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// The documents of one step's batch, from the loader's deterministic order (no GPU job needed).
    #[command(after_help = "Examples:
  smelt train batch RUN --step 1200
  smelt train batch RUN --step 1200 --rank 3 --format json
  smelt train batch RUN --batch 57                 # the loader's 58th batch on rank 0

Needs a Python with numpy and pyarrow (--python, else SMELT_PYTHON, else python3): the loader's own plan code runs.")]
    Batch {
        /// Run id.
        run: String,
        /// The training step (mapped to its batch through the logged metrics; one batch per step when not logged).
        #[arg(long, conflicts_with = "batch", required_unless_present = "batch")]
        step: Option<i64>,
        /// The loader's batch index instead (0 = the first batch this rank's loader gave).
        #[arg(long)]
        batch: Option<u64>,
        /// Rank.
        #[arg(long, default_value_t = 0)]
        rank: u32,
        /// Tokens of each document shown as text.
        #[arg(long, default_value_t = 32)]
        excerpt: usize,
        /// Python interpreter (numpy, pyarrow).
        #[arg(long)]
        python: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Loss spikes, each traced to its batch's documents, and what those documents over-represent.
    #[command(after_help = "Examples:
  smelt train spikes RUN
  smelt train spikes RUN --window 100 --z 5 --format json | jq '.documents[].id'")]
    Spikes {
        /// Run id.
        run: String,
        /// The metric.
        #[arg(long, default_value = "loss")]
        metric: String,
        /// Trailing points a step is compared with.
        #[arg(long, default_value_t = 50)]
        window: usize,
        /// Robust standard deviations (1.4826 x MAD) above the trailing median that make a spike.
        #[arg(long, default_value_t = 4.0)]
        z: f64,
        /// Rank.
        #[arg(long, default_value_t = 0)]
        rank: u32,
        /// Documents listed.
        #[arg(long, default_value_t = 20)]
        top: usize,
        /// Python interpreter (numpy, pyarrow).
        #[arg(long)]
        python: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Add metrics to a run from MLflow, TensorBoard, CSV or JSON Lines (or record a run that used another loader).
    #[command(after_help = "Examples:
  smelt train import RUN --mlflow http://127.0.0.1:5000 --mlflow-run 5f0c...   # every metric's history
  smelt train import RUN --tensorboard runs/exp1 --metric loss=train/loss
  smelt train import RUN --csv metrics.csv --step-column iter
  smelt train import my-run --dataset news-tok@3 --jsonl metrics.jsonl          # a run the loader did not record

Values of a step the run already has are added to it; new steps are inserted in order.")]
    Import {
        /// Run id (an existing run, or a new one with --dataset).
        run: String,
        /// DATASET@VERSION the run read, to record a run the loader did not register.
        #[arg(long)]
        dataset: Option<String>,
        /// MLflow tracking server URL.
        #[arg(long, requires = "mlflow_run")]
        mlflow: Option<String>,
        /// MLflow run id.
        #[arg(long, requires = "mlflow")]
        mlflow_run: Option<String>,
        /// TensorBoard log directory (or one event file).
        #[arg(long)]
        tensorboard: Option<PathBuf>,
        /// CSV with a header.
        #[arg(long)]
        csv: Option<PathBuf>,
        /// JSON Lines of {"step": N, metric: value, ...}.
        #[arg(long)]
        jsonl: Option<PathBuf>,
        /// The CSV's step column.
        #[arg(long, default_value = "step")]
        step_column: String,
        /// Store a source's metric under another name: NAME=SOURCE_NAME (repeatable), e.g. loss=train/loss.
        #[arg(long = "metric", value_name = "NAME=SOURCE_NAME")]
        metrics: Vec<String>,
        /// The rank whose metrics these are.
        #[arg(long, default_value_t = 0)]
        rank: u32,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

/// `smelt train compare --by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Align {
    /// Training step.
    Step,
    /// Input tokens seen (by the rank).
    Tokens,
}

/// Runs a `smelt train` subcommand.
pub async fn run(data_dir: &Path, cmd: TrainCmd) -> anyhow::Result<()> {
    match cmd {
        TrainCmd::List { dataset, format } => list(data_dir, dataset.as_deref(), format).await,
        TrainCmd::Show { run, metric, format } => show(data_dir, &run, &metric, format).await,
        TrainCmd::Compare { a, b, by, metric, window, z, out, format } => {
            compare(data_dir, &a, &b, by, &metric, window, z, out.as_deref(), format).await
        }
        TrainCmd::Batch { run, step, batch, rank, excerpt, python, format } => {
            batch_cmd(data_dir, &run, step, batch, rank, excerpt, python.as_deref(), format).await
        }
        TrainCmd::Spikes { run, metric, window, z, rank, top, python, format } => {
            spikes_cmd(data_dir, &run, &metric, window, z, rank, top, python.as_deref(), format).await
        }
        TrainCmd::Import {
            run,
            dataset,
            mlflow,
            mlflow_run,
            tensorboard,
            csv,
            jsonl,
            step_column,
            metrics,
            rank,
            format,
        } => {
            let source = match (mlflow, tensorboard, csv, jsonl) {
                (Some(url), None, None, None) => Source::Mlflow(url, mlflow_run.unwrap_or_default()),
                (None, Some(d), None, None) => Source::Tensorboard(d),
                (None, None, Some(f), None) => Source::Csv(f, step_column),
                (None, None, None, Some(f)) => Source::Jsonl(f),
                _ => anyhow::bail!("give exactly one of --mlflow, --tensorboard, --csv, --jsonl"),
            };
            let renames = metrics
                .iter()
                .map(|m| {
                    m.split_once('=')
                        .map(|(n, t)| (n.trim().to_string(), t.trim().to_string()))
                        .ok_or_else(|| anyhow::anyhow!("--metric {m:?}: write NAME=SOURCE_NAME, e.g. loss=train/loss"))
                })
                .collect::<anyhow::Result<BTreeMap<_, _>>>()?;
            import_cmd(data_dir, &run, dataset.as_deref(), source, &renames, rank, format).await
        }
    }
}

// ----- finding runs -----

/// Records the training runs of every dataset the catalog knows; returns them.
async fn sync_all(catalog: &Catalog) -> anyhow::Result<Vec<TrainingEntry>> {
    let mut out = Vec::new();
    for d in catalog.datasets()? {
        let store = DatasetStore::open(&d.root_url)?;
        out.extend(
            training::sync(catalog, &store)
                .await
                .with_context(|| format!("reading the training runs of {}", d.root_url))?,
        );
    }
    out.sort_by(|a, b| (&a.started_at, &a.run_id).cmp(&(&b.started_at, &b.run_id)));
    Ok(out)
}

/// A run by id: from the index, else after syncing every dataset's `_training/`.
async fn find(catalog: &Catalog, run_id: &str) -> anyhow::Result<(TrainingRun, DatasetStore)> {
    let entry = match catalog.training_run(run_id)? {
        Some(e) => e,
        None => {
            let all = sync_all(catalog).await?;
            match all.iter().find(|e| e.run_id == run_id) {
                Some(e) => e.clone(),
                None => {
                    let close = smelt_catalog::closest(run_id, all.iter().map(|e| e.run_id.as_str()));
                    anyhow::bail!(
                        "no training run {run_id}{}; `smelt train list` shows the runs recorded under the datasets' _training/",
                        close.map(|c| format!(" (did you mean {c}?)")).unwrap_or_default()
                    );
                }
            }
        }
    };
    let store = DatasetStore::open(&entry.root_url)?;
    let run = training::load_run(&store, run_id).await?;
    Ok((run, store))
}

fn open(data_dir: &Path) -> anyhow::Result<Catalog> {
    Ok(Workspace::new(data_dir).open_catalog()?)
}

// ----- summaries -----

/// (step, value) of `metric` on the run's primary rank, in file order.
pub(crate) fn series(points: &[MetricPoint], metric: &str) -> Vec<(i64, f64, Option<u64>)> {
    points
        .iter()
        .filter_map(|p| p.values.get(metric).map(|v| (p.step, *v, p.tokens)))
        .filter(|(_, v, _)| v.is_finite())
        .collect()
}

#[derive(Debug, serde::Serialize)]
struct Summary {
    run_id: String,
    name: Option<String>,
    dataset: String,
    versions: Vec<u64>,
    ranks: Vec<u32>,
    started_at: String,
    steps: usize,
    last_step: Option<i64>,
    tokens: u64,
    metrics: Vec<String>,
    final_value: Option<f64>,
    final_step: Option<i64>,
    best_value: Option<f64>,
    best_step: Option<i64>,
}

fn summarize(run: &TrainingRun, metric: &str) -> Summary {
    let points = run.primary_metrics();
    let s = series(points, metric);
    let best = s.iter().min_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal));
    let names: BTreeSet<String> = points.iter().flat_map(|p| p.values.keys().cloned()).collect();
    Summary {
        run_id: run.entry.run_id.clone(),
        name: run.entry.name.clone(),
        dataset: run.entry.dataset.clone(),
        versions: run.entry.versions.clone(),
        ranks: run.entry.ranks.clone(),
        started_at: run.entry.started_at.clone(),
        steps: points.len(),
        last_step: points.iter().map(|p| p.step).max(),
        tokens: run.metrics.iter().filter_map(|m| m.points.iter().filter_map(|p| p.tokens).max()).sum(),
        metrics: names.into_iter().collect(),
        final_value: s.last().map(|p| p.1),
        final_step: s.last().map(|p| p.0),
        best_value: best.map(|p| p.1),
        best_step: best.map(|p| p.0),
    }
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"))
}

fn human_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2}M", n as f64 / 1e6),
        n if n >= 10_000 => format!("{:.1}k", n as f64 / 1e3),
        n => n.to_string(),
    }
}

fn versions_label(e: &TrainingEntry) -> String {
    e.versions.iter().map(|v| format!("{}@{v}", e.dataset)).collect::<Vec<_>>().join(",")
}

async fn list(data_dir: &Path, dataset: Option<&str>, format: Format) -> anyhow::Result<()> {
    let catalog = open(data_dir)?;
    let mut entries = sync_all(&catalog).await?;
    if let Some(d) = dataset {
        if catalog.dataset(d)?.is_none() {
            catalog.resolve(&VersionRef::latest(d))?; // the catalog's message, with close names
        }
        entries.retain(|e| e.dataset == d);
    }
    let mut rows = Vec::new();
    let mut json = Vec::new();
    for e in &entries {
        let store = DatasetStore::open(&e.root_url)?;
        let run = training::load_run(&store, &e.run_id).await?;
        let s = summarize(&run, "loss");
        rows.push(vec![
            e.run_id.clone(),
            versions_label(e),
            e.ranks.len().to_string(),
            e.started_at.chars().take(19).collect(),
            s.steps.to_string(),
            if s.tokens > 0 { human_count(s.tokens) } else { "-".into() },
            fmt_opt(s.final_value),
            fmt_opt(s.best_value),
        ]);
        json.push(serde_json::to_value(&s)?);
    }
    match format {
        Format::Json => emit_json(&serde_json::Value::Array(json)),
        Format::Table if rows.is_empty() => emit(
            "no training runs recorded: ShardLoader / TokenShardDataset record them under the dataset's _training/ \
             (docs/training.md), or `smelt train import RUN --dataset D@V ...`",
        ),
        Format::Table => {
            emit(&table(&["run", "read", "ranks", "started", "steps", "tokens", "final loss", "best loss"], &rows))
        }
    }
    Ok(())
}

/// Whether the version a run read is still there with the digest it had.
fn version_state(catalog: &Catalog, r: &training::RankRecord) -> String {
    match catalog.manifest(&r.dataset, r.version) {
        Ok(Some(m)) => match &r.digest {
            Some(d) if !d.is_empty() && *d != m.digest => {
                format!("digest changed: the run read {d}, the version has {}", m.digest)
            }
            _ => format!("digest {}", m.digest),
        },
        Ok(None) => "no longer in the catalog (expired by gc?)".to_string(),
        Err(e) => format!("unreadable: {e}"),
    }
}

async fn show(data_dir: &Path, run_id: &str, metric: &str, format: Format) -> anyhow::Result<()> {
    let catalog = open(data_dir)?;
    let (run, _) = find(&catalog, run_id).await?;
    let s = summarize(&run, metric);
    let values: Vec<f64> = series(run.primary_metrics(), metric).iter().map(|p| p.1).collect();
    let r0 = &run.ranks[0];
    match format {
        Format::Json => {
            let mut j = serde_json::to_value(&s)?;
            j["metric"] = serde_json::json!(metric);
            j["ranks_detail"] = serde_json::to_value(&run.ranks)?;
            j["version_state"] = serde_json::json!(version_state(&catalog, r0));
            j["series"] = serde_json::json!(series(run.primary_metrics(), metric)
                .iter()
                .map(|(step, v, _)| serde_json::json!([step, v]))
                .collect::<Vec<_>>());
            emit_json(&j);
        }
        Format::Table => {
            let mut out =
                format!("run       {}{}\n", s.run_id, s.name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default());
            out.push_str(&format!("read      {}  ({})\n", versions_label(&run.entry), version_state(&catalog, r0)));
            let opt = |v: Option<u64>| v.map_or_else(|| "?".to_string(), |v| v.to_string());
            match r0.loader.as_deref().and_then(|l| l.strip_prefix("import:")) {
                Some(source) => out.push_str(&format!("source    imported from {source}\n")),
                None => out.push_str(&format!(
                    "loader    {}: seq_len {}, batch {}, seed {}, shuffle {}, {} rank(s) x {} worker(s), tokenizer {}\n",
                    r0.loader.as_deref().unwrap_or("?"),
                    opt(r0.seq_len),
                    opt(r0.batch_size),
                    opt(r0.seed),
                    r0.shuffle.map_or("?".to_string(), |b| b.to_string()),
                    r0.world_size,
                    r0.workers.map_or("?".to_string(), |w| w.to_string()),
                    r0.tokenizer.as_deref().unwrap_or("?")
                )),
            }
            let hosts: Vec<String> =
                run.ranks.iter().filter_map(|r| r.host.clone()).collect::<BTreeSet<_>>().into_iter().collect();
            out.push_str(&format!(
                "started   {}{}\n",
                s.started_at,
                if hosts.is_empty() { String::new() } else { format!(" on {}", hosts.join(", ")) }
            ));
            out.push_str(&format!(
                "progress  {} logged steps{}{}{}\n",
                s.steps,
                s.last_step.map(|l| format!(" (last step {l})")).unwrap_or_default(),
                if s.tokens > 0 { format!(", {} tokens (all ranks)", human_count(s.tokens)) } else { String::new() },
                if run.ranks.iter().any(|r| r.segments.len() > 1) { ", resumed from a checkpoint" } else { "" }
            ));
            out.push_str(&format!(
                "{metric:<9} final {} (step {}), best {} (step {})\n",
                fmt_opt(s.final_value),
                s.final_step.map_or("-".into(), |v| v.to_string()),
                fmt_opt(s.best_value),
                s.best_step.map_or("-".into(), |v| v.to_string())
            ));
            if let Some((lo, hi)) = analysis::range(values.iter().copied()) {
                out.push_str(&format!("          {}  {lo:.3}..{hi:.3}\n", analysis::sparkline(&values, 60, lo, hi)));
            }
            out.push_str(&format!("metrics   {}\n", s.metrics.join(", ")));
            if !r0.params.is_null() && r0.params.as_object().is_none_or(|o| !o.is_empty()) {
                out.push_str(&format!("params    {}\n", r0.params));
            }
            let cut: usize = run.metrics.iter().map(|m| m.cut_lines).sum();
            if cut > 0 {
                out.push_str(&format!(
                    "note      {cut} metrics line(s) cut short by a killed job were skipped (the job was killed while writing)\n"
                ));
            }
            emit(&out);
        }
    }
    Ok(())
}

// ----- compare -----

/// The two curves on common x: by step, the steps both logged; by tokens, a
/// common grid of token buckets (bucket means).
pub(crate) fn align(
    a: &[(i64, f64, Option<u64>)],
    b: &[(i64, f64, Option<u64>)],
    by: Align,
) -> anyhow::Result<Vec<(f64, f64, f64)>> {
    match by {
        Align::Step => {
            let bm: BTreeMap<i64, f64> = b.iter().map(|p| (p.0, p.1)).collect();
            let am: BTreeMap<i64, f64> = a.iter().map(|p| (p.0, p.1)).collect();
            Ok(am.iter().filter_map(|(s, va)| bm.get(s).map(|vb| (*s as f64, *va, *vb))).collect())
        }
        Align::Tokens => {
            if a.iter().chain(b).any(|p| p.2.is_none()) {
                anyhow::bail!("a run's metrics have no `tokens` (imported without them?): compare --by step");
            }
            let max = |s: &[(i64, f64, Option<u64>)]| s.iter().filter_map(|p| p.2).max().unwrap_or(0);
            let end = max(a).min(max(b));
            let n = a.len().min(b.len()).max(1);
            let bucket = |s: &[(i64, f64, Option<u64>)]| {
                let mut sums = vec![(0.0, 0usize); n];
                for p in s {
                    let t = p.2.unwrap_or(0);
                    if t <= end && end > 0 {
                        let i = ((t as f64 / end as f64) * (n - 1) as f64).round() as usize;
                        sums[i].0 += p.1;
                        sums[i].1 += 1;
                    }
                }
                sums
            };
            let (sa, sb) = (bucket(a), bucket(b));
            Ok((0..n)
                .filter(|&i| sa[i].1 > 0 && sb[i].1 > 0)
                .map(|i| {
                    (i as f64 / (n - 1).max(1) as f64 * end as f64, sa[i].0 / sa[i].1 as f64, sb[i].0 / sb[i].1 as f64)
                })
                .collect())
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn compare(
    data_dir: &Path,
    a_id: &str,
    b_id: &str,
    by: Align,
    metric: &str,
    window: usize,
    z: f64,
    out: Option<&Path>,
    format: Format,
) -> anyhow::Result<()> {
    let catalog = open(data_dir)?;
    let (a, _) = find(&catalog, a_id).await?;
    let (b, _) = find(&catalog, b_id).await?;
    let (sa, sb) = (series(a.primary_metrics(), metric), series(b.primary_metrics(), metric));
    if sa.is_empty() || sb.is_empty() {
        anyhow::bail!(
            "no `{metric}` values in {}: log it with loader.log(step, {metric}=...) or `smelt train import`",
            if sa.is_empty() { a_id } else { b_id }
        );
    }
    let aligned = align(&sa, &sb, by)?;
    let xa: Vec<f64> = aligned.iter().map(|p| p.1).collect();
    let xb: Vec<f64> = aligned.iter().map(|p| p.2).collect();
    let div = analysis::divergence(&xa, &xb, window, z);
    let at = div.as_ref().map(|d| aligned[d.index].0);
    // The versions they read, and what changed between them.
    let manifest = |run: &TrainingRun| -> anyhow::Result<Option<VersionManifest>> {
        Ok(catalog.manifest(&run.entry.dataset, *run.entry.versions.last().unwrap_or(&0))?)
    };
    let (ma, mb) = (manifest(&a)?, manifest(&b)?);
    let diff = match (&ma, &mb) {
        (Some(ma), Some(mb)) => {
            let documents = crate::docs::document_diff(ma, &a.entry.root_url, mb, &b.entry.root_url, 5).await?;
            Some(smelt_query::diff::diff_versions(ma, mb, documents))
        }
        _ => None,
    };
    let (suma, sumb) = (summarize(&a, metric), summarize(&b, metric));
    let by_name = if by == Align::Step { "step" } else { "tokens" };
    match format {
        Format::Json => emit_json(&serde_json::json!({
            "a": suma, "b": sumb, "metric": metric, "aligned_by": by_name, "points": aligned.len(),
            "divergence": div.as_ref().map(|d| serde_json::json!({by_name: at, "gap": d.gap, "z": d.z, "window": window})),
            "diff": diff,
        })),
        Format::Table => {
            let mut o = format!(
                "compare {} ({}) with {} ({}): {metric} by {by_name}, {} common points\n\n",
                a_id,
                versions_label(&a.entry),
                b_id,
                versions_label(&b.entry),
                aligned.len()
            );
            let tail = |v: &[f64]| {
                let k = (v.len() / 10).max(1);
                v[v.len().saturating_sub(k)..].iter().sum::<f64>() / k.min(v.len()).max(1) as f64
            };
            let (lo, hi) = analysis::range(xa.iter().chain(&xb).copied()).unwrap_or((0.0, 1.0));
            let rows = vec![
                vec![
                    "A".into(),
                    a_id.into(),
                    fmt_opt(suma.final_value),
                    fmt_opt(suma.best_value),
                    format!("{:.4}", tail(&xa)),
                    analysis::sparkline(&xa, 50, lo, hi),
                ],
                vec![
                    "B".into(),
                    b_id.into(),
                    fmt_opt(sumb.final_value),
                    fmt_opt(sumb.best_value),
                    format!("{:.4}", tail(&xb)),
                    analysis::sparkline(&xb, 50, lo, hi),
                ],
            ];
            o.push_str(&table(&["", "run", "final", "best", "last 10%", &format!("{metric} {lo:.3}..{hi:.3}")], &rows));
            o.push('\n');
            match &div {
                Some(d) => o.push_str(&format!(
                    "diverge  from {by_name} {} on: B is {} by {:.4} ({:.1} standard errors of a {window}-point mean)\n",
                    at.map_or("?".into(), |x| format!("{x:.0}")),
                    if d.gap > 0.0 { "higher" } else { "lower" },
                    d.gap.abs(),
                    d.z
                )),
                None => o.push_str(&format!("diverge  never (no {window}-point window apart by more than {z} standard errors)\n")),
            }
            match &diff {
                Some(d) if d.same_data => {
                    o.push_str("\ndata     both read the same data (same digest): the difference is not in the data\n")
                }
                Some(d) => {
                    o.push_str("\ndata     what changed between the versions they read:\n\n");
                    o.push_str(&crate::catalog_cmd::diff_table(d));
                }
                None => o.push_str("\ndata     a version a run read is no longer in the catalog: no diff\n"),
            }
            emit(&o);
        }
    }
    if let Some(path) = out {
        let html =
            compare_html(a_id, b_id, metric, by_name, &aligned, at, diff.as_ref().map(crate::catalog_cmd::diff_table));
        std::fs::write(path, html).with_context(|| format!("writing {}", path.display()))?;
        if format == Format::Table {
            emit(&format!("report   {}", path.display()));
        }
    }
    Ok(())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A self-contained page: the two curves as SVG polylines, the divergence marked, the data diff.
fn compare_html(
    a: &str,
    b: &str,
    metric: &str,
    by: &str,
    pts: &[(f64, f64, f64)],
    at: Option<f64>,
    diff: Option<String>,
) -> String {
    let (w, h, pad) = (900.0, 360.0, 48.0);
    let (x0, x1) = (pts.first().map_or(0.0, |p| p.0), pts.last().map_or(1.0, |p| p.0));
    let (lo, hi) = analysis::range(pts.iter().flat_map(|p| [p.1, p.2])).unwrap_or((0.0, 1.0));
    let sx = |x: f64| pad + (x - x0) / (x1 - x0).max(1e-12) * (w - 2.0 * pad);
    let sy = |y: f64| h - pad - (y - lo) / (hi - lo).max(1e-12) * (h - 2.0 * pad);
    let line = |f: &dyn Fn(&(f64, f64, f64)) -> f64| {
        pts.iter().map(|p| format!("{:.1},{:.1}", sx(p.0), sy(f(p)))).collect::<Vec<_>>().join(" ")
    };
    let marker = at.map_or(String::new(), |x| {
        format!(
            r##"<line x1="{0:.1}" x2="{0:.1}" y1="{pad}" y2="{1}" stroke="#888" stroke-dasharray="4 3"/><text x="{0:.1}" y="{2}" font-size="12">diverge at {by} {x:.0}</text>"##,
            sx(x),
            h - pad,
            pad - 6.0
        )
    });
    format!(
        r##"<!doctype html><html><head><meta charset="utf-8"><title>smelt train compare {ea} {eb}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}} pre{{background:#f6f6f6;padding:1em;overflow:auto}}</style></head><body>
<h1>{metric}: {ea} vs {eb}</h1>
<svg id="curves" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">
<rect x="0" y="0" width="{w}" height="{h}" fill="white"/>
<line x1="{pad}" y1="{yb}" x2="{xr}" y2="{yb}" stroke="#000"/><line x1="{pad}" y1="{pad}" x2="{pad}" y2="{yb}" stroke="#000"/>
<text x="{pad}" y="{yl}" font-size="12">{by} {x0:.0}</text><text x="{xr}" y="{yl}" font-size="12" text-anchor="end">{x1:.0}</text>
<text x="4" y="{pad}" font-size="12">{hi:.3}</text><text x="4" y="{yb}" font-size="12">{lo:.3}</text>
<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{la}"/>
<polyline fill="none" stroke="#d62728" stroke-width="1.5" points="{lb}"/>
{marker}
<text x="{xr}" y="{ya}" font-size="12" text-anchor="end" fill="#1f77b4">A {ea}</text>
<text x="{xr}" y="{yb2}" font-size="12" text-anchor="end" fill="#d62728">B {eb}</text>
</svg>
<h2>What changed between the versions they read</h2>
<pre>{diff}</pre></body></html>
"##,
        ea = esc(a),
        eb = esc(b),
        metric = esc(metric),
        yb = h - pad,
        xr = w - pad,
        yl = h - pad + 16.0,
        la = line(&|p| p.1),
        lb = line(&|p| p.2),
        ya = pad + 12.0,
        yb2 = pad + 28.0,
        diff = esc(&diff.unwrap_or_else(|| "a version is no longer in the catalog".into())),
    )
}

// ----- batches and spikes -----

/// The local directory of a dataset root (the loader reads local paths only).
fn local_root(root_url: &str) -> anyhow::Result<PathBuf> {
    match url::Url::parse(root_url) {
        Ok(u) if u.scheme() == "file" => {
            u.to_file_path().map_err(|()| anyhow::anyhow!("{root_url} is not a local path"))
        }
        Ok(_) => anyhow::bail!(
            "{root_url} is not local storage: batches are traced where the training loader read them (local paths)"
        ),
        Err(_) => Ok(PathBuf::from(root_url)),
    }
}

/// Text of token ids, with the run's tokenizer when it can be loaded.
struct Decoder(Option<smelt_stages::tokenize::Loaded>);

impl Decoder {
    fn new(run: &TrainingRun) -> Self {
        let t = run.ranks[0]
            .tokenizer
            .as_deref()
            .and_then(|name| smelt_stages::tokenize::Loaded::load(name, Path::new(name)).ok());
        Decoder(t)
    }

    fn text(&self, ids: &[u32]) -> String {
        let raw = match &self.0 {
            Some(t) => t.decode_lossy(ids),
            None => format!("{ids:?}"),
        };
        raw.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn ids_of(doc: &serde_json::Value) -> Vec<u32> {
    doc["excerpt_ids"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_u64().map(|v| v as u32)).collect())
        .unwrap_or_default()
}

/// A document's column value; `domain` falls back to its URL's host as the
/// catalog's group statistics compute it (token shards keep `url`, not `domain`).
fn col<'a>(doc: &'a serde_json::Value, name: &str) -> &'a str {
    match doc["columns"][name].as_str() {
        Some(v) => v,
        None if name == "domain" => doc["columns"]["url"].as_str().map_or("", smelt_engine::exec::domain_of),
        None => "",
    }
}

fn has_col(doc: &serde_json::Value, name: &str) -> bool {
    doc["columns"].get(name).is_some() || (name == "domain" && doc["columns"].get("url").is_some())
}

#[allow(clippy::too_many_arguments)]
async fn batch_cmd(
    data_dir: &Path,
    run_id: &str,
    step: Option<i64>,
    batch: Option<u64>,
    rank: u32,
    excerpt: usize,
    python: Option<&Path>,
    format: Format,
) -> anyhow::Result<()> {
    let catalog = open(data_dir)?;
    let (run, _) = find(&catalog, run_id).await?;
    drop(catalog);
    let root = local_root(&run.entry.root_url)?;
    let which = match (step, batch) {
        (Some(s), _) => trace::Which::Steps(vec![s]),
        (None, Some(b)) => trace::Which::Batches(vec![b]),
        (None, None) => anyhow::bail!("give --step or --batch"),
    };
    let mut traced = trace::batch_documents(&trace::interpreter(python), &root, run_id, rank, &which, excerpt)?;
    let decoder = Decoder::new(&run);
    for b in traced["batches"].as_array_mut().into_iter().flatten() {
        for s in b["samples"].as_array_mut().into_iter().flatten() {
            for d in s["docs"].as_array_mut().into_iter().flatten() {
                let text = decoder.text(&ids_of(d));
                d["excerpt"] = serde_json::json!(text);
            }
        }
    }
    match format {
        Format::Json => emit_json(&traced),
        Format::Table => {
            let mut o = String::new();
            for b in traced["batches"].as_array().into_iter().flatten() {
                let samples = b["samples"].as_array().map_or(0, Vec::len);
                o.push_str(&format!(
                    "run {run_id} rank {rank}: {}batch {} (epoch {}, loader worker {}), {samples} samples\n",
                    b["step"].as_i64().map(|s| format!("step {s} = ")).unwrap_or_default(),
                    b["batch"],
                    b["epoch"],
                    b["worker"]
                ));
                let mut rows = Vec::new();
                for s in b["samples"].as_array().into_iter().flatten() {
                    for d in s["docs"].as_array().into_iter().flatten() {
                        rows.push(vec![
                            s["sample"].to_string(),
                            d["id"].as_str().unwrap_or("").to_string(),
                            col(d, "source").to_string(),
                            col(d, "domain").to_string(),
                            col(d, "lang").to_string(),
                            format!("{}-{} of {}", d["from"], d["to"], d["n_tokens"]),
                            d["excerpt"].as_str().unwrap_or("").to_string(),
                        ]);
                    }
                }
                o.push_str(&table(&["sample", "id", "source", "domain", "lang", "tokens", "text"], &rows));
            }
            emit(&o);
        }
    }
    Ok(())
}

/// Column -> value -> weight of a version, from its group statistics (tokens, else documents).
fn version_baseline(m: &VersionManifest) -> BTreeMap<String, BTreeMap<String, f64>> {
    let by_tokens = m.stats.iter().any(|g| g.tokens > 0);
    let mut out: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for g in &m.stats {
        let w = if by_tokens { g.tokens as f64 } else { g.docs as f64 };
        for (c, v) in [("lang", &g.lang), ("source", &g.source), ("domain", &g.domain)] {
            *out.entry(c.to_string()).or_default().entry(v.clone()).or_default() += w;
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
async fn spikes_cmd(
    data_dir: &Path,
    run_id: &str,
    metric: &str,
    window: usize,
    z: f64,
    rank: u32,
    top: usize,
    python: Option<&Path>,
    format: Format,
) -> anyhow::Result<()> {
    let catalog = open(data_dir)?;
    let (run, _) = find(&catalog, run_id).await?;
    let manifest = catalog.manifest(&run.entry.dataset, *run.entry.versions.last().unwrap_or(&0))?;
    drop(catalog);
    let at = run
        .ranks
        .iter()
        .position(|r| r.rank == rank)
        .ok_or_else(|| anyhow::anyhow!("run {run_id} has no rank {rank} (ranks {:?})", run.entry.ranks))?;
    let s = series(&run.metrics[at].points, metric);
    if s.is_empty() {
        anyhow::bail!("no `{metric}` values logged by rank {rank} of {run_id}");
    }
    let values: Vec<f64> = s.iter().map(|p| p.1).collect();
    let found = analysis::spikes(&values, window, z);
    let steps: Vec<i64> = found.iter().map(|f| s[f.index].0).collect();
    let traced = if steps.is_empty() {
        serde_json::json!({"batches": []})
    } else {
        let root = local_root(&run.entry.root_url)?;
        trace::batch_documents(
            &trace::interpreter(python),
            &root,
            run_id,
            rank,
            &trace::Which::Steps(steps.clone()),
            0,
        )?
    };
    // Documents of the spike batches, weighted by the tokens they put in them.
    let mut docs: BTreeMap<String, (u64, BTreeSet<i64>, serde_json::Value)> = BTreeMap::new();
    let mut observed: BTreeMap<String, BTreeMap<String, (u64, u64)>> = BTreeMap::new();
    let mut seen_in_col: BTreeSet<(String, String, String)> = BTreeSet::new();
    for b in traced["batches"].as_array().into_iter().flatten() {
        let step = b["step"].as_i64().unwrap_or(-1);
        for smp in b["samples"].as_array().into_iter().flatten() {
            for d in smp["docs"].as_array().into_iter().flatten() {
                let id = d["id"].as_str().unwrap_or("").to_string();
                let tokens = d["to"].as_u64().unwrap_or(0).saturating_sub(d["from"].as_u64().unwrap_or(0));
                let e = docs.entry(id.clone()).or_insert_with(|| (0, BTreeSet::new(), d["columns"].clone()));
                e.0 += tokens;
                e.1.insert(step);
                for c in ["domain", "source", "lang"] {
                    if !has_col(d, c) {
                        continue;
                    }
                    let v = col(d, c).to_string();
                    let o = observed.entry(c.to_string()).or_default().entry(v.clone()).or_default();
                    o.0 += tokens;
                    if seen_in_col.insert((c.to_string(), v, id.clone())) {
                        o.1 += 1;
                    }
                }
            }
        }
    }
    let lifts = manifest.as_ref().map(|m| analysis::lifts(&observed, &version_baseline(m), 1.5)).unwrap_or_default();
    let signals = match &manifest {
        Some(m) => signals(&local_root(&run.entry.root_url)?, m, docs.values().map(|(t, _, c)| (*t, c)))?,
        None => Vec::new(),
    };
    let mut ranked: Vec<(String, u64, BTreeSet<i64>, serde_json::Value)> =
        docs.into_iter().map(|(id, (t, st, c))| (id, t, st, c)).collect();
    ranked.sort_by(|a, b| (b.2.len(), b.1).cmp(&(a.2.len(), a.1)).then(a.0.cmp(&b.0)));
    let spikes_json: Vec<serde_json::Value> = found
        .iter()
        .map(|f| serde_json::json!({"step": s[f.index].0, "value": f.value, "baseline": f.baseline, "z": f.z}))
        .collect();
    match format {
        Format::Json => emit_json(&serde_json::json!({
            "run_id": run_id, "rank": rank, "metric": metric, "window": window, "z": z, "steps": values.len(),
            "spikes": spikes_json, "over_represented": lifts, "signals": signals,
            "documents": ranked.iter().map(|(id, t, st, c)| serde_json::json!({"id": id, "tokens": t, "spike_steps": st, "columns": c})).collect::<Vec<_>>(),
        })),
        Format::Table => {
            let mut o = format!(
                "{} spikes of {metric} in {run_id} rank {rank} ({} steps; above the median of the {window} calm steps before them by more than {z} robust standard deviations)\n",
                found.len(),
                values.len()
            );
            if found.is_empty() {
                emit(&o);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = found
                .iter()
                .map(|f| {
                    vec![
                        s[f.index].0.to_string(),
                        format!("{:.4}", f.value),
                        format!("{:.4}", f.baseline),
                        format!("{:.1}", f.z),
                    ]
                })
                .collect();
            o.push_str(&table(&["step", metric, "baseline", "z"], &rows));
            o.push_str("\nover-represented in the spike batches (share of their tokens vs the version's):\n");
            let rows: Vec<Vec<String>> = lifts
                .iter()
                .take(top)
                .map(|l| {
                    vec![
                        l.column.clone(),
                        if l.value.is_empty() { "(none)".into() } else { l.value.clone() },
                        format!("{:.1}%", l.share * 100.0),
                        format!("{:.1}%", l.baseline * 100.0),
                        if l.lift.is_finite() { format!("{:.1}x", l.lift) } else { "new".into() },
                        l.docs.to_string(),
                    ]
                })
                .collect();
            o.push_str(&if rows.is_empty() {
                "  nothing stands out\n".to_string()
            } else {
                table(&["column", "value", "spikes", "version", "lift", "docs"], &rows)
            });
            if !signals.is_empty() {
                o.push_str(
                    "\nnumeric columns (quality scores, duplicate cluster sizes, ...): spike batches vs the version\n",
                );
                let rows: Vec<Vec<String>> = signals
                    .iter()
                    .map(|g| {
                        vec![
                            g.column.clone(),
                            format!("{:.4}", g.spikes_mean),
                            format!("{:.4}", g.version_mean),
                            if g.version_mean != 0.0 {
                                format!("{:.2}x", g.spikes_mean / g.version_mean)
                            } else {
                                "-".into()
                            },
                        ]
                    })
                    .collect();
                o.push_str(&table(
                    &["column", "spike batches (token-weighted mean)", "version (mean)", "ratio"],
                    &rows,
                ));
            }
            o.push_str(&format!(
                "\ndocuments in the spike batches ({} in all; most spikes, then most tokens, first):\n",
                ranked.len()
            ));
            let rows: Vec<Vec<String>> = ranked
                .iter()
                .take(top)
                .map(|(id, t, st, c)| {
                    let doc = serde_json::json!({"columns": c});
                    let g = |k: &str| col(&doc, k).to_string();
                    vec![id.clone(), g("domain"), g("source"), g("lang"), t.to_string(), st.len().to_string()]
                })
                .collect();
            o.push_str(&table(&["id", "domain", "source", "lang", "tokens", "spikes"], &rows));
            emit(&o);
        }
    }
    Ok(())
}

/// A numeric column's mean in the spike batches against the version's.
#[derive(Debug, serde::Serialize)]
struct Signal {
    column: String,
    spikes_mean: f64,
    version_mean: f64,
}

/// Numeric columns the spike documents carry (`score_hq`, `dup_cluster_size`, ...): their
/// token-weighted mean over the spike batches, and their mean over the version's rows (read
/// from its shards, that column only).
fn signals<'a>(
    root: &Path,
    m: &VersionManifest,
    docs: impl Iterator<Item = (u64, &'a serde_json::Value)>,
) -> anyhow::Result<Vec<Signal>> {
    use arrow::array::AsArray;
    use arrow::datatypes::Float64Type;
    let mut sums: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for (tokens, cols) in docs {
        for (k, v) in cols.as_object().into_iter().flatten() {
            if let Some(x) = v.as_f64().filter(|x| x.is_finite()) {
                let e = sums.entry(k.clone()).or_default();
                e.0 += x * tokens as f64;
                e.1 += tokens as f64;
            }
        }
    }
    sums.retain(|_, (_, w)| *w > 0.0);
    if sums.is_empty() {
        return Ok(Vec::new());
    }
    let mut version: BTreeMap<String, (f64, u64)> = BTreeMap::new();
    for shard in &m.shards {
        let path = root.join(&shard.path);
        let file = std::fs::File::open(&path).with_context(|| format!("reading {}", path.display()))?;
        let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?;
        let wanted: Vec<usize> = sums.keys().filter_map(|c| builder.schema().index_of(c).ok()).collect();
        if wanted.is_empty() {
            continue;
        }
        let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), wanted);
        for batch in builder.with_projection(mask).with_batch_size(8192).build()? {
            let batch = batch?;
            for (i, field) in batch.schema().fields().iter().enumerate() {
                let Ok(col) = arrow::compute::cast(batch.column(i), &arrow::datatypes::DataType::Float64) else {
                    continue;
                };
                let e = version.entry(field.name().clone()).or_default();
                for x in col.as_primitive::<Float64Type>().iter().flatten().filter(|x| x.is_finite()) {
                    e.0 += x;
                    e.1 += 1;
                }
            }
        }
    }
    Ok(sums
        .into_iter()
        .filter_map(|(column, (sum, w))| {
            let (vs, vn) = version.get(&column).copied()?;
            (vn > 0).then(|| Signal { spikes_mean: sum / w, version_mean: vs / vn as f64, column })
        })
        .collect())
}

// ----- import -----

enum Source {
    Mlflow(String, String),
    Tensorboard(PathBuf),
    Csv(PathBuf, String),
    Jsonl(PathBuf),
}

async fn import_cmd(
    data_dir: &Path,
    run_id: &str,
    dataset: Option<&str>,
    source: Source,
    renames: &BTreeMap<String, String>,
    rank: u32,
    format: Format,
) -> anyhow::Result<()> {
    if !training::valid_run_id(run_id) {
        anyhow::bail!("`{run_id}` cannot name a training run: use letters, digits, `.`, `_`, `-` (at most 128)");
    }
    let (imported, origin) = match &source {
        Source::Mlflow(url, r) => (import::mlflow(url, r, renames).await?, format!("mlflow:{url}#{r}")),
        Source::Tensorboard(d) => (import::tensorboard(d, renames)?, format!("tensorboard:{}", d.display())),
        Source::Csv(f, step) => (import::csv(f, step, renames)?, format!("csv:{}", f.display())),
        Source::Jsonl(f) => (import::jsonl(f, renames)?, format!("jsonl:{}", f.display())),
    };
    if imported.points.is_empty() {
        anyhow::bail!("{}: nothing to import", imported.summary);
    }
    let catalog = open(data_dir)?;
    let existing = match find(&catalog, run_id).await {
        Ok((run, store)) => {
            if let Some(d) = dataset {
                let r: VersionRef = d.parse()?;
                let m = catalog.resolve(&r)?;
                if m.dataset != run.entry.dataset || !run.entry.versions.contains(&m.version) {
                    anyhow::bail!(
                        "run {run_id} read {}, not {d}: leave out --dataset to add metrics to it",
                        versions_label(&run.entry)
                    );
                }
            }
            Some((run, store))
        }
        Err(_) if dataset.is_some() => None,
        Err(e) => return Err(e.context("give --dataset DATASET@VERSION to record a new run")),
    };
    let (store, old, created) = match existing {
        Some((run, store)) => {
            let old = run
                .ranks
                .iter()
                .position(|r| r.rank == rank)
                .map(|i| run.metrics[i].points.clone())
                .unwrap_or_default();
            if !run.entry.ranks.contains(&rank) {
                let mut rec = run.ranks[0].clone();
                rec.rank = rank;
                rec.segments.clear();
                training::write_rank(&store, &rec).await?;
            }
            (store, old, false)
        }
        None => {
            let r: VersionRef = dataset.unwrap_or_default().parse()?;
            let m = catalog.resolve(&r)?;
            let root = catalog.dataset(&m.dataset)?.map(|d| d.root_url).unwrap_or_default();
            let store = DatasetStore::open(&root)?;
            let started = imported.points.values().filter_map(|p| p.time).fold(f64::INFINITY, f64::min);
            let started_at = if started.is_finite() {
                chrono::DateTime::from_timestamp_millis((started * 1000.0) as i64).unwrap_or_default().to_rfc3339()
            } else {
                chrono::Utc::now().to_rfc3339()
            };
            let mut rec = training::RankRecord::without_loader(run_id, &m, rank, &format!("import:{origin}"));
            rec.started_at = started_at;
            rec.params = serde_json::to_value(&imported.params)?;
            training::write_rank(&store, &rec).await?;
            (store, Vec::new(), true)
        }
    };
    let merged = import::merge(&old, &imported);
    training::write_metrics(&store, run_id, rank, &merged).await?;
    training::sync(&catalog, &store).await?;
    match format {
        Format::Json => emit_json(&serde_json::json!({
            "run_id": run_id, "rank": rank, "source": origin, "created": created,
            "steps_imported": imported.points.len(), "steps_total": merged.len(), "summary": imported.summary,
        })),
        Format::Table => emit(&format!(
            "{} run {run_id} rank {rank}: {}; the run now has {} logged steps",
            if created { "recorded" } else { "updated" },
            imported.summary,
            merged.len()
        )),
    }
    Ok(())
}
