"""Cluster-pair lists: every pair inside the cutoff listed exactly once, exclusions never."""

import numpy as np
import pytest

from bencao.backends.cpu.cluster_law import EWALD_COEFFICIENTS, ewald_force_coefficients
from bencao.backends.cpu.cluster_pairs import ClusterPairList
from bencao.backends.cpu.neighbors import minimum_image, shift_vectors


def _listed_pairs(nl, positions, box, cutoff):
    """{(atom a, atom b): count} of the listed pairs closer than ``cutoff`` (nm)."""
    slots = len(nl.slot_atom)
    x, y, z = (np.empty(slots, np.float32) for _ in range(3))
    nl.coordinates(positions, box, x, y, z)
    xyz = np.stack([x, y, z], axis=1).astype(np.float64)
    shifts = shift_vectors(box if nl.periodic else None)
    found = {}
    for ci in range(nl.n_clusters):
        for k in range(nl.counts[ci]):
            cj, mask = nl.pair_j[ci, k], int(nl.pair_mask[ci, k])
            shift = shifts[nl.pair_shift[ci, k]]
            for a in range(8):
                for b in range(8):
                    if not (mask >> (8 * a + b)) & 1:
                        continue
                    d = xyz[cj * 8 + b] + shift - xyz[ci * 8 + a]
                    if np.linalg.norm(d) < cutoff:
                        pair = tuple(sorted((nl.slot_atom[ci * 8 + a], nl.slot_atom[cj * 8 + b])))
                        found[pair] = found.get(pair, 0) + 1
    return found


def _expected_pairs(positions, box, cutoff, excluded):
    n = len(positions)
    reduced = np.eye(3) if box is None else box
    expected = set()
    for i in range(n):
        for j in range(i + 1, n):
            d = positions[j] - positions[i]
            d = np.array(minimum_image(d[0], d[1], d[2], reduced, box is not None))
            if np.linalg.norm(d) < cutoff and (i, j) not in excluded:
                expected.add((i, j))
    return expected


@pytest.mark.parametrize("box", [
    None,  # no periodic boundaries
    np.diag([2.3, 2.3, 2.3]),  # under three cells wide: clusters meet themselves through shifts
    np.array([[4.1, 0.0, 0.0], [1.3, 3.9, 0.0], [-1.2, 1.5, 3.6]]),  # triclinic, several cells
])
def test_every_pair_within_the_cutoff_is_listed_once(box):
    rng = np.random.default_rng(7)
    cutoff, buffer = 1.0, 0.1
    n = 500
    if box is None:
        positions = rng.random((n, 3)) * 3.0
    else:
        positions = rng.random((n, 3)) @ box + rng.normal(0.0, 1.5, (n, 3))  # outside the cell too
    excluded = {tuple(sorted(p)) for p in rng.integers(0, n, (300, 2)) if p[0] != p[1]}
    nl = ClusterPairList(n, cutoff, buffer, np.array(sorted(excluded)), box is not None)
    nl.build(positions, box)
    found = _listed_pairs(nl, positions, box, cutoff - 1e-6)
    expected = _expected_pairs(positions, box, cutoff - 1e-6, excluded)
    assert set(found) == expected
    assert set(found.values()) == {1}  # never twice (a double count doubles a force)


def _exact_ewald_force(alpha, r):
    """S(r)/r^3 = (erfc(alpha r)/r + 2 alpha/sqrt(pi) exp(-alpha^2 r^2)) / r^2, float64."""
    from scipy.special import erfc

    return (erfc(alpha * r) / r + 2 * alpha / np.sqrt(np.pi) * np.exp(-(alpha * r) ** 2)) / r**2


@pytest.mark.parametrize("alpha, cutoff", [(2.5, 0.9), (2.92, 0.9), (3.12, 0.9), (3.5, 0.9),
                                           (9.43, 0.279)])
def test_ewald_force_law_keeps_relative_accuracy_up_to_the_cutoff(alpha, cutoff):
    """The float32 law in the kernel, run on its own, against scipy's erfc in float64.  The
    force near the cutoff is ~3e-3 of 1/r^3; the law must be accurate relative to the force
    itself there, not to 1/r^3 (1/r^3 minus a polynomial is off by up to ~5e-5 relative).
    Small boxes have short cutoffs and large alphas (openmmtools' SodiumChlorideCrystal: 9.43
    /nm, 0.279 nm)."""
    from bencao.backends.cpu.cluster_law import _ewald_force

    coefficients = ewald_force_coefficients(alpha, cutoff).astype(np.float32)
    r = np.linspace(0.03, cutoff, 3001).astype(np.float32)
    r2 = r * r
    inv_r = (1.0 / np.sqrt(r2.astype(np.float64))).astype(np.float32)
    ours = np.array([_ewald_force(a, b, tuple(coefficients)) for a, b in zip(r2, inv_r)])
    exact = _exact_ewald_force(alpha, np.sqrt(r2.astype(np.float64)))
    # ~15 float32 roundings along the way (6e-8 each) and the fits' 1.5e-7: 1e-6 bounds them
    assert np.max(np.abs(ours / exact - 1)) < 1e-6


def test_ewald_force_coefficients_refuse_an_unreachable_accuracy():
    with pytest.raises(ValueError, match="misses its accuracy.*Ewald error tolerance"):
        ewald_force_coefficients(8.0, 0.9)
    # 2^-y would leave float32's exponent range at the cutoff
    with pytest.raises(ValueError, match="not available for alpha = 40"):
        ewald_force_coefficients(40.0, 0.3)


def test_skipping_distant_partners_changes_no_force():
    """The kernel skips partner clusters now beyond the cutoff; the forces must match the
    kernel that evaluates every listed pair, to float32 summation order (the skipped pairs
    contribute exact zeros; only the order of the remaining float32 sums changes)."""
    from bencao.backends.cpu import cluster_kernels as kernels

    rng = np.random.default_rng(3)
    cutoff, buffer = 0.9, 0.3
    box = np.diag([3.3, 3.3, 3.3])
    grid = np.arange(11) * 0.3  # a jittered lattice: no overlaps, so no huge forces
    positions = np.stack(np.meshgrid(grid, grid, grid), -1).reshape(-1, 3)
    positions = positions + rng.normal(0.0, 0.03, positions.shape)
    n = len(positions)
    nl = ClusterPairList(n, cutoff, buffer, np.zeros((0, 2), np.int64), True)
    nl.build(positions, box)
    moved = positions + rng.normal(0.0, 0.03, (n, 3))  # atoms moved since the build
    slots = len(nl.slot_atom)
    x, y, z = (np.empty(slots, np.float32) for _ in range(3))
    nl.coordinates(moved, box, x, y, z)
    charge = np.where(nl.slot_atom >= 0, rng.choice([-0.8, 0.4], slots), 0.0).astype(np.float32)
    half_sigma = np.full(slots, 0.15, np.float32)
    sqrt_4epsilon = np.zeros(slots, np.float32)  # Coulomb only: LJ would dwarf the far pairs
    results = []
    for skip in (True, False):
        thread_forces = np.zeros((kernels.numba.config.NUMBA_NUM_THREADS, 3, slots), np.int64)
        kernels.cluster_pairs_kernel(
            x, y, z, charge, half_sigma, sqrt_4epsilon, nl.inner_j, nl.inner_shift,
            nl.inner_columns, nl.inner_counts, shift_vectors(box).astype(np.float32), cutoff**2,
            # cut-off Coulomb (reaction field with krf = 0): pairs near the cutoff still carry
            # force, so skipping one that is inside would show
            kernels.COULOMB_REACTION_FIELD, np.zeros(EWALD_COEFFICIENTS), 0.0, False, 0.0, cutoff,
            thread_forces, skip_distant=skip)
        results.append(thread_forces.sum(axis=0) / 2.0**32)
    skipped, full = results
    scale = np.abs(full).max()
    assert scale > 1.0
    # float32 sums of ~100 terms in another order: a few 1e-7 of the largest force
    assert np.abs(skipped - full).max() < 1e-5 * scale


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_near_partners_keeps_the_partners_whose_box_comes_within_reach(dtype):
    """The kernels' per-step test, whose boxes move 8 at a time through
    ``gather_rows8_transposed``: the partners kept are exactly those whose shifted bounding box
    comes within reach of an atom of i, in list order.  The reference repeats the arithmetic
    in NumPy in the same precision and order, so the lists must be identical; the triclinic box
    gives every shift code, and counts that are not whole blocks of 8 test the tail."""
    from numba import njit

    from bencao.backends.cpu.cluster_kernels import box_shifts8, cluster_bounds
    from bencao.backends.cpu.cluster_pairs_search import (
        NEAR_ROWS,
        near_partners,
        near_scratch_columns,
    )

    @njit
    def kept(x, y, z, pair_j, pair_shift, counts, bounds, shifts8, reach2, out):
        near = np.empty((NEAR_ROWS, near_scratch_columns(pair_j.shape[1])), x.dtype)
        partners = np.empty(pair_j.shape[1], np.int64)
        for ci in range(counts.shape[0]):
            n = near_partners(x, y, z, pair_j, pair_shift, ci, counts[ci], bounds, shifts8,
                              near, reach2, partners)
            out[ci, :n] = partners[:n]
            out[ci, n:] = -1

    rng = np.random.default_rng(21)
    box = np.array([[4.1, 0.0, 0.0], [1.3, 3.9, 0.0], [-1.2, 1.5, 3.6]])
    positions = _jittered_lattice(rng, edge=3.6)[:1500]
    nl = ClusterPairList(len(positions), 0.9, 0.3, np.zeros((0, 2), np.int64), True)
    nl.build(positions, box)
    moved = positions + rng.normal(0.0, 0.04, positions.shape)
    slots = len(nl.slot_atom)
    x, y, z = (np.empty(slots, np.float32) for _ in range(3))
    nl.coordinates(moved, box, x, y, z)
    x, y, z = (c.astype(dtype) for c in (x, y, z))
    shifts = shift_vectors(box).astype(dtype)
    bounds = np.empty((nl.n_clusters, 8), dtype)
    cluster_bounds(x, y, z, bounds)
    reach2 = dtype(0.9**2)
    out = np.empty((nl.n_clusters, nl.pair_j.shape[1]), np.int64)
    kept(x, y, z, nl.pair_j, nl.pair_shift, nl.counts, bounds, box_shifts8(shifts), reach2, out)
    xyz = np.stack([x, y, z], axis=1)
    dropped = kept_total = 0
    for ci in range(nl.n_clusters):
        m = nl.counts[ci]
        cj = nl.pair_j[ci, :m]
        shift = shifts[nl.pair_shift[ci, :m]]
        low = np.stack([xyz[cj * 8 + b] for b in range(8)]).min(axis=0) + shift
        high = np.stack([xyz[cj * 8 + b] for b in range(8)]).max(axis=0) + shift
        atoms = xyz[ci * 8:ci * 8 + 8, None, :]
        gap = np.maximum(np.maximum(np.zeros((), dtype), low - atoms), atoms - high)
        squares = gap * gap
        distance2 = (squares[..., 0] + squares[..., 1]) + squares[..., 2]
        expected = np.flatnonzero(distance2.min(axis=0) < reach2)
        assert list(out[ci, :len(expected)]) == list(expected)
        assert (out[ci, len(expected):] == -1).all()
        dropped += m - len(expected)
        kept_total += len(expected)
    assert dropped > 0 and kept_total > 0  # both outcomes occur
    assert (nl.counts % 8 != 0).any()


def test_rebuilding_in_kept_storage_equals_a_fresh_build():
    """Rebuilds reuse the list's storage (views of its first rows); a list that has been built
    on other positions, with another number of clusters, must equal a fresh one."""
    rng = np.random.default_rng(11)
    box = np.diag([3.0, 3.0, 3.0])
    n = 900
    first = rng.random((n, 3)) * 3.0
    second = rng.random((n, 3)) * 3.0
    second[: n // 3] *= 0.5  # crowd one corner: other cell counts, other cluster counts
    excluded = np.array(sorted({tuple(sorted(p)) for p in rng.integers(0, n, (400, 2))
                                if p[0] != p[1]}))
    used = ClusterPairList(n, 0.9, 0.15, excluded, True)
    used.build(first, box)
    clusters_before = used.n_clusters
    used.build(second, box)
    fresh = ClusterPairList(n, 0.9, 0.15, excluded, True)
    fresh.build(second, box)
    assert used.n_clusters != clusters_before  # the case of interest
    assert np.array_equal(used.slot_atom, fresh.slot_atom)
    assert np.array_equal(used.counts, fresh.counts)
    for ci in range(fresh.n_clusters):
        listed = slice(0, fresh.counts[ci])
        for name in ("pair_j", "pair_shift", "pair_mask", "pair_columns"):
            assert np.array_equal(getattr(used, name)[ci, listed], getattr(fresh, name)[ci, listed])


@pytest.mark.parametrize("blocks", [1, 3, 4, 5, 11])
def test_sum_blocks8_adds_in_its_documented_order(blocks):
    """The pair kernel's i-force sums must not depend on the code LLVM generates: the order is
    written out in ``sum_blocks8`` (four 8-lane chains in rotation, the tail into chain 0, the
    chains pairwise, the lanes pairwise).  Emulated here in float32 step by step."""
    from numba import njit

    from bencao.backends.cpu.simd8 import sum_blocks8

    @njit
    def run(values, start, count):
        return sum_blocks8(values, start, count)

    rng = np.random.default_rng(blocks)
    # magnitudes over 6 decades, so that any other order rounds differently
    values = (rng.normal(size=8 * blocks + 16) * 10.0 ** rng.integers(-3, 3, 8 * blocks + 16))
    values = values.astype(np.float32)
    start = 8
    data = values[start:start + 8 * blocks].reshape(blocks, 8)
    chains = np.zeros((4, 8), np.float32)
    whole = blocks // 4 * 4
    for k in range(whole):
        chains[k % 4] += data[k]
    for k in range(whole, blocks):
        chains[0] += data[k]
    total = (chains[0] + chains[1]) + (chains[2] + chains[3])
    lanes = [total[2 * k] + total[2 * k + 1] for k in range(4)]
    expected = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
    assert run(values, start, 8 * blocks) == expected


def test_masks_by_column_transpose_the_pair_masks():
    """``pair_columns`` (what the kernels read) holds each 64-bit mask column by column, for
    plain pairs (padding alone) and for pairs with exclusions or a cluster's own triangle."""
    rng = np.random.default_rng(12)
    box = np.diag([3.0, 3.0, 3.0])
    positions = _jittered_lattice(rng, edge=3.0)[:997]  # odd: cells end in padded clusters
    n = len(positions)
    exclusions = np.array([(a, a + 1) for a in range(0, n - 1, 3)], np.int64)
    nl = ClusterPairList(n, 0.9, 0.2, exclusions, True)
    nl.build(positions, box)
    assert (nl.slot_atom < 0).any()
    bits = range(8)
    for ci in range(nl.n_clusters):
        for k in range(nl.counts[ci]):
            mask = int(nl.pair_mask[ci, k]) & (2**64 - 1)  # the int64's bits, unsigned
            expected = [sum(((mask >> (8 * a + b)) & 1) << a for a in bits) for b in bits]
            assert list(nl.pair_columns[ci, k]) == expected


def test_add_fixed8_converts_as_to_fixed():
    """The pair kernel's vector conversion (float32 throughout) adds exactly what
    ``fixed_point.to_fixed`` gives for each value widened to float64, clamping included."""
    from numba import njit

    from bencao.backends.common.fixed_point import to_fixed
    from bencao.backends.cpu.simd8 import add_fixed8
    from bencao.constants import FORCE_CLAMP

    @njit
    def run(acc, values):
        for k in range(values.shape[0] // 8):
            add_fixed8(acc, 8 * k, values, 8 * k)

    rng = np.random.default_rng(9)
    values = (rng.normal(size=64) * 10.0 ** rng.integers(-9, 6, 64)).astype(np.float32)
    values[:4] = [3.0 * FORCE_CLAMP, -3.0 * FORCE_CLAMP, np.float32(FORCE_CLAMP), 1e-30]
    start = rng.integers(-2**40, 2**40, 64)
    acc = start.copy()
    run(acc, values)
    expected = start + np.array([to_fixed(np.float64(v)) for v in values])
    assert np.array_equal(acc, expected)


def _inner_pairs(nl, positions, box, cutoff):
    """(count of distinct pairs, largest multiplicity) of the inner list's atom pairs closer
    than ``cutoff`` (nm), as a set of (atom a, atom b) with a < b and the counts (vectorised:
    ~1e6 candidate pairs)."""
    slots = len(nl.slot_atom)
    xyz = np.empty((3, slots))
    nl.coordinates(positions, box, *xyz)
    xyz = xyz.T
    shifts = shift_vectors(box)
    ci = np.repeat(np.arange(nl.n_clusters), nl.inner_counts)
    k = np.concatenate([np.arange(c) for c in nl.inner_counts])
    cj, shift, columns = nl.inner_j[ci, k], shifts[nl.inner_shift[ci, k]], nl.inner_columns[ci, k]
    a = np.arange(8)[:, None]
    b = np.arange(8)[None, :]
    use = (columns[:, None, :] >> a[None]) & 1 == 1  # (entries, a, b)
    e, a, b = np.nonzero(use)
    d = xyz[cj[e] * 8 + b] + shift[e] - xyz[ci[e] * 8 + a]
    near = np.linalg.norm(d, axis=1) < cutoff
    first = nl.slot_atom[ci[e] * 8 + a][near]
    second = nl.slot_atom[cj[e] * 8 + b][near]
    pairs = np.sort(np.stack([first, second], 1), axis=1)
    unique, counts = np.unique(pairs, axis=0, return_counts=True)
    return {tuple(p) for p in unique}, counts.max()


def _cubic_pairs(positions, edge, cutoff, excluded):
    """The pairs (a < b) closer than ``cutoff`` in a periodic cube, without ``excluded``."""
    i, j = np.triu_indices(len(positions), 1)
    d = positions[j] - positions[i]
    d -= edge * np.round(d / edge)
    near = np.linalg.norm(d, axis=1) < cutoff
    return {(a, b) for a, b in zip(i[near], j[near])} - excluded


def _jittered_lattice(rng, edge=3.3, spacing=0.3):
    grid = np.arange(round(edge / spacing)) * spacing
    positions = np.stack(np.meshgrid(grid, grid, grid), -1).reshape(-1, 3)
    return positions + rng.normal(0.0, 0.03, positions.shape)


def test_pruned_list_keeps_every_pair_within_the_cutoff_until_the_next_prune():
    """Atoms drift in small steps; the inner list is cut whenever the two largest displacements
    since the last cut reach its buffer, and at every step it must still hold each pair inside
    the cutoff once, while holding fewer partners than the outer list."""
    rng = np.random.default_rng(21)
    box = np.diag([3.3, 3.3, 3.3])
    positions = _jittered_lattice(rng)
    n = len(positions)
    excluded = np.array(sorted({tuple(sorted(p)) for p in rng.integers(0, n, (300, 2))
                                if p[0] != p[1]}))
    cutoff = 0.9
    nl = ClusterPairList(n, cutoff, 0.4, excluded, True, prune_buffer=0.1)
    nl.update(positions, box)
    for _ in range(6):
        positions = positions + rng.normal(0.0, 0.012, positions.shape)
        nl.update(positions, box)
        found, most = _inner_pairs(nl, positions, box, cutoff - 1e-6)
        assert found == _cubic_pairs(positions, 3.3, cutoff - 1e-6, {tuple(p) for p in excluded})
        assert most == 1  # never twice (a double count doubles a force)
    assert nl.builds == 1 and nl.prunes > 2  # the case of interest: pruned between builds
    assert nl.inner_counts.sum() < 0.8 * nl.counts.sum()


def test_forces_do_not_depend_on_when_the_inner_list_was_cut():
    """The inner list holds every partner the kernel's per-step test keeps, in the outer list's
    order, so forces are bit-identical whether it was cut long ago or just now (a restart or
    another prune schedule changes nothing)."""
    from bencao.backends.cpu import cluster_kernels as kernels

    rng = np.random.default_rng(4)
    box = np.diag([3.3, 3.3, 3.3])
    start = _jittered_lattice(rng)
    n = len(start)
    middle = start + rng.normal(0.0, 0.01, start.shape)
    now = middle + rng.normal(0.0, 0.01, start.shape)
    forces = []
    for cut_at in (start, middle, now):
        nl = ClusterPairList(n, 0.9, 0.4, np.zeros((0, 2), np.int64), True, prune_buffer=0.15)
        nl.build(start, box)
        nl.prune(cut_at, box)
        slots = len(nl.slot_atom)
        x, y, z = (np.empty(slots, np.float32) for _ in range(3))
        nl.coordinates(now, box, x, y, z)
        charge = np.where(nl.slot_atom >= 0, np.resize([-0.8, 0.4, 0.4], slots), 0.0)
        thread_forces = np.zeros((kernels.numba.config.NUMBA_NUM_THREADS, 3, slots), np.int64)
        kernels.cluster_pairs_kernel(
            x, y, z, charge.astype(np.float32), np.full(slots, 0.15, np.float32),
            np.full(slots, 0.5, np.float32), nl.inner_j, nl.inner_shift, nl.inner_columns,
            nl.inner_counts, shift_vectors(box).astype(np.float32), 0.81,
            kernels.COULOMB_REACTION_FIELD, np.zeros(EWALD_COEFFICIENTS), 0.0, False, 0.0, 0.9,
            thread_forces)
        forces.append(thread_forces.sum(axis=0))
    assert np.array_equal(forces[0], forces[1]) and np.array_equal(forces[0], forces[2])


def test_checkpoint_state_restores_the_pruned_list():
    """A list restored from ``get_state`` (build and prune positions) equals the list it was
    saved from, inner list included; without pruning the state holds the build alone."""
    rng = np.random.default_rng(8)
    box = np.diag([3.3, 3.3, 3.3])
    positions = _jittered_lattice(rng)
    n = len(positions)
    used = ClusterPairList(n, 0.9, 0.4, np.zeros((0, 2), np.int64), True, prune_buffer=0.1)
    for _ in range(4):
        positions = positions + rng.normal(0.0, 0.012, positions.shape)
        used.update(positions, box)
    assert used.prunes > used.builds  # pruned since the build
    state = used.get_state()
    restored = ClusterPairList(n, 0.9, 0.4, np.zeros((0, 2), np.int64), True, prune_buffer=0.1)
    restored.set_state(state)
    assert np.array_equal(restored.inner_counts, used.inner_counts)
    for ci in range(used.n_clusters):
        listed = slice(0, used.inner_counts[ci])
        for name in ("inner_j", "inner_shift", "inner_columns"):
            assert np.array_equal(getattr(restored, name)[ci, listed], getattr(used, name)[ci, listed])
    unpruned = ClusterPairList(n, 0.9, 0.2, np.zeros((0, 2), np.int64), True)
    unpruned.update(positions, box)
    assert set(unpruned.get_state()) == {"reference", "box"}
