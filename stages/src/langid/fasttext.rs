//! A reader for fastText's binary model format (`.bin` and the quantized
//! `.ftz`) and its supervised `predict`, written to give the same answers as
//! fastText 0.9.2 (the version the Python `fasttext` wheel ships) bit for bit:
//! the same float operations in the same order.
//!
//! ```text
//! text ──split on ' ' \n \r \t \v \f \0, then "</s>"──► tokens
//!      ──word id or char n-grams "<tok>" (minn..=maxn, FNV-1a on bytes with the int8 quirk)──► input rows
//!      ──sum in order, × (1/count)──► hidden
//!      ──hierarchical softmax (DFS over the Huffman tree) | softmax | one-vs-all──► (label, p + 1e-5)
//! ```
//!
//! File layout (all little-endian): magic `793712314`, version (11 or 12),
//! args (12 × i32 then f64), dictionary (sizes, then each entry as a
//! NUL-terminated string, i64 count, i8 type; then the pruned n-gram index),
//! `bool` quantized input, the input matrix (dense: i64 rows, i64 cols,
//! f32s; quantized: `qnorm`, rows, cols, codes, a product quantizer with 256
//! centroids per sub-quantizer, and with `qnorm` the norm codes and their
//! quantizer), `bool` quantized output, the output matrix.

use std::collections::HashMap;
use std::path::Path;

use crate::prefetch::prefetch;

/// fastText's magic number at the start of every model file.
const MAGIC: i32 = 793_712_314;
/// The end-of-sentence token fastText appends to every line.
pub const EOS: &str = "</s>";
/// Prefix of label entries in the dictionary.
const LABEL_PREFIX: &str = "__label__";
/// Centroids per sub-quantizer.
const KSUB: usize = 256;
/// Quantized input matrices up to this many values (64 MiB as f32) are decoded at load.
const DEQUANTIZE_MAX_FLOATS: usize = 16 << 20;

/// Why a model could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file could not be read.
    #[error("cannot read fastText model {path}: {source}")]
    Io {
        /// The model path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a model this reader understands.
    #[error("{origin} is not a usable fastText model: {message}")]
    Format {
        /// Where the bytes came from (a path, or "the embedded LID-176 model").
        origin: String,
        /// What is wrong.
        message: String,
    },
}

/// The loss a supervised model was trained with; it decides how scores are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Hierarchical softmax (LID-176).
    HierarchicalSoftmax,
    /// Negative sampling: independent sigmoids per label.
    NegativeSampling,
    /// Softmax over all labels.
    Softmax,
    /// One-vs-all: independent sigmoids per label.
    OneVsAll,
}

/// A product quantizer (fastText `ProductQuantizer`).
#[derive(Debug)]
struct ProductQuantizer {
    nsubq: usize,
    dsub: usize,
    lastdsub: usize,
    centroids: Vec<f32>,
}

impl ProductQuantizer {
    fn centroid(&self, m: usize, code: u8) -> &[f32] {
        let i = usize::from(code);
        if m == self.nsubq - 1 {
            let start = m * KSUB * self.dsub + i * self.lastdsub;
            &self.centroids[start..start + self.lastdsub]
        } else {
            let start = (m * KSUB + i) * self.dsub;
            &self.centroids[start..start + self.dsub]
        }
    }
}

/// A model matrix, dense or product-quantized.
#[derive(Debug)]
enum Matrix {
    Dense {
        rows: usize,
        cols: usize,
        data: Vec<f32>,
    },
    Quantized {
        rows: usize,
        cols: usize,
        codes: Vec<u8>,
        pq: ProductQuantizer,
        norms: Option<(Vec<u8>, ProductQuantizer)>,
    },
}

impl Matrix {
    fn rows(&self) -> usize {
        match self {
            Matrix::Dense { rows, .. } | Matrix::Quantized { rows, .. } => *rows,
        }
    }

    fn cols(&self) -> usize {
        match self {
            Matrix::Dense { cols, .. } | Matrix::Quantized { cols, .. } => *cols,
        }
    }

    /// The same matrix with its rows decoded, when it is quantized and has at
    /// most `max_floats` values: adding a decoded row gives the very same
    /// floats (`x += alpha * c` rounds `alpha * c` to f32 either way) with one
    /// contiguous read instead of a centroid lookup per sub-quantizer.
    fn dequantized(self, max_floats: usize) -> Matrix {
        let (rows, cols) = (self.rows(), self.cols());
        if matches!(self, Matrix::Dense { .. }) || rows.saturating_mul(cols) > max_floats {
            return self;
        }
        let Matrix::Quantized { codes, pq, norms, .. } = &self else { unreachable!("checked above") };
        let mut data = vec![0.0f32; rows * cols];
        for (i, row) in data.chunks_exact_mut(cols).enumerate() {
            let alpha = norm(norms, i);
            for (m, &c) in codes[pq.nsubq * i..pq.nsubq * (i + 1)].iter().enumerate() {
                for (x, cn) in row[m * pq.dsub..].iter_mut().zip(pq.centroid(m, c)) {
                    *x = alpha * *cn;
                }
            }
        }
        Matrix::Dense { rows, cols, data }
    }

    /// `x += row r` for each of `rows`, in order (fastText's `computeHidden`
    /// sum, the same float operations). Dense rows a few kilobytes ahead
    /// are prefetched: in a large model each row is a cache miss, and
    /// fetching them one after the other is most of the time.
    fn add_rows(&self, x: &mut [f32], rows: &[u32]) {
        match self {
            Matrix::Dense { cols, data, .. } => match *cols {
                8 => add_dense::<8>(x, data, rows),
                16 => add_dense::<16>(x, data, rows),
                32 => add_dense::<32>(x, data, rows),
                64 => add_dense::<64>(x, data, rows),
                cols => each_row(data, cols, rows, |row| {
                    for (xj, a) in x.iter_mut().zip(row) {
                        *xj += *a;
                    }
                }),
            },
            Matrix::Quantized { .. } => {
                for &r in rows {
                    self.add_row(x, r as usize);
                }
            }
        }
    }

    /// `x += row i` (fastText `addRowToVector`).
    fn add_row(&self, x: &mut [f32], i: usize) {
        match self {
            Matrix::Dense { cols, data, .. } => {
                for (xj, a) in x.iter_mut().zip(&data[i * cols..(i + 1) * cols]) {
                    *xj += *a;
                }
            }
            Matrix::Quantized { codes, pq, norms, .. } => {
                let alpha = norm(norms, i);
                let code = &codes[pq.nsubq * i..pq.nsubq * (i + 1)];
                for (m, &c) in code.iter().enumerate() {
                    let centroid = pq.centroid(m, c);
                    for (xj, cn) in x[m * pq.dsub..].iter_mut().zip(centroid) {
                        *xj += alpha * *cn;
                    }
                }
            }
        }
    }

    /// `row i · x` (fastText `dotRow`).
    fn dot_row(&self, x: &[f32], i: usize) -> f32 {
        match self {
            Matrix::Dense { cols, data, .. } => {
                let mut d = 0.0f32;
                for (a, xj) in data[i * cols..(i + 1) * cols].iter().zip(x) {
                    d += *a * *xj;
                }
                d
            }
            Matrix::Quantized { codes, pq, norms, .. } => {
                let alpha = norm(norms, i);
                let code = &codes[pq.nsubq * i..pq.nsubq * (i + 1)];
                let mut res = 0.0f32;
                for (m, &c) in code.iter().enumerate() {
                    let centroid = pq.centroid(m, c);
                    for (xj, cn) in x[m * pq.dsub..].iter().zip(centroid) {
                        res += *xj * *cn;
                    }
                }
                res * alpha
            }
        }
    }
}

/// Calls `add` with each of `rows` of the dense `data` (`cols` floats a
/// row), in order, the rows a few kilobytes ahead prefetched.
#[inline(always)]
fn each_row<'a>(data: &'a [f32], cols: usize, rows: &[u32], mut add: impl FnMut(&'a [f32])) {
    let ahead = (PREFETCH_BYTES / (cols * 4)).clamp(1, 16);
    for (i, &r) in rows.iter().enumerate() {
        if let Some(&next) = rows.get(i + ahead) {
            prefetch(&data[next as usize * cols..][..cols]);
        }
        add(&data[r as usize * cols..][..cols]);
    }
}

/// [`Matrix::add_rows`] for a dense matrix of `N` columns: the sum kept in
/// registers across the rows (each element still adds the rows in order:
/// the same float operations).
#[inline(always)]
fn add_dense<const N: usize>(x: &mut [f32], data: &[f32], rows: &[u32]) {
    let Ok(x) = <&mut [f32; N]>::try_from(x) else { unreachable!("the hidden vector has the matrix's columns") };
    let mut acc = *x;
    each_row(data, N, rows, |row| {
        let row: &[f32; N] = row.try_into().expect("N floats");
        for j in 0..N {
            acc[j] += row[j];
        }
    });
    *x = acc;
}

/// How far ahead [`Matrix::add_rows`] prefetches, in bytes of rows.
const PREFETCH_BYTES: usize = 2048;

fn norm(norms: &Option<(Vec<u8>, ProductQuantizer)>, i: usize) -> f32 {
    match norms {
        Some((codes, npq)) => npq.centroid(0, codes[i])[0],
        None => 1.0,
    }
}

/// A node of the hierarchical-softmax tree (fastText `HierarchicalSoftmaxLoss::Node`).
#[derive(Debug, Clone, Copy)]
struct Node {
    left: i32,
    right: i32,
    count: i64,
}

/// An open-addressing map from a fastText hash to an index; each slot keeps
/// the hash beside the index (-1: empty), so that a probe compares entry
/// bytes only when the hashes match.
#[derive(Debug)]
struct IdTable {
    slots: Vec<(u32, i32)>,
    mask: usize,
}

impl IdTable {
    fn with_len(len: usize) -> IdTable {
        let cap = (len * 2).max(16).next_power_of_two();
        IdTable { slots: vec![(0, -1); cap], mask: cap - 1 }
    }

    fn start(&self, h: u32) -> usize {
        (h.wrapping_mul(0x9E37_79B1) as usize) & self.mask
    }

    /// Asks for the slot where a lookup of `h` starts (a hint).
    #[inline(always)]
    fn prefetch(&self, h: u32) {
        prefetch(&self.slots[self.start(h)..][..1]);
    }
}

/// Pruned n-gram buckets of a `.ftz` model: open addressing by bucket, each
/// slot holding its (bucket, row) pair (bucket -1: empty), so that a lookup,
/// done for most n-grams of every token, reads one place in memory.
#[derive(Debug)]
struct PruneTable {
    slots: Vec<(i32, i32)>,
    mask: usize,
}

impl PruneTable {
    /// The table of `pairs` (distinct, non-negative buckets).
    fn new(pairs: &[(i32, i32)]) -> PruneTable {
        let cap = (pairs.len() * 2).max(16).next_power_of_two();
        let mut table = PruneTable { slots: vec![(-1, -1); cap], mask: cap - 1 };
        for &(from, to) in pairs {
            let mut slot = table.start(from as u32);
            while table.slots[slot].0 >= 0 {
                slot = (slot + 1) & table.mask;
            }
            table.slots[slot] = (from, to);
        }
        table
    }

    fn start(&self, h: u32) -> usize {
        (h.wrapping_mul(0x9E37_79B1) as usize) & self.mask
    }

    fn rows(&self) -> impl Iterator<Item = i32> + '_ {
        self.slots.iter().filter(|&&(from, _)| from >= 0).map(|&(_, to)| to)
    }
}

/// The dictionary: words (with their char n-gram ids), labels, pruned n-gram buckets.
#[derive(Debug)]
struct Dictionary {
    /// Entry strings, concatenated; `ends[i]` is where entry `i` ends.
    bytes: Vec<u8>,
    ends: Vec<usize>,
    is_label: Vec<bool>,
    counts: Vec<i64>,
    nwords: usize,
    /// Entry lookup by the entry's fastText hash.
    words: IdTable,
    /// Input rows of each word (itself, then its n-grams), flattened.
    subwords: Vec<u32>,
    subword_ends: Vec<usize>,
    /// Bucket -> pruned row index, when the model was pruned (`.ftz`).
    prune: Option<PruneTable>,
    /// `% bucket` (bucket 0: never used, see `parse`).
    bucket_mod: FastMod,
    minn: usize,
    maxn: usize,
}

impl Dictionary {
    fn entry(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    /// The entry id of `token`, if it is in the dictionary.
    fn find(&self, token: &[u8], h: u32) -> Option<usize> {
        let mut slot = self.words.start(h);
        loop {
            let (sh, id) = self.words.slots[slot];
            if id < 0 {
                return None;
            }
            if sh == h && self.entry(id as usize) == token {
                return Some(id as usize);
            }
            slot = (slot + 1) & self.words.mask;
        }
    }

    /// The input row of an n-gram bucket id (fastText `pushHash`), if it has one.
    fn bucket_row(&self, id: i64) -> Option<u32> {
        if id < 0 {
            return None;
        }
        match &self.prune {
            None => Some(self.nwords as u32 + id as u32),
            Some(table) => {
                let mut slot = table.start(id as u32);
                loop {
                    let (from, to) = table.slots[slot];
                    if from < 0 {
                        return None;
                    }
                    if i64::from(from) == id {
                        return Some(self.nwords as u32 + to as u32);
                    }
                    slot = (slot + 1) & table.mask;
                }
            }
        }
    }

    /// Calls `push` with the rows of the char n-grams of `word` (already
    /// wrapped in `<` and `>`), in fastText's order (`computeSubwords`).
    fn char_ngrams(&self, word: &[u8], mut push: impl FnMut(u32)) {
        for i in 0..word.len() {
            if word[i] & 0xC0 == 0x80 {
                continue;
            }
            let mut h = FNV_OFFSET;
            let mut j = i;
            let mut n = 1;
            while j < word.len() && n <= self.maxn {
                h = fnv_step(h, word[j]);
                j += 1;
                while j < word.len() && word[j] & 0xC0 == 0x80 {
                    h = fnv_step(h, word[j]);
                    j += 1;
                }
                if n >= self.minn && !(n == 1 && (i == 0 || j == word.len())) {
                    if let Some(row) = self.bucket_row(self.bucket_mod.of(u64::from(h)) as i64) {
                        push(row);
                    }
                }
                n += 1;
            }
        }
    }
}

const FNV_OFFSET: u32 = 2_166_136_261;

/// One FNV-1a step as fastText does it: the byte is sign-extended (`int8_t`) first.
const fn fnv_step(h: u32, byte: u8) -> u32 {
    (h ^ (byte as i8 as i32 as u32)).wrapping_mul(16_777_619)
}

/// fastText's string hash (`Dictionary::hash`).
pub fn hash(bytes: &[u8]) -> u32 {
    bytes.iter().fold(FNV_OFFSET, |h, &b| fnv_step(h, b))
}

/// fastText's `std_log`: `log(x + 1e-5)` in double, rounded to float.
fn std_log(x: f32) -> f32 {
    (f64::from(x) + 1e-5).ln() as f32
}

/// A supervised fastText model.
pub struct Model {
    /// Process-unique, for [`Scratch`]'s cache.
    id: u64,
    dim: usize,
    word_ngrams: usize,
    loss: Loss,
    dict: Dictionary,
    input: Matrix,
    output: Matrix,
    /// Label names without `__label__`.
    labels: Vec<String>,
    tree: Vec<Node>,
    /// fastText's sigmoid lookup table (one-vs-all and negative sampling).
    sigmoid_table: Vec<f32>,
    /// Whether [`Rows`] gathers and prefetches (a dense input matrix over [`GATHER_BYTES`]).
    gather_rows: bool,
    /// Every input row already multiplied by the output matrix ([`Model::projected`]).
    projection: Option<Projection>,
}

/// The input matrix multiplied by the output matrix, row by row: what a
/// row adds to each output score. fastText sums a text's input rows into a
/// hidden vector of `dim` floats, then takes its dot product with each
/// output row; the scores are linear in the rows, so adding each row's
/// projection (one float per output row) gives them too, reading
/// `outputs` floats per row instead of `dim`. The sums are in f64: the
/// scores are those of exact arithmetic to about 1e-7, and differ from
/// fastText's by the rounding of its f32 sums.
struct Projection {
    /// Output rows: floats per input row.
    outputs: usize,
    /// Input rows × `outputs`, each the f32 rounding of an f64 dot product.
    rows: Vec<f32>,
}

impl Projection {
    /// `sums += projection of row r` for each of `rows`, in order.
    #[inline(always)]
    fn add_rows(&self, sums: &mut [f64], rows: &[u32]) {
        let k = self.outputs;
        if k == 2 {
            let (mut a, mut b) = (sums[0], sums[1]);
            for &r in rows {
                let p = &self.rows[r as usize * 2..][..2];
                a += f64::from(p[0]);
                b += f64::from(p[1]);
            }
            (sums[0], sums[1]) = (a, b);
        } else {
            for &r in rows {
                for (s, p) in sums.iter_mut().zip(&self.rows[r as usize * k..][..k]) {
                    *s += f64::from(*p);
                }
            }
        }
    }
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("dim", &self.dim)
            .field("loss", &self.loss)
            .field("words", &self.dict.nwords)
            .field("labels", &self.labels.len())
            .field("input_rows", &self.input.rows())
            .field("projected", &self.projection.is_some())
            .finish()
    }
}

/// Reusable buffers for [`Model::predict`], with a cache of the input rows
/// of out-of-vocabulary tokens (most tokens: LID-176 knows 7,235 words).
#[derive(Debug, Default)]
pub struct Scratch {
    hidden: Vec<f32>,
    /// [`Projection`]: the text's output scores, summed.
    sums: Vec<f64>,
    /// The input rows of the text, in fastText's order.
    rows: Vec<u32>,
    output: Vec<f32>,
    word: Vec<u8>,
    word_hashes: Vec<u32>,
    /// The text's tokens: start and end byte (`u32::MAX`: the end-of-line token EOS) and hash.
    tokens: Vec<(u32, u32, u32)>,
    /// Where each token's rows are, in order.
    spans: Vec<Span>,
    oov: OovCache,
}

/// Out-of-vocabulary token -> its char n-gram rows, for one model. Cleared when full.
#[derive(Debug, Default)]
struct OovCache {
    model: u64,
    /// Open addressing: (token hash, token index + 1), 0 = empty.
    slots: Vec<(u32, u32)>,
    /// Per token: end of its bytes in `bytes`, end of its rows in `rows`.
    ends: Vec<(usize, usize)>,
    bytes: Vec<u8>,
    rows: Vec<u32>,
}

impl OovCache {
    /// Slots of the table when it starts (it doubles while one text needs more).
    const SLOTS: usize = 1 << 16;
    const MAX_ROWS: usize = 1 << 22;

    fn slot(&self, h: u32) -> usize {
        (h.wrapping_mul(0x9E37_79B1) >> 16) as usize & (self.slots.len() - 1)
    }

    /// Readies the cache for a text of `model`: emptied when it holds
    /// another model's tokens or has grown past its bounds (never within a
    /// text, so the spans a text's tokens got stay valid).
    fn begin(&mut self, model: u64) {
        if self.model != model || self.ends.len() >= Self::SLOTS / 2 || self.rows.len() >= Self::MAX_ROWS {
            self.model = model;
            self.slots.clear();
            self.slots.resize(Self::SLOTS, (0, 0));
            self.ends.clear();
            self.bytes.clear();
            self.rows.clear();
        }
    }

    /// Asks for the slot where a lookup of `h` starts (a hint; after [`OovCache::begin`]).
    #[inline(always)]
    fn prefetch(&self, h: u32) {
        prefetch(&self.slots[self.slot(h)..][..1]);
    }

    /// Where the rows of `token` (fastText hash `h`) are in `self.rows`,
    /// computed by `compute` on a miss.
    fn lookup(&mut self, token: &[u8], h: u32, compute: impl FnOnce(&mut Vec<u32>)) -> (u32, u32) {
        let span = |ends: &[(usize, usize)], i: usize| {
            let (b0, r0) = if i == 0 { (0, 0) } else { ends[i - 1] };
            (b0..ends[i].0, (r0 as u32, ends[i].1 as u32))
        };
        let mut slot = self.slot(h);
        loop {
            let (sh, idx) = self.slots[slot];
            if idx == 0 {
                break;
            }
            if sh == h {
                let (b, r) = span(&self.ends, idx as usize - 1);
                if &self.bytes[b] == token {
                    return r;
                }
            }
            slot = (slot + 1) & (self.slots.len() - 1);
        }
        self.bytes.extend_from_slice(token);
        compute(&mut self.rows);
        self.ends.push((self.bytes.len(), self.rows.len()));
        let i = self.ends.len();
        self.slots[slot] = (h, i as u32);
        if i * 2 >= self.slots.len() {
            self.grow();
        }
        span(&self.ends, i - 1).1
    }

    /// Twice the slots, every token placed again (one text with many new tokens).
    fn grow(&mut self) {
        let doubled = vec![(0, 0); self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, doubled);
        for (h, idx) in old.into_iter().filter(|&(_, idx)| idx != 0) {
            let mut slot = self.slot(h);
            while self.slots[slot].1 != 0 {
                slot = (slot + 1) & (self.slots.len() - 1);
            }
            self.slots[slot] = (h, idx);
        }
    }
}

/// Where a token's input rows are.
#[derive(Debug, Clone, Copy)]
enum Span {
    /// A word of the dictionary without char n-grams: its own row.
    Word(u32),
    /// `Dictionary::subwords[start..end]`.
    Subwords(u32, u32),
    /// `OovCache::rows[start..end]`.
    Oov(u32, u32),
}

/// The input rows of a text, summed into the hidden vector in order: at
/// once, or (`gather`, for input matrices too large for the caches) all
/// gathered first and summed with prefetching. Both do the same float
/// operations in the same order.
struct Rows<'a> {
    input: &'a Matrix,
    /// Rows are added as their projections into `sums` instead ([`Model::projected`]).
    projection: Option<&'a Projection>,
    hidden: &'a mut [f32],
    sums: &'a mut [f64],
    gathered: &'a mut Vec<u32>,
    gather: bool,
    count: usize,
}

impl Rows<'_> {
    #[inline(always)]
    fn add(&mut self, rows: &[u32]) {
        if let Some(p) = self.projection {
            p.add_rows(self.sums, rows);
        } else if self.gather {
            // A token has a few rows: a loop, not a call to memcpy.
            for &r in rows {
                self.gathered.push(r);
            }
        } else {
            self.input.add_rows(self.hidden, rows);
        }
        self.count += rows.len();
    }

    /// Sums what was gathered; returns the number of rows.
    fn finish(self) -> usize {
        if self.gather {
            self.input.add_rows(self.hidden, self.gathered);
        }
        self.count
    }
}

/// Whether [`Model::projected`] projects a model: a softmax or hierarchical
/// softmax loss, at most `dim / 4` output rows, no char n-grams.
fn projects(loss: Loss, outputs: usize, dim: usize, maxn: usize) -> bool {
    matches!(loss, Loss::Softmax | Loss::HierarchicalSoftmax) && outputs * 4 <= dim && maxn == 0
}

/// The [`Projection`] of `rows` input rows, `row(i, x)` writing row `i` into `x`.
fn project(rows: usize, dim: usize, output: &Matrix, mut row: impl FnMut(usize, &mut [f32])) -> Projection {
    let outputs = output.rows();
    let mut out = vec![0.0f32; outputs * dim];
    for (i, o) in out.chunks_exact_mut(dim).enumerate() {
        output.add_row(o, i);
    }
    let mut projected = vec![0.0f32; rows * outputs];
    let mut x = vec![0.0f32; dim];
    for (r, p) in projected.chunks_exact_mut(outputs).enumerate() {
        row(r, &mut x);
        for (pk, o) in p.iter_mut().zip(out.chunks_exact(dim)) {
            *pk = o.iter().zip(&x).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum::<f64>() as f32;
        }
    }
    Projection { outputs, rows: projected }
}

/// Input matrices larger than this gather a text's rows and prefetch them.
const GATHER_BYTES: usize = 256 << 10;

/// A process-unique id per loaded model, so a [`Scratch`] cache is never used across models.
fn next_model_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A label with its score, as fastText's `predict` returns them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// Index into [`Model::labels`].
    pub label: usize,
    /// `exp(log(p + 1e-5))`: the probability plus 1e-5 (so it may exceed 1 by that much).
    pub score: f32,
}

impl Model {
    /// Reads a model file.
    ///
    /// # Errors
    /// The file cannot be read, or is not a supervised fastText model; the message names the path.
    pub fn load(path: &Path) -> Result<Model, ModelError> {
        let bytes =
            std::fs::read(path).map_err(|source| ModelError::Io { path: path.display().to_string(), source })?;
        Model::from_bytes(&bytes, &path.display().to_string())
    }

    /// Reads a model from its bytes; `origin` names them in errors.
    ///
    /// # Errors
    /// The bytes are not a supervised fastText model (version 11 or 12).
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Model, ModelError> {
        let fail = |message: String| ModelError::Format { origin: origin.to_string(), message };
        let mut r = Reader { bytes, pos: 0 };
        parse(&mut r, false).map_err(fail)
    }

    /// The same model predicting through a [`Projection`]: every input row
    /// multiplied by the output matrix once, here, so that a text reads one
    /// float per output row for each of its rows instead of `dim` (a
    /// 2-label model of dim 100: 8 bytes a row instead of 400), and the
    /// input matrix dropped (the projection is `outputs / dim` of its size).
    /// The probabilities are those of exact arithmetic to about 1e-7; they
    /// differ from fastText's by the rounding of its f32 sum of a text's
    /// rows, which stays under 1e-6 for models without char n-grams (DCLM's
    /// classifier's shape) and grows with the number of rows with them.
    /// Returned unchanged where the projection would not pay or not hold:
    /// more than `dim / 4` output rows, char n-grams, or a one-vs-all or
    /// negative-sampling loss (fastText's table sigmoid turns a last-bit
    /// difference into a step of 1/512 now and then).
    #[must_use]
    pub fn projected(mut self) -> Model {
        if self.projection.is_some() || !projects(self.loss, self.output.rows(), self.dim, self.dict.maxn) {
            return self;
        }
        let input = std::mem::replace(&mut self.input, Matrix::Dense { rows: 0, cols: self.dim, data: Vec::new() });
        self.projection = Some(project(input.rows(), self.dim, &self.output, |r, x| {
            // The row as fastText adds it to the hidden vector (decoded, when quantized).
            x.fill(0.0);
            input.add_row(x, r);
        }));
        self.gather_rows = false;
        self
    }

    /// Reads a model from its bytes as [`Model::from_bytes`] then
    /// [`Model::projected`] would, without copying a dense input matrix
    /// first: the peak memory of reading is the bytes and the projection.
    ///
    /// # Errors
    /// The bytes are not a supervised fastText model (version 11 or 12).
    pub fn from_bytes_projected(bytes: &[u8], origin: &str) -> Result<Model, ModelError> {
        let fail = |message: String| ModelError::Format { origin: origin.to_string(), message };
        let model = parse(&mut Reader { bytes, pos: 0 }, true).map_err(fail)?;
        Ok(model.projected())
    }

    /// Whether the model predicts through a projection ([`Model::projected`]).
    pub fn is_projected(&self) -> bool {
        self.projection.is_some()
    }

    /// Label names, without `__label__`, in the model's order.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The index of a label name (without `__label__`).
    pub fn label_index(&self, name: &str) -> Option<usize> {
        self.labels.iter().position(|l| l == name)
    }

    /// The loss the model was trained with.
    pub fn loss(&self) -> Loss {
        self.loss
    }

    /// Predicts the labels of a text like fastText's Python
    /// `predict(text.replace("\n", " "), k=-1, threshold)` (how datatrove
    /// calls it): every label scoring at least `threshold`, best first.
    /// Newlines are word separators like spaces; as in fastText, reading
    /// stops at a literal `</s>` token (its end-of-line token). Returns
    /// nothing when no token has an input row (fastText would compute a NaN
    /// there).
    pub fn predict(&self, text: &str, threshold: f32, scratch: &mut Scratch, out: &mut Vec<Prediction>) {
        out.clear();
        if !self.hidden(text.as_bytes(), scratch) {
            return;
        }
        match self.loss {
            Loss::HierarchicalSoftmax => {
                if !self.tree.is_empty() {
                    self.dfs(self.tree.len() - 1, 0.0, std_log(threshold), scratch, out);
                }
            }
            Loss::Softmax | Loss::NegativeSampling | Loss::OneVsAll => {
                self.compute_output(scratch);
                for (i, &p) in scratch.output.iter().enumerate() {
                    if p >= threshold {
                        out.push(Prediction { label: i, score: std_log(p) });
                    }
                }
            }
        }
        // fastText pushes each label onto a heap, sorts the heap by log score (descending),
        // then returns exp of it; equal scores come out in the order that heap leaves them.
        heap_sort_like_libstdcxx(out);
        for p in out.iter_mut() {
            p.score = p.score.exp();
        }
    }

    /// Fills `scratch.hidden` with the average of the input rows of `line`
    /// (fastText `getLine` + `computeHidden`). False when there are none.
    fn hidden(&self, line: &[u8], scratch: &mut Scratch) -> bool {
        scratch.hidden.clear();
        scratch.hidden.resize(self.dim, 0.0);
        scratch.word_hashes.clear();
        scratch.rows.clear();
        scratch.sums.clear();
        scratch.sums.resize(self.projection.as_ref().map_or(0, |p| p.outputs), 0.0);
        let mut rows = Rows {
            input: &self.input,
            projection: self.projection.as_ref(),
            hidden: &mut scratch.hidden,
            sums: &mut scratch.sums,
            gathered: &mut scratch.rows,
            gather: self.gather_rows,
            count: 0,
        };
        // getLine, first pass: every token's bytes and hash, with the hash
        // table slots its lookups will read asked for ahead (a token's slots
        // are cache misses in a large vocabulary; fetched together, they overlap).
        let tokens = &mut scratch.tokens;
        tokens.clear();
        let oov = &mut scratch.oov;
        let subword_rows = self.dict.maxn > 0;
        if subword_rows {
            oov.begin(self.id);
        }
        let mut at = 0;
        loop {
            // readWord: skip separators; the end of the text is fastText's end of line, EOS.
            // The token's hash is computed as it is scanned.
            at += line[at..].iter().position(|&c| !SEPARATOR[usize::from(c)]).unwrap_or(line.len() - at);
            if at == line.len() {
                tokens.push((u32::MAX, u32::MAX, EOS_HASH));
                break;
            }
            let start = at;
            let mut h = FNV_OFFSET;
            while at < line.len() && !SEPARATOR[usize::from(line[at])] {
                h = fnv_step(h, line[at]);
                at += 1;
            }
            tokens.push((start as u32, at as u32, h));
            self.dict.words.prefetch(h);
            if subword_rows {
                oov.prefetch(h);
            }
            if h == EOS_HASH && &line[start..at] == EOS.as_bytes() {
                break;
            }
        }
        // Second pass (the tokens end with the first EOS): where each token's rows
        // are (dictionary or cache lookups, their slots fetched by now), the rows asked for ahead.
        let (word, spans) = (&mut scratch.word, &mut scratch.spans);
        spans.clear();
        for &(start, end, h) in tokens.iter() {
            let token: &[u8] = if start == u32::MAX { EOS.as_bytes() } else { &line[start as usize..end as usize] };
            let wid = self.dict.find(token, h);
            let label = match wid {
                Some(id) => self.dict.is_label[id],
                None => token.starts_with(LABEL_PREFIX.as_bytes()),
            };
            if !label {
                match wid {
                    None if token != EOS.as_bytes() && subword_rows => {
                        let (a, b) = oov.lookup(token, h, |rows| {
                            word.clear();
                            word.push(b'<');
                            word.extend_from_slice(token);
                            word.push(b'>');
                            self.dict.char_ngrams(word, |row| rows.push(row));
                        });
                        prefetch(&oov.rows[a as usize..b as usize]);
                        spans.push(Span::Oov(a, b));
                    }
                    None => {}
                    Some(id) if !subword_rows => spans.push(Span::Word(id as u32)),
                    Some(id) => {
                        let start = if id == 0 { 0 } else { self.dict.subword_ends[id - 1] };
                        let end = self.dict.subword_ends[id];
                        prefetch(&self.dict.subwords[start..end]);
                        spans.push(Span::Subwords(start as u32, end as u32));
                    }
                }
                if self.word_ngrams > 1 {
                    scratch.word_hashes.push(h);
                }
            }
        }
        for &span in spans.iter() {
            match span {
                Span::Word(id) => rows.add(&[id]),
                Span::Subwords(a, b) => rows.add(&self.dict.subwords[a as usize..b as usize]),
                Span::Oov(a, b) => rows.add(&oov.rows[a as usize..b as usize]),
            }
        }
        // addWordNgrams: hashes are int32 in fastText, widened to uint64 with sign extension.
        let hashes = &scratch.word_hashes;
        for i in 0..hashes.len() {
            let mut h = hashes[i] as i32 as i64 as u64;
            for &hj in hashes.iter().skip(i + 1).take(self.word_ngrams - 1) {
                h = h.wrapping_mul(116_049_371).wrapping_add(hj as i32 as i64 as u64);
                if let Some(row) = self.dict.bucket_row(self.dict.bucket_mod.of(h) as i64) {
                    rows.add(&[row]);
                }
            }
        }
        let count = rows.finish();
        if count == 0 {
            return false;
        }
        if self.projection.is_some() {
            // The output scores: fastText's hidden × (1/count), then · each output row.
            for s in scratch.sums.iter_mut() {
                *s /= count as f64;
            }
            return true;
        }
        let scale = (1.0f64 / count as f64) as f32;
        for x in scratch.hidden.iter_mut() {
            *x *= scale;
        }
        true
    }

    /// Hierarchical softmax DFS (fastText `HierarchicalSoftmaxLoss::dfs` with k = all labels).
    fn dfs(&self, node: usize, score: f32, log_threshold: f32, scratch: &Scratch, out: &mut Vec<Prediction>) {
        if score < log_threshold {
            return;
        }
        let n = self.tree[node];
        if n.left == -1 && n.right == -1 {
            out.push(Prediction { label: node, score });
            return;
        }
        let osz = self.labels.len();
        let f = self.output_score(scratch, node - osz);
        let f = (1.0f64 / f64::from(1.0f32 + (-f).exp())) as f32;
        self.dfs(n.left as usize, score + std_log(1.0 - f), log_threshold, scratch, out);
        self.dfs(n.right as usize, score + std_log(f), log_threshold, scratch, out);
    }

    /// Output row `i` · the hidden vector of the text [`Model::hidden`] read.
    fn output_score(&self, scratch: &Scratch, i: usize) -> f32 {
        match self.projection {
            Some(_) => scratch.sums[i] as f32,
            None => self.output.dot_row(&scratch.hidden, i),
        }
    }

    /// Output probabilities for softmax and sigmoid losses (fastText `computeOutput`).
    fn compute_output(&self, scratch: &mut Scratch) {
        let osz = self.labels.len();
        let mut scores = std::mem::take(&mut scratch.output);
        scores.clear();
        scores.extend((0..osz).map(|i| self.output_score(scratch, i)));
        scratch.output = scores;
        let out = &mut scratch.output;
        match self.loss {
            Loss::Softmax => {
                let max = out.iter().fold(out[0], |m, &x| m.max(x));
                let mut z = 0.0f32;
                for x in out.iter_mut() {
                    // fastText calls the unqualified `exp` here, C's double `exp`, not `std::exp(float)`.
                    *x = f64::from(*x - max).exp() as f32;
                    z += *x;
                }
                for x in out.iter_mut() {
                    *x /= z;
                }
            }
            _ => {
                for x in out.iter_mut() {
                    *x = self.sigmoid(*x);
                }
            }
        }
    }

    /// fastText's table sigmoid (`Loss::sigmoid`).
    fn sigmoid(&self, x: f32) -> f32 {
        const MAX: f32 = 8.0;
        const SIZE: f32 = 512.0;
        if x < -MAX {
            0.0
        } else if x > MAX {
            1.0
        } else {
            self.sigmoid_table[((x + MAX) * SIZE / MAX / 2.0) as usize]
        }
    }
}

/// Orders `out` (in the order fastText pushed them) as fastText's
/// `std::push_heap` per label then `std::sort_heap` with `comparePairs`
/// (`a.score > b.score`) leave them with libstdc++ (the C++ library of the
/// Linux wheels): best score first, and labels with equal scores in the
/// order that heap gives them rather than in label order.
fn heap_sort_like_libstdcxx(out: &mut [Prediction]) {
    // comp(a, b): a comes after b in the sorted output (a min-heap on the score).
    let comp = |a: &Prediction, b: &Prediction| a.score > b.score;
    // libstdc++ `__push_heap`: move `value` up from `hole` while its parent compares below it.
    fn push(
        heap: &mut [Prediction],
        mut hole: usize,
        top: usize,
        value: Prediction,
        comp: impl Fn(&Prediction, &Prediction) -> bool,
    ) {
        while hole > top {
            let parent = (hole - 1) / 2;
            if !comp(&heap[parent], &value) {
                break;
            }
            heap[hole] = heap[parent];
            hole = parent;
        }
        heap[hole] = value;
    }
    for len in 2..=out.len() {
        let value = out[len - 1];
        push(&mut out[..len], len - 1, 0, value, comp);
    }
    // libstdc++ `sort_heap`: `__pop_heap` of the front into the last place, `__adjust_heap` the rest.
    let mut len = out.len();
    while len > 1 {
        len -= 1;
        let value = out[len];
        out[len] = out[0];
        let heap = &mut out[..len];
        let (mut hole, mut child) = (0usize, 0usize);
        while child < (len - 1) / 2 {
            child = 2 * (child + 1);
            if comp(&heap[child], &heap[child - 1]) {
                child -= 1;
            }
            heap[hole] = heap[child];
            hole = child;
        }
        if len.is_multiple_of(2) && child == (len - 2) / 2 {
            child = 2 * (child + 1);
            heap[hole] = heap[child - 1];
            hole = child - 1;
        }
        push(heap, hole, 0, value, comp);
    }
}

/// fastText's word separators (`readWord`).
const fn is_separator(c: u8) -> bool {
    matches!(c, b' ' | b'\n' | b'\r' | b'\t' | 0x0b | 0x0c | 0)
}

/// [`is_separator`] as a table.
static SEPARATOR: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = is_separator(c as u8);
        c += 1;
    }
    t
};

/// The hash of [`EOS`].
const EOS_HASH: u32 = {
    let (b, mut h, mut i) = (EOS.as_bytes(), FNV_OFFSET, 0);
    while i < b.len() {
        h = fnv_step(h, b[i]);
        i += 1;
    }
    h
};

/// `x % d` for a fixed `d > 0` by multiplications (Lemire, Kaser and Kurz,
/// "Faster Remainder by Direct Computation", 2019: exact for every u64 `x`),
/// instead of a division per word n-gram.
#[derive(Debug, Clone, Copy)]
struct FastMod {
    m: u128,
    d: u64,
}

impl FastMod {
    fn new(d: u64) -> FastMod {
        assert!(d > 0, "modulo by 0");
        FastMod { m: (u128::MAX / u128::from(d)).wrapping_add(1), d }
    }

    #[inline(always)]
    fn of(self, x: u64) -> u64 {
        let low = self.m.wrapping_mul(u128::from(x));
        let bottom = ((low as u64 as u128) * u128::from(self.d)) >> 64;
        let top = (low >> 64) * u128::from(self.d);
        ((bottom + top) >> 64) as u64
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], String> {
        if self.bytes.len() - self.pos < n {
            return Err(format!(
                "truncated: {what} needs {n} bytes at offset {}, the file has {}",
                self.pos,
                self.bytes.len()
            ));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn i32(&mut self, what: &str) -> Result<i32, String> {
        Ok(i32::from_le_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }
    fn i64(&mut self, what: &str) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }
    fn f64(&mut self, what: &str) -> Result<f64, String> {
        Ok(f64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }
    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }
    fn f32s(&mut self, n: usize, what: &str) -> Result<Vec<f32>, String> {
        let bytes = self.take(n.checked_mul(4).ok_or_else(|| format!("{what}: size overflows"))?, what)?;
        Ok(le_f32s(bytes).collect())
    }
    /// A non-negative size, at most `max`.
    fn size(&mut self, wide: bool, max: usize, what: &str) -> Result<usize, String> {
        let v = if wide { self.i64(what)? } else { i64::from(self.i32(what)?) };
        if v < 0 || v as u64 > max as u64 {
            return Err(format!("{what} is {v}, expected 0..={max}"));
        }
        Ok(v as usize)
    }
}

/// Reads a model; with `may_project`, a qualifying model ([`projects`]) comes
/// out projected ([`Model::projected`]) straight from the bytes of a dense
/// input matrix, which is never copied.
fn parse(r: &mut Reader<'_>, may_project: bool) -> Result<Model, String> {
    if r.i32("magic number")? != MAGIC {
        return Err("wrong magic number (expected a fastText .bin or .ftz file)".into());
    }
    let version = r.i32("version")?;
    if version != 11 && version != 12 {
        return Err(format!("file format version {version}; this reader knows versions 11 and 12"));
    }
    let dim = r.size(false, 1 << 16, "dim")?;
    let _ws = r.i32("ws")?;
    let _epoch = r.i32("epoch")?;
    let _min_count = r.i32("minCount")?;
    let _neg = r.i32("neg")?;
    let word_ngrams = r.size(false, 64, "wordNgrams")?.max(1);
    let loss = match r.i32("loss")? {
        1 => Loss::HierarchicalSoftmax,
        2 => Loss::NegativeSampling,
        3 => Loss::Softmax,
        4 => Loss::OneVsAll,
        other => return Err(format!("unknown loss {other}")),
    };
    let model = r.i32("model")?;
    if model != 3 {
        return Err(format!("model type {model} is not a supervised (classifier) model"));
    }
    let bucket = r.size(false, i32::MAX as usize, "bucket")? as u32;
    let minn = r.size(false, 1 << 10, "minn")?;
    let mut maxn = r.size(false, 1 << 10, "maxn")?;
    let _lr_update_rate = r.i32("lrUpdateRate")?;
    let _t = r.f64("t")?;
    if version == 11 {
        maxn = 0; // old supervised models have no char n-grams
    }
    if dim == 0 {
        return Err("dim is 0".into());
    }

    // Dictionary.
    let size = r.size(false, i32::MAX as usize, "dictionary size")?;
    let nwords = r.size(false, size, "word count")?;
    let nlabels = r.size(false, size, "label count")?;
    if nwords + nlabels != size {
        return Err(format!("dictionary has {size} entries but {nwords} words and {nlabels} labels"));
    }
    let _ntokens = r.i64("token count")?;
    let prune_size = r.i64("pruned n-gram count")?;
    let mut bytes = Vec::new();
    let mut ends = Vec::with_capacity(size);
    let mut is_label = Vec::with_capacity(size);
    let mut counts = Vec::with_capacity(size);
    for i in 0..size {
        let rest = &r.bytes[r.pos..];
        let len =
            memchr::memchr(0, rest).ok_or_else(|| format!("truncated: dictionary entry {i} has no terminating NUL"))?;
        bytes.extend_from_slice(&rest[..len]);
        r.pos += len + 1;
        ends.push(bytes.len());
        counts.push(r.i64("entry count")?);
        let t = r.u8("entry type")?;
        if t > 1 {
            return Err(format!("dictionary entry {i} has type {t}"));
        }
        is_label.push(t == 1);
    }
    if is_label[..nwords].iter().any(|&l| l) || is_label[nwords..].iter().any(|&l| !l) {
        return Err("dictionary entries are not words first, then labels".into());
    }
    let prune = if prune_size < 0 {
        None
    } else {
        let n = usize::try_from(prune_size).map_err(|_| "pruned n-gram count too large".to_string())?;
        if n > r.bytes.len() / 8 {
            return Err(format!("truncated: {n} pruned n-grams announced"));
        }
        let mut pairs = Vec::with_capacity(n);
        for _ in 0..n {
            pairs.push((r.i32("pruned n-gram")?, r.i32("pruned n-gram row")?));
        }
        Some(pairs)
    };

    let mut dict = Dictionary {
        bytes,
        ends,
        is_label,
        counts,
        nwords,
        words: IdTable::with_len(size),
        subwords: Vec::new(),
        subword_ends: Vec::with_capacity(size),
        prune: None,
        bucket_mod: FastMod::new(u64::from(bucket.max(1))),
        minn,
        maxn,
    };
    for i in 0..size {
        let h = hash(dict.entry(i));
        let mut slot = dict.words.start(h);
        while dict.words.slots[slot].1 >= 0 {
            if dict.entry(dict.words.slots[slot].1 as usize) == dict.entry(i) {
                return Err(format!("dictionary entry {i} is a duplicate"));
            }
            slot = (slot + 1) & dict.words.mask;
        }
        dict.words.slots[slot] = (h, i as i32);
    }
    if let Some(pairs) = prune {
        // fastText keeps the last pair for a repeated bucket (`pruneidx_[first] = second`).
        let mut last: HashMap<i32, i32> = HashMap::with_capacity(pairs.len());
        for (from, to) in pairs {
            last.insert(from, to);
        }
        let mut pairs: Vec<(i32, i32)> = last.into_iter().filter(|&(from, _)| from >= 0).collect();
        pairs.sort_unstable();
        dict.prune = Some(PruneTable::new(&pairs));
    }
    if bucket == 0 && (maxn > 0 || word_ngrams > 1) {
        return Err("bucket is 0 but the model uses char or word n-grams".into());
    }
    // Each entry's input rows (fastText `initNgrams`).
    let mut word = Vec::new();
    for i in 0..size {
        dict.subwords.push(i as u32);
        if dict.entry(i) != EOS.as_bytes() && maxn > 0 {
            word.clear();
            word.push(b'<');
            word.extend_from_slice(dict.entry(i));
            word.push(b'>');
            let mut rows = Vec::new();
            dict.char_ngrams(&word, |row| rows.push(row));
            dict.subwords.extend(rows);
        }
        dict.subword_ends.push(dict.subwords.len());
    }

    let quant_input = r.u8("input quantization flag")? != 0;
    // A dense input matrix that may be projected is only measured here: its
    // floats stay in the file's bytes until the output matrix is known.
    let (mut input, deferred) = if may_project && !quant_input {
        let (rows, cols, at) = skip_dense(r, "input")?;
        (Matrix::Dense { rows, cols, data: Vec::new() }, Some(at))
    } else {
        (read_matrix(r, quant_input, "input")?.dequantized(DEQUANTIZE_MAX_FLOATS), None)
    };
    if prune_size >= 0 && !quant_input {
        return Err("a pruned dictionary needs a quantized input matrix".into());
    }
    let quant_output = r.u8("output quantization flag")? != 0;
    let output = read_matrix(r, quant_input && quant_output, "output")?;
    if input.cols() != dim || output.cols() != dim {
        return Err(format!("matrices have {} and {} columns, dim is {dim}", input.cols(), output.cols()));
    }
    // Words (never labels) are looked up in the input matrix: their own row, then their n-grams'.
    let word_rows = &dict.subwords[..if nwords == 0 { 0 } else { dict.subword_ends[nwords - 1] }];
    let max_row = word_rows.iter().copied().max().map_or(0, |m| m as usize + 1);
    let max_bucket_row = match &dict.prune {
        None if maxn > 0 || word_ngrams > 1 => nwords + bucket as usize,
        None => 0,
        Some(table) => {
            table.rows().map(|to| if to < 0 { usize::MAX } else { nwords + to as usize + 1 }).max().unwrap_or(0)
        }
    };
    if max_row.max(max_bucket_row) > input.rows() {
        return Err(format!(
            "input matrix has {} rows, the dictionary needs {}",
            input.rows(),
            max_row.max(max_bucket_row)
        ));
    }
    if output.rows() < nlabels || nlabels == 0 {
        return Err(format!("output matrix has {} rows for {nlabels} labels", output.rows()));
    }
    if r.pos != r.bytes.len() {
        return Err(format!("{} unexpected bytes after the output matrix", r.bytes.len() - r.pos));
    }

    let labels = (nwords..size)
        .map(|i| {
            let l = String::from_utf8_lossy(dict.entry(i));
            l.strip_prefix(LABEL_PREFIX).unwrap_or(&l).to_string()
        })
        .collect();
    let tree = if loss == Loss::HierarchicalSoftmax { build_tree(&dict.counts[nwords..]) } else { Vec::new() };
    let sigmoid_table = (0..=512)
        .map(|i| {
            let x = (i as f32 * 2.0 * 8.0) / 512.0 - 8.0;
            (1.0 / (1.0 + f64::from((-x).exp()))) as f32
        })
        .collect();
    let mut projection = None;
    if let Some(at) = deferred {
        let (rows, bytes) = (input.rows(), &r.bytes[at]);
        if projects(loss, output.rows(), dim, maxn) {
            projection = Some(project(rows, dim, &output, |i, x| {
                for (xj, v) in x.iter_mut().zip(le_f32s(&bytes[i * 4 * dim..(i + 1) * 4 * dim])) {
                    *xj = v;
                }
            }));
            input = Matrix::Dense { rows: 0, cols: dim, data: Vec::new() };
        } else {
            input = Matrix::Dense { rows, cols: dim, data: le_f32s(bytes).collect() };
        }
    }
    let gather_rows = matches!(input, Matrix::Dense { .. }) && input.rows() * input.cols() * 4 > GATHER_BYTES;
    Ok(Model {
        id: next_model_id(),
        dim,
        word_ngrams,
        loss,
        dict,
        input,
        output,
        labels,
        tree,
        sigmoid_table,
        gather_rows,
        projection,
    })
}

fn read_pq(r: &mut Reader<'_>, what: &str) -> Result<ProductQuantizer, String> {
    let dim = r.size(false, 1 << 16, &format!("{what} quantizer dim"))?;
    let nsubq = r.size(false, 1 << 16, &format!("{what} quantizer nsubq"))?;
    let dsub = r.size(false, 1 << 16, &format!("{what} quantizer dsub"))?;
    let lastdsub = r.size(false, 1 << 16, &format!("{what} quantizer lastdsub"))?;
    if nsubq == 0 || dsub == 0 || lastdsub == 0 || (nsubq - 1) * dsub + lastdsub != dim {
        return Err(format!(
            "{what} quantizer shape is inconsistent (dim {dim}, nsubq {nsubq}, dsub {dsub}, lastdsub {lastdsub})"
        ));
    }
    let centroids = r.f32s(dim * KSUB, &format!("{what} quantizer centroids"))?;
    Ok(ProductQuantizer { nsubq, dsub, lastdsub, centroids })
}

/// The little-endian f32s of `bytes` (a multiple of 4 long).
fn le_f32s(bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
}

/// Rows, columns and the bytes of a dense matrix's floats, skipped.
fn skip_dense(r: &mut Reader<'_>, what: &str) -> Result<(usize, usize, std::ops::Range<usize>), String> {
    let limit = r.bytes.len();
    let rows = r.size(true, limit, &format!("{what} matrix rows"))?;
    let cols = r.size(true, limit, &format!("{what} matrix columns"))?;
    let n =
        rows.checked_mul(cols).and_then(|n| n.checked_mul(4)).ok_or_else(|| format!("{what} matrix size overflows"))?;
    let start = r.pos;
    r.take(n, &format!("{what} matrix"))?;
    Ok((rows, cols, start..r.pos))
}

fn read_matrix(r: &mut Reader<'_>, quantized: bool, what: &str) -> Result<Matrix, String> {
    let limit = r.bytes.len();
    if !quantized {
        let (rows, cols, at) = skip_dense(r, what)?;
        return Ok(Matrix::Dense { rows, cols, data: le_f32s(&r.bytes[at]).collect() });
    }
    let qnorm = r.u8(&format!("{what} qnorm flag"))? != 0;
    let rows = r.size(true, limit, &format!("{what} matrix rows"))?;
    let cols = r.size(true, 1 << 16, &format!("{what} matrix columns"))?;
    let code_size = r.size(false, limit, &format!("{what} code size"))?;
    let codes = r.take(code_size, &format!("{what} codes"))?.to_vec();
    let pq = read_pq(r, what)?;
    if pq.centroids.len() != cols * KSUB || code_size != rows * pq.nsubq {
        return Err(format!("{what} matrix: {code_size} codes for {rows} rows of {} sub-quantizers", pq.nsubq));
    }
    let norms = if qnorm {
        let norm_codes = r.take(rows, &format!("{what} norm codes"))?.to_vec();
        let npq = read_pq(r, &format!("{what} norm"))?;
        Some((norm_codes, npq))
    } else {
        None
    };
    Ok(Matrix::Quantized { rows, cols, codes, pq, norms })
}

/// The Huffman tree over label counts (fastText `HierarchicalSoftmaxLoss::buildTree`).
fn build_tree(counts: &[i64]) -> Vec<Node> {
    let osz = counts.len();
    let mut tree = vec![Node { left: -1, right: -1, count: 1_000_000_000_000_000 }; 2 * osz - 1];
    for (node, &c) in tree.iter_mut().zip(counts) {
        node.count = c;
    }
    let mut leaf = osz as i64 - 1;
    let mut node = osz;
    for i in osz..2 * osz - 1 {
        let mut mini = [0usize; 2];
        for m in &mut mini {
            if leaf >= 0 && tree[leaf as usize].count < tree[node].count {
                *m = leaf as usize;
                leaf -= 1;
            } else {
                *m = node;
                node += 1;
            }
        }
        tree[i].left = mini[0] as i32;
        tree[i].right = mini[1] as i32;
        tree[i].count = tree[mini[0]].count + tree[mini[1]].count;
    }
    tree
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn lid176() -> Model {
        Model::from_bytes(include_bytes!("../../../models/lid.176.ftz"), "lid.176.ftz").unwrap()
    }

    /// The best three labels with their float32 scores widened to f64, as Python prints them.
    fn top3(model: &Model, text: &str) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        model.predict(text, 0.0, &mut Scratch::default(), &mut out);
        out.iter().take(3).map(|p| (model.labels()[p.label].clone(), f64::from(p.score))).collect()
    }

    #[test]
    fn reads_lid176() {
        let m = lid176();
        assert_eq!(m.labels().len(), 176);
        assert_eq!(&m.labels()[..4], ["en", "ru", "de", "fr"]);
        assert_eq!(m.loss(), Loss::HierarchicalSoftmax);
        assert_eq!(m.dict.nwords, 7235);
        assert_eq!(m.input.rows(), 50_000);
    }

    /// Expected values from Python fastText 0.9.2 (`fasttext.load_model("lid.176.ftz").predict(text, k=3)`),
    /// printed with `repr(float(p))`.
    #[test]
    fn predicts_like_python_fasttext() {
        let m = lid176();
        let cases: &[(&str, [(&str, f64); 3])] = &[
            (
                "The quick brown fox jumps over the lazy dog.",
                [("en", 0.6974507570266724), ("es", 0.04621101915836334), ("pt", 0.02520005963742733)],
            ),
            (
                "Der schnelle braune Fuchs springt über den faulen Hund.",
                [("de", 0.9447035789489746), ("en", 0.01887556165456772), ("ru", 0.004669151734560728)],
            ),
            (
                "Le renard brun rapide saute par-dessus le chien paresseux.",
                [("fr", 0.818234920501709), ("en", 0.028768017888069153), ("it", 0.018429145216941833)],
            ),
            (
                "El rápido zorro marrón salta sobre el perro perezoso.",
                [("es", 0.9217135906219482), ("pt", 0.05185578390955925), ("gl", 0.007315402384847403)],
            ),
            (
                "Быстрая коричневая лиса прыгает через ленивую собаку.",
                [("ru", 0.9599481225013733), ("be", 0.016154980286955833), ("uk", 0.004849589429795742)],
            ),
            (
                "敏捷的棕色狐狸跳过了懒狗。",
                [("ja", 0.5168367624282837), ("zh", 0.46042919158935547), ("yue", 0.0135393887758255)],
            ),
            (
                "素早い茶色の狐がのろまな犬を飛び越える。",
                [("ja", 1.000035285949707), ("uk", 1.8013692169915885e-05), ("ru", 1.285865164390998e-05)],
            ),
            (
                "빠른 갈색 여우가 게으른 개를 뛰어넘는다.",
                [("ko", 0.9996539354324341), ("el", 0.00010947191185550764), ("no", 0.0001049674247042276)],
            ),
            (
                "الثعلب البني السريع يقفز فوق الكلب الكسول.",
                [("ar", 0.993318498134613), ("uk", 0.002515330445021391), ("arz", 0.00225852825678885)],
            ),
            (
                "Szybki brązowy lis przeskakuje nad leniwym psem.",
                [("pl", 0.9924208521842957), ("en", 0.0026189794298261404), ("de", 0.0010685225715860724)],
            ),
            ("ok", [("en", 0.6297650337219238), ("pl", 0.14195026457309723), ("de", 0.05507952347397804)]),
            // A literal `</s>` ends the line for fastText: only EOS is read, as for empty text.
            ("</s> hello", [("en", 0.12450417876243591), ("ca", 0.08594832569360733), ("de", 0.0802881047129631)]),
            // An unknown `__label__` token is skipped.
            (
                "__label__en bonjour",
                [("fr", 0.9015306830406189), ("en", 0.05479123070836067), ("de", 0.007157167419791222)],
            ),
        ];
        for (text, expected) in cases {
            let got = top3(&m, text);
            let want: Vec<(String, f64)> = expected.iter().map(|(l, p)| (l.to_string(), *p)).collect();
            assert_eq!(got, want, "{text}");
        }
        assert_eq!(top3(&m, ""), top3(&m, "</s> hello"));
    }

    /// Small models trained with Python fastText 0.9.2 on the fixture texts (see the fixture README):
    /// dense `.bin` with softmax and word bigrams, dense one-vs-all, and a pruned `.ftz` with `qnorm`
    /// and a last sub-quantizer narrower than the others. Every label's score must be Python's.
    #[test]
    fn small_dense_and_quantized_models_match_python_fasttext() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/langid");
        let expected: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("small_models.json")).unwrap()).unwrap();
        let mut texts: Vec<String> = std::fs::read_to_string(dir.join("texts.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["text"].as_str().unwrap().to_string())
            .collect();
        texts.extend(expected["texts_jsonl_then"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()));
        let (mut scratch, mut out) = (Scratch::default(), Vec::new());
        for (name, want) in expected["models"].as_object().unwrap() {
            let model = Model::load(&dir.join(name)).unwrap();
            let want = want.as_array().unwrap();
            assert_eq!(want.len(), texts.len());
            for (text, want) in texts.iter().zip(want) {
                model.predict(text, 0.0, &mut scratch, &mut out);
                let got: BTreeMap<&str, f32> =
                    out.iter().map(|p| (model.labels()[p.label].as_str(), p.score)).collect();
                let want: BTreeMap<&str, f32> =
                    want.as_object().unwrap().iter().map(|(l, s)| (l.as_str(), s.as_f64().unwrap() as f32)).collect();
                assert_eq!(got, want, "{name}: {text}");
                assert!(out.windows(2).all(|w| w[0].score >= w[1].score));
            }
        }
    }

    #[test]
    fn the_token_cache_changes_nothing() {
        let m = lid176();
        // 100,000 distinct tokens: the cache fills and is cleared several times.
        let text: String = (0..100_000u32).map(|i| format!("w{}ö{} ", i * 7919 % 100_003, i % 13)).collect();
        let (mut warm, mut out, mut fresh) = (Scratch::default(), Vec::new(), Vec::new());
        m.predict(&text, 0.0, &mut warm, &mut out);
        m.predict(&text, 0.0, &mut warm, &mut out);
        m.predict(&text, 0.0, &mut Scratch::default(), &mut fresh);
        assert_eq!(out, fresh);
        assert!(!out.is_empty());
    }

    /// Softmax probabilities (+ 1e-5, as fastText reports them) of near-exact arithmetic: the
    /// text's input rows, as a `gathering` model lists them, summed in f64, averaged, times
    /// each output row in f64, softmax in f64.
    fn exact_arithmetic(gathering: &Model, text: &str, scratch: &mut Scratch) -> Vec<f64> {
        assert!(gathering.gather_rows);
        assert!(gathering.hidden(text.as_bytes(), scratch));
        let dim = gathering.dim;
        let (mut h, mut row) = (vec![0.0f64; dim], vec![0.0f32; dim]);
        for &r in &scratch.rows {
            row.fill(0.0);
            gathering.input.add_row(&mut row, r as usize);
            for (hj, x) in h.iter_mut().zip(&row) {
                *hj += f64::from(*x);
            }
        }
        let n = scratch.rows.len() as f64;
        let logits: Vec<f64> = (0..gathering.labels.len())
            .map(|k| {
                row.fill(0.0);
                gathering.output.add_row(&mut row, k);
                row.iter().zip(&h).map(|(o, hj)| f64::from(*o) * hj / n).sum()
            })
            .collect();
        let max = logits.iter().copied().fold(f64::MIN, f64::max);
        let z: f64 = logits.iter().map(|l| (l - max).exp()).sum();
        logits.iter().map(|l| (l - max).exp() / z + 1e-5).collect()
    }

    #[test]
    fn projected_scores_are_nearer_exact_arithmetic_than_fasttexts() {
        // Summing each row's projection in f64 instead of the rows in f32 rounds differently:
        // the scores come within a few 1e-7 of exact arithmetic, where fastText's own f32 sums
        // leave it further off; the best label is the same.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut texts = Vec::new();
        for dir in ["langid", "classify"] {
            texts.extend(
                std::fs::read_to_string(root.join(dir).join("texts.jsonl")).unwrap().lines().map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).unwrap()["text"].as_str().unwrap().to_string()
                }),
            );
        }
        let (mut scratch, mut exact, mut fast) = (Scratch::default(), Vec::new(), Vec::new());
        let models = [
            // 12 labels for dim 8: a projection would be larger than the rows.
            ("langid/softmax_bigram.bin", false),
            ("langid/ova.bin", false),
            // Char n-grams.
            ("classify/topics_bigram.bin", false),
            // 10 labels for dim 16.
            ("classify/topics_hs_q.ftz", false),
            ("classify/topics_ova_q.ftz", false),
            // 10 labels for dim 64, word bigrams, quantized and pruned: softmax and hierarchical softmax.
            ("classify/topics_d64_q.ftz", true),
            ("classify/topics_hs_d64_q.ftz", true),
            // 10 labels for dim 40, dense: projected straight from the file's bytes too.
            ("classify/topics_d40.bin", true),
            // 2 labels for dim 16.
            ("../../../examples/models/quality.ftz", true),
        ];
        for (name, projects) in models {
            let bytes = std::fs::read(root.join(name)).unwrap();
            let model = Model::from_bytes(&bytes, name).unwrap();
            let gathering = Model { gather_rows: true, ..Model::from_bytes(&bytes, name).unwrap() };
            let projected = Model::from_bytes(&bytes, name).unwrap().projected();
            assert_eq!(projected.is_projected(), projects, "{name}");
            // Read projected from the bytes (a dense input matrix never copied): the same model.
            let direct = Model::from_bytes_projected(&bytes, name).unwrap();
            assert_eq!(direct.is_projected(), projects, "{name}");
            assert_eq!(direct.input.rows(), projected.input.rows(), "{name}: the input matrix is dropped");
            assert_eq!(direct.projection.as_ref().map(|p| &p.rows), projected.projection.as_ref().map(|p| &p.rows));
            let (mut from_fasttext, mut projected_off, mut fasttext_off) = (0.0f64, 0.0f64, 0.0f64);
            for t in &texts {
                model.predict(t, 0.0, &mut scratch, &mut exact);
                projected.predict(t, 0.0, &mut scratch, &mut fast);
                assert_eq!(exact.len(), fast.len(), "{name}: {t}");
                assert_eq!(exact.first().map(|p| p.label), fast.first().map(|p| p.label), "{name}: {t}");
                for e in &exact {
                    let f = fast.iter().find(|f| f.label == e.label).expect("every label");
                    from_fasttext = from_fasttext.max(f64::from((e.score - f.score).abs()));
                }
                if projects && model.loss == Loss::Softmax && !exact.is_empty() {
                    let reference = exact_arithmetic(&gathering, t, &mut scratch);
                    for (e, f) in exact.iter().zip(&fast) {
                        fasttext_off = fasttext_off.max((f64::from(e.score) - reference[e.label]).abs());
                        projected_off = projected_off.max((f64::from(f.score) - reference[f.label]).abs());
                    }
                }
            }
            eprintln!("{name}: projected {projected_off:.2e} and fastText {fasttext_off:.2e} off exact arithmetic, {from_fasttext:.2e} apart");
            if !projects {
                assert_eq!(from_fasttext, 0.0, "{name}: unchanged");
            }
            // The score is reported as an f32 of exp(ln(p + 1e-5)): a few 1e-7 of rounding near 1.
            assert!(projected_off <= 4e-7, "{name}: projected {projected_off} off exact arithmetic");
            assert!(projected_off <= fasttext_off, "{name}: {projected_off} against fastText's {fasttext_off}");
            // On these short texts fastText's rounding stays about 1e-6; it grows with a text's rows.
            assert!(from_fasttext <= 2e-6, "{name}: {from_fasttext} from fastText's");
        }
    }

    #[test]
    fn gathering_and_prefetching_rows_changes_nothing() {
        // Small models sum rows as they come; large dense ones gather and prefetch. Both orders
        // of work must give the very same floats.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/classify");
        let texts: Vec<String> = std::fs::read_to_string(dir.join("texts.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["text"].as_str().unwrap().to_string())
            .collect();
        let (mut scratch, mut a, mut b) = (Scratch::default(), Vec::new(), Vec::new());
        for name in ["topics_bigram.bin", "topics_hs_q.ftz"] {
            let direct = Model { gather_rows: false, ..Model::load(&dir.join(name)).unwrap() };
            let gathering = Model { gather_rows: true, ..Model::load(&dir.join(name)).unwrap() };
            for t in &texts {
                direct.predict(t, 0.0, &mut scratch, &mut a);
                gathering.predict(t, 0.0, &mut scratch, &mut b);
                assert_eq!(a, b, "{name}: {t}");
            }
        }
    }

    #[test]
    fn fast_modulo_equals_the_remainder() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for d in [1u64, 2, 3, 7, 4000, 20_000, 2_000_000, 2_147_483_647, u64::from(u32::MAX), u64::MAX] {
            let f = FastMod::new(d);
            for edge in [0, 1, d - 1, d, d.wrapping_add(1), u64::MAX, u64::MAX - 1, u64::MAX / 2] {
                assert_eq!(f.of(edge), edge % d, "{edge} % {d}");
            }
            for _ in 0..100_000 {
                // xorshift64*
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
                assert_eq!(f.of(v), v % d, "{v} % {d}");
            }
        }
        assert_eq!(EOS_HASH, hash(EOS.as_bytes()));
    }

    #[test]
    fn hash_sign_extends_bytes_like_fasttext() {
        // fastText casts each byte to int8_t before the xor.
        assert_eq!(hash(b""), 2_166_136_261);
        assert_eq!(hash(b"a"), 0xe40c_292c);
        assert_ne!(hash("é".as_bytes()), {
            let mut h = FNV_OFFSET;
            for &b in "é".as_bytes() {
                h = (h ^ u32::from(b)).wrapping_mul(16_777_619);
            }
            h
        });
    }

    #[test]
    fn rejects_bad_bytes_with_their_origin() {
        let e = Model::from_bytes(b"not a model", "x.ftz").unwrap_err().to_string();
        assert!(e.contains("x.ftz") && e.contains("magic"), "{e}");
        let bytes = include_bytes!("../../../models/lid.176.ftz");
        for cut in [8, 60, 1000, bytes.len() / 2, bytes.len() - 1] {
            let e = Model::from_bytes(&bytes[..cut], "cut.ftz").unwrap_err().to_string();
            assert!(e.contains("cut.ftz") && e.contains("truncated"), "{cut}: {e}");
        }
        let e = Model::load(Path::new("/nonexistent/lid.bin")).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/lid.bin"), "{e}");
    }
}
