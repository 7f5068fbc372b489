#!/usr/bin/env bash
# Parity of smelt's quality filters (gopher_repetition, gopher_quality, c4, fineweb) with
# datatrove 0.10.1 on the same texts; see bench/README.md "Quality filters: parity with datatrove".
#   bench/filters_parity.sh            # needs ~/.cache/smelt-peers (venv, WARCs) and ../shared/data
# Prints a table and writes bench/results/filters_parity.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS="${PEERS:-$HOME/.cache/smelt-peers}"
# The release binary and the in-process verdict dump (examples/filters_words), one workspace
# build (never a -p release build, which rebuilds DataFusion).
cargo build --release --locked -q --workspace --bins --examples
"$PEERS/venv/bin/python" -W ignore bench/filters_parity.py "$@"
