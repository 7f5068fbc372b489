#!/usr/bin/env bash
# Document diff: smelt's merge join of two sorted version indexes against the
# same diff done naively with DataFusion SQL (FULL OUTER JOIN of the shards on
# id, comparing content_hash). Time linear in the corpus, memory flat.
# Input: two versions of N generated documents (B: 5% removed, 2% changed, 5%
# added) as Parquet shards of 100k rows plus one sorted run per shard, as
# `smelt run` writes them; `commit` merges the runs as `smelt commit` does.
# The two diffs run RUNS times, alternating; figures are medians (seconds
# measured inside the process; CPU seconds, user + system, and peak RSS from
# /usr/bin/time). On a shared machine CPU seconds vary less than wall time.
#   bash bench/diff.sh                          # N = 1M and 10M (about 6 GB of scratch at 10M)
#   SIZES=1000000 RUNS=5 bash bench/diff.sh
#   WORK=/big/disk KEEP=1 bash bench/diff.sh    # keep the generated data
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"1000000 10000000"}
RUNS=${RUNS:-3}
cargo build --release --locked -q --workspace --bins --examples
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
bin=$target/release/examples/bench_docdiff
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
[[ -n ${KEEP:-} ]] || trap 'rm -rf "$work"' EXIT
echo "$(date -u +%F) $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
measure() { # phase dir docs tag
  /usr/bin/time -f "%e %M %U %S" -o "$2/$1$4.time" "$bin" "$1" --dir "$2" --docs "$3" > "$2/$1$4.json"
}
for n in $SIZES; do
  dir=$work/n$n
  rm -rf "$dir"
  mkdir -p "$dir"
  measure gen "$dir" "$n" ""
  measure commit "$dir" "$n" ""
  for r in $(seq 1 "$RUNS"); do
    measure smelt "$dir" "$n" "-$r"
    measure datafusion "$dir" "$n" "-$r"
  done
  python3 - "$dir" "$n" "$RUNS" <<'PY'
import json, statistics, sys
d, n, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def load(p):
    return json.load(open(f"{d}/{p}.json")), open(f"{d}/{p}.time").read().split()
gen, _ = load("gen")
commit, ct = load("commit")
exp = gen["expected"]
keys = ["added", "removed", "changed", "unchanged"]
res = {}
for p in ["smelt", "datafusion"]:
    rs = [load(f"{p}-{r}") for r in range(1, runs + 1)]
    for j, _ in rs:
        if {k: j[k] for k in keys} != {k: exp[k] for k in keys}:
            sys.exit(f"{p} counts {j} differ from the generated {exp}")
    res[p] = (statistics.median(j["seconds"] for j, _ in rs), max(int(t[1]) for _, t in rs) / 1024, rs[0][0],
              statistics.median(float(t[2]) + float(t[3]) for _, t in rs))
print(f"N={n:,}: added {exp['added']:,} removed {exp['removed']:,} changed {exp['changed']:,} unchanged {exp['unchanged']:,}")
print(f"  commit merge (both versions)  {commit['seconds']:7.3f} s  peak RSS {int(ct[1]) / 1024:6.0f} MiB")
s, df = res["smelt"], res["datafusion"]
print(f"  smelt index diff              {s[0]:7.3f} s  peak RSS {s[1]:6.0f} MiB  CPU {s[3]:6.2f} s  (indexes {s[2]['index_bytes'] / 2**20:.0f} MiB)")
print(f"  DataFusion SQL join           {df[0]:7.3f} s  peak RSS {df[1]:6.0f} MiB  CPU {df[3]:6.2f} s  ({df[2]['partitions']} partitions)")
print(f"  DataFusion / smelt            {df[0] / s[0]:7.1f}x wall, {df[3] / s[3]:.1f}x CPU   (medians of {runs})")
PY
  du -sh "$dir/a/runs" "$dir/a/_versions" | sed 's/^/  /'
  echo "  load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
done
