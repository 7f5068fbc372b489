#!/usr/bin/env python3
"""Tokens/s the smelt_data loader delivers with one worker and no model.

  python examples/train/loader_throughput.py SMELT_MANIFEST_OR_DATASET_ROOT [--mode shard] [--seq-len 1024] [--batch 16] [--seconds 20]

Modes (one JSON line each; --mode all runs every one that can run here):
  shard        ShardLoader, one worker process, batches handed over in shared buffers (CPU tensors)
  shard-cuda   the same, each batch copied to the GPU from page-locked buffers (device tensors)
  dataloader   torch's DataLoader, one worker, the dataset's ready batches (batch_size=None)
  in-process   the dataset iterated in this process (no worker: the dataset's own rate)

Goal (issue 6): with one worker, 100x the 373,000 tokens/s one H200 trains a
GPT-2-small-sized model at, i.e. 37.3M tokens/s.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
from smelt_data import ShardLoader, TokenShardDataset  # noqa: E402
from smelt_data import dataset as dsmod  # noqa: E402

GOAL = 373_000 * 100
MODES = ["shard", "shard-cuda", "dataloader", "in-process"]


def batches(mode, ds, a):
    """Endless batches in `mode`, epoch after epoch."""
    torch = dsmod.torch
    if mode.startswith("shard"):
        loader = ShardLoader(ds, batch_size=a.batch, num_workers=1, ring=a.ring,
                             device="cuda" if mode == "shard-cuda" else None, pin_memory=mode == "shard-cuda")
        while True:
            yield from loader
    epoch = 0
    while True:
        ds.set_epoch(epoch)
        if mode == "dataloader":
            yield from torch.utils.data.DataLoader(ds, batch_size=None, num_workers=1, persistent_workers=False)
        else:
            yield from ds.iter_worker(0, 1)
        epoch += 1


def measure(mode, a):
    ds = TokenShardDataset(a.source, seq_len=a.seq_len, seed=0, num_workers=1, batch_size=a.batch, dtype=a.dtype)
    torch = dsmod.torch
    tokens = samples = n = 0
    it = batches(mode, ds, a)
    for _ in range(a.warmup):
        next(it)
    t0 = time.perf_counter()
    last = None
    while time.perf_counter() - t0 < a.seconds:
        for _ in range(64):
            b = next(it)
            tokens += b.shape[0] * b.shape[1]
            samples += b.shape[0]
            n += 1
            last = b
    if mode == "shard-cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    it.close()
    return {"mode": mode, "seq_len": a.seq_len, "batch": a.batch, "dtype": a.dtype, "batches": n, "samples": samples,
            "tokens": tokens, "seconds": round(secs, 2), "tokens_per_s": round(tokens / secs),
            "goal_tokens_per_s": GOAL, "x_goal": round(tokens / secs / GOAL, 3),
            "x_gpt2_small_h200": round(tokens / secs / 373_000, 1), "epochs_started": ds.epoch + 1,
            "device": str(getattr(last, "device", "cpu")),
            "version": f"{ds.manifest['dataset']}@{ds.manifest['version']}", "tokenizer": ds.tokenizer}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("source", nargs="?", default=os.environ.get("SMELT_MANIFEST"))
    ap.add_argument("--mode", choices=MODES + ["all"], default="shard")
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--dtype", choices=["int64", "int32"], default="int64")
    ap.add_argument("--ring", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--warmup", type=int, default=20, help="batches taken before the clock starts")
    a = ap.parse_args()
    torch = dsmod.torch
    modes = MODES if a.mode == "all" else [a.mode]
    for mode in modes:
        if mode == "dataloader" and torch is None or mode == "shard-cuda" and (torch is None or not torch.cuda.is_available()):
            if a.mode != "all":
                raise SystemExit(f"--mode {mode} needs torch" + (" and a GPU" if mode == "shard-cuda" else ""))
            continue
        print(json.dumps(measure(mode, a)), flush=True)


if __name__ == "__main__":
    main()
