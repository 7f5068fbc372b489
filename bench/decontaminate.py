"""Benchmark decontamination speed: smelt's `decontaminate` against datatrove
0.10.1's NGramsDecontFilter, on the same documents and the same benchmark
items, 13-word n-grams, one core each.

    bash bench/decontaminate.sh        # WORK=dir (default target/decontaminate-bench); REPEAT=k copies of the corpus

Data (real, ../shared/data/news/reuters21578): every Reuters-21578 story with
a body (title, newline, body). Stories with an even index are the benchmark
items (one item each, `fields: [text]`), those with an odd index are the
corpus, read REPEAT times (ids suffixed). The benchmark comes to about 1M
distinct 13-grams, the size the issue names; Reuters repeats some stories and
templates, so some corpus documents really hold an item, and both tools
report them.

datatrove side: its index is made by NGramsDecontIndexer.compute_hashes (the
indexer's own method, called without its lighteval loading) over each item as
label, written as `<task>.index.hashes` as its run() does; NGramsDecontFilter
loads it and `filter(doc)` runs on every corpus document in memory: CPU
seconds of that loop (index loading excluded). smelt side: the pipeline
`jsonl -> decontaminate -> content_hash -> parquet` with `--parallelism 1`;
the stage's own busy time from the run's metrics, and the CPU of the run minus
the CPU of the same run without the stage; and the stage alone, the same
documents as in-memory batches of 1,024 through the transform (the example
`bench_pii_toxicity --stage decontaminate`, best of 5 passes), as
datatrove's filter gets them. Index building is timed apart for
both (smelt: `smelt validate`, which reads the benchmark when it compiles).
Both pinned to one core with taskset; medians of 3 runs. Peak RSS of the
smelt run is taken at REPEAT and 2*REPEAT copies of the corpus (flat memory).
The contaminated document sets of both tools are compared.
"""
import json
import os
import resource
import subprocess
import sys
import time

PEERS = os.path.expanduser("~/.cache/smelt-peers")
sys.path.insert(0, PEERS)
import common  # noqa: E402,F401  (sets the offline environment)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
SMELT = os.environ.get("SMELT", os.path.join(TARGET, "release", "smelt"))
# stages/examples/bench_pii_toxicity.rs: one transform over in-memory batches.
ALONE = os.path.join(TARGET, "release", "examples", "bench_pii_toxicity")
RUNS = 3
PIN = ["taskset", "-c", "0"]
N = 13
sys.path.insert(0, os.path.join(ROOT, "stages/tests/fixtures/classify"))
import train  # noqa: E402  (the fixtures' Reuters reader)


def med(xs):
    return sorted(xs)[len(xs) // 2]


def child_cpu(cmd, **kw):
    """Runs cmd, returns (stdout, CPU seconds of the child, its peak RSS in MiB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out.stdout, cpu, after.ru_maxrss / 1024


def peak_rss(cmd, cwd):
    """Peak RSS in MiB of one run of cmd (GNU time)."""
    out = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, cwd=cwd, check=True, capture_output=True, text=True)
    return int(out.stderr.strip().splitlines()[-1]) / 1024


def write_inputs(work, repeat):
    stories = [(f"reuters-{newid}", text) for newid, _, _, text in train.reuters()]
    items = stories[0::2]
    corpus = stories[1::2]
    with open(os.path.join(work, "items.jsonl"), "w") as f:
        for i, t in items:
            f.write(json.dumps({"id": i, "text": t}) + "\n")
    docs = []
    for k in range(repeat):
        for i, t in corpus:
            docs.append((f"{i}#{k}" if k else i, t))
    return items, docs


def write_corpus(path, docs):
    with open(path, "w") as f:
        for i, t in docs:
            f.write(json.dumps({"id": i, "text": t}) + "\n")


def pipeline(work, name, with_stage):
    stage = (
        "  clean:\n    type: decontaminate\n    inputs: [docs]\n    n: 13\n"
        "    benchmarks: [{from: items.jsonl, fields: [text]}]\n"
    )
    text = f"dataset: {name}\nstages:\n  docs: {{type: jsonl, paths: [corpus-{name}.jsonl]}}\n"
    text += stage if with_stage else ""
    text += f"  hashed: {{type: content_hash, inputs: [{'clean' if with_stage else 'docs'}]}}\n"
    text += "  out: {type: parquet, inputs: [hashed]}\n"
    path = os.path.join(work, f"{name}{'' if with_stage else '-bare'}.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


def smelt_run(work, yaml, data):
    cmd = PIN + [SMELT, "--data-dir", data, "run", yaml, "--parallelism", "1", "--format", "json"]
    out, cpu, _ = child_cpu(cmd, cwd=work)
    return json.loads(out), cpu


def datatrove(work, items, docs):
    from datatrove.data import Document
    from datatrove.pipeline.decont.n_grams import NGramsDecontConfig, NGramsDecontFilter, NGramsDecontIndexer
    from datatrove.utils.hashing import create_hash_func
    from datatrove.utils.word_tokenizers import load_word_tokenizer
    import numpy as np

    config = NGramsDecontConfig(n_grams=N, find_query_ngrams=False, find_overlap_ngrams=False)
    indexer = object.__new__(NGramsDecontIndexer)
    indexer.config = config
    indexer.tokenizer = load_word_tokenizer("en")
    indexer.hash_func = create_hash_func(config.hash_config)
    index_dir = os.path.join(work, "datatrove-index")
    os.makedirs(index_dir, exist_ok=True)
    t0 = time.process_time()
    hashes = set()
    for _, text in items:
        hashes.update(indexer.compute_hashes(text))
    build = time.process_time() - t0
    np.array(list(hashes), dtype=config.hash_config.np_descr).tofile(os.path.join(index_dir, "items.index.hashes"))
    f = NGramsDecontFilter(index_dir, config=config)
    f.load_index_hashes()
    documents = [Document(text=t, id=i) for i, t in docs]
    times, dropped = [], None
    for _ in range(RUNS):
        t0 = time.process_time()
        out = [f.filter(d) for d in documents]
        times.append(time.process_time() - t0)
        dropped = {d.id for d, r in zip(documents, out) if r is not True}
    return {"index_build_cpu_s": build, "index_ngrams": len(hashes), "filter_cpu_s": med(times), "dropped": dropped}


def main():
    work = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(TARGET, "decontaminate-bench"))
    repeat = int(os.environ.get("REPEAT", "4"))
    os.makedirs(work, exist_ok=True)
    items, docs = write_inputs(work, repeat)
    text_bytes = sum(len(t.encode()) for _, t in docs)
    print(f"benchmark: {len(items)} Reuters stories as items; corpus: {len(docs)} documents, {text_bytes / 1e6:.1f} MB of text (x{repeat})")

    # smelt: index building at compile time, then runs with and without the stage.
    write_corpus(os.path.join(work, "corpus-dc.jsonl"), docs)
    yaml = pipeline(work, "dc", True)
    bare = pipeline(work, "dc", False)
    builds = []
    for _ in range(RUNS):
        _, cpu, _ = child_cpu(PIN + [SMELT, "--data-dir", os.path.join(work, "data-validate"), "validate", yaml], cwd=work)
        builds.append(cpu)
    stage_s, with_cpu, bare_cpu, summary = [], [], [], None
    for r in range(RUNS):
        summary, cpu = smelt_run(work, yaml, os.path.join(work, f"data-{r}"))
        with_cpu.append(cpu)
        stage = next(s for s in summary["stages"] if s["stage"] == "clean")
        stage_s.append(stage["busy_ms"] / 1000)
        _, cpu = smelt_run(work, bare, os.path.join(work, f"data-bare-{r}"))
        bare_cpu.append(cpu)
    stage = next(s for s in summary["stages"] if s["stage"] == "clean")
    smelt_dropped = sum(stage["drops"].values())
    # The stage alone: the same documents as in-memory batches through the
    # transform, as datatrove's filter gets them (the run's busy time also
    # holds the time the reader and writer threads take the one core from it).
    alone = []
    for _ in range(RUNS):
        options = json.dumps({"n": N, "benchmarks": [{"from": "items.jsonl", "fields": ["text"]}]})
        out = subprocess.run(PIN + [ALONE, "--iters", "5", "--stage", "decontaminate", options, "corpus-dc.jsonl"],
                             cwd=work, check=True, capture_output=True, text=True).stdout
        got = json.loads(out)
        assert got["flagged"] == smelt_dropped, (got["flagged"], smelt_dropped)
        alone.append(got["seconds"])

    # Which documents smelt dropped: the ids not written.
    import pyarrow.parquet as pq
    import glob
    kept = set()
    for shard in glob.glob(os.path.join(work, "data-0", "datasets", "dc", "**", "*.parquet"), recursive=True):
        kept.update(pq.read_table(shard, columns=["id"]).column("id").to_pylist())
    smelt_ids = {i for i, _ in docs} - kept

    dt = datatrove(work, items, docs)

    # Peak RSS at two corpus sizes.
    rss = {}
    for mult in (1, 2):
        name = f"rss{mult}"
        write_corpus(os.path.join(work, f"corpus-{name}.jsonl"), [(f"{i}~{m}", t) for m in range(mult) for i, t in docs])
        y = pipeline(work, name, True)
        rss[mult] = peak_rss(PIN + [SMELT, "--data-dir", os.path.join(work, f"data-{name}"), "run", y, "--parallelism", "1", "--format", "json"], work)

    stage_med = med(stage_s)
    diff_med = med(with_cpu) - med(bare_cpu)
    mb = text_bytes / 1e6
    figures = {
        "items": len(items),
        "documents": len(docs),
        "text_mb": round(mb, 1),
        "smelt_index_keys": summary_keys(work),
        "datatrove_index_ngrams": dt["index_ngrams"],
        "smelt_index_build_cpu_s (validate, whole process)": round(med(builds), 3),
        "datatrove_index_build_cpu_s": round(dt["index_build_cpu_s"], 3),
        "smelt_stage_alone_s (in-memory batches, best of 5 passes)": round(med(alone), 3),
        "smelt_stage_busy_s": round(stage_med, 3),
        "smelt_run_cpu_minus_bare_s": round(diff_med, 3),
        "datatrove_filter_cpu_s": round(dt["filter_cpu_s"], 3),
        "smelt_stage_alone_MB_per_s": round(mb / med(alone), 1),
        "smelt_stage_MB_per_s": round(mb / stage_med, 1),
        "smelt_run_difference_MB_per_s": round(mb / diff_med, 1) if diff_med > 0 else None,
        "datatrove_MB_per_s": round(mb / dt["filter_cpu_s"], 2),
        "ratio_stage_alone": round(dt["filter_cpu_s"] / med(alone), 1),
        "ratio_stage": round(dt["filter_cpu_s"] / stage_med, 1),
        "ratio_run_difference": round(dt["filter_cpu_s"] / diff_med, 1) if diff_med > 0 else None,
        "smelt_dropped": smelt_dropped,
        "datatrove_dropped": len(dt["dropped"]),
        "dropped_by_both": len(smelt_ids & dt["dropped"]),
        "only_smelt": len(smelt_ids - dt["dropped"]),
        "only_datatrove": len(dt["dropped"] - smelt_ids),
        "peak_rss_mib": {f"x{repeat * m} corpus": round(v, 1) for m, v in rss.items()},
    }
    for k, v in figures.items():
        print(f"{k}: {v}")
    examples = sorted(smelt_ids ^ dt["dropped"])[:10]
    print(f"documents dropped by one tool only (first 10): {examples}")
    with open(os.path.join(work, "figures.json"), "w") as f:
        json.dump(figures, f, indent=1)


def summary_keys(work):
    """The distinct keys smelt's index holds, from the lineage of the first run."""
    out = subprocess.run(
        [SMELT, "--data-dir", os.path.join(work, "data-0"), "catalog", "show", "dc@1", "--format", "json"],
        check=True, capture_output=True, text=True,
    ).stdout
    m = json.loads(out)
    stage = next(s for s in m["lineage"]["resolved_config"]["stages"] if s["name"] == "clean")
    return stage["options"]["indexed"][0]["keys"]


if __name__ == "__main__":
    main()
