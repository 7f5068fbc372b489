//! The commit protocol (DESIGN.md): a run's plan and per-split completion
//! records live in the dataset's storage; the commit checks that every split
//! is complete, writes the version's manifest once (`_versions/NNNNNN.json`,
//! create-only, so two committers cannot both take a number), then records it
//! in the sled index in one transaction.
//!
//! ```text
//! runs/<id>/plan.json + runs/<id>/splits/*.json ──► manifest ──hooks──► _versions/NNNNNN.json ──► sled
//! runs/<id>/index/*.idx ──k-way merge──► _versions/NNNNNN-<id>.idx ──┘ (written first, named in the manifest)
//! ```
//! A crash after the manifest and before sled leaves a version that the next
//! commit (or `catalog rebuild`) records; a crash before the manifest leaves
//! nothing visible (at most an index file no manifest names). Hooks
//! ([`CommitHook`], such as the audit gates) complete or refuse the manifest
//! before it is written.

use std::collections::BTreeMap;

use crate::docindex::{build_version_index, version_index_path, BaseIndex};
use crate::error::{CatalogError, Result};
use crate::index::Catalog;
use crate::model::{
    manifest_path, DocIndexRef, GroupStats, Lineage, RunPlan, SourceState, SplitRecord, StageMetrics, Totals,
    VersionManifest, FORMAT_VERSION,
};
use crate::store::{to_json_bytes, Created, DatasetStore};

/// Path of a run's plan.
pub fn plan_path(run_id: &str) -> String {
    format!("runs/{run_id}/plan.json")
}

/// Path of a split's completion record.
pub fn split_record_path(run_id: &str, split: u32) -> String {
    format!("runs/{run_id}/splits/{split:05}.json")
}

/// Path of a shard of a run.
pub fn shard_path(run_id: &str, split: u32, seq: u32) -> String {
    format!("runs/{run_id}/shards/part-{split:05}-{seq:04}.parquet")
}

/// Writes the run's plan, or checks that the plan already there is the same
/// run (another rank, or an earlier attempt being resumed).
///
/// # Errors
/// `User` when a plan with a different pipeline or inputs exists under this run id.
pub async fn write_plan(store: &DatasetStore, plan: &RunPlan) -> Result<()> {
    let path = plan_path(&plan.run_id);
    if store.put_create(&path, to_json_bytes(plan)).await? == Created::Written {
        return Ok(());
    }
    let existing: RunPlan = store
        .get_json(&path)
        .await?
        .ok_or_else(|| CatalogError::Internal(format!("{path} exists and then does not")))?;
    if existing.pipeline_hash != plan.pipeline_hash || existing.resolved_config != plan.resolved_config {
        return Err(CatalogError::User(format!(
            "run {} was started with a different pipeline (hash {} vs {} now); resume it with the same pipeline file, or start a new run without --run-id",
            plan.run_id, existing.pipeline_hash, plan.pipeline_hash
        )));
    }
    if existing.interval != plan.interval {
        let show = |i: &Option<crate::model::RunInterval>| {
            i.as_ref().map_or_else(|| "no interval".to_string(), |i| format!("interval {}", i.start))
        };
        return Err(CatalogError::User(format!(
            "run {} covers {}, not {}; resume it with the same --interval, or start a new run without --run-id",
            plan.run_id,
            show(&existing.interval),
            show(&plan.interval)
        )));
    }
    if existing.splits != plan.splits {
        return Err(CatalogError::User(format!(
            "run {} was planned over {} input splits and now finds {}; inputs changed since the run started. Start a new run without --run-id",
            plan.run_id,
            existing.splits.len(),
            plan.splits.len()
        )));
    }
    Ok(())
}

/// Indexes of the splits of `run_id` that have a completion record.
///
/// # Errors
/// Storage failures.
pub async fn completed_splits(store: &DatasetStore, run_id: &str) -> Result<Vec<u32>> {
    let names = store.list(&format!("runs/{run_id}/splits")).await?;
    Ok(names.iter().filter_map(|n| n.rsplit('/').next()?.strip_suffix(".json")?.parse::<u32>().ok()).collect())
}

/// What a commit did.
#[derive(Debug, Clone)]
pub struct CommitOutcome {
    /// The committed version.
    pub manifest: VersionManifest,
    /// False when the run had already been committed (the call changed nothing
    /// but, where needed, recorded the existing manifest in the index).
    pub newly_committed: bool,
}

/// Work a caller adds to the commit: called, in the order given to
/// [`commit_run`], on each manifest about to be written (once per version
/// number tried), after the version's document index is stored and before
/// the create-only manifest write. The bias audit's gates are one
/// (`smelt_query::audit::AuditGates`).
#[async_trait::async_trait]
pub trait CommitHook: Send + Sync {
    /// Completes or checks `manifest`, the version `run_id` of `plan` is about to become.
    ///
    /// # Errors
    /// Any error stops the commit: no version becomes visible, and
    /// [`commit_run`] returns it as it is.
    async fn before_commit(
        &self,
        store: &DatasetStore,
        run_id: &str,
        plan: &RunPlan,
        manifest: &mut VersionManifest,
    ) -> Result<()>;
}

/// Commits run `run_id` of the dataset at `store`, running `hooks` on the
/// manifest before it is written.
///
/// # Errors
/// `IncompleteRun` listing missing splits; `User` when the run has no plan;
/// a hook's error; storage and index failures. Nothing becomes visible on error.
pub async fn commit_run(
    catalog: &Catalog,
    store: &DatasetStore,
    run_id: &str,
    committed_at: &str,
    hooks: &[&dyn CommitHook],
) -> Result<CommitOutcome> {
    let plan: RunPlan = store.get_json(&plan_path(run_id)).await?.ok_or_else(|| {
        CatalogError::User(format!(
            "no run {run_id} under {}: start it with `smelt run PIPELINE --run-id {run_id}`",
            store.url()
        ))
    })?;

    // Already committed? The index knows, or an unrecorded manifest does (crash after writing it).
    if let Some((dataset, v)) = catalog.run_version(run_id)? {
        if let Some(manifest) = catalog.manifest(&dataset, v)? {
            return Ok(CommitOutcome { manifest, newly_committed: false });
        }
    }
    let recorded_latest = catalog.dataset(&plan.dataset)?.map_or(0, |d| d.latest);
    let mut stored = stored_versions(store).await?;
    for &v in stored.iter().filter(|&&v| v > recorded_latest) {
        let m: VersionManifest = load_manifest(store, v).await?;
        record_blocking(catalog, store.url(), &m).await?;
        if m.lineage.run_id == run_id {
            return Ok(CommitOutcome { manifest: m, newly_committed: false });
        }
    }

    let mut records = Vec::with_capacity(plan.splits.len());
    let mut missing = Vec::new();
    for split in &plan.splits {
        match store.get_json::<SplitRecord>(&split_record_path(run_id, split.index)).await? {
            Some(r) => records.push(r),
            None => missing.push((split.index, split.id.clone())),
        }
    }
    if !missing.is_empty() {
        return Err(CatalogError::IncompleteRun { run_id: run_id.to_string(), total: plan.splits.len(), missing });
    }

    // An incremental run appends to a base version: its shards stay, less the rows of removed documents.
    let base = load_base(store, &plan).await?;

    // The version's document index: the splits' sorted runs (and the base's, less
    // the removed ids) merged once, stored before the manifest under each number tried.
    let mut doc_index = match &base {
        Some(b) => match &b.manifest.doc_index {
            Some(index) => {
                build_version_index(store, run_id, &records, Some(BaseIndex { index, removed: &b.removed })).await?
            }
            None => {
                tracing::warn!("base version {} has no document index: neither has this one", b.manifest.version);
                None
            }
        },
        None => build_version_index(store, run_id, &records, None).await?,
    };
    let mut placed: Option<String> = None;

    // Bounded retries against a concurrent committer taking the same number.
    for _attempt in 0..8 {
        let next = stored.last().copied().unwrap_or(0).max(recorded_latest) + 1;
        let index_ref = match &mut doc_index {
            Some(built) => {
                let path = version_index_path(next, run_id);
                let r = built.place(store, &path, placed.as_deref()).await?;
                placed = Some(path);
                Some(r)
            }
            None => None,
        };
        let mut manifest = build_manifest(&plan, &records, next, committed_at, index_ref);
        if let Some(b) = &base {
            append_to(&mut manifest, &b.manifest);
        }
        for hook in hooks {
            hook.before_commit(store, run_id, &plan, &mut manifest).await?;
        }
        test_pause("before_manifest");
        match store.put_create(&manifest_path(next), to_json_bytes(&manifest)).await? {
            Created::Written => {
                test_pause("before_index_record");
                record_blocking(catalog, store.url(), &manifest).await?;
                return Ok(CommitOutcome { manifest, newly_committed: true });
            }
            Created::AlreadyExists => stored = stored_versions(store).await?,
        }
    }
    Err(CatalogError::User(format!(
        "could not commit run {run_id}: other commits kept taking the next version number; retry"
    )))
}

/// The version an incremental run appends to, and the ids of the upstream
/// documents removed since its read (their rows leave it).
pub struct Base {
    /// The base version.
    pub manifest: VersionManifest,
    /// Ids of removed or changed upstream documents.
    pub removed: std::collections::HashSet<Vec<u8>>,
}

/// The base of `plan` when one of its reads is incremental.
///
/// # Errors
/// A base version that is gone, or whose schema differs from the plan's; upstream index failures.
pub async fn load_base(store: &DatasetStore, plan: &RunPlan) -> Result<Option<Base>> {
    let Some((read, since)) = plan.upstream.iter().find_map(|u| Some((u, u.since.as_ref()?))) else {
        return Ok(None);
    };
    let manifest = load_manifest(store, since.base).await.map_err(|e| {
        CatalogError::User(format!(
            "run {} appends to {}@{}, which is gone ({e}); start a new run",
            plan.run_id, plan.dataset, since.base
        ))
    })?;
    if manifest.schema != plan.schema {
        return Err(CatalogError::User(format!(
            "run {} appends to {}@{}, whose columns differ from the pipeline's now; \
             run once with `incremental: false` to rebuild",
            plan.run_id, plan.dataset, since.base
        )));
    }
    // The plan counted the removed documents: only when there are some is the upstream diffed again for their ids.
    let removed = match since.removed {
        0 => Default::default(),
        _ => crate::incremental::delta_of(read).await?.map(|d| d.removed).unwrap_or_default(),
    };
    Ok(Some(Base { manifest, removed }))
}

/// `manifest` (a run's) made the continuation of `base`: the base's shards
/// first, statistics and funnel added up, totals and digest over all of it.
/// The rows of removed documents are still in the base's shards; the
/// caller's hook takes them out (`smelt_connectors`'s `DropRemovedRows`).
pub fn append_to(manifest: &mut VersionManifest, base: &VersionManifest) {
    let mut shards = base.shards.clone();
    shards.append(&mut manifest.shards);
    manifest.shards = shards;
    let mut stats = base.stats.clone();
    add_stats(&mut stats, &manifest.stats, 1);
    manifest.stats = stats;
    let mut funnel = base.funnel.clone();
    merge_funnel(&mut funnel, &manifest.funnel);
    manifest.funnel = funnel;
    refresh_totals(manifest);
}

/// Adds (`sign` 1) or takes away (`sign` -1) the counts of `delta` to the
/// group statistics `stats`, kept sorted by key; taking away drops groups
/// left without documents.
pub fn add_stats<'a>(stats: &mut Vec<GroupStats>, delta: impl IntoIterator<Item = &'a GroupStats>, sign: i64) {
    let key = |g: &GroupStats| (g.lang.clone(), g.source.clone(), g.domain.clone());
    let mut groups: BTreeMap<(String, String, String), GroupStats> =
        std::mem::take(stats).into_iter().map(|g| (key(&g), g)).collect();
    for d in delta {
        let g = groups.entry(key(d)).or_insert_with(|| GroupStats {
            lang: d.lang.clone(),
            source: d.source.clone(),
            domain: d.domain.clone(),
            ..Default::default()
        });
        let apply = |x: &mut u64, y: u64| *x = if sign < 0 { x.saturating_sub(y) } else { *x + y };
        apply(&mut g.docs, d.docs);
        apply(&mut g.tokens, d.tokens);
        apply(&mut g.text_bytes, d.text_bytes);
    }
    *stats = groups.into_values().filter(|g| sign > 0 || g.docs > 0).collect();
}

/// Merges per-stage metrics `more` into `funnel` by stage name, new stages at the end.
fn merge_funnel<'a>(funnel: &mut Vec<StageMetrics>, more: impl IntoIterator<Item = &'a StageMetrics>) {
    for m in more {
        match funnel.iter_mut().find(|f| f.stage == m.stage) {
            Some(f) => f.merge(m),
            None => funnel.push(m.clone()),
        }
    }
}

/// Recomputes `manifest`'s totals and digest from its shards and statistics.
pub fn refresh_totals(manifest: &mut VersionManifest) {
    manifest.totals = Totals {
        rows: manifest.shards.iter().map(|s| s.rows).sum(),
        shards: manifest.shards.len() as u64,
        bytes: manifest.shards.iter().map(|s| s.bytes).sum(),
        tokens: manifest.stats.iter().map(|s| s.tokens).sum(),
        text_bytes: manifest.stats.iter().map(|s| s.text_bytes).sum(),
    };
    manifest.digest = version_digest(&manifest.schema, &manifest.shards);
}

/// Commits `manifest`, a version made from committed ones rather than by a
/// run (`smelt catalog compact`): under the next free number, with a copy of
/// the document index `index` (a version's index, `None` when it has none)
/// placed first, as [`commit_run`] places a run's. Returns the manifest as written.
///
/// # Errors
/// Storage and index failures, or other commits taking every number tried.
pub async fn commit_manifest(
    catalog: &Catalog,
    store: &DatasetStore,
    mut manifest: VersionManifest,
    index: Option<&DocIndexRef>,
) -> Result<VersionManifest> {
    let run_id = manifest.lineage.run_id.clone();
    for _attempt in 0..8 {
        let recorded_latest = catalog.dataset(&manifest.dataset)?.map_or(0, |d| d.latest);
        let next = stored_versions(store).await?.last().copied().unwrap_or(0).max(recorded_latest) + 1;
        manifest.version = next;
        if let Some(r) = index {
            let path = version_index_path(next, &run_id);
            store.copy(&r.path, &path).await?;
            manifest.doc_index = Some(DocIndexRef { path, ..r.clone() });
        }
        if store.put_create(&manifest_path(next), to_json_bytes(&manifest)).await? == Created::Written {
            record_blocking(catalog, store.url(), &manifest).await?;
            return Ok(manifest);
        }
    }
    Err(CatalogError::User(format!(
        "could not commit {} ({run_id}): other commits kept taking the next version number; retry",
        manifest.dataset
    )))
}

/// Crash tests stop a committing process at named points: with
/// `SMELT_TEST_PAUSE=<point>` the commit says so on stderr and waits there
/// (ten minutes) for the test to kill it. Points: `before_manifest` (the
/// version's files are stored, its manifest is not), `before_index_record`
/// (the manifest is stored, the sled index does not know it yet).
fn test_pause(point: &str) {
    if std::env::var("SMELT_TEST_PAUSE").is_ok_and(|p| p == point) {
        eprintln!("smelt: paused at {point} (SMELT_TEST_PAUSE)");
        std::thread::sleep(std::time::Duration::from_secs(600));
    }
}

async fn record_blocking(catalog: &Catalog, root_url: &str, m: &VersionManifest) -> Result<()> {
    let (c, url, m) = (catalog.clone(), root_url.to_string(), m.clone());
    tokio::task::spawn_blocking(move || c.record(&url, &m))
        .await
        .map_err(|e| CatalogError::Internal(format!("catalog writer panicked: {e}")))?
}

/// Version numbers with a manifest in storage, ascending.
///
/// # Errors
/// Storage failures.
pub async fn stored_versions(store: &DatasetStore) -> Result<Vec<u64>> {
    let mut v: Vec<u64> = store
        .list("_versions")
        .await?
        .iter()
        .filter_map(|n| n.rsplit('/').next()?.strip_suffix(".json")?.parse().ok())
        .collect();
    v.sort_unstable();
    Ok(v)
}

/// Reads version `v`'s manifest from storage.
///
/// # Errors
/// Storage failures, or a missing or undecodable manifest.
pub async fn load_manifest(store: &DatasetStore, v: u64) -> Result<VersionManifest> {
    store
        .get_json(&manifest_path(v))
        .await?
        .ok_or_else(|| CatalogError::User(format!("{}/{} does not exist", store.url(), manifest_path(v))))
}

/// Records every manifest in the dataset's storage in the index (for a lost
/// or damaged sled database). Returns the versions recorded.
///
/// # Errors
/// Storage and index failures.
pub async fn rebuild(catalog: &Catalog, store: &DatasetStore) -> Result<Vec<u64>> {
    let versions = stored_versions(store).await?;
    for &v in &versions {
        let m = load_manifest(store, v).await?;
        record_blocking(catalog, store.url(), &m).await?;
    }
    Ok(versions)
}

/// A version's digest: xxh3-128 over its schema and the content hash of its
/// rows in order, so it does not change when shards are merged; over the
/// shard checksums when a shard has no content hash (written before smelt
/// recorded them).
pub fn version_digest(schema: &[crate::model::FieldDesc], shards: &[crate::model::ShardEntry]) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&to_json_bytes(&schema));
    match crate::content::concat_shards(shards) {
        Some(content) => {
            h.update(b"content\n");
            h.update(&content.to_bytes());
        }
        None => {
            for s in shards {
                h.update(s.checksum.as_bytes());
                h.update(b"\n");
            }
        }
    }
    format!("xxh3-128:{:032x}", h.digest128())
}

fn build_manifest(
    plan: &RunPlan,
    records: &[SplitRecord],
    version: u64,
    committed_at: &str,
    doc_index: Option<DocIndexRef>,
) -> VersionManifest {
    let mut shards: Vec<_> = records.iter().flat_map(|r| r.shards.iter().cloned()).collect();
    shards.sort_by(|a, b| (a.split, &a.path).cmp(&(b.split, &b.path)));

    let mut stats: Vec<GroupStats> = Vec::new();
    add_stats(&mut stats, records.iter().flat_map(|r| &r.stats), 1);
    let mut funnel: Vec<StageMetrics> = Vec::new();
    merge_funnel(&mut funnel, records.iter().flat_map(|r| &r.stages));
    let source_state: Vec<SourceState> = records
        .iter()
        .flat_map(|r| {
            r.stages.iter().filter_map(|m| {
                let state = m.state.clone()?;
                Some(SourceState { source: m.stage.clone(), split: r.split.id.clone(), state })
            })
        })
        .collect();
    for f in &mut funnel {
        f.state = None;
    }

    let mut manifest = VersionManifest {
        format: FORMAT_VERSION,
        dataset: plan.dataset.clone(),
        version,
        committed_at: committed_at.to_string(),
        digest: String::new(),
        schema: plan.schema.clone(),
        shards,
        totals: Totals::default(),
        stats,
        funnel,
        lineage: Lineage {
            run_id: plan.run_id.clone(),
            pipeline_path: plan.pipeline_path.clone(),
            pipeline_hash: plan.pipeline_hash.clone(),
            resolved_config: plan.resolved_config.clone(),
            smelt_version: plan.smelt_version.clone(),
            inputs: plan.splits.clone(),
            source_state,
            interval: plan.interval.clone(),
            compacted_from: None,
            upstream: plan.upstream.clone(),
        },
        doc_index,
        audit: Vec::new(),
    };
    refresh_totals(&mut manifest);
    manifest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docindex::{put_run, split_index_path, DocIndexReader, RunBuilder};
    use crate::model::{FieldDesc, ShardEntry, SplitInfo};
    use crate::VersionRef;

    fn plan(run_id: &str, n: u32) -> RunPlan {
        RunPlan {
            format: FORMAT_VERSION,
            run_id: run_id.into(),
            dataset: "demo".into(),
            root_url: String::new(),
            pipeline_path: "p.yaml".into(),
            pipeline_hash: "h1".into(),
            resolved_config: serde_json::json!({"stages": []}),
            smelt_version: "0.1.0".into(),
            schema: vec![FieldDesc { name: "id".into(), data_type: "Utf8".into(), nullable: false }],
            splits: (0..n)
                .map(|i| SplitInfo { index: i, source: "src".into(), id: format!("f{i}.warc.gz"), bytes: Some(10) })
                .collect(),
            interval: None,
            upstream: Vec::new(),
        }
    }

    fn record(run_id: &str, i: u32) -> SplitRecord {
        SplitRecord {
            format: FORMAT_VERSION,
            split: SplitInfo { index: i, source: "src".into(), id: format!("f{i}.warc.gz"), bytes: Some(10) },
            shards: vec![ShardEntry {
                path: shard_path(run_id, i, 0),
                split: i,
                rows: 5,
                bytes: 100,
                checksum: format!("xxh3-128:{i}"),
                content: None,
            }],
            stats: vec![GroupStats {
                lang: "und".into(),
                source: "cc".into(),
                domain: "a.org".into(),
                docs: 5,
                tokens: 0,
                text_bytes: 50,
            }],
            stages: vec![StageMetrics { stage: "src".into(), rows_out: 5, ..Default::default() }],
            doc_index: None,
        }
    }

    async fn setup() -> (tempfile::TempDir, Catalog, DatasetStore) {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&dir.path().join("data")).unwrap();
        let store = DatasetStore::open(dir.path().join("ds").to_str().unwrap()).unwrap();
        (dir, catalog, store)
    }

    #[tokio::test]
    async fn refuses_incomplete_runs_then_commits_once() {
        let (_d, catalog, store) = setup().await;
        write_plan(&store, &plan("r1", 3)).await.unwrap();
        store.put(&split_record_path("r1", 1), to_json_bytes(&record("r1", 1))).await.unwrap();
        let err = commit_run(&catalog, &store, "r1", "t", &[]).await.unwrap_err();
        match &err {
            CatalogError::IncompleteRun { missing, total, .. } => {
                assert_eq!(*total, 3);
                assert_eq!(missing, &vec![(0, "f0.warc.gz".to_string()), (2, "f2.warc.gz".to_string())]);
            }
            other => panic!("unexpected {other}"),
        }
        assert!(err.to_string().contains("split 0: f0.warc.gz"));
        assert!(stored_versions(&store).await.unwrap().is_empty(), "nothing visible after a refused commit");

        for i in [0, 2] {
            store.put(&split_record_path("r1", i), to_json_bytes(&record("r1", i))).await.unwrap();
        }
        let out = commit_run(&catalog, &store, "r1", "t", &[]).await.unwrap();
        assert!(out.newly_committed);
        assert_eq!(out.manifest.version, 1);
        assert_eq!(out.manifest.totals.rows, 15);
        assert_eq!(out.manifest.stats.len(), 1);
        assert_eq!(out.manifest.stats[0].docs, 15);
        assert_eq!(out.manifest.funnel[0].rows_out, 15);
        assert!(out.manifest.doc_index.is_none(), "splits without document indexes give a version without one");
        let again = commit_run(&catalog, &store, "r1", "t2", &[]).await.unwrap();
        assert!(!again.newly_committed);
        assert_eq!(again.manifest, out.manifest);
        assert_eq!(catalog.versions("demo").unwrap().len(), 1);
        let got = catalog.resolve(&"demo@latest".parse::<VersionRef>().unwrap()).unwrap();
        assert_eq!(got.lineage.run_id, "r1");
    }

    /// Stores run `run_id`'s split `i` with a document index of `ids`.
    async fn put_indexed_split(store: &DatasetStore, run_id: &str, i: u32, ids: &[String]) {
        let mut rec = record(run_id, i);
        let mut b = RunBuilder::new();
        for id in ids {
            b.push(id.as_bytes(), &[i as u8; 16]).unwrap();
        }
        rec.doc_index = Some(put_run(store, &split_index_path(run_id, i), b.finish().unwrap()).await.unwrap());
        store.put(&split_record_path(run_id, i), to_json_bytes(&rec)).await.unwrap();
    }

    #[tokio::test]
    async fn the_commit_merges_split_indexes_into_one_sorted_version_index() {
        let (_d, catalog, store) = setup().await;
        write_plan(&store, &plan("r1", 3)).await.unwrap();
        let mut all = Vec::new();
        for i in 0..3u32 {
            let ids: Vec<String> = (0..5).map(|k| format!("doc-{:02}", (k * 7 + i * 3) % 20)).collect();
            all.extend(ids.iter().map(|id| (id.clone(), [i as u8; 16])));
            put_indexed_split(&store, "r1", i, &ids).await;
        }
        let out = commit_run(&catalog, &store, "r1", "t", &[]).await.unwrap();
        let di = out.manifest.doc_index.clone().expect("a document index");
        assert_eq!((di.path.as_str(), di.entries), ("_versions/000001-r1.idx", 15));
        let bytes = store.get(&di.path).await.unwrap().unwrap();
        assert_eq!((di.bytes, di.checksum.clone()), (bytes.len() as u64, crate::docindex::checksum_of(&bytes)));
        let got: Vec<(String, [u8; 16])> = DocIndexReader::new(&bytes[..])
            .unwrap()
            .map(|e| e.map(|(id, h)| (String::from_utf8(id).unwrap(), h)))
            .collect::<std::io::Result<_>>()
            .unwrap();
        all.sort();
        assert_eq!(got, all);
        // The manifest in storage names it too, and no scratch files are left.
        assert_eq!(load_manifest(&store, 1).await.unwrap().doc_index, Some(di));
        assert!(store.list("runs/r1").await.unwrap().iter().all(|p| !p.contains("smelt-docindex")));
    }

    #[tokio::test]
    async fn a_damaged_split_index_stops_the_commit() {
        let (_d, catalog, store) = setup().await;
        write_plan(&store, &plan("r1", 2)).await.unwrap();
        for i in 0..2 {
            put_indexed_split(&store, "r1", i, &[format!("doc-{i}")]).await;
        }
        store.put(&split_index_path("r1", 1), bytes::Bytes::from_static(b"SMELTDIX garbage")).await.unwrap();
        let e = commit_run(&catalog, &store, "r1", "t", &[]).await.unwrap_err();
        assert!(
            matches!(&e, CatalogError::Corrupt { location, .. } if location.ends_with("runs/r1/index/00001.idx")),
            "{e}"
        );
        assert!(stored_versions(&store).await.unwrap().is_empty());
    }

    /// Stamps the manifest's committed_at, or refuses every commit.
    struct TestHook {
        refuse: bool,
    }

    #[async_trait::async_trait]
    impl CommitHook for TestHook {
        async fn before_commit(
            &self,
            _store: &DatasetStore,
            run_id: &str,
            plan: &RunPlan,
            manifest: &mut VersionManifest,
        ) -> Result<()> {
            assert_eq!((run_id, plan.run_id.as_str()), ("r1", "r1"));
            if self.refuse {
                return Err(CatalogError::User(format!("refused version {}", manifest.version)));
            }
            manifest.committed_at.push_str("+hooked");
            Ok(())
        }
    }

    #[tokio::test]
    async fn hooks_complete_or_refuse_the_manifest_before_it_is_written() {
        let (_d, catalog, store) = setup().await;
        write_plan(&store, &plan("r1", 1)).await.unwrap();
        store.put(&split_record_path("r1", 0), to_json_bytes(&record("r1", 0))).await.unwrap();
        let e = commit_run(&catalog, &store, "r1", "t", &[&TestHook { refuse: true }]).await.unwrap_err();
        assert_eq!(e.to_string(), "refused version 1");
        assert!(stored_versions(&store).await.unwrap().is_empty(), "nothing visible after a refused commit");
        let hooks: [&dyn CommitHook; 2] = [&TestHook { refuse: false }, &TestHook { refuse: false }];
        let out = commit_run(&catalog, &store, "r1", "t", &hooks).await.unwrap();
        assert_eq!(out.manifest.committed_at, "t+hooked+hooked");
        assert_eq!(load_manifest(&store, 1).await.unwrap(), out.manifest);
    }

    #[tokio::test]
    async fn a_plan_from_another_pipeline_is_refused() {
        let (_d, _catalog, store) = setup().await;
        write_plan(&store, &plan("r1", 1)).await.unwrap();
        write_plan(&store, &plan("r1", 1)).await.unwrap();
        let mut other = plan("r1", 1);
        other.pipeline_hash = "h2".into();
        let e = write_plan(&store, &other).await.unwrap_err().to_string();
        assert!(e.contains("different pipeline"), "{e}");
    }

    #[tokio::test]
    async fn a_run_whose_options_hold_any_float_resumes() {
        // serde_json without `float_roundtrip` read this one back one ulp off,
        // so the stored plan differed from the same pipeline's plan on resume.
        let (_d, _catalog, store) = setup().await;
        let mut p = plan("r1", 1);
        p.resolved_config = serde_json::json!({"stages": [{"options": {"max_payload_bytes": 1.0715660391465826e-75}}]});
        write_plan(&store, &p).await.unwrap();
        write_plan(&store, &p).await.expect("the same pipeline resumes");
    }

    #[tokio::test]
    async fn a_manifest_written_before_a_crash_is_recorded_not_duplicated() {
        let (dir, catalog, store) = setup().await;
        write_plan(&store, &plan("r1", 1)).await.unwrap();
        store.put(&split_record_path("r1", 0), to_json_bytes(&record("r1", 0))).await.unwrap();
        // Simulate: manifest written, process killed before sled recorded it.
        let m = build_manifest(&plan("r1", 1), &[record("r1", 0)], 1, "t", None);
        store.put(&manifest_path(1), to_json_bytes(&m)).await.unwrap();
        let out = commit_run(&catalog, &store, "r1", "t", &[]).await.unwrap();
        assert!(!out.newly_committed);
        assert_eq!(stored_versions(&store).await.unwrap(), vec![1]);
        assert_eq!(catalog.versions("demo").unwrap().len(), 1);

        // A lost index is rebuilt from the manifests.
        drop(catalog);
        let fresh = Catalog::open(&dir.path().join("data2")).unwrap();
        assert_eq!(rebuild(&fresh, &store).await.unwrap(), vec![1]);
        assert_eq!(fresh.manifest("demo", 1).unwrap().unwrap(), m);
    }
}
