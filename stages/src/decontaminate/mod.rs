//! `decontaminate` stage: finds benchmark items (test questions, prompts,
//! solutions) inside documents by shared word n-grams, GPT-3 style, and
//! drops the documents, cuts the matches out, or annotates them.
//!
//! ```text
//! benchmarks: [evals/mmlu.jsonl, {from: evals@3, fields: [question]}]   (read once per process, at compile time)
//!   ──items──► n-grams of n normalised words (ngrams.rs) ──► table; items of min_words..n-1 words ──► anchors: key of their first min_words
//! text ──every n-gram looked up; every min_words-gram in the anchors, then the whole item at that word──► hits: (item, byte range)
//!   action drop     ──► dropped `contaminated:<benchmark>` (the benchmark of the first hit)
//!   action cut      ──► each hit and `cut_chars` characters around it removed; past `max_cuts` cuts: dropped
//!   action annotate ──► `contamination`: list of {benchmark, item}; nothing dropped
//! counters: contaminated:<benchmark> (documents), match:<benchmark>:<item> (documents per item); samples of ids
//! ```
//! With `drop`, n-grams starting inside a match already found are not looked
//! up: a copied item matches each of its n-grams, and one hit per matched
//! stretch is all dropping needs (an item whose n-grams all lie inside another
//! item's match is then not counted in `match:` counters). Whole short items
//! are looked for everywhere. Hits are reported in the order they end.
//! A catalog version used as a benchmark keeps its index beside it
//! (`_indexes/decontaminate-<params>/<V>.bin`), built by the first run that
//! needs it. Items shorter than `n` words are matched whole when they have at
//! least `min_words` words; shorter ones are not indexed (too common to tell
//! from ordinary text) and are counted in the stage's lineage.

pub mod benchmarks;
pub mod ngrams;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use arrow::array::{Array, ArrayRef, LargeStringBuilder, ListBuilder, StringBuilder, StructBuilder};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use smelt_catalog::Samples;
use smelt_engine::yaml::PathSeg;
use smelt_engine::{
    parse_options, require_column, str_at, ConfigureContext, DatasetRoots, EngineError, OptionError, Processed, Result,
    SchemaError, StageConfig, Transform, TransformConfig,
};

use self::benchmarks::{Benchmark, Origin, Params, Part, Short};
use self::ngrams::{Table, Words};

/// The column `action: annotate` writes.
pub const COLUMN: &str = "contamination";

/// What happens to a document that holds a benchmark item.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Drop it (reason `contaminated:<benchmark>`).
    #[default]
    Drop,
    /// Keep it and list the items it holds in `contamination`.
    Annotate,
    /// Remove each match and `cut_chars` characters on each side; drop the
    /// document past `max_cuts` cuts (NeMo Curator's rule).
    Cut,
}

/// A benchmark with options.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BenchmarkEntry {
    /// A file (`.jsonl`, `.jsonl.gz`, `.json` array, `.parquet`, `.txt` with one
    /// item per line; a path relative to the pipeline file or an object-store
    /// URL) or a committed dataset version (`evals@3`, `evals@prod`).
    pub from: String,
    /// Its name in drop reasons, counters and `contamination` (default: the
    /// file's stem or the dataset's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Fields (dotted paths in JSON, columns in Parquet) whose text makes an
    /// item, joined in this order. Default: every string or list of strings
    /// but the id, in the file's order (`text` for a dataset version).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// The field holding an item's id (default `id`; without it, the item's number from 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// A benchmark: a file or version as a string, or with options.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum BenchmarkOption {
    /// A file or a dataset version, with the default fields and name.
    Location(String),
    /// With a name, fields or id field.
    Entry(BenchmarkEntry),
}

fn default_text() -> String {
    "text".into()
}
fn default_n() -> usize {
    13
}
fn default_min_words() -> usize {
    8
}
fn default_cut_chars() -> usize {
    200
}
fn default_max_cuts() -> usize {
    10
}
fn default_samples() -> u32 {
    10
}

/// Options of `decontaminate`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecontaminateConfig {
    /// The benchmarks to look for: files or dataset versions (see the entry form).
    pub benchmarks: Vec<BenchmarkOption>,
    /// Words per n-gram (GPT-3 used 13, datatrove 12). Words are runs of
    /// letters and digits, lowercased; punctuation and line breaks separate them.
    #[serde(default = "default_n")]
    pub n: usize,
    /// Items with fewer than `n` words are matched as a whole when they have at
    /// least this many words; shorter items are not looked for.
    #[serde(default = "default_min_words")]
    pub min_words: usize,
    /// `drop` (default), `annotate` or `cut`.
    #[serde(default)]
    pub action: Action,
    /// The column searched (default `text`); `cut` rewrites it.
    #[serde(default = "default_text")]
    pub text: String,
    /// `cut`: characters removed on each side of a match.
    #[serde(default = "default_cut_chars")]
    pub cut_chars: usize,
    /// `cut`: a document with more cuts than this is dropped.
    #[serde(default = "default_max_cuts")]
    pub max_cuts: usize,
    /// Ids of contaminated documents kept per benchmark in the stage's metrics (the smallest).
    #[serde(default = "default_samples")]
    pub samples: u32,
    /// The benchmarks resolved (names unique, files resolved against the pipeline's directory).
    #[serde(skip)]
    resolved_benchmarks: Vec<Benchmark>,
    /// Where named datasets are.
    #[serde(skip)]
    datasets: Option<DatasetRoots>,
    /// The index, built once per process, or the error at an option's path.
    #[serde(skip)]
    prepared: Arc<OnceLock<std::result::Result<Arc<Prepared>, SchemaError>>>,
}

/// The index of all benchmarks.
#[derive(Debug)]
pub struct Prepared {
    /// n-gram keys to items.
    table: Table,
    /// Anchor keys of whole items (their first `min_words` words) to groups.
    anchors: Table,
    /// Whole items by anchor, in item order (no two of one key).
    groups: Vec<Vec<Short>>,
    /// Words of an anchor.
    anchor_words: usize,
    /// First item number of each benchmark.
    offsets: Vec<u32>,
    /// Item ids, by item number.
    items: Vec<String>,
    /// Benchmark names.
    names: Vec<String>,
    /// What lineage records per benchmark.
    lineage: Vec<serde_json::Value>,
}

impl Prepared {
    /// Joins the parts' items and keys (the first item holding a key keeps it).
    pub fn new(parts: Vec<(String, Part, serde_json::Value)>, p: Params) -> Prepared {
        let total: usize = parts.iter().map(|p| p.1.keys.len()).sum();
        let mut table = Table::with_capacity(total);
        let mut anchors = Table::with_capacity(parts.iter().map(|p| p.1.shorts.len()).sum());
        let mut groups: Vec<Vec<Short>> = Vec::new();
        let (mut offsets, mut items, mut names, mut lineage) = (vec![], vec![], vec![], vec![]);
        for (name, part, mut info) in parts {
            let offset = items.len() as u32;
            offsets.push(offset);
            let before = table.len();
            for &(k, i) in &part.keys {
                table.insert(k, offset + i);
            }
            let mut wholes = 0;
            for &short in &part.shorts {
                let group = match anchors.probe(short.anchor) {
                    Some(g) => g as usize,
                    None => {
                        anchors.insert(short.anchor, groups.len() as u32);
                        groups.push(Vec::new());
                        groups.len() - 1
                    }
                };
                if !groups[group].iter().any(|s| s.whole == short.whole) {
                    groups[group].push(Short { item: offset + short.item, ..short });
                    wholes += 1;
                }
            }
            info["items"] = part.items.len().into();
            // Distinct n-grams (and whole short items) this benchmark adds to the index.
            info["keys"] = (table.len() - before + wholes).into();
            info["matched_whole"] = part.short_items.into();
            info["too_short"] = part.too_short.into();
            items.extend(part.items);
            names.push(name);
            lineage.push(info);
        }
        Prepared { table, anchors, groups, anchor_words: p.min_words.max(1), offsets, items, names, lineage }
    }

    /// The benchmark number of item `item`.
    fn benchmark_of(&self, item: u32) -> usize {
        self.offsets.partition_point(|&o| o <= item) - 1
    }

    /// Keys held: n-grams and whole items.
    pub fn keys(&self) -> usize {
        self.table.len() + self.groups.iter().map(Vec::len).sum::<usize>()
    }
}

fn key(k: &str) -> PathSeg {
    PathSeg::Key(k.into())
}

fn at(path: Vec<PathSeg>, message: String) -> OptionError {
    OptionError { path, message, at_key: false }
}

/// A name usable in reasons and counters: letters, digits, `_`, `-`, `.`.
fn clean_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || "_-.".contains(c) { c } else { '_' }).collect()
}

/// Registry hook (no I/O: benchmarks are read when the schema is asked for).
///
/// # Errors
/// Unknown or invalid options: no benchmarks, a benchmark that is neither a
/// file nor a version, two benchmarks of one name, `n` or `min_words` out of range.
pub fn configure(options: serde_json::Value, ctx: &ConfigureContext) -> Result<StageConfig, OptionError> {
    Ok(StageConfig::Transform(Arc::new(parse(options, ctx)?)))
}

/// The options parsed and checked, benchmarks resolved (what [`configure`] wraps).
///
/// # Errors
/// As [`configure`].
pub fn parse(options: serde_json::Value, ctx: &ConfigureContext) -> Result<DecontaminateConfig, OptionError> {
    // Entries checked one by one first: an untagged enum's own error names no field.
    if let Some(list) = options.get("benchmarks").and_then(|b| b.as_array()) {
        for (i, entry) in list.iter().enumerate() {
            let path = |mut p: Vec<PathSeg>| {
                p.insert(0, PathSeg::Index(i));
                p.insert(0, key("benchmarks"));
                p
            };
            match entry {
                serde_json::Value::String(_) => {}
                serde_json::Value::Object(_) => {
                    parse_options::<BenchmarkEntry>(entry.clone())
                        .map_err(|e| OptionError { path: path(e.path), ..e })?;
                }
                _ => {
                    return Err(at(
                        path(vec![]),
                        "a benchmark is a file or dataset version (`evals/mmlu.jsonl`, `evals@3`), or a mapping with `from:`".into(),
                    ))
                }
            }
        }
    }
    let mut c: DecontaminateConfig = parse_options(options)?;
    if c.benchmarks.is_empty() {
        return Err(at(
            vec![key("benchmarks")],
            "no benchmarks: list files (`evals/mmlu.jsonl`) or versions (`evals@3`)".into(),
        ));
    }
    if c.n == 0 || c.n > 64 {
        return Err(at(vec![key("n")], format!("{} words per n-gram: give 1 to 64 (13 is GPT-3's)", c.n)));
    }
    if c.min_words == 0 {
        return Err(at(vec![key("min_words")], "must be at least 1".into()));
    }
    let mut resolved: Vec<Benchmark> = Vec::new();
    for (i, b) in c.benchmarks.iter().enumerate() {
        let (entry_path, from, name, fields, id) = match b {
            BenchmarkOption::Location(s) => (vec![key("benchmarks"), PathSeg::Index(i)], s.clone(), None, vec![], None),
            BenchmarkOption::Entry(e) => (
                vec![key("benchmarks"), PathSeg::Index(i), key("from")],
                e.from.clone(),
                e.name.clone(),
                e.fields.clone(),
                e.id.clone(),
            ),
        };
        let origin = if benchmarks::is_file(&from) {
            Origin::File(if from.contains("://") {
                from.clone()
            } else {
                ctx.resolve(Path::new(&from)).display().to_string()
            })
        } else if from.contains('@') {
            Origin::Version(from.clone())
        } else {
            return Err(at(
                entry_path,
                format!(
                    "`{from}` is neither a benchmark file (.jsonl, .jsonl.gz, .json, .parquet, .txt) nor a dataset version (`{from}@3`, `{from}@prod`)"
                ),
            ));
        };
        let name = clean_name(&name.unwrap_or_else(|| benchmarks::default_name(&origin)));
        if let Some(j) = resolved.iter().position(|r| r.name == name) {
            return Err(at(
                vec![key("benchmarks"), PathSeg::Index(i)],
                format!("benchmarks {j} and {i} are both named `{name}`: give one a `name:`"),
            ));
        }
        resolved.push(Benchmark { name, origin, fields, id });
    }
    c.resolved_benchmarks = resolved;
    c.datasets = Some(ctx.datasets.clone());
    Ok(c)
}

impl DecontaminateConfig {
    fn params(&self) -> Params {
        Params { n: self.n, min_words: self.min_words }
    }

    /// The index, built once per process.
    pub fn prepared(&self) -> std::result::Result<Arc<Prepared>, SchemaError> {
        self.prepared.get_or_init(|| self.prepare().map(Arc::new)).clone()
    }

    fn prepare(&self) -> std::result::Result<Prepared, SchemaError> {
        let p = self.params();
        let mut parts = Vec::with_capacity(self.resolved_benchmarks.len());
        for (i, b) in self.resolved_benchmarks.iter().enumerate() {
            let path = vec![key("benchmarks"), PathSeg::Index(i)];
            let fail = |e: EngineError| SchemaError::at_option(path.clone(), e.to_string(), None);
            match &b.origin {
                Origin::File(location) => {
                    if benchmarks::local_missing(location) {
                        return Err(SchemaError::at_option(
                            path,
                            format!("benchmark file {location} does not exist"),
                            Some("paths are relative to the pipeline file".into()),
                        ));
                    }
                    // Read once: hashed for lineage, then indexed.
                    let bytes = crate::fetch::read_location(location, "benchmark file")
                        .map_err(|e| fail(EngineError::User(e)))?;
                    let hash = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes));
                    let part = benchmarks::index_bytes(b, location, bytes, p).map_err(fail)?;
                    let info = serde_json::json!({"name": b.name, "from": location, "xxh3": hash});
                    parts.push((b.name.clone(), part, info));
                }
                Origin::Version(spec) => {
                    let datasets = self.datasets.clone().unwrap_or_else(|| DatasetRoots::new(Path::new("smelt-data")));
                    // On a thread of its own: the I/O runtime's `block_on` must not run inside an async task.
                    let got = std::thread::scope(|s| {
                        s.spawn(|| smelt_engine::blocking::block_on(benchmarks::index_version(b, &datasets, spec, p)))
                            .join()
                    })
                    .map_err(|_| fail(EngineError::Internal("reading the benchmark version panicked".into())))?;
                    let (part, version, built) = got.map_err(fail)?;
                    if built {
                        tracing::info!("stored the decontamination index of {version} beside it");
                    }
                    parts.push((b.name.clone(), part, serde_json::json!({"name": b.name, "from": version})));
                }
            }
        }
        Ok(Prepared::new(parts, p))
    }

    fn schema_for(&self, input: &SchemaRef) -> SchemaRef {
        if self.action != Action::Annotate {
            return input.clone();
        }
        let mut fields: Vec<Field> =
            input.fields().iter().filter(|f| f.name() != COLUMN).map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(COLUMN, DataType::List(Arc::new(entry_field())), false));
        Arc::new(Schema::new_with_metadata(fields, input.metadata().clone()))
    }
}

/// The fields of one `contamination` entry.
fn entry_fields() -> Fields {
    Fields::from(vec![Field::new("benchmark", DataType::Utf8, false), Field::new("item", DataType::Utf8, false)])
}

fn entry_field() -> Field {
    Field::new("item", DataType::Struct(entry_fields()), false)
}

impl TransformConfig for DecontaminateConfig {
    fn output_schema(&self, input: &SchemaRef) -> std::result::Result<SchemaRef, SchemaError> {
        require_column(input, &self.text, &[DataType::LargeUtf8, DataType::Utf8, DataType::Utf8View])?;
        self.prepared()?;
        Ok(self.schema_for(input))
    }

    fn resolved(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(Ok(p)) = self.prepared.get() {
            v["indexed"] = serde_json::Value::Array(p.lineage.clone());
        }
        v
    }

    fn build(&self, input: &SchemaRef) -> Result<Box<dyn Transform>> {
        let prepared = self.prepared().map_err(|e| EngineError::User(e.0))?;
        Ok(Box::new(Decontaminate {
            prepared,
            words: Words::default(),
            n: self.n,
            action: self.action,
            text: self.text.clone(),
            cut_chars: self.cut_chars,
            max_cuts: self.max_cuts,
            cap: self.samples,
            output: self.schema_for(input),
            hits: Vec::new(),
            keys: Vec::new(),
            candidates: Vec::new(),
            counters: BTreeMap::new(),
            samples: BTreeMap::new(),
        }))
    }
}

/// The runtime of one split.
struct Decontaminate {
    prepared: Arc<Prepared>,
    words: Words,
    n: usize,
    action: Action,
    text: String,
    cut_chars: usize,
    max_cuts: usize,
    cap: u32,
    output: SchemaRef,
    /// Hits of the document being scanned: (item, start byte, end byte).
    hits: Vec<(u32, usize, usize)>,
    /// n-gram keys of the document being scanned, by first word.
    keys: Vec<u64>,
    /// Indexes into `keys` of those the filter let through.
    candidates: Vec<u32>,
    counters: BTreeMap<String, u64>,
    /// Per benchmark, the smallest ids of contaminated documents.
    samples: BTreeMap<usize, BTreeSet<String>>,
}

/// What became of one document.
enum Outcome {
    Clean,
    /// Items held, in order of their first hit (drop or annotate).
    Held(Vec<u32>),
    /// The text with the matches cut out.
    Cut(String),
    /// Dropped, with the benchmark of the first hit.
    Dropped(usize),
}

impl Decontaminate {
    /// Finds the benchmark items in `text`. Its words are read first; then
    /// the n-grams go in three passes so that the index's cache misses
    /// overlap instead of following one another: the keys are made (each
    /// one's filter word asked for), the filter picks the candidates (each
    /// one's table slot asked for), and the candidates are looked up. Whole
    /// short items are looked for last, by their anchors.
    fn scan(&mut self, text: &str) {
        self.hits.clear();
        self.keys.clear();
        self.candidates.clear();
        self.words.scan(text);
        let (p, words, n) = (&*self.prepared, &self.words, self.n);
        let table = &p.table;
        let keys = &mut self.keys;
        words.each_key(n, |k| {
            table.prefetch_filter(k);
            keys.push(k);
        });
        let mut run = false;
        for (i, &k) in self.keys.iter().enumerate() {
            let candidate = table.may_hold(k);
            if candidate {
                // In a run of candidates (a copied item), dropping looks up only a few: the first is asked for.
                if !run {
                    table.prefetch_slot(k);
                }
                self.candidates.push(i as u32);
            }
            run = candidate;
        }
        // Dropping needs each matched stretch once: n-grams that start inside a
        // match are not counted again (a copied item hits every one of its n-grams).
        let skip_overlaps = self.action == Action::Drop;
        let mut covered = 0;
        for &first in &self.candidates {
            let first = first as usize;
            if skip_overlaps && first < covered {
                continue;
            }
            if let Some(item) = table.probe(self.keys[first]) {
                let (s, e) = words.span(first, n);
                self.hits.push((item, s, e));
                covered = first + n;
            }
        }
        if p.groups.is_empty() {
            return;
        }
        let found = self.hits.len();
        let mut first = 0;
        words.each_key(p.anchor_words, |anchor| {
            if p.anchors.may_hold(anchor) {
                if let Some(group) = p.anchors.probe(anchor) {
                    for short in &p.groups[group as usize] {
                        let len = short.len as usize;
                        if first + len <= words.len() && words.key(first, len) == short.whole {
                            let (s, e) = words.span(first, len);
                            self.hits.push((short.item, s, e));
                        }
                    }
                }
            }
            first += 1;
        });
        if self.hits.len() > found {
            self.hits.sort_by_key(|&(_, s, e)| (e, s));
        }
    }

    /// Counts the document's items and keeps its id as a sample; returns the items in order of first hit.
    fn record(&mut self, id: Option<&str>) -> Vec<u32> {
        let mut items: Vec<u32> = Vec::new();
        for &(item, _, _) in &self.hits {
            if !items.contains(&item) {
                items.push(item);
            }
        }
        let p = &self.prepared;
        let mut benches: Vec<usize> = Vec::new();
        for &item in &items {
            let b = p.benchmark_of(item);
            *self.counters.entry(format!("match:{}:{}", p.names[b], p.items[item as usize])).or_default() += 1;
            if !benches.contains(&b) {
                benches.push(b);
            }
        }
        for b in benches {
            *self.counters.entry(format!("contaminated:{}", p.names[b])).or_default() += 1;
            if let Some(id) = id {
                let set = self.samples.entry(b).or_default();
                set.insert(id.to_string());
                if set.len() > self.cap as usize {
                    set.pop_last();
                }
            }
        }
        items
    }

    /// `text` without the hits and `cut_chars` characters around each, or
    /// `None` when that takes more than `max_cuts` cuts or leaves no word.
    fn cut(&self, text: &str) -> Option<String> {
        let mut spans: Vec<(usize, usize)> = self
            .hits
            .iter()
            .map(|&(_, s, e)| {
                let start = text[..s].char_indices().rev().nth(self.cut_chars.saturating_sub(1)).map_or(0, |(i, _)| i);
                let start = if self.cut_chars == 0 { s } else { start };
                let end = text[e..].char_indices().nth(self.cut_chars).map_or(text.len(), |(i, _)| e + i);
                (start, end)
            })
            .collect();
        spans.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
        for (s, e) in spans {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        if merged.len() > self.max_cuts {
            return None;
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (s, e) in merged.iter().copied().chain(std::iter::once((text.len(), text.len()))) {
            let piece = text[at..s].trim();
            if !piece.is_empty() {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(piece);
            }
            at = e;
        }
        (ngrams::count_words(&out) > 0).then_some(out)
    }
}

impl Transform for Decontaminate {
    fn process(&mut self, batch: RecordBatch) -> Result<Processed> {
        let text_col = batch.column_by_name(&self.text).expect("schema checked").clone();
        let id_col = batch.column_by_name("id").cloned();
        let mut outcomes = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            let text = str_at(&text_col, i).unwrap_or("");
            self.scan(text);
            if self.hits.is_empty() {
                outcomes.push(Outcome::Clean);
                continue;
            }
            let items = self.record(id_col.as_ref().and_then(|c| str_at(c, i)));
            let first = self.prepared.benchmark_of(items[0]);
            outcomes.push(match self.action {
                Action::Drop | Action::Annotate => Outcome::Held(items),
                Action::Cut => match self.cut(text) {
                    Some(t) => {
                        *self.counters.entry(format!("cut:{}", self.prepared.names[first])).or_default() += 1;
                        Outcome::Cut(t)
                    }
                    None => Outcome::Dropped(first),
                },
            });
        }
        let p = &self.prepared;
        let reason = |b: usize| Some(Cow::Owned(format!("contaminated:{}", p.names[b])));
        match self.action {
            Action::Drop => {
                let verdicts = outcomes
                    .iter()
                    .map(|o| match o {
                        Outcome::Held(items) => reason(p.benchmark_of(items[0])),
                        _ => None,
                    })
                    .collect();
                Ok(Processed::Filtered { batch, verdicts })
            }
            Action::Annotate => {
                let mut list = ListBuilder::new(StructBuilder::from_fields(entry_fields(), batch.num_rows()))
                    .with_field(Arc::new(entry_field()));
                for o in &outcomes {
                    if let Outcome::Held(items) = o {
                        for &item in items {
                            let entry = list.values();
                            entry
                                .field_builder::<StringBuilder>(0)
                                .expect("benchmark")
                                .append_value(&p.names[p.benchmark_of(item)]);
                            entry
                                .field_builder::<StringBuilder>(1)
                                .expect("item")
                                .append_value(&p.items[item as usize]);
                            entry.append(true);
                        }
                    }
                    list.append(true);
                }
                let mut cols: Vec<ArrayRef> = batch
                    .schema()
                    .fields()
                    .iter()
                    .zip(batch.columns())
                    .filter(|(f, _)| f.name() != COLUMN)
                    .map(|(_, c)| c.clone())
                    .collect();
                cols.push(Arc::new(list.finish()));
                Ok(Processed::Batch(RecordBatch::try_new(self.output.clone(), cols)?))
            }
            Action::Cut => {
                if outcomes.iter().all(|o| matches!(o, Outcome::Clean)) {
                    let verdicts = vec![None; batch.num_rows()];
                    return Ok(Processed::Filtered { batch, verdicts });
                }
                let mut texts = LargeStringBuilder::new();
                let mut verdicts = Vec::with_capacity(batch.num_rows());
                for (i, o) in outcomes.iter().enumerate() {
                    match o {
                        Outcome::Cut(t) => texts.append_value(t),
                        _ => match str_at(&text_col, i) {
                            Some(t) => texts.append_value(t),
                            None => texts.append_null(),
                        },
                    }
                    verdicts.push(match o {
                        Outcome::Dropped(b) => reason(*b),
                        _ => None,
                    });
                }
                let texts: ArrayRef = Arc::new(texts.finish());
                let texts = arrow::compute::cast(&texts, text_col.data_type())?;
                let index = batch.schema().index_of(&self.text).expect("schema checked");
                let mut cols = batch.columns().to_vec();
                cols[index] = texts;
                let batch = RecordBatch::try_new(batch.schema(), cols)?;
                Ok(Processed::Filtered { batch, verdicts })
            }
        }
    }

    fn take_counters(&mut self) -> BTreeMap<String, u64> {
        std::mem::take(&mut self.counters)
    }

    fn take_samples(&mut self) -> BTreeMap<String, Samples> {
        let cap = self.cap;
        std::mem::take(&mut self.samples)
            .into_iter()
            .map(|(b, ids)| {
                (format!("contaminated:{}", self.prepared.names[b]), Samples { cap, ids: ids.into_iter().collect() })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
