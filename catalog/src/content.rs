//! Content hashes: what a sequence of rows is, independent of how the rows
//! are cut into shard files. A version's digest is made from them, so a
//! version whose small shards were merged (at commit, or by `smelt catalog
//! compact`) keeps its digest (docs/adr/0018-compaction.md).
//!
//! Each row is hashed to 128 bits (the sink does it, over every column; see
//! `smelt_engine`'s row hashing). A sequence of row hashes `r_1 .. r_n` is
//! then the pair of polynomials `Σ (r_i + 1) · B^(n-i)` modulo the Mersenne
//! prime 2^61 - 1, one per 64-bit half of the row hashes with its own base,
//! with the row count. Polynomials of sequences concatenate:
//! `H(A ‖ B) = H(A) · B^|B| + H(B)`, so the hash of a merged shard is
//! computed from the hashes of its parts, and equals the one computed from
//! its rows.
//!
//! ```text
//! rows ──row hash (128 bit)──► ContentHash::push ──► shard's `content`
//! shard contents ──ContentHash::concat, in version order──► version digest (with the schema)
//! ```

use std::fmt;

/// 2^61 - 1.
const P: u64 = (1 << 61) - 1;
/// The bases of the two polynomials (fixed: they are part of every digest).
const BASES: [u64; 2] = [0x1f3d_5b79_a2c4_e687 % P, 0x2a7c_9e1d_3b5f_8061 % P];
/// Prefix of a stored content hash.
const PREFIX: &str = "poly61x2:";

fn mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    let folded = (p & u128::from(P)) + (p >> 61);
    reduce(u64::try_from(folded).unwrap_or(u64::MAX))
}

fn reduce(x: u64) -> u64 {
    let x = (x & P) + (x >> 61);
    if x >= P {
        x - P
    } else {
        x
    }
}

fn add(a: u64, b: u64) -> u64 {
    reduce(a + b)
}

fn pow(mut base: u64, mut exp: u64) -> u64 {
    let mut acc = 1;
    while exp > 0 {
        if exp & 1 == 1 {
            acc = mul(acc, base);
        }
        base = mul(base, base);
        exp >>= 1;
    }
    acc
}

/// The content hash of a sequence of rows (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContentHash {
    poly: [u64; 2],
    rows: u64,
}

impl ContentHash {
    /// Appends one row, given its 128-bit row hash.
    pub fn push(&mut self, row: u128) {
        let halves = [row as u64, (row >> 64) as u64];
        for k in 0..2 {
            self.poly[k] = add(mul(self.poly[k], BASES[k]), add(reduce(halves[k]), 1));
        }
        self.rows += 1;
    }

    /// The hash of `self` followed by `next`.
    #[must_use]
    pub fn concat(self, next: ContentHash) -> ContentHash {
        let mut poly = [0; 2];
        for k in 0..2 {
            poly[k] = add(mul(self.poly[k], pow(BASES[k], next.rows)), next.poly[k]);
        }
        ContentHash { poly, rows: self.rows + next.rows }
    }

    /// Rows hashed.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The stored form's bytes, for digests.
    pub fn to_bytes(&self) -> [u8; 24] {
        let mut b = [0; 24];
        b[..8].copy_from_slice(&self.poly[0].to_le_bytes());
        b[8..16].copy_from_slice(&self.poly[1].to_le_bytes());
        b[16..].copy_from_slice(&self.rows.to_le_bytes());
        b
    }

    /// Reads the stored form (`poly61x2:<hex>` as [`fmt::Display`] writes it)
    /// of a shard of `rows` rows.
    pub fn parse(s: &str, rows: u64) -> Option<ContentHash> {
        let hex = s.strip_prefix(PREFIX)?;
        if hex.len() != 32 {
            return None;
        }
        let a = u64::from_str_radix(&hex[..16], 16).ok()?;
        let b = u64::from_str_radix(&hex[16..], 16).ok()?;
        (a < P && b < P).then_some(ContentHash { poly: [a, b], rows })
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{:016x}{:016x}", self.poly[0], self.poly[1])
    }
}

/// The content of shards in order, or `None` when one has no content hash
/// (written before smelt recorded them).
pub fn concat_shards<'a>(shards: impl IntoIterator<Item = &'a crate::model::ShardEntry>) -> Option<ContentHash> {
    shards
        .into_iter()
        .try_fold(ContentHash::default(), |acc, s| Some(acc.concat(ContentHash::parse(s.content.as_deref()?, s.rows)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(rows: &[u128]) -> ContentHash {
        let mut h = ContentHash::default();
        rows.iter().for_each(|r| h.push(*r));
        h
    }

    #[test]
    fn concatenation_equals_hashing_the_rows() {
        let rows: Vec<u128> =
            (0..50u128).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834) ^ i).collect();
        let whole = of(&rows);
        for cut in [0, 1, 17, 49, 50] {
            assert_eq!(of(&rows[..cut]).concat(of(&rows[cut..])), whole, "cut at {cut}");
        }
        let three = of(&rows[..5]).concat(of(&rows[5..30])).concat(of(&rows[30..]));
        assert_eq!(three, whole);
        assert_eq!(whole.rows(), 50);
    }

    #[test]
    fn order_and_content_matter() {
        assert_ne!(of(&[1, 2]), of(&[2, 1]));
        assert_ne!(of(&[1]), of(&[1, 0]));
        assert_ne!(of(&[0]), of(&[]));
        assert_ne!(of(&[u128::MAX]), of(&[u128::MAX - 1]));
    }

    #[test]
    fn stored_form_round_trips() {
        let h = of(&[7, 8, u128::MAX]);
        assert_eq!(ContentHash::parse(&h.to_string(), 3), Some(h));
        assert_eq!(ContentHash::parse("poly61x2:zz", 3), None);
        assert_eq!(ContentHash::parse("xxh3-128:00000000000000000000000000000000", 1), None);
    }

    #[test]
    fn modular_arithmetic_stays_reduced() {
        assert_eq!(mul(P - 1, P - 1), 1);
        assert_eq!(add(P - 1, 1), 0);
        assert_eq!(pow(BASES[0], 0), 1);
        assert_eq!(pow(2, 61), 1);
    }
}
