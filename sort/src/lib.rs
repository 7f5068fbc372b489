//! External sorting with one k-way merge, for the document index (catalog)
//! and the dedup stages' record files (stages).
//!
//! ```text
//! push ──► SortBuffer (memory) ──budget──► scratch/run-NNNNNN (sorted, RunFormat) ─┐
//!              └───────────── finish: nothing spilled ──► sorted in memory ──────────┼──► out(record)
//!                                                                                    │
//! runs (n > fan-in) ──merge a group──► scratch/merge-NNNNNN ─┐                       │
//! rest of the runs ──────────────────────────────────────────┴─loser tree────────────┘
//! ```
//! One file per part: `merge` (the loser tree over [`SortedCursor`]s),
//! `format` (how a kind of run is written and read back), `passes`
//! (merging files with bounded fan-in), `external` (the budgeted buffer
//! and its spills), `records` (files of fixed-width byte records) and
//! `scratch` (temporary directories removed on drop).
//!
//! Everything is generic: a user's cursor, order and sink are inlined into
//! the merge loop, nothing is dispatched dynamically per record.

mod external;
mod format;
mod merge;
mod passes;
mod records;
mod scratch;

#[cfg(test)]
mod tests;

pub use external::{ExternalSort, SortBuffer};
pub use format::{Record, RunFormat};
pub use merge::{Merge, Order, SortedCursor};
pub use passes::merge_files;
pub use records::{FixedRecords, RecordFile, Records};
pub use scratch::ScratchDir;

/// Sorted files merged at once; more take intermediate passes.
pub const DEFAULT_FAN_IN: usize = 64;
