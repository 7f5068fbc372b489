use std::io;

use super::merge::merge_files_with;
use super::storage::verify;
use super::writer::put_varint;
use super::*;
use crate::docindex::writer::DocIndexWriter;
use crate::error::CatalogError;
use crate::store::DatasetStore;

fn h(n: u8) -> [u8; 16] {
    [n; 16]
}

fn read_all(bytes: &[u8]) -> Vec<(Vec<u8>, [u8; 16])> {
    DocIndexReader::new(bytes).unwrap().collect::<io::Result<Vec<_>>>().unwrap()
}

/// A deterministic pseudo-random id, like a WARC record id.
fn uuid_id(i: u64) -> String {
    let x = xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes());
    format!(
        "<urn:uuid:{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}>",
        (x >> 96) as u32,
        (x >> 80) as u16,
        (x >> 68) as u16 & 0xfff,
        (x >> 52) as u16,
        x as u64 & 0xffff_ffff_ffff
    )
}

#[test]
fn roundtrip_sorts_and_keeps_duplicates_and_odd_ids() {
    let mut entries = vec![
        ("b".to_string(), h(2)),
        ("a".to_string(), h(1)),
        (String::new(), h(9)),
        ("ab".to_string(), h(3)),
        ("a".to_string(), h(0)),
        ("a".to_string(), h(1)),
        ("é\u{0}x".to_string(), h(4)),
        ("x".repeat(100_000), h(5)),
    ];
    let bytes = encode_run(&mut entries).unwrap();
    assert_eq!(&bytes[..8], MAGIC);
    let got = read_all(&bytes);
    let want: Vec<(Vec<u8>, [u8; 16])> = entries.iter().map(|(i, h)| (i.as_bytes().to_vec(), *h)).collect();
    assert_eq!(got, want);
    assert_eq!(got[0].0, b"");
    assert_eq!((got[1].1, got[2].1, got[3].1), (h(0), h(1), h(1)));

    let empty = encode_run::<&str>(&mut []).unwrap();
    assert!(read_all(&empty).is_empty());
}

#[test]
fn prefix_coding_keeps_indexes_small() {
    let mut entries: Vec<(String, [u8; 16])> =
        (0..20_000u64).map(|i| (uuid_id(i), xxhash_rust::xxh3::xxh3_128(&i.to_be_bytes()).to_le_bytes())).collect();
    let bytes = encode_run(&mut entries).unwrap();
    let per_doc = bytes.len() as f64 / 20_000.0;
    // 47-byte ids (16 random bytes as hex) and 16-byte random hashes: 63 raw
    // bytes; prefix coding drops the shared `<urn:uuid:` and leading digits.
    assert!(per_doc < 53.0, "{per_doc} bytes per entry");
    assert_eq!(read_all(&bytes).len(), 20_000);
}

#[test]
fn format_1_indexes_in_a_zstd_frame_are_still_read() {
    let mut entries: Vec<(String, [u8; 16])> = (0..5_000u64).map(|i| (uuid_id(i % 4000), h((i % 7) as u8))).collect();
    entries.sort_unstable();
    let current = encode_run(&mut entries.clone()).unwrap();
    assert_eq!(&current[8..12], &INDEX_FORMAT.to_le_bytes());
    for level in [-1, 3] {
        let mut w = DocIndexWriter::with_level(Vec::new(), level).unwrap();
        for (id, hash) in &entries {
            w.push(id.as_bytes(), hash).unwrap();
        }
        let old = w.finish().unwrap();
        assert_eq!(&old[8..12], &FORMAT_ZSTD.to_le_bytes());
        assert_eq!(read_all(&old), read_all(&current), "level {level}");
    }
}

#[test]
fn corrupt_cut_unsorted_and_foreign_files_are_errors() {
    let mut entries: Vec<(String, [u8; 16])> = (0..1000u64).map(|i| (uuid_id(i), h(i as u8))).collect();
    let bytes = encode_run(&mut entries).unwrap();
    let err = |b: &[u8]| -> io::Error {
        match DocIndexReader::new(b) {
            Err(e) => e,
            Ok(r) => r.collect::<io::Result<Vec<_>>>().unwrap_err(),
        }
    };
    assert!(err(b"PAR1....").to_string().contains("not a smelt document index"));
    let mut newer = bytes.clone();
    newer[8] = 9;
    assert!(err(&newer).to_string().contains("newer"));
    for cut in [bytes.len() - 1, bytes.len() / 2, HEADER_LEN + 3] {
        let e = err(&bytes[..cut]);
        assert!(
            matches!(e.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData | io::ErrorKind::Other),
            "{e:?}"
        );
    }
    // A flipped byte may decode (a hash changes): the file checksum that
    // stored indexes carry catches it; reading must only not panic.
    let mut flipped = bytes.clone();
    let mid = bytes.len() / 2;
    flipped[mid] ^= 0x55;
    let _ = DocIndexReader::new(&flipped[..]).map(|r| r.count());
    let mut trailing = bytes.clone();
    trailing.extend_from_slice(b"junk");
    err(&trailing);

    let mut w = DocIndexWriter::new(Vec::new()).unwrap();
    w.push(b"b", &h(0)).unwrap();
    assert_eq!(w.push(b"a", &h(0)).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    w.push(b"b", &h(1)).unwrap();
    assert_eq!(w.finish().map(|b| read_all(&b).len()).unwrap(), 2);
}

type Entries = Vec<(Vec<u8>, [u8; 16])>;

/// Entries with runs of duplicate ids (some longer than a restart interval),
/// sorted, and their encoding with restart points `MIN_RESTART_BYTES` apart.
fn restarted(n: u64) -> (Entries, Vec<u8>) {
    let mut entries: Vec<(Vec<u8>, [u8; 16])> = (0..n)
        .map(|i| {
            // Every 97th id repeats 300 times: about 19 KB of records, across restart points.
            let id = if i % 997 < 300 { uuid_id(i / 997 * 997) } else { uuid_id(i) };
            (id.into_bytes(), h((i % 251) as u8))
        })
        .collect();
    entries.sort_unstable();
    let mut w = DocIndexWriter::with_restarts(Vec::new(), MIN_RESTART_BYTES).unwrap();
    for (id, hash) in &entries {
        w.push(id, hash).unwrap();
    }
    (entries, w.finish().unwrap())
}

fn mapped(bytes: &[u8]) -> (tempfile::TempDir, io::Result<Option<MappedIndex>>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.idx");
    std::fs::write(&path, bytes).unwrap();
    let index = MappedIndex::open(&std::fs::File::open(&path).unwrap());
    (dir, index)
}

fn drain(mut r: MappedRecords<'_>) -> io::Result<Entries> {
    let mut out = Vec::new();
    while r.advance()? {
        out.push((r.id().to_vec(), *r.hash()));
    }
    Ok(out)
}

#[test]
fn restart_points_let_a_mapped_index_seek_and_split() {
    let (entries, bytes) = restarted(20_000);
    assert_eq!(read_all(&bytes), entries, "the streaming reader checks the restart points and the footer");
    let (_dir, index) = mapped(&bytes);
    let index = index.unwrap().expect("format 2 maps");
    assert_eq!(index.entries(), 20_000);
    assert!(index.restart_points() > 200, "{} restart points", index.restart_points());
    assert_eq!(drain(index.records()).unwrap(), entries);

    // Seeking lands on the first entry with the key or after it, for keys
    // that are ids (repeated or not), fall between ids, or lie outside them.
    let mut keys: Vec<Vec<u8>> = entries.iter().step_by(313).map(|(id, _)| id.clone()).collect();
    keys.extend(entries.iter().step_by(577).map(|(id, _)| [id.as_slice(), b"!"].concat()));
    keys.extend([Vec::new(), b"<".to_vec(), b"~".to_vec()]);
    for key in &keys {
        let from = entries.partition_point(|(id, _)| id < key);
        assert_eq!(drain(index.seek(key).unwrap()).unwrap(), entries[from..], "key {}", String::from_utf8_lossy(key));
    }

    // Key ranges cut at split keys cover every entry once, in order, and
    // never cut an id's entries apart.
    for parts in [1, 2, 3, 8, 1000] {
        let split = index.split_keys(parts).unwrap();
        assert!(split.len() < parts.max(1) && split.windows(2).all(|w| w[0] < w[1]));
        let mut starts = vec![index.records()];
        starts.extend(split.iter().map(|k| index.seek(k).unwrap()));
        let ends: Vec<usize> = starts[1..].iter().map(MappedRecords::position).chain([usize::MAX]).collect();
        let mut all = Vec::new();
        for (r, end) in starts.into_iter().zip(ends) {
            let range = drain(r.until(end)).unwrap();
            if let (Some(last), Some(next)) = (range.last(), entries.get(all.len() + range.len())) {
                assert_ne!(last.0, next.0, "{parts} parts: an id is cut apart");
            }
            all.extend(range);
        }
        assert_eq!(all, entries, "{parts} parts");
    }

    // Empty, and format 1 (no restart points: read by streaming).
    let empty = encode_run::<&str>(&mut []).unwrap();
    let (_d, e) = mapped(&empty);
    let e = e.unwrap().unwrap();
    assert_eq!((e.entries(), e.split_keys(4).unwrap().len()), (0, 0));
    assert!(drain(e.seek(b"x").unwrap()).unwrap().is_empty());
    let mut w = DocIndexWriter::with_level(Vec::new(), 3).unwrap();
    w.push(b"a", &h(1)).unwrap();
    let (_d, old) = mapped(&w.finish().unwrap());
    assert!(old.unwrap().is_none());
}

#[test]
fn damaged_restart_points_and_footers_are_errors() {
    let (_, bytes) = restarted(3_000);
    let n = u64::from_le_bytes(bytes[bytes.len() - 16..bytes.len() - 8].try_into().unwrap()) as usize;
    let offsets_at = bytes.len() - 32 - 8 * n;
    let stream_err = |b: &[u8]| DocIndexReader::new(b).and_then(|r| r.collect::<io::Result<Vec<_>>>()).unwrap_err();
    let map_err = |b: &[u8]| match mapped(b).1 {
        Err(e) => e,
        Ok(Some(ix)) => drain(ix.records()).unwrap_err(),
        Ok(None) => panic!("format 2 expected"),
    };
    // A footer offset moved by one byte, the entry count changed, the magic
    // bytes cut, a footer cut off: the streaming reader refuses each; the
    // mapped one refuses all but the moved offset at once (it checks offsets
    // where it seeks, and stored indexes are read with their file checksum).
    let mut moved = bytes.clone();
    moved[offsets_at + 8] ^= 1;
    let mut count = bytes.clone();
    count[bytes.len() - 24] ^= 1;
    let mut magic = bytes.clone();
    *magic.last_mut().unwrap() = b'?';
    for (what, b) in
        [("offset", &moved[..]), ("count", &count[..]), ("magic", &magic[..]), ("cut", &bytes[..offsets_at])]
    {
        let e = stream_err(b);
        assert!(e.to_string().contains("footer") || e.kind() == io::ErrorKind::UnexpectedEof, "{what}: {e}");
        if what == "offset" {
            continue;
        }
        let e = map_err(b);
        assert!(e.to_string().contains("footer") || e.to_string().contains("magic"), "{what}: {e}");
    }
    // A restart record that shares a prefix.
    // (the middle one: where `split_keys(2)` cuts).
    let at = offsets_at + 8 * (n / 2);
    let middle = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
    let mut shared = bytes.clone();
    let head_len = if shared[middle] < 0x80 { 1 } else { 2 };
    shared[middle + head_len] = 1;
    assert!(stream_err(&shared).to_string().contains("restart point"));
    let (_d, ix) = mapped(&shared);
    assert!(ix.unwrap().unwrap().split_keys(2).unwrap_err().to_string().contains("restart point"));
    // Restart points closer than a reader accepts.
    let mut close = bytes.clone();
    close[12..16].copy_from_slice(&64u32.to_le_bytes());
    assert!(stream_err(&close).to_string().contains("restart points 64 bytes apart"));
    assert!(map_err(&close).to_string().contains("restart points 64 bytes apart"));
}

#[test]
fn unsorted_input_written_by_hand_is_refused_by_the_reader() {
    // Bypass the writer's check: records "b" then "a".
    let mut raw = Vec::new();
    for id in [b"b", b"a"] {
        put_varint(&mut raw, 2);
        put_varint(&mut raw, 0);
        raw.extend_from_slice(id);
        raw.extend_from_slice(&h(0));
    }
    put_varint(&mut raw, 0);
    put_varint(&mut raw, 2);
    for (format, body) in [(INDEX_FORMAT, raw.clone()), (FORMAT_ZSTD, zstd::stream::encode_all(&raw[..], 1).unwrap())] {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&format.to_le_bytes());
        let restart_bytes = if format == INDEX_FORMAT { MIN_RESTART_BYTES } else { 0 };
        bytes.extend_from_slice(&restart_bytes.to_le_bytes());
        bytes.extend_from_slice(&body);
        let e = DocIndexReader::new(&bytes[..]).unwrap().collect::<io::Result<Vec<_>>>().unwrap_err();
        assert!(e.to_string().contains("not sorted"), "format {format}: {e}");
    }
}

#[test]
fn multi_pass_merge_of_many_small_runs_equals_one_sort() {
    let dir = ScratchDir::new(SCRATCH_PREFIX).unwrap();
    let mut all = Vec::new();
    let mut paths = Vec::new();
    // 300 runs of up to 40 entries, with ids repeated across runs (duplicates kept).
    for run in 0..300u64 {
        let mut entries: Vec<(String, [u8; 16])> =
            (0..(run % 41)).map(|k| (uuid_id((run * 7 + k * 13) % 2000), h((run % 3) as u8))).collect();
        all.extend(entries.iter().cloned());
        let p = dir.path().join(format!("in-{run}.idx"));
        std::fs::write(&p, encode_run(&mut entries).unwrap()).unwrap();
        paths.push(p);
    }
    all.sort();
    let want: Vec<(Vec<u8>, [u8; 16])> = all.iter().map(|(i, h)| (i.as_bytes().to_vec(), *h)).collect();
    for fan_in in [2, 7, 64] {
        let (out, n) = merge_files_with(&paths, Vec::new(), dir.path(), fan_in).unwrap();
        assert_eq!(n, want.len() as u64);
        assert_eq!(read_all(&out), want, "fan-in {fan_in}");
    }
    // Intermediate files are cleaned up; the inputs are kept.
    let left = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(left, 300);
    let (out, n) = merge_files(&[], Vec::new(), dir.path()).unwrap();
    assert_eq!((read_all(&out).len(), n), (0, 0));
}

#[test]
fn run_builder_spills_past_its_budget_and_gives_the_same_bytes() {
    let base = ScratchDir::new(SCRATCH_PREFIX).unwrap();
    let entries: Vec<(String, [u8; 16])> = (0..5000u64).map(|i| (uuid_id(i % 4000), h((i % 5) as u8))).collect();
    let mut small = RunBuilder::with_budget(4096, base.path().to_path_buf());
    let mut big = RunBuilder::with_budget(usize::MAX, base.path().to_path_buf());
    for (id, hash) in &entries {
        small.push(id.as_bytes(), hash).unwrap();
        big.push(id.as_bytes(), hash).unwrap();
    }
    assert!(small.spills() > 20, "{} spills", small.spills());
    assert_eq!(big.spills(), 0);
    let (a, na) = small.finish_to(Vec::new()).unwrap();
    let (b, nb) = big.finish_to(Vec::new()).unwrap();
    assert_eq!((na, nb), (5000, 5000));
    assert_eq!(read_all(&a), read_all(&b));
    let mut sorted = entries.clone();
    assert_eq!(b, encode_run(&mut sorted).unwrap(), "one encoding for the same entries");

    let mut spilling = RunBuilder::with_budget(4096, base.path().to_path_buf());
    for (id, hash) in &entries {
        spilling.push(id.as_bytes(), hash).unwrap();
    }
    match spilling.finish().unwrap() {
        FinishedRun::File { path, entries, bytes, checksum, .. } => {
            let data = std::fs::read(&path).unwrap();
            assert_eq!((entries, bytes), (5000, data.len() as u64));
            assert_eq!(checksum, checksum_of(&data));
        }
        FinishedRun::Memory { .. } => panic!("expected a file"),
    }
    assert_eq!(std::fs::read_dir(base.path()).unwrap().count(), 0, "spill directories are removed");
}

#[tokio::test]
async fn put_run_and_open_stored_on_local_and_memory_roots() {
    let dir = ScratchDir::new(SCRATCH_PREFIX).unwrap();
    let local = DatasetStore::open(dir.path().join("ds").to_str().unwrap()).unwrap();
    let memory = DatasetStore::open("memory:///ds").unwrap();
    for store in [local, memory] {
        let mut b = RunBuilder::with_budget(2048, dir.path().to_path_buf());
        for i in 0..500u64 {
            b.push(uuid_id(i).as_bytes(), &h(1)).unwrap();
        }
        let r = put_run(&store, &split_index_path("r", 3), b.finish().unwrap()).await.unwrap();
        assert_eq!((r.path.as_str(), r.entries), ("runs/r/index/00003.idx", 500));
        let opened = open_stored(&store, &r).await.unwrap();
        verify(&opened.path, &r, &opened.location).unwrap();
        let bytes = std::fs::read(&opened.path).unwrap();
        assert_eq!(read_all(&bytes).len(), 500);
        let mut wrong = r.clone();
        wrong.checksum = "xxh3-128:0".into();
        assert!(matches!(verify(&opened.path, &wrong, "x"), Err(CatalogError::Corrupt { .. })));
    }
}
