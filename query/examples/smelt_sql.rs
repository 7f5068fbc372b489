//! `smelt sql` without the CLI: runs one query over a data directory's catalog.
//!
//! ```text
//! cargo run -p smelt-query --example smelt_sql -- --data-dir smelt-data \
//!     'SELECT source, count(*) FROM "quickstart@1" GROUP BY source' [--format table|csv|json|parquet] [--output FILE]
//! ```
//! The interop test (tests/interop/test_read.py) uses it where the `smelt`
//! binary has no `sql` subcommand.

use std::path::PathBuf;
use std::process::ExitCode;

use smelt_catalog::Catalog;
use smelt_query::sql::{query, write_results, SqlFormat};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut data_dir, mut sql, mut format, mut output) = (PathBuf::from("smelt-data"), None, SqlFormat::Table, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--data-dir" => data_dir = args.next().map(PathBuf::from).unwrap_or(data_dir),
            "--output" => output = args.next().map(PathBuf::from),
            "--format" => {
                format = match args.next().as_deref() {
                    Some("table") => SqlFormat::Table,
                    Some("csv") => SqlFormat::Csv,
                    Some("json") => SqlFormat::Json,
                    Some("parquet") => SqlFormat::Parquet,
                    other => return fail(&format!("unknown --format {other:?}: table, csv, json or parquet")),
                }
            }
            _ if sql.is_none() => sql = Some(a),
            _ => return fail(&format!("unexpected argument {a}")),
        }
    }
    let Some(sql) = sql else { return fail("usage: smelt_sql [--data-dir DIR] QUERY [--format F] [--output FILE]") };
    let catalog = match Catalog::open(&data_dir) {
        Ok(c) => c,
        Err(e) => return fail(&e.to_string()),
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let batches = match runtime.block_on(query(&catalog, &sql)) {
        Ok(b) => b,
        Err(e) => return fail(&e.to_string()),
    };
    let result = match output {
        Some(path) => match std::fs::File::create(&path) {
            Ok(mut f) => write_results(&batches, format, &mut f),
            Err(e) => return fail(&format!("cannot create {}: {e}", path.display())),
        },
        None => write_results(&batches, format, &mut std::io::stdout().lock()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}
