#!/usr/bin/env bash
# Annotate mode against drop mode on real text: the four quality filters
# (gopher_repetition, gopher_quality, fineweb, c4 last) run once dropping and
# once with `mode: annotate`; datatrove's default thresholds written as SQL
# over the `signals` column must select exactly the documents drop mode keeps,
# and so must `cardinality(would_drop) = 0`. Also the cost of annotating
# (CPU seconds of both runs). Input: the DEBDOCS web text extracted by
# datatrove (~/.cache/smelt-peers/runs/extract_w2/output, INPUT=dir of
# *.jsonl.gz to use another). SMELT_BIN=path skips the release build.
#   bench/run.sh annotate_parity
set -euo pipefail
cd "$(dirname "$0")/.."
INPUT=${INPUT:-$HOME/.cache/smelt-peers/runs/extract_w2/output}
SMELT=${SMELT_BIN:-target/release/smelt}
if [ -z "${SMELT_BIN:-}" ]; then cargo build --release --locked -q --workspace --bins --examples; fi
WORK=${WORK:-target/annotate-parity}
rm -rf "$WORK" && mkdir -p "$WORK"
pipeline() {
  cat <<YAML
dataset: $1
stages:
  docs: {type: jsonl, paths: ["$INPUT/*.jsonl.gz"]}
  repetition: {type: gopher_repetition, inputs: [docs], mode: $2}
  quality: {type: gopher_quality, inputs: [repetition], mode: $2}
  fineweb: {type: fineweb, inputs: [quality], mode: $2}
  c4: {type: c4, inputs: [fineweb], mode: $2, filter_no_terminal_punct: false}
  hashed: {type: content_hash, inputs: [c4]}
  out: {type: parquet, inputs: [hashed]}
YAML
}
pipeline dropped drop >"$WORK/drop.yaml"
pipeline annotated annotate >"$WORK/annotate.yaml"
export SMELT_DATA_DIR="$WORK/data"
cpu() { /usr/bin/time -f "%U %S" -o "$WORK/time" "$@" >/dev/null || exit 1; awk '{printf "%.2f", $1 + $2}' "$WORK/time"; }
echo "$(date -u +%F) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1 /proc/loadavg)"
echo "input: $INPUT ($(zcat "$INPUT"/*.jsonl.gz | wc -l) documents)"
d=$(cpu "$SMELT" run "$WORK/drop.yaml" --parallelism 1)
a=$(cpu "$SMELT" run "$WORK/annotate.yaml" --parallelism 1)
q() { "$SMELT" sql "$1" --format json | python3 -c 'import json,sys; print(json.dumps(sorted(r["id"] for r in json.load(sys.stdin))))'; }
kept=$(q 'SELECT id FROM "dropped@1"')
rows=$(q 'SELECT id FROM "annotated@1"')
listed=$(q 'SELECT id FROM "annotated@1" WHERE cardinality(would_drop) = 0')
thresholds=$(q "$(sed 's/VERSION/"annotated@1"/' examples/signals_thresholds.sql)")
n() { python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' <<<"$1"; }
echo "drop mode keeps $(n "$kept") documents ($d CPU s); annotate mode writes $(n "$rows") rows ($a CPU s)"
[ "$listed" = "$kept" ] && echo "cardinality(would_drop) = 0 selects the same documents: yes" || { echo "cardinality(would_drop) = 0 selects $(n "$listed"): DIFFERENT"; exit 1; }
[ "$thresholds" = "$kept" ] && echo "default thresholds over signals select the same documents: yes" || { echo "thresholds select $(n "$thresholds"): DIFFERENT"; exit 1; }
