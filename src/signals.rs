//! The `signals` section of `catalog diff`: how each measurement that
//! annotating stages wrote (`mode: annotate`) is distributed in two versions,
//! read with one SQL query per version.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use smelt_catalog::VersionManifest;
use smelt_query::diff::{Distribution, SignalRow};

/// Whether a version has a `signals` struct column.
fn has_signals(m: &VersionManifest) -> bool {
    m.schema.iter().any(|f| f.name == "signals" && f.data_type.starts_with("Struct"))
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Each numeric field of the version's `signals`, with its distribution.
async fn distributions(data_dir: &Path, m: &VersionManifest) -> anyhow::Result<BTreeMap<String, Distribution>> {
    if !has_signals(m) {
        return Ok(BTreeMap::new());
    }
    let catalog = smelt_runner::Workspace::new(data_dir).open_catalog()?;
    let table = format!("\"{}@{}\"", m.dataset.replace('"', "\"\""), m.version);
    let probe = smelt_query::sql::query(&catalog, &format!("SELECT signals FROM {table} LIMIT 0")).await?;
    let Some(DataType::Struct(fields)) = probe.first().map(|b| b.schema().field(0).data_type().clone()) else {
        return Ok(BTreeMap::new());
    };
    let names: Vec<String> = fields.iter().filter(|f| f.data_type().is_numeric()).map(|f| f.name().clone()).collect();
    if names.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut select = Vec::new();
    for n in &names {
        let x = format!("CAST(signals[{}] AS DOUBLE)", quote(n));
        select.push(format!("count({x})"));
        select.push(format!("avg({x})"));
        for p in ["0.1", "0.5", "0.9"] {
            select.push(format!("approx_percentile_cont({p}) WITHIN GROUP (ORDER BY {x})"));
        }
    }
    let batches = smelt_query::sql::query(&catalog, &format!("SELECT {} FROM {table}", select.join(", "))).await?;
    let Some(row) = batches.first().filter(|b| b.num_rows() == 1) else { return Ok(BTreeMap::new()) };
    let f = |c: usize| {
        let a = row.column(c).as_primitive::<Float64Type>();
        if a.is_null(0) {
            f64::NAN
        } else {
            a.value(0)
        }
    };
    let mut out = BTreeMap::new();
    for (i, n) in names.iter().enumerate() {
        let c = i * 5;
        let count = row.column(c).as_primitive::<Int64Type>().value(0) as u64;
        if count > 0 {
            out.insert(n.clone(), Distribution { count, mean: f(c + 1), p10: f(c + 2), p50: f(c + 3), p90: f(c + 4) });
        }
    }
    Ok(out)
}

/// The signals section for versions A and B (empty when neither annotated).
pub async fn diff(data_dir: &Path, a: &VersionManifest, b: &VersionManifest) -> anyhow::Result<Vec<SignalRow>> {
    let (da, db) = (distributions(data_dir, a).await?, distributions(data_dir, b).await?);
    let fields: BTreeSet<&String> = da.keys().chain(db.keys()).collect();
    Ok(fields
        .into_iter()
        .map(|field| SignalRow { field: field.clone(), a: da.get(field).copied(), b: db.get(field).copied() })
        .collect())
}

/// The readable form: one line per field, A's and B's p10 / p50 / p90.
pub fn table(rows: &[SignalRow]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let dist = |d: &Option<Distribution>| {
        d.map_or_else(|| "-".to_string(), |d| format!("{} / {} / {}", num(d.p10), num(d.p50), num(d.p90)))
    };
    let mut out = String::from("\nsignals (p10 / p50 / p90)\n");
    let width = rows.iter().map(|r| r.field.len()).max().unwrap_or(0);
    for r in rows {
        let moved = match (r.a, r.b) {
            (Some(a), Some(b)) if a.p50 != b.p50 => {
                let d = b.p50 - a.p50;
                format!("  median {}{}", if d > 0.0 { "+" } else { "" }, num(d))
            }
            _ => String::new(),
        };
        out.push_str(&format!("  {:width$}  {} -> {}{moved}\n", r.field, dist(&r.a), dist(&r.b)));
    }
    out
}

/// Four significant digits.
fn num(x: f64) -> String {
    if x == 0.0 || !x.is_finite() || (x.fract() == 0.0 && x.abs() < 1e15) {
        return format!("{x}");
    }
    let digits = (3 - x.abs().log10().floor() as i32).max(0) as usize;
    format!("{x:.digits$}")
}
