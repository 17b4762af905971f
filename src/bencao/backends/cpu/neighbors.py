"""Cell lists with a Verlet buffer: half neighbour lists for range-limited pair work.

Atoms are binned into cells in fractional (box) coordinates, so any triclinic box works: a cell is
at least ``rlist`` wide perpendicular to each face, hence two atoms within ``rlist`` are in the
same or adjacent cells.  Atoms are then sorted by cell so that the pair kernels read memory close
together, and each atom keeps the neighbours that follow it in that order (a half list).  The list
covers ``rlist = cutoff + buffer`` and is rebuilt only when some atom has moved more than half the
buffer since the last build (or the box changed), which keeps every pair inside the cutoff listed.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from bencao.backends.common.exclusions import exclusion_table
from bencao.backends.common.periodic import minimum_image


@njit(cache=True)
def _is_excluded(excl_start, excl_atoms, a, b):
    """True if original atoms a and b are excluded (excl_atoms sorted within each row)."""
    for k in range(excl_start[a], excl_start[a + 1]):
        if excl_atoms[k] == b:
            return True
    return False


#: Bits of a packed neighbour entry that hold the shift code (27 shifts fit in 5 bits).
SHIFT_BITS = 5
SHIFT_MASK = (1 << SHIFT_BITS) - 1
#: Shift code of "no shift": (0, 0, 0) in the (wx + 1) * 9 + (wy + 1) * 3 + (wz + 1) numbering.
NO_SHIFT = 13


@njit(cache=True, inline="always")
def listed_partner(entry, positions, xi, yi, zi, shifts, minimum_image_mode, box):
    """(j, dx, dy, dz) of a packed list entry: the partner's sorted index and its displacement
    from (xi, yi, zi), nm, shifted by the entry's box shift (or the minimum image, in that
    mode)."""
    j = entry >> SHIFT_BITS
    shift = entry & SHIFT_MASK
    dx = positions[j, 0] - xi + shifts[shift, 0]
    dy = positions[j, 1] - yi + shifts[shift, 1]
    dz = positions[j, 2] - zi + shifts[shift, 2]
    if minimum_image_mode:
        dx, dy, dz = minimum_image(dx, dy, dz, box, True)
    return j, dx, dy, dz


def equal_work_bounds(counts: np.ndarray, items: int) -> np.ndarray:
    """Bounds of ``items`` parallel work items over rows with ``counts`` pairs each: item k
    covers rows ``bounds[k]:bounds[k + 1]``, each about as many pairs.

    A half list gives the rows early in its order more partners than late ones (DHFR's
    clusters: 60% of the pairs in the first half), and Numba's OpenMP loops hand each thread
    an equal run of the items.  Which thread does an item changes no force (integer sums).
    """
    n = len(counts)
    items = max(int(items), 1)
    ends = np.cumsum(counts)
    total = ends[-1] if n else 0
    inner = np.searchsorted(ends, np.arange(1, items) * (total / items), side="right")
    return np.concatenate(([0], inner, [n])).astype(np.int64)


@njit(parallel=True, cache=True)
def _build_half_list(
    positions, cell_of, cell_start, ncell, cell_neighbors, cell_wraps, n_cell_neighbors, shifts,
    minimum_image_mode, box, rlist2, excl_start, excl_atoms, order, neighbors, counts,
):
    """Fill ``neighbors[i, :counts[i]]`` with packed entries ``j << SHIFT_BITS | shift`` for the
    sorted atoms j > i within sqrt(rlist2) of i (through box shift ``shifts[shift]``).

    Counts beyond the capacity of ``neighbors`` are still counted (not stored) so that the caller
    can grow the array and build again.
    """
    n = positions.shape[0]
    capacity = neighbors.shape[1]
    nyz = ncell[1] * ncell[2]
    for i in prange(n):
        c = cell_of[i]
        cx = c // nyz
        cy = (c // ncell[2]) % ncell[1]
        cz = c % ncell[2]
        xi = positions[i, 0]
        yi = positions[i, 1]
        zi = positions[i, 2]
        ai = order[i]
        count = 0
        for kx in range(n_cell_neighbors[0, cx]):
            nx = cell_neighbors[0, cx, kx]
            for ky in range(n_cell_neighbors[1, cy]):
                ny = cell_neighbors[1, cy, ky]
                for kz in range(n_cell_neighbors[2, cz]):
                    nc = (nx * ncell[1] + ny) * ncell[2] + cell_neighbors[2, cz, kz]
                    end = cell_start[nc + 1]
                    if end <= i + 1:
                        continue  # every atom of that cell precedes i
                    start = max(cell_start[nc], i + 1)
                    code = NO_SHIFT
                    if not minimum_image_mode:
                        code = (
                            (cell_wraps[0, cx, kx] + 1) * 9
                            + (cell_wraps[1, cy, ky] + 1) * 3
                            + (cell_wraps[2, cz, kz] + 1)
                        )
                    sx = shifts[code, 0] - xi
                    sy = shifts[code, 1] - yi
                    sz = shifts[code, 2] - zi
                    for j in range(start, end):
                        dx = positions[j, 0] + sx
                        dy = positions[j, 1] + sy
                        dz = positions[j, 2] + sz
                        if minimum_image_mode:
                            dx, dy, dz = minimum_image(dx, dy, dz, box, True)
                        if dx * dx + dy * dy + dz * dz < rlist2:
                            if excl_start[ai + 1] > excl_start[ai] and _is_excluded(
                                excl_start, excl_atoms, ai, order[j]
                            ):
                                continue
                            if count < capacity:
                                neighbors[i, count] = (j << SHIFT_BITS) | code
                            count += 1
        counts[i] = count


def shift_vectors(box: np.ndarray | None) -> np.ndarray:
    """The 27 box shifts w . (a, b, c), w in {-1, 0, 1}^3, by shift code; zeros if not periodic."""
    shifts = np.zeros((27, 3))
    if box is not None:
        w = np.array([(x, y, z) for x in (-1, 0, 1) for y in (-1, 0, 1) for z in (-1, 0, 1)], float)
        shifts = w @ np.asarray(box, np.float64)
    return shifts


@njit(parallel=True, cache=True)
def _max_displacement2(positions, reference):
    """Largest squared displacement between two (N, 3) position arrays, nm^2."""
    n = positions.shape[0]
    result = 0.0
    for i in prange(n):
        dx = positions[i, 0] - reference[i, 0]
        dy = positions[i, 1] - reference[i, 1]
        dz = positions[i, 2] - reference[i, 2]
        result = max(result, dx * dx + dy * dy + dz * dz)
    return result


def _cell_neighbor_table(ncell: np.ndarray, periodic: bool, distinct: bool = True):
    """For each axis and cell: the cells at offsets -1, 0, +1 and the box wrap (-1, 0 or +1)
    that reaching each of them takes.

    With ``distinct`` a cell reached twice (boxes under three cells wide) is kept once, for
    kernels that take the minimum image themselves; without it every (cell, wrap) is kept, for
    lists that record each image separately.
    """
    width = int(ncell.max())
    table = np.zeros((3, width, 3), np.int64)
    wraps = np.zeros((3, width, 3), np.int64)
    counts = np.zeros((3, width), np.int64)
    for axis in range(3):
        n = int(ncell[axis])
        for c in range(n):
            found = []
            for d in (-1, 0, 1):
                other, wrap = c + d, 0
                if periodic:
                    wrap, other = divmod(other, n)
                elif not 0 <= other < n:
                    continue
                if not distinct or other not in [f[0] for f in found]:
                    found.append((other, wrap))
            for k, (other, wrap) in enumerate(found):
                table[axis, c, k] = other
                wraps[axis, c, k] = wrap
            counts[axis, c] = len(found)
    return table, wraps, counts


class NeighborList:
    """A Verlet half neighbour list over cell-sorted atoms, rebuilt only when needed.

    Parameters
    ----------
    n_particles : int
        Number of particles.
    cutoff : float
        Interaction cutoff, nm (``np.inf`` for all pairs).
    buffer : float
        Verlet buffer added to the cutoff, nm.
    exclusions : (M, 2) int array
        Pairs never listed.
    periodic : bool
        Use periodic boundary conditions.

    Attributes
    ----------
    order : (N,) int64 array
        ``order[k]`` is the original index of the k-th atom in cell order.
    neighbors : (N, capacity) int32 array
        Packed entries ``j << SHIFT_BITS | shift_code`` (j a sorted index) of each sorted atom;
        only the first ``counts[i]`` are valid.
    counts : (N,) int32 array
        Number of neighbours of each sorted atom.
    minimum_image_mode : bool
        The kernels must apply the minimum-image convention (box too small for 3 cells).
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
        self.order = np.arange(self.n, dtype=np.int64)
        self.neighbors = np.zeros((self.n, 16), np.int32)
        self.counts = np.zeros(self.n, np.int32)
        self.minimum_image_mode = False
        self._image = np.zeros((self.n, 3))
        self._reference = None
        self._reference_box = None
        self.builds = 0

    def needs_rebuild(self, positions: np.ndarray, box: np.ndarray | None) -> bool:
        """True if an atom moved more than half the buffer, or the box changed, since the build."""
        if self._reference is None:
            return True
        if self.periodic and not np.array_equal(box, self._reference_box):
            return True
        if not np.isfinite(self.cutoff):
            return False  # all pairs are listed; nothing can enter
        return _max_displacement2(positions, self._reference) > (0.5 * self.buffer) ** 2

    def update(self, positions: np.ndarray, box: np.ndarray | None) -> bool:
        """Rebuild the list if needed; return True if it was rebuilt.

        Parameters
        ----------
        positions : (N, 3) float64 array
            Positions, nm.
        box : (3, 3) float64 array or None
            Box vectors as rows, nm (required if periodic).
        """
        if not self.needs_rebuild(positions, box):
            return False
        self.build(positions, box)
        return True

    def get_state(self) -> dict:
        """The positions and box of the last build, for checkpoints.

        The list (atom order and the box image of each atom) is a function of these alone, and
        the pair forces depend on the images to the last bit, so a restart that rebuilds from
        them continues bit-identically.
        """
        return {"reference": self._reference, "box": self._reference_box}

    def set_state(self, state: dict) -> None:
        """Rebuild the list as it was when ``get_state`` was called."""
        if state.get("reference") is None:
            self._reference = None
            return
        box = state.get("box")
        self.build(np.asarray(state["reference"], np.float64),
                   None if box is None else np.asarray(box, np.float64))

    def sorted_positions(self, positions: np.ndarray, box: np.ndarray | None) -> np.ndarray:
        """Positions in cell order, moved by the box images chosen at the last build, nm."""
        result = positions[self.order]
        if self.periodic:
            result += self._image @ box
        return result

    def build(self, positions: np.ndarray, box: np.ndarray | None) -> None:
        """Bin, sort and list neighbours from scratch."""
        positions = np.ascontiguousarray(positions, np.float64)
        if self.periodic:
            box = np.ascontiguousarray(box, np.float64)
            fractional, image, widths = wrapped_fractional(positions, box, self.cutoff)
            ncell = np.maximum(1, np.floor(widths / self.rlist)).astype(np.int64)
            ncell = np.minimum(ncell, 256)
            cell3 = np.minimum((fractional * ncell).astype(np.int64), ncell - 1)
            box_arg = box
            minimum_image_mode = bool(np.any(ncell < 3))
        else:
            low = positions.min(axis=0)
            extent = positions.max(axis=0) - low + 1e-6
            if np.isfinite(self.rlist):
                ncell = np.maximum(1, np.floor(extent / self.rlist)).astype(np.int64)
            else:
                ncell = np.ones(3, np.int64)
            ncell = np.minimum(ncell, 256)
            cell3 = np.minimum(((positions - low) / extent * ncell).astype(np.int64), ncell - 1)
            image = np.zeros_like(positions)
            box_arg = np.eye(3)
            minimum_image_mode = False
        cell = (cell3[:, 0] * ncell[1] + cell3[:, 1]) * ncell[2] + cell3[:, 2]
        order = np.argsort(cell, kind="stable").astype(np.int64)
        cell_sorted = cell[order]
        cell_start = np.searchsorted(cell_sorted, np.arange(int(np.prod(ncell)) + 1)).astype(np.int64)
        table, wraps, table_counts = _cell_neighbor_table(ncell, self.periodic)
        self.order = order
        self._image = np.ascontiguousarray(image[order])
        self.minimum_image_mode = minimum_image_mode
        sorted_positions = self.sorted_positions(positions, box)
        shifts = shift_vectors(box if self.periodic else None)
        rlist2 = self.rlist**2 if np.isfinite(self.rlist) else np.inf
        while True:
            _build_half_list(
                sorted_positions, cell_sorted, cell_start, ncell, table, wraps, table_counts,
                shifts, minimum_image_mode, box_arg, rlist2, self.excl_start, self.excl_atoms,
                order, self.neighbors, self.counts,
            )
            largest = int(self.counts.max()) if self.n else 0
            if largest <= self.neighbors.shape[1]:
                break
            self.neighbors = np.zeros((self.n, int(largest * 1.2) + 8), np.int32)
        self._reference = positions.copy()
        self._reference_box = None if box is None else np.array(box, np.float64)
        self.builds += 1


def wrapped_fractional(positions: np.ndarray, box: np.ndarray, cutoff: float):
    """Fractional coordinates wrapped into [0, 1), for binning atoms into cells.

    Returns
    -------
    fractional : (N, 3) float64 array
    image : (N, 3) float64 array
        Whole box vectors added to each atom to wrap it.
    widths : (3,) float64 array
        Distances between opposite faces of the box, nm.

    Raises
    ------
    ValueError
        If the cutoff exceeds half the smallest box width (see :func:`box_geometry`).
    """
    inverse, widths = box_geometry(box, cutoff)
    fractional = positions @ inverse
    image = -np.floor(fractional)
    fractional += image
    return fractional, image, widths


def box_geometry(box: np.ndarray, cutoff: float):
    """The inverse of ``box`` (rows are box vectors, nm) and its widths between opposite faces
    (nm), for binning atoms into cells.

    Raises
    ------
    ValueError
        If the cutoff exceeds half the smallest box width: one image per pair within the
        cutoff needs it (the list's buffer may exceed it; the kernels' cutoff test picks the
        image).
    """
    widths = np.array([_width(box, k) for k in range(3)])
    if np.isfinite(cutoff) and cutoff > 0.5 * widths.min():
        raise ValueError(
            f"the cutoff {cutoff:.3f} nm is larger than half the smallest box "
            f"width {widths.min():.3f} nm; use a bigger box or a shorter cutoff"
        )
    return np.linalg.inv(box), widths


def _width(box: np.ndarray, axis: int) -> float:
    """Perpendicular width of the box along ``axis`` (volume over the opposite face area), nm."""
    a, b = [box[k] for k in range(3) if k != axis]
    return abs(np.linalg.det(box)) / np.linalg.norm(np.cross(a, b))
