"""The reporter protocol and file marks for checkpoints."""

from __future__ import annotations

import os
from dataclasses import dataclass

from bencao.errors import InputFileError, OutputError
from bencao.io.files import describe_os_error

#: Bytes at the start of a file saved with its mark: a DCD header records the frame count there,
#: so restoring them makes a truncated DCD consistent again (CSV and XTC have no header to fix).
HEAD_BYTES = 512


@dataclass(frozen=True)
class ReportRequest:
    """What a reporter needs next.

    Attributes
    ----------
    steps : int
        Steps from now until the next report (>= 1), or 0 if it needs nothing more this stage.
    positions, velocities, energy : bool
        Which parts of the state it will read.
    """

    steps: int
    positions: bool = False
    velocities: bool = False
    energy: bool = False


@dataclass(frozen=True)
class FileMark:
    """Where a file stood at a checkpoint: its length and its first bytes."""

    path: str
    size: int
    head: bytes

    @classmethod
    def of(cls, path) -> FileMark:
        """Mark a file as it is on disk now (flush it first)."""
        path = os.fspath(path)
        try:
            size = os.path.getsize(path)
            with open(path, "rb") as handle:
                head = handle.read(min(size, HEAD_BYTES))
        except OSError as exc:
            raise OutputError(describe_os_error(exc, path)) from exc
        return cls(path, size, head)

    def restore(self) -> None:
        """Cut the file back to this mark and put its first bytes back.

        Raises
        ------
        bencao.errors.InputFileError
            If the file is missing or shorter than the mark (it was not written by this run).
        """
        try:
            size = os.path.getsize(self.path)
        except OSError as exc:
            raise InputFileError(f"cannot resume: {self.path} is missing ({exc.strerror})") from exc
        if size < self.size:
            raise InputFileError(
                f"cannot resume: {self.path} is shorter ({size} bytes) than at the checkpoint "
                f"({self.size} bytes); it was changed after the checkpoint was written")
        with open(self.path, "r+b") as handle:
            handle.truncate(self.size)
            handle.seek(0)
            handle.write(self.head)
            handle.flush()
            os.fsync(handle.fileno())


class Reporter:
    """Base class: report every ``interval`` steps, counted from the start of the stage.

    Subclasses implement :meth:`report` and, if they write a file, :meth:`mark` and
    :meth:`close`.
    """

    needs_positions = False
    needs_velocities = False
    needs_energy = False

    def __init__(self, interval: int = 0):
        self.interval = int(interval)
        self.stage_start = 0
        self.stage = ""

    def begin_stage(self, stage, start_step: int, interval: int) -> None:
        """A new stage starts at ``start_step``; report every ``interval`` steps (0 = never)."""
        self.stage = stage.name
        self.stage_start = int(start_step)
        self.interval = int(interval)

    def describe_next_report(self, simulation) -> ReportRequest:
        """Steps until the next report and what it will need."""
        if self.interval <= 0:
            return ReportRequest(0)
        done = simulation.step_count - self.stage_start
        steps = self.interval - done % self.interval
        return ReportRequest(steps, self.needs_positions, self.needs_velocities, self.needs_energy)

    def report(self, simulation, state) -> None:
        """Record ``state`` (a :class:`bencao.State`) of ``simulation``."""
        raise NotImplementedError

    def mark(self) -> list[FileMark]:
        """Flush to disk and return the marks of the files written (none by default)."""
        return []

    def close(self) -> None:
        """Flush and close files."""
