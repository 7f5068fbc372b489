#!/usr/bin/env bash
# Sentence dedup parity and speed: smelt's `dedup_sentences` against datatrove
# 0.10.1's SentenceDedup (three steps, one task) on the same JSONL, and
# smelt's peak RSS at 1x and 2x the input. Inputs: the DEBDOCS web text
# extracted by datatrove (~/.cache/smelt-peers/runs/extract_w2/output, made
# here if missing) and every Reuters-21578 story with a body
# (../shared/data/news/reuters21578). Figures in
# target/sentence-dedup/figures.json (WORK=dir to put them elsewhere).
# SMELT_BIN=path skips the release build.
#   bench/run.sh sentence_dedup
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=~/.cache/smelt-peers
WEB=$PEERS/runs/extract_w2/output
if [ ! -d "$WEB" ]; then
  (cd "$PEERS" && ./venv/bin/python run_datatrove_pipeline.py --mode extract --workers 2 --limit 1500 --out runs/extract_w2)
fi
if [ -z "${SMELT_BIN:-}" ]; then cargo build --release --locked -q --workspace --bins --examples; fi
echo "$(date -u +%F) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1 /proc/loadavg)"
"$PEERS/venv/bin/python" bench/sentence_dedup.py "${WORK:-target/sentence-dedup}" \
  "debdocs-web=$WEB" "reuters-21578=../shared/data/news/reuters21578"
