#!/usr/bin/env python3
"""Parity of smelt's quality filters with datatrove 0.10.1's, on the same texts.

Input texts come from datatrove's own Trafilatura step, so both sides see identical text:
  * runs/extract_w2   (run_datatrove_pipeline.py --mode extract over data/warc, DEBDOCS-SYNTH)
  * runs/extract_samples (the same over the real-web WARCs in data/samples)
  * the real news pages of ../shared/data/news (trafilatura tests cache, newspaper4k tests),
    extracted with datatrove's `Trafilatura(favour_precision=True)` extractor.

For each filter, datatrove's filter runs on every document (keep/drop and reason, new text for
c4). On smelt's side the example `filters_words` (the same filter code, called in-process)
gives every document's words and verdict with its reason, and the release binary runs
`jsonl -> <filter> -> parquet` for the end-to-end check: its kept ids (and c4's rewritten
texts) are read back from the Parquet shards and must equal the in-process verdicts.
Disagreements are grouped by (datatrove reason, smelt reason) with examples. Word lists are
compared with datatrove's `split_into_words` (spaCy) document by document.

  bench/filters_parity.sh   (builds what it needs, then runs this with the peer venv)

Prints a table and writes bench/results/filters_parity.json.
"""
import argparse
import glob
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict

PEERS = os.path.expanduser("~/.cache/smelt-peers")
sys.path.insert(0, PEERS)
import common  # noqa: E402,F401  (offline environment for datatrove)

import pyarrow.parquet as pq  # noqa: E402
from datatrove.data import Document  # noqa: E402
from datatrove.pipeline.filters import (  # noqa: E402
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared", "data")

# name -> (datatrove filter factory, smelt stage options)
FILTERS = {
    "gopher_repetition": (GopherRepetitionFilter, {}),
    "gopher_quality": (GopherQualityFilter, {}),
    "c4": (C4QualityFilter, {}),
    "c4_fineweb": (lambda: C4QualityFilter(filter_no_terminal_punct=False), {"filter_no_terminal_punct": False}),
    "fineweb": (FineWebQualityFilter, {}),
}
STAGE_TYPE = {"c4_fineweb": "c4"}


def read_jsonl_dir(d, tag):
    docs = []
    for f in sorted(glob.glob(os.path.join(d, "output", "*.jsonl*"))):
        op = gzip.open if f.endswith(".gz") else open
        with op(f, "rt") as fh:
            for line in fh:
                r = json.loads(line)
                docs.append((f"{tag}:{r['id']}", r["text"]))
    return docs


def ensure_extract(out, input_dir, glob_pattern, limit):
    if not glob.glob(os.path.join(out, "output", "*.jsonl*")):
        cmd = [os.path.join(PEERS, "venv/bin/python"), "run_datatrove_pipeline.py", "--mode", "extract", "--workers", "2",
               "--input", input_dir, "--glob", glob_pattern, "--out", out]
        if limit:
            cmd += ["--limit", str(limit)]
        print("extracting:", " ".join(cmd), file=sys.stderr)
        subprocess.run(cmd, cwd=PEERS, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def news_pages():
    from datatrove.pipeline.extractors import Trafilatura

    ex = Trafilatura(favour_precision=True, timeout=5.0)
    docs = []
    for pattern in ["news/trafilatura-tests-cache/*.html*", "news/newspaper4k-0.9.6-tests-data/html/*.html"]:
        for f in sorted(glob.glob(os.path.join(SHARED, pattern))):
            raw = open(f, "rb").read()
            if f.endswith(".gz"):
                raw = gzip.decompress(raw)
            text = ex.extract(raw.decode("utf-8", errors="replace"))
            if text:
                docs.append((f"news:{os.path.basename(f)}", text))
    return docs


def collect(limit):
    docs = []
    w2 = os.path.join(PEERS, "runs", "extract_w2")
    ensure_extract(w2, os.path.join(PEERS, "data", "warc"), "*.warc.gz", limit)
    docs += read_jsonl_dir(w2, "debdocs")
    samples = os.path.join(PEERS, "runs", "extract_samples")
    ensure_extract(samples, os.path.join(PEERS, "data", "samples"), "*.warc*", 0)
    docs += read_jsonl_dir(samples, "web")
    if os.path.isdir(SHARED):
        docs += news_pages()
    seen, out = set(), []
    for i, t in docs:
        if t and i not in seen:
            seen.add(i)
            out.append((i, t))
    return out


def datatrove_verdicts(name, docs):
    f = FILTERS[name][0]()
    res = {}
    t = time.process_time()
    for i, text in docs:
        d = Document(text=text, id=i)
        r = f.filter(d)
        keep, reason = (r, None) if isinstance(r, bool) else r
        res[i] = (bool(keep), reason, d.text if keep else None)
    return res, time.process_time() - t


def write_jsonl(path, docs):
    with open(path, "w") as fh:
        for i, t in docs:
            fh.write(json.dumps({"id": i, "text": t}) + "\n")


def child_cpu():
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# The cleaning recipe's four filters in bench/clean_e2e.yaml's order and settings.
CHAIN = ["gopher_repetition", "gopher_quality", "c4_fineweb", "fineweb"]


def datatrove_chain(docs):
    """The four filters one after the other, as datatrove's pipeline runs them; kept {id: text}, CPU s."""
    filters = [FILTERS[n][0]() for n in CHAIN]
    kept = {}
    t = time.process_time()
    for i, text in docs:
        d = Document(text=text, id=i)
        for f in filters:
            r = f.filter(d)
            if not (r if isinstance(r, bool) else r[0]):
                break
        else:
            kept[i] = d.text
    return kept, time.process_time() - t


def run_smelt(smelt, work, name, docs_path):
    """Runs `jsonl -> <filter> -> parquet` (no filter for name None; the four of CHAIN in turn for
    name "chain"); returns kept {id: text}, wall s, CPU s, summary."""
    names = CHAIN if name == "chain" else [name] if name else []
    d = os.path.join(work, name or "none")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    y = os.path.join(d, "p.yaml")
    with open(y, "w") as fh:
        fh.write(f"dataset: parity-{name or 'none'}\nstages:\n  docs:\n    type: jsonl\n    paths: [{docs_path}]\n")
        prev = "docs"
        for k, n in enumerate(names):
            fh.write(f"  f{k}:\n    type: {STAGE_TYPE.get(n, n)}\n    inputs: [{prev}]\n")
            for key, v in FILTERS[n][1].items():
                fh.write(f"    {key}: {json.dumps(v)}\n")
            prev = f"f{k}"
        # The parquet sink needs `content_hash`.
        fh.write(f"  hashed:\n    type: content_hash\n    inputs: [{prev}]\n")
        fh.write("  out:\n    type: parquet\n    inputs: [hashed]\n")
    t, cpu = time.perf_counter(), child_cpu()
    p = subprocess.run([smelt, "--data-dir", os.path.join(d, "data"), "run", y, "--no-progress", "--format", "json",
                        "--output", os.path.join(d, "store")], capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t, child_cpu() - cpu
    if p.returncode != 0:
        raise SystemExit(f"smelt failed for {name}: {p.stderr[-2000:]}")
    kept = {}
    for f in glob.glob(os.path.join(d, "store", "**", "*.parquet"), recursive=True):
        tb = pq.read_table(f, columns=["id", "text"])
        for i, t in zip(tb.column("id").to_pylist(), tb.column("text").to_pylist()):
            kept[i] = t
    try:
        summary = json.loads(p.stdout)
    except json.JSONDecodeError:
        summary = None
    return kept, wall, cpu, summary


def drop_reasons(summary):
    """(reason -> count) of the filter stage, from the run summary JSON, whatever its exact layout."""
    found = {}

    def walk(x):
        if isinstance(x, dict):
            for k, v in x.items():
                if k in ("drops", "dropped") and isinstance(v, dict) and all(isinstance(n, int) for n in v.values()):
                    found.update(v)
                else:
                    walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(summary)
    return found


def smelt_inproc(example, docs_path):
    t = time.perf_counter()
    p = subprocess.run([example, docs_path], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    rows = {}
    for line in p.stdout.splitlines():
        r = json.loads(line)
        rows[r["id"]] = r
    return rows, wall


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smelt", default=os.path.join(REPO, "target", "release", "smelt"))
    ap.add_argument("--example", default=os.path.join(REPO, "target", "release", "examples", "filters_words"))
    ap.add_argument("--work", default=os.path.join(PEERS, "runs", "filters_parity"))
    ap.add_argument("--limit", type=int, default=1500, help="docs per DEBDOCS shard when extracting")
    ap.add_argument("--filters", default=",".join(FILTERS))
    ap.add_argument("--examples", type=int, default=3)
    a = ap.parse_args()
    from datatrove.utils.text import split_into_words

    os.makedirs(a.work, exist_ok=True)
    docs = collect(a.limit)
    by_source = Counter(i.split(":", 1)[0] for i, _ in docs)
    docs_path = os.path.join(a.work, "docs.jsonl")
    write_jsonl(docs_path, docs)
    text_of = dict(docs)
    mine, inproc_wall = smelt_inproc(a.example, docs_path)
    same_words, word_diff_docs = 0, []
    t = time.process_time()
    for i, text in docs:
        if split_into_words(text, "en") == mine[i]["words"]:
            same_words += 1
        else:
            word_diff_docs.append(i)
    spacy_cpu = time.process_time() - t
    results = {"docs": len(docs), "by_source": dict(by_source),
               "words_identical_docs": same_words, "words_differ_examples": word_diff_docs[:10],
               "spacy_split_cpu_s": round(spacy_cpu, 2), "smelt_inproc_wall_s": round(inproc_wall, 2), "filters": {}}
    print(f"{len(docs)} documents ({', '.join(f'{k} {v}' for k, v in sorted(by_source.items()))})")
    print(f"word lists identical to datatrove/spaCy: {same_words}/{len(docs)} documents")
    print(f"{'filter':<18} {'docs':>6} {'dt kept':>8} {'smelt kept':>10} {'agree':>7} {'agree %':>8} {'reason =':>9} "
          f"{'c4 text =':>11} {'e2e ids =':>9} {'dt cpu s':>9} {'smelt cpu s':>11}")
    smelt_ok = os.path.exists(a.smelt)
    if smelt_ok:
        # jsonl -> parquet without a filter: the I/O part of each smelt run's CPU time.
        base = [run_smelt(a.smelt, a.work, None, docs_path)[2] for _ in range(3)]
        results["smelt_io_only_cpu_s"] = round(sorted(base)[1], 2)
        print(f"smelt jsonl -> parquet without a filter: {results['smelt_io_only_cpu_s']:.2f} CPU s (median of 3)")
    for name in a.filters.split(","):
        dt, dt_cpu = datatrove_verdicts(name, docs)
        kept, wall, cpu, summary = run_smelt(a.smelt, a.work, name, docs_path) if smelt_ok else (None, float("nan"), float("nan"), None)
        agree, same_reason, classes, text_same, both_kept, e2e_same = 0, 0, defaultdict(list), 0, 0, 0
        for i, _ in docs:
            dk, dreason, dtext = dt[i]
            sreason = mine[i]["verdicts"][name]
            sk = sreason is None
            if kept is not None:
                e2e_same += (i in kept) == sk and (not sk or kept[i] == mine[i]["texts"][name])
            if dk == sk:
                agree += 1
                same_reason += dk or dreason == sreason
                if dk:
                    both_kept += 1
                    text_same += dtext == mine[i]["texts"][name]
            else:
                classes[("keep" if dk else dreason, "keep" if sk else sreason)].append(i)
        detail = []
        for (dv, sv), ids in sorted(classes.items(), key=lambda kv: -len(kv[1])):
            ex = [{"id": i, "text": text_of[i][:300]} for i in ids[: a.examples]]
            detail.append({"datatrove": dv, "smelt": sv, "count": len(ids), "examples": ex})
        n = len(docs)
        r = {
            "docs": n,
            "datatrove_kept": sum(v[0] for v in dt.values()),
            "smelt_kept": sum(mine[i]["verdicts"][name] is None for i, _ in docs),
            "agree": agree,
            "agree_pct": round(100 * agree / n, 3),
            "same_reason_pct": round(100 * same_reason / n, 3),
            "kept_text_identical": f"{text_same}/{both_kept}",
            "e2e_binary_matches_inproc": None if kept is None else f"{e2e_same}/{n}",
            "datatrove_cpu_s": round(dt_cpu, 2),
            "smelt_wall_s": round(wall, 2),
            "smelt_cpu_s": round(cpu, 2),
            "datatrove_reasons": dict(Counter(v[1] for v in dt.values() if not v[0])),
            "smelt_reasons": drop_reasons(summary) if summary else None,
            "disagreements": detail,
        }
        results["filters"][name] = r
        print(f"{name:<18} {n:>6} {r['datatrove_kept']:>8} {r['smelt_kept']:>10} {agree:>7} {r['agree_pct']:>8.2f} "
              f"{r['same_reason_pct']:>8.2f}% {r['kept_text_identical']:>11} "
              f"{(r['e2e_binary_matches_inproc'] or '-'):>9} {dt_cpu:>9.2f} {cpu:>11.2f}")
        for dd in detail:
            print(f"    datatrove {dd['datatrove']:<28} smelt {dd['smelt']:<28} {dd['count']:>5}  e.g. "
                  + ", ".join(e["id"] for e in dd["examples"]))
    if smelt_ok:
        # Same work end to end: identical extracted text through the cleaning recipe's four filters.
        dt_kept, dt_cpu = datatrove_chain(docs)
        runs = sorted((run_smelt(a.smelt, a.work, "chain", docs_path) for _ in range(3)), key=lambda r: r[2])
        kept, _, cpu, _ = runs[1]
        same = kept == dt_kept
        io = results["smelt_io_only_cpu_s"]
        results["chain"] = {"filters": CHAIN, "docs": len(docs), "datatrove_kept": len(dt_kept), "smelt_kept": len(kept),
                            "kept_ids_and_texts_identical": same, "datatrove_cpu_s": round(dt_cpu, 2),
                            "smelt_cpu_s": round(cpu, 2), "smelt_cpu_s_runs": [round(r[2], 2) for r in runs],
                            "ratio_whole_run": round(dt_cpu / cpu, 1), "ratio_filters_only": round(dt_cpu / max(cpu - io, 1e-9), 1)}
        print(f"four filters in a chain ({' -> '.join(CHAIN)}): datatrove kept {len(dt_kept)}, smelt kept {len(kept)}, "
              f"ids and texts {'identical' if same else 'DIFFERENT'}; datatrove {dt_cpu:.2f} CPU s (filter calls), "
              f"smelt {cpu:.2f} CPU s (whole run, median of 3; {cpu - io:.2f} without its jsonl -> parquet I/O): "
              f"{results['chain']['ratio_whole_run']}x whole run, {results['chain']['ratio_filters_only']}x filters only")
    os.makedirs(os.path.join(REPO, "bench", "results"), exist_ok=True)
    out = os.path.join(REPO, "bench", "results", "filters_parity.json")
    with open(out, "w") as fh:
        json.dump(results, fh, indent=1, ensure_ascii=False)
    print("wrote", out)


if __name__ == "__main__":
    main()
