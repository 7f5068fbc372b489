//! The network sources (`commoncrawl`, `commoncrawl_news`, `rss`) against a
//! real HTTP server on 127.0.0.1 (tests/common/http_server.rs) serving real
//! fixtures (tests/fixtures/net/README.md), with injected faults; and the
//! `s3://` path against a real S3-compatible server (moto) at
//! SMELT_S3_ENDPOINT: that test is `#[ignore]`d, and `.ci/run` starts the
//! server and runs it with `--include-ignored`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use common::http_server::{Fault, HttpServer};
use common::{repo, s3, Env};

const CRAWL: &str = "CC-MAIN-2024-22";
/// Served path of the 136 KB resiliparse excerpt (the file the resume tests cut).
const BIG: &str =
    "/crawl-data/CC-MAIN-2024-22/segments/1715971057216.39/warc/CC-MAIN-20240517233122-20240518023122-00001.warc.gz";

fn fixtures() -> std::path::PathBuf {
    repo().join("tests/fixtures/net")
}

/// Real article pages (newspaper4k's test pages, shared with the extraction tests).
fn pages_dir() -> std::path::PathBuf {
    repo().join("stages/tests/fixtures/html")
}

/// A server holding the Common Crawl layout of tests/fixtures/net/cc.
fn cc_server() -> HttpServer {
    let srv = HttpServer::start();
    let cc = fixtures().join("cc");
    let files: BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(cc.join("files.json")).unwrap()).unwrap();
    for (served, src) in files {
        srv.put(&format!("/{served}"), std::fs::read(repo().join(src)).unwrap());
    }
    for entry in walk(&cc) {
        let rel = entry.strip_prefix(&cc).unwrap().to_string_lossy().to_string();
        if rel != "files.json" {
            srv.put(&format!("/{rel}"), std::fs::read(&entry).unwrap());
        }
    }
    srv
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Fast retries for tests (the backoff logic itself is unit-tested).
const HTTP: &str =
    "http: {retries: 3, backoff_ms: 20, timeout_s: 5, requests_per_second: 1000, max_connections_per_host: 2}";

fn cc_pipeline(env: &Env, name: &str, srv: &HttpServer, source: &str) -> String {
    let base = srv.url("/");
    let yaml = format!(
        "dataset: {name}\nstages:\n  cc:\n    type: commoncrawl\n    base_url: {base}\n    index_url: {base}\n    {HTTP}\n{source}  text:\n    type: html_to_text\n    inputs: [cc]\n    min_chars: 1\n  hashed:\n    type: content_hash\n    inputs: [text]\n  out:\n    type: parquet\n    inputs: [hashed]\n"
    );
    env.write(&format!("{name}.yaml"), yaml.as_bytes()).display().to_string()
}

fn local_pipeline(env: &Env, files: &[&str]) -> String {
    let paths: Vec<String> = files.iter().map(|f| format!("\"{}\"", repo().join(f).display())).collect();
    let yaml = format!(
        "dataset: local\nstages:\n  crawl:\n    type: warc\n    paths: [{}]\n  text:\n    type: html_to_text\n    inputs: [crawl]\n    min_chars: 1\n  hashed:\n    type: content_hash\n    inputs: [text]\n  out:\n    type: parquet\n    inputs: [hashed]\n",
        paths.join(", ")
    );
    env.write("local.yaml", yaml.as_bytes()).display().to_string()
}

/// (id, content_hash hex, source, origin) of every row of a version.
fn rows(env: &Env, dataset: &str, version: u64) -> Vec<(String, String, String, String)> {
    let m = env.json(&["catalog", "show", &format!("{dataset}@{version}")]);
    let root = env.data().join("datasets").join(dataset);
    let mut out = Vec::new();
    for s in m["shards"].as_array().unwrap() {
        let bytes = std::fs::read(root.join(s["path"].as_str().unwrap())).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap();
        for b in reader {
            let b = b.unwrap();
            let col = |n: &str| b.column_by_name(n).unwrap().clone();
            let (id, src, origin) = (col("id"), col("source"), col("origin"));
            let id = id.as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
            let src = src.as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
            let origin = origin.as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
            let hash = b.column_by_name("content_hash").unwrap();
            let hash = hash.as_any().downcast_ref::<arrow::array::FixedSizeBinaryArray>().unwrap();
            for i in 0..b.num_rows() {
                let h: String = hash.value(i).iter().map(|x| format!("{x:02x}")).collect();
                out.push((id.value(i).to_string(), h, src.value(i).to_string(), origin.value(i).to_string()));
            }
        }
    }
    out
}

fn skips(run: &serde_json::Value, stage: &str) -> BTreeMap<String, u64> {
    let s = run["stages"].as_array().unwrap().iter().find(|s| s["stage"] == stage).unwrap();
    serde_json::from_value(s["skips"].clone()).unwrap_or_default()
}

#[test]
fn commoncrawl_latest_reads_every_file_through_resets_5xx_and_slow_bodies() {
    let srv = cc_server();
    let size = std::fs::read(repo().join("examples/data/cc/CC-MAIN-2020-34-resiliparse-excerpt.warc.gz")).unwrap().len()
        as u64;
    // The big file drops at 50% once; the cdx-toolkit file answers 500 twice; the whirlwind file trickles.
    srv.fault(BIG, Fault::ResetAt(size / 2), 1);
    let f3 = "/crawl-data/CC-MAIN-2024-22/segments/1715971058000.10/warc/CC-MAIN-20240518000000-20240518030000-00002.warc.gz";
    srv.fault(f3, Fault::Status(500), 2);
    let f1 = "/crawl-data/CC-MAIN-2024-22/segments/1715971057216.39/warc/CC-MAIN-20240517233122-20240518023122-00000.warc.gz";
    srv.fault(f1, Fault::Slow(Duration::from_millis(5)), 1);
    srv.fault("/collinfo.json", Fault::Status(503), 1);

    let env = Env::new();
    let p = cc_pipeline(&env, "cc", &srv, "    crawl: latest\n");
    let run = env.json(&["run", &p, "--parallelism", "2"]);
    assert_eq!(run["version"], 1);
    assert_eq!(run["splits_run"], 3);
    let sk = skips(&run, "cc");
    assert_eq!(sk.get("net_resume"), Some(&1), "{sk:?}");
    assert!(sk.get("net_retry").copied().unwrap_or(0) >= 2, "{sk:?}");

    // Resumed by a range request from where the drop happened; nothing read twice.
    let gets = srv.gets(BIG);
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[1].headers.get("range").map(String::as_str), Some(format!("bytes={}-", size / 2).as_str()));
    assert!(gets[1].headers.contains_key("if-match"), "the resume checks the ETag");
    let sent = srv.bytes_sent(BIG);
    assert!(sent as f64 <= 1.1 * size as f64, "{sent} bytes sent for a {size}-byte file");
    assert_eq!(sent, size);
    // A clear User-Agent on every request.
    assert!(srv.log().iter().all(|s| s.headers.get("user-agent").is_some_and(|u| u.starts_with("smelt/"))));

    // The same documents as the same files read from disk by the `warc` source.
    let local = Env::new();
    let lp = local_pipeline(
        &local,
        &[
            "examples/data/cc/CC-MAIN-2024-22-whirlwind.warc.gz",
            "examples/data/cc/CC-MAIN-2020-34-resiliparse-excerpt.warc.gz",
            "examples/data/cc/CC-MAIN-2025-33-cdx-toolkit.warc.gz",
        ],
    );
    local.json(&["run", &lp]);
    let net_rows = rows(&env, "cc", 1);
    let disk_rows = rows(&local, "local", 1);
    let key =
        |r: &Vec<(String, String, String, String)>| r.iter().map(|x| (x.0.clone(), x.1.clone())).collect::<Vec<_>>();
    assert_eq!(key(&net_rows), key(&disk_rows));
    assert!(net_rows.iter().all(|r| r.2 == format!("cc:{CRAWL}")), "source is cc:<crawl>");
    assert!(
        net_rows.iter().all(|r| r.3.starts_with(&srv.url("/crawl-data/")) && r.3.contains(".warc.gz#")),
        "origin is URL#offset"
    );
}

#[test]
fn incremental_runs_read_only_new_files_and_a_failed_run_moves_nothing() {
    let srv = cc_server();
    let env = Env::new();
    let p = cc_pipeline(&env, "inc", &srv, &format!("    crawl: {CRAWL}\n"));
    // Run 1 fails: one file answers 500 on every try. No version, no state.
    srv.fault(BIG, Fault::Status(500), 100);
    let out = env.smelt(&["run", &p, "--run-id", "first"]);
    assert!(!out.status.success(), "a download that fails after every retry fails the run");
    assert!(common::stderr(&out).contains("HTTP 500"), "{}", common::stderr(&out));
    assert!(!env.smelt(&["catalog", "log", "inc"]).status.success(), "no version from a failed run");

    // The crawl list grows meanwhile; resuming run 1 finishes the three files it planned.
    let paths = "/crawl-data/CC-MAIN-2024-22/warc.paths.gz";
    srv.put(paths, std::fs::read(fixtures().join("cc/crawl-data/CC-MAIN-2024-22/warc.paths.next.gz")).unwrap());
    srv.clear_faults(BIG);
    let r1 = env.json(&["run", &p, "--run-id", "first"]);
    assert_eq!(r1["version"], 1);
    let planned = r1["splits_run"].as_u64().unwrap() + r1["splits_resumed"].as_u64().unwrap();
    assert_eq!(planned, 3, "{r1}");
    let m = env.json(&["catalog", "show", "inc@1"]);
    assert_eq!(m["lineage"]["inputs"].as_array().unwrap().len(), 3);

    // Run 2: only the file that was added to the list.
    let before = srv.gets(BIG).len();
    let r2 = env.json(&["run", &p]);
    assert_eq!(r2["splits_run"], 1);
    assert!(r2["rows_written"].as_u64().unwrap() > 0);
    assert_eq!(srv.gets(BIG).len(), before, "files already committed are not downloaded again");
    let m = env.json(&["catalog", "show", "inc@2"]);
    let inputs = m["lineage"]["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 1);
    assert!(inputs[0]["id"].as_str().unwrap().ends_with("-00003.warc.gz"));

    // Run 3: nothing new.
    let r3 = env.json(&["run", &p]);
    assert_eq!(r3["splits_run"], 0);
    assert_eq!(r3["rows_written"], 0);
}

#[test]
fn cdx_domain_lookup_fetches_only_those_records_by_range() {
    let srv = cc_server();
    let env = Env::new();
    let p = cc_pipeline(&env, "cdx", &srv, &format!("    crawl: {CRAWL}\n    domain: commoncrawl.org\n"));
    let run = env.json(&["run", &p]);
    assert_eq!(run["splits_run"], 1);
    let rows = rows(&env, "cdx", 1);
    // Two records: a 200 page and a 301 redirect (counted as `http_301`, as the `warc` source does).
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(skips(&run, "cc").get("http_301"), Some(&1));
    let f3 = "/crawl-data/CC-MAIN-2024-22/segments/1715971058000.10/warc/CC-MAIN-20240518000000-20240518030000-00002.warc.gz";
    let gets = srv.gets(f3);
    assert_eq!(gets.len(), 2, "one range request per record");
    assert!(gets.iter().all(|g| g.headers.get("range").is_some_and(|r| r.starts_with("bytes="))));
    let whole =
        std::fs::read(repo().join("examples/data/cc/CC-MAIN-2025-33-cdx-toolkit.warc.gz")).unwrap().len() as u64;
    assert!(srv.bytes_sent(f3) < whole);
    assert!(srv.gets(BIG).is_empty(), "files without matching records are not touched");
    // The origin keeps the record's file offset.
    assert!(rows.iter().all(|r| r.3.contains("-00002.warc.gz#") && !r.3.contains("records=")), "{rows:?}");

    // A URL prefix on another host, and a host with subdomains.
    let env2 = Env::new();
    let p2 = cc_pipeline(&env2, "cdx2", &srv, &format!("    crawl: {CRAWL}\n    domain: wikipedia.org\n"));
    let run2 = env2.json(&["run", &p2]);
    assert_eq!(run2["rows_written"], 1);
}

#[test]
fn wet_sample_segments_and_truncated_gzip_are_counted() {
    let srv = cc_server();
    let env = Env::new();
    let base = srv.url("/");
    let yaml = format!(
        "dataset: wet\nstages:\n  cc:\n    type: commoncrawl\n    crawl: {CRAWL}\n    kind: wet\n    base_url: {base}\n    index_url: {base}\n    {HTTP}\n  hashed:\n    type: content_hash\n    inputs: [cc]\n  out:\n    type: parquet\n    inputs: [hashed]\n"
    );
    let p = env.write("wet.yaml", yaml.as_bytes()).display().to_string();
    let run = env.json(&["run", &p]);
    assert_eq!(run["rows_written"], 1, "the whirlwind WET file holds one conversion record");
    // WAT: the metadata record's JSON is the text.
    let wat = Env::new();
    let p = wat.write("wat.yaml", yaml.replace("kind: wet", "kind: wat").as_bytes()).display().to_string();
    let run = wat.json(&["run", &p]);
    assert_eq!(run["rows_written"], 1, "the whirlwind WAT file holds one metadata record");
    let m = wat.json(&["catalog", "show", "wet@1"]);
    let cols: Vec<&str> = m["schema"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert!(cols.contains(&"text"), "{cols:?}");

    // `sample: 2` picks the same two files every time; `segments: 1..2` only the second segment's file.
    let env2 = Env::new();
    let p2 = cc_pipeline(
        &env2,
        "sampled",
        &srv,
        &format!("    crawl: {CRAWL}\n    sample: 2\n    seed: 3\n    incremental: false\n"),
    );
    let a = env2.json(&["run", &p2]);
    let b = env2.json(&["run", &p2]);
    assert_eq!(a["splits_run"], 2);
    assert_eq!(a["digest"], b["digest"]);
    let env3 = Env::new();
    let p3 = cc_pipeline(&env3, "seg", &srv, &format!("    crawl: {CRAWL}\n    segments: \"1..2\"\n"));
    let s = env3.json(&["run", &p3]);
    assert_eq!(s["splits_run"], 1);

    // A file served truncated (as if the download ended cleanly mid-member): counted, the rest kept.
    let srv2 = cc_server();
    let size = std::fs::read(repo().join("examples/data/cc/CC-MAIN-2020-34-resiliparse-excerpt.warc.gz")).unwrap().len()
        as u64;
    srv2.fault(BIG, Fault::Truncate(size * 2 / 3), 100);
    let env4 = Env::new();
    let p4 = cc_pipeline(&env4, "trunc", &srv2, &format!("    crawl: {CRAWL}\n"));
    let t = env4.json(&["run", &p4]);
    let sk = skips(&t, "cc");
    assert!(sk.keys().any(|k| k.contains("truncated")), "{sk:?}");
    assert!(t["rows_written"].as_u64().unwrap() > 0);
}

#[test]
fn commoncrawl_news_reads_months_incrementally() {
    let srv = cc_server();
    let env = Env::new();
    let base = srv.url("/");
    let yaml = |to: &str| {
        format!(
            "dataset: news\nstages:\n  news:\n    type: commoncrawl_news\n    from: \"2024-05\"\n    to: \"{to}\"\n    base_url: {base}\n    {HTTP}\n  text:\n    type: html_to_text\n    inputs: [news]\n    min_chars: 1\n  hashed:\n    type: content_hash\n    inputs: [text]\n  out:\n    type: parquet\n    inputs: [hashed]\n"
        )
    };
    let p = env.write("news.yaml", yaml("2024-05").as_bytes()).display().to_string();
    let r1 = env.json(&["run", &p]);
    assert_eq!(r1["splits_run"], 1);
    let p = env.write("news.yaml", yaml("2024-06").as_bytes()).display().to_string();
    let r2 = env.json(&["run", &p]);
    assert_eq!(r2["splits_run"], 1, "May's file is already committed");
    let rows = rows(&env, "news", 2);
    assert!(!rows.is_empty() && rows.iter().all(|r| r.2 == "cc-news"));
}

/// A feed server: heise.atom with its links pointing at this server, real article pages behind them.
fn feed_server(entries: Option<usize>) -> (HttpServer, Vec<String>) {
    let srv = HttpServer::start();
    let atom = std::fs::read_to_string(fixtures().join("feeds/heise.atom")).unwrap();
    let atom = atom.replace("http://www.heise.de/", &srv.url("/"));
    let atom = match entries {
        // An earlier capture of the feed: only its first N entries.
        Some(n) => {
            let parts: Vec<&str> = atom.split("<entry>").collect();
            let tail = atom.rfind("</feed>").map(|i| &atom[i..]).unwrap_or("</feed>");
            let mut s = parts[..=n].join("<entry>");
            if let Some(last) = s.rfind("</entry>") {
                s.truncate(last + "</entry>".len());
            }
            s.push('\n');
            s.push_str(tail);
            s
        }
        None => atom,
    };
    srv.put("/feeds/heise.atom", atom.clone().into_bytes());
    let pages = ["chinese_article_002.html", "arabic_article.html", "japanese_article2.html", "cleveland.com1.html"];
    let mut links = Vec::new();
    for (i, entry) in atom.split("<entry>").skip(1).enumerate() {
        let at = entry.find("rel=\"alternate\"").unwrap();
        let href = &entry[at..];
        let href = &href[href.find("href=\"").unwrap() + 6..];
        let link = &href[..href.find('"').unwrap()];
        let path = link.strip_prefix(&srv.url("")).unwrap().split('?').next().unwrap().to_string();
        srv.put(&path, std::fs::read(pages_dir().join(pages[i % pages.len()])).unwrap());
        links.push(path);
    }
    (srv, links)
}

/// With a barrier stage (`dedup_url`): the source's state crosses the barrier's phases to the commit.
fn rss_pipeline(env: &Env, srv: &HttpServer) -> String {
    let yaml = format!(
        "dataset: feeds\nstages:\n  news:\n    type: rss\n    feeds: [\"{}\"]\n    {HTTP}\n  text:\n    type: extract\n    inputs: [news]\n  hashed:\n    type: content_hash\n    inputs: [text]\n  unique:\n    type: dedup_url\n    inputs: [hashed]\n  out:\n    type: parquet\n    inputs: [unique]\n",
        srv.url("/feeds/heise.atom")
    );
    env.write("feeds.yaml", yaml.as_bytes()).display().to_string()
}

#[test]
fn rss_fetches_new_articles_politely_and_remembers_items_across_runs() {
    // Run 1 sees an earlier capture (10 entries); robots.txt forbids one article; one is gone (404); one fails twice then works.
    let (srv, links) = feed_server(Some(10));
    srv.put("/robots.txt", format!("User-agent: *\nDisallow: {}\n", links[1]).into_bytes());
    let gone = links[2].clone();
    srv.fault(&gone, Fault::Status(404), 100);
    srv.fault(&links[3], Fault::Status(503), 2);
    let env = Env::new();
    let p = rss_pipeline(&env, &srv);
    let r1 = env.json(&["run", &p]);
    let sk = skips(&r1, "news");
    assert_eq!(sk.get("robots_disallowed"), Some(&1), "{sk:?}");
    assert_eq!(sk.get("http_404"), Some(&1), "{sk:?}");
    assert_eq!(sk.get("net_retry"), Some(&2), "{sk:?}");
    assert!(srv.gets(&links[1]).is_empty(), "a disallowed page is never fetched");
    let v1 = rows(&env, "feeds", 1);
    assert_eq!(v1.len(), 8, "10 items, one disallowed, one gone");
    assert!(v1.iter().all(|r| r.2 == "rss:127.0.0.1" && r.3.starts_with(&srv.url("/feeds/heise.atom#"))));
    let m = env.json(&["catalog", "show", "feeds@1"]);
    let state = &m["lineage"]["source_state"][0];
    assert_eq!(state["source"], "news");
    assert!(state["state"]["etag"].is_string());

    // Run 2: the feed now has all 15 entries; only the 5 new pages are fetched, with a conditional feed request.
    let full = std::fs::read_to_string(fixtures().join("feeds/heise.atom"))
        .unwrap()
        .replace("http://www.heise.de/", &srv.url("/"));
    srv.put("/feeds/heise.atom", full.into_bytes());
    let (_, all_links) = feed_server(None);
    for l in &all_links[10..] {
        srv.put(l, std::fs::read(pages_dir().join("arabic_article.html")).unwrap());
    }
    let r2 = env.json(&["run", &p]);
    assert_eq!(r2["rows_written"], 5);
    assert_eq!(skips(&r2, "news").get("seen_before"), Some(&10));
    for l in &links {
        assert!(srv.gets(l).len() <= 1 || l == &links[3], "{l} fetched again");
    }
    let feed_gets = srv.gets("/feeds/heise.atom");
    assert!(feed_gets.last().unwrap().headers.contains_key("if-none-match"));

    // Run 3: unchanged feed, 304: nothing fetched, nothing new.
    let n = srv.log().len();
    let r3 = env.json(&["run", &p]);
    assert_eq!(r3["rows_written"], 0);
    assert_eq!(skips(&r3, "news").get("feed_not_modified"), Some(&1));
    let after: Vec<_> = srv.log()[n..].iter().map(|s| s.path.clone()).collect();
    assert_eq!(after, ["/feeds/heise.atom"]);
    let ids: BTreeSet<String> = rows(&env, "feeds", 1).into_iter().chain(rows(&env, "feeds", 2)).map(|r| r.0).collect();
    assert_eq!(ids.len(), 13, "no item twice across versions");
}

#[test]
fn rss_reads_rss_0_92_rss_1_0_and_json_feed_items_inline() {
    let srv = HttpServer::start();
    let names = ["rss_0.92_spec_1.xml", "rss_1.0_example_1.xml", "jsonfeed_example_1.json"];
    for n in names {
        srv.put(&format!("/{n}"), std::fs::read(fixtures().join("feeds").join(n)).unwrap());
    }
    let feeds: Vec<String> = names.iter().map(|n| format!("\"{}\"", srv.url(&format!("/{n}")))).collect();
    let yaml = format!(
        "dataset: inline\nstages:\n  news:\n    type: rss\n    feeds: [{}]\n    fetch_articles: false\n    {HTTP}\n  text:\n    type: html_to_text\n    inputs: [news]\n    min_chars: 1\n  hashed:\n    type: content_hash\n    inputs: [text]\n  out:\n    type: parquet\n    inputs: [hashed]\n",
        feeds.join(", ")
    );
    let env = Env::new();
    let p = env.write("inline.yaml", yaml.as_bytes()).display().to_string();
    let run = env.json(&["run", &p]);
    assert_eq!(run["splits_run"], 3);
    let rows = rows(&env, "inline", 1);
    let per_feed: BTreeMap<String, usize> = rows.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r.3.split('#').next().unwrap().to_string()).or_default() += 1;
        m
    });
    assert_eq!(per_feed.len(), 3, "every format gives documents: {per_feed:?}");
}

/// A feed in UTF-16 (with a byte-order mark) made feed-rs panic inside
/// quick-xml and failed the whole run: it is decoded first now and its items
/// are read. A feed that still panics the parser (`SMELT_TEST_PANIC` makes
/// one) is a `bad_feed` naming the panic, and the other feed's items commit.
#[test]
fn a_utf16_feed_is_read_and_a_feed_that_panics_the_parser_is_a_bad_feed() {
    let srv = HttpServer::start();
    let good = std::fs::read(fixtures().join("feeds/rss_0.92_spec_1.xml")).unwrap();
    srv.put("/good.xml", good);
    let utf16 = String::from_utf8(std::fs::read(fixtures().join("feeds/rss_1.0_example_1.xml")).unwrap()).unwrap();
    assert!(utf16.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"));
    let utf16 = utf16.replacen("encoding=\"UTF-8\"", "encoding=\"UTF-16\"", 1);
    let mut bytes = vec![0xFE, 0xFF];
    bytes.extend(utf16.encode_utf16().flat_map(u16::to_be_bytes));
    srv.put("/utf16.xml", bytes);
    srv.put("/utf8.xml", std::fs::read(fixtures().join("feeds/rss_1.0_example_1.xml")).unwrap());
    let pipeline = |env: &Env, name: &str, first: &str| {
        let yaml = format!(
            "dataset: {name}\nstages:\n  news:\n    type: rss\n    feeds: [\"{}\", \"{}\"]\n    fetch_articles: false\n    {HTTP}\n  text:\n    type: html_to_text\n    inputs: [news]\n    min_chars: 1\n  hashed:\n    type: content_hash\n    inputs: [text]\n  out:\n    type: parquet\n    inputs: [hashed]\n",
            srv.url(first),
            srv.url("/good.xml")
        );
        env.write(&format!("{name}.yaml"), yaml.as_bytes()).display().to_string()
    };
    // The UTF-16 feed gives the same items as the same feed in UTF-8.
    let env = Env::new();
    let run = env.json(&["run", &pipeline(&env, "utf16", "/utf16.xml")]);
    assert_eq!(skips(&run, "news").get("bad_feed"), None, "{run}");
    let texts = |env: &Env, name: &str| -> BTreeSet<(String, String)> {
        rows(env, name, 1).into_iter().filter(|r| !r.3.contains("/good.xml")).map(|r| (r.0, r.1)).collect()
    };
    let from_utf16 = texts(&env, "utf16");
    assert!(!from_utf16.is_empty());
    let env8 = Env::new();
    env8.json(&["run", &pipeline(&env8, "utf8", "/utf8.xml")]);
    let from_utf8 = texts(&env8, "utf8");
    assert_eq!(
        from_utf16.iter().map(|r| &r.1).collect::<Vec<_>>(),
        from_utf8.iter().map(|r| &r.1).collect::<Vec<_>>(),
        "same texts"
    );

    // A parser panic on one feed: that feed is a bad_feed, the other commits.
    let env = Env::new();
    let p = pipeline(&env, "mixed", "/utf16.xml");
    let out = env
        .cmd()
        .env("SMELT_TEST_PANIC", "utf16.xml as a feed")
        .args(["run", &p, "--format", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("utf16.xml: feed-rs panicked"), "the skip names the feed and the panic: {stderr}");
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["version"], 1, "{run}");
    assert_eq!(skips(&run, "news").get("bad_feed"), Some(&1), "{run}");
    let rows = rows(&env, "mixed", 1);
    assert!(!rows.is_empty() && rows.iter().all(|r| r.3.contains("/good.xml")), "{rows:?}");
}

/// S3 through object_store against a real S3-compatible server (moto) at SMELT_S3_ENDPOINT.
#[test]
#[ignore = "needs an S3-compatible server at SMELT_S3_ENDPOINT (.ci/run starts moto and runs it)"]
fn commoncrawl_reads_s3_through_object_store() {
    let endpoint = s3::endpoint();
    let hostport = s3::hostport(&endpoint);
    let bucket = format!("commoncrawl-{}", std::process::id());
    s3::put(&hostport, &format!("/{bucket}"), &[]);
    let cc = fixtures().join("cc");
    let files: BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(cc.join("files.json")).unwrap()).unwrap();
    for (served, src) in &files {
        s3::put(&hostport, &format!("/{bucket}/{served}"), &std::fs::read(repo().join(src)).unwrap());
    }
    for f in walk(&cc) {
        let rel = f.strip_prefix(&cc).unwrap().to_string_lossy().to_string();
        s3::put(&hostport, &format!("/{bucket}/{rel}"), &std::fs::read(&f).unwrap());
    }
    let env = Env::new();
    let yaml = format!(
        "dataset: s3\nstages:\n  cc:\n    type: commoncrawl\n    crawl: {CRAWL}\n    base_url: s3://{bucket}/\n  text:\n    type: html_to_text\n    inputs: [cc]\n    min_chars: 1\n  hashed:\n    type: content_hash\n    inputs: [text]\n  out:\n    type: parquet\n    inputs: [hashed]\n"
    );
    let p = env.write("s3.yaml", yaml.as_bytes()).display().to_string();
    let s3_run = |env: &Env, p: &str| -> serde_json::Value {
        let out = env.cmd().args(["run", p, "--format", "json"]).envs(s3::aws_env(&endpoint)).output().unwrap();
        assert!(out.status.success(), "{}", common::stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let run = s3_run(&env, &p);
    assert_eq!(run["splits_run"], 3);
    // The CDX lookup and record ranges through object_store too.
    let cdx = Env::new();
    let yaml = yaml.replace("    base_url:", "    domain: wikipedia.org\n    base_url:");
    let cp = cdx.write("s3cdx.yaml", yaml.as_bytes()).display().to_string();
    let r = s3_run(&cdx, &cp);
    assert_eq!(r["rows_written"], 1);
    let srv = cc_server();
    let local = Env::new();
    let lp = cc_pipeline(&local, "s3", &srv, &format!("    crawl: {CRAWL}\n"));
    local.json(&["run", &lp]);
    let ids = |e: &Env| rows(e, "s3", 1).into_iter().map(|r| (r.0, r.1)).collect::<Vec<_>>();
    assert_eq!(ids(&env), ids(&local), "S3 and HTTPS give the same documents");
}

#[test]
fn rss_items_on_a_host_whose_robots_txt_fails_are_tried_again_next_run() {
    // Feed on one server, pages on another whose robots.txt answers 500 (every retry).
    let pages = HttpServer::start();
    let feed = HttpServer::start();
    let atom = std::fs::read_to_string(fixtures().join("feeds/heise.atom"))
        .unwrap()
        .replace("http://www.heise.de/", &pages.url("/"));
    feed.put("/heise.atom", atom.clone().into_bytes());
    let page = std::fs::read(pages_dir().join("cleveland.com1.html")).unwrap();
    for entry in atom.split("<entry>").skip(1) {
        let href = &entry[entry.find("rel=\"alternate\"").unwrap()..];
        let href = &href[href.find("href=\"").unwrap() + 6..];
        let path = href[..href.find('"').unwrap()]
            .strip_prefix(&pages.url(""))
            .unwrap()
            .split('?')
            .next()
            .unwrap()
            .to_string();
        pages.put(&path, page.clone());
    }
    pages.put("/robots.txt", b"User-agent: *\nAllow: /\n".to_vec());
    pages.fault("/robots.txt", Fault::Status(500), 4);
    let env = Env::new();
    let yaml = format!(
        "dataset: later\nstages:\n  news:\n    type: rss\n    feeds: [\"{}\"]\n    {HTTP}\n  text:\n    type: html_to_text\n    inputs: [news]\n  hashed:\n    type: content_hash\n    inputs: [text]\n  out:\n    type: parquet\n    inputs: [hashed]\n",
        feed.url("/heise.atom")
    );
    let p = env.write("later.yaml", yaml.as_bytes()).display().to_string();
    let r1 = env.json(&["run", &p]);
    assert_eq!(r1["rows_written"], 0);
    assert_eq!(skips(&r1, "news").get("robots_unavailable"), Some(&1), "{r1}");
    assert!(pages.log().iter().all(|s| s.path == "/robots.txt"), "no page fetched without robots.txt");
    // robots.txt answers now: every item is fetched (none was marked seen), and the feed is not
    // asked conditionally (its validators were not advanced).
    let r2 = env.json(&["run", &p]);
    assert_eq!(r2["rows_written"], 15, "{r2}");
    assert!(!feed.gets("/heise.atom").last().unwrap().headers.contains_key("if-none-match"));
}

#[test]
fn per_host_limits_hold_on_the_server_side() {
    // Crawl files: 2 splits at once, but one connection to the host.
    let srv = cc_server();
    for f in ["00000", "00001"] {
        let path = format!("/crawl-data/CC-MAIN-2024-22/segments/1715971057216.39/warc/CC-MAIN-20240517233122-20240518023122-{f}.warc.gz");
        srv.fault(&path, Fault::Slow(Duration::from_millis(20)), 1);
    }
    let env = Env::new();
    let base = srv.url("/");
    let yaml = format!(
        "dataset: one\nstages:\n  cc:\n    type: commoncrawl\n    crawl: {CRAWL}\n    base_url: {base}\n    index_url: {base}\n    http: {{max_connections_per_host: 1, requests_per_second: 1000}}\n  text:\n    type: html_to_text\n    inputs: [cc]\n  hashed:\n    type: content_hash\n    inputs: [text]\n  out:\n    type: parquet\n    inputs: [hashed]\n"
    );
    let p = env.write("one.yaml", yaml.as_bytes()).display().to_string();
    env.json(&["run", &p, "--parallelism", "2"]);
    // Slack: the 20 ms pause after a response's last piece, plus scheduling.
    // Downloads at once would overlap by 60 ms or more (5 pieces of 20 ms).
    assert_eq!(srv.max_in_flight(Duration::from_millis(40)), 1);

    // Article pages: at most `requests_per_second` request starts per second to a host.
    let (srv, _) = feed_server(None);
    let env = Env::new();
    let yaml = format!(
        "dataset: paced\nstages:\n  news:\n    type: rss\n    feeds: [\"{}\"]\n    robots_txt: false\n    http: {{requests_per_second: 20}}\n  text:\n    type: html_to_text\n    inputs: [news]\n  hashed:\n    type: content_hash\n    inputs: [text]\n  out:\n    type: parquet\n    inputs: [hashed]\n",
        srv.url("/feeds/heise.atom")
    );
    let p = env.write("paced.yaml", yaml.as_bytes()).display().to_string();
    let r = env.json(&["run", &p]);
    assert_eq!(r["rows_written"], 15);
    let mut at: Vec<std::time::Instant> = srv.log().iter().map(|s| s.at).collect();
    at.sort();
    assert_eq!(at.len(), 16, "the feed and 15 pages");
    for w in at.windows(2) {
        // 50 ms apart at 20/s; slack for when the server thread stamps the arrival
        // (seen at 39.95 ms on a loaded 2-core machine). Unpaced requests arrive < 5 ms apart.
        assert!(w[1] - w[0] >= Duration::from_millis(35), "requests {:?} apart", w[1] - w[0]);
    }
}

/// The network examples as shipped (examples/commoncrawl.yaml, examples/feeds.yaml),
/// pointed at the local test servers instead of the internet.
#[test]
fn the_network_examples_run_against_local_servers() {
    let example = |name: &str| std::fs::read_to_string(repo().join("examples").join(name)).unwrap();
    let fast = "http: {retries: 1, backoff_ms: 20, requests_per_second: 1000, max_connections_per_host: 2}";

    let srv = cc_server();
    let base = srv.url("/");
    let yaml = example("commoncrawl.yaml").replace(
        "    type: commoncrawl\n",
        &format!("    type: commoncrawl\n    base_url: {base}\n    index_url: {base}\n"),
    );
    let yaml = yaml.replace(
        "    http:\n      max_connections_per_host: 2\n      requests_per_second: 2\n",
        &format!("    {fast}\n"),
    );
    assert!(yaml.contains(&base) && yaml.contains(fast), "the example's shape changed:\n{yaml}");
    let env = Env::new();
    let p = env.write("commoncrawl.yaml", yaml.as_bytes()).display().to_string();
    let r = env.json(&["run", &p]);
    assert_eq!((r["version"].as_u64(), r["splits_run"].as_u64()), (Some(1), Some(2)), "{r}");
    assert_eq!(r["rows_written"], 3, "the English pages of the two sampled files: {r}");

    let (feeds, _) = feed_server(None);
    let yaml = example("feeds.yaml")
        .replace("https://www.theguardian.com/world/rss", &feeds.url("/feeds/heise.atom"))
        .replace("https://feeds.bbci.co.uk/news/world/rss.xml", &feeds.url("/feeds/heise.atom?second"))
        .replace("    http:\n      requests_per_second: 1\n", &format!("    robots_txt: false\n    {fast}\n"));
    assert!(yaml.contains("heise.atom?second") && yaml.contains(fast), "the example's shape changed:\n{yaml}");
    let env = Env::new();
    let p = env.write("feeds.yaml", yaml.as_bytes()).display().to_string();
    let r = env.json(&["run", &p]);
    assert_eq!(r["version"], 1, "{r}");
    // The same 15 items through two feed URLs, their links served by 4 distinct pages:
    // dedup_exact keeps one document per page text.
    let unique = r["stages"].as_array().unwrap().iter().find(|s| s["stage"] == "unique").unwrap();
    assert_eq!(unique["rows_in"], 30, "{unique}");
    assert_eq!(r["rows_written"], 4, "{r}");
}
