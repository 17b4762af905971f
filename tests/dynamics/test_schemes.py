"""A new integrator is its record and its scheme: Simulation and the backends need no edit."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from openmm import app, unit
from systems import water_box

import bencao
from bencao.dynamics.integrators import INTEGRATORS, integrator


def velocity_verlet_step(primitives, record, step):
    """Velocity Verlet from the existing primitives (no thermostat, on-step velocities)."""
    dt = record.timestep
    primitives.kick(0.5 * dt, "all")
    primitives.drift(dt)
    primitives.constrain_positions(dt)
    primitives.kick(0.5 * dt, "all")
    primitives.constrain_velocities()


@pytest.fixture
def velocity_verlet():
    @integrator("test-velocity-verlet")
    @dataclass
    class VelocityVerletIntegrator:
        timestep: float
        constraint_tolerance: float = 1e-5
        reciprocal_every = 1
        kinetic_shift = 0.0
        thermostatted = False
        supports_mts = False
        friction_is_collision_frequency = False
        scheme = staticmethod(velocity_verlet_step)

        def make_chain(self, degrees_of_freedom):
            return None

    yield VelocityVerletIntegrator
    INTEGRATORS.pop("test-velocity-verlet")


def test_a_registered_scheme_runs_and_matches_leapfrog_positions(velocity_verlet):
    topology, positions, box, ff = water_box(1.6)
    omm = ff.createSystem(topology, nonbondedMethod=app.PME, nonbondedCutoff=0.7 * unit.nanometer,
                          rigidWater=False, constraints=None)
    system = bencao.System.from_openmm(omm)
    dt = 0.0005
    leapfrog = bencao.Simulation(system, bencao.VerletIntegrator(dt), positions, box)
    leapfrog.set_velocities_to_temperature(300.0, seed=3)
    # Leapfrog stores v(-dt/2); velocity Verlet v(0) = v(-dt/2) + dt/2 F(0)/m: the same
    # positions follow, step after step (Verlet's two forms of one discretisation).
    forces = leapfrog.backend.compute(leapfrog.positions, box, energy=False).forces
    on_step = leapfrog.velocities + 0.5 * dt * forces / system.masses[:, None]
    verlet = bencao.Simulation(system, velocity_verlet(dt), leapfrog.positions, box,
                               velocities=on_step)
    leapfrog.step(40)
    verlet.step(40)
    # Two half kicks round differently from one whole kick and the float32 pair forces pass that
    # on (measured: 5e-8 nm after 40 steps); a missing or misplaced half kick moves atoms by
    # dt^2 F / 2m ~ 1e-4 nm in one step.
    assert np.abs(verlet.positions - leapfrog.positions).max() < 1e-6
    assert verlet.step_count == 40


def test_multiple_time_stepping_without_reciprocal_space_is_single_stepping():
    # A cutoff system has no reciprocal-space group: reciprocal_every=2 must step exactly as 1
    # (bit for bit), not kick by an empty group or fail looking for one.
    topology, positions, box, ff = water_box(1.6)
    omm = ff.createSystem(topology, nonbondedMethod=app.CutoffPeriodic,
                          nonbondedCutoff=0.7 * unit.nanometer, constraints=app.HBonds)
    system = bencao.System.from_openmm(omm)
    runs = []
    for every in (1, 2):
        simulation = bencao.Simulation(
            system, bencao.LangevinMiddleIntegrator(300.0, 1.0, 0.002, reciprocal_every=every),
            positions, box, seed=4)
        simulation.step(6)
        runs.append(simulation.positions)
    assert np.array_equal(runs[0], runs[1])
