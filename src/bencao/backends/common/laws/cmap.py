"""CMAP torsion-torsion correction maps, shared by the backends (OpenMM's CMAPTorsionForce).

OpenMM turns each tabulated map into a smooth periodic surface in two steps, done here once per
term, on the host (:func:`cmap_tables`):

1. derivatives at the grid points from periodic cubic splines: dE/dphi along phi, dE/dpsi along
   psi, and the cross derivative by splining dE/dpsi along phi;
2. one bicubic polynomial per grid cell ("patch"), the unique one matching value, both first
   derivatives and the cross derivative at its four corners.

The kernels evaluate the patch polynomial (:func:`cmap_patch`, one source for both backends, so
they round alike) at (phi, psi) and apply dE/dphi, dE/dpsi through the torsion gradient
(``laws.geometry.dihedral_forces``).

Grid convention: exactly OpenMM's (what ``CMAPTorsionForce.getMapParameters`` returns): the value
for (phi_i, psi_j) sits at ``offset + i + size * j`` and grid point i is at angle i 2 pi / size,
angles taken modulo 2 pi (so index size/2 is at +-pi).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit
from scipy.interpolate import CubicSpline

from bencao.backends.common.laws.geometry import dihedral_forces, dihedral_geometry

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


@dataclass(frozen=True)
class CmapTables:
    """A CMAPTorsions term as the kernels take it (C-contiguous host arrays).

    Attributes
    ----------
    atoms : (M, 8) int64 array
        Four atoms of phi, then four of psi.
    torsion_map : (M,) int64 array
        Map of each pair.
    map_sizes : (K,) int64 array
        Grid points per dimension of each map.
    patch_offsets : (K,) int64 array
        First row of each map in ``coeffs``.
    coeffs : (P, 16) float64 array
        Patch coefficients (:func:`cmap_patch_coefficients`) of all maps, kJ/mol.
    """

    atoms: np.ndarray
    torsion_map: np.ndarray
    map_sizes: np.ndarray
    patch_offsets: np.ndarray
    coeffs: np.ndarray


def cmap_tables(term) -> CmapTables:
    """Patch tables and pair lists of a ``bencao.forces.CMAPTorsions`` term (built on the host).

    Both backends interpolate the surface of these very tables, so they agree to rounding.
    """
    sizes = np.asarray(term.map_sizes, dtype=np.int64).reshape(-1)
    offsets = np.asarray(term.map_offsets, dtype=np.int64).reshape(-1)
    energies = np.asarray(term.map_energies, dtype=np.float64).reshape(-1)
    tables = [
        cmap_patch_coefficients(int(n), energies[o : o + n * n]) for n, o in zip(sizes, offsets)
    ]
    patch_offsets = np.zeros(len(sizes), dtype=np.int64)
    if len(sizes) > 1:
        patch_offsets[1:] = np.cumsum(sizes * sizes)[:-1]
    coeffs = np.ascontiguousarray(np.concatenate(tables)) if tables else np.zeros((0, 16))
    return CmapTables(
        atoms=np.ascontiguousarray(np.asarray(term.atoms, dtype=np.int64).reshape(-1, 8)),
        torsion_map=np.ascontiguousarray(np.asarray(term.torsion_map, dtype=np.int64).reshape(-1)),
        map_sizes=np.ascontiguousarray(sizes),
        patch_offsets=patch_offsets,
        coeffs=coeffs,
    )


@njit(cache=True, inline="always")
def cmap_patch(coeffs, row, u, v):
    """Value and gradient of one bicubic CMAP patch at (u, v).

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


@njit(cache=True, inline="always")
def cmap_pair(positions, atoms, m, torsion_map, map_sizes, patch_offsets, coeffs):
    """Energy and forces of CMAP torsion pair ``m`` (OpenMM's CMAPTorsionForce).

    Both torsions use the raw positions, no minimum image (OpenMM's CMAPTorsionForce is not
    periodic by default).  Each angle is mapped from (-pi, pi] onto the grid's [0, 2 pi)
    exactly, its patch found, the bicubic
    patch evaluated and dE/dphi, dE/dpsi turned into forces by the shared torsion gradient.

    Parameters
    ----------
    positions : (N, 3) float64 array
        Positions, nm.
    atoms : (M, 8) int64 array
        Four atoms of phi, then four of psi.
    m : int
        The pair.
    torsion_map, map_sizes, patch_offsets, coeffs : arrays
        The tables of :func:`cmap_tables`.

    Returns
    -------
    tuple
        (energy kJ/mol, the 12 force components on phi's atoms, the 12 on psi's), kJ/mol/nm.
    """
    two_pi = 2.0 * math.pi
    geom_a = dihedral_geometry(positions, atoms[m, 0], atoms[m, 1], atoms[m, 2], atoms[m, 3])
    geom_b = dihedral_geometry(positions, atoms[m, 4], atoms[m, 5], atoms[m, 6], atoms[m, 7])
    # fmod(x, 2 pi) for x in (pi, 3 pi], written as one exact subtraction (Sterbenz), which
    # both targets compile (Numba's CPU target has no math.fmod, CUDA has no np.fmod).
    phi = geom_a[0] + two_pi
    if phi >= two_pi:
        phi -= two_pi
    psi = geom_b[0] + two_pi
    if psi >= two_pi:
        psi -= two_pi
    mp = torsion_map[m]
    size = map_sizes[mp]
    delta = two_pi / size
    # Keep an angle that rounds to 2 pi inside the last patch; a comparison rather than the
    # builtin min, whose generic overload Numba's CUDA target cannot compile.
    phi_cells = phi / delta
    if phi_cells > size - 1.0:  # noqa: PLR1730 (builtin min: see above)
        phi_cells = size - 1.0
    psi_cells = psi / delta
    if psi_cells > size - 1.0:  # noqa: PLR1730
        psi_cells = size - 1.0
    s = np.int64(phi_cells)
    t = np.int64(psi_cells)
    row = patch_offsets[mp] + s + size * t
    e, de_du, de_dv = cmap_patch(coeffs, row, phi / delta - s, psi / delta - t)
    return e, dihedral_forces(de_du / delta, geom_a), dihedral_forces(de_dv / delta, geom_b)
