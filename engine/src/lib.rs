//! smelt's engine: the pipeline model, its compiler and the executor.
//!
//! ```text
//! pipeline.yaml ──yaml──► Node tree ──compile (no I/O)──► Pipeline (petgraph DAG, schemas per edge)
//!                                                            │ exec::run (rank R of W)
//!                                                            ▼
//!   splits ──► sources ─► transforms ─► sink ──► shards + completion records in dataset storage
//!                                                            │ smelt_catalog::commit_run
//!                                                            ▼
//!                                                      dataset version
//! ```

pub mod annotate;
pub mod backoff;
pub mod blocking;
pub mod channel;
pub mod compile;
pub mod diagnostic;
pub mod error;
pub mod exec;
pub mod graph;
pub mod guard;
pub mod rowhash;
pub mod schedule;
pub mod schema;
pub mod stage;
pub mod upstream;
pub mod yaml;

pub use compile::{compile, Pipeline, StageNode};
pub use diagnostic::{Diagnostic, Diagnostics, Pos};
pub use error::{EngineError, Fault, Result};
pub use exec::{
    committed_inputs, group_stats, list_splits, list_splits_since, list_upstream, run, sample, Progress, RetryNote,
    RunOptions, RunReport, SampleReport,
};
pub use graph::{render, GraphFormat};
pub use schedule::{Interval, Schedule, StagePolicy};
pub use stage::*;
