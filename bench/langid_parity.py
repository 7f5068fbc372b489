"""Language-ID parity and speed: smelt's `langid` stage (its own fastText reader
running LID-176) against Python fastText 0.9.2 on the same texts.

    bench/langid_parity.sh            # corpus -> Python fastText -> smelt -> table; figures in bench/results/langid_parity.json
    python bench/langid_parity.py fixture stages/tests/fixtures/langid   # regenerate the test fixture

Python side: exactly what datatrove's LanguageFilter/FT176LID does,
`model.predict(text.replace("\n", " "), k=-1)`, best label = max score.
smelt side, twice: the model alone (target/release/examples/langid_predict,
one thread, CPU seconds of a pass over the texts in memory, like the Python
loop), and the stage in a pipeline `jsonl -> langid (label_only) -> parquet`
run by target/release/smelt with one split (CPU of that run minus the CPU of
the same run without langid). Both outputs are compared with Python's.
Figures are medians of 3 passes/runs.
"""
import glob
import gzip
import html
import json
import os
import re
import subprocess
import sys
import time

PEERS = os.path.expanduser("~/.cache/smelt-peers")
sys.path.insert(0, PEERS)
import common  # noqa: E402  (sets the offline environment)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
MODEL = os.path.join(ROOT, "models", "lid.176.ftz")


def has_words(text):
    # smelt labels text with no fastText token `unknown` (datatrove would say `en` from "</s>" alone); left out here.
    return any(c not in " \n\r\t\v\f\0" for c in text)


def newspaper4k():
    for p in sorted(glob.glob(os.path.join(SHARED, "news/newspaper4k-0.9.6-tests-data/txt/*.txt"))):
        yield "newspaper4k/" + os.path.basename(p), open(p, encoding="utf-8").read()


def reuters():
    body = re.compile(r"<BODY>(.*?)</BODY>", re.S)
    newid = re.compile(r'NEWID="(\d+)"')
    for p in sorted(glob.glob(os.path.join(SHARED, "news/reuters21578/*.sgm"))):
        raw = open(p, encoding="latin-1").read()
        for doc in raw.split("</REUTERS>"):
            m, i = body.search(doc), newid.search(doc)
            if m and i:
                yield "reuters/" + i.group(1), html.unescape(m.group(1))


def trafilatura_cache():
    import trafilatura
    for p in sorted(glob.glob(os.path.join(SHARED, "news/trafilatura-tests-cache/*.html"))):
        raw = open(p, "rb").read()
        text = trafilatura.extract(raw, include_comments=False) or ""
        yield "trafilatura/" + os.path.basename(p), text


def dolma():
    for p in sorted(glob.glob(os.path.join(SHARED, "cc/dolma/*.jsonl.gz"))):
        for n, line in enumerate(gzip.open(p, "rt", encoding="utf-8")):
            d = json.loads(line)
            yield "dolma/%s/%d" % (os.path.basename(p), n), d["text"]


def feeds():
    """Feed entries (title, summary, content) from feed-rs 3.0.0's parsed fixtures: bbc, spiegel, ilgiornale, ..."""
    tag = re.compile(r"<[^>]*>")
    for p in sorted(glob.glob(os.path.join(SHARED, "news/feed-rs-3.0.0-fixture/*/*.serde.json"))):
        try:
            feed = json.load(open(p, encoding="utf-8"))
        except ValueError:
            continue
        for n, e in enumerate(feed.get("entries") or []):
            parts = [(e.get("title") or {}).get("content"), (e.get("summary") or {}).get("content"),
                     (e.get("content") or {}).get("body")]
            text = "\n".join(html.unescape(tag.sub(" ", x)) for x in parts if x)
            yield "feeds/%s/%d" % (os.path.basename(p), n), text


def warc_text(paths, tag, limit=None):
    """Visible text of the HTML responses (resiliparse, plain text of the whole page)."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding
    n = 0
    for p in paths:
        with open(p, "rb") as f:
            for rec in ArchiveIterator(f, record_types=WarcRecordType.response, parse_http=True):
                ct = rec.http_content_type or ""
                if "html" not in ct:
                    continue
                body = rec.reader.read()
                text = extract_plain_text(bytes_to_str(body, detect_encoding(body)), main_content=False)
                yield "%s/%s" % (tag, rec.record_id), text
                n += 1
                if limit and n >= limit:
                    return


def corpus():
    yield from newspaper4k()
    yield from trafilatura_cache()
    yield from dolma()
    yield from feeds()
    yield from warc_text(sorted(glob.glob(os.path.join(PEERS, "data/samples/*.warc*"))), "realweb")
    yield from reuters()
    yield from warc_text(sorted(glob.glob(os.path.join(PEERS, "data/warc/DEBDOCS-SYNTH-00000.warc.gz"))), "debdocs")


def python_fasttext(docs, runs=3):
    """Python fastText as datatrove's FT176LID calls it; median CPU and wall seconds of `runs` passes."""
    import fasttext
    model = fasttext.load_model(MODEL)
    out, cpus, walls = {}, [], []
    for _ in range(runs):
        common.wait_idle()
        cpu0, t0 = time.process_time(), time.perf_counter()
        for i, text in docs:
            labels, scores = model.predict(text.replace("\n", " "), k=-1)
            best = max(zip(labels, scores), key=lambda x: x[1])
            out[i] = (best[0].split("__")[2], float(best[1]))
        cpus.append(time.process_time() - cpu0)
        walls.append(time.perf_counter() - t0)
    return out, sorted(cpus)[runs // 2], sorted(walls)[runs // 2]


PIPELINE = """dataset: DATASET
stages:
  docs:
    type: jsonl
    paths: [corpus.jsonl]
  lang:
    type: langid
    inputs: [docs]
    label_only: true
  hashed:
    type: content_hash
    inputs: [lang]
  out:
    type: parquet
    inputs: [hashed]
"""
# The same run without the stage: its CPU time is taken off to get langid's own.
BASELINE = """dataset: DATASET
stages:
  docs:
    type: jsonl
    paths: [corpus.jsonl]
  hashed:
    type: content_hash
    inputs: [docs]
  out:
    type: parquet
    inputs: [hashed]
"""


def smelt_run(work, binary, dataset, pipeline):
    path = os.path.join(work, dataset + ".yaml")
    with open(path, "w") as f:
        f.write(pipeline.replace("DATASET", dataset))
    env = dict(os.environ, SMELT_DATA_DIR=os.path.join(work, "smelt-data"))
    common.wait_idle()
    cpu0, t0 = common.cpu_now(), time.perf_counter()
    run = subprocess.run([binary, "run", path, "--parallelism", "1"], env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, common.cpu_now() - cpu0
    if run.returncode != 0:
        raise SystemExit("smelt run failed:\n" + run.stdout + run.stderr)
    stage_busy = None
    for line in (run.stdout + run.stderr).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if "|" in line else line.split()
        if cells and cells[0] == "lang":
            stage_busy = float(cells[-1])
    return cpu, wall, stage_busy


def smelt(work, binary, runs=3):
    """Median CPU seconds of the run with langid, without it, and langid's own busy seconds."""
    with_l, without, busy, wall = [], [], [], []
    for r in range(runs):
        c, w, b = smelt_run(work, binary, "langid-parity-%d" % r, PIPELINE)
        with_l.append(c), wall.append(w), busy.append(b)
        without.append(smelt_run(work, binary, "langid-baseline-%d" % r, BASELINE)[0])
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    import pyarrow.parquet as pq
    shards = glob.glob(os.path.join(work, "smelt-data/datasets/langid-parity-0/**/*.parquet"), recursive=True)
    out = {}
    for s in sorted(shards):
        t = pq.read_table(s, columns=["id", "lang", "lang_score"])
        for i, l, sc in zip(*(t.column(c).to_pylist() for c in ("id", "lang", "lang_score"))):
            out[i] = (l, sc)
    return out, med(with_l) - med(without), med(busy), med(wall), med(with_l), med(without)


def predict_example(work):
    """smelt's fastText reader alone: label and score per id, median CPU and wall seconds of a pass."""
    common.wait_idle()
    run = subprocess.run([os.path.join(ROOT, "target", "release", "examples", "langid_predict"),
                          os.path.join(work, "corpus.jsonl")], capture_output=True, text=True, check=True)
    out = {}
    for line in run.stdout.splitlines():
        i, label, score = line.split("\t")
        out[i] = (label, float(score))
    m = re.search(r"median ([0-9.]+) s wall, ([0-9.]+) s CPU", run.stderr)
    return out, float(m.group(2)), float(m.group(1))


def fixture(dest):
    """A small real multilingual fixture for the unit tests, with Python fastText's answers."""
    import fasttext
    model = fasttext.load_model(MODEL)
    os.makedirs(dest, exist_ok=True)
    docs = [(i, t[:600]) for i, t in newspaper4k() if has_words(t)]
    docs += [(i, t[:600]) for i, t in dolma()][:6]
    docs += [(i, t[:600]) for i, t in warc_text([os.path.join(SHARED, "cc/whirlwind-python/whirlwind.warc.gz")], "whirlwind")]
    with open(os.path.join(dest, "texts.jsonl"), "w", encoding="utf-8") as f:
        for i, text in docs:
            labels, scores = model.predict(text.replace("\n", " "), k=3)
            f.write(json.dumps({"id": i, "text": text, "fasttext": [[l.split("__")[2], float(s)] for l, s in zip(labels, scores)]},
                               ensure_ascii=False) + "\n")
    print("wrote %d texts to %s" % (len(docs), dest))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "fixture":
        return fixture(sys.argv[2])
    work = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "langid-parity")
    binary = os.path.join(ROOT, "target", "release", "smelt")
    os.makedirs(work, exist_ok=True)
    subprocess.run(["rm", "-rf", os.path.join(work, "smelt-data")], check=True)
    docs, by_source = [], {}
    for i, text in corpus():
        if has_words(text):
            docs.append((i, text))
            by_source[i.split("/")[0]] = by_source.get(i.split("/")[0], 0) + 1
    with open(os.path.join(work, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for i, text in docs:
            f.write(json.dumps({"id": i, "text": text}, ensure_ascii=False) + "\n")
    nbytes = sum(len(t.encode("utf-8")) for _, t in docs)
    py, py_cpu, py_wall = python_fasttext(docs)
    rs, rs_cpu, rs_busy, rs_wall, cpu_with, cpu_without = smelt(work, binary)
    model_only, model_cpu, model_wall = predict_example(work)
    model_agree = sum(1 for i, _ in docs if model_only[i] == py[i])

    agree, diffs, disagreements, langs = 0, [], [], {}
    for i, _ in docs:
        (pl, ps), (rl, rsc) = py[i], rs[i]
        langs[pl] = langs.get(pl, 0) + 1
        if pl == rl:
            agree += 1
            diffs.append(abs(ps - rsc))
        else:
            disagreements.append((i, pl, ps, rl, rsc))
    n = len(docs)
    figures = {
        "docs": n,
        "bytes": nbytes,
        "by_source": by_source,
        "languages_top1": len(langs),
        "top_languages": sorted(langs.items(), key=lambda x: -x[1])[:15],
        "label_agreement_pct": 100.0 * agree / n,
        "score_abs_diff_max": max(diffs) if diffs else None,
        "score_abs_diff_mean": sum(diffs) / len(diffs) if diffs else None,
        "scores_bit_equal": sum(1 for d in diffs if d == 0.0),
        "disagreements": disagreements[:20],
        "python_fasttext_cpu_s": py_cpu,
        "python_fasttext_wall_s": py_wall,
        "model_only_bit_equal": model_agree,
        "smelt_model_only_cpu_s": model_cpu,
        "smelt_model_only_wall_s": model_wall,
        "smelt_langid_cpu_s": rs_cpu,
        "smelt_langid_stage_busy_s": rs_busy,
        "smelt_run_cpu_s_with_langid": cpu_with,
        "smelt_run_cpu_s_without_langid": cpu_without,
        "smelt_run_wall_s": rs_wall,
        "machine": "%s, %d cores" % (open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": "), os.cpu_count()),
    }
    rows = [
        ("texts (sources)", "%d (%s)" % (n, ", ".join("%s %d" % kv for kv in by_source.items()))),
        ("text MB", "%.1f" % (nbytes / 1e6)),
        ("languages (top-1, Python)", "%d" % len(langs)),
        ("top-1 label agreement", "%.3f %% (%d/%d)" % (100.0 * agree / n, agree, n)),
        ("score |diff| max / mean", "%.3g / %.3g" % (figures["score_abs_diff_max"], figures["score_abs_diff_mean"])),
        ("scores bit-equal", "%d/%d" % (figures["scores_bit_equal"], len(diffs))),
        ("Python fastText 0.9.2, 1 core", "%.2f s CPU: %.0f docs/s, %.1f MB/s" % (py_cpu, n / py_cpu, nbytes / 1e6 / py_cpu)),
        ("smelt model only: same label and score", "%d/%d" % (model_agree, n)),
        ("smelt model only (langid_predict), 1 core",
         "%.2f s CPU: %.0f docs/s, %.1f MB/s" % (model_cpu, n / model_cpu, nbytes / 1e6 / model_cpu)),
        ("smelt langid stage, 1 core (run CPU - run without it)",
         "%.2f s CPU: %.0f docs/s, %.1f MB/s" % (rs_cpu, n / rs_cpu, nbytes / 1e6 / rs_cpu)),
        ("smelt langid stage busy (run summary)", "%.2f s: %.0f docs/s" % (rs_busy, n / rs_busy)),
        ("smelt run CPU with / without langid", "%.2f s / %.2f s (wall %.2f s)" % (cpu_with, cpu_without, rs_wall)),
    ]
    w = max(len(r[0]) for r in rows)
    for k, v in rows:
        print("%s  %s" % (k.ljust(w), v))
    for d in disagreements[:20]:
        print("DISAGREE", d)
    out = os.path.join(ROOT, "bench", "results", "langid_parity.json")
    with open(out, "w") as f:
        json.dump(figures, f, indent=1)
    print("wrote", out)


if __name__ == "__main__":
    main()
