#!/usr/bin/env bash
# Peak RSS of the quick-start pipeline at 1x and 10x input (memory must stay flat).
# Input: the bundled Common Crawl samples copied N and 10*N times (one split per copy).
#   bash bench/memory.sh            # N=40: 1x = 120 files (~6.4 MB), 10x = 1,200 files (~64 MB)
# (At N=20 the 1x run, 0.2 s, ends before the run has started all its buffers and threads, so its
# peak is below the steady state every larger input plateaus at.)
#   N=50 PARALLELISM=2 bash bench/memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-40}
PARALLELISM=${PARALLELISM:-2}
cargo build --release --locked -q --workspace --bins --examples
bin=$PWD/target/release/smelt
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
declare -A rss
for scale in 1 10; do
  dir=$work/x$scale
  mkdir -p "$dir/in"
  for i in $(seq 1 $((N * scale))); do
    for f in examples/data/cc/*.warc.gz; do
      [[ $f == *.wet.gz ]] && continue
      cp "$f" "$dir/in/$(printf %05d "$i")-$(basename "$f")"
    done
  done
  sed 's#data/cc/\*.warc.gz#in/*.warc.gz#' examples/quickstart.yaml > "$dir/p.yaml"
  bytes=$(du -sb "$dir/in" | cut -f1)
  out=$(python3 - "$bin" "$dir" "$PARALLELISM" <<'PY'
import resource, subprocess, sys, time, json
bin, d, par = sys.argv[1:4]
t = time.time()
r = subprocess.run([bin, "--data-dir", d + "/data", "run", d + "/p.yaml", "--parallelism", par, "--format", "json", "--no-progress"],
                   capture_output=True, text=True)
if r.returncode != 0:
    sys.exit(r.stderr)
s = json.loads(r.stdout)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, s["rows_written"], round(time.time() - t, 2))
PY
)
  read -r kb rows secs <<<"$out"
  rss[$scale]=$kb
  echo "x$scale: $((bytes / 1024)) KiB input, $rows rows, peak RSS $((kb / 1024)) MiB, ${secs}s"
done
python3 -c "a,b=${rss[1]},${rss[10]}; print(f'peak RSS 10x/1x = {b/a:.3f} ({(b-a)/a*100:+.1f}%)')"
