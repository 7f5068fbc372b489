//! The `apertium` backend: Apertium (Debian's `apertium` and language-pair
//! packages) run as pipelines in null-flush mode, each fed a whole group of
//! pieces at once, `processes` groups at a time, so every stage of every
//! pipeline is busy.
//!
//! ```text
//! pieces ──cut into groups of ≈ batch_chars──► next group ──► a fresh pipeline (one of ≤ processes at once)
//!   pipeline: bash -c "$(apertium-wblank-mode -z <pair>.mode)" apertium -g ''   (lt-proc | tagger | transfer ... | lt-proc -p)
//!   writer thread: escaped piece [] \0 piece [] \0 ...      reader thread: one answer per \0
//! answers ──count and strip unknown-word marks (*, @, #), unescape──► Translated
//! no answer for stall_timeout_s, or the pipeline died ──► kill its process group, rest of the group
//!   to a fresh pipeline; a piece that stalls a fresh pipeline twice fails (counted)
//! ```

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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
            return Err(format!("Apertium is not installed (`{tool}` is not on PATH): {INSTALL_HINT}"));
        }
    }
    let modes = data_dir.join("modes");
    if !modes.is_dir() {
        return Err(format!("Apertium has no language pairs ({} does not exist): {INSTALL_HINT}", modes.display()));
    }
    for (from, to) in directions {
        let Some(mode) = mode_name(from, to) else {
            return Err(format!("Apertium has no language code for `{from}` or `{to}`"));
        };
        if !modes.join(format!("{mode}.mode")).is_file() {
            let mut have: Vec<String> = std::fs::read_dir(&modes)
                .map(|d| {
                    d.filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".mode").map(String::from)).collect()
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

/// For tests that translate with the real Apertium (marked `#[ignore]` with
/// what to install, run by `.ci/run` with `--include-ignored`): Apertium and
/// its English-Spanish and English-Catalan pairs under `/usr/share/apertium`.
///
/// # Panics
/// They are missing; the message names the packages.
pub fn require_installed() {
    let pairs = [("en".to_string(), "es".to_string()), ("en".to_string(), "ca".to_string())];
    if let Err(e) = check_installed(Path::new("/usr/share/apertium"), &pairs) {
        panic!("this test needs Apertium: {e}");
    }
}

fn find_on_path(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(tool)).find(|p| p.is_file()))
}

/// The mode name of a direction (`en`, `es` -> `eng-spa`).
pub fn mode_name(from: &str, to: &str) -> Option<String> {
    Some(format!("{}-{}", apertium_code(from)?, apertium_code(to)?))
}

/// The Apertium backend: fresh null-flush pipelines, `processes` at a time.
///
/// Apertium's HMM tagger carries state from one piece to the next inside a
/// pipeline (the same sentence can be tagged differently after other text),
/// so a pipeline is started for each group of pieces and closed after it:
/// the translation of a piece then depends only on the group it is in, and
/// groups are cut by `batch_chars` alone, so the output is the same whatever
/// the number of processes, threads or splits.
#[derive(Debug)]
pub struct Apertium {
    data_dir: PathBuf,
    processes: usize,
    batch_chars: usize,
    stall: Duration,
    scripts: Mutex<HashMap<String, Arc<String>>>,
    restarts: AtomicUsize,
}

impl Apertium {
    /// A backend reading pairs from `data_dir` (`/usr/share/apertium`), with
    /// `processes` pipelines at once, groups of about `batch_chars`, and a
    /// pipeline given up when it answers nothing for `stall`.
    pub fn new(data_dir: PathBuf, processes: usize, batch_chars: usize, stall: Duration) -> Apertium {
        Apertium {
            data_dir,
            processes: processes.max(1),
            batch_chars: batch_chars.max(1),
            stall,
            scripts: Mutex::new(HashMap::new()),
            restarts: AtomicUsize::new(0),
        }
    }

    /// The shell pipeline of a mode in null-flush mode (`apertium-wblank-mode -z`), made once.
    fn script(&self, mode: &str) -> Result<Arc<String>, String> {
        let mut scripts = self.scripts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = scripts.get(mode) {
            return Ok(s.clone());
        }
        let mode_file = self.data_dir.join("modes").join(format!("{mode}.mode"));
        let out = Command::new("apertium-wblank-mode")
            .arg("-z")
            .arg(&mode_file)
            .output()
            .map_err(|e| format!("cannot run apertium-wblank-mode ({INSTALL_HINT}): {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "apertium-wblank-mode -z {} failed: {}",
                mode_file.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let s = Arc::new(String::from_utf8_lossy(&out.stdout).trim().to_string());
        scripts.insert(mode.to_string(), s.clone());
        Ok(s)
    }

    /// Translates one group in fresh pipelines: a pipeline that stalls or
    /// dies is killed and the rest of the group goes to a new one; a piece
    /// that stalls a fresh pipeline twice fails.
    fn run_group(&self, script: &str, texts: &[&str]) -> Vec<Result<Translated, Failure>> {
        let mut out: Vec<Result<Translated, Failure>> = Vec::with_capacity(texts.len());
        let mut again_at = None;
        while out.len() < texts.len() {
            let start = out.len();
            let p = match Pipeline::start(script) {
                Ok(p) => p,
                Err(e) => {
                    out.extend(texts[start..].iter().map(|_| Err(Failure::Backend(e.clone()))));
                    break;
                }
            };
            let (answers, error) = p.translate(&texts[start..], self.stall);
            out.extend(answers.into_iter().map(Ok));
            if let Some(e) = error {
                self.restarts.fetch_add(1, Ordering::Relaxed);
                let at = out.len();
                if again_at == Some(at) {
                    tracing::warn!("Apertium failed twice on one piece, which is not translated: {e}");
                    out.push(Err(Failure::Backend(e)));
                    again_at = None;
                } else {
                    tracing::warn!("Apertium pipeline failed ({e}); the rest of its group goes to a new one");
                    again_at = Some(at);
                }
            }
        }
        out
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
        let script = match mode_name(from, to)
            .ok_or_else(|| format!("no Apertium code for {from} -> {to}"))
            .and_then(|m| self.script(&m))
        {
            Ok(s) => s,
            Err(e) => return texts.iter().map(|_| Err(Failure::Backend(e.clone()))).collect(),
        };
        // Groups of consecutive pieces of about batch_chars each, cut the same way whatever the process count.
        let mut groups: Vec<std::ops::Range<usize>> = Vec::new();
        let (mut start, mut chars) = (0, 0);
        for (i, t) in texts.iter().enumerate() {
            chars += t.len();
            if chars >= self.batch_chars {
                groups.push(start..i + 1);
                (start, chars) = (i + 1, 0);
            }
        }
        if start < texts.len() {
            groups.push(start..texts.len());
        }
        let next = AtomicUsize::new(0);
        let done: Vec<Mutex<Vec<Result<Translated, Failure>>>> =
            groups.iter().map(|_| Mutex::new(Vec::new())).collect();
        std::thread::scope(|s| {
            for _ in 0..self.processes.min(groups.len()) {
                s.spawn(|| loop {
                    let g = next.fetch_add(1, Ordering::SeqCst);
                    let Some(range) = groups.get(g) else { break };
                    let r = self.run_group(&script, &texts[range.clone()]);
                    *done[g].lock().unwrap_or_else(|e| e.into_inner()) = r;
                });
            }
        });
        done.into_iter().flat_map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner())).collect()
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

/// One running Apertium pipeline in null-flush mode, in a process group of its own.
#[derive(Debug)]
struct Pipeline {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
}

impl Pipeline {
    fn start(script: &str) -> Result<Pipeline, String> {
        use std::os::unix::process::CommandExt;
        // The mode's $1 is lt-proc's generation flag (-g keeps the unknown-word marks), $2 the tagger's extra flag.
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(script)
            .arg("apertium")
            .arg("-g")
            .arg("")
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start the Apertium pipeline: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        Ok(Pipeline { child, stdin, stdout })
    }

    /// Translates pieces in order: a thread writes them all while another
    /// reads one answer per NUL. Returns the answers read, and why it
    /// stopped early (no answer for `stall`, or the pipeline exited).
    fn translate(mut self, texts: &[&str], stall: Duration) -> (Vec<Translated>, Option<String>) {
        let (Some(mut stdin), Some(stdout)) = (self.stdin.take(), self.stdout.take()) else {
            return (Vec::new(), Some("no pipes".into()));
        };
        let pgid = self.child.id();
        let mut answers = Vec::with_capacity(texts.len());
        let mut error = None;
        std::thread::scope(|s| {
            s.spawn(move || -> std::io::Result<()> {
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
                // Dropping stdin here ends the pipeline once it has answered.
            });
            let (tx, rx) = std::sync::mpsc::channel();
            let n = texts.len();
            s.spawn(move || {
                let mut reader = BufReader::with_capacity(1 << 16, stdout);
                for _ in 0..n {
                    let mut raw = Vec::new();
                    let r = match reader.read_until(0, &mut raw) {
                        Ok(_) if raw.last() == Some(&0) => {
                            raw.pop();
                            Ok(raw)
                        }
                        Ok(_) => Err("Apertium exited early".to_string()),
                        Err(e) => Err(format!("reading from Apertium: {e}")),
                    };
                    let stop = r.is_err();
                    if tx.send(r).is_err() || stop {
                        break;
                    }
                }
            });
            while answers.len() < n {
                match rx.recv_timeout(stall) {
                    Ok(Ok(raw)) => answers.push(unescape(&String::from_utf8_lossy(&raw))),
                    Ok(Err(e)) => {
                        error = Some(e);
                        break;
                    }
                    Err(_) => {
                        error = Some(format!("no answer for {} s", stall.as_secs_f64()));
                        break;
                    }
                }
            }
            if error.is_some() {
                // Unblocks both threads: the reader sees end of file, the writer a broken pipe.
                kill_group(pgid);
            }
        });
        (answers, error)
    }
}

/// SIGKILL to every process of the pipeline's group.
fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        // End of input ends every process of the pipeline in turn, and bash
        // waits for them (so their CPU time is accounted to smelt); a stuck
        // pipeline is killed after a while.
        self.stdin.take();
        self.stdout.take();
        for _ in 0..500 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        kill_group(self.child.id());
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
    fn a_stalled_pipeline_is_killed_and_only_its_stuck_piece_fails() {
        // A null-flush filter in the shape of an Apertium mode that never answers a piece holding HANG.
        let script = r#"while IFS= read -r -d '' x; do case "$x" in *HANG*) sleep 60;; esac; printf '%s\0' "$x"; done"#;
        let a = Apertium::new(PathBuf::from("/nonexistent"), 1, 1 << 16, Duration::from_millis(700));
        let started = std::time::Instant::now();
        let out = a.run_group(script, &["one", "two HANG", "three"]);
        assert_eq!(out[0].as_ref().unwrap().text, "one");
        assert!(matches!(&out[1], Err(Failure::Backend(e)) if e.contains("no answer")), "{:?}", out[1]);
        assert_eq!(out[2].as_ref().unwrap().text, "three");
        assert_eq!(a.take_counters(), vec![("apertium_restarts".to_string(), 2)]);
        assert!(started.elapsed() < Duration::from_secs(30), "the sleeping process was killed");
    }

    #[test]
    fn missing_pairs_name_the_package() {
        let dir = tempfile::tempdir().unwrap();
        let e = check_installed(dir.path(), &[("en".into(), "es".into())]);
        if find_on_path("apertium-wblank-mode").is_some() {
            let e = e.unwrap_err();
            assert!(e.contains("apt-get install apertium apertium-eng-spa apertium-eng-cat"), "{e}");
            std::fs::create_dir(dir.path().join("modes")).unwrap();
            let e = check_installed(dir.path(), &[("en".into(), "fr".into())]).unwrap_err();
            assert!(e.contains("no mode `eng-fra`") && e.contains("apertium-eng-fra"), "{e}");
        }
    }
}
