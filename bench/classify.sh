#!/usr/bin/env bash
# fastText classifier speed and agreement: smelt's `classify` stage (its own
# fastText reader) against Python fastText 0.9.2's predict(k=-1) on the same
# texts (every Reuters-21578 story with a body), one core each, for three
# models (the fixture's bigram/subword softmax model, the example's quantized
# quality model, and a dense dim-100 quality model trained by the script).
# Prints docs/s, MB/s and the ratios; figures in $WORK/figures.json
# (WORK=dir for the corpus, models and runs, default target/classify-bench;
# REPEAT=k reads the stories k times for longer, finer-grained passes).
#   bash bench/classify.sh      # needs ~/.cache/smelt-peers (venv with fasttext 0.9.2, pyarrow) and ../shared/data
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q --workspace --bins --examples
echo "$(date -u +%F) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
~/.cache/smelt-peers/venv/bin/python bench/classify.py "${WORK:-target/classify-bench}"
