//! `gopher_quality` transform: the quality heuristics of Gopher (Rae et al.
//! 2021, table A1) exactly as datatrove 0.10.1's `GopherQualityFilter` applies
//! them: word count, mean word length, `#` and ellipsis per word, bullet and
//! ellipsis lines, words with a letter, stop words. Checks run in datatrove's
//! order and the first failing one names the drop reason.
//!
//! ```text
//! text ──words──► non-symbol words ──► short/long doc ─► avg length ─► hashes ─► ellipsis
//!      ──lines──► bullets ─► end ellipsis ─► alpha words ─► stop words ──► keep | drop(gopher_*)
//! ```

use std::collections::HashSet;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};
use smelt_engine::{
    parse_options, ConfigureContext, OptionError, Result, SchemaError, StageConfig, Transform, TransformConfig,
};

use super::words::{split_into_words, Segmenter};
use super::{
    char_len, filter_schema, is_dt_punctuation, on, py_isalpha, py_isspace, py_splitlines, Checks, DocFilter,
    FilterStage, Outcome,
};

/// datatrove's default stop words.
pub const STOP_WORDS: [&str; 8] = ["the", "be", "to", "of", "and", "that", "have", "with"];

fn d_min_doc_words() -> Option<u64> {
    Some(50)
}
fn d_max_doc_words() -> Option<u64> {
    Some(100_000)
}
fn d_min_avg() -> Option<f64> {
    Some(3.0)
}
fn d_max_avg() -> Option<f64> {
    Some(10.0)
}
fn d_symbol() -> Option<f64> {
    Some(0.1)
}
fn d_bullet() -> Option<f64> {
    Some(0.9)
}
fn d_ellipsis() -> Option<f64> {
    Some(0.3)
}
fn d_alpha() -> Option<f64> {
    Some(0.8)
}
fn d_min_stop() -> Option<u64> {
    Some(2)
}
fn d_stop_words() -> Vec<String> {
    STOP_WORDS.iter().map(|s| s.to_string()).collect()
}
pub(crate) fn d_language() -> String {
    "en".to_string()
}

/// Options of `gopher_quality` (datatrove's argument names; `null` or 0 turns a check off).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GopherQualityConfig {
    /// Drop documents with fewer non-symbol words (default 50).
    #[serde(default = "d_min_doc_words")]
    pub min_doc_words: Option<u64>,
    /// Drop documents with more non-symbol words (default 100000).
    #[serde(default = "d_max_doc_words")]
    pub max_doc_words: Option<u64>,
    /// Drop documents whose mean non-symbol word length is below (default 3).
    #[serde(default = "d_min_avg")]
    pub min_avg_word_length: Option<f64>,
    /// Drop documents whose mean non-symbol word length is above (default 10).
    #[serde(default = "d_max_avg")]
    pub max_avg_word_length: Option<f64>,
    /// Drop documents with more `#`, or more `...`/`…`, per word (default 0.1).
    #[serde(default = "d_symbol")]
    pub max_symbol_word_ratio: Option<f64>,
    /// Drop documents with a larger share of lines starting with `•` or `-` (default 0.9).
    #[serde(default = "d_bullet")]
    pub max_bullet_lines_ratio: Option<f64>,
    /// Drop documents with a larger share of lines ending with `...` or `…` (default 0.3).
    #[serde(default = "d_ellipsis")]
    pub max_ellipsis_lines_ratio: Option<f64>,
    /// Drop documents where a smaller share of words contains a letter (default 0.8; datatrove's name).
    #[serde(default = "d_alpha")]
    pub max_non_alpha_words_ratio: Option<f64>,
    /// Drop documents containing fewer distinct stop words (default 2).
    #[serde(default = "d_min_stop")]
    pub min_stop_words: Option<u64>,
    /// The stop words (default: the, be, to, of, and, that, have, with); matched case-sensitively.
    #[serde(default = "d_stop_words")]
    pub stop_words: Vec<String>,
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
    let c = GopherQualityConfig { annotate: ctx.annotate, ..parse_options(options)? };
    Ok(StageConfig::Transform(Arc::new(c)))
}

impl TransformConfig for GopherQualityConfig {
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, SchemaError> {
        filter_schema(input, self.annotate, &signal_names())
    }

    fn resolved(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn build(&self, input: &SchemaRef) -> Result<Box<dyn Transform>> {
        Ok(Box::new(
            FilterStage::new(GopherQuality::new(self.clone()), &self.language).annotating(self.annotate, input)?,
        ))
    }
}

/// The runtime filter.
pub struct GopherQuality {
    c: GopherQualityConfig,
    stop_words: HashSet<String>,
}

impl GopherQuality {
    /// A filter with these options.
    pub fn new(c: GopherQualityConfig) -> Self {
        let stop_words = c.stop_words.iter().cloned().collect();
        GopherQuality { c, stop_words }
    }
}

/// The measurements in annotate mode (`signals` fields), in this order.
const SIGNALS: [&str; 8] = [
    "gopher_word_count",
    "gopher_mean_word_length",
    "gopher_hash_word_ratio",
    "gopher_ellipsis_word_ratio",
    "gopher_bullet_lines_ratio",
    "gopher_ellipsis_lines_ratio",
    "gopher_alpha_words_ratio",
    "gopher_stop_words",
];

fn signal_names() -> Vec<String> {
    SIGNALS.iter().map(|s| s.to_string()).collect()
}

impl DocFilter for GopherQuality {
    fn signals(&self) -> Vec<String> {
        signal_names()
    }

    fn check(&mut self, text: &str, segmenter: Segmenter, ck: &mut Checks<'_>) -> Outcome {
        let c = &self.c;
        let mut words = Vec::new();
        split_into_words(text, segmenter, &mut words);
        let n_words = words.len();
        let (mut n_non_symbol, mut non_symbol_chars) = (0usize, 0usize);
        for w in &words {
            if w.chars().any(|ch| !is_dt_punctuation(ch)) {
                n_non_symbol += 1;
                non_symbol_chars += char_len(w);
            }
        }
        ck.set(0, n_non_symbol as f64);
        if c.min_doc_words.filter(|v| *v != 0).is_some_and(|min| (n_non_symbol as u64) < min)
            && ck.fail("gopher_short_doc")
        {
            return ck.outcome();
        }
        if c.max_doc_words.filter(|v| *v != 0).is_some_and(|max| n_non_symbol as u64 > max)
            && ck.fail("gopher_long_doc")
        {
            return ck.outcome();
        }
        // numpy's mean of an empty list is NaN, which passes both comparisons.
        let avg = if n_non_symbol == 0 { f64::NAN } else { non_symbol_chars as f64 / n_non_symbol as f64 };
        ck.set(1, avg);
        if on(c.min_avg_word_length).is_some_and(|t| avg < t) && ck.fail("gopher_below_avg_threshold") {
            return ck.outcome();
        }
        if on(c.max_avg_word_length).is_some_and(|t| avg > t) && ck.fail("gopher_above_avg_threshold") {
            return ck.outcome();
        }
        if n_words == 0 {
            // datatrove divides by zero here (ZeroDivisionError); a text without words is short.
            // Nothing past this point is defined.
            if !ck.failed("gopher_short_doc") {
                ck.fail("gopher_short_doc");
            }
            return ck.outcome();
        }
        let n = n_words as f64;
        let symbols = on(c.max_symbol_word_ratio);
        if symbols.is_some() || ck.measuring() {
            let hashes = memchr::memchr_iter(b'#', text.as_bytes()).count() as f64 / n;
            ck.set(2, hashes);
            if symbols.is_some_and(|t| hashes > t) && ck.fail("gopher_too_many_hashes") {
                return ck.outcome();
            }
            let ellipses = (count_non_overlapping(text, "...") + count_non_overlapping(text, "…")) as f64 / n;
            ck.set(3, ellipses);
            if symbols.is_some_and(|t| ellipses > t) && ck.fail("gopher_too_many_ellipsis") {
                return ck.outcome();
            }
        }
        let needs_lines =
            on(c.max_bullet_lines_ratio).is_some() || on(c.max_ellipsis_lines_ratio).is_some() || ck.measuring();
        if needs_lines {
            let (mut n_lines, mut bullets, mut end_ellipsis) = (0usize, 0usize, 0usize);
            for line in py_splitlines(text) {
                n_lines += 1;
                let l = line.trim_start_matches(py_isspace);
                if l.starts_with('•') || l.starts_with('-') {
                    bullets += 1;
                }
                let r = line.trim_end_matches(py_isspace);
                if r.ends_with("...") || r.ends_with('…') {
                    end_ellipsis += 1;
                }
            }
            let n_lines = n_lines.max(1) as f64;
            let (bullets, end_ellipsis) = (bullets as f64 / n_lines, end_ellipsis as f64 / n_lines);
            ck.set(4, bullets);
            ck.set(5, end_ellipsis);
            if on(c.max_bullet_lines_ratio).is_some_and(|t| bullets > t) && ck.fail("gopher_too_many_bullets") {
                return ck.outcome();
            }
            if on(c.max_ellipsis_lines_ratio).is_some_and(|t| end_ellipsis > t)
                && ck.fail("gopher_too_many_end_ellipsis")
            {
                return ck.outcome();
            }
        }
        let alpha_min = on(c.max_non_alpha_words_ratio);
        if alpha_min.is_some() || ck.measuring() {
            let alpha = words.iter().filter(|w| w.chars().any(py_isalpha)).count() as f64 / n;
            ck.set(6, alpha);
            if alpha_min.is_some_and(|t| alpha < t) && ck.fail("gopher_below_alpha_threshold") {
                return ck.outcome();
            }
        }
        let min_stop = c.min_stop_words.filter(|v| *v != 0);
        if min_stop.is_some() || ck.measuring() {
            // Drop mode stops counting at the minimum; annotate mode counts every distinct one.
            let enough = if ck.measuring() { u64::MAX } else { min_stop.unwrap_or(0) };
            let mut found: Vec<&str> = Vec::new();
            for w in &words {
                if self.stop_words.contains(*w) && !found.contains(w) {
                    found.push(w);
                    if found.len() as u64 >= enough {
                        break;
                    }
                }
            }
            ck.set(7, found.len() as f64);
            if min_stop.is_some_and(|min| (found.len() as u64) < min) && ck.fail("gopher_enough_stop_words") {
                return ck.outcome();
            }
        }
        ck.outcome()
    }
}

/// Python's `str.count`: non-overlapping occurrences.
pub(crate) fn count_non_overlapping(text: &str, pat: &str) -> usize {
    memchr::memmem::find_iter(text.as_bytes(), pat.as_bytes())
        .fold((0, 0), |(n, next), at| if at >= next { (n + 1, at + pat.len()) } else { (n, next) })
        .0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> Outcome {
        let c: GopherQualityConfig = parse_options(serde_json::json!({})).unwrap();
        GopherQuality::new(c).filter(text, Segmenter::English)
    }

    const PROSE: &str = "The committee met on Tuesday to review the proposal, and members agreed that the plan \
        should move forward with several changes. Officials said the budget would have to be revised to account \
        for rising costs of materials and labour. Residents who attended the meeting asked questions about the \
        timeline, and the chair promised that a public report would be published with the final figures next month.";

    #[test]
    fn keeps_ordinary_prose() {
        assert_eq!(run(PROSE), Outcome::Keep);
    }

    #[test]
    fn each_rule_names_its_reason() {
        assert_eq!(run("Too short to be a page."), Outcome::Drop("gopher_short_doc".into()));
        assert_eq!(run(""), Outcome::Drop("gopher_short_doc".into()));
        let short_words = "a b c d e f g h i j ".repeat(6) + "the of";
        assert_eq!(run(&short_words), Outcome::Drop("gopher_below_avg_threshold".into()));
        let long_words = "internationalization ".repeat(60);
        assert_eq!(run(&long_words), Outcome::Drop("gopher_above_avg_threshold".into()));
        let hashes = format!("{PROSE} {}", "#news #today ".repeat(10));
        assert_eq!(run(&hashes), Outcome::Drop("gopher_too_many_hashes".into()));
        let ellipsis = format!("{PROSE} {}", "and so on... ".repeat(12));
        assert_eq!(run(&ellipsis), Outcome::Drop("gopher_too_many_ellipsis".into()));
        let bullets = PROSE.split(", ").map(|l| format!("- {l}")).collect::<Vec<_>>().join("\n");
        assert_eq!(run(&bullets), Outcome::Drop("gopher_too_many_bullets".into()));
        let numbers = format!("{PROSE} {}", "12 34 56 78 90 ".repeat(20));
        assert_eq!(run(&numbers), Outcome::Drop("gopher_below_alpha_threshold".into()));
        let no_stop = "Quarterly revenue increased sharply while operating margins improved across regions. ".repeat(8);
        assert_eq!(run(&no_stop), Outcome::Drop("gopher_enough_stop_words".into()));
    }

    #[test]
    fn end_ellipsis_lines() {
        let text = PROSE.split(". ").map(|l| format!("{l}…")).collect::<Vec<_>>().join("\n");
        let c: GopherQualityConfig = parse_options(serde_json::json!({"max_symbol_word_ratio": null})).unwrap();
        assert_eq!(
            GopherQuality::new(c).filter(&text, Segmenter::English),
            Outcome::Drop("gopher_too_many_end_ellipsis".into())
        );
    }

    #[test]
    fn thresholds_can_be_turned_off() {
        let c: GopherQualityConfig =
            parse_options(serde_json::json!({"min_doc_words": null, "min_stop_words": 0})).unwrap();
        assert_eq!(GopherQuality::new(c).filter("Short but fine words here.", Segmenter::English), Outcome::Keep);
        assert!(parse_options::<GopherQualityConfig>(serde_json::json!({"min_words": 3})).is_err());
        assert_eq!(count_non_overlapping("....", "..."), 1);
    }
}
