//! `smelt ui` end to end: the real server on a free loopback port, asked over
//! real TCP for every page of a catalog built by real runs (quickstart twice,
//! the audit example, a backfilled schedule, and a dataset whose documents are
//! HTML and script); the refusals (path traversal, methods, oversized and
//! malformed parameters, SQL that is not one SELECT, a missing token); and
//! `--export`, whose every link must name a page it wrote. The rendering in
//! headless Chromium (DOM, screenshot, following links) is the ignored test
//! at the end, run by `.ci/run`.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use common::browser::{chromium, chromium_bin, decode_png};
use common::{example, Env};

/// A `smelt ui` process, stopped on drop.
struct Ui {
    child: Child,
    port: u16,
}

impl Drop for Ui {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(env: &Env, extra: &[&str], token: Option<&str>) -> Ui {
    let mut cmd = env.cmd();
    cmd.args(["ui", "--port", "0"]).args(extra).stdout(Stdio::piped()).stderr(Stdio::null());
    match token {
        Some(t) => cmd.env("SMELT_UI_TOKEN", t),
        None => cmd.env_remove("SMELT_UI_TOKEN"),
    };
    let mut child = cmd.spawn().expect("smelt ui starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    Ui { child, port }
}

/// One raw HTTP/1.1 request: (status, head, body).
fn request(port: u16, raw: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // The server may answer and close before an oversized request is written.
    let _ = s.write_all(raw.as_bytes());
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

fn get_with(port: u16, target: &str, headers: &str) -> (u16, String, String) {
    request(port, &format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Connection: close\r\n\r\n"))
}

fn get(port: u16, target: &str) -> (u16, String) {
    let (status, _, body) = get_with(port, target, "");
    (status, body)
}

fn ok(port: u16, target: &str) -> String {
    let (status, body) = get(port, target);
    assert_eq!(status, 200, "{target}: {body}");
    body
}

/// Every `href` of a page (entities decoded).
fn hrefs(html: &str) -> Vec<String> {
    html.split("href=\"").skip(1).filter_map(|r| r.split('"').next()).map(|h| h.replace("&amp;", "&")).collect()
}

/// A dataset of four documents that are markup, URLs that are script, and their second version with one more.
fn hostile(env: &Env) -> PathBuf {
    let doc = |id: &str, text: &str| {
        let source = if id == "d4" { "<i>late</i>" } else { "<b>src</b>" };
        serde_json::json!({"id": id, "text": text, "url": format!("javascript:alert('{id}')"), "source": source})
            .to_string()
    };
    let lines = [
        doc("d1", "<script>alert(1)</script> plain words follow here"),
        doc("d2", "\"quoted\" & 'single' <img src=x onerror=alert(2)>"),
        doc("d3", "</td></tr></table><h1>broken out</h1>"),
    ];
    env.write("docs/a.jsonl", format!("{}\n", lines.join("\n")).as_bytes());
    let yaml = "dataset: hostile\nstages:\n  docs:\n    type: jsonl\n    paths: [docs/*.jsonl]\n  hashed:\n    type: content_hash\n    inputs: [docs]\n  out:\n    type: parquet\n    inputs: [hashed]\n";
    let p = env.write("hostile.yaml", yaml.as_bytes());
    env.ok(&["run", &p.display().to_string()]);
    env.write("docs/b.jsonl", format!("{}\n", doc("d4", "<script>document.cookie</script> added later")).as_bytes());
    env.ok(&["run", &p.display().to_string()]);
    p
}

/// Quickstart twice, the audit example, two backfilled intervals and the hostile dataset.
fn catalog() -> Env {
    let env = Env::new();
    let quickstart = example("quickstart.yaml").display().to_string();
    env.ok(&["run", &quickstart]);
    env.ok(&["run", &quickstart]);
    env.ok(&["run", &example("audit.yaml").display().to_string()]);
    env.ok(&[
        "backfill",
        &example("scheduled.yaml").display().to_string(),
        "--from",
        "2024-05-01",
        "--to",
        "2024-05-04",
    ]);
    hostile(&env);
    // Two training runs on the two quickstart versions: A has one spike, B parts from A at step 150.
    for (run, version, shift) in [("run-a", 1, 0.0), ("run-b", 2, 0.3)] {
        let lines: Vec<String> = (0..300)
            .map(|step| {
                let f = f64::from(step);
                let mut loss = 3.0 * (-f / 100.0).exp() + 1.0 + 0.01 * (f * 1.7).sin();
                if step >= 150 {
                    loss += shift;
                }
                if run == "run-a" && step == 200 {
                    loss += 1.0;
                }
                serde_json::json!({"step": step, "loss": loss}).to_string()
            })
            .collect();
        let file = env.write(&format!("{run}.jsonl"), (lines.join("\n") + "\n").as_bytes());
        env.ok(&[
            "train",
            "import",
            run,
            "--dataset",
            &format!("quickstart@{version}"),
            "--jsonl",
            &file.display().to_string(),
        ]);
    }
    env
}

/// Data never appears as markup: no page holds a `<script` element, and the documents' markup shows as text.
fn assert_escaped(page: &str, target: &str) {
    assert!(!page.to_lowercase().contains("<script"), "{target} holds a script element");
    assert!(!page.contains("<img src=x"), "{target} holds the document's img element");
    assert!(!page.contains("<h1>broken out"), "{target} holds the document's heading");
    assert!(!page.contains("href=\"javascript:"), "{target} links to a javascript: URL");
}

#[test]
fn every_page_is_served_linked_and_escaped() {
    let env = catalog();
    let ui = start(&env, &[], None);
    let p = ui.port;

    let index = ok(p, "/");
    for ds in ["quickstart", "audit-sample", "scheduled", "hostile"] {
        assert!(index.contains(&format!("href=\"d/{ds}/index.html\"")), "{ds} not listed");
    }
    assert!(index.contains("<base href=\"\">"));
    // Every link of the datasets page, and of the pages it leads to, is served.
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = hrefs(&index).into_iter().map(|h| format!("/{h}")).collect();
    todo.extend(["/d/hostile/diff-1-2.html".to_string(), "/runs/index.html".into()]);
    while let Some(target) = todo.pop() {
        if !seen.insert(target.clone()) || seen.len() > 200 {
            continue;
        }
        let page = ok(p, &target);
        assert_escaped(&page, &target);
        // Links are relative to the root the page's <base> names.
        let depth = target.trim_start_matches('/').matches('/').count();
        assert!(page.contains(&format!("<base href=\"{}\">", "../".repeat(depth))) || target.ends_with("-audit.html"));
        for h in hrefs(&page) {
            if !h.starts_with("http") && !h.contains('?') && h.ends_with(".html") && !h.ends_with("-audit.html") {
                todo.push(format!("/{h}"));
            }
        }
    }
    for must in [
        "/d/quickstart/index.html",
        "/d/quickstart/v2.html",
        "/d/quickstart/diff-1-2.html",
        "/d/audit-sample/v1.html",
        "/train/index.html",
    ] {
        assert!(seen.contains(must), "{must} not reachable by links: {seen:?}");
    }
    assert!(seen.iter().any(|s| s.starts_with("/runs/scheduled-2024")), "a scheduled run page is linked");

    // The version page: lineage drawn with rows on the edges, schema, mixture and funnel charts.
    let v = ok(p, "/d/quickstart/v2.html");
    for id in ["id=\"summary\"", "id=\"dag\"", "id=\"schema\"", "id=\"mix-domain\"", "id=\"funnel\"", "id=\"shards\""] {
        assert!(v.contains(id), "{id} missing from the version page");
    }
    assert_eq!(v.matches("class=\"edge\"").count(), 3, "crawl -> text -> hashed -> out");
    assert!(v.contains(">19</text>"), "rows on the edges");
    // The audit's summary and its full report.
    let a = ok(p, "/d/audit-sample/v1.html");
    assert!(a.contains("id=\"audit\"") && a.contains("toxicity_rate_ratio{axis=religion}"));
    assert!(ok(p, "/d/audit-sample/v1-audit.html").contains("id=\"axes-chart\""));

    // The diff of the hostile dataset: one document added, shown as text.
    let d = ok(p, "/d/hostile/diff-1-2.html");
    assert!(d.contains("id=\"docs-added\""), "{d}");
    assert!(d.contains("&lt;script&gt;document.cookie&lt;/script&gt; added later"), "{d}");
    assert!(d.contains("id=\"share\" href=\"d/hostile/diff-1-2.html\""));
    assert!(d.contains("id=\"mixture-delta\""), "the added document moves the mixture");
    assert!(d.contains("&lt;i&gt;late&lt;/i&gt;"), "the new source, as text");
    // Any two versions by reference, as the log's form sends them.
    let form = ok(p, "/d/quickstart/index.html");
    assert!(form.contains("id=\"diff-form\"") && form.contains("id=\"history\""));
    let any = ok(p, "/diff.html?a=quickstart%401&b=hostile%40latest");
    assert!(any.contains("quickstart@1 → hostile@2"), "{any}");

    // Runs: the grid of intervals by state, each run with its attempts and log.
    let runs = ok(p, "/runs/index.html");
    assert_eq!(runs.matches("class=\"cell s-succeeded\"").count(), 2, "two backfilled intervals");
    assert!(runs.contains(">backfill<"));
    let id = runs.split("href=\"runs/scheduled-").nth(1).unwrap().split(".html").next().unwrap();
    let run = ok(p, &format!("/runs/scheduled-{id}.html"));
    assert!(run.contains("id=\"attempts\"") && run.contains("class=\"log\""), "{run}");
    assert!(run.contains("committed"), "the log shows the commit: {run}");

    // Training runs: the loss curve with its spike, and two runs compared, linked to the data diff.
    let train = ok(p, "/train/index.html");
    assert!(train.contains("id=\"compare-form\"") && train.contains("href=\"train/run-a.html\""), "{train}");
    let a = ok(p, "/train/run-a.html");
    assert!(a.contains("id=\"loss-curve\"") && a.contains("class=\"mark\""), "{a}");
    assert!(a.contains("<td class=\"n\">200</td>"), "the spike at step 200: {a}");
    let cmp = ok(p, "/train/compare.html?a=run-a&b=run-b");
    assert!(cmp.contains("The curves part at step 15"), "{cmp}");
    assert!(cmp.contains("href=\"d/quickstart/diff-1-2.html\""), "{cmp}");
    assert_eq!(get(p, "/train/compare.html?a=run-a&b=..%2Fx").0, 400);

    // SQL: results paged, values escaped.
    let sql = ok(p, "/sql.html?q=SELECT+unnest(range(1%2C+251))+AS+value");
    assert!(sql.contains("Rows 1 to 100 (more follow)"), "{sql}");
    assert!(sql.contains("href=\"sql.html?q=SELECT%20unnest"), "next page link");
    let last = ok(p, "/sql.html?q=SELECT+unnest(range(1%2C+251))+AS+value&page=3");
    assert!(last.contains("Rows 201 to 250.") && !last.contains("more follow"), "{last}");
    let texts = ok(p, "/sql.html?q=SELECT+text%2C+url+FROM+%22hostile%40latest%22+ORDER+BY+id");
    assert_escaped(&texts, "sql");
    assert!(texts.contains("&lt;img src=x onerror=alert(2)&gt;"), "{texts}");
    // The values that came from the catalog are escaped in the log too.
    assert!(ok(p, "/d/hostile/v2.html").contains("&lt;b&gt;src&lt;/b&gt;"));

    // Headers: no script may run, nothing is cached, HEAD has no body.
    let (status, head, body) = get_with(p, "/", "");
    assert_eq!(status, 200);
    assert!(head.to_lowercase().contains("content-security-policy: default-src 'none'"), "{head}");
    assert!(!body.is_empty());
    let (status, _, body) = request(p, "HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!((status, body.as_str()), (200, ""));
}

#[test]
fn bad_requests_are_refused_with_4xx() {
    let env = Env::new();
    env.ok(&["run", &example("quickstart.yaml").display().to_string()]);
    // A file outside the data directory that traversal would reach.
    std::fs::write(env.path().join("secret.txt"), "top secret").unwrap();
    let ui = start(&env, &[], None);
    let p = ui.port;
    for (target, status) in [
        ("/d/../secret.txt", 400),
        ("/d/..%2f..%2fsecret.txt/index.html", 400),
        ("/d/%2e%2e/index.html", 400),
        ("/d/quickstart/..%5c..%5csecret.txt", 400),
        ("/d/%00/index.html", 400),
        ("/d/%zz/index.html", 400),
        ("/runs/..%2fsecret.html", 400),
        ("/runs/a%20b.html", 400),
        ("/train/..%2f.html", 400),
        ("/secret.txt", 404),
        ("/d/quickstrat/index.html", 404),
        ("/d/quickstart/v99.html", 404),
        ("/d/quickstart/v1-audit.html", 404),
        ("/d/quickstart/index.html?page=0", 400),
        ("/d/quickstart/index.html?page=abc", 400),
        ("/diff.html?a=quickstart%401", 400),
        ("/diff.html?a=quickstart%401&b=nope%401", 404),
        ("/sql.html?q=DROP+TABLE+versions", 400),
        ("/sql.html?q=COPY+versions+TO+%27%2Ftmp%2Fx.csv%27", 400),
        ("/sql.html?q=CREATE+TABLE+t+AS+SELECT+1", 400),
        ("/sql.html?q=SELECT+1%3B+SELECT+2", 400),
        ("/sql.html?q=SET+datafusion.execution.batch_size+%3D+1", 400),
        ("/sql.html?q=SELECT+*+FROM+nope", 400),
    ] {
        let (got, body) = get(p, target);
        assert_eq!(got, status, "{target}: {body}");
        assert!(body.contains("id=\"error\""), "{target}: {body}");
        assert!(!body.contains("top secret"), "{target} leaked a file");
    }
    // The unknown dataset is named with the closest one.
    assert!(get(p, "/d/quickstrat/index.html").1.contains("did you mean quickstart?"));
    // Oversized: a long target, a long SQL statement, an enormous header block.
    let long = format!("/d/{}/index.html", "a".repeat(20_000));
    assert_eq!(get(p, &long).0, 414);
    let sql = format!("/sql.html?q=SELECT+{}", "1%2B".repeat(5000) + "1");
    assert_eq!(get(p, &sql).0, 414);
    let (status, _, _) = get_with(p, "/", &format!("X-Big: {}\r\n", "b".repeat(200_000)));
    assert!(status == 431 || status == 400 || status == 0, "a 200 KB header is refused, got {status}");
    // Writes do not exist.
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let (status, head, _) =
            request(p, &format!("{method} / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"));
        assert_eq!(status, 405, "{method}");
        assert!(head.contains("allow: GET, HEAD") || head.contains("Allow: GET, HEAD"), "{head}");
    }
    // Garbage instead of HTTP gets an error, and the server goes on.
    let (status, _, _) = request(p, "NOT HTTP AT ALL\r\n\r\n");
    assert_eq!(status, 400);
    assert_eq!(get(p, "/").0, 200);
}

#[test]
fn sql_queries_past_their_memory_or_time_are_refused() {
    let env = Env::new();
    env.ok(&["run", &example("quickstart.yaml").display().to_string()]);
    // A sort of 300,000 numbers needs more than 1 MiB, and may not spill.
    let sort = "/sql.html?q=SELECT+v+FROM+(SELECT+unnest(range(1%2C+300000))+AS+v)+ORDER+BY+v+DESC";
    let ui = start(&env, &["--sql-memory", "1"], None);
    let (status, body) = get(ui.port, sort);
    assert_eq!(status, 400, "{body}");
    assert!(body.to_lowercase().contains("resources exhausted"), "{body}");
    assert_eq!(get(ui.port, "/sql.html?q=SELECT+count(*)+FROM+versions").0, 200, "small queries still run");
    drop(ui);
    let ui = start(&env, &["--sql-timeout", "0.000001"], None);
    let (status, body) = get(ui.port, sort);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("ran past"), "{body}");
    drop(ui);
    // With the defaults the same sort runs, and its first page is the largest numbers.
    let ui = start(&env, &[], None);
    let body = ok(ui.port, sort);
    assert!(body.contains("<td>299999</td>") && body.contains("(more follow)"), "{body}");
}

#[test]
fn a_token_guards_every_request_and_other_interfaces_need_one() {
    let env = Env::new();
    env.ok(&["run", &example("quickstart.yaml").display().to_string()]);
    // Binding beyond loopback without a token is refused before anything listens.
    let out = env.cmd().args(["ui", "--port", "0", "--bind", "0.0.0.0"]).env_remove("SMELT_UI_TOKEN").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--token or SMELT_UI_TOKEN"), "{err}");

    let ui = start(&env, &[], Some("s3cret-token"));
    let p = ui.port;
    for target in ["/", "/d/quickstart/v1.html", "/sql.html?q=SELECT+1", "/nope"] {
        let (status, body) = get(p, target);
        assert_eq!(status, 401, "{target}");
        assert!(!body.contains("quickstart@1"), "{target} leaked data");
    }
    assert_eq!(get_with(p, "/", "Authorization: Bearer wrong\r\n").0, 401);
    assert_eq!(get(p, "/?token=s3cret-tokeN").0, 401);
    assert_eq!(get_with(p, "/", "Authorization: Bearer s3cret-token\r\n").0, 200);
    // `?token=` once sets a cookie that later requests carry.
    let (status, head, _) = get_with(p, "/?token=s3cret-token", "");
    assert_eq!(status, 200);
    let cookie = head
        .lines()
        .find_map(|l| l.to_lowercase().starts_with("set-cookie:").then(|| l[11..].trim().to_string()))
        .expect("a cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let pair = cookie.split(';').next().unwrap();
    assert_eq!(get_with(p, "/d/quickstart/v1.html", &format!("Cookie: {pair}\r\n")).0, 200);
}

/// Every local link of every exported page names a file the export wrote.
fn check_links(root: &Path) -> usize {
    let mut pages = 0;
    for file in common::walk(root).into_iter().filter(|f| f.extension().is_some_and(|e| e == "html")) {
        let html = std::fs::read_to_string(&file).unwrap();
        let base = html.split("<base href=\"").nth(1).map(|r| r.split('"').next().unwrap().to_string());
        let dir = file.parent().unwrap().join(base.clone().unwrap_or_default());
        for h in hrefs(&html) {
            if h.starts_with("http") || h.contains('?') || h.starts_with('#') {
                continue;
            }
            // Links name percent-encoded paths; the export writes files under those names.
            let target = dir.join(&h);
            assert!(target.exists(), "{} links to {h}, which was not written", file.display());
        }
        assert!(!html.contains("sql.html"), "{}: the SQL page needs the server", file.display());
        pages += 1;
    }
    pages
}

#[test]
fn export_writes_every_page_with_working_links() {
    let env = catalog();
    let out = env.path().join("site");
    let msg = env.ok(&["ui", "--export", &out.display().to_string()]);
    assert!(msg.contains("wrote"), "{msg}");
    let pages = check_links(&out);
    // 4 top pages, 5 datasets' logs, 7 versions, 2 diffs of consecutive versions... at least these.
    assert!(pages >= 20, "{pages} pages");
    let diff = std::fs::read_to_string(out.join("d/hostile/diff-1-2.html")).unwrap();
    assert!(diff.contains("&lt;script&gt;document.cookie"));
    assert!(!diff.contains("id=\"diff-form\""));
    assert!(out.join("d/audit-sample/v1-audit.html").exists());
    // The same catalog exported twice gives the same files.
    let again = env.path().join("site2");
    env.ok(&["ui", "--export", &again.display().to_string()]);
    for f in common::walk(&out) {
        let rel = f.strip_prefix(&out).unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), std::fs::read(again.join(rel)).unwrap(), "{}", rel.display());
    }
}

/// What Chromium builds and paints: every page renders without a console
/// message, the charts are in the DOM and painted, and a dataset, one of its
/// versions and a diff are reached by following the links Chromium's DOM holds.
#[test]
#[ignore = "needs headless Chromium: apt-get install chromium (.ci/run runs it)"]
fn pages_render_in_chromium_and_links_lead_from_dataset_to_diff() {
    let bin = chromium_bin();
    let env = catalog();
    let ui = start(&env, &[], None);
    let profile = env.path().join("chromium");
    let root = format!("http://127.0.0.1:{}/", ui.port);
    // The DOM Chromium built; its console messages (CSP violations, errors) on stderr.
    let dom = |path: &str| {
        let out =
            chromium(bin, &["--enable-logging=stderr", "--v=0", "--dump-dom", &format!("{root}{path}")], &profile);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        let console: Vec<&str> =
            err.lines().filter(|l| l.contains("CONSOLE") || l.contains("Content Security Policy")).collect();
        assert!(console.is_empty(), "{path}: {console:?}");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let link_to = |html: &str, prefix: &str| {
        hrefs(html).into_iter().find(|h| h.starts_with(prefix)).unwrap_or_else(|| panic!("no link starting {prefix}"))
    };
    let index = dom("");
    let dataset = link_to(&index, "d/quickstart/");
    let log = dom(&dataset);
    assert!(log.contains("id=\"log\""));
    let version = link_to(&log, "d/quickstart/v2");
    let page = dom(&version);
    assert!(page.contains("id=\"dag\"") && page.matches("<rect class=\"bar\"").count() >= 3, "charts in the DOM");
    let diff = link_to(&page, "d/quickstart/diff-");
    let d = dom(&diff);
    assert!(d.contains("id=\"totals\"") && d.contains("Same data"), "{d}");
    for path in [
        "runs/index.html",
        "train/index.html",
        "sql.html?q=SELECT+1",
        "d/hostile/diff-1-2.html",
        "d/audit-sample/v1.html",
    ] {
        let html = dom(path);
        assert!(html.contains("<main>"), "{path}");
    }

    // The version page painted: the DAG's boxes and the mixture bars are on screen.
    let shot = env.path().join("version.png");
    let out = chromium(
        bin,
        &[&format!("--screenshot={}", shot.display()), "--window-size=1200,1800", &format!("{root}{version}")],
        &profile,
    );
    assert!(shot.exists(), "no screenshot: {}", String::from_utf8_lossy(&out.stderr));
    let (w, h, pixels) = decode_png(&std::fs::read(&shot).unwrap());
    assert_eq!((w, h), (1200, 1800));
    let near = |p: &[u8; 3], c: [u8; 3]| p.iter().zip(c).all(|(a, b)| a.abs_diff(b) < 12);
    let bars = pixels.iter().filter(|p| near(p, [0x3b, 0x6e, 0xa5])).count();
    let boxes = pixels.iter().filter(|p| near(p, [0xee, 0xf3, 0xf8])).count();
    assert!(bars > 2_000, "bar pixels: {bars}");
    assert!(boxes > 10_000, "DAG box pixels: {boxes}");

    // The exported pages render from files the same way.
    let site = env.path().join("site");
    env.ok(&["ui", "--export", &site.display().to_string()]);
    let out = chromium(bin, &["--dump-dom", &format!("file://{}/d/quickstart/v2.html", site.display())], &profile);
    let html = String::from_utf8_lossy(&out.stdout);
    assert!(html.contains("id=\"dag\""));
}
