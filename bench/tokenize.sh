#!/usr/bin/env bash
# Tokenization: parity of smelt's token ids with HF tokenizers / tiktoken (Python)
# on every shared news text, and single-thread throughput against them on
# ~15 MB of extracted web text. Figures: bench/results/tokenize.json.
#   bench/tokenize.sh              # parity + speed
#   bench/tokenize.sh --skip-speed # parity only
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PEERS_PY:-$HOME/.cache/smelt-peers/venv/bin/python}"
# One build of the example (release; same feature set as the workspace, so no DataFusion rebuild).
cargo build --release --locked -q --workspace --bins --examples
exec "$PY" bench/tokenize_bench.py --smelt target/release/examples/tokenize_ids "$@"
