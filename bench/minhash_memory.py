"""Peak RSS and scratch disk of `dedup_minhash` on generated corpora (memory_budget 512 MiB, or BUDGET bytes).

    bench/minhash_memory.sh            # SIZES="1000000 3000000"
    python bench/minhash_memory.py WORK N [N ...]

Documents are generated from real Reuters-21578 stories (>= 50 words): each
takes a random story, cuts it at a random window, substitutes or deletes
words at a random rate (0-30%) and appends a random run of words from another
story, so most are distinct and about a third have planted near-duplicates.
They are written as 16 gzip-free JSONL files, and `smelt run` (one run:
read, dedup_minhash, Parquet) is measured with getrusage of the child: peak
RSS, CPU and wall seconds; a sampler thread records the largest size of the
data directory during the run (input excluded: band records, spilled rows,
shards), the scratch disk a run of that size needs.
"""
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from minhash_quality import reuters_bodies  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMELT = os.environ.get("SMELT_BIN", os.path.join(ROOT, "target", "release", "smelt"))
BUDGET = int(os.environ.get("BUDGET", 536870912))


def tree_bytes(path):
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(d, f)).st_blocks * 512
            except OSError:
                pass  # removed while walking
    return total


class PeakDisk(threading.Thread):
    """Samples the size of a directory every second until stopped."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path, self.peak, self.done = path, 0, threading.Event()

    def run(self):
        while not self.done.wait(1.0):
            self.peak = max(self.peak, tree_bytes(self.path))


def generate(path_dir, n, seed=7):
    rng = random.Random(seed)
    stories = [t.split() for _, t in reuters_bodies() if len(t.split()) >= 50]
    os.makedirs(path_dir, exist_ok=True)
    files = [open(os.path.join(path_dir, f"{j:02}.jsonl"), "w") for j in range(16)]
    for i in range(n):
        w = stories[rng.randrange(len(stories))]
        start = rng.randrange(0, max(1, len(w) // 4))
        rate = rng.choice((0.0, 0.02, 0.05, 0.3))
        out = [x for x in w[start:] if rng.random() >= rate]
        tail = stories[rng.randrange(len(stories))]
        k = rng.randrange(len(tail))
        out.extend(tail[k:k + rng.randrange(10, 60)])
        files[i % 16].write(json.dumps({"id": f"g{i}", "text": " ".join(out)}) + "\n")
    for f in files:
        f.close()


def main():
    work = os.path.abspath(sys.argv[1])
    sizes = [int(x) for x in sys.argv[2:]] or [1_000_000]
    results = []
    for n in sizes:
        base = os.path.join(work, f"n{n}")
        shutil.rmtree(base, ignore_errors=True)
        t = time.perf_counter()
        generate(os.path.join(base, "in"), n)
        gen_s = time.perf_counter() - t
        yaml = os.path.join(base, "mem.yaml")
        with open(yaml, "w") as f:
            f.write(f"""dataset: mhmem
memory_budget: {BUDGET}
stages:
  docs: {{type: jsonl, paths: ["{os.path.join(base, 'in', '*.jsonl')}"]}}
  hashed: {{type: content_hash, inputs: [docs]}}
  unique: {{type: dedup_minhash, inputs: [hashed]}}
  out: {{type: parquet, inputs: [unique]}}
""")
        env = dict(os.environ, SMELT_DATA_DIR=os.path.join(base, "data"))
        # One child per size: ru_maxrss of RUSAGE_CHILDREN is the largest child so far, so sizes go up.
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        disk = PeakDisk(os.path.join(base, "data"))
        disk.start()
        t = time.perf_counter()
        p = subprocess.run([SMELT, "run", yaml, "--format", "json"], capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t
        disk.done.set()
        disk.join()
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if p.returncode:
            sys.exit(p.stderr[-3000:])
        summary = json.loads(p.stdout)
        stage = next(s for s in summary["stages"] if s["stage"] == "unique")
        res = {"documents": n, "generate_s": round(gen_s, 1), "wall_s": round(wall, 1),
               "cpu_s": round(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, 1),
               "peak_rss_mib": round(r1.ru_maxrss / 1024, 1), "memory_budget": BUDGET,
               "input_mib": round(tree_bytes(os.path.join(base, "in")) / 2**20, 1),
               "peak_scratch_mib": round(disk.peak / 2**20, 1), "removed": stage["drops"].get("minhash_duplicate", 0),
               "counters": stage.get("counters", {})}
        results.append(res)
        print(json.dumps(res), flush=True)
        shutil.rmtree(os.path.join(base, "in"), ignore_errors=True)
        shutil.rmtree(os.path.join(base, "data"), ignore_errors=True)
    print(f"memory_budget: {BUDGET} bytes")
    print("| documents | removed | wall s | CPU s | peak RSS MiB | input MiB | peak scratch MiB |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['documents']:,} | {r['removed']:,} | {r['wall_s']} | {r['cpu_s']} | {r['peak_rss_mib']} "
              f"| {r['input_mib']:,} | {r['peak_scratch_mib']:,} |")
    with open(os.path.join(work, "figures.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
