//! `explain: true`: each cluster's members and their estimated similarity
//! (`dup_members`, for `smelt dedup explain`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field};
use smelt_engine::{BarrierContext, EngineError, Result};

use super::cluster::{Clusters, Written};
use super::format::{le_u32, le_u64, node, Layout};
use crate::dedup::io;

/// `dup_members`: List<Struct<id: Utf8, similarity: Float32>>.
pub fn members_type() -> DataType {
    let fields = vec![Field::new("id", DataType::Utf8, false), Field::new("similarity", DataType::Float32, false)];
    DataType::List(Arc::new(Field::new("item", DataType::Struct(fields.into()), true)))
}

// Explain data. Observers write `<split>.ids`: per row with a signature,
// row u64, the low 16 bits of each hash (u16), the id's length u32 and its
// bytes. After clustering, `write_members` reads them for the clustered rows
// only and writes `members/<split>.bin` for the splits that hold kept rows:
// per kept row, in row order, row u64, members u32, then per member
// similarity f32, id length u32, id bytes. The similarity is the estimated
// Jaccard similarity to the kept row: the share of equal hashes (16-bit
// fingerprints; a false match per hash has chance 2^-16).

pub(super) fn ids_path(dir: &Path, split: u32) -> PathBuf {
    dir.join(format!("{split:06}.ids"))
}

fn members_path(dir: &Path, split: u32) -> PathBuf {
    dir.join("members").join(format!("{split:06}.bin"))
}

pub(super) fn write_member(w: &mut impl Write, row: u64, sig: &[u64], id: &str) -> std::io::Result<()> {
    w.write_all(&row.to_le_bytes())?;
    for v in sig {
        w.write_all(&(*v as u16).to_le_bytes())?;
    }
    w.write_all(&(id.len() as u32).to_le_bytes())?;
    w.write_all(id.as_bytes())
}

/// The estimated Jaccard similarity of two fingerprinted signatures.
fn similarity(a: &[u16], b: &[u16]) -> f32 {
    let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
    same as f32 / a.len().max(1) as f32
}

/// Reads the observers' id files for the clustered rows and writes each
/// cluster's members beside its kept row. Holds the clustered rows' ids and
/// fingerprints (about 2 bytes per hash plus the id per clustered document).
pub(super) fn write_members(
    ctx: &BarrierContext,
    uf: &mut Clusters,
    w: &Written,
    layout: &Layout,
    hashes: usize,
) -> Result<()> {
    // (cluster, dropped, node, id, fingerprints)
    let mut members: Vec<(u32, bool, u64, String, Vec<u16>)> = Vec::new();
    let mut head = [0u8; 8];
    let mut fp_bytes = vec![0u8; hashes * 2];
    for &(split, _, first) in layout {
        let path = ids_path(&ctx.observed_dir, split);
        let mut r = BufReader::with_capacity(1 << 16, File::open(&path).map_err(|e| io(&path, e))?);
        loop {
            match r.read_exact(&mut head) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(io(&path, e)),
            }
            let row = le_u64(&head);
            r.read_exact(&mut fp_bytes).map_err(|e| io(&path, e))?;
            r.read_exact(&mut head[..4]).map_err(|e| io(&path, e))?;
            let mut id = vec![0u8; le_u32(&head[..4]) as usize];
            r.read_exact(&mut id).map_err(|e| io(&path, e))?;
            let x = (first + row) as u32;
            let root = uf.find(x);
            if uf.size[root as usize] < 2 || uf.is_earlier(root) {
                continue;
            }
            let fp = fp_bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
            members.push((
                w.cluster[root as usize],
                w.kept[root as usize] != x,
                node(split, row)?,
                String::from_utf8_lossy(&id).into_owned(),
                fp,
            ));
        }
    }
    members.sort_unstable_by_key(|m| (m.0, m.1, m.2));
    let mut per_split: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    for group in members.chunk_by(|a, b| a.0 == b.0) {
        let kept = &group[0];
        if kept.1 {
            return Err(EngineError::Internal(format!("dedup_minhash: cluster {} has no kept member", kept.0)));
        }
        let out = per_split.entry((kept.2 >> 40) as u32).or_default();
        out.extend_from_slice(&(kept.2 & ((1 << 40) - 1)).to_le_bytes());
        out.extend_from_slice(&(group.len() as u32 - 1).to_le_bytes());
        for m in &group[1..] {
            out.extend_from_slice(&similarity(&kept.4, &m.4).to_le_bytes());
            out.extend_from_slice(&(m.3.len() as u32).to_le_bytes());
            out.extend_from_slice(m.3.as_bytes());
        }
    }
    let dir = ctx.resolved_dir.join("members");
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    for (split, bytes) in per_split {
        let path = members_path(&ctx.resolved_dir, split);
        std::fs::write(&path, bytes).map_err(|e| io(&path, e))?;
    }
    Ok(())
}

/// Per kept row of a cluster: (row, the other members' (id, similarity)).
pub(super) type Members = Vec<(u64, Vec<(String, f32)>)>;

/// The members file of `split`, sorted by kept row (empty when it has no kept row of a cluster).
pub(super) fn read_members(dir: &Path, split: u32) -> Result<Members> {
    let path = members_path(dir, split);
    let b = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&path, e)),
    };
    let bad = || EngineError::External(format!("{}: truncated", path.display()));
    fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (rest.get(..n)?, rest.get(n..)?);
        *rest = tail;
        Some(head)
    }
    let mut rest: &[u8] = &b;
    let mut out: Members = Vec::new();
    while !rest.is_empty() {
        let row = le_u64(take(&mut rest, 8).ok_or_else(bad)?);
        let n = le_u32(take(&mut rest, 4).ok_or_else(bad)?) as usize;
        let mut list = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            let sim = f32::from_le_bytes(take(&mut rest, 4).ok_or_else(bad)?.try_into().expect("4 bytes"));
            let len = le_u32(take(&mut rest, 4).ok_or_else(bad)?) as usize;
            let id = take(&mut rest, len).ok_or_else(bad)?;
            list.push((String::from_utf8_lossy(id).into_owned(), sim));
        }
        out.push((row, list));
    }
    out.sort_by_key(|m| m.0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{defaults, edited, BASE};
    use super::super::{configure, Scratch, Signer};
    use super::*;
    use crate::filters::words::Segmenter;
    use arrow::array::{Array, AsArray, LargeStringArray, StringArray};
    use arrow::datatypes::Schema;
    use arrow::record_batch::RecordBatch;
    use smelt_engine::{ConfigureContext, Processed, StageConfig};

    #[test]
    fn explain_lists_the_members_on_the_kept_row() {
        let StageConfig::Barrier(b) =
            configure(serde_json::json!({"explain": true, "keep": "first"}), &ConfigureContext::working_dir()).unwrap()
        else {
            panic!("a barrier")
        };
        let dir = tempfile::tempdir().unwrap();
        let ctx = crate::dedup::test_context(dir.path());
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("text", DataType::LargeUtf8, false),
        ]));
        let (near, other) = (edited(&[40]), edited(&[3, 20]));
        let splits =
            [vec![("x", "too short"), ("a", BASE)], vec![("b", near.as_str()), ("c", BASE), ("d", other.as_str())]];
        let batches: Vec<RecordBatch> = splits
            .iter()
            .map(|rows| {
                let ids: Vec<&str> = rows.iter().map(|r| r.0).collect();
                let texts: Vec<&str> = rows.iter().map(|r| r.1).collect();
                RecordBatch::try_new(
                    schema.clone(),
                    vec![Arc::new(StringArray::from(ids)), Arc::new(LargeStringArray::from(texts))],
                )
                .unwrap()
            })
            .collect();
        for (i, x) in batches.iter().enumerate() {
            let mut o = b.observer(&schema, &ctx, i as u32).unwrap();
            o.observe(x).unwrap();
            o.finish().unwrap();
        }
        b.resolve(&ctx, &[0, 1]).unwrap();
        let mut a = b.applier(&schema, &ctx, 0).unwrap();
        let Processed::Filtered { batch, .. } = a.process(batches[0].clone()).unwrap() else { panic!("a filter") };
        let members = batch.column_by_name("dup_members").unwrap().as_list::<i32>();
        assert!(members.is_null(0));
        let list = members.value(1);
        let list = list.as_struct();
        let ids: Vec<&str> = (0..list.len()).map(|i| list.column(0).as_string::<i32>().value(i)).collect();
        let sims: Vec<f32> =
            (0..list.len()).map(|i| list.column(1).as_primitive::<arrow::datatypes::Float32Type>().value(i)).collect();
        // `a` stays (first); `c` is an exact copy, `b` and `d` near-duplicates.
        assert_eq!(ids.len(), 3, "{ids:?}");
        let sim = |id: &str| sims[ids.iter().position(|x| *x == id).unwrap()];
        assert_eq!(sim("c"), 1.0);
        // The estimates are within 0.15 of the true Jaccard of the shingle sets (112 hashes).
        let signer = Signer::new(&defaults());
        let mut scratch = Scratch::default();
        let mut set = |t: &str| -> std::collections::HashSet<u64> {
            signer.shingles(t, Segmenter::English, &mut scratch).into_iter().collect()
        };
        let base = set(BASE);
        for (id, text) in [("b", near.as_str()), ("d", other.as_str())] {
            let s = set(text);
            let truth = base.intersection(&s).count() as f32 / base.union(&s).count() as f32;
            assert!((sim(id) - truth).abs() < 0.15, "{id}: {} vs {truth}", sim(id));
            assert!(sim(id) < 1.0);
        }
        // The other split's rows are all dropped: no member lists there.
        let mut a = b.applier(&schema, &ctx, 1).unwrap();
        let Processed::Filtered { batch, verdicts } = a.process(batches[1].clone()).unwrap() else {
            panic!("a filter")
        };
        assert!(verdicts.iter().all(Option::is_some));
        assert_eq!(batch.column_by_name("dup_members").unwrap().null_count(), 3);
    }
}
