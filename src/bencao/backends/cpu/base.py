"""The contract between the CPU backend and its per-term kernels."""

from __future__ import annotations

import numpy as np


class CpuTerm:
    """One compiled force term on the CPU.

    Subclasses are built from a term dataclass (``bencao.forces``) and the System, precompute
    whatever tables they need once, and then evaluate many times.

    Attributes
    ----------
    name : str
        Key of the energy in ``evaluate(...).terms``.
    profile_phase : str
        Where its time is counted when profiling (``bencao.profiling``).
    work_per_particle : bool
        True if its work grows with the particles or items it touches (listed terms), not
        with pairs: the backend then runs it on fewer threads in a small system
        (:mod:`bencao.backends.cpu.threads`).  Pair terms say False and limit their own
        per-particle parts.
    """

    name = "term"
    profile_phase = "bonded"
    work_per_particle = True

    def compute(self, positions: np.ndarray, box: np.ndarray | None, forces: np.ndarray) -> float:
        """Add this term's forces and return its energy.

        Parameters
        ----------
        positions : (N, 3) float64 array
            Positions of all particles (virtual sites already placed), nm.
        box : (3, 3) float64 array or None
            Periodic box vectors as rows, nm, in OpenMM's reduced form; None if not periodic.
        forces : (N, 3) int64 array
            Fixed-point force accumulator (see ``fixed_point``); this term adds into it.

        Returns
        -------
        float
            Energy of the term, kJ/mol.
        """
        raise NotImplementedError
