"""Checkpoint files: everything a run needs to continue bit-identically, written atomically."""

from __future__ import annotations

import os

import numpy as np

from bencao.io.files import load_npz, save_npz
from bencao.reporters.base import FileMark

CHECKPOINT_FORMAT = "bencao.Checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(path, arrays: dict, values: dict, marks: list[FileMark]) -> None:
    """Write a checkpoint (temporary file, fsync, rename: the previous one survives any failure).

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint file (``.npz``).
    arrays : dict[str, ndarray]
        Arrays of the simulation state (positions, velocities, box, neighbour lists...).
    values : dict
        JSON-able values: the stage, the clock, the random stream, the barostat...
    marks : list of FileMark
        Lengths and first bytes of the output files at this moment (paths stored relative to
        the checkpoint's folder so a run folder can be moved).
    """
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    arrays = dict(arrays)
    mark_list = []
    for index, mark in enumerate(marks):
        arrays[f"mark{index}.head"] = np.frombuffer(mark.head, dtype=np.uint8)
        mark_list.append({"path": os.path.relpath(mark.path, folder), "size": mark.size})
    header = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "values": values,
              "marks": mark_list}
    save_npz(path, arrays, header)


def load_checkpoint(path) -> tuple[dict, dict, list[FileMark]]:
    """Read a checkpoint: (arrays, values, marks) as given to :func:`save_checkpoint`."""
    arrays, header = load_npz(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION)
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    marks = []
    for index, mark in enumerate(header["marks"]):
        head = arrays.pop(f"mark{index}.head").tobytes()
        marks.append(FileMark(os.path.join(folder, mark["path"]), int(mark["size"]), head))
    return arrays, header["values"], marks
