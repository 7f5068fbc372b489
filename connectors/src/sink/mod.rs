//! Sinks.
pub mod compact;
pub mod parquet;
