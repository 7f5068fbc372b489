//! `s3://bucket/key` reads through object_store (Common Crawl's bucket is
//! `s3://commoncrawl/`). Credentials, region and endpoint come from the usual
//! `AWS_*` variables (`AWS_ENDPOINT_URL` for an S3-compatible server,
//! `AWS_ALLOW_HTTP=true` for one on plain HTTP). object_store retries each
//! request itself; [`ObjectFile`] reads a file as 8 MiB range requests.

use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use smelt_engine::blocking::runtime;

const PIECE: u64 = 8 << 20;

/// `s3://bucket/key` → (bucket, key).
fn split_url(url: &str) -> Result<(&str, &str), String> {
    let rest = url.strip_prefix("s3://").ok_or_else(|| format!("{url}: not an s3:// URL"))?;
    rest.split_once('/').ok_or_else(|| format!("{url}: no key after the bucket"))
}

/// One client per bucket, built from the environment.
fn store(bucket: &str) -> Result<Arc<dyn ObjectStore>, String> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> = OnceLock::new();
    let mut m = STORES.get_or_init(Default::default).lock().expect("stores lock");
    if let Some(s) = m.get(bucket) {
        return Ok(s.clone());
    }
    let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
    if let Ok(e) = std::env::var("AWS_ENDPOINT_URL") {
        b = b.with_endpoint(e);
    }
    let s: Arc<dyn ObjectStore> = Arc::new(b.build().map_err(|e| format!("s3://{bucket}: {e}"))?);
    m.insert(bucket.to_string(), s.clone());
    Ok(s)
}

/// The whole object.
///
/// # Errors
/// Not an `s3://` URL, or the get fails (after object_store's retries).
pub fn get_all(url: &str) -> Result<Bytes, String> {
    let (bucket, key) = split_url(url)?;
    let s = store(bucket)?;
    let path = ObjectPath::from(key);
    runtime().block_on(async { s.get(&path).await?.bytes().await }).map_err(|e| format!("{url}: {e}"))
}

/// `length` bytes from `offset`.
///
/// # Errors
/// As [`get_all`].
pub fn get_range(url: &str, offset: u64, length: u64) -> Result<Bytes, String> {
    let (bucket, key) = split_url(url)?;
    let s = store(bucket)?;
    let path = ObjectPath::from(key);
    runtime().block_on(async { s.get_range(&path, offset..offset + length).await }).map_err(|e| format!("{url}: {e}"))
}

/// A `Read + Seek` view of an object, read piece by piece with range requests.
pub struct ObjectFile {
    url: String,
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    len: u64,
    pos: u64,
    piece: Bytes,
    /// Offset of `piece[0]`.
    piece_at: u64,
}

impl ObjectFile {
    /// Opens `s3://bucket/key` (one HEAD request for its size).
    ///
    /// # Errors
    /// As [`get_all`].
    pub fn open(url: &str) -> Result<ObjectFile, String> {
        let (bucket, key) = split_url(url)?;
        let store = store(bucket)?;
        let path = ObjectPath::from(key);
        let meta = runtime().block_on(store.head(&path)).map_err(|e| format!("{url}: {e}"))?;
        Ok(ObjectFile { url: url.to_string(), store, path, len: meta.size, pos: 0, piece: Bytes::new(), piece_at: 0 })
    }
}

impl Read for ObjectFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let in_piece = self.pos >= self.piece_at && self.pos < self.piece_at + self.piece.len() as u64;
        if !in_piece {
            let end = (self.pos + PIECE).min(self.len);
            let (store, path, start) = (self.store.clone(), self.path.clone(), self.pos);
            self.piece = runtime()
                .block_on(async move { store.get_range(&path, start..end).await })
                .map_err(|e| io::Error::other(format!("{}: {e}", self.url)))?;
            self.piece_at = self.pos;
        }
        let at = (self.pos - self.piece_at) as usize;
        let n = buf.len().min(self.piece.len() - at);
        buf[..n].copy_from_slice(&self.piece[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for ObjectFile {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.pos = match to {
            SeekFrom::Start(n) => n,
            SeekFrom::Current(d) => {
                self.pos.checked_add_signed(d).ok_or_else(|| io::Error::other("seek before the start"))?
            }
            SeekFrom::End(d) => {
                self.len.checked_add_signed(d).ok_or_else(|| io::Error::other("seek before the start"))?
            }
        };
        Ok(self.pos)
    }
}
