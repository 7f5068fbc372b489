//! Gates: `metric{label=value,...} OP number` expressions that an `audit`
//! stage declares, with the metrics they may name.
//!
//! ```text
//! "toxicity_rate_ratio{axis=religion} > 2.0" ──parse_gate──► Gate ──(at commit) crossed?──► Risk
//! ```

use serde::{Deserialize, Serialize};

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

/// What a crossed gate does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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

    /// Whether `value` crosses `threshold` by this comparison.
    pub fn crossed(self, value: f64, threshold: f64) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
