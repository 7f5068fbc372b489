//! What a version records about its rows besides the shards, gathered by
//! the sink runner from every row it writes: documents, tokens and text
//! bytes per (lang, source, domain), and each split's sorted
//! `(id, content_hash)` run for the document diff, and the content hash of
//! each shard's rows (see [`crate::rowhash`]).
//!
//! ```text
//! written batch ──► per (lang, source, domain): docs, n_tokens, text bytes ──► SplitRecord.stats
//!               ├─► (id, content_hash) ──RunBuilder (sorted, spills)──► runs/<id>/index/<split>.idx
//!               └─► row hashes ──(the writer ends a shard of N rows: the first N)──► ShardEntry.content
//! ```

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use smelt_catalog::docindex::{FinishedRun, RunBuilder};
use smelt_catalog::GroupStats;

use crate::error::{EngineError, Result};
use crate::stage::str_at;

/// The facts of one split's written rows.
pub(super) struct DocumentFacts {
    groups: BTreeMap<(String, String, String), GroupStats>,
    index: Option<RunBuilder>,
    finished: Option<FinishedRun>,
    /// Hashes of the rows observed and not yet in an ended shard, when storing.
    pending: Option<crate::rowhash::PendingRows>,
}

impl DocumentFacts {
    /// Facts of rows of `schema`; with `store` (shards are being stored) the
    /// rows are hashed for the shards' content hashes, and the document index
    /// is kept when the rows have a string `id` and a 16-byte `content_hash`.
    pub(super) fn new(schema: &SchemaRef, store: bool) -> DocumentFacts {
        DocumentFacts {
            groups: BTreeMap::new(),
            index: (store && indexable(schema)).then(RunBuilder::new),

            finished: None,
            pending: store.then(crate::rowhash::PendingRows::default),
        }
    }

    /// Counts and indexes the rows of `batch`.
    ///
    /// # Errors
    /// The index cannot spill to temporary space.
    pub(super) fn observe(&mut self, batch: &RecordBatch) -> Result<()> {
        accumulate_stats(batch, &mut self.groups);
        if let Some(p) = &mut self.pending {
            p.push(batch)?;
        }
        match &mut self.index {
            Some(run) => index_batch(run, batch),
            None => Ok(()),
        }
    }

    /// The content hash (stored form) of the next `rows` rows observed: the
    /// shard the writer just ended; `None` when the rows are not hashed.
    ///
    /// # Errors
    /// The writer ended a shard with more rows than it was given (a bug).
    pub(super) fn take_shard(&mut self, rows: u64) -> Result<Option<String>> {
        self.pending.as_mut().map(|p| p.take(rows).map(|h| h.to_string())).transpose()
    }

    /// Every row seen: sorts the split's index run.
    ///
    /// # Errors
    /// The index cannot be written to temporary space.
    pub(super) fn finish(&mut self) -> Result<()> {
        if let Some(run) = self.index.take() {
            self.finished = Some(run.finish().map_err(|e| {
                EngineError::External(format!("cannot write the document index to temporary space: {e}"))
            })?);
        }
        Ok(())
    }

    /// The statistics by (lang, source, domain) and the finished index run, if any.
    pub(super) fn into_parts(self) -> (Vec<GroupStats>, Option<FinishedRun>) {
        (self.groups.into_values().collect(), self.finished)
    }
}

/// Whether rows of `schema` can be indexed for the document diff: a string
/// `id` and a 16-byte `content_hash`.
fn indexable(schema: &SchemaRef) -> bool {
    let id = schema.field_with_name("id").map(|f| f.data_type().clone());
    let hash = schema.field_with_name("content_hash").map(|f| f.data_type().clone());
    matches!(id, Ok(DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View))
        && matches!(hash, Ok(DataType::FixedSizeBinary(16)))
}

/// Adds the `(id, content_hash)` of every row of `batch` to `run`; rows with
/// a null id or hash are not indexed.
fn index_batch(run: &mut RunBuilder, batch: &RecordBatch) -> Result<()> {
    let (Some(ids), Some(hashes)) = (batch.column_by_name("id"), batch.column_by_name("content_hash")) else {
        return Ok(());
    };
    let Some(hashes) = hashes.as_fixed_size_binary_opt() else { return Ok(()) };
    let spill =
        |e: std::io::Error| EngineError::External(format!("cannot spill the document index to temporary space: {e}"));
    let mut push = |i: usize, id: Option<&str>| -> Result<()> {
        if let (Some(id), false) = (id, hashes.is_null(i)) {
            let hash: &[u8; 16] =
                hashes.value(i).try_into().map_err(|_| EngineError::Internal("content_hash is not 16 bytes".into()))?;
            run.push(id.as_bytes(), hash).map_err(spill)?;
        }
        Ok(())
    };
    match ids.data_type() {
        DataType::Utf8 => ids.as_string::<i32>().iter().enumerate().try_for_each(|(i, id)| push(i, id)),
        DataType::LargeUtf8 => ids.as_string::<i64>().iter().enumerate().try_for_each(|(i, id)| push(i, id)),
        DataType::Utf8View => ids.as_string_view().iter().enumerate().try_for_each(|(i, id)| push(i, id)),
        _ => Ok(()),
    }
}

/// Host of a URL, lowercased, without port or `www.`; `-` when there is none.
pub fn domain_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = host.split(':').next().unwrap_or("");
    let host = host.strip_prefix("www.").unwrap_or(host);
    if host.is_empty() {
        "-"
    } else {
        host
    }
}

/// Documents, tokens and text bytes of `batch`'s rows per (lang, source, domain), sorted by key.
pub fn group_stats(batch: &RecordBatch) -> Vec<GroupStats> {
    let mut groups = BTreeMap::new();
    accumulate_stats(batch, &mut groups);
    groups.into_values().collect()
}

fn accumulate_stats(batch: &RecordBatch, groups: &mut BTreeMap<(String, String, String), GroupStats>) {
    let string_at = |name: &str, i: usize| -> Option<String> {
        batch.column_by_name(name).and_then(|c| str_at(c, i)).map(str::to_string)
    };
    let tokens = batch.column_by_name("n_tokens").and_then(|c| arrow::compute::cast(c, &DataType::UInt64).ok());
    let text = batch.column_by_name("text");
    for i in 0..batch.num_rows() {
        let lang = string_at("lang", i).unwrap_or_else(|| "und".into());
        let source = string_at("source", i).unwrap_or_else(|| "-".into());
        let domain = string_at("url", i).map_or_else(|| "-".to_string(), |u| domain_of(&u).to_ascii_lowercase());
        let g = groups.entry((lang.clone(), source.clone(), domain.clone())).or_insert_with(|| GroupStats {
            lang,
            source,
            domain,
            ..Default::default()
        });
        g.docs += 1;
        if let Some(t) = &tokens {
            let t = t.as_primitive::<arrow::datatypes::UInt64Type>();
            if !t.is_null(i) {
                g.tokens += t.value(i);
            }
        }
        if let Some(text) = text {
            g.text_bytes += str_at(text, i).map_or(0, |t| t.len() as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        assert_eq!(domain_of("https://www.Example.org:8080/a?b"), "Example.org");
        assert_eq!(domain_of("http://user@an.wikipedia.org/wiki/x"), "an.wikipedia.org");
        assert_eq!(domain_of(""), "-");
    }
}
