//! `decontaminate` through `smelt run`: a committed version as a benchmark
//! (its index stored beside it and read by the next run), the three actions,
//! per-benchmark reasons in the funnel, and `contamination` through SQL.

mod common;

use std::io::Read;

use common::{repo, walk, Env};

/// HumanEval's problems, from the fixture.
fn humaneval() -> Vec<serde_json::Value> {
    let bytes = std::fs::read(repo().join("stages/tests/fixtures/decontaminate/HumanEval.jsonl.gz")).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..]).read_to_string(&mut text).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The 10 Reuters stories, three of them with a benchmark item planted inside.
fn corpus(env: &Env) -> std::path::PathBuf {
    let he = humaneval();
    let stories = std::fs::read_to_string(repo().join("examples/data/news/reuters_stories.jsonl")).unwrap();
    let mut out = String::new();
    for (i, line) in stories.lines().enumerate() {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        let text = v["text"].as_str().unwrap().to_string();
        let planted = match i {
            // A HumanEval prompt, re-indented and upper-cased, inside the story.
            2 => Some(he[11]["prompt"].as_str().unwrap().to_uppercase().replace("    ", "\t")),
            5 => Some(format!("Here is the task:\n```\n{}```\nGood luck.", he[40]["prompt"].as_str().unwrap())),
            // An MMLU question as lm-evaluation-harness prints it.
            7 => Some(
                "For which of the following thermodynamic processes is the increase in the internal energy \
                 of an ideal gas equal to the heat added to the gas?\nA. Constant temperature\nB. Constant volume\n\
                 C. Constant pressure\nD. Adiabatic\nAnswer: B"
                    .to_string(),
            ),
            _ => None,
        };
        if let Some(p) = planted {
            let mid = text.find("\n\n").map_or(text.len(), |i| i + 2);
            v["text"] = format!("{}{p}\n\n{}", &text[..mid], &text[mid..]).into();
        }
        out.push_str(&serde_json::to_string(&v).unwrap());
        out.push('\n');
    }
    env.write("corpus.jsonl", out.as_bytes())
}

fn pipeline(env: &Env, name: &str, action: &str) -> String {
    let mmlu = repo().join("stages/tests/fixtures/decontaminate/mmlu_dev.jsonl");
    let text = format!(
        "dataset: {name}\nstages:\n  docs: {{type: jsonl, paths: [corpus.jsonl]}}\n  clean:\n    type: decontaminate\n    inputs: [docs]\n    action: {action}\n    benchmarks:\n      - evals@1\n      - {{from: \"{}\", fields: [question, choices]}}\n  hashed: {{type: content_hash, inputs: [clean]}}\n  out: {{type: parquet, inputs: [hashed]}}\n",
        mmlu.display()
    );
    env.write(&format!("{name}.yaml"), text.as_bytes()).display().to_string()
}

/// Commits the first 50 HumanEval prompts as dataset `evals` (id = task_id, text = prompt).
fn evals(env: &Env) {
    let mut lines = String::new();
    for p in humaneval().iter().take(50) {
        let row = serde_json::json!({"id": p["task_id"], "text": p["prompt"]});
        lines.push_str(&format!("{row}\n"));
    }
    env.write("evals.jsonl", lines.as_bytes());
    let p = env.write("evals.yaml", b"dataset: evals\nstages:\n  items: {type: jsonl, paths: [evals.jsonl]}\n  hashed: {type: content_hash, inputs: [items]}\n  out: {type: parquet, inputs: [hashed]}\n");
    env.json(&["run", &p.display().to_string()]);
}

#[test]
fn a_version_as_benchmark_drops_annotates_and_cuts() {
    let env = Env::new();
    evals(&env);
    corpus(&env);

    let run = env.json(&["run", &pipeline(&env, "news", "drop")]);
    assert_eq!(run["rows_written"], 7, "{run}");
    // The index of evals@1 is stored beside it, and read (not rebuilt) by the next run.
    let dir = env.data().join("datasets/evals/_indexes");
    let index: Vec<_> = walk(&dir);
    assert_eq!(index.len(), 1, "{index:?}");
    assert!(index[0].ends_with("000001.bin"), "{index:?}");
    let stored = std::fs::metadata(&index[0]).unwrap().modified().unwrap();

    let m = env.json(&["catalog", "show", "news@1"]);
    let clean = m["funnel"].as_array().unwrap().iter().find(|s| s["stage"] == "clean").unwrap().clone();
    assert_eq!(clean["drops"], serde_json::json!({"contaminated:evals": 2, "contaminated:mmlu_dev": 1}), "{clean}");
    assert_eq!(clean["counters"]["match:evals:HumanEval/11"], 1, "{clean}");
    assert_eq!(clean["counters"]["match:mmlu_dev:college_physics/4"], 1, "{clean}");
    let resolved = m["lineage"]["resolved_config"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "clean")
        .unwrap()
        .clone();
    assert_eq!(resolved["options"]["indexed"][0]["from"], "evals@1", "{resolved}");
    assert_eq!(resolved["options"]["indexed"][0]["items"], 50, "{resolved}");

    // Annotate keeps all 10 and names the items; SQL finds them.
    let run = env.json(&["run", &pipeline(&env, "annotated", "annotate")]);
    assert_eq!(run["rows_written"], 10);
    assert_eq!(std::fs::metadata(&index[0]).unwrap().modified().unwrap(), stored, "the index was rebuilt");
    let rows = env.json(&[
        "sql",
        "SELECT c['benchmark'] AS benchmark, c['item'] AS item FROM (SELECT unnest(contamination) AS c FROM \"annotated@latest\") ORDER BY item",
    ]);
    let got: Vec<(String, String)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["benchmark"].as_str().unwrap().to_string(), r["item"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        got,
        [
            ("evals".into(), "HumanEval/11".into()),
            ("evals".into(), "HumanEval/40".into()),
            ("mmlu_dev".into(), "college_physics/4".into())
        ],
        "{rows}"
    );
    let n = env.json(&["sql", "SELECT count(*) AS n FROM \"annotated@latest\" WHERE cardinality(contamination) > 0"]);
    assert_eq!(n[0]["n"], 3, "{n}");

    // Cut keeps the stories, without the planted text.
    let run = env.json(&["run", &pipeline(&env, "cut", "cut")]);
    assert_eq!(run["rows_written"], 10);
    let rows = env.json(&[
        "sql",
        "SELECT text FROM \"cut@latest\" WHERE text LIKE '%internal energy%' OR lower(text) LIKE '%binary xor%'",
    ]);
    assert_eq!(rows.as_array().unwrap().len(), 0, "{rows}");
}

#[test]
fn a_missing_benchmark_is_reported_at_its_entry() {
    let env = Env::new();
    corpus(&env);
    let p = env.write(
        "bad.yaml",
        b"dataset: bad\nstages:\n  docs: {type: jsonl, paths: [corpus.jsonl]}\n  clean:\n    type: decontaminate\n    inputs: [docs]\n    benchmarks: [evals/missing.jsonl]\n  hashed: {type: content_hash, inputs: [clean]}\n  out: {type: parquet, inputs: [hashed]}\n",
    );
    let out = env.smelt(&["validate", &p.display().to_string()]);
    assert!(!out.status.success());
    let err = common::stderr(&out);
    assert!(err.contains("bad.yaml:7:18"), "{err}");
    assert!(err.contains("evals/missing.jsonl does not exist"), "{err}");
    let p = env.write(
        "bad2.yaml",
        b"dataset: bad\nstages:\n  docs: {type: jsonl, paths: [corpus.jsonl]}\n  clean:\n    type: decontaminate\n    inputs: [docs]\n    benchmarks: [nowhere@1]\n  hashed: {type: content_hash, inputs: [clean]}\n  out: {type: parquet, inputs: [hashed]}\n",
    );
    let err = common::stderr(&env.smelt(&["validate", &p.display().to_string()]));
    assert!(err.contains("no committed dataset at"), "{err}");
}
