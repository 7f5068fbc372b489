//! `smelt ui`: a read-only web app over the catalog, runs and training runs,
//! served by smelt itself (server-rendered HTML with inline SVG, no
//! JavaScript, works offline), or written out as static pages (`--export`).
//!
//! ```text
//! TCP ──hyper http1──► handle: GET/HEAD only, limits, token ──► route(path, query)
//!                                                                  │ pages.rs: catalog (sled, opened per page),
//!                                                                  │ storage, run records, DataFusion (SQL page)
//!                                                                  ▼
//!                                                      html.rs: page frame, tables, SVG charts (every value escaped)
//! --export DIR ──► the same route() for every page a link can reach ──► DIR/**/*.html
//! ```
//! Every page carries `<base href="../..">` to the root, and every link is
//! relative to the root, so the exported files link to each other exactly as
//! the served pages do.

pub mod html;
mod pages;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use crate::output::emit;

/// `smelt ui` arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  smelt ui                                   # http://127.0.0.1:8080
  smelt ui --port 9000 --data-dir /data/smelt
  SMELT_UI_TOKEN=s3cret smelt ui --bind 0.0.0.0   # other machines: open http://HOST:8080/?token=s3cret once
  smelt ui --export site/                    # the same pages as static HTML (CI artifacts, a file share)

Read-only: no page writes to the catalog or storage. The sled index is opened
only while a page reads it, so runs and the scheduler commit while it is up.")]
pub struct UiArgs {
    /// Port to listen on (0: any free port, printed at start).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to bind; anything but loopback requires --token.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Access token, checked on every request (header `Authorization: Bearer T`, or `?token=T` once, which sets a cookie).
    #[arg(long, env = "SMELT_UI_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Write every page as static HTML under this directory instead of serving.
    #[arg(long, value_name = "DIR")]
    pub export: Option<PathBuf>,
    /// SQL page: seconds a query may run.
    #[arg(long, default_value_t = 20.0, value_name = "SECONDS")]
    pub sql_timeout: f64,
    /// SQL page: MiB of memory a query's operators (sorts, joins, aggregates) may hold.
    #[arg(long, default_value_t = 512, value_name = "MIB")]
    pub sql_memory: usize,
}

/// What a page renderer needs.
pub struct Ctx {
    /// The data directory.
    pub data_dir: PathBuf,
    /// Served (forms and the SQL page work) or exported.
    pub served: bool,
    /// SQL page limits.
    pub sql: SqlLimits,
}

/// What one query of the SQL page may use.
#[derive(Debug, Clone, Copy)]
pub struct SqlLimits {
    /// Wall time.
    pub timeout: Duration,
    /// Bytes of operator memory (DataFusion's memory pool).
    pub memory: usize,
}

/// Why a page cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// Malformed path or parameter (400).
    #[error("{0}")]
    BadRequest(String),
    /// No such dataset, version or run (404).
    #[error("{0}")]
    NotFound(String),
    /// Too long a path, query or parameter (414).
    #[error("{0}")]
    TooLong(String),
    /// Everything else (500).
    #[error("{0:#}")]
    Internal(anyhow::Error),
}

impl From<smelt_catalog::CatalogError> for UiError {
    fn from(e: smelt_catalog::CatalogError) -> Self {
        match e {
            smelt_catalog::CatalogError::User(m) => UiError::BadRequest(m),
            e => UiError::Internal(e.into()),
        }
    }
}

impl From<smelt_engine::EngineError> for UiError {
    fn from(e: smelt_engine::EngineError) -> Self {
        UiError::Internal(e.into())
    }
}

impl From<anyhow::Error> for UiError {
    fn from(e: anyhow::Error) -> Self {
        match e.downcast::<smelt_catalog::CatalogError>() {
            Ok(c) => c.into(),
            Err(e) => UiError::Internal(e),
        }
    }
}

impl UiError {
    fn status(&self) -> StatusCode {
        match self {
            UiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            UiError::NotFound(_) => StatusCode::NOT_FOUND,
            UiError::TooLong(_) => StatusCode::URI_TOO_LONG,
            UiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Longest request target (path and query) accepted.
pub const MAX_TARGET: usize = 16 * 1024;
/// Longest SQL statement accepted.
pub const MAX_SQL: usize = 8 * 1024;
/// SQL page: rows per page.
pub const SQL_ROWS: usize = 100;

/// Query parameters of a request (decoded; repeated names: the last wins).
#[derive(Debug, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: &str) -> Result<Query, UiError> {
        let mut out = Vec::new();
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let bad = || {
                UiError::BadRequest(format!(
                    "malformed query parameter `{}`",
                    html::esc(&k.chars().take(40).collect::<String>())
                ))
            };
            out.push((html::unseg(k, true).ok_or_else(bad)?, html::unseg(v, true).ok_or_else(bad)?));
        }
        Ok(Query(out))
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    /// A 1-based `page` parameter as a 0-based index.
    fn page(&self) -> Result<usize, UiError> {
        match self.get("page") {
            None | Some("") => Ok(0),
            Some(p) => p
                .parse::<usize>()
                .ok()
                .filter(|p| (1..=1_000_000).contains(p))
                .map(|p| p - 1)
                .ok_or_else(|| UiError::BadRequest("`page` is a number from 1".into())),
        }
    }
}

/// A rendered response body.
pub enum Body {
    /// A page in the frame: (title, inner HTML).
    Page(String, String),
    /// A whole HTML document (the audit report).
    Document(String),
}

/// The relative path from a request path to the root: one `../` per directory level.
fn base_for(path: &str) -> String {
    "../".repeat(path.trim_start_matches('/').matches('/').count())
}

/// Decoded path segments; `.`/`..`, separators and control characters inside a segment are refused.
fn segments(path: &str) -> Result<Vec<String>, UiError> {
    let mut out = Vec::new();
    for raw in path.trim_start_matches('/').split('/') {
        let s = html::unseg(raw, false)
            .ok_or_else(|| UiError::BadRequest("malformed percent-encoding in the path".into()))?;
        if s == "." || s == ".." || s.contains(['/', '\\']) || s.chars().any(char::is_control) {
            return Err(UiError::BadRequest("path segments may not be `.`, `..` or contain separators".into()));
        }
        out.push(s);
    }
    Ok(out)
}

fn version_number(file: &str, prefix: &str, suffix: &str) -> Option<u64> {
    file.strip_prefix(prefix)?.strip_suffix(suffix)?.parse().ok()
}

/// The page at `path` (with `query`).
///
/// # Errors
/// [`UiError`]: its status and message are the response.
pub async fn route(ctx: &Ctx, path: &str, query: &Query) -> Result<Body, UiError> {
    let segs = segments(path)?;
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let page = |(t, b): (String, String)| Body::Page(t, b);
    match segs.as_slice() {
        [""] | ["index.html"] => Ok(page(pages::datasets(ctx)?)),
        ["d", ds] | ["d", ds, ""] | ["d", ds, "index.html"] => Ok(page(pages::dataset(ctx, ds, query.page()?).await?)),
        ["d", ds, file] => {
            if let Some(v) = version_number(file, "v", ".html") {
                Ok(page(pages::version(ctx, ds, v).await?))
            } else if let Some(v) = version_number(file, "v", "-audit.html") {
                Ok(Body::Document(pages::audit_report(ctx, ds, v)?))
            } else if let Some((a, b)) = file
                .strip_prefix("diff-")
                .and_then(|f| f.strip_suffix(".html"))
                .and_then(|f| f.split_once('-'))
                .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
            {
                Ok(page(pages::diff(ctx, &format!("{ds}@{a}"), &format!("{ds}@{b}")).await?))
            } else {
                Err(UiError::NotFound(format!("no page `{file}` of a dataset")))
            }
        }
        ["diff.html"] => {
            let (Some(a), Some(b)) = (query.get("a"), query.get("b")) else {
                return Err(UiError::BadRequest("a diff needs `a` and `b`, as in diff.html?a=news@3&b=news@4".into()));
            };
            if a.len() > 300 || b.len() > 300 {
                return Err(UiError::TooLong("a version reference is at most 300 characters".into()));
            }
            Ok(page(pages::diff(ctx, a, b).await?))
        }
        ["runs"] | ["runs", ""] | ["runs", "index.html"] => Ok(page(pages::runs(ctx, query.page()?).await?)),
        ["runs", file] => match file.strip_suffix(".html") {
            Some(id) => Ok(page(pages::run(ctx, id).await?)),
            None => Err(UiError::NotFound(format!("no page `{file}`"))),
        },
        ["train"] | ["train", ""] | ["train", "index.html"] => Ok(page(pages::training(ctx).await?)),
        ["train", "compare.html"] if ctx.served => {
            let (Some(a), Some(b)) = (query.get("a"), query.get("b")) else {
                return Err(UiError::BadRequest("a comparison needs `a` and `b`, two training run ids".into()));
            };
            if !smelt_catalog::training::valid_run_id(a) || !smelt_catalog::training::valid_run_id(b) {
                return Err(UiError::BadRequest("`a` and `b` are training run ids".into()));
            }
            Ok(page(pages::training_compare(ctx, a, b).await?))
        }
        ["train", file] => match file.strip_suffix(".html") {
            Some(id) if smelt_catalog::training::valid_run_id(id) => Ok(page(pages::training_run(ctx, id).await?)),
            _ => Err(UiError::BadRequest(format!("`{file}` is not a training run page"))),
        },
        ["sql.html"] if ctx.served => Ok(page(sql_page(ctx, query).await?)),
        _ => Err(UiError::NotFound(format!("no page at `{path}`"))),
    }
}

/// The SQL page: one reading statement, a page of its rows.
async fn sql_page(ctx: &Ctx, query: &Query) -> Result<(String, String), UiError> {
    use std::fmt::Write as _;
    let q = query.get("q").unwrap_or("").trim().to_string();
    if q.len() > MAX_SQL {
        return Err(UiError::TooLong(format!("a query is at most {MAX_SQL} bytes")));
    }
    let page = query.page()?;
    let mut s = format!(
        r#"<form id="sql-form" method="get" action="sql.html"><textarea name="q" rows="6">{}</textarea><br><button type="submit">Run</button> <span class="muted">One SELECT (or EXPLAIN, DESCRIBE) over versions (<code>"news@3"</code>, <code>"news@latest"</code>) and the catalog tables ({}); {SQL_ROWS} rows a page, {} s and {} MiB at most.</span></form>"#,
        html::esc(&q),
        smelt_query::sql::CATALOG_TABLES.join(", "),
        ctx.sql.timeout.as_secs_f64(),
        ctx.sql.memory >> 20,
    );
    if q.is_empty() {
        s.push_str(r#"<p class="muted">For example: <code>SELECT dataset, version, rows, tokens FROM versions ORDER BY committed_at DESC</code></p>"#);
        return Ok(("SQL".into(), s));
    }
    let catalog = smelt_runner::Workspace::new(&ctx.data_dir).open_catalog()?;
    let run = smelt_query::sql::query_page(catalog, &q, page * SQL_ROWS, SQL_ROWS, ctx.sql.memory);
    let result = tokio::time::timeout(ctx.sql.timeout, run).await;
    let p = match result {
        Err(_) => {
            return Err(UiError::BadRequest(format!(
                "the query ran past {} s; narrow it (WHERE, LIMIT), run it with `smelt sql`, or start smelt ui with a larger --sql-timeout",
                ctx.sql.timeout.as_secs_f64()
            )))
        }
        Ok(Err(smelt_catalog::CatalogError::User(m))) => return Err(UiError::BadRequest(m)),
        Ok(Err(e)) => return Err(UiError::BadRequest(e.to_string())),
        Ok(Ok(p)) => p,
    };
    let headers: Vec<String> = p.schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut rows = Vec::new();
    let options = arrow::util::display::FormatOptions::default().with_null("NULL");
    for b in &p.batches {
        let formatters: Vec<_> = b
            .columns()
            .iter()
            .map(|c| arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<_, _>>()
            .map_err(|e| UiError::Internal(e.into()))?;
        for r in 0..b.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|f| {
                        let v = f.value(r).to_string();
                        let v = if v.chars().count() > 500 {
                            format!("{}...", v.chars().take(500).collect::<String>())
                        } else {
                            v
                        };
                        html::esc(&v)
                    })
                    .collect::<Vec<_>>(),
            );
        }
    }
    let first = page * SQL_ROWS;
    let _ = write!(
        s,
        r#"<p id="sql-rows">Rows {} to {}{}.</p>"#,
        if rows.is_empty() { first } else { first + 1 },
        first + rows.len(),
        if p.more { " (more follow)" } else { "" }
    );
    let h: Vec<&str> = headers.iter().map(String::as_str).collect();
    s.push_str(&html::table("sql-result", &h, &rows));
    let nav =
        |p: usize, label: &str| format!(r#"<a href="sql.html?q={}&amp;page={}">{label}</a> "#, html::seg(&q), p + 1);
    if page > 0 {
        s.push_str(&nav(page - 1, "previous page"));
    }
    if p.more {
        s.push_str(&nav(page + 1, "next page"));
    }
    Ok(("SQL".into(), s))
}

/// A whole HTML document for a route's result.
pub fn document(ctx: &Ctx, path: &str, body: Body) -> String {
    match body {
        Body::Document(d) => d,
        Body::Page(title, inner) => html::page(&title, &base_for(path), &crumbs(path), &inner, ctx.served),
    }
}

/// Where a page sits: links to the pages above it.
fn crumbs(path: &str) -> Vec<(String, String)> {
    let segs = segments(path).unwrap_or_default();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let datasets = ("index.html".to_string(), "Datasets".to_string());
    match segs.as_slice() {
        ["d", ds, file] if !file.is_empty() && *file != "index.html" => {
            vec![datasets, (pages::dataset_href(ds), ds.to_string())]
        }
        ["d", ..] => vec![datasets],
        ["runs", file] if !file.is_empty() && *file != "index.html" => vec![("runs/index.html".into(), "Runs".into())],
        ["train", file] if !file.is_empty() && *file != "index.html" => {
            vec![("train/index.html".into(), "Training runs".into())]
        }
        _ => Vec::new(),
    }
}

fn error_document(ctx: &Ctx, path: &str, e: &UiError) -> String {
    let inner = format!(
        r#"<p class="note" id="error">{}</p><p><a href="index.html">All datasets</a></p>"#,
        html::esc(&e.to_string())
    );
    let title = e.status().canonical_reason().unwrap_or("Error").to_string();
    // A malformed path gets links from the root.
    let base = if segments(path).is_ok() { base_for(path) } else { "/".into() };
    html::page(&title, &base, &[], &inner, ctx.served)
}

/// Runs `smelt ui`.
///
/// # Errors
/// A non-loopback bind without a token, a port in use, an export directory that cannot be written.
pub async fn run(data_dir: &Path, args: &UiArgs) -> anyhow::Result<()> {
    if let Some(dir) = &args.export {
        return export(data_dir, dir).await;
    }
    let token = args.token.clone().filter(|t| !t.is_empty());
    if !args.bind.is_loopback() && token.is_none() {
        anyhow::bail!(
            "binding {} lets other machines read the catalog: give an access token with --token or SMELT_UI_TOKEN, or bind 127.0.0.1",
            args.bind
        );
    }
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(args.bind, args.port))
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}:{}: {e}; pick another --port", args.bind, args.port))?;
    let addr = listener.local_addr()?;
    emit(&format!("smelt ui: serving {} at http://{addr}/ (read-only; Ctrl-C stops)", data_dir.display()));
    if !(args.sql_timeout > 0.0 && args.sql_timeout.is_finite()) || args.sql_memory == 0 {
        anyhow::bail!("--sql-timeout and --sql-memory must be positive");
    }
    let sql = SqlLimits { timeout: Duration::from_secs_f64(args.sql_timeout), memory: args.sql_memory << 20 };
    let state = Arc::new(Server { ctx: Ctx { data_dir: data_dir.to_path_buf(), served: true, sql }, token });
    let mut shutdown = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => { tracing::warn!("accept: {e}"); continue; }
            },
            _ = &mut shutdown => return Ok(()),
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(state.handle(req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .max_buf_size(64 * 1024)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!("connection: {e}");
            }
        });
    }
}

struct Server {
    ctx: Ctx,
    token: Option<String>,
}

/// Equal without an early exit on the first differing byte.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

const COOKIE: &str = "smelt_ui_token";

impl Server {
    /// Whether the request carries the token (header, cookie or `token` parameter); always with none set.
    fn authorized(&self, req: &Request<Incoming>, query: &Query) -> bool {
        let Some(token) = &self.token else { return true };
        let header = req.headers().get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if header.and_then(|h| h.strip_prefix("Bearer ")).is_some_and(|t| same_secret(t.trim(), token)) {
            return true;
        }
        let cookies = req.headers().get_all(hyper::header::COOKIE);
        for c in cookies.iter().filter_map(|v| v.to_str().ok()) {
            for kv in c.split(';') {
                if let Some(v) = kv.trim().strip_prefix(COOKIE).and_then(|r| r.strip_prefix('=')) {
                    if same_secret(v, token) {
                        return true;
                    }
                }
            }
        }
        query.get("token").is_some_and(|t| same_secret(t, token))
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let started = std::time::Instant::now();
        let target = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
        let head = req.method() == Method::HEAD;
        let response = self.respond(&req, &target).await;
        let (status, mut headers, body) = response;
        tracing::info!(
            status = status.as_u16(),
            ms = started.elapsed().as_millis() as u64,
            "{} {target}",
            req.method()
        );
        let len = body.len();
        let mut r = Response::new(Full::new(if head { Bytes::new() } else { Bytes::from(body) }));
        *r.status_mut() = status;
        let h = r.headers_mut();
        h.insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/html; charset=utf-8"));
        h.insert(hyper::header::CONTENT_LENGTH, len.into());
        // No script runs on these pages; forbid any that data might smuggle in.
        h.insert(
            hyper::header::CONTENT_SECURITY_POLICY,
            hyper::header::HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; base-uri 'self'"),
        );
        h.insert(hyper::header::X_CONTENT_TYPE_OPTIONS, hyper::header::HeaderValue::from_static("nosniff"));
        h.insert(hyper::header::REFERRER_POLICY, hyper::header::HeaderValue::from_static("no-referrer"));
        h.insert(hyper::header::CACHE_CONTROL, hyper::header::HeaderValue::from_static("no-store"));
        for (k, v) in headers.drain(..) {
            if let Ok(v) = hyper::header::HeaderValue::from_str(&v) {
                h.append(k, v);
            }
        }
        r
    }

    async fn respond(
        &self,
        req: &Request<Incoming>,
        target: &str,
    ) -> (StatusCode, Vec<(hyper::header::HeaderName, String)>, String) {
        let ctx = &self.ctx;
        let (path, q) = target.split_once('?').unwrap_or((target, ""));
        let fail = |e: UiError| (e.status(), Vec::new(), error_document(ctx, path, &e));
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return (
                StatusCode::METHOD_NOT_ALLOWED,
                vec![(hyper::header::ALLOW, "GET, HEAD".into())],
                error_document(ctx, path, &UiError::BadRequest("smelt ui is read-only: GET and HEAD only".into())),
            );
        }
        if target.len() > MAX_TARGET {
            return fail(UiError::TooLong(format!("a request target is at most {MAX_TARGET} bytes")));
        }
        let query = match Query::parse(q) {
            Ok(q) => q,
            Err(e) => return fail(e),
        };
        if !self.authorized(req, &query) {
            let e = UiError::BadRequest(
                "this smelt ui needs its access token: open /?token=TOKEN once, or send `Authorization: Bearer TOKEN`"
                    .into(),
            );
            return (StatusCode::UNAUTHORIZED, Vec::new(), error_document(ctx, path, &e));
        }
        let mut headers = Vec::new();
        if let (Some(t), Some(_)) = (query.get("token"), &self.token) {
            headers.push((
                hyper::header::SET_COOKIE,
                format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict", html::seg(t)),
            ));
        }
        match route(ctx, path, &query).await {
            Ok(body) => (StatusCode::OK, headers, document(ctx, path, body)),
            Err(e) => {
                if matches!(e, UiError::Internal(_)) {
                    tracing::warn!("{target}: {e}");
                }
                fail(e)
            }
        }
    }
}

/// Writes every page a link can reach as static HTML under `dir`.
async fn export(data_dir: &Path, dir: &Path) -> anyhow::Result<()> {
    let ctx = Ctx {
        data_dir: data_dir.to_path_buf(),
        served: false,
        sql: SqlLimits { timeout: Duration::from_secs(1), memory: 1 << 20 },
    };
    let mut paths: Vec<String> = vec!["index.html".into(), "runs/index.html".into(), "train/index.html".into()];
    for (ds, versions, audited) in pages::export_plan(data_dir)? {
        let d = html::seg(&ds);
        paths.push(format!("d/{d}/index.html"));
        for (i, v) in versions.iter().enumerate() {
            paths.push(format!("d/{d}/v{v}.html"));
            if audited.contains(v) {
                paths.push(format!("d/{d}/v{v}-audit.html"));
            }
            if i > 0 {
                paths.push(format!("d/{d}/diff-{}-{v}.html", versions[i - 1]));
            }
        }
    }
    let ws = smelt_runner::Workspace::new(data_dir);
    let mut run_ids: Vec<String> = smelt_runner::runs::list(&ws)
        .await?
        .into_iter()
        .map(|r| match r {
            smelt_runner::runs::RunSummary::Local(l) => l.run_id,
            smelt_runner::runs::RunSummary::Cluster(c) => c.run_id,
        })
        .collect();
    let c = ws.open_catalog()?;
    for d in c.datasets()? {
        run_ids.extend(c.versions(&d.name)?.into_iter().map(|v| v.run_id));
    }
    let training: Vec<String> = c.training_runs()?.into_iter().map(|e| e.run_id).collect();
    drop(c);
    run_ids.sort();
    run_ids.dedup();
    paths.extend(run_ids.iter().map(|id| format!("runs/{}.html", html::seg(id))));
    paths.extend(training.iter().map(|id| format!("train/{}.html", html::seg(id))));
    let bar = indicatif::ProgressBar::new(paths.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("exporting {pos}/{len} pages {wide_bar} {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut written = 0usize;
    let mut failed = Vec::new();
    for p in &paths {
        let html = match route(&ctx, p, &Query::default()).await {
            Ok(body) => document(&ctx, p, body),
            Err(UiError::NotFound(m)) => {
                // A run of a version whose run left no record (pruned, other machine): the page says so.
                failed.push(format!("{p}: {m}"));
                error_document(&ctx, p, &UiError::NotFound(m))
            }
            Err(e) => return Err(anyhow::anyhow!("rendering {p}: {e}")),
        };
        // The path is percent-encoded; a file name is the encoded form, as a browser asks for it.
        let file = dir.join(p);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&file, html).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", file.display()))?;
        written += 1;
        bar.inc(1);
    }
    bar.finish_and_clear();
    emit(&format!("smelt ui: wrote {written} pages under {} (open {}/index.html)", dir.display(), dir.display()));
    for f in failed {
        tracing::warn!("{f}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked_before_anything_is_read() {
        assert_eq!(segments("/d/news/v3.html").unwrap(), ["d", "news", "v3.html"]);
        assert_eq!(segments("/d/a%20b/index.html").unwrap(), ["d", "a b", "index.html"]);
        for bad in ["/d/../x", "/d/%2e%2e/x", "/d/a%2Fb/x", "/d/%00/x", "/d/%zz/x", "/d/a%5Cb"] {
            assert!(matches!(segments(bad), Err(UiError::BadRequest(_))), "{bad}");
        }
        assert_eq!(base_for("/"), "");
        assert_eq!(base_for("/index.html"), "");
        assert_eq!(base_for("/d/news"), "../");
        assert_eq!(base_for("/d/news/"), "../../");
        assert_eq!(base_for("d/news/v3.html"), "../../");
    }

    #[test]
    fn query_parameters_decode_and_pages_are_bounded() {
        let q = Query::parse("q=SELECT+1%2B1&page=2&a=x%40y").unwrap();
        assert_eq!(q.get("q"), Some("SELECT 1+1"));
        assert_eq!(q.get("a"), Some("x@y"));
        assert_eq!(q.page().unwrap(), 1);
        assert!(Query::parse("page=0").unwrap().page().is_err());
        assert!(Query::parse("page=-1").unwrap().page().is_err());
        assert!(Query::parse("q=%E0%A4").is_err());
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("abc", "ab"));
    }
}
