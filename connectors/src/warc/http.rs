//! HTTP/1.x response messages as stored in WARC `response` records.
//!
//! ```text
//!  block: "HTTP/1.1 200 OK\r\n" "Name: value\r\n"... "\r\n" body...
//!          └─ status ────────┘ └─ headers (borrowed) ─┘      └─ body (borrowed, as stored)
//! ```
//!
//! Nothing is copied or decoded: Common Crawl stores bodies de-chunked, and
//! `Content-Encoding` is left to the caller.

/// A parsed HTTP response, borrowing from the record block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse<'a> {
    /// Status code, e.g. 200.
    pub status: u16,
    /// Header fields in order, names as written, values trimmed. Lines that are
    /// not UTF-8, have no ':' or continue a folded field are left out.
    pub headers: Vec<(&'a str, &'a str)>,
    /// Everything after the blank line that ends the headers, as stored
    /// (empty if the headers never end).
    pub body: &'a [u8],
}

impl HttpResponse<'_> {
    /// The first header field called `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|&(_, v)| v)
    }
}

/// Parses an HTTP/1.x response message (a WARC `response` record's block).
/// Tolerates LF-only line ends. The body stays as stored: neither
/// `Transfer-Encoding` nor `Content-Encoding` is undone.
///
/// Returns `None` if the block does not start with an HTTP status line
/// (`HTTP/<version> <3-digit code>`).
pub fn parse_http_response(block: &[u8]) -> Option<HttpResponse<'_>> {
    let (status_line, mut rest) = split_line(block);
    let status = parse_status_line(status_line?)?;
    let mut headers = Vec::with_capacity(16);
    loop {
        let (line, after) = split_line(rest);
        let Some(line) = line else {
            // No blank line: the headers run to the end of the block.
            if let Some(field) = parse_field(rest) {
                headers.push(field);
            }
            return Some(HttpResponse { status, headers, body: &[] });
        };
        rest = after;
        if line.is_empty() {
            return Some(HttpResponse { status, headers, body: rest });
        }
        if line[0] == b' ' || line[0] == b'\t' {
            continue;
        }
        if let Some(field) = parse_field(line) {
            headers.push(field);
        }
    }
}

/// The first line (without CR LF or LF) and what follows it; `None` for the
/// line if there is no LF.
fn split_line(b: &[u8]) -> (Option<&[u8]>, &[u8]) {
    match b.iter().position(|&c| c == b'\n') {
        Some(i) => {
            let line = &b[..i];
            (Some(line.strip_suffix(b"\r").unwrap_or(line)), &b[i + 1..])
        }
        None => (None, b),
    }
}

fn parse_status_line(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/")?;
    let sp = rest.iter().position(|&b| b == b' ')?;
    let after = &rest[sp..];
    let code = &after[after.iter().position(|&b| b != b' ')?..];
    let digits = code.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) || code.get(3).is_some_and(|&b| b != b' ') {
        return None;
    }
    Some(digits.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0')))
}

fn parse_field(line: &[u8]) -> Option<(&str, &str)> {
    let line = std::str::from_utf8(line).ok()?;
    let (name, value) = line.split_once(':')?;
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    Some((name, value.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_response() {
        let r = parse_http_response(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-A:b\r\n\r\n<html>").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.headers, vec![("Content-Type", "text/html"), ("X-A", "b")]);
        assert_eq!(r.header("content-type"), Some("text/html"));
        assert_eq!(r.body, b"<html>");
    }

    #[test]
    fn lf_only_and_odd_lines() {
        let r =
            parse_http_response(b"HTTP/1.0 404\nServer: x\n folded\nno colon\nBad: \xff\n\nbody\r\n\r\nmore").unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(r.headers, vec![("Server", "x")]);
        assert_eq!(r.body, b"body\r\n\r\nmore");
    }

    #[test]
    fn not_http() {
        assert_eq!(parse_http_response(b"GET / HTTP/1.1\r\n\r\n"), None);
        assert_eq!(parse_http_response(b"HTTP/1.1 20 OK\r\n\r\n"), None);
        assert_eq!(parse_http_response(b"HTTP/1.1 2000 OK\r\n\r\n"), None);
        assert_eq!(parse_http_response(b"HTTP/1.1 200 OK"), None);
        assert_eq!(parse_http_response(b""), None);
        assert_eq!(parse_http_response(b"fetchTimeMs: 12\r\n"), None);
    }

    #[test]
    fn headers_without_end() {
        let r = parse_http_response(b"HTTP/1.1 301 Moved\r\nLocation: /x\r\nServer: y").unwrap();
        assert_eq!(r.status, 301);
        assert_eq!(r.headers, vec![("Location", "/x"), ("Server", "y")]);
        assert!(r.body.is_empty());
    }
}
