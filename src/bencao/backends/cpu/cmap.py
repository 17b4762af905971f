"""CPU kernel for CMAP torsion-torsion correction maps, matching OpenMM's CMAPTorsionForce.

OpenMM turns each tabulated map into a smooth periodic surface in two steps, done here once at
construction:

1. derivatives at the grid points from periodic cubic splines: dE/dphi along phi, dE/dpsi along
   psi, and the cross derivative by splining dE/dpsi along phi;
2. one bicubic polynomial per grid cell ("patch"), the unique one matching value, both first
   derivatives and the cross derivative at its four corners.

The kernel then evaluates the patch polynomial at (phi, psi) and applies dE/dphi, dE/dpsi through
the torsion gradient shared with the bonded kernels.

Grid convention: exactly OpenMM's (what ``CMAPTorsionForce.getMapParameters`` returns): the value
for (phi_i, psi_j) sits at ``offset + i + size * j`` and grid point i is at angle i 2 pi / size,
angles taken modulo 2 pi (so index size/2 is at +-pi).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from scipy.interpolate import CubicSpline

from bencao.backends.common.registry import register_kernel
from bencao.backends.cpu.base import CpuTerm
from bencao.backends.cpu.bonded import add_dihedral_forces, dihedral_geometry
from bencao.forces.bonded import CMAPTorsions

# Hermite-to-monomial matrix on [0, 1]: p(u) = [1 u u^2 u^3] . (_HERMITE @ [p0, p1, p0', p1']).
_HERMITE = np.array(
    [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [-3.0, 3.0, -2.0, -1.0], [2.0, -2.0, 1.0, 1.0]]
)


def _periodic_knot_derivative(values: np.ndarray, axis: int) -> np.ndarray:
    """Derivative at the knots of the periodic cubic spline through ``values`` along ``axis``.

    Parameters
    ----------
    values : (size, size) float64 array
        Samples on the uniform periodic grid 0, h, ..., (size-1) h with h = 2 pi / size.
    axis : int
        Axis along which to spline.

    Returns
    -------
    (size, size) float64 array
        d values / d angle at the grid points, per rad.
    """
    size = values.shape[axis]
    x = np.arange(size + 1) * (2.0 * np.pi / size)
    # Close the period explicitly (first sample repeated at 2 pi), as a periodic spline requires.
    closed = np.concatenate([values, np.take(values, [0], axis=axis)], axis=axis)
    spline = CubicSpline(x, closed, axis=axis, bc_type="periodic")
    return spline(x[:-1], 1)


def cmap_patch_coefficients(size: int, energies: np.ndarray) -> np.ndarray:
    """Bicubic coefficients of every patch of one CMAP map (OpenMM's construction).

    Parameters
    ----------
    size : int
        Grid points per dimension.
    energies : (size * size,) float64 array
        Map values, kJ/mol, value of (phi_i, psi_j) at ``i + size * j``.

    Returns
    -------
    (size * size, 16) float64 array
        Row ``s + size * t`` holds the patch whose lower corner is grid point (s, t); entry
        ``4 * p + q`` multiplies u^p v^q, with u, v the fractional positions in the patch
        along phi and psi (dimensionless), giving kJ/mol.
    """
    delta = 2.0 * np.pi / size
    grid = np.asarray(energies, dtype=np.float64).reshape(size, size).T  # grid[i_phi, j_psi]
    d_phi = _periodic_knot_derivative(grid, axis=0)
    d_psi = _periodic_knot_derivative(grid, axis=1)
    d_cross = _periodic_knot_derivative(d_psi, axis=0)

    # Corner data of patch (s, t) as the Hermite matrix
    #   [[f00, f01, fv00, fv01], [f10, f11, fv10, fv11], [fu00, fu01, fuv00, fuv01], [fu10, ...]]
    # with derivatives rescaled from per-rad to per-patch-width.
    def corners(table):
        return (
            table,
            np.roll(table, -1, axis=1),  # (s, t+1)
            np.roll(table, -1, axis=0),  # (s+1, t)
            np.roll(np.roll(table, -1, axis=0), -1, axis=1),  # (s+1, t+1)
        )

    f00, f01, f10, f11 = corners(grid)
    u00, u01, u10, u11 = (delta * a for a in corners(d_phi))
    v00, v01, v10, v11 = (delta * a for a in corners(d_psi))
    w00, w01, w10, w11 = (delta * delta * a for a in corners(d_cross))
    hermite = np.stack(
        [
            np.stack([f00, f01, v00, v01], axis=-1),
            np.stack([f10, f11, v10, v11], axis=-1),
            np.stack([u00, u01, w00, w01], axis=-1),
            np.stack([u10, u11, w10, w11], axis=-1),
        ],
        axis=-2,
    )  # (size_s, size_t, 4, 4)
    coeff = np.einsum("pa,stab,qb->stpq", _HERMITE, hermite, _HERMITE)
    # Row index s + size * t: put t on the slow axis.
    return np.ascontiguousarray(coeff.transpose(1, 0, 2, 3).reshape(size * size, 16))


@njit(cache=True, inline="always")
def cmap_patch(coeffs, row, u, v):
    """Value and gradient of one bicubic CMAP patch at (u, v).

    Shared by :func:`cmap_kernel` and the CUDA kernel (compiled for the GPU from this source), so
    both backends round alike.

    Parameters
    ----------
    coeffs : (P, 16) float64 array
        Patch coefficients (:func:`cmap_patch_coefficients`), kJ/mol; entry ``4 p + q`` of a
        row multiplies u^p v^q.
    row : int
        Patch to evaluate.
    u, v : float
        Fractional positions inside the patch along phi and psi, in [0, 1] (dimensionless).

    Returns
    -------
    tuple of float
        (E, dE/du, dE/dv), kJ/mol (per patch width for the derivatives).
    """
    # Horner in both variables: E = sum_pq c[4p+q] u^p v^q.  One loop index serves as the power
    # of u for E and dE/dv and as the power of v for dE/du.
    e = 0.0
    de_du = 0.0
    de_dv = 0.0
    for p in range(3, -1, -1):
        c0 = coeffs[row, 4 * p]
        c1 = coeffs[row, 4 * p + 1]
        c2 = coeffs[row, 4 * p + 2]
        c3 = coeffs[row, 4 * p + 3]
        e = u * e + ((c3 * v + c2) * v + c1) * v + c0
        de_dv = u * de_dv + (3.0 * c3 * v + 2.0 * c2) * v + c1
        # Coefficients of u^1, u^2, u^3 in the factor of v^p.
        d1 = coeffs[row, 4 + p]
        d2 = coeffs[row, 8 + p]
        d3 = coeffs[row, 12 + p]
        de_du = v * de_du + (3.0 * d3 * u + 2.0 * d2) * u + d1
    return e, de_du, de_dv



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
        Patch coefficients from :func:`cmap_patch_coefficients`, kJ/mol.
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
        add_dihedral_forces(forces, a1, a2, a3, a4, de_du / delta, geom_a)
        add_dihedral_forces(forces, b1, b2, b3, b4, de_dv / delta, geom_b)
    return energy


@register_kernel("cpu", CMAPTorsions)
class CpuCMAPTorsions(CpuTerm):
    """CMAP torsion-pair corrections on the CPU, with OpenMM's interpolation scheme.

    Parameters
    ----------
    term : CMAPTorsions
        Maps (kJ/mol on OpenMM's grid, see module docstring) and the torsion pairs using them.
    """

    def __init__(self, term: CMAPTorsions):
        self.name = term.name
        sizes = np.asarray(term.map_sizes, dtype=np.int64).reshape(-1)
        offsets = np.asarray(term.map_offsets, dtype=np.int64).reshape(-1)
        energies = np.asarray(term.map_energies, dtype=np.float64).reshape(-1)
        tables = [
            cmap_patch_coefficients(int(n), energies[o : o + n * n]) for n, o in zip(sizes, offsets)
        ]
        self.map_sizes = np.ascontiguousarray(sizes)
        self.patch_offsets = np.zeros(len(sizes), dtype=np.int64)
        if len(sizes) > 1:
            self.patch_offsets[1:] = np.cumsum(sizes * sizes)[:-1]
        self.coeffs = (
            np.ascontiguousarray(np.concatenate(tables)) if tables else np.zeros((0, 16))
        )
        self.torsion_map = np.ascontiguousarray(
            np.asarray(term.torsion_map, dtype=np.int64).reshape(-1)
        )
        self.atoms = np.ascontiguousarray(np.asarray(term.atoms, dtype=np.int64).reshape(-1, 8))

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
