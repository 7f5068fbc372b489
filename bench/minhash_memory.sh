#!/usr/bin/env bash
# Peak RSS of dedup_minhash with memory_budget 512 MiB on generated corpora
# (real Reuters-21578 stories with variations). SIZES="1000000 3000000" by
# default; BUDGET=bytes sets memory_budget (default 512 MiB); figures in
# target/minhash-memory/figures.json (WORK=dir elsewhere).
#   bash bench/minhash_memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# Same package set as every other release build (a --bin build would resolve features anew).
if [ -z "${SMELT_BIN:-}" ]; then cargo build --release --locked -q --workspace --bins --examples; fi
echo "$(date -u +%F) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1 /proc/loadavg)"
# shellcheck disable=SC2086
~/.cache/smelt-peers/venv/bin/python bench/minhash_memory.py "${WORK:-target/minhash-memory}" ${SIZES:-1000000 3000000}
