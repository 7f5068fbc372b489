#!/usr/bin/env bash
# Which data delta broke my loss curve? The whole story on bundled real text, on CPU, in a minute:
#   version 1 = 209 Reuters-21578 stories (stages/tests/fixtures/classify/texts.jsonl), tokenized;
#   version 2 = the same plus 10 documents of garbage from one domain (junk.example);
#   a tiny numpy language model (examples/train/tiny_lm.py) trained on each through ShardLoader,
#   which records each run against its version and logs the real training loss;
#   then `smelt train compare` shows where the curves part and the catalog diff that added the domain,
#   and `smelt train spikes` traces the loss spikes to the garbage documents.
#
#   bash examples/train/loss_delta.sh [WORKDIR]     # needs a Python with numpy and pyarrow (SMELT_PYTHON or python3)
# tests/train.rs (compare_and_spikes_point_at_the_planted_documents) checks the same steps.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-$(mktemp -d)}
smelt=${SMELT:-$repo/target/release/smelt}
[ -x "$smelt" ] || smelt=$repo/target/debug/smelt
[ -x "$smelt" ] || { echo "build smelt first: cargo build --release" >&2; exit 1; }
py=${SMELT_PYTHON:-python3}
mkdir -p "$work/data"
cp "$repo/stages/tests/fixtures/classify/texts.jsonl" "$work/data/reuters.jsonl"
cat > "$work/lm.yaml" <<'YAML'
dataset: lm
stages:
  docs: {type: jsonl, paths: ["data/*.jsonl"]}
  hashed: {type: content_hash, inputs: [docs]}
  tok: {type: tokenize, inputs: [hashed], tokenizer: "tiktoken:r50k_base", max_tokens: 1024, overflow: split}
  # Each input file its own shard, as a separate day's ingest would be: merged, the 10 planted
  # documents would share the stories' one shard and the loader would spread them over most batches.
  out: {type: parquet, inputs: [tok], merge_small_shards: false}
YAML
S=("$smelt" --data-dir "$work/smelt-data")
"${S[@]}" run "$work/lm.yaml" --no-progress
"$py" - "$work/data/zz-junk.jsonl" <<'PY'
import json, random, string, sys
rng = random.Random(0)
chars = string.ascii_letters + string.digits + string.punctuation
with open(sys.argv[1], "w") as f:
    for i in range(10):
        text = "".join(rng.choice(chars) if rng.random() > 0.11 else " " for _ in range(900))
        f.write(json.dumps({"id": f"junk-{i}", "url": f"http://junk.example/p/{i}", "text": text}) + "\n")
PY
"${S[@]}" run "$work/lm.yaml" --no-progress
root=$work/smelt-data/datasets/lm
for run in clean:1 junk:2; do
  PYTHONPATH=$repo/python "$py" "$repo/examples/train/tiny_lm.py" "$root" --version "${run#*:}" --run-id "${run%:*}" --epochs 3
done
"${S[@]}" train list
"${S[@]}" train compare clean junk --out "$work/compare.html"
SMELT_PYTHON=$py "${S[@]}" train spikes junk --top 5
SMELT_PYTHON=$py "${S[@]}" train batch junk --step "$("${S[@]}" train spikes junk --format json | "$py" -c 'import json,sys; print(json.load(sys.stdin)["spikes"][0]["step"])')" --excerpt 12
echo "report: $work/compare.html"
