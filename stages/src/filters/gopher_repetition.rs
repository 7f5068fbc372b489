//! `gopher_repetition` transform: Gopher's repetition heuristics (Rae et al.
//! 2021, table A1) exactly as datatrove 0.10.1's `GopherRepetitionFilter`
//! applies them: duplicate paragraphs and lines (by count and by characters),
//! the share of characters in the most frequent 2-, 3- and 4-gram, and the
//! share of characters in repeated 5- to 10-grams.
//!
//! ```text
//! text ─split \n\n+─► duplicate paragraphs ─split \n+─► duplicate lines
//!      ─words─► top n-gram (n = 2..4) ─► repeated n-grams (n = 5..10) ──► keep | drop(reason)
//! ```
//! datatrove builds a Python string per n-gram; here n-grams are slices of
//! one joined buffer, keyed by a rolling hash and compared by bytes, so no
//! string is allocated per n-gram and equality is exact.

use std::borrow::Cow;
use std::hash::Hasher;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};
use smelt_engine::{
    parse_options, ConfigureContext, OptionError, Result, SchemaError, StageConfig, Transform, TransformConfig,
};

use super::gopher_quality::d_language;
use super::words::{split_into_words, Segmenter};
use super::{char_len, filter_schema, find_duplicates, on, py_strip, Checks, DocFilter, FilterStage, Outcome};

fn d_03() -> Option<f64> {
    Some(0.3)
}
fn d_02() -> Option<f64> {
    Some(0.2)
}
fn d_top() -> Vec<(usize, f64)> {
    vec![(2, 0.2), (3, 0.18), (4, 0.16)]
}
fn d_dup() -> Vec<(usize, f64)> {
    vec![(5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)]
}

/// Options of `gopher_repetition` (datatrove's argument names; `null` or 0 turns a fraction check off).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GopherRepetitionConfig {
    /// Drop documents with a larger share of duplicate lines (default 0.3).
    #[serde(default = "d_03")]
    pub dup_line_frac: Option<f64>,
    /// Drop documents with a larger share of duplicate paragraphs (default 0.3).
    #[serde(default = "d_03")]
    pub dup_para_frac: Option<f64>,
    /// Drop documents with a larger share of characters in duplicate lines (default 0.2).
    #[serde(default = "d_02")]
    pub dup_line_char_frac: Option<f64>,
    /// Drop documents with a larger share of characters in duplicate paragraphs (default 0.2).
    #[serde(default = "d_02")]
    pub dup_para_char_frac: Option<f64>,
    /// `[n, fraction]` pairs: drop when the most frequent n-gram covers more of the characters (default [[2, 0.2], [3, 0.18], [4, 0.16]]).
    #[serde(default = "d_top")]
    pub top_n_grams: Vec<(usize, f64)>,
    /// `[n, fraction]` pairs: drop when repeated n-grams cover more of the characters (default [[5, 0.15], ... [10, 0.10]]).
    #[serde(default = "d_dup")]
    pub dup_n_grams: Vec<(usize, f64)>,
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
/// Unknown or invalid options (an n of 0).
pub fn configure(options: serde_json::Value, ctx: &ConfigureContext) -> Result<StageConfig, OptionError> {
    let c = GopherRepetitionConfig { annotate: ctx.annotate, ..parse_options(options)? };
    for (key, list) in [("top_n_grams", &c.top_n_grams), ("dup_n_grams", &c.dup_n_grams)] {
        if let Some(i) = list.iter().position(|(n, _)| *n == 0) {
            return Err(OptionError {
                path: vec![smelt_engine::yaml::PathSeg::Key(key.into()), smelt_engine::yaml::PathSeg::Index(i)],
                message: "n must be at least 1".into(),
                at_key: false,
            });
        }
    }
    Ok(StageConfig::Transform(Arc::new(c)))
}

impl TransformConfig for GopherRepetitionConfig {
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, SchemaError> {
        filter_schema(input, self.annotate, &self.signal_names())
    }

    fn resolved(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn build(&self, input: &SchemaRef) -> Result<Box<dyn Transform>> {
        Ok(Box::new(
            FilterStage::new(GopherRepetition::new(self.clone()), &self.language).annotating(self.annotate, input)?,
        ))
    }
}

/// The runtime filter, with buffers reused across documents.
pub struct GopherRepetition {
    c: GopherRepetitionConfig,
    buf: Grams,
}

/// One document's words, joined for n-gram slicing, and the n-gram table;
/// all reused from document to document, so a document allocates nothing
/// once the buffers have grown to the largest one seen.
#[derive(Default)]
struct Grams {
    joined: Vec<u8>,
    /// Byte offset in `joined` where each word starts (plus the end).
    offsets: Vec<usize>,
    /// Code points before each word (plus the total).
    chars: Vec<usize>,
    /// Per word boundary k: `sum (byte + 1) * BASE^t` over the bytes t before it,
    /// and `BASE^-offsets[k]`. The hash of the bytes between boundaries i and j,
    /// `(prefix[j] - prefix[i]) * inv_pow[i]`, depends on the bytes only, so
    /// equal strings hash alike however they split into words.
    prefix: Vec<u64>,
    inv_pow: Vec<u64>,
    /// Each word's id: the index of its first occurrence in the document.
    ids: Vec<u32>,
    table: GramTable,
}

impl GopherRepetition {
    /// A filter with these options.
    pub fn new(c: GopherRepetitionConfig) -> Self {
        GopherRepetition { c, buf: Grams::default() }
    }
}

const BASE: u64 = 0x100_0000_01b3;
/// BASE's inverse modulo 2^64 (BASE is odd), by Newton's iteration.
const INV_BASE: u64 = {
    let mut inv = BASE;
    let mut i = 0;
    while i < 6 {
        inv = inv.wrapping_mul(2u64.wrapping_sub(BASE.wrapping_mul(inv)));
        i += 1;
    }
    inv
};

/// An open-addressing hash table of n-grams (or words), named by the index
/// of their first word: keys are compared through a closure over the
/// document's buffers, so no key is built. Cleared, not freed, between uses.
#[derive(Default)]
struct GramTable {
    slots: Vec<Slot>,
    /// log2 of the slots in use.
    bits: u32,
}

#[derive(Clone, Copy, Default)]
struct Slot {
    hash: u64,
    /// First word index + 1 (0: empty).
    start: u32,
    count: u32,
}

impl GramTable {
    /// Empties the table, sized for `keys` distinct keys at most.
    fn reset(&mut self, keys: usize) {
        let bits = (keys.max(8) * 2).next_power_of_two().trailing_zeros();
        let len = 1 << bits;
        if self.slots.len() < len {
            self.slots.resize(len, Slot::default());
        }
        self.slots[..len].fill(Slot::default());
        self.bits = bits;
    }

    /// The slot of the key with this `hash` for which `same(start)` holds,
    /// or a new slot for key `start` (count 0).
    fn entry(&mut self, hash: u64, start: usize, same: impl Fn(usize) -> bool) -> &mut Slot {
        let mask = (1usize << self.bits) - 1;
        // Fibonacci hashing: the top bits of the product spread any input hash.
        let mut i = (hash.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - self.bits)) as usize;
        loop {
            let slot = self.slots[i];
            if slot.start == 0 {
                self.slots[i] = Slot { hash, start: start as u32 + 1, count: 0 };
                return &mut self.slots[i];
            }
            if slot.hash == hash && same(slot.start as usize - 1) {
                return &mut self.slots[i];
            }
            i = (i + 1) & mask;
        }
    }
}

/// `re.split(r"\n{min,}", s)`.
fn split_newline_runs(s: &str, min: usize) -> Vec<&str> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < b.len() {
        if b[i] == b'\n' {
            let run_end = i + b[i..].iter().take_while(|&&c| c == b'\n').count();
            if run_end - i >= min {
                out.push(&s[start..i]);
                start = run_end;
            }
            i = run_end;
        } else {
            i += 1;
        }
    }
    out.push(&s[start..]);
    out
}

impl Grams {
    fn prepare(&mut self, words: &[&str]) {
        assert!(words.len() < u32::MAX as usize, "fewer than 2^32 words");
        self.joined.clear();
        self.offsets.clear();
        self.chars.clear();
        self.prefix.clear();
        self.inv_pow.clear();
        let (mut chars, mut sum, mut pow, mut inv) = (0, 0u64, 1u64, 1u64);
        for w in words {
            self.offsets.push(self.joined.len());
            self.chars.push(chars);
            self.prefix.push(sum);
            self.inv_pow.push(inv);
            self.joined.extend_from_slice(w.as_bytes());
            chars += char_len(w);
            for &b in w.as_bytes() {
                sum = sum.wrapping_add((u64::from(b) + 1).wrapping_mul(pow));
                pow = pow.wrapping_mul(BASE);
                inv = inv.wrapping_mul(INV_BASE);
            }
        }
        self.offsets.push(self.joined.len());
        self.chars.push(chars);
        self.prefix.push(sum);
        self.inv_pow.push(inv);
        self.ids.clear();
        self.table.reset(words.len());
        for (i, w) in words.iter().enumerate() {
            let slot = self.table.entry(self.span_hash(i, i + 1), i, |j| words[j] == *w);
            self.ids.push(slot.start - 1);
        }
    }

    /// Hash of the bytes of words `i..j`.
    fn span_hash(&self, i: usize, j: usize) -> u64 {
        self.prefix[j].wrapping_sub(self.prefix[i]).wrapping_mul(self.inv_pow[i])
    }

    /// datatrove's `find_top_duplicate` over `n`-grams: characters of the most
    /// frequent one (joined with spaces) times its count; ties go to the first seen.
    fn top_duplicate(&mut self, n: usize) -> usize {
        let windows = self.ids.len() + 1 - n;
        let ids = &self.ids;
        self.table.reset(windows);
        let (mut best_count, mut best_first) = (0, 0);
        for i in 0..windows {
            let mut h = super::FxHasher::default();
            for id in &ids[i..i + n] {
                h.write_u64(u64::from(*id));
            }
            let slot = self.table.entry(h.finish(), i, |j| ids[j..j + n] == ids[i..i + n]);
            slot.count += 1;
            let (count, first) = (slot.count, slot.start as usize - 1);
            // Counts only grow: the last n-gram to reach the top count, or the
            // earliest of those that reach it, is Counter's first maximum.
            if count > best_count || (count == best_count && first < best_first) {
                (best_count, best_first) = (count, first);
            }
        }
        let chars = self.chars[best_first + n] - self.chars[best_first] + (n - 1);
        chars * best_count as usize
    }

    /// datatrove's `find_all_duplicate`: characters of repeated `n`-grams
    /// (words concatenated), skipping past each repeat.
    fn all_duplicate(&mut self, n: usize) -> usize {
        let n_words = self.ids.len();
        let (joined, offsets) = (&self.joined, &self.offsets);
        let gram = |i: usize| &joined[offsets[i]..offsets[i + n]];
        let (prefix, inv_pow) = (&self.prefix, &self.inv_pow);
        let span_hash = |i: usize| prefix[i + n].wrapping_sub(prefix[i]).wrapping_mul(inv_pow[i]);
        self.table.reset(n_words);
        let (mut repeated, mut idx) = (0, 0);
        while idx + n <= n_words {
            let hash = span_hash(idx);
            let this = gram(idx);
            let slot = self.table.entry(hash, idx, |j| gram(j) == this);
            if slot.count == 0 {
                slot.count = 1;
                idx += 1;
            } else {
                repeated += self.chars[idx + n] - self.chars[idx];
                idx += n;
            }
        }
        repeated
    }
}

impl GopherRepetitionConfig {
    /// The measurements in annotate mode (`signals` fields), in this order:
    /// the four line and paragraph fractions, then one per configured n-gram size.
    fn signal_names(&self) -> Vec<String> {
        let mut names: Vec<String> = [
            "repetition_dup_para_frac",
            "repetition_dup_para_char_frac",
            "repetition_dup_line_frac",
            "repetition_dup_line_char_frac",
        ]
        .map(String::from)
        .to_vec();
        names.extend(self.top_n_grams.iter().map(|(n, _)| format!("repetition_top_{n}_gram_char_frac")));
        names.extend(self.dup_n_grams.iter().map(|(n, _)| format!("repetition_dup_{n}_gram_char_frac")));
        names
    }
}

impl DocFilter for GopherRepetition {
    fn signals(&self) -> Vec<String> {
        self.c.signal_names()
    }

    fn check(&mut self, text: &str, segmenter: Segmenter, ck: &mut Checks<'_>) -> Outcome {
        if text.is_empty() {
            ck.fail("empty");
            return ck.outcome();
        }
        let c = &self.c;
        let text_len = char_len(text) as f64;
        let paragraphs = split_newline_runs(py_strip(text), 2);
        let (dups, dup_chars) = find_duplicates(paragraphs.iter().copied());
        let (frac, char_frac) = (dups as f64 / paragraphs.len() as f64, dup_chars as f64 / text_len);
        ck.set(0, frac);
        ck.set(1, char_frac);
        if on(c.dup_para_frac).is_some_and(|t| frac > t) && ck.fail("dup_para_frac") {
            return ck.outcome();
        }
        if on(c.dup_para_char_frac).is_some_and(|t| char_frac > t) && ck.fail("dup_para_char_frac") {
            return ck.outcome();
        }
        let lines = split_newline_runs(text, 1);
        let (dups, dup_chars) = find_duplicates(lines.iter().copied());
        let (frac, char_frac) = (dups as f64 / lines.len() as f64, dup_chars as f64 / text_len);
        ck.set(2, frac);
        ck.set(3, char_frac);
        if on(c.dup_line_frac).is_some_and(|t| frac > t) && ck.fail("dup_line_frac") {
            return ck.outcome();
        }
        if on(c.dup_line_char_frac).is_some_and(|t| char_frac > t) && ck.fail("dup_line_char_frac") {
            return ck.outcome();
        }
        let mut words = Vec::new();
        split_into_words(text, segmenter, &mut words);
        self.buf.prepare(&words);
        let mut k = 4;
        for &(n, frac) in &c.top_n_grams {
            k += 1;
            if n > words.len() {
                continue;
            }
            let share = self.buf.top_duplicate(n) as f64 / text_len;
            ck.set(k - 1, share);
            if share > frac && ck.fail(Cow::Owned(format!("top_{n}_gram"))) {
                return ck.outcome();
            }
        }
        for &(n, frac) in &c.dup_n_grams {
            k += 1;
            let share = self.buf.all_duplicate(n) as f64 / text_len;
            ck.set(k - 1, share);
            if share > frac && ck.fail(Cow::Owned(format!("duplicated_{n}_n_grams"))) {
                return ck.outcome();
            }
        }
        ck.outcome()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> Outcome {
        let c: GopherRepetitionConfig = parse_options(serde_json::json!({})).unwrap();
        GopherRepetition::new(c).filter(text, Segmenter::English)
    }

    const PROSE: &str =
        "The river rose overnight after heavy rain in the hills.\n\nFarmers moved cattle to higher ground \
        while volunteers filled sandbags near the old bridge.\n\nBy morning the water had reached the market square, \
        and shop owners began counting the damage.";

    #[test]
    fn keeps_text_without_repetition() {
        assert_eq!(run(PROSE), Outcome::Keep);
        assert_eq!(run(""), Outcome::Drop("empty".into()));
    }

    #[test]
    fn duplicate_paragraphs_and_lines() {
        let p = "Subscribe to our newsletter for updates.";
        assert_eq!(run(&format!("{PROSE}\n\n{p}\n\n{p}\n\n{p}")), Outcome::Drop("dup_para_frac".into()));
        let long = "Click here to read the full terms and conditions of this offer before you buy anything from our store today.";
        assert_eq!(run(&format!("{PROSE}\n\n{long}\n\n{long}")), Outcome::Drop("dup_para_char_frac".into()));
        let lines = "Home\nNews\nSport\nHome\nNews\nSport\nWeather";
        assert_eq!(run(lines), Outcome::Drop("dup_line_frac".into()));
        assert_eq!(split_newline_runs("\na\n\n\nb\n", 1), ["", "a", "b", ""]);
        assert_eq!(split_newline_runs("a\nb\n\nc", 2), ["a\nb", "c"]);
    }

    #[test]
    fn n_gram_repetition() {
        let text = "buy cheap shoes online buy cheap shoes today buy cheap shoes now and buy cheap shoes here";
        assert_eq!(run(text), Outcome::Drop("top_2_gram".into()));
        let c: GopherRepetitionConfig = parse_options(serde_json::json!({"top_n_grams": []})).unwrap();
        let text = "one two three four five six seven eight nine ten eleven twelve one two three four five six seven eight nine ten";
        assert_eq!(
            GopherRepetition::new(c).filter(text, Segmenter::English),
            Outcome::Drop("duplicated_5_n_grams".into())
        );
    }

    #[test]
    fn span_hashes_depend_on_the_bytes_only() {
        assert_eq!(BASE.wrapping_mul(INV_BASE), 1);
        let mut f = Grams::default();
        f.prepare(&["ab", "c", "x", "a", "bc", "abc"]);
        assert_eq!(f.span_hash(0, 2), f.span_hash(3, 5));
        assert_eq!(f.span_hash(0, 2), f.span_hash(5, 6));
        assert_ne!(f.span_hash(0, 1), f.span_hash(4, 5));
    }

    #[test]
    fn all_duplicate_matches_datatrove_arithmetic() {
        let mut f = Grams::default();
        // find_all_duplicate(["a","b","a","b","a","b"], 2): "ab" at 0, "ba" at 1, "ab" again at 2 (+2, skip to 4), "ab" at 4 (+2).
        f.prepare(&["a", "b", "a", "b", "a", "b"]);
        assert_eq!(f.all_duplicate(2), 4);
        // Concatenation decides equality: "ab"+"c" equals "a"+"bc".
        f.prepare(&["ab", "c", "x", "a", "bc"]);
        assert_eq!(f.all_duplicate(2), 3);
        // Top n-gram: counts by word sequence, length with spaces, ties to the first seen.
        f.prepare(&["aa", "b", "c", "dd", "aa", "b", "c", "dd"]);
        assert_eq!(f.top_duplicate(2), ("aa b".len()) * 2);
    }

    /// The table-based counts against datatrove's algorithms written with
    /// strings, on word sequences whose concatenations collide often.
    #[test]
    fn n_gram_counts_match_string_reference() {
        fn top_reference(words: &[&str], n: usize) -> usize {
            let grams: Vec<String> = words.windows(n).map(|w| w.join(" ")).collect();
            let mut counts: Vec<(&String, usize)> = Vec::new();
            for g in &grams {
                match counts.iter_mut().find(|(k, _)| *k == g) {
                    Some(e) => e.1 += 1,
                    None => counts.push((g, 1)),
                }
            }
            // Python's max() keeps the first maximum in insertion order.
            let (mut best, mut best_count) = ("", 0);
            for (k, c) in counts {
                if c > best_count {
                    (best, best_count) = (k.as_str(), c);
                }
            }
            best.chars().count() * best_count
        }
        fn all_reference(words: &[&str], n: usize) -> usize {
            let mut seen = std::collections::HashSet::new();
            let (mut repeated, mut idx) = (0, 0);
            while idx + n <= words.len() {
                let g: String = words[idx..idx + n].concat();
                if seen.insert(g.clone()) {
                    idx += 1;
                } else {
                    repeated += g.chars().count();
                    idx += n;
                }
            }
            repeated
        }
        const VOCAB: [&str; 7] = ["a", "b", "ab", "ba", "é", "aé", "x"];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut f = Grams::default();
        for len in 1..200 {
            let words: Vec<&str> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    VOCAB[(state % if len % 2 == 0 { 3 } else { 7 }) as usize]
                })
                .collect();
            f.prepare(&words);
            for n in 1..=10.min(len) {
                assert_eq!(f.top_duplicate(n), top_reference(&words, n), "top {n} of {words:?}");
            }
            for n in 1..=10 {
                assert_eq!(f.all_duplicate(n), all_reference(&words, n), "all {n} of {words:?}");
            }
        }
    }
}
