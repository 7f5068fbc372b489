#!/usr/bin/env bash
# Throughput of `back_translate` with the Apertium backend: Reuters-21578
# stories back-translated to English via Spanish and via Catalan, with the
# default pool (one Apertium pipeline per CPU and direction), no cache, and
# the default guards. Reports documents/s and words/s (words of the input
# stories per wall second), and CPU utilisation: the CPU time of smelt and
# every Apertium process it ran (they are its children) over wall time, and
# the busy share of each core during the run from /proc/stat (machine-wide:
# other users' load counts there too).
#
#   bench/back_translate.sh                 # N=1000 stories, FILES=4 JSONL files (splits)
#   N=3000 PIVOTS="es ca" bench/back_translate.sh
#
# Needs: apt-get install apertium apertium-eng-spa apertium-eng-cat, and the
# release binary (cargo build --release --locked -q --workspace --bins --examples).
# Input: the first N stories of ../shared/data/news/reuters21578 with a body
# of at least 20 words, title + blank line + body (as tests/fixtures/reuters).
# Figures: a table on stdout and $WORK/figures.json.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
N=${N:-1000}
FILES=${FILES:-4}
PIVOTS=${PIVOTS:-"es ca"}
WORK=${WORK:-/tmp/smelt-back-translate}
SMELT=${SMELT:-$PWD/target/release/smelt}
[ -x "$SMELT" ] || { echo "build first: cargo build --release --locked -q --workspace --bins --examples" >&2; exit 1; }
mkdir -p "$WORK/in"

python3 - "$SHARED/data/news/reuters21578" "$WORK/in" "$N" "$FILES" <<'PY'
import glob, html, json, re, sys
src, out, n, files = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
docs = []
for path in sorted(glob.glob(f"{src}/reut2-*.sgm")):
    raw = open(path, encoding="latin-1").read()
    for story in re.findall(r"<REUTERS.*?</REUTERS>", raw, re.S):
        newid = re.search(r'NEWID="(\d+)"', story).group(1)
        title = re.search(r"<TITLE>(.*?)</TITLE>", story, re.S)
        body = re.search(r"<BODY>(.*?)</BODY>", story, re.S)
        if not (title and body) or len(body.group(1).split()) < 20:
            continue
        text = html.unescape(title.group(1)).strip() + "\n\n" + html.unescape(body.group(1)).replace("\x03", "").rstrip() + "\n"
        docs.append({"id": f"reuters-{newid}", "text": text, "source": "reuters:1987"})
        if len(docs) == n:
            break
    if len(docs) == n:
        break
for f in glob.glob(f"{out}/*.jsonl"):
    import os; os.remove(f)
for i in range(files):
    with open(f"{out}/part-{i:02d}.jsonl", "w") as f:
        for d in docs[i::files]:
            f.write(json.dumps(d) + "\n")
words = sum(len(d["text"].split()) for d in docs)
json.dump({"docs": len(docs), "words": words, "chars": sum(len(d["text"]) for d in docs)}, open(f"{out}/../input.json", "w"))
print(f"input: {len(docs)} stories, {words} words, {files} files", file=sys.stderr)
PY

for pivot in $PIVOTS; do
  cat > "$WORK/bt-$pivot.yaml" <<EOF
dataset: bt-bench-$pivot
stages:
  news:
    type: jsonl
    paths: [in/*.jsonl]
  augmented:
    type: back_translate
    inputs: [news]
    pivots: [$pivot]
    cache: false
  out:
    type: parquet
    inputs: [augmented]
EOF
done

python3 - "$SMELT" "$WORK" $PIVOTS <<'PY'
import json, os, resource, shutil, subprocess, sys, threading, time
smelt, work, pivots = sys.argv[1], sys.argv[2], sys.argv[3:]
inp = json.load(open(f"{work}/input.json"))

def cpu_times():
    out = []
    for line in open("/proc/stat"):
        if line.startswith("cpu") and line[3].isdigit():
            v = list(map(int, line.split()[1:]))
            out.append((sum(v), v[3] + v[4]))  # total, idle + iowait
    return out

results = []
for pivot in pivots:
    data = f"{work}/data-{pivot}"
    shutil.rmtree(data, ignore_errors=True)
    load = os.getloadavg()[0]
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    c0 = cpu_times()
    t0 = time.time()
    r = subprocess.run([smelt, "--data-dir", data, "run", f"{work}/bt-{pivot}.yaml", "--format", "json"],
                       capture_output=True, text=True)
    wall = time.time() - t0
    c1 = cpu_times()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        sys.exit(f"smelt failed: {r.stderr}")
    rep = json.loads(r.stdout)
    stage = next(s for s in rep["stages"] if s["stage"] == "augmented")
    cpu = (after.ru_utime - before_children.ru_utime) + (after.ru_stime - before_children.ru_stime)
    cores = [round(100 * (1 - (b[1] - a[1]) / max(1, b[0] - a[0])), 1) for a, b in zip(c0, c1)]
    res = {
        "pivot": pivot, "docs": inp["docs"], "words": inp["words"], "wall_s": round(wall, 2),
        "docs_per_s": round(inp["docs"] / wall, 2), "words_per_s": round(inp["words"] / wall),
        "cpu_s": round(cpu, 1), "cpu_utilisation_pct": round(100 * cpu / wall, 1),
        "core_busy_pct": cores, "load_before": round(load, 2), "counters": stage["counters"],
        "rows_out": stage["rows_out"],
    }
    results.append(res)
json.dump(results, open(f"{work}/figures.json", "w"), indent=1)
print("| chain | stories | words | wall s | docs/s | words/s | CPU s (smelt + Apertium) | CPU % of wall | cores busy % | augmented | rejected |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in results:
    rej = sum(v for k, v in r["counters"].items() if k.startswith("rejected:"))
    print(f"| en>{r['pivot']}>en | {r['docs']:,} | {r['words']:,} | {r['wall_s']} | {r['docs_per_s']} | {r['words_per_s']:,} | "
          f"{r['cpu_s']} | {r['cpu_utilisation_pct']} | {' / '.join(map(str, r['core_busy_pct']))} | {r['counters'].get('augmented', 0):,} | {rej:,} |")
PY
