"""``Simulation(..., backend="cuda")``: forces on the GPU (or Numba's CUDA simulator), the rest
of the step on the host, the same trajectory as the CPU backend to the CPU's float32 level.

The CUDA work runs in a subprocess (see ``test_cuda_bonded``: the simulator must be switched on
before Numba is first imported)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np

import bencao

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(os.path.dirname(HERE))
STEPS = 3


def water(backend: str):
    """A 1.9 nm box of rigid TIP3P water, PME 0.8 nm, after ``STEPS`` Verlet steps of 2 fs:
    (positions nm, velocities nm/ps)."""
    sys.path.insert(0, TESTS)
    from openmm import app, unit
    from systems import water_box

    topology, positions, box, ff = water_box(1.9)
    system = ff.createSystem(topology, nonbondedMethod=app.PME,
                             nonbondedCutoff=0.8 * unit.nanometer, constraints=app.HBonds)
    simulation = bencao.Simulation(bencao.System.from_openmm(system),
                                   bencao.VerletIntegrator(0.002), positions, box,
                                   backend=backend)
    simulation.set_velocities_to_temperature(300.0, seed=5)
    simulation.step(STEPS)
    return simulation.positions, simulation.velocities


def test_cuda_simulation_follows_the_cpu_trajectory(tmp_path):
    path = tmp_path / "cuda.npz"
    env = dict(os.environ)
    code = f"""
        import sys
        sys.path[:0] = [{TESTS!r}, {HERE!r}]
        import numpy as np
        from numba import cuda
        import test_cuda_simulation
        positions, velocities = test_cuda_simulation.water("cuda")
        np.savez({str(path)!r}, positions=positions, velocities=velocities)
    """
    probe = subprocess.run([sys.executable, "-c", "from numba import cuda; print(cuda.is_available())"],
                           env={k: v for k, v in env.items() if k != "NUMBA_ENABLE_CUDASIM"},
                           capture_output=True, text=True, check=False)
    if probe.stdout.strip().splitlines()[-1:] != ["True"]:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                         capture_output=True, text=True, check=False, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    cuda = np.load(path)
    positions, velocities = water("cpu")
    start, _ = water_start()
    moved = np.abs(positions - start).max()
    assert moved > 1e-3  # the atoms really moved
    # The CPU pair kernel sums in float32: on this unminimised box (|F| up to 1.2e5 kJ/mol/nm)
    # its forces are up to 0.56 kJ/mol/nm off the float64 CUDA ones, which moves atoms by
    # 1.5e-7, 3.5e-7, 5.5e-7 nm after 1, 2, 3 steps (measured).  Tolerances: 10 times that.  A
    # missing or wrong term (tens of kJ/mol/nm on many atoms) shows at ~1e-5 nm.
    np.testing.assert_allclose(cuda["positions"], positions, rtol=0, atol=5e-6)
    np.testing.assert_allclose(cuda["velocities"], velocities, rtol=0, atol=2.5e-3)

def water_start():
    """The starting positions of :func:`water` (for the check that atoms moved)."""
    sys.path.insert(0, TESTS)
    from systems import water_box

    _, positions, box, _ = water_box(1.9)
    return positions, box
