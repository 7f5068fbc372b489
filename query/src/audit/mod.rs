//! Bias-audit features built on the manifest's audit section
//! ([`smelt_catalog::audit`], whose types and keys are re-exported here):
//! deriving the section at commit time, the gates that turn crossed
//! thresholds into risks (a commit hook), and the metric-by-metric change
//! between two versions.
//!
//! ```text
//! audit stage counters (per split) ──sum──► funnel ──derive──► metrics ─┐
//! version group stats (lang x source x domain) ──skew──────────────────┤
//! gates (stage options) ──evaluate────────────────────────────────────┴─► AuditSection { metrics, risks }
//!                                                                             │ AuditGates (commit hook)
//!                       fail gate crossed: runs/<id>/audit.json, no version ◄─┴─► manifest `audit`
//! manifest A, manifest B ──diff──► AuditDiff { changed, risks added / removed }
//! ```
//!
//! Counters are integers that add up across splits, and samples keep the
//! smallest ids, so the section is the same whatever the split or rank layout.
//! Formulas are in docs/audit.md.

mod change;
mod hook;
mod metrics;

pub use change::{diff, AuditDiff, MetricChange};
pub use hook::{audit_record_path, AuditGates};
pub use metrics::{audit_stages, derive, rate_ratio, skew, StageAudit};
pub use smelt_catalog::audit::*;
