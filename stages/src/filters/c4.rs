//! `c4` transform: the C4 cleaning rules (Raffel et al. 2020) exactly as
//! datatrove 0.10.1's `C4QualityFilter` applies them. Lines are removed
//! (too long a word, no terminal punctuation, too few words, "javascript",
//! cookie/terms notices; Wikipedia-style citations are cut out), whole
//! documents are dropped (`lorem_ipsum`, `curly_bracket`,
//! `too_few_sentences`), and a kept document gets the remaining lines as its
//! text. Removed lines of kept documents are counted as
//! `lines_removed:<reason>`.
//!
//! ```text
//! text ─lines─► per line: long word? ─► cut citations ─► terminal punct? ─► ≥3 words? ─► lorem ipsum → drop doc
//!                          ─► javascript? ─► "{" → drop doc ─► policy? ─► kept (sentences counted)
//!      ──► ≥5 sentences? ──► keep with kept lines joined | drop(too_few_sentences)
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use regex::Regex;
use serde::{Deserialize, Serialize};
use smelt_engine::{
    parse_options, ConfigureContext, OptionError, Result, SchemaError, StageConfig, Transform, TransformConfig,
};

use super::gopher_quality::d_language;
use super::words::{count_sentences, split_into_sentences, Segmenter};
use super::{char_len, filter_schema, py_isspace, py_splitlines, py_strip, Checks, DocFilter, FilterStage, Outcome};

/// datatrove's POLICY_SUBSTRINGS.
pub const POLICY_SUBSTRINGS: [&str; 6] =
    ["terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies"];
const END_PUNCTUATION: [char; 5] = ['.', '?', '!', '"', '\''];

fn yes() -> bool {
    true
}
fn d_sentences() -> i64 {
    5
}
fn d_words() -> i64 {
    3
}
fn d_word_len() -> i64 {
    1000
}

/// Options of `c4` (datatrove's argument names; -1 turns a count off).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct C4Config {
    /// Work on lines (default true, as C4); false works on sentences and joins kept ones with spaces.
    #[serde(default = "yes")]
    pub split_paragraph: bool,
    /// Cut Wikipedia-style citations (`[1]`, `[edit]`, `[citation needed]`) out of lines (default true).
    #[serde(default = "yes")]
    pub remove_citations: bool,
    /// Remove lines that do not end in `.`, `?`, `!`, `"` or `'`, or end in `...` (default true).
    #[serde(default = "yes")]
    pub filter_no_terminal_punct: bool,
    /// Drop documents with fewer sentences in their kept lines (default 5; -1 off).
    #[serde(default = "d_sentences")]
    pub min_num_sentences: i64,
    /// Remove lines with fewer whitespace-separated words (default 3; -1 off).
    #[serde(default = "d_words")]
    pub min_words_per_line: i64,
    /// Remove lines with a word longer than this many characters (default 1000; -1 off).
    #[serde(default = "d_word_len")]
    pub max_word_length: i64,
    /// Drop documents with a kept line containing "lorem ipsum" (default true).
    #[serde(default = "yes")]
    pub filter_lorem_ipsum: bool,
    /// Remove lines containing "javascript" (default true).
    #[serde(default = "yes")]
    pub filter_javascript: bool,
    /// Drop documents with a kept line containing `{` (default true).
    #[serde(default = "yes")]
    pub filter_curly_bracket: bool,
    /// Remove lines with cookie or terms-of-use notices (default true).
    #[serde(default = "yes")]
    pub filter_policy: bool,
    /// Language of rows without a `lang` column value (default `en`); picks the sentence splitter.
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
    let c = C4Config { annotate: ctx.annotate, ..parse_options(options)? };
    Ok(StageConfig::Transform(Arc::new(c)))
}

impl TransformConfig for C4Config {
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, SchemaError> {
        filter_schema(input, self.annotate, &signal_names())
    }

    fn resolved(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn build(&self, input: &SchemaRef) -> Result<Box<dyn Transform>> {
        Ok(Box::new(FilterStage::new(C4::new(self.clone()), &self.language).annotating(self.annotate, input)?))
    }
}

/// Why a line was removed, in counter order.
const LINE_REASONS: [&str; 5] = ["too_long_word", "no_terminal_punc", "too_few_words", "javascript", "policy"];

/// The runtime filter.
pub struct C4 {
    c: C4Config,
    citation: Regex,
    removed: [u64; 5],
}

impl C4 {
    /// A filter with these options.
    pub fn new(c: C4Config) -> Self {
        let citation = Regex::new(r"\[\d*\]|\[edit\]|\[citation needed\]").expect("citation pattern compiles");
        C4 { c, citation, removed: [0; 5] }
    }
}

/// The measurements in annotate mode (`signals` fields): lines, the lines
/// each rule would remove (in [`LINE_REASONS`] order), the sentences of the
/// kept lines, and 1/0 for a kept line with "lorem ipsum" and with `{`.
fn signal_names() -> Vec<String> {
    let mut names = vec!["c4_lines".to_string()];
    names.extend(LINE_REASONS.iter().map(|r| format!("c4_lines_{r}")));
    names.extend(["c4_sentences", "c4_lorem_ipsum", "c4_curly_bracket"].map(String::from));
    names
}

impl DocFilter for C4 {
    fn signals(&self) -> Vec<String> {
        signal_names()
    }

    fn check(&mut self, text: &str, segmenter: Segmenter, ck: &mut Checks<'_>) -> Outcome {
        let c = &self.c;
        let lines: Vec<&str> =
            if c.split_paragraph { py_splitlines(text).collect() } else { split_into_sentences(text, segmenter) };
        let mut removed = [0u64; 5];
        let mut num_sentences: i64 = 0;
        let mut kept: Vec<String> = Vec::new();
        let (mut lorem, mut curly) = (false, false);
        ck.set(0, lines.len() as f64);
        for line in lines {
            let line = py_strip(line);
            let words: Vec<&str> = line.split(py_isspace).filter(|w| !w.is_empty()).collect();
            if c.max_word_length != -1 && words.iter().any(|w| char_len(w) as i64 > c.max_word_length) {
                removed[0] += 1;
                continue;
            }
            let line =
                if c.remove_citations { self.citation.replace_all(line, "").into_owned() } else { line.to_string() };
            if c.filter_no_terminal_punct && (!line.ends_with(END_PUNCTUATION) || line.ends_with("...")) {
                removed[1] += 1;
                continue;
            }
            if (words.len() as i64) < c.min_words_per_line {
                removed[2] += 1;
                continue;
            }
            let lower = line.to_lowercase();
            if c.filter_lorem_ipsum && lower.contains("lorem ipsum") && !lorem {
                lorem = true;
                if ck.fail("lorem_ipsum") {
                    return ck.outcome();
                }
            }
            if c.filter_javascript && lower.contains("javascript") {
                removed[3] += 1;
                continue;
            }
            if c.filter_curly_bracket && line.contains('{') && !curly {
                curly = true;
                if ck.fail("curly_bracket") {
                    return ck.outcome();
                }
            }
            if c.filter_policy && POLICY_SUBSTRINGS.iter().any(|p| lower.contains(p)) {
                removed[4] += 1;
                continue;
            }
            if ck.measuring() || (c.min_num_sentences != -1 && num_sentences < c.min_num_sentences) {
                // Past the minimum the exact count no longer matters (but to annotate mode).
                num_sentences += if c.split_paragraph { count_sentences(&line, segmenter) as i64 } else { 1 };
            }
            kept.push(line);
        }
        for (i, n) in removed.iter().enumerate() {
            ck.set(1 + i, *n as f64);
        }
        ck.set(6, num_sentences as f64);
        ck.set(7, f64::from(u8::from(lorem)));
        ck.set(8, f64::from(u8::from(curly)));
        if num_sentences < c.min_num_sentences && ck.fail("too_few_sentences") {
            return ck.outcome();
        }
        if ck.measuring() {
            return ck.outcome();
        }
        for (total, n) in self.removed.iter_mut().zip(removed) {
            *total += n;
        }
        let joined = kept.join(if c.split_paragraph { "\n" } else { " " });
        let new = py_strip(&joined);
        if new == text {
            Outcome::Keep
        } else {
            Outcome::Rewrite(new.to_string())
        }
    }

    fn take_counters(&mut self) -> BTreeMap<String, u64> {
        let out = LINE_REASONS
            .iter()
            .zip(self.removed)
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| (format!("lines_removed:{r}"), n))
            .collect();
        self.removed = [0; 5];
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c4() -> C4 {
        C4::new(parse_options(serde_json::json!({})).unwrap())
    }

    const BODY: &str = "The library reopened on Saturday after a year of repairs.\n\
        Visitors queued outside before the doors opened at nine.\n\
        The new reading room has space for two hundred people.\n\
        Staff said the children's section was the most popular.\n\
        Opening hours will be extended during the summer holidays.";

    #[test]
    fn keeps_clean_text_unchanged() {
        assert_eq!(c4().filter(BODY, Segmenter::English), Outcome::Keep);
    }

    #[test]
    fn removes_lines_and_counts_them() {
        let mut f = c4();
        let text = format!(
            "Menu\n{BODY}\nPlease enable JavaScript to view the comments.\nThis site uses cookies to improve your experience.\nRead more...\nSee the map[1]."
        );
        let Outcome::Rewrite(out) = f.filter(&text, Segmenter::English) else { panic!("expected a rewrite") };
        assert_eq!(out, format!("{BODY}\nSee the map."));
        let counters = f.take_counters();
        assert_eq!(counters.get("lines_removed:no_terminal_punc"), Some(&2));
        assert_eq!(counters.get("lines_removed:javascript"), Some(&1));
        assert_eq!(counters.get("lines_removed:policy"), Some(&1));
        assert!(f.take_counters().is_empty());
    }

    #[test]
    fn drops_whole_documents() {
        let mut f = c4();
        let lorem = format!("{BODY}\nLorem ipsum dolor sit amet, consectetur.");
        assert_eq!(f.filter(&lorem, Segmenter::English), Outcome::Drop("lorem_ipsum".into()));
        let code = format!("{BODY}\nfunction f() {{ return 1; }} is what we wrote.");
        assert_eq!(f.filter(&code, Segmenter::English), Outcome::Drop("curly_bracket".into()));
        assert_eq!(f.filter("Only one sentence here.", Segmenter::English), Outcome::Drop("too_few_sentences".into()));
        assert_eq!(f.filter("", Segmenter::English), Outcome::Drop("too_few_sentences".into()));
        // Sentences are counted inside lines too.
        assert_eq!(
            f.filter("One is here. Two is here. Three is here. Four is here. Five is here.", Segmenter::English),
            Outcome::Keep
        );
        assert!(f.take_counters().is_empty());
    }

    #[test]
    fn long_words_and_disabled_checks() {
        let long = format!("{BODY}\nA {} word.", "x".repeat(1001));
        let Outcome::Rewrite(out) = c4().filter(&long, Segmenter::English) else { panic!("expected a rewrite") };
        assert_eq!(out, BODY);
        let c: C4Config =
            parse_options(serde_json::json!({"min_num_sentences": -1, "filter_no_terminal_punct": false})).unwrap();
        assert_eq!(C4::new(c).filter("Just a heading line", Segmenter::English), Outcome::Keep);
    }
}
