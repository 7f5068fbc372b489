//! The HTTP backends: an OpenAI-compatible chat-completions endpoint (vLLM,
//! llama.cpp server, Ollama, hosted APIs) and the LibreTranslate API, with
//! the same guard rails: a concurrency limit, a rate limit, retries with
//! exponential backoff, timeouts, and a circuit breaker.
//!
//! ```text
//! pieces ──(≤ concurrency in flight, ≤ requests_per_second)──► POST ──200──► translation
//!                                  ▲ 429/5xx/timeout/garbage: retry after backoff·2^n (≤ retries)
//!        still failing ──► failure (counted); breaker_failures failures in a row ──► breaker open:
//!        nothing more is sent, every later piece fails at once as `circuit_open` (the run finishes)
//! ```
//! The API key is read from an environment variable when the backend is
//! built; it is sent in the `Authorization` header (OpenAI) or the body
//! (LibreTranslate) and never logged, printed or stored.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use smelt_engine::backoff::{jitter, Backoff};

use super::backend::{count_words, language_name, Failure, Translated, Translator};

/// The guard rails of an HTTP backend.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Requests started per second at most (none: no limit).
    pub requests_per_second: Option<f64>,
    /// Retries of a failed request (429, 5xx, timeout, unreadable answer).
    pub retries: u32,
    /// First backoff; doubled after each retry, at most 30 s, scaled by a jitter into [1/2, 1] (smelt's one backoff).
    pub backoff: Duration,
    /// Time allowed for one request, connection included.
    pub timeout: Duration,
    /// Failed pieces in a row (after their retries) that open the circuit breaker.
    pub breaker_failures: u32,
}

/// Which API the endpoint speaks.
#[derive(Clone)]
pub enum Api {
    /// `POST {url}/chat/completions`.
    OpenAi {
        /// Base URL (`http://host:8000/v1`) or the full chat-completions URL.
        url: String,
        /// `model` of the request.
        model: String,
        /// System prompt; `{source}` and `{target}` become the language names.
        prompt: String,
        /// Sampling temperature.
        temperature: f64,
        /// Bearer token.
        api_key: Option<String>,
    },
    /// `POST {url}/translate`.
    LibreTranslate {
        /// Base URL of the server.
        url: String,
        /// `api_key` of the request.
        api_key: Option<String>,
    },
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        match self {
            Api::OpenAi { url, model, .. } => f.debug_struct("OpenAi").field("url", url).field("model", model).finish(),
            Api::LibreTranslate { url, .. } => f.debug_struct("LibreTranslate").field("url", url).finish(),
        }
    }
}

/// Default of the HTTP backends' `concurrency`: requests in flight at once.
pub(crate) fn default_concurrency() -> usize {
    4
}
/// Default of `retries`.
pub(crate) fn default_retries() -> u32 {
    3
}
/// Default of `backoff_ms`: the first wait before a retry.
pub(crate) fn default_backoff_ms() -> u64 {
    500
}
/// Default of `timeout_s`: the time allowed for one request.
pub(crate) fn default_timeout_s() -> f64 {
    60.0
}
/// Default of `breaker_failures`: failures in a row that open the circuit breaker.
pub(crate) fn default_breaker() -> u32 {
    5
}

/// The API key in the environment variable `var` (`None` when no variable is
/// named, or it is unset or empty: a warning, and requests go without a key).
/// The key is never logged.
pub(crate) fn api_key_from_env(var: Option<&str>) -> Option<String> {
    let var = var?;
    match std::env::var(var) {
        Ok(k) if !k.is_empty() => Some(k),
        _ => {
            tracing::warn!("`{var}` is not set: requests go without an API key");
            None
        }
    }
}

/// An HTTP translation backend. Stages run on the engine's blocking threads,
/// so it waits on its requests through smelt's I/O runtime
/// (`smelt_engine::blocking`).
#[derive(Debug)]
pub struct Http {
    api: Api,
    /// Languages the endpoint translates (empty: any).
    languages: Vec<String>,
    guard: Guarded,
}

/// One failed attempt: what happened, and whether trying again may help.
struct Attempt {
    message: String,
    retry: bool,
}

/// A JSON-over-HTTP client with the guard rails every HTTP backend shares
/// (`back_translate`'s translators, `classify`'s inference servers): the
/// concurrency the caller keeps to [`Limits::concurrency`], a rate limit,
/// retries with backoff, timeouts, a circuit breaker, and counters.
#[derive(Debug)]
pub struct Guarded {
    limits: Limits,
    /// What a failure log line names ("translation", "classification").
    what: &'static str,
    client: reqwest::Client,
    next_slot: Mutex<Option<tokio::time::Instant>>,
    in_a_row: AtomicU32,
    open: AtomicBool,
    requests: AtomicU64,
    retries: AtomicU64,
    failures: AtomicU64,
    trips: AtomicU64,
}

impl Guarded {
    /// A client with `limits`; `what` names its requests in log lines.
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(limits: Limits, what: &'static str) -> Result<Guarded, String> {
        let client = {
            let _g = smelt_engine::blocking::runtime().enter();
            reqwest::Client::builder()
                .timeout(limits.timeout)
                .connect_timeout(limits.timeout)
                .user_agent(concat!("smelt/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| format!("cannot build the HTTP client: {e}"))?
        };
        Ok(Guarded {
            limits,
            what,
            client,
            next_slot: Mutex::new(None),
            in_a_row: AtomicU32::new(0),
            open: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            trips: AtomicU64::new(0),
        })
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Waits for the next request slot of the rate limit.
    async fn pace(&self) {
        let Some(rps) = self.limits.requests_per_second else {
            return;
        };
        let at = {
            let mut next = self.next_slot.lock().unwrap_or_else(|e| e.into_inner());
            let now = tokio::time::Instant::now();
            let at = next.map_or(now, |n| n.max(now));
            *next = Some(at + Duration::from_secs_f64(1.0 / rps));
            at
        };
        tokio::time::sleep_until(at).await;
    }

    /// POSTs `body` to `url` until an answer `parse` accepts, retrying what
    /// may pass on a retry; `jitter_key` spreads the retries of different
    /// requests. A failure after the retries counts toward the breaker.
    ///
    /// # Errors
    /// The last attempt's failure, or [`Failure::CircuitOpen`] once the breaker is open.
    pub async fn post<T>(
        &self,
        url: &str,
        body: &serde_json::Value,
        auth: Option<&str>,
        jitter_key: &str,
        parse: impl Fn(&serde_json::Value) -> Option<T>,
    ) -> Result<T, Failure> {
        let mut attempt = 0u32;
        let body = body.to_string();
        loop {
            if self.open.load(Ordering::SeqCst) {
                return Err(Failure::CircuitOpen);
            }
            self.pace().await;
            self.requests.fetch_add(1, Ordering::Relaxed);
            match self.request(url, &body, auth, &parse).await {
                Ok(t) => {
                    self.in_a_row.store(0, Ordering::SeqCst);
                    return Ok(t);
                }
                Err(a) if a.retry && attempt < self.limits.retries => {
                    attempt += 1;
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    let wait =
                        Backoff::new(self.limits.backoff, Duration::from_secs(30)).delay(attempt, jitter(jitter_key));
                    tracing::debug!("{} request failed ({}), retry {attempt} in {wait:?}", self.what, a.message);
                    tokio::time::sleep(wait).await;
                }
                Err(a) => {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    let n = self.in_a_row.fetch_add(1, Ordering::SeqCst) + 1;
                    tracing::warn!("{} failed after {attempt} retries: {}", self.what, a.message);
                    if n >= self.limits.breaker_failures && !self.open.swap(true, Ordering::SeqCst) {
                        self.trips.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(
                            "circuit breaker open: {n} {}s failed in a row; nothing more is sent this run (the documents are kept as they are)",
                            self.what
                        );
                    }
                    return Err(Failure::Backend(a.message));
                }
            }
        }
    }

    async fn request<T>(
        &self,
        url: &str,
        body: &str,
        auth: Option<&str>,
        parse: &impl Fn(&serde_json::Value) -> Option<T>,
    ) -> Result<T, Attempt> {
        let mut req = self.client.post(url).header("content-type", "application/json").body(body.to_string());
        if let Some(k) = auth {
            req = req.header("authorization", k);
        }
        let resp = req.send().await.map_err(|e| Attempt {
            message: if e.is_timeout() { format!("{url}: timed out") } else { format!("{url}: {}", without_url(&e)) },
            retry: true,
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| Attempt {
            message: if e.is_timeout() {
                format!("{url}: timed out reading the answer")
            } else {
                format!("{url}: {}", without_url(&e))
            },
            retry: true,
        })?;
        if !status.is_success() {
            let snippet: String = String::from_utf8_lossy(&bytes).chars().take(200).collect();
            return Err(Attempt {
                message: format!("{url}: HTTP {status}: {}", snippet.trim()),
                retry: status.as_u16() == 429 || status.as_u16() == 408 || status.is_server_error(),
            });
        }
        let garbage = |what: &str| Attempt {
            message: format!(
                "{url}: unreadable answer ({what}): {}",
                String::from_utf8_lossy(&bytes).chars().take(120).collect::<String>()
            ),
            retry: true,
        };
        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| garbage("not JSON"))?;
        parse(&v).ok_or_else(|| garbage(&format!("no {} in it", self.what)))
    }

    /// `http_requests`, `http_retries`, `http_failures`, `circuit_breaker_trips` since the last call (those above 0).
    pub fn take_counters(&self) -> Vec<(String, u64)> {
        [
            ("http_requests", &self.requests),
            ("http_retries", &self.retries),
            ("http_failures", &self.failures),
            ("circuit_breaker_trips", &self.trips),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.swap(0, Ordering::Relaxed)))
        .filter(|(_, v)| *v > 0)
        .collect()
    }
}

impl Http {
    /// A backend for `api` with `limits`, translating `languages` (empty: any).
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(api: Api, limits: Limits, languages: Vec<String>) -> Result<Http, String> {
        Ok(Http { api, languages, guard: Guarded::new(limits, "translation")? })
    }

    async fn one(&self, from: &str, to: &str, text: &str) -> Result<Translated, Failure> {
        let (url, body, key) = match &self.api {
            Api::OpenAi { url, model, prompt, temperature, api_key } => {
                let url = if url.ends_with("/chat/completions") {
                    url.clone()
                } else {
                    format!("{}/chat/completions", url.trim_end_matches('/'))
                };
                let system = prompt.replace("{source}", language_name(from)).replace("{target}", language_name(to));
                let body = serde_json::json!({
                    "model": model,
                    "temperature": temperature,
                    "messages": [{"role": "system", "content": system}, {"role": "user", "content": text}],
                });
                (url, body, api_key.as_deref().map(|k| format!("Bearer {k}")))
            }
            Api::LibreTranslate { url, api_key } => {
                let mut body = serde_json::json!({"q": text, "source": from, "target": to, "format": "text"});
                if let Some(k) = api_key {
                    body["api_key"] = serde_json::Value::String(k.clone());
                }
                (format!("{}/translate", url.trim_end_matches('/')), body, None)
            }
        };
        let openai = matches!(self.api, Api::OpenAi { .. });
        let t = self
            .guard
            .post(&url, &body, key.as_deref(), text, |v| {
                let t = if openai {
                    v.pointer("/choices/0/message/content").and_then(|c| c.as_str())
                } else {
                    v.get("translatedText").and_then(|c| c.as_str())
                };
                t.map(str::to_string)
            })
            .await?;
        let text = t.trim().to_string();
        Ok(Translated { words: count_words(&text), text, unknown: 0 })
    }
}

/// A reqwest error's message without the URL (which the caller prints once).
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(&format!(" ({u})"), "").replace(u.as_str(), "");
    }
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

impl Translator for Http {
    fn name(&self) -> &'static str {
        match self.api {
            Api::OpenAi { .. } => "openai",
            Api::LibreTranslate { .. } => "libretranslate",
        }
    }

    fn model(&self) -> String {
        match &self.api {
            Api::OpenAi { model, .. } => model.clone(),
            Api::LibreTranslate { .. } => "libretranslate".to_string(),
        }
    }

    fn supports(&self, from: &str, to: &str) -> bool {
        self.languages.is_empty()
            || (self.languages.iter().any(|l| l == from) && self.languages.iter().any(|l| l == to))
    }

    fn translate(&self, from: &str, to: &str, texts: &[&str]) -> Vec<Result<Translated, Failure>> {
        smelt_engine::blocking::block_on(async {
            futures::stream::iter(texts.iter().map(|t| self.one(from, to, t)))
                .buffered(self.guard.limits.concurrency.max(1))
                .collect::<Vec<_>>()
                .await
        })
    }

    fn take_counters(&self) -> Vec<(String, u64)> {
        self.guard.take_counters()
    }
}
