"""Numba's on-disk cache for loops built around a law (a closure over an ``@njit`` function).

Why not ``cache=True`` on the closure: Numba keys the cache entry of a closure by
pickling the values it closes over, and a dispatcher pickles with a UUID drawn afresh in every
process, so a fresh process never found the entry and added another one (checked: with
``cache=True`` on the closure, ``kernel.stats.cache_hits`` stayed empty run after run and the
``__pycache__`` gained a ``.nbc`` file per run).  :class:`_LawLoopCache` keys the entry by the
source of the modules the loop's code comes from instead, so a fresh process loads it, and
editing a law compiles afresh.
"""

from __future__ import annotations

import hashlib
import inspect
import sys

from numba import njit
from numba.core.caching import FunctionCache

from bencao.backends.common import fixed_point
from bencao.backends.common.laws import geometry


class _LawLoopCache(FunctionCache):
    """Numba's on-disk cache of a loop built for a law, keyed by source (see the module notes).

    Parameters
    ----------
    py_func : function
        The loop (a closure over the law).
    fingerprint : str
        Hash of the source the loop's compiled code depends on beyond its own file (whose
        changes Numba already detects).
    """

    def __init__(self, py_func, fingerprint: str):
        super().__init__(py_func)
        self._fingerprint = fingerprint

    def _index_key(self, sig, codegen):
        # Numba's own key, with the fingerprint in place of the pickled closure.
        code = hashlib.sha256(self._py_func.__code__.co_code).hexdigest()
        return (sig, codegen.magic_tuple(), (code, self._fingerprint))


def _fingerprint(law) -> str | None:
    """Hash of the law's name and the source of its module, the geometry and the fixed point;
    None if a source cannot be read (then the loop is not cached)."""
    names = sorted({law.py_func.__module__, geometry.__name__, fixed_point.__name__})
    digest = hashlib.sha256(law.py_func.__qualname__.encode())
    try:
        for name in names:
            digest.update(inspect.getsource(sys.modules[name]).encode())
    except (OSError, TypeError, KeyError):
        return None
    return digest.hexdigest()


def compiled_law_loop(loop, law, **options):
    """``njit(loop, **options)``, a loop built for ``law``, with its on-disk cache keyed by
    source (:class:`_LawLoopCache`) so that a fresh process loads it."""
    # IEEE arithmetic in the loop too (the law is inlined into it): 1/0 is inf, as in OpenMM.
    kernel = njit(loop, **{"error_model": "numpy", **options})
    fingerprint = _fingerprint(law)
    if fingerprint is not None:
        kernel._cache = _LawLoopCache(kernel.py_func, fingerprint)
    return kernel


