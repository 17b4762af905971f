"""The pair loops of the CUDA pair terms, written once: each term brings only its pair law.

:func:`pair_loop_kernels` turns a pair law into the two kernels every pair term needs:

* ``listed``: one thread per atom i over its partners in the device Verlet list
  (``cuda.pairs.CudaPairList``), minimum image in a reduced triclinic box if periodic, pairs at
  or beyond the cutoff skipped;
* ``all_pairs``: NoCutoff, one thread per atom i over every j > i, no list; the exclusions of i
  are sorted and j increases, so one pointer walks them alongside.  (The work per thread falls
  with i; fine for the small systems run without a cutoff.)

A law is two device functions over one ``parameters`` tuple (per-atom device arrays, tables
and scalars, passed to the kernel as one argument):

* ``load(parameters, i)``: what the law needs of atom i (a value or a tuple), read once per
  thread for i and once per pair for the partner;
* ``law(r2, a, b, parameters) -> (f_over_r, energy)``: the pair at squared distance ``r2``
  (nm^2) with ``a = load(parameters, i)``, ``b = load(parameters, j)``; -dE/dr / r
  (kJ/mol/nm^2, the force on j is ``f_over_r * (r_j - r_i)``) and E (kJ/mol).

Forces go into the int64 fixed-point accumulator with integer atomics: the force on i is summed
over its partners in float64 (a fixed order) and converted once, each partner's share converted
and added per component, so the forces are bit-identical run to run.  Energies are per-thread
float64 partials that :class:`CudaPairTerm` adds on the host with ``math.fsum`` (correctly
rounded, so independent of order), never float atomics.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import cuda

from bencao.backends.common.exclusions import exclusion_table
from bencao.backends.cuda.common import launch_kernel, to_fixed
from bencao.backends.cuda.pairs import CudaPairList, minimum_image
from bencao.profiling import phase

#: Verlet buffer, nm.  The list is rebuilt exactly when needed, so the buffer trades list
#: builds against listed pairs and never costs accuracy (the CPU list's default; not yet tuned
#: for the GPU).
DEFAULT_BUFFER = 0.2


class PairKernels(NamedTuple):
    """The two loops of one pair law (see the module docstring for their arguments)."""

    listed: object
    all_pairs: object


def pair_loop_kernels(load, law) -> PairKernels:
    """The listed-pairs and all-pairs kernels of one pair law.

    Parameters
    ----------
    load : device function
        ``load(parameters, i)``: atom i's share of the parameters.
    law : device function
        ``law(r2, a, b, parameters) -> (f_over_r, energy)``, kJ/mol/nm^2 and kJ/mol.

    Returns
    -------
    PairKernels
        ``listed(positions, parameters, neighbors, counts, box, periodic, cutoff2, forces,
        energies)`` and ``all_pairs(positions, parameters, excl_start, excl_atoms, forces,
        energies)``: positions (N, 3) float64 nm, box (3, 3) float64 nm (rows; read if
        ``periodic``), ``cutoff2`` nm^2, forces (N, 3) int64 fixed point, energies (N,) float64
        kJ/mol (the energy of the pairs of each thread's atom i).
    """

    @cuda.jit
    def listed(positions, parameters, neighbors, counts, box, periodic, cutoff2, forces,
               energies):
        i = cuda.grid(1)
        if i >= positions.shape[0]:
            return
        xi = positions[i, 0]
        yi = positions[i, 1]
        zi = positions[i, 2]
        a = load(parameters, i)
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
            f, e = law(r2, a, load(parameters, j), parameters)
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
    def all_pairs(positions, parameters, excl_start, excl_atoms, forces, energies):
        i = cuda.grid(1)
        n = positions.shape[0]
        if i >= n:
            return
        xi = positions[i, 0]
        yi = positions[i, 1]
        zi = positions[i, 2]
        a = load(parameters, i)
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
            f, pe = law(dx * dx + dy * dy + dz * dz, a, load(parameters, j), parameters)
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

    return PairKernels(listed, all_pairs)


class CudaPairTerm:
    """Host side shared by the CUDA pair terms: the Verlet list (or, for NoCutoff, the exclusion
    table), the box on the device, the launch of the pair loops and checkpoints.

    A subclass sets ``name``, ``term``, ``periodic`` and ``n``, calls :meth:`_init_pairs` and
    passes its kernels and parameters tuple to :meth:`_pair_energy`.

    Attributes
    ----------
    neighbors : CudaPairList or None
        The Verlet list (None for NoCutoff).
    cutoff : float
        Cutoff, nm (inf for NoCutoff).
    """

    profile_phase = "nonbonded"
    #: ``compute(..., energy=False)`` skips summing the energies (and returns NaN)
    energy_optional = True

    def _init_pairs(self, cutoff, buffer, exclusions):
        """The list (``cutoff`` finite, nm) or the exclusion table (``cutoff`` None), the
        per-atom energies and the box (identity until a periodic box comes)."""
        n = self.n
        self.neighbors = None
        self.cutoff = math.inf
        if cutoff is None:
            start, partners = exclusion_table(n, exclusions)
            self._excl_start = cuda.to_device(start)
            # a device array cannot be empty-sized in every Numba version: one dummy entry
            self._excl_atoms = cuda.to_device(partners if len(partners) else np.zeros(1, np.int64))
        else:
            self.cutoff = float(cutoff)
            self.neighbors = CudaPairList(n, self.cutoff, buffer, exclusions, self.periodic)
        self._energies = cuda.device_array(max(n, 1), np.float64)
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

    def _pair_energy(self, kernels, parameters, state, box, energy):
        """Run the pair loop (updating the list first); the pair energy, kJ/mol (0.0 if
        ``energy`` is False or there are no atoms)."""
        n = self.n
        if not n:
            return 0.0
        if self.neighbors is None:
            with phase("pairs"):
                launch_kernel(kernels.all_pairs, n)(
                    state.positions, parameters, self._excl_start, self._excl_atoms,
                    state.forces, self._energies)
        else:
            box_device = self._device_box(box)
            with phase("neighbour search"):
                self.neighbors.update(state.positions, box)
            nl = self.neighbors
            with phase("pairs"):
                launch_kernel(kernels.listed, n)(
                    state.positions, parameters, nl.neighbors, nl.counts, box_device,
                    self.periodic, self.cutoff**2, state.forces, self._energies)
        if not energy:
            return 0.0
        return math.fsum(self._energies.copy_to_host()[:n])

    def get_state(self) -> dict:
        """Neighbour-list state for checkpoints (see ``CudaPairList.get_state``)."""
        return {} if self.neighbors is None else self.neighbors.get_state()

    def set_state(self, state: dict) -> None:
        """Restore the neighbour list saved by ``get_state``."""
        if self.neighbors is not None and state:
            self.neighbors.set_state(state)
