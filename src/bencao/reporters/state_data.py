"""Energies, temperature, volume, density and speed to a CSV log."""

from __future__ import annotations

import math
import os
import time

from bencao.errors import OutputError
from bencao.io.files import describe_os_error
from bencao.reporters.base import FileMark, Reporter

#: Columns of the log, with units in the names (the report reads them by these names).
COLUMNS = ("stage", "step", "time_ps", "potential_kj_mol", "kinetic_kj_mol", "total_kj_mol",
           "temperature_k", "volume_nm3", "density_g_cm3", "speed_ns_day", "progress_percent",
           "remaining_s")


class StateDataReporter(Reporter):
    """Write one CSV row per report, as OpenMM's StateDataReporter does.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file.
    total_steps : int
        Dynamics steps of the whole job (for progress and time remaining).
    steps_before : callable
        ``steps_before(step)`` gives the dynamics steps of the job done at global ``step``.
    append : bool
        Continue an existing file (after a resume) instead of starting a new one.
    """

    needs_energy = True

    def __init__(self, path, total_steps: int, steps_done, append: bool = False):
        super().__init__()
        self.path = os.fspath(path)
        self.total_steps = int(total_steps)
        self.steps_done = steps_done
        try:
            self._file = open(self.path, "a" if append else "w", encoding="utf-8", newline="")  # noqa: SIM115 (open for the whole run)
            if not append:
                self._file.write(",".join(COLUMNS) + "\n")
        except OSError as exc:
            raise OutputError(describe_os_error(exc, self.path)) from exc
        self._clock = None   # (wall time, step) of the previous report, for the speed

    def begin_stage(self, stage, start_step, interval):
        super().begin_stage(stage, start_step, interval)
        self._timestep = stage.timestep
        self._clock = (time.perf_counter(), start_step)

    def report(self, simulation, state) -> None:
        now = time.perf_counter()
        speed = math.nan
        if self._clock is not None and state.step > self._clock[1] and now > self._clock[0]:
            ns = (state.step - self._clock[1]) * self._timestep * 1e-3
            speed = ns / ((now - self._clock[0]) / 86400.0)
        self._clock = (now, state.step)
        done = self.steps_done(state.step)
        progress = 100.0 * done / self.total_steps if self.total_steps else 100.0
        remaining = math.nan
        if speed > 0:
            remaining = (self.total_steps - done) * self._timestep * 1e-3 / speed * 86400.0
        row = [self.stage, str(state.step), f"{state.time:.6f}", f"{state.potential_energy:.6f}",
               f"{state.kinetic_energy:.6f}", f"{state.total_energy:.6f}",
               f"{state.temperature:.4f}",
               "" if state.volume is None else f"{state.volume:.6f}",
               "" if state.density is None else f"{state.density:.6f}",
               "" if math.isnan(speed) else f"{speed:.3f}", f"{progress:.2f}",
               "" if math.isnan(remaining) else f"{remaining:.0f}"]
        try:
            self._file.write(",".join(row) + "\n")
        except OSError as exc:
            raise OutputError(describe_os_error(exc, self.path)) from exc

    def mark(self) -> list[FileMark]:
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            raise OutputError(describe_os_error(exc, self.path)) from exc
        return [FileMark.of(self.path)]

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
