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
