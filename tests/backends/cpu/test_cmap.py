"""CMAP CPU kernel: 1-D analytic limits, finite differences, and OpenMM's Reference platform."""

import math

import numpy as np
import openmm
import pytest
from scipy.interpolate import CubicSpline

from bencao.backends.common.fixed_point import forces_from_fixed
from bencao.backends.cpu.cmap import CpuCMAPTorsions
from bencao.forces.bonded import CMAPTorsions


def evaluate(cpu_term, positions):
    """Energy (kJ/mol) and float forces (kJ/mol/nm) of one CPU term."""
    acc = np.zeros((len(positions), 3), dtype=np.int64)
    energy = cpu_term.compute(np.ascontiguousarray(positions, dtype=np.float64), None, acc)
    return energy, forces_from_fixed(acc)


def torsion_positions(phi, r=0.12, length=0.15):
    """a on +x, b at the origin, c on +z, d at azimuth phi: the dihedral a-b-c-d is +phi."""
    end = [r * math.cos(phi), r * math.sin(phi), length]
    return np.array([[r, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, length], end])


def rotated(positions, seed):
    """positions in a random orientation and place: dihedrals are unchanged."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    if np.linalg.det(q) < 0:  # a reflection would flip the dihedral sign
        q[:, 0] = -q[:, 0]
    return positions @ q.T + rng.uniform(-1, 1, 3)


def pair_positions(phi, psi, seed=0):
    """Eight atoms: 0-3 with dihedral phi, 4-7 with dihedral psi, in random orientations."""
    first = rotated(torsion_positions(phi), seed)
    return np.vstack([first, rotated(torsion_positions(psi), seed + 1)])


def single_map_term(size, energies, atoms):
    atoms = np.atleast_2d(np.asarray(atoms, dtype=np.int64))
    return CMAPTorsions(
        map_sizes=np.array([size]),
        map_offsets=np.array([0]),
        map_energies=np.asarray(energies, dtype=np.float64),
        torsion_map=np.zeros(len(atoms), dtype=np.int64),
        atoms=atoms,
    )


def openmm_reference(term, positions):
    """Energy and forces of the same CMAP on OpenMM's Reference platform."""
    force = openmm.CMAPTorsionForce()
    for size, offset in zip(term.map_sizes, term.map_offsets):
        force.addMap(int(size), term.map_energies[offset : offset + size * size].tolist())
    for m, a in zip(term.torsion_map, term.atoms):
        force.addTorsion(int(m), *map(int, a))
    system = openmm.System()
    for _ in range(len(positions)):
        system.addParticle(1.0)
    system.addForce(force)
    context = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    context.setPositions(positions)
    state = context.getState(getEnergy=True, getForces=True)
    energy = state.getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)
    forces = state.getForces(asNumpy=True).value_in_unit(
        openmm.unit.kilojoule_per_mole / openmm.unit.nanometer
    )
    return energy, np.asarray(forces)


def assert_matches_reference(term, positions):
    energy, forces = evaluate(CpuCMAPTorsions(term), positions)
    ref_energy, ref_forces = openmm_reference(term, positions)
    # Same splines and patch polynomials in float64: only rounding differs (~1e-14 after the
    # spline solves); 1e-9 leaves room for cancellation between patches of both signs.
    assert energy == pytest.approx(ref_energy, rel=1e-9, abs=1e-12)
    # Relative to the largest component: fixed point rounds each contribution to 2**-32.
    assert np.abs(forces - ref_forces).max() <= 1e-9 * np.abs(ref_forces).max()


# ---------------------------------------------------------------------------------------------
# (a) analytic cases
# ---------------------------------------------------------------------------------------------


def test_energy_at_grid_points_equals_map_values():
    size = 24
    rng = np.random.default_rng(0)
    energies = rng.normal(0, 3, size * size)
    term = CpuCMAPTorsions(single_map_term(size, energies, [0, 1, 2, 3, 4, 5, 6, 7]))
    assert term.name == "CMAPTorsionForce"
    delta = 2 * math.pi / size
    # Grid point (i, j) is at (i delta, j delta) modulo 2 pi, value at index i + size j.
    for i, j in [(0, 0), (3, 17), (12, 5), (23, 23), (12, 12)]:
        phi = i * delta if i * delta <= math.pi else i * delta - 2 * math.pi
        psi = j * delta if j * delta <= math.pi else j * delta - 2 * math.pi
        energy, _ = evaluate(term, pair_positions(phi, psi))
        assert energy == pytest.approx(energies[i + size * j], rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("axis", ["phi", "psi"])
def test_one_dimensional_map_is_the_periodic_cubic_spline(axis):
    # A map that varies along one angle only: the bicubic patches reduce to the 1-D cubic
    # Hermite interpolant with spline knot slopes, i.e. the periodic cubic spline itself.
    size = 24
    rng = np.random.default_rng(1)
    profile = rng.normal(0, 4, size)
    grid = np.tile(profile, (size, 1))  # grid[j, i] = profile[i]: varies with phi
    if axis == "psi":
        grid = grid.T
    energies = grid.reshape(-1)  # index i + size * j
    x = np.arange(size + 1) * 2 * math.pi / size
    spline = CubicSpline(x, np.append(profile, profile[0]), bc_type="periodic")
    term = CpuCMAPTorsions(single_map_term(size, energies, [0, 1, 2, 3, 4, 5, 6, 7]))
    r = 0.12
    for angle, other in [(0.37, -2.0), (-1.3, 0.9), (3.0, 1.7), (-3.1, -0.2)]:
        phi, psi = (angle, other) if axis == "phi" else (other, angle)
        pos = np.vstack([torsion_positions(phi), torsion_positions(psi) + [1.0, 0, 0]])
        energy, forces = evaluate(term, pos)
        expected = spline(angle % (2 * math.pi))
        slope = spline(angle % (2 * math.pi), 1)
        assert energy == pytest.approx(expected, rel=1e-12, abs=1e-12)
        moved, still = (slice(0, 4), slice(4, 8)) if axis == "phi" else (slice(4, 8), slice(0, 4))
        # Only the torsion the map depends on feels a force; its last atom moves on a circle.
        assert np.abs(forces[still]).max() == 0.0
        tangent = np.array([-math.sin(angle), math.cos(angle), 0.0])
        np.testing.assert_allclose(forces[moved][3], -slope / r * tangent, rtol=1e-9, atol=1e-9)


def test_constant_map_has_no_force():
    term = CpuCMAPTorsions(single_map_term(10, np.full(100, 2.5), [0, 1, 2, 3, 1, 2, 3, 4]))
    rng = np.random.default_rng(2)
    energy, forces = evaluate(term, rng.uniform(0, 0.4, (5, 3)))
    assert energy == pytest.approx(2.5, rel=1e-12)
    assert np.abs(forces).max() < 1e-9  # only fixed-point rounding of ~0 contributions


# ---------------------------------------------------------------------------------------------
# Random systems
# ---------------------------------------------------------------------------------------------


def random_term(seed):
    """Two maps (24 and 10 points) and five torsion pairs on a 9-atom chain, sharing atoms."""
    rng = np.random.default_rng(seed)
    e24 = rng.normal(0, 5, 24 * 24)
    e10 = rng.normal(0, 2, 10 * 10)
    atoms = np.array(
        [
            [0, 1, 2, 3, 1, 2, 3, 4],
            [1, 2, 3, 4, 2, 3, 4, 5],
            [3, 4, 5, 6, 4, 5, 6, 7],
            [4, 5, 6, 7, 5, 6, 7, 8],
            [8, 7, 6, 5, 0, 1, 2, 3],
        ]
    )
    return CMAPTorsions(
        map_sizes=np.array([24, 10]),
        map_offsets=np.array([0, 24 * 24]),
        map_energies=np.concatenate([e24, e10]),
        torsion_map=np.array([0, 1, 0, 1, 0]),
        atoms=atoms,
    )


def random_chain(seed):
    """A 9-atom chain with bond lengths ~0.15 nm and random dihedrals."""
    rng = np.random.default_rng(seed)
    pos = [np.zeros(3)]
    while len(pos) < 9:
        step = rng.normal(size=3)
        step *= 0.15 / np.linalg.norm(step)
        if len(pos) > 1:
            prev = pos[-1] - pos[-2]
            # keep the chain angles between ~60 and ~150 degrees (no near-collinear triplets)
            cos = step @ prev / (0.15 * np.linalg.norm(prev))
            if not -0.85 < cos < 0.5:
                continue
        pos.append(pos[-1] + step)
    return np.array(pos)


# ---------------------------------------------------------------------------------------------
# (b) finite differences
# ---------------------------------------------------------------------------------------------


def test_forces_are_minus_energy_gradient():
    cpu = CpuCMAPTorsions(random_term(3))
    positions = random_chain(4)
    energy0, forces = evaluate(cpu, positions)
    h = 1e-6  # nm; truncation h^2 E''' / 6 and rounding eps E / h are both ~1e-9 kJ/mol/nm
    numeric = np.zeros_like(positions)
    for i in range(positions.shape[0]):
        for d in range(3):
            plus = positions.copy()
            minus = positions.copy()
            plus[i, d] += h
            minus[i, d] -= h
            numeric[i, d] = -(evaluate(cpu, plus)[0] - evaluate(cpu, minus)[0]) / (2 * h)
    scale = np.abs(forces).max()
    # Both error sources are ~1e-9 absolute; 1e-6 of the largest force bounds them.
    assert np.abs(numeric - forces).max() <= 1e-6 * scale
    step = 1e-6 / scale
    down = evaluate(cpu, positions + step * forces)[0]
    up = evaluate(cpu, positions - step * forces)[0]
    # Along F the energy falls at the rate |F|^2.
    assert (up - down) / (2 * step) == pytest.approx(np.sum(forces**2), rel=1e-6)
    assert down < energy0 < up


# ---------------------------------------------------------------------------------------------
# (c) OpenMM Reference
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_chain_matches_openmm(seed):
    assert_matches_reference(random_term(seed), random_chain(seed + 10))


@pytest.mark.parametrize(
    "phi, psi",
    [
        (math.pi - 1e-7, -math.pi + 1e-7),  # both torsions next to the +-pi cut
        (-math.pi + 1e-9, 0.5),
        (math.pi, math.pi),  # exactly planar trans
        (-1e-9, 1e-9),  # just below 0: wraps to the last patch
        (0.0, -2.0),
        (1.234, -0.777),
    ],
)
def test_special_angles_match_openmm(phi, psi):
    rng = np.random.default_rng(7)
    term = single_map_term(24, rng.normal(0, 5, 24 * 24), [[0, 1, 2, 3, 4, 5, 6, 7]])
    assert_matches_reference(term, pair_positions(phi, psi, seed=5))
