//! Seeds a catalog with many synthetic versions, for timing `catalog log` and
//! `catalog list` (bench/catalog.sh). The manifests are the real types with
//! made-up numbers: 1 shard, 20 stat groups and 4 funnel stages each.
//!
//!     cargo run --release -p smelt-catalog --example seed_catalog -- DATA_DIR DATASETS VERSIONS

use smelt_catalog::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (dir, datasets, versions) = match args.as_slice() {
        [_, d, n, v] => (std::path::PathBuf::from(d), n.parse::<usize>()?, v.parse::<u64>()?),
        _ => return Err("usage: seed_catalog DATA_DIR DATASETS VERSIONS".into()),
    };
    let catalog = Catalog::open(&dir)?;
    for d in 0..datasets {
        let name = format!("ds{d:03}");
        for v in 1..=versions {
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
    println!("seeded {datasets} datasets x {versions} versions in {}", dir.display());
    Ok(())
}
