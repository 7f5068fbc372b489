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


def stream(*batches):
    """Batches as one IPC stream: the rows of one call (smelt gathers consecutive batches, `batch_rows`)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batches[0].schema) as w:
        for b in batches:
            w.write_batch(b)
    return sink.getvalue().to_pybytes()


def serve(config, *batches, metadata=None, fields=None):
    p = subprocess.Popen([sys.executable, "-m", "smelt_data.worker", "serve"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    worker.write_frame(p.stdin, b"C", json.dumps(config).encode())
    assert worker.read_frame(p.stdout) == (b"R", b"{}")
    worker.write_frame(p.stdin, b"B", stream(*batches))
    kind, payload = worker.read_frame(p.stdout)
    p.stdin.close()
    assert p.wait(timeout=30) == 0
    if kind != b"B":
        return kind, json.loads(payload)
    result = worker.from_ipc(payload)
    if metadata is not None:
        metadata.update(result.schema.metadata or {})
    if fields is not None:
        fields.extend(result.schema)
    return kind, result.to_pydict()


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


def test_a_call_of_several_batches_is_one_batch_to_the_function_and_one_result(tmp_path):
    code = tmp_path / "udf.py"
    code.write_text(textwrap.dedent("""
        import pyarrow as pa
        import pyarrow.compute as pc

        def sizes(batch):
            assert isinstance(batch, pa.RecordBatch), type(batch)
            return {"n": pa.array([batch.num_rows] * batch.num_rows, pa.int64()),
                    "long": pc.greater(pc.binary_length(batch["text"]), 4)}

        def long(row):
            return len(row["text"]) > 4
    """))
    declared_n = declared([("n", pa.int64()), ("long", pa.bool_())])
    second = pa.record_batch({"id": ["d", "e"], "text": pa.array(["abcdef", "ab"], pa.large_string())})
    metadata = {}
    kind, got = serve({"path": str(code), "declared": declared_n, "function": "sizes", "mode": "batch"},
                      BATCH, second, metadata=metadata)
    assert kind == b"B" and got == {"n": [5] * 5, "long": [True, True, False, True, False]}
    assert int(metadata[b"smelt.user_ns"]) > 0, "the time in user code comes back with the result"
    kind, got = serve({"path": str(code), "declared": declared([]), "function": "long", "mode": "filter"},
                      BATCH, second)
    assert got == {"__smelt_drop__": [None, None, "long", None, "long"]}


def test_batch_mode_verdicts_come_back_as_one_bit_a_row_and_the_reason_once(tmp_path):
    code = tmp_path / "udf.py"
    code.write_text(textwrap.dedent("""
        import pyarrow as pa
        import pyarrow.compute as pc

        def long_enough(batch):
            # null (the unknown) drops, as False does
            return pa.array([True, None, False])

        def all_long(batch):
            return pc.greater_equal(pc.binary_length(batch["text"]), 0)
    """))
    base = {"path": str(code), "declared": declared([]), "mode": "batch"}
    fields = []
    kind, got = serve(dict(base, function="long_enough"), BATCH, fields=fields)
    assert kind == b"B" and got == {"__smelt_drop__": [False, True, True]}
    assert fields[0].type == pa.bool_() and fields[0].metadata == {b"smelt.reason": b"long_enough"}
    assert serve(dict(base, function="all_long"), BATCH) == (b"B", {}), "nothing dropped: no column"
