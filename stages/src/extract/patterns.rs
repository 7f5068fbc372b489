//! Boilerplate and content hints from attributes: `class` and `id` words,
//! `role`, inline styles that hide an element.
//!
//! The word lists follow the usual heuristics of readability's
//! "unlikely candidates", trafilatura's and jusText's boilerplate cues: they
//! name kinds of page furniture (comments, share bars, cookie banners,
//! related links, ads, navigation), never particular sites.

use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

use super::dom::flag;

/// Substrings of `class`/`id` values that mark furniture whatever else the value says.
const STRONG: &[&str] = &[
    "comment",
    "disqus",
    "respond",
    "cookie",
    "consent",
    "gdpr",
    "share",
    "sharing",
    "social",
    "related",
    "recommend",
    "newsletter",
    "subscri",
    "signup",
    "sign-up",
    "breadcrumb",
    "sidebar",
    "side-bar",
    "advert",
    "sponsor",
    "promo",
    "popup",
    "pop-up",
    "modal",
    "outbrain",
    "taboola",
    "banner",
    "skip-link",
    "skiplink",
    "trending",
    "popular",
    "top-ten",
    "topten",
    "most-read",
    "mostread",
    "next-post",
    "prev-post",
    "previous-post",
    "more-stories",
    "read-more",
    "readmore",
    "further-reading",
    "see-also",
    "toolbar",
    "login",
    "masthead",
    "copyright",
    "byline",
    "author-bio",
    "authorbio",
    "author-box",
    "authorbox",
    "author_box",
    "about-author",
    "tag-list",
    "taglist",
    "tagcloud",
    "tag-cloud",
    "post-meta",
    "entry-meta",
    "postmeta",
    "entry-footer",
    "entryfooter",
    "post-footer",
    "postfooter",
    "article-footer",
    "upsell",
    "crosssell",
    "cross-sell",
    "pagination",
    "pager",
    "navbar",
    "navigation",
    "dropdown",
    "headline-list",
    "screen-reader",
    "visually-hidden",
    "visuallyhidden",
    "sr-only",
    "print-only",
    "noprint",
];

/// Substrings that mark furniture unless a content word is there too.
const WEAK: &[&str] = &[
    "footer",
    "header",
    "menu",
    "nav",
    "meta",
    "aside",
    "caption",
    "credit",
    "rating",
    "tools",
    "links",
    "extra",
    "shoutbox",
    "sponsored",
    "date",
    "infobox",
    "categor",
    "teaser",
];

/// Substrings of content containers.
const POSITIVE: &[&str] = &[
    "article", "content", "main", "post", "entry", "story", "body", "text", "blog", "prose", "markdown", "hentry",
    "h-entry",
];

/// Words that mark furniture as the first word of a class name or id.
const STRONG_WORDS: &[&[u8]] = &[
    b"ad",
    b"ads",
    b"adv",
    b"advert",
    b"share",
    b"tags",
    b"tag",
    b"print",
    b"social",
    b"comments",
    b"author",
    b"meta",
    b"nav",
    b"menu",
    b"sidebar",
    b"footer",
    b"cta",
];

struct Matcher {
    ac: AhoCorasick,
    strong: usize,
    weak: usize,
    /// Index of the first microformat pattern (`hentry`, `h-entry`: the last ones).
    hentry: usize,
}

fn matcher() -> &'static Matcher {
    static M: OnceLock<Matcher> = OnceLock::new();
    M.get_or_init(|| {
        let patterns: Vec<&str> = STRONG.iter().chain(WEAK).chain(POSITIVE).copied().collect();
        let ac = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            // A DFA (a few hundred KB for these words): the default picks a
            // slower NFA past a hundred or so patterns.
            .kind(Some(AhoCorasickKind::DFA))
            .build(&patterns)
            .expect("valid literal patterns");
        Matcher { ac, strong: STRONG.len(), weak: WEAK.len(), hentry: patterns.len() - 2 }
    })
}

/// Flags for a `class` or `id` value.
pub(crate) fn class_id_flags(value: &[u8]) -> u16 {
    if value.is_empty() {
        return 0;
    }
    let value = &value[..value.len().min(512)];
    let m = matcher();
    let (mut strong, mut weak, mut positive) = (false, false, false);
    for found in m.ac.find_overlapping_iter(value) {
        let p = found.pattern().as_usize();
        if p >= m.hentry && (has_word(value, b"hentry") || has_word(value, b"h-entry")) {
            // The microformat of a blog entry: content, whatever its taxonomy
            // classes say (`tag-grundeinkommen`, `category-news`).
            return flag::POSITIVE;
        }
        if p < m.strong {
            strong = true;
        } else if p < m.strong + m.weak {
            weak = true;
        } else {
            positive = true;
        }
    }
    if !strong {
        // The first word of a class name (`ad-slot`, `share_bar`), or `ad` /
        // `ads` as a word further in (`it-ad-wrapper`), but not a BEM
        // modifier (`TestReport__Section--Ads`).
        strong = value.split(|c: &u8| c.is_ascii_whitespace()).any(name_is_furniture);
    }
    let mut flags = 0;
    if strong {
        flags |= flag::STRONG_NEG;
    }
    if weak && !positive {
        flags |= flag::WEAK_NEG;
    }
    if positive && !strong && !weak {
        flags |= flag::POSITIVE;
    }
    flags
}

/// Whether `word` is one of the whitespace-separated names of `value`.
fn has_word(value: &[u8], word: &[u8]) -> bool {
    value.split(|c: &u8| c.is_ascii_whitespace()).any(|name| name.eq_ignore_ascii_case(word))
}

/// Whether one class name (or id) starts with a [`STRONG_WORDS`] word or
/// has `ad`/`ads` as a later word outside a BEM modifier.
fn name_is_furniture(name: &[u8]) -> bool {
    let mut words = name.split(|c| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty());
    let Some(first) = words.next() else {
        return false;
    };
    if first.len() <= 8 && STRONG_WORDS.iter().any(|s| first.eq_ignore_ascii_case(s)) {
        return true;
    }
    if first.len() == name.len() {
        return false;
    }
    let modifier = name.windows(2).position(|w| w == b"--").unwrap_or(name.len());
    name[..modifier]
        .split(|c| !c.is_ascii_alphanumeric())
        .skip(1)
        .any(|w| w.eq_ignore_ascii_case(b"ad") || w.eq_ignore_ascii_case(b"ads"))
}

/// Flags for a `role` value.
pub(crate) fn role_flags(value: &[u8]) -> u16 {
    let v = value.trim_ascii();
    let furniture = [
        &b"navigation"[..],
        b"banner",
        b"contentinfo",
        b"complementary",
        b"search",
        b"dialog",
        b"alertdialog",
        b"menu",
        b"menubar",
        b"toolbar",
        b"tablist",
    ];
    if furniture.iter().any(|f| v.eq_ignore_ascii_case(f)) {
        flag::STRONG_NEG
    } else if v.eq_ignore_ascii_case(b"main") || v.eq_ignore_ascii_case(b"article") {
        flag::MAIN
    } else {
        0
    }
}

/// Whether an inline `style` hides the element (`display:none`, `visibility:hidden`).
pub(crate) fn style_hides(style: &[u8]) -> bool {
    if style.len() < 11 {
        return false;
    }
    let mut compact = [0u8; 256];
    let mut n = 0;
    for &c in style.iter().take(1024) {
        if c.is_ascii_whitespace() {
            continue;
        }
        if n == compact.len() {
            break;
        }
        compact[n] = c.to_ascii_lowercase();
        n += 1;
    }
    let s = &compact[..n];
    let has = |needle: &[u8]| s.windows(needle.len()).any(|w| w == needle);
    has(b"display:none") || has(b"visibility:hidden")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_words() {
        assert_eq!(class_id_flags(b"comment-list"), flag::STRONG_NEG);
        assert_eq!(class_id_flags(b"article-body"), flag::POSITIVE);
        assert_eq!(class_id_flags(b"entry-content comments-open"), flag::STRONG_NEG);
        // A weak word yields to a content word.
        assert_eq!(class_id_flags(b"post-header"), 0);
        assert_eq!(class_id_flags(b"site-header"), flag::WEAK_NEG);
        // Short words count only whole.
        assert_eq!(class_id_flags(b"ad-slot"), flag::STRONG_NEG);
        assert_eq!(class_id_flags(b"shadow loaded"), 0);
        // `ad` further in a name, but not as a BEM modifier.
        assert_eq!(class_id_flags(b"it-ad-wrapper clearfix"), flag::STRONG_NEG);
        assert_eq!(class_id_flags(b"TestReport__Section--Ads"), 0);
        assert_eq!(class_id_flags(b"download-loader"), 0);
        // Author boxes and entry footers written as one word, calls to action, upsells.
        assert_eq!(class_id_flags(b"TestReport__AuthorBox"), flag::STRONG_NEG);
        // A microformat blog entry is content despite its taxonomy classes.
        assert_eq!(class_id_flags(b"post-1481 post type-post hentry category-allgemein tag-berlin"), flag::POSITIVE);
        assert_eq!(class_id_flags(b"authorbox"), flag::STRONG_NEG);
        assert_eq!(class_id_flags(b"entryfooter"), flag::STRONG_NEG);
        assert_eq!(class_id_flags(b"cta-global"), flag::STRONG_NEG);
        assert_eq!(class_id_flags(b"box-collateral box-upsell"), flag::STRONG_NEG);
        // Next/previous post teasers and most-read lists.
        assert_eq!(class_id_flags(b"next-post-thumbnails"), flag::STRONG_NEG);
        assert_eq!(class_id_flags(b"scroller post-container top-ten shadowed"), flag::STRONG_NEG);
        assert_eq!(role_flags(b" navigation "), flag::STRONG_NEG);
        assert_eq!(role_flags(b"main"), flag::MAIN);
        assert!(style_hides(b"color:red; DISPLAY : none"));
        assert!(!style_hides(b"display:block"));
    }
}
