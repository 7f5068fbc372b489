"""MinHash dedup parity and speed: smelt's `dedup_minhash` against datatrove
0.10.1's four MinHash stages (`~/.cache/smelt-peers/run_minhash.py`: 5-grams,
14 buckets x 8 hashes, 64-bit xxhash, English spaCy words) on the same JSONL
input.

    bench/minhash_parity.sh                 # default input: ~/.cache/smelt-peers/runs/extract_w2/output
    python bench/minhash_parity.py WORK [INPUT_DIR]

Both sides run their whole pipeline with one worker: read JSONL, dedup,
write the kept documents (datatrove: JSONL, plus the removed ones; smelt:
Parquet into a fresh data directory). CPU seconds are user + sys of the
process tree (getrusage of the children), so the figure is documents per
CPU-second of everything each side did. The removed sets are compared by
document id; every difference is explained from the signatures.
"""
import glob
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import time

PEERS = os.path.expanduser("~/.cache/smelt-peers")
sys.path.insert(0, PEERS)
import common  # noqa: E402,F401  (sets the offline environment)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMELT = os.environ.get("SMELT_BIN", os.path.join(ROOT, "target", "release", "smelt"))


def child_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd, **kw):
    c0, t0 = child_cpu(), time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    wall, cpu = time.perf_counter() - t0, child_cpu() - c0
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p, wall, cpu


def read_docs(inp):
    docs = []
    for f in sorted(glob.glob(os.path.join(inp, "*.jsonl*"))):
        with gzip.open(f, "rt") if f.endswith(".gz") else open(f) as fh:
            docs.extend(json.loads(line) for line in fh if line.strip())
    return docs


def run_datatrove(inp, work):
    base = os.path.join(work, "datatrove")
    shutil.rmtree(base + "_w1", ignore_errors=True)
    cmd = [os.path.join(PEERS, "venv", "bin", "python"), os.path.join(PEERS, "run_minhash.py"),
           "--input", inp, "--workers", "1", "--runs", "1", "--work", base]
    p, wall, cpu = timed(cmd, cwd=PEERS)
    removed = set()
    for f in glob.glob(os.path.join(base + "_w1", "removed", "*.jsonl*")):
        with gzip.open(f, "rt") if f.endswith(".gz") else open(f) as fh:
            removed.update(json.loads(line)["id"] for line in fh if line.strip())
    return {"wall_s": wall, "cpu_s": cpu, "removed": removed}


def run_smelt(inp, work, parallelism):
    base = os.path.join(work, f"smelt_p{parallelism}")
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base)
    yaml = os.path.join(base, "minhash.yaml")
    with open(yaml, "w") as f:
        f.write(f"""dataset: mh
stages:
  docs: {{type: jsonl, paths: ["{os.path.join(inp, '*.jsonl.gz')}"]}}
  hashed: {{type: content_hash, inputs: [docs]}}
  unique: {{type: dedup_minhash, inputs: [hashed]}}
  out: {{type: parquet, inputs: [unique]}}
""")
    env = dict(os.environ, SMELT_DATA_DIR=os.path.join(base, "data"))
    p, wall, cpu = timed([SMELT, "run", yaml, "--parallelism", str(parallelism), "--format", "json"], env=env)
    summary = json.loads(p.stdout)
    out = os.path.join(base, "kept.json")
    timed([SMELT, "sql", 'SELECT id FROM "mh@1"', "--format", "json", "--output", out], env=env)
    kept = {r["id"] for r in json.load(open(out))}
    stage = next(s for s in summary["stages"] if s["stage"] == "unique")
    return {"wall_s": wall, "cpu_s": cpu, "kept": kept, "stage": stage}


def explain(docs, only_dt, only_smelt):
    """Why each document removed by one side only was: recompute datatrove's signatures."""
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
    import tempfile

    sig = MinhashDedupSignature(output_folder=tempfile.mkdtemp(), config=MinhashConfig())
    by_id = {d["id"]: d for d in docs}
    bands = {}
    for d in docs:
        sh = sig.get_shingles(d["text"])
        if sh.size:
            for b, s in enumerate(sig.get_signature(sh)):
                bands.setdefault((b, tuple(s)), []).append(d["id"])
    twins = {}
    for ids in bands.values():
        for i in ids:
            twins.setdefault(i, set()).update(x for x in ids if x != i)
    # Clusters: connected components of the band twins (the same for both sides,
    # as the signatures are equal). Per cluster, does each side remove size - 1?
    parent = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, ts in twins.items():
        for t in ts:
            parent[find(i)] = find(t)
    members = {}
    for i, ts in twins.items():
        if ts:
            members.setdefault(find(i), []).append(i)
    clusters = {"clusters": len(members), "of_2": sum(len(m) == 2 for m in members.values()),
                "of_3_or_more": sum(len(m) > 2 for m in members.values()),
                "differing_only_in_kept_member": 0, "other": 0}
    for m in members.values():
        a = sum(x in only_dt for x in m)
        b = sum(x in only_smelt for x in m)
        if a or b:
            clusters["differing_only_in_kept_member" if a == b == 1 and len(m) > 2 else "other"] += 1
    rows = []
    for side, ids in (("datatrove only", only_dt), ("smelt only", only_smelt)):
        for i in sorted(ids):
            rows.append({"side": side, "id": i, "band_twins": sorted(twins.get(i, ())), "words": len(by_id[i]["text"].split())})
    return rows, clusters


def main():
    work = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "minhash-parity"))
    inp = os.path.abspath(sys.argv[2] if len(sys.argv) > 2 else os.path.join(PEERS, "runs", "extract_w2", "output"))
    os.makedirs(work, exist_ok=True)
    docs = read_docs(inp)
    all_ids = [d["id"] for d in docs]
    assert len(set(all_ids)) == len(all_ids), "ids must be unique"
    dt = run_datatrove(inp, work)
    sm = run_smelt(inp, work, 1)
    sm2 = run_smelt(inp, work, 2)
    removed_smelt = set(all_ids) - sm["kept"]
    removed_smelt2 = set(all_ids) - sm2["kept"]
    union = dt["removed"] | removed_smelt
    jaccard = len(dt["removed"] & removed_smelt) / len(union) if union else 1.0
    n = len(docs)
    fig = {
        "input": inp,
        "documents": n,
        "removed_datatrove": len(dt["removed"]),
        "removed_smelt": len(removed_smelt),
        "removed_both": len(dt["removed"] & removed_smelt),
        "jaccard_removed": round(jaccard, 4),
        "smelt_parallelism_2_same_removed": removed_smelt2 == removed_smelt,
        "datatrove_cpu_s": round(dt["cpu_s"], 2),
        "datatrove_wall_s": round(dt["wall_s"], 2),
        "smelt_cpu_s": round(sm["cpu_s"], 3),
        "smelt_wall_s": round(sm["wall_s"], 3),
        "datatrove_docs_per_cpu_s": round(n / dt["cpu_s"], 1),
        "smelt_docs_per_cpu_s": round(n / sm["cpu_s"], 1),
        "speedup_per_cpu_s": round(dt["cpu_s"] / sm["cpu_s"], 1),
        "smelt_counters": sm["stage"].get("counters", {}),
    }
    only_dt, only_sm = dt["removed"] - removed_smelt, removed_smelt - dt["removed"]
    # The explanation recomputes datatrove's signatures in Python (about 150
    # documents/s): skipped on large inputs when the removed sets are equal.
    if only_dt or only_sm or n <= 20000:
        fig["differences"], fig["clusters"] = explain(docs, only_dt, only_sm)
    else:
        fig["differences"], fig["clusters"] = [], None
    print(f"input: {inp} ({n} documents)")
    print("| | removed | CPU s | wall s | docs / CPU-s |")
    print("|---|---|---|---|---|")
    print(f"| datatrove 0.10.1 (4 stages, 1 worker) | {fig['removed_datatrove']} | {fig['datatrove_cpu_s']} | {fig['datatrove_wall_s']} | {fig['datatrove_docs_per_cpu_s']} |")
    print(f"| smelt dedup_minhash (--parallelism 1) | {fig['removed_smelt']} | {fig['smelt_cpu_s']} | {fig['smelt_wall_s']} | {fig['smelt_docs_per_cpu_s']} |")
    print(f"removed by both: {fig['removed_both']}, Jaccard {fig['jaccard_removed']}; "
          f"smelt --parallelism 2 same set: {fig['smelt_parallelism_2_same_removed']}; speed-up {fig['speedup_per_cpu_s']}x per CPU-second")
    c = fig["clusters"] or {"clusters": "not computed", "of_2": "-", "of_3_or_more": "-", "differing_only_in_kept_member": 0, "other": 0}
    print(f"clusters (band-twin components): {c['clusters']} ({c['of_2']} of 2, {c['of_3_or_more']} of 3 or more); "
          f"differing in the kept member only: {c['differing_only_in_kept_member']}, otherwise: {c['other']}")
    for d in fig["differences"][: int(os.environ.get("SHOW", "10"))]:
        print(f"  {d['side']}: {d['id']} ({d['words']} words) band twins: {', '.join(d['band_twins'][:5])}")
    with open(os.path.join(work, "figures.json"), "w") as f:
        json.dump(fig, f, indent=1)
    print(f"figures: {os.path.join(work, 'figures.json')}")


if __name__ == "__main__":
    main()
