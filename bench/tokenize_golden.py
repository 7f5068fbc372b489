#!/usr/bin/env python3
"""Writes stages/tests/fixtures/tokenizers/golden.json: token ids from the
reference Python libraries (HF `tokenizers`, `tiktoken`) for a few real
texts and odd strings, which the `tokenize` stage's unit tests must match.

  ~/.cache/smelt-peers/venv/bin/python bench/tokenize_golden.py

The OpenAI encodings are built in tiktoken from the rank files bundled in the
tiktoken-rs crate (cargo's registry), with tiktoken's own patterns and
specials, so the check is tiktoken's algorithm against smelt's.
"""
import glob
import json
import os
import sys

sys.path.insert(0, os.path.expanduser("~/.cache/smelt-peers"))
import common  # noqa: F401  (offline environment)
import tiktoken
from tokenizers import Tokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(REPO, "stages/tests/fixtures/tokenizers")
NEWS = os.path.join(REPO, "../shared/data/news/newspaper4k-0.9.6-tests-data/txt")

R50K_PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
CL100K_PAT = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
O200K_PAT = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""", r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""", r"""\s*[\r\n]+""", r"""\s+(?!\S)""", r"""\s+""",
])
SPECS = {
    "r50k_base": (R50K_PAT, {"<|endoftext|>": 50256}),
    "p50k_base": (R50K_PAT, {"<|endoftext|>": 50256}),
    "cl100k_base": (CL100K_PAT, {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
                                 "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276}),
    "o200k_base": (O200K_PAT, {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}),
}


def tiktoken_rs_assets():
    found = sorted(glob.glob(os.path.expanduser("~/.cargo/registry/src/*/tiktoken-rs-0.12.1/assets")))
    if not found:
        raise SystemExit("tiktoken-rs 0.12.1 is not in cargo's registry: run `cargo fetch` first")
    return found[-1]


def openai_encoding(name):
    """tiktoken's Encoding for `name`: tiktoken's own file when its cache has it, else tiktoken-rs's ranks."""
    import base64
    pat, special = SPECS[name]
    ranks = {}
    with open(os.path.join(tiktoken_rs_assets(), f"{name}.tiktoken"), "rb") as f:
        for line in f:
            if line.strip():
                tok, rank = line.split()
                ranks[base64.b64decode(tok)] = int(rank)
    return tiktoken.Encoding(name=name, pat_str=pat, mergeable_ranks=ranks, special_tokens=special)


def hf(path):
    tok = Tokenizer.from_file(path)
    tok.no_truncation()
    tok.no_padding()
    return lambda t: tok.encode(t, add_special_tokens=False).ids


ODD = [
    "",
    "   ",
    "Hello world",
    "line one\r\nline two\n\n\n  indented\ttab",
    "emoji 👩‍👩‍👧 and flags 🇫🇷 and replacement \ufffd char",
    "special <|endoftext|> text and [SEP] and </s> inside",
    "numbers 1234567890 3.14159 -42 1,000,000",
    "Ünïcödé – “quotes” 日本語テキスト e\u0301 (combining) ﬁ ligature",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "    def f(x):\n        return x ** 2  # comment\n",
    "I'm sure you'll SEE it's THEIR'S, they've he'd",
]
REAL = ["cnn_article.txt", "arabic_article.txt", "chinese_article.txt", "japanese_article.txt",
        "thai_article.txt", "spanish_article.txt", "korean_article.txt", "hindi_article.txt"]


def main():
    texts = [{"name": f"odd{i}", "text": t} for i, t in enumerate(ODD)]
    for fn in REAL:
        with open(os.path.join(NEWS, fn), encoding="utf-8") as f:
            texts.append({"name": fn, "text": f.read()[:3000]})
    encoders = {f"tiktoken:{n}": (lambda e: (lambda t: e.encode_ordinary(t)))(openai_encoding(n)) for n in SPECS}
    encoders["qwen3-tokenizer.json"] = hf(os.path.join(FIX, "qwen3-tokenizer.json"))
    encoders["bert-tokenizer.json"] = hf(os.path.join(FIX, "bert-tokenizer.json"))
    out = {"texts": texts, "ids": {name: [enc(t["text"]) for t in texts] for name, enc in encoders.items()},
           "made_by": f"tokenizers {__import__('tokenizers').__version__}, tiktoken {tiktoken.__version__}"}
    with open(os.path.join(FIX, "golden.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
    print("wrote", os.path.join(FIX, "golden.json"), {k: sum(map(len, v)) for k, v in out["ids"].items()})


if __name__ == "__main__":
    main()
