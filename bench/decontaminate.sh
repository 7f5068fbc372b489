#!/usr/bin/env bash
# Decontamination speed: smelt's `decontaminate` stage against datatrove
# 0.10.1's NGramsDecontFilter, same documents (Reuters-21578 stories, the odd
# ones, REPEAT times), same benchmark items (the even stories, about 1M
# distinct 13-grams), one core each; index building, MB/s, ratio, the
# contaminated sets of both compared, and smelt's peak RSS at two corpus sizes.
# Figures in $WORK/figures.json (WORK default target/decontaminate-bench).
#   bash bench/decontaminate.sh      # needs ~/.cache/smelt-peers (venv with datatrove 0.10.1, pyarrow) and ../shared/data
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q --workspace --bins --example bench_pii_toxicity
echo "$(date -u +%F) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
~/.cache/smelt-peers/venv/bin/python bench/decontaminate.py "${WORK:-target/decontaminate-bench}"
