//! `parquet` sink: encodes the document rows into zstd-compressed Parquet
//! shards, rolling over at a row or byte target. Shard contents depend only
//! on the rows (no timestamps, fixed writer settings), so reruns are
//! byte-identical. The engine names and stores the shards.
//!
//! The bytes of a shard leave the writer as each row group is flushed, not
//! when the shard is complete: the engine streams them to the object store
//! (multipart upload) while encoding goes on, so memory holds one row group
//! and a few upload parts whatever `shard_bytes` is.
//!
//! ```text
//! batches ──► ArrowWriter<SharedBuf> ──(row group flushed)──► ShardOutput::Bytes ──► engine ──► multipart upload
//!                          └──(shard_rows or shard_bytes reached)──► ShardOutput::End ──► engine completes the upload
//! ```

use std::io::Write;
use std::sync::{Arc, Mutex};

use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use serde::{Deserialize, Serialize};
use smelt_engine::stage::doc;
use smelt_engine::{
    parse_options, require_column, ConfigureContext, EngineError, OptionError, Result, SchemaError, ShardOutput,
    ShardWriter, SinkConfig, StageConfig,
};

fn default_shard_rows() -> usize {
    500_000
}
fn default_shard_bytes() -> u64 {
    128 << 20
}
fn default_row_group_rows() -> usize {
    16_384
}
fn default_zstd_level() -> i32 {
    3
}

/// Options of the `parquet` sink.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParquetSinkConfig {
    /// Most rows in one shard file (default 500000).
    #[serde(default = "default_shard_rows")]
    pub shard_rows: usize,
    /// Target size of one shard file in bytes, checked after each row group
    /// (default 134217728 = 128 MiB).
    #[serde(default = "default_shard_bytes")]
    pub shard_bytes: u64,
    /// Rows per Parquet row group (default 16384).
    #[serde(default = "default_row_group_rows")]
    pub row_group_rows: usize,
    /// zstd compression level, 1 to 22 (default 3).
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
    /// Merge small shards at commit (default true): shards under half of
    /// `shard_bytes` and `shard_rows` that follow each other in split order
    /// are rewritten together into shards of up to `shard_bytes`, so many
    /// small inputs do not make many tiny files. The version's rows, their
    /// order and its digest are the same either way.
    #[serde(default = "default_true")]
    pub merge_small_shards: bool,
}

fn default_true() -> bool {
    true
}

impl Default for ParquetSinkConfig {
    fn default() -> Self {
        ParquetSinkConfig {
            shard_rows: default_shard_rows(),
            shard_bytes: default_shard_bytes(),
            row_group_rows: default_row_group_rows(),
            zstd_level: default_zstd_level(),
            merge_small_shards: true,
        }
    }
}

/// Registry hook.
///
/// # Errors
/// Unknown or invalid options.
pub fn configure(options: serde_json::Value, _ctx: &ConfigureContext) -> Result<StageConfig, OptionError> {
    let c: ParquetSinkConfig = parse_options(options)?;
    let invalid = |field: &str, message: String| OptionError {
        path: vec![smelt_engine::yaml::PathSeg::Key(field.into())],
        message,
        at_key: false,
    };
    if ZstdLevel::try_new(c.zstd_level).is_err() {
        return Err(invalid("zstd_level", format!("zstd_level must be 1..=22, got {}", c.zstd_level)));
    }
    if c.shard_rows == 0 || c.row_group_rows == 0 || c.shard_bytes == 0 {
        return Err(invalid("shard_rows", "shard_rows, shard_bytes and row_group_rows must be positive".into()));
    }
    Ok(StageConfig::Sink(Arc::new(c)))
}

impl ParquetSinkConfig {
    /// The Parquet writer settings of every shard (fixed, so reruns are byte-identical).
    fn props(&self, schema: &SchemaRef) -> Result<WriterProperties> {
        let level = ZstdLevel::try_new(self.zstd_level).map_err(|e| EngineError::User(e.to_string()))?;
        Ok(WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_max_row_group_row_count(Some(self.row_group_rows))
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_created_by(format!("smelt {}", env!("CARGO_PKG_VERSION")))
            // The schema's metadata (e.g. the tokenizer of token shards) as the file's
            // key-value metadata, readable without decoding the Arrow schema; sorted, so
            // shards stay byte-identical.
            .set_key_value_metadata(
                Some(
                    schema
                        .metadata()
                        .iter()
                        .collect::<std::collections::BTreeMap<_, _>>()
                        .into_iter()
                        .map(|(k, v)| parquet::file::metadata::KeyValue::new(k.clone(), v.clone()))
                        .collect(),
                )
                .filter(|kv: &Vec<_>| !kv.is_empty()),
            )
            .build())
    }
}

impl SinkConfig for ParquetSinkConfig {
    fn check_input(&self, input: &SchemaRef) -> Result<(), SchemaError> {
        // Token shards (stage `tokenize`) carry `input_ids` and may leave `text` out.
        let token_shards = input.field_with_name("input_ids").is_ok();
        for f in doc::all().into_iter().filter(|f| !(token_shards && f.name() == "text")) {
            require_column(input, f.name(), &[f.data_type().clone()])?;
        }
        Ok(())
    }

    fn resolved(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn writer(&self, schema: &SchemaRef) -> Result<Box<dyn ShardWriter>> {
        let props = self.props(schema)?;
        Ok(Box::new(ParquetShardWriter {
            config: self.clone(),
            schema: schema.clone(),
            props,
            current: None,
            buf: SharedBuf::default(),
            rows: 0,
        }))
    }
}

/// The file bytes the `ArrowWriter` has written and the engine not yet taken.
#[derive(Debug, Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    /// Takes the bytes written so far.
    fn take(&self) -> Bytes {
        Bytes::from(std::mem::take(&mut *self.0.lock().expect("shard buffer")))
    }
}

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("shard buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct ParquetShardWriter {
    config: ParquetSinkConfig,
    schema: SchemaRef,
    props: WriterProperties,
    current: Option<ArrowWriter<SharedBuf>>,
    /// Where `current` writes.
    buf: SharedBuf,
    rows: u64,
}

impl ParquetShardWriter {
    /// Moves the bytes encoded so far to `out`.
    fn drain(&self, out: &mut Vec<ShardOutput>) {
        let bytes = self.buf.take();
        if !bytes.is_empty() {
            out.push(ShardOutput::Bytes(bytes));
        }
    }

    fn close(&mut self, out: &mut Vec<ShardOutput>) -> Result<()> {
        let Some(w) = self.current.take() else { return Ok(()) };
        w.into_inner().map_err(|e| EngineError::Internal(format!("parquet: {e}")))?;
        self.drain(out);
        out.push(ShardOutput::End { rows: std::mem::take(&mut self.rows) });
        Ok(())
    }
}

impl ShardWriter for ParquetShardWriter {
    fn write(&mut self, batch: &RecordBatch) -> Result<Vec<ShardOutput>> {
        let mut out = Vec::new();
        let mut offset = 0;
        while offset < batch.num_rows() {
            if self.current.is_none() {
                let w = ArrowWriter::try_new(self.buf.clone(), self.schema.clone(), Some(self.props.clone()))
                    .map_err(|e| EngineError::Internal(format!("parquet: {e}")))?;
                self.current = Some(w);
            }
            let room = self.config.shard_rows - self.rows as usize;
            let take = room.min(batch.num_rows() - offset);
            let part = batch.slice(offset, take);
            let w = self.current.as_mut().expect("writer");
            w.write(&part).map_err(|e| EngineError::Internal(format!("parquet: {e}")))?;
            self.rows += take as u64;
            offset += take;
            let full_rows = self.rows as usize >= self.config.shard_rows;
            let full_bytes = (w.bytes_written() + w.in_progress_size()) as u64 >= self.config.shard_bytes;
            if full_rows || full_bytes {
                self.close(&mut out)?;
            } else {
                self.drain(&mut out);
            }
        }
        Ok(out)
    }

    fn finish(&mut self) -> Result<Vec<ShardOutput>> {
        let mut out = Vec::new();
        self.close(&mut out)?;
        Ok(out)
    }
}

/// Data types the sink requires, for docs.
pub fn required_columns() -> Vec<(String, DataType)> {
    doc::all().into_iter().map(|f| (f.name().clone(), f.data_type().clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, FixedSizeBinaryArray, LargeStringArray, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::Schema;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn docs(n: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(doc::all()));
        let ids: Vec<String> = (0..n).map(|i| format!("id{i}")).collect();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(ids.clone())),
            Arc::new(LargeStringArray::from(ids.iter().map(|i| format!("text of {i}")).collect::<Vec<_>>())),
            Arc::new(StringArray::from(vec![Some("https://a.org/"); n])),
            Arc::new(StringArray::from(vec!["test"; n])),
            Arc::new(TimestampMicrosecondArray::from(vec![Some(1_700_000_000_000_000i64); n]).with_timezone("UTC")),
            Arc::new(StringArray::from(vec!["f#0"; n])),
            Arc::new(FixedSizeBinaryArray::try_from_iter((0..n).map(|i| [i as u8; 16])).unwrap()),
        ];
        RecordBatch::try_new(schema, cols).unwrap()
    }

    /// A shard put together from the writer's output.
    struct Shard {
        bytes: Bytes,
        rows: u64,
        /// How many `ShardOutput::Bytes` pieces it came in.
        pieces: usize,
    }

    fn write_all(cfg: &ParquetSinkConfig, batches: &[RecordBatch]) -> Vec<Shard> {
        let mut w = cfg.writer(&batches[0].schema()).unwrap();
        let mut outputs = Vec::new();
        for b in batches {
            outputs.extend(w.write(b).unwrap());
        }
        outputs.extend(w.finish().unwrap());
        let (mut shards, mut open, mut pieces) = (Vec::new(), Vec::new(), 0);
        for o in outputs {
            match o {
                ShardOutput::Bytes(b) => {
                    open.extend_from_slice(&b);
                    pieces += 1;
                }
                ShardOutput::End { rows } => {
                    shards.push(Shard { bytes: Bytes::from(std::mem::take(&mut open)), rows, pieces });
                    pieces = 0;
                }
            }
        }
        assert!(open.is_empty(), "bytes after the last shard's end");
        shards
    }

    #[test]
    fn rolls_over_at_shard_rows_and_is_deterministic() {
        let StageConfig::Sink(_) =
            configure(serde_json::json!({"shard_rows": 40}), &ConfigureContext::working_dir()).unwrap()
        else {
            panic!()
        };
        let cfg: ParquetSinkConfig = serde_json::from_value(serde_json::json!({"shard_rows": 40})).unwrap();
        let batches = vec![docs(30), docs(30), docs(30)];
        let a = write_all(&cfg, &batches);
        assert_eq!(a.iter().map(|s| s.rows).collect::<Vec<_>>(), vec![40, 40, 10]);
        let b = write_all(&cfg, &batches);
        assert!(a.iter().zip(&b).all(|(x, y)| x.bytes == y.bytes), "same rows, same bytes");
        let reader = ParquetRecordBatchReaderBuilder::try_new(a[0].bytes.clone()).unwrap();
        assert_eq!(reader.metadata().file_metadata().num_rows(), 40);
        assert_eq!(reader.schema().fields().len(), 7);
    }

    #[test]
    fn shard_bytes_leave_the_writer_row_group_by_row_group() {
        // One shard of 5 row groups: its bytes come out as each row group is
        // flushed, and put together they are the file a single buffer would hold.
        let cfg: ParquetSinkConfig = serde_json::from_value(serde_json::json!({"row_group_rows": 20})).unwrap();
        // Texts that do not compress, so each row group is larger than the writer's 8 KiB buffer.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut noise = |n: usize| -> String {
            (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    char::from(b'a' + (x % 26) as u8)
                })
                .collect()
        };
        let batches: Vec<_> = (0..5)
            .map(|_| {
                let b = docs(20);
                let texts: Vec<String> = (0..20).map(|_| noise(1000)).collect();
                let mut cols = b.columns().to_vec();
                cols[1] = Arc::new(LargeStringArray::from(texts));
                RecordBatch::try_new(b.schema(), cols).unwrap()
            })
            .collect();
        let shards = write_all(&cfg, &batches);
        assert_eq!(shards.len(), 1);
        assert_eq!(shards[0].rows, 100);
        assert!(shards[0].pieces >= 5, "{} pieces", shards[0].pieces);
        let mut whole =
            ArrowWriter::try_new(Vec::new(), batches[0].schema(), Some(cfg.props(&batches[0].schema()).unwrap()))
                .unwrap();
        for b in &batches {
            whole.write(b).unwrap();
        }
        assert!(whole.into_inner().unwrap() == shards[0].bytes, "streamed bytes differ from one buffered file");
        let reader = ParquetRecordBatchReaderBuilder::try_new(shards[0].bytes.clone()).unwrap();
        assert_eq!(reader.metadata().num_row_groups(), 5);
    }

    #[test]
    fn token_shards_keep_the_schema_metadata_as_key_value_metadata() {
        let meta: std::collections::HashMap<String, String> =
            [("smelt.tokenizer".to_string(), "tiktoken:cl100k_base".to_string())].into();
        let fields: Vec<_> = doc::all().into_iter().filter(|f| f.name() != "text").collect();
        let schema = Arc::new(Schema::new_with_metadata(fields, meta));
        let cfg: ParquetSinkConfig = serde_json::from_value(serde_json::json!({})).unwrap();
        cfg.check_input(&schema).expect_err("no input_ids: text is required");
        let mut with_ids: Vec<_> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        with_ids.push(arrow::datatypes::Field::new(
            "input_ids",
            DataType::List(Arc::new(arrow::datatypes::Field::new("item", DataType::UInt32, false))),
            false,
        ));
        let schema = Arc::new(Schema::new_with_metadata(with_ids, schema.metadata().clone()));
        cfg.check_input(&schema).unwrap();
        let full = docs(1);
        let mut cols: Vec<ArrayRef> =
            full.columns().iter().enumerate().filter(|(i, _)| *i != 1).map(|(_, c)| c.clone()).collect();
        let ids = arrow::array::ListArray::from_iter_primitive::<arrow::datatypes::UInt32Type, _, _>([Some(vec![
            Some(1u32),
            Some(2),
        ])]);
        let item = Arc::new(arrow::datatypes::Field::new("item", DataType::UInt32, false));
        cols.push(Arc::new(
            arrow::array::ListArray::try_new(item, ids.offsets().clone(), ids.values().clone(), None).unwrap(),
        ));
        let batch = RecordBatch::try_new(schema, cols).unwrap();
        let shards = write_all(&cfg, &[batch]);
        let reader = ParquetRecordBatchReaderBuilder::try_new(shards[0].bytes.clone()).unwrap();
        let kv = reader.metadata().file_metadata().key_value_metadata().unwrap();
        assert!(
            kv.iter().any(|k| k.key == "smelt.tokenizer" && k.value.as_deref() == Some("tiktoken:cl100k_base")),
            "{kv:?}"
        );
        assert_eq!(reader.schema().metadata()["smelt.tokenizer"], "tiktoken:cl100k_base");
    }

    #[test]
    fn rejects_bad_options_with_their_path() {
        let e = configure(serde_json::json!({"zstd_level": 99}), &ConfigureContext::working_dir()).unwrap_err();
        assert_eq!(e.path, vec![smelt_engine::yaml::PathSeg::Key("zstd_level".into())]);
        let e = configure(serde_json::json!({"shard_row": 5}), &ConfigureContext::working_dir()).unwrap_err();
        assert!(e.at_key && e.message.contains("unknown field `shard_row`"), "{e:?}");
    }
}
