"""The float64 energy pass of the cluster-pair list against a direct sum with the exact erfc."""

import numpy as np
import pytest
from scipy.special import erfc

from bencao.backends.cpu.cluster_energies import (
    cluster_pairs_energy,
    ewald_energy_polynomial,
)
from bencao.backends.cpu.cluster_pairs import ClusterPairList
from bencao.backends.cpu.compaction import packing_pays
from bencao.backends.cpu.neighbors import shift_vectors

# packed rows are built only for AVX-512 CPUs (LLVM cannot compile them for others)
PACKED = pytest.param(True, marks=pytest.mark.skipif(not packing_pays(),
                                                     reason="packed rows need an AVX-512 CPU"))


def test_energy_polynomial_reproduces_erfc_to_float64_rounding():
    alpha, cutoff = 3.47, 0.9  # OpenMM's PME alpha for a 0.9 nm cutoff at tolerance 5e-4
    p = ewald_energy_polynomial(alpha, cutoff)
    r = np.linspace(0.02, cutoff, 2000)
    u = 2 * r * r / cutoff**2 - 1
    energy = 1 / r - np.polyval(p, u)
    # relative to the largest term of the pair energy (1/r): ~1e-14 is the fit's rounding
    assert np.max(np.abs(energy - erfc(alpha * r) / r) * r) < 1e-13


def _lattice(rng, edge, spacing):
    grid = np.arange(round(edge / spacing)) * spacing
    positions = np.stack(np.meshgrid(grid, grid, grid), -1).reshape(-1, 3)
    return positions + rng.normal(0.0, 0.03 * spacing / 0.3, positions.shape)


@pytest.mark.parametrize("packing", [PACKED, False], ids=["packed", "masked"])
@pytest.mark.parametrize("kind, switch", [(2, 0.0), (2, 0.75), (1, 0.0), (0, 0.0)])
def test_cluster_energy_pass_matches_a_direct_float64_sum(kind, switch, packing):
    """Both row forms (packed pairs inside the cutoff, or every lane masked) against a direct
    sum over all pairs."""
    rng = np.random.default_rng(5)
    cutoff, buffer, edge = 0.9, 0.2, 3.0
    box = np.diag([edge] * 3)
    positions = _lattice(rng, edge, 0.3)
    n = len(positions)
    excluded = {tuple(sorted(p)) for p in rng.integers(0, n, (200, 2)) if p[0] != p[1]}
    charges = rng.choice([-0.8, 0.4], n) * np.sqrt(138.935456)
    sigma = rng.uniform(0.15, 0.35, n)
    epsilon = rng.uniform(0.0, 0.8, n)
    alpha, krf, crf = 3.12, 0.5, 1.6
    nl = ClusterPairList(n, cutoff, buffer, np.array(sorted(excluded)), True, prune_buffer=0.1)
    nl.build(positions, box)
    moved = positions + rng.normal(0.0, 0.01, positions.shape)  # within the buffers
    nl.update(moved, box)
    slots = nl.slot_atom
    atoms = np.maximum(slots, 0)
    real = slots >= 0
    x, y, z = (np.empty(len(slots)) for _ in range(3))
    nl.coordinates(moved, box, x, y, z)
    out = np.zeros(nl.n_clusters)
    cluster_pairs_energy(
        x, y, z, np.where(real, charges[atoms], 0.0), np.where(real, 0.5 * sigma[atoms], 0.0),
        np.where(real, np.sqrt(4 * epsilon[atoms]), 0.0), nl.inner_j, nl.inner_shift,
        nl.inner_columns, nl.inner_counts, shift_vectors(box), cutoff**2, kind,
        ewald_energy_polynomial(alpha, cutoff), krf, crf, switch > 0, switch, cutoff, out,
        packing=packing)
    i, j = np.triu_indices(n, 1)
    keep = np.array([(a, b) not in excluded for a, b in zip(i, j)])
    i, j = i[keep], j[keep]
    d = moved[j] - moved[i]
    d -= edge * np.round(d / edge)  # minimum image in the cubic box
    r = np.linalg.norm(d, axis=1)
    inside = r < cutoff
    i, j, r = i[inside], j[inside], r[inside]
    qq = charges[i] * charges[j]
    coulomb = {2: erfc(alpha * r) / r, 1: 1 / r + krf * r * r - crf, 0: 1 / r}[kind]
    sr6 = (0.5 * (sigma[i] + sigma[j]) / r) ** 6
    lj = 4 * np.sqrt(epsilon[i] * epsilon[j]) * (sr6 * sr6 - sr6)
    if switch:
        t = np.clip((r - switch) / (cutoff - switch), 0.0, 1.0)
        lj *= 1 + t**3 * (-10 + t * (15 - 6 * t))
    expected = np.sum(qq * coulomb + lj)
    scale = np.sum(np.abs(qq * coulomb) + np.abs(lj))
    # float64 sums of ~1e5 terms in two orders, and the polynomial's 1e-14: far below 1e-12
    # of the summed magnitudes (a float32 step anywhere would show at ~1e-8)
    assert abs(out.sum() - expected) < 1e-12 * scale
