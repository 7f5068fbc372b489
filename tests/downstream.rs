//! Datasets feeding datasets: the `dataset` source reads a committed version,
//! pins it in the run's plan and the lineage, and checks its shards.

mod common;

use common::{example, Env};

fn downstream(env: &Env, from: &str) -> String {
    let text = format!(
        "dataset: down\nstages:\n  raw: {{type: dataset, from: \"{from}\"}}\n  hashed: {{type: content_hash, inputs: [raw]}}\n  out: {{type: parquet, inputs: [hashed]}}\n"
    );
    env.write("down.yaml", text.as_bytes()).display().to_string()
}

#[test]
fn a_version_is_read_pinned_and_named_in_the_lineage() {
    let env = Env::new();
    let quickstart = example("quickstart.yaml").display().to_string();
    let up = env.json(&["run", &quickstart]);
    env.ok(&["catalog", "tag", "quickstart@1", "prod"]);
    let p = downstream(&env, "quickstart@prod");
    let down = env.json(&["run", &p]);
    // Same documents, same columns: the same bytes as the upstream version.
    assert_eq!(down["rows_written"], up["rows_written"]);
    assert_eq!(down["digest"], up["digest"]);
    let lineage = env.ok(&["catalog", "lineage", "down@1"]);
    assert!(lineage.contains("upstream dataset versions: quickstart@1"), "{lineage}");
    let m = env.json(&["catalog", "show", "down@1"]);
    let inputs = m["lineage"]["inputs"].as_array().unwrap();
    let upstream_shards = env.json(&["catalog", "show", "quickstart@1"])["shards"].as_array().unwrap().len();
    assert_eq!(inputs.len(), upstream_shards, "one split per upstream shard");
    assert!(inputs.iter().all(|i| i["id"].as_str().unwrap().starts_with("quickstart@1#")), "{inputs:?}");

    // A run planned on quickstart@prod = 1 stays on 1: its other rank, started after the tag
    // moved to 2, reads the shards its plan pinned, and the commit records quickstart@1.
    env.ok(&["run", &p, "--run-id", "pinned", "--rank", "0", "--world-size", "2"]);
    env.json(&["run", &quickstart]);
    env.ok(&["catalog", "tag", "quickstart@2", "prod"]);
    env.ok(&["run", &p, "--run-id", "pinned", "--rank", "1", "--world-size", "2"]);
    let pinned = env.json(&["commit", "pinned"]);
    assert_eq!(pinned["version"], 2);
    assert_eq!(pinned["digest"], up["digest"]);
    assert!(env.ok(&["catalog", "lineage", "down@2"]).contains("upstream dataset versions: quickstart@1"));

    // A new run reads where the tag points now; the diff names the upstream change.
    assert_eq!(env.json(&["run", &p])["version"], 3);
    let diff = env.ok(&["catalog", "diff", "down@1", "down@3"]);
    assert!(diff.contains("upstream   quickstart@1 -> quickstart@2"), "{diff}");
    let j = env.json(&["catalog", "diff", "down@1", "down@3"]);
    assert_eq!(j["lineage"]["upstream"], serde_json::json!([["quickstart@1"], ["quickstart@2"]]));
}

#[test]
fn unknown_versions_and_changed_shards_are_refused() {
    let env = Env::new();
    env.json(&["run", &example("quickstart.yaml").display().to_string()]);
    for (from, says) in [
        ("quickstart@nope", "quickstart has no tag `nope`"),
        ("quickstart@9", "quickstart has no version 9"),
        ("elsewhere", "no committed dataset at"),
    ] {
        let out = env.smelt(&["run", &downstream(&env, from)]);
        assert!(!out.status.success(), "{from}");
        assert!(common::stderr(&out).contains(says), "{from}: {}", common::stderr(&out));
    }
    let bad = env.smelt(&["validate", &downstream(&env, "quick start@@1")]);
    assert!(!bad.status.success());

    // A shard changed after the commit fails its checksum.
    let m = env.json(&["catalog", "show", "quickstart@1"]);
    let shard = env.data().join("datasets/quickstart").join(m["shards"][0]["path"].as_str().unwrap());
    let mut bytes = std::fs::read(&shard).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&shard, bytes).unwrap();
    let out = env.smelt(&["run", &downstream(&env, "quickstart@1")]);
    assert!(!out.status.success());
    assert!(common::stderr(&out).contains("differs from the manifest's"), "{}", common::stderr(&out));
}

/// A pipeline over `docs.jsonl` that publishes as `prod` when few documents go.
fn publishing(env: &Env, docs: usize, require: &str) -> String {
    let mut lines = String::new();
    for i in 0..docs {
        lines.push_str(&format!("{{\"id\": \"d{i}\", \"text\": \"document number {i} of the corpus\"}}\n"));
    }
    env.write("docs.jsonl", lines.as_bytes());
    let text = format!(
        "dataset: pub\npublish:\n  tag: prod\n  require: [{require}]\nstages:\n  docs: {{type: jsonl, paths: [docs.jsonl]}}\n  hashed: {{type: content_hash, inputs: [docs]}}\n  out: {{type: parquet, inputs: [hashed]}}\n"
    );
    env.write("pub.yaml", text.as_bytes()).display().to_string()
}

#[test]
fn publish_moves_the_tag_only_when_the_checks_hold() {
    let env = Env::new();
    // The first version has nothing to compare with: published.
    let p = publishing(&env, 10, "\"diff: docs_removed<50%\"");
    let first = env.json(&["run", &p]);
    assert_eq!(first["published"]["published"], true, "{first}");
    assert_eq!(env.json(&["catalog", "show", "pub@prod"])["version"], 1);
    // A kill between the commit and the publish record: committing the run again publishes, once.
    let record = env.data().join("datasets/pub/_publish/000001.json");
    std::fs::remove_file(&record).unwrap();
    let run_id = first["run_id"].as_str().unwrap();
    let again = env.json(&["commit", run_id, "--pipeline", &p]);
    assert_eq!(again["published"]["published"], true, "{again}");
    assert!(record.exists());
    assert!(env.json(&["commit", run_id, "--pipeline", &p])["published"].is_null());

    // 8 of 10 documents gone: the version commits, the tag stays, the failed check is recorded.
    let p = publishing(&env, 2, "\"diff: docs_removed<50%\"");
    let second = env.json(&["run", &p]);
    assert_eq!(second["version"], 2);
    assert_eq!(second["published"]["published"], false, "{second}");
    assert_eq!(second["published"]["against"], 1);
    let detail = second["published"]["checks"][0]["detail"].as_str().unwrap();
    assert!(detail.starts_with("docs_removed = 80.000 against pub@1"), "{detail}");
    let text = env.ok(&["run", &publishing(&env, 2, "\"diff: docs_removed<50%\"")]);
    assert!(text.contains("not published: pub@prod keeps pointing at pub@1"), "{text}");
    assert_eq!(env.json(&["catalog", "show", "pub@prod"])["version"], 1);
    let log = env.ok(&["catalog", "log", "pub"]);
    assert!(log.contains("held: diff: docs_removed<50"), "{log}");
    let show = env.ok(&["catalog", "show", "pub@2"]);
    assert!(show.contains("not published as prod") && show.contains("FAILED diff: docs_removed<50"), "{show}");

    // By hand: the same checks fail again (exit 4); forced with a reason, the tag moves.
    let out = env.smelt(&["catalog", "publish", "pub@2"]);
    assert_eq!(out.status.code(), Some(4), "{}", common::stderr(&out));
    let out = env.smelt(&["catalog", "publish", "pub@2", "--force"]);
    assert_eq!(out.status.code(), Some(2), "--force needs --reason");
    let forced = env.json(&["catalog", "publish", "pub@2", "--force", "--reason", "the corpus was cut on purpose"]);
    assert_eq!((forced["published"].as_bool(), forced["forced"].as_bool()), (Some(true), Some(true)), "{forced}");
    assert_eq!(forced["by"], "catalog publish");
    assert_eq!(env.json(&["catalog", "show", "pub@prod"])["version"], 2);
    assert!(env.ok(&["catalog", "log", "pub"]).contains("prod (forced)"));
    let log = env.json(&["catalog", "log", "pub"]);
    assert_eq!(log[1]["publish"]["reason"], "the corpus was cut on purpose", "{log}");

    // `audit` needs an audit stage; other checks are named in the error.
    let p = publishing(&env, 2, "audit");
    let r = env.json(&["run", &p]);
    assert_eq!(r["published"]["checks"][0]["held"], false);
    assert!(r["published"]["checks"][0]["detail"].as_str().unwrap().contains("add an `audit` stage"), "{r}");
    let bad = publishing(&env, 2, "\"diff: doc_removed<5%\", tests");
    let out = env.smelt(&["validate", &bad]);
    let err = common::stderr(&out);
    assert!(err.contains("pub.yaml:4:13") && err.contains("not a metric of `catalog diff`"), "{err}");
    assert!(err.contains("`tests` is not a check"), "{err}");
}

#[test]
fn columns_carry_what_upstream_stages_added_and_annotations_select_downstream() {
    // Annotate upstream (nothing dropped), select downstream with the annotations carried over.
    let env = Env::new();
    let docs = std::fs::read_to_string(common::repo().join("stages/tests/fixtures/filters/dolma_cc_en.jsonl")).unwrap();
    env.write("in/docs.jsonl", docs.as_bytes());
    let up = env
        .write(
            "up.yaml",
            b"dataset: scored
stages:
  docs: {type: jsonl, paths: [in/docs.jsonl]}
  quality: {type: gopher_quality, inputs: [docs], mode: annotate}
  sized: {type: sql, inputs: [quality], columns: {n_chars: 'character_length(text)'}}
  hashed: {type: content_hash, inputs: [sized]}
  out: {type: parquet, inputs: [hashed]}
",
        )
        .display()
        .to_string();
    assert_eq!(env.json(&["run", &up])["rows_written"], 20);
    let keep = env.json(&["sql", "SELECT count(*) AS n FROM \"scored@1\" WHERE cardinality(would_drop) = 0"]);
    let keep = keep[0]["n"].as_u64().unwrap();
    assert!(keep > 0 && keep < 20, "{keep}");
    let down = |columns: &str| {
        let text = format!(
            "dataset: kept
stages:
  raw: {{type: dataset, from: scored@latest, columns: {columns}}}
  keep: {{type: sql, inputs: [raw], where: \"cardinality(would_drop) = 0 AND signals['gopher_word_count'] >= 50 AND n_chars > 0\"}}
  hashed: {{type: content_hash, inputs: [keep]}}
  out: {{type: parquet, inputs: [hashed]}}
"
        );
        env.write("down.yaml", text.as_bytes()).display().to_string()
    };
    let p = down("[signals, would_drop, n_chars, text]");
    let run = env.json(&["run", &p]);
    assert_eq!(run["rows_written"].as_u64().unwrap(), keep, "{run}");
    // The carried columns are in the new version, with their types.
    let m = env.json(&["catalog", "show", "kept@1"]);
    let schema: Vec<(String, String)> = m["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap().to_string(), f["data_type"].as_str().unwrap().to_string()))
        .collect();
    assert!(schema.iter().any(|(n, t)| n == "n_chars" && t == "Int64"), "{schema:?}");
    assert!(schema.iter().any(|(n, t)| n == "would_drop" && t.starts_with("List")), "{schema:?}");
    assert!(schema.iter().any(|(n, t)| n == "signals" && t.starts_with("Struct")), "{schema:?}");
    // Without the columns the expression cannot plan; a misspelt column is named with the closest.
    let out = env.smelt(&["validate", &down("[signal, would_drop, n_chars]")]);
    assert_eq!(out.status.code(), Some(2));
    let err = common::stderr(&out);
    assert!(err.contains("scored@1 has no column `signal`") && err.contains("did you mean `signals`?"), "{err}");
    assert!(err.contains("columns[0]") || err.contains("down.yaml:3:"), "{err}");
    // A version without a listed column is refused when the pipeline is compiled.
    env.write("in/docs.jsonl", docs.lines().take(3).collect::<Vec<_>>().join("\n").as_bytes());
    let plain = env
        .write(
            "plain.yaml",
            b"dataset: scored\nstages:\n  docs: {type: jsonl, paths: [in/docs.jsonl]}\n  hashed: {type: content_hash, inputs: [docs]}\n  out: {type: parquet, inputs: [hashed]}\n",
        )
        .display()
        .to_string();
    env.json(&["run", &plain]);
    let text = std::fs::read_to_string(down("[signals, would_drop, n_chars, text]"))
        .unwrap()
        .replace("scored@latest", "scored@2")
        .replace(
            "where: \"cardinality(would_drop) = 0 AND signals['gopher_word_count'] >= 50 AND n_chars > 0\"",
            "where: \"true\"",
        );
    let pinned = env.write("pinned.yaml", text.as_bytes());
    let out = env.smelt(&["validate", pinned.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(common::stderr(&out).contains("scored@2 has no column `signals`"), "{}", common::stderr(&out));
}

/// A dataset `name` of `n` generated documents (ids `{prefix}-00000`...) in 4 files.
fn generated(env: &Env, name: &str, prefix: &str, n: usize) {
    let text = String::from_utf8(common::noisy_jsonl(n, 200)).unwrap().replace("\"doc-", &format!("\"{prefix}-"));
    let lines: Vec<&str> = text.lines().collect();
    for (k, chunk) in lines.chunks(n.div_ceil(4)).enumerate() {
        env.write(&format!("{name}/part-{k}.jsonl"), (chunk.join("\n") + "\n").as_bytes());
    }
    let yaml = format!(
        "dataset: {name}\nstages:\n  docs: {{type: jsonl, paths: [\"{name}/*.jsonl\"]}}\n  hashed: {{type: content_hash, inputs: [docs]}}\n  out: {{type: parquet, inputs: [hashed], merge_small_shards: false}}\n"
    );
    // Four shards (not merged into one), so the mix reads each version as several splits.
    let p = env.write(&format!("{name}.yaml"), yaml.as_bytes());
    env.ok(&["run", &p.display().to_string()]);
}

fn mix(env: &Env, file: &str, body: &str) -> String {
    let yaml = format!(
        "dataset: mixed\nstages:\n  mix:\n    type: mix\n{body}  hashed: {{type: content_hash, inputs: [mix]}}\n  out: {{type: parquet, inputs: [hashed]}}\n"
    );
    env.write(file, yaml.as_bytes()).display().to_string()
}

fn count(env: &Env, version: &str, where_: &str) -> u64 {
    let q = format!("SELECT count(*) AS n, count(DISTINCT id) AS d FROM \"{version}\" WHERE {where_}");
    let r = env.json(&["sql", &q]);
    let (n, d) = (r[0]["n"].as_u64().unwrap(), r[0]["d"].as_u64().unwrap());
    assert_eq!(n, d, "{version} {where_}: every copy has its own id");
    n
}

#[test]
fn mix_samples_versions_by_weight_repeats_small_ones_and_is_deterministic() {
    let env = Env::new();
    generated(&env, "big", "a", 2000);
    generated(&env, "small", "b", 500);
    // 1,000 documents, 3:1 -> 750 of big (f = 0.375) and 250 of small (f = 0.5), each within sampling noise.
    let p = mix(
        &env,
        "mix1.yaml",
        "    sources:\n      - {from: big@latest, weight: 3}\n      - {from: small@1, weight: 1}\n    documents: 1000\n",
    );
    let one = env.json(&["run", &p, "--parallelism", "1"]);
    let (a, b) = (count(&env, "mixed@1", "id LIKE 'a-%'"), count(&env, "mixed@1", "id LIKE 'b-%'"));
    assert!((690..=810).contains(&a), "big: {a}");
    assert!((215..=285).contains(&b), "small: {b}");
    // The same sample whatever the parallelism (and split order).
    let two = env.json(&["run", &p, "--parallelism", "3"]);
    assert_eq!(one["digest"], two["digest"]);
    // The lineage names both pinned versions, and each split's factor and rows.
    let m = env.json(&["catalog", "show", "mixed@1"]);
    let states = m["lineage"]["source_state"].as_array().unwrap();
    assert_eq!(states.len(), 8, "4 shards of each");
    let out: u64 = states
        .iter()
        .filter(|s| s["state"]["from"] == "small@1")
        .map(|s| s["state"]["rows_out"].as_u64().unwrap())
        .sum();
    assert_eq!(out, b);
    assert!(states.iter().any(|s| s["state"]["from"] == "big@1" && s["state"]["factor"] == 0.375), "{states:?}");

    // `smelt ui` shows the realised mixture: both versions with their factors and what was kept.
    let site = env.path().join("site");
    env.ok(&["ui", "--export", site.to_str().unwrap()]);
    let page = std::fs::read_to_string(site.join("d/mixed/v1.html")).unwrap();
    assert!(page.contains("id=\"mix-sources\"") && page.contains(">0.3750<"), "{page}");
    assert!(page.contains(&format!("<td class=\"n\">{b}</td>")), "small's kept rows: {page}");

    // Too small for its share: small would need 3 epochs, max_epochs allows 2 -> every document twice, ids `~2`.
    let p = mix(
        &env,
        "mix2.yaml",
        "    sources:\n      - {from: big, weight: 1}\n      - {from: small, weight: 1, max_epochs: 2}\n    documents: 3000\n    seed: 5\n",
    );
    env.ok(&["run", &p]);
    assert_eq!(count(&env, "mixed@3", "id LIKE 'b-%'"), 1000);
    assert_eq!(count(&env, "mixed@3", "id LIKE 'b-%~2'"), 500);
    let a = count(&env, "mixed@3", "id LIKE 'a-%'");
    assert!((1420..=1580).contains(&a), "big at f = 0.75: {a}");

    // Bad mixtures are refused before anything runs.
    for (body, msg) in [
        ("    sources:\n      - {from: big, weight: 1}\n    documents: 10\n    tokens: 10\n", "one of them"),
        ("    sources:\n      - {from: big, weight: 0}\n    documents: 10\n", "`weight` must be a positive number"),
        ("    sources: []\n    documents: 10\n", "lists no version"),
        ("    sources:\n      - {from: \"big@\", weight: 1}\n    documents: 10\n", "sources[0].from"),
    ] {
        let p = mix(&env, "bad.yaml", body);
        let out = env.smelt(&["validate", &p]);
        assert_eq!(out.status.code(), Some(2), "{body}");
        let err = common::stderr(&out);
        assert!(err.contains(msg), "{body}: {err}");
    }
    // A token budget needs token counts; these versions were not tokenized.
    let p = mix(&env, "tokens.yaml", "    sources:\n      - {from: big, weight: 1}\n    tokens: 1000\n");
    let out = env.smelt(&["run", &p]);
    assert!(!out.status.success());
    assert!(common::stderr(&out).contains("not tokenized"), "{}", common::stderr(&out));
}

#[test]
fn where_reads_only_the_rows_it_selects_and_errors_point_into_it() {
    let env = Env::new();
    env.json(&["run", &example("quickstart.yaml").display().to_string()]);
    let expected = env.ok(&[
        "sql",
        "SELECT id FROM \"quickstart@1\" WHERE length(text) > 2000 AND url NOT LIKE '%wikipedia%' ORDER BY id",
        "--format",
        "csv",
    ]);
    let kept = expected.lines().count() - 1;
    assert!(kept > 0 && kept < 19, "the predicate splits the sample: {expected}");
    let p = env.write(
        "filtered.yaml",
        b"dataset: long\nstages:\n  raw:\n    type: dataset\n    from: quickstart@1\n    where: \"length(text) > 2000 AND url NOT LIKE '%wikipedia%'\"\n  hashed: {type: content_hash, inputs: [raw]}\n  out: {type: parquet, inputs: [hashed]}\n",
    );
    let run = env.json(&["run", &p.display().to_string()]);
    assert_eq!(run["rows_written"].as_u64(), Some(kept as u64), "{run}");
    let source = &run["stages"][0];
    assert_eq!(source["skips"]["where"].as_u64(), Some(19 - kept as u64), "{source}");
    let got = env.ok(&["sql", "SELECT id FROM \"long@1\" ORDER BY id", "--format", "csv"]);
    assert_eq!(got, expected);

    // A column the source does not read, a misspelt one and a non-boolean expression: each at
    // `where`'s line in the file, with what to change.
    for (predicate, says) in [
        ("lang = 'en'", "goes under `columns` first"),
        ("lenght(text) > 3", "lenght"),
        ("length(txt) > 3", "did you mean `text`?"),
        ("length(text)", "must be true or false for each row"),
    ] {
        let yaml = format!(
            "dataset: bad\nstages:\n  raw:\n    type: dataset\n    from: quickstart@1\n    where: \"{predicate}\"\n  out: {{type: parquet, inputs: [raw]}}\n"
        );
        let f = env.write("bad.yaml", yaml.as_bytes());
        let out = env.smelt(&["validate", &f.display().to_string()]);
        let err = common::stderr(&out);
        assert!(!out.status.success(), "{predicate}");
        assert!(err.contains("bad.yaml:6:") && err.contains(says), "{predicate}: {err}");
    }
}

/// Upstream `raw` from `raw/part-K.jsonl` (50 documents each, ids ordered by file).
fn raw_parts(env: &Env, parts: &[usize]) {
    let text = String::from_utf8(common::noisy_jsonl(300, 120)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let _ = std::fs::remove_dir_all(env.path().join("raw"));
    for &k in parts {
        env.write(&format!("raw/part-{k}.jsonl"), (lines[k * 50..(k + 1) * 50].join("\n") + "\n").as_bytes());
    }
    let p = env.write(
        "raw.yaml",
        b"dataset: raw\nstages:\n  docs: {type: jsonl, paths: [\"raw/*.jsonl\"]}\n  hashed: {type: content_hash, inputs: [docs]}\n  out: {type: parquet, inputs: [hashed]}\n",
    );
    env.json(&["run", &p.display().to_string()]);
}

/// A downstream of `raw` named `dataset`, read with `read` (`incremental: true`, or `columns: [content_hash]`).
fn cleaned(env: &Env, dataset: &str, read: &str) -> String {
    let yaml = format!(
        "dataset: {dataset}\nstages:\n  raw: {{type: dataset, from: raw@latest, {read}, where: \"id NOT LIKE '%7'\"}}\n  \
         clean: {{type: pii, inputs: [raw]}}\n  out: {{type: parquet, inputs: [clean], merge_small_shards: false}}\n"
    );
    env.write(&format!("{dataset}.yaml"), yaml.as_bytes()).display().to_string()
}

fn shard_paths(env: &Env, version: &str) -> Vec<String> {
    let m = env.json(&["catalog", "show", version]);
    m["shards"].as_array().unwrap().iter().map(|s| s["path"].as_str().unwrap().to_string()).collect()
}

#[test]
fn incremental_runs_append_what_is_new_and_equal_a_build_from_scratch() {
    let env = Env::new();
    raw_parts(&env, &[0, 1, 2, 3]);
    let down = cleaned(&env, "down", "incremental: true");
    let first = env.json(&["run", &down]);
    assert_eq!(first["rows_written"], 180, "the first run reads everything: {first}");
    assert!(!env.ok(&["catalog", "lineage", "down@1"]).contains("incrementally"));

    // 50 new upstream documents: the run reads them only and keeps down@1's shards as they are.
    raw_parts(&env, &[0, 1, 2, 3, 4]);
    let second = env.json(&["run", &down]);
    assert_eq!(second["rows_written"], 45, "{second}");
    assert_eq!(second["stages"][0]["skips"]["where"], 5, "{second}");
    let v2 = env.json(&["catalog", "show", "down@2"]);
    assert_eq!(v2["totals"]["rows"], 225);
    let (one, two) = (shard_paths(&env, "down@1"), shard_paths(&env, "down@2"));
    assert_eq!(two[..one.len()], one[..], "the base's shards are referenced, not copied");
    let lineage = env.ok(&["catalog", "lineage", "down@2"]);
    assert!(
        lineage.contains("raw@2 read incrementally by `raw`: 50 documents added or changed since raw@1, 0 removed; appended to down@1"),
        "{lineage}"
    );
    let site = env.path().join("site");
    env.ok(&["ui", "--export", site.to_str().unwrap()]);
    let page = std::fs::read_to_string(site.join("d/down/v2.html")).unwrap();
    assert!(page.contains("Incremental: 50 documents new or changed in"), "the version page says what was appended");

    // 50 documents gone upstream and 50 new: their rows leave the base's shards.
    raw_parts(&env, &[0, 2, 3, 4, 5]);
    env.json(&["run", &down]);
    let v3 = env.json(&["catalog", "show", "down@3"]);
    assert_eq!(v3["totals"]["rows"], 225);
    assert_eq!(v3["lineage"]["upstream"][0]["since"]["removed"], 50, "{}", v3["lineage"]);
    let three = shard_paths(&env, "down@3");
    assert!(three.iter().any(|p| p.contains("/kept-")), "the shard that held them was rewritten: {three:?}");
    assert_eq!(count(&env, "down@3", "id >= 'doc-00050' AND id < 'doc-00100'"), 0);

    // Nothing new: a version with the same rows.
    let again = env.json(&["run", &down]);
    assert_eq!((again["rows_written"].as_u64(), again["version"].as_u64()), (Some(0), Some(4)), "{again}");
    assert_eq!(again["digest"], v3["digest"]);

    // A chain of three incremental versions has the digest of one build from scratch.
    let scratch = env.json(&["run", &cleaned(&env, "scratch", "columns: [content_hash]")]);
    assert_eq!(scratch["digest"], v3["digest"]);
    assert_eq!(env.json(&["catalog", "show", "scratch@1"])["stats"], v3["stats"]);
    assert!(env.ok(&["catalog", "diff", "down@3", "scratch@1"]).contains("identical data: same digest"));
    // The merged document index holds exactly the rows: the document diff sees nothing changed.
    let diff = env.json(&["catalog", "diff", "down@3", "scratch@1"]);
    assert_eq!(diff["documents"]["unchanged"], 225, "{}", diff["documents"]);

    // gc expires the bases; the shards the latest version shares stay readable.
    env.ok(&["catalog", "gc", "--keep-last", "1", "--grace-hours", "0"]);
    assert_eq!(count(&env, "down@4", "true"), 225);

    // Stages that compare documents across the input, and other sources, are refused.
    for (extra, last, says) in [
        (
            "  dd: {type: dedup_exact, inputs: [raw]}\n",
            "dd",
            "`dd` (dedup_exact) compares documents across the whole input",
        ),
        (
            "  other: {type: dataset, from: raw@latest, columns: [content_hash]}\n",
            "raw, other",
            "`other` is another source",
        ),
    ] {
        let yaml = format!(
            "dataset: bad\nstages:\n  raw: {{type: dataset, from: raw@latest, incremental: true}}\n{extra}  out: {{type: parquet, inputs: [{last}]}}\n"
        );
        let f = env.write("bad.yaml", yaml.as_bytes());
        let out = env.smelt(&["validate", &f.display().to_string()]);
        let err = common::stderr(&out);
        assert!(!out.status.success() && err.contains(says) && err.contains("bad.yaml:3:"), "{err}");
    }
}

#[test]
fn gc_keeps_the_base_of_an_incremental_run_in_progress() {
    let env = Env::new();
    raw_parts(&env, &[0, 1, 2, 3]);
    let down = cleaned(&env, "down", "incremental: true");
    env.json(&["run", &down]);
    raw_parts(&env, &[0, 1, 2, 3, 4]);
    // An incremental run on down@1 is half done (one of two ranks) when another pipeline commits
    // down@2 and gc keeps only the latest version.
    env.ok(&["run", &down, "--run-id", "inc", "--rank", "1", "--world-size", "2"]);
    let other = env.write(
        "other.yaml",
        b"dataset: down\nstages:\n  raw: {type: dataset, from: raw@1, columns: [content_hash]}\n  out: {type: parquet, inputs: [raw]}\n",
    );
    assert_eq!(env.json(&["run", &other.display().to_string()])["version"], 2);
    let gc = env.ok(&["catalog", "gc", "--keep-last", "1", "--dataset", "down"]);
    assert!(gc.contains("expired 0 versions"), "down@1 is the base of run inc: {gc}");
    env.ok(&["run", &down, "--run-id", "inc", "--rank", "0", "--world-size", "2"]);
    let done = env.json(&["commit", "inc"]);
    assert_eq!(done["version"], 3);
    // Once it committed, the base expires; the shards down@3 shares with it stay.
    let gc = env.ok(&["catalog", "gc", "--keep-last", "1", "--dataset", "down"]);
    assert!(gc.contains("expired 2 versions"), "{gc}");
    assert_eq!(count(&env, "down@3", "true"), 225);
}

#[test]
fn mix_upsamples_by_cluster_size_fineweb2_style() {
    let env = Env::new();
    // 400 documents whose cluster sizes cycle 1, 2, 3, ..., 8 (ids doc-00000...).
    std::fs::write(env.path().join("docs.jsonl"), common::noisy_jsonl(400, 60)).unwrap();
    let up = env.write(
        "clustered.yaml",
        b"dataset: clustered\nstages:\n  docs: {type: jsonl, paths: [docs.jsonl]}\n  sized:\n    type: sql\n    inputs: [docs]\n    columns:\n      cluster_size: \"CAST(CAST(substr(id, 5) AS BIGINT) % 8 + 1 AS BIGINT)\"\n  hashed: {type: content_hash, inputs: [sized]}\n  out: {type: parquet, inputs: [hashed]}\n",
    );
    env.ok(&["run", &up.display().to_string()]);
    let body = "    sources:\n      - {from: clustered@1, weight: 1, max_epochs: 10}\n    documents: 800\n    upsample: {column: cluster_size, rule: fineweb2}\n";
    let p = mix(&env, "up.yaml", body);
    let run = env.json(&["run", &p]);
    // FineWeb-2 weights of sizes 1..8: 1, 2, 3, 3, 5, 5, 5, 5 (mean 3.625); 400 documents weigh 1,450,
    // so the budget of 800 scales every weight by 800/1450: a size-5 document is kept about 2.76 times,
    // a singleton 0.55 times.
    let rows = run["rows_written"].as_u64().unwrap();
    assert!((720..=880).contains(&rows), "about the budget: {rows}");
    let by_size = |size: u64| count(&env, "mixed@1", &format!("cluster_size = {size}"));
    let (one, five) = (by_size(1) as f64, by_size(5) as f64);
    assert!((five / one - 5.0).abs() < 1.5, "size 5 kept about 5x as often as size 1: {five} vs {one}");
    assert_eq!(env.json(&["run", &p])["digest"], run["digest"], "deterministic");

    for (upsample, says) in [
        ("{column: cluster_size, rule: fineweb3}", "unknown rule `fineweb3`"),
        ("{column: cluster_size, steps: [[2, 1]]}", "ascending from 1"),
        ("{column: cluster_size}", "needs `rule: fineweb2` or `steps`"),
    ] {
        let body = format!(
            "    sources:\n      - {{from: clustered@1, weight: 1}}\n    documents: 10\n    upsample: {upsample}\n"
        );
        let f = mix(&env, "bad.yaml", &body);
        let out = env.smelt(&["validate", &f]);
        assert!(!out.status.success() && common::stderr(&out).contains(says), "{}", common::stderr(&out));
    }
}
