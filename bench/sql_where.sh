#!/usr/bin/env bash
# The `sql` transform's `where` against the same predicate as a datatrove LambdaFilter, on the
# same documents, in one run: rows per second of the filtering step alone (smelt: the stage's
# CPU time from the run summary, one split at a time; datatrove 0.10.1, two figures: the step's
# time_stats total (one task, one worker), which times its filter calls only, and its `run` over
# the documents already in memory, which is what a pipeline spends in the step (the calls and
# BaseFilter.run's work per document: its stats, the generator) and the basis python_stage.sh
# uses). smelt and datatrove's run: the fastest of REPEAT (default 3), in turns.
# Predicate: length(text) > 500 / len(doc.text) > 500.
#
#   bench/sql_where.sh                      # 1,000,000 generated documents, target/release/smelt
#   DOCS=200000 SMELT_BIN=target/debug/smelt bench/sql_where.sh
#   SQL_WHERE='octet_length(text) > 500' bench/sql_where.sh   # the same predicate on ASCII text, in bytes
#
# Needs python3; installs datatrove 0.10.1 (+ orjson, regex) into $VENV (default ~/.cache/smelt-dt-venv)
# from PyPI once. Results: bench/results/sql-where-run.tsv (one line per run; sql-where.tsv holds the
# runs from before the second datatrove figure).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DOCS=${DOCS:-1000000}
SQL_WHERE=${SQL_WHERE:-length(text) > 500}
SMELT_BIN=${SMELT_BIN:-$ROOT/target/release/smelt}
VENV=${VENV:-$HOME/.cache/smelt-dt-venv}
OUT=$ROOT/bench/results/sql-where-run.tsv
REPEAT=${REPEAT:-3}
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

cat > "$WORK/dt-run.py" <<'PY'
import json, sys, time
from datatrove.pipeline.filters import LambdaFilter
from datatrove.pipeline.readers import JsonlReader
docs = list(JsonlReader(f"{sys.argv[1]}/in", glob_pattern="docs.jsonl")())
step = LambdaFilter(lambda doc: len(doc.text) > 500)
start = time.perf_counter()
kept = sum(1 for _ in step.run(iter(docs)))
print(json.dumps({"seconds": time.perf_counter() - start, "docs": len(docs), "dropped": len(docs) - kept}))
PY

# In turns, fastest of each: this machine's speed drifts over minutes.
smelt_json="" run_json=""
for _ in $(seq "$REPEAT"); do
    rm -rf "$WORK/data"
    one=$("$SMELT_BIN" --data-dir "$WORK/data" run "$WORK/p.yaml" --format json --no-progress --parallelism 1 2>/dev/null)
    smelt_json=$(python3 -c 'import json, sys
busy = lambda r: next(x for x in json.loads(r)["stages"] if x["stage"] == "rules")["busy_ms"]
a, b = sys.argv[1], sys.argv[2]
print(b if not a or busy(b) < busy(a) else a)' "$smelt_json" "$one")
    one=$("$VENV/bin/python" "$WORK/dt-run.py" "$WORK" 2>/dev/null | tail -1)
    run_json=$(python3 -c 'import json, sys
a, b = sys.argv[1], sys.argv[2]
print(b if not a or json.loads(b)["seconds"] < json.loads(a)["seconds"] else a)' "$run_json" "$one")
done

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

[ -f "$OUT" ] || printf 'date\tdocs\twhere\tsmelt_bin\tsmelt_dropped\tsmelt_stage_s\tsmelt_rows_per_s\tdatatrove_dropped\tdatatrove_step_s\tdatatrove_rows_per_s\tratio\tdatatrove_run_s\tdatatrove_run_rows_per_s\tratio_to_run\n' > "$OUT"
python3 - "$smelt_json" "$dt_json" "$DOCS" "$SMELT_BIN" "$OUT" "$SQL_WHERE" "$run_json" <<'PY'
import datetime, json, sys
s, d, n, binary, out, where = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
r = json.loads(sys.argv[7])
stage = next(x for x in s["stages"] if x["stage"] == "rules")
s_sec = stage["busy_ms"] / 1000
s_rate, d_rate = stage["rows_in"] / s_sec, d["docs"] / d["seconds"]
dropped = stage["drops"].get("short", 0)
assert dropped == d["dropped"] == r["dropped"], f"smelt dropped {dropped}, datatrove {d['dropped']} and {r['dropped']}"
r_rate = r["docs"] / r["seconds"]
row = [datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"), n, where, binary.split("/")[-2], dropped,
       f"{s_sec:.3f}", f"{s_rate:,.0f}", d["dropped"], f"{d['seconds']:.3f}", f"{d_rate:,.0f}", f"{s_rate / d_rate:.1f}x",
       f"{r['seconds']:.3f}", f"{r_rate:,.0f}", f"{s_rate / r_rate:.1f}x"]
print("docs\tsmelt rows/s\tdatatrove time_stats rows/s\tratio\tdatatrove run rows/s\tratio")
print(f"{n}\t{s_rate:,.0f}\t{d_rate:,.0f}\t{s_rate / d_rate:.1f}x\t{r_rate:,.0f}\t{s_rate / r_rate:.1f}x")
open(out, "a").write("\t".join(map(str, row)) + "\n")
PY
