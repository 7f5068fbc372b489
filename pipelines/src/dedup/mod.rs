//! Deduplication stages. They are barriers (DESIGN.md): a document can only
//! be kept or dropped once every split of the run has been seen.
//!
//! ```text
//! dedup_exact    by content_hash      ─┐
//! dedup_url      by normalised URL    ─┴─► exact.rs (sorted key files, k-way merge)
//! dedup_minhash  near duplicates      ───► minhash.rs (signatures, LSH bands, union-find)
//! dedup_lines    repeated lines       ───► lines.rs (sorted line-hash files, k-way merge)
//! ```

pub mod exact;
pub mod lines;
pub mod minhash;
mod minhash_tables;
