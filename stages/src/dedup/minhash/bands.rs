//! Band records: sorted per split and band, then merged across the splits
//! into candidate pairs.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use smelt_engine::Result;

use super::format::{be_u64, dense, tmp_path, Layout};
use crate::dedup::{io, Merge};

pub(super) fn band_path(dir: &Path, split: u32, band: usize) -> PathBuf {
    dir.join(format!("{split:06}.b{band:03}"))
}

/// A sorted run an observer spilled before its split ended.
pub(super) fn run_path(dir: &Path, split: u32, band: usize, run: u32) -> PathBuf {
    dir.join(format!("{split:06}.b{band:03}.r{run:05}"))
}

/// A preference as a u64 that sorts as the i64 does (smaller stays).
pub(super) fn pref_key(pref: i64) -> u64 {
    (pref as u64) ^ (1 << 63)
}

fn pref_of(key: u64) -> i64 {
    (key ^ (1 << 63)) as i64
}

// Band records. One record per document and band: the band's
// `hashes_per_bucket` values, the preference key, the node; `width` u64 in
// all, stored big-endian (80 bytes for 8 rows), so records compare as bytes
// as they do as u64 sequences: a sorted band is in datatrove's order: the values compared
// as tuples, then (with equal preferences, as in `datatrove` and `first`)
// split and row, datatrove's (file, document).

/// Sorts the records of `buf` (each `width` u64) and writes them to `path`
/// (a temporary file renamed into place).
pub(super) fn write_sorted(buf: &[u64], width: usize, path: &Path) -> Result<()> {
    let n = buf.len() / width;
    let rec = |i: u32| &buf[i as usize * width..(i as usize + 1) * width];
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.sort_unstable_by(|&a, &b| rec(a).cmp(rec(b)));
    let tmp = tmp_path(path);
    let mut w = BufWriter::with_capacity(1 << 16, File::create(&tmp).map_err(|e| io(&tmp, e))?);
    for &i in &order {
        write_record(&mut w, rec(i)).map_err(|e| io(&tmp, e))?;
    }
    w.flush().map_err(|e| io(&tmp, e))?;
    drop(w);
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))
}

fn write_record(w: &mut impl Write, rec: &[u64]) -> std::io::Result<()> {
    let mut bytes = [0u8; 8 * 64];
    let mut at = 0;
    for chunk in rec.chunks(64) {
        for (j, v) in chunk.iter().enumerate() {
            bytes[j * 8..j * 8 + 8].copy_from_slice(&v.to_be_bytes());
        }
        w.write_all(&bytes[..chunk.len() * 8])?;
        at += chunk.len();
    }
    debug_assert_eq!(at, rec.len());
    Ok(())
}

/// Merges band `band` of every split in datatrove's order and writes a pair
/// per two neighbours with equal values (datatrove's `MinhashDedupBuckets`:
/// (previous, current), so a key shared by a, b, c gives a~b, b~c) to `out`:
/// (dense index u64, preference i64) twice, 32 bytes. Returns the number of pairs.
pub(super) fn merge_band(dir: &Path, layout: &Layout, band: usize, width: usize, out: &Path) -> Result<u64> {
    let paths = layout.iter().map(|l| band_path(dir, l.0, band)).zip(0..);
    let mut merge = Merge::open(paths, width * 8, width * 8)?;
    let values = (width - 2) * 8;
    let (pref, node) = (|r: &[u8]| pref_of(be_u64(&r[values..values + 8])), |r: &[u8]| be_u64(&r[values + 8..]));
    let mut w = BufWriter::with_capacity(1 << 16, File::create(out).map_err(|e| io(out, e))?);
    let mut prev: Vec<u8> = Vec::with_capacity(width * 8);
    let mut pairs = 0;
    while let Some((cur, _)) = merge.peek() {
        if !prev.is_empty() && prev[..values] == cur[..values] {
            let mut rec = [0u8; 32];
            rec[..8].copy_from_slice(&dense(layout, node(&prev))?.to_le_bytes());
            rec[8..16].copy_from_slice(&pref(&prev).to_le_bytes());
            rec[16..24].copy_from_slice(&dense(layout, node(cur))?.to_le_bytes());
            rec[24..].copy_from_slice(&pref(cur).to_le_bytes());
            w.write_all(&rec).map_err(|e| io(out, e))?;
            pairs += 1;
        }
        prev.clear();
        prev.extend_from_slice(cur);
        merge.pop()?;
    }
    w.flush().map_err(|e| io(out, e))?;
    Ok(pairs)
}
