//! Query results as a table, CSV, JSON or Parquet.

use std::io::Write;
use std::sync::Arc;

use arrow::array::{ArrayRef, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};

use super::SqlFormat;
use smelt_catalog::{CatalogError, Result};

/// Writes `batches` to `out` as a table (Arrow's pretty printer), CSV with a
/// header, a JSON array of objects, or one Parquet file (zstd).
///
/// Binary values (`content_hash`) are hex in every text format; nested values
/// (`input_ids`) are written as text in CSV. A reader that goes away (a closed
/// pipe, as in `smelt sql ... | head`) ends the output without an error.
///
/// # Errors
/// `User` when `out` cannot be written (full disk, ...) or a value cannot be
/// encoded; `Internal` when `batches` is empty (Parquet needs a schema).
pub fn write_results(batches: &[RecordBatch], format: SqlFormat, out: &mut dyn Write) -> Result<()> {
    match write(batches, format, out) {
        Ok(()) => Ok(()),
        Err(Failure::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(Failure::Io(e)) => Err(CatalogError::User(format!("cannot write the result: {e}"))),
        Err(Failure::Other(e)) => Err(e),
    }
}

/// Why writing stopped.
enum Failure {
    Io(std::io::Error),
    Other(CatalogError),
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Io(e)
    }
}

impl From<arrow::error::ArrowError> for Failure {
    fn from(e: arrow::error::ArrowError) -> Self {
        match e {
            arrow::error::ArrowError::IoError(msg, io) => Failure::Io(std::io::Error::new(io.kind(), msg)),
            other => Failure::Other(CatalogError::User(format!("cannot write the result: {other}"))),
        }
    }
}

impl From<parquet::errors::ParquetError> for Failure {
    fn from(e: parquet::errors::ParquetError) -> Self {
        Failure::Other(CatalogError::User(format!("cannot write the result as Parquet: {e}")))
    }
}

fn write(batches: &[RecordBatch], format: SqlFormat, out: &mut dyn Write) -> std::result::Result<(), Failure> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    match format {
        SqlFormat::Table => {
            let table = arrow::util::pretty::pretty_format_batches(batches)?;
            writeln!(out, "{table}")?;
        }
        SqlFormat::Csv if rows == 0 => {
            // The CSV writer writes the header with the first row; write it alone.
            if let Some(b) = batches.first() {
                let names: Vec<String> = b.schema().fields().iter().map(|f| csv_field(f.name())).collect();
                writeln!(out, "{}", names.join(","))?;
            }
        }
        SqlFormat::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new().with_header(true).build(&mut *out);
            for b in batches.iter().filter(|b| b.num_rows() > 0) {
                writer.write(&nested_as_text(b)?)?;
            }
        }
        SqlFormat::Json if rows == 0 => writeln!(out, "[]")?,
        SqlFormat::Json => {
            let mut writer = arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow::json::writer::JsonArray>(&mut *out);
            for b in batches.iter().filter(|b| b.num_rows() > 0) {
                writer.write(b)?;
            }
            writer.finish()?;
            drop(writer);
            writeln!(out)?;
        }
        SqlFormat::Parquet => {
            let Some(first) = batches.first() else {
                return Err(Failure::Other(CatalogError::Internal("no result schema to write as Parquet".into())));
            };
            // ArrowWriter needs a `Send` writer; the results are in memory already.
            let props = parquet::file::properties::WriterProperties::builder()
                .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
                .build();
            let mut buf = Vec::new();
            let mut writer = parquet::arrow::ArrowWriter::try_new(&mut buf, first.schema(), Some(props))?;
            for b in batches {
                writer.write(b)?;
            }
            writer.close()?;
            out.write_all(&buf)?;
        }
    }
    out.flush()?;
    Ok(())
}

fn csv_field(name: &str) -> String {
    if name.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", name.replace('"', "\"\""))
    } else {
        name.to_string()
    }
}

/// `b` with nested columns (lists, structs, maps) formatted as text, which CSV can hold.
fn nested_as_text(b: &RecordBatch) -> std::result::Result<RecordBatch, Failure> {
    if !b.schema().fields().iter().any(|f| f.data_type().is_nested()) {
        return Ok(b.clone());
    }
    let options = FormatOptions::default().with_null("");
    let mut fields = Vec::with_capacity(b.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(b.num_columns());
    for (field, column) in b.schema().fields().iter().zip(b.columns()) {
        if !field.data_type().is_nested() {
            fields.push(field.as_ref().clone());
            columns.push(Arc::clone(column));
            continue;
        }
        let formatter = ArrayFormatter::try_new(column.as_ref(), &options)?;
        let mut text = StringBuilder::with_capacity(column.len(), column.len() * 16);
        for i in 0..column.len() {
            if column.is_null(i) {
                text.append_null();
            } else {
                text.append_value(formatter.value(i).to_string());
            }
        }
        fields.push(Field::new(field.name(), DataType::Utf8, true));
        columns.push(Arc::new(text.finish()));
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}
