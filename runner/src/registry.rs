//! The one table that maps a stage `type:` name to its factory. Adding a
//! stage means adding a line here (and its section in docs/stages.md); there
//! is no hidden registration.

use smelt_connectors::{sink, source};
use smelt_engine::{options_schema, StageKind, StageType};
use smelt_stages as pipelines;

/// Every stage type smelt knows, sources first.
pub fn stages() -> Vec<StageType> {
    vec![
        StageType {
            name: "warc",
            kind: StageKind::Source,
            about: "WARC/WET and ARC files (gzip per record or whole file): HTTP responses with HTML, or WET text",
            configure: source::warc::configure,
            options: options_schema::<source::warc::WarcConfig>,
        },
        StageType {
            name: "jsonl",
            kind: StageKind::Source,
            about: "JSON Lines files (.jsonl, .jsonl.gz), one document per line (Dolma/datatrove layout)",
            configure: source::jsonl::configure,
            options: options_schema::<source::jsonl::JsonlConfig>,
        },
        StageType {
            name: "parquet_files",
            kind: StageKind::Source,
            about: "Parquet files with a `text` column (e.g. another dataset's shards)",
            configure: source::parquet::configure,
            options: options_schema::<source::parquet::ParquetSourceConfig>,
        },
        StageType {
            name: "commoncrawl",
            kind: StageKind::Source,
            about: "Common Crawl over HTTPS or S3: a crawl (or `latest`), WARC/WET/WAT, segments, a sample, or CDX url/domain lookups; incremental",
            configure: source::commoncrawl::configure,
            options: options_schema::<source::commoncrawl::CommonCrawlConfig>,
        },
        StageType {
            name: "commoncrawl_news",
            kind: StageKind::Source,
            about: "CC-NEWS monthly WARC files over HTTPS or S3, incremental by file",
            configure: source::commoncrawl::configure_news,
            options: options_schema::<source::commoncrawl::CommonCrawlNewsConfig>,
        },
        StageType {
            name: "rss",
            kind: StageKind::Source,
            about: "RSS/Atom/JSON feeds; new items' pages fetched politely as HTML (for `extract`); items de-duplicated across runs",
            configure: source::rss::configure,
            options: options_schema::<source::rss::RssConfig>,
        },
        StageType {
            name: "html_to_text",
            kind: StageKind::Transform,
            about: "decode HTML (HTTP/meta charset, detection) and keep its visible text; drops empty pages",
            configure: pipelines::html_to_text::configure,
            options: options_schema::<pipelines::html_to_text::HtmlToTextConfig>,
        },
        StageType {
            name: "extract",
            kind: StageKind::Transform,
            about: "decode HTML and keep its main content (drops navigation, footers, comments, share bars, ads, ...)",
            configure: pipelines::extract::configure,
            options: options_schema::<pipelines::extract::ExtractConfig>,
        },
        StageType {
            name: "content_hash",
            kind: StageKind::Transform,
            about: "add `content_hash`: xxh3-128 of the normalised text (lowercase, collapsed whitespace)",
            configure: pipelines::content_hash::configure,
            options: options_schema::<pipelines::content_hash::ContentHashConfig>,
        },
        StageType {
            name: "pii",
            kind: StageKind::Transform,
            about: "redact email addresses, public IPv4/IPv6 addresses and phone numbers in `text` (counted per kind)",
            configure: pipelines::pii::configure,
            options: options_schema::<pipelines::pii::PiiConfig>,
        },
        StageType {
            name: "toxicity",
            kind: StageKind::Transform,
            about: "drop or flag documents with block-list words (LDNOOBW, per row language) or block-listed URLs",
            configure: pipelines::toxicity::configure,
            options: options_schema::<pipelines::toxicity::ToxicityConfig>,
        },
        StageType {
            name: "audit",
            kind: StageKind::Transform,
            about: "bias audit: HolisticBias groups and pronouns, toxicity per group, by language and source; rows pass unchanged; gates",
            configure: pipelines::audit::configure,
            options: options_schema::<pipelines::audit::AuditConfig>,
        },
        StageType {
            name: "langid",
            kind: StageKind::Transform,
            about: "add `lang`/`lang_score` (fastText LID-176 embedded, or whatlang); keep the languages asked for",
            configure: pipelines::langid::configure,
            options: options_schema::<pipelines::langid::LangIdConfig>,
        },
        StageType {
            name: "classify",
            kind: StageKind::Transform,
            about: "score documents with a fastText classifier (score_<label>, or label + score); keep by an expression over the scores; `buckets`: token-weighted percentile buckets over the run (then a barrier)",
            configure: pipelines::classify::configure,
            options: options_schema::<pipelines::classify::ClassifyConfig>,
        },
        StageType {
            name: "gopher_quality",
            kind: StageKind::Transform,
            about: "drop documents failing Gopher's quality rules (datatrove GopherQualityFilter: word count, word length, symbols, stop words)",
            configure: pipelines::filters::gopher_quality::configure,
            options: options_schema::<pipelines::filters::gopher_quality::GopherQualityConfig>,
        },
        StageType {
            name: "gopher_repetition",
            kind: StageKind::Transform,
            about: "drop documents with repeated lines, paragraphs or n-grams (datatrove GopherRepetitionFilter)",
            configure: pipelines::filters::gopher_repetition::configure,
            options: options_schema::<pipelines::filters::gopher_repetition::GopherRepetitionConfig>,
        },
        StageType {
            name: "c4",
            kind: StageKind::Transform,
            about: "C4 cleaning (datatrove C4QualityFilter): remove boilerplate lines, drop lorem ipsum, code and short pages",
            configure: pipelines::filters::c4::configure,
            options: options_schema::<pipelines::filters::c4::C4Config>,
        },
        StageType {
            name: "fineweb",
            kind: StageKind::Transform,
            about: "drop documents failing FineWeb's rules (datatrove FineWebQualityFilter: line punctuation, short lines, duplicates, lists)",
            configure: pipelines::filters::fineweb::configure,
            options: options_schema::<pipelines::filters::fineweb::FineWebConfig>,
        },
        StageType {
            name: "dedup_exact",
            kind: StageKind::Barrier,
            about: "drop documents whose content_hash was seen before in the run (keep first or newest)",
            configure: pipelines::dedup::exact::configure_exact,
            options: options_schema::<pipelines::dedup::exact::DedupExactConfig>,
        },
        StageType {
            name: "dedup_url",
            kind: StageKind::Barrier,
            about: "drop documents whose normalised URL was seen before in the run (keep first or newest)",
            configure: pipelines::dedup::exact::configure_url,
            options: options_schema::<pipelines::dedup::exact::DedupUrlConfig>,
        },
        StageType {
            name: "dedup_lines",
            kind: StageKind::Barrier,
            about: "remove lines seen more than max_occurrences times in the run (CCNet line dedup, keep first); lines_removed, chars_removed",
            configure: pipelines::dedup::lines::configure,
            options: options_schema::<pipelines::dedup::lines::DedupLinesConfig>,
        },
        StageType {
            name: "dedup_minhash",
            kind: StageKind::Barrier,
            about: "drop near-duplicate documents (FineWeb/datatrove MinHash: 5-grams, 14 bands x 8 hashes); dup_cluster, dup_cluster_size on kept ones",
            configure: pipelines::dedup::minhash::configure,
            options: options_schema::<pipelines::dedup::minhash::DedupMinhashConfig>,
        },
        StageType {
            name: "sql",
            kind: StageKind::Transform,
            about: "SQL expressions (DataFusion): `where` drops rows that are not true, `columns` adds or replaces derived columns",
            configure: smelt_query::stage::configure,
            options: options_schema::<smelt_query::stage::SqlConfig>,
        },
        StageType {
            name: "python",
            kind: StageKind::Transform,
            about: "your own Python function or class (filter, map or batch mode) in worker processes, fed Arrow batches",
            configure: pipelines::python::configure,
            options: options_schema::<pipelines::python::PythonConfig>,
        },
        StageType {
            name: "datatrove",
            kind: StageKind::Transform,
            about: "an installed datatrove step as it is (PipelineStep, BaseFilter, BaseFormatter): its drops and reasons, its text changes",
            configure: pipelines::python::configure_datatrove,
            options: options_schema::<pipelines::python::DatatroveConfig>,
        },
        StageType {
            name: "back_translate",
            kind: StageKind::Transform,
            about: "add back-translations (apertium, openai or libretranslate; through pivot languages and back) as new rows beside the originals",
            configure: pipelines::augment::back_translate::configure,
            options: options_schema::<pipelines::augment::back_translate::BackTranslateConfig>,
        },
        StageType {
            name: "tokenize",
            kind: StageKind::Transform,
            about: "add `input_ids`/`n_tokens` with a HF tokenizer.json or tiktoken:cl100k_base|o200k_base|r50k_base|p50k_base (BOS/EOS, truncate or split)",
            configure: pipelines::tokenize::configure,
            options: options_schema::<pipelines::tokenize::TokenizeConfig>,
        },
        StageType {
            name: "parquet",
            kind: StageKind::Sink,
            about: "write the dataset as zstd Parquet shards, committed as a catalog version",
            configure: sink::parquet::configure,
            options: options_schema::<sink::parquet::ParquetSinkConfig>,
        },
    ]
}
