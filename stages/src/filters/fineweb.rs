//! `fineweb` transform: FineWeb's own quality rules exactly as datatrove
//! 0.10.1's `FineWebQualityFilter` applies them: the share of lines ending in
//! terminal punctuation, the share of short lines, characters in duplicate
//! lines, and newlines per word.
//!
//! ```text
//! text ─split \n, drop blank─► punct ratio ─► short lines ─► duplicate chars ─words─► newlines/word ──► keep | drop(reason)
//! ```

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};
use smelt_engine::{
    parse_options, ConfigureContext, OptionError, Result, SchemaError, StageConfig, Transform, TransformConfig,
};

use super::gopher_quality::d_language;
use super::words::{split_into_words, Segmenter};
use super::{
    char_len, filter_schema, find_duplicates, is_dt_terminal, py_strip, Checks, DocFilter, FilterStage, Outcome,
};

fn d_punct() -> f64 {
    0.12
}
fn d_short_thr() -> f64 {
    0.67
}
fn d_short_len() -> usize {
    30
}
fn d_dup() -> f64 {
    0.01
}
fn d_new_line() -> f64 {
    0.3
}

/// Options of `fineweb` (datatrove's argument names).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FineWebConfig {
    /// Drop documents where a smaller share of non-blank lines ends with a stop character (default 0.12).
    #[serde(default = "d_punct")]
    pub line_punct_thr: f64,
    /// Do not apply `line_punct_thr` to documents where no line ends with a stop character (default false).
    #[serde(default)]
    pub line_punct_exclude_zero: bool,
    /// Line endings that count as punctuation (default: datatrove's TERMINAL_PUNCTUATION, 160 characters).
    #[serde(default)]
    pub stop_chars: Option<Vec<String>>,
    /// Drop documents with a larger share of short lines (default 0.67).
    #[serde(default = "d_short_thr")]
    pub short_line_thr: f64,
    /// A line of at most this many characters is short (default 30).
    #[serde(default = "d_short_len")]
    pub short_line_length: usize,
    /// Drop documents with a larger share of characters (newlines excluded) in duplicate lines (default 0.01).
    #[serde(default = "d_dup")]
    pub char_duplicates_ratio: f64,
    /// Drop documents with more newlines per word (default 0.3).
    #[serde(default = "d_new_line")]
    pub new_line_ratio: f64,
    /// Language of rows without a `lang` column value (default `en`); picks the word splitter.
    #[serde(default = "d_language")]
    pub language: String,
    /// Set from the stage's `mode: annotate` (not an option).
    #[serde(skip)]
    #[schemars(skip)]
    pub annotate: bool,
}

/// Registry hook.
///
/// # Errors
/// Unknown or invalid options.
pub fn configure(options: serde_json::Value, ctx: &ConfigureContext) -> Result<StageConfig, OptionError> {
    let c = FineWebConfig { annotate: ctx.annotate, ..parse_options(options)? };
    Ok(StageConfig::Transform(Arc::new(c)))
}

impl TransformConfig for FineWebConfig {
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, SchemaError> {
        filter_schema(input, self.annotate, &self.signal_names())
    }

    fn resolved(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn build(&self, input: &SchemaRef) -> Result<Box<dyn Transform>> {
        Ok(Box::new(FilterStage::new(FineWeb::new(self.clone()), &self.language).annotating(self.annotate, input)?))
    }
}

/// The runtime filter.
pub struct FineWeb {
    c: FineWebConfig,
}

impl FineWeb {
    /// A filter with these options.
    pub fn new(c: FineWebConfig) -> Self {
        FineWeb { c }
    }

    fn ends_with_stop(&self, line: &str) -> bool {
        match &self.c.stop_chars {
            None => line.chars().next_back().is_some_and(is_dt_terminal),
            Some(stops) => stops.iter().any(|s| line.ends_with(s.as_str())),
        }
    }
}

impl FineWebConfig {
    /// The measurements in annotate mode (`signals` fields), in this order.
    fn signal_names(&self) -> Vec<String> {
        ["fineweb_line_punct_ratio", "fineweb_short_line_ratio", "fineweb_char_dup_ratio", "fineweb_newline_word_ratio"]
            .map(String::from)
            .to_vec()
    }
}

impl DocFilter for FineWeb {
    fn signals(&self) -> Vec<String> {
        self.c.signal_names()
    }

    fn check(&mut self, text: &str, segmenter: Segmenter, ck: &mut Checks<'_>) -> Outcome {
        let c = &self.c;
        let lines: Vec<&str> = text.split('\n').filter(|l| !py_strip(l).is_empty()).collect();
        if lines.is_empty() {
            // Nothing is defined for a text without a non-blank line.
            ck.fail("empty");
            return ck.outcome();
        }
        let n = lines.len() as f64;
        let ratio = lines.iter().filter(|l| self.ends_with_stop(l)).count() as f64 / n;
        ck.set(0, ratio);
        if ratio < c.line_punct_thr && !(ratio == 0.0 && c.line_punct_exclude_zero) && ck.fail("line_punct_ratio") {
            return ck.outcome();
        }
        let ratio = lines.iter().filter(|l| char_len(l) <= c.short_line_length).count() as f64 / n;
        ck.set(1, ratio);
        if ratio > c.short_line_thr && ck.fail("short_line_ratio") {
            return ck.outcome();
        }
        let newlines = memchr::memchr_iter(b'\n', text.as_bytes()).count();
        let (_, dup_chars) = find_duplicates(lines.iter().copied());
        let ratio = dup_chars as f64 / (char_len(text) - newlines) as f64;
        ck.set(2, ratio);
        if ratio > c.char_duplicates_ratio && ck.fail("char_dup_ratio") {
            return ck.outcome();
        }
        let mut words = Vec::new();
        split_into_words(text, segmenter, &mut words);
        let ratio = newlines as f64 / words.len() as f64;
        ck.set(3, ratio);
        if ratio > c.new_line_ratio && ck.fail("list_ratio") {
            return ck.outcome();
        }
        ck.outcome()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> Outcome {
        FineWeb::new(parse_options(serde_json::json!({})).unwrap()).filter(text, Segmenter::English)
    }

    const ARTICLE: &str = "The council approved the new cycling lanes on Monday after a long debate.\n\
        Construction will start in spring and should take about four months to complete.\n\
        Local shops had asked for more parking, but the plan keeps only a few spaces near the square.";

    #[test]
    fn keeps_an_article() {
        assert_eq!(run(ARTICLE), Outcome::Keep);
        assert_eq!(run(" \n\t\n"), Outcome::Drop("empty".into()));
    }

    #[test]
    fn each_rule_names_its_reason() {
        let menu = "Home\nAbout us\nProducts and services\nContact the team\nCareers at the company";
        assert_eq!(run(menu), Outcome::Drop("line_punct_ratio".into()));
        let c: FineWebConfig = parse_options(serde_json::json!({"line_punct_exclude_zero": true})).unwrap();
        assert_eq!(FineWeb::new(c).filter(menu, Segmenter::English), Outcome::Drop("short_line_ratio".into()));
        let dup = format!("{ARTICLE}\nThe council approved the new cycling lanes on Monday after a long debate.");
        assert_eq!(run(&dup), Outcome::Drop("char_dup_ratio".into()));
        let list = "Apples.\nPears.\nPlums.\nFigs.\nDates.";
        let c: FineWebConfig = parse_options(serde_json::json!({"short_line_thr": 1.0})).unwrap();
        assert_eq!(FineWeb::new(c).filter(list, Segmenter::English), Outcome::Drop("list_ratio".into()));
    }

    #[test]
    fn stop_chars_are_configurable() {
        let c: FineWebConfig = parse_options(serde_json::json!({"stop_chars": [";"]})).unwrap();
        assert_eq!(FineWeb::new(c).filter(ARTICLE, Segmenter::English), Outcome::Drop("line_punct_ratio".into()));
    }
}
