//! Model-only language-ID throughput and answers, for `bench/langid_parity.sh`:
//! reads JSONL (`id`, `text`), runs smelt's fastText reader on every text
//! `RUNS` times (default 3) on one thread, prints `id \t label \t score` of the
//! last pass to stdout and the median wall and CPU seconds of a pass to stderr.
//! `PROJECTED=1` reads a model file as `classify` with `exact: false` does,
//! projected onto its labels (`Model::from_bytes_projected`).
//!
//! ```text
//! cargo build --release --example langid_predict
//! target/release/examples/langid_predict corpus.jsonl [model.ftz] > answers.tsv
//! ```

use std::io::{BufRead, Write};

use smelt_stages::langid::fasttext::{Model, Scratch};

/// User + system CPU seconds of this process (Linux: `/proc/self/stat`, clock ticks of 10 ms).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let Some(corpus) = args.get(1) else { anyhow::bail!("usage: langid_predict corpus.jsonl [model.bin|.ftz]") };
    let model = match args.get(2) {
        Some(path) => {
            let bytes = std::fs::read(path)?;
            let projected = std::env::var("PROJECTED").is_ok_and(|v| v == "1");
            let read = if projected { Model::from_bytes_projected } else { Model::from_bytes };
            std::sync::Arc::new(read(&bytes, path)?)
        }
        None => smelt_stages::langid::lid176()?,
    };
    let runs: usize = std::env::var("RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(3).max(1);
    let mut docs = Vec::new();
    for line in std::io::BufReader::new(std::fs::File::open(corpus)?).lines() {
        let v: serde_json::Value = serde_json::from_str(&line?)?;
        let field = |k: &str| v[k].as_str().map(str::to_string).unwrap_or_default();
        docs.push((field("id"), field("text")));
    }
    let (mut scratch, mut out) = (Scratch::default(), Vec::new());
    let (mut walls, mut cpus, mut best) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        best.clear();
        let (t0, c0) = (std::time::Instant::now(), cpu_seconds());
        for (_, text) in &docs {
            model.predict(text, 0.0, &mut scratch, &mut out);
            best.push(out.first().copied());
        }
        walls.push(t0.elapsed().as_secs_f64());
        cpus.push(cpu_seconds() - c0);
    }
    walls.sort_by(f64::total_cmp);
    cpus.sort_by(f64::total_cmp);
    let bytes: usize = docs.iter().map(|(_, t)| t.len()).sum();
    eprintln!(
        "{} texts, {bytes} bytes: median {:.3} s wall, {:.3} s CPU per pass",
        docs.len(),
        walls[runs / 2],
        cpus[runs / 2]
    );
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    for ((id, _), b) in docs.iter().zip(&best) {
        match b {
            Some(p) => writeln!(stdout, "{id}\t{}\t{:?}", model.labels()[p.label], f64::from(p.score))?,
            None => writeln!(stdout, "{id}\tunknown\t0.0")?,
        }
    }
    Ok(())
}
