//! Throughput of the `pii` and `toxicity` transforms on one thread.
//!
//! ```text
//! JSONL (text, url, lang) ──► batches of 1,024 rows in memory
//!     ──► N × pii.process ──────────────────────────► docs/s, MB/s, redactions per kind
//!     ──► N × toxicity.process (flag, each config) ──► docs/s, MB/s, flagged docs
//! ```
//!
//! Usage:
//!
//! ```text
//! cargo build --release --workspace --example bench_pii_toxicity   # workspace features, as the smelt binary
//! target/release/examples/bench_pii_toxicity [--iters N] [--show N] FILE.jsonl
//! target/release/examples/bench_pii_toxicity --stage decontaminate '{"benchmarks": ["items.jsonl"]}' FILE.jsonl
//! ```
//!
//! `--stage NAME OPTIONS` measures that one transform (`pii`, `toxicity` or
//! `decontaminate`) with those options instead, relative paths in them
//! taken from the working directory.
//!
//! Prints one JSON object per measured stage (the best of N runs) to stdout.
//! `--show N` first prints up to N PII matches of each kind with some context
//! to stderr, for checking what is redacted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, AsArray, LargeStringArray, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use smelt_engine::stage::doc;
use smelt_engine::{ConfigureContext, Processed, StageConfig};

fn main() {
    let mut iters: usize = 3;
    let mut show: usize = 0;
    let mut files = Vec::new();
    let mut only: Option<(String, serde_json::Value)> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--iters" => match args.next().and_then(|v| v.parse().ok()) {
                Some(n) if n > 0 => iters = n,
                _ => {
                    eprintln!("--iters needs a positive number");
                    std::process::exit(2);
                }
            },
            "--stage" => match (args.next(), args.next().map(|o| serde_json::from_str(&o))) {
                (Some(name), Some(Ok(options))) => only = Some((name, options)),
                _ => {
                    eprintln!("--stage needs a stage name and its options as JSON");
                    std::process::exit(2);
                }
            },
            "--show" => show = args.next().and_then(|v| v.parse().ok()).unwrap_or(20),
            _ => files.push(arg),
        }
    }
    let [file] = files.as_slice() else {
        eprintln!("usage: bench_pii_toxicity [--iters N] FILE.jsonl");
        std::process::exit(2);
    };
    let batches = read_batches(file);
    if show > 0 {
        show_pii(&batches, show);
    }
    let docs: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let bytes: usize = batches.iter().map(|b| b.column(1).as_string::<i64>().value_data().len()).sum();
    let stages = match only {
        Some(stage) => vec![stage],
        None => vec![
            ("pii".to_string(), serde_json::json!({})),
            ("toxicity".to_string(), serde_json::json!({"mode": "flag"})),
            ("toxicity".to_string(), serde_json::json!({"mode": "flag", "languages": ["en"]})),
        ],
    };
    for (name, options) in stages {
        let configure = match name.as_str() {
            "pii" => smelt_stages::pii::configure,
            "toxicity" => smelt_stages::toxicity::configure,
            "decontaminate" => smelt_stages::decontaminate::configure,
            _ => {
                eprintln!("--stage: `{name}` is not one of pii, toxicity, decontaminate");
                std::process::exit(2);
            }
        };
        let Ok(StageConfig::Transform(cfg)) = configure(options.clone(), &ConfigureContext::working_dir()) else {
            panic!("{name}: bad options {options}")
        };
        let schema = batches[0].schema();
        let mut best = f64::INFINITY;
        let mut counters = BTreeMap::new();
        let mut flagged = 0;
        let mut outputs = Vec::with_capacity(batches.len());
        for _ in 0..iters {
            let mut t = cfg.build(&schema).expect("build");
            flagged = 0;
            outputs.clear();
            let start = Instant::now();
            for b in &batches {
                match t.process(b.clone()).expect("process") {
                    Processed::Batch(out) => {
                        if let Some(c) = out.column_by_name("toxic") {
                            flagged += c.as_boolean().true_count();
                        }
                        outputs.push(out);
                    }
                    Processed::Filtered { verdicts, .. } => flagged += verdicts.iter().flatten().count(),
                }
            }
            best = best.min(start.elapsed().as_secs_f64());
            counters = t.take_counters();
        }
        // Which documents were flagged (outside the timing), for the comparison of id sets.
        let mut flagged_ids = Vec::new();
        for out in &outputs {
            if let (Some(toxic), Some(ids)) = (out.column_by_name("toxic"), out.column_by_name("id")) {
                let (toxic, ids) = (toxic.as_boolean(), ids.as_string::<i32>());
                flagged_ids.extend((0..out.num_rows()).filter(|&i| toxic.value(i)).map(|i| ids.value(i).to_string()));
            }
        }
        let summary: BTreeMap<&String, &u64> = counters.iter().filter(|(k, _)| !k.starts_with("match:")).collect();
        println!(
            "{}",
            serde_json::json!({
                "stage": name,
                "options": options,
                "docs": docs,
                "mb": bytes as f64 / 1e6,
                "seconds": best,
                "docs_per_s": docs as f64 / best,
                "mb_per_s": bytes as f64 / 1e6 / best,
                "flagged": flagged,
                "flagged_ids": flagged_ids,
                "counters": summary,
            })
        );
    }
}

fn show_pii(batches: &[RecordBatch], per_kind: usize) {
    use smelt_stages::pii::{Detector, PiiKind};
    let detector = Detector::new(&PiiKind::ALL, true);
    let mut shown = [0usize; 4];
    let mut spans = Vec::new();
    for b in batches {
        let text = b.column(1).as_string::<i64>();
        for i in 0..b.num_rows() {
            let t = text.value(i);
            detector.find(t, &mut spans);
            for s in &spans {
                let k = PiiKind::ALL.iter().position(|k| *k == s.kind).unwrap_or(0);
                if shown[k] < per_kind {
                    shown[k] += 1;
                    let from = t.floor_char_boundary(s.start.saturating_sub(30));
                    let to = t.ceil_char_boundary((s.end + 30).min(t.len()));
                    let ctx = format!("{}[{}]{}", &t[from..s.start], &t[s.start..s.end], &t[s.end..to]);
                    eprintln!("{:5} {}", s.kind.as_str(), ctx.replace('\n', " "));
                }
            }
        }
    }
}

fn read_batches(path: &str) -> Vec<RecordBatch> {
    let data = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let schema =
        Arc::new(Schema::new(vec![doc::id(), doc::text(), doc::url(), Field::new("lang", DataType::Utf8, true)]));
    let rows: Vec<serde_json::Value> = data
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{path}: {e}")))
        .collect();
    let field = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    rows.chunks(1024)
        .map(|chunk| {
            let cols: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from(
                    chunk.iter().map(|v| field(v, "id").unwrap_or_default()).collect::<Vec<_>>(),
                )),
                Arc::new(LargeStringArray::from(
                    chunk.iter().map(|v| field(v, "text").unwrap_or_default()).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(chunk.iter().map(|v| field(v, "url")).collect::<Vec<_>>())),
                Arc::new(StringArray::from(chunk.iter().map(|v| field(v, "lang")).collect::<Vec<_>>())),
            ];
            RecordBatch::try_new(schema.clone(), cols).expect("batch")
        })
        .collect()
}
