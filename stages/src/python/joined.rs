//! A call's batches as one Arrow IPC stream holding one record batch, each
//! buffer copied once, straight to where the worker reads it.
//!
//! ```text
//! batches of a call ──plan (lengths, null counts)──► schema message, record batch message (flatbuffers)
//!                   ──body: validity bits joined, values end to end, offsets rebased──► Sink (shared buffer | frame)
//! ```
//! arrow's `StreamWriter` writes each batch as a message of its own; the
//! worker then joined them into the one batch it hands to batch mode (a
//! second copy of every buffer, into memory freshly faulted in on each call).
//! Written joined, the worker reads the call where it lies. Columns of types
//! other than nulls, booleans, fixed-width values and (large) strings and
//! binaries (lists, structs, dictionaries, views) are not joined here:
//! [`write`] says so and the caller sends the batches as they are.

use std::io;

use arrow::array::BooleanBufferBuilder;
use arrow::array::{Array, ArrayData};
use arrow::datatypes::{DataType, Schema};
use arrow::error::ArrowError;
use arrow::ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteOptions};
use arrow::record_batch::RecordBatch;

/// Where each message and buffer starts (what arrow's writer uses).
const ALIGN: usize = 64;

/// Bytes that end a stream: the continuation marker and a zero length.
const END: [u8; 8] = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];

/// Memory to write a stream into, a piece at a time.
pub trait Sink {
    /// The next `n` bytes of the stream, to fill (their contents are unspecified until filled).
    ///
    /// # Errors
    /// The sink cannot grow to hold them.
    fn take(&mut self, n: usize) -> io::Result<&mut [u8]>;
}

impl Sink for Vec<u8> {
    fn take(&mut self, n: usize) -> io::Result<&mut [u8]> {
        let start = self.len();
        self.resize(start + n, 0);
        Ok(&mut self[start..])
    }
}

/// How a column's buffers are laid out.
#[derive(Clone, Copy)]
enum Layout {
    /// No buffers (type Null).
    Null,
    /// Validity, then one bit per value.
    Bits,
    /// Validity, then values of this many bytes.
    Fixed(usize),
    /// Validity, 4-byte offsets, the bytes.
    Bytes32,
    /// Validity, 8-byte offsets, the bytes.
    Bytes64,
}

impl Layout {
    fn of(data_type: &DataType) -> Option<Layout> {
        Some(match data_type {
            DataType::Null => Layout::Null,
            DataType::Boolean => Layout::Bits,
            DataType::Utf8 | DataType::Binary => Layout::Bytes32,
            DataType::LargeUtf8 | DataType::LargeBinary => Layout::Bytes64,
            DataType::FixedSizeBinary(w) => Layout::Fixed(usize::try_from(*w).ok()?),
            t => Layout::Fixed(t.primitive_width()?),
        })
    }
}

/// One column of the joined batch: its parts (one per batch) and what goes in the message.
struct Column {
    layout: Layout,
    parts: Vec<ArrayData>,
    rows: usize,
    nulls: usize,
}

impl Column {
    /// The byte length of each of its buffers, in message order.
    fn buffer_lens(&self) -> Vec<usize> {
        let validity = if self.nulls == 0 { 0 } else { self.rows.div_ceil(8) };
        match self.layout {
            Layout::Null => vec![],
            Layout::Bits => vec![validity, self.rows.div_ceil(8)],
            Layout::Fixed(w) => vec![validity, self.rows * w],
            Layout::Bytes32 => vec![validity, (self.rows + 1) * 4, self.value_bytes()],
            Layout::Bytes64 => vec![validity, (self.rows + 1) * 8, self.value_bytes()],
        }
    }

    /// The string or binary bytes the parts hold, from their first offset to their last.
    fn value_bytes(&self) -> usize {
        self.parts.iter().map(|d| byte_range(d, self.layout).1).sum()
    }

    /// Fills buffer `i` (of length `buffer_lens()[i]`).
    fn fill(&self, i: usize, out: &mut [u8]) {
        match (i, self.layout) {
            (0, _) if out.is_empty() => {} // no nulls: no validity buffer
            (0, _) => out.copy_from_slice(validity(&self.parts, self.rows).as_slice()),
            (1, Layout::Bits) => {
                let mut bits = BooleanBufferBuilder::new(self.rows);
                for d in &self.parts {
                    bits.append_packed_range(d.offset()..d.offset() + d.len(), d.buffers()[0].as_slice());
                }
                out.copy_from_slice(bits.as_slice());
            }
            (1, Layout::Fixed(w)) => {
                let mut at = 0;
                for d in &self.parts {
                    let n = d.len() * w;
                    out[at..at + n].copy_from_slice(&d.buffers()[0].as_slice()[d.offset() * w..][..n]);
                    at += n;
                }
            }
            (1, Layout::Bytes32) => rebase::<4>(&self.parts, out, |b| i64::from(i32::from_le_bytes(b))),
            (1, Layout::Bytes64) => rebase::<8>(&self.parts, out, i64::from_le_bytes),
            (2, layout) => {
                let mut at = 0;
                for d in &self.parts {
                    let (start, n) = byte_range(d, layout);
                    out[at..at + n].copy_from_slice(&d.buffers()[1].as_slice()[start..start + n]);
                    at += n;
                }
            }
            _ => unreachable!("a buffer the layout does not have"),
        }
    }
}

/// The validity bits of `parts` end to end (all set where a part has no nulls).
fn validity(parts: &[ArrayData], rows: usize) -> BooleanBufferBuilder {
    let mut bits = BooleanBufferBuilder::new(rows);
    for d in parts {
        match d.nulls() {
            Some(n) => {
                let inner = n.inner();
                bits.append_packed_range(inner.offset()..inner.offset() + inner.len(), inner.values());
            }
            None => bits.append_n(d.len(), true),
        }
    }
    bits
}

/// Where a string or binary part's bytes start in its values buffer, and how many there are.
fn byte_range(d: &ArrayData, layout: Layout) -> (usize, usize) {
    let size = if matches!(layout, Layout::Bytes32) { 4 } else { 8 };
    let offsets = d.buffers()[0].as_slice();
    let at = |i: usize| {
        let b = &offsets[(d.offset() + i) * size..][..size];
        if size == 4 {
            i32::from_le_bytes(b.try_into().expect("4 bytes")) as usize
        } else {
            i64::from_le_bytes(b.try_into().expect("8 bytes")) as usize
        }
    };
    let start = at(0);
    (start, at(d.len()) - start)
}

/// Writes the offsets of `parts` end to end, each part's moved to start where the previous one's bytes end.
fn rebase<const N: usize>(parts: &[ArrayData], out: &mut [u8], read: impl Fn([u8; N]) -> i64) {
    let mut slots = out.chunks_exact_mut(N);
    slots.next().expect("room for the first offset").fill(0);
    let mut end = 0i64;
    for d in parts {
        let offsets = &d.buffers()[0].as_slice()[d.offset() * N..(d.offset() + d.len() + 1) * N];
        let mut values = offsets.chunks_exact(N).map(|b| read(b.try_into().expect("N bytes")));
        let shift = end - values.next().expect("n + 1 offsets");
        for v in values {
            end = v + shift;
            slots.next().expect("room for every offset").copy_from_slice(&end.to_le_bytes()[..N]);
        }
    }
}

/// Writes the rows of one call to `out` as an Arrow IPC stream: one record batch where [`write`] can join
/// `batches`, else the batches as they are (arrow's `StreamWriter`; the worker reads them as one).
///
/// # Errors
/// The sink fails, or Arrow cannot encode the batches.
pub fn write_call(batches: &[RecordBatch], out: &mut (impl Sink + io::Write)) -> Result<(), ArrowError> {
    if !write(batches, out)? {
        super::protocol::write_batches(batches, out)?;
    }
    Ok(())
}

/// Writes `batches` (at least one, one schema) to `sink` as an Arrow IPC stream of one record batch: their
/// rows in order. `Ok(false)` (nothing written) when a column has a type this cannot join.
///
/// # Errors
/// The sink fails, or the joined strings pass what 32-bit offsets can address.
pub fn write(batches: &[RecordBatch], sink: &mut impl Sink) -> io::Result<bool> {
    let Some(first) = batches.first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no batch to write"));
    };
    let schema = first.schema();
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (c, field) in schema.fields().iter().enumerate() {
        let Some(layout) = Layout::of(field.data_type()) else { return Ok(false) };
        let parts: Vec<ArrayData> = batches.iter().map(|b| b.column(c).to_data()).collect();
        let nulls = match layout {
            Layout::Null => rows, // what readers check a null column's node against
            _ => parts.iter().map(ArrayData::null_count).sum(),
        };
        let column = Column { layout, parts, rows, nulls };
        if matches!(layout, Layout::Bytes32) && column.value_bytes() > i32::MAX as usize {
            return Ok(false);
        }
        columns.push(column);
    }
    message(sink, &schema_message(&schema))?;
    // The record batch message: one node per column, each buffer's place in the body.
    let (mut nodes, mut buffers) = (Vec::new(), Vec::new());
    let mut body = 0usize;
    for column in &columns {
        nodes.push(arrow::ipc::FieldNode::new(rows as i64, column.nulls as i64));
        for len in column.buffer_lens() {
            buffers.push(arrow::ipc::Buffer::new(body as i64, len as i64));
            body += len.next_multiple_of(ALIGN);
        }
    }
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let (nodes, buffers) = (fbb.create_vector(&nodes), fbb.create_vector(&buffers));
    let mut batch = arrow::ipc::RecordBatchBuilder::new(&mut fbb);
    batch.add_length(rows as i64);
    batch.add_nodes(nodes);
    batch.add_buffers(buffers);
    let header = batch.finish().as_union_value();
    let mut m = arrow::ipc::MessageBuilder::new(&mut fbb);
    m.add_version(arrow::ipc::MetadataVersion::V5);
    m.add_header_type(arrow::ipc::MessageHeader::RecordBatch);
    m.add_bodyLength(body as i64);
    m.add_header(header);
    let root = m.finish();
    fbb.finish(root, None);
    message(sink, fbb.finished_data())?;
    for column in &columns {
        for (i, len) in column.buffer_lens().into_iter().enumerate() {
            let out = sink.take(len.next_multiple_of(ALIGN))?;
            let (buffer, padding) = out.split_at_mut(len);
            column.fill(i, buffer);
            padding.fill(0);
        }
    }
    sink.take(END.len())?.copy_from_slice(&END);
    Ok(true)
}

/// The flatbuffer of `schema`'s message.
fn schema_message(schema: &Schema) -> Vec<u8> {
    let options = IpcWriteOptions::default();
    IpcDataGenerator::default()
        .schema_to_bytes_with_dictionary_tracker(schema, &mut DictionaryTracker::new(false), &options)
        .ipc_message
}

/// Writes one message's framing and flatbuffer: the continuation marker, the padded length, the bytes, zeros to
/// the next [`ALIGN`] boundary.
fn message(sink: &mut impl Sink, flatbuffer: &[u8]) -> io::Result<()> {
    let padded = (8 + flatbuffer.len()).next_multiple_of(ALIGN);
    let out = sink.take(padded)?;
    out[..4].copy_from_slice(&END[..4]);
    out[4..8].copy_from_slice(&((padded - 8) as i32).to_le_bytes());
    out[8..8 + flatbuffer.len()].copy_from_slice(flatbuffer);
    out[8 + flatbuffer.len()..].fill(0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, BinaryArray, BooleanArray, Float64Array, Int32Array, LargeStringArray, ListArray, NullArray,
        StringArray, TimestampMicrosecondArray,
    };
    use arrow::compute::concat_batches;
    use arrow::datatypes::Int32Type;

    use super::*;
    use crate::python::protocol::decode_batch;

    fn batch(offset: i32, n: usize) -> RecordBatch {
        let ids: Vec<i32> = (offset..offset + n as i32).collect();
        let text = |i: &i32| (i % 3 != 0).then(|| "é".repeat(*i as usize % 7));
        RecordBatch::try_from_iter([
            ("id", Arc::new(Int32Array::from(ids.clone())) as ArrayRef),
            ("text", Arc::new(LargeStringArray::from(ids.iter().map(text).collect::<Vec<_>>())) as ArrayRef),
            ("short", Arc::new(StringArray::from(ids.iter().map(|i| format!("s{i}")).collect::<Vec<_>>())) as ArrayRef),
            (
                "raw",
                Arc::new(BinaryArray::from_iter(ids.iter().map(|i| (i % 2 == 0).then(|| vec![*i as u8; 3]))))
                    as ArrayRef,
            ),
            (
                "flag",
                Arc::new(BooleanArray::from_iter(ids.iter().map(|i| (i % 5 != 0).then_some(i % 2 == 0)))) as ArrayRef,
            ),
            ("score", Arc::new(Float64Array::from_iter(ids.iter().map(|i| f64::from(*i) / 3.0))) as ArrayRef),
            ("at", Arc::new(TimestampMicrosecondArray::from(vec![None::<i64>; n])) as ArrayRef),
            ("nothing", Arc::new(NullArray::new(n)) as ArrayRef),
        ])
        .unwrap()
    }

    #[test]
    fn batches_join_into_the_batch_concat_would_make() {
        // Sliced parts too (offsets not starting at 0, bitmaps not byte-aligned).
        let batches = [batch(0, 11), batch(11, 30).slice(3, 19), batch(41, 1), batch(42, 0), batch(42, 9).slice(1, 8)];
        let mut out = Vec::new();
        assert!(write(&batches, &mut out).unwrap());
        let back = decode_batch(&out).unwrap();
        let want = concat_batches(&batches[0].schema(), &batches).unwrap();
        assert_eq!(back, want);
        assert_eq!(back.num_rows(), 11 + 19 + 1 + 8);
        assert_eq!(out.len() % ALIGN, 8, "messages and buffers start on {ALIGN}-byte boundaries");
    }

    #[test]
    fn one_batch_and_nested_types() {
        let b = batch(5, 4);
        let mut out = Vec::new();
        assert!(write(std::slice::from_ref(&b), &mut out).unwrap());
        assert_eq!(decode_batch(&out).unwrap(), b);
        let lists = RecordBatch::try_from_iter([(
            "l",
            Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>([Some(vec![Some(1)])])) as ArrayRef,
        )])
        .unwrap();
        let mut out = Vec::new();
        assert!(!write(&[lists], &mut out).unwrap(), "lists are sent as they are");
        assert!(out.is_empty());
        assert!(write(&[], &mut out).is_err());
    }
}
