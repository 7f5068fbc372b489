//! `back_translate` transform: translates selected documents into one or
//! more pivot languages and back, and emits each back-translation as a new
//! row right after its original. Originals pass through unchanged, whatever
//! the backend does; a translation that fails or fails a quality guard is
//! only counted.
//!
//! ```text
//! row ──select (fraction by hash of id+seed; languages, sources, column values)──► not selected: passes alone
//!  │ selected: text ──chunk (paragraphs, ≤ max_chunk_chars)──► pieces
//!  │   per pivot chain (`es`: en → es → en, `es>fr`: en → es → fr → en), hop by hop:
//!  │     pieces ──cache (backend, model, direction, xxh3 of piece)──► misses ──backend──► cache
//!  │   pieces ──reassemble──► guards (not empty, not identical, length ratio, unknown words, langid)
//!  ▼
//! original row, then one row per accepted chain: id `<id>#bt:<chain>`, new text and
//! content_hash, augmented_from = original id, augmentation = {backend, pivots, model}
//! counters: augmented, skipped:<reason>, failed:<reason>, rejected:<reason>, cache_hits, ...
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arrow::array::{
    Array, ArrayRef, FixedSizeBinaryBuilder, LargeStringBuilder, StringBuilder, StructArray, UInt32Array,
};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use smelt_engine::stage::{doc, str_at};
use smelt_engine::yaml::PathSeg;
use smelt_engine::{
    parse_options, require_column, ConfigureContext, EngineError, OptionError, Processed, Result, SchemaError,
    StageConfig, Transform, TransformConfig,
};

use super::apertium::{self, Apertium};
use super::backend::{Failure, Translated, Translator};
use super::cache::Cache;
use super::chunk::{self, Chunk};
use super::http::{
    api_key_from_env, default_backoff_ms, default_breaker, default_concurrency, default_retries, default_timeout_s,
    Api, Http, Limits,
};
use crate::content_hash::{content_hash, normalize};
use crate::langid::fasttext::{Model, Prediction, Scratch};

/// Which translation system the stage uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Apertium from Debian's packages, run locally as a pool of processes.
    #[default]
    Apertium,
    /// An OpenAI-compatible chat-completions endpoint.
    Openai,
    /// A LibreTranslate server.
    Libretranslate,
}

fn one() -> f64 {
    1.0
}
fn default_source_language() -> String {
    "en".into()
}
fn default_lang_column() -> String {
    "lang".into()
}
fn default_max_chars() -> usize {
    100_000
}
fn default_max_chunk_chars() -> usize {
    2_000
}
fn yes() -> bool {
    true
}

/// Which documents are back-translated.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Select {
    /// Share of the documents (0 to 1, default 1), picked by a hash of `id` and `seed`: the same documents on every run.
    #[serde(default = "one")]
    pub fraction: f64,
    /// Seed of the pick (default 0).
    #[serde(default)]
    pub seed: u64,
    /// Only documents in these languages (empty: any the backend can translate).
    #[serde(default)]
    pub languages: Vec<String>,
    /// Only documents whose `source` starts with one of these (empty: any).
    #[serde(default)]
    pub sources: Vec<String>,
    /// A string column that must hold one of `values`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The values of `column` that select a row.
    #[serde(default)]
    pub values: Vec<String>,
}

impl Default for Select {
    fn default() -> Self {
        Select { fraction: 1.0, seed: 0, languages: Vec::new(), sources: Vec::new(), column: None, values: Vec::new() }
    }
}

fn default_min_ratio() -> f64 {
    0.5
}
fn default_max_ratio() -> f64 {
    2.0
}
fn default_unknown_rate() -> f64 {
    0.25
}
fn default_language_score() -> f64 {
    0.5
}

/// Quality guards: a back-translation failing one is counted as `rejected:<reason>` and not emitted.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Guards {
    /// Least characters of the back-translation per character of the original (default 0.5): `length_ratio`.
    #[serde(default = "default_min_ratio")]
    pub min_length_ratio: f64,
    /// Most characters of the back-translation per character of the original (default 2): `length_ratio`.
    #[serde(default = "default_max_ratio")]
    pub max_length_ratio: f64,
    /// Largest share of words Apertium marked unknown over all hops (default 0.25; newswire names and jargon such as `pct`, `mln` run at 5-20%): `unknown_words`.
    #[serde(default = "default_unknown_rate")]
    pub max_unknown_rate: f64,
    /// Check with LID-176 (as `langid`) that the back-translation is in the document's language (default true): `wrong_language`.
    #[serde(default = "yes")]
    pub language: bool,
    /// Least LID-176 score of that language (default 0.5).
    #[serde(default = "default_language_score")]
    pub min_language_score: f64,
}

impl Default for Guards {
    fn default() -> Self {
        Guards {
            min_length_ratio: default_min_ratio(),
            max_length_ratio: default_max_ratio(),
            max_unknown_rate: default_unknown_rate(),
            language: true,
            min_language_score: default_language_score(),
        }
    }
}

fn default_apertium_dir() -> String {
    "/usr/share/apertium".into()
}
fn default_batch_chars() -> usize {
    65_536
}
fn default_stall_s() -> f64 {
    20.0
}

/// Settings of the `apertium` backend.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApertiumOptions {
    /// Apertium's data directory, holding `modes/` (default `/usr/share/apertium`, as `apertium -d`).
    #[serde(default = "default_apertium_dir")]
    pub data_dir: String,
    /// Pipelines running at once (default: the number of CPUs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<usize>,
    /// Characters of text in one group, translated by one fresh pipeline (default 65536).
    #[serde(default = "default_batch_chars")]
    pub batch_chars: usize,
    /// A pipeline that answers nothing for this long is killed (default 20 s).
    #[serde(default = "default_stall_s")]
    pub stall_timeout_s: f64,
}

impl Default for ApertiumOptions {
    fn default() -> Self {
        ApertiumOptions {
            data_dir: default_apertium_dir(),
            processes: None,
            batch_chars: default_batch_chars(),
            stall_timeout_s: default_stall_s(),
        }
    }
}

fn default_prompt() -> String {
    "Translate the user's text from {source} to {target}. Answer with the translation only: no notes, no quotes.".into()
}

/// Settings of the HTTP backends (`openai`, `libretranslate`).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpOptions {
    /// Endpoint: the API base (`http://localhost:8000/v1` for OpenAI-compatible servers, the server root for LibreTranslate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `model` of the chat-completions requests (required for `openai`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// System prompt (`openai`); `{source}` and `{target}` become language names.
    #[serde(default = "default_prompt")]
    pub prompt: String,
    /// Sampling temperature (`openai`, default 0).
    #[serde(default)]
    pub temperature: f64,
    /// Environment variable holding the API key (the key is never logged or stored; unset variable: no key sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Requests in flight at once (default 4).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Requests started per second at most (default: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<f64>,
    /// Retries of a request that failed with 408, 429, 5xx, a timeout, a dropped connection or an unreadable answer (default 3).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// First wait before a retry, doubled each time up to 30 s (default 500 ms).
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// Time allowed for one request (default 60 s).
    #[serde(default = "default_timeout_s")]
    pub timeout_s: f64,
    /// Pieces failed in a row (after retries) that open the circuit breaker: nothing more is sent this run (default 5).
    #[serde(default = "default_breaker")]
    pub breaker_failures: u32,
    /// Languages the endpoint translates (empty: any); others are skipped as `unsupported_language`.
    #[serde(default)]
    pub languages: Vec<String>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            url: None,
            model: None,
            prompt: default_prompt(),
            temperature: 0.0,
            api_key_env: None,
            concurrency: default_concurrency(),
            requests_per_second: None,
            retries: default_retries(),
            backoff_ms: default_backoff_ms(),
            timeout_s: default_timeout_s(),
            breaker_failures: default_breaker(),
            languages: Vec::new(),
        }
    }
}

/// Options of `back_translate`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackTranslateConfig {
    /// `apertium` (default), `openai` or `libretranslate`.
    #[serde(default)]
    pub backend: BackendKind,
    /// Pivot chains, one augmented row per chain and document: `es` is en → es → en, `es>ca` is en → es → ca → en.
    pub pivots: Vec<String>,
    /// Language of rows with no language column or a null value (default `en`).
    #[serde(default = "default_source_language")]
    pub source_language: String,
    /// Column with each row's language, as `langid` writes it (default `lang`; used when the input has it).
    #[serde(default = "default_lang_column")]
    pub lang_column: String,
    /// Which documents are back-translated.
    #[serde(default)]
    pub select: Select,
    /// Longest document translated, in characters (default 100000); longer ones are `skipped:too_long`.
    #[serde(default = "default_max_chars")]
    pub max_chars: usize,
    /// Longest piece sent to the backend, in characters (default 2000): paragraphs are cut at sentence ends.
    #[serde(default = "default_max_chunk_chars")]
    pub max_chunk_chars: usize,
    /// Quality guards.
    #[serde(default)]
    pub guards: Guards,
    /// Keep translations in a cache so reruns do not translate again (default true).
    #[serde(default = "yes")]
    pub cache: bool,
    /// Cache directory (relative to the pipeline file); default `<data dir>/cache/back_translate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<String>,
    /// Settings of the `apertium` backend.
    #[serde(default)]
    pub apertium: ApertiumOptions,
    /// Settings of the `openai` and `libretranslate` backends.
    #[serde(default)]
    pub http: HttpOptions,
    /// The backend, cache and language model, shared by every split of the run.
    #[serde(skip)]
    shared: Arc<OnceLock<Arc<Shared>>>,
}

/// What every split of a run shares.
#[derive(Debug)]
struct Shared {
    backend: Box<dyn Translator>,
    cache: Option<Cache>,
    lid: Option<Arc<Model>>,
}

/// Registry hook.
///
/// # Errors
/// Unknown or invalid options; a missing Apertium installation or language pair.
pub fn configure(options: serde_json::Value, ctx: &ConfigureContext) -> Result<StageConfig, OptionError> {
    let mut c: BackTranslateConfig = parse_options(options)?;
    let at = |path: &[&str], message: String| OptionError {
        path: path.iter().map(|k| PathSeg::Key((*k).into())).collect(),
        message,
        at_key: false,
    };
    if c.pivots.is_empty() {
        return Err(at(&["pivots"], "give at least one pivot chain, e.g. `pivots: [es]`".into()));
    }
    for (i, p) in c.pivots.iter().enumerate() {
        if chain(p).iter().any(|l| l.is_empty() || !l.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')) {
            return Err(OptionError {
                path: vec![PathSeg::Key("pivots".into()), PathSeg::Index(i)],
                message: format!(
                    "pivot chain `{p}` is not a list of language codes joined by `>` (e.g. `es` or `es>ca`)"
                ),
                at_key: false,
            });
        }
    }
    let s = &c.select;
    if !(0.0..=1.0).contains(&s.fraction) {
        return Err(at(&["select", "fraction"], format!("fraction {} is not between 0 and 1", s.fraction)));
    }
    if s.column.is_some() == s.values.is_empty() {
        return Err(at(&["select", "values"], "`select.column` and `select.values` go together".into()));
    }
    let g = &c.guards;
    if g.min_length_ratio < 0.0 || g.max_length_ratio < g.min_length_ratio {
        return Err(at(&["guards", "max_length_ratio"], "need 0 <= min_length_ratio <= max_length_ratio".into()));
    }
    if !(0.0..=1.0).contains(&g.max_unknown_rate) {
        return Err(at(&["guards", "max_unknown_rate"], "max_unknown_rate is not between 0 and 1".into()));
    }
    if c.max_chunk_chars < 20 {
        return Err(at(&["max_chunk_chars"], "max_chunk_chars must be at least 20".into()));
    }
    if c.apertium.stall_timeout_s.is_nan() || c.apertium.stall_timeout_s <= 0.0 {
        return Err(at(&["apertium", "stall_timeout_s"], "stall_timeout_s must be above 0".into()));
    }
    if c.apertium.processes == Some(0) {
        return Err(at(&["apertium", "processes"], "processes must be at least 1".into()));
    }
    let h = &c.http;
    match c.backend {
        BackendKind::Apertium => {
            // The languages rows are expected in: checked now, so `smelt validate` names a missing pair.
            let sources = if s.languages.is_empty() { vec![c.source_language.clone()] } else { s.languages.clone() };
            let mut directions = Vec::new();
            for src in &sources {
                for p in &c.pivots {
                    directions.extend(hops(src, p));
                }
            }
            apertium::check_installed(Path::new(&c.apertium.data_dir), &directions).map_err(|e| at(&["backend"], e))?;
        }
        BackendKind::Openai | BackendKind::Libretranslate => {
            let name = if c.backend == BackendKind::Openai { "openai" } else { "libretranslate" };
            match &h.url {
                None => return Err(at(&["http", "url"], format!("backend `{name}` needs `http.url`"))),
                Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => {
                    return Err(at(&["http", "url"], format!("`{u}` is not an http:// or https:// URL")))
                }
                Some(_) => {}
            }
            if c.backend == BackendKind::Openai && h.model.is_none() {
                return Err(at(&["http", "model"], "backend `openai` needs `http.model`".into()));
            }
            if h.concurrency == 0 || h.breaker_failures == 0 || h.timeout_s.is_nan() || h.timeout_s <= 0.0 {
                return Err(at(&["http"], "concurrency, breaker_failures and timeout_s must be above 0".into()));
            }
            if h.requests_per_second.is_some_and(|r| r.is_nan() || r <= 0.0) {
                return Err(at(&["http", "requests_per_second"], "requests_per_second must be above 0".into()));
            }
        }
    }
    c.cache_dir = c.cache_dir.map(|d| ctx.resolve(Path::new(&d)).display().to_string());
    if c.cache_dir.is_none() && c.cache {
        c.cache_dir = Some(ctx.data_dir.join("cache").join("back_translate").display().to_string());
    }
    Ok(StageConfig::Transform(Arc::new(c)))
}

/// The languages of a chain written `es>ca`.
fn chain(p: &str) -> Vec<&str> {
    p.split('>').map(str::trim).collect()
}

/// The directions of one document language through one chain: en, `es>ca` -> en→es, es→ca, ca→en.
fn hops(src: &str, pivots: &str) -> Vec<(String, String)> {
    let mut langs = vec![src];
    langs.extend(chain(pivots));
    langs.push(src);
    langs.windows(2).map(|w| (w[0].to_string(), w[1].to_string())).collect()
}

impl BackTranslateConfig {
    fn shared(&self) -> Result<Arc<Shared>> {
        if let Some(s) = self.shared.get() {
            return Ok(s.clone());
        }
        let backend: Box<dyn Translator> = match self.backend {
            BackendKind::Apertium => {
                let dir = PathBuf::from(&self.apertium.data_dir);
                apertium::check_installed(&dir, &[]).map_err(EngineError::User)?;
                let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
                Box::new(Apertium::new(
                    dir,
                    self.apertium.processes.unwrap_or(cpus),
                    self.apertium.batch_chars,
                    Duration::from_secs_f64(self.apertium.stall_timeout_s),
                ))
            }
            BackendKind::Openai | BackendKind::Libretranslate => {
                let h = &self.http;
                let api_key = api_key_from_env(h.api_key_env.as_deref());
                let url = h.url.clone().unwrap_or_default();
                let api = if self.backend == BackendKind::Openai {
                    Api::OpenAi {
                        url,
                        model: h.model.clone().unwrap_or_default(),
                        prompt: h.prompt.clone(),
                        temperature: h.temperature,
                        api_key,
                    }
                } else {
                    Api::LibreTranslate { url, api_key }
                };
                let limits = Limits {
                    concurrency: h.concurrency,
                    requests_per_second: h.requests_per_second,
                    retries: h.retries,
                    backoff: Duration::from_millis(h.backoff_ms),
                    timeout: Duration::from_secs_f64(h.timeout_s),
                    breaker_failures: h.breaker_failures,
                };
                Box::new(Http::new(api, limits, h.languages.clone()).map_err(EngineError::External)?)
            }
        };
        let cache = match (&self.cache_dir, self.cache) {
            (Some(dir), true) => {
                // Whatever changes the answer is part of the cache's identity.
                let identity = match self.backend {
                    BackendKind::Openai => {
                        format!("{}\n{}\n{}", backend.model(), self.http.prompt, self.http.temperature)
                    }
                    BackendKind::Libretranslate => {
                        format!("libretranslate\n{}", self.http.url.as_deref().unwrap_or(""))
                    }
                    // The stream-format reader's version and the pairs' directory.
                    BackendKind::Apertium => format!("{}\nv1\n{}", backend.model(), self.apertium.data_dir),
                };
                Some(Cache::new(Path::new(dir), backend.name(), &identity))
            }
            _ => None,
        };
        let lid = if self.guards.language { Some(crate::langid::lid176()?) } else { None };
        let shared = Arc::new(Shared { backend, cache, lid });
        let _ = self.shared.set(shared.clone());
        Ok(self.shared.get().cloned().unwrap_or(shared))
    }
}

fn augmentation_fields() -> Fields {
    Fields::from(vec![
        Field::new("backend", DataType::Utf8, false),
        Field::new("pivots", DataType::Utf8, false),
        Field::new("model", DataType::Utf8, false),
    ])
}

impl TransformConfig for BackTranslateConfig {
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, SchemaError> {
        require_column(input, "id", &[DataType::Utf8, DataType::LargeUtf8, DataType::Utf8View])?;
        require_column(input, "text", &[DataType::LargeUtf8, DataType::Utf8, DataType::Utf8View])?;
        if input.field_with_name("content_hash").is_ok() {
            require_column(input, "content_hash", &[DataType::FixedSizeBinary(16)])?;
        }
        if !self.select.sources.is_empty() {
            require_column(input, "source", &[DataType::Utf8, DataType::LargeUtf8, DataType::Utf8View])?;
        }
        if let Some(col) = &self.select.column {
            require_column(input, col, &[DataType::Utf8, DataType::LargeUtf8, DataType::Utf8View])?;
        }
        for c in ["augmented_from", "augmentation"] {
            if input.field_with_name(c).is_ok() {
                return Err(SchemaError::new(format!(
                    "its input already has `{c}` (one back_translate stage per pipeline: list every chain in `pivots`)"
                )));
            }
        }
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        if input.field_with_name("content_hash").is_err() {
            fields.push(doc::content_hash());
        }
        fields.push(Field::new("augmented_from", DataType::Utf8, true));
        fields.push(Field::new("augmentation", DataType::Struct(augmentation_fields()), true));
        Ok(Arc::new(Schema::new(fields)))
    }

    fn resolved(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn build(&self, input: &SchemaRef) -> Result<Box<dyn Transform>> {
        let output = self.output_schema(input).map_err(|e| EngineError::Internal(e.0))?;
        let shared = self.shared()?;
        Ok(Box::new(BackTranslate {
            config: self.clone(),
            shared,
            output,
            counters: BTreeMap::new(),
            scratch: Scratch::default(),
            predictions: Vec::new(),
            norm: (String::new(), String::new()),
        }))
    }
}

struct BackTranslate {
    config: BackTranslateConfig,
    shared: Arc<Shared>,
    output: SchemaRef,
    counters: BTreeMap<String, u64>,
    scratch: Scratch,
    predictions: Vec<Prediction>,
    norm: (String, String),
}

/// A piece's translation, once asked for.
type Answer = Option<Result<Translated, Failure>>;

/// One back-translation in progress: a document through one chain.
struct Job {
    row: usize,
    chain: usize,
    lang: String,
    hops: Vec<(String, String)>,
    chunks: Vec<Chunk>,
    tail: String,
    /// The pieces after the hops done so far.
    pieces: Vec<String>,
    unknown: u64,
    words: u64,
    failed: Option<&'static str>,
}

impl BackTranslate {
    fn count(&mut self, key: String) {
        *self.counters.entry(key).or_default() += 1;
    }

    fn selected(&self, batch: &RecordBatch, row: usize, id: &str) -> bool {
        let s = &self.config.select;
        if s.fraction < 1.0 {
            let h = xxhash_rust::xxh3::xxh3_64_with_seed(id.as_bytes(), s.seed);
            if (h as f64) / 18_446_744_073_709_551_616.0 >= s.fraction {
                return false;
            }
        }
        if !s.sources.is_empty() {
            let src = batch.column_by_name("source").and_then(|c| str_at(c, row)).unwrap_or("");
            if !s.sources.iter().any(|p| src.starts_with(p.as_str())) {
                return false;
            }
        }
        if let Some(col) = &s.column {
            let v = batch.column_by_name(col).and_then(|c| str_at(c, row));
            if !v.is_some_and(|v| s.values.iter().any(|x| x == v)) {
                return false;
            }
        }
        true
    }

    /// Runs every job's next hop, grouped by direction; pieces repeated in the batch are sent once.
    fn run_hop(&mut self, jobs: &mut [Job], hop: usize) -> Result<()> {
        let mut by_direction: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
        for (j, job) in jobs.iter().enumerate() {
            if job.failed.is_none() && hop < job.hops.len() {
                by_direction.entry(job.hops[hop].clone()).or_default().push(j);
            }
        }
        let shared = self.shared.clone();
        for ((from, to), members) in by_direction {
            // Unique pieces of this direction, in first-seen order.
            let mut index: HashMap<&str, usize> = HashMap::new();
            let mut unique: Vec<&str> = Vec::new();
            for &j in &members {
                for p in &jobs[j].pieces {
                    index.entry(p.as_str()).or_insert_with(|| {
                        unique.push(p.as_str());
                        unique.len() - 1
                    });
                }
            }
            let mut answers: Vec<Answer> = vec![None; unique.len()];
            let mut misses = Vec::new();
            for (u, text) in unique.iter().enumerate() {
                match &shared.cache {
                    Some(cache) => match cache.get(&from, &to, text).map_err(|e| cache_error(cache, e))? {
                        Some(t) => answers[u] = Some(Ok(t)),
                        None => misses.push(u),
                    },
                    None => misses.push(u),
                }
            }
            if unique.len() > misses.len() {
                *self.counters.entry("cache_hits".into()).or_default() += (unique.len() - misses.len()) as u64;
            }
            if !misses.is_empty() {
                let texts: Vec<&str> = misses.iter().map(|&u| unique[u]).collect();
                let got = shared.backend.translate(&from, &to, &texts);
                for (&u, r) in misses.iter().zip(got) {
                    if let (Some(cache), Ok(t)) = (&shared.cache, &r) {
                        cache.put(&from, &to, unique[u], t).map_err(|e| cache_error(cache, e))?;
                    }
                    answers[u] = Some(r);
                }
                *self.counters.entry("pieces_translated".into()).or_default() += misses.len() as u64;
            }
            let results: Vec<(usize, Vec<&Answer>)> = members
                .iter()
                .map(|&j| (j, jobs[j].pieces.iter().map(|p| &answers[index[p.as_str()]]).collect()))
                .collect();
            let mut updates = Vec::with_capacity(results.len());
            for (j, rs) in results {
                let mut out = Vec::with_capacity(rs.len());
                let (mut unknown, mut words) = (0u64, 0u64);
                let mut failed = None;
                for r in rs {
                    match r {
                        Some(Ok(t)) => {
                            unknown += u64::from(t.unknown);
                            words += u64::from(t.words);
                            out.push(t.text.clone());
                        }
                        Some(Err(f)) => {
                            failed.get_or_insert(f.reason());
                        }
                        None => {
                            failed.get_or_insert("backend_error");
                        }
                    }
                }
                updates.push((j, out, unknown, words, failed));
            }
            drop(index);
            drop(unique);
            for (j, out, unknown, words, failed) in updates {
                let job = &mut jobs[j];
                match failed {
                    Some(f) => job.failed = Some(f),
                    None => {
                        job.pieces = out;
                        job.unknown += unknown;
                        job.words += words;
                    }
                }
            }
        }
        Ok(())
    }

    /// The guard a back-translation fails, if any.
    fn reject(&mut self, original: &str, lang: &str, text: &str, unknown: u64, words: u64) -> Option<&'static str> {
        let g = &self.config.guards;
        if text.trim().is_empty() {
            return Some("empty_output");
        }
        normalize(original, &mut self.norm.0);
        normalize(text, &mut self.norm.1);
        if self.norm.0 == self.norm.1 {
            return Some("identical");
        }
        let ratio = text.chars().count() as f64 / original.chars().count().max(1) as f64;
        if ratio < g.min_length_ratio || ratio > g.max_length_ratio {
            return Some("length_ratio");
        }
        if words > 0 && unknown as f64 / words as f64 > g.max_unknown_rate {
            return Some("unknown_words");
        }
        if let Some(model) = &self.shared.lid {
            if let Some(want) = model.label_index(lang) {
                model.predict(text, 0.0, &mut self.scratch, &mut self.predictions);
                let ok = self
                    .predictions
                    .first()
                    .is_some_and(|p| p.label == want && f64::from(p.score) >= self.config.guards.min_language_score);
                if !ok {
                    return Some("wrong_language");
                }
            }
        }
        None
    }
}

fn cache_error(cache: &Cache, e: std::io::Error) -> EngineError {
    EngineError::External(format!(
        "translation cache {}: {e} (set `cache_dir` to a writable directory, or `cache: false`)",
        cache.dir().display()
    ))
}

/// A string array of `ty` (Utf8, LargeUtf8 or Utf8View).
fn strings<'a>(values: impl Iterator<Item = Option<&'a str>>, ty: &DataType) -> Result<ArrayRef> {
    let mut b = LargeStringBuilder::new();
    for v in values {
        b.append_option(v);
    }
    let a: ArrayRef = Arc::new(b.finish());
    Ok(if ty == &DataType::LargeUtf8 { a } else { arrow::compute::cast(&a, ty)? })
}

impl Transform for BackTranslate {
    fn process(&mut self, batch: RecordBatch) -> Result<Processed> {
        let c = self.config.clone();
        let ids = batch.column_by_name("id").expect("schema checked").clone();
        let texts = batch.column_by_name("text").expect("schema checked").clone();
        let langs = batch.column_by_name(&c.lang_column).cloned();
        let mut jobs = Vec::new();
        for row in 0..batch.num_rows() {
            let Some(id) = str_at(&ids, row) else {
                self.count("skipped:null_id".into());
                continue;
            };
            if !self.selected(&batch, row, id) {
                self.count("not_selected".into());
                continue;
            }
            let lang = langs.as_ref().and_then(|l| str_at(l, row)).unwrap_or(&c.source_language).to_string();
            if !c.select.languages.is_empty() && !c.select.languages.contains(&lang) {
                self.count("not_selected".into());
                continue;
            }
            let text = str_at(&texts, row).unwrap_or("");
            if text.trim().is_empty() {
                self.count("skipped:empty_text".into());
                continue;
            }
            if text.chars().count() > c.max_chars {
                self.count("skipped:too_long".into());
                continue;
            }
            for (ci, p) in c.pivots.iter().enumerate() {
                let hops = hops(&lang, p);
                if !hops.iter().all(|(f, t)| self.shared.backend.supports(f, t)) {
                    tracing::debug!(
                        "back_translate: {} cannot translate {lang} through {p}; document {id} skipped",
                        self.shared.backend.name()
                    );
                    self.count("skipped:unsupported_language".into());
                    continue;
                }
                let (chunks, tail) = chunk::split(text, c.max_chunk_chars);
                let pieces = chunks.iter().map(|c| c.text.clone()).collect();
                jobs.push(Job {
                    row,
                    chain: ci,
                    lang: lang.clone(),
                    hops,
                    chunks,
                    tail,
                    pieces,
                    unknown: 0,
                    words: 0,
                    failed: None,
                });
            }
        }
        let max_hops = jobs.iter().map(|j| j.hops.len()).max().unwrap_or(0);
        for hop in 0..max_hops {
            self.run_hop(&mut jobs, hop)?;
        }
        // Accepted back-translations per row, in chain order.
        let mut accepted: BTreeMap<usize, Vec<(usize, String)>> = BTreeMap::new();
        for job in jobs {
            if let Some(f) = job.failed {
                self.count(format!("failed:{f}"));
                continue;
            }
            let text = chunk::join(&job.chunks, &job.pieces, &job.tail);
            let original = str_at(&texts, job.row).unwrap_or("");
            match self.reject(original, &job.lang, &text, job.unknown, job.words) {
                Some(reason) => self.count(format!("rejected:{reason}")),
                None => {
                    self.count("augmented".into());
                    accepted.entry(job.row).or_default().push((job.chain, text));
                }
            }
        }
        for (k, v) in self.shared.backend.take_counters() {
            *self.counters.entry(k).or_default() += v;
        }
        if accepted.is_empty() && batch.schema().field_with_name("content_hash").is_ok() {
            // Nothing to add: the originals with two null columns.
            let n = batch.num_rows();
            let mut cols = batch.columns().to_vec();
            cols.push(arrow::array::new_null_array(&DataType::Utf8, n));
            cols.push(arrow::array::new_null_array(&DataType::Struct(augmentation_fields()), n));
            return Ok(Processed::Batch(RecordBatch::try_new(self.output.clone(), cols)?));
        }
        // Output rows: each original, then its back-translations.
        let mut take: Vec<u32> = Vec::new();
        let mut aug: Vec<Option<(usize, &str)>> = Vec::new();
        for row in 0..batch.num_rows() {
            take.push(row as u32);
            aug.push(None);
            for (ci, t) in accepted.get(&row).map(Vec::as_slice).unwrap_or(&[]) {
                take.push(row as u32);
                aug.push(Some((*ci, t.as_str())));
            }
        }
        let take = UInt32Array::from(take);
        let rows: Vec<usize> = take.values().iter().map(|&r| r as usize).collect();
        let mut scratch = String::new();
        let new_ids: Vec<Option<String>> = rows
            .iter()
            .zip(&aug)
            .map(|(&r, a)| {
                let id = str_at(&ids, r).map(str::to_string);
                match a {
                    Some((ci, _)) => id.map(|id| format!("{id}#bt:{}", c.pivots[*ci])),
                    None => id,
                }
            })
            .collect();
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(self.output.fields().len());
        for (f, col) in batch.schema().fields().iter().zip(batch.columns()) {
            let out = match f.name().as_str() {
                "id" => strings(new_ids.iter().map(|s| s.as_deref()), f.data_type())?,
                "text" => strings(
                    rows.iter().zip(&aug).map(|(&r, a)| a.map_or_else(|| str_at(col, r), |(_, t)| Some(t))),
                    f.data_type(),
                )?,
                "content_hash" => {
                    let old =
                        col.as_any().downcast_ref::<arrow::array::FixedSizeBinaryArray>().expect("schema checked");
                    let mut b = FixedSizeBinaryBuilder::with_capacity(rows.len(), 16);
                    for (&r, a) in rows.iter().zip(&aug) {
                        match a {
                            Some((_, t)) => b.append_value(content_hash(t, true, &mut scratch))?,
                            None if old.is_null(r) => b.append_null(),
                            None => b.append_value(old.value(r))?,
                        }
                    }
                    Arc::new(b.finish())
                }
                _ => arrow::compute::take(col.as_ref(), &take, None)?,
            };
            cols.push(out);
        }
        if batch.schema().field_with_name("content_hash").is_err() {
            let mut b = FixedSizeBinaryBuilder::with_capacity(rows.len(), 16);
            for (&r, a) in rows.iter().zip(&aug) {
                let t = a.map_or_else(|| str_at(&texts, r).unwrap_or(""), |(_, t)| t);
                b.append_value(content_hash(t, true, &mut scratch))?;
            }
            cols.push(Arc::new(b.finish()));
        }
        let mut from = StringBuilder::new();
        let (mut backend, mut pivots, mut model) = (StringBuilder::new(), StringBuilder::new(), StringBuilder::new());
        let mut valid = Vec::with_capacity(rows.len());
        let model_name = self.shared.backend.model();
        for (&r, a) in rows.iter().zip(&aug) {
            match a {
                Some((ci, _)) => {
                    from.append_option(str_at(&ids, r));
                    backend.append_value(self.shared.backend.name());
                    pivots.append_value(&c.pivots[*ci]);
                    model.append_value(&model_name);
                    valid.push(true);
                }
                None => {
                    from.append_null();
                    backend.append_value("");
                    pivots.append_value("");
                    model.append_value("");
                    valid.push(false);
                }
            }
        }
        cols.push(Arc::new(from.finish()));
        let parts: Vec<ArrayRef> =
            vec![Arc::new(backend.finish()), Arc::new(pivots.finish()), Arc::new(model.finish())];
        cols.push(Arc::new(StructArray::try_new(augmentation_fields(), parts, Some(valid.into()))?));
        Ok(Processed::Batch(RecordBatch::try_new(self.output.clone(), cols)?))
    }

    fn take_counters(&mut self) -> BTreeMap<String, u64> {
        std::mem::take(&mut self.counters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_become_hops_and_bad_options_are_located() {
        assert_eq!(
            hops("en", "es>ca"),
            [("en".to_string(), "es".to_string()), ("es".into(), "ca".into()), ("ca".into(), "en".into())]
        );
        let e = configure(serde_json::json!({"pivots": []}), &ConfigureContext::working_dir()).unwrap_err();
        assert_eq!(e.path, vec![PathSeg::Key("pivots".into())]);
        let e = configure(serde_json::json!({"pivots": ["es>"]}), &ConfigureContext::working_dir()).unwrap_err();
        assert_eq!(e.path, vec![PathSeg::Key("pivots".into()), PathSeg::Index(0)]);
        let e = configure(serde_json::json!({"pivots": ["es"], "backend": "openai"}), &ConfigureContext::working_dir())
            .unwrap_err();
        assert!(e.message.contains("needs `http.url`"), "{}", e.message);
        let e = configure(
            serde_json::json!({"pivots": ["es"], "backend": "openai", "http": {"url": "http://x"}}),
            &ConfigureContext::working_dir(),
        )
        .unwrap_err();
        assert!(e.message.contains("needs `http.model`"), "{}", e.message);
        let e = configure(
            serde_json::json!({"pivots": ["es"], "select": {"fraction": 2}}),
            &ConfigureContext::working_dir(),
        )
        .unwrap_err();
        assert_eq!(e.path, vec![PathSeg::Key("select".into()), PathSeg::Key("fraction".into())]);
        let e = configure(
            serde_json::json!({"pivots": ["es"], "apertium": {"data_dir": "/nonexistent"}}),
            &ConfigureContext::working_dir(),
        )
        .unwrap_err();
        assert!(e.message.contains("apt-get install apertium apertium-eng-spa apertium-eng-cat"), "{}", e.message);
    }
}
