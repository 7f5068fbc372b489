//! Unit tests of `smelt sql` over small datasets written here.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{Array, FixedSizeBinaryBuilder, LargeStringArray, ListArray, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, UInt32Type};
use arrow::record_batch::RecordBatch;

use super::*;
use smelt_catalog::model::{FieldDesc, GroupStats, Lineage, ShardEntry, StageMetrics, Totals, VersionManifest};

struct Fixture {
    _dir: tempfile::TempDir,
    catalog: Catalog,
    root: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog::open(&dir.path().join("data")).unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap().join("datasets/ds");
    std::fs::create_dir_all(&root).unwrap();
    Fixture { _dir: dir, catalog, root }
}

/// Rows `(id, source)`; text is `text of <id>`, content_hash 16 bytes of the id's first byte.
fn docs(rows: &[(&str, &str)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("text", DataType::LargeUtf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("content_hash", DataType::FixedSizeBinary(16), false),
        Field::new("input_ids", DataType::new_list(DataType::UInt32, true), true),
    ]));
    let ids = StringArray::from_iter_values(rows.iter().map(|r| r.0));
    let text = LargeStringArray::from_iter_values(rows.iter().map(|r| format!("text of {}", r.0)));
    let source = StringArray::from_iter_values(rows.iter().map(|r| r.1));
    let mut hash = FixedSizeBinaryBuilder::with_capacity(rows.len(), 16);
    for r in rows {
        hash.append_value([r.0.as_bytes()[0]; 16]).unwrap();
    }
    let hash = hash.finish();
    let input_ids = ListArray::from_iter_primitive::<UInt32Type, _, _>(
        rows.iter().enumerate().map(|(i, _)| Some(vec![Some(i as u32), Some(7)])),
    );
    RecordBatch::try_new(
        schema,
        vec![Arc::new(ids), Arc::new(text), Arc::new(source), Arc::new(hash), Arc::new(input_ids)],
    )
    .unwrap()
}

/// Writes `shards` as version `version` of dataset `ds` under `f.root` and records it with `root_url`.
fn commit(f: &Fixture, root_url: &str, version: u64, shards: &[RecordBatch]) -> VersionManifest {
    let run_id = format!("run{version}");
    let mut entries = Vec::new();
    let mut stats: BTreeMap<String, u64> = BTreeMap::new();
    for (i, b) in shards.iter().enumerate() {
        let rel = format!("runs/{run_id}/shards/part-{i:05}-0000.parquet");
        let path = f.root.join(&rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        // Two rows per row group, so that predicates can prune row groups.
        let props = parquet::file::properties::WriterProperties::builder().set_max_row_group_row_count(Some(2)).build();
        let mut buf = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, b.schema(), Some(props)).unwrap();
        w.write(b).unwrap();
        w.close().unwrap();
        std::fs::write(&path, &buf).unwrap();
        let sources = b.column_by_name("source").unwrap().as_any().downcast_ref::<StringArray>().unwrap();
        for s in sources.iter() {
            *stats.entry(s.unwrap().to_string()).or_default() += 1;
        }
        entries.push(ShardEntry {
            path: rel,
            split: i as u32,
            rows: b.num_rows() as u64,
            bytes: buf.len() as u64,
            checksum: format!("xxh3-128:{:032x}", xxhash_rust::xxh3::xxh3_128(&buf)),
            content: None,
        });
    }
    let schema = docs(&[]).schema();
    let fields: Vec<FieldDesc> = schema
        .fields()
        .iter()
        .map(|f| FieldDesc { name: f.name().clone(), data_type: f.data_type().to_string(), nullable: f.is_nullable() })
        .collect();
    let totals = Totals {
        rows: entries.iter().map(|e| e.rows).sum(),
        shards: entries.len() as u64,
        bytes: entries.iter().map(|e| e.bytes).sum(),
        tokens: 0,
        text_bytes: 0,
    };
    let stats: Vec<GroupStats> = stats
        .into_iter()
        .map(|(source, docs)| GroupStats {
            lang: "und".into(),
            source,
            domain: "-".into(),
            docs,
            tokens: 0,
            text_bytes: 0,
        })
        .collect();
    let funnel = vec![StageMetrics {
        stage: "filter".into(),
        rows_in: 10,
        rows_out: 8,
        drops: BTreeMap::from([("too_short".to_string(), 2)]),
        skips: BTreeMap::new(),
        counters: BTreeMap::new(),
        samples: BTreeMap::new(),
        busy_ms: 1,
        state: None,
    }];
    let lineage = Lineage {
        run_id,
        pipeline_path: "p.yaml".into(),
        pipeline_hash: "0".repeat(32),
        resolved_config: serde_json::json!({}),
        smelt_version: "0.1.0".into(),
        inputs: vec![],
        source_state: vec![],
        interval: None,
        compacted_from: None,
        upstream: Vec::new(),
    };
    // Through JSON, as a manifest file is read: fields added later keep their defaults.
    let m: VersionManifest = serde_json::from_value(serde_json::json!({
        "format": smelt_catalog::model::FORMAT_VERSION,
        "dataset": "ds",
        "version": version,
        "committed_at": "2026-11-26T10:00:00Z",
        "digest": format!("digest{version}"),
        "schema": fields,
        "shards": entries,
        "totals": totals,
        "stats": stats,
        "funnel": funnel,
        "lineage": lineage,
    }))
    .unwrap();
    let manifest_file = f.root.join(smelt_catalog::model::manifest_path(version));
    std::fs::create_dir_all(manifest_file.parent().unwrap()).unwrap();
    std::fs::write(manifest_file, smelt_catalog::store::to_json_bytes(&m)).unwrap();
    f.catalog.record(root_url, &m).unwrap();
    m
}

fn local(f: &Fixture) -> String {
    f.root.display().to_string()
}

/// Two versions: @1 has 5 rows in 2 shards, @2 has 3 rows in 1 shard.
fn two_versions() -> Fixture {
    let f = fixture();
    let url = local(&f);
    commit(&f, &url, 1, &[docs(&[("a1", "cc"), ("a2", "cc"), ("a3", "rss")]), docs(&[("b1", "rss"), ("b2", "cc")])]);
    commit(&f, &url, 2, &[docs(&[("c1", "cc"), ("c2", "cc"), ("c3", "cc")])]);
    f
}

async fn rows(f: &Fixture, sql: &str) -> Vec<RecordBatch> {
    query(&f.catalog, sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn text(batches: &[RecordBatch], format: SqlFormat) -> String {
    let mut out = Vec::new();
    write_results(batches, format, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn u64s(batches: &[RecordBatch], col: usize) -> Vec<u64> {
    batches
        .iter()
        .flat_map(|b| {
            let c = arrow::compute::cast(b.column(col), &DataType::UInt64).unwrap();
            c.as_any().downcast_ref::<UInt64Array>().unwrap().values().to_vec()
        })
        .collect()
}

fn strings(batches: &[RecordBatch], col: usize) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let c = arrow::compute::cast(b.column(col), &DataType::Utf8).unwrap();
            let c = c.as_any().downcast_ref::<StringArray>().unwrap().clone();
            (0..c.len()).map(move |i| c.value(i).to_string())
        })
        .collect()
}

async fn error(f: &Fixture, sql: &str) -> String {
    match query(&f.catalog, sql).await {
        Ok(b) => panic!("{sql} succeeded: {}", text(&b, SqlFormat::Table)),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn versions_read_exactly_their_shards() {
    let f = two_versions();
    let b = rows(&f, r#"SELECT count(*), count(DISTINCT id) FROM "ds@1""#).await;
    assert_eq!((u64s(&b, 0), u64s(&b, 1)), (vec![5], vec![5]));
    for latest in [r#""ds@2""#, r#""ds@latest""#, "ds"] {
        let b = rows(&f, &format!("SELECT id FROM {latest} ORDER BY id")).await;
        assert_eq!(strings(&b, 0), ["c1", "c2", "c3"], "{latest}");
    }
    let b = rows(&f, r#"SELECT source, count(*) AS n FROM "ds@1" GROUP BY source ORDER BY source"#).await;
    assert_eq!(strings(&b, 0), ["cc", "rss"]);
    assert_eq!(u64s(&b, 1), [3, 2]);
    // Both versions in one query, and a filter on the text.
    let b =
        rows(&f, r#"SELECT count(*) FROM (SELECT id FROM "ds@1" UNION ALL SELECT id FROM "ds@2") WHERE id LIKE '%1'"#)
            .await;
    assert_eq!(u64s(&b, 0), [3]);
    let b = rows(&f, r#"SELECT id FROM "ds@1" WHERE text = 'text of b2'"#).await;
    assert_eq!(strings(&b, 0), ["b2"]);
}

#[tokio::test]
async fn tags_name_versions() {
    let f = two_versions();
    f.catalog.set_tag("ds", "prod", 1).unwrap();
    let b = rows(&f, r#"SELECT count(*) FROM "ds@prod""#).await;
    assert_eq!(u64s(&b, 0), [5]);
    let b = rows(&f, "SELECT dataset, tag, version FROM tags").await;
    assert_eq!((strings(&b, 0), strings(&b, 1), u64s(&b, 2)), (vec!["ds".into()], vec!["prod".into()], vec![1]));
    let e = error(&f, r#"SELECT * FROM "ds@prd""#).await;
    assert!(e.contains("ds@prd") && e.contains("prod"), "{e}");
}

#[tokio::test]
async fn projection_and_filters_reach_the_parquet_reader() {
    let f = two_versions();
    let plan = text(&rows(&f, r#"EXPLAIN SELECT id FROM "ds@1""#).await, SqlFormat::Table);
    assert!(plan.contains("DataSourceExec") && plan.contains("projection=[id]"), "{plan}");
    assert!(plan.contains("part-00000-0000.parquet") && plan.contains("part-00001-0000.parquet"), "{plan}");
    let plan = text(&rows(&f, r#"EXPLAIN SELECT id FROM "ds@1" WHERE source = 'rss'"#).await, SqlFormat::Table);
    assert!(plan.contains("predicate=source@") && plan.contains("rss"), "{plan}");

    // Metrics: the one-column scan reads fewer bytes than the shards hold.
    let m = f.catalog.manifest("ds", 1).unwrap().unwrap();
    let analyzed = text(&rows(&f, r#"EXPLAIN ANALYZE SELECT id FROM "ds@1""#).await, SqlFormat::Table);
    let scanned = metric(&analyzed, "bytes_scanned=").unwrap_or_else(|| panic!("no bytes_scanned in {analyzed}"));
    assert!(scanned > 0 && scanned < m.totals.bytes, "scanned {scanned} of {} bytes:\n{analyzed}", m.totals.bytes);
    // Row groups are pruned by the predicate.
    let analyzed = text(&rows(&f, r#"EXPLAIN ANALYZE SELECT id FROM "ds@1" WHERE id = 'b2'"#).await, SqlFormat::Table);
    assert!(analyzed.contains("row_groups_pruned_statistics="), "{analyzed}");
}

/// The value of metric `name` (`bytes_scanned=1234` or `bytes_scanned=1.2 K`) in an EXPLAIN ANALYZE plan.
pub(crate) fn metric(plan: &str, name: &str) -> Option<u64> {
    let at = plan.find(name)? + name.len();
    let value: String = plan[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ' ' || c.is_ascii_alphabetic())
        .collect();
    let mut parts = value.split_whitespace();
    let number: f64 = parts.next()?.parse().ok()?;
    let scale = match parts.next() {
        Some("K" | "KB") => 1e3,
        Some("M" | "MB") => 1e6,
        Some("G" | "GB") => 1e9,
        _ => 1.0,
    };
    Some((number * scale) as u64)
}

#[tokio::test]
async fn catalog_tables_describe_the_versions() {
    let f = two_versions();
    let b =
        rows(&f, "SELECT dataset, version, run_id, rows, shards, committed_at FROM versions ORDER BY version").await;
    assert_eq!(u64s(&b, 1), [1, 2]);
    assert_eq!(strings(&b, 2), ["run1", "run2"]);
    assert_eq!(u64s(&b, 3), [5, 3]);
    assert_eq!(u64s(&b, 4), [2, 1]);
    assert_eq!(strings(&b, 5)[0], "2026-11-26T10:00:00Z");
    let b = rows(&f, "SELECT dataset, latest, versions, rows FROM datasets").await;
    assert_eq!((strings(&b, 0), u64s(&b, 1), u64s(&b, 2), u64s(&b, 3)), (vec!["ds".into()], vec![2], vec![2], vec![3]));
    let b = rows(&f, "SELECT version, count(*), sum(rows) FROM shards GROUP BY version ORDER BY version").await;
    assert_eq!((u64s(&b, 1), u64s(&b, 2)), (vec![2, 1], vec![5, 3]));
    let b = rows(&f, "SELECT url FROM shards WHERE version = 2").await;
    assert_eq!(strings(&b, 0), [format!("{}/runs/run2/shards/part-00000-0000.parquet", local(&f))]);
    let b = rows(&f, "SELECT run_id, version FROM runs ORDER BY version").await;
    assert_eq!(strings(&b, 0), ["run1", "run2"]);
    let b = rows(&f, "SELECT source, docs FROM stats WHERE version = 1 ORDER BY source").await;
    assert_eq!((strings(&b, 0), u64s(&b, 1)), (vec!["cc".into(), "rss".into()], vec![3, 2]));
    let b = rows(&f, "SELECT stage, dropped FROM funnel WHERE version = 1").await;
    assert_eq!((strings(&b, 0), u64s(&b, 1)), (vec!["filter".into()], vec![2]));
    let b = rows(&f, "SELECT reason, rows FROM drops WHERE version = 1").await;
    assert_eq!((strings(&b, 0), u64s(&b, 1)), (vec!["too_short".into()], vec![2]));
    // Catalog tables join dataset tables.
    let b = rows(
        &f,
        r#"SELECT s.source, s.docs, count(d.id) FROM stats s JOIN "ds@1" d ON d.source = s.source
           WHERE s.version = 1 GROUP BY s.source, s.docs ORDER BY s.source"#,
    )
    .await;
    assert_eq!(u64s(&b, 1), u64s(&b, 2));
}

#[tokio::test]
async fn an_empty_catalog_has_empty_tables() {
    let f = fixture();
    for t in CATALOG_TABLES {
        let b = rows(&f, &format!("SELECT * FROM {t}")).await;
        assert_eq!(b.iter().map(RecordBatch::num_rows).sum::<usize>(), 0, "{t}");
        assert!(b[0].num_columns() >= 3, "{t}");
    }
    let e = error(&f, "SELECT * FROM quickstart").await;
    assert!(e.contains("datasets: none yet"), "{e}");
}

#[tokio::test]
async fn unknown_names_suggest_close_ones() {
    let f = two_versions();
    let e = error(&f, r#"SELECT * FROM "dss@1""#).await;
    assert!(e.contains(r#"table "dss@1" is neither a dataset"#) && e.contains(r#"did you mean "ds""#), "{e}");
    let e = error(&f, "SELECT * FROM verions").await;
    assert!(e.contains(r#"did you mean "versions""#), "{e}");
    let e = error(&f, r#"SELECT * FROM "ds@9""#).await;
    assert!(e.contains("ds@9 does not exist") && e.contains("ds has versions 1, 2 (latest 2)"), "{e}");
    let e = error(&f, r#"SELECT * FROM "ds@x y""#).await;
    assert!(e.contains("ds@x y"), "{e}");
}

#[tokio::test]
async fn sql_errors_carry_datafusion_messages_and_positions() {
    let f = two_versions();
    let e = error(&f, "SELECT id\nFORM \"ds@1\"").await;
    assert!(e.starts_with("SQL error: "), "{e}");
    // `FORM` reads as an alias of `id`; the parser stops at the table name.
    assert!(e.contains("at line 2, column 6") && e.contains("\n  FORM \"ds@1\"\n       ^"), "{e}");
    let e = error(&f, r#"SELECT nope FROM "ds@1""#).await;
    assert!(e.starts_with("SQL error: ") && e.contains("nope"), "{e}");
    assert!(e.contains("at line 1, column 8"), "{e}");
    let e = error(&f, "SELECT 1; SELECT 2").await;
    assert!(e.contains("single SQL statement"), "{e}");
}

#[tokio::test]
async fn only_reading_statements_run() {
    let f = two_versions();
    let out = f.root.join("copied.csv");
    for sql in [
        format!(r#"COPY (SELECT id FROM "ds@1") TO '{}'"#, out.display()),
        "CREATE TABLE t AS SELECT 1".to_string(),
        "SET datafusion.execution.batch_size = 1".to_string(),
    ] {
        let e = error(&f, &sql).await;
        assert!(e.contains("only reads"), "{sql}: {e}");
    }
    assert!(!out.exists());
    let b = rows(&f, r#"DESCRIBE "ds@1""#).await;
    assert!(strings(&b, 0).contains(&"content_hash".to_string()));
}

#[tokio::test]
async fn a_missing_shard_is_a_storage_error() {
    let f = two_versions();
    let m = f.catalog.manifest("ds", 1).unwrap().unwrap();
    std::fs::remove_file(f.root.join(&m.shards[1].path)).unwrap();
    let e = query(&f.catalog, r#"SELECT count(DISTINCT id) FROM "ds@1""#).await.unwrap_err();
    assert!(matches!(e, CatalogError::Storage { .. }), "{e:?}");
    assert!(e.to_string().contains("part-00001-0000.parquet"), "{e}");
}

#[tokio::test]
async fn a_version_without_shards_is_an_empty_table_with_its_schema() {
    let f = fixture();
    commit(&f, &local(&f), 1, &[]);
    let b = rows(&f, r#"SELECT * FROM "ds@1""#).await;
    assert_eq!(b[0].num_rows(), 0);
    assert_eq!(b[0].schema().field(0).name(), "id");
    let b = rows(&f, r#"SELECT count(*) FROM "ds@1""#).await;
    assert_eq!(u64s(&b, 0), [0]);
}

#[tokio::test]
async fn url_roots_go_through_object_store() {
    let f = fixture();
    let url = format!("file://{}", local(&f));
    commit(&f, &url, 1, &[docs(&[("a", "cc"), ("b", "cc")])]);
    let b = rows(&f, r#"SELECT id FROM "ds@1" ORDER BY id"#).await;
    assert_eq!(strings(&b, 0), ["a", "b"]);
}

#[tokio::test]
async fn results_write_as_table_csv_json_and_parquet() {
    let f = two_versions();
    let b = rows(&f, r#"SELECT id, source, content_hash, input_ids FROM "ds@2" ORDER BY id LIMIT 2"#).await;

    let table = text(&b, SqlFormat::Table);
    assert!(
        table.contains("| id ") && table.contains("| c1 ") && table.contains("63636363636363636363636363636363"),
        "{table}"
    );

    let csv = text(&b, SqlFormat::Csv);
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("id,source,content_hash,input_ids"));
    assert_eq!(lines.next(), Some(r#"c1,cc,63636363636363636363636363636363,"[0, 7]""#));
    assert_eq!(lines.count(), 1);

    let json: serde_json::Value = serde_json::from_str(&text(&b, SqlFormat::Json)).unwrap();
    assert_eq!(json[0]["id"], "c1");
    assert_eq!(json[0]["content_hash"], "63636363636363636363636363636363");
    assert_eq!(json[1]["input_ids"], serde_json::json!([1, 7]));

    let mut pq = Vec::new();
    write_results(&b, SqlFormat::Parquet, &mut pq).unwrap();
    let back: Vec<RecordBatch> =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(pq))
            .unwrap()
            .build()
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
    assert_eq!(
        arrow::compute::concat_batches(&back[0].schema(), &back).unwrap(),
        arrow::compute::concat_batches(&b[0].schema(), &b).unwrap()
    );
}

#[tokio::test]
async fn empty_results_keep_their_columns() {
    let f = two_versions();
    let b = rows(&f, r#"SELECT id, source FROM "ds@1" WHERE id = 'none'"#).await;
    assert_eq!(text(&b, SqlFormat::Csv), "id,source\n");
    assert_eq!(text(&b, SqlFormat::Json), "[]\n");
    assert!(text(&b, SqlFormat::Table).contains("| id | source |"));
    let mut pq = Vec::new();
    write_results(&b, SqlFormat::Parquet, &mut pq).unwrap();
    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(pq)).unwrap();
    assert_eq!(r.schema().fields().len(), 2);
}

#[test]
fn a_closed_pipe_ends_output_quietly() {
    struct Closed;
    impl std::io::Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let b = docs(&[("a", "cc")]);
    for format in [SqlFormat::Table, SqlFormat::Csv, SqlFormat::Json, SqlFormat::Parquet] {
        write_results(std::slice::from_ref(&b), format, &mut Closed).unwrap();
    }
}

#[test]
fn positions_are_read_from_parser_messages() {
    assert_eq!(position_in_message("Expected: end of statement, found: FORM at Line: 2, Column: 1"), Some((2, 1)));
    assert_eq!(position_in_message("no position"), None);
    assert_eq!(pointer("SELECT * FORM x", 1, 10), "\n  at line 1, column 10:\n  SELECT * FORM x\n           ^");
    assert_eq!(end_of("SELECT *\nFROM x WHERE \n"), (2, 13));
    assert_eq!(metric("x bytes_scanned=1.5 K, y", "bytes_scanned="), Some(1500));
    assert_eq!(metric("bytes_scanned=812, y", "bytes_scanned="), Some(812));
}
