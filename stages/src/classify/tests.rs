//! Tests of `classify`: Python fastText parity on the fixture models, options
//! and their errors, `keep`, and buckets across any split of the input.

use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, Float64Array, LargeStringArray, StringArray, UInt32Array};
use arrow::datatypes::Schema;
use smelt_engine::stage::doc;
use smelt_engine::{BarrierConfig, BarrierContext};

use super::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/classify")
}

/// The fixture models; the last three are projected onto their labels with `exact: false`.
const MODELS: [&str; 6] = [
    "topics_bigram.bin",
    "topics_hs_q.ftz",
    "topics_ova_q.ftz",
    "topics_d64_q.ftz",
    "topics_hs_d64_q.ftz",
    "topics_d40.bin",
];
const TOPICS: [&str; 10] = ["earn", "acq", "trade", "crude", "money-fx", "interest", "ship", "sugar", "coffee", "gold"];

/// The fixture texts with, per model, Python fastText's `predict(text.replace("\n", " "), k=-1)`.
fn fixture() -> Vec<serde_json::Value> {
    std::fs::read_to_string(fixtures().join("texts.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![doc::id(), doc::text()]))
}

fn batch(texts: &[&str]) -> RecordBatch {
    let ids: Vec<String> = (0..texts.len()).map(|i| i.to_string()).collect();
    RecordBatch::try_new(
        schema(),
        vec![Arc::new(StringArray::from(ids)), Arc::new(LargeStringArray::from(texts.to_vec()))],
    )
    .unwrap()
}

fn configure_in(options: serde_json::Value, dir: &Path) -> std::result::Result<StageConfig, OptionError> {
    configure(options, &ConfigureContext::new(dir, "smelt-data"))
}

fn transform(options: serde_json::Value) -> Arc<dyn TransformConfig> {
    match configure_in(options, &fixtures()).unwrap() {
        StageConfig::Transform(t) => t,
        other => panic!("a transform, got {:?}", other.kind()),
    }
}

fn barrier(options: serde_json::Value) -> Arc<dyn BarrierConfig> {
    match configure_in(options, &fixtures()).unwrap() {
        StageConfig::Barrier(b) => b,
        other => panic!("a barrier, got {:?}", other.kind()),
    }
}

/// Runs a transform over `texts` in one batch.
fn run(options: serde_json::Value, texts: &[&str]) -> (RecordBatch, Option<Vec<Option<Cow<'static, str>>>>) {
    let cfg = transform(options);
    let schema = schema();
    cfg.output_schema(&schema).unwrap();
    match cfg.build(&schema).unwrap().process(batch(texts)).unwrap() {
        Processed::Batch(b) => (b, None),
        Processed::Filtered { batch, verdicts } => (batch, Some(verdicts)),
    }
}

fn f64s(b: &RecordBatch, name: &str) -> Vec<f64> {
    b.column_by_name(name).unwrap().as_any().downcast_ref::<Float64Array>().unwrap().values().to_vec()
}

/// Python's answers for `model` on a fixture row: (label without `__label__`, probability), best first.
fn python(row: &serde_json::Value, model: &str) -> Vec<(String, f64)> {
    row["predict"][model]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().strip_prefix("__label__").unwrap().to_string(), p[1].as_f64().unwrap()))
        .collect()
}

#[test]
fn probabilities_equal_python_fasttext_predict_on_every_fixture_text() {
    let rows = fixture();
    let texts: Vec<&str> = rows.iter().map(|r| r["text"].as_str().unwrap()).collect();
    assert_eq!(texts.len(), 209);
    // By default fastText's float operations, bit for bit; `exact: false`, the
    // projected rows: the same best label, fastText's f32 rounding apart (it
    // reaches 1.1e-6 on one of these texts with `topics_d64_q.ftz`).
    for exact in [true, false] {
        for model in MODELS {
            let labels: Vec<String> = TOPICS.iter().map(|t| format!("__label__{t}")).collect();
            let (out, verdicts) = run(serde_json::json!({"model": model, "labels": labels, "exact": exact}), &texts);
            assert!(verdicts.is_none(), "no keep: nothing dropped");
            let (top, _) = run(serde_json::json!({"model": model, "exact": exact}), &texts);
            let top_labels = top.column_by_name("label").unwrap().as_string::<i32>();
            let top_scores = f64s(&top, "score");
            let columns: Vec<Vec<f64>> = TOPICS.iter().map(|t| f64s(&out, &format!("score_{t}"))).collect();
            let mut compared = 0;
            for (r, row) in rows.iter().enumerate() {
                let want = python(row, model);
                for (t, col) in TOPICS.iter().zip(&columns) {
                    // A label predict leaves out (hierarchical softmax prunes below 1e-5) scores 0.
                    let p = want.iter().find(|(l, _)| l == t).map_or(0.0, |(_, p)| *p);
                    // Python's float is fastText's float32 widened; serde_json may read its decimal
                    // 1 ulp (of f64) off, so the float32s are compared.
                    if exact {
                        assert_eq!(col[r], f64::from(p as f32), "{model} {} {t}", row["id"]);
                    }
                    assert!((col[r] - p).abs() <= 2e-6, "{model} {} {t}: {} against {p}", row["id"], col[r]);
                    compared += 1;
                }
                // The top label is predict's first, ties included.
                assert_eq!(top_labels.value(r), want[0].0, "{model} {}", row["id"]);
                if exact {
                    assert_eq!(top_scores[r], f64::from(want[0].1 as f32), "{model} {}", row["id"]);
                }
                assert!((top_scores[r] - want[0].1).abs() <= 2e-6, "{model} {}", row["id"]);
            }
            assert_eq!(compared, 2090, "{model}");
        }
    }
}

#[test]
fn the_reader_returns_python_fasttexts_labels_in_its_order_ties_included() {
    let rows = fixture();
    let (mut scratch, mut out) = (Scratch::default(), Vec::new());
    let mut tied = 0;
    for model in MODELS {
        let m = Model::load(&fixtures().join(model)).unwrap();
        for row in &rows {
            m.predict(row["text"].as_str().unwrap(), 0.0, &mut scratch, &mut out);
            let got: Vec<(String, f32)> = out.iter().map(|p| (m.labels()[p.label].clone(), p.score)).collect();
            let want: Vec<(String, f32)> = python(row, model).into_iter().map(|(l, p)| (l, p as f32)).collect();
            assert_eq!(got, want, "{model} {}", row["id"]);
            tied += usize::from(want.windows(2).any(|w| w[0].1 == w[1].1));
        }
    }
    // Texts with equal scores among their labels (their order is libstdc++'s heap order).
    assert_eq!(tied, 151);
}

#[test]
fn keep_drops_by_the_expression_and_newlines_are_spaces() {
    let texts = [
        "Crude oil prices rose\non Monday after OPEC agreed to cut output.",
        "Crude oil prices rose on Monday after OPEC agreed to cut output.",
        "Net profit rose to 12.5 mln dlrs, or 1.10 dlrs per share, from 9.8 mln dlrs.",
        "",
    ];
    let options = serde_json::json!({
        "model": "topics_bigram.bin",
        "labels": ["crude", "__label__earn"],
        "keep": "score_crude >= 0.1 or (score_earn > 0.9 and score_crude < 0.01)",
    });
    let (out, verdicts) = run(options, &texts);
    let crude = f64s(&out, "score_crude");
    let earn = f64s(&out, "score_earn");
    assert_eq!(crude[0], crude[1], "a newline reads as a space");
    assert_eq!(earn[0], earn[1]);
    let expect: Vec<bool> = (0..4).map(|i| crude[i] >= 0.1 || (earn[i] > 0.9 && crude[i] < 0.01)).collect();
    assert_eq!(expect, [true, true, true, false], "crude {crude:?} earn {earn:?}");
    let dropped = Some(Cow::Borrowed(REASON));
    assert_eq!(verdicts.unwrap(), vec![None, None, None, dropped]);
    let names: Vec<String> = out.schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(names, ["id", "text", "score_crude", "score_earn"]);
}

#[test]
fn top_label_mode_writes_label_and_score_and_replaces_existing_columns() {
    let cfg = transform(serde_json::json!({"model": "topics_ova_q.ftz", "keep": "score > 0.5"}));
    let input = Arc::new(Schema::new(vec![
        doc::id(),
        Field::new("score", DataType::Float32, true),
        Field::new("body", DataType::Utf8, true),
        Field::new("label", DataType::Int64, false),
    ]));
    let e = cfg.output_schema(&input).unwrap_err().0;
    assert!(e.contains("needs column `text`"), "{e}");
    let cfg = transform(serde_json::json!({"model": "topics_ova_q.ftz", "text": "body"}));
    let out = cfg.output_schema(&input).unwrap();
    let fields: Vec<(&str, DataType, bool)> =
        out.fields().iter().map(|f| (f.name().as_str(), f.data_type().clone(), f.is_nullable())).collect();
    assert_eq!(
        fields,
        [
            ("id", DataType::Utf8, false),
            ("body", DataType::Utf8, true),
            ("label", DataType::Utf8, true),
            ("score", DataType::Float64, false)
        ]
    );
    // A null text scores as empty text.
    let b = RecordBatch::try_new(
        input.clone(),
        vec![
            Arc::new(StringArray::from(vec!["a", "b"])),
            Arc::new(Float32Array::from(vec![Some(9.0), None])),
            Arc::new(StringArray::from(vec![None, Some("")])),
            Arc::new(arrow::array::Int64Array::from(vec![1, 2])),
        ],
    )
    .unwrap();
    let Processed::Batch(out) = cfg.build(&input).unwrap().process(b).unwrap() else { panic!("no keep: a batch") };
    let labels = out.column_by_name("label").unwrap().as_string::<i32>();
    assert_eq!(labels.value(0), labels.value(1));
    assert_eq!(f64s(&out, "score")[0], f64s(&out, "score")[1]);
}

use arrow::array::Float32Array;

#[test]
fn bad_options_are_reported_at_their_path() {
    let err = |o: serde_json::Value| configure_in(o, &fixtures()).unwrap_err();
    let e = err(serde_json::json!({"model": "topics_hs_q.ftz", "labels": ["hq"], "keep": "score_hq >= high"}));
    assert_eq!(e.path, vec![PathSeg::Key("keep".into())]);
    assert_eq!(e.message, "`score_hq >= high` at character 13: expected a number, found `high`");
    let e = err(serde_json::json!({"model": "m.bin", "labels": ["hq"], "keep": "score_hg >= 0.5"}));
    assert_eq!(
        e.message,
        "`score_hg >= 0.5` at character 1: `score_hg` is not a score column of this stage; did you mean `score_hq`? \
         The score columns are: score_hq"
    );
    let e = err(serde_json::json!({"model": "m.bin", "keep": "score_hq >= 0.5"}));
    assert_eq!(e.message, "`score_hq >= 0.5` at character 1: `score_hq` is not a score column of this stage; the score columns are: score");
    let e = err(serde_json::json!({"model": "m.bin", "labels": ["hq", "__label__hq"]}));
    assert_eq!(
        (e.path, e.message),
        (vec![PathSeg::Key("labels".into()), PathSeg::Index(1)], "label `hq` is listed twice".to_string())
    );
    let e =
        err(serde_json::json!({"model": "m.bin", "labels": ["hq"], "buckets": {"column": "score_hg", "count": 20}}));
    assert_eq!(e.path, vec![PathSeg::Key("buckets".into()), PathSeg::Key("column".into())]);
    assert_eq!(
        e.message,
        "`score_hg` is not a score column of this stage; did you mean `score_hq`? the score columns are: score_hq"
    );
    let e = err(serde_json::json!({"model": "m.bin", "buckets": {"column": "score", "count": 0}}));
    assert_eq!(
        (e.path, e.message),
        (vec![PathSeg::Key("buckets".into()), PathSeg::Key("count".into())], "must be at least 1".to_string())
    );
    let e = err(serde_json::json!({"model": "m.bin", "buckets": {"column": "score", "count": 2, "weight": "bytes"}}));
    assert_eq!(e.path, vec![PathSeg::Key("buckets".into()), PathSeg::Key("weight".into())]);
    assert!(e.message.starts_with("unknown variant `bytes`"), "{}", e.message);
    let e = err(serde_json::json!({"model": "m.bin", "backend": "onnx"}));
    assert!(e.message.starts_with("unknown variant `onnx`, expected `fasttext` or `http`"), "{}", e.message);
    let e = err(serde_json::json!({"labels": ["hq"]}));
    assert_eq!(e.message, "`model` is empty: name a fastText .bin or .ftz file");
    assert!(err(serde_json::json!({"model": "m.bin", "treshold": 0.5})).at_key);
}

#[test]
fn a_missing_model_or_an_unknown_label_is_reported_when_the_schema_is_asked_for() {
    let cfg = transform(serde_json::json!({"model": "nowhere/quality.bin", "labels": ["hq"]}));
    let e = cfg.output_schema(&schema()).unwrap_err();
    let missing = fixtures().join("nowhere/quality.bin");
    assert_eq!(
        e,
        SchemaError::at_option(
            vec![PathSeg::Key("model".into())],
            format!("cannot read fastText model {}: No such file or directory (os error 2)", missing.display()),
            None
        )
    );
    let cfg = transform(serde_json::json!({"model": "topics_hs_q.ftz", "labels": ["earn", "__label__money_fx"]}));
    let e = cfg.output_schema(&schema()).unwrap_err();
    assert_eq!(
        e,
        SchemaError::at_option(
            vec![PathSeg::Key("labels".into()), PathSeg::Index(1)],
            format!("model {} has no label `money_fx`", fixtures().join("topics_hs_q.ftz").display()),
            Some(
                "did you mean `money-fx`? Its labels are: earn, acq, trade, crude, money-fx, interest, ship, \
                 sugar, coffee, gold"
                    .into()
            )
        )
    );
    let e = cfg.build(&schema()).err().unwrap().to_string();
    assert!(e.contains("has no label `money_fx`"), "{e}");
    let cfg = transform(serde_json::json!({"model": "train.py"}));
    let e = cfg.output_schema(&schema()).unwrap_err().0;
    assert!(e.contains("train.py is not a usable fastText model"), "{e}");
}

#[test]
fn a_model_url_is_read_through_the_object_store() {
    let path = fixtures().join("topics_ova_q.ftz");
    let url = format!("file://{}", path.display());
    let texts = ["Crude oil prices rose on Monday.", "Net profit rose to 12.5 mln dlrs."];
    let (by_url, _) = run(serde_json::json!({"model": url, "labels": ["crude"]}), &texts);
    let (by_path, _) = run(serde_json::json!({"model": "topics_ova_q.ftz", "labels": ["crude"]}), &texts);
    assert_eq!(f64s(&by_url, "score_crude"), f64s(&by_path, "score_crude"));
    let cfg = transform(serde_json::json!({"model": format!("{url}.missing")}));
    let e = cfg.output_schema(&schema()).unwrap_err().0;
    assert_eq!(e, format!("cannot read fastText model {url}.missing: no such object"));
    // Lineage records the model's hash.
    let resolved = cfg.resolved();
    assert!(resolved.get("model_xxh3").is_none(), "{resolved}");
    let cfg = transform(serde_json::json!({"model": url}));
    cfg.output_schema(&schema()).unwrap();
    assert_eq!(cfg.resolved()["model_xxh3"].as_str().unwrap().len(), 16);
}

#[test]
fn words_are_what_fasttext_reads() {
    assert_eq!(words(""), 0);
    assert_eq!(words(" \n\t "), 0);
    assert_eq!(words("one"), 1);
    assert_eq!(words("  two words\n\nand\tthree\r\nmore\0x "), 6);
    assert_eq!(words("naïve café"), 2);
}

#[test]
fn thresholds_put_each_score_in_its_weighted_percentile() {
    // Scores 0.1 (weight 1), 0.2 (2), 0.3 (3), 0.4 (4): W = 10.
    let recs = [(0.1f32, 1u64), (0.2, 2), (0.3, 3), (0.4, 4)];
    let t = |count: u32| {
        let mut it = recs.iter().map(|&(s, w)| (buckets::score_key(s), w));
        buckets::thresholds(count, 10, || Ok(it.next())).unwrap()
    };
    let all = |t: &buckets::Thresholds| recs.iter().map(|&(s, _)| t.bucket(s)).collect::<Vec<_>>();
    // below = 0, 1, 3, 6 of 10: buckets ⌊2·below/10⌋ = 0, 0, 0, 1 and ⌊4·below/10⌋ = 0, 0, 1, 2.
    assert_eq!(all(&t(2)), [0, 0, 0, 1]);
    assert_eq!(all(&t(4)), [0, 0, 1, 2]);
    assert_eq!(all(&t(10)), [0, 1, 3, 6]);
    assert_eq!(t(4).scores, [Some(0.3), Some(0.4), None]);
    assert_eq!(all(&t(1)), [0, 0, 0, 0]);
    // Nothing weighed: every score in bucket 0.
    let mut none = std::iter::empty();
    let z = buckets::thresholds(5, 0, || Ok(none.next())).unwrap();
    assert_eq!(z.bucket(0.9), 0);
    // Keys sort like the floats.
    let mut floats = [-1.5f32, -0.0, 0.0, 1e-30, 0.5, 1.0, 2.0, -3.0];
    floats.sort_by_key(|&f| buckets::score_key(f));
    assert_eq!(floats, [-3.0, -1.5, -0.0, 0.0, 1e-30, 0.5, 1.0, 2.0]);
}

/// Runs a bucketing barrier over `splits` (each a list of batches), with
/// `budget` bytes of memory; returns the output batches of each split.
fn run_barrier(cfg: &Arc<dyn BarrierConfig>, splits: &[Vec<RecordBatch>], budget: usize) -> Vec<Vec<Processed>> {
    let dir = tempfile::tempdir().unwrap();
    let ctx = BarrierContext { memory_budget: budget, ..crate::dedup::test_context(dir.path()) };
    let schema = schema();
    cfg.output_schema(&schema).unwrap();
    for (i, batches) in splits.iter().enumerate() {
        let mut o = cfg.observer(&schema, &ctx, i as u32).unwrap();
        for b in batches {
            o.observe(b).unwrap();
        }
        o.finish().unwrap();
    }
    let ids: Vec<u32> = (0..splits.len() as u32).collect();
    let counts = cfg.resolve(&ctx, &ids).unwrap();
    assert!(counts.contains_key("bucketed_weight"));
    splits
        .iter()
        .enumerate()
        .map(|(i, batches)| {
            let mut a = cfg.applier(&schema, &ctx, i as u32).unwrap();
            batches.iter().map(|b| a.process(b.clone()).unwrap()).collect()
        })
        .collect()
}

/// The rows of `texts` cut into `n` splits of batches of up to 50 rows, in order.
fn split_into(texts: &[&str], n: usize) -> Vec<Vec<RecordBatch>> {
    let per = texts.len().div_ceil(n);
    texts.chunks(per).map(|s| s.chunks(50).map(batch).collect()).collect()
}

#[test]
fn buckets_are_exact_and_the_same_for_any_split_of_the_input() {
    let rows = fixture();
    // 10 copies of the fixture texts with a number of words appended, so that weights differ: 2,090 rows.
    let owned: Vec<String> = (0..10)
        .flat_map(|k| rows.iter().map(move |r| format!("{} {}", r["text"].as_str().unwrap(), "w ".repeat(k))))
        .collect();
    let texts: Vec<&str> = owned.iter().map(String::as_str).collect();
    for (weight, keep) in [("tokens", None), ("documents", None), ("tokens", Some("score_crude < 0.5"))] {
        let mut options = serde_json::json!({
            "model": "topics_bigram.bin",
            "labels": ["earn", "crude"],
            "buckets": {"column": "score_crude", "count": 20, "weight": weight},
        });
        if let Some(k) = keep {
            options["keep"] = k.into();
        }
        let cfg = barrier(options);
        let mut answers = Vec::new();
        // One split with a budget that forces sorted runs to disk (2,090 records > 1,024), then more splits.
        for (n, budget) in [(1, 0), (3, 1 << 20), (7, 0)] {
            let out = run_barrier(&cfg, &split_into(&texts, n), budget);
            let (mut buckets, mut scores, mut verdicts) = (Vec::new(), Vec::new(), Vec::new());
            for p in out.into_iter().flatten() {
                let (b, v) = match p {
                    Processed::Filtered { batch, verdicts } => (batch, verdicts),
                    Processed::Batch(batch) => (batch.clone(), vec![None; batch.num_rows()]),
                };
                let col =
                    b.column_by_name("score_crude_bucket").unwrap().as_any().downcast_ref::<UInt32Array>().unwrap();
                buckets.extend(col.values().iter().copied());
                scores.extend(f64s(&b, "score_crude"));
                verdicts.extend(v);
            }
            answers.push((buckets, scores, verdicts));
        }
        assert_eq!(answers[0], answers[1], "{weight} {keep:?}: 1 split vs 3");
        assert_eq!(answers[0], answers[2], "{weight} {keep:?}: 1 split vs 7");

        // By definition: ⌊20 · (weight of kept rows scoring less) / (weight of kept rows)⌋, at most 19.
        let (buckets, scores, verdicts) = &answers[0];
        let w: Vec<u128> = texts
            .iter()
            .zip(verdicts)
            .map(|(t, v)| {
                if v.is_some() {
                    0
                } else if weight == "tokens" {
                    u128::from(words(t))
                } else {
                    1
                }
            })
            .collect();
        let total: u128 = w.iter().sum();
        let kept = verdicts.iter().filter(|v| v.is_none()).count();
        assert_eq!(kept, if keep.is_some() { 2080 } else { 2090 }, "{weight} {keep:?}");
        for (r, &s) in scores.iter().enumerate() {
            let below: u128 = scores.iter().zip(&w).filter(|(x, _)| **x < s).map(|(_, w)| *w).sum();
            let want = ((20 * below) / total).min(19) as u32;
            assert_eq!(buckets[r], want, "row {r}");
        }
        let per_bucket: std::collections::BTreeSet<u32> =
            buckets.iter().zip(verdicts).filter(|(_, v)| v.is_none()).map(|(b, _)| *b).collect();
        assert_eq!(per_bucket.len(), 20, "{weight} {keep:?}: every bucket used");
    }
}
