"""Packed pair rows: the compaction intrinsics against NumPy, and the packed kernel against the
masked one."""

import numpy as np
import pytest
from numba import njit

from bencao.backends.cpu import cluster_kernels as kernels
from bencao.backends.cpu.cluster_law import EWALD_COEFFICIENTS, ewald_force_coefficients
from bencao.backends.cpu.cluster_pairs import ClusterPairList
from bencao.backends.common.fixed_point import to_fixed
from bencao.backends.cpu.compaction import (
    BLOCK,
    PACKED_ROWS,
    compact_partners16,
    packing_pays,
    spread_partners16,
)
from bencao.backends.cpu.neighbors import shift_vectors

# The kernels pack rows only on AVX-512 CPUs; for other targets LLVM (20) does not compile
# llvm.experimental.vector.compress (an assertion fails while it legalises the float vector),
# so the packed code is never built there, and neither is it here.
pytestmark = pytest.mark.skipif(not packing_pays(), reason="packed rows need an AVX-512 CPU")


@njit
def _pack(x, y, z, q, hs, e4, columns, slots, column_offsets, shifts, codes, i0, cut2, packed,
          counts, kept, filled):
    for b in range(slots.shape[0] // 2):
        compact_partners16(x, y, z, q, hs, e4, columns, slots[2 * b], slots[2 * b + 1],
                           column_offsets[2 * b], column_offsets[2 * b + 1], shifts,
                           codes[2 * b], codes[2 * b + 1], i0, cut2, packed, counts, kept,
                           filled, b)


@njit
def _spread(x, y, z, slots, shifts, codes, i0, scalars, offsets, kept, filled, i_forces, fx,
            fy, fz):
    for b in range(slots.shape[0] // 2):
        spread_partners16(x, y, z, slots[2 * b], slots[2 * b + 1], shifts, codes[2 * b],
                          codes[2 * b + 1], i0, scalars, offsets, kept, filled, b, i_forces, fx,
                          fy, fz)


def test_packing_keeps_exactly_the_interacting_lanes_in_lane_order():
    """Each of the 8 atoms of a cluster (slots 8-15 here) packs exactly its interacting
    partner lanes, in lane order, read from the slot arrays and moved by each partner's box
    shift; a spare partner (negative mask offset) packs nothing.  Spreading gives each lane
    minus the sum over the atoms of scalar times displacement, in fixed point, and each atom
    the sum of its pair forces lane by lane."""
    rng = np.random.default_rng(11)
    n_slots = 6 * 8
    x, y, z = (rng.uniform(-1.0, 1.0, n_slots).astype(np.float32) for _ in range(3))
    q, hs, e4 = (rng.normal(size=n_slots).astype(np.float32) for _ in range(3))
    slots = np.array([16, 24, 32, 40, 0, 0], np.int64)  # partner clusters' first slots
    codes = np.array([3, 0, 13, 26, 5, 5], np.int64)
    column_offsets = np.array([0, 8, 16, 24, 32, -1], np.int64)  # the last one is spare
    columns = rng.integers(0, 256, 40).astype(np.uint8)
    shifts = rng.uniform(-0.5, 0.5, (27, 3)).astype(np.float32)
    cut2 = np.float32(0.9)
    width = len(slots) * 8
    packed = np.full((8, PACKED_ROWS, width + BLOCK), np.nan, np.float32)
    counts = np.zeros(8, np.int64)
    kept = np.zeros((8, width // BLOCK), np.int32)
    filled = np.zeros(width // BLOCK, np.int32)
    _pack(x, y, z, q, hs, e4, columns, slots, column_offsets, shifts, codes, 8, cut2, packed,
          counts, kept, filled)
    # the atoms that kept a lane of each block, the ones the spread visits: the case must
    # have (atom, block) pairs of both kinds for the spread below to test the skipping
    assert np.array_equal(filled, ((kept != 0) << np.arange(8)[:, None]).sum(axis=0))
    assert (kept == 0).any() and (kept != 0).any()

    lane_slot = (slots[:, None] + np.arange(8)).ravel()
    lane_shift = shifts[np.repeat(codes, 8)]
    lane_mask = np.concatenate([columns[c:c + 8] if c >= 0 else np.zeros(8, np.int32)
                                for c in column_offsets])
    xj, yj, zj = (coordinate[lane_slot] + lane_shift[:, k]
                  for k, coordinate in enumerate((x, y, z)))
    scalars = rng.normal(size=(8, width + BLOCK)).astype(np.float32)
    expected_j = np.zeros((3, width), np.float32)
    expected_i = np.zeros((8, 3, BLOCK), np.float32)
    lanes = np.arange(width).reshape(-1, BLOCK)
    for a in range(8):
        dx, dy, dz = x[8 + a] - xj, y[8 + a] - yj, z[8 + a] - zj
        # the kernel's r^2: fused multiply-adds, each rounded once (float64 products of
        # float32 values are exact, so rounding the float64 sum is one float32 rounding)
        r2 = (dz.astype(np.float64) ** 2 + np.float32(
            dy.astype(np.float64) ** 2 + np.float32(dx * dx))).astype(np.float32)
        keep = ((lane_mask & (1 << a)) != 0) & (r2 < cut2)
        assert 0 < keep.sum() < width and not keep[-8:].any()  # both outcomes; spare: none
        assert counts[a] == keep.sum()
        for row, values in enumerate((r2, q[lane_slot], hs[lane_slot], e4[lane_slot])):
            assert np.array_equal(packed[a, row, :counts[a]], values[keep])
        bits = (kept[a][:, None] >> np.arange(BLOCK)[None, :]) & 1
        assert np.array_equal(bits.astype(bool).ravel(), keep[lanes.ravel()])
        scalar = np.zeros(width, np.float32)
        scalar[keep] = scalars[a, :counts[a]]
        for k, d in enumerate((dx, dy, dz)):
            force = scalar * d
            expected_j[k] = expected_j[k] - force
            for block in lanes:
                expected_i[a, k] = expected_i[a, k] + force[block]

    fx, fy, fz = (np.zeros(n_slots, np.int64) for _ in range(3))
    offsets = np.zeros(8, np.int64)
    i_forces = np.zeros((8, 3, BLOCK), np.float32)
    _spread(x, y, z, slots, shifts, codes, 8, scalars, offsets, kept, filled, i_forces, fx, fy,
            fz)
    assert np.array_equal(offsets, counts)
    assert np.array_equal(i_forces, expected_i)
    for k, spread in enumerate((fx, fy, fz)):
        expected = np.zeros(n_slots, np.int64)
        np.add.at(expected, lane_slot, [to_fixed(value) for value in expected_j[k]])
        assert np.array_equal(spread, expected)


def _kernel_forces(positions, box, cutoff, coulomb_kind, switching, packing, exclusions):
    rng = np.random.default_rng(5)
    n = len(positions)
    nl = ClusterPairList(n, cutoff, 0.3, exclusions, True)
    nl.build(positions, box)
    moved = positions + rng.normal(0.0, 0.02, positions.shape)
    slots = len(nl.slot_atom)
    x, y, z = (np.empty(slots, np.float32) for _ in range(3))
    nl.coordinates(moved, box, x, y, z)
    real = nl.slot_atom >= 0
    atom = np.maximum(nl.slot_atom, 0)
    charge = np.where(real, np.resize([-0.8, 0.4, 0.4], n)[atom], 0.0).astype(np.float32)
    half_sigma = np.where(real, 0.15, 0.0).astype(np.float32)
    sqrt_4epsilon = np.where(real, np.resize([1.2, 0.0, 0.0], n)[atom], 0.0).astype(np.float32)
    ewald = (ewald_force_coefficients(3.12, cutoff) if coulomb_kind == kernels.COULOMB_EWALD
             else np.zeros(EWALD_COEFFICIENTS))
    thread_forces = np.zeros((kernels.numba.config.NUMBA_NUM_THREADS, 3, slots), np.int64)
    kernels.cluster_pairs_kernel(
        x, y, z, charge, half_sigma, sqrt_4epsilon, nl.inner_j, nl.inner_shift,
        nl.inner_columns, nl.inner_counts, shift_vectors(box).astype(np.float32), cutoff**2,
        coulomb_kind, ewald.astype(np.float32), 0.4, switching, 0.7, cutoff, thread_forces,
        packing=packing)
    forces = np.zeros((n, 3))
    forces[nl.slot_atom[real]] = thread_forces.sum(axis=0).T[real] / 2.0**32
    return forces


# Ewald with the LJ switch and reaction field without it: both Coulomb laws, both LJ forms
# (each case compiles two kernels, ~10 s each; the default suite runs Ewald alone, packed, in
# the determinism and openmmtools tests)
@pytest.mark.parametrize("coulomb_kind, switching", [
    (kernels.COULOMB_EWALD, True), (kernels.COULOMB_REACTION_FIELD, False)])
def test_packed_rows_give_the_forces_of_masked_rows(coulomb_kind, switching):
    """Both row forms evaluate the same law on the same pairs; they differ only in the order
    of the i atoms' float32 sums (the packed row sums no zeros).  Water-like triplets with
    their intramolecular pairs excluded, so the exclusion masks are exercised too."""
    rng = np.random.default_rng(6)
    grid = np.arange(11) * 0.3
    positions = np.stack(np.meshgrid(grid, grid, grid), -1).reshape(-1, 3)
    positions = positions + rng.normal(0.0, 0.03, positions.shape)
    n = len(positions) // 3 * 3
    positions = positions[:n]
    exclusions = np.array([(3 * w + a, 3 * w + b) for w in range(n // 3)
                           for a, b in ((0, 1), (0, 2), (1, 2))], np.int64)
    box = np.diag([3.3, 3.3, 3.3])
    packed = _kernel_forces(positions, box, 0.9, coulomb_kind, switching, True, exclusions)
    masked = _kernel_forces(positions, box, 0.9, coulomb_kind, switching, False, exclusions)
    scale = np.abs(masked).max()
    assert scale > 10.0
    assert not np.array_equal(packed, masked)  # the sums' order differs...
    # ...by float32 roundings of sums of ~150 terms: a few 1e-7 of the largest force
    assert np.abs(packed - masked).max() < 2e-6 * scale
