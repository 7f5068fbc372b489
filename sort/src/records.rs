//! Files of fixed-width records that compare as bytes (fields stored
//! big-endian sort as their values): the cursor, the run format and the
//! in-memory buffer of an external sort of `[u8; N]`.
//!
//! ```text
//! [u8; N]* ──FixedRecords (sort_unstable)──► Records::write ──► file of N-byte records
//! file ──RecordFile (64 KiB buffer, one record)──► record() ──► &[u8]
//! ```

use std::cmp::Ordering;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::external::SortBuffer;
use crate::format::{Record, RunFormat};
use crate::merge::SortedCursor;

/// The io error `e` of `path`, naming the file.
fn with_path(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Reads a file of `width`-byte records, one at a time (errors name the file).
pub struct RecordFile {
    path: PathBuf,
    r: BufReader<File>,
    cur: Vec<u8>,
}

impl RecordFile {
    /// Opens `path`; checks that it holds a whole number of records.
    ///
    /// # Errors
    /// The file cannot be read, or is cut (`InvalidData`).
    pub fn open(path: PathBuf, width: usize) -> io::Result<Self> {
        let f = File::open(&path).map_err(|e| with_path(&path, e))?;
        let len = f.metadata().map_err(|e| with_path(&path, e))?.len();
        if len % width as u64 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: truncated ({len} bytes is not a whole number of {width}-byte records)", path.display()),
            ));
        }
        Ok(RecordFile { path, r: BufReader::with_capacity(1 << 16, f), cur: vec![0; width] })
    }

    /// The current record.
    #[inline(always)]
    pub fn record(&self) -> &[u8] {
        &self.cur
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl SortedCursor for RecordFile {
    #[inline(always)]
    fn advance(&mut self) -> io::Result<bool> {
        match self.r.read_exact(&mut self.cur) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(with_path(&self.path, e)),
        }
    }
}

/// Runs of `width`-byte records ordered as bytes.
#[derive(Debug, Clone, Copy)]
pub struct Records {
    /// Bytes per record.
    pub width: usize,
}

impl RunFormat for Records {
    type Cursor = RecordFile;
    type Record<'a> = &'a [u8];
    type Writer = (BufWriter<File>, PathBuf);

    fn open(&self, path: &Path) -> io::Result<RecordFile> {
        RecordFile::open(path.to_path_buf(), self.width)
    }

    fn create(&self, path: &Path) -> io::Result<Self::Writer> {
        let f = File::create(path).map_err(|e| with_path(path, e))?;
        Ok((BufWriter::with_capacity(1 << 16, f), path.to_path_buf()))
    }

    #[inline(always)]
    fn record<'a>(&self, cursor: &'a RecordFile) -> &'a [u8] {
        cursor.record()
    }

    #[inline(always)]
    fn write(&self, w: &mut Self::Writer, rec: &[u8]) -> io::Result<()> {
        w.0.write_all(rec).map_err(|e| with_path(&w.1, e))
    }

    fn close(&self, mut w: Self::Writer) -> io::Result<()> {
        w.0.flush().map_err(|e| with_path(&w.1, e))
    }

    #[inline(always)]
    fn cmp(&self, a: &RecordFile, b: &RecordFile) -> Ordering {
        a.record().cmp(b.record())
    }
}

/// `N`-byte records in memory, sorted as bytes.
#[derive(Debug, Default)]
pub struct FixedRecords<const N: usize>(Vec<[u8; N]>);

impl<const N: usize> FixedRecords<N> {
    /// An empty buffer.
    pub fn new() -> Self {
        FixedRecords(Vec::new())
    }
}

impl<const N: usize> SortBuffer for FixedRecords<N> {
    type Format = Records;
    type Item<'a> = [u8; N];

    #[inline(always)]
    fn push(&mut self, item: [u8; N]) {
        self.0.push(item);
    }

    #[inline(always)]
    fn bytes(&self) -> usize {
        self.0.len() * N
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn drain_sorted<E>(&mut self, mut out: impl FnMut(Record<'_, Records>) -> Result<(), E>) -> Result<(), E> {
        self.0.sort_unstable();
        for r in &self.0 {
            out(r.as_slice())?;
        }
        self.0.clear();
        Ok(())
    }
}
