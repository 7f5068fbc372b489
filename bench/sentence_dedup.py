"""Sentence dedup parity and speed: smelt's `dedup_sentences` against
datatrove 0.10.1's SentenceDedup (SentenceDedupSignature, SentenceFindDedups,
SentenceDedupFilter; SentDedupConfig() defaults, English) on the same input.

    bench/sentence_dedup.sh
    python bench/sentence_dedup.py WORK INPUT_NAME=PATH ...

Each input is either a directory of *.jsonl(.gz) files or a Reuters-21578
directory (reut2-*.sgm: every story with a body, title and body as text).
Both sides read the same JSONL, dedup with one worker and write what they
keep (datatrove: JSONL through its LocalPipelineExecutor, one task per step;
smelt: Parquet into a fresh data directory, --parallelism 1). CPU seconds are
user + sys of the process tree. Parity: per document, the two outputs are
equal (same text, or both dropped); the removed-span agreement is the share
of documents datatrove cuts or drops that smelt cuts or drops identically.
Memory: smelt's peak RSS on the input and on the input twice (the copy's ids
renamed, so every document of the copy is a duplicate of its original).
"""
import glob
import gzip
import html
import json
import os
import re
import shutil
import subprocess
import sys

PEERS = os.path.expanduser("~/.cache/smelt-peers")
sys.path.insert(0, PEERS)
import common  # noqa: E402,F401  (sets the offline environment)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from minhash_parity import timed  # noqa: E402  (CPU of the process tree, exit on failure)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMELT = os.environ.get("SMELT_BIN", os.path.join(ROOT, "target", "release", "smelt"))
PY = os.path.join(PEERS, "venv", "bin", "python")

DATATROVE = r'''
import sys
sys.path.insert(0, %(peers)r)
import common
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup.sentence_dedup import (SentDedupConfig, SentenceDedupFilter,
    SentenceDedupSignature, SentenceFindDedups)
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers.jsonl import JsonlWriter
cfg = SentDedupConfig()
inp, base = %(inp)r, %(base)r
for name, pipe in [
    ("1", [JsonlReader(inp), SentenceDedupSignature(output_folder=base + "/sigs", config=cfg)]),
    ("2", [SentenceFindDedups(data_folder=base + "/sigs", output_folder=base + "/dups", config=cfg)]),
    ("3", [JsonlReader(inp), SentenceDedupFilter(data_folder=base + "/dups", config=cfg),
           JsonlWriter(base + "/out", compression=None)]),
]:
    LocalPipelineExecutor(pipeline=pipe, tasks=1, workers=1, logging_dir=base + "/logs/" + name).run()
'''


def reuters(path):
    out = []
    for f in sorted(glob.glob(os.path.join(path, "reut2-*.sgm"))):
        sgm = open(f, encoding="latin-1").read()
        for m in re.finditer(r"<REUTERS (.*?)>(.*?)</REUTERS>", sgm, re.S):
            body = re.search(r"<BODY>(.*?)</BODY>", m.group(2), re.S)
            if not body:
                continue
            title = re.search(r"<TITLE>(.*?)</TITLE>", m.group(2), re.S)
            text = html.unescape(body.group(1)).replace("\x03", "").strip()
            if title:
                text = html.unescape(title.group(1)).strip() + "\n" + text
            newid = re.search(r'NEWID="(\d+)"', m.group(1)).group(1)
            out.append({"id": f"reuters-{newid}", "text": text})
    return out


def read_docs(path):
    if glob.glob(os.path.join(path, "reut2-*.sgm")):
        return reuters(path)
    docs = []
    for f in sorted(glob.glob(os.path.join(path, "*.jsonl*"))):
        with gzip.open(f, "rt") if f.endswith(".gz") else open(f) as fh:
            docs.extend({"id": d["id"], "text": d["text"]} for d in map(json.loads, fh) if d)
    return docs


def write_input(docs, d):
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    with open(os.path.join(d, "00000.jsonl"), "w") as f:
        for x in docs:
            f.write(json.dumps(x, ensure_ascii=False) + "\n")


def run_datatrove(inp, base):
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base)
    script = os.path.join(base, "run.py")
    open(script, "w").write(DATATROVE % {"peers": PEERS, "inp": inp, "base": base})
    _, wall, cpu = timed([PY, script], cwd=PEERS)
    kept = {}
    for f in glob.glob(os.path.join(base, "out", "*.jsonl")):
        for line in open(f):
            d = json.loads(line)
            kept[d["id"]] = d["text"]
    return {"wall_s": wall, "cpu_s": cpu, "kept": kept}


def run_smelt(inp, base, rss=False):
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base)
    yaml = os.path.join(base, "p.yaml")
    open(yaml, "w").write(f"""dataset: sd
stages:
  docs: {{type: jsonl, paths: ["{inp}/*.jsonl"]}}
  cut: {{type: dedup_sentences, inputs: [docs]}}
  hashed: {{type: content_hash, inputs: [cut]}}
  out: {{type: parquet, inputs: [hashed]}}
""")
    env = dict(os.environ, SMELT_DATA_DIR=os.path.join(base, "data"))
    cmd = [SMELT, "run", yaml, "--parallelism", "1", "--format", "json"]
    if rss:
        cmd = ["/usr/bin/time", "-f", "%M", "-o", os.path.join(base, "rss")] + cmd
    p, wall, cpu = timed(cmd, env=env)
    summary = json.loads(p.stdout)
    out = os.path.join(base, "kept.json")
    timed([SMELT, "sql", 'SELECT id, text FROM "sd@1"', "--format", "json", "--output", out], env=env)
    kept = {r["id"]: r["text"] for r in json.load(open(out))}
    stage = next(s for s in summary["stages"] if s["stage"] == "cut")
    r = {"wall_s": wall, "cpu_s": cpu, "kept": kept, "stage": stage}
    if rss:
        r["rss_mib"] = int(open(os.path.join(base, "rss")).read().split()[-1]) / 1024
    return r


def one(name, path, work):
    docs = read_docs(path)
    inp = os.path.join(work, name, "input")
    write_input(docs, inp)
    dt = run_datatrove(inp, os.path.join(work, name, "datatrove"))
    sm = run_smelt(inp, os.path.join(work, name, "smelt"), rss=True)
    # Twice the input: the copy's ids renamed.
    inp2 = os.path.join(work, name, "input2")
    write_input(docs + [{"id": d["id"] + "-copy", "text": d["text"]} for d in docs], inp2)
    sm2 = run_smelt(inp2, os.path.join(work, name, "smelt2"), rss=True)
    equal = changed_dt = changed_same = 0
    diffs = []
    for d in docs:
        a, b = dt["kept"].get(d["id"]), sm["kept"].get(d["id"])
        equal += a == b
        if a != d["text"]:
            changed_dt += 1
            changed_same += a == b
        if a != b:
            diffs.append(d["id"])
    mb = sum(len(d["text"].encode()) for d in docs) / 1e6
    fig = {
        "input": name, "path": path, "documents": len(docs), "mb": round(mb, 2),
        "datatrove_cut": sum(1 for d in docs if dt["kept"].get(d["id"]) not in (None, d["text"])),
        "datatrove_dropped": sum(1 for d in docs if d["id"] not in dt["kept"]),
        "smelt_cut": sum(1 for d in docs if sm["kept"].get(d["id"]) not in (None, d["text"])),
        "smelt_dropped": sum(1 for d in docs if d["id"] not in sm["kept"]),
        "equal_outputs": equal,
        "removed_span_agreement": round(changed_same / changed_dt, 4) if changed_dt else 1.0,
        "differences": diffs[:20],
        "datatrove_cpu_s": round(dt["cpu_s"], 2), "datatrove_wall_s": round(dt["wall_s"], 2),
        "smelt_cpu_s": round(sm["cpu_s"], 3), "smelt_wall_s": round(sm["wall_s"], 3),
        "speedup_per_cpu_s": round(dt["cpu_s"] / sm["cpu_s"], 1),
        "smelt_rss_mib": round(sm["rss_mib"], 1), "smelt_rss_mib_2x": round(sm2["rss_mib"], 1),
        "smelt_2x_dropped_copies": sum(1 for d in docs if d["id"] + "-copy" not in sm2["kept"]),
        "smelt_counters": sm["stage"].get("counters", {}),
    }
    return fig


def main():
    work = os.path.abspath(sys.argv[1])
    os.makedirs(work, exist_ok=True)
    figs = [one(*arg.split("=", 1), work) for arg in sys.argv[2:]]
    print("| input | docs | MB | datatrove cut / dropped | smelt cut / dropped | equal outputs | removed-span agreement | datatrove CPU s | smelt CPU s | speed-up per CPU-s | smelt peak RSS 1x / 2x MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for f in figs:
        print(f"| {f['input']} | {f['documents']} | {f['mb']} | {f['datatrove_cut']} / {f['datatrove_dropped']} | "
              f"{f['smelt_cut']} / {f['smelt_dropped']} | {f['equal_outputs']} of {f['documents']} | "
              f"{f['removed_span_agreement']} | {f['datatrove_cpu_s']} | {f['smelt_cpu_s']} | {f['speedup_per_cpu_s']}x | "
              f"{f['smelt_rss_mib']} / {f['smelt_rss_mib_2x']} |")
    for f in figs:
        if f["differences"]:
            print(f"{f['input']}: outputs differ for {', '.join(f['differences'])}")
        print(f"{f['input']}: 2x input drops every copy's duplicate windows; copies dropped: {f['smelt_2x_dropped_copies']}")
    with open(os.path.join(work, "figures.json"), "w") as fh:
        json.dump(figs, fh, indent=1)
    print(f"figures: {os.path.join(work, 'figures.json')}")


if __name__ == "__main__":
    main()
