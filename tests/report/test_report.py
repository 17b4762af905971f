"""The HTML run report: self-contained page, MDTraj analysis, the movie in a headless browser."""

from __future__ import annotations

import csv
import json
import re
import time
import warnings

import mdtraj as md
import numpy as np
import pytest
from browser import assert_movie_plays, needs_chromium
from reference import data_path

from bencao.cli import main
from bencao.errors import InputFileError
from bencao.report import analyse_trajectory, build_report
from bencao.report.viewer import vendored_3dmol

N_FRAMES = 10
FRAME_INTERVAL_PS = 2.0
LOG_HEADER = ["stage", "step", "time_ps", "potential_kj_mol", "kinetic_kj_mol", "total_kj_mol",
              "temperature_k", "volume_nm3", "density_g_cm3", "speed_ns_day", "progress_percent",
              "remaining_s"]


def _structure():
    """1T2Y (Trp-cage, 271 atoms, no solvent) as an MDTraj trajectory of one frame."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return md.load_pdb(data_path("1T2Y.pdb"))


def _rotation(angle: float, axis) -> np.ndarray:
    """Rotation matrix about ``axis`` by ``angle`` radians (Rodrigues)."""
    axis = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _write_log(path, n_rows: int = 20, periodic: bool = False) -> None:
    """A log.csv of two dynamics stages (heat, then production) over 0-18 ps."""
    rng = np.random.default_rng(1)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(LOG_HEADER)
        for i in range(n_rows):
            t = 18.0 * i / (n_rows - 1)
            stage = "heat" if t < 8.0 else "production"
            pot = -5000 + 30 * rng.standard_normal()
            kin = 900 + 20 * rng.standard_normal()
            volume = f"{27.0 + 0.1 * rng.standard_normal():.4f}" if periodic else ""
            density = f"{1.0 + 0.01 * rng.standard_normal():.4f}" if periodic else ""
            writer.writerow([stage, 500 * i, f"{t:.3f}", f"{pot:.2f}", f"{kin:.2f}",
                             f"{pot + kin:.2f}", f"{300 + 5 * rng.standard_normal():.2f}", volume,
                             density, "12.5", f"{100 * i / (n_rows - 1):.1f}",
                             f"{n_rows - 1 - i}"])


def make_run(folder, kind: str = "noisy", fmt: str = "xtc", n_frames: int = N_FRAMES):
    """A synthetic run folder: topology.pdb, a trajectory, log.csv and job.toml.

    ``kind`` "rigid": every frame is the structure rotated and translated rigidly (RMSD 0);
    "noisy": the structure plus Gaussian noise of growing amplitude (RMSD grows).
    Returns the trajectory written (nm).
    """
    folder.mkdir(parents=True, exist_ok=True)
    structure = _structure()
    structure.save_pdb(str(folder / "topology.pdb"))
    rng = np.random.default_rng(7)
    xyz0 = structure.xyz[0].astype(np.float64)
    centre = xyz0.mean(axis=0)
    frames = []
    for k in range(n_frames):
        if kind == "rigid":
            rotation = _rotation(0.35 * k, [1.0, 2.0, 0.5])
            frames.append((xyz0 - centre) @ rotation.T + centre + 0.3 * k)
        else:
            frames.append(xyz0 + 0.02 * k * rng.standard_normal(xyz0.shape))
    traj = md.Trajectory(np.array(frames, np.float32), structure.topology,
                         time=FRAME_INTERVAL_PS * np.arange(n_frames))
    if fmt == "xtc":
        traj.save_xtc(str(folder / "trajectory.xtc"))
    elif fmt == "dcd":
        traj.save_dcd(str(folder / "trajectory.dcd"))
    _write_log(folder / "log.csv")
    (folder / "job.toml").write_text('[system]\nstructure = "1T2Y.pdb"\n')
    (folder / "run.json").write_text(json.dumps({"stages": ["heat", "production"]}))
    return traj


def _movie_data(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="movie-data">(.*?)</script>', page,
                      re.DOTALL)
    assert found, "the page embeds no movie data"
    return json.loads(found.group(1))


def test_report_is_self_contained_with_plots_and_movie(tmp_path):
    run = tmp_path / "run"
    make_run(run)
    path = build_report(run, max_frames=6)
    assert path == run / "report.html"
    page = path.read_text(encoding="utf-8")
    # nothing is fetched: no remote scripts, styles or images
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', page)
    assert "<script src" not in page and '<link rel="stylesheet"' not in page
    assert vendored_3dmol()[-2000:] in page  # the library itself is inlined, whole
    # energy, temperature, speed, RMSD, Rg (no density: the system is not periodic)
    assert page.count("data:image/png;base64,") >= 5
    for name in ("energy", "temperature", "rmsd", "rg"):
        assert f'id="plot-{name}"' in page
    movie = _movie_data(page)
    assert movie["n_frames"] == min(6, N_FRAMES) == len(movie["frames"])
    assert movie["frames"][0] == 0 and movie["frames"][-1] == N_FRAMES - 1
    assert 'data-frames="6"' in page
    heavy = sum(1 for a in _structure().topology.atoms if a.element.symbol != "H")
    assert movie["n_atoms"] == heavy
    assert 'id="frame-counter"' in page
    # the summary table: atoms, frames, simulated time, last stage temperature
    assert "271 atoms" in page and "Trajectory frames" in page and "18.00 ps" in page
    assert "Temperature, last stage (production)" in page
    assert 'structure = &quot;1T2Y.pdb&quot;' in page and "Run summary (run.json)" in page


def test_all_frames_when_fewer_than_max_frames(tmp_path):
    make_run(tmp_path / "run", n_frames=4)
    page = build_report(tmp_path / "run", output=tmp_path / "out.html").read_text()
    assert _movie_data(page)["n_frames"] == 4
    assert not (tmp_path / "run" / "report.html").exists()


def test_rigid_motion_gives_zero_rmsd(tmp_path):
    make_run(tmp_path / "run", kind="rigid")
    result = analyse_trajectory(tmp_path / "run")
    assert result["n_frames"] == N_FRAMES
    np.testing.assert_allclose(result["time_ps"], FRAME_INTERVAL_PS * np.arange(N_FRAMES))
    # XTC keeps 0.001 nm precision, so a rigid copy is exact to a few 1e-4 nm
    assert np.max(result["rmsd_nm"]) < 1e-3
    assert np.ptp(result["rg_nm"]) < 1e-3


def test_protein_split_by_the_box_is_made_whole(tmp_path):
    """Atoms wrapped one by one into the box split the protein; the analysis must undo that."""
    run = tmp_path / "run"
    run.mkdir()
    structure = _structure()
    structure.save_pdb(str(run / "topology.pdb"))
    edge = 4.0
    shifts = np.linspace(0.0, 3.0, 6)[:, None] * np.array([1.0, 0.7, 0.4])
    xyz = np.mod(structure.xyz[0][None] + shifts[:, :, None].transpose(0, 2, 1), edge)
    assert np.ptp(xyz[3], axis=0).max() > 3.0  # the wrapped protein really is split
    md.Trajectory(xyz.astype(np.float32), structure.topology, time=np.arange(6.0),
                  unitcell_lengths=np.full((6, 3), edge), unitcell_angles=np.full((6, 3), 90.0),
                  ).save_xtc(str(run / "trajectory.xtc"))
    _write_log(run / "log.csv", periodic=True)
    result = analyse_trajectory(run)
    assert np.max(result["rmsd_nm"]) < 1e-3
    assert np.ptp(result["rg_nm"]) < 1e-3


def test_rmsd_and_rg_match_mdtraj(tmp_path):
    make_run(tmp_path / "run", kind="noisy")
    result = analyse_trajectory(tmp_path / "run")
    traj = md.load(str(tmp_path / "run" / "trajectory.xtc"), top=str(tmp_path / "run" /
                                                                      "topology.pdb"))
    backbone = traj.topology.select("backbone")
    expected = md.rmsd(traj, traj, 0, atom_indices=backbone)
    np.testing.assert_allclose(result["rmsd_nm"], expected, atol=1e-5)
    masses = np.array([a.element.mass for a in traj.topology.atoms])
    np.testing.assert_allclose(result["rg_nm"], md.compute_rg(traj, masses=masses), atol=1e-5)
    # md.rmsd works in float32 (G_a + G_b - 2 tr): a frame to itself reads ~3e-4 nm
    assert result["rmsd_nm"][0] < 1e-3 and np.all(np.diff(result["rmsd_nm"]) > 0)


def test_dcd_without_times_is_plotted_by_frame(tmp_path):
    make_run(tmp_path / "run", fmt="dcd")
    result = analyse_trajectory(tmp_path / "run")
    assert result["n_frames"] == N_FRAMES and not result["time_known"]
    page = build_report(tmp_path / "run").read_text()
    assert "frame index" in page and _movie_data(page)["times_ps"] is None


def test_no_trajectory_gives_plots_and_a_note(tmp_path):
    make_run(tmp_path / "run", fmt="none")
    page = build_report(tmp_path / "run").read_text()
    assert "No movie" in page and 'id="movie-data"' not in page
    assert page.count("data:image/png;base64,") >= 3


def test_water_box_without_protein(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        water = md.load_pdb(data_path("nacl-water.pdb"))
    water.save_pdb(str(run / "topology.pdb"))
    box = np.repeat(water.unitcell_vectors, 3, axis=0) if water.unitcell_vectors is not None \
        else None
    md.Trajectory(np.repeat(water.xyz, 3, axis=0), water.topology, time=[0.0, 1.0, 2.0],
                  unitcell_lengths=None if box is None else np.repeat(water.unitcell_lengths, 3, 0),
                  unitcell_angles=None if box is None else np.repeat(water.unitcell_angles, 3, 0),
                  ).save_xtc(str(run / "trajectory.xtc"))
    _write_log(run / "log.csv", periodic=True)
    page = build_report(run).read_text()
    assert "no protein" in page.lower()
    assert 'id="plot-rmsd"' not in page and 'id="plot-density"' in page


def test_log_without_rows_and_trajectory_of_another_system(tmp_path):
    """A run that has just started: a header-only log; a trajectory that does not fit: a note."""
    run = tmp_path / "run"
    make_run(run, n_frames=3)
    (run / "log.csv").write_text(",".join(LOG_HEADER) + "\n")
    water = md.load_pdb(data_path("nacl-water.pdb"))
    water.save_xtc(str(run / "trajectory.xtc"))  # another atom count than topology.pdb
    page = build_report(run).read_text()
    assert "no rows yet" in page and "cannot be read with topology.pdb" in page
    assert "No movie" in page


def test_missing_run_folder_is_one_line_error(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["report", str(missing)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bencao: error:") and str(missing) in err[0]


def test_missing_log_names_the_file(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(InputFileError, match="log.csv"):
        build_report(tmp_path / "run")


def test_cli_prints_the_report_path(tmp_path, capsys):
    make_run(tmp_path / "run", n_frames=3)
    out = tmp_path / "r.html"
    assert main(["report", str(tmp_path / "run"), "-o", str(out), "--max-frames", "2"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert _movie_data(out.read_text())["n_frames"] == 2


# --- the movie in a headless browser ---------------------------------------------------------

@needs_chromium
def test_movie_plays_in_headless_chromium(tmp_path):
    start = time.perf_counter()
    make_run(tmp_path / "run", kind="noisy")
    report = build_report(tmp_path / "run", max_frames=8)
    assert_movie_plays(report, expected_frames=8, scratch=tmp_path)
    print(f"headless-browser test: {time.perf_counter() - start:.1f} s")
