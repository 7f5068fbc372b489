//! The record reader: input window -> gzip members -> decoded buffer -> records.
//!
//! ```text
//!  Input (8 MiB window over the file)
//!    │  next_member(): libdeflate inflates one whole member from the window,
//!    │                 reports its compressed length (= where the next one starts)
//!    │  stream_step(): flate2 inflates a member too big for the window, or one that
//!    │                 libdeflate rejected (corrupt or cut short), 1 MiB at a time
//!    ▼
//!  out: BytesMut (decoded, not yet parsed)  [out_abs ........ frontier ..... end)
//!    │  step(): skip CR/LF, check "WARC/", find the blank line, read Content-Length,
//!    │          split the block off as a `Bytes` (no copy)
//!    ▼
//!  WarcRecord { location, version, headers, block }
//! ```
//!
//! Only data before `frontier` is parsed. A member inflated by libdeflate is
//! checked (CRC-32, size) before it is appended, so the frontier moves to its
//! end at once. A streamed member is held back until it ends or its decoded
//! size passes `HOLD`, so a small corrupt member yields no records, only its
//! error. Errors found while decoding (corrupt or truncated member, I/O error)
//! become gaps that the parser reports once it has returned every record that
//! ends before them.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek};
use std::path::Path;

use bytes::{Buf, Bytes, BytesMut};
use flate2::{Decompress, FlushDecompress, Status};

use super::arc;
use super::inflate::{self, Candidate, Libdeflate, Member, GZIP_MAGIC};
use super::input::Input;

/// Size of the window over the compressed (or plain) file.
const WINDOW: usize = 8 << 20;
/// Compressed bytes kept in the window ahead of a member before it is inflated
/// in one call; larger members are streamed.
const LOOKAHEAD: usize = 4 << 20;
/// Decoded-buffer allocation unit; records are `Bytes` slices of these chunks.
const OUT_CHUNK: usize = 8 << 20;
/// Output space offered to libdeflate for a member at first.
const MIN_SPARE: usize = 2 << 20;
/// Largest decoded member inflated in one call; beyond this it is streamed.
const MAX_FAST_OUT: usize = 64 << 20;
/// Compressed bytes fed to the streaming decoder per step.
const STREAM_IN: usize = 256 << 10;
/// Decoded bytes produced by the streaming decoder per step.
const STREAM_OUT: usize = 1 << 20;
/// Decoded bytes of a streamed member held back (unparsed) until its CRC is checked.
const HOLD: u64 = 16 << 20;
/// Plain (uncompressed) bytes moved to the decoded buffer per step.
const PLAIN_STEP: usize = 4 << 20;
/// Longest record header accepted.
const MAX_HEADER: usize = 1 << 20;
/// After a corrupt member, the search for the next one starts this far before
/// the point where decoding failed (the decoder may have read a little past it).
const RESYNC_MARGIN: u64 = 64 << 10;
/// Compressed bytes examined when checking a candidate member start.
const VERIFY_IN: usize = 512 << 10;

/// Default for [`WarcReader::set_max_block_len`]: 512 MiB.
pub const DEFAULT_MAX_BLOCK_LEN: u64 = 512 << 20;

/// Where a record (or a problem) is in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordLocation {
    /// Byte offset in the file of the gzip member holding the record (Common
    /// Crawl's CDX `offset`), or of the record itself in an uncompressed file.
    pub member_offset: u64,
    /// Offset of the record inside the member's uncompressed data (0 when one
    /// member holds one record, as Common Crawl writes).
    pub offset_in_member: u64,
}

impl fmt::Display for RecordLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.offset_in_member == 0 {
            write!(f, "{}", self.member_offset)
        } else {
            write!(f, "{}+{}", self.member_offset, self.offset_in_member)
        }
    }
}

/// One WARC record: its header fields and its block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarcRecord {
    /// Where the record starts.
    pub location: RecordLocation,
    /// The version line as written: "WARC/1.0", "WARC/1.1", "WARC/0.17", ...
    pub version: String,
    /// Header fields in file order, names as written, values trimmed; folded
    /// continuation lines are joined with one space. Bytes that are not UTF-8
    /// are replaced with U+FFFD.
    pub headers: Vec<(String, String)>,
    /// The record block, exactly Content-Length bytes. It shares memory with
    /// neighbouring records (one 8 MiB buffer holds many); copy it
    /// (`Bytes::copy_from_slice`) to keep a few blocks for long.
    pub block: Bytes,
}

impl WarcRecord {
    /// The first header field called `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// `WARC-Type`: warcinfo, response, request, metadata, conversion, ...
    pub fn warc_type(&self) -> Option<&str> {
        self.header("WARC-Type")
    }

    /// `WARC-Record-ID` as written, including `<urn:uuid:...>`.
    pub fn record_id(&self) -> Option<&str> {
        self.header("WARC-Record-ID")
    }

    /// `WARC-Target-URI` without surrounding `<>` (WARC/1.1 writers add them).
    pub fn target_uri(&self) -> Option<&str> {
        self.header("WARC-Target-URI").map(|v| v.strip_prefix('<').and_then(|s| s.strip_suffix('>')).unwrap_or(v))
    }

    /// `WARC-Date`, unparsed.
    pub fn date(&self) -> Option<&str> {
        self.header("WARC-Date")
    }

    /// `Content-Type` of the block.
    pub fn content_type(&self) -> Option<&str> {
        self.header("Content-Type")
    }
}

/// What went wrong with one record or stretch of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordErrorKind {
    /// A gzip member that does not decode (bad data, bad CRC), or bytes where a
    /// member should start that are not one. Reading resumes at the next member
    /// that verifiably decodes. Nothing of a corrupt member is returned, except
    /// from members over 16 MiB decoded (a whole-file gzip), whose records are
    /// returned as they are decoded: those before the damage come out, the
    /// rest of the member is dropped.
    CorruptGzip,
    /// The data ends (file end, or a cut gzip member) before the record does.
    TruncatedRecord,
    /// Bytes where a record should start that are not a valid record header
    /// (no `WARC/` line, a malformed field line, a missing or bad
    /// Content-Length, a block over the size limit). Reading resumes at the next
    /// `WARC/` line, or after the block when its length is known.
    BadHeader,
    /// Reading the file failed; nothing more is read.
    Io,
}

impl RecordErrorKind {
    /// snake_case name, for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordErrorKind::CorruptGzip => "corrupt_gzip",
            RecordErrorKind::TruncatedRecord => "truncated_record",
            RecordErrorKind::BadHeader => "bad_header",
            RecordErrorKind::Io => "io",
        }
    }
}

impl fmt::Display for RecordErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A non-fatal problem; the reader carries on after it (except after `Io`).
#[derive(Debug, thiserror::Error)]
#[error("{kind} at offset {location}: {message}")]
pub struct RecordError {
    /// Where the problem is: the gzip member for `CorruptGzip`, the record for
    /// the others (the file offset reached for `Io`).
    pub location: RecordLocation,
    /// What kind of problem.
    pub kind: RecordErrorKind,
    /// Human-readable detail.
    pub message: String,
}

pub(crate) trait Source: Read + Seek + Send {}
impl<T: Read + Seek + Send> Source for T {}

/// Start of a gzip member within the decoded stream.
#[derive(Debug, Clone, Copy)]
struct MemberStart {
    /// Decoded-stream position of the member's first byte.
    abs: u64,
    /// File offset of the member.
    offset: u64,
}

/// A member being inflated piece by piece.
struct Stream {
    dec: Decompress,
    offset: u64,
    abs: u64,
}

/// A problem found while decoding, reported when parsing reaches it.
enum Gap {
    Corrupt { offset: u64, message: String },
    Truncated { offset: u64, decoded: u64 },
    Io { offset: u64, error: io::Error },
}

enum Step {
    Record(WarcRecord),
    Error(RecordError),
    NeedMore,
}

/// Reads WARC records from a local file: gzip per record (Common Crawl), whole
/// file gzip, concatenated members of any size, or uncompressed.
///
/// Memory use is bounded: an 8 MiB window of the file, the decoded data of
/// the records not yet returned (in 8 MiB buffers shared with the returned
/// blocks), and at most 16 MiB of a streamed member held back for its CRC.
pub struct WarcReader {
    input: Input<Box<dyn Source>>,
    gzip: bool,
    inflater: Libdeflate,
    stream: Option<Stream>,
    /// Decoded data not yet parsed; `out[0]` is at decoded-stream position `out_abs`.
    out: BytesMut,
    out_abs: u64,
    /// Decoded-stream position up to which data may be parsed.
    frontier: u64,
    members: VecDeque<MemberStart>,
    gaps: VecDeque<Gap>,
    /// Looking for the next `WARC/` line (an ARC header line in an ARC file) after garbage.
    resync: bool,
    /// The file is an ARC file (its first record is a `filedesc://` line).
    arc: bool,
    /// A record or an error was returned (the first record decides ARC).
    started: bool,
    /// In resync, `out[0]` has not been examined yet (it follows a gap).
    resync_at0: bool,
    /// Bytes of an over-long block still to discard.
    skip: u64,
    input_done: bool,
    finished: bool,
    max_block_len: u64,
    /// File offset where reading started.
    start: u64,
    /// Decoded bytes of a streamed member held back until its CRC is checked.
    hold: u64,
    /// Skip libdeflate and stream every member (tests of the streaming path).
    stream_all: bool,
    /// Compressed bytes fed to the streaming decoder per step.
    stream_in: usize,
    scratch: Vec<u8>,
}

impl WarcReader {
    /// Opens a local file read-only. Detects gzip by its magic bytes (1f 8b),
    /// not by the file name.
    ///
    /// # Errors
    ///
    /// Opening or first reading the file fails, or libdeflate cannot allocate.
    pub fn open(path: &Path) -> io::Result<WarcReader> {
        WarcReader::from_file(File::open(path)?)
    }

    /// Reads from an open file, from its current position on (offsets stay
    /// file offsets), e.g. from a member offset taken from a CDX index.
    ///
    /// # Errors
    ///
    /// As for [`WarcReader::open`].
    pub fn from_file(mut file: File) -> io::Result<WarcReader> {
        let position = file.stream_position()?;
        WarcReader::from_source(Box::new(file), position)
    }

    /// Reads from any seekable source positioned at `position` (tests use
    /// in-memory data).
    pub(crate) fn from_source(src: Box<dyn Source>, position: u64) -> io::Result<WarcReader> {
        let mut input = Input::new(src, WINDOW, position);
        let mut scratch = Vec::new();
        let gzip = detect_gzip(&mut input, &mut scratch)?;
        let mut members = VecDeque::new();
        if !gzip {
            members.push_back(MemberStart { abs: position, offset: position });
        }
        Ok(WarcReader {
            input,
            gzip,
            inflater: Libdeflate::new()?,
            stream: None,
            out: BytesMut::new(),
            // Plain files: decoded-stream positions are file offsets.
            out_abs: if gzip { 0 } else { position },
            frontier: if gzip { 0 } else { position },
            members,
            gaps: VecDeque::new(),
            resync: false,
            arc: false,
            started: false,
            resync_at0: false,
            skip: 0,
            input_done: false,
            finished: false,
            max_block_len: DEFAULT_MAX_BLOCK_LEN,
            start: position,
            hold: HOLD,
            stream_all: false,
            stream_in: STREAM_IN,
            scratch,
        })
    }

    /// Records whose Content-Length exceeds `bytes` are skipped with a
    /// `BadHeader` error instead of being held in memory.
    pub fn set_max_block_len(&mut self, bytes: u64) {
        self.max_block_len = bytes;
    }

    /// Streams every member through flate2, `step` compressed bytes at a time,
    /// and holds back `hold` decoded bytes (tests of the path taken by members
    /// too big for the window).
    #[cfg(test)]
    pub(crate) fn stream_all(&mut self, hold: u64, step: usize) {
        self.stream_all = true;
        self.hold = hold;
        self.stream_in = step;
    }

    /// True if the file starts with the gzip magic bytes.
    pub fn is_gzip(&self) -> bool {
        self.gzip
    }

    /// Bytes of uncompressed WARC decoded so far (all of it once the reader is
    /// exhausted), for throughput figures.
    pub fn uncompressed_bytes(&self) -> u64 {
        self.out_end() - if self.gzip { 0 } else { self.start }
    }

    /// Bytes of the file consumed so far.
    pub fn compressed_bytes(&self) -> u64 {
        self.input.offset() - self.start
    }

    /// The next record, or a non-fatal per-record error; `None` at end of
    /// input. After an error the next call carries on with the next gzip
    /// member or record.
    ///
    /// # Errors
    ///
    /// Each problem is returned once, as `Some(Err(_))`: see [`RecordErrorKind`].
    pub fn next_record(&mut self) -> Option<Result<WarcRecord, RecordError>> {
        loop {
            if self.finished {
                return None;
            }
            match self.step() {
                Step::Record(r) => {
                    self.started = true;
                    return Some(Ok(r));
                }
                Step::Error(e) => {
                    self.started = true;
                    return Some(Err(e));
                }
                Step::NeedMore => {
                    if let Some(gap) = self.gaps.pop_front() {
                        return Some(Err(self.gap_error(gap)));
                    }
                    if !self.fill() {
                        self.finished = true;
                        return self.leftover_error().map(Err);
                    }
                }
            }
        }
    }

    // ---------------------------------------------------------------- parsing

    fn location(&self, abs: u64) -> RecordLocation {
        if !self.gzip {
            return RecordLocation { member_offset: abs, offset_in_member: 0 };
        }
        match self.members.iter().rev().find(|m| m.abs <= abs) {
            Some(m) => RecordLocation { member_offset: m.offset, offset_in_member: abs - m.abs },
            None => RecordLocation { member_offset: 0, offset_in_member: abs },
        }
    }

    fn is_member_start(&self, abs: u64) -> bool {
        self.members.iter().any(|m| m.abs == abs)
    }

    /// Decoded bytes that may be parsed now.
    fn parseable(&self) -> usize {
        usize::try_from(self.frontier.saturating_sub(self.out_abs)).unwrap_or(usize::MAX).min(self.out.len())
    }

    fn advance(&mut self, n: usize) {
        self.out.advance(n);
        self.out_abs += n as u64;
        while self.members.len() >= 2 && self.members[1].abs <= self.out_abs {
            self.members.pop_front();
        }
    }

    fn bad_header(&mut self, message: String) -> Step {
        self.resync = true;
        self.resync_at0 = false;
        Step::Error(RecordError { location: self.location(self.out_abs), kind: RecordErrorKind::BadHeader, message })
    }

    /// Parses what is parseable: a record, an error, or a request for more data.
    fn step(&mut self) -> Step {
        loop {
            let avail = self.parseable();
            if self.skip > 0 {
                let n = usize::try_from(self.skip).unwrap_or(usize::MAX).min(avail);
                self.advance(n);
                self.skip -= n as u64;
                if self.skip > 0 {
                    return Step::NeedMore;
                }
                continue;
            }
            if self.resync {
                match self.find_resync(avail) {
                    Some(p) => {
                        self.advance(p);
                        self.resync = false;
                    }
                    None => {
                        // Keep the last bytes: they may begin "WARC/" (in an ARC
                        // file: the last line, which may be a record header cut
                        // by the buffer's end), and the first kept byte has been
                        // examined already.
                        let d = &self.out[..avail];
                        let n = if self.arc {
                            d.iter().rposition(|&b| b == b'\n').map_or(avail.saturating_sub(MAX_HEADER), |i| i + 1)
                        } else {
                            avail.saturating_sub(5)
                        };
                        if n > 0 {
                            self.resync_at0 = false;
                        }
                        self.advance(n);
                        return Step::NeedMore;
                    }
                }
                continue;
            }
            let d = &self.out[..avail];
            let ws = d.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(avail);
            if ws > 0 {
                self.advance(ws);
                continue;
            }
            if avail == 0 {
                return Step::NeedMore;
            }
            if !self.started && d.starts_with(b"filedesc://") {
                self.arc = true;
            }
            if self.arc && !d.starts_with(b"WARC/") {
                return self.arc_step(avail);
            }
            if !d.starts_with(b"WARC/") {
                if d.len() < 5 && b"WARC/".starts_with(d) {
                    return Step::NeedMore;
                }
                let found = escape(&d[..d.len().min(40)]);
                return self.bad_header(format!("expected a record header (\"WARC/\"), found \"{found}\""));
            }
            let Some(header_len) = find_header_end(d) else {
                if avail > MAX_HEADER {
                    return self.bad_header(format!("no blank line ends the record header within {MAX_HEADER} bytes"));
                }
                return Step::NeedMore;
            };
            let mut headers = Vec::with_capacity(16);
            let content_length = match parse_header(&d[..header_len], Some(&mut headers)) {
                Ok(n) => n,
                Err(message) => return self.bad_header(message),
            };
            if content_length > self.max_block_len {
                return self.over_long(header_len, content_length, "Content-Length");
            }
            // content_length <= max_block_len, which fits in memory, so in usize.
            let block_len = usize::try_from(content_length).unwrap_or(usize::MAX);
            if avail.saturating_sub(header_len) < block_len {
                return Step::NeedMore;
            }
            let version = String::from_utf8_lossy(trim(line_at(d, 0))).into_owned();
            let (location, block) = self.take_block(header_len, block_len);
            return Step::Record(WarcRecord { location, version, headers, block });
        }
    }

    /// Parses an ARC record at `out[0]`: its header line, then the block of
    /// the length it gives, as the WARC record it stands for.
    fn arc_step(&mut self, avail: usize) -> Step {
        let d = &self.out[..avail];
        let Some(nl) = d[..avail.min(MAX_HEADER)].iter().position(|&b| b == b'\n') else {
            if avail > MAX_HEADER {
                return self.bad_header(format!("no line end ends the ARC record header within {MAX_HEADER} bytes"));
            }
            return Step::NeedMore;
        };
        let header = match arc::parse_header(trim(&d[..nl])) {
            Ok(h) => h,
            Err(message) => return self.bad_header(format!("ARC record header: {message}")),
        };
        let header_len = nl + 1;
        if header.length > self.max_block_len {
            return self.over_long(header_len, header.length, "archive length");
        }
        let block_len = usize::try_from(header.length).unwrap_or(usize::MAX);
        if avail.saturating_sub(header_len) < block_len {
            return Step::NeedMore;
        }
        let headers = header.warc_headers(&d[header_len..header_len + block_len]);
        let (location, block) = self.take_block(header_len, block_len);
        Step::Record(WarcRecord { location, version: "ARC".to_string(), headers, block })
    }

    /// A record whose block is over the limit: its header is consumed, its
    /// block skipped as it arrives, and the error says so.
    fn over_long(&mut self, header_len: usize, length: u64, field: &str) -> Step {
        let location = self.location(self.out_abs);
        self.advance(header_len);
        self.skip = length;
        Step::Error(RecordError {
            location,
            kind: RecordErrorKind::BadHeader,
            message: format!("{field} {length} exceeds the limit of {} bytes; record skipped", self.max_block_len),
        })
    }

    /// Consumes a record's header of `header_len` bytes and returns where the
    /// record started and its block of `block_len` bytes (no copy).
    fn take_block(&mut self, header_len: usize, block_len: usize) -> (RecordLocation, Bytes) {
        let location = self.location(self.out_abs);
        self.advance(header_len);
        let block = self.out.split_to(block_len).freeze();
        self.out_abs += block_len as u64;
        while self.members.len() >= 2 && self.members[1].abs <= self.out_abs {
            self.members.pop_front();
        }
        (location, block)
    }

    /// In an ARC file: position of the next line that parses as an ARC record
    /// header, at a line start or member start.
    fn find_arc_resync(&self, avail: usize) -> Option<usize> {
        let d = &self.out[..avail];
        let mut p = usize::from(!self.resync_at0);
        while p < d.len() {
            let line_start = p > 0 && d[p - 1] == b'\n';
            if line_start || self.is_member_start(self.out_abs + p as u64) {
                let end = d[p..].iter().position(|&b| b == b'\n')?;
                if arc::parse_header(trim(&d[p..p + end])).is_ok() {
                    return Some(p);
                }
            }
            p += d[p..].iter().position(|&b| b == b'\n')? + 1;
        }
        None
    }

    /// Position of the next `WARC/` at a line start or member start; from 1
    /// unless `out[0]` follows a gap.
    fn find_resync(&self, avail: usize) -> Option<usize> {
        if self.arc {
            return self.find_arc_resync(avail);
        }
        let d = &self.out[..avail];
        let mut p = usize::from(!self.resync_at0);
        while p + 5 <= d.len() {
            let i = d[p..].iter().position(|&b| b == b'W')?;
            p += i;
            if p + 5 > d.len() {
                return None;
            }
            let line_start = p > 0 && d[p - 1] == b'\n';
            if &d[p..p + 5] == b"WARC/" && (line_start || self.is_member_start(self.out_abs + p as u64)) {
                return Some(p);
            }
            p += 1;
        }
        None
    }

    /// The error for a gap, after dropping the unparsed data before it.
    fn gap_error(&mut self, gap: Gap) -> RecordError {
        let avail = self.parseable();
        let ws = self.out[..avail].iter().position(|&b| b != b'\r' && b != b'\n');
        let leftover = ws.filter(|_| !self.resync && self.skip == 0);
        let leftover_loc = leftover.map(|ws| self.location(self.out_abs + ws as u64));
        let error = match gap {
            Gap::Corrupt { offset, mut message } => {
                if let Some(loc) = leftover_loc {
                    message.push_str(&format!("; the incomplete record at {loc} is lost"));
                }
                RecordError { location: member_loc(offset), kind: RecordErrorKind::CorruptGzip, message }
            }
            Gap::Truncated { offset, decoded } => match leftover_loc {
                Some(location) => RecordError {
                    location,
                    kind: RecordErrorKind::TruncatedRecord,
                    message: format!("the file ends inside the gzip member at {offset}, before this record does"),
                },
                None => RecordError {
                    location: member_loc(offset),
                    kind: RecordErrorKind::TruncatedRecord,
                    message: format!("the file ends inside this gzip member, after {decoded} decoded bytes"),
                },
            },
            Gap::Io { offset, error } => {
                RecordError { location: member_loc(offset), kind: RecordErrorKind::Io, message: error.to_string() }
            }
        };
        if self.skip > 0 {
            // An over-long block was being skipped; what follows the gap is
            // not known to start a record.
            self.resync = true;
            self.skip = 0;
        }
        self.resync_at0 = true;
        let all = self.out.len();
        self.advance(all);
        self.frontier = self.out_abs;
        error
    }

    /// The error for data left at the end of input, if any.
    fn leftover_error(&mut self) -> Option<RecordError> {
        let avail = self.parseable();
        if self.resync || self.skip > 0 {
            return None;
        }
        let ws = self.out[..avail].iter().position(|&b| b != b'\r' && b != b'\n')?;
        let d = &self.out[ws..avail];
        let message = match find_header_end(d) {
            Some(h) => match parse_header(&d[..h], None) {
                Ok(len) => format!("the record needs {} bytes, the input ends after {}", h as u64 + len, d.len()),
                Err(m) => m,
            },
            None => format!("the input ends inside the record header, after {} bytes", d.len()),
        };
        Some(RecordError {
            location: self.location(self.out_abs + ws as u64),
            kind: RecordErrorKind::TruncatedRecord,
            message,
        })
    }

    // --------------------------------------------------------------- decoding

    /// Decodes more data (or records a gap). False at end of input.
    fn fill(&mut self) -> bool {
        if self.input_done {
            return false;
        }
        let result = if !self.gzip {
            self.fill_plain()
        } else if self.stream.is_some() {
            self.stream_step()
        } else {
            self.next_member()
        };
        match result {
            Ok(more) => more,
            Err(error) => {
                // Drop unchecked data of a member being streamed.
                self.stream = None;
                let keep = self.parseable();
                self.out.truncate(keep);
                self.gaps.push_back(Gap::Io { offset: self.input.offset(), error });
                self.input_done = true;
                true
            }
        }
    }

    fn out_end(&self) -> u64 {
        self.out_abs + self.out.len() as u64
    }

    /// Makes at least `spare` bytes of output space, in `OUT_CHUNK` buffers
    /// (reclaimed once the records cut from them are dropped).
    fn reserve_out(&mut self, spare: usize) {
        let len = self.out.len();
        if self.out.capacity() - len < spare {
            let target = OUT_CHUNK.max(len.saturating_mul(2)).max(len + spare);
            self.out.reserve(target - len);
        }
    }

    fn fill_plain(&mut self) -> io::Result<bool> {
        self.input.fill_to(PLAIN_STEP)?;
        let n = self.input.avail().len().min(PLAIN_STEP);
        if n == 0 {
            self.input_done = true;
            return Ok(false);
        }
        self.reserve_out(n);
        self.out.extend_from_slice(&self.input.avail()[..n]);
        self.input.consume(n);
        self.frontier = self.out_end();
        Ok(true)
    }

    /// Inflates the member at the current offset in one call if it fits,
    /// otherwise starts streaming it.
    fn next_member(&mut self) -> io::Result<bool> {
        self.input.fill_to(LOOKAHEAD)?;
        let offset = self.input.offset();
        if self.input.avail().is_empty() {
            self.input_done = true;
            return Ok(false);
        }
        if !self.input.avail().starts_with(&GZIP_MAGIC) {
            let next = self.scan_for_member(offset + 1)?;
            let skipped = next.unwrap_or_else(|| self.input.offset()) - offset;
            self.gaps.push_back(Gap::Corrupt {
                offset,
                message: format!("{skipped} bytes that are not a gzip member{}", next_member_text(next)),
            });
            return Ok(true);
        }
        self.reserve_out(MIN_SPARE);
        while !self.stream_all {
            let spare = self.out.spare_capacity_mut();
            let spare_len = spare.len();
            match self.inflater.gzip_member(self.input.avail(), spare) {
                Member::Done { in_len, out_len } => {
                    let abs = self.out_end();
                    self.members.push_back(MemberStart { abs, offset });
                    // SAFETY: libdeflate initialised the first `out_len` bytes
                    // of the spare capacity (out_len <= spare_len).
                    unsafe { self.out.set_len(self.out.len() + out_len.min(spare_len)) };
                    self.input.consume(in_len);
                    self.frontier = self.out_end();
                    return Ok(true);
                }
                Member::NeedSpace if spare_len < MAX_FAST_OUT => self.reserve_out(spare_len.saturating_mul(2)),
                Member::NeedSpace | Member::Bad => break,
            }
        }
        // Too big, cut short, or corrupt: stream it to find out which.
        let abs = self.out_end();
        self.members.push_back(MemberStart { abs, offset });
        self.stream = Some(Stream { dec: inflate::streaming_decoder(), offset, abs });
        self.stream_step()
    }

    /// Inflates the next piece of a streamed member.
    fn stream_step(&mut self) -> io::Result<bool> {
        self.input.fill_to(self.stream_in)?;
        if self.input.avail().is_empty() {
            // End of file inside the member: what was decoded is sound.
            if let Some(stream) = self.stream.take() {
                let decoded = self.out_end() - stream.abs;
                self.gaps.push_back(Gap::Truncated { offset: stream.offset, decoded });
            }
            self.frontier = self.out_end();
            self.input_done = true;
            return Ok(true);
        }
        self.reserve_out(STREAM_OUT);
        let Some(stream) = self.stream.as_mut() else {
            return Ok(true);
        };
        let (in_before, out_before) = (stream.dec.total_in(), stream.dec.total_out());
        let spare = self.out.spare_capacity_mut();
        let spare_len = spare.len().min(STREAM_OUT);
        let input = &self.input.avail()[..self.input.avail().len().min(self.stream_in)];
        let result = stream.dec.decompress_uninit(input, &mut spare[..spare_len], FlushDecompress::None);
        let used = usize::try_from(stream.dec.total_in() - in_before).unwrap_or(usize::MAX);
        let produced = usize::try_from(stream.dec.total_out() - out_before).unwrap_or(0).min(spare_len);
        // SAFETY: the decoder initialised `produced` bytes of the spare capacity.
        unsafe { self.out.set_len(self.out.len() + produced) };
        self.input.consume(used);
        let (offset, abs) = (stream.offset, stream.abs);
        match result {
            Ok(Status::StreamEnd) => {
                self.stream = None;
                self.frontier = self.out_end();
                Ok(true)
            }
            Ok(_) if used == 0 && produced == 0 => self.corrupt_member(offset, "the decoder makes no progress"),
            Ok(_) => {
                if self.out_end() - abs > self.hold {
                    self.frontier = self.out_end();
                }
                Ok(true)
            }
            Err(e) => {
                let message = e.message().unwrap_or("invalid deflate data").to_owned();
                self.corrupt_member(offset, &message)
            }
        }
    }

    /// Drops the unchecked data of a corrupt member and moves to the next member.
    fn corrupt_member(&mut self, offset: u64, why: &str) -> io::Result<bool> {
        self.stream = None;
        let failed_at = self.input.offset();
        let dropped = self.out_end().saturating_sub(self.frontier);
        let keep = self.parseable();
        self.out.truncate(keep);
        let from = (offset + 1).max(failed_at.saturating_sub(RESYNC_MARGIN));
        let next = self.scan_for_member(from)?;
        let dropped = if dropped > 0 { format!("; {dropped} decoded bytes dropped") } else { String::new() };
        self.gaps.push_back(Gap::Corrupt {
            offset,
            message: format!("corrupt gzip member ({why}){dropped}{}", next_member_text(next)),
        });
        Ok(true)
    }

    /// Moves the input to the next offset from `from` on where a gzip member
    /// verifiably starts, or to the end of file.
    fn scan_for_member(&mut self, from: u64) -> io::Result<Option<u64>> {
        self.input.seek_to(from)?;
        loop {
            self.input.fill_to(VERIFY_IN)?;
            let a = self.input.avail();
            let found = a.windows(4).position(|w| w[..3] == GZIP_MAGIC && w[3] & 0xe0 == 0);
            match found {
                Some(i) => {
                    self.input.consume(i);
                    self.input.fill_to(VERIFY_IN)?;
                    if inflate::verify_member_start(self.input.avail(), &mut self.scratch) == Candidate::Plausible {
                        return Ok(Some(self.input.offset()));
                    }
                    self.input.consume(1);
                }
                None if self.input.at_eof() => {
                    let n = a.len();
                    self.input.consume(n);
                    return Ok(None);
                }
                None => {
                    let n = a.len().saturating_sub(3);
                    self.input.consume(n);
                }
            }
        }
    }
}

impl Iterator for WarcReader {
    type Item = Result<WarcRecord, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record()
    }
}

impl fmt::Debug for WarcReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WarcReader")
            .field("gzip", &self.gzip)
            .field("compressed_bytes", &self.compressed_bytes())
            .field("uncompressed_bytes", &self.uncompressed_bytes())
            .finish_non_exhaustive()
    }
}

/// Gzip if the file starts with the gzip magic bytes; uncompressed if it
/// starts with (blank lines and) `WARC/`; otherwise gzip if a member verifiably
/// starts within the first `VERIFY_IN` bytes (a damaged first member).
fn detect_gzip(input: &mut Input<Box<dyn Source>>, scratch: &mut Vec<u8>) -> io::Result<bool> {
    input.fill_to(64 << 10)?;
    let head = input.avail();
    if head.starts_with(&GZIP_MAGIC[..2]) {
        return Ok(true);
    }
    let text = &head[head.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(head.len())..];
    if text.len() < 5 && b"WARC/".starts_with(text) || text.starts_with(b"WARC/") {
        return Ok(false);
    }
    input.fill_to(VERIFY_IN + 4)?;
    let head = input.avail();
    let scan = &head[..head.len().min(VERIFY_IN)];
    let mut from = 0;
    while let Some(i) = scan[from..].windows(4).position(|w| w[..3] == GZIP_MAGIC && w[3] & 0xe0 == 0) {
        if inflate::verify_member_start(&head[from + i..], scratch) == Candidate::Plausible {
            return Ok(true);
        }
        from += i + 1;
    }
    Ok(false)
}

fn member_loc(offset: u64) -> RecordLocation {
    RecordLocation { member_offset: offset, offset_in_member: 0 }
}

fn next_member_text(next: Option<u64>) -> String {
    match next {
        Some(o) => format!("; resuming at the next member, offset {o}"),
        None => "; no further gzip member in the file".to_owned(),
    }
}

/// Length of the header including the blank line that ends it.
fn find_header_end(d: &[u8]) -> Option<usize> {
    let mut i = 0;
    loop {
        let nl = i + d[i..].iter().position(|&b| b == b'\n')?;
        match d.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') => match d.get(nl + 2) {
                Some(b'\n') => return Some(nl + 3),
                Some(_) => {}
                None => return None,
            },
            Some(_) => {}
            None => return None,
        }
        i = nl + 1;
    }
}

/// The line starting at `at`, without its line end.
fn line_at(d: &[u8], at: usize) -> &[u8] {
    let rest = &d[at..];
    let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let line = &rest[..end];
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &b[start..end]
}

/// Checks a record header (version line, field lines, blank line) and returns
/// its Content-Length; collects the fields into `fields` if given.
fn parse_header(header: &[u8], mut fields: Option<&mut Vec<(String, String)>>) -> Result<u64, String> {
    let mut content_length: Option<Result<u64, String>> = None;
    let mut lines = header.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let version = lines.next().unwrap_or_default();
    if !version.starts_with(b"WARC/") || version.len() < 6 {
        return Err(format!("bad version line \"{}\"", escape(version)));
    }
    for line in lines {
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some(f) = fields.as_deref_mut() {
                let Some((_, value)) = f.last_mut() else {
                    return Err("continuation line before any field".to_owned());
                };
                value.push(' ');
                value.push_str(&String::from_utf8_lossy(trim(line)));
            }
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(format!("header line without ':' \"{}\"", escape(&line[..line.len().min(60)])));
        };
        let name = trim(&line[..colon]);
        if name.is_empty() {
            return Err("header field with an empty name".to_owned());
        }
        let value = trim(&line[colon + 1..]);
        if content_length.is_none() && name.eq_ignore_ascii_case(b"Content-Length") {
            content_length = Some(parse_length(value));
        }
        if let Some(f) = fields.as_deref_mut() {
            f.push((String::from_utf8_lossy(name).into_owned(), String::from_utf8_lossy(value).into_owned()));
        }
    }
    match content_length {
        Some(r) => r,
        None => Err("no Content-Length field".to_owned()),
    }
}

fn parse_length(value: &[u8]) -> Result<u64, String> {
    let bad = || format!("bad Content-Length \"{}\"", escape(value));
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    Ok(value.iter().fold(0u64, |n, &b| n * 10 + u64::from(b - b'0')))
}

/// Bytes for an error message: printable ASCII as is, the rest escaped.
fn escape(b: &[u8]) -> String {
    b.iter().flat_map(|&c| std::ascii::escape_default(c)).map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_display() {
        assert_eq!(RecordLocation { member_offset: 1234, offset_in_member: 0 }.to_string(), "1234");
        assert_eq!(RecordLocation { member_offset: 1234, offset_in_member: 567 }.to_string(), "1234+567");
        let e = RecordError {
            location: RecordLocation { member_offset: 7, offset_in_member: 0 },
            kind: RecordErrorKind::CorruptGzip,
            message: "x".into(),
        };
        assert_eq!(e.to_string(), "corrupt_gzip at offset 7: x");
        assert_eq!(RecordErrorKind::TruncatedRecord.to_string(), "truncated_record");
        assert_eq!(RecordErrorKind::BadHeader.as_str(), "bad_header");
        assert_eq!(RecordErrorKind::Io.as_str(), "io");
    }

    #[test]
    fn header_end() {
        assert_eq!(find_header_end(b"WARC/1.0\r\nA: b\r\n\r\nbody"), Some(18));
        assert_eq!(find_header_end(b"WARC/1.0\nA: b\n\nbody"), Some(15));
        assert_eq!(find_header_end(b"WARC/1.0\r\nA: b\r\n\r"), None);
        assert_eq!(find_header_end(b"WARC/1.0\r\nA: b\r\n"), None);
        assert_eq!(find_header_end(b"WARC/1.0"), None);
    }

    #[test]
    fn header_fields() {
        let h = b"WARC/1.1\r\nWARC-Type: response\r\nX-Folded: a\r\n  b\r\ncontent-length:  42 \r\n\r\n";
        let mut f = Vec::new();
        assert_eq!(parse_header(h, Some(&mut f)), Ok(42));
        assert_eq!(f[1], ("X-Folded".to_owned(), "a b".to_owned()));
        assert_eq!(f[2].0, "content-length");
        assert!(parse_header(b"WARC/1.0\r\nWARC-Type: x\r\n\r\n", None).unwrap_err().contains("no Content-Length"));
        assert!(parse_header(b"WARC/1.0\r\nContent-Length: 1x\r\n\r\n", None)
            .unwrap_err()
            .contains("bad Content-Length"));
        assert!(parse_header(b"WARC/1.0\r\nContent-Length: -1\r\n\r\n", None).is_err());
        assert!(parse_header(b"WARC/1.0\r\nContent-Length: 99999999999999999999\r\n\r\n", None).is_err());
        assert!(parse_header(b"WARC/1.0\r\nno colon here\r\nContent-Length: 1\r\n\r\n", None).is_err());
        assert!(parse_header(b"WARC/\r\nContent-Length: 1\r\n\r\n", None).is_err());
    }

    #[test]
    fn record_accessors() {
        let r = WarcRecord {
            location: RecordLocation { member_offset: 0, offset_in_member: 0 },
            version: "WARC/1.1".into(),
            headers: vec![
                ("WARC-Type".into(), "response".into()),
                ("WARC-Target-URI".into(), "<https://example.com/>".into()),
                ("warc-record-id".into(), "<urn:uuid:1>".into()),
                ("WARC-Date".into(), "2024-05-18T01:58:10Z".into()),
                ("Content-Type".into(), "application/http; msgtype=response".into()),
            ],
            block: Bytes::new(),
        };
        assert_eq!(r.warc_type(), Some("response"));
        assert_eq!(r.target_uri(), Some("https://example.com/"));
        assert_eq!(r.record_id(), Some("<urn:uuid:1>"));
        assert_eq!(r.date(), Some("2024-05-18T01:58:10Z"));
        assert_eq!(r.content_type(), Some("application/http; msgtype=response"));
        assert_eq!(r.header("CONTENT-TYPE"), r.content_type());
        assert_eq!(r.header("missing"), None);
    }
}
