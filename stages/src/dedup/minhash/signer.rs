//! MinHash signatures: shingles of the simplified words, xxh64, and the
//! minimum of each permutation.

use super::mt19937::Mt19937;
use super::simplify::simplify_text;
use super::DedupMinhashConfig;
use crate::filters::words::{split_into_words, Segmenter};

/// The Mersenne prime 2^61 − 1 of datatrove's permutations.
const MERSENNE: u64 = (1 << 61) - 1;

/// `x mod (2^61 − 1)` for any u64.
#[inline]
fn mod_mersenne(x: u64) -> u64 {
    let r = (x & MERSENNE) + (x >> 61);
    if r >= MERSENNE {
        r - MERSENNE
    } else {
        r
    }
}

/// Computes datatrove-identical MinHash signatures.
#[derive(Debug)]
pub struct Signer {
    pub(super) a: Vec<u64>,
    b: Vec<u64>,
    n_grams: usize,
}

/// Reusable buffers of [`Signer::signature`].
#[derive(Default)]
pub struct Scratch {
    simplified: String,
    shingle: String,
    hashes: Vec<u64>,
}

impl Signer {
    /// The permutation parameters of datatrove's `MinhashDedupSignature.parameters`.
    pub fn new(c: &DedupMinhashConfig) -> Self {
        let n = c.buckets * c.hashes_per_bucket;
        let mut gen = Mt19937::new(c.seed);
        let a = (0..n).map(|_| gen.randint_u64(1, MERSENNE)).collect();
        let b = (0..n).map(|_| gen.randint_u64(0, MERSENNE)).collect();
        Signer { a, b, n_grams: c.n_grams }
    }

    /// The shingle hashes of `text` (datatrove's `get_shingles`), in order.
    pub fn shingles(&self, text: &str, segmenter: Segmenter, scratch: &mut Scratch) -> Vec<u64> {
        let mut out = Vec::new();
        self.shingles_into(text, segmenter, scratch, &mut out);
        out
    }

    fn shingles_into(&self, text: &str, segmenter: Segmenter, scratch: &mut Scratch, out: &mut Vec<u64>) {
        out.clear();
        simplify_text(text, &mut scratch.simplified);
        let mut words = Vec::new();
        split_into_words(&scratch.simplified, segmenter, &mut words);
        if words.len() < self.n_grams {
            return;
        }
        for gram in words.windows(self.n_grams) {
            scratch.shingle.clear();
            for (i, w) in gram.iter().enumerate() {
                if i > 0 {
                    scratch.shingle.push(' ');
                }
                scratch.shingle.push_str(w);
            }
            out.push(xxhash_rust::xxh64::xxh64(scratch.shingle.as_bytes(), 0));
        }
    }

    /// The signature of `text` into `sig` (all hashes, band after band), or
    /// false when it has no shingle (fewer words than `n_grams`).
    pub fn signature(&self, text: &str, segmenter: Segmenter, scratch: &mut Scratch, sig: &mut Vec<u64>) -> bool {
        let mut hashes = std::mem::take(&mut scratch.hashes);
        self.shingles_into(text, segmenter, scratch, &mut hashes);
        sig.clear();
        sig.resize(self.a.len(), u64::MAX);
        for &x in &hashes {
            for ((s, &a), &b) in sig.iter_mut().zip(&self.a).zip(&self.b) {
                // numpy uint64 arithmetic wraps before the modulo.
                let v = mod_mersenne(x.wrapping_mul(a).wrapping_add(b));
                if v < *s {
                    *s = v;
                }
            }
        }
        let any = !hashes.is_empty();
        scratch.hashes = hashes;
        any
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::defaults;
    use super::*;

    #[test]
    fn parameters_equal_numpy_random_state() {
        // numpy 2.4.6: RandomState(1).randint(1, 2**61-1, dtype=uint64, size=112), then (0, 2**61-1).
        let s = Signer::new(&defaults());
        assert_eq!(s.a.len(), 112);
        assert_eq!(s.a[..3], [775169054918279404, 1758426461858698313, 2109959069025162]);
        assert_eq!(s.a[111], 223865076026037746);
        assert_eq!(s.b[..3], [1062448801025099917, 1324811268927594100, 1217488311597731462]);
        assert_eq!(s.b[111], 1097409548522419201);
    }

    #[test]
    fn mersenne_modulo() {
        for x in [0, 1, MERSENNE - 1, MERSENNE, MERSENNE + 1, u64::MAX, u64::MAX - 7, 1 << 63] {
            assert_eq!(mod_mersenne(x), x % MERSENNE, "{x}");
        }
    }

    #[test]
    fn signatures_equal_datatrove() {
        // Values from datatrove 0.10.1 MinhashDedupSignature(config=MinhashConfig()).get_signature(get_shingles(text)),
        // computed with ~/.cache/smelt-peers/venv (numpy 2.4.6, xxhash, spaCy 3.8 blank "en").
        let s = Signer::new(&defaults());
        let mut scratch = Scratch::default();
        let mut sig = Vec::new();
        let t1 = "The quick brown fox jumps over the lazy dog. It was 3.14 degrees at 10:30, said Mr. O'Neil!";
        let sh = s.shingles(t1, Segmenter::English, &mut scratch);
        assert_eq!((sh.len(), sh[0]), (16, 7797000677988824208));
        assert!(s.signature(t1, Segmenter::English, &mut scratch, &mut sig));
        assert_eq!(
            sig[..8],
            [
                85330943174081874,
                175021855724751277,
                302227827184868053,
                11020519422042938,
                53559052118215307,
                29158846513531735,
                163177125024804319,
                204404170303891102
            ]
        );
        assert_eq!(
            sig[104..],
            [
                138080280408424662,
                212222752476155101,
                200020302528876325,
                66167128343108654,
                1765945916311590,
                441787638492695253,
                227311182905181596,
                3963570588256049
            ]
        );
        let t2 =
            "Café déjà vu — naïve coöperation in São Paulo; 1,000,000 people didn't   care.\n\nNew line here, twice.";
        assert_eq!(s.shingles(t2, Segmenter::English, &mut scratch)[0], 4637080560052264693);
        assert!(s.signature(t2, Segmenter::English, &mut scratch, &mut sig));
        assert_eq!(
            sig[..8],
            [
                304626807260492972,
                171217542402245573,
                340359984706400615,
                12997252328864793,
                32266331820189576,
                1938453440616973,
                11388426140811900,
                13343244205543199
            ]
        );
        assert_eq!(
            sig[104..],
            [
                139139056480978640,
                75935693767405712,
                230827615395285481,
                173744432893853388,
                16815948652258692,
                105247797438701035,
                66777232870110729,
                133237326027677448
            ]
        );
        // Exactly one shingle, whose hash is above 2^63 (the multiplication wraps).
        let t3 = "one two three four five";
        assert_eq!(s.shingles(t3, Segmenter::English, &mut scratch), [16779001585721188446]);
        assert!(s.signature(t3, Segmenter::English, &mut scratch, &mut sig));
        assert_eq!(
            sig[..8],
            [
                699275049159941947,
                1668490093867446599,
                889504911880821557,
                1551604595285391346,
                383147901504461938,
                368063453279159230,
                1189702035984891960,
                1500586479833668126
            ]
        );
        assert_eq!(
            sig[104..],
            [
                1486271680580835655,
                1833971666700873554,
                1611486037240835381,
                2061213241286577803,
                503107812181541087,
                2167288653533356246,
                2080465638341788154,
                1688177567886525154
            ]
        );
    }

    #[test]
    fn short_and_empty_documents_have_no_signature() {
        // datatrove: `ngrams` of fewer than n words is empty, and such documents get no signature.
        let s = Signer::new(&defaults());
        let mut scratch = Scratch::default();
        let mut sig = Vec::new();
        for t in ["", "   \n\t", "one two three four", "!!! ??? ...", "1 2 3 4"] {
            assert!(!s.signature(t, Segmenter::English, &mut scratch, &mut sig), "{t:?}");
        }
    }

    #[test]
    fn unspaced_scripts_get_shingles() {
        // Snippets from ../shared/data/news/newspaper4k-0.9.6-tests-data/txt (the newspaper4k
        // test fixtures, MIT licence): Chinese, Japanese and Thai news text.
        let s = Signer::new(&defaults());
        let mut scratch = Scratch::default();
        for (lang, text) in [("zh", ZH), ("ja", JA), ("th", TH)] {
            let seg = Segmenter::for_language(lang);
            let sh = s.shingles(text, seg, &mut scratch);
            assert!(sh.len() >= 10, "{lang}: {} shingles", sh.len());
            // The text repeated twice has nearly the same shingle set, so most hashes agree.
            let mut sig_a = Vec::new();
            let mut sig_b = Vec::new();
            assert!(s.signature(text, seg, &mut scratch, &mut sig_a));
            assert!(s.signature(&format!("{text}{text}"), seg, &mut scratch, &mut sig_b));
            let same = sig_a.iter().zip(&sig_b).filter(|(a, b)| a == b).count();
            assert!(same > 80, "{lang}: {same}/112 hashes agree");
        }
    }

    const ZH: &str = include_str!("../../../tests/fixtures/minhash/zh.txt");
    const JA: &str = include_str!("../../../tests/fixtures/minhash/ja.txt");
    const TH: &str = include_str!("../../../tests/fixtures/minhash/th.txt");
}
