"""Trajectories and logs per state: each replica's frames sorted by the state it held.

A replica's folder follows one configuration as it walks the ladder; the science is usually asked
of one state (the 300 K ensemble, the unscaled Hamiltonian).  ``states/stateNN.xtc`` and
``states/stateNN.csv`` hold, for every frame and log row, the replica that was in state NN then.
"""

from __future__ import annotations

import csv
import os

import numpy as np

from bencao.ensemble.segment import START, replica_dir
from bencao.io.files import atomic_write, load_state


def segment_of(times, start_time: float, segment_ps: float, segments: int) -> np.ndarray:
    """The segment each time (ps) falls in: a frame at a segment's last step belongs to it."""
    position = (np.asarray(times, np.float64) - start_time) / segment_ps
    index = np.ceil(position - 1e-6).astype(np.int64) - 1
    return np.clip(index, 0, segments - 1)


def demultiplex(run_dir, job, assignments) -> list[str]:
    """Write ``states/stateNN.<fmt>`` and ``states/stateNN.csv`` for every state.

    Parameters
    ----------
    run_dir : str
        The run folder.
    job : bencao.jobs.Job
        The ensemble job.
    assignments : list of list of int
        ``assignments[s][r]``: the state of replica r during segment s (``ensemble.json``).

    Returns
    -------
    list of str
        The files written.
    """
    ensemble = job.ensemble
    stage = job.stages[-1]
    segments = stage.steps // ensemble.segment_steps
    segment_ps = ensemble.segment_steps * stage.timestep
    start_time = load_state(os.path.join(run_dir, START))["time"]
    table = np.array(assignments[:segments], np.int64)          # (segments, replicas)
    folder = os.path.join(run_dir, "states")
    os.makedirs(folder, exist_ok=True)
    written = _demultiplex_logs(run_dir, ensemble.replicas, table, start_time, segment_ps, folder)
    if stage.trajectory_every:
        written += _demultiplex_trajectories(run_dir, job, table, start_time, segment_ps, folder)
    return written


def read_replica_log(run_dir, replica: int) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a replica's log.csv."""
    with open(os.path.join(replica_dir(run_dir, replica), "log.csv"), encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def _demultiplex_logs(run_dir, replicas, table, start_time, segment_ps, folder) -> list[str]:
    per_state: dict[int, list] = {k: [] for k in range(replicas)}
    header = None
    for replica in range(replicas):
        header, rows = read_replica_log(run_dir, replica)
        times = [float(row[header.index("time_ps")]) for row in rows]
        states = table[segment_of(times, start_time, segment_ps, len(table)), replica]
        for row, time_ps, state in zip(rows, times, states):
            per_state[int(state)].append((time_ps, replica, row))
    written = []
    for state, entries in per_state.items():
        entries.sort(key=lambda entry: (entry[0], entry[1]))
        path = os.path.join(folder, f"state{state:02d}.csv")
        with atomic_write(path, "w") as handle:
            handle.write(",".join(["replica", *(header or [])]) + "\n")
            for _, replica, row in entries:
                handle.write(",".join([str(replica), *row]) + "\n")
        written.append(path)
    return written


def _demultiplex_trajectories(run_dir, job, table, start_time, segment_ps, folder) -> list[str]:
    import mdtraj

    fmt = job.trajectory_format
    topology = mdtraj.load_topology(os.path.join(run_dir, "topology.pdb"))
    trajectories = [mdtraj.load(os.path.join(replica_dir(run_dir, r), f"trajectory.{fmt}"),
                                top=topology) for r in range(len(table[0]))]
    count = min(len(t) for t in trajectories)
    if count == 0:
        return []
    reference = trajectories[0][:count]
    times = reference.time
    if fmt == "dcd" or not np.all(np.isfinite(times)):
        # DCD frames carry no time: they are evenly spaced from the stage's first report
        step = job.stages[-1].trajectory_every * job.stages[-1].timestep
        times = start_time + step * np.arange(1, count + 1)
    frame_states = table[segment_of(times, start_time, segment_ps, len(table))]  # (frames, replicas)
    written = []
    for state in range(len(table[0])):
        xyz = np.empty_like(reference.xyz)
        boxes = None if reference.unitcell_vectors is None else np.empty_like(reference.unitcell_vectors)
        for replica, trajectory in enumerate(trajectories):
            mask = frame_states[:, replica] == state
            xyz[mask] = trajectory.xyz[:count][mask]
            if boxes is not None:
                boxes[mask] = trajectory.unitcell_vectors[:count][mask]
        out = mdtraj.Trajectory(xyz, topology, time=times)
        if boxes is not None:
            out.unitcell_vectors = boxes
        path = os.path.join(folder, f"state{state:02d}.{fmt}")
        tmp = os.path.join(folder, f".tmp-state{state:02d}.{fmt}")
        out.save(tmp, force_overwrite=True)
        os.replace(tmp, path)
        written.append(path)
    return written

