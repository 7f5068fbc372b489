//! smelt's built-in processing stages.
//!
//! ```text
//! (html, content_type) ──html_to_text──► text ──content_hash──► content_hash
//! ```
//! Each stage is one file: its config struct (`deny_unknown_fields`, every
//! field documented), its runtime struct, and its tests.

pub mod audit;
pub mod augment;
pub mod content_hash;
pub mod dedup;
pub mod extract;
pub mod filters;
pub mod html;
pub mod html_to_text;
pub mod langid;
pub mod pii;
pub mod tokenize;
pub mod toxicity;

pub use extract::{extract_document, ExtractOptions, Extracted, SkipReason};

static PIPELINE_DIR: std::sync::RwLock<Option<std::path::PathBuf>> = std::sync::RwLock::new(None);

/// Sets the directory that relative file options of the stages configured
/// next (`tokenize`'s `tokenizer`, `langid`'s `model`, `toxicity`'s `lists`
/// and `url_blocklist`) are resolved against: the pipeline file's, as for
/// source paths. Unset, they are relative to the working directory.
pub fn set_pipeline_dir(dir: &std::path::Path) {
    *PIPELINE_DIR.write().unwrap_or_else(|p| p.into_inner()) = Some(dir.to_path_buf());
}

/// `path` resolved against the directory given to [`set_pipeline_dir`].
pub fn resolve_path(path: &std::path::Path) -> std::path::PathBuf {
    match PIPELINE_DIR.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path.to_path_buf(),
    }
}

static DATA_DIR: std::sync::RwLock<Option<std::path::PathBuf>> = std::sync::RwLock::new(None);

/// Sets smelt's data directory (`--data-dir`), under which stages keep
/// state that outlives a run (`back_translate`'s translation cache).
pub fn set_data_dir(dir: &std::path::Path) {
    *DATA_DIR.write().unwrap_or_else(|p| p.into_inner()) = Some(dir.to_path_buf());
}

/// The directory given to [`set_data_dir`], if any.
pub fn data_dir() -> Option<std::path::PathBuf> {
    DATA_DIR.read().unwrap_or_else(|e| e.into_inner()).clone()
}
