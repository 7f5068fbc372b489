//! Deriving an `audit` stage's section of a version: metrics from the
//! stage's counters (summed over splits) and the version's group statistics,
//! then the stage's gates evaluated on them.
//!
//! ```text
//! StageMetrics.counters ──rates, ratios, PMI──┐
//! GroupStats ──entropy, gini, top-10 share────┼─► metrics ──gates──► risks (+ samples) ─► AuditSection
//! ```

use std::collections::BTreeMap;

use smelt_catalog::audit::{metric_key, parse_gate, parse_key, AuditSection, Gate, GateAction, Risk};
use smelt_catalog::model::{GroupStats, StageMetrics};

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

#[cfg(test)]
mod tests {
    use super::*;
    use smelt_catalog::model::Samples;

    fn stage(counters: &[(&str, u64)]) -> StageMetrics {
        StageMetrics {
            stage: "audit".into(),
            counters: counters.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ..Default::default()
        }
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
}
