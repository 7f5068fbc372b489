//! Hand-checked counts on real sentences (examples/data/jsonl, Dolma's CCNet
//! test documents, Apache-2.0) and the split-layout property.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use smelt_catalog::StageMetrics;
use smelt_engine::{ConfigureContext, Processed, StageConfig};
use smelt_query::audit::derive;

use super::configure;

/// ajitucapoeira.com/history.php
const A: &str = "Only 3 years prior to the start of the 1900s a momentous occasion happened for one young 8 year old name Vicente as he was invited by an African named Benedito to try Capoeira.";
/// 911blogger.com/news/2006-11-02/...
const B: &str = "Renee May, a flight attendant on Flight 77, uses a cell phone to call her mother in Las Vegas.";
/// 911blogger.com/news/2006-11-02/...
const C: &str = "However, simply releasing a five plus year old video with a predictable corporate media broadside taking \u{201c}conspiracy nuts\u{201d} to task, thus questioning their patriotism and even sanity, and suggesting Republicans were right all along about those cave-dwelling Muslims with their boxcutters, may not be enough to flip the election and keep the House and Senate in neocon hands.";
const D: &str = "Die Muslime und die Christen der Stadt feierten gemeinsam.";

fn batch(rows: &[(&str, Option<&str>, &str)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("text", DataType::Utf8, false),
        Field::new("lang", DataType::Utf8, true),
        Field::new("source", DataType::Utf8, false),
    ]));
    let ids: Vec<String> = rows.iter().map(|r| r.0.to_string()).collect();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(ids)),
        Arc::new(StringArray::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())),
        Arc::new(StringArray::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
        Arc::new(StringArray::from(vec!["jsonl:dolma"; rows.len()])),
    ];
    RecordBatch::try_new(schema, cols).unwrap()
}

/// Runs the stage over `splits` (each a list of batches), one transform per split,
/// and sums their metrics as the engine does.
fn run(options: serde_json::Value, splits: &[Vec<RecordBatch>]) -> StageMetrics {
    let StageConfig::Transform(cfg) = configure(options, &ConfigureContext::working_dir()).unwrap() else {
        panic!("not a transform")
    };
    let mut total = StageMetrics { stage: "audit".into(), ..Default::default() };
    for split in splits {
        let mut t = cfg.build(&split[0].schema()).unwrap();
        for b in split {
            let Processed::Batch(out) = t.process(b.clone()).unwrap() else { panic!("audit never filters") };
            assert_eq!(&out, b, "rows pass unchanged");
        }
        total.merge(&StageMetrics { counters: t.take_counters(), samples: t.take_samples(), ..Default::default() });
    }
    total
}

#[test]
fn hand_checked_counts_on_real_sentences() {
    let rows = [("a", Some("en"), A), ("b", Some("en"), B), ("c", Some("en"), C), ("d", Some("de"), D)];
    let m = run(serde_json::json!({"toxicity": {"words": ["conspiracy nuts"]}}), &[vec![batch(&rows)]]);
    let c = |k: &str| m.counters.get(k).copied().unwrap_or(0);
    assert_eq!((c("docs"), c("audited_docs"), c("toxic_docs"), c("audited_toxic_docs")), (4, 3, 1, 1));
    assert_eq!(c("words"), 34 + 19 + 58 + 9);
    assert_eq!(c("audited_words"), 34 + 19 + 58);
    assert_eq!(c("unaudited_docs{lang=de}"), 1);
    // a: young, old; c: old ("five plus year old video")
    assert_eq!(c("mention_docs{axis=age}"), 2);
    assert_eq!(c("mentions{axis=age}"), 3);
    assert_eq!(c("mentions{axis=age,descriptor=old}"), 2);
    assert_eq!(c("toxic_mention_docs{axis=age}"), 1);
    // c: "Muslims" (plural), "Republicans"
    assert_eq!(c("mention_docs{axis=religion,descriptor=Muslim}"), 1);
    assert_eq!(c("toxic_mention_docs{axis=religion}"), 1);
    assert_eq!(c("mentions{axis=political_ideologies,descriptor=Republican}"), 1);
    assert_eq!(c("mentions{axis=race_ethnicity,descriptor=African}"), 1);
    // he (a), her (b), their twice (c)
    assert_eq!(c("mentions{axis=pronoun,descriptor=male}"), 1);
    assert_eq!(c("mentions{axis=pronoun,descriptor=female}"), 1);
    assert_eq!(c("mentions{axis=pronoun,descriptor=neutral}"), 2);
    assert_eq!(c("mention_docs{axis=pronoun}"), 3);
    // Axes without mentions are listed with zeros; nothing else matched.
    assert_eq!(c("mention_docs{axis=ability}"), 0);
    assert!(m.counters.contains_key("mention_docs{axis=ability}"));
    let descriptors: Vec<&String> =
        m.counters.keys().filter(|k| k.starts_with("mentions{") && k.contains("descriptor=")).collect();
    assert_eq!(descriptors.len(), 8, "{descriptors:?}");
    // By language and source.
    assert_eq!(c("docs{lang=de}"), 1);
    assert_eq!(c("audited_docs{lang=en}"), 3);
    assert_eq!(c("mention_docs{axis=age,lang=en}"), 2);
    assert_eq!(c("toxic_docs{source=jsonl:dolma}"), 1);
    // Samples: the toxic document, and who mentions age.
    assert_eq!(m.samples["toxic{axis=religion}"].ids, vec!["c"]);
    assert_eq!(m.samples["mention{axis=age}"].ids, vec!["a", "c"]);

    let a = derive(&m, &[], &[]);
    assert_eq!(a.metrics["doc_share{axis=age}"], 2.0 / 3.0);
    assert_eq!(a.metrics["mentions_per_1k_words{axis=age}"], 3000.0 / 111.0);
    assert_eq!(a.metrics["pronoun_ratio{gender=female}"], 1.0);
    assert_eq!(a.languages_not_audited, BTreeMap::from([("de".to_string(), 1)]));
}

#[test]
fn rows_without_a_language_use_the_default() {
    let rows = [("a", None, A), ("d", Some("de"), D)];
    let m = run(serde_json::json!({}), &[vec![batch(&rows)]]);
    assert_eq!(m.counters["audited_docs"], 1);
    assert_eq!(m.counters["docs{lang=en}"], 1);
    let m = run(serde_json::json!({"default_language": "de"}), &[vec![batch(&rows)]]);
    assert_eq!(m.counters["audited_docs"], 0);
    assert_eq!(m.counters["unaudited_docs{lang=de}"], 2);
}

#[test]
fn user_lexicons_add_languages_and_bad_ones_say_where() {
    let dir = tempfile::tempdir().unwrap();
    let de = dir.path().join("de.txt");
    std::fs::write(&de, "# Religion\nreligion: Muslim = Muslime, Muslim\nreligion: Christian = Christen\n").unwrap();
    let rows = [("d", Some("de"), D)];
    let m = run(serde_json::json!({"lexicons": {"de": [de]}}), &[vec![batch(&rows)]]);
    assert_eq!(m.counters["audited_docs"], 1);
    assert_eq!(m.counters["mentions{axis=religion,descriptor=Muslim}"], 1);
    assert_eq!(m.counters["mentions{axis=religion}"], 2);

    std::fs::write(&de, "religion: Muslim\nreligion = Christen\n").unwrap();
    let StageConfig::Transform(cfg) =
        configure(serde_json::json!({"lexicons": {"de": [&de]}}), &ConfigureContext::working_dir()).unwrap()
    else {
        panic!()
    };
    let err = cfg.build(&batch(&rows).schema()).err().unwrap().to_string();
    assert!(err.contains("de.txt:2:1: expected `axis: descriptor`"), "{err}");
}

#[test]
fn options_are_checked() {
    let err = |o: serde_json::Value| configure(o, &ConfigureContext::working_dir()).err().unwrap();
    let e = err(serde_json::json!({"languages": ["de"]}));
    assert!(e.message.contains("no bundled lexicon for `de`"), "{}", e.message);
    let e = err(serde_json::json!({"axes": ["religon"]}));
    assert!(e.message.contains("did you mean `religion`"), "{}", e.message);
    let e = err(serde_json::json!({"gates": {"toxicity_rate_ratio{axis=religion} >> 2": "fail"}}));
    assert!(e.message.contains("column 37"), "{}", e.message);
    assert!(e.at_key);
    let e = err(serde_json::json!({"gates": {"doc_share > 0.5": "stop"}}));
    assert!(e.message.contains("unknown variant `stop`"), "{}", e.message);
    let e = err(serde_json::json!({"toxicity": {"min_matches": 0}}));
    assert_eq!(e.path[0], smelt_engine::yaml::PathSeg::Key("toxicity".into()));
}

/// Real documents: examples/data/jsonl/cc_en_head-0091.jsonl.gz (Dolma test data, Apache-2.0).
fn dolma_rows() -> Vec<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/data/jsonl/cc_en_head-0091.jsonl.gz");
    let mut s = String::new();
    gunzip(path, &mut s);
    s.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["id"].as_str().unwrap().to_string(), v["text"].as_str().unwrap().to_string())
        })
        .collect()
}

/// Reads a gzip file with the system's `gzip` (no compression crate in this crate).
fn gunzip(path: &str, out: &mut String) {
    let mut child = std::process::Command::new("gzip")
        .args(["-dc", path])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip runs");
    child.stdout.take().unwrap().read_to_string(out).unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn metrics_do_not_depend_on_the_split_layout() {
    let docs = dolma_rows();
    assert!(docs.len() >= 10);
    let rows: Vec<(&str, Option<&str>, &str)> =
        docs.iter().map(|(id, t)| (id.as_str(), Some("en"), t.as_str())).collect();
    let options = serde_json::json!({"samples": 2, "toxicity": {"words": ["sanity", "video"]}, "gates": {"doc_share > 0.2": "warn"}});
    let gates =
        vec![smelt_catalog::audit::parse_gate("doc_share > 0.2", smelt_catalog::audit::GateAction::Warn).unwrap()];
    let one = run(options.clone(), &[vec![batch(&rows)]]);
    let expected = derive(&one, &[], &gates);
    assert!(expected.metrics.len() > 50 && !expected.risks.is_empty());
    // Several layouts: splits of 1, 3, 7 documents; rows in batches of 2 within splits; reversed split order.
    for size in [1, 3, 7] {
        let mut splits: Vec<Vec<RecordBatch>> = rows.chunks(size).map(|c| c.chunks(2).map(batch).collect()).collect();
        for reverse in [false, true] {
            if reverse {
                splits.reverse();
            }
            let m = run(options.clone(), &splits);
            assert_eq!(m.counters, one.counters, "split size {size}");
            assert_eq!(m.samples, one.samples, "split size {size}");
            assert_eq!(derive(&m, &[], &gates), expected);
        }
    }
}

#[test]
fn breakdown_by_domain_uses_the_url_host() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("text", DataType::Utf8, false),
        Field::new("url", DataType::Utf8, true),
    ]));
    let b = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["a", "c"])),
            Arc::new(StringArray::from(vec![A, C])),
            Arc::new(StringArray::from(vec![
                Some("http://ajitucapoeira.com/history.php"),
                Some("https://www.911blogger.com/news/2006-11-02/x"),
            ])),
        ],
    )
    .unwrap();
    let m = run(serde_json::json!({"by": ["domain"]}), &[vec![b]]);
    assert_eq!(m.counters["docs{domain=ajitucapoeira.com}"], 1);
    assert_eq!(m.counters["mention_docs{axis=religion,domain=911blogger.com}"], 1);
    assert_eq!(m.counters["mention_docs{axis=age,domain=ajitucapoeira.com}"], 1);
    assert!(!m.counters.keys().any(|k| k.contains("lang=")), "only the breakdowns asked for");
}
