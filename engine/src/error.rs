//! Engine errors, by who is at fault (STYLE.md 7).

use crate::diagnostic::Diagnostics;

/// Errors of compiling and running pipelines.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The pipeline file has problems; every one is listed with its position.
    #[error("{0}")]
    Config(Diagnostics),

    /// The user asked for something that cannot be done; the message says what to change.
    #[error("{0}")]
    User(String),

    /// An input or output outside smelt failed (missing file, unreadable data,
    /// full disk, network).
    #[error("{0}")]
    External(String),

    /// A stage failed while processing.
    #[error("stage `{stage}`: {message}")]
    Stage {
        /// Stage name in the pipeline.
        stage: String,
        /// What failed.
        message: String,
    },

    /// Catalog or dataset storage failure.
    #[error(transparent)]
    Catalog(#[from] smelt_catalog::CatalogError),

    /// The run was cancelled (Ctrl-C); nothing was committed.
    #[error("cancelled")]
    Cancelled,

    /// A bug in smelt.
    #[error("internal error (this is a bug in smelt): {0}")]
    Internal(String),
}

impl EngineError {
    /// Wraps an error with the stage it happened in (keeps `External` and
    /// catalog errors' kind so callers can tell storage problems apart).
    pub fn in_stage(self, stage: &str) -> EngineError {
        match self {
            EngineError::Stage { .. } | EngineError::Cancelled | EngineError::Catalog(_) => self,
            other => EngineError::Stage { stage: stage.to_string(), message: other.to_string() },
        }
    }
}

impl From<arrow::error::ArrowError> for EngineError {
    fn from(e: arrow::error::ArrowError) -> Self {
        EngineError::Internal(format!("arrow: {e}"))
    }
}

/// Result alias for the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
