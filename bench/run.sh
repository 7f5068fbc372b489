#!/usr/bin/env bash
# Runs one benchmark script and keeps what it printed as its results file:
#   bench/run.sh NAME [ARGS...]     runs bench/NAME.sh ARGS, writes bench/results/NAME.txt
#   RESULTS=OTHER bench/run.sh NAME  the same, into bench/results/OTHER.txt (a second setting of one script)
# The file starts with when, where and from which commit it ran, and the
# machine's load before and after (the figures on a loaded machine are noted
# as such in bench/README.md). Every figure in bench/README.md comes from a
# file under bench/results written this way or by the script itself;
# bench/check_results.sh (run by .ci/run) checks that each file it cites exists.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: bench/run.sh NAME [ARGS...] (bench/NAME.sh)}
shift
script=bench/$name.sh
[ -x "$script" ] || [ -f "$script" ] || { echo "no $script" >&2; exit 2; }
out=bench/results/${RESULTS:-$name}.txt
mkdir -p bench/results
tmp=$(mktemp)
{
  echo "# bench/$name.sh $*"
  echo "# date: $(date -u '+%F %T UTC')"
  echo "# commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!bench/results' || echo ' (with uncommitted changes)')"
  echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr)"
  echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$tmp"
set +e
bash "$script" "$@" 2>&1 | tee -a "$tmp"
rc=${PIPESTATUS[0]}
set -e
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg); exit status $rc" >>"$tmp"
if [ "$rc" -ne 0 ]; then
  echo "bench/$name.sh failed (exit $rc); $out left as it was, output in $tmp" >&2
  exit "$rc"
fi
mv "$tmp" "$out"
echo "results: $out"
