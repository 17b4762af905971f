"""SETTLE, SHAKE and RATTLE on the CPU, on real systems, against OpenMM's Reference platform."""

from __future__ import annotations

import functools
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import openmm as mm
import pytest
from openmm import app, unit
from reference import data_path
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import spsolve
from systems import alanine_dipeptide, water_box

from bencao.backends.cpu.constraints import ConstraintError, CpuConstraints

KT = 2.494  # kJ/mol at 300 K


class Case:
    """Masses (amu), constraint table and constrained positions (nm) of an OpenMM system."""

    def __init__(self, system: mm.System, positions: np.ndarray):
        n = system.getNumParticles()
        self.masses = np.array([system.getParticleMass(i).value_in_unit(unit.dalton)
                                for i in range(n)])
        parameters = [system.getConstraintParameters(c) for c in range(system.getNumConstraints())]
        self.pairs = np.array([p[:2] for p in parameters], dtype=np.int64)
        self.lengths = np.array([p[2].value_in_unit(unit.nanometer) for p in parameters])
        self.constraints = CpuConstraints(self.pairs, self.lengths, self.masses, tolerance=1e-12)
        # A reference that satisfies the constraints (the input files do so only to ~1e-4)
        self.reference = np.ascontiguousarray(positions, dtype=np.float64)
        self.constraints.apply_positions(self.reference, self.reference)
        self.constraints.tolerance = 1e-5
        water = np.zeros(len(self.pairs), dtype=bool)
        water[self.constraints._water_constraints.ravel()] = True
        self.water = water  # constraints handled by SETTLE

    def errors(self, positions):
        d = np.linalg.norm(positions[self.pairs[:, 0]] - positions[self.pairs[:, 1]], axis=1)
        return np.abs(d - self.lengths) / self.lengths

    def perturbed(self, seed: int, scale: float = 0.01) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return self.reference + rng.normal(scale=scale, size=self.reference.shape)

    def thermal_velocities(self, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return rng.normal(size=self.reference.shape) * np.sqrt(KT / self.masses)[:, None]

    def bond_rates(self, positions, velocities):
        """|(v_i - v_j) . (r_i - r_j)| / d0^2 per constraint, 1/ps."""
        r = positions[self.pairs[:, 0]] - positions[self.pairs[:, 1]]
        v = velocities[self.pairs[:, 0]] - velocities[self.pairs[:, 1]]
        return np.abs(np.einsum("ij,ij->i", r, v)) / self.lengths**2

    def openmm_context(self, tolerance: float) -> mm.Context:
        """A Reference context with only particles and constraints (no forces needed)."""
        system = mm.System()
        for m in self.masses:
            system.addParticle(m)
        for (i, j), d in zip(self.pairs, self.lengths):
            system.addConstraint(int(i), int(j), float(d))
        integrator = mm.VerletIntegrator(0.001)
        integrator.setConstraintTolerance(tolerance)
        return mm.Context(system, integrator, mm.Platform.getPlatformByName("Reference"))


@functools.cache
def water_case() -> Case:
    topology, positions, _, ff = water_box(size=2.0)
    system = ff.createSystem(topology, nonbondedMethod=app.PME, constraints=app.HBonds,
                             rigidWater=True)
    return Case(system, positions)


@functools.cache
def peptide_case() -> Case:
    """Alanine dipeptide in TIP3P, H-bond constraints: 6 small SHAKE clusters and 749 waters."""
    system, positions, _ = alanine_dipeptide(nonbondedMethod=app.PME, constraints=app.HBonds)
    return Case(system, positions)


@functools.cache
def trpcage_all_bonds_case() -> Case:
    """Trp-cage in vacuum with every bond constrained: one coupled cluster of 270 constraints."""
    ff = app.ForceField("amber14-all.xml")
    pdb = app.PDBFile(data_path("1T2Y.pdb"))
    modeller = app.Modeller(pdb.topology, pdb.positions)
    modeller.addHydrogens(ff)
    system = ff.createSystem(modeller.topology, nonbondedMethod=app.NoCutoff,
                             constraints=app.AllBonds)
    return Case(system, np.array(modeller.positions.value_in_unit(unit.nanometer)))


CASES = {"peptide": peptide_case, "trpcage_all_bonds": trpcage_all_bonds_case}


def test_partition_into_waters_and_clusters():
    water = water_case()
    assert water.constraints.n_waters == len(water.masses) // 3
    assert water.constraints.n_clusters == 0
    peptide = peptide_case()
    assert peptide.constraints.n_waters == 749
    assert peptide.constraints.n_clusters == 6  # 3 CH3 + 2 NH + the CA-H
    assert trpcage_all_bonds_case().constraints.n_clusters == 1


def test_water_that_is_not_symmetric_goes_to_shake():
    # Unequal hydrogen masses: no SETTLE, but SHAKE still satisfies the triangle
    masses = np.array([15.999, 1.008, 2.014])
    pairs = np.array([[0, 1], [0, 2], [1, 2]])
    lengths = np.array([0.09572, 0.09572, 0.15139])
    constraints = CpuConstraints(pairs, lengths, masses, tolerance=1e-10)
    assert (constraints.n_waters, constraints.n_clusters) == (0, 1)
    reference = np.array([[0.0, 0.0, 0.0], [0.09572, 0.0, 0.0], [-0.024, 0.0927, 0.0]])
    positions = reference + np.array([[0.003, -0.002, 0.001], [0.0, 0.004, -0.003],
                                      [-0.002, 0.0, 0.002]])
    constraints.apply_positions(reference, positions)
    assert constraints.max_relative_error(positions) <= 1e-10


def test_settle_is_exact_whatever_the_tolerance():
    case = water_case()
    for tolerance in (1e-5, 1e-2):
        case.constraints.tolerance = tolerance
        positions = case.perturbed(seed=1)
        case.constraints.apply_positions(case.reference, positions)
        # float64 round-off on ~0.1 nm bonds at coordinates up to ~2 nm
        assert case.errors(positions).max() <= 1e-12
    case.constraints.tolerance = 1e-5


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("tolerance", [1e-5, 1e-8])
def test_positions_within_tolerance(name, tolerance):
    case = CASES[name]()
    case.constraints.tolerance = tolerance
    positions = case.perturbed(seed=2)
    case.constraints.apply_positions(case.reference, positions)
    errors = case.errors(positions)
    assert errors[case.water].max(initial=0.0) <= 1e-12  # SETTLE: round-off only
    assert errors[~case.water].max() <= tolerance  # SHAKE stops only when all are within it
    assert case.constraints.max_relative_error(positions) == pytest.approx(errors.max(), rel=1e-9)
    case.constraints.tolerance = 1e-5


@pytest.mark.parametrize("name", CASES)
def test_displacements_are_internal_and_along_reference_bonds(name):
    case = CASES[name]()
    before = case.perturbed(seed=3)
    after = before.copy()
    case.constraints.apply_positions(case.reference, after)
    impulse = case.masses[:, None] * (after - before)  # amu nm: m_i dx_i
    # Internal forces: the total is zero to round-off of the individual terms
    assert np.abs(impulse.sum(axis=0)).max() <= 1e-12 * np.abs(impulse).sum()
    # m_i dx_i = sum_c lambda_c (+-s_c) over constraints c on i, s_c the reference bond vector:
    # solve for lambda by least squares and require the fit to be exact to round-off.
    s = case.reference[case.pairs[:, 0]] - case.reference[case.pairs[:, 1]]
    n_c = len(case.pairs)
    rows = np.concatenate([3 * case.pairs[:, 0][:, None] + np.arange(3),
                           3 * case.pairs[:, 1][:, None] + np.arange(3)]).ravel()
    cols = np.repeat(np.tile(np.arange(n_c), 2), 3)
    vals = np.concatenate([s, -s]).ravel()
    a = coo_matrix((vals, (rows, cols)), shape=(impulse.size, n_c)).tocsr()
    b = impulse.ravel()
    lam = spsolve((a.T @ a).tocsc(), a.T @ b)
    assert np.linalg.norm(a @ lam - b) <= 1e-9 * np.linalg.norm(b)


def test_massless_particle_does_not_move():
    constraints = CpuConstraints([[0, 1]], [0.1], [0.0, 12.0], tolerance=1e-10)
    reference = np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0]])
    positions = np.array([[0.01, 0.02, 0.0], [0.13, -0.01, 0.005]])
    constraints.apply_positions(reference, positions)
    assert np.array_equal(positions[0], [0.01, 0.02, 0.0])
    assert constraints.max_relative_error(positions) <= 1e-10


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("tolerance", [1e-5, 1e-8])
def test_positions_match_openmm(name, tolerance):
    case = CASES[name]()
    context = case.openmm_context(tolerance)
    perturbed = case.perturbed(seed=4, scale=0.005)
    context.setPositions(perturbed)
    context.applyConstraints(tolerance)  # OpenMM uses the current positions as the reference
    expected = context.getState(getPositions=True).getPositions(asNumpy=True)
    expected = expected.value_in_unit(unit.nanometer)
    case.constraints.tolerance = tolerance
    positions = perturbed.copy()
    case.constraints.apply_positions(perturbed, positions)
    case.constraints.tolerance = 1e-5
    diff = np.linalg.norm(positions - expected, axis=1)
    in_water = np.zeros(len(diff), dtype=bool)
    in_water[case.constraints._water_atoms.ravel()] = True
    # OpenMM's SETTLE keeps the lengths in float32 (relative 6e-8): ~5e-9 nm on 0.1 nm bonds
    assert diff[in_water].max(initial=0.0) <= 1e-8
    # Both iterations stop within `tolerance` of the same solution: a few tolerance x d0 apart
    assert diff[~in_water].max() <= 3 * tolerance * case.lengths.max()


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("tolerance", [1e-5, 1e-8])
def test_velocities_match_openmm(name, tolerance):
    case = CASES[name]()
    context = case.openmm_context(tolerance)
    velocities = case.thermal_velocities(seed=5)
    context.setPositions(case.reference)
    context.setVelocities(velocities)
    context.applyVelocityConstraints(tolerance)
    expected = context.getState(getVelocities=True).getVelocities(asNumpy=True)
    expected = expected.value_in_unit(unit.nanometer / unit.picosecond)
    case.constraints.tolerance = tolerance
    ours = velocities.copy()
    case.constraints.apply_velocities(case.reference, ours)
    case.constraints.tolerance = 1e-5
    diff = np.linalg.norm(ours - expected, axis=1)
    in_water = np.zeros(len(diff), dtype=bool)
    in_water[case.constraints._water_atoms.ravel()] = True
    # Both solve the water's 3x3 system exactly: round-off on speeds of a few nm/ps
    assert diff[in_water].max(initial=0.0) <= 1e-12
    # Both stop with a residual bond speed of order tolerance x d0 / ps (speeds here ~1-2 nm/ps)
    assert diff[~in_water].max() <= tolerance * 1.0


@pytest.mark.parametrize("name", CASES)
def test_velocity_constraints(name):
    case = CASES[name]()
    tolerance = case.constraints.tolerance
    velocities = case.thermal_velocities(seed=6)
    before = velocities.copy()
    case.constraints.apply_velocities(case.reference, velocities)
    rates = case.bond_rates(case.reference, velocities)
    # SETTLE: round-off next to thermal rates of ~10-20 /ps
    assert rates[case.water].max(initial=0.0) <= 1e-11
    # RATTLE's documented stopping rule (1e-9 slack for evaluation order)
    assert rates[~case.water].max() <= tolerance * (1 + 1e-9)
    momentum = case.masses[:, None] * (velocities - before)
    assert np.abs(momentum.sum(axis=0)).max() <= 1e-12 * np.abs(momentum).sum()

    def kinetic(v):
        return 0.5 * np.sum(case.masses[:, None] * v * v)

    # Removing velocity along the constraints takes kinetic energy out, never puts it in
    assert kinetic(velocities) < kinetic(before)


SCRIPT = textwrap.dedent(
    """
    import hashlib, sys
    import numpy as np
    sys.path[:0] = [{tests!r}, {here!r}]
    from test_constraints import peptide_case
    case = peptide_case()
    positions = case.reference.copy()
    velocities = case.thermal_velocities(seed=7)
    for step in range(3):
        stepped = positions + 0.002 * velocities
        case.constraints.apply_positions(positions, stepped)
        velocities += (stepped - positions - 0.002 * velocities) / 0.002
        case.constraints.apply_velocities(stepped, velocities)
        positions = stepped
    print(hashlib.sha256(positions.tobytes() + velocities.tobytes()).hexdigest())
    """
)


def _run(threads: int) -> str:
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    here = os.path.dirname(os.path.abspath(__file__))
    script = SCRIPT.format(tests=os.path.dirname(os.path.dirname(here)), here=here)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         check=True)
    return out.stdout.strip().splitlines()[-1]


def test_bit_identical_on_one_and_two_threads():
    assert _run(1) == _run(2)


def test_impossible_constraints_raise():
    # 0.1 + 0.1 < 0.5: no triangle has these sides (and unequal masses keep it out of SETTLE)
    constraints = CpuConstraints([[0, 1], [1, 2], [0, 2]], [0.1, 0.1, 0.5], [12.0, 1.0, 14.0])
    reference = np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.2, 0.01, 0.0]])
    positions = reference.copy()
    with pytest.raises(ConstraintError, match=r"atoms \d and \d .*target .*time step"):
        constraints.apply_positions(reference, positions)


def test_settle_failure_raises():
    case = water_case()
    positions = case.reference.copy()
    o, h1, h2 = case.constraints._water_atoms[0]
    normal = np.cross(positions[h1] - positions[o], positions[h2] - positions[o])
    positions[h1] += 0.3 * normal / np.linalg.norm(normal)  # far out of the plane in one step
    with pytest.raises(ConstraintError, match=rf"water of atoms \({o}, {h1}, {h2}\)"):
        case.constraints.apply_positions(case.reference, positions)


def test_waters_eight_at_a_time_get_the_scalar_laws_bits():
    """The CPU solves waters 8 at a time, the shared laws compiled for vectors: every water must
    come out bit for bit as the scalar law (the one the CUDA backend runs) leaves it, positions,
    velocities and which waters have no solution.  The box's waters are not a multiple of 8 (a
    partial last block), and a few are pushed beyond what SETTLE can solve, in different lanes."""
    from numba import njit

    from bencao.backends.common.constraint_laws import settle_one, settle_velocities_one
    from bencao.backends.cpu.constraints import _constrain_positions

    @njit
    def scalar(reference, positions, velocities, waters, masses, shape, failed):
        for w in range(waters.shape[0]):
            o, h1, h2 = waters[w, 0], waters[w, 1], waters[w, 2]
            failed[w] = 0 if settle_one(reference, positions, o, h1, h2, masses[w, 0],
                                        masses[w, 1], shape[w, 0], shape[w, 1], shape[w, 2]) else 1
        for w in range(waters.shape[0]):
            settle_velocities_one(positions, velocities, waters[w, 0], waters[w, 1], waters[w, 2],
                                  1.0 / masses[w, 0], 1.0 / masses[w, 1])

    case = water_case()
    solver = case.constraints
    waters = solver._water_atoms
    assert solver.n_waters % 8 != 0
    positions = case.perturbed(seed=8, scale=0.01)
    for w in (3, 12, 21, len(waters) - 1):  # out of the water's plane: no solution
        o, h1, h2 = waters[w]
        normal = np.cross(positions[h1] - positions[o], positions[h2] - positions[o])
        positions[h1] += 0.3 * normal / np.linalg.norm(normal)
    expected = positions.copy()
    expected_failed = np.empty(solver.n_waters, np.int64)
    velocities = case.thermal_velocities(seed=9)
    expected_velocities = velocities.copy()
    scalar(case.reference, expected, expected_velocities, waters, solver._water_masses,
           solver._water_shape, expected_failed)
    failed = np.empty(solver.n_waters, np.int64)
    _constrain_positions(case.reference, positions, waters, solver._water_masses,
                         solver._water_shape, solver._pairs, solver._lengths,
                         solver._inverse_masses, solver._cluster_order, solver._cluster_offsets,
                         1e-5, 100, failed, np.empty(solver.n_clusters, np.int64))
    assert np.flatnonzero(failed).tolist() == [3, 12, 21, len(waters) - 1]
    assert np.array_equal(failed, expected_failed)
    assert np.array_equal(positions, expected)
    solver.apply_velocities(positions, velocities)
    assert np.array_equal(velocities, expected_velocities)


def test_lane_operators_do_the_scalar_operations():
    """The vector operators (``lanes8``) give, lane by lane, the bits of the same expression
    on float64 scalars: arithmetic with scalars broadcast, sqrt, abs, max, comparisons and
    their ``&``."""
    from numba import njit

    from bencao.backends.cpu.lanes8 import mask_bits  # also registers the vector operators
    from bencao.backends.cpu.simd8 import vload, vstore

    @njit
    def expression(a, b):
        c = -(a * 2.5 - b) / (abs(b) + 1.0)
        c += math.sqrt(max(a * b, 0.0)) - 3.0 * a
        return c, (a < b) & (c >= 0.0) & (1.0 > b)

    @njit
    def lanes(a, b, out):
        value, mask = expression(vload(a, 0), vload(b, 0))
        vstore(out, 0, value)
        return mask_bits(mask)

    rng = np.random.default_rng(4)
    a = rng.normal(size=8) * 10.0 ** rng.integers(-3, 3, 8)
    b = rng.normal(size=8)
    out = np.empty(8)
    bits = lanes(a, b, out)
    for p in range(8):
        value, flag = expression(a[p], b[p])
        assert out[p] == value or (np.isnan(out[p]) and np.isnan(value))
        assert bool((bits >> p) & 1) == flag


def test_velocity_iteration_limit_raises():
    case = trpcage_all_bonds_case()
    constraints = CpuConstraints(case.pairs, case.lengths, case.masses, max_iterations=2)
    velocities = case.thermal_velocities(seed=8)
    with pytest.raises(ConstraintError, match=r"atoms \d+ and \d+ .*nm/ps"):
        constraints.apply_velocities(case.reference, velocities)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="massless"):
        CpuConstraints([[0, 1]], [0.1], [0.0, 0.0])
    with pytest.raises(ValueError, match="itself"):
        CpuConstraints([[1, 1]], [0.1], [1.0, 1.0])
    with pytest.raises(ValueError, match="twice"):
        CpuConstraints([[0, 1], [1, 0]], [0.1, 0.1], [1.0, 1.0])
    constraints = CpuConstraints([[0, 1]], [0.1], [1.0, 1.0])
    with pytest.raises(ValueError, match="float64"):
        constraints.apply_positions(np.zeros((2, 3)), np.zeros((2, 3), dtype=np.float32))


def test_no_constraints_is_a_no_op():
    constraints = CpuConstraints(np.zeros((0, 2)), [], [1.0, 2.0])
    positions = np.arange(6.0).reshape(2, 3)
    velocities = -positions
    constraints.apply_positions(positions * 2, positions)
    constraints.apply_velocities(positions, velocities)
    assert np.array_equal(positions, np.arange(6.0).reshape(2, 3))
    assert np.array_equal(velocities, -positions)
    assert constraints.max_relative_error(positions) == 0.0


@pytest.mark.parametrize("blocks, clusters", [(0, 0), (0, 5), (7, 0), (1, 1), (878, 790),
                                              (5, 2), (2, 9)])
def test_parallel_items_cover_each_water_block_and_cluster_once(blocks, clusters):
    """The constraint loops' items, split in halves of each kind for balance, still visit
    every block of waters and every SHAKE cluster exactly once."""
    from bencao.backends.cpu.constraints import _item

    seen = [_item(item, blocks, clusters) for item in range(blocks + clusters)]
    assert sorted(k for water, k in seen if water) == list(range(blocks))
    assert sorted(k for water, k in seen if not water) == list(range(clusters))
    # the first half of the items holds half of each kind (rounded down)
    first = seen[:blocks // 2 + clusters // 2]
    assert sum(water for water, _ in first) == blocks // 2
