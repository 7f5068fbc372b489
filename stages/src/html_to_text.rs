//! `html_to_text` transform: decodes each HTML payload (HTTP charset, then
//! `<meta>`, then detection) and keeps its visible text. This is the plain
//! extractor; main-content extraction is a separate, later stage.
//!
//! ```text
//! (html: LargeBinary, content_type, url) ──decode_html──► &str ──html_to_text──► text: LargeUtf8
//!                                                   empty or shorter than min_chars ──► dropped with a reason
//! ```

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, LargeStringBuilder};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use smelt_engine::guard;
use smelt_engine::{
    parse_options, ConfigureContext, OptionError, Processed, Result, SchemaError, StageConfig, Transform,
    TransformConfig,
};

use crate::html::{decode_html, html_to_text, TextOptions};

fn default_min_chars() -> usize {
    1
}

/// Options of `html_to_text`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HtmlToTextConfig {
    /// Keep the page `<title>` as the first line (default false).
    #[serde(default)]
    pub keep_title: bool,
    /// Drop documents whose text has fewer characters (default 1: drop empty pages).
    #[serde(default = "default_min_chars")]
    pub min_chars: usize,
}

/// Registry hook.
///
/// # Errors
/// Unknown or invalid options.
pub fn configure(options: serde_json::Value, _ctx: &ConfigureContext) -> Result<StageConfig, OptionError> {
    let c: HtmlToTextConfig = parse_options(options)?;
    Ok(StageConfig::Transform(Arc::new(c)))
}

impl TransformConfig for HtmlToTextConfig {
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, SchemaError> {
        crate::html::columns::text_schema(input)
    }

    fn resolved(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn build(&self, input: &SchemaRef) -> Result<Box<dyn Transform>> {
        let output = self.output_schema(input).map_err(|e| smelt_engine::EngineError::Internal(e.0))?;
        Ok(Box::new(HtmlToText {
            options: TextOptions { keep_title: self.keep_title },
            min_chars: self.min_chars,
            output,
        }))
    }
}

struct HtmlToText {
    options: TextOptions,
    min_chars: usize,
    output: SchemaRef,
}

fn bytes_at(col: &ArrayRef, i: usize) -> &[u8] {
    match col.data_type() {
        DataType::LargeBinary => col.as_binary::<i64>().value(i),
        _ => col.as_binary::<i32>().value(i),
    }
}

impl Transform for HtmlToText {
    fn process(&mut self, batch: RecordBatch) -> Result<Processed> {
        let html = batch.column_by_name("html").expect("schema checked").clone();
        let content_type = batch.column_by_name("content_type").map(|c| c.as_string::<i32>().clone());
        let url = batch.column_by_name("url").and_then(|c| c.as_string_opt::<i32>().cloned());
        let mut text = LargeStringBuilder::with_capacity(
            batch.num_rows(),
            html.to_data().buffers().iter().map(|b| b.len()).sum::<usize>() / 4,
        );
        let mut verdicts = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            let ct = content_type.as_ref().filter(|c| c.is_valid(i)).map(|c| c.value(i));
            let u = url.as_ref().filter(|c| c.is_valid(i)).map(|c| c.value(i));
            // A page that makes charset detection or the parser panic is dropped as `parser_panic`.
            let location = u.unwrap_or("a page without a url");
            let t = match guard::catch_at(location, || {
                html_to_text(&decode_html(bytes_at(&html, i), ct, u).0, &self.options)
            }) {
                Ok(t) => t,
                Err(panic) => {
                    tracing::warn!(reason = "parser_panic", "dropped {location}: reading it {panic}");
                    verdicts.push(Some(Cow::Borrowed("parser_panic")));
                    text.append_value("");
                    continue;
                }
            };
            let chars = t.chars().take(self.min_chars).count();
            verdicts.push(match (t.is_empty(), chars < self.min_chars) {
                (true, _) => Some(Cow::Borrowed("empty_text")),
                (false, true) => Some(Cow::Borrowed("too_short")),
                _ => None,
            });
            text.append_value(&t);
        }
        let out = crate::html::columns::with_text(&batch, Arc::new(text.finish()), &self.output)?;
        Ok(Processed::Filtered { batch: out, verdicts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{LargeBinaryArray, StringArray};
    use arrow::datatypes::{Field, Schema};
    use smelt_engine::stage::doc;

    #[test]
    fn decodes_extracts_and_drops_empty_pages() {
        let schema = Arc::new(Schema::new(vec![
            doc::id(),
            Field::new("html", DataType::LargeBinary, false),
            Field::new("content_type", DataType::Utf8, true),
            doc::url(),
        ]));
        let pages: Vec<&[u8]> = vec![
            b"<html><body><p>Caf\xe9 cr\xe8me</p><script>var x=1;</script></body></html>",
            b"<html><body><script>only()</script></body></html>",
        ];
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["a", "b"])),
                Arc::new(LargeBinaryArray::from(pages)),
                Arc::new(StringArray::from(vec![Some("text/html; charset=windows-1252"), None])),
                Arc::new(StringArray::from(vec![Some("http://x.fr/"), None])),
            ],
        )
        .unwrap();
        let cfg: HtmlToTextConfig = serde_json::from_value(serde_json::json!({})).unwrap();
        let out_schema = cfg.output_schema(&schema).unwrap();
        assert_eq!(
            out_schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(),
            vec!["id", "text", "url"]
        );
        let Processed::Filtered { batch, verdicts } = cfg.build(&schema).unwrap().process(batch).unwrap() else {
            panic!("a filter")
        };
        assert_eq!(batch.column(1).as_string::<i64>().value(0), "Café crème");
        assert_eq!(verdicts, vec![None, Some(Cow::Borrowed("empty_text"))]);
    }

    #[test]
    fn needs_an_html_column() {
        let schema = Arc::new(Schema::new(vec![doc::id(), doc::text()]));
        let cfg: HtmlToTextConfig = serde_json::from_value(serde_json::json!({})).unwrap();
        let e = cfg.output_schema(&schema).unwrap_err().0;
        assert!(e.contains("needs column `html`") && e.contains("id, text"), "{e}");
    }
}
