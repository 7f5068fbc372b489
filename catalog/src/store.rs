//! Dataset storage: one object_store rooted at a dataset's URL.
//!
//! ```text
//! <root>/runs/<run_id>/plan.json            written once per run (first rank wins, others must agree)
//! <root>/runs/<run_id>/shards/part-SSSSS-NNNN.parquet
//! <root>/runs/<run_id>/splits/SSSSS.json    completion record, after the split's shards
//! <root>/_versions/NNNNNN.json              immutable manifest, written once by the commit
//! ```
//! Local paths map to `LocalFileSystem`; anything with a scheme (`s3://`,
//! `file://`, `memory://`, `http://`) goes through [`object_store_at`], which
//! configures S3 from the `AWS_*` environment variables.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::{path::Path, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::{CatalogError, Result};

/// The object store a storage URL names, and the URL's path in it.
///
/// Every dataset-root URL is opened here (dataset storage, document indexes,
/// `smelt sql`), so all of them see the same configuration: for `s3://` (and
/// S3's `https://` URLs) the `AWS_*` environment variables, read as
/// `AmazonS3Builder::from_env` reads them: `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` (or
/// `AWS_DEFAULT_REGION`), `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT`) for an
/// S3-compatible server, `AWS_ALLOW_HTTP=true` for one on plain HTTP,
/// `AWS_CONDITIONAL_PUT`, and the rest of object_store's `AmazonS3ConfigKey`
/// names. Only `AWS_*` variables are passed: object_store also accepts
/// unprefixed names (`region`, `endpoint`, `token`) that unrelated variables
/// could carry. The URL's bucket wins over `AWS_BUCKET`.
///
/// The commit's create-only writes (`PutMode::Create`) are sent as
/// `If-None-Match: *`, object_store's default (`AWS_CONDITIONAL_PUT=etag`),
/// which AWS S3 and S3-compatible servers such as MinIO, R2 and moto (the one
/// tests/s3.rs runs against) honour; a server that ignored the header would let
/// two concurrent commits take the same version number, the later manifest
/// replacing the earlier.
///
/// # Errors
/// A URL object_store does not support, or an invalid value in the environment.
pub fn object_store_at(url: &url::Url) -> std::result::Result<(Box<dyn ObjectStore>, Path), object_store::Error> {
    let aws = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with("AWS_"));
    object_store::parse_url_opts(url, aws)
}

/// An object store rooted at one dataset.
#[derive(Debug, Clone)]
pub struct DatasetStore {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
}

/// Outcome of a create-only write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The object was written.
    Written,
    /// An object already existed at the path; nothing was written.
    AlreadyExists,
}

impl DatasetStore {
    /// Opens the dataset root at `location`: a local path (created if missing)
    /// or an object_store URL.
    ///
    /// # Errors
    /// A URL object_store cannot parse, or a local directory that cannot be created.
    pub fn open(location: &str) -> Result<Self> {
        if location.contains("://") {
            let url = url::Url::parse(location)
                .map_err(|e| CatalogError::User(format!("invalid storage URL `{location}`: {e}")))?;
            let (store, prefix) = object_store_at(&url)
                .map_err(|source| CatalogError::Storage { location: location.to_string(), source })?;
            return Ok(DatasetStore {
                store: Arc::from(store),
                prefix,
                url: location.trim_end_matches('/').to_string(),
            });
        }
        std::fs::create_dir_all(location).map_err(|e| {
            CatalogError::User(format!("cannot create output directory {location}: {e}; choose a writable `output:`"))
        })?;
        let abs = std::fs::canonicalize(location)
            .map_err(|e| CatalogError::User(format!("cannot resolve output directory {location}: {e}")))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(&abs)
            .map_err(|source| CatalogError::Storage { location: location.to_string(), source })?;
        Ok(DatasetStore { store: Arc::new(store), prefix: Path::default(), url: abs.display().to_string() })
    }

    /// The dataset root's URL (or absolute local path).
    pub fn url(&self) -> &str {
        &self.url
    }

    fn full(&self, rel: &str) -> Path {
        let mut p = self.prefix.clone();
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            p = p.clone().join(part);
        }
        p
    }

    fn err(&self, rel: &str, source: object_store::Error) -> CatalogError {
        CatalogError::Storage { location: format!("{}/{rel}", self.url), source }
    }

    /// Writes `bytes` at `rel`, replacing what is there.
    ///
    /// # Errors
    /// Storage failures (full disk, permissions, network).
    pub async fn put(&self, rel: &str, bytes: Bytes) -> Result<()> {
        self.store.put(&self.full(rel), PutPayload::from(bytes)).await.map_err(|e| self.err(rel, e))?;
        Ok(())
    }

    /// Writes `bytes` at `rel` only if nothing is there yet (atomic on stores that support it).
    ///
    /// # Errors
    /// Storage failures other than the object existing.
    pub async fn put_create(&self, rel: &str, bytes: Bytes) -> Result<Created> {
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        match self.store.put_opts(&self.full(rel), PutPayload::from(bytes), opts).await {
            Ok(_) => Ok(Created::Written),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(Created::AlreadyExists),
            Err(e) => Err(self.err(rel, e)),
        }
    }

    /// Reads `rel`, `None` if it does not exist.
    ///
    /// # Errors
    /// Storage failures other than the object missing.
    pub async fn get(&self, rel: &str) -> Result<Option<Bytes>> {
        match self.store.get(&self.full(rel)).await {
            Ok(r) => Ok(Some(r.bytes().await.map_err(|e| self.err(rel, e))?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(rel, e)),
        }
    }

    /// Reads and decodes a JSON file, `None` if it does not exist.
    ///
    /// # Errors
    /// Storage failures, or a file that is not the expected JSON.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, rel: &str) -> Result<Option<T>> {
        let Some(bytes) = self.get(rel).await? else { return Ok(None) };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CatalogError::Corrupt { location: format!("{}/{rel}", self.url), message: e.to_string() })
    }

    /// Names (relative to the dataset root) of the objects under `rel_prefix`, sorted.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn list(&self, rel_prefix: &str) -> Result<Vec<String>> {
        Ok(self.list_meta(rel_prefix).await?.into_iter().map(|o| o.path).collect())
    }
}

/// An object in dataset storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Path relative to the dataset root.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Last modification time.
    pub modified: chrono::DateTime<chrono::Utc>,
}

impl DatasetStore {
    /// Objects under `rel_prefix` with size and modification time, sorted by path.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn list_meta(&self, rel_prefix: &str) -> Result<Vec<ObjectInfo>> {
        let prefix = self.full(rel_prefix);
        let metas: Vec<_> = match self.store.list(Some(&prefix)).try_collect().await {
            Ok(m) => m,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(self.err(rel_prefix, e)),
        };
        let strip = if self.prefix.as_ref().is_empty() { 0 } else { self.prefix.as_ref().len() + 1 };
        let mut out: Vec<ObjectInfo> = metas
            .into_iter()
            .map(|m| ObjectInfo {
                path: m.location.as_ref()[strip..].to_string(),
                bytes: m.size,
                modified: m.last_modified,
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Deletes `rel` (a missing object is not an error).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn delete(&self, rel: &str) -> Result<()> {
        match self.store.delete(&self.full(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(rel, e)),
        }
    }
}

/// Serialises a catalog value as pretty JSON with a trailing newline.
///
/// # Panics
/// Never for the catalog's own types (they contain no non-string map keys).
pub fn to_json_bytes<T: serde::Serialize>(value: &T) -> Bytes {
    let mut v = serde_json::to_vec_pretty(value).expect("catalog values serialise to JSON");
    v.push(b'\n');
    Bytes::from(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn create_only_writes_once_and_lists_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let store = DatasetStore::open(dir.path().join("ds").to_str().unwrap()).unwrap();
        assert_eq!(
            store.put_create("_versions/000001.json", Bytes::from_static(b"a")).await.unwrap(),
            Created::Written
        );
        assert_eq!(
            store.put_create("_versions/000001.json", Bytes::from_static(b"b")).await.unwrap(),
            Created::AlreadyExists
        );
        store.put("_versions/000002.json", Bytes::from_static(b"c")).await.unwrap();
        assert_eq!(store.get("_versions/000001.json").await.unwrap().unwrap(), Bytes::from_static(b"a"));
        assert_eq!(store.list("_versions").await.unwrap(), vec!["_versions/000001.json", "_versions/000002.json"]);
        assert!(store.get("nope.json").await.unwrap().is_none());
        assert!(store.list("runs").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn memory_urls_work() {
        let store = DatasetStore::open("memory:///datasets/x").unwrap();
        store.put("a/b.json", Bytes::from_static(b"{}")).await.unwrap();
        assert_eq!(store.list("a").await.unwrap(), vec!["a/b.json"]);
    }
}
