//! End to end: the quick start committed three times over changing inputs and
//! pipelines; the document diff read from the stored indexes must match the
//! diff computed from the shards themselves.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::array::AsArray;
use common::{example, repo, Env};
use smelt_catalog::commit::load_manifest;
use smelt_catalog::docindex::{split_index_path, DocIndexReader};
use smelt_catalog::{DatasetStore, SplitRecord, VersionManifest};
use smelt_query::docdiff::{diff_version_documents, DocDiff};

const WARC_2020: &str = "CC-MAIN-2020-34-resiliparse-excerpt.warc.gz";
const WARC_2024: &str = "CC-MAIN-2024-22-whirlwind.warc.gz";
const WARC_2025: &str = "CC-MAIN-2025-33-cdx-toolkit.warc.gz";

/// The quick start over a copy of `files` in `<env>/<dir>/`, keeping page titles or not.
fn pipeline(env: &Env, dir: &str, files: &[&str], keep_title: bool) -> PathBuf {
    for f in files {
        let to = env.path().join(dir).join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(repo().join("examples/data/cc").join(f), to).unwrap();
    }
    let mut yaml = std::fs::read_to_string(example("quickstart.yaml"))
        .unwrap()
        .replace("data/cc/*.warc.gz", &format!("{dir}/*.warc.gz"));
    if keep_title {
        assert!(yaml.contains("    min_chars: 1\n"));
        yaml = yaml.replace("    min_chars: 1\n", "    min_chars: 1\n    keep_title: true\n");
    }
    env.write(&format!("{dir}.yaml"), yaml.as_bytes())
}

/// `id -> content hashes` of every row of a version, read from its shards.
fn shard_docs(m: &VersionManifest, root: &Path) -> BTreeMap<String, Vec<[u8; 16]>> {
    let mut docs: BTreeMap<String, Vec<[u8; 16]>> = BTreeMap::new();
    for s in &m.shards {
        let bytes = bytes::Bytes::from(std::fs::read(root.join(&s.path)).unwrap());
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap().build().unwrap();
        for b in reader {
            let b = b.unwrap();
            let ids = b.column_by_name("id").unwrap().as_string::<i32>().clone();
            let hashes = b.column_by_name("content_hash").unwrap().as_fixed_size_binary().clone();
            for i in 0..b.num_rows() {
                docs.entry(ids.value(i).to_string()).or_default().push(hashes.value(i).try_into().unwrap());
            }
        }
    }
    docs
}

/// (added, removed, changed, unchanged) computed from the shards (ids are unique here).
fn expected(a: &BTreeMap<String, Vec<[u8; 16]>>, b: &BTreeMap<String, Vec<[u8; 16]>>) -> (u64, u64, u64, u64) {
    assert!(a.values().chain(b.values()).all(|h| h.len() == 1), "the samples have unique record ids");
    let added = b.keys().filter(|k| !a.contains_key(*k)).count() as u64;
    let removed = a.keys().filter(|k| !b.contains_key(*k)).count() as u64;
    let both: Vec<&String> = a.keys().filter(|k| b.contains_key(*k)).collect();
    let changed = both.iter().filter(|k| a[**k] != b[**k]).count() as u64;
    (added, removed, changed, both.len() as u64 - changed)
}

fn counts(d: &DocDiff) -> (u64, u64, u64, u64) {
    (d.added, d.removed, d.changed, d.unchanged)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_diff_of_quickstart_versions_matches_the_shards() {
    let env = Env::new();
    // v1: 2020 + 2024 samples; v2: 2020 dropped, 2025 added; v3: same inputs, page titles kept.
    let p1 = pipeline(&env, "in1", &[WARC_2020, WARC_2024], false);
    let p2 = pipeline(&env, "in2", &[WARC_2024, WARC_2025], false);
    let p3 = pipeline(&env, "in3", &[WARC_2024, WARC_2025], true);
    for (p, run) in [(&p1, "one"), (&p2, "two"), (&p3, "three")] {
        let out = env.json(&["run", p.to_str().unwrap(), "--run-id", run]);
        assert!(out["rows_written"].as_u64().unwrap() > 0, "{out}");
    }

    let root = env.data().join("datasets").join("quickstart");
    let store = DatasetStore::open(root.to_str().unwrap()).unwrap();
    let mut manifests = Vec::new();
    for v in 1..=3 {
        manifests.push(load_manifest(&store, v).await.unwrap());
    }

    // Every split stored its sorted run and named it in its completion record.
    for (m, run) in manifests.iter().zip(["one", "two", "three"]) {
        let mut split_entries = 0;
        for split in &m.lineage.inputs {
            let rec: SplitRecord =
                store.get_json(&smelt_catalog::split_record_path(run, split.index)).await.unwrap().unwrap();
            let idx = rec.doc_index.expect("split index");
            assert_eq!(idx.path, split_index_path(run, split.index));
            assert_eq!(idx.entries, rec.shards.iter().map(|s| s.rows).sum::<u64>());
            split_entries += idx.entries;
        }
        let vi = m.doc_index.as_ref().expect("version index");
        assert_eq!(vi.path, format!("_versions/{:06}-{run}.idx", m.version));
        assert_eq!((vi.entries, split_entries), (m.totals.rows, m.totals.rows));
        // The version index holds the shards' (id, hash) pairs, sorted.
        let file = std::fs::File::open(root.join(&vi.path)).unwrap();
        let got: Vec<(Vec<u8>, [u8; 16])> = DocIndexReader::new(file).unwrap().collect::<std::io::Result<_>>().unwrap();
        let want: Vec<(Vec<u8>, [u8; 16])> = shard_docs(m, &root)
            .into_iter()
            .flat_map(|(id, hs)| hs.into_iter().map(move |h| (id.as_bytes().to_vec(), h)))
            .collect();
        assert_eq!(got, want);
    }

    let docs: Vec<_> = manifests.iter().map(|m| shard_docs(m, &root)).collect();
    for (a, b) in [(0, 1), (1, 2), (0, 2)] {
        let d = diff_version_documents(&store, &manifests[a], &store, &manifests[b], 5).await.unwrap().unwrap();
        let want = expected(&docs[a], &docs[b]);
        eprintln!("@{} -> @{}: (added, removed, changed, unchanged) = {:?}", a + 1, b + 1, counts(&d));
        assert_eq!(counts(&d), want, "@{} -> @{}", a + 1, b + 1);
        assert_eq!((d.docs_a, d.docs_b), (manifests[a].totals.rows, manifests[b].totals.rows));
        for id in &d.samples.added {
            assert!(docs[b].contains_key(id) && !docs[a].contains_key(id), "{id}");
        }
        for id in &d.samples.removed {
            assert!(docs[a].contains_key(id) && !docs[b].contains_key(id), "{id}");
        }
        for id in &d.samples.changed {
            assert_ne!(docs[a][id], docs[b][id], "{id}");
        }
        assert_eq!(d.samples.added.len() as u64, want.0.min(5));
    }
    // The cases the versions were built for.
    let (a12, a23) = (expected(&docs[0], &docs[1]), expected(&docs[1], &docs[2]));
    assert!(a12.0 > 0 && a12.1 > 0 && a12.2 == 0 && a12.3 > 0, "inputs swapped: {a12:?}");
    assert!(a23.0 == 0 && a23.1 == 0 && a23.2 > 0, "titles kept: {a23:?}");

    // A version committed before document indexes loads, and has no document diff.
    let path = root.join("_versions/000001.json");
    let mut old: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    old.as_object_mut().unwrap().remove("doc_index");
    let old: VersionManifest = serde_json::from_value(old).unwrap();
    assert!(old.doc_index.is_none());
    assert!(diff_version_documents(&store, &old, &store, &manifests[1], 5).await.unwrap().is_none());
}
