//! datatrove's `simplify_text`: the normalisation before shingling.

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::Regex;
use unicode_normalization::UnicodeNormalization;

use super::tables::{NONSPACING_MARKS, PUNCTUATION};
use crate::filters::{in_ranges, py_isspace, py_strip};

/// Whether `c` is in datatrove's `PUNCTUATION`.
fn is_punctuation(c: char) -> bool {
    if c.is_ascii() {
        !(c.is_ascii_alphanumeric() || c == ' ' || c == '\t' || c == '\n')
    } else {
        in_ranges(PUNCTUATION, c)
    }
}

fn numbers() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"\p{Nd}+([.,،٫⎖⎗⎘]\p{Nd}+)?").expect("valid regex"))
}

/// datatrove's `simplify_text` with its default `TextNormConfig`: lowercase,
/// numbers (any script, with one decimal part) to `0`, punctuation to
/// spaces, whitespace runs to one space, trimmed, diacritics (category `Mn`
/// after NFD) removed.
pub fn simplify_text(text: &str, out: &mut String) {
    out.clear();
    let lower: Cow<'_, str> =
        if text.is_ascii() { Cow::Owned(text.to_ascii_lowercase()) } else { Cow::Owned(text.to_lowercase()) };
    let numbered = numbers().replace_all(&lower, "0");
    let mut pending_space = false;
    for c in numbered.chars() {
        let c = if is_punctuation(c) { ' ' } else { c };
        if py_isspace(c) {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(c);
    }
    if !out.is_ascii() {
        let stripped: String = out.nfd().filter(|&c| !in_ranges(NONSPACING_MARKS, c)).collect();
        out.clear();
        out.push_str(py_strip(&stripped));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simplify_text_equals_datatrove() {
        // Outputs of datatrove 0.10.1 `simplify_text` (Python 3.11).
        let mut out = String::new();
        simplify_text(
            "The quick brown fox jumps over the lazy dog. It was 3.14 degrees at 10:30, said Mr. O'Neil!",
            &mut out,
        );
        assert_eq!(out, "the quick brown fox jumps over the lazy dog it was 0 degrees at 0 0 said mr o neil");
        simplify_text(
            "Café déjà vu — naïve coöperation in São Paulo; 1,000,000 people didn't   care.\n\nNew line here, twice.",
            &mut out,
        );
        assert_eq!(out, "cafe deja vu naive cooperation in sao paulo 0 0 people didn t care new line here twice");
        simplify_text(" \u{a0}\t…", &mut out);
        assert_eq!(out, "");
    }
}
