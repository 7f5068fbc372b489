"""TokenShardDataset: the token shards of one smelt version, as training samples.

Data flow (one epoch)::

    _versions/NNNNNN.json ──shards──► row groups ("chunks", the unit of work)
        ──shuffle(seed, epoch)──► chunk order
        ──chunk i goes to consumer i % C   (C = world_size x DataLoader workers; consumer = rank * workers + worker)
        ──per consumer: rows of its chunks (documents shuffled per chunk; split documents stay whole),
          one token stream cut into samples of seq_len + 1 tokens (consecutive samples share one token,
          as Megatron's GPTDataset: x = s[:-1], y = s[1:])

Every row of the version is read by exactly one consumer per epoch, so no
sample is duplicated across ranks or workers and none is skipped except each
consumer's last partial sample (fewer than seq_len + 1 tokens) per epoch.
The plan depends only on (manifest, seed, epoch, world_size, workers), so a
rerun yields the same samples, and ``state_dict()`` (samples taken per
consumer) lets ``load_state_dict()`` resume mid-epoch exactly: the consumer
skips whole chunks by their token counts, then the rest of the tokens already used.
"""

from __future__ import annotations

import json
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Union

import numpy as np
import pyarrow.parquet as pq

from .plan import Chunk, chunk_order, chunk_stream, chunk_tokens_from_counts, find_manifest, list_chunks, read_ids, row_order, samples_in

try:  # torch is optional: without it the dataset is a plain iterable with the same API.
    import torch
    from torch.utils.data import IterableDataset as _Base
    from torch.utils.data import get_worker_info as _torch_worker_info
except ImportError:  # pragma: no cover - exercised in CI, which has no torch
    torch = None
    _Base = object
    _torch_worker_info = None

META_TOKENIZER = b"smelt.tokenizer"
META_TOKENIZER_HASH = b"smelt.tokenizer_hash"
META_VOCAB_SIZE = b"smelt.vocab_size"
META_EOS_ID = b"smelt.eos_id"


class TokenizerMismatch(ValueError):
    """The version was tokenized with another tokenizer than the one the loader asked for."""


class TokenShardDataset(_Base):
    """Samples of ``seq_len + 1`` token ids from a smelt version's token shards.

    Args:
        source: a version manifest (``.../_versions/000003.json``) or a dataset root (local paths).
        version: with a dataset root, the version (default: the newest).
        rank, world_size: this process's share (torch.distributed's rank and world size).
        seed: shuffle seed; every rank must pass the same one.
        seq_len: tokens per sample input; samples hold ``seq_len + 1`` ids.
        shuffle: shuffle chunk order and rows within chunks per epoch (False keeps shard order).
        expected_tokenizer: the tokenizer the model was built for: its name (``tiktoken:cl100k_base``,
            the tokenizer.json path the pipeline named) or its hash (``xxh3-128:...``, a prefix is enough).
            A version tokenized otherwise raises :class:`TokenizerMismatch`.
        epoch: first epoch (``set_epoch`` changes it).
        eos_id: for versions tokenized without an EOS (none recorded): an id put after each row.
        num_workers: DataLoader workers (default: taken from ``get_worker_info`` at iteration;
            give it to use ``state_dict``/``load_state_dict`` outside the workers).
        batch_size: yield ready batches ``[batch_size, seq_len + 1]`` (one copy, no collate) for
            ``DataLoader(ds, batch_size=None)``: far less per-sample work and inter-process traffic
            than the DataLoader's own batching. The last batch of an epoch may be smaller.
            :class:`smelt_data.ShardLoader` hands such batches over through shared buffers instead.
        dtype: the samples' integer type, ``int64`` (what ``nn.Embedding`` and ``cross_entropy`` take)
            or ``int32`` (half the bytes to move; widen on the GPU).
        prefetch: row groups read ahead by a background thread (0: read when needed).
    """

    def __init__(
        self,
        source: Union[str, os.PathLike],
        version: Optional[int] = None,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        seq_len: int = 1024,
        shuffle: bool = True,
        expected_tokenizer: Optional[str] = None,
        epoch: int = 0,
        eos_id: Optional[int] = None,
        num_workers: Optional[int] = None,
        batch_size: Optional[int] = None,
        dtype: Union[str, np.dtype] = "int64",
        prefetch: int = 1,
    ):
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        if seq_len < 1:
            raise ValueError("seq_len must be positive")
        self.manifest_path = find_manifest(source, version)
        self.manifest = json.loads(self.manifest_path.read_text())
        self.root = self.manifest_path.parent.parent
        if "input_ids" not in {f["name"] for f in self.manifest["schema"]}:
            raise ValueError(
                f"{self.manifest['dataset']}@{self.manifest['version']} has no input_ids column: "
                "its pipeline needs a `tokenize` stage")
        self.paths = [str(self.root / s["path"]) for s in self.manifest["shards"]]
        self.rank, self.world_size, self.seed, self.seq_len = rank, world_size, seed, seq_len
        self.shuffle, self.epoch, self.num_workers = shuffle, epoch, num_workers
        if batch_size is not None and batch_size < 1:
            raise ValueError("batch_size must be positive")
        self.batch_size = batch_size
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.int64), np.dtype(np.int32)):
            raise ValueError(f"dtype must be int64 or int32, not {self.dtype}")
        if prefetch < 0:
            raise ValueError("prefetch must be >= 0")
        self.prefetch = prefetch
        self.tokenizer, self.tokenizer_hash, self.vocab_size, recorded_eos = self._tokenizer_metadata()
        self.recorded_eos = recorded_eos
        self.eos_id = eos_id if eos_id is not None else recorded_eos
        if expected_tokenizer is not None:
            self.check_tokenizer(expected_tokenizer)
        self.chunks = self._chunks()
        self._taken: Dict[int, int] = {}
        self._resume: Dict[int, int] = {}

    # ----- identity -----

    def _tokenizer_metadata(self):
        if not self.paths:
            return None, None, None, None
        meta = pq.read_schema(self.paths[0]).metadata or {}

        def get(key):
            v = meta.get(key)
            return v.decode() if v is not None else None

        vocab = get(META_VOCAB_SIZE)
        eos = get(META_EOS_ID)
        return get(META_TOKENIZER), get(META_TOKENIZER_HASH), int(vocab) if vocab else None, int(eos) if eos else None

    def check_tokenizer(self, expected: str) -> None:
        """Raises :class:`TokenizerMismatch` unless ``expected`` names this version's tokenizer or hash."""
        ok = expected == self.tokenizer or (
            self.tokenizer_hash is not None and expected.startswith("xxh3-128:") and self.tokenizer_hash.startswith(expected))
        if not ok:
            raise TokenizerMismatch(
                f"{self.manifest['dataset']}@{self.manifest['version']} was tokenized with {self.tokenizer!r} "
                f"({self.tokenizer_hash}), but the loader expects {expected!r}: token ids would not mean "
                "what the model was trained on; retokenize the data or load the matching tokenizer")

    # ----- plan -----

    def _chunks(self) -> List[Chunk]:
        return list_chunks(self.paths)

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch (its shuffle); clears progress."""
        self.epoch = epoch
        self._taken.clear()
        self._resume.clear()

    def _order(self) -> List[int]:
        return chunk_order(len(self.chunks), self.seed, self.epoch, self.shuffle)

    def _workers(self):
        """(this worker's index, number of workers)."""
        info = _torch_worker_info() if _torch_worker_info is not None else None
        if info is not None:
            return info.id, info.num_workers
        return 0, self.num_workers or 1

    def consumer_chunks(self, consumer: int, consumers: int) -> List[int]:
        """Indices into ``chunks`` that ``consumer`` of ``consumers`` reads this epoch, in order."""
        return self._order()[consumer::consumers]

    # ----- reading -----

    def _chunk_tokens(self, c: Chunk) -> int:
        t = pq.ParquetFile(self.paths[c.shard]).read_row_group(c.row_group, columns=["n_tokens"])
        return chunk_tokens_from_counts(t.column("n_tokens").to_numpy(), self._inserts_eos())

    def _inserts_eos(self) -> bool:
        """Whether an ``eos_id`` goes after each row (the version recorded no EOS and one was given)."""
        return self.recorded_eos is None and self.eos_id is not None

    def _row_ids(self, c: Chunk) -> np.ndarray:
        """The chunk's token stream (``uint32``), its rows in this epoch's order.

        Rows whose last id is not the recorded EOS continue in the next row (a document the
        `tokenize` stage split into `id#0`, `id#1`, ...), so the shuffle moves runs of rows
        ending with an EOS row: documents stay whole (:func:`smelt_data.plan.row_order`). With no
        EOS recorded, each row is a document, and an ``eos_id`` given to the constructor is put after each.
        """
        values, offsets = read_ids(self.paths[c.shard], c)
        order = row_order(values, offsets, self.seed, self.epoch, c, self.shuffle, self.recorded_eos)
        return chunk_stream(values, offsets, order, self.eos_id if self._inserts_eos() else None)

    def _blocks(self, consumer: int, consumers: int, skip: int) -> Iterator[np.ndarray]:
        """The consumer's samples after the first ``skip``, as read-only ``[k, seq_len + 1]`` views
        of the token stream (row i starts at token i * seq_len): a whole chunk's samples at once."""
        L = self.seq_len
        start = skip * L  # stream position where the next sample starts
        pos = 0  # stream position of buf[0]
        buf = np.empty(0, dtype=np.uint32)
        todo = [self.chunks[ci] for ci in self.consumer_chunks(consumer, consumers)]
        while todo and pos + self._cheap_tokens(todo[0]) <= start:  # resuming: chunks that end before it
            pos += self._cheap_tokens(todo.pop(0))
        for stream in self._streams(todo):
            buf = np.concatenate([buf, stream]) if buf.size else stream
            if pos < start:
                drop = min(start - pos, buf.size)
                buf = buf[drop:]
                pos += drop
            k = (buf.size - 1) // L
            if k > 0:
                step = buf.strides[0]
                yield np.lib.stride_tricks.as_strided(buf, shape=(k, L + 1), strides=(L * step, step), writeable=False)
                buf = buf[k * L:]
                pos += k * L

    def _streams(self, chunks: List[Chunk]) -> Iterator[np.ndarray]:
        """The chunks' token streams, the next one read (Parquet decoding, which frees the GIL)
        in a background thread while the current one is cut into samples."""
        if self.prefetch == 0 or len(chunks) < 2:
            for c in chunks:
                yield self._row_ids(c)
            return
        with ThreadPoolExecutor(1, thread_name_prefix="smelt-read") as pool:
            ahead = deque(pool.submit(self._row_ids, c) for c in chunks[:self.prefetch])
            for i in range(len(chunks)):
                stream = ahead.popleft().result()
                if i + self.prefetch < len(chunks):
                    ahead.append(pool.submit(self._row_ids, chunks[i + self.prefetch]))
                yield stream

    def _samples(self, consumer: int, consumers: int, skip: int) -> Iterator[np.ndarray]:
        for block in self._blocks(consumer, consumers, skip):
            yield from block

    def fill_batches(self, consumer: int, consumers: int, skip: int, buffer) -> Iterator[tuple]:
        """Copies the consumer's samples (after the first ``skip``) into batches of ``batch_size``.

        ``buffer()`` returns ``(key, array)`` with an array of at least ``[batch_size, seq_len + 1]``
        to write the next batch into; it is called only when a batch is about to be written.
        Yields ``(key, samples written)`` per batch (the epoch's last batch may be short).
        """
        B = self.batch_size or 1
        key, out, n = None, None, 0
        for block in self._blocks(consumer, consumers, skip):
            i = 0
            while i < len(block):
                if key is None:
                    key, out = buffer()
                m = min(B - n, len(block) - i)
                out[n:n + m] = block[i:i + m]
                n, i = n + m, i + m
                if n == B:
                    yield key, n
                    key, n = None, 0
        if n:
            yield key, n

    def _cheap_tokens(self, c: Chunk) -> int:
        """Tokens the chunk adds to the stream, from its n_tokens (and EOS) without its ids when possible."""
        key = (c.shard, c.row_group)
        cache = self.__dict__.setdefault("_token_cache", {})
        if key not in cache:
            cache[key] = self._chunk_tokens(c)
        return cache[key]

    # ----- iteration and state -----

    def __iter__(self):
        return self.iter_worker(*self._workers())

    def iter_worker(self, worker: int, workers: int):
        """The samples of DataLoader worker ``worker`` of ``workers`` on this rank (``__iter__`` asks torch)."""
        consumers = self.world_size * workers
        consumer = self.rank * workers + worker
        skip = self._resume.get(consumer, 0)
        self._taken[consumer] = skip
        if self.batch_size:
            shape = (self.batch_size, self.seq_len + 1)

            def fresh():
                arr = np.empty(shape, self.dtype)
                return arr, arr

            for arr, n in self.fill_batches(consumer, consumers, skip, fresh):
                yield self._out(arr[:n], consumer, n)
            return
        for s in self._samples(consumer, consumers, skip):
            yield self._out(s.astype(self.dtype), consumer, 1)

    def _out(self, arr: np.ndarray, consumer: int, samples: int):
        self._taken[consumer] += samples
        return torch.from_numpy(arr) if torch is not None else arr

    def state_dict(self, batches_seen: Optional[int] = None, batch_size: Optional[int] = None) -> dict:
        """Where this rank is in the epoch.

        In-process iteration (no DataLoader workers) counts samples itself. With a
        DataLoader of ``num_workers`` workers (given to the constructor), pass the number of
        batches the training loop has taken and the batch size: the DataLoader takes batch j
        from worker j % workers, so the samples each worker has given follow from them.
        """
        workers = self.num_workers or 1
        if batches_seen is not None:
            if batch_size is None:
                raise ValueError("batches_seen needs batch_size")
            taken = {}
            for w in range(workers):
                taken[self.rank * workers + w] = (batches_seen // workers + (1 if w < batches_seen % workers else 0)) * batch_size
        else:
            taken = dict(self._taken)
        return {"manifest": str(self.manifest_path), "version": self.manifest["version"], "epoch": self.epoch,
                "seed": self.seed, "seq_len": self.seq_len, "world_size": self.world_size, "workers": workers,
                "taken": {str(k): v for k, v in sorted(taken.items())}}

    def load_state_dict(self, state: dict) -> None:
        """Resumes where ``state`` (from :meth:`state_dict`) stopped: the next samples are the ones that followed."""
        for key in ("seed", "seq_len", "world_size"):
            if state[key] != getattr(self, key):
                raise ValueError(f"state was saved with {key}={state[key]}, this loader has {getattr(self, key)}")
        if state["workers"] != (self.num_workers or 1):
            raise ValueError(f"state was saved with {state['workers']} workers, this loader has {self.num_workers or 1}")
        if state["version"] != self.manifest["version"]:
            raise ValueError(f"state is for version {state['version']}, this loader reads {self.manifest['version']}")
        self.epoch = state["epoch"]
        self._resume = {int(k): v for k, v in state["taken"].items()}
        self._taken = dict(self._resume)


def samples_per_epoch(ds: TokenShardDataset, workers: int = 1) -> List[int]:
    """Samples each consumer of ``ds.rank`` yields this epoch (reads ``n_tokens`` only)."""
    out = []
    consumers = ds.world_size * workers
    for w in range(workers):
        c = ds.rank * workers + w
        tokens = sum(ds._cheap_tokens(ds.chunks[i]) for i in ds.consumer_chunks(c, consumers))
        out.append(samples_in(tokens, ds.seq_len))
    return out
