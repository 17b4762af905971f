"""The law of position restraints, shared by the backends (periodic minimum image included)."""

from __future__ import annotations

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
