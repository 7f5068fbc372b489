//! The `sql` transform: a filter and derived columns written as SQL
//! expressions over a stage's input columns, evaluated per batch with
//! DataFusion's physical expressions (planned once per split, never a SQL
//! context per batch).
//!
//! ```text
//! configure: `where`, `columns.*` ──sqlparser──► syntax errors at the option's YAML position
//! output_schema(input): ──DataFusion planner (coercion, functions)──► types; unknown columns, type errors
//!                        input columns (a derived one of the same name replaces it) + new ones in name order
//! batch ──columns.* evaluated──► batch with derived columns ──where: not true──► dropped, counted as `reason`
//! ```

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::DFSchema;
use datafusion::logical_expr::{Expr, ExprSchemable};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::pruning::{PruningPredicate, PruningPredicateBuilder, PruningStatistics};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::file::metadata::ParquetMetaData;
use serde::{Deserialize, Serialize};
use smelt_engine::yaml::PathSeg;
use smelt_engine::{
    parse_options, ConfigureContext, EngineError, OptionError, Processed, Result, SchemaError, StageConfig, Transform,
    TransformConfig,
};

fn default_reason() -> String {
    "sql_where".to_string()
}

/// Options of the `sql` transform.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// A boolean SQL expression over the columns (the input's and the derived ones); rows for which it is
    /// not true (false or null) are dropped and counted under `reason`.
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// The drop reason of rows failing `where` (default `sql_where`).
    #[serde(default = "default_reason")]
    pub reason: String,
    /// Derived columns: name -> SQL expression over the input's columns. A name of an input column
    /// replaces it in place; new columns follow the input's, in name order.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub columns: BTreeMap<String, String>,
}

/// Registry hook.
///
/// # Errors
/// Unknown options, neither `where` nor `columns`, an expression that does not parse as SQL.
pub fn configure(options: serde_json::Value, _ctx: &ConfigureContext) -> Result<StageConfig, OptionError> {
    let c: SqlConfig = parse_options(options)?;
    let at = |path: Vec<PathSeg>, message: String| OptionError { path, message, at_key: false };
    if c.filter.is_none() && c.columns.is_empty() {
        return Err(at(vec![], "give `where` (a filter), `columns` (derived columns) or both".into()));
    }
    if c.reason.is_empty() {
        return Err(at(vec![key("reason")], "`reason` names the drops; it cannot be empty".into()));
    }
    if let Some(sql) = &c.filter {
        parse_sql(sql).map_err(|e| at(vec![key("where")], e))?;
    }
    for (name, sql) in &c.columns {
        if name.is_empty() {
            return Err(at(vec![key("columns")], "a derived column needs a name".into()));
        }
        parse_sql(sql).map_err(|e| at(vec![key("columns"), key(name)], e))?;
    }
    Ok(StageConfig::Transform(Arc::new(c)))
}

fn key(k: &str) -> PathSeg {
    PathSeg::Key(k.to_string())
}

/// Checks that `sql` is one SQL expression.
fn parse_sql(sql: &str) -> std::result::Result<(), String> {
    Parser::new(&GenericDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .map(|_| ())
        .map_err(|e| format!("not a SQL expression: {e}"))
}

/// The expressions of a `sql` stage planned for one input schema.
struct Planned {
    output: SchemaRef,
    /// Derived columns: (position in the output, expression over the input).
    columns: Vec<(usize, Arc<dyn PhysicalExpr>)>,
    /// The filter, over the output (input plus derived columns).
    filter: Option<Arc<dyn PhysicalExpr>>,
}

impl SqlConfig {
    /// Plans every expression against `input`.
    fn plan(&self, input: &SchemaRef) -> std::result::Result<Planned, SchemaError> {
        let ctx = SessionContext::new();
        let input_df = DFSchema::try_from(input.as_ref().clone()).map_err(|e| SchemaError::new(e.to_string()))?;
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut derived = Vec::new();
        for (name, sql) in &self.columns {
            let path = vec![key("columns"), key(name)];
            let expr = logical(&ctx, sql, &input_df, &path)?;
            let (_, typed) = expr
                .to_field(&input_df)
                .map_err(|e| SchemaError::at_option(path.clone(), format!("`{name}`: {}", clean(&e)), None))?;
            let field = Field::new(name, typed.data_type().clone(), typed.is_nullable());
            let position = match fields.iter().position(|f| f.name() == name) {
                Some(i) => {
                    fields[i] = field;
                    i
                }
                None => {
                    fields.push(field);
                    fields.len() - 1
                }
            };
            let physical = ctx
                .create_physical_expr(expr, &input_df)
                .map_err(|e| SchemaError::at_option(path, format!("`{name}`: {}", clean(&e)), None))?;
            derived.push((position, physical));
        }
        let output: SchemaRef = Arc::new(Schema::new(fields));
        let filter = match &self.filter {
            None => None,
            Some(sql) => {
                let path = vec![key("where")];
                let out_df =
                    DFSchema::try_from(output.as_ref().clone()).map_err(|e| SchemaError::new(e.to_string()))?;
                let expr = logical(&ctx, sql, &out_df, &path)?;
                let data_type = expr
                    .get_type(&out_df)
                    .map_err(|e| SchemaError::at_option(path.clone(), format!("`where`: {}", clean(&e)), None))?;
                if !matches!(data_type, DataType::Boolean | DataType::Null) {
                    return Err(SchemaError::at_option(
                        path,
                        format!("`where` must be true or false for each row, but `{sql}` is {data_type}"),
                        Some("compare it to something, e.g. `length(text) > 500`".into()),
                    ));
                }
                Some(
                    ctx.create_physical_expr(expr, &out_df)
                        .map_err(|e| SchemaError::at_option(path, format!("`where`: {}", clean(&e)), None))?,
                )
            }
        };
        Ok(Planned { output, columns: derived, filter })
    }
}

/// `sql` as a logical expression over `schema`; an unknown column is
/// reported with the closest column name.
fn logical(ctx: &SessionContext, sql: &str, df: &DFSchema, path: &[PathSeg]) -> std::result::Result<Expr, SchemaError> {
    ctx.parse_sql_expr(sql, df).map_err(|e| {
        let message = clean(&e);
        let names: Vec<&str> = df.fields().iter().map(|f| f.name().as_str()).collect();
        let unknown = message.split("No field named ").nth(1).map(|r| {
            r.split(|c: char| c == '.' || c.is_whitespace()).next().unwrap_or("").trim_matches('"').to_string()
        });
        let help = match unknown.as_deref().and_then(|u| smelt_catalog::closest(u, names.iter().copied())) {
            Some(c) => Some(format!("did you mean `{c}`? The columns here are: {}", names.join(", "))),
            None => Some(format!("the columns here are: {}", names.join(", "))),
        };
        SchemaError::at_option(path.to_vec(), format!("`{sql}`: {message}"), help)
    })
}

/// A DataFusion error on one line, without its "Error during planning: " prefix.
fn clean(e: &datafusion::error::DataFusionError) -> String {
    let text = e.to_string();
    let text = text.strip_prefix("Error during planning: ").unwrap_or(&text);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl TransformConfig for SqlConfig {
    fn output_schema(&self, input: &SchemaRef) -> std::result::Result<SchemaRef, SchemaError> {
        Ok(self.plan(input)?.output)
    }

    fn resolved(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn build(&self, input: &SchemaRef) -> Result<Box<dyn Transform>> {
        let planned = self.plan(input).map_err(|e| EngineError::User(e.0))?;
        Ok(Box::new(Sql { planned, reason: Cow::Owned(self.reason.clone()) }))
    }
}

struct Sql {
    planned: Planned,
    reason: Cow<'static, str>,
}

impl Transform for Sql {
    fn process(&mut self, batch: RecordBatch) -> Result<Processed> {
        let rows = batch.num_rows();
        let p = &self.planned;
        let eval = |expr: &Arc<dyn PhysicalExpr>, on: &RecordBatch| -> Result<ArrayRef> {
            expr.evaluate(on)
                .and_then(|v| v.into_array(rows))
                .map_err(|e| EngineError::User(format!("evaluating an expression: {}", clean(&e))))
        };
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        for (position, expr) in &p.columns {
            let array = eval(expr, &batch)?;
            match columns.get_mut(*position) {
                Some(c) => *c = array,
                None => columns.push(array),
            }
        }
        let out = RecordBatch::try_new(p.output.clone(), columns)?;
        let Some(filter) = &p.filter else { return Ok(Processed::Batch(out)) };
        let keep = eval(filter, &out)?;
        let verdicts = match keep.data_type() {
            DataType::Boolean => {
                let keep = keep.as_boolean();
                (0..rows)
                    .map(|i| if keep.is_valid(i) && keep.value(i) { None } else { Some(self.reason.clone()) })
                    .collect()
            }
            // A `where` of NULL: no row is true.
            _ => vec![Some(self.reason.clone()); rows],
        };
        Ok(Processed::Filtered { batch: out, verdicts })
    }
}

/// DataFusion's compiler of the `dataset` source's `where` (set in the
/// configure context by the runner): the `sql` transform's planning of a
/// `where` alone.
#[derive(Debug, Clone, Copy, Default)]
pub struct SqlPredicates;

impl smelt_engine::PredicateCompiler for SqlPredicates {
    fn compile(
        &self,
        sql: &str,
        schema: &SchemaRef,
    ) -> std::result::Result<Arc<dyn smelt_engine::RowPredicate>, (String, Option<String>)> {
        parse_sql(sql).map_err(|e| (e, None))?;
        let config = SqlConfig { filter: Some(sql.to_string()), reason: default_reason(), columns: BTreeMap::new() };
        let planned = config.plan(schema).map_err(|e| (e.0, e.1.and_then(|(_, help)| help)))?;
        let filter = planned.filter.ok_or_else(|| ("no expression".to_string(), None))?;
        // Row-group pruning by statistics, where the expression allows it (else every group is read).
        let pruning = PruningPredicateBuilder::new().with_file_schema(schema.clone()).build(filter.clone());
        Ok(Arc::new(SqlPredicate { sql: sql.to_string(), filter, pruning }))
    }
}

/// A compiled `where`.
struct SqlPredicate {
    sql: String,
    filter: Arc<dyn PhysicalExpr>,
    pruning: Option<Arc<PruningPredicate>>,
}

/// The column statistics of a Parquet file's row groups, as DataFusion's
/// pruning reads them (min, max, nulls and rows per row group).
struct RowGroupStatistics<'a> {
    metadata: &'a ParquetMetaData,
    schema: &'a SchemaRef,
}

impl RowGroupStatistics<'_> {
    fn converter(&self, column: &datafusion::common::Column) -> Option<StatisticsConverter<'_>> {
        StatisticsConverter::try_new(column.name(), self.schema, self.metadata.file_metadata().schema_descr()).ok()
    }
}

impl PruningStatistics for RowGroupStatistics<'_> {
    fn min_values(&self, column: &datafusion::common::Column) -> Option<ArrayRef> {
        self.converter(column)?.row_group_mins(self.metadata.row_groups().iter()).ok()
    }

    fn max_values(&self, column: &datafusion::common::Column) -> Option<ArrayRef> {
        self.converter(column)?.row_group_maxes(self.metadata.row_groups().iter()).ok()
    }

    fn num_containers(&self) -> usize {
        self.metadata.num_row_groups()
    }

    fn null_counts(&self, column: &datafusion::common::Column) -> Option<ArrayRef> {
        let counts = self.converter(column)?.row_group_null_counts(self.metadata.row_groups().iter()).ok()?;
        Some(Arc::new(counts))
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        let rows: Vec<u64> = self.metadata.row_groups().iter().map(|g| g.num_rows().max(0) as u64).collect();
        Some(Arc::new(arrow::array::UInt64Array::from(rows)))
    }

    fn contained(
        &self,
        _column: &datafusion::common::Column,
        _values: &std::collections::HashSet<datafusion::common::ScalarValue>,
    ) -> Option<arrow::array::BooleanArray> {
        None
    }
}

impl std::fmt::Debug for SqlPredicate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SqlPredicate({})", self.sql)
    }
}

impl smelt_engine::RowPredicate for SqlPredicate {
    fn filter(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let keep = self
            .filter
            .evaluate(batch)
            .and_then(|v| v.into_array(batch.num_rows()))
            .map_err(|e| EngineError::User(format!("evaluating `{}`: {}", self.sql, clean(&e))))?;
        let keep = match keep.data_type() {
            // Null is not true: those rows are left out too.
            DataType::Boolean if keep.null_count() > 0 => arrow::compute::prep_null_mask_filter(keep.as_boolean()),
            DataType::Boolean => keep.as_boolean().clone(),
            _ => arrow::array::BooleanArray::from(vec![false; batch.num_rows()]),
        };
        Ok(arrow::compute::filter_record_batch(batch, &keep)?)
    }

    fn row_groups(&self, metadata: &ParquetMetaData, schema: &SchemaRef) -> Option<Vec<usize>> {
        let keep = self.pruning.as_ref()?.prune(&RowGroupStatistics { metadata, schema }).ok()?;
        if keep.iter().all(|k| *k) {
            return None;
        }
        Some(keep.iter().enumerate().filter(|(_, k)| **k).map(|(i, _)| i).collect())
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringArray};

    use super::*;

    fn input() -> RecordBatch {
        RecordBatch::try_from_iter([
            ("id", Arc::new(StringArray::from(vec!["a", "b", "c"])) as ArrayRef),
            ("text", Arc::new(StringArray::from(vec!["one two", "three four five six", "seven"])) as ArrayRef),
            ("lang", Arc::new(StringArray::from(vec![Some("en"), Some("de"), None])) as ArrayRef),
        ])
        .unwrap()
    }

    fn stage(options: serde_json::Value) -> Arc<dyn TransformConfig> {
        match configure(options, &ConfigureContext::working_dir()).unwrap() {
            StageConfig::Transform(t) => t,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_predicate_filters_rows_and_prunes_row_groups_by_their_statistics() {
        use smelt_engine::PredicateCompiler;
        // 100 rows d000..d099 in row groups of 10, with chunk statistics (as the parquet sink writes them).
        let ids: Vec<String> = (0..100).map(|i| format!("d{i:03}")).collect();
        let n: Vec<i64> = (0..100).collect();
        let batch = RecordBatch::try_from_iter([
            ("id", Arc::new(StringArray::from(ids)) as ArrayRef),
            ("n", Arc::new(Int64Array::from(n)) as ArrayRef),
        ])
        .unwrap();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(10))
            .set_statistics_enabled(parquet::file::properties::EnabledStatistics::Chunk)
            .build();
        let mut buf = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let builder =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(buf)).unwrap();
        assert_eq!(builder.metadata().num_row_groups(), 10);
        let schema = batch.schema();
        let groups = |sql: &str| {
            let p = SqlPredicates.compile(sql, &schema).unwrap();
            p.row_groups(builder.metadata(), builder.schema())
        };
        assert_eq!(groups("id < 'd020'"), Some(vec![0, 1]));
        assert_eq!(groups("n >= 95 OR id = 'd033'"), Some(vec![3, 9]));
        assert_eq!(groups("n >= 0"), None, "nothing ruled out");
        assert_eq!(groups("length(id) = 4"), None, "statistics cannot judge it");
        let p = SqlPredicates.compile("n % 10 = 3 AND n < 50", &schema).unwrap();
        let kept = p.filter(&batch).unwrap();
        assert_eq!(kept.num_rows(), 5);
        let (e, help) = SqlPredicates.compile("idd = 'x'", &schema).unwrap_err();
        assert!(e.contains("idd") && help.unwrap().contains("did you mean `id`?"), "{e}");
        assert!(SqlPredicates.compile("n + 1", &schema).unwrap_err().0.contains("true or false"));
    }

    #[test]
    fn where_drops_with_its_reason_and_columns_are_derived() {
        let b = input();
        let cfg = stage(serde_json::json!({
            "where": "n_words >= 2 AND lang IS NOT NULL",
            "reason": "short_or_unknown",
            "columns": {"n_words": "array_length(string_to_array(text, ' '), 1)", "lang": "upper(lang)"}
        }));
        let schema = cfg.output_schema(&b.schema()).unwrap();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["id", "text", "lang", "n_words"], "a derived column replaces in place, new ones follow");
        let mut t = cfg.build(&b.schema()).unwrap();
        let Processed::Filtered { batch, verdicts } = t.process(b).unwrap() else { panic!("a filter") };
        let reasons: Vec<Option<&str>> = verdicts.iter().map(|v| v.as_deref()).collect();
        assert_eq!(reasons, [None, None, Some("short_or_unknown")]);
        assert_eq!(batch.column(2).as_string::<i32>().value(1), "DE");
        let n = arrow::compute::cast(batch.column(3), &DataType::Int64).unwrap();
        assert_eq!(n.as_any().downcast_ref::<Int64Array>().unwrap().values(), &[2, 4, 1]);
    }

    #[test]
    fn problems_are_reported_at_the_option_with_the_closest_column() {
        let b = input();
        let e = stage(serde_json::json!({"where": "lnag = 'en'"})).output_schema(&b.schema()).unwrap_err();
        let (path, help) = e.1.clone().unwrap();
        assert_eq!(path, vec![key("where")]);
        assert!(help.unwrap().contains("did you mean `lang`?"), "{e:?}");
        let e = stage(serde_json::json!({"where": "length(text)"})).output_schema(&b.schema()).unwrap_err();
        assert!(e.0.contains("must be true or false"), "{e:?}");
        let e = stage(serde_json::json!({"columns": {"x": "text + 1"}})).output_schema(&b.schema()).unwrap_err();
        assert_eq!(e.1.unwrap().0, vec![key("columns"), key("x")]);
        let e = configure(serde_json::json!({"where": "lang = = 'en'"}), &ConfigureContext::working_dir()).unwrap_err();
        assert!(e.message.contains("not a SQL expression") && e.path == vec![key("where")], "{e:?}");
        assert!(configure(serde_json::json!({}), &ConfigureContext::working_dir()).is_err());
    }
}
