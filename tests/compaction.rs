//! Small shards merged at commit (the parquet sink's `merge_small_shards`)
//! and by `smelt catalog compact`: the same rows in the same order, the same
//! digest, the same shards whatever the parallelism or rank count, and gc
//! frees the small shards once no version needs them.

mod common;

use std::io::Read;

use common::{example, Env};

/// The bundled JSON Lines sample (real Common Crawl text, examples/data/jsonl)
/// as one file per `per_file` documents under `in/`; returns the file count.
fn small_files(env: &Env, per_file: usize) -> usize {
    let gz = std::fs::File::open(example("data/jsonl/cc_en_head-0091.jsonl.gz")).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(gz).read_to_string(&mut text).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let chunks: Vec<_> = lines.chunks(per_file).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        env.write(&format!("in/{i:03}.jsonl"), format!("{}\n", chunk.join("\n")).as_bytes());
    }
    chunks.len()
}

fn pipeline(env: &Env, name: &str, merge: bool) -> String {
    let text = format!(
        "dataset: {name}\nstages:\n  docs: {{type: jsonl, paths: [\"in/*.jsonl\"]}}\n  hashed: {{type: content_hash, inputs: [docs]}}\n  out: {{type: parquet, inputs: [hashed], merge_small_shards: {merge}}}\n"
    );
    env.write(&format!("{name}.yaml"), text.as_bytes()).display().to_string()
}

fn show(env: &Env, version: &str) -> serde_json::Value {
    env.json(&["catalog", "show", version])
}

fn checksums(m: &serde_json::Value) -> Vec<String> {
    m["shards"].as_array().unwrap().iter().map(|s| s["checksum"].as_str().unwrap().to_string()).collect()
}

fn sql_rows(env: &Env, version: &str) -> String {
    env.ok(&["sql", &format!("SELECT id, length(text) AS n FROM \"{version}\" ORDER BY id"), "--format", "csv"])
}

#[test]
fn small_shards_merge_at_commit_with_the_same_rows_digest_and_shards_at_any_parallelism() {
    let env = Env::new();
    let files = small_files(&env, 1);
    assert!(files >= 10, "{files} files");
    let unmerged = pipeline(&env, "apart", false);
    let merged = pipeline(&env, "merged", true);

    let a = env.json(&["run", &unmerged, "--parallelism", "2"]);
    let apart = show(&env, "apart@1");
    assert_eq!(apart["totals"]["shards"].as_u64(), Some(files as u64), "one shard per file without merging");

    let b = env.json(&["run", &merged, "--parallelism", "1"]);
    let one = show(&env, "merged@1");
    assert_eq!(one["totals"]["shards"], 1, "{}", one["shards"]);
    assert!(one["shards"][0]["path"].as_str().unwrap().contains("/shards/merged-"), "{}", one["shards"]);
    // The rows, their order and the digest are those of the unmerged version.
    assert_eq!(a["digest"], b["digest"]);
    assert_eq!(apart["totals"]["rows"], one["totals"]["rows"]);
    assert_eq!(sql_rows(&env, "apart@1"), sql_rows(&env, "merged@1"));

    // Same shards, byte for byte, at another parallelism and over two ranks committed by `smelt commit`.
    env.json(&["run", &merged, "--parallelism", "3"]);
    for rank in ["0", "1"] {
        env.ok(&["run", &merged, "--run-id", "ranks", "--rank", rank, "--world-size", "2"]);
    }
    let c = env.json(&["commit", "ranks"]);
    assert_eq!(c["digest"], b["digest"]);
    for v in ["merged@2", "merged@3"] {
        assert_eq!(checksums(&show(&env, v)), checksums(&one), "{v}");
    }
}

#[test]
fn catalog_compact_makes_a_version_with_the_same_digest_and_gc_frees_what_no_version_needs() {
    let env = Env::new();
    let files = small_files(&env, 2);
    let p = pipeline(&env, "feeds", false);
    let run = env.json(&["run", &p]);
    let before = show(&env, "feeds@1");
    assert_eq!(before["totals"]["shards"].as_u64(), Some(files as u64));

    let out = env.json(&["catalog", "compact", "feeds@1"]);
    assert_eq!((out["version"].as_u64(), out["compacted"].as_u64()), (Some(2), Some(1)), "{out}");
    assert_eq!(out["same_digest"], true, "{out}");
    assert_eq!((out["merged_from"].as_u64(), out["shards"].as_u64()), (Some(files as u64), Some(1)), "{out}");
    let after = show(&env, "feeds@2");
    assert_eq!(after["digest"], before["digest"]);
    assert_eq!(after["lineage"]["compacted_from"], 1);
    assert_eq!(after["lineage"]["pipeline_hash"], before["lineage"]["pipeline_hash"]);
    assert_eq!(sql_rows(&env, "feeds@1"), sql_rows(&env, "feeds@2"));
    let table = env.ok(&["catalog", "show", "feeds@2"]);
    assert!(table.contains("compacted   from feeds@1"), "{table}");
    let diff = env.ok(&["catalog", "diff", "feeds@1", "feeds@2"]);
    assert!(diff.contains("identical data: same digest"), "{diff}");
    // The document diff works from the compacted version's own copy of the index.
    let docs = env.json(&["catalog", "diff", "feeds@1", "feeds@2"]);
    assert_eq!(docs["documents"]["added"], 0, "{docs}");

    // Nothing left to merge, and a smaller target splits nothing that is already merged.
    let again = env.ok(&["catalog", "compact", "feeds@2"]);
    assert!(again.contains("nothing to compact"), "{again}");

    // Once feeds@1 expires, gc removes its small shards: feeds@2 needs only its merged one.
    let root = env.data().join("datasets/feeds");
    let small = root.join(before["shards"][0]["path"].as_str().unwrap());
    assert!(small.exists());
    env.ok(&["catalog", "gc", "--keep-last", "1", "--grace-hours", "0"]);
    assert!(!small.exists(), "the expired version's small shards are removed");
    assert!(root.join(after["shards"][0]["path"].as_str().unwrap()).exists());
    assert_eq!(sql_rows(&env, "feeds@2").lines().count(), run["rows_written"].as_u64().unwrap() as usize + 1);

    let missing = env.smelt(&["catalog", "compact", "feeds@9"]);
    assert!(!missing.status.success());
    assert!(common::stderr(&missing).contains("feeds@9 does not exist"), "{}", common::stderr(&missing));
}
