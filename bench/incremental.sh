#!/usr/bin/env bash
# Incremental downstream runs (issue 22): an upstream dataset `raw` of DOCS documents
# (sentences of the real Common Crawl English text in ../shared/data/cc/dolma, recombined
# per document; FILES JSON Lines files) is cleaned by a downstream pipeline
# (langid -> gopher_repetition -> gopher_quality -> c4 -> fineweb -> pii) that reads it
# with `dataset` and `incremental: true`. Then 1% new documents arrive upstream (one more
# file), `raw` is rebuilt, and the downstream runs again: it reads only the new documents
# and appends to its previous version. Reports the wall time and peak RSS of the full run,
# of the incremental run and of a build from scratch over the new upstream version, the
# incremental run's share of a full run (goal: 1% new documents cost at most 3%), and
# checks that the incremental version has the digest of the build from scratch.
#   bash bench/incremental.sh                     (bench/run.sh incremental keeps the output)
#   DOCS=20000 SMELT_BIN=target/debug/smelt bash bench/incremental.sh   # smaller, quicker
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DOCS=${DOCS:-200000}
FILES=${FILES:-100}
NEW_PERCENT=${NEW_PERCENT:-1}
if [ -z "${SMELT_BIN:-}" ]; then
    (cd "$ROOT" && cargo build --release --locked -q --bin smelt)
    target=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    SMELT_BIN=$target/release/smelt
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

python3 - "$ROOT/../shared/data/cc/dolma" "$DOCS" "$FILES" "$NEW_PERCENT" <<'PY'
import glob, gzip, json, os, re, sys
src, docs, files, new_percent = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
sentences = []
for path in sorted(glob.glob(os.path.join(src, "*.jsonl.gz"))):
    for line in gzip.open(path, "rt", encoding="utf-8"):
        text = json.loads(line)["text"]
        sentences += [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= 5]
assert len(sentences) > 100, "too few sentences in the dolma sample"
x = 0x2545F4914F6CDD1D
def rand():
    global x
    x ^= (x << 13) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 7
    x ^= (x << 17) & 0xFFFFFFFFFFFFFFFF
    return x
def doc(i):
    k = 8 + rand() % 40
    text = " ".join(sentences[rand() % len(sentences)] for _ in range(k))
    return json.dumps({"id": f"d{i:08d}", "text": text, "url": f"https://site{i % 997}.example.org/p/{i}"})
os.makedirs("in", exist_ok=True)
per = docs // files
for f in range(files):
    with open(f"in/{f:05d}.jsonl", "w") as out:
        out.writelines(doc(i) + "\n" for i in range(f * per, (f + 1) * per))
new = int(docs * new_percent / 100)
with open("new.jsonl", "w") as out:
    out.writelines(doc(i) + "\n" for i in range(files * per, files * per + new))
PY

cat >raw.yaml <<'YAML'
dataset: raw
stages:
  docs: {type: jsonl, paths: ["in/*.jsonl"]}
  hashed: {type: content_hash, inputs: [docs]}
  out: {type: parquet, inputs: [hashed]}
YAML
clean() { # dataset, how the source reads
    cat <<YAML
dataset: $1
stages:
  raw: {type: dataset, from: raw@latest, $2}
  lang: {type: langid, inputs: [raw], languages: [en], threshold: 0.65}
  repetition: {type: gopher_repetition, inputs: [lang]}
  quality: {type: gopher_quality, inputs: [repetition]}
  c4: {type: c4, inputs: [quality], filter_no_terminal_punct: false}
  fineweb: {type: fineweb, inputs: [c4]}
  pii: {type: pii, inputs: [fineweb]}
  out: {type: parquet, inputs: [pii]}
YAML
}
clean clean "incremental: true" >clean.yaml
clean scratch "columns: [content_hash]" >scratch.yaml
run() { # name, pipeline
    /usr/bin/time -f "%e %M" -o "time-$1" "$SMELT_BIN" --data-dir data run "$2" --no-progress --format json >"run-$1.json" 2>"run-$1.err"
}
"$SMELT_BIN" --data-dir data run raw.yaml --no-progress --format json >/dev/null
run full clean.yaml
mv new.jsonl in/zzzzz-new.jsonl
"$SMELT_BIN" --data-dir data run raw.yaml --no-progress --format json >/dev/null
run incremental clean.yaml
run scratch scratch.yaml

python3 - "$SMELT_BIN" "$DOCS" "$NEW_PERCENT" <<'PY'
import json, subprocess, sys
binary, docs, new_percent = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
def show(ref):
    return json.loads(subprocess.run([binary, "--data-dir", "data", "catalog", "show", ref, "--format", "json"],
                                     check=True, capture_output=True, text=True).stdout)
def wall(name):
    s, kib = open(f"time-{name}").read().split()
    return float(s), int(kib) // 1024
print(f"upstream: {docs:,} documents, then {new_percent:g}% more ({int(docs * new_percent / 100):,}); "
      "downstream: langid -> gopher_repetition -> gopher_quality -> c4 -> fineweb -> pii")
print(f"{'run':<46} {'version':<10} {'read':>8} {'rows':>8} {'took s':>7} {'RSS MiB':>8}")
rows = {}
for name, ref, what in [("full", "clean@1", "full run over raw@1"),
                        ("incremental", "clean@2", "incremental run over raw@2 (appends)"),
                        ("scratch", "scratch@1", "build from scratch over raw@2")]:
    r = json.load(open(f"run-{name}.json"))
    m = show(ref)
    secs, rss = wall(name)
    rows[name] = (secs, m)
    print(f"{what:<46} {ref:<10} {r['stages'][0]['rows_out']:>8,} {m['totals']['rows']:>8,} {secs:>7.2f} {rss:>8}")
assert rows["incremental"][1]["digest"] == rows["scratch"][1]["digest"], "incremental and from-scratch digests differ"
print(f"digest of the incremental version and of the build from scratch: {rows['scratch'][1]['digest']}")
share = rows["incremental"][0] / rows["full"][0]
print(f"incremental run: {share:.1%} of the full run's time for {new_percent:g}% new documents (goal: at most 3%)")
PY
