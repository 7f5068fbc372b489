//! WARC reading throughput on one thread: every record read, every `response`
//! block parsed as HTTP and its body length summed (the same work as the
//! fastwarc side of `bench/warc_read.sh`).
//!
//! ```text
//! cargo run --release -p smelt-connectors --example bench_warc -- [--json] [--runs N] FILE...
//! ```
//!
//! Prints records, response records, errors by kind, uncompressed MB/s
//! (MB = 10^6 bytes of decoded WARC) and records/s, from the median wall time
//! of N runs (default 1).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use smelt_connectors::warc::{parse_http_response, WarcReader};

#[derive(Default, Clone)]
struct Counts {
    records: u64,
    responses: u64,
    http_bodies: u64,
    body_bytes: u64,
    errors: BTreeMap<&'static str, u64>,
    uncompressed: u64,
    compressed: u64,
}

fn read_files(files: &[PathBuf]) -> std::io::Result<Counts> {
    let mut c = Counts::default();
    for path in files {
        let mut reader = WarcReader::open(path)?;
        for item in &mut reader {
            match item {
                Ok(record) => {
                    c.records += 1;
                    if record.warc_type() == Some("response") {
                        c.responses += 1;
                        if let Some(http) = parse_http_response(&record.block) {
                            c.http_bodies += 1;
                            c.body_bytes += http.body.len() as u64;
                        }
                    }
                }
                Err(e) => *c.errors.entry(e.kind.as_str()).or_default() += 1,
            }
        }
        c.uncompressed += reader.uncompressed_bytes();
        c.compressed += reader.compressed_bytes();
    }
    Ok(c)
}

/// User + system CPU seconds of this process (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall, in clock ticks (100 per second on Linux).
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

fn main() -> ExitCode {
    let mut json = false;
    let mut runs = 1usize;
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => json = true,
            "--runs" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => runs = n,
                _ => {
                    eprintln!("--runs needs a positive number");
                    return ExitCode::from(2);
                }
            },
            "-h" | "--help" => {
                println!("usage: bench_warc [--json] [--runs N] FILE...");
                return ExitCode::SUCCESS;
            }
            _ => files.push(PathBuf::from(a)),
        }
    }
    if files.is_empty() {
        eprintln!("usage: bench_warc [--json] [--runs N] FILE...");
        return ExitCode::from(2);
    }

    let mut walls = Vec::with_capacity(runs);
    let mut cpus = Vec::with_capacity(runs);
    let mut counts = Counts::default();
    for _ in 0..runs {
        let (t, c0) = (Instant::now(), cpu_seconds());
        counts = match read_files(&files) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("bench_warc: {e}");
                return ExitCode::FAILURE;
            }
        };
        walls.push(t.elapsed().as_secs_f64());
        cpus.push(cpu_seconds() - c0);
    }
    let wall = median(&walls);
    let mb_s = counts.uncompressed as f64 / 1e6 / wall;
    let gz_mb_s = counts.compressed as f64 / 1e6 / wall;
    let rec_s = counts.records as f64 / wall;
    if json {
        let out = serde_json::json!({
            "tool": "smelt",
            "files": files.len(),
            "runs": runs,
            "median_wall_s": wall,
            "walls": walls,
            "cpu_s": cpus,
            "records": counts.records,
            "responses": counts.responses,
            "http_bodies": counts.http_bodies,
            "body_bytes": counts.body_bytes,
            "errors": counts.errors,
            "uncompressed_bytes": counts.uncompressed,
            "compressed_bytes": counts.compressed,
            "uncompressed_MB_per_s": mb_s,
            "compressed_MB_per_s": gz_mb_s,
            "records_per_s": rec_s,
        });
        let _ = writeln!(std::io::stdout(), "{out}");
    } else {
        // A closed pipe (`| head`) is not an error worth a panic.
        let _ = writeln!(
            std::io::stdout(),
            "files={} runs={runs} median={wall:.3}s records={} responses={} errors={:?}\n\
             uncompressed {:.1} MB -> {mb_s:.1} MB/s   compressed {:.1} MB -> {gz_mb_s:.1} MB/s   {rec_s:.0} records/s   cpu {:.2}s",
            files.len(),
            counts.records,
            counts.responses,
            counts.errors,
            counts.uncompressed as f64 / 1e6,
            counts.compressed as f64 / 1e6,
            median(&cpus)
        );
    }
    ExitCode::SUCCESS
}
