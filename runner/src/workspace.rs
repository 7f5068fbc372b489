//! The data directory a run works in: the catalog index, default dataset
//! storage, run pointers (so `smelt commit RUN` finds a run's dataset) and
//! runs' scratch space; and how pipeline files are loaded against it.
//!
//! ```text
//! <data dir>/catalog.sled           index (sled), opened briefly: other smelt processes share it
//!           /datasets/<name>/       default storage of dataset <name> (manifests, shards)
//!           /runs/<run id>.json     RunPointer: dataset, storage root, pipeline file
//!           /scratch/<dataset>/<id> barrier stages' spills and state (every rank must see it)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use smelt_catalog::{Catalog, CatalogError};
use smelt_engine::{ConfigureContext, EngineError, Pipeline};

use crate::registry;

/// smelt's data directory.
#[derive(Debug, Clone)]
pub struct Workspace {
    data_dir: PathBuf,
}

/// Where a run's dataset lives, remembered in the data directory so `smelt commit RUN` finds it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunPointer {
    /// Dataset name.
    pub dataset: String,
    /// Storage root (URL or path) of the dataset.
    pub root_url: String,
    /// The pipeline file, as given.
    pub pipeline: String,
}

impl Workspace {
    /// The data directory `data_dir` (created when something is written).
    pub fn new(data_dir: impl Into<PathBuf>) -> Workspace {
        Workspace { data_dir: data_dir.into() }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Opens the catalog index, waiting up to `SMELT_CATALOG_WAIT` seconds
    /// (default 30) while another smelt process holds it.
    ///
    /// # Errors
    /// The index cannot be opened or stays locked.
    pub fn open_catalog(&self) -> Result<Catalog, CatalogError> {
        let wait = std::env::var("SMELT_CATALOG_WAIT").ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(30.0);
        Catalog::open_wait(&self.data_dir, Duration::from_secs_f64(wait.max(0.0)))
    }

    /// The catalog's dataset roots (name -> storage URL or path); the
    /// catalog is closed again before this returns.
    ///
    /// # Errors
    /// As [`Workspace::open_catalog`].
    pub fn dataset_roots(&self) -> Result<BTreeMap<String, String>, CatalogError> {
        Ok(self.open_catalog()?.datasets()?.into_iter().map(|d| (d.name, d.root_url)).collect())
    }

    /// The configure context for the pipeline file `pipeline`: its directory,
    /// this data directory, named datasets under `<data dir>/datasets/`, and
    /// DataFusion to compile SQL predicates (the `dataset` source's `where`).
    pub fn context(&self, pipeline: &Path) -> ConfigureContext {
        let mut ctx = ConfigureContext::for_file(pipeline, &self.data_dir);
        ctx.predicates = Some(std::sync::Arc::new(smelt_query::stage::SqlPredicates));
        ctx
    }

    /// Reads and compiles a pipeline file with [`Workspace::context`].
    ///
    /// # Errors
    /// The file cannot be read (user), or every problem the compiler finds (config).
    pub fn load(&self, pipeline: &Path) -> Result<Pipeline, EngineError> {
        load_in(pipeline, &self.context(pipeline))
    }

    /// Where a pipeline's dataset is stored: `--output` as given, else the
    /// file's `output:` (relative to the pipeline file), else `<data dir>/datasets/<dataset>`.
    pub fn dataset_root(&self, p: &Pipeline, pipeline_path: &Path, cli_output: Option<&str>) -> String {
        match cli_output.map(str::to_string).or_else(|| p.output.clone()) {
            Some(o) if o.contains("://") || Path::new(&o).is_absolute() => o,
            Some(o) if cli_output.is_some() => o,
            Some(o) => self.context(pipeline_path).resolve(Path::new(&o)).display().to_string(),
            None => self.data_dir.join("datasets").join(&p.dataset).display().to_string(),
        }
    }

    /// A run's scratch directory (barrier stages' spills and state): under the
    /// data directory, so ranks on several machines need it on a shared file system.
    pub fn scratch_dir(&self, dataset: &str, run_id: &str) -> PathBuf {
        self.data_dir.join("scratch").join(dataset).join(run_id)
    }

    /// The file of run `run_id`'s pointer.
    pub fn pointer_path(&self, run_id: &str) -> PathBuf {
        self.data_dir.join("runs").join(format!("{run_id}.json"))
    }

    /// Whether a local run with this id was started from this data directory.
    pub fn pointer_exists(&self, run_id: &str) -> bool {
        valid_run_id(run_id) && self.pointer_path(run_id).exists()
    }

    /// Writes run `run_id`'s pointer.
    ///
    /// # Errors
    /// The data directory is not writable.
    pub fn write_pointer(&self, run_id: &str, pointer: &RunPointer) -> Result<(), EngineError> {
        let path = self.pointer_path(run_id);
        let bytes = serde_json::to_vec_pretty(pointer).map_err(|e| EngineError::Internal(e.to_string()))?;
        std::fs::create_dir_all(path.parent().expect("runs/ has a parent"))
            .and_then(|()| std::fs::write(&path, bytes))
            .map_err(|e| EngineError::External(format!("cannot write {}: {e}", path.display())))
    }

    /// Reads run `run_id`'s pointer.
    ///
    /// # Errors
    /// No such run was started here (user), or the pointer is corrupt.
    pub fn read_pointer(&self, run_id: &str) -> Result<RunPointer, EngineError> {
        let path = self.pointer_path(run_id);
        let bytes = std::fs::read(&path).map_err(|_| {
            EngineError::User(format!(
                "no run `{run_id}` known in {}: pass the pipeline with `smelt commit {run_id} --pipeline PIPELINE.yaml`",
                self.data_dir.display()
            ))
        })?;
        serde_json::from_slice(&bytes).map_err(|e| EngineError::External(format!("corrupt {}: {e}", path.display())))
    }
}

/// Reads and compiles a pipeline file with `ctx` handed to its stages.
///
/// # Errors
/// As [`Workspace::load`].
pub fn load_in(path: &Path, ctx: &ConfigureContext) -> Result<Pipeline, EngineError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| EngineError::User(format!("cannot read pipeline {}: {e}", path.display())))?;
    smelt_engine::compile(&path.display().to_string(), &text, &registry::stages(), ctx).map_err(EngineError::Config)
}

/// A new run id: the UTC time and a salt (`20240501T120000Z-1a2b`).
pub fn new_run_id() -> String {
    let now = chrono::Utc::now();
    let salt = (now.timestamp_subsec_nanos() ^ std::process::id().rotate_left(16)) & 0xffff;
    format!("{}-{salt:04x}", now.format("%Y%m%dT%H%M%SZ"))
}

/// Whether `id` can name a run: letters, digits, `-`, `_`, `.`, not starting with `.`.
pub fn valid_run_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !id.starts_with('.')
}

/// Removes a committed run's scratch directory; a failure only warns.
pub(crate) fn remove_scratch(dir: &Path) {
    if dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            tracing::warn!("cannot remove scratch directory {}: {e}", dir.display());
        }
    }
}
