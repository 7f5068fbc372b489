//! What the stage's scratch files share: fixed-width fields, paths, and the
//! addresses of documents (node: split and row; dense: across the run).

use std::path::{Path, PathBuf};

use smelt_engine::{EngineError, Result};

pub(super) fn le_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b.try_into().expect("8 bytes"))
}
pub(crate) fn be_u64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b.try_into().expect("8 bytes"))
}
pub(super) fn le_i64(b: &[u8]) -> i64 {
    i64::from_le_bytes(b.try_into().expect("8 bytes"))
}
pub(super) fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b.try_into().expect("4 bytes"))
}

pub(super) fn stats_path(dir: &Path, split: u32) -> PathBuf {
    dir.join(format!("{split:06}.stats"))
}

/// `path` with `.tmp` appended (written, then renamed into place).
pub(super) fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// A document across the run: split in the top 24 bits, row in the low 40.
pub(super) fn node(split: u32, row: u64) -> Result<u64> {
    if split >= 1 << 24 || row >= 1 << 40 {
        return Err(EngineError::User(format!(
            "dedup_minhash handles up to 2^24 splits of 2^40 rows (split {split}, row {row})"
        )));
    }
    Ok((u64::from(split) << 40) | row)
}

/// Per split of the run, in order: (split, documents, dense index of its first row).
pub(super) type Layout = Vec<(u32, u64, u64)>;

/// The dense index of a node: documents numbered across the run's splits in order.
pub(super) fn dense(layout: &Layout, node: u64) -> Result<u64> {
    let (split, row) = ((node >> 40) as u32, node & ((1 << 40) - 1));
    match layout.binary_search_by_key(&split, |l| l.0) {
        Ok(i) if row < layout[i].1 => Ok(layout[i].2 + row),
        _ => {
            Err(EngineError::Internal(format!("dedup_minhash: split {split} row {row} is not in the observed splits")))
        }
    }
}
