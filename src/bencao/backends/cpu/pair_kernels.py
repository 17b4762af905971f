"""Range-limited pair kernels in float32 with int64 fixed-point force accumulation.

Both kernels walk a :class:`~bencao.backends.cpu.neighbors.NeighborList` (cell-sorted half lists)
in parallel over atoms.  The force on atom i is summed locally in the fixed order of its list; the
reaction on each neighbour j goes to a per-thread int64 buffer.  Integer sums do not depend on
which thread did which atom, so the result is bit-identical on any number of threads.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from bencao.backends.cpu.fixed_point import to_fixed
from bencao.backends.cpu.neighbors import minimum_image

#: Coulomb kinds understood by :func:`coulomb_lj_pairs`.
COULOMB_PLAIN = 0  #: 1/r (NoCutoff)
COULOMB_REACTION_FIELD = 1  #: 1/r + krf r^2 - crf (CutoffNonPeriodic, CutoffPeriodic)
COULOMB_EWALD = 2  #: erfc(alpha r)/r (Ewald, PME real space)

_TWO_OVER_SQRT_PI = np.float32(2.0 / math.sqrt(math.pi))


@njit(cache=True, inline="always")
def erfc_with_gaussian(x):
    """erfc(x) and exp(-x^2) in float32 for x >= 0.

    Abramowitz & Stegun 7.1.26: absolute error of erfc below 1.5e-7, the float32 level, and it
    reuses exp(-x^2), which the Ewald force needs anyway.
    """
    t = np.float32(1.0) / (np.float32(1.0) + np.float32(0.3275911) * x)
    gaussian = np.exp(-x * x)
    poly = t * (
        np.float32(0.254829592)
        + t * (np.float32(-0.284496736) + t * (np.float32(1.421413741) + t * (np.float32(-1.453152027) + t * np.float32(1.061405429))))
    )
    return poly * gaussian, gaussian


@njit(cache=True, inline="always")
def switch_factor(r, switch_distance, cutoff):
    """Switching function S(r) and dS/dr (OpenMM's 1 - 10x^3 + 15x^4 - 6x^5), x in [0, 1]."""
    if switch_distance <= np.float32(0.0) or r <= switch_distance:
        return np.float32(1.0), np.float32(0.0)
    width = cutoff - switch_distance
    x = (r - switch_distance) / width
    x2 = x * x
    s = np.float32(1.0) + x2 * x * (np.float32(-10.0) + x * (np.float32(15.0) - np.float32(6.0) * x))
    ds = np.float32(-30.0) * x2 * (np.float32(1.0) - x) * (np.float32(1.0) - x) / width
    return s, ds


@njit(parallel=True, cache=True)
def coulomb_lj_pairs(
    positions, charge, half_sigma, sqrt_epsilon, neighbors, counts, box, periodic,
    cutoff, coulomb_kind, coulomb_constant, alpha, krf, crf, switch_distance, thread_forces,
    atom_energy,
):
    """Coulomb + Lennard-Jones over a half neighbour list (NonbondedForce's regular pairs).

    Parameters
    ----------
    positions : (N, 3) float64 array
        Positions in cell-sorted order, nm.
    charge, half_sigma, sqrt_epsilon : (N,) float32 arrays
        Per sorted atom: charge (e), sigma/2 (nm), sqrt(epsilon) (sqrt(kJ/mol)).
    neighbors : (N, C) int32 array, counts : (N,) int32 array
        Half neighbour list in sorted indices.
    box : (3, 3) float64 array
        Box vectors as rows, nm.
    periodic : bool
        Minimum image on.
    cutoff : float
        Cutoff, nm (inf for none).
    coulomb_kind : int
        COULOMB_PLAIN, COULOMB_REACTION_FIELD or COULOMB_EWALD.
    coulomb_constant : float
        1/(4 pi eps0), kJ/mol nm/e^2.
    alpha : float
        Ewald separation parameter, 1/nm.
    krf, crf : float
        Reaction-field constants, 1/nm^3 and 1/nm.
    switch_distance : float
        LJ switching start, nm (0: none).
    thread_forces : (T, N, 3) int64 array
        Per-thread fixed-point forces in sorted order; zeroed by the caller.
    atom_energy : (N,) float64 array
        Output: energy of the pairs listed under each sorted atom, kJ/mol.
    """
    n = positions.shape[0]
    cutoff2 = np.float32(cutoff * cutoff)
    rc = np.float32(cutoff)
    rsw = np.float32(switch_distance)
    ke = np.float32(coulomb_constant)
    a = np.float32(alpha)
    krf32 = np.float32(krf)
    crf32 = np.float32(crf)
    for i in prange(n):
        tid = numba.get_thread_id()
        xi = positions[i, 0]
        yi = positions[i, 1]
        zi = positions[i, 2]
        qi = charge[i] * ke
        si = half_sigma[i]
        ei = sqrt_epsilon[i]
        fxi = 0.0
        fyi = 0.0
        fzi = 0.0
        energy = 0.0
        for k in range(counts[i]):
            j = neighbors[i, k]
            dx, dy, dz = minimum_image(
                positions[j, 0] - xi, positions[j, 1] - yi, positions[j, 2] - zi, box, periodic
            )
            r2 = np.float32(dx * dx + dy * dy + dz * dz)
            if r2 >= cutoff2:
                continue
            inv_r2 = np.float32(1.0) / r2
            inv_r = np.float32(math.sqrt(inv_r2))
            r = r2 * inv_r
            qq = qi * charge[j]
            # Coulomb: energy and (-dE/dr)/r
            if coulomb_kind == 2:
                erfc_value, gaussian = erfc_with_gaussian(a * r)
                e_coul = qq * erfc_value * inv_r
                f_over_r = (e_coul + qq * _TWO_OVER_SQRT_PI * a * gaussian) * inv_r2
            elif coulomb_kind == 1:
                e_coul = qq * (inv_r + krf32 * r2 - crf32)
                f_over_r = qq * (inv_r * inv_r2 - np.float32(2.0) * krf32)
            else:
                e_coul = qq * inv_r
                f_over_r = e_coul * inv_r2
            # Lennard-Jones with Lorentz-Berthelot mixing
            eps = ei * sqrt_epsilon[j]
            e_lj = np.float32(0.0)
            if eps != np.float32(0.0):
                sig = si + half_sigma[j]
                sig2 = sig * sig * inv_r2
                sr6 = sig2 * sig2 * sig2
                four_eps = np.float32(4.0) * eps
                e_lj = four_eps * (sr6 * sr6 - sr6)
                f_lj = four_eps * (np.float32(12.0) * sr6 * sr6 - np.float32(6.0) * sr6) * inv_r2
                if rsw > np.float32(0.0) and r > rsw:
                    s, ds = switch_factor(r, rsw, rc)
                    f_lj = f_lj * s - e_lj * ds * inv_r
                    e_lj = e_lj * s
                f_over_r += f_lj
            energy += e_coul + e_lj
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
def tabulated_pairs(
    positions, types, c12, c6, c4, neighbors, counts, box, periodic, cutoff,
    switch_distance, thread_forces, atom_energy,
):
    """E = c12/r^12 - c6/r^6 - c4/r^4 with per-type-pair tables (CustomNonbondedForce forms).

    Parameters are as in :func:`coulomb_lj_pairs`; ``types`` (N,) int64 per sorted atom and
    ``c12``, ``c6``, ``c4`` (T, T) float32 tables (kJ/mol nm^12, nm^6, nm^4).  The switching
    function, if any, multiplies the whole energy, as OpenMM's CustomNonbondedForce does.
    """
    n = positions.shape[0]
    cutoff2 = np.float32(cutoff * cutoff)
    rc = np.float32(cutoff)
    rsw = np.float32(switch_distance)
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
            j = neighbors[i, k]
            dx, dy, dz = minimum_image(
                positions[j, 0] - xi, positions[j, 1] - yi, positions[j, 2] - zi, box, periodic
            )
            r2 = np.float32(dx * dx + dy * dy + dz * dz)
            if r2 >= cutoff2:
                continue
            tj = types[j]
            inv_r2 = np.float32(1.0) / r2
            inv_r4 = inv_r2 * inv_r2
            inv_r6 = inv_r4 * inv_r2
            a12 = c12[ti, tj] * inv_r6 * inv_r6
            b6 = c6[ti, tj] * inv_r6
            d4 = c4[ti, tj] * inv_r4
            e = a12 - b6 - d4
            f_over_r = (np.float32(12.0) * a12 - np.float32(6.0) * b6 - np.float32(4.0) * d4) * inv_r2
            if rsw > np.float32(0.0):
                r = np.float32(math.sqrt(r2))
                if r > rsw:
                    s, ds = switch_factor(r, rsw, rc)
                    f_over_r = f_over_r * s - e * ds / r
                    e = e * s
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
