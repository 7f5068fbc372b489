//! Normalised word n-grams and the index that finds them: what
//! `decontaminate` compares benchmark items and documents by.
//!
//! ```text
//! text ──64-byte blocks: a bit per byte of an ASCII letter or digit (or any byte ≥ 0x80)──► runs
//!      ──ASCII run: its 8-byte pieces lowercased at once and hashed │ other runs: split by chars──► word hashes
//!      ──prefix hashes P(j) = P(j-1)·B + w(j)  (wrapping u64)──► the k words from i: P(i+k) - P(i)·B^k, mixed with k
//!      ──filter: one u64 per key block, two bits (≈1.4% false hits at 16 bits per key)──► table (open addressing) ──► item
//! ```
//! Words are runs of letters, digits and combining marks, lowercased; the
//! rest separates. Punctuation, case and line breaks vanish in the words, so
//! an item copied with other quotes, capitals or wrapping still matches.
//! Words of one ASCII letter are left out on both sides, so the labels of
//! multiple-choice answers (`(A)`, `B.`, `c)`) and the articles `a` and `I`
//! never break a match. Words are not split inside a run of letters: Chinese
//! or Japanese text without spaces is one word per run, so n-grams of such
//! benchmarks match only whole runs.
//!
//! A word's hash is taken over its lowercased UTF-8 bytes, eight at a time,
//! so the common word (ASCII letters and digits) is hashed in one or two
//! multiplications without looking at its characters one by one; a run that
//! holds a byte ≥ 0x80 is split and lowercased char by char, into the same
//! hash.

use crate::prefetch::prefetch;

/// Multiplier of the prefix hash (odd).
const BASE: u64 = 0x9E37_79B9_7F4A_7C15;
/// FNV-1a's 64-bit prime: mixes an n-gram's length into its key.
const PRIME: u64 = 0x0000_0100_0000_01B3;
/// Multiplier of a word's 8-byte pieces (odd).
const PIECE: u64 = 0xA076_1D64_78BD_642F;
/// Each byte of an ASCII piece lowercased (letters; digits have the bit already).
const LOWER: u64 = 0x2020_2020_2020_2020;
/// The high bit of each byte of a piece.
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The longest n-gram.
pub const MAX_N: usize = 64;

/// B^k for k in 0..=MAX_N.
const POW: [u64; MAX_N + 1] = {
    let mut pow = [1u64; MAX_N + 1];
    let mut k = 1;
    while k <= MAX_N {
        pow[k] = pow[k - 1].wrapping_mul(BASE);
        k += 1;
    }
    pow
};

/// Bits of the filter per key: about 1.4% of misses pass to the table, whose
/// probes (out of cache for a large index) cost more than the filter's size.
const FILTER_BITS_PER_KEY: usize = 16;

/// murmur3's 64-bit finaliser.
#[inline]
pub fn mix(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// Takes one 8-byte piece of a word (little-endian, zero-padded) into its hash.
#[inline(always)]
fn absorb(h: u64, piece: u64) -> u64 {
    (h ^ piece).wrapping_mul(PIECE).rotate_left(29)
}

/// The word hash of the pieces' state `h` after `len` bytes.
#[inline(always)]
fn finish(h: u64, len: usize) -> u64 {
    mix(h ^ len as u64)
}

/// A word's hash, fed its lowercased UTF-8 bytes one at a time.
#[derive(Default)]
struct ByteHasher {
    h: u64,
    piece: u64,
    fill: u32,
    len: usize,
}

impl ByteHasher {
    fn push(&mut self, b: u8) {
        self.piece |= u64::from(b) << (8 * self.fill);
        self.fill += 1;
        self.len += 1;
        if self.fill == 8 {
            self.h = absorb(self.h, self.piece);
            (self.piece, self.fill) = (0, 0);
        }
    }

    fn finish(&self) -> u64 {
        let h = if self.fill > 0 { absorb(self.h, self.piece) } else { self.h };
        finish(h, self.len)
    }
}

/// Bit i set when byte i of `block` is an ASCII letter or digit, or ≥ 0x80.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn word_bytes(block: &[u8; 64]) -> u64 {
    use std::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_cmpgt_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    let mut mask = 0u64;
    for i in 0..4 {
        // SAFETY: SSE2 is part of x86_64; the 16 bytes read lie inside `block`.
        let bits = unsafe {
            let v = _mm_loadu_si128(block.as_ptr().add(16 * i).cast::<__m128i>());
            // Signed compares: bytes ≥ 0x80 are negative and fall out of both ranges.
            let lower = _mm_or_si128(v, _mm_set1_epi8(0x20));
            let letter =
                _mm_and_si128(_mm_cmpgt_epi8(lower, _mm_set1_epi8(0x60)), _mm_cmplt_epi8(lower, _mm_set1_epi8(0x7B)));
            let digit = _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8(0x2F)), _mm_cmplt_epi8(v, _mm_set1_epi8(0x3A)));
            (_mm_movemask_epi8(_mm_or_si128(letter, digit)) | _mm_movemask_epi8(v)) as u32 as u64
        };
        mask |= bits << (16 * i);
    }
    mask
}

/// Bit i set when byte i of `block` is an ASCII letter or digit, or ≥ 0x80.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn word_bytes(block: &[u8; 64]) -> u64 {
    word_bytes_scalar(block)
}

/// [`word_bytes`] a byte at a time (other targets, and the check of the SIMD form).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn word_bytes_scalar(block: &[u8; 64]) -> u64 {
    block.iter().enumerate().fold(0, |m, (i, &b)| m | u64::from(b >= 0x80 || b.is_ascii_alphanumeric()) << i)
}

/// The 8 bytes of `bytes` from `at`, the ones past the end zero.
#[inline(always)]
fn piece_at(bytes: &[u8], at: usize) -> u64 {
    match bytes.get(at..at + 8) {
        Some(b) => u64::from_le_bytes(b.try_into().expect("8 bytes")),
        None => {
            let mut b = [0u8; 8];
            b[..bytes.len() - at].copy_from_slice(&bytes[at..]);
            u64::from_le_bytes(b)
        }
    }
}

/// The hash of the run `bytes[s..e]` when it is all ASCII (letters and
/// digits, as runs are); `None` when it holds a byte ≥ 0x80.
#[inline(always)]
fn ascii_hash(bytes: &[u8], s: usize, e: usize) -> Option<u64> {
    let (mut h, mut at) = (0u64, s);
    while e - at >= 8 {
        let piece = piece_at(bytes, at);
        if piece & HIGH != 0 {
            return None;
        }
        h = absorb(h, piece | LOWER);
        at += 8;
    }
    if at < e {
        let keep = (1u64 << (8 * (e - at))) - 1;
        let piece = piece_at(bytes, at) & keep;
        if piece & HIGH != 0 {
            return None;
        }
        h = absorb(h, (piece | LOWER) & keep);
    }
    Some(finish(h, e - s))
}

/// Whether the word `bytes[s..e]` is one ASCII letter (left out).
#[inline(always)]
fn one_letter(bytes: &[u8], s: usize, e: usize) -> bool {
    e - s == 1 && bytes[s].is_ascii_alphabetic()
}

/// Splits `text[s..e]` into words char by char, as the module says, and
/// calls `f(hash, start, end)` for each (one ASCII letter left out). The
/// reference the block scanner follows; it runs for runs with a byte ≥ 0x80.
#[cold]
#[inline(never)]
fn split_chars(text: &str, s: usize, e: usize, f: &mut dyn FnMut(u64, usize, usize)) {
    let bytes = text.as_bytes();
    let mut start = usize::MAX;
    let mut h = ByteHasher::default();
    let mut emit = |h: &ByteHasher, start: usize, end: usize| {
        if !one_letter(bytes, start, end) {
            f(h.finish(), start, end);
        }
    };
    for (at, ch) in text[s..e].char_indices() {
        let word = if ch.is_ascii() {
            ch.is_ascii_alphanumeric()
        } else {
            ch.is_alphanumeric() || unicode_normalization::char::is_combining_mark(ch)
        };
        if !word {
            if start != usize::MAX {
                emit(&h, start, s + at);
                start = usize::MAX;
            }
            continue;
        }
        if start == usize::MAX {
            start = s + at;
            h = ByteHasher::default();
        }
        let mut buf = [0u8; 4];
        for l in ch.to_lowercase() {
            for &b in l.encode_utf8(&mut buf).as_bytes() {
                h.push(b);
            }
        }
    }
    if start != usize::MAX {
        emit(&h, start, e);
    }
}

/// One run of word bytes: hashed whole when ASCII, else split by chars.
#[inline(always)]
fn run(text: &str, s: usize, e: usize, f: &mut impl FnMut(u64, usize, usize)) {
    let bytes = text.as_bytes();
    if one_letter(bytes, s, e) {
        return;
    }
    match ascii_hash(bytes, s, e) {
        Some(h) => f(h, s, e),
        None => split_chars(text, s, e, f),
    }
}

/// Calls `f(hash, start, end)` for each word of `text` in order, with its
/// byte range; words of one ASCII letter are left out.
#[inline]
pub fn for_each_word(text: &str, mut f: impl FnMut(u64, usize, usize)) {
    let bytes = text.as_bytes();
    let mut open = usize::MAX;
    let mut base = 0;
    while base < bytes.len() {
        let mut tail = [0u8; 64];
        let block: &[u8; 64] = match bytes.get(base..base + 64) {
            Some(b) => b.try_into().expect("64 bytes"),
            None => {
                // Zeros past the end separate.
                tail[..bytes.len() - base].copy_from_slice(&bytes[base..]);
                &tail
            }
        };
        let mask = word_bytes(block);
        let mut from = 0u32;
        loop {
            if open != usize::MAX {
                let ends = !mask & (u64::MAX << from);
                if ends == 0 {
                    break; // the run goes on in the next block
                }
                from = ends.trailing_zeros();
                run(text, open, base + from as usize, &mut f);
                open = usize::MAX;
            }
            let starts = mask & (u64::MAX << from);
            if starts == 0 {
                break;
            }
            from = starts.trailing_zeros();
            open = base + from as usize;
        }
        base += 64;
    }
    if open != usize::MAX {
        run(text, open, bytes.len(), &mut f);
    }
}

/// The number of words of `text`.
pub fn count_words(text: &str) -> usize {
    let mut n = 0;
    for_each_word(text, |_, _, _| n += 1);
    n
}

/// The key of a k-word sequence whose prefix-hash difference is `h`.
#[inline]
fn key(h: u64, k: usize) -> u64 {
    // 0 marks an empty table slot.
    mix(h ^ (k as u64).wrapping_mul(PRIME)).max(1)
}

/// The words of one text: their prefix hashes and byte ranges, from which
/// the key of any run of consecutive words is one subtraction away.
#[derive(Debug, Default)]
pub struct Words {
    /// Hash of words `0..i`, at `i` (starts with 0).
    prefix: Vec<u64>,
    /// First byte of each word.
    starts: Vec<usize>,
    /// Byte after each word.
    ends: Vec<usize>,
}

impl Words {
    /// Reads the words of `text` (those of the text before are forgotten).
    pub fn scan(&mut self, text: &str) {
        self.prefix.clear();
        self.starts.clear();
        self.ends.clear();
        self.prefix.push(0);
        let mut p = 0u64;
        let (prefix, starts, ends) = (&mut self.prefix, &mut self.starts, &mut self.ends);
        for_each_word(text, |w, s, e| {
            p = p.wrapping_mul(BASE).wrapping_add(w);
            prefix.push(p);
            starts.push(s);
            ends.push(e);
        });
    }

    /// Words read.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// Whether the text had no word.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// The key of the `k` words from word `first` (`1 ≤ k ≤ MAX_N`).
    #[inline]
    pub fn key(&self, first: usize, k: usize) -> u64 {
        key(self.prefix[first + k].wrapping_sub(self.prefix[first].wrapping_mul(POW[k])), k)
    }

    /// Calls `f(key)` for the `k` words from each word in turn (none when
    /// the text has fewer than `k` words).
    #[inline]
    pub fn each_key(&self, k: usize, mut f: impl FnMut(u64)) {
        let pow = POW[k];
        for (hi, lo) in self.prefix[k.min(self.prefix.len())..].iter().zip(&self.prefix) {
            f(key(hi.wrapping_sub(lo.wrapping_mul(pow)), k));
        }
    }

    /// The byte range of the `k` words from word `first`.
    #[inline]
    pub fn span(&self, first: usize, k: usize) -> (usize, usize) {
        (self.starts[first], self.ends[first + k - 1])
    }
}

/// The key of `text` as one sequence of all its words, and its word count
/// (how an item shorter than n words is looked for; at most [`MAX_N`] words).
pub fn whole_key(text: &str) -> (u64, usize) {
    let mut w = Words::default();
    w.scan(text);
    (w.key(0, w.len().min(MAX_N)), w.len())
}

/// Keys to item numbers: a filter that rules out almost every miss from
/// cache-resident memory, then an open-addressing table.
#[derive(Debug, Clone)]
pub struct Table {
    filter: Vec<u64>,
    keys: Vec<u64>,
    items: Vec<u32>,
    slot_mask: u64,
    len: usize,
}

impl Table {
    /// A table for about `capacity` keys.
    pub fn with_capacity(capacity: usize) -> Table {
        // Not rounded to a power of two: the filter stays as small as the keys allow.
        let words = (capacity.max(1) * FILTER_BITS_PER_KEY).div_ceil(64);
        let slots = (capacity.max(1) * 2).next_power_of_two();
        Table {
            filter: vec![0; words],
            keys: vec![0; slots],
            items: vec![0; slots],
            slot_mask: slots as u64 - 1,
            len: 0,
        }
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The filter word of `key` (Lemire's multiply-shift range reduction) and its two bits.
    #[inline]
    fn filter_at(&self, key: u64) -> (usize, u64) {
        let word = ((key >> 32) * self.filter.len() as u64) >> 32;
        (word as usize, 1u64 << (key & 63) | 1u64 << (key >> 6 & 63))
    }

    /// Adds `key` for `item` unless the key is held already (the first item keeps it).
    pub fn insert(&mut self, key: u64, item: u32) {
        debug_assert!(key != 0);
        if (self.len + 1) * 2 > self.keys.len() {
            self.grow();
        }
        let mut slot = self.start(key);
        loop {
            let k = self.keys[slot];
            if k == key {
                return;
            }
            if k == 0 {
                self.keys[slot] = key;
                self.items[slot] = item;
                self.len += 1;
                let (w, bits) = self.filter_at(key);
                self.filter[w] |= bits;
                return;
            }
            slot = (slot + 1) & self.slot_mask as usize;
        }
    }

    fn grow(&mut self) {
        let old_keys = std::mem::take(&mut self.keys);
        let old_items = std::mem::take(&mut self.items);
        *self = Table::with_capacity(old_keys.len());
        for (k, i) in old_keys.into_iter().zip(old_items) {
            if k != 0 {
                self.insert(k, i);
            }
        }
    }

    /// The slot where the probes of `key` start.
    #[inline(always)]
    fn start(&self, key: u64) -> usize {
        ((key >> 16) & self.slot_mask) as usize
    }

    /// Whether the filter lets `key` through (always, when it is held).
    #[inline]
    pub fn may_hold(&self, key: u64) -> bool {
        let (w, bits) = self.filter_at(key);
        self.filter[w] & bits == bits
    }

    /// Asks for the filter word of `key` (a hint: a large index's filter is out of the nearest caches).
    #[inline(always)]
    pub fn prefetch_filter(&self, key: u64) {
        prefetch(&self.filter[self.filter_at(key).0..][..1]);
    }

    /// Asks for the table slot where a probe of `key` starts (a hint).
    #[inline(always)]
    pub fn prefetch_slot(&self, key: u64) {
        let slot = self.start(key);
        prefetch(&self.keys[slot..][..1]);
        prefetch(&self.items[slot..][..1]);
    }

    /// The item of `key`, if held, from the table itself (no filter).
    #[inline]
    pub fn probe(&self, key: u64) -> Option<u32> {
        let mut slot = self.start(key);
        loop {
            let k = self.keys[slot];
            if k == key {
                return Some(self.items[slot]);
            }
            if k == 0 {
                return None;
            }
            slot = (slot + 1) & self.slot_mask as usize;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        for_each_word(text, |_, s, e| out.push(&text[s..e]));
        out
    }

    fn hashes(text: &str) -> Vec<u64> {
        let mut out = Vec::new();
        for_each_word(text, |h, _, _| out.push(h));
        out
    }

    #[test]
    fn words_ignore_case_punctuation_and_line_breaks() {
        assert_eq!(words("Don't  stop—\nthe (Ré)union!"), ["Don", "stop", "the", "Ré", "union"]);
        // Choice labels and one-letter words are left out; one digit or a non-ASCII letter is a word.
        assert_eq!(words("(A) 0 (B) a 3 é"), ["0", "3", "é"]);
        assert_eq!(hashes("Q: Which? (A) 12 (B) 30"), hashes("which\nA. 12\nB. 30"));
        assert_eq!(hashes("THE Cat, sat."), hashes("the\ncat sat"));
        assert_eq!(hashes("Éclair"), hashes("éclair"));
        assert_ne!(hashes("cat"), hashes("cast"));
        // A combining accent stays inside its word.
        assert_eq!(words("cafe\u{301} au lait"), ["cafe\u{301}", "au", "lait"]);
        assert_eq!(count_words(""), 0);
        assert_eq!(count_words("... --- !!!"), 0);
    }

    /// The words of `text` by the char-by-char reference alone.
    fn reference(text: &str) -> Vec<(u64, usize, usize)> {
        let mut out = Vec::new();
        split_chars(text, 0, text.len(), &mut |h, s, e| out.push((h, s, e)));
        out
    }

    fn scanned(text: &str) -> Vec<(u64, usize, usize)> {
        let mut out = Vec::new();
        for_each_word(text, |h, s, e| out.push((h, s, e)));
        out
    }

    #[test]
    fn block_scanner_equals_the_char_by_char_reference() {
        let pieces = [
            "The",
            "quick",
            "BROWN",
            "fox",
            "a",
            "I",
            "0",
            "42",
            "x9",
            "don’t",
            "Ré",
            "naïve",
            "ÉCOLE",
            "—",
            "«",
            "»",
            "日本語の文章",
            "cafe\u{301}",
            "straße",
            "İstanbul",
            "ǅ",
            "abcdefgh",
            "abcdefghi",
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            "12345678901234567",
            ",",
            ".",
            "(A)",
            "\n",
            "\t",
            "  ",
            "\u{a0}",
            "é",
            "ß",
            "Ωmega",
            "z",
        ];
        // Every text length up to a few blocks, so runs start and end on each side of block edges.
        let mut state = 0x1234_5678_9abc_def0u64;
        for round in 0..3000 {
            let mut text = String::new();
            let target = round % 200;
            while text.len() < target {
                state = mix(state.wrapping_add(1));
                text.push_str(pieces[(state % pieces.len() as u64) as usize]);
                if state >> 60 < 10 {
                    text.push(' ');
                }
            }
            assert_eq!(scanned(&text), reference(&text), "{text:?}");
        }
        for text in ["", "a", "ab", &"x".repeat(64), &"y".repeat(65), &"word ".repeat(40), &"é".repeat(50)] {
            assert_eq!(scanned(text), reference(text), "{text:?}");
        }
    }

    #[test]
    fn block_masks_equal_the_scalar_form() {
        for first in (0..=255u8).step_by(64) {
            let block: [u8; 64] = std::array::from_fn(|i| first.wrapping_add(i as u8));
            assert_eq!(word_bytes(&block), word_bytes_scalar(&block), "bytes from {first}");
        }
    }

    #[test]
    fn keys_of_any_stretch_equal_whole_keys() {
        let text = "One two, THREE four\nfive six seven";
        let mut w = Words::default();
        w.scan(text);
        assert_eq!(w.len(), 7);
        for k in 1..=7 {
            let mut keys = Vec::new();
            w.each_key(k, |key| keys.push(key));
            assert_eq!(keys.len(), 8 - k);
            for (first, &key) in keys.iter().enumerate() {
                let (s, e) = w.span(first, k);
                assert_eq!(key, w.key(first, k));
                assert_eq!(whole_key(&text[s..e]), (key, k), "{}", &text[s..e]);
            }
        }
        w.each_key(8, |_| panic!("fewer than 8 words"));
        // Ranges point at the words in the text, punctuation inside them kept.
        let text = "aa, bb. cc";
        w.scan(text);
        assert_eq!(w.span(0, 3), (0, text.len()));
    }

    #[test]
    fn table_finds_what_was_put_and_keeps_the_first_item() {
        let mut t = Table::with_capacity(4);
        for i in 0..10_000u64 {
            t.insert(mix(i).max(1), i as u32);
        }
        t.insert(mix(5).max(1), 99);
        assert_eq!(t.len(), 10_000);
        // How the stage looks a key up: the filter, then the table.
        let get = |key: u64| if t.may_hold(key) { t.probe(key) } else { None };
        for i in 0..10_000u64 {
            assert_eq!(get(mix(i).max(1)), Some(i as u32));
        }
        let misses = (10_000..110_000u64).filter(|&i| get(mix(i).max(1)).is_some()).count();
        assert_eq!(misses, 0);
    }
}
