"""Cluster-pair lists: the neighbour search behind the SIMD pair kernel.

Atoms are grouped into clusters of ``CLUSTER`` (8) spatially close atoms, and the list records
pairs of clusters whose bounding boxes come within ``rlist = cutoff + buffer``, in the spirit of
GROMACS's cluster-pair scheme (Páll & Hess 2013).  The kernel then evaluates all 8 x 8 atom pairs
of a listed cluster pair with contiguous loads and no branches, masking the pairs that must not
interact (excluded, the lower triangle of a cluster with itself, padding, beyond the cutoff).

How clusters are made: atoms are binned into cells at least ``rlist`` wide in fractional
coordinates (so any box shape works and a neighbour is always in one of the 27 surrounding
cells); inside a cell they are ordered along a snake through 2-D sub-columns and by height within
each, and cut into consecutive groups of 8.  A cell's last cluster is padded with empty slots.

Periodic images: a cluster pair is listed once per box shift through which it comes within
``rlist``.  When a box is under three cells wide, the same pair of clusters can be listed under
several shifts; the kernel's cutoff test keeps the one image that matters (the cutoff is at most
half the box width).  A half list: cluster j is listed under i only if j > i, or j == i with a
zero shift (upper triangle only) or a positive shift code.

The list is rebuilt when the two largest atom displacements since the last build add up to the
buffer, or when the box has changed, so no pair inside the cutoff is ever missed.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from bencao.backends.common.exclusions import exclusion_table
from bencao.backends.cpu.neighbors import (
    NO_SHIFT,
    _cell_neighbor_table,
    shift_vectors,
    wrapped_fractional,
)

#: Atoms per cluster, i and j alike (the kernel works on 8 x 8 blocks; a block's mask is 64 bits).
CLUSTER = 8
#: Target edge of a sub-column inside a cell, nm: about the width of 8 atoms of water.
SUBCOLUMN_WIDTH = 0.45
#: i clusters per parallel work item of the search; each item allocates its scratch once.
SEARCH_CHUNK = 16


def _bits(pairs) -> int:
    """A 64-bit mask (as a signed int64 value) with bit 8a + b set for each (a, b) in ``pairs``."""
    value = 0
    for a, b in pairs:
        value |= 1 << (CLUSTER * a + b)
    return int(np.array(value, dtype=np.uint64).view(np.int64))


#: Mask of a cluster with itself under no shift: only the pairs a < b.
UPPER_TRIANGLE = _bits((a, b) for a in range(CLUSTER) for b in range(CLUSTER) if b > a)


@njit(cache=True)
def _slot_masks(slot_atom, row_masks, column_masks):
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


@njit(parallel=True, cache=True)
def _cluster_exclusions(slot_atom, atom_slot, excl_start, excl_atoms, partner, bits, counts):
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
def _bounding_boxes(x, y, z, slot_atom, low, high):
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
def _sort_atoms(bucket, height, n_buckets, order):
    """Atoms ordered by bucket (a counting sort), then by height within a bucket (insertion
    sort: buckets hold ~25 atoms); ties keep index order, so the order is reproducible."""
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
    for b in range(n_buckets):
        for k in range(start[b] + 1, start[b + 1]):
            atom = order[k]
            key = height[atom]
            m = k - 1
            while m >= start[b] and height[order[m]] > key:
                order[m + 1] = order[m]
                m -= 1
            order[m + 1] = atom


@njit(cache=True)
def _two_largest_displacements(positions, reference):
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


# No fastmath here or in the search: reassociation or contraction could round differently in
# Numba's cached code and in a fresh compile, and the list would depend on the process's
# history.  The loops vectorise without it (the minimum over atoms is taken box by box).
@njit(cache=True, inline="always")
def _nearest_atoms(x, y, z, ci, near, m):
    """For each of the ``m`` boxes in ``near`` (rows 0-5: low x, y, z, high x, y, z, nm), the
    smallest squared distance (nm^2) from an atom of cluster ci to it, into row 6.

    The loop over boxes is innermost and has no branches, so it runs as vector instructions;
    the minimum over the 8 atoms is taken box by box (exact, in any order)."""
    low_x = near[0]
    low_y = near[1]
    low_z = near[2]
    high_x = near[3]
    high_y = near[4]
    high_z = near[5]
    nearest = near[6]
    for k in range(m):
        nearest[k] = np.inf
    for a in range(8):
        xa = x[ci * 8 + a]
        ya = y[ci * 8 + a]
        za = z[ci * 8 + a]
        for k in range(m):
            gx = max(0.0, low_x[k] - xa, xa - high_x[k])
            gy = max(0.0, low_y[k] - ya, ya - high_y[k])
            gz = max(0.0, low_z[k] - za, za - high_z[k])
            nearest[k] = min(nearest[k], gx * gx + gy * gy + gz * gz)


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


@njit(parallel=True, cache=True)
def _search(
    x, y, z, low, high, cluster_cell, cell_first_cluster, ncell, cell_neighbors, cell_wraps,
    n_cell_neighbors, shifts, periodic, rlist2, row_masks, column_masks, excl_partner, excl_bits,
    excl_counts, upper_triangle, pair_j, pair_shift, pair_mask, counts,
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
    for chunk in prange(n_chunks):
        gap2 = np.empty(widest, np.float64)
        candidate = np.empty(reach, np.int64)
        candidate_code = np.empty(reach, np.int64)
        near = np.empty((7, reach), np.float64)
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
                    for kz in range(n_cell_neighbors[2, cz]):
                        nc = (nx * ncell[1] + ny) * ncell[2] + cell_neighbors[2, cz, kz]
                        end = cell_first_cluster[nc + 1]
                        if end <= ci:
                            continue
                        code = NO_SHIFT
                        if periodic:
                            code = ((cell_wraps[0, cx, kx] + 1) * 9
                                    + (cell_wraps[1, cy, ky] + 1) * 3
                                    + (cell_wraps[2, cz, kz] + 1))
                        sx = shifts[code, 0]
                        sy = shifts[code, 1]
                        sz = shifts[code, 2]
                        first = max(cell_first_cluster[nc], ci)
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
                            near[3, m] = high[0, cj] + sx
                            near[4, m] = high[1, cj] + sy
                            near[5, m] = high[2, cj] + sz
                            m += 1
            # 2. boxes within reach can still hold no atom of i within reach of j's box
            _nearest_atoms(x, y, z, ci, near, m)
            # 3. the masks of those that remain
            for e in range(excl_counts[ci]):
                excluded[excl_partner[ci, e]] = e
            count = 0
            for k in range(m):
                if near[6, k] >= rlist2:
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
                count += 1
            for e in range(excl_counts[ci]):
                excluded[excl_partner[ci, e]] = -1
            counts[ci] = count


@njit(parallel=True, cache=True)
def _mask_columns(pair_mask, counts, columns):
    """Each 64-bit mask cut into the 8 columns of the force kernel: ``columns[ci, k, b]`` has
    bit a set if slot a of cluster i interacts with slot b of its k-th partner (bit 8a + b of
    the mask).  int32 so that the kernel's loop stays 8 floats wide."""
    for ci in prange(counts.shape[0]):
        for k in range(counts[ci]):
            mask = pair_mask[ci, k]
            for b in range(CLUSTER):
                column = (mask >> np.int64(b)) & np.int64(0x0101010101010101)
                # the multiply moves bits 0, 8, ..., 56 to bits 56..63, in order
                columns[ci, k, b] = ((column * np.int64(0x0102040810204080)) >> np.int64(56)) \
                    & np.int64(0xFF)


@njit(parallel=True, cache=True)
def fill_cluster_coordinates(positions, slot_atom, image, box, periodic, x, y, z):
    """Cluster-ordered float32 coordinates, moved by the box images chosen at the last build.

    Padding slots copy the cluster's first atom (they are masked out of every pair).
    """
    n_slots = slot_atom.shape[0]
    for s in prange(n_slots):
        atom = slot_atom[s]
        if atom < 0:
            atom = slot_atom[s - s % 8]
        px = positions[atom, 0]
        py = positions[atom, 1]
        pz = positions[atom, 2]
        if periodic:
            wx = image[atom, 0]
            wy = image[atom, 1]
            wz = image[atom, 2]
            px += wx * box[0, 0] + wy * box[1, 0] + wz * box[2, 0]
            py += wy * box[1, 1] + wz * box[2, 1]
            pz += wz * box[2, 2]
        x[s] = px
        y[s] = py
        z[s] = pz


class ClusterPairList:
    """Cluster-pair Verlet list over padded clusters of 8 atoms, rebuilt only when needed.

    Parameters
    ----------
    n_particles : int
        Number of particles.
    cutoff : float
        Interaction cutoff, nm (``np.inf`` for all pairs).
    buffer : float
        Verlet buffer added to the cutoff, nm.
    exclusions : (M, 2) int array
        Pairs never interacting in the kernel.
    periodic : bool
        Use periodic boundary conditions.

    Attributes
    ----------
    slot_atom : (C * 8,) int64 array
        Atom in each cluster slot, -1 for padding.
    atom_slot : (N,) int64 array
        Slot of each atom.
    image : (N, 3) float64 array
        Box image (whole box vectors) added to each atom at the last build.
    pair_j, pair_shift, pair_mask : (C, capacity) arrays
        For cluster i, its first ``counts[i]`` entries: partner cluster j (int32), shift code
        (int32, see ``neighbors.shift_vectors``) and the 64-bit interaction mask (bit 8a + b for
        slot a of i with slot b of j).
    pair_columns : (C, capacity, 8) int32 array
        The masks by column (``_mask_columns``), as the force kernel reads them.
    counts : (C,) int32 array
        Number of listed partners of each cluster.
    builds : int
        How many times the list has been built.
    """

    def __init__(self, n_particles, cutoff, buffer, exclusions, periodic):
        self.n = int(n_particles)
        self.cutoff = float(cutoff)
        self.buffer = float(buffer) if np.isfinite(cutoff) else 0.0
        self.rlist = self.cutoff + self.buffer
        self.periodic = bool(periodic)
        self.excl_start, self.excl_atoms = exclusion_table(self.n, exclusions)
        self.slot_atom = np.zeros(0, np.int64)
        self.atom_slot = np.zeros(self.n, np.int64)
        self.image = np.zeros((self.n, 3))
        self._capacity = 64
        self._storage = None
        self._excl_partner = self._excl_bits = np.zeros((0, 0), np.int64)
        self._allocate(0)
        self._reference = None
        self._reference_box = None
        self.builds = 0

    @property
    def n_clusters(self) -> int:
        return len(self.slot_atom) // CLUSTER

    def needs_rebuild(self, positions: np.ndarray, box: np.ndarray | None) -> bool:
        """True if the box changed, or two atoms may have closed the buffer, since the build.

        A pair's distance changes by at most the sum of its two atoms' displacements, hence by
        at most the sum of the two largest displacements: while that sum stays under the
        buffer, every pair inside the cutoff was within ``rlist`` at the build.  (Twice the
        largest displacement, the usual test, rebuilds sooner for nothing.)
        """
        if self._reference is None:
            return True
        if self.periodic and not np.array_equal(box, self._reference_box):
            return True
        if not np.isfinite(self.cutoff):
            return False  # all pairs are listed; nothing can enter
        first, second = _two_largest_displacements(positions, self._reference)
        return first + second >= self.buffer

    def update(self, positions: np.ndarray, box: np.ndarray | None) -> bool:
        """Rebuild the list if needed; return True if it was rebuilt."""
        if not self.needs_rebuild(positions, box):
            return False
        self.build(positions, box)
        return True

    def get_state(self) -> dict:
        """The positions and box of the last build, for checkpoints (the list is a function of
        them alone, so a restart that rebuilds from them continues bit-identically)."""
        return {"reference": self._reference, "box": self._reference_box}

    def set_state(self, state: dict) -> None:
        """Rebuild the list as it was when ``get_state`` was called."""
        if state.get("reference") is None:
            self._reference = None
            return
        box = state.get("box")
        self.build(np.asarray(state["reference"], np.float64),
                   None if box is None else np.asarray(box, np.float64))

    def coordinates(self, positions, box, x, y, z) -> None:
        """Fill float32 cluster-slot coordinate arrays x, y, z (nm) from ``positions``."""
        box_arg = np.ascontiguousarray(box if self.periodic else np.eye(3), np.float64)
        fill_cluster_coordinates(positions, self.slot_atom, self.image, box_arg, self.periodic,
                                 x, y, z)

    def build(self, positions: np.ndarray, box: np.ndarray | None) -> None:
        """Bin and cluster the atoms and list the cluster pairs from scratch."""
        positions = np.ascontiguousarray(positions, np.float64)
        cells, ncell, fraction, image = self._bin(positions, box)
        self._cluster(cells, ncell, fraction, image)
        x = np.empty(len(self.slot_atom), np.float64)
        y = np.empty_like(x)
        z = np.empty_like(x)
        box_arg = np.ascontiguousarray(box if self.periodic else np.eye(3), np.float64)
        fill_cluster_coordinates(positions, self.slot_atom, self.image, box_arg, self.periodic,
                                 x, y, z)
        n_clusters = self.n_clusters
        low = np.empty((3, n_clusters))
        high = np.empty((3, n_clusters))
        _bounding_boxes(x, y, z, self.slot_atom, low, high)
        row_masks = np.empty(n_clusters, np.int64)
        column_masks = np.empty(n_clusters, np.int64)
        _slot_masks(self.slot_atom, row_masks, column_masks)
        widest = int(np.max(np.diff(self.excl_start), initial=0))
        # kept between builds, as the list's arrays (see ``_allocate``)
        width = max(1, 8 * widest)
        if self._excl_partner.shape[0] < n_clusters or self._excl_partner.shape[1] != width:
            rows = int(n_clusters * 1.1) + 8
            self._excl_partner = np.empty((rows, width), np.int64)
            self._excl_bits = np.empty((rows, width), np.int64)
            self._excl_counts = np.zeros(rows, np.int64)
        excl_partner = self._excl_partner[:n_clusters]
        excl_bits = self._excl_bits[:n_clusters]
        excl_counts = self._excl_counts[:n_clusters]
        _cluster_exclusions(self.slot_atom, self.atom_slot, self.excl_start, self.excl_atoms,
                            excl_partner, excl_bits, excl_counts)
        table, wraps, table_counts = _cell_neighbor_table(ncell, self.periodic, distinct=False)
        shifts = shift_vectors(box if self.periodic else None)
        rlist2 = self.rlist**2 if np.isfinite(self.rlist) else np.inf
        while True:
            self._allocate(n_clusters)
            _search(x, y, z, low, high, self._cluster_cell, self._cell_first_cluster, ncell, table,
                    wraps, table_counts, shifts, self.periodic, rlist2, row_masks, column_masks,
                    excl_partner, excl_bits, excl_counts, UPPER_TRIANGLE, self.pair_j,
                    self.pair_shift, self.pair_mask, self.counts)
            largest = int(self.counts.max()) if n_clusters else 0
            if largest <= self._capacity:
                break
            self._capacity = int(largest * 1.2) + 8
        _mask_columns(self.pair_mask, self.counts, self.pair_columns)
        self._reference = positions.copy()
        self._reference_box = None if box is None else np.array(box, np.float64)
        self.builds += 1

    def _allocate(self, n_clusters: int) -> None:
        """Point the list arrays at the first ``n_clusters`` rows of storage kept between
        builds.  The number of clusters changes at almost every build; fresh arrays each time
        (~15 MB for DHFR) cost more in page faults than the search itself, so the storage
        keeps 10% spare rows and is replaced only when it is too small or its width (the
        partner capacity) changes."""
        storage = self._storage
        if (storage is None or storage[0].shape[0] < n_clusters
                or storage[0].shape[1] != self._capacity):
            rows = int(n_clusters * 1.1) + 8
            storage = (np.zeros((rows, self._capacity), np.int32),
                       np.zeros((rows, self._capacity), np.int32),
                       np.zeros((rows, self._capacity), np.int64),
                       np.zeros((rows, self._capacity, CLUSTER), np.int32),
                       np.zeros(rows, np.int32))
            self._storage = storage
        self.pair_j, self.pair_shift, self.pair_mask, self.pair_columns, self.counts = (
            array[:n_clusters] for array in storage)

    def _bin(self, positions, box):
        """Cell of each atom, cells per axis, position inside its cell (fractions) and image."""
        if self.periodic:
            box = np.ascontiguousarray(box, np.float64)
            fractional, image, widths = wrapped_fractional(positions, box, self.cutoff)
        else:
            low = positions.min(axis=0)
            extent = positions.max(axis=0) - low + 1e-6
            fractional = (positions - low) / extent
            image = np.zeros_like(positions)
            widths = extent
        if np.isfinite(self.rlist):
            ncell = np.maximum(1, np.floor(widths / self.rlist)).astype(np.int64)
        else:
            ncell = np.ones(3, np.int64)
        ncell = np.minimum(ncell, 256)
        scaled = np.minimum(fractional * ncell, ncell - 1e-9)
        cell3 = scaled.astype(np.int64)
        cells = (cell3[:, 0] * ncell[1] + cell3[:, 1]) * ncell[2] + cell3[:, 2]
        fraction = scaled - cell3
        self._cell_widths = widths / ncell
        return cells, ncell, fraction, image

    def _cluster(self, cells, ncell, fraction, image):
        """Order atoms along snakes through sub-columns of their cells; cut into padded clusters."""
        sub = np.maximum(1, np.rint(self._cell_widths[:2] / SUBCOLUMN_WIDTH)).astype(np.int64)
        column_a = np.minimum((fraction[:, 0] * sub[0]).astype(np.int64), sub[0] - 1)
        column_b = np.minimum((fraction[:, 1] * sub[1]).astype(np.int64), sub[1] - 1)
        # a boustrophedon through the sub-columns and up/down within them keeps consecutive atoms
        # close where one sub-column ends and the next begins
        column_b = np.where(column_a % 2 == 1, sub[1] - 1 - column_b, column_b)
        column = column_a * sub[1] + column_b
        height = np.where(column % 2 == 1, 1.0 - fraction[:, 2], fraction[:, 2])
        n_cells = int(np.prod(ncell))
        n_columns = int(sub[0] * sub[1])
        order = np.empty(self.n, np.int64)
        _sort_atoms(cells * n_columns + column, height, n_cells * n_columns, order)
        per_cell = np.bincount(cells, minlength=n_cells)
        clusters_per_cell = (per_cell + CLUSTER - 1) // CLUSTER
        first_cluster = np.zeros(n_cells + 1, np.int64)
        np.cumsum(clusters_per_cell, out=first_cluster[1:])
        first_atom = np.zeros(n_cells + 1, np.int64)
        np.cumsum(per_cell, out=first_atom[1:])
        sorted_cells = cells[order]
        rank = np.arange(self.n) - first_atom[sorted_cells]
        slots = first_cluster[sorted_cells] * CLUSTER + rank
        n_clusters = int(first_cluster[-1])
        self.slot_atom = np.full(n_clusters * CLUSTER, -1, np.int64)
        self.slot_atom[slots] = order
        self.atom_slot = np.empty(self.n, np.int64)
        self.atom_slot[order] = slots
        self.image = np.ascontiguousarray(image)
        self._cluster_cell = np.repeat(np.arange(n_cells, dtype=np.int64), clusters_per_cell)
        self._cell_first_cluster = first_cluster
