//! Sinks.
pub mod parquet;
