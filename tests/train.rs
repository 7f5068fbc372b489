//! Training runs recorded against versions (`smelt train`), on real processes:
//! TensorBoard event files written by a real writer, a real MLflow tracking
//! server (when `SMELT_MLFLOW_URL` is set; .ci/run starts one), OpenLineage
//! events to a real HTTP receiver on 127.0.0.1, and the end-to-end question
//! (a real training loss on CPU, `compare` and `spikes` pointing at planted
//! documents) with a real Python (`SMELT_PYTHON`).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::{example, repo, Env};

fn fixture(rel: &str) -> String {
    repo().join("tests/fixtures").join(rel).display().to_string()
}

fn quickstart(env: &Env) -> serde_json::Value {
    env.json(&["run", &example("quickstart.yaml").display().to_string()])
}

#[test]
fn imported_runs_are_listed_shown_compared_and_kept_by_gc() {
    let env = Env::new();
    assert_eq!(quickstart(&env)["version"], 1);
    // Old-style scalars (simple_value) and TF2-style scalar tensors, from tensorboardX.
    let a = env.json(&[
        "train",
        "import",
        "tb-simple",
        "--dataset",
        "quickstart@1",
        "--tensorboard",
        &fixture("tensorboard/run1"),
        "--metric",
        "loss=train/loss",
    ]);
    assert_eq!(a["created"], true);
    assert_eq!(a["steps_imported"], 40);
    env.ok(&[
        "train",
        "import",
        "tb-tensor",
        "--dataset",
        "quickstart@1",
        "--tensorboard",
        &fixture("tensorboard/run2"),
        "--metric",
        "loss=train/loss",
    ]);
    let show = env.json(&["train", "show", "tb-simple"]);
    assert_eq!(show["steps"], 40);
    assert_eq!(show["final_value"], 4.0 - 39.0 / 16.0);
    assert_eq!(show["best_step"], 39);
    assert_eq!(show["metrics"], serde_json::json!(["loss", "lr"]));
    assert_eq!(show["series"][3], serde_json::json!([3, 4.0 - 3.0 / 16.0]));
    let tensor = env.json(&["train", "show", "tb-tensor"]);
    assert_eq!(tensor["series"], show["series"], "both scalar encodings give the same curve");
    let table = env.ok(&["train", "show", "tb-simple"]);
    assert!(table.contains("final 1.5625 (step 39)") && table.contains('▁') && table.contains('█'), "{table}");

    // Same curve, same data: they never part.
    let same = env.json(&["train", "compare", "tb-simple", "tb-tensor", "--window", "5"]);
    assert_eq!(same["divergence"], serde_json::Value::Null);
    assert_eq!(same["points"], 40);
    assert_eq!(same["diff"]["same_data"], true);

    // A CSV whose loss jumps by 1.0 from step 20 parts there; values of a step add to an existing run.
    let mut csv = String::from("iter,loss\n");
    for s in 0..40 {
        csv.push_str(&format!("{s},{}\n", 4.0 - s as f64 / 16.0 + if s >= 20 { 1.0 } else { 0.0 }));
    }
    let f = env.write("m.csv", csv.as_bytes());
    env.ok(&[
        "train",
        "import",
        "csv-run",
        "--dataset",
        "quickstart@1",
        "--csv",
        &f.display().to_string(),
        "--step-column",
        "iter",
    ]);
    let apart = env.json(&["train", "compare", "tb-simple", "csv-run", "--window", "5"]);
    assert_eq!(apart["divergence"]["step"], 20.0, "{apart}");
    assert!(apart["divergence"]["gap"].as_f64().unwrap() > 0.0);
    let grad = env.write("g.jsonl", b"{\"step\": 5, \"grad_norm\": 0.25}\n");
    env.ok(&["train", "import", "csv-run", "--jsonl", &grad.display().to_string()]);
    let merged = env.json(&["train", "show", "csv-run"]);
    assert_eq!(merged["steps"], 40);
    assert_eq!(merged["metrics"], serde_json::json!(["grad_norm", "loss"]));
    let html = env.path().join("compare.html");
    let out =
        env.ok(&["train", "compare", "tb-simple", "csv-run", "--window", "5", "--out", &html.display().to_string()]);
    assert!(out.contains("diverge  from step 20 on: B is higher"), "{out}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(page.matches("<polyline").count(), 2);

    // Errors say what to do.
    let e = env.smelt(&["train", "show", "tb-simpel"]);
    assert!(!e.status.success());
    assert!(common::stderr(&e).contains("did you mean tb-simple?"), "{}", common::stderr(&e));
    let e = env.smelt(&["train", "import", "new-run", "--csv", &f.display().to_string(), "--step-column", "iter"]);
    assert!(common::stderr(&e).contains("--dataset DATASET@VERSION"), "{}", common::stderr(&e));

    let list = env.json(&["train", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 3);
    // The index is rebuilt from the run files.
    assert!(env.ok(&["catalog", "rebuild"]).contains("3 training runs recorded"));

    // gc --keep-trained keeps the version the runs read; an untrained older one expires.
    quickstart(&env);
    quickstart(&env);
    let gc = env.ok(&["catalog", "gc", "--keep-last", "1", "--keep-trained", "--grace-hours", "0"]);
    assert!(gc.contains("expired quickstart@2") && !gc.contains("quickstart@1 "), "{gc}");
    let log = env.json(&["catalog", "log", "quickstart"]);
    let kept: Vec<u64> = log.as_array().unwrap().iter().map(|v| v["version"].as_u64().unwrap()).collect();
    assert_eq!(kept, vec![1, 3]);
}

/// Accepts HTTP POSTs on 127.0.0.1 and keeps their JSON bodies.
fn lineage_receiver() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let (mut line, mut len, mut path) = (String::new(), 0usize, String::new());
            r.read_line(&mut line).unwrap();
            if let Some(p) = line.split_whitespace().nth(1) {
                path = p.to_string();
            }
            loop {
                line.clear();
                r.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap();
                    }
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let mut v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            v["_path"] = serde_json::json!(path);
            keep.lock().unwrap().push(v);
            let mut w = conn;
            let _ = w.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (url, got)
}

#[test]
fn openlineage_events_reach_a_lineage_server_and_a_file() {
    let env = Env::new();
    let (url, got) = lineage_receiver();
    env.ok(&["run", &example("quickstart.yaml").display().to_string(), "--run-id", "ol-1", "--openlineage", &url]);
    let events = got.lock().unwrap().clone();
    let kinds: Vec<&str> = events.iter().map(|e| e["eventType"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["START", "COMPLETE"]);
    assert_eq!(events[0]["_path"], "/api/v1/lineage");
    assert_eq!(events[0]["run"]["runId"], events[1]["run"]["runId"]);
    assert_eq!(events[0]["run"]["facets"]["smelt"]["runId"], "ol-1");
    assert_eq!(events[1]["job"]["name"], "quickstart");
    let out = &events[1]["outputs"][0];
    assert_eq!(out["name"], "quickstart");
    assert_eq!(out["facets"]["version"]["datasetVersion"], "1");
    let inputs = events[1]["inputs"].as_array().unwrap();
    assert!(inputs.len() >= 3 && inputs.iter().all(|i| i["name"].as_str().unwrap().ends_with(".gz")), "{inputs:?}");

    // A run that fails sends FAIL with the error; file: targets get one JSON line per event.
    let bad = env.write("bad.yaml", b"dataset: bad\nstages:\n  crawl: {type: warc, paths: [\"missing/*.warc.gz\"]}\n  text: {type: html_to_text, inputs: [crawl]}\n  hashed: {type: content_hash, inputs: [text]}\n  out: {type: parquet, inputs: [hashed]}\n");
    let file = env.path().join("ol.jsonl");
    let r = env.smelt(&["run", &bad.display().to_string(), "--openlineage", &format!("file:{}", file.display())]);
    assert!(!r.status.success());
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&file).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let kinds: Vec<&str> = lines.iter().map(|e| e["eventType"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["START", "FAIL"], "{lines:?}");
    assert!(lines[1]["run"]["facets"]["errorMessage"]["message"].as_str().unwrap().contains("missing"), "{}", lines[1]);

    // Ranks send nothing; the commit of their run sends COMPLETE with the version.
    let ranks = env.path().join("ranks.jsonl");
    let target = format!("file:{}", ranks.display());
    for rank in ["0", "1"] {
        env.ok(&[
            "run",
            &example("quickstart.yaml").display().to_string(),
            "--run-id",
            "ol-ranks",
            "--rank",
            rank,
            "--world-size",
            "2",
            "--openlineage",
            &target,
        ]);
    }
    assert!(!ranks.exists(), "ranks send no events");
    env.ok(&["commit", "ol-ranks", "--openlineage", &target]);
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&ranks).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["eventType"], "COMPLETE");
    assert_eq!(lines[0]["outputs"][0]["facets"]["version"]["datasetVersion"], "2");
    assert_eq!(lines[0]["run"]["facets"]["smelt"]["runId"], "ol-ranks");

    // An unreachable server is a warning, never a failed run.
    let r =
        env.smelt(&["run", &example("quickstart.yaml").display().to_string(), "--openlineage", "http://127.0.0.1:9"]);
    assert!(r.status.success());
    assert!(common::stderr(&r).contains("OpenLineage START event of run"), "{}", common::stderr(&r));
}

fn mlflow_url() -> Option<String> {
    std::env::var("SMELT_MLFLOW_URL").ok().filter(|u| !u.is_empty())
}

fn mlflow_post(url: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
    // A plain HTTP/1.1 client: the test talks to the server as any REST client would.
    let rest = url.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(rest).unwrap();
    let body = body.to_string();
    write!(
        s,
        "POST /api/2.0/mlflow/{path} HTTP/1.1\r\nHost: {rest}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{path}: {resp}");
    let json = resp.split_once("\r\n\r\n").unwrap().1;
    // Chunked or not, the JSON object is the body's only brace-delimited part.
    let (start, end) = (json.find('{').unwrap(), json.rfind('}').unwrap());
    serde_json::from_str(&json[start..=end]).unwrap()
}

#[test]
#[ignore = "needs a running MLflow tracking server: SMELT_MLFLOW_URL=http://127.0.0.1:5078 (.ci/mlflow-up.sh starts one)"]
fn metrics_are_imported_from_a_real_mlflow_server() {
    let url = mlflow_url().expect("SMELT_MLFLOW_URL");
    let env = Env::new();
    quickstart(&env);
    let name = format!("smelt-import-{}", std::process::id());
    let exp = mlflow_post(&url, "experiments/create", serde_json::json!({"name": name}));
    let exp = exp["experiment_id"].as_str().unwrap().to_string();
    let run =
        mlflow_post(&url, "runs/create", serde_json::json!({"experiment_id": exp, "start_time": 1765000000000u64}));
    let run_id = run["run"]["info"]["run_id"].as_str().unwrap().to_string();
    // 1,200 points: more than one page is not needed, but several log-batch calls are.
    for chunk in 0..12 {
        let metrics: Vec<serde_json::Value> = (chunk * 100..(chunk + 1) * 100)
            .flat_map(|s| {
                [
                    serde_json::json!({"key": "loss", "value": 5.0 - s as f64 / 1000.0, "timestamp": 1765000000000u64 + s, "step": s}),
                    serde_json::json!({"key": "lr", "value": 0.001, "timestamp": 1765000000000u64 + s, "step": s}),
                ]
            })
            .collect();
        mlflow_post(
            &url,
            "runs/log-batch",
            serde_json::json!({"run_id": run_id, "metrics": metrics,
            "params": if chunk == 0 { serde_json::json!([{"key": "model", "value": "tiny"}]) } else { serde_json::json!([]) }}),
        );
    }
    let r = env.json(&[
        "train",
        "import",
        "from-mlflow",
        "--dataset",
        "quickstart@1",
        "--mlflow",
        &url,
        "--mlflow-run",
        &run_id,
    ]);
    assert_eq!(r["steps_imported"], 1200);
    let show = env.json(&["train", "show", "from-mlflow"]);
    assert_eq!(show["steps"], 1200);
    assert_eq!(show["final_value"], 5.0 - 1199.0 / 1000.0);
    assert_eq!(show["metrics"], serde_json::json!(["loss", "lr"]));
    assert_eq!(show["ranks_detail"][0]["params"]["model"], "tiny");
    let e = env.smelt(&[
        "train",
        "import",
        "x",
        "--dataset",
        "quickstart@1",
        "--mlflow",
        &url,
        "--mlflow-run",
        "0123456789abcdef",
    ]);
    assert!(!e.status.success());
    assert!(common::stderr(&e).contains("runs/get answered"), "{}", common::stderr(&e));
}

fn python() -> String {
    std::env::var("SMELT_PYTHON").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "python3".into())
}

/// `n` JSON Lines documents from junk.example whose text is garbage: random
/// printable ASCII from a seeded generator (thousands of distinct,
/// unpredictable tokens).
fn junk_jsonl(path: &Path, n: usize) {
    let mut out = String::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..n {
        let mut text = String::new();
        for _ in 0..900 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            text.push(char::from(0x21 + (x % 94) as u8));
            if x % 9 == 0 {
                text.push(' ');
            }
        }
        let doc =
            serde_json::json!({"id": format!("junk-{i}"), "url": format!("http://junk.example/p/{i}"), "text": text});
        out.push_str(&format!("{doc}\n"));
    }
    std::fs::write(path, out).unwrap();
}

#[test]
#[ignore = "needs Python 3 with numpy and pyarrow: SMELT_PYTHON=<venv>/bin/python (.ci/run installs it)"]
fn compare_and_spikes_point_at_the_planted_documents() {
    let env = Env::new();
    // Version 1: 209 real Reuters-21578 stories (the classify fixtures); version 2: the same plus
    // 10 garbage documents from one domain (about 16% of the tokens).
    let data = env.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(repo().join("stages/tests/fixtures/classify/texts.jsonl"), data.join("reuters.jsonl")).unwrap();
    let pipeline = env.write(
        "lm.yaml",
        b"dataset: lm\nstages:\n  docs: {type: jsonl, paths: [\"data/*.jsonl\"]}\n  hashed: {type: content_hash, inputs: [docs]}\n  chars: {type: sql, inputs: [hashed], columns: {n_chars: \"character_length(text)\"}}\n  tok: {type: tokenize, inputs: [chars], tokenizer: \"tiktoken:r50k_base\", max_tokens: 1024, overflow: split}\n  out: {type: parquet, inputs: [tok], merge_small_shards: false}\n",
    );
    // Each file its own shard (as examples/train/loss_delta.sh: a separate day's ingest), so the
    // planted documents reach the loader as their own shard, as they did when the figures were made.
    let p = pipeline.display().to_string();
    assert_eq!(env.json(&["run", &p])["version"], 1);
    junk_jsonl(&data.join("zz-junk.jsonl"), 10);
    assert_eq!(env.json(&["run", &p])["version"], 2);
    let root = env.data().join("datasets/lm");
    let trainer = repo().join("examples/train/tiny_lm.py").display().to_string();
    for (run, version) in [("clean", "1"), ("junk", "2")] {
        let out = std::process::Command::new(python())
            .args([
                &trainer,
                &root.display().to_string(),
                "--version",
                version,
                "--run-id",
                run,
                "--epochs",
                "4",
                "--seed",
                "0",
            ])
            .env("PYTHONPATH", repo().join("python"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let cmp = env.json(&["train", "compare", "clean", "junk"]);
    assert!(cmp["divergence"].is_object(), "{cmp}");
    let text = env.ok(&["train", "compare", "clean", "junk"]);
    assert!(
        text.contains("junk.example") && text.contains("diverge  from step"),
        "the diff shows the added domain: {text}"
    );

    let sp = env.json(&["train", "spikes", "junk", "--top", "1000"]); // window 50, z 4
    let spikes: Vec<i64> = sp["spikes"].as_array().unwrap().iter().map(|s| s["step"].as_i64().unwrap()).collect();
    assert!(!spikes.is_empty(), "{sp}");
    assert_eq!(sp["over_represented"][0]["value"], "junk.example", "{}", sp["over_represented"]);
    let planted_doc = |d: &serde_json::Value| d["columns"]["url"].as_str().unwrap_or("").contains("junk.example");
    let docs = sp["documents"].as_array().unwrap();
    let planted_docs = docs.iter().filter(|d| planted_doc(d)).count();

    // Attribution over every batch the run took (the loader's own trace of each step):
    // precision = spike steps whose batch holds planted documents / spike steps;
    // recall = steps whose batch holds planted documents that were flagged / such steps.
    let steps = env.json(&["train", "show", "junk"])["steps"].as_i64().unwrap();
    let mut cmd = std::process::Command::new(python());
    cmd.args(["-m", "smelt_data.trace", &root.display().to_string(), "junk", "--excerpt-tokens", "0"]);
    for s in 0..steps {
        cmd.args(["--step", &s.to_string()]);
    }
    let out = cmd.env("PYTHONPATH", repo().join("python")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let holds: std::collections::BTreeSet<i64> = all["batches"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| {
            b["samples"].as_array().unwrap().iter().any(|s| s["docs"].as_array().unwrap().iter().any(planted_doc))
        })
        .map(|b| b["step"].as_i64().unwrap())
        .collect();
    let flagged_holding = spikes.iter().filter(|s| holds.contains(s)).count();
    let precision = flagged_holding as f64 / spikes.len() as f64;
    let recall = flagged_holding as f64 / holds.len().max(1) as f64;
    eprintln!(
        "attribution: {} steps, {} spikes, {} steps hold planted documents; precision {precision:.3}, recall {recall:.3}; \
         {planted_docs} of {} documents in spike batches are planted; junk.example token share in spike batches {:.3} (version {:.3})",
        steps,
        spikes.len(),
        holds.len(),
        docs.len(),
        sp["over_represented"][0]["share"].as_f64().unwrap(),
        sp["over_represented"][0]["baseline"].as_f64().unwrap()
    );
    // A numeric column of the version (here the sql stage's n_chars) is compared too.
    let n_chars = sp["signals"].as_array().unwrap().iter().find(|g| g["column"] == "n_chars").expect("n_chars signal");
    let (spiky, all) = (n_chars["spikes_mean"].as_f64().unwrap(), n_chars["version_mean"].as_f64().unwrap());
    assert!(
        (950.0..1050.0).contains(&spiky) && all < 0.8 * spiky,
        "garbage documents hold ~1,000 characters, stories fewer: {n_chars}"
    );
    assert!(precision >= 0.8, "precision {precision}");
    assert!(recall >= 0.3, "recall {recall}");

    // One step's batch, as the loader gave it.
    let b = env.json(&["train", "batch", "junk", "--step", "5"]);
    assert_eq!(b["batches"][0]["samples"].as_array().unwrap().len(), 8);
}
