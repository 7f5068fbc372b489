//! `rss` source: RSS 0.9x/1.0/2.0, Atom and JSON Feed (feed-rs); each new
//! item's linked page is fetched politely and becomes an HTML document, so
//! `extract` handles it like a crawled page.
//!
//! ```text
//! plan:  one split per feed; committed versions' state per feed ──► seen item keys + ETag/Last-Modified
//! read:  GET feed (If-None-Match / If-Modified-Since) ──304──► nothing new
//!                    └─200─► feed-rs ──► items in feed order ──seen before?──► counted `seen_before`
//!                                                   └─new─► robots.txt ──► GET article ──► (html, content_type)
//! state: keys of the items handled now (+ validators) ──► committed with the version, read back next run
//! ```
//! An item whose page fails after every retry is counted and not marked seen,
//! so the next run tries it again; a 4xx or a robots.txt refusal is counted and
//! marked seen.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use smelt_engine::yaml::PathSeg;
use smelt_engine::{
    parse_options, Committed, ConfigureContext, OptionError, ReadOptions, Result, Skips, SourceConfig, SplitReader,
    SplitSpec, StageConfig,
};

use super::commoncrawl::net_for;
use super::{doc_schema, feed_decode, Body, DocBuilder, DocRow};
use crate::net::{self, Events, FetchError, HttpOptions, Net, Validators};

fn default_true() -> bool {
    true
}
fn default_content_types() -> Vec<String> {
    vec!["text/html".into(), "application/xhtml+xml".into()]
}

/// Options of the `rss` source.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RssConfig {
    /// Feed URLs (RSS 0.9x/1.0/2.0, Atom, JSON Feed), one split each.
    pub feeds: Vec<String>,
    /// `source` column value (default `rss:<feed host>`).
    #[serde(default)]
    pub source: Option<String>,
    /// Fetch each item's linked page (default true); false uses the item's own content or summary as the HTML.
    #[serde(default = "default_true")]
    pub fetch_articles: bool,
    /// Check robots.txt before fetching an article page (default true).
    #[serde(default = "default_true")]
    pub robots_txt: bool,
    /// Media types of article pages kept (default text/html, application/xhtml+xml).
    #[serde(default = "default_content_types")]
    pub content_types: Vec<String>,
    /// Leave out items that committed versions of the dataset already hold, and send the feed's last
    /// ETag / Last-Modified (default true).
    #[serde(default = "default_true")]
    pub incremental: bool,
    /// HTTP settings (retries, backoff, timeouts, politeness, User-Agent).
    #[serde(default)]
    pub http: HttpOptions,
    /// The HTTP client (per-host gates shared by every split), made on first use.
    #[serde(skip)]
    net: Arc<OnceLock<Arc<Net>>>,
    /// Per feed: what committed versions saw, set at plan time.
    #[serde(skip)]
    prior: Arc<Mutex<HashMap<String, Prior>>>,
}

/// What committed versions hold for one feed.
#[derive(Debug, Clone, Default)]
struct Prior {
    validators: Validators,
    seen: HashSet<String>,
}

/// The state committed per feed split.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct FeedState {
    #[serde(flatten)]
    validators: Validators,
    /// Keys (GUID and link) of the items handled by this run.
    seen: Vec<String>,
}

/// Registry hook.
///
/// # Errors
/// Unknown or invalid options.
pub fn configure(options: serde_json::Value, _ctx: &ConfigureContext) -> Result<StageConfig, OptionError> {
    let c: RssConfig = parse_options(options)?;
    let err = |key: &str, message: String| OptionError { path: vec![PathSeg::Key(key.into())], message, at_key: false };
    if c.feeds.is_empty() {
        return Err(err("feeds", "`feeds` lists at least one feed URL".into()));
    }
    for (i, f) in c.feeds.iter().enumerate() {
        if !(f.starts_with("http://") || f.starts_with("https://")) {
            return Err(OptionError {
                path: vec![PathSeg::Key("feeds".into()), PathSeg::Index(i)],
                message: format!("`{f}` is not an http(s):// URL"),
                at_key: false,
            });
        }
    }
    c.http.check().map_err(|m| err("http", m))?;
    Ok(StageConfig::Source(Arc::new(c)))
}

impl SourceConfig for RssConfig {
    fn schema(&self) -> arrow::datatypes::SchemaRef {
        doc_schema(Body::Html)
    }

    fn resolved(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn splits(&self) -> Result<Vec<SplitSpec>> {
        self.splits_since(&Committed::default())
    }

    fn splits_since(&self, committed: &Committed) -> Result<Vec<SplitSpec>> {
        let mut prior: HashMap<String, Prior> = HashMap::new();
        if self.incremental {
            for (feed, state) in &committed.states {
                let Ok(s) = serde_json::from_value::<FeedState>(state.clone()) else {
                    tracing::warn!("{feed}: committed feed state not understood; ignored");
                    continue;
                };
                let p = prior.entry(feed.clone()).or_default();
                if s.validators.etag.is_some() || s.validators.last_modified.is_some() {
                    p.validators = s.validators;
                }
                p.seen.extend(s.seen);
            }
        }
        *self.prior.lock().expect("prior lock") = prior;
        let mut seen = HashSet::new();
        Ok(self
            .feeds
            .iter()
            .filter(|f| seen.insert(f.as_str()))
            .map(|f| SplitSpec { id: f.clone(), bytes: None })
            .collect())
    }

    fn open(&self, split: &SplitSpec, options: &ReadOptions) -> Result<Box<dyn SplitReader>> {
        let prior = self.prior.lock().expect("prior lock").get(&split.id).cloned().unwrap_or_default();
        Ok(Box::new(RssReader {
            config: self.clone(),
            net: net_for(&self.net, &self.http)?,
            feed: split.id.clone(),
            prior,
            items: None,
            next: 0,
            state: FeedState::default(),
            retry_later: false,
            events: Events::default(),
            builder: DocBuilder::new(Body::Html),
            batch_rows: options.batch_rows,
            source: String::new(),
        }))
    }
}

/// One feed item, as read from the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedItem {
    /// What marks the item as seen in later runs: its id, then its link.
    pub keys: Vec<String>,
    /// The item's GUID or id (feed-rs derives one when the feed states none).
    pub id: String,
    /// The item's page: its `alternate` link, else its first link.
    pub link: Option<String>,
    /// Published (else updated) time, microseconds since the epoch.
    pub time_us: Option<i64>,
    /// The item's own content, else its summary, as HTML.
    pub inline_html: Option<String>,
}

/// A feed body read into items.
#[derive(Debug, Clone)]
pub struct ParsedFeed {
    /// Items in feed order.
    pub items: Vec<FeedItem>,
    /// Set when the body was damaged and only the items before the damage
    /// were read: why the whole body was refused.
    pub truncated: Option<String>,
}

/// Reads a fetched feed body: decoded to UTF-8 (HTTP charset, BOM, XML
/// declaration, detection), undeclared HTML entities and prolog clutter
/// fixed, then parsed by feed-rs; a body damaged at the end gives the items
/// before the damage. feed-rs (quick-xml inside) panics on some inputs: the
/// panic comes back as `Err`, so the caller skips this feed, not the run.
///
/// # Errors
/// Why the body is not a feed (a parse error, or the parser's panic).
pub fn parse_feed(body: &[u8], content_type: Option<&str>, url: &str) -> std::result::Result<ParsedFeed, String> {
    let parser = feed_rs::parser::Builder::new().base_uri(Some(url)).build();
    let xml = feed_decode::prepare(body, content_type);
    let parsing = format!("{url} as a feed");
    let parse = |bytes: &[u8]| match smelt_engine::guard::catch_at(&parsing, || parser.parse(bytes)) {
        Ok(Ok(feed)) => Ok(feed),
        Ok(Err(e)) => Err(format!("not a feed feed-rs reads: {e}")),
        Err(panic) => Err(format!("feed-rs {panic}")),
    };
    let (feed, truncated) = match parse(&xml) {
        Ok(f) => (f, None),
        Err(first) => match feed_decode::truncated_recovery(&xml).map(|cut| parse(&cut)) {
            Some(Ok(f)) => (f, Some(first)),
            _ => return Err(first),
        },
    };
    let items = feed
        .entries
        .into_iter()
        .map(|e| {
            let link = e
                .links
                .iter()
                .find(|l| l.rel.as_deref().is_none_or(|r| r == "alternate"))
                .or(e.links.first())
                .map(|l| l.href.clone());
            let mut keys = vec![e.id.clone()];
            keys.extend(link.clone());
            let inline_html = e
                .content
                .as_ref()
                .and_then(|c| c.body.clone())
                .or_else(|| e.summary.as_ref().map(|s| s.content.clone()));
            FeedItem {
                keys,
                id: e.id,
                link,
                time_us: e.published.or(e.updated).map(|t| t.timestamp_micros()),
                inline_html,
            }
        })
        .collect();
    Ok(ParsedFeed { items, truncated })
}

struct RssReader {
    config: RssConfig,
    net: Arc<Net>,
    feed: String,
    prior: Prior,
    items: Option<Vec<FeedItem>>,
    next: usize,
    state: FeedState,
    /// An item failed in a way worth retrying: keep the old validators.
    retry_later: bool,
    events: Events,
    builder: DocBuilder,
    batch_rows: usize,
    source: String,
}

fn host_of(url: &str) -> Option<String> {
    url::Url::parse(url).ok()?.host_str().map(|h| h.trim_start_matches("www.").to_string())
}

impl RssReader {
    /// Fetches and parses the feed.
    fn load(&mut self, skips: &mut Skips) -> Vec<FeedItem> {
        self.source =
            self.config.source.clone().unwrap_or_else(|| format!("rss:{}", host_of(&self.feed).unwrap_or_default()));
        let validators = self.config.incremental.then_some(&self.prior.validators);
        let fetched = match self.net.get(&self.feed, validators, &self.events) {
            Ok(f) => f,
            Err(FetchError::Status { .. } | FetchError::BadUrl { .. }) => {
                self.state.validators = self.prior.validators.clone();
                return Vec::new();
            }
            Err(e) => {
                // Counted by `get`; nothing is marked so the next run tries again.
                self.retry_later = true;
                tracing::warn!("{e}");
                return Vec::new();
            }
        };
        if fetched.status == 304 {
            skips.ignore("feed_not_modified");
            self.state.validators = self.prior.validators.clone();
            return Vec::new();
        }
        self.state.validators = Validators { etag: fetched.etag.clone(), last_modified: fetched.last_modified.clone() };
        match parse_feed(&fetched.body, fetched.content_type.as_deref(), fetched.url.as_str()) {
            Ok(ParsedFeed { items, truncated: None }) => items,
            Ok(ParsedFeed { items, truncated: Some(first) }) => {
                skips.skip(
                    "feed_truncated",
                    format!("{}: {first}; read the {} items before the damage", self.feed, items.len()),
                );
                items
            }
            Err(e) => {
                skips.skip("bad_feed", format!("{}: {e}", self.feed));
                Vec::new()
            }
        }
    }

    /// The page of an item: `Ok(Some)` kept, `Ok(None)` skipped for good, `Err` worth a later retry.
    fn article(
        &mut self,
        link: &str,
        skips: &mut Skips,
    ) -> std::result::Result<Option<(bytes::Bytes, Option<String>)>, ()> {
        if self.config.robots_txt {
            match self.net.allowed(link, &self.events) {
                Some(true) => {}
                Some(false) => {
                    skips.skip("robots_disallowed", format!("{link}: robots.txt disallows smelt"));
                    return Ok(None);
                }
                // robots.txt unreachable (counted once per host): try the item next run.
                None => return Err(()),
            }
        }
        match self.net.get(link, None, &self.events) {
            Ok(f) => {
                let mt =
                    f.content_type.as_deref().map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
                if let Some(mt) = &mt {
                    if !self.config.content_types.iter().any(|t| t.eq_ignore_ascii_case(mt)) {
                        skips.ignore("not_html");
                        return Ok(None);
                    }
                }
                Ok(Some((f.body, f.content_type)))
            }
            Err(FetchError::Status { .. } | FetchError::BadUrl { .. } | FetchError::Disallowed { .. }) => Ok(None),
            Err(FetchError::Failed { .. }) => Err(()),
        }
    }
}

impl SplitReader for RssReader {
    fn next_batch(&mut self, skips: &mut Skips) -> Result<Option<arrow::record_batch::RecordBatch>> {
        if self.items.is_none() {
            let items = self.load(skips);
            self.items = Some(items);
        }
        let mut handled: HashSet<String> = HashSet::new();
        while self.builder.len() < self.batch_rows {
            let Some(items) = &self.items else { break };
            let Some(item) = items.get(self.next) else {
                break;
            };
            self.next += 1;
            let (keys, id, link, time_us, inline) =
                (item.keys.clone(), item.id.clone(), item.link.clone(), item.time_us, item.inline_html.clone());
            if keys.iter().any(|k| self.prior.seen.contains(k) || handled.contains(k) || self.state.seen.contains(k)) {
                skips.ignore("seen_before");
                continue;
            }
            let origin = format!("{}#{}", self.feed, id);
            let page = if self.config.fetch_articles {
                match &link {
                    Some(l) => self.article(l, skips),
                    None => {
                        skips.skip("no_link", format!("{origin}: item has no link to fetch"));
                        Ok(None)
                    }
                }
            } else {
                Ok(inline.map(|h| (bytes::Bytes::from(h), Some("text/html".to_string()))))
            };
            match page {
                Err(()) => {
                    self.retry_later = true;
                    continue;
                }
                Ok(page) => {
                    handled.extend(keys.iter().cloned());
                    self.state.seen.extend(keys);
                    if let Some((body, content_type)) = page {
                        self.builder.push(DocRow {
                            id: &id,
                            body: &body,
                            content_type: content_type.as_deref(),
                            url: link.as_deref(),
                            source: &self.source,
                            fetched_at: time_us,
                            origin: &origin,
                        });
                    }
                }
            }
        }
        net::drain_into(&self.events, skips);
        if self.builder.is_empty() {
            return Ok(None);
        }
        self.builder.finish().map(Some)
    }

    fn state(&self) -> Option<serde_json::Value> {
        if !self.config.incremental {
            return None;
        }
        let mut s = self.state.clone();
        if self.retry_later {
            s.validators = self.prior.validators.clone();
        }
        serde_json::to_value(s).ok()
    }
}
