//! End-to-end tests of the `smelt` binary on the bundled real Common Crawl samples.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{example, repo, scaled_quickstart, shard_bytes, split_records, stderr, stdout, walk, Env};

fn quickstart() -> String {
    example("quickstart.yaml").display().to_string()
}

fn dataset_root(env: &Env, name: &str) -> std::path::PathBuf {
    env.data().join("datasets").join(name)
}

#[test]
fn quickstart_commits_a_version_with_manifest_lineage_and_stats() {
    let env = Env::new();
    let run = env.json(&["run", &quickstart(), "--run-id", "first"]);
    assert_eq!(run["version"], 1);
    assert_eq!(run["splits_run"], 3);
    let rows = run["rows_written"].as_u64().unwrap();
    assert!(rows >= 15, "the three samples hold about 20 HTML responses, got {rows}");

    let log = env.json(&["catalog", "log", "quickstart"]);
    assert_eq!(log.as_array().unwrap().len(), 1);
    assert_eq!(log[0]["run_id"], "first");
    assert_eq!(log[0]["totals"]["rows"], rows);

    let m = env.json(&["catalog", "show", "quickstart@1"]);
    let cols: Vec<&str> = m["schema"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(cols, ["id", "text", "url", "source", "fetched_at", "origin", "content_hash"]);
    assert_eq!(m["lineage"]["run_id"], "first");
    assert_eq!(m["lineage"]["inputs"].as_array().unwrap().len(), 3);
    assert_eq!(m["lineage"]["resolved_config"]["stages"][0]["options"]["records"], "response");
    assert_eq!(m["lineage"]["pipeline_hash"].as_str().unwrap().len(), 32);
    let sources: std::collections::BTreeSet<&str> =
        m["stats"].as_array().unwrap().iter().map(|s| s["source"].as_str().unwrap()).collect();
    assert!(sources.contains("cc:CC-MAIN-2020-34") && sources.contains("cc:CC-MAIN-2024-22"), "{sources:?}");
    let docs: u64 = m["stats"].as_array().unwrap().iter().map(|s| s["docs"].as_u64().unwrap()).sum();
    assert_eq!(docs, rows);
    let funnel = m["funnel"].as_array().unwrap();
    assert_eq!(funnel.len(), 4);
    assert_eq!(funnel[1]["stage"], "text");

    // The shards are real Parquet with the rows the manifest claims.
    let root = dataset_root(&env, "quickstart");
    let mut total = 0;
    for s in m["shards"].as_array().unwrap() {
        let bytes = std::fs::read(root.join(s["path"].as_str().unwrap())).unwrap();
        let checksum = format!("xxh3-128:{:032x}", xxhash_rust::xxh3::xxh3_128(&bytes));
        assert_eq!(s["checksum"].as_str().unwrap(), checksum);
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap();
        for b in reader {
            let b = b.unwrap();
            let text = b.column_by_name("text").unwrap();
            let text = text.as_any().downcast_ref::<arrow::array::LargeStringArray>().unwrap();
            assert!(text.iter().all(|t| !t.unwrap().is_empty()));
            total += b.num_rows() as u64;
        }
    }
    assert_eq!(total, rows);

    // Human-readable forms work too.
    let show = env.ok(&["catalog", "show", "quickstart"]);
    assert!(show.contains("quickstart@1") && show.contains("filter funnel") && show.contains("content_hash"), "{show}");
    let list = env.ok(&["catalog", "list"]);
    assert!(list.contains("quickstart"), "{list}");

    // A second run is version 2 with the same data digest.
    let again = env.json(&["run", &quickstart()]);
    assert_eq!(again["version"], 2);
    assert_eq!(again["digest"], run["digest"]);
}

#[test]
fn same_input_gives_byte_identical_shards_across_runs_threads_and_ranks() {
    let one = Env::new();
    let a = one.json(&["run", &quickstart(), "--parallelism", "1"]);
    let two = Env::new();
    let b = two.json(&["run", &quickstart(), "--parallelism", "4"]);
    assert_eq!(a["digest"], b["digest"]);

    let ranks = Env::new();
    for rank in ["1", "0"] {
        let r = ranks.json(&["run", &quickstart(), "--rank", rank, "--world-size", "2", "--run-id", "ranked"]);
        assert!(r["version"].is_null(), "ranks never commit");
    }
    let c = ranks.json(&["commit", "ranked"]);
    assert_eq!(c["digest"], a["digest"]);

    let ma = one.json(&["catalog", "show", "quickstart@1"]);
    let mc = ranks.json(&["catalog", "show", "quickstart@1"]);
    let sa = shard_bytes(&ma, &dataset_root(&one, "quickstart"));
    let sc = shard_bytes(&mc, &dataset_root(&ranks, "quickstart"));
    assert_eq!(sa.len(), sc.len());
    for ((na, ba), (nc, bc)) in sa.iter().zip(&sc) {
        assert_eq!(na, nc);
        assert!(ba == bc, "shard {na} differs between 1 process and 2 ranks");
    }
}

#[test]
fn commit_refuses_an_incomplete_run_and_lists_missing_splits() {
    let env = Env::new();
    env.ok(&["run", &quickstart(), "--rank", "0", "--world-size", "2", "--run-id", "half"]);
    let out = env.smelt(&["commit", "half"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("run half is not complete: 1 of 3 splits have no completion record"), "{err}");
    assert!(err.contains("split 1:") && err.contains("CC-MAIN-2024-22-whirlwind.warc.gz"), "{err}");
    let out = env.smelt(&["catalog", "log", "quickstart"]);
    assert!(!out.status.success(), "no version may be visible");

    env.ok(&["run", &quickstart(), "--rank", "1", "--world-size", "2", "--run-id", "half"]);
    let c = env.json(&["commit", "half"]);
    assert_eq!(c["version"], 1);
    assert_eq!(c["newly_committed"], true);
    let again = env.json(&["commit", "half"]);
    assert_eq!(again["newly_committed"], false);
    assert_eq!(again["version"], 1);
}

#[test]
fn resuming_a_run_skips_finished_splits_and_neither_loses_nor_duplicates() {
    let env = Env::new();
    // Rank 0 of 2 finishes its splits, then the run is resumed by one process.
    env.ok(&["run", &quickstart(), "--rank", "0", "--world-size", "2", "--run-id", "resume"]);
    let r = env.json(&["run", &quickstart(), "--run-id", "resume"]);
    assert_eq!(r["splits_resumed"], 2);
    assert_eq!(r["splits_run"], 1);
    let fresh = Env::new();
    let f = fresh.json(&["run", &quickstart()]);
    assert_eq!(r["digest"], f["digest"]);

    // A changed pipeline cannot resume the run.
    let yaml = std::fs::read_to_string(example("quickstart.yaml")).unwrap().replace("zstd_level: 3", "zstd_level: 5");
    let p = env.write("changed/quickstart.yaml", yaml.as_bytes());
    std::os::unix::fs::symlink(repo().join("examples/data"), env.path().join("changed/data")).unwrap();
    let out = env.smelt(&["run", p.to_str().unwrap(), "--run-id", "resume"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("was started with a different pipeline"), "{}", stderr(&out));
}

fn wait_for(cond: impl Fn() -> bool, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

#[test]
fn a_killed_run_shows_no_version_and_resumes_to_the_same_dataset() {
    let env = Env::new();
    let p = scaled_quickstart(&env, 40);
    let p = p.to_str().unwrap();
    let mut child = env.cmd().args(["run", p, "--run-id", "killed", "--parallelism", "1"]).spawn().unwrap();
    let root = dataset_root(&env, "quickstart");
    let started = wait_for(|| split_records(&root, "killed") >= 1, Duration::from_secs(120));
    assert!(started, "no split completed");
    // While it runs, a second smelt process can use the catalog (the run does not hold it).
    let during = env.smelt(&["catalog", "list"]);
    child.kill().unwrap();
    child.wait().unwrap();
    let done = split_records(&root, "killed");
    assert!(done < 120, "the run finished before it could be killed ({done} splits); use more input");
    assert!(during.status.success(), "{}", stderr(&during));

    assert!(!env.smelt(&["catalog", "log", "quickstart"]).status.success(), "a killed run shows no version");
    let r = env.json(&["run", p, "--run-id", "killed", "--parallelism", "2"]);
    assert_eq!(r["splits_resumed"].as_u64().unwrap() as usize, done);
    assert_eq!(r["version"], 1);

    // The same inputs (origins hold their paths) run uninterrupted into another data dir.
    let fresh = Env::new();
    let f = fresh.json(&["run", p]);
    assert_eq!(r["digest"], f["digest"], "resumed run differs from an uninterrupted one");
    let m = env.json(&["catalog", "show", "quickstart@1"]);
    assert_eq!(m["totals"]["rows"], f["rows_written"]);
}

#[test]
fn a_run_killed_in_the_middle_of_a_shard_upload_resumes_to_the_same_digest() {
    // Shards of ~1.5 MB streamed in 64 KiB parts: most of the time one is half uploaded.
    let env = Env::new();
    for i in 0..6 {
        env.write(&format!("in/{i}.jsonl"), &common::noisy_jsonl(400, 4000));
    }
    let yaml = "dataset: streamed\nstages:\n  docs:\n    type: jsonl\n    paths: [in/*.jsonl]\n  hashed:\n    type: content_hash\n    inputs: [docs]\n  out:\n    type: parquet\n    inputs: [hashed]\n    row_group_rows: 50\n";
    let p = env.write("streamed.yaml", yaml.as_bytes());
    let p = p.to_str().unwrap();
    let part = ("SMELT_UPLOAD_PART_BYTES", "65536");
    let root = dataset_root(&env, "streamed");
    let shards = root.join("runs/killed/shards");
    let staging = || -> Vec<String> {
        std::fs::read_dir(&shards)
            .map(|d| {
                d.flatten().map(|e| e.file_name().to_string_lossy().to_string()).filter(|n| n.contains('#')).collect()
            })
            .unwrap_or_default()
    };
    let mut child =
        env.cmd().args(["run", p, "--run-id", "killed", "--parallelism", "1"]).env(part.0, part.1).spawn().unwrap();
    let caught = wait_for(|| split_records(&root, "killed") >= 1 && !staging().is_empty(), Duration::from_secs(120));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(caught, "no shard upload was seen in progress");
    let left = staging();
    assert!(!left.is_empty(), "the killed upload's staging file");
    for s in &left {
        let final_name = s.split('#').next().unwrap();
        assert!(!shards.join(final_name).exists(), "{final_name} appeared before its upload completed");
    }

    let r = env.json(&["run", p, "--run-id", "killed"]);
    assert_eq!(r["version"], 1);
    assert!(r["splits_resumed"].as_u64().unwrap() >= 1);
    // The same inputs (origins hold their paths) run uninterrupted into another data dir.
    let f = Env::new().json(&["run", p]);
    assert_eq!(r["digest"], f["digest"], "the resumed run differs from an uninterrupted one");
    // gc removes what the killed upload left.
    env.ok(&["catalog", "gc", "--grace-hours", "0"]);
    assert!(staging().is_empty(), "{:?}", staging());
}

#[test]
fn ctrl_c_cancels_without_committing() {
    let env = Env::new();
    let p = scaled_quickstart(&env, 40);
    let child = env
        .cmd()
        .args(["run", p.to_str().unwrap(), "--run-id", "int", "--parallelism", "1"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let root = dataset_root(&env, "quickstart");
    assert!(wait_for(|| split_records(&root, "int") >= 1, Duration::from_secs(120)));
    let status = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing was committed"), "{}", stderr(&out));
    assert!(stderr(&out).contains("--run-id int"), "{}", stderr(&out));
    assert!(!env.smelt(&["catalog", "log", "quickstart"]).status.success());
}

#[test]
fn sample_is_a_dry_run() {
    let env = Env::new();
    let out = env.json(&["run", &quickstart(), "--sample", "5"]);
    assert_eq!(out["dry_run"], true);
    let docs = out["documents"].as_array().unwrap();
    assert!(!docs.is_empty() && docs.len() <= 5);
    assert_eq!(out["stages"][0]["rows_out"], 5);
    assert!(!env.data().join("datasets").exists(), "a dry run writes nothing");
    let table = env.ok(&["run", &quickstart(), "--sample", "3"]);
    assert!(table.contains("dry run: ") && table.contains("nothing written or committed"), "{table}");
}

#[test]
fn graph_renders_mermaid_dot_and_plantuml() {
    let env = Env::new();
    let m = env.ok(&["graph", &quickstart(), "--format", "mermaid"]);
    assert!(m.starts_with("flowchart LR"), "{m}");
    assert!(m.contains("crawl -->|7 cols| text") && m.contains("hashed -->|7 cols| out"), "{m}");
    let d = env.ok(&["graph", &quickstart(), "--format", "dot"]);
    assert!(d.contains("digraph \"quickstart\"") && d.contains("\"text\" -> \"hashed\""), "{d}");
    let u = env.ok(&["graph", &example("fan_in.yaml").display().to_string(), "--format", "plantuml"]);
    assert!(u.starts_with("@startuml") && u.contains("wet --> hashed") && u.contains("dolma --> hashed"), "{u}");
}

#[test]
fn every_example_validates_and_runs() {
    for name in ["quickstart.yaml", "wet.yaml", "jsonl.yaml", "fan_in.yaml"] {
        let env = Env::new();
        let p = example(name).display().to_string();
        env.ok(&["validate", &p]);
        let r = env.json(&["run", &p]);
        assert_eq!(r["version"], 1, "{name}");
        assert!(r["rows_written"].as_u64().unwrap() > 0, "{name}");
    }
    // Fan-in: both sources' documents arrive, in a deterministic order.
    let env = Env::new();
    let r = env.json(&["run", &example("fan_in.yaml").display().to_string()]);
    let m = env.json(&["catalog", "show", "mixed@1"]);
    assert_eq!(m["lineage"]["inputs"].as_array().unwrap().len(), 2);
    assert_eq!(r["stages"][2]["rows_in"], r["rows_written"]);
}

#[test]
fn invalid_pipelines_report_every_problem_with_its_position() {
    let dir = repo().join("tests/pipelines/invalid");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    names.sort();
    assert!(names.len() >= 10);
    let env = Env::new();
    let mut failures = Vec::new();
    for p in names {
        let rel = format!("tests/pipelines/invalid/{}", p.file_name().unwrap().to_str().unwrap());
        let out = env.cmd().current_dir(repo()).args(["validate", &rel]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{rel} must fail validation");
        let expected_path = p.with_extension("expected");
        let got = stderr(&out);
        match std::fs::read_to_string(&expected_path) {
            Ok(want) if want == got => {}
            Ok(want) => failures.push(format!("{rel}:\n--- want\n{want}--- got\n{got}")),
            Err(_) if std::env::var_os("SMELT_BLESS").is_some() => std::fs::write(&expected_path, &got).unwrap(),
            Err(_) => failures
                .push(format!("{rel}: no {} (run with SMELT_BLESS=1 to write it)\n{got}", expected_path.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // JSON for scripts.
    let out = env
        .cmd()
        .current_dir(repo())
        .args(["validate", "tests/pipelines/invalid/many.yaml", "--format", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v[0]["errors"].as_array().unwrap().len() >= 5);
    assert!(v[0]["errors"][0]["line"].as_u64().unwrap() >= 1);
}

#[test]
fn bad_input_is_skipped_counted_and_never_stops_the_run() {
    let env = Env::new();
    let src = repo().join("examples/data/cc/CC-MAIN-2020-34-resiliparse-excerpt.warc.gz");
    let clean = std::fs::read(&src).unwrap();
    // Corrupt a gzip member in the middle: flip bytes well inside the file.
    let mut corrupt = clean.clone();
    let mid = corrupt.len() / 2;
    for b in &mut corrupt[mid..mid + 64] {
        *b ^= 0x5a;
    }
    env.write("in/a-corrupt.warc.gz", &corrupt);
    // Truncate another copy mid-record.
    env.write("in/b-truncated.warc.gz", &clean[..clean.len() * 3 / 4]);
    env.write("in/c-clean.warc.gz", &clean);
    let yaml =
        std::fs::read_to_string(example("quickstart.yaml")).unwrap().replace("data/cc/*.warc.gz", "in/*.warc.gz");
    let p = env.write("bad.yaml", yaml.as_bytes());
    let r = env.json(&["run", p.to_str().unwrap()]);
    assert_eq!(r["version"], 1);
    let skips = &r["stages"][0]["skips"];
    // One corrupt member and one cut record, each counted once.
    assert_eq!(skips, &serde_json::json!({"corrupt_gzip": 1, "truncated_record": 1}), "{skips}");
    // Every intact record survives: the clean copy's 16 pages, the corrupt copy's 15 (one
    // member lost), the truncated copy's 10 (the records before the cut).
    let per_file = |name: &str| -> u64 {
        let e = Env::new();
        e.write(&format!("in/{name}"), &std::fs::read(env.path().join("in").join(name)).unwrap());
        let p = e.write("one.yaml", yaml.as_bytes());
        e.json(&["run", p.to_str().unwrap()])["rows_written"].as_u64().unwrap()
    };
    let files = ["a-corrupt.warc.gz", "b-truncated.warc.gz", "c-clean.warc.gz"];
    assert_eq!(files.map(per_file), [15, 10, 16]);
    assert_eq!(r["rows_written"], 41, "the three files' intact records together");
}

#[test]
fn missing_inputs_and_unwritable_outputs_fail_clearly_without_a_version() {
    let env = Env::new();
    let p = env.write("missing.yaml", b"dataset: gone\nstages:\n  crawl:\n    type: warc\n    paths: [nothere/*.warc.gz]\n  text:\n    type: html_to_text\n    inputs: [crawl]\n  h:\n    type: content_hash\n    inputs: [text]\n  out:\n    type: parquet\n    inputs: [h]\n");
    let out = env.smelt(&["run", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("stage `crawl`: no input file matches `nothere/*.warc.gz`"), "{}", stderr(&out));

    // Output under a regular file: cannot be created.
    env.write("blocker", b"x");
    let out = env.smelt(&["run", &quickstart(), "--output", env.path().join("blocker/ds").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot create output directory"), "{}", stderr(&out));
    assert!(!env.smelt(&["catalog", "log", "quickstart"]).status.success());

    // Read-only dataset root (not root-proof: root may write anywhere, so only checked when it bites).
    let ro = env.path().join("ro");
    std::fs::create_dir_all(&ro).unwrap();
    let mut perms = std::fs::metadata(&ro).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o555);
    std::fs::set_permissions(&ro, perms).unwrap();
    let probe = std::fs::File::create(ro.join("probe"));
    if probe.is_err() {
        let out = env.smelt(&["run", &quickstart(), "--output", ro.to_str().unwrap()]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains("nothing was committed"), "{}", stderr(&out));
    }
}

#[test]
fn help_has_examples_and_broken_pipes_exit_zero() {
    let env = Env::new();
    let h = env.ok(&["--help"]);
    assert!(h.contains("Examples:") && h.contains("smelt run examples/quickstart.yaml"), "{h}");
    let h = env.ok(&["run", "--help"]);
    assert!(h.contains("--sample") && h.contains("--world-size"), "{h}");
    let mut child = env.cmd().args(["stages"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let s = env.ok(&["stages"]);
    for t in ["warc", "jsonl", "parquet_files", "html_to_text", "content_hash", "parquet"] {
        assert!(s.contains(t), "{s}");
    }
    let _ = std::io::stdout().flush();
    assert!(stdout(&env.smelt(&["--version"])).starts_with("smelt "));
}

#[test]
fn a_held_catalog_is_waited_for_then_reported_with_its_holder() {
    let env = Env::new();
    env.ok(&["run", &quickstart()]);
    let held = smelt_catalog::Catalog::open(&env.data()).unwrap();
    // Short wait: a clear error naming the holder.
    let out = env.cmd().env("SMELT_CATALOG_WAIT", "0.2").args(["catalog", "log", "quickstart"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("another smelt process has the catalog open"), "{err}");
    assert!(err.contains(&format!("held by pid {}", std::process::id())), "{err}");
    // A longer wait succeeds once the holder lets go.
    let child = env
        .cmd()
        .env("SMELT_CATALOG_WAIT", "20")
        .args(["catalog", "log", "quickstart"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(held);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("quickstart@1"));
}

#[test]
fn tags_move_and_resolve() {
    let env = Env::new();
    env.ok(&["run", &quickstart()]);
    env.ok(&["run", &quickstart()]);
    env.ok(&["catalog", "tag", "quickstart@1", "prod"]);
    assert_eq!(env.json(&["catalog", "show", "quickstart@prod"])["version"], 1);
    env.ok(&["catalog", "tag", "quickstart@2", "prod"]);
    assert_eq!(env.json(&["catalog", "show", "quickstart@prod"])["version"], 2);
    let log = env.json(&["catalog", "log", "quickstart"]);
    assert_eq!(log[1]["tags"], serde_json::json!(["prod"]));
    let out = env.smelt(&["catalog", "show", "quickstart@prd"]);
    assert!(stderr(&out).contains("did you mean `quickstart@prod`?"), "{}", stderr(&out));
    let out = env.smelt(&["catalog", "show", "quickstrat@1"]);
    assert!(stderr(&out).contains("did you mean `quickstart`?"), "{}", stderr(&out));
    let out = env.smelt(&["catalog", "tag", "quickstart@2", "42"]);
    assert_eq!(out.status.code(), Some(2));
    // Tags survive a lost index.
    std::fs::remove_dir_all(env.data().join("catalog.sled")).unwrap();
    let out = env.ok(&["catalog", "rebuild"]);
    assert!(out.contains("2 versions, 1 tags, 0 training runs recorded"), "{out}");
    assert_eq!(env.json(&["catalog", "show", "quickstart@prod"])["version"], 2);
}

#[test]
fn diff_lineage_and_gc() {
    let env = Env::new();
    let src = repo().join("examples/data/cc");
    let files: Vec<_> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().unwrap().ends_with(".warc.gz") && !p.to_str().unwrap().ends_with(".wet.gz"))
        .collect();
    std::fs::create_dir_all(env.path().join("in")).unwrap();
    for f in &files {
        std::fs::copy(f, env.path().join("in").join(f.file_name().unwrap())).unwrap();
    }
    let yaml =
        std::fs::read_to_string(example("quickstart.yaml")).unwrap().replace("data/cc/*.warc.gz", "in/*.warc.gz");
    let p = env.write("p.yaml", yaml.as_bytes());
    let p = p.to_str().unwrap();
    env.ok(&["run", p]);
    // Version 2: one input file fewer and a changed option.
    std::fs::remove_file(env.path().join("in/CC-MAIN-2025-33-cdx-toolkit.warc.gz")).unwrap();
    env.write("p.yaml", yaml.replace("min_chars: 1", "min_chars: 2000").as_bytes());
    env.ok(&["run", p]);
    let d = env.json(&["catalog", "diff", "quickstart@1", "quickstart@2"]);
    assert_eq!(d["lineage"]["pipeline_changed"], true);
    assert!(
        d["lineage"]["config_changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["path"] == "stages[text].options.min_chars"),
        "{}",
        d["lineage"]
    );
    assert_eq!(d["lineage"]["inputs_removed"].as_array().unwrap().len(), 1);
    let docs = &d["documents"];
    assert!(docs["removed"].as_u64().unwrap() >= 2, "{docs}");
    assert_eq!(docs["added"], 0);
    let (a, b) = (d["totals"]["rows"][0].as_u64().unwrap(), d["totals"]["rows"][1].as_u64().unwrap());
    assert_eq!(a - b, docs["removed"].as_u64().unwrap());
    assert!(d["mixture"][0]["share_delta_pp"].as_f64().unwrap().abs() > 0.0);
    assert!(d["funnel"].as_array().unwrap().iter().any(|f| f["reason"] == "too_short"));
    // Gates: exit 4 when crossed.
    let out = env.smelt(&["catalog", "diff", "quickstart@1", "quickstart@2", "--fail-on", "docs_removed>1%"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("diff gate failed: docs_removed"), "{}", stderr(&out));
    env.ok(&["catalog", "diff", "quickstart@1", "quickstart@2", "--fail-on", "token_share_delta>100pp"]);
    let out = env.smelt(&["catalog", "diff", "quickstart@1", "quickstart@2", "--fail-on", "bogus>1"]);
    assert!(stderr(&out).contains("unknown metric `bogus`"), "{}", stderr(&out));
    // Readable form and sample documents with their text.
    let t = env.ok(&["catalog", "diff", "quickstart@1", "quickstart@2", "--docs", "removed", "--limit", "2"]);
    assert!(t.contains("documents") && t.contains("sample documents (removed)") && t.contains("mixture"), "{t}");
    let j = env.json(&["catalog", "diff", "quickstart@1", "quickstart@2", "--docs", "removed", "--limit", "2"]);
    assert_eq!(j["sample_documents"]["from"].as_array().unwrap().len(), 2, "{}", j["sample_documents"]);

    // Across datasets: works, and says what differs.
    env.ok(&["run", &example("wet.yaml").display().to_string()]);
    let x = env.json(&["catalog", "diff", "quickstart@1", "wet-sample@1"]);
    assert_eq!(x["to"], "wet-sample@1");
    assert!(
        x["lineage"]["config_changes"].as_array().unwrap().iter().any(|c| c["path"] == "dataset"),
        "{}",
        x["lineage"]
    );

    let l = env.ok(&["catalog", "lineage", "quickstart@2"]);
    assert!(l.contains("html_to_text") && l.contains("min_chars"), "{l}");

    // gc: a failed run's staging goes, committed shards stay.
    env.ok(&["run", p, "--rank", "0", "--world-size", "2", "--run-id", "abandoned"]);
    let root = dataset_root(&env, "quickstart");
    assert!(root.join("runs/abandoned").exists());
    let dry = env.ok(&["catalog", "gc", "--grace-hours", "0", "--dry-run"]);
    assert!(dry.contains("would remove") && dry.contains("runs/abandoned/plan.json"), "{dry}");
    env.ok(&["catalog", "gc", "--grace-hours", "0"]);
    assert!(!root.join("runs/abandoned/plan.json").exists());
    let m = env.json(&["catalog", "show", "quickstart@1"]);
    for s in m["shards"].as_array().unwrap() {
        assert!(root.join(s["path"].as_str().unwrap()).exists(), "committed shard removed");
    }
}

/// A pipeline that reads the CC samples twice (the second time as copies
/// under other names), so every document has an exact duplicate in another split.
fn dedup_pipeline(env: &Env) -> String {
    for f in std::fs::read_dir(repo().join("examples/data/cc")).unwrap() {
        let f = f.unwrap().path();
        let name = f.file_name().unwrap().to_str().unwrap().to_string();
        if name.ends_with(".warc.gz") && !name.contains(".wet") {
            std::fs::create_dir_all(env.path().join("in")).unwrap();
            std::fs::copy(&f, env.path().join("in").join(format!("a-{name}"))).unwrap();
            std::fs::copy(&f, env.path().join("in").join(format!("b-{name}"))).unwrap();
        }
    }
    let yaml = "dataset: deduped
stages:
  crawl: {type: warc, paths: [in/*.warc.gz]}
  text: {type: html_to_text, inputs: [crawl]}
  hashed: {type: content_hash, inputs: [text]}
  unique: {type: dedup_exact, inputs: [hashed]}
  out: {type: parquet, inputs: [unique]}
";
    env.write("dedup.yaml", yaml.as_bytes()).display().to_string()
}

fn stage<'a>(run: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    run["stages"].as_array().unwrap().iter().find(|s| s["stage"] == name).unwrap()
}

#[test]
fn a_barrier_dedups_across_splits_threads_and_ranks_and_resumes() {
    let env = Env::new();
    let p = dedup_pipeline(&env);
    let base = Env::new().json(&["run", &quickstart()]);
    let unique_in_base = {
        let r = Env::new();
        let q = dedup_pipeline(&r);
        // The same pipeline on one copy only: what dedup within one copy leaves.
        for f in std::fs::read_dir(r.path().join("in")).unwrap() {
            let f = f.unwrap().path();
            if f.file_name().unwrap().to_str().unwrap().starts_with("b-") {
                std::fs::remove_file(f).unwrap();
            }
        }
        r.json(&["run", &q])["rows_written"].as_u64().unwrap()
    };
    assert!(unique_in_base <= base["rows_written"].as_u64().unwrap());

    let one = env.json(&["run", &p, "--parallelism", "1"]);
    assert_eq!(one["rows_written"].as_u64().unwrap(), unique_in_base, "every copy is dropped: {one}");
    let u = stage(&one, "unique");
    assert_eq!(u["rows_in"].as_u64().unwrap(), 2 * base["rows_written"].as_u64().unwrap());
    assert_eq!(
        u["drops"]["duplicate_text"].as_u64().unwrap(),
        2 * base["rows_written"].as_u64().unwrap() - unique_in_base
    );
    assert_eq!(u["counters"]["distinct_keys"].as_u64().unwrap(), unique_in_base);
    assert!(
        !env.data().join("scratch/deduped").read_dir().map_or(false, |mut d| d.next().is_some()),
        "scratch removed after commit"
    );

    // Same pipeline file (origins name the input paths), other data directories.
    let four = Env::new();
    assert_eq!(four.json(&["run", &p, "--parallelism", "4"])["digest"], one["digest"]);

    // Two ranks: the first to finish its splits waits for the other; a rerun continues.
    let ranks = Env::new();
    let pr = p.clone();
    let out = ranks.ok(&["run", &pr, "--rank", "0", "--world-size", "2", "--run-id", "r"]);
    assert!(out.contains("before barrier `unique`") && out.contains("rerun every rank"), "{out}");
    ranks.ok(&["run", &pr, "--rank", "1", "--world-size", "2", "--run-id", "r"]);
    ranks.ok(&["run", &pr, "--rank", "0", "--world-size", "2", "--run-id", "r"]);
    let c = ranks.json(&["commit", "r"]);
    assert_eq!(c["digest"], one["digest"]);
    let shown = ranks.json(&["catalog", "show", "deduped@1"]);
    let funnel = shown["funnel"].as_array().unwrap();
    let f = funnel.iter().find(|s| s["stage"] == "unique").unwrap();
    assert_eq!(f["drops"], u["drops"]);
}

#[test]
fn extract_prints_main_content_of_html_files_and_warc_responses() {
    let env = Env::new();
    let page = env.write(
        "page.html",
        "<html><head><title>T</title></head><body><nav><a href=/>Home</a> <a href=/news>News</a></nav>\
         <article><h1>Harbour reopens</h1><p>The harbour reopened on Monday after three weeks of repairs to the sea wall, \
         the port authority said in a statement.</p><p>Ferries resume their normal timetable on Tuesday.</p></article>\
         <footer>Copyright 2024 Example News. All rights reserved.</footer></body></html>"
            .as_bytes(),
    );
    let out = env.ok(&["extract", page.to_str().unwrap()]);
    assert!(out.contains("The harbour reopened on Monday") && out.contains("Ferries resume"), "{out}");
    assert!(!out.contains("All rights reserved"), "footer kept: {out}");

    // --explain: every block, kept or dropped, with the rule that decided.
    let out = env.ok(&["extract", "--explain", page.to_str().unwrap()]);
    let line = |text: &str| out.lines().find(|l| l.contains(text)).unwrap_or_else(|| panic!("no {text}: {out}"));
    assert!(
        line("The harbour reopened").starts_with("+ text") && line("The harbour reopened").contains("| main node |")
    );
    assert!(line("All rights reserved").starts_with("- ") && line("All rights reserved").contains("furniture by tag"));
    let out = env.ok(&["extract", "--explain", "--format", "json", page.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let blocks = v["blocks"].as_array().unwrap();
    assert!(blocks.iter().any(|b| b["kept"] == true && b["why"] == "main node"), "{out}");
    assert!(blocks.iter().any(|b| b["kept"] == false && b["text"].as_str().unwrap().contains("Copyright")), "{out}");

    let warc = repo().join("examples/data/cc/CC-MAIN-2020-34-resiliparse-excerpt.warc.gz");
    let out = env.ok(&["extract", "--warc", warc.to_str().unwrap(), "--limit", "3", "--format", "json"]);
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| l["url"].is_string() && (l["text"].is_string() || l["skipped"].is_string())), "{out}");

    let none = env.smelt(&["extract"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(stderr(&none).contains("nothing to extract"), "{}", stderr(&none));
}

fn minhash_pipeline(env: &Env) -> String {
    // Two splits with planted near-duplicates of each other: `a2` is `a1` with one word
    // changed at the end, `b2` is `b1` with other case, punctuation and numbers; `b3` also matches
    // `b1`, in the other split. `c` is unrelated, `short` has fewer words than a shingle.
    let a1 = "The harbour reopened on Monday after three weeks of repairs to the sea wall, the port \
              authority said in a statement. Ferries resume their normal timetable on Tuesday, and the \
              fish market will open again at the end of the week once the cold stores are checked.";
    let b1 = "Rail services between the two cities were suspended for most of the afternoon after a signal \
              failure near the main station, and about 12 trains were cancelled. Engineers fixed the fault \
              by 6 pm and the operator apologised to passengers for the long delays and crowded platforms.";
    let c = "The library will extend its opening hours during the exam period, staying open until midnight \
             from Monday to Thursday, and students can now book quiet study rooms online up to a week ahead.";
    let a2 = a1.replace("checked.", "inspected.");
    let b2 = b1.to_uppercase().replace("12", "17").replace("6 pm", "7 PM!");
    let line = |id: &str, text: &str| format!("{}\n", serde_json::json!({"id": id, "text": text}));
    let first = [line("a1", a1), line("b1", b1), line("short", "a few words only")].concat();
    let second = [line("c", c), line("a2", &a2), line("b2", &b2), line("b3", b1)].concat();
    env.write("in/0.jsonl", first.as_bytes());
    env.write("in/1.jsonl", second.as_bytes());
    let yaml = "dataset: near
stages:
  docs: {type: jsonl, paths: [in/*.jsonl]}
  hashed: {type: content_hash, inputs: [docs]}
  unique: {type: dedup_minhash, inputs: [hashed]}
  out: {type: parquet, inputs: [unique]}
";
    env.write("near.yaml", yaml.as_bytes()).display().to_string()
}

#[test]
fn minhash_dedup_drops_planted_near_duplicates_across_splits_for_any_parallelism() {
    let env = Env::new();
    let p = minhash_pipeline(&env);
    let one = env.json(&["run", &p, "--parallelism", "1"]);
    let u = stage(&one, "unique");
    assert_eq!(u["rows_in"].as_u64().unwrap(), 7, "{one}");
    assert_eq!(u["drops"]["minhash_duplicate"].as_u64().unwrap(), 3, "{one}");
    assert_eq!(u["counters"]["clusters"].as_u64().unwrap(), 2, "{one}");
    assert_eq!(u["counters"]["without_shingles"].as_u64().unwrap(), 1, "{one}");
    assert_eq!(one["rows_written"].as_u64().unwrap(), 4);
    let rows = env.json(&["sql", "SELECT id, dup_cluster, dup_cluster_size FROM \"near@1\" ORDER BY id"]);
    assert_eq!(
        rows,
        serde_json::json!([
            {"id": "a1", "dup_cluster": 0, "dup_cluster_size": 2},
            {"id": "b1", "dup_cluster": 1, "dup_cluster_size": 3},
            {"id": "c", "dup_cluster": null, "dup_cluster_size": 1},
            {"id": "short", "dup_cluster": null, "dup_cluster_size": 1},
        ])
    );
    // Same pipeline file (origins name the input paths), another data directory.
    assert_eq!(Env::new().json(&["run", &p, "--parallelism", "2"])["digest"], one["digest"]);
}

/// `n` documents of about 120 words in two JSONL files; every third is a
/// near-copy (one word changed) of the one before it.
fn minhash_kill_pipeline(env: &Env, n: usize) -> String {
    // Letters only: the MinHash normalisation turns digits into 0.
    let words: Vec<String> =
        (0..600usize).map(|i| (0..3).map(|k| char::from(b'a' + (i / 26usize.pow(k) % 26) as u8)).collect()).collect();
    let mut state = 12345u64;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    let mut files = [String::new(), String::new()];
    let mut prev = String::new();
    for i in 0..n {
        let text = if i % 3 == 2 {
            prev.replacen(' ', " changed ", 1)
        } else {
            (0..120).map(|_| words[next() % words.len()].as_str()).collect::<Vec<_>>().join(" ")
        };
        files[i % 2] += &format!("{}\n", serde_json::json!({"id": format!("d{i}"), "text": text}));
        prev = text;
    }
    env.write("in/0.jsonl", files[0].as_bytes());
    env.write("in/1.jsonl", files[1].as_bytes());
    let yaml = "dataset: mhkill
stages:
  docs: {type: jsonl, paths: [in/*.jsonl]}
  hashed: {type: content_hash, inputs: [docs]}
  unique: {type: dedup_minhash, inputs: [hashed]}
  out: {type: parquet, inputs: [unique]}
";
    env.write("mhkill.yaml", yaml.as_bytes()).display().to_string()
}

#[test]
fn a_run_killed_while_clustering_resumes_without_loss_or_duplicates() {
    let env = Env::new();
    let p = minhash_kill_pipeline(&env, 6000);
    let mut child = env.cmd().args(["run", &p, "--run-id", "k", "--parallelism", "1"]).spawn().unwrap();
    let stage_dir = env.data().join("scratch").join("mhkill").join("k").join("unique");
    let resolving = || {
        std::fs::read_dir(&stage_dir)
            .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("resolving-")))
            .unwrap_or(false)
    };
    let caught = wait_for(resolving, Duration::from_secs(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(caught, "the global step never started");
    assert!(!stage_dir.join("resolved.json").exists(), "the global step finished before the kill; use more input");
    assert!(!env.smelt(&["catalog", "log", "mhkill"]).status.success(), "a killed run shows no version");

    let r = env.json(&["run", &p, "--run-id", "k", "--parallelism", "2"]);
    assert_eq!(r["version"], 1, "{r}");
    let fresh = Env::new();
    // Same pipeline file (origins name the input paths), another data directory.
    let f = fresh.json(&["run", &p]);
    assert_eq!(r["digest"], f["digest"], "the resumed run differs from an uninterrupted one");
    assert_eq!(r["rows_written"], f["rows_written"]);
    let u = stage(&f, "unique");
    assert_eq!(u["drops"]["minhash_duplicate"].as_u64().unwrap(), 2000, "{f}");
    let ids = env.json(&["sql", "SELECT count(*) AS n, count(DISTINCT id) AS d FROM \"mhkill@1\""]);
    assert_eq!(ids, serde_json::json!([{"n": 4000, "d": 4000}]));
}

#[test]
fn dedup_explain_shows_the_cluster_of_a_dropped_and_a_kept_document() {
    let env = Env::new();
    minhash_pipeline(&env);
    let yaml = "dataset: nearx
stages:
  docs: {type: jsonl, paths: [in/*.jsonl]}
  hashed: {type: content_hash, inputs: [docs]}
  unique: {type: dedup_minhash, inputs: [hashed], explain: true}
  out: {type: parquet, inputs: [unique]}
";
    let p = env.write("nearx.yaml", yaml.as_bytes()).display().to_string();
    env.json(&["run", &p]);
    let b2 = env.json(&["dedup", "explain", "nearx@1", "b2"]);
    assert_eq!(b2["status"], "dropped", "{b2}");
    assert_eq!(b2["drop_reason"], "minhash_duplicate");
    assert_eq!(b2["kept"], "b1");
    assert_eq!(b2["cluster_size"], 3);
    let members: Vec<&str> = b2["members"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(members, ["b1", "b2", "b3"]);
    // b3 is an exact copy of b1; b2 differs only in case, digits and punctuation, which the normalisation removes.
    assert_eq!(b2["members"][2]["similarity"], 1.0);
    assert!(b2["rule"].as_str().unwrap().starts_with("keep: datatrove"), "{b2}");
    let a1 = env.json(&["dedup", "explain", "nearx@1", "a1"]);
    assert_eq!((a1["status"].as_str(), a1["cluster_size"].as_u64()), (Some("kept"), Some(2)), "{a1}");
    assert_eq!(env.json(&["dedup", "explain", "nearx@1", "c"])["status"], "alone");
    assert_eq!(env.json(&["dedup", "explain", "nearx@1", "nope"])["status"], "absent");
    let table = env.smelt(&["dedup", "explain", "nearx@1", "a2"]);
    assert!(table.status.success(), "{}", stderr(&table));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("a2 in nearx@1 (stage `unique`): dropped") && text.contains("kept: a1"), "{text}");
}

#[test]
fn minhash_against_an_earlier_version_drops_what_the_corpus_already_has() {
    let env = Env::new();
    let a1 = "The harbour reopened on Monday after three weeks of repairs to the sea wall, the port \
              authority said in a statement. Ferries resume their normal timetable on Tuesday, and the \
              fish market will open again at the end of the week once the cold stores are checked.";
    let b1 = "Rail services between the two cities were suspended for most of the afternoon after a signal \
              failure near the main station, and about 12 trains were cancelled. Engineers fixed the fault \
              by 6 pm and the operator apologised to passengers for the long delays and crowded platforms.";
    let c = "The library will extend its opening hours during the exam period, staying open until midnight \
             from Monday to Thursday, and students can now book quiet study rooms online up to a week ahead.";
    let d = "A new cycle lane along the river opens next month, linking the old town with the university \
             campus, and the city plans to add two hundred bicycle parking spaces near the central station.";
    let line = |id: &str, text: &str| format!("{}\n", serde_json::json!({"id": id, "text": text}));
    env.write("old/0.jsonl", [line("a1", a1), line("b1", b1)].concat().as_bytes());
    let old = "dataset: old
stages:
  docs: {type: jsonl, paths: [old/*.jsonl]}
  hashed: {type: content_hash, inputs: [docs]}
  unique: {type: dedup_minhash, inputs: [hashed]}
  out: {type: parquet, inputs: [unique]}
";
    let old = env.write("old.yaml", old.as_bytes()).display().to_string();
    env.json(&["run", &old]);
    // New data: a near-copy of a1 and one of it (a cluster touching the old corpus),
    // an exact copy of b1, a new document and a near-duplicate pair among the new ones.
    let a2 = a1.replace("checked.", "inspected.");
    let a3 = a2.replace("Ferries", "The ferries");
    let c2 = c.replace("midnight", "1 am");
    let new = [line("a2", &a2), line("c", c), line("b3", b1), line("d", d), line("a3", &a3), line("c2", &c2)];
    env.write("new/0.jsonl", new[..3].concat().as_bytes());
    env.write("new/1.jsonl", new[3..].concat().as_bytes());
    let yaml = "dataset: fresh
stages:
  docs: {type: jsonl, paths: [new/*.jsonl]}
  hashed: {type: content_hash, inputs: [docs]}
  unique: {type: dedup_minhash, inputs: [hashed], against: [old@latest]}
  out: {type: parquet, inputs: [unique]}
";
    let p = env.write("fresh.yaml", yaml.as_bytes()).display().to_string();
    let r = env.json(&["run", &p, "--parallelism", "2"]);
    let u = stage(&r, "unique");
    assert_eq!(u["drops"]["minhash_duplicate_of_earlier"].as_u64(), Some(3), "{r}");
    assert_eq!(u["drops"]["minhash_duplicate"].as_u64(), Some(1), "{r}");
    assert_eq!(u["counters"]["duplicates_of_earlier"].as_u64(), Some(3), "{r}");
    assert!(u["counters"]["against:old@1"].as_u64().unwrap() >= 2, "{r}");
    let rows = env.json(&["sql", "SELECT id FROM \"fresh@1\" ORDER BY id"]);
    assert_eq!(rows, serde_json::json!([{"id": "c"}, {"id": "d"}]));
    // The run stored old@1's index; `dedup index` finds it, and the next run reads it.
    let idx = env.json(&["dedup", "index", "old@1"]);
    assert_eq!(
        (idx["built"].as_bool(), idx["documents"].as_u64(), idx["indexed"].as_u64()),
        (Some(false), Some(2), Some(2)),
        "{idx}"
    );
    assert!(Path::new(idx["location"].as_str().unwrap()).join("index.json").is_file(), "{idx}");
    let again = env.json(&["run", &p, "--parallelism", "1"]);
    assert_eq!(again["digest"], r["digest"], "same rows whatever the parallelism, with a stored index");
    // Another set of signature options needs its own index.
    let other = env.json(&["dedup", "index", "old@1", "--n-grams", "3"]);
    assert_eq!(other["built"].as_bool(), Some(true), "{other}");
    // A reference to nothing is a clear error.
    let bad = env.write("bad.yaml", yaml.replace("old@latest", "nope@1").as_bytes()).display().to_string();
    let out = env.smelt(&["run", &bad]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("against `nope@1`: no committed dataset"), "{}", stderr(&out));
}

#[test]
fn line_dedup_removes_shared_boilerplate_across_splits_for_any_parallelism() {
    let env = Env::new();
    let doc = |id: &str, body: &str| {
        let text = format!("Home | News | Contact\n{body}\nCopyright 2024 Example Media. All rights reserved.");
        format!("{}\n", serde_json::json!({"id": id, "text": text}))
    };
    let first = [
        doc("a", "The council approved the new budget on Monday."),
        doc("b", "Heavy rain is expected over the weekend."),
    ];
    let second = [
        doc("c", "The museum opens a new wing in May."),
        format!(
            "{}\n",
            serde_json::json!({"id": "d", "text": "home news contact\nCOPYRIGHT 2025 example media, all rights reserved"})
        ),
    ];
    env.write("in/0.jsonl", first.concat().as_bytes());
    env.write("in/1.jsonl", second.concat().as_bytes());
    let yaml = "dataset: lines
stages:
  docs: {type: jsonl, paths: [in/*.jsonl]}
  cut: {type: dedup_lines, inputs: [docs]}
  hashed: {type: content_hash, inputs: [cut]}
  out: {type: parquet, inputs: [hashed]}
";
    let p = env.write("lines.yaml", yaml.as_bytes()).display().to_string();
    let one = env.json(&["run", &p, "--parallelism", "1"]);
    let u = stage(&one, "cut");
    assert_eq!(u["rows_in"].as_u64().unwrap(), 4, "{one}");
    // `d` is only boilerplate, seen before: it loses both lines and is dropped.
    assert_eq!(u["drops"]["lines_dedup_empty"].as_u64().unwrap(), 1, "{one}");
    assert_eq!(u["counters"]["lines_removed"].as_u64().unwrap(), 6, "{one}");
    assert_eq!(u["counters"]["frequent_lines"].as_u64().unwrap(), 2, "{one}");
    let rows = env.json(&["sql", "SELECT id, text FROM \"lines@1\" ORDER BY id"]);
    assert_eq!(
        rows,
        serde_json::json!([
            {"id": "a", "text": "Home | News | Contact\nThe council approved the new budget on Monday.\nCopyright 2024 Example Media. All rights reserved."},
            {"id": "b", "text": "Heavy rain is expected over the weekend."},
            {"id": "c", "text": "The museum opens a new wing in May."},
        ])
    );
    // Same pipeline file (origins name the input paths), another data directory.
    assert_eq!(Env::new().json(&["run", &p, "--parallelism", "2"])["digest"], one["digest"]);
}

#[test]
fn sentence_dedup_gives_datatrove_texts_for_any_parallelism() {
    // Real Reuters stories and datatrove 0.10.1's SentenceDedup output for them
    // (stages/tests/fixtures/dedup_sentences), in two input files.
    let env = Env::new();
    let dir = repo().join("stages/tests/fixtures/dedup_sentences");
    let stories = std::fs::read_to_string(dir.join("stories.jsonl")).unwrap();
    let lines: Vec<&str> = stories.lines().collect();
    let (a, b) = lines.split_at(70);
    env.write("in/0.jsonl", (a.join("\n") + "\n").as_bytes());
    env.write("in/1.jsonl", (b.join("\n") + "\n").as_bytes());
    let p = env
        .write(
            "s.yaml",
            b"dataset: sents
stages:
  docs: {type: jsonl, paths: [in/*.jsonl]}
  cut: {type: dedup_sentences, inputs: [docs]}
  hashed: {type: content_hash, inputs: [cut]}
  out: {type: parquet, inputs: [hashed]}
",
        )
        .display()
        .to_string();
    let one = env.json(&["run", &p, "--parallelism", "1"]);
    let cut = stage(&one, "cut");
    let changed: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("datatrove.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let dropped = changed.iter().filter(|c| c["text"].is_null()).count() as u64;
    assert_eq!(cut["drops"]["sentences_dedup_short"].as_u64().unwrap(), dropped, "{one}");
    assert!(cut["counters"]["sentences_removed"].as_u64().unwrap() > 100, "{one}");
    let rows = env.json(&["sql", "SELECT id, text FROM \"sents@1\""]);
    let kept: std::collections::HashMap<&str, &str> =
        rows.as_array().unwrap().iter().map(|r| (r["id"].as_str().unwrap(), r["text"].as_str().unwrap())).collect();
    for c in &changed {
        assert_eq!(kept.get(c["id"].as_str().unwrap()).copied(), c["text"].as_str(), "{}", c["id"]);
    }
    assert_eq!(kept.len() as u64, lines.len() as u64 - dropped);
    // Same pipeline file, another data directory, two workers: the same version.
    assert_eq!(Env::new().json(&["run", &p, "--parallelism", "2"])["digest"], one["digest"]);
    // A barrier in annotate mode keeps the documents it would drop, with the reason.
    let yaml = std::fs::read_to_string(&p).unwrap().replace("inputs: [docs]}", "inputs: [docs], mode: annotate}");
    let p = env.write("annotate.yaml", yaml.replace("dataset: sents", "dataset: sents_annotated").as_bytes());
    let run = env.json(&["run", p.to_str().unwrap()]);
    assert_eq!(run["rows_written"].as_u64().unwrap(), lines.len() as u64, "{run}");
    assert_eq!(stage(&run, "cut")["counters"]["would_drop:sentences_dedup_short"].as_u64().unwrap(), dropped);
    let flagged =
        env.json(&["sql", "SELECT id FROM \"sents_annotated@1\" WHERE array_has(would_drop, 'sentences_dedup_short')"]);
    assert_eq!(flagged.as_array().unwrap().len() as u64, dropped);
}

#[test]
fn annotate_mode_keeps_every_row_and_sql_thresholds_select_what_drop_mode_keeps() {
    // Real pages (CCNet documents) and Reuters stories through the quality
    // filters, once dropping and once annotating.
    let env = Env::new();
    let mut docs = std::fs::read_to_string(repo().join("stages/tests/fixtures/filters/dolma_cc_en.jsonl")).unwrap();
    docs.push_str(
        &std::fs::read_to_string(repo().join("stages/tests/fixtures/dedup_sentences/stories.jsonl")).unwrap(),
    );
    env.write("in/docs.jsonl", docs.as_bytes());
    let n = docs.lines().count() as u64;
    let pipeline = |dataset: &str, mode: &str| {
        format!(
            "dataset: {dataset}
stages:
  docs: {{type: jsonl, paths: [in/docs.jsonl]}}
  repetition: {{type: gopher_repetition, inputs: [docs], mode: {mode}}}
  quality: {{type: gopher_quality, inputs: [repetition], mode: {mode}}}
  fineweb: {{type: fineweb, inputs: [quality], mode: {mode}}}
  c4: {{type: c4, inputs: [fineweb], mode: {mode}, filter_no_terminal_punct: false}}
  hashed: {{type: content_hash, inputs: [c4]}}
  out: {{type: parquet, inputs: [hashed]}}
"
        )
    };
    let p = env.write("drop.yaml", pipeline("dropped", "drop").as_bytes()).display().to_string();
    let dropped = env.json(&["run", &p]);
    let kept = dropped["rows_written"].as_u64().unwrap();
    assert!(kept > 10 && kept < n - 10, "{dropped}");
    let p = env.write("annotate.yaml", pipeline("annotated", "annotate").as_bytes()).display().to_string();
    let annotated = env.json(&["run", &p]);
    assert_eq!(annotated["rows_written"].as_u64().unwrap(), n, "{annotated}");
    // Each stage counts what it would have dropped instead of dropping.
    let would: u64 = ["repetition", "quality", "fineweb", "c4"]
        .iter()
        .flat_map(|s| {
            stage(&annotated, s)["counters"]
                .as_object()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|(k, _)| k.starts_with("would_drop:"))
                .map(|(_, v)| v.as_u64().unwrap())
                .collect::<Vec<_>>()
        })
        .sum();
    assert!(would >= n - kept, "{annotated}");
    let ids = |sql: &str| -> Vec<String> {
        env.json(&["sql", sql]).as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
    };
    let expected = ids("SELECT id FROM \"dropped@1\" ORDER BY id");
    // No reason listed: exactly the rows drop mode keeps.
    assert_eq!(ids("SELECT id FROM \"annotated@1\" WHERE cardinality(would_drop) = 0 ORDER BY id"), expected);
    // datatrove's default thresholds written over the signals: the same rows.
    let thresholds = std::fs::read_to_string(repo().join("examples/signals_thresholds.sql"))
        .unwrap()
        .replace("VERSION", "\"annotated@1\"");
    assert_eq!(ids(&thresholds), expected);
    // A reason list says why: the first reason of a dropped row is the drop-mode reason.
    let rows = env.json(&["sql", "SELECT would_drop FROM \"annotated@1\" WHERE cardinality(would_drop) > 0"]);
    assert_eq!(rows.as_array().unwrap().len() as u64, n - kept);
    // `catalog diff` shows how each signal is distributed (B only here: A dropped instead).
    let diff = env.json(&["catalog", "diff", "dropped@1", "annotated@1"]);
    let signals = diff["signals"].as_array().unwrap();
    let words = signals.iter().find(|s| s["field"] == "gopher_word_count").unwrap();
    assert!(words["a"].is_null(), "{words}");
    assert_eq!(words["b"]["count"].as_u64().unwrap(), n);
    assert!(words["b"]["p10"].as_f64().unwrap() <= words["b"]["p50"].as_f64().unwrap());
    assert_eq!(signals.len(), 4 + 3 + 6 + 8 + 4 + 9, "{diff}");
    // `mode` has two values; a source cannot annotate.
    let bad = env.write(
        "bad.yaml",
        b"dataset: b\nstages:\n  docs: {type: jsonl, paths: [in/docs.jsonl], mode: annotate}\n  q: {type: fineweb, inputs: [docs], mode: keep}\n  out: {type: parquet, inputs: [q]}\n",
    );
    let out = env.cmd().args(["validate", bad.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("`docs` is a source") && err.contains("`mode` is `drop` (the default) or `annotate`"),
        "{err}"
    );
}

#[test]
fn relative_stage_files_resolve_against_the_pipeline_file() {
    let env = Env::new();
    env.write("p/words.txt", b"# our own list\nflamingo\n");
    env.write(
        "p/docs.jsonl",
        b"{\"id\": \"a\", \"text\": \"A flamingo stood in the lake.\"}\n{\"id\": \"b\", \"text\": \"A heron stood in the lake.\"}\n",
    );
    let p = env.write(
        "p/p.yaml",
        b"dataset: lists
stages:
  docs: {type: jsonl, paths: [docs.jsonl]}
  clean: {type: toxicity, inputs: [docs], lists: [words.txt], languages: [en]}
  hashed: {type: content_hash, inputs: [clean]}
  out: {type: parquet, inputs: [hashed]}
",
    );
    // The working directory is not the pipeline's: `words.txt` is found next to `p.yaml`.
    let out = env.cmd().current_dir(repo()).args(["run", p.to_str().unwrap(), "--format", "json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["rows_written"], 1);
    assert_eq!(stage(&run, "clean")["drops"]["toxic_words"], 1);
}

#[test]
fn a_user_error_inside_a_stage_exits_2_with_the_stage_and_its_position() {
    let env = Env::new();
    // The glob is checked when the source lists its inputs, inside the stage.
    let p = env.write(
        "p.yaml",
        b"dataset: t\nstages:\n  docs:\n    type: jsonl\n    paths: [\"in/[.jsonl\"]\n  hashed:\n    type: content_hash\n    inputs: [docs]\n  out:\n    type: parquet\n    inputs: [hashed]\n",
    );
    let out = env.smelt(&["run", p.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("p.yaml:3:3: stage `docs`: invalid glob pattern"), "{err}");
    // An input that is missing is not the pipeline's mistake: exit 1 (and a stage's `retries:` retry it).
    let p = env.write(
        "q.yaml",
        b"dataset: t\nstages:\n  docs:\n    type: jsonl\n    paths: [missing.jsonl]\n  hashed:\n    type: content_hash\n    inputs: [docs]\n  out:\n    type: parquet\n    inputs: [hashed]\n",
    );
    let out = env.smelt(&["run", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A parser that panics on one input loses that input only: a page (in
/// `html_to_text`) is dropped as `parser_panic`, a WARC file (in the source)
/// ends its split with a `parser_panic` skip, and the run commits the rest.
/// `SMELT_TEST_PANIC` makes the parser panic on inputs whose location contains it.
#[test]
fn a_panicking_parser_loses_one_page_or_one_split_and_the_run_commits_the_rest() {
    let p = quickstart();
    let clean = Env::new().json(&["run", &p]);
    assert_eq!(clean["rows_written"], 19);

    let env = Env::new();
    let (r, _) = run_panicking(&env, "01spb.ru", &p);
    assert_eq!(r["rows_written"], 18, "{r}");
    let text = r["stages"].as_array().unwrap().iter().find(|s| s["stage"] == "text").unwrap();
    assert_eq!(text["drops"]["parser_panic"], 1, "{text}");

    // Opening one WARC file, then reading it, panics.
    for (marker, message) in [
        ("whirlwind.warc", "whirlwind.warc.gz: opening the split panicked"),
        ("whirlwind.warc.gz, reading", "whirlwind.warc.gz, reading: panicked"),
    ] {
        let env = Env::new();
        let (r, stderr) = run_panicking(&env, marker, &p);
        assert!(stderr.contains(message), "the skip names the file: {stderr}");
        assert_eq!(r["version"], 1);
        let crawl = &r["stages"][0];
        assert_eq!(crawl["skips"]["parser_panic"], 1, "{crawl}");
        assert_eq!(r["rows_written"], 18, "the other files' pages are committed: {r}");
    }
}

/// Record-level panics lose one record and the split goes on: an HTTP block
/// of a WARC file, a line of a JSON Lines file. A Parquet file that panics its
/// reader loses that file (its split).
#[test]
fn a_panicking_record_parser_loses_that_record_only() {
    // Every HTTP block of one WARC file panics its parser (it holds one HTML response): the other files commit.
    let p = quickstart();
    let env = Env::new();
    let (r, stderr) = run_panicking(&env, "whirlwind.warc.gz#", &p);
    assert!(stderr.contains("the HTTP parser panicked"), "{stderr}");
    assert_eq!(r["stages"][0]["skips"]["parser_panic"], 1, "its one HTML response: {r}");
    assert_eq!(r["rows_written"], 18, "{r}");

    // Line 2 of a JSON Lines file panics the JSON parser: lines 1 and 3 are committed.
    let env = Env::new();
    let lines: Vec<String> =
        (1..=3).map(|i| format!("{{\"id\": \"d{i}\", \"text\": \"document number {i} of the test\"}}")).collect();
    env.write("in/a.jsonl", lines.join("\n").as_bytes());
    let p = env.write(
        "j.yaml",
        b"dataset: j\nstages:\n  docs:\n    type: jsonl\n    paths: [in/a.jsonl]\n  hashed:\n    type: content_hash\n    inputs: [docs]\n  out:\n    type: parquet\n    inputs: [hashed]\n",
    );
    let (r, _) = run_panicking(&env, "a.jsonl#L2", p.to_str().unwrap());
    assert_eq!(r["stages"][0]["skips"]["parser_panic"], 1, "{r}");
    assert_eq!(r["rows_written"], 2, "{r}");
    let ids = env.ok(&["sql", "SELECT id FROM \"j@1\" ORDER BY id", "--format", "csv"]);
    assert_eq!(ids.lines().collect::<Vec<_>>(), ["id", "d1", "d3"]);

    // A Parquet file that panics its reader: the split is skipped, the other file commits.
    let shards: Vec<std::path::PathBuf> = walk_parquet(&env.data().join("datasets/j"));
    assert_eq!(shards.len(), 1);
    std::fs::create_dir_all(env.path().join("pq")).unwrap();
    std::fs::copy(&shards[0], env.path().join("pq/one.parquet")).unwrap();
    std::fs::copy(&shards[0], env.path().join("pq/two.parquet")).unwrap();
    let p = env.write(
        "pq.yaml",
        b"dataset: pq\nstages:\n  docs:\n    type: parquet_files\n    paths: [pq/*.parquet]\n  hashed:\n    type: content_hash\n    inputs: [docs]\n  out:\n    type: parquet\n    inputs: [hashed]\n",
    );
    let (r, _) = run_panicking(&env, "two.parquet", p.to_str().unwrap());
    assert_eq!(r["stages"][0]["skips"]["parser_panic"], 1, "{r}");
    assert_eq!(r["rows_written"], 2, "{r}");
}

/// Runs `smelt run PIPELINE --format json` with `SMELT_TEST_PANIC=marker`;
/// asserts success and returns the summary and stderr.
fn run_panicking(env: &Env, marker: &str, pipeline: &str) -> (serde_json::Value, String) {
    let out = env.cmd().env("SMELT_TEST_PANIC", marker).args(["run", pipeline, "--format", "json"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    (serde_json::from_slice(&out.stdout).unwrap(), stderr)
}

fn walk_parquet(dir: &Path) -> Vec<std::path::PathBuf> {
    assert!(dir.is_dir(), "{} is not a directory", dir.display());
    walk(dir).into_iter().filter(|p| p.extension().is_some_and(|x| x == "parquet")).collect()
}

/// ARC files (Common Crawl 2008-2012, the Internet Archive) through the `warc` source.
#[test]
fn arc_files_become_documents_like_warc() {
    let env = Env::new();
    let arc = repo().join("connectors/tests/fixtures/warc/pywb");
    let yaml = format!(
        "dataset: arc\nstages:\n  crawl:\n    type: warc\n    paths: [\"{}/example.arc.gz\", \"{}/bad.arc\"]\n  text:\n    type: html_to_text\n    inputs: [crawl]\n    min_chars: 1\n  hashed:\n    type: content_hash\n    inputs: [text]\n  out:\n    type: parquet\n    inputs: [hashed]\n",
        arc.display(),
        arc.display()
    );
    let p = env.write("arc.yaml", yaml.as_bytes());
    let r = env.json(&["run", p.to_str().unwrap()]);
    assert_eq!(r["rows_written"], 1, "{r}");
    assert!(r["stages"][0]["skips"]["bad_header"].as_u64().unwrap() >= 2, "{r}");
    let rows = env.ok(&["sql", "SELECT url, fetched_at, text FROM \"arc@1\"", "--format", "json"]);
    let rows: serde_json::Value = serde_json::from_str(&rows).unwrap();
    assert_eq!(rows[0]["url"], "http://example.com/");
    assert!(rows[0]["fetched_at"].as_str().unwrap().starts_with("2014-02-16"), "{rows}");
    assert!(rows[0]["text"].as_str().unwrap().contains("Example Domain"), "{rows}");
}

/// The `sql` transform: validate points at the expression with what to change; a run drops and derives.
#[test]
fn sql_stage_errors_point_at_the_expression_and_a_run_filters_and_derives() {
    let env = Env::new();
    let p = env.write(
        "p.yaml",
        format!(
            "dataset: s\nstages:\n  crawl:\n    type: warc\n    paths: [\"{}/examples/data/cc/*.warc.gz\"]\n  text:\n    type: html_to_text\n    inputs: [crawl]\n  rules:\n    type: sql\n    inputs: [text]\n    where: \"lenght(text) > 500\"\n  hashed:\n    type: content_hash\n    inputs: [rules]\n  out:\n    type: parquet\n    inputs: [hashed]\n",
            repo().display()
        )
        .as_bytes(),
    );
    let out = env.smelt(&["validate", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("p.yaml:12:12: error: stage `rules` (sql)") && err.contains("Did you mean 'length'?"),
        "{err}"
    );

    let r = env.json(&["run", &example("sql.yaml").display().to_string()]);
    let rules = r["stages"].as_array().unwrap().iter().find(|s| s["stage"] == "rules").unwrap();
    assert_eq!(rules["drops"]["too_few_lines"], 2, "{rules}");
    assert_eq!(r["rows_written"], 17);
    let rows = env.ok(&[
        "sql",
        "SELECT count(*) AS n FROM \"sql-sample@1\" WHERE n_lines < 20 OR domain_tld IS NULL",
        "--format",
        "csv",
    ]);
    assert_eq!(rows.lines().nth(1), Some("0"), "{rows}");
}

/// Concurrent committers: four finished runs of one dataset committed by four
/// `smelt commit` processes at once. Every run becomes its own version, each
/// version is complete and readable, and none is lost or committed twice.
#[test]
fn concurrent_commits_of_one_dataset_give_distinct_complete_versions() {
    let env = Env::new();
    let runs = ["c1", "c2", "c3", "c4"];
    for run in runs {
        let r = env.json(&["run", &quickstart(), "--rank", "0", "--world-size", "1", "--run-id", run]);
        assert!(r["version"].is_null(), "a rank does not commit: {r}");
    }
    let children: Vec<_> = runs
        .iter()
        .map(|run| {
            env.cmd()
                .args(["commit", run, "--format", "json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut versions = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let c: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(c["newly_committed"], true, "{c}");
        assert_eq!(c["rows"], 19, "{c}");
        versions.push(c["version"].as_u64().unwrap());
    }
    versions.sort_unstable();
    assert_eq!(versions, [1, 2, 3, 4], "one version per run, none twice");
    let log = env.json(&["catalog", "log", "quickstart"]);
    let mut logged: Vec<(u64, String)> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_u64().unwrap(), v["run_id"].as_str().unwrap_or_default().to_string()))
        .collect();
    logged.sort();
    let mut by_run: Vec<&str> = logged.iter().map(|(_, r)| r.as_str()).collect();
    by_run.sort_unstable();
    assert_eq!(by_run, runs, "{log}");
    // Every version is readable with all its rows, and all hold the same data.
    let digests: std::collections::BTreeSet<String> =
        (1..=4).map(|v| env.json(&["catalog", "show", &format!("quickstart@{v}")])["digest"].to_string()).collect();
    assert_eq!(digests.len(), 1);
    for v in 1..=4 {
        let n = env.ok(&["sql", &format!("SELECT count(*) AS n FROM \"quickstart@{v}\""), "--format", "csv"]);
        assert_eq!(n.lines().nth(1), Some("19"), "quickstart@{v}: {n}");
    }
}

/// A commit killed (kill -9) at each point inside it: no partial version is
/// ever visible, and the next `smelt commit` finishes it as version 1, once,
/// with the digest of an uninterrupted commit.
#[test]
fn a_commit_killed_inside_recovers_to_one_complete_version() {
    let clean = Env::new().json(&["run", &quickstart()]);
    for point in ["before_manifest", "before_index_record"] {
        let env = Env::new();
        env.json(&["run", &quickstart(), "--rank", "0", "--world-size", "1", "--run-id", "k1"]);
        let mut child = env
            .cmd()
            .env("SMELT_TEST_PAUSE", point)
            .args(["commit", "k1"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() > 0 && !line.contains("paused at") {
            line.clear();
        }
        assert!(line.contains(&format!("paused at {point}")), "{point}: {line}");
        child.kill().unwrap();
        child.wait().unwrap();
        // Nothing is visible: the catalog lists no version.
        let log = env.smelt(&["catalog", "log", "quickstart", "--format", "json"]);
        let listed = serde_json::from_slice::<serde_json::Value>(&log.stdout)
            .ok()
            .and_then(|v| v.as_array().map(Vec::len))
            .unwrap_or(0);
        assert_eq!(listed, 0, "{point}: a version is visible after the kill: {}", String::from_utf8_lossy(&log.stdout));
        // The next commit completes it, once.
        let c = env.json(&["commit", "k1"]);
        assert_eq!((c["version"].as_u64(), &c["digest"]), (Some(1), &clean["digest"]), "{point}: {c}");
        let again = env.json(&["commit", "k1"]);
        assert_eq!((again["version"].as_u64(), again["newly_committed"].as_bool()), (Some(1), Some(false)));
        let log = env.json(&["catalog", "log", "quickstart"]);
        assert_eq!(log.as_array().unwrap().len(), 1, "{point}: {log}");
        let n = env.ok(&["sql", "SELECT count(*) AS n FROM \"quickstart@1\"", "--format", "csv"]);
        assert_eq!(n.lines().nth(1), Some("19"), "{point}");
    }
}

/// Words as fastText reads them (the `tokens` weight of `classify`'s buckets).
fn fasttext_words(text: &str) -> u128 {
    text.split([' ', '\n', '\r', '\t', '\u{b}', '\u{c}', '\0']).filter(|w| !w.is_empty()).count() as u128
}

#[test]
fn classify_keeps_by_score_and_buckets_the_same_for_any_parallelism_and_ranks() {
    // The classify fixture's 209 texts in three JSONL files, with Python fastText's answers.
    let fixture = repo().join("stages/tests/fixtures/classify");
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(fixture.join("texts.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let python = |row: &serde_json::Value, label: &str| -> f64 {
        let answers = row["predict"]["topics_bigram.bin"].as_array().unwrap();
        let p = answers.iter().find(|a| a[0] == format!("__label__{label}")).map_or(0.0, |a| a[1].as_f64().unwrap());
        f64::from(p as f32)
    };
    let pipeline = |env: &Env| {
        for (k, part) in rows.chunks(70).enumerate() {
            let lines: String =
                part.iter().map(|r| format!("{}\n", serde_json::json!({"id": r["id"], "text": r["text"]}))).collect();
            env.write(&format!("in/{k}.jsonl"), lines.as_bytes());
        }
        let yaml = format!(
            "dataset: scored
stages:
  docs: {{type: jsonl, paths: [in/*.jsonl]}}
  quality:
    type: classify
    inputs: [docs]
    model: {}
    labels: [crude, __label__earn]
    keep: \"score_crude >= 0.1 or score_earn >= 0.9\"
    buckets: {{column: score_crude, count: 5}}
  hashed: {{type: content_hash, inputs: [quality]}}
  out: {{type: parquet, inputs: [hashed]}}
",
            fixture.join("topics_bigram.bin").display()
        );
        env.write("scored.yaml", yaml.as_bytes()).display().to_string()
    };

    let env = Env::new();
    let p = pipeline(&env);
    let one = env.json(&["run", &p, "--parallelism", "1"]);
    let kept: Vec<&serde_json::Value> =
        rows.iter().filter(|r| python(r, "crude") >= 0.1 || python(r, "earn") >= 0.9).collect();
    assert_eq!(kept.len(), 136);
    let q = stage(&one, "quality");
    assert_eq!(q["rows_in"], 209, "{one}");
    assert_eq!(q["drops"]["score_not_kept"], 209 - 136, "{one}");
    assert_eq!(q["counters"]["bucketed_documents"], 136, "{one}");
    let weight: u128 = kept.iter().map(|r| fasttext_words(r["text"].as_str().unwrap())).sum();
    assert_eq!(q["counters"]["bucketed_weight"].as_u64().unwrap() as u128, weight);

    // Every kept row has Python's scores and the bucket its definition gives:
    // ⌊5 · (words of kept rows scoring less) / (words of all kept rows)⌋, at most 4.
    let got =
        env.json(&["sql", "SELECT id, score_crude, score_earn, score_crude_bucket FROM \"scored@1\" ORDER BY id"]);
    let got = got.as_array().unwrap();
    assert_eq!(got.len(), 136);
    let mut buckets_used = std::collections::BTreeSet::new();
    for g in got {
        let row = kept.iter().find(|r| r["id"] == g["id"]).unwrap();
        let s = python(row, "crude");
        assert_eq!(f64::from(g["score_crude"].as_f64().unwrap() as f32), s, "{g}");
        assert_eq!(f64::from(g["score_earn"].as_f64().unwrap() as f32), python(row, "earn"), "{g}");
        let below: u128 =
            kept.iter().filter(|r| python(r, "crude") < s).map(|r| fasttext_words(r["text"].as_str().unwrap())).sum();
        let want = ((5 * below) / weight).min(4) as u64;
        assert_eq!(g["score_crude_bucket"].as_u64().unwrap(), want, "{g}");
        buckets_used.insert(want);
    }
    assert_eq!(buckets_used.len(), 5);

    // Two threads, and two ranks (the first to finish its splits waits at the barrier), give the
    // same rows: the same pipeline file (origins name the input paths), other data directories.
    let two = Env::new();
    assert_eq!(two.json(&["run", &p, "--parallelism", "2"])["digest"], one["digest"]);
    let ranks = Env::new();
    let pr = p.clone();
    let out = ranks.ok(&["run", &pr, "--rank", "0", "--world-size", "2", "--run-id", "r"]);
    assert!(out.contains("before barrier `quality`"), "{out}");
    ranks.ok(&["run", &pr, "--rank", "1", "--world-size", "2", "--run-id", "r"]);
    ranks.ok(&["run", &pr, "--rank", "0", "--world-size", "2", "--run-id", "r"]);
    assert_eq!(ranks.json(&["commit", "r"])["digest"], one["digest"]);
}

#[test]
fn gc_expires_versions_by_retention_and_frees_only_their_files() {
    let env = Env::new();
    let root = dataset_root(&env, "quickstart");
    for i in 1..=4 {
        env.ok(&["run", &quickstart(), "--run-id", &format!("v{i}")]);
    }
    env.ok(&["catalog", "tag", "quickstart@2", "prod"]);
    let digest4 = env.json(&["catalog", "show", "quickstart@4"])["digest"].clone();
    // A run in progress (one rank of two done) while gc runs: its files are younger than the grace period.
    env.ok(&["run", &quickstart(), "--rank", "0", "--world-size", "2", "--run-id", "busy"]);

    let dry = env.ok(&["catalog", "gc", "--keep-last", "2", "--keep-tagged", "--dry-run"]);
    assert!(dry.contains("would expire quickstart@1 (committed "), "{dry}");
    assert!(!dry.contains("quickstart@2") && !dry.contains("quickstart@3 "), "{dry}");
    assert!(dry.contains("would remove") && dry.contains("runs/v1/shards/"), "the dry run lists v1's shards: {dry}");
    assert!(root.join("_versions/000001.json").exists() && root.join("runs/v1").exists(), "a dry run changes nothing");

    env.ok(&["catalog", "gc", "--keep-last", "2", "--keep-tagged"]);
    let log = env.json(&["catalog", "log", "quickstart"]);
    let kept: Vec<u64> = log.as_array().unwrap().iter().map(|v| v["version"].as_u64().unwrap()).collect();
    assert_eq!(kept, vec![2, 3, 4]);
    assert!(root.join("_expired/000001.json").exists() && !root.join("_versions/000001.json").exists());
    let out = env.smelt(&["catalog", "show", "quickstart@1"]);
    assert!(stderr(&out).contains("quickstart@1 was expired by `smelt catalog gc`"), "{}", stderr(&out));
    for v in ["2", "3", "4"] {
        let m = env.json(&["catalog", "show", &format!("quickstart@{v}")]);
        for s in m["shards"].as_array().unwrap() {
            assert!(root.join(s["path"].as_str().unwrap()).exists(), "a kept version's shard was removed");
        }
    }
    assert_eq!(env.json(&["catalog", "show", "quickstart@prod"])["version"], 2, "the tag kept v2");
    assert!(root.join("runs/busy/plan.json").exists(), "the run in progress keeps its files");
    let left: Vec<_> = walk(&root.join("runs/v1"));
    assert!(left.is_empty(), "the expired version's run is gone: {left:?}");

    // Without --keep-tagged the tagged version expires too, and its tag with it.
    let out = env.ok(&["catalog", "gc", "--keep-last", "1"]);
    assert!(out.contains("expired quickstart@2 (") && out.contains("tags prod removed"), "{out}");
    assert!(out.contains("expired quickstart@3 ("), "{out}");
    assert!(!env.smelt(&["catalog", "show", "quickstart@prod"]).status.success());
    assert!(!root.join("_tags/prod.json").exists());
    assert_eq!(env.json(&["catalog", "show", "quickstart@4"])["digest"], digest4);

    // The run that was in progress finishes and commits after gc.
    env.ok(&["run", &quickstart(), "--rank", "1", "--world-size", "2", "--run-id", "busy"]);
    assert_eq!(env.json(&["commit", "busy"])["version"], 5);

    // The catalog rebuilt from storage has the kept versions only.
    let fresh = Env::new();
    fresh.ok(&["catalog", "rebuild", root.to_str().unwrap()]);
    let log = fresh.json(&["catalog", "log", "quickstart"]);
    let kept: Vec<u64> = log.as_array().unwrap().iter().map(|v| v["version"].as_u64().unwrap()).collect();
    assert_eq!(kept, vec![4, 5]);

    let out = env.smelt(&["catalog", "gc", "--keep-tagged"]);
    assert!(stderr(&out).contains("give one of those too"), "{}", stderr(&out));
}

#[test]
fn retention_in_the_pipeline_expires_versions_after_each_commit() {
    let env = Env::new();
    let yaml = std::fs::read_to_string(example("quickstart.yaml"))
        .unwrap()
        .replace("data/cc/*.warc.gz", &format!("{}/examples/data/cc/*.warc.gz", repo().display()))
        + "retention:\n  keep_last: 2\n  keep_tagged: true\n";
    let p = env.write("kept.yaml", yaml.as_bytes()).display().to_string();
    let expired: Vec<serde_json::Value> = (0..3).map(|_| env.json(&["run", &p])["expired"].clone()).collect();
    assert_eq!(expired, [serde_json::json!([]), serde_json::json!([]), serde_json::json!([1])]);
    env.ok(&["catalog", "tag", "quickstart@3", "prod"]);
    env.json(&["run", &p]); // 4: keeps 3 (newest two), expires 2
    let out = env.ok(&["run", &p]); // 5: keeps 4 and 5, and 3 for its tag
    assert!(!out.contains("retention expired"), "{out}");
    let log = env.json(&["catalog", "log", "quickstart"]);
    let kept: Vec<u64> = log.as_array().unwrap().iter().map(|v| v["version"].as_u64().unwrap()).collect();
    assert_eq!(kept, [3, 4, 5]);
    let root = dataset_root(&env, "quickstart");
    assert!(root.join("_expired/000001.json").is_file() && root.join("_expired/000002.json").is_file());

    // Mistakes are positioned, with the closest setting.
    let bad = env.write("bad.yaml", yaml.replace("keep_last: 2", "keep_lats: 2").as_bytes());
    let v = env.smelt(&["validate", &bad.display().to_string()]);
    assert!(!v.status.success());
    let err = stderr(&v) + &stdout(&v);
    assert!(
        err.contains("unknown retention setting `keep_lats`") && err.contains("did you mean `keep_last`?"),
        "{err}"
    );
}
