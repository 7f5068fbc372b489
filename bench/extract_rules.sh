#!/usr/bin/env bash
# Per rule of `extract`: on how many real pages it decides blocks and how often
# its decisions agree with the reference text (bench/extract_rules.py; newspaper4k
# gold pages and the tuning half of Readability's test pages; needs ../shared/data).
#   SMELT_BIN=target/release/smelt bench/run.sh extract_rules
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${SMELT_BIN:-}" ]; then cargo build --release --locked -q -p smelt --bin smelt; fi
python3 bench/extract_rules.py --smelt "${SMELT_BIN:-target/release/smelt}" --json bench/results/extract_rules.json
