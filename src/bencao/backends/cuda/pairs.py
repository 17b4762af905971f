"""The Verlet pair list of a NonbondedForce on the GPU, built on the device from a cell grid.

The list is built on the device in four deterministic steps:

1. ``_assign_cells``: each atom's cell in fractional coordinates (any reduced triclinic box;
   cells at least ``rlist = cutoff + buffer`` wide perpendicular to each face, so two atoms
   within ``rlist`` -- through any image -- are in the same or adjacent cells).
2. A stable counting sort of the atoms by cell without atomics: the atoms are cut into
   consecutive chunks; one thread per chunk counts its atoms per cell in index order
   (``_chunk_counts``), one thread per cell turns the counts into offsets (``_cell_offsets``),
   one thread scans the cell totals (``_scan_cells``) and every atom then knows its slot
   (``_place``).  Within a cell the atoms are in increasing index, whatever the scheduling.
3. ``_build_list``: one thread per atom visits the neighbouring cells in a fixed order and keeps
   the partners within ``rlist`` (minimum image) that it owns and that are not excluded.  A pair
   (i, j), i < j, is owned by i if i + j is even and by j otherwise, so every atom owns about
   half of its neighbours (a half list with even work per thread).  Each thread writes only its
   own row; the list order is fixed by the cell order, so it does not depend on scheduling.
4. If some atom has more partners than the list holds, the list grows and step 3 runs again.

The list is rebuilt when the two largest displacements since the last build add up to the
buffer, or the box changed, as the CPU list does (``cpu.cluster_pairs``); the displacements
are compared in fixed point rounded up, so a rebuild may come a hair early, never late.

The pair loops that read the list are in ``cuda.pair_loops`` (one skeleton for every pair
term's law); the minimum image they, the exceptions and the list build share is here.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from bencao.backends.common.exclusions import exclusion_table
from bencao.backends.cuda.common import device_function, launch_kernel

#: Fixed-point scale of squared displacements in the rebuild test, 1/nm^2: resolution
#: 9e-13 nm^2, and 1e6 nm^2 (the clamp) times it stays inside int64.
DISPLACEMENT_SCALE = 2.0**40
_DISPLACEMENT_CLAMP = 1.0e6

#: Largest number of (chunk, cell) counters of the counting sort; the chunk size grows with
#: the system so that this table stays under ~64 MB (int32).
_MAX_COUNTERS = 1 << 24


@device_function
def minimum_image(dx, dy, dz, ax, bx, by, cx, cy, cz):
    """Minimum-image displacement in a reduced triclinic box (OpenMM's convention, as
    ``cpu.neighbors.minimum_image``), nm.  The box comes as its six non-zero elements (rows
    a = (ax, 0, 0), b = (bx, by, 0), c = (cx, cy, cz)), read once per thread by the caller;
    ``math.floor`` for the CUDA target."""
    s = math.floor(dz / cz + 0.5)
    dx -= s * cx
    dy -= s * cy
    dz -= s * cz
    s = math.floor(dy / by + 0.5)
    dx -= s * bx
    dy -= s * by
    s = math.floor(dx / ax + 0.5)
    dx -= s * ax
    return dx, dy, dz


# ---------------------------------------------------------------------------------------------
# Neighbour search.


@cuda.jit
def _assign_cells(positions, recip, low, inv_extent, ncell, periodic, cell):
    """Cell of each atom: periodic, from its wrapped fractional coordinates; else from its
    place in the bounding box ``low + [0, 1/inv_extent)``."""
    i = cuda.grid(1)
    if i >= positions.shape[0]:
        return
    c = 0
    for d in range(3):
        if periodic:
            s = (positions[i, 0] * recip[0, d] + positions[i, 1] * recip[1, d]
                 + positions[i, 2] * recip[2, d])
            s -= math.floor(s)
        else:
            s = (positions[i, d] - low[d]) * inv_extent[d]
        k = int(s * ncell[d])
        # s - floor(s) can round to 1.0, and a non-finite position to anything
        k = min(max(k, 0), ncell[d] - 1)
        c = c * ncell[d] + k
    cell[i] = c


@cuda.jit
def _chunk_counts(cell, chunk_size, counters, rank):
    """One thread per chunk of ``chunk_size`` consecutive atoms: ``counters[chunk, c]`` = its
    atoms in cell c, and each atom's rank among them (in index order)."""
    chunk = cuda.grid(1)
    if chunk >= counters.shape[0]:
        return
    for c in range(counters.shape[1]):
        counters[chunk, c] = 0
    for i in range(chunk * chunk_size, min(cell.shape[0], (chunk + 1) * chunk_size)):
        c = cell[i]
        rank[i] = counters[chunk, c]
        counters[chunk, c] += 1


@cuda.jit
def _cell_offsets(counters, cell_count):
    """One thread per cell: ``counters[chunk, c]`` becomes the number of atoms of cell c in the
    chunks before ``chunk``; ``cell_count[c]`` the cell's total."""
    c = cuda.grid(1)
    if c >= counters.shape[1]:
        return
    running = 0
    for chunk in range(counters.shape[0]):
        count = counters[chunk, c]
        counters[chunk, c] = running
        running += count
    cell_count[c] = running


@cuda.jit
def _scan_cells(cell_count, cell_start):
    """One thread: ``cell_start`` = exclusive prefix sum of ``cell_count`` (length cells + 1).
    A few thousand cells at most: a serial scan is cheaper than launching a parallel one."""
    if cuda.grid(1) != 0:
        return
    running = 0
    for c in range(cell_count.shape[0]):
        cell_start[c] = running
        running += cell_count[c]
    cell_start[cell_count.shape[0]] = running


@cuda.jit
def _place(cell, chunk_size, counters, rank, cell_start, cell_atoms):
    """Every atom's slot in ``cell_atoms`` (atoms by cell, increasing index within a cell)."""
    i = cuda.grid(1)
    if i >= cell.shape[0]:
        return
    c = cell[i]
    cell_atoms[cell_start[c] + counters[i // chunk_size, c] + rank[i]] = i


@cuda.jit
def _build_list(positions, box, periodic, cell, ncell, table, table_count, cell_start,
                cell_atoms, rlist2, excl_start, excl_atoms, neighbors, counts, largest):
    """One thread per atom i: ``neighbors[i, :counts[i]]`` = the partners j it owns (see the
    module docstring) within sqrt(rlist2) nm, not excluded, in cell-table order.

    Partners beyond the capacity of ``neighbors`` are counted, not stored; ``largest[0]``
    receives the largest count (integer atomic max: order-independent).
    """
    i = cuda.grid(1)
    n = positions.shape[0]
    if i >= n:
        return
    capacity = neighbors.shape[1]
    c = cell[i]
    nyz = ncell[1] * ncell[2]
    gx = c // nyz
    gy = (c // ncell[2]) % ncell[1]
    gz = c % ncell[2]
    xi = positions[i, 0]
    yi = positions[i, 1]
    zi = positions[i, 2]
    e0 = excl_start[i]
    e1 = excl_start[i + 1]
    ax = box[0, 0]
    bx = box[1, 0]
    by = box[1, 1]
    cx = box[2, 0]
    cy = box[2, 1]
    cz = box[2, 2]
    count = 0
    for kx in range(table_count[0, gx]):
        nx = table[0, gx, kx]
        for ky in range(table_count[1, gy]):
            ny = table[1, gy, ky]
            for kz in range(table_count[2, gz]):
                nc = (nx * ncell[1] + ny) * ncell[2] + table[2, gz, kz]
                for slot in range(cell_start[nc], cell_start[nc + 1]):
                    j = cell_atoms[slot]
                    # i owns (i, j) if (i < j) == (i + j even); j == i falls out here too
                    if (j > i) != ((i + j) % 2 == 0):
                        continue
                    dx = positions[j, 0] - xi
                    dy = positions[j, 1] - yi
                    dz = positions[j, 2] - zi
                    if periodic:
                        dx, dy, dz = minimum_image(dx, dy, dz, ax, bx, by, cx, cy, cz)
                    if dx * dx + dy * dy + dz * dz >= rlist2:
                        continue
                    excluded = False
                    for e in range(e0, e1):  # sorted: stop at the first partner above j
                        other = excl_atoms[e]
                        if other >= j:
                            excluded = other == j
                            break
                    if excluded:
                        continue
                    if count < capacity:
                        neighbors[i, count] = j
                    count += 1
    counts[i] = count
    cuda.atomic.max(largest, 0, count)


@cuda.jit
def _displacements(positions, reference, fixed_d2, result):
    """Squared displacement of each atom since the build, nm^2, in fixed point rounded up (a
    non-finite one clamped), and its maximum into ``result[0]``."""
    i = cuda.grid(1)
    if i >= positions.shape[0]:
        return
    dx = positions[i, 0] - reference[i, 0]
    dy = positions[i, 1] - reference[i, 1]
    dz = positions[i, 2] - reference[i, 2]
    d2 = dx * dx + dy * dy + dz * dz
    if not d2 < _DISPLACEMENT_CLAMP:
        d2 = _DISPLACEMENT_CLAMP
    value = np.int64(math.ceil(d2 * DISPLACEMENT_SCALE))
    fixed_d2[i] = value
    cuda.atomic.max(result, 0, value)


@cuda.jit
def _second_displacement(fixed_d2, result):
    """``result[1]``: the largest displacement below the maximum; ``result[2]``: how many atoms
    share the maximum (if two do, the second largest equals the largest)."""
    i = cuda.grid(1)
    if i >= fixed_d2.shape[0]:
        return
    value = fixed_d2[i]
    if value == result[0]:
        cuda.atomic.add(result, 2, 1)
    else:
        cuda.atomic.max(result, 1, value)


# ---------------------------------------------------------------------------------------------
# Host side.


def _box_widths(box: np.ndarray) -> np.ndarray:
    """Perpendicular widths of a box (volume over the opposite face's area), nm."""
    volume = abs(np.linalg.det(box))
    return np.array([volume / np.linalg.norm(np.cross(box[(k + 1) % 3], box[(k + 2) % 3]))
                     for k in range(3)])


def _cell_table(ncell: np.ndarray, periodic: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per axis and cell: the distinct cells at offsets -1, 0, +1 (wrapped if periodic), in that
    order, and how many there are (1 or 2 where an axis has fewer than 3 cells)."""
    width = int(ncell.max())
    table = np.zeros((3, width, 3), np.int32)
    counts = np.zeros((3, width), np.int32)
    for axis in range(3):
        n = int(ncell[axis])
        for c in range(n):
            found = []
            for d in (-1, 0, 1):
                other = c + d
                if periodic:
                    other %= n
                elif not 0 <= other < n:
                    continue
                if other not in found:
                    found.append(other)
            table[axis, c, :len(found)] = found
            counts[axis, c] = len(found)
    return table, counts


class CudaPairList:
    """A Verlet list of owned partners per atom on the device, rebuilt only when needed.

    Parameters
    ----------
    n_particles : int
        Number of particles.
    cutoff : float
        Interaction cutoff, nm (finite: NoCutoff needs no list).
    buffer : float
        Verlet buffer added to the cutoff, nm.
    exclusions : (M, 2) int array
        Pairs never listed.
    periodic : bool
        Use periodic boundary conditions (minimum image).

    Attributes
    ----------
    neighbors : (N, capacity) int32 device array
        Partners of each atom; only the first ``counts[i]`` are valid.
    counts : (N,) int32 device array
        Number of partners of each atom.
    builds : int
        How many times the list has been built.
    """

    def __init__(self, n_particles, cutoff, buffer, exclusions, periodic):
        self.n = int(n_particles)
        self.cutoff = float(cutoff)
        self.buffer = float(buffer)
        self.rlist = self.cutoff + self.buffer
        self.periodic = bool(periodic)
        start, partners = exclusion_table(self.n, exclusions)
        self.excl_start = cuda.to_device(start)
        self.excl_atoms = cuda.to_device(partners if len(partners) else np.zeros(1, np.int64))
        self._cell = cuda.device_array(max(self.n, 1), np.int64)
        self._rank = cuda.device_array(max(self.n, 1), np.int64)
        self._cell_atoms = cuda.device_array(max(self.n, 1), np.int64)
        self._fixed_d2 = cuda.device_array(max(self.n, 1), np.int64)
        self._small = cuda.to_device(np.zeros(3, np.int64))
        self._reference = cuda.device_array((max(self.n, 1), 3), np.float64)
        self._capacity = 0
        self.neighbors = cuda.device_array((max(self.n, 1), 1), np.int32)
        self.counts = cuda.to_device(np.zeros(max(self.n, 1), np.int32))
        self._grid_key = None
        self._reference_box = None
        self._built = False
        self.builds = 0

    def needs_rebuild(self, positions, box) -> bool:
        """True if the box changed, or two atoms may have closed the buffer, since the build.

        A pair's distance changes by at most the sum of its two atoms' displacements; while the
        two largest displacements add up to less than the buffer, every pair inside the cutoff
        was within ``rlist`` at the build.
        """
        if not self._built:
            return True
        if self.periodic and not np.array_equal(box, self._reference_box):
            return True
        if self.n == 0:
            return False
        self._small.copy_to_device(np.zeros(3, np.int64))
        launch_kernel(_displacements, self.n)(positions, self._reference, self._fixed_d2,
                                              self._small)
        launch_kernel(_second_displacement, self.n)(self._fixed_d2[:self.n], self._small)
        largest, below, ties = (int(v) for v in self._small.copy_to_host())
        second = largest if ties >= 2 else below
        first = math.sqrt(largest / DISPLACEMENT_SCALE)
        return first + math.sqrt(second / DISPLACEMENT_SCALE) >= self.buffer

    def update(self, positions, box) -> bool:
        """Rebuild the list if needed; return True if it was rebuilt.

        Parameters
        ----------
        positions : (N, 3) float64 device array
            Positions, nm.
        box : (3, 3) float64 array or None
            Box vectors as rows, nm (host; required if periodic).
        """
        if not self.needs_rebuild(positions, box):
            return False
        self.build(positions, box)
        return True

    def _grid(self, positions, box):
        """Cells per axis and the binning frame: (ncell, recip, low, inv_extent, box_arg)."""
        if self.periodic:
            box = np.ascontiguousarray(box, np.float64)
            widths = _box_widths(box)
            if self.cutoff > 0.5 * widths.min():
                raise ValueError(
                    f"the cutoff {self.cutoff:.3f} nm is larger than half the smallest box "
                    f"width {widths.min():.3f} nm; use a bigger box or a shorter cutoff")
            recip = np.linalg.inv(box)
            low = np.zeros(3)
            inv_extent = np.ones(3)
        else:
            # A non-periodic system's bounding box: one host copy per build (CutoffNonPeriodic
            # is rare and small; a device min/max reduction can replace it).
            host = positions.copy_to_host()[:self.n]
            low = host.min(axis=0)
            extent = host.max(axis=0) - low + 1e-6
            if not np.all(np.isfinite(extent)):
                low, extent = np.zeros(3), np.ones(3)
            widths = extent
            recip = np.eye(3)
            inv_extent = 1.0 / extent
            box = np.eye(3)
        ncell = np.clip(np.floor(widths / self.rlist), 1, 256).astype(np.int64)
        return ncell, recip, low, inv_extent, box

    def build(self, positions, box) -> None:
        """Bin the atoms on the device and list their partners from scratch."""
        n = self.n
        if n == 0:
            self._built = True
            return
        ncell, recip, low, inv_extent, box_arg = self._grid(positions, box)
        n_cells = int(np.prod(ncell))
        key = (tuple(ncell), n_cells)
        if self._grid_key != key:
            table, table_count = _cell_table(ncell, self.periodic)
            self._table = cuda.to_device(table)
            self._table_count = cuda.to_device(table_count)
            self._ncell = cuda.to_device(ncell)
            self._chunk = max(32, -(-n * n_cells // _MAX_COUNTERS))
            n_chunks = -(-n // self._chunk)
            self._counters = cuda.device_array((n_chunks, n_cells), np.int32)
            self._cell_count = cuda.device_array(n_cells, np.int64)
            self._cell_start = cuda.device_array(n_cells + 1, np.int64)
            self._grid_key = key
        box_device = cuda.to_device(np.ascontiguousarray(box_arg, np.float64))
        launch_kernel(_assign_cells, n)(
            positions, cuda.to_device(recip), cuda.to_device(low), cuda.to_device(inv_extent),
            self._ncell, self.periodic, self._cell)
        launch_kernel(_chunk_counts, self._counters.shape[0])(
            self._cell[:n], self._chunk, self._counters, self._rank)
        launch_kernel(_cell_offsets, n_cells)(self._counters, self._cell_count)
        _scan_cells[1, 1](self._cell_count, self._cell_start)
        launch_kernel(_place, n)(
            self._cell[:n], self._chunk, self._counters, self._rank, self._cell_start,
            self._cell_atoms)
        if self._capacity == 0:
            # owned partners ~ half the atoms within rlist, at the mean density, plus margin
            volume = (abs(np.linalg.det(box_arg)) if self.periodic
                      else float(np.prod(1.0 / inv_extent)))
            expected = 0.5 * n / volume * 4.0 / 3.0 * math.pi * self.rlist**3
            self._capacity = min(n, int(1.3 * expected) + 32)
            self.neighbors = cuda.device_array((n, self._capacity), np.int32)
        rlist2 = self.rlist * self.rlist
        while True:
            self._small.copy_to_device(np.zeros(3, np.int64))
            launch_kernel(_build_list, n)(
                positions, box_device, self.periodic, self._cell, self._ncell, self._table,
                self._table_count, self._cell_start, self._cell_atoms, rlist2, self.excl_start,
                self.excl_atoms, self.neighbors, self.counts, self._small)
            largest = int(self._small.copy_to_host()[0])
            if largest <= self._capacity:
                break
            self._capacity = int(largest * 1.2) + 8
            self.neighbors = cuda.device_array((n, self._capacity), np.int32)
        self._reference.copy_to_device(positions)
        self._box_device = box_device
        self._reference_box = None if box is None else np.array(box, np.float64)
        self._built = True
        self.builds += 1

    def get_state(self) -> dict:
        """The positions (host copy) and box of the last build, for checkpoints: the list, and
        so the order of each atom's force sum, is a function of them alone."""
        if not self._built:
            return {"reference": None, "box": None}
        return {"reference": self._reference.copy_to_host()[:self.n], "box": self._reference_box}

    def set_state(self, state: dict) -> None:
        """Rebuild the list as it was when ``get_state`` was called."""
        if state.get("reference") is None:
            self._built = False
            return
        box = state.get("box")
        self.build(cuda.to_device(np.ascontiguousarray(state["reference"], np.float64)),
                   None if box is None else np.asarray(box, np.float64))
