//! Write, audit, publish: a version commits as usual, but its tag moves only
//! when every check of the pipeline's `publish:` holds; the outcome is
//! recorded beside the version either way.
//!
//! ```text
//! publish: {tag: prod, require: [audit, "diff: docs_removed<5%"]}
//!   commit V ──checks against the version `prod` points to now (none: the first publish)──┐
//!     audit:       the version's audit sections hold no crossed warn gate                 │
//!     diff: COND:  the `catalog diff PREV V` metric condition holds                       │
//!   ──► _publish/<V>.json {tag, published, checks [{check, held, detail}], against, by, at, forced, reason}
//!   all held ──► _tags/<tag>.json -> V            otherwise the tag stays where it was
//! smelt catalog publish D@V [--force --reason ...] re-evaluates (or overrides), recorded the same way
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{CatalogError, Result};
use crate::store::{to_json_bytes, DatasetStore};

/// The metrics of `catalog diff` a condition may name, with their unit.
pub const DIFF_METRICS: &[(&str, &str)] = &[
    ("token_share_delta", "pp"),
    ("rows_delta", "%"),
    ("tokens_delta", "%"),
    ("text_bytes_delta", "%"),
    ("drop_rate_delta", "pp"),
    ("schema_changed", "0/1"),
    ("tokenizer_changed", "0/1"),
    ("pipeline_changed", "0/1"),
    ("docs_added", "% of the older version"),
    ("docs_removed", "% of the older version"),
    ("docs_changed", "% of the older version"),
];

/// A condition on a diff metric: `metric OP number[pp|%]` (`docs_removed<5%`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    /// Metric name ([`DIFF_METRICS`]).
    pub metric: String,
    /// `>`, `>=`, `<`, `<=`.
    pub op: String,
    /// Threshold.
    pub value: f64,
}

impl std::str::FromStr for Condition {
    type Err = CatalogError;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let at = s.find(['>', '<']).ok_or_else(|| {
            CatalogError::User(format!("`{s}`: expected METRIC>VALUE or METRIC<VALUE, as in token_share_delta>2pp"))
        })?;
        let metric = s[..at].trim().to_string();
        let rest = &s[at..];
        let (op, num) = if let Some(r) = rest.strip_prefix(">=") {
            (">=", r)
        } else if let Some(r) = rest.strip_prefix("<=") {
            ("<=", r)
        } else {
            (&rest[..1], &rest[1..])
        };
        let num = num.trim().trim_end_matches("pp").trim_end_matches('%').trim();
        let value = num.parse::<f64>().map_err(|_| CatalogError::User(format!("`{s}`: `{num}` is not a number")))?;
        Ok(Condition { metric, op: op.to_string(), value })
    }
}

impl Condition {
    /// Whether the condition holds for `value`.
    pub fn holds(&self, value: f64) -> bool {
        match self.op.as_str() {
            ">" => value > self.value,
            ">=" => value >= self.value,
            "<" => value < self.value,
            _ => value <= self.value,
        }
    }

    /// Whether it names a metric `catalog diff` computes.
    pub fn known_metric(&self) -> bool {
        DIFF_METRICS.iter().any(|(m, _)| *m == self.metric)
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}{}", self.metric, self.op, self.value)
    }
}

/// One check of `publish.require`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Requirement {
    /// The version's audit crossed no gate (`audit`).
    Audit,
    /// A `catalog diff` condition against the published version holds (`diff: docs_removed<5%`).
    Diff {
        /// The condition.
        condition: Condition,
    },
}

impl Requirement {
    /// Parses `audit` or `diff: CONDITION`.
    ///
    /// # Errors
    /// Anything else, or a condition on a metric `catalog diff` does not compute.
    pub fn parse(s: &str) -> Result<Requirement> {
        let t = s.trim();
        if t == "audit" {
            return Ok(Requirement::Audit);
        }
        let Some(cond) = t.strip_prefix("diff:") else {
            return Err(CatalogError::User(format!(
                "`{t}` is not a check: write `audit`, or `diff: METRIC<VALUE` as in \"diff: docs_removed<5%\""
            )));
        };
        let condition: Condition = cond.parse()?;
        if !condition.known_metric() {
            return Err(CatalogError::User(format!(
                "`{}` is not a metric of `catalog diff`; metrics: {}",
                condition.metric,
                DIFF_METRICS.iter().map(|(m, u)| format!("{m} ({u})")).collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(Requirement::Diff { condition })
    }
}

impl std::fmt::Display for Requirement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Requirement::Audit => f.write_str("audit"),
            Requirement::Diff { condition } => write!(f, "diff: {condition}"),
        }
    }
}

/// The pipeline setting `publish:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// The tag moved to a version whose checks all hold.
    pub tag: String,
    /// The checks.
    pub require: Vec<Requirement>,
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckOutcome {
    /// The check as written (`audit`, `diff: docs_removed<5`).
    pub check: String,
    /// Whether it held.
    pub held: bool,
    /// The value behind it, or why it failed.
    pub detail: String,
}

/// `_publish/<V>.json`: what publishing a version decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishRecord {
    /// Dataset name.
    pub dataset: String,
    /// The version.
    pub version: u64,
    /// The tag.
    pub tag: String,
    /// Whether the tag was moved to the version.
    pub published: bool,
    /// The checks required (kept so `catalog publish` can evaluate them again).
    pub require: Vec<Requirement>,
    /// Each check's outcome.
    pub checks: Vec<CheckOutcome>,
    /// The version the tag pointed to when the checks ran (what the diffs compared with).
    pub against: Option<u64>,
    /// `pipeline` (after its commit) or `catalog publish`.
    pub by: String,
    /// When, RFC 3339.
    pub at: String,
    /// Published with `--force` although a check failed.
    #[serde(default)]
    pub forced: bool,
    /// The reason given with `--force`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl PublishRecord {
    /// The checks that failed, one line each.
    pub fn failed(&self) -> Vec<String> {
        self.checks.iter().filter(|c| !c.held).map(|c| format!("{}: {}", c.check, c.detail)).collect()
    }

    /// One line for `catalog log`: `prod`, `prod (forced)`, or `held back: ...`.
    pub fn summary(&self) -> String {
        match (self.published, self.forced) {
            (true, false) => format!("published as {}", self.tag),
            (true, true) => format!("published as {} (forced)", self.tag),
            (false, _) => format!("not published as {}: {}", self.tag, self.failed().join("; ")),
        }
    }
}

/// Path of version `version`'s record, relative to the dataset root.
pub fn record_path(version: u64) -> String {
    format!("_publish/{version:06}.json")
}

/// Writes a record.
///
/// # Errors
/// Storage failures.
pub async fn write_record(store: &DatasetStore, r: &PublishRecord) -> Result<()> {
    store.put(&record_path(r.version), to_json_bytes(r)).await
}

/// Reads version `version`'s record, if any.
///
/// # Errors
/// Storage failures, a malformed record.
pub async fn read_record(store: &DatasetStore, version: u64) -> Result<Option<PublishRecord>> {
    store.get_json(&record_path(version)).await
}

/// Every record of the dataset, by version.
///
/// # Errors
/// Storage failures.
pub async fn records(store: &DatasetStore) -> Result<BTreeMap<u64, PublishRecord>> {
    let mut out = BTreeMap::new();
    for path in store.list("_publish/").await? {
        let Some(v) = path.rsplit('/').next().and_then(|f| f.strip_suffix(".json")).and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        if let Some(r) = store.get_json::<PublishRecord>(&path).await? {
            out.insert(v, r);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_parse_and_print() {
        assert_eq!(Requirement::parse("audit").unwrap(), Requirement::Audit);
        let r = Requirement::parse("diff: docs_removed<5%").unwrap();
        assert_eq!(r.to_string(), "diff: docs_removed<5");
        let Requirement::Diff { condition } = &r else { panic!() };
        assert!(condition.holds(4.9) && !condition.holds(5.0));
        let c: Condition = "token_share_delta >= 2pp".parse().unwrap();
        assert_eq!((c.op.as_str(), c.value), (">=", 2.0));
        let e = Requirement::parse("diff: doc_removed<5%").unwrap_err().to_string();
        assert!(e.contains("not a metric of `catalog diff`") && e.contains("docs_removed"), "{e}");
        let e = Requirement::parse("tests pass").unwrap_err().to_string();
        assert!(e.contains("not a check"), "{e}");
        let e = Requirement::parse("diff: rows_delta").unwrap_err().to_string();
        assert!(e.contains("expected METRIC>VALUE"), "{e}");
    }
}
