"""Reading a run's ``log.csv``: one row per report during the dynamics stages.

The log is appended to while a run goes on, so a report may be built from a log whose last line
is only half written; such a row is skipped rather than failing the report.  Empty cells (volume
and density of a non-periodic system) and cells that are not numbers read as NaN.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bencao.errors import InputFileError

#: Numeric columns of ``log.csv`` and their units (``stage`` is the only text column).
LOG_COLUMNS = {
    "step": "",
    "time_ps": "ps",
    "potential_kj_mol": "kJ/mol",
    "kinetic_kj_mol": "kJ/mol",
    "total_kj_mol": "kJ/mol",
    "temperature_k": "K",
    "volume_nm3": "nm³",
    "density_g_cm3": "g/cm³",
    "speed_ns_day": "ns/day",
    "progress_percent": "%",
    "remaining_s": "s",
}


@dataclass
class StageSegment:
    """A run of consecutive log rows of one stage.

    Attributes
    ----------
    name : str
        The stage name (minimize, heat, equilibrate, production...).
    start_ps, end_ps : float
        Simulated time of the first and last row of the segment, ps.
    rows : slice
        The rows of the segment in the log's arrays.
    """

    name: str
    start_ps: float
    end_ps: float
    rows: slice


@dataclass
class RunLog:
    """The columns of ``log.csv`` as arrays.

    Attributes
    ----------
    path : pathlib.Path
        The file read.
    stage : list of str
        The stage of every row.
    columns : dict of str to (n_rows,) float64 arrays
        Every numeric column of :data:`LOG_COLUMNS`; a column absent from the file is all NaN.
    skipped_rows : int
        Rows that were dropped because they had the wrong number of cells (a line being written).
    """

    path: Path
    stage: list = field(default_factory=list)
    columns: dict = field(default_factory=dict)
    skipped_rows: int = 0

    @property
    def n_rows(self) -> int:
        """Number of rows read."""
        return len(self.stage)

    def column(self, name: str):
        """The column ``name`` (float64 array), or None when the log holds no number in it."""
        values = self.columns.get(name)
        if values is None or not np.isfinite(values).any():
            return None
        return values

    def segments(self) -> list:
        """Consecutive rows of the same stage, in the order they were run.

        Returns
        -------
        list of StageSegment
            A stage whose name appears twice, apart, gives two segments.
        """
        segments = []
        time = self.columns["time_ps"]
        start = 0
        for row in range(1, self.n_rows + 1):
            if row == self.n_rows or self.stage[row] != self.stage[start]:
                segments.append(StageSegment(self.stage[start], float(time[start]),
                                             float(time[row - 1]), slice(start, row)))
                start = row
        return segments


def _to_float(text) -> float:
    """A cell as a float; empty or malformed cells are NaN (a log is read while it grows)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return math.nan
    return value


def read_log(path) -> RunLog:
    """Read a run's ``log.csv``.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file, with a header row naming ``stage``, ``time_ps`` and the columns of
        :data:`LOG_COLUMNS`.

    Returns
    -------
    RunLog

    Raises
    ------
    bencao.errors.InputFileError
        If the file is missing or unreadable, or its header lacks ``stage`` or ``time_ps``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{os.fspath(path)}: no such file (the run folder has no log.csv)")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputFileError(f"{os.fspath(path)}: cannot read the log ({exc})") from exc
    if not header:
        raise InputFileError(f"{os.fspath(path)}: the log is empty (no header row)")
    header = [name.strip() for name in header]
    for required in ("stage", "time_ps"):
        if required not in header:
            raise InputFileError(f"{os.fspath(path)}: the log has no '{required}' column")

    good = [row for row in rows if len(row) == len(header)]
    log = RunLog(path=path, skipped_rows=sum(1 for row in rows if row and len(row) != len(header)))
    where = {name: i for i, name in enumerate(header)}
    log.stage = [row[where["stage"]].strip() for row in good]
    for name in LOG_COLUMNS:
        if name in where:
            log.columns[name] = np.array([_to_float(row[where[name]]) for row in good], np.float64)
        else:
            log.columns[name] = np.full(len(good), np.nan)
    return log
