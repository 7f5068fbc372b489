//! The version index built at commit: every split's sorted run fetched,
//! checked against its record and merged into one file, then placed where
//! the manifest names it.
//!
//! ```text
//! SplitRecord.doc_index* ──fetch + verify──► local runs ──merge_files──► version.idx ──place──► _versions/NNNNNN-<run>.idx
//! ```

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;

use super::hashing::HashingWriter;
use super::merge::merge_files;
use super::storage::io_error;
use super::storage::{backing, fetch, join_err, object_path, put_file, verify, Backing};
use super::{ScratchDir, SCRATCH_PREFIX};
use crate::error::{CatalogError, Result};
use crate::model::{DocIndexRef, SplitRecord};
use crate::store::DatasetStore;

/// A version index merged at commit, not yet stored.
#[derive(Debug)]
pub struct BuiltIndex {
    /// Holds the merged file until it is placed (removed on drop).
    _scratch: ScratchDir,
    file: PathBuf,
    entries: u64,
    bytes: u64,
    checksum: String,
}

impl BuiltIndex {
    /// Entries (documents) it holds.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Stores it at `rel` and returns the reference the manifest records. May
    /// be called again with another path (a commit that lost a version number
    /// to another committer): on a local root the file moves, elsewhere it is
    /// uploaded again and the earlier copy deleted.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn place(&mut self, store: &DatasetStore, rel: &str, previous: Option<&str>) -> Result<DocIndexRef> {
        put_file(store, rel, &self.file, self.bytes).await?;
        match backing(store)? {
            Backing::Local(root) => self.file = root.join(rel),
            Backing::Remote { store: os, prefix } => {
                if let Some(prev) = previous {
                    let _ = os.delete(&object_path(&prefix, prev)).await;
                }
            }
            Backing::Whole => {}
        }
        Ok(DocIndexRef {
            path: rel.to_string(),
            entries: self.entries,
            bytes: self.bytes,
            checksum: self.checksum.clone(),
        })
    }
}

/// The index of the version an incremental run appends to, and the ids of
/// the rows that leave it ([`crate::incremental`]).
#[derive(Debug, Clone, Copy)]
pub struct BaseIndex<'a> {
    /// The base version's index.
    pub index: &'a DocIndexRef,
    /// Ids whose entries are left out.
    pub removed: &'a std::collections::HashSet<Vec<u8>>,
}

/// Copies the entries of the index at `from` whose ids are not in `removed` to `to`; returns how many.
fn keep_entries(
    from: &std::path::Path,
    to: &std::path::Path,
    removed: &std::collections::HashSet<Vec<u8>>,
) -> io::Result<u64> {
    let mut r = super::DocIndexReader::new(std::io::BufReader::new(File::open(from)?))?;
    let mut w = super::DocIndexWriter::new(BufWriter::new(File::create(to)?))?;
    while r.advance()? {
        if !removed.contains(r.id()) {
            w.push(r.id(), r.hash())?;
        }
    }
    let n = w.entries();
    w.finish()?.flush()?;
    Ok(n)
}

/// Merges the sorted runs of `records`' splits (and the entries of `keep`'s
/// index that stay) into one version index, in a
/// local temporary file (next to the dataset on a local root). Returns `None`,
/// with a warning, when a split has no run (written by a smelt before document
/// indexes): the version then has no document index.
///
/// # Errors
/// A run that is missing or differs from its recorded checksum (`Corrupt`),
/// storage and temporary-space failures.
pub async fn build_version_index(
    store: &DatasetStore,
    run_id: &str,
    records: &[SplitRecord],
    keep: Option<BaseIndex<'_>>,
) -> Result<Option<BuiltIndex>> {
    let mut refs = Vec::with_capacity(records.len());
    for r in records {
        match &r.doc_index {
            Some(d) => refs.push(d.clone()),
            None => {
                tracing::warn!(
                    "split {} of run {run_id} has no document index (written by an older smelt, or no `id`/`content_hash` columns): \
                     the version gets no document index and `catalog diff` cannot list document changes",
                    r.split.index
                );
                return Ok(None);
            }
        }
    }
    let base = match backing(store)? {
        Backing::Local(root) => root.join("runs").join(run_id),
        _ => std::env::temp_dir(),
    };
    let scratch = {
        let b = base.clone();
        tokio::task::spawn_blocking(move || ScratchDir::new_in(&b, SCRATCH_PREFIX))
            .await
            .map_err(join_err)?
            .map_err(|e| io_error(&base.display().to_string(), e))?
    };

    // Local copies of every run, checked against their records.
    let dir = scratch.path().to_path_buf();
    let mut paths: Vec<PathBuf> = futures::stream::iter(refs.iter().enumerate())
        .map(|(i, r)| {
            let dir = dir.clone();
            async move {
                let p = fetch(store, r, &dir, &format!("split-{i:06}.idx")).await?;
                let (p2, r2, loc) = (p.clone(), r.clone(), format!("{}/{}", store.url(), r.path));
                tokio::task::spawn_blocking(move || verify(&p2, &r2, &loc)).await.map_err(join_err)??;
                Ok::<_, CatalogError>(p)
            }
        })
        .buffered(8)
        .try_collect()
        .await?;

    let mut expected: u64 = refs.iter().map(|r| r.entries).sum();
    if let Some(b) = keep {
        // The base's entries whose ids stay, as one more sorted run.
        let from = fetch(store, b.index, &dir, "base.idx").await?;
        let to = dir.join("base-kept.idx");
        let (to2, r, removed) = (to.clone(), b.index.clone(), b.removed.clone());
        let loc = format!("{}/{}", store.url(), r.path);
        expected += tokio::task::spawn_blocking(move || -> Result<u64> {
            verify(&from, &r, &loc)?;
            keep_entries(&from, &to2, &removed).map_err(|e| io_error(&loc, e))
        })
        .await
        .map_err(join_err)??;
        paths.push(to);
    }
    let out = dir.join("version.idx");
    let (out2, dir2) = (out.clone(), dir.clone());
    let (entries, bytes, checksum) = tokio::task::spawn_blocking(move || -> io::Result<(u64, u64, String)> {
        let w = HashingWriter::new(BufWriter::with_capacity(1 << 20, File::create(&out2)?));
        let (w, n) = merge_files(&paths, w, &dir2)?;
        let (mut inner, len, checksum) = w.into_parts();
        inner.flush()?;
        Ok((n, len, checksum))
    })
    .await
    .map_err(join_err)?
    .map_err(|e| io_error(&format!("{}/runs/{run_id}/index", store.url()), e))?;
    if entries != expected {
        return Err(CatalogError::Internal(format!(
            "merging the document indexes of run {run_id} gave {entries} entries, the splits recorded {expected}"
        )));
    }
    Ok(Some(BuiltIndex { _scratch: scratch, file: out, entries, bytes, checksum }))
}
