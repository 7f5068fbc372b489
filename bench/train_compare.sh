#!/usr/bin/env bash
# `smelt train compare` on two 10M-document versions: the two runs' loss curves
# (20,000 steps each, imported as JSON Lines), where they part, and the catalog
# diff of the versions they read (documents from the sorted version indexes,
# lineage, mixture, funnel), as one report. Goal (issue 21): under 2 s.
# Input: bench_docdiff's two generated versions (query/examples/bench_docdiff.rs:
# B drops 5%, changes 2%, adds 5%), committed as `smelt commit` does, published
# as bench-a@1 and bench-b@1 and recorded by `smelt catalog rebuild`.
# Figures: medians of RUNS runs, wall seconds and peak RSS from /usr/bin/time,
# with `smelt catalog diff` of the same versions for reference.
#   bash bench/train_compare.sh                  # N = 10M (about 6 GB of scratch)
#   SIZES=1000000 RUNS=5 bash bench/train_compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-10000000}
RUNS=${RUNS:-3}
cargo build --release --locked -q --workspace --bins --examples
gen=$PWD/target/release/examples/bench_docdiff
smelt=$PWD/target/release/smelt
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
[[ -n ${KEEP:-} ]] || trap 'rm -rf "$work"' EXIT
echo "$(date -u +%F) $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for n in $SIZES; do
  dir=$work/n$n
  rm -rf "$dir"
  mkdir -p "$dir"
  "$gen" gen --dir "$dir" --docs "$n" >/dev/null
  "$gen" commit --dir "$dir" --docs "$n" >/dev/null
  "$gen" publish --dir "$dir" --docs "$n" >/dev/null
  dd=$dir/data
  "$smelt" --data-dir "$dd" catalog rebuild "$dir/a" "$dir/b" >/dev/null
  python3 - "$dir" <<'PY'
import json, math, sys
d = sys.argv[1]
for run, jump in (("a", None), ("b", 12000)):
    with open(f"{d}/metrics-{run}.jsonl", "w") as f:
        for s in range(20000):
            loss = 2.0 + 8.0 / math.sqrt(s + 1) + 0.05 * math.sin(s * 12.9898) + (0.3 if jump and s >= jump else 0.0)
            f.write(json.dumps({"step": s, "tokens": (s + 1) * 16 * 1024, "loss": loss}) + "\n")
PY
  "$smelt" --data-dir "$dd" train import run-a --dataset bench-a@1 --jsonl "$dir/metrics-a.jsonl" >/dev/null
  "$smelt" --data-dir "$dd" train import run-b --dataset bench-b@1 --jsonl "$dir/metrics-b.jsonl" >/dev/null
  for r in $(seq 1 "$RUNS"); do
    /usr/bin/time -f "%e %M" -o "$dir/compare-$r.time" "$smelt" --data-dir "$dd" train compare run-a run-b --format json > "$dir/compare-$r.json"
    /usr/bin/time -f "%e %M" -o "$dir/diff-$r.time" "$smelt" --data-dir "$dd" catalog diff bench-a@1 bench-b@1 --format json > "$dir/diff-$r.json"
  done
  python3 - "$dir" "$n" "$RUNS" <<'PY'
import json, statistics, sys
d, n, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def t(p):
    return [open(f"{d}/{p}-{r}.time").read().split() for r in range(1, runs + 1)]
c = json.load(open(f"{d}/compare-1.json"))
docs = c["diff"]["documents"]
exp = json.load(open(f"{d}/expected.json"))
for k in ("added", "removed", "changed", "unchanged"):
    if docs[k] != exp[k]:
        sys.exit(f"compare's diff says {k} {docs[k]}, generated {exp[k]}")
if c["divergence"] is None or abs(c["divergence"]["step"] - 12000) > 50:
    sys.exit(f"compare should part at step 12000: {c['divergence']}")
ct, dt = t("compare"), t("diff")
print(f"N={n:,} documents per version, 20,000 logged steps per run")
print(f"  train compare (curves + divergence + catalog diff)  {statistics.median(float(x[0]) for x in ct):6.2f} s  peak RSS {max(int(x[1]) for x in ct) / 1024:5.0f} MiB"
      f"  (parted at step {c['divergence']['step']:.0f}; documents +{docs['added']:,} -{docs['removed']:,} ~{docs['changed']:,})")
print(f"  catalog diff alone                                  {statistics.median(float(x[0]) for x in dt):6.2f} s  peak RSS {max(int(x[1]) for x in dt) / 1024:5.0f} MiB")
print(f"  (medians of {runs} runs, whole process wall time)")
PY
done
