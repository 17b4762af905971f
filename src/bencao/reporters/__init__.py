"""Reporters: what a run writes while it goes (OpenMM's reporter protocol).

Each reporter says when it next needs data and what kind (:meth:`Reporter.describe_next_report`),
and is handed a :class:`bencao.State` at that step.  File reporters also take part in
checkpoints: :meth:`Reporter.mark` flushes the file to disk and returns its length, and a resumed
run truncates the file back to that mark, so the output continues exactly where the checkpoint
was taken.
"""

from bencao.reporters.base import FileMark, Reporter, ReportRequest
from bencao.reporters.progress import ProgressReporter
from bencao.reporters.state_data import StateDataReporter
from bencao.reporters.trajectory import TrajectoryReporter

__all__ = [
           "FileMark",
           "ProgressReporter",
           "ReportRequest",
           "Reporter",
           "StateDataReporter",
           "TrajectoryReporter",
]
