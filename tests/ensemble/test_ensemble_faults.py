"""Ensembles lose nothing: workers killed inside a segment, the driver killed, a damaged checkpoint.

Every scenario must end bit-identical to an undisturbed run of the same job (same seed): the
final state of every replica, the exchange log and the demultiplexed logs.  The system is
alanine dipeptide in vacuum (22 atoms) so that four replicas run in seconds; what is tested is
the bookkeeping around the segments, which does not depend on the system's size.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from systems import write_vacuum_dipeptide

from bencao.cli import main
from bencao.ensemble import EnsembleRunner
from bencao.ensemble.segment import segment_path
from bencao.io.checkpoint import load_checkpoint
from bencao.jobs import load_job

# 6 segments of 1000 steps: long enough that a kill lands inside a segment, not between them.
JOB = """\
system = "system"
output = "job"
seed = 7
timestep = "2 fs"
friction = 5.0
report_interval = "0.5 ps"
trajectory_interval = "1 ps"

[[stage]]
kind = "minimize"
max_iterations = 30

[[stage]]
kind = "nvt"
length = "12 ps"

[ensemble]
exchange = "temperature"
temperature_range = [300, 400]
replicas = 4
exchange_interval = "2 ps"
"""
SEGMENTS = 6


@pytest.fixture(scope="module")
def system_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vacuum") / "system"
    write_vacuum_dipeptide(folder)
    return folder


def _write_job(folder, system_dir):
    """``folder/job.toml`` running ``folder/system`` (a copy) into ``folder/job``: paths relative
    to the job file, so the whole folder can be copied and resumed elsewhere."""
    shutil.copytree(system_dir, folder / "system")
    path = folder / "job.toml"
    path.write_text(JOB)
    return path


@pytest.fixture(scope="module")
def undisturbed(system_dir, tmp_path_factory):
    """The ensemble run in this process, start to end."""
    folder = tmp_path_factory.mktemp("undisturbed")
    path = _write_job(folder, system_dir)
    result = EnsembleRunner(load_job(path), workers=0, write_report=False).run()
    assert result.completed
    return folder / "job"


def _assert_same_ensemble(folder, reference):
    for replica in range(4):
        final, _, _ = load_checkpoint(segment_path(folder, replica, SEGMENTS - 1))
        expected, _, _ = load_checkpoint(segment_path(reference, replica, SEGMENTS - 1))
        assert np.array_equal(final["positions"], expected["positions"]), replica
        assert np.array_equal(final["velocities"], expected["velocities"]), replica
    assert (folder / "exchanges.csv").read_text() == (reference / "exchanges.csv").read_text()
    for state in range(4):
        rows = (folder / "states" / f"state{state:02d}.csv").read_text().splitlines()
        expected = (reference / "states" / f"state{state:02d}.csv").read_text().splitlines()
        # the speed columns differ between runs; the physics columns must not
        assert [r.split(",")[:10] for r in rows] == [r.split(",")[:10] for r in expected]


def _start_driver(job_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "bencao.cli", "run", str(job_path), "--no-report", "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True, start_new_session=True)


def _wait_for_rounds(process, state_file, rounds, timeout=240.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the run ended before it could be disturbed: {process.stderr.read()[-3000:]}")
        try:
            if json.loads(state_file.read_text())["rounds_done"] >= rounds:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    pytest.fail(f"the ensemble did not reach segment {rounds} in {timeout} s")


def _worker_processes(driver_pid):
    """PIDs of the Dask worker processes the driver spawned (its children running Python's
    multiprocessing spawn)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                command = handle.read()
        except OSError:
            continue
        if parent == driver_pid and b"spawn_main" in command:
            pids.append(int(entry))
    return pids


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the worker processes in /proc")
def test_workers_killed_inside_a_segment_lose_nothing(system_dir, tmp_path, undisturbed):
    path = _write_job(tmp_path, system_dir)
    process = _start_driver(path)
    folder = tmp_path / "job"
    try:
        _wait_for_rounds(process, folder / "ensemble.json", 1)
        # The next round's segments start within milliseconds of the round being recorded and
        # last a few hundred: 50 ms later both workers are inside one
        time.sleep(0.05)
        workers = _worker_processes(process.pid)
        assert len(workers) == 2, workers
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        rounds = json.loads((folder / "ensemble.json").read_text())["rounds_done"]
        finished = [os.path.exists(segment_path(folder, r, rounds)) for r in range(4)]
        _, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert rounds < SEGMENTS and not all(finished)   # the kill landed inside a round
    assert process.returncode == 0, stderr[-3000:]
    _assert_same_ensemble(folder, undisturbed)


def test_the_driver_killed_resumes_bit_identically(system_dir, tmp_path, undisturbed):
    path = _write_job(tmp_path, system_dir)
    process = _start_driver(path)
    _wait_for_rounds(process, tmp_path / "job" / "ensemble.json", 2)
    os.killpg(process.pid, signal.SIGKILL)   # the driver and its workers, as a lost machine
    process.wait(timeout=30)
    assert not (tmp_path / "job" / "run.json").exists()
    # resumed on another executor (this process): still the same run
    assert main(["run", str(path), "--resume", "--no-report", "--workers", "0"]) == 0
    _assert_same_ensemble(tmp_path / "job", undisturbed)


def test_a_truncated_latest_checkpoint_is_rerun_from_the_previous_one(undisturbed, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(undisturbed.parent, copy)
    folder = copy / "job"
    latest = segment_path(folder, 2, SEGMENTS - 1)
    with open(latest, "r+b") as handle:
        handle.truncate(os.path.getsize(latest) // 2)
    assert main(["run", str(copy / "job.toml"), "--resume", "--no-report", "--workers", "0"]) == 0
    err = capsys.readouterr().err
    assert f"{latest}: not a readable bencao file" in err and "previous checkpoint" in err
    _assert_same_ensemble(folder, undisturbed)


def test_a_damaged_system_file_is_one_line_naming_it(system_dir, tmp_path, capsys):
    path = _write_job(tmp_path, system_dir)
    with open(tmp_path / "system" / "system.npz", "r+b") as handle:
        handle.truncate(200)
    assert main(["run", str(path), "--workers", "0"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "system.npz" in err[0] and "damaged or truncated" in err[0]


def test_a_replica_that_fails_stops_the_ensemble_naming_it(system_dir, tmp_path, capsys):
    path = _write_job(tmp_path, system_dir)
    # 10 fs steps tear the dipeptide's H-bond constraints apart at once
    path.write_text(JOB.replace('timestep = "2 fs"', 'timestep = "10 fs"'))
    assert main(["run", str(path), "--workers", "0", "--no-report"]) == 1
    stderr = capsys.readouterr().err
    err = [line for line in stderr.splitlines() if line.startswith("bencao: error:")]
    assert len(err) == 1 and "Traceback" not in stderr
    assert "replica 0 (state 0, 300.0 K) failed in segment 0 at step" in err[0]
    assert "Constraints did not converge" in err[0]
    assert f"{tmp_path / 'job' / 'replicas' / 'replica00'}" in err[0]


def test_ctrl_c_to_the_whole_process_group_stops_after_the_round(system_dir, tmp_path, undisturbed):
    """A terminal's Ctrl-C reaches the local workers too: they must leave it to the driver, which
    stops after the round it is in (exit 130) and resumes bit-identically."""
    path = _write_job(tmp_path, system_dir)
    process = _start_driver(path)
    _wait_for_rounds(process, tmp_path / "job" / "ensemble.json", 1)
    os.killpg(process.pid, signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, stderr[-3000:]
    assert "stopped by SIGINT after segment" in stderr and "Traceback" not in stderr
    assert main(["run", str(path), "--resume", "--no-report", "--workers", "0"]) == 0
    _assert_same_ensemble(tmp_path / "job", undisturbed)
