//! Reader tests on the real fixtures in `connectors/tests/fixtures/warc/`
//! (provenance in the README there) and on corruptions made from them.
//!
//! Expected offsets were cross-checked with Python's zlib (member boundaries)
//! and fastwarc 2.0.1 (record counts and ids).

use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use flate2::write::GzEncoder;
use flate2::Compression;

use super::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/warc").join(name)
}

fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

/// Reads everything, failing the test instead of looping forever.
fn read_all(mut reader: WarcReader) -> Vec<Result<WarcRecord, RecordError>> {
    let mut items = Vec::new();
    while let Some(item) = reader.next_record() {
        items.push(item);
        assert!(items.len() < 100_000, "reader does not end");
    }
    assert!(reader.next_record().is_none(), "items after the end");
    items
}

fn read_file(name: &str) -> Vec<Result<WarcRecord, RecordError>> {
    read_all(WarcReader::open(&fixture(name)).unwrap())
}

fn read_bytes(data: Vec<u8>) -> Vec<Result<WarcRecord, RecordError>> {
    read_all(WarcReader::from_source(Box::new(Cursor::new(data)), 0).unwrap())
}

fn read_bytes_streaming(data: Vec<u8>, hold: u64) -> Vec<Result<WarcRecord, RecordError>> {
    let mut reader = WarcReader::from_source(Box::new(Cursor::new(data)), 0).unwrap();
    reader.stream_all(hold, 4096);
    read_all(reader)
}

/// One line per item: "type@location" or "!kind@location".
fn summary(items: &[Result<WarcRecord, RecordError>]) -> Vec<String> {
    items
        .iter()
        .map(|item| match item {
            Ok(r) => format!("{}@{}", r.warc_type().unwrap_or("?"), r.location),
            Err(e) => format!("!{}@{}", e.kind, e.location),
        })
        .collect()
}

fn records(items: &[Result<WarcRecord, RecordError>]) -> Vec<&WarcRecord> {
    items.iter().filter_map(|i| i.as_ref().ok()).collect()
}

fn ids(items: &[Result<WarcRecord, RecordError>]) -> Vec<&str> {
    records(items).iter().map(|r| r.record_id().unwrap_or("")).collect()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// (offset, length) of each gzip member of a file, found by decoding.
fn members(data: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut off = 0;
    while off < data.len() {
        let mut dec = flate2::bufread::GzDecoder::new(&data[off..]);
        io::copy(&mut dec, &mut io::sink()).unwrap();
        let len = data.len() - off - dec.into_inner().len();
        out.push((off, len));
        off += len;
    }
    out
}

fn gunzip_all(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data).read_to_end(&mut out).unwrap();
    out
}

const WHIRLWIND_IDS: [&str; 4] = [
    "<urn:uuid:668d88fc-4208-41fc-b327-1aa6cb783331>",
    "<urn:uuid:292f457d-203c-42f2-a1b5-69a4dabefd4f>",
    "<urn:uuid:2aabeff2-67f5-4608-8466-e87c6296e2b6>",
    "<urn:uuid:c9ede96e-7ed2-4d17-8b6b-fb3d240f4442>",
];

// ------------------------------------------------------------ real fixtures

#[test]
fn reader_can_move_to_another_thread() {
    fn is_send<T: Send>() {}
    is_send::<WarcReader>();
    is_send::<WarcRecord>();
    is_send::<RecordError>();
}

#[test]
fn whirlwind_warc_per_record_gzip() {
    let mut reader = WarcReader::open(&fixture("whirlwind.warc.gz")).unwrap();
    assert!(reader.is_gzip());
    let items: Vec<_> = (&mut reader).collect();
    // Member offsets as Python's zlib finds them (and as CC's CDX would list them).
    assert_eq!(summary(&items), ["warcinfo@0", "request@516", "response@1023", "metadata@18374"]);
    assert_eq!(ids(&items), WHIRLWIND_IDS);
    let recs = records(&items);
    assert!(recs.iter().all(|r| r.version == "WARC/1.0"));
    let resp = recs[2];
    assert_eq!(resp.target_uri(), Some("https://an.wikipedia.org/wiki/Escopete"));
    assert_eq!(resp.date(), Some("2024-05-18T01:58:10Z"));
    assert_eq!(resp.content_type(), Some("application/http; msgtype=response"));
    assert_eq!(resp.block.len(), 74581);
    assert_eq!(resp.header("content-length"), Some("74581"));
    let http = parse_http_response(&resp.block).unwrap();
    assert_eq!(http.status, 200);
    assert!(http.header("content-type").unwrap().starts_with("text/html"));
    assert!(http.body.starts_with(b"<!DOCTYPE html>"));
    assert_eq!(recs[0].block.len(), 486);
    assert_eq!(recs[1].block.len(), 265);
    assert_eq!(recs[3].block.len(), 201);
    assert_eq!(reader.compressed_bytes(), 18857);
    assert_eq!(reader.uncompressed_bytes(), 807 + 744 + 75174 + 707);
}

#[test]
fn whirlwind_wet_and_wat() {
    let wet = read_file("whirlwind.warc.wet.gz");
    assert_eq!(summary(&wet), ["warcinfo@0", "conversion@466"]);
    let conv = records(&wet)[1];
    assert_eq!(conv.target_uri(), Some("https://an.wikipedia.org/wiki/Escopete"));
    assert_eq!(conv.block.len(), 4456);
    assert!(std::str::from_utf8(&conv.block).unwrap().contains("Escopete"));
    let wat = read_file("whirlwind.warc.wat.gz");
    assert_eq!(summary(&wat), ["warcinfo@0", "metadata@443"]);
    assert_eq!(records(&wat)[1].block.len(), 1386);
    assert_eq!(records(&wat)[1].content_type(), Some("application/json"));
}

#[test]
fn uncompressed_warc_and_wet() {
    let mut reader = WarcReader::open(&fixture("eugeneware.warc")).unwrap();
    assert!(!reader.is_gzip());
    let items: Vec<_> = (&mut reader).collect();
    let s = summary(&items);
    assert_eq!(s.len(), 13);
    assert_eq!(&s[..4], ["warcinfo@0", "request@648", "response@1581", "metadata@2455"]);
    assert_eq!(s[12], "metadata@255869");
    let types = |t: &str| records(&items).iter().filter(|r| r.warc_type() == Some(t)).count();
    assert_eq!((types("warcinfo"), types("request"), types("response"), types("metadata")), (1, 4, 4, 4));
    assert_eq!(records(&items)[0].record_id(), Some("<urn:uuid:cf083d66-9910-45e2-b5be-a421f9889aac>"));
    assert_eq!(reader.uncompressed_bytes(), 256305);
    assert_eq!(reader.compressed_bytes(), 256305);
    let wet = read_file("eugeneware.warc.wet");
    assert_eq!(summary(&wet), ["warcinfo@0", "conversion@567", "conversion@1576", "conversion@2619"]);
    assert_eq!(records(&wet)[3].block.len(), 1283);
}

#[test]
fn wget_warc_with_bracketed_uris() {
    let items = read_file("dolma-sample-0000.warc.gz");
    assert_eq!(items.len(), 48);
    let recs = records(&items);
    assert_eq!(recs.len(), 48);
    assert_eq!(summary(&items)[..3], ["warcinfo@0", "request@441", "response@865"]);
    assert_eq!(summary(&items)[47], "resource@212955");
    assert_eq!(recs[1].target_uri(), Some("https://www.semanticscholar.org/research/research-team"));
    assert_eq!(recs[2].record_id(), Some("<urn:uuid:283E41D7-F686-4C3E-B7DA-E8D248A100C1>"));
    assert_eq!(recs[2].block.len(), 88099);
    let responses: Vec<_> = recs.iter().filter(|r| r.warc_type() == Some("response")).collect();
    assert!(!responses.is_empty());
    for r in &responses {
        let http = parse_http_response(&r.block).unwrap();
        assert!((100..600).contains(&http.status), "{}", http.status);
    }
}

#[test]
fn cdx_toolkit_range_responses() {
    let items = read_file("cc_records_from_cdx_toolkit_mocks.warc.gz");
    assert_eq!(summary(&items), ["response@0", "response@1219", "response@8282"]);
    assert_eq!(
        ids(&items),
        [
            "<urn:uuid:3d2e9f0a-6650-41ea-aa41-c225e9e2b2bc>",
            "<urn:uuid:bb1e624b-eb7b-4650-846e-3347e2ec695f>",
            "<urn:uuid:006b01fb-abe9-4c02-ba23-18b037238c5f>",
        ]
    );
    let lens: Vec<usize> = records(&items).iter().map(|r| r.block.len()).collect();
    assert_eq!(lens, [1628, 26621, 354]);
}

/// One gzip member holding a warcinfo and 25 conversion records.
const FILTER_TEST_1: [u64; 26] = [
    0, 540, 3863, 5833, 36562, 57782, 61122, 64925, 68915, 80107, 84177, 102464, 117553, 142379, 146519, 151167,
    155363, 213649, 214691, 219616, 246598, 254524, 262451, 270405, 278121, 297407,
];

#[test]
fn whole_file_gzip_wet() {
    let items = read_file("jeffharwell/filter_test_1.wet.gz");
    let recs = records(&items);
    assert_eq!(items.len(), 26);
    assert_eq!(recs.len(), 26);
    assert_eq!(recs[0].warc_type(), Some("warcinfo"));
    assert!(recs[1..].iter().all(|r| r.warc_type() == Some("conversion")));
    let offsets: Vec<u64> = recs.iter().map(|r| r.location.offset_in_member).collect();
    assert_eq!(offsets, FILTER_TEST_1);
    assert!(recs.iter().all(|r| r.location.member_offset == 0));
    assert_eq!(recs[0].record_id(), Some("<urn:uuid:519aac89-8012-4390-8be6-2d81979f88cb>"));
    assert_eq!(recs[25].record_id(), Some("<urn:uuid:25b07336-ded8-4cf9-81af-e6b16327f6e5>"));
    assert_eq!(recs[25].block.len(), 32447);
    assert_eq!(records(&items)[1].location.to_string(), "0+540");
}

#[test]
fn jeffharwell_structurally_valid_variants() {
    // Records with a header line removed, two warcinfo records, no warcinfo:
    // all still well-formed WARC.
    let cases: [(&str, &[u64]); 6] = [
        ("corrupt_warcinfo_1.wet.gz", &[0, 454, 3125, 16226, 19504, 24539]),
        ("corrupt_warcconversion_1.wet.gz", &[0, 540, 3135, 16236, 19514, 24549]),
        ("corrupt_warcconversion_2.wet.gz", &[0, 540]),
        ("corrupt_two_warcinfo.wet.gz", &[0, 540, 3211, 16312, 16852, 20130, 25165]),
        ("corrupt_starts_with_conversion.wet.gz", &[0, 2671, 3211, 16312, 19590, 24625]),
        ("fragment3.wet.gz", &[0, 540, 3211, 16312, 19590, 24625]),
    ];
    for (name, offsets) in cases {
        let items = read_file(&format!("jeffharwell/{name}"));
        let got: Vec<u64> = items.iter().map(|i| i.as_ref().unwrap().location.offset_in_member).collect();
        assert_eq!(got, offsets, "{name}");
    }
    let two = read_file("jeffharwell/corrupt_two_warcinfo.wet.gz");
    let types: Vec<_> = records(&two).iter().map(|r| r.warc_type().unwrap()).collect();
    assert_eq!(types, ["warcinfo", "conversion", "conversion", "warcinfo", "conversion", "conversion", "conversion"]);
}

#[test]
fn jeffharwell_fragments() {
    // Last record cut short by the end of the data.
    let items = read_file("jeffharwell/fragment1_incomplete_last.wet.gz");
    assert_eq!(summary(&items), ["warcinfo@0", "conversion@0+540", "!truncated_record@0+3211"]);
    // 48 bytes missing inside the 2nd record: its Content-Length runs into the
    // 3rd record's header, so what follows the block is not a record.
    let items = read_file("jeffharwell/fragment1_asthma_incomplete_last.wet.gz");
    assert_eq!(summary(&items), ["warcinfo@0", "conversion@0+540", "!bad_header@0+3207"]);
    // Starts in the middle of a block.
    let items = read_file("jeffharwell/fragment2_no_header.wet.gz");
    assert_eq!(summary(&items), ["!bad_header@0", "conversion@0+7429", "!truncated_record@0+17004"]);
    assert_eq!(ids(&items), ["<urn:uuid:29a897e4-06ea-4b77-b62d-f593481a54c3>"]);
}

#[test]
fn jeffharwell_lf_only_headers() {
    // Converted to LF line ends throughout, so the Content-Length (from the
    // CRLF original) is 2 bytes longer than the block.
    let items = read_file("jeffharwell/file_headers_only.wet.gz");
    assert_eq!(summary(&items), ["!truncated_record@0"]);
    // The warcinfo block swallows the start of the next "WARC/1.0" line.
    let items = read_file("jeffharwell/file_and_wet_headers_only.wet.gz");
    assert_eq!(summary(&items), ["warcinfo@0", "!bad_header@0+528"]);
    let warcinfo = records(&items)[0];
    assert_eq!(
        warcinfo.header("WARC-Filename"),
        Some("CC-MAIN-20161202170900-00009-ip-10-31-129-80.ec2.internal.warc.wet.gz")
    );
    assert!(warcinfo.block.ends_with(b"\n\n\n\nWARC/1"));
}

#[test]
fn jeffharwell_truncated_last_member() {
    // 16 gzip members, the 17th cut off by the end of the file.
    let items = read_file("jeffharwell/appended_zip_fragment_unexpected_eof.wet.gz");
    let s = summary(&items);
    assert_eq!(s.len(), 17);
    assert_eq!(&s[..3], ["warcinfo@0", "conversion@389", "conversion@1617"]);
    assert_eq!(s[15], "conversion@48440");
    assert_eq!(s[16], "!truncated_record@49258");
    let err = items[16].as_ref().unwrap_err();
    assert!(err.message.contains("ends inside the gzip member"), "{}", err.message);
}

// ------------------------------------------------------- made corruptions

#[test]
fn corrupt_second_member_is_skipped() {
    let mut data = fixture_bytes("whirlwind.warc.gz");
    for b in &mut data[516 + 100..516 + 110] {
        *b ^= 0xa5;
    }
    let items = read_bytes(data.clone());
    assert_eq!(summary(&items), ["warcinfo@0", "!corrupt_gzip@516", "response@1023", "metadata@18374"]);
    let msg = &items[1].as_ref().unwrap_err().message;
    assert!(msg.contains("resuming at the next member, offset 1023"), "{msg}");
    assert_eq!(ids(&items), [WHIRLWIND_IDS[0], WHIRLWIND_IDS[2], WHIRLWIND_IDS[3]]);
    // Only the CRC-32 wrong: the member decodes, but nothing of it is returned.
    let mut data = fixture_bytes("whirlwind.warc.gz");
    data[1023 - 7] ^= 0x01;
    let items = read_bytes(data);
    assert_eq!(summary(&items), ["warcinfo@0", "!corrupt_gzip@516", "response@1023", "metadata@18374"]);
}

#[test]
fn corrupt_magic_of_a_member() {
    let mut data = fixture_bytes("whirlwind.warc.gz");
    data[1023] = b'x';
    let items = read_bytes(data);
    assert_eq!(summary(&items), ["warcinfo@0", "request@516", "!corrupt_gzip@1023", "metadata@18374"]);
}

#[test]
fn garbage_between_members() {
    let orig = fixture_bytes("whirlwind.warc.gz");
    let garbage = b"<html>some bytes that are not gzip\x1f\x8b\x08\x00 not even this</html>\n".repeat(3);
    let n = garbage.len() as u64;
    let mut data = orig[..516].to_vec();
    data.extend_from_slice(&garbage);
    data.extend_from_slice(&orig[516..]);
    let items = read_bytes(data);
    assert_eq!(
        summary(&items),
        [
            "warcinfo@0".to_owned(),
            "!corrupt_gzip@516".into(),
            format!("request@{}", 516 + n),
            format!("response@{}", 1023 + n),
            format!("metadata@{}", 18374 + n)
        ]
    );
    assert_eq!(ids(&items), WHIRLWIND_IDS);
    assert!(items[1].as_ref().unwrap_err().message.starts_with(&format!("{n} bytes that are not a gzip member")));
    // Garbage at the very end of the file.
    let mut data = orig.clone();
    data.extend_from_slice(b"\0\0\0\0\0\0");
    assert_eq!(
        summary(&read_bytes(data)),
        ["warcinfo@0", "request@516", "response@1023", "metadata@18374", "!corrupt_gzip@18857"]
    );
}

#[test]
fn file_cut_mid_record() {
    let orig = fixture_bytes("whirlwind.warc.gz");
    // Inside the response member's deflate data.
    let items = read_bytes(orig[..1023 + 5000].to_vec());
    assert_eq!(summary(&items), ["warcinfo@0", "request@516", "!truncated_record@1023"]);
    // Inside the gzip header: nothing decoded.
    let items = read_bytes(orig[..1023 + 5].to_vec());
    assert_eq!(summary(&items), ["warcinfo@0", "request@516", "!truncated_record@1023"]);
    // Only the trailer missing: the record is whole but its CRC unchecked.
    let items = read_bytes(orig[..18374 - 3].to_vec());
    assert_eq!(summary(&items), ["warcinfo@0", "request@516", "response@1023", "!truncated_record@1023"]);
    // Uncompressed: cut in the header, then in the block.
    let plain = fixture_bytes("eugeneware.warc");
    let items = read_bytes(plain[..1581 + 100].to_vec());
    assert_eq!(summary(&items), ["warcinfo@0", "request@648", "!truncated_record@1581"]);
    assert!(items[2].as_ref().unwrap_err().message.contains("inside the record header"));
    let items = read_bytes(plain[..1581 + 750].to_vec());
    assert_eq!(summary(&items), ["warcinfo@0", "request@648", "!truncated_record@1581"]);
    assert!(items[2].as_ref().unwrap_err().message.contains("the record needs"));
}

#[test]
fn garbage_between_uncompressed_records() {
    let plain = fixture_bytes("eugeneware.warc");
    let junk = b"this line is not a record\r\nnor is WARC/1.0 in the middle of a line\r\n\r\n";
    let mut data = plain[..1581].to_vec();
    data.extend_from_slice(junk);
    data.extend_from_slice(&plain[1581..]);
    let items = read_bytes(data);
    let s = summary(&items);
    assert_eq!(s.len(), 14);
    assert_eq!(&s[..4], ["warcinfo@0", "request@648", "!bad_header@1581", &format!("response@{}", 1581 + junk.len())]);
    assert_eq!(records(&items).len(), 13);
}

#[test]
fn missing_and_bad_content_length() {
    let plain = fixture_bytes("eugeneware.warc.wet");
    let text = String::from_utf8(plain).unwrap();
    let broken = text.replacen("Content-Length: 629", "Content-Length: lots", 1);
    let items = read_bytes(broken.into_bytes());
    assert_eq!(summary(&items), ["warcinfo@0", "!bad_header@567", "conversion@1577", "conversion@2620"]);
    assert!(items[1].as_ref().unwrap_err().message.contains("bad Content-Length"));
    let gone = text.replacen("Content-Length: 629\r\n", "", 1);
    let items = read_bytes(gone.into_bytes());
    assert_eq!(summary(&items), ["warcinfo@0", "!bad_header@567", "conversion@1555", "conversion@2598"]);
    assert!(items[1].as_ref().unwrap_err().message.contains("no Content-Length"));
}

/// Rewrites records with LF-only header lines (blocks unchanged).
fn to_lf_only(recs: &[&WarcRecord]) -> Vec<Vec<u8>> {
    recs.iter()
        .map(|r| {
            let mut out = format!("{}\n", r.version).into_bytes();
            for (n, v) in &r.headers {
                out.extend_from_slice(format!("{n}: {v}\n").as_bytes());
            }
            out.push(b'\n');
            out.extend_from_slice(&r.block);
            out.extend_from_slice(b"\n\n");
            out
        })
        .collect()
}

#[test]
fn lf_only_headers() {
    let items = read_file("eugeneware.warc");
    let orig = records(&items);
    let lf = to_lf_only(&orig);
    let again = read_bytes(lf.concat());
    assert_eq!(again.len(), 13);
    let mut offset = 0;
    for ((a, b), bytes) in orig.iter().zip(records(&again)).zip(&lf) {
        assert_eq!((&a.headers, &a.block, &a.version), (&b.headers, &b.block, &b.version));
        assert_eq!(b.location.member_offset, offset);
        offset += bytes.len() as u64;
    }
    // The same, one gzip member per record.
    let gz: Vec<Vec<u8>> = lf.iter().map(|r| gzip(r)).collect();
    let again = read_bytes(gz.concat());
    let mut offset = 0;
    for ((a, b), member) in orig.iter().zip(records(&again)).zip(&gz) {
        assert_eq!((&a.headers, &a.block), (&b.headers, &b.block));
        assert_eq!(b.location, RecordLocation { member_offset: offset, offset_in_member: 0 });
        offset += member.len() as u64;
    }
}

#[test]
fn members_of_any_size() {
    // The decoded whirlwind WARC re-cut into 1000-byte gzip members: records
    // span members and are located in the member where they start.
    let decoded = gunzip_all(&fixture_bytes("whirlwind.warc.gz"));
    let pieces: Vec<Vec<u8>> = decoded.chunks(1000).map(gzip).collect();
    let mut member_offsets = vec![0u64];
    for p in &pieces {
        member_offsets.push(member_offsets.last().unwrap() + p.len() as u64);
    }
    let items = read_bytes(pieces.concat());
    let recs = records(&items);
    assert_eq!(items.len(), 4);
    assert_eq!(ids(&items), WHIRLWIND_IDS);
    for (r, start) in recs.iter().zip([0u64, 807, 807 + 744, 807 + 744 + 75174]) {
        let m = usize::try_from(start / 1000).unwrap();
        assert_eq!(r.location, RecordLocation { member_offset: member_offsets[m], offset_in_member: start % 1000 });
    }
    // One member for the whole file.
    let items = read_bytes(gzip(&decoded));
    assert_eq!(summary(&items), ["warcinfo@0", "request@0+807", "response@0+1551", "metadata@0+76725"]);
    // Empty members in between change nothing but offsets.
    let empty = gzip(b"");
    let orig = fixture_bytes("whirlwind.warc.gz");
    let data = [&orig[..516], &empty, &empty, &orig[516..]].concat();
    let e = empty.len() as u64 * 2;
    assert_eq!(
        summary(&read_bytes(data)),
        [
            "warcinfo@0".to_owned(),
            format!("request@{}", 516 + e),
            format!("response@{}", 1023 + e),
            format!("metadata@{}", 18374 + e)
        ]
    );
}

#[test]
fn streaming_path_matches_in_memory_path() {
    for name in ["whirlwind.warc.gz", "jeffharwell/filter_test_1.wet.gz", "dolma-sample-0000.warc.gz"] {
        let data = fixture_bytes(name);
        let fast = read_bytes(data.clone());
        for hold in [0, 1000, u64::MAX] {
            let slow = read_bytes_streaming(data.clone(), hold);
            assert_eq!(fast.len(), slow.len(), "{name}");
            for (a, b) in records(&fast).iter().zip(records(&slow)) {
                assert_eq!(*a, b, "{name}");
            }
        }
    }
    let items = read_bytes_streaming(fixture_bytes("jeffharwell/appended_zip_fragment_unexpected_eof.wet.gz"), 0);
    assert_eq!(summary(&items)[16], "!truncated_record@49258");
}

#[test]
fn corrupt_whole_file_member() {
    // A corrupt byte in the middle of a 330 kB single-member WET file.
    let mut data = fixture_bytes("jeffharwell/filter_test_1.wet.gz");
    data[60_000] ^= 0xff;
    // libdeflate rejects it; the streamed retry holds the member back until
    // its end, so nothing of it is returned.
    let items = read_bytes(data.clone());
    assert_eq!(summary(&items), ["!corrupt_gzip@0"]);
    let msg = &items[0].as_ref().unwrap_err().message;
    assert!(msg.contains("no further gzip member"), "{msg}");
    // Released as decoded (as for members over the hold limit): the records
    // before the damage come out, then one error.
    let items = read_bytes_streaming(data, 0);
    let s = summary(&items);
    assert_eq!(s.last().map(String::as_str), Some("!corrupt_gzip@0"));
    assert!(s.len() > 5, "{s:?}");
    for (r, want) in records(&items).iter().zip(FILTER_TEST_1) {
        assert_eq!(r.location.offset_in_member, want);
    }
}

#[test]
fn whole_file_gzip_bigger_than_the_window() {
    // ~9 MB compressed in one member: streamed, bounded memory, same records.
    let decoded = gunzip_all(&fixture_bytes("dolma-sample-0000.warc.gz"));
    let copies = 1 + (LOOKAHEAD_FOR_TESTS * 2) / 200_000;
    let big = decoded.repeat(copies);
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(&big).unwrap();
    let data = enc.finish().unwrap();
    assert!(data.len() > LOOKAHEAD_FOR_TESTS, "{}", data.len());
    let items = read_bytes(data);
    assert_eq!(items.len(), 48 * copies);
    assert!(items.iter().all(Result::is_ok));
    let recs = records(&items);
    let first_copy_last = recs[47].location.offset_in_member;
    let last = recs[48 * copies - 1].location;
    let shift = (decoded.len() * (copies - 1)) as u64;
    assert_eq!(last, RecordLocation { member_offset: 0, offset_in_member: shift + first_copy_last });
    assert_eq!(recs[48 * copies - 1].block, recs[47].block);
}

const LOOKAHEAD_FOR_TESTS: usize = 4 << 20;

#[test]
fn over_long_block_is_skipped() {
    let mut reader = WarcReader::open(&fixture("whirlwind.warc.gz")).unwrap();
    reader.set_max_block_len(10_000);
    let items = read_all(reader);
    assert_eq!(summary(&items), ["warcinfo@0", "request@516", "!bad_header@1023", "metadata@18374"]);
    assert!(items[2].as_ref().unwrap_err().message.contains("exceeds the limit"));
}

#[test]
fn start_at_a_member_offset() {
    // As a reader of one CDX hit would: open, seek to the member, read.
    let mut file = std::fs::File::open(fixture("whirlwind.warc.gz")).unwrap();
    file.seek(SeekFrom::Start(1023)).unwrap();
    let mut reader = WarcReader::from_file(file).unwrap();
    let first = reader.next_record().unwrap().unwrap();
    assert_eq!((first.warc_type(), first.location.to_string()), (Some("response"), "1023".to_owned()));
    assert_eq!(summary(&read_all(reader)), ["metadata@18374"]);
    // Uncompressed, with a damaged member-less stretch to skip: offsets stay file offsets.
    let mut file = std::fs::File::open(fixture("eugeneware.warc")).unwrap();
    file.seek(SeekFrom::Start(1600)).unwrap();
    let mut reader = WarcReader::from_file(file).unwrap();
    assert!(!reader.is_gzip());
    assert_eq!(summary(&[reader.next_record().unwrap()]), ["!bad_header@1600"]);
    assert_eq!(summary(&[reader.next_record().unwrap()]), ["metadata@2455"]);
    let rest = read_all(reader);
    assert_eq!(rest.len(), 9);
}

#[test]
fn empty_and_blank_inputs() {
    assert!(read_bytes(Vec::new()).is_empty());
    assert!(read_bytes(b"\r\n\r\n\n".to_vec()).is_empty());
    assert_eq!(summary(&read_bytes(b"WAR".to_vec())), ["!truncated_record@0"]);
    assert_eq!(summary(&read_bytes(b"X".to_vec())), ["!bad_header@0"]);
    assert_eq!(summary(&read_bytes(gzip(b""))), Vec::<String>::new());
}

/// Fails reads once `fail_at` bytes have been returned.
struct FailingReader {
    inner: Cursor<Vec<u8>>,
    fail_at: u64,
}

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let pos = self.inner.position();
        if pos >= self.fail_at {
            return Err(io::Error::other("disk on fire"));
        }
        let n = usize::try_from(self.fail_at - pos).unwrap_or(usize::MAX).min(buf.len());
        self.inner.read(&mut buf[..n])
    }
}

impl Seek for FailingReader {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

#[test]
fn io_error_ends_reading_once() {
    let data = fixture_bytes("eugeneware.warc");
    let all = read_bytes(data.clone());
    let src = FailingReader { inner: Cursor::new(data), fail_at: 100_000 };
    let items = read_all(WarcReader::from_source(Box::new(src), 0).unwrap());
    // Every record that ends before the failure, then one error.
    let starts: Vec<u64> = records(&all).iter().map(|r| r.location.member_offset).collect();
    let before: Vec<String> = records(&all)
        .iter()
        .zip(&starts[1..])
        // Records are followed by CR LF CR LF.
        .filter(|(_, &next)| next - 4 <= 100_000)
        .map(|(r, _)| format!("{}@{}", r.warc_type().unwrap(), r.location))
        .collect();
    let mut want = before.clone();
    want.push("!io@100000".into());
    assert!(before.len() >= 5);
    assert_eq!(summary(&items), want);
    assert!(items.last().unwrap().as_ref().unwrap_err().message.contains("disk on fire"));
    // A failure at once fails `open`.
    let src = FailingReader { inner: Cursor::new(Vec::new()), fail_at: 0 };
    assert!(WarcReader::from_source(Box::new(src), 0).is_err());
}

#[test]
fn any_flipped_byte_costs_at_most_its_member() {
    let orig = fixture_bytes("whirlwind.warc.gz");
    let spans = members(&orig);
    assert_eq!(spans, [(0, 516), (516, 507), (1023, 17351), (18374, 483)]);
    for pos in (0..orig.len()).step_by(37) {
        let mut data = orig.clone();
        data[pos] ^= 0x5a;
        let items = read_bytes(data);
        let hit = spans.iter().position(|&(o, l)| (o..o + l).contains(&pos)).unwrap();
        let errors = items.iter().filter(|i| i.is_err()).count();
        assert!(errors <= 1, "flip at {pos}: {:?}", summary(&items));
        let got = ids(&items);
        let want: Vec<&str> = (0..4).filter(|&m| m != hit).map(|m| WHIRLWIND_IDS[m]).collect();
        let without_hit: Vec<&str> = got.iter().copied().filter(|id| *id != WHIRLWIND_IDS[hit]).collect();
        assert_eq!(without_hit, want, "flip at {pos}: {:?}", summary(&items));
    }
}

#[test]
fn any_cut_returns_the_whole_members_before_it() {
    let orig = fixture_bytes("whirlwind.warc.gz");
    let spans = members(&orig);
    for cut in (0..orig.len()).step_by(53) {
        let items = read_bytes(orig[..cut].to_vec());
        let whole = spans.iter().filter(|&&(o, l)| o + l <= cut).count();
        assert_eq!(ids(&items), WHIRLWIND_IDS[..whole], "cut at {cut}: {:?}", summary(&items));
        let errors = items.iter().filter(|i| i.is_err()).count();
        let at_boundary = cut == 0 || spans.iter().any(|&(o, l)| o + l == cut);
        assert_eq!(errors, usize::from(!at_boundary), "cut at {cut}: {:?}", summary(&items));
    }
}

/// ARC files (pywb's sample archive, `pywb/` in the fixtures): records as the
/// WARC records they stand for, plain and gzip per record.
#[test]
fn arc_files_read_as_warc_records() {
    for name in ["pywb/example.arc", "pywb/example.arc.gz"] {
        let items = read_file(name);
        let records: Vec<&WarcRecord> = items.iter().map(|r| r.as_ref().unwrap()).collect();
        assert_eq!(records.len(), 2, "{name}: {items:?}");
        assert_eq!(records[0].warc_type(), Some("warcinfo"));
        assert!(records[0].block.starts_with(b"1 0 LiveWeb Capture"));
        let r = records[1];
        assert_eq!(
            (r.warc_type(), r.target_uri(), r.date()),
            (Some("response"), Some("http://example.com/"), Some("2014-02-16T05:02:21Z"))
        );
        let http = parse_http_response(&r.block).unwrap();
        assert_eq!(http.status, 200);
        assert_eq!(http.header("content-type"), Some("text/html"));
        assert!(String::from_utf8_lossy(http.body).contains("<title>Example Domain</title>"));
    }
    // The gzip file's records start at its members.
    let gz = read_file("pywb/example.arc.gz");
    assert_eq!(gz[0].as_ref().unwrap().location.member_offset, 0);
    assert!(gz[1].as_ref().unwrap().location.member_offset > 0);
}

/// pywb's `bad.arc`: lengths of -1 and `abc`, an 18-digit date. Each bad
/// header is one error; the one good record between them is read.
#[test]
fn bad_arc_headers_are_errors_and_the_good_record_is_read() {
    let items = read_file("pywb/bad.arc");
    let errors: Vec<&RecordError> = items.iter().filter_map(|r| r.as_ref().err()).collect();
    let records: Vec<&WarcRecord> = items.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert!(
        errors.iter().all(|e| e.kind == RecordErrorKind::BadHeader && e.message.contains("ARC record header")),
        "{errors:?}"
    );
    assert!(errors.len() >= 2, "{errors:?}");
    assert_eq!(records.len(), 1, "{items:?}");
    assert_eq!(records[0].target_uri(), Some("http://example.com/"));
    assert_eq!(records[0].block.len(), 1);
}
