//! What `smelt validate` learns from the interpreter before a run, by running
//! the embedded worker once as `python -c <worker> probe <request>`: the
//! Python and pyarrow versions, whether the user's file or module imports,
//! whether it has the function or class (and its decorator's mode), whether
//! the options bind to its signature; for datatrove, its version, the step
//! class and the packages the step declares it needs. Answers are cached per
//! process, by interpreter, environment, directory and request.
//!
//! The workers' environment is built here too: a minimal set of variables
//! from smelt's own environment, plus those the stage names in `env:`.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde::Deserialize;

use super::worker::Launch;

/// Variables every worker gets from smelt's environment (when set), besides
/// every `LC_*`: where programs and Python packages are, the user, the locale,
/// the time zone and the temporary directory. Nothing else (no credentials)
/// unless the stage's `env:` names it.
pub const BASE_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "PYTHONPATH",
    "PYTHONHOME",
    "VIRTUAL_ENV",
    "LD_LIBRARY_PATH",
];

/// Variables the workers get with these values unless the stage's `env:`
/// names them: a fixed hash seed, so sets and dicts iterate alike in every
/// worker; one thread for BLAS and OpenMP, as the stage's parallelism is its
/// worker processes (numpy's OpenBLAS threads otherwise spin beside them).
pub const DEFAULT_ENV: &[(&str, &str)] =
    &[("PYTHONHASHSEED", "0"), ("OPENBLAS_NUM_THREADS", "1"), ("OMP_NUM_THREADS", "1"), ("MKL_NUM_THREADS", "1")];

/// The workers' environment: [`BASE_ENV`], `LC_*`, the variables in `names`,
/// and [`DEFAULT_ENV`] for those `names` leaves out.
pub fn worker_env(names: &[String]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| BASE_ENV.contains(&k.as_str()) || k.starts_with("LC_") || names.contains(k))
        .collect();
    for (k, v) in DEFAULT_ENV {
        if !names.iter().any(|n| n == k) {
            env.retain(|(name, _)| name != k);
            env.push((k.to_string(), v.to_string()));
        }
    }
    env.sort();
    env
}

/// The probe's answer (`probe()` in worker.py).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Probe {
    /// Whether everything checked is there.
    pub ok: bool,
    /// The Python version.
    #[serde(default)]
    pub python: String,
    /// `sys.executable`.
    #[serde(default)]
    pub executable: String,
    /// pyarrow's version.
    #[serde(default)]
    pub pyarrow: Option<String>,
    /// datatrove's version.
    #[serde(default)]
    pub datatrove: Option<String>,
    /// The file of the user's module (or of the step's class).
    #[serde(default)]
    pub source: Option<String>,
    /// The mode the function's (or class's) decorator names.
    #[serde(default)]
    pub mode: Option<String>,
    /// When not ok: what failed (`pyarrow`, `module`, `function`, `class`, `options`, `datatrove`, `step`,
    /// `requirements`, `args`).
    #[serde(default)]
    pub what: Option<String>,
    /// The exception's type name.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Its message.
    #[serde(default)]
    pub message: Option<String>,
    /// Its traceback.
    #[serde(default)]
    pub traceback: Option<String>,
    /// A module that is not installed (`ModuleNotFoundError.name`), or for
    /// `requirements` the (import name, pip package) pairs missing.
    #[serde(default)]
    pub missing: serde_json::Value,
    /// The name looked up (`function`, `class`, `step`).
    #[serde(default)]
    pub name: Option<String>,
    /// The names the module does define.
    #[serde(default)]
    pub names: Vec<String>,
}

/// Longest a probe may take (importing the user's module runs its top level).
const PROBE_LIMIT: Duration = Duration::from_secs(300);

/// Runs the probe for `request` with `launch`'s interpreter, environment
/// and directory (its config is not used), or takes the cached answer.
///
/// # Errors
/// The interpreter cannot be run, or does not answer with the probe's JSON
/// (a Python 2, a crash): the message says what happened.
pub fn probe(launch: &Launch, request: &serde_json::Value) -> Result<Probe, String> {
    static CACHE: OnceLock<Mutex<HashMap<String, Result<Probe, String>>>> = OnceLock::new();
    let key = format!("{}\0{:?}\0{}\0{request}", launch.python.display(), launch.env, launch.cwd.display());
    let cache = CACHE.get_or_init(Mutex::default);
    if let Some(hit) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return hit.clone();
    }
    let answer = run_probe(launch, request);
    cache.lock().unwrap_or_else(|e| e.into_inner()).insert(key, answer.clone());
    answer
}

fn run_probe(launch: &Launch, request: &serde_json::Value) -> Result<Probe, String> {
    use std::os::unix::process::CommandExt;
    let child = launch
        .command(&["probe", &request.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run `{}`: {e}", launch.python.display()))?;
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(PROBE_LIMIT) {
        Ok(out) => out.map_err(|e| format!("running `{}`: {e}", launch.python.display()))?,
        Err(_) => {
            // SAFETY: kill(2) of the probe's own process group (`process_group(0)`), not yet reaped.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
            return Err(format!(
                "`{}` did not finish checking the stage's code within {} s (importing it runs its top level)",
                launch.python.display(),
                PROBE_LIMIT.as_secs()
            ));
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().rev().find(|l| l.starts_with('{'));
    match line.map(serde_json::from_str::<Probe>) {
        Some(Ok(p)) => Ok(p),
        _ => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect();
            Err(format!(
                "`{}` did not run smelt's worker ({}){}",
                launch.python.display(),
                output.status,
                if tail.is_empty() { String::new() } else { format!(": {}", tail.join("\n")) }
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_is_the_base_set_and_what_is_named() {
        // Read-only use of this process's environment: PATH is set under cargo test.
        let env = worker_env(&[]);
        assert!(env.iter().any(|(k, _)| k == "PATH"));
        assert!(env.contains(&("PYTHONHASHSEED".to_string(), "0".to_string())));
        assert!(env.contains(&("OMP_NUM_THREADS".to_string(), "1".to_string())));
        let known =
            |k: &String| BASE_ENV.contains(&k.as_str()) || k.starts_with("LC_") || DEFAULT_ENV.iter().any(|d| d.0 == k);
        assert!(env.iter().all(|(k, _)| known(k)));
        let env = worker_env(&["CARGO".to_string(), "PYTHONHASHSEED".to_string()]);
        assert!(env.iter().any(|(k, _)| k == "CARGO"), "named variables pass (cargo sets CARGO)");
        assert!(!env.iter().any(|(k, v)| k == "PYTHONHASHSEED" && v == "0"), "a named PYTHONHASHSEED is smelt's own");
    }

    #[test]
    fn a_missing_interpreter_is_reported() {
        let launch = Launch {
            python: "/nonexistent/python3".into(),
            env: Vec::new(),
            cwd: ".".into(),
            config: Vec::new(),
            label: String::new(),
        };
        let e = probe(&launch, &serde_json::json!({"module": "json"})).unwrap_err();
        assert!(e.starts_with("cannot run `/nonexistent/python3`: No such file or directory"), "{e}");
    }
}
