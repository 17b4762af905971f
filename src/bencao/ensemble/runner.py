"""The ensemble driver: set-up once, then rounds of segments on the workers and exchanges between.

A run folder of an ensemble job holds ``job.toml``, ``topology.pdb``, ``setup/`` (the stages
before the last, run once, as ``bencao run`` would), ``start.npz`` (where every replica starts),
``replicas/replicaNN/`` (log, trajectory, segment checkpoints), ``exchanges.csv``,
``ensemble.json`` (the driver's whole state: seed, rounds done, which state each replica held in
each segment) and at the end ``states/`` (trajectories and logs demultiplexed per state),
``run.json`` and ``report.html``.

The driver holds nothing that is not on disk: killed at any moment, ``--resume`` reads
``ensemble.json``, cuts ``exchanges.csv`` back to the length recorded there, reuses the segments
that finished and reruns the others, and ends bit-identical to an undisturbed run.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pathlib
import secrets
import shutil
import sys
import time

from bencao.ensemble.cluster import open_executor
from bencao.ensemble.exchange import COLUMNS, attempt_exchanges, cross_states
from bencao.ensemble.segment import (
    START,
    SegmentTask,
    recorded_energies,
    run_segment,
    segment_path,
)
from bencao.errors import InputFileError, OutputError
from bencao.io.files import atomic_write, ensure_output_folder, load_state, save_state
from bencao.jobs.runner import RunResult, StopSignals, text_sha256

STATE_FILE = "ensemble.json"
EXCHANGES = "exchanges.csv"
STATE_FORMAT = "bencao.Ensemble"


def run_setup(job) -> tuple[str | None, str]:
    """Run the stages before the ensemble's (a task: it may run on a worker); resumes if a
    previous attempt was interrupted.  Returns (the signal that stopped it or None, what it
    said)."""
    from bencao.jobs.runner import JobRunner

    stream = io.StringIO()
    folder = str(job.output_dir)
    if os.path.exists(os.path.join(folder, "run.json")):
        return None, ""
    result = JobRunner(job, resume=True, stream=stream, write_report=False).run()
    # the set-up's own opening and closing lines would read as the ensemble's
    said = "\n".join(line for line in stream.getvalue().splitlines()
                     if not line.startswith(("no checkpoint in", "done:")))
    return (None if result.completed else result.stopped_by or "SIGINT"), said


class EnsembleRunner:
    """Run a job with an ``[ensemble]`` table.

    Parameters
    ----------
    job : bencao.jobs.Job
        The validated job (``job.ensemble`` set).
    resume, overwrite : bool
        As for :class:`bencao.jobs.runner.JobRunner`.
    stream : file-like
        Where messages go (stderr by default).
    write_report : bool
        Write ``report.html`` at the end.
    workers, threads_per_worker, scheduler
        Where segments run (see :func:`bencao.ensemble.cluster.open_executor`).
    """

    def __init__(self, job, resume: bool = False, overwrite: bool = False, stream=None,
                 write_report: bool = True, workers: int | None = None,
                 threads_per_worker: int | None = None, scheduler: str | None = None):
        self.job = job
        self.ensemble = job.ensemble
        self.stage = job.stages[-1]
        self.resume = resume
        self.overwrite = overwrite
        self.stream = stream if stream is not None else sys.stderr
        self.write_report = write_report
        self.cluster = {"workers": workers, "threads_per_worker": threads_per_worker,
                        "scheduler": scheduler}
        # Numba threads of a segment: as asked; one per worker of a local cluster by default;
        # the process's own when segments run here; the workers' own on a running scheduler
        self.threads = threads_per_worker
        if threads_per_worker is None and scheduler is None:
            self.threads = job.threads if workers == 0 else 1
        self.folder = str(job.output_dir)
        self.state_path = os.path.join(self.folder, STATE_FILE)
        self.rounds = self.stage.steps // self.ensemble.segment_steps

    def _say(self, message: str) -> None:
        print(message, file=self.stream, flush=True)

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> RunResult:
        """Run (or resume) the ensemble to its end, or until SIGINT/SIGTERM."""
        self._check_inputs()
        resuming = self._open_folder()
        ensemble = self.ensemble
        with open_executor(ensemble.replicas, **self.cluster) as executor, StopSignals() as signals:
            self._say(f"ensemble: {ensemble.replicas} replicas, exchange '{ensemble.exchange}', "
                      f"{self.rounds} segments of {self._segment_ps:g} ps, on {executor.description}")
            stopped = self._setup(executor)
            if stopped:
                return self._stopped(stopped)
            if resuming:
                self._repair(executor)
            clock = (time.monotonic(), self.state["rounds_done"])
            self._timing = [0.0, 0]   # seconds in rounds and rounds run in this session
            while self.state["rounds_done"] < self.rounds:
                started = time.monotonic()
                self._round(executor)
                self._timing[0] += time.monotonic() - started
                self._timing[1] += 1
                clock = self._progress(clock)
                if signals.received:
                    return self._stopped(signals.received)
        return self._finish()

    def _check_inputs(self) -> None:
        """Read the prepared system once here, so that a damaged file is named before any work
        is handed to the workers."""
        from bencao.system import System

        system_dir = str(self.job.system_dir)
        try:
            system = System.load(os.path.join(system_dir, "system.npz"))
        except ValueError as exc:
            raise InputFileError(str(exc)) from exc
        state = load_state(os.path.join(system_dir, "state.npz"))
        if len(state["positions"]) != system.n_particles:
            raise InputFileError(f"{system_dir}: state.npz has {len(state['positions'])} positions "
                                 f"but system.npz {system.n_particles} particles; prepare it again")
        if not os.path.exists(os.path.join(system_dir, "structure.pdb")):
            raise InputFileError(f"{system_dir}: no structure.pdb (the replicas' trajectories need "
                                 "its topology); prepare the system with bencao prepare")

    @property
    def _segment_ps(self) -> float:
        return self.ensemble.segment_steps * self.stage.timestep

    def _open_folder(self) -> bool:
        """Create or reopen the run folder; return True when resuming."""
        ensure_output_folder(self.folder)
        exists = os.path.exists(self.state_path)
        if exists and not self.resume and not self.overwrite:
            raise OutputError(f"{self.folder} already holds a run ({STATE_FILE}); continue it with "
                              "--resume or start again with --overwrite")
        job_hash = text_sha256(self.job.text)
        if exists and self.resume:
            self.state = self._read_state()
            if self.state["job_sha256"] != job_hash:
                raise InputFileError(
                    f"the job file differs from the one {self.state_path} was written with; resume "
                    "with the job file as it was (a copy is in the run folder as job.toml)")
            self._cut_exchanges(self.state["exchanges_size"])
            self._say(f"resuming {self.folder} after segment {self.state['rounds_done']} "
                      f"of {self.rounds}")
            return True
        if self.resume:
            self._say(f"no ensemble run in {self.folder}: starting the job from the beginning")
        for name in ("replicas", "states", "setup"):
            shutil.rmtree(os.path.join(self.folder, name), ignore_errors=True)
        for name in (START, EXCHANGES, "run.json"):
            if os.path.exists(os.path.join(self.folder, name)):
                os.unlink(os.path.join(self.folder, name))
        seed = int(self.job.seed) if self.job.seed is not None else secrets.randbits(31)
        with atomic_write(os.path.join(self.folder, "job.toml"), "w") as handle:
            handle.write(self.job.text)
        shutil.copyfile(os.path.join(self.job.system_dir, "structure.pdb"),
                        os.path.join(self.folder, "topology.pdb"))
        with atomic_write(os.path.join(self.folder, EXCHANGES), "w") as handle:
            handle.write(",".join(COLUMNS) + "\n")
        self.state = {"format": STATE_FORMAT, "version": 1, "job_sha256": job_hash, "seed": seed,
                      "rounds_done": 0, "assignments": [list(range(self.ensemble.replicas))],
                      "exchanges_size": os.path.getsize(os.path.join(self.folder, EXCHANGES))}
        self._write_state()
        return False

    def _read_state(self) -> dict:
        try:
            with open(self.state_path, encoding="utf-8") as handle:
                state = json.load(handle)
        except (OSError, ValueError) as exc:
            raise InputFileError(f"{self.state_path}: not a readable ensemble state ({exc})") from exc
        if state.get("format") != STATE_FORMAT:
            raise InputFileError(f"{self.state_path}: not a bencao ensemble state file")
        return state

    def _write_state(self) -> None:
        with atomic_write(self.state_path, "w") as handle:
            json.dump(self.state, handle)

    def _cut_exchanges(self, size: int) -> None:
        path = os.path.join(self.folder, EXCHANGES)
        with open(path, "r+b") as handle:
            handle.truncate(size)

    # -- set-up -----------------------------------------------------------------------------

    def _setup(self, executor) -> str | None:
        """Run the stages before the last once and write ``start.npz``; the name of the signal
        that stopped the set-up, or None."""
        start = os.path.join(self.folder, START)
        if os.path.exists(start):
            return None
        if len(self.job.stages) > 1:
            setup = dataclasses.replace(self.job, stages=self.job.stages[:-1], ensemble=None,
                                        output_dir=pathlib.Path(self.folder, "setup"), seed=self.state["seed"])
            self._say(f"set-up: {', '.join(s.name for s in setup.stages)} (once, in setup/)")
            stopped, said = executor.map(run_setup, [setup])[0]
            if said:
                self._say(said)
            if stopped:
                return stopped
            initial = load_state(os.path.join(self.folder, "setup", "final_state.npz"))
        else:
            initial = load_state(os.path.join(self.job.system_dir, "state.npz"))
            initial["step"], initial["time"] = 0, 0.0
        save_state(start, initial["positions"], box=initial["box"],
                   velocities=initial["velocities"], step=initial["step"], time=initial["time"])
        return None

    def _repair(self, executor) -> None:
        """Rerun the latest finished segment of any replica whose checkpoint is damaged."""
        done = self.state["rounds_done"]
        if done == 0:
            return
        broken = []
        for replica in range(self.ensemble.replicas):
            path = segment_path(self.folder, replica, done - 1)
            try:
                recorded_energies(path)
            except InputFileError as exc:
                self._say(f"{exc}; rerunning that segment from the previous checkpoint")
                if os.path.exists(path):
                    os.unlink(path)
                broken.append(replica)
        if broken:
            executor.map(run_segment, [self._task(replica, done - 1) for replica in broken])

    # -- rounds -----------------------------------------------------------------------------

    def _task(self, replica: int, segment: int) -> SegmentTask:
        assignments = self.state["assignments"]
        state = assignments[segment][replica]
        previous = assignments[segment - 1][replica] if segment > 0 else None
        return SegmentTask(self.folder, self.job, self.state["seed"], replica, segment, state,
                           previous, cross_states(self.ensemble, state), self.threads)

    def _round(self, executor) -> None:
        """Run one segment of every replica, then decide the exchanges and record them."""
        segment = self.state["rounds_done"]
        tasks = [self._task(replica, segment) for replica in range(self.ensemble.replicas)]
        energies = executor.map(run_segment, tasks)
        time_ps = self._start_time() + (segment + 1) * self._segment_ps
        pressure = self.stage.pressure if self.stage.kind == "npt" else None
        assignment, attempts = attempt_exchanges(
            self.ensemble, self.state["assignments"][segment], energies, segment, time_ps,
            self.state["seed"], pressure)
        path = os.path.join(self.folder, EXCHANGES)
        with open(path, "a", encoding="utf-8") as handle:
            handle.writelines(attempt.csv_row() + "\n" for attempt in attempts)
            handle.flush()
            os.fsync(handle.fileno())
        self.state["assignments"].append(assignment)
        self.state["rounds_done"] = segment + 1
        self.state["exchanges_size"] = os.path.getsize(path)
        self._write_state()

    def _start_time(self) -> float:
        if not hasattr(self, "_start"):
            self._start = load_state(os.path.join(self.folder, START))
        return self._start["time"]

    def _progress(self, clock):
        then, rounds_then = clock
        now, done = time.monotonic(), self.state["rounds_done"]
        if now - then < 10.0 and done < self.rounds:
            return clock
        ns = (done - rounds_then) * self._segment_ps * self.ensemble.replicas * 1e-3
        speed = ns / max(now - then, 1e-9) * 86400.0
        self._say(f"segment {done}/{self.rounds}: {done * self._segment_ps:g} ps per replica, "
                  f"{speed:.2f} replica-ns/day")
        return (now, done)

    def _pockets(self) -> None:
        """``pockets = true``: pockets along the first state's demultiplexed trajectory."""
        from bencao.analysis.pockets import analyse_pockets
        from bencao.errors import BencaoError

        trajectory = os.path.join(self.folder, "states", f"state00.{self.job.trajectory_format}")
        try:
            analyse_pockets(trajectory, topology=os.path.join(self.folder, "topology.pdb"),
                            output=os.path.join(self.folder, "pockets"), stream=self.stream)
        except BencaoError as exc:
            self._say(f"pockets could not be found: {exc}")

    def _stopped(self, signal_name: str) -> RunResult:
        self._say(f"stopped by {signal_name} after segment {self.state['rounds_done']}; continue "
                  "with: bencao run JOB --resume")
        done = self.state["rounds_done"]
        started = os.path.exists(os.path.join(self.folder, START))
        time_ps = self._start_time() + done * self._segment_ps if started else 0.0
        return RunResult(self.folder, False, signal_name, done * self.ensemble.segment_steps,
                         time_ps, None)

    # -- the end ----------------------------------------------------------------------------

    def _finish(self) -> RunResult:
        from bencao.ensemble.demux import demultiplex

        demultiplex(self.folder, self.job, self.state["assignments"])
        start = self._start_time()
        end_time = start + self.rounds * self._segment_ps
        steps = self._start["step"] + self.stage.steps
        summary = {"job": str(self.job.path) if self.job.path else None, "seed": self.state["seed"],
                   "replicas": self.ensemble.replicas, "exchange": self.ensemble.exchange,
                   "temperatures": list(self.ensemble.temperatures),
                   "scales": list(self.ensemble.scales), "segments": self.rounds,
                   "steps": steps, "time_ps": end_time, "backend": self.job.backend,
                   "stages": [stage.name for stage in self.job.stages], "ensemble": True}
        seconds, rounds = getattr(self, "_timing", (0.0, 0))
        speed = ""
        if rounds and seconds > 0:
            summary["replica_ns_per_day"] = (rounds * self._segment_ps * self.ensemble.replicas
                                             * 1e-3 / seconds * 86400.0)
            speed = f" at {summary['replica_ns_per_day']:.1f} replica-ns/day"
        with atomic_write(os.path.join(self.folder, "run.json"), "w") as handle:
            json.dump(summary, handle, indent=2)
        self._say(f"done: {self.ensemble.replicas} replicas x {self.stage.length_ps:g} ps{speed}; "
                  f"results in {self.folder} (replicas/, states/, {EXCHANGES})")
        if self.job.pockets and self.stage.trajectory_every:
            self._pockets()
        report = None
        if self.write_report:
            from bencao.errors import BencaoError
            from bencao.report.ensemble import build_ensemble_report

            try:
                report = str(build_ensemble_report(self.folder))
                self._say(f"report: {report}")
            except BencaoError as exc:
                self._say(f"the report could not be written: {exc}")
        return RunResult(self.folder, True, None, steps, end_time, report)


__all__ = ["EnsembleRunner", "run_setup"]
