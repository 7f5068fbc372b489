#!/usr/bin/env python3
"""Checks that bench/README.md's figures can be traced to files in the repository.

Every `## ` section must cite at least one results file (`results/NAME` or
`bench/results/NAME`), every cited results file must exist, and every script
the README names in backticks (`NAME.sh`, `NAME.py`, `NAME.rs`, with or without
a folder) must exist in the repository, unless it is the peer harness's
(`../shared/peers`, named as such). Run by .ci/run; exits 1 with the list of
problems.

    python3 bench/check_results.py
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
# The peer harness's scripts live outside the repository (../shared/peers); the
# README names them as the peer side of a figure.
PEER_SCRIPTS = {"setup.sh", "bench_parse.py", "bench_extract.py", "bench_tokenize.py", "build_warc.py",
                "run_datatrove_pipeline.py", "run_minhash.py", "summarize.py", "run_all.sh", "timed.py",
                "build_gpt2_tokenizer_json.py", "seed_tiktoken_cache.py"}
# Files of other projects the README names as the origin of an input or a method.
UPSTREAM = {"tests/evaldata.py": "trafilatura's evaluation data (copied to bench/data/)",
            "comparison.py": "trafilatura's evaluation scoring"}


def sections(text):
    current, lines = "(preamble)", []
    for line in text.splitlines():
        if line.startswith("## "):
            yield current, "\n".join(lines)
            current, lines = line[3:].strip(), []
        else:
            lines.append(line)
    yield current, "\n".join(lines)


def script_exists(name):
    if name in PEER_SCRIPTS or name in UPSTREAM or name.startswith("../shared/"):
        return True
    candidates = [ROOT / name, BENCH / name, *ROOT.glob(f"**/{name}")]
    return any(c.is_file() for c in candidates if "target" not in c.relative_to(ROOT).parts)


def results_exist(name):
    """A cited results file, or every file of a cited pattern (`slurm-*.tsv`)."""
    return any(p.is_file() for p in (BENCH / "results").glob(name))


def main():
    readme = (BENCH / "README.md").read_text()
    problems = []
    for title, body in sections(readme):
        cited = set(re.findall(r"(?:bench/)?results/([A-Za-z0-9_.*\-/]+[A-Za-z0-9])", body + title))
        if title != "(preamble)" and not cited:
            problems.append(f"section `{title}` cites no results file (bench/results/...)")
        for name in sorted(cited):
            if not results_exist(name):
                problems.append(f"section `{title}` cites bench/results/{name}, which does not exist")
        for name in sorted(set(re.findall(r"`(?:bash |python3? )?([A-Za-z0-9_./\-]+\.(?:sh|py|rs))", body + title))):
            if not script_exists(name):
                problems.append(f"section `{title}` names `{name}`, which is not in the repository")
    if problems:
        print("bench/README.md: figures without a committed results file or script:", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        sys.exit(1)
    print(f"bench/README.md: every section cites results files that exist ({len(list(sections(readme))) - 1} sections)")


if __name__ == "__main__":
    main()
