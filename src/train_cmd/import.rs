//! Metrics from where teams already log them: an MLflow tracking server (REST
//! API), TensorBoard event files, CSV and JSON Lines.
//!
//! ```text
//! --mlflow URL --mlflow-run ID ──runs/get (metric keys, params) + metrics/get-history per key (paged)──┐
//! --tensorboard DIR ──tensorboard::read_dir (scalars by tag)─────────────────────────────────────────────┤
//! --csv FILE (header; a step column) | --jsonl FILE (metrics lines) ─────────────────────────────────────┴─► points by step
//!   ──merge into the run's metrics file (same step: values added; new steps inserted in step order)
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use smelt_catalog::training::MetricPoint;

/// Imported metrics and what the source also said.
#[derive(Debug, Default)]
pub struct Imported {
    /// Points by step.
    pub points: BTreeMap<i64, MetricPoint>,
    /// Parameters the source recorded (MLflow params).
    pub params: BTreeMap<String, String>,
    /// A note on what was read.
    pub summary: String,
}

impl Imported {
    fn add(&mut self, step: i64, name: &str, value: f64, time: Option<f64>) {
        let p = self.points.entry(step).or_insert_with(|| MetricPoint { step, ..Default::default() });
        if p.time.is_none() {
            p.time = time;
        }
        match name {
            "tokens" => p.tokens = Some(value as u64),
            "epoch" => p.epoch = Some(value as u64),
            "batch" => p.batch = Some(value as u64),
            "time" => p.time = Some(value),
            _ => {
                p.values.insert(name.to_string(), value);
            }
        }
    }
}

/// Metric names as smelt stores them: `renames` (`NAME=TAG`) first, else the tag as it is.
fn rename<'a>(tag: &'a str, renames: &'a BTreeMap<String, String>) -> &'a str {
    renames.iter().find(|(_, t)| t.as_str() == tag).map_or(tag, |(n, _)| n.as_str())
}

/// Every scalar of a TensorBoard log directory.
///
/// # Errors
/// As [`super::tensorboard::read_dir`].
pub fn tensorboard(dir: &Path, renames: &BTreeMap<String, String>) -> anyhow::Result<Imported> {
    let ev = super::tensorboard::read_dir(dir)?;
    let mut out = Imported::default();
    let mut tags = std::collections::BTreeSet::new();
    for s in &ev.scalars {
        out.add(s.step, rename(&s.tag, renames), s.value, Some(s.time));
        tags.insert(s.tag.clone());
    }
    out.summary = format!(
        "{} scalars of {} tags ({}) from {} event files{}",
        ev.scalars.len(),
        tags.len(),
        tags.into_iter().collect::<Vec<_>>().join(", "),
        ev.files,
        if ev.truncated > 0 {
            format!(", {} ending in a partial record (skipped)", ev.truncated)
        } else {
            String::new()
        }
    );
    Ok(out)
}

/// A CSV file with a header naming a `step_column` and numeric metric columns
/// (cells that are empty or not numbers are skipped).
///
/// # Errors
/// Unreadable file, no step column, a step that is not an integer (with its line).
pub fn csv(path: &Path, step_column: &str, renames: &BTreeMap<String, String>) -> anyhow::Result<Imported> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else { anyhow::bail!("{} is empty", path.display()) };
    let cells = |l: &str| -> Vec<String> { l.split(',').map(|c| c.trim().trim_matches('"').to_string()).collect() };
    let names = cells(header);
    let Some(step_at) = names.iter().position(|n| n == step_column) else {
        anyhow::bail!(
            "{}: no `{step_column}` column in the header ({}); name the step column with --step-column",
            path.display(),
            names.join(", ")
        )
    };
    let mut out = Imported::default();
    let mut rows = 0usize;
    for (i, line) in lines {
        let c = cells(line);
        let step: i64 = c
            .get(step_at)
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| s.fract() == 0.0)
            .map(|s| s as i64)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{}:{}: the step `{}` is not an integer",
                    path.display(),
                    i + 1,
                    c.get(step_at).map_or("", |s| s)
                )
            })?;
        for (j, name) in names.iter().enumerate() {
            if j == step_at {
                continue;
            }
            if let Some(v) = c.get(j).and_then(|s| s.parse::<f64>().ok()) {
                out.add(step, rename(name, renames), v, None);
            }
        }
        rows += 1;
    }
    out.summary = format!("{rows} rows of {} columns from {}", names.len() - 1, path.display());
    Ok(out)
}

/// JSON Lines: objects with an integer `step` and numeric metrics (the metrics file's own format).
///
/// # Errors
/// Unreadable file; a line that is not such an object (with its number; a cut last line is skipped).
pub fn jsonl(path: &Path, renames: &BTreeMap<String, String>) -> anyhow::Result<Imported> {
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let m = smelt_catalog::training::parse_metrics(&bytes, &path.display().to_string(), true)?;
    let mut out = Imported::default();
    for p in &m.points {
        for (k, v) in &p.values {
            out.add(p.step, rename(k, renames), *v, p.time);
        }
        let e = out.points.entry(p.step).or_insert_with(|| MetricPoint { step: p.step, ..Default::default() });
        e.tokens = e.tokens.or(p.tokens);
        e.epoch = e.epoch.or(p.epoch);
        e.batch = e.batch.or(p.batch);
    }
    out.summary = format!("{} lines from {}", m.points.len(), path.display());
    Ok(out)
}

/// Every metric's history of one MLflow run, through the tracking server's REST API.
///
/// # Errors
/// The server cannot be reached or answers an error (its message is shown), an unknown run.
pub async fn mlflow(url: &str, run: &str, renames: &BTreeMap<String, String>) -> anyhow::Result<Imported> {
    let base = url.trim_end_matches('/');
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(60)).build()?;
    let get = |path: String, query: Vec<(&'static str, String)>| {
        let client = client.clone();
        async move {
            let resp = client
                .get(format!("{base}/api/2.0/mlflow/{path}"))
                .query(&query)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("cannot reach the MLflow server at {base}: {e}"))?;
            let status = resp.status();
            let body: serde_json::Value = resp
                .bytes()
                .await
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(serde_json::Value::Null);
            if !status.is_success() {
                let msg = body.get("message").and_then(|m| m.as_str()).unwrap_or("");
                anyhow::bail!("MLflow server at {base}: {path} answered {status}: {msg}");
            }
            Ok(body)
        }
    };
    let info = get("runs/get".into(), vec![("run_id", run.to_string())]).await?;
    let data = &info["run"]["data"];
    let keys: Vec<String> = data["metrics"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m["key"].as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let mut out = Imported::default();
    if let Some(params) = data["params"].as_array() {
        for p in params {
            if let (Some(k), Some(v)) = (p["key"].as_str(), p["value"].as_str()) {
                out.params.insert(k.to_string(), v.to_string());
            }
        }
    }
    let mut n = 0usize;
    for key in &keys {
        let mut token: Option<String> = None;
        loop {
            let mut q = vec![("run_id", run.to_string()), ("metric_key", key.clone()), ("max_results", "25000".into())];
            if let Some(t) = &token {
                q.push(("page_token", t.clone()));
            }
            let page = get("metrics/get-history".into(), q).await?;
            for m in page["metrics"].as_array().into_iter().flatten() {
                let (Some(v), step) = (m["value"].as_f64(), m["step"].as_i64().unwrap_or(0)) else { continue };
                let time = m["timestamp"].as_f64().map(|ms| ms / 1000.0);
                out.add(step, rename(key, renames), v, time);
                n += 1;
            }
            token = page["next_page_token"].as_str().filter(|t| !t.is_empty()).map(str::to_string);
            if token.is_none() {
                break;
            }
        }
    }
    out.summary = format!("{n} values of {} metrics ({}) from MLflow run {run} at {base}", keys.len(), keys.join(", "));
    Ok(out)
}

/// `existing` with `imported` merged in: values of a step already there are
/// added (imported ones win on a clash), new steps are inserted; in step order.
pub fn merge(existing: &[MetricPoint], imported: &Imported) -> Vec<MetricPoint> {
    let mut by_step: BTreeMap<i64, MetricPoint> = BTreeMap::new();
    let mut order: Vec<MetricPoint> = Vec::new();
    for p in existing {
        match by_step.get_mut(&p.step) {
            Some(q) => q.values.extend(p.values.clone()),
            None => {
                by_step.insert(p.step, p.clone());
            }
        }
    }
    for (step, p) in &imported.points {
        let e = by_step.entry(*step).or_insert_with(|| MetricPoint { step: *step, ..Default::default() });
        e.values.extend(p.values.clone());
        e.tokens = e.tokens.or(p.tokens);
        e.epoch = e.epoch.or(p.epoch);
        e.batch = e.batch.or(p.batch);
        e.time = e.time.or(p.time);
    }
    order.extend(by_step.into_values());
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_reads_a_step_column_and_numeric_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("m.csv");
        std::fs::write(&f, "iter,train/loss,lr,note\n0,3.5,0.1,x\n1,3.25,,y\n").unwrap();
        let renames = BTreeMap::from([("loss".to_string(), "train/loss".to_string())]);
        let m = csv(&f, "iter", &renames).unwrap();
        assert_eq!(m.points.len(), 2);
        assert_eq!(m.points[&0].values["loss"], 3.5);
        assert_eq!(m.points[&0].values["lr"], 0.1);
        assert!(!m.points[&1].values.contains_key("lr"));
        let err = csv(&f, "step", &renames).unwrap_err().to_string();
        assert!(err.contains("--step-column"), "{err}");
    }

    #[test]
    fn merge_adds_values_to_logged_steps() {
        let existing =
            vec![MetricPoint { step: 1, batch: Some(2), values: [("loss".into(), 3.0)].into(), ..Default::default() }];
        let mut imp = Imported::default();
        imp.add(1, "grad_norm", 0.5, None);
        imp.add(2, "loss", 2.5, Some(9.0));
        let m = merge(&existing, &imp);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].batch, Some(2));
        assert_eq!(m[0].values.len(), 2);
        assert_eq!(m[1].time, Some(9.0));
    }
}
