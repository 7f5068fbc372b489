"""Training runs recorded against dataset versions: which run read which version, how its
position was set, and its metrics, written next to the version's manifests.

::

    ShardLoader(ds, ..., run=...)   ──first iteration──► ROOT/_training/<run id>/rank-RRRRR.json   (identity, plan inputs,
    TrainingRun.start(ds, ...)      ──resume / jump────►                                             segments: where the
                                                                                                   position was set)
    loader.log(step, loss=...)      ──buffer; every 2 s,─► ROOT/_training/<run id>/metrics-RRRRR.jsonl  (one JSON object
                                      close, exit                                                  per line, appended)

The rank file holds everything the plan needs (manifest, seed, shuffle, seq_len, batch size,
world size, workers, EOS handling) and the *segments*: the loader's global batch counter,
epoch and samples taken per consumer each time iteration started somewhere that does not
follow from the plan (the first iteration, after ``load_state_dict`` or ``set_epoch``, after a
loop left an epoch early). Between segments the batches follow deterministically from the plan,
so :mod:`smelt_data.trace` finds the documents of any batch from these files and the shards.

Recording never breaks or blocks training: an error writing (a read-only root, a full disk, a
permission) is one ``RuntimeWarning`` and the loader goes on (the run is then not recorded,
or loses the lines it could not write). ``log()`` appends a tuple to a list; lines are
serialized and written (one ``os.write`` per flush, no fsync) at most every 2 s, on ``close()``
and at interpreter exit, so a process killed with SIGKILL loses about the last 2 s of metrics.
A killed process can leave a torn last line: readers skip an unparsable final line (the next
writer starts on a new line).
"""

from __future__ import annotations

import atexit
import json
import math
import os
import re
import secrets
import socket
import sys
import time
import warnings
import weakref
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

FORMAT = 1
RUN_ID = re.compile(r"[A-Za-z0-9._-]{1,128}\Z")
FLUSH_EVERY_S = 2.0
RESERVED = ("step", "batch", "epoch", "tokens", "time")
#: Rank-file keys that must agree when a run id is reused (a resumed job): otherwise the
#: recorded plan would not be the one the batches came from.
SAME_PLAN = ("dataset", "version", "digest", "seq_len", "batch_size", "seed", "shuffle", "world_size", "workers",
             "eos_id", "recorded_eos")

_live: "weakref.WeakSet[Recorder]" = weakref.WeakSet()
_atexit_registered = False


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def training_dir(root: Union[str, os.PathLike], run_id: str) -> Path:
    return Path(root) / "_training" / run_id


def rank_file(root, run_id: str, rank: int) -> Path:
    return training_dir(root, run_id) / f"rank-{rank:05d}.json"


def metrics_file(root, run_id: str, rank: int) -> Path:
    return training_dir(root, run_id) / f"metrics-{rank:05d}.jsonl"


def check_run_id(run_id: str, what: str = "run id") -> str:
    if not isinstance(run_id, str) or not RUN_ID.match(run_id):
        raise ValueError(f"{what} {run_id!r} is not a run id: use 1 to 128 of A-Z a-z 0-9 . _ - "
                         "(it names the directory ROOT/_training/<run id>/)")
    return run_id


def generated_run_id() -> str:
    """``YYYYMMDDTHHMMSSZ-<6 hex>`` (UTC)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def default_run_id() -> str:
    """``SMELT_TRAIN_RUN``, else ``TORCHELASTIC_RUN_ID`` (torchrun gives every rank the same; "none" is
    ignored), else a generated id. An environment value that is not a valid id is a warning and a
    generated id (ranks started without torchrun get one each: set ``SMELT_TRAIN_RUN`` for them)."""
    for var in ("SMELT_TRAIN_RUN", "TORCHELASTIC_RUN_ID"):
        value = os.environ.get(var, "")
        if not value or (var == "TORCHELASTIC_RUN_ID" and value.lower() == "none"):
            continue
        if RUN_ID.match(value):
            return value
        warnings.warn(f"{var}={value!r} is not a run id (1 to 128 of A-Z a-z 0-9 . _ -): recording under a "
                      "generated id instead", RuntimeWarning, stacklevel=3)
        break
    return generated_run_id()


def resolve_run(run) -> Optional[dict]:
    """``run`` as given to a loader -> ``{"id", "name", "params"}``, or None when not recording.

    - None (the default): record, id from :func:`default_run_id`;
    - a string: the run id;
    - False: do not record;
    - a dict ``{"id": ..., "name": ..., "params": {...}}``, every key optional (no id: the default one).
    """
    if run is False:
        return None
    if run is None or run is True:
        return {"id": default_run_id(), "name": None, "params": {}}
    if isinstance(run, str):
        return {"id": check_run_id(run), "name": None, "params": {}}
    if isinstance(run, dict):
        unknown = set(run) - {"id", "name", "params"}
        if unknown:
            raise ValueError(f"run= takes the keys id, name and params, not {sorted(unknown)}")
        params = run.get("params") or {}
        if not isinstance(params, dict):
            raise ValueError(f"run['params'] must be a dict (model, lr, ...), not {type(params).__name__}")
        rid = run.get("id")
        return {"id": check_run_id(rid, "run['id']") if rid is not None else default_run_id(),
                "name": None if run.get("name") is None else str(run["name"]), "params": dict(params)}
    raise TypeError(f"run= is None (record, default id), a run id, False (do not record) or a dict "
                    f"{{'id', 'name', 'params'}}, not {type(run).__name__}")


def _number(value):
    """A metric value as a JSON number (None for NaN and infinities, which JSON cannot carry), or raises."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    v = float(value)  # floats, numpy scalars, one-element tensors
    return v if math.isfinite(v) else None


def _flush_all() -> None:
    for rec in list(_live):
        rec.flush()


class Recorder:
    """Writes one rank's files of one run. Every public method swallows its errors into one warning.

    Built with no I/O; :meth:`segment` registers (first call) or adds a segment; :meth:`log`
    buffers a metrics line; :meth:`tick` (once per batch) and :meth:`log` flush when 2 s have passed.
    """

    def __init__(self, spec: dict, ds, batch_size: int, workers: int, loader: str):
        self.run_id, self.name, self.params = spec["id"], spec["name"], spec["params"]
        self.ds, self.batch_size, self.workers, self.loader = ds, batch_size, workers, loader
        self.dir = training_dir(ds.root, self.run_id)
        self.rank_path = rank_file(ds.root, self.run_id, ds.rank)
        self.metrics_path = metrics_file(ds.root, self.run_id, ds.rank)
        self.enabled = True
        self.header: Optional[dict] = None
        self._pending: List[tuple] = []
        self._next_flush = 0.0
        self._fd: Optional[int] = None
        self._pid = os.getpid()
        self._warned = False
        self._dropped_keys: set = set()
        self._keys: Dict[str, str] = {}  # metric name -> its JSON string

    # ----- errors -----

    def _warn(self, what: str, e: BaseException) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(f"smelt_data: could not {what} for training run {self.run_id!r} in {self.dir} "
                          f"({type(e).__name__}: {e}); training goes on without it", RuntimeWarning, stacklevel=4)

    # ----- registration -----

    def _fresh_header(self) -> dict:
        ds, m = self.ds, self.ds.manifest
        try:
            manifest = os.path.relpath(ds.manifest_path, ds.root)
        except ValueError:
            manifest = str(ds.manifest_path)
        return {"format": FORMAT, "run_id": self.run_id, "name": self.name, "dataset": m.get("dataset"),
                "version": m.get("version"), "digest": m.get("digest"), "manifest": manifest.replace(os.sep, "/"),
                "tokenizer": ds.tokenizer, "tokenizer_hash": ds.tokenizer_hash, "seq_len": ds.seq_len,
                "batch_size": self.batch_size, "seed": ds.seed, "shuffle": ds.shuffle, "rank": ds.rank,
                "world_size": ds.world_size, "workers": self.workers, "eos_id": ds.eos_id,
                "recorded_eos": ds.recorded_eos, "dtype": str(ds.dtype), "loader": self.loader,
                "host": socket.gethostname(), "pid": os.getpid(), "started_at": utc_now(), "params": self.params,
                "segments": []}

    def segment(self, batch: int, epoch: int, taken: Dict[int, int]) -> None:
        """Registers the run (first call: creates the directory and the rank file, or joins the rank
        file a previous process of this run id left) and records a segment: from global batch
        ``batch`` on, the loader reads ``epoch`` after ``taken`` samples per consumer."""
        if not self.enabled:
            return
        try:
            first = self.header is None
            if first:
                self.header = self._join_or_create()
                if self.header is None:
                    return
            seg = {"batch": int(batch), "epoch": int(epoch),
                   "taken": {str(c): int(n) for c, n in sorted(taken.items())}, "at": utc_now()}
            if not first or self.header["segments"]:
                seg.update(host=socket.gethostname(), pid=os.getpid())
            self.header["segments"].append(seg)
            self.header["last_epoch"] = max(int(epoch), self.header.get("last_epoch", -1))
            self._write_header()
            if first:
                self._register_exit()
                self._mlflow()
        except Exception as e:  # noqa: BLE001 - recording never breaks training
            self.enabled = False
            self._warn("register", e)

    def reached(self, epoch: int) -> None:
        """Records that iteration went on into ``epoch`` (``last_epoch``: how far the plan is known to run)."""
        if not self.enabled or self.header is None or epoch <= self.header.get("last_epoch", -1):
            return
        try:
            self.header["last_epoch"] = int(epoch)
            self._write_header()
        except Exception as e:  # noqa: BLE001
            self._warn("update the rank file", e)

    def _join_or_create(self) -> Optional[dict]:
        fresh = self._fresh_header()
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            old = json.loads(self.rank_path.read_text())
        except FileNotFoundError:
            return fresh
        except ValueError:
            warnings.warn(f"smelt_data: {self.rank_path} is not JSON; it is replaced", RuntimeWarning, stacklevel=4)
            return fresh
        differ = [k for k in SAME_PLAN if old.get(k) != fresh.get(k)]
        if differ:
            self.enabled = False
            warnings.warn(
                f"smelt_data: training run {self.run_id!r} rank {self.ds.rank} was recorded with "
                + ", ".join(f"{k}={old.get(k)!r}" for k in differ) + " and this loader has "
                + ", ".join(f"{k}={fresh.get(k)!r}" for k in differ)
                + ": not recording (give this run another id: run=... or SMELT_TRAIN_RUN)", RuntimeWarning, stacklevel=4)
            return None
        old.setdefault("segments", [])
        if self.name is not None:
            old["name"] = self.name
        if self.params:
            old["params"] = {**(old.get("params") or {}), **self.params}
        old["host"], old["pid"] = fresh["host"], fresh["pid"]
        return old

    def _write_header(self) -> None:
        tmp = self.dir / f".{self.rank_path.name}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(self.header, f, indent=1, default=str)
            f.write("\n")
        os.replace(tmp, self.rank_path)

    def _register_exit(self) -> None:
        global _atexit_registered
        _live.add(self)
        if not _atexit_registered:
            _atexit_registered = True
            atexit.register(_flush_all)

    def _mlflow(self) -> None:
        """``mlflow.log_input`` (``<dataset>@<version>``, the digest, the manifest as source; context
        "training") and the tags smelt.dataset / smelt.version / smelt.run_id, when the training
        script has imported mlflow and a run is active. Failures are warnings."""
        mlflow = sys.modules.get("mlflow")
        if mlflow is None:
            return
        try:
            if mlflow.active_run() is None:
                return
            h = self.header
            mlflow.set_tags({"smelt.dataset": str(h["dataset"]), "smelt.version": str(h["version"]),
                             "smelt.run_id": self.run_id})
            from mlflow.data.dataset_source_registry import resolve_dataset_source
            from mlflow.data.meta_dataset import MetaDataset

            source = resolve_dataset_source(str(self.ds.manifest_path.resolve()))
            digest = str(h["digest"] or "")[:36] or None  # the server keeps at most 36 characters
            mlflow.log_input(MetaDataset(source, name=f"{h['dataset']}@{h['version']}", digest=digest),
                             context="training", tags={"smelt.run_id": self.run_id, "smelt.rank": str(self.ds.rank)})
        except Exception as e:  # noqa: BLE001
            warnings.warn(f"smelt_data: mlflow.log_input for training run {self.run_id!r} failed "
                          f"({type(e).__name__}: {e}); training goes on", RuntimeWarning, stacklevel=4)

    # ----- metrics -----

    def log(self, step, batch: int, epoch: int, tokens: int, metrics: dict) -> None:
        """Buffers one metrics line (serialized at the next flush)."""
        t = time.time()
        self._pending.append((step, batch, epoch, tokens, t, metrics))
        if t >= self._next_flush:
            self.flush()

    def tick(self) -> None:
        """Flushes when lines wait and 2 s have passed since the last flush (the loader calls it per batch)."""
        if self._pending and time.time() >= self._next_flush:
            self.flush()

    def _line(self, step, batch, epoch, tokens, t, metrics) -> str:
        """One JSON line, formatted by hand (floats' repr is JSON; keys are escaped once): a third
        of what json.dumps of a dict costs."""
        if type(step) is not int:
            try:
                step = int(step)
            except (TypeError, ValueError):
                step = str(step)
        head = f'{{"step": {json.dumps(step) if type(step) is str else step}, "batch": {batch}, "epoch": {epoch}, ' \
               f'"tokens": {tokens}, "time": {t!r}'
        parts = [head]
        keys = self._keys
        for k, v in metrics.items():
            key = keys.get(k)
            if key is None:
                if k in RESERVED:
                    self._drop_key(k, "is reserved (step, batch, epoch, tokens, time)")
                    continue
                key = keys[k] = json.dumps(str(k))
            tv = type(v)
            if tv is float:
                parts.append(f", {key}: {v!r}" if math.isfinite(v) else f", {key}: null")
            elif tv is int:
                parts.append(f", {key}: {v}")
            else:
                try:
                    n = _number(v)
                except (TypeError, ValueError):
                    self._drop_key(k, f"is a {tv.__name__}, not a number")
                    continue
                parts.append(f", {key}: {'null' if n is None else repr(n)}")
        parts.append("}\n")
        return "".join(parts)

    def _drop_key(self, k: str, why: str) -> None:
        if k not in self._dropped_keys:
            self._dropped_keys.add(k)
            warnings.warn(f"smelt_data: metric {k!r} {why}: it is not recorded", RuntimeWarning, stacklevel=5)

    def flush(self) -> None:
        """Writes the buffered lines (one ``os.write``); never raises."""
        self._next_flush = time.time() + FLUSH_EVERY_S
        if not self._pending or os.getpid() != self._pid:  # a forked child never writes the parent's lines
            return
        pending, self._pending = self._pending, []
        if not self.enabled or self.header is None:
            return
        try:
            line = self._line
            data = "".join([line(*p) for p in pending]).encode()
            if self._fd is None:
                self._fd = os.open(self.metrics_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                size = os.fstat(self._fd).st_size
                if size:  # a torn line left by a killed process: ours start on a line of their own
                    with open(self.metrics_path, "rb") as f:
                        f.seek(size - 1)
                        if f.read(1) != b"\n":
                            data = b"\n" + data
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except Exception as e:  # noqa: BLE001
            self._warn("write metrics", e)

    def close(self) -> None:
        self.flush()
        if self._fd is not None and os.getpid() == self._pid:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None
        _live.discard(self)


def _taken_of(ds, workers: int) -> Dict[int, int]:
    """Samples taken per consumer of ``ds.rank`` where the dataset will start (its loaded state)."""
    return {ds.rank * workers + w: int(ds._resume.get(ds.rank * workers + w, 0)) for w in range(workers)}


class TrainingRun:
    """Recording for training loops fed by torch's ``DataLoader`` (``ShardLoader`` records by itself).

    ::

        ds = TokenShardDataset(root, rank=rank, world_size=world, seq_len=1024, batch_size=16, num_workers=2)
        ds.load_state_dict(ckpt["data"])                           # when resuming
        run = TrainingRun.start(ds, batch_size=16, num_workers=2, run="gpt-small-7",
                                batches=ckpt.get("batches", 0))    # this rank's global batch counter
        loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
        for epoch in ...:
            ds.set_epoch(epoch)                                    # each epoch follows the one before
            for batch in loader:
                seen += 1
                ...
                run.log(step, batches_seen=seen, loss=loss.item(), lr=lr)
        run.close()

    ``start`` registers at once (the DataLoader's iteration is not visible from here), with a
    segment at ``batches`` from the dataset's epoch and loaded state. Epochs are assumed to follow
    one another from their start (``set_epoch(e + 1)`` after epoch ``e``); call :meth:`segment`
    after any other jump. ``run`` as for :class:`smelt_data.ShardLoader`.
    """

    def __init__(self, recorder: Optional[Recorder], dataset, batch_size: int):
        self._rec, self.ds, self.batch_size = recorder, dataset, batch_size

    @classmethod
    def start(cls, dataset, batch_size: int, num_workers: Optional[int] = None, run=None, batches: int = 0,
              loader: str = "DataLoader") -> "TrainingRun":
        workers = num_workers or dataset.num_workers or 1
        spec = resolve_run(run)
        rec = Recorder(spec, dataset, batch_size, workers, loader) if spec is not None else None
        self = cls(rec, dataset, batch_size)
        self.workers = workers
        if rec is not None:
            rec.segment(batches, dataset.epoch, _taken_of(dataset, workers))
        return self

    @property
    def run_id(self) -> Optional[str]:
        return self._rec.run_id if self._rec is not None else None

    def segment(self, batches_seen: int, epoch: Optional[int] = None, taken: Optional[Dict[int, int]] = None) -> None:
        """Records that from batch ``batches_seen`` on the loader reads ``epoch`` (default: the dataset's)
        after ``taken`` samples per consumer (default: the dataset's loaded state)."""
        if self._rec is not None:
            self._rec.segment(batches_seen, self.ds.epoch if epoch is None else epoch,
                              _taken_of(self.ds, self.workers) if taken is None else taken)

    def log(self, step, batches_seen: int, epoch: Optional[int] = None, samples_seen: Optional[int] = None,
            **metrics) -> None:
        """Appends a metrics line: ``batches_seen`` = batches this rank has taken over the whole run;
        ``epoch`` (default: the dataset's); tokens = ``samples_seen`` (default ``batches_seen x batch_size``,
        which counts an epoch's short last batches as full) x seq_len."""
        if self._rec is not None:
            samples = batches_seen * self.batch_size if samples_seen is None else samples_seen
            self._rec.log(step, batches_seen, self.ds.epoch if epoch is None else epoch, samples * self.ds.seq_len,
                          metrics)

    def close(self) -> None:
        if self._rec is not None:
            self._rec.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
