"""Fixed-point force accumulation (Anton's determinism): int64 sums do not depend on order.

Every CPU kernel adds its forces into an (N, 3) int64 array with :func:`add_force`; the sum of
integers is exact, so the result is the same on any number of threads and in any order.
"""

import numpy as np
from numba import njit

from bencao.constants import FORCE_CLAMP, FORCE_SCALE


@njit(cache=True, inline="always")
def to_fixed(value):
    """Convert one force component (kJ/mol/nm, float32 or float64) to int64 fixed point.

    Values beyond +-FORCE_CLAMP are clamped so the conversion never overflows; the backend
    detects clamped forces and reports a blow-up.
    """
    # min/max compile to branch-free instructions; a NaN comes out as a bound, and the energy,
    # which carries the NaN, makes the backend report the blow-up.
    v = min(max(np.float64(value), -FORCE_CLAMP), FORCE_CLAMP)
    return np.int64(v * FORCE_SCALE)


@njit(cache=True, inline="always")
def add_force(forces, i, fx, fy, fz):
    """Add the force (fx, fy, fz) in kJ/mol/nm on particle i to the int64 accumulator."""
    forces[i, 0] += to_fixed(fx)
    forces[i, 1] += to_fixed(fy)
    forces[i, 2] += to_fixed(fz)


def forces_from_fixed(forces_fixed: np.ndarray) -> np.ndarray:
    """Convert an (N, 3) int64 accumulator to float64 forces in kJ/mol/nm."""
    return forces_fixed.astype(np.float64) * (1.0 / FORCE_SCALE)
