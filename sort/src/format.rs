//! How one kind of sorted run is written and read back: what the spills and
//! the merge passes need of a file format.
//!
//! ```text
//! records ──create/write/close──► run file ──open──► Cursor ──record──► Record<'_> ──write──► next run or out
//! ```

use std::cmp::Ordering;
use std::io;
use std::path::Path;

use crate::merge::SortedCursor;

/// A file format of sorted runs.
pub trait RunFormat {
    /// Reads a run back, one record at a time.
    type Cursor: SortedCursor;
    /// A record, borrowed from a cursor or a buffer.
    type Record<'a>;
    /// Writes a run.
    type Writer;

    /// Opens a run for reading (errors name the file).
    ///
    /// # Errors
    /// The file cannot be opened or is not a run of this format.
    fn open(&self, path: &Path) -> io::Result<Self::Cursor>;

    /// Creates a run.
    ///
    /// # Errors
    /// The file cannot be created.
    fn create(&self, path: &Path) -> io::Result<Self::Writer>;

    /// The cursor's current record.
    fn record<'a>(&self, cursor: &'a Self::Cursor) -> Self::Record<'a>;

    /// Appends a record (records come in order).
    ///
    /// # Errors
    /// Write failures.
    fn write(&self, w: &mut Self::Writer, rec: Self::Record<'_>) -> io::Result<()>;

    /// Ends a run and flushes it.
    ///
    /// # Errors
    /// Write failures.
    fn close(&self, w: Self::Writer) -> io::Result<()>;

    /// The order of two cursors' current records.
    fn cmp(&self, a: &Self::Cursor, b: &Self::Cursor) -> Ordering;
}

/// A record of format `F`.
pub type Record<'a, F> = <F as RunFormat>::Record<'a>;
