"""The tabulated pair kernel (CustomNonbondedForce tables) with int64 fixed-point forces.

It walks a :class:`~bencao.backends.cpu.neighbors.NeighborList` (cell-sorted half lists)
in parallel over atoms.  The force on atom i is summed locally in the fixed order of its list; the
reaction on each neighbour j goes to a per-thread int64 buffer.  Integer sums do not depend on
which thread did which atom, so the result is bit-identical on any number of threads.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from bencao.backends.common.fixed_point import to_fixed
from bencao.backends.common.pair_laws import tabulated_pair32
from bencao.backends.cpu.neighbors import listed_partner


@njit(parallel=True, cache=True)
def tabulated_pairs(
    positions, types, c12, c6, c4, neighbors, counts, shifts, minimum_image_mode, box, cutoff,
    switch_distance, thread_forces, atom_energy,
):
    """E = c12/r^12 - c6/r^6 - c4/r^4 with per-type-pair tables (CustomNonbondedForce forms).

    The law is ``common.pair_laws.tabulated_pair32`` (the CUDA kernel compiles the same source in
    float64).  The switching function, if any, multiplies the whole energy, as OpenMM's
    CustomNonbondedForce does.

    Parameters
    ----------
    positions : (N, 3) float64 array
        Positions in cell-sorted order, nm.
    types : (N,) int64 array
        Type of each sorted atom.
    c12, c6, c4 : (T, T) float32 arrays
        Tables, kJ/mol nm^12, nm^6, nm^4.
    neighbors : (N, C) int32 array, counts : (N,) int32 array
        Half neighbour list: packed sorted index and shift code (see ``neighbors``).
    shifts : (27, 3) float64 array
        Box shift of each shift code, nm.
    minimum_image_mode : bool
        Apply the minimum-image convention to every pair (boxes under three cells wide).
    box : (3, 3) float64 array
        Box vectors as rows, nm.
    cutoff, switch_distance : float
        nm (cutoff inf for none; switch_distance 0 for no switching).
    thread_forces : (T, N, 3) int64 array
        Per-thread fixed-point forces in sorted order; zeroed by the caller.
    atom_energy : (N,) float64 array
        Output: energy of the pairs listed under each sorted atom, kJ/mol.
    """
    n = positions.shape[0]
    cutoff2 = np.float32(cutoff * cutoff)
    rc = np.float32(cutoff)
    rsw = np.float32(switch_distance)
    switching = rsw > np.float32(0.0)
    for i in prange(n):
        tid = numba.get_thread_id()
        xi = positions[i, 0]
        yi = positions[i, 1]
        zi = positions[i, 2]
        ti = types[i]
        fxi = 0.0
        fyi = 0.0
        fzi = 0.0
        energy = 0.0
        for k in range(counts[i]):
            j, dx, dy, dz = listed_partner(neighbors[i, k], positions, xi, yi, zi, shifts,
                                           minimum_image_mode, box)
            r2 = np.float32(dx * dx + dy * dy + dz * dz)
            if r2 >= cutoff2:
                continue
            tj = types[j]
            f_over_r, e = tabulated_pair32(r2, c12[ti, tj], c6[ti, tj], c4[ti, tj], switching,
                                           rsw, rc)
            energy += e
            fx = f_over_r * np.float32(dx)
            fy = f_over_r * np.float32(dy)
            fz = f_over_r * np.float32(dz)
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


@njit(parallel=True, cache=True)
def reduce_thread_forces(thread_forces, order, forces):
    """Add per-thread sorted fixed-point forces into ``forces`` (original order), exactly."""
    n_threads = thread_forces.shape[0]
    for k in prange(thread_forces.shape[1]):
        a = order[k]
        for d in range(3):
            total = np.int64(0)
            for t in range(n_threads):
                total += thread_forces[t, k, d]
                thread_forces[t, k, d] = 0
            forces[a, d] += total
