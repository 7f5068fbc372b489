//! `dedup_sentences` barrier stage: C4's sentence deduplication as datatrove
//! 0.10.1 does it (`SentenceDedupSignature`, `SentenceFindDedups`,
//! `SentenceDedupFilter`). Every window of `n_sentences` consecutive
//! sentences that was seen earlier in the run (in (split, row, sentence)
//! order) is cut from `text`; a document that lost sentences and is left too
//! short is dropped.
//!
//! ```text
//! observe, per split:  sentences (spaCy's sentencizer, as datatrove) ─strip, drop empty─►
//!                      simplify_text each ─► windows of n joined by " " ─xxh64─►
//!                      (hash, row, window) ──► repeats.rs (sorted files, k-way merge)
//! resolve, once:       every occurrence of a hash but the first ──► drops
//! apply, per split:    sentence spans; a dropped window i cuts spans i..i+n;
//!                      kept spans (each with the whitespace before it) joined, left-stripped;
//!                      too few words or sentences left ──► dropped
//! ```
//! The signature, the window numbering and the cut are datatrove's, so with
//! one split the output texts equal datatrove's with one task (bench/
//! sentence_dedup.sh measures it). With several splits the first occurrence
//! is the first in (split, row) order, which is the input's order; datatrove
//! orders by (hash, document number within its task, task), which depends on
//! how documents were spread over tasks.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, GenericStringArray, GenericStringBuilder, OffsetSizeTrait};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use smelt_engine::yaml::PathSeg;
use smelt_engine::{
    parse_options, require_column, str_at, BarrierConfig, BarrierContext, BarrierObserver, ConfigureContext,
    OptionError, Processed, Result, SchemaError, StageConfig, Transform,
};

use super::minhash::simplify::simplify_text;
use super::repeats::{self, Entry, Observed};
use crate::filters::gopher_quality::d_language;
use crate::filters::words::{count_sentences, sentence_ends, split_into_words, Segmenter};
use crate::filters::{py_isspace, py_splitlines, py_strip};

/// Drop reason of documents left too short.
const REASON: &str = "sentences_dedup_short";

/// Extension of the observed files.
const EXT: &str = "sentences";

/// Options of `dedup_sentences` (datatrove's `SentDedupConfig` names and defaults).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DedupSentencesConfig {
    /// Consecutive sentences per window (C4: 3).
    #[serde(default = "d_n_sentences")]
    pub n_sentences: u32,
    /// `false`: pieces are lines (Python's `splitlines`), joined again with `\n`.
    #[serde(default = "d_true")]
    pub split_sentences: bool,
    /// A document that lost sentences keeps at least this many words, or is dropped (0: no check).
    #[serde(default = "d_min_doc_words")]
    pub min_doc_words: u64,
    /// A document that lost sentences keeps at least this many sentences, or is dropped (0: no check).
    #[serde(default = "d_min_num_sentences")]
    pub min_num_sentences: u64,
    /// A duplicate span of fewer words than this stays (0: every duplicate span is cut).
    #[serde(default)]
    pub min_words_to_remove_span: u64,
    /// Language of rows without a `lang` column value: picks the sentence and word rules.
    #[serde(default = "d_language")]
    pub language: String,
}

fn d_n_sentences() -> u32 {
    3
}

fn d_true() -> bool {
    true
}

fn d_min_doc_words() -> u64 {
    50
}

fn d_min_num_sentences() -> u64 {
    3
}

/// Registry hook of `dedup_sentences`.
///
/// # Errors
/// Unknown or invalid options (`n_sentences` must be at least 1).
pub fn configure(options: serde_json::Value, _ctx: &ConfigureContext) -> Result<StageConfig, OptionError> {
    let c: DedupSentencesConfig = parse_options(options)?;
    if c.n_sentences == 0 {
        return Err(OptionError {
            path: vec![PathSeg::Key("n_sentences".into())],
            message: "must be at least 1".into(),
            at_key: false,
        });
    }
    Ok(StageConfig::Barrier(Arc::new(DedupSentences {
        resolved: serde_json::to_value(&c).unwrap_or_default(),
        segmenter: Segmenter::for_language(&c.language),
        c,
    })))
}

#[derive(Debug)]
struct DedupSentences {
    c: DedupSentencesConfig,
    segmenter: Segmenter,
    resolved: serde_json::Value,
}

/// The row's segmenter: its `lang` value, else the stage's language.
fn row_segmenter(lang: Option<&ArrayRef>, i: usize, default: Segmenter) -> Segmenter {
    lang.and_then(|l| str_at(l, i)).map_or(default, Segmenter::for_language)
}

impl DedupSentencesConfig {
    /// The hashes of `text`'s windows, with their numbers (datatrove's `get_hashes`).
    fn window_hashes(&self, text: &str, segmenter: Segmenter, out: &mut Vec<(u32, u64)>) {
        out.clear();
        let n = self.n_sentences as usize;
        let mut simplified: Vec<String> = Vec::new();
        let mut scratch = String::new();
        let mut push = |piece: &str| {
            simplify_text(piece, &mut scratch);
            simplified.push(scratch.clone());
        };
        if self.split_sentences {
            // sent_tokenize: each sentence stripped, empty ones left out.
            let mut start = 0;
            for e in sentence_ends(text, segmenter) {
                let s = py_strip(&text[start..e]);
                start = e;
                if !s.is_empty() {
                    push(s);
                }
            }
        } else {
            py_splitlines(text).for_each(push);
        }
        if simplified.len() < n {
            return;
        }
        let mut joined = String::new();
        for (i, w) in simplified.windows(n).enumerate() {
            // A window is empty only when every sentence simplified to nothing.
            if w.iter().all(String::is_empty) {
                continue;
            }
            joined.clear();
            for (k, s) in w.iter().enumerate() {
                if k > 0 {
                    joined.push(' ');
                }
                joined.push_str(s);
            }
            // Past 2^32 windows a text needs more than 4 GiB; the rest is not counted.
            let Ok(i) = u32::try_from(i) else { break };
            out.push((i, xxhash_rust::xxh64::xxh64(joined.as_bytes(), 0)));
        }
    }
}

impl BarrierConfig for DedupSentences {
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, SchemaError> {
        require_column(input, "text", &[DataType::Utf8, DataType::LargeUtf8])?;
        Ok(input.clone())
    }

    fn resolved(&self) -> serde_json::Value {
        self.resolved.clone()
    }

    fn observer(&self, _input: &SchemaRef, ctx: &BarrierContext, split: u32) -> Result<Box<dyn BarrierObserver>> {
        Ok(Box::new(Observer {
            c: self.c.clone(),
            segmenter: self.segmenter,
            entries: Observed::new(ctx, split, EXT),
            row: 0,
            hashes: Vec::new(),
        }))
    }

    fn resolve(&self, ctx: &BarrierContext, splits: &[u32]) -> Result<BTreeMap<String, u64>> {
        Ok(repeats::resolve(ctx, splits, EXT, 1, true)?.counters("spans"))
    }

    fn applier(&self, _input: &SchemaRef, ctx: &BarrierContext, split: u32) -> Result<Box<dyn Transform>> {
        Ok(Box::new(Applier {
            c: self.c.clone(),
            segmenter: self.segmenter,
            drops: repeats::read(&ctx.resolved_dir, split)?,
            next: 0,
            row: 0,
            sentences_removed: 0,
            chars_removed: 0,
        }))
    }
}

struct Observer {
    c: DedupSentencesConfig,
    segmenter: Segmenter,
    entries: Observed,
    row: u64,
    hashes: Vec<(u32, u64)>,
}

impl BarrierObserver for Observer {
    fn observe(&mut self, batch: &RecordBatch) -> Result<()> {
        if let Some(text) = batch.column_by_name("text") {
            let lang = batch.column_by_name("lang");
            for i in 0..batch.num_rows() {
                let Some(t) = str_at(text, i) else { continue };
                self.c.window_hashes(t, row_segmenter(lang, i, self.segmenter), &mut self.hashes);
                let row = self.row + i as u64;
                for &(part, key) in &self.hashes {
                    self.entries.push(Entry { key, row, part })?;
                }
            }
        }
        self.row += batch.num_rows() as u64;
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.entries.finish()
    }
}

struct Applier {
    c: DedupSentencesConfig,
    segmenter: Segmenter,
    /// Removed (row, window), sorted.
    drops: Vec<(u64, u32)>,
    next: usize,
    row: u64,
    sentences_removed: u64,
    chars_removed: u64,
}

/// A text with its duplicate windows cut.
struct Cut {
    text: String,
    removed: usize,
    removed_chars: usize,
}

impl Applier {
    /// Cuts the windows `dups` (sorted) from `text` (datatrove's `remove_dup_sentences`).
    fn cut_windows(&self, text: &str, dups: &[u32], segmenter: Segmenter) -> Cut {
        // Each piece carries the whitespace before it, so kept pieces join back into the text.
        let pieces: Vec<&str> = if self.c.split_sentences {
            let mut start = 0;
            sentence_ends(text, segmenter)
                .into_iter()
                .map(|e| {
                    let p = &text[start..e];
                    start = e;
                    p
                })
                .collect()
        } else {
            py_splitlines(text).collect()
        };
        let n = self.c.n_sentences as usize;
        let mut kept: Vec<&str> = Vec::with_capacity(pieces.len());
        let mut span: Vec<&str> = Vec::new();
        let (mut drop_until, mut d) = (0usize, 0usize);
        // (sentences, characters) cut.
        let mut removed = (0usize, 0usize);
        for (i, piece) in pieces.iter().enumerate() {
            while dups.get(d).is_some_and(|&w| (w as usize) < i) {
                d += 1;
            }
            if dups.get(d).is_some_and(|&w| w as usize == i) {
                drop_until = i + n;
                d += 1;
            }
            if i >= drop_until {
                self.close_span(&mut span, &mut kept, segmenter, &mut removed);
                kept.push(piece);
            } else {
                span.push(piece);
            }
        }
        self.close_span(&mut span, &mut kept, segmenter, &mut removed);
        let joined = kept.join(if self.c.split_sentences { "" } else { "\n" });
        Cut { text: joined.trim_start_matches(py_isspace).to_string(), removed: removed.0, removed_chars: removed.1 }
    }

    /// Ends a duplicate span: cut (counted in `removed`), or kept when it has
    /// fewer than `min_words_to_remove_span` words.
    fn close_span<'t>(
        &self,
        span: &mut Vec<&'t str>,
        kept: &mut Vec<&'t str>,
        segmenter: Segmenter,
        removed: &mut (usize, usize),
    ) {
        if span.is_empty() {
            return;
        }
        if self.c.min_words_to_remove_span > 0 {
            let mut words = Vec::new();
            let joined = span.join("\n");
            split_into_words(&joined, segmenter, &mut words);
            if (words.len() as u64) < self.c.min_words_to_remove_span {
                kept.append(span);
                return;
            }
        }
        removed.0 += span.len();
        removed.1 += span.iter().map(|s| s.chars().count()).sum::<usize>();
        span.clear();
    }

    /// Whether a text that lost sentences is still long enough.
    fn long_enough(&self, text: &str, segmenter: Segmenter) -> bool {
        if text.is_empty() {
            return false;
        }
        if self.c.min_doc_words > 0 {
            let mut words = Vec::new();
            split_into_words(text, segmenter, &mut words);
            if (words.len() as u64) < self.c.min_doc_words {
                return false;
            }
        }
        self.c.min_num_sentences == 0 || count_sentences(text, segmenter) as u64 >= self.c.min_num_sentences
    }

    /// The text of every row without its duplicate windows, and the verdicts.
    fn cut<O: OffsetSizeTrait>(
        &mut self,
        col: &GenericStringArray<O>,
        lang: Option<&ArrayRef>,
    ) -> (ArrayRef, Vec<Option<Cow<'static, str>>>) {
        let mut out = GenericStringBuilder::<O>::with_capacity(col.len(), col.value_data().len());
        let mut verdicts = Vec::with_capacity(col.len());
        let mut dups = Vec::new();
        for i in 0..col.len() {
            let row = self.row + i as u64;
            dups.clear();
            while let Some(&(_, w)) = self.drops.get(self.next).filter(|d| d.0 == row) {
                dups.push(w);
                self.next += 1;
            }
            if col.is_null(i) || dups.is_empty() {
                out.append_option(col.is_valid(i).then(|| col.value(i)));
                verdicts.push(None);
                continue;
            }
            let text = col.value(i);
            let segmenter = row_segmenter(lang, i, self.segmenter);
            let cut = self.cut_windows(text, &dups, segmenter);
            self.sentences_removed += cut.removed as u64;
            self.chars_removed += cut.removed_chars as u64;
            let keep = cut.text == text || self.long_enough(&cut.text, segmenter);
            verdicts.push((!keep).then_some(Cow::Borrowed(REASON)));
            out.append_value(&cut.text);
        }
        self.row += col.len() as u64;
        (Arc::new(out.finish()), verdicts)
    }
}

impl Transform for Applier {
    fn process(&mut self, batch: RecordBatch) -> Result<Processed> {
        let idx = batch.schema().index_of("text")?;
        let text = batch.column(idx).clone();
        let lang = batch.column_by_name("lang").cloned();
        let (cut, verdicts) = match text.data_type() {
            DataType::LargeUtf8 => self.cut(text.as_string::<i64>(), lang.as_ref()),
            _ => self.cut(text.as_string::<i32>(), lang.as_ref()),
        };
        let mut cols = batch.columns().to_vec();
        cols[idx] = cut;
        Ok(Processed::Filtered { batch: RecordBatch::try_new(batch.schema(), cols)?, verdicts })
    }

    fn take_counters(&mut self) -> BTreeMap<String, u64> {
        let counts = BTreeMap::from([
            ("sentences_removed".to_string(), std::mem::take(&mut self.sentences_removed)),
            ("chars_removed".to_string(), std::mem::take(&mut self.chars_removed)),
        ]);
        counts.into_iter().filter(|(_, n)| *n > 0).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedup::testing::{kept, run, run_barrier, text_batch as batch};
    use arrow::array::StringArray;
    use arrow::datatypes::{Field, Schema};

    fn stage(options: serde_json::Value) -> StageConfig {
        configure(options, &ConfigureContext::working_dir()).unwrap()
    }

    const A: &str = "The cat sat on the mat. It was warm there. The dog did not mind. ";
    const B: &str = "Rain fell all day in the city. Nobody went out.";

    #[test]
    fn cuts_windows_seen_before_and_keeps_the_first() {
        let no_minimum = stage(serde_json::json!({"min_doc_words": 0, "min_num_sentences": 0}));
        let first = format!("{A}{B}");
        let second = format!("Breaking news today. {A}{B}");
        let (out, counts) = run(&no_minimum, &[vec![batch(&[Some(&first), Some(&second), None])]]);
        // The second document repeats windows 1..=3 (A's three sentences, then
        // A's last two and B's first, ...): sentences 1 to 5 go, with the space before each.
        assert_eq!(out, vec![vec![kept(&first), kept("Breaking news today."), (None, None)]]);
        assert_eq!(counts["sentences_removed"], 5);
        assert_eq!(counts["duplicate_spans"], 3);
        assert_eq!(counts["distinct_spans"], 3 + 1);
        // With datatrove's defaults the cut document is too short: dropped.
        let (out, _) =
            run(&stage(serde_json::json!({})), &[vec![batch(&[Some(&first)])], vec![batch(&[Some(&second)])]]);
        assert_eq!(out[1], vec![(Some("Breaking news today.".into()), Some(Cow::Borrowed(REASON)))]);
        // A window repeated inside one document is cut from its second occurrence.
        let twice = format!("{A}{A}");
        let (out, _) = run(&no_minimum, &[vec![batch(&[Some(&twice)])]]);
        assert_eq!(out, vec![vec![kept(A.trim_end())]]);
    }

    #[test]
    fn matches_datatrove_on_real_stories() {
        // Reuters-21578 stories and datatrove 0.10.1's SentenceDedup output for
        // them (fixtures/dedup_sentences/make_expected.py): every story equal,
        // cut the same way or dropped the same, with one split or three.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/dedup_sentences");
        let read = |name: &str| -> Vec<serde_json::Value> {
            std::fs::read_to_string(format!("{dir}/{name}"))
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        let stories = read("stories.jsonl");
        let changed: BTreeMap<String, Option<String>> = read("datatrove.jsonl")
            .into_iter()
            .map(|v| (v["id"].as_str().unwrap().to_string(), v["text"].as_str().map(String::from)))
            .collect();
        let texts: Vec<&str> = stories.iter().map(|s| s["text"].as_str().unwrap()).collect();
        let expected: Vec<Option<String>> = stories
            .iter()
            .map(|s| {
                let id = s["id"].as_str().unwrap();
                changed.get(id).cloned().unwrap_or_else(|| Some(s["text"].as_str().unwrap().to_string()))
            })
            .collect();
        let cfg = stage(serde_json::json!({}));
        let batches =
            |t: &[&str]| t.chunks(40).map(|c| batch(&c.iter().map(|s| Some(*s)).collect::<Vec<_>>())).collect();
        for splits in [vec![batches(&texts)], texts.chunks(50).map(batches).collect::<Vec<_>>()] {
            let (out, counts) = run(&cfg, &splits);
            let got: Vec<Option<String>> =
                out.into_iter().flatten().map(|(text, verdict)| if verdict.is_some() { None } else { text }).collect();
            assert_eq!(got.len(), expected.len());
            for ((g, e), s) in got.iter().zip(&expected).zip(&stories) {
                assert_eq!(g, e, "{}", s["id"]);
            }
            assert!(counts["duplicate_spans"] > 50, "{counts:?}");
        }
        assert!(changed.values().filter(|t| t.is_none()).count() > 10);
        assert!(changed.values().filter(|t| t.is_some()).count() > 5);
    }

    #[test]
    fn spilled_runs_give_the_same_result() {
        let texts: Vec<String> =
            (0..3000).map(|i| format!("Story {} begins. {A}Item {} ends here. {B}", i % 7, i % 11)).collect();
        let splits: Vec<Vec<RecordBatch>> = texts
            .chunks(1000)
            .map(|t| t.chunks(250).map(|c| batch(&c.iter().map(|s| Some(s.as_str())).collect::<Vec<_>>())).collect())
            .collect();
        let cfg = stage(serde_json::json!({"min_doc_words": 0}));
        let (a, ca) = run_barrier(&cfg, &splits, 1 << 30);
        let (b, cb) = run_barrier(&cfg, &splits, 0);
        assert_eq!(a, b);
        assert!(cb["spilled_runs"] > 1, "{cb:?}");
        assert_eq!(ca["duplicate_spans"], cb["duplicate_spans"]);
    }

    #[test]
    fn lines_mode_short_spans_and_languages() {
        // Lines: each line is a piece; kept lines are joined with \n.
        let lines = stage(
            serde_json::json!({"split_sentences": false, "n_sentences": 2, "min_doc_words": 0, "min_num_sentences": 0}),
        );
        let (out, _) = run(
            &lines,
            &[vec![batch(&[Some("menu\nabout us\nfirst story"), Some("menu\r\nabout us\nsecond story\nmore")])]],
        );
        assert_eq!(out, vec![vec![kept("menu\nabout us\nfirst story"), kept("second story\nmore")]]);
        // A duplicate span of fewer words than min_words_to_remove_span stays.
        let texts = [Some("Yes. No way."), Some("Brand new words here. Yes. Other words go here.")];
        let opts = |min| {
            stage(
                serde_json::json!({"n_sentences": 1, "min_words_to_remove_span": min, "min_doc_words": 0, "min_num_sentences": 0}),
            )
        };
        let (out, _) = run(&opts(3), &[vec![batch(&texts)]]);
        assert_eq!(out[0][1], kept(texts[1].unwrap()));
        let (out, _) = run(&opts(2), &[vec![batch(&texts)]]);
        assert_eq!(out[0][1], kept("Brand new words here. Other words go here."));
        // A `lang` column picks the rules per row; `xx` splits like `en` on this text.
        let schema = Arc::new(Schema::new(vec![
            Field::new("text", DataType::Utf8, true),
            Field::new("lang", DataType::Utf8, true),
        ]));
        let one = format!("{A}{B}");
        let b = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some(one.as_str()), Some(one.as_str())])),
                Arc::new(StringArray::from(vec![Some("de"), None])),
            ],
        )
        .unwrap();
        let (out, _) = run(&stage(serde_json::json!({"min_doc_words": 0, "min_num_sentences": 0})), &[vec![b]]);
        assert_eq!(out, vec![vec![kept(&one), (Some(String::new()), Some(Cow::Borrowed(REASON)))]]);
    }

    #[test]
    fn rejects_bad_options_and_schemas() {
        let e = configure(serde_json::json!({"n_sentences": 0}), &ConfigureContext::working_dir()).unwrap_err();
        assert!(e.message.contains("at least 1"), "{}", e.message);
        assert!(configure(serde_json::json!({"sentences": 3}), &ConfigureContext::working_dir()).is_err());
        let StageConfig::Barrier(b) = stage(serde_json::json!({})) else { panic!() };
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false)]));
        let e = b.output_schema(&schema).unwrap_err().0;
        assert!(e.contains("text"), "{e}");
    }
}
