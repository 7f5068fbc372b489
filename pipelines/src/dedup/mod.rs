//! Deduplication stages. They are barriers (DESIGN.md): a document can only
//! be kept or dropped once every split of the run has been seen.
//!
//! ```text
//! dedup_exact    by content_hash      ─┐
//! dedup_url      by normalised URL    ─┴─► exact.rs (sorted key files, k-way merge)
//! dedup_minhash  near duplicates      ───► minhash.rs (signatures, LSH bands, union-find)
//! dedup_lines    repeated lines       ───► lines.rs (sorted line-hash files, k-way merge)
//! against:       earlier versions     ───► against.rs (band indexes stored with a version)
//! ```

pub mod against;
pub mod exact;
pub mod lines;
pub mod minhash;
mod minhash_tables;

use std::io::Read;
use std::path::Path;

use smelt_engine::EngineError;

/// A file error of a dedup stage's scratch files, naming the file.
pub(crate) fn io(path: &Path, e: std::io::Error) -> EngineError {
    EngineError::External(format!("{}: {e}", path.display()))
}

/// The next fixed-size record of a sorted run file; `None` at its end.
pub(crate) fn read_record<const N: usize>(r: &mut impl Read) -> std::io::Result<Option<[u8; N]>> {
    let mut b = [0u8; N];
    match r.read_exact(&mut b) {
        Ok(()) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// A barrier context over `dir` with both directories created, for stage tests.
#[cfg(test)]
pub(crate) fn test_context(dir: &Path) -> smelt_engine::BarrierContext {
    let ctx = smelt_engine::BarrierContext {
        observed_dir: dir.join("observed"),
        resolved_dir: dir.join("resolved"),
        memory_budget: 1 << 20,
        parallelism: 1,
    };
    std::fs::create_dir_all(&ctx.observed_dir).unwrap();
    std::fs::create_dir_all(&ctx.resolved_dir).unwrap();
    ctx
}
