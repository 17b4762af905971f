"""Periodic boundaries shared by the backends: the minimum image in a reduced triclinic box.

:func:`minimum_image` is a plain ``@njit`` function, so the CPU kernels inline it and the CUDA
backend compiles the same source for the GPU (``device_version`` in ``backends.cuda.common``).
The one operation the two targets spell differently is the floor: Numba's CPU ``math.floor``
returns an integer while its CUDA target has no ``np.floor``, so :func:`floor` is overloaded per
target (``np.floor`` on the CPU, exactly the instruction the CPU kernels always used; CUDA's
``math.floor``, which returns a float there) and is plain Python in Numba's CUDA simulator.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numba.extending import overload


def floor(x):
    """Largest integer not above ``x``, as a float in compiled code (CPU and CUDA).

    This Python body only runs in Numba's CUDA simulator, where kernels are plain Python (it
    returns an int there, which multiplies like the float it equals).
    """
    return math.floor(x)


@overload(floor, target="cpu")
def _floor_cpu(x):
    """``np.floor``: the float64 floor the CPU kernels have always used (bit for bit)."""
    return lambda x: np.floor(x)


@overload(floor, target="cuda")
def _floor_cuda(x):
    """CUDA's ``math.floor``, float64 in, float64 out (``np.floor`` does not compile there)."""
    return lambda x: math.floor(x)


@njit(cache=True, inline="always")
def minimum_image(dx, dy, dz, box, periodic):
    """Minimum-image displacement in a reduced triclinic box (OpenMM's convention).

    Parameters
    ----------
    dx, dy, dz : float
        Displacement, nm.
    box : (3, 3) float64 array
        Box vectors as rows in reduced form (a along x, b in the xy plane), nm.
    periodic : bool
        If False the displacement is returned unchanged.

    Returns
    -------
    tuple of float
        The displacement shifted by whole box vectors into the central cell, nm.
    """
    # Reduced form: c is the only vector with a z component, b the only other one with y, so
    # removing c, then b, then a brings each coordinate into range once.
    if periodic:
        s = floor(dz / box[2, 2] + 0.5)
        dx -= s * box[2, 0]
        dy -= s * box[2, 1]
        dz -= s * box[2, 2]
        s = floor(dy / box[1, 1] + 0.5)
        dx -= s * box[1, 0]
        dy -= s * box[1, 1]
        s = floor(dx / box[0, 0] + 0.5)
        dx -= s * box[0, 0]
    return dx, dy, dz
