//! HTML payloads to plain text: charset sniffing and decoding, then a fast,
//! tree-less extraction of the visible text.
//!
//! ```text
//! bytes + Content-Type + URL ──► decode_html ──► (UTF-8 String, encoding name)
//!                                                      │
//!                                                      ▼
//!                                html_to_text(&str, &TextOptions) ──► lines of text
//! ```
//!
//! This is the plain extractor: it keeps all visible text of the body (minus
//! navigation, footers, forms, scripts, ...). Main-content extraction
//! (boilerplate removal) is a later, separate stage.

pub(crate) mod charset;
pub(crate) mod columns;
pub(crate) mod text;

pub use charset::{
    charset_from_content_type, decode_html, prescan_meta_charset, sniff_encoding, EncodingSource, Sniffed,
};
pub use text::{html_to_text, TextOptions};

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::PathBuf;

    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", "html", name].iter().collect();
        std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
    }

    fn page_text(name: &str) -> (String, String, &'static str) {
        let page = fixture(name);
        let (html, encoding) = decode_html(&page, None, None);
        let text = html_to_text(&html, &TextOptions::default());
        (html.into_owned(), text, encoding)
    }

    /// Words of a text; Han, kana and Thai characters count one by one, as
    /// those scripts do not separate words by spaces.
    fn words(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
            if word.chars().any(is_unspaced_script) {
                out.extend(word.chars().map(String::from));
            } else {
                out.push(word.to_lowercase());
            }
        }
        out
    }

    fn is_unspaced_script(c: char) -> bool {
        matches!(c, '\u{3040}'..='\u{30FF}' | '\u{3400}'..='\u{9FFF}' | '\u{0E00}'..='\u{0E7F}')
    }

    const GOLD_PAGES: [&str; 8] = [
        "cnn_article",
        "time_001",
        "cleveland.com1",
        "yna_co_kr",
        "japanese_article2",
        "arabic_article",
        "chinese_article_002",
        "spanish_article",
    ];

    /// Random documents built from markup fragments: no panic, and the
    /// output's shape holds (no surrounding whitespace, no line ending in
    /// whitespace, at most one empty line in a row).
    #[test]
    fn random_markup_never_panics() {
        const PIECES: &[&str] = &[
            "<",
            ">",
            "</",
            "/>",
            "<!--",
            "-->",
            "--!>",
            "<![CDATA[",
            "]]>",
            "<!DOCTYPE html>",
            "<?",
            "&",
            "&amp;",
            "&#",
            "&#x",
            "41",
            ";",
            "&copy",
            "&nbsp;",
            "\"",
            "'",
            "=",
            " ",
            "\n",
            "\r\n",
            "\t",
            "x",
            "word",
            "é",
            "\u{3000}",
            "\u{a0}",
            "<p>",
            "</p>",
            "<p class=\"a>b\">",
            "<div>",
            "</div>",
            "<pre>",
            "</pre>",
            "<script>",
            "</script>",
            "<style>",
            "</style>",
            "<nav>",
            "</nav>",
            "<aside>",
            "</aside>",
            "<form>",
            "</form>",
            "<h1>",
            "</h1>",
            "<main>",
            "<table>",
            "<tr>",
            "<td>",
            "<th>",
            "</table>",
            "<li>",
            "<ul>",
            "</ul>",
            "<svg>",
            "<svg/>",
            "</svg>",
            "<head>",
            "</head>",
            "<body>",
            "</body>",
            "<title>",
            "</title>",
            "<textarea>",
            "<xmp>",
            "</xmp>",
            "<br>",
            "<button>",
            "<select>",
            "<option>",
            "<b>",
            "</b>",
            "<meta charset=",
            "utf-8",
            "koi8-r",
            "<plaintext>",
        ];
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..3000 {
            let len = (next() % 60) as usize;
            let doc: String = (0..len).map(|_| PIECES[(next() % PIECES.len() as u64) as usize]).collect();
            for keep_title in [false, true] {
                let text = html_to_text(&doc, &TextOptions { keep_title });
                assert_eq!(text.trim(), text, "{doc:?}");
                assert!(!text.contains("\n\n\n"), "{doc:?}");
                for line in text.lines() {
                    assert_eq!(line.trim_end(), line, "{doc:?}");
                }
            }
            let (decoded, _) = decode_html(doc.as_bytes(), Some("text/html; charset=x"), Some(&doc));
            assert_eq!(decoded, doc);
            let mut bytes = doc.into_bytes();
            bytes.truncate(bytes.len() / 2);
            let _ = decode_html(&bytes, None, None);
        }
    }

    #[test]
    fn keeps_the_article_words_of_real_pages() {
        for stem in GOLD_PAGES {
            let (_, text, encoding) = page_text(&format!("{stem}.html"));
            assert_eq!(encoding, "UTF-8", "{stem}");
            let gold = String::from_utf8_lossy(&fixture(&format!("{stem}.gold.txt"))).into_owned();
            let found: HashSet<String> = words(&text).into_iter().collect();
            let gold_words = words(&gold);
            let missing: Vec<&String> = gold_words.iter().filter(|w| !found.contains(*w)).collect();
            let recall = 1.0 - missing.len() as f64 / gold_words.len() as f64;
            assert!(
                gold_words.len() > 50 && recall >= 0.95,
                "{stem}: recall {recall:.3} of {} gold words, missing e.g. {:?}",
                gold_words.len(),
                &missing[..missing.len().min(20)]
            );
        }
    }

    #[test]
    fn output_is_trimmed_lines_without_empty_ones() {
        let names = GOLD_PAGES.iter().map(|stem| format!("{stem}.html")).chain(
            [
                "rnz.de.witzel.html",
                "cdu-fraktion-erfurt.de.waldorfschule.html",
                "landwirt.com.sensortechnik.html",
                "dw.com.uncork.html",
            ]
            .map(String::from),
        );
        for name in names {
            let (_, text, _) = page_text(&name);
            assert!(text.len() > 1000, "{name}: {} bytes", text.len());
            assert_eq!(text.trim(), text, "{name}");
            for line in text.lines() {
                assert!(!line.is_empty() && line.trim() == line, "{name}: line {line:?}");
                assert!(!line.contains("  "), "{name}: line {line:?}");
            }
        }
    }

    #[test]
    fn real_inline_scripts_and_styles_are_dropped() {
        let cases = [
            // Inline <script> and <style> contents, copied from the pages.
            ("cnn_article.html", "cnnArticleGallery.currentImageList[cnnArticleGallery.currentImageList.length]"),
            ("cnn_article.html", "#hdr-editions a { text-decoration:none; }"),
            ("cnn_article.html", "var disqus_shortname = 'cnn';"),
            ("time_001.html", "self.__next_f.push("),
            ("time_001.html", "\"@type\":\"NewsArticle\""),
            // <nav>, <footer> and <form> contents.
            ("cleveland.com1.html", "Career Opportunities"),
            ("cleveland.com1.html", "Set Your Location"),
            ("japanese_article2.html", "写真でつづるAFPの歴史"),
            ("spanish_article.html", "Quiénes somos"),
            ("time_001.html", "Sign Up for Our Ideas Newsletter"),
        ];
        for (name, snippet) in cases {
            let (html, text, _) = page_text(name);
            assert!(html.contains(snippet), "{name}: the page should contain {snippet:?}");
            assert!(!text.contains(snippet), "{name}: {snippet:?} leaked into the text");
        }
        // The article itself is there.
        let (_, text, _) = page_text("cnn_article.html");
        assert!(text.contains("\"We dodged a bullet,\" said Steve Cowan"), "{text}");
    }

    #[test]
    fn article_wrapped_in_an_aside_is_kept() {
        // rnz.de puts the whole article (with its <h1>) inside an <aside>,
        // next to real sidebars.
        let (html, text, _) = page_text("rnz.de.witzel.html");
        assert!(text.contains("Frank Witzel erhält Deutschen Buchpreis 2015"), "{text}");
        assert!(text.contains("Für einen Roman über die alte Bundesrepublik hat Frank Witzel"));
        for sidebar in ["Immobilienmarkt", "Alles kostenlos?", "RNZ-WHATSAPP-Newsletter"] {
            assert!(html.contains(sidebar));
            assert!(!text.contains(sidebar), "{sidebar:?} leaked into the text");
        }
    }

    #[test]
    fn title_is_kept_on_request() {
        let page = fixture("dw.com.uncork.html");
        let (html, _) = decode_html(&page, None, None);
        let title = "Uncork the mystery of Germany′s Frühburgunder | Culture| Arts, music and lifestyle reporting from Germany | DW | 10.06.2013";
        let with_title = html_to_text(&html, &TextOptions { keep_title: true });
        assert_eq!(with_title.lines().next(), Some(title));
        let without = html_to_text(&html, &TextOptions::default());
        assert!(!without.contains(title));
        assert!(without.contains("Uncork the mystery of Germany's Frühburgunder"));
    }

    #[test]
    fn latin1_page_with_meta_in_the_first_kilobyte() {
        let bytes = fixture("cdu-fraktion-erfurt.de.waldorfschule.html");
        let sniffed = sniff_encoding(&bytes, None, None);
        assert_eq!((sniffed.encoding.name(), sniffed.source), ("windows-1252", EncodingSource::MetaTag));
        let (_, text, _) = page_text("cdu-fraktion-erfurt.de.waldorfschule.html");
        assert!(text.contains("Thüringen"), "{text}");
        assert!(text.contains("Geschäftsstelle"));
        assert!(!text.contains('\u{FFFD}'));
    }

    #[test]
    fn latin1_page_with_meta_after_the_first_kilobyte() {
        let bytes = fixture("landwirt.com.sensortechnik.html");
        let sniffed = sniff_encoding(&bytes, None, None);
        assert_eq!((sniffed.encoding.name(), sniffed.source), ("windows-1252", EncodingSource::MetaTag));
        let (_, text, _) = page_text("landwirt.com.sensortechnik.html");
        assert!(text.contains("Überwachung"), "{text}");
    }

    #[test]
    fn undeclared_latin1_page_is_detected() {
        // The same page with its charset label made unknown: chardetng decides.
        let mut bytes = fixture("landwirt.com.sensortechnik.html");
        let label = b"charset=iso-8859-1";
        let at = bytes.windows(label.len()).position(|w| w == label).expect("the page declares its charset");
        bytes[at + 8..at + label.len()].copy_from_slice(b"unknown-xx");
        let sniffed = sniff_encoding(&bytes, None, Some("https://www.landwirt.com/Sensortechnik.html"));
        assert_eq!((sniffed.encoding.name(), sniffed.source), ("windows-1252", EncodingSource::Detected));
        let (html, _) = decode_html(&bytes, None, Some("https://www.landwirt.com/Sensortechnik.html"));
        assert!(html_to_text(&html, &TextOptions::default()).contains("Überwachung"));
    }

    #[test]
    fn http_header_overrides_meta_on_a_real_page() {
        let bytes = fixture("cdu-fraktion-erfurt.de.waldorfschule.html");
        let (html, encoding) = decode_html(&bytes, Some("text/html; charset=windows-1251"), None);
        assert_eq!(encoding, "windows-1251");
        // 0xFC is "ü" in windows-1252 and "ь" in windows-1251.
        assert!(html.contains("Thьringen"));
    }

    #[test]
    fn utf8_page_behind_a_latin1_header_stays_utf8() {
        let bytes = fixture("japanese_article2.html");
        let sniffed = sniff_encoding(&bytes, Some("text/html; charset=ISO-8859-1"), None);
        assert_eq!((sniffed.encoding.name(), sniffed.source), ("UTF-8", EncodingSource::Utf8Override));
        let (html, _) = decode_html(&bytes, Some("text/html; charset=ISO-8859-1"), None);
        assert!(html_to_text(&html, &TextOptions::default()).contains("ボコ・ハラム"));
    }
}
