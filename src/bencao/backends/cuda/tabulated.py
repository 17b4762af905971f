"""Type-tabulated pair potentials (OpenMM CustomNonbondedForce tables) on the GPU.

The CUDA counterpart of ``cpu.nonbonded.CpuTabulatedPairs``: the CustomNonbondedForce forms
OpenMM's app layer writes for CHARMM NBFIX, AMBER LJ tables and AMBER 12-6-4 ions,

    E(r) = A(ti, tj) / r^12 - B(ti, tj) / r^6 - C(ti, tj) / r^4,

with A, B, C read from per-type tables, over every non-excluded pair, by the shared pair loops
of ``cuda.pair_loops``:

* NoCutoff: one thread per atom i over every j > i, no list;
* CutoffNonPeriodic / CutoffPeriodic: the device Verlet list of ``cuda.pairs`` (exclusions are
  left out when it is built), minimum image in any reduced triclinic box for CutoffPeriodic;
* OpenMM's switching function multiplying the whole energy, as CustomNonbondedForce does;
* the long-range correction C / V (CutoffPeriodic), with the coefficient C computed once on the
  host by the CPU term's ``table_coefficient``.

The law is the CPU kernel's own (``common.pair_laws.tabulated_pair_law``), compiled for the
device in float64 where the CPU kernel runs it in float32, so this term is closer to OpenMM's
Reference platform than the CPU one.  Forces and energies are accumulated as in every pair loop
(int64 fixed point with integer atomics; per-thread energies summed with ``math.fsum``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from bencao.backends.common.long_range_correction import table_coefficient
from bencao.backends.common.pair_laws import tabulated_pair64
from bencao.backends.common.registry import register_kernel
from bencao.backends.cuda.common import device_function, device_version
from bencao.backends.cuda.pair_loops import (
    DEFAULT_BUFFER,
    CudaPairTerm,
    pair_loop_kernels,
)
from bencao.forces import TabulatedPairs

#: c12/r^12 - c6/r^6 - c4/r^4 of one pair, switched, in float64: ``(f_over_r, energy)``.
pair_potential = device_version(tabulated_pair64)


@device_function
def _load(parameters, i):
    """Atom i's type."""
    return parameters[0][i]


@device_function
def _pair_law(r2, ti, tj, parameters):
    """The pair loops' law: the type pair's coefficients into :data:`pair_potential` with the
    term's switch (``CudaTabulatedPairs._parameters``)."""
    _, c12, c6, c4, switching, switch_distance, cutoff = parameters
    return pair_potential(r2, c12[ti, tj], c6[ti, tj], c4[ti, tj], switching, switch_distance,
                          cutoff)


_pair_kernels = pair_loop_kernels(_load, _pair_law)


# ---------------------------------------------------------------------------------------------
# Host side.


@register_kernel("cuda", TabulatedPairs)
class CudaTabulatedPairs(CudaPairTerm):
    """A type-tabulated c12/c6/c4 pair potential on the GPU (CustomNonbondedForce NBFIX, AMBER
    LJ-table and 12-6-4 forms).

    Parameters
    ----------
    term : bencao.forces.TabulatedPairs
        Parameters.
    default_box : (3, 3) float64 array or None
        The system's default box, nm.  Unused (nothing here is chosen from the box, unlike PME's
        grid); taken so that the backend builds every pair term the same way.
    buffer : float
        Verlet buffer, nm.

    Attributes
    ----------
    name : str
        ``term.name`` ("CustomNonbondedForce").
    reciprocal : None
        No reciprocal space (the backend's MTS grouping and the bench profile ask).
    neighbors : CudaPairList or None
        The Verlet list (None for NoCutoff).
    cutoff : float
        Cutoff, nm (inf for NoCutoff).
    switching : bool
        Whether the switching function is applied.
    correction_coefficient : float
        C of the long-range correction C / V, kJ/mol nm^3 (0 without one).

    Raises
    ------
    TypeError
        If ``term`` is not a ``TabulatedPairs``.
    """

    @classmethod
    def from_term(cls, term, system):
        """The kernel of ``system``'s ``term`` (the backend builds every pair term this way)."""
        return cls(term, system.box)

    def __init__(self, term, default_box=None, buffer=DEFAULT_BUFFER):
        if not isinstance(term, TabulatedPairs):
            raise TypeError(f"CudaTabulatedPairs needs a TabulatedPairs term, got "
                            f"{type(term).__name__}")
        self.name = term.name
        self.term = term
        self.periodic = term.periodic
        self.n = n = len(term.types)
        self.reciprocal = None
        no_cutoff = term.method == "NoCutoff"
        self._init_pairs(None if no_cutoff else term.cutoff, buffer, term.exclusions)
        # 0 means no switching; OpenMM refuses a switch distance at or beyond the cutoff
        self.switching = bool(not no_cutoff and 0.0 < term.switch_distance < term.cutoff)
        self.correction_coefficient = 0.0
        if term.long_range_correction and term.periodic:
            # The CPU term's coefficient (host quadrature, OpenMM's class counting), reused as is
            self.correction_coefficient = table_coefficient(
                term.types, term.c12, term.c6, term.c4, term.cutoff, term.switch_distance)
        # float64 tables (the CPU kernel's are float32): T x T doubles, a few kB at most
        self._parameters = (
            cuda.to_device(np.resize(np.asarray(term.types, np.int64), max(n, 1))),
            cuda.to_device(np.ascontiguousarray(term.c12, np.float64)),
            cuda.to_device(np.ascontiguousarray(term.c6, np.float64)),
            cuda.to_device(np.ascontiguousarray(term.c4, np.float64)),
            self.switching, float(term.switch_distance), self.cutoff)

    def compute(self, state, box, energy=True):
        """Add the pair forces to ``state.forces``; return the energy, kJ/mol (NaN if ``energy``
        is False).

        Parameters
        ----------
        state : object
            ``state.positions`` ((N, 3) float64 device array, nm) and ``state.forces`` ((N, 3)
            int64 device array, ``bencao.constants.FORCE_SCALE`` units per kJ/mol/nm).
        box : (3, 3) float64 array or None
            Box vectors as rows, nm, OpenMM's reduced form (host); None if not periodic.
        energy : bool
            Sum and return the energy (one device-to-host copy of N doubles).

        Returns
        -------
        float
            Pair energy plus the long-range correction, kJ/mol; NaN if ``energy`` is False.
        """
        total = self._pair_energy(_pair_kernels, self._parameters, state, box, energy)
        if not energy:
            return math.nan
        if self.correction_coefficient:
            total += self.correction_coefficient / abs(np.linalg.det(box))
        return total
