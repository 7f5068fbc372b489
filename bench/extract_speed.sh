#!/usr/bin/env bash
# Main-content extraction speed, docs/s on one core (taskset -c 0 for smelt; the Python peers are
# single-threaded): smelt `extract` vs resiliparse and trafilatura on the gold pages, the real-web
# WARC samples and DEBDOCS-SYNTH pages; see bench/README.md "Main-content extraction".
#   bench/extract_speed.sh [--runs 3] [--debdocs 1500] [--peers NAME ...]
# Prints a table and writes bench/results/extract_speed.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS="${PEERS:-$HOME/.cache/smelt-peers}"
cargo build --release --locked -q --workspace --bins --examples
exec taskset -c 0 "$PEERS/venv/bin/python" -W ignore bench/extract_bench.py speed "$@"
