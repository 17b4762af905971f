"""Type-tabulated pair potentials (OpenMM CustomNonbondedForce tables) on the GPU.

The CUDA counterpart of ``cpu.nonbonded.CpuTabulatedPairs``: the CustomNonbondedForce forms
OpenMM's app layer writes for CHARMM NBFIX, AMBER LJ tables and AMBER 12-6-4 ions,

    E(r) = A(ti, tj) / r^12 - B(ti, tj) / r^6 - C(ti, tj) / r^4,

with A, B, C read from per-type tables, over every non-excluded pair:

* NoCutoff: one thread per atom i over every j > i, no list;
* CutoffNonPeriodic / CutoffPeriodic: the device Verlet list of ``cuda.pairs`` (exclusions are
  left out when it is built), minimum image in any reduced triclinic box for CutoffPeriodic;
* OpenMM's switching function multiplying the whole energy, as CustomNonbondedForce does (the
  CPU kernel's own ``switch_factor``, compiled for the device);
* the long-range correction C / V (CutoffPeriodic), with the coefficient C computed once on the
  host by the CPU term's ``table_coefficient``.

As in ``cuda.nonbonded``: forces go into the int64 fixed-point accumulator with integer atomics
(bit-identical run to run); energies are per-thread float64 partials added on the host with
``math.fsum`` (correctly rounded, so independent of order).  The arithmetic is float64 (the CPU
kernel's is float32), so this term is closer to OpenMM's Reference platform than the CPU one.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from bencao.backends.common.exclusions import exclusion_table
from bencao.backends.common.long_range_correction import table_coefficient
from bencao.backends.cpu.pair_kernels import switch_factor as cpu_switch_factor
from bencao.backends.cuda.common import device_function, launch_kernel, to_fixed
from bencao.backends.cuda.pairs import CudaPairList, minimum_image
from bencao.forces import TabulatedPairs
from bencao.profiling import phase

#: Verlet buffer, nm: the same as ``cuda.nonbonded`` (the list is rebuilt exactly when needed,
#: so the buffer trades list builds against listed pairs and never costs accuracy).
DEFAULT_BUFFER = 0.2

# The CPU kernel's switching function S(r), dS/dr (OpenMM's 1 - 10x^3 + 15x^4 - 6x^5), compiled
# for the device from the same Python source, so both backends switch identically.
switch_factor = device_function(cpu_switch_factor.py_func)


@device_function
def pair_potential(r2, c12, c6, c4, switching, switch_distance, cutoff):
    """c12/r^12 - c6/r^6 - c4/r^4 of one pair at squared distance ``r2`` (nm^2), in float64.

    The CPU kernel's formula (``cpu.pair_kernels.tabulated_pairs``) in double precision.

    Parameters
    ----------
    r2 : float
        Squared distance, nm^2.
    c12, c6, c4 : float
        The pair's coefficients, kJ/mol nm^12, kJ/mol nm^6, kJ/mol nm^4.
    switching : bool
        Apply the switching function beyond ``switch_distance``.
    switch_distance, cutoff : float
        Where switching starts and the energy reaches zero, nm (unused without switching).

    Returns
    -------
    f_over_r : float
        -dE/dr / r, kJ/mol/nm^2; the force on the second atom is ``f_over_r * (r_j - r_i)``.
    energy : float
        E, kJ/mol.
    """
    inv_r2 = 1.0 / r2
    inv_r4 = inv_r2 * inv_r2
    inv_r6 = inv_r4 * inv_r2
    a12 = c12 * inv_r6 * inv_r6
    b6 = c6 * inv_r6
    d4 = c4 * inv_r4
    energy = a12 - b6 - d4
    f_over_r = (12.0 * a12 - 6.0 * b6 - 4.0 * d4) * inv_r2
    if switching:
        r = math.sqrt(r2)
        if r > switch_distance:
            # CustomNonbondedForce switches the whole energy: F = S F0 - E0 dS/dr r_hat
            s, ds = switch_factor(r, switch_distance, cutoff)
            f_over_r = f_over_r * s - energy * ds / r
            energy *= s
    return f_over_r, energy


# ---------------------------------------------------------------------------------------------
# Pair kernels.


@cuda.jit
def _listed_pairs(positions, types, c12, c6, c4, neighbors, counts, box, periodic, cutoff2,
                  switching, switch_distance, cutoff, forces, energies):
    """One thread per atom i over its list: pair forces into the fixed-point accumulator, the
    energy of i's pairs into ``energies[i]``.

    The force on i is summed over its list in float64 (list order: fixed) and converted once;
    each partner's share is converted and added with an integer atomic per component.
    """
    i = cuda.grid(1)
    if i >= positions.shape[0]:
        return
    xi = positions[i, 0]
    yi = positions[i, 1]
    zi = positions[i, 2]
    ti = types[i]
    ax = box[0, 0]
    bx = box[1, 0]
    by = box[1, 1]
    cx = box[2, 0]
    cy = box[2, 1]
    cz = box[2, 2]
    fxi = 0.0
    fyi = 0.0
    fzi = 0.0
    energy = 0.0
    for k in range(counts[i]):
        j = neighbors[i, k]
        dx = positions[j, 0] - xi
        dy = positions[j, 1] - yi
        dz = positions[j, 2] - zi
        if periodic:
            dx, dy, dz = minimum_image(dx, dy, dz, ax, bx, by, cx, cy, cz)
        r2 = dx * dx + dy * dy + dz * dz
        if r2 >= cutoff2:
            continue
        tj = types[j]
        f, e = pair_potential(r2, c12[ti, tj], c6[ti, tj], c4[ti, tj], switching,
                              switch_distance, cutoff)
        energy += e
        fx = f * dx
        fy = f * dy
        fz = f * dz
        fxi -= fx
        fyi -= fy
        fzi -= fz
        cuda.atomic.add(forces, (j, 0), to_fixed(fx))
        cuda.atomic.add(forces, (j, 1), to_fixed(fy))
        cuda.atomic.add(forces, (j, 2), to_fixed(fz))
    cuda.atomic.add(forces, (i, 0), to_fixed(fxi))
    cuda.atomic.add(forces, (i, 1), to_fixed(fyi))
    cuda.atomic.add(forces, (i, 2), to_fixed(fzi))
    energies[i] = energy


@cuda.jit
def _all_pairs(positions, types, c12, c6, c4, excl_start, excl_atoms, forces, energies):
    """NoCutoff: one thread per atom i over every j > i, no list, no switching.

    The exclusions of i are sorted and j increases, so one pointer walks them alongside.  (The
    work per thread falls with i; fine for the small systems run without a cutoff.)
    """
    i = cuda.grid(1)
    n = positions.shape[0]
    if i >= n:
        return
    xi = positions[i, 0]
    yi = positions[i, 1]
    zi = positions[i, 2]
    ti = types[i]
    e = excl_start[i]
    e1 = excl_start[i + 1]
    while e < e1 and excl_atoms[e] <= i:
        e += 1
    fxi = 0.0
    fyi = 0.0
    fzi = 0.0
    energy = 0.0
    for j in range(i + 1, n):
        if e < e1 and excl_atoms[e] == j:
            e += 1
            continue
        dx = positions[j, 0] - xi
        dy = positions[j, 1] - yi
        dz = positions[j, 2] - zi
        tj = types[j]
        f, pe = pair_potential(dx * dx + dy * dy + dz * dz, c12[ti, tj], c6[ti, tj],
                               c4[ti, tj], False, 0.0, 1.0)
        energy += pe
        fx = f * dx
        fy = f * dy
        fz = f * dz
        fxi -= fx
        fyi -= fy
        fzi -= fz
        cuda.atomic.add(forces, (j, 0), to_fixed(fx))
        cuda.atomic.add(forces, (j, 1), to_fixed(fy))
        cuda.atomic.add(forces, (j, 2), to_fixed(fz))
    cuda.atomic.add(forces, (i, 0), to_fixed(fxi))
    cuda.atomic.add(forces, (i, 1), to_fixed(fyi))
    cuda.atomic.add(forces, (i, 2), to_fixed(fzi))
    energies[i] = energy


# ---------------------------------------------------------------------------------------------
# Host side.


class CudaTabulatedPairs:
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

    profile_phase = "nonbonded"
    #: ``compute(..., energy=False)`` skips summing the energies (and returns NaN)
    energy_optional = True

    def __init__(self, term, default_box=None, buffer=DEFAULT_BUFFER):
        if not isinstance(term, TabulatedPairs):
            raise TypeError(f"CudaTabulatedPairs needs a TabulatedPairs term, got "
                            f"{type(term).__name__}")
        self.name = term.name
        self.term = term
        self.periodic = term.periodic
        self.n = n = len(term.types)
        self.reciprocal = None
        self.neighbors = None
        self.switching = False
        self.cutoff = math.inf
        if term.method != "NoCutoff":
            self.cutoff = float(term.cutoff)
            self.neighbors = CudaPairList(n, self.cutoff, buffer, term.exclusions, self.periodic)
            # 0 means no switching; OpenMM refuses a switch distance at or beyond the cutoff
            self.switching = bool(0.0 < term.switch_distance < term.cutoff)
        self.correction_coefficient = 0.0
        if term.long_range_correction and term.periodic:
            # The CPU term's coefficient (host quadrature, OpenMM's class counting), reused as is
            self.correction_coefficient = table_coefficient(
                term.types, term.c12, term.c6, term.c4, term.cutoff, term.switch_distance)
        one = max(n, 1)
        self._types = cuda.to_device(np.resize(np.asarray(term.types, np.int64), one))
        # float64 tables (the CPU kernel's are float32): T x T doubles, a few kB at most
        self._c12 = cuda.to_device(np.ascontiguousarray(term.c12, np.float64))
        self._c6 = cuda.to_device(np.ascontiguousarray(term.c6, np.float64))
        self._c4 = cuda.to_device(np.ascontiguousarray(term.c4, np.float64))
        self._energies = cuda.device_array(one, np.float64)
        if self.neighbors is None:
            start, partners = exclusion_table(n, term.exclusions)
            self._excl_start = cuda.to_device(start)
            # a device array cannot be empty-sized in every Numba version: one dummy entry
            self._excl_atoms = cuda.to_device(partners if len(partners) else np.zeros(1, np.int64))
        self._box_host = None
        self._box_device = cuda.to_device(np.eye(3, dtype=np.float64))

    def _device_box(self, box):
        """The box as a device array, re-sent only when it changed (identity if not periodic)."""
        if not self.periodic:
            return self._box_device
        box = np.ascontiguousarray(box, np.float64)
        if self._box_host is None or not np.array_equal(box, self._box_host):
            self._box_host = box.copy()
            self._box_device = cuda.to_device(box)
        return self._box_device

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
        n = self.n
        total = 0.0
        if n:
            if self.neighbors is None:
                with phase("pairs"):
                    launch_kernel(_all_pairs, n)(
                        state.positions, self._types, self._c12, self._c6, self._c4,
                        self._excl_start, self._excl_atoms, state.forces, self._energies)
            else:
                box_device = self._device_box(box)
                with phase("neighbour search"):
                    self.neighbors.update(state.positions, box)
                nl = self.neighbors
                with phase("pairs"):
                    launch_kernel(_listed_pairs, n)(
                        state.positions, self._types, self._c12, self._c6, self._c4,
                        nl.neighbors, nl.counts, box_device, self.periodic, self.cutoff**2,
                        self.switching, float(self.term.switch_distance), self.cutoff,
                        state.forces, self._energies)
            if energy:
                total += math.fsum(self._energies.copy_to_host()[:n])
        if not energy:
            return math.nan
        if self.correction_coefficient:
            total += self.correction_coefficient / abs(np.linalg.det(box))
        return total

    def get_state(self) -> dict:
        """Neighbour-list state for checkpoints (see ``CudaPairList.get_state``)."""
        return {} if self.neighbors is None else self.neighbors.get_state()

    def set_state(self, state: dict) -> None:
        """Restore the neighbour list saved by ``get_state``."""
        if self.neighbors is not None and state:
            self.neighbors.set_state(state)
