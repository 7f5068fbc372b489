//! `dedup_exact` and `dedup_url` barrier stages: one document per key across
//! the whole run (every split, every rank), keeping the first in (split, row)
//! order or the newest by `fetched_at`.
//!
//! ```text
//! observe, per split:  (key, preference, row) per row ──sort──► observed/<split>.keys
//! resolve, once:       k-way merge of every split's file by key; per key the best
//!                      entry is kept, the others ──► resolved/drops.bin (sorted by split, row)
//!                                                    resolved/drops.idx (split -> range)
//! apply, per split:    its dropped rows (sorted) ──► verdicts `duplicate_text` / `duplicate_url`
//! ```
//! Keys are xxh3-128 hashes: of `content_hash` for `dedup_exact` (the
//! normalised text, see `content_hash`), of the normalised URL for
//! `dedup_url`. Memory in the global step: one buffered reader per split file
//! plus 16 bytes per dropped document.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{io, DropsWriter, Merge};
use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use smelt_engine::{
    parse_options, require_column, str_at, BarrierConfig, BarrierContext, BarrierObserver, ConfigureContext,
    OptionError, Processed, Result, SchemaError, StageConfig, Transform,
};

/// Which copy of a duplicate set stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Keep {
    /// The first in (split, row) order: the input order of the run.
    First,
    /// The one with the latest `fetched_at` (ties: the first).
    Newest,
}

/// What the stage deduplicates by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum By {
    ContentHash,
    Url,
}

/// Options of `dedup_exact`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DedupExactConfig {
    /// Which copy stays: `first` (input order) or `newest` (latest `fetched_at`).
    #[serde(default = "default_keep")]
    pub keep: Keep,
}

/// Options of `dedup_url`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DedupUrlConfig {
    /// Which copy stays: `first` (input order) or `newest` (latest `fetched_at`).
    #[serde(default = "default_keep")]
    pub keep: Keep,
    /// Query parameters removed before comparing URLs; a trailing `*` matches a prefix.
    #[serde(default = "default_strip_params")]
    pub strip_params: Vec<String>,
}

fn default_keep() -> Keep {
    Keep::First
}

fn default_strip_params() -> Vec<String> {
    ["utm_*", "fbclid", "gclid"].map(String::from).to_vec()
}

/// Registry hook of `dedup_exact`.
///
/// # Errors
/// Unknown or invalid options.
pub fn configure_exact(options: serde_json::Value, _ctx: &ConfigureContext) -> Result<StageConfig, OptionError> {
    let c: DedupExactConfig = parse_options(options)?;
    Ok(StageConfig::Barrier(Arc::new(Dedup {
        by: By::ContentHash,
        keep: c.keep,
        strip_params: Vec::new(),
        resolved: serde_json::to_value(&c).unwrap_or_default(),
    })))
}

/// Registry hook of `dedup_url`.
///
/// # Errors
/// Unknown or invalid options.
pub fn configure_url(options: serde_json::Value, _ctx: &ConfigureContext) -> Result<StageConfig, OptionError> {
    let c: DedupUrlConfig = parse_options(options)?;
    Ok(StageConfig::Barrier(Arc::new(Dedup {
        by: By::Url,
        keep: c.keep,
        strip_params: c.strip_params.clone(),
        resolved: serde_json::to_value(&c).unwrap_or_default(),
    })))
}

#[derive(Debug)]
struct Dedup {
    by: By,
    keep: Keep,
    strip_params: Vec<String>,
    resolved: serde_json::Value,
}

impl Dedup {
    fn reason(&self) -> &'static str {
        match self.by {
            By::ContentHash => "duplicate_text",
            By::Url => "duplicate_url",
        }
    }
}

/// One observed row: key, preference (smaller wins), row. 32 bytes on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    key: u128,
    pref: i64,
    row: u64,
}

const ENTRY_BYTES: usize = 32;

impl Entry {
    /// Big-endian, the preference with its sign bit flipped, so records
    /// sort as bytes in the order of (key, preference, row).
    fn write(&self, w: &mut impl Write) -> std::io::Result<()> {
        w.write_all(&self.key.to_be_bytes())?;
        w.write_all(&((self.pref as u64) ^ (1 << 63)).to_be_bytes())?;
        w.write_all(&self.row.to_be_bytes())
    }

    fn from_bytes(b: &[u8]) -> Entry {
        let pref = u64::from_be_bytes(b[16..24].try_into().expect("8 bytes"));
        Entry {
            key: u128::from_be_bytes(b[..16].try_into().expect("16 bytes")),
            pref: (pref ^ (1 << 63)) as i64,
            row: u64::from_be_bytes(b[24..32].try_into().expect("8 bytes")),
        }
    }
}

fn keys_path(dir: &Path, split: u32) -> PathBuf {
    dir.join(format!("{split:06}.keys"))
}

impl BarrierConfig for Dedup {
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, SchemaError> {
        match self.by {
            By::ContentHash => require_column(input, "content_hash", &[DataType::FixedSizeBinary(16)])?,
            By::Url => require_column(input, "url", &[DataType::Utf8, DataType::LargeUtf8])?,
        }
        if self.keep == Keep::Newest {
            require_column(
                input,
                "fetched_at",
                &[
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    DataType::Timestamp(TimeUnit::Microsecond, None),
                ],
            )?;
        }
        Ok(input.clone())
    }

    fn resolved(&self) -> serde_json::Value {
        self.resolved.clone()
    }

    fn observer(&self, _input: &SchemaRef, ctx: &BarrierContext, split: u32) -> Result<Box<dyn BarrierObserver>> {
        Ok(Box::new(Observer {
            by: self.by,
            keep: self.keep,
            strip_params: self.strip_params.clone(),
            path: keys_path(&ctx.observed_dir, split),
            entries: Vec::new(),
            row: 0,
        }))
    }

    fn resolve(&self, ctx: &BarrierContext, splits: &[u32]) -> Result<BTreeMap<String, u64>> {
        // One sorted file per split: merge them all by (key, preference, split, row).
        let files = splits.iter().map(|&split| (keys_path(&ctx.observed_dir, split), split));
        let mut merge = Merge::open(files, ENTRY_BYTES, 24)?;
        let mut drops: Vec<(u32, u64)> = Vec::new();
        let (mut keys, mut last) = (0u64, None);
        while let Some((rec, split)) = merge.peek() {
            let Entry { key, row, .. } = Entry::from_bytes(rec);
            if last == Some(key) {
                drops.push((split, row));
            } else {
                keys += 1;
                last = Some(key);
            }
            merge.pop()?;
        }
        drops.sort_unstable();
        write_drops(&ctx.resolved_dir, &drops)?;
        Ok(BTreeMap::from([("distinct_keys".to_string(), keys), ("duplicates".to_string(), drops.len() as u64)]))
    }

    fn applier(&self, _input: &SchemaRef, ctx: &BarrierContext, split: u32) -> Result<Box<dyn Transform>> {
        Ok(Box::new(Applier { drops: read_drops(&ctx.resolved_dir, split)?, next: 0, row: 0, reason: self.reason() }))
    }
}

/// `drops.bin` records: (split u32, row u64) big-endian, sorted.
const DROP_BYTES: usize = 12;

fn write_drops(dir: &Path, drops: &[(u32, u64)]) -> Result<()> {
    let mut w = DropsWriter::create(dir)?;
    for &(split, row) in drops {
        let mut rec = [0u8; DROP_BYTES];
        rec[..4].copy_from_slice(&split.to_be_bytes());
        rec[4..].copy_from_slice(&row.to_be_bytes());
        w.push(&rec)?;
    }
    w.finish()
}

/// The sorted dropped rows of one split.
fn read_drops(dir: &Path, split: u32) -> Result<Vec<u64>> {
    Ok(super::read_drops(dir, split, DROP_BYTES)?
        .chunks_exact(DROP_BYTES)
        .map(|c| u64::from_be_bytes(c[4..].try_into().expect("8")))
        .collect())
}

struct Observer {
    by: By,
    keep: Keep,
    strip_params: Vec<String>,
    path: PathBuf,
    entries: Vec<Entry>,
    row: u64,
}

impl BarrierObserver for Observer {
    fn observe(&mut self, batch: &RecordBatch) -> Result<()> {
        let keys = row_keys(batch, self.by, &self.strip_params);
        let fetched = batch.column_by_name("fetched_at");
        for (i, key) in keys.into_iter().enumerate() {
            let row = self.row + i as u64;
            let Some(key) = key else { continue }; // rows without a key are never duplicates
            let pref = match (self.keep, fetched) {
                (Keep::Newest, Some(c)) if c.is_valid(i) => {
                    -c.as_primitive::<arrow::datatypes::TimestampMicrosecondType>().value(i)
                }
                (Keep::Newest, _) => i64::MAX, // no time: loses against any dated copy
                (Keep::First, _) => 0,
            };
            self.entries.push(Entry { key, pref, row });
        }
        self.row += batch.num_rows() as u64;
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.entries.sort_unstable();
        let tmp = self.path.with_extension("tmp");
        let mut w = BufWriter::new(File::create(&tmp).map_err(|e| io(&tmp, e))?);
        for e in &self.entries {
            e.write(&mut w).map_err(|e| io(&tmp, e))?;
        }
        w.flush().map_err(|e| io(&tmp, e))?;
        drop(w);
        std::fs::rename(&tmp, &self.path).map_err(|e| io(&self.path, e))
    }
}

fn row_keys(batch: &RecordBatch, by: By, strip_params: &[String]) -> Vec<Option<u128>> {
    match by {
        By::ContentHash => {
            let Some(c) = batch.column_by_name("content_hash").and_then(|c| c.as_fixed_size_binary_opt()) else {
                return vec![None; batch.num_rows()];
            };
            (0..c.len())
                .map(|i| c.is_valid(i).then(|| u128::from_be_bytes(c.value(i).try_into().unwrap_or([0; 16]))))
                .collect()
        }
        By::Url => {
            let Some(c) = batch.column_by_name("url") else {
                return vec![None; batch.num_rows()];
            };
            (0..c.len())
                .map(|i| str_at(c, i).map(|u| xxhash_rust::xxh3::xxh3_128(normalize_url(u, strip_params).as_bytes())))
                .collect()
        }
    }
}

/// A URL as compared by `dedup_url`: scheme and host lowercased, default
/// port, fragment, `strip_params` query parameters and an empty query
/// removed; path and the other parameters (in their order) kept.
pub fn normalize_url(url: &str, strip_params: &[String]) -> String {
    let url = url.trim();
    let url = url.split_once('#').map_or(url, |(u, _)| u);
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let scheme = scheme.to_ascii_lowercase();
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let mut host = authority.to_ascii_lowercase();
    for (s, port) in [("http", ":80"), ("https", ":443")] {
        if scheme == s && host.ends_with(port) {
            host.truncate(host.len() - port.len());
        }
    }
    let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
    let path = if path.is_empty() { "/" } else { path };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let name = p.split_once('=').map_or(*p, |(n, _)| n);
            !strip_params.iter().any(|s| match s.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == s,
            })
        })
        .collect();
    let mut out = format!("{scheme}://{host}{path}");
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    out
}

struct Applier {
    drops: Vec<u64>,
    next: usize,
    row: u64,
    reason: &'static str,
}

impl Transform for Applier {
    fn process(&mut self, batch: RecordBatch) -> Result<Processed> {
        let mut verdicts = Vec::with_capacity(batch.num_rows());
        for _ in 0..batch.num_rows() {
            let dropped = self.drops.get(self.next) == Some(&self.row);
            if dropped {
                self.next += 1;
            }
            verdicts.push(dropped.then_some(Cow::Borrowed(self.reason)));
            self.row += 1;
        }
        Ok(Processed::Filtered { batch, verdicts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{FixedSizeBinaryArray, StringArray};
    use arrow::datatypes::Schema;
    use smelt_engine::stage::doc;

    fn batch(hashes: &[u8], urls: &[&str]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![doc::url(), doc::content_hash()]));
        let h: Vec<[u8; 16]> = hashes.iter().map(|&b| [b; 16]).collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(urls.to_vec())),
                Arc::new(FixedSizeBinaryArray::try_from_iter(h.iter()).unwrap()),
            ],
        )
        .unwrap()
    }

    fn run(cfg: &StageConfig, splits: &[Vec<RecordBatch>]) -> Vec<Vec<Option<Cow<'static, str>>>> {
        let (out, counts) = crate::dedup::testing::run(cfg, splits);
        assert!(counts.contains_key("duplicates"));
        out.into_iter().map(|rows| rows.into_iter().map(|(_, verdict)| verdict).collect()).collect()
    }

    #[test]
    fn keeps_the_first_copy_across_splits_and_batches() {
        let cfg = configure_exact(serde_json::json!({}), &ConfigureContext::working_dir()).unwrap();
        let d = Some(Cow::Borrowed("duplicate_text"));
        let out = run(
            &cfg,
            &[
                vec![batch(&[1, 2], &["a", "b"]), batch(&[1, 3], &["c", "d"])],
                vec![batch(&[3, 4, 2], &["e", "f", "g"])],
            ],
        );
        assert_eq!(out, vec![vec![None, None, d.clone(), None], vec![d.clone(), None, d]]);
    }

    #[test]
    fn urls_compare_normalised() {
        let strip = default_strip_params();
        assert_eq!(normalize_url("HTTP://Example.COM:80#top", &strip), "http://example.com/");
        assert_eq!(normalize_url("https://x.org/a?utm_source=feed&id=7&fbclid=1", &strip), "https://x.org/a?id=7");
        assert_ne!(normalize_url("https://x.org/A", &strip), normalize_url("https://x.org/a", &strip));
        let cfg = configure_url(serde_json::json!({}), &ConfigureContext::working_dir()).unwrap();
        let d = Some(Cow::Borrowed("duplicate_url"));
        let out = run(
            &cfg,
            &[vec![batch(&[1, 2, 3], &["https://x.org/a?utm_medium=rss", "https://X.org/a", "https://x.org/b"])]],
        );
        assert_eq!(out, vec![vec![None, d, None]]);
    }

    #[test]
    fn keep_newest_needs_fetched_at() {
        let StageConfig::Barrier(b) =
            configure_exact(serde_json::json!({"keep": "newest"}), &ConfigureContext::working_dir()).unwrap()
        else {
            panic!()
        };
        let schema = Arc::new(Schema::new(vec![doc::id(), doc::content_hash()]));
        let e = b.output_schema(&schema).unwrap_err().0;
        assert!(e.contains("fetched_at"), "{e}");
    }

    #[test]
    fn keep_newest_keeps_the_latest_fetch() {
        let schema = Arc::new(Schema::new(vec![doc::content_hash(), doc::fetched_at()]));
        let h: Vec<[u8; 16]> = [7u8, 7, 7, 8].iter().map(|&b| [b; 16]).collect();
        let times = arrow::array::TimestampMicrosecondArray::from(vec![Some(10), Some(30), Some(20), None])
            .with_timezone("UTC");
        let b = RecordBatch::try_new(
            schema,
            vec![Arc::new(FixedSizeBinaryArray::try_from_iter(h.iter()).unwrap()), Arc::new(times)],
        )
        .unwrap();
        let cfg = configure_exact(serde_json::json!({"keep": "newest"}), &ConfigureContext::working_dir()).unwrap();
        let d = Some(Cow::Borrowed("duplicate_text"));
        assert_eq!(run(&cfg, &[vec![b]]), vec![vec![d.clone(), None, d, None]]);
    }

    #[test]
    fn keep_newest_across_splits_prefers_a_dated_copy_to_an_undated_one() {
        // Preferences of both signs (-time, i64::MAX) meet in the merge of the splits.
        let schema = Arc::new(Schema::new(vec![doc::content_hash(), doc::fetched_at()]));
        let split = |time: Option<i64>| {
            let times = arrow::array::TimestampMicrosecondArray::from(vec![time]).with_timezone("UTC");
            RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(FixedSizeBinaryArray::try_from_iter([[7u8; 16]].iter()).unwrap()), Arc::new(times)],
            )
            .unwrap()
        };
        let cfg = configure_exact(serde_json::json!({"keep": "newest"}), &ConfigureContext::working_dir()).unwrap();
        let d = Some(Cow::Borrowed("duplicate_text"));
        assert_eq!(run(&cfg, &[vec![split(None)], vec![split(Some(10))]]), vec![vec![d], vec![None]]);
    }
}
