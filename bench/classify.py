"""fastText classifier speed and agreement: smelt's `classify` (its own
fastText reader) against Python fastText 0.9.2's predict on the same texts,
one core each.

    bash bench/classify.sh            # WORK=dir for the corpus, models and runs (default target/classify-bench)

Texts: every Reuters-21578 story with a body (title, newline, body), from
../shared/data/news/reuters21578. Models: the classify fixture
`topics_bigram.bin` (softmax over 10 topics, word bigrams, char 3-4-grams,
dim 16), the example's `quality.ftz` (DCLM-shaped: hq/lq, bigrams, quantized,
dim 16), and `quality_d100.bin`, trained here on the same data as quality.ftz
with fastText's default dim 100 (dense, bigrams, bucket 200000): a heavier
per-token cost, closer to DCLM's classifier.

Python side: `model.predict(text.replace("\\n", " "), k=-1)` per text, the
call DCLM and datatrove make, texts in memory; CPU seconds of the loop.
smelt side: the model alone (`langid_predict MODEL`: smelt's reader's
predict with every label, one thread, texts in memory) and the stage in a
pipeline `jsonl -> classify -> content_hash -> parquet`, `--parallelism 1`
(CPU of that run minus the CPU of the same run without classify), each
twice: as `classify` runs by default (fastText's own float operations,
bit for bit) and with `exact: false` (each input row projected onto the
labels at load, `Model::projected`; `PROJECTED=1` for the model alone).
All pinned to one core with taskset. Figures are medians of 3 passes/runs
(and of the runs' peak RSS, from /usr/bin/time).
Each text's best label and score from every smelt side are compared with
Python's: the same label, the score within 1e-6 (the issue's parity), how
many scores are bit-equal and the largest difference. A second corpus
checks the projection's answers only: long texts (5, 20 and 80 stories
joined, 1,039 texts) and the 29 pages of real Common Crawl WET text in
../shared/data, where fastText's f32 rounding grows.
"""
import glob
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
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
RUNS = 3
PIN = ["taskset", "-c", "0"]
sys.path.insert(0, os.path.join(ROOT, "stages/tests/fixtures/classify"))
import train  # noqa: E402  (the fixtures' Reuters reader and model training)


def reuters():
    """Every story with a body as (id, text), in NEWID order: the fixture script's reader."""
    return [(f"reuters-{newid}", text) for newid, _, _, text in train.reuters()]


def wet_pages():
    """The conversion records of the real WET files in ../shared/data, whole, as (id, text)."""
    paths = [os.path.join(SHARED, rel) for rel in ["cc/whirlwind-python/whirlwind.warc.wet.gz", *train.WET]]
    texts = [t for t in train.wet_records(paths) if t.strip()]
    return [(f"wet-{i}", t) for i, t in enumerate(texts)]


def med(xs):
    return sorted(xs)[len(xs) // 2]


def train_d100(work):
    """quality.ftz's training data, fastText's default dim 100, dense (in a fresh process, as train.py does)."""
    out = os.path.join(work, "quality_d100.bin")
    if os.path.exists(out):
        return out
    lq = train.wet_chunks()
    hq = [train.one_line(x) for _, s, _, x in train.reuters() if s == "TRAIN"][: len(lq)]
    data = os.path.join(work, "quality.txt")
    with open(data, "w", encoding="utf-8") as f:
        for a, b in zip(hq, lq):
            f.write(f"__label__hq {a}\n__label__lq {b}\n")
    train.train(data, out, dim=100, epoch=10, lr=0.5, wordNgrams=2, minCount=2, bucket=200000, loss="softmax")
    return out


PY_LOOP = r"""
import json, sys, time
import fasttext
model = fasttext.load_model(sys.argv[1])
docs = [json.loads(l) for l in open(sys.argv[2], encoding="utf-8")]
cpus, out = [], {}
for _ in range(int(sys.argv[3])):
    c0 = time.process_time()
    for d in docs:
        labels, probs = model.predict(d["text"].replace("\n", " "), k=-1)
        out[d["id"]] = (labels[0][9:], float(probs[0])) if len(labels) else (None, 0.0)
    cpus.append(time.process_time() - c0)
json.dump({"cpus": cpus, "top": out}, sys.stdout)
"""


def python_fasttext(model, corpus):
    """Python fastText in a process pinned to one core: best label and score per id, median CPU of a pass."""
    common.wait_idle()
    run = subprocess.run(PIN + [sys.executable, "-c", PY_LOOP, model, corpus, str(RUNS)], capture_output=True,
                         text=True, check=True)
    r = json.loads(run.stdout)
    return {k: tuple(v) for k, v in r["top"].items()}, med(r["cpus"])


def model_only(model, corpus, exact):
    """smelt's reader alone (langid_predict; exact=False: PROJECTED=1): best label and score per id,
    median CPU of a pass."""
    common.wait_idle()
    run = subprocess.run(PIN + [os.path.join(TARGET, "release", "examples", "langid_predict"), corpus, model],
                         capture_output=True, text=True, check=True,
                         env=dict(os.environ, RUNS=str(RUNS), PROJECTED="0" if exact else "1"))
    out = {}
    for line in run.stdout.splitlines():
        i, label, score = line.split("\t")
        out[i] = (label, float(score))
    m = re.search(r"median ([0-9.]+) s wall, ([0-9.]+) s CPU", run.stderr)
    return out, float(m.group(2))


PIPELINE = """dataset: DATASET
stages:
  docs: {type: jsonl, paths: [corpus.jsonl]}
  scored: {type: classify, inputs: [docs], model: MODEL, exact: EXACT}
  hashed: {type: content_hash, inputs: [scored]}
  out: {type: parquet, inputs: [hashed]}
"""
BASELINE = """dataset: DATASET
stages:
  docs: {type: jsonl, paths: [corpus.jsonl]}
  hashed: {type: content_hash, inputs: [docs]}
  out: {type: parquet, inputs: [hashed]}
"""


PEAK_RSS_KB = {}  # per run (dataset name): the peak RSS /usr/bin/time reports


def smelt_run(work, dataset, pipeline):
    path = os.path.join(work, dataset + ".yaml")
    with open(path, "w") as f:
        f.write(pipeline.replace("DATASET", dataset))
    env = dict(os.environ, SMELT_DATA_DIR=os.path.join(work, "smelt-data"))
    common.wait_idle()
    cpu0 = common.cpu_now()
    rss = os.path.join(work, dataset + ".rss")
    run = subprocess.run(PIN + ["/usr/bin/time", "-f", "%M", "-o", rss, os.path.join(TARGET, "release", "smelt"), "run",
                                path, "--parallelism", "1"], env=env, capture_output=True, text=True)
    cpu = common.cpu_now() - cpu0
    if run.returncode != 0:
        raise SystemExit("smelt run failed:\n" + run.stdout + run.stderr)
    PEAK_RSS_KB[dataset] = int(open(rss).read().split()[-1])
    return cpu


def stage(work, name, model, baseline, exact):
    """CPU of the run with classify minus the baseline run's; the stage's best label and score per id."""
    pipeline = PIPELINE.replace("MODEL", model).replace("EXACT", "true" if exact else "false")
    name = f"{name}-{'exact' if exact else 'projected'}"
    cpus = [smelt_run(work, f"{name}-{r}", pipeline) for r in range(RUNS)]
    rss_mb = med([PEAK_RSS_KB[f"{name}-{r}"] for r in range(RUNS)]) / 1024
    import pyarrow.parquet as pq
    out = {}
    for s in sorted(glob.glob(os.path.join(work, f"smelt-data/datasets/{name}-0/**/*.parquet"), recursive=True)):
        t = pq.read_table(s, columns=["id", "label", "score"])
        for i, label, score in zip(*(t.column(c).to_pylist() for c in ("id", "label", "score"))):
            out[i] = (label, score)
    return out, med(cpus) - baseline, med(cpus), rss_mb


def main():
    work = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "classify-bench"))
    os.makedirs(work, exist_ok=True)
    subprocess.run(["rm", "-rf", os.path.join(work, "smelt-data")], check=True)
    # REPEAT=k reads the stories k times (distinct ids): longer passes, finer CPU-time figures.
    repeat = int(os.environ.get("REPEAT", "1"))
    docs = [(f"{i}#{k}" if k else i, t) for k in range(repeat) for i, t in reuters()]
    corpus = os.path.join(work, "corpus.jsonl")
    with open(corpus, "w", encoding="utf-8") as f:
        for i, text in docs:
            f.write(json.dumps({"id": i, "text": text}, ensure_ascii=False) + "\n")
    n, nbytes = len(docs), sum(len(t.encode("utf-8")) for _, t in docs)
    models = [
        ("topics_bigram.bin", os.path.join(ROOT, "stages/tests/fixtures/classify/topics_bigram.bin")),
        ("quality.ftz", os.path.join(ROOT, "examples/models/quality.ftz")),
        ("quality_d100.bin", train_d100(work)),
        ("topics_d64_q.ftz", os.path.join(ROOT, "stages/tests/fixtures/classify/topics_d64_q.ftz")),
    ]
    # Long and real web texts, for the projection's answers.
    stories = [t for _, t in reuters()]
    hard = [(f"long{k}-{i}", "\n".join(stories[i:i + k])) for k in (5, 20, 80)
            for i in range(0, min(len(stories), 400 * k), k)] + wet_pages()
    hard_corpus = os.path.join(work, "hard.jsonl")
    with open(hard_corpus, "w", encoding="utf-8") as f:
        for i, text in hard:
            f.write(json.dumps({"id": i, "text": text}, ensure_ascii=False) + "\n")
    baseline = med([smelt_run(work, f"baseline-{r}", BASELINE) for r in range(RUNS)])
    baseline_rss = med([PEAK_RSS_KB[f"baseline-{r}"] for r in range(RUNS)]) / 1024
    print("%d texts, %.1f MB (Reuters-21578 stories with a body, %d times); one core each (taskset -c 0); medians of %d"
          % (n, nbytes / 1e6, repeat, RUNS))
    print("smelt run without classify (jsonl -> content_hash -> parquet): %.2f s CPU, peak RSS %.0f MB"
          % (baseline, baseline_rss))
    figures = {"docs": n, "bytes": nbytes, "baseline_run_cpu_s": baseline, "models": {}}
    rate = lambda cpu: "%.2f s CPU, %8.0f docs/s, %5.1f MB/s" % (cpu, n / cpu, nbytes / 1e6 / cpu)  # noqa: E731
    def agree(got, py):
        """(same label and score within 1e-6, bit-equal score, largest score difference) over every text."""
        within = sum(1 for i, _ in docs if got[i][0] == py[i][0] and abs(got[i][1] - py[i][1]) <= 1e-6)
        equal = sum(1 for i, _ in docs if got[i][1] == py[i][1])
        return within, equal, max(abs(got[i][1] - py[i][1]) for i, _ in docs)

    for name, path in models:
        py, py_cpu = python_fasttext(path, corpus)
        print("\n%s (%.1f MB)" % (name, os.path.getsize(path) / 1e6))
        print("  Python fastText 0.9.2 predict(k=-1)          %s" % rate(py_cpu))
        row = "  %-44s %s  = %.1fx; same label, score within 1e-6: %d/%d (bit-equal %d, max diff %.1e)"
        fig = figures["models"][name] = {"python_cpu_s": py_cpu}
        for exact in (True, False):
            opt = "default" if exact else "exact: false"
            mo, mo_cpu = model_only(path, corpus, exact)
            st, st_cpu, run_cpu, rss_mb = stage(work, name.split(".")[0], path, baseline, exact)
            for label, got, cpu in [(f"smelt model only ({opt})", mo, mo_cpu),
                                    (f"smelt classify stage ({opt}, run - baseline)", st, st_cpu)]:
                within, equal, worst = agree(got, py)
                print(row % (label, rate(cpu), py_cpu / cpu, within, n, equal, worst))
            print("  %-44s %.2f s CPU, peak RSS %.0f MB" % (f"(classify run, {opt})", run_cpu, rss_mb))
            key = "exact" if exact else "projected"
            fig[key] = {"model_only_cpu_s": mo_cpu, "stage_cpu_s": st_cpu, "run_cpu_s": run_cpu, "peak_rss_mb": rss_mb,
                        "model_only_ratio": py_cpu / mo_cpu, "stage_ratio": py_cpu / st_cpu,
                        "model_only_agree": agree(mo, py), "stage_agree": agree(st, py)}
        # The projection on long texts and real web pages (answers only).
        hpy, _ = python_fasttext(path, hard_corpus)
        hmo, _ = model_only(path, hard_corpus, exact=False)
        diffs = {i: abs(hmo[i][1] - hpy[i][1]) for i, _ in hard}
        labels = sum(1 for i, _ in hard if hmo[i][0] != hpy[i][0])
        parts = {}
        for part in ("long5", "long20", "long80", "wet"):
            d = [v for i, v in diffs.items() if i.split("-")[0] == part]
            parts[part] = {"texts": len(d), "max_diff": max(d), "over_1e-6": sum(1 for v in d if v > 1e-6)}
        print("  exact: false on long texts and WET pages: other best label %d/%d; %s" % (labels, len(hard), "; ".join(
            "%s: %d texts, max diff %.1e, %d over 1e-6" % (k, v["texts"], v["max_diff"], v["over_1e-6"])
            for k, v in parts.items())))
        fig["projected"]["hard_texts"] = {"other_label": labels, "parts": parts}
    figures["machine"] = "%s, %d cores" % (
        open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": \t"), os.cpu_count())
    with open(os.path.join(work, "figures.json"), "w") as f:
        json.dump(figures, f, indent=1)
    print("\nwrote", os.path.join(work, "figures.json"))


if __name__ == "__main__":
    main()
