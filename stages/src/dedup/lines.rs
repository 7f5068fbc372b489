//! `dedup_lines` barrier stage: CCNet-style line deduplication across the
//! whole run. A line whose normalised form occurs more than `max_occurrences`
//! times in the run is removed from `text` everywhere, except (with
//! `keep_first`) its first occurrence in (split, row, line) order.
//!
//! ```text
//! observe, per split:  (hash, row, line) per counted line ──sort──► observed/<split>.lines
//! resolve, once:       k-way merge of every split's file by (hash, split, row, line);
//!                      per frequent hash its removed occurrences ──► resolved/drops.bin
//!                                                                    resolved/drops.idx
//! apply, per split:    its removed (row, line) pairs (sorted) ──► lines cut from `text`
//! ```
//! Lines are the `\n`-separated pieces of `text`. A line is normalised as
//! CCNet's `normalize_for_dedup` does, plus accent removal: trimmed,
//! lowercased, decimal digits to `0`, accents (combining marks after NFD),
//! punctuation, symbols and control characters removed, whitespace runs to one
//! space. Keys are xxh3-64 hashes of that form. Lines whose form is empty or
//! shorter than `min_line_chars` are never counted nor removed. Memory is
//! bounded by `memory_budget`, not by the corpus: an observer buffers its
//! share (24 bytes per line) and spills sorted runs past it; the global step
//! holds one buffered reader per split file, the first `max_occurrences + 1`
//! occurrences of the line being merged, and the removed occurrences up to
//! half the budget (then sorted runs, merged by (split, row, line)). An
//! applier holds its split's removed (row, line) pairs.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::repeats::{self, Entry, Observed};
use arrow::array::{Array, ArrayRef, AsArray, GenericStringArray, GenericStringBuilder, OffsetSizeTrait};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use smelt_engine::yaml::PathSeg;
use smelt_engine::{
    parse_options, require_column, str_at, BarrierConfig, BarrierContext, BarrierObserver, ConfigureContext,
    OptionError, Processed, Result, SchemaError, StageConfig, Transform,
};
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// Drop reason of documents left without text.
const REASON: &str = "lines_dedup_empty";

/// Extension of the observed files.
const EXT: &str = "lines";

/// Options of `dedup_lines`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DedupLinesConfig {
    /// A line occurring more than this many times in the run is removed (CCNet: 1).
    #[serde(default = "default_max_occurrences")]
    pub max_occurrences: u64,
    /// Lines whose normalised form has fewer characters are never removed.
    #[serde(default)]
    pub min_line_chars: usize,
    /// Keep the first occurrence of a removed line, in (split, row, line) order.
    #[serde(default = "default_keep_first")]
    pub keep_first: bool,
    /// A document that lost lines and keeps fewer non-blank characters is dropped.
    #[serde(default = "default_min_chars")]
    pub min_chars: usize,
}

fn default_max_occurrences() -> u64 {
    1
}

fn default_keep_first() -> bool {
    true
}

fn default_min_chars() -> usize {
    1
}

/// Registry hook of `dedup_lines`.
///
/// # Errors
/// Unknown or invalid options (`max_occurrences` must be at least 1).
pub fn configure(options: serde_json::Value, _ctx: &ConfigureContext) -> Result<StageConfig, OptionError> {
    let c: DedupLinesConfig = parse_options(options)?;
    if c.max_occurrences == 0 {
        return Err(OptionError {
            path: vec![PathSeg::Key("max_occurrences".into())],
            message: "must be at least 1".into(),
            at_key: false,
        });
    }
    Ok(StageConfig::Barrier(Arc::new(DedupLines { resolved: serde_json::to_value(&c).unwrap_or_default(), c })))
}

#[derive(Debug)]
struct DedupLines {
    c: DedupLinesConfig,
    resolved: serde_json::Value,
}

/// A line as compared by `dedup_lines` (see the module documentation).
pub fn normalize_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut space = false;
    for c in line.trim().nfd().flat_map(char::to_lowercase) {
        if c.is_whitespace() {
            space = !out.is_empty();
        } else if is_combining_mark(c) || !c.is_alphanumeric() {
            // accents, punctuation, symbols, control characters
        } else {
            if space {
                out.push(' ');
                space = false;
            }
            out.push(if c.is_ascii_digit() || is_decimal_digit(c) { '0' } else { c });
        }
    }
    out
}

/// Decimal digits outside ASCII (Python's `\d`): the common Unicode blocks
/// of ten consecutive digits.
fn is_decimal_digit(c: char) -> bool {
    const ZEROS: [u32; 12] =
        [0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0E50, 0x0ED0, 0xFF10];
    let c = c as u32;
    ZEROS.iter().any(|&z| (z..z + 10).contains(&c))
}

/// The key of a line, or `None` for a line that is never counted.
fn line_key(line: &str, min_line_chars: usize) -> Option<u64> {
    let n = normalize_line(line);
    (!n.is_empty() && n.chars().count() >= min_line_chars).then(|| xxhash_rust::xxh3::xxh3_64(n.as_bytes()))
}

impl BarrierConfig for DedupLines {
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, SchemaError> {
        require_column(input, "text", &[DataType::Utf8, DataType::LargeUtf8])?;
        Ok(input.clone())
    }

    fn resolved(&self) -> serde_json::Value {
        self.resolved.clone()
    }

    fn observer(&self, _input: &SchemaRef, ctx: &BarrierContext, split: u32) -> Result<Box<dyn BarrierObserver>> {
        Ok(Box::new(Observer {
            min_line_chars: self.c.min_line_chars,
            entries: Observed::new(ctx, split, EXT),
            row: 0,
        }))
    }

    fn resolve(&self, ctx: &BarrierContext, splits: &[u32]) -> Result<BTreeMap<String, u64>> {
        Ok(repeats::resolve(ctx, splits, EXT, self.c.max_occurrences, self.c.keep_first)?.counters("lines"))
    }

    fn applier(&self, _input: &SchemaRef, ctx: &BarrierContext, split: u32) -> Result<Box<dyn Transform>> {
        Ok(Box::new(Applier {
            drops: repeats::read(&ctx.resolved_dir, split)?,
            next: 0,
            row: 0,
            min_chars: self.c.min_chars,
            lines_removed: 0,
            chars_removed: 0,
        }))
    }
}

struct Observer {
    min_line_chars: usize,
    entries: Observed,
    row: u64,
}

impl BarrierObserver for Observer {
    fn observe(&mut self, batch: &RecordBatch) -> Result<()> {
        if let Some(text) = batch.column_by_name("text") {
            for i in 0..batch.num_rows() {
                let Some(t) = str_at(text, i) else { continue };
                let row = self.row + i as u64;
                for (line, l) in t.split('\n').enumerate() {
                    // More than 2^32 lines needs more than 4 GiB of text; such lines are not counted.
                    let Ok(line) = u32::try_from(line) else { break };
                    if let Some(key) = line_key(l, self.min_line_chars) {
                        self.entries.push(Entry { key, row, part: line })?;
                    }
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
    drops: Vec<(u64, u32)>,
    next: usize,
    row: u64,
    min_chars: usize,
    lines_removed: u64,
    chars_removed: u64,
}

impl Applier {
    /// The text of every row without its removed lines, and the verdicts.
    fn cut<O: OffsetSizeTrait>(&mut self, col: &GenericStringArray<O>) -> (ArrayRef, Vec<Option<Cow<'static, str>>>) {
        let mut out = GenericStringBuilder::<O>::with_capacity(col.len(), col.value_data().len());
        let mut verdicts = Vec::with_capacity(col.len());
        let mut kept = String::new();
        for i in 0..col.len() {
            let row = self.row + i as u64;
            let has_drops = self.drops.get(self.next).is_some_and(|d| d.0 == row);
            if col.is_null(i) || !has_drops {
                out.append_option(col.is_valid(i).then(|| col.value(i)));
                verdicts.push(None);
                continue;
            }
            kept.clear();
            let mut first = true;
            for (n, l) in col.value(i).split('\n').enumerate() {
                if self.drops.get(self.next) == Some(&(row, n as u32)) {
                    self.next += 1;
                    self.lines_removed += 1;
                    self.chars_removed += l.chars().count() as u64;
                    continue;
                }
                if !first {
                    kept.push('\n');
                }
                kept.push_str(l);
                first = false;
            }
            // Entries past the last line cannot come from this text; skip them rather than stall.
            while self.drops.get(self.next).is_some_and(|d| d.0 == row) {
                self.next += 1;
            }
            let left = kept.chars().filter(|c| !c.is_whitespace()).count();
            verdicts.push((left < self.min_chars).then_some(Cow::Borrowed(REASON)));
            out.append_value(&kept);
        }
        self.row += col.len() as u64;
        (Arc::new(out.finish()), verdicts)
    }
}

impl Transform for Applier {
    fn process(&mut self, batch: RecordBatch) -> Result<Processed> {
        let idx = batch.schema().index_of("text")?;
        let text = batch.column(idx).clone();
        let (cut, verdicts) = match text.data_type() {
            DataType::LargeUtf8 => self.cut(text.as_string::<i64>()),
            _ => self.cut(text.as_string::<i32>()),
        };
        let mut cols = batch.columns().to_vec();
        cols[idx] = cut;
        Ok(Processed::Filtered { batch: RecordBatch::try_new(batch.schema(), cols)?, verdicts })
    }

    fn take_counters(&mut self) -> BTreeMap<String, u64> {
        let counts = BTreeMap::from([
            ("lines_removed".to_string(), std::mem::take(&mut self.lines_removed)),
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
    use arrow::datatypes::Schema;
    use smelt_engine::stage::doc;

    #[test]
    fn spilled_sorted_runs_give_the_same_result() {
        // 3 splits of 2,000 documents, each line drawn from 700 choices
        // (letters: the normalisation turns digits into 0): far
        // more records than the smallest buffer (1,024), so both the
        // observers and the global step spill with a zero budget.
        let mut state = 7u64;
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as usize
        };
        let texts: Vec<Vec<String>> = (0..3)
            .map(|_| {
                (0..2000)
                    .map(|_| {
                        (0..3)
                            .map(|_| {
                                let n = next() % 700;
                                format!(
                                    "line {}{}",
                                    char::from(b'a' + (n / 26) as u8),
                                    char::from(b'a' + (n % 26) as u8)
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .collect()
            })
            .collect();
        let splits: Vec<Vec<RecordBatch>> = texts
            .iter()
            .map(|t| t.chunks(500).map(|c| batch(&c.iter().map(|s| Some(s.as_str())).collect::<Vec<_>>())).collect())
            .collect();
        let cfg = configure(serde_json::json!({}), &ConfigureContext::working_dir()).unwrap();
        let (a, ca) = run_barrier(&cfg, &splits, 1 << 30);
        let (b, cb) = run_barrier(&cfg, &splits, 0);
        assert_eq!(a, b);
        assert!(!ca.contains_key("spilled_runs"), "{ca:?}");
        assert!(cb["spilled_runs"] > 1, "{cb:?}");
        assert_eq!(ca["duplicate_lines"], cb["duplicate_lines"]);
        assert_eq!(ca["distinct_lines"], 700);
        assert_eq!(ca["duplicate_lines"], 3 * 2000 * 3 - 700);
    }

    #[test]
    fn normalises_like_ccnet() {
        assert_eq!(normalize_line("  Hello,   WORLD!! 2024 "), "hello world 0000");
        assert_eq!(normalize_line("Café — crème brûlée"), "cafe creme brulee");
        assert_eq!(normalize_line("٣ items\t\u{7}"), "0 items");
        assert_eq!(normalize_line(" ... *** "), "");
        assert_eq!(normalize_line("Résumé"), normalize_line("resume"));
    }

    #[test]
    fn removes_repeated_lines_keeping_the_first_across_splits_and_batches() {
        let cfg = configure(serde_json::json!({}), &ConfigureContext::working_dir()).unwrap();
        let (out, counts) = run(
            &cfg,
            &[
                vec![
                    batch(&[Some("Home | About\nFirst story.\nCopyright 2023")]),
                    batch(&[Some("home about\nSecond story.")]),
                ],
                vec![batch(&[Some("Third story.\nCOPYRIGHT 2024\n\nHome - About"), None])],
            ],
        );
        assert_eq!(
            out,
            vec![
                vec![kept("Home | About\nFirst story.\nCopyright 2023"), kept("Second story.")],
                vec![kept("Third story.\n"), (None, None)],
            ]
        );
        assert_eq!(counts["lines_removed"], 3);
        assert_eq!(
            counts["chars_removed"],
            ("home about".len() + "COPYRIGHT 2024".len() + "Home - About".len()) as u64
        );
        assert_eq!(counts["frequent_lines"], 2);
        assert_eq!(counts["duplicate_lines"], 3);
        assert_eq!(counts["distinct_lines"], 5);
    }

    #[test]
    fn max_occurrences_keep_first_and_min_line_chars() {
        let texts = [
            Some("menu\nbody one\nshared footer line"),
            Some("menu\nbody two\nshared footer line"),
            Some("menu\nbody three"),
        ];
        // `menu` is seen 3 times, the footer twice: only `menu` is above 2.
        let cfg =
            configure(serde_json::json!({"max_occurrences": 2, "keep_first": false}), &ConfigureContext::working_dir())
                .unwrap();
        let (out, _) = run(&cfg, &[vec![batch(&texts)]]);
        assert_eq!(
            out,
            vec![vec![kept("body one\nshared footer line"), kept("body two\nshared footer line"), kept("body three")]]
        );
        // Lines of fewer than 5 normalised characters are never removed.
        let cfg = configure(serde_json::json!({"min_line_chars": 5}), &ConfigureContext::working_dir()).unwrap();
        let (out, _) = run(&cfg, &[vec![batch(&texts)]]);
        assert_eq!(out, vec![vec![kept(texts[0].unwrap()), kept("menu\nbody two"), kept("menu\nbody three")]]);
    }

    #[test]
    fn drops_documents_left_without_text() {
        let cfg = configure(serde_json::json!({"min_chars": 10}), &ConfigureContext::working_dir()).unwrap();
        let d = Some(Cow::Borrowed(REASON));
        let (out, counts) = run(
            &cfg,
            &[vec![batch(&[Some("same line\nlong unique body text"), Some("Same line!\n  "), Some(""), Some("tiny")])]],
        );
        // Only documents that lost lines are checked against `min_chars`.
        assert_eq!(
            out,
            vec![vec![kept("same line\nlong unique body text"), (Some("  ".into()), d), kept(""), kept("tiny")]]
        );
        assert_eq!(counts["lines_removed"], 1);
    }

    #[test]
    fn utf8_text_odd_unicode_and_no_lines_in_common() {
        let schema = Arc::new(Schema::new(vec![arrow::datatypes::Field::new("text", DataType::Utf8, true)]));
        let b = RecordBatch::try_new(
            schema,
            vec![Arc::new(StringArray::from(vec![
                Some("\u{200b}\u{fe0f}\r\nα\r\nα\u{301}\r"),
                Some("𝔘𝔫𝔦𝔠𝔬𝔡𝔢\n\u{0}"),
            ]))],
        )
        .unwrap();
        let cfg = configure(serde_json::json!({}), &ConfigureContext::working_dir()).unwrap();
        let (out, counts) = run(&cfg, &[vec![b]]);
        // `α` and `ά` normalise alike: the second goes (with its `\r`).
        assert_eq!(out, vec![vec![kept("\u{200b}\u{fe0f}\r\nα\r"), kept("𝔘𝔫𝔦𝔠𝔬𝔡𝔢\n\u{0}")]]);
        assert_eq!(counts["duplicate_lines"], 1);
    }

    #[test]
    fn rejects_bad_options_and_schemas() {
        assert!(configure(serde_json::json!({"max_occurrences": 0}), &ConfigureContext::working_dir()).is_err());
        assert!(configure(serde_json::json!({"keep": "first"}), &ConfigureContext::working_dir()).is_err());
        let StageConfig::Barrier(b) = configure(serde_json::json!({}), &ConfigureContext::working_dir()).unwrap()
        else {
            panic!()
        };
        let e = b.output_schema(&Arc::new(Schema::new(vec![doc::id()]))).unwrap_err().0;
        assert!(e.contains("text"), "{e}");
    }
}
