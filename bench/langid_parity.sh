#!/usr/bin/env bash
# Language-ID parity and speed: smelt's `langid` (own fastText reader, LID-176)
# against Python fastText 0.9.2 (as datatrove's LanguageFilter calls it) on the
# same texts: newspaper4k gold texts, trafilatura test-cache pages (extracted
# with trafilatura), dolma CCNet docs, real web WARCs and one DEBDOCS-SYNTH
# shard (resiliparse plain text), reuters21578 stories. Prints agreement,
# score differences and docs/s + MB/s on one core; figures in
# bench/results/langid_parity.json (WORK=dir for the corpus and runs, default target/langid-parity).
#   bash bench/langid_parity.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q --workspace --bins --examples
echo "$(date -u +%F) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
~/.cache/smelt-peers/venv/bin/python bench/langid_parity.py "${WORK:-target/langid-parity}"
