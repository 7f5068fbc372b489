//! Character-set sniffing and decoding of HTML payloads to UTF-8.
//!
//! ```text
//! bytes ──► BOM? ──► HTTP Content-Type charset? ──► <meta> prescan? ──► valid UTF-8? ──► chardetng(TLD)
//!             └──────────────┬──────────────────────────┘                  │                  │
//!                            │ (declared legacy encoding, but the bytes    │                  │
//!                            │  are valid non-ASCII UTF-8 ──► UTF-8)       │                  │
//!                            ▼                                             ▼                  ▼
//!                      encoding_rs decode (invalid sequences ──► U+FFFD) ──► (String, WHATWG name)
//! ```
//!
//! Differences from the WHATWG "encoding sniffing algorithm", chosen for
//! training data rather than for browser compatibility:
//!
//! * a BOM wins over every declaration (as in WHATWG, where BOM sniffing runs first);
//! * a declared ASCII-compatible encoding other than UTF-8 (`windows-1252`,
//!   `ISO-8859-1`, `Shift_JIS`, ...) is overridden by UTF-8 when the bytes contain
//!   non-ASCII and are valid UTF-8 (servers that send `charset=ISO-8859-1` by
//!   default in front of UTF-8 pages are common; valid multi-byte UTF-8 by chance
//!   in legacy text is not);
//! * the `<meta>` prescan always looks at the first 1024 bytes and then goes on
//!   while it is still inside `<head>` (as Chromium does), up to 64 KiB;
//! * labels of the `replacement` encoding (`ISO-2022-KR`, `HZ-GB-2312`, ...) are
//!   treated as unknown instead of turning the whole page into one U+FFFD;
//! * a UTF-8 payload whose only defect is a multi-byte sequence cut off at the
//!   end (a truncated WARC record) still counts as valid UTF-8.

use std::borrow::Cow;

use encoding_rs::{Encoding, REPLACEMENT, UTF_16BE, UTF_16LE, UTF_8, WINDOWS_1252, X_USER_DEFINED};

/// Bytes the `<meta>` prescan always examines (WHATWG).
const PRESCAN_MIN: usize = 1024;
/// Bytes the `<meta>` prescan examines at most while it is still inside `<head>`.
const PRESCAN_MAX: usize = 64 * 1024;

/// Where the encoding that [`sniff_encoding`] chose came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodingSource {
    /// A UTF-8 or UTF-16 byte order mark.
    Bom,
    /// The `charset` parameter of the HTTP `Content-Type` header.
    HttpHeader,
    /// A `<meta charset>` or `<meta http-equiv="Content-Type">` element.
    MetaTag,
    /// A legacy encoding was declared, but the bytes are valid, non-ASCII UTF-8.
    Utf8Override,
    /// Nothing was declared: UTF-8 when the bytes are valid UTF-8, else chardetng's guess.
    Detected,
}

/// The result of [`sniff_encoding`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sniffed {
    /// The encoding to decode with.
    pub encoding: &'static Encoding,
    /// Where it came from.
    pub source: EncodingSource,
    /// Length of the byte order mark to skip (0 when there is none).
    pub bom_len: usize,
}

/// Decodes an HTML payload to UTF-8.
///
/// The encoding is, in this order: the one named by a byte order mark; the
/// `charset` of the HTTP `Content-Type` header (`http_content_type`) when given
/// and known; a `<meta charset>` / `<meta http-equiv="Content-Type">` found by a
/// prescan of the start of the document; else UTF-8 when the bytes are valid
/// UTF-8, else chardetng's guess (with the top-level domain of `url` as hint).
/// See the module docs for how a declared legacy encoding can yield to UTF-8.
///
/// Never fails: invalid sequences become U+FFFD. Returns the text (without BOM;
/// borrowed from `bytes` when they are valid UTF-8 already) and the encoding's
/// WHATWG name (e.g. `"UTF-8"`, `"windows-1252"`, `"Shift_JIS"`).
pub fn decode_html<'a>(
    bytes: &'a [u8],
    http_content_type: Option<&str>,
    url: Option<&str>,
) -> (Cow<'a, str>, &'static str) {
    let sniffed = sniff_encoding(bytes, http_content_type, url);
    let body = bytes.get(sniffed.bom_len..).unwrap_or_default();
    // Borrowed where the bytes already are valid UTF-8 (most of the web): a
    // page is not copied only to be parsed.
    let (text, _had_errors) = sniffed.encoding.decode_without_bom_handling(body);
    (text, sniffed.encoding.name())
}

/// Chooses the encoding of an HTML payload (see [`decode_html`]) without decoding it.
pub fn sniff_encoding(bytes: &[u8], http_content_type: Option<&str>, url: Option<&str>) -> Sniffed {
    if let Some((encoding, bom_len)) = Encoding::for_bom(bytes) {
        return Sniffed { encoding, source: EncodingSource::Bom, bom_len };
    }
    let declared = http_content_type
        .and_then(charset_from_content_type)
        .map(|e| (e, EncodingSource::HttpHeader))
        .or_else(|| prescan_meta_charset(bytes).map(|e| (e, EncodingSource::MetaTag)));
    if let Some((encoding, source)) = declared {
        if encoding != UTF_8
            && encoding.is_ascii_compatible()
            && !bytes.is_ascii()
            && is_utf8_allowing_truncation(bytes)
        {
            return Sniffed { encoding: UTF_8, source: EncodingSource::Utf8Override, bom_len: 0 };
        }
        return Sniffed { encoding, source, bom_len: 0 };
    }
    if is_utf8_allowing_truncation(bytes) {
        return Sniffed { encoding: UTF_8, source: EncodingSource::Detected, bom_len: 0 };
    }
    let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
    detector.feed(bytes, true);
    let tld = url.and_then(tld_of_url);
    let encoding = detector.guess(tld.as_deref(), chardetng::Utf8Detection::Allow);
    Sniffed { encoding, source: EncodingSource::Detected, bom_len: 0 }
}

/// The encoding named by the `charset` parameter of a `Content-Type` header
/// value (`text/html; charset="Shift_JIS"`), if present and known to
/// encoding_rs. Labels of the `replacement` encoding count as unknown.
pub fn charset_from_content_type(content_type: &str) -> Option<&'static Encoding> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("charset") {
            return None;
        }
        let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
        usable(Encoding::for_label(value.as_bytes())?)
    })
}

/// The encoding declared by a `<meta>` element near the start of `bytes`
/// (WHATWG "prescan a byte stream to determine its encoding", simplified:
/// comments and the contents of `<script>`, `<style>`, `<title>` and
/// `<textarea>` are skipped; the scan covers the first 1024 bytes and goes on
/// while in `<head>`, up to 64 KiB). UTF-16 labels mean UTF-8 and
/// `x-user-defined` means windows-1252, as in WHATWG.
pub fn prescan_meta_charset(bytes: &[u8]) -> Option<&'static Encoding> {
    let b = &bytes[..bytes.len().min(PRESCAN_MAX)];
    let n = b.len();
    let mut left_head_seen = false;
    let mut i = 0;
    while i < n {
        i = find_byte(b, i, b'<')?;
        if i >= PRESCAN_MIN && left_head_seen {
            return None;
        }
        let rest = &b[i..];
        if rest.starts_with(b"<!--") {
            // "-->" may overlap the opening "<!--" ("<!-->").
            i = find_sub(b, i + 2, b"-->").map_or(n, |p| p + 3);
        } else if rest.len() > 2
            && (rest[1].is_ascii_alphabetic() || (rest[1] == b'/' && rest[2].is_ascii_alphabetic()))
        {
            let end_tag = rest[1] == b'/';
            let name_start = i + if end_tag { 2 } else { 1 };
            let mut j = name_start;
            while j < n && !is_space(b[j]) && b[j] != b'>' && b[j] != b'/' {
                j += 1;
            }
            let name = &b[name_start..j];
            left_head_seen |= left_head(name, end_tag);
            if !end_tag && name.eq_ignore_ascii_case(b"meta") {
                let (found, after) = meta_charset(b, j);
                if found.is_some() {
                    return found;
                }
                i = after;
            } else {
                i = skip_attributes(b, j);
            }
            if !end_tag && is_raw_text(name) {
                i = find_end_tag(b, i, name).unwrap_or(n);
            }
        } else if rest.starts_with(b"<!") || rest.starts_with(b"</") || rest.starts_with(b"<?") {
            i = find_byte(b, i + 2, b'>').map_or(n, |p| p + 1);
        } else {
            i += 1;
        }
    }
    None
}

/// Whether a tag shows that the parser has left `<head>`.
fn left_head(name: &[u8], end_tag: bool) -> bool {
    if end_tag {
        return name.eq_ignore_ascii_case(b"head");
    }
    !["html", "head", "meta", "link", "title", "style", "script", "noscript", "base", "template"]
        .iter()
        .any(|t| name.eq_ignore_ascii_case(t.as_bytes()))
}

fn is_raw_text(name: &[u8]) -> bool {
    ["script", "style", "title", "textarea"].iter().any(|t| name.eq_ignore_ascii_case(t.as_bytes()))
}

/// Parses the attributes of a `<meta` tag whose name ends at `i`. Returns the
/// declared encoding, if this element declares a usable one, and the position
/// after the tag.
fn meta_charset(b: &[u8], mut i: usize) -> (Option<&'static Encoding>, usize) {
    let mut seen_http_equiv = false;
    let mut seen_content = false;
    let mut seen_charset = false;
    let mut got_pragma = false;
    // None: no charset found yet; Some(true): from `content`, needs the pragma.
    let mut need_pragma: Option<bool> = None;
    let mut charset: Option<&'static Encoding> = None;
    while let Some((name, value, next)) = next_attribute(b, i) {
        i = next;
        if name.eq_ignore_ascii_case(b"http-equiv") {
            if !seen_http_equiv {
                seen_http_equiv = true;
                got_pragma = trim_ascii(value).eq_ignore_ascii_case(b"content-type");
            }
        } else if name.eq_ignore_ascii_case(b"content") {
            if !seen_content {
                seen_content = true;
                if charset.is_none() {
                    if let Some(label) = charset_in_content(value) {
                        charset = Encoding::for_label(label);
                        need_pragma = Some(true);
                    }
                }
            }
        } else if name.eq_ignore_ascii_case(b"charset") && !seen_charset {
            seen_charset = true;
            charset = Encoding::for_label(value);
            need_pragma = Some(false);
        }
    }
    let after = skip_attributes(b, i);
    let found = match need_pragma {
        None => None,
        Some(true) if !got_pragma => None,
        Some(_) => charset.and_then(|e| {
            if e == UTF_16BE || e == UTF_16LE {
                Some(UTF_8)
            } else if e == X_USER_DEFINED {
                Some(WINDOWS_1252)
            } else {
                usable(e)
            }
        }),
    };
    (found, after)
}

/// WHATWG "get an attribute" for the prescan: returns the name, the value and
/// the position after the attribute, or `None` at the tag's end or the input's.
fn next_attribute(b: &[u8], mut i: usize) -> Option<(&[u8], &[u8], usize)> {
    let n = b.len();
    while i < n && (is_space(b[i]) || b[i] == b'/') {
        i += 1;
    }
    if i >= n || b[i] == b'>' {
        return None;
    }
    let name_start = i;
    // The first character may be '='.
    i += 1;
    while i < n && !is_space(b[i]) && !matches!(b[i], b'=' | b'/' | b'>') {
        i += 1;
    }
    let name = &b[name_start..i];
    while i < n && is_space(b[i]) {
        i += 1;
    }
    if i >= n || b[i] != b'=' {
        return Some((name, &[], i));
    }
    i += 1;
    while i < n && is_space(b[i]) {
        i += 1;
    }
    match b.get(i) {
        Some(&q) if q == b'"' || q == b'\'' => {
            let close = find_byte(b, i + 1, q)?;
            Some((name, &b[i + 1..close], close + 1))
        }
        Some(b'>') | None => Some((name, &[], i)),
        Some(_) => {
            let start = i;
            while i < n && !is_space(b[i]) && b[i] != b'>' {
                i += 1;
            }
            Some((name, &b[start..i], i))
        }
    }
}

/// Skips the attributes of a tag whose name ends at `i`; returns the position after its `>`.
fn skip_attributes(b: &[u8], mut i: usize) -> usize {
    while let Some((_, _, next)) = next_attribute(b, i) {
        i = next;
    }
    // `next_attribute` stopped at the '>' after spaces and slashes, or at the end.
    while i < b.len() && (is_space(b[i]) || b[i] == b'/') {
        i += 1;
    }
    (i + 1).min(b.len())
}

/// WHATWG "extracting a character encoding from a meta element": the label
/// after `charset=` in a `content` attribute value.
fn charset_in_content(value: &[u8]) -> Option<&[u8]> {
    let mut pos = 0;
    loop {
        let at = find_ci(value, pos, b"charset")?;
        let mut i = at + 7;
        while i < value.len() && is_space(value[i]) {
            i += 1;
        }
        if value.get(i) != Some(&b'=') {
            pos = i;
            continue;
        }
        i += 1;
        while i < value.len() && is_space(value[i]) {
            i += 1;
        }
        return match value.get(i) {
            Some(&q) if q == b'"' || q == b'\'' => {
                let close = find_byte(value, i + 1, q)?;
                Some(&value[i + 1..close])
            }
            Some(_) => {
                let start = i;
                while i < value.len() && !is_space(value[i]) && value[i] != b';' {
                    i += 1;
                }
                Some(&value[start..i])
            }
            None => None,
        };
    }
}

/// The top-level domain of a URL, lower-cased, as chardetng wants it; `None`
/// for IP addresses, non-ASCII labels and unparsable input.
fn tld_of_url(url: &str) -> Option<Vec<u8>> {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = after_scheme.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.starts_with('[') {
        return None; // IPv6 literal
    }
    let host = host_port.split(':').next()?.trim_end_matches('.');
    let label = host.rsplit('.').next()?;
    let valid = !label.is_empty()
        && label.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
        && !label.bytes().all(|c| c.is_ascii_digit());
    valid.then(|| label.to_ascii_lowercase().into_bytes())
}

/// `replacement` is what WHATWG maps dangerous legacy labels to; for training
/// data it is better to fall through to the next source.
fn usable(e: &'static Encoding) -> Option<&'static Encoding> {
    (e != REPLACEMENT).then_some(e)
}

/// Valid UTF-8, except perhaps for an incomplete sequence at the very end.
fn is_utf8_allowing_truncation(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0C')
}

fn trim_ascii(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&c| !is_space(c)).unwrap_or(s.len());
    let end = s.iter().rposition(|&c| !is_space(c)).map_or(start, |p| p + 1);
    &s[start..end]
}

/// Position of the first `needle` at or after `from` (word-at-a-time search).
pub(crate) fn find_byte(hay: &[u8], from: usize, needle: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let s = hay.get(from..)?;
    let pattern = LO.wrapping_mul(u64::from(needle));
    let mut chunks = s.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ pattern;
        let found = x.wrapping_sub(LO) & !x & HI;
        if found != 0 {
            return Some(from + offset + (found.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks.remainder().iter().position(|&c| c == needle).map(|p| from + offset + p)
}

/// Position of the first `needle` (non-empty) at or after `from`.
pub(crate) fn find_sub(hay: &[u8], mut from: usize, needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    loop {
        let p = find_byte(hay, from, first)?;
        if hay.get(p + 1..p + 1 + rest.len()) == Some(rest) {
            return Some(p);
        }
        from = p + 1;
    }
}

/// Position of the first ASCII-case-insensitive `needle` (lower-case ASCII) at or after `from`.
fn find_ci(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    let last = hay.len().checked_sub(needle.len())?;
    (from..=last).find(|&p| hay[p..p + needle.len()].eq_ignore_ascii_case(needle))
}

/// Finds the end tag `</name` (ASCII case-insensitive, followed by a space, `/`
/// or `>`) at or after `from`; returns the position after its closing `>`.
pub(crate) fn find_end_tag(b: &[u8], from: usize, name: &[u8]) -> Option<usize> {
    find_end_tag_start(b, from, name).map(|lt| skip_attributes(b, lt + 2 + name.len()))
}

/// Like [`find_end_tag`], but returns the position of the end tag's `<`.
pub(crate) fn find_end_tag_start(b: &[u8], mut from: usize, name: &[u8]) -> Option<usize> {
    loop {
        let lt = find_byte(b, from, b'<')?;
        if b.get(lt + 1) == Some(&b'/') {
            let name_end = lt + 2 + name.len();
            if let Some(candidate) = b.get(lt + 2..name_end) {
                if candidate.eq_ignore_ascii_case(name)
                    && b.get(name_end).is_none_or(|&c| is_space(c) || c == b'/' || c == b'>')
                {
                    return Some(lt);
                }
            }
        }
        from = lt + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_byte_matches_naive_search() {
        let hay = b"0123456789abcdef<ghijklmnopq<rs";
        for from in 0..hay.len() + 2 {
            let naive = hay.get(from..).and_then(|s| s.iter().position(|&c| c == b'<')).map(|p| p + from);
            assert_eq!(find_byte(hay, from, b'<'), naive, "from {from}");
        }
        // High bytes must not produce false positives.
        assert_eq!(find_byte(&[0xFF, 0x80, 0x3C, 0xBC], 0, b'<'), Some(2));
        assert_eq!(find_byte(&[0x3D; 20], 0, b'<'), None);
    }

    #[test]
    fn content_type_charset() {
        assert_eq!(charset_from_content_type("text/html; charset=ISO-8859-1"), Some(WINDOWS_1252));
        assert_eq!(charset_from_content_type("text/html;CHARSET=\"shift_jis\""), Some(encoding_rs::SHIFT_JIS));
        assert_eq!(charset_from_content_type("text/html; charset = utf-8 "), Some(UTF_8));
        assert_eq!(charset_from_content_type("text/html"), None);
        assert_eq!(charset_from_content_type("text/html; charset=no-such-thing"), None);
        assert_eq!(charset_from_content_type("text/html; charset=iso-2022-kr"), None);
        assert_eq!(charset_from_content_type("charset=utf-8"), None, "charset is a parameter, not the type");
    }

    #[test]
    fn meta_prescan_forms() {
        assert_eq!(
            prescan_meta_charset(b"<html><head><meta charset=\"windows-1251\">"),
            Some(encoding_rs::WINDOWS_1251)
        );
        assert_eq!(prescan_meta_charset(b"<META CHARSET=euc-jp>"), Some(encoding_rs::EUC_JP));
        assert_eq!(
            prescan_meta_charset(b"<meta http-equiv=\"Content-Type\" content=\"text/html; charset=ISO-8859-2\">"),
            Some(encoding_rs::ISO_8859_2)
        );
        assert_eq!(
            prescan_meta_charset(b"<meta content='text/html;charset=gb2312' http-equiv='content-type'/>"),
            Some(encoding_rs::GBK)
        );
        // `content` without the http-equiv pragma does not count.
        assert_eq!(prescan_meta_charset(b"<meta content=\"text/html; charset=koi8-r\">"), None);
        // UTF-16 declared in a meta means UTF-8; x-user-defined means windows-1252.
        assert_eq!(prescan_meta_charset(b"<meta charset=utf-16le>"), Some(UTF_8));
        assert_eq!(prescan_meta_charset(b"<meta charset=x-user-defined>"), Some(WINDOWS_1252));
        // A meta inside a comment or a script does not count; a '>' inside a quoted attribute does not end the tag.
        assert_eq!(prescan_meta_charset(b"<!-- <meta charset=koi8-r> --><meta charset=big5>"), Some(encoding_rs::BIG5));
        assert_eq!(
            prescan_meta_charset(b"<script>var s='<meta charset=koi8-r>';</script><meta charset=big5>"),
            Some(encoding_rs::BIG5)
        );
        assert_eq!(
            prescan_meta_charset(b"<a title=\"<meta charset=koi8-r>\"><meta charset=big5>"),
            Some(encoding_rs::BIG5)
        );
        // Unknown labels are skipped, the next meta is used.
        assert_eq!(prescan_meta_charset(b"<meta charset=bogus><meta charset=utf-8>"), Some(UTF_8));
        assert_eq!(prescan_meta_charset(b"<meta charset"), None);
        assert_eq!(prescan_meta_charset(b"<meta charset=\"utf-8"), None);
        assert_eq!(prescan_meta_charset(b""), None);
    }

    #[test]
    fn meta_prescan_window() {
        let mut late_in_head = b"<html><head><style>".to_vec();
        late_in_head.extend(std::iter::repeat_n(b'x', 3000));
        late_in_head.extend_from_slice(b"</style><meta charset=windows-1250></head><body>");
        assert_eq!(prescan_meta_charset(&late_in_head), Some(encoding_rs::WINDOWS_1250));

        let mut late_in_body = b"<html><head></head><body><p>".to_vec();
        late_in_body.extend(std::iter::repeat_n(b'x', 3000));
        late_in_body.extend_from_slice(b"</p><meta charset=windows-1250>");
        assert_eq!(prescan_meta_charset(&late_in_body), None);
    }

    #[test]
    fn tld_extraction() {
        assert_eq!(tld_of_url("https://www.Example.CO.JP/a?b#c").as_deref(), Some(&b"jp"[..]));
        assert_eq!(tld_of_url("http://user@host.ru:8080/").as_deref(), Some(&b"ru"[..]));
        assert_eq!(tld_of_url("http://host.de./x").as_deref(), Some(&b"de"[..]));
        assert_eq!(tld_of_url("http://127.0.0.1/").as_deref(), None);
        assert_eq!(tld_of_url("http://[::1]/").as_deref(), None);
        assert_eq!(tld_of_url("http://пример.рф/").as_deref(), None);
        assert_eq!(tld_of_url("").as_deref(), None);
    }

    #[test]
    fn http_header_overrides_meta() {
        // "Привет" in windows-1251, with a meta that claims windows-1252.
        let page = b"<meta charset=windows-1252><p>\xCF\xF0\xE8\xE2\xE5\xF2</p>";
        let (text, name) = decode_html(page, Some("text/html; charset=windows-1251"), None);
        assert_eq!(name, "windows-1251");
        assert!(text.contains("Привет"), "{text}");
        let (text, name) = decode_html(page, None, None);
        assert_eq!(name, "windows-1252");
        assert!(text.contains("Ïðèâåò"), "{text}");
    }

    #[test]
    fn unknown_header_charset_falls_back_to_meta() {
        let page = b"<meta charset=windows-1251><p>\xCF\xF0\xE8\xE2\xE5\xF2</p>";
        let (text, name) = decode_html(page, Some("text/html; charset=klingon"), None);
        assert_eq!(name, "windows-1251");
        assert!(text.contains("Привет"));
        let (_, name) = decode_html(page, Some("text/html"), None);
        assert_eq!(name, "windows-1251");
    }

    #[test]
    fn meta_overrides_detection() {
        // Valid Shift_JIS bytes for "日本語のテキスト" that detection alone would read differently
        // once the meta says windows-1251.
        let (encoded, _, _) = encoding_rs::SHIFT_JIS.encode("日本語のテキストです。日本語のテキストです。");
        let mut page =
            b"<html><head><meta http-equiv=Content-Type content=\"text/html; charset=windows-1251\"></head><body>"
                .to_vec();
        page.extend_from_slice(&encoded);
        let (_, name) = decode_html(&page, None, None);
        assert_eq!(name, "windows-1251");
        // Without the meta, chardetng recognises Shift_JIS.
        let mut bare = b"<html><head></head><body>".to_vec();
        bare.extend_from_slice(&encoded);
        let (text, name) = decode_html(&bare, None, Some("http://example.jp/"));
        assert_eq!(name, "Shift_JIS");
        assert!(text.contains("日本語のテキストです。"), "{text}");
    }

    #[test]
    fn bom_wins_and_is_removed() {
        let mut page = vec![0xEF, 0xBB, 0xBF];
        page.extend_from_slice("<meta charset=windows-1252><p>café</p>".as_bytes());
        let (text, name) = decode_html(&page, Some("text/html; charset=windows-1252"), None);
        assert_eq!(name, "UTF-8");
        assert!(text.starts_with("<meta"), "BOM must be removed: {text:?}");
        assert!(text.contains("café"));

        let mut page = vec![0xFF, 0xFE];
        for unit in "<p>Grüße</p>".encode_utf16() {
            page.extend_from_slice(&unit.to_le_bytes());
        }
        let (text, name) = decode_html(&page, None, None);
        assert_eq!((&*text, name), ("<p>Grüße</p>", "UTF-16LE"));
    }

    #[test]
    fn valid_utf8_is_borrowed_not_copied() {
        let page = "<p>Grüße</p>".as_bytes();
        let (text, name) = decode_html(page, Some("text/html; charset=utf-8"), None);
        assert!(matches!(text, Cow::Borrowed(t) if t.as_ptr() == page.as_ptr()), "{text:?}");
        assert_eq!(name, "UTF-8");
        // A legacy encoding is decoded into a new string.
        let (text, name) = decode_html(b"<p>Gr\xfc\xdfe</p>", Some("text/html; charset=iso-8859-1"), None);
        assert!(matches!(text, Cow::Owned(_)));
        assert_eq!((&*text, name), ("<p>Grüße</p>", "windows-1252"));
    }

    #[test]
    fn declared_legacy_yields_to_valid_utf8() {
        let page = "<meta charset=iso-8859-1><p>Straße für Bäume</p>".as_bytes();
        let sniffed = sniff_encoding(page, None, None);
        assert_eq!((sniffed.encoding, sniffed.source), (UTF_8, EncodingSource::Utf8Override));
        let (text, _) = decode_html(page, Some("text/html; charset=ISO-8859-1"), None);
        assert!(text.contains("Straße für Bäume"));
        // Pure ASCII keeps the declared name.
        let (_, name) = decode_html(b"<meta charset=iso-8859-1><p>plain</p>", None, None);
        assert_eq!(name, "windows-1252");
    }

    #[test]
    fn undeclared_utf8_with_truncated_tail_is_utf8() {
        let mut page = "<p>Grüße aus München</p><p>€".as_bytes().to_vec();
        page.pop(); // cut the euro sign in the middle
        let (text, name) = decode_html(&page, None, Some("https://example.de/"));
        assert_eq!(name, "UTF-8");
        assert!(text.contains("Grüße aus München"));
        assert!(text.ends_with('\u{FFFD}'));
    }

    #[test]
    fn undeclared_legacy_is_detected_with_tld_hint() {
        let (encoded, _, _) =
            encoding_rs::WINDOWS_1251.encode("<p>Съешь же ещё этих мягких французских булок, да выпей чаю.</p>");
        let (text, name) = decode_html(&encoded, None, Some("http://example.ru/news"));
        assert_eq!(name, "windows-1251");
        assert!(text.contains("французских"));
    }

    #[test]
    fn invalid_sequences_become_replacement_characters() {
        let (text, name) = decode_html(b"<meta charset=utf-8><p>a\xFFb</p>", None, None);
        assert_eq!(name, "UTF-8");
        assert!(text.contains("a\u{FFFD}b"));
    }

    #[test]
    fn end_tag_search() {
        let b = b"x</scriptx></SCRIPT >y";
        assert_eq!(find_end_tag_start(b, 0, b"script"), Some(11));
        assert_eq!(find_end_tag(b, 0, b"script"), Some(21));
        assert_eq!(find_end_tag(b"</script", 0, b"script"), Some(8));
        assert_eq!(find_end_tag(b"</scrip", 0, b"script"), None);
    }
}
