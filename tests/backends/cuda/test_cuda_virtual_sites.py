"""Virtual sites on the CUDA backend against OpenMM's Reference platform and the CPU backend.

The CUDA work runs in one subprocess (see ``cuda_harness``); OpenMM and the CPU backend are
evaluated here.  The systems are small for the simulator: a 1.6 nm TIP4P-Ew box (126 waters, 504
particles, PME 0.75 nm) and 12 particles carrying every kind of site the CPU backend has, one of
them built from another site.
"""

from __future__ import annotations

import cuda_harness
import numpy as np
import openmm as mm
import pytest
from openmm import app, unit
from reference import force_agreement, openmm_evaluation
from systems import water_box

import bencao
from bencao.backends.common.fixed_point import forces_from_fixed
from bencao.backends.cpu.virtual_sites import CpuVirtualSites
from bencao.constants import FORCE_SCALE

# ------------------------------------------------------------------------------------------
# Cases, built the same way here and in the subprocess: (openmm System, positions nm, box nm)
# ------------------------------------------------------------------------------------------


def tip4pew_case():
    """A 1.6 nm box of flexible TIP4P-Ew water (bonds, angles, PME 0.75 nm with dispersion
    correction): every M site is a ThreeParticleAverageSite of its water."""
    topology, positions, box, ff = water_box(1.6, model="tip4pew")
    system = ff.createSystem(topology, nonbondedMethod=app.PME, rigidWater=False,
                             nonbondedCutoff=0.75 * unit.nanometer, removeCMMotion=False)
    return system, positions, box


# Every kind of site in 12 particles.  Molecule A: water O 0, H 1, H 2 with an M site 3
# (ThreeParticleAverage) and a site 4 averaging O with the M site (TwoParticleAverage built
# from a site: dependency level 1).  Molecule B: atoms 5-8 with an OutOfPlaneSite 9 and
# LocalCoordinatesSites 10 (three parents) and 11 (four parents).  A and B interact only with
# each other (intramolecular pairs excluded), 0.4 nm apart, NoCutoff.
N_SITES_CASE = 12
REAL = [0, 1, 2, 5, 6, 7, 8]
SITES = [3, 4, 9, 10, 11]
MOL_A = [0, 1, 2, 3, 4]
MOL_B = [5, 6, 7, 8, 9, 10, 11]
CHARGES = [0.0, 0.52, 0.52, -0.9, -0.14, -0.4, 0.3, 0.25, 0.5, 0.35, -0.6, -0.4]
SIGMA = [0.315, 1, 1, 1, 0.2, 0.32, 0.25, 0.3, 0.3, 1, 1, 1]
EPSILON = [0.65, 0, 0, 0, 0.1, 0.4, 0.2, 0.3, 0.5, 0, 0, 0]


def every_kind_case(seed=0):
    """The 12-particle system with every site kind: (openmm System, positions nm, None)."""
    system = mm.System()
    for i in range(N_SITES_CASE):
        system.addParticle(12.0 if i in REAL else 0.0)
    a = 0.128
    system.setVirtualSite(3, mm.ThreeParticleAverageSite(0, 1, 2, 1 - 2 * a, a, a))
    system.setVirtualSite(4, mm.TwoParticleAverageSite(0, 3, 0.6, 0.4))
    system.setVirtualSite(9, mm.OutOfPlaneSite(5, 6, 7, 0.3, 0.2, 1.5))
    system.setVirtualSite(10, mm.LocalCoordinatesSite(
        5, 6, 7, mm.Vec3(0.5, 0.3, 0.2), mm.Vec3(-1, 1, 0), mm.Vec3(-1, 0, 1),
        mm.Vec3(0.03, 0.02, -0.015)))
    system.setVirtualSite(11, mm.LocalCoordinatesSite(
        [5, 6, 7, 8], [0.25, 0.25, 0.25, 0.25], [-1, 0.5, 0.5, 0], [0, -1, 0, 1],
        mm.Vec3(-0.01, 0.04, 0.02)))
    nonbonded = mm.NonbondedForce()
    nonbonded.setNonbondedMethod(mm.NonbondedForce.NoCutoff)
    for i in range(N_SITES_CASE):
        nonbonded.addParticle(CHARGES[i], SIGMA[i], EPSILON[i])
    for molecule in (MOL_A, MOL_B):
        for x, i in enumerate(molecule):
            for j in molecule[x + 1:]:
                nonbonded.addException(i, j, 0.0, 1.0, 0.0)
    system.addForce(nonbonded)
    bonds = mm.HarmonicBondForce()  # a bonded term too, so parents get forces from two terms
    bonds.addBond(5, 6, 0.11, 2.0e4)
    system.addForce(bonds)
    rng = np.random.default_rng(seed)
    positions = np.zeros((N_SITES_CASE, 3))
    positions[[0, 1, 2]] = [[0.0, 0.0, 0.0], [0.09572, 0.0, 0.0], [-0.024, 0.0927, 0.0]]
    positions[[5, 6, 7, 8]] = [[0.40, 0.05, 0.10], [0.52, 0.10, 0.12], [0.38, 0.18, 0.05],
                               [0.45, -0.05, 0.25]]
    positions[REAL] += rng.normal(0.0, 0.01, (len(REAL), 3))
    positions[SITES] = 9.0  # nonsense: both backends must place the sites themselves
    return system, positions, None


STEPS = 3


def every_kind_steps(backend: str):
    """Positions (nm) after ``STEPS`` Verlet steps of 1 fs of the every-kind system from rest."""
    system, positions, _ = every_kind_case()
    simulation = bencao.Simulation(bencao.System.from_openmm(system),
                                   bencao.VerletIntegrator(0.001), positions, None,
                                   backend=backend)
    simulation.step(STEPS)
    return simulation.positions


def random_fixed_forces(n, seed=4):
    """(n, 3) int64 fixed-point forces of ~50 kJ/mol/nm per component."""
    forces = np.random.default_rng(seed).normal(0.0, 50.0, (n, 3))
    return (forces * FORCE_SCALE).astype(np.int64)


# ------------------------------------------------------------------------------------------
# The CUDA side (runs in the subprocess)
# ------------------------------------------------------------------------------------------


def cuda_results(path):
    """Evaluate every case on the CUDA backend and pickle the results to ``path``."""
    from numba import cuda

    from bencao.backends.cuda import using_simulator

    def run(backend, positions, box):
        result = backend.compute(positions, box)
        return result.energy, result.forces, result.terms

    results = {"simulator": using_simulator()}

    system, positions, box = tip4pew_case()
    bencao_system = bencao.System.from_openmm(system)
    backend = bencao.make_backend(bencao_system, "cuda")
    first = run(backend, positions, box)
    second = run(backend, positions, box)  # the same backend, its device arrays reused
    fresh = run(bencao.make_backend(bencao_system, "cuda"), positions, box)
    results["tip4pew"] = [first, second, fresh]

    system, positions, _ = every_kind_case()
    backend = bencao.make_backend(bencao.System.from_openmm(system), "cuda")
    results["every_kind"] = run(backend, positions, None)
    results["every_kind_placed"] = backend.state.positions.copy_to_host()
    results["every_kind_levels"] = (backend.device_virtual_sites.levels,
                                    backend.device_virtual_sites.site)
    # Distribution alone, on forces with every row non-zero (sites included): the same fixed
    # point input as the CPU side gets in the test.
    state = backend.state
    state.forces.copy_to_device(random_fixed_forces(N_SITES_CASE))
    backend.device_virtual_sites.distribute(state)
    distributed = forces_from_fixed(state.forces.copy_to_host())
    results["distributed"] = (distributed,
                              backend.device_virtual_sites.restore_site_forces(distributed.copy()))
    # The host-side placement Simulation uses between steps.
    results["host_placed"] = backend.virtual_sites.place(positions.copy())
    results["steps"] = every_kind_steps("cuda")
    cuda.synchronize()

    cuda_harness.save(results, path)


@pytest.fixture(scope="module")
def cuda_run(tmp_path_factory):
    """The pickled results of :func:`cuda_results`, on a real GPU if there is one."""
    path = tmp_path_factory.mktemp("cuda_virtual_sites") / "results.pkl"
    return cuda_harness.cuda_results("test_cuda_virtual_sites", path)


def _cpu(system, positions, box):
    return bencao.make_backend(bencao.System.from_openmm(system), "cpu").compute(positions, box)


# ------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------


def test_tip4pew_water_box_matches_openmm_and_cpu(cuda_run):
    system, positions, box = tip4pew_case()
    energy, forces, terms = cuda_run["tip4pew"][0]
    ref_energy, ref_forces, ref_terms, _ = openmm_evaluation(system, positions, box)
    # The bar of the other CUDA nonbonded tests: float64 throughout, so the energy within 1e-6
    # relative of Reference (PME grid and dispersion correction are the same model), forces
    # within 1e-7 (p99) and no worse than OpenMM's CPU platform.
    assert energy == pytest.approx(ref_energy, rel=1e-6)
    for name in ("HarmonicBondForce", "HarmonicAngleForce"):
        # bonded terms are plain float64 sums: 1e-9 relative
        assert terms[name] == pytest.approx(ref_terms[name], rel=1e-9), name
    median, p99 = force_agreement(forces, ref_forces)
    assert p99 < 1e-7, (median, p99)
    _, cpu_platform_forces, _, _ = openmm_evaluation(system, positions, box, platform="CPU")
    cpu_median, cpu_p99 = force_agreement(cpu_platform_forces, ref_forces)
    assert median <= cpu_median and p99 <= cpu_p99, (median, p99, cpu_median, cpu_p99)

    cpu = _cpu(system, positions, box)
    # The CPU pair kernel is float32 (its p99 against Reference is ~1e-5 on water): 1e-4 leaves
    # room for that and catches a lost site force, which is off by O(1) on the whole water.
    median, p99 = force_agreement(forces, cpu.forces)
    assert median < 1e-5 and p99 < 1e-4, (median, p99)
    assert energy == pytest.approx(cpu.energy, rel=1e-6)  # both energies are float64 passes
    # The M sites' rows report the force acting on them, as the CPU backend does (not zero).
    sites = bencao.System.from_openmm(system).virtual_sites.site
    assert np.all(np.linalg.norm(forces[sites], axis=1) > 0)
    np.testing.assert_allclose(forces[sites], cpu.forces[sites], rtol=0,
                               atol=1e-4 * np.abs(cpu.forces[sites]).max())  # float32 CPU pairs


def test_tip4pew_forces_and_energy_bit_identical_run_to_run(cuda_run):
    # Integer atomics (pair forces and site distribution alike) commute: the same bits on the
    # same backend and on a fresh one.
    (e1, f1, t1), (e2, f2, t2), (e3, f3, t3) = cuda_run["tip4pew"]
    assert f1.tobytes() == f2.tobytes() == f3.tobytes()
    assert np.float64(e1).tobytes() == np.float64(e2).tobytes() == np.float64(e3).tobytes()
    assert t1 == t2 == t3


def test_every_site_kind_is_placed_like_cpu_and_openmm(cuda_run):
    system, positions, _ = every_kind_case()
    placed = cuda_run["every_kind_placed"]
    cpu_placed = CpuVirtualSites(bencao.System.from_openmm(system).virtual_sites).place(
        positions.copy())
    _, _, _, ref_placed = openmm_evaluation(system, positions)
    # The same float64 formulas; a GPU may fuse multiply-adds, which moves a coordinate of
    # ~0.5 nm by an ulp or two (1e-16 nm): 1e-14 nm.
    np.testing.assert_allclose(placed, cpu_placed, rtol=0, atol=1e-14)
    np.testing.assert_allclose(placed, ref_placed, rtol=0, atol=1e-14)
    assert np.abs(placed[SITES] - 9.0).min() > 1.0  # really placed, not the input nonsense
    # Host placement (for Simulation) is the CPU's own code: exactly the CPU's result.
    np.testing.assert_array_equal(cuda_run["host_placed"], cpu_placed)
    levels, order = cuda_run["every_kind_levels"]
    assert levels == [(0, 4), (4, 1)]  # site 4 (built from site 3) alone in level 1
    assert order[-1] == 4


def test_every_site_kind_forces_match_openmm_and_cpu(cuda_run):
    system, positions, _ = every_kind_case()
    energy, forces, _ = cuda_run["every_kind"]
    ref_energy, ref_forces, _, _ = openmm_evaluation(system, positions)
    cpu = _cpu(system, positions, None)
    scale = np.abs(ref_forces[REAL]).max()
    assert scale > 10.0  # real forces to compare
    # Float64 pair sums in both; 1e-9 relative covers summation order.
    assert energy == pytest.approx(ref_energy, rel=1e-9)
    # Real atoms: OpenMM's SymPy-expanded distribution and ours (the CPU's compact form)
    # differ in arrangement (the CPU test's 1e-9 of the largest force), plus fixed-point
    # truncation of under 2^-32 kJ/mol/nm per addition (a few dozen per row here: 64 units).
    np.testing.assert_allclose(forces[REAL], ref_forces[REAL], rtol=0,
                               atol=1e-9 * scale + 64 / FORCE_SCALE)
    # Against the CPU backend, whose pair kernel is float32: 1e-5 of the largest force.
    np.testing.assert_allclose(forces, cpu.forces, rtol=0, atol=1e-5 * scale)
    assert energy == pytest.approx(cpu.energy, rel=1e-6)  # float32 CPU pair energies


def test_distribution_matches_cpu_to_fixed_point_rounding(cuda_run):
    system, _, _ = every_kind_case()
    distributed, reported = cuda_run["distributed"]
    placed = cuda_run["every_kind_placed"]
    start = forces_from_fixed(random_fixed_forces(N_SITES_CASE))
    cpu = CpuVirtualSites(bencao.System.from_openmm(system).virtual_sites)
    expected = cpu.distribute(placed, start.copy())
    # The device adds each redistributed part as fixed point, truncated by under 1/FORCE_SCALE
    # (2.3e-10 kJ/mol/nm) where the CPU adds in float64: a parent here receives at most 3 parts
    # per component (atom 5 from sites 9, 10, 11), plus under 1 unit carried from site 4 through
    # site 3, so 4 units bound the difference (measured 1.75); 8 leaves room for GPU FMA.
    np.testing.assert_allclose(distributed, expected, rtol=0, atol=8 / FORCE_SCALE)
    assert np.all(distributed[SITES] == 0.0)
    assert np.abs(distributed - start)[REAL].max() > 1.0  # the sites' forces really moved
    # The sites' own forces, kept before distribution (site 3's without site 4's share), come
    # back exactly: the CPU backend reports these rows.
    np.testing.assert_array_equal(reported[SITES], start[SITES])
    np.testing.assert_array_equal(reported[REAL], distributed[REAL])


def test_simulation_with_every_site_kind_follows_the_cpu_trajectory(cuda_run):
    _, positions, _ = every_kind_case()
    cpu = every_kind_steps("cpu")
    cuda = cuda_run["steps"]
    assert np.abs(cpu - positions)[REAL].max() > 1e-5  # the atoms really moved
    # The forces differ by under 1e-4 kJ/mol/nm (float32 CPU pairs), which moves 12 amu atoms
    # by ~1e-11 nm in 3 fs; a site force left on the massless site instead of its parents
    # (~100 kJ/mol/nm) moves them by ~1e-5 nm.  The sites follow their parents on both.
    np.testing.assert_allclose(cuda, cpu, rtol=0, atol=1e-9)
