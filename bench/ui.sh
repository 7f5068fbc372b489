#!/usr/bin/env bash
# `smelt ui` page latency and server memory at the issue's scale: 100 datasets,
# one of them with 1,000 versions, and 10,000 scheduled runs (goal: every page
# in under 200 ms; memory flat while browsing).
#   bash bench/ui.sh            (bench/run.sh ui keeps the output in bench/results/ui.txt)
# The catalog is seeded by catalog/examples/seed_catalog.rs (real manifest and
# run-record types, made-up numbers); two real quickstart versions are added so
# the version and diff pages of real runs (documents, lineage) are timed too.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q --workspace --bins --examples
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
bin=$target/release/smelt
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
d=$work/data
"$target/release/examples/seed_catalog" "$d" 100 10 10000 1000
"$bin" --data-dir "$d" run examples/quickstart.yaml >/dev/null
"$bin" --data-dir "$d" run examples/quickstart.yaml >/dev/null
"$bin" --data-dir "$d" ui --port 0 >"$work/ui.out" 2>/dev/null &
pid=$!
for _ in $(seq 50); do grep -q http "$work/ui.out" 2>/dev/null && break; sleep 0.1; done
port=$(grep -o '127.0.0.1:[0-9]*' "$work/ui.out" | cut -d: -f2)
python3 - "$port" "$pid" <<'PY'
import statistics, sys, time, urllib.request
port, pid = sys.argv[1], sys.argv[2]
pages = [
    ("datasets (100)", "/"),
    ("dataset log, 1,000 versions", "/d/ds000/index.html"),
    ("dataset log, page 10", "/d/ds000/index.html?page=10"),
    ("version (seeded)", "/d/ds000/v1000.html"),
    ("diff of two seeded versions", "/d/ds000/diff-999-1000.html"),
    ("version (real quickstart run)", "/d/quickstart/v2.html"),
    ("diff of real versions (documents)", "/d/quickstart/diff-1-2.html"),
    ("runs: grid + list of 10,002", "/runs/index.html"),
    ("runs, page 50", "/runs/index.html?page=50"),
    ("one scheduled run", "/runs/ds000-20000101T060000Z.html"),
    ("training runs", "/train/index.html"),
    ("SQL: versions by dataset", "/sql.html?q=SELECT+dataset%2C+count(*)+FROM+versions+GROUP+BY+dataset+ORDER+BY+2+DESC"),
    ("SQL: rows of a real version", "/sql.html?q=SELECT+id%2C+url+FROM+%22quickstart%40latest%22"),
]

def rss():
    f = dict(l.split(":", 1) for l in open(f"/proc/{pid}/status"))
    return int(f["VmRSS"].split()[0]) // 1024, int(f["VmHWM"].split()[0]) // 1024

def fetch(path):
    t = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}") as r:
        body = r.read()
        assert r.status == 200, (path, r.status)
    return (time.perf_counter() - t) * 1000, len(body)

for _, p in pages:  # warm the page cache
    fetch(p)
rss1 = rss()
print(f"{'page':<36} {'median ms':>9} {'max ms':>7} {'KiB':>6}")
worst = 0.0
for name, p in pages:
    ts = []
    for _ in range(15):
        ms, size = fetch(p)
        ts.append(ms)
    worst = max(worst, max(ts))
    print(f"{name:<36} {statistics.median(ts):>9.1f} {max(ts):>7.1f} {size // 1024:>6}")
series = [(16, rss())]
rounds = 16
for target in (41, 81, 161):
    while rounds < target:
        for _, p in pages:
            fetch(p)
        rounds += 1
    series.append((rounds, rss()))
print(f"slowest request: {worst:.1f} ms (goal < 200 ms); {len(pages)} pages x 15 requests, one client, release build")
print("server RSS after N rounds of every page: " + ", ".join(f"{n}: {r[0]} MiB" for n, r in [(1, rss1)] + series)
      + f" (peak {series[-1][1][1]} MiB); flat: {series[-1][1][0] - series[1][1][0]} MiB from round 41 to {series[-1][0]}")
PY
