use std::collections::HashMap;
use std::path::PathBuf;

use arrow::array::{LargeBinaryArray, StringArray};
use arrow::datatypes::{Field, Schema};
use smelt_engine::stage::doc;

use super::*;

fn fixture(dir: &str, name: &str) -> Vec<u8> {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", dir, name].iter().collect();
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

fn extract(html: &[u8]) -> Extracted {
    extract_document(html, None, None, &ExtractOptions::default()).unwrap_or_else(|e| panic!("skipped: {e}"))
}

/// Words of a text; Han, kana and Thai characters count one by one.
fn words(text: &str) -> Vec<String> {
    let unspaced = |c: char| matches!(c, '\u{3040}'..='\u{30FF}' | '\u{3400}'..='\u{9FFF}' | '\u{0E00}'..='\u{0E7F}');
    let mut out = Vec::new();
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        if word.chars().any(unspaced) {
            out.extend(word.chars().map(String::from));
        } else {
            out.push(word.to_lowercase());
        }
    }
    out
}

/// Bag-of-words precision and recall of `text` against `gold`.
fn precision_recall(text: &str, gold: &str) -> (f64, f64) {
    let mut counts: HashMap<String, i64> = HashMap::new();
    for w in words(gold) {
        *counts.entry(w).or_default() += 1;
    }
    let predicted = words(text);
    let gold_len = words(gold).len();
    let mut overlap = 0;
    for w in &predicted {
        if let Some(c) = counts.get_mut(w).filter(|c| **c > 0) {
            *c -= 1;
            overlap += 1;
        }
    }
    (overlap as f64 / predicted.len().max(1) as f64, overlap as f64 / gold_len.max(1) as f64)
}

#[test]
fn news_articles_match_their_gold_text() {
    // newspaper4k's gold article texts (copied beside the plain extractor's fixtures).
    for stem in [
        "cnn_article",
        "time_001",
        "cleveland.com1",
        "yna_co_kr",
        "japanese_article2",
        "arabic_article",
        "chinese_article_002",
        "spanish_article",
    ] {
        let e = extract(&fixture("html", &format!("{stem}.html")));
        let gold = String::from_utf8_lossy(&fixture("html", &format!("{stem}.gold.txt"))).into_owned();
        let (p, r) = precision_recall(&e.text, &gold);
        assert!(p >= 0.75 && r >= 0.85, "{stem}: precision {p:.3} recall {r:.3}\n{}", e.text);
    }
}

#[test]
fn boilerplate_goes_and_the_article_stays_on_real_pages() {
    // Snippets from trafilatura's evaluation data (tests/evaldata.py) for these pages.
    let cases: [(&str, &str, &[&str], &[&str]); 4] = [
        ("html", "rnz.de.witzel.html", &["Für einen Roman", "Auszeichnung der Branche."], &["Ihre RNZ.", "WHATSAPP"]),
        (
            "html",
            "dw.com.uncork.html",
            &["No grape variety invites as much intrigue", "With just 0.9 hectares"],
            &["Related Subjects", "Audios and videos on the topic"],
        ),
        (
            "html",
            "cdu-fraktion-erfurt.de.waldorfschule.html",
            &["Ein positives Signal gab", "der steigenden Nachfrage gerecht zu werden."],
            &["Zurück zur Übersicht", "Erhöhung für Zoo-Eintritt"],
        ),
        (
            "html",
            "landwirt.com.sensortechnik.html",
            &["b) Überwachung der somatischen Zellen", "Wiederkauverhalten und Kotkonsistenz."],
            &["Anzeigentarife", "New Holland T6050", "Aktuelle Berichte aus dieser Kategorie"],
        ),
    ];
    for (dir, name, with, without) in cases {
        let text = extract(&fixture(dir, name)).text;
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        for s in with {
            assert!(flat.contains(s), "{name}: {s:?} missing from\n{text}");
        }
        for s in without {
            assert!(!flat.contains(s), "{name}: {s:?} leaked into\n{text}");
        }
    }
}

#[test]
fn output_is_trimmed_lines_without_empty_ones() {
    for name in ["cnn_article.html", "time_001.html", "rnz.de.witzel.html", "dw.com.uncork.html"] {
        let text = extract(&fixture("html", name)).text;
        assert_eq!(text.trim(), text, "{name}");
        for line in text.lines() {
            assert!(!line.is_empty() && line.trim() == line, "{name}: line {line:?}");
        }
    }
}

#[test]
fn windows_1252_page_declared_in_meta() {
    let e = extract(&fixture("html", "landwirt.com.sensortechnik.html"));
    assert_eq!(e.encoding, "windows-1252");
    assert!(e.text.contains("Überwachung der somatischen Zellen"), "{}", e.text);
    assert!(!e.text.contains('\u{FFFD}'));
}

/// The page re-encoded with encoding_rs, its `<meta>` charset renamed: the
/// shared data has no real Shift_JIS page, and its only GBK/GB2312 pages are
/// spam without an article.
fn transcoded(name: &str, encoding: &'static encoding_rs::Encoding, label: &str) -> Vec<u8> {
    let utf8 = String::from_utf8(fixture("html", name)).expect("UTF-8 page");
    let relabelled = utf8.replacen("charset=\"utf-8\"", &format!("charset=\"{label}\""), 1).replacen(
        "charset=utf-8",
        &format!("charset={label}"),
        1,
    );
    assert_ne!(relabelled, utf8, "{name} declares UTF-8 in a <meta>");
    // Characters the encoding lacks become numeric references, which decode the same.
    encoding.encode(&relabelled).0.into_owned()
}

#[test]
fn shift_jis_page_gives_the_same_text() {
    let reference = extract(&fixture("html", "japanese_article2.html"));
    let sjis = transcoded("japanese_article2.html", encoding_rs::SHIFT_JIS, "Shift_JIS");
    assert!(std::str::from_utf8(&sjis).is_err());
    // Declared by the HTTP header, and detected without any declaration.
    let e = extract_document(&sjis, Some("text/html; charset=Shift_JIS"), None, &ExtractOptions::default()).unwrap();
    assert_eq!((e.encoding, &e.text), ("Shift_JIS", &reference.text));
    assert!(e.text.contains("ボコ・ハラム"));
}

#[test]
fn gb18030_page_gives_the_same_text() {
    let reference = extract(&fixture("html", "chinese_article_002.html"));
    let gb = transcoded("chinese_article_002.html", encoding_rs::GB18030, "gb18030");
    let e = extract_document(&gb, Some("text/html; charset=gb18030"), None, &ExtractOptions::default()).unwrap();
    assert_eq!((e.encoding, &e.text), ("gb18030", &reference.text));
    // GBK is GB18030's two-byte subset: a page labelled gbk (as many are) decodes the same.
    let gbk = transcoded("chinese_article_002.html", encoding_rs::GB18030, "gbk");
    assert_eq!(extract(&gbk).text, reference.text);
}

#[test]
fn binary_payload_labelled_html_is_not_text() {
    // A real gzip-compressed response body (Content-Type: text/html) from warcio's example WARC.
    let body = fixture("extract", "example.com.gzip-body.html.bin");
    assert_eq!(
        extract_document(&body, Some("text/html"), Some("http://example.com/"), &ExtractOptions::default()),
        Err(SkipReason::NotText)
    );
}

#[test]
fn redirect_page_without_text_is_empty() {
    let page = fixture("extract", "google_meta_refresh.html");
    assert_eq!(extract_document(&page, None, None, &ExtractOptions::default()), Err(SkipReason::EmptyText));
}

#[test]
fn size_length_and_time_guards() {
    let page = fixture("html", "cnn_article.html");
    let small = ExtractOptions { max_html_bytes: page.len() - 1, ..ExtractOptions::default() };
    assert_eq!(extract_document(&page, None, None, &small), Err(SkipReason::HtmlTooLarge));
    let chars = extract(&page).text.chars().count();
    let long = ExtractOptions { min_chars: chars + 1, ..ExtractOptions::default() };
    assert_eq!(extract_document(&page, None, None, &long), Err(SkipReason::TooShort));
    let exact = ExtractOptions { min_chars: chars, ..ExtractOptions::default() };
    assert!(extract_document(&page, None, None, &exact).is_ok());
    let no_time = ExtractOptions { timeout: Some(Duration::ZERO), ..ExtractOptions::default() };
    assert_eq!(extract_document(&page, None, None, &no_time), Err(SkipReason::Timeout));
}

#[test]
fn deep_nesting_needs_no_recursion() {
    // 100k nested <div>s (generated scale input), each with a little text, closed at the end.
    let depth = 100_000;
    let mut html = String::with_capacity(depth * 40);
    html.push_str("<html><body>");
    for i in 0..depth {
        html.push_str("<div>");
        if i % 1000 == 0 {
            html.push_str("Deep text that is long enough to be a paragraph of the article, number ");
            html.push_str(&i.to_string());
        }
    }
    html.push_str(&"</div>".repeat(depth));
    html.push_str("<p>After the nest, a closing paragraph of good length for the extractor.</p></body></html>");
    let started = Instant::now();
    let e = extract_document(html.as_bytes(), None, None, &ExtractOptions::default()).unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(e.text.contains("number 0") && e.text.contains("number 99000"), "{}", e.text);
}

#[test]
fn pathological_markup_stays_within_the_budget() {
    // Unclosed tags, unterminated attributes and comments: linear time, no panic.
    let cases = [
        "<a ".repeat(200_000),
        "<p class='x".repeat(50_000),
        "<!--".repeat(100_000),
        "<table><tr><td>".repeat(30_000),
        "&#x".repeat(200_000),
    ];
    for html in cases {
        let started = Instant::now();
        let _ = extract_document(html.as_bytes(), None, None, &ExtractOptions::default());
        assert!(started.elapsed() < Duration::from_secs(5), "{}", &html[..20]);
    }
}

#[test]
fn tables_lists_quotes_and_code() {
    let html = "<html><body><article>\
        <p>An article paragraph that is long enough to be kept as the main content here.</p>\
        <table><tr><th>Model</th><th>Price</th></tr><tr><td>Koos i-Size</td><td>199 &euro;</td></tr></table>\
        <ul><li>First point of the list</li><li>Second point</li></ul>\
        <blockquote>A quoted sentence.</blockquote>\
        <pre>fn main() {\n    println!(\"hi\");\n}</pre>\
        <p>Line one<br>line two</p>\
        </article></body></html>";
    let e = extract(html.as_bytes());
    assert_eq!(
        e.text,
        "An article paragraph that is long enough to be kept as the main content here.\n\
         Model\tPrice\nKoos i-Size\t199 €\nFirst point of the list\nSecond point\nA quoted sentence.\n\
         fn main() {\n    println!(\"hi\");\n}\nLine one\nline two"
    );
}

#[test]
fn title_on_request() {
    let page = fixture("html", "dw.com.uncork.html");
    let with_title =
        extract_document(&page, None, None, &ExtractOptions { keep_title: true, ..ExtractOptions::default() }).unwrap();
    let title = with_title.title.clone().expect("the page has a title");
    assert!(title.starts_with("Uncork the mystery of Germany"), "{title}");
    assert_eq!(with_title.text.lines().next(), Some(title.as_str()));
    assert!(!extract(&page).text.starts_with(&title));
}

#[test]
fn random_markup_never_panics() {
    const PIECES: &[&str] = &[
        "<",
        ">",
        "</",
        "/>",
        "<!--",
        "-->",
        "&",
        "&amp;",
        "&#",
        "\"",
        "'",
        "=",
        " ",
        "\n",
        "x",
        "word and more words, a sentence of some length for the scorer. ",
        "é",
        "\u{3000}",
        "<p>",
        "</p>",
        "<div class=\"comment\">",
        "<div class='article-body'>",
        "</div>",
        "<pre>",
        "</pre>",
        "<script>",
        "</script>",
        "<nav>",
        "</nav>",
        "<aside>",
        "</aside>",
        "<a href=x>",
        "</a>",
        "<br>",
        "<table>",
        "<tr>",
        "<td>",
        "</table>",
        "<li>",
        "<ul>",
        "</ul>",
        "<svg>",
        "</svg>",
        "<head>",
        "<body>",
        "<title>",
        "</title>",
        "<span style='display:none'>",
        "</span>",
        "<plaintext>",
        "<xmp>",
        "<h1>",
        "</h1>",
        "<article>",
        "</article>",
        "<footer>",
        "<form>",
        "<button>",
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..3000 {
        let len = (next() % 80) as usize;
        let doc: String = (0..len).map(|_| PIECES[(next() % PIECES.len() as u64) as usize]).collect();
        if let Ok(e) = extract_document(doc.as_bytes(), None, None, &ExtractOptions::default()) {
            assert_eq!(e.text.trim(), e.text, "{doc:?}");
            assert!(!e.text.is_empty());
        }
        let again = extract_document(doc.as_bytes(), None, None, &ExtractOptions::default());
        assert_eq!(again, extract_document(doc.as_bytes(), None, None, &ExtractOptions::default()));
    }
}

#[test]
fn stage_drops_with_reasons() {
    let schema = Arc::new(Schema::new(vec![
        doc::id(),
        Field::new("html", DataType::LargeBinary, false),
        Field::new("content_type", DataType::Utf8, true),
        doc::url(),
    ]));
    let article = fixture("html", "cdu-fraktion-erfurt.de.waldorfschule.html");
    let binary = fixture("extract", "example.com.gzip-body.html.bin");
    let redirect = fixture("extract", "google_meta_refresh.html");
    let pages: Vec<&[u8]> = vec![&article, &binary, &redirect];
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["a", "b", "c"])),
            Arc::new(LargeBinaryArray::from(pages)),
            Arc::new(StringArray::from(vec![None, Some("text/html"), None])),
            Arc::new(StringArray::from(vec![Some("http://www.cdu-fraktion-erfurt.de/"), None, None])),
        ],
    )
    .unwrap();
    let cfg: ExtractConfig = serde_json::from_value(serde_json::json!({"timeout_ms": 5000})).unwrap();
    let out_schema = cfg.output_schema(&schema).unwrap();
    assert_eq!(out_schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(), vec!["id", "text", "url"]);
    let Processed::Filtered { batch, verdicts } = cfg.build(&schema).unwrap().process(batch).unwrap() else {
        panic!("a filter")
    };
    assert!(batch.column(1).as_string::<i64>().value(0).contains("Ein positives Signal gab"));
    assert_eq!(verdicts, vec![None, Some(Cow::Borrowed("not_text")), Some(Cow::Borrowed("empty_text"))]);
}

#[test]
fn options_are_checked() {
    let e = configure(serde_json::json!({"timeout": 3}), &ConfigureContext::working_dir()).unwrap_err();
    assert!(e.at_key && e.message.contains("unknown field"), "{e:?}");
    let StageConfig::Transform(t) = configure(serde_json::json!({}), &ConfigureContext::working_dir()).unwrap() else {
        panic!("a transform")
    };
    assert_eq!(
        t.resolved(),
        serde_json::json!({"max_html_bytes": 4194304, "timeout_ms": 1000, "min_chars": 1, "keep_title": false})
    );
    let schema = Arc::new(Schema::new(vec![doc::id(), doc::text()]));
    let cfg: ExtractConfig = serde_json::from_value(serde_json::json!({})).unwrap();
    assert!(cfg.output_schema(&schema).unwrap_err().0.contains("needs column `html`"));
}

// Rules below, each with a trimmed excerpt of a page of trafilatura's test
// cache (tests/cache, the pages of its evaluation).

/// Extracted text with whitespace collapsed.
fn flat(html: &str) -> String {
    extract(html.as_bytes()).text.split_whitespace().collect::<Vec<_>>().join(" ")
}

const PARA: &str = "Der stationäre Handel steckt in der Krise und es ist Pioniergeist gefragt, um die Lage wieder in den Griff zu bekommen.";

#[test]
fn a_short_line_or_heading_before_a_link_list_goes_with_it() {
    // basicthinking.de: "Auch interessant:" before a list of links, at the end of the article.
    let html = format!(
        "<article><div class=\"entry-content\"><p>{PARA}</p><p>{PARA}</p>\
         <p><strong>Auch interessant:</strong></p>\
         <ul><li><a href=\"/a\">14 Tipps, wie du mehr Twitter-Follower bekommst</a></li>\
         <li><a href=\"/b\">Das sind die neun erfolgreichsten Tweets des Jahres</a></li></ul>\
         <h3>Ähnliche Beiträge</h3><p><a href=\"/c\">Duschkopf mit Filter: Was er bringt</a></p>\
         </div></article>"
    );
    let text = flat(&html);
    assert!(text.contains("Pioniergeist"), "{text}");
    assert!(!text.contains("Auch interessant"), "{text}");
    assert!(!text.contains("Ähnliche Beiträge"), "{text}");
    // An article's last short line stays before the page's navigation.
    let html = format!(
        "<article><p>{PARA}</p><p>{PARA}</p><p>Be there or be square!</p></article>\
         <div class=\"more\"><p><a href=\"/x\">Alle Termine des Sommers im Überblick</a></p></div>"
    );
    assert!(flat(&html).contains("Be there or be square!"));
    // A heading before text stays.
    let html = format!("<article><h3>Schredder statt Ofen</h3><p>{PARA}</p><p>{PARA}</p></article>");
    assert!(flat(&html).contains("Schredder statt Ofen"));
}

#[test]
fn a_heading_id_is_an_anchor_not_a_hint() {
    // heise.de: table-of-contents anchors made from the heading's text ("nav_...").
    let html = format!(
        "<article class=\"article-layout\"><div class=\"article-content\"><p>{PARA}</p>\
         <h3 class=\"subheading\" id=\"nav_nur_die_folie__1\">Nur die Folie bleibt zurück</h3>\
         <p>{PARA}</p></div></article>"
    );
    assert!(flat(&html).contains("Nur die Folie bleibt zurück"));
    // Its class still counts.
    let html = format!("<article><p>{PARA}</p><p>{PARA}</p><h3 class=\"comments-title\">3 Kommentare</h3></article>");
    assert!(!flat(&html).contains("Kommentare"));
}

#[test]
fn an_articles_own_header_is_kept_the_sites_is_not() {
    // cnet.de: the lead paragraph sits in the article's <header>.
    let html = format!(
        "<header><p>CNET Newsletter: Jetzt kostenlos anmelden und informiert bleiben.</p></header>\
         <article id=\"post-88130484\" class=\"post type-post hentry category-news tag-google\">\
         <div id=\"articleHead\"><header><h1>So können Internet-User nach dem EuGH-Urteil für den Schutz sensibler Daten sorgen</h1>\
         <p>Rechtsanwalt Dr. Thomas Schulte liefert eine Einschätzung zum EuGH-Urteils zu Google.</p>\
         <span class=\"byline\">von <a href=\"/autor/\">Anja Schmoll-Trautmann</a> am 14. Mai 2014</span></header></div>\
         <div id=\"articleContent\"><p>{PARA}</p><p>{PARA}</p></div></article>"
    );
    let text = flat(&html);
    assert!(text.contains("liefert eine Einschätzung"), "{text}");
    assert!(!text.contains("Newsletter"), "{text}");
    assert!(!text.contains("Schmoll-Trautmann"), "{text}");
}

#[test]
fn a_long_sidebar_text_does_not_outweigh_the_article_beside_it() {
    // piratenpartei-mv.de: a post (with WordPress `tag-*` classes) beside a
    // sidebar widget holding the party's whole programme.
    let programme = "Piraten stehen für Selbstbestimmtheit und ein positives Menschenbild, das heißt Teilhabe, Freiheit und Transparenz auf allen Ebenen.";
    let html = format!(
        "<div id=\"container\"><div id=\"content\">\
         <section id=\"post-1481\" class=\"single-post-view post-1481 post type-post hentry category-allgemein tag-berlin tag-demonstration\">\
         <header class=\"header\"><h1 class=\"post-title\">Grundeinkommen ist ein Menschenrecht!</h1></header>\
         <article class=\"article\"><p>Unter diesem Motto findet am 14. September um 13 Uhr eine Demonstration in Berlin statt, die wir als Piratenpartei unterstützen.</p>\
         <p>{PARA}</p></article></section></div>\
         <section id=\"sidebar\"><aside id=\"text-3\" class=\"widget widget-sidebar widget_text\"><div class=\"textwidget\">{}</div></aside></section></div>",
        format!("<p>{programme}</p>").repeat(4)
    );
    let text = flat(&html);
    assert!(text.contains("Unter diesem Motto"), "{text}");
    assert!(!text.contains("Selbstbestimmtheit"), "{text}");
    // An article wrapped in an <aside> alone on its page is still found.
    let html = format!("<nav><a href=\"/\">Home</a></nav><aside><p>{PARA}</p><p>{PARA}</p></aside>");
    assert!(flat(&html).contains("Pioniergeist"));
}

#[test]
fn text_comes_out_composed() {
    // adac.de writes "ü" as "u" + U+0308 (combining diaeresis).
    let html = "<article><ul><li>Besonders bei Babyschalen sollte gepru\u{308}ft werden, ob die Gurtla\u{308}nge im Fahrzeug ausreicht.</li></ul></article>";
    assert!(flat(html).contains("Besonders bei Babyschalen sollte geprüft werden, ob die Gurtlänge"));
}

#[test]
fn a_link_paragraph_within_the_text_stays_a_link_list_does_not() {
    // die-partei.net: the petition's address ends the post.
    let html = "<div id=main><div class=newsentry><div class=newstext>\
        <p>Die GEMA dreht völlig am Zeiger! Durch die geplanten Tariferhöhungen 2013 stehen viele Clubbesitzer vor dem Aus. Damit DJs ihre Sets demnächst nicht vorlesen müssen, unterschreibt die Petition:</p>\
        <p><a href=http://www.openpetition.de/petition/online/gegen-die-tarifreform-2013-gema-verliert-augenmass>http://www.openpetition.de/petition/online/gegen-die-tarifreform-2013-gema-verliert-augenmass</a></p>\
        </div></div><div class=prevpost><a href=/luebeck/2012/05/17/ rel=prev>&larr; Der 1. monatliche Stammtisch steht fest!</a></div></div>";
    let text = flat(html);
    assert!(text.contains("http://www.openpetition.de/petition"), "{text}");
    assert!(!text.contains("Stammtisch"), "{text}");
    // A link paragraph followed by more links is navigation.
    let html = format!(
        "<article><p>{PARA}</p><p><a href=/a>Mehr aus dem Ressort Wirtschaft und Handel</a></p>\
         <p><a href=/b>Noch mehr aus dem Ressort Wirtschaft und Handel</a></p></article>"
    );
    assert!(!flat(&html).contains("Ressort"));
}

/// `EXTRACT_PAGE=path cargo test -p smelt-stages --lib extract::tests::print_page -- --ignored --nocapture`;
/// with `EXTRACT_LIST=paths.txt` instead, one JSON line `{"file", "text"}` per listed page
/// (what `bench/extract_bench.py` reads from `extract_pages`, for quick debug-build iterations).
#[test]
#[ignore = "a debugging aid: prints the extraction of $EXTRACT_PAGE or of the pages in $EXTRACT_LIST"]
fn print_page() {
    if let Ok(list) = std::env::var("EXTRACT_LIST") {
        for file in std::fs::read_to_string(list).unwrap().lines().filter(|l| !l.is_empty()) {
            let html = std::fs::read(file).unwrap();
            let text =
                extract_document(&html, None, None, &ExtractOptions::default()).map(|e| e.text).unwrap_or_default();
            println!("{}", serde_json::json!({"file": file, "text": text}));
        }
        return;
    }
    // Under `--include-ignored` (as .ci/run) without either variable: nothing to print.
    let Ok(path) = std::env::var("EXTRACT_PAGE") else { return };
    let e = extract(&std::fs::read(path).unwrap());
    println!("{}", e.text);
}

#[test]
fn explain_gives_every_block_the_verdict_the_text_follows() {
    // On real pages: the kept blocks, less those left out, are the extracted text.
    for stem in ["cnn_article", "time_001", "chinese_article_002", "arabic_article"] {
        let html = fixture("html", &format!("{stem}.html"));
        let options = ExtractOptions::default();
        let blocks = explain_document(&html, None, None, &options).unwrap();
        let text = extract_document(&html, None, None, &options).unwrap().text;
        let kept: Vec<String> = blocks
            .iter()
            .filter(|b| b.verdict.kept() && b.left_out.is_none())
            .map(|b| b.text.split('\n').map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n"))
            .filter(|t| !t.is_empty())
            .collect();
        assert_eq!(kept.join("\n"), text, "{stem}");
        assert!(blocks.iter().any(|b| !b.verdict.kept()), "{stem}: some boilerplate is dropped");
    }
    // Each rule names itself.
    let html = format!(
        "<html><body><nav><a href=/a>Home</a> <a href=/b>World</a></nav>\
         <div class=\"comments\"><p>{PARA}</p></div>\
         <article><p>{PARA}</p><p>{PARA} Second.</p><ul><li><a href=/x>Related story one</a></li><li><a href=/y>Related story two</a></li></ul></article>\
         <footer><p>Copyright</p></footer></body></html>"
    );
    let blocks = explain_document(html.as_bytes(), None, None, &ExtractOptions::default()).unwrap();
    let verdict = |start: &str| blocks.iter().find(|b| b.text.starts_with(start)).map(|b| b.verdict.describe());
    assert_eq!(verdict("Home").as_deref(), Some("furniture by tag"));
    assert_eq!(verdict("Copyright").as_deref(), Some("furniture by tag"));
    assert_eq!(blocks.iter().filter(|b| b.verdict == Verdict::Main).count(), 2);
    assert!(blocks.iter().any(|b| b.verdict.describe() == "furniture by class/id"), "{blocks:#?}");
    assert_eq!(verdict("Related story two"), Some("link list".to_string()));
    // A short line right before a link list goes with it, as its title.
    assert_eq!(verdict("Related story one"), Some("title of a link list".to_string()));
    assert!(explain_document(b"\x00\x01\x02binary", None, None, &ExtractOptions::default()).is_err());
}
