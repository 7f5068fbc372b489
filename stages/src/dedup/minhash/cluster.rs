//! Clustering: union-find over the candidate pairs, the keep rules, and the
//! per-row marks (`clusters.bin`) the appliers read.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use smelt_engine::Result;

use super::format::{le_u32, le_u64, node, Layout};
use super::MinhashKeep;
use crate::dedup::io;

/// Union-find over every document of the run by dense index, as datatrove's
/// `MinhashDedupCluster`: union by size, the first argument's root winning
/// ties; path halving (roots are the same as with datatrove's path
/// compression). 4 + 4 bytes per document, 8 more with `keep: newest`.
pub(super) struct Clusters {
    parent: Vec<u32>,
    pub(super) size: Vec<u32>,
    keep: MinhashKeep,
    /// Preference per document (`newest` only).
    pref: Vec<i64>,
    /// With `against`: the last node stands for the earlier versions; a set
    /// joined to it keeps no member of the run.
    sentinel: Option<u32>,
}

impl Clusters {
    pub(super) fn new(n: usize, keep: MinhashKeep) -> Self {
        Clusters {
            parent: (0..n as u32).collect(),
            size: vec![1; n],
            keep,
            pref: if keep == MinhashKeep::Newest { vec![i64::MAX; n] } else { Vec::new() },
            sentinel: None,
        }
    }

    /// Adds the node that stands for earlier versions (after the documents).
    pub(super) fn with_sentinel(mut self) -> Self {
        let s = self.parent.len() as u32;
        self.parent.push(s);
        self.size.push(1);
        if !self.pref.is_empty() {
            self.pref.push(i64::MAX);
        }
        self.sentinel = Some(s);
        self
    }

    /// Joins `x`'s set to the earlier versions' (after every pair's union, so
    /// the clusters within the run are datatrove's).
    pub(super) fn join_earlier(&mut self, x: u32) {
        let s = self.sentinel.expect("with_sentinel");
        let (rs, rx) = (self.find(s), self.find(x));
        if rs != rx {
            self.parent[rx as usize] = rs;
            self.size[rs as usize] += self.size[rx as usize];
        }
    }

    /// Whether root `r` is the earlier versions' set.
    pub(super) fn is_earlier(&self, r: u32) -> bool {
        self.sentinel == Some(r)
    }

    pub(super) fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let p = self.parent[x as usize];
            self.parent[x as usize] = self.parent[p as usize];
            x = p;
        }
        x
    }

    pub(super) fn union(&mut self, (a, pa): (u32, i64), (b, pb): (u32, i64)) {
        if !self.pref.is_empty() {
            self.pref[a as usize] = pa;
            self.pref[b as usize] = pb;
        }
        let (mut ra, mut rb) = (self.find(a), self.find(b));
        if ra == rb {
            return;
        }
        if self.size[ra as usize] < self.size[rb as usize] {
            std::mem::swap(&mut ra, &mut rb);
        }
        self.parent[rb as usize] = ra;
        self.size[ra as usize] += self.size[rb as usize];
    }

    /// Memory held while clustering (with the two arrays `write_clusters` adds), in bytes.
    pub(super) fn bytes(&self) -> usize {
        self.parent.len() * 16 + self.pref.len() * 8
    }

    /// The kept member of every cluster, by root (`u32::MAX` elsewhere).
    fn kept(&mut self) -> Vec<u32> {
        let n = self.parent.len() as u32;
        let mut kept = vec![u32::MAX; n as usize];
        for x in 0..n {
            let r = self.find(x);
            if self.size[r as usize] < 2 {
                continue;
            }
            if self.is_earlier(r) {
                // The earlier copy is the kept one: no member of the run stays.
                kept[r as usize] = r;
                continue;
            }
            let k = &mut kept[r as usize];
            match self.keep {
                // datatrove keeps the root of its union-find.
                MinhashKeep::Datatrove => *k = r,
                MinhashKeep::First => {
                    if *k == u32::MAX {
                        *k = x;
                    }
                }
                MinhashKeep::Newest => {
                    if *k == u32::MAX || (self.pref[x as usize], x) < (self.pref[*k as usize], *k) {
                        *k = x;
                    }
                }
            }
        }
        kept
    }
}

/// `clusters.bin`: per clustered document, sorted by node: node u64, cluster
/// u64, size u32, dropped u32 (little-endian, 24 bytes); `clusters.idx`: per
/// split with such documents, (split u32, first record u64, count u64).
/// Cluster ids number the clusters by their kept document, in input order.
pub(super) fn write_clusters(dir: &Path, uf: &mut Clusters, layout: &Layout) -> Result<Written> {
    let kept = uf.kept();
    let n = uf.parent.len() as u32;
    let mut cluster = vec![u32::MAX; n as usize];
    let mut clusters = 0u32;
    for x in 0..n {
        let r = uf.find(x);
        if kept[r as usize] == x && !uf.is_earlier(r) {
            cluster[r as usize] = clusters;
            clusters += 1;
        }
    }
    let bin = dir.join("clusters.bin");
    let idx = dir.join("clusters.idx");
    let mut b = BufWriter::new(File::create(&bin).map_err(|e| io(&bin, e))?);
    let mut x_w = BufWriter::new(File::create(&idx).map_err(|e| io(&idx, e))?);
    let (mut written, mut dropped, mut earlier) = (0u64, 0u64, 0u64);
    for &(split, docs, first) in layout {
        let start = written;
        for row in 0..docs {
            let x = (first + row) as u32;
            let r = uf.find(x);
            let size = uf.size[r as usize];
            if size < 2 {
                continue;
            }
            let drop = kept[r as usize] != x;
            let of_earlier = uf.is_earlier(r);
            dropped += u64::from(drop);
            earlier += u64::from(of_earlier);
            let mut rec = [0u8; 24];
            rec[..8].copy_from_slice(&node(split, row)?.to_le_bytes());
            rec[8..16].copy_from_slice(&u64::from(cluster[r as usize]).to_le_bytes());
            rec[16..20].copy_from_slice(&size.to_le_bytes());
            // 0 kept, 1 dropped, 2 dropped as a duplicate of an earlier version.
            rec[20..].copy_from_slice(&(u32::from(drop) + u32::from(of_earlier)).to_le_bytes());
            b.write_all(&rec).map_err(|e| io(&bin, e))?;
            written += 1;
        }
        if written > start {
            let mut e = [0u8; 20];
            e[..4].copy_from_slice(&split.to_le_bytes());
            e[4..12].copy_from_slice(&start.to_le_bytes());
            e[12..].copy_from_slice(&(written - start).to_le_bytes());
            x_w.write_all(&e).map_err(|e| io(&idx, e))?;
        }
    }
    b.flush().map_err(|e| io(&bin, e))?;
    x_w.flush().map_err(|e| io(&idx, e))?;
    Ok(Written { clustered: written, clusters: u64::from(clusters), dropped, earlier, kept, cluster })
}

/// What [`write_clusters`] found.
pub(super) struct Written {
    /// Documents in clusters.
    pub(super) clustered: u64,
    /// Clusters.
    pub(super) clusters: u64,
    /// Documents dropped.
    pub(super) dropped: u64,
    /// Of them, near-duplicates of earlier versions (`against`).
    pub(super) earlier: u64,
    /// Kept member per root (dense index).
    pub(super) kept: Vec<u32>,
    /// Cluster number per root.
    pub(super) cluster: Vec<u32>,
}

/// What happens to a clustered row of a split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Mark {
    pub(super) row: u64,
    pub(super) cluster: u64,
    pub(super) size: u32,
    /// 0 kept, 1 dropped, 2 dropped as a near-duplicate of an earlier version.
    pub(super) dropped: u32,
}

pub(super) fn read_marks(dir: &Path, split: u32) -> Result<Vec<Mark>> {
    let idx = dir.join("clusters.idx");
    let bytes = std::fs::read(&idx).map_err(|e| io(&idx, e))?;
    let Some(entry) = bytes.chunks_exact(20).find(|c| le_u32(&c[..4]) == split) else {
        return Ok(Vec::new());
    };
    let (start, n) = (le_u64(&entry[4..12]), le_u64(&entry[12..]));
    let bin = dir.join("clusters.bin");
    let mut f = File::open(&bin).map_err(|e| io(&bin, e))?;
    f.seek(SeekFrom::Start(start * 24)).map_err(|e| io(&bin, e))?;
    let mut buf = vec![0u8; n as usize * 24];
    f.read_exact(&mut buf).map_err(|e| io(&bin, e))?;
    Ok(buf
        .chunks_exact(24)
        .map(|c| Mark {
            row: le_u64(&c[..8]) & ((1 << 40) - 1),
            cluster: le_u64(&c[8..16]),
            size: le_u32(&c[16..20]),
            dropped: le_u32(&c[20..]),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_find_joins_chains_across_bands() {
        // Two splits of 4 documents: dense indexes 0..4 and 4..8.
        let layout: Layout = vec![(0, 4, 0), (3, 4, 4)];
        let mut uf = Clusters::new(8, MinhashKeep::First);
        uf.union((1, 0), (2, 0));
        uf.union((5, 0), (6, 0));
        uf.union((2, 0), (3, 0));
        uf.union((3, 0), (1, 0));
        let dir = tempfile::tempdir().unwrap();
        let w = write_clusters(dir.path(), &mut uf, &layout).unwrap();
        assert_eq!((w.clustered, w.clusters, w.dropped), (5, 2, 3));
        let m = |row, cluster, size, dropped: bool| Mark { row, cluster, size, dropped: u32::from(dropped) };
        assert_eq!(read_marks(dir.path(), 0).unwrap(), [m(1, 0, 3, false), m(2, 0, 3, true), m(3, 0, 3, true)]);
        assert_eq!(read_marks(dir.path(), 3).unwrap(), [m(1, 1, 2, false), m(2, 1, 2, true)]);
        assert!(read_marks(dir.path(), 1).unwrap().is_empty());
    }

    #[test]
    fn newest_keeps_the_smallest_preference_then_the_first() {
        // Preferences are minus fetched_at: -30 is the newest.
        let layout: Layout = vec![(0, 6, 0)];
        let mut uf = Clusters::new(6, MinhashKeep::Newest);
        uf.union((0, -10), (1, -30));
        uf.union((1, -30), (2, -20));
        uf.union((3, i64::MAX), (4, i64::MAX));
        let dir = tempfile::tempdir().unwrap();
        write_clusters(dir.path(), &mut uf, &layout).unwrap();
        let kept: Vec<(u64, u64)> =
            read_marks(dir.path(), 0).unwrap().iter().filter(|m| m.dropped == 0).map(|m| (m.row, m.cluster)).collect();
        // Clusters are numbered by their kept row: 1 (newest of 0, 1, 2), then 3 (no dates: the first).
        assert_eq!(kept, [(1, 0), (3, 1)]);
    }

    #[test]
    fn datatrove_keeps_the_root_of_union_by_size() {
        // datatrove's MinhashDedupCluster.union on the same pairs: (5, 6) then
        // (1, 5): the sizes are 1 and 2, so 5's root stays although 1 comes first;
        // (2, 3) then (3, 1): 2's set is larger and stays.
        let layout: Layout = vec![(0, 8, 0)];
        let mut uf = Clusters::new(8, MinhashKeep::Datatrove);
        for (a, b) in [(5, 6), (1, 5), (2, 3), (4, 2), (7, 2), (3, 0)] {
            uf.union((a, 0), (b, 0));
        }
        let dir = tempfile::tempdir().unwrap();
        write_clusters(dir.path(), &mut uf, &layout).unwrap();
        let kept: Vec<u64> =
            read_marks(dir.path(), 0).unwrap().iter().filter(|m| m.dropped == 0).map(|m| m.row).collect();
        assert_eq!(kept, [2, 5]);
    }
}
