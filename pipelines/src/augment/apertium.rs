//! The `apertium` backend: Apertium (Debian's `apertium` and language-pair
//! packages) run as a pool of long-lived pipelines per translation direction,
//! each in null-flush mode, so one set of processes serves every document of
//! the run and many pieces are in flight at once.
//!
//! ```text
//! pieces ──escape (stream format)──► groups of ≤ batch_chars ──► free pipeline of the pool
//!   pipeline: bash -c "$(apertium-wblank-mode -z <pair>.mode)" -g ''   (lt-proc | tagger | transfer ... | lt-proc -p)
//!   writer thread: piece \0 piece \0 ...      reader: one answer per \0
//! answers ──count and strip unknown-word marks (*, @, #), unescape──► Translated
//! ```
//! A pool has `processes` pipelines (default: the number of CPUs) and starts
//! them lazily; a pipeline that dies is replaced, and the pieces it held fail
//! (counted) rather than stopping the run.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::backend::{apertium_code, count_words, Failure, Translated, Translator};

/// What to install when Apertium is missing.
pub const INSTALL_HINT: &str = "apt-get install apertium apertium-eng-spa apertium-eng-cat";

/// Checks that Apertium is installed and has a mode for every direction in
/// `directions` (pairs of two- or three-letter codes).
///
/// # Errors
/// A message naming what is missing and the packages to install.
pub fn check_installed(data_dir: &Path, directions: &[(String, String)]) -> Result<(), String> {
    for tool in ["apertium-wblank-mode", "lt-proc", "bash"] {
        if find_on_path(tool).is_none() {
            return Err(format!(
                "Apertium is not installed (`{tool}` is not on PATH): {INSTALL_HINT}"
            ));
        }
    }
    let modes = data_dir.join("modes");
    if !modes.is_dir() {
        return Err(format!(
            "Apertium has no language pairs ({} does not exist): {INSTALL_HINT}",
            modes.display()
        ));
    }
    for (from, to) in directions {
        let Some(mode) = mode_name(from, to) else {
            return Err(format!("Apertium has no language code for `{from}` or `{to}`"));
        };
        if !modes.join(format!("{mode}.mode")).is_file() {
            let mut have: Vec<String> = std::fs::read_dir(&modes)
                .map(|d| {
                    d.filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".mode").map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            have.sort();
            return Err(format!(
                "Apertium cannot translate {from} -> {to}: no mode `{mode}` in {} (installed: {}); install the pair's package (apt-get install apertium-{}), e.g. {INSTALL_HINT}",
                modes.display(),
                if have.is_empty() { "none".to_string() } else { have.join(", ") },
                pair_package(&mode)
            ));
        }
    }
    Ok(())
}

fn pair_package(mode: &str) -> String {
    let mut parts: Vec<&str> = mode.split('-').collect();
    parts.sort();
    parts.join("-")
}

fn find_on_path(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(tool)).find(|p| p.is_file()))
}

/// The mode name of a direction (`en`, `es` -> `eng-spa`).
pub fn mode_name(from: &str, to: &str) -> Option<String> {
    Some(format!("{}-{}", apertium_code(from)?, apertium_code(to)?))
}

/// The Apertium backend: one pool of pipelines per direction.
#[derive(Debug)]
pub struct Apertium {
    data_dir: PathBuf,
    processes: usize,
    batch_chars: usize,
    pools: Mutex<HashMap<String, Arc<Pool>>>,
    restarts: AtomicUsize,
}

impl Apertium {
    /// A backend reading pairs from `data_dir` (`/usr/share/apertium`), with
    /// `processes` pipelines per direction and groups of about `batch_chars`.
    pub fn new(data_dir: PathBuf, processes: usize, batch_chars: usize) -> Apertium {
        Apertium {
            data_dir,
            processes: processes.max(1),
            batch_chars,
            pools: Mutex::new(HashMap::new()),
            restarts: AtomicUsize::new(0),
        }
    }

    fn pool(&self, mode: &str) -> Arc<Pool> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools
            .entry(mode.to_string())
            .or_insert_with(|| {
                Arc::new(Pool {
                    mode_file: self.data_dir.join("modes").join(format!("{mode}.mode")),
                    size: self.processes,
                    started: Mutex::new(0),
                    idle: Mutex::new(Vec::new()),
                    freed: Condvar::new(),
                })
            })
            .clone()
    }
}

impl Translator for Apertium {
    fn name(&self) -> &'static str {
        "apertium"
    }

    fn model(&self) -> String {
        "apertium".to_string()
    }

    fn supports(&self, from: &str, to: &str) -> bool {
        mode_name(from, to).is_some_and(|m| self.data_dir.join("modes").join(format!("{m}.mode")).is_file())
    }

    fn translate(&self, from: &str, to: &str, texts: &[&str]) -> Vec<Result<Translated, Failure>> {
        let Some(mode) = mode_name(from, to) else {
            return texts
                .iter()
                .map(|_| Err(Failure::Backend(format!("no Apertium code for {from} -> {to}"))))
                .collect();
        };
        let pool = self.pool(&mode);
        // Groups of consecutive pieces, about batch_chars each, taken by whichever pipeline is free.
        let mut groups: Vec<std::ops::Range<usize>> = Vec::new();
        let mut start = 0;
        let mut chars = 0;
        for (i, t) in texts.iter().enumerate() {
            chars += t.len();
            if chars >= self.batch_chars {
                groups.push(start..i + 1);
                start = i + 1;
                chars = 0;
            }
        }
        if start < texts.len() {
            groups.push(start..texts.len());
        }
        let next = AtomicUsize::new(0);
        let results: Vec<Mutex<Option<Result<Translated, Failure>>>> = texts.iter().map(|_| Mutex::new(None)).collect();
        let workers = pool.size.min(groups.len());
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    let Some(mut proc_) = pool.take(|| next.load(Ordering::SeqCst) >= groups.len()) else {
                        return;
                    };
                    loop {
                        let g = next.fetch_add(1, Ordering::SeqCst);
                        let Some(range) = groups.get(g) else { break };
                        let answers = match proc_.as_mut() {
                            Some(p) => p.translate(&texts[range.clone()]),
                            None => Err("the pipeline did not start".to_string()),
                        };
                        match answers {
                            Ok(answers) => {
                                for (slot, a) in results[range.clone()].iter().zip(answers) {
                                    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(Ok(a));
                                }
                            }
                            Err(e) => {
                                tracing::warn!(mode, "Apertium pipeline failed, restarting it: {e}");
                                self.restarts.fetch_add(1, Ordering::Relaxed);
                                for slot in &results[range.clone()] {
                                    *slot.lock().unwrap_or_else(|e| e.into_inner()) =
                                        Some(Err(Failure::Backend(e.clone())));
                                }
                                proc_ = None;
                            }
                        }
                        if proc_.is_none() {
                            proc_ = pool
                                .spawn()
                                .map_err(|e| tracing::warn!(mode, "cannot restart Apertium: {e}"))
                                .ok();
                        }
                    }
                    pool.give_back(proc_);
                });
            }
        });
        results
            .into_iter()
            .map(|r| {
                r.into_inner()
                    .unwrap_or_else(|e| e.into_inner())
                    .unwrap_or_else(|| Err(Failure::Backend("not translated".into())))
            })
            .collect()
    }

    fn take_counters(&self) -> Vec<(String, u64)> {
        let n = self.restarts.swap(0, Ordering::Relaxed) as u64;
        if n > 0 {
            vec![("apertium_restarts".into(), n)]
        } else {
            Vec::new()
        }
    }
}

/// The pipelines of one direction.
#[derive(Debug)]
struct Pool {
    mode_file: PathBuf,
    size: usize,
    /// Pipelines started and not given up (idle or in use).
    started: Mutex<usize>,
    idle: Mutex<Vec<Pipeline>>,
    freed: Condvar,
}

impl Pool {
    /// A free pipeline (started when the pool is not full), waiting while
    /// all are busy; `None` once `done()` says there is no work left, or the
    /// start failed (Some(None): the caller fails its pieces).
    fn take(&self, done: impl Fn() -> bool) -> Option<Option<Pipeline>> {
        loop {
            if done() {
                return None;
            }
            {
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(p) = idle.pop() {
                    return Some(Some(p));
                }
            }
            {
                let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
                if *started < self.size {
                    *started += 1;
                    drop(started);
                    return Some(
                        self.spawn()
                            .map_err(|e| tracing::warn!("cannot start Apertium: {e}"))
                            .ok(),
                    );
                }
            }
            let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let _ = self.freed.wait_timeout(idle, Duration::from_millis(20));
        }
    }

    fn spawn(&self) -> Result<Pipeline, String> {
        Pipeline::start(&self.mode_file)
    }

    fn give_back(&self, p: Option<Pipeline>) {
        match p {
            Some(p) => self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(p),
            None => *self.started.lock().unwrap_or_else(|e| e.into_inner()) -= 1,
        }
        self.freed.notify_one();
    }
}

/// One running Apertium pipeline in null-flush mode.
#[derive(Debug)]
struct Pipeline {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Pipeline {
    fn start(mode_file: &Path) -> Result<Pipeline, String> {
        let script = Command::new("apertium-wblank-mode")
            .arg("-z")
            .arg(mode_file)
            .output()
            .map_err(|e| format!("cannot run apertium-wblank-mode ({INSTALL_HINT}): {e}"))?;
        if !script.status.success() {
            return Err(format!(
                "apertium-wblank-mode -z {} failed: {}",
                mode_file.display(),
                String::from_utf8_lossy(&script.stderr).trim()
            ));
        }
        let script = String::from_utf8_lossy(&script.stdout).into_owned();
        // The mode's $1 is lt-proc's generation flag (-g keeps the unknown-word marks), $2 the tagger's extra flag.
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(script.trim())
            .arg("apertium")
            .arg("-g")
            .arg("")
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the Apertium pipeline: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::with_capacity(1 << 16, child.stdout.take().ok_or("no stdout")?);
        Ok(Pipeline { child, stdin, stdout })
    }

    /// Translates pieces: all are written (on a second thread) while the answers are read.
    fn translate(&mut self, texts: &[&str]) -> Result<Vec<Translated>, String> {
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        let stdout = &mut self.stdout;
        std::thread::scope(|s| {
            let writer = s.spawn(move || -> std::io::Result<()> {
                let mut buf = Vec::with_capacity(1 << 16);
                for t in texts {
                    escape(t, &mut buf);
                    // A closing blank: without one, the analyser holds the last token back until more input comes.
                    buf.extend_from_slice(b"[]\0");
                    if buf.len() >= 1 << 15 {
                        stdin.write_all(&buf)?;
                        buf.clear();
                    }
                }
                stdin.write_all(&buf)?;
                stdin.flush()
            });
            let mut out = Vec::with_capacity(texts.len());
            let mut raw = Vec::new();
            for _ in texts {
                raw.clear();
                let n = stdout
                    .read_until(0, &mut raw)
                    .map_err(|e| format!("reading from Apertium: {e}"))?;
                if n == 0 || raw.last() != Some(&0) {
                    return Err("Apertium exited early".to_string());
                }
                raw.pop();
                out.push(unescape(&String::from_utf8_lossy(&raw)));
            }
            writer
                .join()
                .map_err(|_| "writer panicked".to_string())?
                .map_err(|e| format!("writing to Apertium: {e}"))?;
            Ok(out)
        })
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        // End of input ends every process of the pipeline in turn.
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `text` in Apertium's stream format: its reserved characters
/// escaped, `~` and control characters as blanks, as `apertium-destxt` does.
pub fn escape(text: &str, out: &mut Vec<u8>) {
    let mut tmp = [0u8; 4];
    for c in text.chars() {
        match c {
            '\\' | '[' | ']' | '^' | '$' | '@' | '/' | '<' | '>' | '{' | '}' => {
                out.push(b'\\');
                out.push(c as u8);
            }
            '~' => out.extend_from_slice(b"[~]"),
            c if c.is_control() => out.push(b' '),
            c => out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes()),
        }
    }
}

/// Reads a translation back from the stream format: superblanks `[...]`
/// give their content, escapes their character, and the marks of unknown
/// words (`*word`, `@word`, `#word`) are counted and removed.
pub fn unescape(raw: &str) -> Translated {
    let mut text = String::with_capacity(raw.len());
    let mut unknown = 0;
    let mut chars = raw.chars().peekable();
    let mut word_start = true;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    text.push(n);
                    word_start = !n.is_alphanumeric();
                }
            }
            '[' | ']' => {}
            '*' | '@' | '#' if word_start && chars.peek().is_some_and(|n| n.is_alphabetic()) => unknown += 1,
            c => {
                word_start = !c.is_alphanumeric();
                text.push(c);
            }
        }
    }
    // Dropped words (a pro-drop pivot's subjects) leave double spaces.
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let words = count_words(&text);
    Translated { text, unknown, words }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_format_round_trip_and_unknown_marks() {
        let mut buf = Vec::new();
        escape("a [b] $5 a/b x~y <c>\tz", &mut buf);
        assert_eq!(String::from_utf8(buf).unwrap(), r"a \[b\] \$5 a\/b x[~]y \<c\> z");
        let t = unescape(r"Hola *Xyzzyq, 3 #ir \[*x\] un\/b * y  #1[] <*SRD>");
        assert_eq!(t.text, "Hola Xyzzyq, 3 ir [x] un/b * y #1 <SRD>");
        assert_eq!(t.unknown, 4);
        assert_eq!(t.words, 9);
    }

    #[test]
    fn missing_pairs_name_the_package() {
        let dir = tempfile::tempdir().unwrap();
        let e = check_installed(dir.path(), &[("en".into(), "es".into())]);
        if find_on_path("apertium-wblank-mode").is_some() {
            let e = e.unwrap_err();
            assert!(
                e.contains("apt-get install apertium apertium-eng-spa apertium-eng-cat"),
                "{e}"
            );
            std::fs::create_dir(dir.path().join("modes")).unwrap();
            let e = check_installed(dir.path(), &[("en".into(), "fr".into())]).unwrap_err();
            assert!(e.contains("no mode `eng-fra`") && e.contains("apertium-eng-fra"), "{e}");
        }
    }
}
