"""One segment of one replica, the unit of work a worker runs: checkpoint in, steps, checkpoint and
energies out.

A segment is idempotent.  Its output checkpoint is written atomically under the run folder once
the steps are done; a segment whose output exists returns what it recorded, and a segment
interrupted anywhere (a worker killed, a machine lost) reruns from its input checkpoint, first
cutting the replica's log and trajectory back to the lengths recorded there, and so ends
bit-identical to a run that was never disturbed.  Nothing lives in the scheduler.

Layout of a replica's folder (``RUN/replicas/replicaNN/``): ``log.csv``, ``trajectory.xtc`` and
``segments/NNNNNN.npz`` (the latest two segment checkpoints are kept).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from bencao.errors import ConstraintError, InputFileError
from bencao.io.checkpoint import load_checkpoint, save_checkpoint

#: The state every replica starts the ensemble stage from (written by the driver).
START = "start.npz"

#: Segment checkpoints kept per replica: the latest, and the one before it in case the latest
#: is found damaged.
KEEP_SEGMENTS = 2


def replica_dir(run_dir, replica: int) -> str:
    """The folder of one replica: log, trajectory and segment checkpoints."""
    return os.path.join(os.fspath(run_dir), "replicas", f"replica{replica:02d}")


def segment_path(run_dir, replica: int, segment: int) -> str:
    """The checkpoint a segment writes when it is done."""
    return os.path.join(replica_dir(run_dir, replica), "segments", f"{segment:06d}.npz")


def replica_seed(seed: int, replica: int) -> int:
    """The random seed of one replica, derived from the run's seed (independent streams)."""
    return int(np.random.SeedSequence([int(seed), int(replica)]).generate_state(1, np.uint32)[0])


@dataclass(frozen=True)
class SegmentTask:
    """What a worker needs to run one segment (small, picklable; everything else is on disk).

    Attributes
    ----------
    run_dir : str
        The run folder (on a file system the workers share).
    job : bencao.jobs.Job
        The job; its last stage and ``ensemble`` say what a segment runs.
    seed : int
        The run's seed.
    replica : int
    segment : int
        0-based; segment s ends at step start + (s + 1) * segment_steps.
    state : int
        The state (temperature, REST2 scale) the replica runs this segment in.
    previous_state : int or None
        The state of its previous segment (None for the first): a change means an exchange
        was accepted.
    cross_states : tuple of int
        Other states whose potential energy of the final configuration is needed (REST2
        neighbours).
    threads : int or None
        Numba threads for this segment.
    """

    run_dir: str
    job: object
    seed: int
    replica: int
    segment: int
    state: int
    previous_state: int | None
    cross_states: tuple = ()
    threads: int | None = None


def recorded_energies(path) -> dict:
    """The energies a finished segment recorded (raises InputFileError if it is damaged)."""
    _, values, _ = load_checkpoint(path)
    return values["energies"]


def run_segment(task: SegmentTask) -> dict:
    """Run one segment (or return what it recorded if it already ran).

    Returns
    -------
    dict
        ``potential`` (kJ/mol) and ``volume`` (nm^3 or None) of the final configuration, and
        ``cross``: {state: potential energy under that state's Hamiltonian, kJ/mol}.

    Raises
    ------
    bencao.jobs.runner.SimulationError
        If the replica blows up (naming the replica, the atoms and the term).
    bencao.errors.InputFileError
        If the input checkpoint is missing or damaged (naming it).
    """
    out = segment_path(task.run_dir, task.replica, task.segment)
    if os.path.exists(out):
        try:
            return recorded_energies(out)
        except InputFileError:
            os.unlink(out)   # damaged after it was written: run it again
    if task.threads:
        import numba

        numba.set_num_threads(min(int(task.threads), numba.config.NUMBA_NUM_THREADS))
    from bencao.ensemble.context import replica_context

    context = replica_context(task.run_dir, task.job)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    simulation = _simulation(task, context)
    reporters = context.reporters(task.replica, append=task.segment > 0)
    try:
        _advance(task, context, simulation, reporters)
        energies = _energies(task, context, simulation)
        marks = [mark for reporter in reporters for mark in reporter.mark()]
    finally:
        for reporter in reporters:
            reporter.close()
    arrays, values = simulation.get_checkpoint_state()
    save_checkpoint(out, arrays, {"simulation": values, "replica": task.replica,
                                  "segment": task.segment, "state": task.state,
                                  "energies": energies}, marks)
    stale = segment_path(task.run_dir, task.replica, task.segment - KEEP_SEGMENTS)
    if task.segment >= KEEP_SEGMENTS and os.path.exists(stale):
        os.unlink(stale)
    return energies


def _simulation(task: SegmentTask, context):
    """The replica's Simulation at the start of the segment, in the segment's state."""
    ensemble = task.job.ensemble
    temperature = ensemble.temperatures[task.state]
    simulation = context.simulation(task.state, replica_seed(task.seed, task.replica))
    if task.segment == 0:
        simulation.set_clock(context.start["step"], context.start["time"])
        simulation.set_velocities_to_temperature(temperature)
        return simulation
    previous = segment_path(task.run_dir, task.replica, task.segment - 1)
    arrays, values, marks = load_checkpoint(previous)
    for mark in marks:
        mark.restore()
    simulation_values = values["simulation"]
    changed = task.previous_state is not None and task.previous_state != task.state
    if changed and ensemble.exchange == "rest2":
        # The cached forces belong to the previous state's Hamiltonian
        simulation_values = dict(simulation_values, cached={})
    simulation.set_checkpoint_state(arrays, simulation_values)
    if changed:
        old = ensemble.temperatures[task.previous_state]
        if old != temperature:
            # Temperature exchange: velocities rescaled to the new temperature (Sugita and
            # Okamoto 1999), so the swap needs no kinetic energy in its acceptance test
            simulation.velocities = simulation.velocities * math.sqrt(temperature / old)
        simulation.set_temperature(temperature)
    return simulation


def _advance(task: SegmentTask, context, simulation, reporters) -> None:
    """The segment's steps, with the reporters due along the way."""
    from bencao.jobs.runner import MAX_CHUNK

    last = context.start["step"] + (task.segment + 1) * task.job.ensemble.segment_steps
    try:
        while simulation.step_count < last:
            simulation.run(min(MAX_CHUNK, last - simulation.step_count), reporters)
    except FloatingPointError as exc:   # BlowUpError
        raise context.blow_up_error(task, simulation, exc) from exc
    except ConstraintError as exc:
        raise context.failure_error(task, simulation, exc) from exc


def _energies(task: SegmentTask, context, simulation) -> dict:
    state = simulation.state
    positions, box = simulation.positions, simulation.box
    cross = {str(k): context.potential_energy(k, positions, box) for k in task.cross_states}
    return {"potential": float(state.potential_energy), "volume": state.volume, "cross": cross}
