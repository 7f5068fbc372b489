//! Where the phases of a run keep their files in its scratch directory, and
//! a barrier's global step (see [`PhaseEnv`] for the layout).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use petgraph::graph::NodeIndex;
use smelt_catalog::StageMetrics;
use tokio::sync::Semaphore;

use super::split::Root;
use crate::compile::Pipeline;
use crate::error::{EngineError, Result};
use crate::stage::{BarrierContext, SplitSpec, StageConfig};

/// A directory removed when dropped.
pub(super) struct TempDir(pub(super) PathBuf);

impl TempDir {
    pub(super) fn new(prefix: &str) -> Result<Self> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) fn io_error(path: &std::path::Path, e: std::io::Error) -> EngineError {
    EngineError::External(format!("{}: {e}", path.display()))
}

/// Where each phase of a run keeps its files:
///
/// ```text
/// <scratch>/<barrier>/spill/<split>.parquet    rows that reached the barrier, in order
/// <scratch>/<barrier>/observed/                 the observers' files
/// <scratch>/<barrier>/resolved/                 the global step's output (renamed into place)
/// <scratch>/<barrier>/resolved.json             its counters; present = resolved
/// <scratch>/phase-<k>/<split>.json              split done with phase k (its stage metrics)
/// ```
pub(super) struct PhaseEnv {
    pub(super) scratch: PathBuf,
    pub(super) memory_budget: usize,
    pub(super) parallelism: usize,
}

impl PhaseEnv {
    pub(super) fn stage_dir(&self, p: &Pipeline, b: NodeIndex) -> PathBuf {
        self.scratch.join(&p.graph[b].name)
    }

    pub(super) fn context(&self, p: &Pipeline, b: NodeIndex) -> BarrierContext {
        let dir = self.stage_dir(p, b);
        BarrierContext {
            observed_dir: dir.join("observed"),
            resolved_dir: dir.join("resolved"),
            memory_budget: self.memory_budget,
            parallelism: self.parallelism,
        }
    }

    pub(super) fn spill_path(&self, p: &Pipeline, b: NodeIndex, split: u32) -> PathBuf {
        self.stage_dir(p, b).join("spill").join(format!("{split:06}.parquet"))
    }

    pub(super) fn phase_marker(&self, phase: u32, split: u32) -> PathBuf {
        self.scratch.join(format!("phase-{phase}")).join(format!("{split:06}.json"))
    }

    pub(super) fn resolved_marker(&self, p: &Pipeline, b: NodeIndex) -> PathBuf {
        self.stage_dir(p, b).join("resolved.json")
    }

    /// Where split `split` starts in `phase`: its source, or the spill of the barrier before.
    pub(super) fn root(
        &self,
        p: &Pipeline,
        barriers: &[NodeIndex],
        phase: u32,
        split: u32,
        source: &(NodeIndex, SplitSpec),
    ) -> Result<Root> {
        if phase == 0 {
            return Ok(Root::Source(source.0, source.1.clone()));
        }
        let b = barriers[phase as usize - 1];
        Ok(Root::Spill { barrier: b, file: self.spill_path(p, b, split), ctx: self.context(p, b), split })
    }

    pub(super) fn write_marker(&self, phase: u32, split: u32, stages: &[StageMetrics]) -> Result<()> {
        write_atomic(
            &self.phase_marker(phase, split),
            &serde_json::to_vec(stages).map_err(|e| EngineError::Internal(e.to_string()))?,
        )
    }

    /// The split's metrics over every phase: earlier phases' markers plus
    /// `last`; each barrier's global-step counters go to split 0's record.
    pub(super) fn all_phase_metrics(
        &self,
        p: &Pipeline,
        barriers: &[NodeIndex],
        split: u32,
        last: Vec<StageMetrics>,
    ) -> Result<Vec<StageMetrics>> {
        let mut out = last;
        for (k, &b) in barriers.iter().enumerate() {
            let path = self.phase_marker(k as u32, split);
            let bytes = std::fs::read(&path).map_err(|e| io_error(&path, e))?;
            let earlier: Vec<StageMetrics> =
                serde_json::from_slice(&bytes).map_err(|e| io_error(&path, std::io::Error::other(e)))?;
            for (o, m) in out.iter_mut().zip(&earlier) {
                o.merge(m);
            }
            if split == 0 {
                let path = self.resolved_marker(p, b);
                let bytes = std::fs::read(&path).map_err(|e| io_error(&path, e))?;
                let counters: BTreeMap<String, u64> =
                    serde_json::from_slice(&bytes).map_err(|e| io_error(&path, std::io::Error::other(e)))?;
                if let Some(o) = out.iter_mut().find(|m| m.stage == p.graph[b].name) {
                    o.merge(&StageMetrics { counters, ..Default::default() });
                }
            }
        }
        Ok(out)
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().expect("a file in a directory");
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| io_error(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_error(path, e))
}

/// Runs barrier `b`'s global step over splits `0..splits` into a fresh
/// directory and renames it into place; ranks that race both compute the same
/// result and the first rename wins.
pub(super) async fn resolve_barrier(
    p: &Pipeline,
    b: NodeIndex,
    env: &PhaseEnv,
    cpu: &Arc<Semaphore>,
    splits: u32,
) -> Result<()> {
    let StageConfig::Barrier(cfg) = p.graph[b].config.clone() else {
        return Err(EngineError::Internal("resolve of a stage that is not a barrier".into()));
    };
    let mut ctx = env.context(p, b);
    let fin = ctx.resolved_dir.clone();
    let tmp = env.stage_dir(p, b).join(format!("resolving-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| io_error(&tmp, e))?;
    std::fs::create_dir_all(&ctx.observed_dir).map_err(|e| io_error(&ctx.observed_dir, e))?;
    ctx.resolved_dir = tmp.clone();
    let name = p.graph[b].name.clone();
    let all: Vec<u32> = (0..splits).collect();
    // The global step may use every core: hold all permits.
    let permits = cpu.clone().acquire_many_owned(env.parallelism as u32).await.map_err(|_| EngineError::Cancelled)?;
    let counters = tokio::task::spawn_blocking(move || cfg.resolve(&ctx, &all))
        .await
        .map_err(|e| EngineError::Internal(format!("a barrier's global step panicked: {e}")))?
        .map_err(|e| e.in_stage(&name))?;
    drop(permits);
    if !fin.exists() {
        if let Err(e) = std::fs::rename(&tmp, &fin) {
            if !fin.exists() {
                return Err(io_error(&fin, e));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    write_atomic(
        &env.resolved_marker(p, b),
        &serde_json::to_vec(&counters).map_err(|e| EngineError::Internal(e.to_string()))?,
    )
}
