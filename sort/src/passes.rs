//! Merging sorted files, at most `fan_in` at a time.
//!
//! ```text
//! inputs (n > fan-in) ──merge a group──► scratch/merge-NNNNNN ─┐
//! rest of the inputs ──────────────────────────────────────────┴─loser tree──► out(record)
//! ```

use std::io;
use std::path::{Path, PathBuf};

use crate::format::{Record, RunFormat};
use crate::merge::{Merge, Order};

/// Merges sorted runs of `format` and passes every record, in order, to
/// `out`; duplicates are all kept (in the order of their files). With more
/// than `fan_in` inputs, earlier passes merge groups into files under
/// `scratch`, removed once merged; the inputs are left as they are.
///
/// # Errors
/// Reading an input or writing an intermediate file (io errors), or `out`'s.
pub fn merge_files<F, E>(
    format: &F,
    inputs: &[PathBuf],
    scratch: &Path,
    fan_in: usize,
    mut out: impl FnMut(Record<'_, F>) -> Result<(), E>,
) -> Result<(), E>
where
    F: RunFormat,
    E: From<io::Error>,
{
    let fan_in = fan_in.max(2);
    // (path, whether it is ours): intermediate files are removed once merged.
    let mut level: Vec<(PathBuf, bool)> = inputs.iter().map(|p| (p.clone(), false)).collect();
    let remove = |group: &[(PathBuf, bool)]| {
        for (p, owned) in group {
            if *owned {
                let _ = std::fs::remove_file(p);
            }
        }
    };
    let mut made = 0;
    while level.len() > fan_in {
        // Merge just enough runs that the rest fits in one final merge (with
        // 100 runs: 37 first, not all 100 twice); with many more, full groups.
        let take = (level.len() - fan_in + 1).min(fan_in);
        let group: Vec<(PathBuf, bool)> = level.drain(..take).collect();
        let path = scratch.join(format!("merge-{made:06}"));
        made += 1;
        let mut w = format.create(&path)?;
        merge_group(format, &group, |rec| format.write(&mut w, rec))?;
        format.close(w)?;
        remove(&group);
        level.push((path, true));
    }
    merge_group(format, &level, &mut out)?;
    remove(&level);
    Ok(())
}

fn merge_group<F, E>(
    format: &F,
    group: &[(PathBuf, bool)],
    mut out: impl FnMut(Record<'_, F>) -> Result<(), E>,
) -> Result<(), E>
where
    F: RunFormat,
    E: From<io::Error>,
{
    let cursors = group.iter().map(|(p, _)| format.open(p)).collect::<io::Result<Vec<_>>>()?;
    let mut merge = Merge::new(cursors, ByFormat(format))?;
    while let Some(c) = merge.peek() {
        out(format.record(c))?;
        merge.pop()?;
    }
    Ok(())
}

/// The order of a format's runs.
struct ByFormat<'f, F>(&'f F);

impl<F: RunFormat> Order<F::Cursor> for ByFormat<'_, F> {
    #[inline(always)]
    fn cmp(&self, a: &F::Cursor, b: &F::Cursor) -> std::cmp::Ordering {
        self.0.cmp(a, b)
    }
}
