"""CPU kernel for CMAP torsion-torsion correction maps, matching OpenMM's CMAPTorsionForce.

The patch tables (OpenMM's periodic splines and bicubic patches, built once on the host) and the
patch polynomial are shared with the CUDA backend (``backends.common.laws.cmap``, whose notes
give the grid convention); the kernel here finds each pair's patch from its two torsion angles,
evaluates it and applies dE/dphi, dE/dpsi through the shared torsion gradient.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from bencao.backends.common.laws.cmap import cmap_patch, cmap_tables
from bencao.backends.common.laws.geometry import dihedral_forces, dihedral_geometry
from bencao.backends.common.registry import register_kernel
from bencao.backends.cpu.base import CpuTerm
from bencao.backends.cpu.bonded import add_torsion_forces
from bencao.forces.bonded import CMAPTorsions


@njit(cache=True)
def cmap_kernel(positions, atoms, torsion_map, map_sizes, patch_offsets, coeffs, forces):
    """Energy (kJ/mol) of all CMAP torsion pairs; adds their forces.

    Parameters
    ----------
    positions : (N, 3) float64 array
        Positions, nm.
    atoms : (M, 8) int64 array
        Atoms of phi then psi.
    torsion_map : (M,) int64 array
        Map of each pair.
    map_sizes : (K,) int64 array
        Grid size of each map.
    patch_offsets : (K,) int64 array
        First row of each map in ``coeffs``.
    coeffs : (P, 16) float64 array
        Patch coefficients (``common.laws.cmap.cmap_patch_coefficients``), kJ/mol.
    forces : (N, 3) int64 array
        Fixed-point force accumulator; the forces (kJ/mol/nm) are added to it.

    Returns
    -------
    float
        Energy, kJ/mol.
    """
    two_pi = 2.0 * math.pi
    energy = 0.0
    for m in range(atoms.shape[0]):
        a1 = atoms[m, 0]
        a2 = atoms[m, 1]
        a3 = atoms[m, 2]
        a4 = atoms[m, 3]
        b1 = atoms[m, 4]
        b2 = atoms[m, 5]
        b3 = atoms[m, 6]
        b4 = atoms[m, 7]
        geom_a = dihedral_geometry(positions, a1, a2, a3, a4)
        geom_b = dihedral_geometry(positions, b1, b2, b3, b4)
        # Map (-pi, pi] onto [0, 2 pi), the grid's range.
        phi = np.fmod(geom_a[0] + two_pi, two_pi)
        psi = np.fmod(geom_b[0] + two_pi, two_pi)

        mp = torsion_map[m]
        size = map_sizes[mp]
        delta = two_pi / size
        # min() keeps an angle that rounds to 2 pi inside the last patch.
        s = np.int64(min(phi / delta, size - 1.0))
        t = np.int64(min(psi / delta, size - 1.0))
        row = patch_offsets[mp] + s + size * t
        u = phi / delta - s
        v = psi / delta - t

        e, de_du, de_dv = cmap_patch(coeffs, row, u, v)
        energy += e
        add_torsion_forces(forces, a1, a2, a3, a4, dihedral_forces(de_du / delta, geom_a))
        add_torsion_forces(forces, b1, b2, b3, b4, dihedral_forces(de_dv / delta, geom_b))
    return energy


@register_kernel("cpu", CMAPTorsions)
class CpuCMAPTorsions(CpuTerm):
    """CMAP torsion-pair corrections on the CPU, with OpenMM's interpolation scheme.

    Parameters
    ----------
    term : CMAPTorsions
        Maps (kJ/mol on OpenMM's grid, see ``common.laws.cmap``) and the torsion pairs using
        them.
    """

    def __init__(self, term: CMAPTorsions):
        self.name = term.name
        tables = cmap_tables(term)
        self.atoms = tables.atoms
        self.torsion_map = tables.torsion_map
        self.map_sizes = tables.map_sizes
        self.patch_offsets = tables.patch_offsets
        self.coeffs = tables.coeffs

    def compute(self, positions, box, forces) -> float:
        """Add the CMAP forces (kJ/mol/nm, fixed point) and return the energy, kJ/mol.

        ``positions`` in nm; ``box`` is ignored (torsions are not periodic).
        """
        return float(
            cmap_kernel(
                positions,
                self.atoms,
                self.torsion_map,
                self.map_sizes,
                self.patch_offsets,
                self.coeffs,
                forces,
            )
        )
