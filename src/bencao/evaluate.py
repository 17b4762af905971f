"""One-shot energy and force evaluation."""

from __future__ import annotations

import numpy as np

BACKENDS = ("cpu",)


def make_backend(system, backend: str = "cpu", **options):
    """Compile ``system`` for the named backend.

    Parameters
    ----------
    system : bencao.System
        The system.
    backend : str
        "cpu" (Numba).  Keyword options go to the backend (e.g. ``buffer`` in nm).
    """
    if backend == "cpu":
        from bencao.backends.cpu import CpuBackend

        return CpuBackend(system, **options)
    raise ValueError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")


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
        Which backend computes it ("cpu").

    Returns
    -------
    bencao.backends.cpu.Evaluation
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
