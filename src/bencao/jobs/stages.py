"""What a validated job is: its stages and settings, fully resolved (read by
:mod:`bencao.jobs.jobfile`, run by :mod:`bencao.jobs.runner`)."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass

DYNAMICS_KINDS = ("nvt", "npt", "nve")


@dataclass(frozen=True)
class Stage:
    """One stage of a job: a minimization or a stretch of dynamics, fully resolved.

    Attributes
    ----------
    name : str
        Unique within the job; names the stage's log rows and checkpoints.
    kind : {"minimize", "nvt", "npt", "nve"}
    steps : int
        Number of time steps (0 for minimize).
    timestep : float
        Time step, ps.
    temperature : tuple of float
        (start, end), K: a linear ramp over the stage; equal for a constant temperature.
    pressure : float or None
        Barostat pressure, bar (npt only, else None).
    integrator : {"langevin", "nose-hoover", "verlet"}
    friction : float
        Langevin friction or Nosé–Hoover collision frequency, 1/ps.
    reciprocal_every : int
        Reciprocal-space forces every this many steps (multiple time stepping).
    barostat_frequency : int
        Steps between Monte Carlo volume moves (npt).
    report_every : int
        Steps between log rows (0 = none).
    trajectory_every : int
        Steps between trajectory frames (0 = none).
    restraints : str
        Which atoms are held at their starting positions by harmonic restraints: "none",
        "heavy", "backbone", "protein", "ligand" (its heavy atoms), or several joined with "+".
    restraint_k : float
        Restraint force constant, kJ/mol/nm^2.
    tolerance : float
        Minimizer convergence: RMS force, kJ/mol/nm (minimize only).
    max_iterations : int
        Minimizer iteration limit, 0 = until converged (minimize only).
    generate_velocities : bool
        Draw Maxwell–Boltzmann velocities at the start temperature before the stage.
    """

    name: str
    kind: str
    steps: int
    timestep: float
    temperature: tuple[float, float]
    pressure: float | None
    integrator: str
    friction: float
    reciprocal_every: int
    barostat_frequency: int
    report_every: int
    trajectory_every: int
    restraints: str
    restraint_k: float
    tolerance: float
    max_iterations: int
    generate_velocities: bool

    @property
    def is_dynamics(self) -> bool:
        """True for nvt, npt and nve stages; False for minimize."""
        return self.kind in DYNAMICS_KINDS

    @property
    def length_ps(self) -> float:
        """Simulated time of the stage, ps (0 for minimize)."""
        return self.steps * self.timestep


EXCHANGES = ("none", "temperature", "rest2")


@dataclass(frozen=True)
class Ensemble:
    """Many replicas of a job's last stage, with or without exchanges (the ``[ensemble]`` table).

    Attributes
    ----------
    replicas : int
        Number of replicas (and of states: replica r starts in state r).
    exchange : {"none", "temperature", "rest2"}
        Independent replicas, temperature replica exchange, or replica exchange with solute
        tempering (REST2: scaled solute Hamiltonians, every replica at the stage's temperature).
    temperatures : tuple of float
        Thermostat temperature of each state, K.
    solute : str or None
        REST2 solute: "ligand", "protein", or an MDTraj selection.
    solute_temperatures : tuple of float or None
        REST2 effective solute temperature of each state, K (the first is the stage's temperature);
        state k scales the solute Hamiltonian by ``temperatures[k] / solute_temperatures[k]``.
    segment_steps : int
        Steps between exchange attempts: the length of one segment (checkpoint in, steps,
        checkpoint and energies out), the unit of work that runs on a worker.
    """

    replicas: int
    exchange: str
    temperatures: tuple[float, ...]
    solute: str | None
    solute_temperatures: tuple[float, ...] | None
    segment_steps: int

    @property
    def scales(self) -> tuple[float, ...]:
        """REST2 solute scaling factor lambda of each state (1 for every state otherwise)."""
        if self.solute_temperatures is None:
            return (1.0,) * self.replicas
        return tuple(t / ts for t, ts in zip(self.temperatures, self.solute_temperatures))


@dataclass(frozen=True)
class Job:
    """A validated job file.

    Attributes
    ----------
    path : pathlib.Path or None
        The job file, absolute (None when built from text).
    text : str
        The TOML text as given (the runner copies it into the run folder).
    system_dir : pathlib.Path
        Prepared system folder, absolute; holds system.npz and state.npz.
    output_dir : pathlib.Path
        Run folder, absolute (it may not exist yet).
    seed : int or None
        Random seed; None lets the runner pick one (and record it).
    stages : tuple of Stage
        In the order they run.
    trajectory_format : {"xtc", "dcd"}
    checkpoint_minutes : float
        Wall-clock minutes between checkpoints.
    checkpoint_interval_ps : float or None
        Simulated time between checkpoints as well, ps (deterministic); None for wall-clock only.
        It is a whole number of steps of every dynamics stage (checked on load).
    threads : int or None
        Number of threads; None for the default.
    backend : {"cpu", "cuda"}
        Where the steps run: the CPU, or an NVIDIA GPU (the whole step on the device).
    ensemble : Ensemble or None
        Replicas of the last stage (after the others have run once), or None for one run.
    pockets : bool
        Find and track pockets along the trajectory at the end (``bencao pockets``).
    """

    path: pathlib.Path | None
    text: str
    system_dir: pathlib.Path
    output_dir: pathlib.Path
    seed: int | None
    stages: tuple[Stage, ...]
    trajectory_format: str
    checkpoint_minutes: float
    checkpoint_interval_ps: float | None
    threads: int | None
    backend: str = "cpu"
    ensemble: Ensemble | None = None
    pockets: bool = False

    @property
    def total_steps(self) -> int:
        """Number of dynamics steps over all stages."""
        return sum(stage.steps for stage in self.stages if stage.is_dynamics)
