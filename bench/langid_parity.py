"""Language-ID parity and speed: smelt's `langid` stage (its own fastText reader
running LID-176) against Python fastText 0.9.2 on the same texts.

    bench/langid_parity.sh            # corpus -> Python fastText -> smelt -> table; figures in target/langid-parity/figures.json
    python bench/langid_parity.py fixture pipelines/tests/fixtures/langid   # regenerate the test fixture

Python side: exactly what datatrove's LanguageFilter/FT176LID does,
`model.predict(text.replace("\n", " "), k=-1)`, best label = max score.
smelt side: `jsonl -> langid (label_only) -> parquet` with target/release/smelt,
one split and one thread; speed is the stage's own CPU seconds from the run
summary (JSONL parsing and Parquet writing excluded), and the whole run's
wall time is reported beside it.
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
    yield from warc_text(sorted(glob.glob(os.path.join(PEERS, "data/samples/*.warc*"))), "realweb")
    yield from reuters()
    yield from warc_text(sorted(glob.glob(os.path.join(PEERS, "data/warc/DEBDOCS-SYNTH-00000.warc.gz"))), "debdocs")


def python_fasttext(docs):
    import fasttext
    model = fasttext.load_model(MODEL)
    out = {}
    common.wait_idle()
    cpu0, t0 = time.process_time(), time.perf_counter()
    for i, text in docs:
        labels, scores = model.predict(text.replace("\n", " "), k=-1)
        best = max(zip(labels, scores), key=lambda x: x[1])
        out[i] = (best[0].split("__")[2], float(best[1]))
    return out, time.process_time() - cpu0, time.perf_counter() - t0


PIPELINE = """dataset: langid-parity
stages:
  docs:
    type: jsonl
    paths: [corpus.jsonl]
  lang:
    type: langid
    inputs: [docs]
    label_only: true
  out:
    type: parquet
    inputs: [lang]
"""


def smelt(work, binary):
    with open(os.path.join(work, "pipeline.yaml"), "w") as f:
        f.write(PIPELINE)
    data = os.path.join(work, "smelt-data")
    env = dict(os.environ, SMELT_DATA_DIR=data, RAYON_NUM_THREADS="1")
    common.wait_idle()
    t0 = time.perf_counter()
    run = subprocess.run([binary, "run", os.path.join(work, "pipeline.yaml"), "--parallelism", "1"], env=env,
                         capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if run.returncode != 0:
        raise SystemExit("smelt run failed:\n" + run.stdout + run.stderr)
    stage_cpu = None
    for line in (run.stdout + run.stderr).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if "|" in line else line.split()
        if cells and cells[0] == "lang":
            stage_cpu = float(cells[-1])
    import pyarrow.parquet as pq
    shards = sorted(glob.glob(os.path.join(work, "smelt-data/datasets/langid-parity/**/*.parquet"), recursive=True))
    out = {}
    for s in shards:
        t = pq.read_table(s, columns=["id", "language", "language_score"])
        for i, l, sc in zip(*(t.column(c).to_pylist() for c in ("id", "language", "language_score"))):
            out[i] = (l, sc)
    return out, stage_cpu, wall, run.stdout + run.stderr


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
    rs, rs_cpu, rs_wall, log = smelt(work, binary)

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
        "smelt_langid_stage_cpu_s": rs_cpu,
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
        ("smelt langid stage, 1 core", "%.2f s CPU: %.0f docs/s, %.1f MB/s" % (rs_cpu, n / rs_cpu, nbytes / 1e6 / rs_cpu)
         if rs_cpu else "n/a"),
        ("smelt run wall (jsonl+langid+parquet)", "%.2f s" % rs_wall),
    ]
    w = max(len(r[0]) for r in rows)
    for k, v in rows:
        print("%s  %s" % (k.ljust(w), v))
    for d in disagreements[:20]:
        print("DISAGREE", d)
    with open(os.path.join(work, "figures.json"), "w") as f:
        json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
