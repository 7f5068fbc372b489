//! Choosing the main content among the blocks of a parsed page.
//!
//! ```text
//! blocks ──► good? (long enough, few link bytes) ──► good bytes per subtree
//!    flagged subtrees (nav, footer, comments, share bars, hidden, ...) dropped,
//!    unless they hold most of the page's good text (sites that wrap the article in an <aside>)
//!                 ──► main node = argmax over containers of good − BAD_WEIGHT × link text
//!                 ──► its blocks, minus dropped subtrees, link lists and their titles
//! ```
//! Every pass is a loop over the arena (children after parents), linear in
//! the number of nodes and blocks.

use std::time::Instant;

use super::dom::{flag, Block, Doc, Role, Timeout};

/// A block is good text when it has at least this many bytes...
const GOOD_MIN_BYTES: usize = 50;
/// ...and at most this share of them inside links (per mille).
const GOOD_MAX_LINK_PERMILLE: usize = 330;
/// Blocks with a larger share of link bytes are link lists (per mille).
const LINK_LIST_PERMILLE: usize = 500;
/// How much a byte of link text (all of a link list) costs a candidate
/// container, against a byte of good text.
const BAD_WEIGHT_PERMILLE: i64 = 600;
/// A paragraph beside the main node joins it with at least this many bytes...
const SIBLING_MIN_BYTES: usize = 80;
/// ...and at most this share of link bytes (per mille).
const SIBLING_MAX_LINK_PERMILLE: usize = 250;
/// A sibling container joins the main node with at least this share of its good text (per mille).
const SIBLING_SHARE_PERMILLE: i64 = 200;
/// A flagged subtree holding more than this share of the page's good text is kept.
const KEEP_FLAGGED_PERMILLE: u64 = 500;
/// ...unless article elements outside it hold this share of its good text (per mille).
const MAIN_OUTSIDE_PERMILLE: u64 = 250;
/// A paragraph that is all link stays in the text with at least this many
/// bytes ("weiterlesen", "Read more" under teasers are shorter).
const INLINE_LINK_MIN_BYTES: usize = 25;
/// A heading shorter than this (bytes) right before a link list is the list's title.
const LIST_TITLE_MAX_BYTES: usize = 120;

const FURNITURE: u16 = flag::TAG_BOILER | flag::STRONG_NEG | flag::WEAK_NEG | flag::HIDDEN;

fn is_good(b: &Block) -> bool {
    let len = b.end - b.start;
    len >= GOOD_MIN_BYTES && b.link_bytes * 1000 <= len * GOOD_MAX_LINK_PERMILLE
}

fn is_link_list(b: &Block) -> bool {
    let len = b.end - b.start;
    b.role != Role::Pre && b.link_bytes * 1000 > len * LINK_LIST_PERMILLE
}

fn check(deadline: Option<Instant>) -> Result<(), Timeout> {
    match deadline {
        Some(d) if Instant::now() >= d => Err(Timeout),
        _ => Ok(()),
    }
}

/// Why a block is in the main content or not (`smelt extract --explain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Kept: inside the main node, the container with the most good text for the least link text.
    Main,
    /// Kept: a long, link-poor paragraph right beside the main node.
    Lead,
    /// Kept: in a sibling container of the main node with a good share of its text.
    Sibling,
    /// Kept: a paragraph that is all link, right after a good one of its container.
    InlineLink,
    /// Kept: a lead paragraph in the own `<header>` of the article holding the main node.
    ArticleLead,
    /// Dropped: in a subtree dropped as furniture; the flag bits that marked it:
    /// its tag (nav, header, footer, aside, form, ...), a class/id word that
    /// names furniture (comments, share, cookie, ...) or hints at it, hidden.
    Furniture(u16),
    /// Dropped: outside the main node and its siblings.
    Outside,
    /// Dropped: a list of links (navigation, related posts, tags).
    LinkList,
    /// Dropped: a heading or short line right before a link list, the list's title.
    ListTitle,
}

impl Verdict {
    /// Whether the block is in the text.
    pub fn kept(self) -> bool {
        matches!(self, Verdict::Main | Verdict::Lead | Verdict::Sibling | Verdict::InlineLink | Verdict::ArticleLead)
    }

    /// What it means, in a few words.
    pub fn describe(self) -> String {
        match self {
            Verdict::Main => "main node".into(),
            Verdict::Lead => "lead paragraph beside the main node".into(),
            Verdict::Sibling => "sibling container of the main node".into(),
            Verdict::InlineLink => "link paragraph after a good paragraph".into(),
            Verdict::ArticleLead => "lead paragraph in the article's header".into(),
            Verdict::Furniture(flags) => {
                let mut why = Vec::new();
                for (bit, name) in [
                    (flag::TAG_BOILER, "tag"),
                    (flag::STRONG_NEG, "class/id"),
                    (flag::WEAK_NEG, "weak class/id"),
                    (flag::HIDDEN, "hidden"),
                ] {
                    if flags & bit != 0 {
                        why.push(name);
                    }
                }
                format!("furniture by {}", why.join(", "))
            }
            Verdict::Outside => "outside the main node".into(),
            Verdict::LinkList => "link list".into(),
            Verdict::ListTitle => "title of a link list".into(),
        }
    }
}

/// The [`Verdict`] of every block, in document order.
///
/// # Errors
/// [`Timeout`] when `deadline` passes first.
pub(crate) fn verdicts(doc: &Doc, deadline: Option<Instant>) -> Result<Vec<Verdict>, Timeout> {
    let nodes = &doc.nodes;
    let n = nodes.len();
    let parent = |i: usize| nodes[i].parent as usize;

    // Good bytes per subtree, flags ignored.
    let mut good_raw = vec![0u64; n];
    for b in &doc.blocks {
        if is_good(b) {
            good_raw[b.node as usize] += (b.end - b.start) as u64;
        }
    }
    for i in (1..n).rev() {
        good_raw[parent(i)] += good_raw[i];
    }
    check(deadline)?;

    // Nodes inside an `<article>`, `<main>` or articleBody (themselves included),
    // and the good bytes of such nodes per subtree.
    let mut in_main = vec![false; n];
    for i in 1..n {
        in_main[i] = nodes[i].flags & flag::MAIN != 0 || in_main[parent(i)];
    }
    let mut main_raw = vec![0u64; n];
    for b in &doc.blocks {
        if is_good(b) && in_main[b.node as usize] {
            main_raw[b.node as usize] += (b.end - b.start) as u64;
        }
    }
    for i in (1..n).rev() {
        main_raw[parent(i)] += main_raw[i];
    }

    // Dropped subtrees.
    let total = good_raw[0];
    let main_total = main_raw[0];
    let mut dead = vec![false; n];
    // The node whose flags dropped each dead node's subtree.
    let mut dropped_by = vec![0usize; n];
    // The nearest `<article>`/`<main>` (or articleBody) of each node, and
    // whether the node is in such an element's own <header>.
    let mut article_of = vec![0usize; n];
    let mut in_article_header = vec![false; n];
    for i in 1..n {
        let flags = nodes[i].flags;
        article_of[i] = if flags & flag::MAIN != 0 { i } else { article_of[parent(i)] };
        in_article_header[i] = in_article_header[parent(i)] || flags & flag::HEADER != 0 && article_of[parent(i)] != 0;
        // A flagged subtree with most of the page's text is kept (an article
        // wrapped in an <aside>, an <article> with `tag-*` classes), unless it
        // is outside any article element and an article element elsewhere holds
        // a good share of that (a long sidebar text beside a short article).
        let most = good_raw[i] * 1000 > total * KEEP_FLAGGED_PERMILLE
            && (in_main[i] || (main_total - main_raw[i]) * 1000 < good_raw[i] * MAIN_OUTSIDE_PERMILLE);
        dead[i] = flags & FURNITURE != 0 && !most || dead[parent(i)];
        dropped_by[i] = if dead[parent(i)] { dropped_by[parent(i)] } else { i };
    }

    // Good and bad bytes per subtree, dropped subtrees excluded.
    let mut good = vec![0i64; n];
    let mut bad = vec![0i64; n];
    let mut blocks = vec![0u32; n];
    for b in &doc.blocks {
        let node = b.node as usize;
        if dead[node] {
            continue;
        }
        let len = (b.end - b.start) as i64;
        if is_good(b) {
            good[node] += len;
        }
        // Link text is what navigation, related lists and tag clouds are made of;
        // short text without links (list items, table rows, captions) is neutral.
        bad[node] += if is_link_list(b) { len } else { b.link_bytes as i64 };
        blocks[node] += 1;
    }
    let mut end = (1..=n).collect::<Vec<usize>>();
    for i in (1..n).rev() {
        let p = parent(i);
        good[p] += good[i];
        bad[p] += bad[i];
        blocks[p] += blocks[i];
        end[p] = end[p].max(end[i]);
    }
    check(deadline)?;

    // The main node: the most good text for the least bad text.
    let mut best = 0;
    let mut best_score = i64::MIN;
    for i in 0..n {
        // A container: a node with a single block is a paragraph, not a candidate.
        if i != 0 && (dead[i] || good[i] == 0 || blocks[i] < 2) {
            continue;
        }
        let score = good[i] * 1000 - BAD_WEIGHT_PERMILLE * bad[i];
        if score >= best_score {
            best = i;
            best_score = score;
        }
    }
    if good[0] == 0 {
        best = 0;
    }

    // Long, link-poor paragraphs right beside the main node (a lead paragraph
    // before the article body's container) belong to it too (readability's sibling rule).
    let range = best..end[best];
    let beside = [parent(best), parent(parent(best))];
    let lead = |b: &Block| {
        let node = b.node as usize;
        let len = b.end - b.start;
        best != 0
            && (beside.contains(&node) || beside.contains(&parent(node)))
            && len >= SIBLING_MIN_BYTES
            && b.link_bytes * 1000 <= len * SIBLING_MAX_LINK_PERMILLE
    };
    // Sibling containers with a good share of the main node's good text and
    // more of it than link text (an article body split by ad slots).
    let p = parent(best);
    let sibling_ok = |i: usize| {
        i != best
            && parent(i) == p
            && !dead[i]
            && good[i] * 1000 > BAD_WEIGHT_PERMILLE * bad[i]
            && good[i] * 1000 >= good[best] * SIBLING_SHARE_PERMILLE
    };
    let in_sibling = |node: usize| {
        let mut i = node;
        for _ in 0..64 {
            if i == 0 || i <= p {
                return false;
            }
            if parent(i) == p {
                return sibling_ok(i);
            }
            i = parent(i);
        }
        false
    };
    // A heading or a short line right before a link list ("Related posts:",
    // "Tags") is the list's title: it goes with the list.
    let list_title = |i: usize| {
        let b = &doc.blocks[i];
        let len = b.end - b.start;
        let short = if b.role == Role::Heading { len < LIST_TITLE_MAX_BYTES } else { len < GOOD_MIN_BYTES };
        // The list in the same container (not the page's navigation after an
        // article's last line), unless the line is half link itself ("weiterlesen 10 Minuten").
        let container = parent(b.node as usize);
        short
            && doc.blocks.get(i + 1).is_some_and(|o| {
                is_link_list(o) && ((container..end[container]).contains(&(o.node as usize)) || b.link_bytes * 2 >= len)
            })
    };
    // A paragraph that is all link, right after a good paragraph of the
    // same container and not followed by a link list there, is part of the text
    // (a source, a petition, a shop link), not navigation ("Read more: ..." is).
    let inline_link = |i: usize| {
        let b = &doc.blocks[i];
        let same = |o: &Block| parent(o.node as usize) == parent(b.node as usize);
        b.role == Role::Text
            && b.link_bytes == b.end - b.start
            && b.end - b.start >= INLINE_LINK_MIN_BYTES
            && i.checked_sub(1).is_some_and(|j| is_good(&doc.blocks[j]) && same(&doc.blocks[j]))
            && !doc.blocks.get(i + 1).is_some_and(|o| is_link_list(o) && same(o))
    };
    // An article's <header> is dropped with the site's (it holds the title,
    // dates, bylines), but its lead paragraphs join the main node when that
    // lies in the same article.
    let article_lead = |b: &Block| {
        let node = b.node as usize;
        let article = article_of[node];
        in_article_header[node]
            && b.role != Role::Heading
            && is_good(b)
            && b.link_bytes == 0
            && (article..end[article]).contains(&best)
    };
    // The verdicts, in the order of the rules: the article's lead paragraphs
    // whatever else holds; dropped subtrees; list titles; the main node's
    // leads; then the main node and its siblings, less their link lists.
    Ok(doc
        .blocks
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let node = b.node as usize;
            if article_lead(b) {
                Verdict::ArticleLead
            } else if dead[node] {
                Verdict::Furniture(nodes[dropped_by[node]].flags & FURNITURE)
            } else if list_title(i) {
                Verdict::ListTitle
            } else if lead(b) {
                Verdict::Lead
            } else if !(range.contains(&node) || best != 0 && in_sibling(node)) {
                Verdict::Outside
            } else if is_link_list(b) && !inline_link(i) {
                Verdict::LinkList
            } else if is_link_list(b) {
                Verdict::InlineLink
            } else if range.contains(&node) {
                Verdict::Main
            } else {
                Verdict::Sibling
            }
        })
        .collect())
}
