#!/usr/bin/env bash
# The `python` transform against datatrove 0.10.1 on the same generated documents, one process each:
#   - filter mode `len(row["text"]) > 500` vs datatrove's LambdaFilter(lambda doc: len(doc.text) > 500)   (goal >= 3x)
#   - batch mode `pc.greater(pc.utf8_length(batch["text"]), 500)` vs the same LambdaFilter                (goal >= 20x),
#     and with `pc.binary_length` (bytes; the texts are ASCII), which reads only the offsets
#   - the worker protocol's overhead on a realistic function (a regex word count): the stage's time less the time in
#     the function, both from the same run (the `user_code_us` counter), over the time in the function  (goal < 10%);
#     and the same function called on the same rows in plain Python, beside it
#   each with the stage's default rows per call (`batch_rows: 8192`) and with one call per pipeline batch (0)
# Rows per second of the filtering step alone (see bench/python_stage.py). Prints a table to stdout.
#
#   bench/python_stage.sh                                    # 1,000,000 documents (the regex: the first 200,000)
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

# Documents: ids and texts of 100 to 1,595 characters (words of a fixed list), deterministic.
python3 "$ROOT/bench/generated_docs.py" "$WORK/in/docs.jsonl" "$DOCS"
head -n "${REGEX_DOCS:-200000}" "$WORK/in/docs.jsonl" > "$WORK/in/regex.jsonl"

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
