"""A version committed by the real `smelt` binary (stage `tokenize`), read by
smelt_data and by Megatron-LM's index reader logic (numpy memmap, as
megatron/core/datasets/indexed_dataset.py's _IndexReader does).

Needs the smelt binary: $SMELT_BIN or target/debug/smelt (built by
`cargo test --workspace`); skipped without it.
"""
import json
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from smelt_data import TokenizerMismatch, TokenShardDataset

REPO = Path(__file__).resolve().parents[2]
SMELT = Path(os.environ.get("SMELT_BIN", REPO / "target/debug/smelt"))
pytestmark = pytest.mark.skipif(not SMELT.exists(), reason=f"no smelt binary at {SMELT}")

TEXTS = [
    "Showers continued throughout the week in the Bahia cocoa zone, alleviating the drought since early January.",
    "U.S. Treasury's Baker says G-7 accord is working; the dollar rose 0.5 pct against the yen.",
    "Le gouvernement a annoncé mardi une hausse de 2,3 % du budget de l'éducation.",
] * 40


@pytest.fixture(scope="module")
def version(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    with open(d / "docs.jsonl", "w") as f:
        for i, t in enumerate(TEXTS):
            f.write(json.dumps({"id": f"d{i}", "text": f"{i}: {t}"}) + "\n")
    (d / "p.yaml").write_text(
        "dataset: tok\nstages:\n  docs: {type: jsonl, paths: [docs.jsonl]}\n  h: {type: content_hash, inputs: [docs]}\n"
        "  t: {type: tokenize, inputs: [h], tokenizer: 'tiktoken:r50k_base'}\n"
        "  o: {type: parquet, inputs: [t], row_group_rows: 16}\n")
    data = d / "data"
    out = subprocess.run([str(SMELT), "--data-dir", str(data), "run", str(d / "p.yaml"), "--format", "json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    root = data / "datasets" / "tok"
    manifest = json.loads((root / "_versions" / "000001.json").read_text())
    rows = []
    for s in manifest["shards"]:
        rows += pq.read_table(root / s["path"], columns=["input_ids"]).column("input_ids").to_pylist()
    return d, data, root, rows


def megatron_read(prefix):
    """A reimplementation of Megatron-LM's _IndexReader + MMapIndexedDataset.get
    (the .idx/.bin layout it reads, on numpy memmaps); Megatron itself is not installed here."""
    with open(f"{prefix}.idx", "rb") as f:
        assert f.read(9) == b"MMIDIDX\x00\x00"
        assert struct.unpack("<Q", f.read(8)) == (1,)
        (code,) = struct.unpack("<B", f.read(1))
        (seq_count,) = struct.unpack("<Q", f.read(8))
        (doc_count,) = struct.unpack("<Q", f.read(8))
        offset = f.tell()
    dtype = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.float64, 7: np.float32, 8: np.uint16}[code]
    buf = np.memmap(f"{prefix}.idx", mode="r", order="C")
    lengths = np.frombuffer(buf, dtype=np.int32, count=seq_count, offset=offset)
    pointers = np.frombuffer(buf, dtype=np.int64, count=seq_count, offset=offset + lengths.nbytes)
    docs = np.frombuffer(buf, dtype=np.int64, count=doc_count, offset=offset + lengths.nbytes + pointers.nbytes)
    assert buf.size == offset + lengths.nbytes + pointers.nbytes + docs.nbytes
    bin_buf = np.memmap(f"{prefix}.bin", mode="r", order="C")
    seqs = [np.frombuffer(bin_buf, dtype=dtype, count=int(n), offset=int(p)).tolist() for n, p in zip(lengths, pointers)]
    return dtype, seqs, docs.tolist()


def test_megatron_export_reads_back_with_a_reimplementation_of_megatrons_reader(version):
    d, data, root, rows = version
    out = subprocess.run([str(SMELT), "--data-dir", str(data), "export", "tok@1", "--format", "megatron",
                          "--out", str(d / "meg"), "--summary", "json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    dtype, seqs, docs = megatron_read(d / "meg" / "tok-v1")
    assert dtype == np.uint16, "r50k has 50257 ids: Megatron's optimal dtype is uint16"
    assert seqs == rows
    assert docs == list(range(len(rows) + 1))
    meta = json.loads((d / "meg" / "tok-v1.json").read_text())
    assert meta["tokenizer"] == "tiktoken:r50k_base" and meta["tokens"] == sum(map(len, rows))


def test_nanogpt_export_is_a_flat_uint16_memmap(version):
    d, data, root, rows = version
    subprocess.run([str(SMELT), "--data-dir", str(data), "export", "tok@1", "--format", "nanogpt",
                    "--out", str(d / "nano")], check=True, capture_output=True)
    flat = np.memmap(d / "nano" / "tok-v1.bin", dtype=np.uint16, mode="r")
    assert flat.tolist() == [t for r in rows for t in r]


def test_loader_reads_the_version_across_ranks_and_checks_the_tokenizer(version):
    d, data, root, rows = version
    all_tokens = sum(map(len, rows))
    assert all(r[-1] == 50256 for r in rows), "<|endoftext|> after each document"
    seen = 0
    for rank in range(2):
        ds = TokenShardDataset(root, rank=rank, world_size=2, seed=1, seq_len=32, expected_tokenizer="tiktoken:r50k_base")
        assert ds.tokenizer == "tiktoken:r50k_base" and ds.vocab_size == 50257 and ds.eos_id == 50256
        seen += sum(len(s) - 1 for s in ds.iter_worker(0, 1))
    assert all_tokens - 2 * 33 < seen <= all_tokens
    with pytest.raises(TokenizerMismatch, match="tiktoken:cl100k_base"):
        TokenShardDataset(root, expected_tokenizer="tiktoken:cl100k_base")
