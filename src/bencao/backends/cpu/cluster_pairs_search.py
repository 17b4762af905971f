"""The kernels behind :class:`~bencao.backends.cpu.cluster_pairs.ClusterPairList`: sorting
atoms into clusters, their bounding boxes and exclusion masks, and the search for cluster pairs
within reach (see that module for the scheme)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from bencao.backends.cpu.neighbors import NO_SHIFT, equal_work_bounds
from bencao.backends.cpu.simd8 import gather_rows8_transposed

#: i clusters per parallel work item of the search; each item allocates its scratch once.
SEARCH_CHUNK = 16


@njit(cache=True, inline="always")
def mask_columns(mask):
    """The 64-bit cluster-pair mask by columns, as the kernels read them: byte b of the result
    has bit a set if bit 8a + b of ``mask`` is (slot a of cluster i interacts with slot b of
    j).  The transpose of an 8 x 8 bit matrix in three rounds of swaps (Hacker's Delight,
    7-3), a dozen operations for all 8 columns."""
    x = np.uint64(mask)
    t = (x ^ (x >> np.uint64(7))) & np.uint64(0x00AA00AA00AA00AA)
    x = x ^ t ^ (t << np.uint64(7))
    t = (x ^ (x >> np.uint64(14))) & np.uint64(0x0000CCCC0000CCCC)
    x = x ^ t ^ (t << np.uint64(14))
    t = (x ^ (x >> np.uint64(28))) & np.uint64(0x00000000F0F0F0F0)
    return x ^ t ^ (t << np.uint64(28))


@njit(cache=True)
def slot_masks(slot_atom, row_masks, column_masks):
    """Per cluster: the rows (i side) and columns (j side) of real, non-padding slots."""
    n_clusters = row_masks.shape[0]
    for c in range(n_clusters):
        rows = np.int64(0)
        columns = np.int64(0)
        for a in range(8):
            if slot_atom[c * 8 + a] >= 0:
                rows |= np.int64(0xFF) << np.int64(8 * a)
                for b in range(8):
                    columns |= np.int64(1) << np.int64(8 * b + a)
        row_masks[c] = rows
        column_masks[c] = columns


@njit(cache=True, inline="always")
def balanced_chunk(item, n_chunks):
    """The chunk (of clusters, or work item) that parallel iteration ``item`` of ``n_chunks``
    works on: 0, last, 1, last - 1, ...  A parallel loop hands each thread a contiguous run of
    iterations, and the work of a chunk drifts along the clusters' order: in the search a half
    list gives early clusters more partners, about linearly in the index (the first half of
    DHFR's clusters had 64% of the box tests); in the pair kernels an item of late clusters
    holds as many pairs as an early one but more clusters (15% longer).  So paired, every
    thread's run holds early and late chunks alike.  Which thread takes a chunk changes no
    result (rows are written by one chunk, forces summed in fixed point)."""
    if item % 2 == 0:
        return item // 2
    return n_chunks - 1 - item // 2


@njit(parallel=True, cache=True)
def cluster_exclusions(slot_atom, atom_slot, excl_start, excl_atoms, partner, bits, counts):
    """For each cluster i: the clusters j >= i holding excluded partners of its atoms, with the
    excluded (a, b) pairs as mask bits.  ``partner``/``bits`` rows hold ``counts[i]`` entries,
    in the order the partners are first met."""
    n_clusters = counts.shape[0]
    n_chunks = (n_clusters + SEARCH_CHUNK - 1) // SEARCH_CHUNK
    for chunk in prange(n_chunks):
        # entry of each partner cluster in the current row (-1: none yet), for lookups in O(1)
        entry = np.full(n_clusters, -1, np.int64)
        for ci in range(chunk * SEARCH_CHUNK, min(n_clusters, (chunk + 1) * SEARCH_CHUNK)):
            n = 0
            for a in range(8):
                atom = slot_atom[ci * 8 + a]
                if atom < 0:
                    continue
                for e in range(excl_start[atom], excl_start[atom + 1]):
                    slot = atom_slot[excl_atoms[e]]
                    cj = slot // 8
                    if cj < ci:
                        continue  # recorded from cluster cj's side
                    b = slot % 8
                    bit = np.int64(1) << np.int64(8 * a + b)
                    if cj == ci:
                        bit |= np.int64(1) << np.int64(8 * b + a)
                    k = entry[cj]
                    if k < 0:
                        k = n
                        entry[cj] = k
                        partner[ci, k] = cj
                        bits[ci, k] = 0
                        n += 1
                    bits[ci, k] |= bit
            for k in range(n):
                entry[partner[ci, k]] = -1
            counts[ci] = n


@njit(cache=True)
def bounding_boxes(x, y, z, slot_atom, low, high):
    """Axis-aligned bounding box of the real atoms of each cluster, nm, as (3, C) arrays (one
    contiguous row per axis, for the vectorised search)."""
    n_clusters = low.shape[1]
    for c in range(n_clusters):
        for d in range(3):
            low[d, c] = np.inf
            high[d, c] = -np.inf
        for a in range(8):
            s = c * 8 + a
            if slot_atom[s] < 0:
                continue
            low[0, c] = min(low[0, c], x[s])
            low[1, c] = min(low[1, c], y[s])
            low[2, c] = min(low[2, c], z[s])
            high[0, c] = max(high[0, c], x[s])
            high[1, c] = max(high[1, c], y[s])
            high[2, c] = max(high[2, c], z[s])


@njit(cache=True)
def two_largest_displacements(positions, reference):
    """The two largest distances (nm) any atoms have moved between two (N, 3) arrays."""
    first = 0.0
    second = 0.0
    for i in range(positions.shape[0]):
        dx = positions[i, 0] - reference[i, 0]
        dy = positions[i, 1] - reference[i, 1]
        dz = positions[i, 2] - reference[i, 2]
        d2 = dx * dx + dy * dy + dz * dz
        if d2 > second:
            if d2 > first:
                second = first
                first = d2
            else:
                second = d2
    return np.sqrt(first), np.sqrt(second)


@njit(cache=True, inline="always")
def _gap(low_i, high_i, low_j, high_j):
    """Distance between two intervals along one axis (0 if they overlap)."""
    return max(0.0, low_j - high_i, low_i - high_j)


#: Rows of the scratch of the near tests (:func:`nearest_atoms`): a box's low x, y, z, a
#: spare row, its high x, y, z, a spare row (the layout of a cluster's ``bounds`` row, see
#: :func:`bencao.backends.cpu.cluster_kernels.cluster_bounds`), then the nearest atom's squared
#: distance.
NEAR_ROWS = 9
#: Row of the boxes' high corner (x; y and z follow), and of the squared distances.
NEAR_HIGH = 4
NEAR_DISTANCE = 8


@njit(cache=True, inline="always")
def near_scratch_columns(capacity):
    """Columns of a near-test scratch for ``capacity`` partners: whole blocks of 8, which
    :func:`partner_boxes` transposes at once."""
    return (capacity + 7) // 8 * 8


# No fastmath here or in the search: reassociation or contraction could round differently in
# Numba's cached code and in a fresh compile, and the list would depend on the process's
# history.  The loops vectorise without it (the minimum over atoms is taken box by box).
@njit(cache=True, inline="always")
def nearest_atoms(x, y, z, ci, near, m):
    """For each of the ``m`` boxes in ``near`` (rows 0-2: low x, y, z; rows ``NEAR_HIGH`` +
    0-2: high x, y, z, nm), the smallest squared distance (nm^2) from an atom of cluster ci to
    it, into row ``NEAR_DISTANCE``, in the precision of the arrays (float64 for the search and
    the energies, float32 for the force kernel).

    The loop over boxes is innermost and has no branches, so it runs as vector instructions;
    the minimum over the 8 atoms is taken box by box (exact, in any order)."""
    low_x = near[0]
    low_y = near[1]
    low_z = near[2]
    high_x = near[NEAR_HIGH]
    high_y = near[NEAR_HIGH + 1]
    high_z = near[NEAR_HIGH + 2]
    nearest = near[NEAR_DISTANCE]
    i0 = ci * 8
    zero = x[i0] - x[i0]  # 0 in the arrays' own type, so float32 work stays float32
    for k in range(m):
        nearest[k] = np.inf
    for a in range(8):
        xa = x[i0 + a]
        ya = y[i0 + a]
        za = z[i0 + a]
        for k in range(m):
            gx = max(zero, low_x[k] - xa, xa - high_x[k])
            gy = max(zero, low_y[k] - ya, ya - high_y[k])
            gz = max(zero, low_z[k] - za, za - high_z[k])
            nearest[k] = min(nearest[k], gx * gx + gy * gy + gz * gz)


@njit(cache=True, inline="always")
def partner_boxes(pair_j, pair_shift, ci, m, bounds, shifts8, near):
    """The bounding boxes of cluster ci's first ``m`` listed partners, moved by their box
    shifts, into the box rows of ``near`` (for :func:`nearest_atoms`).

    A partner's box is one row of 8 values, ``bounds[j]`` (see
    :func:`bencao.backends.cpu.cluster_kernels.cluster_bounds`), and ``shifts8[code]`` moves
    it (the shift twice, spare lanes 0); 8 partners at a time are added as vectors and
    transposed into ``near``'s columns in registers.  A scalar loop that moved the six values
    one by one took ~10 cycles a partner, 10% of the pair kernel.  ``near`` has whole blocks
    of 8 columns (``near_scratch_columns``); those past ``m`` receive copies.
    """
    flat_bounds = bounds.reshape(-1)
    flat_shifts = shifts8.reshape(-1)
    flat_j = pair_j.reshape(-1)
    flat_codes = pair_shift.reshape(-1)
    flat_near = near.reshape(-1)
    row = ci * pair_j.shape[1]
    for k0 in range(0, m, 8):
        gather_rows8_transposed(flat_bounds, flat_j, flat_shifts, flat_codes, row + k0, m - k0,
                                flat_near, k0, near.shape[1])


@njit(cache=True, inline="always")
def near_partners(x, y, z, pair_j, pair_shift, ci, m, bounds, shifts8, near, skip2, partners):
    """Which of cluster ci's first ``m`` listed partners still come near it: the list indices
    of those whose current bounding box (moved by its shift) comes within sqrt(``skip2``) of
    an atom of ci, in list order, into ``partners``; returns their number.

    The pair kernels call this for each i cluster: a partner beyond the cutoff from every atom
    of i would only add exact zeros, and about a third of the listed ones are (the list covers
    cutoff + buffer).  The list is appended to without a branch, whose outcome would be
    unpredictable.  ``near`` (``NEAR_ROWS`` rows, ``near_scratch_columns``) is scratch for
    :func:`partner_boxes`.
    """
    partner_boxes(pair_j, pair_shift, ci, m, bounds, shifts8, near)
    nearest_atoms(x, y, z, ci, near, m)
    nearest = near[NEAR_DISTANCE]
    n = 0
    for k in range(m):
        partners[n] = k
        n += np.int64(nearest[k] < skip2)
    return n


@njit(cache=True, inline="always")
def _box_gaps(low, high, ci, first, end, sx, sy, sz, gap2):
    """Squared distances (nm^2) from the bounding box of cluster ci to those of clusters
    first..end-1 moved by (sx, sy, sz), into ``gap2[0:end - first]``.  A loop without branches
    over contiguous (3, C) arrays, so that it runs as vector instructions."""
    lx = low[0, ci]
    ly = low[1, ci]
    lz = low[2, ci]
    hx = high[0, ci]
    hy = high[1, ci]
    hz = high[2, ci]
    low_x = low[0]
    low_y = low[1]
    low_z = low[2]
    high_x = high[0]
    high_y = high[1]
    high_z = high[2]
    for k in range(end - first):
        cj = first + k
        gx = _gap(lx, hx, low_x[cj] + sx, high_x[cj] + sx)
        gy = _gap(ly, hy, low_y[cj] + sy, high_y[cj] + sy)
        gz = _gap(lz, hz, low_z[cj] + sz, high_z[cj] + sz)
        gap2[k] = gx * gx + gy * gy + gz * gz


@njit(cache=True, inline="always")
def _z_run_end(cell_neighbors, cell_wraps, n_cell_neighbors, cz, kz):
    """The last entry of the run of z neighbours of cell row cz that starts at entry kz: the
    following entries while each is the next cell under the same wrap."""
    last = kz
    while (last + 1 < n_cell_neighbors[2, cz]
           and cell_neighbors[2, cz, last + 1] == cell_neighbors[2, cz, last] + 1
           and cell_wraps[2, cz, last + 1] == cell_wraps[2, cz, kz]):
        last += 1
    return last


@njit(parallel=True, cache=True)
def search_pairs(
    x, y, z, low, high, cluster_cell, cell_first_cluster, ncell, cell_neighbors, cell_wraps,
    n_cell_neighbors, shifts, periodic, rlist2, row_masks, column_masks, excl_partner, excl_bits,
    excl_counts, upper_triangle, pair_j, pair_shift, pair_mask, pair_columns, counts,
):
    """List, for each cluster i, the clusters j (and box shifts) within ``rlist`` of it.

    ``low`` and ``high`` are the clusters' bounding boxes as (3, C) arrays.  The boxes of a
    neighbouring cell's clusters are measured all at once (:func:`_box_gaps`), then the few
    within reach are checked atom by atom and their masks made.  Entries beyond the capacity
    of ``pair_j`` are counted but not stored, so that the caller can grow the arrays and search
    again.
    """
    n_clusters = low.shape[1]
    capacity = pair_j.shape[1]
    nyz = ncell[1] * ncell[2]
    widest = 1
    for c in range(cell_first_cluster.shape[0] - 1):
        widest = max(widest, cell_first_cluster[c + 1] - cell_first_cluster[c])
    n_chunks = (n_clusters + SEARCH_CHUNK - 1) // SEARCH_CHUNK
    reach = widest * cell_neighbors.shape[2] ** 3
    for item in prange(n_chunks):
        chunk = balanced_chunk(item, n_chunks)
        gap2 = np.empty(widest * cell_neighbors.shape[2], np.float64)  # a run of cells
        candidate = np.empty(reach, np.int64)
        candidate_code = np.empty(reach, np.int64)
        near = np.empty((NEAR_ROWS, reach), np.float64)
        # exclusion entry of each cluster for the current i (-1: none), for lookups in O(1)
        excluded = np.full(n_clusters, -1, np.int64)
        for ci in range(chunk * SEARCH_CHUNK, min(n_clusters, (chunk + 1) * SEARCH_CHUNK)):
            c = cluster_cell[ci]
            cx = c // nyz
            cy = (c // ncell[2]) % ncell[1]
            cz = c % ncell[2]
            # 1. the clusters whose boxes come within reach of i's box, moved into place and
            # side by side, cell by cell
            m = 0
            for kx in range(n_cell_neighbors[0, cx]):
                nx = cell_neighbors[0, cx, kx]
                for ky in range(n_cell_neighbors[1, cy]):
                    ny = cell_neighbors[1, cy, ky]
                    column = (nx * ncell[1] + ny) * ncell[2]
                    kz = 0
                    while kz < n_cell_neighbors[2, cz]:
                        # a run of neighbour cells consecutive along z under the same wrap
                        # holds consecutive clusters: one range, in the cells' order (a third
                        # of the loops' overhead, longer vector loops, and the same list)
                        last = _z_run_end(cell_neighbors, cell_wraps, n_cell_neighbors, cz, kz)
                        first = max(cell_first_cluster[column + cell_neighbors[2, cz, kz]], ci)
                        end = cell_first_cluster[column + cell_neighbors[2, cz, last] + 1]
                        wrap_z = cell_wraps[2, cz, kz]
                        kz = last + 1
                        if end <= ci:
                            continue
                        code = NO_SHIFT
                        if periodic:
                            code = ((cell_wraps[0, cx, kx] + 1) * 9
                                    + (cell_wraps[1, cy, ky] + 1) * 3
                                    + (wrap_z + 1))
                        sx = shifts[code, 0]
                        sy = shifts[code, 1]
                        sz = shifts[code, 2]
                        _box_gaps(low, high, ci, first, end, sx, sy, sz, gap2)
                        for cj in range(first, end):
                            if gap2[cj - first] >= rlist2:
                                continue
                            if cj == ci and code < NO_SHIFT:
                                continue  # the same pair as (ci, ci) under the opposite shift
                            candidate[m] = cj
                            candidate_code[m] = code
                            near[0, m] = low[0, cj] + sx
                            near[1, m] = low[1, cj] + sy
                            near[2, m] = low[2, cj] + sz
                            near[NEAR_HIGH, m] = high[0, cj] + sx
                            near[NEAR_HIGH + 1, m] = high[1, cj] + sy
                            near[NEAR_HIGH + 2, m] = high[2, cj] + sz
                            m += 1
            # 2. boxes within reach can still hold no atom of i within reach of j's box
            nearest_atoms(x, y, z, ci, near, m)
            # 3. the masks of those that remain
            for e in range(excl_counts[ci]):
                excluded[excl_partner[ci, e]] = e
            count = 0
            for k in range(m):
                if near[NEAR_DISTANCE, k] >= rlist2:
                    continue
                cj = candidate[k]
                code = candidate_code[k]
                mask = row_masks[ci] & column_masks[cj]
                if cj == ci and code == NO_SHIFT:
                    mask &= upper_triangle
                if excluded[cj] >= 0:
                    mask &= ~excl_bits[ci, excluded[cj]]
                if mask == 0:
                    continue
                if count < capacity:
                    pair_j[ci, count] = cj
                    pair_shift[ci, count] = code
                    pair_mask[ci, count] = mask
                    columns = mask_columns(mask)
                    for b in range(8):
                        pair_columns[ci, count, b] = (columns >> np.uint64(8 * b)) & np.uint64(0xFF)
                count += 1
            for e in range(excl_counts[ci]):
                excluded[excl_partner[ci, e]] = -1
            counts[ci] = count


@njit(parallel=True, cache=True)
def slot_images(slot_atom, image, box, periodic, source, offset):
    """What :func:`fill_cluster_coordinates` needs at each slot, made once per build: the atom
    whose position it takes (``source``: padding takes its cluster's first atom) and the
    displacement of its box image (``offset``, nm: whole box vectors)."""
    for s in prange(slot_atom.shape[0]):
        atom = slot_atom[s]
        if atom < 0:
            atom = slot_atom[s - s % 8]
        source[s] = atom
        if periodic:
            wx = image[atom, 0]
            wy = image[atom, 1]
            wz = image[atom, 2]
            offset[s, 0] = wx * box[0, 0] + wy * box[1, 0] + wz * box[2, 0]
            offset[s, 1] = wy * box[1, 1] + wz * box[2, 1]
            offset[s, 2] = wz * box[2, 2]
        else:
            offset[s, 0] = offset[s, 1] = offset[s, 2] = 0.0


@njit(parallel=True, cache=True)
def fill_cluster_coordinates(positions, source, offset, x, y, z):
    """Cluster-ordered coordinates (the precision of ``x``, ``y``, ``z``), nm: each slot's
    atom moved by its box image (:func:`slot_images`; padding slots copy the cluster's first
    atom, and are masked out of every pair).

    The slot's displacement is read in slot order, not looked up by atom (a read of the
    atom's image and the box at every slot had made this 3x slower in the step than alone)."""
    for s in prange(source.shape[0]):
        atom = source[s]
        x[s] = positions[atom, 0] + offset[s, 0]
        y[s] = positions[atom, 1] + offset[s, 1]
        z[s] = positions[atom, 2] + offset[s, 2]


def work_items(counts: np.ndarray, clusters_per_item: int) -> np.ndarray:
    """Bounds of the pair kernels' parallel work items: as many as there are runs of
    ``clusters_per_item`` clusters, each holding about as many listed cluster pairs
    (``neighbors.equal_work_bounds``)."""
    return equal_work_bounds(counts, -(-len(counts) // clusters_per_item))
