//! Prints, for each JSON Lines document, smelt's word split (datatrove
//! `split_into_words`) and the verdict of each quality filter with default
//! options, for bench/filters_parity.py to compare with spaCy and datatrove
//! document by document.
//!
//! ```text
//! cargo run -p smelt-stages --example filters_words -- docs.jsonl > verdicts.jsonl
//! ```
//! Input lines: `{"id": .., "text": .., "language"?: ..}`; output lines:
//! `{"id": .., "words": [..], "verdicts": {"gopher_quality": null | "reason", "c4": .., ..}, "c4_text": ..}`.

use std::io::{BufRead, BufWriter, Write};

use smelt_engine::parse_options;
use smelt_stages::filters::words::{split_into_words, Segmenter};
use smelt_stages::filters::{c4, fineweb, gopher_quality, gopher_repetition, DocFilter, Outcome};

fn main() -> std::io::Result<()> {
    let path = std::env::args().nth(1).expect("usage: filters_words DOCS.jsonl");
    let defaults = || serde_json::json!({});
    let mut filters: Vec<(&str, Box<dyn DocFilter>)> = vec![
        (
            "gopher_repetition",
            Box::new(gopher_repetition::GopherRepetition::new(parse_options(defaults()).expect("defaults"))),
        ),
        ("gopher_quality", Box::new(gopher_quality::GopherQuality::new(parse_options(defaults()).expect("defaults")))),
        ("c4", Box::new(c4::C4::new(parse_options(defaults()).expect("defaults")))),
        (
            "c4_fineweb",
            Box::new(c4::C4::new(
                parse_options(serde_json::json!({"filter_no_terminal_punct": false})).expect("options"),
            )),
        ),
        ("fineweb", Box::new(fineweb::FineWeb::new(parse_options(defaults()).expect("defaults")))),
    ];
    let input = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut out = BufWriter::new(std::io::stdout().lock());
    for line in input.lines() {
        let v: serde_json::Value = serde_json::from_str(&line?).map_err(std::io::Error::other)?;
        let text = v["text"].as_str().unwrap_or("");
        let seg = Segmenter::for_language(v["language"].as_str().unwrap_or("en"));
        let mut words = Vec::new();
        split_into_words(text, seg, &mut words);
        let mut verdicts = serde_json::Map::new();
        let mut texts = serde_json::Map::new();
        for (name, f) in filters.iter_mut() {
            let (verdict, new_text) = match f.filter(text, seg) {
                Outcome::Keep => (serde_json::Value::Null, text.to_string()),
                Outcome::Rewrite(t) => (serde_json::Value::Null, t),
                Outcome::Drop(r) => (serde_json::Value::String(r.into_owned()), String::new()),
            };
            verdicts.insert(name.to_string(), verdict);
            texts.insert(name.to_string(), new_text.into());
        }
        let row = serde_json::json!({"id": v["id"], "words": words, "verdicts": verdicts, "texts": texts});
        serde_json::to_writer(&mut out, &row).map_err(std::io::Error::other)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}
