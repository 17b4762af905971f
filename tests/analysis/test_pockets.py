"""Pockets: ligand sites found in holo structures with the ligand removed, the frequency grid
of a trajectory against mdpocket's, tracking, files, and one-line errors."""

import csv
import json
import os

import mdtraj
import numpy as np
import pytest
from browser import needs_chromium, run_chromium
from scipy.stats import spearmanr

from bencao.analysis.pockets import analyse_pockets, find_pockets, pocket_atoms
from bencao.analysis.pockets.grid import FrequencyGrid, read_dx, resample, write_dx
from bencao.analysis.pockets.tracking import Tracker
from bencao.cli import main

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "pockets")

# a pocket "is" the ligand site when its centre lies within 0.4 nm of the ligand's centroid
# (the 4 A; fpocket's own rank-1 centres lie 0.1-0.6 nm from these ligands)
SITE_NM = 0.4


def _data(name):
    return os.path.join(DATA, name)


@pytest.mark.parametrize("name, ligand", [("1hvr.pdb", "XK2"), ("1a28.pdb.gz", "STR")])
def test_the_ligand_site_is_in_the_top_three(name, ligand):
    structure = mdtraj.load(_data(name))
    atoms = pocket_atoms(structure.topology)
    # the ligand, waters and ions are not pocket atoms: they were stripped by the mask
    kept = {structure.topology.atom(i).residue.name for i in atoms.indices}
    assert ligand not in kept and "HOH" not in kept
    pockets = find_pockets(structure.xyz[0].astype(np.float64), atoms)
    sites = [structure.xyz[0][[a.index for a in r.atoms]].mean(axis=0)
             for r in structure.topology.residues if r.name == ligand]
    distance = [min(np.linalg.norm(p.centre - site) for site in sites) for p in pockets[:3]]
    assert min(distance) < SITE_NM, distance
    # fpocket 4 ranks the same site first: its rank-1 centre is near one of our top three
    with open(_data(f"{name[:4].upper()}_fpocketC_top10.json")) as handle:
        reference = json.load(handle)
    fpocket_first = np.array(reference[0]["centre"]) / 10.0
    assert min(np.linalg.norm(p.centre - fpocket_first) for p in pockets[:3]) < SITE_NM
    best = pockets[int(np.argmin(distance))]
    assert 0.2 < best.volume < 2.0 and best.buriedness > 0.6   # a drug-sized, enclosed cavity


@pytest.fixture(scope="module")
def adk(tmp_path_factory):
    out = tmp_path_factory.mktemp("adk") / "pockets"
    summary = analyse_pockets(_data("adk_dims.xtc"), topology=_data("adk_top.pdb"), output=str(out),
                              workers=2)
    return out, summary


def test_frequency_grid_correlates_with_mdpocket(adk):
    out, summary = adk
    assert summary["frames"] == 98
    ours, origin, spacing = read_dx(out / "pocket_frequency.dx")
    reference, ref_origin, ref_spacing = read_dx(_data("adk_dims_mdpocket_freq_grid.dx.gz"))
    assert ref_spacing == pytest.approx(0.1)
    ours = resample(ours, origin, spacing, ref_origin, reference.shape, ref_spacing)
    pearson = np.corrcoef(ours.ravel(), reference.ravel())[0, 1]
    assert pearson >= 0.8, pearson


def test_pockets_between_lid_and_core_shrink_as_the_enzyme_opens(adk):
    """Adenylate kinase's LID closes over the CORE in the first frame, enclosing pockets between
    them; as the LID swings open those pockets flatten out.  The volume of the pockets lined by
    both domains must fall as the opening (LID-CORE distance) grows."""
    out, _ = adk
    traj = mdtraj.load(_data("adk_dims.xtc"), top=_data("adk_top.pdb"))
    top = traj.topology
    lid = top.select("name CA and resid 121 to 158")
    core = top.select("name CA and (resid 0 to 28 or resid 59 to 120 or resid 159 to 213)")
    opening = np.linalg.norm(traj.xyz[:, lid].mean(1) - traj.xyz[:, core].mean(1), axis=1)
    assert opening[-1] - opening[0] > 0.5          # the trajectory does open (nm)
    with open(out / "pockets.csv") as handle:
        rows = list(csv.DictReader(handle))
    interface = np.zeros(len(traj))
    for row in rows:
        numbers = [int(label.split(":")[0][3:]) for label in row["residues"].split()]
        in_lid = any(122 <= n <= 159 for n in numbers)
        in_core = any(n <= 29 or 60 <= n <= 121 or n >= 160 for n in numbers)
        if in_lid and in_core:
            interface[int(row["frame"])] += float(row["volume_nm3"])
    rho = spearmanr(opening, interface)[0]
    assert rho < -0.5, rho
    assert interface[-10:].mean() < 0.6 * interface[:10].mean()


def test_output_files_agree_with_each_other(adk):
    out, summary = adk
    with open(out / "pockets.csv") as handle:
        rows = list(csv.DictReader(handle))
    with open(out / "tracks.csv") as handle:
        tracks = list(csv.DictReader(handle))
    assert summary["pockets"] == len(rows) and summary["tracks"] == len(tracks)
    for track in tracks:
        mine = [r for r in rows if r["pocket"] == track["pocket"]]
        assert len(mine) == int(track["frames_open"])
        assert int(track["first_frame"]) == min(int(r["frame"]) for r in mine)
        assert float(track["max_volume_nm3"]) == pytest.approx(max(float(r["volume_nm3"]) for r in mine),
                                                               abs=1e-4)
    assert summary["cryptic"] == sum(int(t["cryptic"]) for t in tracks)
    # ranks restart at 1 in every frame and a track appears at most once per frame
    by_frame = {}
    for r in rows:
        by_frame.setdefault(r["frame"], []).append(r)
    for frame_rows in by_frame.values():
        assert sorted(int(r["rank"]) for r in frame_rows) == list(range(1, len(frame_rows) + 1))
        assert len({r["pocket"] for r in frame_rows}) == len(frame_rows)


class _Pocket:
    def __init__(self, residues, volume=0.5):
        self.residues, self.volume, self.druggability, self.score = residues, volume, 0.1, 1.0


def test_tracking_by_shared_lining_residues():
    tracker = Tracker()
    a, b = ("ALA1:A", "LEU2:A", "ILE3:A", "VAL4:A"), ("GLU50:A", "LYS51:A", "ARG52:A")
    assert tracker.add_frame(0, [_Pocket(a)]) == [1]
    assert tracker.add_frame(1, [_Pocket(b), _Pocket(a[:3] + ("PHE9:A",))]) == [2, 1]
    assert tracker.add_frame(2, [_Pocket(a)]) == [1]
    for frame in range(3, 10):
        tracker.add_frame(frame, [])
    first, second = tracker.tracks
    assert first.frames == [0, 1, 2] and not first.cryptic(10)
    assert second.frames == [1] and second.open_fraction(10) == 0.1 and second.cryptic(10)


def test_dx_round_trip_and_grid_counts(tmp_path):
    grid = FrequencyGrid(origin=[0.0, 0.0, 0.0], shape=(10, 10, 10))
    centres = np.array([[0.53, 0.47, 0.51], [0.58, 0.47, 0.51]])
    grid.add_frame(centres)
    grid.add_frame([])
    # brute force: every grid point within 0.2 nm of either centre, counted once
    points = np.stack(np.meshgrid(*[np.arange(10) * 0.1] * 3, indexing="ij"), -1).reshape(-1, 3)
    near = (np.linalg.norm(points[:, None] - centres[None], axis=2) <= 0.2).any(axis=1)
    assert grid.counts.sum() == near.sum() > 30 and grid.frequency.max() == 0.5
    write_dx(tmp_path / "g.dx", grid.frequency, grid.origin, grid.spacing)
    values, origin, spacing = read_dx(tmp_path / "g.dx")
    assert np.allclose(values, grid.frequency, atol=1e-4) and spacing == pytest.approx(0.1)
    assert np.allclose(origin, 0.0)


def test_errors_are_one_line(tmp_path, capsys):
    water = tmp_path / "water.pdb"
    water.write_text("HETATM    1  O   HOH A   1       0.000   0.000   0.000  1.00  0.00           O\n"
                     "HETATM    2  O   HOH A   2       3.000   0.000   0.000  1.00  0.00           O\n"
                     "END\n")
    cases = [
        ([str(water)], "holds no protein"),
        ([_data("adk_dims.xtc"), "--top", _data("1hvr.pdb")],
         f"does it match the {mdtraj.load_topology(_data('1hvr.pdb')).n_atoms} atoms"),
        ([_data("adk_dims.xtc")], "needs its topology: --top"),
    ]
    empty = tmp_path / "empty.xtc"
    empty.write_bytes(b"")
    cases.append(([str(empty), "--top", _data("adk_top.pdb")], "empty.xtc"))
    for arguments, expected in cases:
        assert main(["pockets", *arguments, "-o", str(tmp_path / "out"), "--workers", "1"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], (arguments, err)


def test_report_section_lists_the_tracked_pockets(adk):
    out, _ = adk
    from bencao.report.pockets_page import pockets_section

    page = pockets_section(out.parent)
    with open(out / "tracks.csv") as handle:
        first = next(csv.DictReader(handle))
    assert f"<tr><td>{first['pocket']}</td><td>{float(first['open_fraction']):.0%}</td>" in page
    assert 'id="plot-pocket-volumes"' in page
    assert pockets_section(out) == ""       # a folder without pockets/ has no section


def test_a_job_file_runs_pockets_at_the_end(tmp_path):
    from systems import write_vacuum_dipeptide

    write_vacuum_dipeptide(tmp_path / "system")
    (tmp_path / "job.toml").write_text(
        'system = "system"\npockets = true\ntrajectory_interval = "0.1 ps"\nthreads = 1\n'
        '[[stage]]\nkind = "nvt"\nlength = "0.4 ps"\n')
    assert main(["run", str(tmp_path / "job.toml"), "--no-report"]) == 0
    with open(tmp_path / "job" / "pockets" / "pockets.json") as handle:
        summary = json.load(handle)
    assert summary["frames"] == 4      # 22 atoms hold no pocket, but every frame was looked at
    assert "'pockets' must be true or false" in _job_error(tmp_path, 'pockets = "yes"')


def _job_error(folder, line):
    from bencao.errors import JobFileError
    from bencao.jobs import job_from_text

    with pytest.raises(JobFileError) as raised:
        job_from_text(f'system = "system"\n{line}\n', folder)
    return str(raised.value)


def test_the_movie_draws_the_top_pockets_where_they_are(tmp_path):
    """A run folder's pockets come back as spheres in the movie's coordinates, in the frames
    they are open, next to the residues that line them."""
    from bencao.report.analysis import load_trajectory
    from bencao.report.pockets_page import pocket_markers
    from bencao.report.viewer import movie_payload

    traj = mdtraj.load(_data("adk_dims.xtc"), top=_data("adk_top.pdb"))[::10]
    traj.save_xtc(str(tmp_path / "trajectory.xtc"))
    traj[0].save_pdb(str(tmp_path / "topology.pdb"))
    analyse_pockets(str(tmp_path), workers=1)
    data = load_trajectory(tmp_path)
    markers = pocket_markers(tmp_path, data.traj)
    with open(tmp_path / "pockets" / "pockets.csv") as handle:
        rows = list(csv.DictReader(handle))
    with open(tmp_path / "pockets" / "tracks.csv") as handle:
        top = [t["pocket"] for t in csv.DictReader(handle)][:3]
    drawn = [r for r in rows if r["pocket"] in top]
    assert sum(len(v) for v in markers.values()) == len(drawn) > 0
    fitted = data.traj.superpose(data.traj, 0, atom_indices=data.traj.topology.select("name CA"))
    for row in drawn:
        frame = int(row["frame"])
        lining = {label.split(":")[0] for label in row["residues"].split()}
        atoms = [a.index for a in fitted.topology.atoms
                 if f"{a.residue.name}{a.residue.resSeq}" in lining and a.element.symbol != "H"]
        centre = np.array(next(m[:3] for m in markers[frame] if m[4] == top.index(row["pocket"])))
        # a pocket's centre sits in the hollow its lining residues surround
        assert np.linalg.norm(centre - fitted.xyz[frame, atoms].mean(axis=0)) < 0.8
    payload = movie_payload(data.traj, data.selection, data.time_ps, 10, pockets=markers)
    assert [len(p) for p in payload["pockets"]] == [len(markers.get(i, [])) for i in payload["frames"]]


@needs_chromium
def test_the_report_movie_draws_pockets_in_headless_chromium(tmp_path):
    import re

    from bencao.report import build_report
    from bencao.reporters.state_data import COLUMNS

    traj = mdtraj.load(_data("adk_dims.xtc"), top=_data("adk_top.pdb"))[::20]
    traj.save_xtc(str(tmp_path / "trajectory.xtc"))
    traj[0].save_pdb(str(tmp_path / "topology.pdb"))
    (tmp_path / "log.csv").write_text(",".join(COLUMNS) + "\n")
    analyse_pockets(str(tmp_path), workers=1)
    page = build_report(tmp_path, max_frames=5)
    assert 'id="pockets"' in page.read_text()
    dom = run_chromium(["--virtual-time-budget=1000", "--dump-dom", page.resolve().as_uri()])
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body and "data-viewer-error" not in body.group(0), dom.stdout[:300]
    drawn = re.search(r'data-pockets-drawn="(\d+)"', body.group(0))
    assert drawn and int(drawn.group(1)) >= 1, "no pocket drawn in the movie"
