//! A small real HTTP/1.1 server on 127.0.0.1 for the network tests: serves
//! fixture files from memory with `Range`, `ETag` / `If-Match` /
//! `If-None-Match`, `Last-Modified` / `If-Modified-Since` and keep-alive, and
//! injects faults on request (status codes, a reset mid-body, slow bodies,
//! truncated files). It counts requests and body bytes sent per path.
//!
//! ```no_run
//! let srv = HttpServer::start();
//! srv.put("/a.warc.gz", std::fs::read("x.warc.gz").unwrap());
//! srv.fault("/a.warc.gz", Fault::ResetAt(1000), 1);   // the next GET drops after 1000 body bytes
//! let url = srv.url("/a.warc.gz");
//! ```
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A fault for the next requests of a path.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer with this status and no body.
    Status(u16),
    /// Send the headers, then this many body bytes, then close the connection.
    ResetAt(u64),
    /// Send the body in 4 KiB pieces with this pause between them.
    Slow(Duration),
    /// Serve only the first N bytes, as if that were the whole file.
    Truncate(u64),
    /// Ignore `Range` and send the whole file with 200.
    IgnoreRange,
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub status: u16,
    pub body_bytes: u64,
    /// When the request arrived.
    pub at: std::time::Instant,
    /// When its response was written.
    pub done: std::time::Instant,
}

#[derive(Default)]
struct State {
    files: BTreeMap<String, Vec<u8>>,
    faults: HashMap<String, Vec<Fault>>,
    log: Vec<Seen>,
}

/// The server; it stops when the test process ends.
#[derive(Clone)]
pub struct HttpServer {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl HttpServer {
    pub fn start() -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || serve(conn, st));
            }
        });
        HttpServer { port, state }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn put(&self, path: &str, body: Vec<u8>) {
        self.state.lock().unwrap().files.insert(path.to_string(), body);
    }

    /// The next `times` requests of `path` get `fault`.
    pub fn fault(&self, path: &str, fault: Fault, times: usize) {
        let mut s = self.state.lock().unwrap();
        let q = s.faults.entry(path.to_string()).or_default();
        q.extend(std::iter::repeat_n(fault, times));
    }

    /// Drops the faults still queued for `path`.
    pub fn clear_faults(&self, path: &str) {
        self.state.lock().unwrap().faults.remove(path);
    }

    /// Most requests the server was answering at once.
    pub fn max_in_flight(&self, slack: Duration) -> usize {
        // A request counts from its arrival until `slack` before its last byte
        // was written: the client may have read that byte and sent its next
        // request before this server's thread gets to note the end.
        let mut events: Vec<(std::time::Instant, i32)> = Vec::new();
        for s in self.state.lock().unwrap().log.iter() {
            let end = s.done.checked_sub(slack).unwrap_or(s.at).max(s.at);
            events.push((s.at, 1));
            events.push((end, -1));
        }
        events.sort();
        let (mut now, mut max) = (0i32, 0i32);
        for (_, d) in events {
            now += d;
            max = max.max(now);
        }
        max as usize
    }

    /// Requests seen so far.
    pub fn log(&self) -> Vec<Seen> {
        self.state.lock().unwrap().log.clone()
    }

    /// Body bytes sent for `path`, every request together.
    pub fn bytes_sent(&self, path: &str) -> u64 {
        self.log().iter().filter(|s| s.path == path).map(|s| s.body_bytes).sum()
    }

    /// GET requests of `path`.
    pub fn gets(&self, path: &str) -> Vec<Seen> {
        self.log().into_iter().filter(|s| s.path == path && s.method == "GET").collect()
    }
}

fn etag_of(body: &[u8]) -> String {
    // FNV-1a: stable for the same bytes.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in body {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("\"{h:016x}\"")
}

const LAST_MODIFIED: &str = "Wed, 22 May 2024 10:00:00 GMT";

fn serve(conn: TcpStream, st: Arc<Mutex<State>>) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone stream"));
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("/").to_string());
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let path = target.split('?').next().unwrap_or("/").to_string();
        let (file, fault) = {
            let mut s = st.lock().unwrap();
            let fault = s.faults.get_mut(&path).and_then(|q| if q.is_empty() { None } else { Some(q.remove(0)) });
            (s.files.get(&path).cloned(), fault)
        };
        let mut seen = Seen {
            method: method.clone(),
            path: path.clone(),
            headers: headers.clone(),
            status: 0,
            body_bytes: 0,
            at: std::time::Instant::now(),
            done: std::time::Instant::now(),
        };
        let keep = respond(&mut out, &method, file, fault, &headers, &mut seen);
        seen.done = std::time::Instant::now();
        st.lock().unwrap().log.push(seen);
        if !keep {
            let _ = out.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// Writes one response; false when the connection must close.
fn respond(
    out: &mut TcpStream,
    method: &str,
    file: Option<Vec<u8>>,
    fault: Option<Fault>,
    headers: &HashMap<String, String>,
    seen: &mut Seen,
) -> bool {
    let simple = |out: &mut TcpStream, status: u16, seen: &mut Seen| {
        seen.status = status;
        write!(out, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n").is_ok()
    };
    if let Some(Fault::Status(code)) = fault {
        return simple(out, code, seen);
    }
    let Some(mut body) = file else {
        return simple(out, 404, seen);
    };
    if let Some(Fault::Truncate(n)) = fault {
        body.truncate(n as usize);
    }
    let etag = etag_of(&body);
    if let Some(m) = headers.get("if-match") {
        if m != &etag {
            return simple(out, 412, seen);
        }
    }
    let not_modified = headers.get("if-none-match").is_some_and(|v| v == &etag)
        || (!headers.contains_key("if-none-match")
            && headers.get("if-modified-since").is_some_and(|v| v == LAST_MODIFIED));
    if not_modified {
        seen.status = 304;
        return write!(out, "HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nContent-Length: 0\r\n\r\n").is_ok();
    }
    let total = body.len() as u64;
    let mut status = 200;
    let (mut start, mut end) = (0u64, total);
    let range = headers.get("range").filter(|_| fault != Some(Fault::IgnoreRange));
    if let Some(r) = range.and_then(|r| r.strip_prefix("bytes=")) {
        let (a, b) = r.split_once('-').unwrap_or((r, ""));
        let a: u64 = a.parse().unwrap_or(0);
        let b: u64 = if b.is_empty() {
            total.saturating_sub(1)
        } else {
            b.parse().unwrap_or(total - 1).min(total.saturating_sub(1))
        };
        if a >= total {
            seen.status = 416;
            return write!(
                out,
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{total}\r\nContent-Length: 0\r\n\r\n"
            )
            .is_ok();
        }
        (start, end, status) = (a, b + 1, 206);
    }
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nETag: {etag}\r\nLast-Modified: {LAST_MODIFIED}\r\nAccept-Ranges: bytes\r\nContent-Type: {}\r\n",
        end - start,
        content_type(&seen.path)
    );
    if status == 206 {
        head.push_str(&format!("Content-Range: bytes {start}-{}/{total}\r\n", end - 1));
    }
    head.push_str("\r\n");
    seen.status = status;
    if out.write_all(head.as_bytes()).is_err() {
        return false;
    }
    if method == "HEAD" {
        return true;
    }
    let slice = &body[start as usize..end as usize];
    match fault {
        Some(Fault::ResetAt(n)) => {
            let n = (n as usize).min(slice.len());
            let _ = out.write_all(&slice[..n]);
            let _ = out.flush();
            seen.body_bytes = n as u64;
            false
        }
        Some(Fault::Slow(pause)) => {
            for piece in slice.chunks(4096) {
                if out.write_all(piece).is_err() {
                    return false;
                }
                let _ = out.flush();
                seen.body_bytes += piece.len() as u64;
                std::thread::sleep(pause);
            }
            true
        }
        _ => {
            let ok = out.write_all(slice).is_ok();
            seen.body_bytes = if ok { slice.len() as u64 } else { 0 };
            ok
        }
    }
}

fn content_type(path: &str) -> &'static str {
    if path.ends_with(".html") || path.ends_with('/') {
        "text/html; charset=utf-8"
    } else if path.ends_with(".rss") || path.ends_with(".xml") || path.ends_with(".atom") {
        "application/xml"
    } else if path.ends_with(".json") {
        "application/json"
    } else if path.ends_with(".txt") {
        "text/plain"
    } else {
        "application/octet-stream"
    }
}
