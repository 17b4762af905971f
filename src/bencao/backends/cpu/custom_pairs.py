"""CustomNonbondedForce with any expression on the CPU: the generated pair law
(``backends.common.laws.custom``, kind "pair") in a parallel loop over the Verlet half list.

The loop is :func:`~bencao.backends.cpu.pair_kernels.tabulated_pairs`'s, in float64, with the
law compiled in: forces on i summed in the fixed order of its list, reactions on the partners in
per-thread int64 buffers, so the forces are bit-identical on any number of threads; energies are
per-atom partials added in a fixed order.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
from numba import prange

from bencao.backends.common.custom_pair_tables import CustomPairTables
from bencao.backends.common.fixed_point import to_fixed
from bencao.backends.common.global_parameters import GlobalParameters
from bencao.backends.common.law_cache import compiled_law_loop
from bencao.backends.common.registry import register_kernel
from bencao.backends.cpu.neighbors import SHIFT_BITS, SHIFT_MASK, minimum_image
from bencao.backends.cpu.nonbonded import DEFAULT_BUFFER, _PairTerm
from bencao.backends.cpu.pair_kernels import reduce_thread_forces
from bencao.forces.custom import CustomPairs


def _pair_loop(law):
    """The parallel loop over the half list for ``law(r2, i, j, parameters)``."""

    def loop(positions, parameters, neighbors, counts, shifts, minimum_image_mode, box, cutoff2,
             thread_forces, atom_energy):
        for i in prange(positions.shape[0]):
            tid = numba.get_thread_id()
            xi = positions[i, 0]
            yi = positions[i, 1]
            zi = positions[i, 2]
            fxi = 0.0
            fyi = 0.0
            fzi = 0.0
            energy = 0.0
            for k in range(counts[i]):
                entry = neighbors[i, k]
                j = entry >> SHIFT_BITS
                shift = entry & SHIFT_MASK
                dx = positions[j, 0] - xi + shifts[shift, 0]
                dy = positions[j, 1] - yi + shifts[shift, 1]
                dz = positions[j, 2] - zi + shifts[shift, 2]
                if minimum_image_mode:
                    dx, dy, dz = minimum_image(dx, dy, dz, box, True)
                r2 = dx * dx + dy * dy + dz * dz
                if r2 >= cutoff2:
                    continue
                f_over_r, e = law(r2, i, j, parameters)
                energy += e
                fx = f_over_r * dx
                fy = f_over_r * dy
                fz = f_over_r * dz
                fxi -= fx
                fyi -= fy
                fzi -= fz
                thread_forces[tid, j, 0] += to_fixed(fx)
                thread_forces[tid, j, 1] += to_fixed(fy)
                thread_forces[tid, j, 2] += to_fixed(fz)
            thread_forces[tid, i, 0] += to_fixed(fxi)
            thread_forces[tid, i, 1] += to_fixed(fyi)
            thread_forces[tid, i, 2] += to_fixed(fzi)
            atom_energy[i] = energy

    return loop


@functools.cache
def pair_kernel(law):
    """The compiled pair loop of ``law`` (once per law; cached on disk by source)."""
    return compiled_law_loop(_pair_loop(law), law, parallel=True)


@register_kernel("cpu", CustomPairs)
class CpuCustomPairs(CustomPairTables, _PairTerm):
    """A CustomNonbondedForce expression on the CPU.

    Parameters
    ----------
    term : CustomPairs
        Expression, per-particle and global parameters, exclusions, cutoff and switch.
    buffer : float
        Verlet buffer, nm.
    """

    @classmethod
    def from_term(cls, term, system, buffer=DEFAULT_BUFFER):
        """The kernel of ``system``'s ``term``."""
        return cls(term, buffer=buffer)

    def __init__(self, term: CustomPairs, buffer=DEFAULT_BUFFER):
        self.init_custom_pairs(term)
        cutoff = np.inf if term.method == "NoCutoff" else float(term.cutoff)
        super().__init__(self.n, cutoff, term.exclusions, term.periodic, buffer)
        self._kernel = pair_kernel(self.compiled.law)
        self._derivative_kernels = {name: pair_kernel(law)
                                    for name, law in self.compiled.derivative_laws.items()}
        self._sort_parameters(self.neighbors.order)

    def _sort_parameters(self, order):
        self._sorted = (np.ascontiguousarray(self.params[order]), *self.switch,
                        self.masks[0][order], self.masks[1][order], self.grouped)

    def upload_params(self) -> None:
        """Re-sort the table into the list's order (a global parameter changed)."""
        self._sort_parameters(self.neighbors.order)

    def _run(self, kernel, positions, box, forces) -> float:
        sorted_positions, box_arg, shifts = self._prepare(positions, box)
        nl = self.neighbors
        kernel(sorted_positions, self._sorted, nl.neighbors, nl.counts, shifts,
               nl.minimum_image_mode, box_arg, self.cutoff**2, self._thread_forces,
               self._atom_energy)
        energy = float(np.sum(self._atom_energy))
        reduce_thread_forces(self._thread_forces, nl.order, forces)
        return energy

    def compute(self, positions, box, forces) -> float:
        """Add the pair forces to ``forces`` (int64 fixed point); return the energy with the
        long-range correction, kJ/mol."""
        return self._run(self._kernel, positions, box, forces) + self.long_range_energy(box)

    def parameter_derivatives(self, positions, box, forces) -> dict[str, float]:
        """dE/dp for each global parameter p asked for (``forces`` is scratch space)."""
        tail = self.long_range_derivatives(box)
        return {name: self._run(kernel, positions, box, forces) + tail.get(name, 0.0)
                for name, kernel in self._derivative_kernels.items()}

    def get_state(self) -> dict:
        """The neighbour list and the global parameter values, for checkpoints."""
        return {**_PairTerm.get_state(self), **GlobalParameters.get_state(self)}

    def set_state(self, state: dict) -> None:
        """Restore what :meth:`get_state` saved."""
        GlobalParameters.set_state(self, state)
        _PairTerm.set_state(self, state)
