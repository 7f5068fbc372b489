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

/// The width tables are fitted to: `COLUMNS` when set, else the width of the
/// terminal stdout goes to; `None` (no limit) when stdout is a file or pipe,
/// so scripts see whole cells (and `--format json` has everything anyway).
pub fn term_width() -> Option<usize> {
    if let Some(c) = std::env::var("COLUMNS").ok().and_then(|c| c.trim().parse::<usize>().ok()) {
        return Some(c.max(20));
    }
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one `winsize` to the pointer it is given; a
    // stdout that is not a terminal makes it fail without writing.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_col > 0).then(|| usize::from(ws.ws_col).max(20))
}

const SEP: usize = 2;
/// A text column is not narrowed below this (or its header).
const MIN_TEXT: usize = 12;

fn is_numeric(rows: &[Vec<String>], i: usize) -> bool {
    !rows.is_empty()
        && rows.iter().all(|r| {
            r.get(i).is_some_and(|c| c.chars().all(|ch| ch.is_ascii_digit() || ch == '.' || ch == ',' || ch == '-'))
        })
}

/// Column widths: each column's widest cell, then, while the table is wider
/// than `width`, the widest text column narrowed by one (numbers are never
/// narrowed; text columns stop at 12 characters or their header).
fn fit_widths(headers: &[&str], rows: &[Vec<String>], width: Option<usize>) -> Vec<usize> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.lines().map(|l| l.chars().count()).max().unwrap_or(0));
            }
        }
    }
    let Some(width) = width else { return widths };
    let floor: Vec<Option<usize>> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| (!is_numeric(rows, i)).then(|| MIN_TEXT.max(h.chars().count())))
        .collect();
    let total = |w: &[usize]| w.iter().sum::<usize>() + SEP * w.len().saturating_sub(1);
    while total(&widths) > width {
        let widest = (0..widths.len())
            .filter(|&i| floor[i].is_some_and(|f| widths[i] > f))
            .max_by_key(|&i| (widths[i], std::cmp::Reverse(i)));
        let Some(i) = widest else { break };
        widths[i] -= 1;
    }
    widths
}

/// `cell` cut to `width` characters, ending in `…` when cut.
fn clip(cell: &str, width: usize) -> String {
    if cell.chars().count() <= width {
        return cell.to_string();
    }
    let mut out: String = cell.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A plain text table with right-aligned numeric columns, fitted to
/// [`term_width`]: text columns narrowed, long cells cut with `…`.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    table_fitted(headers, rows, &fit_widths(headers, rows, term_width()))
}

fn table_fitted(headers: &[&str], rows: &[Vec<String>], widths: &[usize]) -> String {
    let numeric: Vec<bool> = (0..headers.len()).map(|i| is_numeric(rows, i)).collect();
    let fmt_line = |cells: Vec<&str>| -> String {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let c = clip(c, widths[i]);
                let pad = widths[i].saturating_sub(c.chars().count());
                if numeric[i] {
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
    let mut out = fmt_line(headers.to_vec());
    out.push('\n');
    out.push_str(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
    out.push('\n');
    // A cell with line breaks takes as many lines as it has; the row's other cells are blank below their first line.
    for r in rows {
        let cells: Vec<Vec<&str>> = r.iter().map(|c| c.lines().collect()).collect();
        let height = cells.iter().map(Vec::len).max().unwrap_or(0).max(1);
        for line in 0..height {
            out.push_str(&fmt_line(cells.iter().map(|c| c.get(line).copied().unwrap_or("")).collect()));
            out.push('\n');
        }
    }
    out
}

/// Counted reasons, largest counts first, ties by name.
fn by_count(m: &std::collections::BTreeMap<String, u64>) -> Vec<(&String, &u64)> {
    let mut v: Vec<(&String, &u64)> = m.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    v
}

/// At most this many reasons per funnel cell, one per line.
const TOP_REASONS: usize = 3;

/// Counted reasons, one per line, largest counts first (ties by name): the
/// top three, then `+N more` for the rest.
fn top_reasons(m: &std::collections::BTreeMap<String, u64>) -> String {
    let by_count = by_count(m);
    let mut lines: Vec<String> = by_count.iter().take(TOP_REASONS).map(|(k, v)| format!("{k}={v}")).collect();
    if by_count.len() > TOP_REASONS {
        lines.push(format!("+{} more", by_count.len() - TOP_REASONS));
    }
    lines.join("\n")
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

/// The filter funnel as a table, fitted to [`term_width`]: each reason cell
/// lists its three largest counts, one per line, and says how many more there
/// are (all of them are in `--format json` and `smelt runs show RUN --funnel`).
pub fn funnel_table(stages: &[StageMetrics]) -> String {
    funnel_table_width(stages, term_width())
}

fn funnel_table_width(stages: &[StageMetrics], width: Option<usize>) -> String {
    let headers = ["stage", "rows in", "rows out", "dropped", "skipped input", "counted", "cpu s"];
    let rows: Vec<Vec<String>> = stages
        .iter()
        .map(|s| {
            vec![
                s.stage.clone(),
                s.rows_in.to_string(),
                s.rows_out.to_string(),
                top_reasons(&s.drops),
                top_reasons(&s.skips),
                top_reasons(&s.counters),
                format!("{:.2}", s.busy_ms as f64 / 1000.0),
            ]
        })
        .collect();
    table_fitted(&headers, &rows, &fit_widths(&headers, &rows, width))
}

/// Every reason of every stage, one per line (`smelt runs show RUN --funnel`).
pub fn funnel_long(stages: &[StageMetrics]) -> String {
    let mut rows = Vec::new();
    for s in stages {
        rows.push(vec![s.stage.clone(), "rows".into(), "in".into(), s.rows_in.to_string()]);
        rows.push(vec![s.stage.clone(), "rows".into(), "out".into(), s.rows_out.to_string()]);
        for (kind, m) in [("dropped", &s.drops), ("skipped input", &s.skips), ("counted", &s.counters)] {
            for (k, v) in by_count(m) {
                rows.push(vec![s.stage.clone(), kind.into(), k.clone(), v.to_string()]);
            }
        }
    }
    table(&["stage", "kind", "reason", "count"], &rows)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(name: &str, drops: &[(&str, u64)]) -> StageMetrics {
        StageMetrics {
            stage: name.into(),
            rows_in: 1000,
            rows_out: 10,
            drops: drops.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ..StageMetrics::default()
        }
    }

    fn repetition() -> StageMetrics {
        let reasons: Vec<(String, u64)> =
            (0..13).map(|i| (format!("duplicated_{}_n_grams", i + 5), 100 - i as u64 * 7)).collect();
        let refs: Vec<(&str, u64)> = reasons.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        stage("repetition", &refs)
    }

    #[test]
    fn the_funnel_fits_80_and_120_columns_with_the_top_reasons_first() {
        let stages = [stage("text", &[("empty_text", 25)]), repetition()];
        let wide = funnel_table_width(&stages, None);
        assert_eq!(
            wide.lines().skip(3).take(4).map(str::trim_end).collect::<Vec<_>>(),
            [
                "repetition     1000        10  duplicated_5_n_grams=100                           0.00",
                "                               duplicated_6_n_grams=93",
                "                               duplicated_7_n_grams=86",
                "                               +10 more",
            ],
            "{wide}"
        );
        for width in [80, 120] {
            let t = funnel_table_width(&stages, Some(width));
            for line in t.lines() {
                assert!(line.chars().count() <= width, "{width}: {line:?}");
            }
            assert!(t.contains("+10 more"), "{t}");
        }
        assert!(funnel_table_width(&stages, Some(120)).contains("duplicated_5_n_grams=100"));
    }

    #[test]
    fn the_long_funnel_lists_every_reason() {
        let t = funnel_long(&[repetition()]);
        assert_eq!(t.lines().filter(|l| l.contains("duplicated_")).count(), 13, "{t}");
        assert!(t.lines().nth(2).is_some_and(|l| l.ends_with("1000")), "{t}");
    }

    #[test]
    fn tables_narrow_text_columns_and_keep_numbers() {
        let rows = vec![vec!["a".repeat(200), "12345".into()], vec!["b".into(), "7".into()]];
        let t = table_fitted(&["text", "n"], &rows, &fit_widths(&["text", "n"], &rows, Some(40)));
        for line in t.lines() {
            assert!(line.chars().count() <= 40, "{line:?}");
        }
        assert!(t.contains("…  12345"), "{t}");
        assert_eq!(fit_widths(&["text", "n"], &rows, None), vec![200, 5]);
    }
}
