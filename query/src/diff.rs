//! `catalog diff A B`: what changed between two versions, from what the
//! commits stored (manifests, statistics), never by rescanning shards.
//!
//! ```text
//! manifest A ─┐                     lineage (pipeline hash, config paths changed, smelt version)
//!             ├─► VersionDiff ──►   schema (added / removed / retyped columns; tokenizer called out)
//! manifest B ─┘                     mixture (lang x source x domain, share delta in points, ranked)
//!   doc indexes ─► documents        totals, funnel (drop rates per stage and reason), shards
//! ```
//! `--fail-on` expressions (`token_share_delta>2pp`) are evaluated on the diff's
//! metrics so that a CI job can gate on them.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use smelt_catalog::model::{FieldDesc, VersionManifest};
use smelt_catalog::{CatalogError, Result};

/// One changed configuration value (a JSON path into the resolved config).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigChange {
    /// Path such as `stages[1].options.min_chars`.
    pub path: String,
    /// Value in A (null when added).
    pub before: serde_json::Value,
    /// Value in B (null when removed).
    pub after: serde_json::Value,
}

/// Lineage section.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineageDiff {
    /// Pipeline hashes differ.
    pub pipeline_changed: bool,
    /// Pipeline hash of A and B.
    pub pipeline_hash: (String, String),
    /// smelt versions of A and B.
    pub smelt_version: (String, String),
    /// Resolved-config values that differ.
    pub config_changes: Vec<ConfigChange>,
    /// Input splits only in A, only in B.
    pub inputs_removed: Vec<String>,
    /// Input splits only in B.
    pub inputs_added: Vec<String>,
    /// Upstream dataset versions (`dataset` sources) A and B read, when they differ.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<(Vec<String>, Vec<String>)>,
}

/// The dataset versions a version read through `dataset` sources (split ids
/// `name@V#shard`), sorted.
pub fn upstream_versions(l: &smelt_catalog::Lineage) -> Vec<String> {
    let mut set: BTreeSet<&str> = l.upstream.iter().map(|u| u.version.as_str()).collect();
    if set.is_empty() {
        // Versions before the lineage recorded them: named in the split ids (`name@V#shard`).
        set = l
            .inputs
            .iter()
            .filter_map(|i| i.id.split_once('#').map(|(v, _)| v).filter(|v| v.contains('@') && !v.contains("..")))
            .collect();
    }
    set.into_iter().map(str::to_string).collect()
}

/// Schema section.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SchemaDiff {
    /// Columns only in B.
    pub added: Vec<FieldDesc>,
    /// Columns only in A.
    pub removed: Vec<FieldDesc>,
    /// Columns whose type or nullability changed: (A, B).
    pub changed: Vec<(FieldDesc, FieldDesc)>,
    /// The tokenizer changed: token counts of A and B are not comparable.
    pub tokenizer_changed: bool,
}

/// One row of the mixture table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MixtureRow {
    /// Language.
    pub lang: String,
    /// Source.
    pub source: String,
    /// Domain.
    pub domain: String,
    /// Documents in A and B.
    pub docs: (u64, u64),
    /// Tokens in A and B.
    pub tokens: (u64, u64),
    /// Text bytes in A and B.
    pub text_bytes: (u64, u64),
    /// Share of the basis (tokens, or text bytes when untokenized) in A and B, in percent.
    pub share: (f64, f64),
    /// B share minus A share, in percentage points.
    pub share_delta_pp: f64,
}

/// Funnel row: one stage and reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunnelRow {
    /// Stage.
    pub stage: String,
    /// Drop or skip reason; empty for the stage's totals.
    pub reason: String,
    /// Rows (dropped, or in) in A and B.
    pub count: (u64, u64),
    /// Rate of the stage's input in A and B, in percent.
    pub rate: (f64, f64),
    /// Change of the rate, in percentage points.
    pub rate_delta_pp: f64,
}

/// Totals section.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TotalsDiff {
    /// Rows in A and B.
    pub rows: (u64, u64),
    /// Tokens in A and B.
    pub tokens: (u64, u64),
    /// Text bytes in A and B.
    pub text_bytes: (u64, u64),
    /// Shard bytes in A and B.
    pub bytes: (u64, u64),
}

/// Shards section: by content checksum (shard paths are per run).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShardsDiff {
    /// Shards (by checksum) only in B.
    pub added: usize,
    /// Shards only in A.
    pub removed: usize,
    /// Shards in both.
    pub unchanged: usize,
}

/// The distribution of one measurement over a version's rows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Distribution {
    /// Rows where it is defined (not null).
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// 10th, 50th and 90th percentiles (DataFusion's `approx_percentile_cont`, a t-digest).
    pub p10: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
}

/// One field of the `signals` struct (annotate mode) in A and in B.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SignalRow {
    /// Field name.
    pub field: String,
    /// Its distribution in A (`None`: A lacks it or has no defined value).
    pub a: Option<Distribution>,
    /// In B.
    pub b: Option<Distribution>,
}

/// The whole diff.
#[derive(Debug, Clone, Serialize)]
pub struct VersionDiff {
    /// `name@N` of A and B.
    pub from: String,
    /// B.
    pub to: String,
    /// Identical data (same digest).
    pub same_data: bool,
    /// Lineage.
    pub lineage: LineageDiff,
    /// Schema.
    pub schema: SchemaDiff,
    /// What the mixture shares are of: `tokens` or `text_bytes`.
    pub share_basis: &'static str,
    /// Mixture table, ranked by |share delta|.
    pub mixture: Vec<MixtureRow>,
    /// Totals.
    pub totals: TotalsDiff,
    /// Funnel.
    pub funnel: Vec<FunnelRow>,
    /// Shards.
    pub shards: ShardsDiff,
    /// Documents (from the per-version document indexes), when both versions have one.
    pub documents: Option<serde_json::Value>,
    /// Named metrics for `--fail-on`.
    pub metrics: BTreeMap<String, f64>,
    /// Bias audit metrics that moved, risks added and removed (versions with an `audit` stage).
    pub audit: crate::audit::AuditDiff,
    /// How each measurement of the `signals` column (stages in `mode: annotate`)
    /// moved; filled by callers that read the data (`catalog diff`), empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signals: Vec<SignalRow>,
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, serde_json::Value>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&p, x, out);
            }
        }
        serde_json::Value::Array(items) if items.iter().any(|i| i.is_object()) => {
            for (i, x) in items.iter().enumerate() {
                // Stages are keyed by name, so inserting a stage does not shift every path.
                let key = x.get("name").and_then(|n| n.as_str()).map_or_else(|| i.to_string(), str::to_string);
                flatten(&format!("{prefix}[{key}]"), x, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

const TOKENIZER_COLUMNS: &[&str] = &["input_ids", "n_tokens"];

/// Compares two manifests. `documents` is the document diff when available.
pub fn diff_versions(a: &VersionManifest, b: &VersionManifest, documents: Option<serde_json::Value>) -> VersionDiff {
    // Lineage.
    let (mut ca, mut cb) = (BTreeMap::new(), BTreeMap::new());
    flatten("", &a.lineage.resolved_config, &mut ca);
    flatten("", &b.lineage.resolved_config, &mut cb);
    let keys: BTreeSet<&String> = ca.keys().chain(cb.keys()).collect();
    let config_changes: Vec<ConfigChange> = keys
        .into_iter()
        .filter(|k| ca.get(*k) != cb.get(*k))
        .map(|k| ConfigChange {
            path: k.clone(),
            before: ca.get(k).cloned().unwrap_or(serde_json::Value::Null),
            after: cb.get(k).cloned().unwrap_or(serde_json::Value::Null),
        })
        .collect();
    let ia: BTreeSet<&str> = a.lineage.inputs.iter().map(|s| s.id.as_str()).collect();
    let ib: BTreeSet<&str> = b.lineage.inputs.iter().map(|s| s.id.as_str()).collect();
    let lineage = LineageDiff {
        pipeline_changed: a.lineage.pipeline_hash != b.lineage.pipeline_hash,
        pipeline_hash: (a.lineage.pipeline_hash.clone(), b.lineage.pipeline_hash.clone()),
        smelt_version: (a.lineage.smelt_version.clone(), b.lineage.smelt_version.clone()),
        inputs_removed: ia.difference(&ib).map(|s| s.to_string()).collect(),
        inputs_added: ib.difference(&ia).map(|s| s.to_string()).collect(),
        upstream: {
            let (ua, ub) = (upstream_versions(&a.lineage), upstream_versions(&b.lineage));
            (ua != ub).then_some((ua, ub))
        },
        config_changes,
    };

    // Schema.
    let fa: BTreeMap<&str, &FieldDesc> = a.schema.iter().map(|f| (f.name.as_str(), f)).collect();
    let fb: BTreeMap<&str, &FieldDesc> = b.schema.iter().map(|f| (f.name.as_str(), f)).collect();
    let added: Vec<FieldDesc> = b.schema.iter().filter(|f| !fa.contains_key(f.name.as_str())).cloned().collect();
    let removed: Vec<FieldDesc> = a.schema.iter().filter(|f| !fb.contains_key(f.name.as_str())).cloned().collect();
    let changed: Vec<(FieldDesc, FieldDesc)> = a
        .schema
        .iter()
        .filter_map(|f| fb.get(f.name.as_str()).filter(|g| **g != f).map(|g| (f.clone(), (*g).clone())))
        .collect();
    let touches_tokens = |fs: &[FieldDesc]| fs.iter().any(|f| TOKENIZER_COLUMNS.contains(&f.name.as_str()));
    let tokenizer_config_changed = lineage.config_changes.iter().any(|c| c.path.contains("tokenizer"));
    let schema = SchemaDiff {
        tokenizer_changed: tokenizer_config_changed
            || touches_tokens(&added)
            || touches_tokens(&removed)
            || changed.iter().any(|(x, _)| TOKENIZER_COLUMNS.contains(&x.name.as_str())),
        added,
        removed,
        changed,
    };

    // Mixture.
    let tokenized = a.totals.tokens > 0 || b.totals.tokens > 0;
    let basis = |g: &smelt_catalog::model::GroupStats| if tokenized { g.tokens } else { g.text_bytes };
    let (ta, tb) =
        if tokenized { (a.totals.tokens, b.totals.tokens) } else { (a.totals.text_bytes, b.totals.text_bytes) };
    type Key = (String, String, String);
    let mut groups: BTreeMap<
        Key,
        (Option<&smelt_catalog::model::GroupStats>, Option<&smelt_catalog::model::GroupStats>),
    > = BTreeMap::new();
    for g in &a.stats {
        groups.entry((g.lang.clone(), g.source.clone(), g.domain.clone())).or_default().0 = Some(g);
    }
    for g in &b.stats {
        groups.entry((g.lang.clone(), g.source.clone(), g.domain.clone())).or_default().1 = Some(g);
    }
    let mut mixture: Vec<MixtureRow> = groups
        .into_iter()
        .map(|((lang, source, domain), (ga, gb))| {
            let get = |g: Option<&smelt_catalog::model::GroupStats>,
                       f: &dyn Fn(&smelt_catalog::model::GroupStats) -> u64| g.map_or(0, f);
            let share = (pct(get(ga, &basis), ta), pct(get(gb, &basis), tb));
            MixtureRow {
                lang,
                source,
                domain,
                docs: (get(ga, &|g| g.docs), get(gb, &|g| g.docs)),
                tokens: (get(ga, &|g| g.tokens), get(gb, &|g| g.tokens)),
                text_bytes: (get(ga, &|g| g.text_bytes), get(gb, &|g| g.text_bytes)),
                share,
                share_delta_pp: share.1 - share.0,
            }
        })
        .collect();
    mixture.sort_by(|x, y| {
        y.share_delta_pp
            .abs()
            .total_cmp(&x.share_delta_pp.abs())
            .then_with(|| (&x.lang, &x.source, &x.domain).cmp(&(&y.lang, &y.source, &y.domain)))
    });

    // Funnel.
    let mut funnel = Vec::new();
    let stages: Vec<&str> = {
        let mut s: Vec<&str> = a.funnel.iter().map(|m| m.stage.as_str()).collect();
        for m in &b.funnel {
            if !s.contains(&m.stage.as_str()) {
                s.push(m.stage.as_str());
            }
        }
        s
    };
    for stage in stages {
        let ma = a.funnel.iter().find(|m| m.stage == stage);
        let mb = b.funnel.iter().find(|m| m.stage == stage);
        let input = |m: Option<&smelt_catalog::model::StageMetrics>| {
            m.map_or(0, |m| if m.rows_in > 0 { m.rows_in } else { m.rows_out })
        };
        let (na, nb) = (input(ma), input(mb));
        let mut reasons: BTreeSet<String> = BTreeSet::new();
        for m in [ma, mb].into_iter().flatten() {
            reasons.extend(m.drops.keys().cloned());
            reasons.extend(m.skips.keys().cloned());
        }
        funnel.push(FunnelRow {
            stage: stage.into(),
            reason: String::new(),
            count: (na, nb),
            rate: (100.0, 100.0),
            rate_delta_pp: 0.0,
        });
        for r in reasons {
            let count = |m: Option<&smelt_catalog::model::StageMetrics>| {
                m.map_or(0, |m| m.drops.get(&r).copied().unwrap_or(0) + m.skips.get(&r).copied().unwrap_or(0))
            };
            let (xa, xb) = (count(ma), count(mb));
            let rate = (pct(xa, na), pct(xb, nb));
            funnel.push(FunnelRow {
                stage: stage.into(),
                reason: r,
                count: (xa, xb),
                rate,
                rate_delta_pp: rate.1 - rate.0,
            });
        }
    }

    // Shards by checksum.
    let sa: BTreeSet<&str> = a.shards.iter().map(|s| s.checksum.as_str()).collect();
    let sb: BTreeSet<&str> = b.shards.iter().map(|s| s.checksum.as_str()).collect();
    let shards = ShardsDiff {
        added: sb.difference(&sa).count(),
        removed: sa.difference(&sb).count(),
        unchanged: sa.intersection(&sb).count(),
    };

    let totals = TotalsDiff {
        rows: (a.totals.rows, b.totals.rows),
        tokens: (a.totals.tokens, b.totals.tokens),
        text_bytes: (a.totals.text_bytes, b.totals.text_bytes),
        bytes: (a.totals.bytes, b.totals.bytes),
    };
    let mut metrics = BTreeMap::new();
    let rel = |x: u64, y: u64| {
        if x == 0 {
            if y == 0 {
                0.0
            } else {
                100.0
            }
        } else {
            (y as f64 - x as f64) * 100.0 / x as f64
        }
    };
    metrics.insert("token_share_delta".into(), mixture.iter().map(|m| m.share_delta_pp.abs()).fold(0.0, f64::max));
    metrics.insert("rows_delta".into(), rel(totals.rows.0, totals.rows.1));
    metrics.insert("tokens_delta".into(), rel(totals.tokens.0, totals.tokens.1));
    metrics.insert("text_bytes_delta".into(), rel(totals.text_bytes.0, totals.text_bytes.1));
    metrics.insert("drop_rate_delta".into(), funnel.iter().map(|f| f.rate_delta_pp.abs()).fold(0.0, f64::max));
    metrics.insert(
        "schema_changed".into(),
        f64::from(u8::from(!schema.added.is_empty() || !schema.removed.is_empty() || !schema.changed.is_empty())),
    );
    metrics.insert("tokenizer_changed".into(), f64::from(u8::from(schema.tokenizer_changed)));
    metrics.insert("pipeline_changed".into(), f64::from(u8::from(lineage.pipeline_changed)));
    if let Some(d) = &documents {
        let n = |k: &str| d.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        let base = n("removed") + n("changed") + n("unchanged");
        metrics.insert("docs_added".into(), pct(n("added"), base));
        metrics.insert("docs_removed".into(), pct(n("removed"), base));
        metrics.insert("docs_changed".into(), pct(n("changed"), base));
    }
    debug_assert!(
        metrics.keys().all(|k| smelt_catalog::publish::DIFF_METRICS.iter().any(|(m, _)| m == k)),
        "a diff metric is missing from smelt_catalog::publish::DIFF_METRICS (publish checks validate against it)"
    );
    VersionDiff {
        from: format!("{}@{}", a.dataset, a.version),
        to: format!("{}@{}", b.dataset, b.version),
        same_data: a.digest == b.digest,
        lineage,
        schema,
        share_basis: if tokenized { "tokens" } else { "text_bytes" },
        mixture,
        totals,
        funnel,
        shards,
        documents,
        metrics,
        audit: crate::audit::diff(&a.audit, &b.audit, 0.0),
        signals: Vec::new(),
    }
}

/// A `--fail-on` condition: `metric OP number[pp|%]` (the same conditions `publish.require` takes).
pub use smelt_catalog::publish::Condition as FailOn;

/// Evaluating a condition on a diff.
pub trait Check {
    /// `Some(message)` when the condition holds (a `--fail-on` gate fails; a `publish` check passes).
    ///
    /// # Errors
    /// `User` for an unknown metric (listing the known ones).
    fn check(&self, diff: &VersionDiff) -> Result<Option<String>>;
}

impl Check for FailOn {
    fn check(&self, diff: &VersionDiff) -> Result<Option<String>> {
        let Some(&v) = diff.metrics.get(&self.metric) else {
            return Err(CatalogError::User(format!(
                "`--fail-on`: unknown metric `{}`; metrics: {}",
                self.metric,
                diff.metrics.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        };
        Ok(self.holds(v).then(|| format!("{} = {v:.3} {} {}", self.metric, self.op, self.value)))
    }
}
