//! The pipeline JSON Schema (`smelt schema`) against the pipelines smelt
//! accepts and rejects, the committed examples/pipeline.schema.json, and
//! docs/stages.md; `smelt init` writes pipelines that validate.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{repo, stderr, Env};

fn schema() -> serde_json::Value {
    smelt_engine::schema::pipeline_schema(&smelt_runner::registry::stages())
}

/// The schema compiled by an independent draft 2020-12 validator.
struct Validator {
    schemas: boon::Schemas,
    index: boon::SchemaIndex,
}

impl Validator {
    fn new() -> Validator {
        let mut schemas = boon::Schemas::new();
        let mut compiler = boon::Compiler::new();
        compiler.set_default_draft(boon::Draft::V2020_12);
        compiler.enable_format_assertions();
        let url = "file:///pipeline.schema.json";
        compiler.add_resource(url, schema()).expect("schema resource");
        let index =
            compiler.compile(url, &mut schemas).unwrap_or_else(|e| panic!("the schema does not compile: {e:#}"));
        Validator { schemas, index }
    }

    /// `Err` with the validator's message when the pipeline file does not fit.
    fn check(&self, path: &Path) -> Result<(), String> {
        let text = std::fs::read_to_string(path).unwrap();
        let node = smelt_engine::yaml::parse(&text).map_err(|e| format!("YAML: {e:?}"))?;
        let json = node.to_json();
        self.schemas.validate(&json, self.index).map_err(|e| format!("{e:#}"))
    }
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
}

#[test]
fn the_schema_accepts_every_example_and_every_pipeline_smelt_validate_accepts() {
    let v = Validator::new();
    let mut files = Vec::new();
    yaml_files(&repo().join("examples"), &mut files);
    let examples = files.len();
    yaml_files(&repo().join("tests"), &mut files);
    let ws = smelt_runner::Workspace::new(tempfile::tempdir().unwrap().path());
    let mut accepted = 0;
    for (i, path) in files.iter().enumerate() {
        let is_example = i < examples;
        // Examples are pipelines even where loading needs a tool this machine may lack
        // (Apertium, a Python interpreter): the schema must accept them all.
        // Elsewhere under tests/, a file is checked when smelt itself accepts it.
        let smelt_accepts = is_example || ws.load(path).is_ok();
        if smelt_accepts {
            v.check(path).unwrap_or_else(|e| panic!("{}: smelt accepts it, the schema does not:\n{e}", path.display()));
            accepted += 1;
        }
    }
    assert!(accepted >= examples && examples >= 10, "{accepted} pipelines checked, {examples} examples");
}

#[test]
fn the_schema_rejects_the_invalid_pipelines_whose_errors_it_can_express() {
    let v = Validator::new();
    let dir = repo().join("tests/pipelines/invalid");
    // Unknown option, wrong type or value, unknown stage type or setting, a
    // source with inputs, not a mapping. The rest (cycles, missing inputs,
    // columns, files, YAML syntax) are for `smelt validate`.
    for (name, expect) in [
        ("unknown_option.yaml", "recods"),
        ("unknown_type.yaml", "/stages/crawl/type"),
        ("bad_values.yaml", "records"),
        ("many.yaml", "datset"),
        ("not_a_mapping.yaml", ""),
    ] {
        let err = v.check(&dir.join(name)).expect_err(name);
        assert!(err.contains(expect), "{name}: {err}");
    }
    // bad_values.yaml has three: an unknown enum value, a negative count, a string for a number.
    let err = v.check(&dir.join("bad_values.yaml")).unwrap_err();
    for at in ["/stages/crawl/records", "/stages/text/min_chars", "/stages/out/shard_rows"] {
        assert!(err.contains(at), "{at}: {err}");
    }
}

#[test]
fn the_schema_checks_settings_schedule_and_stage_policies() {
    let v = Validator::new();
    let dir = tempfile::tempdir().unwrap();
    let base = "dataset: d\nstages:\n  docs: {type: jsonl, paths: [a.jsonl]}\n  out: {type: parquet, inputs: docs}\n";
    let check = |extra: &str| {
        let p = dir.path().join("p.yaml");
        std::fs::write(&p, format!("{base}{extra}")).unwrap();
        v.check(&p)
    };
    check("").unwrap();
    check("schedule: {cron: \"0 * * * *\", timezone: Europe/Berlin, retry_backoff: 1h30m, retries: 3}\n").unwrap();
    check("parallelism: 4\nbatch_rows: 512\n").unwrap();
    assert!(check("parallelism: 0\n").is_err());
    assert!(check("schedule: {timezone: UTC}\n").is_err(), "cron is required");
    assert!(check("schedule: {cron: \"@daily\", retry_backoff: soon}\n").is_err());
    assert!(check("schedule: {cron: \"@daily\", every: 1h}\n").is_err());
    // A stage's policy keys.
    let p = dir.path().join("q.yaml");
    std::fs::write(
        &p,
        "dataset: d\nstages:\n  docs: {type: jsonl, paths: [a.jsonl], retries: 2, timeout: 30s}\n  out: {type: parquet, inputs: [docs], retry_backoff: 5}\n",
    )
    .unwrap();
    v.check(&p).unwrap();
    std::fs::write(&p, "dataset: d\nstages:\n  out: {type: parquet}\n").unwrap();
    assert!(v.check(&p).unwrap_err().contains("inputs"), "a sink needs inputs");
}

#[test]
fn the_committed_schema_is_the_generated_one() {
    let path = repo().join("examples/pipeline.schema.json");
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("examples/pipeline.schema.json")).unwrap();
    assert!(
        committed == schema(),
        "examples/pipeline.schema.json is stale: run `smelt schema --out examples/pipeline.schema.json`"
    );
}

/// The option names of each stage's table in docs/stages.md (the first column
/// of the tables under its `### `name`` heading).
fn documented_options() -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(repo().join("docs/stages.md")).unwrap();
    let mut out = std::collections::BTreeMap::new();
    let mut current: Option<String> = None;
    let mut in_options = false;
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("### ") {
            let h = h.trim();
            current = (h.starts_with('`') && h.ends_with('`') && h.matches('`').count() == 2)
                .then(|| h.trim_matches('`').to_string());
            in_options = false;
            continue;
        }
        if line.starts_with("## ") || line.starts_with("# ") {
            current = None;
            continue;
        }
        let Some(stage) = &current else { continue };
        if line.starts_with("| option") {
            in_options = true;
            continue;
        }
        if !line.starts_with('|') {
            in_options = false;
            continue;
        }
        if in_options {
            // The first cell names one option or several (`a`, `b`), or a nested one (`a.b`).
            let first = line.trim_start_matches('|').split('|').next().unwrap_or("");
            for name in first.split('`').skip(1).step_by(2) {
                if !name.is_empty() {
                    out.entry(stage.clone()).or_insert_with(BTreeSet::new).insert(name.to_string());
                }
            }
        }
    }
    out
}

/// The properties of an object schema, following `$ref`s and `anyOf` (an `Option<Struct>`).
fn object_properties<'a>(
    root: &'a serde_json::Value,
    s: &'a serde_json::Value,
) -> Option<&'a serde_json::Map<String, serde_json::Value>> {
    if let Some(r) = s.get("$ref").and_then(|r| r.as_str()) {
        let name = r.strip_prefix("#/$defs/")?;
        return object_properties(root, &root["$defs"][name]);
    }
    if let Some(p) = s.get("properties").and_then(|p| p.as_object()) {
        return Some(p);
    }
    s.get("anyOf")?.as_array()?.iter().find_map(|b| object_properties(root, b))
}

#[test]
fn docs_stages_md_and_the_schema_document_the_same_options() {
    let s = schema();
    let documented = documented_options();
    // Keys every stage takes (`mode`: every transform and barrier), documented once.
    let common = ["type", "inputs", "description", "retries", "retry_backoff", "timeout", "mode"];
    let mut problems = Vec::new();
    for st in smelt_runner::registry::stages() {
        let branch = &s["$defs"][smelt_engine::schema::stage_def(st.name)];
        let props = branch["properties"].as_object().unwrap_or_else(|| panic!("{}: no properties", st.name));
        let in_schema: BTreeSet<String> = props.keys().filter(|k| !common.contains(&k.as_str())).cloned().collect();
        let documented = documented.get(st.name).cloned().unwrap_or_default();
        let in_docs: BTreeSet<String> = documented
            .iter()
            .map(|o| o.split('.').next().unwrap().to_string())
            .filter(|o| !common.contains(&o.as_str()))
            .collect();
        for o in in_schema.difference(&in_docs) {
            problems.push(format!("`{}`: option `{o}` is in the schema but not in docs/stages.md", st.name));
        }
        for o in in_docs.difference(&in_schema) {
            problems.push(format!("`{}`: docs/stages.md documents `{o}`, which the stage does not take", st.name));
        }
        // A nested option (`select.seed`) is a property of its parent's object.
        for o in documented.iter().filter(|o| o.contains('.')) {
            let (parent, child) = o.split_once('.').unwrap();
            let Some(p) = props.get(parent) else { continue };
            if !object_properties(&s, p).is_some_and(|c| c.contains_key(child)) {
                problems.push(format!("`{}`: docs/stages.md documents `{o}`, which the schema lacks", st.name));
            }
        }
        // Every option carries a description (its doc comment) for editors' hovers.
        for (k, v) in props {
            if v.get("description").and_then(|d| d.as_str()).is_none_or(str::is_empty) {
                problems.push(format!("`{}`: option `{k}` has no doc comment", st.name));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn init_writes_a_starter_pipeline_that_validates_and_never_overwrites() {
    let env = Env::new();
    let dir = tempfile::tempdir().unwrap();
    for template in ["quickstart", "clean", "feeds", "tokenize"] {
        let file = dir.path().join(format!("{template}.yaml"));
        let out = env.cmd().args(["init", template, "--out"]).arg(&file).output().unwrap();
        assert!(out.status.success(), "{template}: {}", stderr(&out));
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.starts_with("# yaml-language-server: $schema=./pipeline.schema.json\n"), "{text}");
        let out = env.cmd().arg("validate").arg(&file).output().unwrap();
        assert!(out.status.success(), "{template}: {}", stderr(&out));
    }
    let schema_file = dir.path().join("pipeline.schema.json");
    let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&schema_file).unwrap()).unwrap();
    assert_eq!(written, schema());
    // An existing file is refused, and left as it was.
    std::fs::write(dir.path().join("mine.yaml"), "keep me\n").unwrap();
    let out = env.cmd().args(["init", "clean", "--out"]).arg(dir.path().join("mine.yaml")).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(dir.path().join("mine.yaml")).unwrap(), "keep me\n");
}

#[test]
fn schema_prints_or_writes_the_schema() {
    let env = Env::new();
    let out = env.cmd().arg("schema").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, schema());
    assert_eq!(printed["$schema"], "https://json-schema.org/draft/2020-12/schema");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.json");
    let out = env.cmd().args(["schema", "--out"]).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(written, printed);
}
