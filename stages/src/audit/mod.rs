//! `audit` transform: counts, per split, how documents represent demographic
//! groups (HolisticBias axes and descriptors, gendered pronouns), how often
//! documents mentioning each group are toxic (the `toxicity` stage's lists and
//! matcher), by language and source. Every row passes through unchanged.
//!
//! ```text
//! text ──normalise (as toxicity)──► words
//!      ├──► toxicity lists of the row's language ──► toxic?
//!      └──► group lexicon of the row's language (none: counted as not audited)
//!             ──Aho-Corasick at word boundaries──► descriptors, axes mentioned
//! counts (integers) ──take_counters──► engine sums them over splits ──► commit derives metrics, checks gates
//! ids ──smallest N per group──► take_samples ──► risk samples
//! ```
//!
//! Everything the stage emits adds up across splits (counters) or merges to
//! the same set (the N smallest ids), so the version's audit does not depend
//! on how the input was split or spread over ranks. Metrics, formulas and
//! gates: docs/audit.md; the derivation is `smelt_query::audit`.

pub mod lexicon;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use smelt_catalog::audit::{metric_key, parse_gate, GateAction};
use smelt_catalog::Samples;
use smelt_engine::diagnostic::closest;
use smelt_engine::yaml::PathSeg;
use smelt_engine::{
    parse_options, require_column, str_at, ConfigureContext, EngineError, OptionError, Processed, Result, SchemaError,
    StageConfig, Transform, TransformConfig,
};

use crate::toxicity::{normalize, parse_config as toxicity_config, ToxicMatcher, ToxicityConfig};
use lexicon::{Found, Groups, Matcher, BUNDLED};

fn en() -> Vec<String> {
    vec!["en".into()]
}

fn en_one() -> String {
    "en".into()
}

fn lang_column() -> String {
    "lang".into()
}

fn yes() -> bool {
    true
}

fn five() -> u32 {
    5
}

fn by_default() -> Vec<Breakdown> {
    vec![Breakdown::Lang, Breakdown::Source]
}

/// A column that group counts are broken down by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Breakdown {
    /// The row's language (`language_column`).
    Lang,
    /// The `source` column.
    Source,
    /// The host of `url` (many values: use on small corpora or with few domains).
    Domain,
}

impl Breakdown {
    fn label(self) -> &'static str {
        match self {
            Breakdown::Lang => "lang",
            Breakdown::Source => "source",
            Breakdown::Domain => "domain",
        }
    }
}

/// Options of `audit`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Bundled lexicons to use, by language (default `[en]`: HolisticBias v1.1 descriptors and English pronouns).
    #[serde(default = "en")]
    pub languages: Vec<String>,
    /// Your own lexicon files by language code (`de: [lexicons/de.txt]`), lines `axis: descriptor [= term, ...]`; added to a bundled lexicon of the same language.
    #[serde(default)]
    pub lexicons: BTreeMap<String, Vec<PathBuf>>,
    /// Axes to count (default: every axis of the lexicons).
    #[serde(default)]
    pub axes: Option<Vec<String>>,
    /// Language of rows without one (no language column, or null) (default `en`).
    #[serde(default = "en_one")]
    pub default_language: String,
    /// Column with each row's language code (default `lang`, as `langid` writes it), used when the input has it.
    #[serde(default = "lang_column")]
    pub language_column: String,
    /// A term followed by `s` or `es` also counts (`Muslims`, default true).
    #[serde(default = "yes")]
    pub plurals: bool,
    /// Group counts broken down by these columns (default `[lang, source]`; `domain` is the host of `url`).
    #[serde(default = "by_default")]
    pub by: Vec<Breakdown>,
    /// Toxicity lists and thresholds, as the `toxicity` stage's options (default: its defaults; `mode` is ignored).
    #[serde(default)]
    pub toxicity: serde_json::Value,
    /// Document ids kept per group as samples for risks: the smallest ids (default 5).
    #[serde(default = "five")]
    pub samples: u32,
    /// Thresholds: `"metric{label=value} > number": warn|fail` (docs/audit.md lists the metrics).
    #[serde(default)]
    pub gates: BTreeMap<String, GateAction>,
}

fn option_error(path: Vec<PathSeg>, message: String, at_key: bool) -> OptionError {
    OptionError { path, message, at_key }
}

fn key(k: &str) -> PathSeg {
    PathSeg::Key(k.to_string())
}

/// Registry hook.
///
/// # Errors
/// Unknown options, languages without a bundled lexicon, gates that do not
/// parse (with the column in the gate), bad `toxicity` options.
pub fn configure(options: serde_json::Value, ctx: &ConfigureContext) -> Result<StageConfig, OptionError> {
    let mut c: AuditConfig = parse_options(options)?;
    let bundled: Vec<&str> = BUNDLED.iter().map(|(l, _)| *l).collect();
    for (i, lang) in c.languages.iter().enumerate() {
        if !bundled.contains(&lang.as_str()) {
            let hint =
                closest(lang, bundled.iter().copied()).map(|c| format!("; did you mean `{c}`?")).unwrap_or_default();
            return Err(option_error(
                vec![key("languages"), PathSeg::Index(i)],
                format!(
                    "no bundled lexicon for `{lang}`{hint} (bundled: {}); give your own under `lexicons: {{{lang}: [file]}}`",
                    bundled.join(", ")
                ),
                false,
            ));
        }
    }
    for (lang, files) in c.lexicons.iter_mut() {
        if files.is_empty() {
            return Err(option_error(vec![key("lexicons"), key(lang)], "lists no files".into(), false));
        }
        for f in files.iter_mut() {
            *f = ctx.resolve(f);
        }
    }
    if c.languages.is_empty() && c.lexicons.is_empty() {
        return Err(option_error(
            vec![key("languages")],
            "is empty and no `lexicons` are given: nothing to audit".into(),
            false,
        ));
    }
    if c.by.contains(&Breakdown::Domain) && c.by.iter().filter(|b| **b == Breakdown::Domain).count() > 1 {
        return Err(option_error(vec![key("by")], "names `domain` twice".into(), false));
    }
    if let Some(axes) = &c.axes {
        if c.lexicons.is_empty() {
            let known = bundled_axes(&c.languages);
            for (i, a) in axes.iter().enumerate() {
                if !known.iter().any(|k| k == a) {
                    let hint = closest(a, known.iter().map(String::as_str))
                        .map(|c| format!("; did you mean `{c}`?"))
                        .unwrap_or_default();
                    return Err(option_error(
                        vec![key("axes"), PathSeg::Index(i)],
                        format!("no axis `{a}` in the bundled lexicons{hint} (axes: {})", known.join(", ")),
                        false,
                    ));
                }
            }
        }
    }
    for expr in c.gates.keys() {
        let action = c.gates[expr];
        parse_gate(expr, action).map_err(|e| {
            option_error(
                vec![key("gates"), key(expr)],
                format!("gate `{expr}`, column {}: {}", e.column, e.message),
                true,
            )
        })?;
    }
    let tox_options = if c.toxicity.is_null() { serde_json::json!({}) } else { c.toxicity.clone() };
    let tox = toxicity_config(tox_options, ctx).map_err(|mut e| {
        e.path.insert(0, key("toxicity"));
        e
    })?;
    c.toxicity = serde_json::to_value(&tox).unwrap_or_default();
    Ok(StageConfig::Transform(Arc::new(Audit { config: c, toxicity: tox, shared: Mutex::new(None) })))
}

fn bundled_axes(languages: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (lang, files) in BUNDLED {
        if !languages.iter().any(|l| l == lang) {
            continue;
        }
        for (name, text) in files {
            for e in lexicon::parse(name, text).unwrap_or_default() {
                if !out.contains(&e.axis) {
                    out.push(e.axis);
                }
            }
        }
    }
    out
}

/// Lexicons and the toxicity matcher, built once per run and shared by splits.
struct Shared {
    groups: Groups,
    /// Matcher per language (primary subtag, lowercase).
    matchers: HashMap<String, Matcher>,
    toxic: ToxicMatcher,
}

/// The configured stage.
pub struct Audit {
    config: AuditConfig,
    toxicity: ToxicityConfig,
    shared: Mutex<Option<Arc<Shared>>>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit").field("config", &self.config).finish_non_exhaustive()
    }
}

fn primary(lang: &str) -> String {
    lang.trim().split(['-', '_']).next().unwrap_or("").to_ascii_lowercase()
}

impl Audit {
    fn shared(&self) -> Result<Arc<Shared>> {
        let mut slot = self.shared.lock().map_err(|_| EngineError::Internal("audit: lexicon lock poisoned".into()))?;
        if let Some(s) = slot.as_ref() {
            return Ok(s.clone());
        }
        let c = &self.config;
        let mut by_lang: BTreeMap<String, Vec<lexicon::Entry>> = BTreeMap::new();
        for (lang, files) in BUNDLED {
            if c.languages.iter().any(|l| l == lang) {
                for (name, text) in files {
                    by_lang.entry(primary(lang)).or_default().extend(lexicon::parse(name, text)?);
                }
            }
        }
        for (lang, files) in &c.lexicons {
            for f in files {
                let text = std::fs::read_to_string(f).map_err(|e| {
                    EngineError::User(format!("audit: cannot read lexicon `lexicons.{lang}` file {}: {e}", f.display()))
                })?;
                by_lang.entry(primary(lang)).or_default().extend(lexicon::parse(&f.display().to_string(), &text)?);
            }
        }
        let mut groups = Groups::default();
        let mut matchers = HashMap::new();
        for (lang, entries) in &by_lang {
            matchers.insert(lang.clone(), Matcher::build(entries, c.axes.as_deref(), c.plurals, &mut groups)?);
        }
        let s = Arc::new(Shared { groups, matchers, toxic: ToxicMatcher::new(&self.toxicity)? });
        *slot = Some(s.clone());
        Ok(s)
    }
}

impl TransformConfig for Audit {
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, SchemaError> {
        let strings = [DataType::Utf8, DataType::LargeUtf8, DataType::Utf8View];
        require_column(input, "text", &strings)?;
        for optional in [self.config.language_column.as_str(), "id", "source", "url"] {
            if input.field_with_name(optional).is_ok() {
                require_column(input, optional, &strings)?;
            }
        }
        if self.config.by.contains(&Breakdown::Domain) {
            require_column(input, "url", &strings)?;
        }
        Ok(input.clone())
    }

    fn resolved(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or_default()
    }

    fn build(&self, _input: &SchemaRef) -> Result<Box<dyn Transform>> {
        let shared = self.shared()?;
        let (n_axes, n_desc) = (shared.groups.axes.len(), shared.groups.descriptors.len());
        Ok(Box::new(AuditTransform {
            toxic: shared.toxic.clone(),
            shared,
            config: self.config.clone(),
            scratch: String::new(),
            found: Vec::new(),
            totals: Totals::default(),
            axes: vec![GroupCounts::default(); n_axes],
            descriptors: vec![GroupCounts::default(); n_desc],
            by_dim: HashMap::new(),
            unaudited: BTreeMap::new(),
            axis_hit: vec![0; n_axes],
            desc_hit: vec![0; n_desc],
            stamp: 0,
            hit_axes: Vec::new(),
            hit_descs: Vec::new(),
            samples: BTreeMap::new(),
        }))
    }
}

#[derive(Debug, Clone, Default)]
struct Totals {
    docs: u64,
    words: u64,
    toxic_docs: u64,
    audited_docs: u64,
    audited_words: u64,
    audited_toxic_docs: u64,
}

#[derive(Debug, Clone, Default)]
struct GroupCounts {
    mention_docs: u64,
    mentions: u64,
    toxic_mention_docs: u64,
}

/// Counts of one breakdown value (`lang=en`): docs, toxic docs, audited docs.
#[derive(Debug, Clone, Default)]
struct DimCounts {
    docs: u64,
    toxic_docs: u64,
    audited_docs: u64,
}

/// Counts of one breakdown value, and per axis (mention docs, toxic mention docs).
#[derive(Debug, Clone, Default)]
struct DimEntry {
    counts: DimCounts,
    axes: HashMap<u32, (u64, u64)>,
}

/// The entry of `value` of breakdown `dim`, allocating its key only the first time.
fn dim_entry<'a>(
    map: &'a mut HashMap<&'static str, HashMap<String, DimEntry>>,
    dim: &'static str,
    value: &str,
) -> &'a mut DimEntry {
    let inner = map.entry(dim).or_default();
    if !inner.contains_key(value) {
        inner.insert(value.to_string(), DimEntry::default());
    }
    inner.get_mut(value).expect("inserted above")
}

/// Where samples go: (kind, axis, descriptor).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum SampleKey {
    Toxic,
    Mention(u32, Option<u32>),
    ToxicMention(u32, Option<u32>),
}

struct AuditTransform {
    shared: Arc<Shared>,
    toxic: ToxicMatcher,
    config: AuditConfig,
    scratch: String,
    found: Vec<Found>,
    totals: Totals,
    axes: Vec<GroupCounts>,
    descriptors: Vec<GroupCounts>,
    /// Breakdown → value → counts.
    by_dim: HashMap<&'static str, HashMap<String, DimEntry>>,
    /// Language → documents without a lexicon.
    unaudited: BTreeMap<String, u64>,
    /// Stamp of the last document that hit each axis / descriptor.
    axis_hit: Vec<u64>,
    desc_hit: Vec<u64>,
    stamp: u64,
    hit_axes: Vec<u32>,
    hit_descs: Vec<u32>,
    samples: BTreeMap<SampleKey, Vec<String>>,
}

impl AuditTransform {
    fn sample(&mut self, key: SampleKey, id: Option<&str>) {
        let Some(id) = id else { return };
        let cap = self.config.samples as usize;
        if cap == 0 {
            return;
        }
        let v = self.samples.entry(key).or_default();
        if v.len() == cap && v.last().is_some_and(|l| l.as_str() <= id) {
            return;
        }
        if let Err(at) = v.binary_search_by(|x| x.as_str().cmp(id)) {
            v.insert(at, id.to_string());
            v.truncate(cap);
        }
    }

    fn row(&mut self, text: &str, lang: Option<&str>, id: Option<&str>, dims: &[(&'static str, Option<&str>)]) {
        let words = normalize(text, &mut self.scratch) as u64;
        let row_lang =
            lang.map(primary).filter(|l| !l.is_empty()).unwrap_or_else(|| primary(&self.config.default_language));
        let (_, toxic) = self.toxic.check(&self.scratch, words as usize, Some(&row_lang));
        let t = &mut self.totals;
        t.docs += 1;
        t.words += words;
        t.toxic_docs += u64::from(toxic);
        if toxic {
            self.sample(SampleKey::Toxic, id);
        }
        let shared = self.shared.clone();
        let matcher = shared.matchers.get(&row_lang);
        for &(dim, value) in dims {
            let d = &mut dim_entry(&mut self.by_dim, dim, value.unwrap_or("-")).counts;
            d.docs += 1;
            d.toxic_docs += u64::from(toxic);
            d.audited_docs += u64::from(matcher.is_some());
        }
        let Some(matcher) = matcher else {
            *self.unaudited.entry(row_lang).or_default() += 1;
            return;
        };
        let t = &mut self.totals;
        t.audited_docs += 1;
        t.audited_words += words;
        t.audited_toxic_docs += u64::from(toxic);
        self.stamp += 1;
        self.hit_axes.clear();
        self.hit_descs.clear();
        matcher.find(&self.scratch, &mut self.found);
        for &(_, _, p) in &self.found {
            let mut axes_of_match: [u32; 4] = [u32::MAX; 4];
            for &d in matcher.groups_of(p) {
                let axis = shared.groups.descriptors[d as usize].0 as u32;
                self.descriptors[d as usize].mentions += 1;
                if self.desc_hit[d as usize] != self.stamp {
                    self.desc_hit[d as usize] = self.stamp;
                    self.hit_descs.push(d);
                }
                // One mention per match and axis, even when the term is two descriptors of one axis.
                if !axes_of_match.contains(&axis) {
                    if let Some(slot) = axes_of_match.iter_mut().find(|s| **s == u32::MAX) {
                        *slot = axis;
                    }
                    self.axes[axis as usize].mentions += 1;
                }
                if self.axis_hit[axis as usize] != self.stamp {
                    self.axis_hit[axis as usize] = self.stamp;
                    self.hit_axes.push(axis);
                }
            }
        }
        let (hit_descs, hit_axes) = (std::mem::take(&mut self.hit_descs), std::mem::take(&mut self.hit_axes));
        for &d in &hit_descs {
            let g = &mut self.descriptors[d as usize];
            g.mention_docs += 1;
            g.toxic_mention_docs += u64::from(toxic);
            let axis = shared.groups.descriptors[d as usize].0 as u32;
            self.sample(SampleKey::Mention(axis, Some(d)), id);
            if toxic {
                self.sample(SampleKey::ToxicMention(axis, Some(d)), id);
            }
        }
        for &a in &hit_axes {
            let g = &mut self.axes[a as usize];
            g.mention_docs += 1;
            g.toxic_mention_docs += u64::from(toxic);
            self.sample(SampleKey::Mention(a, None), id);
            if toxic {
                self.sample(SampleKey::ToxicMention(a, None), id);
            }
        }
        if !hit_axes.is_empty() {
            for &(dim, value) in dims {
                let d = dim_entry(&mut self.by_dim, dim, value.unwrap_or("-"));
                for &a in &hit_axes {
                    let e = d.axes.entry(a).or_default();
                    e.0 += 1;
                    e.1 += u64::from(toxic);
                }
            }
        }
        (self.hit_descs, self.hit_axes) = (hit_descs, hit_axes);
    }

    fn axis_name(&self, a: u32) -> &str {
        &self.shared.groups.axes[a as usize]
    }

    fn group_labels(&self, a: u32, d: Option<u32>) -> Vec<(&str, &str)> {
        let mut l = vec![("axis", self.axis_name(a))];
        if let Some(d) = d {
            l.push(("descriptor", self.shared.groups.descriptors[d as usize].1.as_str()));
        }
        l
    }
}

impl Transform for AuditTransform {
    fn process(&mut self, batch: RecordBatch) -> Result<Processed> {
        let col = |name: &str| batch.column_by_name(name);
        let text = col("text").ok_or_else(|| EngineError::Internal("audit: no text column".into()))?;
        let lang = col(&self.config.language_column);
        let (id, source, url) = (col("id"), col("source"), col("url"));
        let by = self.config.by.clone();
        let mut values: Vec<Option<Cow<'_, str>>> = Vec::with_capacity(by.len());
        for i in 0..batch.num_rows() {
            let row_lang = lang.and_then(|c| str_at(c, i));
            values.clear();
            for b in &by {
                values.push(match b {
                    Breakdown::Lang => Some(Cow::Owned(
                        row_lang
                            .map(primary)
                            .filter(|l| !l.is_empty())
                            .unwrap_or_else(|| primary(&self.config.default_language)),
                    )),
                    Breakdown::Source => source.and_then(|c| str_at(c, i)).map(Cow::Borrowed),
                    Breakdown::Domain => url
                        .and_then(|c| str_at(c, i))
                        .map(|u| Cow::Owned(smelt_engine::exec::domain_of(u).to_ascii_lowercase())),
                });
            }
            let dims: Vec<(&'static str, Option<&str>)> =
                by.iter().zip(&values).map(|(b, v)| (b.label(), v.as_deref())).collect();
            self.row(str_at(text, i).unwrap_or(""), row_lang, id.and_then(|c| str_at(c, i)), &dims);
        }
        Ok(Processed::Batch(batch))
    }

    fn take_counters(&mut self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        let t = std::mem::take(&mut self.totals);
        for (k, v) in [
            ("docs", t.docs),
            ("words", t.words),
            ("toxic_docs", t.toxic_docs),
            ("audited_docs", t.audited_docs),
            ("audited_words", t.audited_words),
            ("audited_toxic_docs", t.audited_toxic_docs),
        ] {
            out.insert(k.to_string(), v);
        }
        for (lang, n) in std::mem::take(&mut self.unaudited) {
            out.insert(metric_key("unaudited_docs", &[("lang", &lang)]), n);
        }
        for (dim, values) in std::mem::take(&mut self.by_dim) {
            for (value, e) in values {
                let l = [(dim, value.as_str())];
                out.insert(metric_key("docs", &l), e.counts.docs);
                out.insert(metric_key("toxic_docs", &l), e.counts.toxic_docs);
                out.insert(metric_key("audited_docs", &l), e.counts.audited_docs);
                for (a, (docs, toxic)) in e.axes {
                    let l = [("axis", self.axis_name(a)), (dim, value.as_str())];
                    out.insert(metric_key("mention_docs", &l), docs);
                    out.insert(metric_key("toxic_mention_docs", &l), toxic);
                }
            }
        }
        // Every axis of the lexicons, with zeros, so reports list them all.
        for a in 0..self.axes.len() as u32 {
            let g = std::mem::take(&mut self.axes[a as usize]);
            let l = self.group_labels(a, None);
            out.insert(metric_key("mention_docs", &l), g.mention_docs);
            out.insert(metric_key("mentions", &l), g.mentions);
            out.insert(metric_key("toxic_mention_docs", &l), g.toxic_mention_docs);
        }
        for d in 0..self.descriptors.len() as u32 {
            let g = std::mem::take(&mut self.descriptors[d as usize]);
            if g.mentions == 0 {
                continue;
            }
            let a = self.shared.groups.descriptors[d as usize].0 as u32;
            let l = self.group_labels(a, Some(d));
            out.insert(metric_key("mention_docs", &l), g.mention_docs);
            out.insert(metric_key("mentions", &l), g.mentions);
            out.insert(metric_key("toxic_mention_docs", &l), g.toxic_mention_docs);
        }
        out
    }

    fn take_samples(&mut self) -> BTreeMap<String, Samples> {
        let cap = self.config.samples;
        let mut out = BTreeMap::new();
        for (k, ids) in std::mem::take(&mut self.samples) {
            let name = match k {
                SampleKey::Toxic => "toxic".to_string(),
                SampleKey::Mention(a, d) => metric_key("mention", &self.group_labels(a, d)),
                SampleKey::ToxicMention(a, d) => metric_key("toxic", &self.group_labels(a, d)),
            };
            out.insert(name, Samples { cap, ids });
        }
        out
    }
}

#[cfg(test)]
mod tests;
