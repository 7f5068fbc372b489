"""ShardLoader: a TokenShardDataset's batches from worker processes through a ring of shared buffers.

torch's DataLoader moves every batch a worker makes into a fresh shared-memory tensor,
pickles a handle to it through a queue and rebuilds the tensor in the training process:
a fixed cost per batch that caps one worker at a fraction of what the dataset itself
produces. Here each worker owns ``ring`` batch buffers in memory shared with the training
process (mapped before the worker is forked), writes batches into them in place, and
sends 24 bytes per batch (slot, epoch, samples) through a pipe; the training process
answers with the slots it has finished with. Nothing is copied or pickled on the way.

::

    worker w (forked) ──fill slot k──► ring w [ring x batch x (seq_len + 1)] ──(k, epoch, n)──► training process
                      ◄──────────────────────── release k (after `hold` more batches) ─────────┘

The order is the DataLoader's: batch j comes from worker j % workers, and workers whose epoch is
over leave the rotation, which goes on with the next worker (torch's DataLoader deals its tasks
to the live workers cyclically), so state and resumption follow the dataset's own rules.

The loader records the training run (``run=``, :mod:`smelt_data.runs`): its rank file at the first
iteration and at each jump, and the metrics given to :meth:`ShardLoader.log`.
"""

from __future__ import annotations

import mmap
import multiprocessing as mp
import struct
import traceback
import warnings
from collections import deque
from typing import Deque, Dict, List, Optional, Tuple

import numpy as np

from .dataset import TokenShardDataset, torch
from .runs import Recorder, resolve_run

_BATCH = struct.Struct("<qqq")  # slot, epoch, samples; slot -1: the epoch is over; -2: an error follows
_SLOT = struct.Struct("<q")  # a released slot; -1: stop


class LoaderWorkerError(RuntimeError):
    """A loader worker failed or died; the message carries its traceback or exit code."""


def _worker_main(ds: TokenShardDataset, worker: int, workers: int, epoch: int, skip: int, slots: np.ndarray, conn):
    """Fills ``slots`` with this worker's batches, epoch after epoch, until told to stop."""
    try:
        free: Deque[int] = deque(range(len(slots)))

        def released(raw: bytes) -> None:
            (slot,) = _SLOT.unpack(raw)
            if slot < 0:
                raise SystemExit(0)
            free.append(slot)

        def buffer() -> Tuple[int, np.ndarray]:
            while conn.poll():
                released(conn.recv_bytes())
            while not free:
                released(conn.recv_bytes())
            slot = free.popleft()
            return slot, slots[slot]

        consumers = ds.world_size * workers
        consumer = ds.rank * workers + worker
        while True:
            ds.epoch = epoch
            for slot, n in ds.fill_batches(consumer, consumers, skip, buffer):
                conn.send_bytes(_BATCH.pack(slot, epoch, n))
            conn.send_bytes(_BATCH.pack(-1, epoch, 0))
            epoch, skip = epoch + 1, 0
    except SystemExit:
        pass
    except (EOFError, BrokenPipeError):  # the training process went away
        pass
    except BaseException:  # noqa: BLE001 - reported to the training process, which raises it
        try:
            conn.send_bytes(_BATCH.pack(-2, epoch, 0))
            conn.send_bytes(traceback.format_exc().encode())
        except Exception:  # noqa: BLE001
            pass


class _Worker:
    def __init__(self, ring: np.ndarray):
        self.ring = ring
        self.views = [torch.from_numpy(s) for s in ring] if torch is not None else list(ring)
        self.proc = None
        self.conn = None


class ShardLoader:
    """Batches ``[batch_size, seq_len + 1]`` of a :class:`TokenShardDataset`, made by worker
    processes and handed over through shared buffers (torch tensors when torch is installed).

    Args:
        dataset: the dataset (its rank, world size, seed, seq_len, dtype and epoch are used;
            its ``batch_size`` and ``num_workers`` are set to this loader's).
        batch_size: samples per batch; the last batch of a worker's epoch may be smaller.
        num_workers: worker processes (at least 1), each with its own ring.
        ring: batch buffers per worker; the worker runs up to ``ring - hold`` batches ahead.
        hold: a CPU batch stays valid until ``hold`` more batches have been taken; copy it (or
            move it to the GPU) before then. With ``device``, slots are released once their copy
            to the device has finished, and the batches given are the device's own tensors.
        device: e.g. ``"cuda"``: batches are copied there (asynchronously from page-locked
            buffers when ``pin_memory``) and the device tensor is yielded.
        pin_memory: page-lock the rings (``cudaHostRegister``) so that copies to the GPU are DMA.
        timeout: seconds to wait for one batch before raising (None: wait as long as the worker lives).
        run: the training run to record (``ROOT/_training/<run id>/``, :mod:`smelt_data.runs`): None
            (default) records under ``SMELT_TRAIN_RUN``, else ``TORCHELASTIC_RUN_ID``, else a generated id;
            a string is the run id; a dict ``{"id": ..., "name": ..., "params": {...}}`` adds a name and
            the user's parameters (model, lr, ...); False records nothing. Recording never stops training:
            write errors are one warning.

    Iterating gives one epoch; the workers stay and go on into the next epoch while the
    training loop finishes this one, so ``for epoch ...: for batch in loader`` never waits for a
    start. ``set_epoch`` / ``load_state_dict`` choose where the next iteration begins.
    ``batches`` counts the batches yielded over the whole run (``state_dict`` carries it);
    ``log(step, loss=...)`` records metrics against it.
    Workers are forked (Linux, macOS): the rings are mapped before the fork.
    """

    def __init__(self, dataset: TokenShardDataset, batch_size: int, num_workers: int = 1, ring: int = 8, hold: int = 2,
                 device=None, pin_memory: bool = False, timeout: Optional[float] = None, run=None):
        if batch_size < 1 or num_workers < 1:
            raise ValueError("batch_size and num_workers must be positive")
        if not 1 <= hold < ring:
            raise ValueError(f"hold must be in 1..ring-1 (ring {ring}), not {hold}")
        if "fork" not in mp.get_all_start_methods():
            raise RuntimeError("ShardLoader forks its workers; this platform cannot fork (use torch's DataLoader)")
        self.ds, self.batch_size, self.num_workers = dataset, batch_size, num_workers
        self.ring_size, self.hold, self.timeout = ring, hold, timeout
        dataset.batch_size, dataset.num_workers = batch_size, num_workers
        self.device = torch.device(device) if device is not None and torch is not None else device
        if device is not None and torch is None:
            raise RuntimeError("device= needs torch")
        self.pin_memory = pin_memory
        shape = (ring, batch_size, dataset.seq_len + 1)
        nbytes = int(np.prod(shape)) * dataset.dtype.itemsize
        # MAP_SHARED | MAP_ANONYMOUS: inherited by the forked workers, gone when every process unmaps it.
        self._maps = [mmap.mmap(-1, nbytes) for _ in range(num_workers)]
        self._workers = [_Worker(np.frombuffer(m, dtype=dataset.dtype).reshape(shape)) for m in self._maps]
        self._pinned = False
        self._epoch = dataset.epoch  # epoch of the next batch to hand out
        self._skip: Dict[int, int] = dict(dataset._resume)  # consumer -> samples to skip in _epoch
        self._taken: Dict[int, int] = {}  # consumer -> samples handed out in _epoch
        self._held: Deque[tuple] = deque()  # (worker, slot, cuda event or None), oldest first
        self._pending: List[Optional[tuple]] = [None] * num_workers  # a next-epoch batch read while ending one
        spec = resolve_run(run)
        self._rec = Recorder(spec, dataset, batch_size, num_workers, "ShardLoader") if spec is not None else None
        self.batches = 0  # batches yielded over the whole run (continued by load_state_dict)
        self._samples = 0  # samples yielded over the whole run
        self._last_epoch = dataset.epoch  # epoch of the last batch yielded
        self._jumped = True  # the next iteration starts where the plan alone does not say: record a segment

    @property
    def run_id(self) -> Optional[str]:
        """The recorded run's id (None with ``run=False``)."""
        return self._rec.run_id if self._rec is not None else None

    def log(self, step, **metrics) -> None:
        """Records ``metrics`` (numbers: loss, lr, ...) for training step ``step`` against the batches
        yielded so far: one line of ``metrics-RRRRR.jsonl``, written within 2 s. Costs about a list
        append; never raises for I/O."""
        if self._rec is not None:
            self._rec.log(step, self.batches, self._last_epoch, self._samples * self.ds.seq_len, metrics)

    # ----- workers -----

    def _consumer(self, w: int) -> int:
        return self.ds.rank * self.num_workers + w

    def _position(self) -> Dict[int, int]:
        """Samples of ``_epoch`` each consumer has given the training loop."""
        return {c: self._skip.get(c, 0) + self._taken.get(c, 0) for c in set(self._skip) | set(self._taken)}

    def _start(self) -> None:
        """(Re)starts the workers where the training loop is: nothing it has taken is given again."""
        self._stop()
        self._unpin()
        self._skip, self._taken = self._position(), {}
        ctx = mp.get_context("fork")
        for w, wk in enumerate(self._workers):
            parent, child = ctx.Pipe(duplex=True)
            skip = self._skip.get(self._consumer(w), 0)
            wk.proc = ctx.Process(target=_worker_main, args=(self.ds, w, self.num_workers, self._epoch, skip, wk.ring, child),
                                  daemon=True, name=f"smelt-loader-{w}")
            wk.proc.start()
            child.close()
            wk.conn = parent
        self._pin()  # after the fork: page-locked ranges are not inherited (MADV_DONTFORK)
        self._held.clear()
        self._pending = [None] * self.num_workers

    def _stop(self) -> None:
        for wk in self._workers:
            if wk.proc is None:
                continue
            try:
                wk.conn.send_bytes(_SLOT.pack(-1))
            except (OSError, ValueError):
                pass
            wk.proc.join(timeout=2)
            if wk.proc.is_alive():
                wk.proc.kill()
                wk.proc.join()
            wk.conn.close()
            wk.proc = wk.conn = None

    def _pin(self) -> None:
        if not self.pin_memory or torch is None or not torch.cuda.is_available() or self._pinned:
            return
        cudart = torch.cuda.cudart()
        done = []
        for wk in self._workers:
            err = cudart.cudaHostRegister(wk.ring.ctypes.data, wk.ring.nbytes, 0)
            if int(err) != 0:
                for ptr in done:
                    cudart.cudaHostUnregister(ptr)
                warnings.warn(f"cudaHostRegister of the loader's buffers failed ({err}): "
                              "copies to the GPU will not be asynchronous", RuntimeWarning, stacklevel=3)
                self.pin_memory = False
                return
            done.append(wk.ring.ctypes.data)
        self._pinned = True

    def _unpin(self) -> None:
        if self._pinned:
            for wk in self._workers:
                torch.cuda.cudart().cudaHostUnregister(wk.ring.ctypes.data)
            self._pinned = False

    def close(self) -> None:
        """Stops the workers and unmaps the rings (also done when the loader is collected)."""
        self._stop()
        self._unpin()
        if self._rec is not None:
            self._rec.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    # ----- receiving -----

    def _recv(self, w: int) -> tuple:
        if self._pending[w] is not None:
            msg, self._pending[w] = self._pending[w], None
            return msg
        wk = self._workers[w]
        waited = 0.0
        while not wk.conn.poll(1.0):
            waited += 1.0
            if not wk.proc.is_alive():
                raise LoaderWorkerError(f"loader worker {w} died (exit code {wk.proc.exitcode}) without a batch")
            if self.timeout is not None and waited >= self.timeout:
                raise LoaderWorkerError(f"loader worker {w} gave no batch in {self.timeout} s")
        try:
            msg = _BATCH.unpack(wk.conn.recv_bytes())
        except (EOFError, OSError):
            raise self._died(w) from None
        if msg[0] == -2:
            tb = wk.conn.recv_bytes().decode(errors="replace")
            self._stop()
            raise LoaderWorkerError(f"loader worker {w} failed:\n{tb}")
        return msg

    def _died(self, w: int) -> LoaderWorkerError:
        proc = self._workers[w].proc
        proc.join(timeout=5)  # reap it, for the exit code
        return LoaderWorkerError(f"loader worker {w} died (exit code {proc.exitcode})")

    def _release_oldest(self) -> None:
        w, slot, event = self._held.popleft()
        if event is not None:
            event.synchronize()  # the slot's copy to the device has finished
        try:
            self._workers[w].conn.send_bytes(_SLOT.pack(slot))
        except OSError:
            raise self._died(w) from None

    # ----- iteration and state -----

    def set_epoch(self, epoch: int) -> None:
        """The next iteration gives ``epoch`` from its start (workers restart unless already there)."""
        if epoch != self._epoch or self._taken or self._skip:
            self._epoch, self._skip, self._taken = epoch, {}, {}
            self._stop()
            self._jumped = True
        self.ds.epoch = epoch

    def __iter__(self):
        if any(wk.proc is None or not wk.proc.is_alive() for wk in self._workers):
            self._start()
        epoch = self._epoch
        position = self._position()
        if self._rec is not None and (self._jumped or any(position.values())):
            # Not the start of the epoch after a finished one: where it starts is recorded.
            taken = {self._consumer(w): position.get(self._consumer(w), 0) for w in range(self.num_workers)}
            self._rec.segment(self.batches, epoch, taken)
        elif self._rec is not None:
            self._rec.reached(epoch)
        self._jumped = False
        active = list(range(self.num_workers))
        p = 0  # position in active of the worker whose turn it is
        while active:
            w = active[p]
            slot, got_epoch, n = self._recv(w)
            if slot == -1 or got_epoch != epoch:
                if slot != -1:  # its end marker was read by an iteration the loop left early
                    self._pending[w] = (slot, got_epoch, n)
                del active[p]  # the rotation goes on with the next worker
                if active:
                    p %= len(active)
                continue
            while len(self._held) >= self.hold:
                self._release_oldest()
            view = self._workers[w].views[slot]
            batch = view if n == self.batch_size else view[:n]
            event = None
            if self.device is not None:
                batch = batch.to(self.device, non_blocking=self._pinned)
                if self.device.type == "cuda":
                    event = torch.cuda.Event()
                    event.record()
            self._held.append((w, slot, event))
            c = self._consumer(w)
            self._taken[c] = self._taken.get(c, 0) + n
            p = (p + 1) % len(active)
            self.batches += 1
            self._samples += n
            self._last_epoch = epoch
            if self._rec is not None:
                self._rec.tick()
            yield batch
        self._epoch, self._skip, self._taken = epoch + 1, {}, {}
        self.ds.epoch = epoch + 1

    def state_dict(self) -> dict:
        """Where this rank is: the dataset's state format (``load_state_dict`` of either takes it)."""
        self.ds.epoch, self.ds._taken = self._epoch, self._position()
        return dict(self.ds.state_dict(), batches=self.batches, samples=self._samples)

    def load_state_dict(self, state: dict) -> None:
        """Resumes where ``state`` stopped: the next batches are the ones that followed, and the
        global batch counter goes on from the state's ``batches`` (0 for states saved without it)."""
        self.ds.load_state_dict(state)
        self._stop()
        self._epoch, self._skip, self._taken = self.ds.epoch, dict(self.ds._resume), {}
        self.batches = int(state.get("batches", 0))
        self._samples = int(state.get("samples", self.batches * self.batch_size))
        self._last_epoch = self._epoch
        self._jumped = True
