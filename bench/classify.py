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
smelt side, twice: the model alone (`langid_predict MODEL`: smelt's reader's
predict with every label, one thread, texts in memory), and the stage in a
pipeline `jsonl -> classify -> content_hash -> parquet`, `--parallelism 1`
(CPU of that run minus the CPU of the same run without classify). Both
pinned to one core with taskset. Figures are medians of 3 passes/runs. Each
text's best label and score from both smelt sides are compared with Python's.
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


def model_only(model, corpus):
    """smelt's reader alone (langid_predict): best label and score per id, median CPU of a pass."""
    common.wait_idle()
    run = subprocess.run(PIN + [os.path.join(TARGET, "release", "examples", "langid_predict"), corpus, model],
                         capture_output=True, text=True, check=True, env=dict(os.environ, RUNS=str(RUNS)))
    out = {}
    for line in run.stdout.splitlines():
        i, label, score = line.split("\t")
        out[i] = (label, float(score))
    m = re.search(r"median ([0-9.]+) s wall, ([0-9.]+) s CPU", run.stderr)
    return out, float(m.group(2))


PIPELINE = """dataset: DATASET
stages:
  docs: {type: jsonl, paths: [corpus.jsonl]}
  scored: {type: classify, inputs: [docs], model: MODEL}
  hashed: {type: content_hash, inputs: [scored]}
  out: {type: parquet, inputs: [hashed]}
"""
BASELINE = """dataset: DATASET
stages:
  docs: {type: jsonl, paths: [corpus.jsonl]}
  hashed: {type: content_hash, inputs: [docs]}
  out: {type: parquet, inputs: [hashed]}
"""


def smelt_run(work, dataset, pipeline):
    path = os.path.join(work, dataset + ".yaml")
    with open(path, "w") as f:
        f.write(pipeline.replace("DATASET", dataset))
    env = dict(os.environ, SMELT_DATA_DIR=os.path.join(work, "smelt-data"))
    common.wait_idle()
    cpu0 = common.cpu_now()
    run = subprocess.run(PIN + [os.path.join(TARGET, "release", "smelt"), "run", path, "--parallelism", "1"],
                         env=env, capture_output=True, text=True)
    cpu = common.cpu_now() - cpu0
    if run.returncode != 0:
        raise SystemExit("smelt run failed:\n" + run.stdout + run.stderr)
    return cpu


def stage(work, name, model, baseline):
    """CPU of the run with classify minus the baseline run's; the stage's best label and score per id."""
    cpus = [smelt_run(work, f"{name}-{r}", PIPELINE.replace("MODEL", model)) for r in range(RUNS)]
    import pyarrow.parquet as pq
    out = {}
    for s in sorted(glob.glob(os.path.join(work, f"smelt-data/datasets/{name}-0/**/*.parquet"), recursive=True)):
        t = pq.read_table(s, columns=["id", "label", "score"])
        for i, label, score in zip(*(t.column(c).to_pylist() for c in ("id", "label", "score"))):
            out[i] = (label, score)
    return out, med(cpus) - baseline, med(cpus)


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
    ]
    baseline = med([smelt_run(work, f"baseline-{r}", BASELINE) for r in range(RUNS)])
    print("%d texts, %.1f MB (Reuters-21578 stories with a body, %d times); one core each (taskset -c 0); medians of %d"
          % (n, nbytes / 1e6, repeat, RUNS))
    print("smelt run without classify (jsonl -> content_hash -> parquet): %.2f s CPU" % baseline)
    figures = {"docs": n, "bytes": nbytes, "baseline_run_cpu_s": baseline, "models": {}}
    rate = lambda cpu: "%.2f s CPU, %8.0f docs/s, %5.1f MB/s" % (cpu, n / cpu, nbytes / 1e6 / cpu)  # noqa: E731
    for name, path in models:
        py, py_cpu = python_fasttext(path, corpus)
        mo, mo_cpu = model_only(path, corpus)
        st, st_cpu, run_cpu = stage(work, name.split(".")[0], path, baseline)
        mo_same = sum(1 for i, _ in docs if mo[i][0] == py[i][0] and mo[i][1] == py[i][1])
        st_same = sum(1 for i, _ in docs if st[i][0] == py[i][0] and st[i][1] == py[i][1])
        print("\n%s (%.1f MB)" % (name, os.path.getsize(path) / 1e6))
        print("  Python fastText 0.9.2 predict(k=-1)   %s" % rate(py_cpu))
        print("  smelt model only (langid_predict)     %s  = %.1fx; best label and score equal: %d/%d"
              % (rate(mo_cpu), py_cpu / mo_cpu, mo_same, n))
        print("  smelt classify stage (run - baseline) %s  = %.1fx; best label and score equal: %d/%d"
              " (run %.2f s CPU)" % (rate(st_cpu), py_cpu / st_cpu, st_same, n, run_cpu))
        figures["models"][name] = {
            "python_cpu_s": py_cpu, "model_only_cpu_s": mo_cpu, "stage_cpu_s": st_cpu, "run_cpu_s": run_cpu,
            "model_only_ratio": py_cpu / mo_cpu, "stage_ratio": py_cpu / st_cpu,
            "model_only_equal": mo_same, "stage_equal": st_same,
        }
    figures["machine"] = "%s, %d cores" % (
        open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": \t"), os.cpu_count())
    with open(os.path.join(work, "figures.json"), "w") as f:
        json.dump(figures, f, indent=1)
    print("\nwrote", os.path.join(work, "figures.json"))


if __name__ == "__main__":
    main()
