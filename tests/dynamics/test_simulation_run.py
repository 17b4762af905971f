"""Simulation.run with reporters: OpenMM's reporter protocol, and the same trajectory as step."""

from __future__ import annotations

import numpy as np
from openmm import app, unit
from systems import water_box

import bencao


def _simulation():
    topology, positions, box, ff = water_box(1.6)
    system = ff.createSystem(topology, nonbondedMethod=app.PME, nonbondedCutoff=0.7 * unit.nanometer,
                             constraints=app.HBonds)
    simulation = bencao.Simulation(bencao.System.from_openmm(system),
                                   bencao.LangevinMiddleIntegrator(300.0, 1.0, 0.002), positions, box,
                                   seed=5)
    simulation.set_velocities_to_temperature(300.0, seed=3)
    return simulation


class TupleReporter:
    """An OpenMM-style reporter: ``describeNextReport`` answers a tuple (OpenMM 7's form)."""

    def __init__(self, interval):
        self.interval = interval
        self.seen = []

    def describeNextReport(self, simulation):
        steps = self.interval - simulation.currentStep % self.interval
        return (steps, True, False, False, True, False)

    def report(self, simulation, state):
        self.seen.append((state.step, state.positions.copy(), state.potential_energy))


class DictReporter(TupleReporter):
    """OpenMM 8's form of the answer: a dict."""

    def describeNextReport(self, simulation):
        return {"steps": self.interval - simulation.currentStep % self.interval, "periodic": None,
                "include": ["positions", "energy"]}


def test_run_reports_at_each_reporters_steps_and_follows_the_step_trajectory():
    every_7, every_10 = TupleReporter(7), DictReporter(10)
    simulation = _simulation()
    simulation.run(30, reporters=[every_7, every_10])
    assert [step for step, _, _ in every_7.seen] == [7, 14, 21, 28]
    assert [step for step, _, _ in every_10.seen] == [10, 20, 30]
    assert simulation.step_count == 30

    # Stopping for reports does not change the trajectory: plain step() calls to the same steps
    # give bit-identical positions and energies.
    plain = _simulation()
    for step, positions, energy in every_7.seen:
        plain.step(step - plain.step_count)
        assert np.array_equal(plain.positions, positions)
        assert plain.state.potential_energy == energy
    plain.step(30 - plain.step_count)
    assert np.array_equal(plain.positions, simulation.positions)
    assert np.array_equal(plain.velocities, simulation.velocities)
