#!/usr/bin/env python3
"""Deterministic generated documents for the filter benchmarks (bench/sql_where.sh, bench/python_stage.sh):
ids d0000000..., texts of 100 to 1,595 characters of a fixed word list, one JSON object a line.

    python3 bench/generated_docs.py OUT.jsonl N
"""
import json
import os
import sys


def main():
    path, n = sys.argv[1], int(sys.argv[2])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    words = ["data", "pipeline", "token", "crawl", "news", "model", "train", "shard", "filter", "text"]
    with open(path, "w") as f:
        for i in range(n):
            k = 20 + (i * 37) % 300
            text = " ".join(words[(i + j) % len(words)] for j in range(k // 1))[: 5 * k]
            f.write(json.dumps({"id": f"d{i:07d}", "text": text}) + "\n")


if __name__ == "__main__":
    main()
