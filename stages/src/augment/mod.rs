//! Augmentation stages: new documents made from existing ones, emitted as
//! rows beside their originals.
//!
//! ```text
//! rows ──back_translate──► each row, then its back-translations (augmented_from = the row's id)
//!          │ backend: apertium (pool of local processes) | openai | libretranslate (HTTP, guarded)
//!          └ cache: <data dir>/cache/back_translate/<backend>/<model>/<from>-<to>.tsv
//! ```

pub mod apertium;
pub mod back_translate;
pub mod backend;
pub mod cache;
pub mod chunk;
pub mod http;
