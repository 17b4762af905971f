"""A protein–ligand complex stays bound under NPT dynamics (``pytest -m validation -s``).

T4 lysozyme L99A with p-xylene in its buried cavity (PDB 187L) is prepared from its SDF pose with
GAFF2/AM1-BCC, minimized, heated and equilibrated with the protein backbone and the ligand
restrained, then run free under NPT at 300 K.  p-Xylene binds this cavity with about -20 kJ/mol
and leaves it on a millisecond time scale, so a ligand that drifts out within a nanosecond points
at wrong parameters (charges, types, 1-4 scaling) or wrong dynamics.  The production length is
``BENCAO_LIGAND_VALIDATION_PS`` (default 200 ps; the closing note of the ligand work quotes 1 ns).

Prints a ``VALIDATION`` line with the numbers.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

pytestmark = pytest.mark.validation

#: Largest displacement of the ligand's centre of mass from its crystal position, after
#: superposing the protein's C-alpha atoms, that still counts as "in its pocket", nm (the
#: issue's bar; the cavity is about 0.3 nm wider than p-xylene).
POCKET_TOLERANCE_NM = 0.3


def ligand_displacement(run_dir, ligand_name: str) -> tuple:
    """Per frame, how far the ligand's centre of mass moved from the run's first structure.

    Every frame is superposed on the starting structure (``topology.pdb``) by the protein's C-alpha
    atoms after molecules are made whole and the ligand is put in the periodic image nearest
    the protein (the report's own imaging).

    Returns
    -------
    times_ps : (n_frames,) array
    displacement_nm : (n_frames,) array
    """
    from bencao.report.analysis import load_topology, load_trajectory

    start = load_topology(run_dir)
    data = load_trajectory(run_dir)
    traj = data.traj
    start = start.atom_slice(start.topology.select(f"protein or resname {ligand_name}"))
    assert start.n_atoms == traj.n_atoms
    fit = traj.topology.select("protein and name CA")
    traj.superpose(start, 0, atom_indices=fit)
    ligand = traj.topology.select(f"resname {ligand_name}")
    masses = np.array([traj.topology.atom(i).element.mass for i in ligand])
    com = (traj.xyz[:, ligand] * masses[None, :, None]).sum(axis=1) / masses.sum()
    reference = (start.xyz[0, ligand] * masses[:, None]).sum(axis=0) / masses.sum()
    times = data.time_ps if data.time_ps is not None else np.arange(traj.n_frames, dtype=float)
    return times, np.linalg.norm(com - reference, axis=1)


def test_ligand_stays_in_its_pocket_under_npt(tmp_path):
    from bencao.demo import data_path
    from bencao.jobs import load_job
    from bencao.jobs.runner import JobRunner
    from bencao.prep.complex import LigandOptions
    from bencao.prep.prepare import prepare_structure, write_prepared

    production_ps = float(os.environ.get("BENCAO_LIGAND_VALIDATION_PS", "200"))
    prepared = prepare_structure(data_path("t4l-l99a-pxylene.pdb"), padding=0.7,
                                 box_shape="dodecahedron", nonbonded_cutoff=0.9,
                                 hydrogen_mass=1.5,
                                 ligands=LigandOptions(files=[data_path("pxylene.sdf")]))
    write_prepared(prepared, tmp_path / "system")
    job = tmp_path / "job.toml"
    job.write_text(f"""\
system = "system"
output = "run"
seed = 15
timestep = "4 fs"
temperature = 300
pressure = 1.0
report_interval = "2 ps"
trajectory_interval = "10 ps"

[[stage]]
kind = "minimize"
max_iterations = 1000

[[stage]]
kind = "nvt"
name = "heat"
length = "20 ps"
temperature = [50, 300]
restraints = "heavy"

[[stage]]
kind = "npt"
name = "equilibrate"
length = "20 ps"
restraints = "backbone+ligand"

[[stage]]
kind = "npt"
name = "production"
length = "{production_ps:g} ps"
reciprocal_every = 2
""")
    result = JobRunner(load_job(str(job)), overwrite=True).run()
    assert result.completed
    times, displacement = ligand_displacement(tmp_path / "run", "LIG")
    print(f"\nVALIDATION ligand_in_pocket: production_ps={production_ps:g}, "
          f"frames={len(times)}, max_com_displacement_nm={displacement.max():.3f}, "
          f"final_nm={displacement[-1]:.3f}, mean_nm={displacement.mean():.3f}")
    assert displacement.max() < POCKET_TOLERANCE_NM
