#!/usr/bin/env python3
"""What recording a training run costs, and how long tracing one batch takes (issue 21).

    python bench/train_record.py [--scratch target/bench-train] [--big-tokens 1e9] [--small-tokens 1e8]
                                 [--calls 100000] [--out bench/results/train_record.txt]

1. registration (one-off): the rank file of a run (mkdir, JSON, os.replace), median of 20 runs;
2. ``ShardLoader.log(step, loss=..., lr=...)``: per call, median and mean of ``--calls`` calls timed one
   by one, plus the flush (serializing and writing the lines) per line;
3. ShardLoader's own per-batch time (one worker, batch 16 x seq 1024) on a generated version,
   recording and not, and the ratio of recording to it and to 0.24 ms (69M tokens/s, the loader's
   rate on the H100 machine: bench/README.md "Feeding a GPU");
4. ``python -m smelt_data.trace ROOT RUN --batch B`` (wall time of the whole command, median of 3)
   on generated versions of ``--small-tokens`` and ``--big-tokens`` tokens (4 bytes per token on
   disk: check ``df -h`` first), a batch near the start and one in the middle of the epoch: it
   seeks, so the time grows with the footers and n_tokens read, not with the batch's position.

Generated versions: documents of 200-1,800 random ids (uint32) ending with EOS 0, 25M tokens per
shard, row groups of 1,024 rows (~1M tokens). The scratch directory is deleted at the end.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
PYTHON_DIR = HERE.parent / "python"
sys.path.insert(0, str(PYTHON_DIR))
from smelt_data import ShardLoader, TokenShardDataset  # noqa: E402
from smelt_data import runs as runsmod  # noqa: E402

H100_BATCH_MS = 16 * 1024 / 69e6 * 1e3  # 0.237 ms


def generate(root: Path, tokens: int, per_shard: int = 25_000_000, seed: int = 0, low_entropy: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    schema = pa.schema([("id", pa.string()), ("input_ids", pa.list_(pa.uint32())), ("n_tokens", pa.uint32()),
                        ("url", pa.string()), ("lang", pa.string())],
                       metadata={"smelt.tokenizer": "bench:random", "smelt.tokenizer_hash": "xxh3-128:" + "1" * 32,
                                 "smelt.vocab_size": "100000", "smelt.eos_id": "0"})
    shards, done, s, t0 = [], 0, 0, time.perf_counter()
    while done < tokens:
        want = min(per_shard, tokens - done)
        lens = rng.integers(200, 1800, size=want // 1000 + 2).astype(np.int64)
        lens = lens[np.cumsum(lens) <= want] if lens.sum() > want else lens
        if len(lens) == 0:
            lens = np.array([want], np.int64)
        n = int(lens.sum())
        if low_entropy:  # 16 distinct ids repeating: dictionary + RLE encoded, ~20x smaller on disk
            values = np.tile(np.arange(1, 17, dtype=np.uint32), n // 16 + 1)[:n]
        else:
            values = rng.integers(1, 100_000, size=n, dtype=np.uint32)
        offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
        values[offsets[1:] - 1] = 0  # EOS ends every document
        ids = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))
        rows = len(lens)
        t = pa.table({"id": pa.array([f"s{s}d{i}" for i in range(rows)]), "input_ids": ids,
                      "n_tokens": pa.array(lens.astype(np.uint32)),
                      "url": pa.array([f"https://e{i % 97}.example/{i}" for i in range(rows)]),
                      "lang": pa.array(["en"] * rows)}, schema=schema)
        rel = f"data/v1/part-{s:05d}.parquet"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(t, root / rel, row_group_size=1024, compression="snappy")
        shards.append({"path": rel, "rows": rows})
        done += n
        s += 1
    manifest = {"format": 1, "dataset": "bench", "version": 1, "digest": f"bench:{tokens}",
                "schema": [{"name": n} for n in schema.names], "shards": shards}
    (root / "_versions").mkdir(parents=True, exist_ok=True)
    (root / "_versions" / "000001.json").write_text(json.dumps(manifest))
    size = sum((root / sh["path"]).stat().st_size for sh in shards)
    return {"tokens": done, "shards": len(shards), "bytes": size, "generate_s": round(time.perf_counter() - t0, 1)}


def bench_registration(root: Path, n: int = 20) -> float:
    ds = TokenShardDataset(root, seq_len=1024)
    times = []
    for i in range(n):
        rec = runsmod.Recorder(runsmod.resolve_run(f"reg-{i}"), ds, 16, 1, "ShardLoader")
        t = time.perf_counter()
        rec.segment(0, 0, {0: 0})
        times.append(time.perf_counter() - t)
        rec.close()
    return statistics.median(times) * 1e3


def bench_log(root: Path, calls: int) -> dict:
    ds = TokenShardDataset(root, seq_len=1024)
    loader = ShardLoader(ds, batch_size=16, num_workers=1, run="log-bench")
    it = iter(loader)
    next(it)  # registers
    rec = loader._rec
    rec._next_flush = float("inf")  # time log() alone; the flush is timed below
    per = np.empty(calls, np.int64)
    clock = time.perf_counter_ns
    log = loader.log
    for i in range(calls):
        t = clock()
        log(i, loss=2.5, lr=3e-4)
        per[i] = clock() - t
    t = time.perf_counter()
    rec.flush()
    flush_s = time.perf_counter() - t
    # and the loop as it runs, flushes included (every 2 s), for the mean
    rec._next_flush = 0.0
    t = time.perf_counter()
    for i in range(calls):
        log(i, loss=2.5, lr=3e-4)
    rec.flush()
    loop_s = time.perf_counter() - t
    loader.close()
    lines = (root / "_training/log-bench/metrics-00000.jsonl").read_bytes().count(b"\n")
    return {"calls": calls, "median_us": float(np.median(per)) / 1e3, "mean_us": float(per.mean()) / 1e3,
            "p99_us": float(np.percentile(per, 99)) / 1e3, "flush_per_line_us": flush_s / calls * 1e6,
            "loop_with_flushes_per_call_us": loop_s / calls * 1e6, "lines_written": lines}


def bench_loader(root: Path, seconds: float, run) -> float:
    ds = TokenShardDataset(root, seq_len=1024)
    with ShardLoader(ds, batch_size=16, num_workers=1, run=run) as loader:
        n, t0, warm = 0, None, 20
        step = 0
        while True:
            for _ in loader:
                if run is not False:
                    loader.log(step, loss=2.5, lr=3e-4)
                step += 1
                n += 1
                if n == warm:
                    t0 = time.perf_counter()
                elif n > warm and time.perf_counter() - t0 >= seconds:
                    return (time.perf_counter() - t0) / (n - warm) * 1e3


def trace_time(root: Path, run_id: str, batch: int, reps: int = 3):
    cmd = [sys.executable, "-m", "smelt_data.trace", str(root), run_id, "--batch", str(batch)]
    env = dict(os.environ, PYTHONPATH=str(PYTHON_DIR))
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - t)
        if out.returncode != 0:
            raise RuntimeError(out.stderr)
    got = json.loads(out.stdout)["batches"][0]
    docs = sum(len(s["docs"]) for s in got["samples"])
    return statistics.median(times), docs, " ".join(["PYTHONPATH=python", "python"] + cmd[1:])


def trace_bench(root: Path, batch_mid: int) -> list:
    ds = TokenShardDataset(root, seq_len=1024)
    with ShardLoader(ds, batch_size=16, num_workers=1, run="trace-bench") as loader:
        for i, _ in enumerate(loader):
            loader.log(i, loss=1.0)
            if i == 2:
                break
    rows = []
    for b in (2, batch_mid):
        s, docs, cmd = trace_time(root, "trace-bench", b)
        rows.append((b, s, docs, cmd))
    return rows


def trace_big(a, scratch: Path, say) -> None:
    scratch.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(scratch).free
    need = a.big_tokens * (0.3 if a.low_entropy else 4.1)
    if free - need < 15e9:
        say(f"big version skipped: {free / 1e9:.1f} GB free, it needs {need / 1e9:.1f} GB and 15 GB must stay free")
        return
    big = scratch / "big"
    info = generate(big, int(a.big_tokens), low_entropy=a.low_entropy)
    say(f"trace, version of {info['tokens']:,} tokens ({info['shards']} shards, {info['bytes'] / 1e9:.2f} GB"
        f"{', low-entropy ids' if a.low_entropy else ''}, generated in {info['generate_s']} s):")
    for b, s, docs, cmd in trace_bench(big, int(info["tokens"] / 1024 / 16 / 2)):
        say(f"  batch {b}: {s:.3f} s wall (median of 3; {docs} document parts)   $ {cmd.replace(str(big), '$BIG')}")
    shutil.rmtree(big)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scratch", default="target/bench-train")
    p.add_argument("--big-tokens", type=float, default=1e9)
    p.add_argument("--small-tokens", type=float, default=1e8)
    p.add_argument("--calls", type=int, default=100_000)
    p.add_argument("--loader-seconds", type=float, default=10)
    p.add_argument("--out", default=str(HERE / "results" / "train_record.txt"))
    p.add_argument("--trace-only", action="store_true", help="only the big version's trace timing")
    p.add_argument("--low-entropy", action="store_true",
                   help="big version with 16 distinct ids repeating, so 10B tokens fit a scratch disk: the trace reads "
                        "n_tokens before the batch and only the ids of the row groups holding it, so its time does "
                        "not depend on the ids' entropy")
    a = p.parse_args()
    scratch = Path(a.scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    lines = [f"# bench/train_record.py, {time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime())}",
             f"# machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
             f"load average {os.getloadavg()[0]:.2f} at start; python {platform.python_version()}, "
             f"numpy {np.__version__}, pyarrow {pa.__version__}",
             f"# command: python bench/train_record.py --big-tokens {a.big_tokens:.0f} --small-tokens {a.small_tokens:.0f} "
             f"--calls {a.calls}" + (" --trace-only" if a.trace_only else "") + (" --low-entropy" if a.low_entropy else ""), ""]

    def say(s=""):
        print(s, flush=True)
        lines.append(s)

    small = scratch / "small"
    if a.trace_only:
        trace_big(a, scratch, say)
        shutil.rmtree(scratch, ignore_errors=True)
        Path(a.out).write_text("\n".join(lines) + "\n")
        print(f"wrote {a.out}")
        return
    info = generate(small, int(a.small_tokens))
    say(f"small version: {info}")
    reg = bench_registration(small)
    say(f"registration (rank file: mkdir + JSON + os.replace), median of 20: {reg:.3f} ms (once per run and rank)")
    lg = bench_log(small, a.calls)
    say(f"log(step, loss=, lr=) over {lg['calls']} calls: median {lg['median_us']:.3f} us, mean {lg['mean_us']:.3f} us, "
        f"p99 {lg['p99_us']:.3f} us; flush (json + one os.write) {lg['flush_per_line_us']:.3f} us per line; "
        f"the loop with its flushes: {lg['loop_with_flushes_per_call_us']:.3f} us per call; lines written {lg['lines_written']}")
    per_log_us = lg["median_us"] + lg["flush_per_line_us"]
    off = bench_loader(small, a.loader_seconds, False)
    on = bench_loader(small, a.loader_seconds, "loader-bench")
    say(f"ShardLoader per batch (1 worker, 16 x 1024, {a.loader_seconds:.0f} s each) on this machine: "
        f"{off:.4f} ms without recording, {on:.4f} ms recording + log() every batch")
    say(f"recording per batch (log median + flush per line) = {per_log_us:.3f} us = "
        f"{per_log_us / 1e3 / H100_BATCH_MS * 100:.3f} % of 0.237 ms (69M tokens/s, H100 machine), "
        f"{per_log_us / 1e3 / off * 100:.3f} % of this machine's {off:.4f} ms")
    say("  (a training step is longer than the loader's batch time: GPT-2 small on an H100 takes 40-80 ms per "
        f"step, where the same cost is {per_log_us / 1e3 / 40 * 100:.5f} %)")
    say()
    mid_small = int(info["tokens"] / 1024 / 16 / 2)
    say(f"trace, version of {info['tokens']:,} tokens ({info['shards']} shards, {info['bytes'] / 1e9:.2f} GB):")
    for b, s, docs, cmd in trace_bench(small, mid_small):
        say(f"  batch {b}: {s:.3f} s wall (median of 3; {docs} document parts)   $ {cmd.replace(str(small), '$SMALL')}")
    shutil.rmtree(small)
    trace_big(a, scratch, say)
    shutil.rmtree(scratch, ignore_errors=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
