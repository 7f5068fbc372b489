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

use object_store::aws::AmazonS3Builder;

use crate::error::{CatalogError, Result};
use crate::throttle::{self, max_requests_from_env, Aimd, ThrottleStats, ThrottledConnector};

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
    open_url(url).map(|(store, path, _)| (store, path))
}

/// An opened store, its root path, and for S3 the bucket's concurrency limiter.
type Opened = (Box<dyn ObjectStore>, Path, Option<Arc<Aimd>>);

/// [`object_store_at`], with the bucket's concurrency limiter for S3 (see [`crate::throttle`]).
fn open_url(url: &url::Url) -> std::result::Result<Opened, object_store::Error> {
    let aws = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with("AWS_"));
    let (scheme, path) = object_store::ObjectStoreScheme::parse(url)?;
    if scheme != object_store::ObjectStoreScheme::AmazonS3 {
        let (store, path) = object_store::parse_url_opts(url, aws)?;
        return Ok((store, path, None));
    }
    // As `parse_url_opts` builds it, with every request through the bucket's limiter.
    let max = max_requests_from_env()
        .map_err(|message| object_store::Error::Generic { store: "S3", source: message.into() })?;
    let bucket = match url.scheme() {
        "s3" | "s3a" => format!("s3://{}", url.host_str().unwrap_or_default()),
        _ => format!(
            "{}/{}",
            url.host_str().unwrap_or_default(),
            url.path_segments().and_then(|mut s| s.next()).unwrap_or_default()
        ),
    };
    let aimd = throttle::limiter(&bucket, max);
    let builder = aws.fold(AmazonS3Builder::new().with_url(url.to_string()), |b, (key, value)| {
        match key.to_ascii_lowercase().parse() {
            Ok(k) => b.with_config(k, value),
            Err(_) => b,
        }
    });
    let store = builder.with_http_connector(ThrottledConnector(aimd.clone())).build()?;
    Ok((Box::new(store), Path::parse(path)?, Some(aimd)))
}

/// Default size of one part of a streamed upload ([`DatasetStore::put_stream`]): 8 MiB.
pub const DEFAULT_PART_BYTES: usize = 8 << 20;

/// Parts of one streamed upload in flight at once.
const PARTS_IN_FLIGHT: usize = 4;

/// The environment variable that overrides [`DEFAULT_PART_BYTES`] (tests use
/// small parts to see multipart uploads on small data; S3 wants at least 5 MiB
/// for every part but the last).
pub const PART_BYTES_ENV: &str = "SMELT_UPLOAD_PART_BYTES";

/// An object store rooted at one dataset.
#[derive(Debug, Clone)]
pub struct DatasetStore {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
    part_bytes: usize,
    /// The bucket's concurrency limiter (S3 only).
    throttle: Option<Arc<Aimd>>,
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
            let (store, prefix, throttle) =
                open_url(&url).map_err(|source| CatalogError::Storage { location: location.to_string(), source })?;
            return Ok(DatasetStore {
                store: Arc::from(store),
                prefix,
                url: location.trim_end_matches('/').to_string(),
                part_bytes: part_bytes_from_env()?,
                throttle,
            });
        }
        std::fs::create_dir_all(location).map_err(|e| {
            CatalogError::User(format!("cannot create output directory {location}: {e}; choose a writable `output:`"))
        })?;
        let abs = std::fs::canonicalize(location)
            .map_err(|e| CatalogError::User(format!("cannot resolve output directory {location}: {e}")))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(&abs)
            .map_err(|source| CatalogError::Storage { location: location.to_string(), source })?;
        Ok(DatasetStore {
            store: Arc::new(store),
            prefix: Path::default(),
            url: abs.display().to_string(),
            part_bytes: part_bytes_from_env()?,
            throttle: None,
        })
    }

    /// Throttling this process has seen on the dataset's bucket (`None` when
    /// the root is not on S3).
    pub fn throttle_stats(&self) -> Option<ThrottleStats> {
        self.throttle.as_ref().map(|t| t.stats())
    }

    /// The same store with streamed uploads cut into parts of `bytes` bytes
    /// (at least 1; S3 needs 5 MiB for every part but the last).
    #[must_use]
    pub fn with_part_bytes(mut self, bytes: usize) -> Self {
        self.part_bytes = bytes.max(1);
        self
    }

    /// The part size of streamed uploads.
    pub fn part_bytes(&self) -> usize {
        self.part_bytes
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

    /// Starts a streamed write of `rel`: bytes given to [`StreamingPut::write`]
    /// are sent in parts of [`DatasetStore::part_bytes`] while more are produced,
    /// so at most a few parts are held in memory whatever the object's size.
    /// Nothing is visible at `rel` until [`StreamingPut::finish`]; an aborted or
    /// dropped write leaves no object there (an object already at `rel` stays
    /// until the finish replaces it). An object smaller than one part is sent as
    /// one plain put.
    pub fn put_stream(&self, rel: &str) -> StreamingPut {
        StreamingPut {
            store: self.clone(),
            rel: rel.to_string(),
            pending: Vec::new(),
            pending_len: 0,
            parts: None,
            written: 0,
        }
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

    /// Copies `from` to `to` within the store (server-side where the store
    /// can), replacing what is at `to`.
    ///
    /// # Errors
    /// Storage failures, `from` missing among them.
    pub async fn copy(&self, from: &str, to: &str) -> Result<()> {
        self.store.copy(&self.full(from), &self.full(to)).await.map_err(|e| self.err(from, e))
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

fn part_bytes_from_env() -> Result<usize> {
    match std::env::var(PART_BYTES_ENV) {
        Err(_) => Ok(DEFAULT_PART_BYTES),
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(CatalogError::User(format!("{PART_BYTES_ENV}={v:?} is not a positive number of bytes"))),
        },
    }
}

/// The parts of a multipart upload: whole parts are sent as soon as they are
/// full, at most [`PARTS_IN_FLIGHT`] at a time. (object_store's
/// `WriteMultipart` does the same but does not abort the upload when its last
/// part fails, which would leave an incomplete upload on S3.)
struct Parts {
    upload: Box<dyn object_store::MultipartUpload>,
    in_flight: tokio::task::JoinSet<object_store::Result<()>>,
}

impl Parts {
    fn send(&mut self, part: PutPayload) {
        self.in_flight.spawn(self.upload.put_part(part));
    }

    /// Waits until at most `n` parts are in flight.
    async fn settle(&mut self, n: usize) -> object_store::Result<()> {
        while self.in_flight.len() > n {
            match self.in_flight.join_next().await {
                Some(Ok(r)) => r?,
                Some(Err(e)) => {
                    return Err(object_store::Error::Generic { store: "multipart upload", source: Box::new(e) })
                }
                None => break,
            }
        }
        Ok(())
    }

    async fn abort(mut self) -> object_store::Result<()> {
        self.in_flight.shutdown().await;
        self.upload.abort().await
    }
}

/// A write of one object in parts, from [`DatasetStore::put_stream`].
pub struct StreamingPut {
    store: DatasetStore,
    rel: String,
    /// Bytes not sent yet (less than one part).
    pending: Vec<Bytes>,
    pending_len: usize,
    /// The multipart upload, once the object outgrew one part.
    parts: Option<Parts>,
    written: u64,
}

impl std::fmt::Debug for StreamingPut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingPut")
            .field("rel", &self.rel)
            .field("written", &self.written)
            .field("multipart", &self.parts.is_some())
            .finish()
    }
}

impl StreamingPut {
    /// Appends `bytes` to the object; sends every full part and waits while
    /// too many are in flight.
    ///
    /// # Errors
    /// Storage failures of the upload; the write is aborted then (nothing
    /// appears at the path).
    pub async fn write(&mut self, bytes: Bytes) -> Result<()> {
        self.written += bytes.len() as u64;
        self.pending_len += bytes.len();
        self.pending.push(bytes);
        let part = self.store.part_bytes;
        while self.pending_len >= part {
            if self.parts.is_none() {
                let upload = self.store.store.put_multipart(&self.store.full(&self.rel)).await;
                let upload = upload.map_err(|e| self.store.err(&self.rel, e))?;
                self.parts = Some(Parts { upload, in_flight: tokio::task::JoinSet::new() });
            }
            let payload = self.take_part(part);
            let parts = self.parts.as_mut().expect("multipart upload");
            parts.send(payload);
            if let Err(e) = parts.settle(PARTS_IN_FLIGHT).await {
                return Err(self.fail(e).await);
            }
        }
        Ok(())
    }

    /// The first `n` pending bytes (or all of them, if fewer) as one payload.
    fn take_part(&mut self, n: usize) -> PutPayload {
        let mut out = Vec::new();
        let mut need = n;
        while need > 0 && !self.pending.is_empty() {
            let first = &mut self.pending[0];
            if first.len() <= need {
                need -= first.len();
                out.push(self.pending.remove(0));
            } else {
                out.push(first.split_to(need));
                need = 0;
            }
        }
        self.pending_len -= n - need;
        out.into_iter().collect()
    }

    /// Aborts the upload after `e`; returns the error to report.
    async fn fail(&mut self, e: object_store::Error) -> CatalogError {
        if let Some(parts) = self.parts.take() {
            if let Err(abort) = parts.abort().await {
                tracing::warn!(path = %self.rel, "aborting a failed multipart upload failed too: {abort}");
            }
        }
        self.store.err(&self.rel, e)
    }

    /// Bytes given to [`StreamingPut::write`] so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Completes the object: from now on it is visible at its path, whole.
    ///
    /// # Errors
    /// Storage failures; the write is aborted then (nothing appears at the path).
    pub async fn finish(mut self) -> Result<()> {
        if self.parts.is_none() {
            let payload: PutPayload = std::mem::take(&mut self.pending).into_iter().collect();
            return self
                .store
                .store
                .put(&self.store.full(&self.rel), payload)
                .await
                .map(|_| ())
                .map_err(|e| self.store.err(&self.rel, e));
        }
        if self.pending_len > 0 {
            let last = self.take_part(self.pending_len);
            self.parts.as_mut().expect("multipart upload").send(last);
        }
        let parts = self.parts.as_mut().expect("multipart upload");
        let done = match parts.settle(0).await {
            Ok(()) => parts.upload.complete().await.map(|_| ()),
            Err(e) => Err(e),
        };
        match done {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e).await),
        }
    }

    /// Gives the write up: parts already sent are discarded and nothing
    /// appears at the path.
    ///
    /// # Errors
    /// The store could not be told to discard the parts (on S3 a lifecycle
    /// rule for incomplete multipart uploads removes them later).
    pub async fn abort(mut self) -> Result<()> {
        if let Some(parts) = self.parts.take() {
            parts.abort().await.map_err(|e| self.store.err(&self.rel, e))?;
        }
        Ok(())
    }
}

/// Shards written one after another, each streamed to storage under its
/// final name (`names(seq)`, seq from 0) as its bytes come, its checksum
/// taken on the way: the sink's shards and the merged ones of compaction.
pub struct ShardUploads {
    store: DatasetStore,
    names: Box<dyn Fn(u32) -> String + Send + Sync>,
    seq: u32,
    /// The shard being written: its path, upload and running checksum.
    open: Option<(String, StreamingPut, xxhash_rust::xxh3::Xxh3)>,
}

impl ShardUploads {
    /// Shards of `store` named by `names`.
    pub fn new(store: &DatasetStore, names: impl Fn(u32) -> String + Send + Sync + 'static) -> ShardUploads {
        ShardUploads { store: store.clone(), names: Box::new(names), seq: 0, open: None }
    }

    /// The next shard's upload, not yet started.
    fn start(&self) -> (String, StreamingPut, xxhash_rust::xxh3::Xxh3) {
        let path = (self.names)(self.seq);
        let upload = self.store.put_stream(&path);
        (path, upload, xxhash_rust::xxh3::Xxh3::new())
    }

    /// Adds `bytes` to the shard being written (starting the next one).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn write(&mut self, bytes: Bytes) -> Result<()> {
        if self.open.is_none() {
            self.open = Some(self.start());
        }
        if let Some((_, upload, hasher)) = &mut self.open {
            hasher.update(&bytes);
            upload.write(bytes).await?;
        }
        Ok(())
    }

    /// Completes the shard being written (stored empty when no bytes came)
    /// as the entry of `rows` rows; its `split` and `content` are the caller's to set.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn end(&mut self, rows: u64) -> Result<crate::model::ShardEntry> {
        let (path, upload, hasher) = match self.open.take() {
            Some(open) => open,
            None => self.start(),
        };
        self.seq += 1;
        let bytes = upload.written();
        upload.finish().await?;
        Ok(crate::model::ShardEntry {
            path,
            split: 0,
            rows,
            bytes,
            checksum: format!("xxh3-128:{:032x}", hasher.digest128()),
            content: None,
        })
    }

    /// Gives up the shard being written: nothing of it appears under its name.
    pub async fn abort(&mut self) {
        if let Some((_, upload, _)) = self.open.take() {
            let _ = upload.abort().await;
        }
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

    /// What interrupted streamed writes left on a local root: object_store's
    /// staging files (`<name>#<n>`, completed by a rename into place), which
    /// its listings skip. A write killed before it completed or aborted leaves
    /// one. Empty on other stores: S3 keeps incomplete multipart uploads out
    /// of the bucket's objects (a lifecycle rule removes them).
    ///
    /// # Errors
    /// A directory that cannot be read.
    pub fn list_staging(&self, rel_prefix: &str) -> Result<Vec<ObjectInfo>> {
        let mut out = Vec::new();
        if self.url.contains("://") {
            return Ok(out);
        }
        let base = std::path::PathBuf::from(&self.url);
        let mut dirs = vec![base.join(rel_prefix)];
        while let Some(dir) = dirs.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(CatalogError::User(format!("cannot list {}: {e}", dir.display()))),
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let name = entry.file_name().to_string_lossy().to_string();
                let staging =
                    name.rsplit_once('#').is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
                let Ok(rel) = path.strip_prefix(&base) else { continue };
                if staging {
                    out.push(ObjectInfo {
                        path: rel.to_string_lossy().replace('\\', "/"),
                        bytes: meta.len(),
                        modified: meta.modified().map(chrono::DateTime::<chrono::Utc>::from).unwrap_or_default(),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Deletes a staging file [`DatasetStore::list_staging`] listed.
    ///
    /// # Errors
    /// The file exists but cannot be removed.
    pub fn delete_staging(&self, rel: &str) -> Result<()> {
        let path = std::path::PathBuf::from(&self.url).join(rel);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CatalogError::User(format!("cannot remove {}: {e}", path.display()))),
        }
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

    /// Pieces of a pseudo-random object (incompressible, so nothing hides a wrong order).
    fn pieces(total: usize, piece: usize) -> Vec<Bytes> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let all: Vec<u8> = (0..total)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        all.chunks(piece).map(Bytes::copy_from_slice).collect()
    }

    async fn streamed_put_is_whole_and_abort_leaves_nothing(store: DatasetStore) {
        // 10 KiB in 700-byte pieces through 1 KiB parts: a multipart upload of 10 parts.
        let store = store.with_part_bytes(1024);
        let data = pieces(10 * 1024 + 5, 700);
        let mut put = store.put_stream("runs/r/shards/part-00000-0000.parquet");
        for p in &data {
            put.write(p.clone()).await.unwrap();
        }
        assert_eq!(put.written(), 10 * 1024 + 5);
        assert!(format!("{put:?}").contains("multipart: true"), "{put:?}");
        assert!(
            store.get("runs/r/shards/part-00000-0000.parquet").await.unwrap().is_none(),
            "not visible before finish"
        );
        put.finish().await.unwrap();
        let whole: Vec<u8> = data.iter().flat_map(|b| b.iter().copied()).collect();
        assert!(store.get("runs/r/shards/part-00000-0000.parquet").await.unwrap().unwrap() == whole);

        // Smaller than a part: one plain put.
        let mut small = store.put_stream("runs/r/shards/part-00000-0001.parquet");
        small.write(Bytes::from_static(b"PAR1 small")).await.unwrap();
        assert!(format!("{small:?}").contains("multipart: false"));
        small.finish().await.unwrap();
        assert_eq!(store.get("runs/r/shards/part-00000-0001.parquet").await.unwrap().unwrap(), "PAR1 small");

        // Aborted after several parts, or dropped: no object at the path, and no staging file listed.
        for drop_it in [false, true] {
            let mut put = store.put_stream("runs/r/shards/part-00001-0000.parquet");
            for p in &data[..8] {
                put.write(p.clone()).await.unwrap();
            }
            if drop_it {
                drop(put);
                tokio::task::yield_now().await;
            } else {
                put.abort().await.unwrap();
            }
            assert!(store.get("runs/r/shards/part-00001-0000.parquet").await.unwrap().is_none());
        }
        // An aborted rewrite keeps what the path held.
        let mut put = store.put_stream("runs/r/shards/part-00000-0000.parquet");
        for p in &data[..8] {
            put.write(p.clone()).await.unwrap();
        }
        put.abort().await.unwrap();
        assert!(store.get("runs/r/shards/part-00000-0000.parquet").await.unwrap().unwrap() == whole);
        assert_eq!(
            store.list("runs/r/shards").await.unwrap(),
            vec!["runs/r/shards/part-00000-0000.parquet", "runs/r/shards/part-00000-0001.parquet"]
        );
    }

    #[tokio::test]
    async fn streamed_puts_on_a_local_root() {
        let dir = tempfile::tempdir().unwrap();
        let store = DatasetStore::open(dir.path().join("ds").to_str().unwrap()).unwrap();
        streamed_put_is_whole_and_abort_leaves_nothing(store).await;
        // No staging files left in the directory either.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("ds/runs/r/shards"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[tokio::test]
    async fn streamed_puts_on_a_memory_root() {
        streamed_put_is_whole_and_abort_leaves_nothing(DatasetStore::open("memory:///ds").unwrap()).await;
    }
}
