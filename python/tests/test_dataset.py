"""TokenShardDataset over small versions written with pyarrow in smelt's layout
(_versions/NNNNNN.json + Parquet shards with input_ids/n_tokens and the
tokenizer in the key-value metadata). Token ids are unique positions, so a
sample shows exactly which tokens it covers."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from smelt_data import TokenizerMismatch, TokenShardDataset, find_manifest, samples_per_epoch
from smelt_data import dataset as dsmod


def write_version(root: Path, docs_per_shard, version=1, row_group=5, eos=None, tokenizer="tiktoken:cl100k_base",
                  hash_="xxh3-128:" + "ab" * 16, lengths=None, given_rows=None):
    """Shards whose rows hold consecutive unique ids; returns all ids in shard/row order."""
    rng = np.random.default_rng(7)
    next_id, shards, all_rows = 1000, [], []
    meta = {"smelt.tokenizer": tokenizer, "smelt.tokenizer_hash": hash_, "smelt.vocab_size": "1000000"}
    if eos is not None:
        meta["smelt.eos_id"] = str(eos)
    for s, n_docs in enumerate(docs_per_shard):
        rows = list(given_rows[s]) if given_rows else []
        for d in range(0 if given_rows else n_docs):
            n = int(lengths[d % len(lengths)]) if lengths else int(rng.integers(1, 40))
            rows.append(list(range(next_id, next_id + n)))
            next_id += n
        all_rows.extend(rows)
        schema = pa.schema([("id", pa.string()), ("input_ids", pa.list_(pa.uint32())), ("n_tokens", pa.uint32())],
                           metadata=meta)
        t = pa.table({"id": [f"s{s}d{d}" for d in range(n_docs)], "input_ids": rows,
                      "n_tokens": [len(r) for r in rows]}, schema=schema)
        rel = f"data/v{version}/part-{s:05d}.parquet"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(t, root / rel, row_group_size=row_group)
        shards.append({"path": rel, "split": s, "rows": n_docs, "bytes": (root / rel).stat().st_size, "checksum": ""})
    manifest = {"format": 1, "dataset": "toy", "version": version, "committed_at": "2026-01-01T00:00:00Z",
                "digest": "", "schema": [{"name": "id"}, {"name": "input_ids"}, {"name": "n_tokens"}],
                "shards": shards, "totals": {}, "stats": [], "funnel": [], "lineage": {}}
    (root / "_versions").mkdir(parents=True, exist_ok=True)
    (root / "_versions" / f"{version:06d}.json").write_text(json.dumps(manifest))
    return all_rows


def test_batches_are_the_samples_in_order_and_resume_by_samples(tmp_path):
    write_version(tmp_path, [40, 30], row_group=6)
    samples = collect(TokenShardDataset(tmp_path, seed=4, seq_len=8))
    ds = TokenShardDataset(tmp_path, seed=4, seq_len=8, batch_size=5)
    batches = list(ds.iter_worker(0, 1))
    assert all(b.shape[1] == 9 for b in batches) and all(b.shape[0] == 5 for b in batches[:-1])
    assert [r.tolist() for b in batches for r in b] == samples
    ds = TokenShardDataset(tmp_path, seed=4, seq_len=8, batch_size=5)
    it = ds.iter_worker(0, 1)
    next(it), next(it)
    resumed = TokenShardDataset(tmp_path, seed=4, seq_len=8, batch_size=5)
    resumed.load_state_dict(ds.state_dict())
    assert [r.tolist() for b in resumed.iter_worker(0, 1) for r in b] == samples[10:]


def collect(ds, worker=0, workers=1):
    return [s.tolist() if hasattr(s, "tolist") else list(s) for s in ds.iter_worker(worker, workers)]


@pytest.mark.parametrize("world_size", [1, 2, 4])
@pytest.mark.parametrize("workers", [1, 2])
def test_ranks_and_workers_share_every_token_once(tmp_path, world_size, workers):
    rows = write_version(tmp_path, [23, 17, 31, 9])
    all_tokens = [t for r in rows for t in r]
    L = 16
    seen, tails = [], 0
    for rank in range(world_size):
        ds = TokenShardDataset(tmp_path, rank=rank, world_size=world_size, seed=3, seq_len=L)
        for w in range(workers):
            samples = collect(ds, w, workers)
            assert all(len(s) == L + 1 for s in samples)
            for a, b in zip(samples, samples[1:]):
                assert a[-1] == b[0], "consecutive samples share one token"
            stream_tokens = [t for s in samples for t in s[:L]]
            seen.extend(stream_tokens)
            # Tokens of this consumer's chunks that no sample starts from: its tail.
            consumers = world_size * workers
            chunk_ids = ds.consumer_chunks(rank * workers + w, consumers)
            own = sum(ds._cheap_tokens(ds.chunks[i]) for i in chunk_ids)
            assert len(stream_tokens) <= own < len(stream_tokens) + L + 1
            tails += own - len(stream_tokens)
            assert len(samples) == samples_per_epoch(ds, workers)[w]
    assert len(seen) == len(set(seen)), "no token is the start part of two samples"
    assert set(seen) <= set(all_tokens)
    assert len(seen) + tails == len(all_tokens), "every token is used or in one consumer's tail"


def test_chunks_are_split_disjointly(tmp_path):
    write_version(tmp_path, [40, 40, 40], row_group=4)
    ds = TokenShardDataset(tmp_path, seed=1, seq_len=8)
    for consumers in (1, 2, 3, 4, 8):
        parts = [ds.consumer_chunks(c, consumers) for c in range(consumers)]
        flat = sorted(i for p in parts for i in p)
        assert flat == list(range(len(ds.chunks)))


def test_shuffle_is_deterministic_per_seed_and_epoch(tmp_path):
    write_version(tmp_path, [50, 50], row_group=5)
    a = collect(TokenShardDataset(tmp_path, seed=1, seq_len=8))
    b = collect(TokenShardDataset(tmp_path, seed=1, seq_len=8))
    c = collect(TokenShardDataset(tmp_path, seed=2, seq_len=8))
    e = TokenShardDataset(tmp_path, seed=1, seq_len=8)
    e.set_epoch(1)
    assert a == b
    assert a != c and a != collect(e)
    ordered = collect(TokenShardDataset(tmp_path, seq_len=8, shuffle=False))
    flat = [t for s in ordered for t in s[:8]]
    assert flat == sorted(flat), "without shuffle the shard order is kept"


@pytest.mark.parametrize("stop", [0, 1, 7, 30])
def test_resume_mid_epoch_gives_exactly_the_rest(tmp_path, stop):
    write_version(tmp_path, [30, 25, 12], row_group=3)
    full = collect(TokenShardDataset(tmp_path, rank=1, world_size=2, seed=5, seq_len=12))
    assert len(full) > 7
    ds = TokenShardDataset(tmp_path, rank=1, world_size=2, seed=5, seq_len=12)
    it = ds.iter_worker(0, 1)
    first = [next(it).tolist() for _ in range(min(stop, len(full)))]
    state = json.loads(json.dumps(ds.state_dict()))  # survives a checkpoint file
    resumed = TokenShardDataset(tmp_path, rank=1, world_size=2, seed=5, seq_len=12)
    resumed.load_state_dict(state)
    rest = collect(resumed)
    assert first + rest == full


def test_resume_with_dataloader_workers_from_batches_seen(tmp_path):
    write_version(tmp_path, [60, 60], row_group=4)
    per_worker = [collect(TokenShardDataset(tmp_path, seed=9, seq_len=10, num_workers=2), w, 2) for w in range(2)]
    ds = TokenShardDataset(tmp_path, seed=9, seq_len=10, num_workers=2)
    state = ds.state_dict(batches_seen=3, batch_size=2)  # batches 0, 2 from worker 0; batch 1 from worker 1
    assert state["taken"] == {"0": 4, "1": 2}
    resumed = TokenShardDataset(tmp_path, seed=9, seq_len=10, num_workers=2)
    resumed.load_state_dict(state)
    assert collect(resumed, 0, 2) == per_worker[0][4:]
    assert collect(resumed, 1, 2) == per_worker[1][2:]
    with pytest.raises(ValueError, match="workers"):
        TokenShardDataset(tmp_path, seed=9, seq_len=10, num_workers=1).load_state_dict(state)
    with pytest.raises(ValueError, match="seed"):
        TokenShardDataset(tmp_path, seed=8, seq_len=10, num_workers=2).load_state_dict(state)


def test_split_documents_stay_whole_and_in_order_when_shuffled(tmp_path):
    # Recorded EOS 7: documents end with it; a document split by `tokenize` has it on its last row only.
    docs, rows, nxt = [], [], 100
    for d in range(30):
        parts = 1 + d % 3
        doc = []
        for p in range(parts):
            row = list(range(nxt, nxt + 3))
            nxt += 3
            if p == parts - 1:
                row.append(7)
            rows.append(row)
            doc.extend(row)
        docs.append(doc)
    write_version(tmp_path, [len(rows)], row_group=len(rows), eos=7, given_rows=[rows])
    ds = TokenShardDataset(tmp_path, seq_len=4, seed=2)
    samples = collect(ds)
    stream = [t for s in samples for t in s[:4]] + samples[-1][4:]
    pieces = [p for p in " ".join(map(str, stream)).split(" 7") if p.strip()]
    got = [[int(x) for x in p.split()] for p in pieces]
    want = {tuple(d[:-1]) for d in docs}
    assert all(tuple(g) in want for g in got[:-1]), "every document comes whole, parts in order"
    assert [g for g in got[:-1]] != [list(d[:-1]) for d in docs][:len(got) - 1], "and the documents are shuffled"


def test_an_eos_given_for_versions_without_one_goes_after_each_row(tmp_path):
    rows = write_version(tmp_path, [3], row_group=10, lengths=[4])
    ds = TokenShardDataset(tmp_path, seq_len=4, shuffle=False, eos_id=7)
    stream = [t for s in collect(ds) for t in s[:4]]
    assert stream[:10] == rows[0] + [7] + rows[1] + [7]
    assert samples_per_epoch(ds)[0] == len(collect(ds))


def test_tokenizer_mismatch_is_a_clear_error(tmp_path):
    write_version(tmp_path, [5])
    TokenShardDataset(tmp_path, expected_tokenizer="tiktoken:cl100k_base")
    TokenShardDataset(tmp_path, expected_tokenizer="xxh3-128:abab")
    with pytest.raises(TokenizerMismatch, match="tokenized with 'tiktoken:cl100k_base'.*expects 'tiktoken:o200k_base'"):
        TokenShardDataset(tmp_path, expected_tokenizer="tiktoken:o200k_base")


def test_finds_versions_and_rejects_untokenized_ones(tmp_path):
    write_version(tmp_path, [5], version=1)
    write_version(tmp_path, [6], version=2)
    assert find_manifest(tmp_path).name == "000002.json"
    assert find_manifest(tmp_path, 1).name == "000001.json"
    assert TokenShardDataset(tmp_path / "_versions" / "000001.json").manifest["version"] == 1
    with pytest.raises(FileNotFoundError, match="version 3 is not committed"):
        find_manifest(tmp_path, 3)
    m = json.loads((tmp_path / "_versions" / "000002.json").read_text())
    m["schema"] = [{"name": "id"}, {"name": "text"}]
    (tmp_path / "_versions" / "000002.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match="tokenize"):
        TokenShardDataset(tmp_path)
    with pytest.raises(ValueError, match="rank"):
        TokenShardDataset(tmp_path, version=1, rank=2, world_size=2)


@pytest.mark.skipif(dsmod.torch is None, reason="torch is not installed")
def test_torch_dataloader_yields_tensors(tmp_path):
    import torch
    write_version(tmp_path, [40], row_group=5)
    ds = TokenShardDataset(tmp_path, seq_len=8)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch.shape == (4, 9) and batch.dtype == torch.int64
