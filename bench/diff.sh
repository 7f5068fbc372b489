#!/usr/bin/env bash
# Document diff: smelt's merge join of two sorted version indexes against the
# same diff done naively with DataFusion SQL (FULL OUTER JOIN of the shards on
# id, comparing content_hash). Time linear in the corpus, memory flat.
# Input: two versions of N generated documents (B: 5% removed, 2% changed, 5%
# added) as Parquet shards of 100k rows plus one sorted run per shard, as
# `smelt run` writes them; `commit` merges the runs as `smelt commit` does.
#   bash bench/diff.sh                          # N = 1M and 10M (about 7 GB of scratch at 10M)
#   SIZES=1000000 bash bench/diff.sh
#   WORK=/big/disk KEEP=1 bash bench/diff.sh    # keep the generated data
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"1000000 10000000"}
cargo build --release -q -p smelt-catalog --example bench_docdiff
bin=$PWD/target/release/examples/bench_docdiff
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
[[ -n ${KEEP:-} ]] || trap 'rm -rf "$work"' EXIT
echo "$(date -u +%F) $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for n in $SIZES; do
  dir=$work/n$n
  rm -rf "$dir"
  mkdir -p "$dir"
  for phase in gen commit smelt datafusion; do
    sync
    /usr/bin/time -f "%e %M" -o "$dir/$phase.time" "$bin" "$phase" --dir "$dir" --docs "$n" > "$dir/$phase.json"
  done
  python3 - "$dir" "$n" <<'PY'
import json, sys
d, n = sys.argv[1], int(sys.argv[2])
r = {p: json.load(open(f"{d}/{p}.json")) for p in ["gen", "commit", "smelt", "datafusion"]}
t = {p: open(f"{d}/{p}.time").read().split() for p in r}
exp = r["gen"]["expected"]
keys = ["added", "removed", "changed", "unchanged"]
for p in ["smelt", "datafusion"]:
    got = {k: r[p][k] for k in keys}
    if got != {k: exp[k] for k in keys}:
        sys.exit(f"{p} counts {got} differ from the generated {exp}")
mib = lambda p: int(t[p][1]) / 1024
print(f"N={n:>10,}: added {exp['added']:,} removed {exp['removed']:,} changed {exp['changed']:,} unchanged {exp['unchanged']:,}")
print(f"  commit merge (2 versions)  {r['commit']['seconds']:7.2f} s  peak RSS {mib('commit'):7.0f} MiB")
print(f"  smelt index diff           {r['smelt']['seconds']:7.2f} s  peak RSS {mib('smelt'):7.0f} MiB  (process {float(t['smelt'][0]):.2f} s, indexes {r['smelt']['index_bytes'] / 2**20:.0f} MiB)")
print(f"  DataFusion SQL join        {r['datafusion']['seconds']:7.2f} s  peak RSS {mib('datafusion'):7.0f} MiB  (process {float(t['datafusion'][0]):.2f} s, {r['datafusion']['partitions']} partitions)")
print(f"  DataFusion / smelt         {r['datafusion']['seconds'] / r['smelt']['seconds']:7.1f}x")
PY
  du -sh "$dir/a/runs" "$dir/a/_versions" | sed 's/^/  /'
done
