"""Training runs: the rank file and metrics a loader writes next to the version, and the trace
that finds, by seeking, which documents were in any batch: every batch the loaders yielded is
rebuilt token for token from the trace's documents."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from smelt_data import ShardLoader, TokenShardDataset, TrainingRun, samples_per_epoch
from smelt_data import runs as runsmod
from smelt_data.trace import TraceError, batch_documents, read_metrics

PYTHON_DIR = str(Path(__file__).resolve().parents[1])
EOS = 7


def make_version(root: Path, n_docs=90, eos="recorded", shards=3, row_group=9, seed=0, version=1):
    """Documents of 1-40 unique ids with url/source/domain/lang columns. ``eos="recorded"``: each
    document ends with EOS 7 (in the metadata) and every fourth is split into rows ``id#0``,
    ``id#1``.. (the EOS on its last row only), as `tokenize` with overflow: split; ``"none"``: no EOS
    recorded (the loader is given eos_id=7). Returns {row id: ids}."""
    rng = np.random.default_rng(seed)
    nxt, per_shard, by_id = 100, [[] for _ in range(shards)], {}
    meta = {"smelt.tokenizer": "tiktoken:cl100k_base", "smelt.tokenizer_hash": "xxh3-128:" + "cd" * 16,
            "smelt.vocab_size": "1000000"}
    if eos == "recorded":
        meta["smelt.eos_id"] = str(EOS)
    for d in range(n_docs):
        n = int(rng.integers(1, 40))
        ids = list(range(nxt, nxt + n))
        nxt += n
        parts = 3 if eos == "recorded" and d % 4 == 0 and n >= 3 else 1
        cuts = np.array_split(np.array(ids), parts)
        for p, part in enumerate(cuts):
            row = part.tolist() + ([EOS] if eos == "recorded" and p == parts - 1 else [])
            rid = f"doc{d}#{p}" if parts > 1 else f"doc{d}"
            per_shard[d % shards].append((rid, row, f"https://ex{d % 5}.org/{d}", ["cc", "wiki"][d % 2],
                                          f"ex{d % 5}.org", "en"))
            by_id[rid] = row
    schema = pa.schema([("id", pa.string()), ("input_ids", pa.list_(pa.uint32())), ("n_tokens", pa.uint32()),
                        ("url", pa.string()), ("source", pa.string()), ("domain", pa.string()), ("lang", pa.string())],
                       metadata=meta)
    shard_entries = []
    for s, rows in enumerate(per_shard):
        t = pa.table({"id": [r[0] for r in rows], "input_ids": [r[1] for r in rows], "n_tokens": [len(r[1]) for r in rows],
                      "url": [r[2] for r in rows], "source": [r[3] for r in rows], "domain": [r[4] for r in rows],
                      "lang": [r[5] for r in rows]}, schema=schema)
        rel = f"data/v{version}/part-{s:05d}.parquet"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(t, root / rel, row_group_size=row_group)
        shard_entries.append({"path": rel, "rows": len(rows)})
    manifest = {"format": 1, "dataset": "toy", "version": version, "digest": "blake3:" + "ef" * 32,
                "schema": [{"name": n} for n in schema.names], "shards": shard_entries}
    (root / "_versions").mkdir(parents=True, exist_ok=True)
    (root / "_versions" / f"{version:06d}.json").write_text(json.dumps(manifest))
    return by_id


_tables = {}


def check_trace(root, run_id, rank, yielded, eos):
    """Every yielded batch (global index -> array) equals the trace's documents, and each document
    part is that row's ids in its shard file."""
    got = batch_documents(root, run_id, rank, sorted(yielded), excerpt_tokens=None)
    assert [b["batch"] for b in got["batches"]] == sorted(yielded)
    for tb in got["batches"]:
        want = yielded[tb["batch"]]
        assert len(tb["samples"]) == len(want), tb["batch"]
        for s, row in zip(tb["samples"], want):
            ids = []
            for d in s["docs"]:
                key = str(root / d["path"])
                if key not in _tables:
                    _tables[key] = pq.read_table(key)
                t = _tables[key]
                assert t.column("id")[d["row"]].as_py() == d["id"]
                assert t.column("input_ids")[d["row"]].as_py()[d["from"]:d["to"]] == d["excerpt_ids"]
                assert d["columns"]["lang"] == "en" and d["columns"]["url"].startswith("https://")
                assert set(d["columns"]) == {"url", "source", "domain", "lang"}
                ids += d["excerpt_ids"] + ([EOS] if d.get("eos") else [])
                assert d.get("eos") is None or eos == "none"
            assert ids == list(row), (tb["batch"], s["sample"])
    return got


def dataloader_epoch(root, kw, rank, world, workers, batch, epoch, state=None):
    """What torch's DataLoader gives: each worker its own copy of the dataset, batches dealt
    cyclically to the live workers."""
    per = []
    for w in range(workers):
        ds = TokenShardDataset(root, rank=rank, world_size=world, batch_size=batch, num_workers=workers, epoch=epoch, **kw)
        if state is not None:
            ds.load_state_dict(state)
        per.append([np.asarray(b).copy() for b in ds.iter_worker(w, workers)])
    out = []
    for r in range(max(len(p) for p in per)):
        out.extend((w, p[r]) for w, p in enumerate(per) if r < len(p))
    return out


@pytest.mark.parametrize("eos", ["recorded", "none"])
@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("world", [1, 2])
@pytest.mark.parametrize("kind", ["ShardLoader", "DataLoader"])
def test_trace_rebuilds_every_batch_across_epochs_and_a_resume(tmp_path, kind, world, workers, eos):
    make_version(tmp_path, eos=eos)
    kw = dict(seed=5, seq_len=6, **({"eos_id": EOS} if eos == "none" else {}))
    B, run_id = 3, f"run-{kind}-{world}-{workers}-{eos}"
    for rank in range(world):
        yielded, step = {}, 0
        if kind == "ShardLoader":
            ds = TokenShardDataset(tmp_path, rank=rank, world_size=world, **kw)
            with ShardLoader(ds, batch_size=B, num_workers=workers, ring=4, hold=1, run=run_id) as loader:
                for b in loader:  # epoch 0, whole
                    yielded[loader.batches - 1] = np.asarray(b).copy()
                    loader.log(step, loss=1.0)
                    step += 1
                for i, b in enumerate(loader):  # epoch 1, part
                    yielded[loader.batches - 1] = np.asarray(b).copy()
                    loader.log(step, loss=1.0)
                    step += 1
                    if i == 4:
                        break
                state = loader.state_dict()
            assert state["batches"] == loader.batches == len(yielded)
            ds2 = TokenShardDataset(tmp_path, rank=rank, world_size=world, **kw)
            with ShardLoader(ds2, batch_size=B, num_workers=workers, ring=4, hold=1, run=run_id) as loader2:
                loader2.load_state_dict(state)
                assert loader2.batches == state["batches"]
                for _ in range(2):  # the rest of epoch 1, then epoch 2
                    for b in loader2:
                        yielded[loader2.batches - 1] = np.asarray(b).copy()
                        loader2.log(step, loss=1.0)
                        step += 1
        else:
            main = TokenShardDataset(tmp_path, rank=rank, world_size=world, batch_size=B, num_workers=workers, **kw)
            run = TrainingRun.start(main, batch_size=B, num_workers=workers, run=run_id)
            seen = 0
            for w, b in dataloader_epoch(tmp_path, kw, rank, world, workers, B, 0):
                yielded[seen] = b
                seen += 1
                run.log(seen - 1, batches_seen=seen, loss=1.0)
            main.set_epoch(1)
            ep1 = dataloader_epoch(tmp_path, kw, rank, world, workers, B, 1)
            for w, b in ep1[:workers]:  # one round: batch j from worker j, so state_dict(batches_seen) applies
                yielded[seen] = b
                seen += 1
                run.log(seen - 1, batches_seen=seen, loss=1.0)
            state = main.state_dict(batches_seen=workers, batch_size=B)
            run.close()
            resumed = TokenShardDataset(tmp_path, rank=rank, world_size=world, batch_size=B, num_workers=workers, **kw)
            resumed.load_state_dict(state)
            run2 = TrainingRun.start(resumed, batch_size=B, num_workers=workers, run=run_id, batches=seen)
            for epoch, st in ((1, state), (2, None)):
                if epoch == 2:
                    resumed.set_epoch(2)
                for w, b in dataloader_epoch(tmp_path, kw, rank, world, workers, B, epoch, st):
                    yielded[seen] = b
                    seen += 1
                    run2.log(seen - 1, batches_seen=seen, loss=1.0)
            run2.close()
        header = json.loads((tmp_path / "_training" / run_id / f"rank-{rank:05d}.json").read_text())
        assert len(header["segments"]) == 2 and header["segments"][1]["epoch"] == 1
        assert header["segments"][1]["batch"] > 0 and any(header["segments"][1]["taken"].values())
        got = check_trace(tmp_path, run_id, rank, yielded, eos)
        epochs = [b["epoch"] for b in got["batches"]]
        assert epochs == sorted(epochs) and set(epochs) == {0, 1, 2}
        short = 0
        for e in range(3):
            ds = TokenShardDataset(tmp_path, rank=rank, world_size=world, epoch=e, **kw)
            short += sum(1 for n in samples_per_epoch(ds, workers) if n % B)
        assert sum(len(b["samples"]) < B for b in got["batches"]) == short, "the epochs' short last batches"
        with pytest.raises(TraceError, match="past the end of the run's data"):
            batch_documents(tmp_path, run_id, rank, [len(yielded)])


def test_registration_file_and_metrics(tmp_path, monkeypatch):
    make_version(tmp_path)
    monkeypatch.delenv("SMELT_TRAIN_RUN", raising=False)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "elastic-42")
    ds = TokenShardDataset(tmp_path, seed=1, seq_len=8)
    with ShardLoader(ds, batch_size=2, run={"name": "baseline", "params": {"model": "tiny", "lr": 3e-4}}) as loader:
        assert loader.run_id == "elastic-42"
        assert not (tmp_path / "_training").exists(), "registration waits for the first iteration"
        for i, _ in enumerate(loader):
            loader.log(i, loss=np.float32(2.5), lr=3e-4, ok=True, nan=float("nan"))
            if i == 2:
                break
    h = json.loads((tmp_path / "_training/elastic-42/rank-00000.json").read_text())
    assert h["format"] == 1 and h["run_id"] == "elastic-42" and h["name"] == "baseline"
    assert (h["dataset"], h["version"], h["digest"], h["manifest"]) == ("toy", 1, "blake3:" + "ef" * 32,
                                                                        "_versions/000001.json")
    assert h["tokenizer"] == "tiktoken:cl100k_base" and h["tokenizer_hash"] == "xxh3-128:" + "cd" * 16
    assert (h["seq_len"], h["batch_size"], h["seed"], h["shuffle"], h["rank"], h["world_size"], h["workers"]) == (
        8, 2, 1, True, 0, 1, 1)
    assert (h["eos_id"], h["recorded_eos"], h["dtype"], h["loader"]) == (EOS, EOS, "int64", "ShardLoader")
    assert h["pid"] == os.getpid() and h["host"] and h["started_at"].endswith("Z")
    assert h["params"] == {"model": "tiny", "lr": 3e-4}
    assert [(s["batch"], s["epoch"], s["taken"]) for s in h["segments"]] == [(0, 0, {"0": 0})]
    lines = read_metrics(tmp_path / "_training/elastic-42/metrics-00000.jsonl")
    assert [(m["step"], m["batch"], m["epoch"], m["tokens"]) for m in lines] == [(0, 1, 0, 16), (1, 2, 0, 32), (2, 3, 0, 48)]
    assert lines[0]["loss"] == 2.5 and lines[0]["lr"] == 3e-4 and lines[0]["ok"] == 1 and lines[0]["nan"] is None
    assert isinstance(lines[0]["time"], float) and abs(lines[0]["time"] - time.time()) < 60
    # --step S: the last batch yielded before log(S)
    assert batch_documents(tmp_path, "elastic-42", 0, steps=[1])["batches"][0]["batch"] == 1


def test_run_ids(monkeypatch):
    monkeypatch.delenv("SMELT_TRAIN_RUN", raising=False)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    rid = runsmod.resolve_run(None)["id"]
    assert len(rid) == 23 and rid[8] == "T" and rid[15] == "Z" and rid[16] == "-"
    monkeypatch.setenv("SMELT_TRAIN_RUN", "mine.1")
    assert runsmod.resolve_run(None)["id"] == "mine.1"
    assert runsmod.resolve_run({"id": "x", "params": {"a": 1}}) == {"id": "x", "name": None, "params": {"a": 1}}
    assert runsmod.resolve_run(False) is None
    with pytest.raises(ValueError, match="not a run id"):
        runsmod.resolve_run("a/b")
    monkeypatch.setenv("SMELT_TRAIN_RUN", "bad id")
    with pytest.warns(RuntimeWarning, match="not a run id"):
        assert runsmod.resolve_run(None)["id"] != "bad id"


def test_an_unwritable_root_is_a_warning_and_training_goes_on(tmp_path):
    make_version(tmp_path)
    (tmp_path / "_training").write_text("a file where the directory would be")  # mkdir fails even as root
    ds = TokenShardDataset(tmp_path, seq_len=8)
    with ShardLoader(ds, batch_size=2, run="r1") as loader:
        with pytest.warns(RuntimeWarning, match="could not register") as caught:
            n = 0
            for _ in loader:
                loader.log(n, loss=1.0)
                n += 1
        assert n > 3 and loader.batches == n
        assert len([w for w in caught if "smelt_data" in str(w.message)]) == 1, "one warning, not one per batch"
    with warnings.catch_warnings(record=True) as w2:
        warnings.simplefilter("always")
        t = TrainingRun.start(TokenShardDataset(tmp_path, seq_len=8), batch_size=2, run="r2")
        t.log(0, batches_seen=1, loss=1.0)
        t.close()
    assert any("could not register" in str(x.message) for x in w2)


def test_the_batch_counter_goes_on_after_a_resume_and_old_states_load(tmp_path):
    make_version(tmp_path)
    ds = TokenShardDataset(tmp_path, seq_len=8)
    with ShardLoader(ds, batch_size=2, run=False) as loader:
        assert loader.run_id is None
        for i, _ in enumerate(loader):
            if i == 3:
                break
        state = loader.state_dict()
    assert state["batches"] == 4 and state["samples"] == 8
    with ShardLoader(TokenShardDataset(tmp_path, seq_len=8), batch_size=2, run=False) as again:
        again.load_state_dict(state)
        next(iter(again))
        assert again.batches == 5
        old = {k: v for k, v in state.items() if k not in ("batches", "samples")}
        again.load_state_dict(old)  # a checkpoint from before the counter
        next(iter(again))
        assert again.batches == 1


KILLED = r"""
import sys, time
sys.path.insert(0, sys.argv[2])
from smelt_data import ShardLoader, TokenShardDataset
loader = ShardLoader(TokenShardDataset(sys.argv[1], seq_len=4), batch_size=1, run="killed")
it = iter(loader)
next(it)
print("ready", flush=True)
step = 0
while True:
    loader.log(step, loss=1.0, pad=123456789.123456789)
    step += 1
    time.sleep(0.01)
"""


def test_kill_9_loses_at_most_the_last_2_s_and_no_line_breaks_parsing(tmp_path):
    make_version(tmp_path)
    p = subprocess.Popen([sys.executable, "-c", KILLED, str(tmp_path), PYTHON_DIR], stdout=subprocess.PIPE)
    assert p.stdout.readline().strip() == b"ready"
    time.sleep(5.3)
    killed_at = time.time()
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    path = tmp_path / "_training/killed/metrics-00000.jsonl"
    raw = path.read_bytes()
    lines = read_metrics(path)
    whole = [ln for ln in raw.split(b"\n")[:-1]]
    assert all(json.loads(ln) for ln in whole), "every complete line parses"
    assert [m["step"] for m in lines] == list(range(len(lines)))
    assert killed_at - lines[-1]["time"] < 2.5, f"last line {killed_at - lines[-1]['time']:.2f} s before the kill"
    # a writer after a torn line starts on a new line: simulate one
    with open(path, "ab") as f:
        f.write(b'{"step": 99, "bat')
    with ShardLoader(TokenShardDataset(tmp_path, seq_len=4), batch_size=1, run="killed") as loader:
        next(iter(loader))
        loader.log(100, loss=2.0)
    again = read_metrics(path)
    assert again[-1]["step"] == 100 and len(again) == len(lines) + 1


def test_trace_command_prints_json_and_errors_exit_2(tmp_path):
    make_version(tmp_path)
    with ShardLoader(TokenShardDataset(tmp_path, seq_len=8, seed=2), batch_size=2, run="cli") as loader:
        for i, _ in enumerate(loader):
            loader.log(i + 10, loss=1.0)
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR)
    cmd = [sys.executable, "-m", "smelt_data.trace", str(tmp_path), "cli"]
    out = subprocess.run(cmd + ["--batch", "3", "--step", "12", "--excerpt-tokens", "2"], env=env, capture_output=True)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["run_id"] == "cli" and got["rank"] == 0
    b3, s12 = got["batches"]
    assert (b3["batch"], b3["step"], s12["batch"], s12["step"]) == (3, 13, 2, 12)
    d = b3["samples"][0]["docs"][0]
    assert {"shard", "path", "row_group", "row", "id", "n_tokens", "from", "to", "columns", "excerpt_ids"} <= set(d)
    assert len(d["excerpt_ids"]) <= 2
    for bad, msg in ((["--batch", "100000"], b"past the end"), (["--rank", "3", "--batch", "0"], b"no rank 3"),
                     (["--batch", "-1"], b"negative")):
        out = subprocess.run(cmd + bad, env=env, capture_output=True)
        assert out.returncode == 2 and msg in out.stderr and out.stdout == b"", (bad, out.stderr)
    out = subprocess.run([sys.executable, "-m", "smelt_data.trace", str(tmp_path), "nope", "--batch", "0"], env=env,
                         capture_output=True)
    assert out.returncode == 2 and b"no training run 'nope'" in out.stderr


def test_trace_imports_neither_torch_nor_the_loader(tmp_path):
    code = ("import sys; import smelt_data.trace; "
            "assert 'torch' not in sys.modules and 'smelt_data.dataset' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=PYTHON_DIR), check=True)


MLFLOW_CLIENT = r"""
import sys
sys.path.insert(0, sys.argv[3])
import mlflow
from smelt_data import ShardLoader, TokenShardDataset
mlflow.set_tracking_uri(sys.argv[2])
mlflow.set_experiment("smelt-test")
with mlflow.start_run() as r:
    with ShardLoader(TokenShardDataset(sys.argv[1], seq_len=8), batch_size=2, run="mlflow-run") as loader:
        for i, _ in enumerate(loader):
            loader.log(i, loss=1.0)
    print("MLFLOW_RUN_ID=" + r.info.run_id, flush=True)
"""


def test_mlflow_gets_the_dataset_input_and_tags(tmp_path):
    url = os.environ.get("SMELT_MLFLOW_URL")
    if not url:
        pytest.skip("SMELT_MLFLOW_URL is unset: start a server with `eval \"$(.ci/mlflow-up.sh)\"` to run this test")
    python = os.environ.get("SMELT_MLFLOW_PYTHON", sys.executable)
    has = subprocess.run([python, "-c", "import mlflow"], capture_output=True)
    assert has.returncode == 0, (f"{python} has no mlflow: pip install mlflow-skinny==3.17.2 into it "
                                 "(or set SMELT_MLFLOW_PYTHON=target/mlflow-venv/bin/python)")
    make_version(tmp_path)
    out = subprocess.run([python, "-W", "error::RuntimeWarning:smelt_data.runs", "-c", MLFLOW_CLIENT, str(tmp_path), url,
                          PYTHON_DIR], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "smelt_data" not in out.stderr, out.stderr
    mlflow_run = [ln for ln in out.stdout.splitlines() if ln.startswith("MLFLOW_RUN_ID=")][0].split("=", 1)[1]
    with urllib.request.urlopen(f"{url}/api/2.0/mlflow/runs/get?run_id={mlflow_run}", timeout=30) as r:
        run = json.load(r)["run"]
    tags = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
    assert (tags["smelt.dataset"], tags["smelt.version"], tags["smelt.run_id"]) == ("toy", "1", "mlflow-run")
    inputs = run["inputs"]["dataset_inputs"]
    assert len(inputs) == 1
    d = inputs[0]["dataset"]
    assert d["name"] == "toy@1" and d["digest"] == ("blake3:" + "ef" * 32)[:36]
    assert d["source_type"] == "local" and json.loads(d["source"])["uri"].endswith("_versions/000001.json")
    ctx = {t["key"]: t["value"] for t in inputs[0].get("tags", [])}
    assert ctx["mlflow.data.context"] == "training"
