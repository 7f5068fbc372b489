#!/usr/bin/env bash
# The `python` transform against datatrove 0.10.1 on the same generated documents, one process each:
#   - filter mode `len(row["text"]) > 500` vs datatrove's LambdaFilter(lambda doc: len(doc.text) > 500)   (goal >= 3x)
#   - batch mode `pc.greater(pc.utf8_length(batch["text"]), 500)` vs the same LambdaFilter                (goal >= 20x),
#     and with `pc.binary_length` (bytes; the texts are ASCII), which reads only the offsets
#   - the worker protocol's overhead on a realistic function (a regex word count) over the same function
#     called on the same rows in plain Python                                                               (goal < 10%)
# Rows per second of the filtering step alone (see bench/python_stage.py). Prints a table to stdout.
#
#   bench/python_stage.sh                                    # 1,000,000 documents, target/release/smelt
#   DOCS=200000 SMELT_BIN=target/debug/smelt bench/python_stage.sh
#   VENV=~/.cache/smelt-peers/venv bench/python_stage.sh     # a venv that has datatrove 0.10.1 and pyarrow
#
# Needs python3; installs datatrove 0.10.1 and pyarrow (+ orjson, regex) into $VENV (default
# ~/.cache/smelt-dt-venv) from PyPI once. The smelt workers run that venv's python too.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DOCS=${DOCS:-1000000}
SMELT_BIN=${SMELT_BIN:-$ROOT/target/release/smelt}
VENV=${VENV:-$HOME/.cache/smelt-dt-venv}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if ! "$VENV/bin/python" -c 'import datatrove, pyarrow, orjson' 2>/dev/null; then
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check 'datatrove==0.10.1' 'pyarrow==26.0.1' orjson regex
fi

# Documents: the generator of bench/sql_where.sh (ids, texts of 100 to 1,595 characters of a fixed word list).
python3 - "$WORK/in/docs.jsonl" "$DOCS" <<'PY'
import json, os, sys
path, n = sys.argv[1], int(sys.argv[2])
os.makedirs(os.path.dirname(path), exist_ok=True)
words = ["data", "pipeline", "token", "crawl", "news", "model", "train", "shard", "filter", "text"]
with open(path, "w") as f:
    for i in range(n):
        k = 20 + (i * 37) % 300
        text = " ".join(words[(i + j) % len(words)] for j in range(k // 1))[: 5 * k]
        f.write(json.dumps({"id": f"d{i:07d}", "text": text}) + "\n")
PY

cat > "$WORK/udf.py" <<'PY'
import re

import pyarrow.compute as pc

WORD = re.compile(r"\b\w+(?:'\w+)?\b")


def long_text(row):
    return len(row["text"]) > 500


def long_batch(batch):
    return pc.greater(pc.utf8_length(batch["text"]), 500)


def long_batch_bytes(batch):
    return pc.greater(pc.binary_length(batch["text"]), 500)


def many_words(row):
    return len(WORD.findall(row["text"])) > 120
PY

"$VENV/bin/python" "$ROOT/bench/python_stage.py" "$WORK" "$SMELT_BIN"
