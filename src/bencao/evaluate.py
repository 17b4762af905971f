"""One-shot energy and force evaluation."""

from __future__ import annotations

import numpy as np

from bencao.backends import BACKENDS, backend_class

__all__ = ["BACKENDS", "evaluate", "make_backend"]


def make_backend(system, backend: str = "cpu", **options):
    """Compile ``system`` for the named backend.

    Parameters
    ----------
    system : bencao.System
        The system.
    backend : str
        "cpu" (Numba) or "cuda" (Numba-CUDA: an NVIDIA GPU with ``bencao[cuda]`` installed, or
        Numba's simulator with ``NUMBA_ENABLE_CUDASIM=1``).  Keyword options go to the backend
        (e.g. ``buffer`` in nm for the CPU).

    Raises
    ------
    RuntimeError
        For "cuda" when there is no GPU and no simulator.
    """
    return backend_class(backend)(system, **options)


def evaluate(system, positions, box=None, backend: str = "cpu"):
    """Potential energy, forces and per-term energies of one configuration.

    Parameters
    ----------
    system : bencao.System
        The system.
    positions : (N, 3) array_like
        Positions of all particles, nm (virtual sites are placed from their parents).
    box : (3, 3) array_like or None
        Periodic box vectors as rows, nm, in OpenMM's reduced form; defaults to the system's box.
    backend : str
        Which backend computes it ("cpu" or "cuda").

    Returns
    -------
    bencao.backends.common.evaluation.Evaluation
        ``.energy`` (kJ/mol), ``.forces`` ((N, 3) float64, kJ/mol/nm), ``.terms`` (kJ/mol by
        OpenMM force class).

    Notes
    -----
    Compiling a backend builds neighbour lists and PME tables; for repeated evaluations of one
    system, keep ``make_backend(system)`` and call its ``compute`` method.
    """
    if hasattr(positions, "value_in_unit"):
        from openmm import unit

        positions = positions.value_in_unit(unit.nanometer)
    return make_backend(system, backend).compute(np.asarray(positions, dtype=np.float64), box)
