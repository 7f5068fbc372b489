//! Benchmark of the document diff: smelt's sorted-index merge join against
//! the same diff done naively with DataFusion SQL over the shards.
//!
//! ```text
//! gen        two versions of N generated documents (B: 5% removed, 2% changed, 5% added) as
//!            Parquet shards of 100k rows + one sorted run per shard, like `smelt run` writes
//! commit     merges each version's runs into its version index, like `smelt commit`
//! smelt      diffs the two version indexes (what `smelt catalog diff` reads)
//! datafusion FULL OUTER JOIN of the two versions' shards on id, comparing content_hash
//! publish    writes the two manifests as datasets `bench-a@1` (root a) and `bench-b@1` (root b)
//!            under `_versions/`, for `smelt catalog rebuild` (bench/train_compare.sh)
//! ```
//! Run each phase in its own process so that its time and peak RSS are its own
//! (bench/diff.sh does, under /usr/bin/time):
//! ```text
//! cargo run --release -p smelt-query --example bench_docdiff -- gen --dir /tmp/dd --docs 1000000
//! cargo run --release -p smelt-query --example bench_docdiff -- commit --dir /tmp/dd
//! cargo run --release -p smelt-query --example bench_docdiff -- smelt --dir /tmp/dd
//! cargo run --release -p smelt-query --example bench_docdiff -- datafusion --dir /tmp/dd
//! ```
//! Each phase prints one JSON line: its counts and seconds.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, AsArray, FixedSizeBinaryBuilder, LargeStringBuilder, StringBuilder};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use smelt_catalog::docindex::{build_version_index, split_index_path, version_index_path, FinishedRun, RunBuilder};
use smelt_catalog::{shard_path, DatasetStore, DocIndexRef, SplitRecord, VersionManifest};
use smelt_query::docdiff::diff_version_documents;

const RUN: &str = "bench";
const SHARD_DOCS: u64 = 100_000;
const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "a",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "had",
    "they",
    "you",
    "were",
    "their",
    "one",
    "all",
    "we",
    "can",
    "her",
    "has",
    "there",
    "been",
    "if",
    "more",
    "when",
    "will",
    "would",
    "who",
    "so",
    "no",
    "data",
    "market",
    "city",
    "government",
    "report",
    "season",
    "people",
    "year",
    "company",
    "music",
    "science",
    "school",
    "water",
    "energy",
    "health",
    "research",
    "football",
    "election",
    "history",
    "policy",
    "river",
    "village",
    "bridge",
];

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A WARC-Record-ID-like id: random order, 47 bytes.
fn doc_id(i: u64) -> String {
    let (a, b) = (splitmix(i), splitmix(i ^ 0x5555_5555_5555_5555));
    format!(
        "<urn:uuid:{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}>",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// 40 to 120 words of text.
fn doc_text(i: u64, out: &mut String) {
    out.clear();
    let mut s = splitmix(i.wrapping_mul(31).wrapping_add(7));
    let n = 40 + s % 81;
    for k in 0..n {
        s = splitmix(s);
        if k > 0 {
            out.push(' ');
        }
        out.push_str(WORDS[(s % WORDS.len() as u64) as usize]);
    }
}

/// What version B does to document i of A: 0..5 removed, 5..7 changed, else kept.
fn fate(i: u64) -> u64 {
    splitmix(i ^ 0xdead_beef) % 100
}

fn content_hash(text: &str) -> [u8; 16] {
    xxhash_rust::xxh3::xxh3_128(text.as_bytes()).to_be_bytes()
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("text", DataType::LargeUtf8, false),
        Field::new("url", DataType::Utf8, true),
        Field::new("source", DataType::Utf8, false),
        Field::new("content_hash", DataType::FixedSizeBinary(16), false),
    ]))
}

/// Documents of one shard of a version: (doc number, changed?).
fn shard_docs(version_b: bool, docs: u64, shard: u64) -> Vec<(u64, bool)> {
    let added = docs / 20;
    let (lo, hi) = (shard * SHARD_DOCS, ((shard + 1) * SHARD_DOCS).min(docs + if version_b { added } else { 0 }));
    (lo..hi)
        .filter_map(|i| {
            if !version_b || i >= docs {
                return Some((i, false));
            }
            match fate(i) {
                0..5 => None,
                5..7 => Some((i, true)),
                _ => Some((i, false)),
            }
        })
        .collect()
}

/// Writes one shard and its sorted run; returns the run's reference.
fn write_shard(root: &Path, version_b: bool, docs: u64, shard: u64) -> std::io::Result<DocIndexRef> {
    let rows = shard_docs(version_b, docs, shard);
    let (mut ids, mut texts, mut urls, mut sources) =
        (StringBuilder::new(), LargeStringBuilder::new(), StringBuilder::new(), StringBuilder::new());
    let mut hashes = FixedSizeBinaryBuilder::new(16);
    let mut run = RunBuilder::new();
    let mut text = String::new();
    for &(i, changed) in &rows {
        let id = doc_id(i);
        doc_text(i, &mut text);
        if changed {
            text.push_str(" (updated)");
        }
        let h = content_hash(&text);
        ids.append_value(&id);
        texts.append_value(&text);
        urls.append_value(format!("https://site{}.example.org/page/{i}", i % 997));
        sources.append_value("bench:generated");
        hashes.append_value(h).map_err(std::io::Error::other)?;
        run.push(id.as_bytes(), &h)?;
    }
    let batch = RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(ids.finish()),
            Arc::new(texts.finish()),
            Arc::new(urls.finish()),
            Arc::new(sources.finish()),
            Arc::new(hashes.finish()),
        ],
    )
    .map_err(std::io::Error::other)?;
    let shard_file = root.join(shard_path(RUN, shard as u32, 0));
    std::fs::create_dir_all(shard_file.parent().expect("parent"))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(std::io::Error::other)?))
        .build();
    let mut w = ArrowWriter::try_new(std::fs::File::create(&shard_file)?, schema(), Some(props))
        .map_err(std::io::Error::other)?;
    w.write(&batch).map_err(std::io::Error::other)?;
    w.close().map_err(std::io::Error::other)?;

    let rel = split_index_path(RUN, shard as u32);
    let path = root.join(&rel);
    std::fs::create_dir_all(path.parent().expect("parent"))?;
    match run.finish()? {
        FinishedRun::Memory { bytes, entries, checksum } => {
            std::fs::write(&path, &bytes)?;
            Ok(DocIndexRef { path: rel, entries, bytes: bytes.len() as u64, checksum })
        }
        FinishedRun::File { path: tmp, entries, bytes, checksum, .. } => {
            std::fs::copy(tmp, &path)?;
            Ok(DocIndexRef { path: rel, entries, bytes, checksum })
        }
    }
}

fn gen(dir: &Path, docs: u64) -> Result<serde_json::Value, String> {
    let t = Instant::now();
    for (name, b) in [("a", false), ("b", true)] {
        let root = dir.join(name);
        let total = docs + if b { docs / 20 } else { 0 };
        let shards = total.div_ceil(SHARD_DOCS);
        let next = AtomicUsize::new(0);
        let refs = std::sync::Mutex::new(vec![None; shards as usize]);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| loop {
                    let k = next.fetch_add(1, Ordering::Relaxed) as u64;
                    if k >= shards {
                        break;
                    }
                    let r = write_shard(&root, b, docs, k).map_err(|e| e.to_string());
                    refs.lock().expect("lock")[k as usize] = Some(r);
                });
            }
        });
        let refs: Vec<DocIndexRef> = refs
            .into_inner()
            .expect("lock")
            .into_iter()
            .map(|r| r.expect("every shard written"))
            .collect::<Result<_, _>>()?;
        std::fs::write(root.join("split_refs.json"), serde_json::to_vec(&refs).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let mut expect = serde_json::json!({"added": docs / 20, "removed": 0, "changed": 0});
    let (mut removed, mut changed) = (0u64, 0u64);
    for i in 0..docs {
        match fate(i) {
            0..5 => removed += 1,
            5..7 => changed += 1,
            _ => {}
        }
    }
    expect["removed"] = removed.into();
    expect["changed"] = changed.into();
    expect["unchanged"] = (docs - removed - changed).into();
    std::fs::write(dir.join("expected.json"), expect.to_string()).map_err(|e| e.to_string())?;
    Ok(serde_json::json!({"phase": "gen", "docs": docs, "seconds": t.elapsed().as_secs_f64(), "expected": expect}))
}

fn manifest(doc_index: Option<DocIndexRef>) -> Result<VersionManifest, String> {
    let json = serde_json::json!({
        "format": 1, "dataset": "bench", "version": 1, "committed_at": "-", "digest": "-", "schema": [],
        "shards": [], "totals": {"rows": 0, "shards": 0, "bytes": 0, "tokens": 0, "text_bytes": 0},
        "stats": [], "funnel": [],
        "lineage": {"run_id": RUN, "pipeline_path": "-", "pipeline_hash": "-", "resolved_config": {}, "smelt_version": "-", "inputs": []},
        "doc_index": doc_index,
    });
    serde_json::from_value(json).map_err(|e| e.to_string())
}

async fn commit(dir: &Path) -> Result<serde_json::Value, String> {
    let t = Instant::now();
    let mut entries = Vec::new();
    for name in ["a", "b"] {
        let root = dir.join(name);
        let refs: Vec<DocIndexRef> =
            serde_json::from_slice(&std::fs::read(root.join("split_refs.json")).map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        let records: Vec<SplitRecord> = refs
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                serde_json::from_value(serde_json::json!({
                    "format": 1, "split": {"index": i, "source": "gen", "id": format!("shard {i}"), "bytes": null},
                    "shards": [], "stats": [], "stages": [], "doc_index": r,
                }))
                .expect("a split record")
            })
            .collect();
        let store = DatasetStore::open(root.to_str().expect("utf-8 path")).map_err(|e| e.to_string())?;
        let mut built =
            build_version_index(&store, RUN, &records, None).await.map_err(|e| e.to_string())?.ok_or("no index")?;
        let r = built.place(&store, &version_index_path(1, RUN), None).await.map_err(|e| e.to_string())?;
        entries.push(r.entries);
        let m = manifest(Some(r))?;
        std::fs::write(root.join("manifest.json"), serde_json::to_vec(&m).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    Ok(serde_json::json!({"phase": "commit", "entries": entries, "seconds": t.elapsed().as_secs_f64()}))
}

/// The committed manifests as `bench-a@1` (root a) and `bench-b@1` (root b), with
/// their row totals, where `smelt catalog rebuild a b` finds them.
fn publish(dir: &Path) -> Result<serde_json::Value, String> {
    for (name, version) in [("a", 1u64), ("b", 1)] {
        let root = dir.join(name);
        let mut m: VersionManifest =
            serde_json::from_slice(&std::fs::read(root.join("manifest.json")).map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        m.dataset = format!("bench-{name}");
        m.version = version;
        m.committed_at = chrono::Utc::now().to_rfc3339();
        m.digest = format!("xxh3-128:{:032x}", u128::from(name == "b"));
        m.lineage.run_id = format!("{RUN}-{name}");
        m.totals.rows = m.doc_index.as_ref().map_or(0, |r| r.entries);
        std::fs::create_dir_all(root.join("_versions")).map_err(|e| e.to_string())?;
        std::fs::write(
            root.join(format!("_versions/{version:06}.json")),
            serde_json::to_vec(&m).map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(serde_json::json!({"phase": "publish"}))
}

async fn smelt(dir: &Path) -> Result<serde_json::Value, String> {
    let load = |name: &str| -> Result<(DatasetStore, VersionManifest), String> {
        let root = dir.join(name);
        let m: VersionManifest =
            serde_json::from_slice(&std::fs::read(root.join("manifest.json")).map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        Ok((DatasetStore::open(root.to_str().expect("utf-8 path")).map_err(|e| e.to_string())?, m))
    };
    let ((sa, ma), (sb, mb)) = (load("a")?, load("b")?);
    let t = Instant::now();
    let d = diff_version_documents(&sa, &ma, &sb, &mb, 20).await.map_err(|e| e.to_string())?.ok_or("no index")?;
    let secs = t.elapsed().as_secs_f64();
    Ok(serde_json::json!({
        "phase": "smelt", "seconds": secs,
        "added": d.added, "removed": d.removed, "changed": d.changed, "unchanged": d.unchanged,
        "index_bytes": ma.doc_index.as_ref().map_or(0, |r| r.bytes) + mb.doc_index.as_ref().map_or(0, |r| r.bytes),
        "sample_changed": d.samples.changed.first(),
    }))
}

async fn datafusion(dir: &Path) -> Result<serde_json::Value, String> {
    use datafusion::prelude::{ParquetReadOptions, SessionContext};
    let ctx = SessionContext::new();
    let t = Instant::now();
    for name in ["a", "b"] {
        let shards = dir.join(name).join("runs").join(RUN).join("shards");
        ctx.register_parquet(name, &format!("{}/", shards.display()), ParquetReadOptions::default())
            .await
            .map_err(|e| e.to_string())?;
    }
    let sql = "SELECT \
        SUM(CASE WHEN a.id IS NULL THEN 1 ELSE 0 END) AS added, \
        SUM(CASE WHEN b.id IS NULL THEN 1 ELSE 0 END) AS removed, \
        SUM(CASE WHEN a.id IS NOT NULL AND b.id IS NOT NULL AND a.content_hash <> b.content_hash THEN 1 ELSE 0 END) AS changed, \
        SUM(CASE WHEN a.content_hash = b.content_hash THEN 1 ELSE 0 END) AS unchanged \
        FROM a FULL OUTER JOIN b ON a.id = b.id";
    let batches = ctx.sql(sql).await.map_err(|e| e.to_string())?.collect().await.map_err(|e| e.to_string())?;
    let secs = t.elapsed().as_secs_f64();
    let b = batches.first().ok_or("no result")?;
    let get = |c: usize| -> i64 {
        let col = b.column(c);
        if col.is_null(0) {
            0
        } else {
            col.as_primitive::<Int64Type>().value(0)
        }
    };
    Ok(serde_json::json!({
        "phase": "datafusion", "seconds": secs,
        "added": get(0), "removed": get(1), "changed": get(2), "unchanged": get(3),
        "partitions": ctx.state().config().target_partitions(),
    }))
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("bench_docdiff: {msg}\nusage: bench_docdiff gen|commit|smelt|datafusion --dir DIR [--docs N]");
    ExitCode::from(2)
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(phase) = args.next() else { return fail("no phase") };
    let (mut dir, mut docs) = (None::<PathBuf>, 1_000_000u64);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dir" => dir = args.next().map(PathBuf::from),
            "--docs" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) => docs = n,
                None => return fail("--docs takes a number"),
            },
            other => return fail(&format!("unknown argument {other}")),
        }
    }
    let Some(dir) = dir else { return fail("--dir is required") };
    let out = match phase.as_str() {
        "gen" => gen(&dir, docs),
        "commit" => commit(&dir).await,
        "smelt" => smelt(&dir).await,
        "datafusion" => datafusion(&dir).await,
        "publish" => publish(&dir),
        other => return fail(&format!("unknown phase {other}")),
    };
    match out {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench_docdiff {phase}: {e}");
            ExitCode::FAILURE
        }
    }
}
