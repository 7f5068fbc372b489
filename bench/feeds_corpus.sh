#!/usr/bin/env bash
# Feeds read leniently: every real feed file of feed-rs 3.0.0's fixture and of rss-parser's
# test input (../shared/data/news, PROVENANCE.md there) served over HTTP on 127.0.0.1 and read
# by one `rss` pipeline (fetch_articles: false); reports feeds, bad_feed, feed_truncated and
# documents, for smelt and, when given, an older smelt binary on the same files.
#
#   bench/feeds_corpus.sh                                  # target/debug/smelt (cargo build first)
#   SMELT_BIN=target/release/smelt BASE_BIN=/path/to/old/smelt bench/feeds_corpus.sh
#
# Results: bench/results/feeds-corpus.tsv (one line per binary). Only files with a feed's
# extension or content are served as feeds; a file feed-rs's own tests expect to fail is still
# counted (the corpus is what it is).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${DATA:-$ROOT/../shared/data/news}
SMELT_BIN=${SMELT_BIN:-$ROOT/target/debug/smelt}
OUT=$ROOT/bench/results/feeds-corpus.tsv
WORK=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT

mkdir -p "$WORK/www"
n=0
while IFS= read -r f; do
    # feed-rs's fixture holds its expected parses beside the feeds (*.serde.json): not feeds.
    case "$f" in *LICENSE* | *.serde.json) continue ;; esac
    n=$((n + 1))
    cp "$f" "$WORK/www/$(printf '%04d' $n)-$(basename "$f")"
done < <(find "$DATA/feed-rs-3.0.0-fixture" "$DATA/rss-parser-test-input" -type f | sort)

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$WORK/www" >/dev/null 2>&1 &
server=$!
for _ in $(seq 50); do curl -s "http://127.0.0.1:$port/" >/dev/null && break; sleep 0.1; done

feeds=$(ls "$WORK/www" | sed "s|^|    - http://127.0.0.1:$port/|")
cat > "$WORK/feeds.yaml" <<YAML
dataset: feeds-corpus
stages:
  news:
    type: rss
    feeds:
$feeds
    fetch_articles: false
    robots_txt: false
    http: {retries: 0, requests_per_second: 1000, max_connections_per_host: 8}
  text:
    type: html_to_text
    inputs: [news]
    min_chars: 1
  hashed:
    type: content_hash
    inputs: [text]
  out:
    type: parquet
    inputs: [hashed]
YAML

[ -f "$OUT" ] || printf 'date\tbinary\tfeeds\tbad_feed\tfeed_truncated\tparser_panic\tdocuments\n' > "$OUT"
measure() {
    local bin=$1 label=$2
    local json
    json=$("$bin" --data-dir "$WORK/data-$label" run "$WORK/feeds.yaml" --format json --no-progress 2>"$WORK/$label.err") || {
        echo "$label: run failed: $(tail -3 "$WORK/$label.err")" >&2; return 1; }
    python3 - "$label" "$n" "$OUT" <<PY
import json, sys, datetime
r = json.loads('''$json''')
skips = next(s for s in r["stages"] if s["stage"] == "news")["skips"]
row = [datetime.date.today().isoformat(), sys.argv[1], sys.argv[2], skips.get("bad_feed", 0),
       skips.get("feed_truncated", 0), skips.get("parser_panic", 0), r["rows_written"]]
print("\t".join(map(str, row)))
open(sys.argv[3], "a").write("\t".join(map(str, row)) + "\n")
PY
}
printf 'binary\tfeeds\tbad_feed\tfeed_truncated\tparser_panic\tdocuments\n'
measure "$SMELT_BIN" smelt
if [ -n "${BASE_BIN:-}" ]; then
    measure "$BASE_BIN" base
fi
