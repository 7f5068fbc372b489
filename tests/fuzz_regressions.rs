//! Every input the fuzzers found a crash with (fuzz/regressions/TARGET/*),
//! replayed through the same code the fuzz target runs (fuzz/src/targets.rs):
//! each must now pass without a panic that smelt does not catch on purpose.
//! fuzz/run.sh says how to add one.

#[path = "../fuzz/src/targets.rs"]
mod targets;

use std::path::Path;

#[test]
fn every_saved_fuzz_crash_now_passes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut replayed = Vec::new();
    for (name, run) in targets::ALL {
        let Ok(dir) = std::fs::read_dir(root.join(name)) else { continue };
        let mut files: Vec<_> = dir.map(|e| e.expect("directory entry").path()).collect();
        files.sort();
        for file in files {
            let data = std::fs::read(&file).expect("regression input");
            // A panic fails the test with the file named; the caught ones
            // (inside smelt's guard) never reach here.
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{} panics again", file.display());
            replayed.push(format!("{name}/{}", file.file_name().unwrap().to_string_lossy()));
        }
    }
    assert!(replayed.iter().any(|r| r == "docindex/id-length-oom"), "the regressions were found: {replayed:?}");
}

#[test]
fn a_stage_duration_beyond_range_written_as_a_bare_number_is_a_positioned_error() {
    // `retry_backoff: 3666...6` (80 digits): too long for an integer, so YAML reads a float.
    let ctx = smelt_engine::ConfigureContext::working_dir();
    let yaml = format!(
        "dataset: d\nstages:\n  docs: {{type: jsonl, paths: [in.jsonl], retry_backoff: {}}}\n  out: {{type: parquet, inputs: [docs]}}\n",
        "3".repeat(80)
    );
    let e = smelt_engine::compile("p.yaml", &yaml, &smelt_runner::registry::stages(), &ctx).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("is too long a duration") && text.contains("p.yaml:3:"), "{text}");
}

#[test]
fn an_index_id_length_beyond_the_limit_is_refused_before_allocating() {
    let data = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/docindex/id-length-oom"))
        .expect("regression input");
    let reader = smelt_catalog::docindex::DocIndexReader::new(std::io::Cursor::new(data)).expect("the header is valid");
    let errors: Vec<String> = reader.filter_map(|e| e.err()).map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("document index holds an id of "), "{}", errors[0]);
}

#[test]
fn seed_indexes_read_the_same_streamed_and_mapped_in_key_ranges() {
    use smelt_catalog::docindex::{DocIndexReader, MappedIndex};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seed-files/docindex");
    let mut mapped_files = 0;
    for entry in std::fs::read_dir(&dir).expect("seed directory") {
        let path = entry.expect("entry").path();
        let streamed: Vec<(Vec<u8>, [u8; 16])> = DocIndexReader::new(std::fs::File::open(&path).unwrap())
            .and_then(|r| r.collect::<std::io::Result<_>>())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let Some(index) = MappedIndex::open(&std::fs::File::open(&path).unwrap()).unwrap() else { continue };
        mapped_files += 1;
        for parts in [1, 2, 3, 8] {
            let keys = index.split_keys(parts).unwrap();
            let mut ranges = index.key_ranges(&keys, true).unwrap();
            let mut mapped = Vec::new();
            for r in &mut ranges {
                while r.advance().unwrap() {
                    mapped.push((r.id().to_vec(), *r.hash()));
                }
            }
            assert_eq!(mapped, streamed, "{} in {parts} ranges", path.display());
            let (len, sum) = index.block_checksum(ranges.iter().map(|r| r.block_digests()));
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!((len, sum), (bytes.len() as u64, smelt_catalog::docindex::checksum_of(&bytes)));
        }
    }
    assert!(mapped_files >= 2, "format 2 seeds are there");
}
