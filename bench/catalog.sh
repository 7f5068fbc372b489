#!/usr/bin/env bash
# Latency of `smelt catalog log` and `catalog list` with 1,000 versions (goal: < 50 ms each).
#   bash bench/catalog.sh                 # 1 dataset x 1000 versions, and 10 datasets x 100
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q --workspace --bins --examples
bin=$PWD/target/release/smelt
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for shape in "1 1000" "10 100"; do
  set -- $shape
  d=$work/d$1
  target/release/examples/seed_catalog "$d" "$1" "$2" >/dev/null
  python3 - "$bin" "$d" "$1" "$2" <<'PY'
import subprocess, sys, time, statistics
bin, d, n, v = sys.argv[1:5]
def med(args, runs=15):
    ts = []
    for _ in range(runs):
        t = time.perf_counter(); subprocess.run([bin, "--data-dir", d] + args, check=True, capture_output=True); ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1000
print(f"{n} datasets x {v} versions: catalog log ds000 {med(['catalog','log','ds000']):.1f} ms, "
      f"catalog log --format json {med(['catalog','log','ds000','--format','json']):.1f} ms, catalog list {med(['catalog','list']):.1f} ms (median of 15, whole process)")
PY
done
