"""The centroids of a CustomCentroidBondForce bond's groups, written once for both backends
(the CPU inlines it; CUDA compiles the same source with ``device_version``)."""

from __future__ import annotations

from numba import njit

from bencao.backends.common.periodic import minimum_image


@njit(cache=True, inline="always")
def bond_centroids(positions, bonds, m, group_atoms, group_offsets, group_weights, box, periodic,
                   centroids):
    """Centroids of the groups of bond ``m`` into ``centroids`` (n, 3), nm.

    Parameters
    ----------
    positions : (N, 3) float64 array
        Particle positions, nm.
    bonds : (M, n) int64 array
        The groups of each bond.
    m : int
        The bond.
    group_atoms, group_offsets, group_weights : arrays
        Group g's particles are ``group_atoms[group_offsets[g]:group_offsets[g + 1]]``, with
        weights summing to 1 (``bencao.forces.custom.CustomCentroidBonds``).
    box : (3, 3) float64 array
        Box vectors as rows, nm (read only if ``periodic``).
    periodic : bool
        Take the centroids after the first at their images nearest the first one.
    centroids : (n, 3) float64 array
        Output.
    """
    for k in range(bonds.shape[1]):
        g = bonds[m, k]
        cx = 0.0
        cy = 0.0
        cz = 0.0
        for s in range(group_offsets[g], group_offsets[g + 1]):
            w = group_weights[s]
            a = group_atoms[s]
            cx += w * positions[a, 0]
            cy += w * positions[a, 1]
            cz += w * positions[a, 2]
        if k > 0 and periodic:
            dx, dy, dz = minimum_image(cx - centroids[0, 0], cy - centroids[0, 1],
                                       cz - centroids[0, 2], box, True)
            cx = centroids[0, 0] + dx
            cy = centroids[0, 1] + dy
            cz = centroids[0, 2] + dz
        centroids[k, 0] = cx
        centroids[k, 1] = cy
        centroids[k, 2] = cz
