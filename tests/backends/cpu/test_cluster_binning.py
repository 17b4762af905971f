"""The build's first half: atoms binned into cells and sub-columns, sorted, put in slots; and
the pairing of the search's chunks between threads."""

import numpy as np
import pytest

from bencao.backends.cpu.cluster_binning import bin_atoms, fill_slots, sort_atoms
from bencao.backends.cpu.cluster_pairs_search import balanced_chunk

TRICLINIC = np.array([[4.1, 0.0, 0.0], [1.3, 3.9, 0.0], [-1.2, 1.5, 3.6]])


def _numpy_bins(positions, inverse, ncell, sub):
    """The cells, sort keys, heights and images written as whole-array NumPy expressions (the
    operations of the kernel, in the same order, so the results must agree to the bit)."""
    fractional = (positions[:, :1] * inverse[0] + positions[:, 1:2] * inverse[1]
                  + positions[:, 2:] * inverse[2])
    image = -np.floor(fractional)
    fractional += image
    scaled = np.minimum(fractional * ncell, ncell - 1e-9)
    cell3 = scaled.astype(np.int64)
    cells = (cell3[:, 0] * ncell[1] + cell3[:, 1]) * ncell[2] + cell3[:, 2]
    fraction = scaled - cell3
    column_a = np.minimum((fraction[:, 0] * sub[0]).astype(np.int64), sub[0] - 1)
    column_b = np.minimum((fraction[:, 1] * sub[1]).astype(np.int64), sub[1] - 1)
    column_b = np.where(column_a % 2 == 1, sub[1] - 1 - column_b, column_b)
    column = column_a * sub[1] + column_b
    height = np.where(column % 2 == 1, 1.0 - fraction[:, 2], fraction[:, 2])
    return cells, cells * sub[0] * sub[1] + column, height, image


@pytest.mark.parametrize("box", [np.diag([6.2, 6.2, 6.2]), TRICLINIC])
def test_bin_atoms_agrees_with_the_numpy_expressions(box):
    rng = np.random.default_rng(3)
    # atoms outside the unit cell too, and some on its lattice points (fractions near 0 or 1)
    positions = rng.random((3000, 3)) @ box + rng.normal(0.0, 3.0, (3000, 3))
    positions[:10] = box[0] * rng.integers(-2, 3, (10, 1))
    inverse = np.linalg.inv(box)
    ncell = np.array([4, 3, 3])
    sub = np.array([3, 2])
    n = len(positions)
    cells, key, height, image = (np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n),
                                 np.empty((n, 3)))
    bin_atoms(positions, inverse, np.zeros(3), np.zeros(3), True, ncell, sub, cells, key,
              height, image)
    expected = _numpy_bins(positions, inverse, ncell, sub)
    for got, want in zip((cells, key, height, image), expected):
        np.testing.assert_array_equal(got, want)
    assert cells.min() >= 0 and cells.max() < ncell.prod()
    assert np.all((height >= 0.0) & (height <= 1.0))


def test_sorted_atoms_fill_padded_clusters_in_key_then_height_order():
    rng = np.random.default_rng(5)
    n, n_cells, per_cell_columns = 400, 6, 4
    cells = rng.integers(0, n_cells, n)
    key = cells * per_cell_columns + rng.integers(0, per_cell_columns, n)
    height = rng.random(n).round(2)  # ties, which must keep index order
    order = np.empty(n, np.int64)
    sort_atoms(key, height, n_cells * per_cell_columns, order)
    np.testing.assert_array_equal(order, np.lexsort((np.arange(n), height, key)))

    per_cell = np.bincount(cells, minlength=n_cells)
    first_cluster = np.concatenate(([0], np.cumsum((per_cell + 7) // 8)))
    first_atom = np.concatenate(([0], np.cumsum(per_cell)))
    slot_atom = np.full(first_cluster[-1] * 8, -1, np.int64)
    atom_slot = np.empty(n, np.int64)
    fill_slots(order, cells, first_cluster, first_atom, slot_atom, atom_slot)
    np.testing.assert_array_equal(slot_atom[atom_slot], np.arange(n))
    for cell in range(n_cells):
        run = slot_atom[first_cluster[cell] * 8:first_cluster[cell + 1] * 8]
        real = run[run >= 0]
        # each cell's atoms, in sorted order, first in its run; padding only after them
        np.testing.assert_array_equal(real, order[first_atom[cell]:first_atom[cell + 1]])
        assert np.all(run[:len(real)] >= 0)


@pytest.mark.parametrize("n_chunks", [1, 2, 7, 8, 188, 375])
def test_balanced_chunks_pair_early_and_late_clusters(n_chunks):
    chunks = [balanced_chunk(item, n_chunks) for item in range(n_chunks)]
    assert sorted(chunks) == list(range(n_chunks))  # each chunk searched once
    # work falling linearly with the chunk's index, as in a half list: two threads' halves
    # of the items (a static schedule) hold as much work, to within one chunk's
    work = n_chunks - np.array(chunks)
    half = (n_chunks + 1) // 2
    assert abs(work[:half].sum() - work[half:].sum()) <= n_chunks
