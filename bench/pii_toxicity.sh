#!/usr/bin/env bash
# Throughput of the `pii` and `toxicity` stages on one thread
# (stages/examples/bench_pii_toxicity.rs), on real text, next to the
# peers on the same text: datatrove 0.10.1's PIIFormatter (emails and IPv4
# only) and C4's bad-words test as datatrove's C4BadWordsFilter runs it
# (one regex of the LDNOOBW `en` list, `\W`-flanked, over `text.lower()`).
#
#   bash bench/pii_toxicity.sh              # Reuters-21578 news + DEBDOCS-SYNTH web pages
#   ITERS=5 SHARDS=1 bash bench/pii_toxicity.sh
#
# Inputs (built once under $WORK, default /tmp/smelt-pii-toxicity):
# - reuters.jsonl: the 21,578 Reuters-21578 stories (../shared/data/news/reuters21578), title + body;
# - debdocs.jsonl: text of the DEBDOCS-SYNTH HTML pages ($PEERS/data/warc, SHARDS of the 4 shards:
#   Debian documentation with maintainer addresses, example IPs and URLs), extracted with
#   resiliparse 2.0.1 extract_plain_text (whole page, not only main content).
# Figures: a table on stdout and $WORK/pii_toxicity.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=${PEERS:-$HOME/.cache/smelt-peers}
SHARED=${SHARED:-../shared}
ITERS=${ITERS:-3}
SHARDS=${SHARDS:-4}
WORK=${WORK:-/tmp/smelt-pii-toxicity}
py=$PEERS/venv/bin/python
[ -x "$py" ] || { echo "peer venv missing: bash ../shared/peers/setup.sh" >&2; exit 1; }
mkdir -p "$WORK"

cargo build --release --locked -q --workspace --bins --examples  # workspace features: reuses the smelt build
bench=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/examples/bench_pii_toxicity

if [ ! -s "$WORK/reuters.jsonl" ]; then
  python3 - "$SHARED/data/news/reuters21578" "$WORK/reuters.jsonl" <<'PY'
import glob, html, json, re, sys
src, out = sys.argv[1], sys.argv[2]
n = 0
with open(out, "w") as f:
    for path in sorted(glob.glob(f"{src}/reut2-*.sgm")):
        raw = open(path, encoding="latin-1").read()
        for story in re.findall(r"<REUTERS.*?</REUTERS>", raw, re.S):
            newid = re.search(r'NEWID="(\d+)"', story).group(1)
            title = re.search(r"<TITLE>(.*?)</TITLE>", story, re.S)
            body = re.search(r"<BODY>(.*?)</BODY>", story, re.S)
            text = "\n".join(html.unescape(m.group(1)).strip() for m in (title, body) if m)
            if text:
                f.write(json.dumps({"id": f"reuters-{newid}", "text": text}) + "\n")
                n += 1
print(f"reuters: {n} stories", file=sys.stderr)
PY
fi

if [ ! -s "$WORK/debdocs.jsonl" ]; then
  "$py" - "$WORK/debdocs.jsonl" $(ls "$PEERS"/data/warc/DEBDOCS-SYNTH-*.warc.gz | head -n "$SHARDS") <<'PY'
import json, sys
from fastwarc.warc import ArchiveIterator, WarcRecordType
from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.encoding import bytes_to_str, detect_encoding
n = 0
with open(sys.argv[1], "w") as f:
    for path in sys.argv[2:]:
        for rec in ArchiveIterator(open(path, "rb"), record_types=WarcRecordType.response, parse_http=True):
            body = rec.reader.read()
            text = extract_plain_text(bytes_to_str(body, detect_encoding(body)), main_content=False)
            if text.strip():
                f.write(json.dumps({"id": rec.record_id, "text": text, "url": rec.headers.get("WARC-Target-URI")}) + "\n")
                n += 1
print(f"debdocs: {n} pages", file=sys.stderr)
PY
fi

for input in reuters debdocs; do
  "$bench" --iters "$ITERS" "$WORK/$input.jsonl" | sed "s/^/$input /" > "$WORK/$input.smelt.txt"
done

"$py" - "$WORK" "$ITERS" "$(pwd)/stages/lexicons/ldnoobw/en" "$PEERS" <<'PY'
import json, re, sys, time
sys.path.insert(0, sys.argv[4])
import common  # noqa: F401  (offline environment for datatrove)
from datatrove.pipeline.formatters.pii import PIIFormatter

work, iters, en_list = sys.argv[1], int(sys.argv[2]), sys.argv[3]
# C4BadWordsFilter._get_badwords for "en", with the word list read from the bundled copy.
words = {w.strip() for w in open(en_list, encoding="utf-8")} - {"sm", "グロ", "女の子", "性", ""}
c4 = re.compile(r"(?:\W|^)({})(?:\W|$)".format("|".join(re.escape(w) for w in words)))
rows, sets = [], {}
for name in ["reuters", "debdocs"]:
    records = [json.loads(l) for l in open(f"{work}/{name}.jsonl")]
    texts = [r["text"] for r in records]
    mb = sum(len(t.encode()) for t in texts) / 1e6
    for line in open(f"{work}/{name}.smelt.txt"):
        _, obj = line.split(" ", 1)
        r = json.loads(obj)
        opts = r["options"]
        label = r["stage"] + (" (languages: en)" if opts.get("languages") == ["en"] else " (all 28 lists)" if r["stage"] == "toxicity" else "")
        what = ", ".join(f"{k.split(':')[1]} {v}" for k, v in r["counters"].items() if k.startswith("redacted:")) if r["stage"] == "pii" else f"{r['flagged']} flagged"
        rows.append((name, f"smelt {label}", r["docs"], r["mb"], r["seconds"], what))
        if r["stage"] == "toxicity" and opts.get("languages") == ["en"]:
            smelt_en = set(r["flagged_ids"])
    best, hits = float("inf"), 0
    for _ in range(iters):
        f = PIIFormatter()
        t0 = time.perf_counter()
        out = [f.format(t) for t in texts]
        best = min(best, time.perf_counter() - t0)
    hits = sum(a != b for a, b in zip(texts, out))
    rows.append((name, "datatrove PIIFormatter (emails, IPv4)", len(texts), mb, best, f"{hits} docs changed"))
    best = float("inf")
    for _ in range(iters):
        t0 = time.perf_counter()
        flagged = sum(c4.search(t.lower()) is not None for t in texts)
        best = min(best, time.perf_counter() - t0)
    rows.append((name, "C4 bad words, datatrove regex (en)", len(texts), mb, best, f"{flagged} flagged"))
    # The same documents? Compare the id sets, not only the counts.
    c4_ids = {r["id"] for r in records if c4.search(r["text"].lower()) is not None}
    sets[name] = {"smelt_en": len(smelt_en), "c4_regex": len(c4_ids), "both": len(smelt_en & c4_ids),
                  "only_smelt": sorted(smelt_en - c4_ids)[:20], "only_c4": sorted(c4_ids - smelt_en)[:20],
                  "only_smelt_count": len(smelt_en - c4_ids), "only_c4_count": len(c4_ids - smelt_en)}

print("| input | stage | docs | MB | s (best of %d) | docs/s | MB/s | found |" % iters)
print("|---|---|---|---|---|---|---|---|")
for name, label, docs, mb, s, what in rows:
    print(f"| {name} | {label} | {docs:,} | {mb:.1f} | {s:.3f} | {docs / s:,.0f} | {mb / s:.1f} | {what} |")
for name, d in sets.items():
    same = d["only_smelt_count"] == 0 and d["only_c4_count"] == 0
    print(f"{name}: toxicity (en) flagged {d['smelt_en']}, C4 regex {d['c4_regex']}, both {d['both']}: "
          f"{'the same documents' if same else 'DIFFERENT sets'} (only smelt {d['only_smelt_count']} {d['only_smelt'][:5]}, "
          f"only C4 {d['only_c4_count']} {d['only_c4'][:5]})")
json.dump({"rows": [dict(zip(["input", "stage", "docs", "mb", "seconds", "found"], r)) for r in rows], "toxicity_en_vs_c4_ids": sets},
          open(f"{work}/pii_toxicity.json", "w"), indent=1)
print(f"figures: {work}/pii_toxicity.json")
PY
