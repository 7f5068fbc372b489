//! Benchmark items read for `decontaminate`, and their n-gram index.
//!
//! ```text
//! evals/mmlu.jsonl[.gz] | .json (array) | .parquet | .txt (one item per line) | s3://.../x.jsonl
//!   ──fields (default: every string or list of strings but the id, in the file's order)──► item text, item id
//! evals@3 (a committed version) ──`text` (or fields) and `id` of every row──► items
//!   ──stored beside the version: <root>/_indexes/decontaminate-<params>/<V>.bin (built once, then read)
//! items ──n or more words: every n-gram │ min_words..n-1 words: the whole item, under the key of its first min_words │ fewer: not indexed, counted──► Part
//! ```

use std::io::Read;
use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};
use smelt_engine::{str_at, DatasetRoots, EngineError, Result};

use super::ngrams::Words;

/// Format of stored indexes.
const INDEX_FORMAT: u32 = 2;
/// First bytes of a stored index.
const MAGIC: &[u8; 8] = b"SMELTDCX";

/// Where a benchmark's items come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A file: a local path or an object-store URL.
    File(String),
    /// A committed dataset version (`name@3`, `name@tag`, `path@latest`).
    Version(String),
}

/// One benchmark, as configured.
#[derive(Debug, Clone)]
pub struct Benchmark {
    /// Its name in reasons, counters and the `contamination` column.
    pub name: String,
    /// Where its items are.
    pub origin: Origin,
    /// Fields (or columns) whose text makes an item; empty: the defaults.
    pub fields: Vec<String>,
    /// The field holding an item's id; `None`: `id` if present, else the item's number.
    pub id: Option<String>,
}

/// The indexing rule for items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Words per n-gram.
    pub n: usize,
    /// Items with fewer words than `n` but at least this many are matched whole.
    pub min_words: usize,
}

/// An item of fewer than `n` words, matched whole: looked for where the
/// key of its first `min_words` words (the anchor) turns up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Short {
    /// Key of its first `min_words` words.
    pub anchor: u64,
    /// Key of all its words.
    pub whole: u64,
    /// Its words.
    pub len: u32,
    /// Its item number.
    pub item: u32,
}

/// A benchmark's index: its items and the keys that point at them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Part {
    /// Item ids, by item number.
    pub items: Vec<String>,
    /// `(key, item number)` of every n-gram, in item order.
    pub keys: Vec<(u64, u32)>,
    /// Items matched whole, in item order.
    pub shorts: Vec<Short>,
    /// Items matched whole (fewer than `n` words).
    pub short_items: u64,
    /// Items with fewer than `min_words` words: not indexed.
    pub too_short: u64,
}

impl Part {
    /// Adds one item.
    pub fn add(&mut self, id: String, text: &str, p: Params, words: &mut Words) {
        let item = self.items.len() as u32;
        self.items.push(id);
        words.scan(text);
        let len = words.len();
        if len >= p.n {
            let keys = &mut self.keys;
            words.each_key(p.n, |k| keys.push((k, item)));
        } else if len >= p.min_words.max(1) {
            let anchor = words.key(0, p.min_words.max(1));
            self.shorts.push(Short { anchor, whole: words.key(0, len), len: len as u32, item });
            self.short_items += 1;
        } else {
            self.too_short += 1;
        }
    }

    /// The stored form.
    fn to_bytes(&self, p: Params) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            64 + self.keys.len() * 12 + self.shorts.len() * 24 + self.items.iter().map(|i| i.len() + 4).sum::<usize>(),
        );
        out.extend_from_slice(MAGIC);
        for v in [INDEX_FORMAT, p.n as u32, p.min_words as u32] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [
            self.short_items,
            self.too_short,
            self.items.len() as u64,
            self.keys.len() as u64,
            self.shorts.len() as u64,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for id in &self.items {
            out.extend_from_slice(&(id.len() as u32).to_le_bytes());
            out.extend_from_slice(id.as_bytes());
        }
        for &(k, i) in &self.keys {
            out.extend_from_slice(&k.to_le_bytes());
            out.extend_from_slice(&i.to_le_bytes());
        }
        for s in &self.shorts {
            out.extend_from_slice(&s.anchor.to_le_bytes());
            out.extend_from_slice(&s.whole.to_le_bytes());
            out.extend_from_slice(&s.len.to_le_bytes());
            out.extend_from_slice(&s.item.to_le_bytes());
        }
        out
    }

    /// Reads the stored form; `None` when it was made with other parameters.
    fn from_bytes(b: &[u8], p: Params, location: &str) -> Result<Option<Part>> {
        let bad = |what: &str| {
            EngineError::External(format!("{location}: {what}; delete the file and the index is built again"))
        };
        let mut r = Cursor { b, at: 0 };
        if r.take(8).ok_or_else(|| bad("truncated"))? != MAGIC {
            return Err(bad("not a decontamination index"));
        }
        let format = r.u32().ok_or_else(|| bad("truncated"))?;
        if format != INDEX_FORMAT {
            return Err(bad(&format!("index format {format}, this smelt reads {INDEX_FORMAT}")));
        }
        let (n, min_words) = (r.u32().ok_or_else(|| bad("truncated"))?, r.u32().ok_or_else(|| bad("truncated"))?);
        if n as usize != p.n || min_words as usize != p.min_words {
            return Ok(None);
        }
        let mut part = Part {
            short_items: r.u64().ok_or_else(|| bad("truncated"))?,
            too_short: r.u64().ok_or_else(|| bad("truncated"))?,
            ..Part::default()
        };
        let items = r.u64().ok_or_else(|| bad("truncated"))?;
        let keys = r.u64().ok_or_else(|| bad("truncated"))?;
        let shorts = r.u64().ok_or_else(|| bad("truncated"))?;
        if items > b.len() as u64 || keys > b.len() as u64 / 12 || shorts > b.len() as u64 / 24 {
            return Err(bad("truncated"));
        }
        part.items.reserve(items as usize);
        for _ in 0..items {
            let len = r.u32().ok_or_else(|| bad("truncated"))? as usize;
            let id = r.take(len).ok_or_else(|| bad("truncated"))?;
            part.items.push(String::from_utf8(id.to_vec()).map_err(|_| bad("an item id is not UTF-8"))?);
        }
        part.keys.reserve(keys as usize);
        for _ in 0..keys {
            let k = r.u64().ok_or_else(|| bad("truncated"))?;
            let i = r.u32().ok_or_else(|| bad("truncated"))?;
            if i as u64 >= items {
                return Err(bad("a key points past the items"));
            }
            part.keys.push((k, i));
        }
        part.shorts.reserve(shorts as usize);
        for _ in 0..shorts {
            let (anchor, whole) = (r.u64().ok_or_else(|| bad("truncated"))?, r.u64().ok_or_else(|| bad("truncated"))?);
            let (len, item) = (r.u32().ok_or_else(|| bad("truncated"))?, r.u32().ok_or_else(|| bad("truncated"))?);
            if item as u64 >= items {
                return Err(bad("a key points past the items"));
            }
            if (len as usize) < p.min_words.max(1) || len as usize >= p.n {
                return Err(bad("a whole item's length is out of range"));
            }
            part.shorts.push(Short { anchor, whole, len, item });
        }
        if r.at != b.len() {
            return Err(bad("trailing bytes"));
        }
        Ok(Some(part))
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
}

/// Whether `location` names a benchmark file (by its extension).
pub fn is_file(location: &str) -> bool {
    let l = location.to_ascii_lowercase();
    let l = l.strip_suffix(".gz").unwrap_or(&l);
    [".jsonl", ".ndjson", ".json", ".parquet", ".txt"].iter().any(|e| l.ends_with(e))
}

/// The name a benchmark gets by default: the file's stem, or the dataset's name.
pub fn default_name(origin: &Origin) -> String {
    match origin {
        Origin::File(f) => {
            let file = f.rsplit('/').next().unwrap_or(f);
            let file = file.strip_suffix(".gz").unwrap_or(file);
            file.rsplit_once('.').map_or(file, |(stem, _)| stem).to_string()
        }
        Origin::Version(v) => {
            let name = v.rsplit_once('@').map_or(v.as_str(), |(n, _)| n);
            name.trim_end_matches('/').rsplit('/').next().unwrap_or(name).to_string()
        }
    }
}

/// A JSON object with its keys in the file's order (serde_json's `Map` sorts them).
struct Ordered(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Ordered, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> std::result::Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, serde_json::Value>()? {
                    out.push((k, v));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Appends the strings in `v` (a string, or lists of them, at any depth) to `out`, one per line.
fn push_strings(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::String(s) => {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(s);
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| push_strings(x, out)),
        _ => {}
    }
}

/// The value at a dotted `path` of an object.
fn lookup<'a>(obj: &'a [(String, serde_json::Value)], path: &str) -> Option<&'a serde_json::Value> {
    let (head, rest) = path.split_once('.').map_or((path, None), |(h, r)| (h, Some(r)));
    let v = obj.iter().find(|(k, _)| k == head).map(|(_, v)| v)?;
    let mut v = v;
    if let Some(rest) = rest {
        for seg in rest.split('.') {
            v = v.get(seg)?;
        }
    }
    Some(v)
}

/// An id value as text.
fn id_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Adds the item of one JSON object.
fn add_object(
    part: &mut Part,
    obj: &[(String, serde_json::Value)],
    b: &Benchmark,
    number: usize,
    p: Params,
    words: &mut Words,
) {
    let id_field = b.id.as_deref().unwrap_or("id");
    let id = lookup(obj, id_field).and_then(id_text).unwrap_or_else(|| number.to_string());
    let mut text = String::new();
    if b.fields.is_empty() {
        for (k, v) in obj {
            if k != id_field {
                push_strings(v, &mut text);
            }
        }
    } else {
        for f in &b.fields {
            if let Some(v) = lookup(obj, f) {
                push_strings(v, &mut text);
            }
        }
    }
    part.add(id, &text, p, words);
}

/// Decompresses `bytes` when `location` ends in `.gz`.
fn maybe_gunzip(bytes: Vec<u8>, location: &str) -> Result<Vec<u8>> {
    if !location.to_ascii_lowercase().ends_with(".gz") {
        return Ok(bytes);
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(&bytes[..])
        .read_to_end(&mut out)
        .map_err(|e| EngineError::User(format!("benchmark {location}: not readable as gzip: {e}")))?;
    Ok(out)
}

/// The index of a benchmark file.
pub fn index_file(b: &Benchmark, location: &str, p: Params) -> Result<Part> {
    let bytes = crate::fetch::read_location(location, "benchmark file").map_err(EngineError::User)?;
    index_bytes(b, location, bytes, p)
}

/// The index of a benchmark file's bytes, as read from `location` (which names its format).
pub fn index_bytes(b: &Benchmark, location: &str, bytes: Vec<u8>, p: Params) -> Result<Part> {
    let bytes = maybe_gunzip(bytes, location)?;
    let lower = location.to_ascii_lowercase();
    let lower = lower.strip_suffix(".gz").unwrap_or(&lower);
    let mut part = Part::default();
    let mut words = Words::default();
    if lower.ends_with(".parquet") {
        index_parquet(bytes::Bytes::from(bytes), b, location, p, &mut part)?;
        return Ok(part);
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        EngineError::User(format!("benchmark {location}: not UTF-8 (byte {})", e.utf8_error().valid_up_to()))
    })?;
    if lower.ends_with(".txt") {
        for (i, line) in text.lines().enumerate() {
            part.add(i.to_string(), line, p, &mut words);
        }
    } else if lower.ends_with(".json") {
        let items: Vec<Ordered> = serde_json::from_str(&text).map_err(|e| {
            EngineError::User(format!(
                "benchmark {location}: not a JSON array of objects: {e} (a file of one object per line is .jsonl)"
            ))
        })?;
        for (i, obj) in items.iter().enumerate() {
            add_object(&mut part, &obj.0, b, i, p, &mut words);
        }
    } else {
        let mut number = 0;
        for (line_no, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let obj: Ordered = serde_json::from_str(line).map_err(|e| {
                EngineError::User(format!("benchmark {location}:{}: not a JSON object: {e}", line_no + 1))
            })?;
            add_object(&mut part, &obj.0, b, number, p, &mut words);
            number += 1;
        }
    }
    Ok(part)
}

/// Reads the items of Parquet bytes: `fields` (default: every string or
/// list-of-string column but the id) and the id column.
fn index_parquet(bytes: bytes::Bytes, b: &Benchmark, location: &str, p: Params, part: &mut Part) -> Result<()> {
    let err = |e: parquet::errors::ParquetError| EngineError::User(format!("benchmark {location}: {e}"));
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(err)?;
    let schema = builder.schema().clone();
    let id_field = b.id.as_deref().unwrap_or("id");
    let is_text = |t: &DataType| match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::List(f) | DataType::LargeList(f) => {
            matches!(f.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
        }
        _ => false,
    };
    let fields: Vec<String> = if b.fields.is_empty() {
        schema
            .fields()
            .iter()
            .filter(|f| f.name() != id_field && is_text(f.data_type()))
            .map(|f| f.name().clone())
            .collect()
    } else {
        for f in &b.fields {
            match schema.field_with_name(f) {
                Ok(x) if is_text(x.data_type()) => {}
                Ok(x) => {
                    return Err(EngineError::User(format!(
                        "benchmark {location}: column `{f}` is {}, not text or a list of text",
                        x.data_type()
                    )))
                }
                Err(_) => {
                    return Err(EngineError::User(format!(
                        "benchmark {location} has no column `{f}`; its columns are: {}",
                        schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
                    )))
                }
            }
        }
        b.fields.clone()
    };
    let mut words = Words::default();
    let mut number = part.items.len();
    let mut text = String::new();
    for batch in builder.build().map_err(err)? {
        let batch = batch?;
        let id_col = batch.column_by_name(id_field);
        for i in 0..batch.num_rows() {
            text.clear();
            for f in &fields {
                let col = batch.column_by_name(f).expect("checked");
                push_column(col, i, &mut text);
            }
            let id = id_col
                .and_then(|c| {
                    str_at(c, i)
                        .map(str::to_string)
                        .or_else(|| arrow::util::display::array_value_to_string(c, i).ok().filter(|_| c.is_valid(i)))
                })
                .unwrap_or_else(|| number.to_string());
            part.add(id, &text, p, &mut words);
            number += 1;
        }
    }
    Ok(())
}

/// Appends row `i` of a text or list-of-text column to `out`, one string per line.
fn push_column(col: &arrow::array::ArrayRef, i: usize, out: &mut String) {
    let mut push = |s: &str| {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(s);
    };
    if let Some(s) = str_at(col, i) {
        push(s);
        return;
    }
    if col.is_null(i) {
        return;
    }
    let values = match col.data_type() {
        DataType::List(_) => col.as_list::<i32>().value(i),
        DataType::LargeList(_) => col.as_list::<i64>().value(i),
        _ => return,
    };
    for j in 0..values.len() {
        if let Some(s) = str_at(&values, j) {
            push(s);
        }
    }
}

/// What the name of a stored index records.
#[derive(Serialize)]
struct IndexKey<'a> {
    n: usize,
    min_words: usize,
    fields: &'a [String],
    id: Option<&'a str>,
    words: &'static str,
}

/// The index of a committed version: read from beside it, or built from its
/// shards and stored there. Returns the part, `dataset@version`, and whether it was built.
pub async fn index_version(
    b: &Benchmark,
    datasets: &DatasetRoots,
    spec: &str,
    p: Params,
) -> Result<(Part, String, bool)> {
    let e = smelt_engine::upstream::open_version(datasets, spec, "benchmarks").await?;
    let key =
        IndexKey { n: p.n, min_words: p.min_words, fields: &b.fields, id: b.id.as_deref(), words: "alnum-lower-v2" };
    let key = xxhash_rust::xxh3::xxh3_64(serde_json::to_string(&key).unwrap_or_default().as_bytes());
    let rel = format!("_indexes/decontaminate-{key:016x}/{:06}.bin", e.manifest.version);
    let location = format!("{}/{rel}", e.store.url());
    if let Some(bytes) = e.store.get(&rel).await? {
        if let Some(part) = Part::from_bytes(&bytes, p, &location)? {
            return Ok((part, e.name, false));
        }
    }
    tracing::info!("building the decontamination index of {} ({} documents)", e.name, e.manifest.totals.rows);
    let mut part = Part::default();
    let fields = if b.fields.is_empty() { vec!["text".to_string()] } else { b.fields.clone() };
    let with = Benchmark { fields, ..b.clone() };
    for shard in &e.manifest.shards {
        let bytes = e.shard(&shard.path).await?;
        index_parquet(bytes, &with, &format!("{}/{}", e.name, shard.path), p, &mut part)?;
    }
    e.store.put(&rel, part.to_bytes(p).into()).await?;
    Ok((part, e.name, true))
}

/// Whether `path` is a local file that exists (for messages).
pub fn local_missing(location: &str) -> bool {
    !location.contains("://") && !Path::new(location).is_file()
}

#[cfg(test)]
mod tests {
    use super::super::ngrams::whole_key;
    use super::*;

    const P: Params = Params { n: 4, min_words: 2 };

    fn bench(fields: &[&str]) -> Benchmark {
        Benchmark {
            name: "b".into(),
            origin: Origin::File("b.jsonl".into()),
            fields: fields.iter().map(|s| s.to_string()).collect(),
            id: None,
        }
    }

    #[test]
    fn items_short_items_and_the_stored_form() {
        let mut part = Part::default();
        let mut w = Words::default();
        part.add("long".into(), "one two three four five", P, &mut w);
        part.add("short".into(), "one two three", P, &mut w);
        part.add("tiny".into(), "one", P, &mut w);
        assert_eq!(part.items, ["long", "short", "tiny"]);
        assert_eq!(part.keys.len(), 2);
        let short = Short { anchor: whole_key("one two").0, whole: whole_key("one two three").0, len: 3, item: 1 };
        assert_eq!(part.shorts, [short]);
        assert_eq!((part.short_items, part.too_short), (1, 1));
        let bytes = part.to_bytes(P);
        assert_eq!(Part::from_bytes(&bytes, P, "x").unwrap(), Some(part.clone()));
        assert_eq!(Part::from_bytes(&bytes, Params { n: 5, min_words: 2 }, "x").unwrap(), None);
        let err = Part::from_bytes(&bytes[..bytes.len() - 3], P, "x").unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        // A whole item of n words would never be looked for: the file is damaged.
        let mut bad = bytes.clone();
        let at = bad.len() - 8;
        bad[at..at + 4].copy_from_slice(&4u32.to_le_bytes());
        let err = Part::from_bytes(&bad, P, "x").unwrap_err().to_string();
        assert!(err.contains("out of range"), "{err}");
    }

    #[test]
    fn json_fields_keep_the_files_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.jsonl");
        std::fs::write(
            &path,
            "{\"question\": \"zebra apple\", \"choices\": [\"mango kiwi\", \"pear\"], \"answer\": 1}\n\n{\"id\": \"q2\", \"question\": \"x\"}\n",
        )
        .unwrap();
        let part = index_file(&bench(&[]), &path.display().to_string(), P).unwrap();
        assert_eq!(part.items, ["0", "q2"]);
        // "zebra apple mango kiwi pear": two 4-grams, in the file's order.
        let want: Vec<u64> =
            ["zebra apple mango kiwi", "apple mango kiwi pear"].iter().map(|s| whole_key(s).0).collect();
        assert_eq!(part.keys.iter().map(|k| k.0).collect::<Vec<_>>(), want);
        let part = index_file(&bench(&["choices"]), &path.display().to_string(), P).unwrap();
        assert!(part.keys.is_empty());
        let whole = whole_key("mango kiwi pear").0;
        assert_eq!(part.shorts, [Short { anchor: whole_key("mango kiwi").0, whole, len: 3, item: 0 }]);
        std::fs::write(&path, "{\"a\": 1}\nnot json\n").unwrap();
        let err = index_file(&bench(&[]), &path.display().to_string(), P).unwrap_err().to_string();
        assert!(err.contains("q.jsonl:2: not a JSON object"), "{err}");
    }

    #[test]
    fn names_by_default() {
        assert_eq!(default_name(&Origin::File("evals/mmlu.jsonl.gz".into())), "mmlu");
        assert_eq!(default_name(&Origin::File("s3://b/x/hellaswag.parquet".into())), "hellaswag");
        assert_eq!(default_name(&Origin::Version("evals@3".into())), "evals");
        assert_eq!(default_name(&Origin::Version("/data/datasets/evals@prod".into())), "evals");
        assert!(is_file("a/b.JSONL") && is_file("x.txt.gz") && !is_file("evals@3"));
    }
}
