//! An `s3://` dataset root against a real S3-compatible server (moto) at
//! SMELT_S3_ENDPOINT: the `smelt` binary writes shards, commits versions with
//! create-only puts, tags, collects garbage and answers SQL there, configured
//! by the standard `AWS_*` variables only; through a throttling proxy it backs
//! off and still stores every byte; a shard larger than one upload part goes
//! up as a multipart upload, and a failed one leaves nothing behind.
//! `#[ignore]`d: `.ci/run` starts the server and runs them with
//! `--include-ignored`. What is stored is checked by plain unsigned requests
//! (tests/common/s3.rs), not through object_store.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Output;

use common::{example, s3, shard_bytes, stderr, Env};

/// The `smelt` binary with the `AWS_*` variables of the test server.
struct S3 {
    endpoint: String,
    hostport: String,
    bucket: String,
}

impl S3 {
    /// A fresh, empty bucket.
    fn new() -> S3 {
        let endpoint = s3::endpoint();
        let hostport = s3::hostport(&endpoint);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let bucket = format!("smelt-root-{}-{nanos}", std::process::id());
        let (status, body) = s3::request(&hostport, "PUT", &format!("/{bucket}"), &[]);
        assert_eq!(status, 200, "create bucket {bucket}: {}", String::from_utf8_lossy(&body));
        // Objects smelt writes (signed) are private; a bucket policy lets the
        // test's unsigned GETs read them back.
        let policy = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::{bucket}/*"}}]}}"#
        );
        let (status, body) = s3::request(&hostport, "PUT", &format!("/{bucket}?policy"), policy.as_bytes());
        assert!(status == 200 || status == 204, "bucket policy: {status} {}", String::from_utf8_lossy(&body));
        S3 { endpoint, hostport, bucket }
    }

    fn smelt(&self, env: &Env, args: &[&str]) -> Output {
        env.cmd().args(args).envs(s3::aws_env(&self.endpoint)).output().expect("smelt runs")
    }

    /// `smelt` through `proxy` instead of straight to the server, with `vars` set.
    fn via(&self, proxy: &s3::ThrottlingProxy, env: &Env, args: &[&str], vars: &[(&str, &str)]) -> Output {
        let mut c = env.cmd();
        c.args(args).envs(s3::aws_env(&proxy.endpoint()));
        for (k, v) in vars {
            c.env(k, v);
        }
        c.output().expect("smelt runs")
    }

    /// Multipart uploads open (started, neither completed nor aborted) in the bucket.
    fn open_uploads(&self) -> usize {
        let (status, body) = s3::request(&self.hostport, "GET", &format!("/{}?uploads", self.bucket), &[]);
        let xml = String::from_utf8_lossy(&body);
        assert_eq!(status, 200, "list multipart uploads: {xml}");
        xml.matches("<Upload>").count()
    }

    fn ok(&self, env: &Env, args: &[&str]) -> String {
        let out = self.smelt(env, args);
        assert!(out.status.success(), "smelt {args:?} failed ({:?}):\n{}", out.status, stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, env: &Env, args: &[&str]) -> serde_json::Value {
        let s = self.ok(env, &[args, &["--format", "json"]].concat());
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
    }

    /// Keys (relative to `prefix/`) and sizes of the objects under `prefix/`.
    fn objects(&self, prefix: &str) -> BTreeMap<String, u64> {
        let strip = format!("{prefix}/");
        s3::list(&self.hostport, &self.bucket, &strip)
            .into_iter()
            .map(|(k, size)| (k.strip_prefix(&strip).unwrap().to_string(), size))
            .collect()
    }

    fn get(&self, key: &str) -> Vec<u8> {
        s3::get(&self.hostport, &format!("/{}/{key}", self.bucket))
    }

    fn put(&self, key: &str, body: &[u8]) {
        s3::put(&self.hostport, &format!("/{}/{key}", self.bucket), body);
    }
}

/// The quick-start pipeline with `output: root` and its inputs by absolute path, written into `env`.
fn quickstart_at(env: &Env, root: &str) -> String {
    let data = common::repo().join("examples/data/cc/*.warc.gz").display().to_string();
    let yaml = std::fs::read_to_string(example("quickstart.yaml"))
        .unwrap()
        .replace("# output: s3://bucket/datasets/quickstart", &format!("output: {root}"))
        .replace("data/cc/*.warc.gz", &data);
    assert!(yaml.contains(&format!("\noutput: {root}")), "{yaml}");
    env.write("quickstart.yaml", yaml.as_bytes()).display().to_string()
}

fn parse_json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "smelt failed ({:?}):\n{}", out.status, stderr(out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// Shard paths (relative to the dataset root) of a manifest.
fn shard_paths(m: &serde_json::Value) -> BTreeSet<String> {
    m["shards"].as_array().unwrap().iter().map(|s| s["path"].as_str().unwrap().to_string()).collect()
}

#[test]
#[ignore = "needs an S3-compatible server at SMELT_S3_ENDPOINT (.ci/run starts moto and runs it)"]
fn s3_dataset_root_takes_shards_commits_tags_gc_and_sql() {
    let s3 = S3::new();
    let prefix = "datasets/quickstart";
    let root = format!("s3://{}/{prefix}", s3.bucket);
    assert_eq!(s3.objects(prefix), BTreeMap::new(), "a fresh bucket");

    // The quick start with `output:` set to the bucket (inputs by absolute path).
    let env = Env::new();
    let data = common::repo().join("examples/data/cc/*.warc.gz").display().to_string();
    let yaml = std::fs::read_to_string(example("quickstart.yaml"))
        .unwrap()
        .replace("# output: s3://bucket/datasets/quickstart", &format!("output: {root}"))
        .replace("data/cc/*.warc.gz", &data);
    assert!(yaml.contains(&format!("\noutput: {root}")), "{yaml}");
    let p = env.write("quickstart.yaml", yaml.as_bytes()).display().to_string();

    // Version 1: shards, split records and the manifest in the bucket.
    let first = s3.json(&env, &["run", &p, "--run-id", "first"]);
    assert_eq!(first["version"], 1, "{first}");
    assert_eq!(
        (&first["splits_run"], &first["shards_written"], &first["rows_written"]),
        (&3.into(), &3.into(), &19.into())
    );
    // The same pipeline file into a local dataset root: the same digest and the same shard bytes.
    let local = Env::new();
    let local_root = local.path().join("root");
    let l = local.json(&["run", &p, "--run-id", "first", "--output", local_root.to_str().unwrap()]);
    assert_eq!(l["version"], 1);
    assert_eq!(first["digest"], l["digest"], "S3 and local dataset roots commit the same data");
    let m1 = s3.json(&env, &["catalog", "show", "quickstart@1"]);
    let lm1 = local.json(&["catalog", "show", "quickstart@1"]);
    assert_eq!(m1["digest"], first["digest"]);
    assert_eq!(m1["totals"]["rows"], 19);
    // Three splits' small shards, merged at commit into one (read back from and written to the bucket).
    let shards1 = shard_paths(&m1);
    assert_eq!(shards1.len(), 1);
    assert!(shards1.iter().all(|s| s.starts_with("runs/first/shards/merged-")), "{shards1:?}");
    let local_shards = shard_bytes(&lm1, &local_root);
    assert_eq!(local_shards.len(), 1);
    for ((name, bytes), rel) in local_shards.iter().zip(m1["shards"].as_array().unwrap()) {
        let rel = rel["path"].as_str().unwrap();
        assert!(rel.ends_with(&format!("/{name}")), "{rel} vs {name}");
        assert!(s3.get(&format!("{prefix}/{rel}")) == *bytes, "shard {rel} in S3 differs from the local one");
    }

    // Version 2 of the same pipeline: a second run, the next number (create-only manifest put).
    let second = s3.json(&env, &["run", &p, "--run-id", "second"]);
    assert_eq!(second["version"], 2, "{second}");
    assert_eq!(second["digest"], first["digest"]);
    let m2 = s3.json(&env, &["catalog", "show", "quickstart@2"]);
    let shards2 = shard_paths(&m2);
    assert_eq!(shards2.len(), 1);
    assert!(shards2.iter().all(|s| s.starts_with("runs/second/shards/")), "{shards2:?}");
    let objects = s3.objects(prefix);
    let stored = |dir: &str| -> BTreeSet<String> { objects.keys().filter(|k| k.starts_with(dir)).cloned().collect() };
    // Each run's shards: the merged one the manifest names and the three small ones it was made
    // of (no version's: `catalog gc` removes them).
    let mut merged_away = BTreeSet::new();
    for (run, listed) in [("first", &shards1), ("second", &shards2)] {
        let all = stored(&format!("runs/{run}/shards/"));
        let small: Vec<&String> = all.difference(listed).collect();
        assert!(listed.is_subset(&all), "{run}: {all:?}");
        assert_eq!(small.len(), 3, "{run}: {all:?}");
        assert!(small.iter().all(|s| s.contains("/shards/part-")), "{small:?}");
        merged_away.extend(small.into_iter().cloned());
    }
    let manifests: BTreeSet<String> = stored("_versions/").into_iter().filter(|k| k.ends_with(".json")).collect();
    assert_eq!(manifests, BTreeSet::from(["_versions/000001.json".to_string(), "_versions/000002.json".to_string()]));
    let stored_m1: serde_json::Value =
        serde_json::from_slice(&s3.get(&format!("{prefix}/_versions/000001.json"))).unwrap();
    assert_eq!(stored_m1, m1, "the manifest in the bucket is the one the catalog shows");

    // A tag: written to the bucket, resolved by the catalog and by SQL.
    let t = s3.ok(&env, &["catalog", "tag", "quickstart@1", "prod"]);
    assert_eq!(t.trim(), "quickstart@prod -> quickstart@1");
    let tag: serde_json::Value = serde_json::from_slice(&s3.get(&format!("{prefix}/_tags/prod.json"))).unwrap();
    assert_eq!((&tag["dataset"], &tag["tag"], &tag["version"]), (&"quickstart".into(), &"prod".into(), &1.into()));
    assert_eq!(s3.json(&env, &["catalog", "show", "quickstart@prod"])["version"], 1);
    let log = s3.json(&env, &["catalog", "log", "quickstart"]);
    let versions: Vec<(u64, &str, &serde_json::Value)> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_u64().unwrap(), v["run_id"].as_str().unwrap(), &v["tags"]))
        .collect();
    let (prod, none) = (serde_json::json!(["prod"]), serde_json::json!([]));
    assert_eq!(versions, [(1, "first", &prod), (2, "second", &none)]);

    // SQL over the shards in the bucket: the rows of the local run, exactly.
    let sql = |e: &Env, q: &str| s3.json(e, &["sql", q]);
    let counts = sql(&env, r#"SELECT count(*) AS n, count(DISTINCT id) AS ids FROM "quickstart@prod""#);
    assert_eq!(counts, serde_json::json!([{"n": 19, "ids": 19}]));
    let q = r#"SELECT id, content_hash, source, origin FROM "quickstart@prod" ORDER BY id"#;
    let rows = sql(&env, q);
    assert_eq!(rows.as_array().unwrap().len(), 19);
    assert_eq!(rows, local.json(&["sql", &q.replace("@prod", "@1")]));
    let v = sql(&env, "SELECT version, run_id, rows, shards, digest FROM versions ORDER BY version");
    let d = first["digest"].as_str().unwrap();
    assert_eq!(
        v,
        serde_json::json!([
            {"version": 1, "run_id": "first", "rows": 19, "shards": 1, "digest": d},
            {"version": 2, "run_id": "second", "rows": 19, "shards": 1, "digest": d},
        ])
    );

    // Create-only puts hold on this server: a rank that finds another
    // pipeline's plan under its run id fails instead of replacing it.
    s3.ok(&env, &["run", &p, "--rank", "0", "--world-size", "2", "--run-id", "abandoned"]);
    let plan = s3.get(&format!("{prefix}/runs/abandoned/plan.json"));
    let other = env.write("other.yaml", yaml.replace("min_chars: 1", "min_chars: 2").as_bytes());
    let out =
        s3.smelt(&env, &["run", other.to_str().unwrap(), "--rank", "1", "--world-size", "2", "--run-id", "abandoned"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("run abandoned was started with a different pipeline"), "{}", stderr(&out));
    assert!(s3.get(&format!("{prefix}/runs/abandoned/plan.json")) == plan, "the first plan stays");

    // gc: the never-committed run and a stray shard in a committed run go;
    // everything a version references (and the rest of committed runs) stays.
    s3.put(&format!("{prefix}/runs/first/shards/part-00009-0000.parquet"), b"orphan");
    let before = s3.objects(prefix);
    let abandoned: BTreeSet<String> = before.keys().filter(|k| k.starts_with("runs/abandoned/")).cloned().collect();
    let shards_abandoned: BTreeSet<&str> =
        abandoned.iter().filter(|k| k.contains("/shards/")).map(String::as_str).collect();
    assert_eq!(
        shards_abandoned,
        BTreeSet::from([
            "runs/abandoned/shards/part-00000-0000.parquet",
            "runs/abandoned/shards/part-00002-0000.parquet"
        ]),
        "rank 0 of 2 wrote splits 0 and 2"
    );
    let mut doomed = abandoned.clone();
    doomed.insert("runs/first/shards/part-00009-0000.parquet".to_string());
    doomed.extend(merged_away); // the small shards the commits merged: no version's
    let listed = |out: &str, verb: &str| -> BTreeSet<String> {
        out.lines().filter_map(|l| l.strip_prefix(&format!("{verb} {root}/"))).map(str::to_string).collect()
    };
    let dry = s3.ok(&env, &["catalog", "gc", "--grace-hours", "0", "--dry-run"]);
    assert_eq!(listed(&dry, "would remove"), doomed, "{dry}");
    assert_eq!(s3.objects(prefix), before, "a dry run removes nothing");
    let gc = s3.ok(&env, &["catalog", "gc", "--grace-hours", "0"]);
    assert_eq!(listed(&gc, "removed"), doomed, "{gc}");
    assert!(gc.lines().last().unwrap().starts_with(&format!("removed {} files, ", doomed.len())), "{gc}");
    let after = s3.objects(prefix);
    let expected: BTreeMap<String, u64> =
        before.iter().filter(|(k, _)| !doomed.contains(*k)).map(|(k, v)| (k.clone(), *v)).collect();
    assert_eq!(after, expected, "gc removed exactly the unreferenced files");
    for s in shards1.iter().chain(&shards2) {
        assert!(after.contains_key(s), "referenced shard {s} removed");
    }
    let again = s3.ok(&env, &["catalog", "gc", "--grace-hours", "0"]);
    assert_eq!(again.trim(), "removed 0 files, 0 B");
    assert_eq!(sql(&env, r#"SELECT count(*) AS n FROM "quickstart@2""#), serde_json::json!([{"n": 19}]));

    // The bucket holds the whole catalog: a new data directory rebuilds the
    // versions and the tag from it and queries the same rows.
    let fresh = Env::new();
    let r = s3.ok(&fresh, &["catalog", "rebuild", &root]);
    assert_eq!(r.trim(), format!("{root}: 2 versions, 1 tags, 0 training runs recorded"));
    assert_eq!(s3.json(&fresh, &["catalog", "show", "quickstart@prod"])["version"], 1);
    assert_eq!(sql(&fresh, q), rows);
}

#[test]
#[ignore = "needs an S3-compatible server at SMELT_S3_ENDPOINT (.ci/run starts moto and runs it)"]
fn a_throttled_bucket_lowers_concurrency_and_the_run_still_stores_every_byte() {
    let s3 = S3::new();
    // Every third request through the proxy is answered `503 SlowDown` or `429`.
    let proxy = s3::ThrottlingProxy::start(&s3.hostport, 3);
    let prefix = "datasets/throttled";
    let root = format!("s3://{}/{prefix}", s3.bucket);
    let env = Env::new();
    let p = quickstart_at(&env, &root);
    let out =
        s3.via(&proxy, &env, &["run", &p, "--run-id", "slow", "--format", "json"], &[("SMELT_S3_MAX_REQUESTS", "8")]);
    let run = parse_json(&out);
    assert_eq!(run["version"], 1, "{run}");
    assert_eq!((&run["shards_written"], &run["rows_written"]), (&3.into(), &19.into()), "{run}");
    let throttled = proxy.throttled();
    assert!(throttled >= 5, "the proxy throttled only {throttled} requests: {:?}", proxy.log());
    assert!(proxy.log().iter().any(|(_, s)| *s == 429) && proxy.log().iter().any(|(_, s)| *s == 503));
    // Every throttling answer was seen, counted and retried.
    assert_eq!(run["s3_throttled"], throttled, "{run}");
    let bucket = &run["s3"].as_array().unwrap().iter().find(|b| b["bucket"] == format!("s3://{}", s3.bucket)).unwrap();
    assert_eq!(bucket["throttled"], throttled);
    assert_eq!(bucket["max"], 8);
    assert!(bucket["lowest_limit"].as_u64().unwrap() < 8, "concurrency was lowered: {bucket}");
    eprintln!("{} requests through the proxy, {throttled} throttled; {bucket}", proxy.log().len());

    // The same data as an unthrottled local run: digest and shard bytes.
    let local = Env::new();
    let local_root = local.path().join("root");
    let l = local.json(&["run", &p, "--run-id", "slow", "--output", local_root.to_str().unwrap()]);
    assert_eq!(l["digest"], run["digest"], "throttling changed the data");
    assert_eq!(l["s3_throttled"], 0);
    let m = s3.json(&env, &["catalog", "show", "quickstart@1"]);
    let lm = local.json(&["catalog", "show", "quickstart@1"]);
    for ((name, bytes), rel) in shard_bytes(&lm, &local_root).iter().zip(m["shards"].as_array().unwrap()) {
        let rel = rel["path"].as_str().unwrap();
        assert!(rel.ends_with(&format!("/{name}")), "{rel} vs {name}");
        assert!(s3.get(&format!("{prefix}/{rel}")) == *bytes, "shard {rel} in S3 differs from the local one");
    }

    // The table summary says it too.
    let again = s3.via(&proxy, &env, &["run", &p, "--run-id", "slow2"], &[("SMELT_S3_MAX_REQUESTS", "8")]);
    assert!(again.status.success(), "{}", stderr(&again));
    let table = String::from_utf8_lossy(&again.stdout);
    assert!(
        table.contains(&format!("s3://{}: ", s3.bucket))
            && table.contains("requests throttled and retried; request concurrency went down to"),
        "{table}"
    );
}

#[test]
#[ignore = "needs an S3-compatible server at SMELT_S3_ENDPOINT (.ci/run starts moto and runs it)"]
fn a_shard_larger_than_one_part_goes_up_in_parts_and_a_failed_upload_leaves_nothing() {
    let s3 = S3::new();
    let proxy = s3::ThrottlingProxy::start(&s3.hostport, 0);
    let prefix = "datasets/big";
    let root = format!("s3://{}/{prefix}", s3.bucket);
    let env = Env::new();
    // ~9 MB of text: one shard of ~7 MB, in row groups of 400 rows (~1.4 MB each).
    let input = env.write("in/docs.jsonl", &common::noisy_jsonl(2000, 4500));
    let yaml = format!(
        "dataset: big\noutput: {root}\nstages:\n  docs:\n    type: jsonl\n    paths: [{}]\n  hashed:\n    type: content_hash\n    inputs: [docs]\n  out:\n    type: parquet\n    inputs: [hashed]\n    row_group_rows: 400\n",
        input.display()
    );
    let p = env.write("big.yaml", yaml.as_bytes()).display().to_string();
    // S3's smallest part (all but the last): 5 MiB.
    let part = [("SMELT_UPLOAD_PART_BYTES", "5242880")];

    // The second part is refused: the upload is aborted, the run fails, and
    // neither a shard nor an open multipart upload is left in the bucket.
    proxy.fail("partNumber=2&", 403);
    let failed = s3.via(&proxy, &env, &["run", &p, "--run-id", "big"], &part);
    assert!(!failed.status.success(), "the refused part fails the run");
    let log = proxy.log();
    assert!(log.iter().any(|(l, s)| l.contains("partNumber=2&") && *s == 403), "{log:?}");
    assert!(log.iter().any(|(l, _)| l.starts_with("DELETE ") && l.contains("uploadId=")), "no abort: {log:?}");
    let left: Vec<String> = s3.objects(prefix).into_keys().filter(|k| k.contains("/shards/")).collect();
    assert!(left.is_empty(), "a failed upload left {left:?}");
    assert_eq!(s3.open_uploads(), 0, "the failed multipart upload was aborted");

    // Resumed without the fault: the shard goes up in two parts.
    proxy.clear_failures();
    let run = parse_json(&s3.via(&proxy, &env, &["run", &p, "--run-id", "big", "--format", "json"], &part));
    assert_eq!((&run["version"], &run["shards_written"], &run["rows_written"]), (&1.into(), &1.into(), &2000.into()));
    let log = proxy.log();
    assert!(log.iter().any(|(l, _)| l.starts_with("POST ") && l.contains("?uploads")), "no multipart upload: {log:?}");
    assert!(log.iter().any(|(l, s)| l.contains("partNumber=2&") && *s == 0), "{log:?}");
    assert_eq!(s3.open_uploads(), 0);
    let m = s3.json(&env, &["catalog", "show", "big@1"]);
    let size = m["shards"][0]["bytes"].as_u64().unwrap();
    assert!(size > 5 << 20, "the shard ({size} bytes) is larger than one part");

    // Byte-identical to the shard of a local run (which streams its own parts: 1 MiB).
    let local = Env::new();
    let local_root = local.path().join("root");
    let out = local
        .cmd()
        .args(["run", &p, "--run-id", "big", "--output", local_root.to_str().unwrap(), "--format", "json"])
        .env("SMELT_UPLOAD_PART_BYTES", "1048576")
        .output()
        .unwrap();
    let l = parse_json(&out);
    assert_eq!(l["digest"], run["digest"]);
    let lm = local.json(&["catalog", "show", "big@1"]);
    let local_shards = shard_bytes(&lm, &local_root);
    let rel = m["shards"][0]["path"].as_str().unwrap();
    assert!(s3.get(&format!("{prefix}/{rel}")) == local_shards[0].1, "the shard in S3 differs from the local one");
    assert_eq!(local_shards[0].1.len() as u64, size);
}
