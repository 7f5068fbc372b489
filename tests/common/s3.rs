//! Plain unsigned HTTP requests to the S3-compatible server at
//! SMELT_S3_ENDPOINT (moto accepts unsigned requests): how the tests create
//! buckets and look at what smelt stored, without going through the
//! object_store code under test.

use std::collections::BTreeMap;
use std::io::{Read, Write};

/// The server's `http://host:port` from SMELT_S3_ENDPOINT.
///
/// # Panics
/// SMELT_S3_ENDPOINT is not set: the test needs the server `.ci/run` starts.
pub fn endpoint() -> String {
    std::env::var("SMELT_S3_ENDPOINT")
        .expect("this test needs SMELT_S3_ENDPOINT, an S3-compatible server (moto_server, see .ci/run)")
        .trim_end_matches('/')
        .to_string()
}

/// `host:port` of an `http://host:port` endpoint.
pub fn hostport(endpoint: &str) -> String {
    endpoint.trim_start_matches("http://").trim_end_matches('/').to_string()
}

/// The `AWS_*` variables that point object_store at `endpoint` (moto takes any credentials).
pub fn aws_env(endpoint: &str) -> [(&'static str, String); 5] {
    [
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("AWS_ALLOW_HTTP", "true".to_string()),
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
    ]
}

/// One request; returns the status code and the (de-chunked) body.
pub fn request(hostport: &str, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(hostport).expect("S3 server reachable");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let end = resp.windows(4).position(|w| w == b"\r\n\r\n").expect("HTTP response head") + 4;
    let head = String::from_utf8_lossy(&resp[..end]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("HTTP status");
    let mut body = resp[end..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").expect("chunk size line");
        let size = std::str::from_utf8(&b[..eol]).unwrap().split(';').next().unwrap().trim();
        let size = usize::from_str_radix(size, 16).expect("hex chunk size");
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
}

/// PUT an object (or, with a path of just `/bucket`, create the bucket).
pub fn put(hostport: &str, path: &str, body: &[u8]) {
    let (status, resp) = request(hostport, "PUT", path, body);
    assert!(status == 200 || status == 409, "PUT {path}: {status} {}", String::from_utf8_lossy(&resp));
}

/// GET an object's bytes.
pub fn get(hostport: &str, path: &str) -> Vec<u8> {
    let (status, body) = request(hostport, "GET", path, &[]);
    assert_eq!(status, 200, "GET {path}: {}", String::from_utf8_lossy(&body));
    body
}

/// Every object under `prefix` in `bucket` (key -> size), through ListObjectsV2's pages.
pub fn list(hostport: &str, bucket: &str, prefix: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let mut path = format!("/{bucket}?list-type=2&prefix={}", query_escape(prefix));
        if let Some(t) = &token {
            path.push_str(&format!("&continuation-token={}", query_escape(t)));
        }
        let (status, body) = request(hostport, "GET", &path, &[]);
        let xml = String::from_utf8(body).unwrap();
        assert_eq!(status, 200, "list {bucket}/{prefix}: {xml}");
        for item in xml.split("<Contents>").skip(1) {
            let key = between(item, "<Key>", "</Key>").expect("<Key> in <Contents>").replace("&amp;", "&");
            let size = between(item, "<Size>", "</Size>").expect("<Size> in <Contents>").parse().unwrap();
            out.insert(key, size);
        }
        match between(&xml, "<NextContinuationToken>", "</NextContinuationToken>") {
            Some(t) if between(&xml, "<IsTruncated>", "</IsTruncated>") == Some("true") => token = Some(t.to_string()),
            _ => return out,
        }
    }
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let at = s.find(open)? + open.len();
    Some(&s[at..at + s[at..].find(close)?])
}

fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A fault-injecting HTTP proxy on 127.0.0.1 in front of the S3 server: it
/// answers every `every`-th request (0: none) with a throttling error,
/// alternately `503 SlowDown` and `429 Too Many Requests` with S3's XML error
/// body, answers requests matching a [`ThrottlingProxy::fail`] rule with that
/// rule's status, and forwards the rest unchanged (one connection to the
/// server per request). It keeps every request line it saw.
pub struct ThrottlingProxy {
    pub port: u16,
    state: std::sync::Arc<std::sync::Mutex<ProxyState>>,
}

#[derive(Default)]
struct ProxyState {
    every: u64,
    seen: u64,
    throttled: u64,
    /// (substring of the request line, status) answered instead of forwarding.
    fail: Vec<(String, u16)>,
    /// Request lines, with the status answered (0: forwarded).
    log: Vec<(String, u16)>,
}

impl ThrottlingProxy {
    /// Starts the proxy in front of `upstream` (`host:port`).
    pub fn start(upstream: &str, every: u64) -> ThrottlingProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let state = std::sync::Arc::new(std::sync::Mutex::new(ProxyState { every, ..Default::default() }));
        let (st, upstream) = (state.clone(), upstream.to_string());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (st, upstream) = (st.clone(), upstream.clone());
                std::thread::spawn(move || {
                    let _ = proxy_one(conn, &upstream, &st);
                });
            }
        });
        ThrottlingProxy { port, state }
    }

    /// `http://127.0.0.1:PORT`, for AWS_ENDPOINT_URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Throttling answers sent so far.
    pub fn throttled(&self) -> u64 {
        self.state.lock().unwrap().throttled
    }

    /// Answers requests whose request line contains `needle` with `status`
    /// from now on (an empty list of rules: [`ThrottlingProxy::clear_failures`]).
    pub fn fail(&self, needle: &str, status: u16) {
        self.state.lock().unwrap().fail.push((needle.to_string(), status));
    }

    /// Drops the [`ThrottlingProxy::fail`] rules.
    pub fn clear_failures(&self) {
        self.state.lock().unwrap().fail.clear();
    }

    /// Request lines seen (`METHOD /path?query`) with the status the proxy
    /// answered itself, 0 for forwarded ones.
    pub fn log(&self) -> Vec<(String, u16)> {
        self.state.lock().unwrap().log.clone()
    }
}

fn proxy_one(
    mut client: std::net::TcpStream,
    upstream: &str,
    st: &std::sync::Mutex<ProxyState>,
) -> std::io::Result<()> {
    // The request: head, then a Content-Length body or a chunked one.
    let mut buf = Vec::new();
    let mut byte = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = client.read(&mut byte)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&byte[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let lower = head.to_ascii_lowercase();
    let header =
        |name: &str| lower.lines().find_map(|l| l.strip_prefix(&format!("{name}:")).map(|v| v.trim().to_string()));
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        while !buf[head_end..].ends_with(b"0\r\n\r\n") {
            let n = client.read(&mut byte)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&byte[..n]);
        }
    } else {
        let len: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        while buf.len() < head_end + len {
            let n = client.read(&mut byte)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&byte[..n]);
        }
    }
    let line = head.lines().next().unwrap_or_default();
    let line = line.rsplit_once(' ').map_or(line, |(l, _)| l).to_string();
    let answer = {
        let mut s = st.lock().unwrap();
        let n = s.seen;
        s.seen += 1;
        let status = if let Some((_, status)) = s.fail.iter().find(|(needle, _)| line.contains(needle.as_str())) {
            *status
        } else if s.every > 0 && n % s.every == s.every - 1 {
            s.throttled += 1;
            if (n / s.every) % 2 == 0 {
                503
            } else {
                429
            }
        } else {
            0
        };
        s.log.push((line.clone(), status));
        status
    };
    if answer != 0 {
        let (reason, code, message) = match answer {
            503 => ("Slow Down", "SlowDown", "Please reduce your request rate."),
            429 => ("Too Many Requests", "TooManyRequests", "Please reduce your request rate."),
            _ => ("Injected", "AccessDenied", "Injected failure."),
        };
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>proxy</RequestId></Error>"
        );
        write!(
            client,
            "HTTP/1.1 {answer} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        return client.flush();
    }
    // Forward with `Connection: close`, then relay the whole answer and close.
    let mut up = std::net::TcpStream::connect(upstream)?;
    let mut fwd = String::new();
    for l in head[..head_end - 4].split("\r\n") {
        if !l.to_ascii_lowercase().starts_with("connection:") {
            fwd.push_str(l);
            fwd.push_str("\r\n");
        }
    }
    fwd.push_str("Connection: close\r\n\r\n");
    up.write_all(fwd.as_bytes())?;
    up.write_all(&buf[head_end..])?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp)?;
    let end = resp.windows(4).position(|w| w == b"\r\n\r\n").map_or(resp.len(), |p| p + 4);
    let rhead = String::from_utf8_lossy(&resp[..end.saturating_sub(4)]).to_string();
    let mut out = String::new();
    for l in rhead.split("\r\n") {
        if !l.to_ascii_lowercase().starts_with("connection:") {
            out.push_str(l);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    client.write_all(out.as_bytes())?;
    client.write_all(&resp[end.min(resp.len())..])?;
    client.flush()
}
