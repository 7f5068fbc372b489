//! docs/stages.md documents every registered stage type: a `###` heading
//! naming it and, in its section, every option its configuration resolves
//! to (the options with their defaults, as recorded in lineage; a nested
//! option as `key.sub`).

use std::path::Path;

use smelt_engine::ConfigureContext;
use smelt_runner::registry;

/// Options a stage cannot be configured without.
fn required(stage: &str) -> serde_json::Value {
    match stage {
        "warc" | "jsonl" | "parquet_files" => serde_json::json!({"paths": ["x"]}),
        "commoncrawl" => serde_json::json!({"crawl": "CC-MAIN-2024-22"}),
        "commoncrawl_news" => serde_json::json!({"from": "2024-01"}),
        "dataset" => serde_json::json!({"from": "cc-news@prod"}),
        "mix" => serde_json::json!({"sources": [{"from": "cc-news@prod", "weight": 1}], "documents": 10}),
        "rss" => serde_json::json!({"feeds": ["https://example.org/feed.xml"]}),
        "tokenize" => serde_json::json!({"tokenizer": "tiktoken:cl100k_base"}),
        "classify" => serde_json::json!({"model": "model.bin"}),
        "decontaminate" => serde_json::json!({"benchmarks": ["evals/mmlu.jsonl"]}),
        "sql" => serde_json::json!({"where": "true", "columns": {"x": "1"}}),
        // Configuring runs no interpreter (the compiler's schema check does).
        "python" => serde_json::json!({"module": "json", "function": "dumps", "mode": "map"}),
        "datatrove" => serde_json::json!({"step": "datatrove.pipeline.filters.URLFilter"}),
        // The default backend (Apertium) is checked for at configure time; an endpoint is not.
        "back_translate" => {
            serde_json::json!({"pivots": ["es"], "backend": "openai", "http": {"url": "http://127.0.0.1:9/v1", "model": "m"}})
        }
        _ => serde_json::json!({}),
    }
}

/// The text of the `###` section headed by `stage` in backticks (or, failing
/// that, of the first `###` heading naming it among others).
fn section<'a>(doc: &'a str, stage: &str) -> Option<&'a str> {
    let name = format!("`{stage}`");
    let exact = format!("### {name}");
    let start = doc
        .lines()
        .position(|l| l.trim_end() == exact)
        .or_else(|| doc.lines().position(|l| l.starts_with("### ") && l.contains(&name)))?;
    let offset: usize = doc.lines().take(start).map(|l| l.len() + 1).sum();
    let rest = &doc[offset..];
    let end = rest[4..].find("\n### ").or_else(|| rest[4..].find("\n## ")).map_or(rest.len(), |i| i + 4);
    Some(&rest[..end])
}

#[test]
fn every_stage_type_and_option_is_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let doc = std::fs::read_to_string(root.join("docs/stages.md")).unwrap();
    let ctx = ConfigureContext::working_dir();
    let mut missing = Vec::new();
    for st in registry::stages() {
        let Some(text) = section(&doc, st.name) else {
            missing.push(format!("{}: no `### ` heading naming it", st.name));
            continue;
        };
        let config = (st.configure)(required(st.name), &ctx)
            .unwrap_or_else(|e| panic!("{}: cannot configure with {}: {}", st.name, required(st.name), e.message));
        let serde_json::Value::Object(options) = config.resolved() else { continue };
        for (key, value) in &options {
            // Resolved options also record derived facts (a tokenizer's hash): not options.
            let mut with_key = required(st.name);
            with_key[key] = value.clone();
            if (st.configure)(with_key, &ctx).is_err_and(|e| e.message.starts_with("unknown field")) {
                continue;
            }
            // A nested option is documented as `key.sub`.
            if !text.contains(&format!("`{key}`")) && !text.contains(&format!("`{key}.")) {
                missing.push(format!("{}: option `{key}`", st.name));
            }
        }
    }
    assert!(missing.is_empty(), "docs/stages.md lacks:\n  {}", missing.join("\n  "));
}
