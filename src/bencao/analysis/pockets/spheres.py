"""Alpha spheres: the empty spheres of a Delaunay tessellation of the protein's heavy atoms.

Every Delaunay tetrahedron's circumsphere touches its four atoms and holds no atom inside
(Le Guilloux, Schmidtke and Tuffery, BMC Bioinformatics 10, 168 (2009)): those between 0.34 and
0.62 nm in radius (fpocket's window) are the probes of cavities.  A sphere is kept only if it is
buried: most rays from its centre meet protein within 1 nm.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange
from scipy.spatial import Delaunay, QhullError, cKDTree

MIN_RADIUS = 0.34     # nm: fpocket's -m 3.4 A
MAX_RADIUS = 0.62     # nm: fpocket's -M 6.2 A
RAY_REACH = 1.0       # nm: how far a ray looks for protein
RAY_WIDTH = 0.18      # nm: a ray is blocked by an atom centre closer than this to it
MIN_BURIED = 0.4      # fraction of blocked rays for a sphere to count as inside a pocket


def ray_directions(count: int = 30) -> np.ndarray:
    """``count`` unit vectors spread evenly over the sphere (a Fibonacci lattice)."""
    i = np.arange(count) + 0.5
    polar = np.arccos(1.0 - 2.0 * i / count)
    azimuth = np.pi * (1.0 + 5.0**0.5) * i
    return np.stack([np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar),
                     np.cos(polar)], axis=1)


_DIRECTIONS = ray_directions()


def alpha_spheres(positions: np.ndarray):
    """Centres (S, 3) nm, radii (S,) nm and contact atoms (S, 4) of the alpha spheres whose radius
    lies in fpocket's window.

    Parameters
    ----------
    positions : (M, 3) float64 array
        Protein heavy-atom positions, nm.
    """
    try:
        simplices = Delaunay(positions).simplices
    except QhullError:   # fewer than 5 atoms, or all in a plane
        return np.zeros((0, 3)), np.zeros(0), np.zeros((0, 4), np.int64)
    origin = positions[simplices[:, 0]]
    edges = positions[simplices[:, 1:]] - origin[:, None, :]          # (T, 3, 3)
    rhs = 0.5 * np.einsum("tij,tij->ti", edges, edges)
    determinant = np.linalg.det(edges)
    usable = np.abs(determinant) > 1e-12                               # flat tetrahedra
    offset = np.zeros_like(origin)
    offset[usable] = np.linalg.solve(edges[usable], rhs[usable][..., None])[..., 0]
    radii = np.linalg.norm(offset, axis=1)
    keep = usable & (radii >= MIN_RADIUS) & (radii <= MAX_RADIUS)
    return origin[keep] + offset[keep], radii[keep], simplices[keep].astype(np.int64)


def buriedness(centres: np.ndarray, positions: np.ndarray, tree: cKDTree | None = None) -> np.ndarray:
    """Fraction of 30 rays from each centre that meet an atom within ``RAY_REACH``."""
    if len(centres) == 0:
        return np.zeros(0)
    tree = tree if tree is not None else cKDTree(positions)
    # every (sphere, atom) pair within reach, as CSR rows: no Python loop over the pairs
    pairs = cKDTree(centres).sparse_distance_matrix(tree, RAY_REACH, output_type="coo_matrix")
    rows = pairs.tocsr()
    return _blocked_fraction(centres, positions, rows.indptr.astype(np.int64),
                             rows.indices.astype(np.int64), _DIRECTIONS, RAY_WIDTH**2)


@njit(parallel=True, cache=True)
def _blocked_fraction(centres, positions, starts, flat, directions, width2):
    out = np.empty(centres.shape[0])
    n_dir = directions.shape[0]
    for s in prange(centres.shape[0]):
        blocked = np.zeros(n_dir, np.bool_)
        for k in range(starts[s], starts[s + 1]):
            a = flat[k]
            dx = positions[a, 0] - centres[s, 0]
            dy = positions[a, 1] - centres[s, 1]
            dz = positions[a, 2] - centres[s, 2]
            d2 = dx * dx + dy * dy + dz * dz
            for j in range(n_dir):
                along = dx * directions[j, 0] + dy * directions[j, 1] + dz * directions[j, 2]
                if along > 0.0 and d2 - along * along < width2:
                    blocked[j] = True
        out[s] = np.count_nonzero(blocked) / n_dir
    return out
