"""Run a job: its stages in order, with reporters, checkpoints, resume and clean stops.

A run folder holds ``job.toml`` (the job as run), ``topology.pdb``, ``log.csv``, the trajectory,
``checkpoint.npz``, and at the end ``final_state.npz``, ``final.pdb``, ``run.json`` and
``report.html``.

Bit-identical restarts: stage s starts from the previous stage's positions, velocities, box,
clock and random stream (the "carry"); inside a stage, a checkpoint holds the simulation's whole
state (``Simulation.get_checkpoint_state``).  Every decision that depends on the step (reports,
heating-ramp temperatures, checkpoints by simulated time) is a function of the step number only,
never of how the run was cut into chunks, so a resumed run takes exactly the steps an
uninterrupted one takes.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import sys
import time
from dataclasses import dataclass

import numpy as np

from bencao.errors import BencaoError, ConstraintError, InputFileError, OutputError
from bencao.io.checkpoint import (
    checkpoint_exists,
    load_latest_checkpoint,
    save_checkpoint,
)
from bencao.io.files import atomic_write, ensure_output_folder, load_state, save_state

CHECKPOINT = "checkpoint.npz"
LOG = "log.csv"

#: Steps run between looks at the clock and at stop signals: short enough to stop within a few
#: seconds on a large system, long enough that the Python around it costs nothing.
MAX_CHUNK = 50

#: A heating ramp changes the target temperature in this many equal steps.
RAMP_SEGMENTS = 100


class SimulationError(BencaoError):
    """The dynamics failed (a blow-up or constraint failure); the message names atoms and term."""


@dataclass
class RunResult:
    """What a finished (or stopped) run produced."""

    output_dir: str
    completed: bool
    stopped_by: str | None
    step: int
    time_ps: float
    report: str | None


def text_sha256(text: str) -> str:
    """SHA-256 of a text (a job file's, to recognise it on resume)."""
    return hashlib.sha256(text.encode()).hexdigest()


def describe_atoms(topology, particles) -> str:
    """'ALA12 CA (atom 170), HOH1500 O (atom 4500)' for an mdtraj topology and indices."""
    parts = []
    for index in particles:
        atom = topology.atom(int(index))
        residue = atom.residue
        chain = residue.chain.chain_id if getattr(residue.chain, "chain_id", None) else residue.chain.index
        parts.append(f"{residue.name}{residue.resSeq} {atom.name} (chain {chain}, atom {index})")
    return ", ".join(parts)


def stage_integrator(stage, temperature: float):
    """The integrator a stage asks for, thermostatted at ``temperature`` (K)."""
    from bencao.dynamics.integrators import INTEGRATORS

    # NVE stages and minimisation run Verlet, whatever the thermostatted stages use
    name = "verlet" if stage.kind in ("nve", "minimize") else stage.integrator
    return INTEGRATORS[name].from_stage(temperature, stage.friction, stage.timestep,
                                        reciprocal_every=stage.reciprocal_every)


def stage_barostat(stage, temperature: float):
    """The Monte Carlo barostat of an npt stage at ``temperature`` (K); None for other kinds."""
    if stage.kind != "npt":
        return None
    from bencao.dynamics.barostat import MonteCarloBarostat

    return MonteCarloBarostat(stage.pressure, temperature, frequency=stage.barostat_frequency)


class StopSignals:
    """Turn SIGINT/SIGTERM into a flag the run checks between chunks (and restore handlers)."""

    def __init__(self):
        self.received = None
        self._previous = {}

    def __enter__(self):
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: signals cannot be caught here
                pass
        return self

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        return False


class JobRunner:
    """Run a :class:`bencao.jobs.Job`.

    Parameters
    ----------
    job : bencao.jobs.Job
        The validated job.
    resume : bool
        Continue from the run folder's checkpoint (starts afresh if there is none).
    overwrite : bool
        Start again even if the run folder holds a previous run.
    stream : file-like
        Where progress and messages go (stderr by default).
    write_report : bool
        Write ``report.html`` at the end.
    """

    def __init__(self, job, resume: bool = False, overwrite: bool = False, stream=None,
                 write_report: bool = True):
        self.job = job
        self.resume = resume
        self.overwrite = overwrite
        self.stream = stream if stream is not None else sys.stderr
        self.write_report = write_report
        self.folder = str(job.output_dir)
        self.checkpoint_path = os.path.join(self.folder, CHECKPOINT)

    # -- set-up -----------------------------------------------------------------------------

    def _say(self, message: str) -> None:
        print(message, file=self.stream, flush=True)

    def _load_inputs(self):
        import mdtraj
        from openmm import app

        from bencao.system import System

        system_dir = str(self.job.system_dir)
        try:
            self.system = System.load(os.path.join(system_dir, "system.npz"))
        except ValueError as exc:
            raise InputFileError(str(exc)) from exc
        self.initial = load_state(os.path.join(system_dir, "state.npz"))
        structure = os.path.join(system_dir, "structure.pdb")
        try:
            pdb = app.PDBFile(structure)
        except Exception as exc:
            raise InputFileError(f"{structure}: cannot read the prepared structure ({exc})") from exc
        self.structure_path = structure
        self.openmm_topology = pdb.topology
        if self.initial["box"] is not None:
            self.openmm_topology.setPeriodicBoxVectors(self.initial["box"])
        self.topology = mdtraj.Topology.from_openmm(pdb.topology)
        if self.topology.n_atoms != self.system.n_particles:
            raise InputFileError(
                f"{structure} has {self.topology.n_atoms} atoms but system.npz has "
                f"{self.system.n_particles} particles; prepare the system again")

    def _check_folder(self) -> bool:
        """Create the run folder; return True if there is a checkpoint to resume from."""
        ensure_output_folder(self.folder)
        exists = checkpoint_exists(self.checkpoint_path)
        if exists and not self.resume and not self.overwrite:
            raise OutputError(
                f"{self.folder} already holds a run ({CHECKPOINT}); continue it with --resume "
                "or start again with --overwrite")
        if self.resume and not exists:
            self._say(f"no checkpoint in {self.folder}: starting the job from the beginning")
        return exists and self.resume

    def _total_dynamics_steps(self) -> int:
        return int(sum(stage.steps for stage in self.job.stages if stage.is_dynamics))

    def _steps_done(self, step: int) -> int:
        """Dynamics steps of the job done when the global step count is ``step``."""
        done = 0
        for stage, first in zip(self.job.stages, self._stage_starts):
            if not stage.is_dynamics or first is None:
                continue
            done += min(stage.steps, max(0, step - first))
        return done

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> RunResult:
        """Run (or resume) the job to its end, or until SIGINT/SIGTERM."""
        job = self.job
        if job.threads:
            import numba

            numba.set_num_threads(min(int(job.threads), numba.config.NUMBA_NUM_THREADS))
        self._load_inputs()
        resuming = self._check_folder()
        job_hash = text_sha256(job.text)
        if resuming:
            arrays, values, marks = load_latest_checkpoint(self.checkpoint_path, self._say)
            if values["job_sha256"] != job_hash:
                raise InputFileError(
                    f"the job file differs from the one {self.checkpoint_path} was written with; "
                    "resume with the job file as it was (a copy is in the run folder as job.toml)")
            for mark in marks:
                mark.restore()
            self.seed = int(values["seed"])
            stage_index = int(values["stage_index"])
            self._stage_starts = [None if s is None else int(s) for s in values["stage_starts"]]
            carry = (arrays, values)
            self._say(f"resuming {self.folder} at step {values['simulation']['step']} "
                      f"(stage {job.stages[stage_index].name})" if stage_index < len(job.stages)
                      else f"resuming {self.folder}: all stages were done")
        else:
            self.seed = int(job.seed) if job.seed is not None else secrets.randbits(31)
            stage_index = 0
            self._stage_starts = [None] * len(job.stages)
            carry = None
            self._write_run_files()
        reporters = self._make_reporters(append=resuming)
        stopped_by = None
        try:
            with StopSignals() as signals:
                self._signals = signals
                while stage_index < len(job.stages):
                    outcome, carry = self._run_stage(stage_index, carry, reporters, job_hash)
                    if outcome is not None:
                        stopped_by = outcome
                        break
                    stage_index += 1
                    self._checkpoint(stage_index, carry, reporters, job_hash)
                    if signals.received:
                        stopped_by = signals.received
                        break
        finally:
            for reporter in reporters:
                reporter.close()
        sim_values = carry[1]["simulation"]
        if stopped_by is not None:
            self._say(f"stopped by {stopped_by} at step {sim_values['step']}; checkpoint written to "
                      f"{self.checkpoint_path}; continue with: bencao run JOB --resume")
            return RunResult(self.folder, False, stopped_by, int(sim_values["step"]),
                             float(sim_values["time"]), None)
        report = self._finish(carry)
        return RunResult(self.folder, True, None, int(sim_values["step"]), float(sim_values["time"]),
                         report)

    def _write_run_files(self) -> None:
        with atomic_write(os.path.join(self.folder, "job.toml"), "w") as handle:
            handle.write(self.job.text)
        with open(self.structure_path, "rb") as source, \
                atomic_write(os.path.join(self.folder, "topology.pdb"), "wb") as handle:
            shutil.copyfileobj(source, handle)

    def _make_reporters(self, append: bool):
        from bencao.dynamics.molecules import find_molecules
        from bencao.reporters import (
            ProgressReporter,
            StateDataReporter,
            TrajectoryReporter,
        )

        total = self._total_dynamics_steps()
        log = StateDataReporter(os.path.join(self.folder, LOG), total, self._steps_done, append=append)
        trajectory = TrajectoryReporter(
            os.path.join(self.folder, f"trajectory.{self.job.trajectory_format}"),
            self.openmm_topology, find_molecules(self.system), append=append)
        log.role, trajectory.role = "log", "trajectory"
        progress = ProgressReporter(total, self._steps_done, self.stream)
        progress.role = "progress"
        return [log, trajectory, progress]

    # -- one stage --------------------------------------------------------------------------

    def _stage_simulation(self, stage, carry):
        """The Simulation of a stage, started from the carry (or the prepared state)."""
        from bencao.prep.restraints import restrained_atoms, with_position_restraints
        from bencao.simulation import Simulation

        if carry is None:
            positions, box = self.initial["positions"], self.initial["box"]
            velocities = self.initial["velocities"]
        else:
            arrays = carry[0]
            positions, box = arrays["stage_positions"], arrays.get("stage_box")
            velocities = arrays["stage_velocities"]
        system = self.system
        if stage.restraints != "none":
            atoms = restrained_atoms(self.topology, stage.restraints)
            system = with_position_restraints(system, atoms, positions, stage.restraint_k)
        simulation = Simulation(system, stage_integrator(stage, stage.temperature[0]), positions, box,
                                velocities=velocities, seed=self.seed,
                                barostat=stage_barostat(stage, stage.temperature[1]),
                                backend=self.job.backend)
        if carry is not None:
            values = carry[1]["simulation"]
            # The random streams go on from the previous stage: the host's, and on a GPU the
            # per-particle ones (absent when the carry comes from a CPU run)
            simulation.set_random_state(values["rng"], carry[0].get("sim.device.random"))
            simulation.set_clock(values["step"], values["time"])
        return simulation, (np.array(positions, np.float64), None if box is None else np.array(box))

    def _ramp_temperature(self, stage, done: int) -> float:
        t0, t1 = stage.temperature
        if t0 == t1:
            return t1
        segment = max(1, stage.steps // RAMP_SEGMENTS)
        return t0 + (t1 - t0) * min(1.0, (done // segment) * segment / stage.steps)

    def _run_stage(self, index, carry, reporters, job_hash):
        """Run stage ``index``; return (stop signal name or None, carry for what follows)."""
        stage = self.job.stages[index]
        mid_stage = carry is not None and carry[1].get("in_stage", False)
        if mid_stage:
            arrays, values = carry
            stage_carry = ({"stage_positions": arrays["stage_reference"],
                            "stage_box": arrays.get("stage_reference_box"),
                            "stage_velocities": arrays["sim.velocities"]}, values)
            simulation, (reference, reference_box) = self._stage_simulation(stage, stage_carry)
            simulation.set_checkpoint_state(
                {k[4:]: v for k, v in arrays.items() if k.startswith("sim.")}, values["simulation"])
        else:
            simulation, (reference, reference_box) = self._stage_simulation(stage, carry)
            if stage.is_dynamics:
                self._stage_starts[index] = simulation.step_count
        self._stage_reference = (reference, reference_box)
        try:
            if not stage.is_dynamics:
                self._say(f"{stage.name}: minimizing (tolerance {stage.tolerance} kJ/mol/nm)")
                result = simulation.minimize(stage.tolerance, stage.max_iterations)
                self._say(f"{stage.name}: {result.iterations} iterations, energy "
                          f"{result.energy:.1f} kJ/mol")
                return None, self._carry(simulation, in_stage=False)
            return self._run_dynamics(index, stage, simulation, reporters, job_hash, mid_stage)
        except FloatingPointError as exc:   # BlowUpError
            raise self._blow_up_error(stage, simulation, exc) from exc
        except ConstraintError as exc:
            raise SimulationError(
                f"stage '{stage.name}' failed at step {simulation.step_count}: {exc}; the last "
                f"good checkpoint is {self.checkpoint_path}") from exc

    def _run_dynamics(self, index, stage, simulation, reporters, job_hash, mid_stage):
        first = self._stage_starts[index]
        last = first + stage.steps
        if not mid_stage:
            needs_velocities = stage.generate_velocities or not np.any(simulation.velocities)
            if needs_velocities:
                simulation.set_velocities_to_temperature(stage.temperature[0])
            self._say(f"{stage.name}: {stage.kind}, {stage.steps} steps of {stage.timestep * 1e3:g} fs "
                      f"({stage.length_ps:g} ps)")
        intervals = {"log": stage.report_every, "trajectory": stage.trajectory_every, "progress": 0}
        for reporter in reporters:
            reporter.begin_stage(stage, first, intervals[reporter.role])
        checkpoint_every = 0
        if self.job.checkpoint_interval_ps:
            checkpoint_every = max(1, round(self.job.checkpoint_interval_ps / stage.timestep))
        ramp_segment = max(1, stage.steps // RAMP_SEGMENTS) if stage.temperature[0] != stage.temperature[1] else 0
        last_checkpoint = time.monotonic()
        if not mid_stage:
            self._report_stage_start(simulation, reporters)
        while simulation.step_count < last:
            done = simulation.step_count - first
            if ramp_segment:
                simulation.set_temperature(self._ramp_temperature(stage, done))
            chunk = min(MAX_CHUNK, last - simulation.step_count)
            if checkpoint_every:
                chunk = min(chunk, checkpoint_every - done % checkpoint_every)
            if ramp_segment:
                chunk = min(chunk, ramp_segment - done % ramp_segment)
            simulation.run(chunk, reporters)  # reports to each reporter at its steps
            done = simulation.step_count - first
            stop = self._signals.received
            timed = time.monotonic() - last_checkpoint >= 60.0 * self.job.checkpoint_minutes
            stepped = checkpoint_every and done % checkpoint_every == 0
            if simulation.step_count < last and (stop or timed or stepped):
                self._checkpoint(index, self._carry(simulation, in_stage=True), reporters, job_hash)
                last_checkpoint = time.monotonic()
                if stop:
                    return stop, self._carry(simulation, in_stage=True)
        return None, self._carry(simulation, in_stage=False)

    def _report_stage_start(self, simulation, reporters):
        """Show the progress bar at a stage's first step (the other reporters have nothing to
        say there: the previous stage reported that state as its last)."""
        progress = [reporter for reporter in reporters if reporter.role == "progress"]
        if progress:
            state = simulation.state
            for reporter in progress:
                reporter.report(simulation, state)

    # -- carries and checkpoints -------------------------------------------------------------

    def _carry(self, simulation, in_stage: bool):
        """The state handed to the next stage (or saved in a checkpoint)."""
        sim_arrays, sim_values = simulation.get_checkpoint_state()
        arrays = {f"sim.{key}": value for key, value in sim_arrays.items()}
        arrays["stage_positions"] = sim_arrays["positions"]
        arrays["stage_velocities"] = sim_arrays["velocities"]
        if "box" in sim_arrays:
            arrays["stage_box"] = sim_arrays["box"]
        if in_stage:
            reference, reference_box = self._stage_reference
            arrays["stage_reference"] = reference
            if reference_box is not None:
                arrays["stage_reference_box"] = reference_box
        values = {"simulation": sim_values, "in_stage": in_stage}
        return arrays, values

    def _checkpoint(self, stage_index, carry, reporters, job_hash) -> None:
        arrays, values = carry
        values = dict(values, job_sha256=job_hash, seed=self.seed, stage_index=stage_index,
                      stage_starts=self._stage_starts)
        marks = []
        for reporter in reporters:
            marks.extend(reporter.mark())
        save_checkpoint(self.checkpoint_path, arrays, values, marks)

    def _blow_up_error(self, stage, simulation, exc) -> SimulationError:
        particles = getattr(exc, "particles", [])
        term = getattr(exc, "term", None)
        where = describe_atoms(self.topology, particles[:4]) if particles else "unknown atoms"
        checkpoint = (f"the last good checkpoint is {self.checkpoint_path}"
                      if os.path.exists(self.checkpoint_path) else "no checkpoint was written yet")
        return SimulationError(
            f"the simulation blew up in stage '{stage.name}' at step {simulation.step_count}: "
            f"largest forces on {where}; term responsible: {term or 'unknown'} "
            f"(overlapping atoms, a bad starting structure or too long a time step); {checkpoint}")

    # -- the end ----------------------------------------------------------------------------

    def _finish(self, carry) -> str | None:
        from openmm import app, unit

        arrays, values = carry
        sim = values["simulation"]
        positions = arrays["stage_positions"]
        box = arrays.get("stage_box")
        save_state(os.path.join(self.folder, "final_state.npz"), positions, box=box,
                   velocities=arrays["stage_velocities"], step=sim["step"], time=sim["time"])
        if box is not None:
            self.openmm_topology.setPeriodicBoxVectors(box)
        with atomic_write(os.path.join(self.folder, "final.pdb"), "w") as handle:
            app.PDBFile.writeFile(self.openmm_topology, np.asarray(positions) * unit.nanometer,
                                  handle, keepIds=True)
        summary = {"job": str(self.job.path) if self.job.path else None, "seed": self.seed,
                   "steps": int(sim["step"]), "time_ps": float(sim["time"]),
                   "atoms": int(self.system.n_particles), "backend": self.job.backend,
                   "stages": [stage.name for stage in self.job.stages]}
        with atomic_write(os.path.join(self.folder, "run.json"), "w") as handle:
            json.dump(summary, handle, indent=2)
        self._say(f"done: {sim['step']} steps, {sim['time']:.1f} ps; results in {self.folder}")
        if self.job.pockets:
            from bencao.analysis.pockets import analyse_pockets

            try:
                analyse_pockets(self.folder, workers=self.job.threads, stream=self.stream)
            except BencaoError as exc:
                self._say(f"pockets could not be found: {exc}")
        if not self.write_report:
            return None
        try:
            from bencao.report import build_report

            path = str(build_report(self.folder))
        except BencaoError as exc:
            self._say(f"the report could not be written: {exc}")
            return None
        self._say(f"report: {path}")
        return path
