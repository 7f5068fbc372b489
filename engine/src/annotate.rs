//! `mode: annotate` on any transform or barrier stage: every row is kept,
//! and the reason the stage would have dropped a row with is appended to the
//! row's `would_drop` list (a `List<Utf8>` column, created by the first
//! annotating stage and extended by the later ones).
//!
//! ```text
//! stage (drop mode):   rows ──► verdicts ──► rows kept, drops counted by reason
//! stage (annotate):    rows ──► verdicts ──► every row, would_drop += [reason], counted as `would_drop:<reason>`
//! ```
//! The wrapper sits around the stage's configuration, so the stage itself does
//! not change; stages that can say more (the quality filters write a `signals`
//! struct of their measurements) learn the mode from
//! [`ConfigureContext::annotate`](crate::ConfigureContext).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, ListBuilder, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::error::Result;
use crate::stage::{
    BarrierConfig, BarrierContext, BarrierObserver, Processed, SchemaError, StageConfig, Transform, TransformConfig,
};

/// The column annotating stages write.
pub const WOULD_DROP: &str = "would_drop";

/// The `would_drop` column's type: a list of reasons.
pub fn would_drop_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// `config` in annotate mode; `None` for sources and sinks, which drop nothing.
pub fn wrap(config: StageConfig) -> Option<StageConfig> {
    match config {
        StageConfig::Transform(t) => Some(StageConfig::Transform(Arc::new(AnnotateTransform(t)))),
        StageConfig::Barrier(b) => Some(StageConfig::Barrier(Arc::new(AnnotateBarrier(b)))),
        StageConfig::Source(_) | StageConfig::Sink(_) => None,
    }
}

/// `schema` with a `would_drop` column at the end (kept where it is if an
/// earlier annotating stage added it).
fn with_would_drop(schema: SchemaRef) -> Result<SchemaRef, SchemaError> {
    match schema.field_with_name(WOULD_DROP) {
        Ok(f) if f.data_type() == &would_drop_type() => Ok(schema),
        Ok(f) => Err(SchemaError::new(format!(
            "column `{WOULD_DROP}` is {}, but annotating stages write it as a list of strings; rename it before this stage",
            f.data_type()
        ))),
        Err(_) => {
            let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
            fields.push(Arc::new(Field::new(WOULD_DROP, would_drop_type(), false)));
            Ok(Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())))
        }
    }
}

/// Resolved options with `"mode": "annotate"` added, so lineage and config diffs show the mode.
fn resolved_with_mode(inner: serde_json::Value) -> serde_json::Value {
    match inner {
        serde_json::Value::Object(mut m) => {
            m.insert("mode".into(), "annotate".into());
            serde_json::Value::Object(m)
        }
        serde_json::Value::Null => serde_json::json!({"mode": "annotate"}),
        other => serde_json::json!({"options": other, "mode": "annotate"}),
    }
}

/// The output schema when the runtime is built (the compiler checked it already).
fn output_schema(s: Result<SchemaRef, SchemaError>) -> Result<SchemaRef> {
    s.map_err(|e| crate::EngineError::Internal(format!("annotate: {}", e.0)))
}

#[derive(Debug)]
struct AnnotateTransform(Arc<dyn TransformConfig>);

impl TransformConfig for AnnotateTransform {
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, SchemaError> {
        with_would_drop(self.0.output_schema(input)?)
    }

    fn resolved(&self) -> serde_json::Value {
        resolved_with_mode(self.0.resolved())
    }

    fn build(&self, input: &SchemaRef) -> Result<Box<dyn Transform>> {
        Ok(Box::new(Annotating::new(self.0.build(input)?, output_schema(self.output_schema(input))?)))
    }
}

#[derive(Debug)]
struct AnnotateBarrier(Arc<dyn BarrierConfig>);

impl BarrierConfig for AnnotateBarrier {
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, SchemaError> {
        with_would_drop(self.0.output_schema(input)?)
    }

    fn resolved(&self) -> serde_json::Value {
        resolved_with_mode(self.0.resolved())
    }

    fn observer(&self, input: &SchemaRef, ctx: &BarrierContext, split: u32) -> Result<Box<dyn BarrierObserver>> {
        self.0.observer(input, ctx, split)
    }

    fn resolve(&self, ctx: &BarrierContext, splits: &[u32]) -> Result<BTreeMap<String, u64>> {
        self.0.resolve(ctx, splits)
    }

    fn applier(&self, input: &SchemaRef, ctx: &BarrierContext, split: u32) -> Result<Box<dyn Transform>> {
        Ok(Box::new(Annotating::new(self.0.applier(input, ctx, split)?, output_schema(self.output_schema(input))?)))
    }
}

/// A stage's transform whose verdicts become `would_drop` entries.
struct Annotating {
    inner: Box<dyn Transform>,
    /// The output schema, with `would_drop`.
    schema: SchemaRef,
    /// Rows that would have been dropped, by reason.
    would_drop: BTreeMap<String, u64>,
}

impl Annotating {
    fn new(inner: Box<dyn Transform>, schema: SchemaRef) -> Self {
        Annotating { inner, schema, would_drop: BTreeMap::new() }
    }

    /// `batch` with each row's reason (if any) appended to its `would_drop` list.
    fn annotate(&mut self, batch: RecordBatch, verdicts: &[Option<Cow<'static, str>>]) -> Result<RecordBatch> {
        let list =
            extend_would_drop(&batch, |i, out| out.extend(verdicts.get(i).cloned().flatten()), &mut self.would_drop);
        let mut cols = Vec::with_capacity(self.schema.fields().len());
        for f in self.schema.fields() {
            if f.name() == WOULD_DROP {
                cols.push(list.clone());
            } else {
                cols.push(batch.column_by_name(f.name()).cloned().ok_or_else(|| {
                    crate::EngineError::Internal(format!("annotate: the stage's output lacks column `{}`", f.name()))
                })?);
            }
        }
        Ok(RecordBatch::try_new(self.schema.clone(), cols)?)
    }
}

/// The `would_drop` column for `batch`: each row's earlier reasons (from the
/// batch's own `would_drop` column, if any) followed by those `reasons(row,
/// out)` pushes; each new reason is counted in `counts` as `would_drop:<reason>`.
/// For stages that list every reason a row fails (the quality filters).
pub fn extend_would_drop(
    batch: &RecordBatch,
    mut reasons: impl FnMut(usize, &mut Vec<Cow<'static, str>>),
    counts: &mut BTreeMap<String, u64>,
) -> ArrayRef {
    let earlier = batch.column_by_name(WOULD_DROP).filter(|c| c.data_type() == &would_drop_type());
    let earlier = earlier.map(|c| c.as_list::<i32>());
    let mut list = ListBuilder::new(StringBuilder::new());
    let mut new = Vec::new();
    for i in 0..batch.num_rows() {
        if let Some(e) = earlier.filter(|e| e.is_valid(i)) {
            let before = e.value(i);
            for r in before.as_string::<i32>().iter() {
                list.values().append_option(r);
            }
        }
        new.clear();
        reasons(i, &mut new);
        for reason in &new {
            list.values().append_value(reason);
            *counts.entry(format!("would_drop:{reason}")).or_default() += 1;
        }
        list.append(true);
    }
    Arc::new(list.finish())
}

impl Transform for Annotating {
    fn process(&mut self, batch: RecordBatch) -> Result<Processed> {
        let (batch, verdicts) = match self.inner.process(batch)? {
            // A stage that wrote `would_drop` itself (the quality filters) has nothing to add.
            Processed::Batch(b) if b.schema() == self.schema => return Ok(Processed::Batch(b)),
            Processed::Batch(b) => (b, Vec::new()),
            Processed::Filtered { batch, verdicts } => (batch, verdicts),
        };
        Ok(Processed::Batch(self.annotate(batch, &verdicts)?))
    }

    fn take_counters(&mut self) -> BTreeMap<String, u64> {
        let mut c = self.inner.take_counters();
        c.append(&mut self.would_drop);
        c
    }

    fn take_samples(&mut self) -> BTreeMap<String, smelt_catalog::Samples> {
        self.inner.take_samples()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::Int64Type;

    /// Drops odd numbers, with a reason.
    #[derive(Debug)]
    struct Odd;

    impl TransformConfig for Odd {
        fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, SchemaError> {
            Ok(input.clone())
        }
        fn resolved(&self) -> serde_json::Value {
            serde_json::json!({"k": 1})
        }
        fn build(&self, _input: &SchemaRef) -> Result<Box<dyn Transform>> {
            Ok(Box::new(Odd))
        }
    }

    impl Transform for Odd {
        fn process(&mut self, batch: RecordBatch) -> Result<Processed> {
            let n = batch.column(0).as_primitive::<Int64Type>();
            let verdicts = n.iter().map(|v| (v.unwrap_or(0) % 2 == 1).then_some(Cow::Borrowed("odd"))).collect();
            Ok(Processed::Filtered { batch, verdicts })
        }
    }

    fn lists(b: &RecordBatch) -> Vec<Vec<String>> {
        let l = b.column_by_name(WOULD_DROP).unwrap().as_list::<i32>();
        (0..l.len()).map(|i| l.value(i).as_string::<i32>().iter().map(|s| s.unwrap().to_string()).collect()).collect()
    }

    #[test]
    fn keeps_every_row_and_extends_the_reason_lists() {
        let Some(StageConfig::Transform(t)) = wrap(StageConfig::Transform(Arc::new(Odd))) else { panic!() };
        assert_eq!(t.resolved(), serde_json::json!({"k": 1, "mode": "annotate"}));
        let input = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let out_schema = t.output_schema(&input).unwrap();
        assert_eq!(out_schema.field(1).name(), WOULD_DROP);
        let mut x = t.build(&input).unwrap();
        let batch = RecordBatch::try_new(input.clone(), vec![Arc::new(Int64Array::from(vec![1, 2, 3]))]).unwrap();
        let Processed::Batch(first) = x.process(batch).unwrap() else { panic!("a batch") };
        assert_eq!(lists(&first), vec![vec!["odd"], vec![], vec!["odd"]]);
        assert_eq!(x.take_counters(), BTreeMap::from([("would_drop:odd".to_string(), 2)]));
        // A second annotating stage appends to the lists the first wrote.
        let mut y = t.build(&out_schema).unwrap();
        assert_eq!(t.output_schema(&out_schema).unwrap(), out_schema);
        let Processed::Batch(second) = y.process(first).unwrap() else { panic!("a batch") };
        assert_eq!(lists(&second), vec![vec!["odd", "odd"], vec![], vec!["odd", "odd"]]);
        // A `would_drop` column of another type is refused with what to do.
        let taken = Arc::new(Schema::new(vec![Field::new(WOULD_DROP, DataType::Utf8, true)]));
        assert!(t.output_schema(&taken).unwrap_err().0.contains("rename it"));
    }
}
