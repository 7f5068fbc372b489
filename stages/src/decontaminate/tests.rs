use super::*;
use arrow::array::{AsArray, LargeStringArray, StringArray};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn ctx() -> ConfigureContext {
    ConfigureContext::new(format!("{FIXTURES}/decontaminate"), std::env::temp_dir())
}

fn config(options: serde_json::Value) -> DecontaminateConfig {
    parse(options, &ctx()).unwrap()
}

/// The two real benchmarks of the fixtures: MMLU dev questions and HumanEval prompts.
fn real_benchmarks(action: &str) -> serde_json::Value {
    serde_json::json!({
        "benchmarks": [
            {"from": "mmlu_dev.jsonl", "fields": ["question", "choices"]},
            {"from": "HumanEval.jsonl.gz", "id": "task_id", "fields": ["prompt"]},
        ],
        "action": action,
    })
}

fn batch(ids: &[String], texts: &[String]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("text", DataType::LargeUtf8, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![Arc::new(StringArray::from(ids.to_vec())), Arc::new(LargeStringArray::from(texts.to_vec()))],
    )
    .unwrap()
}

fn run(c: &DecontaminateConfig, ids: &[String], texts: &[String]) -> (Processed, Box<dyn Transform>) {
    let b = batch(ids, texts);
    let schema = c.output_schema(&b.schema()).unwrap();
    let mut t = c.build(&b.schema()).unwrap();
    let out = t.process(b).unwrap();
    if let Processed::Batch(b) = &out {
        assert_eq!(b.schema(), schema);
    }
    (out, t)
}

/// Real documents nobody planted anything in: Reuters-21578 stories and Common Crawl pages (Dolma).
fn hosts() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for file in ["classify/texts.jsonl", "filters/dolma_cc_en.jsonl", "reuters/stories.jsonl"] {
        let text = std::fs::read_to_string(format!("{FIXTURES}/{file}")).unwrap();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            out.push((v["id"].as_str().unwrap().to_string(), v["text"].as_str().unwrap().to_string()));
        }
    }
    out
}

fn jsonl(path: &str) -> Vec<serde_json::Value> {
    let bytes = std::fs::read(format!("{FIXTURES}/decontaminate/{path}")).unwrap();
    let text = if path.ends_with(".gz") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut s).unwrap();
        s
    } else {
        String::from_utf8(bytes).unwrap()
    };
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The edits a copied item shows in the wild, by variant.
fn edit(text: &str, variant: usize) -> String {
    match variant {
        // As printed.
        0 => text.to_string(),
        // Capitals.
        1 => text.to_uppercase(),
        // Typographic quotes, sentence commas and full stops dropped.
        2 => text.replace('"', "\u{201c}").replace('\'', "\u{2019}").replace(", ", " ").replace(". ", " "),
        // Re-wrapped as one paragraph at 60 columns.
        3 => {
            let mut out = String::new();
            let mut col = 0;
            for w in text.split_whitespace() {
                if col + w.len() > 60 {
                    out.push('\n');
                    col = 0;
                } else if col > 0 {
                    out.push(' ');
                }
                out.push_str(w);
                col += w.len() + 1;
            }
            out
        }
        // Markdown bullets and blank lines between the lines.
        _ => text.lines().map(|l| format!("* {l}")).collect::<Vec<_>>().join("\n\n"),
    }
}

/// `item` inside `host`, in the middle, on its own paragraph or inside a sentence.
fn plant(host: &str, item: &str, inline: bool) -> String {
    let mut mid = host.len() / 2;
    while !host.is_char_boundary(mid) {
        mid += 1;
    }
    let cut = host[mid..].find(' ').map_or(host.len(), |i| mid + i);
    let sep = if inline { " " } else { "\n\n" };
    format!("{}{sep}{item}{sep}{}", &host[..cut], &host[cut..])
}

fn mmlu_block(q: &serde_json::Value, variant: usize) -> String {
    let choices: Vec<&str> = q["choices"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    let letter = |i: usize| char::from(b'A' + i as u8);
    if variant % 2 == 0 {
        // lm-evaluation-harness's prompt.
        let mut s = format!("{}\n", q["question"].as_str().unwrap());
        for (i, c) in choices.iter().enumerate() {
            s.push_str(&format!("{}. {c}\n", letter(i)));
        }
        s + &format!("Answer: {}", q["answer"].as_str().unwrap())
    } else {
        // Flan's few-shot prompt.
        let opts: Vec<String> = choices.iter().enumerate().map(|(i, c)| format!("({}) {c}", letter(i))).collect();
        format!(
            "Q: {}\n{}\nA: The answer is ({}).",
            q["question"].as_str().unwrap(),
            opts.join(" "),
            q["answer"].as_str().unwrap()
        )
    }
}

#[test]
fn planted_benchmark_items_are_found_through_the_edits_of_the_wild() {
    let c = config(real_benchmarks("annotate"));
    let hosts = hosts();
    // (benchmark, item): the planted item, or the first item whose words are the same (the
    // data repeats college_physics/0 as /3, and HumanEval/56 and /61 differ only in bracket characters).
    let mut planted: Vec<(String, String)> = Vec::new();
    let mut first_with: BTreeMap<Vec<u64>, String> = BTreeMap::new();
    let mut canonical = |id: &str, text: &str| {
        let mut words = Vec::new();
        ngrams::for_each_word(text, |h, _, _| words.push(h));
        first_with.entry(words).or_insert_with(|| id.to_string()).clone()
    };
    let (mut ids, mut texts) = (Vec::new(), Vec::new());
    for (k, q) in jsonl("mmlu_dev.jsonl").iter().enumerate() {
        let block = edit(&mmlu_block(q, k / 5), k % 5);
        let (hid, host) = &hosts[k % hosts.len()];
        ids.push(format!("{hid}+mmlu{k}"));
        texts.push(plant(host, &block, k % 3 == 0));
        let words = format!("{}\n{}", q["question"].as_str().unwrap(), q["choices"]);
        planted.push(("mmlu_dev".into(), canonical(q["id"].as_str().unwrap(), &words)));
    }
    for (k, p) in jsonl("HumanEval.jsonl.gz").iter().enumerate() {
        let prompt = p["prompt"].as_str().unwrap();
        let block = if k % 2 == 0 { format!("```python\n{prompt}```") } else { prompt.to_string() };
        let block = edit(&block, k % 5);
        let (hid, host) = &hosts[(k * 7) % hosts.len()];
        ids.push(format!("{hid}+he{k}"));
        texts.push(plant(host, &block, k % 3 == 0));
        planted.push(("HumanEval".into(), canonical(p["task_id"].as_str().unwrap(), prompt)));
    }
    let (Processed::Batch(out), _) = run(&c, &ids, &texts) else { panic!("annotate keeps every row") };
    let list = out.column_by_name(COLUMN).unwrap().as_list::<i32>();
    let mut missed = Vec::new();
    for (i, (bench, item)) in planted.iter().enumerate() {
        let entries = list.value(i);
        let entries = entries.as_struct();
        let found = (0..entries.len()).any(|j| {
            entries.column(0).as_string::<i32>().value(j) == bench
                && entries.column(1).as_string::<i32>().value(j) == item
        });
        if !found {
            missed.push(format!("{bench}:{item} (variant {})", i % 5));
        }
    }
    let recall = 1.0 - missed.len() as f64 / planted.len() as f64;
    eprintln!("planted {} items, recall {recall:.4}, missed: {missed:?}", planted.len());
    let p = c.prepared().unwrap();
    eprintln!("index: {:?}", p.lineage);
    assert_eq!(planted.len(), 274 + 164);
    assert!(recall >= 0.99, "recall {recall:.4} < 0.99; missed {missed:?}");
}

#[test]
fn real_documents_hold_no_benchmark_item() {
    let c = config(real_benchmarks("drop"));
    let hosts = hosts();
    let ids: Vec<String> = hosts.iter().map(|h| h.0.clone()).collect();
    let texts: Vec<String> = hosts.iter().map(|h| h.1.clone()).collect();
    let (Processed::Filtered { verdicts, .. }, mut t) = run(&c, &ids, &texts) else { panic!("drop filters") };
    assert_eq!(verdicts.len(), 239);
    let dropped: Vec<&String> = ids.iter().zip(&verdicts).filter(|(_, v)| v.is_some()).map(|(i, _)| i).collect();
    assert!(dropped.is_empty(), "false positives: {dropped:?}");
    assert!(t.take_counters().is_empty());
}

#[test]
fn drop_names_the_benchmark_counts_items_and_keeps_samples() {
    let c = config(real_benchmarks("drop"));
    let he = jsonl("HumanEval.jsonl.gz");
    let mmlu = jsonl("mmlu_dev.jsonl");
    let host = hosts()[0].1.clone();
    let texts = vec![
        plant(&host, he[3]["prompt"].as_str().unwrap(), false),
        host.clone(),
        plant(&plant(&host, &mmlu_block(&mmlu[10], 0), true), he[3]["prompt"].as_str().unwrap(), false),
        plant(&host, he[3]["prompt"].as_str().unwrap(), true),
    ];
    let ids: Vec<String> = ["d", "c", "b", "a"].iter().map(|s| s.to_string()).collect();
    let (Processed::Filtered { verdicts, .. }, mut t) = run(&c, &ids, &texts) else { panic!("drop filters") };
    let reasons: Vec<Option<&str>> = verdicts.iter().map(|v| v.as_deref()).collect();
    // The third holds MMLU before HumanEval: its reason is the first hit's benchmark.
    assert_eq!(
        reasons,
        [Some("contaminated:HumanEval"), None, Some("contaminated:mmlu_dev"), Some("contaminated:HumanEval")]
    );
    let counters = t.take_counters();
    let want: BTreeMap<String, u64> = [
        ("contaminated:HumanEval".to_string(), 3),
        ("contaminated:mmlu_dev".to_string(), 1),
        ("match:HumanEval:HumanEval/3".to_string(), 3),
        (format!("match:mmlu_dev:{}", mmlu[10]["id"].as_str().unwrap()), 1),
    ]
    .into();
    assert_eq!(counters, want);
    let samples = t.take_samples();
    assert_eq!(samples["contaminated:HumanEval"].ids, ["a", "b", "d"]);
    assert_eq!(samples["contaminated:mmlu_dev"].ids, ["b"]);
}

#[test]
fn cut_removes_each_match_with_its_surroundings_and_drops_past_max_cuts() {
    let dir = tempfile::tempdir().unwrap();
    let bench = dir.path().join("b.txt");
    std::fs::write(
        &bench,
        "the quick brown fox jumps over the lazy dog again\nsome other long item that nobody ever wrote down before\n",
    )
    .unwrap();
    let options = |max_cuts: usize| serde_json::json!({"benchmarks": [bench.display().to_string()], "n": 5, "action": "cut", "cut_chars": 3, "max_cuts": max_cuts});
    let c = config(options(2));
    let text = "Start. The Quick brown fox, jumps over the lazy dog again! Middle part stays here. \
                SOME other long item that nobody ever wrote down before. End";
    let ids = vec!["x".to_string(), "y".to_string()];
    let texts = vec![text.to_string(), "nothing to see here at all today".to_string()];
    let (Processed::Filtered { batch, verdicts }, mut t) = run(&c, &ids, &texts) else { panic!("cut filters") };
    assert_eq!(verdicts, [None, None]);
    let out = batch.column_by_name("text").unwrap().as_string::<i64>();
    // Three characters on each side of each match go too.
    assert_eq!(out.value(0), "Star\niddle part stays her\nnd");
    assert_eq!(out.value(1), "nothing to see here at all today");
    assert_eq!(t.take_counters()["cut:b"], 1);
    // Two separate cuts are more than one allowed: the document goes.
    let c = config(options(1));
    let (Processed::Filtered { verdicts, .. }, _) = run(&c, &ids, &texts) else { panic!("cut filters") };
    assert_eq!(verdicts[0].as_deref(), Some("contaminated:b"));
    // Nothing left once cut: dropped.
    let c = config(options(5));
    let only = vec!["the quick brown fox jumps over the lazy dog again".to_string()];
    let (Processed::Filtered { verdicts, .. }, _) = run(&c, &ids[..1], &only) else { panic!("cut filters") };
    assert_eq!(verdicts[0].as_deref(), Some("contaminated:b"));
}

#[test]
fn short_items_are_matched_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let bench = dir.path().join("short.jsonl");
    std::fs::write(&bench, "{\"q\": \"how many legs does a spider have in total\"}\n{\"q\": \"too short to say\"}\n")
        .unwrap();
    let c = config(serde_json::json!({"benchmarks": [bench.display().to_string()], "action": "annotate"}));
    let p = c.prepared().unwrap();
    assert_eq!(p.lineage[0]["matched_whole"], 1);
    assert_eq!(p.lineage[0]["too_short"], 1);
    let texts: Vec<String> = [
        "Quiz night! How many legs does a spider have, in total? Eight.",
        "How many legs does a spider have? Ask an expert.",
        "this is too short to say anything about",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let ids: Vec<String> = (0..3).map(|i| i.to_string()).collect();
    let (Processed::Batch(out), _) = run(&c, &ids, &texts) else { panic!("annotate") };
    let list = out.column_by_name(COLUMN).unwrap().as_list::<i32>();
    assert_eq!((list.value(0).len(), list.value(1).len(), list.value(2).len()), (1, 0, 0));
}

#[test]
fn options_are_checked_with_their_positions() {
    let err = |v: serde_json::Value| parse(v, &ctx()).unwrap_err();
    let e = err(serde_json::json!({"benchmarks": []}));
    assert!(e.message.contains("no benchmarks"), "{e:?}");
    let e = err(serde_json::json!({"benchmarks": ["evals"]}));
    assert_eq!(e.path, [PathSeg::Key("benchmarks".into()), PathSeg::Index(0)]);
    assert!(e.message.contains("neither a benchmark file"), "{}", e.message);
    let e = err(serde_json::json!({"benchmarks": ["a/mmlu.jsonl", "b/mmlu.parquet"]}));
    assert!(e.message.contains("both named `mmlu`"), "{}", e.message);
    let e = err(serde_json::json!({"benchmarks": [{"from": "x.jsonl", "feilds": ["q"]}]}));
    assert_eq!(e.path, [PathSeg::Key("benchmarks".into()), PathSeg::Index(0), PathSeg::Key("feilds".into())]);
    let e = err(serde_json::json!({"benchmarks": ["x.jsonl"], "n": 0}));
    assert_eq!(e.path, [PathSeg::Key("n".into())]);
    // A missing file is found when the schema is asked for, at its entry.
    let c = config(serde_json::json!({"benchmarks": ["x.jsonl", "missing.jsonl"]}));
    let e = c.prepared().unwrap_err();
    assert!(e.0.contains("x.jsonl does not exist"), "{}", e.0);
    assert_eq!(e.1.unwrap().0, [PathSeg::Key("benchmarks".into()), PathSeg::Index(0)]);
}
