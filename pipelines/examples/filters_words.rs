//! Prints smelt's word split (datatrove `split_into_words`) and sentence count
//! of each JSON Lines document, for bench/filters_parity.py to compare with spaCy.
//!
//! ```text
//! cargo run -p smelt-pipelines --example filters_words -- docs.jsonl > words.jsonl
//! ```
//! Input lines: `{"id": .., "text": .., "language"?: ..}`; output lines: `{"id": .., "words": [..]}`.

use std::io::{BufRead, BufWriter, Write};

use smelt_pipelines::filters::words::{split_into_words, Segmenter};

fn main() -> std::io::Result<()> {
    let path = std::env::args()
        .nth(1)
        .expect("usage: filters_words DOCS.jsonl");
    let input = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut out = BufWriter::new(std::io::stdout().lock());
    for line in input.lines() {
        let v: serde_json::Value = serde_json::from_str(&line?).map_err(std::io::Error::other)?;
        let text = v["text"].as_str().unwrap_or("");
        let seg = Segmenter::for_language(v["language"].as_str().unwrap_or("en"));
        let mut words = Vec::new();
        split_into_words(text, seg, &mut words);
        serde_json::to_writer(
            &mut out,
            &serde_json::json!({"id": v["id"], "words": words}),
        )
        .map_err(std::io::Error::other)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}
