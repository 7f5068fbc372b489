//! `back_translate` through the `smelt` binary: the example pipeline with
//! real Apertium (a version with originals and back-translations, a rerun
//! served by the translation cache under the data directory), a missing
//! Apertium reported by `smelt validate`, and an unreachable HTTP endpoint
//! that trips the circuit breaker while the run still commits every original.

mod common;

use common::{example, stderr, Env};

#[test]
#[ignore = "needs Apertium: apt-get install apertium apertium-eng-spa apertium-eng-cat (.ci/run runs it)"]
fn example_back_translates_and_a_rerun_uses_the_cache() {
    smelt_stages::augment::apertium::require_installed();
    let env = Env::new();
    let p = example("back_translate.yaml").display().to_string();
    env.ok(&["validate", &p]);
    let r = env.json(&["run", &p]);
    assert_eq!(r["version"], 1);
    let bt = &r["stages"][2];
    assert_eq!(bt["stage"], "augmented");
    let c = &bt["counters"];
    let augmented = c["augmented"].as_u64().unwrap();
    assert!(augmented >= 6, "{c}");
    assert_eq!(bt["rows_out"].as_u64().unwrap(), bt["rows_in"].as_u64().unwrap() + augmented);
    assert!(c["pieces_translated"].as_u64().unwrap() > 0, "{c}");
    assert!(env.data().join("cache/back_translate/apertium").is_dir());

    let sql = |q: &str| env.json(&["sql", q]);
    let originals = sql(r#"SELECT count(*) AS n FROM "reuters-bt@1" WHERE augmented_from IS NULL"#);
    assert_eq!(originals[0]["n"], 10, "every story is kept");
    let rows = sql(
        r#"SELECT a.id, a.augmented_from, a.augmentation['pivots'] AS pivots, b.id AS orig FROM "reuters-bt@1" a LEFT JOIN "reuters-bt@1" b ON a.augmented_from = b.id WHERE a.augmented_from IS NOT NULL ORDER BY a.id"#,
    );
    assert_eq!(rows.as_array().unwrap().len() as u64, augmented);
    for row in rows.as_array().unwrap() {
        assert_eq!(row["orig"], row["augmented_from"], "{row}");
        assert_eq!(
            row["id"].as_str().unwrap(),
            format!("{}#bt:{}", row["augmented_from"].as_str().unwrap(), row["pivots"].as_str().unwrap())
        );
    }

    // The rerun translates nothing: every piece comes from the cache, and the data is the same.
    let r2 = env.json(&["run", &p]);
    let c2 = &r2["stages"][2]["counters"];
    assert!(c2.get("pieces_translated").is_none(), "{c2}");
    assert!(c2["cache_hits"].as_u64().unwrap() > 0, "{c2}");
    assert_eq!(r2["digest"], r["digest"]);
}

#[test]
fn validate_names_the_packages_when_apertium_is_missing() {
    let env = Env::new();
    let yaml = std::fs::read_to_string(example("back_translate.yaml"))
        .unwrap()
        .replace("data/news/", &format!("{}/data/news/", example("").display()))
        .replace("    pivots: [es, ca]", "    apertium: {data_dir: /nonexistent/apertium}\n    pivots: [es, ca]");
    let p = env.write("bt.yaml", yaml.as_bytes());
    let out = env.smelt(&["validate", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let e = stderr(&out);
    assert!(e.contains("apt-get install apertium apertium-eng-spa apertium-eng-cat"), "{e}");
    assert!(e.contains("bt.yaml:") && e.contains("stages.augmented"), "{e}");
}

#[test]
fn an_unreachable_endpoint_trips_the_breaker_and_the_run_keeps_every_original() {
    let env = Env::new();
    // A port nothing listens on: every connection is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let yaml = format!(
        "dataset: bt-down\nstages:\n  news:\n    type: jsonl\n    paths: [{}]\n  augmented:\n    type: back_translate\n    inputs: [news]\n    backend: openai\n    pivots: [es]\n    http: {{url: 'http://127.0.0.1:{port}/v1', model: m, retries: 1, backoff_ms: 10, breaker_failures: 2, concurrency: 1}}\n  out:\n    type: parquet\n    inputs: [augmented]\n",
        example("data/news/reuters_stories.jsonl").display()
    );
    let p = env.write("down.yaml", yaml.as_bytes());
    let r = env.json(&["run", p.to_str().unwrap()]);
    assert_eq!(r["version"], 1);
    assert_eq!(r["rows_written"], 10, "originals only");
    let c = &r["stages"][1]["counters"];
    assert_eq!(c["circuit_breaker_trips"], 1, "{c}");
    assert_eq!(c["failed:circuit_open"].as_u64().unwrap() + c["failed:backend_error"].as_u64().unwrap(), 10, "{c}");
    assert_eq!(c["http_requests"], 4, "2 pieces x 2 attempts, then nothing: {c}");
}
