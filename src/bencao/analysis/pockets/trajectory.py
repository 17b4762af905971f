"""``bencao pockets``: pockets in every frame of a trajectory, tracked, counted on a grid, written.

Frames are read in chunks (memory stays flat however long the trajectory), superposed on the
first frame's C-alpha atoms, and handed to worker processes; the tracking and the grid, which
need the frames in order, stay here.  Outputs in ``OUT/``: ``pockets.csv`` (every pocket of every
frame), ``tracks.csv`` (every tracked pocket), ``pocket_frequency.dx`` and ``pockets.json``.
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import sys
import time

import numpy as np

from bencao.analysis.pockets.atoms import pocket_atoms
from bencao.analysis.pockets.detect import find_pockets
from bencao.analysis.pockets.grid import FrequencyGrid
from bencao.analysis.pockets.tracking import Tracker
from bencao.errors import InputFileError
from bencao.io.files import atomic_write, ensure_output_folder

CHUNK = 50              # frames read at a time
POCKET_COLUMNS = ("frame", "time_ps", "pocket", "rank", "score", "druggability", "volume_nm3",
                  "center_x", "center_y", "center_z", "residues")
TRACK_COLUMNS = ("pocket", "first_frame", "frames_open", "open_fraction", "mean_volume_nm3",
                 "max_volume_nm3", "mean_druggability", "max_druggability", "cryptic", "residues")


def resolve_inputs(source, topology=None) -> tuple[str, str | None, str]:
    """(trajectory or structure, topology or None, default output folder) from what the user
    named: a run folder, a structure, or a trajectory with ``--top``."""
    source = os.fspath(source)
    if os.path.isdir(source):
        from bencao.report.analysis import find_trajectory

        top = os.path.join(source, "topology.pdb")
        if not os.path.exists(top):
            raise InputFileError(f"{source}: no topology.pdb (is it a folder written by bencao run?)")
        trajectory = find_trajectory(source)
        if trajectory is None and os.path.exists(os.path.join(source, "ensemble.json")):
            # an ensemble: the first state's demultiplexed trajectory
            candidates = [os.path.join(source, "states", f"state00.{ext}") for ext in ("xtc", "dcd")]
            trajectory = next((c for c in candidates if os.path.exists(c)), None)
        if trajectory is None:
            raise InputFileError(f"{source}: no trajectory.xtc or trajectory.dcd to find pockets in")
        return os.fspath(trajectory), top, os.path.join(source, "pockets")
    if not os.path.exists(source):
        raise InputFileError(f"{source}: no such file or folder")
    stem = os.path.splitext(source)[0]
    if topology is None and source.lower().endswith((".xtc", ".dcd", ".trr", ".nc", ".h5")):
        raise InputFileError(f"{source}: a trajectory needs its topology: --top TOPOLOGY.pdb")
    return source, topology, f"{stem}_pockets"


def _frames(path, topology, stride: int):
    """Chunks of the trajectory (MDTraj), with one-line errors for what users get wrong."""
    import mdtraj

    try:
        if topology is None:
            yield mdtraj.load(path)[::stride]
            return
        yield from mdtraj.iterload(path, top=topology, chunk=CHUNK, stride=stride)
    except (ValueError, OSError, IndexError) as exc:
        n = mdtraj.load_topology(topology).n_atoms if topology else None
        detail = f" (does it match the {n} atoms of {topology}?)" if n is not None else ""
        raise InputFileError(f"{path}: cannot be read as a trajectory{detail}: {exc}") from exc


_ATOMS = None


def _use_atoms(atoms) -> None:
    global _ATOMS
    _ATOMS = atoms


def _init_worker(atoms) -> None:
    import numba

    numba.set_num_threads(1)   # one process per core: no threads inside
    _use_atoms(atoms)


def _detect(positions):
    return find_pockets(positions, _ATOMS)


def analyse_pockets(source, topology=None, output=None, stride: int = 1, workers: int | None = None,
                    stream=None) -> dict:
    """Find and track pockets along a trajectory (or in one structure) and write the outputs.

    Parameters
    ----------
    source : str
        A run folder, a structure (PDB, mmCIF) or a trajectory (with ``topology``).
    topology : str or None
        Topology of a trajectory (PDB, PSF, ...).
    output : str or None
        Output folder; default ``RUN/pockets`` or ``<source stem>_pockets``.
    stride : int
        Use every ``stride``-th frame.
    workers : int or None
        Processes; None uses every core, 1 works in this process.
    stream : file-like
        Progress and messages (stderr).

    Returns
    -------
    dict
        The summary also written to ``pockets.json``.
    """
    stream = stream if stream is not None else sys.stderr
    path, top, default_output = resolve_inputs(source, topology)
    output = ensure_output_folder(output or default_output)
    workers = workers or (os.cpu_count() or 1)
    progress = _Progress(stream)
    start = time.perf_counter()
    rows, tracker, grid, atoms, reference = [], Tracker(), None, None, None
    n_frames = 0
    pool = None
    try:
        for chunk in _frames(path, top, stride):
            if atoms is None:
                atoms = pocket_atoms(chunk.topology, path if top is None else top)
                reference = chunk[0]
                grid = FrequencyGrid.around(reference.xyz[0][atoms.indices])
                if workers > 1:
                    pool = concurrent.futures.ProcessPoolExecutor(
                        workers, mp_context=multiprocessing.get_context("spawn"),
                        initializer=_init_worker, initargs=(atoms,))
                else:
                    _use_atoms(atoms)
            if len(atoms.backbone) >= 3:
                chunk.superpose(reference, 0, atom_indices=atoms.indices[atoms.backbone])
            positions = [np.asarray(xyz, np.float64) for xyz in chunk.xyz]
            results = pool.map(_detect, positions) if pool else map(_detect, positions)
            for offset, pockets in enumerate(results):
                frame = (n_frames + offset) * stride
                numbers = tracker.add_frame(frame, pockets)
                grid.add_frame(np.concatenate([p.spheres for p in pockets]) if pockets else ())
                time_ps = float(chunk.time[offset]) if chunk.time is not None else float("nan")
                rows.extend(_pocket_row(frame, time_ps, number, rank, pocket)
                            for rank, (number, pocket) in enumerate(zip(numbers, pockets), start=1))
            n_frames += len(chunk)
            progress.update(n_frames, start)
    finally:
        progress.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    if n_frames == 0:
        raise InputFileError(f"{path}: the trajectory holds no frames")
    seconds = time.perf_counter() - start
    tracks = tracker.ranked(n_frames)
    _write_csv(os.path.join(output, "pockets.csv"), POCKET_COLUMNS, rows)
    _write_csv(os.path.join(output, "tracks.csv"), TRACK_COLUMNS,
               [_track_row(track, n_frames) for track in tracks])
    grid.write_dx(os.path.join(output, "pocket_frequency.dx"))
    ca = atoms.indices[atoms.backbone] if len(atoms.backbone) else atoms.indices
    summary = {"source": os.path.abspath(path), "topology": top and os.path.abspath(top),
               # where frame 0's C-alpha atoms are (nm): pocket centres are in that frame
               "reference_ca_centroid": [float(v) for v in reference.xyz[0][ca].mean(axis=0)],
               "frames": n_frames, "stride": stride, "pockets": len(rows), "tracks": len(tracks),
               "cryptic": sum(track.cryptic(n_frames) for track in tracks), "seconds": seconds,
               "seconds_per_frame": seconds / n_frames, "workers": workers}
    with atomic_write(os.path.join(output, "pockets.json"), "w") as handle:
        json.dump(summary, handle, indent=2)
    print(f"pockets: {n_frames} frames, {len(tracks)} tracked pockets ({summary['cryptic']} cryptic "
          f"candidates), {seconds / n_frames:.3f} s per frame; results in {output}",
          file=stream, flush=True)
    summary["output"] = output
    return summary


def _pocket_row(frame, time_ps, number, rank, pocket) -> list:
    x, y, z = pocket.centre
    return [frame, f"{time_ps:.3f}", number, rank, f"{pocket.score:.4f}",
            f"{pocket.druggability:.4f}", f"{pocket.volume:.4f}", f"{x:.4f}", f"{y:.4f}",
            f"{z:.4f}", " ".join(pocket.residues)]


def _track_row(track, n_frames: int) -> list:
    return [track.number, track.frames[0], len(track.frames),
            f"{track.open_fraction(n_frames):.4f}", f"{np.mean(track.volumes):.4f}",
            f"{np.max(track.volumes):.4f}", f"{np.mean(track.druggability):.4f}",
            f"{np.max(track.druggability):.4f}", int(track.cryptic(n_frames)),
            " ".join(sorted(track.residues, key=_residue_order))]


def _residue_order(label: str):
    name_number, _, chain = label.partition(":")
    digits = "".join(c for c in name_number[3:] if c.isdigit() or c == "-")
    return (chain, int(digits) if digits.lstrip("-").isdigit() else 0, label)


def _write_csv(path, columns, rows) -> None:
    with atomic_write(path, "w") as handle:
        handle.write(",".join(columns) + "\n")
        for row in rows:
            *numbers, residues = row
            handle.write(",".join(str(v) for v in numbers) + f',"{residues}"\n')


class _Progress:
    """A rich progress line on a terminal; a line per chunk of frames in a log file."""

    def __init__(self, stream):
        self.stream = stream
        self._bar = None
        if getattr(stream, "isatty", lambda: False)():
            from rich.console import Console
            from rich.progress import (
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(SpinnerColumn(), TextColumn("pockets: {task.description}"),
                                 TimeElapsedColumn(), console=Console(file=stream), transient=True)
            self._task = self._bar.add_task("reading frames", total=None)
            self._bar.start()

    def update(self, frames: int, start: float) -> None:
        per_frame = (time.perf_counter() - start) / frames
        text = f"{frames} frames, {per_frame:.3f} s per frame"
        if self._bar is not None:
            self._bar.update(self._task, description=text)
        else:
            print(f"pockets: {text}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
