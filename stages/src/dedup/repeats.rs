//! Pieces of text repeated across a run, the shared machinery of
//! `dedup_lines` (a piece is a line) and `dedup_sentences` (a piece is a
//! window of consecutive sentences).
//!
//! ```text
//! observe, per split:  (key, row, part) per counted piece ──sort──► observed/<split>.<ext>
//! resolve, once:       k-way merge of every split's file by (key, split, row, part);
//!                      per key seen more than `limit` times, its removed occurrences
//!                      ──► resolved/drops.bin + drops.idx, sorted by (split, row, part)
//! apply, per split:    [`read`] its removed (row, part) pairs, in order
//! ```
//! Memory is bounded by `memory_budget`: an observer buffers its share and
//! spills sorted runs past it; the global step holds one buffered reader per
//! split file, the first `limit + 1` occurrences of the key being merged, and
//! the removed occurrences up to half the budget (then sorted runs).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{io, DropsWriter, ExternalSort, Merge};
use smelt_engine::{BarrierContext, Result};

/// One observed piece: its key, row and number in the row. 20 bytes on disk,
/// big-endian, so records sort as (key, row, part).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Entry {
    pub key: u64,
    pub row: u64,
    pub part: u32,
}

const ENTRY_BYTES: usize = 20;

impl Entry {
    fn bytes(&self) -> [u8; ENTRY_BYTES] {
        let mut b = [0u8; ENTRY_BYTES];
        b[..8].copy_from_slice(&self.key.to_be_bytes());
        b[8..16].copy_from_slice(&self.row.to_be_bytes());
        b[16..].copy_from_slice(&self.part.to_be_bytes());
        b
    }

    fn from_bytes(b: &[u8]) -> Entry {
        Entry {
            key: u64::from_be_bytes(b[..8].try_into().expect("8 bytes")),
            row: u64::from_be_bytes(b[8..16].try_into().expect("8 bytes")),
            part: u32::from_be_bytes(b[16..20].try_into().expect("4 bytes")),
        }
    }
}

fn observed_path(ctx: &BarrierContext, split: u32, ext: &str) -> PathBuf {
    ctx.observed_dir.join(format!("{split:06}.{ext}"))
}

/// One split's observed pieces, buffered within the observer's share of the
/// budget and written sorted by [`Observed::finish`].
pub(crate) struct Observed {
    path: PathBuf,
    entries: ExternalSort<ENTRY_BYTES>,
}

impl Observed {
    pub(crate) fn new(ctx: &BarrierContext, split: u32, ext: &str) -> Self {
        let path = observed_path(ctx, split, ext);
        Observed { entries: ExternalSort::new(path.clone(), ctx.observer_share()), path }
    }

    pub(crate) fn push(&mut self, e: Entry) -> Result<()> {
        self.entries.push(e.bytes())
    }

    /// Writes the split's file, sorted (through a temporary name).
    pub(crate) fn finish(&mut self) -> Result<()> {
        let entries = std::mem::replace(&mut self.entries, ExternalSort::new(self.path.clone(), 0));
        let tmp = self.path.with_extension("tmp");
        let mut w = BufWriter::new(File::create(&tmp).map_err(|e| io(&tmp, e))?);
        entries.finish(|rec| w.write_all(rec).map_err(|e| io(&tmp, e)))?;
        w.flush().map_err(|e| io(&tmp, e))?;
        drop(w);
        std::fs::rename(&tmp, &self.path).map_err(|e| io(&self.path, e))
    }
}

/// What [`resolve`] found.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Repeats {
    /// Distinct keys.
    pub distinct: u64,
    /// Keys seen more than `limit` times.
    pub frequent: u64,
    /// Occurrences removed.
    pub removed: u64,
    /// Sorted runs the removed occurrences spilled to.
    pub spilled: u64,
}

impl Repeats {
    /// The counters under the stage's names for a piece (`lines`, `spans`).
    pub(crate) fn counters(&self, piece: &str) -> BTreeMap<String, u64> {
        let mut c = BTreeMap::from([
            (format!("distinct_{piece}"), self.distinct),
            (format!("frequent_{piece}"), self.frequent),
            (format!("duplicate_{piece}"), self.removed),
        ]);
        if self.spilled > 0 {
            c.insert("spilled_runs".to_string(), self.spilled);
        }
        c
    }
}

/// Merges the splits' files (`ext`) and writes the removed occurrences: every
/// occurrence of a key seen more than `limit` times in (key, split, row,
/// part) order, but the first with `keep_first`.
pub(crate) fn resolve(
    ctx: &BarrierContext,
    splits: &[u32],
    ext: &str,
    limit: u64,
    keep_first: bool,
) -> Result<Repeats> {
    let files = splits.iter().map(|&split| (observed_path(ctx, split, ext), split));
    let mut merge = Merge::open(files, ENTRY_BYTES, 8)?;
    // Removed occurrences, sorted by (split, row, part) out of core.
    let mut drops = ExternalSort::<16>::new(ctx.resolved_dir.join("drops"), ctx.memory_budget / 2);
    let removed = |(split, row, part): (u32, u64, u32)| {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&split.to_be_bytes());
        b[4..12].copy_from_slice(&row.to_be_bytes());
        b[12..].copy_from_slice(&part.to_be_bytes());
        b
    };
    let mut r = Repeats::default();
    // The first occurrences of the current key, until it has more than
    // `limit`; then it is frequent and every occurrence goes to `drops`
    // (but the first with `keep_first`).
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let skip = usize::from(keep_first);
    let mut group: Vec<(u32, u64, u32)> = Vec::new();
    let mut is_frequent = false;
    let mut last = None;
    while let Some((rec, split)) = merge.peek() {
        let Entry { key, row, part } = Entry::from_bytes(rec);
        if last != Some(key) {
            group.clear();
            is_frequent = false;
            r.distinct += 1;
            last = Some(key);
        }
        if is_frequent {
            drops.push(removed((split, row, part)))?;
            r.removed += 1;
        } else {
            group.push((split, row, part));
            if group.len() > limit {
                is_frequent = true;
                r.frequent += 1;
                for &d in &group[skip..] {
                    drops.push(removed(d))?;
                    r.removed += 1;
                }
                group.clear();
            }
        }
        merge.pop()?;
    }
    r.spilled = drops.runs() as u64;
    let mut w = DropsWriter::create(&ctx.resolved_dir)?;
    drops.finish(|rec| w.push(rec))?;
    w.finish()?;
    Ok(r)
}

/// The sorted removed (row, part) pairs of one split.
pub(crate) fn read(dir: &Path, split: u32) -> Result<Vec<(u64, u32)>> {
    Ok(super::read_drops(dir, split, 16)?
        .chunks_exact(16)
        .map(|c| {
            (u64::from_be_bytes(c[4..12].try_into().expect("8")), u32::from_be_bytes(c[12..].try_into().expect("4")))
        })
        .collect())
}
