#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer's coverage instrumentation (the flags
# cargo-fuzz passes, minus the sanitizer, so the stable toolchain builds them)
# and runs each for a bounded time, seeded with the repository's real fixtures.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     # default 60 s, every target
#   FUZZ_JOBS=1 fuzz/run.sh 60                         # one target at a time (default: one per core)
#
# A crash (an uncaught panic, an abort, a timeout of 10 s on one input, or more
# than 2 GiB of memory) fails the script; libFuzzer leaves the input in
# fuzz/artifacts/TARGET/. Add it under fuzz/regressions/TARGET/ and a test
# (tests/fuzz_regressions.rs replays every file there on each `cargo test`).
# Corpora grow in fuzz/corpus/TARGET (not committed; seeds come from fuzz/seeds.sh).
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(warc jsonl feed html pipeline_yaml manifest docindex)
export CARGO_TARGET_DIR="$PWD/target" CARGO_INCREMENTAL=0
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
start=$(date +%s)
# --target: the instrumentation applies to the targets, not to build scripts and proc macros.
host=$(rustc -vV | sed -n 's/^host: //p')
cargo build --release --locked --bins -q --target "$host"
bin="target/$host/release"
echo "fuzz build: $(( $(date +%s) - start )) s"
./seeds.sh
# The targets run side by side, one per core (each libFuzzer process is one thread).
jobs=${FUZZ_JOBS:-$(nproc)}
run_target() {
    local t=$1 rc=0
    mkdir -p "corpus/$t" "artifacts/$t"
    local dirs=("corpus/$t" "seeds/$t")
    [ -d "regressions/$t" ] && dirs+=("regressions/$t")
    "$bin/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=1048576 \
        -print_final_stats=1 -artifact_prefix="artifacts/$t/" "${dirs[@]}" >"artifacts/$t/last-run.log" 2>&1 || rc=$?
    echo "$rc" >"artifacts/$t/last-run.rc"
}
for ((i = 0; i < ${#targets[@]}; i += jobs)); do
    batch=("${targets[@]:i:jobs}")
    echo "== ${batch[*]}: ${secs} s each"
    for t in "${batch[@]}"; do run_target "$t" & done
    wait
    for t in "${batch[@]}"; do
        log="artifacts/$t/last-run.log"
        rc=$(cat "artifacts/$t/last-run.rc")
        echo "-- $t"
        grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb|INFO: seed corpus)' "$log" || true
        if [ "$rc" -ne 0 ]; then
            tail -n 40 "$log" >&2
            echo "fuzz target $t crashed (exit $rc): the input is in fuzz/artifacts/$t/, the log in $log" >&2
            exit 1
        fi
    done
done
