"""PeriodicTorsionForce on the CPU: each torsion's terms as one Fourier series, 8 torsions at once.

The generic torsion loop (:mod:`bencao.backends.cpu.bonded`) takes the angle with ``acos``
and each term's ``cos`` and ``sin`` from the C library, one torsion at a time: DHFR's 7,310
terms took 0.43 ms on one thread.  Here, once per system, the terms of each atom quadruple
(5,682 in DHFR) are summed into one series,

    E(theta) = C + sum_n A_n cos(n theta) + B_n sin(n theta),
    C = sum k,  A_n = sum k cos(phase),  B_n = sum k sin(phase)  (over the terms of multiplicity n),

since k (1 + cos(n theta - phase)) = k + k cos(phase) cos(n theta) + k sin(phase) sin(n theta).
cos(theta) and sin(theta) come from the geometry without an inverse function, cos(n theta)
and sin(n theta) from the angle-addition recurrence, and the forces from OpenMM's
Blondel-Karplus form (:func:`~bencao.backends.common.laws.geometry.dihedral_forces`), all
on 8-lane vectors (:mod:`bencao.backends.cpu.lanes8`).  The energy and forces equal the
term-by-term law's to rounding (the tests compare both with OpenMM's Reference platform).

Where a plane normal vanishes (three collinear atoms) theta is taken as pi/2 and the forces
are zero, as the generic loop does.  Forces are added to the fixed-point accumulator in the
order of the quadruples, and the energy summed in that order: the same on any thread count.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from bencao.backends.common.registry import register_kernel
from bencao.backends.cpu.base import CpuTerm
from bencao.backends.cpu.bonded import add_torsion_forces
from bencao.backends.common.vector3 import cross, dot, sub
from bencao.backends.cpu.lanes8 import gather_positions8, gather_rows8, scatter_rows8, where
from bencao.backends.cpu.simd8 import LANES
from bencao.forces.bonded import PeriodicTorsions


def fourier_series(atoms, periodicity, phase, k):
    """The torsions' terms grouped by atom quadruple, as Fourier coefficients.

    Parameters
    ----------
    atoms : (M, 4) int array
    periodicity : (M,) int array
        Multiplicity n >= 1 of each term.
    phase : (M,) float array
        rad.
    k : (M,) float array
        kJ/mol.

    Returns
    -------
    quadruples : (Q, 4) int64 array
        The distinct quadruples, in the order of their first term.
    constant : (Q, 1) float64 array
        C, kJ/mol.
    cosines, sines : (Q, n_max) float64 arrays
        A_n and B_n in column n - 1, kJ/mol.
    """
    atoms = np.asarray(atoms, np.int64).reshape(-1, 4)
    periodicity = np.asarray(periodicity, np.int64)
    if len(periodicity) and periodicity.min() < 1:
        raise ValueError("a periodic torsion has multiplicity below 1")
    unique, first, inverse = np.unique(atoms, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # quadruples in the order of their first term
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    inverse = rank[inverse.reshape(-1)]
    n_max = int(periodicity.max(initial=1))
    constant = np.zeros((len(unique), 1))
    cosines = np.zeros((len(unique), n_max))
    sines = np.zeros((len(unique), n_max))
    np.add.at(constant[:, 0], inverse, k)
    np.add.at(cosines, (inverse, periodicity - 1), k * np.cos(phase))
    np.add.at(sines, (inverse, periodicity - 1), k * np.sin(phase))
    return np.ascontiguousarray(unique[order]), constant, cosines, sines


@njit(cache=True)
def _torsion_block(positions, quadruples, constant, cosines, sines, first, count, energies,
                   item_forces):
    """Energy (kJ/mol) and the 12 force components (kJ/mol/nm) of quadruples ``first ..
    first + count - 1`` (count <= 8), into ``energies[q, 0]`` and ``item_forces[q]``."""
    xa = gather_positions8(positions, quadruples, first, count, 0)
    xb = gather_positions8(positions, quadruples, first, count, 1)
    xc = gather_positions8(positions, quadruples, first, count, 2)
    xd = gather_positions8(positions, quadruples, first, count, 3)
    r0 = sub(xa, xb)
    r1 = sub(xc, xb)
    r2 = sub(xc, xd)
    n0 = cross(r0, r1)
    n1 = cross(r1, r2)
    n0sq = dot(n0, n0)
    n1sq = dot(n1, n1)
    valid = (n0sq > 0.0) & (n1sq > 0.0)
    scale = 1.0 / math.sqrt(where(valid, n0sq * n1sq, 1.0))
    r1sq = dot(r1, r1)
    len_bc = math.sqrt(r1sq)
    # |n0 x n1| = |r1| |r0 . n1|, and theta has the sign of r0 . n1 (OpenMM's convention)
    cos_theta = where(valid, dot(n0, n1) * scale, 0.0)
    sin_theta = where(valid, len_bc * dot(r0, n1) * scale, 1.0)
    energy = gather_rows8(constant, first, count, 0)
    d_energy = energy * 0.0
    cos_n = cos_theta
    sin_n = sin_theta
    for n in range(1, cosines.shape[1] + 1):
        a = gather_rows8(cosines, first, count, n - 1)
        b = gather_rows8(sines, first, count, n - 1)
        energy += a * cos_n + b * sin_n
        d_energy += float(n) * (b * cos_n - a * sin_n)
        cos_n, sin_n = (cos_n * cos_theta - sin_n * sin_theta,
                        sin_n * cos_theta + cos_n * sin_theta)
    scatter_rows8(energies, first, count, 0, energy)
    # dihedral_forces, with zero forces where a normal vanishes
    f1 = dot(r0, r1) / where(valid, r1sq, 1.0)
    f2 = dot(r2, r1) / where(valid, r1sq, 1.0)
    g0 = where(valid, -d_energy * len_bc / where(valid, n0sq, 1.0), 0.0)
    g3 = where(valid, d_energy * len_bc / where(valid, n1sq, 1.0), 0.0)
    for k in range(3):
        fa = g0 * n0[k]
        fd = g3 * n1[k]
        s = f1 * fa - f2 * fd
        scatter_rows8(item_forces, first, count, k, fa)
        scatter_rows8(item_forces, first, count, 3 + k, -(fa - s))
        scatter_rows8(item_forces, first, count, 6 + k, -(fd + s))
        scatter_rows8(item_forces, first, count, 9 + k, fd)


@njit(cache=True, parallel=True)
def periodic_torsions_kernel(positions, quadruples, constant, cosines, sines, forces):
    """Add the forces of every quadruple's series (kJ/mol/nm, fixed point) to ``forces`` and
    return the energy, kJ/mol.  ``positions`` (N, 3) float64, nm; the tables of
    :func:`fourier_series`."""
    n = quadruples.shape[0]
    energies = np.empty((n, 1))
    item_forces = np.empty((n, 12))
    for block in prange((n + LANES - 1) // LANES):
        first = block * LANES
        _torsion_block(positions, quadruples, constant, cosines, sines, first,
                       min(LANES, n - first), energies, item_forces)
    energy = 0.0
    for q in range(n):
        energy += energies[q, 0]
        add_torsion_forces(forces, quadruples[q, 0], quadruples[q, 1], quadruples[q, 2],
                           quadruples[q, 3], item_forces[q])
    return energy


@register_kernel("cpu", PeriodicTorsions)
class CpuPeriodicTorsions(CpuTerm):
    """PeriodicTorsionForce on the CPU as one Fourier series per atom quadruple."""

    def __init__(self, term: PeriodicTorsions):
        self.name = term.name
        self.quadruples, self.constant, self.cosines, self.sines = fourier_series(
            term.atoms, term.periodicity, term.phase, term.k)

    def compute(self, positions, box, forces) -> float:
        """Add the forces (kJ/mol/nm, fixed point) and return the energy, kJ/mol; ``box`` is
        ignored (torsions are not periodic)."""
        if len(self.quadruples) == 0:
            return 0.0
        return float(periodic_torsions_kernel(positions, self.quadruples, self.constant,
                                              self.cosines, self.sines, forces))
