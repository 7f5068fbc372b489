"""The worker of smelt's `python` transform, driven over its pipes as smelt drives it."""

import json
import subprocess
import sys
import textwrap

import pyarrow as pa

import smelt_data
from smelt_data import worker


def declared(fields):
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, pa.schema(fields)):
        pass
    return sink.getvalue().to_pybytes().hex()


def serve(config, batch):
    p = subprocess.Popen([sys.executable, "-m", "smelt_data.worker", "serve"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    worker.write_frame(p.stdin, b"C", json.dumps(config).encode())
    assert worker.read_frame(p.stdout) == (b"R", b"{}")
    worker.write_frame(p.stdin, b"B", worker.to_ipc(batch))
    kind, payload = worker.read_frame(p.stdout)
    p.stdin.close()
    assert p.wait(timeout=30) == 0
    return kind, (worker.from_ipc(payload).to_pydict() if kind == b"B" else json.loads(payload))


BATCH = pa.record_batch({"id": ["a", "b", "c"], "text": pa.array(["short", "a longer text", "xyz"], pa.large_string())})


def test_decorators_name_the_mode():
    @smelt_data.filter
    def f(row):
        return True

    assert f.__smelt_mode__ == "filter" and smelt_data.map(f).__smelt_mode__ == "map"


def test_filter_map_and_errors_over_the_pipes(tmp_path):
    code = tmp_path / "udf.py"
    code.write_text(textwrap.dedent("""
        def long(row, n=5):
            print("to stderr")
            return len(row["text"]) > n or (False, "short")

        def score(row):
            if row["id"] == "c":
                raise ValueError("no c")
            return {"score": len(row["text"]) / 10}
    """))
    base = {"path": str(code), "declared": declared([])}
    assert serve(dict(base, function="long", mode="filter"), BATCH) == (b"B", {"__smelt_drop__": ["short", None, "short"]})
    scored = dict(base, function="score", mode="map", declared=declared([("score", pa.float64())]))
    kind, error = serve(scored, BATCH)
    assert kind == b"E" and error["type"] == "ValueError" and error["row"] == {"index": 2, "id": "c"}
    assert 'udf.py", line 8, in score' in error["traceback"]
    assert serve(dict(scored, on_error="drop"), BATCH) == (
        b"B", {"score": [0.5, 1.3, None], "__smelt_drop__": [None, None, "ValueError"]})
