//! Internet Archive ARC files (version 1 and 2; Common Crawl's 2008-2012
//! crawls): a record is one header line and a block of the length it gives.
//! The reader turns each into the WARC record it stands for, so the `warc`
//! source reads ARC like WARC.
//!
//! ```text
//! filedesc://name.arc IP 20140216050221 text/plain 75\n<75 bytes: version block>\n   ──► warcinfo
//! http://example.com/ 93.184.216.119 20140216050221 text/html 1591\n<HTTP response>\n ──► response
//!   v1: URL IP-address Archive-date Content-type Archive-length
//!   v2: URL IP-address Archive-date Content-type Result-code Checksum Location Offset Filename Archive-length
//! ```

/// One ARC record header line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArcHeader {
    /// The captured URL (`filedesc://...` for the file's version block).
    pub url: String,
    /// The server's IP address.
    pub ip: String,
    /// Capture time, `YYYYMMDDhhmmss`.
    pub date: String,
    /// The response's media type as the crawler saw it.
    pub mime: String,
    /// Bytes of the block after the header line.
    pub length: u64,
}

impl ArcHeader {
    /// The header fields of the WARC record this ARC record stands for;
    /// `block` is the record's block (an HTTP response starts with `HTTP/`).
    pub(crate) fn warc_headers(&self, block: &[u8]) -> Vec<(String, String)> {
        let date = &self.date;
        let iso = format!(
            "{}-{}-{}T{}:{}:{}Z",
            &date[..4],
            &date[4..6],
            &date[6..8],
            &date[8..10],
            &date[10..12],
            &date[12..14]
        );
        let (kind, content_type) = if self.url.starts_with("filedesc://") {
            ("warcinfo", self.mime.clone())
        } else if block.starts_with(b"HTTP/") {
            ("response", "application/http; msgtype=response".to_string())
        } else {
            ("resource", self.mime.clone())
        };
        let mut h = vec![("WARC-Type".to_string(), kind.to_string())];
        if kind != "warcinfo" {
            h.push(("WARC-Target-URI".to_string(), self.url.clone()));
        }
        h.push(("WARC-Date".to_string(), iso));
        h.push(("WARC-IP-Address".to_string(), self.ip.clone()));
        h.push(("Content-Type".to_string(), content_type));
        h.push(("Content-Length".to_string(), self.length.to_string()));
        h
    }
}

/// Parses an ARC header line (without its line end).
///
/// # Errors
/// Not 5 (v1) or 10 (v2) fields, a date that is not 14 digits, a length that
/// is not a number.
pub(crate) fn parse_header(line: &[u8]) -> Result<ArcHeader, String> {
    let line = std::str::from_utf8(line).map_err(|_| "the header line is not UTF-8".to_string())?;
    let fields: Vec<&str> = line.split(' ').filter(|f| !f.is_empty()).collect();
    if fields.len() != 5 && fields.len() != 10 {
        return Err(format!("{} fields, not 5 (ARC v1) or 10 (ARC v2): \"{}\"", fields.len(), short(line)));
    }
    let date = fields[2];
    if date.len() != 14 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("archive date \"{}\" is not YYYYMMDDhhmmss", short(date)));
    }
    let length = fields[fields.len() - 1];
    let length = length.parse::<u64>().map_err(|_| format!("archive length \"{}\" is not a number", short(length)))?;
    Ok(ArcHeader {
        url: fields[0].to_string(),
        ip: fields[1].to_string(),
        date: date.to_string(),
        mime: fields[3].to_string(),
        length,
    })
}

fn short(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_header_lines() {
        let h = parse_header(b"http://example.com/ 93.184.216.119 20140216050221 text/html 1591").unwrap();
        assert_eq!((h.url.as_str(), h.date.as_str(), h.length), ("http://example.com/", "20140216050221", 1591));
        let w = h.warc_headers(b"HTTP/1.1 200 OK\r\n");
        assert_eq!(w[0], ("WARC-Type".to_string(), "response".to_string()));
        assert!(w.contains(&("WARC-Date".to_string(), "2014-02-16T05:02:21Z".to_string())));
        let v2 = parse_header(b"http://a.org/ 1.2.3.4 20080101000000 text/html 200 ABC http://a.org/x 123 f.arc 42")
            .unwrap();
        assert_eq!(v2.length, 42);
        let info = parse_header(b"filedesc://x.arc.gz 127.0.0.1 20140216050221 text/plain 75").unwrap();
        assert_eq!(info.warc_headers(b"1 0 x")[0].1, "warcinfo");
        assert!(parse_header(b"http://example.com/ 93.184.216.119 201404010000000000 text/html -1")
            .unwrap_err()
            .contains("date"));
        assert!(parse_header(b"http://example.com/ 127.0.0.1 20140102000000 text/plain abc")
            .unwrap_err()
            .contains("length"));
        assert!(parse_header(b"WARC/1.0").is_err());
    }
}
