//! The after-commit hook: a pipeline's `train:` command, run once a version
//! is committed, so a scheduled ingest can feed a training job.
//!
//! ```text
//! commit ok ──► sh -c "$train"   env: SMELT_MANIFEST (path or URL of _versions/NNNNNN.json),
//!                                     SMELT_DATASET, SMELT_VERSION, SMELT_DATASET_ROOT
//!            ──► exit status reported; a failure leaves the version committed (exit code 5)
//! ```
//! The command's stdout goes to smelt's stderr, so `--format json` output stays parseable.

use std::process::{Command, Stdio};

/// `smelt run`/`smelt commit` exit code when the version was committed but its `train:` command failed.
pub const EXIT_TRAIN_FAILED: u8 = 5;

/// The version was committed, but the `train:` command failed.
#[derive(Debug, thiserror::Error)]
#[error("{dataset}@{version} is committed, but its train command failed ({status}); the version stays committed")]
pub struct TrainFailed {
    /// Dataset.
    pub dataset: String,
    /// Version.
    pub version: u64,
    /// What happened (exit code or signal).
    pub status: String,
}

/// What the hook did, for the run summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainOutcome {
    /// The command line.
    pub command: String,
    /// Its exit code (`None`: killed by a signal or not started).
    pub exit_code: Option<i32>,
    /// Seconds it ran.
    pub elapsed_s: f64,
    /// Why it did not start, if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl TrainOutcome {
    /// Whether it exited 0.
    pub fn ok(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// The error to return when it failed.
    pub fn failure(&self, dataset: &str, version: u64) -> Option<TrainFailed> {
        (!self.ok()).then(|| TrainFailed {
            dataset: dataset.to_string(),
            version,
            status: match (&self.error, self.exit_code) {
                (Some(e), _) => e.clone(),
                (None, Some(c)) => format!("exit code {c}"),
                (None, None) => "killed by a signal".into(),
            },
        })
    }
}

/// The manifest's location: a local path when the dataset root is local, else its URL.
pub fn manifest_location(root_url: &str, version: u64) -> String {
    let rel = smelt_catalog::model::manifest_path(version);
    let root = root_url.strip_prefix("file://").unwrap_or(root_url).trim_end_matches('/');
    format!("{root}/{rel}")
}

/// Runs `command` with `sh -c` and the version's environment; waits for it.
pub fn run_train(command: &str, root_url: &str, dataset: &str, version: u64) -> TrainOutcome {
    let started = std::time::Instant::now();
    let manifest = manifest_location(root_url, version);
    tracing::info!("train: {command}  (SMELT_MANIFEST={manifest})");
    let status = Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("SMELT_MANIFEST", &manifest)
        .env("SMELT_DATASET", dataset)
        .env("SMELT_VERSION", version.to_string())
        .env("SMELT_DATASET_ROOT", root_url.strip_prefix("file://").unwrap_or(root_url))
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .status();
    let (exit_code, error) = match status {
        Ok(s) => (s.code(), None),
        Err(e) => (None, Some(format!("cannot start `sh -c`: {e}"))),
    };
    TrainOutcome { command: command.to_string(), exit_code, elapsed_s: started.elapsed().as_secs_f64(), error }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_with_the_version_environment_and_reports_failure() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env.txt");
        let cmd = format!("echo \"$SMELT_MANIFEST $SMELT_DATASET $SMELT_VERSION\" > {}", out.display());
        let o = run_train(&cmd, "/data/news", "news", 7);
        assert!(o.ok() && o.failure("news", 7).is_none(), "{o:?}");
        assert_eq!(std::fs::read_to_string(&out).unwrap().trim(), "/data/news/_versions/000007.json news 7");
        let o = run_train("exit 3", "file:///data/news/", "news", 7);
        assert_eq!(o.exit_code, Some(3));
        let f = o.failure("news", 7).unwrap();
        assert!(f.to_string().contains("news@7 is committed, but its train command failed (exit code 3)"), "{f}");
        assert_eq!(manifest_location("s3://bucket/news", 12), "s3://bucket/news/_versions/000012.json");
    }
}
