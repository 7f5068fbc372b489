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
//! in `mt19937.rs`: MT19937 with numpy's masked rejection sampling) and the
//! uint64 arithmetic (wrapping, then `% (2^61 − 1)`) are the same, so
//! signatures are bit-identical (tests in `signer.rs`). Documents with fewer
//! words than `n_grams` have no shingle and are never duplicates, as in
//! datatrove.
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
//!
//! Files: `signer.rs` (shingles and signatures) with `simplify.rs` (the
//! text normalisation, its Unicode classes in `tables.rs`) and `mt19937.rs`
//! (the permutation parameters); `observe.rs` (a split's band records),
//! `bands.rs` (band record files, candidate pairs), `cluster.rs`
//! (union-find, keep rules, `clusters.bin`), `earlier.rs` (`against`),
//! `apply.rs` (the verdicts and columns), `explain.rs` (`dup_members`);
//! `format.rs` holds what the files share (fields, document addresses).

mod apply;
mod bands;
mod cluster;
mod earlier;
mod explain;
mod format;
mod mt19937;
mod observe;
mod signer;
pub(crate) mod simplify;
mod tables;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};
use smelt_engine::yaml::PathSeg;
use smelt_engine::{
    parse_options, require_column, BarrierConfig, BarrierContext, BarrierObserver, ConfigureContext, DatasetRoots,
    EngineError, OptionError, Result, SchemaError, StageConfig, Transform,
};

use self::apply::{Applier, OUTPUT_COLUMNS};
use self::bands::merge_band;
use self::cluster::{read_marks, write_clusters, Clusters};
use self::explain::{ids_path, read_members, write_members};
use self::format::{le_i64, le_u64, stats_path, Layout};
use self::observe::Observer;
use crate::dedup::io;
use crate::filters::words::Segmenter;

pub use self::explain::members_type;
pub(crate) use self::format::be_u64;
pub use self::signer::{Scratch, Signer};
pub use self::simplify::simplify_text;

/// Options of `dedup_minhash`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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

#[derive(Debug)]
struct DedupMinhash {
    config: DedupMinhashConfig,
    signer: Arc<Signer>,
    resolved: serde_json::Value,
    /// Where `against:` finds named datasets.
    datasets: DatasetRoots,
}

fn language_column(schema: &Schema) -> Option<&'static str> {
    ["language", "lang"].into_iter().find(|n| schema.field_with_name(n).is_ok())
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, LargeStringArray};
    use arrow::record_batch::RecordBatch;
    use smelt_engine::Processed;

    pub(super) fn defaults() -> DedupMinhashConfig {
        serde_json::from_value(serde_json::json!({})).unwrap()
    }

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

    pub(super) const BASE: &str =
        "The central bank raised its benchmark interest rate by a quarter of a percentage point on Wednesday, \
        its third increase this year, saying that inflation remained well above its target and that the labour market \
        was still tight. Officials signalled that further increases were possible if price pressures did not ease in \
        the coming months, although several members of the committee argued for a pause to assess the effects of \
        earlier moves on household spending and business investment across the country.";

    pub(super) fn edited(words_changed: &[usize]) -> String {
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
