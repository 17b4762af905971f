"""A live progress bar on a terminal (rich), or a progress line per report in a log file."""

from __future__ import annotations

import sys
import time

from bencao.reporters.base import Reporter


class ProgressReporter(Reporter):
    """Show how far the job has come, its speed and the time remaining.

    Parameters
    ----------
    total_steps : int
        Dynamics steps of the whole job.
    steps_done : callable
        ``steps_done(step)`` gives the job's dynamics steps done at global ``step``.
    stream : file-like
        Where to write; a terminal gets a rich progress bar, anything else a line per report.
    """

    def __init__(self, total_steps: int, steps_done, stream=None):
        super().__init__()
        self.total_steps = max(1, int(total_steps))
        self.steps_done = steps_done
        self.stream = stream if stream is not None else sys.stderr
        self._bar = None
        self._task = None
        self._clock = None
        if getattr(self.stream, "isatty", lambda: False)():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.percentage:>5.1f}%"), TextColumn("{task.fields[speed]}"),
                                 TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=Console(file=self.stream), transient=False)
            self._bar.start()
            self._task = self._bar.add_task("run", total=self.total_steps, speed="")

    def begin_stage(self, stage, start_step, interval):
        # report about every 1% of the stage, at least every 1000 steps, for a lively bar
        every = max(1, min(1000, stage.steps // 100 or 1))
        super().begin_stage(stage, start_step, every)
        self._timestep = stage.timestep
        self._clock = (time.perf_counter(), start_step)

    def report(self, simulation, state) -> None:
        now = time.perf_counter()
        speed = ""
        if self._clock is not None and state.step > self._clock[1] and now > self._clock[0] + 1e-9:
            ns_per_day = (state.step - self._clock[1]) * self._timestep * 1e-3 * 86400.0 / (now - self._clock[0])
            speed = f"{ns_per_day:.2f} ns/day"
        if self._bar is not None:
            self._bar.update(self._task, completed=self.steps_done(state.step), speed=speed,
                             description=self.stage)
            return
        if self.interval and (state.step - self.stage_start) % (self.interval * 10) == 0:
            percent = 100.0 * self.steps_done(state.step) / self.total_steps
            print(f"{self.stage}: step {state.step}, {state.time:.1f} ps, {percent:.1f}% of the job, "
                  f"{state.temperature:.1f} K {speed}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
