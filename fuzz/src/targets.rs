//! What each fuzz target runs on one input. Shared by the libFuzzer targets
//! (fuzz/fuzz_targets/) and by tests/fuzz_regressions.rs, which replays every
//! saved input under fuzz/regressions/TARGET/ on each `cargo test`; uses only
//! crates the main package depends on.

use std::io::Write;

use smelt_connectors::{sink, source};
use smelt_engine::{ConfigureContext, ReadOptions, Skips, SourceConfig, StageConfig, StageKind, StageType};
use smelt_stages::html::{decode_html, html_to_text, TextOptions};
use smelt_stages::{extract_document, ExtractOptions};

/// A scratch directory for inputs that the readers take as files: on tmpfs
/// where there is one.
pub fn scratch() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() { "/dev/shm".into() } else { std::env::temp_dir() };
        let dir = base.join(format!("smelt-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        dir
    })
}

/// Writes `data` to `name` in the scratch directory and returns its path.
pub fn write_input(name: &str, data: &[u8]) -> String {
    let path = scratch().join(name);
    let mut f = std::fs::File::create(&path).expect("scratch file");
    f.write_all(data).expect("scratch write");
    path.to_string_lossy().into_owned()
}

/// Configures a source stage from `options` (JSON) the way a pipeline file
/// would, then reads every split to its end, as a run does; errors that end a
/// split are fine (they are the run's precise errors), panics are not.
fn read_source(
    configure: fn(serde_json::Value, &ConfigureContext) -> Result<StageConfig, smelt_engine::OptionError>,
    options: serde_json::Value,
) -> u64 {
    let ctx = ConfigureContext::new(scratch(), scratch());
    let Ok(StageConfig::Source(source)) = configure(options, &ctx) else {
        panic!("the fuzz target's source options are refused");
    };
    read_all(source.as_ref())
}

fn read_all(source: &dyn SourceConfig) -> u64 {
    let mut rows = 0u64;
    let Ok(splits) = source.splits() else { return 0 };
    for split in &splits {
        let Ok(mut reader) = source.open(split, &ReadOptions { batch_rows: 64 }) else { continue };
        let mut skips = Skips::default();
        while let Ok(Some(batch)) = reader.next_batch(&mut skips) {
            rows += batch.num_rows() as u64;
        }
        let _ = reader.state();
    }
    rows
}

/// The targets by name, for replaying saved inputs.
pub const ALL: [(&str, fn(&[u8])); 7] = [
    ("warc", warc),
    ("jsonl", jsonl),
    ("feed", feed),
    ("html", html),
    ("pipeline_yaml", pipeline_yaml),
    ("manifest", manifest),
    ("docindex", docindex),
];

/// The `warc` source end to end on one file: gzip members (or none), WARC
/// and ARC headers, HTTP blocks, records into documents (responses and WET
/// conversions).
pub fn warc(data: &[u8]) {
    let path = write_input("input.warc", data);
    for records in ["response", "conversion"] {
        read_source(source::warc::configure, serde_json::json!({ "paths": [path], "records": records }));
    }
}

/// The `jsonl` source end to end on one file, plain or gzip (by its magic bytes).
pub fn jsonl(data: &[u8]) {
    let name = if data.starts_with(&[0x1f, 0x8b]) { "input.jsonl.gz" } else { "input.jsonl" };
    let path = write_input(name, data);
    read_source(source::jsonl::configure, serde_json::json!({ "paths": [path], "time_field": "date" }));
}

const FEED_CONTENT_TYPES: [Option<&str>; 6] = [
    None,
    Some("application/rss+xml"),
    Some("application/atom+xml; charset=utf-8"),
    Some("text/xml; charset=windows-1252"),
    Some("application/xml; charset=UTF-16"),
    Some("text/html; charset=big5"),
];

/// Feed decoding and parsing as the `rss` source does it: the first byte picks
/// the HTTP Content-Type (so charsets sent by HTTP are covered), the rest is
/// the body: decoded, cleaned, parsed, a truncated body recovered.
pub fn feed(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else { return };
    let content_type = FEED_CONTENT_TYPES[usize::from(selector) % FEED_CONTENT_TYPES.len()];
    if let Ok(feed) = source::rss::parse_feed(body, content_type, "http://127.0.0.1/feed.xml") {
        assert!(feed.items.iter().all(|i| !i.keys.is_empty()), "every item has a key");
    }
}

/// HTML charset detection and decoding, visible text, and main-content
/// extraction with no time budget (a slow path shows as a libFuzzer timeout).
pub fn html(data: &[u8]) {
    let url = Some("http://127.0.0.1/page.html");
    let (text, _) = decode_html(data, None, url);
    let _ = decode_html(data, Some("text/html; charset=iso-8859-1"), url);
    let _ = html_to_text(&text, &TextOptions { keep_title: true });
    let options = ExtractOptions { timeout: None, min_chars: 1, ..ExtractOptions::default() };
    if let Ok(doc) = extract_document(data, None, url, &options) {
        assert!(!doc.text.is_empty(), "an extracted document has text");
    }
}

/// The stage types the pipeline target compiles with: every kind (sources,
/// transforms, barriers, the sink). `sql` is left out: it links DataFusion.
fn registry() -> &'static [StageType] {
    static REGISTRY: std::sync::OnceLock<Vec<StageType>> = std::sync::OnceLock::new();
    REGISTRY.get_or_init(|| {
        let t = |name, kind, configure| StageType {
            name,
            kind,
            about: "",
            configure,
            options: smelt_engine::options_schema::<serde_json::Value>,
        };
        vec![
            t("warc", StageKind::Source, source::warc::configure),
            t("jsonl", StageKind::Source, source::jsonl::configure),
            t("rss", StageKind::Source, source::rss::configure),
            t("extract", StageKind::Transform, smelt_stages::extract::configure),
            t("html_to_text", StageKind::Transform, smelt_stages::html_to_text::configure),
            t("langid", StageKind::Transform, smelt_stages::langid::configure),
            t("gopher_quality", StageKind::Transform, smelt_stages::filters::gopher_quality::configure),
            t("fineweb", StageKind::Transform, smelt_stages::filters::fineweb::configure),
            t("tokenize", StageKind::Transform, smelt_stages::tokenize::configure),
            t("dedup_exact", StageKind::Barrier, smelt_stages::dedup::exact::configure_exact),
            t("dedup_minhash", StageKind::Barrier, smelt_stages::dedup::minhash::configure),
            t("parquet", StageKind::Sink, sink::parquet::configure),
        ]
    })
}

/// The pipeline loader and compiler: YAML with positions, the pipeline's
/// structure, `inputs` wiring and cycles, and the listed stages' options.
pub fn pipeline_yaml(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let ctx = ConfigureContext::new(scratch(), scratch());
    if let Err(diagnostics) = smelt_engine::compile("fuzz.yaml", &text, registry(), &ctx) {
        assert!(!diagnostics.0.is_empty(), "a refused pipeline says why");
        let _ = diagnostics.to_string();
    }
}

/// A version manifest as the catalog reads it from a dataset's storage
/// (`catalog rebuild`, `catalog show`): decoded, summarised, and encoded back
/// to what it read.
pub fn manifest(data: &[u8]) {
    use smelt_catalog::{VersionManifest, VersionSummary};
    if let Ok(m) = serde_json::from_slice::<VersionManifest>(data) {
        let _ = VersionSummary::of(&m);
        let encoded = serde_json::to_vec(&m).expect("a manifest encodes");
        let again: VersionManifest = serde_json::from_slice(&encoded).expect("an encoded manifest decodes");
        assert_eq!(serde_json::to_vec(&again).ok(), Some(encoded), "a manifest round-trips");
    }
}

/// A stored document index (the sorted `(id, content hash)` file that
/// `catalog diff` reads): header checks, zstd frames (format 1), restart
/// points and footer (format 2), entries to the end; and the same bytes
/// mapped, as the document diff reads them: cut into key ranges that hash
/// their checksum blocks. Where the streaming reader accepts the whole
/// file, the ranges must give the same entries, in order.
pub fn docindex(data: &[u8]) {
    use smelt_catalog::docindex::{DocIndexReader, MappedIndex};
    let streamed: Option<Vec<(Vec<u8>, [u8; 16])>> = match DocIndexReader::new(std::io::Cursor::new(data)) {
        Ok(reader) => reader.take(1 << 20).collect::<std::io::Result<_>>().ok(),
        Err(_) => None,
    };
    let path = std::env::temp_dir().join(format!("smelt-fuzz-docindex-{}.idx", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let Ok(file) = std::fs::File::open(&path) else { return };
    // Unlinked at once: the open file (and its mapping) stays readable, and
    // nothing is left in the temporary directory when the fuzzer stops.
    let _ = std::fs::remove_file(&path);
    let index = match MappedIndex::open(&file) {
        Ok(Some(index)) => index,
        Ok(None) => return, // format 1: streamed only
        Err(e) => {
            assert!(streamed.is_none(), "the mapped reader refuses an index the streaming one reads: {e}");
            return;
        }
    };
    let mut mapped = Vec::new();
    let mut failed = false;
    if let Ok(keys) = index.split_keys(3) {
        match index.key_ranges(&keys, true) {
            Ok(mut ranges) => {
                for r in &mut ranges {
                    while !failed && mapped.len() < 1 << 20 {
                        match r.advance() {
                            Ok(true) => mapped.push((r.id().to_vec(), *r.hash())),
                            Ok(false) => break,
                            Err(_) => failed = true,
                        }
                    }
                    r.finish_blocks();
                }
                let _ = index.block_checksum(ranges.iter().map(|r| r.block_digests()));
            }
            Err(_) => failed = true,
        }
    } else {
        failed = true;
    }
    if let Some(streamed) = streamed {
        assert!(!failed, "the mapped reader fails on an index the streaming one reads");
        assert_eq!(mapped, streamed, "mapped key ranges and the streaming reader disagree");
    }
}
