"""examples/train/tiny_lm.py: a real (numpy) training loss, logged per step, that spikes on the
batches the trace says hold the planted garbage documents."""

import sys
from pathlib import Path

import numpy as np

from smelt_data.trace import batch_documents, read_metrics

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "train"
sys.path.insert(0, str(EXAMPLES))

import tiny_lm  # noqa: E402
import toy_version  # noqa: E402


def test_loss_is_higher_on_batches_holding_garbage(tmp_path):
    toy_version.write(tmp_path, docs=600, garbage=8, seed=1)
    out = tiny_lm.train(tmp_path, run_id="tiny", steps=500, quiet=True)
    assert out["steps"] == 500 and out["run_id"] == "tiny"
    assert out["last_loss"] < out["first_loss"] / 3, out
    lines = read_metrics(tmp_path / "_training" / "tiny" / "metrics-00000.jsonl")
    assert [m["step"] for m in lines] == list(range(500)) and all(m["lr"] == 0.01 for m in lines)
    loss = {m["step"]: m["loss"] for m in lines}
    steps = list(range(100, 500))  # after warm-up
    traced = batch_documents(tmp_path, "tiny", 0, steps=steps, excerpt_tokens=0)["batches"]
    junk_tokens = {b["step"]: sum(d["to"] - d["from"] for s in b["samples"] for d in s["docs"]
                                  if d["columns"]["source"] == "junk") for b in traced}
    junk = [s for s in steps if junk_tokens[s] >= 64]  # at least one sample's worth of garbage
    clean = [s for s in steps if junk_tokens[s] == 0]
    assert len(junk) >= 5 and len(clean) > 200
    assert np.mean([loss[s] for s in junk]) > 2 * np.mean([loss[s] for s in clean])
    worst = sorted(steps, key=lambda s: -loss[s])[:5]
    assert all(junk_tokens[s] > 0 for s in worst), [(s, loss[s], junk_tokens[s]) for s in worst]
