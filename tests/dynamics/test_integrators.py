"""Integrators on real systems: OpenMM agreement, conservation, thermostat, MTS, barostat."""

from __future__ import annotations

import numpy as np
import openmm as mm
import pytest
from openmm import app, unit
from reference import data_path
from systems import alanine_dipeptide, water_box

import bencao
from bencao.constants import BAR, BOLTZMANN
from bencao.dynamics.molecules import find_molecules

NM = unit.nanometer


def _flexible_water(size=2.0, cm_every=10):
    """Flexible TIP3P water with PME: an unconstrained system with every kind of stiff motion."""
    topology, positions, box, ff = water_box(size)
    system = ff.createSystem(topology, nonbondedMethod=app.PME, nonbondedCutoff=0.8 * NM,
                             rigidWater=False, constraints=None)
    if cm_every:
        system.addForce(mm.CMMotionRemover(cm_every))
    return system, positions, box


def _trace(simulation, n_blocks, steps):
    """Run ``n_blocks`` x ``steps`` steps; the state after each block."""
    states = []
    for _ in range(n_blocks):
        simulation.step(steps)
        states.append(simulation.state)
    return states


def test_verlet_follows_openmm_reference_trajectory():
    system, positions, box = _flexible_water()
    simulation = bencao.Simulation(bencao.System.from_openmm(system), bencao.VerletIntegrator(0.0005),
                                   positions, box)
    simulation.set_velocities_to_temperature(300.0, seed=3)
    integrator = mm.VerletIntegrator(0.0005)
    context = mm.Context(system, integrator, mm.Platform.getPlatformByName("Reference"))
    context.setPositions(simulation.positions * NM)
    context.setVelocities(simulation.velocities * NM / unit.picosecond)
    for ours in _trace(simulation, 4, 25):
        integrator.step(25)
        theirs = context.getState(getEnergy=True, getPositions=True)
        reference = theirs.getPositions(asNumpy=True).value_in_unit(NM)
        # the float32 pair kernel (as OpenMM's CPU platform) agrees to ~1e-6 relative in forces;
        # 100 steps of chaotic divergence stay below 1e-6 nm
        assert np.abs(ours.positions - reference).max() < 1e-6
        kinetic = theirs.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
        potential = theirs.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        # OpenMM's half-step-shifted kinetic energy convention; the float32 pair forces leave
        # 1e-7 to 2e-7 relative after 100 steps in both energies (OpenMM CPU: ~1e-5 potential)
        assert ours.kinetic_energy == pytest.approx(kinetic, rel=1e-6)
        assert ours.potential_energy == pytest.approx(potential, rel=1e-6)


def test_reciprocal_every_two_stays_close_to_single_stepping():
    system, positions, box = _flexible_water()
    ours = bencao.System.from_openmm(system)
    runs = []
    for every in (1, 2):
        simulation = bencao.Simulation(ours, bencao.VerletIntegrator(0.0005, reciprocal_every=every),
                                       positions, box)
        simulation.set_velocities_to_temperature(300.0, seed=3)
        runs.append(_trace(simulation, 10, 10))
    single, multiple = (np.array([s.total_energy for s in run]) for run in runs)
    kinetic = np.mean([s.kinetic_energy for s in runs[0]])
    # NVE: MTS's extra energy error over 50 fs stays well below 0.2% of the kinetic energy
    assert np.abs(multiple - single).max() < 2e-3 * kinetic
    assert multiple.std() < 2.0 * single.std() + 1e-4 * kinetic
    # after 5 fs the impulses have moved atoms by ~dt^2 F_recip / m per cycle, not more
    assert np.abs(runs[0][0].positions - runs[1][0].positions).max() < 1e-3


def test_langevin_middle_holds_the_temperature_with_rigid_water():
    topology, positions, box, ff = water_box(2.0)
    system = ff.createSystem(topology, nonbondedMethod=app.PME, nonbondedCutoff=0.8 * NM,
                             rigidWater=True)
    simulation = bencao.Simulation(bencao.System.from_openmm(system),
                                   bencao.LangevinMiddleIntegrator(300.0, 10.0, 0.002), positions, box,
                                   seed=11)
    simulation.minimize(tolerance=50.0)  # Modeller's small box has clashes across its faces
    simulation.set_velocities_to_temperature(300.0)
    simulation.step(200)
    temperatures = [state.temperature for state in _trace(simulation, 40, 25)]
    # 40 samples 50 fs apart, correlation time ~1/(2 gamma) = 50 fs: ~40 independent ones, each
    # spread by sqrt(2/Ndf) T = 11 K, so the mean is known to ~2 K; 8 K is four standard errors
    # (the 1% test over a long run is in the validation suite)
    assert np.mean(temperatures) == pytest.approx(300.0, abs=8.0)


def test_nose_hoover_conserves_its_extended_energy_and_thermostats():
    system, positions, box = _flexible_water()
    ours = bencao.System.from_openmm(system)
    verlet = bencao.Simulation(ours, bencao.VerletIntegrator(0.0005), positions, box)
    verlet.set_velocities_to_temperature(300.0, seed=3)
    nve = np.array([s.total_energy for s in _trace(verlet, 20, 20)])
    nose = bencao.Simulation(ours, bencao.NoseHooverIntegrator(300.0, 20.0, 0.0005), positions, box)
    nose.set_velocities_to_temperature(300.0, seed=3)
    states = _trace(nose, 20, 20)
    conserved = np.array([s.conserved_energy for s in states])
    total = np.array([s.total_energy for s in states])
    # the thermostat does real work (K + U changes by far more than NVE noise) ...
    assert np.ptp(total) > 20 * nve.std()
    # ... yet its conserved quantity is as steady as Verlet's total energy
    assert conserved.std() < 2.0 * nve.std()
    # the bonds relax and heat the box (to ~1000 K under NVE); the chain pulls it back to 300 K
    assert states[-1].temperature < 0.5 * verlet.state.temperature


def test_set_velocities_to_temperature_is_exact_and_momentum_free():
    system, positions, box = _flexible_water()
    simulation = bencao.Simulation(bencao.System.from_openmm(system),
                                   bencao.LangevinMiddleIntegrator(300.0, 1.0, 0.001), positions, box)
    simulation.set_velocities_to_temperature(250.0, seed=7)
    state = simulation.state
    assert state.temperature == pytest.approx(250.0, rel=1e-12)  # scaled exactly, round-off only
    momentum = (simulation.masses[:, None] * state.velocities).sum(axis=0)
    assert np.abs(momentum).max() < 1e-10  # removed: the system has a CMMotionRemover
    assert state.degrees_of_freedom == 3 * system.getNumParticles() - 3
    again = bencao.Simulation(bencao.System.from_openmm(system),
                              bencao.LangevinMiddleIntegrator(300.0, 1.0, 0.001), positions, box)
    again.set_velocities_to_temperature(250.0, seed=7)
    assert np.array_equal(again.velocities, state.velocities)


def test_langevin_runs_are_reproducible_from_the_seed():
    system, positions, box = _flexible_water()
    ours = bencao.System.from_openmm(system)
    finals = []
    for seed in (5, 5, 6):
        simulation = bencao.Simulation(ours, bencao.LangevinMiddleIntegrator(300.0, 1.0, 0.0005),
                                       positions, box, seed=seed)
        simulation.step(30)
        finals.append(simulation.positions)
    assert np.array_equal(finals[0], finals[1])
    assert not np.array_equal(finals[0], finals[2])


def _ideal_gas(n_particles=100, size=3.0):
    """Non-interacting particles in a periodic box (a NonbondedForce with no charges or epsilon)."""
    system = mm.System()
    force = mm.NonbondedForce()
    force.setNonbondedMethod(mm.NonbondedForce.CutoffPeriodic)
    force.setCutoffDistance(0.5)
    force.setUseDispersionCorrection(False)
    for _ in range(n_particles):
        system.addParticle(10.0)
        force.addParticle(0.0, 0.3, 0.0)
    system.addForce(force)
    system.setDefaultPeriodicBoxVectors(mm.Vec3(size, 0, 0), mm.Vec3(0, size, 0), mm.Vec3(0, 0, size))
    rng = np.random.default_rng(0)
    return system, rng.uniform(0, size, (n_particles, 3))


def test_monte_carlo_barostat_samples_the_ideal_gas_volume():
    # For N free molecules at pressure P, the NPT volume distribution is V^N exp(-PV/kT), so
    # <V> = (N + 1) kT / P: a check of the acceptance rule, the N_mol ln V term and the bar unit.
    n, temperature = 100, 300.0
    system, positions = _ideal_gas(n)
    target = 27.0  # nm^3
    pressure = (n + 1) * BOLTZMANN * temperature / target / BAR
    simulation = bencao.Simulation(
        bencao.System.from_openmm(system), bencao.VerletIntegrator(1e-6), positions,
        barostat=bencao.MonteCarloBarostat(pressure, temperature, frequency=1), seed=2)
    simulation.step(200)
    volumes = []
    for _ in range(2500):
        simulation.step(1)
        volumes.append(np.linalg.det(simulation.box))
    # the volume spreads by 10% (1/sqrt(N+1)); 2500 moves with correlation time ~10 moves leave
    # the mean known to ~0.6%, so 3% is five standard errors
    assert np.mean(volumes) == pytest.approx(target, rel=0.03)
    assert np.std(volumes) == pytest.approx(target / np.sqrt(n + 1), rel=0.25)


def test_barostat_moves_molecules_rigidly():
    topology, positions, box, ff = water_box(2.0)
    system = ff.createSystem(topology, nonbondedMethod=app.PME, nonbondedCutoff=0.8 * NM,
                             rigidWater=False, constraints=None)
    ours = bencao.System.from_openmm(system)
    start, atoms = find_molecules(ours)
    assert len(start) - 1 == topology.getNumResidues()  # one molecule per water
    residue = np.array([atom.residue.index for atom in topology.atoms()])
    assert all(len(set(residue[atoms[start[m]:start[m + 1]]])) == 1 for m in range(len(start) - 1))
    # a time step of 1e-9 ps: the forces move atoms by ~1e-15 nm, so only the barostat acts
    simulation = bencao.Simulation(ours, bencao.VerletIntegrator(1e-9), positions, box,
                                   barostat=bencao.MonteCarloBarostat(1.0, 300.0, frequency=1), seed=4)
    volume = simulation.state.volume
    for _ in range(20):
        before = simulation.positions
        simulation.step(1)
        if simulation.state.volume != volume:
            break
    assert simulation.state.volume != volume, "no volume move was accepted in 20 tries"
    after = simulation.positions
    oxygens = atoms[start[:-1]]
    for m, oxygen in enumerate(oxygens):
        members = atoms[start[m]:start[m + 1]]
        # rigid translation: the intramolecular vectors do not change (1e-12 nm: round-off)
        assert np.abs((after[members] - after[oxygen]) - (before[members] - before[oxygen])).max() < 1e-12


def test_bad_dynamics_input_is_refused():
    system, positions, box = _flexible_water()
    ours = bencao.System.from_openmm(system)
    with pytest.raises(ValueError, match="timestep"):
        bencao.VerletIntegrator(-0.002)
    with pytest.raises(ValueError, match="reciprocal_every"):
        bencao.LangevinMiddleIntegrator(300, 1, 0.002, reciprocal_every=0)
    with pytest.raises(TypeError, match="integrator must be one of"):
        bencao.Simulation(ours, mm.VerletIntegrator(0.001), positions, box)
    with pytest.raises(ValueError, match="velocities"):
        bencao.Simulation(ours, bencao.VerletIntegrator(0.001), positions, box,
                          velocities=np.zeros((3, 3)))
    gas, gas_positions = _ideal_gas(10)
    gas.getForce(0).setNonbondedMethod(mm.NonbondedForce.NoCutoff)
    with pytest.raises(ValueError, match="barostat needs a periodic system"):
        bencao.Simulation(bencao.System.from_openmm(gas), bencao.VerletIntegrator(0.001), gas_positions,
                          barostat=bencao.MonteCarloBarostat(1.0, 300.0))


def test_constraints_hold_every_step():
    system, positions, box = alanine_dipeptide(nonbondedMethod=app.PME, nonbondedCutoff=0.9 * NM,
                                               constraints=app.HBonds)
    tolerance = 1e-5
    simulation = bencao.Simulation(
        bencao.System.from_openmm(system),
        bencao.LangevinMiddleIntegrator(300.0, 1.0, 0.002, constraint_tolerance=tolerance),
        positions, box, seed=9)
    simulation.set_velocities_to_temperature(300.0)
    settled = simulation.constraints.settled
    assert settled.sum() == 3 * sum(r.name == "HOH" for r in app.AmberPrmtopFile(
        data_path("alanine-dipeptide-explicit.prmtop")).topology.residues())
    for _ in range(30):
        simulation.step(1)
        errors = simulation.constraints.relative_errors(simulation.positions)
        assert errors[~settled].max() <= tolerance
        assert errors[settled].max() < 1e-12  # SETTLE is analytic: float64 round-off only
