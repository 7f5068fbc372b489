//! The observer: signs each row of a split and writes its band records,
//! sorted (in runs past its share of the memory budget).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::TimestampMicrosecondType;
use arrow::record_batch::RecordBatch;
use smelt_engine::str_at;
use smelt_engine::{BarrierObserver, EngineError, Result};

use super::bands::{band_path, pref_key, run_path, write_sorted};
use super::explain::{ids_path, write_member};
use super::format::{node, stats_path, tmp_path};
use super::signer::{Scratch, Signer};
use super::{language_column, MinhashKeep};
use crate::dedup::{io, Merge};
use crate::filters::words::Segmenter;

pub(super) struct Observer {
    pub(super) signer: Arc<Signer>,
    /// u64 per band record.
    pub(super) width: usize,
    pub(super) keep: MinhashKeep,
    pub(super) default_segmenter: Segmenter,
    pub(super) dir: PathBuf,
    pub(super) split: u32,
    /// Records per band not yet written, each buffer allocated once.
    pub(super) bands: Vec<Vec<u64>>,
    /// u64 a band buffer holds before the observer spills a sorted run.
    pub(super) per_band: usize,
    /// Sorted runs spilled so far.
    pub(super) runs: u32,
    pub(super) scratch: Scratch,
    pub(super) sig: Vec<u64>,
    pub(super) row: u64,
    pub(super) without_shingles: u64,
    /// With `explain`: (row, 16-bit fingerprints of the hashes, id) per row with a signature.
    pub(super) ids: Option<BufWriter<File>>,
}

impl Observer {
    /// Writes every band's buffer as a sorted run.
    fn spill(&mut self) -> Result<()> {
        for (band, buf) in self.bands.iter_mut().enumerate() {
            write_sorted(buf, self.width, &run_path(&self.dir, self.split, band, self.runs))?;
            buf.clear();
        }
        self.runs += 1;
        Ok(())
    }
}

impl BarrierObserver for Observer {
    fn observe(&mut self, batch: &RecordBatch) -> Result<()> {
        let text = batch
            .column_by_name("text")
            .ok_or_else(|| EngineError::User("dedup_minhash needs a `text` column".into()))?;
        let language = language_column(batch.schema().as_ref()).and_then(|l| batch.column_by_name(l));
        let fetched = batch.column_by_name("fetched_at");
        let id_col = batch.column_by_name("id");
        let rows_per_band = self.width - 2;
        for i in 0..batch.num_rows() {
            let row = self.row + i as u64;
            let segmenter = language.and_then(|l| str_at(l, i)).map_or(self.default_segmenter, Segmenter::for_language);
            let t = str_at(text, i).unwrap_or("");
            if !self.signer.signature(t, segmenter, &mut self.scratch, &mut self.sig) {
                self.without_shingles += 1;
                continue;
            }
            let pref = match (self.keep, fetched) {
                (MinhashKeep::Newest, Some(c)) if c.is_valid(i) => {
                    -c.as_primitive::<TimestampMicrosecondType>().value(i)
                }
                (MinhashKeep::Newest, _) => i64::MAX,
                _ => 0,
            };
            if self.bands[0].len() + self.width > self.per_band {
                self.spill()?;
            }
            if let Some(w) = &mut self.ids {
                let id = id_col.and_then(|c| str_at(c, i)).unwrap_or("");
                write_member(w, row, &self.sig, id).map_err(|e| io(&ids_path(&self.dir, self.split), e))?;
            }
            let n = node(self.split, row)?;
            for (band, values) in self.bands.iter_mut().zip(self.sig.chunks_exact(rows_per_band)) {
                band.extend_from_slice(values);
                band.push(pref_key(pref));
                band.push(n);
            }
        }
        self.row += batch.num_rows() as u64;
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if self.runs == 0 {
            for (band, buf) in self.bands.iter().enumerate() {
                write_sorted(buf, self.width, &band_path(&self.dir, self.split, band))?;
            }
        } else {
            if !self.bands[0].is_empty() {
                self.spill()?;
            }
            self.bands = Vec::new();
            for band in 0..self.signer.a.len() / (self.width - 2) {
                let runs: Vec<PathBuf> = (0..self.runs).map(|r| run_path(&self.dir, self.split, band, r)).collect();
                let path = band_path(&self.dir, self.split, band);
                let tmp = tmp_path(&path);
                let width = self.width * 8;
                let mut merge = Merge::open(runs.iter().cloned().zip(0..), width, width)?;
                let mut w = BufWriter::with_capacity(1 << 16, File::create(&tmp).map_err(|e| io(&tmp, e))?);
                while let Some((rec, _)) = merge.peek() {
                    w.write_all(rec).map_err(|e| io(&tmp, e))?;
                    merge.pop()?;
                }
                w.flush().map_err(|e| io(&tmp, e))?;
                drop(w);
                std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
                for r in &runs {
                    std::fs::remove_file(r).map_err(|e| io(r, e))?;
                }
            }
        }
        self.bands = Vec::new();
        if let Some(mut w) = self.ids.take() {
            let path = ids_path(&self.dir, self.split);
            w.flush().map_err(|e| io(&path, e))?;
        }
        let path = stats_path(&self.dir, self.split);
        let mut b = self.row.to_le_bytes().to_vec();
        b.extend_from_slice(&self.without_shingles.to_le_bytes());
        std::fs::write(&path, b).map_err(|e| io(&path, e))
    }
}
