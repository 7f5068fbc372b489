//! `against`: documents near-duplicate to earlier committed versions.

use std::collections::BTreeMap;
use std::path::PathBuf;

use smelt_engine::{BarrierContext, EngineError, Result};

use super::bands::band_path;
use super::cluster::Clusters;
use super::format::{dense, Layout};
use super::DedupMinhash;
use crate::dedup::against;

impl DedupMinhash {
    /// `against`: opens the earlier versions (building their indexes when
    /// missing), marks the run's documents that share a band with one of
    /// them and joins those to the earlier versions' set. Returns per
    /// version (`against:<dataset@v>`) the documents that matched it first.
    pub(super) fn match_earlier(
        &self,
        ctx: &BarrierContext,
        layout: &Layout,
        documents: u64,
        uf: &mut Clusters,
    ) -> Result<BTreeMap<String, u64>> {
        let tmp = ctx.resolved_dir.join("index-build");
        let earlier = smelt_engine::blocking::block_on(async {
            let mut out = Vec::new();
            for spec in &self.config.against {
                let e = against::open_version(&self.datasets, spec).await?;
                let (info, built) = against::ensure_index(&e, &self.config, &self.signer, &tmp).await?;
                tracing::info!(
                    "dedup_minhash: against {} ({} indexed documents{})",
                    e.name,
                    info.documents - info.without_shingles,
                    if built { ", index built now" } else { "" }
                );
                out.push(e);
            }
            Ok::<_, EngineError>(out)
        })?;
        let _ = std::fs::remove_dir_all(&tmp);
        let width = self.config.hashes_per_bucket + 2;
        let mut m = against::Matches { matched: vec![u32::MAX; documents as usize] };
        for band in 0..self.config.buckets {
            let paths: Vec<PathBuf> = layout.iter().map(|l| band_path(&ctx.observed_dir, l.0, band)).collect();
            let run = against::run_band(&paths, width, |n| dense(layout, n))?;
            smelt_engine::blocking::block_on(against::match_band(&earlier, &self.config, band, &run, &mut m))?;
        }
        let mut counts: BTreeMap<String, u64> = earlier.iter().map(|e| (format!("against:{}", e.name), 0)).collect();
        for (d, &k) in m.matched.iter().enumerate() {
            if k != u32::MAX {
                uf.join_earlier(d as u32);
                *counts.get_mut(&format!("against:{}", earlier[k as usize].name)).expect("listed") += 1;
            }
        }
        Ok(counts)
    }
}
