//! `jsonl` source: JSON Lines files (`.jsonl`, `.jsonl.gz`), one document per
//! line, as Dolma and datatrove write them. A line that is not a JSON object,
//! or has no text, is skipped, counted and logged with its line number.
//!
//! ```text
//! file(.gz) ──lines──► serde_json ──fields──► DocBuilder ──► batch
//! ```

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use smelt_engine::guard;
use smelt_engine::{
    parse_options, ConfigureContext, EngineError, OptionError, ReadOptions, Result, Skips, SourceConfig, SplitReader,
    SplitSpec, StageConfig,
};

use super::{derived_id, doc_schema, parse_time_us, Body, DocBuilder, DocRow};
use crate::files::{list_files, open_maybe_gz};

fn default_text_field() -> String {
    "text".into()
}
fn default_id_field() -> String {
    "id".into()
}
fn default_url_field() -> String {
    "url".into()
}
fn default_source() -> String {
    "jsonl".into()
}

/// Options of the `jsonl` source.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonlConfig {
    /// Files, directories or glob patterns, relative to the pipeline file.
    pub paths: Vec<String>,
    /// Field holding the document text (default `text`).
    #[serde(default = "default_text_field")]
    pub text_field: String,
    /// Field holding the document id (default `id`); rows without one get an id derived from file and line.
    #[serde(default = "default_id_field")]
    pub id_field: String,
    /// Field holding the URL (default `url`; also looked up in `metadata.url`).
    #[serde(default = "default_url_field")]
    pub url_field: String,
    /// Field holding the time (RFC 3339), if any (e.g. `created`).
    #[serde(default)]
    pub time_field: Option<String>,
    /// Value of the `source` column; a row's own `source` field wins when `keep_source` is true (default `jsonl`).
    #[serde(default = "default_source")]
    pub source: String,
    /// Use the row's `source` field when present (default true).
    #[serde(default = "yes")]
    pub keep_source: bool,
    /// Directory relative `paths` resolve against: the pipeline file's (set
    /// from the configure context, not an option).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

fn yes() -> bool {
    true
}

/// Registry hook.
///
/// # Errors
/// Unknown or invalid options.
pub fn configure(options: serde_json::Value, ctx: &ConfigureContext) -> Result<StageConfig, OptionError> {
    let mut c: JsonlConfig = parse_options(options)?;
    c.base_dir = ctx.pipeline_dir.clone();
    Ok(StageConfig::Source(Arc::new(c)))
}

impl SourceConfig for JsonlConfig {
    fn schema(&self) -> arrow::datatypes::SchemaRef {
        doc_schema(Body::Text)
    }

    fn resolved(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn splits(&self) -> Result<Vec<SplitSpec>> {
        list_files(&self.paths, &self.base_dir)
    }

    fn open(&self, split: &SplitSpec, options: &ReadOptions) -> Result<Box<dyn SplitReader>> {
        Ok(Box::new(JsonlReader {
            config: self.clone(),
            path: split.id.clone(),
            input: open_maybe_gz(&split.id)?,
            line_no: 0,
            batch_rows: options.batch_rows,
            bytes: 0,
            line: Vec::new(),
        }))
    }
}

struct JsonlReader {
    config: JsonlConfig,
    path: String,
    input: Box<dyn BufRead + Send>,
    line_no: u64,
    batch_rows: usize,
    bytes: u64,
    line: Vec<u8>,
}

fn field<'a>(v: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    v.get(name).or_else(|| v.get("metadata").and_then(|m| m.get(name)))
}

impl SplitReader for JsonlReader {
    fn next_batch(&mut self, skips: &mut Skips) -> Result<Option<arrow::record_batch::RecordBatch>> {
        let mut b = DocBuilder::new(Body::Text);
        while b.len() < self.batch_rows {
            self.line.clear();
            let n = match self.input.read_until(b'\n', &mut self.line) {
                Ok(n) => n,
                Err(e) => {
                    skips.skip(
                        "read_error",
                        format!("{}: line {}: {e}; rest of file skipped", self.path, self.line_no + 1),
                    );
                    break;
                }
            };
            if n == 0 {
                break;
            }
            self.bytes += n as u64;
            self.line_no += 1;
            let trimmed = self.line.trim_ascii();
            if trimmed.is_empty() {
                continue;
            }
            let origin = format!("{}#L{}", self.path, self.line_no);
            let v: serde_json::Value = match guard::catch_at(&origin, || serde_json::from_slice(trimmed)) {
                Ok(Ok(v @ serde_json::Value::Object(_))) => v,
                Ok(Ok(_)) => {
                    skips.skip("bad_json", format!("{origin}: not a JSON object"));
                    continue;
                }
                Ok(Err(e)) => {
                    skips.skip("bad_json", format!("{origin}: {e}"));
                    continue;
                }
                Err(panic) => {
                    skips.skip("parser_panic", format!("{origin}: the JSON parser {panic}"));
                    continue;
                }
            };
            let Some(text) = field(&v, &self.config.text_field).and_then(|t| t.as_str()) else {
                skips.skip("no_text", format!("{origin}: no string field `{}`", self.config.text_field));
                continue;
            };
            let id = match field(&v, &self.config.id_field) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                _ => derived_id(&origin),
            };
            let source = match (self.config.keep_source, v.get("source").and_then(|s| s.as_str())) {
                (true, Some(s)) => s,
                _ => self.config.source.as_str(),
            };
            let fetched_at = self
                .config
                .time_field
                .as_deref()
                .and_then(|f| field(&v, f))
                .and_then(|t| t.as_str())
                .and_then(parse_time_us);
            b.push(DocRow {
                id: &id,
                body: text.as_bytes(),
                content_type: None,
                url: field(&v, &self.config.url_field).and_then(|u| u.as_str()),
                source,
                fetched_at,
                origin: &origin,
            });
        }
        if b.is_empty() {
            return Ok(None);
        }
        b.finish().map(Some).map_err(|e| EngineError::Internal(e.to_string()))
    }

    fn bytes_read(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;

    #[test]
    fn reads_lines_and_skips_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.jsonl");
        std::fs::write(
            &p,
            "{\"id\":\"x\",\"text\":\"hello\",\"source\":\"cc\",\"metadata\":{\"url\":\"http://a.org/\"}}\nnot json\n\n{\"text\":\"bye\"}\n{\"id\":1}\n",
        )
        .unwrap();
        let cfg: JsonlConfig = serde_json::from_value(serde_json::json!({"paths": ["a.jsonl"]})).unwrap();
        let cfg = JsonlConfig { base_dir: dir.path().to_path_buf(), ..cfg };
        let splits = cfg.splits().unwrap();
        let mut r = cfg.open(&splits[0], &ReadOptions { batch_rows: 100 }).unwrap();
        let mut skips = Skips::default();
        let b = r.next_batch(&mut skips).unwrap().unwrap();
        assert_eq!(b.num_rows(), 2);
        assert_eq!(b.column(0).as_string::<i32>().value(0), "x");
        assert!(b.column(0).as_string::<i32>().value(1).starts_with("smelt:"));
        assert_eq!(b.column(2).as_string::<i32>().value(0), "http://a.org/");
        assert_eq!(b.column(3).as_string::<i32>().value(0), "cc");
        assert!(b.column(5).as_string::<i32>().value(1).ends_with("a.jsonl#L4"));
        assert_eq!(skips.counts().get("bad_json"), Some(&1));
        assert_eq!(skips.counts().get("no_text"), Some(&1));
        assert!(r.next_batch(&mut skips).unwrap().is_none());
    }
}
