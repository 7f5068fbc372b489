#!/usr/bin/env python3
"""Tokens/s the smelt_data loader delivers with one worker and no model.

  python examples/train/loader_throughput.py SMELT_MANIFEST_OR_DATASET_ROOT [--seq-len 1024] [--batch 16] [--seconds 20]

With torch: a DataLoader with one worker process (num_workers=1) taking the
dataset's ready batches of --batch samples (batch_size=None), as train.py reads. Without torch: the dataset iterated
in this process. Goal (issue 6): 100x the 373,000 tokens/s one H200 trains a
GPT-2-small-sized model at, i.e. 37.3M tokens/s.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
from smelt_data import TokenShardDataset  # noqa: E402
from smelt_data import dataset as dsmod  # noqa: E402

GOAL = 373_000 * 100


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("source", nargs="?", default=os.environ.get("SMELT_MANIFEST"))
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--in-process", action="store_true", help="no DataLoader even when torch is there")
    a = ap.parse_args()
    ds = TokenShardDataset(a.source, seq_len=a.seq_len, seed=0, num_workers=1, batch_size=a.batch)
    use_torch = dsmod.torch is not None and not a.in_process
    tokens = samples = 0
    epoch = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < a.seconds:
        ds.set_epoch(epoch)
        if use_torch:
            import torch
            it = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=1, pin_memory=False)
        else:
            it = ds.iter_worker(0, 1)
        for item in it:
            n = item.numel() if hasattr(item, "numel") else item.size
            tokens += n
            samples += item.shape[0]
            if time.perf_counter() - t0 >= a.seconds:
                break
        epoch += 1
    secs = time.perf_counter() - t0
    out = {"mode": "DataLoader, 1 worker" if use_torch else "in-process", "seq_len": a.seq_len, "batch": a.batch, "samples": samples,
           "tokens": tokens, "seconds": round(secs, 2), "tokens_per_s": round(tokens / secs), "goal_tokens_per_s": GOAL,
           "x_goal": round(tokens / secs / GOAL, 3), "x_gpt2_small_h200": round(tokens / secs / 373_000, 1),
           "epochs": epoch, "version": f"{ds.manifest['dataset']}@{ds.manifest['version']}", "tokenizer": ds.tokenizer}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
