//! The document part of `catalog diff`: counts from the per-version document
//! indexes, and sample documents (their text read through SQL over the shards).

use smelt_catalog::{DatasetStore, VersionManifest};
use smelt_query::diff::VersionDiff;
use smelt_query::docdiff::diff_version_documents;

use crate::output::table;

/// Parts of a document diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DocPart {
    /// Documents only in the newer version.
    Added,
    /// Documents only in the older version.
    Removed,
    /// Same id, new content hash.
    Changed,
}

/// Counts and sample ids of added / removed / changed documents, `None` when a
/// version has no document index.
///
/// # Errors
/// Storage failures, corrupt indexes.
pub async fn document_diff(
    a: &VersionManifest,
    root_a: &str,
    b: &VersionManifest,
    root_b: &str,
    samples: usize,
) -> anyhow::Result<Option<serde_json::Value>> {
    let (sa, sb) = (DatasetStore::open(root_a)?, DatasetStore::open(root_b)?);
    Ok(diff_version_documents(&sa, a, &sb, b, samples).await?.map(|d| serde_json::to_value(d).unwrap_or_default()))
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The id, url, source and first 300 characters of the text of documents of a version.
///
/// # Errors
/// Catalog, storage or query failures.
pub async fn fetch(
    data_dir: &std::path::Path,
    m: &VersionManifest,
    ids: &[String],
) -> anyhow::Result<Vec<serde_json::Value>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT id, url, source, substr(text, 1, 300) AS text FROM \"{}@{}\" WHERE id IN ({}) ORDER BY id",
        m.dataset,
        m.version,
        ids.iter().map(|i| quote(i)).collect::<Vec<_>>().join(", ")
    );
    let catalog = smelt_runner::Workspace::new(data_dir).open_catalog()?;
    let batches = smelt_query::sql::query(&catalog, &sql).await?;
    let mut buf = Vec::new();
    smelt_query::sql::write_results(&batches, smelt_query::sql::SqlFormat::Json, &mut buf)?;
    Ok(serde_json::from_slice::<Vec<serde_json::Value>>(&buf).unwrap_or_default())
}

/// Sample documents of one part of the diff, with their text (first 300 characters).
///
/// # Errors
/// SQL or storage failures.
pub async fn sample_documents(
    data_dir: &std::path::Path,
    d: &VersionDiff,
    part: DocPart,
    a: &VersionManifest,
    b: &VersionManifest,
    limit: usize,
) -> anyhow::Result<serde_json::Value> {
    let Some(docs) = &d.documents else {
        anyhow::bail!("no document samples: a version was committed without a document index");
    };
    let key = match part {
        DocPart::Added => "added",
        DocPart::Removed => "removed",
        DocPart::Changed => "changed",
    };
    let ids: Vec<String> = docs["samples"][key]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).take(limit).collect())
        .unwrap_or_default();
    let (before, after) = match part {
        DocPart::Added => (Vec::new(), fetch(data_dir, b, &ids).await?),
        DocPart::Removed => (fetch(data_dir, a, &ids).await?, Vec::new()),
        DocPart::Changed => (fetch(data_dir, a, &ids).await?, fetch(data_dir, b, &ids).await?),
    };
    Ok(serde_json::json!({"part": key, "ids": ids, "from": before, "to": after}))
}

/// The readable form of sample documents.
pub fn samples_table(s: &serde_json::Value) -> String {
    let mut rows = Vec::new();
    for (side, key) in [("from", "from"), ("to", "to")] {
        for doc in s[key].as_array().into_iter().flatten() {
            let text: String = doc["text"]
                .as_str()
                .unwrap_or("")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .take(80)
                .collect();
            rows.push(vec![
                side.to_string(),
                doc["id"].as_str().unwrap_or("").to_string(),
                doc["url"].as_str().unwrap_or("").chars().take(50).collect(),
                text,
            ]);
        }
    }
    format!(
        "\nsample documents ({})\n{}",
        s["part"].as_str().unwrap_or(""),
        table(&["side", "id", "url", "text"], &rows)
    )
}
