//! `parquet` source: Parquet files with document columns (smelt's own shards,
//! or any file with at least `text`). Reads the document columns, casts them
//! to the document types, and fills absent optional ones (`url`, `fetched_at`)
//! with nulls; `id`, `source` and `origin` are derived when absent.
//!
//! ```text
//! file ──ParquetRecordBatchReader (projected)──► cast / fill ──► batch (document schema)
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{new_null_array, Array, ArrayRef, StringArray};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;
use parquet::file::reader::ChunkReader;
use serde::{Deserialize, Serialize};
use smelt_engine::{
    parse_options, ConfigureContext, EngineError, OptionError, ReadOptions, Result, Skips, SourceConfig, SplitReader,
    SplitSpec, StageConfig,
};

use super::{derived_id, doc_schema, Body};
use crate::files::list_files;

fn default_source() -> String {
    "parquet".into()
}

/// Options of the `parquet` source.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParquetSourceConfig {
    /// Files, directories or glob patterns, relative to the pipeline file.
    pub paths: Vec<String>,
    /// `source` value for files without a `source` column (default `parquet`).
    #[serde(default = "default_source")]
    pub source: String,
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
    let mut c: ParquetSourceConfig = parse_options(options)?;
    c.base_dir = ctx.pipeline_dir.clone();
    Ok(StageConfig::Source(Arc::new(c)))
}

impl SourceConfig for ParquetSourceConfig {
    fn schema(&self) -> SchemaRef {
        doc_schema(Body::Text)
    }

    fn resolved(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn splits(&self) -> Result<Vec<SplitSpec>> {
        list_files(&self.paths, &self.base_dir)
    }

    fn open(&self, split: &SplitSpec, options: &ReadOptions) -> Result<Box<dyn SplitReader>> {
        let file = std::fs::File::open(&split.id)
            .map_err(|e| EngineError::External(format!("cannot open {}: {e}", split.id)))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| EngineError::External(format!("{} is not a readable Parquet file: {e}", split.id)))?;
        document_reader(builder, &split.id, &self.source, split.bytes.unwrap_or(0), options, doc_schema(Body::Text))
    }
}

/// A reader of the document columns of one Parquet file (local or fetched):
/// cast to the document types, `id`, `source` and `origin` derived when
/// absent (`source` from `default_source`), other missing columns null.
///
/// # Errors
/// A file without `text`, an unreadable footer.
pub(crate) fn document_reader<T: ChunkReader + 'static>(
    builder: ParquetRecordBatchReaderBuilder<T>,
    label: &str,
    default_source: &str,
    bytes: u64,
    options: &ReadOptions,
    wanted: SchemaRef,
) -> Result<Box<dyn SplitReader>> {
    let file_schema = builder.schema().clone();
    let document = doc_schema(Body::Text);
    // `text`, and every column past the document ones (the `dataset` source's `columns`), must be there.
    let required = std::iter::once("text")
        .chain(wanted.fields().iter().map(|f| f.name().as_str()).filter(|n| document.field_with_name(n).is_err()));
    for name in required {
        if file_schema.field_with_name(name).is_err() {
            return Err(EngineError::External(format!(
                "{label} has no `{name}` column (it has: {})",
                file_schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
    }
    let indices: Vec<usize> = wanted.fields().iter().filter_map(|f| file_schema.index_of(f.name()).ok()).collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(options.batch_rows)
        .build()
        .map_err(|e| EngineError::External(format!("{label}: {e}")))?;
    Ok(Box::new(ParquetReader {
        reader,
        path: label.to_string(),
        source: default_source.to_string(),
        schema: wanted,
        row: 0,
        bytes,
        done: false,
    }))
}

struct ParquetReader {
    reader: ParquetRecordBatchReader,
    path: String,
    source: String,
    schema: SchemaRef,
    row: u64,
    bytes: u64,
    done: bool,
}

impl ParquetReader {
    fn conform(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let n = batch.num_rows();
        let origins: Vec<String> = (0..n).map(|i| format!("{}#row{}", self.path, self.row + i as u64)).collect();
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for f in self.schema.fields() {
            let col = match batch.column_by_name(f.name()) {
                Some(c) if c.data_type() == f.data_type() => c.clone(),
                Some(c) => arrow::compute::cast(c, f.data_type()).map_err(|e| {
                    EngineError::External(format!(
                        "{}: column `{}` cannot be read as {}: {e}",
                        self.path,
                        f.name(),
                        f.data_type()
                    ))
                })?,
                None => match f.name().as_str() {
                    "id" => Arc::new(StringArray::from(origins.iter().map(|o| derived_id(o)).collect::<Vec<_>>())),
                    "source" => Arc::new(StringArray::from(vec![self.source.as_str(); n])),
                    "origin" => Arc::new(StringArray::from(origins.clone())),
                    _ => new_null_array(f.data_type(), n),
                },
            };
            if !f.is_nullable() && col.null_count() > 0 {
                return Err(EngineError::External(format!("{}: column `{}` has nulls", self.path, f.name())));
            }
            cols.push(col);
        }
        Ok(RecordBatch::try_new(self.schema.clone(), cols)?)
    }
}

impl SplitReader for ParquetReader {
    fn next_batch(&mut self, _skips: &mut Skips) -> Result<Option<RecordBatch>> {
        if self.done {
            return Ok(None);
        }
        match self.reader.next() {
            None => {
                self.done = true;
                Ok(None)
            }
            Some(Err(e)) => {
                Err(EngineError::External(format!("{}: corrupt Parquet data after row {}: {e}", self.path, self.row)))
            }
            Some(Ok(batch)) => {
                let out = self.conform(&batch)?;
                self.row += batch.num_rows() as u64;
                Ok(Some(out))
            }
        }
    }

    fn bytes_read(&self) -> u64 {
        if self.done {
            self.bytes
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, LargeStringArray};
    use parquet::arrow::ArrowWriter;

    #[test]
    fn reads_text_only_files_and_derives_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let text: ArrayRef = Arc::new(StringArray::from(vec!["a b", "c d"]));
        let batch = RecordBatch::try_from_iter([("text", text)]).unwrap();
        let f = std::fs::File::create(dir.path().join("x.parquet")).unwrap();
        let mut w = ArrowWriter::try_new(f, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let cfg: ParquetSourceConfig = serde_json::from_value(serde_json::json!({"paths": ["*.parquet"]})).unwrap();
        let cfg = ParquetSourceConfig { base_dir: dir.path().to_path_buf(), ..cfg };
        let splits = cfg.splits().unwrap();
        let mut r = cfg.open(&splits[0], &ReadOptions { batch_rows: 10 }).unwrap();
        let b = r.next_batch(&mut Skips::default()).unwrap().unwrap();
        assert_eq!(b.schema(), doc_schema(Body::Text));
        assert_eq!(b.column(1).as_any().downcast_ref::<LargeStringArray>().unwrap().value(1), "c d");
        assert_eq!(b.column(3).as_string::<i32>().value(0), "parquet");
        assert!(b.column(5).as_string::<i32>().value(1).ends_with("x.parquet#row1"));
        assert!(r.next_batch(&mut Skips::default()).unwrap().is_none());
    }

    #[test]
    fn a_file_without_text_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let a: ArrayRef = Arc::new(StringArray::from(vec!["a"]));
        let batch = RecordBatch::try_from_iter([("body", a)]).unwrap();
        let f = std::fs::File::create(dir.path().join("x.parquet")).unwrap();
        let mut w = ArrowWriter::try_new(f, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let cfg: ParquetSourceConfig = serde_json::from_value(serde_json::json!({"paths": ["x.parquet"]})).unwrap();
        let cfg = ParquetSourceConfig { base_dir: dir.path().to_path_buf(), ..cfg };
        let splits = cfg.splits().unwrap();
        let e = cfg.open(&splits[0], &ReadOptions { batch_rows: 10 }).err().unwrap().to_string();
        assert!(e.contains("has no `text` column (it has: body)"), "{e}");
    }
}
