//! The bias audit section of a version: metrics derived at commit time from
//! the `audit` stage's counters (summed over splits) and the version's group
//! statistics, the gates that turn crossed thresholds into risks, and the
//! metric-by-metric change between two versions.
//!
//! ```text
//! audit stage counters (per split) ──sum──► funnel ──derive──► metrics ─┐
//! version group stats (lang x source x domain) ──skew──────────────────┤
//! gates (stage options) ──evaluate────────────────────────────────────┴─► AuditSection { metrics, risks }
//! ```
//!
//! Counters are integers that add up across splits, and samples keep the
//! smallest ids, so the section is the same whatever the split or rank layout.
//! Formulas are in docs/audit.md.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::model::{GroupStats, StageMetrics};

/// Label keys, in the order metric keys write them.
pub const LABEL_ORDER: [&str; 8] = ["axis", "descriptor", "lang", "source", "domain", "over", "of", "gender"];

/// Every metric a gate may name, with the labels it accepts.
pub const METRICS: [(&str, &[&str], &str); 15] = [
    ("docs", &[], "documents the stage saw"),
    ("audited_docs", &[], "documents in a language with a lexicon"),
    ("unaudited_share", &[], "share of documents in languages without a lexicon"),
    ("toxicity_rate", &["axis", "descriptor", "lang", "source"], "share of documents flagged toxic"),
    ("doc_share", &["axis", "descriptor", "lang", "source"], "share of audited documents mentioning the group"),
    ("mentions_per_1k_words", &["axis", "descriptor"], "mentions of the group per 1,000 audited words"),
    ("toxicity_rate_ratio", &["axis", "descriptor"], "toxicity rate of documents mentioning the group / of the others"),
    ("toxicity_rate_ratio_low", &["axis", "descriptor"], "lower end of the ratio's 95% confidence interval"),
    ("toxicity_rate_ratio_high", &["axis", "descriptor"], "upper end of the ratio's 95% confidence interval"),
    (
        "pmi_toxic",
        &["axis", "descriptor"],
        "pointwise mutual information (bits) of mentioning the group and being toxic",
    ),
    ("disparate_impact", &["axis", "descriptor"], "P(not toxic | group) / P(not toxic | others)"),
    ("statistical_parity_difference", &["axis", "descriptor"], "P(not toxic | group) - P(not toxic | others)"),
    ("pronoun_ratio", &["gender"], "mentions of the gender's pronouns / mentions of male pronouns"),
    ("entropy", &["over", "of"], "Shannon entropy (bits) of the distribution"),
    ("skew", &["over", "of"], "gini, top10_share, normalized_entropy, groups: use those names"),
];

/// Names of skew metrics (labels `over`, `of`).
pub const SKEW_METRICS: [&str; 5] = ["entropy", "normalized_entropy", "top10_share", "gini", "groups"];

/// Whether `name` is a metric gates can use, and the labels it takes.
pub fn metric_labels(name: &str) -> Option<&'static [&'static str]> {
    if SKEW_METRICS.contains(&name) {
        return Some(&["over", "of"]);
    }
    METRICS.iter().find(|(n, _, _)| *n == name && *n != "skew").map(|(_, l, _)| *l)
}

/// Every metric name gates accept.
pub fn metric_names() -> Vec<&'static str> {
    let mut v: Vec<&str> = METRICS.iter().map(|(n, _, _)| *n).filter(|n| *n != "skew").collect();
    v.extend(SKEW_METRICS.iter().filter(|n| **n != "entropy"));
    v
}

/// Writes `name{k=v,...}` with labels in [`LABEL_ORDER`].
pub fn metric_key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut out = name.to_string();
    let mut sorted: Vec<&(&str, &str)> = labels.iter().collect();
    sorted.sort_by_key(|(k, _)| LABEL_ORDER.iter().position(|o| o == k).unwrap_or(LABEL_ORDER.len()));
    if !sorted.is_empty() {
        out.push('{');
        for (i, (k, v)) in sorted.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}={v}");
        }
        out.push('}');
    }
    out
}

/// Splits `name{k=v,...}` into the name and its labels; `None` when malformed.
pub fn parse_key(key: &str) -> Option<(&str, Vec<(&str, &str)>)> {
    let Some(open) = key.find('{') else {
        return Some((key, Vec::new()));
    };
    let inner = key[open + 1..].strip_suffix('}')?;
    let labels = inner.split(',').map(|kv| kv.split_once('=')).collect::<Option<Vec<_>>>()?;
    Some((&key[..open], labels))
}

/// Characters label values may not contain (they delimit keys and gates).
pub fn bad_label_char(c: char) -> bool {
    matches!(c, '{' | '}' | ',' | '=' | '"') || c.is_control()
}

// ---- gates ------------------------------------------------------------------------

/// What a crossed gate does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GateAction {
    /// Record a risk with the version.
    Warn,
    /// Record a risk and fail the run: no version becomes visible.
    Fail,
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// `>`
    #[serde(rename = ">")]
    Gt,
    /// `>=`
    #[serde(rename = ">=")]
    Ge,
    /// `<`
    #[serde(rename = "<")]
    Lt,
    /// `<=`
    #[serde(rename = "<=")]
    Le,
}

impl Op {
    /// The symbol.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
        }
    }

    fn crossed(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
        }
    }
}

/// A parsed gate: `metric{label=value,...} OP number`.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    /// The expression as written.
    pub expr: String,
    /// Metric name.
    pub metric: String,
    /// Labels a metric must have (a subset: `{axis=religion}` also matches each descriptor of the axis
    /// only when `descriptor` is given; without it, only the axis-level metric).
    pub labels: Vec<(String, String)>,
    /// Comparison.
    pub op: Op,
    /// Threshold.
    pub threshold: f64,
    /// What crossing does.
    pub action: GateAction,
}

/// A gate expression that does not parse: 1-based character column and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateError {
    /// 1-based character column in the expression.
    pub column: usize,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl std::fmt::Display for GateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

/// Parses a gate expression such as `toxicity_rate_ratio{axis=religion} > 2.0`.
///
/// # Errors
/// Unknown metric (with the closest name), labels the metric does not take,
/// a missing or unknown comparison, a threshold that is not a number.
pub fn parse_gate(expr: &str, action: GateAction) -> Result<Gate, GateError> {
    let chars: Vec<char> = expr.chars().collect();
    let err = |i: usize, m: String| GateError { column: i + 1, message: m };
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    skip_ws(&mut i);
    let start = i;
    while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
        i += 1;
    }
    let metric: String = chars[start..i].iter().collect();
    if metric.is_empty() {
        return Err(err(start, "expected a metric name, e.g. `toxicity_rate_ratio{axis=religion} > 2.0`".into()));
    }
    let Some(allowed) = metric_labels(&metric) else {
        let hint = crate::index::closest(&metric, metric_names().iter().copied())
            .map(|c| format!("; did you mean `{c}`?"))
            .unwrap_or_default();
        return Err(err(start, format!("unknown metric `{metric}`{hint} (metrics: {})", metric_names().join(", "))));
    };
    let mut labels: Vec<(String, String)> = Vec::new();
    skip_ws(&mut i);
    if i < chars.len() && chars[i] == '{' {
        i += 1;
        loop {
            skip_ws(&mut i);
            if i < chars.len() && chars[i] == '}' {
                i += 1;
                break;
            }
            let ks = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let k: String = chars[ks..i].iter().collect();
            if !allowed.contains(&k.as_str()) {
                let takes = if allowed.is_empty() {
                    "takes no labels".to_string()
                } else {
                    format!("takes {}", allowed.join(", "))
                };
                return Err(err(ks, format!("`{metric}` has no label `{k}`: it {takes}")));
            }
            skip_ws(&mut i);
            if i >= chars.len() || chars[i] != '=' {
                return Err(err(i, format!("expected `=` after label `{k}`")));
            }
            i += 1;
            skip_ws(&mut i);
            let v: String = if i < chars.len() && chars[i] == '"' {
                let vs = i;
                i += 1;
                let s = i;
                while i < chars.len() && chars[i] != '"' {
                    i += 1;
                }
                if i >= chars.len() {
                    return Err(err(vs, "unclosed `\"`".into()));
                }
                i += 1;
                chars[s..i - 1].iter().collect()
            } else {
                let s = i;
                while i < chars.len() && !matches!(chars[i], ',' | '}') {
                    i += 1;
                }
                chars[s..i].iter().collect::<String>().trim().to_string()
            };
            if v.is_empty() {
                return Err(err(i, format!("label `{k}` has no value")));
            }
            if labels.iter().any(|(x, _)| *x == k) {
                return Err(err(ks, format!("label `{k}` is given twice")));
            }
            labels.push((k, v));
            skip_ws(&mut i);
            match chars.get(i) {
                Some(',') => i += 1,
                Some('}') => {
                    i += 1;
                    break;
                }
                _ => return Err(err(i, "expected `,` or `}` after a label".into())),
            }
        }
    }
    skip_ws(&mut i);
    let op = match (chars.get(i), chars.get(i + 1)) {
        (Some('>'), Some('=')) => Op::Ge,
        (Some('<'), Some('=')) => Op::Le,
        (Some('>'), _) => Op::Gt,
        (Some('<'), _) => Op::Lt,
        _ => return Err(err(i, "expected a comparison: `>`, `>=`, `<` or `<=`".into())),
    };
    i += op.as_str().len();
    skip_ws(&mut i);
    let rest: String = chars[i..].iter().collect();
    let threshold: f64 = rest
        .trim()
        .parse()
        .ok()
        .filter(|t: &f64| t.is_finite())
        .ok_or_else(|| err(i, format!("expected a number after `{}`, found `{}`", op.as_str(), rest.trim())))?;
    Ok(Gate { expr: expr.to_string(), metric, labels, op, threshold, action })
}

// ---- the section ------------------------------------------------------------------

/// A crossed gate, recorded with the version (or, for `fail`, with the run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Risk {
    /// The gate as written.
    pub gate: String,
    /// `warn` or `fail`.
    pub action: GateAction,
    /// The metric that crossed it (`name{labels}`).
    pub metric: String,
    /// Its value.
    pub value: f64,
    /// The comparison.
    pub op: Op,
    /// The threshold.
    pub threshold: f64,
    /// The smallest ids of documents behind the metric (toxic documents of the
    /// group, documents mentioning it); empty for corpus-wide metrics.
    pub samples: Vec<String>,
}

/// One `audit` stage's results for a version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditSection {
    /// The stage's name in the pipeline.
    pub stage: String,
    /// Documents the stage saw.
    pub docs: u64,
    /// Documents in a language with a lexicon.
    pub audited_docs: u64,
    /// Documents in languages without a lexicon, by language (`-` when none).
    pub languages_not_audited: BTreeMap<String, u64>,
    /// Derived metrics by key (`name{label=value,...}`); a metric whose
    /// denominator is zero is absent, never NaN or infinite.
    pub metrics: BTreeMap<String, f64>,
    /// The raw counts behind them (`mention_docs{axis=...}`, ...), summed over splits.
    pub counts: BTreeMap<String, u64>,
    /// Crossed gates.
    pub risks: Vec<Risk>,
    /// Gates that matched no metric (a label value with no documents, a metric without a denominator).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmatched_gates: Vec<String>,
}

impl AuditSection {
    /// Risks of `fail` gates.
    pub fn failures(&self) -> impl Iterator<Item = &Risk> {
        self.risks.iter().filter(|r| r.action == GateAction::Fail)
    }
}

/// Options of an `audit` stage the commit needs, read from the resolved pipeline config.
#[derive(Debug, Clone, Default)]
pub struct StageAudit {
    /// The stage's name.
    pub stage: String,
    /// Its gates, parsed.
    pub gates: Vec<Gate>,
}

/// The `audit` stages of a resolved pipeline config (lineage), with their gates.
///
/// # Errors
/// A gate that does not parse (the pipeline was validated, so only a
/// hand-edited plan gets here).
pub fn audit_stages(resolved_config: &serde_json::Value) -> Result<Vec<StageAudit>, String> {
    let mut out = Vec::new();
    for s in resolved_config["stages"].as_array().into_iter().flatten() {
        if s["type"] != "audit" {
            continue;
        }
        let stage = s["name"].as_str().unwrap_or_default().to_string();
        let mut gates = Vec::new();
        if let Some(map) = s["options"]["gates"].as_object() {
            for (expr, action) in map {
                let action: GateAction = serde_json::from_value(action.clone())
                    .map_err(|e| format!("stage `{stage}`: gate `{expr}`: {e}"))?;
                gates.push(parse_gate(expr, action).map_err(|e| format!("stage `{stage}`: gate `{expr}`: {e}"))?);
            }
        }
        out.push(StageAudit { stage, gates });
    }
    Ok(out)
}

/// Counts by (name, labels), parsed from counter keys.
struct Counts<'a> {
    map: &'a BTreeMap<String, u64>,
}

impl Counts<'_> {
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.map.get(&metric_key(name, labels)).copied().unwrap_or(0)
    }
}

fn ratio(n: f64, d: f64) -> Option<f64> {
    (d > 0.0).then(|| n / d).filter(|v| v.is_finite())
}

/// Rate ratio of a/n1 against c/n2 with its 95% Katz log interval. With a
/// zero cell the interval adds 0.5 to every cell of the 2x2 table (Haldane);
/// the estimate stays exact when a is 0 (ratio 0, lower end 0) and takes the
/// corrected value when c is 0 (the exact ratio is infinite).
pub fn rate_ratio(a: u64, n1: u64, c: u64, n2: u64) -> Option<(f64, f64, f64)> {
    if n1 == 0 || n2 == 0 || a + c == 0 {
        return None;
    }
    let none_in_group = a == 0;
    let (mut a, mut n1, mut c, mut n2) = (a as f64, n1 as f64, c as f64, n2 as f64);
    if a == 0.0 || c == 0.0 {
        (a, n1, c, n2) = (a + 0.5, n1 + 1.0, c + 0.5, n2 + 1.0);
    }
    let rr = (a / n1) / (c / n2);
    let se = (1.0 / a - 1.0 / n1 + 1.0 / c - 1.0 / n2).max(0.0).sqrt();
    let z = 1.959_963_984_540_054;
    let high = (rr.ln() + z * se).exp();
    if none_in_group {
        return Some((0.0, 0.0, high));
    }
    Some((rr, (rr.ln() - z * se).exp(), high))
}

/// Entropy (bits), normalised entropy, top-10 share and Gini coefficient of a distribution.
pub fn skew(values: &[u64]) -> Option<[f64; 4]> {
    let total: u64 = values.iter().sum();
    if total == 0 {
        return None;
    }
    let t = total as f64;
    let entropy: f64 = values.iter().filter(|&&v| v > 0).map(|&v| v as f64 / t).map(|p| p * (1.0 / p).log2()).sum();
    let k = values.len();
    let normalized = if k > 1 { entropy / (k as f64).log2() } else { 0.0 };
    let mut sorted = values.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let top10 = sorted.iter().take(10).sum::<u64>() as f64 / t;
    sorted.reverse();
    let n = k as f64;
    let weighted: f64 = sorted.iter().enumerate().map(|(i, &v)| (i as f64 + 1.0) * v as f64).sum();
    let gini = (2.0 * weighted / (n * t) - (n + 1.0) / n).max(0.0);
    Some([entropy, normalized, top10, gini])
}

/// Derives the audit section of `stage` from its summed metrics, the
/// version's group statistics and the stage's gates.
pub fn derive(stage: &StageMetrics, stats: &[GroupStats], gates: &[Gate]) -> AuditSection {
    let counts: BTreeMap<String, u64> = stage.counters.clone();
    let c = Counts { map: &counts };
    let mut m: BTreeMap<String, f64> = BTreeMap::new();
    let mut put = |name: &str, labels: &[(&str, &str)], v: Option<f64>| {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            m.insert(metric_key(name, labels), v);
        }
    };
    let docs = c.get("docs", &[]);
    let n = c.get("audited_docs", &[]);
    let t = c.get("audited_toxic_docs", &[]);
    let words = c.get("audited_words", &[]);
    put("docs", &[], Some(docs as f64));
    put("audited_docs", &[], Some(n as f64));
    put("unaudited_share", &[], ratio((docs - n.min(docs)) as f64, docs as f64));
    put("toxicity_rate", &[], ratio(c.get("toxic_docs", &[]) as f64, docs as f64));

    let mut languages_not_audited = BTreeMap::new();
    for (key, &v) in &counts {
        let Some((name, labels)) = parse_key(key) else { continue };
        match (name, labels.as_slice()) {
            ("unaudited_docs", [("lang", l)]) => {
                languages_not_audited.insert(l.to_string(), v);
            }
            ("docs", [(dim @ ("lang" | "source"), value)]) => {
                put("toxicity_rate", &[(dim, value)], ratio(c.get("toxic_docs", &[(dim, value)]) as f64, v as f64));
            }
            ("mention_docs", [("axis", axis), (dim @ ("lang" | "source"), value)]) => {
                let base = c.get("audited_docs", &[(dim, value)]);
                put("doc_share", &[("axis", axis), (dim, value)], ratio(v as f64, base as f64));
            }
            ("mention_docs", group @ ([("axis", _)] | [("axis", _), ("descriptor", _)])) => {
                let (a, n1) = (c.get("toxic_mention_docs", group), v);
                let mentions = c.get("mentions", group);
                put("doc_share", group, ratio(n1 as f64, n as f64));
                put("mentions_per_1k_words", group, ratio(1000.0 * mentions as f64, words as f64));
                put("toxicity_rate", group, ratio(a as f64, n1 as f64));
                let (c2, n2) = (t.saturating_sub(a), n.saturating_sub(n1));
                if let Some((rr, lo, hi)) = rate_ratio(a, n1, c2, n2) {
                    put("toxicity_rate_ratio", group, Some(rr));
                    put("toxicity_rate_ratio_low", group, Some(lo));
                    put("toxicity_rate_ratio_high", group, Some(hi));
                }
                if a > 0 {
                    put("pmi_toxic", group, Some(((a as f64 * n as f64) / (n1 as f64 * t as f64)).log2()));
                }
                if n1 > 0 && n2 > 0 {
                    let fav_group = 1.0 - a as f64 / n1 as f64;
                    let fav_rest = 1.0 - c2 as f64 / n2 as f64;
                    put("disparate_impact", group, ratio(fav_group, fav_rest));
                    put("statistical_parity_difference", group, Some(fav_group - fav_rest));
                }
            }
            _ => {}
        }
    }
    let male = c.get("mentions", &[("axis", "pronoun"), ("descriptor", "male")]);
    for gender in ["female", "neutral"] {
        let g = c.get("mentions", &[("axis", "pronoun"), ("descriptor", gender)]);
        put("pronoun_ratio", &[("gender", gender)], ratio(g as f64, male as f64));
    }
    for over in ["lang", "source", "domain"] {
        for of in ["docs", "tokens", "text_bytes"] {
            let mut groups: BTreeMap<&str, u64> = BTreeMap::new();
            for s in stats {
                let k = match over {
                    "lang" => s.lang.as_str(),
                    "source" => s.source.as_str(),
                    _ => s.domain.as_str(),
                };
                *groups.entry(k).or_default() += match of {
                    "docs" => s.docs,
                    "tokens" => s.tokens,
                    _ => s.text_bytes,
                };
            }
            let values: Vec<u64> = groups.into_values().collect();
            if let Some([e, ne, top, gini]) = skew(&values) {
                let l = [("over", over), ("of", of)];
                put("entropy", &l, Some(e));
                put("normalized_entropy", &l, Some(ne));
                put("top10_share", &l, Some(top));
                put("gini", &l, Some(gini));
                put("groups", &l, Some(values.len() as f64));
            }
        }
    }

    let mut risks = Vec::new();
    let mut unmatched_gates = Vec::new();
    for g in gates {
        let mut matched = false;
        for (key, &value) in &m {
            let Some((name, labels)) = parse_key(key) else { continue };
            if name != g.metric || !gate_selects(g, &labels) {
                continue;
            }
            matched = true;
            if g.op.crossed(value, g.threshold) {
                risks.push(Risk {
                    gate: g.expr.clone(),
                    action: g.action,
                    metric: key.clone(),
                    value,
                    op: g.op,
                    threshold: g.threshold,
                    samples: samples_for(stage, name, &labels),
                });
            }
        }
        if !matched {
            unmatched_gates.push(g.expr.clone());
        }
    }
    AuditSection {
        stage: stage.stage.clone(),
        docs,
        audited_docs: n,
        languages_not_audited,
        metrics: m,
        counts,
        risks,
        unmatched_gates,
    }
}

/// A gate selects a metric when every label it gives matches, and the metric
/// has no group label the gate leaves out (`{axis=religion}` is the axis, not
/// each of its descriptors; `{}` on a grouped metric matches every group).
fn gate_selects(g: &Gate, labels: &[(&str, &str)]) -> bool {
    let given = |k: &str| g.labels.iter().find(|(gk, _)| gk == k).map(|(_, v)| v.as_str());
    if !g.labels.iter().all(|(k, v)| labels.iter().any(|(mk, mv)| mk == k && mv == v)) {
        return false;
    }
    if g.labels.is_empty() {
        return true;
    }
    labels.iter().all(|(k, _)| given(k).is_some())
}

/// The samples behind a metric: toxic documents of its group for toxicity
/// metrics, documents mentioning it for representation metrics.
fn samples_for(stage: &StageMetrics, name: &str, labels: &[(&str, &str)]) -> Vec<String> {
    let group: Vec<(&str, &str)> =
        labels.iter().copied().filter(|(k, _)| matches!(*k, "axis" | "descriptor")).collect();
    let kind = match name {
        "doc_share" | "mentions_per_1k_words" if !group.is_empty() => "mention",
        "toxicity_rate"
        | "toxicity_rate_ratio"
        | "toxicity_rate_ratio_low"
        | "toxicity_rate_ratio_high"
        | "pmi_toxic"
        | "disparate_impact"
        | "statistical_parity_difference" => "toxic",
        _ => return Vec::new(),
    };
    let group =
        if kind == "toxic" && labels.iter().any(|(k, _)| matches!(*k, "lang" | "source")) { vec![] } else { group };
    stage.samples.get(&metric_key(kind, &group)).map(|s| s.ids.clone()).unwrap_or_default()
}

// ---- change between versions ---------------------------------------------------------

/// One metric's change between two versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricChange {
    /// The audit stage.
    pub stage: String,
    /// `name{labels}`.
    pub metric: String,
    /// Value in the first version (absent: no denominator or no stage).
    pub before: Option<f64>,
    /// Value in the second.
    pub after: Option<f64>,
    /// after - before, when both exist.
    pub delta: Option<f64>,
    /// delta / |before|, when both exist and before is not 0.
    pub relative: Option<f64>,
}

/// What moved between two versions' audits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditDiff {
    /// Metrics that changed, appeared or disappeared, largest relative change first.
    pub changed: Vec<MetricChange>,
    /// Metrics present in both with the same value.
    pub unchanged: usize,
    /// Risks of the second version that the first did not have (`stage: gate: metric`).
    pub risks_added: Vec<String>,
    /// Risks of the first version gone in the second.
    pub risks_removed: Vec<String>,
}

/// Compares audits metric by metric; changes smaller than `min_change`
/// (absolute) are counted as unchanged.
pub fn diff(a: &[AuditSection], b: &[AuditSection], min_change: f64) -> AuditDiff {
    let mut out = AuditDiff::default();
    let stages: BTreeSet<&str> = a.iter().chain(b).map(|s| s.stage.as_str()).collect();
    for stage in stages {
        let empty = BTreeMap::new();
        let ma = a.iter().find(|s| s.stage == stage).map_or(&empty, |s| &s.metrics);
        let mb = b.iter().find(|s| s.stage == stage).map_or(&empty, |s| &s.metrics);
        let keys: BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
        for k in keys {
            let (before, after) = (ma.get(k).copied(), mb.get(k).copied());
            let delta = before.zip(after).map(|(x, y)| y - x);
            if delta.is_some_and(|d| d.abs() <= min_change) {
                out.unchanged += 1;
                continue;
            }
            let relative = before.zip(delta).and_then(|(x, d)| (x != 0.0).then(|| d / x.abs()));
            out.changed.push(MetricChange {
                stage: stage.to_string(),
                metric: k.clone(),
                before,
                after,
                delta,
                relative,
            });
        }
    }
    let rank = |c: &MetricChange| match (c.relative, c.delta) {
        (Some(r), _) => r.abs(),
        (None, Some(d)) => d.abs(),
        (None, None) => f64::INFINITY,
    };
    out.changed
        .sort_by(|x, y| rank(y).total_cmp(&rank(x)).then_with(|| (&x.stage, &x.metric).cmp(&(&y.stage, &y.metric))));
    let risk_keys = |v: &[AuditSection]| -> BTreeSet<String> {
        v.iter().flat_map(|s| s.risks.iter().map(move |r| format!("{}: {}: {}", s.stage, r.gate, r.metric))).collect()
    };
    let (ra, rb) = (risk_keys(a), risk_keys(b));
    out.risks_added = rb.difference(&ra).cloned().collect();
    out.risks_removed = ra.difference(&rb).cloned().collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Samples;

    fn stage(counters: &[(&str, u64)]) -> StageMetrics {
        StageMetrics {
            stage: "audit".into(),
            counters: counters.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn keys_round_trip_in_label_order() {
        let k = metric_key("doc_share", &[("lang", "en"), ("axis", "religion")]);
        assert_eq!(k, "doc_share{axis=religion,lang=en}");
        assert_eq!(parse_key(&k), Some(("doc_share", vec![("axis", "religion"), ("lang", "en")])));
        assert_eq!(parse_key("docs"), Some(("docs", vec![])));
        assert_eq!(parse_key("docs{lang"), None);
    }

    #[test]
    fn gates_parse_with_positions() {
        let g = parse_gate("toxicity_rate_ratio{axis=religion} > 2.0", GateAction::Fail).unwrap();
        assert_eq!((g.metric.as_str(), g.op, g.threshold), ("toxicity_rate_ratio", Op::Gt, 2.0));
        assert_eq!(g.labels, vec![("axis".to_string(), "religion".to_string())]);
        let g = parse_gate(r#"doc_share{axis=race_ethnicity, descriptor="Native Hawaiian"}<=0.5"#, GateAction::Warn)
            .unwrap();
        assert_eq!(g.labels[1].1, "Native Hawaiian");
        assert_eq!(g.op, Op::Le);
        let e = parse_gate("toxicity_rate_ration{axis=religion} > 2", GateAction::Fail).unwrap_err();
        assert_eq!(e.column, 1);
        assert!(e.message.contains("did you mean `toxicity_rate_ratio`"), "{}", e.message);
        let e = parse_gate("gini{axis=religion} > 2", GateAction::Fail).unwrap_err();
        assert_eq!(e.column, 6);
        assert!(e.message.contains("takes over, of"), "{}", e.message);
        let e = parse_gate("gini{over=domain,of=docs} = 2", GateAction::Fail).unwrap_err();
        assert_eq!(e.column, 27);
        let e = parse_gate("gini{over=domain} > high", GateAction::Fail).unwrap_err();
        assert_eq!(e.column, 21);
        assert!(e.message.contains("expected a number"));
    }

    #[test]
    fn rate_ratio_matches_a_hand_computed_katz_interval() {
        // 10 of 40 group documents toxic, 20 of 400 others: RR = 0.25 / 0.05 = 5.
        let (rr, lo, hi) = rate_ratio(10, 40, 20, 400).unwrap();
        assert!((rr - 5.0).abs() < 1e-12);
        // se = sqrt(1/10 - 1/40 + 1/20 - 1/400) = sqrt(0.1225) = 0.35
        assert!((lo - (5f64.ln() - 1.959_963_984_540_054 * 0.35).exp()).abs() < 1e-9);
        assert!((hi - 5.0 * (1.959_963_984_540_054 * 0.35f64).exp()).abs() < 1e-9);
        assert!(lo < rr && rr < hi);
        // No toxic documents in the group: ratio 0; the upper end from Haldane's 0.5.
        let (rr, lo, hi) = rate_ratio(0, 10, 5, 90).unwrap();
        assert_eq!((rr, lo), (0.0, 0.0));
        let corrected = (0.5 / 11.0) / (5.5 / 91.0);
        let se = (1.0 / 0.5 - 1.0 / 11.0 + 1.0 / 5.5 - 1.0 / 91.0f64).sqrt();
        assert!((hi - corrected * (1.959_963_984_540_054 * se).exp()).abs() < 1e-9);
        // Every toxic document in the group: the corrected ratio stands in for infinity.
        let (rr, lo, _) = rate_ratio(4, 10, 0, 90).unwrap();
        assert!((rr - (4.5 / 11.0) / (0.5 / 91.0)).abs() < 1e-9 && lo > 1.0);
        assert_eq!(rate_ratio(0, 10, 0, 90), None);
        assert_eq!(rate_ratio(1, 0, 0, 90), None);
    }

    #[test]
    fn skew_of_known_distributions() {
        let [e, ne, top, gini] = skew(&[1, 1, 1, 1]).unwrap();
        assert_eq!((e, ne, top, gini), (2.0, 1.0, 1.0, 0.0));
        let [e, _, _, gini] = skew(&[0, 0, 0, 4]).unwrap();
        assert_eq!(e, 0.0);
        assert!((gini - 0.75).abs() < 1e-12);
        let v: Vec<u64> = (1..=20).collect();
        let [_, _, top, _] = skew(&v).unwrap();
        assert!((top - 155.0 / 210.0).abs() < 1e-12);
        assert_eq!(skew(&[]), None);
        assert_eq!(skew(&[0, 0]), None);
    }

    #[test]
    fn derive_hand_checked_metrics_and_gates() {
        let mut s = stage(&[
            ("docs", 110),
            ("audited_docs", 100),
            ("audited_words", 5000),
            ("toxic_docs", 12),
            ("audited_toxic_docs", 10),
            ("unaudited_docs{lang=de}", 10),
            ("mention_docs{axis=religion}", 20),
            ("mentions{axis=religion}", 25),
            ("toxic_mention_docs{axis=religion}", 6),
            ("mention_docs{axis=age}", 50),
            ("mentions{axis=age}", 50),
            ("mentions{axis=pronoun,descriptor=female}", 30),
            ("mentions{axis=pronoun,descriptor=male}", 60),
        ]);
        s.samples.insert("toxic{axis=religion}".into(), Samples { cap: 2, ids: vec!["a".into(), "b".into()] });
        let gates = vec![
            parse_gate("toxicity_rate_ratio{axis=religion} > 2.0", GateAction::Fail).unwrap(),
            parse_gate("toxicity_rate_ratio > 100", GateAction::Warn).unwrap(),
            parse_gate("doc_share{axis=nationality} > 0.1", GateAction::Warn).unwrap(),
        ];
        let a = derive(&s, &[], &gates);
        let m = |k: &str| a.metrics.get(k).copied();
        assert_eq!(m("doc_share{axis=religion}"), Some(0.2));
        assert_eq!(m("mentions_per_1k_words{axis=religion}"), Some(5.0));
        assert_eq!(m("toxicity_rate{axis=religion}"), Some(0.3));
        // group 6/20, rest 4/80: RR 6
        assert!((m("toxicity_rate_ratio{axis=religion}").unwrap() - 6.0).abs() < 1e-12);
        // PMI = log2(6 * 100 / (20 * 10)) = log2 3
        assert!((m("pmi_toxic{axis=religion}").unwrap() - 3f64.log2()).abs() < 1e-12);
        assert!((m("disparate_impact{axis=religion}").unwrap() - 0.7 / 0.95).abs() < 1e-12);
        assert!((m("statistical_parity_difference{axis=religion}").unwrap() + 0.25).abs() < 1e-12);
        // age has no toxic documents: 0 of 50 vs 10 of 50: ratio 0, and no PMI
        assert_eq!(m("toxicity_rate_ratio{axis=age}"), Some(0.0));
        assert!(m("toxicity_rate_ratio_high{axis=age}").unwrap() > 0.0);
        assert_eq!(m("pmi_toxic{axis=age}"), None);
        assert_eq!(m("pronoun_ratio{gender=female}"), Some(0.5));
        assert_eq!(m("unaudited_share"), Some(10.0 / 110.0));
        assert_eq!(a.languages_not_audited, BTreeMap::from([("de".to_string(), 10)]));
        assert_eq!(a.risks.len(), 1);
        assert_eq!(a.risks[0].metric, "toxicity_rate_ratio{axis=religion}");
        assert_eq!(a.risks[0].samples, vec!["a", "b"]);
        assert_eq!(a.failures().count(), 1);
        assert_eq!(a.unmatched_gates, vec!["doc_share{axis=nationality} > 0.1"]);
    }

    #[test]
    fn empty_corpus_has_no_rates() {
        let a = derive(&stage(&[("docs", 0), ("audited_docs", 0)]), &[], &[]);
        assert_eq!(a.metrics.keys().collect::<Vec<_>>(), vec!["audited_docs", "docs"]);
        assert!(a.metrics.values().all(|v| v.is_finite()));
    }

    #[test]
    fn diff_ranks_moves() {
        let mut a = AuditSection { stage: "audit".into(), ..Default::default() };
        a.metrics.insert("doc_share{axis=age}".into(), 0.1);
        a.metrics.insert("docs".into(), 100.0);
        let mut b = a.clone();
        b.metrics.insert("doc_share{axis=age}".into(), 0.2);
        b.metrics.insert("docs".into(), 101.0);
        b.metrics.insert("pmi_toxic{axis=age}".into(), 1.0);
        let d = diff(&[a], &[b], 0.0);
        assert_eq!(d.changed[0].metric, "pmi_toxic{axis=age}");
        assert_eq!(d.changed[1].metric, "doc_share{axis=age}");
        assert_eq!(d.changed[1].relative, Some(1.0));
        assert_eq!(d.changed.len(), 3);
    }
}
