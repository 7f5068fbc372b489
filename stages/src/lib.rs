//! smelt's built-in transform and barrier stages.
//!
//! ```text
//! (html, content_type) ──extract | html_to_text──► text ──langid──► lang
//!   ──gopher_repetition, gopher_quality, c4, fineweb (filters/)──► kept rows
//!   ──dedup_exact | dedup_url | dedup_lines | dedup_sentences | dedup_minhash (dedup/, barriers)──► unique rows
//!   ──pii, toxicity, audit, back_translate (augment/)──► cleaned, audited, augmented rows
//!   ──classify (fastText scores, keep, percentile buckets)──► scored rows
//!   ──decontaminate (benchmark n-grams: drop, cut or annotate)──► rows without test data
//!   ──content_hash, tokenize──► content_hash, input_ids
//!   ──python, datatrove (python/: your own Python, datatrove's steps, in worker processes)──► rows
//! ```
//! Each stage is one file or folder: its config struct (`deny_unknown_fields`,
//! every field documented), its runtime struct, and its tests. A stage's
//! `configure(options, &ConfigureContext)` is its only way to learn the
//! pipeline and data directories and where named datasets live.

pub mod audit;
pub mod augment;
pub mod classify;
pub mod content_hash;
pub mod decontaminate;
pub mod dedup;
pub mod extract;
pub mod fetch;
pub mod filters;
pub mod html;
pub mod html_to_text;
pub mod langid;
pub mod pii;
mod prefetch;
pub mod python;
pub mod tokenize;
pub mod toxicity;

pub use extract::{explain_document, extract_document, ExplainedBlock, ExtractOptions, Extracted, SkipReason, Verdict};
