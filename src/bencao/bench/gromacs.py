"""GROMACS beside bencao: the benchmark system converted with ParmEd and timed with ``gmx mdrun``.

GROMACS is GPL software: it is only ever run as a separate program (``subprocess``), never
imported or linked.  The OpenMM System of a benchmark (with its repartitioned hydrogen masses,
bonds to hydrogen constrained and rigid TIP3P) is written to a ``.top``/``.gro`` pair by ParmEd,
an ``.mdp`` repeats the bencao/OpenMM benchmark settings (both in
:mod:`bencao.bench.gromacs_input`), ``gmx grompp`` runs once, and each timed run is a fresh
``gmx mdrun`` whose own "Performance:" line (counted from halfway, ``-resethway``, so start-up is
excluded) gives ns/day; :mod:`bencao.bench.gromacs_log` reads GROMACS's output.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bencao.bench.gromacs_input import (
    mdp_settings,
    openmm_pme,
    write_gromacs_files,
    write_mdp,
)
from bencao.bench.gromacs_log import grompp_notes, parse_md_log, parse_version
from bencao.errors import BencaoError
from bencao.thread_waiting import user_environment

#: Executables tried in this order: the thread-MPI build, then the MPI build.
GMX_NAMES = ("gmx", "gmx_mpi")


class GromacsError(BencaoError, RuntimeError):
    """A GROMACS program failed, or its output could not be read."""


# -- the executable ---------------------------------------------------------------------------


def find_gmx() -> str | None:
    """Path of ``gmx`` (or ``gmx_mpi``) on the PATH, or None."""
    for name in GMX_NAMES:
        path = shutil.which(name)
        if path is not None:
            return path
    return None


def gromacs_info(gmx: str | None = None) -> dict | None:
    """The GROMACS found on the PATH (or ``gmx``) for a report, None if there is none.

    Returns
    -------
    dict or None
        ``executable`` and what :func:`parse_version` reads from ``gmx --version``.
    """
    gmx = gmx or find_gmx()
    if gmx is None:
        return None
    result = _run([gmx, "--version"], Path.cwd(), timeout=60)
    return {"executable": gmx, **parse_version(result.stdout + result.stderr)}


# Lines of GROMACS's fatal-error frame that say nothing about the error itself.
_BOILERPLATE = ("----", "Program:", "Source file:", "Fatal error:", "For more information",
                "website at", "GROMACS reminds you")


def _run(command: list[str], directory: Path, timeout: float | None = None,
         env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a GROMACS command.

    A failure raises :class:`GromacsError` on one line naming the command and either grompp's
    WARNING/ERROR paragraphs or the last lines of stderr; its ``output`` holds stdout + stderr.
    """
    result = subprocess.run(command, check=False, cwd=directory, capture_output=True, text=True,
                            timeout=timeout, env=env)
    if result.returncode != 0:
        output = result.stdout + result.stderr
        problems = [note for note in grompp_notes(output) if not note.startswith("NOTE")]
        lines = [line.strip() for line in (result.stderr or result.stdout).splitlines()]
        tail = [line for line in lines if line and not line.startswith(_BOILERPLATE)][-4:]
        error = GromacsError(f"`{' '.join(command)}` failed (exit status {result.returncode}): "
                             + " | ".join(problems[:3] or tail))
        error.output = output
        raise error
    return result


#: grompp warnings that do not stop a benchmark: OpenMM and bencao simulate the same net-charged
#: DHFR with the same uniform neutralising background that this warning is about.
ACCEPTED_WARNINGS = ("You are using Ewald electrostatics in a system with net charge",)


def grompp(gmx: str, directory: Path, mdp: str, gro: str, top: str) -> list[str]:
    """``gmx grompp`` into ``run.tpr``; returns its notes and accepted warnings, one line each.

    grompp stops at any warning unless told how many to allow (``-maxwarn``): it is rerun with
    exactly as many as it gave when all of them are in ``ACCEPTED_WARNINGS``, and fails (with
    their text) otherwise.
    """
    command = [gmx, "grompp", "-f", mdp, "-c", gro, "-p", top, "-o", "run.tpr", "-po", "mdout.mdp"]
    try:
        result = _run(command, directory, timeout=600)
    except GromacsError as error:
        problems = [note for note in grompp_notes(getattr(error, "output", ""))
                    if not note.startswith("NOTE")]
        if not problems or not all(problem.startswith("WARNING")
                                   and any(ok in problem for ok in ACCEPTED_WARNINGS)
                                   for problem in problems):
            raise
        result = _run(command + ["-maxwarn", str(len(problems))], directory, timeout=600)
    return grompp_notes(result.stdout + result.stderr)


# -- runs -------------------------------------------------------------------------------------


def steps_for(seconds: float, ns_per_day: float, timestep: float, multiple: int = 100) -> int:
    """Steps that take about ``seconds`` at ``ns_per_day`` with ``timestep`` ps steps, rounded up
    to a ``multiple`` (at least one multiple)."""
    steps = seconds * ns_per_day / (timestep * 1e-3 * 86400.0)
    return multiple * max(1, math.ceil(steps / multiple))


class GromacsRun:
    """One benchmark system prepared for GROMACS in a temporary directory, run by ``gmx mdrun``.

    The files are written and ``gmx grompp`` runs on creation; each :meth:`run` is then a fresh
    ``gmx mdrun`` from the same .tpr (so each starts from the same state, as a timed block need
    not continue the last one).  Use as a context manager, or call :meth:`close`, to remove the
    directory.

    Parameters
    ----------
    system : openmm.System
    topology : openmm.app.Topology
    positions : (N, 3) array
        Positions, nm.
    box : (3, 3) array
        Box vectors as rows, nm.
    threads : int
        OpenMP threads of mdrun's single (thread-MPI) rank.
    timestep, temperature, friction, seed, continuation
        As in :func:`mdp_settings`.
    gmx : str or None
        The GROMACS executable; None finds ``gmx`` or ``gmx_mpi`` on the PATH.

    Raises
    ------
    GromacsError
        If there is no GROMACS, or grompp fails.
    """

    def __init__(self, system, topology, positions, box, threads: int, timestep: float = 0.004,
                 temperature: float = 300.0, friction: float = 1.0, seed: int = 1,
                 continuation: bool = False, gmx: str | None = None):
        self.gmx = gmx or find_gmx()
        if self.gmx is None:
            raise GromacsError("no GROMACS: neither of " + ", ".join(GMX_NAMES) + " is on the PATH")
        self.threads = int(threads)
        self.timestep = timestep
        self._temporary = tempfile.TemporaryDirectory(prefix="bencao-gromacs-")
        self.directory = Path(self._temporary.name)
        try:
            self.pme = openmm_pme(system)
            self.settings = mdp_settings(self.pme, timestep, temperature, friction, seed,
                                         continuation)
            top, gro = write_gromacs_files(system, topology, positions, box, self.directory)
            write_mdp(self.directory / "run.mdp", self.settings)
            self.notes = grompp(self.gmx, self.directory, "run.mdp", gro.name, top.name)
        except BaseException:
            self.close()
            raise

    def command(self, steps: int) -> list[str]:
        """The mdrun command line of a run of ``steps`` steps.

        One thread-MPI rank with ``threads`` OpenMP threads (as bencao's one process), nonbonded
        work on the CPU, PME tuning off (it would move the cutoff and grid away from OpenMM's;
        with one rank it does not run anyway), GROMACS's own thread pinning (``auto`` pins when
        the threads fill the machine), counters reset halfway so that start-up is excluded, no
        final coordinates or checkpoint written.
        """
        return [self.gmx, "mdrun", "-s", "run.tpr", "-deffnm", "run", "-ntmpi", "1",
                "-ntomp", str(self.threads), "-nsteps", str(int(steps)), "-resethway",
                "-notunepme", "-pin", "auto", "-nb", "cpu", "-noconfout"]

    def run(self, steps: int) -> dict:
        """Run ``steps`` steps; what :func:`parse_md_log` reads, with ``steps`` and the
        process's own wall time ``process_wall_s`` (start-up included)."""
        # mdrun refuses an OMP_NUM_THREADS that disagrees with -ntomp; no #run.log.1# backups
        # the user's environment, not the OpenMP wait policy bencao chose for its own threads
        env = {**user_environment(), "OMP_NUM_THREADS": str(self.threads),
               "GMX_MAXBACKUP": "-1"}
        start = time.perf_counter()
        _run(self.command(steps), self.directory, env=env)
        wall = time.perf_counter() - start
        log = parse_md_log((self.directory / "run.log").read_text())
        if log["ns_per_day"] is None:
            raise GromacsError(f"no 'Performance:' line in {self.directory / 'run.log'}")
        return {**log, "steps": int(steps), "process_wall_s": wall}

    def essentials(self) -> dict:
        """The settings a reader needs to judge a timing: the .mdp's (GROMACS names), OpenMM's
        alpha they reproduce, and the mdrun command line (``N`` for the steps)."""
        keys = ("integrator", "dt", "tau-t", "ref-t", "constraints", "constraint-algorithm",
                "cutoff-scheme", "coulombtype", "coulomb-modifier", "rcoulomb", "vdwtype",
                "vdw-modifier", "rvdw", "DispCorr", "pme-order", "fourier-nx", "fourier-ny",
                "fourier-nz", "ewald-rtol", "nstcalcenergy")
        command = ["gmx", *self.command(0)[1:]]
        command[command.index("-nsteps") + 1] = "N"
        return {**{key: self.settings[key] for key in keys},
                "verlet-buffer-tolerance": "default (0.005 kJ/mol/ps per atom)",
                "ewald_alpha_per_nm": self.pme["alpha_per_nm"], "water": "SETTLE",
                "mdrun": " ".join(command)}

    def close(self) -> None:
        """Remove the temporary directory."""
        self._temporary.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
