//! Throughput of the plain HTML extractor on one thread.
//!
//! ```text
//! files / directories ──► read all into memory ──► N × (decode_html ──► html_to_text) ──► pages/s, MB/s
//! ```
//!
//! Usage:
//!
//! ```text
//! cargo run --release -p smelt-stages --example bench_html -- [--iters N] [--print] DIR_OR_FILE...
//! ```
//!
//! Directories are read one level deep (files ending in `.html` or `.htm`).
//! `--print` writes each page's encoding and text to stdout instead of timing.

use std::path::{Path, PathBuf};
use std::time::Instant;

use smelt_stages::html::{decode_html, html_to_text, TextOptions};

fn main() {
    let mut iters: usize = 20;
    let mut print = false;
    let mut paths = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--iters" => {
                let Some(n) = args.next().and_then(|v| v.parse().ok()) else {
                    eprintln!("--iters needs a positive number");
                    std::process::exit(2);
                };
                iters = n;
            }
            "--print" => print = true,
            _ => paths.push(PathBuf::from(arg)),
        }
    }
    if paths.is_empty() {
        eprintln!("usage: bench_html [--iters N] [--print] DIR_OR_FILE...");
        std::process::exit(2);
    }

    let pages = match load(&paths) {
        Ok(pages) => pages,
        Err(e) => {
            eprintln!("bench_html: {e}");
            std::process::exit(1);
        }
    };
    let options = TextOptions::default();

    if print {
        for (path, bytes) in &pages {
            let (html, encoding) = decode_html(bytes, None, None);
            let text = html_to_text(&html, &options);
            println!("==== {} ({encoding}, {} -> {} bytes)\n{text}\n", path.display(), bytes.len(), text.len());
        }
        return;
    }

    let total_bytes: usize = pages.iter().map(|(_, b)| b.len()).sum();
    // Warm-up pass, also checks that every page produces something.
    let mut out_bytes = 0usize;
    for (_, bytes) in &pages {
        let (html, _) = decode_html(bytes, None, None);
        out_bytes += html_to_text(&html, &options).len();
    }

    let mut decode_secs = 0.0;
    let mut extract_secs = 0.0;
    let mut sink = 0usize;
    for _ in 0..iters {
        for (_, bytes) in &pages {
            let t0 = Instant::now();
            let (html, encoding) = decode_html(bytes, None, None);
            let t1 = Instant::now();
            let text = html_to_text(&html, &options);
            let t2 = Instant::now();
            decode_secs += (t1 - t0).as_secs_f64();
            extract_secs += (t2 - t1).as_secs_f64();
            sink = sink.wrapping_add(text.len() + encoding.len());
        }
    }
    let secs = decode_secs + extract_secs;
    let n = (pages.len() * iters) as f64;
    let mb = (total_bytes * iters) as f64 / 1e6;
    println!(
        "{} pages, {:.1} MB, {} iterations, {} text bytes/pass (checksum {sink})",
        pages.len(),
        total_bytes as f64 / 1e6,
        iters,
        out_bytes
    );
    println!("decode+extract: {:>9.0} pages/s {:>8.1} MB/s", n / secs, mb / secs);
    println!("decode only:    {:>9.0} pages/s {:>8.1} MB/s", n / decode_secs, mb / decode_secs);
    println!("extract only:   {:>9.0} pages/s {:>8.1} MB/s", n / extract_secs, mb / extract_secs);
}

fn load(paths: &[PathBuf]) -> std::io::Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> =
                std::fs::read_dir(path)?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| is_html(p)).collect();
            entries.sort();
            files.extend(entries);
        } else {
            files.push(path.clone());
        }
    }
    files.into_iter().map(|p| std::fs::read(&p).map(|b| (p, b))).collect()
}

fn is_html(path: &Path) -> bool {
    path.is_file()
        && path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"))
}
