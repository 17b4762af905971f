"""Device-resident state of the CUDA backend, laid out for many systems at once.

Particles of all systems live in flat arrays (struct of arrays, one row per particle) and each
particle carries the index of its system; boxes are per system.  A kernel finds a particle's box
through ``boxes[system_index[i]]``, so batching many small systems (replica ensembles, free-energy
windows) onto one GPU later needs no new kernels.  Only one system is run for now.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import cuda

from bencao.backends.cuda.common import launch_config


@cuda.jit
def _zero_int64_rows(values):
    """Set an (N, 3) int64 device array to zero; one thread per row."""
    i = cuda.grid(1)
    if i < values.shape[0]:
        values[i, 0] = 0
        values[i, 1] = 0
        values[i, 2] = 0


@dataclass
class CudaState:
    """Device arrays shared by every term of a CUDA backend.

    Attributes
    ----------
    positions : (N, 3) float64 device array
        Positions of all particles of all systems, nm.
    forces : (N, 3) int64 device array
        Fixed-point force accumulator (``bencao.constants.FORCE_SCALE`` units per kJ/mol/nm);
        kernels add into it with integer atomics, so the sum does not depend on thread order.
    system_index : (N,) int32 device array
        Which system each particle belongs to (all 0 while one system is run).
    boxes : (S, 3, 3) float64 device array
        Box vectors of each system as rows, nm, in OpenMM's reduced form (zeros if not periodic).
    periodic : (S,) int32 device array
        1 where the system is periodic, 0 where it is not.
    """

    positions: object
    forces: object
    system_index: object
    boxes: object
    periodic: object

    def __post_init__(self):
        # Host copy of what the device boxes hold, so an unchanged box is not re-sent every step.
        self._boxes_host = None

    @classmethod
    def allocate(cls, n_particles: int, n_systems: int = 1) -> CudaState:
        """Device arrays for ``n_particles`` particles in ``n_systems`` systems (all in system 0).

        Parameters
        ----------
        n_particles : int
            Total number of particles (virtual sites included).
        n_systems : int
            Number of systems (boxes).
        """
        return cls(
            positions=cuda.device_array((n_particles, 3), dtype=np.float64),
            forces=cuda.to_device(np.zeros((n_particles, 3), dtype=np.int64)),
            system_index=cuda.to_device(np.zeros(n_particles, dtype=np.int32)),
            boxes=cuda.to_device(np.zeros((n_systems, 3, 3), dtype=np.float64)),
            periodic=cuda.to_device(np.zeros(n_systems, dtype=np.int32)),
        )

    @property
    def n_particles(self) -> int:
        """Number of particles held."""
        return int(self.positions.shape[0])

    def upload(self, positions: np.ndarray, box: np.ndarray | None, system: int = 0) -> None:
        """Copy positions (nm) to the device, and the box (nm) of ``system`` if it changed.

        Parameters
        ----------
        positions : (N, 3) float64 array
            Positions of all particles, nm.
        box : (3, 3) float64 array or None
            Box vectors as rows, nm; None for a non-periodic system.
        system : int
            Which system the box belongs to.
        """
        self.positions.copy_to_device(np.ascontiguousarray(positions, dtype=np.float64))
        self.set_box(box, system)

    def set_box(self, box: np.ndarray | None, system: int = 0) -> None:
        """Copy the box (nm, or None if not periodic) of ``system`` to the device if it changed."""
        boxes = np.zeros((self.boxes.shape[0], 3, 3)) if self._boxes_host is None \
            else self._boxes_host.copy()
        periodic = np.zeros(self.boxes.shape[0], dtype=np.int32) if self._boxes_host is None \
            else self._periodic_host.copy()
        boxes[system] = 0.0 if box is None else box
        periodic[system] = box is not None
        if self._boxes_host is None or not (np.array_equal(boxes, self._boxes_host)
                                            and np.array_equal(periodic, self._periodic_host)):
            self.boxes.copy_to_device(boxes)
            self.periodic.copy_to_device(periodic)
            self._boxes_host = boxes
            self._periodic_host = periodic

    def zero_forces(self) -> None:
        """Clear the force accumulator on the device (no host transfer)."""
        n = self.forces.shape[0]
        if n:
            blocks, threads = launch_config(n)
            _zero_int64_rows[blocks, threads](self.forces)

    def download_forces(self) -> np.ndarray:
        """The (N, 3) int64 fixed-point forces, copied to the host."""
        return self.forces.copy_to_host()
