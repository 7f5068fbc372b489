//! The columns of a `python` or `datatrove` stage: `output_schema`'s type
//! names, the output schema (the input's columns, a declared one of the same
//! name replacing it in place, new ones after them in name order), and a
//! worker's result merged back into the input batch.
//!
//! ```text
//! input batch ──────────────────────────────┐
//! result batch (changed + new columns, __smelt_drop__) ──merge──► output batch + one verdict per row
//! ```

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;

use super::protocol::{DROP_COLUMN, REASON_KEY};

/// A type written in `output_schema` (pyarrow's names): `bool`, `int8` ...
/// `int64`, `uint8` ... `uint64`, `float32`, `float64` (`float`, `double`),
/// `string` (`utf8`), `large_string` (`large_utf8`), `binary`,
/// `large_binary`, `date32`, `timestamp[us]`, `timestamp[us, UTC]`, `list<T>`.
///
/// # Errors
/// Any other name, with the names there are.
pub fn parse_type(name: &str) -> Result<DataType, String> {
    let t = name.trim();
    if let Some(inner) = t.strip_prefix("list<").and_then(|r| r.strip_suffix('>')) {
        return Ok(DataType::List(Arc::new(Field::new("item", parse_type(inner)?, true))));
    }
    if let Some(args) = t.strip_prefix("timestamp[").and_then(|r| r.strip_suffix(']')) {
        let mut parts = args.splitn(2, ',').map(str::trim);
        let unit = match parts.next() {
            Some("s") => TimeUnit::Second,
            Some("ms") => TimeUnit::Millisecond,
            Some("us") => TimeUnit::Microsecond,
            Some("ns") => TimeUnit::Nanosecond,
            _ => return Err(format!("`{t}`: a timestamp's unit is s, ms, us or ns, e.g. `timestamp[us, UTC]`")),
        };
        return Ok(DataType::Timestamp(unit, parts.next().filter(|z| !z.is_empty()).map(Arc::from)));
    }
    Ok(match t {
        "bool" | "boolean" => DataType::Boolean,
        "int8" => DataType::Int8,
        "int16" => DataType::Int16,
        "int32" => DataType::Int32,
        "int64" => DataType::Int64,
        "uint8" => DataType::UInt8,
        "uint16" => DataType::UInt16,
        "uint32" => DataType::UInt32,
        "uint64" => DataType::UInt64,
        "float32" | "float" => DataType::Float32,
        "float64" | "double" => DataType::Float64,
        "string" | "utf8" => DataType::Utf8,
        "large_string" | "large_utf8" => DataType::LargeUtf8,
        "binary" => DataType::Binary,
        "large_binary" => DataType::LargeBinary,
        "date32" => DataType::Date32,
        _ => {
            return Err(format!(
                "unknown type `{t}`; types are bool, int8, int16, int32, int64, uint8, uint16, uint32, uint64, \
                 float32, float64, string, large_string, binary, large_binary, date32, timestamp[us] (or \
                 timestamp[us, UTC]) and list<T>"
            ))
        }
    })
}

/// The output schema: `input`'s columns, a declared column of the same name
/// replacing it in place, then the other declared columns in their order.
/// Declared columns are nullable.
pub fn output_schema(input: &SchemaRef, declared: &[(String, DataType)]) -> SchemaRef {
    let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
    for (name, t) in declared {
        let field = Field::new(name, t.clone(), true);
        match fields.iter().position(|f| f.name() == name) {
            Some(i) => fields[i] = field,
            None => fields.push(field),
        }
    }
    Arc::new(Schema::new_with_metadata(fields, input.metadata().clone()))
}

/// One verdict per row: `None` keeps it.
pub type Verdicts = Vec<Option<Cow<'static, str>>>;

/// `result`'s columns put into `input` as `output` lays them out, and the
/// drop reasons when it has [`DROP_COLUMN`].
///
/// # Errors
/// A result column that is not an output column, has another type than the
/// output schema's, nulls in a column that cannot hold them, or another row count.
pub fn merge(
    input: &RecordBatch,
    result: &RecordBatch,
    output: &SchemaRef,
) -> Result<(RecordBatch, Option<Verdicts>), String> {
    let rows = input.num_rows();
    let mut columns: Vec<Option<ArrayRef>> =
        output.fields().iter().map(|f| input.column_by_name(f.name()).cloned()).collect();
    let mut drops = None;
    for (field, array) in result.schema().fields().iter().zip(result.columns()) {
        let name = field.name();
        if array.len() != rows {
            return Err(format!("column `{name}` came back with {} rows for a batch of {rows}", array.len()));
        }
        if name == DROP_COLUMN {
            drops = Some(verdicts(field, array)?);
            continue;
        }
        let Ok(i) = output.index_of(name) else {
            return Err(format!("returned column `{name}`, which is neither an input column nor in output_schema"));
        };
        let want = output.field(i);
        if array.data_type() != want.data_type() {
            return Err(format!(
                "column `{name}` came back as {}, but the stage's output has it as {} (output_schema)",
                array.data_type(),
                want.data_type()
            ));
        }
        if !want.is_nullable() && array.null_count() > 0 {
            return Err(format!(
                "column `{name}` came back with {} nulls, but it cannot hold nulls",
                array.null_count()
            ));
        }
        columns[i] = Some(array.clone());
    }
    let columns = columns
        .into_iter()
        .zip(output.fields())
        .map(|(c, f)| c.ok_or_else(|| format!("returned no column `{}`, which output_schema declares", f.name())))
        .collect::<Result<Vec<_>, _>>()?;
    let batch = RecordBatch::try_new(output.clone(), columns).map_err(|e| e.to_string())?;
    Ok((batch, drops))
}

fn verdicts(field: &Field, array: &ArrayRef) -> Result<Verdicts, String> {
    match array.data_type() {
        // One reason for the whole call (batch mode's boolean verdicts): true drops the row.
        DataType::Boolean => {
            let Some(reason) = field.metadata().get(REASON_KEY) else {
                return Err(format!("`{DROP_COLUMN}` came back as booleans without the field metadata `{REASON_KEY}`"));
            };
            let reason = intern(reason);
            let dropped = array.as_boolean();
            Ok((0..dropped.len()).map(|i| (dropped.is_valid(i) && dropped.value(i)).then(|| reason.clone())).collect())
        }
        DataType::Utf8 => {
            let reasons = array.as_string::<i32>();
            let mut seen: HashMap<&str, Cow<'static, str>> = HashMap::new();
            Ok((0..reasons.len())
                .map(|i| {
                    reasons.is_valid(i).then(|| {
                        let r = reasons.value(i);
                        seen.entry(r).or_insert_with(|| intern(r)).clone()
                    })
                })
                .collect())
        }
        other => Err(format!("`{DROP_COLUMN}` came back as {other}, not utf8 or boolean")),
    }
}

/// A drop reason as a `'static` string, so that each dropped row's verdict is a pointer, not an allocation.
/// Reasons repeat (a stage's name, an exception type, a few of a function's own); the first [`INTERNED`]
/// distinct ones (of at most [`INTERNED_LEN`] bytes) are kept for the life of the process, others are copied.
fn intern(reason: &str) -> Cow<'static, str> {
    static SEEN: std::sync::Mutex<Option<std::collections::HashSet<&'static str>>> = std::sync::Mutex::new(None);
    if reason.len() > INTERNED_LEN {
        return Cow::Owned(reason.to_string());
    }
    let mut seen = SEEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let seen = seen.get_or_insert_with(Default::default);
    if let Some(r) = seen.get(reason) {
        return Cow::Borrowed(r);
    }
    if seen.len() >= INTERNED {
        return Cow::Owned(reason.to_string());
    }
    let r: &'static str = Box::leak(reason.to_string().into_boxed_str());
    seen.insert(r);
    Cow::Borrowed(r)
}

/// Distinct drop reasons kept as `'static` strings at most.
const INTERNED: usize = 4096;
/// Longest drop reason kept as a `'static` string.
const INTERNED_LEN: usize = 256;

#[cfg(test)]
mod tests {
    use arrow::array::{BooleanArray, Float64Array, Int64Array, StringArray};

    use super::*;

    #[test]
    fn type_names_parse_as_pyarrow_writes_them() {
        assert_eq!(parse_type("float64").unwrap(), DataType::Float64);
        assert_eq!(parse_type(" string ").unwrap(), DataType::Utf8);
        assert_eq!(
            parse_type("timestamp[us, UTC]").unwrap(),
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        assert_eq!(parse_type("timestamp[ms]").unwrap(), DataType::Timestamp(TimeUnit::Millisecond, None));
        assert_eq!(
            parse_type("list<list<int32>>").unwrap(),
            DataType::List(Arc::new(Field::new(
                "item",
                DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
                true
            )))
        );
        assert!(parse_type("float63").unwrap_err().starts_with("unknown type `float63`; types are bool"));
        assert!(parse_type("timestamp[days]").is_err());
    }

    fn input() -> RecordBatch {
        RecordBatch::try_from_iter_with_nullable([
            ("id", Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef, false),
            ("n", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef, true),
        ])
        .unwrap()
    }

    #[test]
    fn declared_columns_replace_in_place_or_follow() {
        let declared = vec![("score".to_string(), DataType::Float64), ("n".to_string(), DataType::Utf8)];
        let out = output_schema(&input().schema(), &declared);
        let names: Vec<(&str, &DataType)> = out.fields().iter().map(|f| (f.name().as_str(), f.data_type())).collect();
        assert_eq!(names, [("id", &DataType::Utf8), ("n", &DataType::Utf8), ("score", &DataType::Float64)]);
    }

    #[test]
    fn results_merge_into_the_input_and_bring_their_verdicts() {
        let b = input();
        let out = output_schema(&b.schema(), &[("score".to_string(), DataType::Float64)]);
        let result = RecordBatch::try_from_iter([
            ("score", Arc::new(Float64Array::from(vec![0.5, 1.5])) as ArrayRef),
            (DROP_COLUMN, Arc::new(StringArray::from(vec![None, Some("short")])) as ArrayRef),
        ])
        .unwrap();
        let (merged, verdicts) = merge(&b, &result, &out).unwrap();
        assert_eq!(merged.num_columns(), 3);
        assert_eq!(merged.column(0), b.column(0), "unchanged columns are the input's");
        assert_eq!(merged.column(2).as_any().downcast_ref::<Float64Array>().unwrap().values(), &[0.5, 1.5]);
        assert_eq!(verdicts.unwrap(), vec![None, Some(Cow::Borrowed("short"))]);
    }

    #[test]
    fn boolean_verdicts_carry_one_reason_in_the_field() {
        let b = input();
        let out = output_schema(&b.schema(), &[]);
        let dropped = Arc::new(BooleanArray::from(vec![Some(true), None])) as ArrayRef;
        let field = |metadata: &[(&str, &str)]| {
            let m = metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            Field::new(DROP_COLUMN, DataType::Boolean, true).with_metadata(m)
        };
        let result = |f: Field| RecordBatch::try_new(Arc::new(Schema::new(vec![f])), vec![dropped.clone()]).unwrap();
        let (_, verdicts) = merge(&b, &result(field(&[(REASON_KEY, "too_short")])), &out).unwrap();
        let verdicts = verdicts.unwrap();
        assert_eq!(verdicts, vec![Some(Cow::Borrowed("too_short")), None], "null keeps");
        assert!(matches!(verdicts[0], Some(Cow::Borrowed(_))), "a repeated reason is not copied per row");
        let e = merge(&b, &result(field(&[])), &out).unwrap_err();
        assert_eq!(e, "`__smelt_drop__` came back as booleans without the field metadata `smelt.reason`");
    }

    #[test]
    fn a_result_that_does_not_fit_names_the_column() {
        let b = input();
        let out = output_schema(&b.schema(), &[("score".to_string(), DataType::Float64)]);
        let one = |name: &str, a: ArrayRef| RecordBatch::try_from_iter([(name, a)]).unwrap();
        let e = merge(&b, &one("score", Arc::new(StringArray::from(vec!["x", "y"]))), &out).unwrap_err();
        assert_eq!(e, "column `score` came back as Utf8, but the stage's output has it as Float64 (output_schema)");
        let e = merge(&b, &one("other", Arc::new(Int64Array::from(vec![1, 2]))), &out).unwrap_err();
        assert!(e.starts_with("returned column `other`"), "{e}");
        let e = merge(&b, &one("n", Arc::new(Int64Array::from(vec![1, 2]))), &out).unwrap_err();
        assert_eq!(e, "returned no column `score`, which output_schema declares");
        let e = merge(&b, &one("id", Arc::new(StringArray::from(vec![Some("a"), None]))), &out).unwrap_err();
        assert_eq!(e, "column `id` came back with 1 nulls, but it cannot hold nulls");
        let e = merge(&b, &one("score", Arc::new(Float64Array::from(vec![1.0]))), &out).unwrap_err();
        assert_eq!(e, "column `score` came back with 1 rows for a batch of 2");
    }
}
