"""The ensemble report: acceptance between states as counted from exchanges.csv, round trips,
walks through the ladder, demultiplexed state files."""

import csv
import re

import mdtraj
import numpy as np
import pytest
from systems import write_vacuum_dipeptide

from bencao.ensemble import EnsembleRunner
from bencao.jobs import load_job
from bencao.report.ensemble import round_trips

JOB = """\
system = "system"
output = "remd"
seed = 2
friction = 5.0
pockets = true
report_interval = "0.1 ps"
trajectory_interval = "0.2 ps"

[[stage]]
kind = "nvt"
length = "4 ps"

[ensemble]
exchange = "temperature"
temperatures = [300, 340, 390]
exchange_interval = "0.4 ps"
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ensemble-report")
    write_vacuum_dipeptide(folder / "system")
    (folder / "remd.toml").write_text(JOB)
    result = EnsembleRunner(load_job(folder / "remd.toml"), workers=0).run()
    assert result.completed and result.report
    return folder / "remd"


def test_acceptance_table_counts_exchanges_csv(run):
    with open(run / "exchanges.csv") as handle:
        rows = list(csv.DictReader(handle))
    page = (run / "report.html").read_text()
    for k in range(2):
        pair = [int(r["accepted"]) for r in rows if int(r["state_i"]) == k]
        assert len(pair) == 5        # 10 rounds, each pair on every other round
        cell = f"<td>{np.mean(pair):.2f} ({len(pair)})</td>"
        table = page[page.index("Acceptance between states"):]
        row = re.search(rf"<tr><th>{k}</th>(.*?)</tr>", table).group(1)
        assert row.split("</td>")[k + 1] + "</td>" == cell
    assert 'id="plot-replica-walks"' in page and 'id="plot-state-energies"' in page


def test_states_hold_one_replica_per_frame(run):
    topology = str(run / "topology.pdb")
    frames = [mdtraj.load(str(run / "states" / f"state{k:02d}.xtc"), top=topology) for k in range(3)]
    replicas = [mdtraj.load(str(run / "replicas" / f"replica{r:02d}" / "trajectory.xtc"), top=topology)
                for r in range(3)]
    assert all(len(f) == 20 for f in frames)
    # at every frame the three states hold the three replicas' frames, each exactly once
    for index in range(20):
        held = sorted(np.argmin([np.abs(f.xyz[index] - r.xyz[index]).max() for r in replicas])
                      for f in frames)
        assert held == [0, 1, 2]
    with open(run / "states" / "state00.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 40


def test_pockets_run_on_the_first_state(run):
    import json

    summary = json.loads((run / "pockets" / "pockets.json").read_text())
    assert summary["frames"] == 20 and summary["source"].endswith("state00.xtc")
    assert 'id="pockets"' in (run / "report.html").read_text()


def test_round_trips_count_bottom_top_bottom():
    assert round_trips([0, 1, 2, 1, 0], 2) == 1
    assert round_trips([0, 1, 2, 2, 1, 0, 1, 2, 1, 0, 1], 2) == 2
    assert round_trips([1, 2, 1, 0, 1, 2], 2) == 0      # starting mid-ladder counts from the bottom
    assert round_trips([0, 1, 0, 1, 0], 2) == 0
