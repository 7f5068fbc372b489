//! `commoncrawl` and `commoncrawl_news` sources: Common Crawl over HTTP(S)
//! (or S3), read as it streams in by the same WARC reader as local files.
//!
//! ```text
//! plan:  collinfo.json ──(crawl: latest)──► crawl id
//!        crawl-data/<crawl>/<kind>.paths.gz ──segments / sample──► file URLs ─┐
//!        cc-index/collections/<crawl>/indexes/cluster.idx ──url_pattern / domain──► range GET of CDX blocks
//!            ──► matching records (file, offset, length), grouped by file ─────┤
//!        CC-NEWS: crawl-data/CC-NEWS/YYYY/MM/warc.paths.gz per month ─────────┤
//!        minus the splits committed versions of the dataset already read ─────┴─► splits
//! read:  HttpFile (streaming GET, resumes with Range after a drop) ──► WarcReader ──► documents
//!        (CDX splits: one range GET per record)
//! ```
//! `source` is `cc:<crawl>` (`cc-news` for CC-NEWS); `origin` is `<file URL>#<offset>`.

use std::collections::BTreeSet;
use std::io::Read;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use smelt_engine::yaml::PathSeg;
use smelt_engine::{
    parse_options, Committed, ConfigureContext, EngineError, OptionError, ReadOptions, Result, Skips, SourceConfig,
    SplitReader, SplitSpec, StageConfig,
};

use super::warc::{split_reader, RecordKind, WarcConfig, WarcSplitReader};
use super::{doc_schema, Body};
use crate::net::{self, Events, HttpFile, HttpOptions, Net};
use crate::warc::WarcReader;

/// Which files of a crawl.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// WARC files: HTTP responses; HTML goes to `html` for `extract`.
    Warc,
    /// WET files: extracted text, to `text`.
    Wet,
    /// WAT files: metadata JSON, to `text`.
    Wat,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Warc => "warc",
            Kind::Wet => "wet",
            Kind::Wat => "wat",
        }
    }
    fn records(self) -> RecordKind {
        match self {
            Kind::Warc => RecordKind::Response,
            Kind::Wet => RecordKind::Conversion,
            Kind::Wat => RecordKind::Metadata,
        }
    }
}

fn default_base_url() -> String {
    "https://data.commoncrawl.org/".into()
}
fn default_index_url() -> String {
    "https://index.commoncrawl.org/".into()
}
fn default_kind() -> Kind {
    Kind::Warc
}
fn default_true() -> bool {
    true
}
fn default_records_per_split() -> usize {
    1000
}

/// Options of the `commoncrawl` source.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommonCrawlConfig {
    /// Crawl id (`CC-MAIN-2024-22`) or `latest` (the first crawl of `collinfo.json`).
    pub crawl: String,
    /// `warc` (default), `wet` or `wat`.
    #[serde(default = "default_kind")]
    pub kind: Kind,
    /// Only files of these segments: `A..B`, positions in the sorted list of the crawl's segments, B excluded (`0..10`).
    #[serde(default)]
    pub segments: Option<String>,
    /// Only N files, chosen by `seed` (the same N for the same seed), kept in the crawl's order.
    #[serde(default)]
    pub sample: Option<usize>,
    /// Seed for `sample` (default 0).
    #[serde(default)]
    pub seed: u64,
    /// Only records whose URL starts with this (a final `*` is allowed), found through the CDX index; each record is one range request.
    #[serde(default)]
    pub url_pattern: Option<String>,
    /// Only records of this host and its subdomains, found through the CDX index.
    #[serde(default)]
    pub domain: Option<String>,
    /// Where crawl files are read (default `https://data.commoncrawl.org/`; `s3://commoncrawl/` reads through object_store).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Where `collinfo.json` is (default `https://index.commoncrawl.org/`).
    #[serde(default = "default_index_url")]
    pub index_url: String,
    /// Leave out files (or CDX record groups) that committed versions of the dataset already read (default true).
    #[serde(default = "default_true")]
    pub incremental: bool,
    /// Records of one file per split, for `url_pattern` / `domain` (default 1000).
    #[serde(default = "default_records_per_split")]
    pub records_per_split: usize,
    /// HTTP settings (retries, backoff, timeouts, politeness, User-Agent).
    #[serde(default)]
    pub http: HttpOptions,
    /// HTTP statuses kept for `warc` (default [200]), as in the `warc` source.
    #[serde(default = "default_statuses")]
    pub statuses: Vec<u16>,
    /// Records with a larger block are skipped and counted (default 16 MiB).
    #[serde(default = "default_max_payload")]
    pub max_payload_bytes: u64,
    /// The HTTP client (per-host gates shared by every split), made on first use.
    #[serde(skip)]
    net: Arc<OnceLock<Arc<Net>>>,
}

fn default_statuses() -> Vec<u16> {
    vec![200]
}
fn default_max_payload() -> u64 {
    16 << 20
}

fn option_error(key: &str, message: impl Into<String>) -> OptionError {
    OptionError { path: vec![PathSeg::Key(key.into())], message: message.into(), at_key: false }
}

/// Registry hook for `commoncrawl`.
///
/// # Errors
/// Unknown or invalid options.
pub fn configure(options: serde_json::Value, _ctx: &ConfigureContext) -> Result<StageConfig, OptionError> {
    let c: CommonCrawlConfig = parse_options(options)?;
    if c.crawl != "latest" && !c.crawl.starts_with("CC-") {
        return Err(option_error(
            "crawl",
            format!("`{}` is not a crawl id: write `CC-MAIN-2024-22` or `latest`", c.crawl),
        ));
    }
    if let Some(s) = &c.segments {
        parse_range(s).map_err(|m| option_error("segments", m))?;
    }
    if c.sample == Some(0) {
        return Err(option_error("sample", "`sample` is a number of files, at least 1"));
    }
    if c.url_pattern.is_some() && c.domain.is_some() {
        return Err(option_error("domain", "give `url_pattern` or `domain`, not both"));
    }
    if c.records_per_split == 0 {
        return Err(option_error("records_per_split", "at least 1"));
    }
    check_base(&c.base_url).map_err(|m| option_error("base_url", m))?;
    check_base(&c.index_url).map_err(|m| option_error("index_url", m))?;
    c.http.check().map_err(|m| option_error("http", m))?;
    Ok(StageConfig::Source(Arc::new(c)))
}

fn check_base(u: &str) -> std::result::Result<(), String> {
    if !(u.starts_with("http://") || u.starts_with("https://") || u.starts_with("s3://")) {
        return Err(format!("`{u}` is not an http(s):// or s3:// URL"));
    }
    if !u.ends_with('/') {
        return Err(format!("`{u}` must end with `/`"));
    }
    Ok(())
}

/// `A..B` → (A, B).
fn parse_range(s: &str) -> std::result::Result<(usize, usize), String> {
    let bad = || format!("`{s}` is not a range: write `A..B` (segment positions, B excluded), e.g. `0..10`");
    let (a, b) = s.split_once("..").ok_or_else(bad)?;
    let (a, b): (usize, usize) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
    if a >= b {
        return Err(format!("`{s}` is empty: B must be above A"));
    }
    Ok((a, b))
}

/// Shared by the two Common Crawl sources.
pub(crate) fn net_for(cell: &OnceLock<Arc<Net>>, opts: &HttpOptions) -> Result<Arc<Net>> {
    if let Some(n) = cell.get() {
        return Ok(n.clone());
    }
    let n = Net::new(opts.clone()).map_err(EngineError::External)?;
    Ok(cell.get_or_init(|| n).clone())
}

/// Fails on the first lost event (a plan-time listing must be whole).
fn plan_error(e: net::FetchError) -> EngineError {
    EngineError::External(format!("{e}; rerun once the server answers (retries and backoff: the `http:` option)"))
}

/// Reads a whole object: an http(s) GET with retries, or an object_store get for `s3://`.
fn fetch_all(net: &Arc<Net>, url: &str, events: &Events) -> std::result::Result<bytes::Bytes, net::FetchError> {
    if url.starts_with("s3://") {
        return crate::net::s3::get_all(url).map_err(|m| net::FetchError::Failed {
            url: url.into(),
            message: m,
            tries: 1,
        });
    }
    net.get(url, None, events).map(|f| f.body)
}

fn gunzip(url: &str, data: &[u8]) -> Result<String> {
    let mut s = String::new();
    flate2::read::MultiGzDecoder::new(data)
        .read_to_string(&mut s)
        .map_err(|e| EngineError::External(format!("{url}: not a gzip text file: {e}")))?;
    Ok(s)
}

/// The id of the newest crawl in `collinfo.json` (the list is newest first).
fn latest_crawl(net: &Arc<Net>, index_url: &str, events: &Events) -> Result<String> {
    let url = format!("{index_url}collinfo.json");
    let body = fetch_all(net, &url, events).map_err(plan_error)?;
    let list: Vec<serde_json::Value> =
        serde_json::from_slice(&body).map_err(|e| EngineError::External(format!("{url}: not a crawl list ({e})")))?;
    let mut ids: Vec<&str> =
        list.iter().filter_map(|c| c.get("id")?.as_str()).filter(|id| id.starts_with("CC-MAIN-")).collect();
    // Newest first in practice; sort to not depend on it (ids sort by year-week).
    ids.sort_unstable();
    ids.last().map(|s| s.to_string()).ok_or_else(|| EngineError::External(format!("{url} lists no CC-MAIN crawl")))
}

/// The lines of `<base>crawl-data/<crawl>/<kind>.paths.gz`.
fn paths_list(net: &Arc<Net>, base: &str, crawl: &str, kind: Kind, events: &Events) -> Result<Vec<String>> {
    let url = format!("{base}crawl-data/{crawl}/{}.paths.gz", kind.name());
    let gz = fetch_all(net, &url, events).map_err(plan_error)?;
    Ok(gunzip(&url, &gz)?.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect())
}

/// The segment of a crawl path (`crawl-data/C/segments/<segment>/warc/...`).
fn segment_of(path: &str) -> &str {
    path.split("/segments/").nth(1).and_then(|r| r.split('/').next()).unwrap_or("")
}

/// Deterministic sample: the `n` paths with the smallest xxh3(seed, path), in their original order.
fn sample_paths(paths: Vec<String>, n: usize, seed: u64) -> Vec<String> {
    let mut keyed: Vec<(u64, usize)> =
        paths.iter().enumerate().map(|(i, p)| (xxhash_rust::xxh3::xxh3_64_with_seed(p.as_bytes(), seed), i)).collect();
    keyed.sort_unstable();
    let mut keep: Vec<usize> = keyed.into_iter().take(n).map(|(_, i)| i).collect();
    keep.sort_unstable();
    keep.into_iter().map(|i| paths[i].clone()).collect()
}

/// The crawl id in a Common Crawl path or URL (`.../crawl-data/CC-MAIN-2024-22/...`).
fn crawl_of(url: &str) -> Option<&str> {
    url.split("crawl-data/").nth(1)?.split('/').next()
}

/// SURT key prefixes for a URL pattern or a domain (`com,example)/news/`).
pub(crate) fn surt_prefixes(url_pattern: Option<&str>, domain: Option<&str>) -> Vec<String> {
    fn host_surt(host: &str) -> String {
        let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
        let host = host.strip_prefix("www.").unwrap_or(&host);
        host.split('.').rev().collect::<Vec<_>>().join(",")
    }
    if let Some(d) = domain {
        let h = host_surt(d);
        return vec![format!("{h})"), format!("{h},")];
    }
    let Some(p) = url_pattern else {
        return Vec::new();
    };
    let p = p.trim_end_matches('*');
    let rest = p.split_once("://").map_or(p, |(_, r)| r);
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let host = host.split(':').next().unwrap_or(host);
    vec![format!("{}){}", host_surt(host), path.to_ascii_lowercase())]
}

/// One record found in the CDX index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct CdxHit {
    filename: String,
    offset: u64,
    length: u64,
}

/// Looks records up through `cluster.idx` and range requests of the CDX blocks that may hold them.
fn cdx_lookup(net: &Arc<Net>, base: &str, crawl: &str, prefixes: &[String], events: &Events) -> Result<Vec<CdxHit>> {
    let dir = format!("{base}cc-index/collections/{crawl}/indexes/");
    let idx_url = format!("{dir}cluster.idx");
    let idx = fetch_all(net, &idx_url, events).map_err(plan_error)?;
    let idx = String::from_utf8_lossy(&idx);
    // (key, file, offset, length)
    let mut blocks: Vec<(String, String, u64, u64)> = Vec::new();
    for (n, line) in idx.lines().enumerate() {
        let f: Vec<&str> = line.split('\t').collect();
        let parsed = (|| {
            let key = f.first()?.split(' ').next()?.to_string();
            Some((key, f.get(1)?.to_string(), f.get(2)?.trim().parse().ok()?, f.get(3)?.trim().parse().ok()?))
        })();
        match parsed {
            Some(b) => blocks.push(b),
            None if line.trim().is_empty() => {}
            None => return Err(EngineError::External(format!("{idx_url}:{}: not a cluster.idx line: {line}", n + 1))),
        }
    }
    let mut wanted: BTreeSet<usize> = BTreeSet::new();
    for p in prefixes {
        // Blocks are sorted by first key: from the last block starting before `p`, while blocks start at or below `p`'s range.
        let first = blocks.partition_point(|b| b.0.as_str() < p.as_str()).saturating_sub(1);
        for (i, b) in blocks.iter().enumerate().skip(first) {
            if b.0.as_str() > p.as_str() && !b.0.starts_with(p.as_str()) {
                break;
            }
            wanted.insert(i);
        }
    }
    let mut hits = Vec::new();
    for i in wanted {
        let (_, file, offset, length) = &blocks[i];
        let url = format!("{dir}{file}");
        let gz = if url.starts_with("s3://") {
            crate::net::s3::get_range(&url, *offset, *length).map_err(EngineError::External)?
        } else {
            net.get_range(&url, *offset, offset + length - 1, events).map_err(plan_error)?
        };
        for line in gunzip(&url, &gz)?.lines() {
            let Some((key, rest)) = line.split_once(' ') else {
                continue;
            };
            if !prefixes.iter().any(|p| key.starts_with(p.as_str())) {
                continue;
            }
            let Some(json) = rest.find('{').map(|k| &rest[k..]) else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
                return Err(EngineError::External(format!("{url}: bad CDX line: {line}")));
            };
            let num = |k: &str| v.get(k).and_then(|x| x.as_str().and_then(|s| s.parse().ok()).or_else(|| x.as_u64()));
            if let (Some(filename), Some(offset), Some(length)) =
                (v.get("filename").and_then(|f| f.as_str()), num("offset"), num("length"))
            {
                hits.push(CdxHit { filename: filename.to_string(), offset, length });
            }
        }
    }
    hits.sort();
    hits.dedup();
    Ok(hits)
}

/// Splits for CDX hits: per file, runs of up to `per_split` records; id `<file URL>#records=<offset>+<length>,...`.
fn cdx_splits(base: &str, hits: &[CdxHit], per_split: usize) -> Vec<SplitSpec> {
    let mut out = Vec::new();
    for group in hits.chunk_by(|a, b| a.filename == b.filename) {
        for chunk in group.chunks(per_split) {
            let ranges: Vec<String> = chunk.iter().map(|h| format!("{}+{}", h.offset, h.length)).collect();
            out.push(SplitSpec {
                id: format!("{base}{}#records={}", chunk[0].filename, ranges.join(",")),
                bytes: Some(chunk.iter().map(|h| h.length).sum()),
            });
        }
    }
    out
}

fn warc_config(kind: Kind, source: String, statuses: &[u16], max_payload: u64) -> WarcConfig {
    let mut c: WarcConfig = serde_json::from_value(serde_json::json!({ "paths": ["-"], "records": kind.records() }))
        .expect("a valid warc config");
    c.source = Some(source);
    c.statuses = statuses.to_vec();
    c.max_payload_bytes = max_payload;
    c
}

impl CommonCrawlConfig {
    fn net(&self) -> Result<Arc<Net>> {
        net_for(&self.net, &self.http)
    }
}

impl SourceConfig for CommonCrawlConfig {
    fn schema(&self) -> arrow::datatypes::SchemaRef {
        doc_schema(if self.kind == Kind::Warc { Body::Html } else { Body::Text })
    }

    fn resolved(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn splits(&self) -> Result<Vec<SplitSpec>> {
        self.splits_since(&Committed::default())
    }

    fn splits_since(&self, committed: &Committed) -> Result<Vec<SplitSpec>> {
        let net = self.net()?;
        let events = Events::default();
        let crawl =
            if self.crawl == "latest" { latest_crawl(&net, &self.index_url, &events)? } else { self.crawl.clone() };
        let specs = if self.url_pattern.is_some() || self.domain.is_some() {
            let prefixes = surt_prefixes(self.url_pattern.as_deref(), self.domain.as_deref());
            let hits = cdx_lookup(&net, &self.base_url, &crawl, &prefixes, &events)?;
            let hits: Vec<CdxHit> = hits
                .into_iter()
                .filter(|h| h.filename.contains(&format!("/{}/", self.kind.name())) || self.kind == Kind::Warc)
                .collect();
            cdx_splits(&self.base_url, &hits, self.records_per_split)
        } else {
            let mut paths = paths_list(&net, &self.base_url, &crawl, self.kind, &events)?;
            if let Some(r) = &self.segments {
                let (a, b) = parse_range(r).map_err(EngineError::User)?;
                let segs: BTreeSet<&str> = paths.iter().map(|p| segment_of(p)).collect();
                let keep: BTreeSet<String> = segs.into_iter().skip(a).take(b - a).map(str::to_string).collect();
                paths.retain(|p| keep.contains(segment_of(p)));
            }
            if let Some(n) = self.sample {
                paths = sample_paths(paths, n, self.seed);
            }
            paths.into_iter().map(|p| SplitSpec { id: format!("{}{p}", self.base_url), bytes: None }).collect()
        };
        let before = specs.len();
        let specs: Vec<SplitSpec> =
            specs.into_iter().filter(|s| !(self.incremental && committed.splits.contains(&s.id))).collect();
        tracing::info!(crawl, files = before, new = specs.len(), "commoncrawl: planned");
        Ok(specs)
    }

    fn open(&self, split: &SplitSpec, options: &ReadOptions) -> Result<Box<dyn SplitReader>> {
        let crawl = crawl_of(&split.id).unwrap_or(&self.crawl).to_string();
        let source = format!("cc:{crawl}");
        let config = warc_config(self.kind, source, &self.statuses, self.max_payload_bytes);
        open_split(&self.net()?, config, &split.id, options)
    }
}

/// Opens a crawl-file split (`<url>`) or a CDX split (`<url>#records=o+l,...`).
pub(crate) fn open_split(
    net: &Arc<Net>,
    config: WarcConfig,
    id: &str,
    options: &ReadOptions,
) -> Result<Box<dyn SplitReader>> {
    let events = Events::default();
    let (url, records) = match id.split_once("#records=") {
        Some((u, r)) => {
            let mut list = Vec::new();
            for part in r.split(',') {
                let (o, l) = part
                    .split_once('+')
                    .and_then(|(o, l)| Some((o.parse::<u64>().ok()?, l.parse::<u64>().ok()?)))
                    .ok_or_else(|| EngineError::Internal(format!("split `{id}`: bad record range `{part}`")))?;
                list.push((o, l));
            }
            (u.to_string(), Some(list))
        }
        None => (id.to_string(), None),
    };
    let mut reader = CcReader {
        net: net.clone(),
        config,
        url,
        records,
        next_record: 0,
        inner: None,
        events,
        batch_rows: options.batch_rows,
    };
    if reader.records.is_none() {
        let src: Box<dyn crate::warc::Source> = if reader.url.starts_with("s3://") {
            Box::new(crate::net::s3::ObjectFile::open(&reader.url).map_err(EngineError::External)?)
        } else {
            Box::new(HttpFile::open(net.clone(), &reader.url, reader.events.clone()))
        };
        reader.inner = Some(reader.warc(src, 0)?);
    }
    Ok(Box::new(reader))
}

struct CcReader {
    net: Arc<Net>,
    config: WarcConfig,
    url: String,
    /// CDX splits: (offset, length) of each record; `None` reads the whole file.
    records: Option<Vec<(u64, u64)>>,
    next_record: usize,
    inner: Option<WarcSplitReader>,
    events: Events,
    batch_rows: usize,
}

impl CcReader {
    fn warc(&self, src: Box<dyn crate::warc::Source>, position: u64) -> Result<WarcSplitReader> {
        let mut reader = WarcReader::from_source(src, position).map_err(|e| {
            let lost = self.events.lock().expect("events lock").iter().rev().find(|e| e.lost).map(|e| e.detail.clone());
            EngineError::External(lost.unwrap_or_else(|| format!("cannot read {}: {e}", self.url)))
        })?;
        reader.set_max_block_len(self.config.max_payload_bytes);
        Ok(split_reader(self.config.clone(), self.url.clone(), reader, self.batch_rows))
    }

    /// A download that failed after every retry fails the split (so it is not
    /// committed as read, and a rerun fetches it again); a 4xx is a counted skip.
    fn check(&self, skips: &mut Skips) -> Result<()> {
        let failed = self
            .events
            .lock()
            .expect("events lock")
            .iter()
            .find(|e| e.lost && e.reason == "net_failed")
            .map(|e| e.detail.clone());
        net::drain_into(&self.events, skips);
        match failed {
            Some(d) => Err(EngineError::External(format!("{d}; the split is left unread so a rerun reads it"))),
            None => Ok(()),
        }
    }
}

impl SplitReader for CcReader {
    fn next_batch(&mut self, skips: &mut Skips) -> Result<Option<arrow::record_batch::RecordBatch>> {
        loop {
            if let Some(inner) = self.inner.as_mut() {
                let batch = inner.next_batch(skips);
                self.check(skips)?;
                match batch? {
                    Some(b) => return Ok(Some(b)),
                    None if self.records.is_none() => return Ok(None),
                    None => self.inner = None,
                }
            }
            let Some(records) = &self.records else {
                return Ok(None);
            };
            let Some(&(offset, length)) = records.get(self.next_record) else {
                return Ok(None);
            };
            self.next_record += 1;
            if length == 0 {
                continue;
            }
            let data = if self.url.starts_with("s3://") {
                crate::net::s3::get_range(&self.url, offset, length).map_err(EngineError::External)
            } else {
                match self.net.get_range(&self.url, offset, offset + length - 1, &self.events) {
                    Ok(d) => Ok(d),
                    Err(net::FetchError::Status { .. }) => {
                        self.check(skips)?;
                        continue;
                    }
                    Err(e) => Err(EngineError::External(format!("{e}; the split is left unread so a rerun reads it"))),
                }
            };
            let data = data?;
            let src = OffsetCursor { data: std::io::Cursor::new(data), base: offset };
            self.inner = Some(self.warc(Box::new(src), offset)?);
        }
    }

    fn bytes_read(&self) -> u64 {
        self.inner.as_ref().map_or(0, |r| r.bytes_read())
    }
}

/// In-memory bytes of a record that sit at `base` in the remote file, so
/// that record offsets stay file offsets.
struct OffsetCursor {
    data: std::io::Cursor<bytes::Bytes>,
    base: u64,
}

impl Read for OffsetCursor {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.data.read(buf)
    }
}

impl std::io::Seek for OffsetCursor {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        let to = match to {
            std::io::SeekFrom::Start(n) => std::io::SeekFrom::Start(n.saturating_sub(self.base)),
            other => other,
        };
        Ok(self.data.seek(to)? + self.base)
    }
}

fn default_news_base() -> String {
    "https://data.commoncrawl.org/".into()
}

/// Options of the `commoncrawl_news` source.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommonCrawlNewsConfig {
    /// First month, `YYYY-MM`.
    pub from: String,
    /// Last month, `YYYY-MM` (default: the current month, UTC).
    #[serde(default)]
    pub to: Option<String>,
    /// Where CC-NEWS is read (default `https://data.commoncrawl.org/`; `s3://commoncrawl/` through object_store).
    #[serde(default = "default_news_base")]
    pub base_url: String,
    /// Leave out files that committed versions of the dataset already read (default true).
    #[serde(default = "default_true")]
    pub incremental: bool,
    /// HTTP settings.
    #[serde(default)]
    pub http: HttpOptions,
    /// HTTP statuses kept (default [200]).
    #[serde(default = "default_statuses")]
    pub statuses: Vec<u16>,
    /// Records with a larger block are skipped and counted (default 16 MiB).
    #[serde(default = "default_max_payload")]
    pub max_payload_bytes: u64,
    /// The HTTP client (per-host gates shared by every split), made on first use.
    #[serde(skip)]
    net: Arc<OnceLock<Arc<Net>>>,
}

fn parse_month(s: &str) -> Option<(i32, u32)> {
    let (y, m) = s.trim().split_once('-')?;
    let (y, m): (i32, u32) = (y.parse().ok()?, m.parse().ok()?);
    ((1..=12).contains(&m) && (2016..=9999).contains(&y)).then_some((y, m))
}

/// Registry hook for `commoncrawl_news`.
///
/// # Errors
/// Unknown or invalid options.
pub fn configure_news(options: serde_json::Value, _ctx: &ConfigureContext) -> Result<StageConfig, OptionError> {
    let c: CommonCrawlNewsConfig = parse_options(options)?;
    let from = parse_month(&c.from).ok_or_else(|| {
        option_error("from", format!("`{}` is not a month: write `2024-05` (CC-NEWS starts 2016-08)", c.from))
    })?;
    if let Some(to) = &c.to {
        let to =
            parse_month(to).ok_or_else(|| option_error("to", format!("`{to}` is not a month: write `2024-07`")))?;
        if to < from {
            return Err(option_error("to", "`to` is before `from`"));
        }
    }
    check_base(&c.base_url).map_err(|m| option_error("base_url", m))?;
    c.http.check().map_err(|m| option_error("http", m))?;
    Ok(StageConfig::Source(Arc::new(c)))
}

impl SourceConfig for CommonCrawlNewsConfig {
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
        use chrono::Datelike;
        let net = net_for(&self.net, &self.http)?;
        let events = Events::default();
        let (mut y, mut m) =
            parse_month(&self.from).ok_or_else(|| EngineError::User(format!("bad month `{}`", self.from)))?;
        let now = chrono::Utc::now();
        let (ty, tm) = match &self.to {
            Some(t) => parse_month(t).ok_or_else(|| EngineError::User(format!("bad month `{t}`")))?,
            None => (now.year(), now.month()),
        };
        let current = (now.year(), now.month());
        let mut specs = Vec::new();
        while (y, m) <= (ty, tm) {
            let url = format!("{}crawl-data/CC-NEWS/{y:04}/{m:02}/warc.paths.gz", self.base_url);
            match fetch_all(&net, &url, &events) {
                Ok(gz) => {
                    for line in gunzip(&url, &gz)?.lines().map(str::trim).filter(|l| !l.is_empty()) {
                        specs.push(SplitSpec { id: format!("{}{line}", self.base_url), bytes: None });
                    }
                }
                // The current month's list may not be published yet.
                Err(net::FetchError::Status { status: 404, .. }) if (y, m) >= current => {
                    tracing::info!("{url}: not published yet");
                }
                Err(e) => return Err(plan_error(e)),
            }
            (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
        }
        Ok(specs.into_iter().filter(|s| !(self.incremental && committed.splits.contains(&s.id))).collect())
    }

    fn open(&self, split: &SplitSpec, options: &ReadOptions) -> Result<Box<dyn SplitReader>> {
        let config = warc_config(Kind::Warc, "cc-news".into(), &self.statuses, self.max_payload_bytes);
        open_split(&net_for(&self.net, &self.http)?, config, &split.id, options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surt_prefixes_of_patterns_and_domains() {
        assert_eq!(surt_prefixes(Some("https://www.example.com/news/*"), None), vec!["com,example)/news/"]);
        assert_eq!(surt_prefixes(None, Some("Example.com")), vec!["com,example)", "com,example,"]);
    }

    #[test]
    fn samples_are_deterministic_and_keep_order() {
        let paths: Vec<String> = (0..50).map(|i| format!("f{i:02}")).collect();
        let a = sample_paths(paths.clone(), 5, 7);
        assert_eq!(a, sample_paths(paths.clone(), 5, 7));
        assert_eq!(a.len(), 5);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_ne!(a, sample_paths(paths, 5, 8));
    }

    #[test]
    fn ranges_and_segments() {
        assert_eq!(parse_range("0..10"), Ok((0, 10)));
        assert!(parse_range("3..3").is_err());
        assert!(parse_range("x").is_err());
        assert_eq!(segment_of("crawl-data/C/segments/1715971057216.39/warc/x.warc.gz"), "1715971057216.39");
        assert_eq!(crawl_of("https://h/crawl-data/CC-MAIN-2024-22/segments/1/warc/x"), Some("CC-MAIN-2024-22"));
    }
}
