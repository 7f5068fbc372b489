//! `smelt dedup explain DATASET@V DOC_ID`: why a document was kept or
//! dropped by `dedup_minhash` (docs/adr/0007-dedup-explain.md).
//!
//! ```text
//! manifest ──lineage──► the dedup_minhash stage's options (keep rule, explain on?)
//! version  ──SQL: rows with a dup_cluster──► the row whose id is DOC_ID (kept)
//!                                            or whose dup_members names it (dropped)
//!          ──► cluster id, size, kept member, members with estimated Jaccard, the rule
//! ```
//! A dropped document is not in the version; its cluster's kept row carries
//! its id and similarity in `dup_members` (stage option `explain: true`).

use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float32Type, UInt32Type, UInt64Type};
use clap::Subcommand;
use smelt_catalog::{VersionManifest, VersionRef};

use crate::output::{emit, emit_json, table, Format};
use smelt_runner::Workspace;

/// `smelt dedup` subcommands.
#[derive(Debug, Subcommand)]
pub enum DedupCmd {
    /// Show a document's near-duplicate cluster: its members, their estimated
    /// Jaccard similarity to the kept one, which one was kept and why.
    #[command(after_help = "Examples:
  smelt dedup explain news@3 doc-00042
  smelt dedup explain news@latest doc-00042 --format json")]
    Explain {
        /// The version (`dataset@N`, `dataset@tag`, `dataset@latest`).
        version: String,
        /// The document's `id`.
        doc_id: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Store a version's MinHash band index next to it (`_indexes/`), so that
    /// pipelines with `dedup_minhash` `against: [DATASET@V]` read it instead of
    /// re-signing the version's documents (they build and store it themselves
    /// when it is missing). The options must be the ones of the stage that
    /// will use it.
    #[command(after_help = "Examples:
  smelt dedup index cc-main@3
  smelt dedup index cc-main@prod --buckets 20 --hashes-per-bucket 10 --format json")]
    Index {
        /// The version (`dataset@N`, `dataset@tag`, `dataset@latest`).
        version: String,
        /// LSH bands (stage option `buckets`).
        #[arg(long, default_value_t = 14)]
        buckets: usize,
        /// Hashes per band (stage option `hashes_per_bucket`).
        #[arg(long, default_value_t = 8)]
        hashes_per_bucket: usize,
        /// Words per shingle (stage option `n_grams`).
        #[arg(long, default_value_t = 5)]
        n_grams: usize,
        /// Permutation seed (stage option `seed`).
        #[arg(long, default_value_t = 1)]
        seed: u32,
        /// Word splitter for rows without a `lang` value (stage option `language`).
        #[arg(long, default_value = "en")]
        language: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

/// Runs a `smelt dedup` subcommand.
///
/// # Errors
/// Unknown versions, versions without a `dedup_minhash` stage, query failures.
pub async fn run(data_dir: &Path, cmd: DedupCmd) -> anyhow::Result<()> {
    match cmd {
        DedupCmd::Explain { version, doc_id, format } => {
            let e = explain(data_dir, &version, &doc_id).await?;
            match format {
                Format::Json => emit_json(&e),
                Format::Table => emit(&explain_table(&e)),
            }
            Ok(())
        }
        DedupCmd::Index { version, buckets, hashes_per_bucket, n_grams, seed, language, format } => {
            let options = serde_json::json!({
                "buckets": buckets, "hashes_per_bucket": hashes_per_bucket,
                "n_grams": n_grams, "seed": seed, "language": language,
            });
            let out = index(data_dir, &version, options).await?;
            match format {
                Format::Json => emit_json(&out),
                Format::Table => emit(&format!(
                    "{} {}: {} documents, {} indexed ({} without shingles), {}",
                    if out["built"] == true { "indexed" } else { "already indexed:" },
                    out["version"].as_str().unwrap_or(""),
                    out["documents"],
                    out["indexed"],
                    out["without_shingles"],
                    out["location"].as_str().unwrap_or("")
                )),
            }
            Ok(())
        }
    }
}

/// `smelt dedup index`: builds (or finds) a version's MinHash band index.
async fn index(data_dir: &Path, version: &str, options: serde_json::Value) -> anyhow::Result<serde_json::Value> {
    use smelt_engine::ConfigureContext;
    use smelt_stages::dedup::{against, minhash};
    let config: minhash::DedupMinhashConfig = serde_json::from_value(options)?;
    // The same checks as the stage's options (zero bands, too many hashes, ...).
    let roots = Workspace::new(data_dir).dataset_roots()?;
    let ctx = ConfigureContext::new(".", data_dir);
    minhash::configure(serde_json::to_value(&config)?, &ctx).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let e = against::open_version(&ctx.datasets.with_named(roots), version).await?;
    let scratch = data_dir.join("scratch").join(format!("dedup-index-{}", std::process::id()));
    let signer = minhash::Signer::new(&config);
    let result = against::ensure_index(&e, &config, &signer, &scratch).await;
    let _ = std::fs::remove_dir_all(&scratch);
    let (info, built) = result?;
    Ok(serde_json::json!({
        "version": e.name,
        "location": format!("{}/{}", e.store.url(), against::index_dir(&config, info.version)),
        "documents": info.documents,
        "indexed": info.documents - info.without_shingles,
        "without_shingles": info.without_shingles,
        "built": built,
    }))
}

/// One member of a cluster.
struct Member {
    id: String,
    similarity: f32,
    kept: bool,
}

/// The `dedup_minhash` stage of a version's pipeline: (name, keep rule, explain on).
fn minhash_stage(m: &VersionManifest) -> anyhow::Result<(String, String, bool)> {
    let stages = m.lineage.resolved_config["stages"].as_array().cloned().unwrap_or_default();
    let s = stages.iter().find(|s| s["type"] == "dedup_minhash").ok_or_else(|| {
        smelt_engine::EngineError::User(format!(
            "{}@{} was not made by a pipeline with a `dedup_minhash` stage",
            m.dataset, m.version
        ))
    })?;
    Ok((
        s["name"].as_str().unwrap_or("").to_string(),
        s["options"]["keep"].as_str().unwrap_or("first").to_string(),
        s["options"]["explain"].as_bool().unwrap_or(false),
    ))
}

fn rule(keep: &str) -> &'static str {
    match keep {
        "datatrove" => {
            "keep: datatrove - the root of datatrove's union-find: candidate pairs (documents next to each other \
             with equal values in a band) are joined band after band, the larger set's root stays, on a tie \
             the root of the earlier document's set"
        }
        "newest" => "keep: newest - the member with the latest fetched_at (ties: the first in input order)",
        _ => "keep: first - the first member in input order (split, row)",
    }
}

fn round4(x: f32) -> f64 {
    (f64::from(x) * 1e4).round() / 1e4
}

fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

async fn explain(data_dir: &Path, version: &str, doc_id: &str) -> anyhow::Result<serde_json::Value> {
    let catalog = Workspace::new(data_dir).open_catalog()?;
    let r: VersionRef = version.parse()?;
    let m = catalog.resolve(&r)?;
    let (stage, keep, with_members) = minhash_stage(&m)?;
    let table_name = format!("\"{}@{}\"", m.dataset, m.version);
    let mut out = serde_json::json!({
        "dataset": m.dataset,
        "version": m.version,
        "document": doc_id,
        "stage": stage,
        "rule": rule(&keep),
    });
    let members_col = if with_members { ", dup_members" } else { "" };
    let q = format!(
        "SELECT id, dup_cluster, dup_cluster_size{members_col} FROM {table_name} WHERE dup_cluster IS NOT NULL{}",
        if with_members { String::new() } else { format!(" AND id = {}", sql_string(doc_id)) }
    );
    let batches = smelt_query::sql::query(&catalog, &q).await?;
    for b in &batches {
        let ids = b.column(0).as_string::<i32>();
        let clusters = b.column(1).as_primitive::<UInt64Type>();
        let sizes = b.column(2).as_primitive::<UInt32Type>();
        let lists = with_members.then(|| b.column(3).as_list::<i32>());
        for i in 0..b.num_rows() {
            let kept_id = ids.value(i);
            let mut members = vec![Member { id: kept_id.to_string(), similarity: 1.0, kept: true }];
            if let Some(lists) = lists.filter(|l| l.is_valid(i)) {
                let list = lists.value(i);
                let list = list.as_struct();
                let (mid, msim) = (list.column(0).as_string::<i32>(), list.column(1).as_primitive::<Float32Type>());
                members.extend((0..list.len()).map(|j| Member {
                    id: mid.value(j).to_string(),
                    similarity: msim.value(j),
                    kept: false,
                }));
            }
            let Some(me) = members.iter().find(|x| x.id == doc_id) else {
                continue;
            };
            let status = if me.kept { "kept" } else { "dropped" };
            out["status"] = status.into();
            if !me.kept {
                out["drop_reason"] = "minhash_duplicate".into();
                out["similarity_to_kept"] = round4(me.similarity).into();
            }
            out["cluster"] = clusters.value(i).into();
            out["cluster_size"] = sizes.value(i).into();
            out["kept"] = kept_id.into();
            if with_members {
                out["members"] = members
                    .iter()
                    .map(|x| serde_json::json!({"id": x.id, "similarity": round4(x.similarity), "kept": x.kept}))
                    .collect();
            } else {
                out["note"] =
                    "the stage ran without `explain: true`, so the version does not list the dropped members".into();
            }
            return Ok(out);
        }
    }
    // Not in a cluster: kept alone, or not in the version at all.
    let q = format!("SELECT count(*) AS n FROM {table_name} WHERE id = {}", sql_string(doc_id));
    let batches = smelt_query::sql::query(&catalog, &q).await?;
    let n: i64 = batches
        .iter()
        .filter(|b| b.num_rows() > 0)
        .map(|b| b.column(0).as_primitive::<arrow::datatypes::Int64Type>().value(0))
        .sum();
    if n > 0 {
        out["status"] = "alone".into();
        out["note"] = "in the version with no near-duplicate (no band matched another document)".into();
    } else {
        out["status"] = "absent".into();
        out["note"] = if with_members {
            "neither in the version nor a member of one of its clusters: dropped by another stage, or not in the input"
        } else {
            "not in the version; the stage ran without `explain: true`, so dropped members are not listed"
        }
        .into();
    }
    Ok(out)
}

fn explain_table(e: &serde_json::Value) -> String {
    let s = |k: &str| match &e[k] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        v => v.to_string(),
    };
    let mut out =
        format!("{} in {}@{} (stage `{}`): {}\n", s("document"), s("dataset"), s("version"), s("stage"), s("status"));
    if !e["cluster"].is_null() {
        out += &format!("cluster {} of {} documents, kept: {}\n", s("cluster"), s("cluster_size"), s("kept"));
    }
    if let Some(members) = e["members"].as_array() {
        let rows: Vec<Vec<String>> = members
            .iter()
            .map(|m| {
                vec![
                    m["id"].as_str().unwrap_or("").to_string(),
                    format!("{:.3}", m["similarity"].as_f64().unwrap_or(0.0)),
                    if m["kept"].as_bool() == Some(true) { "kept".into() } else { "dropped: minhash_duplicate".into() },
                ]
            })
            .collect();
        out += &table(&["member", "est. Jaccard to kept", "verdict"], &rows);
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    out += &format!("rule: {}\n", s("rule"));
    if !e["note"].is_null() {
        out += &format!("note: {}\n", s("note"));
    }
    out
}
