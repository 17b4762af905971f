"""CPU kernel for CMAP torsion-torsion correction maps, matching OpenMM's CMAPTorsionForce.

The patch tables (OpenMM's periodic splines and bicubic patches, built once on the host) and the
patch polynomial are shared with the CUDA backend (``backends.common.laws.cmap``, whose notes
give the grid convention); the kernel here finds each pair's patch from its two torsion angles,
evaluates it and applies dE/dphi, dE/dpsi through the shared torsion gradient.
"""

from __future__ import annotations

from numba import njit

from bencao.backends.common.laws.cmap import cmap_pair, cmap_tables
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
    energy = 0.0
    for m in range(atoms.shape[0]):
        e, f_phi, f_psi = cmap_pair(positions, atoms, m, torsion_map, map_sizes, patch_offsets,
                                    coeffs)
        energy += e
        add_torsion_forces(forces, atoms[m, 0], atoms[m, 1], atoms[m, 2], atoms[m, 3], f_phi)
        add_torsion_forces(forces, atoms[m, 4], atoms[m, 5], atoms[m, 6], atoms[m, 7], f_psi)
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
