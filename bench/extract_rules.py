#!/usr/bin/env python3
"""Which of `extract`'s rules decide the blocks of real pages, on how many
pages, and how often each decision agrees with the reference text: the count
issue 20 asks for ("how many rules fire on only one page"), per rule.

    python3 bench/extract_rules.py [--smelt BIN] [--json OUT]

Pages: newspaper4k's gold pages (gold body text) and the tuning half of
Mozilla Readability's test pages (Readability.js's own extraction as the
reference); the check half stays out, as in extract_readability.sh. Each
page goes through `smelt extract --explain --format json`, which names the
rule behind every block's verdict (kept: main node, lead, sibling, inline
link, article lead; dropped: furniture by tag/class/id/hidden, outside the
main node, link list, list title). A block counts as content when at least
60% of its words are in the reference's bag of words (each reference word
used once). Per rule: pages and blocks it decided, the share of its blocks'
words that were content (kept) or boilerplate (dropped), and the pages where
it went against the reference.
"""
import argparse
import collections
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import extract_bench as eb  # noqa: E402  (pages, tokens, the split)


def pages():
    out = [(os.path.basename(h)[:-5], "newspaper4k", h, g) for h, g in eb.gold_pages()]
    for name, src, ref in eb.readability_pages():
        if eb.split_part(name) == "tuning":
            out.append((name, "readability", src, ref))
    return out


def explain(binary, files):
    run = subprocess.run([binary, "extract", "--explain", "--format", "json", *files],
                         capture_output=True, text=True, check=True)
    by_source = {}
    for line in run.stdout.splitlines():
        d = json.loads(line)
        by_source[d["source"]] = d["blocks"]
    return by_source


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smelt", default=os.environ.get("SMELT_BIN", os.path.join(HERE, "..", "target", "release", "smelt")))
    ap.add_argument("--json", help="write the per-rule figures here")
    a = ap.parse_args()
    todo = pages()
    blocks_of = explain(a.smelt, [src for _, _, src, _ in todo])
    stats = collections.defaultdict(lambda: {"pages": set(), "blocks": 0, "words": 0, "against": 0,
                                              "against_pages": set()})
    for name, corpus, src, ref in todo:
        left = collections.Counter(eb.tokens(ref))
        for b in blocks_of.get(src, []):
            words = eb.tokens(b["text"])
            if not words:
                continue
            found = 0
            for w in words:
                if left[w] > 0:
                    left[w] -= 1
                    found += 1
            content = found >= 0.6 * len(words)
            rule = ("kept: " if b["kept"] else "dropped: ") + b["why"]
            s = stats[rule]
            s["pages"].add(f"{corpus}/{name}")
            s["blocks"] += 1
            s["words"] += len(words)
            if content != b["kept"]:
                s["against"] += len(words)
                s["against_pages"].add(f"{corpus}/{name}")
    rows = []
    for rule, s in sorted(stats.items(), key=lambda kv: (-len(kv[1]["pages"]), kv[0])):
        agree = 1 - s["against"] / max(1, s["words"])
        rows.append({"rule": rule, "pages": len(s["pages"]), "blocks": s["blocks"], "words": s["words"],
                     "agree": round(agree, 4), "pages_against": len(s["against_pages"])})
    print(f"{len(todo)} pages (newspaper4k gold {sum(1 for p in todo if p[1] == 'newspaper4k')}, "
          f"Readability tuning half {sum(1 for p in todo if p[1] == 'readability')})")
    print(f"{'rule':<50} {'pages':>5} {'blocks':>6} {'words':>7} {'agree':>6} {'pages against':>13}")
    for r in rows:
        print(f"{r['rule']:<50} {r['pages']:>5} {r['blocks']:>6} {r['words']:>7} {r['agree']:>6.3f} {r['pages_against']:>13}")
    once = [r["rule"] for r in rows if r["pages"] == 1]
    print(f"rules deciding blocks on one page only: {len(once)}" + (f" ({', '.join(once)})" if once else ""))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
