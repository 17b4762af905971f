"""Background load for benchmarks: busy processes beside the engines being timed.

Desktops and shared nodes are never idle, and ensembles put several replicas on one node.  An
engine whose threads wait for each other by spinning, or that splits every loop evenly between
its threads, slows down far more than in proportion when another process takes part of one
core.  ``bencao bench --background-load N`` times the engines with N such processes running,
each a tight arithmetic loop that never sleeps (one core's worth of demand each).
"""

from __future__ import annotations

import contextlib
import multiprocessing


def _spin() -> None:
    """Burn one core until terminated."""
    x = 0
    while True:
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF


@contextlib.contextmanager
def background_load(processes: int):
    """Run ``processes`` busy processes for the duration of the ``with`` block.

    Parameters
    ----------
    processes : int
        Number of busy processes (0: none).
    """
    if processes < 0:
        raise ValueError(f"--background-load must be 0 or more processes, not {processes}")
    # "spawn": a fresh interpreter, which neither inherits the benchmark's threads nor its
    # Numba state (forking a process with a running OpenMP pool is undefined behaviour)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_spin, daemon=True) for _ in range(processes)]
    for worker in workers:
        worker.start()
    try:
        yield
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.join()
