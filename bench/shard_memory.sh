#!/usr/bin/env bash
# Peak RSS of `smelt run` with `shard_bytes: 128MiB` (the default) and `shard_bytes: 1GiB` on
# the same input: one JSON Lines file (one split) whose Parquet output is far larger than
# 128 MiB. With shards streamed to the store in parts (docs/adr/0011-streamed-shard-uploads.md)
# the two peaks must stay within 20% of each other; a build that buffers a whole shard before
# storing it holds up to `shard_bytes` more at 1 GiB.
#
#   bench/shard_memory.sh                           # 100,000 documents of 4 KiB, target/debug/smelt
#   SMELT_BIN=target/release/smelt bench/shard_memory.sh
#   BEFORE_BIN=/path/to/older/smelt bench/shard_memory.sh    # the same two runs with an older build too
#   DOCS=20000 bench/shard_memory.sh                # smaller, quicker (output then under 128 MiB: no contrast)
#
# Input: documents of TEXT_BYTES base64 characters of seeded pseudo-random bytes (zstd cannot
# shrink them below ~75%), so 100,000 x 4 KiB = ~420 MB of JSON Lines give ~310 MiB of Parquet.
# Each run: jsonl -> content_hash -> parquet into a local dataset root, --parallelism 1,
# measured with /usr/bin/time -v (maximum resident set size of the smelt process).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DOCS=${DOCS:-100000}
TEXT_BYTES=${TEXT_BYTES:-4096}
SMELT_BIN=${SMELT_BIN:-$ROOT/target/debug/smelt}
BEFORE_BIN=${BEFORE_BIN:-}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

[ -x "$SMELT_BIN" ] || { echo "no $SMELT_BIN: cargo build --workspace --bins (or set SMELT_BIN)" >&2; exit 2; }

mkdir -p "$WORK/in"
python3 - "$WORK/in/docs.jsonl" "$DOCS" "$TEXT_BYTES" <<'PY'
import base64, json, random, sys
path, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(17)
with open(path, "w") as f:
    for i in range(n):
        text = base64.b64encode(rng.randbytes(size * 3 // 4)).decode()
        f.write(json.dumps({"id": f"doc-{i:07d}", "text": text, "source": "generated"}) + "\n")
PY
input_bytes=$(stat -c %s "$WORK/in/docs.jsonl")
echo "input: $DOCS documents of $TEXT_BYTES characters, one split, $((input_bytes / 1048576)) MiB of JSON Lines"

pipeline() { # shard_bytes
  cat <<YAML
dataset: shard-memory
stages:
  docs:
    type: jsonl
    paths: [$WORK/in/docs.jsonl]
  hashed:
    type: content_hash
    inputs: [docs]
  out:
    type: parquet
    inputs: [hashed]
    shard_bytes: $1
YAML
}

measure() { # label binary shard_bytes
  local label=$1 bin=$2 shard=$3 d
  d=$(mktemp -d -p "$WORK")
  pipeline "$shard" >"$d/p.yaml"
  /usr/bin/time -v -o "$d/time" "$bin" --data-dir "$d/data" run "$d/p.yaml" --output "$d/root" \
    --parallelism 1 --format json --no-progress >"$d/out.json" 2>"$d/err" || { cat "$d/err" >&2; exit 1; }
  python3 - "$label" "$shard" "$d" <<'PY'
import json, os, re, sys
label, shard, d = sys.argv[1:4]
t = open(f"{d}/time").read()
kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
wall = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", t).group(1)
s = json.load(open(f"{d}/out.json"))
sizes = []
for dirpath, _, files in os.walk(f"{d}/root"):
    sizes += [os.path.getsize(os.path.join(dirpath, f)) for f in files if f.endswith(".parquet")]
print(f"{label:6} shard_bytes {int(shard) >> 20:>4} MiB: peak RSS {kb / 1024:7.1f} MiB, {s['rows_written']} rows in "
      f"{s['shards_written']} shards (largest {max(sizes) / 1048576:.1f} MiB, {sum(sizes) / 1048576:.1f} MiB in all), "
      f"wall {wall}, digest {s['digest']}")
open(f"{d}/../rss-{label}-{shard}", "w").write(str(kb))
PY
  rm -rf "$d"
}

for label_bin in ${BEFORE_BIN:+"before:$BEFORE_BIN"} "after:$SMELT_BIN"; do
  label=${label_bin%%:*}
  bin=${label_bin#*:}
  echo "$label: $bin"
  for shard in 134217728 1073741824; do
    measure "$label" "$bin" "$shard"
  done
  python3 -c "a,b=$(cat "$WORK/rss-$label-134217728"),$(cat "$WORK/rss-$label-1073741824"); print(f'$label: peak RSS 1GiB/128MiB = {b/a:.3f} ({(b-a)/a*100:+.1f}%)')"
done
