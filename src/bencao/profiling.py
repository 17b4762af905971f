"""Where a step's time goes: named phases timed around the compiled kernels.

The engine marks its phases (``with phase("pairs"): ...``); nothing is measured unless a
:func:`profiling` block is active, and then each phase's wall time is added up exclusively: time
spent in a nested phase counts for the inner one only.  Every CPU kernel is synchronous (Numba's
parallel regions finish before returning), so wall time around a call is the kernel's time.  GPU
kernels are not: a profile of the CUDA backend passes a ``synchronize`` that waits for the
device at the end of every phase, so each kernel's time lands in the phase that launched it
(at the price of the overlap a run without profiling gets).

Example
-------
>>> with profiling() as profile:
...     simulation.step(100)
>>> profile.seconds["pairs"]
"""

from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext

_NOTHING = nullcontext()


class PhaseProfile:
    """Exclusive wall time and call count per phase name.

    Attributes
    ----------
    seconds : dict[str, float]
        Exclusive wall time of each phase, s.
    calls : dict[str, int]
        How many times each phase was entered.
    """

    def __init__(self, synchronize=None):
        self.synchronize = synchronize
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._stack: list[list] = []  # [name, start, time of nested phases]

    @contextmanager
    def phase(self, name: str):
        """Time the enclosed block under ``name`` (minus the phases nested in it)."""
        entry = [name, time.perf_counter(), 0.0]
        self._stack.append(entry)
        try:
            yield
        finally:
            if self.synchronize is not None:
                self.synchronize()
            self._stack.pop()
            elapsed = time.perf_counter() - entry[1]
            self.seconds[name] = self.seconds.get(name, 0.0) + elapsed - entry[2]
            self.calls[name] = self.calls.get(name, 0) + 1
            if self._stack:
                self._stack[-1][2] += elapsed


_active: PhaseProfile | None = None


def phase(name: str):
    """A context manager timing ``name`` if a :func:`profiling` block is active, else nothing."""
    return _NOTHING if _active is None else _active.phase(name)


@contextmanager
def profiling(synchronize=None):
    """Collect phase timings for the enclosed block; yields the :class:`PhaseProfile`.

    Parameters
    ----------
    synchronize : callable or None
        Called at the end of every phase before the clock is read (``numba.cuda.synchronize``
        for the GPU, whose kernels return before they finish).
    """
    global _active
    previous, _active = _active, PhaseProfile(synchronize)
    try:
        yield _active
    finally:
        _active = previous
