"""Implicit solvent (``pytest -m validation``): OpenMM's HCT, OBC1 and GBn models against its
Reference platform (OBC2 and GBn2 are in the default suite), and Langevin dynamics of trp-cage
in OBC2 and GBn2: stable, at the thermostat's temperature."""

from __future__ import annotations

import numpy as np
import pytest
from implicit import assert_gb_matches, trpcage
from openmm import app, unit

import bencao

pytestmark = pytest.mark.validation

#: Length of each run, ps: the 1 ns the issue asks for.  The mean of ~300 K kinetic temperatures
#: of 304 atoms (fluctuation ~4.7%, correlation ~0.1 ps) over 1 ns has a standard error near
#: 0.05%, far inside the 1% asserted, so a failure is a thermostat or force error, not noise.
PICOSECONDS = 1000.0
TIMESTEP = 0.004  # ps, with hydrogen mass repartitioning (3 amu) and H-bond constraints


@pytest.mark.parametrize("model", ["hct", "obc1", "gbn"])
def test_other_app_layer_models_match_reference(model):
    system, positions = trpcage(model)
    assert_gb_matches(system, positions)


@pytest.mark.parametrize("model", ["obc2", "gbn2"])
def test_langevin_dynamics_is_stable_at_temperature(model):
    system, positions = trpcage(model, constraints=app.HBonds, hydrogenMass=3 * unit.amu)
    simulation = bencao.Simulation(bencao.System.from_openmm(system),
                                   bencao.LangevinMiddleIntegrator(300.0, 1.0, TIMESTEP),
                                   positions, seed=3)
    simulation.minimize(max_iterations=500)
    simulation.set_velocities_to_temperature(300.0)
    simulation.step(int(10.0 / TIMESTEP))  # 10 ps to equilibrate
    temperatures, energies = [], []
    every = 25
    for _ in range(int(PICOSECONDS / TIMESTEP / every)):
        simulation.step(every)
        state = simulation.state
        temperatures.append(state.temperature)
        energies.append(state.potential_energy)
    mean = float(np.mean(temperatures))
    print(f"\nVALIDATION implicit {model} trp-cage {PICOSECONDS:g} ps at {TIMESTEP * 1000:g} fs: "
          f"mean_T={mean:.3f} std_T={np.std(temperatures):.3f} "
          f"mean_E={np.mean(energies):.1f} std_E={np.std(energies):.1f} kJ/mol")
    assert np.all(np.isfinite(energies))
    assert mean == pytest.approx(300.0, rel=0.01)
