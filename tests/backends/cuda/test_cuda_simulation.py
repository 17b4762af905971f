"""``Simulation(..., backend="cuda")``: the whole leapfrog step on the GPU (or Numba's CUDA
simulator), against the CPU backend's trajectories, run to run and across a checkpoint.

The CUDA runs happen in one subprocess (see ``cuda_harness``); the CPU runs and the comparisons
happen here.  The boxes are small and the runs a few steps long, for the simulator.
"""

from __future__ import annotations

import sys

import cuda_harness
import numpy as np
import pytest

import bencao
from bencao.constants import BOLTZMANN

STEPS = 3


# ------------------------------------------------------------------------------------------
# Runs, made the same way in this process (CPU) and in the subprocess (CUDA)
# ------------------------------------------------------------------------------------------


def _water_system(size, cutoff, rigid=True):
    sys.path.insert(0, cuda_harness.TESTS)
    from openmm import app, unit
    from systems import water_box

    topology, positions, box, ff = water_box(size)
    system = ff.createSystem(topology, nonbondedMethod=app.PME, rigidWater=rigid,
                             nonbondedCutoff=cutoff * unit.nanometer,
                             constraints=app.HBonds if rigid else None)
    return bencao.System.from_openmm(system), positions, box


def water(backend: str):
    """A 1.9 nm box of rigid TIP3P water, PME 0.8 nm, after ``STEPS`` Verlet steps of 2 fs:
    (positions nm, velocities nm/ps)."""
    system, positions, box = _water_system(1.9, 0.8)
    simulation = bencao.Simulation(system, bencao.VerletIntegrator(0.002), positions, box,
                                   backend=backend)
    simulation.set_velocities_to_temperature(300.0, seed=5)
    simulation.step(STEPS)
    return simulation.positions, simulation.velocities


def small_water(backend, integrator, steps=STEPS, seed=1, barostat=None):
    """Rigid TIP3P in a 1.5 nm box, PME 0.7 nm, thermal velocities (seed 5), after ``steps``:
    (positions nm, velocities nm/ps, box nm)."""
    system, positions, box = _water_system(1.5, 0.7)
    simulation = bencao.Simulation(system, integrator, positions, box, backend=backend,
                                   seed=seed, barostat=barostat)
    simulation.set_velocities_to_temperature(300.0, seed=5)
    simulation.step(steps)
    return simulation.positions, simulation.velocities, simulation.box


def langevin():
    return bencao.LangevinMiddleIntegrator(300.0, 1.0, 0.002)


def nose_hoover():
    # A strong coupling (50/ps) so that the chain visibly changes the velocities in 3 steps
    return bencao.NoseHooverIntegrator(200.0, 50.0, 0.002)


def restarted_langevin(backend):
    """Langevin run of 1 + 1 steps, the second in a new Simulation restored from a checkpoint
    taken after the first: (positions, velocities)."""
    system, positions, box = _water_system(1.5, 0.7)
    first = bencao.Simulation(system, langevin(), positions, box, backend=backend, seed=1)
    first.set_velocities_to_temperature(300.0, seed=5)
    first.step(1)
    arrays, values = first.get_checkpoint_state()
    second = bencao.Simulation(system, langevin(), positions, box, backend=backend, seed=99)
    second.set_checkpoint_state(arrays, values)
    second.step(1)
    return second.positions, second.velocities


def ideal_gas_velocities(backend, n=3000, mass=12.0):
    """Velocities of ``n`` free particles after one LangevinMiddle step with a friction so strong
    that the O step forgets the old velocity (exp(-gamma dt) = e^-200): pure noise, nm/ps."""
    import openmm as mm

    system = mm.System()
    for _ in range(n):
        system.addParticle(mass)
    positions = np.random.default_rng(0).uniform(0.0, 10.0, size=(n, 3))
    simulation = bencao.Simulation(bencao.System.from_openmm(system),
                                   bencao.LangevinMiddleIntegrator(300.0, 1.0e5, 0.002),
                                   positions, backend=backend, seed=4)
    simulation.step(1)
    return simulation.velocities


def colliding_water(backend):
    """Flexible water with its first molecule (atoms 0-2) flung at the nearest other oxygen at
    100 nm/ps: the step at which the forces blow up, and the error."""
    from bencao.backends.cpu.backend import BlowUpError

    system, positions, box = _water_system(1.5, 0.7, rigid=False)
    oxygens = np.arange(0, len(positions), 3)
    distances = np.linalg.norm(positions[oxygens[1:]] - positions[0], axis=1)
    target = oxygens[1:][np.argmin(distances)]
    simulation = bencao.Simulation(system, bencao.VerletIntegrator(0.002), positions, box,
                                   backend=backend)
    velocities = np.zeros_like(positions)
    direction = positions[target] - positions[0]
    velocities[:3] = 100.0 * direction / np.linalg.norm(direction)
    simulation.velocities = velocities
    try:
        simulation.step(20)
    except BlowUpError as error:
        return {"target": int(target), "step": simulation.step_count, "message": str(error),
                "particles": error.particles}
    return None


def verlet_state_then_minimum(backend):
    """Rigid TIP3P in a 1.5 nm box after 3 Verlet steps: the reported energies (the kinetic one
    with Verlet's half-step shift, constrained) and a 15-iteration constrained minimisation:
    (kinetic kJ/mol, potential kJ/mol, minimised energy kJ/mol, minimised positions nm)."""
    system, positions, box = _water_system(1.5, 0.7)
    simulation = bencao.Simulation(system, bencao.VerletIntegrator(0.002), positions, box,
                                   backend=backend)
    simulation.set_velocities_to_temperature(300.0, seed=5)
    simulation.step(3)
    state = simulation.state
    result = simulation.minimize(tolerance=1.0, max_iterations=15)
    return state.kinetic_energy, state.potential_energy, result.energy, simulation.positions


def cuda_results(path):
    """Run every case on the CUDA backend and pickle the results to ``path``."""
    from bencao.backends.cuda import using_simulator
    from bencao.dynamics.barostat import MonteCarloBarostat

    results = {"simulator": using_simulator()}
    results["verlet"] = water("cuda")
    results["mts"] = small_water("cuda", bencao.VerletIntegrator(0.002, reciprocal_every=2), 4)
    results["frictionless"] = small_water(
        "cuda", bencao.LangevinMiddleIntegrator(300.0, 0.0, 0.002))
    results["nose_hoover"] = small_water("cuda", nose_hoover())
    results["langevin"] = [small_water("cuda", langevin(), 2, seed=1) for _ in range(2)]
    results["langevin_other_seed"] = small_water("cuda", langevin(), 2, seed=2)
    results["restarted"] = restarted_langevin("cuda")
    results["barostat"] = small_water("cuda", bencao.VerletIntegrator(0.002), 2,
                                      barostat=MonteCarloBarostat(1.0, 300.0, 1))
    results["ideal_gas"] = ideal_gas_velocities("cuda")
    results["collision"] = colliding_water("cuda")
    results["state_and_minimum"] = verlet_state_then_minimum("cuda")
    cuda_harness.save(results, path)


# ------------------------------------------------------------------------------------------
# The subprocess (cuda_harness)
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cuda(tmp_path_factory):
    """The pickled results of :func:`cuda_results`, on a GPU if there is one."""
    path = tmp_path_factory.mktemp("cuda") / "results.pkl"
    return cuda_harness.cuda_results("test_cuda_simulation", path, timeout=1200)


# ------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------


def test_cuda_simulation_follows_the_cpu_trajectory(cuda):
    positions, velocities = water("cpu")
    start = _water_system(1.9, 0.8)[1]
    assert np.abs(positions - start).max() > 1e-3  # the atoms really moved
    # The CPU pair kernel sums in float32: on this unminimised box (|F| up to 1.2e5 kJ/mol/nm)
    # its forces are up to 0.56 kJ/mol/nm off the float64 CUDA ones, which moves atoms by
    # 1.5e-7, 3.5e-7, 5.5e-7 nm after 1, 2, 3 steps (measured).  Tolerances: 10 times that.  A
    # missing or wrong term (tens of kJ/mol/nm on many atoms) shows at ~1e-5 nm.
    np.testing.assert_allclose(cuda["verlet"][0], positions, rtol=0, atol=5e-6)
    np.testing.assert_allclose(cuda["verlet"][1], velocities, rtol=0, atol=2.5e-3)


@pytest.mark.parametrize("case", ["mts", "frictionless", "nose_hoover"])
def test_mts_langevin_and_nose_hoover_steps_follow_the_cpu(cuda, case):
    if case == "nose_hoover":
        cpu = small_water("cpu", nose_hoover())
        uncoupled = small_water("cpu", bencao.NoseHooverIntegrator(200.0, 1e-6, 0.002))
        # The chain (heat bath at 200 K, the water starts at 300 K) changes the velocities by
        # far more than the tolerance (1.5 nm/ps here): a device step that skipped the
        # thermostat would fail
        assert np.abs(uncoupled[1] - cpu[1]).max() > 1e-1
    elif case == "mts":
        cpu = small_water("cpu", bencao.VerletIntegrator(0.002, reciprocal_every=2), 4)
        other = small_water("cpu", bencao.VerletIntegrator(0.002), 4)
        # MTS moves the atoms differently from single stepping: far more than the tolerance,
        # so a device run that ignored reciprocal_every would fail
        assert np.abs(other[0] - cpu[0]).max() > 1e-4
    else:
        # No friction: the O step keeps the velocities and adds no noise, so CPU and CUDA
        # take the same deterministic path through the Langevin kernels and constraints
        cpu = small_water("cpu", bencao.LangevinMiddleIntegrator(300.0, 0.0, 0.002))
    # As in the 1.9 nm case: float32 CPU pair sums against float64 CUDA ones, a few 1e-7 nm
    # after 3-4 steps; 5e-6 nm and 2.5e-3 nm/ps leave a factor of ten
    np.testing.assert_allclose(cuda[case][0], cpu[0], rtol=0, atol=5e-6)
    np.testing.assert_allclose(cuda[case][1], cpu[1], rtol=0, atol=2.5e-3)


def test_langevin_on_the_device_is_bit_identical_run_to_run_and_seeded(cuda):
    first, second = cuda["langevin"]
    for a, b in zip(first, second):
        assert np.array_equal(a, b)
    # A different seed gives different noise, and the noise is large enough to see
    assert np.abs(cuda["langevin_other_seed"][1] - first[1]).max() > 1e-2


def test_langevin_on_the_device_continues_bit_identically_from_a_checkpoint(cuda):
    uninterrupted = cuda["langevin"][0]
    restarted = cuda["restarted"]
    assert np.array_equal(restarted[0], uninterrupted[0])
    assert np.array_equal(restarted[1], uninterrupted[1])


def test_device_noise_is_maxwell_boltzmann(cuda):
    velocities = cuda["ideal_gas"]
    kt = BOLTZMANN * 300.0
    reduced = velocities * np.sqrt(12.0 / kt)  # standard normal if the noise is right
    n = reduced.size
    # Mean 0 and variance 1 of n normal numbers: the standard errors are 1/sqrt(n) and
    # sqrt(2/n); 5 standard errors make a false failure a one-in-a-million event
    assert abs(reduced.mean()) < 5.0 / np.sqrt(n)
    assert abs(np.mean(reduced**2) - 1.0) < 5.0 * np.sqrt(2.0 / n)
    # Neighbouring particles and components are independent: the correlation of consecutive
    # numbers is within 5 standard errors (1/sqrt(n)) of zero
    flat = reduced.ravel()
    assert abs(np.corrcoef(flat[:-1], flat[1:])[0, 1]) < 5.0 / np.sqrt(n)


def test_barostat_moves_with_device_steps_match_the_cpu(cuda):
    from bencao.dynamics.barostat import MonteCarloBarostat

    positions, _, box = cuda["barostat"]
    cpu = small_water("cpu", bencao.VerletIntegrator(0.002), 2,
                      barostat=MonteCarloBarostat(1.0, 300.0, 1))
    assert not np.allclose(cpu[2], _water_system(1.5, 0.7)[2])  # some move was accepted
    # The same host random stream proposes the same volumes and the device energies agree with
    # the CPU's to ~1e-3 kJ/mol, far from flipping an acceptance: the same boxes, bit for bit
    assert np.array_equal(box, cpu[2])
    np.testing.assert_allclose(positions, cpu[0], rtol=0, atol=5e-6)  # reason as above


def test_a_blow_up_on_the_device_names_the_step_and_the_atoms_like_the_cpu(cuda):
    result = cuda["collision"]
    cpu = colliding_water("cpu")
    assert result is not None and cpu is not None
    # The device catches the blow-up after its batch and replays it step by step: it stops at
    # the step the CPU stopped at, with the CPU backend's diagnosis of the same atoms
    assert result["step"] == cpu["step"]
    assert f"at step {cpu['step']}" in result["message"]
    assert set(result["particles"][:2]) == set(cpu["particles"][:2])
    assert "the term responsible is NonbondedForce" in result["message"]


def test_reported_energies_and_constrained_minimisation_on_the_device_match_the_cpu(cuda):
    kinetic, potential, minimum, positions = cuda["state_and_minimum"]
    cpu = verlet_state_then_minimum("cpu")
    # The shifted kinetic energy is constrained and summed on the device (2^-24 kJ/mol per
    # particle); the CPU's float32 pair forces differ from the device's float64 ones by up to
    # 0.6 kJ/mol/nm (see above), which moves K by far less than 1e-4 of its ~1e3 kJ/mol.
    assert kinetic == pytest.approx(cpu[0], rel=1e-5)
    assert potential == pytest.approx(cpu[1], rel=1e-5)
    # Minimisation runs on the host with device forces and device constraint projections: the
    # same L-BFGS path up to the force rounding, so the same energy to 1e-4 relative after 15
    # iterations, and the waters stay rigid.
    assert minimum == pytest.approx(cpu[2], rel=1e-4)
    assert minimum < cpu[1]
    system = _water_system(1.5, 0.7)[0]
    pairs = system.constraint_atoms
    lengths = np.linalg.norm(positions[pairs[:, 0]] - positions[pairs[:, 1]], axis=1)
    assert np.abs(lengths / system.constraint_lengths - 1.0).max() < 1e-5
