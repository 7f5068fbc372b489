//! smelt's built-in processing stages.
//!
//! ```text
//! (html, content_type) ──html_to_text──► text ──content_hash──► content_hash
//! ```
//! Each stage is one file: its config struct (`deny_unknown_fields`, every
//! field documented), its runtime struct, and its tests.

pub mod content_hash;
pub mod dedup;
pub mod extract;
pub mod filters;
pub mod html;
pub mod html_to_text;
pub mod pii;
pub mod toxicity;
pub mod tokenize;
pub mod langid;

pub use extract::{extract_document, ExtractOptions, Extracted, SkipReason};
