#!/usr/bin/env bash
# Seeds each fuzz target's corpus with real inputs from the repository (fuzz/seeds/TARGET,
# regenerated, not committed): the WARC/WET/WAT/ARC fixtures, the bundled JSONL samples,
# the feed fixtures, the HTML test pages, every pipeline file (valid and invalid), and the
# committed manifests and document indexes under fuzz/seed-files/.
set -euo pipefail
cd "$(dirname "$0")"
root=..
rm -rf seeds
mkdir -p seeds/{warc,jsonl,feed,html,pipeline_yaml,manifest,docindex}
n=0
seed() {  # seed TARGET FILE [PREFIX_BYTE]: files over 1 MiB are cut (libFuzzer's -max_len)
    n=$((n + 1))
    if [ $# -eq 3 ]; then
        { printf "\\x$3"; head -c 1048575 "$2"; } >"seeds/$1/$n"
    else
        head -c 1048576 "$2" >"seeds/$1/$n"
    fi
}
for f in "$root"/connectors/tests/fixtures/warc/*.{warc,wet,gz,arc} "$root"/connectors/tests/fixtures/warc/*/*.{gz,arc} \
    "$root"/examples/data/cc/*; do
    [ -f "$f" ] && seed warc "$f"
done
for f in "$root"/examples/data/jsonl/* "$root"/examples/data/news/*.jsonl; do seed jsonl "$f"; done
for f in "$root"/tests/fixtures/net/feeds/*.{xml,atom,json}; do
    seed feed "$f" 00
    seed feed "$f" 03   # sent as windows-1252
done
for f in "$root"/stages/tests/fixtures/html/*.html "$root"/stages/tests/fixtures/extract/*; do
    [ -f "$f" ] && seed html "$f"
done
for f in "$root"/examples/*.yaml "$root"/tests/pipelines/*.yaml "$root"/tests/pipelines/invalid/*.yaml; do
    [ -f "$f" ] && seed pipeline_yaml "$f"
done
for f in seed-files/manifest/* ; do seed manifest "$f"; done
for f in seed-files/docindex/* ; do seed docindex "$f"; done
echo "seeds: $n files in fuzz/seeds/"
