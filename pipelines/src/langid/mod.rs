//! `langid` transform: labels each document with its language and a score,
//! and keeps the languages asked for, the way datatrove's `LanguageFilter`
//! does (FineWeb, FineWeb-2). The default backend is fastText's LID-176
//! model (embedded, so a pipeline needs no download) read and run by our own
//! reader ([`fasttext`]), which gives the same labels and scores as Python
//! fastText; `whatlang` is a model-free alternative.
//!
//! ```text
//! text ──newlines as spaces──► fastText predict (every label ≥ 1e-5) ──► language, language_score (best label)
//!      └─────────────────────► whatlang detect ─ISO 639-3 → 639-1──────┘
//! languages / threshold / thresholds ──► kept, or dropped: language_not_kept,
//!                                        language_score_below_threshold, empty_text
//! ```

pub mod fasttext;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use arrow::array::{ArrayRef, AsArray, Float64Builder, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use smelt_engine::diagnostic::closest;
use smelt_engine::yaml::PathSeg;
use smelt_engine::{
    parse_options, require_column, EngineError, OptionError, Processed, Result, SchemaError, StageConfig, Transform,
    TransformConfig,
};

use self::fasttext::{Model, Prediction, Scratch};

/// fastText LID-176 (quantized), CC BY-SA 3.0: see models/README.md.
static LID176: &[u8] = include_bytes!("../../../models/lid.176.ftz");

/// The label given to documents no backend can label (empty text, or no script whatlang knows).
pub const UNKNOWN: &str = "unknown";

/// The embedded LID-176 model, parsed once per process.
///
/// # Errors
/// Only if the embedded bytes were corrupted at build time (a bug).
pub fn lid176() -> Result<Arc<Model>> {
    static MODEL: OnceLock<std::result::Result<Arc<Model>, String>> = OnceLock::new();
    MODEL
        .get_or_init(|| Model::from_bytes(LID176, "the embedded LID-176 model").map(Arc::new).map_err(|e| e.to_string()))
        .clone()
        .map_err(EngineError::Internal)
}

fn default_threshold() -> f64 {
    0.65
}

/// Which language identifier labels the documents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A fastText model (LID-176 unless `model` names another).
    #[default]
    Fasttext,
    /// The `whatlang` crate (69 languages, no model file).
    Whatlang,
}

/// Options of `langid`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LangIdConfig {
    /// `fasttext` (default) or `whatlang`.
    #[serde(default)]
    pub backend: Backend,
    /// A fastText model file (`.bin` or `.ftz`) to use instead of the embedded LID-176
    /// (relative to the working directory); its labels lose their `__label__` prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Languages kept (model labels, e.g. `en`, `de`); empty keeps every language.
    #[serde(default)]
    pub languages: Vec<String>,
    /// A document is kept when its score is above this (default 0.65, datatrove's `language_threshold`).
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// Per-language thresholds that replace `threshold` for those languages (FineWeb-2 style).
    #[serde(default)]
    pub thresholds: BTreeMap<String, f64>,
    /// Only add the columns; drop nothing (datatrove's `label_only`).
    #[serde(default)]
    pub label_only: bool,
    /// The loaded model, shared by every split.
    #[serde(skip)]
    loaded: OnceLock<Arc<Model>>,
}

/// Registry hook.
///
/// # Errors
/// Unknown or invalid options; with the embedded model or whatlang, languages it cannot produce.
pub fn configure(options: serde_json::Value) -> Result<StageConfig, OptionError> {
    let c: LangIdConfig = parse_options(options)?;
    let at = |key: &str, message: String| OptionError { path: vec![PathSeg::Key(key.into())], message, at_key: false };
    if c.backend == Backend::Whatlang && c.model.is_some() {
        return Err(at("model", "`model` applies to backend `fasttext` only".into()));
    }
    if !(0.0..=1.0).contains(&c.threshold) {
        return Err(at("threshold", format!("threshold {} is not between 0 and 1", c.threshold)));
    }
    for (lang, t) in &c.thresholds {
        if !(0.0..=1.0).contains(t) {
            return Err(OptionError {
                path: vec![PathSeg::Key("thresholds".into()), PathSeg::Key(lang.clone())],
                message: format!("threshold {t} is not between 0 and 1"),
                at_key: false,
            });
        }
    }
    // The labels are known without I/O unless `model` names a file; that one is checked at build.
    let labels: Option<Vec<String>> = match (c.backend, &c.model) {
        (Backend::Whatlang, _) => Some(WHATLANG_CODES.iter().map(|(_, code)| code.to_string()).collect()),
        (Backend::Fasttext, None) => {
            Some(lid176().map_err(|e| at("model", e.to_string()))?.labels().to_vec())
        }
        (Backend::Fasttext, Some(_)) => None,
    };
    if let Some(labels) = labels {
        c.check_labels(&labels).map_err(|(path, message)| OptionError { path, message, at_key: false })?;
    }
    Ok(StageConfig::Transform(Arc::new(c)))
}

impl LangIdConfig {
    /// Checks that every language named in `languages` and `thresholds` is one the backend can produce.
    fn check_labels(&self, labels: &[String]) -> std::result::Result<(), (Vec<PathSeg>, String)> {
        let named = self
            .languages
            .iter()
            .enumerate()
            .map(|(i, l)| (vec![PathSeg::Key("languages".into()), PathSeg::Index(i)], l))
            .chain(self.thresholds.keys().map(|l| (vec![PathSeg::Key("thresholds".into()), PathSeg::Key(l.clone())], l)));
        for (path, lang) in named {
            if !labels.iter().any(|l| l == lang) {
                let hint = closest(lang, labels.iter().map(String::as_str)).map(|c| format!("; did you mean `{c}`?")).unwrap_or_default();
                return Err((path, format!("the {} backend has no language `{lang}`{hint}", self.backend_name())));
            }
        }
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Fasttext => "fasttext",
            Backend::Whatlang => "whatlang",
        }
    }

    fn threshold_of(&self, lang: &str) -> f64 {
        self.thresholds.get(lang).copied().unwrap_or(self.threshold)
    }

    fn model(&self) -> Result<Arc<Model>> {
        if let Some(m) = self.loaded.get() {
            return Ok(m.clone());
        }
        let model = match &self.model {
            None => lid176()?,
            Some(path) => Arc::new(Model::load(Path::new(path)).map_err(|e| EngineError::User(e.to_string()))?),
        };
        let _ = self.loaded.set(model.clone());
        Ok(model)
    }
}

impl TransformConfig for LangIdConfig {
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, SchemaError> {
        require_column(input, "text", &[DataType::LargeUtf8, DataType::Utf8])?;
        let mut fields: Vec<Field> = input
            .fields()
            .iter()
            .filter(|f| f.name() != "language" && f.name() != "language_score")
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("language", DataType::Utf8, false));
        fields.push(Field::new("language_score", DataType::Float64, false));
        Ok(Arc::new(Schema::new(fields)))
    }

    fn resolved(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn build(&self, input: &SchemaRef) -> Result<Box<dyn Transform>> {
        let output = self.output_schema(input).map_err(|e| EngineError::Internal(e.0))?;
        let detector = match self.backend {
            Backend::Fasttext => {
                let model = self.model()?;
                self.check_labels(model.labels()).map_err(|(_, message)| {
                    EngineError::User(format!("{message} (model {})", self.model.as_deref().unwrap_or("LID-176")))
                })?;
                Detector::FastText { model, scratch: Scratch::default(), predictions: Vec::new(), line: String::new() }
            }
            Backend::Whatlang => Detector::Whatlang,
        };
        Ok(Box::new(LangId { config: self.clone(), detector, output }))
    }
}

/// ISO 639-3 codes of whatlang's languages and the two-letter codes LID-176 uses for them.
pub const WHATLANG_CODES: &[(&str, &str)] = &[
    ("afr", "af"), ("aka", "ak"), ("amh", "am"), ("ara", "ar"), ("aze", "az"), ("bel", "be"), ("ben", "bn"),
    ("bul", "bg"), ("cat", "ca"), ("ces", "cs"), ("cmn", "zh"), ("cym", "cy"), ("dan", "da"), ("deu", "de"),
    ("ell", "el"), ("eng", "en"), ("epo", "eo"), ("est", "et"), ("fin", "fi"), ("fra", "fr"), ("guj", "gu"),
    ("heb", "he"), ("hin", "hi"), ("hrv", "hr"), ("hun", "hu"), ("hye", "hy"), ("ind", "id"), ("ita", "it"),
    ("jav", "jv"), ("jpn", "ja"), ("kan", "kn"), ("kat", "ka"), ("khm", "km"), ("kor", "ko"), ("lat", "la"),
    ("lav", "lv"), ("lit", "lt"), ("mal", "ml"), ("mar", "mr"), ("mkd", "mk"), ("mya", "my"), ("nep", "ne"),
    ("nld", "nl"), ("nob", "no"), ("ori", "or"), ("pan", "pa"), ("pes", "fa"), ("pol", "pl"), ("por", "pt"),
    ("ron", "ro"), ("rus", "ru"), ("sin", "si"), ("slk", "sk"), ("slv", "sl"), ("sna", "sn"), ("spa", "es"),
    ("srp", "sr"), ("swe", "sv"), ("tam", "ta"), ("tel", "te"), ("tgl", "tl"), ("tha", "th"), ("tuk", "tk"),
    ("tur", "tr"), ("ukr", "uk"), ("urd", "ur"), ("uzb", "uz"), ("vie", "vi"), ("yid", "yi"), ("zul", "zu"),
];

/// The two-letter code of a whatlang language (its ISO 639-3 code if it had none).
pub fn whatlang_code(lang: whatlang::Lang) -> &'static str {
    let code = lang.code();
    WHATLANG_CODES.iter().find(|(three, _)| *three == code).map_or(code, |(_, two)| two)
}

enum Detector {
    FastText { model: Arc<Model>, scratch: Scratch, predictions: Vec<Prediction>, line: String },
    Whatlang,
}

struct LangId {
    config: LangIdConfig,
    detector: Detector,
    output: SchemaRef,
}

/// fastText's word separators: text made only of them has no word to label.
fn has_words(text: &str) -> bool {
    text.bytes().any(|c| !matches!(c, b' ' | b'\n' | b'\r' | b'\t' | 0x0b | 0x0c | 0))
}

impl LangId {
    /// The best language, its score, and the score of `lang` (0 when not predicted).
    fn label(&mut self, text: &str) -> (String, f64, Vec<f64>) {
        let wanted = &self.config.languages;
        if !has_words(text) {
            return (UNKNOWN.to_string(), 0.0, vec![0.0; wanted.len()]);
        }
        match &mut self.detector {
            Detector::FastText { model, scratch, predictions, line } => {
                // datatrove's FT176LID: `model.predict(text.replace("\n", " "), k=-1)`.
                let text = if memchr::memchr(b'\n', text.as_bytes()).is_some() {
                    line.clear();
                    line.extend(text.chars().map(|c| if c == '\n' { ' ' } else { c }));
                    line.as_str()
                } else {
                    text
                };
                model.predict(text, 0.0, scratch, predictions);
                let score_of = |lang: &str| {
                    model.label_index(lang).and_then(|i| predictions.iter().find(|p| p.label == i)).map_or(0.0, |p| f64::from(p.score))
                };
                let scores = wanted.iter().map(|l| score_of(l)).collect();
                match predictions.first() {
                    Some(best) => (model.labels()[best.label].clone(), f64::from(best.score), scores),
                    None => (UNKNOWN.to_string(), 0.0, scores),
                }
            }
            Detector::Whatlang => match whatlang::detect(text) {
                Some(info) => {
                    let code = whatlang_code(info.lang());
                    let scores = wanted.iter().map(|l| if l == code { info.confidence() } else { 0.0 }).collect();
                    (code.to_string(), info.confidence(), scores)
                }
                None => (UNKNOWN.to_string(), 0.0, vec![0.0; wanted.len()]),
            },
        }
    }

    /// datatrove's rule: with `languages`, keep when any of them scores above its
    /// threshold; without, keep when the best language does.
    fn verdict(&self, text: &str, lang: &str, score: f64, scores: &[f64]) -> Option<Cow<'static, str>> {
        let c = &self.config;
        if c.label_only {
            return None;
        }
        if lang == UNKNOWN && !has_words(text) {
            return Some(Cow::Borrowed("empty_text"));
        }
        if c.languages.is_empty() {
            return (score <= c.threshold_of(lang)).then_some(Cow::Borrowed("language_score_below_threshold"));
        }
        if c.languages.iter().zip(scores).any(|(l, &s)| s > c.threshold_of(l)) {
            return None;
        }
        Some(Cow::Borrowed(if c.languages.iter().any(|l| l == lang) {
            "language_score_below_threshold"
        } else {
            "language_not_kept"
        }))
    }
}

impl Transform for LangId {
    fn process(&mut self, batch: RecordBatch) -> Result<Processed> {
        let text = batch.column_by_name("text").expect("schema checked").clone();
        let mut languages = StringBuilder::with_capacity(batch.num_rows(), batch.num_rows() * 2);
        let mut scores = Float64Builder::with_capacity(batch.num_rows());
        let mut verdicts = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            let t = match text.data_type() {
                DataType::LargeUtf8 => text.as_string::<i64>().value(i),
                _ => text.as_string::<i32>().value(i),
            };
            let (lang, score, wanted) = self.label(t);
            verdicts.push(self.verdict(t, &lang, score, &wanted));
            languages.append_value(&lang);
            scores.append_value(score);
        }
        let mut cols: Vec<ArrayRef> = batch
            .schema()
            .fields()
            .iter()
            .zip(batch.columns())
            .filter(|(f, _)| f.name() != "language" && f.name() != "language_score")
            .map(|(_, c)| c.clone())
            .collect();
        cols.push(Arc::new(languages.finish()));
        cols.push(Arc::new(scores.finish()));
        let out = RecordBatch::try_new(self.output.clone(), cols)?;
        Ok(Processed::Filtered { batch: out, verdicts })
    }
}
