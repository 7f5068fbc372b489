#!/usr/bin/env bash
# Slurm executor figures: submission overhead (`smelt run --executor slurm`
# started -> first rank running) and end-to-end time (started -> version
# committed by the commit job) of an N-rank run, against one local
# `smelt run` of the same pipeline on the same machine. Runs alternate
# local / Slurm; the table shows every run and the medians, and checks that
# both commit the same digest. A second local run uses --parallelism N (as
# many splits at once as there are ranks), the fairer comparison on one machine.
#
#   .ci/slurm-up.sh                      # once: a one-node Slurm
#   cargo build --release --locked -q --workspace --bins --examples
#   bench/slurm.sh                       # RUNS=5 RANKS=4 INPUT=dir-of-warc.gz OUT=file.tsv
#
# Default input: the peer harness's 4 DEBDOCS-SYNTH shards (~/.cache/smelt-peers/data/warc,
# 111.7 MB of WARC, 11,714 HTML responses), one split per shard; the quick-start
# pipeline's stages (warc -> html_to_text -> content_hash -> parquet).
set -euo pipefail
cd "$(dirname "$0")/.."
SMELT=${SMELT_BIN:-$PWD/target/release/smelt}
RUNS=${RUNS:-3}
RANKS=${RANKS:-4}
INPUT=${INPUT:-$HOME/.cache/smelt-peers/data/warc}
OUT=${OUT:-bench/results/slurm.tsv}
[ -x "$SMELT" ] || { echo "no smelt binary at $SMELT: cargo build --release --locked -q --workspace --bins --examples" >&2; exit 1; }
ls "$INPUT"/*.warc.gz >/dev/null || { echo "no *.warc.gz in $INPUT" >&2; exit 1; }
.ci/slurm-up.sh >/dev/null

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/p.yaml" <<EOF
dataset: slurmbench
stages:
  crawl: {type: warc, paths: ["$INPUT/*.warc.gz"]}
  text: {type: html_to_text, inputs: [crawl]}
  hashed: {type: content_hash, inputs: [text]}
  out: {type: parquet, inputs: [hashed]}
EOF

now() { date +%s.%N; }
sub() { python3 -c "print(f'{$1 - $2:.2f}')"; }
digest() { "$SMELT" --data-dir "$1" catalog show slurmbench@1 --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["digest"])'; }

echo "machine: $(nproc) cores, $(sinfo -h -o '%c') Slurm CPUs, load average at start:$(cut -d' ' -f1-3 /proc/loadavg | sed 's/^/ /'); binary: $SMELT"
mkdir -p "$(dirname "$OUT")"
printf 'run\tlocal_s\tlocal_par_ranks_s\tsubmit_cmd_s\tsubmit_to_first_rank_s\tslurm_end_to_end_s\tsame_digest\n' >"$OUT"
for i in $(seq 1 "$RUNS"); do
    d="$work/local$i"
    t0=$(now)
    "$SMELT" --data-dir "$d" run "$work/p.yaml" --no-progress --format json >"$d.json" 2>"$d.err"
    t1=$(now)
    local_s=$(sub "$t1" "$t0")
    # The same number of splits at once as there are ranks (one process, one thread per split).
    t0=$(now)
    "$SMELT" --data-dir "$d-par" run "$work/p.yaml" --no-progress --parallelism "$RANKS" --format json >"$d-par.json" 2>"$d-par.err"
    t1=$(now)
    local_par_s=$(sub "$t1" "$t0")

    d="$work/slurm$i"
    logs="$d/slurm/b$i/logs"
    t0=$(now)
    "$SMELT" --data-dir "$d" run "$work/p.yaml" --executor slurm --ranks "$RANKS" --cpus-per-rank 1 --run-id "b$i" --format json >"$d.json" 2>"$d.err"
    t_sub=$(now)
    until compgen -G "$logs/phase0-rank*.out" >/dev/null; do sleep 0.01; done
    t_first=$(now)
    until grep -qs "committed slurmbench@1" "$logs/commit.out"; do
        if "$SMELT" --data-dir "$d" runs show "b$i" --format json | grep -q '"state": "failed"'; then
            echo "run b$i failed: $("$SMELT" --data-dir "$d" runs show "b$i")" >&2
            exit 1
        fi
        sleep 0.05
    done
    t_done=$(now)
    same=no
    [ "$(digest "$work/local$i")" = "$(digest "$d")" ] && same=yes
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$i" "$local_s" "$local_par_s" "$(sub "$t_sub" "$t0")" "$(sub "$t_first" "$t0")" "$(sub "$t_done" "$t0")" "$same" >>"$OUT"
done

python3 - "$OUT" "$RANKS" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
cols = ["local_s", "local_par_ranks_s", "submit_cmd_s", "submit_to_first_rank_s", "slurm_end_to_end_s"]
print(f"{'run':>6} " + " ".join(f"{c:>24}" for c in cols) + "  same digest")
print(f"(local: one process, default parallelism; local_par_ranks: --parallelism {sys.argv[2]}; times from the start of the smelt command)")
for r in rows:
    print(f"{r['run']:>6} " + " ".join(f"{r[c]:>24}" for c in cols) + f"  {r['same_digest']}")
med = {c: statistics.median(float(r[c]) for r in rows) for c in cols}
print(f"{'median':>6} " + " ".join(f"{med[c]:>24.2f}" for c in cols))
print(f"{sys.argv[2]} Slurm ranks end to end / one local process: {med['slurm_end_to_end_s'] / med['local_s']:.2f}x "
      f"(/ local with --parallelism {sys.argv[2]}: {med['slurm_end_to_end_s'] / med['local_par_ranks_s']:.2f}x)")
EOF
echo "figures: $OUT"
