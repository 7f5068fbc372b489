//! Document indexes: the `(id, content_hash)` of every row of a split or of a
//! version, sorted by id, so that two versions are diffed by one merge join
//! that never reads the shards (the document diff of `smelt-query`).
//!
//! ```text
//! sink batches ──► RunBuilder (sorts in memory; past a budget spills sorted runs to temp files)
//!                     │  before the split's completion record
//!                     ▼
//!   runs/<run>/index/SSSSS.idx         one sorted run per split
//!                     │  commit_run: k-way merge, at most 64 runs at a time (more passes if needed)
//!                     ▼
//!   _versions/NNNNNN-<run>.idx         one sorted index per version, named in its manifest (`doc_index`)
//! ```
//! Memory stays flat: a builder holds at most its budget, a merge holds one
//! decoder and one entry per input run, a reader one entry.
//!
//! One file per part: `writer` and `reader` (the format), `run` (a
//! split's external sort), `merge` (index files as runs of smelt-sort's
//! k-way merge), `version` (the commit's version index), `storage` (index
//! files between dataset storage and local files) and `hashing`
//! (checksums they share); temporary directories are smelt-sort's
//! [`ScratchDir`].
//!
//! # File format (version 1)
//! ```text
//! header   b"SMELTDIX" | format: u32 LE (1) | flags: u32 LE (0)
//! body     one zstd frame (window ≤ 128 KiB) of
//!            record*  varint(suffix_len + 1) varint(shared) suffix hash[16]
//!            end      varint(0) varint(entries)
//! ```
//! `shared` is the number of leading id bytes the record shares with the
//! previous record's id (prefix coding: sorted ids share long prefixes; the
//! writer takes the longest common prefix, a reader accepts any), the id is
//! those bytes followed by `suffix`. Records are sorted by (id bytes,
//! hash); an id may repeat (a dataset may hold duplicate ids). Varints are
//! LEB128. The end record with the entry count makes a cut file an error
//! rather than a shorter index.

mod hashing;
mod merge;
mod reader;
mod run;
mod storage;
mod version;
mod writer;

#[cfg(test)]
mod tests;

pub use hashing::{HashingReader, HashingWriter};
pub use merge::merge_files;
pub use reader::DocIndexReader;
pub use run::{FinishedRun, RunBuilder};
pub use smelt_sort::ScratchDir;
pub use storage::{io_error, open_stored, put_run, OpenedIndex};
pub use version::{build_version_index, BaseIndex, BuiltIndex};
pub use writer::{encode_run, DocIndexWriter};

/// First bytes of every document index file.
pub const MAGIC: &[u8; 8] = b"SMELTDIX";
/// Format version written (and the newest one read).
pub const INDEX_FORMAT: u32 = 1;
/// zstd level of the indexes smelt stores. A negative ("fast") level keeps
/// zstd's matching but stores literals as they are: the random hashes and ids
/// hardly compress (level 3 saves about 20%), and reading then costs a third
/// of the time, which is what the diff is waiting on.
pub const DEFAULT_LEVEL: i32 = -1;
/// Runs merged at once; more runs take more passes.
pub const MERGE_FAN_IN: usize = 64;
/// Bytes a [`RunBuilder`] holds in memory before it spills a sorted run.
pub const DEFAULT_RUN_BUDGET: usize = 16 << 20;

const HEADER_LEN: usize = 16;
/// Longest document id an index holds (16 MiB): the writer refuses longer
/// ones, the reader refuses a length beyond it before allocating (a damaged
/// or foreign file must not make it reserve gigabytes; found by fuzzing).
pub const MAX_ID_BYTES: usize = 16 << 20;
/// zstd window of the writer: small, so that a 64-way merge decodes in a few MiB.
const WINDOW_LOG: u32 = 17;
/// Largest window a reader accepts.
const WINDOW_LOG_MAX: u32 = 22;
const WRITE_CHUNK: usize = 64 << 10;
/// Decoded bytes buffered per reader: room for a zstd block and the record it cuts.
const READ_CHUNK: usize = 192 << 10;
/// Compressed bytes read from the file at once.
const FILE_BUFFER: usize = 64 << 10;
/// Spills and intermediate merge passes.
const INTERMEDIATE_LEVEL: i32 = -1;
/// Names of the scratch directories of spills, merge passes and downloaded indexes.
pub const SCRATCH_PREFIX: &str = "smelt-docindex";

/// Path of split `split`'s sorted run, relative to the dataset root.
pub fn split_index_path(run_id: &str, split: u32) -> String {
    format!("runs/{run_id}/index/{split:05}.idx")
}

/// Path of a version's index, relative to the dataset root. The run id is in
/// the name because two committers may race for the same version number: the
/// loser must not overwrite the winner's index (the manifest is create-only,
/// the index cannot be: it is written first).
pub fn version_index_path(version: u64, run_id: &str) -> String {
    format!("_versions/{version:06}-{run_id}.idx")
}
