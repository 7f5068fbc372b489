//! The observe step of a barrier on one split: every row that reaches the
//! barrier goes to its observer (which keeps what the global step needs) and
//! to the split's spill, read back in order by the apply step.
//!
//! ```text
//! inputs ──join──► observer.observe ─────────────► observed/ (the stage's files)
//!               └► Spill (zstd Parquet, small row groups) ─► spill/<split>.parquet.tmp-<pid> ──rename──► spill/<split>.parquet
//! ```

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;

use super::cpu::StageIo;
use super::phase::io_error;
use crate::error::{EngineError, Result};
use crate::stage::{BarrierConfig, BarrierContext};

/// Rows per row group of a barrier's scratch spill (rows reaching a barrier).
const SPILL_ROW_GROUP_ROWS: usize = 16_384;
/// A spill's open row group is flushed past this many bytes (it is held in memory).
const SPILL_ROW_GROUP_BYTES: usize = 16 << 20;

/// Observes and spills `io`'s inputs for barrier `cfg`, split `split`.
///
/// # Errors
/// Scratch space that cannot be written, or the observer fails.
pub(super) async fn run(
    io: &mut StageIo,
    cfg: &Arc<dyn BarrierConfig>,
    ctx: &BarrierContext,
    split: u32,
    spill: &Path,
) -> Result<()> {
    let schema = io.input_schema()?;
    std::fs::create_dir_all(&ctx.observed_dir).map_err(|e| io_error(&ctx.observed_dir, e))?;
    let mut state = Some((Spill::create(spill, &schema)?, cfg.observer(&schema, ctx, split)?));
    while let Some((batch, parts)) = io.next_batch().await? {
        drop(parts);
        io.with(&mut state, move |(spill, observer)| spill.write(&batch).and_then(|()| observer.observe(&batch)))
            .await??;
    }
    let (spill, mut observer) =
        state.take().ok_or_else(|| EngineError::Internal("a barrier's state was lost".into()))?;
    io.on_cpu(move || -> Result<()> {
        observer.finish()?;
        spill.finish()
    })
    .await?
}

/// A split's spill being written: a temporary file renamed into place when whole.
struct Spill {
    writer: ArrowWriter<File>,
    tmp: PathBuf,
    path: PathBuf,
}

impl Spill {
    fn create(path: &Path, schema: &SchemaRef) -> Result<Spill> {
        let dir = path.parent().expect("spill in a directory");
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let f = File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
        // Small row groups, also cut by bytes: the writer holds its open
        // row group in memory, so a split's spill must not grow with the split.
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::ZSTD(parquet::basic::ZstdLevel::try_new(1).expect("level 1")))
            .set_max_row_group_row_count(Some(SPILL_ROW_GROUP_ROWS))
            .build();
        let writer = ArrowWriter::try_new(f, schema.clone(), Some(props))
            .map_err(|e| EngineError::External(format!("{}: {e}", tmp.display())))?;
        Ok(Spill { writer, tmp, path: path.to_path_buf() })
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let w = &mut self.writer;
        w.write(batch)
            .and_then(|()| if w.in_progress_size() > SPILL_ROW_GROUP_BYTES { w.flush() } else { Ok(()) })
            .map_err(|e| EngineError::External(format!("cannot spill rows to scratch: {e}")))
    }

    fn finish(self) -> Result<()> {
        self.writer.close().map_err(|e| EngineError::External(format!("{}: {e}", self.tmp.display())))?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| io_error(&self.path, e))
    }
}
