//! `smelt audit report DATASET@V` (a self-contained HTML page with inline SVG
//! charts, or the same numbers as JSON) and `smelt audit diff A B` (which
//! audit metrics moved). Both read the audit section that the commit stored
//! in the version's manifest (docs/audit.md); nothing is rescanned.
//!
//! ```text
//! manifest.audit (metrics, counts, risks) ──► report: summary, risks, bars per axis,
//!                                               association table, pronouns, skew ──► HTML | JSON
//! manifest A, manifest B ──audit::diff──► changed metrics, risks added/removed
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use smelt_catalog::{VersionManifest, VersionRef};
use smelt_query::audit::{self, parse_key, AuditSection};

use crate::output::{audit_diff_table, emit, emit_json, Format};
use smelt_runner::Workspace;

/// `--format` of `smelt audit report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// A self-contained HTML page (inline SVG charts, no scripts, no network).
    Html,
    /// The report's numbers as JSON.
    Json,
}

/// `smelt audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Write a version's bias audit as a self-contained HTML page (bars per
    /// axis, the association table, pronoun ratios, skew over domains, sources
    /// and languages, risks) or as JSON.
    #[command(after_help = "Examples:
  smelt audit report news@3 --out report.html
  smelt audit report news@3 --out report.html --json report.json
  smelt audit report news@latest --format json            # JSON to stdout")]
    Report {
        /// The version (`dataset@N`, `dataset@tag`, `dataset@latest`).
        version: String,
        /// Where to write the report (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
        /// `html` (default) or `json`.
        #[arg(long, value_enum, default_value = "html")]
        format: ReportFormat,
        /// Also write the numbers as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Which audit metrics moved between two versions, largest relative change first,
    /// and which risks appeared or went away.
    #[command(after_help = "Examples:
  smelt audit diff news@3 news@4
  smelt audit diff news@3 news@4 --min-change 0.01 --limit 50
  smelt audit diff news@3 news@4 --format json")]
    Diff {
        /// The older version.
        from: String,
        /// The newer version.
        to: String,
        /// Changes of at most this much (absolute) count as unchanged.
        #[arg(long, default_value_t = 0.0)]
        min_change: f64,
        /// Rows of the table (JSON lists all).
        #[arg(long, default_value_t = 40)]
        limit: usize,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

fn resolve(data_dir: &Path, r: &str) -> anyhow::Result<VersionManifest> {
    let c = Workspace::new(data_dir).open_catalog()?;
    let r: VersionRef = r.parse()?;
    Ok(c.resolve(&r)?)
}

/// Runs a `smelt audit` subcommand.
///
/// # Errors
/// Unknown versions, versions without an audit, unwritable outputs.
pub async fn run(data_dir: &Path, cmd: AuditCmd) -> anyhow::Result<()> {
    match cmd {
        AuditCmd::Report { version, out, format, json } => {
            let m = resolve(data_dir, &version)?;
            if m.audit.is_empty() {
                anyhow::bail!(
                    "{}@{} has no audit: add an `audit` stage to its pipeline (docs/stages.md, `audit`) and run it again",
                    m.dataset,
                    m.version
                );
            }
            let numbers = report_json(&m);
            let numbers_text = serde_json::to_string_pretty(&numbers)?;
            if let Some(path) = &json {
                std::fs::write(path, &numbers_text)
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            }
            let body = match format {
                ReportFormat::Json => numbers_text,
                ReportFormat::Html => html(&m),
            };
            match &out {
                Some(path) => {
                    std::fs::write(path, body).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?
                }
                None => emit(&body),
            }
            Ok(())
        }
        AuditCmd::Diff { from, to, min_change, limit, format } => {
            let (a, b) = (resolve(data_dir, &from)?, resolve(data_dir, &to)?);
            if a.audit.is_empty() && b.audit.is_empty() {
                anyhow::bail!("neither {from} nor {to} has an audit: add an `audit` stage to the pipeline");
            }
            let d = audit::diff(&a.audit, &b.audit, min_change);
            match format {
                Format::Json => emit_json(&serde_json::json!({
                    "from": format!("{}@{}", a.dataset, a.version),
                    "to": format!("{}@{}", b.dataset, b.version),
                    "audit": d,
                })),
                Format::Table => emit(&audit_diff_table(&d, limit)),
            }
            Ok(())
        }
    }
}

/// The report's numbers: every audit section of the version, and its skew inputs.
fn report_json(m: &VersionManifest) -> serde_json::Value {
    serde_json::json!({
        "version": format!("{}@{}", m.dataset, m.version),
        "committed_at": m.committed_at,
        "digest": m.digest,
        "audits": m.audit,
    })
}

// ---- HTML ---------------------------------------------------------------------------

const BAR: &str = "#3b6ea5";
const TOXIC: &str = "#c0392b";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Metrics of one group level: (axis, descriptor or None) → name → value.
type GroupMetrics<'a> = BTreeMap<(&'a str, Option<&'a str>), BTreeMap<&'a str, f64>>;

fn groups(a: &AuditSection) -> GroupMetrics<'_> {
    let mut out: GroupMetrics<'_> = BTreeMap::new();
    for (k, &v) in &a.metrics {
        let Some((name, labels)) = parse_key(k) else { continue };
        match labels.as_slice() {
            [("axis", axis)] => {
                out.entry((axis, None)).or_default().insert(name, v);
            }
            [("axis", axis), ("descriptor", d)] => {
                out.entry((axis, Some(d))).or_default().insert(name, v);
            }
            _ => {}
        }
    }
    out
}

/// A horizontal bar chart: one bar per (label, value), values scaled to the largest.
fn bar_chart(id: &str, title: &str, bars: &[(String, f64)], fmt: impl Fn(f64) -> String, colour: &str) -> String {
    let row = 22.0;
    let (label_w, bar_w, value_w) = (230.0, 420.0, 90.0);
    let width = label_w + bar_w + value_w;
    let height = 28.0 + row * bars.len() as f64;
    let max = bars.iter().map(|b| b.1).fold(0.0, f64::max);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<figure><svg class="chart" id="{id}" role="img" aria-label="{t}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}"><text x="0" y="16" class="title">{t}</text>"#,
        t = esc(title)
    );
    for (i, (label, v)) in bars.iter().enumerate() {
        let y = 26.0 + row * i as f64;
        let w = if max > 0.0 { (v / max * bar_w).max(1.0) } else { 1.0 };
        let _ = write!(
            s,
            r#"<text x="{lx}" y="{ty}" text-anchor="end">{l}</text><rect class="bar" x="{label_w}" y="{y}" width="{w:.1}" height="{h}" fill="{colour}"><title>{l}: {val}</title></rect><text x="{vx:.1}" y="{ty}">{val}</text>"#,
            lx = label_w - 6.0,
            ty = y + 14.0,
            l = esc(label),
            h = row - 6.0,
            vx = label_w + w + 4.0,
            val = esc(&fmt(*v)),
        );
    }
    s.push_str("</svg></figure>\n");
    s
}

fn pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

fn num(v: Option<&f64>, digits: usize) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.digits$}"))
}

/// The HTML report of a version's audits.
pub fn html(m: &VersionManifest) -> String {
    let mut s = String::new();
    let title = format!("Bias audit of {}@{}", m.dataset, m.version);
    let _ = write!(
        s,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{t}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; background: #fff; max-width: 1100px; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; font-size: 13px; }}
th:first-child, td:first-child, td.l {{ text-align: left; }}
svg.chart text {{ font-size: 12px; fill: #222; }}
svg.chart text.title {{ font-weight: bold; font-size: 13px; }}
.risk-fail {{ color: {TOXIC}; font-weight: bold; }}
.note {{ background: #fff6d5; border: 1px solid #e0c060; padding: 0.6em; }}
figure {{ margin: 0.5em 0 1.5em; }}
</style></head><body>
<h1>{t}</h1>
<p>committed {c}, digest <code>{d}</code>, {rows} rows. Metrics and formulas: smelt's docs/audit.md.</p>
"#,
        t = esc(&title),
        c = esc(&m.committed_at),
        d = esc(&m.digest),
        rows = m.totals.rows,
    );
    for a in &m.audit {
        section(&mut s, a);
    }
    s.push_str("</body></html>\n");
    s
}

fn section(s: &mut String, a: &AuditSection) {
    let stage = esc(&a.stage);
    let _ = write!(s, r#"<section class="audit" id="audit-{stage}"><h2>Stage <code>{stage}</code></h2>"#);
    let _ = write!(
        s,
        r#"<table id="summary-{stage}"><tr><th>documents</th><th>audited</th><th>toxic (all)</th><th>not audited</th></tr><tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>"#,
        a.docs,
        a.audited_docs,
        a.counts.get("toxic_docs").copied().unwrap_or(0),
        a.docs.saturating_sub(a.audited_docs)
    );
    if a.docs == 0 {
        s.push_str(r#"<p class="note" id="empty">The corpus is empty: the stage saw no documents, so there are no shares, rates or ratios to report.</p>"#);
    } else if a.audited_docs == 0 {
        s.push_str(r#"<p class="note" id="empty">No document was in a language with a lexicon: nothing was audited (see the languages below).</p>"#);
    }
    if !a.languages_not_audited.is_empty() {
        s.push_str(r#"<h3>Languages not audited (no lexicon)</h3><table id="not-audited"><tr><th>language</th><th>documents</th></tr>"#);
        for (l, n) in &a.languages_not_audited {
            let _ = write!(s, "<tr><td>{}</td><td>{n}</td></tr>", esc(l));
        }
        s.push_str("</table>");
    }
    risks(s, a);
    let g = groups(a);
    // Representation: one bar per axis, then the top descriptors of each axis.
    let axes: Vec<(String, f64)> = g
        .iter()
        .filter(|((_, d), _)| d.is_none())
        .map(|((axis, _), m)| (axis.to_string(), m.get("doc_share").copied().unwrap_or(0.0)))
        .collect();
    s.push_str("<h3>Representation</h3>");
    if a.audited_docs > 0 && !axes.is_empty() {
        s.push_str(&bar_chart("axes-chart", "share of audited documents mentioning each axis", &axes, pct, BAR));
        let mut by_axis: BTreeMap<&str, Vec<(String, f64)>> = BTreeMap::new();
        for ((axis, d), m) in &g {
            if let (Some(d), Some(v)) = (d, m.get("mentions_per_1k_words")) {
                by_axis.entry(axis).or_default().push((d.to_string(), *v));
            }
        }
        for (axis, mut bars) in by_axis {
            bars.sort_by(|x, y| y.1.total_cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
            bars.truncate(15);
            let id = format!("axis-{}", axis.replace(|c: char| !c.is_ascii_alphanumeric(), "-"));
            let t = format!("{axis}: mentions per 1,000 words (top {})", bars.len());
            s.push_str(&bar_chart(&id, &t, &bars, |v| format!("{v:.3}"), BAR));
        }
    } else {
        s.push_str("<p>No audited documents.</p>");
    }
    pronouns(s, a);
    association(s, a, &g);
    skew(s, a);
    s.push_str("</section>\n");
}

fn risks(s: &mut String, a: &AuditSection) {
    s.push_str("<h3>Risks (crossed gates)</h3>");
    if a.risks.is_empty() {
        s.push_str(r#"<p id="no-risks">No gate was crossed.</p>"#);
    } else {
        s.push_str(r#"<table id="risks"><tr><th>gate</th><th>action</th><th>metric</th><th>value</th><th>sample documents</th></tr>"#);
        for r in &a.risks {
            let class = if r.action == audit::GateAction::Fail { "risk-fail" } else { "" };
            let _ = write!(
                s,
                r#"<tr class="{class}"><td class="l">{}</td><td class="l">{:?}</td><td class="l">{}</td><td>{:.4}</td><td class="l">{}</td></tr>"#,
                esc(&r.gate),
                r.action,
                esc(&r.metric),
                r.value,
                esc(&r.samples.join(", "))
            );
        }
        s.push_str("</table>");
    }
    if !a.unmatched_gates.is_empty() {
        let _ =
            write!(s, r#"<p class="note">Gates that matched no metric: {}</p>"#, esc(&a.unmatched_gates.join("; ")));
    }
}

fn pronouns(s: &mut String, a: &AuditSection) {
    let get =
        |d: &str| a.counts.get(&audit::metric_key("mentions", &[("axis", "pronoun"), ("descriptor", d)])).copied();
    let bars: Vec<(String, f64)> =
        ["female", "male", "neutral"].iter().filter_map(|d| get(d).map(|n| (d.to_string(), n as f64))).collect();
    if bars.is_empty() {
        return;
    }
    s.push_str("<h3>Gendered pronouns</h3>");
    s.push_str(&bar_chart("pronouns-chart", "pronoun mentions", &bars, |v| format!("{v:.0}"), BAR));
    let ratio = a.metrics.get("pronoun_ratio{gender=female}");
    let _ = write!(s, r#"<p id="pronoun-ratio">female / male pronoun mentions: {}</p>"#, num(ratio, 3));
}

fn association(s: &mut String, a: &AuditSection, g: &GroupMetrics<'_>) {
    let base = a.counts.get("audited_toxic_docs").copied().unwrap_or(0) as f64 / a.audited_docs.max(1) as f64;
    let _ = write!(
        s,
        r#"<h3>Association with toxicity</h3><p>Baseline: {} of audited documents are toxic. A group's ratio compares documents mentioning it with the other audited documents (95% Katz interval).</p>"#,
        pct(base)
    );
    let mut ratios: Vec<(String, f64)> = g
        .iter()
        .filter(|((_, d), _)| d.is_none())
        .filter_map(|((axis, _), m)| m.get("toxicity_rate_ratio").map(|v| (axis.to_string(), *v)))
        .collect();
    ratios.sort_by(|x, y| y.1.total_cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
    if !ratios.is_empty() {
        s.push_str(&bar_chart("ratio-chart", "toxicity rate ratio per axis", &ratios, |v| format!("{v:.2}"), TOXIC));
    }
    s.push_str(r#"<table id="association"><tr><th>axis</th><th>descriptor</th><th>docs</th><th>toxic docs</th><th>toxicity rate</th><th>rate ratio</th><th>95% CI</th><th>PMI (bits)</th><th>disparate impact</th><th>parity difference</th></tr>"#);
    let mut rows: Vec<_> = g.iter().filter(|(_, m)| m.contains_key("toxicity_rate")).collect();
    rows.sort_by(|x, y| {
        let r = |m: &BTreeMap<&str, f64>| m.get("toxicity_rate_ratio").copied().unwrap_or(0.0);
        (x.0 .1.is_some(), x.0 .0).cmp(&(y.0 .1.is_some(), y.0 .0)).then_with(|| r(y.1).total_cmp(&r(x.1)))
    });
    for ((axis, d), m) in rows.into_iter().take(200) {
        let mut labels = vec![("axis", *axis)];
        if let Some(d) = d {
            labels.push(("descriptor", d));
        }
        let count = |n: &str| a.counts.get(&audit::metric_key(n, &labels)).copied().unwrap_or(0);
        let _ = write!(
            s,
            "<tr><td>{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} - {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(axis),
            esc(d.unwrap_or("(any)")),
            count("mention_docs"),
            count("toxic_mention_docs"),
            m.get("toxicity_rate").map_or_else(|| "n/a".into(), |v| pct(*v)),
            num(m.get("toxicity_rate_ratio"), 2),
            num(m.get("toxicity_rate_ratio_low"), 2),
            num(m.get("toxicity_rate_ratio_high"), 2),
            num(m.get("pmi_toxic"), 2),
            num(m.get("disparate_impact"), 3),
            num(m.get("statistical_parity_difference"), 3),
        );
    }
    s.push_str("</table>");
}

fn skew(s: &mut String, a: &AuditSection) {
    s.push_str(r#"<h3>Skew</h3><section id="skew">"#);
    let mut rows = String::new();
    let mut ginis: Vec<(String, f64)> = Vec::new();
    for over in ["domain", "source", "lang"] {
        for of in ["docs", "tokens", "text_bytes"] {
            let l = [("over", over), ("of", of)];
            let get = |n: &str| a.metrics.get(&audit::metric_key(n, &l)).copied();
            let Some(groups) = get("groups") else { continue };
            let _ = write!(
                rows,
                "<tr><td>{over}</td><td class=\"l\">{of}</td><td>{groups}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                num(get("entropy").as_ref(), 3),
                num(get("normalized_entropy").as_ref(), 3),
                get("top10_share").map_or_else(|| "n/a".into(), pct),
                num(get("gini").as_ref(), 3),
            );
            if of == "docs" {
                ginis.push((format!("{over}: Gini"), get("gini").unwrap_or(0.0)));
                ginis.push((format!("{over}: top-10 share"), get("top10_share").unwrap_or(0.0)));
                ginis.push((format!("{over}: normalised entropy"), get("normalized_entropy").unwrap_or(0.0)));
            }
        }
    }
    if rows.is_empty() {
        s.push_str("<p>The version has no documents to measure skew on.</p>");
    } else {
        s.push_str(&bar_chart(
            "skew-chart",
            "skew of documents (0 = even, 1 = concentrated; entropy: 1 = even)",
            &ginis,
            |v| format!("{v:.3}"),
            BAR,
        ));
        s.push_str(r#"<table id="skew-table"><tr><th>over</th><th>of</th><th>groups</th><th>entropy (bits)</th><th>normalised entropy</th><th>top-10 share</th><th>Gini</th></tr>"#);
        s.push_str(&rows);
        s.push_str("</table>");
    }
    s.push_str("</section>");
}
