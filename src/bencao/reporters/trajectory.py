"""Trajectories in XTC or DCD, readable by MDTraj, MDAnalysis and VMD."""

from __future__ import annotations

import os

import numpy as np
from openmm import Vec3, unit

from bencao.errors import OutputError
from bencao.io.files import describe_os_error
from bencao.reporters.base import FileMark, Reporter

FORMATS = ("xtc", "dcd")


def wrap_molecules(positions: np.ndarray, box: np.ndarray | None, molecules) -> np.ndarray:
    """Positions with each molecule shifted by whole box vectors so its centre lies in the box.

    Molecules stay whole (as OpenMM writes periodic trajectories), so a protein never appears
    split across the box in a viewer.

    Parameters
    ----------
    positions : (N, 3) float64 array
        Positions, nm.
    box : (3, 3) float64 array or None
        Box vectors as rows, nm; None returns the positions unchanged.
    molecules : tuple of (start, atoms) arrays
        Molecules as a CSR table (``bencao.dynamics.molecules.find_molecules``).
    """
    if box is None:
        return positions
    start, atoms = molecules
    sizes = np.diff(start)
    grouped = positions[atoms]
    centres = np.add.reduceat(grouped, start[:-1], axis=0) / sizes[:, None]
    shift = -np.floor(centres @ np.linalg.inv(box)) @ box
    wrapped = np.empty_like(positions)
    wrapped[atoms] = grouped + np.repeat(shift, sizes, axis=0)
    return wrapped


class TrajectoryReporter(Reporter):
    """Append frames to an XTC or DCD file.

    Parameters
    ----------
    path : str or os.PathLike
        The trajectory file; its extension (.xtc or .dcd) picks the format.
    topology : openmm.app.Topology
        The system's topology (atom count, and the DCD header).
    molecules : tuple of (start, atoms) arrays
        Molecules, to write them whole and wrapped into the box.
    append : bool
        Continue an existing file (after a resume).

    Notes
    -----
    XTC frames carry their own step and time, so a job whose stages use different time steps
    and intervals still reads back with the right times.  DCD has one time step per file (the
    first stage's); MDTraj and VMD read its frames and boxes all the same.
    """

    needs_positions = True

    def __init__(self, path, topology, molecules, append: bool = False):
        super().__init__()
        self.path = os.fspath(path)
        self.format = os.path.splitext(self.path)[1].lstrip(".").lower()
        if self.format not in FORMATS:
            raise OutputError(f"{self.path}: trajectory format must be one of {', '.join(FORMATS)}")
        self.topology = topology
        self.molecules = molecules
        self._append = append
        self._dcd = None
        self._handle = None
        try:
            if self.format == "xtc":
                if not append:
                    open(self.path, "wb").close()
            else:
                self._handle = open(self.path, "r+b" if append else "wb")  # noqa: SIM115 (open for the whole run)
        except OSError as exc:
            raise OutputError(describe_os_error(exc, self.path)) from exc

    def report(self, simulation, state) -> None:
        positions = wrap_molecules(state.positions, state.box, self.molecules)
        try:
            if self.format == "xtc":
                self._write_xtc(positions, state)
            else:
                self._write_dcd(positions, state)
        except OSError as exc:
            raise OutputError(describe_os_error(exc, self.path)) from exc

    def _write_xtc(self, positions, state) -> None:
        # OpenMM's XTC writer opens, appends one frame and closes the file: each frame is on
        # disk once written.  We call its frame writer directly to give every frame its own
        # step and time (OpenMM's XTCFile assumes one interval for the whole file).
        from openmm.app.internal.xtc_utils import xtc_write_frame

        box = np.zeros((3, 3), np.float32) if state.box is None else state.box.astype(np.float32)
        xtc_write_frame(self.path.encode("utf-8"), np.ascontiguousarray(positions, np.float32),
                        np.ascontiguousarray(box), np.float32(state.time), np.int32(state.step))

    def _write_dcd(self, positions, state) -> None:
        from openmm.app import DCDFile

        if self._dcd is None:
            interval = max(1, self.interval)
            self._dcd = DCDFile(self._handle, self.topology, self._timestep * unit.picosecond,
                                firstStep=state.step, interval=interval, append=self._append)
        box = None
        if state.box is not None:
            box = [Vec3(*row) for row in state.box] * unit.nanometer
        self._dcd.writeModel(positions * unit.nanometer, periodicBoxVectors=box)

    def begin_stage(self, stage, start_step, interval):
        super().begin_stage(stage, start_step, interval)
        if self._dcd is None:
            self._timestep = stage.timestep

    def mark(self) -> list[FileMark]:
        if self._handle is not None:
            try:
                self._handle.flush()
                os.fsync(self._handle.fileno())
            except OSError as exc:
                raise OutputError(describe_os_error(exc, self.path)) from exc
        return [FileMark.of(self.path)]

    def close(self) -> None:
        if self._handle is not None and not self._handle.closed:
            self._handle.close()
