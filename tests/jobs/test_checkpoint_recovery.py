"""A damaged latest checkpoint: the run resumes from the previous one, says so, and ends
bit-identical to the run that was never damaged."""

import io
import os
import shutil

import numpy as np
import pytest
from systems import write_vacuum_dipeptide

from bencao.errors import InputFileError
from bencao.io.checkpoint import (
    load_latest_checkpoint,
    previous_checkpoint,
    save_checkpoint,
)
from bencao.io.files import load_state
from bencao.jobs import load_job
from bencao.jobs.runner import JobRunner

JOB = """\
system = "system"
output = "run"
seed = 3
report_interval = "0.1 ps"
trajectory_interval = "0.2 ps"
checkpoint_interval = "0.4 ps"

[[stage]]
kind = "minimize"
max_iterations = 20

[[stage]]
kind = "nvt"
length = "2 ps"
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recovery")
    write_vacuum_dipeptide(folder / "system")
    path = folder / "job.toml"
    path.write_text(JOB)
    assert JobRunner(load_job(path), write_report=False).run().completed
    return folder


def test_truncated_latest_checkpoint_resumes_from_the_previous_one(finished, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(finished, copy)
    run = copy / "run"
    latest = run / "checkpoint.npz"
    assert (run / "checkpoint.prev.npz").exists()
    with open(latest, "r+b") as handle:
        handle.truncate(os.path.getsize(latest) - 100)
    stream = io.StringIO()
    assert JobRunner(load_job(copy / "job.toml"), resume=True, write_report=False,
                     stream=stream).run().completed
    said = stream.getvalue()
    assert f"{latest}: not a readable bencao file, damaged or truncated" in said
    assert f"resuming from the previous checkpoint {run / 'checkpoint.prev.npz'}" in said
    final, expected = load_state(run / "final_state.npz"), load_state(finished / "run" / "final_state.npz")
    assert np.array_equal(final["positions"], expected["positions"])
    assert np.array_equal(final["velocities"], expected["velocities"])
    log = [r.split(",")[:9] for r in (run / "log.csv").read_text().splitlines()]
    expected_log = [r.split(",")[:9] for r in (finished / "run" / "log.csv").read_text().splitlines()]
    assert log == expected_log


def test_contents_that_do_not_match_the_checksum_are_refused(tmp_path):
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, {"positions": np.zeros((3, 3))}, {"step": 1}, [])
    save_checkpoint(path, {"positions": np.ones((3, 3))}, {"step": 2}, [])
    assert os.path.exists(previous_checkpoint(path))
    # a file whose zip structure is sound but whose arrays are not those the header describes
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    arrays["positions"] = arrays["positions"] * 2
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    said = []
    _, values, _ = load_latest_checkpoint(path, said.append)
    assert values["step"] == 1 and "checksum does not match" in said[0]
    os.unlink(previous_checkpoint(path))
    with pytest.raises(InputFileError, match="checksum does not match"):
        load_latest_checkpoint(path, said.append)
