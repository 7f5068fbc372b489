#!/usr/bin/env bash
# WARC reading, one core: smelt's reader vs fastwarc on the same Common Crawl-style input.
#
#   bench/warc_read.sh                    # the 4 DEBDOCS-SYNTH shards built by the peer harness
#   RUNS=7 bench/warc_read.sh FILE.gz...  # any gzip WARC files
#   BENCH_WARC_BIN=path/to/bench_warc bench/warc_read.sh   # skip the cargo build
#
# Both sides do the same work: every record read, every application/http block (requests and
# responses) parsed as HTTP, every record's payload (HTTP body, or the block) read: fastwarc
# through the peer harness's bench_parse.parse_fastwarc (ArchiveIterator(parse_http=True) +
# rec.reader.read()), smelt through connectors/examples/bench_warc.rs. The script checks that
# both count the same records, responses and payload bytes and fails if they differ. Runs alternate (smelt, fastwarc, smelt, ...),
# each after the harness's wait for an idle machine, so both see the same load. Figures are
# uncompressed WARC MB/s (10^6 bytes) from the median wall time of RUNS runs; smelt's wall time
# is measured inside the process (no process start-up).
# Needs the peer harness (../shared/peers): its venv and data in $PEERS (see bench/README.md).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEERS=${PEERS:-$HOME/.cache/smelt-peers}
RUNS=${RUNS:-5}

if [ ! -x "$PEERS/venv/bin/python" ] || [ ! -f "$PEERS/bench_parse.py" ]; then
    echo "no peer harness in $PEERS: run 'bash ../shared/peers/setup.sh' (about 20 min) or see bench/README.md" >&2
    exit 2
fi
if [ "$#" -gt 0 ]; then
    FILES=("$@")
else
    FILES=("$PEERS"/data/warc/*.warc.gz)
fi
ABS=()
for f in "${FILES[@]}"; do
    [ -f "$f" ] || { echo "no input file $f (build it with the peer harness's build_warc.py)" >&2; exit 2; }
    ABS+=("$(cd "$(dirname "$f")" && pwd)/$(basename "$f")")
done

cd "$ROOT"
if [ -n "${BENCH_WARC_BIN:-}" ]; then
    BIN=$BENCH_WARC_BIN   # a bench_warc built elsewhere (e.g. while the workspace does not build)
else
    cargo build --release --locked -q --workspace --bins --examples
    TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    BIN=$TARGET/release/examples/bench_warc
fi

echo "input: ${#ABS[@]} files, $(du -cb "${ABS[@]}" | tail -1 | cut -f1) compressed bytes; $RUNS runs each;" \
     "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)); load $(cut -d' ' -f1-3 /proc/loadavg)"

cd "$PEERS"
PEERS_MAX_IDLE_WAIT=${PEERS_MAX_IDLE_WAIT:-10} venv/bin/python - "$BIN" "$RUNS" "${ABS[@]}" <<'EOF'
import json, os, statistics, subprocess, sys, time
sys.path.insert(0, os.getcwd())
import bench_parse, common

bin_, runs, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]

def smelt_once():
    out = subprocess.run([bin_, "--json", "--runs", "1", *files], check=True, capture_output=True, text=True).stdout
    r = json.loads(out)
    r["wall_s"] = r["median_wall_s"]
    return r

def fastwarc_once():
    return bench_parse.run_once(bench_parse.parse_fastwarc, files, 1)

os.makedirs(common.RESULTS, exist_ok=True)
for f in files:                      # warm the page cache for both
    with open(f, "rb") as fh:
        while fh.read(1 << 24):
            pass
rows = {"smelt": [], "fastwarc": []}
last = {}
for _ in range(runs):
    for name, fn in (("smelt", smelt_once), ("fastwarc", fastwarc_once)):
        _, walls, r = common.median_runs(fn, 1)   # waits for an idle machine first
        rows[name].append((walls[0], r["foreign_cpu_frac"][0]))
        last[name] = r
s, f = last["smelt"], last["fastwarc"]
raw = s["uncompressed_bytes"]
same = (s["records"], s["responses"], s["body_bytes"]) == (f["records"], f["responses"], f["payload_bytes"])
print(f"same work: records {s['records']} / {f['records']}, responses {s['responses']} / {f['responses']}, "
      f"payload bytes {s['body_bytes']} / {f['payload_bytes']} (smelt / fastwarc): {'equal' if same else 'DIFFERENT'}")
if not same:
    sys.exit("the two readers did not do the same work on this input")
print(f"{'reader':9s} {'records':>8s} {'responses':>9s} {'median_s':>8s} {'MB/s':>7s} {'records/s':>9s}  runs (s) / other load")
med = {}
for name in ("smelt", "fastwarc"):
    walls = [w for w, _ in rows[name]]
    med[name] = statistics.median(walls)
    r = last[name]
    print(f"{name:9s} {r['records']:8d} {r['responses']:9d} {med[name]:8.3f} {raw / 1e6 / med[name]:7.1f} "
          f"{r['records'] / med[name]:9.0f}  {[round(w, 3) for w in walls]} / {[x for _, x in rows[name]]}")
print(f"ratio smelt/fastwarc: {med['fastwarc'] / med['smelt']:.2f}x  (uncompressed {raw / 1e6:.1f} MB, "
      f"compressed {s['compressed_bytes'] / 1e6:.1f} MB; smelt errors {s['errors']})")
json.dump({"ts": time.strftime("%Y-%m-%dT%H:%M:%S"), "files": files, "uncompressed_bytes": raw,
           "smelt": rows["smelt"], "fastwarc": rows["fastwarc"],
           "smelt_MB_per_s": raw / 1e6 / med["smelt"], "fastwarc_MB_per_s": raw / 1e6 / med["fastwarc"]},
          open(os.path.join(common.RESULTS, "smelt_warc_read.json"), "w"), indent=1)
EOF
