//! The change between two versions' audits, metric by metric.
//!
//! ```text
//! A.audit ─┐
//!          ├─► per stage, per metric key: before, after, delta, relative ──rank──► AuditDiff
//! B.audit ─┘   risks (stage: gate: metric) ──set difference──► added / removed
//! ```

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use smelt_catalog::audit::AuditSection;

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
