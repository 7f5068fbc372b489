//! Plain HTML-to-text: a single forward pass of a small, allocation-light tokenizer.
//!
//! ```text
//! &str ──► tokenizer ──► text run ──► entity decoding ──► whitespace collapsing ──► Out (lines)
//!             │                                                                     ▲
//!             ├──► start/end tag ──► open-element stack ──► block / cell / pre ─────┤
//!             │                            │                (line breaks, tabs)     │
//!             │                            ├──► <nav>, <svg>, ... open: drop text   │
//!             │                            └──► <aside>, <form> end: keep or undo ──┘
//!             ├──► <script>, <style>, <title>, ... ──► jump to the end tag (raw text)
//!             └──► comment, CDATA, doctype, <?...> ──► dropped
//! ```
//!
//! The tokenizer follows the WHATWG tokenizer where it matters for text
//! (tag and attribute syntax with quotes, comments, raw-text and script-data
//! states, the legacy rules for character references). It builds no tree,
//! only a bounded stack of the open elements' names with the WHATWG rules
//! that matter for ending elements (implied end tags of `p`, `li`, table
//! parts, ...; an end tag closes the elements opened after its own, within
//! its scope), so that an unclosed `<nav>` ends where a browser ends it.
//! Every step moves forward through the input and searches of the stack are
//! bounded, so the time is linear in the input's length whatever the markup.

use super::charset::{find_byte, find_end_tag_start, find_sub};

/// A `<form>` whose text is longer than this is kept: some sites (ASP.NET
/// WebForms) wrap the whole page in one form.
const FORM_KEEP_BYTES: usize = 1000;

/// Options of the plain extractor.
#[derive(Debug, Clone, Default)]
pub struct TextOptions {
    /// Emit the text of `<title>` as a line of its own (default `false`).
    pub keep_title: bool,
}

/// Plain HTML to text (not main-content extraction).
///
/// * Dropped: `<script>`, `<style>`, `<noscript>`, `<template>`, `<svg>`,
///   `<math>`, the contents of `<head>` (except `<title>` when
///   [`TextOptions::keep_title`]), comments, CDATA, and the contents of
///   `<nav>`, `<footer>`, `<button>`, `<select>`, `<textarea>`,
///   `<iframe>`, `<object>`, `<audio>`, `<video>`, `<canvas>`, `<noembed>`,
///   `<noframes>`, `<datalist>`; and the contents of `<aside>` and `<form>`
///   unless they hold the document's first `<h1>` or a `<main>` (sites that
///   wrap the article in them), or, for a form, more than 1000 bytes of text
///   (page-wrapping ASP.NET forms).
/// * Block-level elements (`p`, `div`, `h1`-`h6`, `li`, `tr`, `br`, `hr`,
///   `section`, `article`, `blockquote`, `pre`, `dt`, `dd`, ...) end the line;
///   table cells (`td`, `th`) on one line are separated by a tab; inline
///   elements join their text without a break.
/// * Character references (named, decimal, hex, and the legacy named ones
///   without `;` such as `&copy`) are decoded; numeric references to C1
///   controls map to windows-1252 as in browsers.
/// * Runs of whitespace inside a line (ASCII whitespace, Unicode `White_Space`
///   such as U+00A0 and U+3000, control characters) become one space; lines are
///   trimmed; empty lines are dropped; lines are separated by one `\n`. Inside
///   `<pre>` the line structure and the indentation are kept, with at most one
///   empty line in a row.
/// * The result has no leading or trailing whitespace.
///
/// Never panics, and runs in time linear in `html.len()`, whatever the markup
/// (unclosed tags, `<` in text, broken comments, quoted `>` in attributes).
pub fn html_to_text(html: &str, options: &TextOptions) -> String {
    let mut extractor = Extractor {
        b: html.as_bytes(),
        keep_title: options.keep_title,
        out: Out::with_capacity(html.len() / 4),
        open: Vec::new(),
        skip: None,
        in_head: false,
        pre_depth: 0,
        pre_newline_at: usize::MAX,
        provisional: Vec::new(),
        h1_seen: false,
    };
    extractor.run();
    extractor.out.finish()
}

/// What a tag does to the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// No effect (`span`, `a`, `b`, unknown and custom elements).
    Inline,
    /// Ends the line at the start and the end tag.
    Block,
    /// `td`, `th`: a tab before the next text on the same line.
    Cell,
    /// `pre`, `listing`: a block that keeps its line structure.
    Pre,
    /// `head`: contents dropped until a tag that cannot be in the head.
    Head,
    /// `body`, `html`: leave the head; their end tags close every open element.
    Body,
    /// `title`: escapable raw text, kept as a line when asked for.
    Title,
    /// Raw text whose content is dropped (`script`, `style`, ...).
    RawDrop(Sep),
    /// `xmp`: raw text kept as preformatted text.
    RawKeep,
    /// `plaintext`: the rest of the document is kept as preformatted text.
    Plaintext,
    /// An element whose whole content is dropped.
    Drop(Dropped),
    /// `aside`, `form`: dropped when they end, unless they turned out to
    /// hold the main content.
    Provisional(Provisional),
}

/// The separation a dropped element leaves in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sep {
    None,
    Space,
    Block,
}

/// Elements whose content is dropped while they are open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dropped {
    Svg,
    Math,
    Template,
    Object,
    Nav,
    Footer,
    Button,
    Select,
    Audio,
    Video,
    Canvas,
    Datalist,
}

impl Dropped {
    fn sep(self) -> Sep {
        match self {
            Dropped::Nav | Dropped::Footer => Sep::Block,
            Dropped::Template | Dropped::Datalist => Sep::None,
            _ => Sep::Space,
        }
    }
}

/// Elements whose text is dropped when they end, unless they turned out to
/// hold the main content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Provisional {
    Aside,
    Form,
}

/// An open provisional element.
#[derive(Debug, Clone, Copy)]
struct Pending {
    element: Provisional,
    /// Its index in the open elements.
    index: usize,
    /// The output where it began.
    mark: Mark,
    /// It holds the document's first `<h1>`, or a `<main>`.
    keep: bool,
}

/// What a tag (lower-case name) does to the text.
fn classify(name: &[u8]) -> Kind {
    match name {
        b"p" | b"div" | b"br" | b"li" | b"tr" | b"h1" | b"h2" | b"h3" | b"h4" | b"h5" | b"h6" | b"ul" | b"ol"
        | b"dl" | b"dt" | b"dd" | b"hr" | b"table" | b"tbody" | b"thead" | b"tfoot" | b"caption" | b"section"
        | b"article" | b"header" | b"main" | b"blockquote" | b"figure" | b"figcaption" | b"address" | b"center"
        | b"details" | b"summary" | b"dialog" | b"dir" | b"menu" | b"fieldset" | b"legend" | b"hgroup" | b"search"
        | b"frameset" | b"frame" | b"option" | b"optgroup" => Kind::Block,
        b"td" | b"th" => Kind::Cell,
        b"pre" | b"listing" => Kind::Pre,
        b"head" => Kind::Head,
        b"body" | b"html" => Kind::Body,
        b"title" => Kind::Title,
        b"script" | b"style" => Kind::RawDrop(Sep::None),
        b"noembed" | b"noframes" => Kind::RawDrop(Sep::None),
        b"noscript" => Kind::RawDrop(Sep::Space),
        b"iframe" | b"textarea" => Kind::RawDrop(Sep::Space),
        b"xmp" => Kind::RawKeep,
        b"plaintext" => Kind::Plaintext,
        b"svg" => Kind::Drop(Dropped::Svg),
        b"math" => Kind::Drop(Dropped::Math),
        b"template" => Kind::Drop(Dropped::Template),
        b"object" => Kind::Drop(Dropped::Object),
        b"nav" => Kind::Drop(Dropped::Nav),
        b"footer" => Kind::Drop(Dropped::Footer),
        b"aside" => Kind::Provisional(Provisional::Aside),
        b"button" => Kind::Drop(Dropped::Button),
        b"select" => Kind::Drop(Dropped::Select),
        b"audio" => Kind::Drop(Dropped::Audio),
        b"video" => Kind::Drop(Dropped::Video),
        b"canvas" => Kind::Drop(Dropped::Canvas),
        b"datalist" => Kind::Drop(Dropped::Datalist),
        b"form" => Kind::Provisional(Provisional::Form),
        _ => Kind::Inline,
    }
}

/// Start tags that may appear in `<head>`; any other one ends it.
fn allowed_in_head(name: &[u8]) -> bool {
    [
        &b"meta"[..],
        b"link",
        b"title",
        b"style",
        b"script",
        b"noscript",
        b"base",
        b"template",
        b"basefont",
        b"bgsound",
        b"head",
        b"html",
    ]
    .iter()
    .any(|t| name.eq_ignore_ascii_case(t))
}

/// Open elements the extractor tracks at most (deeper ones are not tracked).
const MAX_OPEN: usize = 1024;
/// Open elements an end tag, or a start tag that closes others, looks through at most.
pub(crate) const SEARCH_LIMIT: usize = 256;

/// FNV-1a of the ASCII-lower-cased name: tag names compared as one integer.
pub(crate) const fn name_key(name: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < name.len() {
        h ^= name[i].to_ascii_lowercase() as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    h
}

const K_A: u64 = name_key(b"a");
const K_ADDRESS: u64 = name_key(b"address");
const K_BUTTON: u64 = name_key(b"button");
const K_DD: u64 = name_key(b"dd");
const K_DIV: u64 = name_key(b"div");
const K_DT: u64 = name_key(b"dt");
const K_HTML: u64 = name_key(b"html");
const K_LI: u64 = name_key(b"li");
const K_OPTGROUP: u64 = name_key(b"optgroup");
const K_OPTION: u64 = name_key(b"option");
const K_P: u64 = name_key(b"p");
const K_SELECT: u64 = name_key(b"select");
const K_TABLE: u64 = name_key(b"table");
const K_TBODY: u64 = name_key(b"tbody");
const K_TD: u64 = name_key(b"td");
const K_TEMPLATE: u64 = name_key(b"template");
const K_TFOOT: u64 = name_key(b"tfoot");
const K_TH: u64 = name_key(b"th");
const K_THEAD: u64 = name_key(b"thead");
const K_TR: u64 = name_key(b"tr");
const K_HEADINGS: [u64; 6] =
    [name_key(b"h1"), name_key(b"h2"), name_key(b"h3"), name_key(b"h4"), name_key(b"h5"), name_key(b"h6")];

/// A tag name, lower-cased when it is at most 16 bytes long (longer names
/// are unknown elements, compared by key only).
struct TagName {
    lower: [u8; 16],
    len: usize,
    key: u64,
}

impl TagName {
    fn new(raw: &[u8]) -> Self {
        let mut lower = [0u8; 16];
        let len = match lower.get_mut(..raw.len()) {
            Some(dst) => {
                dst.copy_from_slice(raw);
                dst.make_ascii_lowercase();
                raw.len()
            }
            None => 0,
        };
        TagName { lower, len, key: name_key(raw) }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.lower[..self.len]
    }
}

/// WHATWG's "special" elements: an end tag of an ordinary element does not
/// close them, and they stop the search for one.
pub(crate) fn is_special(name: &[u8]) -> bool {
    matches!(
        name,
        b"address"
            | b"applet"
            | b"area"
            | b"article"
            | b"aside"
            | b"base"
            | b"basefont"
            | b"bgsound"
            | b"blockquote"
            | b"body"
            | b"br"
            | b"button"
            | b"caption"
            | b"center"
            | b"col"
            | b"colgroup"
            | b"dd"
            | b"details"
            | b"dialog"
            | b"dir"
            | b"div"
            | b"dl"
            | b"dt"
            | b"embed"
            | b"fieldset"
            | b"figcaption"
            | b"figure"
            | b"footer"
            | b"form"
            | b"frame"
            | b"frameset"
            | b"h1"
            | b"h2"
            | b"h3"
            | b"h4"
            | b"h5"
            | b"h6"
            | b"head"
            | b"header"
            | b"hgroup"
            | b"hr"
            | b"html"
            | b"iframe"
            | b"img"
            | b"input"
            | b"keygen"
            | b"li"
            | b"link"
            | b"listing"
            | b"main"
            | b"marquee"
            | b"menu"
            | b"meta"
            | b"nav"
            | b"noembed"
            | b"noframes"
            | b"noscript"
            | b"object"
            | b"ol"
            | b"p"
            | b"param"
            | b"plaintext"
            | b"pre"
            | b"script"
            | b"search"
            | b"section"
            | b"select"
            | b"source"
            | b"style"
            | b"summary"
            | b"table"
            | b"tbody"
            | b"td"
            | b"template"
            | b"textarea"
            | b"tfoot"
            | b"th"
            | b"thead"
            | b"title"
            | b"tr"
            | b"track"
            | b"ul"
            | b"wbr"
            | b"xmp"
    )
}

/// Elements that bound the scope in which an end tag looks for its element.
pub(crate) fn is_scope_boundary(name: &[u8]) -> bool {
    matches!(name, b"applet" | b"caption" | b"html" | b"table" | b"td" | b"th" | b"marquee" | b"object" | b"template")
}

pub(crate) fn is_void(name: &[u8]) -> bool {
    matches!(
        name,
        b"area"
            | b"base"
            | b"basefont"
            | b"bgsound"
            | b"br"
            | b"col"
            | b"embed"
            | b"frame"
            | b"hr"
            | b"image"
            | b"img"
            | b"input"
            | b"keygen"
            | b"link"
            | b"meta"
            | b"param"
            | b"source"
            | b"track"
            | b"wbr"
    )
}

/// Start tags that close an open `<p>` first.
pub(crate) fn closes_p(name: &[u8]) -> bool {
    matches!(
        name,
        b"address"
            | b"article"
            | b"aside"
            | b"blockquote"
            | b"center"
            | b"details"
            | b"dialog"
            | b"dir"
            | b"div"
            | b"dl"
            | b"fieldset"
            | b"figcaption"
            | b"figure"
            | b"footer"
            | b"header"
            | b"hgroup"
            | b"main"
            | b"menu"
            | b"nav"
            | b"ol"
            | b"p"
            | b"search"
            | b"section"
            | b"summary"
            | b"ul"
            | b"h1"
            | b"h2"
            | b"h3"
            | b"h4"
            | b"h5"
            | b"h6"
            | b"pre"
            | b"listing"
            | b"form"
            | b"li"
            | b"dd"
            | b"dt"
            | b"plaintext"
            | b"table"
            | b"hr"
            | b"xmp"
    )
}

/// An element on the stack of open elements.
#[derive(Debug, Clone, Copy)]
struct Open {
    key: u64,
    special: bool,
    boundary: bool,
    pre: bool,
}

struct Extractor<'a> {
    b: &'a [u8],
    keep_title: bool,
    out: Out,
    /// The open elements (html, head and body excepted), as a browser would
    /// have them, approximately: implied end tags of `p`, `li`, `dd`, `dt`,
    /// `option`, table parts, `a`, `button` and `select`, and end tags that
    /// close the elements above theirs.
    open: Vec<Open>,
    /// The element whose content is being dropped, and its index in `open`.
    skip: Option<(Dropped, usize)>,
    in_head: bool,
    /// Open `<pre>` and `<listing>` elements.
    pre_depth: u32,
    /// Position right after a `<pre>` start tag: a newline there is ignored.
    pre_newline_at: usize,
    /// The open `<aside>` and `<form>` elements whose text is in the output
    /// until they end and are judged.
    provisional: Vec<Pending>,
    /// An `<h1>` has been seen (in dropped elements too).
    h1_seen: bool,
}

impl Extractor<'_> {
    fn run(&mut self) {
        let n = self.b.len();
        let mut pos = 0;
        while pos < n {
            let lt = find_byte(self.b, pos, b'<').unwrap_or(n);
            if lt > pos {
                self.text(pos, lt);
            }
            if lt >= n {
                break;
            }
            pos = self.markup(lt);
        }
    }

    fn emitting(&self) -> bool {
        self.skip.is_none() && !self.in_head
    }

    fn text(&mut self, start: usize, end: usize) {
        if self.skip.is_some() {
            return;
        }
        let mut s = &self.b[start..end];
        if self.in_head {
            // Text other than whitespace ends the head, as in browsers.
            if s.iter().all(u8::is_ascii_whitespace) {
                return;
            }
            self.in_head = false;
        }
        if start == self.pre_newline_at {
            s = s.strip_prefix(b"\r\n").or_else(|| s.strip_prefix(b"\n")).unwrap_or(s);
        }
        self.out.text(s, self.pre_depth > 0, true);
    }

    /// Handles the markup starting with the `<` at `lt`; returns where the text goes on.
    fn markup(&mut self, lt: usize) -> usize {
        let b = self.b;
        let n = b.len();
        match b.get(lt + 1) {
            Some(b'!') => {
                if b.get(lt + 2..lt + 4) == Some(b"--") {
                    comment_end(b, lt + 4)
                } else if b.get(lt + 2..lt + 9) == Some(b"[CDATA[") {
                    // Outside SVG and MathML an unterminated CDATA section is a bogus comment.
                    find_sub(b, lt + 9, b"]]>")
                        .map(|p| p + 3)
                        .or_else(|| find_byte(b, lt + 9, b'>').map(|p| p + 1))
                        .unwrap_or(n)
                } else {
                    find_byte(b, lt + 2, b'>').map_or(n, |p| p + 1)
                }
            }
            Some(b'?') => find_byte(b, lt + 2, b'>').map_or(n, |p| p + 1),
            Some(b'/') => match b.get(lt + 2) {
                Some(c) if c.is_ascii_alphabetic() => {
                    let name_end = tag_name_end(b, lt + 2);
                    match tag_end(b, name_end) {
                        Some((after, _)) => {
                            self.end_tag(&b[lt + 2..name_end]);
                            after
                        }
                        // End of input inside a tag: the tag is dropped.
                        None => n,
                    }
                }
                Some(b'>') => lt + 3,
                Some(_) => find_byte(b, lt + 2, b'>').map_or(n, |p| p + 1),
                None => {
                    self.text(lt, n);
                    n
                }
            },
            Some(c) if c.is_ascii_alphabetic() => {
                let name_end = tag_name_end(b, lt + 1);
                match tag_end(b, name_end) {
                    Some((after, self_closing)) => self.start_tag(&b[lt + 1..name_end], self_closing, after),
                    None => n,
                }
            }
            _ => {
                self.text(lt, lt + 1);
                lt + 1
            }
        }
    }

    /// Applies a start tag that ends at `after`; returns where the text goes on.
    fn start_tag(&mut self, raw_name: &[u8], self_closing: bool, after: usize) -> usize {
        let name = TagName::new(raw_name);
        let lower = name.as_bytes();
        let kind = classify(lower);
        if self.in_head && !allowed_in_head(lower) {
            self.in_head = false;
        }
        match kind {
            Kind::Title | Kind::RawDrop(_) | Kind::RawKeep => {
                return self.raw_text(raw_name, kind, after);
            }
            Kind::Plaintext => {
                if self.emitting() {
                    self.out.block();
                    self.out.text(&self.b[after..], true, false);
                }
                return self.b.len();
            }
            _ => {}
        }
        self.close_implied(&name);
        // A <form> inside a form is ignored, as in browsers.
        let nested_form = kind == Kind::Provisional(Provisional::Form)
            && self.provisional.iter().any(|p| p.element == Provisional::Form);
        let index = if self_closing || is_void(lower) || nested_form || matches!(kind, Kind::Head | Kind::Body) {
            None
        } else {
            self.push(&name, kind == Kind::Pre)
        };
        let main_heading = lower == b"h1" && !self.h1_seen;
        self.h1_seen |= lower == b"h1";
        if self.skip.is_some() {
            return after;
        }
        if main_heading || lower == b"main" {
            // The main content is inside the open <aside> or <form> elements.
            for pending in &mut self.provisional {
                pending.keep = true;
            }
        }
        match kind {
            Kind::Head => {
                if self.out.is_empty() {
                    self.in_head = true;
                }
            }
            Kind::Body => self.in_head = false,
            Kind::Block => self.out.block(),
            Kind::Cell => self.out.cell(),
            Kind::Pre => {
                self.out.block();
                self.pre_newline_at = after;
            }
            Kind::Drop(element) => {
                self.separate(element.sep());
                if let Some(index) = index {
                    self.skip = Some((element, index));
                }
            }
            Kind::Provisional(element) => {
                self.out.block();
                if let (Some(index), false) = (index, self.in_head) {
                    self.provisional.push(Pending { element, index, mark: self.out.mark(), keep: false });
                }
            }
            Kind::Inline | Kind::Title | Kind::RawDrop(_) | Kind::RawKeep | Kind::Plaintext => {}
        }
        after
    }

    /// A raw-text element (`script`, `style`, `title`, ...) whose content
    /// starts at `after`; returns the position after its end tag.
    fn raw_text(&mut self, name: &[u8], kind: Kind, after: usize) -> usize {
        let n = self.b.len();
        let content_end = if name.eq_ignore_ascii_case(b"script") {
            script_end(self.b, after)
        } else {
            find_end_tag_start(self.b, after, name)
        }
        .unwrap_or(n);
        let resume = tag_end(self.b, (content_end + 2 + name.len()).min(n)).map_or(n, |(end, _)| end);
        if self.skip.is_some() {
            return resume;
        }
        let content = &self.b[after..content_end];
        match kind {
            Kind::Title if self.keep_title => {
                self.out.block();
                self.out.text(content, false, true);
                self.out.block();
            }
            Kind::RawKeep if !self.in_head => {
                self.out.block();
                self.out.text(content, true, false);
                self.out.block();
            }
            Kind::RawDrop(sep) => self.separate(sep),
            _ => {}
        }
        resume
    }

    fn end_tag(&mut self, raw_name: &[u8]) {
        let name = TagName::new(raw_name);
        let lower = name.as_bytes();
        let kind = classify(lower);
        match kind {
            Kind::Head => {
                self.in_head = false;
                return;
            }
            Kind::Body => {
                // </body> and </html> close every open element.
                self.in_head = false;
                self.pop_to(0);
                return;
            }
            _ => {}
        }
        if let Some(index) = self.find_open(&name) {
            self.pop_to(index);
        }
        if self.skip.is_some() {
            return;
        }
        match kind {
            Kind::Block | Kind::Pre | Kind::Provisional(_) => self.out.block(),
            Kind::Inline
            | Kind::Cell
            | Kind::Head
            | Kind::Body
            | Kind::Title
            | Kind::RawDrop(_)
            | Kind::RawKeep
            | Kind::Plaintext
            | Kind::Drop(_) => {}
        }
    }

    fn push(&mut self, name: &TagName, pre: bool) -> Option<usize> {
        if self.open.len() >= MAX_OPEN {
            return None;
        }
        let lower = name.as_bytes();
        self.open.push(Open { key: name.key, special: is_special(lower), boundary: is_scope_boundary(lower), pre });
        if pre {
            self.pre_depth += 1;
        }
        Some(self.open.len() - 1)
    }

    /// Closes the element at `index` and every element opened after it, and
    /// ends what they held open: a dropped element, an `<aside>` or a `<form>`, a `<pre>`.
    fn pop_to(&mut self, index: usize) {
        let popped_pre = self.open.get(index..).map_or(0, |popped| popped.iter().filter(|e| e.pre).count());
        self.pre_depth = self.pre_depth.saturating_sub(u32::try_from(popped_pre).unwrap_or(u32::MAX));
        self.open.truncate(index);
        if let Some((element, root)) = self.skip {
            if root >= index {
                self.skip = None;
                self.separate(element.sep());
            }
        }
        while self.provisional.last().is_some_and(|p| p.index >= index) {
            let Some(pending) = self.provisional.pop() else {
                break;
            };
            let long_form = pending.element == Provisional::Form
                && self.out.len().saturating_sub(pending.mark.len) > FORM_KEEP_BYTES;
            if !pending.keep && !long_form {
                self.out.reset(pending.mark);
            }
            self.out.block();
        }
    }

    /// The index of the open element that an end tag closes, if any: the
    /// nearest one of the same name within the tag's scope.
    fn find_open(&self, name: &TagName) -> Option<usize> {
        let lower = name.as_bytes();
        let table_part = matches!(lower, b"table" | b"tbody" | b"thead" | b"tfoot" | b"tr");
        let special = is_special(lower);
        let stops = |e: &Open| {
            if table_part {
                matches!(e.key, K_TABLE | K_TEMPLATE | K_HTML)
            } else if special {
                e.boundary
            } else {
                e.special
            }
        };
        self.search(|e| e.key == name.key, stops)
    }

    /// Searches the open elements from the newest for one that matches
    /// `target`, giving up at one that matches `stop` or after `SEARCH_LIMIT`.
    fn search(&self, target: impl Fn(&Open) -> bool, stop: impl Fn(&Open) -> bool) -> Option<usize> {
        for (index, e) in self.open.iter().enumerate().rev().take(SEARCH_LIMIT) {
            if target(e) {
                return Some(index);
            }
            if stop(e) {
                return None;
            }
        }
        None
    }

    /// The end tags a start tag implies (WHATWG tree construction, simplified):
    /// `<p>` before a block, `<li>`, `<dd>`/`<dt>`, `<option>`, table parts,
    /// headings, `<a>`, `<button>`, `<select>`.
    fn close_implied(&mut self, name: &TagName) {
        let lower = name.as_bytes();
        if closes_p(lower) {
            if let Some(index) = self.search(|e| e.key == K_P, |e| e.special) {
                self.pop_to(index);
            }
        }
        let not_address_div_p = |e: &Open| e.special && !matches!(e.key, K_ADDRESS | K_DIV | K_P);
        let table_section = |e: &Open| matches!(e.key, K_TABLE | K_TBODY | K_THEAD | K_TFOOT | K_TEMPLATE | K_HTML);
        let found = match lower {
            b"li" => self.search(|e| e.key == K_LI, not_address_div_p),
            b"dd" | b"dt" => self.search(|e| matches!(e.key, K_DD | K_DT), not_address_div_p),
            b"a" => self.search(|e| e.key == K_A, |e| e.special),
            b"button" => self.search(|e| e.key == K_BUTTON, |e| e.boundary),
            b"select" => self.search(|e| e.key == K_SELECT, |e| e.boundary),
            b"td" | b"th" => self.search(|e| matches!(e.key, K_TD | K_TH), |e| e.key == K_TR || table_section(e)),
            b"tr" => self.search(|e| e.key == K_TR, table_section),
            b"tbody" | b"thead" | b"tfoot" => self.search(
                |e| matches!(e.key, K_TBODY | K_THEAD | K_TFOOT),
                |e| matches!(e.key, K_TABLE | K_TEMPLATE | K_HTML),
            ),
            b"option" => self.search(|e| e.key == K_OPTION, |_| true),
            b"optgroup" => self.search(|e| matches!(e.key, K_OPTION | K_OPTGROUP), |e| e.key != K_OPTION),
            b"h1" | b"h2" | b"h3" | b"h4" | b"h5" | b"h6" => self.search(|e| K_HEADINGS.contains(&e.key), |_| true),
            _ => None,
        };
        if let Some(index) = found {
            self.pop_to(index);
        }
    }

    fn separate(&mut self, sep: Sep) {
        if !self.emitting() {
            return;
        }
        match sep {
            Sep::None => {}
            Sep::Space => self.out.space(),
            Sep::Block => self.out.block(),
        }
    }
}

/// The position of the `</script` that ends a script whose content starts at
/// `from`, following the WHATWG script-data states: inside `<!-- ... -->`, a
/// `<script>` ... `</script>` pair (as in `document.write("<script>...</script>")`)
/// does not end the script.
pub(crate) fn script_end(b: &[u8], from: usize) -> Option<usize> {
    #[derive(PartialEq)]
    enum State {
        Data,
        Escaped,
        DoubleEscaped,
    }
    let tag_at = |i: usize, prefix: &[u8]| -> bool {
        let end = i + prefix.len() + 6;
        b.get(i..i + prefix.len()) == Some(prefix)
            && b.get(i + prefix.len()..end).is_some_and(|name| name.eq_ignore_ascii_case(b"script"))
            && b.get(end).is_none_or(|&c| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0C' | b'/' | b'>'))
    };
    let mut state = State::Data;
    let mut i = from;
    loop {
        if state == State::Data {
            i = find_byte(b, i, b'<')?;
            if tag_at(i, b"</") {
                return Some(i);
            }
            if b.get(i..i + 4) == Some(b"<!--") {
                state = State::Escaped;
                i += 2; // "<!-->" closes again at once
            } else {
                i += 1;
            }
            continue;
        }
        match b.get(i)? {
            b'-' if b.get(i..i + 3) == Some(b"-->") => {
                state = State::Data;
                i += 3;
            }
            b'<' if tag_at(i, b"</") => {
                if state == State::Escaped {
                    return Some(i);
                }
                state = State::Escaped;
                i += 8;
            }
            b'<' if state == State::Escaped && tag_at(i, b"<") => {
                state = State::DoubleEscaped;
                i += 7;
            }
            _ => i += 1,
        }
    }
}

/// The end of a tag name starting at `i`.
pub(crate) fn tag_name_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && !matches!(b[i], b' ' | b'\t' | b'\n' | b'\r' | b'\x0C' | b'/' | b'>') {
        i += 1;
    }
    i
}

/// Skips the attributes of a tag whose name ends at `i` (honouring quoted
/// values, which may contain `>`); returns the position after the closing `>`
/// and whether the tag ends with `/>`, or `None` when the input ends first.
fn tag_end(b: &[u8], mut i: usize) -> Option<(usize, bool)> {
    let n = b.len();
    loop {
        while i < n && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r' | b'\x0C') {
            i += 1;
        }
        match b.get(i) {
            None => return None,
            Some(b'>') => return Some((i + 1, false)),
            Some(b'/') => {
                if b.get(i + 1) == Some(&b'>') {
                    return Some((i + 2, true));
                }
                i += 1;
                continue;
            }
            Some(_) => {}
        }
        // Attribute name (its first character may be anything, even '=' or a quote).
        i += 1;
        while i < n && !matches!(b[i], b' ' | b'\t' | b'\n' | b'\r' | b'\x0C' | b'/' | b'>' | b'=') {
            i += 1;
        }
        while i < n && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r' | b'\x0C') {
            i += 1;
        }
        if b.get(i) != Some(&b'=') {
            continue;
        }
        i += 1;
        while i < n && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r' | b'\x0C') {
            i += 1;
        }
        match b.get(i) {
            Some(&q) if q == b'"' || q == b'\'' => i = find_byte(b, i + 1, q)? + 1,
            _ => {
                while i < n && !matches!(b[i], b' ' | b'\t' | b'\n' | b'\r' | b'\x0C' | b'>') {
                    i += 1;
                }
            }
        }
    }
}

/// The end of a comment whose text starts at `start` (after `<!--`): after
/// `-->` or `--!>`; `<!-->` and `<!--->` are empty comments; an unclosed
/// comment runs to the end of the input.
pub(crate) fn comment_end(b: &[u8], start: usize) -> usize {
    if b.get(start) == Some(&b'>') {
        return start + 1;
    }
    if b.get(start..start + 2) == Some(b"->") {
        return start + 2;
    }
    let mut from = start;
    while let Some(gt) = find_byte(b, from, b'>') {
        if gt >= start + 2 && &b[gt - 2..gt] == b"--" {
            return gt + 1;
        }
        if gt >= start + 3 && &b[gt - 3..gt] == b"--!" {
            return gt + 1;
        }
        from = gt + 1;
    }
    b.len()
}

/// Byte classes of text content.
const PLAIN: u8 = 0;
const SPACE: u8 = 1;
const AMP: u8 = 2;
/// Lead bytes of multi-byte characters that may be whitespace or C1 controls.
const MAYBE_SPACE: u8 = 3;
const NEWLINE: u8 = 4;
const CR: u8 = 5;

static CLASS: [u8; 256] = {
    let mut t = [PLAIN; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = SPACE;
        c += 1;
    }
    t[0x7F] = SPACE;
    t[b' ' as usize] = SPACE;
    t[b'\n' as usize] = NEWLINE;
    t[b'\r' as usize] = CR;
    t[b'&' as usize] = AMP;
    t[0xC2] = MAYBE_SPACE;
    t[0xE1] = MAYBE_SPACE;
    t[0xE2] = MAYBE_SPACE;
    t[0xE3] = MAYBE_SPACE;
    t
};

/// Length of the Unicode whitespace (`White_Space`) or C1 control character
/// starting at `i`, if there is one.
pub(crate) fn unicode_space_len(s: &[u8], i: usize) -> Option<usize> {
    let b1 = *s.get(i + 1)?;
    match s[i] {
        0xC2 if (0x80..=0xA0).contains(&b1) => Some(2), // C1 controls, U+0085, U+00A0
        0xE1 if b1 == 0x9A && s.get(i + 2) == Some(&0x80) => Some(3), // U+1680
        0xE2 => {
            let b2 = *s.get(i + 2)?;
            let space = match b1 {
                0x80 => matches!(b2, 0x80..=0x8A | 0xA8 | 0xA9 | 0xAF), // U+2000-200A, 2028, 2029, 202F
                0x81 => b2 == 0x9F,                                     // U+205F
                _ => false,
            };
            space.then_some(3)
        }
        0xE3 if b1 == 0x80 && s.get(i + 2) == Some(&0x80) => Some(3), // U+3000
        _ => None,
    }
}

/// A decoded character reference.
pub(crate) enum Decoded {
    Char(char),
    Str(&'static str),
}

/// Numeric references to C1 controls, as browsers map them (windows-1252).
const C1_REPLACEMENTS: [char; 32] = [
    '\u{20AC}', '\u{81}', '\u{201A}', '\u{192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}', '\u{2C6}', '\u{2030}',
    '\u{160}', '\u{2039}', '\u{152}', '\u{8D}', '\u{17D}', '\u{8F}', '\u{90}', '\u{2018}', '\u{2019}', '\u{201C}',
    '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}', '\u{2DC}', '\u{2122}', '\u{161}', '\u{203A}', '\u{153}', '\u{9D}',
    '\u{17E}', '\u{178}',
];

/// Named references that browsers also decode without the `;` (sorted).
const LEGACY_NAMES: [&[u8]; 106] = [
    b"AElig", b"AMP", b"Aacute", b"Acirc", b"Agrave", b"Aring", b"Atilde", b"Auml", b"COPY", b"Ccedil", b"ETH",
    b"Eacute", b"Ecirc", b"Egrave", b"Euml", b"GT", b"Iacute", b"Icirc", b"Igrave", b"Iuml", b"LT", b"Ntilde",
    b"Oacute", b"Ocirc", b"Ograve", b"Oslash", b"Otilde", b"Ouml", b"QUOT", b"REG", b"THORN", b"Uacute", b"Ucirc",
    b"Ugrave", b"Uuml", b"Yacute", b"aacute", b"acirc", b"acute", b"aelig", b"agrave", b"amp", b"aring", b"atilde",
    b"auml", b"brvbar", b"ccedil", b"cedil", b"cent", b"copy", b"curren", b"deg", b"divide", b"eacute", b"ecirc",
    b"egrave", b"eth", b"euml", b"frac12", b"frac14", b"frac34", b"gt", b"iacute", b"icirc", b"iexcl", b"igrave",
    b"iquest", b"iuml", b"laquo", b"lt", b"macr", b"micro", b"middot", b"nbsp", b"not", b"ntilde", b"oacute", b"ocirc",
    b"ograve", b"ordf", b"ordm", b"oslash", b"otilde", b"ouml", b"para", b"plusmn", b"pound", b"quot", b"raquo",
    b"reg", b"sect", b"shy", b"sup1", b"sup2", b"sup3", b"szlig", b"thorn", b"times", b"uacute", b"ucirc", b"ugrave",
    b"uml", b"uuml", b"yacute", b"yen", b"yuml",
];

/// The longest entity name is 31 bytes (`CounterClockwiseContourIntegral`).
const MAX_ENTITY_NAME: usize = 32;

fn named_entity(name: &[u8]) -> Option<&'static str> {
    let common = match name {
        b"amp" => Some("&"),
        b"lt" => Some("<"),
        b"gt" => Some(">"),
        b"quot" => Some("\""),
        b"apos" => Some("'"),
        b"nbsp" => Some("\u{A0}"),
        _ => None,
    };
    common.or_else(|| {
        let table = &html_escape::NAMED_ENTITIES;
        table.binary_search_by(|(key, _)| (*key).cmp(name)).ok().map(|i| table[i].1)
    })
}

/// Decodes the character reference starting with the `&` at `amp`; returns
/// the value and the length of the reference, or `None` when the `&` is text.
pub(crate) fn decode_reference(s: &[u8], amp: usize) -> Option<(Decoded, usize)> {
    let rest = s.get(amp + 1..)?;
    if rest.first() == Some(&b'#') {
        let hex = matches!(rest.get(1), Some(b'x' | b'X'));
        let digits_start = if hex { 2 } else { 1 };
        let mut value: u32 = 0;
        let mut j = digits_start;
        while let Some(digit) = rest.get(j).and_then(|&c| char::from(c).to_digit(if hex { 16 } else { 10 })) {
            value = value.saturating_mul(if hex { 16 } else { 10 }).saturating_add(digit).min(0x11_0000);
            j += 1;
        }
        if j == digits_start {
            return None;
        }
        let len = if rest.get(j) == Some(&b';') { j + 1 } else { j };
        let c = match value {
            0 => '\u{FFFD}',
            0x80..=0x9F => C1_REPLACEMENTS[(value - 0x80) as usize],
            _ => char::from_u32(value).unwrap_or('\u{FFFD}'),
        };
        return Some((Decoded::Char(c), len + 1));
    }
    let name_len = rest.iter().take(MAX_ENTITY_NAME).take_while(|c| c.is_ascii_alphanumeric()).count();
    if name_len == 0 {
        return None;
    }
    if rest.get(name_len) == Some(&b';') {
        if let Some(value) = named_entity(&rest[..name_len]) {
            return Some((Decoded::Str(value), name_len + 2));
        }
    }
    // Legacy references without ';': the longest one that is a prefix.
    (2..=name_len.min(6)).rev().find_map(|k| {
        let prefix = &rest[..k];
        LEGACY_NAMES.binary_search(&prefix).ok()?;
        named_entity(prefix).map(|value| (Decoded::Str(value), k + 1))
    })
}

/// Where the output stood, to undo a dropped `<aside>` or `<form>`.
#[derive(Debug, Clone, Copy)]
struct Mark {
    len: usize,
    open: bool,
    brk: u8,
    space: bool,
    cell: bool,
}

/// The output: lines of text, built with pending separators that are written
/// only when more text follows (so nothing trails and nothing is empty).
struct Out {
    buf: Vec<u8>,
    /// The current line has text since the last break.
    open: bool,
    /// Newlines to write before the next text (2 only inside `<pre>`).
    brk: u8,
    /// A space to write before the next text on this line.
    space: bool,
    /// A tab (table cell) to write before the next text on this line.
    cell: bool,
    /// Inside `<pre>`: newlines since the last text.
    pre_newlines: u8,
    /// Inside `<pre>`: whitespace since the last text, written as it is.
    pre_space: Vec<u8>,
}

impl Out {
    fn with_capacity(capacity: usize) -> Self {
        Out {
            buf: Vec::with_capacity(capacity),
            open: false,
            brk: 0,
            space: false,
            cell: false,
            pre_newlines: 0,
            pre_space: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn len(&self) -> usize {
        self.buf.len()
    }

    fn mark(&self) -> Mark {
        Mark { len: self.buf.len(), open: self.open, brk: self.brk, space: self.space, cell: self.cell }
    }

    fn reset(&mut self, mark: Mark) {
        self.buf.truncate(mark.len);
        self.open = mark.open;
        self.brk = mark.brk;
        self.space = mark.space;
        self.cell = mark.cell;
        self.pre_newlines = 0;
        self.pre_space.clear();
    }

    fn block(&mut self) {
        if self.open || self.brk > 0 {
            self.brk = 1;
        }
        self.open = false;
        self.space = false;
        self.cell = false;
        self.pre_newlines = 0;
        self.pre_space.clear();
    }

    fn cell(&mut self) {
        if self.open {
            self.cell = true;
        }
    }

    fn space(&mut self) {
        self.space = true;
    }

    /// Writes the pending separators before text.
    fn flush(&mut self) {
        if !self.buf.is_empty() {
            if self.brk > 0 {
                for _ in 0..self.brk {
                    self.buf.push(b'\n');
                }
                self.buf.extend_from_slice(&self.pre_space);
            } else if self.cell {
                self.buf.push(b'\t');
            } else if !self.pre_space.is_empty() {
                self.buf.extend_from_slice(&self.pre_space);
            } else if self.space {
                self.buf.push(b' ');
            }
        }
        self.brk = 0;
        self.space = false;
        self.cell = false;
        self.pre_newlines = 0;
        self.pre_space.clear();
        self.open = true;
    }

    fn push_text(&mut self, s: &[u8]) {
        if !s.is_empty() {
            self.flush();
            self.buf.extend_from_slice(s);
        }
    }

    /// One whitespace character (`c` is the ASCII byte, or b' ' for others).
    fn whitespace(&mut self, c: u8, pre: bool) {
        if !pre {
            self.space = true;
        } else if c == b'\n' {
            if self.open {
                self.brk = 1;
                self.open = false;
                self.pre_newlines = 1;
            } else if self.pre_newlines == 1 {
                self.brk = 2;
                self.pre_newlines = 2;
            }
            self.pre_space.clear();
        } else if c != b'\r' {
            self.pre_space.push(if c == b'\t' { b'\t' } else { b' ' });
        }
    }

    /// Appends a run of text content, collapsing whitespace (or keeping the
    /// lines when `pre`) and decoding character references when `decode`.
    fn text(&mut self, s: &[u8], pre: bool, decode: bool) {
        let mut run = 0;
        let mut i = 0;
        while i < s.len() {
            let c = s[i];
            match CLASS[usize::from(c)] {
                PLAIN => i += 1,
                SPACE | NEWLINE | CR => {
                    self.push_text(&s[run..i]);
                    self.whitespace(c, pre);
                    i += 1;
                    run = i;
                }
                AMP => {
                    if !decode {
                        i += 1;
                        continue;
                    }
                    match decode_reference(s, i) {
                        Some((decoded, len)) => {
                            self.push_text(&s[run..i]);
                            self.decoded(decoded, pre);
                            i += len;
                            run = i;
                        }
                        None => i += 1,
                    }
                }
                _ => match unicode_space_len(s, i) {
                    Some(len) => {
                        self.push_text(&s[run..i]);
                        self.whitespace(b' ', pre);
                        i += len;
                        run = i;
                    }
                    None => i += 1,
                },
            }
        }
        self.push_text(&s[run..]);
    }

    fn decoded(&mut self, decoded: Decoded, pre: bool) {
        let mut utf8 = [0u8; 4];
        let s = match decoded {
            Decoded::Char(c) => &*c.encode_utf8(&mut utf8),
            Decoded::Str(s) => s,
        };
        let mut chars = s.chars();
        if chars.all(|c| c.is_whitespace() || c.is_control()) {
            let c = s.bytes().next().filter(|c| c.is_ascii_whitespace()).unwrap_or(b' ');
            self.whitespace(c, pre);
        } else {
            self.push_text(s.as_bytes());
        }
    }

    fn finish(self) -> String {
        // Every write is a whole UTF-8 sequence taken from a `&str` or a `char`,
        // so the conversion cannot fail; fall back to a lossy copy all the same.
        String::from_utf8(self.buf).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(html: &str) -> String {
        html_to_text(html, &TextOptions::default())
    }

    #[test]
    fn blocks_inline_and_whitespace() {
        assert_eq!(text("<p>Hello <b>big</b>\n  world</p><p>Second</p>"), "Hello big world\nSecond");
        assert_eq!(text("a<br>b<br/><br>c"), "a\nb\nc");
        assert_eq!(text("<div><div>  </div><p>&nbsp;</p><h1> Title </h1></div>x"), "Title\nx");
        assert_eq!(text("<span>a</span><span>b</span> <i>c</i>"), "ab c");
        assert_eq!(text("<ul><li>one<li>two</ul><dl><dt>term<dd>def</dl><hr>end"), "one\ntwo\nterm\ndef\nend");
        assert_eq!(text("  \n\t "), "");
        assert_eq!(text(""), "");
        assert_eq!(text("\u{3000}全角\u{3000}スペース\u{2003}"), "全角 スペース");
    }

    #[test]
    fn tables() {
        assert_eq!(
            text("<table><tr><th>Name</th><th>Age</th></tr>\n<tr><td>Ann</td> <td></td><td>41</td></tr></table>"),
            "Name\tAge\nAnn\t41"
        );
        assert_eq!(text("<table><tr><td><p>a</p><p>b</p></td><td>c</td></tr></table>"), "a\nb\nc");
    }

    #[test]
    fn pre_keeps_lines() {
        assert_eq!(
            text("<p>Code:</p><pre>\nfn main() {\n    println!(\"&lt;hi&gt;\");  \n\n\n}\n</pre><p>after</p>"),
            "Code:\nfn main() {\n    println!(\"<hi>\");\n\n}\nafter"
        );
        assert_eq!(text("<pre><b>a</b>  b\r\n  c</pre>"), "a  b\n  c");
    }

    #[test]
    fn dropped_elements() {
        let html = "<html><head><title>T</title><style>p{}</style><meta charset=utf-8><script>var a = '<p>no</p>';</script></head>\
            <body><nav><ul><li>Home</li></ul></nav><p>Body<script>if (a < b && c > d) {}</script> text</p>\
            <noscript>Enable JS</noscript><template><p>tpl</p></template><svg><text>svg</text></svg>\
            <math><mi>x</mi></math><form><label>Search</label><input><button>Go</button></form>\
            <aside>Related</aside><footer>(c) 2024</footer><select><option>Opt</option></select>\
            <iframe src=x>frame</iframe><object>obj</object><!-- comment --><![CDATA[cdata]]>End</body></html>";
        assert_eq!(text(html), "Body text\nEnd");
        let with_title = html_to_text(html, &TextOptions { keep_title: true });
        assert_eq!(with_title, "T\nBody text\nEnd");
    }

    #[test]
    fn nested_and_self_closing_dropped_elements() {
        assert_eq!(text("<nav><nav>a</nav>b</nav>c"), "c");
        assert_eq!(text("a<svg/>b<svg><svg/><path/></svg>c"), "a b c");
        assert_eq!(text("a<button/>b<nav/>c"), "a b\nc");
        // A second <button> closes the first one instead of nesting.
        assert_eq!(text("<button>a<button>b</button>c"), "c");
        // An unclosed dropped element ends with its parent, or with </body>.
        assert_eq!(text("<body><p>x<nav>menu</body><p>tail"), "x\ntail");
        assert_eq!(text("<div><aside>side<div>in</div><p>more</div><p>main</p>"), "main");
        assert_eq!(text("<main><aside><h1>Title</h1><p>story</main><aside>side</aside>end"), "Title\nstory\nend");
        assert_eq!(text("<aside>a<form>f<h1>T</h1></form>b</aside><aside>c<form>d</form></aside>e"), "a\nf\nT\nb\ne");
        // Only the first <h1> marks the main content.
        assert_eq!(text("<h1>Title</h1><p>story<aside><h1>Sidebar</h1>links</aside>"), "Title\nstory");
        assert_eq!(text("<div><p>a<nav>n</div>b"), "a\nb");
        assert_eq!(text("<td><aside>x</td>y"), "y");
        // ... but not with the end tag of an inline element it holds or follows.
        assert_eq!(text("<span><aside>x</span>y</aside>z"), "z");
        // A stray end tag inside does not end it early.
        assert_eq!(text("<nav><li>a</div>b</nav>c"), "c");
    }

    #[test]
    fn implied_end_tags() {
        assert_eq!(text("<ul><li>a<li>b<ul><li>c</ul><li>d</ul>e"), "a\nb\nc\nd\ne");
        assert_eq!(text("<table><tr><td>a<td>b<tr><td>c</table>d"), "a\tb\nc\nd");
        assert_eq!(text("<p>a<p>b<div>c</div>"), "a\nb\nc");
        // Implied ends keep the stack shallow: an <aside> after many unclosed <p> still ends.
        let page = format!("<div>{}<aside>x</div>end", "<p>para".repeat(2000));
        assert!(text(&page).ends_with("para\nend"));
        let page = format!("<div>{}<aside>x</div>end", "<li>item".repeat(2000));
        assert!(text(&page).ends_with("item\nend"));
    }

    #[test]
    fn long_forms_are_kept() {
        let long = "word ".repeat(300);
        let page = format!("<form id=aspnetForm><p>{long}</p><input type=submit></form><p>end</p>");
        let out = text(&page);
        assert!(out.starts_with("word word"), "{out}");
        assert!(out.ends_with("word\nend"), "{out}");
        assert_eq!(text("<p>a</p><form><p>Subscribe</p><form><p>x</p></form><p>b</p>"), "a\nb");
        // An unclosed form is kept.
        assert_eq!(text("<p>a</p><form><p>b"), "a\nb");
    }

    #[test]
    fn head_ends_implicitly() {
        assert_eq!(text("<head><meta x><title>t</title> \n<div>body text</div>"), "body text");
        assert_eq!(text("<head><meta x>stray<style>s</style>text"), "straytext");
        assert_eq!(text("<head><link rel=x></head>after"), "after");
        // A <head> after body content is ignored, as browsers do.
        assert_eq!(text("<p>a</p><head>b"), "a\nb");
    }

    #[test]
    fn character_references() {
        assert_eq!(text("&lt;p&gt; &amp;amp; &quot;q&quot; &apos;"), "<p> &amp; \"q\" '");
        assert_eq!(text("&eacute;t&eacute; &#233;&#xE9;&#XE9; &hellip;&mdash;"), "été ééé …—");
        assert_eq!(
            text("&copy2024 &notit; &amp AT&T &T; &#;&#x; &nosuch; &"),
            "©2024 ¬it; & AT&T &T; &#;&#x; &nosuch; &"
        );
        assert_eq!(
            text("&#150;&#x93;x&#x94; &#0; &#x110000; &#xD800; &#99999999999999;"),
            "–“x” \u{FFFD} \u{FFFD} \u{FFFD} \u{FFFD}"
        );
        assert_eq!(text("a&nbsp;&nbsp;b&#32;&#10;c&ThickSpace;d"), "a b c d");
        assert_eq!(text("&CounterClockwiseContourIntegral; &NotEqualTilde;"), "∳ \u{2242}\u{338}");
        // Raw-text elements are not decoded, RCDATA titles are.
        assert_eq!(text("<xmp>&amp;<b></xmp>"), "&amp;<b>");
        assert_eq!(html_to_text("<title>a &amp; b</title>", &TextOptions { keep_title: true }), "a & b");
    }

    #[test]
    fn malformed_markup() {
        assert_eq!(text("a < b and c<d e>f"), "a < b and cf");
        assert_eq!(text("1 <3 x <= y <"), "1 <3 x <= y <");
        assert_eq!(text("<p title=\"a>b\" data-x='c>d'>text</p>"), "text");
        assert_eq!(text("<p a=b c d=\"e\"/ f>x"), "x");
        assert_eq!(text("x<!-- never closed <p>y"), "x");
        assert_eq!(text("x<!-->y<!--->z<!-- a -- b --!>w"), "xyzw");
        assert_eq!(text("x<![CDATA[ y > z"), "x z");
        assert_eq!(text("x<![CDATA[ y > z ]]>w"), "xw");
        assert_eq!(text("x<!DOCTYPE html>y<?php echo 1 ?>z</>w<//x>v"), "xyzwv");
        assert_eq!(text("x<p class=\"unclosed>y"), "x");
        assert_eq!(text("x<p"), "x");
        assert_eq!(text("x</"), "x</");
        assert_eq!(text("x<script>y"), "x");
        assert_eq!(text("x<script>a</scriptx>b</script >c"), "xc");
        // document.write inside an escaped script (WHATWG script-data states).
        assert_eq!(text("x<script><!--\ndocument.write('<script src=a></script>');\n//--></script>y"), "xy");
        assert_eq!(text("x<script><!-- a </script>y"), "xy");
        assert_eq!(text("x<script><!--> </script>y"), "xy");
        assert_eq!(text("x<script><!-- <script> --> </script>y"), "xy");
        assert_eq!(text("x<script><!-- <script> </script>y"), "x");
        assert_eq!(text("x</p attr=\">\">y"), "x\ny");
        assert_eq!(text("<P>A</P><DiV>B</dIv>"), "A\nB");
        assert_eq!(text("</br>a"), "a");
    }

    #[test]
    fn no_panic_on_truncated_input() {
        let html =
            "<p>Grüße &amp; <a href='x'>élan</a>&#x4e2d;<!-- c --><pre>\n  x\n</pre>&copy<script>1</script>\u{3000}end";
        for end in (0..=html.len()).filter(|&e| html.is_char_boundary(e)) {
            let out = text(&html[..end]);
            assert_eq!(out.trim(), out);
        }
        let out = text(html);
        assert_eq!(out, "Grüße & élan中\n  x\n©\u{3000}end".replace('\u{3000}', " "));
    }

    #[test]
    fn linear_time_on_pathological_input() {
        let n = 200_000;
        for html in [
            "<".repeat(n),
            "<a ".repeat(n),
            "<a b=\"".repeat(n),
            "<!--".repeat(n),
            "&".repeat(n),
            "&#".repeat(n),
            "&amp".repeat(n),
            "</script".repeat(n),
            "<nav>".repeat(n),
            "<script><!--".repeat(n),
            "<script><!--<script>".repeat(n),
            "<script><!--<script></script>-->".repeat(n),
            "<p>".repeat(n),
            "<pre>\n\n".repeat(n),
            "<b>".repeat(n) + &"</x>".repeat(n),
            "<div><aside>".repeat(n),
            "<table><td>".repeat(n),
        ] {
            let start = std::time::Instant::now();
            let _ = text(&html);
            assert!(start.elapsed().as_secs_f64() < 5.0, "slow on {:?}...", &html[..10]);
        }
    }
}
