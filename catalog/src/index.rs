//! The sled index of the catalog: fast local lookups of datasets, versions and
//! runs. It is rebuilt from the manifests in dataset storage (`rebuild`), which
//! stay the source of truth (DESIGN.md, "Versions and the commit protocol").
//!
//! Trees: `datasets` (name -> DatasetRecord), `versions` (name \0 u64be ->
//! VersionSummary), `manifests` (same key -> VersionManifest), `runs`
//! (run id -> "name@version"), `intervals` (name \0 interval start -> version,
//! written in the commit's transaction), `run_states` (run id -> the
//! scheduler's [`crate::runstate::RunRecord`]: state, attempts, last error),
//! `training` (training run id -> [`crate::training::TrainingEntry`], from
//! the `_training/` files the loader writes).

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
    tags: sled::Tree,
    pub(crate) intervals: sled::Tree,
    pub(crate) run_states: sled::Tree,
    training: sled::Tree,
    _holder: std::sync::Arc<Holder>,
}

/// Which version of a dataset a reference names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// The latest version (`name`, `name@latest`).
    Latest,
    /// A version number (`name@7`).
    Number(u64),
    /// A tag (`name@prod`).
    Tag(String),
}

/// A dataset reference: `name`, `name@7`, `name@latest`, `name@prod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRef {
    /// Dataset name.
    pub dataset: String,
    /// Which version.
    pub selector: Selector,
}

impl VersionRef {
    /// The latest version of `dataset`.
    pub fn latest(dataset: &str) -> Self {
        VersionRef { dataset: dataset.to_string(), selector: Selector::Latest }
    }
}

impl std::fmt::Display for VersionRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.selector {
            Selector::Latest => write!(f, "{}@latest", self.dataset),
            Selector::Number(v) => write!(f, "{}@{v}", self.dataset),
            Selector::Tag(t) => write!(f, "{}@{t}", self.dataset),
        }
    }
}

/// Whether `tag` can name a tag: not a number, not `latest`, letters/digits/`-_.`.
pub fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 64
        && tag != "latest"
        && !tag.bytes().all(|b| b.is_ascii_digit())
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl std::str::FromStr for VersionRef {
    type Err = CatalogError;
    fn from_str(s: &str) -> Result<Self> {
        let (name, selector) = match s.split_once('@') {
            None => (s, Selector::Latest),
            Some((n, "latest")) => (n, Selector::Latest),
            Some((n, v)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                let v = v.parse::<u64>().map_err(|_| CatalogError::User(format!("`{s}`: version number too large")))?;
                (n, Selector::Number(v))
            }
            Some((n, t)) if valid_tag(t) => (n, Selector::Tag(t.to_string())),
            Some((n, _)) => {
                return Err(CatalogError::User(format!(
                    "`{s}`: after `@` comes a version number, `latest` or a tag, as in {n}@3 or {n}@prod"
                )))
            }
        };
        if name.is_empty() {
            return Err(CatalogError::User(format!("`{s}`: expected DATASET or DATASET@VERSION")));
        }
        Ok(VersionRef { dataset: name.to_string(), selector })
    }
}

/// Format of the index; a catalog written with another format is refused.
pub const INDEX_FORMAT: u32 = 1;

/// Who holds the catalog open, written beside the sled database while it is open.
#[derive(Debug)]
struct Holder {
    path: PathBuf,
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Closest candidate to `word` by edit distance, if it is close enough to be a typo
/// (used for "did you mean" hints everywhere in smelt).
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min()
        .map(|(_, c)| c)
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
    /// lock; the message names the holder), the files are unreadable, or the
    /// index was written in another format.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join("catalog.sled");
        let holder_path = data_dir.join("catalog.holder");
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
                    let holder = std::fs::read_to_string(&holder_path).map(|h| format!(" ({})", h.trim())).unwrap_or_default();
                    format!(
                        "another smelt process has the catalog open{holder}; sled allows one process at a time. \
                         Wait for it (smelt retries for SMELT_CATALOG_WAIT seconds, default 30), or use another --data-dir"
                    )
                }
                other => format!("{other}; if the index is damaged, move it away and run `smelt catalog rebuild`"),
            };
            CatalogError::Open { path: path.clone(), message }
        })?;
        let holder = format!(
            "held by pid {}: {}",
            std::process::id(),
            std::env::args().collect::<Vec<_>>().join(" ").chars().take(200).collect::<String>()
        );
        let _ = std::fs::write(&holder_path, holder);
        let holder = std::sync::Arc::new(Holder { path: holder_path });
        let meta = db.open_tree("meta")?;
        match meta.get("format")? {
            None => {
                meta.insert("format", INDEX_FORMAT.to_string().as_bytes())?;
            }
            Some(v) if v.as_ref() == INDEX_FORMAT.to_string().as_bytes() => {}
            Some(v) => {
                return Err(CatalogError::Open {
                    path,
                    message: format!(
                        "this catalog index has format {} and this smelt reads format {INDEX_FORMAT}; use the matching smelt, \
                         or move the index away and run `smelt catalog rebuild` to recreate it from the manifests",
                        String::from_utf8_lossy(&v)
                    ),
                })
            }
        }
        let tree = |name: &str| db.open_tree(name).map_err(CatalogError::from);
        Ok(Catalog {
            datasets: tree("datasets")?,
            versions: tree("versions")?,
            manifests: tree("manifests")?,
            runs: tree("runs")?,
            tags: tree("tags")?,
            intervals: tree("intervals")?,
            run_states: tree("run_states")?,
            training: tree("training")?,
            _holder: holder,
            db,
            path,
        })
    }

    /// Opens the index, retrying while another process holds it, for up to `wait`.
    ///
    /// # Errors
    /// As [`Catalog::open`], once `wait` has passed.
    pub fn open_wait(data_dir: &Path, wait: std::time::Duration) -> Result<Self> {
        let start = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(5);
        loop {
            match Catalog::open(data_dir) {
                Err(CatalogError::Open { message, .. })
                    if message.starts_with("another smelt process") && start.elapsed() < wait =>
                {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(200));
                }
                other => return other,
            }
        }
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
    /// `User` when the dataset, version or tag does not exist (with close names).
    pub fn resolve(&self, r: &VersionRef) -> Result<VersionManifest> {
        let record = self.dataset(&r.dataset)?.ok_or_else(|| {
            let known: Vec<String> = self.datasets().unwrap_or_default().into_iter().map(|d| d.name).collect();
            let hint = match closest(&r.dataset, known.iter().map(String::as_str)) {
                Some(c) => format!("; did you mean `{c}`?"),
                None if known.is_empty() => {
                    "; the catalog is empty: `smelt run PIPELINE` commits a version".to_string()
                }
                None => format!("; datasets: {}", known.join(", ")),
            };
            CatalogError::User(format!("no dataset named `{}` in {}{hint}", r.dataset, self.path.display()))
        })?;
        let v = match &r.selector {
            Selector::Latest => record.latest,
            Selector::Number(v) => *v,
            Selector::Tag(t) => self.tag_version(&r.dataset, t)?.ok_or_else(|| {
                let tags: Vec<String> = self.tags(&r.dataset).unwrap_or_default().into_iter().map(|(t, _)| t).collect();
                let hint = match closest(t, tags.iter().map(String::as_str)) {
                    Some(c) => format!("did you mean `{}@{c}`?", r.dataset),
                    None if tags.is_empty() => {
                        format!("`{}` has no tags; `smelt catalog tag {}@N {t}` sets one", r.dataset, r.dataset)
                    }
                    None => format!("its tags: {}", tags.join(", ")),
                };
                CatalogError::User(format!("`{r}`: no tag `{t}`; {hint}"))
            })?,
        };
        self.manifest(&r.dataset, v)?.ok_or_else(|| {
            let kept: Vec<u64> = self.versions(&r.dataset).unwrap_or_default().iter().map(|s| s.version).collect();
            if v < record.latest && !kept.contains(&v) {
                return CatalogError::User(format!(
                    "{}@{v} was expired by `smelt catalog gc` (its manifest is kept under _expired/ in {}); kept versions: {}",
                    r.dataset,
                    record.root_url,
                    kept.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
                ));
            }
            CatalogError::User(format!("{}@{v} does not exist; versions are 1 to {}", r.dataset, record.latest))
        })
    }

    /// The version a tag points to.
    ///
    /// # Errors
    /// Index failures.
    pub fn tag_version(&self, dataset: &str, tag: &str) -> Result<Option<u64>> {
        let mut k = dataset_prefix(dataset);
        k.extend_from_slice(tag.as_bytes());
        Ok(self.tags.get(k)?.and_then(|v| String::from_utf8_lossy(&v).parse().ok()))
    }

    /// Tags of a dataset with their versions, by tag name.
    ///
    /// # Errors
    /// Index failures.
    pub fn tags(&self, dataset: &str) -> Result<Vec<(String, u64)>> {
        let prefix = dataset_prefix(dataset);
        let mut out = Vec::new();
        for kv in self.tags.scan_prefix(&prefix) {
            let (k, v) = kv?;
            let tag = String::from_utf8_lossy(&k[prefix.len()..]).to_string();
            if let Ok(v) = String::from_utf8_lossy(&v).parse() {
                out.push((tag, v));
            }
        }
        Ok(out)
    }

    /// Points `tag` of `dataset` at `version` (moving it if it exists), then flushes.
    ///
    /// # Errors
    /// `User` for an invalid tag name or a version that does not exist.
    pub fn set_tag(&self, dataset: &str, tag: &str, version: u64) -> Result<()> {
        if !valid_tag(tag) {
            return Err(CatalogError::User(format!(
                "`{tag}` cannot be a tag: use letters, digits, `-`, `_` or `.`, not a number and not `latest`"
            )));
        }
        self.resolve(&VersionRef { dataset: dataset.to_string(), selector: Selector::Number(version) })?;
        let mut k = dataset_prefix(dataset);
        k.extend_from_slice(tag.as_bytes());
        self.tags.insert(k, version.to_string().as_bytes())?;
        self.db.flush()?;
        Ok(())
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

    /// Records (or updates) a training run found in dataset storage.
    ///
    /// # Errors
    /// Index failures.
    pub fn record_training(&self, entry: &crate::training::TrainingEntry) -> Result<()> {
        let bytes = serde_json::to_vec(entry).map_err(|e| CatalogError::Internal(e.to_string()))?;
        self.training.insert(entry.run_id.as_bytes(), bytes)?;
        self.db.flush()?;
        Ok(())
    }

    /// A training run by id.
    ///
    /// # Errors
    /// Index failures.
    pub fn training_run(&self, run_id: &str) -> Result<Option<crate::training::TrainingEntry>> {
        self.training.get(run_id)?.map(|b| decode("training", &b)).transpose()
    }

    /// Every training run the index knows, by start time.
    ///
    /// # Errors
    /// Index failures.
    pub fn training_runs(&self) -> Result<Vec<crate::training::TrainingEntry>> {
        let mut out: Vec<crate::training::TrainingEntry> =
            self.training.iter().values().map(|v| decode("training", &v?)).collect::<Result<_>>()?;
        out.sort_by(|a, b| (&a.started_at, &a.run_id).cmp(&(&b.started_at, &b.run_id)));
        Ok(out)
    }

    /// Removes a version that `catalog gc` expired: its summary, manifest,
    /// run and interval entries and the tags pointing at it; then flushes.
    /// The dataset's `latest` is left alone (gc never expires the latest).
    ///
    /// # Errors
    /// Index failures.
    pub fn forget(&self, manifest: &VersionManifest) -> Result<()> {
        let key = version_key(&manifest.dataset, manifest.version);
        self.versions.remove(&key)?;
        self.manifests.remove(&key)?;
        if self.run_version(&manifest.lineage.run_id)? == Some((manifest.dataset.clone(), manifest.version)) {
            self.runs.remove(manifest.lineage.run_id.as_bytes())?;
        }
        if let Some(i) = &manifest.lineage.interval {
            let k = crate::runstate::interval_key(&manifest.dataset, &i.start);
            if self.intervals.get(&k)?.is_some_and(|v| v == manifest.version.to_string().as_bytes()) {
                self.intervals.remove(k)?;
            }
        }
        for (tag, v) in self.tags(&manifest.dataset)? {
            if v == manifest.version {
                let mut k = dataset_prefix(&manifest.dataset);
                k.extend_from_slice(tag.as_bytes());
                self.tags.remove(k)?;
            }
        }
        self.db.flush()?;
        Ok(())
    }

    /// Records a committed version in one sled transaction, then flushes.
    /// Recording the same manifest again is a no-op.
    ///
    /// # Errors
    /// Index failures.
    pub fn record(&self, root_url: &str, manifest: &VersionManifest) -> Result<()> {
        let key = version_key(&manifest.dataset, manifest.version);
        let summary =
            serde_json::to_vec(&VersionSummary::of(manifest)).map_err(|e| CatalogError::Internal(e.to_string()))?;
        let full = serde_json::to_vec(manifest).map_err(|e| CatalogError::Internal(e.to_string()))?;
        let run = format!("{}@{}", manifest.dataset, manifest.version);
        let interval =
            manifest.lineage.interval.as_ref().map(|i| crate::runstate::interval_key(&manifest.dataset, &i.start));
        let result: std::result::Result<(), TransactionError<CatalogError>> =
            (&self.datasets, &self.versions, &self.manifests, &self.runs, &self.intervals).transaction(
                |(d, v, m, r, i)| {
                    let latest = match d.get(manifest.dataset.as_bytes())? {
                        Some(b) => {
                            decode::<DatasetRecord>("datasets", &b).map_err(ConflictableTransactionError::Abort)?.latest
                        }
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
                    if let Some(k) = &interval {
                        i.insert(k.as_slice(), manifest.version.to_string().as_bytes())?;
                    }
                    Ok(())
                },
            );
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
        let r = |s: &str| s.parse::<VersionRef>().unwrap().selector;
        assert_eq!(r("a@3"), Selector::Number(3));
        assert_eq!(r("a@latest"), Selector::Latest);
        assert_eq!(r("a"), Selector::Latest);
        assert_eq!(r("cc-news@prod"), Selector::Tag("prod".into()));
        assert_eq!("cc-news@prod".parse::<VersionRef>().unwrap().to_string(), "cc-news@prod");
        let e = "a@x y".parse::<VersionRef>().unwrap_err().to_string();
        assert!(e.contains("a version number, `latest` or a tag"), "{e}");
    }

    #[test]
    fn a_catalog_of_another_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = Catalog::open(dir.path()).unwrap();
            c.db.open_tree("meta").unwrap().insert("format", b"99".as_slice()).unwrap();
            c.db.flush().unwrap();
        }
        let e = Catalog::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("format 99") && e.contains("reads format 1"), "{e}");
    }
}
