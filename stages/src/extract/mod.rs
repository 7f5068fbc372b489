//! `extract` transform: main-content extraction (boilerplate removal). Each
//! HTML payload is decoded (HTTP charset, then `<meta>`, then detection),
//! parsed into a light arena tree of elements and paragraph-level text
//! blocks, and only the blocks of the main content are kept: navigation,
//! headers, footers, asides, comment sections, cookie banners, share bars,
//! related-links lists and ads go.
//!
//! ```text
//! (html: LargeBinary, content_type, url)
//!     ──guards──► too large? binary? ──► dropped with a reason
//!     ──decode_html──► &str ──dom::parse──► nodes + blocks ──select::verdicts (kept or why not, per block)──► text: LargeUtf8
//!                                   (deadline checked in every loop: extract_timeout)
//!                                              empty or shorter than min_chars ──► dropped with a reason
//! ```
//!
//! The stage is a thin loop over [`extract_document`], which a CLI can call
//! directly on a file.

mod dom;
mod patterns;
mod select;

pub use self::select::Verdict;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, AsArray, LargeStringBuilder};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use smelt_engine::guard;
use smelt_engine::{
    parse_options, ConfigureContext, OptionError, Processed, Result, SchemaError, StageConfig, Transform,
    TransformConfig,
};

use crate::html::decode_html;

use self::dom::Role;

/// Settings of [`extract_document`].
#[derive(Debug, Clone)]
pub struct ExtractOptions {
    /// Payloads larger than this are skipped ([`SkipReason::HtmlTooLarge`]).
    pub max_html_bytes: usize,
    /// Time budget per document; `None` for no limit ([`SkipReason::Timeout`]).
    pub timeout: Option<Duration>,
    /// Texts with fewer characters are skipped ([`SkipReason::TooShort`]).
    pub min_chars: usize,
    /// Put the page `<title>` first, on a line of its own.
    pub keep_title: bool,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            max_html_bytes: default_max_html_bytes(),
            timeout: Some(Duration::from_millis(default_timeout_ms())),
            min_chars: default_min_chars(),
            keep_title: false,
        }
    }
}

/// The main content of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// Paragraphs (headings, list items, table rows, ...) separated by `\n`.
    pub text: String,
    /// The first `<title>`, whitespace collapsed, if any.
    pub title: Option<String>,
    /// The WHATWG name of the encoding the payload was decoded with.
    pub encoding: &'static str,
}

/// Why a page yields no document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Larger than [`ExtractOptions::max_html_bytes`].
    HtmlTooLarge,
    /// A binary payload (NUL bytes, many control characters).
    NotText,
    /// Over the time budget.
    Timeout,
    /// No main-content text.
    EmptyText,
    /// Fewer than [`ExtractOptions::min_chars`] characters.
    TooShort,
}

impl SkipReason {
    /// The drop reason the stage reports.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::HtmlTooLarge => "html_too_large",
            SkipReason::NotText => "not_text",
            SkipReason::Timeout => "extract_timeout",
            SkipReason::EmptyText => "empty_text",
            SkipReason::TooShort => "too_short",
        }
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Bytes of the payload's start looked at for binary content.
const SNIFF_BYTES: usize = 64 * 1024;

/// Whether a payload looks binary: a NUL byte per thousand, or more than 5%
/// of C0 control characters other than whitespace, in its first 64 KiB.
/// UTF-16 payloads (with a byte order mark) are text.
fn looks_binary(bytes: &[u8]) -> bool {
    if bytes.starts_with(&[0xFE, 0xFF]) || bytes.starts_with(&[0xFF, 0xFE]) {
        return false;
    }
    let head = &bytes[..bytes.len().min(SNIFF_BYTES)];
    let (mut nul, mut control) = (0usize, 0usize);
    for &c in head {
        if c < 0x20 && !matches!(c, b'\t' | b'\n' | b'\r' | b'\x0C' | b'\x1B') {
            control += 1;
            nul += usize::from(c == 0);
        }
    }
    nul * 1000 > head.len() || control * 20 > head.len()
}

/// One block of a page as `smelt extract --explain` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplainedBlock {
    /// Its text (lines joined by `\n`).
    pub text: String,
    /// `text`, `heading`, `item`, `row`, `pre` or `quote`.
    pub role: &'static str,
    /// Bytes of it inside links.
    pub link_bytes: usize,
    /// Why it is in the text or not.
    pub verdict: Verdict,
    /// Kept by its verdict but left out all the same: `repeated` or `no letters`.
    pub left_out: Option<&'static str>,
}

/// The parsed page and each block's verdict: what [`extract_document`] and
/// [`explain_document`] share.
fn select_page(
    html: &[u8],
    content_type: Option<&str>,
    url: Option<&str>,
    options: &ExtractOptions,
) -> std::result::Result<(dom::Doc, Vec<Verdict>, &'static str), SkipReason> {
    let deadline = options.timeout.map(|t| Instant::now() + t);
    if html.len() > options.max_html_bytes {
        return Err(SkipReason::HtmlTooLarge);
    }
    if looks_binary(html) {
        return Err(SkipReason::NotText);
    }
    let (decoded, encoding) = decode_html(html, content_type, url);
    let parsed = dom::parse(&decoded, deadline).map_err(|_| SkipReason::Timeout)?;
    let verdicts = select::verdicts(&parsed, deadline).map_err(|_| SkipReason::Timeout)?;
    Ok((parsed, verdicts, encoding))
}

/// Why a kept block is left out of the text all the same: repeated blocks
/// (gallery captions, "Read more") and blocks without a letter (pagers'
/// "<<", separators); `seen` holds the texts of the blocks before.
fn left_out<'a>(b: &dom::Block, s: &'a str, seen: &mut std::collections::HashSet<&'a str>) -> Option<&'static str> {
    if b.role == Role::Pre || b.role == Role::Row {
        return None;
    }
    if !s.chars().any(char::is_alphabetic) {
        Some("no letters")
    } else if !seen.insert(s) {
        Some("repeated")
    } else {
        None
    }
}

/// Every block of one HTML payload with its verdict, in document order:
/// what [`extract_document`] keeps and drops, and why.
///
/// # Errors
/// As [`extract_document`], before any block is chosen (too large, binary, timeout).
pub fn explain_document(
    html: &[u8],
    content_type: Option<&str>,
    url: Option<&str>,
    options: &ExtractOptions,
) -> std::result::Result<Vec<ExplainedBlock>, SkipReason> {
    let (parsed, verdicts, _) = select_page(html, content_type, url, options)?;
    let mut seen = std::collections::HashSet::new();
    Ok(parsed
        .blocks
        .iter()
        .zip(verdicts)
        .map(|(b, verdict)| {
            let s = &parsed.text[b.start..b.end];
            ExplainedBlock {
                text: s.to_string(),
                role: b.role.as_str(),
                link_bytes: b.link_bytes,
                verdict,
                left_out: if verdict.kept() { left_out(b, s, &mut seen) } else { None },
            }
        })
        .collect())
}

/// Extracts the main content of one HTML payload.
///
/// `content_type` is the HTTP `Content-Type` (its charset wins over the
/// page's `<meta>`), `url` a hint for encoding detection.
///
/// # Errors
/// The [`SkipReason`] when the page yields no document. Never panics, and
/// stops at the time budget whatever the markup.
pub fn extract_document(
    html: &[u8],
    content_type: Option<&str>,
    url: Option<&str>,
    options: &ExtractOptions,
) -> std::result::Result<Extracted, SkipReason> {
    let (parsed, verdicts, encoding) = select_page(html, content_type, url, options)?;
    let keep: Vec<usize> = verdicts.iter().enumerate().filter(|(_, v)| v.kept()).map(|(i, _)| i).collect();
    let mut text = String::with_capacity(keep.iter().map(|&i| parsed.blocks[i].end - parsed.blocks[i].start + 1).sum());
    if options.keep_title {
        if let Some(title) = &parsed.title {
            text.push_str(title);
        }
    }
    let mut seen = std::collections::HashSet::new();
    for &i in &keep {
        let b = parsed.blocks[i];
        let s = &parsed.text[b.start..b.end];
        if left_out(&b, s, &mut seen).is_some() {
            continue;
        }
        if !text.is_empty() {
            text.push('\n');
        }
        if b.role == Role::Pre {
            text.push_str(s);
        } else {
            // Lines of a block (from <br>) trimmed, empty ones dropped.
            let mut first = true;
            for line in s.split('\n').map(str::trim).filter(|l| !l.is_empty()) {
                if !first {
                    text.push('\n');
                }
                text.push_str(line);
                first = false;
            }
        }
    }
    let trimmed_len = text.trim_end().len();
    text.truncate(trimmed_len);
    // Composed characters (NFC), as most text tools and other extractors give
    // them: `u` + U+0308 becomes `ü`. The quick check passes ASCII and most
    // text without allocating.
    if unicode_normalization::is_nfc_quick(text.chars()) != unicode_normalization::IsNormalized::Yes {
        text = unicode_normalization::UnicodeNormalization::nfc(text.as_str()).collect();
    }
    if text.is_empty() {
        return Err(SkipReason::EmptyText);
    }
    if text.chars().take(options.min_chars).count() < options.min_chars {
        return Err(SkipReason::TooShort);
    }
    Ok(Extracted { text, title: parsed.title, encoding })
}

fn default_max_html_bytes() -> usize {
    4 << 20
}

fn default_timeout_ms() -> u64 {
    1000
}

fn default_min_chars() -> usize {
    1
}

/// Options of `extract`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtractConfig {
    /// Skip payloads larger than this many bytes, with reason `html_too_large` (default 4 MiB).
    #[serde(default = "default_max_html_bytes")]
    pub max_html_bytes: usize,
    /// Time budget per document in milliseconds; pages over it are dropped with `extract_timeout` (default 1000; 0 = no limit).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Drop documents whose text has fewer characters, with `too_short` (default 1).
    #[serde(default = "default_min_chars")]
    pub min_chars: usize,
    /// Put the page `<title>` first, on a line of its own (default false).
    #[serde(default)]
    pub keep_title: bool,
}

impl ExtractConfig {
    fn options(&self) -> ExtractOptions {
        ExtractOptions {
            max_html_bytes: self.max_html_bytes,
            timeout: (self.timeout_ms > 0).then(|| Duration::from_millis(self.timeout_ms)),
            min_chars: self.min_chars,
            keep_title: self.keep_title,
        }
    }
}

/// Registry hook.
///
/// # Errors
/// Unknown or invalid options.
pub fn configure(options: serde_json::Value, _ctx: &ConfigureContext) -> Result<StageConfig, OptionError> {
    let c: ExtractConfig = parse_options(options)?;
    Ok(StageConfig::Transform(Arc::new(c)))
}

impl TransformConfig for ExtractConfig {
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, SchemaError> {
        crate::html::columns::text_schema(input)
    }

    fn resolved(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn build(&self, input: &SchemaRef) -> Result<Box<dyn Transform>> {
        let output = self.output_schema(input).map_err(|e| smelt_engine::EngineError::Internal(e.0))?;
        Ok(Box::new(Extract { options: self.options(), output }))
    }
}

struct Extract {
    options: ExtractOptions,
    output: SchemaRef,
}

fn bytes_at(col: &ArrayRef, i: usize) -> &[u8] {
    match col.data_type() {
        DataType::LargeBinary => col.as_binary::<i64>().value(i),
        _ => col.as_binary::<i32>().value(i),
    }
}

impl Transform for Extract {
    fn process(&mut self, batch: RecordBatch) -> Result<Processed> {
        let html = batch.column_by_name("html").expect("schema checked").clone();
        let content_type = batch.column_by_name("content_type").and_then(|c| c.as_string_opt::<i32>().cloned());
        let url = batch.column_by_name("url").and_then(|c| c.as_string_opt::<i32>().cloned());
        let mut text = LargeStringBuilder::with_capacity(batch.num_rows(), 4096 * batch.num_rows());
        let mut verdicts = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            let ct = content_type.as_ref().filter(|c| c.is_valid(i)).map(|c| c.value(i));
            let u = url.as_ref().filter(|c| c.is_valid(i)).map(|c| c.value(i));
            // A page that makes the parser panic is dropped as `parser_panic`, not the run.
            let location = u.unwrap_or("a page without a url");
            match guard::catch_at(location, || extract_document(bytes_at(&html, i), ct, u, &self.options)) {
                Ok(Ok(extracted)) => {
                    text.append_value(&extracted.text);
                    verdicts.push(None);
                }
                Ok(Err(reason)) => {
                    text.append_value("");
                    verdicts.push(Some(Cow::Borrowed(reason.as_str())));
                }
                Err(panic) => {
                    tracing::warn!(reason = "parser_panic", "dropped {location}: extracting it {panic}");
                    text.append_value("");
                    verdicts.push(Some(Cow::Borrowed("parser_panic")));
                }
            }
        }
        let out = crate::html::columns::with_text(&batch, Arc::new(text.finish()), &self.output)?;
        Ok(Processed::Filtered { batch: out, verdicts })
    }
}

#[cfg(test)]
mod tests;
