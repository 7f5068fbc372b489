//! `dedup_minhash` barrier stage: near-duplicate removal with the MinHash
//! signatures, LSH bands and clustering of datatrove 0.10.1
//! (`MinhashDedupSignature` → `Buckets` → `Cluster` → `Filter`), with the
//! defaults FineWeb used: 5-word shingles, 14 bands × 8 rows, seed 1, 64-bit
//! hashes. One document per cluster stays; the kept one gets the cluster's
//! id and size (FineWeb-2 keeps the size to re-upsample).
//!
//! ```text
//! observe, per split:  text ─simplify_text─► words ─5-grams─► xxh64 ─► 112 × min((a·x + b) mod 2^61−1)
//!                      per band: (its 8 values, preference, split·row) ──sort──► observed/<split>.b<band>
//!                      (past the observer's share of the budget: sorted runs, merged at the end)
//! resolve, once:       per band (in parallel): k-way merge of every split's file in datatrove's
//!                      order; neighbours with equal values ──► pairs (previous, current) ──► pairs/<band>.bin
//!                      bands in order ──► union-find over every document (datatrove's union by size)
//!                      ──► resolved/clusters.bin (per clustered row: cluster id, size, dropped)
//! apply, per split:    drop `minhash_duplicate`; kept rows get `dup_cluster`, `dup_cluster_size`
//!                      (and `dup_members` with `explain: true`, docs/adr/0007-dedup-explain.md)
//! ```
//! Compatibility with datatrove: the normalisation (`simplify_text`), the
//! word splitter (spaCy's rules, `filters::words`), the shingle hash
//! (`xxhash.xxh64_intdigest` of the words joined by a space), the
//! permutation parameters (numpy's `RandomState(seed).randint`, replicated
//! below: MT19937 with numpy's masked rejection sampling) and the uint64
//! arithmetic (wrapping, then `% (2^61 − 1)`) are the same, so signatures
//! are bit-identical (tests below). Documents with fewer words than
//! `n_grams` have no shingle and are never duplicates, as in datatrove.
//! The pairs are datatrove's too: `MinhashDedupBuckets` merges each band's
//! sorted (values, file, document) records and pairs each record with the
//! one before it when their values are equal; `MinhashDedupCluster` unions
//! the pairs band after band with union by size (on a tie the first
//! argument's root stays) and keeps each set's root. `keep: datatrove` (the
//! default) keeps that root; that needs the full band values, not a hash of
//! them, as the order of pairs within a band is the order of the values.
//!
//! Memory: an observer holds at most its share of `memory_budget` (80 bytes
//! per row and band); the global step holds one buffered reader per split
//! and band being merged and 8 to 16 bytes per document of the run
//! (union-find arrays); pairs go through disk.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use super::{against, io, Merge};
use arrow::array::{
    Array, ArrayRef, AsArray, Float32Array, ListArray, StringArray, StructArray, UInt32Array, UInt64Array,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;
use regex::Regex;
use serde::{Deserialize, Serialize};
use smelt_engine::str_at;
use smelt_engine::yaml::PathSeg;
use smelt_engine::{
    parse_options, require_column, BarrierConfig, BarrierContext, BarrierObserver, ConfigureContext, DatasetRoots,
    EngineError, OptionError, Processed, Result, SchemaError, StageConfig, Transform,
};
use unicode_normalization::UnicodeNormalization;

use super::minhash_tables::{NONSPACING_MARKS, PUNCTUATION};
use crate::filters::words::{split_into_words, Segmenter};
use crate::filters::{in_ranges, py_isspace, py_strip};

/// The Mersenne prime 2^61 − 1 of datatrove's permutations.
const MERSENNE: u64 = (1 << 61) - 1;

/// Options of `dedup_minhash`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupMinhashConfig {
    /// Number of LSH bands (datatrove `num_buckets`); two documents are candidates when one band matches.
    #[serde(default = "default_buckets")]
    pub buckets: usize,
    /// Hashes per band (datatrove `hashes_per_bucket`); buckets × hashes_per_bucket hashes in all.
    #[serde(default = "default_hashes_per_bucket")]
    pub hashes_per_bucket: usize,
    /// Words per shingle.
    #[serde(default = "default_n_grams")]
    pub n_grams: usize,
    /// Seed of the permutation parameters (numpy `RandomState(seed)`, as datatrove).
    #[serde(default = "default_seed")]
    pub seed: u32,
    /// Which document of a cluster stays: `datatrove` (the root of datatrove's union-find), `first` (input order) or `newest` (latest `fetched_at`).
    #[serde(default = "default_keep")]
    pub keep: MinhashKeep,
    /// Language of the word splitter; an input `language` (or `lang`) column overrides it per row.
    #[serde(default = "default_language")]
    pub language: String,
    /// Keep on each cluster's kept row the other members' ids and estimated Jaccard similarity (`dup_members`), for `smelt dedup explain`.
    #[serde(default)]
    pub explain: bool,
    /// Committed versions (`dataset@3`, `dataset@prod`, `dataset@latest`, or `path/or/url@3`) whose documents count as already kept: a new document near-duplicate to one of them is dropped (`minhash_duplicate_of_earlier`) with its whole cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub against: Vec<String>,
}

fn default_buckets() -> usize {
    14
}
fn default_hashes_per_bucket() -> usize {
    8
}
fn default_n_grams() -> usize {
    5
}
fn default_seed() -> u32 {
    1
}
/// Which document of a near-duplicate cluster stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MinhashKeep {
    /// The one datatrove's `MinhashDedupCluster` keeps: the root of its union-find
    /// (union by size over the candidate pairs, bands in order, each band's pairs
    /// in signature order; ties keep the earlier document's root).
    Datatrove,
    /// The first in (split, row) order: the input order of the run.
    First,
    /// The one with the latest `fetched_at` (ties: the first).
    Newest,
}

fn default_keep() -> MinhashKeep {
    MinhashKeep::Datatrove
}
fn default_language() -> String {
    "en".to_string()
}

/// Registry hook.
///
/// # Errors
/// Unknown or invalid options (zero bands, rows or shingle size; more than 1024 hashes).
pub fn configure(options: serde_json::Value, ctx: &ConfigureContext) -> Result<StageConfig, OptionError> {
    let c: DedupMinhashConfig = parse_options(options)?;
    let bad =
        |key: &str, message: String| OptionError { path: vec![PathSeg::Key(key.to_string())], message, at_key: false };
    for (key, v) in [("buckets", c.buckets), ("hashes_per_bucket", c.hashes_per_bucket), ("n_grams", c.n_grams)] {
        if v == 0 {
            return Err(bad(key, format!("`{key}` must be at least 1")));
        }
    }
    if c.buckets * c.hashes_per_bucket > 1024 {
        return Err(bad(
            "buckets",
            format!("buckets × hashes_per_bucket = {} is more than 1024", c.buckets * c.hashes_per_bucket),
        ));
    }
    if c.n_grams > 64 {
        return Err(bad("n_grams", "`n_grams` must be at most 64".to_string()));
    }
    for (i, spec) in c.against.iter().enumerate() {
        if let Err(e) = spec.parse::<smelt_catalog::VersionRef>() {
            return Err(OptionError {
                path: vec![PathSeg::Key("against".to_string()), PathSeg::Index(i)],
                message: e.to_string(),
                at_key: false,
            });
        }
    }
    Ok(StageConfig::Barrier(Arc::new(DedupMinhash {
        signer: Arc::new(Signer::new(&c)),
        resolved: serde_json::to_value(&c).unwrap_or_default(),
        config: c,
        datasets: ctx.datasets.clone(),
    })))
}

// ---------------------------------------------------------------- signatures

/// numpy's legacy `RandomState` generator (MT19937), enough of it for
/// `randint(low, high, dtype=np.uint64)`.
struct Mt19937 {
    state: [u32; 624],
    pos: usize,
}

impl Mt19937 {
    /// `RandomState(seed)` for an integer seed (`mt19937_seed`).
    fn new(seed: u32) -> Self {
        let mut state = [0u32; 624];
        let mut s = seed;
        for (i, slot) in state.iter_mut().enumerate() {
            *slot = s;
            s = 1_812_433_253u32.wrapping_mul(s ^ (s >> 30)).wrapping_add(i as u32 + 1);
        }
        Mt19937 { state, pos: 624 }
    }

    fn next_u32(&mut self) -> u32 {
        if self.pos == 624 {
            for i in 0..624 {
                let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % 624] & 0x7fff_ffff);
                let mut v = self.state[(i + 397) % 624] ^ (y >> 1);
                if y & 1 == 1 {
                    v ^= 0x9908_b0df;
                }
                self.state[i] = v;
            }
            self.pos = 0;
        }
        let mut y = self.state[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// numpy's `randint(low, high, dtype=np.uint64)` for one value with
    /// `high - low > 2^32` (masked rejection over 64-bit draws).
    fn randint_u64(&mut self, low: u64, high: u64) -> u64 {
        let rng = high - 1 - low;
        let mask = u64::MAX >> rng.leading_zeros();
        loop {
            let v = ((u64::from(self.next_u32()) << 32) | u64::from(self.next_u32())) & mask;
            if v <= rng {
                return low + v;
            }
        }
    }
}

/// `x mod (2^61 − 1)` for any u64.
#[inline]
fn mod_mersenne(x: u64) -> u64 {
    let r = (x & MERSENNE) + (x >> 61);
    if r >= MERSENNE {
        r - MERSENNE
    } else {
        r
    }
}

/// Whether `c` is in datatrove's `PUNCTUATION`.
fn is_punctuation(c: char) -> bool {
    if c.is_ascii() {
        !(c.is_ascii_alphanumeric() || c == ' ' || c == '\t' || c == '\n')
    } else {
        in_ranges(PUNCTUATION, c)
    }
}

fn numbers() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"\p{Nd}+([.,،٫⎖⎗⎘]\p{Nd}+)?").expect("valid regex"))
}

/// datatrove's `simplify_text` with its default `TextNormConfig`: lowercase,
/// numbers (any script, with one decimal part) to `0`, punctuation to
/// spaces, whitespace runs to one space, trimmed, diacritics (category `Mn`
/// after NFD) removed.
pub fn simplify_text(text: &str, out: &mut String) {
    out.clear();
    let lower: Cow<'_, str> =
        if text.is_ascii() { Cow::Owned(text.to_ascii_lowercase()) } else { Cow::Owned(text.to_lowercase()) };
    let numbered = numbers().replace_all(&lower, "0");
    let mut pending_space = false;
    for c in numbered.chars() {
        let c = if is_punctuation(c) { ' ' } else { c };
        if py_isspace(c) {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(c);
    }
    if !out.is_ascii() {
        let stripped: String = out.nfd().filter(|&c| !in_ranges(NONSPACING_MARKS, c)).collect();
        out.clear();
        out.push_str(py_strip(&stripped));
    }
}

/// Computes datatrove-identical MinHash signatures.
#[derive(Debug)]
pub struct Signer {
    a: Vec<u64>,
    b: Vec<u64>,
    n_grams: usize,
}

/// Reusable buffers of [`Signer::signature`].
#[derive(Default)]
pub struct Scratch {
    simplified: String,
    shingle: String,
    hashes: Vec<u64>,
}

impl Signer {
    /// The permutation parameters of datatrove's `MinhashDedupSignature.parameters`.
    pub fn new(c: &DedupMinhashConfig) -> Self {
        let n = c.buckets * c.hashes_per_bucket;
        let mut gen = Mt19937::new(c.seed);
        let a = (0..n).map(|_| gen.randint_u64(1, MERSENNE)).collect();
        let b = (0..n).map(|_| gen.randint_u64(0, MERSENNE)).collect();
        Signer { a, b, n_grams: c.n_grams }
    }

    /// The shingle hashes of `text` (datatrove's `get_shingles`), in order.
    pub fn shingles(&self, text: &str, segmenter: Segmenter, scratch: &mut Scratch) -> Vec<u64> {
        let mut out = Vec::new();
        self.shingles_into(text, segmenter, scratch, &mut out);
        out
    }

    fn shingles_into(&self, text: &str, segmenter: Segmenter, scratch: &mut Scratch, out: &mut Vec<u64>) {
        out.clear();
        simplify_text(text, &mut scratch.simplified);
        let mut words = Vec::new();
        split_into_words(&scratch.simplified, segmenter, &mut words);
        if words.len() < self.n_grams {
            return;
        }
        for gram in words.windows(self.n_grams) {
            scratch.shingle.clear();
            for (i, w) in gram.iter().enumerate() {
                if i > 0 {
                    scratch.shingle.push(' ');
                }
                scratch.shingle.push_str(w);
            }
            out.push(xxhash_rust::xxh64::xxh64(scratch.shingle.as_bytes(), 0));
        }
    }

    /// The signature of `text` into `sig` (all hashes, band after band), or
    /// false when it has no shingle (fewer words than `n_grams`).
    pub fn signature(&self, text: &str, segmenter: Segmenter, scratch: &mut Scratch, sig: &mut Vec<u64>) -> bool {
        let mut hashes = std::mem::take(&mut scratch.hashes);
        self.shingles_into(text, segmenter, scratch, &mut hashes);
        sig.clear();
        sig.resize(self.a.len(), u64::MAX);
        for &x in &hashes {
            for ((s, &a), &b) in sig.iter_mut().zip(&self.a).zip(&self.b) {
                // numpy uint64 arithmetic wraps before the modulo.
                let v = mod_mersenne(x.wrapping_mul(a).wrapping_add(b));
                if v < *s {
                    *s = v;
                }
            }
        }
        let any = !hashes.is_empty();
        scratch.hashes = hashes;
        any
    }
}

// ---------------------------------------------------------------- the stage

#[derive(Debug)]
struct DedupMinhash {
    config: DedupMinhashConfig,
    signer: Arc<Signer>,
    resolved: serde_json::Value,
    /// Where `against:` finds named datasets.
    datasets: DatasetRoots,
}

fn le_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b.try_into().expect("8 bytes"))
}
pub(crate) fn be_u64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b.try_into().expect("8 bytes"))
}
fn le_i64(b: &[u8]) -> i64 {
    i64::from_le_bytes(b.try_into().expect("8 bytes"))
}
fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b.try_into().expect("4 bytes"))
}

fn band_path(dir: &Path, split: u32, band: usize) -> PathBuf {
    dir.join(format!("{split:06}.b{band:03}"))
}

/// A sorted run an observer spilled before its split ended.
fn run_path(dir: &Path, split: u32, band: usize, run: u32) -> PathBuf {
    dir.join(format!("{split:06}.b{band:03}.r{run:05}"))
}

fn stats_path(dir: &Path, split: u32) -> PathBuf {
    dir.join(format!("{split:06}.stats"))
}

/// `path` with `.tmp` appended (written, then renamed into place).
fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// A document across the run: split in the top 24 bits, row in the low 40.
fn node(split: u32, row: u64) -> Result<u64> {
    if split >= 1 << 24 || row >= 1 << 40 {
        return Err(EngineError::User(format!(
            "dedup_minhash handles up to 2^24 splits of 2^40 rows (split {split}, row {row})"
        )));
    }
    Ok((u64::from(split) << 40) | row)
}

fn language_column(schema: &Schema) -> Option<&'static str> {
    ["language", "lang"].into_iter().find(|n| schema.field_with_name(n).is_ok())
}

/// A preference as a u64 that sorts as the i64 does (smaller stays).
fn pref_key(pref: i64) -> u64 {
    (pref as u64) ^ (1 << 63)
}

fn pref_of(key: u64) -> i64 {
    (key ^ (1 << 63)) as i64
}

// Band records. One record per document and band: the band's
// `hashes_per_bucket` values, the preference key, the node; `width` u64 in
// all, stored big-endian (80 bytes for 8 rows), so records compare as bytes
// as they do as u64 sequences: a sorted band is in datatrove's order: the values compared
// as tuples, then (with equal preferences, as in `datatrove` and `first`)
// split and row, datatrove's (file, document).

/// Sorts the records of `buf` (each `width` u64) and writes them to `path`
/// (a temporary file renamed into place).
fn write_sorted(buf: &[u64], width: usize, path: &Path) -> Result<()> {
    let n = buf.len() / width;
    let rec = |i: u32| &buf[i as usize * width..(i as usize + 1) * width];
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.sort_unstable_by(|&a, &b| rec(a).cmp(rec(b)));
    let tmp = tmp_path(path);
    let mut w = BufWriter::with_capacity(1 << 16, File::create(&tmp).map_err(|e| io(&tmp, e))?);
    for &i in &order {
        write_record(&mut w, rec(i)).map_err(|e| io(&tmp, e))?;
    }
    w.flush().map_err(|e| io(&tmp, e))?;
    drop(w);
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))
}

fn write_record(w: &mut impl Write, rec: &[u64]) -> std::io::Result<()> {
    let mut bytes = [0u8; 8 * 64];
    let mut at = 0;
    for chunk in rec.chunks(64) {
        for (j, v) in chunk.iter().enumerate() {
            bytes[j * 8..j * 8 + 8].copy_from_slice(&v.to_be_bytes());
        }
        w.write_all(&bytes[..chunk.len() * 8])?;
        at += chunk.len();
    }
    debug_assert_eq!(at, rec.len());
    Ok(())
}

/// Per split of the run, in order: (split, documents, dense index of its first row).
type Layout = Vec<(u32, u64, u64)>;

/// The dense index of a node: documents numbered across the run's splits in order.
fn dense(layout: &Layout, node: u64) -> Result<u64> {
    let (split, row) = ((node >> 40) as u32, node & ((1 << 40) - 1));
    match layout.binary_search_by_key(&split, |l| l.0) {
        Ok(i) if row < layout[i].1 => Ok(layout[i].2 + row),
        _ => {
            Err(EngineError::Internal(format!("dedup_minhash: split {split} row {row} is not in the observed splits")))
        }
    }
}

impl BarrierConfig for DedupMinhash {
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, SchemaError> {
        require_column(input, "text", &[DataType::LargeUtf8, DataType::Utf8])?;
        if let Some(l) = language_column(input) {
            require_column(input, l, &[DataType::Utf8, DataType::LargeUtf8])?;
        }
        if self.config.keep == MinhashKeep::Newest {
            require_column(
                input,
                "fetched_at",
                &[
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    DataType::Timestamp(TimeUnit::Microsecond, None),
                ],
            )?;
        }
        let mut fields: Vec<Field> = input
            .fields()
            .iter()
            .filter(|f| !OUTPUT_COLUMNS.contains(&f.name().as_str()))
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("dup_cluster", DataType::UInt64, true));
        fields.push(Field::new("dup_cluster_size", DataType::UInt32, false));
        if self.config.explain {
            fields.push(Field::new("dup_members", members_type(), true));
        }
        Ok(Arc::new(Schema::new_with_metadata(fields, input.metadata().clone())))
    }

    fn resolved(&self) -> serde_json::Value {
        self.resolved.clone()
    }

    fn observer(&self, _input: &SchemaRef, ctx: &BarrierContext, split: u32) -> Result<Box<dyn BarrierObserver>> {
        let width = self.config.hashes_per_bucket + 2;
        let bands = self.config.buckets;
        let per_band = (ctx.observer_share() / 8 / bands / width).max(16) * width;
        Ok(Box::new(Observer {
            signer: self.signer.clone(),
            width,
            keep: self.config.keep,
            default_segmenter: Segmenter::for_language(&self.config.language),
            dir: ctx.observed_dir.clone(),
            split,
            bands: (0..bands).map(|_| Vec::with_capacity(per_band)).collect(),
            per_band,
            runs: 0,
            scratch: Scratch::default(),
            sig: Vec::new(),
            row: 0,
            without_shingles: 0,
            ids: if self.config.explain {
                let path = ids_path(&ctx.observed_dir, split);
                Some(BufWriter::new(File::create(&path).map_err(|e| io(&path, e))?))
            } else {
                None
            },
        }))
    }

    fn resolve(&self, ctx: &BarrierContext, splits: &[u32]) -> Result<BTreeMap<String, u64>> {
        let mut sorted = splits.to_vec();
        sorted.sort_unstable();
        let mut layout: Layout = Vec::with_capacity(sorted.len());
        let (mut documents, mut without) = (0u64, 0u64);
        for &split in &sorted {
            let path = stats_path(&ctx.observed_dir, split);
            let b = std::fs::read(&path).map_err(|e| io(&path, e))?;
            if b.len() != 16 {
                return Err(EngineError::External(format!("{}: truncated", path.display())));
            }
            layout.push((split, le_u64(&b[..8]), documents));
            documents += le_u64(&b[..8]);
            without += le_u64(&b[8..]);
        }
        if documents >= u64::from(u32::MAX) {
            return Err(EngineError::User(format!(
                "dedup_minhash clusters up to 2^32 - 1 documents in one run ({documents} given)"
            )));
        }
        let pairs_dir = ctx.resolved_dir.join("pairs");
        std::fs::create_dir_all(&pairs_dir).map_err(|e| io(&pairs_dir, e))?;
        let bands = self.config.buckets;
        let width = self.config.hashes_per_bucket + 2;
        // Bands merge independently: one thread per band, up to `parallelism`.
        let next = AtomicUsize::new(0);
        let threads = ctx.parallelism.clamp(1, bands);
        let results: Vec<Result<u64>> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| -> Result<u64> {
                        let mut pairs = 0;
                        loop {
                            let band = next.fetch_add(1, Ordering::Relaxed);
                            if band >= bands {
                                return Ok(pairs);
                            }
                            pairs += merge_band(
                                &ctx.observed_dir,
                                &layout,
                                band,
                                width,
                                &pairs_dir.join(format!("{band:03}.bin")),
                            )?;
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_else(|_| Err(EngineError::External("a band merge panicked".into()))))
                .collect()
        });
        let mut pairs = 0;
        for r in results {
            pairs += r?;
        }
        let mut uf = Clusters::new(documents as usize, self.config.keep);
        if !self.config.against.is_empty() {
            uf = uf.with_sentinel();
        }
        if uf.bytes() > ctx.memory_budget {
            tracing::warn!(
                "dedup_minhash: clustering {documents} documents needs about {} MiB, over the memory budget of {} MiB",
                uf.bytes() >> 20,
                ctx.memory_budget >> 20
            );
        }
        // datatrove's MinhashDedupCluster reads the bands' pair files in band
        // order, each in its merge order: the same unions in the same order.
        for band in 0..bands {
            let path = pairs_dir.join(format!("{band:03}.bin"));
            let mut r = BufReader::with_capacity(1 << 16, File::open(&path).map_err(|e| io(&path, e))?);
            let mut b = [0u8; 32];
            loop {
                match r.read_exact(&mut b) {
                    Ok(()) => uf.union(
                        (le_u64(&b[..8]) as u32, le_i64(&b[8..16])),
                        (le_u64(&b[16..24]) as u32, le_i64(&b[24..])),
                    ),
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(io(&path, e)),
                }
            }
        }
        std::fs::remove_dir_all(&pairs_dir).map_err(|e| io(&pairs_dir, e))?;
        let mut per_earlier = BTreeMap::new();
        if !self.config.against.is_empty() {
            per_earlier = self.match_earlier(ctx, &layout, documents, &mut uf)?;
        }
        let w = write_clusters(&ctx.resolved_dir, &mut uf, &layout)?;
        let (clustered, clusters, dropped) = (w.clustered, w.clusters, w.dropped);
        if self.config.explain {
            write_members(ctx, &mut uf, &w, &layout, self.signer.a.len())?;
        }
        Ok(BTreeMap::from([
            ("documents".to_string(), documents),
            ("without_shingles".to_string(), without),
            ("candidate_pairs".to_string(), pairs),
            ("in_clusters".to_string(), clustered),
            ("clusters".to_string(), clusters),
            ("duplicates".to_string(), dropped),
        ])
        .into_iter()
        .chain((!self.config.against.is_empty()).then(|| ("duplicates_of_earlier".to_string(), w.earlier)))
        .chain(per_earlier)
        .collect())
    }

    fn applier(&self, input: &SchemaRef, ctx: &BarrierContext, split: u32) -> Result<Box<dyn Transform>> {
        let schema = self.output_schema(input).map_err(|e| EngineError::User(e.0))?;
        Ok(Box::new(Applier {
            members: if self.config.explain { read_members(&ctx.resolved_dir, split)? } else { Vec::new() },
            explain: self.config.explain,
            marks: read_marks(&ctx.resolved_dir, split)?,
            next: 0,
            row: 0,
            schema,
        }))
    }
}

impl DedupMinhash {
    /// `against`: opens the earlier versions (building their indexes when
    /// missing), marks the run's documents that share a band with one of
    /// them and joins those to the earlier versions' set. Returns per
    /// version (`against:<dataset@v>`) the documents that matched it first.
    fn match_earlier(
        &self,
        ctx: &BarrierContext,
        layout: &Layout,
        documents: u64,
        uf: &mut Clusters,
    ) -> Result<BTreeMap<String, u64>> {
        let tmp = ctx.resolved_dir.join("index-build");
        let earlier = block_on(async {
            let mut out = Vec::new();
            for spec in &self.config.against {
                let e = against::open_version(&self.datasets, spec).await?;
                let (info, built) = against::ensure_index(&e, &self.config, &self.signer, &tmp).await?;
                tracing::info!(
                    "dedup_minhash: against {} ({} indexed documents{})",
                    e.name,
                    info.documents - info.without_shingles,
                    if built { ", index built now" } else { "" }
                );
                out.push(e);
            }
            Ok::<_, EngineError>(out)
        })?;
        let _ = std::fs::remove_dir_all(&tmp);
        let width = self.config.hashes_per_bucket + 2;
        let mut m = against::Matches { matched: vec![u32::MAX; documents as usize] };
        for band in 0..self.config.buckets {
            let paths: Vec<PathBuf> = layout.iter().map(|l| band_path(&ctx.observed_dir, l.0, band)).collect();
            let run = against::run_band(&paths, width, |n| dense(layout, n))?;
            block_on(against::match_band(&earlier, &self.config, band, &run, &mut m))?;
        }
        let mut counts: BTreeMap<String, u64> = earlier.iter().map(|e| (format!("against:{}", e.name), 0)).collect();
        for (d, &k) in m.matched.iter().enumerate() {
            if k != u32::MAX {
                uf.join_earlier(d as u32);
                *counts.get_mut(&format!("against:{}", earlier[k as usize].name)).expect("listed") += 1;
            }
        }
        Ok(counts)
    }
}

/// Runs `f` to completion from a blocking thread (the engine calls `resolve`
/// off the I/O threads) or, outside a runtime (tests), on a new one.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        Ok(h) => h.block_on(f),
        Err(_) => {
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime").block_on(f)
        }
    }
}

/// Merges band `band` of every split in datatrove's order and writes a pair
/// per two neighbours with equal values (datatrove's `MinhashDedupBuckets`:
/// (previous, current), so a key shared by a, b, c gives a~b, b~c) to `out`:
/// (dense index u64, preference i64) twice, 32 bytes. Returns the number of pairs.
fn merge_band(dir: &Path, layout: &Layout, band: usize, width: usize, out: &Path) -> Result<u64> {
    let paths = layout.iter().map(|l| band_path(dir, l.0, band)).zip(0..);
    let mut merge = Merge::open(paths, width * 8, width * 8)?;
    let values = (width - 2) * 8;
    let (pref, node) = (|r: &[u8]| pref_of(be_u64(&r[values..values + 8])), |r: &[u8]| be_u64(&r[values + 8..]));
    let mut w = BufWriter::with_capacity(1 << 16, File::create(out).map_err(|e| io(out, e))?);
    let mut prev: Vec<u8> = Vec::with_capacity(width * 8);
    let mut pairs = 0;
    while let Some((cur, _)) = merge.peek() {
        if !prev.is_empty() && prev[..values] == cur[..values] {
            let mut rec = [0u8; 32];
            rec[..8].copy_from_slice(&dense(layout, node(&prev))?.to_le_bytes());
            rec[8..16].copy_from_slice(&pref(&prev).to_le_bytes());
            rec[16..24].copy_from_slice(&dense(layout, node(cur))?.to_le_bytes());
            rec[24..].copy_from_slice(&pref(cur).to_le_bytes());
            w.write_all(&rec).map_err(|e| io(out, e))?;
            pairs += 1;
        }
        prev.clear();
        prev.extend_from_slice(cur);
        merge.pop()?;
    }
    w.flush().map_err(|e| io(out, e))?;
    Ok(pairs)
}

/// Union-find over every document of the run by dense index, as datatrove's
/// `MinhashDedupCluster`: union by size, the first argument's root winning
/// ties; path halving (roots are the same as with datatrove's path
/// compression). 4 + 4 bytes per document, 8 more with `keep: newest`.
struct Clusters {
    parent: Vec<u32>,
    size: Vec<u32>,
    keep: MinhashKeep,
    /// Preference per document (`newest` only).
    pref: Vec<i64>,
    /// With `against`: the last node stands for the earlier versions; a set
    /// joined to it keeps no member of the run.
    sentinel: Option<u32>,
}

impl Clusters {
    fn new(n: usize, keep: MinhashKeep) -> Self {
        Clusters {
            parent: (0..n as u32).collect(),
            size: vec![1; n],
            keep,
            pref: if keep == MinhashKeep::Newest { vec![i64::MAX; n] } else { Vec::new() },
            sentinel: None,
        }
    }

    /// Adds the node that stands for earlier versions (after the documents).
    fn with_sentinel(mut self) -> Self {
        let s = self.parent.len() as u32;
        self.parent.push(s);
        self.size.push(1);
        if !self.pref.is_empty() {
            self.pref.push(i64::MAX);
        }
        self.sentinel = Some(s);
        self
    }

    /// Joins `x`'s set to the earlier versions' (after every pair's union, so
    /// the clusters within the run are datatrove's).
    fn join_earlier(&mut self, x: u32) {
        let s = self.sentinel.expect("with_sentinel");
        let (rs, rx) = (self.find(s), self.find(x));
        if rs != rx {
            self.parent[rx as usize] = rs;
            self.size[rs as usize] += self.size[rx as usize];
        }
    }

    /// Whether root `r` is the earlier versions' set.
    fn is_earlier(&self, r: u32) -> bool {
        self.sentinel == Some(r)
    }

    fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let p = self.parent[x as usize];
            self.parent[x as usize] = self.parent[p as usize];
            x = p;
        }
        x
    }

    fn union(&mut self, (a, pa): (u32, i64), (b, pb): (u32, i64)) {
        if !self.pref.is_empty() {
            self.pref[a as usize] = pa;
            self.pref[b as usize] = pb;
        }
        let (mut ra, mut rb) = (self.find(a), self.find(b));
        if ra == rb {
            return;
        }
        if self.size[ra as usize] < self.size[rb as usize] {
            std::mem::swap(&mut ra, &mut rb);
        }
        self.parent[rb as usize] = ra;
        self.size[ra as usize] += self.size[rb as usize];
    }

    /// Memory held while clustering (with the two arrays `write_clusters` adds), in bytes.
    fn bytes(&self) -> usize {
        self.parent.len() * 16 + self.pref.len() * 8
    }

    /// The kept member of every cluster, by root (`u32::MAX` elsewhere).
    fn kept(&mut self) -> Vec<u32> {
        let n = self.parent.len() as u32;
        let mut kept = vec![u32::MAX; n as usize];
        for x in 0..n {
            let r = self.find(x);
            if self.size[r as usize] < 2 {
                continue;
            }
            if self.is_earlier(r) {
                // The earlier copy is the kept one: no member of the run stays.
                kept[r as usize] = r;
                continue;
            }
            let k = &mut kept[r as usize];
            match self.keep {
                // datatrove keeps the root of its union-find.
                MinhashKeep::Datatrove => *k = r,
                MinhashKeep::First => {
                    if *k == u32::MAX {
                        *k = x;
                    }
                }
                MinhashKeep::Newest => {
                    if *k == u32::MAX || (self.pref[x as usize], x) < (self.pref[*k as usize], *k) {
                        *k = x;
                    }
                }
            }
        }
        kept
    }
}

/// `clusters.bin`: per clustered document, sorted by node: node u64, cluster
/// u64, size u32, dropped u32 (little-endian, 24 bytes); `clusters.idx`: per
/// split with such documents, (split u32, first record u64, count u64).
/// Cluster ids number the clusters by their kept document, in input order.
fn write_clusters(dir: &Path, uf: &mut Clusters, layout: &Layout) -> Result<Written> {
    let kept = uf.kept();
    let n = uf.parent.len() as u32;
    let mut cluster = vec![u32::MAX; n as usize];
    let mut clusters = 0u32;
    for x in 0..n {
        let r = uf.find(x);
        if kept[r as usize] == x && !uf.is_earlier(r) {
            cluster[r as usize] = clusters;
            clusters += 1;
        }
    }
    let bin = dir.join("clusters.bin");
    let idx = dir.join("clusters.idx");
    let mut b = BufWriter::new(File::create(&bin).map_err(|e| io(&bin, e))?);
    let mut x_w = BufWriter::new(File::create(&idx).map_err(|e| io(&idx, e))?);
    let (mut written, mut dropped, mut earlier) = (0u64, 0u64, 0u64);
    for &(split, docs, first) in layout {
        let start = written;
        for row in 0..docs {
            let x = (first + row) as u32;
            let r = uf.find(x);
            let size = uf.size[r as usize];
            if size < 2 {
                continue;
            }
            let drop = kept[r as usize] != x;
            let of_earlier = uf.is_earlier(r);
            dropped += u64::from(drop);
            earlier += u64::from(of_earlier);
            let mut rec = [0u8; 24];
            rec[..8].copy_from_slice(&node(split, row)?.to_le_bytes());
            rec[8..16].copy_from_slice(&u64::from(cluster[r as usize]).to_le_bytes());
            rec[16..20].copy_from_slice(&size.to_le_bytes());
            // 0 kept, 1 dropped, 2 dropped as a duplicate of an earlier version.
            rec[20..].copy_from_slice(&(u32::from(drop) + u32::from(of_earlier)).to_le_bytes());
            b.write_all(&rec).map_err(|e| io(&bin, e))?;
            written += 1;
        }
        if written > start {
            let mut e = [0u8; 20];
            e[..4].copy_from_slice(&split.to_le_bytes());
            e[4..12].copy_from_slice(&start.to_le_bytes());
            e[12..].copy_from_slice(&(written - start).to_le_bytes());
            x_w.write_all(&e).map_err(|e| io(&idx, e))?;
        }
    }
    b.flush().map_err(|e| io(&bin, e))?;
    x_w.flush().map_err(|e| io(&idx, e))?;
    Ok(Written { clustered: written, clusters: u64::from(clusters), dropped, earlier, kept, cluster })
}

/// What [`write_clusters`] found.
struct Written {
    /// Documents in clusters.
    clustered: u64,
    /// Clusters.
    clusters: u64,
    /// Documents dropped.
    dropped: u64,
    /// Of them, near-duplicates of earlier versions (`against`).
    earlier: u64,
    /// Kept member per root (dense index).
    kept: Vec<u32>,
    /// Cluster number per root.
    cluster: Vec<u32>,
}

/// What happens to a clustered row of a split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mark {
    row: u64,
    cluster: u64,
    size: u32,
    /// 0 kept, 1 dropped, 2 dropped as a near-duplicate of an earlier version.
    dropped: u32,
}

fn read_marks(dir: &Path, split: u32) -> Result<Vec<Mark>> {
    let idx = dir.join("clusters.idx");
    let bytes = std::fs::read(&idx).map_err(|e| io(&idx, e))?;
    let Some(entry) = bytes.chunks_exact(20).find(|c| le_u32(&c[..4]) == split) else {
        return Ok(Vec::new());
    };
    let (start, n) = (le_u64(&entry[4..12]), le_u64(&entry[12..]));
    let bin = dir.join("clusters.bin");
    let mut f = File::open(&bin).map_err(|e| io(&bin, e))?;
    f.seek(SeekFrom::Start(start * 24)).map_err(|e| io(&bin, e))?;
    let mut buf = vec![0u8; n as usize * 24];
    f.read_exact(&mut buf).map_err(|e| io(&bin, e))?;
    Ok(buf
        .chunks_exact(24)
        .map(|c| Mark {
            row: le_u64(&c[..8]) & ((1 << 40) - 1),
            cluster: le_u64(&c[8..16]),
            size: le_u32(&c[16..20]),
            dropped: le_u32(&c[20..]),
        })
        .collect())
}

struct Observer {
    signer: Arc<Signer>,
    /// u64 per band record.
    width: usize,
    keep: MinhashKeep,
    default_segmenter: Segmenter,
    dir: PathBuf,
    split: u32,
    /// Records per band not yet written, each buffer allocated once.
    bands: Vec<Vec<u64>>,
    /// u64 a band buffer holds before the observer spills a sorted run.
    per_band: usize,
    /// Sorted runs spilled so far.
    runs: u32,
    scratch: Scratch,
    sig: Vec<u64>,
    row: u64,
    without_shingles: u64,
    /// With `explain`: (row, 16-bit fingerprints of the hashes, id) per row with a signature.
    ids: Option<BufWriter<File>>,
}

impl Observer {
    /// Writes every band's buffer as a sorted run.
    fn spill(&mut self) -> Result<()> {
        for (band, buf) in self.bands.iter_mut().enumerate() {
            write_sorted(buf, self.width, &run_path(&self.dir, self.split, band, self.runs))?;
            buf.clear();
        }
        self.runs += 1;
        Ok(())
    }
}

impl BarrierObserver for Observer {
    fn observe(&mut self, batch: &RecordBatch) -> Result<()> {
        let text = batch
            .column_by_name("text")
            .ok_or_else(|| EngineError::User("dedup_minhash needs a `text` column".into()))?;
        let language = language_column(batch.schema().as_ref()).and_then(|l| batch.column_by_name(l));
        let fetched = batch.column_by_name("fetched_at");
        let id_col = batch.column_by_name("id");
        let rows_per_band = self.width - 2;
        for i in 0..batch.num_rows() {
            let row = self.row + i as u64;
            let segmenter = language.and_then(|l| str_at(l, i)).map_or(self.default_segmenter, Segmenter::for_language);
            let t = str_at(text, i).unwrap_or("");
            if !self.signer.signature(t, segmenter, &mut self.scratch, &mut self.sig) {
                self.without_shingles += 1;
                continue;
            }
            let pref = match (self.keep, fetched) {
                (MinhashKeep::Newest, Some(c)) if c.is_valid(i) => {
                    -c.as_primitive::<TimestampMicrosecondType>().value(i)
                }
                (MinhashKeep::Newest, _) => i64::MAX,
                _ => 0,
            };
            if self.bands[0].len() + self.width > self.per_band {
                self.spill()?;
            }
            if let Some(w) = &mut self.ids {
                let id = id_col.and_then(|c| str_at(c, i)).unwrap_or("");
                write_member(w, row, &self.sig, id).map_err(|e| io(&ids_path(&self.dir, self.split), e))?;
            }
            let n = node(self.split, row)?;
            for (band, values) in self.bands.iter_mut().zip(self.sig.chunks_exact(rows_per_band)) {
                band.extend_from_slice(values);
                band.push(pref_key(pref));
                band.push(n);
            }
        }
        self.row += batch.num_rows() as u64;
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if self.runs == 0 {
            for (band, buf) in self.bands.iter().enumerate() {
                write_sorted(buf, self.width, &band_path(&self.dir, self.split, band))?;
            }
        } else {
            if !self.bands[0].is_empty() {
                self.spill()?;
            }
            self.bands = Vec::new();
            for band in 0..self.signer.a.len() / (self.width - 2) {
                let runs: Vec<PathBuf> = (0..self.runs).map(|r| run_path(&self.dir, self.split, band, r)).collect();
                let path = band_path(&self.dir, self.split, band);
                let tmp = tmp_path(&path);
                let width = self.width * 8;
                let mut merge = Merge::open(runs.iter().cloned().zip(0..), width, width)?;
                let mut w = BufWriter::with_capacity(1 << 16, File::create(&tmp).map_err(|e| io(&tmp, e))?);
                while let Some((rec, _)) = merge.peek() {
                    w.write_all(rec).map_err(|e| io(&tmp, e))?;
                    merge.pop()?;
                }
                w.flush().map_err(|e| io(&tmp, e))?;
                drop(w);
                std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
                for r in &runs {
                    std::fs::remove_file(r).map_err(|e| io(r, e))?;
                }
            }
        }
        self.bands = Vec::new();
        if let Some(mut w) = self.ids.take() {
            let path = ids_path(&self.dir, self.split);
            w.flush().map_err(|e| io(&path, e))?;
        }
        let path = stats_path(&self.dir, self.split);
        let mut b = self.row.to_le_bytes().to_vec();
        b.extend_from_slice(&self.without_shingles.to_le_bytes());
        std::fs::write(&path, b).map_err(|e| io(&path, e))
    }
}

struct Applier {
    explain: bool,
    /// With `explain`: per kept row of a cluster, in row order, the other members.
    members: Members,
    marks: Vec<Mark>,
    next: usize,
    row: u64,
    schema: SchemaRef,
}

impl Transform for Applier {
    fn process(&mut self, batch: RecordBatch) -> Result<Processed> {
        let n = batch.num_rows();
        let mut verdicts = Vec::with_capacity(n);
        let mut cluster = Vec::with_capacity(n);
        let mut size = Vec::with_capacity(n);
        for _ in 0..n {
            match self.marks.get(self.next) {
                Some(m) if m.row == self.row => {
                    self.next += 1;
                    verdicts.push(match m.dropped {
                        0 => None,
                        1 => Some(Cow::Borrowed("minhash_duplicate")),
                        _ => Some(Cow::Borrowed("minhash_duplicate_of_earlier")),
                    });
                    cluster.push(Some(m.cluster));
                    size.push(m.size);
                }
                _ => {
                    verdicts.push(None);
                    cluster.push(None);
                    size.push(1);
                }
            }
            self.row += 1;
        }
        let input = batch.schema();
        let mut columns: Vec<ArrayRef> = input
            .fields()
            .iter()
            .zip(batch.columns())
            .filter(|(f, _)| !OUTPUT_COLUMNS.contains(&f.name().as_str()))
            .map(|(_, c)| c.clone())
            .collect();
        columns.push(Arc::new(UInt64Array::from(cluster)));
        columns.push(Arc::new(UInt32Array::from(size)));
        if self.explain {
            columns.push(self.members_column(self.row - n as u64, n));
        }
        let batch = RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| EngineError::Internal(format!("dedup_minhash output batch: {e}")))?;
        Ok(Processed::Filtered { batch, verdicts })
    }
}

impl Applier {
    /// `dup_members` for rows `first..first + n` of the split.
    fn members_column(&self, first: u64, n: usize) -> ArrayRef {
        let start = self.members.partition_point(|m| m.0 < first);
        let mut offsets = vec![0i32];
        let mut valid = Vec::with_capacity(n);
        let (mut ids, mut sims) = (Vec::new(), Vec::new());
        let mut next = self.members[start..].iter().peekable();
        for row in first..first + n as u64 {
            match next.next_if(|m| m.0 == row) {
                Some((_, list)) => {
                    for (id, sim) in list {
                        ids.push(id.as_str());
                        sims.push(*sim);
                    }
                    valid.push(true);
                }
                None => valid.push(false),
            }
            offsets.push(ids.len() as i32);
        }
        let DataType::List(item) = members_type() else { unreachable!("a list type") };
        let DataType::Struct(fields) = item.data_type().clone() else { unreachable!("a struct type") };
        let values =
            StructArray::new(fields, vec![Arc::new(StringArray::from(ids)), Arc::new(Float32Array::from(sims))], None);
        Arc::new(ListArray::new(
            item,
            OffsetBuffer::new(offsets.into()),
            Arc::new(values),
            Some(NullBuffer::from(valid)),
        ))
    }
}

/// Columns the stage adds (replaced when the input has them already).
const OUTPUT_COLUMNS: [&str; 3] = ["dup_cluster", "dup_cluster_size", "dup_members"];

/// `dup_members`: List<Struct<id: Utf8, similarity: Float32>>.
pub fn members_type() -> DataType {
    let fields = vec![Field::new("id", DataType::Utf8, false), Field::new("similarity", DataType::Float32, false)];
    DataType::List(Arc::new(Field::new("item", DataType::Struct(fields.into()), true)))
}

// Explain data. Observers write `<split>.ids`: per row with a signature,
// row u64, the low 16 bits of each hash (u16), the id's length u32 and its
// bytes. After clustering, `write_members` reads them for the clustered rows
// only and writes `members/<split>.bin` for the splits that hold kept rows:
// per kept row, in row order, row u64, members u32, then per member
// similarity f32, id length u32, id bytes. The similarity is the estimated
// Jaccard similarity to the kept row: the share of equal hashes (16-bit
// fingerprints; a false match per hash has chance 2^-16).

fn ids_path(dir: &Path, split: u32) -> PathBuf {
    dir.join(format!("{split:06}.ids"))
}

fn members_path(dir: &Path, split: u32) -> PathBuf {
    dir.join("members").join(format!("{split:06}.bin"))
}

fn write_member(w: &mut impl Write, row: u64, sig: &[u64], id: &str) -> std::io::Result<()> {
    w.write_all(&row.to_le_bytes())?;
    for v in sig {
        w.write_all(&(*v as u16).to_le_bytes())?;
    }
    w.write_all(&(id.len() as u32).to_le_bytes())?;
    w.write_all(id.as_bytes())
}

/// The estimated Jaccard similarity of two fingerprinted signatures.
fn similarity(a: &[u16], b: &[u16]) -> f32 {
    let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
    same as f32 / a.len().max(1) as f32
}

/// Reads the observers' id files for the clustered rows and writes each
/// cluster's members beside its kept row. Holds the clustered rows' ids and
/// fingerprints (about 2 bytes per hash plus the id per clustered document).
fn write_members(ctx: &BarrierContext, uf: &mut Clusters, w: &Written, layout: &Layout, hashes: usize) -> Result<()> {
    // (cluster, dropped, node, id, fingerprints)
    let mut members: Vec<(u32, bool, u64, String, Vec<u16>)> = Vec::new();
    let mut head = [0u8; 8];
    let mut fp_bytes = vec![0u8; hashes * 2];
    for &(split, _, first) in layout {
        let path = ids_path(&ctx.observed_dir, split);
        let mut r = BufReader::with_capacity(1 << 16, File::open(&path).map_err(|e| io(&path, e))?);
        loop {
            match r.read_exact(&mut head) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(io(&path, e)),
            }
            let row = le_u64(&head);
            r.read_exact(&mut fp_bytes).map_err(|e| io(&path, e))?;
            r.read_exact(&mut head[..4]).map_err(|e| io(&path, e))?;
            let mut id = vec![0u8; le_u32(&head[..4]) as usize];
            r.read_exact(&mut id).map_err(|e| io(&path, e))?;
            let x = (first + row) as u32;
            let root = uf.find(x);
            if uf.size[root as usize] < 2 || uf.is_earlier(root) {
                continue;
            }
            let fp = fp_bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
            members.push((
                w.cluster[root as usize],
                w.kept[root as usize] != x,
                node(split, row)?,
                String::from_utf8_lossy(&id).into_owned(),
                fp,
            ));
        }
    }
    members.sort_unstable_by_key(|m| (m.0, m.1, m.2));
    let mut per_split: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    for group in members.chunk_by(|a, b| a.0 == b.0) {
        let kept = &group[0];
        if kept.1 {
            return Err(EngineError::Internal(format!("dedup_minhash: cluster {} has no kept member", kept.0)));
        }
        let out = per_split.entry((kept.2 >> 40) as u32).or_default();
        out.extend_from_slice(&(kept.2 & ((1 << 40) - 1)).to_le_bytes());
        out.extend_from_slice(&(group.len() as u32 - 1).to_le_bytes());
        for m in &group[1..] {
            out.extend_from_slice(&similarity(&kept.4, &m.4).to_le_bytes());
            out.extend_from_slice(&(m.3.len() as u32).to_le_bytes());
            out.extend_from_slice(m.3.as_bytes());
        }
    }
    let dir = ctx.resolved_dir.join("members");
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    for (split, bytes) in per_split {
        let path = members_path(&ctx.resolved_dir, split);
        std::fs::write(&path, bytes).map_err(|e| io(&path, e))?;
    }
    Ok(())
}

/// Per kept row of a cluster: (row, the other members' (id, similarity)).
type Members = Vec<(u64, Vec<(String, f32)>)>;

/// The members file of `split`, sorted by kept row (empty when it has no kept row of a cluster).
fn read_members(dir: &Path, split: u32) -> Result<Members> {
    let path = members_path(dir, split);
    let b = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&path, e)),
    };
    let bad = || EngineError::External(format!("{}: truncated", path.display()));
    fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (rest.get(..n)?, rest.get(n..)?);
        *rest = tail;
        Some(head)
    }
    let mut rest: &[u8] = &b;
    let mut out: Members = Vec::new();
    while !rest.is_empty() {
        let row = le_u64(take(&mut rest, 8).ok_or_else(bad)?);
        let n = le_u32(take(&mut rest, 4).ok_or_else(bad)?) as usize;
        let mut list = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            let sim = f32::from_le_bytes(take(&mut rest, 4).ok_or_else(bad)?.try_into().expect("4 bytes"));
            let len = le_u32(take(&mut rest, 4).ok_or_else(bad)?) as usize;
            let id = take(&mut rest, len).ok_or_else(bad)?;
            list.push((String::from_utf8_lossy(id).into_owned(), sim));
        }
        out.push((row, list));
    }
    out.sort_by_key(|m| m.0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::LargeStringArray;

    fn defaults() -> DedupMinhashConfig {
        serde_json::from_value(serde_json::json!({})).unwrap()
    }

    #[test]
    fn parameters_equal_numpy_random_state() {
        // numpy 2.4.6: RandomState(1).randint(1, 2**61-1, dtype=uint64, size=112), then (0, 2**61-1).
        let s = Signer::new(&defaults());
        assert_eq!(s.a.len(), 112);
        assert_eq!(s.a[..3], [775169054918279404, 1758426461858698313, 2109959069025162]);
        assert_eq!(s.a[111], 223865076026037746);
        assert_eq!(s.b[..3], [1062448801025099917, 1324811268927594100, 1217488311597731462]);
        assert_eq!(s.b[111], 1097409548522419201);
    }

    #[test]
    fn mersenne_modulo() {
        for x in [0, 1, MERSENNE - 1, MERSENNE, MERSENNE + 1, u64::MAX, u64::MAX - 7, 1 << 63] {
            assert_eq!(mod_mersenne(x), x % MERSENNE, "{x}");
        }
    }

    #[test]
    fn simplify_text_equals_datatrove() {
        // Outputs of datatrove 0.10.1 `simplify_text` (Python 3.11).
        let mut out = String::new();
        simplify_text(
            "The quick brown fox jumps over the lazy dog. It was 3.14 degrees at 10:30, said Mr. O'Neil!",
            &mut out,
        );
        assert_eq!(out, "the quick brown fox jumps over the lazy dog it was 0 degrees at 0 0 said mr o neil");
        simplify_text(
            "Café déjà vu — naïve coöperation in São Paulo; 1,000,000 people didn't   care.\n\nNew line here, twice.",
            &mut out,
        );
        assert_eq!(out, "cafe deja vu naive cooperation in sao paulo 0 0 people didn t care new line here twice");
        simplify_text(" \u{a0}\t…", &mut out);
        assert_eq!(out, "");
    }

    #[test]
    fn signatures_equal_datatrove() {
        // Values from datatrove 0.10.1 MinhashDedupSignature(config=MinhashConfig()).get_signature(get_shingles(text)),
        // computed with ~/.cache/smelt-peers/venv (numpy 2.4.6, xxhash, spaCy 3.8 blank "en").
        let s = Signer::new(&defaults());
        let mut scratch = Scratch::default();
        let mut sig = Vec::new();
        let t1 = "The quick brown fox jumps over the lazy dog. It was 3.14 degrees at 10:30, said Mr. O'Neil!";
        let sh = s.shingles(t1, Segmenter::English, &mut scratch);
        assert_eq!((sh.len(), sh[0]), (16, 7797000677988824208));
        assert!(s.signature(t1, Segmenter::English, &mut scratch, &mut sig));
        assert_eq!(
            sig[..8],
            [
                85330943174081874,
                175021855724751277,
                302227827184868053,
                11020519422042938,
                53559052118215307,
                29158846513531735,
                163177125024804319,
                204404170303891102
            ]
        );
        assert_eq!(
            sig[104..],
            [
                138080280408424662,
                212222752476155101,
                200020302528876325,
                66167128343108654,
                1765945916311590,
                441787638492695253,
                227311182905181596,
                3963570588256049
            ]
        );
        let t2 =
            "Café déjà vu — naïve coöperation in São Paulo; 1,000,000 people didn't   care.\n\nNew line here, twice.";
        assert_eq!(s.shingles(t2, Segmenter::English, &mut scratch)[0], 4637080560052264693);
        assert!(s.signature(t2, Segmenter::English, &mut scratch, &mut sig));
        assert_eq!(
            sig[..8],
            [
                304626807260492972,
                171217542402245573,
                340359984706400615,
                12997252328864793,
                32266331820189576,
                1938453440616973,
                11388426140811900,
                13343244205543199
            ]
        );
        assert_eq!(
            sig[104..],
            [
                139139056480978640,
                75935693767405712,
                230827615395285481,
                173744432893853388,
                16815948652258692,
                105247797438701035,
                66777232870110729,
                133237326027677448
            ]
        );
        // Exactly one shingle, whose hash is above 2^63 (the multiplication wraps).
        let t3 = "one two three four five";
        assert_eq!(s.shingles(t3, Segmenter::English, &mut scratch), [16779001585721188446]);
        assert!(s.signature(t3, Segmenter::English, &mut scratch, &mut sig));
        assert_eq!(
            sig[..8],
            [
                699275049159941947,
                1668490093867446599,
                889504911880821557,
                1551604595285391346,
                383147901504461938,
                368063453279159230,
                1189702035984891960,
                1500586479833668126
            ]
        );
        assert_eq!(
            sig[104..],
            [
                1486271680580835655,
                1833971666700873554,
                1611486037240835381,
                2061213241286577803,
                503107812181541087,
                2167288653533356246,
                2080465638341788154,
                1688177567886525154
            ]
        );
    }

    #[test]
    fn short_and_empty_documents_have_no_signature() {
        // datatrove: `ngrams` of fewer than n words is empty, and such documents get no signature.
        let s = Signer::new(&defaults());
        let mut scratch = Scratch::default();
        let mut sig = Vec::new();
        for t in ["", "   \n\t", "one two three four", "!!! ??? ...", "1 2 3 4"] {
            assert!(!s.signature(t, Segmenter::English, &mut scratch, &mut sig), "{t:?}");
        }
    }

    #[test]
    fn unspaced_scripts_get_shingles() {
        // Snippets from ../shared/data/news/newspaper4k-0.9.6-tests-data/txt (the newspaper4k
        // test fixtures, MIT licence): Chinese, Japanese and Thai news text.
        let s = Signer::new(&defaults());
        let mut scratch = Scratch::default();
        for (lang, text) in [("zh", ZH), ("ja", JA), ("th", TH)] {
            let seg = Segmenter::for_language(lang);
            let sh = s.shingles(text, seg, &mut scratch);
            assert!(sh.len() >= 10, "{lang}: {} shingles", sh.len());
            // The text repeated twice has nearly the same shingle set, so most hashes agree.
            let mut sig_a = Vec::new();
            let mut sig_b = Vec::new();
            assert!(s.signature(text, seg, &mut scratch, &mut sig_a));
            assert!(s.signature(&format!("{text}{text}"), seg, &mut scratch, &mut sig_b));
            let same = sig_a.iter().zip(&sig_b).filter(|(a, b)| a == b).count();
            assert!(same > 80, "{lang}: {same}/112 hashes agree");
        }
    }

    const ZH: &str = include_str!("../../tests/fixtures/minhash/zh.txt");
    const JA: &str = include_str!("../../tests/fixtures/minhash/ja.txt");
    const TH: &str = include_str!("../../tests/fixtures/minhash/th.txt");

    /// Runs the stage over `splits` (each a list of texts, one batch per split)
    /// and returns per split the verdicts, clusters and sizes.
    fn run(options: serde_json::Value, splits: &[Vec<&str>], parallelism: usize) -> Vec<Vec<(bool, Option<u64>, u32)>> {
        run_with_budget(options, splits, parallelism, 1 << 20)
    }

    fn run_with_budget(
        options: serde_json::Value,
        splits: &[Vec<&str>],
        parallelism: usize,
        memory_budget: usize,
    ) -> Vec<Vec<(bool, Option<u64>, u32)>> {
        let StageConfig::Barrier(b) = configure(options, &ConfigureContext::working_dir()).unwrap() else {
            panic!("a barrier")
        };
        let dir = tempfile::tempdir().unwrap();
        let ctx = BarrierContext {
            observed_dir: dir.path().join("observed"),
            resolved_dir: dir.path().join("resolved"),
            memory_budget,
            parallelism,
        };
        std::fs::create_dir_all(&ctx.observed_dir).unwrap();
        std::fs::create_dir_all(&ctx.resolved_dir).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("text", DataType::LargeUtf8, false)]));
        let batches: Vec<RecordBatch> = splits
            .iter()
            .map(|texts| {
                RecordBatch::try_new(schema.clone(), vec![Arc::new(LargeStringArray::from(texts.clone()))]).unwrap()
            })
            .collect();
        for (i, x) in batches.iter().enumerate() {
            let mut o = b.observer(&schema, &ctx, i as u32).unwrap();
            o.observe(x).unwrap();
            o.finish().unwrap();
        }
        let ids: Vec<u32> = (0..splits.len() as u32).collect();
        let counts = b.resolve(&ctx, &ids).unwrap();
        assert_eq!(counts["documents"], splits.iter().map(|s| s.len() as u64).sum::<u64>());
        let out_schema = b.output_schema(&schema).unwrap();
        batches
            .iter()
            .enumerate()
            .map(|(i, x)| {
                let mut a = b.applier(&schema, &ctx, i as u32).unwrap();
                let Processed::Filtered { batch, verdicts } = a.process(x.clone()).unwrap() else { panic!("a filter") };
                assert_eq!(batch.schema(), out_schema);
                let c = batch.column_by_name("dup_cluster").unwrap().as_primitive::<arrow::datatypes::UInt64Type>();
                let s =
                    batch.column_by_name("dup_cluster_size").unwrap().as_primitive::<arrow::datatypes::UInt32Type>();
                (0..batch.num_rows())
                    .map(|r| (verdicts[r].is_some(), c.is_valid(r).then(|| c.value(r)), s.value(r)))
                    .collect()
            })
            .collect()
    }

    const BASE: &str =
        "The central bank raised its benchmark interest rate by a quarter of a percentage point on Wednesday, \
        its third increase this year, saying that inflation remained well above its target and that the labour market \
        was still tight. Officials signalled that further increases were possible if price pressures did not ease in \
        the coming months, although several members of the committee argued for a pause to assess the effects of \
        earlier moves on household spending and business investment across the country.";

    fn edited(words_changed: &[usize]) -> String {
        BASE.split(' ')
            .filter(|w| !w.is_empty())
            .enumerate()
            .map(|(i, w)| if words_changed.contains(&i) { "zebra" } else { w })
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn near_duplicates_are_found_and_dissimilar_texts_are_not() {
        let near = edited(&[40]); // one word changed at the end: ~0.93 Jaccard of 5-gram sets
        let far =
            "A small museum in the north of the city reopened on Saturday after two years of renovation, with a new \
            wing for its collection of maps, a café on the roof and an exhibition about the history of the river port.";
        let out = run(serde_json::json!({}), &[vec![BASE, far], vec![&near]], 1);
        assert_eq!(out, vec![vec![(false, Some(0), 2), (false, None, 1)], vec![(true, Some(0), 2)]]);
    }

    #[test]
    fn a_chain_is_one_cluster_and_the_first_stays() {
        // Three windows of BASE shifted by 6 words: a and b share 4 bands, b and c one,
        // a and c none (checked below, and with datatrove's signatures); all three are one cluster.
        let w: Vec<&str> = BASE.split_whitespace().collect();
        let (a, b, c) = (w[..w.len() - 12].join(" "), w[6..w.len() - 6].join(" "), w[12..].join(" "));
        let s = Signer::new(&defaults());
        let mut scratch = Scratch::default();
        let mut sig = |t: &str| {
            let mut v = Vec::new();
            assert!(s.signature(t, Segmenter::English, &mut scratch, &mut v));
            v
        };
        let (sa, sb, sc) = (sig(&a), sig(&b), sig(&c));
        let shared = |x: &[u64], y: &[u64]| x.chunks(8).zip(y.chunks(8)).filter(|(p, q)| p == q).count();
        assert_eq!((shared(&sa, &sb), shared(&sb, &sc), shared(&sa, &sc)), (4, 1, 0));
        let out = run(serde_json::json!({"keep": "first"}), &[vec![&c], vec![&b, &a]], 2);
        // Input order: c (split 0) is first, so it stays.
        assert_eq!(out, vec![vec![(false, Some(0), 3)], vec![(true, Some(0), 3), (true, Some(0), 3)]]);
    }

    #[test]
    fn union_find_joins_chains_across_bands() {
        // Two splits of 4 documents: dense indexes 0..4 and 4..8.
        let layout: Layout = vec![(0, 4, 0), (3, 4, 4)];
        let mut uf = Clusters::new(8, MinhashKeep::First);
        uf.union((1, 0), (2, 0));
        uf.union((5, 0), (6, 0));
        uf.union((2, 0), (3, 0));
        uf.union((3, 0), (1, 0));
        let dir = tempfile::tempdir().unwrap();
        let w = write_clusters(dir.path(), &mut uf, &layout).unwrap();
        assert_eq!((w.clustered, w.clusters, w.dropped), (5, 2, 3));
        let m = |row, cluster, size, dropped: bool| Mark { row, cluster, size, dropped: u32::from(dropped) };
        assert_eq!(read_marks(dir.path(), 0).unwrap(), [m(1, 0, 3, false), m(2, 0, 3, true), m(3, 0, 3, true)]);
        assert_eq!(read_marks(dir.path(), 3).unwrap(), [m(1, 1, 2, false), m(2, 1, 2, true)]);
        assert!(read_marks(dir.path(), 1).unwrap().is_empty());
    }

    #[test]
    fn newest_keeps_the_smallest_preference_then_the_first() {
        // Preferences are minus fetched_at: -30 is the newest.
        let layout: Layout = vec![(0, 6, 0)];
        let mut uf = Clusters::new(6, MinhashKeep::Newest);
        uf.union((0, -10), (1, -30));
        uf.union((1, -30), (2, -20));
        uf.union((3, i64::MAX), (4, i64::MAX));
        let dir = tempfile::tempdir().unwrap();
        write_clusters(dir.path(), &mut uf, &layout).unwrap();
        let kept: Vec<(u64, u64)> =
            read_marks(dir.path(), 0).unwrap().iter().filter(|m| m.dropped == 0).map(|m| (m.row, m.cluster)).collect();
        // Clusters are numbered by their kept row: 1 (newest of 0, 1, 2), then 3 (no dates: the first).
        assert_eq!(kept, [(1, 0), (3, 1)]);
    }

    #[test]
    fn datatrove_keeps_the_root_of_union_by_size() {
        // datatrove's MinhashDedupCluster.union on the same pairs: (5, 6) then
        // (1, 5): the sizes are 1 and 2, so 5's root stays although 1 comes first;
        // (2, 3) then (3, 1): 2's set is larger and stays.
        let layout: Layout = vec![(0, 8, 0)];
        let mut uf = Clusters::new(8, MinhashKeep::Datatrove);
        for (a, b) in [(5, 6), (1, 5), (2, 3), (4, 2), (7, 2), (3, 0)] {
            uf.union((a, 0), (b, 0));
        }
        let dir = tempfile::tempdir().unwrap();
        write_clusters(dir.path(), &mut uf, &layout).unwrap();
        let kept: Vec<u64> =
            read_marks(dir.path(), 0).unwrap().iter().filter(|m| m.dropped == 0).map(|m| m.row).collect();
        assert_eq!(kept, [2, 5]);
    }

    #[test]
    fn same_result_for_any_parallelism_and_exact_copies_cluster() {
        let texts: Vec<String> = (0..30).map(|i| edited(&[i % 7 * 10, 50 + i % 3])).collect();
        let split_a: Vec<&str> = texts[..15].iter().map(String::as_str).collect();
        let split_b: Vec<&str> = texts[15..].iter().map(String::as_str).collect();
        let one = run(serde_json::json!({}), &[split_a.clone(), split_b.clone()], 1);
        let four = run(serde_json::json!({}), &[split_a, split_b], 4);
        assert_eq!(one, four);
        let dropped = one.iter().flatten().filter(|x| x.0).count();
        assert!(dropped >= 20, "{dropped} dropped");
        assert!(!one[0][0].0, "the first document stays");
    }

    #[test]
    fn observers_spill_sorted_runs_and_give_the_same_result() {
        // A budget this small holds 16 records per band: 30 documents spill runs.
        let texts: Vec<String> = (0..30).map(|i| edited(&[i % 7 * 10, 50 + i % 3])).collect();
        let split: Vec<&str> = texts.iter().map(String::as_str).collect();
        for keep in ["datatrove", "first"] {
            let options = serde_json::json!({ "keep": keep });
            let whole = run(options.clone(), &[split.clone()], 1);
            let spilled = run_with_budget(options, &[split.clone()], 1, 1024);
            assert_eq!(whole, spilled, "{keep}");
        }
    }

    #[test]
    fn explain_lists_the_members_on_the_kept_row() {
        let StageConfig::Barrier(b) =
            configure(serde_json::json!({"explain": true, "keep": "first"}), &ConfigureContext::working_dir()).unwrap()
        else {
            panic!("a barrier")
        };
        let dir = tempfile::tempdir().unwrap();
        let ctx = super::super::test_context(dir.path());
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("text", DataType::LargeUtf8, false),
        ]));
        let (near, other) = (edited(&[40]), edited(&[3, 20]));
        let splits =
            [vec![("x", "too short"), ("a", BASE)], vec![("b", near.as_str()), ("c", BASE), ("d", other.as_str())]];
        let batches: Vec<RecordBatch> = splits
            .iter()
            .map(|rows| {
                let ids: Vec<&str> = rows.iter().map(|r| r.0).collect();
                let texts: Vec<&str> = rows.iter().map(|r| r.1).collect();
                RecordBatch::try_new(
                    schema.clone(),
                    vec![Arc::new(StringArray::from(ids)), Arc::new(LargeStringArray::from(texts))],
                )
                .unwrap()
            })
            .collect();
        for (i, x) in batches.iter().enumerate() {
            let mut o = b.observer(&schema, &ctx, i as u32).unwrap();
            o.observe(x).unwrap();
            o.finish().unwrap();
        }
        b.resolve(&ctx, &[0, 1]).unwrap();
        let mut a = b.applier(&schema, &ctx, 0).unwrap();
        let Processed::Filtered { batch, .. } = a.process(batches[0].clone()).unwrap() else { panic!("a filter") };
        let members = batch.column_by_name("dup_members").unwrap().as_list::<i32>();
        assert!(members.is_null(0));
        let list = members.value(1);
        let list = list.as_struct();
        let ids: Vec<&str> = (0..list.len()).map(|i| list.column(0).as_string::<i32>().value(i)).collect();
        let sims: Vec<f32> =
            (0..list.len()).map(|i| list.column(1).as_primitive::<arrow::datatypes::Float32Type>().value(i)).collect();
        // `a` stays (first); `c` is an exact copy, `b` and `d` near-duplicates.
        assert_eq!(ids.len(), 3, "{ids:?}");
        let sim = |id: &str| sims[ids.iter().position(|x| *x == id).unwrap()];
        assert_eq!(sim("c"), 1.0);
        // The estimates are within 0.15 of the true Jaccard of the shingle sets (112 hashes).
        let signer = Signer::new(&defaults());
        let mut scratch = Scratch::default();
        let mut set = |t: &str| -> std::collections::HashSet<u64> {
            signer.shingles(t, Segmenter::English, &mut scratch).into_iter().collect()
        };
        let base = set(BASE);
        for (id, text) in [("b", near.as_str()), ("d", other.as_str())] {
            let s = set(text);
            let truth = base.intersection(&s).count() as f32 / base.union(&s).count() as f32;
            assert!((sim(id) - truth).abs() < 0.15, "{id}: {} vs {truth}", sim(id));
            assert!(sim(id) < 1.0);
        }
        // The other split's rows are all dropped: no member lists there.
        let mut a = b.applier(&schema, &ctx, 1).unwrap();
        let Processed::Filtered { batch, verdicts } = a.process(batches[1].clone()).unwrap() else {
            panic!("a filter")
        };
        assert!(verdicts.iter().all(Option::is_some));
        assert_eq!(batch.column_by_name("dup_members").unwrap().null_count(), 3);
    }

    #[test]
    fn short_documents_are_kept_alone() {
        let out = run(serde_json::json!({}), &[vec!["", "tiny text", "tiny text", BASE]], 1);
        assert_eq!(out, vec![vec![(false, None, 1), (false, None, 1), (false, None, 1), (false, None, 1)]]);
    }

    #[test]
    fn options_are_checked() {
        assert!(configure(serde_json::json!({"buckets": 0}), &ConfigureContext::working_dir()).is_err());
        assert!(configure(
            serde_json::json!({"buckets": 200, "hashes_per_bucket": 8}),
            &ConfigureContext::working_dir()
        )
        .is_err());
        assert!(configure(serde_json::json!({"threshold": 0.8}), &ConfigureContext::working_dir()).unwrap_err().at_key);
        let StageConfig::Barrier(b) = configure(
            serde_json::json!({"buckets": 20, "hashes_per_bucket": 5, "n_grams": 3}),
            &ConfigureContext::working_dir(),
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(b.resolved()["buckets"], 20);
        let out = run(
            serde_json::json!({"buckets": 20, "hashes_per_bucket": 5, "n_grams": 3}),
            &[vec![BASE, &edited(&[10])]],
            1,
        );
        assert!(out[0][1].0);
    }
}
