//! The pages of `smelt ui`, each rendered from the catalog, the dataset
//! storage and the run records on every request (nothing is cached, so the
//! server's memory does not grow while browsing and a page always shows the
//! catalog as it is). The sled index is opened only while a page reads it,
//! so runs and schedulers can commit while the UI is up.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use smelt_catalog::{Catalog, DatasetStore, RunRecord, VersionManifest, VersionRef, VersionSummary};
use smelt_query::diff::{diff_versions, upstream_versions, VersionDiff};
use smelt_runner::runs::{self, RunSummary, RunView};
use smelt_runner::Workspace;

use super::html::{bars, curve, dag, delta, esc, int, link, seg, table, when, Node};
use super::{Ctx, UiError};
use crate::output::human_bytes;

/// Versions per page of a dataset's log, runs per page of the run list.
pub const PAGE_ROWS: usize = 100;

fn open(ctx: &Ctx) -> Result<Catalog, UiError> {
    Ok(Workspace::new(&ctx.data_dir).open_catalog()?)
}

pub fn dataset_href(ds: &str) -> String {
    format!("d/{}/index.html", seg(ds))
}

pub fn version_href(ds: &str, v: u64) -> String {
    format!("d/{}/v{v}.html", seg(ds))
}

pub fn diff_href(ds: &str, a: u64, b: u64) -> String {
    format!("d/{}/diff-{a}-{b}.html", seg(ds))
}

pub fn run_href(id: &str) -> String {
    format!("runs/{}.html", seg(id))
}

fn version_link(ds: &str, v: u64) -> String {
    link(&version_href(ds, v), &format!("{ds}@{v}"))
}

/// A `dataset@version` reference as a link when it names a number.
fn ref_link(r: &str) -> String {
    match r.rsplit_once('@').and_then(|(d, v)| Some((d, v.parse::<u64>().ok()?))) {
        Some((d, v)) => version_link(d, v),
        None => esc(r),
    }
}

fn tags_by_version(c: &Catalog, ds: &str) -> Result<BTreeMap<u64, Vec<String>>, UiError> {
    let mut tags: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (t, v) in c.tags(ds)? {
        tags.entry(v).or_default().push(t);
    }
    Ok(tags)
}

/// The status of a scheduled run as a CSS class suffix.
fn status_class(s: &str) -> &'static str {
    match s {
        "succeeded" => "succeeded",
        "failed" => "failed",
        "running" => "running",
        "pending" | "retry_wait" => "waiting",
        _ => "other",
    }
}

/// Health of a dataset's schedule from its run records: the last run's state and failures among the last ten.
fn schedule_health(records: &[&RunRecord]) -> String {
    let Some(last) = records.iter().max_by(|a, b| a.created_at.cmp(&b.created_at)) else {
        return r#"<span class="muted">not scheduled</span>"#.into();
    };
    let mut recent: Vec<&&RunRecord> = records.iter().collect();
    recent.sort_by(|a, b| b.created_at.cmp(&a.created_at));
    let failed = recent.iter().take(10).filter(|r| r.status.as_str() == "failed").count();
    let class = if failed > 0 { "bad" } else { "good" };
    format!(
        r#"<span class="{class}">last {}</span>{}"#,
        esc(last.status.as_str()),
        if failed > 0 { format!(", {failed} of the last {} failed", recent.len().min(10)) } else { String::new() }
    )
}

/// The clamped 0-based page of `n` items to show, and the number of pages.
fn paged(n: usize, page: usize) -> (usize, usize) {
    let pages = n.div_ceil(PAGE_ROWS).max(1);
    (page.min(pages - 1), pages)
}

/// Links to the other pages of a list at `href` (served only: exported sites hold the first page).
fn pager(href: &str, page: usize, pages: usize, served: bool) -> String {
    if pages < 2 || !served {
        return String::new();
    }
    let mut s = String::from(r#"<p id="pages">Page "#);
    for p in 0..pages {
        if p == page {
            let _ = write!(s, "<b>{}</b> ", p + 1);
        } else {
            let _ = write!(s, r#"<a href="{}?page={}">{}</a> "#, esc(href), p + 1, p + 1);
        }
    }
    s.push_str("</p>");
    s
}

/// A form that sends two of `choices` as `a` and `b` to `action` (`a` and `b`: the indexes preselected).
fn pair_form(id: &str, action: &str, verb: &str, choices: &[String], a: usize, b: usize) -> String {
    let options = |selected: usize| {
        let mut o = String::new();
        for (i, c) in choices.iter().enumerate() {
            let sel = if i == selected { " selected" } else { "" };
            let _ = write!(o, r#"<option value="{c}"{sel}>{c}</option>"#, c = esc(c));
        }
        o
    };
    format!(
        r#"<form id="{id}" class="inline" method="get" action="{action}">Compare <select name="a">{}</select> with <select name="b">{}</select> <button type="submit">{verb}</button></form>"#,
        options(a),
        options(b)
    )
}

// ----- datasets -----

pub fn datasets(ctx: &Ctx) -> Result<(String, String), UiError> {
    let c = open(ctx)?;
    let records = c.run_records()?;
    let mut rows = Vec::new();
    for d in c.datasets()? {
        let latest: Option<VersionSummary> = c.versions(&d.name)?.pop();
        let t = latest.as_ref().map(|m| m.totals.clone()).unwrap_or_default();
        let tags: Vec<String> = c.tags(&d.name)?.into_iter().map(|(t, v)| format!("{t}={v}")).collect();
        let mine: Vec<&RunRecord> = records.iter().filter(|r| r.dataset == d.name).collect();
        rows.push(vec![
            link(&dataset_href(&d.name), &d.name),
            version_link(&d.name, d.latest),
            int(t.rows),
            int(t.tokens),
            esc(&human_bytes(t.bytes)),
            latest.map(|l| esc(&when(&l.committed_at))).unwrap_or_default(),
            esc(&tags.join(", ")),
            schedule_health(&mine),
        ]);
    }
    drop(c);
    let body = if rows.is_empty() {
        r#"<p id="empty" class="note">No dataset yet: run a pipeline, as in <code>smelt run examples/quickstart.yaml</code>.</p>"#.into()
    } else {
        table("datasets", &["dataset", "latest", "#rows", "#tokens", "#size", "last commit", "tags", "schedule"], &rows)
    };
    Ok(("Datasets".into(), body))
}

// ----- one dataset -----

pub async fn dataset(ctx: &Ctx, ds: &str, page: usize) -> Result<(String, String), UiError> {
    let c = open(ctx)?;
    let Some(record) = c.dataset(ds)? else {
        let names: Vec<String> = c.datasets()?.into_iter().map(|d| d.name).collect();
        let close = smelt_catalog::closest(ds, names.iter().map(String::as_str)).map(str::to_string);
        return Err(UiError::NotFound(format!(
            "no dataset `{ds}`{}",
            close.map(|c| format!(" (did you mean {c}?)")).unwrap_or_default()
        )));
    };
    let versions = c.versions(ds)?;
    let tags = tags_by_version(&c, ds)?;
    drop(c);
    let publish = smelt_catalog::publish::records(&DatasetStore::open(&record.root_url)?).await?;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<p>{} versions, stored at <code>{}</code>. Latest: {}.</p>"#,
        versions.len(),
        esc(&record.root_url),
        version_link(ds, record.latest)
    );
    if versions.len() > 1 {
        let pts = |f: fn(&VersionSummary) -> u64| versions.iter().map(|v| (v.version as f64, f(v) as f64)).collect();
        s.push_str(&curve(
            "history",
            "rows and tokens by version",
            &[("rows".into(), pts(|v| v.totals.rows)), ("tokens".into(), pts(|v| v.totals.tokens))],
            &[],
        ));
    }
    if ctx.served && versions.len() > 1 {
        let choices: Vec<String> = versions.iter().rev().map(|v| format!("{ds}@{}", v.version)).collect();
        s.push_str(&pair_form("diff-form", "diff.html", "diff", &choices, 1, 0));
    }
    let (page, pages) = paged(versions.len(), page);
    let rows: Vec<Vec<String>> = versions
        .iter()
        .rev()
        .skip(page * PAGE_ROWS)
        .take(PAGE_ROWS)
        .map(|v| {
            let previous = versions.iter().rev().find(|p| p.version < v.version).map(|p| p.version);
            vec![
                version_link(ds, v.version),
                esc(&tags.get(&v.version).map(|t| t.join(", ")).unwrap_or_default()),
                publish.get(&v.version).map(|r| esc(&r.summary())).unwrap_or_default(),
                esc(&when(&v.committed_at)),
                link(&run_href(&v.run_id), &v.run_id),
                int(v.totals.rows),
                int(v.totals.tokens),
                int(v.totals.shards),
                esc(&human_bytes(v.totals.bytes)),
                format!("<code>{}</code>", esc(&v.pipeline_hash.chars().take(12).collect::<String>())),
                previous.map(|p| link(&diff_href(ds, p, v.version), &format!("vs @{p}"))).unwrap_or_default(),
            ]
        })
        .collect();
    s.push_str("<h2>Log</h2>");
    s.push_str(&table(
        "log",
        &[
            "version",
            "tags",
            "published",
            "committed",
            "run",
            "#rows",
            "#tokens",
            "#shards",
            "#size",
            "pipeline",
            "diff",
        ],
        &rows,
    ));
    s.push_str(&pager(&dataset_href(ds), page, pages, ctx.served));
    Ok((format!("Dataset {ds}"), s))
}

/// The version a path names, with the dataset's storage root.
fn manifest(ctx: &Ctx, ds: &str, v: u64) -> Result<(VersionManifest, String), UiError> {
    let c = open(ctx)?;
    let Some(record) = c.dataset(ds)? else { return Err(UiError::NotFound(format!("no dataset `{ds}`"))) };
    match c.manifest(ds, v)? {
        Some(m) => Ok((m, record.root_url)),
        None => Err(UiError::NotFound(format!("{ds} has no version {v} (latest is {})", record.latest))),
    }
}

/// A version by `dataset@version|tag|latest`.
fn resolve(ctx: &Ctx, r: &str) -> Result<(VersionManifest, String), UiError> {
    let vref: VersionRef = r.parse().map_err(|e: smelt_catalog::CatalogError| UiError::BadRequest(e.to_string()))?;
    let c = open(ctx)?;
    let m = c.resolve(&vref).map_err(|e| match e {
        smelt_catalog::CatalogError::User(m) => UiError::NotFound(m),
        e => e.into(),
    })?;
    let root = c.dataset(&m.dataset)?.map(|d| d.root_url).unwrap_or_default();
    Ok((m, root))
}

/// The pipeline stages of a version's resolved config, with their funnel counts.
fn pipeline_nodes(m: &VersionManifest) -> Vec<Node> {
    let funnel: BTreeMap<&str, &smelt_catalog::StageMetrics> = m.funnel.iter().map(|f| (f.stage.as_str(), f)).collect();
    let stages = m.lineage.resolved_config.get("stages").and_then(|s| s.as_array()).cloned().unwrap_or_default();
    stages
        .iter()
        .map(|st| {
            let name = st.get("name").and_then(|v| v.as_str()).unwrap_or("?").to_string();
            let f = funnel.get(name.as_str());
            Node {
                kind: st.get("type").and_then(|v| v.as_str()).unwrap_or("?").to_string(),
                inputs: st
                    .get("inputs")
                    .and_then(|v| v.as_array())
                    .map(|a| a.iter().filter_map(|i| i.as_str().map(str::to_string)).collect())
                    .unwrap_or_default(),
                rows_out: f.map(|f| f.rows_out),
                dropped: f.map(|f| f.drops.values().sum()),
                name,
            }
        })
        .collect()
}

pub async fn version(ctx: &Ctx, ds: &str, v: u64) -> Result<(String, String), UiError> {
    let (m, root) = manifest(ctx, ds, v)?;
    let c = open(ctx)?;
    let tags: Vec<String> = c.tags(ds)?.into_iter().filter(|(_, tv)| *tv == v).map(|(t, _)| t).collect();
    let previous = c.versions(ds)?.iter().rev().find(|p| p.version < v).map(|p| p.version);
    drop(c);
    let publish = smelt_catalog::publish::read_record(&DatasetStore::open(&root)?, v).await?;
    let t = &m.totals;
    let mut s = String::new();
    let l = &m.lineage;
    s.push_str(&table(
        "summary",
        &["committed", "run", "#rows", "#tokens", "#text bytes", "#shards", "#size", "tags", "published", "digest"],
        &[vec![
            esc(&when(&m.committed_at)),
            link(&run_href(&l.run_id), &l.run_id),
            int(t.rows),
            int(t.tokens),
            int(t.text_bytes),
            int(t.shards),
            esc(&human_bytes(t.bytes)),
            esc(&tags.join(", ")),
            publish.as_ref().map(|r| esc(&r.summary())).unwrap_or_default(),
            format!("<code>{}</code>", esc(&m.digest)),
        ]],
    ));
    if let Some(p) = previous {
        let _ = write!(s, "<p>{}</p>", link(&diff_href(ds, p, v), &format!("What changed since {ds}@{p}")));
    }

    // Lineage: the pipeline drawn with rows on each edge, upstream versions, the run.
    s.push_str("<h2>Lineage</h2>");
    let _ = write!(
        s,
        "<p>Pipeline <code>{}</code> (hash <code>{}</code>), smelt {}, {} input splits.</p>",
        esc(&l.pipeline_path),
        esc(&l.pipeline_hash.chars().take(16).collect::<String>()),
        esc(&l.smelt_version),
        int(l.inputs.len() as u64)
    );
    if let Some(iv) = &l.interval {
        let _ = write!(s, "<p>Scheduled interval {} to {} ({})</p>", esc(&iv.start), esc(&iv.end), esc(&iv.cron));
    }
    let upstream = upstream_versions(l);
    if !upstream.is_empty() {
        let _ = write!(
            s,
            r#"<p id="upstream">Reads {}.</p>"#,
            upstream.iter().map(|u| ref_link(u)).collect::<Vec<_>>().join(", ")
        );
    }
    for u in &l.upstream {
        if let Some(since) = &u.since {
            let _ = write!(
                s,
                r#"<p class="appended">Incremental: {} documents new or changed in {} since {}, {} removed; appended to {}.</p>"#,
                int(since.added),
                ref_link(&u.version),
                ref_link(&format!("{}@{}", u.dataset(), since.upstream)),
                int(since.removed),
                ref_link(&format!("{}@{}", m.dataset, since.base))
            );
        }
    }
    if let Some(v) = l.compacted_from {
        let _ = write!(
            s,
            "<p>Compacted from {}: the same rows in fewer shards.</p>",
            ref_link(&format!("{}@{v}", m.dataset))
        );
    }
    let nodes = pipeline_nodes(&m);
    if !nodes.is_empty() {
        s.push_str(&dag("dag", &nodes));
    }
    let _ = write!(
        s,
        "<details><summary>Resolved pipeline configuration</summary><pre>{}</pre></details>",
        esc(&serde_json::to_string_pretty(&l.resolved_config).unwrap_or_default())
    );

    // Schema.
    s.push_str("<h2>Schema</h2>");
    let rows: Vec<Vec<String>> = m
        .schema
        .iter()
        .map(|f| {
            vec![
                format!("<code>{}</code>", esc(&f.name)),
                format!("<code>{}</code>", esc(&f.data_type)),
                if f.nullable { "yes".into() } else { "no".into() },
            ]
        })
        .collect();
    s.push_str(&table("schema", &["column", "type", "nullable"], &rows));

    // Mixture.
    s.push_str("<h2>Mixture</h2>");
    mix_sources(&mut s, &m);
    mixture(&mut s, &m);

    // Funnel.
    s.push_str("<h2>Filter funnel</h2>");
    funnel(&mut s, &m);

    // Audit.
    if !m.audit.is_empty() {
        s.push_str("<h2>Audit</h2>");
        let rows: Vec<Vec<String>> = m
            .audit
            .iter()
            .map(|a| {
                vec![
                    esc(&a.stage),
                    int(a.docs),
                    int(a.audited_docs),
                    int(a.risks.len() as u64),
                    esc(&a
                        .risks
                        .iter()
                        .map(|r| format!("{} ({:?})", r.metric, r.action))
                        .collect::<Vec<_>>()
                        .join("; ")),
                ]
            })
            .collect();
        s.push_str(&table("audit", &["stage", "#documents", "#audited", "#risks", "risks"], &rows));
        let _ = write!(s, "<p>{}</p>", link(&format!("d/{}/v{v}-audit.html", seg(ds)), "The full audit report"));
    }

    // Shards.
    s.push_str("<h2>Shards</h2>");
    let rows: Vec<Vec<String>> = m
        .shards
        .iter()
        .take(200)
        .map(|sh| {
            vec![
                format!("<code>{}</code>", esc(&sh.path)),
                int(u64::from(sh.split)),
                int(sh.rows),
                esc(&human_bytes(sh.bytes)),
                format!("<code>{}</code>", esc(&sh.checksum.chars().take(24).collect::<String>())),
            ]
        })
        .collect();
    s.push_str(&table("shards", &["path", "#split", "#rows", "#size", "checksum"], &rows));
    if m.shards.len() > 200 {
        let _ = write!(
            s,
            r#"<p class="muted">200 of {} shards shown; all are in <code>smelt catalog show {ds}@{v} --format json</code>.</p>"#,
            m.shards.len()
        );
    }
    Ok((format!("{ds}@{v}"), s))
}

/// A `mix` source's realised mixture: per input version, its factor and the rows read and kept (from the splits' states).
fn mix_sources(s: &mut String, m: &VersionManifest) {
    let mut per: BTreeMap<&str, (f64, u64, u64)> = BTreeMap::new();
    for st in &m.lineage.source_state {
        let (Some(from), Some(factor)) =
            (st.state.get("from").and_then(|v| v.as_str()), st.state.get("factor").and_then(|v| v.as_f64()))
        else {
            continue;
        };
        let n = |k: &str| st.state.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        let e = per.entry(from).or_insert((factor, 0, 0));
        e.1 += n("rows_in");
        e.2 += n("rows_out");
    }
    if per.is_empty() {
        return;
    }
    let total: u64 = per.values().map(|e| e.2).sum::<u64>().max(1);
    let rows: Vec<Vec<String>> = per
        .iter()
        .map(|(from, (factor, read, kept))| {
            vec![
                ref_link(from),
                format!("{factor:.4}"),
                int(*read),
                int(*kept),
                format!("{:.2}%", *kept as f64 / total as f64 * 100.0),
            ]
        })
        .collect();
    s.push_str("<p>Mixed from (the <code>mix</code> source: each document kept <i>factor</i> times on average):</p>");
    s.push_str(&table("mix-sources", &["version", "#factor", "#documents read", "#kept", "#share"], &rows));
}

fn mixture(s: &mut String, m: &VersionManifest) {
    if m.stats.is_empty() {
        s.push_str(r#"<p class="muted">No mixture statistics (the version has no rows).</p>"#);
        return;
    }
    let by_tokens = m.stats.iter().any(|g| g.tokens > 0);
    let weight = |g: &smelt_catalog::GroupStats| if by_tokens { g.tokens } else { g.docs };
    let unit = if by_tokens { "tokens" } else { "documents" };
    let total: u64 = m.stats.iter().map(weight).sum::<u64>().max(1);
    for (id, title, key) in
        [("mix-lang", "language", 0usize), ("mix-source", "source", 1), ("mix-domain", "domain (top 20)", 2)]
    {
        let mut per: BTreeMap<&str, u64> = BTreeMap::new();
        for g in &m.stats {
            let k = match key {
                0 => g.lang.as_str(),
                1 => g.source.as_str(),
                _ => g.domain.as_str(),
            };
            *per.entry(k).or_default() += weight(g);
        }
        let mut data: Vec<(String, f64)> = per
            .into_iter()
            .map(|(k, n)| (if k.is_empty() { "(none)".into() } else { k.to_string() }, n as f64 / total as f64 * 100.0))
            .collect();
        data.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        data.truncate(20);
        s.push_str(&bars(id, &format!("share of {unit} by {title}"), &data, |v| format!("{v:.2}%")));
    }
}

fn funnel(s: &mut String, m: &VersionManifest) {
    let mut rows = Vec::new();
    let mut reasons: Vec<(String, f64)> = Vec::new();
    for f in &m.funnel {
        let dropped: u64 = f.drops.values().sum();
        let mut top: Vec<(&String, &u64)> = f.drops.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        for (r, n) in &top {
            reasons.push((format!("{} · {r}", f.stage), **n as f64));
        }
        let skipped: u64 = f.skips.values().sum();
        rows.push(vec![
            esc(&f.stage),
            int(f.rows_in),
            int(f.rows_out),
            int(dropped),
            int(skipped),
            esc(&top.iter().map(|(r, n)| format!("{r}: {}", int(**n))).collect::<Vec<_>>().join(", ")),
            int(f.busy_ms),
        ]);
    }
    s.push_str(&table(
        "funnel",
        &["stage", "#rows in", "#rows out", "#dropped", "#skipped", "reasons", "#busy ms"],
        &rows,
    ));
    reasons.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    reasons.truncate(25);
    if !reasons.is_empty() {
        s.push_str(&bars("funnel-chart", "documents dropped, by stage and reason", &reasons, |v| int(v as u64)));
    }
}

pub fn audit_report(ctx: &Ctx, ds: &str, v: u64) -> Result<String, UiError> {
    let (m, _) = manifest(ctx, ds, v)?;
    if m.audit.is_empty() {
        return Err(UiError::NotFound(format!("{ds}@{v} has no audit (its pipeline has no `audit` stage)")));
    }
    Ok(crate::audit_cmd::html(&m))
}

// ----- diff -----

pub async fn diff(ctx: &Ctx, a: &str, b: &str) -> Result<(String, String), UiError> {
    let (ma, root_a) = resolve(ctx, a)?;
    let (mb, root_b) = resolve(ctx, b)?;
    let documents = crate::docs::document_diff(&ma, &root_a, &mb, &root_b, 5).await?;
    let mut d = diff_versions(&ma, &mb, documents);
    d.signals = crate::signals::diff(&ctx.data_dir, &ma, &mb).await?;
    let mut s = String::new();
    let (fa, fb) = (format!("{}@{}", ma.dataset, ma.version), format!("{}@{}", mb.dataset, mb.version));
    let share = if ma.dataset == mb.dataset {
        diff_href(&ma.dataset, ma.version, mb.version)
    } else {
        format!("diff.html?a={}&b={}", seg(&fa), seg(&fb))
    };
    let _ = write!(
        s,
        r#"<p>From {} to {}. {} <a id="share" href="{}">Link to this diff</a>; in a terminal: <code>smelt catalog diff {} {}</code></p>"#,
        version_link(&ma.dataset, ma.version),
        version_link(&mb.dataset, mb.version),
        if d.same_data { "<b>Same data</b> (equal digests)." } else { "" },
        esc(&share),
        esc(&fa),
        esc(&fb),
    );
    let t = &d.totals;
    let row = |name: &str, (x, y): (u64, u64)| vec![esc(name), int(x), int(y), delta(x, y)];
    s.push_str(&table(
        "totals",
        &["", "#before", "#after", "#change"],
        &[row("rows", t.rows), row("tokens", t.tokens), row("text bytes", t.text_bytes), row("bytes", t.bytes)],
    ));
    diff_lineage(&mut s, &d);
    diff_documents(ctx, &mut s, &d, &ma, &mb).await?;
    diff_mixture(&mut s, &d);
    diff_funnel(&mut s, &d);
    diff_audit(&mut s, &d);
    diff_signals(&mut s, &d);
    Ok((format!("{fa} → {fb}"), s))
}

fn diff_lineage(s: &mut String, d: &VersionDiff) {
    let l = &d.lineage;
    s.push_str("<h2>Lineage and configuration</h2>");
    let _ = write!(
        s,
        r#"<p id="pipeline-changed">Pipeline {}; smelt {} → {}. Inputs: {} added, {} removed.</p>"#,
        if l.pipeline_changed { r#"<span class="bad">changed</span>"# } else { "unchanged" },
        esc(&l.smelt_version.0),
        esc(&l.smelt_version.1),
        l.inputs_added.len(),
        l.inputs_removed.len()
    );
    if let Some((a, b)) = &l.upstream {
        let _ = write!(
            s,
            "<p>Upstream: {} → {}</p>",
            a.iter().map(|u| ref_link(u)).collect::<Vec<_>>().join(", "),
            b.iter().map(|u| ref_link(u)).collect::<Vec<_>>().join(", ")
        );
    }
    if !l.config_changes.is_empty() {
        let rows: Vec<Vec<String>> = l
            .config_changes
            .iter()
            .map(|c| {
                vec![
                    format!("<code>{}</code>", esc(&c.path)),
                    format!("<code>{}</code>", esc(&c.before.to_string())),
                    format!("<code>{}</code>", esc(&c.after.to_string())),
                ]
            })
            .collect();
        s.push_str(&table("config-changes", &["setting", "before", "after"], &rows));
    }
    let sc = &d.schema;
    if !(sc.added.is_empty() && sc.removed.is_empty() && sc.changed.is_empty()) {
        let mut rows = Vec::new();
        for f in &sc.added {
            rows.push(vec!["added".into(), esc(&f.name), String::new(), esc(&f.data_type)]);
        }
        for f in &sc.removed {
            rows.push(vec!["removed".into(), esc(&f.name), esc(&f.data_type), String::new()]);
        }
        for (x, y) in &sc.changed {
            rows.push(vec!["changed".into(), esc(&x.name), esc(&x.data_type), esc(&y.data_type)]);
        }
        s.push_str(&table("schema-changes", &["", "column", "before", "after"], &rows));
    }
}

async fn diff_documents(
    ctx: &Ctx,
    s: &mut String,
    d: &VersionDiff,
    a: &VersionManifest,
    b: &VersionManifest,
) -> Result<(), UiError> {
    s.push_str("<h2>Documents</h2>");
    let Some(docs) = &d.documents else {
        s.push_str(
            r#"<p class="muted">A version has no document index, so documents cannot be compared one by one.</p>"#,
        );
        return Ok(());
    };
    let n = |k: &str| docs.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    s.push_str(&table(
        "documents",
        &["#added", "#removed", "#changed", "#unchanged"],
        &[vec![int(n("added")), int(n("removed")), int(n("changed")), int(n("unchanged"))]],
    ));
    for (part, version) in [("added", b), ("removed", a), ("changed", b)] {
        let ids: Vec<String> = docs
            .pointer(&format!("/samples/{part}"))
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|i| i.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        if ids.is_empty() {
            continue;
        }
        let found = crate::docs::fetch(&ctx.data_dir, version, &ids).await?;
        let rows: Vec<Vec<String>> = found
            .iter()
            .map(|j| {
                let f = |k: &str| j.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
                vec![
                    format!("<code>{}</code>", esc(&f("id"))),
                    esc(&f("url")),
                    format!("<pre>{}</pre>", esc(&f("text"))),
                ]
            })
            .collect();
        let _ = write!(s, "<h3>Sample {part} documents</h3>");
        s.push_str(&table(&format!("docs-{part}"), &["id", "url", "text (first 300 characters)"], &rows));
    }
    Ok(())
}

fn diff_mixture(s: &mut String, d: &VersionDiff) {
    s.push_str("<h2>Mixture</h2>");
    let mut rows: Vec<&smelt_query::diff::MixtureRow> = d.mixture.iter().filter(|r| r.share_delta_pp != 0.0).collect();
    rows.sort_by(|x, y| y.share_delta_pp.abs().total_cmp(&x.share_delta_pp.abs()));
    if rows.is_empty() {
        s.push_str(r#"<p id="mixture-same">No group's share moved.</p>"#);
        return;
    }
    let label = |r: &smelt_query::diff::MixtureRow| format!("{} · {} · {}", r.lang, r.source, r.domain);
    let data: Vec<(String, f64)> = rows.iter().take(20).map(|r| (label(r), r.share_delta_pp)).collect();
    s.push_str(&bars("mixture-delta", &format!("share change ({}), percentage points", d.share_basis), &data, |v| {
        format!("{v:+.2}pp")
    }));
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .take(50)
        .map(|r| {
            vec![
                esc(&r.lang),
                esc(&r.source),
                esc(&r.domain),
                format!("{} → {}", int(r.docs.0), int(r.docs.1)),
                format!("{} → {}", int(r.tokens.0), int(r.tokens.1)),
                format!("{:.2}% → {:.2}%", r.share.0 * 100.0, r.share.1 * 100.0),
                format!("{:+.2}", r.share_delta_pp),
            ]
        })
        .collect();
    s.push_str(&table("mixture", &["lang", "source", "domain", "#documents", "#tokens", "#share", "#pp"], &table_rows));
}

fn diff_funnel(s: &mut String, d: &VersionDiff) {
    s.push_str("<h2>Funnel</h2>");
    let mut rows: Vec<&smelt_query::diff::FunnelRow> = d.funnel.iter().filter(|r| r.count.0 != r.count.1).collect();
    rows.sort_by(|x, y| y.rate_delta_pp.abs().total_cmp(&x.rate_delta_pp.abs()));
    if rows.is_empty() {
        s.push_str(r#"<p id="funnel-same">No drop count changed.</p>"#);
        return;
    }
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                esc(&r.stage),
                esc(&r.reason),
                int(r.count.0),
                int(r.count.1),
                format!("{:.2}% → {:.2}%", r.rate.0 * 100.0, r.rate.1 * 100.0),
                format!("{:+.2}", r.rate_delta_pp),
            ]
        })
        .collect();
    s.push_str(&table("funnel-changes", &["stage", "reason", "#before", "#after", "#rate", "#pp"], &table_rows));
}

fn diff_audit(s: &mut String, d: &VersionDiff) {
    let a = &d.audit;
    if a.changed.is_empty() && a.risks_added.is_empty() && a.risks_removed.is_empty() {
        return;
    }
    s.push_str("<h2>Audit</h2>");
    for (id, title, list) in
        [("risks-added", "Risks added", &a.risks_added), ("risks-removed", "Risks gone", &a.risks_removed)]
    {
        if !list.is_empty() {
            let _ = write!(s, r#"<p id="{id}">{title}: {}</p>"#, esc(&list.join("; ")));
        }
    }
    let num = |v: Option<f64>| v.map_or_else(|| "n/a".into(), |v| format!("{v:.4}"));
    let rows: Vec<Vec<String>> = a
        .changed
        .iter()
        .take(30)
        .map(|c| vec![esc(&c.stage), esc(&c.metric), num(c.before), num(c.after), num(c.delta)])
        .collect();
    s.push_str(&table("audit-changes", &["stage", "metric", "#before", "#after", "#change"], &rows));
}

fn diff_signals(s: &mut String, d: &VersionDiff) {
    if d.signals.is_empty() {
        return;
    }
    s.push_str("<h2>Signals</h2>");
    let dist = |x: &Option<smelt_query::diff::Distribution>| {
        x.map_or_else(|| "n/a".into(), |x| format!("{:.3} ({:.3} / {:.3} / {:.3})", x.mean, x.p10, x.p50, x.p90))
    };
    let rows: Vec<Vec<String>> =
        d.signals.iter().map(|r| vec![format!("<code>{}</code>", esc(&r.field)), dist(&r.a), dist(&r.b)]).collect();
    s.push_str(&table("signals", &["signal", "before: mean (p10 / p50 / p90)", "after"], &rows));
}

// ----- runs -----

pub async fn runs(ctx: &Ctx, page: usize) -> Result<(String, String), UiError> {
    let c = open(ctx)?;
    let records = c.run_records()?;
    drop(c);
    let mut s = String::new();
    // The grid: one row per scheduled dataset, one cell per interval (the latest 60), coloured by state.
    let mut by_dataset: BTreeMap<&str, Vec<&RunRecord>> = BTreeMap::new();
    for r in &records {
        by_dataset.entry(r.dataset.as_str()).or_default().push(r);
    }
    s.push_str("<h2>Scheduled intervals</h2>");
    if by_dataset.is_empty() {
        s.push_str(r#"<p class="muted">No scheduled or backfilled run yet (<code>smelt scheduler</code>, <code>smelt backfill</code>).</p>"#);
    } else {
        s.push_str(r#"<table class="grid" id="grid"><tr><th>dataset</th><th>intervals, oldest to newest (latest 60)</th></tr>"#);
        for (ds, mut list) in by_dataset {
            list.sort_by(|a, b| {
                let k = |r: &RunRecord| {
                    r.interval.as_ref().map(|i| i.start.clone()).unwrap_or_else(|| r.created_at.clone())
                };
                k(a).cmp(&k(b))
            });
            let skip = list.len().saturating_sub(60);
            let _ = write!(s, "<tr><td>{}</td><td><table><tr>", link(&dataset_href(ds), ds));
            for r in list.iter().skip(skip) {
                let st = r.status.as_str();
                let start = r.interval.as_ref().map(|i| i.start.as_str()).unwrap_or("");
                let _ = write!(
                    s,
                    r#"<td class="cell s-{}"><a href="{}" title="{} {}: {} (attempt {} of {}, {})"></a></td>"#,
                    status_class(st),
                    esc(&run_href(&r.run_id)),
                    esc(ds),
                    esc(start),
                    esc(st),
                    r.attempts,
                    r.max_attempts,
                    esc(&r.trigger),
                );
            }
            s.push_str("</tr></table></td></tr>");
        }
        s.push_str("</table>");
        s.push_str(
            r#"<p class="muted">Green: succeeded, red: failed, blue: running, amber: pending or waiting to retry, grey: interrupted.</p>"#,
        );
    }
    let all = runs::list(&Workspace::new(&ctx.data_dir)).await?;
    let (page, pages) = paged(all.len(), page);
    let rows: Vec<Vec<String>> = all
        .iter()
        .rev()
        .skip(page * PAGE_ROWS)
        .take(PAGE_ROWS)
        .map(|r| match r {
            RunSummary::Local(l) => vec![
                link(&run_href(&l.run_id), &l.run_id),
                esc(&l.executor),
                link(&dataset_href(&l.dataset), &l.dataset),
                format!(r#"<span class="s-text-{}">{}</span>"#, status_class(&l.state), esc(&l.state)),
                esc(&l
                    .interval
                    .as_ref()
                    .map(|i| i.start.clone())
                    .or_else(|| l.trigger_version.as_ref().map(|v| format!("after {v}")))
                    .unwrap_or_default()),
                esc(&l.trigger.clone().unwrap_or_default()),
                l.attempts.map(|a| a.to_string()).unwrap_or_default(),
                esc(&l.last_error.clone().unwrap_or_default().chars().take(160).collect::<String>()),
            ],
            RunSummary::Cluster(k) => vec![
                link(&run_href(&k.run_id), &k.run_id),
                esc(&format!("{:?}", k.executor).to_lowercase()),
                link(&dataset_href(&k.dataset), &k.dataset),
                esc(&k.committed.clone().map_or_else(
                    || format!("{} of {} splits", k.splits_done, k.splits_total),
                    |c| format!("committed {c}"),
                )),
                String::new(),
                String::new(),
                k.submissions.to_string(),
                String::new(),
            ],
        })
        .collect();
    let _ = write!(s, "<h2>All runs</h2><p>{} runs, newest first.</p>", all.len());
    s.push_str(&table(
        "runs",
        &["run", "executor", "dataset", "state", "interval", "trigger", "#attempts", "last error"],
        &rows,
    ));
    s.push_str(&pager("runs/index.html", page, pages, ctx.served));
    Ok(("Runs".into(), s))
}

/// The last `max` bytes of a log, cut at a line start.
fn tail(bytes: &[u8], max: usize) -> String {
    let start = bytes.len().saturating_sub(max);
    let cut = &bytes[start..];
    let cut = if start > 0 { cut.iter().position(|b| *b == b'\n').map_or(cut, |i| &cut[i + 1..]) } else { cut };
    String::from_utf8_lossy(cut).into_owned()
}

pub async fn run(ctx: &Ctx, id: &str) -> Result<(String, String), UiError> {
    if id.is_empty() || id.len() > 200 || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)) {
        return Err(UiError::BadRequest(format!("`{id}` is not a run id")));
    }
    let ws = Workspace::new(&ctx.data_dir);
    let view = runs::show(&ws, id).await.map_err(|e| match e {
        smelt_engine::EngineError::User(m) => UiError::NotFound(m),
        e => UiError::Internal(e.into()),
    })?;
    let mut s = String::new();
    match view {
        RunView::Local(v) => {
            let l = &v.summary;
            s.push_str(&table(
                "run",
                &["executor", "dataset", "state", "pipeline", "interval", "committed"],
                &[vec![
                    esc(&l.executor),
                    link(&dataset_href(&l.dataset), &l.dataset),
                    esc(&l.state),
                    format!("<code>{}</code>", esc(&l.pipeline)),
                    esc(&l.interval.as_ref().map(|i| format!("{} to {}", i.start, i.end)).unwrap_or_default()),
                    v.committed.as_ref().map(|(d, n)| version_link(d, *n)).unwrap_or_default(),
                ]],
            ));
            if let Some(r) = &v.record {
                if let Some(e) = &r.last_error {
                    let _ = write!(s, r#"<h2>Last error</h2><pre id="last-error">{}</pre>"#, esc(e));
                }
                let rows: Vec<Vec<String>> = r
                    .history
                    .iter()
                    .map(|a| {
                        vec![
                            a.number.to_string(),
                            esc(&when(&a.started_at)),
                            esc(&a.finished_at.as_deref().map(when).unwrap_or_default()),
                            a.exit_code.map(|c| c.to_string()).unwrap_or_default(),
                            format!("<code>{}</code>", esc(&a.log)),
                        ]
                    })
                    .collect();
                s.push_str("<h2>Attempts</h2>");
                s.push_str(&table("attempts", &["#attempt", "started", "finished", "#exit", "log"], &rows));
                if let Ok(logs) = runs::logs(&ws, id, None, None) {
                    for log in logs {
                        let _ = write!(
                            s,
                            "<h3>Log of attempt {} (last 64 KiB)</h3><pre class=\"log\">{}</pre>",
                            log.attempt.unwrap_or(0),
                            esc(&tail(&log.text, 64 * 1024))
                        );
                    }
                }
            } else {
                s.push_str(r#"<p class="muted">Started by <code>smelt run</code>, which logs to its terminal.</p>"#);
            }
        }
        RunView::Cluster(v) => {
            let _ = write!(
                s,
                "<p>{} run of <code>{}</code> over {} ranks: <b>{}</b>{}.</p>",
                esc(&format!("{:?}", v.state.executor)),
                esc(&v.state.dataset),
                v.state.world_size,
                esc(v.overall),
                v.committed
                    .as_ref()
                    .map(|(d, n)| format!(", committed as {}", version_link(d, *n)))
                    .unwrap_or_default()
            );
            let rows: Vec<Vec<String>> = v
                .ranks
                .iter()
                .map(|r| {
                    vec![
                        r.rank.to_string(),
                        esc(&r.state),
                        r.phase.map(|p| p.to_string()).unwrap_or_default(),
                        esc(&r.job.clone().unwrap_or_default()),
                        format!("{} / {}", r.splits_done, r.splits_total),
                        esc(&r.exit_code.clone().unwrap_or_default()),
                        esc(&r.reason),
                    ]
                })
                .collect();
            s.push_str(&table("ranks", &["#rank", "state", "#phase", "job", "#splits", "exit", "reason"], &rows));
            for r in &v.ranks {
                if let Ok(logs) = runs::logs(&ws, id, Some(r.rank), None) {
                    for log in logs {
                        let _ = write!(
                            s,
                            "<h3>Rank {}: <code>{}</code> (last 16 KiB)</h3><pre class=\"log\">{}</pre>",
                            r.rank,
                            esc(&log.path),
                            esc(&tail(&log.text, 16 * 1024))
                        );
                    }
                }
            }
        }
    }
    Ok((format!("Run {id}"), s))
}

// ----- training runs -----

pub async fn training(ctx: &Ctx) -> Result<(String, String), UiError> {
    let c = open(ctx)?;
    let entries = c.training_runs()?;
    drop(c);
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                link(&format!("train/{}.html", seg(&e.run_id)), &e.run_id),
                esc(e.name.as_deref().unwrap_or("")),
                link(&dataset_href(&e.dataset), &e.dataset),
                e.versions.iter().map(|v| version_link(&e.dataset, *v)).collect::<Vec<_>>().join(", "),
                e.ranks.len().to_string(),
                esc(&when(&e.started_at)),
            ]
        })
        .collect();
    let mut form = String::new();
    if ctx.served && entries.len() > 1 {
        let choices: Vec<String> = entries.iter().map(|e| e.run_id.clone()).collect();
        form = pair_form("compare-form", "train/compare.html", "compare", &choices, 0, 1);
    }
    let body = if rows.is_empty() {
        r#"<p class="muted" id="empty">No training run recorded yet: the loader records one when it is given a run id (docs/training-runs.md); <code>smelt train sync</code> indexes runs found in storage.</p>"#.to_string()
    } else {
        table("training", &["run", "name", "dataset", "versions", "#ranks", "started"], &rows) + &form
    };
    Ok(("Training runs".into(), body))
}

/// The metric a page draws: `wanted` when given, else `loss`, else the first with `loss` in its name, else the first.
fn pick_metric(points: &[smelt_catalog::training::MetricPoint], wanted: Option<&str>) -> Option<String> {
    let mut names: Vec<&String> = points.iter().flat_map(|p| p.values.keys()).collect();
    names.sort();
    names.dedup();
    if let Some(w) = wanted {
        return names.iter().find(|n| n.as_str() == w).map(|s| s.to_string());
    }
    names
        .iter()
        .find(|n| n.as_str() == "loss")
        .or_else(|| names.iter().find(|n| n.contains("loss")))
        .or(names.first())
        .map(|s| s.to_string())
}

/// A recorded training run read from its dataset's storage.
async fn load_training(ctx: &Ctx, id: &str) -> Result<smelt_catalog::training::TrainingRun, UiError> {
    let c = open(ctx)?;
    let entry = c.training_run(id)?;
    drop(c);
    let Some(entry) = entry else { return Err(UiError::NotFound(format!("no training run `{id}` in the index"))) };
    let store = DatasetStore::open(&entry.root_url)?;
    Ok(smelt_catalog::training::load_run(&store, id).await?)
}

/// Window and threshold of `smelt train spikes` and `compare` (their defaults).
const TRAIN_WINDOW: usize = 50;
const TRAIN_Z: f64 = 4.0;

pub async fn training_run(ctx: &Ctx, id: &str) -> Result<(String, String), UiError> {
    let run = load_training(ctx, id).await?;
    let entry = &run.entry;
    let points = run.primary_metrics();
    let mut s = String::new();
    let _ = write!(
        s,
        "<p>Reads {}; {} ranks; started {}.</p>",
        entry.versions.iter().map(|v| version_link(&entry.dataset, *v)).collect::<Vec<_>>().join(", "),
        entry.ranks.len(),
        esc(&when(&entry.started_at))
    );
    let Some(metric) = pick_metric(points, None) else {
        s.push_str(r#"<p class="muted">No metrics logged yet.</p>"#);
        return Ok((format!("Training run {id}"), s));
    };
    let series = crate::train_cmd::series(points, &metric);
    let values: Vec<f64> = series.iter().map(|x| x.1).collect();
    let spikes = crate::train_cmd::analysis::spikes(&values, TRAIN_WINDOW, TRAIN_Z);
    let marks: Vec<(f64, f64)> = spikes.iter().map(|sp| (series[sp.index].0 as f64, sp.value)).collect();
    let pts: Vec<(f64, f64)> = series.iter().map(|p| (p.0 as f64, p.1)).collect();
    s.push_str(&curve(
        "loss-curve",
        &format!("{metric} by step (rank 0); red: spikes"),
        &[(metric.clone(), pts)],
        &marks,
    ));
    let rows: Vec<Vec<String>> = spikes
        .iter()
        .take(50)
        .map(|sp| {
            let step = series[sp.index].0;
            vec![
                step.to_string(),
                format!("{:.4}", sp.value),
                format!("{:.4}", sp.baseline),
                format!("{:.1}", sp.z),
                format!("<code>smelt train batch {} --step {step}</code>", esc(id)),
            ]
        })
        .collect();
    let _ = write!(
        s,
        "<h2>Spikes</h2><p>{} points more than {TRAIN_Z} robust standard deviations above the median of the {TRAIN_WINDOW} calm points before them (as <code>smelt train spikes {}</code>).</p>",
        spikes.len(),
        esc(id)
    );
    if !rows.is_empty() {
        s.push_str(&table("spikes", &["#step", "#value", "#baseline", "#z", "the documents of that batch"], &rows));
    }
    Ok((format!("Training run {id}"), s))
}

/// Two training runs' curves on common steps, where they part, and the diff of the versions they read.
pub async fn training_compare(ctx: &Ctx, a: &str, b: &str) -> Result<(String, String), UiError> {
    let (ra, rb) = (load_training(ctx, a).await?, load_training(ctx, b).await?);
    let metric = pick_metric(ra.primary_metrics(), None)
        .ok_or_else(|| UiError::NotFound(format!("training run {a} logged no metric")))?;
    let (sa, sb) = (
        crate::train_cmd::series(ra.primary_metrics(), &metric),
        crate::train_cmd::series(rb.primary_metrics(), &metric),
    );
    let aligned = crate::train_cmd::align(&sa, &sb, crate::train_cmd::Align::Step)
        .map_err(|e| UiError::NotFound(e.to_string()))?;
    let xa: Vec<f64> = aligned.iter().map(|p| p.1).collect();
    let xb: Vec<f64> = aligned.iter().map(|p| p.2).collect();
    let div = crate::train_cmd::analysis::divergence(&xa, &xb, TRAIN_WINDOW, TRAIN_Z);
    let mut s = String::new();
    let label = |r: &smelt_catalog::training::TrainingRun| {
        let e = &r.entry;
        format!(
            "{} ({})",
            e.run_id,
            e.versions.iter().map(|v| format!("{}@{v}", e.dataset)).collect::<Vec<_>>().join(", ")
        )
    };
    let series = [
        (label(&ra), aligned.iter().map(|p| (p.0, p.1)).collect()),
        (label(&rb), aligned.iter().map(|p| (p.0, p.2)).collect()),
    ];
    let marks: Vec<(f64, f64)> = div.iter().map(|d| (aligned[d.index].0, aligned[d.index].2)).collect();
    s.push_str(&curve("compare-curve", &format!("{metric} by step, {} common steps", aligned.len()), &series, &marks));
    match &div {
        Some(d) => {
            let _ = write!(
                s,
                r#"<p id="divergence">The curves part at step {:.0}: over the next {TRAIN_WINDOW} steps B is {:+.4} from A ({:.1} standard errors).</p>"#,
                aligned[d.index].0, d.gap, d.z
            );
        }
        None => s.push_str(r#"<p id="divergence">The curves do not part.</p>"#),
    }
    let (ea, eb) = (&ra.entry, &rb.entry);
    if let (Some(va), Some(vb)) = (ea.versions.last(), eb.versions.last()) {
        let href = if ea.dataset == eb.dataset {
            diff_href(&ea.dataset, *va, *vb)
        } else {
            format!("diff.html?a={}&b={}", seg(&format!("{}@{va}", ea.dataset)), seg(&format!("{}@{vb}", eb.dataset)))
        };
        let _ = write!(s, r#"<p>{}</p>"#, link(&href, "What changed in the data between the versions they read"));
    }
    Ok((format!("Compare {a} with {b}"), s))
}

/// Every dataset with its versions (number order) and the versions that have an audit, for `--export`.
pub fn export_plan(data_dir: &Path) -> anyhow::Result<Vec<(String, Vec<u64>, std::collections::BTreeSet<u64>)>> {
    let c = Workspace::new(data_dir).open_catalog()?;
    let mut out = Vec::new();
    for d in c.datasets()? {
        let versions: Vec<u64> = c.versions(&d.name)?.iter().map(|v| v.version).collect();
        let mut audited = std::collections::BTreeSet::new();
        for &v in &versions {
            if c.manifest(&d.name, v)?.is_some_and(|m| !m.audit.is_empty()) {
                audited.insert(v);
            }
        }
        out.push((d.name, versions, audited));
    }
    Ok(out)
}
