//! The `python` and `datatrove` transforms through the real `smelt` binary,
//! with a real interpreter: `SMELT_PYTHON` (the stage's default interpreter
//! too), else `python3`. The interpreter needs pyarrow, and datatrove 0.10.1
//! for the datatrove tests: those tests are `#[ignore]`d with what they need,
//! and `.ci/run` installs both into a venv, exports SMELT_PYTHON and runs
//! them with `--include-ignored`. The user code here is real Python files;
//! nothing is mocked.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use arrow::array::{Array, StringArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use common::{stderr, Env};

/// The interpreter the stages use by default.
fn python() -> String {
    std::env::var("SMELT_PYTHON").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "python3".into())
}

/// # Panics
/// The interpreter cannot import `modules`; the message says what to install.
fn require(modules: &[&str]) {
    let out = Command::new(python()).arg("-c").arg(format!("import {}", modules.join(", "))).output();
    match out {
        Ok(o) if o.status.success() => {}
        _ => panic!(
            "this test needs {} importable by `{}`: python3 -m venv .venv && .venv/bin/pip install {} and set \
             SMELT_PYTHON=.venv/bin/python (.ci/run does)",
            modules.join(", "),
            python(),
            modules.join(" ")
        ),
    }
}

/// `files` JSONL files of `per_file` documents under `in/`: ids `d<file><row>`, texts of
/// 20 to 1,190 characters, URLs on two hosts.
fn corpus(env: &Env, files: usize, per_file: usize) {
    for f in 0..files {
        let mut lines = String::new();
        for i in 0..per_file {
            let n = f * per_file + i;
            let words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"];
            let text: Vec<&str> = (0..(3 + (n * 37) % 200)).map(|k| words[(n + k) % words.len()]).collect();
            let host = if n % 3 == 0 { "news.example.org" } else { "blog.example.com" };
            lines.push_str(
                &serde_json::json!({"id": format!("d{f}{i:03}"), "text": text.join(" "), "url": format!("https://{host}/p/{n}")})
                    .to_string(),
            );
            lines.push('\n');
        }
        env.write(&format!("in/part-{f}.jsonl"), lines.as_bytes());
    }
}

/// A pipeline over `in/*.jsonl`: `stages` (YAML under `stages:`, indented two spaces) read
/// from `docs`, the last one named `last`, then content_hash and parquet.
fn pipeline(env: &Env, name: &str, settings: &str, stages: &str) -> PathBuf {
    let yaml = format!(
        "dataset: {name}\n{settings}stages:\n  docs:\n    type: jsonl\n    paths: [in/*.jsonl]\n{stages}  hashed:\n    type: content_hash\n    inputs: [last]\n  out:\n    type: parquet\n    inputs: [hashed]\n"
    );
    env.write(&format!("{name}.yaml"), yaml.as_bytes())
}

/// `smelt run` as JSON.
fn run(env: &Env, p: &Path) -> serde_json::Value {
    env.json(&["run", &p.display().to_string(), "--no-progress"])
}

/// `smelt run` that must fail: its stderr.
fn run_fails(env: &Env, p: &Path) -> String {
    let out = env.smelt(&["run", &p.display().to_string(), "--no-progress"]);
    assert!(!out.status.success(), "the run succeeded:\n{}", common::stdout(&out));
    stderr(&out)
}

fn stage<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["stages"].as_array().unwrap().iter().find(|s| s["stage"] == name).unwrap()
}

/// The committed rows of `dataset@version`, in manifest order.
fn rows(env: &Env, dataset: &str, version: u64) -> Vec<RecordBatch> {
    let m = env.json(&["catalog", "show", &format!("{dataset}@{version}")]);
    common::shard_bytes(&m, &env.data().join("datasets").join(dataset))
        .into_iter()
        .flat_map(|(_, bytes)| {
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
                .unwrap()
                .build()
                .unwrap()
                .map(Result::unwrap)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Column `name` of `batches` as strings (`null` for nulls).
fn column(batches: &[RecordBatch], name: &str) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let c = arrow::compute::cast(
                b.column_by_name(name).unwrap_or_else(|| panic!("no column {name}")),
                &DataType::Utf8,
            )
            .unwrap();
            let c = c.as_any().downcast_ref::<StringArray>().unwrap().clone();
            (0..c.len()).map(move |i| if c.is_null(i) { "null".to_string() } else { c.value(i).to_string() })
        })
        .collect()
}

/// The ids, texts and urls of the corpus, in order.
fn corpus_docs(env: &Env) -> Vec<(String, String, String)> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(env.path().join("in")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    let s = |k: &str| v[k].as_str().unwrap().to_string();
                    (s("id"), s("text"), s("url"))
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

const UDF: &str = r#"
import os, time
import pyarrow.compute as pc
import smelt_data

@smelt_data.filter
def long_enough(row, min_chars=100):
    print("a print in user code goes to stderr, not into the frames")
    if len(row["text"]) < min_chars:
        return False, "short"
    return row["url"].startswith("https://blog.") or False

def score(row):
    words = row["text"].split()
    # A set's order follows PYTHONHASHSEED, which smelt fixes: the same in every worker.
    return {"n_words": len(words), "first": list(set(words))[0], "text": row["text"].upper()[:10]}

def chars(batch):
    return {"n_chars": pc.utf8_length(batch["text"])}

def odd_ids(batch):
    return pc.equal(pc.bit_wise_and(pc.cast(pc.utf8_slice_codeunits(batch["id"], 4), "int64"), 1), 1)

def fails_on(row, bad="d1004"):
    if row["id"] == bad:
        raise ValueError(f"cannot score {row['id']}")
    return {"score": 1.0}

def dies_once(row, marker=""):
    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), 9)
    return True

def always_dies(row):
    if row["id"] == "d1001":
        os._exit(7)
    return True

def hangs(batch):
    time.sleep(600)

def wrong_type(row):
    return {"score": "high"}

def undeclared(batch):
    return {"extra": pc.utf8_length(batch["text"])}

def environment(row):
    return {"named": os.environ.get("SMELT_TEST_NAMED"), "other": os.environ.get("SMELT_TEST_OTHER")}
"#;

#[test]
#[ignore = "needs Python 3 with pyarrow: SMELT_PYTHON=<venv>/bin/python (.ci/run installs it)"]
fn filter_map_and_batch_modes_give_the_expected_rows() {
    require(&["pyarrow"]);
    let env = Env::new();
    corpus(&env, 2, 12);
    env.write("udf.py", UDF.as_bytes());
    let p = pipeline(
        &env,
        "modes",
        "batch_rows: 5\n",
        "  long:\n    type: python\n    inputs: [docs]\n    path: udf.py\n    function: long_enough\n    options: {min_chars: 200}\n\
         \x20 odd:\n    type: python\n    inputs: [long]\n    path: udf.py\n    function: odd_ids\n    mode: batch\n\
         \x20 scored:\n    type: python\n    inputs: [odd]\n    path: udf.py\n    function: score\n    mode: map\n    output_schema: {n_words: int64, first: string}\n\
         \x20 last:\n    type: python\n    inputs: [scored]\n    path: udf.py\n    function: chars\n    mode: batch\n    output_schema: {n_chars: int64}\n",
    );
    let report = run(&env, &p);

    // What the same rules give, computed here.
    let docs = corpus_docs(&env);
    let (mut short, mut not_blog, mut even) = (0, 0, 0);
    let mut expected = Vec::new();
    for (id, text, url) in &docs {
        if text.chars().count() < 200 {
            short += 1;
        } else if !url.starts_with("https://blog.") {
            not_blog += 1;
        } else if id[4..].parse::<u64>().unwrap() % 2 == 0 {
            even += 1;
        } else {
            let upper: String = text.to_uppercase().chars().take(10).collect();
            let n_chars = upper.chars().count().to_string();
            expected.push((id.clone(), upper, text.split(' ').count().to_string(), n_chars));
        }
    }
    assert!(short > 0 && not_blog > 0 && even > 0 && !expected.is_empty(), "the corpus exercises every rule");
    assert_eq!(stage(&report, "long")["drops"], serde_json::json!({"short": short, "long_enough": not_blog}));
    assert_eq!(stage(&report, "odd")["drops"], serde_json::json!({"odd_ids": even}));
    assert_eq!(stage(&report, "scored")["drops"], serde_json::json!({}));
    for name in ["long", "odd", "scored", "last"] {
        // The time in user code, as the worker measured it: a count the stage's time can be set against.
        let us = &stage(&report, name)["counters"]["user_code_us"];
        assert!(us.is_u64(), "{name}: {}", stage(&report, name));
    }
    let b = rows(&env, "modes", 1);
    let got: Vec<(String, String, String, String)> = column(&b, "id")
        .into_iter()
        .zip(column(&b, "text"))
        .zip(column(&b, "n_words"))
        .zip(column(&b, "n_chars"))
        .map(|(((a, b), c), d)| (a, b, c, d))
        .collect();
    assert_eq!(got, expected);
    let schema = b[0].schema();
    let types: Vec<(&str, &DataType)> = schema.fields().iter().map(|f| (f.name().as_str(), f.data_type())).collect();
    // Declared columns follow the input's, in name order.
    assert_eq!(
        &types[6..],
        [
            ("first", &DataType::Utf8),
            ("n_words", &DataType::Int64),
            ("n_chars", &DataType::Int64),
            ("content_hash", &DataType::FixedSizeBinary(16))
        ]
    );
    assert!(column(&b, "first")
        .iter()
        .all(|w| ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"].contains(&w.as_str())));
}

#[test]
#[ignore = "needs Python 3 with pyarrow: SMELT_PYTHON=<venv>/bin/python (.ci/run installs it)"]
fn output_is_the_same_whatever_workers_parallelism_and_rows_per_call() {
    require(&["pyarrow"]);
    let env = Env::new();
    corpus(&env, 4, 30);
    env.write("udf.py", UDF.as_bytes());
    let mut digests = BTreeMap::new();
    // Rows per call: the default (every batch of a split in one call here), one pipeline batch per call, and
    // calls of 3 batches but the split's last.
    for (workers, parallelism, calls) in
        [(1, 1, ""), (3, 1, ""), (1, 2, ""), (3, 2, ""), (1, 1, "0"), (3, 2, "0"), (3, 2, "20")]
    {
        let calls = if calls.is_empty() { String::new() } else { format!("    batch_rows: {calls}\n") };
        let p = pipeline(
            &env,
            "same",
            &format!("batch_rows: 7\nparallelism: {parallelism}\n"),
            &format!(
                "  long:\n    type: python\n    inputs: [docs]\n    path: udf.py\n    function: long_enough\n    workers: {workers}\n{calls}\
                 \x20 odd:\n    type: python\n    inputs: [long]\n    path: udf.py\n    function: odd_ids\n    mode: batch\n    workers: {workers}\n{calls}\
                 \x20 last:\n    type: python\n    inputs: [odd]\n    path: udf.py\n    function: score\n    mode: map\n    workers: {workers}\n    output_schema: {{n_words: int64, first: string}}\n{calls}"
            ),
        );
        let report = run(&env, &p);
        digests.insert(
            (workers, parallelism, calls),
            (report["digest"].as_str().unwrap().to_string(), report["rows_written"].clone()),
        );
    }
    let first = digests.values().next().unwrap().clone();
    assert!(first.1.as_u64().unwrap() > 20);
    for (k, d) in &digests {
        assert_eq!(d, &first, "workers, parallelism, rows per call = {k:?}");
    }
}

/// Batch functions that keep what they are handed, and check it on every later call.
const KEEPER: &str = r#"
import pyarrow.compute as pc

kept = []


def keep_and_check(batch):
    # A batch that smelt's next batch overwrote would fail here (the worker moves a kept batch to private pages).
    for old, snapshot in kept:
        if old.column(1).to_pylist() != snapshot:
            raise AssertionError("a batch kept from an earlier call changed under the function")
    kept.append((batch, batch.column(1).to_pylist()))
    return pc.greater(pc.binary_length(batch["text"]), 100_000)


def words(row):
    return {"n_words": len(row["text"].split())}
"#;

#[test]
#[ignore = "needs Python 3 with pyarrow: SMELT_PYTHON=<venv>/bin/python (.ci/run installs it)"]
fn batches_cross_in_shared_memory_as_they_grow_and_give_what_the_pipe_gives() {
    require(&["pyarrow"]);
    let env = Env::new();
    // Small texts, then texts large enough that one batch of 8 is past the
    // buffer's first 1 MiB, then small ones again: the worker maps it anew.
    // One pipeline batch per call (`batch_rows: 0`): a call of several is
    // joined into one batch in the worker's own memory, never kept in place.
    let mut lines = String::new();
    for i in 0..60 {
        let len = if (20..36).contains(&i) { 200_000 + i * 1000 } else { 100 + i * 200 };
        let text: String = (0..len).map(|k| (b'a' + ((i + k / 7) % 26) as u8) as char).collect();
        let text = text.as_bytes().chunks(9).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join(" ");
        lines.push_str(&serde_json::json!({"id": format!("d{i:03}"), "text": text}).to_string());
        lines.push('\n');
    }
    env.write("in/part-0.jsonl", lines.as_bytes());
    env.write("keeper.py", KEEPER.as_bytes());
    let p = pipeline(
        &env,
        "shared",
        "batch_rows: 8\n",
        "  long:\n    type: python\n    inputs: [docs]\n    path: keeper.py\n    function: keep_and_check\n    mode: batch\n    batch_rows: 0\n\
         \x20 last:\n    type: python\n    inputs: [long]\n    path: keeper.py\n    function: words\n    mode: map\n    output_schema: {n_words: int64}\n",
    );
    let shared = run(&env, &p);
    let long = (20..36).count() as u64;
    assert_eq!(stage(&shared, "long")["drops"], serde_json::json!({"keep_and_check": 60 - long}));
    let b = rows(&env, "shared", 1);
    let n_words: Vec<String> = column(&b, "n_words");
    assert_eq!(n_words.len() as u64, long);
    assert!(n_words.iter().all(|n| n.parse::<u64>().unwrap() > 20_000), "{n_words:?}");

    // The same run with batches through the workers' stdin: the same rows.
    let out = env
        .cmd()
        .env("SMELT_PYTHON_PIPE", "1")
        .args(["run", &p.display().to_string(), "--no-progress", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let piped: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(piped["digest"], shared["digest"]);
}

#[test]
#[ignore = "needs Python 3 with pyarrow: SMELT_PYTHON=<venv>/bin/python (.ci/run installs it)"]
fn an_exception_fails_the_run_with_its_traceback_and_the_stage_position() {
    require(&["pyarrow"]);
    let env = Env::new();
    corpus(&env, 2, 10);
    env.write("udf.py", UDF.as_bytes());
    let p = pipeline(
        &env,
        "raises",
        "batch_rows: 4\n",
        "  last:\n    type: python\n    inputs: [docs]\n    path: udf.py\n    function: fails_on\n    mode: map\n    output_schema: {score: float64}\n",
    );
    let out = env.smelt(&["run", &p.display().to_string(), "--no-progress"]);
    assert_eq!(out.status.code(), Some(2), "a user error");
    let e = stderr(&out);
    let line = UDF.lines().position(|l| l.contains("raise ValueError")).unwrap() + 1;
    for want in [
        &format!("{}:7:3: stage `last`: `fails_on` in udf.py raised ValueError on row 4 of the batch (id `d1004`): cannot score d1004", p.display()),
        "Traceback (most recent call last):",
        &format!("udf.py\", line {line}, in fails_on"),
        "ValueError: cannot score d1004",
        "`on_error: drop` drops such rows instead",
    ] {
        assert!(e.contains(want), "no `{want}` in:\n{e}");
    }
    assert!(!e.contains("worker.py") && !e.contains("<string>"), "the worker's own frames are left out:\n{e}");
}

#[test]
#[ignore = "needs Python 3 with pyarrow: SMELT_PYTHON=<venv>/bin/python (.ci/run installs it)"]
fn on_error_drop_counts_each_failing_row_under_its_exception() {
    require(&["pyarrow"]);
    let env = Env::new();
    corpus(&env, 2, 10);
    env.write("udf.py", UDF.as_bytes());
    let p = pipeline(
        &env,
        "drops",
        "batch_rows: 4\n",
        "  one:\n    type: python\n    inputs: [docs]\n    path: udf.py\n    function: fails_on\n    mode: map\n    on_error: drop\n    output_schema: {score: float64}\n\
         \x20 last:\n    type: python\n    inputs: [one]\n    path: udf.py\n    function: fails_on\n    mode: map\n    on_error: drop\n    options: {bad: d0007}\n    output_schema: {score: float64}\n",
    );
    let report = run(&env, &p);
    assert_eq!(stage(&report, "one")["drops"], serde_json::json!({"ValueError": 1}));
    assert_eq!(stage(&report, "last")["drops"], serde_json::json!({"ValueError": 1}));
    let b = rows(&env, "drops", 1);
    let ids = column(&b, "id");
    assert_eq!(ids.len(), 18);
    assert!(!ids.contains(&"d1004".to_string()) && !ids.contains(&"d0007".to_string()));
    assert!(column(&b, "score").iter().all(|s| s == "1.0"), "{:?}", column(&b, "score"));
}

#[test]
#[ignore = "needs Python 3 with pyarrow: SMELT_PYTHON=<venv>/bin/python (.ci/run installs it)"]
fn a_worker_killed_on_a_batch_is_replaced_and_the_batch_retried_once() {
    require(&["pyarrow"]);
    let env = Env::new();
    corpus(&env, 2, 10);
    env.write("udf.py", UDF.as_bytes());
    let marker = env.path().join("died-once");
    let p = pipeline(
        &env,
        "dies-once",
        "batch_rows: 4\nparallelism: 1\n",
        &format!(
            "  last:\n    type: python\n    inputs: [docs]\n    path: udf.py\n    function: dies_once\n    mode: filter\n    options: {{marker: \"{}\"}}\n",
            marker.display()
        ),
    );
    let report = run(&env, &p);
    assert!(marker.exists());
    assert_eq!(report["rows_written"], 20, "every row, once");
    assert_eq!(stage(&report, "last")["counters"]["worker_restarts"], 1);
    assert_eq!(column(&rows(&env, "dies-once", 1), "id").len(), 20);
}

#[test]
#[ignore = "needs Python 3 with pyarrow: SMELT_PYTHON=<venv>/bin/python (.ci/run installs it)"]
fn a_worker_that_always_dies_fails_the_split_with_its_exit_status() {
    require(&["pyarrow"]);
    let env = Env::new();
    corpus(&env, 2, 10);
    env.write("udf.py", UDF.as_bytes());
    let p = pipeline(
        &env,
        "dies",
        "batch_rows: 4\n",
        "  last:\n    type: python\n    inputs: [docs]\n    path: udf.py\n    function: always_dies\n    mode: filter\n",
    );
    let e = run_fails(&env, &p);
    assert!(
        e.contains("stage `last`: the Python worker running `always_dies` in udf.py on a batch of 10 rows died (exit code 7), was replaced, and the new one died (exit code 7) on the same batch"),
        "{e}"
    );
}

#[test]
#[ignore = "needs Python 3 with pyarrow: SMELT_PYTHON=<venv>/bin/python (.ci/run installs it)"]
fn a_hanging_worker_is_killed_at_batch_timeout_s() {
    require(&["pyarrow"]);
    let env = Env::new();
    corpus(&env, 1, 3);
    env.write("udf.py", UDF.as_bytes());
    let p = pipeline(
        &env,
        "hangs",
        "",
        "  last:\n    type: python\n    inputs: [docs]\n    path: udf.py\n    function: hangs\n    mode: batch\n    batch_timeout_s: 1\n",
    );
    let started = std::time::Instant::now();
    let e = run_fails(&env, &p);
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "{:?}", started.elapsed());
    assert!(
        e.contains("on a batch of 3 rows took longer than batch_timeout_s (1 s) and was killed, was replaced, and the new one took longer than batch_timeout_s (1 s) and was killed on the same batch"),
        "{e}"
    );
}

#[test]
#[ignore = "needs Python 3 with pyarrow: SMELT_PYTHON=<venv>/bin/python (.ci/run installs it)"]
fn output_that_does_not_fit_output_schema_names_the_column() {
    require(&["pyarrow"]);
    let env = Env::new();
    corpus(&env, 1, 3);
    env.write("udf.py", UDF.as_bytes());
    let p = pipeline(
        &env,
        "wrong",
        "",
        "  last:\n    type: python\n    inputs: [docs]\n    path: udf.py\n    function: wrong_type\n    mode: map\n    output_schema: {score: float64}\n",
    );
    let e = run_fails(&env, &p);
    assert!(
        e.contains("stage `last`: `wrong_type` in udf.py: column `score` does not fit its type double (output_schema)"),
        "{e}"
    );
    let p = pipeline(
        &env,
        "undeclared",
        "",
        "  last:\n    type: python\n    inputs: [docs]\n    path: udf.py\n    function: undeclared\n    mode: batch\n",
    );
    let e = run_fails(&env, &p);
    assert!(
        e.contains("stage `last`: `undeclared` in udf.py: returned column `extra`, which is neither an input column nor in output_schema (declare it there"),
        "{e}"
    );
}

#[test]
#[ignore = "needs Python 3 with pyarrow: SMELT_PYTHON=<venv>/bin/python (.ci/run installs it)"]
fn workers_get_only_the_environment_variables_named_in_env() {
    require(&["pyarrow"]);
    let env = Env::new();
    corpus(&env, 1, 2);
    env.write("udf.py", UDF.as_bytes());
    let p = pipeline(
        &env,
        "environ",
        "",
        "  last:\n    type: python\n    inputs: [docs]\n    path: udf.py\n    function: environment\n    mode: map\n    env: [SMELT_TEST_NAMED]\n    output_schema: {named: string, other: string}\n",
    );
    let out = env
        .cmd()
        .args(["run", &p.display().to_string(), "--no-progress", "--format", "json"])
        .env("SMELT_TEST_NAMED", "passed")
        .env("SMELT_TEST_OTHER", "a secret")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let b = rows(&env, "environ", 1);
    assert_eq!(column(&b, "named"), ["passed", "passed"]);
    assert_eq!(column(&b, "other"), ["null", "null"]);
}

#[test]
#[ignore = "needs Python 3 with pyarrow: SMELT_PYTHON=<venv>/bin/python (.ci/run installs it)"]
fn lineage_records_the_code_hash_and_a_changed_function_is_a_lineage_change() {
    require(&["pyarrow"]);
    let env = Env::new();
    corpus(&env, 1, 4);
    env.write("udf.py", UDF.as_bytes());
    let p = pipeline(
        &env,
        "lineage",
        "",
        "  last:\n    type: python\n    inputs: [docs]\n    path: udf.py\n    function: long_enough\n",
    );
    run(&env, &p);
    env.write("udf.py", UDF.replace("min_chars=100", "min_chars=101").as_bytes());
    run(&env, &p);
    let m = env.json(&["catalog", "show", "lineage@1"]);
    let options = &m["lineage"]["resolved_config"]["stages"][1]["options"];
    let hash = format!("xxh3-128:{:032x}", xxhash_rust::xxh3::xxh3_128(UDF.as_bytes()));
    assert_eq!(options["code_hash"], hash.as_str());
    assert_eq!(options["mode"], "filter", "the decorator's mode");
    let diff = env.json(&["catalog", "diff", "lineage@1", "lineage@2"]);
    let changes = diff["lineage"]["config_changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(changes[0]["path"].as_str().unwrap().ends_with("code_hash"), "{changes:?}");
    assert_eq!(changes[0]["before"], hash.as_str());
}

/// An interpreter without pyarrow: `python -S` (no site-packages), as a script.
fn python_without_site(env: &Env) -> PathBuf {
    let p = env.write("bare-python", format!("#!/bin/sh\nexec {} -S \"$@\"\n", python()).as_bytes());
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    p
}

#[test]
#[ignore = "needs Python 3 with pyarrow: SMELT_PYTHON=<venv>/bin/python (.ci/run installs it)"]
fn validate_says_what_is_missing_and_what_to_install() {
    require(&["pyarrow"]);
    let env = Env::new();
    corpus(&env, 1, 2);
    env.write("udf.py", UDF.as_bytes());
    env.write("needs_pkg.py", b"import not_installed_pkg\n\ndef f(row):\n    return True\n");
    let bare = python_without_site(&env);
    let cases: Vec<(&str, String, Vec<String>)> = vec![
        (
            "no-module",
            "module: no_such_module\n    function: f\n    mode: filter\n".into(),
            vec![
                "no-module.yaml:9:13: error: stage `last` (python): `".into(),
                "cannot import `no_such_module`: No module named 'no_such_module'".into(),
                "at `stages.last.module`".into(),
                "help: install the package that provides `no_such_module` into that interpreter".into(),
            ],
        ),
        (
            "imports-missing",
            "path: needs_pkg.py\n    function: f\n    mode: filter\n".into(),
            vec![
                "needs_pkg.py imports `not_installed_pkg`, which `".into(),
                "at `stages.last.path`".into(),
                "-m pip install not_installed_pkg`".into(),
            ],
        ),
        (
            "no-function",
            "path: udf.py\n    function: scroe\n    mode: map\n".into(),
            vec![
                "udf.py has no function `scroe`".into(),
                "at `stages.last.function`".into(),
                "help: did you mean `score`?".into(),
            ],
        ),
        (
            "no-mode",
            "path: udf.py\n    function: score\n".into(),
            vec![
                "`score` in udf.py has no mode: give `mode:` (batch, filter or map)".into(),
                "at `stages.last.mode`".into(),
            ],
        ),
        (
            "bad-options",
            "path: udf.py\n    function: long_enough\n    options: {min_char: 3}\n".into(),
            vec![
                "`long_enough` in udf.py does not take these options: got an unexpected keyword argument 'min_char'"
                    .into(),
                "at `stages.last.options`".into(),
            ],
        ),
        (
            "no-pyarrow",
            format!("path: udf.py\n    function: score\n    mode: map\n    python: {}\n", bare.display()),
            vec![
                "has no pyarrow, which smelt's Python workers need".into(),
                "at `stages.last.python`".into(),
                format!("help: install it: `{} -m pip install pyarrow`", bare.display()),
            ],
        ),
        (
            "no-python",
            "path: udf.py\n    function: score\n    mode: map\n    python: /nonexistent/bin/python3\n".into(),
            vec![
                "cannot run `/nonexistent/bin/python3`: No such file or directory".into(),
                "help: install Python 3 with pyarrow".into(),
            ],
        ),
    ];
    for (name, options, wants) in cases {
        let p = pipeline(&env, name, "", &format!("  last:\n    type: python\n    inputs: [docs]\n    {options}"));
        let out = env.smelt(&["validate", &p.display().to_string()]);
        assert_eq!(out.status.code(), Some(2), "{name}");
        let text = common::stdout(&out) + &stderr(&out);
        for want in wants {
            assert!(text.contains(&want), "{name}: no `{want}` in:\n{text}");
        }
    }
}

#[test]
fn a_missing_interpreter_is_a_validate_error_at_python() {
    let env = Env::new();
    corpus(&env, 1, 2);
    env.write("udf.py", b"def f(row):\n    return True\n");
    let p = pipeline(
        &env,
        "nopython",
        "",
        "  last:\n    type: python\n    inputs: [docs]\n    path: udf.py\n    function: f\n    mode: filter\n    python: ./no/such/python3\n",
    );
    let out = env.smelt(&["validate", &p.display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
    let text = common::stdout(&out) + &stderr(&out);
    assert!(text.contains(&format!("{}:12:13: error: stage `last` (python): cannot run `", p.display())), "{text}");
    assert!(text.contains("no/such/python3`: No such file or directory"), "{text}");
    assert!(text.contains("at `stages.last.python`"), "{text}");
    let out = env.smelt(&[
        "validate",
        &env.write("nofile.yaml", std::fs::read_to_string(&p).unwrap().replace("udf.py", "nope.py").as_bytes())
            .display()
            .to_string(),
    ]);
    let text = common::stdout(&out) + &stderr(&out);
    assert!(
        text.contains("cannot read ") && text.contains("nope.py") && text.contains("at `stages.last.path`"),
        "{text}"
    );
}

/// Runs each of `steps` (name -> [class path, args]) over the documents of `docs.jsonl` in
/// datatrove itself (`step.run`), as the reference: kept ids, texts, language metadata and
/// datatrove's own stats (`dropped`, `dropped_<reason>`).
const DATATROVE_REFERENCE: &str = r#"
import importlib, json, sys
from datatrove.data import Document
sys.path.insert(0, sys.argv[1])
rows = [json.loads(line) for line in open(sys.argv[1] + "/in/docs.jsonl")]
out = {}
for name, (dotted, args) in json.loads(sys.argv[2]).items():
    module, cls = dotted.rsplit(".", 1)
    step = getattr(importlib.import_module(module), cls)(**args)
    docs = [Document(text=r["text"], id=r["id"], metadata={"url": r["url"]}) for r in rows]
    kept = list(step.run(iter(docs)))
    out[name] = {
        "kept": [d.id for d in kept],
        "texts": [d.text for d in kept],
        "language": [d.metadata.get("language") for d in kept],
        "language_score": [repr(d.metadata.get("language_score")) for d in kept],
        "stats": {k: v.total for k, v in step.stats.stats.items()},
    }
print(json.dumps(out))
"#;

/// Points datatrove's fastText LID-176 download at smelt's own copy of the model (the same
/// file: models/lid.176.ftz), under `hf_home`, at the path datatrove computes for it.
const SEED_LID_MODEL: &str = r#"
import os, shutil, sys
from huggingface_hub import cached_assets_path
from datatrove.io import strip_protocol
from datatrove.utils.lid import FT176LID
d = cached_assets_path(library_name="datatrove", namespace="lid", subfolder="ft176")
p = os.path.join(d, strip_protocol(FT176LID.MODEL_URL).replace("/", "_"))
shutil.copy(sys.argv[1], p)
open(p + ".completed", "a").close()
"#;

const USER_FILTER: &str = r#"
from datatrove.pipeline.filters.base_filter import BaseFilter


class WordsFilter(BaseFilter):
    name = "words"

    def __init__(self, min_words=5, banned="zzz", batch_size=1, exclusion_writer=None):
        super().__init__(exclusion_writer, batch_size)
        self.min_words, self.banned = min_words, banned

    def filter(self, doc):
        if len(doc.text.split()) < self.min_words:
            return False, "too_few_words"
        if self.banned in doc.text:
            return False
        return True
"#;

/// Documents for the parity test: texts in several languages, some with lines of symbols,
/// URLs that trip each of URLFilter's rules.
fn datatrove_corpus(env: &Env) {
    let texts = [
        "The committee published its annual report on Tuesday, describing how the new rules changed the market.",
        "Le gouvernement a présenté mardi un projet de loi destiné à réformer le système des retraites en France.",
        "Die Bundesregierung hat am Dienstag einen Gesetzentwurf zur Reform des Rentensystems vorgelegt.",
        "El gobierno presentó el martes un proyecto de ley para reformar el sistema de pensiones del país.",
        "Правительство во вторник представило законопроект о реформе пенсионной системы страны.",
        "政府周二提出了一项改革国家养老金制度的法案，引起了广泛讨论。",
        "政府は火曜日、年金制度を改革する法案を提出し、議論を呼んでいる。",
        "Il governo ha presentato martedì un disegno di legge per riformare il sistema pensionistico.",
        "ok 123 !!",
        "Headline of the story\n-----\nThe story itself has a few sentences in English, as news stories do.\n***\n!!!\nThe end.",
        "zzz this English text has the banned marker but is otherwise a normal sentence about nothing.",
        "Too short text",
        "A second English paragraph talks about the weather, which was rainy and cold all week long.",
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt.",
    ];
    let urls = [
        "https://example.org/a",
        "https://mail.0-800-email.com/x",
        "https://010206upi.blogspot.ae/p",
        "allegro.pl/oferta/clit-sucker-vagina-sucking-vibrator-female-clitori-12652674927",
        "https://example.com/horny-pics",
        "https://example.com/babes/ass/",
        "https://example.com/2-girls-1-cup-video",
        "https://news.example.net/2024/05/story",
    ];
    let mut lines = String::new();
    for i in 0..(texts.len() * 2) {
        let doc = serde_json::json!({"id": format!("t{i:02}"), "text": texts[i % texts.len()], "url": urls[(i * 3) % urls.len()]});
        lines.push_str(&doc.to_string());
        lines.push('\n');
    }
    env.write("in/docs.jsonl", lines.as_bytes());
}

#[test]
#[ignore = "needs Python 3 with pyarrow and datatrove 0.10.1 (+ tldextract, pyahocorasick, fasteners, fasttext-numpy2-wheel, aiohttp): .ci/run installs them and sets SMELT_PYTHON"]
fn datatrove_steps_keep_drop_and_change_what_datatrove_itself_does() {
    require(&["pyarrow", "datatrove", "tldextract", "ahocorasick", "fasteners", "fasttext", "aiohttp"]);
    let env = Env::new();
    datatrove_corpus(&env);
    env.write("mysteps.py", USER_FILTER.as_bytes());
    // Offline: LID-176 from this repository, the public suffix list tldextract bundles.
    let vars = [
        ("HF_HOME", env.path().join("hf").display().to_string()),
        ("TLDEXTRACT_CACHE", env.path().join("tld").display().to_string()),
        ("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", String::new()),
    ];
    let py = |args: &[&str]| {
        let out = Command::new(python()).args(args).envs(vars.iter().cloned()).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    py(&["-c", SEED_LID_MODEL, &common::repo().join("models/lid.176.ftz").display().to_string()]);
    let steps = serde_json::json!({
        "urls": ["datatrove.pipeline.filters.URLFilter", {}],
        "lang": ["datatrove.pipeline.filters.LanguageFilter", {"languages": ["en"]}],
        "words": ["mysteps.WordsFilter", {"min_words": 4, "batch_size": 3}],
        "symbols": ["datatrove.pipeline.formatters.SymbolLinesFormatter", {}],
    });
    let reference: serde_json::Value =
        serde_json::from_str(&py(&["-c", DATATROVE_REFERENCE, &env.path().display().to_string(), &steps.to_string()]))
            .unwrap();

    for (name, spec) in steps.as_object().unwrap() {
        let (class, args) = (spec[0].as_str().unwrap(), &spec[1]);
        let declared =
            if name == "lang" { "\n    output_schema: {language: string, language_score: float64}" } else { "" };
        let p = pipeline(
            &env,
            name,
            "batch_rows: 8\n",
            &format!(
                "  last:\n    type: datatrove\n    inputs: [docs]\n    step: {class}\n    args: {args}\n    env: [HF_HOME, TLDEXTRACT_CACHE, TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS]{declared}\n"
            ),
        );
        let out = env
            .cmd()
            .args(["run", &p.display().to_string(), "--no-progress", "--format", "json"])
            .envs(vars.iter().cloned())
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let want = &reference[name];
        let b = rows(&env, name, 1);
        let kept: Vec<String> =
            want["kept"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
        assert_eq!(column(&b, "id"), kept, "{name}: the kept documents");

        // datatrove counts `dropped` and, when the filter gives one, `dropped_<reason>`.
        let stats = want["stats"].as_object().unwrap();
        let count = |v: &serde_json::Value| v.as_f64().unwrap() as u64;
        let mut drops: BTreeMap<String, u64> = stats
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("dropped_").map(|reason| (reason.to_string(), count(v))))
            .collect();
        // Drops without a reason are smelt's under the step's class name.
        let unnamed = stats.get("dropped").map_or(0, count) - drops.values().sum::<u64>();
        if unnamed > 0 {
            drops.insert(class.rsplit('.').next().unwrap().to_string(), unnamed);
        }
        let got: BTreeMap<String, u64> = serde_json::from_value(stage(&report, "last")["drops"].clone()).unwrap();
        assert_eq!(got, drops, "{name}: drop reasons and counts");
        match name.as_str() {
            "urls" => assert!(got.len() >= 4, "URLFilter's rules are exercised: {got:?}"),
            "lang" => {
                assert!(!kept.is_empty() && got["LanguageFilter"] > 0, "{got:?}");
                let langs: Vec<String> =
                    want["language"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
                assert_eq!(column(&b, "language"), langs);
                let scores: Vec<f64> = column(&b, "language_score").iter().map(|s| s.parse().unwrap()).collect();
                let want_scores: Vec<f64> = want["language_score"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().parse().unwrap())
                    .collect();
                assert_eq!(scores, want_scores, "the scores datatrove wrote into metadata, bit for bit");
            }
            "words" => assert_eq!(got.keys().collect::<Vec<_>>(), ["WordsFilter", "too_few_words"]),
            "symbols" => {
                let texts: Vec<String> =
                    want["texts"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
                assert_eq!(column(&b, "text"), texts, "the formatter's text");
                assert!(texts.iter().any(|t| t.starts_with("Headline of the story\nThe story")), "{texts:?}");
            }
            _ => unreachable!(),
        }
        let m = env.json(&["catalog", "show", &format!("{name}@1")]);
        assert_eq!(m["lineage"]["resolved_config"]["stages"][1]["options"]["datatrove_version"], "0.10.1");
    }
}
