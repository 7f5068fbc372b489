//! Python worker processes and the pool a stage keeps of them for a run.
//!
//! ```text
//! Pool::call_batches(batches, parts) ──checkout (idle worker, or start one while fewer than `workers` live, or wait)──►
//!   Worker: the calling thread ──part 1 into shared buffer A, M frame; part 2 into B, M frame──► stdin │ python -c worker.py
//!           (part 3 into A once part 1's answer is in, ...)                                              serve FD_A FD_B │
//!           stdout ──an answer a part, in order──► the calling thread
//!           (non-blocking 1 MiB pipes, poll(2) until the deadline)  │ stderr ──a thread──► smelt's stderr (last lines kept)
//!   answers within the timeout ──► checkin, answers returned
//!   worker died, or no answer (killed) ──► a fresh worker, the same parts once more ──► answers, or the error
//! ```
//! Two buffers let smelt write a call's next part while the worker runs the
//! one before: on a call of two parts the encoding of the second overlaps
//! the work on the first.
//! A worker is a process group of its own, so a kill also ends what user
//! code started; when smelt goes away the worker reads the end of its input
//! and exits.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::ops::Range;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;

use super::joined;
use super::protocol::{batch_frame, encode_frame, read_frame, shared_frame, Frame, Kind, PyError};
use super::shm::Shared;

/// The worker's source, run with `python -c`: the binary needs no file of the repository at run time.
pub const WORKER_SOURCE: &str = include_str!("../../../python/smelt_data/worker.py");

/// Set (to anything), batches go to workers through their stdin rather than
/// shared memory: for a system where memfds misbehave, and to measure one
/// against the other (bench/python_stage.sh).
pub const PIPE_ONLY: &str = "SMELT_PYTHON_PIPE";

/// Lines of a worker's stderr kept for the message when it dies.
const STDERR_TAIL: usize = 20;

/// How to start a worker.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The interpreter.
    pub python: PathBuf,
    /// The whole environment of the worker.
    pub env: Vec<(String, String)>,
    /// Its working directory (the pipeline file's).
    pub cwd: PathBuf,
    /// The config frame's JSON.
    pub config: Vec<u8>,
    /// Prefix of the worker's stderr lines on smelt's stderr (`[python scored] `).
    pub label: String,
}

impl Launch {
    /// The command that runs the embedded worker with `args`, with this environment and directory.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.python);
        c.arg("-c").arg(WORKER_SOURCE).args(args).env_clear().envs(self.env.iter().cloned()).current_dir(&self.cwd);
        c
    }
}

/// Why a worker gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerError {
    /// The interpreter could not be started.
    Start(String),
    /// The worker's setup raised (loading the module, `__init__`).
    Setup(Box<PyError>),
    /// It exited; how, and the last lines of its stderr.
    Died { status: String, stderr: String },
    /// No answer within the timeout: killed.
    Timeout(Duration),
    /// It answered something that is not a frame of the protocol.
    Protocol(String),
    /// The batch could not be encoded for it (a bug, or no memory for its buffer).
    Encode(String),
}

/// One running worker.
struct Worker {
    child: Child,
    /// Its stdin, non-blocking (closed on drop: the end of input ends the worker).
    stdin: Option<ChildStdin>,
    /// Its stdout, non-blocking.
    stdout: ChildStdout,
    stderr: Arc<Mutex<VecDeque<String>>>,
    /// Copies its stderr to smelt's, keeping the last lines.
    stderr_thread: Option<JoinHandle<()>>,
    /// The buffers its batches go through (two: one is written while the worker reads the other); without them
    /// (no memfd here), batches go through stdin.
    shared: Vec<Shared>,
}

impl Worker {
    /// Starts a worker and hands it its configuration; returns once it is ready.
    fn start(launch: &Launch, timeout: Duration) -> Result<Worker, WorkerError> {
        let shared = match std::env::var_os(PIPE_ONLY) {
            Some(_) => Vec::new(),
            None => (0..2).map(|_| Shared::new()).collect::<io::Result<Vec<_>>>().unwrap_or_default(),
        };
        let mut command = launch.command(&["serve"]);
        let fds: Vec<RawFd> = shared.iter().map(Shared::fd).collect();
        command.args(fds.iter().map(ToString::to_string));
        if !fds.is_empty() {
            // SAFETY: the closure runs in the forked child before exec and makes async-signal-safe calls only.
            unsafe {
                command.pre_exec(move || fds.iter().try_for_each(|&fd| Shared::inherit(fd)));
            }
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| WorkerError::Start(format!("cannot run `{}`: {e}", launch.python.display())))?;
        let (stdin, stdout, stderr) = match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
            (Some(i), Some(o), Some(e)) => (i, o, e),
            _ => return Err(WorkerError::Start("the worker's pipes were not opened".into())),
        };
        for fd in [stdin.as_raw_fd(), stdout.as_raw_fd()] {
            widen_pipe(fd);
            non_blocking(fd).map_err(|e| WorkerError::Start(format!("the worker's pipes: {e}")))?;
        }
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
        let stderr_thread = {
            let (tail, label) = (tail.clone(), launch.label.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    eprintln!("{label}{line}");
                    let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
                    if t.len() == STDERR_TAIL {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            })
        };
        let mut w =
            Worker { child, stdin: Some(stdin), stdout, stderr: tail, stderr_thread: Some(stderr_thread), shared };
        let ready = w.call(&encode_frame(Kind::Config, &launch.config), timeout)?;
        match ready.kind {
            Kind::Ready => Ok(w),
            Kind::Error => Err(WorkerError::Setup(Box::new(parse_error(&ready.payload)?))),
            other => Err(WorkerError::Protocol(format!("a {other:?} frame where the worker says it is ready"))),
        }
    }

    /// Sends the batches of one call in `parts` (consecutive ranges of `batches`, one answer each) and waits up
    /// to `timeout` for each answer. With shared buffers, each part goes into the buffer the part before last
    /// used, once that part's answer is in: the next part is written while the worker runs the one before.
    fn call_parts(
        &mut self,
        batches: &[RecordBatch],
        parts: &[Range<usize>],
        timeout: Duration,
    ) -> Result<Vec<Frame>, WorkerError> {
        let mut answers = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let part = &batches[part.clone()];
            if self.shared.is_empty() {
                let frame = batch_frame(part).map_err(|e| WorkerError::Encode(e.to_string()))?;
                answers.push(self.call(&frame, timeout)?);
                continue;
            }
            let which = i % self.shared.len();
            if i >= self.shared.len() {
                answers.push(self.receive(timeout)?); // the answer to the part that was in this buffer
            }
            let frame = write_shared(&mut self.shared[which], which, part)?;
            self.send(&frame, timeout)?;
        }
        while answers.len() < parts.len() {
            answers.push(self.receive(timeout)?);
        }
        Ok(answers)
    }

    /// Sends one frame and waits up to `timeout` for the answer, on this
    /// thread: writing and reading wait in poll(2) with the deadline.
    fn call(&mut self, frame: &[u8], timeout: Duration) -> Result<Frame, WorkerError> {
        self.send(frame, timeout)?;
        self.receive(timeout)
    }

    /// Writes one frame to the worker, waiting up to `timeout` for room in the pipe.
    fn send(&mut self, frame: &[u8], timeout: Duration) -> Result<(), WorkerError> {
        let deadline = Instant::now() + timeout;
        let sent = match self.stdin.as_mut() {
            Some(stdin) => {
                let fd = stdin.as_raw_fd();
                Timed { inner: stdin, fd, deadline }.write_all(frame)
            }
            None => Err(io::Error::from(io::ErrorKind::BrokenPipe)),
        };
        sent.map_err(|e| self.failed(&e, timeout))
    }

    /// Reads the worker's next answer, waiting up to `timeout` for it.
    fn receive(&mut self, timeout: Duration) -> Result<Frame, WorkerError> {
        let deadline = Instant::now() + timeout;
        let fd = self.stdout.as_raw_fd();
        match read_frame(&mut Timed { inner: &mut self.stdout, fd, deadline }) {
            Ok(Some(frame)) => Ok(frame),
            Ok(None) => Err(self.died()),
            Err(e) => Err(self.failed(&e, timeout)),
        }
    }

    /// What a failed read or write of the pipes means: no answer in time (the worker is killed), a broken
    /// frame, or a worker that is gone.
    fn failed(&mut self, e: &io::Error, timeout: Duration) -> WorkerError {
        match e.kind() {
            io::ErrorKind::TimedOut => {
                self.kill();
                WorkerError::Timeout(timeout)
            }
            io::ErrorKind::InvalidData => WorkerError::Protocol(e.to_string()),
            _ => self.died(),
        }
    }

    /// How the worker ended (it closed its output): its exit status and last stderr lines.
    fn died(&mut self) -> WorkerError {
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break describe(s),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                Ok(None) => {
                    self.kill();
                    break "closed its output and was killed".to_string();
                }
                Err(e) => break format!("status unknown: {e}"),
            }
        };
        // The stderr thread ends with the process (unless something it started keeps stderr open): let it
        // take the last lines.
        if let Some(t) = self.stderr_thread.take() {
            join_within(t, Duration::from_secs(1));
        }
        let stderr = self.stderr.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect::<Vec<_>>();
        WorkerError::Died { status, stderr: stderr.join("\n") }
    }

    /// SIGKILL to the worker's process group.
    fn kill(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a negative pid signals that process group; the group is the worker's own
        // (`process_group(0)`), and `child` is not reaped yet, so its id names no other process.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // End of input ends the worker's loop; one that does not exit soon is killed.
        self.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(2);
        while matches!(self.child.try_wait(), Ok(None)) {
            if Instant::now() >= deadline {
                self.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(t) = self.stderr_thread.take() {
            join_within(t, Duration::from_secs(1));
        }
    }
}

/// Writes `batches` into shared buffer number `which` (joined into one record batch where their column types
/// allow) and returns the frame that tells the worker.
fn write_shared(shared: &mut Shared, which: usize, batches: &[RecordBatch]) -> Result<Vec<u8>, WorkerError> {
    let mut w = shared.writer();
    joined::write_call(batches, &mut w).map_err(|e| WorkerError::Encode(e.to_string()))?;
    let len = w.len();
    Ok(shared_frame(len, shared.size(), which))
}

/// Joins `t` if it ends within `limit`; else leaves it to end on its own (a
/// process the worker started may hold its stderr open).
fn join_within(t: JoinHandle<()>, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !t.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    if t.is_finished() {
        let _ = t.join();
    }
}

/// A non-blocking pipe end read or written until a deadline: while it would
/// block, poll(2) waits for it; past the deadline, `TimedOut`.
struct Timed<'a, T> {
    inner: &'a mut T,
    fd: RawFd,
    deadline: Instant,
}

impl<T> Timed<'_, T> {
    fn wait(&self, events: libc::c_short) -> io::Result<()> {
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::from(io::ErrorKind::TimedOut));
            }
            let mut p = libc::pollfd { fd: self.fd, events, revents: 0 };
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
            // SAFETY: poll(2) on one pollfd that lives for the call.
            match unsafe { libc::poll(&mut p, 1, ms) } {
                n if n > 0 => return Ok(()), // ready, or closed: the next read or write says which
                0 => {}
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
    }
}

impl<T: Read> Read for Timed<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.inner.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait(libc::POLLIN)?,
                other => return other,
            }
        }
    }
}

impl<T: Write> Write for Timed<'_, T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            match self.inner.write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait(libc::POLLOUT)?,
                other => return other,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Sets O_NONBLOCK on this process's end of a pipe.
fn non_blocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl(2) F_GETFL/F_SETFL on a descriptor this process owns.
    let ok = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) >= 0
    };
    if ok {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Makes a pipe hold 1 MiB (Linux's default limit for a user) rather than
/// 64 KiB, so a batch of text crosses in one write rather than in a handoff
/// between smelt's writer thread and the worker per 64 KiB, each a scheduling
/// delay on a busy machine. Where the kernel refuses, the pipe keeps its size.
fn widen_pipe(fd: RawFd) {
    #[cfg(target_os = "linux")]
    // SAFETY: fcntl(2) F_SETPIPE_SZ on a pipe descriptor this process owns (a child's stdin or stdout).
    unsafe {
        libc::fcntl(fd, libc::F_SETPIPE_SZ, 1 << 20);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = fd;
}

/// `exit code 3`, `killed by signal 9 (SIGKILL)`.
fn describe(status: std::process::ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => {
            let name = match sig {
                libc::SIGKILL => " (SIGKILL: killed, e.g. by the kernel when out of memory)",
                libc::SIGSEGV => " (SIGSEGV: segmentation fault)",
                libc::SIGABRT => " (SIGABRT: aborted)",
                libc::SIGBUS => " (SIGBUS)",
                libc::SIGTERM => " (SIGTERM)",
                _ => "",
            };
            format!("killed by signal {sig}{name}")
        }
        (None, None) => status.to_string(),
    }
}

/// The JSON of an error frame.
///
/// # Errors
/// Not the worker's error JSON.
pub fn parse_error(payload: &[u8]) -> Result<PyError, WorkerError> {
    serde_json::from_slice(payload)
        .map_err(|e| WorkerError::Protocol(format!("an error frame that is not the worker's JSON: {e}")))
}

/// The workers of one stage in one run: started when first needed, at most
/// `max` at once, reused by every split.
pub struct Pool {
    launch: Launch,
    max: usize,
    timeout: Duration,
    state: Mutex<PoolState>,
    freed: Condvar,
    restarts: AtomicU64,
}

struct PoolState {
    idle: Vec<Worker>,
    live: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("python", &self.launch.python).field("max", &self.max).finish()
    }
}

/// A failed call: what happened, and whether a fresh worker was tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// The last failure.
    pub error: WorkerError,
    /// The first failure when the frame was retried on a fresh worker.
    pub first: Option<WorkerError>,
}

impl Pool {
    /// A pool that starts workers with `launch`, at most `max` at once; a
    /// worker that does not answer a frame within `timeout` is killed.
    pub fn new(launch: Launch, max: usize, timeout: Duration) -> Pool {
        Pool {
            launch,
            max: max.max(1),
            timeout,
            state: Mutex::new(PoolState { idle: Vec::new(), live: 0 }),
            freed: Condvar::new(),
            restarts: AtomicU64::new(0),
        }
    }

    /// Sends `batches` (consecutive ones of a split) to a worker in `parts`
    /// (consecutive ranges of them, a call each) and returns an answer a
    /// part. A worker that dies or hangs is replaced and the parts sent once
    /// more, to the new one.
    ///
    /// # Errors
    /// No worker could be started or set up, or the call failed twice.
    pub fn call_batches(&self, batches: &[RecordBatch], parts: &[Range<usize>]) -> Result<Vec<Frame>, CallError> {
        self.call_with(|w, timeout| w.call_parts(batches, parts, timeout))
    }

    /// Sends `frame` as it is to a worker, as [`Pool::call_batches`] does.
    ///
    /// # Errors
    /// As [`Pool::call_batches`].
    #[cfg(test)]
    pub fn call(&self, frame: &[u8]) -> Result<Frame, CallError> {
        self.call_with(|w, timeout| w.call(frame, timeout))
    }

    fn call_with<T>(&self, send: impl Fn(&mut Worker, Duration) -> Result<T, WorkerError>) -> Result<T, CallError> {
        let mut first = None;
        loop {
            let mut w = self.checkout().map_err(|error| CallError { error, first: first.clone() })?;
            match send(&mut w, self.timeout) {
                Ok(answer) => {
                    self.checkin(w);
                    return Ok(answer);
                }
                Err(error) => {
                    self.discard(w);
                    let retry = matches!(error, WorkerError::Died { .. } | WorkerError::Timeout(_));
                    if retry && first.is_none() {
                        self.restarts.fetch_add(1, Ordering::Relaxed);
                        first = Some(error);
                        continue;
                    }
                    return Err(CallError { error, first });
                }
            }
        }
    }

    /// Workers replaced since the last call of this (a stage counter).
    pub fn take_restarts(&self) -> u64 {
        self.restarts.swap(0, Ordering::Relaxed)
    }

    fn checkout(&self) -> Result<Worker, WorkerError> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(w) = s.idle.pop() {
                return Ok(w);
            }
            if s.live < self.max {
                s.live += 1;
                drop(s);
                return Worker::start(&self.launch, self.timeout).inspect_err(|_| self.release());
            }
            s = self.freed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn checkin(&self, w: Worker) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).idle.push(w);
        self.freed.notify_one();
    }

    fn discard(&self, w: Worker) {
        drop(w);
        self.release();
    }

    fn release(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).live -= 1;
        self.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for the interpreter: a shell script that speaks the frame protocol well enough.
    fn launch(dir: &std::path::Path, script: &str) -> Launch {
        let path = dir.join("fake-python");
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        Launch {
            python: path,
            env: vec![("PATH".into(), std::env::var("PATH").unwrap_or_default())],
            cwd: dir.to_path_buf(),
            config: b"{}".to_vec(),
            label: String::new(),
        }
    }

    #[test]
    fn a_missing_interpreter_cannot_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = launch(dir.path(), "");
        l.python = dir.path().join("no-such-python");
        let pool = Pool::new(l, 1, Duration::from_secs(5));
        let e = pool.call(&encode_frame(Kind::Batch, b"x")).unwrap_err();
        assert!(matches!(&e.error, WorkerError::Start(m) if m.contains("no-such-python")), "{e:?}");
        assert_eq!(e.first, None, "a start failure is not retried");
    }

    #[test]
    fn a_worker_that_dies_is_replaced_once_then_the_call_fails_with_its_status() {
        let dir = tempfile::tempdir().unwrap();
        // Answers the config frame with R{} then exits 3 on the first batch.
        let script = r#"head -c 11 >/dev/null; printf 'R\002\000\000\000\000\000\000\000{}'; echo 'dying now' >&2; head -c 1 >/dev/null; exit 3"#;
        let pool = Pool::new(launch(dir.path(), script), 2, Duration::from_secs(20));
        let e = pool.call(&encode_frame(Kind::Batch, b"x")).unwrap_err();
        match (&e.error, &e.first) {
            (WorkerError::Died { status, stderr }, Some(WorkerError::Died { .. })) => {
                assert_eq!(status, "exit code 3");
                assert!(stderr.contains("dying now"), "{stderr}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(pool.take_restarts(), 1);
        assert_eq!(pool.state.lock().unwrap().live, 0, "dead workers free their slots");
    }

    #[test]
    #[ignore = "needs Python 3 with pyarrow: SMELT_PYTHON=<venv>/bin/python (.ci/run installs it)"]
    fn parts_of_a_call_take_turns_in_two_buffers_and_are_answered_in_order() {
        use arrow::array::{ArrayRef, AsArray, Int64Array};

        use crate::python::protocol::{decode_batch, encode_schema};

        let Some(python) = std::env::var_os("SMELT_PYTHON") else { panic!("set SMELT_PYTHON") };
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("udf.py"),
            "def plus_one(batch):\n    return {'n': batch['n'].to_numpy() + 1}\n",
        )
        .unwrap();
        let declared = hex::encode(encode_schema(&arrow::datatypes::Schema::empty()).unwrap());
        let config =
            serde_json::json!({"path": "udf.py", "function": "plus_one", "mode": "batch", "declared": declared});
        let launch = Launch {
            python: python.into(),
            env: vec![("PATH".into(), std::env::var("PATH").unwrap_or_default())],
            cwd: dir.path().to_path_buf(),
            config: config.to_string().into_bytes(),
            label: String::new(),
        };
        let pool = Pool::new(launch, 1, Duration::from_secs(60));
        // Seven batches in five calls: the third call goes into the first call's buffer once its answer is in,
        // and a later call larger than the buffer grows it.
        let batches: Vec<RecordBatch> = [1usize, 2, 3, 1, 50_000, 2, 1]
            .iter()
            .scan(0i64, |at, &n| {
                let values: Vec<i64> = (*at..*at + n as i64).collect();
                *at += n as i64;
                Some(RecordBatch::try_from_iter([("n", Arc::new(Int64Array::from(values)) as ArrayRef)]).unwrap())
            })
            .collect();
        let parts = [0..1, 1..3, 3..4, 4..5, 5..7];
        for _ in 0..2 {
            let answers = pool.call_batches(&batches, &parts).unwrap();
            assert_eq!(answers.len(), parts.len());
            for (answer, range) in answers.iter().zip(&parts) {
                let result = decode_batch(&answer.payload).unwrap();
                let got = result.column(0).as_primitive::<arrow::datatypes::Int64Type>().values().to_vec();
                let want: Vec<i64> = batches[range.clone()]
                    .iter()
                    .flat_map(|b| b.column(0).as_primitive::<arrow::datatypes::Int64Type>().values().to_vec())
                    .map(|v| v + 1)
                    .collect();
                assert_eq!(got, want, "part {range:?}");
            }
        }
        assert_eq!(pool.take_restarts(), 0);
    }

    #[test]
    fn a_worker_that_hangs_is_killed_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let script = r#"head -c 11 >/dev/null; printf 'R\002\000\000\000\000\000\000\000{}'; sleep 600"#;
        let pool = Pool::new(launch(dir.path(), script), 1, Duration::from_millis(500));
        let started = Instant::now();
        let e = pool.call(&encode_frame(Kind::Batch, b"x")).unwrap_err();
        assert_eq!(e.error, WorkerError::Timeout(Duration::from_millis(500)));
        assert_eq!(e.first, Some(WorkerError::Timeout(Duration::from_millis(500))));
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    }

    #[test]
    fn exit_statuses_are_described() {
        assert_eq!(describe(std::process::ExitStatus::from_raw(3 << 8)), "exit code 3");
        assert_eq!(
            describe(std::process::ExitStatus::from_raw(libc::SIGKILL)),
            "killed by signal 9 (SIGKILL: killed, e.g. by the kernel when out of memory)"
        );
    }
}
