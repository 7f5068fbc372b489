//! `smelt run --executor slurm|k8s` and `smelt runs`, with the real binary.
//!
//! The tests that submit jobs need a running Slurm (`.ci/slurm-up.sh` starts a
//! one-node one): they are `#[ignore]`d, so a plain `cargo test` lists them as
//! ignored with what they need, and `.ci/run` runs them with
//! `--include-ignored`. Dry runs and Kubernetes manifests need no cluster.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{repo, scaled_quickstart, stderr, Env};
use serde_json::Value;

/// For the tests that submit to a real Slurm (marked `#[ignore]`, run by
/// `.ci/run` with `--include-ignored` after `.ci/slurm-up.sh`).
///
/// # Panics
/// Slurm is not running here.
fn require_slurm() {
    let up = Command::new("scontrol")
        .arg("ping")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("is UP"));
    assert!(up, "this test needs a running Slurm (`scontrol ping`): start one with .ci/slurm-up.sh");
}

fn live(state: &str) -> bool {
    matches!(state, "PENDING" | "RUNNING" | "CONFIGURING" | "COMPLETING" | "REQUEUED")
}

/// Polls `smelt runs show` until the run is committed or nothing of it is left in Slurm.
fn settle(env: &Env, run: &str) -> Value {
    let start = Instant::now();
    loop {
        let s = env.json(&["runs", "show", run]);
        let ranks_live = s["ranks"].as_array().unwrap().iter().any(|r| live(r["state"].as_str().unwrap()));
        let commit_live = s["commit_job"]["state"].as_str().is_some_and(live);
        if s["state"] == "committed" || (!ranks_live && !commit_live) {
            return s;
        }
        assert!(start.elapsed() < Duration::from_secs(300), "run {run} did not settle in 300 s: {s:#}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn ranks_of(submitted: &Value) -> Vec<Vec<u64>> {
    submitted["arrays"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["ranks"].as_array().unwrap().iter().map(|r| r.as_u64().unwrap()).collect())
        .collect()
}

fn local_digest(pipeline: &str) -> (Value, Value) {
    let local = Env::new();
    let r = local.json(&["run", pipeline]);
    (r["digest"].clone(), r["rows_written"].clone())
}

fn committed(env: &Env, dataset: &str) -> Value {
    env.json(&["catalog", "show", &format!("{dataset}@1")])
}

/// The samples twice (a- and b- copies, 6 splits): every document has an exact duplicate in another split.
fn dedup_pipeline(env: &Env) -> String {
    for f in std::fs::read_dir(repo().join("examples/data/cc")).unwrap() {
        let f = f.unwrap().path();
        let name = f.file_name().unwrap().to_str().unwrap().to_string();
        if name.ends_with(".warc.gz") && !name.contains(".wet") {
            std::fs::create_dir_all(env.path().join("in")).unwrap();
            std::fs::copy(&f, env.path().join("in").join(format!("a-{name}"))).unwrap();
            std::fs::copy(&f, env.path().join("in").join(format!("b-{name}"))).unwrap();
        }
    }
    let yaml = "dataset: deduped
stages:
  crawl: {type: warc, paths: [in/*.warc.gz]}
  text: {type: html_to_text, inputs: [crawl]}
  hashed: {type: content_hash, inputs: [text]}
  unique: {type: dedup_exact, inputs: [hashed]}
  out: {type: parquet, inputs: [unique]}
";
    env.write("dedup.yaml", yaml.as_bytes()).display().to_string()
}

fn bash_syntax_ok(script: &Path) {
    let out = Command::new("bash").arg("-n").arg(script).output().unwrap();
    assert!(out.status.success(), "{} is not valid bash: {}", script.display(), stderr(&out));
}

#[test]
fn dry_run_prints_one_array_per_phase_split_at_max_array_size_and_a_commit_job() {
    let env = Env::new();
    let p = scaled_quickstart(&env, 2); // 6 splits
    let p = p.to_str().unwrap();
    let out = env.ok(&[
        "run",
        p,
        "--executor",
        "slurm",
        "--ranks",
        "5",
        "--dry-run",
        "--run-id",
        "dry",
        "--max-array-size",
        "3",
        "--array-concurrency",
        "2",
        "--partition",
        "cpu",
        "--cpus-per-rank",
        "2",
        "--mem",
        "4G",
        "--time",
        "01:00:00",
        "--sbatch-line=--qos=low",
        "--sbatch-line",
        "#SBATCH --account=data",
        "--env",
        "SMELT_X=a b",
    ]);
    for want in [
        "#SBATCH --array=0-2%2",
        "#SBATCH --array=0-1%2",
        "RANK=$((SLURM_ARRAY_TASK_ID + 0))",
        "RANK=$((SLURM_ARRAY_TASK_ID + 3))",
        "#SBATCH --partition=cpu",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --mem=4G",
        "#SBATCH --time=01:00:00",
        "#SBATCH --qos=low",
        "#SBATCH --account=data",
        "export SMELT_X='a b'",
        "--rank \"$RANK\" --world-size 5 --run-id dry --no-progress --parallelism 2",
        " commit dry",
        "# sbatch --parsable --dependency=afterok:<phase 0 array job ids> --kill-on-invalid-dep=yes",
        "phase0-part0.sbatch",
        "phase0-part1.sbatch",
        "/logs/phase0-rank\"$RANK\".out",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    // The smelt binary by absolute path, the pipeline and data dir too.
    assert!(out.contains(&format!("exec {}", env!("CARGO_BIN_EXE_smelt"))), "{out}");
    assert!(!env.data().join("slurm").exists(), "a dry run writes nothing");

    // A barrier: two phases, the second after the first.
    let dd = dedup_pipeline(&env);
    let out = env.ok(&["run", &dd, "--executor", "slurm", "--ranks", "4", "--dry-run", "--max-array-size", "100"]);
    assert!(out.contains("# phase 0: ranks 0-3") && out.contains("# phase 1: ranks 0-3"), "{out}");
    assert!(out.contains("phase1.sbatch") && out.contains("--dependency=afterok:<phase 1 array job ids>"), "{out}");
}

#[test]
fn templates_and_option_mistakes_are_reported() {
    let env = Env::new();
    let p = scaled_quickstart(&env, 1);
    let p = p.to_str().unwrap();
    let t = env
        .write("t.sh", b"#!/bin/bash\n{{sbatch_lines}}\nmodule load smelt/{{ run_id }}\n{{setup}}\nsrun {{command}}\n");
    let out = env.ok(&[
        "run",
        p,
        "--executor",
        "slurm",
        "--ranks",
        "2",
        "--dry-run",
        "--max-array-size",
        "10",
        "--run-id",
        "tpl",
        "--slurm-template",
        t.to_str().unwrap(),
    ]);
    assert!(out.contains("module load smelt/tpl") && out.contains("srun exec "), "{out}");

    let bad = env.write("bad.sh", b"{{sbatch_lines}}\n{{queue}}\n{{command}}\n");
    let o = env.smelt(&[
        "run",
        p,
        "--executor",
        "slurm",
        "--ranks",
        "2",
        "--dry-run",
        "--max-array-size",
        "10",
        "--slurm-template",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown template variable `{{queue}}`"), "{}", stderr(&o));

    for (args, msg) in [
        (vec!["--ranks", "4"], "--ranks is for a cluster run: add --executor slurm"),
        (vec!["--executor", "slurm"], "--executor needs --ranks N"),
        (vec!["--executor", "slurm", "--ranks", "0"], "must be at least 1"),
        (
            vec!["--executor", "slurm", "--ranks", "2", "--rank", "0", "--world-size", "2"],
            "--rank/--world-size run one rank by hand",
        ),
        (vec!["--executor", "slurm", "--resume", "nope", "--dry-run"], "no cluster run `nope`"),
        (vec!["--executor", "slurm", "--ranks", "2", "--env", "1BAD=x", "--dry-run"], "is not a variable name"),
    ] {
        let mut a = vec!["run", p];
        a.extend(args);
        let o = env.smelt(&a);
        assert_eq!(o.status.code(), Some(2), "{a:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(msg), "{a:?}: {}", stderr(&o));
    }
}

/// `smelt run PIPELINE --executor k8s` with 3 ranks and the resources both
/// Kubernetes tests ask for, plus `extra`; its stdout.
fn k8s_run(env: &Env, pipeline: &str, run_id: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "run",
        pipeline,
        "--executor",
        "k8s",
        "--ranks",
        "3",
        "--run-id",
        run_id,
        "--pvc",
        "smelt-data",
        "--image",
        "reg/smelt:1",
        "--cpus-per-rank",
        "2",
        "--mem",
        "4G",
        "--time",
        "1:00:00",
        "--env",
        "RUST_LOG=info",
    ];
    args.extend(extra);
    env.ok(&args)
}

/// The Kubernetes manifests against the Kubernetes API's own schema
/// (strict: no unknown field), with PyPI's `kubernetes-validate`
/// (`KUBERNETES_VALIDATE`, else on PATH).
#[test]
#[ignore = "needs kubernetes-validate: pip install kubernetes-validate (.ci/run installs it)"]
fn k8s_manifests_validate_against_the_kubernetes_api_schema() {
    let tool = std::env::var("KUBERNETES_VALIDATE").unwrap_or_else(|_| "kubernetes-validate".into());
    let env = Env::new();
    let dd = dedup_pipeline(&env);
    k8s_run(&env, &dd, "v1", &[]);
    let dir = env.data().join("k8s/v1");
    let files = ["phase0.yaml", "phase1.yaml", "commit.yaml"].map(|f| dir.join(f));
    let out = Command::new(&tool)
        .arg("--strict")
        .args(&files)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool} ({e}): pip install kubernetes-validate"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches("passed for resource job/").count(), 3, "{text}");
}

#[test]
fn k8s_writes_an_indexed_job_per_phase_and_a_commit_job() {
    let env = Env::new();
    let dd = dedup_pipeline(&env);
    let out = k8s_run(&env, &dd, "K8s_1", &["--array-concurrency", "2"]);
    assert!(out.contains("wrote 3 Kubernetes manifests"), "{out}");
    let dir = env.data().join("k8s/K8s_1");
    let data_dir = std::fs::canonicalize(env.data()).unwrap().display().to_string();
    let read = |f: &str| {
        let text = std::fs::read_to_string(dir.join(f)).unwrap();
        smelt_engine::yaml::parse(&text).unwrap_or_else(|e| panic!("{f} is not YAML: {e:?}\n{text}")).to_json()
    };
    for k in 0..2 {
        let job = read(&format!("phase{k}.yaml"));
        assert_eq!(job["apiVersion"], "batch/v1");
        assert_eq!(job["kind"], "Job");
        assert_eq!(job["metadata"]["name"], format!("smelt-k8s-1-phase{k}"));
        let spec = &job["spec"];
        assert_eq!(spec["completionMode"], "Indexed");
        assert_eq!(spec["completions"], 3);
        assert_eq!(spec["parallelism"], 2);
        assert_eq!(spec["activeDeadlineSeconds"], 3600);
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        let c = &pod["containers"][0];
        assert_eq!(c["image"], "reg/smelt:1");
        let cmd = c["command"][2].as_str().unwrap();
        assert!(cmd.contains("--rank \"$JOB_COMPLETION_INDEX\" --world-size 3 --run-id K8s_1"), "{cmd}");
        assert!(cmd.contains(&format!("--data-dir {data_dir} run ")) && cmd.contains("dedup.yaml"), "{cmd}");
        assert_eq!(c["env"][0]["name"], "RUST_LOG");
        assert_eq!(c["resources"]["requests"]["cpu"], "2");
        assert_eq!(c["resources"]["requests"]["memory"], "4Gi");
        assert_eq!(c["volumeMounts"][0]["mountPath"], data_dir.as_str());
        assert_eq!(pod["volumes"][0]["persistentVolumeClaim"]["claimName"], "smelt-data");
    }
    let commit = read("commit.yaml");
    assert_eq!(commit["spec"]["completions"], 1);
    assert!(commit["spec"]["completionMode"].is_null());
    assert!(commit["spec"]["template"]["spec"]["containers"][0]["command"][2]
        .as_str()
        .unwrap()
        .ends_with("commit K8s_1"));
    let apply = std::fs::read_to_string(dir.join("apply.sh")).unwrap();
    let order: Vec<usize> =
        ["phase0.yaml", "job/smelt-k8s-1-phase0", "phase1.yaml", "job/smelt-k8s-1-phase1", "commit.yaml"]
            .iter()
            .map(|s| apply.find(s).unwrap_or_else(|| panic!("{s} not in apply.sh:\n{apply}")))
            .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "apply.sh applies phase by phase:\n{apply}");
    bash_syntax_ok(&dir.join("apply.sh"));

    let list = env.json(&["runs", "list"]);
    assert_eq!(list[0]["run_id"], "K8s_1");
    assert_eq!(list[0]["executor"], "k8s");
    assert_eq!(list[0]["splits_total"], 6);
    // `smelt ui` lists the Kubernetes run and shows its ranks, none started yet.
    let site = env.path().join("site");
    env.ok(&["ui", "--export", site.to_str().unwrap()]);
    let runs = std::fs::read_to_string(site.join("runs/index.html")).unwrap();
    assert!(runs.contains("href=\"runs/K8s_1.html\"") && runs.contains("<td>k8s</td>"), "{runs}");
    let page = std::fs::read_to_string(site.join("runs/K8s_1.html")).unwrap();
    assert!(page.contains("id=\"ranks\""), "{page}");
    assert_eq!(page.matches("<tr><td class=\"n\">").count(), 3, "three ranks: {page}");
}

#[test]
#[ignore = "needs a running Slurm: .ci/slurm-up.sh (.ci/run runs it)"]
fn quickstart_on_four_slurm_ranks_commits_the_local_digest() {
    require_slurm();
    let env = Env::new();
    let p = scaled_quickstart(&env, 2); // 6 splits over 4 ranks
    let p = p.to_str().unwrap();
    let (digest, rows) = local_digest(p);
    let sub = env.json(&["run", p, "--executor", "slurm", "--ranks", "4", "--cpus-per-rank", "1", "--run-id", "q4"]);
    assert_eq!(ranks_of(&sub), vec![vec![0, 1, 2, 3]]);
    assert!(sub["commit_job"].is_string(), "{sub}");
    let s = settle(&env, "q4");
    assert_eq!(s["state"], "committed", "{s:#}");
    assert_eq!(s["splits_done"], 6);
    for r in s["ranks"].as_array().unwrap() {
        assert_eq!(r["state"], "COMPLETED", "{r}");
        assert_eq!(r["splits_done"], r["splits_total"]);
    }
    let m = committed(&env, "quickstart");
    assert_eq!(m["digest"], digest, "4 Slurm ranks differ from one local process");
    assert_eq!(m["totals"]["rows"], rows);

    let dir = env.data().join("slurm/q4");
    for rank in 0..4 {
        assert!(dir.join(format!("logs/phase0-rank{rank}.out")).exists());
    }
    bash_syntax_ok(&dir.join("phase0.sbatch"));
    bash_syntax_ok(&dir.join("commit.sbatch"));
    let log = env.ok(&["runs", "logs", "q4", "--rank", "2"]);
    assert!(log.contains("phase 0 rank 2: job") && log.contains("rank 2 done"), "{log}");
    let commit_log = std::fs::read_to_string(dir.join("logs/commit.out")).unwrap();
    assert!(commit_log.contains("committed quickstart@1"), "{commit_log}");
    let table = env.ok(&["runs", "show", "q4"]);
    assert!(table.contains("committed; 6/6 splits done") && table.contains("committed as quickstart@1"), "{table}");
    let list = env.ok(&["runs", "list"]);
    assert!(list.contains("q4") && list.contains("quickstart@1") && list.contains("6/6"), "{list}");
    // `smelt ui`'s page of the run: every rank's Slurm state and the end of its log.
    let site = env.path().join("site");
    env.ok(&["ui", "--export", site.to_str().unwrap()]);
    let page = std::fs::read_to_string(site.join("runs/q4.html")).unwrap();
    assert!(page.contains("id=\"ranks\"") && page.contains("committed as"), "{page}");
    assert_eq!(page.matches("<td>COMPLETED</td>").count(), 4, "{page}");
    assert!(page.contains("rank 2 done"), "the rank's log: {page}");
}

#[test]
#[ignore = "needs a running Slurm: .ci/slurm-up.sh (.ci/run runs it)"]
fn a_failing_rank_cancels_the_commit_job_and_resume_reruns_only_that_rank() {
    require_slurm();
    let env = Env::new();
    let p = scaled_quickstart(&env, 2);
    let p = p.to_str().unwrap();
    let (digest, _) = local_digest(p);
    // Split 2 (rank 2 of 4) cannot write its shard: a directory stands where the file goes.
    let blocker = env.data().join("datasets/quickstart/runs/fail/shards/part-00002-0000.parquet");
    std::fs::create_dir_all(&blocker).unwrap();
    std::fs::write(blocker.join("in-the-way"), b"x").unwrap();
    env.json(&["run", p, "--executor", "slurm", "--ranks", "4", "--cpus-per-rank", "1", "--run-id", "fail"]);
    let s = settle(&env, "fail");
    assert_eq!(s["state"], "failed", "{s:#}");
    let r2 = &s["ranks"][2];
    assert_eq!(r2["state"], "FAILED", "{s:#}");
    assert_eq!(r2["exit_code"], "1:0");
    for r in [0, 1, 3] {
        assert_eq!(s["ranks"][r]["state"], "COMPLETED", "{s:#}");
    }
    assert_eq!(s["commit_job"]["state"], "CANCELLED", "afterok + kill-on-invalid-dep: {s:#}");
    assert_eq!(s["commit_job"]["reason"], "DependencyNeverSatisfied");
    assert!(!env.smelt(&["catalog", "log", "quickstart"]).status.success(), "no version after a failed rank");
    let log = env.ok(&["runs", "logs", "fail", "--rank", "2"]);
    assert!(log.contains("error:") && log.contains("part-00002-0000.parquet"), "{log}");
    let table = env.ok(&["runs", "show", "fail"]);
    assert!(table.contains("FAILED") && table.contains("--resume fail"), "{table}");

    std::fs::remove_dir_all(&blocker).unwrap();
    let again = env.json(&["run", p, "--executor", "slurm", "--resume", "fail"]);
    assert_eq!(ranks_of(&again), vec![vec![2]], "only the failed rank is resubmitted");
    assert!(env.data().join("slurm/fail/resume1-phase0.sbatch").exists());
    let s = settle(&env, "fail");
    assert_eq!(s["state"], "committed", "{s:#}");
    assert_eq!(s["ranks"][2]["state"], "COMPLETED");
    assert_eq!(committed(&env, "quickstart")["digest"], digest);
    let log = env.ok(&["runs", "logs", "fail", "--rank", "2"]);
    assert_eq!(log.matches("phase 0 rank 2: job").count(), 2, "both attempts in one log:\n{log}");
    let out = env.ok(&["run", p, "--executor", "slurm", "--resume", "fail"]);
    assert!(out.contains("committed already as quickstart@1"), "{out}");
}

#[test]
#[ignore = "needs a running Slurm: .ci/slurm-up.sh (.ci/run runs it)"]
fn a_cancelled_array_resumes_without_loss_or_duplicates() {
    require_slurm();
    let env = Env::new();
    let p = scaled_quickstart(&env, 2);
    let p = p.to_str().unwrap();
    let (digest, rows) = local_digest(p);
    // One rank at a time; scancel the array once rank 0 has started (it may be running or done).
    let sub = env.json(&[
        "run",
        p,
        "--executor",
        "slurm",
        "--ranks",
        "4",
        "--cpus-per-rank",
        "1",
        "--array-concurrency",
        "1",
        "--run-id",
        "kill",
    ]);
    let job = sub["arrays"][0]["job_id"].as_str().unwrap().to_string();
    let log0 = env.data().join("slurm/kill/logs/phase0-rank0.out");
    let start = Instant::now();
    while !log0.exists() {
        assert!(start.elapsed() < Duration::from_secs(120), "rank 0 never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(Command::new("scancel").arg(&job).status().unwrap().success());
    let mut s = settle(&env, "kill");
    assert_eq!(s["state"], "failed", "{s:#}");
    assert_eq!(s["commit_job"]["state"], "CANCELLED", "{s:#}");
    // Slurm reports a cancelled task before its process has exited (KillWait): a rank may still
    // write its last split record. Wait until the records stop changing.
    let done_of =
        |s: &Value| -> Vec<Value> { s["ranks"].as_array().unwrap().iter().map(|r| r["splits_done"].clone()).collect() };
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let again = env.json(&["runs", "show", "kill"]);
        if done_of(&again) == done_of(&s) {
            break;
        }
        s = again;
    }
    let incomplete: Vec<u64> = s["ranks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["splits_done"] != r["splits_total"])
        .map(|r| r["rank"].as_u64().unwrap())
        .collect();
    assert!(incomplete.contains(&3), "rank 3 was still queued when the array was cancelled: {s:#}");
    for &r in &incomplete {
        assert_eq!(s["ranks"][r as usize]["state"], "CANCELLED", "{s:#}");
    }

    let again = env.json(&["run", p, "--executor", "slurm", "--resume", "kill"]);
    assert_eq!(ranks_of(&again), vec![incomplete.clone()], "only unfinished ranks are resubmitted");
    let s = settle(&env, "kill");
    assert_eq!(s["state"], "committed", "{s:#}");
    let m = committed(&env, "quickstart");
    assert_eq!(m["digest"], digest);
    assert_eq!(m["totals"]["rows"], rows);
    let shards: Vec<&str> = m["shards"].as_array().unwrap().iter().map(|s| s["path"].as_str().unwrap()).collect();
    let distinct: std::collections::BTreeSet<&str> = shards.iter().copied().collect();
    assert_eq!(distinct.len(), shards.len(), "a shard listed twice: {shards:?}");
}

#[test]
#[ignore = "needs a running Slurm: .ci/slurm-up.sh (.ci/run runs it)"]
fn a_barrier_runs_as_dependent_phases_split_at_max_array_size_with_the_local_digest() {
    require_slurm();
    let env = Env::new();
    let dd = dedup_pipeline(&env);
    let (digest, rows) = local_digest(&dd);
    // MaxArraySize 3: each phase is two arrays (ranks 0-2, and rank 3 as task 0 + offset 3).
    let sub = env.json(&[
        "run",
        &dd,
        "--executor",
        "slurm",
        "--ranks",
        "4",
        "--cpus-per-rank",
        "1",
        "--run-id",
        "dd",
        "--max-array-size",
        "3",
    ]);
    assert_eq!(ranks_of(&sub), vec![vec![0, 1, 2], vec![3], vec![0, 1, 2], vec![3]]);
    let phases: Vec<u64> = sub["arrays"].as_array().unwrap().iter().map(|a| a["phase"].as_u64().unwrap()).collect();
    assert_eq!(phases, [0, 0, 1, 1]);
    assert_eq!(sub["arrays"][1]["offset"], 3);
    let s = settle(&env, "dd");
    assert_eq!(s["state"], "committed", "{s:#}");
    let m = committed(&env, "deduped");
    assert_eq!(m["digest"], digest, "two phases on Slurm differ from one local process");
    assert_eq!(m["totals"]["rows"], rows);
    for rank in 0..4 {
        for k in 0..2 {
            assert!(env.data().join(format!("slurm/dd/logs/phase{k}-rank{rank}.out")).exists());
        }
    }
    let log = env.ok(&["runs", "logs", "dd", "--rank", "1", "--phase", "1"]);
    assert!(log.contains("phase 1 rank 1") && !log.contains("phase 0 rank 1"), "{log}");
}
