"""The law of position restraints, shared by the backends (periodic minimum image included)."""

from __future__ import annotations

import numpy as np
from numba import njit

from bencao.backends.common.periodic import minimum_image


@njit(cache=True, inline="always")
def position_restraint(dx, dy, dz, k, box, periodic):
    """E = 1/2 k |x - x0|^2 of one restrained particle, through the minimum image.

    Parameters
    ----------
    dx, dy, dz : float
        x - x0, the particle's position minus its reference position, nm.
    k : float
        Force constant, kJ/mol/nm^2.
    box : (3, 3) float64 array
        Box vectors as rows, reduced form, nm (ignored unless ``periodic``).
    periodic : bool
        Take the displacement to the nearest periodic image of the reference.

    Returns
    -------
    tuple of float
        (E [kJ/mol], Fx, Fy, Fz [kJ/mol/nm]), the force on the particle.
    """
    dx, dy, dz = minimum_image(dx, dy, dz, box, periodic)
    energy = 0.5 * k * (dx * dx + dy * dy + dz * dz)
    return energy, -k * dx, -k * dy, -k * dz


def restraint_tables(term):
    """A ``PositionRestraints`` term as the kernels take it: C-contiguous (M,) int64 atoms,
    (M, 3) float64 reference positions (nm) and (M,) float64 force constants (kJ/mol/nm^2).

    Raises
    ------
    ValueError
        If the three do not have one entry per restrained particle.
    """
    atoms = np.ascontiguousarray(np.asarray(term.atoms, dtype=np.int64).reshape(-1))
    reference = np.ascontiguousarray(np.asarray(term.reference, dtype=np.float64).reshape(-1, 3))
    k = np.ascontiguousarray(np.asarray(term.k, dtype=np.float64).reshape(-1))
    if not (len(atoms) == len(reference) == len(k)):
        raise ValueError("position restraints need one reference position and k per particle")
    return atoms, reference, k
