"""CustomNonbondedForce with any expression on the CPU: the generated pair law
(``backends.common.laws.custom``, its lane form) in a parallel loop over the Verlet half list.

Per particle, its partners within the cutoff and their parameters are gathered into contiguous
per-thread rows first, so the law runs in a loop LLVM vectorises (it does not vectorise reads
of ``table[j, c]``: no gathers on this target); each pair force goes to int64 fixed point, the
forces on i are summed as integers and the reactions on the partners added to per-thread int64
buffers, so the forces are bit-identical on any number of threads; energies are per-atom
partials added in a fixed order.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
from numba import prange

from bencao.backends.common.custom_pair_tables import CustomPairTables
from bencao.backends.common.fixed_point import to_fixed
from bencao.backends.common.global_parameters import GlobalParameters
from bencao.backends.common.law_cache import compiled_law_loop
from bencao.backends.common.laws.custom import LANE_FIRST_PARAMETER
from bencao.backends.common.pair_laws import group_multiplicity, switch_factor
from bencao.backends.common.registry import register_kernel
from bencao.backends.cpu.neighbors import equal_work_bounds, listed_partner
from bencao.backends.cpu.nonbonded import DEFAULT_BUFFER, _PairTerm
from bencao.backends.cpu.pair_kernels import reduce_thread_forces
from bencao.forces.custom import CustomPairs


def _pair_loop(law, width: int):
    """The parallel loop over the half list for the lane form of a law (``lane_law(r2, i, k,
    parameters, lane)``) of ``width`` per-particle parameters.

    Each particle's partners go through passes over per-thread scratch:

    - gather: the partners within the cutoff (about half of the list, whose buffer reaches
      beyond it), compacted in the list's order (a select moves the write position, no
      branch), their displacements, then their parameters and group multiplicities, in
      contiguous rows, padded with filler to whole vectors;
    - law: a loop with no gathers and no branches out, which LLVM vectorises, in three copies
      (with the switch, without it, and without it or the energy); each pair force converted
      to fixed point;
    - sums: the forces on i as integers (exact in any order, vectorised), each partner's
      reaction added to the thread's int64 buffer, and the pair energies summed in the list's
      order when ``with_energy``.

    Forces do not depend on the thread count; the pair values are the law's, the scalar
    loop's, so only the truncation of i's force differs from summing it in float64 first.
    """
    first = LANE_FIRST_PARAMETER
    multiplicity = first + width
    rows = multiplicity + 1

    def loop(positions, parameters, neighbors, counts, shifts, minimum_image_mode, box, cutoff2,
             thread_forces, atom_energy, scratch, partners, fixed, energies, with_energy, bounds):
        # particles in chunks of equal pair counts (``bounds``): the half list gives the
        # particles early in its order more partners than late ones
        table = parameters[0]
        grouped = parameters[5]
        switch_distance = parameters[1]
        cutoff = parameters[2]
        switching = switch_distance > 0.0
        switch2 = switch_distance * switch_distance
        for chunk in prange(bounds.shape[0] - 1):
            for i in range(bounds[chunk], bounds[chunk + 1]):
                tid = numba.get_thread_id()
                lane = scratch[tid]
                partner = partners[tid]
                pair_forces = fixed[tid]
                pair_energy = energies[tid]
                xi = positions[i, 0]
                yi = positions[i, 1]
                zi = positions[i, 2]
                inside = 0
                for k in range(counts[i]):
                    j, dx, dy, dz = listed_partner(neighbors[i, k], positions, xi, yi, zi, shifts,
                                                   minimum_image_mode, box)
                    # written at the next free slot; kept (the slot advances) only inside the cutoff
                    lane[0, inside] = dx
                    lane[1, inside] = dy
                    lane[2, inside] = dz
                    partner[inside] = j
                    inside += 1 if dx * dx + dy * dy + dz * dz < cutoff2 else 0
                for k in range(inside):  # the parameters of the partners kept only
                    j = partner[k]
                    for c in range(width):
                        lane[first + c, k] = table[j, c]
                    if grouped:
                        lane[multiplicity, k] = float(group_multiplicity(parameters[3],
                                                                         parameters[4], i, j))
                # Whole vectors only: the slots up to the next multiple of LANES are filler (a
                # copy of the last pair, so finite values), masked out below, which spares the
                # law's loop a scalar remainder of up to LANES - 1 pairs.
                padded = (inside + LANES - 1) // LANES * LANES
                for k in range(inside, padded):
                    for row in range(rows):
                        lane[row, k] = lane[row, inside - 1]
                # The law's loop in three copies: with the switch, without it, and without it
                # or the energy (LLVM would otherwise compute both, masked, for every pair).
                if switching:
                    for k in range(padded):
                        dx = lane[0, k]
                        dy = lane[1, k]
                        dz = lane[2, k]
                        r2 = dx * dx + dy * dy + dz * dz
                        f_over_r, e = law(r2, i, k, parameters, lane)
                        if r2 > switch2:
                            r = math.sqrt(r2)
                            s, ds = switch_factor(r, switch_distance, cutoff)
                            f_over_r = f_over_r * s - e * ds / r
                            e = e * s
                        real = k < inside
                        pair_forces[0, k] = to_fixed(f_over_r * dx if real else 0.0)
                        pair_forces[1, k] = to_fixed(f_over_r * dy if real else 0.0)
                        pair_forces[2, k] = to_fixed(f_over_r * dz if real else 0.0)
                        pair_energy[k] = e if real else 0.0
                elif with_energy:
                    for k in range(padded):
                        dx = lane[0, k]
                        dy = lane[1, k]
                        dz = lane[2, k]
                        f_over_r, e = law(dx * dx + dy * dy + dz * dz, i, k, parameters, lane)
                        real = k < inside
                        pair_forces[0, k] = to_fixed(f_over_r * dx if real else 0.0)
                        pair_forces[1, k] = to_fixed(f_over_r * dy if real else 0.0)
                        pair_forces[2, k] = to_fixed(f_over_r * dz if real else 0.0)
                        pair_energy[k] = e if real else 0.0
                else:  # forces only: the energy, unused, is never computed
                    for k in range(padded):
                        dx = lane[0, k]
                        dy = lane[1, k]
                        dz = lane[2, k]
                        f_over_r, _ = law(dx * dx + dy * dy + dz * dz, i, k, parameters, lane)
                        real = k < inside
                        pair_forces[0, k] = to_fixed(f_over_r * dx if real else 0.0)
                        pair_forces[1, k] = to_fixed(f_over_r * dy if real else 0.0)
                        pair_forces[2, k] = to_fixed(f_over_r * dz if real else 0.0)
                own = thread_forces[tid]
                fxi = np.int64(0)
                fyi = np.int64(0)
                fzi = np.int64(0)
                energy = 0.0
                for k in range(inside):  # i's sums in integers: exact in any order
                    j = partner[k]
                    fx = pair_forces[0, k]
                    fy = pair_forces[1, k]
                    fz = pair_forces[2, k]
                    own[j, 0] += fx
                    own[j, 1] += fy
                    own[j, 2] += fz
                    fxi -= fx
                    fyi -= fy
                    fzi -= fz
                    if with_energy:
                        energy += pair_energy[k]
                own[i, 0] += fxi
                own[i, 1] += fyi
                own[i, 2] += fzi
                atom_energy[i] = energy

    return loop


#: float64 lanes of the widest vectors the law's loop is compiled for (AVX-512)
LANES = 8
#: Work items of the pair loop: ranges of particles with equal numbers of listed pairs
#: (``neighbors.equal_work_bounds``)
CHUNKS = 64


@functools.cache
def pair_kernel(law, width: int):
    """The compiled pair loop of the lane ``law`` of ``width`` per-particle parameters (once per
    law; cached on disk by source)."""
    return compiled_law_loop(_pair_loop(law, width), law, parallel=True)


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

    #: ``compute(..., energy=False)`` skips summing the pair energies
    energy_optional = True

    @classmethod
    def from_term(cls, term, system, buffer=DEFAULT_BUFFER):
        """The kernel of ``system``'s ``term``."""
        return cls(term, buffer=buffer)

    def __init__(self, term: CustomPairs, buffer=DEFAULT_BUFFER):
        self.init_custom_pairs(term)
        cutoff = np.inf if term.method == "NoCutoff" else float(term.cutoff)
        super().__init__(self.n, cutoff, term.exclusions, term.periodic, buffer)
        width = len(term.parameter_names)
        self._kernel = pair_kernel(self.compiled.lane_law, width)
        self._derivative_kernels = {name: pair_kernel(law, width) for name, law
                                    in self.compiled.lane_derivative_laws.items()}
        # rows: displacement, parameters, group multiplicity (see laws.custom.lane_law)
        self._lane_rows = LANE_FIRST_PARAMETER + width + 1
        self._scratch = np.zeros((1, 1, 1))
        self._sort_parameters(self.neighbors.order)

    def _sort_parameters(self, order):
        self._sorted = (np.ascontiguousarray(self.params[order]), *self.switch,
                        self.masks[0][order], self.masks[1][order], self.grouped)

    def upload_params(self) -> None:
        """Re-sort the table into the list's order (a global parameter changed)."""
        self._sort_parameters(self.neighbors.order)

    def _run(self, kernel, positions, box, forces, with_energy=True) -> float:
        sorted_positions, box_arg, shifts = self._prepare(positions, box)
        nl = self.neighbors
        threads = self._thread_forces.shape[0]
        width = nl.neighbors.shape[1] + LANES  # room for the filler slots
        if self._scratch.shape[0] != threads or self._scratch.shape[2] < width:
            self._scratch = np.zeros((threads, self._lane_rows, width))
            self._partners = np.zeros((threads, width), np.int64)
            self._pair_forces = np.zeros((threads, 3, width), np.int64)
            self._pair_energies = np.zeros((threads, width))
        kernel(sorted_positions, self._sorted, nl.neighbors, nl.counts, shifts,
               nl.minimum_image_mode, box_arg, self.cutoff**2, self._thread_forces,
               self._atom_energy, self._scratch, self._partners, self._pair_forces,
               self._pair_energies, with_energy,
               equal_work_bounds(nl.counts, CHUNKS))
        energy = float(np.sum(self._atom_energy)) if with_energy else np.nan
        reduce_thread_forces(self._thread_forces, nl.order, forces)
        return energy

    def compute(self, positions, box, forces, energy=True) -> float:
        """Add the pair forces to ``forces`` (int64 fixed point); return the energy with the
        long-range correction, kJ/mol (NaN if ``energy`` is False: the pair energies are not
        summed)."""
        if not energy:
            return self._run(self._kernel, positions, box, forces, with_energy=False)
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
