//! Runs smelt's `extract` (main-content extraction) on HTML files, for the
//! benchmarks in `bench/extract_quality.py` and `bench/extract_speed.sh`.
//!
//! ```text
//! extract_pages [--list PATHS.txt] [FILE.html ...]            one JSON line per page: {file, text, title, encoding, skip}
//! extract_pages --time ROUNDS [--list PATHS.txt] [FILE ...]   pages loaded into memory first, then ROUNDS timed
//!                                                              passes on one thread: {docs, rounds, walls_s, median_s, docs_per_s}
//! ```
//! Build: `cargo build --release --example extract_pages`.

use std::time::Instant;

use smelt_stages::{extract_document, ExtractOptions};

fn main() -> anyhow::Result<()> {
    let mut files = Vec::new();
    let mut rounds = 0usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--time" => rounds = args.next().ok_or_else(|| anyhow::anyhow!("--time ROUNDS"))?.parse()?,
            "--list" => {
                let list = args.next().ok_or_else(|| anyhow::anyhow!("--list FILE"))?;
                files.extend(std::fs::read_to_string(list)?.lines().filter(|l| !l.is_empty()).map(String::from));
            }
            _ => files.push(arg),
        }
    }
    let options = ExtractOptions::default();
    if rounds == 0 {
        for file in &files {
            let html = std::fs::read(file)?;
            let line = match extract_document(&html, None, None, &options) {
                Ok(e) => {
                    serde_json::json!({"file": file, "text": e.text, "title": e.title, "encoding": e.encoding, "skip": null})
                }
                Err(reason) => {
                    serde_json::json!({"file": file, "text": "", "title": null, "encoding": null, "skip": reason.as_str()})
                }
            };
            println!("{line}");
        }
        return Ok(());
    }
    let pages: Vec<Vec<u8>> = files.iter().map(std::fs::read).collect::<Result<_, _>>()?;
    let mut walls = Vec::new();
    let mut out_chars = 0usize;
    let mut nonempty = 0usize;
    for _ in 0..rounds {
        out_chars = 0;
        nonempty = 0;
        let t = Instant::now();
        for html in &pages {
            if let Ok(e) = extract_document(html, None, None, &options) {
                out_chars += e.text.chars().count();
                nonempty += 1;
            }
        }
        walls.push(t.elapsed().as_secs_f64());
    }
    let mut sorted = walls.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let bytes: usize = pages.iter().map(Vec::len).sum();
    println!(
        "{}",
        serde_json::json!({"docs": pages.len(), "html_mb": bytes as f64 / 1e6, "rounds": rounds, "walls_s": walls,
            "median_s": median, "docs_per_s": pages.len() as f64 / median, "out_chars": out_chars, "nonempty": nonempty})
    );
    Ok(())
}
