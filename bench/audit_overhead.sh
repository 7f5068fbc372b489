#!/usr/bin/env bash
# Issue 9: CPU cost of adding an `audit` stage to the cleaning pipeline
# (bench/clean_e2e.yaml with `audit` between `fineweb` and `content_hash`, as
# examples/clean.yaml would have it), measured side by side on the same WARC
# input: the two pipelines alternate, REPEAT times each, one split at a time
# (--parallelism 1). Reports CPU seconds of each whole process tree
# (timed.py), the median overhead, and the audit stage's own busy time.
#
#   bash bench/audit_overhead.sh                   # 250 responses of each DEBDOCS shard = 1,000 pages, 3 runs each
#   RESPONSES=1000 REPEAT=5 bash bench/audit_overhead.sh
#
# Needs the peer environment for the input and timed.py (bash ../shared/peers/setup.sh;
# $PEERS, default ~/.cache/smelt-peers). SMELT_BIN=... skips the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=${PEERS:-$HOME/.cache/smelt-peers}
RESPONSES=${RESPONSES:-250}
REPEAT=${REPEAT:-3}
py=$PEERS/venv/bin/python
[ -x "$py" ] || { echo "peer venv missing: bash ../shared/peers/setup.sh" >&2; exit 1; }
if [ -z "${SMELT_BIN:-}" ]; then cargo build --release --locked -q --workspace --bins --examples; fi
bin=${SMELT_BIN:-$PWD/target/release/smelt}
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
python3 bench/warc_subset.py --responses "$RESPONSES" "$work/input" "$PEERS"/data/warc/DEBDOCS-SYNTH-0000[0-3].warc.gz
sed "s#INPUT#$work/input#" bench/clean_e2e.yaml > "$work/clean.yaml"
# The same pipeline with the audit stage (bundled English lexicons, LDNOOBW
# English list for the toxic flag, two gates) after the last filter.
python3 - "$work/clean.yaml" "$work/audited.yaml" <<'PY'
import sys
s = open(sys.argv[1]).read()
s = s.replace("dataset: clean_e2e", "dataset: clean_e2e_audited")
s = s.replace("""  hashed:
    type: content_hash      # the catalog's document diff needs it
    inputs: [fineweb]""", """  audit:
    type: audit
    inputs: [fineweb]
    toxicity:
      languages: [en]
    gates:
      "toxicity_rate_ratio{axis=religion} > 2.0": warn
      "top10_share{over=domain,of=docs} > 0.5": warn
  hashed:
    type: content_hash      # the catalog's document diff needs it
    inputs: [audit]""")
assert "type: audit" in s
open(sys.argv[2], "w").write(s)
PY
export PEERS_MAX_IDLE_WAIT=${PEERS_MAX_IDLE_WAIT:-10}

rm -f "$work/timed.jsonl"
for i in $(seq 1 "$REPEAT"); do
  for p in clean audited; do
    "$py" "$PEERS/timed.py" "$p-$i" -- "$bin" --data-dir "$work/data-$p-$i" run "$work/$p.yaml" --parallelism 1 --format json --no-progress \
      2> >(grep '^TIMED' | sed 's/^TIMED //' >> "$work/timed.jsonl") > "$work/$p-$i.out"
  done
done
sleep 1

python3 - "$work" "$REPEAT" <<'PY'
import json, statistics, sys
work, repeat = sys.argv[1], int(sys.argv[2])
rec = {json.loads(l)["label"]: json.loads(l) for l in open(f"{work}/timed.jsonl")}
print("| run | clean CPU s | with audit CPU s | overhead | audit stage busy ms | docs audited | load (1 min, before each) |")
print("|---|---|---|---|---|---|---|")
over = []
for i in range(1, repeat + 1):
    a, b = rec[f"clean-{i}"], rec[f"audited-{i}"]
    run = json.load(open(f"{work}/audited-{i}.out"))
    st = next(s for s in run["stages"] if s["stage"] == "audit")
    o = (b["cpu_s"] - a["cpu_s"]) / a["cpu_s"] * 100
    over.append(o)
    load = f"{a['load1_before']}/{b['load1_before']}"
    print(f"| {i} | {a['cpu_s']:.2f} | {b['cpu_s']:.2f} | {o:+.1f}% | {st['busy_ms']} | {st['rows_in']} | {load} |")
clean = statistics.median(rec[f"clean-{i}"]["cpu_s"] for i in range(1, repeat + 1))
audited = statistics.median(rec[f"audited-{i}"]["cpu_s"] for i in range(1, repeat + 1))
print(f"\nmedian CPU s: clean {clean:.2f}, with audit {audited:.2f}: overhead {(audited - clean) / clean * 100:+.1f}% (median of per-pair overheads {statistics.median(over):+.1f}%; goal <= 15%)")
PY
echo "work dir: $work"
