//! Index files as runs of smelt-sort's merge: the reader is the cursor, the
//! writer the sink, and merging sorted index files is its bounded fan-in merge.
//!
//! ```text
//! runs (n > fan-in) ──merge a group──► merge-NNNNNN ─┐
//! rest of the runs ───────────────────────────────────────────────────────┴─loser tree──► out (one sorted index)
//! ```

use std::cmp::Ordering;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use smelt_sort::{RunFormat, SortedCursor};

use super::reader::DocIndexReader;
use super::writer::DocIndexWriter;
use super::MERGE_FAN_IN;

/// Merges sorted index files into one on `out`, at most [`MERGE_FAN_IN`] at a
/// time: with more inputs, earlier passes merge groups into files under
/// `scratch`. Duplicate entries are all kept. Returns `out` and the entry count.
///
/// # Errors
/// Reading an input (with its path in the message) or writing `out`.
pub fn merge_files<W: Write>(inputs: &[PathBuf], out: W, scratch: &Path) -> io::Result<(W, u64)> {
    merge_files_with(inputs, out, scratch, MERGE_FAN_IN)
}

pub(super) fn merge_files_with<W: Write>(
    inputs: &[PathBuf],
    out: W,
    scratch: &Path,
    fan_in: usize,
) -> io::Result<(W, u64)> {
    let mut w = DocIndexWriter::new(out)?;
    smelt_sort::merge_files(&IndexFormat, inputs, scratch, fan_in, |(id, hash)| w.push(id, hash))?;
    let n = w.entries();
    Ok((w.finish()?, n))
}

fn with_path(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// A sorted index file being merged; its errors name the file.
pub(super) struct IndexCursor {
    r: DocIndexReader<File>,
    path: PathBuf,
}

impl SortedCursor for IndexCursor {
    #[inline(always)]
    fn advance(&mut self) -> io::Result<bool> {
        self.r.advance().map_err(|e| with_path(&self.path, e))
    }
}

/// Document index files as sorted runs of `(id, hash)` entries, ordered by
/// (id bytes, hash); spills and intermediate passes are written at
/// the current format.
pub(super) struct IndexFormat;

impl RunFormat for IndexFormat {
    type Cursor = IndexCursor;
    type Record<'a> = (&'a [u8], &'a [u8; 16]);
    type Writer = DocIndexWriter<BufWriter<File>>;

    fn open(&self, path: &Path) -> io::Result<IndexCursor> {
        let r = File::open(path).and_then(DocIndexReader::new).map_err(|e| with_path(path, e))?;
        Ok(IndexCursor { r, path: path.to_path_buf() })
    }

    fn create(&self, path: &Path) -> io::Result<Self::Writer> {
        let file = BufWriter::new(File::create(path).map_err(|e| with_path(path, e))?);
        DocIndexWriter::new(file)
    }

    #[inline(always)]
    fn record<'a>(&self, c: &'a IndexCursor) -> (&'a [u8], &'a [u8; 16]) {
        (c.r.id(), c.r.hash())
    }

    #[inline(always)]
    fn write(&self, w: &mut Self::Writer, (id, hash): (&[u8], &[u8; 16])) -> io::Result<()> {
        w.push(id, hash)
    }

    fn close(&self, w: Self::Writer) -> io::Result<()> {
        w.finish()?.flush()
    }

    #[inline(always)]
    fn cmp(&self, a: &IndexCursor, b: &IndexCursor) -> Ordering {
        match a.r.id().cmp(b.r.id()) {
            Ordering::Equal => a.r.hash().cmp(b.r.hash()),
            o => o,
        }
    }
}
