"""The demo: BPTI, the protein of Anton's first millisecond, from PDB file to report.

BPTI (shipped in ``bencao/data/bpti.pdb``) is prepared with amber14 + TIP3P in a rhombic
dodecahedron with 0.15 M NaCl and hydrogen masses of 1.5 amu, then minimized, heated, equilibrated
under restraints and run for a short production at 4 fs.  On two CPU cores it takes a few
minutes; the job file it writes is an ordinary one the user can edit and run again.
"""

from __future__ import annotations

import os
from importlib import resources

#: Time step of the demo, ps (hydrogen masses are 1.5 amu).
DEMO_TIMESTEP_PS = 0.004

#: The demo's job: short stages so it finishes in minutes; frames only in production.
DEMO_JOB = """\
# bencao demo: BPTI in water (amber14 + TIP3P, 0.15 M NaCl, hydrogen mass 1.5 amu).
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
restraints = "backbone"
trajectory_interval = 0

[[stage]]
kind = "npt"
name = "production"
length = "{production_steps} steps"
trajectory_interval = "{frame_steps} steps"
"""


def demo_job_text(production_ps: float = 10.0, heat_ps: float = 3.0, equilibrate_ps: float = 3.0,
                  frames: int = 60, minimize_iterations: int = 300) -> str:
    """The demo's job file with the given stage lengths (ps) and production frame count.

    Lengths are rounded to whole 4 fs steps, and frames are spaced by a whole number of steps.
    """
    steps = {name: max(1, round(ps / DEMO_TIMESTEP_PS)) for name, ps in
             (("heat", heat_ps), ("equilibrate", equilibrate_ps), ("production", production_ps))}
    return DEMO_JOB.format(heat_steps=steps["heat"], equilibrate_steps=steps["equilibrate"],
                           production_steps=steps["production"],
                           frame_steps=max(1, steps["production"] // max(1, frames)),
                           minimize_iterations=minimize_iterations,
                           timestep_fs=DEMO_TIMESTEP_PS * 1e3)


def bpti_path() -> str:
    """Path of the shipped BPTI structure."""
    return str(resources.files("bencao") / "data" / "bpti.pdb")


def run_demo(folder: str = "demo", production_ps: float = 10.0, heat_ps: float = 3.0,
             equilibrate_ps: float = 3.0, frames: int = 60, minimize_iterations: int = 300,
             stream=None):
    """Prepare BPTI into ``folder/system``, write ``folder/job.toml`` and run it to ``folder/run``.

    Returns
    -------
    bencao.jobs.runner.RunResult
    """
    import sys

    from bencao.io.files import atomic_write, ensure_output_folder
    from bencao.jobs import load_job
    from bencao.jobs.runner import JobRunner
    from bencao.prep.prepare import prepare_structure, summarize, write_prepared

    stream = stream if stream is not None else sys.stderr
    ensure_output_folder(folder)
    system_dir = os.path.join(folder, "system")
    if not os.path.exists(os.path.join(system_dir, "system.npz")):
        print("preparing BPTI: amber14 + TIP3P, dodecahedron, 0.8 nm padding, 0.15 M NaCl, "
              "hydrogen mass 1.5 amu", file=stream, flush=True)
        prepared = prepare_structure(bpti_path(), "amber14", "tip3p", padding=0.8,
                                     ionic_strength=0.15, box_shape="dodecahedron",
                                     hydrogen_mass=1.5)
        write_prepared(prepared, system_dir)
        summary = summarize(prepared)
        print(f"  {summary['atoms']} atoms, {summary['waters']} waters, box volume "
              f"{summary['volume']:.1f} nm^3", file=stream, flush=True)
    job_path = os.path.join(folder, "job.toml")
    with atomic_write(job_path, "w") as handle:
        handle.write(demo_job_text(production_ps, heat_ps, equilibrate_ps, frames,
                                   minimize_iterations))
    return JobRunner(load_job(job_path), overwrite=True, stream=stream).run()
