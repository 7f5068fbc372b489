"""Interop: a committed smelt version read by pyarrow, polars and DuckDB through its manifest.

The quick start is committed with the real `smelt` binary; each reader then
opens exactly the shards listed in `_versions/000001.json` under the dataset
root, and must see the same rows (ids and content hashes) as `smelt sql`.

Binaries (built by `cargo test --workspace`, see .ci/run):
  SMELT_BIN          the smelt binary (default target/debug/smelt)
  SMELT_SQL_EXAMPLE  the library's example runner, used while SMELT_BIN has
                     no `sql` subcommand (default target/debug/examples/smelt_sql)
"""

import json
import os
import subprocess
from collections import Counter
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[2]
SMELT = Path(os.environ.get("SMELT_BIN", REPO / "target/debug/smelt"))
SQL_EXAMPLE = Path(os.environ.get("SMELT_SQL_EXAMPLE", REPO / "target/debug/examples/smelt_sql"))


def run(cmd, **kw):
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert done.returncode == 0, f"{cmd} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def smelt_has_sql():
    done = subprocess.run([str(SMELT), "sql", "--help"], capture_output=True, text=True)
    return done.returncode == 0


def smelt_sql(data_dir, query, fmt, output=None):
    """Runs `smelt sql` (or the library's example runner with the same arguments)."""
    tail = [query, "--format", fmt] + (["--output", output] if output else [])
    if smelt_has_sql():
        return run([SMELT, "--data-dir", data_dir, "sql"] + tail)
    assert SQL_EXAMPLE.exists(), f"{SMELT} has no `sql` and {SQL_EXAMPLE} is not built"
    return run([SQL_EXAMPLE, "--data-dir", data_dir] + tail)


@pytest.fixture(scope="module")
def committed(tmp_path_factory):
    """(data dir, dataset root, manifest) of the quick start committed as quickstart@1."""
    assert SMELT.exists(), f"build smelt first: {SMELT}"
    data = tmp_path_factory.mktemp("interop") / "data"
    summary = json.loads(run([SMELT, "--data-dir", data, "run", REPO / "examples/quickstart.yaml", "--format", "json"]))
    assert summary["version"] == 1
    root = data / "datasets" / "quickstart"
    manifest = json.loads((root / "_versions" / "000001.json").read_text())
    assert manifest["version"] == 1 and manifest["totals"]["rows"] == summary["rows_written"]
    return data, root, manifest


def shard_paths(root, manifest):
    paths = [root / s["path"] for s in manifest["shards"]]
    for p, s in zip(paths, manifest["shards"]):
        assert p.stat().st_size == s["bytes"], p
    return [str(p) for p in paths]


def pairs(ids, hashes):
    """Sorted (id, hex content hash) pairs."""
    out = sorted((i, bytes(h).hex()) for i, h in zip(ids, hashes))
    assert len({i for i, _ in out}) == len(out), "ids are unique"
    return out


def test_readers_agree_with_smelt_sql(committed, tmp_path):
    data, root, manifest = committed
    paths = shard_paths(root, manifest)
    rows = manifest["totals"]["rows"]

    # pyarrow: the shards as one table; schema as the manifest records it.
    table = pq.read_table(paths, columns=["id", "content_hash", "source"])
    assert table.num_rows == rows
    assert table.schema.field("content_hash").type == pa.binary(16)
    by_pyarrow = pairs(table.column("id").to_pylist(), table.column("content_hash").to_pylist())
    assert [f.name for f in pq.read_schema(paths[0])] == [f["name"] for f in manifest["schema"]]

    # polars
    frame = pl.read_parquet(paths, columns=["id", "content_hash"])
    by_polars = pairs(frame["id"].to_list(), frame["content_hash"].to_list())

    # DuckDB
    con = duckdb.connect()
    result = con.execute("SELECT id, content_hash FROM read_parquet(?)", [paths]).fetchall()
    by_duckdb = pairs([r[0] for r in result], [r[1] for r in result])

    # smelt sql, as Parquet (exact bytes) and as JSON (hashes as hex).
    out = tmp_path / "ids.parquet"
    smelt_sql(data, 'SELECT id, content_hash FROM "quickstart@1"', "parquet", str(out))
    ours = pq.read_table(out)
    by_smelt = pairs(ours.column("id").to_pylist(), ours.column("content_hash").to_pylist())
    as_json = json.loads(smelt_sql(data, 'SELECT id, content_hash FROM "quickstart@1" ORDER BY id', "json"))
    by_smelt_json = [(r["id"], r["content_hash"]) for r in as_json]

    assert len(by_pyarrow) == rows
    assert by_polars == by_pyarrow
    assert by_duckdb == by_pyarrow
    assert by_smelt == by_pyarrow
    assert by_smelt_json == by_pyarrow

    # The mixture: DuckDB's GROUP BY, smelt's, and the statistics in the manifest.
    duck = dict(con.execute("SELECT source, count(*) FROM read_parquet(?) GROUP BY source", [paths]).fetchall())
    stats = Counter()
    for g in manifest["stats"]:
        stats[g["source"]] += g["docs"]
    ours = {
        r["source"]: r["n"]
        for r in json.loads(smelt_sql(data, 'SELECT source, count(*) AS n FROM "quickstart@1" GROUP BY source', "json"))
    }
    assert duck == dict(stats) == ours


def test_csv_output_is_read_by_duckdb(committed, tmp_path):
    data, root, manifest = committed
    out = tmp_path / "versions.csv"
    smelt_sql(data, "SELECT dataset, version, run_id, rows, digest FROM versions", "csv", str(out))
    rows = duckdb.connect().execute("SELECT * FROM read_csv_auto(?)", [str(out)]).fetchall()
    assert rows == [("quickstart", 1, manifest["lineage"]["run_id"], manifest["totals"]["rows"], manifest["digest"])]
