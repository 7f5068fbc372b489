//! The `audit` stage end to end: risks recorded with the version, `fail`
//! gates that stop the commit, the HTML report opened in real headless
//! Chromium, `audit diff` and `catalog diff`, the same audit for any split or
//! rank layout, and bad input (unparsable lexicons and gates, empty corpora,
//! languages without a lexicon).

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use common::browser::{chromium, chromium_bin, decode_png};
use common::{example, repo, stderr, Env};

/// The Dolma sample documents (examples/data/jsonl, Apache-2.0) as JSON lines.
fn dolma_lines() -> Vec<String> {
    let f = std::fs::File::open(repo().join("examples/data/jsonl/cc_en_head-0091.jsonl.gz")).unwrap();
    let mut s = String::new();
    flate2::read::GzDecoder::new(f).read_to_string(&mut s).unwrap();
    s.lines().map(str::to_string).collect()
}

fn write_jsonl(env: &Env, rel: &str, lines: &[String]) -> PathBuf {
    let mut body = lines.join("\n");
    if !body.is_empty() {
        body.push('\n');
    }
    env.write(rel, body.as_bytes())
}

/// A pipeline: jsonl files → audit (with `audit_options`, YAML lines indented 4) → content_hash → parquet.
fn pipeline(env: &Env, name: &str, dataset: &str, paths: &str, audit_options: &str) -> String {
    let yaml = format!(
        "dataset: {dataset}\nstages:\n  docs:\n    type: jsonl\n    paths: [{paths}]\n  audit:\n    type: audit\n    inputs: [docs]\n{audit_options}  hashed:\n    type: content_hash\n    inputs: [audit]\n  out:\n    type: parquet\n    inputs: [hashed]\n"
    );
    env.write(name, yaml.as_bytes()).display().to_string()
}

fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = find_file(&p, name) {
                return Some(f);
            }
        } else if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
    }
    None
}

#[test]
fn risks_are_recorded_and_the_report_is_self_contained() {
    let env = Env::new();
    let run = env.json(&["run", &example("audit.yaml").display().to_string()]);
    assert_eq!(run["version"], 1, "{run}");
    // The warn gate on religion was crossed (one toxic document in ten mentions Muslims): a risk with samples.
    let m = env.json(&["catalog", "show", "audit-sample@1"]);
    let a = &m["audit"][0];
    assert_eq!(a["stage"], "audit");
    assert_eq!(a["docs"], 10);
    let risks = a["risks"].as_array().unwrap();
    let religion = risks.iter().find(|r| r["metric"] == "toxicity_rate_ratio{axis=religion}").expect("religion risk");
    assert_eq!(religion["action"], "warn");
    assert_eq!(religion["threshold"], 2.0);
    assert_eq!(
        religion["samples"],
        serde_json::json!(["http://911blogger.com/news/2006-11-02/pentagon-video-doubletree-be-released-within-week"])
    );
    let show = env.ok(&["catalog", "show", "audit-sample@1"]);
    assert!(show.contains("audit `audit`: 10 documents, 10 audited"), "{show}");
    assert!(show.contains("toxicity_rate_ratio{axis=religion}"), "{show}");

    let html = env.path().join("report.html");
    let json = env.path().join("report.json");
    env.ok(&[
        "audit",
        "report",
        "audit-sample@1",
        "--out",
        &html.display().to_string(),
        "--json",
        &json.display().to_string(),
    ]);
    let numbers: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(numbers["audits"][0]["metrics"], a["metrics"], "the report's JSON has the version's numbers");
    let stdout_json = env.ok(&["audit", "report", "audit-sample@1", "--format", "json"]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&stdout_json).unwrap(), numbers);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(!page.contains("<script") && !page.contains("http-equiv"), "self-contained, no scripts");
}

/// The report as Chromium renders it: every chart and table in the DOM, the bars painted.
#[test]
#[ignore = "needs headless Chromium: apt-get install chromium (.ci/run runs it)"]
fn the_report_renders_in_chromium() {
    let bin = chromium_bin();
    let env = Env::new();
    env.json(&["run", &example("audit.yaml").display().to_string()]);
    let html = env.path().join("report.html");
    env.ok(&["audit", "report", "audit-sample@1", "--out", &html.display().to_string()]);
    // The DOM as Chromium built it: every chart and table is there.
    let profile = env.path().join("chromium");
    let url = format!("file://{}", html.display());
    let dom = chromium(bin, &["--dump-dom", &url], &profile);
    let dom = String::from_utf8_lossy(&dom.stdout).to_string();
    for needle in [
        "id=\"axes-chart\"",
        "id=\"axis-religion\"",
        "id=\"pronouns-chart\"",
        "id=\"ratio-chart\"",
        "id=\"association\"",
        "id=\"skew-chart\"",
        "id=\"skew-table\"",
        "id=\"risks\"",
    ] {
        assert!(dom.contains(needle), "{needle} missing from the rendered DOM");
    }
    assert!(dom.matches("<rect class=\"bar\"").count() > 30, "bars rendered");
    assert!(dom.contains("Muslim"));

    // The screenshot: not blank, and the bars' colour is painted.
    let shot = env.path().join("shot.png");
    let out = chromium(bin, &[&format!("--screenshot={}", shot.display()), "--window-size=1200,2400", &url], &profile);
    assert!(shot.exists(), "no screenshot: {}", String::from_utf8_lossy(&out.stderr));
    let (w, h, pixels) = decode_png(&std::fs::read(&shot).unwrap());
    assert_eq!((w, h), (1200, 2400));
    let non_white = pixels.iter().filter(|p| p.iter().any(|&c| c < 235)).count();
    let bar = pixels
        .iter()
        .filter(|p| p[0].abs_diff(0x3b) < 12 && p[1].abs_diff(0x6e) < 12 && p[2].abs_diff(0xa5) < 12)
        .count();
    assert!(non_white > pixels.len() / 50, "screenshot is blank: {non_white} non-white pixels");
    assert!(bar > 20_000, "blue bars not painted: {bar} pixels");
}

#[test]
fn a_fail_gate_fails_the_run_and_records_the_risk_with_the_run() {
    let env = Env::new();
    write_jsonl(&env, "in/docs.jsonl", &dolma_lines());
    let p = pipeline(
        &env,
        "p.yaml",
        "gated",
        "in/*.jsonl",
        "    gates:\n      \"doc_share{axis=pronoun} > 0.5\": fail\n      \"docs < 1\": warn\n",
    );
    let out = env.smelt(&["run", &p, "--run-id", "gated-run"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("audit gates failed, so no version was committed"), "{err}");
    assert!(err.contains("doc_share{axis=pronoun} = 0.6000 (> 0.5)"), "{err}");
    assert!(err.contains("runs/gated-run/audit.json"), "{err}");
    // No version is visible.
    let log = env.smelt(&["catalog", "log", "gated"]);
    assert!(!log.status.success() || !common::stdout(&log).contains("gated@1"), "{}", common::stdout(&log));
    // The risk is recorded with the run.
    let record = find_file(&env.data(), "audit.json").expect("runs/<id>/audit.json");
    assert!(record.ends_with("runs/gated-run/audit.json"), "{}", record.display());
    let audit: serde_json::Value = serde_json::from_slice(&std::fs::read(record).unwrap()).unwrap();
    let risk = &audit[0]["risks"][0];
    assert_eq!(risk["metric"], "doc_share{axis=pronoun}");
    assert_eq!(risk["action"], "fail");
    assert_eq!(risk["samples"].as_array().unwrap().len(), 5, "{risk}");
}

#[test]
fn metrics_are_the_same_for_any_split_or_rank_layout() {
    let lines = dolma_lines();
    let options = "    samples: 3\n    toxicity:\n      words: [video, sanity]\n    gates:\n      \"toxicity_rate_ratio > 1.5\": warn\n";
    // One file, one split.
    let one = Env::new();
    write_jsonl(&one, "in/all.jsonl", &lines);
    let p = pipeline(&one, "p.yaml", "layout", "in/*.jsonl", options);
    one.ok(&["run", &p]);
    // Three files over two ranks, then `smelt commit`.
    let many = Env::new();
    for (i, chunk) in lines.chunks(4).enumerate() {
        write_jsonl(&many, &format!("in/part-{i}.jsonl"), chunk);
    }
    let p = pipeline(&many, "p.yaml", "layout", "in/*.jsonl", options);
    for rank in ["0", "1"] {
        many.ok(&["run", &p, "--rank", rank, "--world-size", "2", "--run-id", "ranked"]);
    }
    many.ok(&["commit", "ranked"]);
    let a = one.json(&["catalog", "show", "layout@1"]);
    let b = many.json(&["catalog", "show", "layout@1"]);
    assert_eq!(a["audit"][0]["counts"], b["audit"][0]["counts"]);
    assert_eq!(a["audit"][0]["metrics"], b["audit"][0]["metrics"]);
    assert_eq!(a["audit"][0]["risks"], b["audit"][0]["risks"]);
    assert!(!a["audit"][0]["risks"].as_array().unwrap().is_empty());
}

#[test]
fn audit_diff_and_catalog_diff_show_what_moved() {
    let env = Env::new();
    let lines = dolma_lines();
    write_jsonl(&env, "in/docs.jsonl", &lines[..3]);
    let p = pipeline(
        &env,
        "p.yaml",
        "moving",
        "in/*.jsonl",
        "    gates:\n      \"doc_share{axis=religion} > 0.05\": warn\n",
    );
    env.ok(&["run", &p]);
    write_jsonl(&env, "in/docs.jsonl", &lines);
    env.ok(&["run", &p]);
    let d = env.json(&["audit", "diff", "moving@1", "moving@2"]);
    let changed = d["audit"]["changed"].as_array().unwrap();
    let docs = changed.iter().find(|c| c["metric"] == "docs").expect("docs moved");
    assert_eq!((docs["before"].as_f64(), docs["after"].as_f64()), (Some(3.0), Some(10.0)));
    let religion = changed.iter().find(|c| c["metric"] == "doc_share{axis=religion}").expect("religion moved");
    assert_eq!((religion["before"].as_f64(), religion["after"].as_f64()), (Some(0.0), Some(0.1)));
    assert_eq!(
        d["audit"]["risks_added"],
        serde_json::json!(["audit: doc_share{axis=religion} > 0.05: doc_share{axis=religion}"])
    );
    let table = env.ok(&["audit", "diff", "moving@1", "moving@2"]);
    assert!(table.contains("audit metrics that moved") && table.contains("risks added: 1"), "{table}");
    let cd = env.json(&["catalog", "diff", "moving@1", "moving@2"]);
    assert_eq!(cd["audit"]["changed"], d["audit"]["changed"]);
    let ct = env.ok(&["catalog", "diff", "moving@1", "moving@2"]);
    assert!(ct.contains("audit metrics that moved"), "{ct}");
}

#[test]
fn empty_corpus_and_unaudited_languages_are_reported() {
    let env = Env::new();
    write_jsonl(&env, "in/empty.jsonl", &[]);
    let p = pipeline(&env, "p.yaml", "empty", "in/*.jsonl", "");
    env.ok(&["run", &p]);
    let m = env.json(&["catalog", "show", "empty@1"]);
    assert_eq!(m["audit"][0]["docs"], 0);
    let metrics = m["audit"][0]["metrics"].as_object().unwrap();
    assert_eq!(metrics.keys().collect::<Vec<_>>(), vec!["audited_docs", "docs"], "no rates without documents");
    let html = env.path().join("r.html");
    env.ok(&["audit", "report", "empty@1", "--out", &html.display().to_string()]);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("The corpus is empty"), "{page}");
    assert!(!page.contains("NaN") && !page.contains("inf"));

    // German rows: no bundled German lexicon, so they are listed as not audited.
    let env = Env::new();
    let de = r#"{"id":"de-1","text":"Die Muslime und die Christen der Stadt feierten gemeinsam.","lang":"de"}"#;
    let en = r#"{"id":"en-1","text":"She met him at the old church.","lang":"en"}"#;
    write_jsonl(&env, "in/mixed.jsonl", &[de.to_string(), en.to_string()]);
    let p = pipeline(&env, "p.yaml", "mixed", "in/*.jsonl", "    default_language: de\n");
    env.ok(&["run", &p]);
    let m = env.json(&["catalog", "show", "mixed@1"]);
    assert_eq!(m["audit"][0]["languages_not_audited"], serde_json::json!({"de": 2}));
    let html = env.path().join("r.html");
    env.ok(&["audit", "report", "mixed@1", "--out", &html.display().to_string()]);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("Languages not audited") && page.contains("<td>de</td><td>2</td>"), "{page}");
}

#[test]
fn bad_gates_and_lexicons_say_where() {
    let env = Env::new();
    write_jsonl(&env, "in/docs.jsonl", &dolma_lines()[..2]);
    let p = pipeline(
        &env,
        "p.yaml",
        "bad",
        "in/*.jsonl",
        "    gates:\n      \"toxicity_rate_ration{axis=religion} > 2\": fail\n",
    );
    let out = env.smelt(&["validate", &p]);
    assert_eq!(out.status.code(), Some(2));
    let err = format!("{}{}", common::stdout(&out), stderr(&out));
    assert!(err.contains("p.yaml:10:7"), "{err}");
    assert!(
        err.contains("column 1: unknown metric `toxicity_rate_ration`; did you mean `toxicity_rate_ratio`?"),
        "{err}"
    );

    let mut f = std::fs::File::create(env.path().join("de.txt")).unwrap();
    f.write_all(b"# German\nreligion: Muslim = Muslime\nreligion Christ = Christen\n").unwrap();
    let p = pipeline(&env, "p2.yaml", "bad", "in/*.jsonl", "    lexicons:\n      de: [de.txt]\n");
    let out = env.smelt(&["run", &p]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("de.txt:3:1: expected `axis: descriptor`"), "{err}");
}
