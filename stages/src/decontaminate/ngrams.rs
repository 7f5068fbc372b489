//! Normalised word n-grams and the index that finds them: what
//! `decontaminate` compares benchmark items and documents by.
//!
//! ```text
//! text ──words: runs of letters, digits and combining marks, lowercased; the rest separates──► word hashes
//!      ──prefix hashes P(j) = P(j-1)·B + w(j)  (wrapping u64)──► the k words ending at j: P(j) - P(j-k)·B^k, mixed with k
//!      ──filter: one u64 per key block, two bits (≈1.4% false hits at 16 bits per key)──► table (open addressing) ──► item
//! ```
//! Punctuation, case and line breaks vanish in the words, so an item copied
//! with other quotes, capitals or wrapping still matches. Words of one ASCII
//! letter are left out on both sides, so the labels of multiple-choice
//! answers (`(A)`, `B.`, `c)`) and the articles `a` and `I` never break a match. Words are not split
//! inside a run of letters: Chinese or Japanese text without spaces is one
//! word per run, so n-grams of such benchmarks match only whole runs.

use crate::prefetch::prefetch;

/// Multiplier of the prefix hash (odd).
const BASE: u64 = 0x9E37_79B9_7F4A_7C15;
/// FNV-1a's 64-bit prime, per character of a word.
const PRIME: u64 = 0x0000_0100_0000_01B3;
/// FNV-1a's offset basis.
const SEED: u64 = 0xCBF2_9CE4_8422_2325;

/// Slots of the rolling rings: a power of two above the longest n (64).
const RING: usize = 128;

/// Bits of the filter per key: about 1.4% of misses pass to the table, whose
/// probes (out of cache for a large index) cost more than the filter's size.
const FILTER_BITS_PER_KEY: usize = 16;

/// Each ASCII byte as a word character (lowercased), or 0 for a separator.
const ASCII_WORD: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        t[b] = if c.is_ascii_digit() || c.is_ascii_lowercase() {
            c
        } else if c.is_ascii_uppercase() {
            c + 32
        } else {
            0
        };
        b += 1;
    }
    t
};

/// murmur3's 64-bit finaliser.
#[inline]
pub fn mix(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// Calls `f(hash, start, end)` for each word of `text` in order, with its
/// byte range; words of one ASCII letter are left out.
#[inline]
pub fn for_each_word(text: &str, mut f: impl FnMut(u64, usize, usize)) {
    let bytes = text.as_bytes();
    let (mut i, mut start, mut h) = (0, usize::MAX, SEED);
    while i < bytes.len() {
        let b = bytes[i];
        if b < 0x80 {
            let c = ASCII_WORD[b as usize];
            if c != 0 {
                if start == usize::MAX {
                    start = i;
                    h = SEED;
                }
                h = (h ^ u64::from(c)).wrapping_mul(PRIME);
            } else if start != usize::MAX {
                if !(i - start == 1 && bytes[start].is_ascii_alphabetic()) {
                    f(mix(h), start, i);
                }
                start = usize::MAX;
            }
            i += 1;
            continue;
        }
        let ch = text[i..].chars().next().expect("a char starts here");
        if ch.is_alphanumeric() || unicode_normalization::char::is_combining_mark(ch) {
            if start == usize::MAX {
                start = i;
                h = SEED;
            }
            for l in ch.to_lowercase() {
                h = (h ^ u64::from(l)).wrapping_mul(PRIME);
            }
        } else if start != usize::MAX {
            f(mix(h), start, i);
            start = usize::MAX;
        }
        i += ch.len_utf8();
    }
    if start != usize::MAX && !(bytes.len() - start == 1 && bytes[start].is_ascii_alphabetic()) {
        f(mix(h), start, bytes.len());
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

/// Slides over a text's words and yields the key of every n-gram, and of
/// every shorter whole sequence whose length is in `short`.
pub struct Roller {
    n: usize,
    /// Word counts below `n` to key as well (ascending).
    short: Vec<usize>,
    /// B^k for k in 0..=n.
    pow: Vec<u64>,
    /// Prefix hashes of the last positions, at `count % RING`.
    prefix: Box<[u64; RING]>,
    /// Start bytes of the last words, at `(count - 1) % RING`.
    starts: Box<[usize; RING]>,
}

impl Roller {
    /// A roller for `n`-grams and whole sequences of the `short` lengths.
    pub fn new(n: usize, short: &[usize]) -> Roller {
        let n = n.clamp(1, RING / 2);
        let mut pow = vec![1u64; n + 1];
        for k in 1..=n {
            pow[k] = pow[k - 1].wrapping_mul(BASE);
        }
        let mut short: Vec<usize> = short.iter().copied().filter(|&k| k > 0 && k < n).collect();
        short.sort_unstable();
        short.dedup();
        Roller { n, short, pow, prefix: Box::new([0; RING]), starts: Box::new([0; RING]) }
    }

    /// Calls `f(key, start byte, end byte)` for every n-gram of `text` (and
    /// every sequence of a short length), in the order their last word ends.
    #[inline]
    pub fn keys(&mut self, text: &str, mut f: impl FnMut(u64, usize, usize)) {
        const MASK: usize = RING - 1;
        let n = self.n;
        let pow_n = self.pow[n];
        let mut count = 0usize;
        let mut p = 0u64;
        let (prefix, starts) = (&mut *self.prefix, &mut *self.starts);
        prefix[0] = 0;
        for_each_word(text, |w, start, end| {
            p = p.wrapping_mul(BASE).wrapping_add(w);
            starts[count & MASK] = start;
            count += 1;
            prefix[count & MASK] = p;
            if count >= n {
                let h = p.wrapping_sub(prefix[(count - n) & MASK].wrapping_mul(pow_n));
                f(key(h, n), starts[(count - n) & MASK], end);
            }
            for &k in &self.short {
                if k > count {
                    break;
                }
                let h = p.wrapping_sub(prefix[(count - k) & MASK].wrapping_mul(self.pow[k]));
                f(key(h, k), starts[(count - k) & MASK], end);
            }
        });
    }

    /// The key of `text` as one sequence of all its words (for an item shorter than n words).
    pub fn whole(text: &str) -> (u64, usize) {
        let (mut p, mut k) = (0u64, 0usize);
        for_each_word(text, |w, _, _| {
            p = p.wrapping_mul(BASE).wrapping_add(w);
            k += 1;
        });
        (key(p, k), k)
    }
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

    #[test]
    fn rolling_keys_equal_whole_keys() {
        let text = "one two three four five six seven";
        let mut r = Roller::new(3, &[2]);
        let mut got = Vec::new();
        r.keys(text, |k, s, e| got.push((k, &text[s..e])));
        let expect: Vec<(u64, &str)> = [
            "one two",
            "one two three",
            "two three",
            "two three four",
            "three four",
            "three four five",
            "four five",
            "four five six",
            "five six",
            "five six seven",
            "six seven",
        ]
        .iter()
        .map(|s| (Roller::whole(s).0, *s))
        .collect();
        let mut got_sorted = got.clone();
        got_sorted.sort();
        let mut expect_sorted = expect.clone();
        expect_sorted.sort();
        assert_eq!(got_sorted, expect_sorted);
        // Ranges point at the words in the text, punctuation inside them kept.
        let text = "aa, bb. cc";
        let mut spans = Vec::new();
        Roller::new(3, &[]).keys(text, |_, s, e| spans.push(&text[s..e]));
        assert_eq!(spans, ["aa, bb. cc"]);
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
