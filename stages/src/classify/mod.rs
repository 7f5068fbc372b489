//! `classify` stage: scores every document with a fastText supervised
//! classifier (DCLM's quality filter, topic or domain classifiers), writes the
//! probabilities as columns, keeps documents by an expression over them, and
//! optionally puts each document in a token-weighted percentile bucket of the
//! run (Nemotron-CC).
//!
//! ```text
//! text ──fastText predict(k=-1), newlines as spaces (Python fastText's answers)──► every label's probability
//!   labels: [hq, ...] ──► score_hq, ...    (0 for a label predict leaves out)
//!   no labels         ──► label, score     (the best label)
//!   keep: "score_hq >= 0.018112" ──► kept, or dropped `score_not_kept`          (keep.rs)
//!   buckets: {column, count, weight} ──► <column>_bucket, over the whole run   (buckets.rs: a barrier)
//! ```
//! The model is read by smelt's own fastText reader ([`crate::langid::fasttext`],
//! bit-exact with Python fastText 0.9.2; with `exact: false` each input row
//! is projected onto the labels at load, faster, fastText's f32 rounding
//! aside) from a path (relative to the
//! pipeline file) or an object-store URL, once per process, when the
//! pipeline is compiled: a missing file or a label the model does not have is
//! reported at its option's position. Without `buckets` the stage is a
//! transform; with it, a barrier.

pub mod buckets;
pub mod http;
pub mod keep;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use arrow::array::{ArrayRef, Float64Builder, StringBuilder, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use smelt_engine::diagnostic::closest;
use smelt_engine::yaml::PathSeg;
use smelt_engine::{
    parse_options, require_column, str_at, ConfigureContext, EngineError, OptionError, Processed, Result, SchemaError,
    StageConfig, Transform, TransformConfig,
};

use self::keep::Predicate;
use crate::langid::fasttext::{Model, Prediction, Scratch};

/// The drop reason of documents `keep` does not hold for.
pub const REASON: &str = "score_not_kept";

/// The drop reason of documents an inference server gave no answer for (`http.on_error: drop`).
pub const UNSCORED: &str = "unscored";

/// fastText's label prefix; `labels` may be given with or without it.
const LABEL_PREFIX: &str = "__label__";

/// The label index written for a document the model predicts nothing for.
const NO_LABEL: u32 = u32::MAX;

/// Where the classifier runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A fastText supervised model (`.bin` or `.ftz`), run in smelt.
    #[default]
    Fasttext,
    /// A classifier behind an inference server (`http:`): text-embeddings-inference's
    /// `/predict`, or OpenAI-compatible embeddings and a linear head.
    Http,
}

/// What each document weighs in the percentile buckets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Weight {
    /// Its tokens: the words fastText reads (runs of bytes between spaces, tabs, newlines, ...).
    #[default]
    Tokens,
    /// One per document.
    Documents,
}

/// `buckets:` of `classify`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BucketsConfig {
    /// The score column bucketed; the bucket goes to `<column>_bucket`.
    pub column: String,
    /// Number of buckets: 0 holds the lowest scores, `count - 1` the highest.
    pub count: u32,
    /// `tokens` (default) or `documents`: what a bucket's share is counted in.
    #[serde(default)]
    pub weight: Weight,
}

fn default_text() -> String {
    "text".into()
}

fn yes() -> bool {
    true
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_yes(b: &bool) -> bool {
    *b
}

/// Options of `classify`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClassifyConfig {
    /// Where the classifier runs: `fasttext` (in smelt, default) or `http` (an inference server, `http:`).
    #[serde(default)]
    pub backend: Backend,
    /// `fasttext`: a supervised model (`.bin` or `.ftz`), a path relative to the
    /// pipeline file or an object-store URL (`s3://`, `https://`, `file://`).
    /// `http`: the model's name, sent with `embeddings` requests and part of the cache's identity.
    #[serde(default)]
    pub model: String,
    /// `http`: the inference server and its guard rails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<http::HttpOptions>,
    /// Labels whose probabilities are written, as `score_<label>` (with or
    /// without `__label__`); empty: the best label, as `label` and `score`.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Keep only documents for which this holds: comparisons of score columns
    /// with numbers, `and`, `or`, parentheses. Without it nothing is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<String>,
    /// The column classified (default `text`).
    #[serde(default = "default_text")]
    pub text: String,
    /// Token-weighted percentile buckets of a score column over the whole run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets: Option<BucketsConfig>,
    /// `fasttext`: compute every probability with fastText's own float
    /// operations, bit for bit equal to Python fastText's (default). `false`:
    /// each input row projected onto the labels once, at load
    /// ([`Model::projected`]): several times faster on dense models with few
    /// labels; the scores are those of exact arithmetic and differ from
    /// fastText's by its f32 rounding (about 1e-6).
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub exact: bool,
    /// `keep` parsed, with columns as slots of [`ClassifyConfig::score_columns`].
    #[serde(skip)]
    predicate: Option<Predicate>,
    /// The model loaded and its labels found, or the error at an option's path.
    #[serde(skip)]
    prepared: Arc<OnceLock<std::result::Result<Arc<Prepared>, SchemaError>>>,
    /// `http`: the answer cache's directory (`<data dir>/cache/classify`).
    #[serde(skip)]
    cache_root: Option<std::path::PathBuf>,
}

/// The loaded model (or server client) and what the stage needs of it.
#[derive(Debug)]
pub(crate) struct Prepared {
    engine: Engine,
    /// xxh3-64 of the model file, for lineage (empty for `http`).
    hash: String,
}

/// What scores the texts.
#[derive(Debug)]
enum Engine {
    Fasttext {
        model: Arc<Model>,
        /// Model label index of each of `labels` (empty: the best label is written).
        wanted: Vec<usize>,
    },
    Http(Arc<http::HttpClassifier>),
}

fn key(k: &str) -> PathSeg {
    PathSeg::Key(k.into())
}

fn at(path: Vec<PathSeg>, message: String) -> OptionError {
    OptionError { path, message, at_key: false }
}

/// Registry hook (no I/O: the model is read when the schema is asked for).
///
/// # Errors
/// Unknown or invalid options: a `keep` expression that does not parse or
/// names a column the stage does not write (with the character position),
/// repeated labels, `buckets` on a column the stage does not write, or 0 buckets.
pub fn configure(options: serde_json::Value, ctx: &ConfigureContext) -> Result<StageConfig, OptionError> {
    let mut c: ClassifyConfig = parse_options(options)?;
    match (c.backend, &mut c.http) {
        (Backend::Fasttext, None) => {
            if c.model.trim().is_empty() {
                return Err(at(vec![key("model")], "`model` is empty: name a fastText .bin or .ftz file".into()));
            }
            if !c.model.contains("://") {
                c.model = ctx.resolve(Path::new(&c.model)).display().to_string();
            }
        }
        (Backend::Fasttext, Some(_)) => {
            return Err(at(
                vec![key("http")],
                "`http` is for `backend: http`; the fasttext backend runs in smelt".into(),
            ))
        }
        (Backend::Http, None) => {
            return Err(at(
                vec![key("backend")],
                "backend `http` needs `http: {url: ...}` (the inference server)".into(),
            ))
        }
        (Backend::Http, Some(h)) => {
            if let Some((option, message)) = h.check() {
                return Err(at(vec![key("http"), key(option)], message));
            }
            if let Some(head) = &h.head {
                if !head.contains("://") {
                    h.head = Some(ctx.resolve(Path::new(head)).display().to_string());
                }
            }
            if !c.exact {
                return Err(at(
                    vec![key("exact")],
                    "`exact: false` is for the fasttext backend: the server computes the scores".into(),
                ));
            }
            if c.buckets.is_some() {
                return Err(at(
                    vec![key("buckets")],
                    "`buckets` needs backend `fasttext` for now: bucket the scores in a later run or a `sql` stage"
                        .into(),
                ));
            }
            c.cache_root = Some(ctx.data_dir.join("cache").join("classify"));
        }
    }
    for (i, l) in c.labels.iter().enumerate() {
        let name = label_name(l);
        if name.is_empty() {
            return Err(at(vec![key("labels"), PathSeg::Index(i)], "a label is empty".into()));
        }
        if c.labels[..i].iter().any(|other| label_name(other) == name) {
            return Err(at(vec![key("labels"), PathSeg::Index(i)], format!("label `{name}` is listed twice")));
        }
    }
    let columns = c.score_columns();
    if let Some(text) = &c.keep {
        let p = Predicate::parse(text, &columns).map_err(|e| {
            let help = e.help.as_ref().map(|h| format!("; {h}")).unwrap_or_default();
            at(vec![key("keep")], format!("`{text}` {e}{help}"))
        })?;
        c.predicate = Some(p);
    }
    if let Some(b) = &c.buckets {
        if !columns.contains(&b.column) {
            let hint = closest(&b.column, columns.iter().map(String::as_str))
                .map(|m| format!("did you mean `{m}`? "))
                .unwrap_or_default();
            return Err(at(
                vec![key("buckets"), key("column")],
                format!(
                    "`{}` is not a score column of this stage; {hint}the score columns are: {}",
                    b.column,
                    columns.join(", ")
                ),
            ));
        }
        if b.count == 0 {
            return Err(at(vec![key("buckets"), key("count")], "must be at least 1".into()));
        }
    }
    let buckets = c.buckets.is_some();
    let c = Arc::new(c);
    Ok(if buckets { StageConfig::Barrier(c) } else { StageConfig::Transform(c) })
}

/// A label as the model names it: without `__label__`.
fn label_name(label: &str) -> &str {
    label.strip_prefix(LABEL_PREFIX).unwrap_or(label)
}

impl ClassifyConfig {
    /// The score columns, in slot order: `score_<label>` per label, or `score`.
    pub fn score_columns(&self) -> Vec<String> {
        if self.labels.is_empty() {
            vec!["score".into()]
        } else {
            self.labels.iter().map(|l| format!("score_{}", label_name(l))).collect()
        }
    }

    /// Every column the stage writes (replacing input columns of the same name).
    fn written(&self) -> Vec<String> {
        let mut names = if self.labels.is_empty() { vec!["label".to_string()] } else { Vec::new() };
        names.extend(self.score_columns());
        if let Some(b) = &self.buckets {
            names.push(bucket_column(b));
        }
        names
    }

    /// The model, loaded once per process.
    pub(crate) fn prepared(&self) -> std::result::Result<Arc<Prepared>, SchemaError> {
        self.prepared.get_or_init(|| self.prepare().map(Arc::new)).clone()
    }

    fn prepare(&self) -> std::result::Result<Prepared, SchemaError> {
        if let Some(h) = &self.http {
            let root = self.cache_root.as_deref();
            let client = http::HttpClassifier::new(h, &self.model, h.head.clone(), root)
                .map_err(|e| SchemaError::at_option(vec![key("http")], e, None))?;
            return Ok(Prepared { engine: Engine::Http(Arc::new(client)), hash: String::new() });
        }
        let bytes = crate::fetch::read_location(&self.model, "fastText model")
            .map_err(|e| SchemaError::at_option(vec![key("model")], e, None))?;
        let read = if self.exact { Model::from_bytes } else { Model::from_bytes_projected };
        let model =
            read(&bytes, &self.model).map_err(|e| SchemaError::at_option(vec![key("model")], e.to_string(), None))?;
        let mut wanted = Vec::with_capacity(self.labels.len());
        for (i, l) in self.labels.iter().enumerate() {
            let name = label_name(l);
            let Some(index) = model.label_index(name) else {
                let labels = model.labels();
                let help = match closest(name, labels.iter().map(String::as_str)) {
                    Some(c) => format!("did you mean `{c}`? Its labels are: {}", labels.join(", ")),
                    None => format!("its labels are: {}", labels.join(", ")),
                };
                return Err(SchemaError::at_option(
                    vec![key("labels"), PathSeg::Index(i)],
                    format!("model {} has no label `{name}`", self.model),
                    Some(help),
                ));
            };
            wanted.push(index);
        }
        let hash = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes));
        Ok(Prepared { engine: Engine::Fasttext { model: Arc::new(model), wanted }, hash })
    }

    /// The output schema: the input's columns but those the stage writes, then its columns.
    fn schema_for(&self, input: &SchemaRef) -> SchemaRef {
        let written = self.written();
        let mut fields: Vec<Field> =
            input.fields().iter().filter(|f| !written.contains(f.name())).map(|f| f.as_ref().clone()).collect();
        if self.labels.is_empty() {
            fields.push(Field::new("label", DataType::Utf8, true));
        }
        // A server may give no answer: its scores are null then.
        let nullable = self.backend == Backend::Http;
        for name in self.score_columns() {
            fields.push(Field::new(name, DataType::Float64, nullable));
        }
        if let Some(b) = &self.buckets {
            fields.push(Field::new(bucket_column(b), DataType::UInt32, false));
        }
        Arc::new(Schema::new_with_metadata(fields, input.metadata().clone()))
    }

    fn check_input(&self, input: &SchemaRef) -> std::result::Result<SchemaRef, SchemaError> {
        require_column(input, &self.text, &[DataType::LargeUtf8, DataType::Utf8, DataType::Utf8View])?;
        self.prepared()?;
        Ok(self.schema_for(input))
    }

    fn resolved_value(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(Ok(p)) = self.prepared.get() {
            if !p.hash.is_empty() {
                v["model_xxh3"] = serde_json::Value::String(p.hash.clone());
            }
        }
        v
    }

    /// The scorer and column writer of one split.
    fn runtime(&self, input: &SchemaRef) -> Result<(Scorer, Writer)> {
        let prepared = self.prepared().map_err(|e| EngineError::User(e.0))?;
        let labels: Vec<String> = self.labels.iter().map(|l| label_name(l).to_string()).collect();
        let scorer = Scorer::new(prepared.clone(), self.score_columns().len(), labels);
        let writer = Writer {
            output: self.schema_for(input),
            written: self.written(),
            text: self.text.clone(),
            model: match &prepared.engine {
                Engine::Fasttext { model, .. } => Some(model.clone()),
                Engine::Http(_) => None,
            },
            top: self.labels.is_empty(),
            slots: self.score_columns().len(),
            predicate: self.predicate.clone(),
            drop_unscored: self.http.as_ref().is_some_and(|h| h.on_error == http::OnError::Drop),
        };
        Ok((scorer, writer))
    }
}

/// The column a bucket is written to.
fn bucket_column(b: &BucketsConfig) -> String {
    format!("{}_bucket", b.column)
}

/// The number of words fastText reads in `text`: runs of bytes between its separators.
pub fn words(text: &str) -> u64 {
    let mut n = 0;
    let mut in_word = false;
    for &c in text.as_bytes() {
        let sep = matches!(c, b' ' | b'\n' | b'\r' | b'\t' | 0x0b | 0x0c | 0);
        n += u64::from(!sep && !in_word);
        in_word = !sep;
    }
    n
}

/// Scores of one batch: per row the best label and one value per score column.
#[derive(Debug, Default)]
pub(crate) struct Scored {
    /// Model label index of each row's best label ([`NO_LABEL`]: none; `fasttext`).
    labels: Vec<u32>,
    /// The best label's name per row (`http`; empty for `fasttext`).
    names: Vec<Option<String>>,
    /// `slots` values per row; NaN for a row the server gave no answer for.
    values: Vec<f32>,
}

/// Runs the model (or asks the server) over texts.
pub(crate) struct Scorer {
    prepared: Arc<Prepared>,
    slots: usize,
    /// `labels` without `__label__` (the server's label names for `http`).
    labels: Vec<String>,
    scratch: Scratch,
    predictions: Vec<Prediction>,
}

impl Scorer {
    fn new(prepared: Arc<Prepared>, slots: usize, labels: Vec<String>) -> Scorer {
        Scorer { prepared, slots, labels, scratch: Scratch::default(), predictions: Vec::new() }
    }

    /// Score columns.
    pub(crate) fn slots(&self) -> usize {
        self.slots
    }

    /// Appends the scores of `text` to `out`: what Python fastText's
    /// `predict(text.replace("\n", " "), k=-1)` returns, as float32.
    fn score_fasttext(&mut self, model: &Model, wanted: &[usize], text: &str, out: &mut Scored) {
        model.predict(text, 0.0, &mut self.scratch, &mut self.predictions);
        let best = self.predictions.first();
        out.labels.push(best.map_or(NO_LABEL, |b| b.label as u32));
        if wanted.is_empty() {
            out.values.push(best.map_or(0.0, |b| b.score));
        } else {
            for &w in wanted {
                out.values.push(self.predictions.iter().find(|x| x.label == w).map_or(0.0, |x| x.score));
            }
        }
        debug_assert_eq!(out.values.len(), out.labels.len() * self.slots);
    }

    /// Scores every row of `batch` (a null text scores as empty text).
    ///
    /// # Errors
    /// A server that answers without a label the stage asks for.
    pub(crate) fn score_batch(&mut self, batch: &RecordBatch, text: &str) -> Result<Scored> {
        let mut out = Scored::default();
        let col = batch.column_by_name(text).expect("schema checked");
        let prepared = self.prepared.clone();
        match &prepared.engine {
            Engine::Fasttext { model, wanted } => {
                for i in 0..batch.num_rows() {
                    self.score_fasttext(model, wanted, str_at(col, i).unwrap_or(""), &mut out);
                }
            }
            Engine::Http(client) => {
                let texts: Vec<&str> = (0..batch.num_rows()).map(|i| str_at(col, i).unwrap_or("")).collect();
                for answer in client.score(&texts) {
                    let Some(answer) = answer else {
                        out.labels.push(NO_LABEL);
                        out.names.push(None);
                        out.values.extend(std::iter::repeat_n(f32::NAN, self.slots));
                        continue;
                    };
                    let best = answer.iter().max_by(|a, b| a.1.total_cmp(&b.1));
                    out.labels.push(NO_LABEL);
                    out.names.push(best.map(|b| label_name(&b.0).to_string()));
                    if self.labels.is_empty() {
                        out.values.push(best.map_or(f32::NAN, |b| b.1));
                    }
                    for l in &self.labels {
                        let Some((_, v)) = answer.iter().find(|(name, _)| label_name(name) == l) else {
                            let names: Vec<&str> = answer.iter().map(|(n, _)| label_name(n)).collect();
                            return Err(EngineError::User(format!(
                                "the inference server answered no score for label `{l}`; its labels are: {} (set `labels` to these)",
                                names.join(", ")
                            )));
                        };
                        out.values.push(*v);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The server client's counters (`http` only), taken once.
    fn take_counters(&self) -> BTreeMap<String, u64> {
        match &self.prepared.engine {
            Engine::Http(c) => c.take_counters().into_iter().collect(),
            Engine::Fasttext { .. } => BTreeMap::new(),
        }
    }
}

/// Turns scores into the stage's columns and verdicts.
pub(crate) struct Writer {
    output: SchemaRef,
    written: Vec<String>,
    text: String,
    /// The fastText model, for label names (`None` for `http`, whose answers name their labels).
    model: Option<Arc<Model>>,
    top: bool,
    /// Score columns.
    slots: usize,
    predicate: Option<Predicate>,
    /// Drop rows without scores (`http.on_error: drop`) rather than keep them.
    drop_unscored: bool,
}

impl Writer {
    /// Whether `keep` holds for a row with these scores (always without `keep`).
    fn keeps(&self, values: &[f32], scratch: &mut Vec<f64>) -> bool {
        let Some(p) = &self.predicate else { return true };
        scratch.clear();
        scratch.extend(values.iter().map(|&v| f64::from(v)));
        p.eval(scratch)
    }

    /// `batch` with the stage's columns, and a verdict per row when `keep` is set.
    fn write(&self, batch: RecordBatch, scored: &Scored, buckets: Option<Vec<u32>>) -> Result<Processed> {
        let (rows, slots) = (batch.num_rows(), self.slots);
        let mut cols: Vec<ArrayRef> = batch
            .schema()
            .fields()
            .iter()
            .zip(batch.columns())
            .filter(|(f, _)| !self.written.contains(f.name()))
            .map(|(_, c)| c.clone())
            .collect();
        if self.top {
            let mut labels = StringBuilder::with_capacity(rows, rows * 8);
            if scored.names.is_empty() {
                for &l in &scored.labels {
                    match self.model.as_ref().and_then(|m| m.labels().get(l as usize)) {
                        Some(name) if l != NO_LABEL => labels.append_value(name),
                        _ => labels.append_null(),
                    }
                }
            } else {
                for n in &scored.names {
                    labels.append_option(n.as_deref());
                }
            }
            cols.push(Arc::new(labels.finish()));
        }
        for s in 0..slots {
            let mut b = Float64Builder::with_capacity(rows);
            for r in 0..rows {
                let v = scored.values[r * slots + s];
                if v.is_nan() {
                    b.append_null();
                } else {
                    b.append_value(f64::from(v));
                }
            }
            cols.push(Arc::new(b.finish()));
        }
        if let Some(buckets) = buckets {
            cols.push(Arc::new(UInt32Array::from(buckets)));
        }
        let out = RecordBatch::try_new(self.output.clone(), cols)?;
        let unscored = |r: usize| scored.values[r * slots..(r + 1) * slots].iter().any(|v| v.is_nan());
        if self.predicate.is_none() && !(self.drop_unscored && (0..rows).any(unscored)) {
            return Ok(Processed::Batch(out));
        }
        let mut scratch = Vec::new();
        let verdicts = (0..rows)
            .map(|r| {
                if unscored(r) {
                    return self.drop_unscored.then_some(Cow::Borrowed(UNSCORED));
                }
                let kept = self.keeps(&scored.values[r * slots..(r + 1) * slots], &mut scratch);
                (!kept).then_some(Cow::Borrowed(REASON))
            })
            .collect();
        Ok(Processed::Filtered { batch: out, verdicts })
    }
}

impl TransformConfig for ClassifyConfig {
    fn output_schema(&self, input: &SchemaRef) -> std::result::Result<SchemaRef, SchemaError> {
        self.check_input(input)
    }

    fn resolved(&self) -> serde_json::Value {
        self.resolved_value()
    }

    fn build(&self, input: &SchemaRef) -> Result<Box<dyn Transform>> {
        let (scorer, writer) = self.runtime(input)?;
        Ok(Box::new(Classify { scorer, writer, counters: BTreeMap::new() }))
    }
}

/// The transform (no `buckets`).
struct Classify {
    scorer: Scorer,
    writer: Writer,
    counters: BTreeMap<String, u64>,
}

impl Transform for Classify {
    fn process(&mut self, batch: RecordBatch) -> Result<Processed> {
        let scored = self.scorer.score_batch(&batch, &self.writer.text)?;
        let unscored = scored.values.chunks(self.writer.slots.max(1)).filter(|v| v.iter().any(|x| x.is_nan())).count();
        if unscored > 0 {
            *self.counters.entry("unscored".into()).or_default() += unscored as u64;
        }
        self.writer.write(batch, &scored, None)
    }

    fn take_counters(&mut self) -> BTreeMap<String, u64> {
        let mut out = std::mem::take(&mut self.counters);
        out.extend(self.scorer.take_counters());
        out
    }
}

#[cfg(test)]
mod tests;
