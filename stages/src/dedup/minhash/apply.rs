//! The applier: drops the duplicates of a split and adds the cluster
//! columns.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float32Array, ListArray, StringArray, StructArray, UInt32Array, UInt64Array};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use smelt_engine::{EngineError, Processed, Result, Transform};

use super::cluster::Mark;
use super::explain::{members_type, Members};

pub(super) struct Applier {
    pub(super) explain: bool,
    /// With `explain`: per kept row of a cluster, in row order, the other members.
    pub(super) members: Members,
    pub(super) marks: Vec<Mark>,
    pub(super) next: usize,
    pub(super) row: u64,
    pub(super) schema: SchemaRef,
}

impl Transform for Applier {
    fn process(&mut self, batch: RecordBatch) -> Result<Processed> {
        let n = batch.num_rows();
        let mut verdicts = Vec::with_capacity(n);
        let mut cluster = Vec::with_capacity(n);
        let mut size = Vec::with_capacity(n);
        for _ in 0..n {
            match self.marks.get(self.next) {
                Some(m) if m.row == self.row => {
                    self.next += 1;
                    verdicts.push(match m.dropped {
                        0 => None,
                        1 => Some(Cow::Borrowed("minhash_duplicate")),
                        _ => Some(Cow::Borrowed("minhash_duplicate_of_earlier")),
                    });
                    cluster.push(Some(m.cluster));
                    size.push(m.size);
                }
                _ => {
                    verdicts.push(None);
                    cluster.push(None);
                    size.push(1);
                }
            }
            self.row += 1;
        }
        let input = batch.schema();
        let mut columns: Vec<ArrayRef> = input
            .fields()
            .iter()
            .zip(batch.columns())
            .filter(|(f, _)| !OUTPUT_COLUMNS.contains(&f.name().as_str()))
            .map(|(_, c)| c.clone())
            .collect();
        columns.push(Arc::new(UInt64Array::from(cluster)));
        columns.push(Arc::new(UInt32Array::from(size)));
        if self.explain {
            columns.push(self.members_column(self.row - n as u64, n));
        }
        let batch = RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| EngineError::Internal(format!("dedup_minhash output batch: {e}")))?;
        Ok(Processed::Filtered { batch, verdicts })
    }
}

impl Applier {
    /// `dup_members` for rows `first..first + n` of the split.
    fn members_column(&self, first: u64, n: usize) -> ArrayRef {
        let start = self.members.partition_point(|m| m.0 < first);
        let mut offsets = vec![0i32];
        let mut valid = Vec::with_capacity(n);
        let (mut ids, mut sims) = (Vec::new(), Vec::new());
        let mut next = self.members[start..].iter().peekable();
        for row in first..first + n as u64 {
            match next.next_if(|m| m.0 == row) {
                Some((_, list)) => {
                    for (id, sim) in list {
                        ids.push(id.as_str());
                        sims.push(*sim);
                    }
                    valid.push(true);
                }
                None => valid.push(false),
            }
            offsets.push(ids.len() as i32);
        }
        let DataType::List(item) = members_type() else { unreachable!("a list type") };
        let DataType::Struct(fields) = item.data_type().clone() else { unreachable!("a struct type") };
        let values =
            StructArray::new(fields, vec![Arc::new(StringArray::from(ids)), Arc::new(Float32Array::from(sims))], None);
        Arc::new(ListArray::new(
            item,
            OffsetBuffer::new(offsets.into()),
            Arc::new(values),
            Some(NullBuffer::from(valid)),
        ))
    }
}

/// Columns the stage adds (replaced when the input has them already).
pub(super) const OUTPUT_COLUMNS: [&str; 3] = ["dup_cluster", "dup_cluster_size", "dup_members"];
