//! `classify` with `backend: http` against a real HTTP server on 127.0.0.1
//! that speaks text-embeddings-inference's `/predict` (and OpenAI-compatible
//! `/v1/embeddings`) and scores with a real model: the Reuters topic
//! classifier of the fixtures, run by smelt's fastText reader in the server.
//! The scores must equal the in-process backend's, in the documents' order,
//! through 500s, slow answers, timeouts, a dead server and the cache.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, LargeStringArray, StringArray};
use arrow::datatypes::{Float64Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use smelt_engine::stage::doc;
use smelt_engine::{ConfigureContext, Processed, StageConfig, TransformConfig};
use smelt_stages::langid::fasttext::{Model, Scratch};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/classify")
}

/// Faults the server injects.
#[derive(Default)]
struct Faults {
    /// Answer 500 to this many requests first.
    fail_first: AtomicUsize,
    /// Sleep this long (ms) before answering every 3rd request.
    slow_every_third_ms: AtomicUsize,
    /// Sleep this long (ms) before every answer.
    slow_all_ms: AtomicUsize,
    /// Answer 200 with HTML to this many requests first.
    garbage_first: AtomicUsize,
    /// Requests seen, and texts scored.
    seen: AtomicUsize,
    texts: AtomicUsize,
    /// Refuse texts longer than 400 characters unless `truncate` is set (as TEI does past the model's length).
    strict_length: AtomicBool,
}

struct Server {
    url: String,
    faults: Arc<Faults>,
}

fn server() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let faults = Arc::new(Faults::default());
    let model =
        Arc::new(Model::from_bytes(&std::fs::read(fixtures().join("topics_bigram.bin")).unwrap(), "fixture").unwrap());
    let f = faults.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (f, m) = (f.clone(), model.clone());
            std::thread::spawn(move || {
                let _ = serve(stream, &f, &m);
            });
        }
    });
    Server { url, faults }
}

/// Every label's probability, best first: what TEI answers for one text.
fn predict(model: &Model, text: &str) -> Vec<serde_json::Value> {
    let mut scratch = Scratch::default();
    let mut out = Vec::new();
    model.predict(text, 0.0, &mut scratch, &mut out);
    out.iter().map(|p| serde_json::json!({"label": model.labels()[p.label], "score": p.score})).collect()
}

fn serve(mut stream: TcpStream, f: &Faults, model: &Model) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut len = 0;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            if h.trim().is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        let n = f.seen.fetch_add(1, Ordering::SeqCst) + 1;
        let mut respond = |status: &str, body: &str| {
            write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let slow = f.slow_all_ms.load(Ordering::SeqCst)
            + if n.is_multiple_of(3) { f.slow_every_third_ms.load(Ordering::SeqCst) } else { 0 };
        std::thread::sleep(Duration::from_millis(slow as u64));
        if f.fail_first.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |k| k.checked_sub(1)).is_ok() {
            respond("500 Internal Server Error", r#"{"error":"model overloaded","error_type":"Overloaded"}"#)?;
            continue;
        }
        if f.garbage_first.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |k| k.checked_sub(1)).is_ok() {
            respond("200 OK", "<html>502 Bad Gateway</html>")?;
            continue;
        }
        let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let texts: Vec<String> = match path.as_str() {
            "/predict" => req["inputs"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x[0].as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
            "/v1/embeddings" => req["input"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
            _ => {
                respond("404 Not Found", "{}")?;
                continue;
            }
        };
        if f.strict_length.load(Ordering::SeqCst)
            && req["truncate"] == false
            && texts.iter().any(|t| t.chars().count() > 400)
        {
            respond(
                "413 Payload Too Large",
                r#"{"error":"Input validation error: inputs must have less than 512 tokens","error_type":"Validation"}"#,
            )?;
            continue;
        }
        f.texts.fetch_add(texts.len(), Ordering::SeqCst);
        let answer = if path == "/predict" {
            serde_json::Value::Array(texts.iter().map(|t| serde_json::Value::Array(predict(model, t))).collect())
        } else {
            // The "embedding": every label's probability, in the model's label order.
            let data: Vec<serde_json::Value> = texts
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let p = predict(model, t);
                    let e: Vec<f64> = model
                        .labels()
                        .iter()
                        .map(|l| p.iter().find(|x| x["label"] == *l).map_or(0.0, |x| x["score"].as_f64().unwrap()))
                        .collect();
                    serde_json::json!({"object": "embedding", "index": i, "embedding": e})
                })
                .rev()
                .collect();
            serde_json::json!({"object": "list", "data": data, "model": req["model"]})
        };
        respond("200 OK", &answer.to_string())?;
    }
}

fn texts() -> Vec<String> {
    std::fs::read_to_string(fixtures().join("texts.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["text"].as_str().unwrap().to_string())
        .collect()
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![doc::id(), doc::text()]))
}

fn stage(options: serde_json::Value, data: &Path) -> Arc<dyn TransformConfig> {
    match smelt_stages::classify::configure(options, &ConfigureContext::new(fixtures(), data)).unwrap() {
        StageConfig::Transform(t) => t,
        other => panic!("a transform, got {:?}", other.kind()),
    }
}

/// Runs `t` over `texts` in batches of 50: (output batches, drop verdicts, counters).
fn run(
    t: &Arc<dyn TransformConfig>,
    texts: &[String],
) -> (Vec<RecordBatch>, Vec<Option<String>>, std::collections::BTreeMap<String, u64>) {
    t.output_schema(&schema()).unwrap();
    let mut tr = t.build(&schema()).unwrap();
    let (mut out, mut verdicts) = (Vec::new(), Vec::new());
    for (k, chunk) in texts.chunks(50).enumerate() {
        let ids: Vec<String> = (0..chunk.len()).map(|i| format!("{}", k * 50 + i)).collect();
        let b = RecordBatch::try_new(
            schema(),
            vec![Arc::new(StringArray::from(ids)), Arc::new(LargeStringArray::from(chunk.to_vec()))],
        )
        .unwrap();
        match tr.process(b).unwrap() {
            Processed::Batch(b) => {
                verdicts.extend(std::iter::repeat_n(None, b.num_rows()));
                out.push(b);
            }
            Processed::Filtered { batch, verdicts: v } => {
                verdicts.extend(v.into_iter().map(|x| x.map(|c| c.to_string())));
                out.push(batch);
            }
        }
    }
    (out, verdicts, tr.take_counters())
}

/// Column `name` of every batch, nulls as NaN.
fn column(batches: &[RecordBatch], name: &str) -> Vec<f64> {
    batches
        .iter()
        .flat_map(|b| {
            let c = b.column_by_name(name).unwrap().as_primitive::<Float64Type>().clone();
            (0..c.len()).map(move |i| if c.is_null(i) { f64::NAN } else { c.value(i) }).collect::<Vec<_>>()
        })
        .collect()
}

fn http(url: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut h = serde_json::json!({"url": url, "batch_size": 7, "concurrency": 3, "retries": 2, "backoff_ms": 5, "timeout_s": 5, "cache": false});
    for (k, v) in extra.as_object().unwrap() {
        h[k] = v.clone();
    }
    h
}

#[test]
fn tei_scores_equal_the_in_process_model_in_order_through_500s_and_slow_answers() {
    let s = server();
    let data = tempfile::tempdir().unwrap();
    let texts = texts();
    let local = stage(
        serde_json::json!({"model": "topics_bigram.bin", "labels": ["earn", "acq"], "keep": "score_earn < 0.5"}),
        data.path(),
    );
    let (want, want_verdicts, _) = run(&local, &texts);
    s.faults.fail_first.store(3, Ordering::SeqCst);
    s.faults.garbage_first.store(1, Ordering::SeqCst);
    s.faults.slow_every_third_ms.store(60, Ordering::SeqCst);
    let remote = stage(
        serde_json::json!({"backend": "http", "http": http(&s.url, serde_json::json!({})), "labels": ["earn", "acq"], "keep": "score_earn < 0.5"}),
        data.path(),
    );
    let (got, got_verdicts, counters) = run(&remote, &texts);
    for name in ["score_earn", "score_acq"] {
        let (a, b) = (column(&want, name), column(&got, name));
        assert_eq!(a.len(), 209);
        assert!(a.iter().zip(&b).all(|(x, y)| x == y), "{name} differs");
    }
    assert_eq!(got_verdicts, want_verdicts);
    assert!(got_verdicts.iter().any(Option::is_some) && got_verdicts.iter().any(Option::is_none));
    // 209 texts in groups of 7 per 50-row batch: 8 requests per batch of 50, 5 for the last 9... plus the retries.
    assert_eq!(counters["http_retries"], 4, "{counters:?}");
    assert!(!counters.contains_key("unscored"), "{counters:?}");
    assert_eq!(s.faults.texts.load(Ordering::SeqCst), 209);

    // Without labels: the best label and its score, as the local model's.
    let local = stage(serde_json::json!({"model": "topics_bigram.bin"}), data.path());
    let remote =
        stage(serde_json::json!({"backend": "http", "http": http(&s.url, serde_json::json!({}))}), data.path());
    let ((a, _, _), (b, _, _)) = (run(&local, &texts), run(&remote, &texts));
    assert_eq!(column(&a, "score"), column(&b, "score"));
    let labels = |bs: &[RecordBatch]| -> Vec<String> {
        bs.iter()
            .flat_map(|b| {
                b.column_by_name("label")
                    .unwrap()
                    .as_string::<i32>()
                    .iter()
                    .map(|x| x.unwrap().to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    assert_eq!(labels(&a), labels(&b));
}

#[test]
fn a_dead_or_slow_server_loses_no_document_and_the_cache_spares_a_rerun() {
    let data = tempfile::tempdir().unwrap();
    let texts: Vec<String> = texts().into_iter().take(40).collect();
    // Nothing listens on a port just freed.
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let options = |url: &str, extra: serde_json::Value| serde_json::json!({"backend": "http", "http": http(url, extra), "labels": ["earn"], "keep": "score_earn > 0.5"});
    let (out, verdicts, counters) =
        run(&stage(options(&dead, serde_json::json!({"breaker_failures": 3})), data.path()), &texts);
    assert_eq!(out.iter().map(RecordBatch::num_rows).sum::<usize>(), 40, "originals kept");
    assert!(verdicts.iter().all(Option::is_none), "kept with null scores, `keep` not applied");
    assert!(column(&out, "score_earn").iter().all(|v| v.is_nan()));
    assert_eq!(counters["unscored"], 40, "{counters:?}");
    assert_eq!(counters["circuit_breaker_trips"], 1, "{counters:?}");
    // on_error: drop drops them, with their reason.
    let (_, verdicts, _) =
        run(&stage(options(&dead, serde_json::json!({"on_error": "drop", "retries": 0})), data.path()), &texts);
    assert!(verdicts.iter().all(|v| v.as_deref() == Some("unscored")), "{verdicts:?}");

    // A server slower than the timeout: each request times out, is retried, then fails.
    let s = server();
    s.faults.slow_all_ms.store(400, Ordering::SeqCst);
    let (_, _, counters) = run(
        &stage(
            options(
                &s.url,
                serde_json::json!({"timeout_s": 0.1, "retries": 1, "batch_size": 20, "breaker_failures": 100}),
            ),
            data.path(),
        ),
        &texts,
    );
    assert_eq!(counters["unscored"], 40, "{counters:?}");
    assert_eq!(counters["http_retries"], 2, "{counters:?}");

    // With the cache: the second run sends nothing and gives the same scores.
    let s = server();
    let cached = |s: &Server| stage(options(&s.url, serde_json::json!({"cache": true})), data.path());
    let (first, _, _) = run(&cached(&s), &texts);
    let sent = s.faults.texts.load(Ordering::SeqCst);
    assert_eq!(sent, 40);
    let (second, _, counters) = run(&cached(&s), &texts);
    assert_eq!(s.faults.texts.load(Ordering::SeqCst), sent, "the rerun asked the server again");
    assert!(!counters.contains_key("http_requests"), "{counters:?}");
    assert_eq!(column(&first, "score_earn"), column(&second, "score_earn"));
    assert!(data.path().join("cache/classify").read_dir().unwrap().count() == 1);
}

#[test]
fn embeddings_with_a_linear_head_and_tei_truncation() {
    let s = server();
    let data = tempfile::tempdir().unwrap();
    let texts: Vec<String> = texts().into_iter().take(30).collect();
    // A head that passes the 10 probabilities through: its scores are the model's.
    let labels = ["earn", "acq", "trade", "crude", "money-fx", "interest", "ship", "sugar", "coffee", "gold"];
    let model = Model::from_bytes(&std::fs::read(fixtures().join("topics_bigram.bin")).unwrap(), "fixture").unwrap();
    let order: Vec<String> = model.labels().to_vec();
    let weights: Vec<Vec<f64>> =
        order.iter().map(|l| order.iter().map(|m| if l == m { 1.0 } else { 0.0 }).collect()).collect();
    let head = data.path().join("head.json");
    std::fs::write(
        &head,
        serde_json::json!({"labels": order, "weights": weights, "bias": vec![0.0; order.len()], "activation": "none"})
            .to_string(),
    )
    .unwrap();
    let remote = stage(
        serde_json::json!({"backend": "http", "model": "topics", "labels": labels,
            "http": http(&s.url, serde_json::json!({"api": "embeddings", "head": head.display().to_string()}))}),
        data.path(),
    );
    let local = stage(serde_json::json!({"model": "topics_bigram.bin", "labels": labels}), data.path());
    let ((a, _, _), (b, _, _)) = (run(&local, &texts), run(&remote, &texts));
    for l in labels {
        let name = format!("score_{l}");
        let (x, y) = (column(&a, &name), column(&b, &name));
        assert!(x.iter().zip(&y).all(|(p, q)| (p - q).abs() < 1e-6), "{name}: {x:?} vs {y:?}");
    }

    // A server that refuses long texts without `truncate`: those fail (413 is not retried), the rest pass.
    s.faults.strict_length.store(true, Ordering::SeqCst);
    let strict = stage(
        serde_json::json!({"backend": "http", "labels": ["earn"], "http": http(&s.url, serde_json::json!({"truncate": false, "batch_size": 1, "breaker_failures": 1000}))}),
        data.path(),
    );
    let (_, _, counters) = run(&strict, &texts);
    let long = texts.iter().filter(|t| t.chars().count() > 400).count();
    assert!(long > 0);
    assert_eq!(counters["unscored"], long as u64, "{counters:?}");
    assert!(!counters.contains_key("http_retries"), "{counters:?}");
}

#[test]
fn options_are_checked() {
    let data = tempfile::tempdir().unwrap();
    let err = |v: serde_json::Value| {
        smelt_stages::classify::configure(v, &ConfigureContext::new(fixtures(), data.path())).unwrap_err().message
    };
    assert!(err(serde_json::json!({"backend": "http"})).contains("needs `http: {url: ...}`"));
    assert!(err(serde_json::json!({"backend": "http", "http": {"url": "ftp://x"}}))
        .contains("not an http:// or https:// URL"));
    assert!(err(serde_json::json!({"backend": "http", "http": {"url": "http://x", "api": "embeddings"}}))
        .contains("needs `head`"));
    assert!(err(serde_json::json!({"model": "topics_bigram.bin", "http": {"url": "http://x"}}))
        .contains("is for `backend: http`"));
    assert!(err(serde_json::json!({"backend": "http", "http": {"url": "http://x"}, "labels": ["earn"], "buckets": {"column": "score_earn", "count": 4}}))
        .contains("`buckets` needs backend `fasttext`"));
    assert!(err(serde_json::json!({"backend": "http", "http": {"url": "http://x"}, "exact": false}))
        .contains("`exact: false` is for the fasttext backend"));
    // A label the server does not have stops the run with the server's labels.
    let s = server();
    let t = stage(
        serde_json::json!({"backend": "http", "labels": ["sports"], "http": http(&s.url, serde_json::json!({}))}),
        data.path(),
    );
    let mut tr = t.build(&schema()).unwrap();
    let b = RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from(vec!["1"])),
            Arc::new(LargeStringArray::from(vec!["Shr 1.2 dlrs vs 1.1 dlrs"])),
        ],
    )
    .unwrap();
    let e = tr.process(b).err().unwrap().to_string();
    assert!(e.contains("no score for label `sports`") && e.contains("earn"), "{e}");
}
