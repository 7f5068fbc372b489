//! The frames between smelt and a Python worker (`python/smelt_data/worker.py`
//! is the other end): a kind byte, the payload's length as 8 bytes little
//! endian, the payload.
//!
//! ```text
//! smelt ──C config (JSON)────────────► worker ──R ready | E error (JSON)
//! smelt ──B batches (Arrow IPC stream)► worker ──B result (Arrow IPC stream) | E error (JSON)
//! smelt ──M batch in shared memory───► worker ──B result | E error
//! ```
//! An `M` frame's payload is the IPC stream's length, the shared buffer's
//! size and which of the worker's buffers it is, 8 bytes little endian each;
//! the stream is at the start of the buffer (shm.rs). Workers started with a shared buffer get `M`
//! frames; `B` frames serve where the system has no memfd. The stream smelt
//! sends holds the rows of one call (consecutive batches of a split:
//! `batch_rows`), as one record batch (joined.rs) or, for column types that
//! are not joined there, as several that the worker treats as one; its result
//! batch has the rows of all of them, in order.
//! A result batch holds the columns that changed or were added, and
//! [`DROP_COLUMN`] when rows are dropped: strings (each row's reason, null
//! keeps it), or booleans (true drops) with the one reason in the field's
//! metadata [`REASON_KEY`]; its schema metadata [`USER_NS_KEY`] is the time
//! it spent in user code.

use std::io::{self, Read, Write};

use arrow::datatypes::Schema;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use serde::Deserialize;

/// Bytes before a frame's payload.
pub const HEADER: usize = 9;

/// The column of a result batch that holds each row's drop reason (null: kept).
pub const DROP_COLUMN: &str = "__smelt_drop__";

/// The field metadata key of a boolean [`DROP_COLUMN`]: the reason of every row it drops.
pub const REASON_KEY: &str = "smelt.reason";

/// The result batch's schema metadata key of the nanoseconds the batch spent in user code.
pub const USER_NS_KEY: &str = "smelt.user_ns";

/// Longest payload accepted (a corrupt header must not make smelt allocate terabytes).
const MAX_PAYLOAD: u64 = 1 << 36;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// smelt -> worker, first: the stage's configuration (JSON).
    Config,
    /// Either way: one Arrow record batch as an IPC stream.
    Batch,
    /// worker -> smelt: set up, waiting for batches (JSON).
    Ready,
    /// worker -> smelt: an exception (JSON, [`PyError`]).
    Error,
    /// smelt -> worker: one Arrow record batch as an IPC stream in the shared buffer.
    Shared,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Config => b'C',
            Kind::Batch => b'B',
            Kind::Ready => b'R',
            Kind::Error => b'E',
            Kind::Shared => b'M',
        }
    }

    fn from_byte(b: u8) -> Option<Kind> {
        [Kind::Config, Kind::Batch, Kind::Ready, Kind::Error, Kind::Shared].into_iter().find(|k| k.byte() == b)
    }
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Its kind.
    pub kind: Kind,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// A frame's bytes: header and payload.
pub fn encode_frame(kind: Kind, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.push(kind.byte());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Writes one frame.
///
/// # Errors
/// The pipe is closed.
pub fn write_frame(w: &mut impl Write, kind: Kind, payload: &[u8]) -> io::Result<()> {
    w.write_all(&encode_frame(kind, payload))?;
    w.flush()
}

/// Reads one frame; `None` at the end of input between frames.
///
/// # Errors
/// Input that ends inside a frame, an unknown kind, a length past the limit.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<Frame>> {
    let mut header = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "input ended inside a frame header")),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let kind = Kind::from_byte(header[0]).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, format!("unknown frame kind byte {:#04x}", header[0]))
    })?;
    let len = u64::from_le_bytes(header[1..].try_into().expect("8 bytes"));
    if len > MAX_PAYLOAD {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("frame of {len} bytes is past the limit")));
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload)?;
    Ok(Some(Frame { kind, payload }))
}

/// A batch as an Arrow IPC stream (its schema, then the batch).
///
/// # Errors
/// Arrow cannot encode it.
pub fn encode_batch(batch: &RecordBatch) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let mut out = Vec::new();
    write_batch(batch, &mut out)?;
    Ok(out)
}

/// A [`Kind::Batch`] frame of `batches` (one stream; one batch where they can be joined), encoded in place (no
/// copy of the IPC bytes).
///
/// # Errors
/// Arrow cannot encode them.
pub fn batch_frame(batches: &[RecordBatch]) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let size: usize = batches.iter().map(RecordBatch::get_array_memory_size).sum();
    let mut out = Vec::with_capacity(HEADER + size + 1024);
    out.extend_from_slice(&[0; HEADER]);
    super::joined::write_call(batches, &mut out)?;
    let len = (out.len() - HEADER) as u64;
    out[0] = Kind::Batch.byte();
    out[1..HEADER].copy_from_slice(&len.to_le_bytes());
    Ok(out)
}

/// A [`Kind::Shared`] frame: `len` bytes of IPC stream at the start of shared buffer `which` (the worker's
/// `which`th), of `size` bytes.
pub fn shared_frame(len: usize, size: usize, which: usize) -> Vec<u8> {
    let mut payload = [0u8; 24];
    payload[..8].copy_from_slice(&(len as u64).to_le_bytes());
    payload[8..16].copy_from_slice(&(size as u64).to_le_bytes());
    payload[16..].copy_from_slice(&(which as u64).to_le_bytes());
    encode_frame(Kind::Shared, &payload)
}

/// Writes `batch` to `out` as an Arrow IPC stream (its schema, then the batch).
///
/// # Errors
/// Arrow cannot encode it, or `out` fails.
pub fn write_batch(batch: &RecordBatch, out: impl Write) -> Result<(), arrow::error::ArrowError> {
    write_batches(std::slice::from_ref(batch), out)
}

/// Writes `batches` (one schema, at least one batch) to `out` as one Arrow IPC stream: the rows of one
/// call, which the worker sees as one batch.
///
/// # Errors
/// Arrow cannot encode them, or `out` fails.
pub fn write_batches(batches: &[RecordBatch], out: impl Write) -> Result<(), arrow::error::ArrowError> {
    let Some(first) = batches.first() else {
        return Err(arrow::error::ArrowError::InvalidArgumentError("no batch to write".into()));
    };
    let mut w = StreamWriter::try_new(out, &first.schema())?;
    for b in batches {
        w.write(b)?;
    }
    w.finish()
}

/// A schema as an Arrow IPC stream without batches (how the worker learns `output_schema`'s types).
///
/// # Errors
/// Arrow cannot encode it.
pub fn encode_schema(schema: &Schema) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let mut out = Vec::new();
    let mut w = StreamWriter::try_new(&mut out, schema)?;
    w.finish()?;
    drop(w);
    Ok(out)
}

/// The one batch of an Arrow IPC stream.
///
/// # Errors
/// Not an IPC stream, or not exactly one batch in it.
pub fn decode_batch(bytes: &[u8]) -> Result<RecordBatch, String> {
    let reader = StreamReader::try_new(io::Cursor::new(bytes), None).map_err(|e| format!("not Arrow IPC: {e}"))?;
    let mut batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| format!("not Arrow IPC: {e}"))?;
    match batches.len() {
        1 => Ok(batches.pop().expect("one")),
        n => Err(format!("a result frame holds {n} batches, not one")),
    }
}

/// An exception in the worker (the payload of an [`Kind::Error`] frame).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct PyError {
    /// The exception's type name (`ValueError`).
    #[serde(rename = "type")]
    pub kind: String,
    /// `str(exception)`.
    pub message: String,
    /// The traceback from the first frame of user code (empty for [`PyError::output`] errors).
    #[serde(default)]
    pub traceback: String,
    /// What the user code returned does not fit the stage (`output_schema`, the mode), rather than an exception of its own.
    #[serde(default)]
    pub output: bool,
    /// The row whose call raised, when one did.
    #[serde(default)]
    pub row: Option<RowRef>,
}

/// Where in a batch a row's call raised.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct RowRef {
    /// The row's index in the batch.
    pub index: usize,
    /// Its `id` column, if it has one.
    pub id: Option<String>,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, ArrayRef, AsArray, Int64Array, LargeStringArray};

    use super::*;

    #[test]
    fn frames_round_trip_and_end_cleanly() {
        let mut buf = Vec::new();
        write_frame(&mut buf, Kind::Config, br#"{"mode":"filter"}"#).unwrap();
        write_frame(&mut buf, Kind::Batch, &[]).unwrap();
        assert_eq!(&buf[..HEADER], &[b'C', 17, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(buf.len(), 2 * HEADER + 17);
        let mut r = io::Cursor::new(buf);
        assert_eq!(
            read_frame(&mut r).unwrap(),
            Some(Frame { kind: Kind::Config, payload: br#"{"mode":"filter"}"#.to_vec() })
        );
        assert_eq!(read_frame(&mut r).unwrap(), Some(Frame { kind: Kind::Batch, payload: vec![] }));
        assert_eq!(read_frame(&mut r).unwrap(), None, "end of input between frames");
    }

    #[test]
    fn truncated_and_unknown_frames_are_errors() {
        let whole = encode_frame(Kind::Ready, b"{}");
        for cut in [1, HEADER - 1, HEADER, HEADER + 1] {
            let e = read_frame(&mut io::Cursor::new(&whole[..cut])).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "cut at {cut}");
        }
        let mut bad = whole.clone();
        bad[0] = b'Z';
        let e = read_frame(&mut io::Cursor::new(bad)).unwrap_err();
        assert!(e.to_string().contains("unknown frame kind byte 0x5a"), "{e}");
        let mut huge = whole;
        huge[1..HEADER].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(read_frame(&mut io::Cursor::new(huge)).unwrap_err().to_string().contains("past the limit"));
    }

    #[test]
    fn batches_round_trip_through_ipc() {
        let batch = RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef),
            ("text", Arc::new(LargeStringArray::from(vec![Some("a"), None, Some("ç")])) as ArrayRef),
        ])
        .unwrap();
        let back = decode_batch(&encode_batch(&batch).unwrap()).unwrap();
        assert_eq!(back, batch);
        let frame =
            read_frame(&mut io::Cursor::new(batch_frame(std::slice::from_ref(&batch)).unwrap())).unwrap().unwrap();
        assert_eq!((frame.kind, decode_batch(&frame.payload).unwrap()), (Kind::Batch, batch.clone()));
        assert_eq!(back.column(1).as_string::<i64>().value(2), "ç");
        assert!(back.column(1).is_null(1));
        let e = decode_batch(&encode_schema(&batch.schema()).unwrap()).unwrap_err();
        assert_eq!(e, "a result frame holds 0 batches, not one");
        assert!(decode_batch(b"nonsense").unwrap_err().starts_with("not Arrow IPC"));
    }

    #[test]
    fn errors_parse_from_the_worker_json() {
        let e: PyError = serde_json::from_str(
            r#"{"type": "ValueError", "message": "bad", "traceback": "Traceback...", "output": false, "row": {"index": 2, "id": "c"}}"#,
        )
        .unwrap();
        assert_eq!(e.kind, "ValueError");
        assert_eq!(e.row, Some(RowRef { index: 2, id: Some("c".into()) }));
    }
}
