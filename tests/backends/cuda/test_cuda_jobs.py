"""``bencao run`` with ``backend = "cuda"``: a two-stage job (NVT, then NPT with barostat moves)
runs on the device, follows the same job on the CPU and saves the GPU's random streams in its
checkpoints.

The device work runs in one subprocess (see ``cuda_harness``) on a small water box."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_harness import cuda_results as run_in_subprocess
from cuda_harness import save

import bencao
from bencao.io.files import save_state

JOB = """\
system = "{system}"
output = "{output}"
seed = 5
backend = "{backend}"
integrator = "{integrator}"
timestep = "2 fs"
report_interval = "4 fs"
trajectory_interval = "4 fs"
checkpoint_interval = "4 fs"

[[stage]]
kind = "nvt"
name = "first"
length = "4 fs"

[[stage]]
kind = "npt"
name = "second"
length = "4 fs"
barostat_frequency = 1
"""


def _system_folder(folder):
    """A 1.5 nm box of rigid TIP3P, PME 0.7 nm, as ``bencao prepare`` writes it (no topology
    file: the runner then writes no trajectory, which these tests do not need)."""
    from openmm import app, unit
    from systems import water_box

    topology, positions, box, ff = water_box(1.5)
    system = ff.createSystem(topology, nonbondedMethod=app.PME, constraints=app.HBonds,
                             nonbondedCutoff=0.7 * unit.nanometer)
    folder.mkdir(parents=True, exist_ok=True)
    bencao.System.from_openmm(system).save(folder / "system.npz")
    save_state(folder / "state.npz", positions, box=box)
    with open(folder / "structure.pdb", "w") as handle:
        app.PDBFile.writeFile(topology, positions * unit.nanometer, handle)
    return folder


def run_job(folder, name, backend, integrator="nose-hoover"):
    """Run the job in ``folder / name``; (final positions nm, velocities nm/ps, box nm, the
    checkpoint's array names, run.json)."""
    import json

    from bencao.io.checkpoint import load_checkpoint
    from bencao.io.files import load_state
    from bencao.jobs import load_job
    from bencao.jobs.runner import JobRunner

    system = folder / "system"
    if not (system / "system.npz").exists():
        _system_folder(system)
    path = folder / f"{name}.toml"
    path.write_text(JOB.format(system=system, output=folder / name, backend=backend,
                               integrator=integrator))
    result = JobRunner(load_job(path), write_report=False).run()
    assert result.completed
    state = load_state(folder / name / "final_state.npz")
    checkpoint = load_checkpoint(folder / name / "checkpoint.npz")
    return (state["positions"], state["velocities"], state["box"], sorted(checkpoint[0]),
            json.loads((folder / name / "run.json").read_text()))


def cuda_results(path):
    """The device run (in the subprocess)."""
    import pathlib

    from bencao.backends.cuda import using_simulator

    folder = pathlib.Path(path).parent
    save({"simulator": using_simulator(),
          "run": run_job(folder, "cuda", "cuda")}, path)


@pytest.fixture(scope="module")
def cuda(tmp_path_factory):
    return run_in_subprocess("test_cuda_jobs", tmp_path_factory.mktemp("jobs") / "results.pkl")


def test_a_cuda_job_follows_the_same_job_on_the_cpu(cuda, tmp_path):
    # Nosé–Hoover stages: no noise, so both backends take the same path from the same initial
    # velocities, with the same barostat proposals from the host's random stream
    cpu = run_job(tmp_path, "cpu", "cpu")
    device = cuda["run"]
    assert cpu[4]["backend"] == "cpu" and device[4]["backend"] == "cuda"
    assert device[4]["steps"] == 4
    # The energies agree far too well to flip an acceptance: the same box, bit for bit
    assert np.array_equal(device[2], cpu[2])
    # float32 CPU pair sums against float64 CUDA ones move atoms by a few 1e-7 nm over these
    # 4 steps (test_cuda_simulation); 5e-6 nm leaves a factor of ten
    np.testing.assert_allclose(device[0], cpu[0], rtol=0, atol=5e-6)


def test_a_cuda_job_checkpoint_holds_the_gpu_random_streams(cuda):
    # What a resumed Langevin run needs to continue its noise bit for bit (the continuation
    # itself is tested on Simulation checkpoints in test_cuda_simulation)
    assert any(name.endswith("device.random") for name in cuda["run"][3])
