"""The demos: from PDB file to report, in a few minutes on two CPU cores.

``bpti``: BPTI, the protein of Anton's first millisecond (``bencao/data/bpti.pdb``).
``ligand``: T4 lysozyme L99A with p-xylene in its buried cavity (``bencao/data/
t4l-l99a-pxylene.pdb``, PDB 187L, heavy atoms as in the crystal structure): the ligand residue is
rebuilt from its SMILES and parametrised with GAFF2 and AM1-BCC charges (AmberTools), the way a
co-crystal structure is prepared.

Each is prepared with amber14 + TIP3P in a rhombic dodecahedron with 0.15 M NaCl and hydrogen
masses of 1.5 amu, then minimized, heated, equilibrated under restraints and run for a short
production at 4 fs.  The job file written is an ordinary one the user can edit and run again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources

from bencao.errors import PreparationError

#: Time step of the demo, ps (hydrogen masses are 1.5 amu).
DEMO_TIMESTEP_PS = 0.004

#: The demo's job: short stages so it finishes in minutes; frames only in production.
DEMO_JOB = """\
# bencao demo: {title} (amber14 + TIP3P, 0.15 M NaCl, hydrogen mass 1.5 amu).
# Run it again with:  bencao run job.toml --overwrite
system = "system"
output = "run"
seed = 2026
timestep = "{timestep_fs:g} fs"
temperature = 300
pressure = 1.0
report_interval = "0.2 ps"
trajectory_format = "xtc"
checkpoint_minutes = 5

[[stage]]
kind = "minimize"
max_iterations = {minimize_iterations}

[[stage]]
kind = "nvt"
name = "heat"
length = "{heat_steps} steps"
temperature = [50, 300]
restraints = "heavy"
trajectory_interval = 0

[[stage]]
kind = "npt"
name = "equilibrate"
length = "{equilibrate_steps} steps"
restraints = "{equilibrate_restraints}"
trajectory_interval = 0

[[stage]]
kind = "npt"
name = "production"
length = "{production_steps} steps"
trajectory_interval = "{frame_steps} steps"
"""


@dataclass(frozen=True)
class Demo:
    """One demo system.

    Parameters
    ----------
    name : str
        What ``bencao demo NAME`` calls it.
    title : str
        What it is, in words.
    structure : str
        File name in ``bencao/data``.
    ligand_residues : dict
        Residue name -> SMILES of the ligands kept from the structure.
    equilibrate_restraints : str
        Restraints of the equilibration stage.
    padding : float
        Solute to box edge, nm.
    """

    name: str
    title: str
    structure: str
    ligand_residues: dict = field(default_factory=dict)
    equilibrate_restraints: str = "backbone"
    padding: float = 0.8


DEMOS = {
    "bpti": Demo("bpti", "BPTI in water", "bpti.pdb"),
    "ligand": Demo("ligand", "T4 lysozyme L99A with p-xylene in water",
                   "t4l-l99a-pxylene.pdb", {"TMP": "Cc1ccc(C)cc1"}, "backbone+ligand", 0.6),
}


def demo_job_text(production_ps: float = 10.0, heat_ps: float = 3.0, equilibrate_ps: float = 3.0,
                  frames: int = 60, minimize_iterations: int = 300, demo: str = "bpti") -> str:
    """The demo's job file with the given stage lengths (ps) and production frame count.

    Lengths are rounded to whole 4 fs steps, and frames are spaced by a whole number of steps.
    """
    spec = DEMOS[demo]
    steps = {name: max(1, round(ps / DEMO_TIMESTEP_PS)) for name, ps in
             (("heat", heat_ps), ("equilibrate", equilibrate_ps), ("production", production_ps))}
    return DEMO_JOB.format(heat_steps=steps["heat"], equilibrate_steps=steps["equilibrate"],
                           production_steps=steps["production"],
                           frame_steps=max(1, steps["production"] // max(1, frames)),
                           minimize_iterations=minimize_iterations,
                           timestep_fs=DEMO_TIMESTEP_PS * 1e3, title=spec.title,
                           equilibrate_restraints=spec.equilibrate_restraints)


def data_path(name: str) -> str:
    """Path of a structure shipped in ``bencao/data``."""
    return str(resources.files("bencao") / "data" / name)


def bpti_path() -> str:
    """Path of the shipped BPTI structure."""
    return data_path("bpti.pdb")


def run_demo(folder: str = "demo", production_ps: float = 10.0, heat_ps: float = 3.0,
             equilibrate_ps: float = 3.0, frames: int = 60, minimize_iterations: int = 300,
             stream=None, demo: str = "bpti"):
    """Prepare a demo system into ``folder/system``, write ``folder/job.toml`` and run it to
    ``folder/run``.

    Parameters
    ----------
    demo : {"bpti", "ligand"}
        Which demo (see the module's docstring); other parameters are stage lengths in ps, the
        production's frame count and the minimizer's iteration limit.

    Returns
    -------
    bencao.jobs.runner.RunResult
    """
    import sys

    from bencao.io.files import atomic_write, ensure_output_folder
    from bencao.jobs import load_job
    from bencao.jobs.runner import JobRunner
    from bencao.prep.complex import LigandOptions
    from bencao.prep.prepare import prepare_structure, summarize, write_prepared

    if demo not in DEMOS:
        raise PreparationError(f"unknown demo {demo!r}; choose one of: {', '.join(DEMOS)}")
    spec = DEMOS[demo]
    stream = stream if stream is not None else sys.stderr
    ensure_output_folder(folder)
    system_dir = os.path.join(folder, "system")
    if not os.path.exists(os.path.join(system_dir, "system.npz")):
        ligands = " + GAFF2/AM1-BCC ligand" if spec.ligand_residues else ""
        print(f"preparing {spec.title}: amber14 + TIP3P{ligands}, dodecahedron, "
              f"{spec.padding} nm padding, 0.15 M NaCl, hydrogen mass 1.5 amu", file=stream,
              flush=True)
        prepared = prepare_structure(
            data_path(spec.structure), "amber14", "tip3p", padding=spec.padding,
            ionic_strength=0.15, box_shape="dodecahedron", hydrogen_mass=1.5,
            ligands=LigandOptions(residues=dict(spec.ligand_residues))
            if spec.ligand_residues else None)
        write_prepared(prepared, system_dir)
        summary = summarize(prepared)
        print(f"  {summary['atoms']} atoms, {summary['waters']} waters, box volume "
              f"{summary['volume']:.1f} nm^3", file=stream, flush=True)
        for note in prepared.notes:
            print(f"  note: {note}", file=stream, flush=True)
    job_path = os.path.join(folder, "job.toml")
    with atomic_write(job_path, "w") as handle:
        handle.write(demo_job_text(production_ps, heat_ps, equilibrate_ps, frames,
                                   minimize_iterations, demo))
    return JobRunner(load_job(job_path), overwrite=True, stream=stream).run()
