//! Sinks.
pub mod compact;
pub mod incremental;
pub mod parquet;
