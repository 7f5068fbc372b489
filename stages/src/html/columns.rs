//! The columns of a stage that turns HTML into text (`extract`,
//! `html_to_text`): `html` becomes `text` in place, `content_type` goes.
//!
//! ```text
//! (id, html, content_type, url, ...) ──► (id, text, url, ...)
//! ```

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use smelt_engine::stage::doc;
use smelt_engine::{require_column, Result, SchemaError};

/// The output schema for `input`: `html` replaced by `text`, `content_type` dropped.
///
/// # Errors
/// `input` has no binary `html` column, or already has a `text` column.
pub(crate) fn text_schema(input: &SchemaRef) -> std::result::Result<SchemaRef, SchemaError> {
    require_column(input, "html", &[DataType::LargeBinary, DataType::Binary])?;
    if input.field_with_name("text").is_ok() {
        return Err(SchemaError::new("would replace the input's existing `text` column; remove one of them"));
    }
    let fields: Vec<Field> = input
        .fields()
        .iter()
        .filter(|f| f.name() != "content_type")
        .map(|f| if f.name() == "html" { doc::text() } else { f.as_ref().clone() })
        .collect();
    Ok(Arc::new(Schema::new(fields)))
}

/// `batch` with its `html` column replaced by `text` and `content_type` dropped, as `output`.
///
/// # Errors
/// `text` does not have the batch's row count (a bug).
pub(crate) fn with_text(batch: &RecordBatch, text: ArrayRef, output: &SchemaRef) -> Result<RecordBatch> {
    let cols: Vec<ArrayRef> = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(f, _)| f.name() != "content_type")
        .map(|(f, c)| if f.name() == "html" { text.clone() } else { c.clone() })
        .collect();
    Ok(RecordBatch::try_new(output.clone(), cols)?)
}
