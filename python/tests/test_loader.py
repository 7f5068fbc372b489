"""ShardLoader: the dataset's batches through worker processes and shared rings, in the
DataLoader's order (batch j from worker j % workers), across epochs, resumable mid-epoch."""

import numpy as np
import pytest

from smelt_data import LoaderWorkerError, ShardLoader, TokenShardDataset
from test_dataset import write_version


def as_lists(batches):
    return [np.asarray(b).tolist() for b in batches]


def expected_batches(root, epoch, workers, batch, **kw):
    """What torch's DataLoader would give: worker w's batches, taken round-robin; a worker whose
    epoch is over leaves the rotation, which goes on with the next worker (its tasks are dealt
    cyclically to the live workers)."""
    per = []
    for w in range(workers):
        ds = TokenShardDataset(root, batch_size=batch, epoch=epoch, **kw)
        per.append([np.asarray(b).tolist() for b in ds.iter_worker(w, workers)])
    out = []
    for r in range(max(len(p) for p in per)):
        out.extend(p[r] for p in per if r < len(p))
    return out


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_batches_are_the_dataloaders_in_order_over_epochs(tmp_path, workers):
    write_version(tmp_path, [60, 45, 30], row_group=7)
    kw = dict(seed=3, seq_len=8)
    with ShardLoader(TokenShardDataset(tmp_path, **kw), batch_size=4, num_workers=workers, ring=3, hold=1) as loader:
        for epoch in range(3):  # the workers run on into the next epoch; no restart between epochs
            got = [np.asarray(b).copy().tolist() for b in loader]
            assert got == expected_batches(tmp_path, epoch, workers, 4, **kw)
            assert len(got) > 5


def test_a_batch_stays_valid_while_held(tmp_path):
    write_version(tmp_path, [80], row_group=5)
    with ShardLoader(TokenShardDataset(tmp_path, seq_len=4), batch_size=2, ring=3, hold=2) as loader:
        it = iter(loader)
        first = next(it)
        snapshot = np.asarray(first).copy()
        second = next(it)  # one more batch taken: `first` is still held
        assert (np.asarray(first) == snapshot).all()
        assert not (np.asarray(second) == snapshot).all()


def test_resume_mid_epoch_gives_exactly_the_rest(tmp_path):
    write_version(tmp_path, [50, 50], row_group=6)
    kw = dict(seed=9, seq_len=8)
    with ShardLoader(TokenShardDataset(tmp_path, **kw), batch_size=3, num_workers=2) as loader:
        full = [np.asarray(b).copy().tolist() for b in loader]
    with ShardLoader(TokenShardDataset(tmp_path, **kw), batch_size=3, num_workers=2) as loader:
        it = iter(loader)
        head = [np.asarray(next(it)).copy().tolist() for _ in range(5)]
        state = loader.state_dict()
    assert head == full[:5]
    assert state["taken"] == {"0": 9, "1": 6}  # 3 batches from worker 0, 2 from worker 1
    ds = TokenShardDataset(tmp_path, **kw)
    with ShardLoader(ds, batch_size=3, num_workers=2) as resumed:
        resumed.load_state_dict(state)
        rest = [np.asarray(b).copy().tolist() for b in resumed]
        nxt = [np.asarray(b).copy().tolist() for b in resumed]  # then the next epoch from its start
    assert sorted(map(str, head + rest)) == sorted(map(str, full))
    assert len(head) + len(rest) == len(full)
    assert nxt == expected_batches(tmp_path, 1, 2, 3, **kw)


def test_ranks_share_every_sample_once(tmp_path):
    write_version(tmp_path, [40, 40, 40, 40], row_group=5)
    seen = []
    for rank in range(2):
        with ShardLoader(TokenShardDataset(tmp_path, seq_len=6, rank=rank, world_size=2), batch_size=4,
                         num_workers=2) as loader:
            seen += [tuple(r) for b in loader for r in np.asarray(b).tolist()]
    assert len(seen) == len(set(seen))
    ds = TokenShardDataset(tmp_path, seq_len=6)
    assert set(seen) == {tuple(s.tolist()) for c in range(4) for s in ds._samples(c, 4, 0)}


def test_int32_batches(tmp_path):
    write_version(tmp_path, [30], row_group=5)
    with ShardLoader(TokenShardDataset(tmp_path, seq_len=5, dtype="int32"), batch_size=2) as loader:
        b = next(iter(loader))
        assert np.asarray(b).dtype == np.int32 and tuple(b.shape) == (2, 6)


def test_a_worker_error_is_raised_with_its_traceback(tmp_path):
    write_version(tmp_path, [30, 30], row_group=5)
    ds = TokenShardDataset(tmp_path, seq_len=4, shuffle=False)
    shard = tmp_path / "data" / "v1" / "part-00001.parquet"
    data = shard.read_bytes()
    shard.write_bytes(data[:4] + b"\0" * (len(data) - 8) + data[-4:])  # pages destroyed, footer kept
    with ShardLoader(ds, batch_size=2) as loader:
        with pytest.raises(LoaderWorkerError, match="loader worker 0 failed"):
            for _ in loader:
                pass


def test_bad_arguments(tmp_path):
    write_version(tmp_path, [10])
    ds = TokenShardDataset(tmp_path, seq_len=4)
    with pytest.raises(ValueError, match="hold"):
        ShardLoader(ds, batch_size=2, ring=2, hold=2)
    with pytest.raises(ValueError, match="positive"):
        ShardLoader(ds, batch_size=0)
    with pytest.raises(ValueError, match="dtype"):
        TokenShardDataset(tmp_path, dtype="float32")


@pytest.mark.parametrize("prefetch", [0, 1, 3, 20])
def test_read_ahead_does_not_change_the_samples(tmp_path, prefetch):
    write_version(tmp_path, [40, 35, 20], row_group=4)
    base = [s.tolist() for s in TokenShardDataset(tmp_path, seq_len=5, seed=2, prefetch=0)._samples(0, 1, 0)]
    got = [s.tolist() for s in TokenShardDataset(tmp_path, seq_len=5, seed=2, prefetch=prefetch)._samples(0, 1, 0)]
    assert got == base and len(base) > 20
    resumed = [s.tolist() for s in TokenShardDataset(tmp_path, seq_len=5, seed=2, prefetch=prefetch)._samples(0, 1, 7)]
    assert resumed == base[7:]


def _torch():
    try:
        import torch as t
        return t
    except ImportError:
        return None


@pytest.mark.skipif(_torch() is None, reason="torch is not installed")
def test_batches_are_torch_tensors_and_go_to_the_gpu_when_asked(tmp_path):
    t = _torch()
    write_version(tmp_path, [60], row_group=5)
    with ShardLoader(TokenShardDataset(tmp_path, seq_len=6, seed=1), batch_size=4) as loader:
        cpu = [b.clone() for b in loader]
    assert all(isinstance(b, t.Tensor) and b.dtype == t.int64 for b in cpu)
    if not t.cuda.is_available():
        return
    with ShardLoader(TokenShardDataset(tmp_path, seq_len=6, seed=1), batch_size=4, device="cuda", pin_memory=True,
                     ring=3, hold=1) as loader:
        gpu = [b for b in loader]
        assert loader._pinned
    assert all(b.is_cuda for b in gpu)
    assert [b.cpu().tolist() for b in gpu] == [b.tolist() for b in cpu]


def test_a_killed_worker_is_reported_with_its_exit_code(tmp_path):
    import os
    import signal
    write_version(tmp_path, [200], row_group=5)
    with ShardLoader(TokenShardDataset(tmp_path, seq_len=4), batch_size=2, ring=2, hold=1) as loader:
        it = iter(loader)
        next(it)
        os.kill(loader._workers[0].proc.pid, signal.SIGKILL)
        with pytest.raises(LoaderWorkerError, match=r"died \(exit code -9\)"):
            for _ in it:
                pass


def test_set_epoch_after_a_resume_starts_that_epoch_from_its_start(tmp_path):
    write_version(tmp_path, [40, 40], row_group=5)
    kw = dict(seed=5, seq_len=6)
    with ShardLoader(TokenShardDataset(tmp_path, **kw), batch_size=3) as loader:
        it = iter(loader)
        next(it), next(it)
        state = loader.state_dict()
    with ShardLoader(TokenShardDataset(tmp_path, **kw), batch_size=3) as loader:
        loader.load_state_dict(state)
        loader.set_epoch(0)
        assert [np.asarray(b).tolist() for b in loader] == expected_batches(tmp_path, 0, 1, 3, **kw)


def test_iterating_again_after_a_dead_worker_neither_repeats_nor_loses_a_batch(tmp_path):
    import os
    import signal
    write_version(tmp_path, [200], row_group=5)
    kw = dict(seed=2, seq_len=4)
    with ShardLoader(TokenShardDataset(tmp_path, **kw), batch_size=2, ring=2, hold=1) as loader:
        full = [np.asarray(b).copy().tolist() for b in loader]
    with ShardLoader(TokenShardDataset(tmp_path, **kw), batch_size=2, ring=2, hold=1) as loader:
        got = []
        it = iter(loader)
        got += [np.asarray(next(it)).copy().tolist() for _ in range(3)]
        os.kill(loader._workers[0].proc.pid, signal.SIGKILL)
        with pytest.raises(LoaderWorkerError):
            for b in it:
                got.append(np.asarray(b).copy().tolist())
        got += [np.asarray(b).copy().tolist() for b in loader]  # workers restart where the loop is
    assert got == full
