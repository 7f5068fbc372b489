//! Golden pipelines, run in process through the runner: each example in
//! `tests/pipelines/golden.tsv` is compiled with the stage registry, run as
//! one process in a fresh data directory and committed; its row count and
//! data digest must equal the recorded ones (recorded with the `smelt`
//! binary before the run lifecycle moved into this crate). Every example
//! pipeline must also compile. Examples whose line in golden.tsv ends with
//! `python` run Python workers: they need an interpreter with pyarrow (and
//! datatrove for `datatrove.yaml`), so their test is `#[ignore]`d and
//! `.ci/run`, which installs one and sets SMELT_PYTHON, runs it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use smelt_runner::{RunRequest, Workspace};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// `(example file, rows, digest, needs python)` from tests/pipelines/golden.tsv.
fn golden() -> Vec<(String, u64, String, bool)> {
    let text = std::fs::read_to_string(repo().join("tests/pipelines/golden.tsv")).expect("golden.tsv");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert!(
                f.len() == 3 || f.len() == 4 && f[3] == "python",
                "golden.tsv line `{l}`: example, rows, digest[, python]"
            );
            (f[0].to_string(), f[1].parse().expect("rows"), f[2].to_string(), f.len() == 4)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_pipelines_commit_their_recorded_digests() {
    let cases: Vec<_> = golden().into_iter().filter(|c| !c.3).collect();
    assert!(cases.len() >= 3, "golden.tsv lists the examples");
    run_golden(cases).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Python 3 with pyarrow and datatrove: SMELT_PYTHON=<venv>/bin/python (.ci/run installs them)"]
async fn golden_python_pipelines_commit_their_recorded_digests() {
    let cases: Vec<_> = golden().into_iter().filter(|c| c.3).collect();
    assert!(cases.len() >= 2, "golden.tsv lists the Python examples");
    run_golden(cases).await;
}

async fn run_golden(cases: Vec<(String, u64, String, bool)>) {
    // Documents' `origin` holds input paths as the pipeline names them, so the
    // digests are those of `smelt run examples/<file>` from the repository root.
    std::env::set_current_dir(repo()).unwrap();
    for (example, rows, digest, _) in cases {
        let data = tempfile::tempdir().unwrap();
        let ws = Workspace::new(data.path());
        let pipeline = Path::new("examples").join(&example);
        let p = smelt_runner::load_for_run(&ws, &pipeline, true).unwrap_or_else(|e| panic!("{example}: {e}"));
        let request = RunRequest { pipeline: pipeline.clone(), parallelism: Some(2), ..RunRequest::default() };
        let run = smelt_runner::start(&ws, &p, &request, Arc::default()).await.unwrap();
        let mut outcome = run.execute(&p, std::future::pending()).await.unwrap_or_else(|e| panic!("{example}: {e}"));
        run.commit(&ws, &p, &mut outcome).await.unwrap();
        let m = &outcome.committed.as_ref().expect("a single process commits").manifest;
        assert_eq!((m.version, m.totals.rows, m.digest.as_str()), (1, rows, digest.as_str()), "{example}");
        // The scratch directory is gone once committed; the run's pointer stays.
        assert!(!ws.scratch_dir(&p.dataset, &outcome.run_id).exists());
        assert_eq!(ws.read_pointer(&outcome.run_id).unwrap().dataset, p.dataset);
    }
}

#[test]
fn every_example_pipeline_compiles() {
    let ws = Workspace::new(tempfile::tempdir().unwrap().path());
    let mut n = 0;
    for entry in std::fs::read_dir(repo().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        // Configuring back_translate checks that Apertium is installed: tests/back_translate.rs
        // validates and runs that example where it is. Compiling custom.yaml and datatrove.yaml runs
        // their Python interpreter: golden_python_pipelines_commit_their_recorded_digests does.
        if ["back_translate.yaml", "custom.yaml", "datatrove.yaml"].iter().any(|e| path.ends_with(e)) {
            continue;
        }
        if path.extension().is_some_and(|e| e == "yaml") {
            ws.load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 10, "{n} examples");
}

#[test]
fn a_user_error_inside_a_stage_names_the_stage_and_its_position() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "dataset: t\nstages:\n  docs:\n    type: jsonl\n    paths: [\"in/[.jsonl\"]\n  hashed:\n    type: content_hash\n    inputs: [docs]\n  out:\n    type: parquet\n    inputs: [hashed]\n",
    )
    .unwrap();
    let ws = Workspace::new(dir.path().join("data"));
    let p = ws.load(&dir.path().join("p.yaml")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let e = rt.block_on(smelt_engine::list_splits(&p)).unwrap_err().located(&p);
    assert_eq!(e.fault(), smelt_engine::Fault::User, "{e}");
    let text = e.to_string();
    assert!(text.contains("p.yaml:3:3: stage `docs`"), "{text}");
}
