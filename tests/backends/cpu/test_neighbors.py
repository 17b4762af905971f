"""Cell lists and Verlet half lists: every pair within the list radius, once, with its image."""

import numpy as np
import pytest

from bencao.backends.cpu.neighbors import (
    SHIFT_BITS,
    SHIFT_MASK,
    NeighborList,
    minimum_image,
    shift_vectors,
)

BOXES = {
    "cube": np.diag([3.3, 3.3, 3.3]),
    "dodecahedron": np.array([[3.6, 0, 0], [0, 3.6, 0], [1.8, 1.8, 3.6 * np.sqrt(2) / 2]]),
    "octahedron": np.array(
        [[3.9, 0, 0], [1.3, 3.9 * 2 * np.sqrt(2) / 3, 0], [-1.3, 3.9 * np.sqrt(2) / 3, 3.9 * np.sqrt(6) / 3]]
    ),
    "small": np.diag([2.2, 2.2, 2.2]),  # fewer than three cells: minimum-image mode
}


def _true_nearest(positions, box):
    """Brute force: displacement to the nearest image over all 125 shifts."""
    d = positions[None, :, :] - positions[:, None, :]
    best = np.full(d.shape[:2], np.inf)
    w = np.array([(a, b, c) for a in range(-2, 3) for b in range(-2, 3) for c in range(-2, 3)])
    for shift in w @ box:
        best = np.minimum(best, np.linalg.norm(d + shift, axis=2))
    return best


def _listed_pairs(nl, positions, box):
    """{(a, b): distance} from the list, in original indices, with the stored image."""
    sorted_pos = nl.sorted_positions(positions, box)
    shifts = shift_vectors(box)
    pairs = {}
    for i in range(nl.n):
        for entry in nl.neighbors[i, : nl.counts[i]]:
            j, code = entry >> SHIFT_BITS, entry & SHIFT_MASK
            d = sorted_pos[j] - sorted_pos[i] + shifts[code]
            if nl.minimum_image_mode:
                d = np.array(minimum_image(*d, box, True))
            key = tuple(sorted((int(nl.order[i]), int(nl.order[j]))))
            assert key not in pairs, "pair listed twice"
            pairs[key] = np.linalg.norm(d)
    return pairs


@pytest.mark.parametrize("shape", sorted(BOXES))
def test_half_list_has_every_pair_within_rlist_once(shape):
    box = BOXES[shape]
    rng = np.random.default_rng(1)
    positions = rng.uniform(-1.0, 1.0, (400, 3)) @ box  # also outside the unit cell
    exclusions = np.array([[0, 1], [5, 9], [9, 5]])
    nl = NeighborList(len(positions), 0.8, 0.15, exclusions, periodic=True)
    nl.build(positions, box)
    listed = _listed_pairs(nl, positions, box)
    nearest = _true_nearest(positions, box)
    expected = {(a, b) for a in range(400) for b in range(a + 1, 400) if nearest[a, b] < 0.95}
    expected -= {(0, 1), (5, 9)}
    within = {k for k, r in listed.items() if r < 0.95}
    assert within == expected
    # the stored image is the nearest one (so the kernels need no minimum image)
    for (a, b), r in listed.items():
        if r < 0.8:
            assert r == pytest.approx(nearest[a, b], abs=1e-12)


def test_non_periodic_and_all_pairs():
    rng = np.random.default_rng(2)
    positions = rng.uniform(0, 4, (300, 3))
    nl = NeighborList(300, np.inf, 0.1, np.zeros((0, 2), int), periodic=False)
    nl.build(positions, None)
    assert int(nl.counts.sum()) == 300 * 299 // 2
    nl = NeighborList(300, 1.0, 0.1, np.zeros((0, 2), int), periodic=False)
    nl.build(positions, None)
    distance = np.linalg.norm(positions[:, None] - positions[None], axis=2)
    assert int(nl.counts.sum()) == int(np.triu(distance < 1.1, 1).sum())


def test_rebuild_only_when_an_atom_moves_half_the_buffer():
    box = BOXES["cube"]
    positions = np.random.default_rng(3).uniform(0, 3.3, (200, 3))
    nl = NeighborList(200, 1.0, 0.2, np.zeros((0, 2), int), periodic=True)
    assert nl.update(positions, box)
    moved = positions.copy()
    moved[7, 0] += 0.099  # under half the buffer
    assert not nl.update(moved, box)
    moved[7, 0] += 0.002  # past half the buffer
    assert nl.update(moved, box)
    assert nl.update(moved, box * 1.01)  # a new box always rebuilds
    assert nl.builds == 3


def test_cutoff_larger_than_half_the_box_is_refused():
    nl = NeighborList(10, 1.2, 0.1, np.zeros((0, 2), int), periodic=True)
    with pytest.raises(ValueError, match="half the smallest box"):
        nl.build(np.zeros((10, 3)), np.eye(3) * 2.0)
