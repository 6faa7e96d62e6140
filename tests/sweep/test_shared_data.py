"""The dataset reaches worker processes through shared memory. Pickling a tensor for another
process swaps its storage for a shared copy and frees the old one; if that happened in the
pool's feeder thread, a driver thread reading the tensors at the same moment (hashing the
data's fingerprint while a resumed sweep looks up its stored trials) read freed memory and the
driver died of SIGSEGV. So the executor shares the data in the submitting thread, first."""

from __future__ import annotations

from concurrent.futures import Future
from multiprocessing.reduction import ForkingPickler

import torch
import torch.multiprocessing  # noqa: F401  (registers the tensor reductions with ForkingPickler)

from depthlab.data.dataset import Dataset
from depthlab.sweep.executors import ProcessExecutor


def tiny_dataset() -> Dataset:
    g = torch.Generator().manual_seed(0)
    return Dataset(
        "tiny",
        torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8, generator=g),
        torch.randint(0, 10, (64,), generator=g),
        torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8, generator=g),
        torch.randint(0, 10, (16,), generator=g),
        (0.5,),
        (0.25,),
    )


def tensors(data: Dataset) -> tuple[torch.Tensor, ...]:
    return data.train_x, data.train_y, data.test_x, data.test_y


class RecordingPool:
    """Stands in for the process pool: notes whether the data was shared when it was handed over."""

    def __init__(self):
        self.shared_on_arrival: list[bool] = []

    def submit(self, fn, trials, data, checkpoint):
        self.shared_on_arrival.append(all(t.is_shared() for t in tensors(data)))
        return Future()


def test_the_data_is_in_shared_memory_before_the_pool_sees_it(monkeypatch):
    pool, data = RecordingPool(), tiny_dataset()
    executor = ProcessExecutor(workers=1)
    monkeypatch.setattr(executor, "_ensure_pool", lambda: pool)
    assert not any(t.is_shared() for t in tensors(data))
    executor.submit([], data)
    executor.submit([], data)
    assert pool.shared_on_arrival == [True, True]


def test_after_submit_pickling_for_a_worker_leaves_the_tensors_where_they_are(monkeypatch):
    data = tiny_dataset()
    fingerprint = data.fingerprint()
    executor = ProcessExecutor(workers=1)
    monkeypatch.setattr(executor, "_ensure_pool", lambda: RecordingPool())
    executor.submit([], data)
    before = [t.data_ptr() for t in tensors(data)]
    ForkingPickler.dumps(data)  # what the pool's feeder thread does with every job
    assert [t.data_ptr() for t in tensors(data)] == before  # nothing freed under a concurrent reader
    data._fingerprint = None
    assert data.fingerprint() == fingerprint  # sharing moved the bytes, not changed them
