//! Reading WARC files (WARC, WET and WAT; WARC/0.17 to 1.1) and Internet
//! Archive ARC files (v1, v2; read as the WARC records they stand for): a fast
//! reader that never stops on bad input.
//!
//! ```text
//!  file ──read 8 MiB window──▶ Input ──┬─ gzip member ≤ 4 MiB ─▶ libdeflate (whole member) ─┐
//!  (gzip detected by magic)            ├─ bigger / corrupt ────▶ flate2 (streaming)        ─┼─▶ decoded buffer ─▶ record parser ─▶ WarcRecord
//!                                      └─ uncompressed ──────────────────────────(copy)   ─┘   (BytesMut; blocks      (headers, block as a
//!                                                                                                 are Bytes slices)     `Bytes` slice)
//! ```
//!
//! * [`WarcReader`] walks a local file record by record. Common Crawl writes one
//!   gzip member per record: each member is inflated in one call by libdeflate
//!   straight from the in-memory window, which also says where the next member
//!   starts (that offset is the record's [`RecordLocation`], the CDX `offset`).
//!   Members too large for the window (a whole-file gzip of a big WET file, say)
//!   are inflated in pieces, so memory stays bounded by the window plus the
//!   largest record.
//! * Problems are reported per record as a [`RecordError`] (kind, location,
//!   message) and reading carries on: a corrupt member is skipped up to the next
//!   member that verifiably decodes, garbage between records is skipped up to the
//!   next `WARC/` line. Each problem is reported once.
//! * [`parse_http_response`] splits a `response` record's block into status,
//!   headers and body without copying.
//!
//! ```no_run
//! use smelt_connectors::warc::{parse_http_response, WarcReader};
//! # fn main() -> std::io::Result<()> {
//! let mut reader = WarcReader::open("CC-MAIN-x.warc.gz".as_ref())?;
//! for item in &mut reader {
//!     match item {
//!         Ok(record) if record.warc_type() == Some("response") => {
//!             if let Some(http) = parse_http_response(&record.block) {
//!                 println!("{} {} {} bytes", record.location, http.status, http.body.len());
//!             }
//!         }
//!         Ok(_) => {}
//!         Err(e) => eprintln!("skipped: {e}"),
//!     }
//! }
//! # Ok(()) }
//! ```

mod arc;
mod http;
mod inflate;
mod input;
mod reader;

pub use http::{parse_http_response, HttpResponse};
pub(crate) use reader::Source;
pub use reader::{RecordError, RecordErrorKind, RecordLocation, WarcReader, WarcRecord, DEFAULT_MAX_BLOCK_LEN};

#[cfg(test)]
mod tests;
