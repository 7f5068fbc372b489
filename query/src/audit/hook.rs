//! The audit gates as a commit hook: before a version's manifest is written,
//! each `audit` stage's section is derived and its gates evaluated; a crossed
//! `fail` gate stops the commit and records the audit with the run instead.
//!
//! ```text
//! commit_run ──manifest (funnel, stats)──► AuditGates ──sections──► manifest.audit ──► _versions/NNNNNN.json
//!                                              │ a `fail` gate crossed
//!                                              ▼
//!                                   runs/<id>/audit.json + error (no version)
//! ```

use async_trait::async_trait;
use smelt_catalog::audit::AuditSection;
use smelt_catalog::commit::CommitHook;
use smelt_catalog::model::{RunPlan, VersionManifest};
use smelt_catalog::store::{to_json_bytes, DatasetStore};
use smelt_catalog::{CatalogError, Result};

use super::metrics::{audit_stages, derive};

/// Where a run whose `fail` gates were crossed records its audit and risks
/// (no version is committed for it).
pub fn audit_record_path(run_id: &str) -> String {
    format!("runs/{run_id}/audit.json")
}

/// The commit hook that fills a manifest's `audit` sections and enforces
/// their `fail` gates (docs/audit.md).
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditGates;

#[async_trait]
impl CommitHook for AuditGates {
    async fn before_commit(
        &self,
        store: &DatasetStore,
        run_id: &str,
        plan: &RunPlan,
        manifest: &mut VersionManifest,
    ) -> Result<()> {
        manifest.audit = audit_sections(plan, manifest)?;
        if manifest.audit.iter().any(|a| a.failures().next().is_some()) {
            return Err(audit_failed(store, run_id, &manifest.audit).await?);
        }
        Ok(())
    }
}

/// The audit section of every `audit` stage of the run (docs/audit.md).
fn audit_sections(plan: &RunPlan, m: &VersionManifest) -> Result<Vec<AuditSection>> {
    let stages = audit_stages(&plan.resolved_config).map_err(CatalogError::User)?;
    Ok(stages
        .iter()
        .filter_map(|s| {
            let metrics = m.funnel.iter().find(|f| f.stage == s.stage)?;
            Some(derive(metrics, &m.stats, &s.gates))
        })
        .collect())
}

/// Writes the failed audit next to the run's plan and returns the error that stops the commit.
async fn audit_failed(store: &DatasetStore, run_id: &str, audit: &[AuditSection]) -> Result<CatalogError> {
    let path = audit_record_path(run_id);
    store.put(&path, to_json_bytes(&audit)).await?;
    let crossed: Vec<String> = audit
        .iter()
        .flat_map(|a| {
            a.failures().map(move |r| {
                format!("  {}: {} = {:.4} ({} {})", a.stage, r.metric, r.value, r.op.as_str(), r.threshold)
            })
        })
        .collect();
    Ok(CatalogError::User(format!(
        "audit gates failed, so no version was committed:\n{}\nthe audit and its risks are recorded in {}/{path}",
        crossed.join("\n"),
        store.url()
    )))
}

#[cfg(test)]
mod tests {
    use smelt_catalog::commit::{commit_run, split_record_path, stored_versions, write_plan};
    use smelt_catalog::model::{FieldDesc, ShardEntry, SplitInfo, SplitRecord, StageMetrics, FORMAT_VERSION};
    use smelt_catalog::{Catalog, CatalogError};

    use super::*;

    /// A one-split run whose `audit` stage saw 10 documents, with `gates`.
    async fn run(store: &DatasetStore, run_id: &str, gates: serde_json::Value) {
        let split = SplitInfo { index: 0, source: "src".into(), id: "f0".into(), bytes: Some(10) };
        let plan = RunPlan {
            format: FORMAT_VERSION,
            run_id: run_id.into(),
            dataset: "demo".into(),
            root_url: String::new(),
            pipeline_path: "p.yaml".into(),
            pipeline_hash: "h1".into(),
            resolved_config: serde_json::json!({"stages": [
                {"name": "src", "type": "jsonl"},
                {"name": "bias", "type": "audit", "options": {"gates": gates}},
            ]}),
            smelt_version: "0.1.0".into(),
            schema: vec![FieldDesc { name: "id".into(), data_type: "Utf8".into(), nullable: false }],
            splits: vec![split.clone()],
            interval: None,
            upstream: Vec::new(),
        };
        write_plan(store, &plan).await.unwrap();
        let counters = [("docs", 10), ("audited_docs", 10)].map(|(k, v)| (k.to_string(), v)).into();
        let record = SplitRecord {
            format: FORMAT_VERSION,
            split,
            shards: vec![ShardEntry {
                path: format!("runs/{run_id}/shards/part-00000-0000.parquet"),
                split: 0,
                rows: 10,
                bytes: 100,
                checksum: "xxh3-128:0".into(),
                content: None,
            }],
            stats: Vec::new(),
            stages: vec![StageMetrics { stage: "bias".into(), rows_out: 10, counters, ..Default::default() }],
            doc_index: None,
        };
        store.put(&split_record_path(run_id, 0), to_json_bytes(&record)).await.unwrap();
    }

    #[tokio::test]
    async fn warn_gates_are_recorded_and_fail_gates_stop_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&dir.path().join("data")).unwrap();
        let store = DatasetStore::open(dir.path().join("ds").to_str().unwrap()).unwrap();

        run(&store, "r1", serde_json::json!({"docs > 5": "warn"})).await;
        let out = commit_run(&catalog, &store, "r1", "t", &[&AuditGates]).await.unwrap();
        let audit = &out.manifest.audit;
        assert_eq!((audit.len(), audit[0].stage.as_str(), audit[0].docs), (1, "bias", 10));
        assert_eq!(audit[0].risks.iter().map(|r| r.metric.as_str()).collect::<Vec<_>>(), vec!["docs"]);

        run(&store, "r2", serde_json::json!({"docs > 5": "fail"})).await;
        let e = commit_run(&catalog, &store, "r2", "t", &[&AuditGates]).await.unwrap_err();
        assert!(matches!(&e, CatalogError::User(m) if m.contains("  bias: docs = 10.0000 (> 5)")), "{e}");
        assert!(e.to_string().ends_with("runs/r2/audit.json"), "{e}");
        assert_eq!(stored_versions(&store).await.unwrap(), vec![1], "no version for the failed run");
        let recorded: Vec<AuditSection> = store.get_json(&audit_record_path("r2")).await.unwrap().unwrap();
        assert_eq!(recorded[0].failures().count(), 1);
    }
}
