//! `smelt catalog ...`: list, log, show, tag, diff, lineage, gc, rebuild.
//! Every command opens the sled index only for as long as it needs it, waiting
//! (SMELT_CATALOG_WAIT seconds) while another smelt process holds it.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use clap::Subcommand;
use smelt_catalog::{DatasetStore, VersionManifest, VersionRef};
use smelt_query::diff::{diff_versions, Check, FailOn, VersionDiff};

use crate::docs::DocPart;
use crate::output::{emit, emit_json, human_bytes, table, Format};
use smelt_runner::Workspace;

/// `smelt catalog` subcommands.
#[derive(Debug, Subcommand)]
pub enum CatalogCmd {
    /// Datasets with their latest version.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Versions of a dataset with tags: newest first in the table, in version order (oldest first) with `--format json`.
    #[command(after_help = "Examples:\n  smelt catalog log quickstart\n  smelt catalog log quickstart --format json")]
    Log {
        /// Dataset name.
        dataset: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// One version: manifest, schema, lineage, stats.
    #[command(
        after_help = "Examples:\n  smelt catalog show quickstart@1\n  smelt catalog show quickstart@prod --format json"
    )]
    Show {
        /// DATASET@VERSION, DATASET@TAG or DATASET (latest).
        version: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Point a movable tag at a version (`quickstart@prod` then resolves to it).
    #[command(after_help = "Example:\n  smelt catalog tag quickstart@2 prod")]
    Tag {
        /// DATASET@VERSION to tag.
        version: String,
        /// Tag name: letters, digits, `-`, `_`, `.`; not a number, not `latest`.
        tag: String,
    },
    /// Publish a version: evaluate its checks against the version the tag points
    /// to and move the tag when they hold (write-audit-publish, the pipeline's
    /// `publish:` by hand). The outcome is recorded beside the version and shown
    /// by `catalog log` and `catalog show`. Exit 4 when a check fails (without --force).
    #[command(after_help = "Examples:
  smelt catalog publish cc-news@7                      # the tag and checks the pipeline's publish: recorded
  smelt catalog publish cc-news@7 --tag prod --require audit --require 'diff: docs_removed<5%'
  smelt catalog publish cc-news@7 --force --reason 'removals were the spam domain, checked by hand'")]
    Publish {
        /// DATASET@VERSION to publish.
        version: String,
        /// The tag to move (default: the tag of the version's publish record).
        #[arg(long)]
        tag: Option<String>,
        /// A check: `audit` or `diff: METRIC<VALUE` (default: the recorded checks); repeatable.
        #[arg(long = "require", value_name = "CHECK")]
        require: Vec<String>,
        /// Move the tag even when a check fails (recorded with --reason).
        #[arg(long, requires = "reason")]
        force: bool,
        /// Why the version is forced out (required with --force).
        #[arg(long)]
        reason: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// What changed between two versions: lineage, schema, documents, mixture, funnel, shards.
    #[command(after_help = "Examples:
  smelt catalog diff quickstart@1 quickstart@2
  smelt catalog diff cc-news@3 cc-news@4 --format json --fail-on 'token_share_delta>2pp'
  smelt catalog diff cc-news@3 cc-news@4 --docs added --limit 20

--fail-on metrics: token_share_delta (pp), rows_delta, tokens_delta, text_bytes_delta (%),
drop_rate_delta (pp), docs_added, docs_removed, docs_changed (% of A), schema_changed,
tokenizer_changed, pipeline_changed (0/1). Exit 4 when one holds.")]
    Diff {
        /// The older version.
        from: String,
        /// The newer version.
        to: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Fail (exit 4) when a condition holds, e.g. 'token_share_delta>2pp'; repeatable.
        #[arg(long = "fail-on", value_name = "METRIC>VALUE")]
        fail_on: Vec<String>,
        /// Show sample documents of one part: added, removed or changed.
        #[arg(long, value_enum)]
        docs: Option<DocPart>,
        /// How many sample documents.
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Where a version came from: run, pipeline, stage configs, inputs.
    #[command(after_help = "Example:\n  smelt catalog lineage quickstart@1")]
    Lineage {
        /// DATASET@VERSION.
        version: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Expire versions by a retention policy, then remove staging left by failed runs and shards no kept
    /// version references. Without --keep-last or --keep-days no version expires; the latest never does.
    #[command(
        after_help = "Examples:\n  smelt catalog gc --dry-run\n  smelt catalog gc --grace-hours 0\n  smelt catalog gc --keep-last 10 --keep-tagged --dry-run\n  smelt catalog gc --dataset cc-news --keep-days 30 --keep-tagged\n  smelt catalog gc --keep-last 3 --keep-trained    # and every version a training run read"
    )]
    Gc {
        /// Only files older than this are removed (a run may still be writing younger ones).
        #[arg(long, default_value_t = 24.0)]
        grace_hours: f64,
        /// List what would be expired and removed, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Only this dataset (default: every dataset in the catalog).
        #[arg(long)]
        dataset: Option<String>,
        /// Keep the newest N versions of each dataset; older ones expire unless another rule keeps them.
        #[arg(long, value_name = "N")]
        keep_last: Option<usize>,
        /// Keep versions committed in the last D days.
        #[arg(long, value_name = "D")]
        keep_days: Option<f64>,
        /// Keep every version a tag points to (with --keep-last or --keep-days).
        #[arg(long)]
        keep_tagged: bool,
        /// Keep every version a recorded training run read (`smelt train list`; with --keep-last or --keep-days).
        #[arg(long)]
        keep_trained: bool,
    },
    /// Rewrite a version's small shards into a new version with the same rows, in the same order, and the
    /// same digest: adjacent shards under half of the sink's shard_bytes and shard_rows are merged into
    /// shards of up to shard_bytes. The old version stays; `catalog gc` frees its small shards once it expires.
    #[command(after_help = "Examples:
  smelt catalog compact feeds@12
  smelt catalog compact feeds@latest --shard-bytes 268435456 --format json
  smelt catalog tag feeds@13 prod        # the compacted version is a new number; tags do not move by themselves")]
    Compact {
        /// DATASET@VERSION to compact.
        version: String,
        /// Target size of a merged shard in bytes (default: the shard_bytes the version was written with).
        #[arg(long, value_name = "BYTES")]
        shard_bytes: Option<u64>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Recreate the index from the manifests in dataset storage.
    #[command(after_help = "Examples:\n  smelt catalog rebuild\n  smelt catalog rebuild s3://bucket/datasets/cc-news")]
    Rebuild {
        /// Dataset roots to scan (default: every dataset under DATA_DIR/datasets and those the index knows).
        roots: Vec<String>,
    },
}

/// Exit code when a `--fail-on` condition holds.
pub const EXIT_GATE: u8 = 4;

/// A `--fail-on` condition held.
#[derive(Debug, thiserror::Error)]
#[error("diff gate failed: {0}")]
pub struct GateFailed(pub String);

fn resolve(data_dir: &Path, r: &str) -> anyhow::Result<(VersionManifest, String)> {
    let c = Workspace::new(data_dir).open_catalog()?;
    let r: VersionRef = r.parse()?;
    let m = c.resolve(&r)?;
    let root = c.dataset(&m.dataset)?.map(|d| d.root_url).unwrap_or_default();
    Ok((m, root))
}

/// Runs a catalog subcommand.
pub async fn run(data_dir: &Path, cmd: CatalogCmd) -> anyhow::Result<()> {
    match cmd {
        CatalogCmd::List { format } => list(data_dir, format),
        CatalogCmd::Log { dataset, format } => log(data_dir, &dataset, format).await,
        CatalogCmd::Show { version, format } => {
            let (m, root) = resolve(data_dir, &version)?;
            let record = smelt_catalog::publish::read_record(&DatasetStore::open(&root)?, m.version).await?;
            match format {
                Format::Json => {
                    // The manifest as stored, plus its publish record when there is one.
                    let mut j = serde_json::to_value(&m)?;
                    if let Some(r) = &record {
                        j["publish"] = serde_json::to_value(r)?;
                    }
                    emit_json(&j);
                }
                Format::Table => {
                    emit(&show_table(&m));
                    if let Some(r) = record {
                        emit(&format!("publish    {}", publish_detail(&r)));
                    }
                }
            }
            Ok(())
        }
        CatalogCmd::Publish { version, tag, require, force, reason, format } => {
            publish(data_dir, &version, tag, &require, force.then_some(reason).flatten(), format).await
        }
        CatalogCmd::Tag { version, tag } => {
            let (m, root) = resolve(data_dir, &version)?;
            let store = DatasetStore::open(&root)?;
            let c = Workspace::new(data_dir).open_catalog()?;
            smelt_catalog::tags::set_tag(&c, &store, &m.dataset, &tag, m.version, &chrono::Utc::now().to_rfc3339())
                .await?;
            emit(&format!("{}@{tag} -> {}@{}", m.dataset, m.dataset, m.version));
            Ok(())
        }
        CatalogCmd::Diff { from, to, format, fail_on, docs, limit } => {
            diff(data_dir, &from, &to, format, &fail_on, docs, limit).await
        }
        CatalogCmd::Lineage { version, format } => {
            let (m, root) = resolve(data_dir, &version)?;
            match format {
                Format::Json => {
                    emit_json(&serde_json::json!({"version": format!("{}@{}", m.dataset, m.version), "root": root,
                    "lineage": m.lineage, "committed_at": m.committed_at, "digest": m.digest}))
                }
                Format::Table => emit(&lineage_table(&m, &root)),
            }
            Ok(())
        }
        CatalogCmd::Gc { grace_hours, dry_run, dataset, keep_last, keep_days, keep_tagged, keep_trained } => {
            let retention = smelt_catalog::gc::Retention { keep_last, keep_days, keep_tagged, keep_trained };
            if (keep_tagged || keep_trained) && !retention.expires() {
                anyhow::bail!("--keep-tagged and --keep-trained keep versions that --keep-last or --keep-days would expire: give one of those too");
            }
            if keep_last == Some(0) {
                anyhow::bail!(
                    "--keep-last 0 would keep no version: the latest always stays, so use --keep-last 1 or more"
                );
            }
            gc(data_dir, grace_hours, dry_run, dataset.as_deref(), &retention).await
        }
        CatalogCmd::Rebuild { roots } => rebuild(data_dir, roots).await,
        CatalogCmd::Compact { version, shard_bytes, format } => compact(data_dir, &version, shard_bytes, format).await,
    }
}

async fn compact(data_dir: &Path, version: &str, shard_bytes: Option<u64>, format: Format) -> anyhow::Result<()> {
    use smelt_connectors::sink::compact::{compact, sink_options};
    let (m, root) = resolve(data_dir, version)?;
    let store = DatasetStore::open(&root)?;
    let cfg = shard_bytes.map(|b| {
        let mut c = sink_options(&m.lineage.resolved_config).unwrap_or_default();
        c.shard_bytes = b.max(1);
        c
    });
    let run_id = format!("compact-{}", smelt_runner::workspace::new_run_id());
    let now = chrono::Utc::now().to_rfc3339();
    let Some(done) = compact(&store, &m, cfg, &run_id, &now).await? else {
        match format {
            Format::Json => {
                emit_json(&serde_json::json!({"dataset": m.dataset, "version": m.version, "compacted": null,
                "shards": m.totals.shards}))
            }
            Format::Table => emit(&format!(
                "{}@{}: nothing to compact ({} shards; no two small ones are adjacent)",
                m.dataset, m.version, m.totals.shards
            )),
        }
        return Ok(());
    };
    let catalog = Workspace::new(data_dir).open_catalog()?;
    let new = smelt_catalog::commit::commit_manifest(&catalog, &store, done.manifest, m.doc_index.as_ref()).await?;
    match format {
        Format::Json => emit_json(&serde_json::json!({"dataset": new.dataset, "version": new.version,
            "compacted": m.version, "shards_before": m.totals.shards, "shards": new.totals.shards,
            "merged_from": done.merged_from, "merged_into": done.merged_into, "digest": new.digest,
            "same_digest": new.digest == m.digest})),
        Format::Table => emit(&format!(
            "{}@{}: {} shards of {}@{} merged into {}: {} shards, {} ({}), digest {}",
            new.dataset,
            new.version,
            done.merged_from,
            m.dataset,
            m.version,
            done.merged_into,
            new.totals.shards,
            human_bytes(new.totals.bytes),
            if new.digest == m.digest { "same digest" } else { "new digest: the version predates content hashes" },
            new.digest,
        )),
    }
    Ok(())
}

fn list(data_dir: &Path, format: Format) -> anyhow::Result<()> {
    let c = Workspace::new(data_dir).open_catalog()?;
    let mut rows = Vec::new();
    let mut json = Vec::new();
    for d in c.datasets()? {
        let latest = c.versions(&d.name)?.into_iter().next_back();
        let t = latest.as_ref().map(|m| m.totals.clone()).unwrap_or_default();
        let at = latest.as_ref().map(|m| m.committed_at.clone()).unwrap_or_default();
        rows.push(vec![
            d.name.clone(),
            d.latest.to_string(),
            t.rows.to_string(),
            t.tokens.to_string(),
            human_bytes(t.bytes),
            at.chars().take(19).collect(),
        ]);
        json.push(serde_json::json!({"dataset": d.name, "latest": d.latest, "rows": t.rows, "tokens": t.tokens, "bytes": t.bytes, "updated": at, "root": d.root_url}));
    }
    match format {
        Format::Json => emit_json(&serde_json::Value::Array(json)),
        Format::Table => emit(&table(&["dataset", "latest", "rows", "tokens", "size", "updated"], &rows)),
    }
    Ok(())
}

/// A publish record in one cell: `prod`, `prod (forced)`, or the failed checks.
fn publish_cell(r: &smelt_catalog::publish::PublishRecord) -> String {
    match (r.published, r.forced) {
        (true, false) => r.tag.clone(),
        (true, true) => format!("{} (forced)", r.tag),
        (false, _) => format!(
            "held: {}",
            r.checks.iter().filter(|c| !c.held).map(|c| c.check.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// A publish record in full: outcome, each check, who and when.
fn publish_detail(r: &smelt_catalog::publish::PublishRecord) -> String {
    let mut out = format!("{} (by {} at {})", r.summary(), r.by, r.at.chars().take(19).collect::<String>());
    if let Some(why) = &r.reason {
        out.push_str(&format!("\n           reason: {why}"));
    }
    for c in &r.checks {
        out.push_str(&format!("\n           {} {}: {}", if c.held { "held  " } else { "FAILED" }, c.check, c.detail));
    }
    out
}

/// `catalog publish`.
async fn publish(
    data_dir: &Path,
    version: &str,
    tag: Option<String>,
    require: &[String],
    force: Option<String>,
    format: Format,
) -> anyhow::Result<()> {
    use smelt_catalog::publish::{read_record, Policy, Requirement};
    let (m, root) = resolve(data_dir, version)?;
    let store = DatasetStore::open(&root)?;
    let recorded = read_record(&store, m.version).await?;
    let tag = match (tag, &recorded) {
        (Some(t), _) => t,
        (None, Some(r)) => r.tag.clone(),
        (None, None) => anyhow::bail!(
            "{}@{} has no publish record (its pipeline has no `publish:`): give the tag, as in --tag prod",
            m.dataset,
            m.version
        ),
    };
    if !smelt_catalog::index::valid_tag(&tag) {
        anyhow::bail!("`{tag}` is not a tag name: letters, digits, `-`, `_`, `.`, not a number, not `latest`");
    }
    let require: Vec<Requirement> = if require.is_empty() {
        recorded.as_ref().map(|r| r.require.clone()).unwrap_or_default()
    } else {
        require.iter().map(|r| Requirement::parse(r)).collect::<Result<_, _>>()?
    };
    let catalog = Workspace::new(data_dir).open_catalog()?;
    let policy = Policy { tag, require };
    let r =
        smelt_runner::publish::publish(&catalog, &store, &m, &policy, smelt_runner::publish::BY_HAND, force.as_deref())
            .await?;
    match format {
        Format::Json => emit_json(&serde_json::to_value(&r)?),
        Format::Table => emit(&format!("{}@{}: {}", r.dataset, r.version, publish_detail(&r))),
    }
    if r.published {
        Ok(())
    } else {
        Err(GateFailed(r.failed().join("; ")).into())
    }
}

async fn log(data_dir: &Path, dataset: &str, format: Format) -> anyhow::Result<()> {
    let c = Workspace::new(data_dir).open_catalog()?;
    if c.dataset(dataset)?.is_none() {
        c.resolve(&VersionRef::latest(dataset))?;
    }
    let root = c.dataset(dataset)?.map(|d| d.root_url).unwrap_or_default();
    let records = smelt_catalog::publish::records(&DatasetStore::open(&root)?).await?;
    let versions = c.versions(dataset)?;
    let mut tags: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (t, v) in c.tags(dataset)? {
        tags.entry(v).or_default().push(t);
    }
    match format {
        Format::Json => {
            let items: Vec<serde_json::Value> = versions
                .iter()
                .map(|v| {
                    let mut j = serde_json::to_value(v).unwrap_or_default();
                    j["tags"] = serde_json::json!(tags.get(&v.version).cloned().unwrap_or_default());
                    j["publish"] = serde_json::to_value(records.get(&v.version)).unwrap_or_default();
                    j
                })
                .collect();
            emit_json(&serde_json::Value::Array(items));
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = versions
                .iter()
                .rev()
                .map(|v| {
                    vec![
                        format!("{}@{}", v.dataset, v.version),
                        tags.get(&v.version).map(|t| t.join(",")).unwrap_or_default(),
                        records.get(&v.version).map(publish_cell).unwrap_or_default(),
                        v.committed_at.chars().take(19).collect(),
                        v.run_id.clone(),
                        v.totals.rows.to_string(),
                        v.totals.tokens.to_string(),
                        v.totals.shards.to_string(),
                        human_bytes(v.totals.bytes),
                        v.pipeline_hash.chars().take(12).collect(),
                        v.digest.trim_start_matches("xxh3-128:").chars().take(12).collect(),
                    ]
                })
                .collect();
            emit(&table(
                &[
                    "version",
                    "tags",
                    "published",
                    "committed",
                    "run",
                    "rows",
                    "tokens",
                    "shards",
                    "size",
                    "pipeline",
                    "digest",
                ],
                &rows,
            ));
        }
    }
    Ok(())
}

async fn diff(
    data_dir: &Path,
    from: &str,
    to: &str,
    format: Format,
    fail_on: &[String],
    docs: Option<DocPart>,
    limit: usize,
) -> anyhow::Result<()> {
    let gates: Vec<FailOn> = fail_on.iter().map(|s| s.parse()).collect::<Result<_, _>>()?;
    let (a, root_a) = resolve(data_dir, from)?;
    let (b, root_b) = resolve(data_dir, to)?;
    let documents =
        crate::docs::document_diff(&a, &root_a, &b, &root_b, if docs.is_some() { limit } else { 5 }).await?;
    let mut d = diff_versions(&a, &b, documents);
    d.signals = crate::signals::diff(data_dir, &a, &b).await?;
    let mut failed = Vec::new();
    for g in &gates {
        if let Some(msg) = g.check(&d)? {
            failed.push(msg);
        }
    }
    let samples = match docs {
        Some(part) => Some(crate::docs::sample_documents(data_dir, &d, part, &a, &b, limit).await?),
        None => None,
    };
    match format {
        Format::Json => {
            let mut j = serde_json::to_value(&d)?;
            j["gates_failed"] = serde_json::json!(failed);
            if let Some(s) = &samples {
                j["sample_documents"] = s.clone();
            }
            emit_json(&j);
        }
        Format::Table => {
            emit(&diff_table(&d));
            if let Some(s) = &samples {
                emit(&crate::docs::samples_table(s));
            }
            for f in &failed {
                emit(&format!("GATE FAILED: {f}"));
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(GateFailed(failed.join("; ")).into())
    }
}

fn pair(a: u64, b: u64) -> (String, String, String) {
    let delta = b as i128 - a as i128;
    (a.to_string(), b.to_string(), if delta > 0 { format!("+{delta}") } else { delta.to_string() })
}

/// The readable form of a diff.
pub fn diff_table(d: &VersionDiff) -> String {
    let mut out =
        format!("diff {} -> {}{}\n", d.from, d.to, if d.same_data { "  (identical data: same digest)" } else { "" });
    out.push_str("\nlineage\n");
    let l = &d.lineage;
    out.push_str(&format!(
        "  pipeline   {} ({} -> {})\n  smelt      {} -> {}\n",
        if l.pipeline_changed { "changed" } else { "same" },
        &l.pipeline_hash.0.chars().take(12).collect::<String>(),
        &l.pipeline_hash.1.chars().take(12).collect::<String>(),
        l.smelt_version.0,
        l.smelt_version.1
    ));
    for c in &l.config_changes {
        out.push_str(&format!("  config     {}: {} -> {}\n", c.path, c.before, c.after));
    }
    if !l.inputs_added.is_empty() || !l.inputs_removed.is_empty() {
        out.push_str(&format!("  inputs     +{} -{} splits\n", l.inputs_added.len(), l.inputs_removed.len()));
    }
    if let Some((from, to)) = &l.upstream {
        let show = |v: &Vec<String>| if v.is_empty() { "none".to_string() } else { v.join(", ") };
        out.push_str(&format!("  upstream   {} -> {}\n", show(from), show(to)));
    }
    out.push_str("\nschema\n");
    let s = &d.schema;
    if s.added.is_empty() && s.removed.is_empty() && s.changed.is_empty() {
        out.push_str("  unchanged\n");
    }
    for f in &s.added {
        out.push_str(&format!("  + {} {}\n", f.name, f.data_type));
    }
    for f in &s.removed {
        out.push_str(&format!("  - {} {}\n", f.name, f.data_type));
    }
    for (x, y) in &s.changed {
        out.push_str(&format!("  ~ {} {} -> {}\n", x.name, x.data_type, y.data_type));
    }
    if s.tokenizer_changed {
        out.push_str("  !! TOKENIZER CHANGED: token counts of the two versions are not comparable\n");
    }
    out.push_str("\ndocuments\n");
    match &d.documents {
        Some(docs) => {
            let n = |k: &str| docs.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
            out.push_str(&format!(
                "  added {}  removed {}  changed {}  unchanged {}\n",
                n("added"),
                n("removed"),
                n("changed"),
                n("unchanged")
            ));
        }
        None => out.push_str("  unavailable (a version was committed without a document index)\n"),
    }
    let t = &d.totals;
    out.push_str("\ntotals\n");
    let rows: Vec<Vec<String>> =
        [("rows", t.rows), ("tokens", t.tokens), ("text bytes", t.text_bytes), ("shard bytes", t.bytes)]
            .iter()
            .map(|(k, (a, b))| {
                let (a, b, delta) = pair(*a, *b);
                vec![k.to_string(), a, b, delta]
            })
            .collect();
    out.push_str(&table(&["", "from", "to", "delta"], &rows));
    out.push_str(&format!(
        "\nmixture (lang x source x domain; share of {}, ranked by |delta|, top 20)\n",
        d.share_basis
    ));
    let rows: Vec<Vec<String>> = d
        .mixture
        .iter()
        .take(20)
        .map(|m| {
            vec![
                m.lang.clone(),
                m.source.clone(),
                m.domain.clone(),
                format!("{} -> {}", m.docs.0, m.docs.1),
                format!("{:.2}%", m.share.0),
                format!("{:.2}%", m.share.1),
                format!("{:+.2}pp", m.share_delta_pp),
            ]
        })
        .collect();
    out.push_str(&table(&["lang", "source", "domain", "docs", "share from", "share to", "delta"], &rows));
    if d.mixture.len() > 20 {
        out.push_str(&format!("... {} more groups\n", d.mixture.len() - 20));
    }
    out.push_str("\nfilter funnel (rate of the stage's input)\n");
    let rows: Vec<Vec<String>> = d
        .funnel
        .iter()
        .map(|f| {
            if f.reason.is_empty() {
                vec![f.stage.clone(), "(rows in)".into(), f.count.0.to_string(), f.count.1.to_string(), String::new()]
            } else {
                vec![
                    f.stage.clone(),
                    f.reason.clone(),
                    format!("{} ({:.1}%)", f.count.0, f.rate.0),
                    format!("{} ({:.1}%)", f.count.1, f.rate.1),
                    format!("{:+.2}pp", f.rate_delta_pp),
                ]
            }
        })
        .collect();
    out.push_str(&table(&["stage", "reason", "from", "to", "delta"], &rows));
    if !d.audit.changed.is_empty() || !d.audit.risks_added.is_empty() || !d.audit.risks_removed.is_empty() {
        out.push('\n');
        out.push_str(&crate::output::audit_diff_table(&d.audit, 20));
    }
    out.push_str(&crate::signals::table(&d.signals));
    out.push_str(&format!(
        "\nshards: {} added, {} removed, {} unchanged (by checksum)\n",
        d.shards.added, d.shards.removed, d.shards.unchanged
    ));
    out
}

fn lineage_table(m: &VersionManifest, root: &str) -> String {
    let l = &m.lineage;
    let mut out = format!("{}@{}  (committed {}, digest {})\n", m.dataset, m.version, m.committed_at, m.digest);
    out.push_str(&format!(
        "  storage    {root}\n  run        {}\n  pipeline   {} (hash {})\n  smelt      {}\n",
        l.run_id, l.pipeline_path, l.pipeline_hash, l.smelt_version
    ));
    if let Some(i) = &l.interval {
        out.push_str(&format!("  interval   {} .. {} (cron `{}`, {})\n", i.start, i.end, i.cron, i.timezone));
    }
    out.push_str("\nstages\n");
    if let Some(stages) = l.resolved_config.get("stages").and_then(|s| s.as_array()) {
        for s in stages {
            out.push_str(&format!(
                "  {} ({}) <- [{}]\n      {}\n",
                s["name"].as_str().unwrap_or(""),
                s["type"].as_str().unwrap_or(""),
                s["inputs"]
                    .as_array()
                    .map(|i| i.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", "))
                    .unwrap_or_default(),
                s["options"]
            ));
        }
    }
    let upstream = smelt_query::diff::upstream_versions(l);
    out.push_str(&format!("\ninputs ({} splits)\n", l.inputs.len()));
    for i in &l.inputs {
        out.push_str(&format!(
            "  [{}] {} ({}{})\n",
            i.index,
            i.id,
            i.source,
            i.bytes.map(|b| format!(", {}", human_bytes(b))).unwrap_or_default()
        ));
    }
    out.push_str(&format!(
        "\nupstream dataset versions: {}\n",
        if upstream.is_empty() { "none".to_string() } else { upstream.join(", ") }
    ));
    for u in &l.upstream {
        if let Some(s) = &u.since {
            out.push_str(&format!(
                "  {} read incrementally by `{}`: {} documents added or changed since {}@{}, {} removed; \
                 appended to {}@{}\n",
                u.version,
                u.source,
                s.added,
                u.dataset(),
                s.upstream,
                s.removed,
                m.dataset,
                s.base
            ));
        }
    }
    out
}

async fn rebuild(data_dir: &Path, roots: Vec<String>) -> anyhow::Result<()> {
    let catalog = Workspace::new(data_dir).open_catalog()?;
    let mut roots = roots;
    if roots.is_empty() {
        roots.extend(catalog.datasets()?.into_iter().map(|d| d.root_url));
        if let Ok(entries) = std::fs::read_dir(data_dir.join("datasets")) {
            let mut local: Vec<String> =
                entries.filter_map(|e| e.ok()).map(|e| e.path().display().to_string()).collect();
            local.sort();
            roots.extend(local);
        }
    }
    let mut seen = std::collections::HashSet::new();
    for root in roots {
        let store = DatasetStore::open(&root)?;
        if !seen.insert(store.url().to_string()) {
            continue;
        }
        let versions = smelt_catalog::rebuild(&catalog, &store).await?;
        let tags = smelt_catalog::tags::rebuild_tags(&catalog, &store).await?;
        let trained = smelt_catalog::training::sync(&catalog, &store).await?;
        emit(&format!(
            "{}: {} versions, {} tags, {} training runs recorded",
            store.url(),
            versions.len(),
            tags.len(),
            trained.len()
        ));
    }
    Ok(())
}

async fn gc(
    data_dir: &Path,
    grace_hours: f64,
    dry_run: bool,
    only: Option<&str>,
    retention: &smelt_catalog::gc::Retention,
) -> anyhow::Result<()> {
    let catalog = Workspace::new(data_dir).open_catalog()?;
    let mut datasets = catalog.datasets()?;
    if let Some(name) = only {
        datasets.retain(|d| d.name == name);
        if datasets.is_empty() {
            // The catalog's own message, with close names.
            catalog.resolve(&smelt_catalog::VersionRef::latest(name))?;
        }
    }
    let grace = chrono::Duration::milliseconds((grace_hours * 3_600_000.0) as i64);
    let now = chrono::Utc::now();
    let cutoff = now - grace;
    let (mut removed, mut freed, mut expired_n) = (0u64, 0u64, 0u64);
    let would = |done: &'static str| if dry_run { "would expire" } else { done };
    for d in datasets {
        let store = DatasetStore::open(&d.root_url)?;
        let expired = smelt_catalog::gc::expire(&store, &catalog, retention, now, dry_run)
            .await
            .with_context(|| format!("expiring versions of {}", d.root_url))?;
        for e in &expired {
            let tags = if e.tags.is_empty() { String::new() } else { format!(", tags {} removed", e.tags.join(" ")) };
            emit(&format!(
                "{} {}@{} (committed {}, run {}{tags})",
                would("expired"),
                d.name,
                e.version,
                e.committed_at,
                e.run_id
            ));
        }
        expired_n += expired.len() as u64;
        let report = smelt_catalog::gc::collect_except(&store, cutoff, dry_run, &expired)
            .await
            .with_context(|| format!("gc of {}", d.root_url))?;
        for f in &report.removed {
            emit(&format!("{} {}/{}", if dry_run { "would remove" } else { "removed" }, store.url(), f.path));
        }
        removed += report.removed.len() as u64;
        freed += report.removed.iter().map(|f| f.bytes).sum::<u64>();
        if !dry_run {
            for run in &report.runs_removed {
                let _ = std::fs::remove_file(data_dir.join("runs").join(format!("{run}.json")));
            }
        }
    }
    if retention.expires() {
        emit(&format!("{} {expired_n} versions", would("expired")));
    }
    emit(&format!("{} {removed} files, {}", if dry_run { "would remove" } else { "removed" }, human_bytes(freed)));
    Ok(())
}

fn show_table(m: &VersionManifest) -> String {
    let mut out = String::new();
    out.push_str(&format!("{}@{}\n", m.dataset, m.version));
    out.push_str(&format!(
        "  committed   {}\n  run         {}\n  digest      {}\n",
        m.committed_at, m.lineage.run_id, m.digest
    ));
    out.push_str(&format!(
        "  totals      {} rows, {} shards, {}, {} tokens, {} of text\n",
        m.totals.rows,
        m.totals.shards,
        human_bytes(m.totals.bytes),
        m.totals.tokens,
        human_bytes(m.totals.text_bytes)
    ));
    for u in &m.lineage.upstream {
        if let Some(s) = &u.since {
            out.push_str(&format!(
                "  appended    to {}@{}: {} documents new in {} since @{}, {} removed\n",
                m.dataset, s.base, s.added, u.version, s.upstream, s.removed
            ));
        }
    }
    if let Some(v) = m.lineage.compacted_from {
        out.push_str(&format!(
            "  compacted   from {}@{v} (`smelt catalog compact`): the same rows in fewer shards\n",
            m.dataset
        ));
    }
    out.push_str(&format!(
        "  lineage     pipeline {} (hash {}), smelt {}, {} input splits\n\nschema\n",
        m.lineage.pipeline_path,
        &m.lineage.pipeline_hash,
        m.lineage.smelt_version,
        m.lineage.inputs.len()
    ));
    let schema: Vec<Vec<String>> = m
        .schema
        .iter()
        .map(|f| vec![f.name.clone(), f.data_type.clone(), if f.nullable { "null".into() } else { "not null".into() }])
        .collect();
    out.push_str(&table(&["column", "type", "nulls"], &schema));
    out.push_str("\nstats (language x source x domain, top 20 by docs)\n");
    let mut stats = m.stats.clone();
    stats.sort_by(|a, b| {
        b.docs.cmp(&a.docs).then_with(|| (&a.lang, &a.source, &a.domain).cmp(&(&b.lang, &b.source, &b.domain)))
    });
    let rows: Vec<Vec<String>> = stats
        .iter()
        .take(20)
        .map(|s| {
            vec![
                s.lang.clone(),
                s.source.clone(),
                s.domain.clone(),
                s.docs.to_string(),
                s.tokens.to_string(),
                human_bytes(s.text_bytes),
            ]
        })
        .collect();
    out.push_str(&table(&["lang", "source", "domain", "docs", "tokens", "text"], &rows));
    if stats.len() > 20 {
        out.push_str(&format!("... {} more groups\n", stats.len() - 20));
    }
    out.push_str(&crate::output::audit_risks_table(m));
    out.push_str("\nfilter funnel\n");
    out.push_str(&crate::output::funnel_table(&m.funnel));
    out.push_str("\ninputs\n");
    for i in m.lineage.inputs.iter().take(10) {
        out.push_str(&format!("  [{}] {} ({})\n", i.index, i.id, i.source));
    }
    if m.lineage.inputs.len() > 10 {
        out.push_str(&format!("  ... {} more\n", m.lineage.inputs.len() - 10));
    }
    out.push_str("\nshards\n");
    let shards: Vec<Vec<String>> = m
        .shards
        .iter()
        .take(10)
        .map(|s| vec![s.path.clone(), s.rows.to_string(), human_bytes(s.bytes), s.checksum.clone()])
        .collect();
    out.push_str(&table(&["path", "rows", "size", "checksum"], &shards));
    if m.shards.len() > 10 {
        out.push_str(&format!("... {} more shards\n", m.shards.len() - 10));
    }
    out
}
