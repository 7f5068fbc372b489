#!/usr/bin/env bash
# MinHash dedup parity and speed: smelt's `dedup_minhash` against datatrove
# 0.10.1's four MinHash stages (~/.cache/smelt-peers/run_minhash.py) on the
# same JSONL input, one worker each. Prints counts, the Jaccard of the two
# removed sets, each difference with its band twins, and documents per
# CPU-second; figures in target/minhash-parity/figures.json (WORK=dir to put
# them elsewhere). Input: INPUT=dir of *.jsonl.gz, default the extracted web
# text ~/.cache/smelt-peers/runs/extract_w2/output (made here if missing), or
# GENERATE=N documents made from Reuters-21578 stories with variations (as
# bench/minhash_memory.py makes them; the issue's speed figure asks for
# >= 100,000). SMELT_BIN=path skips the release build.
#   bash bench/minhash_parity.sh
#   GENERATE=100000 WORK=target/minhash-parity-100k bash bench/minhash_parity.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=~/.cache/smelt-peers
INPUT=${INPUT:-$PEERS/runs/extract_w2/output}
if [ -n "${GENERATE:-}" ]; then
  INPUT="${WORK:-target/minhash-parity}/input-$GENERATE"
  if [ ! -d "$INPUT" ]; then
    "$PEERS/venv/bin/python" -c "import sys; sys.path.insert(0, 'bench'); from minhash_memory import generate; generate('$INPUT', $GENERATE)"
    gzip -f "$INPUT"/*.jsonl
  fi
elif [ ! -d "$INPUT" ]; then
  (cd "$PEERS" && ./venv/bin/python run_datatrove_pipeline.py --mode extract --workers 2 --limit 1500 --out runs/extract_w2)
fi
if [ -z "${SMELT_BIN:-}" ]; then cargo build --release --locked -q --workspace --bins --examples; fi
echo "$(date -u +%F) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1 /proc/loadavg)"
"$PEERS/venv/bin/python" bench/minhash_parity.py "${WORK:-target/minhash-parity}" "$INPUT"
