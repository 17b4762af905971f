"""Long physical validations of the dynamics (``pytest -m validation -s``; tens of minutes).

Each test prints a ``VALIDATION`` line with the measured numbers, for the closing notes.
"""

from __future__ import annotations

import numpy as np
import openmm as mm
import pytest
from openmm import app, unit
from systems import alanine_dipeptide, water_box

import bencao
from bencao.bench.systems import dhfr_openmm
from bencao.constants import BOLTZMANN

pytestmark = pytest.mark.validation

NM = unit.nanometer
KJ = unit.kilojoule_per_mole


def _report(name, **values):
    text = ", ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
    print(f"\nVALIDATION {name}: {text}")


def _drift_per_dof(times_ps, energies, temperature, dof):
    """Slope of a least-squares line through E(t), in kT per ns per degree of freedom."""
    slope = np.polyfit(np.asarray(times_ps), np.asarray(energies), 1)[0]  # kJ/mol/ps
    return slope * 1000.0 / (BOLTZMANN * temperature * dof)


def _equilibrated(system, positions, box, temperature, picoseconds, timestep=0.002, seed=1):
    """bencao Langevin equilibration from a minimized start: (positions, velocities, box)."""
    ours = bencao.System.from_openmm(system)
    simulation = bencao.Simulation(ours, bencao.LangevinMiddleIntegrator(temperature, 5.0, timestep),
                                   positions, box, seed=seed)
    simulation.minimize(max_iterations=200)
    simulation.set_velocities_to_temperature(temperature)
    simulation.step(int(round(picoseconds / timestep)))
    return simulation.positions, simulation.velocities, simulation.box


def _nve_drift_pair(system, positions, box, picoseconds, timestep=0.002, every=25, temperature=300.0,
                    reciprocal_every=1, seed=1):
    """NVE energy drift of bencao and OpenMM's CPU platform from the same equilibrated state."""
    positions, velocities, box = _equilibrated(system, positions, box, temperature, 2.0, timestep,
                                               seed=seed)
    n_blocks = int(round(picoseconds / timestep / every))
    ours = bencao.Simulation(bencao.System.from_openmm(system),
                             bencao.VerletIntegrator(timestep, reciprocal_every=reciprocal_every),
                             positions, box, velocities=velocities)
    dof = ours.degrees_of_freedom
    times, our_energy = [], []
    for _ in range(n_blocks):
        ours.step(every)
        state = ours.state
        times.append(state.time)
        our_energy.append(state.total_energy)
    integrator = mm.VerletIntegrator(timestep)
    integrator.setConstraintTolerance(1e-5)
    context = mm.Context(system, integrator, mm.Platform.getPlatformByName("CPU"), {"Threads": "2"})
    context.setPeriodicBoxVectors(*[mm.Vec3(*row) for row in box])
    context.setPositions(positions * NM)
    context.setVelocities(velocities * NM / unit.picosecond)
    their_energy = []
    for _ in range(n_blocks):
        integrator.step(every)
        state = context.getState(getEnergy=True)
        their_energy.append((state.getPotentialEnergy() + state.getKineticEnergy()).value_in_unit(KJ))
    return (_drift_per_dof(times, our_energy, temperature, dof),
            _drift_per_dof(times, their_energy, temperature, dof), np.std(our_energy), np.std(their_energy))


def _no_worse(ours, theirs):
    # A drift is "no worse" when it is within the other's magnitude plus 0.01 kT/ns/dof, the
    # resolution of a 20 ps slope fit of these energy fluctuations
    return abs(ours) <= abs(theirs) + 0.01


def test_nve_drift_dhfr_no_worse_than_openmm():
    system, positions, box = dhfr_openmm()
    ours, theirs, our_std, their_std = _nve_drift_pair(system, positions, box, picoseconds=20.0)
    _report("NVE DHFR 2 fs HBonds PME 20 ps", bencao_kT_per_ns_per_dof=ours, openmm_cpu=theirs,
            bencao_energy_std=our_std, openmm_energy_std=their_std)
    assert _no_worse(ours, theirs)


#: Independent replicas of the small alanine-dipeptide box.  One 20 ps slope scatters by about
#: 0.007 kT/ns/dof from seed to seed (measured over seeds 1-8, bencao and OpenMM alike), so the
#: difference of two single runs has a spread of 0.01, the size of the bar itself.  The mean of
#: three replicas per engine (a spread of 0.006) still left the verdict to chance: OpenMM CPU's
#: mean of seeds 1-3 was -0.021 in one session and -0.013 in another.  Eight bring the spread
#: of the difference to 0.0035, a third of the bar.
ALANINE_REPLICAS = tuple(range(1, 9))


@pytest.mark.parametrize("reciprocal_every", [1, 2])
def test_nve_drift_alanine_dipeptide_no_worse_than_openmm(reciprocal_every):
    system, positions, box = alanine_dipeptide(nonbondedMethod=app.PME, nonbondedCutoff=0.9 * NM,
                                               constraints=app.HBonds)
    runs = [_nve_drift_pair(system, positions, box, picoseconds=20.0,
                            reciprocal_every=reciprocal_every, seed=seed)
            for seed in ALANINE_REPLICAS]
    ours, theirs, our_std, their_std = np.mean(runs, axis=0)
    _report(f"NVE alanine dipeptide 2 fs HBonds PME 20 ps, reciprocal every {reciprocal_every}, "
            f"mean of {len(runs)} replicas",
            bencao_kT_per_ns_per_dof=ours, openmm_cpu=theirs, bencao_energy_std=our_std,
            openmm_energy_std=their_std,
            replicas=[(round(float(a), 4), round(float(b), 4)) for a, b, _, _ in runs])
    assert _no_worse(ours, theirs)


def _temperatures(system, positions, box, picoseconds, integrator, timestep=0.002, every=10):
    positions, velocities, box = _equilibrated(system, positions, box, 300.0, 5.0, timestep)
    simulation = bencao.Simulation(bencao.System.from_openmm(system), integrator, positions, box,
                                   velocities=velocities, seed=7)
    temperatures = []
    for _ in range(int(round(picoseconds / timestep / every))):
        simulation.step(every)
        temperatures.append(simulation.state.temperature)
    return np.array(temperatures), simulation.degrees_of_freedom


def _canonical_checks(name, temperatures, dof, target=300.0):
    mean = float(np.mean(temperatures))
    expected_std = target * np.sqrt(2.0 / dof)
    _report(name, mean_T=mean, target=target, std_T=float(np.std(temperatures)),
            canonical_std=expected_std, dof=dof)
    assert mean == pytest.approx(target, rel=0.01)
    # canonical kinetic-energy fluctuation sqrt(2/Ndf) T; 15% for the sampling error of a
    # standard deviation from ~100 independent samples plus the thermostat's correlation
    assert np.std(temperatures) == pytest.approx(expected_std, rel=0.15)


def _rigid_water(size=3.0):
    topology, positions, box, ff = water_box(size)
    system = ff.createSystem(topology, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * NM,
                             constraints=app.HBonds, rigidWater=True)
    return system, positions, box


@pytest.mark.parametrize("reciprocal_every", [1, 2])
def test_langevin_temperature_water_box(reciprocal_every):
    system, positions, box = _rigid_water()
    integrator = bencao.LangevinMiddleIntegrator(300.0, 1.0, 0.002, reciprocal_every=reciprocal_every)
    temperatures, dof = _temperatures(system, positions, box, 40.0, integrator)
    _canonical_checks(f"Langevin TIP3P box 2 fs 40 ps, reciprocal every {reciprocal_every}",
                      temperatures, dof)


def test_langevin_temperature_alanine_dipeptide():
    system, positions, box = alanine_dipeptide(nonbondedMethod=app.PME, nonbondedCutoff=0.9 * NM,
                                               constraints=app.HBonds)
    temperatures, dof = _temperatures(system, positions, box, 40.0,
                                      bencao.LangevinMiddleIntegrator(300.0, 1.0, 0.002))
    _canonical_checks("Langevin alanine dipeptide 2 fs 40 ps", temperatures, dof)


def test_nose_hoover_temperature_and_conservation_water_box():
    system, positions, box = _rigid_water()
    positions, velocities, box = _equilibrated(system, positions, box, 300.0, 5.0)
    simulation = bencao.Simulation(bencao.System.from_openmm(system),
                                   bencao.NoseHooverIntegrator(300.0, 1.0, 0.002), positions, box,
                                   velocities=velocities)
    temperatures, conserved, times = [], [], []
    for _ in range(2000):
        simulation.step(10)
        state = simulation.state
        temperatures.append(state.temperature)
        conserved.append(state.conserved_energy)
        times.append(state.time)
    drift = _drift_per_dof(times, conserved, 300.0, simulation.degrees_of_freedom)
    mean = float(np.mean(temperatures))
    _report("Nose-Hoover TIP3P box 2 fs 40 ps", mean_T=mean, conserved_drift_kT_per_ns_per_dof=drift)
    assert mean == pytest.approx(300.0, rel=0.01)
    # OpenMM CPU's NVE drift on solvated alanine dipeptide at 2 fs measured -0.02 to -0.05 here
    assert abs(drift) < 0.05


def test_npt_density_tip3p_matches_openmm():
    system, positions, box = _rigid_water(3.0)
    positions, velocities, box = _equilibrated(system, positions, box, 300.0, 2.0)
    timestep, every, equilibration, production = 0.002, 50, 10.0, 60.0
    ours = bencao.Simulation(bencao.System.from_openmm(system),
                             bencao.LangevinMiddleIntegrator(300.0, 1.0, timestep), positions, box,
                             velocities=velocities, barostat=bencao.MonteCarloBarostat(1.0, 300.0, 25),
                             seed=3)
    ours.step(int(equilibration / timestep))
    our_density = []
    for _ in range(int(production / timestep / every)):
        ours.step(every)
        our_density.append(ours.state.density)
    theirs_system = mm.XmlSerializer.deserialize(mm.XmlSerializer.serialize(system))
    theirs_system.addForce(mm.MonteCarloBarostat(1.0 * unit.bar, 300.0 * unit.kelvin, 25))
    integrator = mm.LangevinMiddleIntegrator(300.0, 1.0, timestep)
    context = mm.Context(theirs_system, integrator, mm.Platform.getPlatformByName("CPU"), {"Threads": "2"})
    context.setPeriodicBoxVectors(*[mm.Vec3(*row) for row in box])
    context.setPositions(positions * NM)
    context.setVelocities(velocities * NM / unit.picosecond)
    integrator.step(int(equilibration / timestep))
    total_mass = sum(system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(system.getNumParticles()))
    their_density = []
    for _ in range(int(production / timestep / every)):
        integrator.step(every)
        volume = context.getState().getPeriodicBoxVolume().value_in_unit(NM**3)
        their_density.append(1.66053906660e-3 * total_mass / volume)
    ours_mean, theirs_mean = float(np.mean(our_density)), float(np.mean(their_density))
    _report("NPT TIP3P 300 K 1 bar 60 ps", bencao_density=ours_mean, openmm_cpu_density=theirs_mean,
            bencao_std=float(np.std(our_density)), openmm_std=float(np.std(their_density)))
    assert ours_mean == pytest.approx(theirs_mean, rel=0.005)
    assert 0.97 < ours_mean < 1.0  # published TIP3P/PME density at 300 K, 1 bar: ~0.98-0.99
