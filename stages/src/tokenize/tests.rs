use std::time::{Duration, Instant};

use arrow::array::{AsArray, LargeStringArray, StringArray};
use arrow::datatypes::UInt32Type;

use super::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizers")
}

fn config(options: serde_json::Value) -> Arc<dyn TransformConfig> {
    match configure(options, &ConfigureContext::new(fixtures(), "smelt-data")).unwrap() {
        StageConfig::Transform(t) => t,
        other => panic!("not a transform: {other:?}"),
    }
}

fn docs(texts: &[Option<&str>]) -> RecordBatch {
    let ids: Vec<String> = (0..texts.len()).map(|i| format!("d{i}")).collect();
    RecordBatch::try_from_iter_with_nullable([
        ("id", Arc::new(StringArray::from(ids)) as ArrayRef, false),
        ("text", Arc::new(LargeStringArray::from(texts.to_vec())) as ArrayRef, true),
        ("source", Arc::new(StringArray::from(vec!["test"; texts.len()])) as ArrayRef, false),
    ])
    .unwrap()
}

fn run(cfg: &Arc<dyn TransformConfig>, batch: RecordBatch) -> (RecordBatch, Vec<Option<Cow<'static, str>>>) {
    let mut t = cfg.build(&batch.schema()).unwrap();
    match t.process(batch).unwrap() {
        Processed::Batch(b) => {
            let n = b.num_rows();
            (b, vec![None; n])
        }
        Processed::Filtered { batch, verdicts } => (batch, verdicts),
    }
}

fn ids_of(b: &RecordBatch, row: usize) -> Vec<u32> {
    let l = b.column_by_name("input_ids").unwrap().as_list::<i32>();
    l.value(row).as_primitive::<UInt32Type>().values().to_vec()
}

/// Ids from HF `tokenizers` and `tiktoken` (Python) for real news texts and
/// odd strings (bench/tokenize_golden.py wrote them).
#[test]
fn ids_match_the_python_libraries() {
    let golden: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("golden.json")).unwrap()).unwrap();
    let texts: Vec<&str> = golden["texts"].as_array().unwrap().iter().map(|t| t["text"].as_str().unwrap()).collect();
    let specs = golden["ids"].as_object().unwrap();
    assert_eq!(specs.len(), 6, "four OpenAI encodings and two tokenizer.json files");
    for (spec, expected) in specs {
        let tok = Loaded::load(spec, &fixtures().join(spec)).unwrap();
        for (i, (text, want)) in texts.iter().zip(expected.as_array().unwrap()).enumerate() {
            let want: Vec<u32> = want.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            let mut got = Vec::new();
            tok.encode(text, &mut got).unwrap();
            assert_eq!(got, want, "{spec}, text {i} ({:?})", golden["texts"][i]["name"]);
        }
    }
}

#[test]
fn stage_adds_ids_and_records_the_tokenizer() {
    let cfg = config(serde_json::json!({"tokenizer": "tiktoken:cl100k_base"}));
    let batch = docs(&[Some("Hello world"), Some(""), None, Some("  ")]);
    let out_schema = cfg.output_schema(&batch.schema()).unwrap();
    assert!(out_schema.field_with_name("text").is_err(), "text dropped by default");
    assert_eq!(out_schema.metadata()[META_TOKENIZER], "tiktoken:cl100k_base");
    assert!(out_schema.metadata()[META_TOKENIZER_HASH].starts_with("xxh3-128:"));
    assert_eq!(out_schema.metadata()[META_EOS_ID], "100257");
    let resolved = cfg.resolved();
    assert_eq!(resolved["tokenizer_hash"], out_schema.metadata()[META_TOKENIZER_HASH].as_str());
    assert_eq!(resolved["eos_id"], 100257);
    let (b, verdicts) = run(&cfg, batch);
    assert_eq!(ids_of(&b, 0), vec![9906, 1917, 100257]);
    assert_eq!(b.column_by_name("n_tokens").unwrap().as_primitive::<UInt32Type>().value(0), 3);
    assert_eq!(verdicts[0], None);
    assert_eq!(verdicts[1].as_deref(), Some("empty_text"));
    assert_eq!(verdicts[2].as_deref(), Some("empty_text"), "null text");
    assert_eq!(verdicts[3], None, "whitespace is text: it has tokens");
    assert_eq!(b.schema().metadata(), out_schema.metadata());
}

#[test]
fn truncate_keeps_eos_and_split_makes_numbered_rows() {
    let text = "one two three four five six seven eight nine ten";
    let full = {
        let cfg = config(serde_json::json!({"tokenizer": "tiktoken:r50k_base"}));
        ids_of(&run(&cfg, docs(&[Some(text)])).0, 0)
    };
    assert_eq!(full.len(), 11);
    assert_eq!(*full.last().unwrap(), 50256);

    let cfg = config(serde_json::json!({"tokenizer": "tiktoken:r50k_base", "max_tokens": 4}));
    let (b, _) = run(&cfg, docs(&[Some(text)]));
    assert_eq!(ids_of(&b, 0), [&full[..3], &[50256]].concat());

    let cfg = config(
        serde_json::json!({"tokenizer": "tiktoken:r50k_base", "max_tokens": 4, "overflow": "split", "keep_text": true}),
    );
    let (b, verdicts) = run(&cfg, docs(&[Some("short"), Some(text)]));
    assert_eq!(b.num_rows(), 4);
    assert!(verdicts.iter().all(Option::is_none));
    let ids: Vec<&str> = (0..4).map(|i| b.column_by_name("id").unwrap().as_string::<i32>().value(i)).collect();
    assert_eq!(ids, ["d0", "d1#0", "d1#1", "d1#2"]);
    let joined: Vec<u32> = (1..4).flat_map(|r| ids_of(&b, r)).collect();
    assert_eq!(joined, full, "the split rows concatenate to the whole document");
    assert_eq!(b.column_by_name("text").unwrap().as_string::<i64>().value(3), text, "other columns repeat");
    let mut t = cfg.build(&docs(&[]).schema()).unwrap();
    t.process(docs(&[Some(text)])).unwrap();
    let counters = t.take_counters();
    assert_eq!((counters["split_docs"], counters["tokens"]), (1, 11));
}

#[test]
fn bos_and_eos_defaults_and_choices() {
    // BERT: [CLS] ... [SEP] by default, ids 101 and 102.
    let cfg = config(serde_json::json!({"tokenizer": "bert-tokenizer.json"}));
    let (b, _) = run(&cfg, docs(&[Some("Hello, World!")]));
    assert_eq!(ids_of(&b, 0), vec![101, 7592, 1010, 2088, 999, 102]);
    // Qwen3: no BOS, `<|endoftext|>` (151643) after each document.
    let cfg = config(serde_json::json!({"tokenizer": "qwen3-tokenizer.json", "add_bos": "<|im_start|>"}));
    let (b, _) = run(&cfg, docs(&[Some("Hello")]));
    assert_eq!(ids_of(&b, 0), vec![151644, 9707, 151643]);
    let cfg = config(serde_json::json!({"tokenizer": "tiktoken:o200k_base", "add_eos": false, "add_bos": 199999}));
    let (b, _) = run(&cfg, docs(&[Some("Hello")]));
    assert_eq!(ids_of(&b, 0), vec![199999, 13225]);

    for (options, message) in [
        (serde_json::json!({"tokenizer": "tiktoken:cl100k_base", "add_bos": true}), "no usual bos token"),
        (serde_json::json!({"tokenizer": "tiktoken:cl100k_base", "add_eos": "</s>"}), "`</s>` is not a token"),
        (serde_json::json!({"tokenizer": "bert-tokenizer.json", "add_eos": 999999}), "outside the vocabulary"),
    ] {
        let cfg = config(options);
        let e = cfg.output_schema(&docs(&[]).schema()).unwrap_err();
        assert!(e.0.contains(message), "{}", e.0);
    }
}

#[test]
fn bad_tokenizers_are_reported_with_their_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.json"), b"{\"version\": \"1.0\", \"model\": 42}").unwrap();
    let ctx = ConfigureContext::new(dir.path(), "smelt-data");
    let StageConfig::Transform(cfg) = configure(serde_json::json!({"tokenizer": "broken.json"}), &ctx).unwrap() else {
        panic!()
    };
    let e = cfg.output_schema(&docs(&[]).schema()).unwrap_err();
    assert!(e.0.contains("broken.json") && e.0.contains("does not parse"), "{}", e.0);
    let Err(EngineError::User(m)) = cfg.build(&docs(&[]).schema()) else { panic!("a user error") };
    assert!(m.contains("broken.json"), "{m}");

    let StageConfig::Transform(cfg) =
        configure(serde_json::json!({"tokenizer": "missing.json"}), &ConfigureContext::working_dir()).unwrap()
    else {
        panic!()
    };
    let e = cfg.output_schema(&docs(&[]).schema()).unwrap_err();
    assert!(e.0.contains("cannot read tokenizer file") && e.0.contains("missing.json"), "{}", e.0);

    let e = configure(serde_json::json!({"tokenizer": "tiktoken:gpt5"}), &ConfigureContext::working_dir()).unwrap_err();
    assert!(e.message.contains("unknown OpenAI encoding `gpt5`"), "{}", e.message);
    let e = configure(
        serde_json::json!({"tokenizer": "tiktoken:cl100k_base", "max_tokens": 1}),
        &ConfigureContext::working_dir(),
    )
    .unwrap_err();
    assert_eq!(e.path, vec![PathSeg::Key("max_tokens".into())]);
    let e = configure(serde_json::json!({"tokenizer": "x.json", "max_token": 5}), &ConfigureContext::working_dir())
        .unwrap_err();
    assert!(e.at_key, "{e:?}");
}

/// A 10 MB text with no space is one regex piece for every tokenizer here;
/// tiktoken's byte-pair step is quadratic in it, ours must stay linear.
#[test]
fn a_10_mb_run_without_spaces_finishes_in_bounded_time() {
    let run_of_letters = "a".repeat(10 << 20);
    let mixed: String = "xq7Zé".repeat(2 << 20);
    for spec in ["tiktoken:cl100k_base", "tiktoken:o200k_base", "tiktoken:r50k_base", "qwen3-tokenizer.json"] {
        let tok = Loaded::load(spec, &fixtures().join(spec)).unwrap();
        for text in [&run_of_letters, &mixed] {
            let start = Instant::now();
            let mut ids = Vec::new();
            tok.encode(text, &mut ids).unwrap();
            let took = start.elapsed();
            assert!(!ids.is_empty() && ids.len() < text.len());
            assert!(took < Duration::from_secs(60), "{spec}: {took:?} for {} bytes", text.len());
            eprintln!("{spec}: {} bytes -> {} ids in {took:?}", text.len(), ids.len());
        }
    }
}

/// Qwen3's tokenizer.json runs on the byte-level BPE backend and gives HF
/// `tokenizers` (Python)'s ids on corner cases (bench/tokenize_bytelevel_golden.py
/// wrote them): contractions in capitals, digits, CRLF, trailing and Unicode
/// spaces, text NFC changes, emoji, CJK, added tokens inside text.
#[test]
fn qwen3_runs_on_the_byte_level_backend_with_hf_ids() {
    let spec = "qwen3-tokenizer.json";
    let tok = Loaded::load(spec, &fixtures().join(spec)).unwrap();
    assert_eq!(tok.backend, "bpe (byte-level, qwen2 regex)");
    let golden: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("bytelevel-golden.json")).unwrap()).unwrap();
    let cases = golden["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let mut got = Vec::new();
        tok.encode(text, &mut got).unwrap();
        assert_eq!(got, want, "{text:?}");
    }
    // Added tokens are split out before the regex, wherever they sit.
    let mut ids = Vec::new();
    tok.encode("a<|im_start|>b", &mut ids).unwrap();
    assert_eq!(ids[1], 151644, "{ids:?}");
    assert_eq!(ids.len(), 3, "{ids:?}");
    // The stage records which backend ran in the lineage.
    let cfg = config(serde_json::json!({"tokenizer": spec}));
    assert_eq!(cfg.resolved()["tokenizer_backend"], "bpe (byte-level, qwen2 regex)");
    let cfg = config(serde_json::json!({"tokenizer": "bert-tokenizer.json"}));
    assert_eq!(cfg.resolved()["tokenizer_backend"], "tokenizers");
}

/// A file the byte-level backend cannot prove equal to HF falls back to the
/// `tokenizers` crate, saying why, and still gives HF's ids.
#[test]
fn byte_level_files_it_cannot_reproduce_fall_back_to_the_tokenizers_crate() {
    let original: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("qwen3-tokenizer.json")).unwrap()).unwrap();
    assert!(super::bytelevel::ByteLevelBpe::from_json(&original).is_ok());
    let edits: [(&str, fn(&mut serde_json::Value)); 6] = [
        ("ignore_merges", |j| j["model"]["ignore_merges"] = true.into()),
        ("ranks differ from ids", |j| j["model"]["merges"].as_array_mut().unwrap().swap(100, 101)),
        ("normalizer", |j| j["normalizer"] = serde_json::json!({"type": "NFKC"})),
        ("pre-tokenizer", |j| j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\s+|\\S+".into()),
        ("lstrip", |j| j["added_tokens"][1]["lstrip"] = true.into()),
        ("neither a byte nor made by a merge", |j| {
            j["model"]["merges"].as_array_mut().unwrap().pop();
        }),
    ];
    for (reason, edit) in edits {
        let mut json = original.clone();
        edit(&mut json);
        let why = super::bytelevel::ByteLevelBpe::from_json(&json).err().unwrap_or_default();
        assert!(why.contains(reason), "{reason}: {why}");
    }
    // Through Loaded: the edited file runs in the tokenizers crate, with its own ids.
    let mut json = original.clone();
    json["model"]["ignore_merges"] = true.into();
    let bytes = serde_json::to_vec(&json).unwrap();
    let tok = Loaded::hf("edited.json", &bytes, "edited.json").unwrap();
    assert_eq!(tok.backend, "tokenizers");
    let mut ids = Vec::new();
    tok.encode("Hello world", &mut ids).unwrap();
    assert_eq!(ids, [9707, 1879]);
}
