"""Which documents were in a batch of a recorded training run, found by seeking, not replaying.

    python -m smelt_data.trace ROOT RUN_ID [--rank R] --batch B [--batch B2 ...] [--step S ...] [--excerpt-tokens 64]

prints one JSON object (``{"run_id", "rank", "batches": [{"batch", "step", "epoch", "worker",
"consumer", "samples": [{"sample", "docs": [...]}]}]}``); errors go to stderr with exit code 2.
``batch_documents(root, run_id, rank, batches)`` is the same from Python.

How a global batch ``b`` of rank ``R`` is found (``ROOT/_training/<run id>/rank-RRRRR.json``)::

    segments ──last one with batch <= b──► (epoch e, samples taken per consumer, k = b - its batch)
    per epoch from there: samples per consumer = (tokens of its chunks - 1) // seq_len   (n_tokens only)
        batches per worker = ceil((samples - taken) / batch_size); the rotation deals batch j of the
        epoch to the live workers cyclically (a worker whose epoch is over leaves it), so the round
        r and the worker follow from the counts; k past the epoch's total goes on into epoch e + 1
    batch ──► samples [taken + r * B, ...) of that consumer ──► stream window [i * L, i * L + L + 1)
        ──cumulative chunk tokens (n_tokens)──► the chunk(s) holding it: only their input_ids are read,
        their rows put in the epoch's order (smelt_data.plan.row_order) to find each row's part

The module imports only numpy, pyarrow and smelt_data's plan and runs modules: smelt's CLI runs it
from its embedded copy of the package.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .plan import Chunk, chunk_order, chunk_tokens_from_counts, row_order, samples_in
from .runs import check_run_id, metrics_file, rank_file, training_dir


def _read_shard(path: str):
    """(rows of each row group, every row's n_tokens) of one shard: its footer and one column."""
    f = pq.ParquetFile(path)
    md = f.metadata
    sizes = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
    counts = f.read(columns=["n_tokens"], use_threads=False).column("n_tokens").to_numpy()
    return sizes, counts


class TraceError(Exception):
    """The batch cannot be traced (no such run, rank, step, or a batch past the run's data)."""


def read_metrics(path: Path) -> List[dict]:
    """The metrics lines of one rank; unparsable lines (a torn last line of a killed process) are skipped."""
    out = []
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return out
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


class RunPlan:
    """One rank of a recorded run: its rank file, the version's chunks, and the arithmetic of its batches."""

    def __init__(self, root, run_id: str, rank: int = 0):
        self.root = Path(root)
        try:
            check_run_id(run_id)
        except ValueError as e:
            raise TraceError(str(e)) from None
        self.run_id, self.rank = run_id, rank
        path = rank_file(self.root, run_id, rank)
        if not path.is_file():
            d = training_dir(self.root, run_id)
            if not d.is_dir():
                raise TraceError(f"no training run {run_id!r} under {self.root / '_training'}")
            ranks = sorted(p.name[5:10] for p in d.glob("rank-*.json"))
            raise TraceError(f"training run {run_id!r} has no rank {rank} ({path} is missing; ranks recorded: "
                             f"{', '.join(str(int(r)) for r in ranks) or 'none'})")
        try:
            self.header = h = json.loads(path.read_text())
        except ValueError as e:
            raise TraceError(f"{path} is not JSON: {e}") from None
        if h.get("format") != 1:
            raise TraceError(f"{path} has format {h.get('format')!r}; this smelt_data reads format 1")
        manifest_path = self.root / h["manifest"]
        try:
            self.manifest = json.loads(manifest_path.read_text())
        except FileNotFoundError:
            raise TraceError(f"the run read {h['dataset']}@{h['version']}, whose manifest {manifest_path} "
                             "is gone") from None
        if h.get("digest") is not None and self.manifest.get("digest") != h["digest"]:
            raise TraceError(f"{manifest_path} has digest {self.manifest.get('digest')}, but the run read "
                             f"{h['digest']}: the version was rewritten, its batches cannot be traced")
        self.rel_paths = [s["path"] for s in self.manifest["shards"]]
        self.paths = [str(self.root / p) for p in self.rel_paths]
        # Every shard's footer and n_tokens, read once and in parallel (Parquet decoding frees the
        # GIL): the epoch arithmetic needs every chunk's token count, and a 10B-token version has
        # hundreds of shards. The chunks are list_chunks()'s: non-empty row groups in shard order.
        with ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as pool:
            shards = list(pool.map(_read_shard, self.paths))
        self.chunks: List[Chunk] = [Chunk(i, rg, n) for i, (sizes, _) in enumerate(shards)
                                    for rg, n in enumerate(sizes) if n]
        self.index = {(c.shard, c.row_group): i for i, c in enumerate(self.chunks)}
        self._shard_counts = shards
        self.L, self.B = int(h["seq_len"]), int(h["batch_size"])
        self.seed, self.shuffle = h["seed"], bool(h["shuffle"])
        self.W, self.world = int(h["workers"]), int(h["world_size"])
        self.C = self.W * self.world
        self.recorded_eos = h.get("recorded_eos")
        self.eos_id = h.get("eos_id")
        self.inserted_eos = self.eos_id if self.recorded_eos is None and self.eos_id is not None else None
        self.segments = sorted(h.get("segments") or [], key=lambda s: s["batch"])  # stable: later wins a tie
        if not self.segments:
            raise TraceError(f"{path} records no segment: the run never started iterating")
        self.metrics = read_metrics(metrics_file(self.root, run_id, rank))
        epochs = [s["epoch"] for s in self.segments] + [m["epoch"] for m in self.metrics if isinstance(m.get("epoch"), int)]
        self.last_epoch = max(epochs + [h.get("last_epoch", -1)])
        self._tokens: Dict[int, int] = {}  # chunk index -> stream tokens
        self._rg_first_row: Dict[int, List[int]] = {}  # shard -> first row of each row group
        self._detail: Dict[tuple, dict] = {}

    # ----- arithmetic from n_tokens -----

    def chunk_tokens(self, ci: int) -> int:
        if ci not in self._tokens:
            shard = self.chunks[ci].shard
            sizes, counts = self._shard_counts[shard]
            first = self.first_rows(shard)
            for rg in range(len(sizes)):
                j = self.index.get((shard, rg))
                if j is not None:
                    self._tokens[j] = chunk_tokens_from_counts(counts[first[rg]:first[rg + 1]],
                                                               self.inserted_eos is not None)
        return self._tokens[ci]

    def first_rows(self, shard: int) -> List[int]:
        if shard not in self._rg_first_row:
            sizes = self._shard_counts[shard][0]
            self._rg_first_row[shard] = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).tolist()
        return self._rg_first_row[shard]

    def consumer_chunks(self, epoch: int, consumer: int) -> List[int]:
        return chunk_order(len(self.chunks), self.seed, epoch, self.shuffle)[consumer::self.C]

    def samples(self, epoch: int, consumer: int) -> int:
        return samples_in(sum(self.chunk_tokens(ci) for ci in self.consumer_chunks(epoch, consumer)), self.L)

    def locate(self, b: int) -> dict:
        """The epoch, worker, consumer and sample range of this rank's global batch ``b``."""
        if b < 0:
            raise TraceError(f"batch {b} is negative: batches count from 0")
        starts = [s["batch"] for s in self.segments]
        s = int(np.searchsorted(starts, b, side="right")) - 1
        if s < 0:
            raise TraceError(f"batch {b} is before the run's first recorded segment (batch {starts[0]})")
        seg = self.segments[s]
        k, epoch = b - seg["batch"], seg["epoch"]
        taken = {int(c): int(n) for c, n in seg["taken"].items()}
        passed = 0
        while True:
            if epoch > self.last_epoch:
                raise TraceError(
                    f"batch {b} is past the end of the run's data: from the segment at batch {seg['batch']} "
                    f"(epoch {seg['epoch']}), rank {self.rank}'s plan yields {passed} batches through epoch "
                    f"{self.last_epoch}, the last epoch the run reached (its segments and metrics)")
            consumers = [self.rank * self.W + w for w in range(self.W)]
            left = [max(0, self.samples(epoch, c) - taken.get(c, 0)) for c in consumers]
            counts = [-(-n // self.B) for n in left]
            total = sum(counts)
            if k < total:
                break
            k, passed, epoch, taken = k - total, passed + total, epoch + 1, {}
        # Round r holds the workers with more than r batches, in worker order.
        lo, hi = 0, max(counts)
        while lo < hi:  # the largest r with sum(min(n, r)) <= k
            mid = (lo + hi + 1) // 2
            if sum(min(n, mid) for n in counts) <= k:
                lo = mid
            else:
                hi = mid - 1
        r = lo
        k -= sum(min(n, r) for n in counts)
        w = [w for w in range(self.W) if counts[w] > r][k]
        c = self.rank * self.W + w
        first = taken.get(c, 0) + r * self.B
        last = min(first + self.B, taken.get(c, 0) + left[w])
        return {"epoch": epoch, "worker": w, "consumer": c, "first_sample": first, "samples": last - first}

    # ----- documents from input_ids -----

    def detail(self, epoch: int, ci: int) -> dict:
        """The chunk's rows in the epoch's stream order, with where each starts in the chunk's stream."""
        key = (epoch, ci)
        if key not in self._detail:
            c = self.chunks[ci]
            table = pq.ParquetFile(self.paths[c.shard]).read_row_group(c.row_group)
            col = table.column("input_ids").combine_chunks()
            values = col.values.to_numpy(zero_copy_only=False)
            offsets = col.offsets.to_numpy().astype(np.int64)
            order = row_order(values, offsets, self.seed, epoch, c, self.shuffle, self.recorded_eos)
            if order is None:
                order = np.arange(len(offsets) - 1)
            real = (offsets[1:] - offsets[:-1])[order]
            lens = real + (1 if self.inserted_eos is not None else 0)
            scalar = [n for n, t in zip(table.schema.names, table.schema.types)
                      if n not in ("id", "n_tokens", "input_ids") and not (pa.types.is_list(t) or pa.types.is_large_list(t)
                                                                           or pa.types.is_struct(t) or pa.types.is_map(t))]
            self._detail[key] = {"chunk": c, "values": values, "offsets": offsets, "order": order, "real": real,
                                 "starts": np.concatenate([[0], np.cumsum(lens)]), "table": table, "scalar": scalar}
        return self._detail[key]

    def window_docs(self, epoch: int, consumer: int, sample: int, excerpt: Optional[int]) -> List[dict]:
        cis = self.consumer_chunks(epoch, consumer)
        cum = np.concatenate([[0], np.cumsum([self.chunk_tokens(ci) for ci in cis])])
        a, b = sample * self.L, sample * self.L + self.L + 1
        docs = []
        first = int(np.searchsorted(cum, a, side="right")) - 1
        for j in range(first, len(cis)):
            if cum[j] >= b:
                break
            if cum[j + 1] <= a:
                continue
            d = self.detail(epoch, cis[j])
            lo_c, hi_c = a - int(cum[j]), b - int(cum[j])  # the window in the chunk's stream
            starts = d["starts"]
            q0 = max(0, int(np.searchsorted(starts, lo_c, side="right")) - 1)
            for q in range(q0, len(d["order"])):
                rs = int(starts[q])
                if rs >= hi_c:
                    break
                if int(starts[q + 1]) <= lo_c:
                    continue
                docs.append(self._doc(d, q, max(lo_c - rs, 0), min(hi_c - rs, int(starts[q + 1]) - rs), excerpt))
        return docs

    def _doc(self, d: dict, q: int, lo: int, hi: int, excerpt: Optional[int]) -> dict:
        c, row = d["chunk"], int(d["order"][q])
        real = int(d["real"][q])
        to = min(hi, real)
        frm = min(lo, real)
        base = int(d["offsets"][row])
        end = to if excerpt is None else min(to, frm + excerpt)
        t = d["table"]
        out = {"shard": c.shard, "path": self.rel_paths[c.shard], "row_group": c.row_group,
               "row": self.first_rows(c.shard)[c.row_group] + row,
               "id": t.column("id")[row].as_py() if "id" in t.schema.names else None,
               "n_tokens": t.column("n_tokens")[row].as_py() if "n_tokens" in t.schema.names else real,
               "from": frm, "to": to}
        if self.inserted_eos is not None and hi > real:
            out["eos"] = True  # the eos_id the loader put after this row is in the window, after ids[from:to]
        out["columns"] = {n: t.column(n)[row].as_py() for n in d["scalar"]}
        out["excerpt_ids"] = d["values"][base + frm:base + end].tolist()
        return out

    # ----- steps -----

    def batch_of_step(self, step: int) -> int:
        """The last batch yielded before ``log(step)``; a step never logged is taken as the batch itself."""
        logged = [m for m in self.metrics if m.get("step") == step and isinstance(m.get("batch"), int)]
        if not logged:
            return step
        b = logged[-1]["batch"] - 1
        if b < 0:
            raise TraceError(f"step {step} was logged before the loader yielded any batch")
        return b

    def step_of_batch(self, b: int) -> Optional[int]:
        logged = [m.get("step") for m in self.metrics if m.get("batch") == b + 1]
        return logged[-1] if logged else None

    def batch(self, b: int, excerpt: Optional[int] = 64, step=None) -> dict:
        loc = self.locate(b)
        samples = []
        for i in range(loc["first_sample"], loc["first_sample"] + loc["samples"]):
            samples.append({"sample": i, "docs": self.window_docs(loc["epoch"], loc["consumer"], i, excerpt)})
        return {"batch": b, "step": self.step_of_batch(b) if step is None else step, "epoch": loc["epoch"],
                "worker": loc["worker"], "consumer": loc["consumer"], "samples": samples}


def batch_documents(root, run_id: str, rank: int = 0, batches: Sequence[int] = (), steps: Sequence[int] = (),
                    excerpt_tokens: Optional[int] = 64) -> dict:
    """The documents in each of ``batches`` (and of the batches of ``steps``) of ``rank`` in run ``run_id``:
    ``{"run_id", "rank", "eos_id", "batches": [...]}`` as the command prints it. ``excerpt_tokens=None``
    gives each document part's whole ids. Raises :class:`TraceError`."""
    plan = RunPlan(root, run_id, rank)
    out = []
    for b in batches:
        out.append(plan.batch(int(b), excerpt_tokens))
    for s in steps:
        out.append(plan.batch(plan.batch_of_step(int(s)), excerpt_tokens, step=int(s)))
    return {"run_id": run_id, "rank": rank, "dataset": plan.header.get("dataset"), "version": plan.header.get("version"),
            "seq_len": plan.L, "inserted_eos_id": plan.inserted_eos, "batches": out}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m smelt_data.trace",
                                description="Which documents were in a batch of a recorded training run (JSON on stdout).")
    p.add_argument("root", help="the dataset root (holds _versions/ and _training/)")
    p.add_argument("run_id")
    p.add_argument("--rank", type=int, default=0)
    p.add_argument("--batch", type=int, action="append", default=[], help="a global batch of the rank (from 0)")
    p.add_argument("--step", type=int, action="append", default=[],
                   help="a logged step: the last batch yielded before log(step) (a step never logged: batch = step)")
    p.add_argument("--excerpt-tokens", type=int, default=64, help="ids of each document part to print (-1: all)")
    args = p.parse_args(argv)
    if not args.batch and not args.step:
        p.error("give at least one --batch or --step")
    try:
        out = batch_documents(args.root, args.run_id, args.rank, args.batch, args.step,
                              None if args.excerpt_tokens < 0 else args.excerpt_tokens)
    except TraceError as e:
        print(f"smelt_data.trace: {e}", file=sys.stderr)
        return 2
    except (OSError, pa.ArrowException, KeyError) as e:
        print(f"smelt_data.trace: cannot read the run's files: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    json.dump(out, sys.stdout, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
