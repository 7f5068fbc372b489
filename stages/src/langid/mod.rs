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
    parse_options, require_column, ConfigureContext, EngineError, OptionError, Processed, Result, SchemaError,
    StageConfig, Transform, TransformConfig,
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
        .get_or_init(|| {
            Model::from_bytes(LID176, "the embedded LID-176 model").map(Arc::new).map_err(|e| e.to_string())
        })
        .clone()
        .map_err(EngineError::Internal)
}

fn default_threshold() -> f64 {
    0.65
}

/// Which language identifier labels the documents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A fastText model (LID-176 unless `model` names another).
    #[default]
    Fasttext,
    /// The `whatlang` crate (70 languages, no model file).
    Whatlang,
}

/// Options of `langid`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LangIdConfig {
    /// `fasttext` (default) or `whatlang`.
    #[serde(default)]
    pub backend: Backend,
    /// A fastText model file (`.bin` or `.ftz`) to use instead of the embedded LID-176
    /// (relative to the pipeline file); its labels lose their `__label__` prefix.
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
pub fn configure(options: serde_json::Value, ctx: &ConfigureContext) -> Result<StageConfig, OptionError> {
    let mut c: LangIdConfig = parse_options(options)?;
    c.model = c.model.map(|m| ctx.resolve(Path::new(&m)).display().to_string());
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
        (Backend::Fasttext, None) => Some(lid176().map_err(|e| at("model", e.to_string()))?.labels().to_vec()),
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
            .chain(
                self.thresholds.keys().map(|l| (vec![PathSeg::Key("thresholds".into()), PathSeg::Key(l.clone())], l)),
            );
        for (path, lang) in named {
            if !labels.iter().any(|l| l == lang) {
                let hint = closest(lang, labels.iter().map(String::as_str))
                    .map(|c| format!("; did you mean `{c}`?"))
                    .unwrap_or_default();
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
            .filter(|f| f.name() != "lang" && f.name() != "lang_score")
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("lang", DataType::Utf8, false));
        fields.push(Field::new("lang_score", DataType::Float64, false));
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
                let wanted = self.languages.iter().filter_map(|l| model.label_index(l)).collect();
                Detector::FastText { model, wanted, scratch: Scratch::default(), predictions: Vec::new() }
            }
            Backend::Whatlang => Detector::Whatlang,
        };
        Ok(Box::new(LangId { config: self.clone(), detector, output }))
    }
}

/// ISO 639-3 codes of whatlang's languages and the two-letter codes LID-176 uses for them.
#[rustfmt::skip]
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
    FastText {
        model: Arc<Model>,
        /// Label index of each of `languages`.
        wanted: Vec<usize>,
        scratch: Scratch,
        predictions: Vec<Prediction>,
    },
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
    /// The best language, its score, and the scores of `languages` (0 when not predicted).
    fn label(&mut self, text: &str, empty: bool) -> (String, f64, Vec<f64>) {
        let wanted = &self.config.languages;
        if empty {
            return (UNKNOWN.to_string(), 0.0, vec![0.0; wanted.len()]);
        }
        match &mut self.detector {
            Detector::FastText { model, wanted, scratch, predictions } => {
                // datatrove's FT176LID: `model.predict(text.replace("\n", " "), k=-1)`; `predict` reads newlines as spaces.
                model.predict(text, 0.0, scratch, predictions);
                let scores = wanted
                    .iter()
                    .map(|&i| predictions.iter().find(|p| p.label == i).map_or(0.0, |p| f64::from(p.score)))
                    .collect();
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
    fn verdict(&self, empty: bool, lang: &str, score: f64, scores: &[f64]) -> Option<Cow<'static, str>> {
        let c = &self.config;
        if c.label_only {
            return None;
        }
        if empty {
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
            let empty = !has_words(t);
            let (lang, score, wanted) = self.label(t, empty);
            verdicts.push(self.verdict(empty, &lang, score, &wanted));
            languages.append_value(&lang);
            scores.append_value(score);
        }
        let mut cols: Vec<ArrayRef> = batch
            .schema()
            .fields()
            .iter()
            .zip(batch.columns())
            .filter(|(f, _)| f.name() != "lang" && f.name() != "lang_score")
            .map(|(_, c)| c.clone())
            .collect();
        cols.push(Arc::new(languages.finish()));
        cols.push(Arc::new(scores.finish()));
        let out = RecordBatch::try_new(self.output.clone(), cols)?;
        Ok(Processed::Filtered { batch: out, verdicts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, LargeStringArray, StringArray};
    use smelt_engine::stage::doc;

    fn run(options: serde_json::Value, texts: &[&str]) -> (Vec<String>, Vec<f64>, Vec<Option<Cow<'static, str>>>) {
        let StageConfig::Transform(cfg) = configure(options, &ConfigureContext::working_dir()).unwrap() else {
            panic!("a transform")
        };
        let schema = Arc::new(Schema::new(vec![doc::id(), doc::text()]));
        let ids: Vec<String> = (0..texts.len()).map(|i| i.to_string()).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(StringArray::from(ids)), Arc::new(LargeStringArray::from(texts.to_vec()))],
        )
        .unwrap();
        let Processed::Filtered { batch, verdicts } = cfg.build(&schema).unwrap().process(batch).unwrap() else {
            panic!("a filter")
        };
        let langs = batch.column_by_name("lang").unwrap().as_string::<i32>();
        let scores = batch.column_by_name("lang_score").unwrap().as_any().downcast_ref::<Float64Array>().unwrap();
        (langs.iter().map(|l| l.unwrap().to_string()).collect(), scores.values().to_vec(), verdicts)
    }

    const EN: &str = "The committee will publish its final report on the new railway line next week.";
    const DE: &str =
        "Der Ausschuss wird seinen Abschlussbericht über die neue Bahnstrecke nächste Woche veröffentlichen.";
    const FR: &str =
        "Le comité publiera la semaine prochaine son rapport final sur la nouvelle ligne de chemin de fer.";

    #[test]
    fn fixture_texts_get_python_fasttext_labels_and_scores() {
        let model = lid176().unwrap();
        let fixture = include_str!("../../tests/fixtures/langid/texts.jsonl");
        let (mut scratch, mut out) = (Scratch::default(), Vec::new());
        let mut n = 0;
        for line in fixture.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            // Python was given the text with newlines as spaces; `predict` reads them so itself.
            let text = v["text"].as_str().unwrap();
            model.predict(text, 0.0, &mut scratch, &mut out);
            let got: Vec<(String, f32)> =
                out.iter().take(3).map(|p| (model.labels()[p.label].clone(), p.score)).collect();
            let want: Vec<(String, f32)> = v["fasttext"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_f64().unwrap() as f32))
                .collect();
            assert_eq!(got, want, "{}", v["id"]);
            n += 1;
        }
        assert_eq!(n, 35);
    }

    #[test]
    fn labels_and_keeps_the_languages_asked_for() {
        let texts = [EN, DE, FR, "ok", "", " \n\t "];
        let (langs, scores, verdicts) = run(serde_json::json!({"languages": ["en", "de"]}), &texts);
        assert_eq!(langs, ["en", "de", "fr", "en", "unknown", "unknown"]);
        assert!(scores[..3].iter().all(|&s| s > 0.65), "{scores:?}");
        assert!(scores[3] < 0.65 && scores[4] == 0.0 && scores[5] == 0.0, "{scores:?}");
        let reason = |r: &'static str| Some(Cow::Borrowed(r));
        assert_eq!(
            verdicts,
            vec![
                None,
                None,
                reason("language_not_kept"),
                reason("language_score_below_threshold"),
                reason("empty_text"),
                reason("empty_text")
            ]
        );

        // Without `languages` every confident document is kept; a per-language threshold applies to its language.
        let (_, _, verdicts) = run(serde_json::json!({"thresholds": {"fr": 0.9999}}), &texts[..4]);
        assert_eq!(
            verdicts,
            vec![None, None, reason("language_score_below_threshold"), reason("language_score_below_threshold")]
        );
        let (_, _, verdicts) = run(serde_json::json!({"threshold": 0.5, "thresholds": {"en": 0.0}}), &texts[..4]);
        assert_eq!(verdicts, vec![None, None, None, None]);

        // label_only drops nothing, and labels the same.
        let (labels, s2, verdicts) = run(serde_json::json!({"label_only": true, "languages": ["de"]}), &texts);
        assert_eq!((labels, s2), (langs, scores));
        assert!(verdicts.iter().all(Option::is_none));
    }

    #[test]
    fn newlines_are_spaces_as_in_datatrove() {
        let (_, a, _) = run(
            serde_json::json!({"label_only": true}),
            &["Hello\nworld, how are\nyou today?", "Hello world, how are you today?"],
        );
        assert_eq!(a[0], a[1]);
    }

    #[test]
    fn huge_and_odd_text_does_not_panic() {
        let huge = DE.repeat(200_000); // ~20 MB
        let odd =
            "\u{0301}\u{200d}\u{feff}\u{fffd} \0\u{10ffff} 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \u{1f600}\u{1f3f3}\u{fe0f}\u{200d}\u{1f308} </s>";
        let (langs, scores, _) =
            run(serde_json::json!({"label_only": true}), &[&huge, odd, "12345 67890", "__label__en"]);
        assert_eq!(langs[0], "de");
        assert!(scores[0] > 0.9);
        assert!(scores.iter().all(|s| s.is_finite() && *s <= 1.001), "{scores:?}");
        let (langs, _, verdicts) = run(serde_json::json!({"backend": "whatlang"}), &[&huge, odd, "12345 67890"]);
        assert_eq!(langs[0], "de");
        assert_eq!(langs[2], "unknown");
        assert_eq!(verdicts[2], Some(Cow::Borrowed("language_score_below_threshold")));
    }

    #[test]
    fn whatlang_uses_the_same_codes() {
        let (langs, scores, verdicts) =
            run(serde_json::json!({"backend": "whatlang", "languages": ["en", "de"], "threshold": 0.0}), &[EN, DE, FR]);
        assert_eq!(langs, ["en", "de", "fr"]);
        assert!(scores.iter().all(|&s| s > 0.0 && s <= 1.0));
        assert_eq!(verdicts, vec![None, None, Some(Cow::Borrowed("language_not_kept"))]);
        let lid = lid176().unwrap();
        for lang in whatlang::Lang::all() {
            let code = whatlang_code(*lang);
            assert_eq!(code.len(), 2, "{lang:?}");
            // Every whatlang language but Akan, Shona and Zulu is one of LID-176's labels.
            assert!(lid.label_index(code).is_some() || ["ak", "sn", "zu"].contains(&code), "{code}");
        }
        assert_eq!(WHATLANG_CODES.len(), whatlang::Lang::all().len());
    }

    #[test]
    fn bad_options_are_reported() {
        let err = |o: serde_json::Value| configure(o, &ConfigureContext::working_dir()).unwrap_err();
        let e = err(serde_json::json!({"languages": ["en", "english"]}));
        assert_eq!(e.path, vec![PathSeg::Key("languages".into()), PathSeg::Index(1)]);
        assert!(e.message.contains("no language `english`"), "{}", e.message);
        let e = err(serde_json::json!({"thresholds": {"dee": 0.5}}));
        assert!(e.message.contains("did you mean `de`"), "{}", e.message);
        let e = err(serde_json::json!({"backend": "whatlang", "languages": ["ceb"]}));
        assert!(e.message.contains("whatlang backend has no language `ceb`"), "{}", e.message);
        assert!(err(serde_json::json!({"threshold": 1.5})).message.contains("between 0 and 1"));
        assert!(err(serde_json::json!({"backend": "whatlang", "model": "x.bin"})).message.contains("`fasttext` only"));
        assert!(err(serde_json::json!({"backend": "cld3"})).message.contains("unknown variant"));
        assert!(err(serde_json::json!({"treshold": 0.5})).at_key);
    }

    #[test]
    fn a_model_path_is_loaded_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("broken.ftz");
        std::fs::write(&bad, b"\xba\x16\x4f\x2f\x0c\x00\x00\x00 not really").unwrap();
        let schema = Arc::new(Schema::new(vec![doc::id(), doc::text()]));
        let build = |path: &Path, langs: &[&str]| {
            let StageConfig::Transform(cfg) = configure(
                serde_json::json!({"model": path.to_str().unwrap(), "languages": langs}),
                &ConfigureContext::working_dir(),
            )
            .unwrap() else {
                panic!("a transform")
            };
            cfg.build(&schema).map(|_| ())
        };
        let e = build(&bad, &[]).unwrap_err().to_string();
        assert!(e.contains("broken.ftz") && e.contains("not a usable fastText model"), "{e}");
        let e = build(&dir.path().join("missing.bin"), &[]).unwrap_err().to_string();
        assert!(e.contains("missing.bin"), "{e}");
        let good = dir.path().join("lid.176.ftz");
        std::fs::write(&good, LID176).unwrap();
        build(&good, &["en"]).unwrap();
        let e = build(&good, &["xx"]).unwrap_err().to_string();
        assert!(e.contains("no language `xx`") && e.contains("lid.176.ftz"), "{e}");
    }

    #[test]
    fn replaces_existing_language_columns() {
        let cfg: LangIdConfig = serde_json::from_value(serde_json::json!({})).unwrap();
        let input = Arc::new(Schema::new(vec![
            doc::id(),
            Field::new("lang", DataType::Utf8, true),
            doc::text(),
            Field::new("lang_score", DataType::Float32, true),
        ]));
        let out = cfg.output_schema(&input).unwrap();
        let names: Vec<_> = out.fields().iter().map(|f| (f.name().as_str(), f.data_type().clone())).collect();
        assert_eq!(
            names,
            [
                ("id", DataType::Utf8),
                ("text", DataType::LargeUtf8),
                ("lang", DataType::Utf8),
                ("lang_score", DataType::Float64)
            ]
        );
        let e = cfg.output_schema(&Arc::new(Schema::new(vec![doc::id()]))).unwrap_err().0;
        assert!(e.contains("needs column `text`"), "{e}");
    }
}
