#!/usr/bin/env bash
# The `sql` transform's `where` against the same predicate as a datatrove LambdaFilter, on the
# same documents, in one run: rows per second of the filtering step alone (smelt: the stage's
# CPU time from the run summary, one split at a time; datatrove 0.10.1: the step's time_stats
# total, one task, one worker). Predicate: length(text) > 500 / len(doc.text) > 500.
#
#   bench/sql_where.sh                      # 1,000,000 generated documents, target/release/smelt
#   DOCS=200000 SMELT_BIN=target/debug/smelt bench/sql_where.sh
#   SQL_WHERE='octet_length(text) > 500' bench/sql_where.sh   # the same predicate on ASCII text, in bytes
#
# Needs python3; installs datatrove 0.10.1 (+ orjson, regex) into $VENV (default ~/.cache/smelt-dt-venv)
# from PyPI once. Results: bench/results/sql-where.tsv (one line per run).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DOCS=${DOCS:-1000000}
SQL_WHERE=${SQL_WHERE:-length(text) > 500}
SMELT_BIN=${SMELT_BIN:-$ROOT/target/release/smelt}
VENV=${VENV:-$HOME/.cache/smelt-dt-venv}
OUT=$ROOT/bench/results/sql-where.tsv
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check 'datatrove==0.10.1' orjson regex
fi

# Documents: ids and texts of 100 to 1,595 characters (words of a fixed list), deterministic.
python3 "$ROOT/bench/generated_docs.py" "$WORK/in/docs.jsonl" "$DOCS"

cat > "$WORK/p.yaml" <<YAML
dataset: sql-where
stages:
  docs:
    type: jsonl
    paths: [in/docs.jsonl]
  rules:
    type: sql
    inputs: [docs]
    where: "$SQL_WHERE"
    reason: short
  hashed:
    type: content_hash
    inputs: [rules]
  out:
    type: parquet
    inputs: [hashed]
YAML

smelt_json=$("$SMELT_BIN" --data-dir "$WORK/data" run "$WORK/p.yaml" --format json --no-progress --parallelism 1 2>/dev/null)

cat > "$WORK/dt.py" <<'PY'
import glob, json, sys
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.filters import LambdaFilter
from datatrove.pipeline.readers import JsonlReader
work = sys.argv[1]
LocalPipelineExecutor(
    pipeline=[JsonlReader(f"{work}/in", glob_pattern="docs.jsonl"), LambdaFilter(lambda doc: len(doc.text) > 500)],
    tasks=1, workers=1, logging_dir=f"{work}/dt-logs",
).run()
stats = json.load(open(glob.glob(f"{work}/dt-logs/stats.json")[0]))
step = next(s for s in stats if "Lambda" in s["name"])
print(json.dumps({"seconds": step["time_stats"]["total"], "docs": step["stats"]["total"], "dropped": step["stats"].get("dropped", 0)}))
PY
dt_json=$("$VENV/bin/python" "$WORK/dt.py" "$WORK" 2>/dev/null | tail -1)

[ -f "$OUT" ] || printf 'date\tdocs\twhere\tsmelt_bin\tsmelt_dropped\tsmelt_stage_s\tsmelt_rows_per_s\tdatatrove_dropped\tdatatrove_step_s\tdatatrove_rows_per_s\tratio\n' > "$OUT"
python3 - "$smelt_json" "$dt_json" "$DOCS" "$SMELT_BIN" "$OUT" "$SQL_WHERE" <<'PY'
import datetime, json, sys
s, d, n, binary, out, where = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
stage = next(x for x in s["stages"] if x["stage"] == "rules")
s_sec = stage["busy_ms"] / 1000
s_rate, d_rate = stage["rows_in"] / s_sec, d["docs"] / d["seconds"]
dropped = stage["drops"].get("short", 0)
assert dropped == d["dropped"], f"smelt dropped {dropped}, datatrove {d['dropped']}: not the same predicate"
row = [datetime.date.today().isoformat(), n, where, binary.split("/")[-2], dropped, f"{s_sec:.3f}", f"{s_rate:,.0f}",
       d["dropped"], f"{d['seconds']:.3f}", f"{d_rate:,.0f}", f"{s_rate / d_rate:.1f}x"]
print("docs\tsmelt rows/s\tdatatrove rows/s\tratio")
print(f"{n}\t{s_rate:,.0f}\t{d_rate:,.0f}\t{s_rate / d_rate:.1f}x")
open(out, "a").write("\t".join(map(str, row)) + "\n")
PY
