"""The reading plan of a smelt version, with no torch: which chunks a consumer reads in an epoch, in
which order its rows go into its token stream, and how many tokens and samples that makes.

:class:`smelt_data.TokenShardDataset` reads through these functions, and :mod:`smelt_data.trace`
uses the same ones to find which documents were in a batch without replaying the run: both
import only numpy and pyarrow from here.

::

    manifest ──shards──► chunks (row groups with rows)      list_chunks(paths)
        epoch order      chunk_order(n, seed, epoch, shuffle); consumer c reads order[c::C]
        rows in a chunk  row_order(values, offsets, ...)   (documents shuffled, split documents whole)
        token stream     chunk stream = rows' ids in that order (+ an inserted EOS after each row)
        samples          sample i = stream[i * seq_len : i * seq_len + seq_len + 1]
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Union

import numpy as np
import pyarrow.parquet as pq


@dataclass(frozen=True)
class Chunk:
    """One row group of one shard: the unit that is shuffled and assigned."""

    shard: int
    row_group: int
    rows: int


def find_manifest(source: Union[str, os.PathLike], version: Optional[int] = None) -> Path:
    """The manifest path: ``source`` itself when it is a ``.json`` file, else
    ``source/_versions/NNNNNN.json`` for ``version`` (default: the newest)."""
    p = Path(source)
    if p.is_file():
        if version is not None and json.loads(p.read_text())["version"] != version:
            raise ValueError(f"{p} is version {json.loads(p.read_text())['version']}, not {version}")
        return p
    versions = p / "_versions"
    if not versions.is_dir():
        raise FileNotFoundError(f"{p} is neither a manifest file nor a dataset root with _versions/")
    if version is None:
        found = sorted(f for f in versions.glob("[0-9]" * 6 + ".json"))
        if not found:
            raise FileNotFoundError(f"{versions} holds no committed version")
        return found[-1]
    m = versions / f"{version:06d}.json"
    if not m.is_file():
        raise FileNotFoundError(f"version {version} is not committed under {p} ({m} is missing)")
    return m


def list_chunks(paths: List[str]) -> List[Chunk]:
    """The non-empty row groups of the shards, in shard order (Parquet footers only)."""
    out = []
    for i, path in enumerate(paths):
        md = pq.ParquetFile(path).metadata
        for rg in range(md.num_row_groups):
            if md.row_group(rg).num_rows:
                out.append(Chunk(i, rg, md.row_group(rg).num_rows))
    return out


def chunk_order(n: int, seed: int, epoch: int, shuffle: bool) -> List[int]:
    """The epoch's order of the ``n`` chunks; consumer ``c`` of ``C`` reads ``order[c::C]``."""
    if not shuffle:
        return list(range(n))
    return np.random.default_rng([seed, epoch]).permutation(n).tolist()


def row_order(values: np.ndarray, offsets: np.ndarray, seed: int, epoch: int, chunk: Chunk, shuffle: bool,
              recorded_eos: Optional[int]) -> Optional[np.ndarray]:
    """The chunk's rows in stream order (indices into the row group), or None for their file order.

    Rows whose last id is not the recorded EOS continue in the next row (a document the
    `tokenize` stage split into `id#0`, `id#1`, ...), so the shuffle moves runs of rows
    ending with an EOS row: documents stay whole. With no EOS recorded, each row is a unit.
    """
    rows = len(offsets) - 1
    if not shuffle or rows <= 1:
        return None
    starts, ends = offsets[:-1], offsets[1:]
    if recorded_eos is not None:
        last = np.where(ends > starts, values[np.maximum(ends - 1, 0)], recorded_eos)
        unit = np.concatenate([[0], np.cumsum(last[:-1] == recorded_eos)])
    else:
        unit = np.arange(rows)
    n_units = int(unit[-1]) + 1
    first_row = np.searchsorted(unit, np.arange(n_units))
    unit_rows = np.diff(np.append(first_row, rows))
    perm = np.random.default_rng([seed, epoch, chunk.shard, chunk.row_group]).permutation(n_units)
    # Rows of the permuted units, in order within each unit.
    order = np.repeat(first_row[perm] - (np.cumsum(unit_rows[perm]) - unit_rows[perm]), unit_rows[perm])
    return order + np.arange(rows)


def read_ids(path: str, chunk: Chunk):
    """The row group's ``input_ids`` as (values ``uint32``, offsets ``int64``)."""
    t = pq.ParquetFile(path).read_row_group(chunk.row_group, columns=["input_ids"])
    col = t.column("input_ids").combine_chunks()
    values = col.values.to_numpy(zero_copy_only=False)  # uint32: widened once, when copied into a batch
    return values, col.offsets.to_numpy().astype(np.int64)


def chunk_stream(values: np.ndarray, offsets: np.ndarray, order: Optional[np.ndarray], eos_id: Optional[int]) -> np.ndarray:
    """The chunk's token stream: its rows' ids in ``order`` (None: file order), and ``eos_id``
    (None: nothing) after each row."""
    starts, ends = offsets[:-1], offsets[1:]
    if order is not None:
        starts, ends = starts[order], ends[order]
        # one slice per row: cheaper than a gather through an index array
        stream = np.concatenate([values[s:e] for s, e in zip(starts.tolist(), ends.tolist())])
    else:
        stream = values[offsets[0]:offsets[-1]]
    if eos_id is not None:
        stream = np.insert(stream, np.cumsum(ends - starts), eos_id)
    return stream


def chunk_tokens_from_counts(n_tokens: np.ndarray, inserted_eos: bool) -> int:
    """Tokens a chunk adds to the stream, from its rows' ``n_tokens`` (plus one per row for an inserted EOS)."""
    return int(n_tokens.sum()) + (len(n_tokens) if inserted_eos else 0)


def samples_in(tokens: int, seq_len: int) -> int:
    """Samples of ``seq_len + 1`` ids (consecutive ones sharing one) that a stream of ``tokens`` ids gives."""
    return max(0, (tokens - 1) // seq_len)
