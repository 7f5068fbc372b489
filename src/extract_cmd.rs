//! `smelt extract`: run the `extract` stage's main-content extraction on
//! HTML files or the responses of WARC files and print the text, for
//! debugging a page that a pipeline drops or cleans badly.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use smelt_connectors::warc::{parse_http_response, WarcReader};
use smelt_stages::{explain_document, extract_document, ExplainedBlock, ExtractOptions};

use crate::output::emit;

/// `smelt extract` arguments.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  smelt extract page.html
  smelt extract --warc examples/data/cc/CC-MAIN-2024-22-whirlwind.warc.gz --limit 3
  smelt extract --warc crawl.warc.gz --url 'bbc.co.uk' --format json | jq .text
  smelt extract --explain page.html      # every block: kept (+) or dropped (-), and the rule that decided")]
pub struct ExtractArgs {
    /// HTML files (charset from <meta> or detection).
    pub files: Vec<PathBuf>,
    /// WARC files: every HTTP response record is extracted.
    #[arg(long, value_name = "FILE")]
    pub warc: Vec<PathBuf>,
    /// Only WARC records whose URL contains this text.
    #[arg(long)]
    pub url: Option<String>,
    /// Stop after this many documents.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Put the page <title> first.
    #[arg(long)]
    pub keep_title: bool,
    /// Print every block of the page instead of the text: `+` kept or `-`
    /// dropped, the rule or feature that decided (main node, link list,
    /// furniture by tag or class, ...), its role, bytes and link bytes.
    #[arg(long)]
    pub explain: bool,
    /// Time budget per page in milliseconds (0: none).
    #[arg(long, default_value = "1000")]
    pub timeout_ms: u64,
    /// `table`: a header line and the text per document; `json`: one JSON object per line.
    #[arg(long, value_enum, default_value = "table")]
    pub format: crate::output::Format,
}

/// One page to extract.
struct Page {
    name: String,
    url: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
}

/// Runs `smelt extract`.
///
/// # Errors
/// Unreadable files, or no input given.
pub fn run(args: &ExtractArgs) -> anyhow::Result<()> {
    if args.files.is_empty() && args.warc.is_empty() {
        anyhow::bail!(smelt_engine::EngineError::User(
            "nothing to extract: give HTML files, or WARC files with --warc".into()
        ));
    }
    let options = ExtractOptions {
        keep_title: args.keep_title,
        timeout: (args.timeout_ms > 0).then(|| Duration::from_millis(args.timeout_ms)),
        min_chars: 1,
        ..ExtractOptions::default()
    };
    let mut left = args.limit.unwrap_or(usize::MAX);
    let mut show = |page: Page| -> bool {
        if left == 0 {
            return false;
        }
        left -= 1;
        if args.explain {
            let blocks = explain_document(&page.body, page.content_type.as_deref(), page.url.as_deref(), &options);
            show_explained(&page, blocks, args.format);
            return true;
        }
        let result = extract_document(&page.body, page.content_type.as_deref(), page.url.as_deref(), &options);
        match args.format {
            crate::output::Format::Json => {
                let mut v = serde_json::json!({"source": page.name, "url": page.url});
                match &result {
                    Ok(x) => {
                        v["text"] = x.text.clone().into();
                        v["title"] = x.title.clone().into();
                        v["encoding"] = x.encoding.into();
                    }
                    Err(reason) => v["skipped"] = reason.as_str().into(),
                }
                emit_json_line(&v);
            }
            crate::output::Format::Table => {
                let head = page.url.as_deref().map_or(page.name.clone(), |u| format!("{} ({u})", page.name));
                match &result {
                    Ok(x) => {
                        emit(&format!("==> {head} [{}, {} chars]\n{}\n", x.encoding, x.text.chars().count(), x.text))
                    }
                    Err(reason) => emit(&format!("==> {head} [skipped: {}]\n", reason.as_str())),
                }
            }
        }
        true
    };
    for f in &args.files {
        let body = std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
        if !show(Page { name: f.display().to_string(), url: None, content_type: None, body }) {
            return Ok(());
        }
    }
    for f in &args.warc {
        if !warc_pages(f, args.url.as_deref(), &mut show)? {
            return Ok(());
        }
    }
    Ok(())
}

/// Feeds the HTTP responses of one WARC file to `show`; `false` once it wants no more.
fn warc_pages(path: &Path, url_filter: Option<&str>, show: &mut impl FnMut(Page) -> bool) -> anyhow::Result<bool> {
    let mut reader = WarcReader::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    while let Some(record) = reader.next_record() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{}: skipped a record: {e}", path.display());
                continue;
            }
        };
        if record.warc_type() != Some("response") {
            continue;
        }
        let url = record.target_uri().map(str::to_string);
        if let (Some(f), Some(u)) = (url_filter, &url) {
            if !u.contains(f) {
                continue;
            }
        }
        let Some(http) = parse_http_response(&record.block) else { continue };
        let page = Page {
            name: format!("{}#{}", path.display(), record.location),
            url,
            content_type: http.header("Content-Type").map(str::to_string),
            body: http.body.to_vec(),
        };
        if !show(page) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Prints the blocks of one page with their verdicts.
fn show_explained(
    page: &Page,
    blocks: Result<Vec<ExplainedBlock>, smelt_stages::SkipReason>,
    format: crate::output::Format,
) {
    let blocks = match blocks {
        Ok(b) => b,
        Err(reason) => {
            match format {
                crate::output::Format::Json => emit_json_line(
                    &serde_json::json!({"source": page.name, "url": page.url, "skipped": reason.as_str()}),
                ),
                crate::output::Format::Table => emit(&format!("==> {} [skipped: {}]\n", page.name, reason.as_str())),
            }
            return;
        }
    };
    let why = |b: &ExplainedBlock| match b.left_out {
        Some(l) => format!("{}, but {l}", b.verdict.describe()),
        None => b.verdict.describe(),
    };
    let in_text = |b: &ExplainedBlock| b.verdict.kept() && b.left_out.is_none();
    match format {
        crate::output::Format::Json => {
            let list: Vec<serde_json::Value> = blocks
                .iter()
                .map(|b| {
                    serde_json::json!({"kept": in_text(b), "why": why(b), "role": b.role,
                        "bytes": b.text.len(), "link_bytes": b.link_bytes, "text": b.text})
                })
                .collect();
            emit_json_line(&serde_json::json!({"source": page.name, "url": page.url, "blocks": list}));
        }
        crate::output::Format::Table => {
            let kept = blocks.iter().filter(|b| in_text(b)).count();
            let mut out = format!("==> {} [{} blocks, {kept} kept]\n", page.name, blocks.len());
            for b in &blocks {
                let line: String = b.text.split_whitespace().collect::<Vec<_>>().join(" ");
                let line = match line.char_indices().nth(100) {
                    Some((at, _)) => format!("{}...", &line[..at]),
                    None => line,
                };
                let mark = if in_text(b) { '+' } else { '-' };
                out.push_str(&format!(
                    "{mark} {:<7} {:>6} B {:>6} link | {} | {line}\n",
                    b.role,
                    b.text.len(),
                    b.link_bytes,
                    why(b)
                ));
            }
            emit(&out);
        }
    }
}

fn emit_json_line(v: &serde_json::Value) {
    emit(&serde_json::to_string(v).unwrap_or_default());
}
