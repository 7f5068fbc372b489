//! The audit section of a version's manifest: the types stored under
//! `audit` in `_versions/NNNNNN.json`, the metric keys (`name{label=value,...}`)
//! they are written under, and the gate grammar that `audit` stages declare.
//!
//! ```text
//! audit stage options ──parse_gate──► Gate { metric, labels, op, threshold, action }
//! audit stage counters ──metric_key──► "mention_docs{axis=religion}" ─┐
//!                                                                    ▼
//!                 (derived and gated by smelt-query at commit) AuditSection { metrics, counts, risks }
//! ```
//! Deriving metrics, evaluating gates and comparing versions are query
//! features built on these types (`smelt_query::audit`); the pipeline's
//! `audit` stage needs only the keys and the grammar, so it does not link
//! the query engine.

mod gate;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

pub use gate::{metric_labels, metric_names, parse_gate, Gate, GateAction, GateError, Op, METRICS, SKEW_METRICS};

/// Label keys, in the order metric keys write them.
pub const LABEL_ORDER: [&str; 8] = ["axis", "descriptor", "lang", "source", "domain", "over", "of", "gender"];

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_in_label_order() {
        let k = metric_key("doc_share", &[("lang", "en"), ("axis", "religion")]);
        assert_eq!(k, "doc_share{axis=religion,lang=en}");
        assert_eq!(parse_key(&k), Some(("doc_share", vec![("axis", "religion"), ("lang", "en")])));
        assert_eq!(parse_key("docs"), Some(("docs", vec![])));
        assert_eq!(parse_key("docs{lang"), None);
    }
}
