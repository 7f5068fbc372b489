#!/usr/bin/env bash
# MinHash dedup quality on planted near-duplicates of real Reuters-21578
# stories: share of planted pairs clustered by true 5-gram Jaccard band,
# precision of the clusters, false-positive rate below 0.6. Figures in
# target/minhash-quality/figures.json (WORK=dir elsewhere; BASES=n stories, default 2500).
#   bash bench/minhash_quality.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q --workspace --bins --examples
echo "$(date -u +%F) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1 /proc/loadavg)"
~/.cache/smelt-peers/venv/bin/python bench/minhash_quality.py "${WORK:-target/minhash-quality}" "${BASES:-2500}"
