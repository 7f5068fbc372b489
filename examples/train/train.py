#!/usr/bin/env python3
"""A small GPT trained for a few hundred steps on a smelt version's token
shards, fed by smelt_data's ShardLoader (one worker process, batches handed
over in shared page-locked buffers and copied to the GPU asynchronously) or,
with --loader dataloader, by torch's DataLoader with one worker. Reports where each step's time goes (waiting for data vs the rest)
and, on a GPU, its utilisation sampled every 50 ms (NVML), to show whether
the loader ever idles the GPU.

  python examples/train/train.py $SMELT_MANIFEST --steps 300                 # GPU: GPT-2 small (12 x 768)
  python examples/train/train.py $SMELT_MANIFEST --model tiny --steps 50     # CPU
  # or as a pipeline's after-commit hook:  train: python examples/train/train.py --steps 300

Prints one JSON summary line (and writes it to --out if given).
"""
import argparse
import json
import math
import os
import sys
import threading
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
from smelt_data import ShardLoader, TokenShardDataset  # noqa: E402

MODELS = {  # layers, heads, width
    "tiny": (2, 4, 128),
    "small": (12, 12, 768),  # GPT-2 small
}


class Block(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.h, d // self.h).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(y)
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class GPT(nn.Module):
    def __init__(self, vocab, seq_len, layers, heads, d):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(seq_len, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.tok.weight
        for m in self.modules():  # GPT-2's initialisation
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, idx, targets):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))
        for blk in self.blocks:
            x = blk(x)
        logits = self.head(self.ln(x))
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))


class GpuSampler:
    """GPU utilisation (%) every 50 ms through NVML, while active."""

    def __init__(self):
        self.samples, self.active, self.stop = [], False, False
        try:
            import pynvml
            pynvml.nvmlInit()
            self.nvml, self.handle = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # no NVML (CPU run)
            self.nvml = None
            return
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self.stop:
            if self.active:
                self.samples.append(self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)
            time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("source", nargs="?", default=os.environ.get("SMELT_MANIFEST"))
    ap.add_argument("--model", choices=MODELS, default=None, help="default: small on a GPU, tiny on the CPU")
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=20, help="steps left out of the timing")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--loader", choices=["shard", "dataloader"], default="shard")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--expected-tokenizer", default=None)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if not a.source:
        raise SystemExit("give a manifest or dataset root (or set SMELT_MANIFEST)")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model_name = a.model or ("small" if device == "cuda" else "tiny")
    torch.manual_seed(0)
    ds = TokenShardDataset(a.source, seq_len=a.seq_len, seed=0, expected_tokenizer=a.expected_tokenizer,
                           num_workers=a.workers, batch_size=a.batch)
    vocab = ds.vocab_size or 65536
    model = GPT(vocab, a.seq_len, *MODELS[model_name]).to(device)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=6e-4, weight_decay=0.1, fused=device == "cuda")
    step_fn = torch.compile(model) if a.compile else model
    if a.loader == "shard":
        loader = ShardLoader(ds, batch_size=a.batch, num_workers=a.workers, device=device, pin_memory=device == "cuda")
    else:
        loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=a.workers, pin_memory=device == "cuda",
                                             persistent_workers=False, prefetch_factor=4 if a.workers else None)
    gpu = GpuSampler() if device == "cuda" else None
    waits, steps_s, losses = [], [], []
    epoch, it, step = 0, iter(loader), 0
    t_last = time.perf_counter()
    while step < a.steps:
        t0 = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            epoch += 1
            if a.loader == "dataloader":
                ds.set_epoch(epoch)
            it = iter(loader)
            continue
        if batch.shape[0] != a.batch:  # an epoch's last, smaller batch
            continue
        batch = batch.to(device, non_blocking=True)
        t1 = time.perf_counter()
        lr = 6e-4 * min(1.0, (step + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / a.steps)))
        for g in opt.param_groups:
            g["lr"] = lr
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = step_fn(batch[:, :-1], batch[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        if step == a.warmup and gpu:
            gpu.active = True
        if step >= a.warmup:
            waits.append(t1 - t0)
            steps_s.append(t2 - t0)
        if step % 25 == 0 or step == a.steps - 1:
            losses.append((step, round(loss.item(), 4)))
            print(f"step {step:4d} loss {loss.item():.4f} step {1000 * (t2 - t0):.1f} ms (data {1000 * (t1 - t0):.2f} ms)",
                  file=sys.stderr, flush=True)
        step += 1
        t_last = t2
    if gpu:
        gpu.stop = True
    timed = len(steps_s)
    total = sum(steps_s)
    tokens = timed * a.batch * a.seq_len
    out = {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "model": model_name, "params_M": round(params / 1e6, 1), "seq_len": a.seq_len, "batch": a.batch,
        "steps": a.steps, "timed_steps": timed, "workers": a.workers, "loader": a.loader, "compile": a.compile,
        "tokens_per_s": round(tokens / total) if total else None,
        "step_ms_mean": round(1000 * total / timed, 2) if timed else None,
        "data_wait_ms_mean": round(1000 * sum(waits) / timed, 3) if timed else None,
        "data_wait_ms_max": round(1000 * max(waits), 3) if timed else None,
        "data_wait_share": round(sum(waits) / total, 5) if total else None,
        "gpu_util_mean": round(sum(gpu.samples) / len(gpu.samples), 1) if gpu and gpu.samples else None,
        "gpu_util_samples": len(gpu.samples) if gpu else 0,
        "loss": losses, "epochs": epoch, "version": f"{ds.manifest['dataset']}@{ds.manifest['version']}",
        "tokenizer": ds.tokenizer,
    }
    line = json.dumps(out)
    print(line)
    if a.out:
        with open(a.out, "w") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
