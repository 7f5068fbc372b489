//! The `datatrove` transform: an installed datatrove step (a `PipelineStep`,
//! `BaseFilter` or `BaseFormatter`, datatrove's own or a team's) run as it is
//! inside the `python` stage's workers, through the adapter in worker.py.
//!
//! ```text
//! row ──► Document(text, id, metadata = the other columns)
//!   BaseFilter: filter_batch over batches of its batch_size (as its run does) ──► kept, or dropped with
//!     datatrove's reason (its stat `dropped_<reason>`), else the step's class name
//!   other steps: run(documents) ──► documents it yields back, matched to rows (by object, else by id);
//!     the others dropped (reason: the class name)
//! text changed (formatters) ──► new `text`; output_schema columns ──► from each document's metadata
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use smelt_engine::{parse_options, ConfigureContext, OptionError, Result, StageConfig};

use super::{at, calls, default_batch_bytes, default_batch_rows, default_timeout, Common, Keys, OnError, Stage};

/// Options of the `datatrove` transform.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatatroveConfig {
    /// The step's class: `datatrove.pipeline.filters.URLFilter`, or `package.module.Class` of your own.
    pub step: String,
    /// Keyword arguments of the step's constructor.
    #[serde(default)]
    pub args: serde_json::Map<String, serde_json::Value>,
    /// The interpreter with datatrove installed: a path (relative to the pipeline file) or a name on PATH;
    /// default `$SMELT_PYTHON`, else `python3`.
    #[serde(default)]
    pub python: Option<String>,
    /// Worker processes at most; default: one per split running at once.
    #[serde(default)]
    pub workers: Option<usize>,
    /// `fail` or `drop` (a document whose step raised is dropped, counted under the exception's type).
    #[serde(default)]
    pub on_error: OnError,
    /// Metadata keys the step sets that become columns: name -> type (e.g. `language: string`).
    #[serde(default)]
    pub output_schema: BTreeMap<String, String>,
    /// Seconds a worker may take on one batch.
    #[serde(default = "default_timeout")]
    pub batch_timeout_s: f64,
    /// Rows per call to a worker: consecutive batches of a split are joined until they hold this many rows
    /// (or `batch_bytes`) before they go to the worker, so a call's fixed cost (the batch's encoding, the round
    /// trip, the documents' conversion) is paid once per this many rows. A pipeline batch is never cut; 0 sends
    /// the pipeline's batches as they come.
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// Bytes of Arrow arrays gathered for one call at most (one batch aside): long documents make smaller calls.
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: usize,
    /// Environment variables passed to the workers besides the minimal set (e.g. `HF_HOME`).
    #[serde(default)]
    pub env: Vec<String>,
}

/// Registry hook of `datatrove`.
///
/// # Errors
/// Unknown or invalid options.
pub fn configure(options: serde_json::Value, ctx: &ConfigureContext) -> Result<StageConfig, OptionError> {
    Ok(StageConfig::Transform(Arc::new(stage(options, ctx)?)))
}

/// The configured stage.
pub(super) fn stage(options: serde_json::Value, ctx: &ConfigureContext) -> Result<Stage, OptionError> {
    let mut c: DatatroveConfig = parse_options(options)?;
    let Some((_, class)) = c.step.rsplit_once('.').filter(|(m, k)| !m.is_empty() && !k.is_empty()) else {
        return Err(at(
            &["step"],
            format!(
                "`{}` is not a class path: write `package.module.Class`, e.g. `datatrove.pipeline.filters.URLFilter`",
                c.step
            ),
        ));
    };
    let class = class.to_string();
    let calls = calls(c.batch_rows, c.batch_bytes)?;
    let common = Common::new(&mut c.python, c.workers, c.batch_timeout_s, &c.env, &c.output_schema, ctx, calls)?;
    let request = serde_json::json!({"kind": "datatrove", "step": c.step, "args": c.args});
    Ok(Stage {
        resolved: serde_json::to_value(&c).unwrap_or_default(),
        label: format!("datatrove step `{class}`"),
        prefix: format!("[datatrove {class}] "),
        keys: Keys { code: "step", name: "step", options: "args" },
        mode: None,
        datatrove: true,
        code_hash: None,
        request,
        common,
        facts: OnceLock::new(),
        pool: OnceLock::new(),
    })
}
