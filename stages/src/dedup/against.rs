//! `dedup_minhash`'s `against:`: near-duplicate removal of new documents
//! against committed versions, and the MinHash band index stored with a
//! version that makes it cheap.
//!
//! ```text
//! DATASET@V ──storage──► _versions/<V>.json (tags: _tags/<tag>.json; no sled needed, ranks can read it)
//!           ──► _indexes/minhash-<params>/<V>/index.json?  present: use it
//!                                                          absent: read the version's shards (id, text, lang),
//!                                                          sign every row, write per band the sorted
//!                                                          (xxh3-64 of the band's values, row) records,
//!                                                          ids.bin, then index.json last (the index is whole)
//! resolve: per band, the run's (band hash, document) records sorted ──merge-join──► each index band
//!          a document sharing a band with an earlier version joins that version's "cluster":
//!          its whole cluster is dropped (`minhash_duplicate_of_earlier`); the earlier copy stays the kept one
//! ```
//!
//! The index holds a 64-bit hash of each band's values instead of the values
//! (16 bytes per document and band rather than 72): two different bands
//! collide with chance 2^-64 per pair. Only documents with shingles are
//! indexed. Memory while matching: 16 bytes per document of the run for the
//! band being matched; while building an index: 16 bytes per document of the
//! indexed version for the band being sorted.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use arrow::array::Array;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use serde::{Deserialize, Serialize};
use smelt_engine::{str_at, DatasetRoots, EngineError, Result};

use super::io;
use super::minhash::{be_u64, DedupMinhashConfig, Scratch, Signer};
use crate::filters::words::Segmenter;

/// Format of `index.json` and the files beside it.
const INDEX_FORMAT: u32 = 1;

pub use smelt_engine::upstream::Earlier;

/// Opens `spec` for `against:` ([`smelt_engine::upstream::open_version`]).
///
/// # Errors
/// A malformed reference, a dataset or version that does not exist, storage failures.
pub async fn open_version(datasets: &DatasetRoots, spec: &str) -> Result<Earlier> {
    smelt_engine::upstream::open_version(datasets, spec, "against").await
}

/// What `index.json` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexInfo {
    /// [`INDEX_FORMAT`].
    pub format: u32,
    /// Dataset name.
    pub dataset: String,
    /// Version indexed.
    pub version: u64,
    /// The signature options the index was made with.
    pub params: serde_json::Value,
    /// Rows of the version.
    pub documents: u64,
    /// Rows without a shingle (not in the index).
    pub without_shingles: u64,
    /// Band files.
    pub bands: usize,
}

/// The options that make two signatures comparable, and their key.
fn params(c: &DedupMinhashConfig) -> (serde_json::Value, String) {
    let v = serde_json::json!({
        "buckets": c.buckets,
        "hashes_per_bucket": c.hashes_per_bucket,
        "n_grams": c.n_grams,
        "seed": c.seed,
        "language": c.language,
    });
    let key = xxhash_rust::xxh3::xxh3_64(v.to_string().as_bytes());
    (v, format!("{key:016x}"))
}

/// Directory of version `version`'s index for signatures made with `c`, relative to the dataset root.
pub fn index_dir(c: &DedupMinhashConfig, version: u64) -> String {
    format!("_indexes/minhash-{}/{version:06}", params(c).1)
}

fn band_file(dir: &str, band: usize) -> String {
    format!("{dir}/band-{band:03}.bin")
}

/// The hash a band's values are indexed by.
pub fn band_hash(values: &[u64]) -> u64 {
    let mut b = [0u8; 8 * 64];
    let n = values.len().min(64);
    for (i, v) in values[..n].iter().enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    let mut h = xxhash_rust::xxh3::xxh3_64(&b[..n * 8]);
    for v in &values[n..] {
        h = xxhash_rust::xxh3::xxh3_64_with_seed(&v.to_le_bytes(), h);
    }
    h
}

/// The index of `e` for signatures made with `c`: read if stored, else built
/// from the version's shards and stored (scratch files under `scratch`).
///
/// # Errors
/// Storage failures, shards without a `text` column, an index of another format.
pub async fn ensure_index(
    e: &Earlier,
    c: &DedupMinhashConfig,
    signer: &Signer,
    scratch: &Path,
) -> Result<(IndexInfo, bool)> {
    let dir = index_dir(c, e.manifest.version);
    if let Some(info) = e.store.get_json::<IndexInfo>(&format!("{dir}/index.json")).await? {
        if info.format != INDEX_FORMAT {
            return Err(EngineError::User(format!(
                "{}/{dir} was written by another smelt (index format {}); delete the directory to rebuild it",
                e.store.url(),
                info.format
            )));
        }
        return Ok((info, false));
    }
    tracing::info!("building the MinHash index of {} ({} documents)", e.name, e.manifest.totals.rows);
    let tmp = scratch.join(format!("index-{}-{}", e.manifest.dataset, e.manifest.version));
    std::fs::create_dir_all(&tmp).map_err(|err| io(&tmp, err))?;
    let bands = c.buckets;
    let rows_per_band = c.hashes_per_bucket;
    let band_paths: Vec<PathBuf> = (0..bands).map(|b| tmp.join(format!("{b:03}"))).collect();
    let mut writers = band_paths
        .iter()
        .map(|p| Ok(BufWriter::new(File::create(p).map_err(|err| io(p, err))?)))
        .collect::<Result<Vec<_>>>()?;
    let mut ids: Vec<u8> = Vec::new();
    let default = Segmenter::for_language(&c.language);
    let (mut ordinal, mut without) = (0u64, 0u64);
    let mut scratch_sig = Scratch::default();
    let mut sig = Vec::new();
    for shard in &e.manifest.shards {
        let bytes = e.shard(&shard.path).await?;
        let parquet_err = |err: parquet::errors::ParquetError| {
            EngineError::External(format!("{}/{}: {err}", e.store.url(), shard.path))
        };
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(parquet_err)?;
        let schema = builder.schema().clone();
        if schema.column_with_name("text").is_none() {
            return Err(EngineError::User(format!(
                "{} has no `text` column (token-only shards?): dedup against a version that keeps the text",
                e.name
            )));
        }
        let lang = ["lang", "language"].into_iter().find(|l| schema.column_with_name(l).is_some());
        let wanted: Vec<&str> = ["id", "text"].into_iter().chain(lang).collect();
        let mask = ProjectionMask::columns(builder.parquet_schema(), wanted.iter().copied());
        let reader = builder.with_projection(mask).build().map_err(parquet_err)?;
        for batch in reader {
            let batch = batch?;
            let text = batch.column_by_name("text").expect("projected");
            let id = batch.column_by_name("id");
            let lang_col = lang.and_then(|l| batch.column_by_name(l));
            for i in 0..batch.num_rows() {
                let doc_id = id.and_then(|c| str_at(c, i)).unwrap_or("");
                ids.extend_from_slice(&(doc_id.len() as u32).to_le_bytes());
                ids.extend_from_slice(doc_id.as_bytes());
                let seg = lang_col.and_then(|l| str_at(l, i)).map_or(default, Segmenter::for_language);
                let t = if text.is_valid(i) { str_at(text, i).unwrap_or("") } else { "" };
                if signer.signature(t, seg, &mut scratch_sig, &mut sig) {
                    for (w, values) in writers.iter_mut().zip(sig.chunks_exact(rows_per_band)) {
                        let mut rec = [0u8; 16];
                        rec[..8].copy_from_slice(&band_hash(values).to_le_bytes());
                        rec[8..].copy_from_slice(&ordinal.to_le_bytes());
                        w.write_all(&rec).map_err(|err| io(&tmp, err))?;
                    }
                } else {
                    without += 1;
                }
                ordinal += 1;
            }
        }
    }
    drop(writers);
    for (band, path) in band_paths.iter().enumerate() {
        let raw = std::fs::read(path).map_err(|err| io(path, err))?;
        let mut recs: Vec<(u64, u64)> = raw.chunks_exact(16).map(|r| (le_u64(&r[..8]), le_u64(&r[8..]))).collect();
        drop(raw);
        recs.sort_unstable();
        let mut out = Vec::with_capacity(recs.len() * 16);
        for (h, o) in recs {
            out.extend_from_slice(&h.to_le_bytes());
            out.extend_from_slice(&o.to_le_bytes());
        }
        e.store.put(&band_file(&dir, band), out.into()).await?;
        std::fs::remove_file(path).map_err(|err| io(path, err))?;
    }
    let _ = std::fs::remove_dir(&tmp);
    e.store.put(&format!("{dir}/ids.bin"), ids.into()).await?;
    let info = IndexInfo {
        format: INDEX_FORMAT,
        dataset: e.manifest.dataset.clone(),
        version: e.manifest.version,
        params: params(c).0,
        documents: ordinal,
        without_shingles: without,
        bands,
    };
    let json = serde_json::to_vec_pretty(&info).map_err(|err| EngineError::Internal(err.to_string()))?;
    // Written last: an index without it is incomplete and is rebuilt.
    e.store.put(&format!("{dir}/index.json"), json.into()).await?;
    Ok((info, true))
}

fn le_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b.try_into().expect("8 bytes"))
}

/// The documents of the run that share a band with an earlier version:
/// `matched[d]` is the index (into `earlier`) of the first version a
/// document matched, or `u32::MAX`.
pub struct Matches {
    /// Per dense document index of the run.
    pub matched: Vec<u32>,
}

/// Marks the run's documents whose band `band` (records `(hash, dense)`,
/// sorted) equals a band of one of the `earlier` versions.
///
/// # Errors
/// Storage failures, a truncated index file.
pub async fn match_band(
    earlier: &[Earlier],
    c: &DedupMinhashConfig,
    band: usize,
    run: &[(u64, u32)],
    m: &mut Matches,
) -> Result<()> {
    for (k, e) in earlier.iter().enumerate() {
        let rel = band_file(&index_dir(c, e.manifest.version), band);
        let bytes = e.store.get(&rel).await?.ok_or_else(|| {
            EngineError::External(format!(
                "{}/{rel} is missing (an incomplete index: delete its directory to rebuild it)",
                e.store.url()
            ))
        })?;
        if bytes.len() % 16 != 0 {
            return Err(EngineError::External(format!("{}/{rel}: truncated", e.store.url())));
        }
        let mut old = bytes.chunks_exact(16).map(|r| le_u64(&r[..8])).peekable();
        for &(h, d) in run {
            while old.next_if(|&o| o < h).is_some() {}
            match old.peek() {
                Some(&o) if o == h => {
                    if m.matched[d as usize] == u32::MAX {
                        m.matched[d as usize] = k as u32;
                    }
                }
                Some(_) => {}
                None => break,
            }
        }
    }
    Ok(())
}

/// The `(band hash, dense)` records of band `band` from the run's observed
/// band files (records of `width` big-endian u64: values, preference, node), sorted.
///
/// # Errors
/// Unreadable band files.
pub fn run_band(paths: &[PathBuf], width: usize, node_of: impl Fn(u64) -> Result<u64>) -> Result<Vec<(u64, u32)>> {
    let mut out = Vec::new();
    let mut rec = vec![0u8; width * 8];
    let mut values = vec![0u64; width - 2];
    for path in paths {
        let mut r = BufReader::with_capacity(1 << 16, File::open(path).map_err(|e| io(path, e))?);
        loop {
            match r.read_exact(&mut rec) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(io(path, e)),
            }
            for (v, b) in values.iter_mut().zip(rec.chunks_exact(8)) {
                *v = be_u64(b);
            }
            let node = be_u64(&rec[(width - 1) * 8..]);
            out.push((band_hash(&values), node_of(node)? as u32));
        }
    }
    out.sort_unstable();
    Ok(out)
}
