"""A tiny next-token model in pure numpy, trained on CPU from a smelt version through ShardLoader,
logging its real training loss to the run (``ROOT/_training/<run id>/``) every step.

    python examples/train/tiny_lm.py ROOT [--version V] [--run-id ID] [--steps 1000] [--epochs E]
                                          [--seq-len 64] [--batch 8] [--seed 0] [--lr 0.01]

Model: token ids hashed into 2048 buckets; logits(next) = E[bucket(x)] @ W + b (embedding dim 32,
softmax over the buckets): a hashed bigram model. Manual gradients, Adam. Its loss is low on
predictable text and near ln(2048) = 7.6 on random ids, so batches that hold garbage documents
stand out (``smelt train spikes``; ``python -m smelt_data.trace ROOT RUN --step S``). Step s trains on
the loader's batch s and is logged after it (``loader.log(s, loss=..., lr=...)``). Prints one JSON
summary line. Needs numpy, pyarrow and smelt_data only (about 1,000 steps in a few seconds).
"""

import argparse
import json
import os
import sys
import time

import numpy as np

try:
    from smelt_data import ShardLoader, TokenShardDataset
except ImportError:  # run from a checkout: the package is in python/
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
    from smelt_data import ShardLoader, TokenShardDataset

BUCKETS, DIM = 2048, 32


def buckets(ids: np.ndarray) -> np.ndarray:
    return ((ids.astype(np.uint64) * np.uint64(2654435761)) >> np.uint64(7)).astype(np.int64) % BUCKETS


class TinyLM:
    def __init__(self, seed: int, lr: float):
        rng = np.random.default_rng(seed)
        self.p = {"E": (rng.standard_normal((BUCKETS, DIM)) * 0.1).astype(np.float32),
                  "W": (rng.standard_normal((DIM, BUCKETS)) * 0.1).astype(np.float32),
                  "b": np.zeros(BUCKETS, np.float32)}
        self.m = {k: np.zeros_like(v) for k, v in self.p.items()}
        self.v = {k: np.zeros_like(v) for k, v in self.p.items()}
        self.lr, self.t = lr, 0

    def step(self, batch: np.ndarray) -> float:
        """One Adam step on ``batch`` [B, L + 1]; returns the mean cross-entropy (nats) before the update."""
        x, y = buckets(batch[:, :-1].ravel()), buckets(batch[:, 1:].ravel())
        n = len(x)
        z = self.p["E"][x]
        logits = z @ self.p["W"] + self.p["b"]
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        s = e.sum(axis=1, keepdims=True)
        loss = float(np.mean(np.log(s[:, 0]) - logits[np.arange(n), y]))
        g = e / s
        g[np.arange(n), y] -= 1.0
        g /= n
        grads = {"W": z.T @ g, "b": g.sum(axis=0), "E": np.zeros_like(self.p["E"])}
        np.add.at(grads["E"], x, g @ self.p["W"].T)
        self.t += 1
        b1, b2 = 0.9, 0.999
        for k, gr in grads.items():
            self.m[k] = b1 * self.m[k] + (1 - b1) * gr
            self.v[k] = b2 * self.v[k] + (1 - b2) * gr * gr
            mh = self.m[k] / (1 - b1 ** self.t)
            vh = self.v[k] / (1 - b2 ** self.t)
            self.p[k] -= self.lr * mh / (np.sqrt(vh) + 1e-8)
        return loss


def train(root, version=None, run_id=None, steps=1000, epochs=None, seq_len=64, batch=8, seed=0, lr=0.01,
          quiet=False) -> dict:
    ds = TokenShardDataset(root, version=version, seq_len=seq_len, seed=seed)
    run = {"id": run_id, "name": "tiny_lm", "params": {"model": "tiny_lm", "buckets": BUCKETS, "dim": DIM, "lr": lr,
                                                        "optimizer": "adam"}}
    model = TinyLM(seed, lr)
    losses, step, t0 = [], 0, time.perf_counter()
    with ShardLoader(ds, batch_size=batch, num_workers=1, run=run) as loader:
        epoch = 0
        while step < steps and (epochs is None or epoch < epochs):
            for b in loader:
                loss = model.step(np.asarray(b))
                loader.log(step, loss=loss, lr=lr)
                losses.append(loss)
                step += 1
                if step >= steps:
                    break
            epoch += 1
        rid = loader.run_id
    elapsed = time.perf_counter() - t0
    out = {"run_id": rid, "dataset": ds.manifest["dataset"], "version": ds.manifest["version"], "steps": step,
           "epochs_started": epoch, "first_loss": losses[0] if losses else None,
           "last_loss": float(np.mean(losses[-20:])) if losses else None, "elapsed_s": round(elapsed, 3)}
    if not quiet:
        print(json.dumps(out))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", help="dataset root (or a manifest)")
    p.add_argument("--version", type=int)
    p.add_argument("--run-id", help="default: SMELT_TRAIN_RUN, TORCHELASTIC_RUN_ID, or generated")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--epochs", type=int, help="stop after this many epochs (default: only --steps)")
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=0.01)
    a = p.parse_args()
    train(a.root, a.version, a.run_id, a.steps, a.epochs, a.seq_len, a.batch, a.seed, a.lr)


if __name__ == "__main__":
    main()
