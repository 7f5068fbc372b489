//! `classify` with `backend: http`: documents scored by a classifier behind
//! an inference server (a BERT-size model on GPUs, as FineWeb-Edu's runs),
//! through the guard rails `back_translate` uses.
//!
//! ```text
//! texts of a batch ──cache (xxh3-128 of the text)──► misses, in groups of batch_size
//!   api tei:        POST {url}/predict {"inputs": [[t1], [t2], ...], "truncate", "raw_scores"}
//!                   ◄── [[{"label", "score"}, ...], ...]   (one list per text, every label)
//!   api embeddings: POST {url}/v1/embeddings {"model", "input": [t1, t2, ...]}
//!                   ◄── {"data": [{"index", "embedding"}, ...]} ──linear head (head file): softmax | sigmoid | none──► label scores
//!   (≤ concurrency groups in flight, retries with backoff, timeouts, circuit breaker: augment::http::Guarded)
//! a group that still fails: its texts are unscored (null scores; kept or dropped by `on_error`), counted
//! ```
//! Answers are put back in the documents' order whatever order the groups
//! finish in, and cached on disk by the text's hash, so a rerun or a resumed
//! run does not send a text twice.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::augment::backend::Failure;
use crate::augment::http::{
    api_key_from_env, default_backoff_ms, default_breaker, default_concurrency, default_retries, default_timeout_s,
    Guarded, Limits,
};

/// The protocol the server speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// Hugging Face text-embeddings-inference's `POST /predict` (sequence classification models).
    #[default]
    Tei,
    /// An OpenAI-compatible `POST /v1/embeddings`, then a linear head from `head` (a JSON file).
    Embeddings,
}

/// What a document with no answer becomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Kept, with null scores (`keep` is not applied to it).
    #[default]
    Keep,
    /// Dropped with reason `unscored`.
    Drop,
}

fn default_batch_size() -> usize {
    32
}
fn default_true() -> bool {
    true
}

/// `http:` of `classify` (with `backend: http`).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpOptions {
    /// The server: its root for `tei` (`http://127.0.0.1:8080`), the API base for `embeddings` (`http://host:8000`, `/v1/embeddings` is added).
    pub url: String,
    /// `tei` (default) or `embeddings`.
    #[serde(default)]
    pub api: Api,
    /// `embeddings`: the linear head, a JSON file `{"labels": [...], "weights": [[...] per label], "bias": [...], "activation": "softmax"|"sigmoid"|"none"}` (path relative to the pipeline file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// Texts per request (default 32).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// `tei`: let the server cut texts longer than the model takes (default true; false: such texts fail).
    #[serde(default = "default_true")]
    pub truncate: bool,
    /// `tei`: the model's raw outputs instead of softmax probabilities (regression heads such as FineWeb-Edu's scorer).
    #[serde(default)]
    pub raw_scores: bool,
    /// Environment variable holding a bearer token (never logged or stored; unset: none sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Requests in flight at once (default 4).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Requests started per second at most (default: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<f64>,
    /// Retries of a request that failed with 408, 429, 5xx, a timeout, a dropped connection or an unreadable answer (default 3).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// First wait before a retry, doubled each time up to 30 s (default 500 ms).
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// Time allowed for one request (default 60 s).
    #[serde(default = "default_timeout_s")]
    pub timeout_s: f64,
    /// Requests failed in a row (after retries) that open the circuit breaker: nothing more is sent this run (default 5).
    #[serde(default = "default_breaker")]
    pub breaker_failures: u32,
    /// Documents the server gave no answer for: `keep` (default, null scores) or `drop` (`unscored`).
    #[serde(default)]
    pub on_error: OnError,
    /// Cache answers on disk by the text's hash under the data directory (default true).
    #[serde(default = "default_true")]
    pub cache: bool,
}

impl HttpOptions {
    /// The problem with these options, if any: (option below `http`, message).
    pub fn check(&self) -> Option<(&'static str, String)> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Some(("url", format!("`{}` is not an http:// or https:// URL", self.url)));
        }
        if self.batch_size == 0 || self.concurrency == 0 || self.breaker_failures == 0 || self.timeout_s <= 0.0 {
            return Some((
                "batch_size",
                "batch_size, concurrency, breaker_failures and timeout_s must be above 0".into(),
            ));
        }
        if self.requests_per_second.is_some_and(|r| r <= 0.0) {
            return Some(("requests_per_second", "must be above 0".into()));
        }
        if self.api == Api::Embeddings && self.head.is_none() {
            return Some((
                "head",
                "api `embeddings` needs `head`: a JSON file with the linear head's labels, weights and bias".into(),
            ));
        }
        None
    }
}

/// The activation of a linear head.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// Probabilities over the labels.
    #[default]
    Softmax,
    /// An independent probability per label.
    Sigmoid,
    /// The raw outputs.
    None,
}

/// A linear head over embeddings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    /// One label per output.
    pub labels: Vec<String>,
    /// One row of weights per label, each as long as an embedding.
    pub weights: Vec<Vec<f64>>,
    /// One bias per label.
    pub bias: Vec<f64>,
    /// `softmax` (default), `sigmoid` or `none`.
    #[serde(default)]
    pub activation: Activation,
}

impl Head {
    /// Reads and checks a head file.
    ///
    /// # Errors
    /// An unreadable or malformed file, rows of unequal length.
    pub fn load(path: &str) -> Result<Head, String> {
        let bytes = crate::fetch::read_location(path, "classifier head")?;
        let h: Head = serde_json::from_slice(&bytes).map_err(|e| format!("classifier head {path}: {e}"))?;
        if h.labels.is_empty() || h.labels.len() != h.weights.len() || h.labels.len() != h.bias.len() {
            return Err(format!(
                "classifier head {path}: {} labels, {} weight rows, {} biases: give one row and one bias per label",
                h.labels.len(),
                h.weights.len(),
                h.bias.len()
            ));
        }
        if h.weights.iter().any(|r| r.len() != h.weights[0].len() || r.is_empty()) {
            return Err(format!("classifier head {path}: the weight rows differ in length"));
        }
        Ok(h)
    }

    /// `(label, score)` per label for one embedding, in label order.
    fn apply(&self, e: &[f64]) -> Option<Vec<(String, f32)>> {
        if e.len() != self.weights[0].len() {
            return None;
        }
        let z: Vec<f64> = self
            .weights
            .iter()
            .zip(&self.bias)
            .map(|(w, b)| w.iter().zip(e).map(|(a, x)| a * x).sum::<f64>() + b)
            .collect();
        let out: Vec<f64> = match self.activation {
            Activation::Softmax => {
                let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let ex: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
                let s: f64 = ex.iter().sum();
                ex.iter().map(|v| v / s).collect()
            }
            Activation::Sigmoid => z.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect(),
            Activation::None => z,
        };
        Some(self.labels.iter().cloned().zip(out.into_iter().map(|v| v as f32)).collect())
    }
}

/// Every label's score for one text, as the server answered (best first for `tei`).
pub type Answer = Vec<(String, f32)>;

/// The client of one stage, shared by its splits.
#[derive(Debug)]
pub struct HttpClassifier {
    guard: Guarded,
    options: HttpOptions,
    /// `model` sent with `embeddings` requests.
    model: String,
    head: Option<Head>,
    api_key: Option<String>,
    cache: Option<ScoreCache>,
}

impl HttpClassifier {
    /// A client for `options`; `cache_root` is where answers are cached (`None`: not cached).
    ///
    /// # Errors
    /// The head file cannot be read, the HTTP client cannot be built.
    pub fn new(
        options: &HttpOptions,
        model: &str,
        head: Option<String>,
        cache_root: Option<&Path>,
    ) -> Result<Self, String> {
        let head = head.as_deref().map(Head::load).transpose()?;
        let limits = Limits {
            concurrency: options.concurrency,
            requests_per_second: options.requests_per_second,
            retries: options.retries,
            backoff: Duration::from_millis(options.backoff_ms),
            timeout: Duration::from_secs_f64(options.timeout_s),
            breaker_failures: options.breaker_failures,
        };
        let api_key = api_key_from_env(options.api_key_env.as_deref());
        // What changes an answer is the cache's identity.
        let identity = format!(
            "{:?}\n{}\n{}\n{}\n{}\n{}",
            options.api,
            options.url.trim_end_matches('/'),
            model,
            options.truncate,
            options.raw_scores,
            head.as_ref()
                .map_or(String::new(), |h| format!("{:?}{:?}{:?}{:?}", h.labels, h.weights, h.bias, h.activation))
        );
        let cache = match cache_root {
            Some(root) if options.cache => Some(ScoreCache::open(root, &identity)?),
            _ => None,
        };
        Ok(HttpClassifier {
            guard: Guarded::new(limits, "classification")?,
            options: options.clone(),
            model: model.to_string(),
            head,
            api_key,
            cache,
        })
    }

    /// The answers for `texts`, in order; `None` for a text the server gave no answer for.
    pub fn score(&self, texts: &[&str]) -> Vec<Option<Answer>> {
        let mut out: Vec<Option<Answer>> = vec![None; texts.len()];
        let mut missing: Vec<usize> = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            match self.cache.as_ref().and_then(|c| c.get(t)) {
                Some(a) => out[i] = Some(a),
                None => missing.push(i),
            }
        }
        if missing.is_empty() {
            return out;
        }
        let groups: Vec<Vec<usize>> = missing.chunks(self.options.batch_size.max(1)).map(<[usize]>::to_vec).collect();
        let answers = smelt_engine::blocking::block_on(async {
            futures::stream::iter(groups.iter().map(|g| {
                let batch: Vec<&str> = g.iter().map(|&i| texts[i]).collect();
                async move { self.request(&batch).await }
            }))
            .buffered(self.options.concurrency.max(1))
            .collect::<Vec<_>>()
            .await
        });
        for (g, answer) in groups.iter().zip(answers) {
            if let Ok(list) = answer {
                for (&i, a) in g.iter().zip(list) {
                    if let Some(c) = &self.cache {
                        c.put(texts[i], &a);
                    }
                    out[i] = Some(a);
                }
            }
        }
        out
    }

    async fn request(&self, texts: &[&str]) -> Result<Vec<Answer>, Failure> {
        let auth = self.api_key.as_ref().map(|k| format!("Bearer {k}"));
        let n = texts.len();
        let jitter_key = texts.first().copied().unwrap_or("");
        match self.options.api {
            Api::Tei => {
                let url = format!("{}/predict", self.options.url.trim_end_matches('/'));
                let inputs: Vec<[&str; 1]> = texts.iter().map(|t| [*t]).collect();
                let body = serde_json::json!({"inputs": inputs, "truncate": self.options.truncate, "raw_scores": self.options.raw_scores});
                self.guard.post(&url, &body, auth.as_deref(), jitter_key, |v| parse_tei(v, n)).await
            }
            Api::Embeddings => {
                let base = self.options.url.trim_end_matches('/');
                let url = if base.ends_with("/embeddings") {
                    base.to_string()
                } else if base.ends_with("/v1") {
                    format!("{base}/embeddings")
                } else {
                    format!("{base}/v1/embeddings")
                };
                let body = serde_json::json!({"model": self.model, "input": texts});
                let head = self.head.as_ref().expect("checked at configure time");
                self.guard.post(&url, &body, auth.as_deref(), jitter_key, |v| parse_embeddings(v, n, head)).await
            }
        }
    }

    /// The client's counters (requests, retries, failures, breaker trips), taken once.
    pub fn take_counters(&self) -> Vec<(String, u64)> {
        self.guard.take_counters()
    }
}

/// `[[{"label", "score"}, ...], ...]`, one list per text.
fn parse_tei(v: &serde_json::Value, n: usize) -> Option<Vec<Answer>> {
    let lists = v.as_array().filter(|a| a.len() == n)?;
    lists
        .iter()
        .map(|l| {
            l.as_array()?
                .iter()
                .map(|p| Some((p.get("label")?.as_str()?.to_string(), p.get("score")?.as_f64()? as f32)))
                .collect::<Option<Answer>>()
        })
        .collect()
}

/// `{"data": [{"index", "embedding"}, ...]}` through the head.
fn parse_embeddings(v: &serde_json::Value, n: usize, head: &Head) -> Option<Vec<Answer>> {
    let data = v.get("data")?.as_array().filter(|a| a.len() == n)?;
    let mut out: Vec<Option<Answer>> = vec![None; n];
    for (k, d) in data.iter().enumerate() {
        let i = d.get("index").and_then(serde_json::Value::as_u64).map_or(k, |i| i as usize);
        let e: Vec<f64> =
            d.get("embedding")?.as_array()?.iter().map(serde_json::Value::as_f64).collect::<Option<_>>()?;
        *out.get_mut(i)? = Some(head.apply(&e)?);
    }
    out.into_iter().collect()
}

/// Answers on disk, one append-only file per server, model and settings:
/// `<root>/<xxh3-64 of the identity>.tsv`, lines `<xxh3-128 of the text, hex>\t<answer as JSON>`.
/// A line cut short by a crash is skipped when the file is read.
#[derive(Debug)]
struct ScoreCache {
    map: Mutex<HashMap<u128, Answer>>,
    file: Mutex<File>,
    path: PathBuf,
}

impl ScoreCache {
    fn open(root: &Path, identity: &str) -> Result<ScoreCache, String> {
        std::fs::create_dir_all(root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
        let path = root.join(format!("{:016x}.tsv", xxhash_rust::xxh3::xxh3_64(identity.as_bytes())));
        let mut map = HashMap::new();
        if let Ok(f) = File::open(&path) {
            for line in BufReader::new(f).lines().map_while(std::io::Result::ok) {
                let Some((k, v)) = line.split_once('\t') else { continue };
                let (Ok(k), Ok(v)) = (u128::from_str_radix(k, 16), serde_json::from_str::<Answer>(v)) else { continue };
                map.insert(k, v);
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("cannot open the classification cache {}: {e}", path.display()))?;
        Ok(ScoreCache { map: Mutex::new(map), file: Mutex::new(file), path })
    }

    fn get(&self, text: &str) -> Option<Answer> {
        let k = xxhash_rust::xxh3::xxh3_128(text.as_bytes());
        self.map.lock().unwrap_or_else(|e| e.into_inner()).get(&k).cloned()
    }

    fn put(&self, text: &str, answer: &Answer) {
        let k = xxhash_rust::xxh3::xxh3_128(text.as_bytes());
        let line = format!("{k:032x}\t{}\n", serde_json::to_string(answer).unwrap_or_default());
        if let Err(e) = self.file.lock().unwrap_or_else(|e| e.into_inner()).write_all(line.as_bytes()) {
            tracing::warn!("cannot write the classification cache {}: {e}", self.path.display());
        }
        self.map.lock().unwrap_or_else(|e| e.into_inner()).insert(k, answer.clone());
    }
}
