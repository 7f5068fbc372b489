//! `smelt scheduler`, `smelt backfill`, per-stage retries and timeouts, and
//! `smelt runs` for scheduled runs, driving the real binary on the bundled
//! Common Crawl samples. The clock is set with `--now` (a testing aid) except
//! in one real-time test of a one-minute cron.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{example, scaled_quickstart, split_records, stderr, Env};

/// The quick-start pipeline with a `schedule:` block (and optional extra YAML
/// after `text`, e.g. a stage), written into the env with the samples beside it.
fn scheduled(env: &Env, name: &str, schedule: &str, extra_stage: &str) -> PathBuf {
    let data = env.path().join("data-link");
    if !data.exists() {
        std::os::unix::fs::symlink(common::repo().join("examples/data"), &data).unwrap();
    }
    let base = std::fs::read_to_string(example("quickstart.yaml"))
        .unwrap()
        .replace("data/cc/*.warc.gz", "data-link/cc/*.warc.gz");
    let yaml = with_schedule(&base, schedule, extra_stage);
    env.write(name, yaml.as_bytes())
}

/// Adds `schedule` after `dataset:` and `extra_stage` (which reads `text`, and feeds `hashed`) to a quick-start YAML.
fn with_schedule(base: &str, schedule: &str, extra_stage: &str) -> String {
    let mut yaml = base.replacen("\nstages:\n", &format!("\nschedule:\n{schedule}\nstages:\n"), 1);
    if !extra_stage.is_empty() {
        yaml = yaml.replace(
            "  hashed:\n    type: content_hash\n    inputs: [text]\n",
            &format!("{extra_stage}  hashed:\n    type: content_hash\n    inputs: [extra]\n"),
        );
        assert!(yaml.contains("inputs: [extra]"), "{yaml}");
    }
    yaml
}

/// A `toxicity` stage (flagging) that reads the word list `terms.txt` beside the pipeline:
/// while that file is missing, the stage fails on every split.
fn lists_stage(policy: &str) -> String {
    format!("  extra:\n    type: toxicity\n    inputs: [text]\n    mode: flag\n    lists: [terms.txt]\n{policy}")
}

fn versions(env: &Env, dataset: &str) -> Vec<serde_json::Value> {
    let out = env.smelt(&["catalog", "log", dataset, "--format", "json"]);
    if !out.status.success() {
        return Vec::new();
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut list = v.as_array().cloned().unwrap_or_default();
    list.sort_by_key(|x| x["version"].as_u64());
    list
}

fn interval_of(env: &Env, version: &str) -> String {
    let m = env.json(&["catalog", "show", version]);
    m["lineage"]["interval"]["start"].as_str().unwrap_or_default().to_string()
}

fn runs(env: &Env) -> Vec<serde_json::Value> {
    env.json(&["runs", "list"]).as_array().unwrap().clone()
}

fn run_show(env: &Env, id: &str) -> serde_json::Value {
    env.json(&["runs", "show", id])
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn wait_for(cond: impl Fn() -> bool, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn time(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&chrono::Utc)
}

fn scheduler(env: &Env, args: &[&str]) -> Child {
    env.cmd().arg("scheduler").args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(start.elapsed() < limit, "the scheduler did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const DAILY_CATCHUP: &str = "  cron: \"@daily\"\n  timezone: UTC\n  catchup: true\n  start_date: 2024-01-01";

#[test]
fn catchup_runs_every_missed_interval_once_in_order() {
    let env = Env::new();
    let p = scheduled(&env, "p.yaml", DAILY_CATCHUP, "");
    let p = p.to_str().unwrap();
    env.ok(&["scheduler", p, "--once", "--now", "2024-01-04T12:00:00Z"]);
    let v = versions(&env, "quickstart");
    assert_eq!(v.len(), 3, "{v:?}");
    let starts: Vec<String> = (1..=3).map(|n| interval_of(&env, &format!("quickstart@{n}"))).collect();
    assert_eq!(starts, ["2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z"]);
    let m = env.json(&["catalog", "show", "quickstart@1"]);
    assert_eq!(m["lineage"]["interval"]["end"], "2024-01-02T00:00:00Z");
    assert_eq!(m["lineage"]["run_id"], "quickstart-20240101T000000Z");

    // Nothing new is due: no new version. A day later, one more.
    env.ok(&["scheduler", p, "--once", "--now", "2024-01-04T13:00:00Z"]);
    assert_eq!(versions(&env, "quickstart").len(), 3);
    let out = env.cmd().args(["scheduler", p, "--once"]).env("SMELT_NOW", "2024-01-05T00:00:01Z").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(versions(&env, "quickstart").len(), 4);
    assert_eq!(interval_of(&env, "quickstart@4"), "2024-01-04T00:00:00Z");

    // `runs list` shows them with interval, state and attempts.
    let list = runs(&env);
    let scheduled: Vec<&serde_json::Value> = list.iter().filter(|r| r["executor"] == "scheduler").collect();
    assert_eq!(scheduled.len(), 4, "{list:?}");
    assert!(scheduled.iter().all(|r| r["state"] == "succeeded" && r["attempts"] == 1), "{scheduled:?}");
    assert_eq!(scheduled[0]["interval"]["start"], "2024-01-01T00:00:00Z");
    let table = env.ok(&["runs", "list"]);
    assert!(table.contains("quickstart-20240103T000000Z") && table.contains("succeeded"), "{table}");
    let logs = env.ok(&["runs", "logs", "quickstart-20240102T000000Z"]);
    assert!(logs.contains("(attempt 1)") && logs.contains("\"version\": 2"), "{logs}");

    let sql = env.json(&["sql", "SELECT version, interval_start, interval_end FROM runs ORDER BY version"]);
    assert_eq!(sql[0]["interval_start"], "2024-01-01T00:00:00Z");
    assert_eq!(sql[3]["interval_end"], "2024-01-05T00:00:00Z");
    // "Interval done" comes from the versions' lineage: a lost index, rebuilt from the
    // manifests, still knows every committed interval, and nothing runs twice.
    std::fs::remove_dir_all(env.data().join("catalog.sled")).unwrap();
    env.ok(&["catalog", "rebuild"]);
    env.ok(&["scheduler", p, "--once", "--now", "2024-01-05T00:00:01Z"]);
    assert_eq!(versions(&env, "quickstart").len(), 4, "a rebuilt index lost the committed intervals");
}

#[test]
fn without_catchup_only_the_latest_interval_runs() {
    let env = Env::new();
    let p = scheduled(
        &env,
        "p.yaml",
        "  cron: \"0 6 * * *\"\n  timezone: Europe/Paris\n  catchup: false\n  start_date: 2024-01-01",
        "",
    );
    env.ok(&["scheduler", p.to_str().unwrap(), "--once", "--now", "2024-01-04T12:00:00Z"]);
    let v = versions(&env, "quickstart");
    assert_eq!(v.len(), 1, "{v:?}");
    // 06:00 in Paris (UTC+1 in winter) on 2024-01-04 is 05:00Z; the latest finished interval began a day before.
    assert_eq!(interval_of(&env, "quickstart@1"), "2024-01-03T05:00:00Z");
}

fn max_overlap(env: &Env) -> usize {
    let mut spans: Vec<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> = Vec::new();
    for r in runs(env).iter().filter(|r| r["executor"] == "scheduler") {
        let show = run_show(env, r["run_id"].as_str().unwrap());
        for h in show["history"].as_array().unwrap() {
            spans.push((time(h["started_at"].as_str().unwrap()), time(h["finished_at"].as_str().unwrap())));
        }
    }
    spans.iter().map(|(s, _)| spans.iter().filter(|(a, b)| a <= s && s < b).count()).max().unwrap_or(0)
}

#[test]
fn max_active_runs_bounds_the_runs_at_once() {
    let env = Env::new();
    let p = scheduled(&env, "p.yaml", &format!("{DAILY_CATCHUP}\n  max_active_runs: 1"), "");
    env.ok(&["scheduler", p.to_str().unwrap(), "--once", "--now", "2024-01-05T12:00:00Z"]);
    assert_eq!(versions(&env, "quickstart").len(), 4);
    assert_eq!(max_overlap(&env), 1, "max_active_runs: 1 ran runs side by side");

    let env = Env::new();
    let p = scheduled(&env, "p.yaml", &format!("{DAILY_CATCHUP}\n  max_active_runs: 2"), "");
    env.ok(&["scheduler", p.to_str().unwrap(), "--once", "--now", "2024-01-05T12:00:00Z"]);
    assert_eq!(versions(&env, "quickstart").len(), 4);
    assert_eq!(max_overlap(&env), 2, "max_active_runs: 2 runs two at once, never three");
}

#[test]
fn backfill_runs_only_missing_and_failed_intervals_unless_rerun() {
    let env = Env::new();
    let p = scheduled(&env, "p.yaml", &format!("{DAILY_CATCHUP}\n  retries: 0"), &lists_stage(""));
    let p = p.to_str().unwrap();
    let terms = env.path().join("terms.txt");
    std::fs::write(&terms, "zebra\n").unwrap();
    let now = ["--now", "2024-01-10T00:00:00Z"];
    let bf = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["backfill".to_string(), p.to_string()];
        a.extend(args.iter().chain(now.iter()).map(|s| s.to_string()));
        a
    };
    env.ok(&refs(&bf(&["--from", "2024-01-01", "--to", "2024-01-02"])));
    // 01-02 fails: its word list is gone (a real read error in the stage).
    std::fs::remove_file(&terms).unwrap();
    let out = env.smelt(&refs(&bf(&["--from", "2024-01-02", "--to", "2024-01-03"])));
    assert!(!out.status.success(), "{}", stderr(&out));
    let failed = run_show(&env, "quickstart-20240102T000000Z");
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(failed["last_error"].as_str().unwrap().contains("cannot read `lists` file"), "{failed}");
    std::fs::write(&terms, "zebra\n").unwrap();

    let dry = env.json(&refs(&bf(&["--from", "2024-01-01", "--to", "2024-01-05", "--dry-run"])));
    let listed: Vec<(String, String)> = dry["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["start"].as_str().unwrap().to_string(), i["status"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        listed,
        [
            ("2024-01-02T00:00:00Z".to_string(), "failed".to_string()),
            ("2024-01-03T00:00:00Z".to_string(), "missing".to_string()),
            ("2024-01-04T00:00:00Z".to_string(), "missing".to_string())
        ]
    );
    assert_eq!(dry["intervals_in_range"], 4);
    assert_eq!(versions(&env, "quickstart").len(), 1, "a dry run runs nothing");

    env.ok(&refs(&bf(&["--from", "2024-01-01", "--to", "2024-01-05"])));
    let v = versions(&env, "quickstart");
    assert_eq!(v.len(), 4);
    let starts: Vec<String> = (1..=4).map(|n| interval_of(&env, &format!("quickstart@{n}"))).collect();
    assert_eq!(
        starts,
        ["2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z", "2024-01-04T00:00:00Z"]
    );
    // The failed interval resumed under its run id.
    let again = run_show(&env, "quickstart-20240102T000000Z");
    assert_eq!(again["state"], "succeeded");
    assert_eq!(again["attempts"], 2);
    assert_eq!(again["committed"], "quickstart@2");

    let none = env.json(&refs(&bf(&["--from", "2024-01-01", "--to", "2024-01-05", "--dry-run"])));
    assert_eq!(none["intervals"].as_array().unwrap().len(), 0);
    let all = env.json(&refs(&bf(&["--from", "2024-01-01", "--to", "2024-01-05", "--dry-run", "--rerun"])));
    let all = all["intervals"].as_array().unwrap();
    assert_eq!(all.len(), 4);
    assert!(all.iter().all(|i| i["status"] == "committed"), "{all:?}");
    env.ok(&refs(&bf(&["--from", "2024-01-03", "--to", "2024-01-04", "--rerun"])));
    assert_eq!(versions(&env, "quickstart").len(), 5);
    assert_eq!(interval_of(&env, "quickstart@5"), "2024-01-03T00:00:00Z");
}

#[test]
fn a_backfill_queues_its_intervals_for_a_running_scheduler() {
    let env = Env::new();
    let p = scheduled(&env, "p.yaml", "  cron: \"@daily\"\n  catchup: false\n  start_date: 2024-01-01", "");
    let ps = p.to_str().unwrap();
    let mut child = scheduler(&env, &[ps, "--now", "2024-01-04T12:00:00Z"]);
    let manifest = |n: u32| env.data().join(format!("datasets/quickstart/_versions/{n:06}.json"));
    assert!(wait_for(|| manifest(1).exists(), Duration::from_secs(60)), "the latest interval did not run");
    std::thread::sleep(Duration::from_millis(300));
    let q = env.json(&["backfill", ps, "--from", "2024-01-01", "--to", "2024-01-03", "--now", "2024-01-04T12:00:00Z"]);
    assert_eq!(q["intervals"].as_array().unwrap().len(), 2, "{q}");
    assert!(
        wait_for(|| manifest(3).exists(), Duration::from_secs(60)),
        "the scheduler did not run the queued intervals"
    );
    std::thread::sleep(Duration::from_millis(300));
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    assert!(wait_exit(&mut child, Duration::from_secs(30)).success());
    let starts: Vec<String> = (1..=3).map(|n| interval_of(&env, &format!("quickstart@{n}"))).collect();
    assert_eq!(starts, ["2024-01-03T00:00:00Z", "2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"]);
    let r = run_show(&env, "quickstart-20240101T000000Z");
    assert_eq!(r["trigger"], "backfill");
}

#[test]
fn a_failed_run_is_retried_with_backoff_until_it_succeeds() {
    let env = Env::new();
    let p = scheduled(&env, "p.yaml", &format!("{DAILY_CATCHUP}\n  retries: 2\n  retry_backoff: 2s"), &lists_stage(""));
    let first = "quickstart-20240101T000000Z";
    let mut child = scheduler(&env, &[p.to_str().unwrap(), "--once", "--now", "2024-01-02T00:10:00Z"]);
    let waiting = wait_for(
        || {
            // Each look opens the catalog: do not crowd out the scheduler.
            std::thread::sleep(Duration::from_millis(250));
            let out = env.smelt(&["runs", "show", first, "--format", "json"]);
            out.status.success()
                && serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["state"] == "retry_wait"
        },
        Duration::from_secs(60),
    );
    assert!(waiting, "the first attempt did not fail");
    let r = run_show(&env, first);
    assert!(r["last_error"].as_str().unwrap().contains("cannot read `lists` file"), "{r}");
    assert_eq!(r["attempts"], 1);
    std::fs::write(env.path().join("terms.txt"), "zebra\n").unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(60));
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}");
    assert!(err.contains("retrying in"), "{err}");
    let r = run_show(&env, first);
    assert_eq!(r["state"], "succeeded", "{r}");
    assert_eq!(r["attempts"], 2);
    let h = r["history"].as_array().unwrap();
    assert_eq!(h[0]["exit_code"], 1);
    assert_eq!(h[1]["exit_code"], 0);
    let gap = time(h[1]["started_at"].as_str().unwrap()) - time(h[0]["finished_at"].as_str().unwrap());
    assert!(gap >= chrono::Duration::milliseconds(900), "backoff of 2s (jittered to 1-2s) not waited: {gap}");
    assert_eq!(versions(&env, "quickstart").len(), 1);
}

#[test]
fn a_stage_retries_a_failing_split_then_the_run_succeeds() {
    let env = Env::new();
    let p = scheduled(&env, "p.yaml", DAILY_CATCHUP, &lists_stage("    retries: 4\n    retry_backoff: 1s\n"));
    let mut child = env
        .cmd()
        .args(["run", p.to_str().unwrap(), "--interval", "2024-01-01", "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr_pipe = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr_pipe).lines() {
            let line = line.unwrap();
            if line.contains("failed on attempt 1") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    rx.recv_timeout(Duration::from_secs(60)).expect("no split failed");
    std::fs::write(env.path().join("terms.txt"), "zebra\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let err = reader.join().unwrap();
    assert!(out.status.success(), "{err}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let retries = r["retries"].as_array().unwrap();
    assert!(!retries.is_empty(), "{r}");
    assert!(
        retries
            .iter()
            .all(|n| n["stage"] == "extra" && n["error"].as_str().unwrap().contains("cannot read `lists` file")),
        "{r}"
    );
    assert_eq!(r["interval"]["start"], "2024-01-01T00:00:00Z");
    assert_eq!(r["interval"]["end"], "2024-01-02T00:00:00Z");

    // The same as a run that never failed (same inputs, another data directory).
    let clean = Env::new();
    let c = clean.json(&["run", p.to_str().unwrap()]);
    assert_eq!(r["digest"], c["digest"]);
    assert_eq!(r["rows_written"], c["rows_written"]);
}

#[test]
fn a_stage_timeout_fails_the_run_with_the_reason_after_its_retries() {
    let env = Env::new();
    // One large split: 100 copies of the samples in one gzip stream.
    let mut big = Vec::new();
    for _ in 0..100 {
        for f in [
            "CC-MAIN-2020-34-resiliparse-excerpt.warc.gz",
            "CC-MAIN-2024-22-whirlwind.warc.gz",
            "CC-MAIN-2025-33-cdx-toolkit.warc.gz",
        ] {
            big.extend(std::fs::read(common::repo().join("examples/data/cc").join(f)).unwrap());
        }
    }
    env.write("big/all.warc.gz", &big);
    let yaml = std::fs::read_to_string(example("quickstart.yaml"))
        .unwrap()
        .replace("data/cc/*.warc.gz", "big/*.warc.gz")
        .replace(
            "    min_chars: 1\n",
            "    min_chars: 1\n    timeout: 200ms\n    retries: 1\n    retry_backoff: 100ms\n",
        );
    let p = env.write("p.yaml", yaml.as_bytes());
    let started = Instant::now();
    let out = env.smelt(&["run", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("stage `text`: timed out: took longer than its timeout of 0.2s on this split"), "{err}");
    assert!(err.contains("attempt 2 of 2"), "{err}");
    assert!(err.contains("failed on attempt 1 of 2"), "{err}");
    assert!(err.contains("nothing was committed"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(versions(&env, "quickstart").is_empty());
}

fn scaled_scheduled(env: &Env) -> PathBuf {
    let p = scaled_quickstart(env, 40);
    let yaml = with_schedule(&std::fs::read_to_string(&p).unwrap(), DAILY_CATCHUP, "");
    std::fs::write(&p, yaml).unwrap();
    p
}

/// Digest and rows of the same pipeline run uninterrupted into another data directory.
fn clean_run(p: &Path) -> serde_json::Value {
    let fresh = Env::new();
    fresh.json(&["run", p.to_str().unwrap(), "--interval", "2024-01-01"])
}

fn dataset_root(env: &Env) -> PathBuf {
    env.data().join("datasets").join("quickstart")
}

const RUN: &str = "quickstart-20240101T000000Z";

#[test]
fn sigterm_stops_the_run_resumably_and_the_next_start_resumes_it() {
    let env = Env::new();
    let p = scaled_scheduled(&env);
    let ps = p.to_str().unwrap();
    let args = [ps, "--now", "2024-01-02T00:30:00Z", "--parallelism", "1"];
    let mut child = scheduler(&env, &args);
    let root = dataset_root(&env);
    assert!(wait_for(|| split_records(&root, RUN) >= 1, Duration::from_secs(120)), "no split completed");
    let kill = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let status = wait_exit(&mut child, Duration::from_secs(60));
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}");
    assert!(err.contains("stopping:") && err.contains("next start resumes it"), "{err}");
    let done = split_records(&root, RUN);
    assert!(done < 120, "the run finished before SIGTERM ({done} splits); use more input");
    assert!(versions(&env, "quickstart").is_empty(), "no version after a stop");
    let r = run_show(&env, RUN);
    assert_eq!(r["state"], "interrupted", "{r}");

    env.ok(&["scheduler", ps, "--once", "--now", "2024-01-02T00:31:00Z", "--parallelism", "2"]);
    let v = versions(&env, "quickstart");
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["run_id"], RUN);
    let r = run_show(&env, RUN);
    assert_eq!(r["state"], "succeeded");
    let log = std::fs::read_to_string(r["history"][1]["log"].as_str().unwrap()).unwrap();
    let resumed: u64 = log
        .split("\"splits_resumed\": ")
        .nth(1)
        .unwrap()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(resumed >= done as u64, "the second attempt did not resume ({resumed} < {done}): {log}");
    let clean = clean_run(&p);
    assert_eq!(v[0]["digest"], clean["digest"], "the resumed interval differs from an uninterrupted run");
}

#[test]
fn sigterm_cancels_a_plain_run_which_resumes_with_resume() {
    let env = Env::new();
    let p = scaled_quickstart(&env, 40);
    let ps = p.to_str().unwrap();
    let child =
        env.cmd().args(["run", ps, "--run-id", "t1", "--parallelism", "1"]).stderr(Stdio::piped()).spawn().unwrap();
    let root = dataset_root(&env);
    assert!(wait_for(|| split_records(&root, "t1") >= 1, Duration::from_secs(120)), "no split completed");
    assert!(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing was committed"), "{}", stderr(&out));
    assert!(versions(&env, "quickstart").is_empty());
    let listed = runs(&env);
    let t1 = listed.iter().find(|r| r["run_id"] == "t1").unwrap();
    assert_eq!(t1["executor"], "local");
    assert_eq!(t1["state"], "incomplete");
    let r = env.json(&["run", ps, "--resume", "t1"]);
    assert!(r["splits_resumed"].as_u64().unwrap() >= 1);
    assert_eq!(r["version"], 1);
    assert_eq!(run_show(&env, "t1")["state"], "succeeded");
}

#[test]
fn kill_9_mid_run_then_restart_commits_the_interval_once_with_no_document_lost_or_duplicated() {
    let env = Env::new();
    let p = scaled_scheduled(&env);
    let ps = p.to_str().unwrap();
    let mut child = scheduler(&env, &[ps, "--now", "2024-01-02T00:30:00Z", "--parallelism", "1"]);
    let root = dataset_root(&env);
    assert!(wait_for(|| split_records(&root, RUN) >= 1, Duration::from_secs(120)), "no split completed");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let done = split_records(&root, RUN);
    assert!(done < 120, "the run finished before the kill ({done} splits); use more input");
    // The run died with the scheduler: no process is left to commit behind the next one's back.
    let pid = run_show(&env, RUN)["history"][0].clone();
    assert!(pid["finished_at"].is_null());
    std::thread::sleep(Duration::from_millis(500));
    let after = split_records(&root, RUN);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(split_records(&root, RUN), after, "the killed scheduler's run kept working");
    assert!(versions(&env, "quickstart").is_empty());

    env.ok(&["scheduler", ps, "--once", "--now", "2024-01-02T00:31:00Z", "--parallelism", "2"]);
    let v = versions(&env, "quickstart");
    assert_eq!(v.len(), 1, "the interval must be committed exactly once: {v:?}");
    assert_eq!(v[0]["run_id"], RUN, "resumed under the same run id");
    assert_eq!(interval_of(&env, "quickstart@1"), "2024-01-01T00:00:00Z");
    let r = run_show(&env, RUN);
    assert_eq!(r["state"], "succeeded");
    assert_eq!(r["attempts"], 2);

    // A second restart has nothing to do.
    env.ok(&["scheduler", ps, "--once", "--now", "2024-01-02T00:32:00Z"]);
    assert_eq!(versions(&env, "quickstart").len(), 1);

    let clean = clean_run(&p);
    assert_eq!(v[0]["digest"], clean["digest"], "the resumed interval differs from an uninterrupted run");
    // The input holds each sample 40 times (same ids): a record is its id at its origin (file#offset).
    let q = "SELECT count(*) AS n, count(DISTINCT id || ' ' || origin) AS records, count(DISTINCT id) AS ids FROM \"quickstart@1\"";
    let counts = env.json(&["sql", q]);
    let fresh = Env::new();
    fresh.ok(&["run", ps, "--interval", "2024-01-01"]);
    let expected = fresh.json(&["sql", q]);
    assert_eq!(counts[0]["n"], clean["rows_written"], "documents lost or duplicated");
    assert_eq!(counts[0]["records"], clean["rows_written"], "a record was written twice");
    assert_eq!(counts, expected);
}

#[test]
fn a_one_minute_cron_fires_at_the_real_minute_boundary() {
    let env = Env::new();
    let now = chrono::Utc::now();
    let minute = now.with_second_zero();
    let start = minute.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let p = scheduled(&env, "p.yaml", &format!("  cron: \"* * * * *\"\n  catchup: false\n  start_date: {start}"), "");
    let mut child = scheduler(&env, &[p.to_str().unwrap()]);
    let boundary = minute + chrono::Duration::minutes(1);
    // Watch the dataset's storage, not the catalog (each look would open it).
    let manifest = env.data().join("datasets/quickstart/_versions/000001.json");
    let fired = wait_for(|| manifest.exists(), Duration::from_secs(75));
    std::thread::sleep(Duration::from_millis(500));
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = wait_exit(&mut child, Duration::from_secs(30));
    assert!(fired, "the one-minute cron did not fire by {boundary}");
    assert!(status.success());
    assert_eq!(interval_of(&env, "quickstart@1"), start);
    let r = run_show(&env, &format!("quickstart-{}", minute.format("%Y%m%dT%H%M%SZ")));
    let launched = time(r["history"][0]["started_at"].as_str().unwrap());
    assert!(launched >= boundary, "launched at {launched}, before the interval ended at {boundary}");
    assert!(launched < boundary + chrono::Duration::seconds(10), "launched late: {launched}");
}

trait SecondZero {
    fn with_second_zero(self) -> Self;
}

impl SecondZero for chrono::DateTime<chrono::Utc> {
    fn with_second_zero(self) -> Self {
        use chrono::Timelike;
        self.with_second(0).unwrap().with_nanosecond(0).unwrap()
    }
}

#[test]
fn schedule_mistakes_are_reported_with_positions_and_fixes() {
    let env = Env::new();
    let p = scheduled(
        &env,
        "bad.yaml",
        "  cron: \"0 25 * * *\"\n  timezone: America/New_Yrok\n  catchup: yes\n  max_active_runs: 0",
        "",
    );
    let out = env.smelt(&["validate", p.to_str().unwrap(), "--format", "json"]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors = v[0]["errors"].as_array().unwrap();
    let find = |path: &str| {
        errors.iter().find(|e| e["path"] == path).unwrap_or_else(|| panic!("no error at {path}: {errors:?}"))
    };
    let cron = find("schedule.cron");
    assert!(cron["message"].as_str().unwrap().contains("cron `0 25 * * *` is not valid"), "{cron}");
    assert!(cron["help"].as_str().unwrap().contains("hour (0-23)"), "{cron}");
    let cron_line = std::fs::read_to_string(&p).unwrap().lines().position(|l| l.starts_with("  cron:")).unwrap() + 1;
    assert_eq!(cron["line"], cron_line);
    let tz = find("schedule.timezone");
    assert_eq!(tz["help"], "did you mean `America/New_York`?");
    assert!(find("schedule.catchup")["message"].as_str().unwrap().contains("true or false"));
    assert!(find("schedule.max_active_runs")["message"].as_str().unwrap().contains("from 1 to 1000"));

    let bad_stage = scheduled(&env, "bad2.yaml", DAILY_CATCHUP, &lists_stage("    timeout: soon\n    retries: -1\n"));
    let out = env.smelt(&["validate", bad_stage.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(err.contains("stage `extra`: `soon` is not a duration"), "{err}");
    assert!(err.contains("`retries` must be an integer from 0 to 1000"), "{err}");

    let good = scheduled(&env, "good.yaml", DAILY_CATCHUP, "");
    let g = good.to_str().unwrap();
    let out = env.smelt(&["run", g, "--interval", "2024-01-01T06:00:00Z"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nearest are 2024-01-01T00:00:00Z and 2024-01-02T00:00:00Z"), "{}", stderr(&out));
    let out = env.smelt(&["run", example("quickstart.yaml").to_str().unwrap(), "--interval", "2024-01-01"]);
    assert!(stderr(&out).contains("--interval needs a `schedule:` block"), "{}", stderr(&out));
    let out = env.smelt(&["run", g, "--resume", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no run `nope` was started"), "{}", stderr(&out));
    let out = env.smelt(&["scheduler", example("quickstart.yaml").to_str().unwrap(), "--once"]);
    assert!(stderr(&out).contains("has no `schedule:` block"), "{}", stderr(&out));

    // --resume continues a run with its interval.
    env.ok(&["run", g, "--interval", "2024-01-03", "--run-id", "r1", "--rank", "0", "--world-size", "2"]);
    let r = env.json(&["run", g, "--resume", "r1"]);
    assert_eq!(r["interval"]["start"], "2024-01-03T00:00:00Z");
    assert_eq!(r["splits_resumed"], 2);
    assert_eq!(interval_of(&env, "quickstart@1"), "2024-01-03T00:00:00Z");
}

/// A pipeline of dataset `down` that reads `up` through a `dataset` source, run after each commit of `up`.
fn downstream(env: &Env, schedule: &str) -> PathBuf {
    let yaml = format!(
        "dataset: down\nschedule:\n{schedule}\nstages:\n  raw:\n    type: dataset\n    from: up@latest\n  hashed:\n    type: content_hash\n    inputs: [raw]\n  out:\n    type: parquet\n    inputs: [hashed]\n"
    );
    env.write("down.yaml", yaml.as_bytes())
}

/// The upstream versions a downstream version read (its lineage's inputs).
fn read_upstream(env: &Env, version: &str) -> Vec<String> {
    let m = env.json(&["catalog", "show", version]);
    let mut ups: Vec<String> = m["lineage"]["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["id"].as_str()?.split_once('#').map(|(v, _)| v.to_string()))
        .collect();
    ups.dedup();
    ups
}

#[test]
fn a_commit_of_the_upstream_triggers_the_downstream_run_that_reads_it() {
    let env = Env::new();
    let up = scheduled(&env, "up.yaml", "  cron: \"@daily\"", "").display().to_string();
    let up_yaml = std::fs::read_to_string(&up).unwrap().replace("dataset: quickstart", "dataset: up");
    std::fs::write(&up, up_yaml).unwrap();
    let down = downstream(&env, "  on_commit: up@latest\n  catchup: true").display().to_string();

    // Nothing to run before the upstream has a version.
    let out = env.smelt(&["scheduler", &down, "--once"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(versions(&env, "down").is_empty());

    // A running scheduler sees each real commit of `up` and runs `down` once per version, reading exactly it.
    let mut sched = scheduler(&env, &[&down]);
    env.ok(&["run", &up]);
    assert!(wait_for(|| versions(&env, "down").len() == 1, Duration::from_secs(60)), "no run after up@1");
    env.ok(&["run", &up]);
    env.ok(&["run", &up]);
    assert!(wait_for(|| versions(&env, "down").len() == 3, Duration::from_secs(90)), "no runs after up@2 and up@3");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(sched.id() as i32, libc::SIGTERM) };
    assert!(wait_exit(&mut sched, Duration::from_secs(30)).success());
    for (v, up_v) in [(1, "up@1"), (2, "up@2"), (3, "up@3")] {
        assert_eq!(read_upstream(&env, &format!("down@{v}")), vec![up_v.to_string()], "down@{v}");
    }
    let listed = runs(&env);
    let triggered: Vec<&str> =
        listed.iter().filter(|r| r["dataset"] == "down").filter_map(|r| r["trigger_version"].as_str()).collect();
    assert_eq!(triggered, ["up@1", "up@2", "up@3"]);
    let show = run_show(&env, "down-after-up-2");
    assert_eq!(show["trigger"], "on_commit");
    assert_eq!(show["trigger_version"], "up@2");
    let table = env.ok(&["runs", "list"]);
    assert!(table.contains("after up@3"), "{table}");

    // Nothing new: a restarted scheduler runs nothing again.
    let out = env.smelt(&["scheduler", &down, "--once"]);
    assert!(out.status.success());
    assert_eq!(versions(&env, "down").len(), 3);

    // Without catch-up, two commits while no scheduler ran give one run, of the newest.
    let newest_only = downstream(&env, "  on_commit: up@latest").display().to_string();
    env.ok(&["run", &up]);
    env.ok(&["run", &up]);
    let out = env.smelt(&["scheduler", &newest_only, "--once"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let all = versions(&env, "down");
    assert_eq!(all.len(), 4);
    assert_eq!(read_upstream(&env, "down@4"), ["up@5"]);

    // A tag: each version the tag moves to that no run read yet, once (up@4 was skipped above).
    let tagged = downstream(&env, "  on_commit: up@prod").display().to_string();
    env.ok(&["catalog", "tag", "up@4", "prod"]);
    assert!(env.smelt(&["scheduler", &tagged, "--once"]).status.success());
    assert_eq!(read_upstream(&env, "down@5"), ["up@4"]);
    assert!(env.smelt(&["scheduler", &tagged, "--once"]).status.success());
    assert_eq!(versions(&env, "down").len(), 5, "the tag did not move");
    env.ok(&["catalog", "tag", "up@2", "prod"]);
    assert!(env.smelt(&["scheduler", &tagged, "--once"]).status.success());
    assert_eq!(versions(&env, "down").len(), 5, "up@2 was run after already");

    // By hand: --upstream pins the version; a dataset the pipeline does not read is refused; no backfill.
    env.ok(&["run", &down, "--upstream", "up@1"]);
    assert_eq!(read_upstream(&env, "down@6"), ["up@1"]);
    let out = env.smelt(&["run", &down, "--upstream", "other@1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no `dataset` source"), "{}", stderr(&out));
    let out = env.smelt(&["backfill", &down, "--from", "2024-01-01"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nothing to backfill"), "{}", stderr(&out));
}

#[test]
fn on_commit_schedules_are_checked() {
    let env = Env::new();
    for (schedule, message) in [
        ("  on_commit: up@3", "names one fixed version"),
        ("  on_commit: \"up@\"", "must name an upstream dataset"),
        ("  on_commit: up@latest\n  cron: \"@daily\"", "not both"),
        ("  on_commit: up@latest\n  start_date: 2024-01-01", "`start_date` is for `cron` schedules"),
        ("  catchup: false", "needs `cron:` or `on_commit:`"),
    ] {
        let p = downstream(&env, schedule).display().to_string();
        let out = env.smelt(&["validate", &p]);
        assert_eq!(out.status.code(), Some(2), "{schedule}");
        let err = stderr(&out);
        assert!(err.contains(message), "{schedule}: {err}");
    }
}
