"""Range-limited pair kernels with int64 fixed-point force accumulation.

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
from bencao.backends.cpu.neighbors import SHIFT_BITS, SHIFT_MASK, minimum_image

#: Coulomb kinds understood by :func:`coulomb_lj_pairs`.
COULOMB_PLAIN = 0  #: 1/r (NoCutoff)
COULOMB_REACTION_FIELD = 1  #: 1/r + krf r^2 - crf (CutoffNonPeriodic, CutoffPeriodic)
COULOMB_EWALD = 2  #: erfc(alpha r)/r (Ewald, PME real space)



#: Intervals of the real-space Ewald table over [0, cutoff]; cubic Hermite pieces this fine
#: interpolate erfc to ~1e-12, far below float32 resolution.
EWALD_TABLE_POINTS = 4096


def ewald_table(alpha: float, cutoff: float, points: int = EWALD_TABLE_POINTS) -> np.ndarray:
    """Cubic Hermite coefficients of the real-space Ewald screening functions over [0, cutoff].

    For r in interval k (width d = cutoff / points) and t = r/d - k in [0, 1),
    g(r) = erfc(alpha r) is ``c[k,0] + t (c[k,1] + t (c[k,2] + t c[k,3]))`` and
    h(r) = erfc(alpha r) + 2 alpha r / sqrt(pi) exp(-alpha^2 r^2) uses ``c[k,4:8]`` likewise, so that
    E = qq g / r and -dE/dr / r = qq h / r^3.  Built in float64 from exact values and derivatives.

    Parameters
    ----------
    alpha : float
        Ewald separation parameter, 1/nm.
    cutoff : float
        Real-space cutoff, nm.
    points : int
        Number of intervals.

    Returns
    -------
    (points + 1, 8) float64 array
    """
    from scipy.special import erfc

    d = cutoff / points
    r = np.arange(points + 2) * d
    ar = alpha * r
    gauss = np.exp(-ar * ar)
    k = 2.0 * alpha / math.sqrt(math.pi)
    g = erfc(ar)
    dg = -k * gauss
    h = g + k * r * gauss
    dh = -2.0 * alpha * alpha * k * r * r * gauss  # d/dr [erfc + k r e^{-a^2 r^2}]
    table = np.zeros((points + 1, 8))
    for col, (f, df) in enumerate(((g, dg), (h, dh))):
        f0, f1 = f[:-1], f[1:]
        m0, m1 = df[:-1] * d, df[1:] * d
        table[:, 4 * col + 0] = f0
        table[:, 4 * col + 1] = m0
        table[:, 4 * col + 2] = 3 * (f1 - f0) - 2 * m0 - m1
        table[:, 4 * col + 3] = 2 * (f0 - f1) + m0 + m1
    return table


@njit(cache=True, inline="always")
def switch_factor(r, switch_distance, cutoff):
    """Switching function S(r) and dS/dr (OpenMM's 1 - 10x^3 + 15x^4 - 6x^5), x in [0, 1]."""
    width = cutoff - switch_distance
    x = min((r - switch_distance) / width, 1.0)
    x2 = x * x
    s = 1.0 + x2 * x * (-10.0 + x * (15.0 - 6.0 * x))
    ds = -30.0 * x2 * (1.0 - x) * (1.0 - x) / width
    return s, ds


#: Atoms per parallel work item of the pair kernels; each item allocates its scratch once.
CHUNK = 32


@njit(parallel=True, cache=True, fastmath=True)
def coulomb_lj_pairs(
    positions, charge, half_sigma, sqrt_epsilon, neighbors, counts, shifts, minimum_image_mode,
    box, cutoff, coulomb_kind, coulomb_constant, ewald, krf, crf, switching, switch_distance,
    thread_forces, atom_energy,
):
    """Coulomb + Lennard-Jones over a half neighbour list (NonbondedForce's regular pairs).

    Each atom's neighbours go through three loops: gather (indirect loads into contiguous scratch),
    compute (branch-free arithmetic on contiguous arrays, which the compiler vectorises) and
    scatter (fixed-point accumulation).  Pairs in the Verlet buffer, beyond the cutoff, are masked
    to zero rather than branched around; the branches on ``coulomb_kind`` and ``switching`` do
    not change inside the loop, so the compiler hoists them out of it.

    Parameters
    ----------
    positions : (N, 3) float64 array
        Positions in cell-sorted order, nm.
    charge, half_sigma, sqrt_epsilon : (N,) float64 arrays
        Per sorted atom: charge (e), sigma/2 (nm), sqrt(epsilon) (sqrt(kJ/mol)).
    neighbors : (N, C) int32 array, counts : (N,) int32 array
        Half neighbour list: packed sorted index and shift code (see ``neighbors``).
    shifts : (27, 3) float64 array
        Box shift of each shift code, nm.
    minimum_image_mode : bool
        Apply the minimum-image convention to every pair (boxes under three cells wide).
    box : (3, 3) float64 array
        Box vectors as rows, nm.
    cutoff : float
        Cutoff, nm (inf for none).
    coulomb_kind : int
        COULOMB_PLAIN, COULOMB_REACTION_FIELD or COULOMB_EWALD.
    coulomb_constant : float
        1/(4 pi eps0), kJ/mol nm/e^2.
    ewald : (P + 1, 8) float64 array
        Real-space Ewald table from :func:`ewald_table` over [0, cutoff] (unused otherwise).
    krf, crf : float
        Reaction-field constants, 1/nm^3 and 1/nm.
    switching : bool
        Apply OpenMM's switching function to LJ from ``switch_distance`` (nm) to the cutoff.
    switch_distance : float
        Where switching starts, nm.
    thread_forces : (T, N, 3) int64 array
        Per-thread fixed-point forces in sorted order; zeroed by the caller.
    atom_energy : (N,) float64 array
        Output: energy of the pairs listed under each sorted atom, kJ/mol.
    """
    n = positions.shape[0]
    capacity = neighbors.shape[1]
    cutoff2 = cutoff * cutoff
    last = np.float64(ewald.shape[0] - 2)
    inv_spacing = (ewald.shape[0] - 1) / cutoff if coulomb_kind == 2 else 0.0
    inv_width = 1.0 / (cutoff - switch_distance) if switching else 0.0
    for chunk in prange((n + CHUNK - 1) // CHUNK):
        tid = numba.get_thread_id()
        # fresh arrays (not views of one buffer) so the compiler knows they do not alias
        js = np.empty(capacity, np.int64)
        dxs = np.empty(capacity)
        dys = np.empty(capacity)
        dzs = np.empty(capacity)
        qs = np.empty(capacity)
        sigmas = np.empty(capacity)
        epsilons = np.empty(capacity)
        pair_force = np.empty(capacity)
        pair_energy = np.empty(capacity)
        for i in range(chunk * CHUNK, min(n, (chunk + 1) * CHUNK)):
            xi = positions[i, 0]
            yi = positions[i, 1]
            zi = positions[i, 2]
            m = counts[i]
            # gather
            for k in range(m):
                entry = neighbors[i, k]
                j = entry >> SHIFT_BITS
                shift = entry & SHIFT_MASK
                dx = positions[j, 0] - xi + shifts[shift, 0]
                dy = positions[j, 1] - yi + shifts[shift, 1]
                dz = positions[j, 2] - zi + shifts[shift, 2]
                if minimum_image_mode:
                    dx, dy, dz = minimum_image(dx, dy, dz, box, True)
                js[k] = j
                dxs[k] = dx
                dys[k] = dy
                dzs[k] = dz
                qs[k] = charge[j]
                sigmas[k] = half_sigma[j]
                epsilons[k] = sqrt_epsilon[j]
            # compute: energies and (-dE/dr)/r
            qi = charge[i] * coulomb_constant
            si = half_sigma[i]
            ei = sqrt_epsilon[i]
            for k in range(m):
                r2 = dxs[k] * dxs[k] + dys[k] * dys[k] + dzs[k] * dzs[k]
                inside = 1.0 if r2 < cutoff2 else 0.0
                inv_r = 1.0 / math.sqrt(r2)
                inv_r2 = inv_r * inv_r
                r = r2 * inv_r
                qq = qi * qs[k] * inside
                if coulomb_kind == 2:  # Ewald real space, through the table
                    x = min(r * inv_spacing, last)
                    t_index = np.int64(x)
                    t = x - t_index
                    g = ewald[t_index, 0] + t * (ewald[t_index, 1] + t * (ewald[t_index, 2] + t * ewald[t_index, 3]))
                    h = ewald[t_index, 4] + t * (ewald[t_index, 5] + t * (ewald[t_index, 6] + t * ewald[t_index, 7]))
                    e_coul = qq * g * inv_r
                    f_coul = qq * h * inv_r * inv_r2
                elif coulomb_kind == 1:  # reaction field
                    e_coul = qq * (inv_r + krf * r2 - crf)
                    f_coul = qq * (inv_r * inv_r2 - 2.0 * krf)
                else:
                    e_coul = qq * inv_r
                    f_coul = e_coul * inv_r2
                four_eps = 4.0 * ei * epsilons[k] * inside
                sig = si + sigmas[k]
                sig2 = sig * sig * inv_r2
                sr6 = sig2 * sig2 * sig2
                e_lj = four_eps * (sr6 * sr6 - sr6)
                f_lj = four_eps * (12.0 * sr6 * sr6 - 6.0 * sr6) * inv_r2
                if switching:
                    sx = min(max(r - switch_distance, 0.0) * inv_width, 1.0)
                    sx2 = sx * sx
                    s = 1.0 + sx2 * sx * (-10.0 + sx * (15.0 - 6.0 * sx))
                    ds = -30.0 * sx2 * (1.0 - sx) * (1.0 - sx) * inv_width
                    f_lj = f_lj * s - e_lj * ds * inv_r
                    e_lj = e_lj * s
                pair_force[k] = f_coul + f_lj
                pair_energy[k] = e_coul + e_lj
            # scatter, in list order (the i sum is then the same on any thread)
            energy = 0.0
            fxi = 0.0
            fyi = 0.0
            fzi = 0.0
            for k in range(m):
                j = js[k]
                f = pair_force[k]
                fx = f * dxs[k]
                fy = f * dys[k]
                fz = f * dzs[k]
                energy += pair_energy[k]
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
    positions, types, c12, c6, c4, neighbors, counts, shifts, minimum_image_mode, box, cutoff,
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
            entry = neighbors[i, k]
            j = entry >> SHIFT_BITS
            shift = entry & SHIFT_MASK
            dx = positions[j, 0] - xi + shifts[shift, 0]
            dy = positions[j, 1] - yi + shifts[shift, 1]
            dz = positions[j, 2] - zi + shifts[shift, 2]
            if minimum_image_mode:
                dx, dy, dz = minimum_image(dx, dy, dz, box, True)
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
