//! smelt's sources and sinks.
//!
//! ```text
//! local files / globs ──files::list_files──► splits
//!   warc (WARC/WET, gzip per record or whole file) ─┐
//!   jsonl (.jsonl, .jsonl.gz)                        ├─► document batches ──► ... ──► parquet sink ──► encoded shards
//!   parquet                                         ─┤
//! http(s):// or s3:// ──net: retries, politeness,    │
//!                        range-request resume        │
//!   commoncrawl, commoncrawl_news (same WARC reader) ─┤
//!   rss (feed-rs; linked pages as HTML)             ─┘
//! ```
//! Every source counts and logs bad records (with file and offset) and carries on.

pub mod files;
pub mod net;
pub mod sink;
pub mod source;
pub mod warc;
