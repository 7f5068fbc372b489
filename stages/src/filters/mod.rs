//! Quality filters with the rules, order of checks, default thresholds and
//! drop reasons of datatrove 0.10.1 (`GopherQualityFilter`,
//! `GopherRepetitionFilter`, `C4QualityFilter`, `FineWebQualityFilter`), so
//! that drop counts compare with FineWeb's.
//!
//! ```text
//! text (+ language) ──words::split_into_words──► words ─┐
//!                   ──lines / paragraphs ───────────────┴─► rule checks ──► keep | drop(reason) | rewrite (c4)
//! ```
//! Each filter is one file; they share the [`FilterStage`] runtime (text and
//! language columns in, verdicts out), the word splitter ([`words`]) and the
//! Python string semantics datatrove relies on (`str.splitlines`,
//! `str.strip`, `len` in code points), kept here.
//!
//! Language: datatrove's filters take it from their `language` argument; here
//! the `language` option is the default, and an input `lang` column (as
//! the `langid` stage writes) decides per row where it is not null.

pub mod c4;
pub mod fineweb;
pub mod gopher_quality;
pub mod gopher_repetition;
mod tables;
pub mod words;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, LargeStringArray, StringArray, StructArray};
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use smelt_engine::str_at;
use smelt_engine::{require_column, Processed, Result, SchemaError, Transform};

use words::Segmenter;

/// What a filter decided for one document.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Keep the document as it is.
    Keep,
    /// Drop it, with datatrove's reason.
    Drop(Cow<'static, str>),
    /// Keep it with this text instead (c4 removes lines).
    Rewrite(String),
}

/// One document-level filter.
pub trait DocFilter: Send {
    /// Runs the rules on one text, split as `segmenter` says: in datatrove's
    /// order, stopping at the first failed rule unless `ck` measures everything.
    fn check(&mut self, text: &str, segmenter: Segmenter, ck: &mut Checks<'_>) -> Outcome;
    /// Decides for one text (drop mode).
    fn filter(&mut self, text: &str, segmenter: Segmenter) -> Outcome {
        self.check(text, segmenter, &mut Checks::first_failure())
    }
    /// Names of the measurements `check` records (the `signals` fields in annotate mode).
    fn signals(&self) -> Vec<String>;
    /// Counts besides drops (see `Transform::take_counters`).
    fn take_counters(&mut self) -> BTreeMap<String, u64> {
        BTreeMap::new()
    }
}

/// How a filter's rules run: to the first failed rule (drop mode), or through
/// every rule, recording each measurement and each failed rule (annotate mode).
pub struct Checks<'a> {
    signals: Option<&'a mut Vec<Option<f64>>>,
    reasons: Vec<Cow<'static, str>>,
}

impl<'a> Checks<'a> {
    /// Drop mode: the first failed rule decides.
    pub fn first_failure() -> Checks<'static> {
        Checks { signals: None, reasons: Vec::new() }
    }

    /// Annotate mode: `n` measurements into `signals` (`None` where undefined).
    pub fn every(signals: &'a mut Vec<Option<f64>>, n: usize) -> Self {
        signals.clear();
        signals.resize(n, None);
        Checks { signals: Some(signals), reasons: Vec::new() }
    }

    /// Whether every measurement is wanted (compute those drop mode can skip).
    pub fn measuring(&self) -> bool {
        self.signals.is_some()
    }

    /// Records measurement `i` (NaN and infinities as undefined).
    pub fn set(&mut self, i: usize, v: f64) {
        if let Some(s) = &mut self.signals {
            s[i] = v.is_finite().then_some(v);
        }
    }

    /// A rule failed; true when checking stops here (drop mode).
    pub fn fail(&mut self, reason: impl Into<Cow<'static, str>>) -> bool {
        self.reasons.push(reason.into());
        self.signals.is_none()
    }

    /// Whether the rule with this reason failed already.
    pub fn failed(&self, reason: &str) -> bool {
        self.reasons.iter().any(|r| r == reason)
    }

    /// Drop with the first failed rule's reason, or keep.
    pub fn outcome(&mut self) -> Outcome {
        match self.reasons.first() {
            Some(r) => Outcome::Drop(r.clone()),
            None => Outcome::Keep,
        }
    }

    /// Every failed rule's reason, in order.
    pub fn take_reasons(&mut self) -> Vec<Cow<'static, str>> {
        std::mem::take(&mut self.reasons)
    }
}

/// Schema check shared by the filters: a `text` column, and a `lang`
/// column (if any) as a string.
///
/// # Errors
/// No `text` column, or `text`/`lang` of another type.
pub fn check_input(input: &SchemaRef) -> Result<SchemaRef, SchemaError> {
    require_column(input, "text", &[DataType::LargeUtf8, DataType::Utf8])?;
    if input.field_with_name("lang").is_ok() {
        require_column(input, "lang", &[DataType::Utf8, DataType::LargeUtf8])?;
    }
    Ok(input.clone())
}

/// The column annotating filters write their measurements to: a struct of
/// Float64 fields, extended by each annotating filter.
pub const SIGNALS: &str = "signals";

/// The output schema of a filter: its input, and in annotate mode the
/// `signals` struct extended with `names` (a field of the same name is
/// replaced) and `would_drop`.
///
/// # Errors
/// As [`check_input`]; a `signals` column that is not a struct.
pub fn filter_schema(input: &SchemaRef, annotate: bool, names: &[String]) -> Result<SchemaRef, SchemaError> {
    let input = check_input(input)?;
    if !annotate {
        return Ok(input);
    }
    let mut fields: Vec<FieldRef> = Vec::new();
    let mut signals: Vec<FieldRef> = match input.field_with_name(SIGNALS) {
        Ok(f) => match f.data_type() {
            DataType::Struct(sub) => sub.iter().filter(|s| !names.contains(s.name())).cloned().collect(),
            other => {
                return Err(SchemaError::new(format!(
                    "column `{SIGNALS}` is {other}, but annotating filters write a struct of measurements there; rename it before this stage"
                )))
            }
        },
        Err(_) => Vec::new(),
    };
    signals.extend(names.iter().map(|n| Arc::new(Field::new(n, DataType::Float64, true))));
    let signals = Arc::new(Field::new(SIGNALS, DataType::Struct(signals.into()), false));
    let mut placed = false;
    for f in input.fields() {
        if f.name() == SIGNALS {
            fields.push(signals.clone());
            placed = true;
        } else {
            fields.push(f.clone());
        }
    }
    if !placed {
        fields.push(signals);
    }
    if input.field_with_name(smelt_engine::annotate::WOULD_DROP).is_err() {
        fields.push(Arc::new(Field::new(
            smelt_engine::annotate::WOULD_DROP,
            smelt_engine::annotate::would_drop_type(),
            false,
        )));
    }
    Ok(Arc::new(Schema::new_with_metadata(fields, input.metadata().clone())))
}

/// The transform that runs a [`DocFilter`] over batches.
pub struct FilterStage<F> {
    filter: F,
    default_language: Segmenter,
    /// Annotate mode: the output schema (with `signals` and `would_drop`) and the filter's signal names.
    annotate: Option<(SchemaRef, Vec<String>)>,
    would_drop: BTreeMap<String, u64>,
}

impl<F: DocFilter> FilterStage<F> {
    /// A stage with `language` as the default for rows without one.
    pub fn new(filter: F, language: &str) -> Self {
        FilterStage {
            filter,
            default_language: Segmenter::for_language(language),
            annotate: None,
            would_drop: BTreeMap::new(),
        }
    }

    /// In annotate mode when `annotate` (the context's): every row kept, with
    /// its measurements and every rule it fails.
    ///
    /// # Errors
    /// The input schema does not fit (see [`filter_schema`]).
    pub fn annotating(mut self, annotate: bool, input: &SchemaRef) -> Result<Self> {
        if annotate {
            let names = self.filter.signals();
            let schema = filter_schema(input, true, &names).map_err(|e| smelt_engine::EngineError::Internal(e.0))?;
            self.annotate = Some((schema, names));
        }
        Ok(self)
    }

    /// Annotate mode: every row with its `signals` and `would_drop`.
    fn annotate(&mut self, batch: RecordBatch) -> Result<Processed> {
        let Some((schema, names)) = &self.annotate else {
            return Err(smelt_engine::EngineError::Internal("annotate: not in annotate mode".into()));
        };
        let text = batch.column_by_name("text").expect("schema checked").clone();
        let language = batch.column_by_name("lang").cloned();
        let mut values: Vec<Vec<Option<f64>>> = vec![Vec::with_capacity(batch.num_rows()); names.len()];
        let mut reasons: Vec<Vec<Cow<'static, str>>> = Vec::with_capacity(batch.num_rows());
        let mut row = Vec::new();
        for i in 0..batch.num_rows() {
            let segmenter =
                language.as_ref().and_then(|l| str_at(l, i)).map_or(self.default_language, Segmenter::for_language);
            let t = str_at(&text, i).unwrap_or("");
            let mut ck = Checks::every(&mut row, names.len());
            // A rewrite (c4's removed lines) is not applied: annotate keeps the text as it is.
            let _ = self.filter.check(t, segmenter, &mut ck);
            reasons.push(ck.take_reasons());
            for (col, v) in values.iter_mut().zip(&row) {
                col.push(*v);
            }
        }
        let would_drop = smelt_engine::annotate::extend_would_drop(
            &batch,
            |i, out| out.extend(reasons[i].iter().cloned()),
            &mut self.would_drop,
        );
        let Some(DataType::Struct(sub)) = schema.field_with_name(SIGNALS).ok().map(|f| f.data_type().clone()) else {
            return Err(smelt_engine::EngineError::Internal("annotate: no signals struct".into()));
        };
        let earlier = batch.column_by_name(SIGNALS).and_then(|c| c.as_any().downcast_ref::<StructArray>().cloned());
        let mut children: Vec<ArrayRef> = Vec::with_capacity(sub.len());
        for f in sub.iter() {
            match names.iter().position(|n| n == f.name()) {
                Some(k) => children.push(Arc::new(Float64Array::from(std::mem::take(&mut values[k])))),
                None => children.push(earlier.as_ref().and_then(|e| e.column_by_name(f.name()).cloned()).ok_or_else(
                    || smelt_engine::EngineError::Internal(format!("annotate: no signal `{}`", f.name())),
                )?),
            }
        }
        let signals: ArrayRef = Arc::new(StructArray::try_new(sub.clone(), children, None)?);
        let mut cols = Vec::with_capacity(schema.fields().len());
        for f in schema.fields() {
            cols.push(match f.name().as_str() {
                SIGNALS => signals.clone(),
                smelt_engine::annotate::WOULD_DROP => would_drop.clone(),
                name => batch
                    .column_by_name(name)
                    .cloned()
                    .ok_or_else(|| smelt_engine::EngineError::Internal(format!("annotate: no column `{name}`")))?,
            });
        }
        Ok(Processed::Batch(RecordBatch::try_new(schema.clone(), cols)?))
    }
}

impl<F: DocFilter> Transform for FilterStage<F> {
    fn process(&mut self, batch: RecordBatch) -> Result<Processed> {
        if self.annotate.is_some() {
            return self.annotate(batch);
        }
        let text = batch.column_by_name("text").expect("schema checked").clone();
        let language = batch.column_by_name("lang").cloned();
        let mut verdicts = Vec::with_capacity(batch.num_rows());
        let mut rewrites: Vec<(usize, String)> = Vec::new();
        for i in 0..batch.num_rows() {
            let segmenter =
                language.as_ref().and_then(|l| str_at(l, i)).map_or(self.default_language, Segmenter::for_language);
            let t = str_at(&text, i).unwrap_or("");
            match self.filter.filter(t, segmenter) {
                Outcome::Keep => verdicts.push(None),
                Outcome::Drop(reason) => verdicts.push(Some(reason)),
                Outcome::Rewrite(new) => {
                    verdicts.push(None);
                    rewrites.push((i, new));
                }
            }
        }
        if rewrites.is_empty() {
            return Ok(Processed::Filtered { batch, verdicts });
        }
        let mut next = rewrites.iter().peekable();
        let mut values: Vec<Option<&str>> = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            match next.peek() {
                Some((j, new)) if *j == i => {
                    values.push(Some(new.as_str()));
                    next.next();
                }
                _ => values.push(str_at(&text, i)),
            }
        }
        let new_text: ArrayRef = match text.data_type() {
            DataType::LargeUtf8 => Arc::new(LargeStringArray::from(values)),
            _ => Arc::new(StringArray::from(values)),
        };
        let idx = batch.schema().index_of("text")?;
        let mut cols = batch.columns().to_vec();
        cols[idx] = new_text;
        let batch = RecordBatch::try_new(batch.schema(), cols)?;
        Ok(Processed::Filtered { batch, verdicts })
    }

    fn take_counters(&mut self) -> BTreeMap<String, u64> {
        let mut c = self.filter.take_counters();
        c.append(&mut self.would_drop);
        c
    }
}

/// A threshold that datatrove skips when it is falsy (`None` or 0).
pub(crate) fn on(t: Option<f64>) -> Option<f64> {
    t.filter(|v| *v != 0.0)
}

/// Whether `c` lies in one of the sorted inclusive `ranges`.
pub(crate) fn in_ranges(ranges: &[(u32, u32)], c: char) -> bool {
    let c = c as u32;
    ranges
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Python's `str.isspace` for one character.
pub(crate) fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.isalpha` for one character (categories L*).
pub(crate) fn py_isalpha(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphabetic()
    } else {
        in_ranges(tables::PY_ALPHA, c)
    }
}

/// Whether `c` is in datatrove's `PUNCTUATION_SET`.
pub(crate) fn is_dt_punctuation(c: char) -> bool {
    in_ranges(tables::DT_PUNCTUATION, c)
}

/// Whether `c` is in datatrove's `TERMINAL_PUNCTUATION`.
pub(crate) fn is_dt_terminal(c: char) -> bool {
    in_ranges(tables::DT_TERMINAL, c)
}

/// Python's `str.strip()`.
pub(crate) fn py_strip(s: &str) -> &str {
    s.trim_matches(py_isspace)
}

/// Python's `len(s)`: code points.
pub(crate) fn char_len(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.bytes().filter(|b| (*b as i8) >= -0x40).count()
    }
}

/// Python's `str.splitlines()` (no trailing empty line; `\r\n` is one break).
pub(crate) fn py_splitlines(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        for (i, c) in rest.char_indices() {
            let brk = match c {
                '\n' | '\u{b}' | '\u{c}' | '\u{1c}' | '\u{1d}' | '\u{1e}' | '\u{85}' | '\u{2028}' | '\u{2029}' => {
                    c.len_utf8()
                }
                '\r' => {
                    if rest[i + 1..].starts_with('\n') {
                        2
                    } else {
                        1
                    }
                }
                _ => continue,
            };
            let line = &rest[..i];
            rest = &rest[i + brk..];
            return Some(line);
        }
        let line = rest;
        rest = "";
        Some(line)
    })
}

/// datatrove's `find_duplicates`: (number of repeated elements, their total length in code points).
pub(crate) fn find_duplicates<'a>(items: impl IntoIterator<Item = &'a str>) -> (usize, usize) {
    let mut seen: std::collections::HashSet<&str, FxBuild> = Default::default();
    let (mut n, mut chars) = (0, 0);
    for x in items {
        if !seen.insert(x) {
            n += 1;
            chars += char_len(x);
        }
    }
    (n, chars)
}

/// A small fast hasher (FxHash) for string keys built by the filters.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(c.try_into().expect("8 bytes"))).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }
    fn write_u64(&mut self, v: u64) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(K);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// `BuildHasher` for [`FxHasher`].
pub(crate) type FxBuild = BuildHasherDefault<FxHasher>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_string_semantics() {
        let lines: Vec<_> = py_splitlines("a\r\nb\rc\n\nd\u{2028}e\n").collect();
        assert_eq!(lines, ["a", "b", "c", "", "d", "e"]);
        assert_eq!(py_splitlines("").count(), 0);
        assert_eq!(py_strip("\u{1f} x \u{a0}"), "x");
        assert_eq!(char_len("été…"), 4);
        assert!(py_isalpha('é') && !py_isalpha('\u{301}') && !py_isalpha('1'));
        assert!(is_dt_punctuation('…') && is_dt_punctuation('\u{7}') && !is_dt_punctuation('a'));
        assert!(is_dt_terminal('。') && !is_dt_terminal(','));
        assert_eq!(find_duplicates(["a", "bb", "a", "bb", "bb"]), (3, 5));
    }
}

#[cfg(test)]
mod datatrove_parity {
    use super::*;

    /// Real Common Crawl documents (stages/tests/fixtures/filters/README.md) with
    /// datatrove 0.10.1's verdicts: every filter must decide the same, with the same
    /// reason, and c4 must leave the same text.
    #[test]
    fn matches_datatrove_on_real_documents() {
        let docs = include_str!("../../tests/fixtures/filters/dolma_cc_en.jsonl");
        let expected: Vec<serde_json::Value> =
            serde_json::from_str(include_str!("../../tests/fixtures/filters/datatrove_verdicts.json")).unwrap();
        let mut filters: Vec<(&str, Box<dyn DocFilter>)> = vec![
            (
                "gopher_repetition",
                Box::new(gopher_repetition::GopherRepetition::new(
                    smelt_engine::parse_options(serde_json::json!({})).unwrap(),
                )),
            ),
            (
                "gopher_quality",
                Box::new(gopher_quality::GopherQuality::new(
                    smelt_engine::parse_options(serde_json::json!({})).unwrap(),
                )),
            ),
            ("c4", Box::new(c4::C4::new(smelt_engine::parse_options(serde_json::json!({})).unwrap()))),
            (
                "c4_fineweb",
                Box::new(c4::C4::new(
                    smelt_engine::parse_options(serde_json::json!({"filter_no_terminal_punct": false})).unwrap(),
                )),
            ),
            ("fineweb", Box::new(fineweb::FineWeb::new(smelt_engine::parse_options(serde_json::json!({})).unwrap()))),
        ];
        let mut checked = 0;
        for (line, exp) in docs.lines().zip(&expected) {
            let doc: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(doc["id"], exp["id"]);
            let text = doc["text"].as_str().unwrap();
            for (name, f) in filters.iter_mut() {
                let want = exp["verdicts"][*name].as_str();
                let got = f.filter(text, Segmenter::English);
                match (&got, want) {
                    (Outcome::Drop(r), Some(w)) => assert_eq!(r, w, "{name} on {}", exp["id"]),
                    (Outcome::Keep | Outcome::Rewrite(_), None) => {
                        if let Some(h) = exp["texts"][*name].as_str() {
                            let out = match &got {
                                Outcome::Rewrite(t) => t.as_str(),
                                _ => text,
                            };
                            assert_eq!(
                                format!("{:016x}", xxhash_rust::xxh3::xxh3_64(out.as_bytes())),
                                h,
                                "{name} text of {}",
                                exp["id"]
                            );
                        }
                    }
                    _ => panic!("{name} on {}: smelt {got:?}, datatrove {want:?}", exp["id"]),
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 20 * 5);
    }
}

#[cfg(test)]
mod stage_tests {
    use super::*;
    use arrow::array::{AsArray, StringArray};
    use arrow::datatypes::{Field, Schema};

    const BODY: &str = "The library reopened on Saturday after a year of repairs.\n\
        Visitors queued outside before the doors opened at nine.\n\
        The new reading room has space for two hundred people.\n\
        Staff said the children's section was the most popular.\n\
        Opening hours will be extended during the summer holidays.";

    fn batch(texts: Vec<&str>, langs: Option<Vec<Option<&str>>>) -> RecordBatch {
        let mut fields = vec![Field::new("id", DataType::Utf8, false), Field::new("text", DataType::LargeUtf8, false)];
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from((0..texts.len()).map(|i| i.to_string()).collect::<Vec<_>>())),
            Arc::new(LargeStringArray::from(texts)),
        ];
        if let Some(l) = langs {
            fields.push(Field::new("lang", DataType::Utf8, true));
            cols.push(Arc::new(StringArray::from(l)));
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
    }

    #[test]
    fn c4_rewrites_the_text_column_and_keeps_the_schema() {
        let cfg = c4::configure(serde_json::json!({}), &smelt_engine::ConfigureContext::working_dir()).unwrap();
        let smelt_engine::StageConfig::Transform(cfg) = cfg else { panic!("a transform") };
        let b = batch(vec![&format!("Menu\n{BODY}"), "Too short.", BODY], None);
        let schema = cfg.output_schema(&b.schema()).unwrap();
        assert_eq!(schema, b.schema());
        let mut t = cfg.build(&schema).unwrap();
        let Processed::Filtered { batch: out, verdicts } = t.process(b).unwrap() else { panic!("filtered") };
        assert_eq!(verdicts, vec![None, Some("too_few_sentences".into()), None]);
        let text = out.column_by_name("text").unwrap().as_string::<i64>();
        assert_eq!(text.value(0), BODY);
        assert_eq!(text.value(2), BODY);
        assert_eq!(t.take_counters().get("lines_removed:no_terminal_punc"), Some(&1));
    }

    #[test]
    fn language_column_picks_the_splitter_per_row() {
        // 60 Han characters: 60 words when split as Chinese, one word otherwise.
        let han = "我们今天在公园里散步看到很多花和树还有小鸟在唱歌天气非常好大家都很开心孩子们在草地上玩耍老人坐在长椅上聊天年轻人跑步锻炼身体这是一个美好的下午";
        let cfg = gopher_quality::configure(
            serde_json::json!({"min_avg_word_length": null, "max_avg_word_length": null, "min_stop_words": null}),
            &smelt_engine::ConfigureContext::working_dir(),
        )
        .unwrap();
        let smelt_engine::StageConfig::Transform(cfg) = cfg else { panic!("a transform") };
        let b = batch(vec![han, han, han], Some(vec![Some("zh"), None, Some("en")]));
        let mut t = cfg.build(&b.schema()).unwrap();
        let Processed::Filtered { verdicts, .. } = t.process(b).unwrap() else { panic!("filtered") };
        assert_eq!(verdicts, vec![None, Some("gopher_short_doc".into()), Some("gopher_short_doc".into())]);
        let bad = Arc::new(Schema::new(vec![
            Field::new("text", DataType::Utf8, false),
            Field::new("lang", DataType::Int32, true),
        ]));
        assert!(check_input(&bad).is_err());
    }
}

#[cfg(test)]
mod odd_input {
    use super::*;

    fn all_filters() -> Vec<Box<dyn DocFilter>> {
        let d = || serde_json::json!({});
        vec![
            Box::new(gopher_repetition::GopherRepetition::new(smelt_engine::parse_options(d()).unwrap())),
            Box::new(gopher_quality::GopherQuality::new(smelt_engine::parse_options(d()).unwrap())),
            Box::new(c4::C4::new(smelt_engine::parse_options(d()).unwrap())),
            Box::new(c4::C4::new(smelt_engine::parse_options(serde_json::json!({"split_paragraph": false})).unwrap())),
            Box::new(fineweb::FineWeb::new(smelt_engine::parse_options(d()).unwrap())),
        ]
    }

    /// Empty, control-only, combining-only, emoji, mixed-script, very long and
    /// repetitive texts: every filter decides (no panic), the same way twice.
    #[test]
    fn odd_and_huge_texts_get_a_verdict() {
        let long_word = "x".repeat(200_000);
        let huge = "the cat sat on the mat. ".repeat(20_000);
        let texts: Vec<String> = vec![
            String::new(),
            "\u{0}\u{1}\u{7f}".into(),
            "\u{301}\u{302}\u{303}".into(),
            "🙂🙂 👍🏽 🇫🇷".into(),
            "שלום עולם. مرحبا بالعالم. 你好，世界。".into(),
            "\r\n\r\n\u{2028}\u{85}\u{b}".into(),
            "a...b…c::d--e,f.G'h\"i(j)k[l]m{n}".into(),
            long_word,
            huge,
        ];
        for t in &texts {
            for seg in [Segmenter::English, Segmenter::Multi, Segmenter::Unspaced] {
                let a: Vec<Outcome> = all_filters().iter_mut().map(|f| f.filter(t, seg)).collect();
                let b: Vec<Outcome> = all_filters().iter_mut().map(|f| f.filter(t, seg)).collect();
                assert_eq!(a, b);
            }
        }
        let mut f =
            gopher_repetition::GopherRepetition::new(smelt_engine::parse_options(serde_json::json!({})).unwrap());
        // "the cat" (7 chars) x 20,000 over 480,000 chars = 0.29 > 0.2.
        assert_eq!(f.filter(&texts[8], Segmenter::English), Outcome::Drop("top_2_gram".into()));
    }
}
