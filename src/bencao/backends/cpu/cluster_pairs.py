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
buffer, or when the box has changed, so no pair inside the cutoff is ever missed.  The kernels
read an inner list: the list itself, or, with a ``prune_buffer``, a copy pruned every few steps
between builds (dynamic pruning, see :mod:`bencao.backends.cpu.cluster_prune`).
"""

from __future__ import annotations

import numpy as np

from bencao.backends.common.exclusions import exclusion_table
from bencao.backends.cpu.cluster_binning import bin_atoms, fill_slots, sort_atoms
from bencao.backends.cpu.cluster_pairs_search import (
    bounding_boxes,
    cluster_exclusions,
    fill_cluster_coordinates,
    search_pairs,
    slot_images,
    slot_masks,
    two_largest_displacements,
)
from bencao.backends.cpu.cluster_prune import prune_pairs
from bencao.backends.cpu.neighbors import (
    _cell_neighbor_table,
    box_geometry,
    shift_vectors,
)

#: Atoms per cluster, i and j alike (the kernel works on 8 x 8 blocks; a block's mask is 64 bits).
CLUSTER = 8
#: Target edge of a sub-column inside a cell, nm: about the width of 8 atoms of water.
SUBCOLUMN_WIDTH = 0.45


def _bits(pairs) -> int:
    """A 64-bit mask (as a signed int64 value) with bit 8a + b set for each (a, b) in ``pairs``."""
    value = 0
    for a, b in pairs:
        value |= 1 << (CLUSTER * a + b)
    return int(np.array(value, dtype=np.uint64).view(np.int64))


#: Mask of a cluster with itself under no shift: only the pairs a < b.
UPPER_TRIANGLE = _bits((a, b) for a in range(CLUSTER) for b in range(CLUSTER) if b > a)


class ClusterPairList:
    """Cluster-pair Verlet list over padded clusters of 8 atoms, rebuilt only when needed, with
    an inner list pruned from it every few steps.

    Parameters
    ----------
    n_particles : int
        Number of particles.
    cutoff : float
        Interaction cutoff, nm (``np.inf`` for all pairs).
    buffer : float
        Buffer of the outer list beyond the cutoff, nm.
    exclusions : (M, 2) int array
        Pairs never interacting in the kernel.
    periodic : bool
        Use periodic boundary conditions.
    prune_buffer : float or None
        Buffer of the inner list, nm (at most ``buffer``; None: ``buffer``, i.e. the inner list
        is cut only at builds, to the outer list's reach).

    Attributes
    ----------
    slot_atom : (C * 8,) int64 array
        Atom in each cluster slot, -1 for padding.
    atom_slot : (N,) int64 array
        Slot of each atom.
    image : (N, 3) float64 array
        Box image (whole box vectors) added to each atom at the last build.
    pair_j, pair_shift, pair_mask : (C, capacity) arrays
        The outer list: for cluster i, its first ``counts[i]`` entries: partner cluster j
        (int32), shift code (uint8, see ``neighbors.shift_vectors``) and the 64-bit interaction
        mask (bit 8a + b for slot a of i with slot b of j).
    pair_columns : (C, capacity, 8) uint8 array
        The masks by column, as the kernels read them: bit a of ``pair_columns[i, k, b]`` is
        set if slot a of cluster i interacts with slot b of its k-th partner.
    counts : (C,) int32 array
        Number of partners of each cluster in the outer list.
    inner_j, inner_shift, inner_columns, inner_counts
        The inner list, the one the kernels read: the outer list's entries in the same order,
        without the partners beyond ``cutoff + prune_buffer`` at the last prune (without
        pruning, the outer list's arrays themselves).  The kernels stream its arrays for every
        partner at every step, hence the narrow types: a listed partner is 13 bytes (j, shift
        code, 8 mask columns), not 40 as with int32 throughout; DHFR's in-step pair kernel
        went from 5.93 to 5.58 ms with the columns as bytes.
    builds, prunes : int
        How many times the outer list has been built and the inner list cut (builds included).
    """

    def __init__(self, n_particles, cutoff, buffer, exclusions, periodic, prune_buffer=None):
        self.n = int(n_particles)
        self.cutoff = float(cutoff)
        self.buffer = float(buffer) if np.isfinite(cutoff) else 0.0
        self.prune_buffer = self.buffer if prune_buffer is None else min(float(prune_buffer),
                                                                          self.buffer)
        #: an inner list cut between builds; without it the kernels read the outer list
        self.pruning = bool(np.isfinite(cutoff) and self.prune_buffer < self.buffer)
        self.rlist = self.cutoff + self.buffer
        self.periodic = bool(periodic)
        self.excl_start, self.excl_atoms = exclusion_table(self.n, exclusions)
        self.slot_atom = np.zeros(0, np.int64)
        self.atom_slot = np.zeros(self.n, np.int64)
        self.image = np.zeros((self.n, 3))
        self._images_box = None
        self._capacity = 64
        self._storage = None
        self._excl_partner = self._excl_bits = np.zeros((0, 0), np.int64)
        self._allocate(0)
        self._reference = None
        self._reference_box = None
        self._prune_reference = None
        self.builds = 0
        self.prunes = 0

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
        first, second = two_largest_displacements(positions, self._reference)
        return first + second >= self.buffer

    def needs_prune(self, positions: np.ndarray) -> bool:
        """True if two atoms may have closed the inner list's buffer since it was cut (the
        argument of :meth:`needs_rebuild`)."""
        if not self.pruning:
            return False
        if self._prune_reference is None:
            return True
        first, second = two_largest_displacements(positions, self._prune_reference)
        return first + second >= self.prune_buffer

    def update(self, positions: np.ndarray, box: np.ndarray | None) -> bool:
        """Rebuild the outer list or prune the inner one if needed; return True if the outer
        list was rebuilt (the clusters changed)."""
        if self.needs_rebuild(positions, box):
            self.build(positions, box)
            return True
        if self.needs_prune(positions):
            self.prune(positions, box)
        return False

    def get_state(self) -> dict:
        """The positions and box of the last build and the positions of the last prune, for
        checkpoints (the lists are a function of them alone, so a restart that rebuilds from
        them continues bit-identically)."""
        state = {"reference": self._reference, "box": self._reference_box}
        if self.pruning:
            state["prune_reference"] = self._prune_reference
        return state

    def set_state(self, state: dict) -> None:
        """Rebuild the lists as they were when ``get_state`` was called."""
        if state.get("reference") is None:
            self._reference = None
            return
        box = state.get("box")
        box = None if box is None else np.asarray(box, np.float64)
        self.build(np.asarray(state["reference"], np.float64), box)
        if state.get("prune_reference") is not None:
            self.prune(np.asarray(state["prune_reference"], np.float64), box)

    def coordinates(self, positions, box, x, y, z) -> None:
        """Fill cluster-slot coordinate arrays x, y, z (nm; float32 or float64) from
        ``positions``, each atom moved by the box image chosen at the last build."""
        box_arg = np.ascontiguousarray(box if self.periodic else np.eye(3), np.float64)
        if self._images_box is None or not np.array_equal(box_arg, self._images_box):
            # made once per build (the list is rebuilt when the box changes)
            self._slot_source = np.empty(len(self.slot_atom), np.int64)
            self._slot_offset = np.empty((len(self.slot_atom), 3))
            slot_images(self.slot_atom, self.image, box_arg, self.periodic, self._slot_source,
                        self._slot_offset)
            self._images_box = box_arg.copy()  # not the caller's array, which may change in place
        fill_cluster_coordinates(positions, self._slot_source, self._slot_offset, x, y, z)

    def _boxes(self, positions, box):
        """float64 cluster-slot coordinates and the clusters' bounding boxes ((3, C) low and
        high), nm."""
        x = np.empty(len(self.slot_atom), np.float64)
        y = np.empty_like(x)
        z = np.empty_like(x)
        self.coordinates(positions, box, x, y, z)
        low = np.empty((3, self.n_clusters))
        high = np.empty((3, self.n_clusters))
        bounding_boxes(x, y, z, self.slot_atom, low, high)
        return x, y, z, low, high

    def prune(self, positions: np.ndarray, box: np.ndarray | None, boxes=None) -> None:
        """Cut the inner list from the outer one at ``positions`` (``boxes``: what
        :meth:`_boxes` returns there, if the caller has it)."""
        positions = np.ascontiguousarray(positions, np.float64)
        self.prunes += 1
        if not self.pruning:
            # no pruning between builds: the inner list is the outer one
            self.inner_j, self.inner_shift, self.inner_columns, self.inner_counts = (
                self.pair_j, self.pair_shift, self.pair_columns, self.counts)
            return
        self._prune_reference = positions.copy()
        self.inner_j, self.inner_shift, self.inner_columns, self.inner_counts = (
            self._inner_storage)
        low, high = (self._boxes(positions, box) if boxes is None else boxes)[3:]
        # the kernels skip a partner whose box is beyond cutoff * (1 + 5e-6) (their float32
        # margin); 1e-4 here keeps every partner they would not skip, so the forces do not
        # depend on when the list was cut
        reach = self.cutoff * (1.0 + 1e-4) + self.prune_buffer
        prune_pairs(low, high, shift_vectors(box if self.periodic else None),
                    self.pair_j, self.pair_shift, self.pair_columns, self.counts,
                    reach**2 if np.isfinite(reach) else np.inf, self.inner_j, self.inner_shift,
                    self.inner_columns, self.inner_counts)

    def build(self, positions: np.ndarray, box: np.ndarray | None) -> None:
        """Bin and cluster the atoms, list the cluster pairs from scratch and cut the inner
        list."""
        positions = np.ascontiguousarray(positions, np.float64)
        ncell = self._bin_and_cluster(positions, box)
        boxes = self._boxes(positions, box)
        x, y, z, low, high = boxes
        n_clusters = self.n_clusters
        row_masks = np.empty(n_clusters, np.int64)
        column_masks = np.empty(n_clusters, np.int64)
        slot_masks(self.slot_atom, row_masks, column_masks)
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
        cluster_exclusions(self.slot_atom, self.atom_slot, self.excl_start, self.excl_atoms,
                           excl_partner, excl_bits, excl_counts)
        table, wraps, table_counts = _cell_neighbor_table(ncell, self.periodic, distinct=False)
        shifts = shift_vectors(box if self.periodic else None)
        rlist2 = self.rlist**2 if np.isfinite(self.rlist) else np.inf
        while True:
            self._allocate(n_clusters)
            search_pairs(x, y, z, low, high, self._cluster_cell, self._cell_first_cluster, ncell,
                         table, wraps, table_counts, shifts, self.periodic, rlist2, row_masks,
                         column_masks, excl_partner, excl_bits, excl_counts, UPPER_TRIANGLE,
                         self.pair_j, self.pair_shift, self.pair_mask, self.pair_columns,
                         self.counts)
            largest = int(self.counts.max()) if n_clusters else 0
            if largest <= self._capacity:
                break
            self._capacity = int(largest * 1.2) + 8
        self._reference = positions.copy()
        self._reference_box = None if box is None else np.array(box, np.float64)
        self.builds += 1
        self.prune(positions, box, boxes)

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
                       np.zeros((rows, self._capacity), np.uint8),
                       np.zeros((rows, self._capacity), np.int64),
                       np.zeros((rows, self._capacity, CLUSTER), np.uint8),
                       np.zeros(rows, np.int32),
                       np.zeros((rows, self._capacity), np.int32),
                       np.zeros((rows, self._capacity), np.uint8),
                       np.zeros((rows, self._capacity, CLUSTER), np.uint8),
                       np.zeros(rows, np.int32))
            self._storage = storage
        (self.pair_j, self.pair_shift, self.pair_mask, self.pair_columns, self.counts,
         self.inner_j, self.inner_shift, self.inner_columns, self.inner_counts) = (
            array[:n_clusters] for array in storage)
        self._inner_storage = (self.inner_j, self.inner_shift, self.inner_columns,
                               self.inner_counts)

    def _bin_and_cluster(self, positions, box):
        """Bin the atoms into cells, order them along snakes through sub-columns of their
        cells and cut each cell's run into padded clusters (see
        :mod:`bencao.backends.cpu.cluster_binning`); returns the cells per axis."""
        if self.periodic:
            inverse, widths = box_geometry(np.asarray(box, np.float64), self.cutoff)
            origin = scale = np.zeros(3)
        else:
            inverse = np.eye(3)
            origin = positions.min(axis=0)
            scale = positions.max(axis=0) - origin + 1e-6
            widths = scale
        if np.isfinite(self.rlist):
            ncell = np.maximum(1, np.floor(widths / self.rlist)).astype(np.int64)
        else:
            ncell = np.ones(3, np.int64)
        ncell = np.minimum(ncell, 256)
        cell_widths = widths / ncell
        sub = np.maximum(1, np.rint(cell_widths[:2] / SUBCOLUMN_WIDTH)).astype(np.int64)
        cells = np.empty(self.n, np.int64)
        key = np.empty(self.n, np.int64)
        height = np.empty(self.n)
        image = np.empty((self.n, 3))
        bin_atoms(positions, inverse, origin, scale, self.periodic, ncell, sub, cells, key,
                  height, image)
        n_cells = int(np.prod(ncell))
        order = np.empty(self.n, np.int64)
        sort_atoms(key, height, n_cells * int(sub[0] * sub[1]), order)
        per_cell = np.bincount(cells, minlength=n_cells)
        clusters_per_cell = (per_cell + CLUSTER - 1) // CLUSTER
        first_cluster = np.zeros(n_cells + 1, np.int64)
        np.cumsum(clusters_per_cell, out=first_cluster[1:])
        first_atom = np.zeros(n_cells + 1, np.int64)
        np.cumsum(per_cell, out=first_atom[1:])
        n_clusters = int(first_cluster[-1])
        self.slot_atom = np.full(n_clusters * CLUSTER, -1, np.int64)
        self.atom_slot = np.empty(self.n, np.int64)
        fill_slots(order, cells, first_cluster, first_atom, self.slot_atom, self.atom_slot)
        self.image = image
        self._images_box = None  # the slots' images are made again at the next fill
        self._cluster_cell = np.repeat(np.arange(n_cells, dtype=np.int64), clusters_per_cell)
        self._cell_first_cluster = first_cluster
        return ncell
