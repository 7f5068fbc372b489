//! `toxicity` transform: finds words from block lists in `text` (the LDNOOBW
//! lists of 28 languages are bundled; users add their own) and URLs on domain
//! block lists, then drops the document or flags it.
//!
//! ```text
//! url ──host, parent domains──► domain block list ─┐
//!     ──alphanumerics only────► url_words ─────────┼─► blocked_url
//! text ──lowercase, one space──► Aho-Corasick (all lists, overlapping)
//!        ──keep terms of the row's language lists, at word boundaries──►
//!        ──leftmost-longest, no overlap──► matches ≥ min_matches ──► toxic_words
//! lang (when the input has it) ──► which lists count for the row
//! ```
//!
//! Matching is case-insensitive (Unicode lowercase) and treats runs of
//! whitespace as one space, so multi-word terms match across line breaks.
//! Terms must stand at word boundaries, except terms in scripts written
//! without spaces (Chinese, Japanese, Thai, Lao, Khmer, Myanmar), which match
//! anywhere, as in C4's bad-words filter: "Scunthorpe" does not contain a
//! match, "他妈的" does. Matched terms are counted per list and term through
//! the stage's counters (`match:<list>:<term>`), never written to rows.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use arrow::array::{ArrayRef, BooleanBuilder, UInt32Builder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use smelt_engine::diagnostic::closest;
use smelt_engine::str_at;
use smelt_engine::yaml::PathSeg;
use smelt_engine::{
    parse_options, require_column, ConfigureContext, EngineError, OptionError, Processed, Result, SchemaError,
    StageConfig, Transform, TransformConfig,
};

/// The bundled LDNOOBW lists (`stages/lexicons/ldnoobw`, CC BY 4.0), by language code.
pub const LDNOOBW: [(&str, &str); 28] = [
    ("ar", include_str!("../lexicons/ldnoobw/ar")),
    ("cs", include_str!("../lexicons/ldnoobw/cs")),
    ("da", include_str!("../lexicons/ldnoobw/da")),
    ("de", include_str!("../lexicons/ldnoobw/de")),
    ("en", include_str!("../lexicons/ldnoobw/en")),
    ("eo", include_str!("../lexicons/ldnoobw/eo")),
    ("es", include_str!("../lexicons/ldnoobw/es")),
    ("fa", include_str!("../lexicons/ldnoobw/fa")),
    ("fi", include_str!("../lexicons/ldnoobw/fi")),
    ("fil", include_str!("../lexicons/ldnoobw/fil")),
    ("fr", include_str!("../lexicons/ldnoobw/fr")),
    ("fr-CA-u-sd-caqc", include_str!("../lexicons/ldnoobw/fr-CA-u-sd-caqc")),
    ("hi", include_str!("../lexicons/ldnoobw/hi")),
    ("hu", include_str!("../lexicons/ldnoobw/hu")),
    ("it", include_str!("../lexicons/ldnoobw/it")),
    ("ja", include_str!("../lexicons/ldnoobw/ja")),
    ("kab", include_str!("../lexicons/ldnoobw/kab")),
    ("ko", include_str!("../lexicons/ldnoobw/ko")),
    ("nl", include_str!("../lexicons/ldnoobw/nl")),
    ("no", include_str!("../lexicons/ldnoobw/no")),
    ("pl", include_str!("../lexicons/ldnoobw/pl")),
    ("pt", include_str!("../lexicons/ldnoobw/pt")),
    ("ru", include_str!("../lexicons/ldnoobw/ru")),
    ("sv", include_str!("../lexicons/ldnoobw/sv")),
    ("th", include_str!("../lexicons/ldnoobw/th")),
    ("tlh", include_str!("../lexicons/ldnoobw/tlh")),
    ("tr", include_str!("../lexicons/ldnoobw/tr")),
    ("zh", include_str!("../lexicons/ldnoobw/zh")),
];

/// Row language codes that name a bundled list differently.
const LANGUAGE_ALIASES: [(&str, &str); 3] = [("nb", "no"), ("nn", "no"), ("tl", "fil")];

/// What to do with a toxic document.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Drop it, with the reason `toxic_words` or `blocked_url`.
    #[default]
    Drop,
    /// Keep it and add `toxic: Boolean` and `toxic_matches: UInt32`.
    Flag,
}

fn default_allow() -> Vec<String> {
    // C4's allowlist (datatrove `_BADWORDS_ALLOWLIST`): common words in Japanese and Chinese text.
    ["sm", "グロ", "女の子", "性"].iter().map(|s| s.to_string()).collect()
}

fn one() -> u32 {
    1
}

fn language() -> String {
    "lang".into()
}

/// Options of `toxicity`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToxicityConfig {
    /// Bundled LDNOOBW lists to use, by language code (default: all 28).
    #[serde(default)]
    pub languages: Option<Vec<String>>,
    /// Lists for rows without a language (no language column, or null): default `[en]` when `languages` has it (as C4), else all of `languages`.
    #[serde(default)]
    pub default_languages: Option<Vec<String>>,
    /// Your own word files, one term per line (`#` starts a comment line), used for every row.
    #[serde(default)]
    pub lists: Vec<PathBuf>,
    /// Your own terms, inline, used for every row (counted as list `words`).
    #[serde(default)]
    pub words: Vec<String>,
    /// Terms never matched (default C4's allowlist: `sm`, `グロ`, `女の子`, `性`).
    #[serde(default = "default_allow")]
    pub allow: Vec<String>,
    /// Domain block list files: one domain per line (`#` comments; hosts-file lines use their last field).
    #[serde(default)]
    pub url_blocklist: Vec<PathBuf>,
    /// Blocked domains, inline; a domain blocks its subdomains too.
    #[serde(default)]
    pub blocked_domains: Vec<String>,
    /// Substrings that block a URL, compared with the URL's letters and digits only, lowercased.
    #[serde(default)]
    pub url_words: Vec<String>,
    /// `drop` (default) drops toxic documents; `flag` keeps them and adds `toxic` and `toxic_matches`.
    #[serde(default)]
    pub mode: Mode,
    /// Matches a document needs to be toxic (default 1).
    #[serde(default = "one")]
    pub min_matches: u32,
    /// Matches per word (whitespace-separated) a document may have and stay clean (default 0).
    #[serde(default)]
    pub max_ratio: f64,
    /// Column with each row's language code (default `lang`, as `langid` writes it), used when the input has it.
    #[serde(default = "language")]
    pub language_column: String,
}

fn option_error(path: Vec<PathSeg>, message: String) -> OptionError {
    OptionError { path, message, at_key: false }
}

fn key(k: &str) -> PathSeg {
    PathSeg::Key(k.to_string())
}

fn check_languages(option: &str, langs: &[String], allowed: &[&str]) -> Result<(), OptionError> {
    for (i, lang) in langs.iter().enumerate() {
        if !allowed.contains(&lang.as_str()) {
            let hint =
                closest(lang, allowed.iter().copied()).map(|c| format!("; did you mean `{c}`?")).unwrap_or_default();
            return Err(option_error(
                vec![key(option), PathSeg::Index(i)],
                format!("no list for `{lang}`{hint} (lists: {})", allowed.join(", ")),
            ));
        }
    }
    Ok(())
}

/// Registry hook.
///
/// # Errors
/// Unknown options, languages without a list, `min_matches` 0, `max_ratio`
/// outside [0, 1), terms that are empty once normalised, or nothing to match.
pub fn configure(options: serde_json::Value, ctx: &ConfigureContext) -> Result<StageConfig, OptionError> {
    let c = parse_config(options, ctx)?;
    Ok(StageConfig::Transform(Arc::new(Toxicity { config: c, lexicon: Mutex::new(None), annotate: ctx.annotate })))
}

/// Parses and checks `toxicity` options (also `audit`'s `toxicity:` block),
/// resolving relative paths and filling in the language defaults.
///
/// # Errors
/// As [`configure`].
pub fn parse_config(options: serde_json::Value, ctx: &ConfigureContext) -> Result<ToxicityConfig, OptionError> {
    let mut c: ToxicityConfig = parse_options(options)?;
    for p in c.lists.iter_mut().chain(c.url_blocklist.iter_mut()) {
        *p = ctx.resolve(p);
    }
    let bundled: Vec<&str> = LDNOOBW.iter().map(|(l, _)| *l).collect();
    let languages = c.languages.get_or_insert_with(|| bundled.iter().map(|l| l.to_string()).collect()).clone();
    check_languages("languages", &languages, &bundled)?;
    let defaults = c.default_languages.get_or_insert_with(|| default_lists(&languages)).clone();
    let configured: Vec<&str> = languages.iter().map(String::as_str).collect();
    check_languages("default_languages", &defaults, &configured)?;
    if c.min_matches == 0 {
        return Err(option_error(vec![key("min_matches")], "must be at least 1".into()));
    }
    if !(0.0..1.0).contains(&c.max_ratio) {
        return Err(option_error(vec![key("max_ratio")], "must be at least 0 and below 1".into()));
    }
    let mut scratch = String::new();
    for (i, w) in c.words.iter().enumerate() {
        if normalize(w, &mut scratch) == 0 {
            return Err(option_error(vec![key("words"), PathSeg::Index(i)], "is empty".into()));
        }
    }
    for (i, w) in c.url_words.iter().enumerate() {
        if url_letters(w).is_empty() {
            return Err(option_error(vec![key("url_words"), PathSeg::Index(i)], "has no letters or digits".into()));
        }
    }
    for (i, d) in c.blocked_domains.iter().enumerate() {
        if domain_entry(d).is_none() {
            return Err(option_error(vec![key("blocked_domains"), PathSeg::Index(i)], "is not a domain".into()));
        }
    }
    let matches_text = !languages.is_empty() || !c.lists.is_empty() || !c.words.is_empty();
    let matches_url = !c.url_blocklist.is_empty() || !c.blocked_domains.is_empty() || !c.url_words.is_empty();
    if !matches_text && !matches_url {
        return Err(option_error(
            vec![key("languages")],
            "is empty and no `lists`, `words`, `url_blocklist`, `blocked_domains` or `url_words` are given: nothing to match".into(),
        ));
    }
    Ok(c)
}

// ---- text normalisation and boundaries --------------------------------------

/// Lowercases `text` into `out` with whitespace runs as one space, curly
/// apostrophes as `'` and Thai NIKHAHIT + SARA AA as SARA AM; returns the number of words.
pub fn normalize(text: &str, out: &mut String) -> usize {
    out.clear();
    out.reserve(text.len());
    let b = text.as_bytes();
    let mut words = 0;
    let mut in_word = false;
    let mut pending_space = false;
    let mut i = 0;
    while i < b.len() {
        let c = if b[i] < 0x80 {
            i += 1;
            b[i - 1] as char
        } else {
            let c = text[i..].chars().next().expect("in bounds");
            i += c.len_utf8();
            c
        };
        if c.is_whitespace() {
            pending_space |= in_word;
            in_word = false;
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        if !in_word {
            words += 1;
            in_word = true;
        }
        match c {
            'A'..='Z' => out.push(c.to_ascii_lowercase()),
            c if c.is_ascii() => out.push(c),
            '\u{2018}' | '\u{2019}' | '\u{02bc}' => out.push('\''),
            '\u{0e32}' if out.ends_with('\u{0e4d}') => {
                out.pop();
                out.push('\u{0e33}');
            }
            c => out.extend(c.to_lowercase()),
        }
    }
    words
}

/// Scripts written without spaces between words.
pub(crate) fn is_spaceless(c: char) -> bool {
    matches!(c as u32,
        0x0E00..=0x0EFF     // Thai, Lao
        | 0x1000..=0x109F   // Myanmar
        | 0x1780..=0x17FF   // Khmer
        | 0x3040..=0x30FF   // Hiragana, Katakana
        | 0x31F0..=0x31FF   // Katakana extensions
        | 0x3400..=0x4DBF   // CJK extension A
        | 0x4E00..=0x9FFF   // CJK unified ideographs
        | 0xF900..=0xFAFF   // CJK compatibility ideographs
        | 0xFF66..=0xFF9F   // half-width Katakana
        | 0x20000..=0x3FFFF // CJK extensions B and later
    )
}

/// Whether a character next to a match joins it to a longer word.
fn joins_word(c: char) -> bool {
    (c.is_alphanumeric() || c == '_') && !is_spaceless(c)
}

/// Keeps, of overlapping matches `(start, end, pattern)`, the leftmost and
/// then longest ones, none overlapping (as a regex alternation would match).
pub(crate) fn keep_leftmost_longest(out: &mut Vec<(usize, usize, usize)>) {
    out.sort_by_key(|&(s, e, _)| (s, std::cmp::Reverse(e)));
    let mut kept = 0;
    let mut last_end = 0;
    for i in 0..out.len() {
        if out[i].0 >= last_end {
            last_end = out[i].1;
            out[kept] = out[i];
            kept += 1;
        }
    }
    out.truncate(kept);
}

pub(crate) fn at_boundaries(hay: &str, start: usize, end: usize) -> bool {
    !hay[..start].chars().next_back().is_some_and(joins_word) && !hay[end..].chars().next().is_some_and(joins_word)
}

// ---- URLs ---------------------------------------------------------------------

/// The host of a URL (or of a bare domain), lowercase, without `www.` and a final dot.
fn host_of(url: &str) -> Option<String> {
    let rest = url.trim().split_once("://").map_or(url.trim(), |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match hostport.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => hostport.split(':').next().unwrap_or(""),
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let host = host.strip_prefix("www.").map(str::to_string).unwrap_or(host);
    (!host.is_empty()).then_some(host)
}

/// A block-list line as a domain: `example.com`, `*.example.com`, `.example.com`, `0.0.0.0 example.com`.
fn domain_entry(line: &str) -> Option<String> {
    let field = line.split_whitespace().last()?;
    if field.starts_with('#') {
        return None;
    }
    let field = field.trim_start_matches("*.").trim_start_matches('.');
    host_of(field).filter(|h| !h.contains(char::is_whitespace))
}

/// The letters and digits of a URL, lowercased (datatrove's URL normalisation).
fn url_letters(url: &str) -> String {
    url.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

// ---- the compiled lexicon -------------------------------------------------------

#[derive(Debug)]
struct Term {
    text: String,
    /// Bit i set: the term is in list i.
    lists: u64,
    /// Must stand at word boundaries.
    bounded: bool,
}

/// Every list compiled into one automaton, shared by all splits of a run.
struct Lexicon {
    /// List names: language codes, then file names of `lists`, then `words`.
    names: Vec<String>,
    terms: Vec<Term>,
    text_ac: Option<AhoCorasick>,
    /// Lists per row language (primary subtag).
    by_language: HashMap<String, u64>,
    /// Lists for rows without a language.
    default_mask: u64,
    /// Lists for every row (`lists`, `words`).
    always_mask: u64,
    domains: HashSet<String>,
    url_words: Vec<String>,
    url_ac: Option<AhoCorasick>,
}

fn read_lines(path: &Path, option: &str) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| EngineError::External(format!("toxicity: cannot read `{option}` file {}: {e}", path.display())))
}

/// Lists for rows without a language: English alone when configured (other
/// languages' terms are common English words, Turkish `am`), else all.
fn default_lists(languages: &[String]) -> Vec<String> {
    if languages.iter().any(|l| l == "en") {
        vec!["en".to_string()]
    } else {
        languages.to_vec()
    }
}

impl Lexicon {
    fn build(c: &ToxicityConfig) -> Result<Lexicon> {
        let languages = c.languages.clone().unwrap_or_default();
        let defaults = c.default_languages.clone().unwrap_or_else(|| default_lists(&languages));
        let mut sources: Vec<(String, String)> = LDNOOBW
            .iter()
            .filter(|(l, _)| languages.iter().any(|x| x == l))
            .map(|(l, words)| (l.to_string(), words.to_string()))
            .collect();
        let first_user = sources.len();
        for path in &c.lists {
            let base = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "list".into());
            let mut name = base.clone();
            let mut n = 1;
            while sources.iter().any(|(s, _)| *s == name) {
                n += 1;
                name = format!("{base}~{n}");
            }
            sources.push((name, read_lines(path, "lists")?));
        }
        if !c.words.is_empty() {
            sources.push(("words".into(), c.words.join("\n")));
        }
        if sources.len() > 64 {
            return Err(EngineError::User(format!("toxicity: at most 64 lists, got {}", sources.len())));
        }
        let mut scratch = String::new();
        let allow: HashSet<String> = c
            .allow
            .iter()
            .map(|w| {
                normalize(w, &mut scratch);
                scratch.clone()
            })
            .collect();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut terms: Vec<Term> = Vec::new();
        for (bit, (_, words)) in sources.iter().enumerate() {
            for line in words.lines() {
                if line.trim_start().starts_with('#') || normalize(line, &mut scratch) == 0 || allow.contains(&scratch)
                {
                    continue;
                }
                let i = *index.entry(scratch.clone()).or_insert_with(|| {
                    terms.push(Term { text: scratch.clone(), lists: 0, bounded: !scratch.chars().any(is_spaceless) });
                    terms.len() - 1
                });
                terms[i].lists |= 1 << bit;
            }
        }
        let names: Vec<String> = sources.into_iter().map(|(n, _)| n).collect();
        let always_mask = (first_user..names.len()).fold(0u64, |m, i| m | 1 << i);
        let mut by_language: HashMap<String, u64> = HashMap::new();
        let mut default_mask = 0;
        for (bit, name) in names[..first_user].iter().enumerate() {
            let primary = name.split('-').next().unwrap_or(name).to_string();
            *by_language.entry(primary).or_default() |= 1 << bit;
            if defaults.contains(name) {
                default_mask |= 1 << bit;
            }
        }
        let build = |patterns: &[String]| -> Result<Option<AhoCorasick>> {
            if patterns.is_empty() {
                return Ok(None);
            }
            AhoCorasickBuilder::new()
                .match_kind(MatchKind::Standard)
                .build(patterns)
                .map(Some)
                .map_err(|e| EngineError::Internal(format!("toxicity: cannot build the matcher: {e}")))
        };
        let text_ac = build(&terms.iter().map(|t| t.text.clone()).collect::<Vec<_>>())?;
        let mut domains: HashSet<String> = c.blocked_domains.iter().filter_map(|d| domain_entry(d)).collect();
        for path in &c.url_blocklist {
            domains.extend(read_lines(path, "url_blocklist")?.lines().filter_map(domain_entry));
        }
        let url_words: Vec<String> = c.url_words.iter().map(|w| url_letters(w)).filter(|w| !w.is_empty()).collect();
        let url_ac = build(&url_words)?;
        Ok(Lexicon { names, terms, text_ac, by_language, default_mask, always_mask, domains, url_words, url_ac })
    }

    /// The lists that count for a row, and whether its language has none.
    fn mask_for(&self, language: Option<&str>) -> (u64, bool) {
        let Some(lang) = language.map(str::trim).filter(|l| !l.is_empty()) else {
            return (self.default_mask | self.always_mask, false);
        };
        let primary = lang.split(['-', '_']).next().unwrap_or(lang).to_ascii_lowercase();
        let primary = LANGUAGE_ALIASES.iter().find(|(a, _)| *a == primary).map_or(primary.as_str(), |(_, l)| *l);
        match self.by_language.get(primary) {
            Some(m) => (m | self.always_mask, false),
            None => (self.always_mask, true),
        }
    }

    /// Why a URL is blocked: `Some("domain")` or `Some(word index)`.
    fn url_verdict(&self, url: &str) -> Option<UrlBlock> {
        if !self.domains.is_empty() {
            if let Some(host) = host_of(url) {
                let mut rest = host.as_str();
                loop {
                    if self.domains.contains(rest) {
                        return Some(UrlBlock::Domain);
                    }
                    match rest.split_once('.') {
                        Some((_, parent)) => rest = parent,
                        None => break,
                    }
                }
            }
        }
        let ac = self.url_ac.as_ref()?;
        ac.find(&url_letters(url)).map(|m| UrlBlock::Word(m.pattern().as_usize()))
    }
}

enum UrlBlock {
    Domain,
    Word(usize),
}

/// One accepted match: (start, end, term).
type Found = (usize, usize, usize);

/// Leftmost-longest, non-overlapping matches of the row's lists at word boundaries.
fn find_matches(lex: &Lexicon, hay: &str, mask: u64, out: &mut Vec<Found>) {
    out.clear();
    let Some(ac) = &lex.text_ac else { return };
    for m in ac.find_overlapping_iter(hay) {
        let t = m.pattern().as_usize();
        let term = &lex.terms[t];
        if term.lists & mask != 0 && (!term.bounded || at_boundaries(hay, m.start(), m.end())) {
            out.push((m.start(), m.end(), t));
        }
    }
    keep_leftmost_longest(out);
}

/// The toxicity verdict of `toxicity`'s lists for other stages (`audit`):
/// the same lexicon, matcher and thresholds, on text already normalised.
pub struct ToxicMatcher {
    lexicon: Arc<Lexicon>,
    min_matches: u32,
    max_ratio: f64,
    found: Vec<Found>,
}

impl ToxicMatcher {
    /// Builds the lists of `config` (from [`parse_config`]).
    ///
    /// # Errors
    /// A list file cannot be read.
    pub fn new(config: &ToxicityConfig) -> Result<ToxicMatcher> {
        Ok(ToxicMatcher {
            lexicon: Arc::new(Lexicon::build(config)?),
            min_matches: config.min_matches,
            max_ratio: config.max_ratio,
            found: Vec::new(),
        })
    }

    /// Matches in `normalized` (from [`normalize`], which also gave `words`)
    /// of the lists for a row in `language`; the number of matches and whether
    /// they make the document toxic (the URL lists are not used).
    pub fn check(&mut self, normalized: &str, words: usize, language: Option<&str>) -> (u32, bool) {
        let (mask, _) = self.lexicon.mask_for(language);
        if mask == 0 {
            return (0, false);
        }
        find_matches(&self.lexicon, normalized, mask, &mut self.found);
        let n = u32::try_from(self.found.len()).unwrap_or(u32::MAX);
        (n, n >= self.min_matches && f64::from(n) / words.max(1) as f64 > self.max_ratio)
    }
}

impl Clone for ToxicMatcher {
    fn clone(&self) -> Self {
        ToxicMatcher {
            lexicon: self.lexicon.clone(),
            min_matches: self.min_matches,
            max_ratio: self.max_ratio,
            found: Vec::new(),
        }
    }
}

// ---- the stage ------------------------------------------------------------------

/// The configured stage: options and the lexicon, built on first use and shared by all splits.
pub struct Toxicity {
    config: ToxicityConfig,
    lexicon: Mutex<Option<Arc<Lexicon>>>,
    /// `mode: annotate` (the engine's): `flag`'s columns, and the drop reasons as verdicts.
    annotate: bool,
}

impl std::fmt::Debug for Toxicity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Toxicity").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Toxicity {
    fn uses_url(&self) -> bool {
        let c = &self.config;
        !c.url_blocklist.is_empty() || !c.blocked_domains.is_empty() || !c.url_words.is_empty()
    }

    fn lexicon(&self) -> Result<Arc<Lexicon>> {
        let mut slot =
            self.lexicon.lock().map_err(|_| EngineError::Internal("toxicity: lexicon lock poisoned".into()))?;
        if let Some(l) = slot.as_ref() {
            return Ok(l.clone());
        }
        let l = Arc::new(Lexicon::build(&self.config)?);
        *slot = Some(l.clone());
        Ok(l)
    }
}

impl TransformConfig for Toxicity {
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, SchemaError> {
        require_column(input, "text", &[DataType::LargeUtf8, DataType::Utf8])?;
        if self.uses_url() {
            require_column(input, "url", &[DataType::Utf8, DataType::LargeUtf8])?;
        }
        if input.field_with_name(&self.config.language_column).is_ok() {
            require_column(input, &self.config.language_column, &[DataType::Utf8, DataType::LargeUtf8])?;
        }
        if self.config.mode == Mode::Drop && !self.annotate {
            return Ok(input.clone());
        }
        for name in ["toxic", "toxic_matches"] {
            if input.field_with_name(name).is_ok() {
                return Err(SchemaError::new(format!(
                    "would add `{name}`, but its input already has it; rename one of them"
                )));
            }
        }
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("toxic", DataType::Boolean, false));
        fields.push(Field::new("toxic_matches", DataType::UInt32, false));
        Ok(Arc::new(Schema::new(fields)))
    }

    fn resolved(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or_default()
    }

    fn build(&self, input: &SchemaRef) -> Result<Box<dyn Transform>> {
        let output = self.output_schema(input).map_err(|e| EngineError::Internal(e.0))?;
        Ok(Box::new(ToxicityTransform {
            lexicon: self.lexicon()?,
            config: self.config.clone(),
            annotate: self.annotate,
            output,
            scratch: String::new(),
            found: Vec::new(),
            term_counts: HashMap::new(),
            counters: BTreeMap::new(),
        }))
    }
}

struct ToxicityTransform {
    lexicon: Arc<Lexicon>,
    config: ToxicityConfig,
    annotate: bool,
    output: SchemaRef,
    scratch: String,
    found: Vec<Found>,
    /// (list, term) → matches.
    term_counts: HashMap<(u8, u32), u64>,
    counters: BTreeMap<String, u64>,
}

/// The string at row `i` of a Utf8 or LargeUtf8 column; `None` for nulls.

impl ToxicityTransform {
    fn count(&mut self, name: &str, n: u64) {
        *self.counters.entry(name.to_string()).or_default() += n;
    }

    /// Matches of the row's lists in `text`, counted per list and term; returns (matches, words).
    fn scan(&mut self, text: &str, mask: u64) -> (u32, usize) {
        if mask == 0 {
            return (0, 0);
        }
        let words = normalize(text, &mut self.scratch);
        find_matches(&self.lexicon, &self.scratch, mask, &mut self.found);
        for &(_, _, t) in &self.found {
            let mut lists = self.lexicon.terms[t].lists & mask;
            while lists != 0 {
                let bit = lists.trailing_zeros();
                lists &= lists - 1;
                *self.term_counts.entry((bit as u8, t as u32)).or_default() += 1;
            }
        }
        (u32::try_from(self.found.len()).unwrap_or(u32::MAX), words)
    }

    fn is_toxic(&self, matches: u32, words: usize) -> bool {
        matches >= self.config.min_matches && f64::from(matches) / words.max(1) as f64 > self.config.max_ratio
    }
}

impl Transform for ToxicityTransform {
    fn process(&mut self, batch: RecordBatch) -> Result<Processed> {
        let lexicon = self.lexicon.clone();
        let text =
            batch.column_by_name("text").ok_or_else(|| EngineError::Internal("toxicity: no text column".into()))?;
        let url = batch.column_by_name("url").filter(|_| lexicon.domains.len() + lexicon.url_words.len() > 0);
        let language = batch.column_by_name(&self.config.language_column);
        // Annotate mode writes `flag`'s columns and gives drop mode's verdicts (the engine keeps the rows).
        let flag = self.config.mode == Mode::Flag || self.annotate;
        let verdicts_too = self.config.mode == Mode::Drop && self.annotate;
        let mut verdicts = Vec::with_capacity(batch.num_rows());
        let mut toxic = BooleanBuilder::with_capacity(batch.num_rows());
        let mut toxic_matches = UInt32Builder::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            let blocked = url.and_then(|u| str_at(u, i)).and_then(|u| lexicon.url_verdict(u));
            match blocked {
                Some(UrlBlock::Domain) => self.count("blocked_url:domain", 1),
                Some(UrlBlock::Word(w)) => {
                    let name = format!("blocked_url:word:{}", lexicon.url_words[w]);
                    self.count(&name, 1);
                }
                None => {}
            }
            let (matches, words) = if blocked.is_some() && !flag {
                (0, 0)
            } else {
                let lang = language.and_then(|l| str_at(l, i));
                let (mask, no_list) = lexicon.mask_for(lang);
                if no_list {
                    self.count("language_without_list", 1);
                }
                self.scan(str_at(text, i).unwrap_or(""), mask)
            };
            let toxic_words = self.is_toxic(matches, words);
            if !flag || verdicts_too {
                verdicts.push(match (blocked.is_some(), toxic_words) {
                    (true, _) => Some("blocked_url".into()),
                    (false, true) => Some("toxic_words".into()),
                    (false, false) => None,
                });
            }
            if flag {
                if blocked.is_some() || toxic_words {
                    self.count("flagged", 1);
                }
                toxic.append_value(blocked.is_some() || toxic_words);
                toxic_matches.append_value(matches);
            }
        }
        if !flag {
            return Ok(Processed::Filtered { batch, verdicts });
        }
        let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
        cols.push(Arc::new(toxic.finish()));
        cols.push(Arc::new(toxic_matches.finish()));
        let batch = RecordBatch::try_new(self.output.clone(), cols)?;
        if verdicts_too {
            return Ok(Processed::Filtered { batch, verdicts });
        }
        Ok(Processed::Batch(batch))
    }

    fn take_counters(&mut self) -> BTreeMap<String, u64> {
        let mut out = std::mem::take(&mut self.counters);
        for ((list, term), n) in self.term_counts.drain() {
            let list = &self.lexicon.names[list as usize];
            *out.entry(format!("matches:{list}")).or_default() += n;
            *out.entry(format!("match:{list}:{}", self.lexicon.terms[term as usize].text)).or_default() += n;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{BooleanArray, LargeStringArray, StringArray, UInt32Array};
    use smelt_engine::stage::doc;
    use std::borrow::Cow;

    fn stage(options: serde_json::Value) -> Arc<dyn TransformConfig> {
        match configure(options, &ConfigureContext::working_dir()).unwrap() {
            StageConfig::Transform(t) => t,
            _ => unreachable!("a transform"),
        }
    }

    fn lexicon(options: serde_json::Value) -> Lexicon {
        let c: ToxicityConfig = serde_json::from_value(options).unwrap();
        let mut c = c;
        c.languages.get_or_insert_with(|| LDNOOBW.iter().map(|(l, _)| l.to_string()).collect());
        Lexicon::build(&c).unwrap()
    }

    /// The matched terms of `text` for a row in `lang`.
    fn matched(lex: &Lexicon, text: &str, lang: Option<&str>) -> Vec<String> {
        let (mask, _) = lex.mask_for(lang);
        let mut hay = String::new();
        normalize(text, &mut hay);
        let mut found = Vec::new();
        find_matches(lex, &hay, mask, &mut found);
        found.iter().map(|&(_, _, t)| lex.terms[t].text.clone()).collect()
    }

    #[test]
    fn word_boundaries_case_and_spacing() {
        let lex = lexicon(serde_json::json!({"languages": ["en"]}));
        // The Scunthorpe problem: substrings of innocent words do not match.
        for clean in [
            "Scunthorpe United beat Essex 2-1; the analyst's assessment of Sussex.",
            "The cockpit of the Shittake-free kitchen, a classic class assignment.",
            "Therapist notes: the grape harvest in Middlesex.",
        ] {
            assert!(matched(&lex, clean, Some("en")).is_empty(), "{clean}: {:?}", matched(&lex, clean, Some("en")));
        }
        assert_eq!(matched(&lex, "What a BULLSHIT excuse, you Asshole!", Some("en")), vec!["bullshit", "asshole"]);
        // Multi-word terms match across line breaks; the longest term wins.
        assert_eq!(matched(&lex, "a Ball\n  Gag was found", Some("en")), vec!["ball gag"]);
        assert_eq!(matched(&lex, "“bullshit”, he said", None), vec!["bullshit"]);
    }

    #[test]
    fn scripts_without_spaces_match_inside_words() {
        let lex = lexicon(serde_json::json!({}));
        assert_eq!(matched(&lex, "他说：“你他妈的在干什么？”", Some("zh")), vec!["他妈的"]);
        // C4's allowlist: 性 alone is too common in Chinese (性别, 性能).
        assert!(matched(&lex, "这款手机的性能很好，性别平等。", Some("zh")).is_empty());
        // Thai list terms are written with NIKHAHIT + SARA AA; text uses SARA AM.
        assert_eq!(matched(&lex, "เขาพูดว่าน้ำแตกแล้ว", Some("th")), vec!["น้ำแตก"]);
        // A Latin term next to CJK characters still stands at a word boundary.
        assert_eq!(matched(&lex, "他说bullshit了", Some("en")), vec!["bullshit"]);
    }

    #[test]
    fn row_language_picks_lists() {
        let lex = lexicon(serde_json::json!({"languages": ["en", "de", "tr", "fr", "fr-CA-u-sd-caqc"]}));
        // Turkish "am" is an English word: only Turkish rows count it; rows
        // without a language use English alone by default.
        assert!(matched(&lex, "I am here", Some("en")).is_empty());
        assert_eq!(matched(&lex, "I am here", Some("tr")), vec!["am"]);
        assert!(matched(&lex, "I am here", None).is_empty());
        let all = lexicon(serde_json::json!({"languages": ["en", "tr"], "default_languages": ["en", "tr"]}));
        assert_eq!(matched(&all, "I am here", None), vec!["am"]);
        // A language's regional lists count for it; `en-GB` and `FR` work.
        assert_eq!(matched(&lex, "Tabarnak, quelle journée", Some("FR")), vec!["tabarnak"]);
        assert_eq!(matched(&lex, "what an asshole", Some("en-GB")), vec!["asshole"]);
        // Russian Cyrillic is lowercased before matching but Russian is not configured here.
        let (mask, no_list) = lex.mask_for(Some("ru"));
        assert_eq!((mask, no_list), (0, true));
        let ru = lexicon(serde_json::json!({"languages": ["ru"], "words": ["Scheiße"]}));
        assert_eq!(matched(&ru, "Он сказал: БЛЯДЬ!", Some("ru")), vec!["блядь"]);
        // Inline words count for every language.
        assert_eq!(matched(&ru, "So eine SCHEISSE, so eine Scheiße", Some("de")), vec!["scheiße"]);
    }

    #[test]
    fn urls_by_domain_and_words() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("domains.txt");
        std::fs::write(&list, "# adult sites\nbad-example.com\n0.0.0.0 tracker.example.net\n*.casino.test\n\n")
            .unwrap();
        let lex = lexicon(serde_json::json!({
            "languages": [], "url_blocklist": [list], "blocked_domains": ["WWW.Spam.Example"], "url_words": ["porn"]
        }));
        let blocked = |u: &str| match lex.url_verdict(u) {
            Some(UrlBlock::Domain) => "domain",
            Some(UrlBlock::Word(_)) => "word",
            None => "",
        };
        assert_eq!(blocked("https://www.bad-example.com/page?x=1"), "domain");
        assert_eq!(blocked("http://user@cdn.bad-example.com:8080/a"), "domain");
        assert_eq!(blocked("https://tracker.example.net/"), "domain");
        assert_eq!(blocked("https://a.b.casino.test/"), "domain");
        assert_eq!(blocked("https://spam.example/"), "domain");
        assert_eq!(blocked("https://notbad-example.com/"), "");
        assert_eq!(blocked("https://example.net/"), "");
        assert_eq!(blocked("https://videos.example.org/P-O-R-N/1"), "word");
        assert_eq!(blocked("https://www.reuters.com/world/"), "");
    }

    fn docs(texts: &[&str], urls: &[Option<&str>], langs: Option<&[Option<&str>]>) -> RecordBatch {
        let mut fields = vec![doc::id(), doc::text(), doc::url()];
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from((0..texts.len()).map(|i| i.to_string()).collect::<Vec<_>>())),
            Arc::new(LargeStringArray::from(texts.to_vec())),
            Arc::new(StringArray::from(urls.to_vec())),
        ];
        if let Some(langs) = langs {
            fields.push(Field::new("lang", DataType::Utf8, true));
            cols.push(Arc::new(StringArray::from(langs.to_vec())));
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
    }

    #[test]
    fn drops_with_reasons_and_counts_terms() {
        let t = stage(serde_json::json!({"languages": ["en", "tr"], "blocked_domains": ["spam.example"]}));
        let batch = docs(
            &[
                "Reuters - Scunthorpe council approved the budget on Tuesday.",
                "This shit is bullshit, total shit.",
                "A perfectly fine page.",
                "I am fine.",
                "I am fine.",
            ],
            &[Some("https://www.reuters.com/a"), None, Some("https://spam.example/x"), Some("https://x.org/"), None],
            Some(&[Some("en"), Some("en"), Some("en"), Some("en"), Some("tr")]),
        );
        let mut tr = t.build(&batch.schema()).unwrap();
        let Processed::Filtered { verdicts, .. } = tr.process(batch).unwrap() else { panic!("a filter") };
        assert_eq!(
            verdicts,
            vec![
                None,
                Some(Cow::Borrowed("toxic_words")),
                Some(Cow::Borrowed("blocked_url")),
                None,
                Some(Cow::Borrowed("toxic_words"))
            ]
        );
        let counters = tr.take_counters();
        assert_eq!(counters.get("match:en:shit"), Some(&2));
        assert_eq!(counters.get("match:en:bullshit"), Some(&1));
        assert_eq!(counters.get("matches:en"), Some(&3));
        assert_eq!(counters.get("match:tr:am"), Some(&1));
        assert_eq!(counters.get("blocked_url:domain"), Some(&1));
        assert!(tr.take_counters().is_empty());
    }

    #[test]
    fn annotate_mode_flags_and_gives_the_drop_verdicts() {
        let mut ctx = ConfigureContext::working_dir();
        ctx.annotate = true;
        let StageConfig::Transform(t) = configure(serde_json::json!({"languages": ["en"]}), &ctx).unwrap() else {
            panic!("a transform")
        };
        let batch = docs(&["This shit is bullshit, total shit.", "A perfectly fine page."], &[None, None], None);
        assert_eq!(t.output_schema(&batch.schema()).unwrap().fields().len(), batch.num_columns() + 2);
        let mut tr = t.build(&batch.schema()).unwrap();
        let Processed::Filtered { batch: out, verdicts } = tr.process(batch).unwrap() else { panic!("a filter") };
        assert_eq!(verdicts, vec![Some(Cow::Borrowed("toxic_words")), None]);
        let n = out.column_by_name("toxic_matches").unwrap().as_any().downcast_ref::<UInt32Array>().unwrap();
        assert_eq!(n.values().to_vec(), vec![3, 0]);
    }

    #[test]
    fn flags_with_thresholds_and_user_lists() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("slurs.txt");
        std::fs::write(&list, "# project list\nfrobnicate\nwidget  fraud\n").unwrap();
        let t = stage(serde_json::json!({
            "languages": ["en"], "lists": [list], "mode": "flag", "min_matches": 2, "max_ratio": 0.05
        }));
        let batch = docs(
            &[
                "Do not frobnicate the Widget\nFraud team.",
                "One shit word in a long enough sentence of twenty plain words that keeps the ratio of matches low enough.",
                "shit shit shit",
                "",
            ],
            &[None, None, None, None],
            None,
        );
        let schema = batch.schema();
        let out_schema = t.output_schema(&schema).unwrap();
        assert_eq!(out_schema.fields().len(), schema.fields().len() + 2);
        let mut tr = t.build(&schema).unwrap();
        let Processed::Batch(out) = tr.process(batch).unwrap() else { panic!("a map") };
        let toxic = out.column_by_name("toxic").unwrap().as_any().downcast_ref::<BooleanArray>().unwrap();
        let n = out.column_by_name("toxic_matches").unwrap().as_any().downcast_ref::<UInt32Array>().unwrap();
        assert_eq!(n.values().to_vec(), vec![2, 1, 3, 0]);
        assert_eq!((0..4).map(|i| toxic.value(i)).collect::<Vec<_>>(), vec![true, false, true, false]);
        let counters = tr.take_counters();
        assert_eq!(counters.get("match:slurs.txt:widget fraud"), Some(&1));
        assert_eq!(counters.get("flagged"), Some(&2));
    }

    #[test]
    fn options_and_schemas_are_checked() {
        let e = configure(serde_json::json!({"languages": ["en", "english"]}), &ConfigureContext::working_dir())
            .unwrap_err();
        assert_eq!(e.path, vec![key("languages"), PathSeg::Index(1)]);
        let e = configure(
            serde_json::json!({"languages": ["de"], "default_languages": ["en"]}),
            &ConfigureContext::working_dir(),
        )
        .unwrap_err();
        assert!(e.message.contains("no list for `en`"), "{}", e.message);
        assert!(configure(serde_json::json!({"min_matches": 0}), &ConfigureContext::working_dir()).is_err());
        assert!(configure(serde_json::json!({"max_ratio": 1.5}), &ConfigureContext::working_dir()).is_err());
        assert!(configure(serde_json::json!({"words": ["  "]}), &ConfigureContext::working_dir()).is_err());
        assert!(configure(serde_json::json!({"languages": []}), &ConfigureContext::working_dir())
            .unwrap_err()
            .message
            .contains("nothing to match"));
        assert!(configure(serde_json::json!({"mode": "delete"}), &ConfigureContext::working_dir()).is_err());
        assert!(configure(serde_json::json!({"stopwords": []}), &ConfigureContext::working_dir()).unwrap_err().at_key);

        let t = stage(serde_json::json!({"url_words": ["casino"]}));
        let no_url = Arc::new(Schema::new(vec![doc::id(), doc::text()]));
        assert!(t.output_schema(&no_url).unwrap_err().0.contains("needs column `url`"));
        let flagged = stage(serde_json::json!({"mode": "flag"}));
        let has_toxic = Arc::new(Schema::new(vec![doc::text(), Field::new("toxic", DataType::Boolean, false)]));
        assert!(flagged.output_schema(&has_toxic).unwrap_err().0.contains("already has it"));
        let bad_lang = Arc::new(Schema::new(vec![doc::text(), Field::new("lang", DataType::Int32, true)]));
        assert!(flagged.output_schema(&bad_lang).is_err());
        // An unreadable word file is an external fault (a stage's `retries:` retry it).
        let missing = stage(serde_json::json!({"lists": ["/nonexistent/words.txt"]}));
        let e = missing.build(&no_url).err().unwrap().to_string();
        assert!(e.contains("cannot read `lists` file /nonexistent/words.txt"), "{e}");
    }

    #[test]
    fn odd_text_does_not_panic() {
        let lex = lexicon(serde_json::json!({}));
        let huge = "fuck ".repeat(200_000);
        assert_eq!(matched(&lex, &huge, Some("en")).len(), 200_000);
        for text in ["", " ", "\u{feff}\u{200b}", "İSTANBUL ΣΊΣΥΦΟΣ", "a\u{0301}\u{0301}", "\u{10ffff}🖕\u{0}"]
        {
            matched(&lex, text, None);
        }
        assert_eq!(matched(&lex, "well 🖕 you", Some("en")), vec!["🖕"]);
        let mut s = String::new();
        assert_eq!(normalize("  Two\u{a0}\u{3000}Words\n", &mut s), 2);
        assert_eq!(s, "two words");
    }
}
