//! Catalog errors, split by who is at fault (STYLE.md 7).

use std::path::PathBuf;

/// Errors of the catalog and of dataset storage.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The user asked for something that does not exist or is not allowed.
    #[error("{0}")]
    User(String),

    /// `smelt commit` found splits without a completion record.
    #[error("run {run_id} is not complete: {} of {total} splits have no completion record:\n{}\nrun the missing ranks again with the same --run-id, then commit", missing.len(), format_missing(missing))]
    IncompleteRun {
        /// The run being committed.
        run_id: String,
        /// Number of splits in the run's plan.
        total: usize,
        /// `(split index, split id)` of every split still missing.
        missing: Vec<(u32, String)>,
    },

    /// The sled index could not be opened (locked by another process, corrupt, ...).
    #[error("cannot open the catalog index at {path}: {message}")]
    Open {
        /// Where the sled database lives.
        path: PathBuf,
        /// What went wrong, with what to do about it.
        message: String,
    },

    /// Reading or writing dataset storage failed (disk full, permissions, network).
    #[error("storage error at {location}: {source}")]
    Storage {
        /// The URL or path being accessed.
        location: String,
        /// The underlying object_store error.
        #[source]
        source: object_store::Error,
    },

    /// The sled index failed.
    #[error("catalog index error: {0}")]
    Index(#[from] sled::Error),

    /// A file in dataset storage could not be decoded.
    #[error("corrupt catalog file {location}: {message}")]
    Corrupt {
        /// The file that failed to decode.
        location: String,
        /// The decoder's message.
        message: String,
    },

    /// A bug in smelt.
    #[error("internal error (this is a bug in smelt): {0}")]
    Internal(String),
}

fn format_missing(missing: &[(u32, String)]) -> String {
    const SHOWN: usize = 20;
    let mut out: Vec<String> = missing.iter().take(SHOWN).map(|(i, id)| format!("  split {i}: {id}")).collect();
    if missing.len() > SHOWN {
        out.push(format!("  ... and {} more", missing.len() - SHOWN));
    }
    out.join("\n")
}

/// Result alias for the catalog.
pub type Result<T, E = CatalogError> = std::result::Result<T, E>;
