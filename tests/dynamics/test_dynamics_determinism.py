"""Same seed, same trajectory: bit-identical on 1 and 2 threads (constraints, Langevin, barostat)."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import hashlib, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from openmm import app, unit
    import bencao
    from systems import alanine_dipeptide
    system, positions, box = alanine_dipeptide(nonbondedMethod=app.PME,
                                               nonbondedCutoff=0.9 * unit.nanometer,
                                               constraints=app.HBonds)
    simulation = bencao.Simulation(
        bencao.System.from_openmm(system),
        bencao.LangevinMiddleIntegrator(300.0, 1.0, 0.002, reciprocal_every={every}),
        positions, box, seed=42, barostat=bencao.MonteCarloBarostat(1.0, 300.0, frequency=5))
    simulation.set_velocities_to_temperature(300.0)
    simulation.step(40)
    state = simulation.state
    digest = hashlib.sha256(state.positions.tobytes() + state.velocities.tobytes()
                            + state.box.tobytes() + np.float64(state.potential_energy).tobytes())
    print(digest.hexdigest())
    """
)


def _run(threads: int, every: int) -> str:
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    script = SCRIPT.format(tests=os.path.dirname(os.path.dirname(__file__)), every=every)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


def test_langevin_npt_trajectory_bit_identical_on_one_and_two_threads():
    assert _run(1, every=1) == _run(2, every=1)


def test_multiple_time_step_trajectory_bit_identical_on_one_and_two_threads():
    assert _run(1, every=2) == _run(2, every=2)
