#!/usr/bin/env bash
# Small inputs, small shards: 20,000 JSON Lines files of 5 documents each (100,000
# generated documents, bench/generated_docs.py) through jsonl -> content_hash -> parquet,
# once with the sink's `merge_small_shards: false` (one shard per split, as before
# compaction existed) and once with the default (small shards merged at commit). Then
# `smelt catalog compact` of the first version. Reports the shards, the digests (all
# three must be equal), the run times, and the time of one SQL query (a count and a sum
# over every row) over each version, median of 5.
#   bash bench/compaction.sh                   (bench/run.sh compaction keeps the output in bench/results/compaction.txt)
#   FILES=2000 SMELT_BIN=target/debug/smelt bash bench/compaction.sh   # smaller, quicker
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FILES=${FILES:-20000}
PER_FILE=${PER_FILE:-5}
if [ -z "${SMELT_BIN:-}" ]; then
    (cd "$ROOT" && cargo build --release --locked -q --bin smelt)
    target=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    SMELT_BIN=$target/release/smelt
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

python3 "$ROOT/bench/generated_docs.py" "$WORK/all.jsonl" $((FILES * PER_FILE))
python3 - "$FILES" "$PER_FILE" <<'PY'
import os, sys
files, per = int(sys.argv[1]), int(sys.argv[2])
lines = open("all.jsonl").read().splitlines(keepends=True)
os.makedirs("in", exist_ok=True)
for f in range(files):
    with open(f"in/{f:05d}.jsonl", "w") as out:
        out.writelines(lines[f * per:(f + 1) * per])
PY
rm all.jsonl
for merge in false true; do
    cat >"p-$merge.yaml" <<YAML
dataset: small-$merge
stages:
  docs:
    type: jsonl
    paths: ["in/*.jsonl"]
  hashed:
    type: content_hash
    inputs: [docs]
  out:
    type: parquet
    inputs: [hashed]
    merge_small_shards: $merge
YAML
    /usr/bin/time -f "%e %M" -o "time-$merge" "$SMELT_BIN" --data-dir data run "p-$merge.yaml" --no-progress --format json >"run-$merge.json" 2>"run-$merge.err"
done
/usr/bin/time -f "%e %M" -o time-compact "$SMELT_BIN" --data-dir data catalog compact small-false@1 --format json >compact.json

python3 - "$SMELT_BIN" "$FILES" "$PER_FILE" <<'PY'
import json, statistics, subprocess, sys, time
binary, files, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def show(ref):
    out = subprocess.run([binary, "--data-dir", "data", "catalog", "show", ref, "--format", "json"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)

def sql(ref):
    q = f'SELECT count(*) AS n, sum(length(text)) AS chars FROM "{ref}"'
    times, out = [], None
    for _ in range(5):
        t = time.perf_counter()
        out = subprocess.run([binary, "--data-dir", "data", "sql", q, "--format", "json"],
                             check=True, capture_output=True, text=True).stdout
        times.append(time.perf_counter() - t)
    return statistics.median(times), out.strip()

def wall(name):
    s, kib = open(f"time-{name}").read().split()
    return float(s), int(kib) // 1024

compact = json.load(open("compact.json"))
rows = [
    ("one shard per split (merge_small_shards: false)", "small-false@1", wall("false")),
    ("merged at commit (the default)", "small-true@1", wall("true")),
    ("smelt catalog compact small-false@1", f"small-false@{compact['version']}", wall("compact")),
]
print(f"input: {files:,} JSON Lines files of {per} documents ({files * per:,} documents)")
print(f"{'version':<50} {'shards':>7} {'rows':>8} {'MiB':>6} {'took s':>7} {'RSS MiB':>8} {'SQL s':>7}")
digests, answers, sql_times = set(), set(), []
for name, ref, (secs, rss) in rows:
    m = show(ref)
    t, answer = sql(ref)
    digests.add(m["digest"])
    answers.add(answer)
    sql_times.append(t)
    print(f"{name:<50} {m['totals']['shards']:>7,} {m['totals']['rows']:>8,} {m['totals']['bytes'] / 2**20:>6.1f} {secs:>7.2f} {rss:>8} {t:>7.3f}")
assert len(digests) == 1, f"digests differ: {digests}"
assert len(answers) == 1, f"the query's answers differ: {answers}"
print(f"digest of all three: {digests.pop()}")
print(f"SQL `SELECT count(*), sum(length(text))`: {sql_times[0] / sql_times[1]:.1f}x faster merged at commit, "
      f"{sql_times[0] / sql_times[2]:.1f}x after catalog compact (goal: at least 10x; at most 10 shards)")
PY
