//! Sources: each lists splits (one per file) at plan time and reads a split
//! into document batches.
//!
//! ```text
//! files/globs ──list_files──► splits ──open──► SplitReader ──DocBuilder──► RecordBatch (document schema)
//! ```

pub mod commoncrawl;
pub mod dataset;
mod feed_decode;
pub mod jsonl;
pub mod mix;
pub mod parquet;
pub mod rss;
pub mod warc;

use std::sync::Arc;

use arrow::array::{ArrayRef, LargeBinaryBuilder, LargeStringBuilder, StringBuilder, TimestampMicrosecondBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use smelt_engine::stage::doc;
use smelt_engine::Result;

/// What the body column of a source holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// `text: LargeUtf8`, the document text.
    Text,
    /// `html: LargeBinary` raw payload bytes and `content_type: Utf8` (HTTP header), for `html_to_text`.
    Html,
}

/// The schema of documents before `content_hash`: id, (text | html, content_type), url, source, fetched_at, origin.
pub fn doc_schema(body: Body) -> SchemaRef {
    let mut fields = vec![doc::id()];
    match body {
        Body::Text => fields.push(doc::text()),
        Body::Html => {
            fields.push(Field::new("html", DataType::LargeBinary, false));
            fields.push(Field::new("content_type", DataType::Utf8, true));
        }
    }
    fields.extend([doc::url(), doc::source(), doc::fetched_at(), doc::origin()]);
    Arc::new(Schema::new(fields))
}

/// Builds document batches row by row.
pub struct DocBuilder {
    body: Body,
    schema: SchemaRef,
    id: StringBuilder,
    text: LargeStringBuilder,
    html: LargeBinaryBuilder,
    content_type: StringBuilder,
    url: StringBuilder,
    source: StringBuilder,
    fetched_at: TimestampMicrosecondBuilder,
    origin: StringBuilder,
    rows: usize,
}

/// One document's fields.
pub struct DocRow<'a> {
    /// Stable id.
    pub id: &'a str,
    /// Text (Body::Text) or payload bytes (Body::Html).
    pub body: &'a [u8],
    /// HTTP Content-Type, for Body::Html.
    pub content_type: Option<&'a str>,
    /// URL.
    pub url: Option<&'a str>,
    /// Source label.
    pub source: &'a str,
    /// Microseconds since the epoch, UTC.
    pub fetched_at: Option<i64>,
    /// `file#offset`.
    pub origin: &'a str,
}

impl DocBuilder {
    /// A builder for `body` documents.
    pub fn new(body: Body) -> Self {
        DocBuilder {
            body,
            schema: doc_schema(body),
            id: StringBuilder::new(),
            text: LargeStringBuilder::new(),
            html: LargeBinaryBuilder::new(),
            content_type: StringBuilder::new(),
            url: StringBuilder::new(),
            source: StringBuilder::new(),
            fetched_at: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            origin: StringBuilder::new(),
            rows: 0,
        }
    }

    /// Rows buffered.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no rows are buffered.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends a row. For `Body::Text`, `body` must be UTF-8 (invalid bytes are replaced).
    pub fn push(&mut self, row: DocRow<'_>) {
        self.id.append_value(row.id);
        match self.body {
            Body::Text => self.text.append_value(String::from_utf8_lossy(row.body)),
            Body::Html => {
                self.html.append_value(row.body);
                self.content_type.append_option(row.content_type);
            }
        }
        self.url.append_option(row.url);
        self.source.append_value(row.source);
        self.fetched_at.append_option(row.fetched_at);
        self.origin.append_value(row.origin);
        self.rows += 1;
    }

    /// The buffered rows as a batch; the builder is empty afterwards.
    ///
    /// # Errors
    /// Never in practice (the columns match the schema by construction).
    pub fn finish(&mut self) -> Result<RecordBatch> {
        let mut cols: Vec<ArrayRef> = vec![Arc::new(self.id.finish())];
        match self.body {
            Body::Text => cols.push(Arc::new(self.text.finish())),
            Body::Html => {
                cols.push(Arc::new(self.html.finish()));
                cols.push(Arc::new(self.content_type.finish()));
            }
        }
        cols.push(Arc::new(self.url.finish()));
        cols.push(Arc::new(self.source.finish()));
        cols.push(Arc::new(self.fetched_at.finish().with_timezone("UTC")));
        cols.push(Arc::new(self.origin.finish()));
        self.rows = 0;
        Ok(RecordBatch::try_new(self.schema.clone(), cols)?)
    }
}

/// Parses an RFC 3339 / ISO 8601 time (`2024-05-18T01:58:10Z`, WARC-Date) to microseconds since the epoch.
pub fn parse_time_us(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    // WARC/0.17 dates: 14 digits (20080430204825).
    if s.len() == 14 && s.bytes().all(|b| b.is_ascii_digit()) {
        return chrono::NaiveDateTime::parse_from_str(s, "%Y%m%d%H%M%S").ok().map(|t| t.and_utc().timestamp_micros());
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok().map(|t| t.and_utc().timestamp_micros())
}

/// A stable id for a row without one: xxh3-128 of its origin.
pub fn derived_id(origin: &str) -> String {
    format!("smelt:{:032x}", xxhash_rust::xxh3::xxh3_128(origin.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse() {
        assert_eq!(parse_time_us("2024-05-18T01:58:10Z"), Some(1_715_997_490_000_000));
        assert_eq!(parse_time_us("20080430204825"), Some(1_209_588_505_000_000));
        assert_eq!(parse_time_us("yesterday"), None);
    }
}
