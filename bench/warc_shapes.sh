#!/usr/bin/env bash
# WARC input shapes and corruption, one core, smelt's reader (connectors/examples/bench_warc.rs):
#   1. gzip per record (one DEBDOCS-SYNTH shard, as built)
#   2. one gzip member for all 4 shards (`zcat | gzip -1`): streamed through flate2
#   3. uncompressed (the 4 shards, zcat'd)
#   4. shape 2 with one byte flipped in the middle of the member (no inflate error, only a CRC
#      mismatch at the end, and garbled records where the flipped byte lands)
#   5. shape 2 cut at 60 MB (truncated member)
# For each: records, responses, errors by kind, uncompressed MB/s (median of RUNS) and peak RSS
# (GNU time). fastwarc reads shapes 1-3 in the same run for the ratio (the peer harness's
# bench_parse.parse_fastwarc); on 4 and 5 it prints what fastwarc does with the same bytes.
#   bench/warc_shapes.sh            # needs the peer harness's 4 shards in $PEERS/data/warc
#   RUNS=3 bench/warc_shapes.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEERS=${PEERS:-$HOME/.cache/smelt-peers}
RUNS=${RUNS:-3}
SHARDS=("$PEERS"/data/warc/DEBDOCS-SYNTH-0000[0-3].warc.gz)
[ -f "${SHARDS[0]}" ] || { echo "no $PEERS/data/warc shards: run bash ../shared/peers/setup.sh" >&2; exit 2; }
cd "$ROOT"
cargo build --release --locked -q --workspace --bins --examples
BIN=$ROOT/target/release/examples/bench_warc
work=${WORK:-$(mktemp -d)}
trap '[ -n "${WORK:-}" ] || rm -rf "$work"' EXIT

cp "${SHARDS[0]}" "$work/per-record.warc.gz"
zcat "${SHARDS[@]}" > "$work/uncompressed.warc"
gzip -1 -c "$work/uncompressed.warc" > "$work/one-member.warc.gz"
size=$(stat -c %s "$work/one-member.warc.gz")
cp "$work/one-member.warc.gz" "$work/flipped.warc.gz"
# Flip one byte (XOR 0x01) in the middle of the deflate stream.
python3 - "$work/flipped.warc.gz" "$((size / 2))" <<'PY'
import sys
path, at = sys.argv[1], int(sys.argv[2])
with open(path, "r+b") as f:
    f.seek(at); b = f.read(1); f.seek(at); f.write(bytes([b[0] ^ 1]))
PY
head -c 60000000 "$work/one-member.warc.gz" > "$work/cut-60MB.warc.gz"

echo "input: ${#SHARDS[@]} DEBDOCS-SYNTH shards; one member $((size / 1000000)) MB; uncompressed $(( $(stat -c %s "$work/uncompressed.warc") / 1000000 )) MB; $RUNS runs; load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-13s %9s %9s %8s %9s %9s %9s  %s\n' shape records responses MB/s RSS_MB fastwarc ratio errors
for shape in per-record one-member uncompressed flipped cut-60MB; do
  [ "$shape" = uncompressed ] && f=$work/uncompressed.warc || f=$work/$shape.warc.gz
  /usr/bin/time -f '%M' -o "$work/rss" "$BIN" --json --runs "$RUNS" "$f" > "$work/smelt.json"
  "$PEERS/venv/bin/python" - "$work/smelt.json" "$(cat "$work/rss")" "$f" "$shape" "$RUNS" <<'PY'
import json, os, statistics, sys, time
sys.path.insert(0, os.path.expanduser(os.environ.get("PEERS", "~/.cache/smelt-peers")))
import bench_parse
s = json.load(open(sys.argv[1])); rss_kb = int(sys.argv[2]); path, shape, runs = sys.argv[3], sys.argv[4], int(sys.argv[5])
walls, fw = [], None
for _ in range(runs):
    t = time.perf_counter()
    try:
        fw = bench_parse.parse_fastwarc(path)
    except Exception as e:          # what fastwarc does with a broken file
        fw = f"{type(e).__name__}: {e}"
    walls.append(time.perf_counter() - t)
raw = s["uncompressed_bytes"]
fw_mb = raw / 1e6 / statistics.median(walls)
if isinstance(fw, tuple):
    fw_txt = f"{fw_mb:9.1f}"; ratio = f"{s['uncompressed_MB_per_s'] / fw_mb:8.2f}x"
    if shape in ("per-record", "one-member", "uncompressed") and fw[:2] != (s["records"], s["responses"]):
        sys.exit(f"{shape}: record counts differ: smelt {s['records']}/{s['responses']}, fastwarc {fw[0]}/{fw[1]}")
    extra = f"; fastwarc {fw[0]} records, {fw[1]} responses"
else:
    fw_txt, ratio, extra = "-", "-", f"; fastwarc: {fw}"
print(f"{shape:13s} {s['records']:9d} {s['responses']:9d} {s['uncompressed_MB_per_s']:8.1f} {rss_kb / 1024:9.1f} {fw_txt} {ratio}  "
      f"{s['errors'] or 'none'}{extra}")
PY
done
