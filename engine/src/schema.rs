//! The JSON Schema (draft 2020-12) of a pipeline file, for editors with a
//! YAML language server (`smelt schema`).
//!
//! ```text
//! pipeline settings (this file, beside the hand-written parser in compile.rs)
//! stages: {name: {type, inputs, retries, retry_backoff, timeout, <options>}}
//!                                                  └─ StageType::options: the stage's serde config struct (schemars)
//! ```
//! A stage's branch is chosen by its `type` (`if`/`then`), so an editor
//! completes and checks the options of that type only. The schema checks
//! what a schema can: keys, types, enums, ranges. Whether inputs exist, the
//! graph has no cycle, columns fit, files exist is `smelt validate`'s.

use serde_json::{json, Map, Value};

use crate::compile::{DEFAULT_BATCH_ROWS, DEFAULT_CHANNEL_BYTES, DEFAULT_MEMORY_BUDGET};
use crate::schedule::{DEFAULT_RUN_BACKOFF, DEFAULT_RUN_RETRIES, DEFAULT_STAGE_BACKOFF};
use crate::stage::{StageKind, StageType};

/// Stage and dataset names: letters, digits, `_`, `-`, `.`, not starting with `.`.
const NAME_PATTERN: &str = "^[A-Za-z0-9_-][A-Za-z0-9_.-]*$";

/// A duration as `parse_duration` reads it: seconds, or numbers with units.
const DURATION_PATTERN: &str = r"^\s*(?:[0-9]*\.?[0-9]+|(?:[0-9]*\.?[0-9]+(?:ms|s|min|m|h|d))+)\s*$";

fn duration(description: &str, default: Option<&str>) -> Value {
    let mut d = json!({
        "description": description,
        "anyOf": [
            {"type": "string", "pattern": DURATION_PATTERN},
            {"type": "number", "minimum": 0}
        ],
        "examples": ["30s", "5m", "1h30m"]
    });
    if let Some(v) = default {
        d["default"] = json!(v);
    }
    d
}

fn secs(d: std::time::Duration) -> String {
    format!("{}s", d.as_secs())
}

fn count(description: &str, min: i64, default: Option<u64>) -> Value {
    let mut d = json!({"description": description, "type": "integer", "minimum": min, "maximum": 1000});
    if let Some(v) = default {
        d["default"] = json!(v);
    }
    d
}

/// The keys every stage accepts besides its options, as the engine reads
/// them (compile.rs: `type`, `inputs`, `description`; schedule.rs: the policy keys).
fn common_stage_keys(st: &StageType) -> Map<String, Value> {
    let mut p = Map::new();
    p.insert(
        "type".into(),
        json!({"const": st.name, "description": format!("{} ({}): {}", st.name, kind_name(st.kind), st.about)}),
    );
    if st.kind != StageKind::Source {
        p.insert(
            "inputs".into(),
            json!({
                "description": "the stage or stages this one reads from (a name or a list of names)",
                "anyOf": [
                    {"type": "string", "pattern": NAME_PATTERN},
                    {"type": "array", "items": {"type": "string", "pattern": NAME_PATTERN}, "minItems": 1, "uniqueItems": true}
                ]
            }),
        );
    }
    p.insert("description".into(), json!({"description": "free text about the stage; ignored by smelt"}));
    if matches!(st.kind, StageKind::Transform | StageKind::Barrier) {
        p.insert(
            "mode".into(),
            json!({
                "description": "`annotate`: keep every row and list the reasons it would be dropped for in `would_drop` (the quality filters also write their measurements in `signals`); `drop` (default): drop them",
                "enum": ["drop", "annotate"],
                "default": "drop"
            }),
        );
    }
    p.insert(
        "retries".into(),
        count("a split whose attempt fails in this stage is run again up to this many times", 0, Some(0)),
    );
    p.insert(
        "retry_backoff".into(),
        duration("base of the exponential backoff between attempts", Some(&secs(DEFAULT_STAGE_BACKOFF))),
    );
    p.insert(
        "timeout".into(),
        duration("a split's attempt fails when this stage takes longer on it (more than zero); none by default", None),
    );
    p
}

fn kind_name(k: StageKind) -> &'static str {
    match k {
        StageKind::Source => "source",
        StageKind::Transform => "transform",
        StageKind::Barrier => "barrier",
        StageKind::Sink => "sink",
    }
}

/// The `$defs` name of a stage type's branch.
pub fn stage_def(name: &str) -> String {
    format!("stage.{name}")
}

/// The `schedule:` block (schedule.rs `parse_schedule`).
fn schedule_schema() -> Value {
    json!({
        "description": "when `smelt scheduler` runs the pipeline: each cron interval once, in the time zone, or after each commit of an upstream dataset (`on_commit`)",
        "type": "object",
        "additionalProperties": false,
        "oneOf": [{"required": ["cron"]}, {"required": ["on_commit"]}],
        "properties": {
            "cron": {
                "description": "cron expression (5 or 6 fields with seconds, L, #, or @hourly, @daily, ...), in quotes",
                "type": "string",
                "examples": ["0 * * * *", "@daily"]
            },
            "on_commit": {
                "description": "run after each commit of this upstream dataset (`name@latest`), or each version a tag moves to (`name@tag`), instead of on a cron",
                "type": "string",
                "pattern": "^[A-Za-z0-9._-]+(@[A-Za-z0-9._-]*[A-Za-z._-][A-Za-z0-9._-]*)?$",
                "examples": ["cc-news@latest", "cc-news@prod"]
            },
            "timezone": {"description": "IANA time zone of the cron expression", "type": "string", "default": "UTC", "examples": ["Europe/Berlin"]},
            "catchup": {"description": "cron: run every interval since `start_date` (needs `start_date`); on_commit: run once per upstream version missed, not only the newest", "type": "boolean", "default": false},
            "max_active_runs": count("most intervals run at the same time", 1, Some(1)),
            "start_date": {"description": "first interval, a date or time in the time zone, such as `2024-05-01`", "type": "string"},
            "retries": count("a failed run is tried this many more times", 0, Some(u64::from(DEFAULT_RUN_RETRIES))),
            "retry_backoff": duration("base of the exponential backoff between a run's attempts", Some(&secs(DEFAULT_RUN_BACKOFF)))
        }
    })
}

/// The JSON Schema of a pipeline file whose stage types are `registry`.
pub fn pipeline_schema(registry: &[StageType]) -> Value {
    let mut generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let names: Vec<&str> = registry.iter().map(|t| t.name).collect();
    let mut defs = Map::new();
    let mut branches = Vec::new();
    for st in registry {
        let options = (st.options)(&mut generator).to_value();
        let mut props = common_stage_keys(st);
        let mut required = vec![json!("type")];
        if st.kind != StageKind::Source {
            required.push(json!("inputs"));
        }
        if let Some(own) = options.get("properties").and_then(Value::as_object) {
            for (k, v) in own {
                // A stage's own `mode` (python's) takes the engine's two values too.
                let v = match props.get(k) {
                    Some(common) if k == "mode" => json!({
                        "description": format!("{} Besides these, the engine's `annotate` (keep every row, list the reasons in `would_drop`).", v.get("description").and_then(Value::as_str).unwrap_or_default()),
                        "anyOf": [v, common]
                    }),
                    _ => v.clone(),
                };
                props.insert(k.clone(), v);
            }
        }
        if let Some(r) = options.get("required").and_then(Value::as_array) {
            required.extend(r.iter().cloned());
        }
        let mut branch = json!({
            "title": st.name,
            "description": st.about,
            "type": "object",
            "properties": props,
            "required": required,
            "additionalProperties": false,
        });
        // Anything else the options' schema says about the whole object (e.g. `not`, `oneOf`).
        if let Some(o) = options.as_object() {
            for (k, v) in o {
                if !["properties", "required", "additionalProperties", "type", "title", "description", "$schema"]
                    .contains(&k.as_str())
                {
                    branch[k] = v.clone();
                }
            }
        }
        defs.insert(stage_def(st.name), branch);
        branches.push(json!({
            "if": {"properties": {"type": {"const": st.name}}, "required": ["type"]},
            "then": {"$ref": format!("#/$defs/{}", stage_def(st.name))}
        }));
    }
    for (k, v) in generator.take_definitions(true) {
        defs.insert(k, v);
    }
    let mut all_defs = Map::new();
    all_defs.insert(
        "stage".into(),
        json!({
            "type": "object",
            "required": ["type"],
            "properties": {
                "type": {"description": "the stage type (`smelt stages` lists them)", "enum": names},
            },
            "allOf": branches,
        }),
    );
    all_defs.extend(defs);
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "smelt pipeline",
        "description": "A smelt pipeline file: the dataset it writes and its stages (docs/pipelines.md, docs/stages.md)",
        "type": "object",
        "additionalProperties": false,
        "required": ["dataset", "stages"],
        "properties": {
            "dataset": {"description": "name of the dataset this pipeline writes (letters, digits, `_`, `-`, `.`)", "type": "string", "pattern": NAME_PATTERN, "maxLength": 128},
            "description": {"description": "free text about the pipeline; ignored by smelt"},
            "output": {"description": "where the dataset is stored: a path or an object store URL (default: under the data directory)", "type": "string", "minLength": 1},
            "parallelism": {"description": "splits processed at once (default: the number of CPU cores)", "type": "integer", "minimum": 1},
            "batch_rows": {"description": "rows per batch", "type": "integer", "minimum": 1, "default": DEFAULT_BATCH_ROWS},
            "channel_bytes": {"description": "bound of each channel between stages, in bytes", "type": "integer", "minimum": 1, "default": DEFAULT_CHANNEL_BYTES},
            "memory_budget": {"description": "memory budget of a barrier stage's global step, in bytes", "type": "integer", "minimum": 1, "default": DEFAULT_MEMORY_BUDGET},
            "train": {"description": "a command line run after each commit (training hook)", "type": "string", "pattern": "\\S"},
            "schedule": schedule_schema(),
            "retention": {
                "description": "which versions stay after each commit; the others expire as `smelt catalog gc` expires them (the latest always stays)",
                "type": "object",
                "additionalProperties": false,
                "anyOf": [{"required": ["keep_last"]}, {"required": ["keep_days"]}],
                "properties": {
                    "keep_last": {"description": "keep the newest N versions", "type": "integer", "minimum": 1},
                    "keep_days": {"description": "keep versions committed in the last D days", "type": "number", "exclusiveMinimum": 0},
                    "keep_tagged": {"description": "keep every version a tag points to", "type": "boolean", "default": false},
                    "keep_trained": {"description": "keep every version a recorded training run read", "type": "boolean", "default": false}
                }
            },
            "publish": {
                "description": "write-audit-publish: after each commit the tag moves to the new version only when every check holds; the outcome is recorded (`catalog log`, `catalog show`), `smelt catalog publish` promotes by hand",
                "type": "object",
                "additionalProperties": false,
                "required": ["tag"],
                "properties": {
                    "tag": {"description": "the tag moved to a version whose checks hold", "type": "string", "pattern": "^[A-Za-z0-9_.-]+$"},
                    "require": {"description": "checks: `audit` (no audit gate crossed) or `diff: METRIC<VALUE` against the version the tag points to (`catalog diff` metrics, as `--fail-on`)", "type": "array", "items": {"type": "string", "pattern": "^\\s*(audit|diff:.*[<>].*)\\s*$"}}
                }
            },
            "stages": {
                "description": "the stages by name: each has a `type`, its options and (except sources) `inputs`",
                "type": "object",
                "propertyNames": {"pattern": NAME_PATTERN, "maxLength": 128},
                "additionalProperties": {"$ref": "#/$defs/stage"}
            }
        },
        "$defs": all_defs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema's keys are the parser's keys: a setting added to compile.rs
    /// or schedule.rs without its schema fails here.
    #[test]
    fn schema_keys_match_the_parser() {
        let s = pipeline_schema(&[]);
        let top: Vec<&str> = s["properties"].as_object().unwrap().keys().map(String::as_str).collect();
        let mut want: Vec<&str> = crate::compile::SETTINGS.to_vec();
        let mut got = top.clone();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want);
        let mut sched: Vec<&str> =
            s["properties"]["schedule"]["properties"].as_object().unwrap().keys().map(String::as_str).collect();
        let mut want: Vec<&str> = crate::schedule::SCHEDULE_KEYS.to_vec();
        sched.sort_unstable();
        want.sort_unstable();
        assert_eq!(sched, want);
        let st = StageType {
            name: "x",
            kind: StageKind::Transform,
            about: "",
            configure: |_, _| unreachable!(),
            options: crate::stage::options_schema::<serde_json::Value>,
        };
        let keys = common_stage_keys(&st);
        for k in crate::schedule::STAGE_POLICY_KEYS {
            assert!(keys.contains_key(*k), "{k}");
        }
    }
}
