#!/usr/bin/env bash
# Main-content extraction on the 93 real pages of Mozilla Readability's test pages (never used to
# tune smelt's rules): smelt `extract` vs trafilatura 1.11 (datatrove's settings and default)
# and resiliparse 2.0 (main_content=True), bag-of-words agreement with Readability.js's own
# extraction, on a fixed tuning half and check half; see bench/README.md "Main-content extraction".
#   bench/extract_readability.sh [-v]   # needs ~/.cache/smelt-peers (venv) and ../shared/data
# Prints a table and writes bench/results/extract_readability.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS="${PEERS:-$HOME/.cache/smelt-peers}"
# Same package and profile as the smelt binary: no -p release build (it would rebuild DataFusion).
cargo build --release --locked -q --workspace --bins --examples
export SMELT_EXTRACT_BIN="${SMELT_EXTRACT_BIN:-${CARGO_TARGET_DIR:-target}/release/examples/extract_pages}"
"$PEERS/venv/bin/python" -W ignore bench/extract_bench.py readability "$@"
