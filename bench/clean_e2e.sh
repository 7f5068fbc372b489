#!/usr/bin/env bash
# Issue 4, end to end: smelt's cleaning pipeline (bench/clean_e2e.yaml) vs
# datatrove 0.10.1's equivalent (WarcReader -> Trafilatura -> LanguageFilter
# -> GopherRepetition -> GopherQuality -> C4 -> FineWeb -> JsonlWriter,
# ../shared/peers/run_datatrove_pipeline.py), same WARC input, one worker
# each, in one run. Reports documents per CPU-second and the ratio.
#
#   bash bench/clean_e2e.sh                 # 250 responses from each DEBDOCS shard = 1,000 pages
#   RESPONSES=1000 bash bench/clean_e2e.sh  # 4,000 pages
#   INPUT=realweb bash bench/clean_e2e.sh   # the 440 real pages of ../shared/data (bench/realweb_warc.py)
#
# Needs the peer environment (bash ../shared/peers/setup.sh; $PEERS, default
# ~/.cache/smelt-peers). CPU time is of the whole process tree (timed.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=${PEERS:-$HOME/.cache/smelt-peers}
RESPONSES=${RESPONSES:-250}
py=$PEERS/venv/bin/python
[ -x "$py" ] || { echo "peer venv missing: bash ../shared/peers/setup.sh" >&2; exit 1; }
if [ -z "${SMELT_BIN:-}" ]; then cargo build --release --locked -q --workspace --bins --examples; fi
bin=${SMELT_BIN:-$PWD/target/release/smelt}
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
case ${INPUT:-debdocs} in
  debdocs) python3 bench/warc_subset.py --responses "$RESPONSES" "$work/input" "$PEERS"/data/warc/DEBDOCS-SYNTH-0000[0-3].warc.gz ;;
  realweb) python3 bench/realweb_warc.py "$work/input" "${SHARED_DATA:-../shared/data}" ;;
  *) echo "INPUT is debdocs or realweb" >&2; exit 2 ;;
esac
sed "s#INPUT#$work/input#" bench/clean_e2e.yaml > "$work/p.yaml"
export PEERS_MAX_IDLE_WAIT=${PEERS_MAX_IDLE_WAIT:-30}

rm -f "$work/timed.jsonl"
timed() { # label cmd...
  local label=$1; shift
  "$py" "$PEERS/timed.py" "$label" -- "$@" 2> >(grep '^TIMED' | sed 's/^TIMED //' >> "$work/timed.jsonl") > "$work/$label.out"
}
# smelt's run takes well under a second on the real pages: RUNS of it (a fresh
# catalog each), the median CPU reported; datatrove's takes minutes, run once.
runs=${RUNS:-$([ "${INPUT:-debdocs}" = realweb ] && echo 5 || echo 1)}
for i in $(seq "$runs"); do
  rm -rf "$work/data"
  timed "smelt-$i" "$bin" --data-dir "$work/data" run "$work/p.yaml" --parallelism 1 --format json --no-progress
done
cp "$work/smelt-$runs.out" "$work/smelt.out"
(cd "$PEERS" && timed datatrove "$py" run_datatrove_pipeline.py --workers 1 --input "$work/input" --out "$work/datatrove" --tag _bench)
sleep 1

"$py" - "$work" <<'PY'
import glob, gzip, json, sys
import pyarrow.parquet as pq
work = sys.argv[1]
rec = {json.loads(l)["label"]: json.loads(l) for l in open(f"{work}/timed.jsonl")}
smelt_runs = sorted((r for k, r in rec.items() if k.startswith("smelt-")), key=lambda r: r["cpu_s"])
rec["smelt"] = smelt_runs[len(smelt_runs) // 2]
if len(smelt_runs) > 1:
    print(f"smelt CPU s over {len(smelt_runs)} runs: " + ", ".join(f"{r['cpu_s']:.2f}" for r in smelt_runs) + " (median below)")
run = json.load(open(f"{work}/smelt.out"))
docs_in = run["stages"][0]["rows_out"] if "stages" in run else None
smelt_ids, smelt_text, dt_text = set(), {}, {}
for f in glob.glob(f"{work}/data/datasets/clean_e2e/**/*.parquet", recursive=True):
    t = pq.read_table(f, columns=["id", "text"])
    smelt_text.update(zip(t.column("id").to_pylist(), t.column("text").to_pylist()))
    smelt_ids |= set(t.column("id").to_pylist())
dt_ids = set()
for f in glob.glob(f"{work}/datatrove/output/*.jsonl.gz"):
    for line in gzip.open(f, "rt"):
        d = json.loads(line)
        doc_id = d["id"].strip("<>")  # datatrove keeps the WARC-Record-ID's brackets
        dt_ids.add(doc_id)
        dt_text[doc_id] = d["text"]
dt = json.load(open(glob.glob(f"{work}/datatrove/logs/stats.json")[0]))
dt_in = next(s["stats"].get("documents", 0) for s in dt if "WARC" in s["name"] or "Warc" in s["name"])
dt_in = dt_in.get("total", dt_in) if isinstance(dt_in, dict) else dt_in
rows = []
for label, n_in, kept in [("smelt", docs_in, len(smelt_ids)), ("datatrove 0.10.1", dt_in, len(dt_ids))]:
    r = rec["smelt" if label == "smelt" else "datatrove"]
    rows.append((label, n_in, kept, r["cpu_s"], r["wall_s"], r["maxrss_MB"], n_in / r["cpu_s"]))
print(f"| pipeline | docs in | kept | CPU s | wall s | peak RSS MB | docs per CPU-s |")
print(f"|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2f} | {r[4]:.2f} | {r[5]} | {r[6]:.1f} |")
print(f"\nratio (docs per CPU-second, smelt / datatrove): {rows[0][6] / rows[1][6]:.1f}x")
both = smelt_ids & dt_ids
union = smelt_ids | dt_ids
print(f"kept-set agreement: {len(both)} kept by both, {len(smelt_ids - dt_ids)} only smelt, {len(dt_ids - smelt_ids)} only datatrove (Jaccard {len(both) / max(1, len(union)):.3f})")
# How the kept texts differ where both kept a page: words (lowercased \w+ runs)
# of smelt's text against those of datatrove's Trafilatura text, as bags.
import collections, re
def bag(text):
    return collections.Counter(re.findall(r"\w+", text.lower()))
over = mine = theirs = 0
for i in both:
    a, b = bag(smelt_text[i]), bag(dt_text[i])
    over += sum((a & b).values()); mine += sum(a.values()); theirs += sum(b.values())
if both:
    print(f"texts of the {len(both)} kept by both: smelt {mine:,} words, datatrove {theirs:,}; "
          f"{over / max(1, mine):.3f} of smelt's words are in datatrove's text, {over / max(1, theirs):.3f} of datatrove's in smelt's")
if "stages" in run:
    print("\nsmelt funnel:")
    for s in run["stages"]:
        print(f"  {s['stage']:<12} in {s['rows_in']:>6} out {s['rows_out']:>6} cpu {s.get('busy_ms', 0) / 1000:.2f}s drops {s.get('drops', {})}")
print("\ndatatrove steps:")
for s in dt:
    print(f"  {s['name']:<40} {json.dumps({k: v for k, v in s.get('stats', {}).items() if k in ('documents', 'forwarded', 'dropped')})} time {s.get('time_stats', {}).get('total', 0):.1f}s")
PY
echo "work dir: $work"
