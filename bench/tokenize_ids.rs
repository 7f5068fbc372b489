//! Token ids and single-thread throughput of smelt's tokenizers over JSON
//! Lines texts, for bench/tokenize.sh (parity with the Python libraries and
//! speed against them).
//!
//! ```text
//! cargo build --release --example tokenize_ids
//! target/release/examples/tokenize_ids --tokenizer tiktoken:cl100k_base --input texts.jsonl [--ids-out ids.jsonl] [--repeat 3]
//! ```
//! Input lines are objects with a `text` field. Prints one JSON object:
//! docs, bytes, tokens and the best of `--repeat` timings (encode only, texts in memory):
//! wall clock and this thread's CPU time (the figure to compare on a loaded machine).

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Instant;

use smelt_stages::tokenize::Loaded;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut spec, mut input, mut ids_out, mut repeat) = (None, None, None, 1usize);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--tokenizer" => spec = args.next(),
            "--input" => input = args.next().map(PathBuf::from),
            "--ids-out" => ids_out = args.next().map(PathBuf::from),
            "--repeat" => repeat = args.next().ok_or("--repeat N")?.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let spec = spec.ok_or("--tokenizer SPEC")?;
    let input = input.ok_or("--input FILE")?;
    let texts: Vec<String> = std::io::BufReader::new(std::fs::File::open(&input)?)
        .lines()
        .map(|l| -> Result<String, Box<dyn std::error::Error>> {
            let v: serde_json::Value = serde_json::from_str(&l?)?;
            Ok(v["text"].as_str().unwrap_or_default().to_string())
        })
        .collect::<Result<_, _>>()?;
    let load_start = Instant::now();
    let tok = Loaded::load(&spec, std::path::Path::new(&spec))?;
    let load_s = load_start.elapsed().as_secs_f64();
    let bytes: usize = texts.iter().map(String::len).sum();
    let mut best = f64::INFINITY;
    let mut best_cpu = f64::INFINITY;
    let mut tokens = 0usize;
    let mut ids = Vec::new();
    for _ in 0..repeat.max(1) {
        tokens = 0;
        let start = Instant::now();
        let cpu_start = thread_cpu_seconds();
        for t in &texts {
            ids.clear();
            tok.encode(t, &mut ids)?;
            tokens += ids.len();
        }
        best = best.min(start.elapsed().as_secs_f64());
        best_cpu = best_cpu.min(thread_cpu_seconds() - cpu_start);
    }
    if let Some(path) = ids_out {
        let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
        for t in &texts {
            ids.clear();
            tok.encode(t, &mut ids)?;
            serde_json::to_writer(&mut w, &ids)?;
            w.write_all(b"\n")?;
        }
    }
    let out = serde_json::json!({
        "tokenizer": spec, "backend": tok.backend, "hash": tok.hash, "docs": texts.len(), "bytes": bytes, "tokens": tokens,
        "seconds": best, "mb_per_s": bytes as f64 / 1e6 / best, "tokens_per_s": tokens as f64 / best, "load_s": load_s,
        "cpu_seconds": best_cpu, "cpu_mb_per_s": bytes as f64 / 1e6 / best_cpu,
    });
    println!("{out}");
    Ok(())
}

/// CPU time this thread has used (CLOCK_THREAD_CPUTIME_ID).
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}
