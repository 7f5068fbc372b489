#!/usr/bin/env bash
# Ingest over HTTP vs from local disk, same files, same pipeline (docs: bench/README.md).
#
#   bench/net_ingest.sh                   # the peer harness's 4 DEBDOCS-SYNTH shards (111.7 MB)
#   RUNS=5 bench/net_ingest.sh FILE.gz... # any gzip WARC files
#
# 1. Throughput: `smelt run` of warc -> html_to_text -> content_hash -> parquet, --parallelism 2,
#    reading the files from disk (`warc` source) and from bench/net_server.py on 127.0.0.1
#    (`commoncrawl` source, 2 connections per host). Runs alternate disk / HTTP; the figure is
#    the median wall time of each and their ratio (HTTP throughput as a share of disk's).
# 2. Resume: the server cuts the first download of every file at 50%; the run must resume
#    each by range request. Reported: bytes the server sent / total file size, and whether the
#    resumed run holds exactly the (id, content_hash) set of a run from disk (fails if not).
# Uses target/release/smelt (cargo build --release --locked -q --workspace --bins --examples).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-3}
PORT=${PORT:-5091}
BIN=${SMELT_BIN:-$ROOT/target/release/smelt}
if [ "$#" -gt 0 ]; then FILES=("$@"); else FILES=("$HOME"/.cache/smelt-peers/data/warc/*.warc.gz); fi
[ -f "${FILES[0]}" ] || { echo "no input: give WARC files, or build the peer harness's shards (bench/README.md)" >&2; exit 2; }
[ -x "$BIN" ] || { echo "no $BIN: cargo build --release --locked -q --workspace --bins --examples" >&2; exit 2; }

W=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
CRAWL=CC-MAIN-2099-01
mkdir -p "$W/srv/crawl-data/$CRAWL/segments/0/warc" "$W/local"
: > "$W/paths"
for f in "${FILES[@]}"; do
    a=$(cd "$(dirname "$f")" && pwd)/$(basename "$f")
    ln -s "$a" "$W/srv/crawl-data/$CRAWL/segments/0/warc/$(basename "$f")"
    echo "crawl-data/$CRAWL/segments/0/warc/$(basename "$f")" >> "$W/paths"
    LOCAL_PATHS="${LOCAL_PATHS:+$LOCAL_PATHS, }\"$a\""
done
gzip -c "$W/paths" > "$W/srv/crawl-data/$CRAWL/warc.paths.gz"
TOTAL=$(cat "${FILES[@]}" | wc -c)

tail_stages='  text:\n    type: html_to_text\n    inputs: [src]\n  hashed:\n    type: content_hash\n    inputs: [text]\n  out:\n    type: parquet\n    inputs: [hashed]\n'
printf "dataset: disk\nstages:\n  src:\n    type: warc\n    paths: [%s]\n$tail_stages" "$LOCAL_PATHS" > "$W/disk.yaml"
net_yaml() {
    printf "dataset: %s\nstages:\n  src:\n    type: commoncrawl\n    crawl: $CRAWL\n    base_url: http://127.0.0.1:%s/\n    incremental: false\n    http: {max_connections_per_host: 2, requests_per_second: 100}\n$tail_stages" "$1" "$2" > "$W/$1.yaml"
}
net_yaml http "$PORT"
net_yaml resume "$((PORT + 1))"

python3 "$ROOT/bench/net_server.py" "$W/srv" "$PORT" &
python3 "$ROOT/bench/net_server.py" "$W/srv" "$((PORT + 1))" --reset-at-half &
sleep 1

secs() { local s; s=$(date +%s.%N); "$@" > /dev/null; echo "$(date +%s.%N) - $s" | bc; }
disk=(); http=()
for i in $(seq "$RUNS"); do
    rm -rf "$W/data"; disk+=("$(secs "$BIN" --data-dir "$W/data" run "$W/disk.yaml" --parallelism 2)")
    rm -rf "$W/data"; http+=("$(secs "$BIN" --data-dir "$W/data" run "$W/http.yaml" --parallelism 2)")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
md=$(median "${disk[@]}"); mh=$(median "${http[@]}")
echo "input: ${#FILES[@]} files, $TOTAL bytes; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "disk runs (s): ${disk[*]}"
echo "http runs (s): ${http[*]}"
echo "median disk ${md}s ($(echo "$TOTAL / $md / 1000000" | bc -l | cut -c1-6) MB/s), http ${mh}s ($(echo "$TOTAL / $mh / 1000000" | bc -l | cut -c1-6) MB/s): http/disk throughput $(echo "$md / $mh * 100" | bc -l | cut -c1-5)%"

rm -rf "$W/data"
"$BIN" --data-dir "$W/data" run "$W/resume.yaml" --parallelism 2 --format json > "$W/resume.json"
SENT=$(python3 -c "import json,urllib.request; s=json.load(urllib.request.urlopen('http://127.0.0.1:$((PORT + 1))/_stats')); print(sum(v['bytes'] for k, v in s.items() if k.endswith('.warc.gz')))")
python3 - "$W/resume.json" "$SENT" "$TOTAL" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); sent, total = int(sys.argv[2]), int(sys.argv[3])
sk = next(s for s in r["stages"] if s["stage"] == "src")["skips"]
print(f"resume: every file cut at 50% once; {sk.get('net_resume', 0)} resumes; {sent} bytes sent for {total} bytes of files = {sent / total:.3f}x; rows {r['rows_written']}")
PY
# The resumed HTTP run holds exactly the documents of a run from disk: the same (id, content_hash)
# set both ways (origins differ by design: URL vs path, so the digests are not compared).
"$BIN" --data-dir "$W/data" run "$W/disk.yaml" --parallelism 2 --format json > "$W/disk.json"
only() {
    "$BIN" --data-dir "$W/data" sql "SELECT count(*) AS n FROM (SELECT id, content_hash FROM \"$1@1\" EXCEPT SELECT id, content_hash FROM \"$2@1\")" --format csv | tail -1
}
only_http=$(only resume disk); only_disk=$(only disk resume)
rows_disk=$(python3 -c "import json; print(json.load(open('$W/disk.json'))['rows_written'])")
echo "resumed HTTP run vs disk: $rows_disk rows from disk; $only_http documents only over HTTP, $only_disk only from disk"
[ "$only_http" = 0 ] && [ "$only_disk" = 0 ] || { echo "the resumed run's documents differ from the disk run's" >&2; exit 1; }
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
