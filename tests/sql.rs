//! `smelt sql` through the library: the quick start committed by the real
//! binary, then queried with DataFusion over its manifest's shards.

mod common;

use std::collections::BTreeMap;

use arrow::array::{Array, FixedSizeBinaryArray, StringArray, UInt64Array};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use common::{example, Env};
use smelt_catalog::Catalog;
use smelt_query::sql::{query, write_results, SqlFormat};

/// The quick start committed once (run id `first`), and its manifest.
fn committed() -> (Env, serde_json::Value) {
    let env = Env::new();
    let run = env.json(&["run", &example("quickstart.yaml").display().to_string(), "--run-id", "first"]);
    assert_eq!(run["version"], 1);
    let manifest = env.json(&["catalog", "show", "quickstart@1"]);
    (env, manifest)
}

fn sql(env: &Env, q: &str) -> Result<Vec<RecordBatch>, smelt_catalog::CatalogError> {
    // The binary has exited, so this process can open the index.
    // sled may still be releasing a previous handle of this process: wait for the lock.
    let catalog = Catalog::open_wait(&env.data(), std::time::Duration::from_secs(20)).unwrap();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(query(&catalog, q))
}

fn ok(env: &Env, q: &str) -> Vec<RecordBatch> {
    sql(env, q).unwrap_or_else(|e| panic!("{q}: {e}"))
}

fn err(env: &Env, q: &str) -> String {
    match sql(env, q) {
        Ok(b) => panic!("{q} succeeded with {} rows", b.iter().map(RecordBatch::num_rows).sum::<usize>()),
        Err(e) => e.to_string(),
    }
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

fn table(batches: &[RecordBatch]) -> String {
    let mut out = Vec::new();
    write_results(batches, SqlFormat::Table, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// `name=1234` or `name=1.2 K` in an EXPLAIN ANALYZE plan.
fn metric(plan: &str, name: &str) -> Option<u64> {
    let at = plan.find(name)? + name.len();
    let value: String =
        plan[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == ' ').collect();
    let mut parts = value.split_whitespace();
    let number: f64 = parts.next()?.parse().ok()?;
    let scale = match parts.next() {
        Some("K" | "KB") => 1e3,
        Some("M" | "MB") => 1e6,
        _ => 1.0,
    };
    Some((number * scale) as u64)
}

#[test]
fn sql_over_the_quickstart_matches_its_manifest() {
    let (env, m) = committed();
    let rows = m["totals"]["rows"].as_u64().unwrap();
    assert!(rows >= 15, "{rows}");

    // Counts: every form of the name reads the same shards.
    for name in [r#""quickstart@1""#, r#""quickstart@latest""#, "quickstart"] {
        let b = ok(&env, &format!("SELECT count(*), count(DISTINCT id), count(content_hash) FROM {name}"));
        assert_eq!((u64s(&b, 0), u64s(&b, 1), u64s(&b, 2)), (vec![rows], vec![rows], vec![rows]), "{name}");
    }

    // GROUP BY source equals the statistics stored at commit.
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for g in m["stats"].as_array().unwrap() {
        *expected.entry(g["source"].as_str().unwrap().to_string()).or_default() += g["docs"].as_u64().unwrap();
    }
    let b = ok(&env, r#"SELECT source, count(*) FROM "quickstart@1" GROUP BY source ORDER BY source"#);
    let got: BTreeMap<String, u64> = strings(&b, 0).into_iter().zip(u64s(&b, 1)).collect();
    assert_eq!(got, expected);
    // ... and the `stats` catalog table holds the same numbers.
    let b = ok(&env, "SELECT source, sum(docs) FROM stats WHERE dataset = 'quickstart' AND version = 1 GROUP BY source ORDER BY source");
    let from_stats: BTreeMap<String, u64> = strings(&b, 0).into_iter().zip(u64s(&b, 1)).collect();
    assert_eq!(from_stats, expected);

    // The ids and content hashes are those of the Parquet shards.
    let b = ok(&env, r#"SELECT id, content_hash FROM "quickstart@1" ORDER BY id"#);
    let mut ours: Vec<(String, Vec<u8>)> = Vec::new();
    for batch in &b {
        let ids = batch.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        let hashes = batch.column(1).as_any().downcast_ref::<FixedSizeBinaryArray>().unwrap();
        for i in 0..batch.num_rows() {
            ours.push((ids.value(i).to_string(), hashes.value(i).to_vec()));
        }
    }
    let root = env.data().join("datasets/quickstart");
    let mut direct = Vec::new();
    for (_, bytes) in common::shard_bytes(&m, &root) {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let ids = batch.column_by_name("id").unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
            let hashes = batch.column_by_name("content_hash").unwrap();
            let hashes = hashes.as_any().downcast_ref::<FixedSizeBinaryArray>().unwrap();
            for i in 0..batch.num_rows() {
                direct.push((ids.value(i).to_string(), hashes.value(i).to_vec()));
            }
        }
    }
    direct.sort();
    assert_eq!(ours, direct);
}

#[test]
fn catalog_tables_list_the_version() {
    let (env, m) = committed();
    let b = ok(&env, "SELECT dataset, version, run_id, rows, shards, bytes, digest, pipeline_hash FROM versions");
    assert_eq!(strings(&b, 0), ["quickstart"]);
    assert_eq!(u64s(&b, 1), [1]);
    assert_eq!(strings(&b, 2), ["first"]);
    assert_eq!(u64s(&b, 3), [m["totals"]["rows"].as_u64().unwrap()]);
    assert_eq!(u64s(&b, 4), [m["totals"]["shards"].as_u64().unwrap()]);
    assert_eq!(u64s(&b, 5), [m["totals"]["bytes"].as_u64().unwrap()]);
    assert_eq!(strings(&b, 6), [m["digest"].as_str().unwrap()]);
    assert_eq!(strings(&b, 7), [m["lineage"]["pipeline_hash"].as_str().unwrap()]);

    let b = ok(&env, "SELECT dataset, latest, versions FROM datasets");
    assert_eq!((strings(&b, 0), u64s(&b, 1), u64s(&b, 2)), (vec!["quickstart".to_string()], vec![1], vec![1]));
    let b = ok(&env, "SELECT path, rows, bytes, checksum FROM shards WHERE dataset = 'quickstart' ORDER BY shard");
    let shards = m["shards"].as_array().unwrap();
    assert_eq!(strings(&b, 0), shards.iter().map(|s| s["path"].as_str().unwrap().to_string()).collect::<Vec<_>>());
    assert_eq!(u64s(&b, 2), shards.iter().map(|s| s["bytes"].as_u64().unwrap()).collect::<Vec<_>>());
    let b = ok(&env, "SELECT run_id, version, input_splits FROM runs");
    assert_eq!((strings(&b, 0), u64s(&b, 1), u64s(&b, 2)), (vec!["first".to_string()], vec![1], vec![3]));
    let b = ok(&env, "SELECT stage, rows_out FROM funnel WHERE version = 1 ORDER BY position");
    let funnel = m["funnel"].as_array().unwrap();
    assert_eq!(strings(&b, 0), funnel.iter().map(|s| s["stage"].as_str().unwrap().to_string()).collect::<Vec<_>>());
}

#[test]
fn one_column_reads_only_that_column() {
    let (env, m) = committed();
    let plan = table(&ok(&env, r#"EXPLAIN SELECT id FROM "quickstart@1""#));
    assert!(plan.contains("DataSourceExec") && plan.contains("projection=[id]"), "{plan}");
    let plan = table(&ok(&env, r#"EXPLAIN SELECT id FROM "quickstart@1" WHERE source = 'cc:CC-MAIN-2020-34'"#));
    assert!(plan.contains("predicate=source@"), "{plan}");

    // `id` is a small part of each shard (`text` is most of it): far fewer bytes are read.
    let total = m["totals"]["bytes"].as_u64().unwrap();
    let analyzed = table(&ok(&env, r#"EXPLAIN ANALYZE SELECT id FROM "quickstart@1""#));
    let scanned = metric(&analyzed, "bytes_scanned=").unwrap_or_else(|| panic!("no bytes_scanned:\n{analyzed}"));
    assert!(scanned > 0 && scanned * 4 < total, "read {scanned} of {total} bytes for one column:\n{analyzed}");
    let analyzed = table(&ok(&env, r#"EXPLAIN ANALYZE SELECT text FROM "quickstart@1""#));
    let text_scanned = metric(&analyzed, "bytes_scanned=").unwrap();
    assert!(text_scanned > scanned, "text {text_scanned} vs id {scanned}");
}

#[test]
fn unknown_versions_and_bad_sql_say_what_is_wrong() {
    let (env, _) = committed();
    let e = err(&env, r#"SELECT * FROM "quickstart@7""#);
    assert!(e.contains("quickstart@7 does not exist") && e.contains("quickstart has versions 1 (latest 1)"), "{e}");
    let e = err(&env, r#"SELECT * FROM "quickstrat@1""#);
    assert!(e.contains(r#"did you mean "quickstart""#), "{e}");
    let e = err(&env, r#"SELECT id FROM "quickstart@1" WHERE"#);
    assert!(e.starts_with("SQL error: sql parser error: ") && e.contains("at line 1, column"), "{e}");
    let e = err(&env, r#"SELEC id FROM "quickstart@1""#);
    assert!(e.starts_with("SQL error: ") && e.contains("SELEC") && e.contains("^"), "{e}");
    let e = err(&env, r#"SELECT idd FROM "quickstart@1""#);
    assert!(e.contains("idd") && e.contains("at line 1, column 8"), "{e}");
}
