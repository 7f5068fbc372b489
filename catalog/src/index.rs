//! The sled index of the catalog: fast local lookups of datasets, versions and
//! runs. It is rebuilt from the manifests in dataset storage (`rebuild`), which
//! stay the source of truth (DESIGN.md, "Versions and the commit protocol").
//!
//! Trees: `datasets` (name -> DatasetRecord), `versions` (name \0 u64be ->
//! VersionSummary), `manifests` (same key -> VersionManifest), `runs`
//! (run id -> "name@version").

use std::path::{Path, PathBuf};

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use crate::error::{CatalogError, Result};
use crate::model::{DatasetRecord, VersionManifest, VersionSummary};

/// The catalog index, one sled database in the data directory.
#[derive(Debug, Clone)]
pub struct Catalog {
    path: PathBuf,
    db: sled::Db,
    datasets: sled::Tree,
    versions: sled::Tree,
    manifests: sled::Tree,
    runs: sled::Tree,
}

/// A dataset reference: `name`, `name@7`, `name@latest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRef {
    /// Dataset name.
    pub dataset: String,
    /// Version number; `None` means latest.
    pub version: Option<u64>,
}

impl std::str::FromStr for VersionRef {
    type Err = CatalogError;
    fn from_str(s: &str) -> Result<Self> {
        let (name, v) = match s.split_once('@') {
            None => (s, None),
            Some((n, "latest")) => (n, None),
            Some((n, v)) => {
                let v = v.parse::<u64>().map_err(|_| {
                    CatalogError::User(format!("`{s}`: a version is a number or `latest`, as in {n}@3"))
                })?;
                (n, Some(v))
            }
        };
        if name.is_empty() {
            return Err(CatalogError::User(format!("`{s}`: expected DATASET or DATASET@VERSION")));
        }
        Ok(VersionRef { dataset: name.to_string(), version: v })
    }
}

fn version_key(dataset: &str, version: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(dataset.len() + 9);
    k.extend_from_slice(dataset.as_bytes());
    k.push(0);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn dataset_prefix(dataset: &str) -> Vec<u8> {
    let mut k = dataset.as_bytes().to_vec();
    k.push(0);
    k
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| CatalogError::Corrupt {
        location: format!("catalog index ({what})"),
        message: format!("{e}; run `smelt catalog rebuild` to recreate the index from the manifests"),
    })
}

impl Catalog {
    /// Opens (or creates) the index at `data_dir/catalog.sled`.
    ///
    /// # Errors
    /// `Open` when another process holds the database (sled takes an exclusive
    /// lock) or the files are unreadable.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join("catalog.sled");
        std::fs::create_dir_all(data_dir).map_err(|e| CatalogError::Open {
            path: path.clone(),
            message: format!("cannot create the data directory: {e}"),
        })?;
        let db = sled::Config::new().path(&path).open().map_err(|e| {
            let message = match &e {
                sled::Error::Io(io)
                    if io.kind() == std::io::ErrorKind::WouldBlock
                        || io.raw_os_error() == Some(11)
                        || io.to_string().contains("could not acquire lock") =>
                {
                    "another smelt process has the catalog open (sled allows one process); wait for it, or use another --data-dir".to_string()
                }
                other => format!("{other}; if the index is damaged, move it away and run `smelt catalog rebuild`"),
            };
            CatalogError::Open { path: path.clone(), message }
        })?;
        let tree = |name: &str| db.open_tree(name).map_err(CatalogError::from);
        Ok(Catalog {
            datasets: tree("datasets")?,
            versions: tree("versions")?,
            manifests: tree("manifests")?,
            runs: tree("runs")?,
            db,
            path,
        })
    }

    /// Where the index lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A dataset's record.
    ///
    /// # Errors
    /// Index failures.
    pub fn dataset(&self, name: &str) -> Result<Option<DatasetRecord>> {
        self.datasets.get(name)?.map(|b| decode("datasets", &b)).transpose()
    }

    /// Every dataset, by name.
    ///
    /// # Errors
    /// Index failures.
    pub fn datasets(&self) -> Result<Vec<DatasetRecord>> {
        self.datasets.iter().values().map(|v| decode("datasets", &v?)).collect()
    }

    /// A dataset's versions, oldest first.
    ///
    /// # Errors
    /// Index failures.
    pub fn versions(&self, dataset: &str) -> Result<Vec<VersionSummary>> {
        self.versions.scan_prefix(dataset_prefix(dataset)).values().map(|v| decode("versions", &v?)).collect()
    }

    /// The full manifest of a version.
    ///
    /// # Errors
    /// Index failures.
    pub fn manifest(&self, dataset: &str, version: u64) -> Result<Option<VersionManifest>> {
        self.manifests.get(version_key(dataset, version))?.map(|b| decode("manifests", &b)).transpose()
    }

    /// Resolves a reference to a manifest.
    ///
    /// # Errors
    /// `User` when the dataset or version does not exist.
    pub fn resolve(&self, r: &VersionRef) -> Result<VersionManifest> {
        let record = self.dataset(&r.dataset)?.ok_or_else(|| {
            let known: Vec<String> = self.datasets().unwrap_or_default().into_iter().map(|d| d.name).collect();
            CatalogError::User(format!(
                "no dataset named `{}` in the catalog {}; known: {}",
                r.dataset,
                self.path.display(),
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ))
        })?;
        let v = r.version.unwrap_or(record.latest);
        self.manifest(&r.dataset, v)?.ok_or_else(|| {
            CatalogError::User(format!("{}@{v} does not exist; the latest version is {}", r.dataset, record.latest))
        })
    }

    /// The version a run committed, if any.
    ///
    /// # Errors
    /// Index failures.
    pub fn run_version(&self, run_id: &str) -> Result<Option<(String, u64)>> {
        let Some(v) = self.runs.get(run_id)? else { return Ok(None) };
        let s = String::from_utf8_lossy(&v).to_string();
        let parsed = s.rsplit_once('@').and_then(|(d, v)| Some((d.to_string(), v.parse().ok()?)));
        parsed.map(Some).ok_or_else(|| CatalogError::Corrupt { location: "catalog index (runs)".into(), message: s })
    }

    /// Records a committed version in one sled transaction, then flushes.
    /// Recording the same manifest again is a no-op.
    ///
    /// # Errors
    /// Index failures.
    pub fn record(&self, root_url: &str, manifest: &VersionManifest) -> Result<()> {
        let key = version_key(&manifest.dataset, manifest.version);
        let summary = serde_json::to_vec(&VersionSummary::of(manifest)).map_err(|e| CatalogError::Internal(e.to_string()))?;
        let full = serde_json::to_vec(manifest).map_err(|e| CatalogError::Internal(e.to_string()))?;
        let run = format!("{}@{}", manifest.dataset, manifest.version);
        let result: std::result::Result<(), TransactionError<CatalogError>> =
            (&self.datasets, &self.versions, &self.manifests, &self.runs).transaction(|(d, v, m, r)| {
                let latest = match d.get(manifest.dataset.as_bytes())? {
                    Some(b) => decode::<DatasetRecord>("datasets", &b).map_err(ConflictableTransactionError::Abort)?.latest,
                    None => 0,
                };
                let record = DatasetRecord {
                    name: manifest.dataset.clone(),
                    root_url: root_url.to_string(),
                    latest: latest.max(manifest.version),
                };
                let record = serde_json::to_vec(&record)
                    .map_err(|e| ConflictableTransactionError::Abort(CatalogError::Internal(e.to_string())))?;
                d.insert(manifest.dataset.as_bytes(), record)?;
                v.insert(key.as_slice(), summary.as_slice())?;
                m.insert(key.as_slice(), full.as_slice())?;
                r.insert(manifest.lineage.run_id.as_bytes(), run.as_bytes())?;
                Ok(())
            });
        match result {
            Ok(()) => {}
            Err(TransactionError::Abort(e)) => return Err(e),
            Err(TransactionError::Storage(e)) => return Err(e.into()),
        }
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_refs_parse() {
        assert_eq!("a@3".parse::<VersionRef>().unwrap(), VersionRef { dataset: "a".into(), version: Some(3) });
        assert_eq!("a@latest".parse::<VersionRef>().unwrap(), VersionRef { dataset: "a".into(), version: None });
        assert_eq!("a".parse::<VersionRef>().unwrap(), VersionRef { dataset: "a".into(), version: None });
        let e = "a@x".parse::<VersionRef>().unwrap_err().to_string();
        assert!(e.contains("a version is a number or `latest`"), "{e}");
    }
}
