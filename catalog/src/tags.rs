//! Movable tags (`cc-news@prod`). A tag lives in the dataset's storage as
//! `_tags/<tag>.json` (so `catalog rebuild` restores it) and in the sled index
//! for lookups; the storage file is written first.

use serde::{Deserialize, Serialize};

use crate::error::{CatalogError, Result};
use crate::index::{valid_tag, Catalog};
use crate::store::{to_json_bytes, DatasetStore};

/// A tag file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagFile {
    /// Dataset name.
    pub dataset: String,
    /// Tag name.
    pub tag: String,
    /// Version it points to.
    pub version: u64,
    /// When it was set, RFC 3339.
    pub tagged_at: String,
}

/// Path of a tag file relative to the dataset root.
pub fn tag_path(tag: &str) -> String {
    format!("_tags/{tag}.json")
}

/// Points `tag` at `dataset@version`, in storage and in the index.
///
/// # Errors
/// Invalid tag, unknown version, storage or index failures.
pub async fn set_tag(
    catalog: &Catalog,
    store: &DatasetStore,
    dataset: &str,
    tag: &str,
    version: u64,
    now: &str,
) -> Result<()> {
    if !valid_tag(tag) {
        return Err(CatalogError::User(format!(
            "`{tag}` cannot be a tag: use letters, digits, `-`, `_` or `.`, not a number and not `latest`"
        )));
    }
    if catalog.manifest(dataset, version)?.is_none() {
        catalog.resolve(&crate::VersionRef { dataset: dataset.into(), selector: crate::Selector::Number(version) })?;
    }
    let file = TagFile { dataset: dataset.into(), tag: tag.into(), version, tagged_at: now.into() };
    store.put(&tag_path(tag), to_json_bytes(&file)).await?;
    catalog.set_tag(dataset, tag, version)
}

/// Records every tag file of a dataset root in the index (after its versions were rebuilt).
///
/// # Errors
/// Storage or index failures, undecodable tag files.
pub async fn rebuild_tags(catalog: &Catalog, store: &DatasetStore) -> Result<Vec<TagFile>> {
    let mut out = Vec::new();
    for name in store.list("_tags").await? {
        if let Some(t) = store.get_json::<TagFile>(&name).await? {
            if catalog.manifest(&t.dataset, t.version)?.is_some() {
                catalog.set_tag(&t.dataset, &t.tag, t.version)?;
                out.push(t);
            }
        }
    }
    Ok(out)
}
