//! Printing: tables (also of audits, shared by `smelt audit` and `smelt catalog`), JSON, progress bars,
//! and exit on a closed pipe.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use smelt_catalog::{StageMetrics, VersionManifest};
use smelt_engine::Progress;
use smelt_query::audit;

/// `--format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable tables.
    Table,
    /// JSON for scripts.
    Json,
}

/// Logs to stderr; `-v` for debug, `RUST_LOG` to choose.
pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}

/// Writes to stdout; a closed pipe (`smelt ... | head`) ends the process with status 0.
pub fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let res =
        out.write_all(text.as_bytes()).and_then(|()| if text.ends_with('\n') { Ok(()) } else { out.write_all(b"\n") });
    if let Err(e) = res.and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// Pretty JSON to stdout.
pub fn emit_json(value: &serde_json::Value) {
    emit(&serde_json::to_string_pretty(value).unwrap_or_default());
}

/// A plain text table with right-aligned numeric columns.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let numeric = |i: usize| {
        rows.iter().all(|r| {
            r.get(i).is_some_and(|c| c.chars().all(|ch| ch.is_ascii_digit() || ch == '.' || ch == ',' || ch == '-'))
        })
    };
    let fmt_row = |cells: Vec<&str>| -> String {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pad = widths[i].saturating_sub(c.chars().count());
                if numeric(i) && !rows.is_empty() {
                    format!("{}{}", " ".repeat(pad), c)
                } else {
                    format!("{}{}", c, " ".repeat(pad))
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = fmt_row(headers.to_vec());
    out.push('\n');
    out.push_str(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
    out.push('\n');
    for r in rows {
        out.push_str(&fmt_row(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// Bytes as a short human figure.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A progress bar on stderr while `progress` runs; hidden when stderr is not a terminal.
pub fn progress_bar(progress: Arc<Progress>, enabled: bool) -> Option<(ProgressBar, tokio::task::JoinHandle<()>)> {
    use std::io::IsTerminal;
    if !enabled || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let b = bar.clone();
    let ticker = tokio::spawn(async move {
        loop {
            b.set_length(progress.bytes_total.load(Ordering::Relaxed));
            b.set_position(progress.bytes.load(Ordering::Relaxed));
            b.set_message(format!(
                "splits {}/{}, records {}, rows written {}",
                progress.splits_done.load(Ordering::Relaxed),
                progress.splits_total.load(Ordering::Relaxed),
                progress.records.load(Ordering::Relaxed),
                progress.rows_written.load(Ordering::Relaxed)
            ));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    Some((bar, ticker))
}

/// The filter funnel as a table.
pub fn funnel_table(stages: &[StageMetrics]) -> String {
    let rows: Vec<Vec<String>> = stages
        .iter()
        .map(|s| {
            let reasons = |m: &std::collections::BTreeMap<String, u64>| {
                m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
            };
            vec![
                s.stage.clone(),
                s.rows_in.to_string(),
                s.rows_out.to_string(),
                reasons(&s.drops),
                reasons(&s.skips),
                // Stages such as `audit` count hundreds of things: the table shows the first few.
                if s.counters.len() > 8 {
                    let first: std::collections::BTreeMap<String, u64> =
                        s.counters.iter().take(8).map(|(k, v)| (k.clone(), *v)).collect();
                    format!("{} ... {} more (--format json)", reasons(&first), s.counters.len() - 8)
                } else {
                    reasons(&s.counters)
                },
                format!("{:.2}", s.busy_ms as f64 / 1000.0),
            ]
        })
        .collect();
    table(&["stage", "rows in", "rows out", "dropped", "skipped input", "counted", "cpu s"], &rows)
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.4}"))
}

/// The `smelt audit diff` table (also in `smelt catalog diff`).
pub fn audit_diff_table(d: &audit::AuditDiff, limit: usize) -> String {
    let mut out = String::new();
    let rows: Vec<Vec<String>> = d
        .changed
        .iter()
        .take(limit)
        .map(|c| {
            vec![
                c.stage.clone(),
                c.metric.clone(),
                fmt_opt(c.before),
                fmt_opt(c.after),
                c.delta.map_or_else(|| "-".into(), |x| format!("{x:+.4}")),
                c.relative.map_or_else(|| "-".into(), |r| format!("{:+.1}%", r * 100.0)),
            ]
        })
        .collect();
    let _ = writeln!(out, "audit metrics that moved ({} changed, {} unchanged)", d.changed.len(), d.unchanged);
    out.push_str(&table(&["stage", "metric", "from", "to", "delta", "relative"], &rows));
    if d.changed.len() > limit {
        let _ = writeln!(out, "... {} more (--limit, or --format json)", d.changed.len() - limit);
    }
    for (title, list) in [("risks added", &d.risks_added), ("risks removed", &d.risks_removed)] {
        let _ =
            writeln!(out, "\n{title}: {}", if list.is_empty() { "none".to_string() } else { list.len().to_string() });
        for r in list {
            let _ = writeln!(out, "  {r}");
        }
    }
    out
}

/// The audit lines of `smelt catalog show`: per audit stage, documents audited
/// and every risk (metric, value, threshold, sample ids).
pub fn audit_risks_table(m: &VersionManifest) -> String {
    let mut out = String::new();
    for a in &m.audit {
        let _ = writeln!(
            out,
            "\naudit `{}`: {} documents, {} audited{}; {} risks (smelt audit report {}@{} --out report.html)",
            a.stage,
            a.docs,
            a.audited_docs,
            if a.languages_not_audited.is_empty() {
                String::new()
            } else {
                format!(
                    ", not audited: {}",
                    a.languages_not_audited.iter().map(|(l, n)| format!("{l}={n}")).collect::<Vec<_>>().join(" ")
                )
            },
            a.risks.len(),
            m.dataset,
            m.version
        );
        if a.risks.is_empty() {
            continue;
        }
        let rows: Vec<Vec<String>> = a
            .risks
            .iter()
            .map(|r| {
                vec![
                    format!("{:?}", r.action).to_lowercase(),
                    r.metric.clone(),
                    format!("{:.4}", r.value),
                    format!("{} {}", r.op.as_str(), r.threshold),
                    r.samples.join(" "),
                ]
            })
            .collect();
        out.push_str(&table(&["action", "metric", "value", "threshold", "sample ids"], &rows));
    }
    out
}
