//! Garbage collection of a dataset root: files under `runs/` that no
//! committed version needs.
//!
//! ```text
//! _versions/*.json ──► referenced shards + committed run ids
//! runs/<id>/**     ──► shard not referenced and older than the grace period ──► delete
//!                  ──► run never committed, every file older than the grace ──► delete the whole run
//! ```
//! A committed shard is never removed; the plan, completion records and
//! indexes of committed runs are kept (small, and they are provenance). On a
//! local root the staging files of shard uploads that were killed before they
//! completed (`part-…parquet#N`) count as unreferenced shards.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};

use crate::commit::{load_manifest, stored_versions};
use crate::error::Result;
use crate::store::{DatasetStore, ObjectInfo};

/// What a collection removed (or would remove).
#[derive(Debug, Clone, Default)]
pub struct GcReport {
    /// Files removed.
    pub removed: Vec<ObjectInfo>,
    /// Runs removed entirely (never committed).
    pub runs_removed: Vec<String>,
}

/// Removes unreferenced staging older than `cutoff` (only lists it with `dry_run`).
///
/// # Errors
/// Storage failures or undecodable manifests (nothing is deleted then).
pub async fn collect(store: &DatasetStore, cutoff: DateTime<Utc>, dry_run: bool) -> Result<GcReport> {
    let mut referenced: HashSet<String> = HashSet::new();
    let mut committed_runs: HashSet<String> = HashSet::new();
    for v in stored_versions(store).await? {
        let m = load_manifest(store, v).await?;
        committed_runs.insert(m.lineage.run_id.clone());
        referenced.extend(m.shards.into_iter().map(|s| s.path));
    }
    let mut by_run: BTreeMap<String, Vec<ObjectInfo>> = BTreeMap::new();
    let staging = store.list_staging("runs")?;
    let is_staging: HashSet<String> = staging.iter().map(|o| o.path.clone()).collect();
    for o in store.list_meta("runs").await?.into_iter().chain(staging) {
        let Some(run) = o.path.split('/').nth(1) else { continue };
        by_run.entry(run.to_string()).or_default().push(o);
    }
    let mut report = GcReport::default();
    for (run, mut files) in by_run {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let doomed: Vec<ObjectInfo> = if committed_runs.contains(&run) {
            files
                .into_iter()
                .filter(|f| f.path.contains("/shards/") && !referenced.contains(&f.path) && f.modified < cutoff)
                .collect()
        } else if files.iter().all(|f| f.modified < cutoff) {
            report.runs_removed.push(run);
            files
        } else {
            Vec::new()
        };
        for f in doomed {
            if referenced.contains(&f.path) {
                continue; // belt and braces: never a committed shard
            }
            if !dry_run {
                if is_staging.contains(&f.path) {
                    store.delete_staging(&f.path)?;
                } else {
                    store.delete(&f.path).await?;
                }
            }
            report.removed.push(f);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;
    use crate::store::to_json_bytes;
    use bytes::Bytes;

    #[tokio::test]
    async fn removes_failed_runs_and_orphans_never_committed_shards() {
        let dir = tempfile::tempdir().unwrap();
        let store = DatasetStore::open(dir.path().to_str().unwrap()).unwrap();
        for p in [
            "runs/ok/shards/part-00000-0000.parquet",
            "runs/ok/shards/part-00001-0000.parquet",
            "runs/ok/plan.json",
            "runs/failed/plan.json",
            "runs/failed/shards/part-00000-0000.parquet",
        ] {
            store.put(p, Bytes::from_static(b"x")).await.unwrap();
        }
        // What a shard upload killed before it completed leaves on a local root.
        std::fs::write(dir.path().join("runs/ok/shards/part-00002-0000.parquet#1"), b"partial").unwrap();
        // Built from JSON so that fields added later with defaults do not break the test.
        let m: VersionManifest = serde_json::from_value(serde_json::json!({
            "format": FORMAT_VERSION, "dataset": "d", "version": 1, "committed_at": "t", "digest": "x", "schema": [],
            "shards": [{"path": "runs/ok/shards/part-00000-0000.parquet", "split": 0, "rows": 1, "bytes": 1, "checksum": "c"}],
            "totals": {"rows": 1, "shards": 1, "bytes": 1, "tokens": 0, "text_bytes": 0}, "stats": [], "funnel": [],
            "lineage": {"run_id": "ok", "pipeline_path": "p", "pipeline_hash": "h", "resolved_config": null,
                        "smelt_version": "0", "inputs": []}
        }))
        .unwrap();
        store.put(&manifest_path(1), to_json_bytes(&m)).await.unwrap();

        // Within the grace period nothing goes.
        let r = collect(&store, Utc::now() - chrono::Duration::hours(1), false).await.unwrap();
        assert!(r.removed.is_empty());
        let r = collect(&store, Utc::now() + chrono::Duration::seconds(5), true).await.unwrap();
        let paths: Vec<&str> = r.removed.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "runs/failed/plan.json",
                "runs/failed/shards/part-00000-0000.parquet",
                "runs/ok/shards/part-00001-0000.parquet",
                "runs/ok/shards/part-00002-0000.parquet#1"
            ]
        );
        assert_eq!(r.runs_removed, vec!["failed"]);
        assert!(store.get("runs/failed/plan.json").await.unwrap().is_some(), "dry run deletes nothing");
        collect(&store, Utc::now() + chrono::Duration::seconds(5), false).await.unwrap();
        assert!(store.get("runs/failed/plan.json").await.unwrap().is_none());
        assert!(store.get("runs/ok/shards/part-00000-0000.parquet").await.unwrap().is_some(), "committed shard kept");
        assert!(store.get("runs/ok/plan.json").await.unwrap().is_some());
        assert!(!dir.path().join("runs/ok/shards/part-00002-0000.parquet#1").exists(), "staging file removed");
    }
}
