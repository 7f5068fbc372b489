//! Byte-level BPE `tokenizer.json` files (GPT-2, Qwen2/Qwen3) on github/rust-gems'
//! linear-time `bpe` crate, the machinery that runs the OpenAI encodings.
//!
//! ```text
//! text ──added tokens (normalized: false), Aho-Corasick leftmost-longest──► ids
//!   gaps ──NFC (if the file says so)──► added tokens (normalized: true) ──► ids
//!     gaps ──pre-tokenizer regex (look-ahead form)──► pieces ──BytePairEncoding──► ids
//! ```
//!
//! This is what HF `tokenizers` does for such a file, step for step. A file
//! runs here only if [`ByteLevelBpe::from_json`] proves that the result is
//! HF's: the BPE model is plain (no dropout, byte fallback, ignored merges or
//! affixes), the pre-tokenizer is one whose regex we have in look-ahead form,
//! the vocabulary is the 256 byte-level characters plus exactly one token per
//! merge, merges come in the order of their tokens' ids (the `bpe` crate ranks
//! pairs by the merged token's id, HF by the merge's line), and the merge table
//! the `bpe` crate derives from the vocabulary is the file's merge table, pair
//! for pair. Anything else is refused with the reason, and the caller runs the
//! file in the `tokenizers` crate instead.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use bpe::byte_pair_encoding::{find_hash_factor_for_dictionary, BytePairEncoding};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

/// Qwen2/Qwen2.5/Qwen3's `Split` regex, as written in their tokenizer.json files.
const QWEN2_REGEX: &str = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/// The Qwen2 regex in bpe-openai's look-ahead form (its `voyage3` pattern):
/// `\s+(?!\S)` becomes `\s+$` (end of text) or `\s+\s` with the last character dropped.
const QWEN2_PATTERNS: [(&str, bool); 3] = [
    ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+$", false),
    ("\\s+\\s", true),
    ("\\s+", false),
];

/// A byte-level BPE tokenizer.json that this backend reproduces exactly.
pub(super) struct ByteLevelBpe {
    tok: bpe_openai::Tokenizer,
    nfc: bool,
    /// Added tokens matched in the raw text (`normalized: false`).
    raw_added: Option<Added>,
    /// Added tokens matched in the normalized text (`normalized: true`).
    normalized_added: Option<Added>,
    /// The pre-tokenizer: `qwen2` or `gpt2`.
    pub(super) pre_tokenizer: &'static str,
}

struct Added {
    ac: AhoCorasick,
    ids: Vec<u32>,
}

/// GPT-2's byte-to-character table (`bytes_to_unicode`): printable Latin-1
/// bytes stand for themselves, the other 68 bytes for U+0100 onwards.
fn byte_of_char() -> HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut next = 0x100u32;
    (0..=255u8)
        .map(|b| {
            if printable(b) {
                (char::from(b), b)
            } else {
                next += 1;
                (char::from_u32(next - 1).expect("below U+0144"), b)
            }
        })
        .collect()
}

fn field<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key).unwrap_or(&Value::Null)
}

/// `null`, absent, `false` or the empty string.
fn off(v: &Value) -> bool {
    matches!(v, Value::Null | Value::Bool(false)) || v.as_str() == Some("")
}

/// The fields of `bpe::BytePairEncoding` as it serializes them, in order;
/// only the merge table it derived (`split_table`) is read.
#[derive(Deserialize)]
struct DerivedTables(
    IgnoredAny,
    IgnoredAny,
    IgnoredAny,
    Vec<(u32, u32)>,
    IgnoredAny,
    IgnoredAny,
    IgnoredAny,
    IgnoredAny,
    IgnoredAny,
    IgnoredAny,
);

impl ByteLevelBpe {
    /// Builds the backend from a parsed tokenizer.json, or says why this file
    /// is not one it reproduces exactly.
    pub(super) fn from_json(json: &Value) -> Result<ByteLevelBpe, String> {
        let model = field(json, "model");
        if field(model, "type").as_str() != Some("BPE") {
            return Err(format!("the model is {}, not BPE", field(model, "type")));
        }
        for key in ["dropout", "byte_fallback", "ignore_merges", "continuing_subword_prefix", "end_of_word_suffix"] {
            if !off(field(model, key)) {
                return Err(format!("the BPE model sets {key}"));
            }
        }
        let nfc = match field(json, "normalizer") {
            Value::Null => false,
            n if field(n, "type").as_str() == Some("NFC") => true,
            n => return Err(format!("normalizer {} (only none or NFC)", field(n, "type"))),
        };
        let (pre_tokenizer, patterns) = pre_tokenizer(field(json, "pre_tokenizer"))?;
        for key in ["decoder", "post_processor"] {
            let v = field(json, key);
            if !v.is_null() && field(v, "type").as_str() != Some("ByteLevel") {
                return Err(format!("{key} {} (only none or ByteLevel)", field(v, "type")));
            }
        }

        // The vocabulary: ids 0..n, each token's bytes from the byte-level alphabet.
        let chars = byte_of_char();
        let vocab = field(model, "vocab").as_object().ok_or("the BPE model has no vocab object")?;
        let n = vocab.len();
        let mut tokens: Vec<Option<Vec<u8>>> = vec![None; n];
        let mut id_of: HashMap<&str, u32> = HashMap::with_capacity(n);
        for (text, id) in vocab {
            let id = id
                .as_u64()
                .filter(|&i| (i as usize) < n)
                .ok_or_else(|| format!("vocab id of {text:?} is not below {n}"))?;
            let bytes: Option<Vec<u8>> = text.chars().map(|c| chars.get(&c).copied()).collect();
            let bytes = bytes.ok_or_else(|| format!("vocab entry {text:?} is not in the byte-level alphabet"))?;
            if tokens[id as usize].replace(bytes).is_some() {
                return Err(format!("vocab id {id} is used twice"));
            }
            id_of.insert(text.as_str(), id as u32);
        }
        for (c, b) in &chars {
            let mut s = [0u8; 4];
            if !id_of.contains_key(&*c.encode_utf8(&mut s)) {
                return Err(format!("byte {b:#04x} ({c:?}) has no token"));
            }
        }

        // Merges: one per non-byte token, in the order of the merged tokens' ids.
        let merges = field(model, "merges").as_array().ok_or("the BPE model has no merges list")?;
        let mut merge_of: Vec<Option<(u32, u32)>> = vec![None; n];
        let mut last = None;
        for (i, m) in merges.iter().enumerate() {
            let (a, b) = match m {
                Value::Array(pair) if pair.len() == 2 => (pair[0].as_str(), pair[1].as_str()),
                Value::String(s) => s.split_once(' ').map_or((None, None), |(a, b)| (Some(a), Some(b))),
                _ => (None, None),
            };
            let (Some(a), Some(b)) = (a, b) else {
                return Err(format!("merge {i} is not a pair of tokens"));
            };
            let id = |t: &str| id_of.get(t).copied().ok_or_else(|| format!("merge {i}: {t:?} is not in the vocab"));
            let (ia, ib, it) = (id(a)?, id(b)?, id(&format!("{a}{b}"))?);
            if last.is_some_and(|l| it <= l) {
                return Err(format!(
                    "merge {i} ({a} {b}) makes id {it}, not above the previous merge's: ranks differ from ids"
                ));
            }
            last = Some(it);
            if ia >= it || ib >= it {
                return Err(format!("merge {i} ({a} {b}) makes id {it} from a later token"));
            }
            merge_of[it as usize] = Some((ia, ib));
        }

        // Added tokens. One that is also a vocab entry made by no merge (GPT-2's
        // `<|endoftext|>`) is only ever produced as an added token: in the
        // `bpe` dictionary it holds 0xFF bytes, which UTF-8 text never contains.
        let mut raw = (Vec::new(), Vec::new());
        let mut normalized = (Vec::new(), Vec::new());
        let mut placeholders = 0usize;
        for t in field(json, "added_tokens").as_array().map(Vec::as_slice).unwrap_or_default() {
            let content =
                field(t, "content").as_str().filter(|c| !c.is_empty()).ok_or("an added token has no content")?;
            let id = field(t, "id").as_u64().ok_or_else(|| format!("added token {content:?} has no id"))? as u32;
            for key in ["single_word", "lstrip", "rstrip"] {
                if !off(field(t, key)) {
                    return Err(format!("added token {content:?} sets {key}"));
                }
            }
            match id_of.get(content) {
                Some(&v) if v != id => return Err(format!("added token {content:?} has id {id}, the vocab {v}")),
                None if (id as usize) < n => return Err(format!("added token {content:?} reuses vocab id {id}")),
                Some(_)
                    if merge_of[id as usize].is_none() && tokens[id as usize].as_ref().is_some_and(|b| b.len() > 1) =>
                {
                    placeholders += 1;
                    tokens[id as usize] = Some(vec![0xFF; 1 + placeholders]);
                }
                _ => {}
            }
            let Some(is_normalized) = field(t, "normalized").as_bool() else {
                return Err(format!("added token {content:?} does not say whether it is normalized"));
            };
            if is_normalized {
                let content = if nfc { hf_nfc(content).into_owned() } else { content.to_string() };
                normalized.0.push(content);
                normalized.1.push(id);
            } else {
                raw.0.push(content.to_string());
                raw.1.push(id);
            }
        }
        let is_placeholder = |b: &[u8]| b.len() > 1 && b.iter().all(|&x| x == 0xFF);
        let tokens: Vec<Vec<u8>> = tokens.into_iter().map(|b| b.expect("every id below n is filled")).collect();
        let mut seen = HashSet::with_capacity(n);
        for (id, b) in tokens.iter().enumerate() {
            if !seen.insert(b.as_slice()) {
                return Err(format!("two tokens have the bytes of id {id}"));
            }
            if b.len() > 1 && merge_of[id].is_none() && !is_placeholder(b) {
                return Err(format!("vocab id {id} is neither a byte nor made by a merge"));
            }
        }

        // The linear BPE over the same dictionary; its derived merge table must be the file's.
        let factor = find_hash_factor_for_dictionary(tokens.iter().cloned());
        let bpe = std::panic::catch_unwind(|| BytePairEncoding::from_dictionary(tokens.iter().cloned(), Some(factor)))
            .map_err(|_| "the bpe crate rejects this vocabulary (a token does not encode to itself)".to_string())?;
        let bytes = rmp_serde::to_vec(&bpe).map_err(|e| format!("cannot read the bpe crate's tables: {e}"))?;
        let derived: DerivedTables =
            rmp_serde::from_slice(&bytes).map_err(|e| format!("cannot read the bpe crate's tables: {e}"))?;
        for (id, split) in derived.3.iter().enumerate() {
            let want = merge_of[id].unwrap_or((id as u32, id as u32));
            if *split != want && !is_placeholder(&tokens[id]) {
                return Err(format!("the bpe crate makes id {id} from {split:?}, the file's merges from {want:?}"));
            }
        }
        let tok = bpe_openai::Tokenizer::new_lookahead(bpe, &patterns, false).map_err(|e| e.to_string())?;
        let trie = |(contents, ids): (Vec<String>, Vec<u32>)| -> Result<Option<Added>, String> {
            if ids.is_empty() {
                return Ok(None);
            }
            let ac = AhoCorasickBuilder::new().match_kind(MatchKind::LeftmostLongest).build(contents);
            Ok(Some(Added { ac: ac.map_err(|e| e.to_string())?, ids }))
        };
        Ok(ByteLevelBpe { tok, nfc, raw_added: trie(raw)?, normalized_added: trie(normalized)?, pre_tokenizer })
    }

    /// Appends the ids of `text` (HF's `encode(text, add_special_tokens=False)`).
    pub(super) fn encode(&self, text: &str, out: &mut Vec<u32>) {
        split_added(self.raw_added.as_ref(), text, out, &mut |segment, out| {
            let segment = if self.nfc { hf_nfc(segment) } else { Cow::Borrowed(segment) };
            split_added(self.normalized_added.as_ref(), &segment, out, &mut |piece, out| self.encode_plain(piece, out));
        });
    }

    fn encode_plain(&self, text: &str, out: &mut Vec<u32>) {
        let mut done = 0;
        for piece in self.tok.split(text) {
            done += piece.len();
            out.extend(self.tok.bpe.encode_via_backtracking(piece.as_bytes()));
        }
        // The patterns match every character; were one left, HF would keep it as its own piece.
        if done < text.len() {
            out.extend(self.tok.bpe.encode_via_backtracking(&text.as_bytes()[done..]));
        }
    }
}

/// The pre-tokenizers with a known look-ahead form.
fn pre_tokenizer(p: &Value) -> Result<(&'static str, [(&'static str, bool); 3]), String> {
    let byte_level = |v: &Value, use_regex: bool| {
        field(v, "type").as_str() == Some("ByteLevel")
            && off(field(v, "add_prefix_space"))
            && field(v, "use_regex").as_bool().unwrap_or(true) == use_regex
    };
    if byte_level(p, true) {
        return Ok(("gpt2", super::backend::R50K_PATTERNS));
    }
    if field(p, "type").as_str() == Some("Sequence") {
        if let Some([split, bl]) = field(p, "pretokenizers").as_array().map(Vec::as_slice) {
            if field(split, "type").as_str() == Some("Split")
                && field(field(split, "pattern"), "Regex").as_str() == Some(QWEN2_REGEX)
                && field(split, "behavior").as_str() == Some("Isolated")
                && off(field(split, "invert"))
                && byte_level(bl, false)
            {
                return Ok(("qwen2", QWEN2_PATTERNS));
            }
        }
    }
    Err("the pre-tokenizer is not ByteLevel (GPT-2 regex, no prefix space) or Split(Qwen2 regex) + ByteLevel".into())
}

/// HF's NFC (the `unicode-normalization-alignments` tables HF uses); text
/// already in NFC (nearly all) is returned as is without a copy.
fn hf_nfc(s: &str) -> Cow<'_, str> {
    use unicode_normalization::{is_nfc_quick, IsNormalized};
    if s.is_ascii() || is_nfc_quick(s.chars()) == IsNormalized::Yes {
        return Cow::Borrowed(s);
    }
    use unicode_normalization_alignments::UnicodeNormalization;
    Cow::Owned(s.nfc().map(|(c, _)| c).collect())
}

/// HF's added-token split: matches become their ids, the gaps go to `gap`.
fn split_added(added: Option<&Added>, text: &str, out: &mut Vec<u32>, gap: &mut dyn FnMut(&str, &mut Vec<u32>)) {
    let Some(added) = added else { return gap(text, out) };
    let mut last = 0;
    for m in added.ac.find_iter(text) {
        if last < m.start() {
            gap(&text[last..m.start()], out);
        }
        out.push(added.ids[m.pattern().as_usize()]);
        last = m.end();
    }
    if last < text.len() {
        gap(&text[last..], out);
    }
}
