//! WARC reading throughput on one thread, doing the work of the fastwarc side of
//! `bench/warc_read.sh` (`ArchiveIterator(parse_http=True)` and
//! `rec.reader.read()` for every record): every record read; every
//! `application/http` block (responses and requests) parsed as HTTP, its header
//! fields split into name and value; every record's payload (the HTTP body, or
//! the whole block for other records) counted, so that the two sides' payload
//! byte totals can be compared.
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
                    let response = record.warc_type() == Some("response");
                    c.responses += u64::from(response);
                    let is_http = record.content_type().is_some_and(|t| t.starts_with("application/http"));
                    let payload = if !is_http {
                        record.block.len()
                    } else if response {
                        match parse_http_response(&record.block) {
                            Some(http) => {
                                c.http_bodies += 1;
                                http.body.len()
                            }
                            None => record.block.len(),
                        }
                    } else {
                        c.http_bodies += 1;
                        http_request_body(&record.block).len()
                    };
                    c.body_bytes += payload as u64;
                }
                Err(e) => *c.errors.entry(e.kind.as_str()).or_default() += 1,
            }
        }
        c.uncompressed += reader.uncompressed_bytes();
        c.compressed += reader.compressed_bytes();
    }
    Ok(c)
}

/// A request block's body after its request line and header fields, the
/// fields split into name and value as fastwarc's `parse_http` does (smelt's
/// sources never need requests, so the library has no request parser).
fn http_request_body(block: &[u8]) -> &[u8] {
    let mut fields: Vec<(&str, &str)> = Vec::with_capacity(16);
    let mut rest = block;
    let mut first = true;
    while let Some(i) = rest.iter().position(|&b| b == b'\n') {
        let line = rest[..i].strip_suffix(b"\r").unwrap_or(&rest[..i]);
        rest = &rest[i + 1..];
        if line.is_empty() {
            break;
        }
        if std::mem::take(&mut first) {
            continue; // the request line
        }
        if let Some((name, value)) = std::str::from_utf8(line).ok().and_then(|l| l.split_once(':')) {
            fields.push((name.trim(), value.trim()));
        }
    }
    std::hint::black_box(&fields);
    rest
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
