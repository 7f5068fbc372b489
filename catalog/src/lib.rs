//! smelt's dataset catalog.
//!
//! ```text
//! ranks ──► runs/<id>/{plan.json, shards/*.parquet, splits/*.json, index/*.idx}   (dataset storage, object_store)
//!                                   │  commit_run: all splits complete? document indexes merged,
//!                                   │  hooks (audit gates) complete or refuse the manifest
//!                                   ▼
//!                      _versions/NNNNNN.json (immutable manifest, source of truth)
//!                                   │  one sled transaction
//!                                   ▼
//!                      catalog.sled (index: datasets, versions, manifests, runs)
//! ```
//! Only the commit writes the index; ranks on other machines only touch storage.
//!
//! This crate is the table format and nothing more: it links no query engine.
//! `smelt sql`, version and document diffs and the bias-audit derivation are
//! built on it in `smelt-query`.

pub mod audit;
pub mod commit;
pub mod content;
pub mod docindex;
pub mod error;
pub mod gc;
pub mod incremental;
pub mod index;
pub mod model;
pub mod publish;
pub mod runstate;
pub mod store;
pub mod tags;
pub mod throttle;
pub mod training;

pub use commit::{
    commit_run, completed_splits, rebuild, shard_path, split_record_path, write_plan, CommitHook, CommitOutcome,
};
pub use error::{CatalogError, Result};
pub use index::{closest, valid_tag, Catalog, Selector, VersionRef};
pub use model::*;
pub use runstate::{Attempt, RunRecord, RunStatus};
pub use store::{to_json_bytes, Created, DatasetStore, ShardUploads, StreamingPut};
