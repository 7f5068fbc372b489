//! Group lexicons of the `audit` stage: which terms mention which
//! (axis, descriptor), parsed from `axis: descriptor [= term, term, ...]`
//! lines, and the word-boundary aware matcher over them.
//!
//! ```text
//! lexicon files ──parse (file:line:column errors)──► (axis, descriptor, terms)
//!   ──normalise terms like toxicity──► one Aho-Corasick per language
//! normalised text ──overlapping matches──► at word boundaries (optionally a plural `s`/`es`)
//!   ──leftmost-longest, no overlap──► (term ➜ descriptors) per match
//! ```

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use smelt_catalog::audit::bad_label_char;
use smelt_engine::{EngineError, Result};

use crate::toxicity::{at_boundaries, is_spaceless, keep_leftmost_longest, normalize};

/// The bundled lexicons by language: HolisticBias v1.1 descriptors and pronouns.
pub const BUNDLED: [(&str, &[(&str, &str)]); 1] = [(
    "en",
    &[
        ("holistic_bias/en.txt", include_str!("../../lexicons/holistic_bias/en.txt")),
        ("pronouns/en.txt", include_str!("../../lexicons/pronouns/en.txt")),
    ],
)];

/// One parsed line: a descriptor of an axis and the terms that mention it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Axis, e.g. `religion`.
    pub axis: String,
    /// Descriptor, e.g. `Muslim` (the label in metrics).
    pub descriptor: String,
    /// Terms as written (the descriptor itself when none are given).
    pub terms: Vec<String>,
}

/// A lexicon line that does not parse.
fn bad(name: &str, line: usize, column: usize, message: &str) -> EngineError {
    EngineError::User(format!("audit: lexicon {name}:{line}:{column}: {message}"))
}

/// Parses a lexicon file: `#` comment lines, blank lines, and
/// `axis: descriptor` or `axis: descriptor = term, term, ...` lines.
///
/// # Errors
/// `name:line:column` and what is wrong: a missing `:`, an empty axis,
/// descriptor or term, a character that labels cannot hold.
pub fn parse(name: &str, text: &str) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let col = |byte: usize| line[..byte].chars().count() + 1;
        let Some(colon) = line.find(':') else {
            return Err(bad(
                name,
                n,
                col(line.len() - line.trim_start().len()),
                "expected `axis: descriptor` or `axis: descriptor = term, term`",
            ));
        };
        let axis = line[..colon].trim();
        let axis_at = line.len() - line.trim_start().len();
        if axis.is_empty() {
            return Err(bad(name, n, col(colon), "the axis before `:` is empty"));
        }
        if let Some((k, c)) = axis.char_indices().find(|(_, c)| !(c.is_alphanumeric() || *c == '_')) {
            return Err(bad(
                name,
                n,
                col(axis_at + k),
                &format!("axis names are letters, digits and `_`; found `{c}` in `{axis}`"),
            ));
        }
        let rest = &line[colon + 1..];
        let (descriptor, terms_at) = match rest.find('=') {
            Some(eq) => (&rest[..eq], Some(colon + 1 + eq + 1)),
            None => (rest, None),
        };
        let desc_at = colon + 1 + (descriptor.len() - descriptor.trim_start().len());
        let descriptor = descriptor.trim();
        if descriptor.is_empty() {
            return Err(bad(name, n, col(colon + 1), "the descriptor after `:` is empty"));
        }
        if let Some((k, c)) = descriptor.char_indices().find(|(_, c)| bad_label_char(*c) || *c == ':') {
            return Err(bad(name, n, col(desc_at + k), &format!("descriptors cannot contain `{c}`")));
        }
        let mut terms = Vec::new();
        if let Some(at) = terms_at {
            let mut offset = at;
            for part in line[at..].split(',') {
                let t = part.trim();
                if t.is_empty() {
                    return Err(bad(name, n, col(offset), "empty term (two commas, or a comma at the end?)"));
                }
                if normalize(t, &mut String::new()) == 0 {
                    return Err(bad(name, n, col(offset), "term has no characters to match"));
                }
                terms.push(t.to_string());
                offset += part.len() + 1;
            }
        } else {
            terms.push(descriptor.to_string());
        }
        out.push(Entry { axis: axis.to_string(), descriptor: descriptor.to_string(), terms });
    }
    Ok(out)
}

/// Interned axes and (axis, descriptor) groups of every lexicon of a stage,
/// so counts of the same group in several languages add up.
#[derive(Debug, Default)]
pub struct Groups {
    /// Axis names.
    pub axes: Vec<String>,
    /// (axis index, descriptor).
    pub descriptors: Vec<(usize, String)>,
    axis_index: HashMap<String, usize>,
    descriptor_index: HashMap<(usize, String), usize>,
}

impl Groups {
    fn axis(&mut self, name: &str) -> usize {
        if let Some(&i) = self.axis_index.get(name) {
            return i;
        }
        self.axes.push(name.to_string());
        self.axis_index.insert(name.to_string(), self.axes.len() - 1);
        self.axes.len() - 1
    }

    fn descriptor(&mut self, axis: usize, name: &str) -> usize {
        let key = (axis, name.to_string());
        if let Some(&i) = self.descriptor_index.get(&key) {
            return i;
        }
        self.descriptors.push(key.clone());
        self.descriptor_index.insert(key, self.descriptors.len() - 1);
        self.descriptors.len() - 1
    }
}

/// One language's compiled lexicon.
pub struct Matcher {
    ac: Option<AhoCorasick>,
    /// Per pattern: the descriptors it mentions.
    term_groups: Vec<Vec<u32>>,
    bounded: Vec<bool>,
    plurals: bool,
    /// Axes this lexicon has (indexes into [`Groups::axes`]).
    pub axes: Vec<usize>,
}

/// One accepted match: (start, end, pattern).
pub type Found = (usize, usize, usize);

impl Matcher {
    /// Compiles `entries`, keeping only `axes` when given, interning groups in `groups`.
    ///
    /// # Errors
    /// The automaton cannot be built (too large).
    pub fn build(entries: &[Entry], axes: Option<&[String]>, plurals: bool, groups: &mut Groups) -> Result<Matcher> {
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut patterns: Vec<String> = Vec::new();
        let mut term_groups: Vec<Vec<u32>> = Vec::new();
        let mut my_axes: Vec<usize> = Vec::new();
        let mut scratch = String::new();
        for e in entries {
            if axes.is_some_and(|a| !a.contains(&e.axis)) {
                continue;
            }
            let a = groups.axis(&e.axis);
            if !my_axes.contains(&a) {
                my_axes.push(a);
            }
            let d = groups.descriptor(a, &e.descriptor) as u32;
            for t in &e.terms {
                normalize(t, &mut scratch);
                let p = *index.entry(scratch.clone()).or_insert_with(|| {
                    patterns.push(scratch.clone());
                    term_groups.push(Vec::new());
                    patterns.len() - 1
                });
                if !term_groups[p].contains(&d) {
                    term_groups[p].push(d);
                }
            }
        }
        let bounded = patterns.iter().map(|p| !p.chars().any(is_spaceless)).collect();
        let ac = if patterns.is_empty() {
            None
        } else {
            Some(
                AhoCorasickBuilder::new()
                    .match_kind(MatchKind::Standard)
                    .build(&patterns)
                    .map_err(|e| EngineError::Internal(format!("audit: cannot build the lexicon matcher: {e}")))?,
            )
        };
        my_axes.sort_unstable();
        Ok(Matcher { ac, term_groups, bounded, plurals, axes: my_axes })
    }

    /// The descriptors pattern `p` mentions.
    pub fn groups_of(&self, p: usize) -> &[u32] {
        &self.term_groups[p]
    }

    /// Leftmost-longest non-overlapping matches in normalised text, at word
    /// boundaries (a plural `s` or `es` may follow when `plurals` is on).
    pub fn find(&self, hay: &str, out: &mut Vec<Found>) {
        out.clear();
        let Some(ac) = &self.ac else { return };
        for m in ac.find_overlapping_iter(hay) {
            let p = m.pattern().as_usize();
            let (s, e) = (m.start(), m.end());
            if !self.bounded[p] || at_boundaries(hay, s, e) {
                out.push((s, e, p));
            } else if self.plurals {
                let rest = &hay[e..];
                for suffix in ["s", "es"] {
                    if rest.starts_with(suffix) && at_boundaries(hay, s, e + suffix.len()) {
                        out.push((s, e + suffix.len(), p));
                        break;
                    }
                }
            }
        }
        keep_leftmost_longest(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_and_reports_positions() {
        let e = parse("x", "# c\n\nreligion: Muslim\nability: hard-of-hearing = hard-of-hearing, hard of hearing\n")
            .unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].terms, vec!["Muslim"]);
        assert_eq!(e[1].terms, vec!["hard-of-hearing", "hard of hearing"]);
        let err = parse("de.txt", "religion: Muslim\n  religion Jewish\n").unwrap_err().to_string();
        assert!(err.contains("de.txt:2:3: expected `axis: descriptor`"), "{err}");
        let err = parse("de.txt", "religion: Muslim = muslim,, moslem\n").unwrap_err().to_string();
        assert!(err.contains("de.txt:1:27: empty term"), "{err}");
        let err = parse("de.txt", "relig ion: Muslim\n").unwrap_err().to_string();
        assert!(err.contains("de.txt:1:6: axis names"), "{err}");
        let err = parse("de.txt", "religion: Mus{lim\n").unwrap_err().to_string();
        assert!(err.contains("de.txt:1:14: descriptors cannot contain `{`"), "{err}");
        let err = parse("de.txt", "religion:   \n").unwrap_err().to_string();
        assert!(err.contains("de.txt:1:10: the descriptor after `:` is empty"), "{err}");
    }

    #[test]
    fn bundled_lexicons_parse() {
        for (_, files) in BUNDLED {
            for (name, text) in files.iter() {
                let e = parse(name, text).unwrap();
                assert!(e.len() > 2, "{name}");
            }
        }
    }

    #[test]
    fn matches_at_word_boundaries_with_plurals() {
        let entries =
            parse("t", "religion: Muslim\nreligion: Christian\nage: old\nability: hard-of-hearing = hard of hearing\n")
                .unwrap();
        let mut groups = Groups::default();
        let m = Matcher::build(&entries, None, true, &mut groups).unwrap();
        let mut hay = String::new();
        normalize("Muslims and CHRISTIAN folk; the Oldham boy is hard of\nhearing. Bold.", &mut hay);
        let mut found = Vec::new();
        m.find(&hay, &mut found);
        let words: Vec<&str> = found.iter().map(|&(s, e, _)| &hay[s..e]).collect();
        assert_eq!(words, vec!["muslims", "christian", "hard of hearing"]);
        let no_plural = Matcher::build(&entries, None, false, &mut groups).unwrap();
        no_plural.find(&hay, &mut found);
        assert_eq!(found.len(), 2);
        assert_eq!(groups.axes, vec!["religion", "age", "ability"]);
    }
}
