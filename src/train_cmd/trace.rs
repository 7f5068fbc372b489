//! Which documents were in a training batch: `python -m smelt_data.trace`,
//! the loader's own plan code, run from a copy of `python/smelt_data`
//! embedded in this binary (so the answer is the loader's by construction,
//! and no `pip install` is needed; numpy and pyarrow are).
//!
//! ```text
//! smelt train batch|spikes ──(root, run, rank, batches)──► python -m smelt_data.trace ──JSON──► documents per sample
//!                                                            (seeks: n_tokens of earlier row groups, input_ids of the window's)
//! ```

use std::path::{Path, PathBuf};

/// The package's modules, as built into this binary.
const PACKAGE: [(&str, &str); 7] = [
    ("__init__.py", include_str!("../../python/smelt_data/__init__.py")),
    ("dataset.py", include_str!("../../python/smelt_data/dataset.py")),
    ("loader.py", include_str!("../../python/smelt_data/loader.py")),
    ("worker.py", include_str!("../../python/smelt_data/worker.py")),
    ("plan.py", include_str!("../../python/smelt_data/plan.py")),
    ("runs.py", include_str!("../../python/smelt_data/runs.py")),
    ("trace.py", include_str!("../../python/smelt_data/trace.py")),
];

/// Writes the embedded package once per content into the cache directory; returns the directory to put on PYTHONPATH.
fn package_dir() -> anyhow::Result<PathBuf> {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for (name, src) in PACKAGE {
        h.update(name.as_bytes());
        h.update(src.as_bytes());
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join("smelt").join(format!("python-{:016x}", h.digest()));
    let pkg = dir.join("smelt_data");
    if !pkg.join("trace.py").is_file() {
        let tmp = base.join("smelt").join(format!(".python-{}-{:016x}", std::process::id(), h.digest()));
        std::fs::create_dir_all(tmp.join("smelt_data"))
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", tmp.display()))?;
        for (name, src) in PACKAGE {
            std::fs::write(tmp.join("smelt_data").join(name), src)?;
        }
        // Another process may have put it there first; either copy is the same.
        if std::fs::rename(&tmp, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
    }
    Ok(dir)
}

/// The interpreter: `--python`, else `SMELT_PYTHON`, else `python3`.
pub fn interpreter(given: Option<&Path>) -> PathBuf {
    given
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("SMELT_PYTHON").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// Which batches to trace.
pub enum Which {
    /// Loader batch indices.
    Batches(Vec<u64>),
    /// Training steps (mapped to batches through the metrics).
    Steps(Vec<i64>),
}

/// The trace's JSON for `which` of `run` on `rank`, with `excerpt` ids per document.
///
/// # Errors
/// No interpreter, missing numpy/pyarrow, or the trace's own error (a batch past the run's data, ...).
pub fn batch_documents(
    python: &Path,
    root: &Path,
    run: &str,
    rank: u32,
    which: &Which,
    excerpt: usize,
) -> anyhow::Result<serde_json::Value> {
    let pkg = package_dir()?;
    let mut cmd = std::process::Command::new(python);
    cmd.arg("-m").arg("smelt_data.trace").arg(root).arg(run).arg("--rank").arg(rank.to_string());
    cmd.arg("--excerpt-tokens").arg(excerpt.to_string());
    match which {
        Which::Batches(b) => b.iter().for_each(|b| {
            cmd.arg("--batch").arg(b.to_string());
        }),
        Which::Steps(s) => s.iter().for_each(|s| {
            cmd.arg("--step").arg(s.to_string());
        }),
    }
    let path = match std::env::var_os("PYTHONPATH") {
        Some(p) if !p.is_empty() => {
            let mut v = std::ffi::OsString::from(pkg.as_os_str());
            v.push(":");
            v.push(p);
            v
        }
        _ => pkg.into_os_string(),
    };
    cmd.env("PYTHONPATH", path);
    let out = cmd.output().map_err(|e| {
        anyhow::anyhow!(
            "cannot start {} ({e}): the batch trace runs the loader's Python code; give --python or SMELT_PYTHON \
             (a Python with numpy and pyarrow)",
            python.display()
        )
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let hint = if err.contains("No module named 'numpy'") || err.contains("No module named 'pyarrow'") {
            format!("\n{} lacks numpy or pyarrow: `pip install numpy pyarrow`, or give --python", python.display())
        } else {
            String::new()
        };
        anyhow::bail!("the batch trace failed ({}): {}{hint}", out.status, err.trim());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| anyhow::anyhow!("the batch trace printed no JSON ({e})"))
}
