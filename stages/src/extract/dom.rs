//! Markup to a light arena tree of elements and a list of text blocks, in one
//! forward pass of a tokenizer (the same WHATWG-minded tokenizer helpers as
//! the plain extractor, plus attribute values).
//!
//! ```text
//! &str ──► tokenizer ──► start tag ──► close implied ──► push Open (+ Node when it matters)
//!             │                              └─► block-level: end the current block
//!             ├──► end tag ──► pop to its element (within its scope)
//!             ├──► text ──► entities, whitespace ──► current block (+ link bytes inside <a>)
//!             └──► <script>, <style>, <svg>, <button>, ... ──► skipped
//! ```
//!
//! Nodes are created in document order, so a parent's index is smaller than
//! its children's and a subtree is a contiguous range of indices: every later
//! pass is a loop over the arena, never a recursion. Elements nested deeper
//! than [`MAX_OPEN`] are not tracked (their text goes to the deepest tracked
//! element), so 100k nested `<div>`s cost memory and time linear in the input.

use std::time::Instant;

use crate::html::charset::{find_byte, find_end_tag_start, find_sub};
use crate::html::text::{
    closes_p, comment_end, decode_reference, is_scope_boundary, is_special, is_void, name_key, script_end,
    tag_name_end, unicode_space_len, Decoded, SEARCH_LIMIT,
};

use super::patterns;

/// Open elements tracked at most; deeper ones are not tracked.
pub(crate) const MAX_OPEN: usize = 2048;
/// Tags between two looks at the clock.
const CLOCK_EVERY: u32 = 512;

/// Node flags (see [`patterns`] for how attributes set them).
pub(crate) mod flag {
    /// Boilerplate by tag (`nav`, `footer`, `aside`, `form`, `header`, `figure`, ...).
    pub const TAG_BOILER: u16 = 1;
    /// Boilerplate by class/id (comments, share bars, cookie banners, ...), or by `role`.
    pub const STRONG_NEG: u16 = 2;
    /// Weakly boilerplate by class/id (`footer`, `meta`, `menu`, ...), unless also positive.
    pub const WEAK_NEG: u16 = 4;
    /// Content-like class/id (`article`, `content`, `post`, `entry`, ...).
    pub const POSITIVE: u16 = 8;
    /// Hidden (`hidden`, `aria-hidden="true"`, `display:none`, `visibility:hidden`).
    pub const HIDDEN: u16 = 16;
    /// `<article>`, `<main>`, `role="main"`, `itemprop="articleBody"`.
    pub const MAIN: u16 = 32;
    /// `<header>` (also [`TAG_BOILER`]): furniture, unless inside an article.
    pub const HEADER: u16 = 64;
}

/// What the text of a block sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Paragraphs, divs, sections: ordinary text.
    Text,
    /// `h1`-`h6`.
    Heading,
    /// `li`, `dt`, `dd`.
    Item,
    /// A table row (`tr`): cells separated by tabs.
    Row,
    /// `pre`, `listing`, `xmp`, `plaintext`: line structure kept.
    Pre,
    /// `blockquote`.
    Quote,
}

impl Role {
    /// Its name in `smelt extract --explain`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Text => "text",
            Role::Heading => "heading",
            Role::Item => "item",
            Role::Row => "row",
            Role::Pre => "pre",
            Role::Quote => "quote",
        }
    }
}

/// An element of the tree.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Node {
    /// Index of the parent node (the root is its own parent).
    pub parent: u32,
    /// [`flag`] bits.
    pub flags: u16,
}

/// A paragraph-level run of text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Block {
    /// The nearest block-level element holding it.
    pub node: u32,
    /// Byte range in [`Doc::text`].
    pub start: usize,
    pub end: usize,
    /// Bytes of its text inside `<a>` elements.
    pub link_bytes: usize,
    pub role: Role,
}

/// The parsed document.
#[derive(Debug)]
pub(crate) struct Doc {
    /// Node 0 is the document itself.
    pub nodes: Vec<Node>,
    pub blocks: Vec<Block>,
    /// The text of all blocks (UTF-8), one after the other.
    pub text: String,
    /// The first `<title>`, whitespace collapsed.
    pub title: Option<String>,
}

/// The deadline passed while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeout;

/// What a tag name means here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// No break (`a`, `span`, `b`, ...).
    Inline,
    /// Ends the current block at its start and end; its text has this role.
    Block(Role),
    /// `td`, `th`: a tab before the next text of the row.
    Cell,
    /// Raw text dropped (`script`, `style`, `noscript`, `template`, `iframe`, `textarea`, ...).
    RawDrop,
    /// `xmp`: raw text kept as preformatted.
    RawKeep,
    /// `title`.
    Title,
    /// `plaintext`: the rest is preformatted text.
    Plaintext,
    /// Markup whose text is dropped while it is open (`svg`, `math`, `button`, `select`, ...).
    Drop,
    /// `head`.
    Head,
    /// `html`, `body`: not tracked.
    Body,
}

fn classify(name: &[u8]) -> Kind {
    match name {
        b"p" | b"div" | b"section" | b"article" | b"main" | b"header" | b"footer" | b"nav" | b"aside" | b"form"
        | b"figure" | b"figcaption" | b"address" | b"center" | b"details" | b"summary" | b"dialog" | b"menu"
        | b"fieldset" | b"legend" | b"hgroup" | b"search" | b"ul" | b"ol" | b"dl" | b"dir" | b"table" | b"thead"
        | b"tbody" | b"tfoot" | b"caption" | b"hr" | b"frameset" | b"frame" => Kind::Block(Role::Text),
        b"h1" | b"h2" | b"h3" | b"h4" | b"h5" | b"h6" => Kind::Block(Role::Heading),
        b"li" | b"dt" | b"dd" => Kind::Block(Role::Item),
        b"tr" => Kind::Block(Role::Row),
        b"td" | b"th" => Kind::Cell,
        b"pre" | b"listing" => Kind::Block(Role::Pre),
        b"blockquote" => Kind::Block(Role::Quote),
        b"script" | b"style" | b"noscript" | b"template" | b"iframe" | b"textarea" | b"noembed" | b"noframes" => {
            Kind::RawDrop
        }
        b"xmp" => Kind::RawKeep,
        b"title" => Kind::Title,
        b"plaintext" => Kind::Plaintext,
        b"svg" | b"math" | b"button" | b"select" | b"object" | b"audio" | b"video" | b"canvas" | b"datalist"
        | b"map" => Kind::Drop,
        b"head" => Kind::Head,
        b"body" | b"html" => Kind::Body,
        _ if name.contains(&b'-') => Kind::Block(Role::Text), // custom elements are components
        _ => Kind::Inline,
    }
}

/// Flags a tag name gives by itself.
fn tag_flags(name: &[u8]) -> u16 {
    match name {
        b"header" => flag::TAG_BOILER | flag::HEADER,
        b"nav" | b"footer" | b"aside" | b"form" | b"figure" | b"figcaption" | b"menu" | b"dialog" | b"search"
        | b"fieldset" | b"frameset" => flag::TAG_BOILER,
        b"article" | b"main" => flag::MAIN,
        _ => 0,
    }
}

fn allowed_in_head(name: &[u8]) -> bool {
    matches!(
        name,
        b"meta"
            | b"link"
            | b"title"
            | b"style"
            | b"script"
            | b"noscript"
            | b"base"
            | b"template"
            | b"basefont"
            | b"bgsound"
            | b"head"
            | b"html"
    )
}

const K_A: u64 = name_key(b"a");
const K_P: u64 = name_key(b"p");
const K_LI: u64 = name_key(b"li");
const K_DD: u64 = name_key(b"dd");
const K_DT: u64 = name_key(b"dt");
const K_TD: u64 = name_key(b"td");
const K_TH: u64 = name_key(b"th");
const K_TR: u64 = name_key(b"tr");
const K_TABLE: u64 = name_key(b"table");
const K_TBODY: u64 = name_key(b"tbody");
const K_THEAD: u64 = name_key(b"thead");
const K_TFOOT: u64 = name_key(b"tfoot");
const K_ADDRESS: u64 = name_key(b"address");
const K_DIV: u64 = name_key(b"div");
const K_OPTION: u64 = name_key(b"option");
const K_HEADINGS: [u64; 6] =
    [name_key(b"h1"), name_key(b"h2"), name_key(b"h3"), name_key(b"h4"), name_key(b"h5"), name_key(b"h6")];

/// An open element.
#[derive(Debug, Clone, Copy)]
struct Open {
    key: u64,
    /// The node its text belongs to (its own, or the nearest block-level ancestor's).
    node: u32,
    role: Role,
    special: bool,
    boundary: bool,
    pre: bool,
    block: bool,
}

/// The separator pending before the next text of the current block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Sep {
    None,
    Space,
    Tab,
    Newline,
}

struct Parser<'a> {
    b: &'a [u8],
    doc: Doc,
    open: Vec<Open>,
    /// Elements opened past [`MAX_OPEN`] and not closed yet (approximately).
    overflow: usize,
    in_head: bool,
    /// Stack index of the element whose text is dropped while it is open.
    skip: Option<usize>,
    links: u32,
    pre: u32,
    /// The current block has text.
    has_text: bool,
    cur_start: usize,
    cur_links: usize,
    cur_node: u32,
    cur_role: Role,
    sep: Sep,
    deadline: Option<Instant>,
    tags: u32,
}

/// Parses `html` into a [`Doc`].
///
/// # Errors
/// [`Timeout`] when `deadline` passes first.
pub(crate) fn parse(html: &str, deadline: Option<Instant>) -> Result<Doc, Timeout> {
    let mut p = Parser {
        b: html.as_bytes(),
        doc: Doc { nodes: vec![Node { parent: 0, flags: 0 }], blocks: Vec::new(), text: String::new(), title: None },
        open: Vec::new(),
        overflow: 0,
        in_head: false,
        skip: None,
        links: 0,
        pre: 0,
        has_text: false,
        cur_start: 0,
        cur_links: 0,
        cur_node: 0,
        cur_role: Role::Text,
        sep: Sep::None,
        deadline,
        tags: 0,
    };
    let mut text = Vec::with_capacity(html.len() / 3);
    p.run(&mut text)?;
    p.end_block(&mut text);
    // Every write is whole UTF-8 sequences taken from a `&str` or a `char`.
    p.doc.text = String::from_utf8(text).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    Ok(p.doc)
}

impl Parser<'_> {
    fn run(&mut self, out: &mut Vec<u8>) -> Result<(), Timeout> {
        let n = self.b.len();
        let mut pos = 0;
        while pos < n {
            let lt = find_byte(self.b, pos, b'<').unwrap_or(n);
            if lt > pos {
                self.text(out, pos, lt);
            }
            if lt >= n {
                break;
            }
            pos = self.markup(out, lt);
            self.tags += 1;
            if self.tags % CLOCK_EVERY == 0 && self.deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Timeout);
            }
        }
        Ok(())
    }

    fn text(&mut self, out: &mut Vec<u8>, start: usize, end: usize) {
        if self.skip.is_some() {
            return;
        }
        let s = &self.b[start..end];
        if self.in_head {
            if s.iter().all(u8::is_ascii_whitespace) {
                return;
            }
            self.in_head = false;
        }
        self.append(out, s, true);
    }

    /// Appends text content: decodes references (when `decode`), collapses
    /// whitespace (kept as it is inside `<pre>`).
    fn append(&mut self, out: &mut Vec<u8>, s: &[u8], decode: bool) {
        let pre = self.pre > 0;
        let mut run = 0;
        let mut i = 0;
        while i < s.len() {
            let c = s[i];
            if c == b'&' && decode {
                if let Some((decoded, len)) = decode_reference(s, i) {
                    self.emit(out, &s[run..i]);
                    let mut utf8 = [0u8; 4];
                    let value = match decoded {
                        Decoded::Char(c) => &*c.encode_utf8(&mut utf8),
                        Decoded::Str(v) => v,
                    };
                    if value.chars().all(|c| c.is_whitespace() || c.is_control()) {
                        self.whitespace(out, value.as_bytes().first().copied().unwrap_or(b' '), pre);
                    } else {
                        self.emit(out, value.as_bytes());
                    }
                    i += len;
                    run = i;
                    continue;
                }
                i += 1;
            } else if c <= b' ' || c == 0x7F {
                self.emit(out, &s[run..i]);
                self.whitespace(out, c, pre);
                i += 1;
                run = i;
            } else if matches!(c, 0xC2 | 0xE1 | 0xE2 | 0xE3) {
                match unicode_space_len(s, i) {
                    Some(len) => {
                        self.emit(out, &s[run..i]);
                        self.whitespace(out, b' ', pre);
                        i += len;
                        run = i;
                    }
                    None => i += 1,
                }
            } else {
                i += 1;
            }
        }
        self.emit(out, &s[run..]);
    }

    fn whitespace(&mut self, out: &mut Vec<u8>, c: u8, pre: bool) {
        if !self.has_text {
            return;
        }
        if !pre {
            self.sep = self.sep.max(Sep::Space);
        } else if c == b'\n' {
            self.flush_sep(out);
            out.push(b'\n');
        } else if c == b'\t' || c == b' ' {
            self.flush_sep(out);
            out.push(c);
        } else if c != b'\r' {
            self.flush_sep(out);
            out.push(b' ');
        }
    }

    fn flush_sep(&mut self, out: &mut Vec<u8>) {
        match self.sep {
            Sep::None => {}
            Sep::Space => out.push(b' '),
            Sep::Tab => out.push(b'\t'),
            Sep::Newline => out.push(b'\n'),
        }
        self.sep = Sep::None;
    }

    fn emit(&mut self, out: &mut Vec<u8>, s: &[u8]) {
        if s.is_empty() {
            return;
        }
        if self.has_text {
            self.flush_sep(out);
        } else {
            self.has_text = true;
            self.cur_start = out.len();
            self.cur_links = 0;
            let top = self.open.last();
            self.cur_node = top.map_or(0, |o| o.node);
            self.cur_role = top.map_or(Role::Text, |o| o.role);
            self.sep = Sep::None;
        }
        let before = out.len();
        out.extend_from_slice(s);
        if self.links > 0 {
            self.cur_links += out.len() - before;
        }
    }

    /// Ends the current block.
    fn end_block(&mut self, out: &mut Vec<u8>) {
        if !self.has_text {
            return;
        }
        while out.len() > self.cur_start && out.last().is_some_and(u8::is_ascii_whitespace) {
            out.pop();
        }
        if out.len() > self.cur_start {
            self.doc.blocks.push(Block {
                node: self.cur_node,
                start: self.cur_start,
                end: out.len(),
                link_bytes: self.cur_links.min(out.len() - self.cur_start),
                role: self.cur_role,
            });
        }
        self.has_text = false;
        self.sep = Sep::None;
    }

    fn markup(&mut self, out: &mut Vec<u8>, lt: usize) -> usize {
        let b = self.b;
        let n = b.len();
        match b.get(lt + 1) {
            Some(b'!') => {
                if b.get(lt + 2..lt + 4) == Some(b"--") {
                    comment_end(b, lt + 4)
                } else if b.get(lt + 2..lt + 9) == Some(b"[CDATA[") {
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
                    match attributes(b, name_end, |_, _| {}) {
                        Some((after, _)) => {
                            self.end_tag(out, &b[lt + 2..name_end]);
                            after
                        }
                        None => n,
                    }
                }
                Some(b'>') => lt + 3,
                Some(_) => find_byte(b, lt + 2, b'>').map_or(n, |p| p + 1),
                None => {
                    self.text(out, lt, n);
                    n
                }
            },
            Some(c) if c.is_ascii_alphabetic() => {
                let name_end = tag_name_end(b, lt + 1);
                let mut attrs = Attrs::default();
                match attributes(b, name_end, |name, value| attrs.take(name, value)) {
                    Some((after, self_closing)) => {
                        self.start_tag(out, &b[lt + 1..name_end], &attrs, self_closing, after)
                    }
                    None => n,
                }
            }
            _ => {
                self.text(out, lt, lt + 1);
                lt + 1
            }
        }
    }

    fn start_tag(
        &mut self,
        out: &mut Vec<u8>,
        raw: &[u8],
        attrs: &Attrs<'_>,
        self_closing: bool,
        after: usize,
    ) -> usize {
        let mut lower_buf = [0u8; 16];
        let lower: &[u8] = match lower_buf.get_mut(..raw.len()) {
            Some(dst) => {
                dst.copy_from_slice(raw);
                dst.make_ascii_lowercase();
                dst
            }
            None => b"-long-",
        };
        let key = name_key(raw);
        let kind = classify(lower);
        if self.in_head && !allowed_in_head(lower) {
            self.in_head = false;
        }
        match kind {
            Kind::RawDrop | Kind::RawKeep | Kind::Title => return self.raw_text(out, raw, kind, after),
            Kind::Plaintext => {
                if self.skip.is_none() {
                    self.end_block(out);
                    self.pre += 1;
                    let rest = &self.b[after..];
                    self.append(out, rest, false);
                    self.end_block(out);
                }
                return self.b.len();
            }
            Kind::Head => {
                if self.doc.blocks.is_empty() && !self.has_text {
                    self.in_head = true;
                }
                return after;
            }
            Kind::Body => {
                self.in_head = false;
                return after;
            }
            _ => {}
        }
        self.close_implied(out, key, lower);
        if lower == b"br" {
            if self.has_text && self.skip.is_none() {
                self.sep = Sep::Newline;
            }
            return after;
        }
        if lower == b"hr" {
            self.end_block(out);
            return after;
        }
        if is_void(lower) || self_closing {
            return after;
        }
        let heading = matches!(kind, Kind::Block(Role::Heading));
        let mut flags = tag_flags(lower) | attrs.flags(heading);
        let mut kind = kind;
        if kind == Kind::Inline && flags & (flag::STRONG_NEG | flag::HIDDEN) != 0 {
            // An inline share bar or hidden span: its own block, to be dropped.
            kind = Kind::Block(Role::Text);
        }
        if kind == Kind::Inline {
            flags = 0;
        }
        let parent = self.open.last().map_or(0, |o| o.node);
        let parent_role = self.open.last().map_or(Role::Text, |o| o.role);
        if self.open.len() >= MAX_OPEN {
            self.overflow += 1;
            return after;
        }
        let block = matches!(kind, Kind::Block(_));
        if block {
            self.end_block(out);
        }
        let node = if block || flags != 0 {
            let index = u32::try_from(self.doc.nodes.len()).unwrap_or(u32::MAX);
            self.doc.nodes.push(Node { parent, flags });
            index
        } else {
            parent
        };
        let role = match kind {
            Kind::Block(Role::Text) => match parent_role {
                // A <div> inside a <li> or a table row stays an item / row.
                Role::Item | Role::Row | Role::Quote | Role::Pre => parent_role,
                _ => Role::Text,
            },
            Kind::Block(r) => r,
            _ => parent_role,
        };
        let pre = role == Role::Pre && kind == Kind::Block(Role::Pre);
        self.open.push(Open {
            key,
            node,
            role,
            special: is_special(lower),
            boundary: is_scope_boundary(lower),
            pre,
            block,
        });
        if pre {
            self.pre += 1;
        }
        if key == K_A {
            self.links += 1;
        }
        match kind {
            Kind::Cell => {
                if self.has_text {
                    self.sep = self.sep.max(Sep::Tab);
                }
            }
            Kind::Drop => {
                if self.skip.is_none() {
                    self.skip = Some(self.open.len() - 1);
                    if self.has_text {
                        self.sep = self.sep.max(Sep::Space);
                    }
                }
            }
            _ => {}
        }
        after
    }

    /// Content of a raw-text element starting at `after`; returns where the markup goes on.
    fn raw_text(&mut self, out: &mut Vec<u8>, name: &[u8], kind: Kind, after: usize) -> usize {
        let n = self.b.len();
        let content_end = if name.eq_ignore_ascii_case(b"script") {
            script_end(self.b, after)
        } else {
            find_end_tag_start(self.b, after, name)
        }
        .unwrap_or(n);
        let resume = attributes(self.b, (content_end + 2 + name.len()).min(n), |_, _| {}).map_or(n, |(end, _)| end);
        let content = &self.b[after..content_end];
        match kind {
            Kind::Title => {
                if self.doc.title.is_none() && self.skip.is_none() {
                    let title = collapse(content);
                    if !title.is_empty() {
                        self.doc.title = Some(title);
                    }
                }
            }
            Kind::RawKeep if self.skip.is_none() && !self.in_head => {
                self.end_block(out);
                self.pre += 1;
                self.append(out, content, false);
                self.pre -= 1;
                self.cur_role = Role::Pre;
                self.end_block(out);
            }
            _ => {
                if self.has_text && self.skip.is_none() {
                    self.sep = self.sep.max(Sep::Space);
                }
            }
        }
        resume
    }

    fn end_tag(&mut self, out: &mut Vec<u8>, raw: &[u8]) {
        let mut lower_buf = [0u8; 16];
        let lower: &[u8] = match lower_buf.get_mut(..raw.len()) {
            Some(dst) => {
                dst.copy_from_slice(raw);
                dst.make_ascii_lowercase();
                dst
            }
            None => b"-long-",
        };
        match classify(lower) {
            Kind::Head => {
                self.in_head = false;
                return;
            }
            Kind::Body => return,
            _ => {}
        }
        if lower == b"br" {
            if self.has_text && self.skip.is_none() {
                self.sep = Sep::Newline;
            }
            return;
        }
        if is_void(lower) {
            return;
        }
        if self.overflow > 0 {
            self.overflow -= 1;
            return;
        }
        let key = name_key(raw);
        let table_part = matches!(lower, b"table" | b"tbody" | b"thead" | b"tfoot" | b"tr");
        let special = is_special(lower);
        let found = self.search(
            |e| e.key == key,
            |e| {
                if table_part {
                    e.key == K_TABLE
                } else if special {
                    e.boundary
                } else {
                    e.special
                }
            },
        );
        match found {
            Some(index) => self.pop_to(out, index),
            // </p> without an open <p> makes an empty paragraph: a break.
            None if key == K_P => self.end_block(out),
            None => {}
        }
    }

    /// Closes the element at `index` and every element opened after it.
    fn pop_to(&mut self, out: &mut Vec<u8>, index: usize) {
        let Some(popped) = self.open.get(index..) else {
            return;
        };
        let mut block = false;
        for e in popped {
            block |= e.block;
            if e.pre {
                self.pre = self.pre.saturating_sub(1);
            }
            if e.key == K_A {
                self.links = self.links.saturating_sub(1);
            }
        }
        if block {
            self.end_block(out);
        }
        self.open.truncate(index);
        if self.skip.is_some_and(|s| s >= index) {
            self.skip = None;
        }
    }

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

    /// End tags a start tag implies (WHATWG tree construction, simplified).
    fn close_implied(&mut self, out: &mut Vec<u8>, key: u64, lower: &[u8]) {
        if closes_p(lower) {
            if let Some(index) = self.search(|e| e.key == K_P, |e| e.special) {
                self.pop_to(out, index);
            }
        }
        let not_address_div_p = |e: &Open| e.special && !matches!(e.key, K_ADDRESS | K_DIV | K_P);
        let table_section = |e: &Open| matches!(e.key, K_TABLE | K_TBODY | K_THEAD | K_TFOOT);
        let found = match lower {
            b"li" => self.search(|e| e.key == K_LI, not_address_div_p),
            b"dd" | b"dt" => self.search(|e| matches!(e.key, K_DD | K_DT), not_address_div_p),
            b"a" => self.search(|e| e.key == K_A, |e| e.special),
            b"td" | b"th" => self.search(|e| matches!(e.key, K_TD | K_TH), |e| e.key == K_TR || table_section(e)),
            b"tr" => self.search(|e| e.key == K_TR, table_section),
            b"tbody" | b"thead" | b"tfoot" => {
                self.search(|e| matches!(e.key, K_TBODY | K_THEAD | K_TFOOT), |e| e.key == K_TABLE)
            }
            b"option" => self.search(|e| e.key == K_OPTION, |_| true),
            b"h1" | b"h2" | b"h3" | b"h4" | b"h5" | b"h6" => self.search(|e| K_HEADINGS.contains(&e.key), |_| true),
            _ => None,
        };
        let _ = key;
        if let Some(index) = found {
            self.pop_to(out, index);
        }
    }
}

/// The attributes of a start tag that matter here.
#[derive(Default)]
pub(crate) struct Attrs<'a> {
    class: &'a [u8],
    id: &'a [u8],
    role: &'a [u8],
    style: &'a [u8],
    itemprop: &'a [u8],
    hidden: bool,
    aria_hidden: bool,
}

impl<'a> Attrs<'a> {
    fn take(&mut self, name: &'a [u8], value: &'a [u8]) {
        match name.len() {
            2 if name.eq_ignore_ascii_case(b"id") => self.id = value,
            4 if name.eq_ignore_ascii_case(b"role") => self.role = value,
            5 if name.eq_ignore_ascii_case(b"class") => self.class = value,
            5 if name.eq_ignore_ascii_case(b"style") => self.style = value,
            6 if name.eq_ignore_ascii_case(b"hidden") => self.hidden = true,
            8 if name.eq_ignore_ascii_case(b"itemprop") => self.itemprop = value,
            11 if name.eq_ignore_ascii_case(b"aria-hidden") => {
                self.aria_hidden = value.eq_ignore_ascii_case(b"true");
            }
            _ => {}
        }
    }

    /// The flags of the element. A heading's `id` is an anchor (often its
    /// own text made a slug, `nav_nur_die_folie`, for a table of contents), not a hint.
    fn flags(&self, heading: bool) -> u16 {
        let mut flags = patterns::class_id_flags(self.class);
        if !heading {
            flags |= patterns::class_id_flags(self.id);
        }
        flags |= patterns::role_flags(self.role);
        if self.hidden || self.aria_hidden || patterns::style_hides(self.style) {
            flags |= flag::HIDDEN;
        }
        if self.itemprop.eq_ignore_ascii_case(b"articlebody") || self.itemprop.eq_ignore_ascii_case(b"text") {
            flags |= flag::MAIN;
        }
        flags
    }
}

/// Reads the attributes of a tag whose name ends at `i`, calling `each(name,
/// value)` (raw bytes, references not decoded); returns the position after the
/// closing `>` and whether the tag ends with `/>`, or `None` when the input ends first.
fn attributes<'a>(b: &'a [u8], mut i: usize, mut each: impl FnMut(&'a [u8], &'a [u8])) -> Option<(usize, bool)> {
    let n = b.len();
    let space = |c: u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0C');
    loop {
        while i < n && space(b[i]) {
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
        let name_start = i;
        i += 1;
        while i < n && !space(b[i]) && !matches!(b[i], b'/' | b'>' | b'=') {
            i += 1;
        }
        let name = &b[name_start..i];
        while i < n && space(b[i]) {
            i += 1;
        }
        if b.get(i) != Some(&b'=') {
            each(name, &[]);
            continue;
        }
        i += 1;
        while i < n && space(b[i]) {
            i += 1;
        }
        match b.get(i) {
            Some(&q) if q == b'"' || q == b'\'' => {
                let close = find_byte(b, i + 1, q)?;
                each(name, &b[i + 1..close]);
                i = close + 1;
            }
            _ => {
                let start = i;
                while i < n && !space(b[i]) && b[i] != b'>' {
                    i += 1;
                }
                each(name, &b[start..i]);
            }
        }
    }
}

/// Text with references decoded and whitespace collapsed (for the title).
fn collapse(s: &[u8]) -> String {
    let mut p = Parser {
        b: &[],
        doc: Doc { nodes: Vec::new(), blocks: Vec::new(), text: String::new(), title: None },
        open: Vec::new(),
        overflow: 0,
        in_head: false,
        skip: None,
        links: 0,
        pre: 0,
        has_text: false,
        cur_start: 0,
        cur_links: 0,
        cur_node: 0,
        cur_role: Role::Text,
        sep: Sep::None,
        deadline: None,
        tags: 0,
    };
    let mut out = Vec::with_capacity(s.len());
    p.append(&mut out, s, true);
    p.end_block(&mut out);
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}
