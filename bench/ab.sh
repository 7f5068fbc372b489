#!/usr/bin/env bash
# Two builds of smelt on one machine, in alternating runs: the fastText reader
# alone (`langid_predict`, the three models of bench/classify.sh) and the
# `decontaminate` stage's busy time (bench/decontaminate.sh's pipeline). On a
# shared machine whose speed drifts by 1.5x within minutes, a change's effect
# shows only in runs of both builds taken in turns; this prints, per build,
# every pass's time and the minimum (the run least disturbed by others).
#
#   bench/ab.sh OLD_TARGET NEW_TARGET      # each a cargo target dir holding release/smelt
#                                          # and release/examples/langid_predict
#   ROUNDS=6 bench/ab.sh ...
#
# Inputs: run bench/classify.sh and bench/decontaminate.sh once first (their
# work dirs target/classify-bench and target/decontaminate-bench hold the
# corpus, the trained dense model and the pipeline). A build of an older
# revision, with its dependencies shared:
#   git worktree add /tmp/old REV && (cd /tmp/old && CARGO_TARGET_DIR=/tmp/old-target \
#     cargo build --release --locked --bin smelt --example langid_predict)
set -euo pipefail
cd "$(dirname "$0")/.."
old=${1:?usage: bench/ab.sh OLD_TARGET NEW_TARGET}
new=${2:?usage: bench/ab.sh OLD_TARGET NEW_TARGET}
rounds=${ROUNDS:-6}
cb=target/classify-bench
dc=$(pwd)/target/decontaminate-bench
for f in "$cb/corpus.jsonl" "$cb/quality_d100.bin" "$dc/dc.yaml"; do
  [ -e "$f" ] || { echo "missing $f: run bench/classify.sh and bench/decontaminate.sh first" >&2; exit 1; }
done
echo "$(date -u +%F) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg); $rounds rounds, builds in turns, one core (taskset -c 0)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

report() { # label file...
  local label=$1
  shift
  for f in "$@"; do
    printf '%-44s %-4s min %s s; all: %s\n' "$label" "$(basename "$f" .t)" "$(sort -n "$f" | head -1)" "$(sort -n "$f" | tr '\n' ' ')"
  done
}

# in_turns LABEL CMD: runs `CMD DIR` (which prints seconds) for the old and the new build in turns, then reports.
in_turns() {
  local label=$1 cmd=$2
  : >"$tmp/old.t"
  : >"$tmp/new.t"
  for _ in $(seq "$rounds"); do
    "$cmd" "$old" >>"$tmp/old.t"
    "$cmd" "$new" >>"$tmp/new.t"
  done
  report "$label" "$tmp/old.t" "$tmp/new.t"
}

reader() { # DIR: seconds of one pass of the fastText reader over the corpus with $model (median of 3)
  RUNS=3 taskset -c 0 "$1/release/examples/langid_predict" "$cb/corpus.jsonl" "$model" 2>&1 >/dev/null |
    sed -E 's/.*median ([0-9.]+) s wall.*/\1/'
}

stage() { # DIR: busy seconds of the decontaminate stage in one run
  rm -rf "$tmp/data"
  (cd "$dc" && taskset -c 0 "$1/release/smelt" --data-dir "$tmp/data" run dc.yaml --parallelism 1 --format json --no-progress) |
    python3 -c "import json, sys; print([s['busy_ms'] / 1000 for s in json.load(sys.stdin)['stages'] if s['stage'] == 'clean'][0])"
}

for model in stages/tests/fixtures/classify/topics_bigram.bin examples/models/quality.ftz "$cb/quality_d100.bin"; do
  in_turns "fastText reader, $(basename "$model"), s/pass" reader
done
in_turns "decontaminate stage busy, 33.2 MB, s" stage
