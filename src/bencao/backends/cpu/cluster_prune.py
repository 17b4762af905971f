"""Dynamic pruning: the inner cluster-pair list the kernels read, cut from the outer list.

GROMACS's dual pair list (Páll et al., J. Chem. Phys. 153, 134110, 2020) in bencao's terms: the
outer list (:class:`~bencao.backends.cpu.cluster_pairs.ClusterPairList`) covers
``cutoff + buffer`` and is rebuilt rarely; every few steps the pairs of clusters that can no
longer come within the cutoff before the next prune are dropped from a copy, the inner list,
which covers ``cutoff + prune_buffer``.  The kernels walk the inner list and still skip, at each
step, partners whose bounding box is beyond the cutoff.

Both lists are exact, not statistical: each is renewed when the two largest atom displacements
since it was made add up to its buffer, so no pair inside the cutoff is ever missing and the
buffers trade work against work, never accuracy (GROMACS instead sizes its buffers from an
energy-drift tolerance).  The inner list keeps the outer list's order, and holds every partner
the kernel's own per-step test would keep, so the forces do not depend on when it was pruned.

The prune compares bounding boxes with bounding boxes (cheap, and a superset of what the
kernels' atom-to-box test keeps).
"""

from __future__ import annotations

from numba import njit, prange


@njit(parallel=True, cache=True)
def prune_pairs(low, high, shifts, pair_j, pair_shift, pair_columns, counts, prune2, inner_j,
                inner_shift, inner_columns, inner_counts):
    """Copy, in order, the outer-list partners whose bounding box comes within ``sqrt(prune2)``
    (nm) of cluster i's, with their masks by column.

    Boxes against boxes, not atoms against boxes as the kernels' per-step test: an eighth of
    the arithmetic, and a superset of what the kernels keep (a box is never farther from a box
    than from the atoms inside it).

    Parameters
    ----------
    low, high : (3, C) float64 arrays
        Bounding boxes of the clusters now, nm.
    shifts : (27, 3) float64 array
        Box shift of each shift code, nm.
    pair_j, pair_shift, pair_columns, counts
        The outer list.
    prune2 : float
        Squared reach of the inner list, nm^2.
    inner_j, inner_shift, inner_columns, inner_counts
        Output: the inner list (``inner_columns[ci, k, b]``: bit a set if slot a of cluster i
        interacts with slot b of its k-th partner).
    """
    n_clusters = counts.shape[0]
    for ci in prange(n_clusters):
        n = 0
        for k in range(counts[ci]):
            cj = pair_j[ci, k]
            code = pair_shift[ci, k]
            gap2 = 0.0
            for d in range(3):
                shift = shifts[code, d]
                gap = max(0.0, low[d, cj] + shift - high[d, ci], low[d, ci] - high[d, cj] - shift)
                gap2 += gap * gap
            if gap2 >= prune2:
                continue
            inner_j[ci, n] = cj
            inner_shift[ci, n] = code
            for b in range(8):
                inner_columns[ci, n, b] = pair_columns[ci, k, b]
            n += 1
        inner_counts[ci] = n

