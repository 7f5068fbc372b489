//! k-way merge of sorted index files, at most [`MERGE_FAN_IN`] at a time.
//!
//! ```text
//! runs (n > fan-in) ──merge a group──► merge-NNNNNN.idx ─┐
//! rest of the runs ──────────────────────────────────────┴─loser tree──► out (one sorted index)
//! ```

use std::cmp::Ordering;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::reader::DocIndexReader;
use super::writer::DocIndexWriter;
use super::{INTERMEDIATE_LEVEL, MERGE_FAN_IN};

/// Merges sorted index files into one on `out`, at most [`MERGE_FAN_IN`] at a
/// time: with more inputs, earlier passes merge groups into files under
/// `scratch`. Duplicate entries are all kept. Returns `out` and the entry count.
///
/// # Errors
/// Reading an input (with its path in the message) or writing `out`.
pub fn merge_files<W: Write>(inputs: &[PathBuf], out: W, scratch: &Path) -> io::Result<(W, u64)> {
    merge_files_with(inputs, out, scratch, MERGE_FAN_IN)
}

fn with_path(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn open_index(path: &Path) -> io::Result<DocIndexReader<File>> {
    File::open(path).and_then(DocIndexReader::new).map_err(|e| with_path(path, e))
}

pub(super) fn merge_files_with<W: Write>(
    inputs: &[PathBuf],
    out: W,
    scratch: &Path,
    fan_in: usize,
) -> io::Result<(W, u64)> {
    let fan_in = fan_in.max(2);
    // (path, whether it is ours): intermediate files are removed once merged.
    let mut level: Vec<(PathBuf, bool)> = inputs.iter().map(|p| (p.clone(), false)).collect();
    let remove = |group: &[(PathBuf, bool)]| {
        for (p, owned) in group {
            if *owned {
                let _ = std::fs::remove_file(p);
            }
        }
    };
    let mut made = 0;
    while level.len() > fan_in {
        // Merge just enough runs that the rest fits in one final merge (with
        // 100 runs: 37 first, not all 100 twice); with many more, full groups.
        let take = (level.len() - fan_in + 1).min(fan_in);
        let group: Vec<(PathBuf, bool)> = level.drain(..take).collect();
        let path = scratch.join(format!("merge-{made:06}.idx"));
        made += 1;
        let file = BufWriter::new(File::create(&path).map_err(|e| with_path(&path, e))?);
        let mut w = DocIndexWriter::with_level(file, INTERMEDIATE_LEVEL)?;
        let paths: Vec<PathBuf> = group.iter().map(|(p, _)| p.clone()).collect();
        merge_group(&paths, &mut w)?;
        w.finish()?.flush()?;
        remove(&group);
        level.push((path, true));
    }
    let mut w = DocIndexWriter::new(out)?;
    let paths: Vec<PathBuf> = level.iter().map(|(p, _)| p.clone()).collect();
    merge_group(&paths, &mut w)?;
    let n = w.entries();
    let out = w.finish()?;
    remove(&level);
    Ok((out, n))
}

fn merge_group<W: Write>(paths: &[PathBuf], w: &mut DocIndexWriter<W>) -> io::Result<()> {
    let mut readers = Vec::with_capacity(paths.len());
    for p in paths {
        readers.push((open_index(p)?, p.as_path()));
    }
    merge_readers(&mut readers, w)
}

/// k-way merge of sorted readers with a loser tree: one comparison per level
/// (log2 k) for each entry, half of what a binary heap needs.
fn merge_readers<R: Read, W: Write>(
    readers: &mut [(DocIndexReader<R>, &Path)],
    w: &mut DocIndexWriter<W>,
) -> io::Result<()> {
    let k = readers.len();
    if k == 0 {
        return Ok(());
    }
    let mut live = Vec::with_capacity(k);
    for (r, p) in readers.iter_mut() {
        live.push(r.advance().map_err(|e| with_path(p, e))?);
    }
    // Whether reader `a`'s entry comes before reader `b`'s (exhausted readers last).
    let before = |readers: &[(DocIndexReader<R>, &Path)], live: &[bool], a: usize, b: usize| -> bool {
        match (live[a], live[b]) {
            (true, true) => {
                let (ra, rb) = (&readers[a].0, &readers[b].0);
                ra.id().cmp(rb.id()).then_with(|| ra.hash().cmp(rb.hash())).then(a.cmp(&b)) == Ordering::Less
            }
            (x, _) => x,
        }
    };
    // tree[0]: the winner; tree[1..k]: the loser of each match; leaf i sits at k + i.
    let mut tree = vec![0usize; k.max(1)];
    fn build<R: Read>(
        node: usize,
        k: usize,
        tree: &mut [usize],
        before: &impl Fn(&[(DocIndexReader<R>, &Path)], &[bool], usize, usize) -> bool,
        readers: &[(DocIndexReader<R>, &Path)],
        live: &[bool],
    ) -> usize {
        if node >= k {
            return node - k;
        }
        let l = build(2 * node, k, tree, before, readers, live);
        let r = build(2 * node + 1, k, tree, before, readers, live);
        if before(readers, live, l, r) {
            tree[node] = r;
            l
        } else {
            tree[node] = l;
            r
        }
    }
    tree[0] = build(1, k, &mut tree, &before, readers, &live);
    loop {
        let top = tree[0];
        if !live[top] {
            return Ok(());
        }
        {
            let r = &readers[top].0;
            w.push(r.id(), r.hash())?;
        }
        let (r, p) = &mut readers[top];
        live[top] = r.advance().map_err(|e| with_path(p, e))?;
        // Replay the matches on the way from the leaf to the root.
        let mut winner = top;
        let mut node = (top + k) / 2;
        while node >= 1 {
            if before(readers, &live, tree[node], winner) {
                std::mem::swap(&mut tree[node], &mut winner);
            }
            node /= 2;
        }
        tree[0] = winner;
    }
}
