"""CUDA NonbondedForce against OpenMM's Reference platform and the CPU term, and run to run.

The CUDA work runs in one subprocess (see ``cuda_harness``); OpenMM and the CPU term are evaluated
here.  The systems are tiny for the simulator: a 1.9 nm water box (651 atoms, cutoff 0.8 nm) and
48 charged particles in a triclinic box.
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
from bencao.backends.cpu.nonbonded import CpuNonbonded
from bencao.forces import Nonbonded

# ------------------------------------------------------------------------------------------
# Cases, built the same way here and in the subprocess: (openmm System, positions nm, box nm)
# ------------------------------------------------------------------------------------------

WATER_METHODS = {
    "water_nocutoff": (app.NoCutoff, {}),
    "water_cutoff_switched": (app.CutoffPeriodic, {"switchDistance": 0.7 * unit.nanometer}),
    "water_pme": (app.PME, {}),
}

#: A reduced triclinic box (rows, nm): every off-diagonal element non-zero.
TRICLINIC = np.array([[2.0, 0.0, 0.0], [0.6, 1.9, 0.0], [-0.5, 0.7, 1.8]])


def water_case(name):
    """The 1.9 nm water box with only its NonbondedForce (dispersion correction on for the
    periodic methods), flexible water: only forces are evaluated."""
    method, options = WATER_METHODS[name]
    topology, positions, box, ff = water_box(1.9)
    system = ff.createSystem(topology, nonbondedMethod=method, rigidWater=False,
                             nonbondedCutoff=0.8 * unit.nanometer, **options)
    for k in reversed(range(system.getNumForces())):
        if not isinstance(system.getForce(k), mm.NonbondedForce):
            system.removeForce(k)
    return system, positions, box


def triclinic_case(method=mm.NonbondedForce.PME):
    """48 particles with random charges (net charge: PME's neutralising term), LJ parameters,
    exclusions and scaled 1-4-like exceptions, on a jittered lattice in ``TRICLINIC``."""
    rng = np.random.default_rng(3)
    grid = np.stack(np.meshgrid(*[np.arange(k) for k in (4, 4, 3)], indexing="ij"), -1)
    fractional = (grid.reshape(-1, 3) + 0.5) / np.array([4, 4, 3])
    positions = fractional @ TRICLINIC + rng.normal(scale=0.04, size=(48, 3))
    system = mm.System()
    force = mm.NonbondedForce()
    for _ in range(48):
        system.addParticle(12.0)
        force.addParticle(rng.uniform(-0.8, 0.9), rng.uniform(0.25, 0.35), rng.uniform(0.2, 0.9))
    for i in range(0, 48, 4):
        force.addException(i, i + 1, 0.0, 0.1, 0.0)  # an exclusion
        q = force.getParticleParameters(i)[0] * force.getParticleParameters(i + 2)[0]
        force.addException(i, i + 2, 0.8 * q, 0.3 * unit.nanometer, 0.4)  # a scaled pair
    force.setNonbondedMethod(method)
    # 0.7 nm, not more: with cutoffs near half the box width (0.89 nm here) OpenMM 8.6's
    # Reference platform depends on where the box origin is in a triclinic box (shifting every
    # atom by (0.3, 0.2, 0.1) nm changed its energy by 0.19 kJ/mol at 0.8 nm; its CPU platform
    # and bencao's CPU backend did not move)
    force.setCutoffDistance(0.7)
    force.setUseDispersionCorrection(True)
    system.addForce(force)
    system.setDefaultPeriodicBoxVectors(*(mm.Vec3(*row) for row in TRICLINIC))
    box = TRICLINIC if force.usesPeriodicBoundaryConditions() else None
    return system, positions, box


def moved(positions, scale, seed):
    """Positions moved by a Gaussian of ``scale`` nm per coordinate."""
    return positions + np.random.default_rng(seed).normal(scale=scale, size=positions.shape)


def _term(system):
    """The bencao Nonbonded term and default box of an openmm System."""
    bencao_system = bencao.System.from_openmm(system)
    return next(t for t in bencao_system.terms if isinstance(t, Nonbonded)), bencao_system.box


# ------------------------------------------------------------------------------------------
# The CUDA side (runs in the subprocess)
# ------------------------------------------------------------------------------------------


def cuda_results(path):
    """Evaluate every case with ``CudaNonbonded`` and pickle the results to ``path``."""
    from numba import cuda

    from bencao.backends.cuda import using_simulator
    from bencao.backends.cuda.nonbonded import CudaNonbonded
    from bencao.backends.cuda.state import CudaState

    def evaluate(nonbonded, positions, box):
        state = CudaState.allocate(len(positions))
        state.upload(positions, box)
        state.zero_forces()
        energy = nonbonded.compute(state, box)
        return energy, forces_from_fixed(state.download_forces())

    results = {"simulator": using_simulator()}
    for name in WATER_METHODS:
        system, positions, box = water_case(name)
        nonbonded = CudaNonbonded(*_term(system))
        results[name] = [evaluate(nonbonded, positions, box)]
        if name == "water_pme":  # again: the list is reused, the PME grid spread again
            results[name].append(evaluate(nonbonded, positions, box))

    system, positions, box = triclinic_case()
    nonbonded = CudaNonbonded(*_term(system))
    steps = []
    for k, current in enumerate([positions, moved(positions, 0.005, 1), moved(positions, 0.08, 2)]):
        steps.append(evaluate(nonbonded, current, box) + (nonbonded.neighbors.builds,))
    results["triclinic_pme"] = steps

    system, positions, box = triclinic_case(mm.NonbondedForce.CutoffNonPeriodic)
    results["triclinic_nonperiodic"] = evaluate(CudaNonbonded(*_term(system)), positions, box)

    system, positions, box = triclinic_case(mm.NonbondedForce.CutoffPeriodic)
    nonbonded = CudaNonbonded(*_term(system))
    nonbonded.neighbors._capacity = 1  # far too small: the build must grow the list
    nonbonded.neighbors.neighbors = cuda.device_array((len(positions), 1), np.int32)
    results["triclinic_grown"] = evaluate(nonbonded, positions, box) + (
        nonbonded.neighbors.neighbors.shape[1],)

    system, _, _ = triclinic_case(mm.NonbondedForce.Ewald)
    try:
        CudaNonbonded(*_term(system))
        results["ewald"] = None
    except TypeError as error:
        results["ewald"] = str(error)

    cuda_harness.save(results, path)


@pytest.fixture(scope="module")
def cuda_run(tmp_path_factory):
    """The pickled results of :func:`cuda_results`, on a real GPU if there is one."""
    path = tmp_path_factory.mktemp("cuda_nonbonded") / "results.pkl"
    return cuda_harness.cuda_results("test_cuda_nonbonded", path)


# ------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------


def assert_matches_openmm(system, positions, box, energy, forces, cpu_platform=True):
    """Energy to 1e-6 relative of OpenMM Reference; forces no worse than OpenMM's CPU platform
    (the project's bar) and, being float64 throughout, within 1e-7 (p99) of Reference."""
    ref_energy, ref_forces, _, _ = openmm_evaluation(system, positions, box)
    assert energy == pytest.approx(ref_energy, rel=1e-6)
    median, p99 = force_agreement(forces, ref_forces)
    assert p99 < 1e-7, (median, p99)
    if cpu_platform:
        _, cpu_forces, _, _ = openmm_evaluation(system, positions, box, platform="CPU")
        cpu_median, cpu_p99 = force_agreement(cpu_forces, ref_forces)
        assert median <= cpu_median and p99 <= cpu_p99, (median, p99, cpu_median, cpu_p99)


@pytest.mark.parametrize("name", list(WATER_METHODS))
def test_water_box_matches_openmm_and_cpu_term(cuda_run, name):
    system, positions, box = water_case(name)
    energy, forces = cuda_run[name][0]
    assert_matches_openmm(system, positions, box, energy, forces)
    term, default_box = _term(system)
    fixed = np.zeros((len(positions), 3), np.int64)
    cpu_energy = CpuNonbonded(term, default_box).compute(positions, box, fixed)
    # The CPU pair kernel is float32 (its p99 against Reference is ~7e-6 here): 1e-4 leaves
    # room for that and catches any wrong term, which is off by O(1).
    median, p99 = force_agreement(forces, forces_from_fixed(fixed))
    assert median < 1e-5 and p99 < 1e-4, (median, p99)
    assert energy == pytest.approx(cpu_energy, rel=1e-6)  # both energies are float64 passes


def test_forces_and_energy_bit_identical_run_to_run(cuda_run):
    (e1, f1), (e2, f2) = cuda_run["water_pme"]
    assert f1.tobytes() == f2.tobytes()
    assert np.float64(e1).tobytes() == np.float64(e2).tobytes()


def test_triclinic_pme_with_net_charge_and_list_rebuilds(cuda_run):
    system, positions, box = triclinic_case()
    steps = cuda_run["triclinic_pme"]
    # 0.005 nm moves keep the list (the two largest stay far under the 0.2 nm buffer); 0.08 nm
    # moves exceed it and force a rebuild
    assert [builds for _, _, builds in steps] == [1, 1, 2]
    for (energy, forces, _), current in zip(
            steps, [positions, moved(positions, 0.005, 1), moved(positions, 0.08, 2)]):
        assert_matches_openmm(system, current, box, energy, forces, cpu_platform=False)


def test_cutoff_nonperiodic_matches_openmm(cuda_run):
    system, positions, box = triclinic_case(mm.NonbondedForce.CutoffNonPeriodic)
    energy, forces = cuda_run["triclinic_nonperiodic"]
    assert_matches_openmm(system, positions, box, energy, forces, cpu_platform=False)


def test_list_grows_when_an_atom_has_more_partners_than_it_holds(cuda_run):
    system, positions, box = triclinic_case(mm.NonbondedForce.CutoffPeriodic)
    energy, forces, capacity = cuda_run["triclinic_grown"]
    assert capacity > 1
    assert_matches_openmm(system, positions, box, energy, forces, cpu_platform=False)


def test_ewald_is_refused_clearly(cuda_run):
    assert cuda_run["ewald"] == "Ewald is not yet on the CUDA backend; use PME"
