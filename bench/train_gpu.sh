#!/usr/bin/env bash
# Feeding a GPU (bench/README.md "Feeding a GPU"): the loader alone and GPT-2 small training fed
# by it, on the machine with the GPU. Writes bench/results/train_gpu-<gpu>.json.
#
#   bench/train_gpu.sh [DATASET_ROOT]
#
# Without DATASET_ROOT it builds `gpu-tok` first: the peer harness's extract_w2 output
# ($PEERS/runs/extract_w2/output/*.jsonl.gz, 5,931 DEBDOCS-SYNTH documents) tokenized by smelt
# with r50k_base (examples/tokenize.yaml's stages, max_tokens 2048 split). Needs torch with CUDA
# and pyarrow/numpy in `python3` (or $PY), nvidia-smi, and a smelt binary ($SMELT_BIN or the
# release build). The H100 figures in bench/results/train_h100.json came from these two
# commands on 2026-11-26, run by hand before this script existed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
PEERS=${PEERS:-$HOME/.cache/smelt-peers}
SMELT=${SMELT_BIN:-$PWD/target/release/smelt}
work=${WORK:-$(mktemp -d)}
root=${1:-}
if [ -z "$root" ]; then
  [ -x "$SMELT" ] || cargo build --release --locked -q --workspace --bins --examples
  cat > "$work/gpu-tok.yaml" <<YAML
dataset: gpu-tok
stages:
  docs:
    type: jsonl
    paths: [$PEERS/runs/extract_w2/output/*.jsonl.gz]
  hashed:
    type: content_hash
    inputs: [docs]
  tokens:
    type: tokenize
    inputs: [hashed]
    tokenizer: tiktoken:r50k_base
    max_tokens: 2048
    overflow: split
  out:
    type: parquet
    inputs: [tokens]
YAML
  "$SMELT" --data-dir "$work/smelt-data" run "$work/gpu-tok.yaml" --no-progress
  root=$work/smelt-data/datasets/gpu-tok
fi
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
tag=$(echo "$gpu" | tr 'A-Z ' 'a-z_' | tr -cd 'a-z0-9_')
out=bench/results/train_gpu-$tag.json
"$PY" examples/train/loader_throughput.py "$root" --mode all --seconds 6 > "$work/loader.jsonl"
for b in 64; do "$PY" examples/train/loader_throughput.py "$root" --mode shard --batch "$b" --seconds 6 >> "$work/loader.jsonl"; done
"$PY" examples/train/loader_throughput.py "$root" --mode shard --dtype int32 --seconds 6 >> "$work/loader.jsonl"
"$PY" examples/train/train.py "$root" --steps 300 --batch 16 --out "$work/eager.json"
"$PY" examples/train/train.py "$root" --steps 300 --batch 16 --compile --out "$work/compile.json"
"$PY" - "$work" "$out" "$gpu" <<'PY'
import json, platform, sys, time
work, out, gpu = sys.argv[1:4]
loader = {}
for line in open(f"{work}/loader.jsonl"):
    r = json.loads(line)
    loader[f"{r['mode']}_batch{r['batch']}_{r['dtype']}"] = r
res = {"machine": f"{gpu}, {platform.node()}", "date": time.strftime("%Y-%m-%d"), "loader": loader,
       "train_gpt2_small_eager_shardloader": json.load(open(f"{work}/eager.json")),
       "train_gpt2_small_compile_shardloader": json.load(open(f"{work}/compile.json"))}
json.dump(res, open(out, "w"), indent=1)
print("wrote", out)
PY
