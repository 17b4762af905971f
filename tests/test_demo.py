"""The demo as a new user runs it, shortened: BPTI prepared, run, trajectory and report."""

import mdtraj
from browser import assert_movie_plays, needs_chromium

from bencao.demo import run_demo


@needs_chromium
def test_demo_writes_a_readable_trajectory_and_a_report_with_a_moving_molecule(tmp_path):
    # the real demo runs 16 ps; 0.6 ps keeps the default suite fast and walks the same path
    result = run_demo(str(tmp_path / "demo"), production_ps=0.4, heat_ps=0.1, equilibrate_ps=0.1,
                      frames=5, minimize_iterations=50)
    assert result.completed
    run = tmp_path / "demo" / "run"
    trajectory = mdtraj.load(str(run / "trajectory.xtc"), top=str(run / "topology.pdb"))
    assert trajectory.n_frames == 5
    assert trajectory.topology.select("protein").size == 892   # BPTI with hydrogens
    assert result.report == str(run / "report.html")
    assert_movie_plays(run / "report.html", expected_frames=5, scratch=tmp_path)


def test_the_default_demo_job_is_valid_and_has_the_configured_frames(tmp_path):
    from bencao.demo import demo_job_text
    from bencao.jobs import job_from_text

    (tmp_path / "system").mkdir()
    for name in ("system.npz", "state.npz"):
        (tmp_path / "system" / name).write_bytes(b"")
    job = job_from_text(demo_job_text(), tmp_path)
    production = job.stages[-1]
    assert [stage.kind for stage in job.stages] == ["minimize", "nvt", "npt", "npt"]
    assert production.timestep == 0.004 and production.length_ps == 10.0
    assert production.steps // production.trajectory_every == 60
    assert all(stage.trajectory_every == 0 for stage in job.stages[1:3])


@needs_chromium
def test_ligand_demo_runs_the_complex_and_reports_the_ligand(tmp_path):
    # shortened as above; the ligand comes from the crystal residue via its SMILES (AM1-BCC)
    result = run_demo(str(tmp_path / "demo"), production_ps=0.4, heat_ps=0.1, equilibrate_ps=0.1,
                      frames=5, minimize_iterations=50, demo="ligand")
    assert result.completed
    run = tmp_path / "demo" / "run"
    trajectory = mdtraj.load(str(run / "trajectory.xtc"), top=str(run / "topology.pdb"))
    ligand = trajectory.topology.select("resname TMP")
    assert len(ligand) == 18  # p-xylene with its hydrogens
    assert (tmp_path / "demo" / "system" / "ligands" / "TMP.xml").is_file()
    page = (run / "report.html").read_text()
    assert "TMP" in page and "Ligand" in page
    assert_movie_plays(run / "report.html", expected_frames=5, scratch=tmp_path)
