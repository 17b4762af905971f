"""The SIMD pair kernel: Coulomb + Lennard-Jones forces over 8 x 8 cluster pairs in float32.

For each i cluster the kernel skips the listed partners whose bounding box is beyond the
cutoff from every atom of i, then evaluates the others in one of two row forms:

* **packed** (:mod:`bencao.backends.cpu.compaction`, CPUs with AVX-512): two partners (16
  lanes) at a time are read straight from the slot arrays, shifted into place, and the lanes
  that interact with each atom of i (listed in the mask, inside the cutoff; ~30% of them) are
  packed into that atom's dense rows; the law runs on those alone, and the spread turns its
  results back into forces on the partners' lanes and on the i atom;
* **masked** (other CPUs, where packing is done lane by lane and would cost more than it
  saves): the partners are gathered into contiguous rows (structure of arrays) and the law
  runs on every lane; a pair that must not interact has its distance replaced by a harmless
  one and its force selected to zero.

Both are branch-free loops that LLVM turns into vector instructions, both evaluate the same
law (:func:`bencao.backends.cpu.cluster_law.pair_force`) on the same pairs, and their forces
differ only in the order of the i atoms' float32 sums.  Energies are a separate float64 pass
(:mod:`bencao.backends.cpu.cluster_energies`).

Determinism: the force on cluster j from one cluster pair is summed in float32 in a fixed order
(i atom by i atom) and converted to int64 fixed point before it joins the per-thread
accumulator; the force on each atom of cluster i is summed in a fixed order (masked rows: over
its row, ``simd8.sum_blocks8``; packed rows: lane by lane over the blocks, then over the 16
lanes) and converted once.  Integer sums do not depend on the thread that did the work, so
forces are bit-identical on any number of threads.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from bencao.backends.common.pair_laws import (
    COULOMB_EWALD,
    COULOMB_PLAIN,
    COULOMB_REACTION_FIELD,
)
from bencao.backends.cpu.cluster_law import (
    FASTMATH,
    INLINE,
    clamped_fixed,
    coefficient_tuple,
    pair_force,
)
from bencao.backends.cpu.cluster_pairs_search import (
    NEAR_ROWS,
    balanced_chunk,
    near_partners,
    near_scratch_columns,
    work_items,
)
from bencao.backends.cpu.compaction import (
    BLOCK,
    PACKED_ROWS,
    compact_partners16,
    packing_pays,
    spread_partners16,
)
from bencao.backends.cpu.simd8 import (
    add_fixed8,
    copy8,
    copy8_shifted,
    fma32,
    sum_blocks8,
    zero8,
)
from bencao.backends.cpu.threads import streaming

#: i clusters per parallel work item on average (``cluster_pairs.work_items``); each item
#: allocates its scratch once.
CHUNK = 16


@njit(**INLINE)
def _masked_row(xj, yj, zj, qj, hsj, e4j, maskj, fxj, fyj, fzj, fxi, fyi, fzi, xa, ya, za, qa,
                sa, ea, bit, constants, ewald, coulomb_kind, switching):
    """Forces between one atom of cluster i and every lane of its gathered row, masked.

    The pair forces on the i atom are stored in ``fxi``, ``fyi``, ``fzi``, not summed here: a
    sum in the loop would vectorise only with reassociation, whose order LLVM chooses (and
    chooses differently in Numba's cached code); ``sum_blocks8`` sums them in a fixed order.
    """
    f32 = np.float32
    cut2 = constants[0]
    # masked lanes are evaluated (then discarded) at r^2 = min(cutoff^2, 1 nm^2): finite,
    # and never farther than the cutoff, where the Ewald fit's 2^-y holds
    masked_r2 = min(cut2, f32(1.0))
    for m in range(xj.shape[0]):
        dx = xa - xj[m]
        dy = ya - yj[m]
        dz = za - zj[m]
        r2 = fma32(dz, dz, fma32(dy, dy, dx * dx))
        use = ((maskj[m] & bit) != np.int32(0)) & (r2 < cut2)
        r2 = r2 if use else masked_r2
        f = pair_force(r2, qa * qj[m], sa + hsj[m], ea * e4j[m], constants, ewald,
                       coulomb_kind, switching)
        f = f if use else f32(0.0)
        fx = f * dx
        fy = f * dy
        fz = f * dz
        fxi[m] = fx
        fyi[m] = fy
        fzi[m] = fz
        fxj[m] -= fx
        fyj[m] -= fy
        fzj[m] -= fz


@njit(**INLINE)
def _packed_row(packed, scalars, count, qa, sa, ea, constants, ewald, coulomb_kind, switching):
    """-dE/dr / r (kJ/mol/nm^2) of one atom of cluster i with each of its ``count`` packed
    partners, every lane a pair inside the cutoff
    (:func:`~bencao.backends.cpu.compaction.compact_partners16`), into ``scalars``.

    ``packed`` rows 0-3: r^2 (nm^2), the partner's charge, sigma/2 and sqrt(4 eps).  The
    forces are made from these by ``spread_partners16``, which has the displacements.
    """
    r2 = packed[0]
    qj = packed[1]
    hsj = packed[2]
    e4j = packed[3]
    for m in range(count):
        scalars[m] = pair_force(r2[m], qa * qj[m], sa + hsj[m], ea * e4j[m], constants, ewald,
                                coulomb_kind, switching)


@njit(**INLINE)
def _masked_chunk(first, last, data, coulomb_kind, switching):
    """All i clusters of one work item, masked rows: gather each one's partners into
    contiguous scratch (shifted into place), run its 8 rows, add the partners' forces."""
    (x, y, z, charge, half_sigma, sqrt_4epsilon, pair_j, pair_shift, pair_columns, counts,
     shifts, shifts8, constants, ewald, thread_forces, bounds) = data
    skip2 = constants[6]
    capacity = pair_j.shape[1] * 8
    tid = numba.get_thread_id()
    columns = pair_columns.reshape(-1)  # flat: copy8 takes 1-D arrays
    columns_stride = pair_columns.shape[1]
    # this thread's accumulators, each component contiguous so that a partner cluster's 8
    # forces are converted and added as vectors
    tfx = thread_forces[tid, 0]
    tfy = thread_forces[tid, 1]
    tfz = thread_forces[tid, 2]
    # coefficients as scalars (a tuple), not array loads: stores in the loop could alias an
    # array, which would force a reload of every coefficient on every iteration
    ewald_coefficients = coefficient_tuple(ewald)
    xs = np.empty(capacity, np.float32)
    ys = np.empty(capacity, np.float32)
    zs = np.empty(capacity, np.float32)
    qs = np.empty(capacity, np.float32)
    hss = np.empty(capacity, np.float32)
    e4s = np.empty(capacity, np.float32)
    masks = np.empty(capacity, np.uint8)
    fxs = np.empty(capacity, np.float32)
    fys = np.empty(capacity, np.float32)
    fzs = np.empty(capacity, np.float32)
    row_forces = np.empty((3, capacity), np.float32)
    gathered = np.empty(pair_j.shape[1], np.int64)
    near = np.empty((NEAR_ROWS, near_scratch_columns(pair_j.shape[1])), np.float32)
    partners = np.empty(pair_j.shape[1], np.int64)
    for ci in range(first, last):
        i0 = ci * 8
        # partners now beyond the cutoff from every atom of i (by a margin far above float32
        # rounding) would contribute exact zeros: skipped
        n = near_partners(x, y, z, pair_j, pair_shift, ci, counts[ci], bounds, shifts8, near,
                          skip2, partners)
        for p in range(n):
            k = partners[p]
            code = pair_shift[ci, k]
            j0 = pair_j[ci, k] * 8
            gathered[p] = j0
            m = p * 8
            copy8_shifted(xs, m, x, j0, shifts[code, 0])
            copy8_shifted(ys, m, y, j0, shifts[code, 1])
            copy8_shifted(zs, m, z, j0, shifts[code, 2])
            copy8(qs, m, charge, j0)
            copy8(hss, m, half_sigma, j0)
            copy8(e4s, m, sqrt_4epsilon, j0)
            copy8(masks, m, columns, (ci * columns_stride + k) * 8)
            zero8(fxs, m)
            zero8(fys, m)
            zero8(fzs, m)
        if n == 0:
            continue
        width = n * 8
        for a in range(8):
            _masked_row(xs[:width], ys[:width], zs[:width], qs[:width], hss[:width],
                        e4s[:width], masks[:width], fxs[:width], fys[:width], fzs[:width],
                        row_forces[0, :width], row_forces[1, :width], row_forces[2, :width],
                        x[i0 + a], y[i0 + a], z[i0 + a], charge[i0 + a], half_sigma[i0 + a],
                        sqrt_4epsilon[i0 + a], np.int32(1 << a), constants,
                        ewald_coefficients, coulomb_kind, switching)
            tfx[i0 + a] += clamped_fixed(sum_blocks8(row_forces[0], 0, width))
            tfy[i0 + a] += clamped_fixed(sum_blocks8(row_forces[1], 0, width))
            tfz[i0 + a] += clamped_fixed(sum_blocks8(row_forces[2], 0, width))
        for k in range(n):
            j0 = gathered[k]
            add_fixed8(tfx, j0, fxs, k * 8)
            add_fixed8(tfy, j0, fys, k * 8)
            add_fixed8(tfz, j0, fzs, k * 8)


@njit(**INLINE)
def _packed_chunk(first, last, data, coulomb_kind, switching):
    """All i clusters of one work item, packed rows: pack the interacting pairs of each one's
    partners, two partners (16 lanes) at a time straight from the slot arrays, run its 8 dense
    rows, and add the pair forces back onto the partners."""
    (x, y, z, charge, half_sigma, sqrt_4epsilon, pair_j, pair_shift, pair_columns, counts,
     shifts, shifts8, constants, ewald, thread_forces, bounds) = data
    f32 = np.float32
    cut2 = constants[0]
    skip2 = constants[6]
    # one spare partner, so that the partners fill whole 16-lane blocks
    capacity = (pair_j.shape[1] + 1) * 8
    tid = numba.get_thread_id()
    columns = pair_columns.reshape(-1)
    columns_stride = pair_columns.shape[1]
    tfx = thread_forces[tid, 0]
    tfy = thread_forces[tid, 1]
    tfz = thread_forces[tid, 2]
    ewald_coefficients = coefficient_tuple(ewald)
    # per atom of i: its packed partners, their -dE/dr / r, each block's mask, and the i
    # atom's forces lane by lane
    packed = np.empty((8, PACKED_ROWS, capacity + BLOCK), np.float32)
    scalars = np.empty((8, capacity + BLOCK), np.float32)
    kept = np.empty((8, capacity // BLOCK + 1), np.int32)
    filled = np.empty(capacity // BLOCK + 1, np.int32)
    i_forces = np.empty((8, 3, BLOCK), np.float32)
    counts_now = np.zeros(8, np.int64)
    near = np.empty((NEAR_ROWS, near_scratch_columns(pair_j.shape[1])), np.float32)
    # per kept partner: list index, first slot, shift code, offset of its masks by column (the
    # last three with room for the spare partner)
    partners = np.empty(pair_j.shape[1], np.int64)
    slots = np.empty(pair_j.shape[1] + 1, np.int64)
    codes = np.empty(pair_j.shape[1] + 1, np.int64)
    column_offsets = np.empty(pair_j.shape[1] + 1, np.int64)
    # a packed row is padded to whole blocks with pairs of zero charge and epsilon at a
    # distance inside the cutoff (where every law is finite): their forces are exact zeros
    padding_r2 = min(cut2, f32(1.0)) * f32(0.25)
    for ci in range(first, last):
        i0 = ci * 8
        # partners now beyond the cutoff from every atom of i are skipped (as in _masked_chunk)
        n = near_partners(x, y, z, pair_j, pair_shift, ci, counts[ci], bounds, shifts8, near,
                          skip2, partners)
        if n == 0:
            continue
        for p in range(n):
            k = partners[p]
            slots[p] = pair_j[ci, k] * 8
            codes[p] = pair_shift[ci, k]
            column_offsets[p] = (ci * columns_stride + k) * 8
        if n % 2 == 1:  # the spare partner: the last one again, with no interactions
            slots[n] = slots[n - 1]
            codes[n] = codes[n - 1]
            column_offsets[n] = -1
            n += 1
        blocks = n // 2
        counts_now[:] = 0
        for b in range(blocks):
            compact_partners16(x, y, z, charge, half_sigma, sqrt_4epsilon, columns,
                               slots[2 * b], slots[2 * b + 1], column_offsets[2 * b],
                               column_offsets[2 * b + 1], shifts, codes[2 * b],
                               codes[2 * b + 1], i0, cut2, packed, counts_now, kept, filled, b)
        for a in range(8):
            count = counts_now[a]
            summed = (count + BLOCK - 1) // BLOCK * BLOCK
            for s in range(count, summed):
                packed[a, 0, s] = padding_r2
                packed[a, 1, s] = packed[a, 2, s] = packed[a, 3, s] = f32(0.0)
            _packed_row(packed[a], scalars[a], summed, charge[i0 + a], half_sigma[i0 + a],
                        sqrt_4epsilon[i0 + a], constants, ewald_coefficients, coulomb_kind,
                        switching)
        counts_now[:] = 0
        i_forces[:] = f32(0.0)
        for b in range(blocks):
            spread_partners16(x, y, z, slots[2 * b], slots[2 * b + 1], shifts, codes[2 * b],
                              codes[2 * b + 1], i0, scalars, counts_now, kept, filled, b,
                              i_forces, tfx, tfy, tfz)
        for a in range(8):
            tfx[i0 + a] += clamped_fixed(sum_blocks8(i_forces[a, 0], 0, BLOCK))
            tfy[i0 + a] += clamped_fixed(sum_blocks8(i_forces[a, 1], 0, BLOCK))
            tfz[i0 + a] += clamped_fixed(sum_blocks8(i_forces[a, 2], 0, BLOCK))


# One compiled kernel per (Coulomb kind, switching, packing): the flags are constants inside
# (a closure's variables are frozen at compile time), so each kernel carries only its own
# arithmetic and row form.  Each compiles on first use (~8 s) and is cached: Numba keys a
# closure's cache entry by its pickled variables, here plain ints and bools.
_OPTIONS = {"parallel": True, "cache": True, "fastmath": FASTMATH, "error_model": "numpy"}


def _kernel(coulomb_kind: int, switching: bool, packing: bool):
    """The parallel loop over work items for one combination of the flags."""

    def kernel(starts, data):
        n_items = starts.shape[0] - 1
        for item in prange(n_items):
            # late clusters have fewer partners each, and their items, as many pairs but more
            # clusters, took 15% longer: each thread's run of items holds early and late ones
            chunk = balanced_chunk(item, n_items)
            if packing:
                _packed_chunk(starts[chunk], starts[chunk + 1], data, coulomb_kind, switching)
            else:
                _masked_chunk(starts[chunk], starts[chunk + 1], data, coulomb_kind, switching)

    return njit(**_OPTIONS)(kernel)


_KERNELS = {(kind, switching, packing): _kernel(kind, switching, packing)
            for kind in (COULOMB_PLAIN, COULOMB_REACTION_FIELD, COULOMB_EWALD)
            for switching in (False, True) for packing in (False, True)}


def cluster_pairs_kernel(
    x, y, z, charge, half_sigma, sqrt_4epsilon, pair_j, pair_shift, pair_columns, counts,
    shifts, cutoff2, coulomb_kind, ewald, krf, switching, switch_distance, cutoff, thread_forces,
    skip_distant=True, packing=None, items=None,
):
    """Coulomb + Lennard-Jones forces over a cluster-pair list (NonbondedForce's regular pairs).

    Energies come from :func:`bencao.backends.cpu.cluster_energies.cluster_pairs_energy`, a
    separate float64 pass: the forces are then the same whether or not energies are asked for.

    Parameters
    ----------
    x, y, z : (C * 8,) float32 arrays
        Coordinates by cluster slot, nm.
    charge : (C * 8,) float32 array
        Charges times sqrt(1/(4 pi eps0)), so that a product is the Coulomb prefactor
        (e sqrt(kJ/mol nm)).
    half_sigma, sqrt_4epsilon : (C * 8,) float32 arrays
        sigma/2 (nm) and sqrt(4 epsilon) (sqrt(kJ/mol)) per slot (Lorentz–Berthelot rules).
    pair_j, pair_shift, pair_columns, counts
        The cluster-pair list (``ClusterPairList``), masks by column.
    shifts : (27, 3) float32 array
        Box shift of each shift code, nm.
    cutoff2 : float
        Squared cutoff, nm^2 (inf for none).
    coulomb_kind : int
        COULOMB_PLAIN, COULOMB_REACTION_FIELD or COULOMB_EWALD.
    ewald : (EWALD_COEFFICIENTS,) float32 array
        From :func:`bencao.backends.cpu.cluster_law.ewald_force_coefficients` (unused for the
        other kinds).
    krf : float
        Reaction-field constant, 1/nm^3.
    switching : bool
        Apply OpenMM's switching function to LJ from ``switch_distance`` to ``cutoff`` (nm).
    switch_distance, cutoff : float
        nm.
    thread_forces : (T, 3, S) int64 array, S >= C * 8
        Per-thread fixed-point forces by slot; zeroed by the caller.
    skip_distant : bool
        Skip partner clusters now entirely beyond the cutoff.  Their pairs add exact zeros, so
        the forces differ only by the order of the float32 sums (False is for testing that).
    packing : bool or None
        Evaluate packed rows (True) or masked rows (False); None: packed where that pays
        (:func:`bencao.backends.cpu.compaction.packing_pays`).  The forces differ only by the
        order of the float32 sums of the i atoms.
    items : int64 array or None
        The parallel work items, ``work_items(counts, CHUNK)``, if the caller keeps them
        between steps (they change only with the list); None: made here.
    """
    constants = np.array([
        cutoff2, 0.0, krf, 0.0, switch_distance,
        1.0 / (cutoff - switch_distance) if switching else 0.0,
        # relative margin 1e-5: far above the rounding of a float32 r^2 (~1e-7), so a skipped
        # pair is certainly beyond the cutoff in the kernel's own arithmetic
        cutoff2 * (1.0 + 1e-5) if skip_distant else np.inf,
    ], np.float32)
    bounds = np.empty((len(counts), 8), np.float32)
    with streaming(len(x)):
        cluster_bounds(x, y, z, bounds)
    ewald = np.ascontiguousarray(ewald, np.float32)
    data = (x, y, z, charge, half_sigma, sqrt_4epsilon, pair_j, pair_shift, pair_columns,
            counts, shifts, box_shifts8(shifts), constants, ewald, thread_forces, bounds)
    packing = packing_pays() if packing is None else bool(packing)
    kernel = _KERNELS[(int(coulomb_kind), bool(switching), packing)]
    kernel(work_items(counts, CHUNK) if items is None else items, data)


@njit(parallel=True, cache=True)
def cluster_bounds(x, y, z, bounds):
    """Bounding box of each cluster's 8 slots (padding repeats a real atom): ``bounds[c]`` =
    (low x, y, z, 0, high x, y, z, 0), nm: 8 values, so that a box moves as one vector
    (:func:`bencao.backends.cpu.cluster_pairs_search.partner_boxes`)."""
    for c in prange(bounds.shape[0]):
        for d in range(3):
            bounds[c, d] = np.inf
            bounds[c, 4 + d] = -np.inf
        bounds[c, 3] = 0.0
        bounds[c, 7] = 0.0
        for s in range(c * 8, c * 8 + 8):
            bounds[c, 0] = min(bounds[c, 0], x[s])
            bounds[c, 1] = min(bounds[c, 1], y[s])
            bounds[c, 2] = min(bounds[c, 2], z[s])
            bounds[c, 4] = max(bounds[c, 4], x[s])
            bounds[c, 5] = max(bounds[c, 5], y[s])
            bounds[c, 6] = max(bounds[c, 6], z[s])


def box_shifts8(shifts: np.ndarray) -> np.ndarray:
    """The (27, 3) box shifts (nm) as rows of 8 that move a ``cluster_bounds`` row: (shift,
    0, shift, 0), in the shifts' dtype."""
    shifts8 = np.zeros((len(shifts), 8), shifts.dtype)
    shifts8[:, 0:3] = shifts
    shifts8[:, 4:7] = shifts
    return shifts8


@njit(parallel=True, cache=True)
def reduce_cluster_forces(thread_forces, slot_atom, forces):
    """Add per-thread slot fixed-point forces into ``forces`` (atom order), exactly, and zero
    the per-thread buffers for the next call.  ``thread_forces`` may hold more slots than
    ``slot_atom`` (spare ones, left zero)."""
    n_threads = thread_forces.shape[0]
    for s in prange(slot_atom.shape[0]):
        atom = slot_atom[s]
        for d in range(3):
            total = np.int64(0)
            for t in range(n_threads):
                total += thread_forces[t, d, s]
                thread_forces[t, d, s] = 0
            if atom >= 0:
                forces[atom, d] += total
