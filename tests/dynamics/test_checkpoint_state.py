"""A simulation restored from its checkpoint state continues bit-identically."""

import json

import numpy as np
import pytest
from openmm import app, unit
from systems import alanine_dipeptide

import bencao


def _simulation(integrator):
    system, positions, box = alanine_dipeptide(nonbondedMethod=app.PME,
                                               nonbondedCutoff=0.9 * unit.nanometer,
                                               constraints=app.HBonds)
    barostat = None
    if not isinstance(integrator, bencao.NoseHooverIntegrator):
        barostat = bencao.MonteCarloBarostat(1.0, 300.0, frequency=3)
    return bencao.Simulation(bencao.System.from_openmm(system), integrator, positions, box,
                             seed=7, barostat=barostat)


@pytest.mark.parametrize("make_integrator", [
    lambda: bencao.LangevinMiddleIntegrator(300.0, 1.0, 0.002, reciprocal_every=2),
    lambda: bencao.NoseHooverIntegrator(300.0, 10.0, 0.002),
], ids=["langevin-npt-mts", "nose-hoover"])
@pytest.mark.parametrize("split", [13, 12])
def test_restart_from_checkpoint_state_is_bit_identical(make_integrator, split):
    reference = _simulation(make_integrator())
    reference.set_velocities_to_temperature(300.0)
    # 13: between two reciprocal-space kicks; 12: right after a barostat move, with forces
    # cached by a state query before the move rebuilt the neighbour list for its trial box
    reference.step(split)
    _ = reference.state   # caches forces, as a reporter does before a checkpoint
    arrays, values = reference.get_checkpoint_state()
    # a JSON round trip, as the checkpoint file stores the values
    values = json.loads(json.dumps(values))
    reference.step(30 - split)
    expected = reference.state

    restarted = _simulation(make_integrator())
    restarted.set_checkpoint_state(arrays, values)
    restarted.step(30 - split)
    state = restarted.state
    assert state.step == expected.step == 30
    assert state.time == expected.time
    assert np.array_equal(state.positions, expected.positions)
    assert np.array_equal(state.velocities, expected.velocities)
    assert np.array_equal(state.box, expected.box)
    assert state.potential_energy == expected.potential_energy


def test_clock_continues_across_a_change_of_time_step():
    simulation = _simulation(bencao.LangevinMiddleIntegrator(300.0, 1.0, 0.002))
    simulation.set_clock(100, 0.1)
    simulation.step(5)
    assert simulation.step_count == 105
    assert simulation.time == pytest.approx(0.11, abs=1e-15)  # one float64 add of 5 x 0.002
