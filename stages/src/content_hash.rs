//! `content_hash` transform: adds `content_hash`, the xxh3-128 of the
//! normalised text (lowercased, whitespace runs collapsed to one space,
//! trimmed), so that documents differing only in case or spacing share a
//! hash. Dedup and the catalog's diff use it.
//!
//! ```text
//! text ──normalise──► xxh3-128 ──► content_hash: FixedSizeBinary(16)
//! ```

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, FixedSizeBinaryBuilder};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use smelt_engine::stage::doc;
use smelt_engine::{
    parse_options, require_column, ConfigureContext, OptionError, Processed, Result, SchemaError, StageConfig,
    Transform, TransformConfig,
};

fn yes() -> bool {
    true
}

/// Options of `content_hash`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContentHashConfig {
    /// Normalise before hashing (default true); false hashes the exact text bytes.
    #[serde(default = "yes")]
    pub normalize: bool,
}

/// Registry hook.
///
/// # Errors
/// Unknown or invalid options.
pub fn configure(options: serde_json::Value, _ctx: &ConfigureContext) -> Result<StageConfig, OptionError> {
    let c: ContentHashConfig = parse_options(options)?;
    Ok(StageConfig::Transform(Arc::new(c)))
}

/// The normalised form hashed by `content_hash`: lowercase, whitespace runs as one space, trimmed.
pub fn normalize(text: &str, out: &mut String) {
    out.clear();
    let mut pending_space = false;
    for word in text.split_whitespace() {
        if pending_space {
            out.push(' ');
        }
        for c in word.chars() {
            if c.is_ascii() {
                out.push(c.to_ascii_lowercase());
            } else {
                out.extend(c.to_lowercase());
            }
        }
        pending_space = true;
    }
}

/// The content hash of a text.
pub fn content_hash(text: &str, normalized: bool, scratch: &mut String) -> [u8; 16] {
    let bytes = if normalized {
        normalize(text, scratch);
        scratch.as_bytes()
    } else {
        text.as_bytes()
    };
    xxhash_rust::xxh3::xxh3_128(bytes).to_be_bytes()
}

impl TransformConfig for ContentHashConfig {
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, SchemaError> {
        require_column(input, "text", &[DataType::LargeUtf8, DataType::Utf8])?;
        let mut fields: Vec<_> =
            input.fields().iter().filter(|f| f.name() != "content_hash").map(|f| f.as_ref().clone()).collect();
        fields.push(doc::content_hash());
        Ok(Arc::new(Schema::new(fields)))
    }

    fn resolved(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn build(&self, input: &SchemaRef) -> Result<Box<dyn Transform>> {
        let output = self.output_schema(input).map_err(|e| smelt_engine::EngineError::Internal(e.0))?;
        Ok(Box::new(ContentHash { normalize: self.normalize, output, scratch: String::new() }))
    }
}

struct ContentHash {
    normalize: bool,
    output: SchemaRef,
    scratch: String,
}

impl Transform for ContentHash {
    fn process(&mut self, batch: RecordBatch) -> Result<Processed> {
        let text = batch.column_by_name("text").expect("schema checked");
        let mut hashes = FixedSizeBinaryBuilder::with_capacity(batch.num_rows(), 16);
        for i in 0..batch.num_rows() {
            let t = match text.data_type() {
                DataType::LargeUtf8 => text.as_string::<i64>().value(i),
                _ => text.as_string::<i32>().value(i),
            };
            hashes.append_value(content_hash(t, self.normalize, &mut self.scratch))?;
        }
        let mut cols: Vec<ArrayRef> = batch
            .schema()
            .fields()
            .iter()
            .zip(batch.columns())
            .filter(|(f, _)| f.name() != "content_hash")
            .map(|(_, c)| c.clone())
            .collect();
        cols.push(Arc::new(hashes.finish()));
        Ok(Processed::Batch(RecordBatch::try_new(self.output.clone(), cols)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_and_spacing_do_not_change_the_hash() {
        let mut s = String::new();
        let a = content_hash("Hello   World\n\tÉté ", true, &mut s);
        let b = content_hash("hello world été", true, &mut s);
        assert_eq!(a, b);
        assert_ne!(a, content_hash("hello world ete", true, &mut s));
        assert_ne!(content_hash("Hello", false, &mut s), content_hash("hello", false, &mut s));
        normalize("  A\u{a0}B  c ", &mut s);
        assert_eq!(s, "a b c");
    }
}
