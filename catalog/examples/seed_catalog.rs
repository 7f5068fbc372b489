//! Seeds a catalog with many synthetic versions, for timing `catalog log` and
//! `catalog list` (bench/catalog.sh). The manifests are the real types with
//! made-up numbers: 1 shard, 20 stat groups and 4 funnel stages each.
//! With RUNS, the first dataset also gets that many scheduled-run records
//! (daily intervals, one in 50 failed after 3 attempts), and with
//! FIRST_VERSIONS it has that many versions instead of VERSIONS (bench/ui.sh).
//!
//!     cargo run --release -p smelt-catalog --example seed_catalog -- DATA_DIR DATASETS VERSIONS [RUNS [FIRST_VERSIONS]]

use smelt_catalog::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: seed_catalog DATA_DIR DATASETS VERSIONS [RUNS [FIRST_VERSIONS]]";
    let (dir, datasets, versions) = match args.get(1..4) {
        Some([d, n, v]) => (std::path::PathBuf::from(d), n.parse::<usize>()?, v.parse::<u64>()?),
        _ => return Err(usage.into()),
    };
    let runs: usize = args.get(4).map(|r| r.parse()).transpose()?.unwrap_or(0);
    let first_versions: u64 = args.get(5).map(|r| r.parse()).transpose()?.unwrap_or(versions);
    let catalog = Catalog::open(&dir)?;
    for d in 0..datasets {
        let name = format!("ds{d:03}");
        for v in 1..=(if d == 0 { first_versions } else { versions }) {
            let m: VersionManifest = serde_json::from_value(serde_json::json!({
                "format": FORMAT_VERSION, "dataset": name, "version": v, "committed_at": "2026-11-26T00:00:00Z",
                "digest": format!("xxh3-128:{v:032x}"),
                "schema": [{"name": "id", "data_type": "Utf8", "nullable": false}],
                "shards": [{"path": format!("runs/r{v}/shards/part-00000-0000.parquet"), "split": 0, "rows": 1000, "bytes": 100000, "checksum": "c"}],
                "totals": {"rows": 1000, "shards": 1, "bytes": 100000, "tokens": 0, "text_bytes": 500000},
                "stats": (0..20).map(|g| serde_json::json!({"lang": "en", "source": "cc", "domain": format!("d{g}.org"), "docs": 50, "tokens": 0, "text_bytes": 25000})).collect::<Vec<_>>(),
                "funnel": (0..4).map(|s| serde_json::json!({"stage": format!("s{s}"), "rows_in": 1000, "rows_out": 1000, "drops": {}, "skips": {}, "busy_ms": 1})).collect::<Vec<_>>(),
                "lineage": {"run_id": format!("r{v}"), "pipeline_path": "p.yaml", "pipeline_hash": "h", "resolved_config": {"stages": []},
                            "smelt_version": "0.1.0", "inputs": []}
            }))?;
            catalog.record(&format!("/data/{name}"), &m)?;
        }
    }
    let day0 = chrono::NaiveDate::from_ymd_opt(2000, 1, 1).ok_or("date")?;
    for i in 0..runs {
        let start = (day0 + chrono::Days::new(i as u64)).format("%Y-%m-%dT06:00:00Z").to_string();
        let end = (day0 + chrono::Days::new(i as u64 + 1)).format("%Y-%m-%dT06:00:00Z").to_string();
        let failed = i % 50 == 49;
        let attempts: u32 = if failed { 3 } else { 1 };
        let r: RunRecord = serde_json::from_value(serde_json::json!({
            "run_id": format!("ds000-{}", start.replace(['-', ':'], "")), "dataset": "ds000", "pipeline": "/p.yaml",
            "interval": {"start": start, "end": end, "cron": "0 6 * * *", "timezone": "UTC"},
            "status": if failed { "failed" } else { "succeeded" }, "attempts": attempts, "max_attempts": 3,
            "last_error": if failed { Some("error: cannot read https://example.com/feed.xml: 503") } else { None },
            "next_attempt_at": null, "pid": null, "trigger": "schedule", "created_at": start, "updated_at": end,
            "history": (1..=attempts).map(|n| serde_json::json!({"number": n, "started_at": start, "finished_at": end,
                "exit_code": if failed { 1 } else { 0 }, "log": format!("/logs/{i}-{n}.log")})).collect::<Vec<_>>(),
        }))?;
        catalog.put_run_record(&r)?;
    }
    println!("seeded {datasets} datasets x {versions} versions and {runs} runs in {}", dir.display());
    Ok(())
}
