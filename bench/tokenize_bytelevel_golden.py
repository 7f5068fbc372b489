#!/usr/bin/env python3
"""Writes stages/tests/fixtures/tokenizers/bytelevel-golden.json: HF
`tokenizers` (Python) ids for Qwen3's tokenizer.json on strings that probe the
byte-level BPE backend's corners (contractions in capitals, digits, CRLF,
trailing spaces, Unicode spaces, NFC, emoji, CJK, added tokens inside text),
which stages/src/tokenize/tests.rs must reproduce.

  ~/.cache/smelt-peers/venv/bin/python bench/tokenize_bytelevel_golden.py
"""
import json
import os
import sys

sys.path.insert(0, os.path.expanduser("~/.cache/smelt-peers"))
import common  # noqa: F401  (offline environment)
import tokenizers
from tokenizers import Tokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(REPO, "stages/tests/fixtures/tokenizers")

TEXTS = [
    "DON'T panic, I'LL see: WE'RE here, it'S THEY'VE I'M he'D y'all 'twas O'Neill's",
    "long s: it'\u017f and 'S' and ''s and ' s",
    "digits 1234567890, 3.14, 1,000,000, \u00bd \u00b2\u00b3 \u0663\u0664\u0665 \u2167 \uff11\uff12",
    "crlf\r\nline\r\n\r\n  \r\n\tx\n\n\n",
    "trailing spaces   ",
    "   leading and  double  spaces \t\t tabs",
    "space runs before words:     word\u00a0nbsp\u3000ideographic\u2028ls\u200bzwsp\u2009thin",
    "\n",
    " ",
    "x ",
    "emoji \U0001F469\u200d\U0001F469\u200d\U0001F467 \U0001F1EB\U0001F1F7 \U0001F44D\U0001F3FD \u2764\ufe0f",
    "CJK \u6f22\u5b57\u304b\u306a\u30ab\u30ca\u3001\ud55c\uad6d\uc5b4 \u4e2d\u6587\uff0c\u6807\u70b9\u3002",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nHello!<|im_end|>",
    "glued<|endoftext|>glued <|endoftext|> <|im_end|><|im_start|><|im_start <|im_end| |>",
    "NFC: e\u0301 A\u030a \u212b \u1100\u1161\u11a8 a\u0323\u0307 q\u0307\u0323 \ufb01 \u2126",
    "code: def f(x):\n    return {'a': [1, 2]}  # \u00e9t\u00e9\n",
    "http://example.com/path?q=1&r=2#frag user@example.org",
    "\u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u0939\u093f\u0928\u094d\u0926\u0940 \u0e44\u0e17\u0e22 \u05e2\u05d1\u05e8\u05d9\u05ea",
    "zalgo Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349",
    "a" * 300 + " " + "\u00e9" * 50,
    "!!!???... ---=== ((()))",
]


def main():
    path = os.path.join(FIX, "qwen3-tokenizer.json")
    tok = Tokenizer.from_file(path)
    tok.no_truncation()
    tok.no_padding()
    out = {"tokenizers": tokenizers.__version__, "tokenizer": "qwen3-tokenizer.json",
           "cases": [{"text": t, "ids": tok.encode(t, add_special_tokens=False).ids} for t in TEXTS]}
    with open(os.path.join(FIX, "bytelevel-golden.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps({k: v for k, v in out.items() if k != "cases"}, ensure_ascii=False)[:-1] + ', "cases": [\n')
        f.write(",\n".join(json.dumps(c, ensure_ascii=False) for c in out["cases"]) + "\n]}\n")
    print("wrote", len(TEXTS), "cases")


if __name__ == "__main__":
    main()
