"""Reproduce the driver crash behind docs/RELIABILITY.md, "A crash while sending data to workers".

A 47 MB uint8 tensor (MNIST's training images' size) is submitted to a spawn process pool while
this thread hashes it, as the driver hashed the data fingerprint. With ``unshared`` the pool's
feeder thread moves the tensor into shared memory while it is being read: expect SIGSEGV
(exit -11/139) within a few rounds. With ``shared`` (what `ProcessExecutor.submit` does now)
the tensor is shared first, in this thread, and every round finishes.

    python -X faulthandler benchmarks/shared_memory_race.py unshared 10
    python -X faulthandler benchmarks/shared_memory_race.py shared 10
"""

import hashlib
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor

import torch


def nothing(_) -> int:
    return 0


def main(mode: str, rounds: int) -> None:
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    pool.submit(nothing, 0).result()  # the worker is up: only the race is left to time
    for i in range(rounds):
        images = torch.randint(0, 256, (60000, 1, 28, 28), dtype=torch.uint8)
        if mode == "shared":
            images.share_memory_()
        done = pool.submit(nothing, images)
        hashlib.blake2b(images.numpy().data, digest_size=8).hexdigest()
        done.result()
        print(f"round {i + 1}: no crash", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
