use std::cmp::Ordering;
use std::io;
use std::path::PathBuf;

use super::*;

/// A cursor over records in memory: (key, payload).
struct VecCursor {
    recs: Vec<(u32, u32)>,
    at: Option<usize>,
}

impl VecCursor {
    fn new(recs: Vec<(u32, u32)>) -> Self {
        VecCursor { recs, at: None }
    }

    fn cur(&self) -> (u32, u32) {
        self.recs[self.at.expect("advanced")]
    }
}

impl SortedCursor for VecCursor {
    fn advance(&mut self) -> io::Result<bool> {
        let next = self.at.map_or(0, |i| i + 1);
        self.at = Some(next);
        Ok(next < self.recs.len())
    }
}

/// Drains a merge into (record, cursor index).
fn drain<O: Order<VecCursor>>(mut m: Merge<VecCursor, O>) -> Vec<((u32, u32), usize)> {
    let mut out = Vec::new();
    while let Some(i) = m.peek_index() {
        out.push((m.cursor(i).cur(), i));
        m.pop().unwrap();
    }
    out
}

/// A deterministic pseudo-random sequence.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn write_runs(dir: &std::path::Path, runs: &[Vec<[u8; 8]>]) -> Vec<PathBuf> {
    runs.iter()
        .enumerate()
        .map(|(i, recs)| {
            let mut recs = recs.clone();
            recs.sort_unstable();
            let p = dir.join(format!("in-{i}"));
            std::fs::write(&p, recs.concat()).unwrap();
            p
        })
        .collect()
}

#[test]
fn merge_orders_ties_by_cursor_index() {
    // Keys only are compared: equal keys come out in their cursors' order.
    let cursors = vec![
        VecCursor::new(vec![(1, 10), (3, 11), (3, 12)]),
        VecCursor::new(vec![(0, 20), (3, 21)]),
        VecCursor::new(vec![]),
        VecCursor::new(vec![(1, 40), (3, 41), (9, 42)]),
    ];
    let m = Merge::new(cursors, |a: &VecCursor, b: &VecCursor| a.cur().0.cmp(&b.cur().0)).unwrap();
    let got = drain(m);
    let want = vec![
        ((0, 20), 1),
        ((1, 10), 0),
        ((1, 40), 3),
        ((3, 11), 0),
        ((3, 12), 0),
        ((3, 21), 1),
        ((3, 41), 3),
        ((9, 42), 3),
    ];
    assert_eq!(got, want);
}

#[test]
fn merge_of_many_cursors_equals_a_stable_sort() {
    for k in [1usize, 2, 3, 5, 8, 13, 64, 65] {
        let mut all = Vec::new();
        let cursors: Vec<VecCursor> = (0..k)
            .map(|c| {
                let n = (mix(c as u64) % 50) as usize;
                let mut recs: Vec<(u32, u32)> =
                    (0..n).map(|j| ((mix((c * 1000 + j) as u64) % 20) as u32, j as u32)).collect();
                recs.sort_unstable();
                all.extend(recs.iter().map(|&r| (r, c)));
                VecCursor::new(recs)
            })
            .collect();
        // By key, then cursor, then position in the cursor (a stable sort of the concatenation).
        all.sort_by(|a, b| a.0 .0.cmp(&b.0 .0).then(a.1.cmp(&b.1)).then(a.0 .1.cmp(&b.0 .1)));
        let m = Merge::new(cursors, |a: &VecCursor, b: &VecCursor| a.cur().0.cmp(&b.cur().0)).unwrap();
        assert_eq!(drain(m), all, "k = {k}");
    }
}

#[test]
fn empty_inputs_give_nothing() {
    let m = Merge::new(Vec::<VecCursor>::new(), |_: &VecCursor, _: &VecCursor| Ordering::Equal).unwrap();
    assert!(m.peek().is_none());
    let m = Merge::new(vec![VecCursor::new(vec![]), VecCursor::new(vec![])], |a: &VecCursor, b: &VecCursor| {
        a.cur().cmp(&b.cur())
    })
    .unwrap();
    assert!(drain(m).is_empty());

    let dir = ScratchDir::new("smelt-sort-test").unwrap();
    let mut got = Vec::new();
    merge_files(&Records { width: 8 }, &[], dir.path(), 4, |r: &[u8]| {
        got.push(r.to_vec());
        Ok::<(), io::Error>(())
    })
    .unwrap();
    let empty = write_runs(dir.path(), &[vec![], vec![], vec![]]);
    merge_files(&Records { width: 8 }, &empty, dir.path(), 2, |r: &[u8]| {
        got.push(r.to_vec());
        Ok::<(), io::Error>(())
    })
    .unwrap();
    assert!(got.is_empty());

    let sort = ExternalSort::new(FixedRecords::<8>::new(), Records { width: 8 }, 64, dir.path().into(), "t");
    sort.finish(|_: &[u8]| -> io::Result<()> { panic!("no records") }).unwrap();
}

#[test]
fn fan_in_passes_merge_more_runs_than_the_fan_in() {
    let dir = ScratchDir::new("smelt-sort-test").unwrap();
    // 150 runs of up to 30 records, with values repeated across runs.
    let runs: Vec<Vec<[u8; 8]>> =
        (0..150u64).map(|r| (0..mix(r) % 31).map(|j| (mix(r * 31 + j) % 500).to_be_bytes()).collect()).collect();
    let paths = write_runs(dir.path(), &runs);
    let mut want: Vec<[u8; 8]> = runs.concat();
    want.sort_unstable();
    for fan_in in [2, 3, 7, 64, 1000] {
        let mut got: Vec<[u8; 8]> = Vec::new();
        merge_files(&Records { width: 8 }, &paths, dir.path(), fan_in, |r: &[u8]| {
            got.push(r.try_into().unwrap());
            Ok::<(), io::Error>(())
        })
        .unwrap();
        assert_eq!(got, want, "fan-in {fan_in}");
        // Intermediate files are removed; the inputs are kept.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 150, "fan-in {fan_in}");
    }
}

#[test]
fn a_sort_spills_past_its_budget_and_merges_in_passes() {
    let base = ScratchDir::new("smelt-sort-test").unwrap();
    let recs: Vec<[u8; 8]> = (0..20_000u64).map(|i| (mix(i) % 5000).to_be_bytes()).collect();
    for (budget, fan_in) in [(8 * 100, 4), (8 * 1000, 64), (usize::MAX, 64)] {
        let mut sort =
            ExternalSort::new(FixedRecords::<8>::new(), Records { width: 8 }, budget, base.path().into(), "t")
                .with_fan_in(fan_in);
        for r in &recs {
            sort.push(*r).unwrap();
        }
        let want_runs = if budget == usize::MAX { 0 } else { recs.len() * 8 / budget };
        assert_eq!(sort.runs(), want_runs, "budget {budget}");
        let scratch = sort.scratch().map(std::path::Path::to_path_buf);
        assert_eq!(scratch.is_some(), want_runs > 0);
        let mut got: Vec<[u8; 8]> = Vec::new();
        sort.finish(|r: &[u8]| {
            got.push(r.try_into().unwrap());
            Ok::<(), io::Error>(())
        })
        .unwrap();
        let mut want = recs.clone();
        want.sort_unstable();
        assert_eq!(got, want, "budget {budget}");
        assert!(scratch.is_none_or(|s| !s.exists()), "runs are removed after finish");
        assert_eq!(std::fs::read_dir(base.path()).unwrap().count(), 0);
    }
}

#[test]
fn spill_files_are_removed_on_drop() {
    let base = ScratchDir::new("smelt-sort-test").unwrap();
    let mut sort = ExternalSort::new(FixedRecords::<4>::new(), Records { width: 4 }, 40, base.path().into(), "t");
    for i in 0..100u32 {
        sort.push(i.to_be_bytes()).unwrap();
    }
    let scratch = sort.scratch().unwrap().to_path_buf();
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 10);
    drop(sort);
    assert!(!scratch.exists());
    assert_eq!(std::fs::read_dir(base.path()).unwrap().count(), 0);
}

#[test]
fn sink_errors_and_cut_files_are_reported() {
    let dir = ScratchDir::new("smelt-sort-test").unwrap();
    let p = dir.path().join("cut");
    std::fs::write(&p, [0u8; 13]).unwrap();
    let Err(e) = RecordFile::open(p.clone(), 8) else { panic!("a cut file opens") };
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    assert!(e.to_string().starts_with(&format!("{}: truncated", p.display())), "{e}");
    let missing = dir.path().join("missing");
    let Err(e) = RecordFile::open(missing.clone(), 8) else { panic!("a missing file opens") };
    assert!(e.to_string().starts_with(&missing.display().to_string()), "{e}");

    let paths = write_runs(dir.path(), &[vec![[1; 8], [2; 8]], vec![[3; 8]]]);
    let mut seen = 0;
    let err = merge_files(&Records { width: 8 }, &paths, dir.path(), 2, |_: &[u8]| {
        seen += 1;
        if seen == 2 {
            Err(SinkError::Stop)
        } else {
            Ok(())
        }
    });
    assert_eq!(err, Err(SinkError::Stop));
}

#[derive(Debug, PartialEq)]
enum SinkError {
    Io,
    Stop,
}

impl From<io::Error> for SinkError {
    fn from(_: io::Error) -> Self {
        SinkError::Io
    }
}
