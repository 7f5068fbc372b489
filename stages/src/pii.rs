//! `pii` transform: replaces email addresses, public IP addresses (IPv4 and
//! IPv6) and phone numbers in `text` with placeholder values, and counts the
//! replacements per kind (`redacted:email`, `redacted:ipv4`, ...).
//!
//! ```text
//! text ──memchr '@'──► email candidates ───┐
//!      ──memchr ':'──► IPv6 candidates ────┼─► validated spans ─► text with replacements
//!      ──digit runs──► IPv4 / phone ───────┘   (sorted, no overlap)   └─► counters redacted:<kind>
//! ```
//!
//! Candidates are found by scanning for the one byte each kind needs (`@`,
//! `:`, a digit) and validated by hand, so text without PII costs one pass.
//! Replacements follow datatrove's `PIIFormatter` (placeholders that look like
//! the real thing) but are deterministic: a match gets the replacement picked
//! by a hash of its own text, not by a counter across documents.
//!
//! `content_hash`, when present, is left as it is: it stays the hash of the
//! text before redaction. Put `content_hash` after `pii` to hash the redacted
//! text instead.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, GenericStringArray, GenericStringBuilder, OffsetSizeTrait};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use smelt_engine::yaml::PathSeg;
use smelt_engine::{
    parse_options, require_column, ConfigureContext, OptionError, Processed, Result, SchemaError, StageConfig,
    Transform, TransformConfig,
};

/// A kind of personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PiiKind {
    /// Email addresses (`jane.doe@example.com`).
    Email,
    /// IPv4 addresses (`81.2.69.160`).
    Ipv4,
    /// IPv6 addresses (`2a00:1450:4009::200e`).
    Ipv6,
    /// Phone numbers: international (`+44 20 7946 0958`), North American
    /// (`(555) 123-4567`, `555-123-4567`) and national with a trunk `0`
    /// (`020 7946 0958`, `01 23 45 67 89`).
    Phone,
}

impl PiiKind {
    /// Every kind, in counter order.
    pub const ALL: [PiiKind; 4] = [PiiKind::Email, PiiKind::Ipv4, PiiKind::Ipv6, PiiKind::Phone];

    /// The name used in options and counters.
    pub fn as_str(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Ipv4 => "ipv4",
            PiiKind::Ipv6 => "ipv6",
            PiiKind::Phone => "phone",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

fn all_kinds() -> Vec<PiiKind> {
    PiiKind::ALL.to_vec()
}

fn yes() -> bool {
    true
}

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

fn default_email() -> Vec<String> {
    strings(&["email@example.com", "firstname.lastname@example.org"])
}

fn default_ipv4() -> Vec<String> {
    strings(&["192.0.2.1", "198.51.100.1", "203.0.113.1"])
}

fn default_ipv6() -> Vec<String> {
    strings(&["2001:db8::1"])
}

fn default_phone() -> Vec<String> {
    strings(&["+1-202-555-0100"])
}

/// Options of `pii`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PiiConfig {
    /// Kinds to redact: `email`, `ipv4`, `ipv6`, `phone` (default: all four).
    #[serde(default = "all_kinds")]
    pub kinds: Vec<PiiKind>,
    /// Redact only public IP addresses (default true, as datatrove): private,
    /// loopback, link-local, documentation, multicast and reserved ranges stay.
    #[serde(default = "yes")]
    pub only_public_ips: bool,
    /// Replacement strings per kind; each match gets the one picked by a hash
    /// of the matched text, so an address always gets the same replacement.
    #[serde(default)]
    pub replacements: Replacements,
}

/// Replacement strings of `pii`, per kind.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Replacements {
    /// For email addresses (default datatrove's: `email@example.com`, `firstname.lastname@example.org`).
    #[serde(default = "default_email")]
    pub email: Vec<String>,
    /// For IPv4 addresses (default the RFC 5737 documentation addresses `192.0.2.1`, `198.51.100.1`, `203.0.113.1`).
    #[serde(default = "default_ipv4")]
    pub ipv4: Vec<String>,
    /// For IPv6 addresses (default the RFC 3849 documentation address `2001:db8::1`).
    #[serde(default = "default_ipv6")]
    pub ipv6: Vec<String>,
    /// For phone numbers (default `+1-202-555-0100`, in the 555-0100..0199 range kept for fiction).
    #[serde(default = "default_phone")]
    pub phone: Vec<String>,
}

impl Default for Replacements {
    fn default() -> Self {
        Replacements { email: default_email(), ipv4: default_ipv4(), ipv6: default_ipv6(), phone: default_phone() }
    }
}

impl Replacements {
    fn of(&self, kind: PiiKind) -> &[String] {
        match kind {
            PiiKind::Email => &self.email,
            PiiKind::Ipv4 => &self.ipv4,
            PiiKind::Ipv6 => &self.ipv6,
            PiiKind::Phone => &self.phone,
        }
    }
}

fn option_error(path: &[&str], message: String) -> OptionError {
    OptionError { path: path.iter().map(|k| PathSeg::Key(k.to_string())).collect(), message, at_key: false }
}

/// Registry hook.
///
/// # Errors
/// Unknown or invalid options, an empty `kinds` list or an empty replacement list.
pub fn configure(options: serde_json::Value, _ctx: &ConfigureContext) -> Result<StageConfig, OptionError> {
    let c: PiiConfig = parse_options(options)?;
    if c.kinds.is_empty() {
        return Err(option_error(&["kinds"], "is empty: name at least one of email, ipv4, ipv6, phone".into()));
    }
    for kind in PiiKind::ALL {
        if c.replacements.of(kind).is_empty() {
            return Err(option_error(&["replacements", kind.as_str()], "needs at least one replacement string".into()));
        }
    }
    Ok(StageConfig::Transform(Arc::new(c)))
}

/// A piece of personal data found in a text (byte offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
    /// What it is.
    pub kind: PiiKind,
}

/// Finds PII in texts.
#[derive(Debug, Clone)]
pub struct Detector {
    kinds: [bool; 4],
    only_public_ips: bool,
}

impl Detector {
    /// A detector for `kinds`.
    pub fn new(kinds: &[PiiKind], only_public_ips: bool) -> Self {
        let mut on = [false; 4];
        for k in kinds {
            on[k.index()] = true;
        }
        Detector { kinds: on, only_public_ips }
    }

    fn wants(&self, kind: PiiKind) -> bool {
        self.kinds[kind.index()]
    }

    /// The PII spans of `text` into `out`, sorted and not overlapping (where
    /// two overlap, the one starting first wins, then the longer).
    pub fn find(&self, text: &str, out: &mut Vec<Span>) {
        out.clear();
        if self.wants(PiiKind::Email) {
            find_emails(text, out);
        }
        if self.wants(PiiKind::Ipv6) {
            find_ipv6(text, self.only_public_ips, out);
        }
        if self.wants(PiiKind::Ipv4) || self.wants(PiiKind::Phone) {
            find_numbers(text, self, out);
        }
        out.sort_by_key(|s| (s.start, std::cmp::Reverse(s.end)));
        let mut kept = 0;
        let mut last_end = 0;
        for i in 0..out.len() {
            if out[i].start >= last_end {
                last_end = out[i].end;
                out[kept] = out[i];
                kept += 1;
            }
        }
        out.truncate(kept);
    }
}

/// Finds and replaces PII.
#[derive(Debug, Clone)]
pub struct Redactor {
    detector: Detector,
    replacements: Replacements,
    spans: Vec<Span>,
}

impl Redactor {
    /// A redactor for a stage's options.
    pub fn new(config: &PiiConfig) -> Self {
        Redactor {
            detector: Detector::new(&config.kinds, config.only_public_ips),
            replacements: config.replacements.clone(),
            spans: Vec::new(),
        }
    }

    /// Writes `text` with its PII replaced into `out` and adds the
    /// replacements per kind (in [`PiiKind::ALL`] order) to `counts`.
    /// Returns whether anything was replaced.
    pub fn redact(&mut self, text: &str, out: &mut String, counts: &mut [u64; 4]) -> bool {
        out.clear();
        self.detector.find(text, &mut self.spans);
        let mut last = 0;
        for s in &self.spans {
            out.push_str(&text[last..s.start]);
            let choices = self.replacements.of(s.kind);
            let pick = match choices.len() {
                1 => 0,
                n => (xxhash_rust::xxh3::xxh3_64(&text.as_bytes()[s.start..s.end]) % n as u64) as usize,
            };
            out.push_str(&choices[pick]);
            counts[s.kind.index()] += 1;
            last = s.end;
        }
        out.push_str(&text[last..]);
        !self.spans.is_empty()
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

// ---- email ----------------------------------------------------------------

/// Characters of an email local part (RFC 5322 `atext` and the dot), as datatrove's pattern.
fn is_local_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b)
}

/// Top-level "domains" that are file extensions: `logo@2x.png` is an image name, not an address.
const FILE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "gif", "svg", "webp"];

fn valid_domain(d: &[u8]) -> bool {
    if d.len() > 253 {
        return false;
    }
    let mut labels = 0;
    let mut last: &[u8] = &[];
    for label in d.split(|&c| c == b'.') {
        if label.is_empty() || label.len() > 63 || label[0] == b'-' || label[label.len() - 1] == b'-' {
            return false;
        }
        labels += 1;
        last = label;
    }
    labels >= 2
        && last.len() >= 2
        && last.iter().all(u8::is_ascii_alphabetic)
        && !FILE_EXTENSIONS.iter().any(|e| e.as_bytes().eq_ignore_ascii_case(last))
}

fn find_emails(text: &str, out: &mut Vec<Span>) {
    let b = text.as_bytes();
    let mut floor = 0;
    for at in memchr::memchr_iter(b'@', b) {
        if at < floor {
            continue;
        }
        let mut start = at;
        while start > floor && is_local_byte(b[start - 1]) {
            start -= 1;
        }
        // Like datatrove's leading `\b`: the address starts at a word character.
        while start < at && !is_word_byte(b[start]) {
            start += 1;
        }
        let local = &b[start..at];
        if local.is_empty() || local.len() > 64 || local.ends_with(b".") || local.windows(2).any(|w| w == b"..") {
            continue;
        }
        let mut end = at + 1;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'.' || b[end] == b'-') {
            end += 1;
        }
        while end > at + 1 && matches!(b[end - 1], b'.' | b'-') {
            end -= 1;
        }
        if !valid_domain(&b[at + 1..end]) {
            continue;
        }
        out.push(Span { start, end, kind: PiiKind::Email });
        floor = end;
    }
}

// ---- IP addresses -----------------------------------------------------------

/// Whether an IPv4 address can point at a person's machine: not private,
/// loopback, link-local, shared (CGNAT), documentation, benchmarking,
/// multicast, reserved or "this network".
pub fn ipv4_is_public(a: Ipv4Addr) -> bool {
    let [x, y, z, _] = a.octets();
    !(x == 0
        || x == 10
        || x == 127
        || x >= 224
        || (x == 100 && (64..128).contains(&y))
        || (x == 169 && y == 254)
        || (x == 172 && (16..32).contains(&y))
        || (x == 192 && y == 168)
        || (x == 192 && y == 0 && (z == 0 || z == 2))
        || (x == 198 && (y == 18 || y == 19))
        || (x == 198 && y == 51 && z == 100)
        || (x == 203 && y == 0 && z == 113))
}

/// Whether an IPv6 address is global unicast (2000::/3, less the IETF
/// protocol block 2001::/23 and the documentation prefixes), or an
/// IPv4-mapped public address.
pub fn ipv6_is_public(a: Ipv6Addr) -> bool {
    if let Some(v4) = a.to_ipv4_mapped() {
        return ipv4_is_public(v4);
    }
    let s = a.segments();
    (s[0] & 0xe000) == 0x2000
        && !(s[0] == 0x2001 && (s[1] < 0x0200 || s[1] == 0x0db8))
        && !(s[0] == 0x3fff && s[1] < 0x1000)
}

fn find_ipv6(text: &str, only_public: bool, out: &mut Vec<Span>) {
    let b = text.as_bytes();
    let mut floor = 0;
    for colon in memchr::memchr_iter(b':', b) {
        if colon < floor {
            continue;
        }
        let mut start = colon;
        while start > floor && b[start - 1].is_ascii_hexdigit() {
            start -= 1;
        }
        let mut end = colon + 1;
        while end < b.len() && (b[end].is_ascii_hexdigit() || b[end] == b':' || b[end] == b'.') {
            end += 1;
        }
        floor = end;
        while end > colon + 1 && b[end - 1] == b'.' {
            end -= 1;
        }
        if end - start >= 2 && b[end - 1] == b':' && b[end - 2] != b':' {
            end -= 1;
        }
        let before_ok = start == 0 || !(is_word_byte(b[start - 1]) || matches!(b[start - 1], b'.' | b':'));
        let after_ok = end == b.len() || !is_word_byte(b[end]);
        if !before_ok || !after_ok || !b[start..end].iter().any(u8::is_ascii_hexdigit) {
            continue;
        }
        let Ok(addr) = text[start..end].parse::<Ipv6Addr>() else { continue };
        if only_public && !ipv6_is_public(addr) {
            continue;
        }
        out.push(Span { start, end, kind: PiiKind::Ipv6 });
    }
}

/// Words that make a dotted quad a version or section number (`version 4.2.1.0`, `section 12.2.2.1`).
const VERSION_WORDS: [&str; 15] = [
    "version",
    "ver",
    "v",
    "release",
    "build",
    "firmware",
    "kernel",
    "update",
    "section",
    "sect",
    "chapter",
    "abschnitt",
    "kapitel",
    "avsnitt",
    "chapitre",
];

/// A dotted quad that starts a line and ends with a dot is a section number (`12.2.2.1. Title`).
fn is_heading_number(b: &[u8], i: usize, end: usize) -> bool {
    let mut l = i;
    while l > 0 && matches!(b[l - 1], b' ' | b'\t') {
        l -= 1;
    }
    let line_start = l == 0 || matches!(b[l - 1], b'\n' | b'\r');
    let spaced = |j: usize| j == b.len() || b[j].is_ascii_whitespace() || b[j..].starts_with("\u{a0}".as_bytes());
    line_start && end < b.len() && b[end] == b'.' && spaced(end + 1)
}

fn after_version_word(b: &[u8], i: usize) -> bool {
    let mut e = i;
    while e > 0 && matches!(b[e - 1], b' ' | b'\t' | 0xA0 | 0xC2) {
        // Spaces, tabs and no-break spaces (U+00A0 is C2 A0 in UTF-8).
        e -= 1;
    }
    if e > 0 && b[e - 1] == b'.' {
        e -= 1;
    }
    let mut s = e;
    while s > 0 && e - s <= 8 && b[s - 1].is_ascii_alphabetic() {
        s -= 1;
    }
    let word = &b[s..e];
    VERSION_WORDS.iter().any(|v| v.as_bytes().eq_ignore_ascii_case(word))
}

/// An IPv4 address starting at the digit `i`: its end.
fn ipv4_at(b: &[u8], i: usize, only_public: bool) -> Option<usize> {
    let n = b.len();
    let mut pos = i;
    let mut octets = [0u8; 4];
    for (k, octet) in octets.iter_mut().enumerate() {
        let st = pos;
        let mut v: u32 = 0;
        while pos < n && b[pos].is_ascii_digit() && pos - st < 3 {
            v = v * 10 + u32::from(b[pos] - b'0');
            pos += 1;
        }
        let leading_zero = pos - st > 1 && b[st] == b'0';
        if pos == st || (pos < n && b[pos].is_ascii_digit()) || leading_zero || v > 255 {
            return None;
        }
        *octet = v as u8;
        if k < 3 {
            if pos < n && b[pos] == b'.' {
                pos += 1;
            } else {
                return None;
            }
        }
    }
    let continues = pos < n && (is_word_byte(b[pos]) || (b[pos] == b'.' && pos + 1 < n && b[pos + 1].is_ascii_digit()));
    if continues || (i > 0 && b[i - 1] == b'.') || after_version_word(b, i) || is_heading_number(b, i, pos) {
        return None;
    }
    if only_public && !ipv4_is_public(Ipv4Addr::from(octets)) {
        return None;
    }
    Some(pos)
}

// ---- phone numbers ----------------------------------------------------------

/// One digit group of a phone number candidate.
#[derive(Debug, Clone, Copy, Default)]
struct Group {
    /// First digit.
    start: usize,
    /// One past the last digit.
    digits_end: usize,
    /// End including a closing `)`.
    end: usize,
    /// Written in parentheses.
    paren: bool,
    /// The separator before it: b' ', b'-', b'.', b'/', or 0 (none, next to a parenthesis).
    sep: u8,
}

impl Group {
    fn len(&self) -> usize {
        self.digits_end - self.start
    }
}

const MAX_GROUPS: usize = 8;
const MAX_DIGITS: usize = 17;

/// Characters that, right before a number, make it part of something else
/// (an amount, an identifier, a range, a path).
fn blocks_phone_start(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_.,-+/$€£¥#%&*=^~\\|@".contains(c)
}

fn phone_end_ok(b: &[u8], end: usize) -> bool {
    end == b.len()
        || !(is_word_byte(b[end])
            || (matches!(b[end], b'.' | b',' | b'-' | b'/') && end + 1 < b.len() && b[end + 1].is_ascii_digit()))
}

/// Whether the digit groups form a phone number in a format we accept.
fn is_phone(b: &[u8], plus: bool, groups: &[Group]) -> bool {
    let digits: usize = groups.iter().map(Group::len).sum();
    let first = groups[0];
    if plus {
        // +CC ...: E.164 allows at most 15 digits; a country code never starts with 0.
        return (8..=15).contains(&digits) && !first.paren && b[first.start] != b'0';
    }
    if first.len() >= 2 && b[first.start] == b'0' && b[first.start + 1] == b'0' {
        // 00 CC ...: the international prefix written out; a country code never starts with 0.
        let cc = if first.len() > 2 { first.start + 2 } else { groups.get(1).map_or(first.start, |g| g.start) };
        return !first.paren && groups.len() >= 2 && (10..=17).contains(&digits) && b[cc] != b'0';
    }
    // North American: [1] (NXX) NXX-XXXX, NXX-NXX-XXXX, NXX.NXX.XXXX.
    let nanp = if groups.len() == 4 && first.len() == 1 && b[first.start] == b'1' && !first.paren {
        &groups[1..]
    } else {
        groups
    };
    if nanp.len() == 3
        && nanp[0].len() == 3
        && nanp[1].len() == 3
        && nanp[2].len() == 4
        && !nanp[1].paren
        && !nanp[2].paren
    {
        let area_ok = (b'2'..=b'9').contains(&b[nanp[0].start]);
        let (s1, s2) = (nanp[1].sep, nanp[2].sep);
        let format_ok = if nanp[0].paren {
            matches!(s1, 0 | b' ' | b'-' | b'.') && matches!(s2, b'-' | b' ' | b'.')
        } else {
            s1 == s2 && matches!(s1, b'-' | b'.')
        };
        if area_ok && format_ok {
            return true;
        }
    }
    // National with a trunk 0: 020 7946 0958, (020) 7946 0958, 01 23 45 67 89, 030/12345678.
    if b[first.start] == b'0' && groups.len() >= 2 && (9..=11).contains(&digits) && first.len() <= 5 {
        let groups_ok = groups.iter().all(|g| g.len() >= 2) && groups[1..].iter().all(|g| !g.paren);
        let seps_ok = groups[1..].iter().filter(|g| g.sep != 0).all(|g| g.sep == groups[1].sep)
            && (first.paren || groups[1].sep != 0);
        return groups_ok && seps_ok;
    }
    false
}

/// A phone number around the digit `i` (which starts a number): its span.
fn phone_at(text: &str, i: usize) -> Option<(usize, usize)> {
    let b = text.as_bytes();
    let n = b.len();
    let mut s = i;
    let mut in_paren = false;
    if s > 0 && b[s - 1] == b'(' {
        s -= 1;
        in_paren = true;
    }
    let plus = s > 0 && b[s - 1] == b'+';
    if plus {
        s -= 1;
    }
    if text[..s].chars().next_back().is_some_and(blocks_phone_start) {
        return None;
    }
    let mut groups = [Group::default(); MAX_GROUPS];
    let mut count = 0;
    let mut digits = 0;
    let mut pos = i;
    let mut sep = 0u8;
    loop {
        let start = pos;
        while pos < n && b[pos].is_ascii_digit() {
            pos += 1;
        }
        let mut g = Group { start, digits_end: pos, end: pos, paren: in_paren, sep };
        if in_paren {
            if pos < n && b[pos] == b')' {
                pos += 1;
                g.end = pos;
            } else {
                break;
            }
        }
        groups[count] = g;
        count += 1;
        digits += g.len();
        if count == MAX_GROUPS || digits > MAX_DIGITS {
            break;
        }
        let mut q = pos;
        let mut sp = 0u8;
        if q < n && matches!(b[q], b' ' | b'-' | b'.' | b'/') {
            sp = b[q];
            q += 1;
        }
        let next_paren = q < n && b[q] == b'(' && sp != b'-' && sp != b'.' && sp != b'/';
        if next_paren {
            q += 1;
        }
        let joined = sp != 0 || next_paren || g.paren;
        if q < n && b[q].is_ascii_digit() && joined {
            pos = q;
            sep = sp;
            in_paren = next_paren;
        } else {
            break;
        }
    }
    if count == 0 {
        return None;
    }
    for k in (1..=count).rev() {
        let end = groups[k - 1].end;
        let boundary_ok = if k < count { groups[k].sep == b' ' } else { phone_end_ok(b, end) };
        let spaced = groups[1..k].iter().any(|g| g.sep == b' ');
        if boundary_ok && is_phone(b, plus, &groups[..k]) && (plus || !spaced || !in_number_run(b, s, end)) {
            return Some((s, end));
        }
    }
    None
}

/// Whether a space-separated candidate sits among other number tokens, as in
/// a hex dump (`75 01 95 08 81 02 95 01`) or a table row.
fn in_number_run(b: &[u8], s: usize, end: usize) -> bool {
    let hex_token = |t: &[u8]| !t.is_empty() && t.iter().all(u8::is_ascii_hexdigit);
    let before = s >= 2 && b[s - 1] == b' ' && {
        let mut t = s - 1;
        while t > 0 && b[t - 1].is_ascii_alphanumeric() {
            t -= 1;
        }
        hex_token(&b[t..s - 1])
    };
    let after = end + 1 < b.len() && b[end] == b' ' && {
        let mut t = end + 1;
        while t < b.len() && b[t].is_ascii_alphanumeric() {
            t += 1;
        }
        hex_token(&b[end + 1..t])
    };
    before || after
}

/// Skips a number with its inner punctuation (`2024-05-01`, `1.2.3.4.5`, `1,000`).
fn skip_number(b: &[u8], mut p: usize) -> usize {
    loop {
        while p < b.len() && b[p].is_ascii_digit() {
            p += 1;
        }
        if p + 1 < b.len() && matches!(b[p], b'.' | b',' | b':' | b'/' | b'-') && b[p + 1].is_ascii_digit() {
            p += 1;
        } else {
            return p;
        }
    }
}

fn find_numbers(text: &str, det: &Detector, out: &mut Vec<Span>) {
    let b = text.as_bytes();
    let (ipv4, phone) = (det.wants(PiiKind::Ipv4), det.wants(PiiKind::Phone));
    let mut i = 0;
    while i < b.len() {
        match b[i..].iter().position(u8::is_ascii_digit) {
            Some(k) => i += k,
            None => break,
        }
        if i > 0 && is_word_byte(b[i - 1]) {
            // Digits inside a word: x86, 3rd, abc123.
            while i < b.len() && is_word_byte(b[i]) {
                i += 1;
            }
            continue;
        }
        if ipv4 {
            if let Some(end) = ipv4_at(b, i, det.only_public_ips) {
                out.push(Span { start: i, end, kind: PiiKind::Ipv4 });
                i = end;
                continue;
            }
        }
        if phone {
            if let Some((start, end)) = phone_at(text, i) {
                out.push(Span { start, end, kind: PiiKind::Phone });
                i = end;
                continue;
            }
        }
        i = skip_number(b, i);
    }
}

// ---- the stage ----------------------------------------------------------------

impl TransformConfig for PiiConfig {
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, SchemaError> {
        require_column(input, "text", &[DataType::LargeUtf8, DataType::Utf8])?;
        Ok(input.clone())
    }

    fn resolved(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn build(&self, input: &SchemaRef) -> Result<Box<dyn Transform>> {
        self.output_schema(input).map_err(|e| smelt_engine::EngineError::Internal(e.0))?;
        Ok(Box::new(Pii { redactor: Redactor::new(self), scratch: String::new(), counts: [0; 4] }))
    }
}

struct Pii {
    redactor: Redactor,
    scratch: String,
    counts: [u64; 4],
}

impl Pii {
    fn redact_column<O: OffsetSizeTrait>(&mut self, col: &GenericStringArray<O>) -> ArrayRef {
        let mut out = GenericStringBuilder::<O>::with_capacity(col.len(), col.value_data().len());
        for i in 0..col.len() {
            if col.is_null(i) {
                out.append_null();
            } else if self.redactor.redact(col.value(i), &mut self.scratch, &mut self.counts) {
                out.append_value(&self.scratch);
            } else {
                out.append_value(col.value(i));
            }
        }
        Arc::new(out.finish())
    }
}

impl Transform for Pii {
    fn process(&mut self, batch: RecordBatch) -> Result<Processed> {
        let idx = batch.schema().index_of("text")?;
        let text = batch.column(idx).clone();
        let redacted = match text.data_type() {
            DataType::LargeUtf8 => self.redact_column(text.as_string::<i64>()),
            _ => self.redact_column(text.as_string::<i32>()),
        };
        let mut cols = batch.columns().to_vec();
        cols[idx] = redacted;
        Ok(Processed::Batch(RecordBatch::try_new(batch.schema(), cols)?))
    }

    fn take_counters(&mut self) -> std::collections::BTreeMap<String, u64> {
        let counts = std::mem::take(&mut self.counts);
        PiiKind::ALL
            .iter()
            .filter(|k| counts[k.index()] > 0)
            .map(|k| (format!("redacted:{}", k.as_str()), counts[k.index()]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{LargeStringArray, StringArray};
    use arrow::datatypes::{Field, Schema};
    use smelt_engine::stage::doc;

    fn redact(text: &str) -> String {
        let cfg: PiiConfig = serde_json::from_value(serde_json::json!({})).unwrap();
        let mut r = Redactor::new(&cfg);
        let mut out = String::new();
        r.redact(text, &mut out, &mut [0; 4]);
        out
    }

    fn found(text: &str) -> Vec<(&str, PiiKind)> {
        let mut spans = Vec::new();
        Detector::new(&PiiKind::ALL, true).find(text, &mut spans);
        spans.iter().map(|s| (&text[s.start..s.end], s.kind)).collect()
    }

    #[test]
    fn mailing_list_headers_and_quotes() {
        // Shaped like a Debian mailing-list message (lists.debian.org archives).
        let msg = "From: Jane Doe <jane.doe@lists.example.net>\n\
                   To: debian-devel@lists.debian.org\n\
                   On Mon, 3 Jun 2024 14:02:11 +0200, bob_smith+debian@mail.example.co.uk wrote:\n\
                   > Please write to 'security@debian.org' (not to me).\n\
                   > Ping 8.8.8.8 and 81.2.69.160, not 192.168.1.20 or 127.0.0.1.";
        assert_eq!(
            found(msg),
            vec![
                ("jane.doe@lists.example.net", PiiKind::Email),
                ("debian-devel@lists.debian.org", PiiKind::Email),
                ("bob_smith+debian@mail.example.co.uk", PiiKind::Email),
                ("security@debian.org", PiiKind::Email),
                ("8.8.8.8", PiiKind::Ipv4),
                ("81.2.69.160", PiiKind::Ipv4),
            ]
        );
        let out = redact(msg);
        assert!(out.starts_with("From: Jane Doe <"), "{out}");
        assert!(!out.contains("jane.doe") && !out.contains("8.8.8.8") && !out.contains("81.2.69.160"), "{out}");
        assert!(out.contains("192.168.1.20") && out.contains("127.0.0.1") && out.contains("14:02:11"), "{out}");
        // The same address always gets the same replacement.
        assert_eq!(redact("a@example.com b"), redact("a@example.com b"));
    }

    #[test]
    fn things_that_are_not_emails() {
        for text in [
            "npm i @types/node and lodash@4.17.21",
            "icon logo@2x.png, photo@3x.jpg",
            "user@localhost and @handle",
            "a..b@example.com",
            "x@-bad.com",
        ] {
            assert!(found(text).is_empty(), "{text}: {:?}", found(text));
        }
    }

    #[test]
    fn ipv6_with_double_colons_and_code_that_looks_like_it() {
        assert_eq!(
            found("Reach 2a00:1450:4009:81f::200e or [2606:4700:4700::1111]:53, ::ffff:81.2.69.160."),
            vec![
                ("2a00:1450:4009:81f::200e", PiiKind::Ipv6),
                ("2606:4700:4700::1111", PiiKind::Ipv6),
                ("::ffff:81.2.69.160", PiiKind::Ipv6),
            ]
        );
        // Loopback, link-local, documentation, times, C++ and Rust paths.
        for text in ["::1 fe80::1%eth0 2001:db8::42", "at 10:30:45 today", "std::vector<int> a::b", "Face::add(x)"] {
            assert!(found(text).is_empty(), "{text}: {:?}", found(text));
        }
    }

    #[test]
    fn version_numbers_dates_and_plain_numbers_stay() {
        for text in [
            "Upgrade to 1.2.3 or 2.10.4-rc1, version 4.2.1.0 or v1.2.3.4.",
            "Chrome 120.0.6099.109 on 2024-05-01, 01.02.2023 and 12/31/1999.",
            "In 2019 sales rose 12% to $1,234,567.89 (about 1 234 567 EUR).",
            "Order 1234567890, ISBN 978-3-16-148410-0, range 1990-2000, score 3-2.",
            "Population 8 336 817; call ext. 1234; 10.0.0.1 is private; 00 00 00 00 00.",
            "x86 3rd abc1234567890 C++11 1.2.3.4.5",
            "See Avsnitt 6.7.3.1, or section 1.3.3.1.\n12.2.2.1. Vorbereitende Schritte\n",
            "(See Section\u{a0}55.2.2.1 for more)\n\n55.2.2.1.\u{a0}Multiple Servers",
            "00000010  75 01 95 08 81 02 95 01  75 08 81 03 95 05 75 01  |u.......u.....u.|",
            "| 0000: 02 23 44 30 13 40 ac 34 df 3d bf 9a 19 49 39",
        ] {
            assert!(found(text).is_empty(), "{text}: {:?}", found(text));
        }
    }

    #[test]
    fn phone_numbers_in_news_and_contact_text() {
        let text = "For tickets call (555) 123-4567 or 1-800-555-0199. In London dial +44 20 7946 0958 \
                    or 020 7946 0958; Paris: +33 1 23 45 67 89 or 01 23 45 67 89. Berlin 030/12345678, \
                    fax +49 (0)30 1234567, or 555.234.5678 and 0044 20 7946 0958.";
        let phones: Vec<&str> = found(text).into_iter().filter(|(_, k)| *k == PiiKind::Phone).map(|(t, _)| t).collect();
        assert_eq!(
            phones,
            vec![
                "(555) 123-4567",
                "1-800-555-0199",
                "+44 20 7946 0958",
                "020 7946 0958",
                "+33 1 23 45 67 89",
                "01 23 45 67 89",
                "030/12345678",
                "+49 (0)30 1234567",
                "555.234.5678",
                "0044 20 7946 0958",
            ]
        );
        // A trailing year is not part of the number; a longer dash chain is something else.
        assert_eq!(found("call 555-123-4567 2019"), vec![("555-123-4567", PiiKind::Phone)]);
        assert!(found("serial 555-123-4567-89").is_empty());
    }

    #[test]
    fn non_latin_text_and_odd_input() {
        assert_eq!(
            found("联系电话：+86 10 6552 9988，邮箱：wang.wei@example.cn。"),
            vec![("+86 10 6552 9988", PiiKind::Phone), ("wang.wei@example.cn", PiiKind::Email)]
        );
        assert_eq!(found("Пишите на ivan@example.ru — ответим"), vec![("ivan@example.ru", PiiKind::Email)]);
        for text in ["", "@", ":", "::", "+", "(", "((((1", "1.", "@@@@a.b", "+(0)", "\u{0}\u{feff}"] {
            assert!(found(text).is_empty(), "{text:?}");
        }
        // A huge run of digits and separators does not blow up.
        let long = "1-".repeat(100_000);
        assert!(found(&long).is_empty());
        let ips = "8.8.8.8 ".repeat(10_000);
        assert_eq!(found(&ips).len(), 10_000);
    }

    #[test]
    fn kinds_and_replacements_are_configurable() {
        let cfg: PiiConfig = serde_json::from_value(serde_json::json!({
            "kinds": ["email"],
            "replacements": {"email": ["<EMAIL>"]}
        }))
        .unwrap();
        let mut r = Redactor::new(&cfg);
        let (mut out, mut counts) = (String::new(), [0; 4]);
        assert!(r.redact("mail a@b.org or b@c.org from 8.8.8.8, +44 20 7946 0958", &mut out, &mut counts));
        assert_eq!(out, "mail <EMAIL> or <EMAIL> from 8.8.8.8, +44 20 7946 0958");
        assert_eq!(counts, [2, 0, 0, 0]);
        let all_ips: PiiConfig = serde_json::from_value(serde_json::json!({"only_public_ips": false})).unwrap();
        let mut r = Redactor::new(&all_ips);
        r.redact("gw 192.168.1.1, lo ::1", &mut out, &mut counts);
        assert!(!out.contains("192.168") && !out.contains(" ::1"), "{out}");
    }

    #[test]
    fn options_are_checked() {
        let e = configure(serde_json::json!({"kinds": ["mail"]}), &ConfigureContext::working_dir()).unwrap_err();
        assert!(e.message.contains("unknown variant"), "{}", e.message);
        let e = configure(serde_json::json!({"kinds": []}), &ConfigureContext::working_dir()).unwrap_err();
        assert_eq!(e.path, vec![PathSeg::Key("kinds".into())]);
        let e = configure(serde_json::json!({"replacements": {"phone": []}}), &ConfigureContext::working_dir())
            .unwrap_err();
        assert_eq!(e.path, vec![PathSeg::Key("replacements".into()), PathSeg::Key("phone".into())]);
        assert!(
            configure(serde_json::json!({"replacement": {}}), &ConfigureContext::working_dir()).unwrap_err().at_key
        );
    }

    #[test]
    fn redacts_the_text_column_and_counts() {
        let schema = Arc::new(Schema::new(vec![doc::id(), doc::text(), Field::new("n", DataType::Utf8, true)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["a", "b", "c"])),
                Arc::new(LargeStringArray::from(vec![
                    "Contact press@example.com or +1 202 555 0143.",
                    "Nothing here, 2024.",
                    "Server 81.2.69.160 and 2a00:1450:4009:81f::200e",
                ])),
                Arc::new(StringArray::from(vec![Some("x"), None, Some("z")])),
            ],
        )
        .unwrap();
        let cfg: PiiConfig = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(cfg.output_schema(&schema).unwrap(), schema);
        let mut t = cfg.build(&schema).unwrap();
        let Processed::Batch(out) = t.process(batch).unwrap() else { panic!("a map") };
        let text = out.column(1).as_string::<i64>();
        assert_eq!(text.value(1), "Nothing here, 2024.");
        assert!(text.value(0).starts_with("Contact ") && !text.value(0).contains("press@"), "{}", text.value(0));
        assert!(text.value(0).ends_with("+1-202-555-0100."), "{}", text.value(0));
        assert!(text.value(2).contains("2001:db8::1"), "{}", text.value(2));
        let counters = t.take_counters();
        let expect: std::collections::BTreeMap<String, u64> =
            [("redacted:email", 1), ("redacted:ipv4", 1), ("redacted:ipv6", 1), ("redacted:phone", 1)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
        assert_eq!(counters, expect);
        assert!(t.take_counters().is_empty());
        let e = cfg.output_schema(&Arc::new(Schema::new(vec![doc::id()]))).unwrap_err().0;
        assert!(e.contains("needs column `text`"), "{e}");
    }
}
