//! The document diff: which documents two versions add, remove, change (same
//! `id`, new `content_hash`) or keep, from their sorted document indexes
//! ([`smelt_catalog::docindex`]) and never from the text.
//!
//! ```text
//! _versions/A.idx ──mmap──► key ranges (restart points) ─┬─ range 0: merge join + checksum blocks ─┐
//! _versions/B.idx ──mmap──► the same key ranges ─────────┴─ range 1: ... (a thread each) ──────────┴─► counts + samples ─► DocDiff
//! ```
//! One pass over both indexes: time linear in their size, memory flat (the
//! pages behind each cursor are released as it goes). Format 1 indexes
//! (zstd, from older smelt) are streamed instead: one join thread with the
//! other side decoded ahead on a second (ADR 0020).
//!
//! **Duplicate ids.** Ids should be unique, but a dataset may repeat one. Each
//! side is treated as a multiset of `(id, hash)`: within one id, entries with
//! equal hashes pair up as unchanged, the unpaired entries of A and B pair up
//! as changed, and what is left over is removed (from A) or added (from B).
//! So `docs_a = removed + changed + unchanged` and
//! `docs_b = added + changed + unchanged` always hold.
//!
//! **Samples.** Up to `samples` ids of each kind, chosen deterministically
//! and evenly over the id space: the ids with the smallest xxh3-64 hash (a
//! "bottom-k" sample, the same for the same data whatever the order of work),
//! listed in id order. An id is sampled at most once per kind.

use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use serde::Serialize;

use smelt_catalog::docindex::{
    check_sum, io_error, open_stored, DocIndexReader, HashingReader, MappedIndex, MappedRecords, BLOCKS_PREFIX,
};
use smelt_catalog::model::{DocIndexRef, VersionManifest};
use smelt_catalog::store::DatasetStore;
use smelt_catalog::{CatalogError, Result};

/// Document changes from version A to version B.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DocDiff {
    /// Entries (documents) in A.
    pub docs_a: u64,
    /// Entries (documents) in B.
    pub docs_b: u64,
    /// Documents whose id is only in B.
    pub added: u64,
    /// Documents whose id is only in A.
    pub removed: u64,
    /// Documents with the same id and a different content hash.
    pub changed: u64,
    /// Documents with the same id and the same content hash.
    pub unchanged: u64,
    /// Sample ids of each kind (see the module doc for how they are chosen).
    pub samples: DocSamples,
}

/// Sample ids of a [`DocDiff`], each list in id order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DocSamples {
    /// Ids only in B.
    pub added: Vec<String>,
    /// Ids only in A.
    pub removed: Vec<String>,
    /// Ids whose content changed.
    pub changed: Vec<String>,
}

/// Keeps the `k` ids with the smallest xxh3-64 hash.
struct BottomK {
    k: usize,
    heap: BinaryHeap<(u64, Vec<u8>)>,
}

impl BottomK {
    fn new(k: usize) -> Self {
        BottomK { k, heap: BinaryHeap::with_capacity(k + 1) }
    }

    fn offer(&mut self, id: &[u8]) {
        let key = xxhash_rust::xxh3::xxh3_64(id);
        if self.admits(key, id) {
            self.heap.push((key, id.to_vec()));
        }
    }

    /// Whether `(key, id)` belongs among the k smallest; makes room for it if so.
    fn admits(&mut self, key: u64, id: &[u8]) -> bool {
        if self.k == 0 {
            return false;
        }
        if self.heap.len() == self.k {
            match self.heap.peek() {
                Some((top, top_id)) if key < *top || (key == *top && id < top_id.as_slice()) => {
                    self.heap.pop();
                }
                _ => return false,
            }
        }
        true
    }

    fn into_sorted(self) -> Vec<String> {
        let mut ids: Vec<Vec<u8>> = self.heap.into_iter().map(|(_, id)| id).collect();
        ids.sort();
        ids.into_iter().map(|id| String::from_utf8_lossy(&id).into_owned()).collect()
    }

    /// Adds the candidates `other` kept (the bottom k of a union is the
    /// bottom k of the parts' bottom k).
    fn absorb(&mut self, other: BottomK) {
        for (key, id) in other.heap {
            if self.admits(key, &id) {
                self.heap.push((key, id));
            }
        }
    }
}

/// Sample candidates of the three kinds while a join runs.
struct Samplers {
    added: BottomK,
    removed: BottomK,
    changed: BottomK,
}

impl Samplers {
    fn new(k: usize) -> Self {
        Samplers { added: BottomK::new(k), removed: BottomK::new(k), changed: BottomK::new(k) }
    }

    fn absorb(&mut self, other: Samplers) {
        self.added.absorb(other.added);
        self.removed.absorb(other.removed);
        self.changed.absorb(other.changed);
    }

    fn finish(self) -> DocSamples {
        DocSamples {
            added: self.added.into_sorted(),
            removed: self.removed.into_sorted(),
            changed: self.changed.into_sorted(),
        }
    }
}

impl DocDiff {
    fn add_counts(&mut self, o: &DocDiff) {
        self.docs_a += o.docs_a;
        self.docs_b += o.docs_b;
        self.added += o.added;
        self.removed += o.removed;
        self.changed += o.changed;
        self.unchanged += o.unchanged;
    }
}

/// One side of the join: the current entry of a sorted stream.
trait Cursor {
    /// Whether there is a current entry.
    fn has(&self) -> bool;
    fn id(&self) -> &[u8];
    fn hash(&self) -> &[u8; 16];
    /// Whether the current entry has the previous entry's id.
    fn repeats(&self) -> bool;
    fn next(&mut self) -> io::Result<()>;

    /// Whether the current entry continues the id group just left (known from
    /// the prefix coding, without comparing ids).
    fn same_group(&self) -> bool {
        self.has() && self.repeats()
    }

    /// Skips the rest of the current id group; returns how many entries it
    /// had (the current one included).
    fn skip_group(&mut self) -> io::Result<u64> {
        let mut n = 1;
        self.next()?;
        while self.same_group() {
            n += 1;
            self.next()?;
        }
        Ok(n)
    }
}

/// A cursor over one of the catalog's record readers, on the joining
/// thread: the streaming [`DocIndexReader`] or a mapped key range's
/// [`MappedRecords`].
struct RecordCursor<T> {
    r: T,
    has: bool,
}

/// The [`Cursor`] of a record reader: both readers have the same methods
/// (`id`, `hash`, `repeats_id`, `advance`), so one body serves both.
macro_rules! record_cursor {
    ([$($generics:tt)*] $reader:ty) => {
        impl<$($generics)*> Cursor for RecordCursor<$reader> {
            fn has(&self) -> bool {
                self.has
            }
            fn id(&self) -> &[u8] {
                self.r.id()
            }
            fn hash(&self) -> &[u8; 16] {
                self.r.hash()
            }
            fn repeats(&self) -> bool {
                self.r.repeats_id()
            }
            fn next(&mut self) -> io::Result<()> {
                self.has = self.r.advance()?;
                Ok(())
            }
        }
    };
}

record_cursor!([R: Read] DocIndexReader<R>);
record_cursor!(['a] MappedRecords<'a>);

/// A cursor reading a whole index from `R`.
type ReaderCursor<R> = RecordCursor<DocIndexReader<R>>;

impl<R: Read> ReaderCursor<R> {
    fn new(r: R) -> io::Result<Self> {
        let mut r = DocIndexReader::new(r)?;
        let has = r.advance()?;
        Ok(RecordCursor { r, has })
    }
}

/// Entries decoded ahead by another thread.
#[derive(Default)]
struct Batch {
    ids: Vec<u8>,
    ends: Vec<usize>,
    hashes: Vec<[u8; 16]>,
    repeats: Vec<bool>,
}

impl Batch {
    const LEN: usize = 4096;

    fn clear(&mut self) {
        self.ids.clear();
        self.ends.clear();
        self.hashes.clear();
        self.repeats.clear();
    }
}

enum Msg {
    Batch(Batch),
    /// The index ended (all its entries were sent) or failed.
    End(io::Result<()>),
}

/// A cursor over batches that a decoding thread sends ([`decode_ahead`]).
struct BatchCursor {
    rx: Receiver<Msg>,
    back: SyncSender<Batch>,
    cur: Batch,
    pos: usize,
    has: bool,
}

impl BatchCursor {
    fn new(rx: Receiver<Msg>, back: SyncSender<Batch>) -> io::Result<Self> {
        let mut c = BatchCursor { rx, back, cur: Batch::default(), pos: 0, has: false };
        c.refill()?;
        Ok(c)
    }

    fn refill(&mut self) -> io::Result<()> {
        let used = std::mem::take(&mut self.cur);
        let _ = self.back.try_send(used);
        match self.rx.recv() {
            Ok(Msg::Batch(b)) => {
                self.has = !b.hashes.is_empty();
                self.cur = b;
                self.pos = 0;
                Ok(())
            }
            Ok(Msg::End(Ok(()))) => {
                self.has = false;
                Ok(())
            }
            Ok(Msg::End(Err(e))) => Err(e),
            Err(_) => Err(io::Error::other("the document index decoder stopped")),
        }
    }
}

impl Cursor for BatchCursor {
    fn has(&self) -> bool {
        self.has
    }
    fn id(&self) -> &[u8] {
        let start = if self.pos == 0 { 0 } else { self.cur.ends[self.pos - 1] };
        &self.cur.ids[start..self.cur.ends[self.pos]]
    }
    fn hash(&self) -> &[u8; 16] {
        &self.cur.hashes[self.pos]
    }
    fn repeats(&self) -> bool {
        self.cur.repeats[self.pos]
    }
    fn next(&mut self) -> io::Result<()> {
        self.pos += 1;
        if self.pos < self.cur.hashes.len() {
            return Ok(());
        }
        self.refill()
    }
}

/// Decodes `r` into batches sent to `tx` until the end (or until the
/// receiver hangs up); returns the inner reader for its checksum.
fn decode_ahead<R: Read>(r: R, tx: &SyncSender<Msg>, back: &Receiver<Batch>) -> io::Result<R> {
    let mut reader = DocIndexReader::new(r)?;
    loop {
        let mut b = back.try_recv().unwrap_or_default();
        b.clear();
        while b.hashes.len() < Batch::LEN && reader.advance()? {
            b.ids.extend_from_slice(reader.id());
            b.ends.push(b.ids.len());
            b.hashes.push(*reader.hash());
            b.repeats.push(reader.repeats_id());
        }
        let last = b.hashes.len() < Batch::LEN;
        if !b.hashes.is_empty() && tx.send(Msg::Batch(b)).is_err() {
            return Err(io::Error::other("the document diff stopped"));
        }
        if last {
            return Ok(reader.into_inner());
        }
    }
}

/// Which side an error came from.
#[derive(Debug)]
struct SideError(&'static str, io::Error);

/// The merge join of two sorted cursors.
fn join(a: &mut impl Cursor, b: &mut impl Cursor, samples: usize) -> std::result::Result<DocDiff, SideError> {
    let (mut d, s) = join_counts(a, b, samples)?;
    d.samples = s.finish();
    Ok(d)
}

/// The merge join of two sorted cursors: the counts and the sample candidates.
fn join_counts(
    a: &mut impl Cursor,
    b: &mut impl Cursor,
    samples: usize,
) -> std::result::Result<(DocDiff, Samplers), SideError> {
    use std::cmp::Ordering;
    let ea = |e| SideError("A", e);
    let eb = |e| SideError("B", e);
    let mut d = DocDiff::default();
    let mut s = Samplers::new(samples);
    let Samplers { added: s_added, removed: s_removed, changed: s_changed } = &mut s;
    loop {
        let ord = match (a.has(), b.has()) {
            (false, false) => break,
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (true, true) => a.id().cmp(b.id()),
        };
        match ord {
            Ordering::Less => {
                s_removed.offer(a.id());
                let n = a.skip_group().map_err(ea)?;
                d.removed += n;
                d.docs_a += n;
            }
            Ordering::Greater => {
                s_added.offer(b.id());
                let n = b.skip_group().map_err(eb)?;
                d.added += n;
                d.docs_b += n;
            }
            Ordering::Equal => {
                // Both sides list this id's hashes in order: pair equal hashes,
                // then pair what is left as changed.
                let (mut only_a, mut only_b, mut same) = (0u64, 0u64, 0u64);
                let (mut in_a, mut in_b) = (true, true);
                let mut sample: Option<Vec<u8>> = None;
                while in_a && in_b {
                    let ord = a.hash().cmp(b.hash());
                    if ord != Ordering::Equal && sample.is_none() {
                        sample = Some(a.id().to_vec());
                    }
                    match ord {
                        Ordering::Equal => {
                            same += 1;
                            a.next().map_err(ea)?;
                            b.next().map_err(eb)?;
                            (in_a, in_b) = (a.same_group(), b.same_group());
                        }
                        Ordering::Less => {
                            only_a += 1;
                            a.next().map_err(ea)?;
                            in_a = a.same_group();
                        }
                        Ordering::Greater => {
                            only_b += 1;
                            b.next().map_err(eb)?;
                            in_b = b.same_group();
                        }
                    }
                }
                if in_a {
                    sample.get_or_insert_with(|| a.id().to_vec());
                    only_a += a.skip_group().map_err(ea)?;
                }
                if in_b {
                    sample.get_or_insert_with(|| b.id().to_vec());
                    only_b += b.skip_group().map_err(eb)?;
                }
                let changed = only_a.min(only_b);
                d.unchanged += same;
                d.changed += changed;
                d.removed += only_a - changed;
                d.added += only_b - changed;
                d.docs_a += same + only_a;
                d.docs_b += same + only_b;
                if let Some(id) = sample {
                    if changed > 0 {
                        s_changed.offer(&id);
                    }
                    if only_a > changed {
                        s_removed.offer(&id);
                    }
                    if only_b > changed {
                        s_added.offer(&id);
                    }
                }
            }
        }
    }
    Ok((d, s))
}

/// Diffs two document indexes (A the older version, B the newer) in one
/// merge join on the calling thread, keeping up to `samples` ids of each kind.
///
/// # Errors
/// `Corrupt` when either input is not a valid index (not one, cut, out of
/// order), `Storage` for read failures.
pub fn diff_doc_indexes(a: impl Read, b: impl Read, samples: usize) -> Result<DocDiff> {
    let side = |name: &'static str| move |e| io_error(&format!("document index of version {name}"), e);
    let mut ca = ReaderCursor::new(a).map_err(side("A"))?;
    let mut cb = ReaderCursor::new(b).map_err(side("B"))?;
    join(&mut ca, &mut cb, samples)
        .map_err(|SideError(name, e)| io_error(&format!("document index of version {name}"), e))
}

/// [`diff_doc_indexes`] on two threads: B is decoded ahead on its own
/// thread while the calling thread decodes A and joins (decoding is most of
/// the work, so this splits it over two cores; a thread per side measured no
/// faster on two cores and used half again the CPU). Returns the diff and the
/// inner readers once both indexes have been read to their end.
fn diff_threaded<A, B>(a: A, b: B, samples: usize) -> std::result::Result<(DocDiff, A, B), SideError>
where
    A: Read,
    B: Read + Send,
{
    // Decoded batches go one way, used ones come back to be refilled.
    let (tx, rx) = sync_channel::<Msg>(4);
    let (back, ret) = sync_channel::<Batch>(6);
    std::thread::scope(|scope| {
        let hb = scope.spawn(move || decode_thread(b, tx, ret));
        let res = {
            // The cursor (and its receiver) is dropped before the thread is
            // joined, so a failing join never leaves the decoder blocked.
            let ca = ReaderCursor::new(a).map_err(|e| SideError("A", e));
            let cb = BatchCursor::new(rx, back).map_err(|e| SideError("B", e));
            match (ca, cb) {
                (Ok(mut ca), Ok(mut cb)) => join(&mut ca, &mut cb, samples).map(|d| (d, ca.r.into_inner())),
                (Err(e), _) | (_, Err(e)) => Err(e),
            }
        };
        let ib = hb.join().map_err(|_| SideError("B", io::Error::other("the decoder panicked")))?;
        let (diff, ia) = res?;
        let ib = ib.ok_or_else(|| SideError("B", io::Error::other("the decoder failed")))?;
        Ok((diff, ia, ib))
    })
}

/// Runs [`decode_ahead`], then tells the cursor how it ended.
fn decode_thread<R: Read>(r: R, tx: SyncSender<Msg>, ret: Receiver<Batch>) -> Option<R> {
    match decode_ahead(r, &tx, &ret) {
        Ok(inner) => {
            let _ = tx.send(Msg::End(Ok(())));
            Some(inner)
        }
        Err(e) => {
            let _ = tx.send(Msg::End(Err(e)));
            None
        }
    }
}

/// What one thread of [`diff_mapped`] did: the whole-file checks it ran,
/// its range's join, and the checksum block digests of each side's range.
type RangeResult = (Result<()>, std::result::Result<(DocDiff, Samplers), SideError>, [Vec<[u8; 16]>; 2]);

/// The diff of two mapped format 2 indexes, cut into up to `parts` key
/// ranges (at restart ids of the index with more of them) that are joined
/// on their own threads and added up.
///
/// Each side is checked against `recorded` when given: a block checksum
/// (`xxh3-128-blocks:`, what smelt writes) is hashed by the joins as they
/// read their ranges, block by block, and combined at the end; a whole-file
/// one (`xxh3-128:`) takes a pass of its own on the first threads. A failed
/// check is the error, before any error of the join. `location` names each
/// side in errors.
fn diff_mapped(
    a: &MappedIndex,
    b: &MappedIndex,
    samples: usize,
    parts: usize,
    recorded: [Option<&DocIndexRef>; 2],
    location: [&str; 2],
) -> Result<DocDiff> {
    let side = |i: usize| move |e| io_error(location[i], e);
    let sides = [a, b];
    let in_join = recorded.map(|r| r.is_some_and(|r| r.checksum.starts_with(BLOCKS_PREFIX)));
    let keys = if a.restart_points() >= b.restart_points() {
        a.split_keys(parts).map_err(side(0))?
    } else {
        b.split_keys(parts).map_err(side(1))?
    };
    let ra = a.key_ranges(&keys, in_join[0]).map_err(side(0))?;
    let rb = b.key_ranges(&keys, in_join[1]).map_err(side(1))?;
    let mut work: Vec<(Vec<usize>, MappedRecords<'_>, MappedRecords<'_>)> =
        ra.into_iter().zip(rb).map(|(ra, rb)| (Vec::new(), ra, rb)).collect();
    // Whole-file checks go to the first threads: side A's to the first, B's to the second.
    let n = work.len();
    for i in (0..2).filter(|&i| recorded[i].is_some() && !in_join[i]) {
        work[i % n].0.push(i);
    }
    let run = |(checks, ra, rb): (Vec<usize>, MappedRecords<'_>, MappedRecords<'_>)| -> RangeResult {
        let checked: Result<()> = checks.into_iter().try_for_each(|i| {
            let r = recorded[i].expect("checks are for recorded sides");
            let (len, sum) = sides[i].checksum(&r.checksum);
            check_sum(len, &sum, r, location[i])
        });
        let (mut ca, mut cb) = (RecordCursor { r: ra, has: false }, RecordCursor { r: rb, has: false });
        let joined = ca
            .next()
            .map_err(|e| SideError("A", e))
            .and_then(|()| cb.next().map_err(|e| SideError("B", e)))
            .and_then(|()| join_counts(&mut ca, &mut cb, samples));
        // Blocks a failed join did not reach are hashed too: a damaged file is told by its checksum.
        ca.r.finish_blocks();
        cb.r.finish_blocks();
        (checked, joined, [ca.r.block_digests().to_vec(), cb.r.block_digests().to_vec()])
    };
    let results: Vec<RangeResult> = std::thread::scope(|scope| {
        let mut work = work.into_iter();
        let first = work.next().expect("one range at least");
        let handles: Vec<_> = work.map(|w| scope.spawn(move || run(w))).collect();
        let mut results = vec![run(first)];
        for h in handles {
            results.push(h.join().unwrap_or_else(|_| {
                let panicked = CatalogError::Internal("a document diff thread panicked".into());
                (Err(panicked), Ok((DocDiff::default(), Samplers::new(0))), [Vec::new(), Vec::new()])
            }));
        }
        results
    });
    let mut joins = Vec::with_capacity(results.len());
    let mut digests = Vec::with_capacity(results.len());
    for (checked, joined, d) in results {
        checked?;
        joins.push(joined);
        digests.push(d);
    }
    for i in (0..2).filter(|&i| in_join[i]) {
        let r = recorded[i].expect("hashed in the join only when recorded");
        let (len, sum) = sides[i].block_checksum(digests.iter().map(|d| d[i].as_slice()));
        check_sum(len, &sum, r, location[i])?;
    }
    let mut diff = DocDiff::default();
    let mut samplers = Samplers::new(samples);
    for joined in joins {
        let (d, s) = joined.map_err(|SideError(name, e)| io_error(location[usize::from(name == "B")], e))?;
        diff.add_counts(&d);
        samplers.absorb(s);
    }
    for (i, (read, holds)) in [(diff.docs_a, a.entries()), (diff.docs_b, b.entries())].into_iter().enumerate() {
        if read != holds {
            return Err(CatalogError::Corrupt {
                location: location[i].to_string(),
                message: format!("{read} entries read, its end record says {holds}"),
            });
        }
    }
    diff.samples = samplers.finish();
    Ok(diff)
}

/// Threads (and key ranges) of a document diff: the cores there are, at most 8.
fn diff_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(8)
}

/// The document diff of two committed versions from their stored indexes:
/// a local index is read in place, one in an object store is first
/// downloaded to a temporary file. Both are checked against the checksums
/// their manifests record.
///
/// Format 2 indexes (what smelt writes) are mapped and cut into key ranges
/// at their restart points, one per core: each range's join runs on its own
/// thread and hashes the checksum blocks it reads. Format 1 indexes (zstd,
/// from older smelt) are streamed: the join runs on one thread with B
/// decoded ahead on a second.
///
/// Returns `None` when either version has no document index (committed
/// before smelt wrote them): the diff then has no document section.
///
/// # Errors
/// A missing or corrupt index (`Corrupt`), storage failures.
pub async fn diff_version_documents(
    store_a: &DatasetStore,
    a: &VersionManifest,
    store_b: &DatasetStore,
    b: &VersionManifest,
    samples: usize,
) -> Result<Option<DocDiff>> {
    let (Some(ra), Some(rb)) = (&a.doc_index, &b.doc_index) else { return Ok(None) };
    let (fa, fb) = futures::try_join!(open_stored(store_a, ra), open_stored(store_b, rb))?;
    let (ra, rb) = (ra.clone(), rb.clone());
    tokio::task::spawn_blocking(move || -> Result<DocDiff> {
        let open = |path: &std::path::Path, location: &str| File::open(path).map_err(|e| io_error(location, e));
        let (file_a, file_b) = (open(&fa.path, &fa.location)?, open(&fb.path, &fb.location)?);
        let mapped = |f: &File, location: &str| MappedIndex::open(f).map_err(|e| io_error(location, e));
        let diff = match (mapped(&file_a, &fa.location)?, mapped(&file_b, &fb.location)?) {
            (Some(ma), Some(mb)) => {
                diff_mapped(&ma, &mb, samples, diff_threads(), [Some(&ra), Some(&rb)], [&fa.location, &fb.location])?
            }
            _ => {
                let (diff, ha, hb) = diff_threaded(
                    HashingReader::like(file_a, &ra.checksum),
                    HashingReader::like(file_b, &rb.checksum),
                    samples,
                )
                .map_err(|SideError(side, e)| {
                    let location = if side == "A" { &fa.location } else { &fb.location };
                    io_error(location, e)
                })?;
                check(ha, &ra, &fa.location)?;
                check(hb, &rb, &fb.location)?;
                diff
            }
        };
        if (diff.docs_a, diff.docs_b) != (ra.entries, rb.entries) {
            return Err(CatalogError::Corrupt {
                location: format!("{} and {}", fa.location, fb.location),
                message: format!(
                    "{} and {} entries read, the manifests record {} and {}",
                    diff.docs_a, diff.docs_b, ra.entries, rb.entries
                ),
            });
        }
        Ok(diff)
    })
    .await
    .map_err(|e| CatalogError::Internal(format!("document diff worker failed: {e}")))?
    .map(Some)
}

fn check<R: Read>(h: HashingReader<R>, r: &DocIndexRef, location: &str) -> Result<()> {
    let (len, checksum) = h.finish().map_err(|e| io_error(location, e))?;
    check_sum(len, &checksum, r, location)
}

#[cfg(test)]
mod tests {
    use super::*;
    use smelt_catalog::docindex::{encode_run, put_run, split_index_path, RunBuilder, CHECKSUM_BLOCK};

    fn h(n: u8) -> [u8; 16] {
        [n; 16]
    }

    fn index(entries: &[(&str, u8)]) -> Vec<u8> {
        let mut e: Vec<(&str, [u8; 16])> = entries.iter().map(|(i, n)| (*i, h(*n))).collect();
        encode_run(&mut e).unwrap()
    }

    fn diff(a: &[(&str, u8)], b: &[(&str, u8)], samples: usize) -> DocDiff {
        let d = diff_doc_indexes(&index(a)[..], &index(b)[..], samples).unwrap();
        assert_eq!(d.docs_a, d.removed + d.changed + d.unchanged, "{d:?}");
        assert_eq!(d.docs_b, d.added + d.changed + d.unchanged, "{d:?}");
        d
    }

    fn counts(d: &DocDiff) -> (u64, u64, u64, u64) {
        (d.added, d.removed, d.changed, d.unchanged)
    }

    #[test]
    fn counts_added_removed_changed_unchanged_with_samples() {
        let a = [("a", 1), ("b", 1), ("c", 1), ("d", 1), ("f", 1)];
        let b = [("b", 1), ("c", 2), ("d", 1), ("e", 1), ("g", 3), ("h", 4)];
        let d = diff(&a, &b, 10);
        assert_eq!(counts(&d), (3, 2, 1, 2));
        assert_eq!(d.samples.added, ["e", "g", "h"]);
        assert_eq!(d.samples.removed, ["a", "f"]);
        assert_eq!(d.samples.changed, ["c"]);
        assert_eq!((d.docs_a, d.docs_b), (5, 6));
    }

    #[test]
    fn empty_versions() {
        assert_eq!(counts(&diff(&[], &[], 5)), (0, 0, 0, 0));
        assert_eq!(counts(&diff(&[], &[("x", 1), ("y", 1)], 5)), (2, 0, 0, 0));
        let d = diff(&[("x", 1), ("y", 1)], &[], 5);
        assert_eq!(counts(&d), (0, 2, 0, 0));
        assert_eq!(d.samples.removed, ["x", "y"]);
    }

    #[test]
    fn duplicate_ids_are_a_multiset() {
        // x: {1,1,2} -> {1,3}: one unchanged (1), one changed (2->3), one removed (the other 1).
        let d = diff(&[("x", 1), ("x", 1), ("x", 2)], &[("x", 1), ("x", 3)], 5);
        assert_eq!(counts(&d), (0, 1, 1, 1));
        assert_eq!(
            (d.samples.changed.as_slice(), d.samples.removed.as_slice()),
            (&["x".to_string()][..], &["x".to_string()][..])
        );
        // Same duplicates on both sides: all unchanged.
        assert_eq!(counts(&diff(&[("x", 1), ("x", 1)], &[("x", 1), ("x", 1)], 5)), (0, 0, 0, 2));
        // Duplicated only in B: one added.
        assert_eq!(counts(&diff(&[("x", 1)], &[("x", 1), ("x", 1), ("y", 1)], 5)), (2, 0, 0, 1));
        // A duplicate id only on one side counts every copy, and is sampled once.
        let d = diff(&[("a", 1), ("a", 2), ("b", 1)], &[("b", 1)], 5);
        assert_eq!(counts(&d), (0, 2, 0, 1));
        assert_eq!(d.samples.removed, ["a"]);
    }

    #[test]
    fn samples_are_bounded_deterministic_and_sorted() {
        let ids: Vec<String> = (0..1000).map(|i| format!("doc-{i:04}")).collect();
        let a: Vec<(&str, u8)> = ids.iter().map(|i| (i.as_str(), 1)).collect();
        let d = diff(&a, &[], 7);
        assert_eq!(d.removed, 1000);
        assert_eq!(d.samples.removed.len(), 7);
        assert!(d.samples.removed.windows(2).all(|w| w[0] < w[1]));
        // The bottom-k of the ids' hashes, whatever else is in the diff.
        let mut keyed: Vec<(u64, &String)> =
            ids.iter().map(|i| (xxhash_rust::xxh3::xxh3_64(i.as_bytes()), i)).collect();
        keyed.sort();
        let mut want: Vec<String> = keyed[..7].iter().map(|(_, i)| (*i).clone()).collect();
        want.sort();
        assert_eq!(d.samples.removed, want);
        // Spread over the id range, not the first ids.
        let spread = diff(&a, &[], 40).samples.removed;
        assert!(
            spread.iter().any(|i| i.as_str() > "doc-0500") && spread.iter().any(|i| i.as_str() < "doc-0500"),
            "{spread:?}"
        );
        assert!(diff(&a, &[], 0).samples.removed.is_empty());
    }

    #[test]
    fn the_threaded_join_equals_the_single_threaded_one() {
        // Duplicate ids (three per id in A) that straddle batch boundaries.
        let a: Vec<(String, u8)> = (0..20_000).map(|i| (format!("id-{:06}", i / 3), (i % 5) as u8)).collect();
        let b: Vec<(String, u8)> =
            (0..20_000).filter(|i| i % 7 != 0).map(|i| (format!("id-{:06}", (i + 100) / 2), (i % 4) as u8)).collect();
        fn refs(v: &[(String, u8)]) -> Vec<(&str, u8)> {
            v.iter().map(|(i, n)| (i.as_str(), *n)).collect()
        }
        let (ia, ib) = (index(&refs(&a)), index(&refs(&b)));
        let single = diff(&refs(&a), &refs(&b), 10);
        let (threaded, rest_a, rest_b) = diff_threaded(&ia[..], &ib[..], 10).unwrap();
        assert_eq!(single, threaded);
        assert!(single.added > 0 && single.removed > 0 && single.changed > 0 && single.unchanged > 0, "{single:?}");
        assert!(rest_a.is_empty() && rest_b.is_empty(), "both indexes read to their end");
        let e = diff_threaded(&ia[..], &ib[..ib.len() / 2], 10).map(|_| ()).unwrap_err();
        assert_eq!(e.0, "B");
        let e = diff_threaded(&b"junk"[..], &ib[..], 10).map(|_| ()).unwrap_err();
        assert_eq!(e.0, "A");
    }

    /// Writes `entries` (sorted here) as a format 2 index with restart points
    /// 4 KiB apart, maps it.
    fn mapped(dir: &std::path::Path, name: &str, entries: &[(String, u8)]) -> (File, MappedIndex) {
        let mut e: Vec<(&[u8], [u8; 16])> = entries.iter().map(|(i, n)| (i.as_bytes(), h(*n))).collect();
        e.sort_unstable();
        let mut w = smelt_catalog::docindex::DocIndexWriter::with_restarts(Vec::new(), 4096).unwrap();
        for (id, hash) in &e {
            w.push(id, hash).unwrap();
        }
        let path = dir.join(name);
        std::fs::write(&path, w.finish().unwrap()).unwrap();
        let f = File::open(&path).unwrap();
        let ix = MappedIndex::open(&f).unwrap().unwrap();
        (f, ix)
    }

    #[test]
    fn key_ranges_on_threads_give_the_streaming_diff() {
        let dir = tempfile::tempdir().unwrap();
        // Duplicate ids (three per id in A, up to 40 for some) across restart points and range cuts.
        let a: Vec<(String, u8)> = (0..80_000)
            .map(|i| (format!("id-{:06}", if i % 1000 < 40 { i / 1000 * 1000 } else { i / 3 }), (i % 5) as u8))
            .collect();
        let b: Vec<(String, u8)> =
            (0..80_000).filter(|i| i % 7 != 0).map(|i| (format!("id-{:06}", (i + 100) / 2), (i % 4) as u8)).collect();
        fn refs(v: &[(String, u8)]) -> Vec<(&str, u8)> {
            v.iter().map(|(i, n)| (i.as_str(), *n)).collect()
        }
        let (fa, ma) = mapped(dir.path(), "a.idx", &a);
        let (fb, mb) = mapped(dir.path(), "b.idx", &b);
        let (_fe, me) = mapped(dir.path(), "e.idx", &[]);
        let loc = ["A", "B"];
        for samples in [0, 10] {
            let want = diff(&refs(&a), &refs(&b), samples);
            assert!(want.added > 0 && want.removed > 0 && want.changed > 0 && want.unchanged > 0, "{want:?}");
            for parts in [1, 2, 3, 5, 64] {
                assert_eq!(diff_mapped(&ma, &mb, samples, parts, [None, None], loc).unwrap(), want, "{parts} parts");
            }
            // One side empty: every entry of the other is added or removed.
            let only_b = diff_mapped(&me, &mb, samples, 3, [None, None], loc).unwrap();
            assert_eq!(only_b, diff(&[], &refs(&b), samples));
            let only_a = diff_mapped(&ma, &me, samples, 3, [None, None], loc).unwrap();
            assert_eq!(only_a, diff(&refs(&a), &[], samples));
        }

        // Checksums: block checksums hashed inside the joins, whole-file ones
        // in a pass of their own; both pass on the files as written, and a
        // wrong one is the error, naming its side, however many ranges.
        let recorded = |f: &File, kind: &str| DocIndexRef {
            path: String::new(),
            bytes: f.metadata().unwrap().len(),
            checksum: smelt_catalog::docindex::hash_file(f, kind).unwrap().1,
            entries: 0,
        };
        let want = diff(&refs(&a), &refs(&b), 10);
        for kind in [BLOCKS_PREFIX, smelt_catalog::docindex::WHOLE_PREFIX] {
            let (ra, mut rb) = (recorded(&fa, kind), recorded(&fb, kind));
            assert!(ra.checksum.starts_with(kind) && ra.bytes > 3 * CHECKSUM_BLOCK as u64, "{ra:?}");
            for parts in [1, 2, 3, 7] {
                assert_eq!(diff_mapped(&ma, &mb, 10, parts, [Some(&ra), Some(&rb)], loc).unwrap(), want);
            }
            rb.checksum.push('0');
            for parts in [1, 2, 4] {
                let e = diff_mapped(&ma, &mb, 10, parts, [Some(&ra), Some(&rb)], loc).unwrap_err();
                assert!(matches!(&e, CatalogError::Corrupt { location, .. } if location == "B"), "{kind} {parts}: {e}");
            }
        }

        // A damaged byte in the middle of A, where a range's join reads it:
        // the block checksum tells it, whatever the join made of the byte.
        let ra = recorded(&fa, BLOCKS_PREFIX);
        let rb = recorded(&fb, BLOCKS_PREFIX);
        let mut bytes = std::fs::read(dir.path().join("a.idx")).unwrap();
        for at in [bytes.len() / 3, bytes.len() / 2 + 7] {
            bytes[at] ^= 0x5a;
        }
        std::fs::write(dir.path().join("bad.idx"), &bytes).unwrap();
        let bad = MappedIndex::open(&File::open(dir.path().join("bad.idx")).unwrap()).unwrap().unwrap();
        for parts in [1, 2, 5] {
            let e = diff_mapped(&bad, &mb, 10, parts, [Some(&ra), Some(&rb)], loc).unwrap_err();
            assert!(matches!(&e, CatalogError::Corrupt { location, .. } if location == "A"), "{parts}: {e}");
        }
    }

    #[test]
    fn a_corrupt_index_is_an_error_naming_the_side() {
        let good = index(&[("a", 1)]);
        let e = diff_doc_indexes(&good[..], &b"junk"[..], 1).unwrap_err();
        assert!(matches!(&e, CatalogError::Corrupt { location, .. } if location.contains("version B")), "{e}");
    }

    #[tokio::test]
    async fn diffs_stored_versions_and_reports_missing_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store = DatasetStore::open(dir.path().join("ds").to_str().unwrap()).unwrap();
        let mut refs = Vec::new();
        for (split, docs) in [(0, vec![("a", 1), ("b", 1)]), (1, vec![("b", 2), ("c", 1)])] {
            let mut builder = RunBuilder::new();
            for (id, n) in docs {
                builder.push(id.as_bytes(), &h(n)).unwrap();
            }
            refs.push(put_run(&store, &split_index_path("r", split), builder.finish().unwrap()).await.unwrap());
        }
        let manifest = |r: Option<DocIndexRef>| {
            let json = serde_json::json!({
                "format": 1, "dataset": "d", "version": 1, "committed_at": "t", "digest": "x", "schema": [],
                "shards": [], "totals": {"rows": 0, "shards": 0, "bytes": 0, "tokens": 0, "text_bytes": 0},
                "stats": [], "funnel": [],
                "lineage": {"run_id": "r", "pipeline_path": "p", "pipeline_hash": "h", "resolved_config": {}, "smelt_version": "0", "inputs": []}
            });
            // A manifest written before document indexes existed has no `doc_index`: it still loads.
            let mut m: VersionManifest = serde_json::from_value(json).unwrap();
            assert!(m.doc_index.is_none());
            m.doc_index = r;
            m
        };
        let (ma, mb) = (manifest(Some(refs[0].clone())), manifest(Some(refs[1].clone())));
        let d = diff_version_documents(&store, &ma, &store, &mb, 5).await.unwrap().unwrap();
        assert_eq!(counts(&d), (1, 1, 1, 0));
        assert_eq!(d.samples.changed, ["b"]);
        assert!(diff_version_documents(&store, &manifest(None), &store, &mb, 5).await.unwrap().is_none());

        // Indexes committed before format 2 (zstd, whole-file checksums) diff the same, streamed.
        let mut old = Vec::new();
        for (i, docs) in [vec![("a", 1), ("b", 1)], vec![("b", 2), ("c", 1)]].into_iter().enumerate() {
            let mut w = smelt_catalog::docindex::DocIndexWriter::with_level(Vec::new(), -1).unwrap();
            for (id, n) in docs {
                w.push(id.as_bytes(), &h(n)).unwrap();
            }
            let bytes = w.finish().unwrap();
            let path = format!("_versions/old-{i}.idx");
            std::fs::create_dir_all(dir.path().join("ds/_versions")).unwrap();
            std::fs::write(dir.path().join("ds").join(&path), &bytes).unwrap();
            let checksum = format!("xxh3-128:{:032x}", xxhash_rust::xxh3::xxh3_128(&bytes));
            old.push(manifest(Some(DocIndexRef { path, entries: 2, bytes: bytes.len() as u64, checksum })));
        }
        let d_old = diff_version_documents(&store, &old[0], &store, &old[1], 5).await.unwrap().unwrap();
        assert_eq!(d_old, d);
        let mut bad = old[1].clone();
        bad.doc_index.as_mut().unwrap().checksum.replace_range(12..14, "zz");
        assert!(matches!(
            diff_version_documents(&store, &old[0], &store, &bad, 5).await,
            Err(CatalogError::Corrupt { .. })
        ));
        // A format 2 index and a format 1 one: streamed too.
        assert_eq!(diff_version_documents(&store, &ma, &store, &old[1], 5).await.unwrap().unwrap(), d);

        let mut tampered = ma.clone();
        tampered.doc_index.as_mut().unwrap().checksum = "xxh3-128:00".into();
        let e = diff_version_documents(&store, &tampered, &store, &mb, 5).await.unwrap_err();
        assert!(matches!(e, CatalogError::Corrupt { .. }), "{e}");
        let mut gone = ma.clone();
        gone.doc_index.as_mut().unwrap().path = "_versions/nope.idx".into();
        let e = diff_version_documents(&store, &gone, &store, &mb, 5).await.unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }
}
