"""Writes a toy token version for tiny_lm.py and the trace tests: natural-ish documents (a sparse
Markov chain over a few hundred "words": predictable next tokens) plus a few planted garbage
documents (uniformly random ids, as random bytes through a BPE tokenizer: unpredictable).

    python examples/train/toy_version.py ROOT [--docs 2000] [--garbage 12] [--seed 0]

ROOT/_versions/000001.json + ROOT/data/v1/part-0000S.parquet with id, input_ids (list<uint32>),
n_tokens, url, source, domain, lang; EOS 0 ends every document (recorded as smelt.eos_id).
Garbage documents have ids ``junk-N``, source ``junk`` and domain ``junk.example``.
Needs numpy and pyarrow only.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

EOS = 0
VOCAB = 50000


def markov_doc(rng, words, succ, n):
    out = [int(rng.integers(len(words)))]
    for _ in range(n - 1):
        nxt = succ[out[-1]]
        out.append(int(nxt[0] if rng.random() < 0.85 else nxt[rng.integers(1, len(nxt))]))
    return [int(words[w]) for w in out]


def write(root, docs=2000, garbage=12, seed=0, shards=4, row_group=64, version=1):
    root = Path(root)
    rng = np.random.default_rng(seed)
    words = rng.choice(np.arange(1, VOCAB), size=400, replace=False)  # 400 "words" among 50k ids
    succ = rng.integers(0, len(words), size=(len(words), 3))  # each word's likely successors
    junk_at = set(rng.choice(docs, size=garbage, replace=False).tolist())
    rows = [[] for _ in range(shards)]
    g = 0
    for d in range(docs):
        if d in junk_at:
            ids = rng.integers(1, 2 * VOCAB, size=int(rng.integers(400, 800))).tolist()
            row = (f"junk-{g}", ids + [EOS], f"http://junk.example/{g}", "junk", "junk.example", "xx")
            g += 1
        else:
            ids = markov_doc(rng, words, succ, int(rng.integers(50, 400)))
            row = (f"doc-{d}", ids + [EOS], f"https://news{d % 7}.example/{d}", ["cc", "wiki"][d % 2],
                   f"news{d % 7}.example", "en")
        rows[d % shards].append(row)
    meta = {"smelt.tokenizer": "toy:markov", "smelt.tokenizer_hash": "xxh3-128:" + "0" * 32,
            "smelt.vocab_size": str(2 * VOCAB), "smelt.eos_id": str(EOS)}
    names = ["id", "input_ids", "n_tokens", "url", "source", "domain", "lang"]
    schema = pa.schema([("id", pa.string()), ("input_ids", pa.list_(pa.uint32())), ("n_tokens", pa.uint32()),
                        ("url", pa.string()), ("source", pa.string()), ("domain", pa.string()), ("lang", pa.string())],
                       metadata=meta)
    entries = []
    for s, rs in enumerate(rows):
        t = pa.table({"id": [r[0] for r in rs], "input_ids": [r[1] for r in rs], "n_tokens": [len(r[1]) for r in rs],
                      "url": [r[2] for r in rs], "source": [r[3] for r in rs], "domain": [r[4] for r in rs],
                      "lang": [r[5] for r in rs]}, schema=schema)
        rel = f"data/v{version}/part-{s:05d}.parquet"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(t, root / rel, row_group_size=row_group)
        entries.append({"path": rel, "rows": len(rs), "bytes": (root / rel).stat().st_size})
    manifest = {"format": 1, "dataset": "toy", "version": version, "digest": f"toy:{seed}:{docs}:{garbage}",
                "schema": [{"name": n} for n in names], "shards": entries}
    (root / "_versions").mkdir(parents=True, exist_ok=True)
    (root / "_versions" / f"{version:06d}.json").write_text(json.dumps(manifest))
    return root


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root")
    p.add_argument("--docs", type=int, default=2000)
    p.add_argument("--garbage", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    write(a.root, a.docs, a.garbage, a.seed)
    print(f"wrote {a.root}/_versions/000001.json ({a.docs} documents, {a.garbage} garbage)")


if __name__ == "__main__":
    main()
