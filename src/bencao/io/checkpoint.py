"""Checkpoint files: everything a run needs to continue bit-identically, written atomically."""

from __future__ import annotations

import os

import numpy as np

from bencao.errors import InputFileError
from bencao.io.files import load_npz, save_npz
from bencao.reporters.base import FileMark

CHECKPOINT_FORMAT = "bencao.Checkpoint"
CHECKPOINT_VERSION = 1


def previous_checkpoint(path) -> str:
    """Where the checkpoint before ``path`` is kept: ``checkpoint.npz`` -> ``checkpoint.prev.npz``."""
    root, ext = os.path.splitext(os.fspath(path))
    return f"{root}.prev{ext}"


def checkpoint_exists(path) -> bool:
    """True if ``path`` or the previous checkpoint kept beside it exists."""
    return os.path.exists(path) or os.path.exists(previous_checkpoint(path))


def save_checkpoint(path, arrays: dict, values: dict, marks: list[FileMark]) -> None:
    """Write a checkpoint (temporary file, fsync, rename), keeping the one it replaces.

    The current checkpoint is first renamed to :func:`previous_checkpoint`, so that a latest
    checkpoint damaged later (a truncated copy, a bad disk) still leaves one to resume from.

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
    if os.path.exists(path):
        os.replace(path, previous_checkpoint(path))
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


def load_latest_checkpoint(path, say) -> tuple[dict, dict, list[FileMark]]:
    """:func:`load_checkpoint` of ``path``, or of the previous checkpoint if ``path`` is missing
    or damaged (``say`` gets one line naming the damaged file).

    Raises
    ------
    bencao.errors.InputFileError
        If neither can be read.
    """
    try:
        return load_checkpoint(path)
    except InputFileError as exc:
        previous = previous_checkpoint(path)
        if not os.path.exists(previous):
            raise
        if os.path.exists(path):
            say(f"{exc}; resuming from the previous checkpoint {previous}")
        return load_checkpoint(previous)
