//! Write, audit, publish (the pipeline's `publish:` and `smelt catalog
//! publish`): evaluates a committed version's checks against the version its
//! tag points to, moves the tag when they all hold (or when forced), and
//! records the outcome as `_publish/<V>.json` ([`smelt_catalog::publish`]).

use smelt_catalog::publish::{write_record, CheckOutcome, Policy, PublishRecord, Requirement};
use smelt_catalog::tags::{set_tag, tag_path, TagFile};
use smelt_catalog::{Catalog, DatasetStore, VersionManifest};
use smelt_engine::EngineError;

/// Who published.
pub const BY_PIPELINE: &str = "pipeline";
/// Who published by hand.
pub const BY_HAND: &str = "catalog publish";

/// Evaluates `policy` for `m` and publishes it when every check holds, or
/// when `force` gives a reason; records the outcome either way.
///
/// # Errors
/// Storage and index failures (a failed check is not an error).
pub async fn publish(
    catalog: &Catalog,
    store: &DatasetStore,
    m: &VersionManifest,
    policy: &Policy,
    by: &str,
    force: Option<&str>,
) -> Result<PublishRecord, EngineError> {
    let against =
        store.get_json::<TagFile>(&tag_path(&policy.tag)).await?.map(|t| t.version).filter(|&v| v != m.version);
    let previous = match against {
        Some(v) => Some(smelt_catalog::commit::load_manifest(store, v).await?),
        None => None,
    };
    let mut checks = Vec::with_capacity(policy.require.len());
    let mut diff = None;
    for r in &policy.require {
        let (held, detail) = match r {
            Requirement::Audit => audit_check(m),
            Requirement::Diff { condition } => match &previous {
                None => (true, format!("nothing is published as `{}` yet: no version to compare with", policy.tag)),
                Some(prev) => {
                    if diff.is_none() {
                        let docs = smelt_query::docdiff::diff_version_documents(store, prev, store, m, 0)
                            .await?
                            .map(|d| serde_json::to_value(d).unwrap_or_default());
                        diff = Some(smelt_query::diff::diff_versions(prev, m, docs));
                    }
                    let d = diff.as_ref().expect("just computed");
                    match d.metrics.get(&condition.metric) {
                        Some(&v) => (
                            condition.holds(v),
                            format!(
                                "{} = {v:.3} against {}@{} (needs {} {})",
                                condition.metric, prev.dataset, prev.version, condition.op, condition.value
                            ),
                        ),
                        None => (
                            false,
                            format!(
                                "{} is not known for {}@{} -> {}@{} (a version without a document index)",
                                condition.metric, prev.dataset, prev.version, m.dataset, m.version
                            ),
                        ),
                    }
                }
            },
        };
        checks.push(CheckOutcome { check: r.to_string(), held, detail });
    }
    let all_held = checks.iter().all(|c| c.held);
    let now = chrono::Utc::now().to_rfc3339();
    let record = PublishRecord {
        dataset: m.dataset.clone(),
        version: m.version,
        tag: policy.tag.clone(),
        published: all_held || force.is_some(),
        require: policy.require.clone(),
        checks,
        against,
        by: by.to_string(),
        at: now.clone(),
        forced: force.is_some() && !all_held,
        reason: force.map(str::to_string),
    };
    // The record first: a tag never points at a version whose record is missing.
    write_record(store, &record).await?;
    if record.published {
        set_tag(catalog, store, &m.dataset, &policy.tag, m.version, &now).await?;
    }
    Ok(record)
}

/// `audit`: the version has an audit section and none of its gates was crossed.
fn audit_check(m: &VersionManifest) -> (bool, String) {
    if m.audit.is_empty() {
        return (false, "the version has no audit: add an `audit` stage to the pipeline".into());
    }
    let risks: Vec<String> = m
        .audit
        .iter()
        .flat_map(|a| a.risks.iter().map(|r| format!("{} ({} = {:.4})", r.gate, r.metric, r.value)))
        .collect();
    if risks.is_empty() {
        let docs: u64 = m.audit.iter().map(|a| a.audited_docs).sum();
        (true, format!("no audit gate crossed ({docs} documents audited)"))
    } else {
        (false, format!("audit gates crossed: {}", risks.join(", ")))
    }
}
