"""The first half of a cluster-pair list build: atoms into cells, sub-columns and clusters.

:class:`~bencao.backends.cpu.cluster_pairs.ClusterPairList` bins the atoms into cells in
fractional coordinates, orders them along a snake through the 2-D sub-columns of each cell and
by height within each, and cuts each cell's run into padded clusters of 8.  These kernels do it
in two parallel passes over the atoms around one counting sort.  They were NumPy expressions,
2.1 ms of DHFR's 8.7 ms build (one array pass each, and the sort on one thread); now 0.7 ms.

Every value is computed with the operations (and in the order) the NumPy expressions used, so
the clusters are the same to the last bit; no fastmath, for the reason given in
:mod:`bencao.backends.cpu.cluster_pairs_search`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def _axis(positions, i, k, inverse, origin, scale, periodic, ncell, image):
    """Atom i along axis k: its cell index and its position inside the cell (a fraction);
    writes its box image ``image[i, k]``.  See :func:`bin_atoms`."""
    if periodic:
        f = (positions[i, 0] * inverse[0, k] + positions[i, 1] * inverse[1, k]
             + positions[i, 2] * inverse[2, k])
        shift = -math.floor(f)
        f += shift
    else:
        f = (positions[i, k] - origin[k]) / scale[k]
        shift = 0.0
    image[i, k] = shift
    # clamped below ncell for atoms at the top face after rounding
    scaled = min(f * ncell[k], ncell[k] - 1e-9)
    index = np.int64(scaled)
    return index, scaled - index


@njit(parallel=True, cache=True)
def bin_atoms(positions, inverse, origin, scale, periodic, ncell, sub, cells, key, height, image):
    """Cell, sort key, height and box image of each atom.

    Parameters
    ----------
    positions : (N, 3) float64 array
        Positions, nm.
    inverse : (3, 3) float64 array
        Inverse of the box (rows are box vectors, nm), used if ``periodic``.
    origin, scale : (3,) float64 arrays
        Without periodicity, fractional coordinates are ``(positions - origin) / scale``.
    periodic : bool
        Wrap the fractional coordinates into [0, 1).
    ncell : (3,) int64 array
        Cells per axis.
    sub : (2,) int64 array
        Sub-columns per cell along the first two axes.
    cells : (N,) int64 array, out
        Cell of each atom (``(c0 * ncell[1] + c1) * ncell[2] + c2``).
    key : (N,) int64 array, out
        ``cells * sub[0] * sub[1] + column``: the atoms' order, before height.
    height : (N,) float64 array, out
        Position along the third axis inside the cell (a fraction), reversed in odd columns.
    image : (N, 3) float64 array, out
        Whole box vectors added to each atom to wrap it (zeros without periodicity).
    """
    n_columns = sub[0] * sub[1]
    for i in prange(positions.shape[0]):
        index0, fraction0 = _axis(positions, i, 0, inverse, origin, scale, periodic, ncell, image)
        index1, fraction1 = _axis(positions, i, 1, inverse, origin, scale, periodic, ncell, image)
        index2, fraction2 = _axis(positions, i, 2, inverse, origin, scale, periodic, ncell, image)
        cell = (index0 * ncell[1] + index1) * ncell[2] + index2
        column_a = min(np.int64(fraction0 * sub[0]), sub[0] - 1)
        column_b = min(np.int64(fraction1 * sub[1]), sub[1] - 1)
        # a boustrophedon through the sub-columns and up/down within them keeps consecutive
        # atoms close where one sub-column ends and the next begins
        if column_a % 2 == 1:
            column_b = sub[1] - 1 - column_b
        column = column_a * sub[1] + column_b
        height[i] = 1.0 - fraction2 if column % 2 == 1 else fraction2
        cells[i] = cell
        key[i] = cell * n_columns + column


@njit(parallel=True, cache=True)
def sort_atoms(bucket, height, n_buckets, order):
    """Atoms ordered by bucket (a counting sort), then by height within a bucket (insertion
    sort: buckets hold ~25 atoms; one bucket per thread at a time); ties keep index order, so
    the order is reproducible."""
    n = bucket.shape[0]
    start = np.zeros(n_buckets + 1, np.int64)
    for i in range(n):
        start[bucket[i] + 1] += 1
    for b in range(n_buckets):
        start[b + 1] += start[b]
    fill = start[:-1].copy()
    for i in range(n):
        order[fill[bucket[i]]] = i
        fill[bucket[i]] += 1
    for b in prange(n_buckets):
        for k in range(start[b] + 1, start[b + 1]):
            atom = order[k]
            value = height[atom]
            m = k - 1
            while m >= start[b] and height[order[m]] > value:
                order[m + 1] = order[m]
                m -= 1
            order[m + 1] = atom


@njit(parallel=True, cache=True)
def fill_slots(order, cells, first_cluster, first_atom, slot_atom, atom_slot):
    """Cluster slots of the atoms in ``order``: a cell's k-th atom goes to slot k of the run of
    slots that starts at its first cluster.  ``slot_atom`` is (C * 8,), filled with -1 for the
    padding beforehand; ``atom_slot`` is (N,)."""
    for k in prange(order.shape[0]):
        atom = order[k]
        cell = cells[atom]
        slot = first_cluster[cell] * 8 + k - first_atom[cell]
        slot_atom[slot] = atom
        atom_slot[atom] = slot
