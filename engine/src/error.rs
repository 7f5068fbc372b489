//! Engine errors, by who is at fault: the user (a pipeline or input to
//! change, exit code 2), something outside smelt (storage, network; the only
//! faults a stage's `retries:` retries) or smelt itself (a bug).

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

    /// A stage failed while processing; `fault` is the class of the error it
    /// returned, kept through the stage boundary.
    #[error("{}stage `{stage}`: {}{message}", at.as_ref().map(|a| format!("{a}: ")).unwrap_or_default(), if *fault == Fault::Internal { "internal error (this is a bug in smelt): " } else { "" })]
    Stage {
        /// Stage name in the pipeline.
        stage: String,
        /// Who is at fault.
        fault: Fault,
        /// What failed.
        message: String,
        /// `file:line:column` of the stage in the pipeline file, once known.
        at: Option<String>,
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

/// Who is at fault for an error, which decides what happens next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fault {
    /// The pipeline or its inputs must change: not retried, exit code 2.
    User,
    /// Storage, network or another process failed: retried per `retries:`.
    External,
    /// A bug in smelt: not retried, reported as one.
    Internal,
}

impl EngineError {
    /// Wraps an error with the stage it happened in, keeping its fault class.
    /// Catalog errors (the dataset's storage, not the stage's) and
    /// cancellation pass unchanged, as does an error already wrapped.
    pub fn in_stage(self, stage: &str) -> EngineError {
        let fault = match &self {
            EngineError::Stage { .. } | EngineError::Cancelled | EngineError::Catalog(_) => return self,
            EngineError::Config(_) | EngineError::User(_) => Fault::User,
            EngineError::External(_) => Fault::External,
            EngineError::Internal(_) => Fault::Internal,
        };
        let message = match self {
            EngineError::Internal(m) | EngineError::User(m) | EngineError::External(m) => m,
            other => other.to_string(),
        };
        EngineError::Stage { stage: stage.to_string(), fault, message, at: None }
    }

    /// Who is at fault ([`Fault`]); catalog errors are external, cancellation
    /// is the user's.
    pub fn fault(&self) -> Fault {
        match self {
            EngineError::Config(_) | EngineError::User(_) | EngineError::Cancelled => Fault::User,
            EngineError::External(_) => Fault::External,
            EngineError::Catalog(smelt_catalog::CatalogError::User(_)) => Fault::User,
            EngineError::Catalog(_) => Fault::External,
            EngineError::Stage { fault, .. } => *fault,
            EngineError::Internal(_) => Fault::Internal,
        }
    }

    /// Whether running the failed work again may succeed: external faults only.
    pub fn retryable(&self) -> bool {
        self.fault() == Fault::External
    }

    /// Adds the stage's position in the pipeline file (`file:line:column`)
    /// to a stage error, found by its name in `pipeline`.
    pub fn located(self, pipeline: &crate::Pipeline) -> EngineError {
        match self {
            EngineError::Stage { stage, fault, message, at: None } => {
                let at = pipeline.locate(&stage);
                EngineError::Stage { stage, fault, message, at }
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fault_class_survives_the_stage_boundary() {
        let user = EngineError::User("`lists` names no file".into()).in_stage("clean");
        assert_eq!(user.fault(), Fault::User);
        assert!(!user.retryable());
        assert_eq!(user.to_string(), "stage `clean`: `lists` names no file");
        let external = EngineError::External("connection reset".into()).in_stage("fetch");
        assert!(external.retryable());
        let bug = EngineError::Internal("index out of range".into()).in_stage("dedup");
        assert_eq!(bug.fault(), Fault::Internal);
        assert_eq!(bug.to_string(), "stage `dedup`: internal error (this is a bug in smelt): index out of range");
        // Wrapping twice keeps the innermost stage.
        assert_eq!(
            bug.in_stage("outer").to_string(),
            "stage `dedup`: internal error (this is a bug in smelt): index out of range"
        );
    }
}

impl From<arrow::error::ArrowError> for EngineError {
    fn from(e: arrow::error::ArrowError) -> Self {
        EngineError::Internal(format!("arrow: {e}"))
    }
}

/// Result alias for the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
