//! The `python` and `datatrove` transforms: a user's Python function, or an
//! installed datatrove step, run over each batch by Python worker processes
//! that the stage starts once per run and reuses for every split.
//!
//! ```text
//! configure: options ──► Stage (the code's file hashed; no process started)
//! output_schema (compile, `smelt validate`): probe.rs runs the interpreter once ──► pyarrow, the module,
//!   the function/class/step, its options are there, or an error at the option saying what to install
//! build (per split): the stage's Pool (worker.rs), started on first use, at most `workers` processes
//! process: batch ──Arrow IPC (protocol.rs)──► a worker ──► result: changed/new columns + drop reasons
//!   ──schema.rs merge──► Processed::Batch, or Processed::Filtered with the user's reasons
//! ```
//! Each split sends its batches in order and waits for each answer, so the
//! output is the same whatever `workers` and `parallelism`. An exception in
//! user code fails the split with its traceback (user fault) unless
//! `on_error: drop`; a worker that dies or hangs is replaced and its batch
//! sent once more, then the split fails (external fault: `retries:` applies).
//! Lineage records the hash of the code's file (and datatrove's version).

mod datatrove;
mod diagnose;
mod joined;
pub mod probe;
pub mod protocol;
mod run;
pub mod schema;
mod shm;
pub mod worker;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};
use smelt_engine::yaml::PathSeg;
use smelt_engine::{
    parse_options, require_column, Batching, ConfigureContext, EngineError, OptionError, Result, SchemaError,
    StageConfig, Transform, TransformConfig,
};

pub use datatrove::{configure as configure_datatrove, DatatroveConfig};
use probe::Probe;
use protocol::encode_schema;
use worker::{Launch, Pool};

/// How the user's code sees the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `fn(batch: pyarrow.RecordBatch)` returns columns, or one verdict per row.
    Batch,
    /// `fn(row: dict)` returns True to keep, False or `(False, reason)` to drop.
    Filter,
    /// `fn(row: dict)` returns a dict of the columns to set.
    Map,
}

impl Mode {
    fn parse(s: &str) -> Option<Mode> {
        match s {
            "batch" => Some(Mode::Batch),
            "filter" => Some(Mode::Filter),
            "map" => Some(Mode::Map),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Mode::Batch => "batch",
            Mode::Filter => "filter",
            Mode::Map => "map",
        }
    }
}

/// What an exception in user code does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Fails the split with the traceback.
    #[default]
    Fail,
    /// Drops the row (in batch mode the batch's rows), counted with the exception's type name as reason.
    Drop,
}

/// Default of `batch_timeout_s`.
pub const DEFAULT_BATCH_TIMEOUT_S: f64 = 600.0;

fn default_timeout() -> f64 {
    DEFAULT_BATCH_TIMEOUT_S
}

/// Default of `batch_rows`: at 8192 rows a call's fixed cost is a few percent of a trivial function's time
/// (bench/python_stage.sh).
pub const DEFAULT_CALL_ROWS: usize = 8192;

/// Default of `batch_bytes`.
pub const DEFAULT_CALL_BYTES: usize = 16 << 20;

fn default_batch_rows() -> usize {
    DEFAULT_CALL_ROWS
}

fn default_batch_bytes() -> usize {
    DEFAULT_CALL_BYTES
}

/// Options of the `python` transform.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PythonConfig {
    /// The Python file that defines `function` or `class`, relative to the pipeline file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Or an importable module (`package.module`), looked up on the interpreter's path and in the pipeline
    /// file's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// The function called per row (`filter`, `map`) or per batch (`batch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// Or a class, instantiated once per worker with `options` as keyword arguments; its method named as the
    /// mode is called, else the instance itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// `batch`, `filter` or `map`; default: the mode the function's decorator names (`@smelt_data.filter`).
    #[serde(default)]
    pub mode: Option<Mode>,
    /// The interpreter: a path (relative to the pipeline file) or a name on PATH; default `$SMELT_PYTHON`,
    /// else `python3`.
    #[serde(default)]
    pub python: Option<String>,
    /// Worker processes at most; default: one per split running at once (the pipeline's parallelism).
    #[serde(default)]
    pub workers: Option<usize>,
    /// Keyword arguments: of the function (called `fn(row, **options)`) or of the class's `__init__`.
    #[serde(default)]
    pub options: serde_json::Map<String, serde_json::Value>,
    /// `fail` (the split fails with the traceback) or `drop` (the row is dropped, counted under the exception's type).
    #[serde(default)]
    pub on_error: OnError,
    /// Columns the code adds or replaces: name -> type (`float64`, `string`, `list<int32>`, ...).
    #[serde(default)]
    pub output_schema: BTreeMap<String, String>,
    /// Seconds a worker may take on one batch; a worker past it is killed (and the batch retried once).
    #[serde(default = "default_timeout")]
    pub batch_timeout_s: f64,
    /// Rows per call to a worker: consecutive batches of a split are joined until they hold this many rows
    /// (or `batch_bytes`) before they go to the worker, so a call's fixed cost (the batch's encoding, the round
    /// trip, pyarrow's work per call) is paid once per this many rows. A pipeline batch is never cut; 0 sends
    /// the pipeline's batches as they come.
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// Bytes of Arrow arrays gathered for one call at most (one batch aside): long documents make smaller calls.
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: usize,
    /// Environment variables passed to the workers besides the minimal set (PATH, HOME, LANG, PYTHONPATH, ...).
    #[serde(default)]
    pub env: Vec<String>,
}

/// Registry hook of `python`.
///
/// # Errors
/// Unknown or invalid options; a `path` that is not a file.
pub fn configure(options: serde_json::Value, ctx: &ConfigureContext) -> Result<StageConfig, OptionError> {
    Ok(StageConfig::Transform(Arc::new(stage(options, ctx)?)))
}

/// The configured stage.
fn stage(options: serde_json::Value, ctx: &ConfigureContext) -> Result<Stage, OptionError> {
    let mut c: PythonConfig = parse_options(options)?;
    let (code_key, code) = match (&c.path, &c.module) {
        (Some(p), None) => ("path", p.clone()),
        (None, Some(m)) => ("module", m.clone()),
        _ => return Err(at(&[], "give `path` (a Python file) or `module` (an importable module), not both".into())),
    };
    let (name_key, name) = match (&c.function, &c.class) {
        (Some(f), None) => ("function", f.clone()),
        (None, Some(k)) => ("class", k.clone()),
        _ => return Err(at(&[], "give `function` (called per row or batch) or `class`, not both".into())),
    };
    if code.trim().is_empty() || name.trim().is_empty() {
        return Err(at(&[if code.trim().is_empty() { code_key } else { name_key }], "must not be empty".into()));
    }
    if c.mode == Some(Mode::Filter) && !c.output_schema.is_empty() {
        return Err(at(
            &["output_schema"],
            "filter mode keeps or drops rows and adds no columns; use `map` or `batch` to add them".into(),
        ));
    }
    let calls = calls(c.batch_rows, c.batch_bytes)?;
    let common = Common::new(&mut c.python, c.workers, c.batch_timeout_s, &c.env, &c.output_schema, ctx, calls)?;
    let mut file = None;
    let mut code_hash = None;
    if code_key == "path" {
        let p = std::path::absolute(ctx.resolve(Path::new(&code))).unwrap_or_else(|_| ctx.resolve(Path::new(&code)));
        let bytes = std::fs::read(&p).map_err(|e| at(&["path"], format!("cannot read {}: {e}", p.display())))?;
        code_hash = Some(hash(&bytes));
        file = Some(p);
    }
    let shown = match &file {
        Some(_) => Path::new(&code).file_name().map_or(code.clone(), |f| f.to_string_lossy().into_owned()),
        None => format!("module {code}"),
    };
    let request = serde_json::json!({
        "kind": "python",
        "path": file.as_ref().map(|f| f.display().to_string()),
        "module": c.module,
        "function": c.function,
        "class": c.class,
        "mode": c.mode,
        "options": c.options,
    });
    Ok(Stage {
        resolved: serde_json::to_value(&c).unwrap_or_default(),
        label: format!("`{name}` in {shown}"),
        prefix: format!("[python {name}] "),
        keys: Keys { code: code_key, name: name_key, options: "options" },
        mode: c.mode,
        datatrove: false,
        code_hash,
        request,
        common,
        facts: OnceLock::new(),
        pool: OnceLock::new(),
    })
}

fn at(path: &[&str], message: String) -> OptionError {
    OptionError { path: path.iter().map(|k| PathSeg::Key((*k).to_string())).collect(), message, at_key: false }
}

fn key(k: &str) -> PathSeg {
    PathSeg::Key(k.to_string())
}

/// `xxh3-128:<hex>` of a file's bytes, as lineage records it.
fn hash(bytes: &[u8]) -> String {
    format!("xxh3-128:{:032x}", xxhash_rust::xxh3::xxh3_128(bytes))
}

/// The options both stage types share, checked.
#[derive(Debug, Clone)]
struct Common {
    /// The interpreter as written (or the default).
    python: String,
    /// The interpreter to run: a path resolved against the pipeline file, or a name on PATH.
    python_path: PathBuf,
    workers: Option<usize>,
    timeout: Duration,
    env: Vec<String>,
    declared: Vec<(String, DataType)>,
    /// The workers' directory: the pipeline file's.
    cwd: PathBuf,
    /// How many rows go to a worker per call (`batch_rows`, `batch_bytes`); None: the pipeline's batches.
    calls: Option<Batching>,
}

/// `batch_rows` and `batch_bytes` as the engine's [`Batching`].
fn calls(rows: usize, bytes: usize) -> Result<Option<Batching>, OptionError> {
    if bytes == 0 {
        return Err(at(&["batch_bytes"], "`batch_bytes` must be at least 1 (or set `batch_rows: 0`)".into()));
    }
    Ok((rows > 0).then_some(Batching { rows, bytes }))
}

impl Common {
    fn new(
        python: &mut Option<String>,
        workers: Option<usize>,
        batch_timeout_s: f64,
        env: &[String],
        output_schema: &BTreeMap<String, String>,
        ctx: &ConfigureContext,
        calls: Option<Batching>,
    ) -> Result<Common, OptionError> {
        // An option's path is relative to the pipeline file; SMELT_PYTHON's to the working directory.
        let (given, base) = match python.clone() {
            Some(p) => (p, ctx.pipeline_dir.clone()),
            None => match std::env::var("SMELT_PYTHON").ok().filter(|p| !p.is_empty()) {
                Some(p) => (p, PathBuf::from(".")),
                None => ("python3".to_string(), PathBuf::new()),
            },
        };
        *python = Some(given.clone());
        if given.trim().is_empty() {
            return Err(at(&["python"], "`python` names an interpreter, e.g. `.venv/bin/python`".into()));
        }
        let python_path = if given.contains('/') { absolute(&base.join(&given)) } else { PathBuf::from(&given) };
        if workers == Some(0) {
            return Err(at(&["workers"], "`workers` must be at least 1".into()));
        }
        if !(batch_timeout_s.is_finite() && batch_timeout_s > 0.0) {
            return Err(at(&["batch_timeout_s"], "`batch_timeout_s` must be a number of seconds above 0".into()));
        }
        for (i, name) in env.iter().enumerate() {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(OptionError {
                    path: vec![key("env"), PathSeg::Index(i)],
                    message: format!("`{name}` is not an environment variable's name (give names, not NAME=value)"),
                    at_key: false,
                });
            }
        }
        let mut declared = Vec::new();
        for (name, t) in output_schema {
            if name.is_empty() || name == protocol::DROP_COLUMN {
                return Err(at(&["output_schema"], format!("`{name}` cannot be a column name")));
            }
            let t = schema::parse_type(t).map_err(|e| OptionError {
                path: vec![key("output_schema"), key(name)],
                message: e,
                at_key: false,
            })?;
            declared.push((name.clone(), t));
        }
        Ok(Common {
            python: given,
            python_path,
            workers,
            timeout: Duration::from_secs_f64(batch_timeout_s),
            env: env.to_vec(),
            declared,
            cwd: absolute(&ctx.pipeline_dir),
            calls,
        })
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The option names problems are reported at.
#[derive(Debug, Clone, Copy)]
struct Keys {
    /// `path`, `module` or `step`.
    code: &'static str,
    /// `function`, `class` or `step`.
    name: &'static str,
    /// `options` or `args`.
    options: &'static str,
}

/// What the probe established, kept for the run and for lineage.
#[derive(Debug, Clone)]
struct Facts {
    /// The mode (`python`: the option's or the decorator's).
    mode: Option<Mode>,
    /// xxh3-128 of the code's file.
    code_hash: Option<String>,
    /// datatrove's version (`datatrove` stages).
    datatrove: Option<String>,
}

/// A configured `python` or `datatrove` stage: what to run, and the run's worker pool.
#[derive(Debug)]
pub struct Stage {
    /// The options with defaults filled in.
    resolved: serde_json::Value,
    /// How messages name the code: "`score` in my_filters.py".
    label: String,
    /// Prefix of the workers' stderr lines.
    prefix: String,
    keys: Keys,
    /// The mode the options give (`python`).
    mode: Option<Mode>,
    datatrove: bool,
    /// Hash of the `path` file, read at configure time.
    code_hash: Option<String>,
    /// The probe's request, and the base of the workers' config.
    request: serde_json::Value,
    common: Common,
    facts: OnceLock<std::result::Result<Facts, SchemaError>>,
    pool: OnceLock<Arc<Pool>>,
}

impl Stage {
    fn launch(&self, config: Vec<u8>) -> Launch {
        Launch {
            python: self.common.python_path.clone(),
            env: probe::worker_env(&self.common.env),
            cwd: self.common.cwd.clone(),
            config,
            label: self.prefix.clone(),
        }
    }

    /// The probe's facts, probing once.
    fn facts(&self) -> std::result::Result<&Facts, SchemaError> {
        self.facts
            .get_or_init(|| {
                let answer = probe::probe(&self.launch(Vec::new()), &self.request);
                let p = answer.map_err(|e| self.cannot_run(e))?;
                if !p.ok {
                    return Err(self.problem(&p));
                }
                self.facts_of(&p)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    fn facts_of(&self, p: &Probe) -> std::result::Result<Facts, SchemaError> {
        let code_hash = match (&self.code_hash, &p.source) {
            (Some(h), _) => Some(h.clone()),
            (None, Some(source)) => std::fs::read(source).ok().map(|b| hash(&b)),
            (None, None) => None,
        };
        let decorated = p.mode.as_deref().and_then(Mode::parse);
        let mode = match (self.mode, decorated) {
            _ if self.datatrove => None,
            (Some(m), Some(d)) if m != d => {
                return Err(self.at(
                    "mode",
                    format!(
                        "{} is decorated as `{}` but the stage says `mode: {}`",
                        self.label,
                        d.as_str(),
                        m.as_str()
                    ),
                    None,
                ))
            }
            (Some(m), _) | (None, Some(m)) => Some(m),
            (None, None) => {
                return Err(self.at(
                    "mode",
                    format!("{} has no mode: give `mode:` (batch, filter or map)", self.label),
                    Some("or decorate it: `from smelt_data import filter` and `@filter` above it".into()),
                ))
            }
        };
        if mode == Some(Mode::Filter) && !self.common.declared.is_empty() {
            return Err(self.at(
                "output_schema",
                "filter mode keeps or drops rows and adds no columns; use `map` or `batch` to add them".into(),
                None,
            ));
        }
        Ok(Facts { mode, code_hash, datatrove: p.datatrove.clone() })
    }

    fn pool(&self, facts: &Facts) -> Result<Arc<Pool>> {
        if let Some(p) = self.pool.get() {
            return Ok(p.clone());
        }
        let declared =
            Schema::new(self.common.declared.iter().map(|(n, t)| Field::new(n, t.clone(), true)).collect::<Vec<_>>());
        let mut config = self.request.clone();
        config["declared"] = serde_json::Value::String(hex::encode(encode_schema(&declared)?));
        config["on_error"] = serde_json::to_value(self.on_error()).unwrap_or_default();
        if let Some(m) = facts.mode {
            config["mode"] = serde_json::Value::String(m.as_str().to_string());
        }
        let max = self.common.workers.unwrap_or(usize::MAX);
        let pool = Arc::new(Pool::new(self.launch(config.to_string().into_bytes()), max, self.common.timeout));
        Ok(self.pool.get_or_init(|| pool).clone())
    }

    fn on_error(&self) -> OnError {
        serde_json::from_value(self.resolved["on_error"].clone()).unwrap_or_default()
    }
}

impl TransformConfig for Stage {
    fn output_schema(&self, input: &SchemaRef) -> std::result::Result<SchemaRef, SchemaError> {
        if self.datatrove {
            require_column(input, "text", &[DataType::Utf8, DataType::LargeUtf8, DataType::Utf8View])?;
        }
        self.facts()?;
        Ok(schema::output_schema(input, &self.common.declared))
    }

    fn resolved(&self) -> serde_json::Value {
        let mut v = self.resolved.clone();
        if let Some(Ok(f)) = self.facts.get() {
            if let Some(m) = f.mode {
                v["mode"] = serde_json::Value::String(m.as_str().to_string());
            }
            if let Some(h) = &f.code_hash {
                v["code_hash"] = serde_json::Value::String(h.clone());
            }
            if let Some(d) = &f.datatrove {
                v["datatrove_version"] = serde_json::Value::String(d.clone());
            }
        } else if let Some(h) = &self.code_hash {
            v["code_hash"] = serde_json::Value::String(h.clone());
        }
        v
    }

    fn build(&self, input: &SchemaRef) -> Result<Box<dyn Transform>> {
        let facts = self.facts().map_err(|e| EngineError::User(e.0))?;
        Ok(Box::new(run::Run {
            pool: self.pool(facts)?,
            output: schema::output_schema(input, &self.common.declared),
            label: self.label.clone(),
            python: self.common.python.clone(),
            on_error: self.on_error(),
            user_ns: 0,
            calls: self.common.calls,
        }))
    }

    /// Two calls' worth: the run sends them as two calls, the second written while the worker runs the first.
    fn batching(&self) -> Option<Batching> {
        self.common.calls.map(|c| Batching { rows: c.rows.saturating_mul(2), bytes: c.bytes.saturating_mul(2) })
    }
}
