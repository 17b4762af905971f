"""Running jobs: stages, reporters, checkpoints, kill -9 and --resume, stops and blow-ups."""

import json
import os
import signal
import subprocess
import sys
import time

import mdtraj
import numpy as np
import pytest
from openmm import app, unit
from reference import data_path
from systems import alanine_dipeptide

import bencao
from bencao.cli import main
from bencao.errors import InputFileError
from bencao.io.checkpoint import load_checkpoint
from bencao.io.files import load_state, save_state
from bencao.jobs import load_job
from bencao.jobs.runner import JobRunner

JOB = """\
system = "{system}"
output = "{output}"
seed = 11
timestep = "2 fs"
report_interval = "0.02 ps"
trajectory_interval = "0.04 ps"
checkpoint_interval = "0.1 ps"
trajectory_format = "{format}"

[[stage]]
kind = "minimize"
max_iterations = 20

[[stage]]
kind = "nvt"
name = "heat"
length = "0.3 ps"
temperature = [100, 300]
restraints = "heavy"

[[stage]]
kind = "npt"
name = "production"
length = "{production}"
barostat_frequency = 5
reciprocal_every = 2
"""


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Alanine dipeptide in water (2269 atoms) as `bencao prepare` writes it."""
    folder = tmp_path_factory.mktemp("prepared") / "system"
    folder.mkdir()
    system, positions, box = alanine_dipeptide(nonbondedMethod=app.PME,
                                               nonbondedCutoff=0.9 * unit.nanometer,
                                               constraints=app.HBonds)
    bencao.System.from_openmm(system).save(folder / "system.npz")
    save_state(folder / "state.npz", positions, box=box)
    topology = app.AmberPrmtopFile(data_path("alanine-dipeptide-explicit.prmtop")).topology
    topology.setPeriodicBoxVectors(box)
    with open(folder / "structure.pdb", "w") as handle:
        app.PDBFile.writeFile(topology, positions * unit.nanometer, handle)
    return folder


def _write_job(tmp_path, prepared, name="job", fmt="xtc", production="0.6 ps"):
    path = tmp_path / f"{name}.toml"
    path.write_text(JOB.format(system=prepared, output=tmp_path / name, format=fmt,
                               production=production))
    return path


@pytest.fixture(scope="module")
def uninterrupted(prepared, tmp_path_factory):
    """The job run from start to end without interruption."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    path = _write_job(folder, prepared)
    result = JobRunner(load_job(path), write_report=False).run()
    assert result.completed
    return folder / "job"


def _start(job_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "bencao.cli", "run", str(job_path), "--no-report"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)


def _wait_for_production_checkpoint(process, checkpoint, timeout=300.0):
    """Wait until a checkpoint inside the production stage exists; return its step."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the run ended before it could be interrupted: {process.stderr.read()[-2000:]}")
        if os.path.exists(checkpoint):
            try:
                _, values, _ = load_checkpoint(checkpoint)
            except (InputFileError, OSError):   # replaced between our exists() and open()
                values = {}
            if values.get("stage_index") == 2 and values.get("in_stage"):
                return values["simulation"]["step"]
        time.sleep(0.05)
    process.kill()
    pytest.fail("no checkpoint in the production stage within the time limit")


def _assert_same_run(folder, reference):
    final = load_state(folder / "final_state.npz")
    expected = load_state(reference / "final_state.npz")
    assert final["step"] == expected["step"]
    assert np.array_equal(final["positions"], expected["positions"])
    assert np.array_equal(final["velocities"], expected["velocities"])
    assert np.array_equal(final["box"], expected["box"])
    frames = mdtraj.load(str(folder / "trajectory.xtc"), top=str(folder / "topology.pdb"))
    expected_frames = mdtraj.load(str(reference / "trajectory.xtc"), top=str(reference / "topology.pdb"))
    assert frames.n_frames == expected_frames.n_frames
    assert np.array_equal(frames.xyz, expected_frames.xyz)
    assert np.array_equal(frames.time, expected_frames.time)
    log = (folder / "log.csv").read_text().splitlines()
    expected_log = (reference / "log.csv").read_text().splitlines()
    assert len(log) == len(expected_log)
    # the speed columns differ between runs; the physics columns must not
    assert [row.split(",")[:9] for row in log] == [row.split(",")[:9] for row in expected_log]


def test_uninterrupted_run_writes_log_trajectory_and_final_state(uninterrupted):
    # 0.3 ps heat + 0.6 ps production at 2 fs, a frame every 0.04 ps: 7 + 15 frames
    frames = mdtraj.load(str(uninterrupted / "trajectory.xtc"), top=str(uninterrupted / "topology.pdb"))
    assert frames.n_frames == 22
    assert frames.n_atoms == 2269
    np.testing.assert_allclose(frames.time[-1], 0.9, atol=1e-4)   # XTC stores float32 times
    rows = (uninterrupted / "log.csv").read_text().splitlines()
    assert rows[0].startswith("stage,step,time_ps,potential_kj_mol")
    assert len(rows) == 1 + 15 + 30
    summary = json.loads((uninterrupted / "run.json").read_text())
    assert summary["steps"] == 450 and summary["backend"] == "cpu"


def test_kill_9_then_resume_is_bit_identical_to_an_uninterrupted_run(prepared, tmp_path, uninterrupted):
    path = _write_job(tmp_path, prepared)
    process = _start(path)
    _wait_for_production_checkpoint(process, tmp_path / "job" / "checkpoint.npz")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert not (tmp_path / "job" / "final_state.npz").exists()
    result = JobRunner(load_job(path), resume=True, write_report=False).run()
    assert result.completed
    _assert_same_run(tmp_path / "job", uninterrupted)


def test_sigterm_writes_a_checkpoint_and_stops_cleanly(prepared, tmp_path, uninterrupted):
    path = _write_job(tmp_path, prepared)
    process = _start(path)
    _wait_for_production_checkpoint(process, tmp_path / "job" / "checkpoint.npz")
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr[-2000:]
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr
    assert main(["run", str(path), "--resume", "--no-report"]) == 0
    _assert_same_run(tmp_path / "job", uninterrupted)


def test_dcd_trajectory_reads_back_with_frames_and_boxes(prepared, tmp_path):
    path = _write_job(tmp_path, prepared, fmt="dcd", production="0.2 ps")
    JobRunner(load_job(path), write_report=False).run()
    frames = mdtraj.load(str(tmp_path / "job" / "trajectory.dcd"), top=str(tmp_path / "job" / "topology.pdb"))
    assert frames.n_frames == 7 + 5
    final = load_state(tmp_path / "job" / "final_state.npz")
    # XTC stores the box in float32 (6e-8 relative), read back in nm
    np.testing.assert_allclose(frames.unitcell_vectors[-1], final["box"], rtol=1e-5)


def test_a_second_run_into_the_same_folder_needs_resume_or_overwrite(prepared, tmp_path, capsys):
    path = _write_job(tmp_path, prepared, production="0.02 ps")
    assert main(["run", str(path), "--no-report"]) == 0
    capsys.readouterr()
    assert main(["run", str(path), "--no-report"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("bencao: error:") and "--resume" in err and len(err.splitlines()) == 1


def test_a_planted_overlap_is_reported_by_residue_and_atom_name(prepared, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("system.npz", "structure.pdb"):
        (broken / name).write_bytes((prepared / name).read_bytes())
    state = load_state(prepared / "state.npz")
    positions = state["positions"].copy()
    # move a whole water (atoms 1000-1002, rigid, so SETTLE leaves it be) so that its oxygen
    # sits on the oxygen of another water (atom 22)
    positions[1000:1003] += positions[22] - positions[1000]
    save_state(broken / "state.npz", positions, box=state["box"])
    path = _write_job(tmp_path, broken)
    assert main(["run", str(path), "--no-report"]) == 1
    stderr = capsys.readouterr().err
    err = [line for line in stderr.splitlines() if line.startswith("bencao: error:")]
    assert len(err) == 1 and "Traceback" not in stderr
    topology = mdtraj.load_topology(str(prepared / "structure.pdb"))
    for index in (22, 1000):
        atom = topology.atom(index)
        assert f"{atom.residue.name}{atom.residue.resSeq} {atom.name} (chain" in err[0]
        assert f"atom {index})" in err[0]
    assert "NonbondedForce" in err[0]
    assert not (tmp_path / "job" / "final_state.npz").exists()


def test_an_unwritable_output_folder_is_one_line(prepared, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    path = tmp_path / "job.toml"
    path.write_text(f'system = "{prepared}"\noutput = "{blocker}/run"\nproduction = "0.01 ps"\n')
    assert main(["run", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a_file" in err[0] and "Traceback" not in err[0]


def test_a_bad_job_file_names_the_key(prepared, tmp_path, capsys):
    path = tmp_path / "job.toml"
    path.write_text(f'system = "{prepared}"\ntemprature = 300\n')
    assert main(["run", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "temprature" in err[0] and "temperature" in err[0]
