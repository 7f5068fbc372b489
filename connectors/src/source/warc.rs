//! `warc` source: local WARC/WET files (`.warc`, `.warc.gz`, gzip per record
//! or whole-file, WARC/0.17 to 1.1). `response` records with an HTML payload
//! (or WET `conversion` records) become documents; everything else is
//! counted, never fatal.
//!
//! ```text
//! file ──WarcReader──► record ──type?──► response: HTTP parse ──status/content type──► (html, content_type)
//!                                  │        conversion: block ─────────────────────────► text
//!                                  └─► warcinfo: isPartOf ─► default `source` (cc:CC-MAIN-2024-22)
//! corrupt gzip / truncated / bad header ──► Skips (counted by kind, logged with file#offset)
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use smelt_engine::guard;
use smelt_engine::{
    parse_options, ConfigureContext, EngineError, OptionError, ReadOptions, Result, Skips, SourceConfig, SplitReader,
    SplitSpec, StageConfig,
};

use super::{derived_id, doc_schema, parse_time_us, Body, DocBuilder, DocRow};
use crate::files::list_files;
use crate::warc::{parse_http_response, WarcReader};

/// Which WARC records become documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// HTTP responses (WARC files); the payload goes to `html` for `html_to_text`.
    Response,
    /// Extracted text (WET files); the block goes to `text`.
    Conversion,
    /// Metadata records (WAT files: JSON); the block goes to `text`.
    Metadata,
}

fn default_records() -> RecordKind {
    RecordKind::Response
}
fn default_statuses() -> Vec<u16> {
    vec![200]
}
fn default_content_types() -> Vec<String> {
    vec!["text/html".into(), "application/xhtml+xml".into()]
}
fn default_max_payload() -> u64 {
    16 << 20
}

/// Options of the `warc` source.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WarcConfig {
    /// WARC/WET files, directories or glob patterns, relative to the pipeline file.
    pub paths: Vec<String>,
    /// `response` (default: HTML pages, for `html_to_text`), `conversion` (WET text) or `metadata` (WAT JSON).
    #[serde(default = "default_records")]
    pub records: RecordKind,
    /// `source` column value; default `cc:<crawl>` from the file's warcinfo `isPartOf`, else from a
    /// `CC-MAIN-YYYY-WW` in the file name, else `warc`.
    #[serde(default)]
    pub source: Option<String>,
    /// HTTP statuses kept for `response` records (default [200]).
    #[serde(default = "default_statuses")]
    pub statuses: Vec<u16>,
    /// Payload media types kept for `response` records (default text/html, application/xhtml+xml).
    /// A response without a Content-Type is kept (the extractor decides).
    #[serde(default = "default_content_types")]
    pub content_types: Vec<String>,
    /// Records with a larger block are skipped and counted (default 16 MiB).
    #[serde(default = "default_max_payload")]
    pub max_payload_bytes: u64,
    /// Directory relative `paths` resolve against: the pipeline file's (set
    /// from the configure context, not an option).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// Registry hook.
///
/// # Errors
/// Unknown or invalid options.
pub fn configure(options: serde_json::Value, ctx: &ConfigureContext) -> Result<StageConfig, OptionError> {
    let mut c: WarcConfig = parse_options(options)?;
    c.base_dir = ctx.pipeline_dir.clone();
    if c.paths.is_empty() {
        return Err(OptionError {
            path: vec![smelt_engine::yaml::PathSeg::Key("paths".into())],
            message: "`paths` lists at least one file or glob".into(),
            at_key: false,
        });
    }
    Ok(StageConfig::Source(Arc::new(c)))
}

impl WarcConfig {
    pub(crate) fn body(&self) -> Body {
        match self.records {
            RecordKind::Response => Body::Html,
            RecordKind::Conversion | RecordKind::Metadata => Body::Text,
        }
    }
}

impl SourceConfig for WarcConfig {
    fn schema(&self) -> arrow::datatypes::SchemaRef {
        doc_schema(self.body())
    }

    fn resolved(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn splits(&self) -> Result<Vec<SplitSpec>> {
        list_files(&self.paths, &self.base_dir)
    }

    fn open(&self, split: &SplitSpec, options: &ReadOptions) -> Result<Box<dyn SplitReader>> {
        let mut reader = WarcReader::open(Path::new(&split.id))
            .map_err(|e| EngineError::External(format!("cannot open {}: {e}", split.id)))?;
        reader.set_max_block_len(self.max_payload_bytes);
        Ok(Box::new(WarcSplitReader {
            config: self.clone(),
            path: split.id.clone(),
            reader,
            source: self.source.clone(),
            fallback_source: crawl_from_file_name(&split.id).unwrap_or_else(|| "warc".to_string()),
            batch_rows: options.batch_rows,
            builder: DocBuilder::new(self.body()),
            done: false,
        }))
    }
}

/// A reader of one WARC stream already open (a local file, or a download:
/// see `source::commoncrawl`); `path` names it in `origin` (`path#offset`).
pub(crate) fn split_reader(config: WarcConfig, path: String, reader: WarcReader, batch_rows: usize) -> WarcSplitReader {
    let fallback_source = crawl_from_file_name(&path).unwrap_or_else(|| "warc".to_string());
    WarcSplitReader {
        source: config.source.clone(),
        builder: DocBuilder::new(config.body()),
        config,
        path,
        reader,
        fallback_source,
        batch_rows,
        done: false,
    }
}

pub(crate) struct WarcSplitReader {
    config: WarcConfig,
    path: String,
    reader: WarcReader,
    /// The `source` option, or the crawl named by the file's warcinfo.
    source: Option<String>,
    /// From the file name, or `warc`.
    fallback_source: String,
    batch_rows: usize,
    builder: DocBuilder,
    done: bool,
}

/// `cc:CC-MAIN-2024-22` when the file name carries a crawl id (not a segment timestamp).
fn crawl_from_file_name(path: &str) -> Option<String> {
    let name = Path::new(path).file_name()?.to_str()?;
    let at = name.find("CC-MAIN-")?;
    let id = name.get(at..at + 15)?;
    let b = id.as_bytes();
    let ok = b[8..12].iter().all(u8::is_ascii_digit) && b[12] == b'-' && b[13..15].iter().all(u8::is_ascii_digit);
    let next_is_digit = name.as_bytes().get(at + 15).is_some_and(u8::is_ascii_digit);
    (ok && !next_is_digit).then(|| format!("cc:{id}"))
}

fn media_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

impl SplitReader for WarcSplitReader {
    fn next_batch(&mut self, skips: &mut Skips) -> Result<Option<arrow::record_batch::RecordBatch>> {
        while !self.done && self.builder.len() < self.batch_rows {
            let record = match self.reader.next_record() {
                None => {
                    self.done = true;
                    break;
                }
                Some(Err(e)) => {
                    skips.skip(e.kind.as_str(), format!("{}#{}: {}", self.path, e.location, e.message));
                    continue;
                }
                Some(Ok(r)) => r,
            };
            let origin = format!("{}#{}", self.path, record.location);
            let kind = record.warc_type().unwrap_or("").to_ascii_lowercase();
            if kind == "warcinfo" && self.source.is_none() {
                let info = String::from_utf8_lossy(&record.block);
                let crawl = info
                    .lines()
                    .find_map(|l| l.strip_prefix("isPartOf:").map(|v| v.trim().to_string()))
                    .filter(|v| !v.is_empty());
                self.source = crawl.map(|c| format!("cc:{c}"));
                continue;
            }
            let id = record
                .record_id()
                .map(|r| r.trim_start_matches('<').trim_end_matches('>').to_string())
                .unwrap_or_else(|| derived_id(&origin));
            let fetched_at = record.date().and_then(parse_time_us);
            let source = self.source.as_deref().unwrap_or(&self.fallback_source);
            match (self.config.records, kind.as_str()) {
                (RecordKind::Response, "response") => {
                    let http = match guard::catch_at(&origin, || parse_http_response(&record.block)) {
                        Ok(Some(http)) => http,
                        Ok(None) => {
                            skips.skip("bad_http", format!("{origin}: response block is not an HTTP response"));
                            continue;
                        }
                        Err(panic) => {
                            skips.skip("parser_panic", format!("{origin}: the HTTP parser {panic}"));
                            continue;
                        }
                    };
                    if !self.config.statuses.contains(&http.status) {
                        skips.ignore(&format!("http_{}", http.status));
                        continue;
                    }
                    let ct = http.header("content-type");
                    if let Some(ct) = ct {
                        let mt = media_type(ct);
                        if !self.config.content_types.iter().any(|t| t.eq_ignore_ascii_case(mt)) {
                            skips.ignore("not_html");
                            continue;
                        }
                    }
                    self.builder.push(DocRow {
                        id: &id,
                        body: http.body,
                        content_type: ct,
                        url: record.target_uri(),
                        source,
                        fetched_at,
                        origin: &origin,
                    });
                }
                (RecordKind::Conversion, "conversion") | (RecordKind::Metadata, "metadata") => {
                    if std::str::from_utf8(&record.block).is_err() {
                        skips.skip(
                            "bad_utf8",
                            format!("{origin}: conversion block is not UTF-8; invalid bytes replaced"),
                        );
                    }
                    self.builder.push(DocRow {
                        id: &id,
                        body: &record.block,
                        content_type: None,
                        url: record.target_uri(),
                        source,
                        fetched_at,
                        origin: &origin,
                    });
                }
                _ => {}
            }
        }
        if self.builder.is_empty() {
            return Ok(None);
        }
        self.builder.finish().map(Some)
    }

    fn bytes_read(&self) -> u64 {
        self.reader.compressed_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crawl_ids_come_from_names_not_segment_timestamps() {
        assert_eq!(crawl_from_file_name("/x/CC-MAIN-2025-33-cdx.warc.gz").as_deref(), Some("cc:CC-MAIN-2025-33"));
        assert_eq!(crawl_from_file_name("CC-MAIN-20240517233122-20240518023122-00000.warc.gz"), None);
        assert_eq!(crawl_from_file_name("sample.warc.gz"), None);
    }
}
