//! Moving index files between dataset storage and local files.
//!
//! `DatasetStore` reads and writes whole objects in memory; a version index of
//! 10M documents is hundreds of MiB, so large files go through these helpers:
//! local roots are read and written in place, object stores stream (multipart
//! upload, streamed download).
//!
//! ```text
//! local file ──put_file: rename | whole put | multipart upload──► dataset storage
//! dataset storage ──fetch: in place | whole get | streamed download──► local file ──verify (size, xxh3)
//! ```

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::{path::Path as ObjectPath, ObjectStore, ObjectStoreExt, WriteMultipart};

use super::hashing::hash_file;
use super::run::FinishedRun;
use super::{ScratchDir, SCRATCH_PREFIX};
use crate::error::{CatalogError, Result};
use crate::model::DocIndexRef;
use crate::store::DatasetStore;

pub(super) enum Backing {
    /// A local directory: files are used in place.
    Local(PathBuf),
    /// An object store opened from the same URL as the `DatasetStore`.
    Remote { store: Arc<dyn ObjectStore>, prefix: ObjectPath },
    /// `memory://` (one instance per `DatasetStore`): whole objects through the store.
    Whole,
}

pub(super) fn backing(store: &DatasetStore) -> Result<Backing> {
    let url = store.url();
    if !url.contains("://") {
        return Ok(Backing::Local(PathBuf::from(url)));
    }
    let parsed = url::Url::parse(url).map_err(|e| CatalogError::User(format!("invalid storage URL `{url}`: {e}")))?;
    match parsed.scheme() {
        "file" => {
            let p = parsed.to_file_path().map_err(|()| CatalogError::User(format!("`{url}` is not a local path")))?;
            Ok(Backing::Local(p))
        }
        "memory" => Ok(Backing::Whole),
        _ => {
            let (s, prefix) = crate::store::object_store_at(&parsed)
                .map_err(|source| CatalogError::Storage { location: url.to_string(), source })?;
            Ok(Backing::Remote { store: Arc::from(s), prefix })
        }
    }
}

pub(super) fn object_path(prefix: &ObjectPath, rel: &str) -> ObjectPath {
    let mut p = prefix.clone();
    for part in rel.split('/').filter(|s| !s.is_empty()) {
        p = p.join(part);
    }
    p
}

/// Maps a local I/O error on `location`: undecodable data is `Corrupt`, the rest `Storage`.
pub fn io_error(location: &str, e: io::Error) -> CatalogError {
    match e.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => {
            CatalogError::Corrupt { location: location.to_string(), message: e.to_string() }
        }
        _ => CatalogError::Storage {
            location: location.to_string(),
            source: object_store::Error::Generic { store: "local file", source: Box::new(e) },
        },
    }
}

pub(super) fn join_err(e: tokio::task::JoinError) -> CatalogError {
    CatalogError::Internal(format!("document index worker failed: {e}"))
}

/// Stores a finished run at `rel`, returning its reference.
///
/// # Errors
/// Storage failures.
pub async fn put_run(store: &DatasetStore, rel: &str, run: FinishedRun) -> Result<DocIndexRef> {
    match run {
        FinishedRun::Memory { bytes, entries, checksum } => {
            let len = bytes.len() as u64;
            store.put(rel, bytes).await?;
            Ok(DocIndexRef { path: rel.to_string(), entries, bytes: len, checksum })
        }
        FinishedRun::File { dir, path, entries, bytes, checksum } => {
            put_file(store, rel, &path, bytes).await?;
            drop(dir);
            Ok(DocIndexRef { path: rel.to_string(), entries, bytes, checksum })
        }
    }
}

/// Stores the local file `src` (of `len` bytes) at `rel`. On a local root the
/// file is moved there (copied across file systems).
pub(super) async fn put_file(store: &DatasetStore, rel: &str, src: &Path, len: u64) -> Result<()> {
    const WHOLE_MAX: u64 = 8 << 20;
    let location = format!("{}/{rel}", store.url());
    match backing(store)? {
        Backing::Local(root) => {
            let dst = root.join(rel);
            let src = src.to_path_buf();
            tokio::task::spawn_blocking(move || -> io::Result<()> {
                if let Some(parent) = dst.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                if std::fs::rename(&src, &dst).is_err() {
                    // Another file system: copy to a temporary name, then rename (never a partial file).
                    let tmp = dst.with_extension("idx.partial");
                    std::fs::copy(&src, &tmp)?;
                    std::fs::rename(&tmp, &dst)?;
                }
                Ok(())
            })
            .await
            .map_err(join_err)?
            .map_err(|e| io_error(&location, e))
        }
        Backing::Remote { .. } | Backing::Whole if len <= WHOLE_MAX => {
            let bytes = tokio::fs::read(src).await.map_err(|e| io_error(&src.display().to_string(), e))?;
            store.put(rel, Bytes::from(bytes)).await
        }
        Backing::Whole => {
            let bytes = tokio::fs::read(src).await.map_err(|e| io_error(&src.display().to_string(), e))?;
            store.put(rel, Bytes::from(bytes)).await
        }
        Backing::Remote { store: os, prefix } => {
            use tokio::io::AsyncReadExt;
            let to = object_path(&prefix, rel);
            let storage = |source| CatalogError::Storage { location: location.clone(), source };
            let mut file = tokio::fs::File::open(src).await.map_err(|e| io_error(&src.display().to_string(), e))?;
            let mut upload =
                WriteMultipart::new_with_chunk_size(os.put_multipart(&to).await.map_err(storage)?, 8 << 20);
            let mut chunk = vec![0u8; 1 << 20];
            loop {
                let n = match file.read(&mut chunk).await {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = upload.abort().await;
                        return Err(io_error(&src.display().to_string(), e));
                    }
                };
                if n == 0 {
                    break;
                }
                if let Err(e) = upload.wait_for_capacity(4).await {
                    let _ = upload.abort().await;
                    return Err(storage(e));
                }
                upload.write(&chunk[..n]);
            }
            upload.finish().await.map_err(storage)?;
            Ok(())
        }
    }
}

/// A stored index as a local file: the file itself on a local root, else a
/// downloaded copy in the scratch directory it was fetched into.
pub(super) async fn fetch(store: &DatasetStore, r: &DocIndexRef, scratch: &Path, name: &str) -> Result<PathBuf> {
    let location = format!("{}/{}", store.url(), r.path);
    match backing(store)? {
        Backing::Local(root) => {
            let p = root.join(&r.path);
            if !tokio::fs::try_exists(&p).await.unwrap_or(false) {
                return Err(CatalogError::Corrupt {
                    location,
                    message: "the document index listed in the catalog is missing from storage".into(),
                });
            }
            Ok(p)
        }
        Backing::Whole => {
            let bytes = store.get(&r.path).await?.ok_or_else(|| CatalogError::Corrupt {
                location: location.clone(),
                message: "the document index listed in the catalog is missing from storage".into(),
            })?;
            let to = scratch.join(name);
            tokio::fs::write(&to, &bytes).await.map_err(|e| io_error(&to.display().to_string(), e))?;
            Ok(to)
        }
        Backing::Remote { store: os, prefix } => {
            use tokio::io::AsyncWriteExt;
            let from = object_path(&prefix, &r.path);
            let got = os.get(&from).await.map_err(|source| match source {
                object_store::Error::NotFound { .. } => CatalogError::Corrupt {
                    location: location.clone(),
                    message: "the document index listed in the catalog is missing from storage".into(),
                },
                source => CatalogError::Storage { location: location.clone(), source },
            })?;
            let to = scratch.join(name);
            let local = |e| io_error(&to.display().to_string(), e);
            let mut file = tokio::fs::File::create(&to).await.map_err(local)?;
            let mut stream = got.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|source| CatalogError::Storage { location: location.clone(), source })?;
                file.write_all(&chunk).await.map_err(local)?;
            }
            file.flush().await.map_err(local)?;
            Ok(to)
        }
    }
}

/// Checks a local copy of `r` against its recorded size and checksum.
pub(super) fn verify(path: &Path, r: &DocIndexRef, location: &str) -> Result<()> {
    let f = File::open(path).map_err(|e| io_error(location, e))?;
    verify_file(&f, r, location)
}

/// Checks an open index file (read from its start) against the size and
/// checksum that `r` records.
///
/// # Errors
/// `Corrupt` when they differ, `Storage` for read failures.
pub fn verify_file(f: &File, r: &DocIndexRef, location: &str) -> Result<()> {
    let (len, checksum) = hash_file(f, &r.checksum).map_err(|e| io_error(location, e))?;
    check_sum(len, &checksum, r, location)
}

/// Compares a byte count and checksum with those `r` records.
///
/// # Errors
/// `Corrupt` when they differ.
pub fn check_sum(len: u64, checksum: &str, r: &DocIndexRef, location: &str) -> Result<()> {
    if len != r.bytes || checksum != r.checksum {
        return Err(CatalogError::Corrupt {
            location: location.to_string(),
            message: format!(
                "{len} bytes with checksum {checksum}, but {} bytes with {} were recorded",
                r.bytes, r.checksum
            ),
        });
    }
    Ok(())
}

/// A stored index opened for reading: the file, and the scratch directory
/// that holds it when it had to be downloaded.
pub struct OpenedIndex {
    /// The local file.
    pub path: PathBuf,
    /// Where the index is stored (URL and path), for messages.
    pub location: String,
    _scratch: Option<ScratchDir>,
}

/// Makes the stored index `r` readable as a local file.
///
/// # Errors
/// Missing index, storage and temporary-space failures.
pub async fn open_stored(store: &DatasetStore, r: &DocIndexRef) -> Result<OpenedIndex> {
    let location = format!("{}/{}", store.url(), r.path);
    if let Backing::Local(_) = backing(store)? {
        let path = fetch(store, r, Path::new(""), "").await?;
        return Ok(OpenedIndex { path, location, _scratch: None });
    }
    let scratch = tokio::task::spawn_blocking(|| ScratchDir::new(SCRATCH_PREFIX))
        .await
        .map_err(join_err)?
        .map_err(|e| io_error(&std::env::temp_dir().display().to_string(), e))?;
    let path = fetch(store, r, scratch.path(), "index.idx").await?;
    Ok(OpenedIndex { path, location, _scratch: Some(scratch) })
}
