"""3-vectors as tuples, written with operators alone.

They serve the laws written once for every backend (``constraint_laws``): on float64 scalars
(the CPU's scalar code, CUDA device functions) and, unchanged, on the CPU's 8-lane vectors
(:mod:`bencao.backends.cpu.lanes8`), where each lane holds one item.
"""

from __future__ import annotations

import math

from numba import njit


@njit(cache=True)
def sub(a, b):
    """a - b."""
    return a[0] - b[0], a[1] - b[1], a[2] - b[2]


@njit(cache=True)
def scale(a, s):
    """a * s for a number (or vector of lanes) s."""
    return a[0] * s, a[1] * s, a[2] * s


@njit(cache=True)
def dot(a, b):
    """a . b, summed x, y, z in that order."""
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


@njit(cache=True)
def cross(a, b):
    """a x b."""
    return a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]


@njit(cache=True)
def normalized(a):
    """(a / |a|, |a|); a zero vector gives NaNs, which the caller detects through |a|."""
    norm = math.sqrt(dot(a, a))
    return scale(a, 1.0 / norm), norm
