"""NonbondedForce exceptions: the series for the Ewald exclusion term against SciPy's erf, and
the scalar law beyond the series' reach."""

import numpy as np
import pytest
from scipy.special import erf

from bencao.backends.common.fixed_point import forces_from_fixed
from bencao.backends.cpu.exceptions import SERIES_REACH, exception_pairs, exception_scratch
from bencao.constants import FORCE_SCALE, ONE_4PI_EPS0

ALPHA = 3.1  # 1/nm; the series' reach is then 0.48 nm


def _reference(positions, atoms, chargeprod, sigma, epsilon, charges, ewald):
    """Energy and forces by NumPy with SciPy's erf (the textbook expressions)."""
    d = positions[atoms[:, 1]] - positions[atoms[:, 0]]
    r = np.linalg.norm(d, axis=1)
    e = ONE_4PI_EPS0 * chargeprod / r + 4 * epsilon * ((sigma / r) ** 12 - (sigma / r) ** 6)
    dedr = (-ONE_4PI_EPS0 * chargeprod / r**2
            + 4 * epsilon * (-12 * sigma**12 / r**13 + 6 * sigma**6 / r**7))
    if ewald:
        qq = ONE_4PI_EPS0 * charges[atoms[:, 0]] * charges[atoms[:, 1]]
        e -= qq * erf(ALPHA * r) / r
        dedr -= qq * (2 * ALPHA / np.sqrt(np.pi) * np.exp(-(ALPHA * r) ** 2) / r
                      - erf(ALPHA * r) / r**2)
    pair = (-dedr / r)[:, None] * d  # force on the second atom
    forces = np.zeros_like(positions)
    np.add.at(forces, atoms[:, 1], pair)
    np.add.at(forces, atoms[:, 0], -pair)
    return e.sum(), forces


@pytest.mark.parametrize("ewald", [True, False], ids=["ewald", "plain"])
def test_exceptions_match_scipy_inside_and_beyond_the_series_reach(ewald):
    rng = np.random.default_rng(5)
    n = 203  # not a multiple of 8: the last vector is part padding
    positions = rng.uniform(0.0, 2.0, (n, 3))
    atoms = np.array([(a, a + 1) for a in range(n - 1)], np.int64)
    r = np.linalg.norm(positions[atoms[:, 1]] - positions[atoms[:, 0]], axis=1)
    assert (ALPHA * r < SERIES_REACH).sum() > 5 and (ALPHA * r > SERIES_REACH).sum() > 5
    charges = rng.uniform(-0.8, 0.8, n)
    own = rng.random(len(atoms)) < 0.3  # 1-4 pairs; the rest are plain exclusions
    chargeprod = np.where(own, 0.8333 * charges[atoms[:, 0]] * charges[atoms[:, 1]], 0.0)
    sigma = np.where(own, rng.uniform(0.1, 0.3, len(atoms)), 1.0)
    epsilon = np.where(own, rng.uniform(0.1, 0.5, len(atoms)), 0.0)
    fixed = np.zeros((n, 3), np.int64)
    energy = exception_pairs(positions, atoms, chargeprod, sigma, epsilon, charges, np.eye(3),
                             False, ONE_4PI_EPS0, ALPHA, ewald, fixed, exception_scratch(atoms))
    ref_energy, ref_forces = _reference(positions, atoms, chargeprod, sigma, epsilon, charges,
                                        ewald)
    # float64 arithmetic on terms up to ~1e3 kJ/mol: 1e-12 relative leaves a few hundred
    # units of rounding, and a wrong series term or coefficient would be off by >1e-8
    assert energy == pytest.approx(ref_energy, rel=1e-12)
    scale = np.abs(ref_forces).max()
    # forces: the same rounding plus the fixed-point step (2^-32 kJ/mol/nm per atom and pair)
    np.testing.assert_allclose(forces_from_fixed(fixed), ref_forces,
                               atol=1e-12 * scale + 4.0 / FORCE_SCALE)


def test_coincident_exclusion_has_the_limit_energy_and_no_force():
    """A virtual site on its parent (r = 0, e.g. TIP4P's M on a rigid water seen as excluded):
    E = -qq 2 alpha / sqrt(pi), the limit of -qq erf(alpha r)/r, and no force."""
    positions = np.array([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5], [0.6, 0.5, 0.5]])
    atoms = np.array([[0, 1]], np.int64)
    charges = np.array([0.4, -0.8, 0.4])
    fixed = np.zeros((3, 3), np.int64)
    energy = exception_pairs(positions, atoms, np.zeros(1), np.ones(1), np.zeros(1), charges,
                             np.eye(3), False, ONE_4PI_EPS0, ALPHA, True, fixed,
                             exception_scratch(atoms))
    expected = -ONE_4PI_EPS0 * 0.4 * -0.8 * 2 * ALPHA / np.sqrt(np.pi)
    assert energy == pytest.approx(expected, rel=1e-14)
    assert not fixed.any()


def test_scatter_plan_gives_each_exception_once_and_ranges_to_threads():
    """The parallel scatter's groups: every exception exactly once; in the groups run in
    parallel both atoms lie in the group's own atom range, so no two threads add to one atom."""
    from bencao.backends.cpu.exceptions import SCATTER_RANGES, exception_plan

    rng = np.random.default_rng(3)
    # bonded neighbours: partners a few indices apart, as in a protein
    first = rng.integers(0, 20000, 5000)
    atoms = np.stack([first, first + rng.integers(1, 30, 5000)], axis=1)
    order, starts = exception_plan(atoms)
    assert sorted(order.tolist()) == list(range(len(atoms)))
    assert len(starts) == SCATTER_RANGES + 2 and starts[-1] == len(atoms)
    owner = {}
    for g in range(SCATTER_RANGES):
        for m in order[starts[g]:starts[g + 1]]:
            for atom in atoms[m]:
                assert owner.setdefault(atom, g) == g
    mixed = order[starts[SCATTER_RANGES]:]
    # pairs across a cut (15 cuts, partners up to 29 apart): about 1%, and among the groups
    assert 0 < len(mixed) < len(atoms) // 20
