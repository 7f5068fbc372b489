//! Feeds as they are published, made into what an XML parser reads: feed
//! files in the wild are in legacy encodings (declared, sent as an HTTP
//! charset, or neither), use HTML entities that XML does not declare, start
//! with a comment or a doctype, or end mid-item. Read leniently, as
//! feedparser does, instead of losing the feed.
//!
//! ```text
//! bytes ──BOM | HTTP charset | <?xml encoding?> | UTF-8 | detection (first that decodes cleanly)──► UTF-8 text
//!       ──declaration says UTF-8; leading comments, doctype and PIs dropped──►
//!       ──&nbsp; &eacute; ... ──► &#160; &#233;   (a stray & ──► &amp;; CDATA untouched)──► XML for feed-rs
//! parse failed ──cut after the last whole </item> or </entry>, close the root──► parse again
//! ```

use std::borrow::Cow;

use encoding_rs::{Encoding, UTF_16BE, UTF_16LE, UTF_8};

/// The feed's text as UTF-8 XML a strict parser accepts, or the bytes as
/// they are for a JSON feed.
pub(crate) fn prepare(body: &[u8], content_type: Option<&str>) -> Vec<u8> {
    let text = decode(body, content_type);
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        return trimmed.as_bytes().to_vec();
    }
    let xml = drop_prolog_clutter(trimmed);
    fix_entities(&xml).into_bytes()
}

/// `xml` cut after its last whole item or entry and its root closed again,
/// for a feed that ends mid-item; `None` when there is no whole item.
pub(crate) fn truncated_recovery(xml: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(xml).ok()?;
    let (end, closing) = [("</item>", "rss"), ("</entry>", "feed")]
        .iter()
        .filter_map(|(tag, kind)| text.rfind(tag).map(|i| (i + tag.len(), *kind)))
        .max_by_key(|(i, _)| *i)?;
    let head = &text[..end];
    let mut out = head.to_string();
    if closing == "feed" {
        out.push_str("</feed>");
    } else if head.contains("<rdf:RDF") {
        // RSS 1.0: items are children of the root, beside the channel.
        out.push_str("</rdf:RDF>");
    } else {
        out.push_str("</channel></rss>");
    }
    Some(out.into_bytes())
}

/// Decodes `body` with the first of these that decodes it without errors:
/// its byte-order mark, the HTTP charset, the XML declaration's encoding,
/// UTF-8, then a detector's guess; failing all, the first declared one (or
/// the guess) with invalid bytes replaced.
fn decode<'a>(body: &'a [u8], content_type: Option<&str>) -> Cow<'a, str> {
    if let Some((enc, bom)) = Encoding::for_bom(body) {
        return enc.decode_without_bom_handling(&body[bom..]).0;
    }
    // UTF-16 without a byte-order mark: `<?` with zero bytes between.
    if body.starts_with(b"<\0?\0") {
        return UTF_16LE.decode_without_bom_handling(body).0;
    }
    if body.starts_with(b"\0<\0?") {
        return UTF_16BE.decode_without_bom_handling(body).0;
    }
    let mut candidates: Vec<&'static Encoding> = Vec::new();
    candidates.extend(content_type.and_then(http_charset).and_then(|l| Encoding::for_label(l.as_bytes())));
    candidates.extend(declared_encoding(body).and_then(|l| Encoding::for_label(l.as_bytes())));
    // A declared UTF-16 in a document read as bytes is a mislabel: its bytes are ASCII-compatible here.
    candidates.retain(|e| *e != UTF_16LE && *e != UTF_16BE);
    candidates.push(UTF_8);
    for enc in &candidates {
        if let Some(text) = enc.decode_without_bom_handling_and_without_replacement(body) {
            return text;
        }
    }
    let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
    detector.feed(body, true);
    let guess = detector.guess(None, chardetng::Utf8Detection::Allow);
    if let Some(text) = guess.decode_without_bom_handling_and_without_replacement(body) {
        return text;
    }
    let enc = candidates.first().copied().filter(|e| *e != UTF_8).unwrap_or(guess);
    enc.decode_without_bom_handling(body).0
}

/// `charset=` of a `Content-Type` header.
fn http_charset(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("charset").then(|| v.trim().trim_matches(['"', '\'']).to_string())
    })
}

/// The `encoding` of an XML declaration at the start of `body` (ASCII-compatible bytes).
fn declared_encoding(body: &[u8]) -> Option<String> {
    let head = &body[..body.len().min(512)];
    let start = head.windows(5).position(|w| w == b"<?xml")?;
    let end = start + head[start..].windows(2).position(|w| w == b"?>")?;
    let decl = std::str::from_utf8(&head[start..end]).ok()?;
    let at = decl.find("encoding")?;
    let rest = decl[at + "encoding".len()..].trim_start().strip_prefix('=')?.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = &rest[1..];
    Some(value[..value.find(quote)?].to_string())
}

/// The document with a UTF-8 declaration and without the comments,
/// processing instructions and doctype between it and the root element.
fn drop_prolog_clutter(xml: &str) -> String {
    let mut rest = xml;
    if rest.starts_with("<?xml") {
        match rest.find("?>") {
            Some(end) => rest = &rest[end + 2..],
            None => return xml.to_string(),
        }
    }
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
        let end = if rest.starts_with("<!--") {
            rest.find("-->").map(|e| e + 3)
        } else if rest.starts_with("<?") {
            rest.find("?>").map(|e| e + 2)
        } else if rest.starts_with("<!DOCTYPE") || rest.starts_with("<!doctype") {
            doctype_end(rest)
        } else {
            break;
        };
        match end {
            Some(e) => rest = &rest[e..],
            None => break,
        }
    }
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{}", rss_version(rest))
}

/// An `<rss>` root whose `version` is missing or one the parser does not
/// know (0.90, 0.93, 0.94, 2.00, ...) read as RSS 2.0, whose elements are a
/// superset of the others'.
fn rss_version(root: &str) -> Cow<'_, str> {
    let Some(after) = root.strip_prefix("<rss").filter(|r| r.starts_with(|c: char| c.is_whitespace() || c == '>'))
    else {
        return Cow::Borrowed(root);
    };
    let tag_end = after.find('>').unwrap_or(after.len());
    let attrs = &after[..tag_end];
    let version = attrs.find("version").and_then(|at| {
        let rest = attrs[at + "version".len()..].trim_start().strip_prefix('=')?.trim_start();
        let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        let value = &rest[1..];
        let len = value.find(quote)?;
        let start = attrs.len() - rest.len() + 1;
        Some((start, len, &value[..len]))
    });
    match version {
        Some((_, _, "2.0" | "" | "0.91" | "0.92")) => Cow::Borrowed(root),
        Some((start, len, _)) => {
            let at = "<rss".len() + start;
            Cow::Owned(format!("{}2.0{}", &root[..at], &root[at + len..]))
        }
        None => Cow::Owned(format!("<rss version=\"2.0\"{after}")),
    }
}

/// The end of a doctype, past its internal subset (`[...]`) if any.
fn doctype_end(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            '>' if depth == 0 => return Some(i + 1),
            _ => {}
        }
    }
    None
}

/// XML's own entities and character references are kept; an HTML named
/// entity becomes its character reference; any other `&` is escaped.
/// CDATA sections, comments and processing instructions are left as they are.
fn fix_entities(xml: &str) -> String {
    let mut out = String::with_capacity(xml.len() + 64);
    let mut rest = xml;
    while let Some(i) = rest.find(['&', '<']) {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if rest.starts_with('<') {
            // Copy markup sections whose content is literal in one piece.
            let end = [("<![CDATA[", "]]>"), ("<!--", "-->"), ("<?", "?>")]
                .iter()
                .find(|(open, _)| rest.starts_with(open))
                .map(|(_, close)| rest.find(close).map_or(rest.len(), |e| e + close.len()))
                .unwrap_or(1);
            out.push_str(&rest[..end]);
            rest = &rest[end..];
            continue;
        }
        let name_end = rest[1..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '#')).map(|e| e + 1);
        match name_end.filter(|&e| rest[e..].starts_with(';') && e > 1) {
            Some(e) => {
                let name = &rest[1..e];
                if name.starts_with('#') || matches!(name, "amp" | "lt" | "gt" | "quot" | "apos") {
                    out.push_str(&rest[..=e]);
                } else {
                    let entity = &rest[..=e];
                    let decoded = html_escape::decode_html_entities(entity);
                    if decoded != entity {
                        for c in decoded.chars() {
                            out.push_str(&format!("&#{};", c as u32));
                        }
                    } else {
                        out.push_str("&amp;");
                        out.push_str(&rest[1..=e]);
                    }
                }
                rest = &rest[e + 1..];
            }
            None => {
                out.push_str("&amp;");
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(body: &[u8], ct: Option<&str>) -> String {
        String::from_utf8(prepare(body, ct)).unwrap()
    }

    #[test]
    fn encodings_from_bom_http_declaration_and_detection() {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-16\"?><rss><channel><title>Café</title></channel></rss>";
        let mut be = vec![0xFE, 0xFF];
        be.extend(xml.encode_utf16().flat_map(u16::to_be_bytes));
        assert!(text(&be, None).contains("<title>Café</title>"));
        let le: Vec<u8> = xml.encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert!(text(&le, None).contains("<title>Café</title>"));
        // windows-1252 declared, and sent as the HTTP charset.
        let latin =
            b"<?xml version=\"1.0\" encoding=\"windows-1252\"?><rss><title>Caf\xe9 \x93quoted\x94</title></rss>";
        assert!(text(latin, None).contains("Café “quoted”"));
        let undeclared = b"<rss><title>Caf\xe9</title></rss>";
        assert!(text(undeclared, Some("text/xml; charset=ISO-8859-1")).contains("Café"));
        // Declared UTF-8 but not UTF-8: the detector's guess.
        let mislabelled =
            b"<?xml version=\"1.0\" encoding=\"utf-8\"?><rss><title>Caf\xe9 cr\xe8me br\xfbl\xe9e</title></rss>";
        assert!(text(mislabelled, None).contains("Café crème brûlée"), "{}", text(mislabelled, None));
        // Big5 declared.
        let (big5, _, _) =
            encoding_rs::BIG5.encode("<?xml version=\"1.0\" encoding=\"big5\"?><rss><title>中文新聞</title></rss>");
        assert!(text(&big5, None).contains("中文新聞"));
        // The declaration says UTF-8 afterwards.
        assert!(text(latin, None).starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"));
    }

    #[test]
    fn html_entities_become_references_and_cdata_stays() {
        let xml = "<rss><title>caf&eacute;&nbsp;&amp; more &#233; &copy; AT&T &bogus;</title><description><![CDATA[a &nbsp; b]]></description></rss>";
        let t = text(xml.as_bytes(), None);
        assert!(t.contains("caf&#233;&#160;&amp; more &#233; &#169; AT&amp;T &amp;bogus;"), "{t}");
        assert!(t.contains("<![CDATA[a &nbsp; b]]>"), "{t}");
    }

    #[test]
    fn comments_and_doctypes_before_the_root_are_dropped() {
        let xml = "<?xml version=\"1.0\"?>\n<!-- generator: x -->\n<!DOCTYPE rss PUBLIC \"-//Netscape//DTD RSS 0.91//EN\" \"http://x/rss.dtd\" [<!ENTITY a \"b\">]>\n<rss/>";
        assert_eq!(text(xml.as_bytes(), None), "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rss/>");
    }

    #[test]
    fn rss_roots_without_a_known_version_read_as_2_0() {
        assert!(text(b"<rss><channel/></rss>", None).ends_with("<rss version=\"2.0\"><channel/></rss>"));
        assert!(text(b"<rss version='0.94' xmlns:a='x'><channel/></rss>", None)
            .ends_with("<rss version='2.0' xmlns:a='x'><channel/></rss>"));
        assert!(
            text(b"<rss version=\"0.92\"><channel/></rss>", None).ends_with("<rss version=\"0.92\"><channel/></rss>")
        );
        assert!(text(b"<rssfeed><x/></rssfeed>", None).ends_with("<rssfeed><x/></rssfeed>"));
    }

    #[test]
    fn a_feed_cut_mid_item_keeps_its_whole_items() {
        let xml = b"<rss><channel><item><title>a</title></item><item><title>b</title></item><item><title>c";
        let fixed = String::from_utf8(truncated_recovery(xml).unwrap()).unwrap();
        assert!(fixed.ends_with("<title>b</title></item></channel></rss>"), "{fixed}");
        let atom = b"<feed><entry><id>1</id></entry><entry><id>2";
        assert!(String::from_utf8(truncated_recovery(atom).unwrap()).unwrap().ends_with("</entry></feed>"));
        assert!(truncated_recovery(b"<rss><channel><title>x").is_none());
    }

    /// What the `rss` source does with a feed body: prepared, parsed, a cut one recovered.
    fn read(body: &[u8], content_type: Option<&str>) -> feed_rs::model::Feed {
        let xml = prepare(body, content_type);
        feed_rs::parser::parse(xml.as_slice())
            .or_else(|e| feed_rs::parser::parse(truncated_recovery(&xml).ok_or(e)?.as_slice()))
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&xml)))
    }

    fn titles(feed: &feed_rs::model::Feed) -> Vec<String> {
        feed.entries.iter().map(|e| e.title.as_ref().map(|t| t.content.clone()).unwrap_or_default()).collect()
    }

    fn rss(items: &str) -> String {
        format!("<rss version=\"2.0\"><channel><title>t</title><link>http://a.org/</link>{items}</channel></rss>")
    }

    const ITEM: &str = "<item><title>TITLE</title><link>http://a.org/1</link><guid>g1</guid><pubDate>Tue, 03 Jun 2003 09:39:21 GMT</pubDate></item>";

    /// Feeds as publishers write them, each read whole by feed-rs after
    /// decoding, with the title, link, GUID and date the file states.
    #[test]
    fn feeds_in_the_wild_give_their_items() {
        let item = |title: &str| ITEM.replace("TITLE", title);
        // HTML entities XML does not declare.
        let f =
            read(rss(&item("Caf&eacute; &amp; cr&egrave;me&nbsp;br&ucirc;l&eacute;e &mdash; AT&T")).as_bytes(), None);
        assert_eq!(titles(&f), ["Café & crème\u{a0}brûlée — AT&T"]);
        let e = &f.entries[0];
        assert_eq!((e.id.as_str(), e.links[0].href.as_str()), ("g1", "http://a.org/1"));
        assert_eq!(e.published.unwrap().to_rfc3339(), "2003-06-03T09:39:21+00:00");
        // Legacy encodings, declared.
        for (label, enc, title) in [
            ("windows-1252", encoding_rs::WINDOWS_1252, "“Café” – €5"),
            ("big5", encoding_rs::BIG5, "中文新聞標題"),
            ("euc-kr", encoding_rs::EUC_KR, "한국어 뉴스"),
            ("shift_jis", encoding_rs::SHIFT_JIS, "日本語のニュース"),
        ] {
            let text = format!("<?xml version=\"1.0\" encoding=\"{label}\"?>{}", rss(&item(title)));
            let (bytes, _, bad) = enc.encode(&text);
            assert!(!bad, "{label}");
            assert_eq!(titles(&read(&bytes, None)), [title], "{label}");
            // The same bytes undeclared, with the charset sent by HTTP instead.
            let undeclared = enc.encode(&rss(&item(title))).0.into_owned();
            assert_eq!(titles(&read(&undeclared, Some(&format!("application/rss+xml; charset={label}")))), [title]);
        }
        // UTF-16 with byte-order marks, Atom.
        let atom = "<?xml version=\"1.0\" encoding=\"utf-16\"?><feed xmlns=\"http://www.w3.org/2005/Atom\"><title>t</title><id>f</id><updated>2024-01-01T00:00:00Z</updated><entry><title>Grüße</title><id>e1</id><updated>2024-01-01T00:00:00Z</updated><link href=\"http://a.org/e\"/></entry></feed>";
        let le: Vec<u8> = [0xFF, 0xFE].into_iter().chain(atom.encode_utf16().flat_map(u16::to_le_bytes)).collect();
        assert_eq!(titles(&read(&le, None)), ["Grüße"]);
        // A comment and a doctype before the root; a root without a version.
        let clutter = format!("<?xml version=\"1.0\"?>\n<!-- generated -->\n<!DOCTYPE rss PUBLIC \"-//Netscape Communications//DTD RSS 0.91//EN\" \"http://my.netscape.com/publish/formats/rss-0.91.dtd\">\n{}", rss(&item("a")).replace("<rss version=\"2.0\">", "<rss>"));
        assert_eq!(titles(&read(clutter.as_bytes(), None)), ["a"]);
        // Cut off in the middle of the third item: the first two.
        let cut = rss(&format!("{}{}{}", item("one"), item("two"), item("three")));
        let cut = &cut[..cut.find("three").unwrap()];
        assert_eq!(titles(&read(cut.as_bytes(), None)), ["one", "two"]);
    }

    #[test]
    fn json_feeds_pass_through() {
        assert_eq!(
            text(b"\xef\xbb\xbf  {\"version\": \"https://jsonfeed.org/version/1\"}", None),
            "{\"version\": \"https://jsonfeed.org/version/1\"}"
        );
    }
}
