#!/usr/bin/env bash
# Main-content extraction quality: smelt `extract` vs trafilatura 1.11 (datatrove's settings and
# default) and resiliparse 2.0 (main_content=True) on pages with gold text; see bench/README.md
# "Main-content extraction".
#   bench/extract_quality.sh [-v] [--dump]   # needs ~/.cache/smelt-peers (venv) and ../shared/data
# Prints a table and writes bench/results/extract_quality.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS="${PEERS:-$HOME/.cache/smelt-peers}"
# Same package and profile as the smelt binary: no -p release build (it would rebuild DataFusion).
cargo build --release --locked -q --workspace --bins --examples
"$PEERS/venv/bin/python" -W ignore bench/extract_bench.py quality "$@"
