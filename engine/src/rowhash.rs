//! Row hashes: 128 bits per row over every column's value, the input of a
//! shard's content hash ([`smelt_catalog::content`]). A row's hash depends
//! only on its values and the column order, not on the batch it came in,
//! the Parquet file it is stored in or how that file is encoded.
//!
//! ```text
//! batch ──per column: one 128-bit hash per row (null: a constant)──► per row: xxh3-128 of its column hashes
//! ```
//! Strings and binaries hash their bytes; fixed-width values (integers,
//! floats, decimals, dates, timestamps) their little-endian bytes; lists
//! their length and their elements' hashes (or, for lists of non-null
//! fixed-width values such as token ids, the values' bytes at once);
//! structs their fields' hashes; dictionaries their values. Any other type
//! hashes the value as Arrow's display writes it.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use xxhash_rust::xxh3::{xxh3_128, xxh3_128_with_seed};

use crate::error::{EngineError, Result};

/// The hash of a null value.
const NULL: u128 = 0x6e75_6c6c_6e75_6c6c_6e75_6c6c_6e75_6c6c;

/// The hashes of rows written and not yet in an ended shard: a shard
/// writer's `End { rows }` takes the first `rows` of them as that shard's
/// content (at most a shard's rows and a batch are held).
#[derive(Debug, Default)]
pub struct PendingRows(std::collections::VecDeque<u128>);

impl PendingRows {
    /// Adds the rows of `batch`, in order.
    ///
    /// # Errors
    /// As [`row_hashes`].
    pub fn push(&mut self, batch: &RecordBatch) -> Result<()> {
        self.0.extend(row_hashes(batch)?);
        Ok(())
    }

    /// The content hash of the next `rows` rows: the shard the writer just ended.
    ///
    /// # Errors
    /// The writer ended a shard with more rows than it was given (a bug).
    pub fn take(&mut self, rows: u64) -> Result<smelt_catalog::content::ContentHash> {
        let n = usize::try_from(rows).unwrap_or(usize::MAX);
        if n > self.0.len() {
            return Err(EngineError::Internal(format!(
                "a shard writer ended a shard of {rows} rows after {} rows",
                self.0.len()
            )));
        }
        let mut h = smelt_catalog::content::ContentHash::default();
        self.0.drain(..n).for_each(|r| h.push(r));
        Ok(h)
    }
}

/// The 128-bit hash of every row of `batch`, in order.
///
/// # Errors
/// A column whose values cannot be read (a dictionary whose values cannot be cast).
pub fn row_hashes(batch: &RecordBatch) -> Result<Vec<u128>> {
    let columns: Vec<Vec<u128>> = batch.columns().iter().map(column_hashes).collect::<Result<_>>()?;
    let mut buf = Vec::with_capacity(16 * columns.len());
    Ok((0..batch.num_rows())
        .map(|i| {
            buf.clear();
            for c in &columns {
                buf.extend_from_slice(&c[i].to_le_bytes());
            }
            xxh3_128(&buf)
        })
        .collect())
}

/// One hash per row of `col`.
fn column_hashes(col: &ArrayRef) -> Result<Vec<u128>> {
    let n = col.len();
    let seed = |s: &[u8]| xxh3_128_with_seed(s, 1);
    let each = |f: &mut dyn FnMut(usize) -> u128| -> Vec<u128> {
        (0..n).map(|i| if col.is_null(i) { NULL } else { f(i) }).collect()
    };
    Ok(match col.data_type() {
        DataType::Null => vec![NULL; n],
        DataType::Utf8 => each(&mut |i| seed(col.as_string::<i32>().value(i).as_bytes())),
        DataType::LargeUtf8 => each(&mut |i| seed(col.as_string::<i64>().value(i).as_bytes())),
        DataType::Utf8View => each(&mut |i| seed(col.as_string_view().value(i).as_bytes())),
        DataType::Binary => each(&mut |i| seed(col.as_binary::<i32>().value(i))),
        DataType::LargeBinary => each(&mut |i| seed(col.as_binary::<i64>().value(i))),
        DataType::BinaryView => each(&mut |i| seed(col.as_binary_view().value(i))),
        DataType::FixedSizeBinary(_) => each(&mut |i| seed(col.as_fixed_size_binary().value(i))),
        DataType::Boolean => each(&mut |i| seed(&[u8::from(col.as_boolean().value(i))])),
        DataType::List(_) => {
            let l = col.as_list::<i32>();
            let offsets: Vec<usize> = l.value_offsets().iter().map(|&o| o as usize).collect();
            ranges(col, l.values(), &offsets)?
        }
        DataType::LargeList(_) => {
            let l = col.as_list::<i64>();
            let offsets: Vec<usize> = l.value_offsets().iter().map(|&o| o as usize).collect();
            ranges(col, l.values(), &offsets)?
        }
        DataType::FixedSizeList(_, size) => {
            let l = col.as_fixed_size_list();
            let size = *size as usize;
            let offsets: Vec<usize> = (0..=n).map(|i| (l.offset() + i) * size).collect();
            ranges(col, l.values(), &offsets)?
        }
        DataType::Struct(_) => {
            let s = col.as_struct();
            let fields: Vec<Vec<u128>> = s.columns().iter().map(column_hashes).collect::<Result<_>>()?;
            let mut buf = Vec::with_capacity(16 * fields.len());
            each(&mut |i| {
                buf.clear();
                for f in &fields {
                    buf.extend_from_slice(&f[i].to_le_bytes());
                }
                xxh3_128_with_seed(&buf, 2)
            })
        }
        DataType::Dictionary(_, value) => {
            let values = arrow::compute::cast(col, value)
                .map_err(|e| EngineError::Internal(format!("cannot read a dictionary column to hash it: {e}")))?;
            column_hashes(&values)?
        }
        t if t.is_primitive() => {
            let width = t.primitive_width().unwrap_or(1);
            let data = col.to_data();
            let bytes = &data.buffers()[0].as_slice()[data.offset() * width..];
            each(&mut |i| seed(&bytes[i * width..(i + 1) * width]))
        }
        _ => {
            let f = ArrayFormatter::try_new(col.as_ref(), &FormatOptions::default())
                .map_err(|e| EngineError::Internal(format!("cannot hash a {} column: {e}", col.data_type())))?;
            each(&mut |i| xxh3_128_with_seed(f.value(i).to_string().as_bytes(), 3))
        }
    })
}

/// Hashes of list rows whose elements `values[offsets[i]..offsets[i + 1]]` are row `i`'s.
fn ranges(col: &ArrayRef, values: &ArrayRef, offsets: &[usize]) -> Result<Vec<u128>> {
    let n = col.len();
    let len_seed = |len: usize| 4 + len as u64;
    let t = values.data_type();
    if t.is_primitive() && values.null_count() == 0 {
        // Token ids and the like: the values' bytes at once.
        let width = t.primitive_width().unwrap_or(1);
        let data = values.to_data();
        let bytes = &data.buffers()[0].as_slice()[data.offset() * width..];
        return Ok((0..n)
            .map(|i| {
                let (a, b) = (offsets[i], offsets[i + 1]);
                if col.is_null(i) {
                    NULL
                } else {
                    xxh3_128_with_seed(&bytes[a * width..b * width], len_seed(b - a))
                }
            })
            .collect());
    }
    let elements = column_hashes(values)?;
    let mut buf = Vec::new();
    Ok((0..n)
        .map(|i| {
            let (a, b) = (offsets[i], offsets[i + 1]);
            if col.is_null(i) {
                return NULL;
            }
            buf.clear();
            for e in &elements[a..b] {
                buf.extend_from_slice(&e.to_le_bytes());
            }
            xxh3_128_with_seed(&buf, len_seed(b - a))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, ListArray, StringArray};
    use arrow::datatypes::{Field, Schema, UInt32Type};

    use super::*;

    fn batch(ids: &[Option<&str>], n: &[i64], tokens: Vec<Option<Vec<Option<u32>>>>) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
            Field::new("t", DataType::List(Arc::new(Field::new("item", DataType::UInt32, true))), true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(ids.to_vec())),
                Arc::new(Int64Array::from(n.to_vec())),
                Arc::new(ListArray::from_iter_primitive::<UInt32Type, _, _>(tokens)),
            ],
        )
        .unwrap()
    }

    #[test]
    fn a_row_hashes_the_same_in_any_batch_or_slice() {
        let b = batch(
            &[Some("a"), None, Some("c")],
            &[1, 2, 3],
            vec![Some(vec![Some(1), Some(2)]), None, Some(vec![Some(3)])],
        );
        let whole = row_hashes(&b).unwrap();
        assert_eq!(row_hashes(&b.slice(1, 2)).unwrap(), whole[1..]);
        let alone = batch(&[Some("c")], &[3], vec![Some(vec![Some(3)])]);
        assert_eq!(row_hashes(&alone).unwrap(), whole[2..]);
        assert_eq!(whole.len(), 3);
    }

    #[test]
    fn every_column_and_the_list_boundaries_count() {
        let base = row_hashes(&batch(&[Some("a")], &[1], vec![Some(vec![Some(1), Some(2)])])).unwrap();
        for other in [
            batch(&[Some("b")], &[1], vec![Some(vec![Some(1), Some(2)])]),
            batch(&[None], &[1], vec![Some(vec![Some(1), Some(2)])]),
            batch(&[Some("a")], &[2], vec![Some(vec![Some(1), Some(2)])]),
            batch(&[Some("a")], &[1], vec![Some(vec![Some(2), Some(1)])]),
            batch(&[Some("a")], &[1], vec![Some(vec![Some(1), None])]),
            batch(&[Some("a")], &[1], vec![None]),
            batch(&[Some("a")], &[1], vec![Some(vec![])]),
        ] {
            assert_ne!(row_hashes(&other).unwrap(), base, "{other:?}");
        }
        // A list with a null element hashes element by element, and still tells lists apart.
        let with_null = |t| row_hashes(&batch(&[Some("a")], &[1], vec![Some(t)])).unwrap();
        assert_ne!(with_null(vec![Some(1), None]), with_null(vec![None, Some(1)]));
    }
}
