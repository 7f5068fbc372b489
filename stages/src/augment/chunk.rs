//! Cutting a document into the pieces a backend translates, and putting the
//! translations back together in order.
//!
//! ```text
//! text ──paragraph breaks (blank line, or a line that starts indented)──► paragraphs
//!      paragraph ──soft line wraps as spaces──► > max_chars? cut at sentence ends, then at spaces
//! pieces ──translate each──► joined with the original breaks between paragraphs
//! ```

/// One piece of a document: the text to translate and the break that came
/// before it in the original (kept verbatim when reassembling).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Text before this piece in the original (a paragraph break, or "" for
    /// the first piece and for pieces cut out of one paragraph, where it is " ").
    pub before: String,
    /// The text to translate: one line, no leading or trailing whitespace.
    pub text: String,
}

/// Cuts `text` into chunks of at most `max_chars` characters (a single word
/// longer than that stays whole). Text after the last piece (trailing
/// whitespace) is returned as the tail.
pub fn split(text: &str, max_chars: usize) -> (Vec<Chunk>, String) {
    let mut chunks = Vec::new();
    let mut before = String::new();
    for (para, brk) in paragraphs(text) {
        let flat = para.split_whitespace().collect::<Vec<_>>().join(" ");
        if flat.is_empty() {
            before.push_str(para);
            before.push_str(brk);
            continue;
        }
        let lead: String = para.chars().take_while(|c| c.is_whitespace()).collect();
        before.push_str(&lead);
        for (i, piece) in cut(&flat, max_chars).into_iter().enumerate() {
            let sep = if i == 0 { std::mem::take(&mut before) } else { " ".to_string() };
            chunks.push(Chunk { before: sep, text: piece });
        }
        before.push_str(brk);
    }
    (chunks, before)
}

/// Puts translated pieces back in order with the original breaks.
pub fn join(chunks: &[Chunk], translated: &[String], tail: &str) -> String {
    let mut out = String::new();
    for (c, t) in chunks.iter().zip(translated) {
        out.push_str(&c.before);
        out.push_str(t.trim());
    }
    out.push_str(tail);
    out
}

/// Paragraphs with the break that follows each: a break is a newline
/// followed by a blank line or by an indented line (the newswire layout,
/// where paragraphs start with spaces and lines are hard-wrapped).
fn paragraphs(text: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        if bytes[i] == b'\n' {
            // The break runs over every following whitespace up to the text of the next paragraph.
            let mut j = i + 1;
            while j < bytes.len() && matches!(bytes[j], b' ' | b'\t' | b'\r') {
                j += 1;
            }
            let blank = j < bytes.len() && bytes[j] == b'\n';
            let indented = j > i + 1;
            if blank || indented || j == bytes.len() {
                let mut end = j;
                while end < bytes.len() && bytes[end].is_ascii_whitespace() {
                    end += 1;
                }
                // Leave the indentation of the next paragraph in the break.
                out.push((&text[start..i], &text[i..end]));
                start = end;
                i = end;
                continue;
            }
        }
        i += 1;
    }
    if start < text.len() {
        out.push((&text[start..], ""));
    }
    out
}

/// Cuts one flattened paragraph at sentence ends (then at spaces) so each
/// piece has at most `max_chars` characters.
fn cut(flat: &str, max_chars: usize) -> Vec<String> {
    if flat.chars().count() <= max_chars {
        return vec![flat.to_string()];
    }
    let mut sentences = Vec::new();
    let mut start = 0;
    let b = flat.as_bytes();
    for i in 1..b.len() {
        if b[i] == b' ' && matches!(b[i - 1], b'.' | b'!' | b'?' | b';') {
            sentences.push(&flat[start..i]);
            start = i + 1;
        }
    }
    sentences.push(&flat[start..]);
    let mut pieces: Vec<String> = Vec::new();
    let mut cur = String::new();
    for s in sentences {
        for word_group in fit(s, max_chars) {
            if !cur.is_empty() && cur.chars().count() + 1 + word_group.chars().count() > max_chars {
                pieces.push(std::mem::take(&mut cur));
            }
            if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(&word_group);
        }
    }
    if !cur.is_empty() {
        pieces.push(cur);
    }
    pieces
}

/// A sentence as word groups of at most `max_chars` (a longer word stays whole).
fn fit(sentence: &str, max_chars: usize) -> Vec<String> {
    if sentence.chars().count() <= max_chars {
        return vec![sentence.to_string()];
    }
    let mut out = Vec::new();
    let mut cur = String::new();
    for w in sentence.split(' ') {
        if !cur.is_empty() && cur.chars().count() + 1 + w.chars().count() > max_chars {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(w);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newswire_paragraphs_are_unwrapped_and_breaks_kept() {
        let text = "BP PLANS VENTURE\n\nStandard Oil Co and BP North America\nInc said they plan.\n    BP North America is a\nsubsidiary.\n\n Reuter\n";
        let (chunks, tail) = split(text, 2000);
        let texts: Vec<_> = chunks.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "BP PLANS VENTURE",
                "Standard Oil Co and BP North America Inc said they plan.",
                "BP North America is a subsidiary.",
                "Reuter"
            ]
        );
        assert_eq!(chunks[1].before, "\n\n");
        assert_eq!(chunks[2].before, "\n    ");
        assert_eq!(chunks[3].before, "\n\n ");
        assert_eq!(tail, "\n");
        let same: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
        assert_eq!(join(&chunks, &same, &tail), "BP PLANS VENTURE\n\nStandard Oil Co and BP North America Inc said they plan.\n    BP North America is a subsidiary.\n\n Reuter\n");
    }

    #[test]
    fn long_paragraphs_are_cut_at_sentence_ends_then_spaces() {
        let text = "One two three. Four five six. Seven eight nine ten eleven twelve.";
        let (chunks, _) = split(text, 30);
        let texts: Vec<_> = chunks.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, ["One two three. Four five six.", "Seven eight nine ten eleven", "twelve."]);
        assert!(texts.iter().all(|t| t.chars().count() <= 30));
        assert_eq!(chunks[1].before, " ");
        let (chunks, tail) = split("  \n\n ", 10);
        assert!(chunks.is_empty());
        assert_eq!(tail, "  \n\n ");
        let (chunks, _) = split("Überschrift", 3);
        assert_eq!(chunks[0].text, "Überschrift");
    }
}
