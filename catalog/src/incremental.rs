//! What changed between two versions of an upstream dataset, for downstream
//! runs that read only that (`dataset` source, `incremental: true`;
//! docs/adr/0019-incremental-downstream.md).
//!
//! ```text
//! old version's index ─┐  merge join on (id, content hash), both sorted, one entry of each in memory
//! new version's index ─┴─► added:   keys (id, hash) only in the new one   → the rows the run reads
//!                          removed: ids of entries only in the old one    → the rows that leave the base
//! ```
//! A changed document (same id, new hash) is both: its old row leaves, the new one is read.
//! Memory holds the delta, not the dataset: 16 bytes per added document and the removed ids.

use std::collections::HashSet;
use std::fs::File;
use std::io;

use crate::commit::load_manifest;
use crate::docindex::{io_error, open_stored, DocIndexReader};
use crate::error::{CatalogError, Result};
use crate::model::{UpstreamRead, VersionManifest};
use crate::store::DatasetStore;

/// The documents that differ between two versions.
#[derive(Debug, Default, Clone)]
pub struct Delta {
    /// [`row_key`] of every `(id, content hash)` of the new version absent from the old one.
    pub added: HashSet<u128>,
    /// Ids of every entry of the old version absent from the new one (removed, or changed).
    pub removed: HashSet<Vec<u8>>,
}

/// The key of a document: xxh3-128 over its id and content hash.
pub fn row_key(id: &[u8], hash: &[u8; 16]) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&(id.len() as u64).to_le_bytes());
    h.update(id);
    h.update(hash);
    h.digest128()
}

/// The delta from `old` to `new`, two versions of the dataset at `store`,
/// from their stored document indexes.
///
/// # Errors
/// `User` when either version has no document index (its rows have no `id`
/// and `content_hash`); a missing or damaged index; storage failures.
pub async fn delta(store: &DatasetStore, old: &VersionManifest, new: &VersionManifest) -> Result<Delta> {
    let index = |m: &VersionManifest| {
        m.doc_index.clone().ok_or_else(|| {
            CatalogError::User(format!(
                "{}@{} has no document index, so what changed in it cannot be read incrementally: \
                 its rows need an `id` and a `content_hash` column (add a `content_hash` stage to its pipeline), \
                 or read it with `incremental: false`",
                m.dataset, m.version
            ))
        })
    };
    let (a, b) = (index(old)?, index(new)?);
    let (a, b) = (open_stored(store, &a).await?, open_stored(store, &b).await?);
    let location = format!("{} and {}", a.location, b.location);
    tokio::task::spawn_blocking(move || {
        let d = merge_join(File::open(&a.path)?, File::open(&b.path)?);
        drop((a, b));
        d
    })
    .await
    .map_err(|e| CatalogError::Internal(format!("index diff panicked: {e}")))?
    .map_err(|e| io_error(&location, e))
}

/// The delta an incremental read `read` stands for (its `since` to its
/// version), read from the upstream's storage; `None` for a full read.
///
/// # Errors
/// As [`delta`]; an upstream version that is gone (expired).
pub async fn delta_of(read: &UpstreamRead) -> Result<Option<Delta>> {
    let (Some(since), Some(now)) = (&read.since, read.number()) else { return Ok(None) };
    let store = DatasetStore::open(&read.root)?;
    let (old, new) = (load_manifest(&store, since.upstream).await?, load_manifest(&store, now).await?);
    delta(&store, &old, &new).await.map(Some)
}

/// Both sorted indexes walked together.
fn merge_join(old: File, new: File) -> io::Result<Delta> {
    let (mut a, mut b) = (DocIndexReader::new(old)?, DocIndexReader::new(new)?);
    let mut out = Delta::default();
    let (mut has_a, mut has_b) = (a.advance()?, b.advance()?);
    while has_a || has_b {
        let order = match (has_a, has_b) {
            (true, true) => (a.id(), a.hash()).cmp(&(b.id(), b.hash())),
            (true, false) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                out.removed.insert(a.id().to_vec());
                has_a = a.advance()?;
            }
            std::cmp::Ordering::Greater => {
                out.added.insert(row_key(b.id(), b.hash()));
                has_b = b.advance()?;
            }
            std::cmp::Ordering::Equal => {
                has_a = a.advance()?;
                has_b = b.advance()?;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docindex::encode_run;

    #[test]
    fn added_removed_and_changed_documents() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, entries: &[(&str, u8)]| {
            let mut e: Vec<(&str, [u8; 16])> = entries.iter().map(|&(id, h)| (id, [h; 16])).collect();
            let path = dir.path().join(name);
            std::fs::write(&path, encode_run(&mut e).unwrap()).unwrap();
            File::open(path).unwrap()
        };
        let old = write("old", &[("a", 1), ("b", 1), ("c", 1), ("d", 1)]);
        let new = write("new", &[("a", 1), ("c", 2), ("d", 1), ("e", 1), ("f", 1)]);
        let d = merge_join(old, new).unwrap();
        let removed: std::collections::BTreeSet<&[u8]> = d.removed.iter().map(Vec::as_slice).collect();
        assert_eq!(removed, [&b"b"[..], &b"c"[..]].into_iter().collect());
        let want: HashSet<u128> =
            [("c", 2), ("e", 1), ("f", 1)].iter().map(|&(id, h)| row_key(id.as_bytes(), &[h; 16])).collect();
        assert_eq!(d.added, want);
    }
}
