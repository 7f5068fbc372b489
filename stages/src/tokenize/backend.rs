//! The tokenizers behind `tokenize`: a Hugging Face `tokenizer.json` (the
//! `tokenizers` crate, Oniguruma regexes as in HF's Python package) or an
//! OpenAI encoding (`cl100k_base`, `o200k_base`, `r50k_base`, `p50k_base`).
//!
//! ```text
//! "tiktoken:cl100k_base" | "tiktoken:o200k_base" ──► bpe-openai (regex-automata split, linear-time BPE)
//! "tiktoken:r50k_base"   | "tiktoken:p50k_base"  ──► tiktoken-rs ranks ──► bpe BytePairEncoding (same linear BPE)
//! "path/tokenizer.json", byte-level BPE           ──► bytelevel::ByteLevelBpe (same linear BPE, checked equal at load)
//! "path/tokenizer.json", anything else            ──► tokenizers::Tokenizer (truncation and padding off)
//! ```
//!
//! A byte-level BPE file (GPT-2, Qwen2/Qwen3) runs on the `bpe` crate when
//! [`bytelevel::ByteLevelBpe::from_json`] proves it gives HF's ids (see there);
//! otherwise, and for every other model, it runs in the `tokenizers` crate.
//! [`Loaded::backend`] says which, and the stage records it in the lineage.
//!
//! The OpenAI encodings run on github/rust-gems' `bpe` crates: they give the
//! ids tiktoken gives (bench/tokenize.sh checks every shared news text) and
//! their byte-pair step is linear in the piece length, where tiktoken's is
//! quadratic (a 10 MB run of letters is one regex piece).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};

use bpe_openai::byte_pair_encoding::BytePairEncoding;

use super::bytelevel::ByteLevelBpe;

/// The hash factor bpe-openai uses for its own dictionaries; it has no
/// collision on r50k/p50k either (`from_dictionary` asserts that).
const BPE_HASH_FACTOR: u64 = 17_846_336_922_010_275_747;

/// GPT-2's pre-tokenizer (r50k, p50k) in bpe-openai's look-ahead form:
/// `\s+(?!\S)` becomes `\s+\s` with the last character dropped.
pub(super) const R50K_PATTERNS: [(&str, bool); 3] = [
    ("'(?:[sdmt]|ll|ve|re)| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+$", false),
    ("\\s+\\s", true),
    ("\\s", false),
];

/// A loaded tokenizer with its identity.
pub struct Loaded {
    /// What the pipeline named (`tiktoken:cl100k_base` or the tokenizer.json path as written).
    pub name: String,
    /// `xxh3-128:<hex>` of the tokenizer file, or of the encoding's name and token bytes.
    pub hash: String,
    /// Ids are below this.
    pub vocab_size: u32,
    /// Default begin-of-sequence token (text, id), if the tokenizer has a usual one.
    pub default_bos: Option<(String, u32)>,
    /// Default end-of-sequence / end-of-text token (text, id).
    pub default_eos: Option<(String, u32)>,
    /// Which code encodes: `bpe-openai`, `bpe (byte-level, qwen2 regex)` / `(..., gpt2 regex)` or `tokenizers`.
    pub backend: String,
    backend_impl: Backend,
}

enum Backend {
    /// The `tokenizers` crate, or the byte-level BPE backend when it reproduces the file
    /// (the `tokenizers` crate then only answers token-to-id look-ups).
    Hf(Box<tokenizers::Tokenizer>, Option<Arc<ByteLevelBpe>>),
    OpenAi(&'static bpe_openai::Tokenizer),
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded").field("name", &self.name).field("hash", &self.hash).finish()
    }
}

/// Why a tokenizer could not be loaded; the message names the file or encoding.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file cannot be read.
    #[error("cannot read tokenizer file {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a tokenizer.json the `tokenizers` crate accepts.
    #[error("tokenizer file {path} does not parse as a Hugging Face tokenizer.json: {message}")]
    Parse {
        /// The path.
        path: String,
        /// What the parser said.
        message: String,
    },
    /// An unknown `tiktoken:` encoding.
    #[error("unknown OpenAI encoding `{0}`: use tiktoken:cl100k_base, tiktoken:o200k_base, tiktoken:r50k_base or tiktoken:p50k_base")]
    Encoding(String),
}

/// The OpenAI encodings smelt knows.
pub const ENCODINGS: [&str; 4] = ["cl100k_base", "o200k_base", "r50k_base", "p50k_base"];

impl Loaded {
    /// Loads `spec`: `tiktoken:<encoding>` or a tokenizer.json at `path`
    /// (`spec` as written is the name; `path` is where it is read from).
    ///
    /// # Errors
    /// An unknown encoding, an unreadable file, a file that does not parse.
    pub fn load(spec: &str, path: &Path) -> Result<Loaded, LoadError> {
        if let Some(enc) = spec.strip_prefix("tiktoken:") {
            return Self::openai(enc);
        }
        let bytes =
            std::fs::read(path).map_err(|source| LoadError::Read { path: path.display().to_string(), source })?;
        Self::hf(spec, &bytes, &path.display().to_string())
    }

    /// A tokenizer.json from its bytes (`where_` names it in errors).
    ///
    /// # Errors
    /// The bytes do not parse.
    pub fn hf(name: &str, bytes: &[u8], where_: &str) -> Result<Loaded, LoadError> {
        let parse = |message: String| LoadError::Parse { path: where_.to_string(), message };
        let mut tok = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| parse(e.to_string()))?;
        // Dataset rows are whole documents: the file's truncation and padding
        // settings (BERT files often carry max_length 128) do not apply.
        tok.with_truncation(None).map_err(|e| parse(e.to_string()))?;
        tok.with_padding(None);
        let find =
            |candidates: &[&str]| candidates.iter().find_map(|t| tok.token_to_id(t).map(|id| ((*t).to_string(), id)));
        let default_bos = find(&["<s>", "[CLS]", "<|begin_of_text|>", "<bos>"]);
        let default_eos = find(&["<|endoftext|>", "</s>", "[SEP]", "<|end_of_text|>", "<eos>"]);
        let vocab_size = tok.get_vocab_size(true) as u32;
        let max_id = tok.get_added_tokens_decoder().keys().copied().max().unwrap_or(0);
        let hash = format!("xxh3-128:{:032x}", xxhash_rust::xxh3::xxh3_128(bytes));
        let fast = byte_level_backend(&hash, bytes);
        let backend = match &fast {
            Ok(b) => {
                tracing::info!("tokenizer {where_} runs on the byte-level BPE backend ({} regex)", b.pre_tokenizer);
                format!("bpe (byte-level, {} regex)", b.pre_tokenizer)
            }
            Err(why) => {
                tracing::info!("tokenizer {where_} runs in the tokenizers crate: {why}");
                "tokenizers".to_string()
            }
        };
        Ok(Loaded {
            name: name.to_string(),
            hash,
            vocab_size: vocab_size.max(max_id + 1),
            default_bos,
            default_eos,
            backend,
            backend_impl: Backend::Hf(Box::new(tok), fast.ok()),
        })
    }

    fn openai(enc: &str) -> Result<Loaded, LoadError> {
        if !ENCODINGS.contains(&enc) {
            return Err(LoadError::Encoding(enc.to_string()));
        }
        let shared = openai_encoding(enc);
        let (bpe, eos_id, hash) = (shared.0, shared.1, shared.2.clone());
        Ok(Loaded {
            name: format!("tiktoken:{enc}"),
            hash,
            vocab_size: (bpe.bpe.num_tokens() as u32).max(eos_id + 1),
            default_bos: None,
            default_eos: Some(("<|endoftext|>".to_string(), eos_id)),
            backend: "bpe-openai".to_string(),
            backend_impl: Backend::OpenAi(bpe),
        })
    }

    /// The id of a token given as text: a special or added token, or a
    /// vocabulary entry (HF); `<|endoftext|>` (OpenAI).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        match &self.backend_impl {
            Backend::Hf(t, _) => t.token_to_id(token),
            Backend::OpenAi(_) => self.default_eos.as_ref().filter(|(t, _)| t == token).map(|(_, id)| *id),
        }
    }

    /// Appends the ids of `text` to `out` (no BOS/EOS; special tokens written
    /// in the text are recognised by HF tokenizers, as HF's `encode` does, and
    /// are plain text for OpenAI encodings, as tiktoken's `encode_ordinary`).
    ///
    /// # Errors
    /// The HF tokenizer failed on the text (the message says why).
    pub fn encode(&self, text: &str, out: &mut Vec<u32>) -> Result<(), String> {
        match &self.backend_impl {
            Backend::Hf(_, Some(fast)) => fast.encode(text, out),
            Backend::Hf(t, None) => {
                let e = t.encode_fast(text, false).map_err(|e| e.to_string())?;
                out.extend_from_slice(e.get_ids());
            }
            Backend::OpenAi(t) => {
                let text = t.normalize(text);
                for piece in t.split(text.as_str()) {
                    out.extend(t.bpe.encode_via_backtracking(piece.as_bytes()));
                }
            }
        }
        Ok(())
    }

    /// The text of `ids`, for showing a sample (`smelt train batch`): the
    /// end-of-text id reads as its token, bytes that are not UTF-8 as U+FFFD,
    /// ids outside the vocabulary as `<id>`.
    pub fn decode_lossy(&self, ids: &[u32]) -> String {
        let eos = self.default_eos.as_ref().map(|(_, id)| *id);
        let mut out = String::new();
        let mut run: Vec<u32> = Vec::new();
        let flush = |run: &mut Vec<u32>, out: &mut String| {
            if run.is_empty() {
                return;
            }
            let text = match &self.backend_impl {
                Backend::OpenAi(t) => String::from_utf8_lossy(&t.bpe.decode_tokens(run)).into_owned(),
                Backend::Hf(t, _) => t.decode(run, false).unwrap_or_else(|e| format!("<{e}>")),
            };
            out.push_str(&text);
            run.clear();
        };
        for &id in ids {
            if Some(id) == eos {
                flush(&mut run, &mut out);
                out.push_str(self.default_eos.as_ref().map_or("", |(t, _)| t.as_str()));
            } else if id >= self.vocab_size
                || matches!(&self.backend_impl, Backend::OpenAi(t) if id as usize >= t.bpe.num_tokens())
            {
                flush(&mut run, &mut out);
                out.push_str(&format!("<{id}>"));
            } else {
                run.push(id);
            }
        }
        flush(&mut run, &mut out);
        out
    }
}

/// The byte-level BPE backend for a tokenizer.json, or why it does not apply.
/// Built once per file content and process (a 150k vocabulary takes a second or two).
fn byte_level_backend(hash: &str, bytes: &[u8]) -> Result<Arc<ByteLevelBpe>, String> {
    type Cache = Mutex<HashMap<String, Result<Arc<ByteLevelBpe>, String>>>;
    static CACHE: LazyLock<Cache> = LazyLock::new(Default::default);
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(b) = cache.get(hash) {
        return b.clone();
    }
    let built = serde_json::from_slice(bytes)
        .map_err(|e| e.to_string())
        .and_then(|json| ByteLevelBpe::from_json(&json))
        .map(Arc::new);
    cache.insert(hash.to_string(), built.clone());
    built
}

/// One encoding: the tokenizer, its `<|endoftext|>` id, its hash.
type Shared = (&'static bpe_openai::Tokenizer, u32, String);

/// Each encoding is built once per process and kept for its life (r50k/p50k
/// take a moment: their BPE tables are derived from tiktoken-rs's ranks).
fn openai_encoding(enc: &str) -> Arc<Shared> {
    static CACHE: LazyLock<Mutex<HashMap<String, Arc<Shared>>>> = LazyLock::new(Default::default);
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = cache.get(enc) {
        return s.clone();
    }
    let (tok, eos): (&'static bpe_openai::Tokenizer, u32) = match enc {
        "cl100k_base" => (bpe_openai::cl100k_base(), 100_257),
        "o200k_base" => (bpe_openai::o200k_base(), 199_999),
        _ => {
            let core = if enc == "r50k_base" {
                tiktoken_rs::r50k_base_singleton()
            } else {
                tiktoken_rs::p50k_base_singleton()
            };
            (Box::leak(Box::new(gpt2_family(core))), 50_256)
        }
    };
    let hash = encoding_hash(enc, &tok.bpe);
    let s = Arc::new((tok, eos, hash));
    cache.insert(enc.to_string(), s.clone());
    s
}

/// r50k/p50k: the token bytes in rank order from tiktoken-rs, the special
/// `<|endoftext|>` (50256) held by two 0xFF bytes, which never occur in UTF-8
/// text, so it is never produced by encoding.
fn gpt2_family(core: &tiktoken_rs::CoreBPE) -> bpe_openai::Tokenizer {
    let mut tokens = Vec::new();
    for id in 0u32.. {
        if id == 50_256 {
            tokens.push(vec![0xFF, 0xFF]);
            continue;
        }
        match core.decode_bytes(&[id]) {
            Ok(b) if !b.is_empty() => tokens.push(b),
            _ => break,
        }
    }
    let bpe = BytePairEncoding::from_dictionary(tokens, Some(BPE_HASH_FACTOR));
    bpe_openai::Tokenizer::new_lookahead(bpe, &R50K_PATTERNS, false).expect("GPT-2 patterns compile")
}

/// xxh3-128 over the encoding's name and every token's bytes in id order.
fn encoding_hash(name: &str, bpe: &BytePairEncoding) -> String {
    let mut buf = Vec::with_capacity(bpe.num_tokens() * 8);
    buf.extend_from_slice(name.as_bytes());
    buf.push(0);
    for id in 0..bpe.num_tokens() as u32 {
        let b = bpe.token_bytes(id);
        buf.extend_from_slice(&(b.len() as u32).to_le_bytes());
        buf.extend_from_slice(b);
    }
    format!("xxh3-128:{:032x}", xxhash_rust::xxh3::xxh3_128(&buf))
}
