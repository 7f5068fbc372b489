//! Helpers for the CLI tests: run the real `smelt` binary in a temp data dir.
#![allow(dead_code)]

pub mod browser;
pub mod http_server;
pub mod s3;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn example(name: &str) -> PathBuf {
    repo().join("examples").join(name)
}

pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Self {
        Env { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_smelt"));
        c.arg("--data-dir").arg(self.data()).env_remove("RUST_LOG").env("NO_COLOR", "1");
        c
    }

    pub fn smelt(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("smelt runs")
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.smelt(args);
        assert!(
            out.status.success(),
            "smelt {args:?} failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["--format", "json"]);
        let s = self.ok(&a);
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
    }

    /// Writes a file under the temp dir, returning its path.
    pub fn write(&self, rel: &str, contents: &[u8]) -> PathBuf {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, contents).unwrap();
        p
    }
}

/// Completed splits of `run`: its split records (`NNNNNN.json`), not the
/// staging files (`...#n`) of a record whose write a stop interrupted.
pub fn split_records(root: &Path, run: &str) -> usize {
    std::fs::read_dir(root.join("runs").join(run).join("splits"))
        .map(|d| d.filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".json"))).count())
        .unwrap_or(0)
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// (shard file name, bytes) of a committed version, in manifest order.
pub fn shard_bytes(manifest: &serde_json::Value, root: &Path) -> Vec<(String, Vec<u8>)> {
    manifest["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let rel = s["path"].as_str().unwrap();
            let name = rel.rsplit('/').next().unwrap().to_string();
            (name, std::fs::read(root.join(rel)).unwrap())
        })
        .collect()
}

/// The quick-start pipeline pointed at sample data copied `copies` times into `dir`.
pub fn scaled_quickstart(env: &Env, copies: usize) -> PathBuf {
    let src = repo().join("examples/data/cc");
    for i in 0..copies {
        for f in std::fs::read_dir(&src).unwrap() {
            let f = f.unwrap().path();
            let name = f.file_name().unwrap().to_str().unwrap();
            if name.ends_with(".warc.gz") && !name.ends_with(".wet.gz") {
                let to = env.path().join(format!("in/{i:03}-{name}"));
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                std::fs::copy(&f, to).unwrap();
            }
        }
    }
    let yaml =
        std::fs::read_to_string(example("quickstart.yaml")).unwrap().replace("data/cc/*.warc.gz", "in/*.warc.gz");
    env.write("scaled.yaml", yaml.as_bytes())
}

/// `n` JSON Lines documents of `chars` characters that zstd cannot shrink much.
pub fn noisy_jsonl(n: usize, chars: usize) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x = 0x853c_49e6_748f_ea9bu64;
    let mut out = Vec::new();
    for i in 0..n {
        let text: String = (0..chars)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ALPHABET[(x >> 58) as usize] as char
            })
            .collect();
        out.extend_from_slice(serde_json::json!({"id": format!("doc-{i:05}"), "text": text}).to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// Files under `dir`, recursively (none when it does not exist).
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
