#!/usr/bin/env bash
# Scheduler overhead (docs/scheduling.md), on the quick-start samples:
#  1. catch-up of N daily intervals by `smelt scheduler --once` (max_active_runs 1)
#     against N plain `smelt run --interval` one after the other: the scheduler's
#     cost per run (catalog bookkeeping, child process, reaping);
#  2. launch latency: a 6-field cron firing every 5 seconds, watched for ~35 s:
#     how long after each interval's end its run starts (real clock).
# Usage: bench/scheduler.sh            (N=30; SMELT=path/to/smelt, default target/release/smelt if it has the scheduler, else target/debug/smelt)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-30}
if [ -z "${SMELT:-}" ]; then
    # The release binary if it is recent enough to have the scheduler, else the debug one.
    SMELT=target/debug/smelt
    if [ -x target/release/smelt ] && target/release/smelt scheduler --help >/dev/null 2>&1; then SMELT=target/release/smelt; fi
fi
SMELT=$(realpath "$SMELT")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ln -s "$PWD/examples/data" "$work/data"
base=$(sed 's/^stages:$/SCHEDULE\nstages:/' examples/quickstart.yaml)
printf '%s\n' "${base/SCHEDULE/schedule:
  cron: \"@daily\"
  catchup: true
  start_date: 2024-01-01
  max_active_runs: 1}" > "$work/daily.yaml"
printf '%s\n' "${base/SCHEDULE/schedule:
  cron: \"*/5 * * * * *\"
  catchup: false
  start_date: $(date -u +%Y-%m-%dT%H:%M:%SZ)}" > "$work/every5s.yaml"
end=$(date -u -d "2024-01-01 + $N days" +%Y-%m-%dT00:30:00Z)
echo "binary: $SMELT; load before: $(cut -d' ' -f1-3 /proc/loadavg)"

t0=$(date +%s.%N)
for i in $(seq 0 $((N - 1))); do
    "$SMELT" --data-dir "$work/plain" run "$work/daily.yaml" --no-progress --interval "$(date -u -d "2024-01-01 + $i days" +%Y-%m-%dT00:00:00Z)" >/dev/null 2>&1
done
t1=$(date +%s.%N)
"$SMELT" --data-dir "$work/sched" scheduler "$work/daily.yaml" --once --now "$end" 2>/dev/null
t2=$(date +%s.%N)
versions=$("$SMELT" --data-dir "$work/sched" catalog log quickstart --format json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
python3 - "$t0" "$t1" "$t2" "$N" "$versions" <<'EOF'
import sys
t0, t1, t2, n, v = map(float, sys.argv[1:])
plain, sched = (t1 - t0) / n, (t2 - t1) / n
print(f"catch-up of {int(n)} daily intervals: plain `smelt run` {plain*1000:.0f} ms/run, scheduler {sched*1000:.0f} ms/run "
      f"({int(v)} versions); scheduler overhead {1000*(sched-plain):+.0f} ms/run")
EOF

"$SMELT" --data-dir "$work/rt" scheduler "$work/every5s.yaml" 2>"$work/rt.log" &
pid=$!
sleep 35
kill -TERM $pid; wait $pid || true
for id in $("$SMELT" --data-dir "$work/rt" runs list --format json | python3 -c 'import json,sys; print(" ".join(r["run_id"] for r in json.load(sys.stdin) if r.get("interval")))'); do
    "$SMELT" --data-dir "$work/rt" runs show "$id" --format json
done | python3 -c '
import json, sys, datetime as dt
p = lambda s: dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
dec = json.JSONDecoder(); text = sys.stdin.read(); i = 0; lat = []
while i < len(text):
    if text[i].isspace(): i += 1; continue
    r, i = dec.raw_decode(text, i)
    if r["history"]:
        lat.append((p(r["history"][0]["started_at"]) - p(r["interval"]["end"])).total_seconds() * 1000)
lat.sort()
print(f"launch latency after the interval end, {len(lat)} runs of a 5-second cron: median {lat[len(lat)//2]:.0f} ms, max {lat[-1]:.0f} ms")
'
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
