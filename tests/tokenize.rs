//! `tokenize` end to end: JSONL documents -> token shards -> committed version
//! (tokenizer in the shards' key-value metadata and in the lineage, tokens in
//! the stats) -> `train:` hook -> `smelt export` in the three formats, read
//! back as Megatron's reader and nanoGPT's memmap read them.

mod common;

use std::path::Path;

use arrow::array::AsArray;
use arrow::datatypes::UInt32Type;
use common::Env;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Real text (Reuters-21578 style news lines) plus odd input: an empty text,
/// a lone surrogate escape, a long run without spaces.
fn write_input(dir: &Path) {
    let run = "x".repeat(5000);
    let lines = [
        r#"{"id": "a", "text": "Showers continued throughout the week in the Bahia cocoa zone, alleviating the drought since early January.", "source": "test"}"#.to_string(),
        r#"{"id": "b", "text": "U.S. Treasury's Baker says G-7 accord is working; the dollar rose 0.5 pct against the yen.", "source": "test"}"#.to_string(),
        r#"{"id": "empty", "text": "", "source": "test"}"#.to_string(),
        r#"{"id": "surrogate", "text": "lone \ud800 surrogate", "source": "test"}"#.to_string(),
        format!(r#"{{"id": "run", "text": "{run}", "source": "test"}}"#),
    ];
    std::fs::write(dir.join("docs.jsonl"), lines.join("\n") + "\n").unwrap();
}

fn pipeline(dir: &Path, extra: &str) -> std::path::PathBuf {
    let p = dir.join("tok.yaml");
    std::fs::write(
        &p,
        format!(
            "dataset: news-tok\n{extra}stages:\n  docs:\n    type: jsonl\n    paths: [docs.jsonl]\n  hashed:\n    type: content_hash\n    inputs: [docs]\n  tok:\n    type: tokenize\n    inputs: [hashed]\n    tokenizer: tiktoken:cl100k_base\n    max_tokens: 512\n    overflow: split\n  out:\n    type: parquet\n    inputs: [tok]\n"
        ),
    )
    .unwrap();
    p
}

fn read_ids(
    root: &Path,
    manifest: &serde_json::Value,
) -> (Vec<String>, Vec<Vec<u32>>, std::collections::HashMap<String, String>) {
    let (mut ids, mut rows, mut kv) = (Vec::new(), Vec::new(), Default::default());
    for s in manifest["shards"].as_array().unwrap() {
        let bytes = bytes::Bytes::from(std::fs::read(root.join(s["path"].as_str().unwrap())).unwrap());
        let b = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
        kv = b
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .unwrap()
            .iter()
            .map(|k| (k.key.clone(), k.value.clone().unwrap_or_default()))
            .collect();
        for batch in b.build().unwrap() {
            let batch = batch.unwrap();
            let id = batch.column_by_name("id").unwrap().as_string::<i32>().clone();
            let l = batch.column_by_name("input_ids").unwrap().as_list::<i32>().clone();
            for r in 0..batch.num_rows() {
                ids.push(id.value(r).to_string());
                rows.push(l.value(r).as_primitive::<UInt32Type>().values().to_vec());
            }
        }
    }
    (ids, rows, kv)
}

/// Megatron-LM's `_IndexReader` (megatron/core/datasets/indexed_dataset.py), in Rust.
fn read_megatron(prefix: &str) -> (u8, Vec<Vec<u32>>, Vec<i64>) {
    let idx = std::fs::read(format!("{prefix}.idx")).unwrap();
    let bin = std::fs::read(format!("{prefix}.bin")).unwrap();
    assert_eq!(&idx[..9], b"MMIDIDX\x00\x00");
    let u64_at = |o: usize| u64::from_le_bytes(idx[o..o + 8].try_into().unwrap());
    assert_eq!(u64_at(9), 1, "version");
    let code = idx[17];
    let (n_seq, n_doc) = (u64_at(18) as usize, u64_at(26) as usize);
    let mut off = 34;
    let lengths: Vec<i32> =
        (0..n_seq).map(|i| i32::from_le_bytes(idx[off + 4 * i..off + 4 * i + 4].try_into().unwrap())).collect();
    off += 4 * n_seq;
    let pointers: Vec<i64> =
        (0..n_seq).map(|i| i64::from_le_bytes(idx[off + 8 * i..off + 8 * i + 8].try_into().unwrap())).collect();
    off += 8 * n_seq;
    let docs: Vec<i64> =
        (0..n_doc).map(|i| i64::from_le_bytes(idx[off + 8 * i..off + 8 * i + 8].try_into().unwrap())).collect();
    assert_eq!(off + 8 * n_doc, idx.len(), "nothing after the document indices");
    let size = if code == 8 { 2 } else { 4 };
    let seqs = lengths
        .iter()
        .zip(&pointers)
        .map(|(&l, &p)| {
            (0..l as usize)
                .map(|k| {
                    let o = p as usize + k * size;
                    if size == 2 {
                        u32::from(u16::from_le_bytes(bin[o..o + 2].try_into().unwrap()))
                    } else {
                        i32::from_le_bytes(bin[o..o + 4].try_into().unwrap()) as u32
                    }
                })
                .collect()
        })
        .collect();
    (code, seqs, docs)
}

#[test]
fn tokenize_commit_train_hook_and_export() {
    let env = Env::new();
    write_input(env.path());
    let hook_out = env.path().join("hook.txt");
    let train = format!("train: 'echo \"$SMELT_DATASET $SMELT_VERSION $SMELT_MANIFEST\" > {}'\n", hook_out.display());
    let p = pipeline(env.path(), &train);
    let summary = env.json(&["run", p.to_str().unwrap()]);
    assert_eq!(summary["version"], 1);
    assert_eq!(summary["train"]["exit_code"], 0, "{summary}");
    let root = env.data().join("datasets/news-tok");
    let manifest_path = root.join("_versions/000001.json");
    assert_eq!(std::fs::read_to_string(&hook_out).unwrap().trim(), format!("news-tok 1 {}", manifest_path.display()));

    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let (ids, rows, kv) = read_ids(&root, &manifest);
    assert_eq!(kv["smelt.tokenizer"], "tiktoken:cl100k_base");
    assert!(kv["smelt.tokenizer_hash"].starts_with("xxh3-128:"));
    assert_eq!(kv["smelt.eos_id"], "100257");
    let lineage = manifest["lineage"].to_string();
    assert!(lineage.contains(&kv["smelt.tokenizer_hash"]), "the lineage records the tokenizer hash");
    let tokens: u64 = manifest["stats"].as_array().unwrap().iter().map(|g| g["tokens"].as_u64().unwrap()).sum();
    assert_eq!(tokens, rows.iter().map(|r| r.len() as u64).sum::<u64>(), "n_tokens summed into the stats");
    assert!(!manifest["schema"].to_string().contains("\"text\""), "token shards drop the text");

    // The empty document is dropped with a reason; the lone surrogate (invalid
    // in JSON strings by RFC 8259, refused by serde_json) is skipped by the
    // jsonl source as a bad record, so no invalid text reaches the tokenizer.
    assert!(!ids.contains(&"empty".to_string()));
    assert!(!ids.iter().any(|i| i.starts_with("surrogate")), "{ids:?}");
    let funnel = manifest["funnel"].to_string();
    assert!(funnel.contains("empty_text"), "{funnel}");
    // The 5000-letter run becomes several rows of at most 512 tokens.
    let run_rows: Vec<usize> = ids.iter().enumerate().filter(|(_, i)| i.starts_with("run#")).map(|(k, _)| k).collect();
    assert!(run_rows.len() >= 2 && run_rows.iter().all(|&k| rows[k].len() <= 512));
    assert_eq!(ids[run_rows[0]], "run#0");

    // Megatron: one sequence per row, int32 (cl100k has more than 65500 ids).
    let out = env.path().join("export");
    let s =
        env.ok(&["export", "news-tok@1", "--format", "megatron", "--out", out.to_str().unwrap(), "--summary", "json"]);
    let s: serde_json::Value = serde_json::from_str(&s).unwrap();
    assert_eq!((s["dtype"].as_str(), s["sequences"].as_u64()), (Some("int32"), Some(rows.len() as u64)));
    let (code, seqs, docs) = read_megatron(out.join("news-tok-v1").to_str().unwrap());
    assert_eq!(code, 4);
    assert_eq!(seqs, rows);
    assert_eq!(docs, (0..=rows.len() as i64).collect::<Vec<_>>());

    // nanoGPT, packed: every sequence 64 tokens, the stream is the rows in order.
    let s = env.ok(&[
        "export",
        "news-tok",
        "--format",
        "nanogpt",
        "--out",
        out.to_str().unwrap(),
        "--pack",
        "64",
        "--summary",
        "json",
    ]);
    let s: serde_json::Value = serde_json::from_str(&s).unwrap();
    let stream: Vec<u32> = rows.concat();
    let bin = std::fs::read(out.join("news-tok-v1.bin")).unwrap();
    let flat: Vec<u32> = bin.chunks(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(s["dtype"], "uint32");
    assert_eq!(flat.len() as u64, s["sequences"].as_u64().unwrap() * 64);
    assert_eq!(flat[..], stream[..flat.len()]);
    assert_eq!(s["dropped_tail_tokens"].as_u64().unwrap() as usize, stream.len() - flat.len());

    // JSONL keeps ids.
    env.ok(&["export", "news-tok@1", "--format", "jsonl", "--out", out.to_str().unwrap()]);
    let text = std::fs::read_to_string(out.join("news-tok-v1.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["id"], ids[0].as_str());
    assert_eq!(first["input_ids"].as_array().unwrap().len(), rows[0].len());
}

#[test]
fn a_failing_train_command_keeps_the_version_and_exits_5() {
    let env = Env::new();
    write_input(env.path());
    let p = pipeline(env.path(), "train: 'exit 3'\n");
    let out = env.smelt(&["run", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("news-tok@1 is committed, but its train command failed (exit code 3)"));
    assert!(env.data().join("datasets/news-tok/_versions/000001.json").exists());
}

#[test]
fn a_broken_tokenizer_file_is_named_by_validate() {
    let env = Env::new();
    std::fs::write(env.path().join("tokenizer.json"), "{ not json").unwrap();
    std::fs::write(env.path().join("docs.jsonl"), "{\"id\": \"a\", \"text\": \"x\"}\n").unwrap();
    let p = env.path().join("p.yaml");
    std::fs::write(&p, "dataset: t\nstages:\n  d:\n    type: jsonl\n    paths: [docs.jsonl]\n  h:\n    type: content_hash\n    inputs: [d]\n  t:\n    type: tokenize\n    inputs: [h]\n    tokenizer: tokenizer.json\n  o:\n    type: parquet\n    inputs: [t]\n").unwrap();
    let out = env.smelt(&["validate", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(all.contains("tokenizer.json") && all.contains("does not parse"), "{all}");
    let out = env.smelt(&["export", "t@1", "--format", "jsonl", "--out", env.path().join("x").to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
}

/// The `jsonl` export of `version` with `extra` arguments: its `(id, input_ids)` lines.
fn exported(env: &Env, version: &str, dir: &str, extra: &[&str]) -> (Vec<String>, serde_json::Value) {
    let out = env.path().join(dir);
    let mut args = vec!["export", version, "--format", "jsonl", "--out", out.to_str().unwrap(), "--summary", "json"];
    args.extend(extra);
    let summary: serde_json::Value = serde_json::from_str(&env.ok(&args)).unwrap();
    let name = format!("{}.jsonl", version.replace('@', "-v"));
    let text = std::fs::read_to_string(out.join(name)).unwrap();
    (text.lines().map(str::to_string).collect(), summary)
}

#[test]
fn export_shuffles_globally_with_a_seed_in_bounded_buckets() {
    let env = Env::new();
    std::fs::write(env.path().join("docs.jsonl"), common::noisy_jsonl(300, 40)).unwrap();
    let p = pipeline(env.path(), "");
    env.ok(&["run", p.to_str().unwrap()]);
    let (plain, _) = exported(&env, "news-tok@1", "plain", &[]);
    assert_eq!(plain.len(), 300);
    let mut sorted = plain.clone();
    sorted.sort();
    for buckets in ["1", "3", "64"] {
        let args = ["--shuffle", "global", "--seed", "7", "--shuffle-buckets", buckets];
        let (a, summary) = exported(&env, "news-tok@1", &format!("a{buckets}"), &args);
        let (b, _) = exported(&env, "news-tok@1", &format!("b{buckets}"), &args);
        assert_eq!(a, b, "the same seed gives the same order");
        assert_ne!(a, plain, "{buckets} buckets: shuffled");
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, sorted, "{buckets} buckets: a permutation of the same sequences");
        assert_eq!(summary["shuffle"]["buckets"].as_u64(), Some(buckets.parse().unwrap()));
        let (other, _) = exported(
            &env,
            "news-tok@1",
            &format!("c{buckets}"),
            &["--shuffle", "global", "--seed", "8", "--shuffle-buckets", buckets],
        );
        assert_ne!(other, a, "another seed, another order");
    }
    // Packed sequences are shuffled too (Megatron and nanoGPT read them in file order).
    let (packed, _) = exported(&env, "news-tok@1", "p1", &["--pack", "16"]);
    let (shuffled, _) = exported(&env, "news-tok@1", "p2", &["--pack", "16", "--shuffle", "global"]);
    let (mut x, mut y) = (packed.clone(), shuffled.clone());
    x.sort();
    y.sort();
    assert_eq!(x, y);
    assert_ne!(packed, shuffled);
}
