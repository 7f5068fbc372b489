//! Garbage collection of a dataset root: expiring versions by a retention
//! policy, then removing the files under `runs/` that no kept version needs.
//!
//! ```text
//! retention (--keep-last N, --keep-days D, --keep-tagged, --keep-trained; the latest always stays)
//!   expired version v ──► _versions/v.json copied to _expired/v.json, then removed with its
//!                         document index and its tags (storage and index)
//! _versions/*.json ──► referenced shards + committed run ids
//! runs/<id>/**     ──► shard not referenced and older than the grace period ──► delete
//!                  ──► run not committed (or of an expired version), every file older than
//!                      the grace ──► delete the whole run, never a shard a kept version references
//! ```
//! A crash between the copy and the removal leaves the version in both
//! places: the next gc expires it again (the copy is rewritten), so no
//! version is ever half expired. A commit running at the same time writes a
//! new manifest (create-only) and shards younger than the grace period:
//! neither is touched.
//! A committed shard is never removed; the plan, completion records and
//! indexes of committed runs are kept (small, and they are provenance). On a
//! local root the staging files of shard uploads that were killed before they
//! completed (`part-…parquet#N`) count as unreferenced shards.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};

use crate::commit::{load_manifest, stored_versions};
use crate::error::{CatalogError, Result};
use crate::index::Catalog;
use crate::model::{manifest_path, VersionManifest};
use crate::store::{DatasetStore, ObjectInfo};
use crate::tags::{tag_path, TagFile};

/// Which versions `catalog gc` keeps. A version stays when any rule keeps it;
/// the latest version always stays. With neither `keep_last` nor `keep_days`
/// nothing expires.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Retention {
    /// Keep the newest N versions.
    pub keep_last: Option<usize>,
    /// Keep versions committed in the last D days.
    pub keep_days: Option<f64>,
    /// Keep every version a tag points to.
    pub keep_tagged: bool,
    /// Keep every version a recorded training run read (`_training/*/rank-*.json`).
    pub keep_trained: bool,
}

impl Retention {
    /// Whether any version can expire under this policy.
    pub fn expires(&self) -> bool {
        self.keep_last.is_some() || self.keep_days.is_some()
    }
}

/// A version that gc expired (or would expire).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// Its number.
    pub version: u64,
    /// When it was committed.
    pub committed_at: String,
    /// The run that made it.
    pub run_id: String,
    /// Tags that pointed at it (removed with it).
    pub tags: Vec<String>,
}

/// Where an expired version's manifest is kept.
pub fn expired_path(v: u64) -> String {
    format!("_expired/{v:06}.json")
}

/// Expires the versions `retention` does not keep (only lists them with
/// `dry_run`): each manifest is copied to `_expired/`, then its document
/// index, its tag files and the manifest are removed, and the index forgets
/// it. Run [`collect`] afterwards to remove the files no kept version needs.
///
/// # Errors
/// Storage or index failures, undecodable manifests or tag files.
pub async fn expire(
    store: &DatasetStore,
    catalog: &Catalog,
    retention: &Retention,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<Vec<Expired>> {
    if !retention.expires() {
        return Ok(Vec::new());
    }
    let versions = stored_versions(store).await?;
    let Some(&latest) = versions.iter().max() else { return Ok(Vec::new()) };
    let mut tags: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for name in store.list("_tags").await? {
        if let Some(t) = store.get_json::<TagFile>(&name).await? {
            tags.entry(t.version).or_default().push(t.tag);
        }
    }
    let trained: HashSet<u64> = if retention.keep_trained {
        crate::training::stored_ranks(store).await?.iter().map(|r| r.version).collect()
    } else {
        HashSet::new()
    };
    let newest: HashSet<u64> = versions.iter().rev().take(retention.keep_last.unwrap_or(0)).copied().collect();
    let appended_to = bases_of_runs_in_progress(store, &versions).await?;
    let since = retention.keep_days.map(|d| now - chrono::Duration::milliseconds((d * 86_400_000.0) as i64));
    let mut out = Vec::new();
    for &v in &versions {
        let m: VersionManifest = load_manifest(store, v).await?;
        let recent = since.is_some_and(|since| {
            // A time that does not parse keeps its version.
            DateTime::parse_from_rfc3339(&m.committed_at).map_or(true, |t| t.with_timezone(&Utc) >= since)
        });
        let tagged = retention.keep_tagged && tags.contains_key(&v);
        if v == latest || newest.contains(&v) || recent || tagged || trained.contains(&v) || appended_to.contains(&v) {
            continue;
        }
        let expired = Expired {
            version: v,
            committed_at: m.committed_at.clone(),
            run_id: m.lineage.run_id.clone(),
            tags: tags.get(&v).cloned().unwrap_or_default(),
        };
        if !dry_run {
            let bytes = store.get(&manifest_path(v)).await?.ok_or_else(|| {
                CatalogError::User(format!("{}/{} vanished during gc", store.url(), manifest_path(v)))
            })?;
            store.put(&expired_path(v), bytes).await?;
            if let Some(idx) = &m.doc_index {
                store.delete(&idx.path).await?;
            }
            for t in &expired.tags {
                store.delete(&tag_path(t)).await?;
            }
            store.delete(&manifest_path(v)).await?;
            catalog.forget(&m)?;
        }
        out.push(expired);
    }
    Ok(out)
}

/// The versions that runs not yet committed append to (incremental reads):
/// their manifests must stay until those runs commit.
///
/// # Errors
/// Storage failures.
async fn bases_of_runs_in_progress(store: &DatasetStore, versions: &[u64]) -> Result<HashSet<u64>> {
    let mut bases: Vec<(String, u64)> = Vec::new();
    for path in store.list("runs").await?.into_iter().filter(|p| p.ends_with("/plan.json")) {
        // A plan that does not decode is not this gc's business: it keeps nothing.
        if let Ok(Some(plan)) = store.get_json::<crate::model::RunPlan>(&path).await {
            bases.extend(plan.upstream.iter().filter_map(|u| Some((plan.run_id.clone(), u.since.as_ref()?.base))));
        }
    }
    if bases.is_empty() {
        return Ok(HashSet::new());
    }
    let mut committed: HashSet<String> = HashSet::new();
    for &v in versions {
        committed.insert(load_manifest(store, v).await?.lineage.run_id);
    }
    Ok(bases.into_iter().filter(|(run, _)| !committed.contains(run)).map(|(_, b)| b).collect())
}

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
    collect_except(store, cutoff, dry_run, &[]).await
}

/// [`collect`] after [`expire`]: the runs of the `expired` versions go
/// whatever their age (they were committed, so nothing writes to them), but
/// never a shard a kept version references; with `dry_run` the expired
/// versions' manifests (still there) are left out as if they were gone.
///
/// # Errors
/// As [`collect`].
pub async fn collect_except(
    store: &DatasetStore,
    cutoff: DateTime<Utc>,
    dry_run: bool,
    expired: &[Expired],
) -> Result<GcReport> {
    let expired_runs: HashSet<&str> = expired.iter().map(|e| e.run_id.as_str()).collect();
    let mut referenced: HashSet<String> = HashSet::new();
    let mut committed_runs: HashSet<String> = HashSet::new();
    for v in stored_versions(store).await?.into_iter().filter(|v| !expired.iter().any(|e| e.version == *v)) {
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
        // A run of an expired version is no longer committed: it goes whole (whatever its age), except a
        // shard a kept version shares.
        let doomed: Vec<ObjectInfo> = if committed_runs.contains(&run) {
            files
                .into_iter()
                .filter(|f| f.path.contains("/shards/") && !referenced.contains(&f.path) && f.modified < cutoff)
                .collect()
        } else if expired_runs.contains(run.as_str()) || files.iter().all(|f| f.modified < cutoff) {
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
