//! Fetching over HTTP for the network sources (`commoncrawl`,
//! `commoncrawl_news`, `rss`): retries, politeness, resumable downloads.
//!
//! ```text
//!  source reader (blocking thread) ──Net::get / HttpFile::read──► tokio runtime (2 threads, owned here) ──reqwest──► host
//!        ▲                                   │ per host: ≤ N requests at once, ≥ 1/rps seconds apart,
//!        │                                   │ robots.txt (article pages), User-Agent smelt/<version> (+url)
//!        └── NetEvent (retry, resume, 4xx, failure) ◄── 5xx / timeout / reset: retry after smelt_engine::backoff
//! ```
//! * [`HttpFile`] is a `Read + Seek` view of one remote file, so the existing
//!   [`crate::warc::WarcReader`] reads crawl files as they stream in. When the
//!   connection drops, it asks again with `Range: bytes=<offset reached>-` and
//!   `If-Match: <ETag>`, checks `Content-Range`, and carries on: nothing already
//!   read is fetched again.
//! * Every retry, resume, 4xx and final failure is a [`NetEvent`]; the source
//!   readers hand them to the engine as counted skips, so the run summary and
//!   the version's funnel show them.

mod robots;
pub mod s3;

use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use smelt_engine::backoff::{jitter, Backoff};
use smelt_engine::blocking::runtime;

pub use robots::Robots;

/// The `User-Agent` smelt sends unless a pipeline sets its own.
pub fn default_user_agent() -> String {
    format!("smelt/{} (+https://github.com/smelt-data/smelt)", env!("CARGO_PKG_VERSION"))
}

fn default_retries() -> u32 {
    5
}
fn default_backoff_ms() -> u64 {
    500
}
fn default_max_backoff_ms() -> u64 {
    30_000
}
fn default_timeout_s() -> f64 {
    60.0
}
fn default_per_host() -> usize {
    2
}
fn default_rps() -> f64 {
    2.0
}

/// HTTP settings shared by the network sources (the `http:` option).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpOptions {
    /// Retries after a 5xx, 429, timeout or dropped connection (default 5).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// First retry delay in milliseconds, doubling each retry; each delay is scaled by a jitter into [1/2, 1] of itself (default 500).
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// Longest delay between two tries, in milliseconds (default 30000).
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// Seconds to connect, and to wait for each piece of a response body (default 60).
    #[serde(default = "default_timeout_s")]
    pub timeout_s: f64,
    /// Requests in flight to one host at most (default 2).
    #[serde(default = "default_per_host")]
    pub max_connections_per_host: usize,
    /// Requests started per second to one host at most (default 2; a robots.txt `Crawl-delay` can only lower it).
    #[serde(default = "default_rps")]
    pub requests_per_second: f64,
    /// `User-Agent` header (default `smelt/<version> (+https://github.com/smelt-data/smelt)`).
    #[serde(default = "default_user_agent")]
    pub user_agent: String,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            retries: default_retries(),
            backoff_ms: default_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
            timeout_s: default_timeout_s(),
            max_connections_per_host: default_per_host(),
            requests_per_second: default_rps(),
            user_agent: default_user_agent(),
        }
    }
}

impl HttpOptions {
    /// Checks values (no I/O).
    ///
    /// # Errors
    /// What to change, as text.
    pub fn check(&self) -> Result<(), String> {
        if !(self.timeout_s > 0.0) {
            return Err("`http.timeout_s` must be above 0".into());
        }
        if self.max_connections_per_host == 0 {
            return Err("`http.max_connections_per_host` must be at least 1".into());
        }
        if !(self.requests_per_second > 0.0) {
            return Err("`http.requests_per_second` must be above 0".into());
        }
        Ok(())
    }
}

/// Something that happened on the network, for the run's skip counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetEvent {
    /// Skip reason: `net_retry`, `net_resume`, `http_404`, `net_failed`, `robots_disallowed`, ...
    pub reason: String,
    /// URL and what happened.
    pub detail: String,
    /// True for a lost input (a 4xx, a failure after every retry); false for
    /// something that was recovered from (a retry, a resume).
    pub lost: bool,
}

/// Events shared between a source reader and the downloads it started.
pub type Events = Arc<Mutex<Vec<NetEvent>>>;

fn push(events: &Events, reason: impl Into<String>, detail: impl Into<String>, lost: bool) {
    let e = NetEvent { reason: reason.into(), detail: detail.into(), lost };
    if lost {
        tracing::warn!(reason = %e.reason, "{}", e.detail);
    } else {
        tracing::info!(reason = %e.reason, "{}", e.detail);
    }
    events.lock().expect("events lock").push(e);
}

/// Moves `events` into the engine's skip counts.
pub fn drain_into(events: &Events, skips: &mut smelt_engine::Skips) {
    for e in events.lock().expect("events lock").drain(..) {
        if e.lost {
            skips.skip(&e.reason, &e.detail);
        } else {
            skips.ignore(&e.reason);
        }
    }
}

/// Why a fetch gave nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The server answered 4xx (not retried).
    #[error("{url}: HTTP {status}")]
    Status {
        /// URL.
        url: String,
        /// Status.
        status: u16,
    },
    /// Every try failed (5xx, timeouts, resets).
    #[error("{url}: {message} (after {tries} tries)")]
    Failed {
        /// URL.
        url: String,
        /// The last failure.
        message: String,
        /// Tries made.
        tries: u32,
    },
    /// robots.txt forbids the URL for smelt.
    #[error("{url}: disallowed by robots.txt")]
    Disallowed {
        /// URL.
        url: String,
    },
    /// Not a URL smelt can fetch.
    #[error("{url}: {message}")]
    BadUrl {
        /// URL.
        url: String,
        /// Why.
        message: String,
    },
}

impl FetchError {
    /// The skip reason: `http_404`, `net_failed`, `robots_disallowed`, `bad_url`.
    pub fn reason(&self) -> String {
        match self {
            FetchError::Status { status, .. } => format!("http_{status}"),
            FetchError::Failed { .. } => "net_failed".into(),
            FetchError::Disallowed { .. } => "robots_disallowed".into(),
            FetchError::BadUrl { .. } => "bad_url".into(),
        }
    }
}

/// A whole response.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Final URL (after redirects).
    pub url: String,
    /// Status (2xx, or 304 for a conditional request).
    pub status: u16,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `ETag`.
    pub etag: Option<String>,
    /// `Last-Modified`.
    pub last_modified: Option<String>,
    /// Body (empty for 304).
    pub body: Bytes,
}

/// Validators from an earlier response, for a conditional request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validators {
    /// Sent as `If-None-Match`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Sent as `If-Modified-Since`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

/// One host's gate: a cap on requests in flight and a minimum spacing.
struct Host {
    slots: Arc<tokio::sync::Semaphore>,
    next: tokio::sync::Mutex<Instant>,
    /// Seconds between request starts.
    spacing: Mutex<f64>,
}

/// An HTTP client with retries and per-host politeness, used from blocking threads.
pub struct Net {
    opts: HttpOptions,
    client: reqwest::Client,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
    robots: Mutex<HashMap<String, Arc<Robots>>>,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net").field("opts", &self.opts).finish_non_exhaustive()
    }
}

/// A failed try: retry it or not.
enum TryError {
    Retry(String),
    Fatal(FetchError),
}

impl Net {
    /// A client with `opts`.
    ///
    /// # Errors
    /// The TLS stack cannot start.
    pub fn new(opts: HttpOptions) -> Result<Arc<Net>, String> {
        let client = reqwest::Client::builder()
            .user_agent(opts.user_agent.clone())
            .connect_timeout(Duration::from_secs_f64(opts.timeout_s))
            .read_timeout(Duration::from_secs_f64(opts.timeout_s))
            .no_gzip()
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Arc::new(Net { opts, client, hosts: Mutex::new(HashMap::new()), robots: Mutex::new(HashMap::new()) }))
    }

    /// The options.
    pub fn options(&self) -> &HttpOptions {
        &self.opts
    }

    fn host(&self, url: &reqwest::Url) -> Arc<Host> {
        let key =
            format!("{}://{}:{}", url.scheme(), url.host_str().unwrap_or(""), url.port_or_known_default().unwrap_or(0));
        let mut hosts = self.hosts.lock().expect("hosts lock");
        hosts
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Host {
                    slots: Arc::new(tokio::sync::Semaphore::new(self.opts.max_connections_per_host)),
                    next: tokio::sync::Mutex::new(Instant::now()),
                    spacing: Mutex::new(1.0 / self.opts.requests_per_second),
                })
            })
            .clone()
    }

    /// Waits for a slot and the host's spacing; the permit is held for the request.
    async fn enter(&self, host: &Host) -> tokio::sync::OwnedSemaphorePermit {
        let permit = host.slots.clone().acquire_owned().await.expect("host semaphore is never closed");
        let spacing = *host.spacing.lock().expect("spacing lock");
        let mut next = host.next.lock().await;
        let now = Instant::now();
        if *next > now {
            tokio::time::sleep(*next - now).await;
        }
        *next = Instant::now() + Duration::from_secs_f64(spacing);
        permit
    }

    /// Delay before try `k + 2` after `k + 1` failed tries: smelt's one
    /// [`Backoff`] from `backoff_ms`, capped at `max_backoff_ms`.
    fn backoff(&self, k: u32, salt: &str) -> Duration {
        Backoff::new(Duration::from_millis(self.opts.backoff_ms), Duration::from_millis(self.opts.max_backoff_ms))
            .delay(k + 1, jitter(salt))
    }

    fn parse_url(url: &str) -> Result<reqwest::Url, FetchError> {
        let u = reqwest::Url::parse(url).map_err(|e| FetchError::BadUrl { url: url.into(), message: e.to_string() })?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(FetchError::BadUrl {
                url: url.into(),
                message: "only http:// and https:// URLs are fetched".into(),
            });
        }
        Ok(u)
    }

    /// Runs `attempt` until it succeeds, fails for good, or has failed
    /// `retries + 1` times, waiting [`Net::backoff`] between tries; each
    /// retry is a `net_retry` event (recovered). The final error is returned,
    /// not pushed: callers decide whether it is a lost input.
    fn retrying<T>(
        &self,
        url: &str,
        events: &Events,
        mut attempt: impl FnMut() -> Result<T, TryError>,
    ) -> Result<T, FetchError> {
        let mut tries = 0;
        loop {
            tries += 1;
            match attempt() {
                Ok(v) => return Ok(v),
                Err(TryError::Fatal(e)) => return Err(e),
                Err(TryError::Retry(message)) if tries > self.opts.retries => {
                    return Err(FetchError::Failed { url: url.to_string(), message, tries })
                }
                Err(TryError::Retry(message)) => {
                    let wait = self.backoff(tries - 1, url);
                    push(events, "net_retry", format!("{url}: {message}; try {} in {wait:?}", tries + 1), false);
                    std::thread::sleep(wait);
                }
            }
        }
    }

    /// GETs a whole response, retrying 5xx, 429, timeouts and resets.
    /// `validators` make it conditional (a 304 comes back as `status: 304`).
    ///
    /// # Errors
    /// A 4xx, a bad URL, or a failure after every retry.
    pub fn get(&self, url: &str, validators: Option<&Validators>, events: &Events) -> Result<Fetched, FetchError> {
        let u = Self::parse_url(url)?;
        let host = self.host(&u);
        self.retrying(url, events, || {
            runtime().block_on(async {
                let _permit = self.enter(&host).await;
                let mut req = self.client.get(u.clone()).header("Accept-Encoding", "identity");
                if let Some(v) = validators {
                    if let Some(e) = &v.etag {
                        req = req.header("If-None-Match", e);
                    }
                    if let Some(m) = &v.last_modified {
                        req = req.header("If-Modified-Since", m);
                    }
                }
                let resp = req.send().await.map_err(|e| TryError::Retry(error_text(&e)))?;
                let status = resp.status().as_u16();
                let header = |n: &str| resp.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
                let (content_type, etag, last_modified) =
                    (header("content-type"), header("etag"), header("last-modified"));
                let final_url = resp.url().to_string();
                if status == 304 {
                    return Ok(Fetched {
                        url: final_url,
                        status,
                        content_type,
                        etag,
                        last_modified,
                        body: Bytes::new(),
                    });
                }
                check_status(url, status)?;
                let body = resp.bytes().await.map_err(|e| TryError::Retry(error_text(&e)))?;
                Ok(Fetched { url: final_url, status, content_type, etag, last_modified, body })
            })
        })
        .inspect_err(|e| push(events, e.reason(), e.to_string(), true))
    }

    /// Whether robots.txt of `url`'s host lets smelt fetch it: `Some(true)`
    /// or `Some(false)`, or `None` when robots.txt could not be fetched
    /// (after every retry; nothing on that host is fetched then). robots.txt
    /// is fetched once per host; a 4xx (none) allows everything. Its
    /// `Crawl-delay` slows the host's requests down (never up).
    pub fn allowed(&self, url: &str, events: &Events) -> Option<bool> {
        let Ok(u) = Self::parse_url(url) else {
            return Some(false);
        };
        let origin = u.origin().ascii_serialization();
        let cached = self.robots.lock().expect("robots lock").get(&origin).cloned();
        let robots = match cached {
            Some(r) => r,
            None => {
                // Its own events: a missing robots.txt is no lost input.
                let quiet = Events::default();
                let r = match self.get(&format!("{origin}/robots.txt"), None, &quiet) {
                    Ok(f) => Robots::parse(&String::from_utf8_lossy(&f.body), &self.opts.user_agent),
                    Err(FetchError::Status { .. }) => Robots::allow_all(),
                    Err(e) => {
                        push(
                            events,
                            "robots_unavailable",
                            format!("{e}; nothing on {origin} is fetched this run"),
                            true,
                        );
                        Robots::deny_all()
                    }
                };
                if let Some(delay) = r.crawl_delay() {
                    let host = self.host(&u);
                    let mut s = host.spacing.lock().expect("spacing lock");
                    *s = s.max(delay);
                }
                let r = Arc::new(r);
                self.robots.lock().expect("robots lock").insert(origin, r.clone());
                r
            }
        };
        let path = match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        };
        if robots.unreachable() {
            return None;
        }
        Some(robots.allows(&path))
    }

    /// The size and ETag of a remote file (a HEAD request, retried).
    ///
    /// # Errors
    /// As [`Net::get`].
    pub fn head(&self, url: &str, events: &Events) -> Result<(Option<u64>, Option<String>), FetchError> {
        let u = Self::parse_url(url)?;
        let host = self.host(&u);
        self.retrying(url, events, || {
            runtime().block_on(async {
                let _permit = self.enter(&host).await;
                let resp = self.client.head(u.clone()).send().await.map_err(|e| TryError::Retry(error_text(&e)))?;
                check_status(url, resp.status().as_u16())?;
                let len = resp.headers().get("content-length").and_then(|v| v.to_str().ok()?.parse().ok());
                let etag = resp.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_string);
                Ok((len, etag))
            })
        })
    }

    /// GETs `bytes=start-end` (inclusive end) of a file, retried: CDX index
    /// blocks and single WARC records.
    ///
    /// # Errors
    /// As [`Net::get`]; also when the server ignores the range.
    pub fn get_range(self: &Arc<Self>, url: &str, start: u64, end: u64, events: &Events) -> Result<Bytes, FetchError> {
        let mut file = HttpFile::open(self.clone(), url, events.clone());
        file.end = Some(end + 1);
        file.pos = start;
        let mut out = Vec::with_capacity((end + 1 - start) as usize);
        match file.read_to_end(&mut out) {
            Ok(_) => Ok(Bytes::from(out)),
            Err(e) => Err(file.failure.take().unwrap_or(FetchError::Failed {
                url: url.into(),
                message: e.to_string(),
                tries: 1,
            })),
        }
    }
}

/// A 5xx, 429 (too many requests) or 408 (request timeout) is retried;
/// another 4xx is final (skip reason `http_<code>`).
fn check_status(url: &str, status: u16) -> Result<(), TryError> {
    if status >= 500 || status == 429 || status == 408 {
        return Err(TryError::Retry(format!("HTTP {status}")));
    }
    if status >= 400 {
        return Err(TryError::Fatal(FetchError::Status { url: url.to_string(), status }));
    }
    Ok(())
}

fn error_text(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// A remote file read as a `Read + Seek` stream, resuming by range request
/// after a dropped connection.
pub struct HttpFile {
    net: Arc<Net>,
    url: String,
    events: Events,
    /// Offset of the next byte `read` returns.
    pos: u64,
    /// Read up to this offset only (exclusive), for ranges.
    end: Option<u64>,
    /// File size, once a response said it.
    len: Option<u64>,
    /// The ETag of the first response; a resumed response must carry the same.
    etag: Option<String>,
    resp: Option<reqwest::Response>,
    /// The host slot held while `resp` streams.
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// Bytes of the current response not yet returned.
    pending: Bytes,
    /// Consecutive failed tries at the current offset.
    fails: u32,
    /// Bytes received over the network, every response together.
    received: u64,
    /// Responses opened (the first, plus one per resume).
    requests: u32,
    /// Why the last read failed, for callers that want the typed error.
    failure: Option<FetchError>,
}

impl HttpFile {
    /// A lazy view of `url`: nothing is requested before the first read.
    pub fn open(net: Arc<Net>, url: &str, events: Events) -> HttpFile {
        HttpFile {
            net,
            url: url.to_string(),
            events,
            pos: 0,
            end: None,
            len: None,
            etag: None,
            resp: None,
            permit: None,
            pending: Bytes::new(),
            fails: 0,
            received: 0,
            requests: 0,
            failure: None,
        }
    }

    fn drop_response(&mut self) {
        self.resp = None;
        self.permit = None;
    }

    /// Bytes received over the network so far (all responses together).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Responses opened so far (1 + resumes).
    pub fn requests(&self) -> u32 {
        self.requests
    }

    /// The file's size, once known.
    pub fn len(&self) -> Option<u64> {
        self.len
    }

    /// Whether the file is known to be empty.
    pub fn is_empty(&self) -> bool {
        self.len == Some(0)
    }

    fn done(&self) -> bool {
        self.end.or(self.len).is_some_and(|e| self.pos >= e)
    }

    /// Opens a response at `self.pos`; `Ok(false)` at end of file.
    fn connect(&mut self) -> Result<bool, TryError> {
        let u = Net::parse_url(&self.url).map_err(TryError::Fatal)?;
        let host = self.net.host(&u);
        let (pos, end, etag) = (self.pos, self.end, self.etag.clone());
        let net = self.net.clone();
        let url = self.url.clone();
        let resp = runtime().block_on(async move {
            let permit = net.enter(&host).await;
            let mut req = net.client.get(u);
            if pos > 0 || end.is_some() {
                let range = match end {
                    Some(e) => format!("bytes={pos}-{}", e.saturating_sub(1)),
                    None => format!("bytes={pos}-"),
                };
                req = req.header("Range", range);
                if let Some(e) = &etag {
                    req = req.header("If-Match", e);
                }
            }
            let resp = req.send().await.map_err(|e| TryError::Retry(error_text(&e)))?;
            let status = resp.status().as_u16();
            if status == 416 {
                return Ok(None);
            }
            if status == 412 {
                return Err(TryError::Fatal(FetchError::Failed {
                    url: url.clone(),
                    message:
                        "the file changed on the server while it was read (ETag differs); rerun to read the new file"
                            .into(),
                    tries: 1,
                }));
            }
            check_status(&url, status)?;
            Ok(Some((resp, permit)))
        })?;
        let Some((resp, permit)) = resp else {
            return Ok(false);
        };
        // The host's slot stays taken while the body streams.
        self.permit = Some(permit);
        self.requests += 1;
        let header = |n: &str| resp.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
        let etag = header("etag");
        if let (Some(old), Some(new)) = (&self.etag, &etag) {
            if old != new {
                return Err(TryError::Fatal(FetchError::Failed {
                    url: self.url.clone(),
                    message: format!("the file changed on the server while it was read (ETag {old} became {new})"),
                    tries: 1,
                }));
            }
        }
        self.etag = self.etag.take().or(etag);
        if resp.status().as_u16() == 206 {
            let cr = header("content-range").unwrap_or_default();
            let (start, total) = parse_content_range(&cr).ok_or_else(|| {
                TryError::Fatal(FetchError::Failed {
                    url: self.url.clone(),
                    message: format!("bad Content-Range `{cr}`"),
                    tries: 1,
                })
            })?;
            if start != self.pos {
                return Err(TryError::Fatal(FetchError::Failed {
                    url: self.url.clone(),
                    message: format!("asked for bytes from {} and got them from {start}", self.pos),
                    tries: 1,
                }));
            }
            if total.is_some() {
                self.len = total;
            }
            self.resp = Some(resp);
        } else {
            // 200: the whole file. Only acceptable from the start; otherwise the
            // bytes before `pos` are discarded (and counted).
            self.len = resp.content_length();
            let mut resp = resp;
            if self.pos > 0 {
                push(
                    &self.events,
                    "net_range_ignored",
                    format!("{}: the server ignored Range; {} bytes read again", self.url, self.pos),
                    false,
                );
                let mut skip = self.pos;
                while skip > 0 {
                    let chunk = runtime()
                        .block_on(resp.chunk())
                        .map_err(|e| TryError::Retry(error_text(&e)))?
                        .ok_or_else(|| TryError::Retry("response ended early".into()))?;
                    self.received += chunk.len() as u64;
                    let n = (chunk.len() as u64).min(skip);
                    skip -= n;
                    if n < chunk.len() as u64 {
                        self.pending = chunk.slice(n as usize..);
                    }
                }
            }
            self.resp = Some(resp);
        }
        Ok(true)
    }

    /// Fills `pending` with the next piece; `Ok(false)` at the end.
    fn next_piece(&mut self) -> io::Result<bool> {
        loop {
            if self.done() {
                return Ok(false);
            }
            if self.resp.is_none() {
                match self.connect() {
                    Ok(true) => {}
                    Ok(false) => return Ok(false),
                    Err(e) => self.failed_try(e)?,
                }
                if !self.pending.is_empty() {
                    return Ok(true);
                }
                continue;
            }
            let resp = self.resp.as_mut().expect("response");
            let timeout = Duration::from_secs_f64(self.net.opts.timeout_s);
            let piece = runtime().block_on(async { tokio::time::timeout(timeout, resp.chunk()).await });
            match piece {
                Ok(Ok(Some(b))) => {
                    self.received += b.len() as u64;
                    self.fails = 0;
                    self.pending = b;
                    return Ok(true);
                }
                Ok(Ok(None)) => {
                    self.drop_response();
                    match self.end.or(self.len) {
                        Some(e) if self.pos < e => {
                            self.failed_try(TryError::Retry(format!("connection closed at byte {} of {e}", self.pos)))?;
                        }
                        _ => {
                            if self.len.is_none() {
                                self.len = Some(self.pos);
                            }
                            return Ok(false);
                        }
                    }
                }
                Ok(Err(e)) => {
                    self.drop_response();
                    self.failed_try(TryError::Retry(format!("at byte {}: {}", self.pos, error_text(&e))))?;
                }
                Err(_) => {
                    self.drop_response();
                    self.failed_try(TryError::Retry(format!("at byte {}: no data for {timeout:?}", self.pos)))?;
                }
            }
        }
    }

    /// Counts a failed try and waits before the next, or gives up.
    fn failed_try(&mut self, e: TryError) -> io::Result<()> {
        match e {
            TryError::Fatal(f) => {
                push(&self.events, f.reason(), f.to_string(), true);
                let err = io::Error::other(f.to_string());
                self.failure = Some(f);
                Err(err)
            }
            TryError::Retry(message) => {
                self.fails += 1;
                if self.fails > self.net.opts.retries {
                    let f = FetchError::Failed { url: self.url.clone(), message, tries: self.fails };
                    push(&self.events, f.reason(), f.to_string(), true);
                    let err = io::Error::other(f.to_string());
                    self.failure = Some(f);
                    return Err(err);
                }
                let wait = self.net.backoff(self.fails - 1, &self.url);
                let what = if self.requests > 0 { "net_resume" } else { "net_retry" };
                push(
                    &self.events,
                    what,
                    format!("{}: {message}; again from byte {} in {wait:?}", self.url, self.pos),
                    false,
                );
                std::thread::sleep(wait);
                Ok(())
            }
        }
    }
}

/// `bytes 100-199/1000` → (100, Some(1000)); `bytes 100-199/*` → (100, None).
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, _) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

impl Read for HttpFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.pending.is_empty() && !self.next_piece()? {
            return Ok(0);
        }
        let mut n = buf.len().min(self.pending.len());
        if let Some(e) = self.end {
            n = n.min(usize::try_from(e - self.pos).unwrap_or(usize::MAX));
        }
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending = self.pending.slice(n..);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for HttpFile {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => n,
            SeekFrom::Current(d) => {
                self.pos.checked_add_signed(d).ok_or_else(|| io::Error::other("seek before the start"))?
            }
            SeekFrom::End(d) => {
                let len = match self.len {
                    Some(l) => l,
                    None => self.net.head(&self.url, &self.events).map_err(io::Error::other)?.0.ok_or_else(|| {
                        io::Error::other(format!("{}: the server does not say the file's size", self.url))
                    })?,
                };
                self.len = Some(len);
                len.checked_add_signed(d).ok_or_else(|| io::Error::other("seek before the start"))?
            }
        };
        if target != self.pos {
            // Forward within what has arrived: drop those bytes; otherwise a new range request.
            let ahead = target.checked_sub(self.pos);
            match ahead {
                Some(k) if k <= self.pending.len() as u64 => self.pending = self.pending.slice(k as usize..),
                _ => {
                    self.drop_response();
                    self.pending = Bytes::new();
                }
            }
            self.pos = target;
        }
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse() {
        assert_eq!(parse_content_range("bytes 100-199/1000"), Some((100, Some(1000))));
        assert_eq!(parse_content_range("bytes 0-0/*"), Some((0, None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }

    #[test]
    fn backoff_doubles_with_bounded_jitter() {
        let net = Net::new(HttpOptions { backoff_ms: 100, max_backoff_ms: 1000, ..Default::default() }).unwrap();
        for k in 0..3u32 {
            let d = net.backoff(k, "http://a.org/").as_millis() as u64;
            let base = 100 << k;
            assert!(d >= base / 2 && d <= base, "try {k}: {d} ms");
        }
        assert!((500..=1000).contains(&net.backoff(10, "http://a.org/").as_millis()));
    }

    #[test]
    fn user_agent_names_smelt_and_a_url() {
        let ua = default_user_agent();
        assert!(ua.starts_with("smelt/") && ua.contains("(+https://"), "{ua}");
    }
}
