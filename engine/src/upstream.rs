//! Committed versions read back from storage by a pipeline: `dedup_minhash`'s
//! `against:` and the `dataset` source's `from:`.
//!
//! ```text
//! "name@7" | "name@prod" | "name@latest" | "path/or/url@7"
//!   ──DatasetRoots::root_of(name)──► root ──_versions/ (latest), _tags/<tag>.json (tags)──► _versions/<V>.json
//! ```
//! Storage only, no sled: ranks that never open the catalog resolve the same version.

use std::path::Path;

use smelt_catalog::commit::{load_manifest, stored_versions};
use smelt_catalog::tags::{tag_path, TagFile};
use smelt_catalog::{DatasetStore, Selector, VersionManifest, VersionRef};

use crate::error::{EngineError, Result};
use crate::stage::DatasetRoots;

/// A committed version, opened from its storage.
pub struct Earlier {
    /// `dataset@version`, the number resolved.
    pub name: String,
    /// The dataset's storage.
    pub store: DatasetStore,
    /// The version's manifest.
    pub manifest: VersionManifest,
}

impl Earlier {
    /// The bytes of one of the version's files (a shard's `path`), relative to its root.
    ///
    /// # Errors
    /// A file that is missing, storage failures.
    pub async fn shard(&self, path: &str) -> Result<bytes::Bytes> {
        self.store
            .get(path)
            .await?
            .ok_or_else(|| EngineError::External(format!("{}/{path} is missing", self.store.url())))
    }
}

/// Opens `spec` (`name@7`, `name@prod`, `name@latest`, or `path/or/url@7`)
/// from storage, finding named datasets through `datasets`; `option` names
/// the pipeline option in messages (`against`, `from`).
///
/// # Errors
/// A malformed reference, a dataset or version that does not exist, storage failures.
pub async fn open_version(datasets: &DatasetRoots, spec: &str, option: &str) -> Result<Earlier> {
    let r: VersionRef = spec.parse()?;
    let root = datasets.root_of(&r.dataset);
    if !root.contains("://") && !Path::new(&root).join("_versions").is_dir() {
        return Err(EngineError::User(format!(
            "{option} `{spec}`: no committed dataset at {root}; give a dataset of this catalog \
             (`smelt catalog list`) or its storage root, as in `/data/datasets/{}@3`",
            r.dataset
        )));
    }
    let store = DatasetStore::open(&root)?;
    let stored = stored_versions(&store).await?;
    let version = match &r.selector {
        Selector::Number(v) if stored.contains(v) => *v,
        Selector::Number(v) => {
            return Err(EngineError::User(format!(
                "{option} `{spec}`: {} has no version {v} (it has {}; `smelt catalog log {}`)",
                r.dataset,
                match (stored.first(), stored.last()) {
                    (Some(a), Some(b)) if a == b => format!("version {a}"),
                    (Some(a), Some(b)) => format!("versions {a} to {b}"),
                    _ => "no committed version".to_string(),
                },
                r.dataset
            )))
        }
        Selector::Latest => *stored
            .last()
            .ok_or_else(|| EngineError::User(format!("{option} `{spec}`: {root} has no committed version")))?,
        Selector::Tag(t) => {
            store
                .get_json::<TagFile>(&tag_path(t))
                .await?
                .ok_or_else(|| {
                    EngineError::User(format!(
                        "{option} `{spec}`: {} has no tag `{t}` (see `smelt catalog log {}`)",
                        r.dataset, r.dataset
                    ))
                })?
                .version
        }
    };
    let manifest = load_manifest(&store, version).await?;
    Ok(Earlier { name: format!("{}@{version}", manifest.dataset), store, manifest })
}
