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
//! # File format (version 2; version 1 is still read)
//! ```text
//! header   b"SMELTDIX" | format: u32 LE (2) | restart_bytes: u32 LE
//! body     record*  varint(suffix_len + 1) varint(shared) suffix hash[16]
//! end      varint(0) varint(entries)
//! footer   restart_offset: u64 LE * n | end_offset: u64 LE | entries: u64 LE | n: u64 LE | b"SMELTDXF"
//! ```
//! `shared` is the number of leading id bytes the record shares with the
//! previous record's id (prefix coding: sorted ids share long prefixes; the
//! writer takes the longest common prefix, a reader accepts any), the id is
//! those bytes followed by `suffix`. Records are sorted by (id bytes,
//! hash); an id may repeat (a dataset may hold duplicate ids). Varints are
//! LEB128. The end record with the entry count makes a cut file an error
//! rather than a shorter index.
//!
//! **Restart points.** The first record, then the first record that starts
//! at least `restart_bytes` after the previous restart point, has
//! `shared = 0`: its whole id is there, so decoding can start at it. The
//! footer lists their file offsets, so a reader that maps the file finds
//! any id by a binary search over them and a short scan, and the document
//! diff splits two indexes into key ranges that threads join apart
//! ([`MappedIndex`]). The rule is part of the format: a streaming reader
//! knows which records must be restart points and checks the footer
//! against them.
//!
//! Format 1 has the format 2 body and end record in one zstd frame (window
//! ≤ 128 KiB), with `restart_bytes` 0 and no restart points or footer.

mod hashing;
mod mapped;
mod merge;
mod reader;
mod run;
mod storage;
mod version;
mod writer;

#[cfg(test)]
mod tests;

pub use hashing::{
    checksum_of, hash_file, Checksummer, HashingReader, HashingWriter, BLOCKS_PREFIX, CHECKSUM_BLOCK, WHOLE_PREFIX,
};
pub use mapped::{MappedIndex, MappedRecords};
pub use merge::merge_files;
pub use reader::DocIndexReader;
pub use run::{FinishedRun, RunBuilder};
pub use smelt_sort::ScratchDir;
pub use storage::{check_sum, io_error, open_stored, put_run, verify_file, OpenedIndex};
pub use version::{build_version_index, BaseIndex, BuiltIndex};
pub use writer::{encode_run, DocIndexWriter};

/// First bytes of every document index file.
pub const MAGIC: &[u8; 8] = b"SMELTDIX";
/// Format version written (and the newest one read): 2, the records as
/// they are, with restart points and a footer.
pub const INDEX_FORMAT: u32 = 2;
/// Last bytes of a format 2 file.
pub const FOOTER_MAGIC: &[u8; 8] = b"SMELTDXF";
/// Bytes of records between restart points that smelt writes: 64 KiB, so a
/// seek decodes at most that much and the footer costs 8 bytes per 64 KiB.
pub const RESTART_BYTES: u32 = 64 << 10;
/// Smallest `restart_bytes` a reader accepts (a damaged header must not make
/// it keep an offset per record).
pub const MIN_RESTART_BYTES: u32 = 4 << 10;
/// Format 1: the records in one zstd frame (smelt wrote it at level -1,
/// which stored the blocks as they were: a 2M-document index was 100.84 MB
/// with zstd and 100.84 MB without, and decoding it copied every byte once
/// more). Still read.
pub const FORMAT_ZSTD: u32 = 1;
/// Runs merged at once; more runs take more passes.
pub const MERGE_FAN_IN: usize = 64;
/// Bytes a [`RunBuilder`] holds in memory before it spills a sorted run.
pub const DEFAULT_RUN_BUDGET: usize = 16 << 20;

const HEADER_LEN: usize = 16;
/// Footer bytes after the restart offsets: end offset, entries, n, magic.
const FOOTER_TAIL: usize = 32;
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
