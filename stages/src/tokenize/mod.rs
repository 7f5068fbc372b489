//! `tokenize` transform: turns `text` into token ids with a Hugging Face
//! `tokenizer.json` or an OpenAI encoding, and adds `input_ids` and
//! `n_tokens` (the engine sums `n_tokens` into the version's per-group
//! `tokens`). The tokenizer's name and content hash go into the stage's
//! resolved options (so the catalog's lineage records them) and into the
//! output schema's metadata, which the `parquet` sink writes as the shards'
//! key-value metadata (`smelt.tokenizer`, `smelt.tokenizer_hash`, ...).
//!
//! ```text
//! text ──encode──► [bos] ids [eos] ──max_tokens?──► truncate: one row, ends with eos
//!                                                └► split: rows id#0, id#1, ... (bos only in the first, eos only in the last)
//!      ──► input_ids: List<UInt32>, n_tokens: UInt32   (text dropped unless keep_text)
//! empty text, or no tokens ──► dropped: `empty_text`
//! ```
//!
//! Relative tokenizer paths are resolved against the pipeline file's
//! directory ([`ConfigureContext::resolve`]). The
//! tokenizer is read once when the compiler asks for the output schema, so
//! `smelt validate` reports a file that does not parse, naming it.

mod backend;
mod bytelevel;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow::array::{Array, ArrayRef, ListArray, StringBuilder, UInt32Array};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use smelt_engine::yaml::PathSeg;
use smelt_engine::{
    parse_options, require_column, str_at, ConfigureContext, EngineError, OptionError, Processed, Result, SchemaError,
    StageConfig, Transform, TransformConfig,
};

pub use backend::{LoadError, Loaded, ENCODINGS};

/// Schema metadata key: the tokenizer's name (`tiktoken:cl100k_base`, or the tokenizer.json path as written).
pub const META_TOKENIZER: &str = "smelt.tokenizer";
/// Schema metadata key: `xxh3-128:<hex>` of the tokenizer file, or of the encoding's tokens.
pub const META_TOKENIZER_HASH: &str = "smelt.tokenizer_hash";
/// Schema metadata key: the vocabulary size (ids are below it).
pub const META_VOCAB_SIZE: &str = "smelt.vocab_size";
/// Schema metadata key: the BOS id added to each document, if any.
pub const META_BOS_ID: &str = "smelt.bos_id";
/// Schema metadata key: the EOS id added to each document, if any.
pub const META_EOS_ID: &str = "smelt.eos_id";

/// A BOS/EOS choice: `true` (the tokenizer's usual token), `false` (none), a token's text or its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum TokenChoice {
    /// `true`: the tokenizer's usual token; `false`: none.
    Flag(bool),
    /// A token id.
    Id(u32),
    /// A token's text, e.g. `<|endoftext|>`.
    Token(String),
}

/// What to do with documents longer than `max_tokens`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Overflow {
    /// Keep the first tokens (and the EOS, if any): one row of `max_tokens`.
    #[default]
    Truncate,
    /// Cut into rows of at most `max_tokens`: ids `id#0`, `id#1`, ...
    Split,
}

/// Options of `tokenize`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenizeConfig {
    /// A Hugging Face `tokenizer.json` (path relative to the pipeline file), or
    /// `tiktoken:cl100k_base`, `tiktoken:o200k_base`, `tiktoken:r50k_base`, `tiktoken:p50k_base`.
    pub tokenizer: String,
    /// Token put before each document: `true` (the tokenizer's usual one: `<s>`, `[CLS]`,
    /// `<|begin_of_text|>`, `<bos>`), `false`, a token's text or an id. Default: the usual one if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_bos: Option<TokenChoice>,
    /// Token put after each document: `true` (the usual one: `<|endoftext|>`, `</s>`, `[SEP]`,
    /// `<|end_of_text|>`, `<eos>`), `false`, a token's text or an id. Default: the usual one if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_eos: Option<TokenChoice>,
    /// Most tokens in one row, BOS/EOS included (default: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Longer documents: `truncate` (default) or `split` into several rows.
    #[serde(default)]
    pub overflow: Overflow,
    /// Keep the `text` column beside the ids (default false: token shards hold ids only).
    #[serde(default)]
    pub keep_text: bool,
    /// Where the tokenizer file is read from (resolved at configure time).
    #[serde(skip)]
    path: PathBuf,
    /// The loaded tokenizer (or why it failed), shared by every split.
    #[serde(skip)]
    prepared: OnceLock<std::result::Result<Arc<Prepared>, String>>,
}

/// A loaded tokenizer with the BOS/EOS ids resolved.
#[derive(Debug)]
struct Prepared {
    tok: Loaded,
    bos: Option<u32>,
    eos: Option<u32>,
}

/// Registry hook (no I/O: the tokenizer is read when the schema is asked for).
///
/// # Errors
/// Unknown or invalid options.
pub fn configure(options: serde_json::Value, ctx: &ConfigureContext) -> Result<StageConfig, OptionError> {
    let mut c: TokenizeConfig = parse_options(options)?;
    let at =
        |field: &str, message: String| OptionError { path: vec![PathSeg::Key(field.into())], message, at_key: false };
    if let Some(enc) = c.tokenizer.strip_prefix("tiktoken:") {
        if !ENCODINGS.contains(&enc) {
            return Err(at("tokenizer", LoadError::Encoding(enc.to_string()).to_string()));
        }
    } else if c.tokenizer.trim().is_empty() {
        return Err(at("tokenizer", "`tokenizer` is empty: name a tokenizer.json or tiktoken:<encoding>".into()));
    }
    if let Some(m) = c.max_tokens {
        let specials = [&c.add_bos, &c.add_eos].iter().filter(|x| !matches!(x, Some(TokenChoice::Flag(false)))).count();
        if (m as usize) <= specials {
            return Err(at("max_tokens", format!("max_tokens must leave room for text beside BOS/EOS, got {m}")));
        }
    }
    c.path = ctx.resolve(Path::new(&c.tokenizer));
    Ok(StageConfig::Transform(Arc::new(c)))
}

impl TokenizeConfig {
    fn prepared(&self) -> std::result::Result<Arc<Prepared>, String> {
        self.prepared.get_or_init(|| self.prepare().map(Arc::new)).clone()
    }

    fn prepare(&self) -> std::result::Result<Prepared, String> {
        let tok = Loaded::load(&self.tokenizer, &self.path).map_err(|e| e.to_string())?;
        let pick = |choice: &Option<TokenChoice>, default: &Option<(String, u32)>, what: &str| match choice {
            None => Ok(default.as_ref().map(|d| d.1)),
            Some(TokenChoice::Flag(false)) => Ok(None),
            Some(TokenChoice::Flag(true)) => default.as_ref().map(|d| Some(d.1)).ok_or_else(|| {
                format!("tokenizer {} has no usual {what} token: name one (add_{what}: \"<token>\" or an id)", tok.name)
            }),
            Some(TokenChoice::Id(id)) if *id < tok.vocab_size => Ok(Some(*id)),
            Some(TokenChoice::Id(id)) => {
                Err(format!("add_{what}: id {id} is outside the vocabulary of {} ({} ids)", tok.name, tok.vocab_size))
            }
            Some(TokenChoice::Token(t)) => {
                tok.token_id(t).map(Some).ok_or_else(|| format!("add_{what}: `{t}` is not a token of {}", tok.name))
            }
        };
        let bos = pick(&self.add_bos, &tok.default_bos, "bos")?;
        let eos = pick(&self.add_eos, &tok.default_eos, "eos")?;
        Ok(Prepared { tok, bos, eos })
    }
}

/// The `input_ids` field: `List<UInt32>`.
pub fn input_ids_field() -> Field {
    Field::new("input_ids", DataType::List(Arc::new(Field::new("item", DataType::UInt32, false))), false)
}

impl TransformConfig for TokenizeConfig {
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, SchemaError> {
        require_column(input, "text", &[DataType::LargeUtf8, DataType::Utf8, DataType::Utf8View])?;
        let p = self.prepared().map_err(SchemaError::new)?;
        let mut fields: Vec<Field> = input
            .fields()
            .iter()
            .filter(|f| !matches!(f.name().as_str(), "input_ids" | "n_tokens"))
            .filter(|f| self.keep_text || f.name() != "text")
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(input_ids_field());
        fields.push(Field::new("n_tokens", DataType::UInt32, false));
        let mut meta = input.metadata().clone();
        meta.insert(META_TOKENIZER.into(), p.tok.name.clone());
        meta.insert(META_TOKENIZER_HASH.into(), p.tok.hash.clone());
        meta.insert(META_VOCAB_SIZE.into(), p.tok.vocab_size.to_string());
        for (key, id) in [(META_BOS_ID, p.bos), (META_EOS_ID, p.eos)] {
            match id {
                Some(id) => meta.insert(key.into(), id.to_string()),
                None => meta.remove(key),
            };
        }
        Ok(Arc::new(Schema::new_with_metadata(fields, meta)))
    }

    fn resolved(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let (Ok(p), Some(obj)) = (self.prepared(), v.as_object_mut()) {
            obj.insert("tokenizer_name".into(), p.tok.name.clone().into());
            obj.insert("tokenizer_hash".into(), p.tok.hash.clone().into());
            obj.insert("tokenizer_backend".into(), p.tok.backend.clone().into());
            obj.insert("vocab_size".into(), p.tok.vocab_size.into());
            obj.insert("bos_id".into(), p.bos.into());
            obj.insert("eos_id".into(), p.eos.into());
        }
        v
    }

    fn build(&self, input: &SchemaRef) -> Result<Box<dyn Transform>> {
        let prepared = self.prepared().map_err(EngineError::User)?;
        let output = self.output_schema(input).map_err(|e| EngineError::User(e.0))?;
        Ok(Box::new(Tokenize {
            prepared,
            max_tokens: self.max_tokens.map(|m| m as usize),
            overflow: self.overflow,
            keep_text: self.keep_text,
            output,
            ids: Vec::new(),
            counters: BTreeMap::new(),
        }))
    }
}

struct Tokenize {
    prepared: Arc<Prepared>,
    max_tokens: Option<usize>,
    overflow: Overflow,
    keep_text: bool,
    output: SchemaRef,
    ids: Vec<u32>,
    counters: BTreeMap<String, u64>,
}

impl Tokenize {
    /// The rows of one document as ranges of `self.ids` (already with BOS/EOS).
    fn rows(&mut self, out: &mut Vec<(usize, usize)>) {
        out.clear();
        let n = self.ids.len();
        match self.max_tokens {
            Some(max) if n > max => match self.overflow {
                Overflow::Truncate => {
                    *self.counters.entry("truncated_docs".into()).or_default() += 1;
                    *self.counters.entry("truncated_tokens".into()).or_default() += (n - max) as u64;
                    if let Some(eos) = self.prepared.eos {
                        self.ids[max - 1] = eos;
                    }
                    self.ids.truncate(max);
                    out.push((0, max));
                }
                Overflow::Split => {
                    *self.counters.entry("split_docs".into()).or_default() += 1;
                    out.extend((0..n).step_by(max).map(|s| (s, (s + max).min(n))));
                }
            },
            _ => out.push((0, n)),
        }
    }
}

impl Transform for Tokenize {
    fn process(&mut self, batch: RecordBatch) -> Result<Processed> {
        let text = batch.column_by_name("text").expect("schema checked").clone();
        let mut values: Vec<u32> = Vec::new();
        let mut offsets: Vec<i32> = vec![0];
        let mut n_tokens: Vec<u32> = Vec::with_capacity(batch.num_rows());
        let mut source_rows: Vec<u32> = Vec::with_capacity(batch.num_rows());
        let mut parts: Vec<Option<usize>> = Vec::with_capacity(batch.num_rows());
        let mut verdicts = Vec::with_capacity(batch.num_rows());
        let mut expanded = false;
        let mut ranges = Vec::new();
        for i in 0..batch.num_rows() {
            let mut verdict = None;
            self.ids.clear();
            match str_at(&text, i) {
                None if !text.is_null(i) => unreachable!("schema checked: text is a string column"),
                None => verdict = Some(Cow::Borrowed("empty_text")),
                Some(t) => {
                    self.ids.extend(self.prepared.bos);
                    let before = self.ids.len();
                    if let Err(e) = self.prepared.tok.encode(t, &mut self.ids) {
                        tracing::warn!("tokenizer failed on a document ({} bytes): {e}", t.len());
                        verdict = Some(Cow::Borrowed("tokenizer_error"));
                    } else if self.ids.len() == before {
                        verdict = Some(Cow::Borrowed("empty_text"));
                    }
                    self.ids.extend(self.prepared.eos);
                }
            }
            if verdict.is_some() {
                self.ids.clear();
            }
            self.rows(&mut ranges);
            if ranges.len() > 1 {
                expanded = true;
            }
            for (k, &(s, e)) in ranges.iter().enumerate() {
                values.extend_from_slice(&self.ids[s..e]);
                let end = i32::try_from(values.len())
                    .map_err(|_| EngineError::User("a batch holds more than 2^31 tokens: lower batch_rows".into()))?;
                offsets.push(end);
                n_tokens.push((e - s) as u32);
                source_rows.push(i as u32);
                parts.push((ranges.len() > 1).then_some(k));
                verdicts.push(verdict.clone());
            }
            if verdict.is_none() {
                *self.counters.entry("tokens".into()).or_default() += self.ids.len() as u64;
            }
        }
        let indices = UInt32Array::from(source_rows);
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(self.output.fields().len());
        let in_schema = batch.schema();
        for (f, c) in in_schema.fields().iter().zip(batch.columns()) {
            if matches!(f.name().as_str(), "input_ids" | "n_tokens") || (!self.keep_text && f.name() == "text") {
                continue;
            }
            let c = if expanded { arrow::compute::take(c.as_ref(), &indices, None)? } else { c.clone() };
            if f.name() == "id" && expanded {
                let mut ids = StringBuilder::with_capacity(c.len(), c.len() * 40);
                for (r, part) in parts.iter().enumerate() {
                    match (str_at(&c, r), part) {
                        (Some(id), Some(k)) => ids.append_value(format!("{id}#{k}")),
                        (Some(id), None) => ids.append_value(id),
                        (None, _) => ids.append_null(),
                    }
                }
                let ids: ArrayRef = Arc::new(ids.finish());
                cols.push(if f.data_type() == &DataType::Utf8 {
                    ids
                } else {
                    arrow::compute::cast(&ids, f.data_type())?
                });
            } else {
                cols.push(c);
            }
        }
        let item = Arc::new(Field::new("item", DataType::UInt32, false));
        let list =
            ListArray::try_new(item, OffsetBuffer::new(offsets.into()), Arc::new(UInt32Array::from(values)), None)?;
        cols.push(Arc::new(list));
        cols.push(Arc::new(UInt32Array::from(n_tokens)));
        let out = RecordBatch::try_new(self.output.clone(), cols)?;
        if verdicts.iter().all(Option::is_none) {
            return Ok(Processed::Batch(out));
        }
        Ok(Processed::Filtered { batch: out, verdicts })
    }

    fn take_counters(&mut self) -> BTreeMap<String, u64> {
        std::mem::take(&mut self.counters)
    }
}

#[cfg(test)]
mod tests;
